"""The Helm chart renders with the real Helm engine, lints strictly, validates against
Kubernetes 1.30 schemas, and carries every object a platform team expects."""

from __future__ import annotations

import json
import py_compile
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tollgate_shared import names

helm = pytest.importorskip(
    "helm_python", reason="helm-python-sdk (the Helm engine) is not installed: uv sync --dev"
)
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (offline Kubernetes schemas) is missing"
)

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "infra" / "helm" / "tollgate"
KUBE_VERSION = "1.30.0"
SERVICES = ("ingress", "admin", "ledger", "exporter", "alerter")
NATS_USERS = (*SERVICES, "provision", "helm-test")
# Kinds from the Prometheus Operator's CRDs, which Kubernetes' own schemas do not know.
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
ALERTMANAGER = "tg-tollgate-alertmanager"

Doc = dict[str, Any]


def ci_values(name: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text())
    return values


def render(values: dict[str, Any], *, upgrade: bool = False) -> list[Doc]:
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(
            values, name="tg", namespace="llm", is_install=not upgrade, is_upgrade=upgrade
        )
    docs: list[Doc] = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


@pytest.fixture(scope="module")
def default() -> list[Doc]:
    return render(ci_values("default"))


@pytest.fixture(scope="module")
def production() -> list[Doc]:
    return render(ci_values("production"))


def by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def hook(doc: Doc) -> tuple[set[str], int] | None:
    ann = doc["metadata"].get("annotations") or {}
    if "helm.sh/hook" not in ann:
        return None
    return set(ann["helm.sh/hook"].split(",")), int(ann.get("helm.sh/hook-weight", "0"))


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    for d in docs:
        spec = d.get("spec", {})
        if d["kind"] == "Pod":
            yield d["metadata"]["name"], spec
        elif "template" in spec and "spec" in spec["template"]:
            yield f"{d['kind']}/{d['metadata']['name']}", spec["template"]["spec"]


def containers(pod: Doc) -> list[Doc]:
    return [*pod.get("initContainers", []), *pod["containers"]]


# --- the engine: lint and schemas --------------------------------------------------


@pytest.mark.parametrize("values", ["default", "production"])
def test_chart_lints_strictly(values: str) -> None:
    report = helm.lint(str(CHART), ci_values(values), strict=True, kube_version=f"v{KUBE_VERSION}")
    # The dependencies' archives come from their repositories (`helm dependency build`),
    # which this machine cannot reach; that one finding is allowed, and only for them.
    missing = [d["name"] for d in helm.dependency_list(str(CHART)) if d["status"] == "missing"]
    allowed = {f"chart directory is missing these dependencies: {','.join(missing)}"}
    findings = [m for m in report["messages"] if m["severity"] >= 1]
    assert [m["error"] for m in findings if m["error"] not in allowed] == []


@pytest.mark.parametrize("values", ["default", "production"])
def test_every_manifest_is_valid_for_kubernetes_1_30(values: str) -> None:
    for upgrade in (False, True):
        for doc in render(ci_values(values), upgrade=upgrade):
            if doc["kind"] in OPERATOR_KINDS:
                assert doc["apiVersion"] == "monitoring.coreos.com/v1"
                continue
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_values_schema_accepts_the_examples_and_rejects_mistakes() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        assert chart.schema is not None
        for name in ("default", "production"):
            chart.validate_schema(ci_values(name))
        bad: list[dict[str, Any]] = [
            {"natsAuth": {"passwords": {"ingress": "has:colon@and-short"}}},
            {"services": {"ledger": {"readiness": "grpc"}}},
            {"podSecurityContext": {"runAsNonRoot": False, "runAsUser": 0}},
            {"provisioning": {"streamReplicas": 2}},
            {"externalDatabase": {"url": "mysql://db/tollgate"}},
            {"unknownKey": True},
        ]
        for values in bad:
            with pytest.raises(helm.HelmValuesError):
                chart.validate_schema(values)


def test_missing_secrets_fail_the_render() -> None:
    values = ci_values("default")
    values["masterKey"] = "short"
    with pytest.raises(helm.HelmError, match="masterKey"):
        render(values)
    values = ci_values("default")
    del values["externalDatabase"]
    with pytest.raises(helm.HelmError, match=r"externalDatabase\.url"):
        render(values)


# --- ordering: provisioning before the pods -------------------------------------------


