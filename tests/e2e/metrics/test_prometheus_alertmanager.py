"""A real Prometheus and a real Alertmanager (Debian's packages, installed by
`./just monitoring-tools`) against the running system: after a mix of traffic, every query of
every panel in infra/grafana/dashboards/ returns data, the series LiteLLM's published
dashboards query exist with their labels, `promtool check rules` passes, and the deployment
outage rule fires and reaches a Slack-compatible webhook through Alertmanager."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from support.configs import MASTER_KEY, write_config
from support.fake_upstream import FakeUpstream, serve_in_thread
from support.system import System, running_system
from tollgate_devstack.embedded import StackUrls, free_port

ROOT = Path(__file__).resolve().parents[3]
INFRA = ROOT / "infra"
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}

# What LiteLLM's published Grafana dashboards (its cookbook's dashboard_v2 and dashboard_1)
# query: series name -> label names they group or filter by. Written down here, not copied.
# dashboard_1's `litellm_self_latency` and `litellm_total_tokens` are names LiteLLM itself
# has since retired (see docs/metrics.md).
LITELLM_DASHBOARD_SERIES: dict[str, set[str]] = {
    "litellm_proxy_total_requests_metric_total": {"api_key_alias", "team_alias"},
    "litellm_proxy_failed_requests_metric_total": {"exception_class"},
    "litellm_request_total_latency_metric_sum": set(),
    "litellm_request_total_latency_metric_count": set(),
    "litellm_request_total_latency_metric_bucket": {"le"},
    "litellm_remaining_requests": set(),
    "litellm_remaining_tokens": set(),
    "litellm_spend_metric_total": {"hashed_api_key", "model"},
    "litellm_requests_metric_total": {"model"},
    "litellm_llm_api_failed_requests_metric_total": set(),
}


def _webhook() -> tuple[ThreadingHTTPServer, list[dict[str, Any]]]:
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            got.append(json.loads(body or b"{}"))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, got


class _WithLimits:
    """The fake upstream answering with OpenAI's x-ratelimit-remaining-* headers."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_with(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-ratelimit-remaining-requests", b"4999"),
                    (b"x-ratelimit-remaining-tokens", b"159000"),
                ]
            await send(message)

        await self.app(scope, receive, send_with)


@pytest.fixture(scope="module")
def tools() -> None:
    subprocess.run([str(ROOT / "just"), "monitoring-tools"], check=True, timeout=900)


