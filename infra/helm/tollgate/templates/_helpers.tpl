{{/* Names, labels and the environment shared by every template. */}}

{{- define "tollgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tollgate.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tollgate
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tollgate.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .service }}
{{- end -}}

{{- define "tollgate.secretName" -}}
{{- default (include "tollgate.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{- define "tollgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tollgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tollgate.image" -}}
{{- printf "%s-%s:%s" .root.Values.image.repository .service .root.Values.image.tag -}}
{{- end -}}

{{/*
"true" when NATS, PostgreSQL or Redis is part of this release. They only exist
after a release's hooks have run, so provisioning then runs as an ordinary Job
(each pod's init container waits for it) instead of pre-install/pre-upgrade hooks.
*/}}
{{- define "tollgate.bundled" -}}
{{- if or .Values.nats.enabled .Values.postgresql.enabled .Values.redis.enabled -}}true{{- end -}}
{{- end -}}

{{/* host:port of the NATS servers: the bundled NATS chart's Service, or externalNats.url. */}}
{{- define "tollgate.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{- $name := ternary .Release.Name (printf "%s-nats" .Release.Name) (contains "nats" .Release.Name) -}}
{{- printf "nats://%s:4222" (default $name .Values.nats.fullnameOverride) -}}
{{- else -}}
{{- required "externalNats.url is required when nats.enabled is false" .Values.externalNats.url -}}
{{- end -}}
{{- end -}}

{{/*
TOLLGATE_NATS_URL and, with natsAuth, the NATS user and its password from the Secret
(as TOLLGATE_NATS_USER / TOLLGATE_NATS_PASSWORD: never inside the URL, which is logged).
*/}}
{{- define "tollgate.natsEnv" }}
- name: TOLLGATE_NATS_URL
  value: {{ include "tollgate.natsUrl" .root | quote }}
{{- if .root.Values.natsAuth.enabled }}
- name: TOLLGATE_NATS_USER
  value: {{ .user | quote }}
- name: TOLLGATE_NATS_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ .passwordSecret | default .root.Values.natsAuth.secretName }}, key: {{ .user }}}}
{{- end }}
{{- end -}}

{{/* Data of the Secret with the master key and the PostgreSQL and Redis URLs. */}}
{{- define "tollgate.secretData" -}}
{{- if lt (len .Values.masterKey) 16 }}
{{- fail "masterKey must be set to a strong secret (16+ characters), or name an existingSecret" }}
{{- end }}
master-key: {{ .Values.masterKey | quote }}
{{- if .Values.postgresql.enabled }}
{{- $pg := .Values.postgresql.auth }}
database-url: {{ printf "postgresql://%s:%s@%s-postgresql:5432/%s" $pg.username (required "postgresql.auth.password is required" $pg.password) .Release.Name $pg.database | quote }}
{{- else }}
database-url: {{ required "externalDatabase.url is required (or postgresql.enabled, or existingSecret)" .Values.externalDatabase.url | quote }}
{{- end }}
{{- if .Values.redis.enabled }}
redis-url: {{ printf "redis://%s-redis-master:6379/0" .Release.Name | quote }}
{{- else }}
redis-url: {{ required "externalRedis.url is required (or redis.enabled, or existingSecret)" .Values.externalRedis.url | quote }}
{{- end }}
{{- end -}}

{{/*
Environment every Tollgate process gets. Arguments: root, secret (the Secret with
master-key, database-url, redis-url), user (the NATS user) and passwordSecret
(where that user's password is, when not natsAuth.secretName).
*/}}
{{- define "tollgate.env" -}}
{{- $fullname := include "tollgate.fullname" .root -}}
- name: TOLLGATE_HOST
  value: "0.0.0.0"
- name: TOLLGATE_CONFIG
  value: /etc/tollgate/config.yaml
- name: TOLLGATE_PUBLIC_URL
  value: {{ .root.Values.publicUrl | quote }}
- name: TOLLGATE_SPOOL_PATH
  value: /var/lib/tollgate/spool/ingress-spool.sqlite3
- name: TOLLGATE_MASTER_KEY
  valueFrom: {secretKeyRef: {name: {{ .secret }}, key: master-key}}
- name: TOLLGATE_DATABASE_URL
  valueFrom: {secretKeyRef: {name: {{ .secret }}, key: database-url}}
- name: TOLLGATE_REDIS_URL
  valueFrom: {secretKeyRef: {name: {{ .secret }}, key: redis-url}}
{{- include "tollgate.natsEnv" . }}
{{- range $name, $svc := .root.Values.services }}
{{- if ne $name "ingress" }}
- name: TOLLGATE_{{ upper $name }}_URL
  value: {{ printf "http://%s-%s:%v" $fullname $name $svc.port | quote }}
{{- end }}
{{- end }}
{{- with .root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The init container that holds a pod until streams, consumers, buckets and its schema exist. */}}
{{- define "tollgate.waitContainer" -}}
- name: wait-provisioned
  image: {{ include "tollgate.image" (dict "root" .root "service" .service) }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  securityContext:
    {{- toYaml .root.Values.securityContext | nindent 4 }}
  command: ["python", "/etc/tollgate-scripts/wait_provisioned.py"]
  env:
    {{- include "tollgate.env" (dict "root" .root "secret" (include "tollgate.secretName" .root) "user" .service) | nindent 4 }}
    - name: TOLLGATE_WAIT_SERVICE
      value: {{ .service | quote }}
    - name: TOLLGATE_WAIT_TIMEOUT_S
      value: {{ .root.Values.provisioning.waitTimeoutSeconds | quote }}
  resources:
    {{- toYaml .root.Values.provisioning.resources | nindent 4 }}
  volumeMounts:
    - {name: scripts, mountPath: /etc/tollgate-scripts, readOnly: true}
{{- end -}}

{{/* Spread a component's pods over nodes and zones. */}}
{{- define "tollgate.spread" -}}
{{- $selector := include "tollgate.selector" (dict "root" .root "service" .service) -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- $selector | nindent 8 }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: {{ .root.Values.topologySpread.hostname }}
    labelSelector:
      matchLabels:
        {{- $selector | nindent 8 }}
{{- end -}}