def test_external_servers_provision_in_pre_install_and_pre_upgrade_hooks(
    production: list[Doc],
) -> None:
    hooks: dict[tuple[str, str], tuple[set[str], int]] = {}
    for d in production:
        found = hook(d)
        if found:
            hooks[(d["kind"], d["metadata"]["name"])] = found
    job = by_kind(production, "Job")["tg-tollgate-provision"]
    assert hooks[("Job", "tg-tollgate-provision")] == ({"pre-install", "pre-upgrade"}, 0)
    # What the Job mounts exists before it: hooks of a lower weight (the release's own
    # ConfigMap is created only after the pre-install hooks).
    assert hooks[("ConfigMap", "tg-tollgate-provision")] == ({"pre-install", "pre-upgrade"}, -10)
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"][0]["configMap"]["name"] == "tg-tollgate-provision"
    for c in containers(pod):
        refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"] if "valueFrom" in e}
        # existingSecret and the NATS users' Secret are the platform's, there beforehand.
        assert refs == {"tollgate-connections", "tollgate-nats-users"}
    assert [c["name"] for c in containers(pod)] == ["provision", "migrate-ledger", "migrate-admin"]
    assert pod["initContainers"][0]["command"][-2:] == ["--replicas", "3"]
    # Nothing runs after install: no post-install hook for `helm install --wait` to hang on.
    for events, _ in hooks.values():
        assert not events & {"post-install", "post-upgrade"}
    for kind in ("Deployment", "StatefulSet", "Secret", "Service"):
        for d in by_kind(production, kind).values():
            assert hook(d) is None, d["metadata"]["name"]


def test_chart_created_secret_has_a_hook_copy_for_the_provision_job() -> None:
    values = ci_values("production")
    values.pop("existingSecret")
    values.update(
        masterKey="sk-production-0123456789abcdef",
        externalDatabase={"url": "postgresql://t:s@db:5432/tollgate"},
        externalRedis={"url": "redis://redis:6379/0"},
    )
    docs = render(values)
    secret = by_kind(docs, "Secret")["tg-tollgate-provision"]
    assert hook(secret) == ({"pre-install", "pre-upgrade"}, -10)
    assert set(secret["stringData"]) == {"master-key", "database-url", "redis-url"}
    assert by_kind(docs, "Secret")["tg-tollgate"]["stringData"] == secret["stringData"]


def test_bundled_servers_provision_in_a_job_the_pods_wait_for(default: list[Doc]) -> None:
    # The NATS chart is part of this release: hooks would run before it exists.
    job = by_kind(default, "Job")["tg-tollgate-provision-1"]
    assert hook(job) is None
    for name, pod in pod_specs(default):
        if name.startswith(("Deployment/", "StatefulSet/")):
            init = pod["initContainers"][0]
            assert init["name"] == "wait-provisioned", name
            assert init["command"] == ["python", "/etc/tollgate-scripts/wait_provisioned.py"]
    scripts = by_kind(default, "ConfigMap")["tg-tollgate-scripts"]["data"]
    for script in ("wait_provisioned.py", "helm_test.py"):
        assert scripts[script] == (CHART / "files" / script).read_text()


def test_chart_scripts_compile(tmp_path: Path) -> None:
    for script in ("wait_provisioned.py", "helm_test.py"):
        py_compile.compile(
            str(CHART / "files" / script), cfile=str(tmp_path / "x.pyc"), doraise=True
        )


# --- the objects a platform team expects -----------------------------------------------


@pytest.mark.parametrize("values", ["default", "production"])
def test_every_service_has_workload_service_pdb_and_network_policy(values: str) -> None:
    docs = render(ci_values(values))
    workloads = by_kind(docs, "Deployment") | by_kind(docs, "StatefulSet")
    workloads.pop(ALERTMANAGER, None)  # optional, see the alertmanager tests
    assert set(workloads) == {f"tg-tollgate-{s}" for s in SERVICES}
    assert by_kind(docs, "StatefulSet").keys() - {ALERTMANAGER} == {"tg-tollgate-ingress"}
    pdbs = by_kind(docs, "PodDisruptionBudget")
    policies = by_kind(docs, "NetworkPolicy")
    for service in SERVICES:
        name = f"tg-tollgate-{service}"
        selector = workloads[name]["spec"]["selector"]["matchLabels"]
        assert pdbs[name]["spec"]["selector"]["matchLabels"] == selector
        assert policies[name]["spec"]["podSelector"]["matchLabels"] == selector
        assert name in by_kind(docs, "Service")


