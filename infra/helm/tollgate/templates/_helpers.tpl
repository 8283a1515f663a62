{{/* Names and labels shared by every template. */}}

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

{{- define "tollgate.image" -}}
{{- printf "%s-%s:%s" .root.Values.image.repository .service .root.Values.image.tag -}}
{{- end -}}

{{/* Environment every Tollgate process gets: server URLs, config, addresses of the other services. */}}
{{- define "tollgate.env" -}}
{{- $fullname := include "tollgate.fullname" . -}}
{{- $secret := include "tollgate.secretName" . -}}
- name: TOLLGATE_HOST
  value: "0.0.0.0"
- name: TOLLGATE_CONFIG
  value: /etc/tollgate/config.yaml
- name: TOLLGATE_PUBLIC_URL
  value: {{ .Values.publicUrl | quote }}
- name: TOLLGATE_SPOOL_PATH
  value: /var/lib/tollgate/spool/ingress-spool.sqlite3
- name: TOLLGATE_MASTER_KEY
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: master-key}}
- name: TOLLGATE_NATS_URL
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: nats-url}}
- name: TOLLGATE_DATABASE_URL
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: database-url}}
- name: TOLLGATE_REDIS_URL
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: redis-url}}
{{- range $name, $svc := .Values.services }}
{{- if ne $name "ingress" }}
- name: TOLLGATE_{{ upper $name }}_URL
  value: {{ printf "http://%s-%s:%v" $fullname $name $svc.port | quote }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