@pytest.fixture(scope="module")
def system(
    provisioned: StackUrls, tools: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("metrics-e2e")
    good = FakeUpstream()
    broken = FakeUpstream(fail_status=503)
    with serve_in_thread(_WithLimits(good.app())) as gp, serve_in_thread(broken.app()) as bp:
        good.port, broken.port = gp, bp
        cfg = write_config(tmp / "config.yaml", good.base_url)
        raw = yaml.safe_load(cfg.read_text())
        for name in ("flaky", "doomed", "doomed-fb"):
            raw["model_list"].append(
                {
                    "model_name": name,
                    "litellm_params": {"model": f"openai/{name}-up", "api_base": broken.base_url},
                    "model_info": {"id": f"{name}-1"},
                }
            )
        for model in raw["model_list"]:
            if model["model_name"] == "fake":
                model["litellm_params"].update(rpm=6000, tpm=1_000_000)
        raw["router_settings"] = {
            "allowed_fails": 0,
            "num_retries": 0,
            "cooldown_time": 600,
            "fallbacks": [{"flaky": ["fake"]}, {"doomed": ["doomed-fb"]}],
        }
        raw["litellm_settings"] = {
            **raw.get("litellm_settings", {}),
            "custom_prometheus_metadata_labels": ["metadata.environment"],
            "custom_prometheus_tags": ["vip"],
        }
        cfg.write_text(yaml.safe_dump(raw))
        with running_system(provisioned, tmp, cfg) as sys_:
            yield sys_


@pytest.fixture(scope="module")
def monitoring(
    system: System, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("prometheus")
    hook, received = _webhook()
    (tmp / "slack_webhook_url").write_text(f"http://127.0.0.1:{hook.server_port}/slack")
    am = yaml.safe_load((INFRA / "alertmanager" / "alertmanager.yml").read_text())
    am["route"].update(group_wait="1s", group_interval="1s")
    for receiver in am["receivers"]:
        for slack in receiver.get("slack_configs", []):
            slack["api_url_file"] = str(tmp / "slack_webhook_url")
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump(am))
    # The shipped rules, with the outage rule's `for` shortened so it fires within the test.
    rules = yaml.safe_load((INFRA / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "TollgateDeploymentOutage":
                rule["for"] = "0s"
    (tmp / "alerts.yml").write_text(yaml.safe_dump(rules))
    am_port, prom_port = free_port(), free_port()
    prom = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp / "alerts.yml")],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
        },
        "scrape_configs": [
            {
                "job_name": f"tollgate-{name}",
                "static_configs": [{"targets": [system.url(name).removeprefix("http://")]}],
            }
            for name in system.services
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(prom))
    alertmanager = shutil.which("prometheus-alertmanager") or "alertmanager"
    procs = [
        subprocess.Popen(
            [
                alertmanager,
                f"--config.file={tmp / 'alertmanager.yml'}",
                f"--storage.path={tmp / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            stdout=(tmp / "alertmanager.log").open("wb"),
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [
                "prometheus",
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=(tmp / "prometheus.log").open("wb"),
            stderr=subprocess.STDOUT,
        ),
    ]
    try:
        for url in (f"http://127.0.0.1:{am_port}/-/ready", f"http://127.0.0.1:{prom_port}/-/ready"):
            _wait(lambda u=url: httpx.get(u).status_code == 200, 30, f"{url} never ready")
        yield {
            "prometheus": f"http://127.0.0.1:{prom_port}",
            "alertmanager": f"http://127.0.0.1:{am_port}",
            "received": received,
            "logs": tmp,
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        hook.shutdown()


def _wait(check: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(message)


async def _traffic(system: System) -> dict[str, str]:
    """Successes, streams, upstream 503s, fallbacks (ok and failed), a bad key, budget and
    rate-limit refusals, tagged and metadata-labelled calls. Returns the keys it made."""
    async with httpx.AsyncClient(base_url=system.ingress_url, timeout=30) as http:

        async def admin(path: str, body: dict[str, Any]) -> dict[str, Any]:
            r = await http.post(path, json=body, headers=AUTH)
            assert r.status_code == 200, (path, r.text)
            out: dict[str, Any] = r.json()
            return out

        await admin(
            "/team/new",
            {"team_id": "metrics-team", "team_alias": "Metrics Team", "max_budget": 100,
             "budget_duration": "30d"},
        )  # fmt: skip
        await admin("/user/new", {"user_id": "metrics-user", "max_budget": 10})
        keys = {
            "main": (await admin(
                "/key/generate",
                {"team_id": "metrics-team", "key_alias": "metrics-main", "max_budget": 50,
                 "budget_duration": "1d", "user_id": "metrics-user"},
            ))["key"],
            "broke": (await admin(
                "/key/generate", {"key_alias": "metrics-broke", "max_budget": 0}
            ))["key"],
            "slow": (await admin(
                "/key/generate", {"key_alias": "metrics-rpm", "rpm_limit": 1}
            ))["key"],
        }  # fmt: skip

        def chat(key: str, model: str = "fake", **extra: Any) -> Any:
            return http.post(
                "/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": model,
                      "messages": [{"role": "user", "content": "four words in here"}], **extra},
            )  # fmt: skip

        # New keys reach ingress through the KV bucket: wait until the main key works.
        for _ in range(100):
            if (await chat(keys["main"])).status_code == 200:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the new key never worked:\n" + system.logs())
        tagged = {"metadata": {"environment": "prod", "tags": ["vip"]}}
        statuses = []
        for _ in range(3):
            statuses.append((await chat(keys["main"], **tagged)).status_code)
            statuses.append(
                (
                    await chat(keys["main"], stream=True, stream_options={"include_usage": True})
                ).status_code
            )
        statuses.append((await chat(keys["main"], "flaky")).status_code)  # 503, falls back to fake
        statuses.append((await chat(keys["main"], "doomed")).status_code)  # 503, fallback fails too
        statuses.append((await chat("sk-not-a-key")).status_code)
        for _ in range(50):  # the zero-budget and one-rpm keys reach ingress like the first
            if (await chat(keys["broke"])).status_code != 401:
                break
            await asyncio.sleep(0.1)
        statuses.append((await chat(keys["broke"])).status_code)
        for _ in range(50):
            if (await chat(keys["slow"])).status_code != 401:
                break
            await asyncio.sleep(0.1)
        statuses.append((await chat(keys["slow"])).status_code)
        statuses.append((await chat(keys["main"], "demo")).status_code)  # the mock provider
        assert statuses == [200] * 7 + [503, 401, 400, 429, 200], statuses
        return keys


def _substitute(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "20s").replace("$__range", "5m")
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def _dashboard_queries() -> list[tuple[str, str]]:
    out = []
    for path in sorted((INFRA / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                out.append((f"{path.name}: {panel['title']} [{target['refId']}]", target["expr"]))
    return out


def _query(prom: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    assert r.status_code == 200, (expr, r.text)
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result


def test_promtool_accepts_the_shipped_rules() -> None:
    subprocess.run([str(ROOT / "just"), "monitoring-tools"], check=True, timeout=900)
    out = subprocess.run(
        ["promtool", "check", "rules", str(INFRA / "prometheus" / "alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


async def test_every_dashboard_query_returns_data_and_the_outage_alert_is_delivered(
    system: System, monitoring: dict[str, Any]
) -> None:
    prom = monitoring["prometheus"]
    await _traffic(system)
    queries = _dashboard_queries()
    assert len(queries) >= 50

    # Scrapes every second; rate() needs two samples after the traffic: poll until all answer.
    missing: list[str] = []
    deadline = time.monotonic() + 40
    while True:
        missing = [
            f"{where}: {expr}" for where, expr in queries if not _query(prom, _substitute(expr))
        ]
        if not missing or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    answered = len(queries) - len(missing)
    print(f"\ndashboard queries returning data: {answered}/{len(queries)}")
    assert not missing, "panels without data:\n" + "\n".join(missing)

    # The labels a LiteLLM user's own dashboards and rules rely on, with their values.
    calls = _query(
        prom,
        'litellm_proxy_total_requests_metric_total{metadata_environment="prod", tag_vip="true"}',
    )
    assert calls
    assert all(c["metric"]["api_key_alias"] == "metrics-main" for c in calls)
    refusals = {
        (r["metric"]["exception_status"], r["metric"]["exception_class"])
        for r in _query(prom, "litellm_proxy_failed_requests_metric_total")
    }
    gateway = {("401", "AuthenticationError"), ("400", "BudgetExceededError"),
               ("429", "RateLimitError")}  # fmt: skip
    assert gateway <= refusals, refusals
    assert "503" in {status for status, _ in refusals}  # the upstream's own failures
    state = _query(prom, 'litellm_deployment_state{model_id="flaky-1"}')
    assert [s["value"][1] for s in state] == ["2"]
    team = _query(prom, 'litellm_remaining_team_budget_metric{team="metrics-team"}')
    assert team
    assert team[0]["metric"]["team_alias"] == "Metrics Team"
    for series, labels in LITELLM_DASHBOARD_SERIES.items():
        found = _query(prom, series)
        assert found, f"LiteLLM's dashboards query {series}: no series"
        assert labels <= set(found[0]["metric"]), (series, labels, found[0]["metric"])

    # The outage rule fires from the real gauge and Alertmanager delivers it to the webhook.
    def delivered() -> bool:
        return any(
            "TollgateDeploymentOutage" in json.dumps(body) for body in monitoring["received"]
        )

    deadline = time.monotonic() + 30
    while not delivered() and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    logs = monitoring["logs"]
    assert delivered(), (
        f"webhook got {monitoring['received']}\n"
        + (logs / "alertmanager.log").read_text()[-2000:]
        + _query(prom, "ALERTS").__repr__()
    )
    # One notification per deployment (grouped by litellm_model_name): only broken ones fire.
    fired = [
        json.dumps(b) for b in monitoring["received"] if "TollgateDeploymentOutage" in json.dumps(b)
    ]
    assert all(any(f"{m}-up" in b for m in ("flaky", "doomed", "doomed-fb")) for b in fired)
    assert not any("fake-model" in b for b in fired)