def test_ingress_autoscales_on_cpu_and_requests_per_second(production: list[Doc]) -> None:
    hpa = by_kind(production, "HorizontalPodAutoscaler")["tg-tollgate-ingress"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "tg-tollgate-ingress",
    }
    assert {m["type"] for m in hpa["metrics"]} == {"Resource", "Pods"}
    # The HPA owns the replica count.
    assert "replicas" not in by_kind(production, "StatefulSet")["tg-tollgate-ingress"]["spec"]


def test_ingress_spool_is_on_a_persistent_volume_claim(production: list[Doc]) -> None:
    sts = by_kind(production, "StatefulSet")["tg-tollgate-ingress"]["spec"]
    claim = sts["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "spool"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    mounts = {
        m["name"]: m["mountPath"] for m in sts["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    assert mounts["spool"] == "/var/lib/tollgate/spool"
    env = {e["name"]: e.get("value") for e in sts["template"]["spec"]["containers"][0]["env"]}
    assert env["TOLLGATE_SPOOL_PATH"].startswith(mounts["spool"] + "/")
    volumes = {v["name"] for v in sts["template"]["spec"]["volumes"]}
    assert "spool" not in volumes  # not an emptyDir
    assert sts["serviceName"] in by_kind(production, "Service")


def test_only_ingress_is_reachable_from_outside(production: list[Doc]) -> None:
    policies = by_kind(production, "NetworkPolicy")
    components = (*SERVICES, "provision", "test", "alertmanager")
    assert set(policies) == {f"tg-tollgate-{c}" for c in components}
    for name, policy in policies.items():
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        for rule in spec["ingress"]:
            sources = rule.get("from")
            if name == "tg-tollgate-ingress":
                assert sources == [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}
                        }
                    }
                ]
            else:
                assert sources, f"{name} accepts anyone"
                for source in sources:
                    assert "ipBlock" not in source
    # Services reach only what they use: the ledger never talks to Redis or the internet.
    ledger_ports = {
        p["port"] for r in policies["tg-tollgate-ledger"]["spec"]["egress"] for p in r["ports"]
    }
    assert ledger_ports == {53, 4222, 5432}
    alerter_ports = {
        p["port"] for r in policies["tg-tollgate-alerter"]["spec"]["egress"] for p in r["ports"]
    }
    assert 6379 in alerter_ports
    assert 5432 not in alerter_ports


@pytest.mark.parametrize("values", ["default", "production"])
def test_every_pod_is_hardened_spread_and_sized(values: str) -> None:
    docs = render(ci_values(values))
    sa = by_kind(docs, "ServiceAccount")["tg-tollgate"]
    assert sa["automountServiceAccountToken"] is False
    pods = dict(pod_specs(docs))
    assert {n.split("/")[0] for n in pods} >= {"Deployment", "StatefulSet", "Job"}
    assert "tg-tollgate-test-call" in pods
    for name, pod in pods.items():
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["serviceAccountName"] == "tg-tollgate", name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 10001, name
        for c in containers(pod):
            assert c["resources"]["requests"], (name, c["name"])
            assert c["resources"]["limits"], (name, c["name"])
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, (name, c["name"])
        if name.startswith(("Deployment/", "StatefulSet/")):
            keys = {t["topologyKey"] for t in pod["topologySpreadConstraints"]}
            assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}, name


def test_dockerfile_user_is_numeric_and_matches_run_as_user() -> None:
    text = (ROOT / "infra" / "docker" / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users == ["10001:10001"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 10001
    assert values["podSecurityContext"]["runAsGroup"] == 10001


def test_prometheus_operator_objects_carry_the_alert_rules(production: list[Doc]) -> None:
    monitor = by_kind(production, "ServiceMonitor")["tg-tollgate"]["spec"]
    assert monitor["jobLabel"] == "tollgate.io/job"
    jobs = {
        s["metadata"]["labels"].get("tollgate.io/job")
        for s in by_kind(production, "Service").values()
    }
    assert jobs == {f"tollgate-{s}" for s in SERVICES} | {None}  # the headless one is not scraped
    rule = by_kind(production, "PrometheusRule")["tg-tollgate"]["spec"]
    alerts = yaml.safe_load((ROOT / "infra" / "prometheus" / "alerts.yml").read_text())
    assert rule == alerts
    # The chart cannot read outside its folder, so it carries a copy; they must not drift.
    copy = (CHART / "files" / "alerts.yml").read_text()
    assert copy == (ROOT / "infra" / "prometheus" / "alerts.yml").read_text()


def test_helm_test_makes_one_call_and_reads_its_spend_row(default: list[Doc]) -> None:
    pod = by_kind(default, "Pod")["tg-tollgate-test-call"]
    assert hook(pod) == ({"test"}, 0)
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["TOLLGATE_TEST_BASE_URL"]["value"] == "http://tg-tollgate-ingress:4000"
    script = (CHART / "files" / "helm_test.py").read_text()
    assert "/v1/chat/completions" in script
    assert "/spend/logs" in script
    assert names.HDR_CALL_ID in script


# --- NATS: the official chart, R3, a user per service ------------------------------------


def test_nats_is_the_official_chart_with_jetstream_r3() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    deps = {d["name"]: d for d in meta["dependencies"]}
    assert deps["nats"]["repository"] == "https://nats-io.github.io/k8s/helm/charts/"
    assert deps["nats"]["condition"] == "nats.enabled"
    assert deps["postgresql"]["condition"] == "postgresql.enabled"
    assert deps["redis"]["condition"] == "redis.enabled"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["nats"]["enabled"] is True
    assert values["postgresql"]["enabled"] is False  # external by default
    assert values["redis"]["enabled"] is False
    config = values["nats"]["config"]
    assert config["cluster"] == {"enabled": True, "replicas": 3}
    assert config["jetstream"]["enabled"] is True
    assert values["provisioning"]["streamReplicas"] == 3


def _nats_users() -> dict[str, dict[str, Any]]:
    """The users the chart gives NATS: its generated permissions file (checked against
    tollgate_shared.permissions in test_nats_auth_files.py)."""
    document = json.loads((CHART / "files" / "nats-permissions.json").read_text())
    return {u["user"]: u for u in document["users"]}


def test_bundled_nats_includes_the_generated_users_from_the_chart_configmap(
    default: list[Doc],
) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    nats = values["nats"]
    assert "accounts" not in nats["config"]["merge"]  # no hand-written copy
    include = nats["config"]["merge"]["$include"]
    mount = "/etc/tollgate-nats"
    # The NATS chart's config is /etc/nats-config/nats.conf; includes are relative to it.
    assert Path("/etc/nats-config", include).resolve() == Path(mount, "nats-auth.conf")
    configmap = values["natsAuth"]["configMapName"]
    volume = {"name": "tollgate-nats-auth", "configMap": {"name": configmap}}
    assert {"op": "add", "path": "/spec/volumes/-", "value": volume} in nats["podTemplate"]["patch"]
    for container in ("container", "reloader"):
        mounts = [p["value"] for p in nats[container]["patch"] if p["path"] == "/volumeMounts/-"]
        assert {"name": "tollgate-nats-auth", "mountPath": mount, "readOnly": True} in mounts
    rendered = by_kind(default, "ConfigMap")[configmap]["data"]["nats-auth.conf"]
    assert rendered == (CHART / "files" / "nats-auth.conf").read_text()


def test_each_nats_user_password_comes_from_the_secret_services_read() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    users = _nats_users()
    assert set(users) == set(NATS_USERS)
    env = values["nats"]["container"]["env"]
    conf = (CHART / "files" / "nats-auth.conf").read_text()
    for user, spec in users.items():
        assert f"password: ${spec['password_env']}," in conf, user
        ref = env[spec["password_env"]]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": values["natsAuth"]["secretName"], "key": user}


def test_services_connect_as_their_own_nats_user(default: list[Doc]) -> None:
    for name, pod in pod_specs(default):
        if not name.startswith(("Deployment/", "StatefulSet/")):
            continue
        service = name.rsplit("-", 1)[1]
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        # The password never goes into the URL (URLs end up in logs).
        assert env["TOLLGATE_NATS_URL"]["value"] == "nats://tg-nats:4222"
        assert env["TOLLGATE_NATS_USER"]["value"] == service
        ref = env["TOLLGATE_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "tollgate-nats-users", "key": service}


def _allows(user: dict[str, Any], subject: str) -> bool:
    """NATS subject matching: `*` is one token, a trailing `>` one or more."""
    tokens = subject.split(".")
    for pattern in user["permissions"]["publish"]["allow"]:
        wanted = pattern.split(".")
        if wanted[-1] == ">":
            head, tail = wanted[:-1], True
        else:
            head, tail = wanted, False
        if len(tokens) < len(head) + tail or (not tail and len(tokens) != len(head)):
            continue
        if all(w in ("*", t) for w, t in zip(head, tokens, strict=False)):
            return True
    return False


def test_nats_permissions_follow_who_publishes_and_writes_what() -> None:
    users = _nats_users()
    producers = {
        "ingress": names.llm_request_subject(names.LLM_REQUEST_COMPLETED, "team-a"),
        "admin": names.AdminSubject.KEY_CREATED.value,
        "ledger": names.LEDGER_SPEND_UPDATED,
        "alerter": names.alert_sent_subject("budget_alerts"),
        "exporter": names.EXPORT_DEAD_LETTER,
    }
    for service, subject in producers.items():
        for user in SERVICES:
            assert _allows(users[user], subject) == (user == service), (user, subject)
    # Only a bucket's writer may put into it (only admin writes keys, only ledger spend).
    for use in names.BUCKET_USES:
        for user in SERVICES:
            assert _allows(users[user], f"$KV.{use.bucket}.k") == (user == use.written_by)
    # Only the provisioning user creates, changes or deletes streams.
    for user in (*SERVICES, "helm-test"):
        assert not _allows(users[user], "$JS.API.STREAM.CREATE.LLM"), user
        assert not _allows(users[user], "$JS.API.STREAM.DELETE.LLM"), user
    assert _allows(users["provision"], "$JS.API.STREAM.CREATE.LLM")
    # Each consumer pulls and acks only its own durables.
    for spec in names.CONSUMERS:
        for user in SERVICES:
            for subject in (
                f"$JS.API.CONSUMER.MSG.NEXT.{spec.stream}.{spec.name}",
                f"$JS.ACK.{spec.stream}.{spec.name}.1.1.1.1.1",
            ):
                assert _allows(users[user], subject) == (user == spec.service), (user, subject)


def test_nats_users_secret_is_created_from_passwords_or_left_to_the_platform(
    default: list[Doc], production: list[Doc]
) -> None:
    secret = by_kind(default, "Secret")["tollgate-nats-users"]
    assert set(secret["stringData"]) == set(NATS_USERS)
    assert "tollgate-nats-users" not in by_kind(production, "Secret")
    values = ci_values("default")
    values["natsAuth"]["passwords"]["ledger"] = "not/url:safe"
    with pytest.raises(helm.HelmError, match="ledger"):
        render(values)


# --- what the templates refer to -------------------------------------------------------


def test_templates_reference_only_real_values() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    for template in sorted((CHART / "templates").rglob("*")):
        if not template.is_file():
            continue
        text = template.read_text()
        # Every action opened is closed (a `}}` alone may be YAML flow-mapping text).
        assert "{{" not in re.sub(r"\{\{.*?\}\}", "", text, flags=re.S), template.name
        for ref in re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text):
            node: Any = values
            props: Any = schema
            for part in ref.split("."):
                assert isinstance(node, dict), f"{template.name}: .Values.{ref}"
                known = {
                    *props.get("properties", {}),
                    *props.get("propertyNames", {}).get("enum", []),
                }
                assert part in node or part in known, f"{template.name}: .Values.{ref}"
                node = node.get(part, {})
                props = props.get("properties", {}).get(part, {})
    assert {n: s["port"] for n, s in values["services"].items()} == {
        "ingress": 4000,
        "admin": 4001,
        "ledger": 4002,
        "exporter": 4003,
        "alerter": 4004,
    }


def test_default_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    from tollgate_shared.config import TollgateConfig, resolve_env

    monkeypatch.setenv("TOLLGATE_MASTER_KEY", "sk-a-strong-master-key-for-tests")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    raw = resolve_env(yaml.safe_load(values["config"]))
    assert TollgateConfig.model_validate(raw).model_names() == [values["tests"]["model"]]


def test_deploy_docs_cover_install_upgrade_scale_sizing_and_monitoring() -> None:
    for doc in ("kubernetes.md", "compose.md"):
        text = (ROOT / "docs" / "deploy" / doc).read_text()
        for heading in ("## Install", "## Upgrade", "## Scale", "## What to monitor"):
            assert heading in text, (doc, heading)
    kubernetes = (ROOT / "docs" / "deploy" / "kubernetes.md").read_text()
    assert "### Sizing" in kubernetes
    assert "helm dependency build" in kubernetes


# --- Alertmanager (optional) ------------------------------------------------------------


def _alertmanager_values(**over: Any) -> dict[str, Any]:
    values = ci_values("default")
    values["alertmanager"] = {"enabled": True, **over}
    return values


def test_alertmanager_is_off_by_default(default: list[Doc]) -> None:
    assert not [d for d in default if d["metadata"]["name"].startswith(ALERTMANAGER)]


def test_alertmanager_routes_from_the_shared_file_and_reads_the_webhook_from_a_secret() -> None:
    url = "https://hooks.slack.example/services/T0/B0/XYZ"
    docs = render(_alertmanager_values(slackWebhookUrl=url))
    for doc in docs:
        if doc["kind"] not in OPERATOR_KINDS:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    # The chart cannot read outside its folder, so it carries a copy; they must not drift.
    shared = (ROOT / "infra" / "alertmanager" / "alertmanager.yml").read_text()
    assert (CHART / "files" / "alertmanager.yml").read_text() == shared
    config = by_kind(docs, "ConfigMap")[ALERTMANAGER]["data"]["alertmanager.yml"]
    assert yaml.safe_load(config) == yaml.safe_load(shared)
    assert url not in config  # the secret never sits in the ConfigMap

    secret = by_kind(docs, "Secret")[ALERTMANAGER]
    assert secret["stringData"] == {"slack-webhook-url": url}
    sts = by_kind(docs, "StatefulSet")[ALERTMANAGER]["spec"]
    pod = sts["template"]["spec"]
    (container,) = pod["containers"]
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
    assert args["cluster.listen-address"] == ""  # one replica: no gossip
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert args["config.file"] == f"{mounts['config']}/alertmanager.yml"
    assert volumes["config"]["configMap"]["name"] == ALERTMANAGER
    # The webhook file lands where alertmanager.yml's api_url_file reads it.
    (item,) = volumes["webhook"]["secret"]["items"]
    assert volumes["webhook"]["secret"]["secretName"] == ALERTMANAGER
    assert item["key"] == "slack-webhook-url"
    api_url_files = {
        c["api_url_file"]
        for r in yaml.safe_load(shared)["receivers"]
        for c in r.get("slack_configs", [])
    }
    assert api_url_files == {f"{mounts['webhook']}/{item['path']}"}
    assert args["storage.path"] == mounts["data"]
    assert sts["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    # Prometheus reaches it on the Service port the README and values name.
    service = by_kind(docs, "Service")[ALERTMANAGER]["spec"]
    assert service["ports"] == [{"name": "http", "port": 9093, "targetPort": "http"}]
    assert service["selector"] == sts["selector"]["matchLabels"]


def test_alertmanager_replicas_form_a_cluster_and_use_an_existing_secret(
    production: list[Doc],
) -> None:
    assert ALERTMANAGER not in by_kind(production, "Secret")  # the platform's Secret
    sts = by_kind(production, "StatefulSet")[ALERTMANAGER]["spec"]
    assert sts["replicas"] == 2
    pod = sts["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["webhook"]["secret"]["secretName"] == "tollgate-alerting"
    args = pod["containers"][0]["args"]
    peers = [a.split("=", 1)[1] for a in args if a.startswith("--cluster.peer=")]
    headless = sts["serviceName"]
    assert peers == [f"{ALERTMANAGER}-{i}.{headless}:9094" for i in range(2)]
    assert by_kind(production, "Service")[headless]["spec"]["clusterIP"] == "None"
    claim = sts["volumeClaimTemplates"][0]["spec"]
    assert (claim["storageClassName"], claim["resources"]["requests"]["storage"]) == (
        "fast-ssd",
        "2Gi",
    )
    # Only Prometheus's namespace and the peers reach it; it reaches the webhook.
    policy = by_kind(production, "NetworkPolicy")[ALERTMANAGER]["spec"]
    sources = [s for rule in policy["ingress"] for s in rule["from"]]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    } in (sources)
    assert all("ipBlock" not in s for s in sources)
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert {53, 443, 9094} <= egress_ports


def test_alertmanager_needs_a_webhook_url_or_a_secret() -> None:
    with pytest.raises(helm.HelmError, match=r"alertmanager\.slackWebhookUrl"):
        render(_alertmanager_values())
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema({"alertmanager": {"slackWebhookUrl": "not-a-url"}})
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema({"alertmanager": {"replicas": 0}})
