"""Part-B sinks without a network: names, credentials, refusals, retries and redaction.

Each sink renders through the registry into an httpx MockTransport that answers as
the vendor would (project / dataset / token lookups included), so what is asserted
is exactly what would leave Tollgate.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from support.receivers.samples import PROMPT, REPLY, completed, failed
from support.vendor_env import ENV
from tollgate_exporter.content import redact
from tollgate_exporter.destinations import Destination
from tollgate_exporter.settings import ExporterSettings
from tollgate_exporter.sinks import SinkContext, registry
from tollgate_exporter.sinks.base import ExportItem, PermanentError, RetryableError
from tollgate_shared.config import LitellmSettings

# callback name -> the environment variable its error names when credentials are missing
PART_B = {
    "langsmith": "LANGSMITH_API_KEY",
    "lunary": "LUNARY_PUBLIC_KEY",
    "helicone": "HELICONE_API_KEY",
    "deepeval": "CONFIDENT_API_KEY",
    "athina": "ATHINA_API_KEY",
    "braintrust": "BRAINTRUST_API_KEY",
    "humanloop": "HUMANLOOP_API_KEY",
    "literalai": "LITERAL_API_KEY",
    "promptlayer": "PROMPTLAYER_API_KEY",
    "argilla": "ARGILLA_API_KEY",
    "agentops": "AGENTOPS_API_KEY",
    "openmeter": "OPENMETER_API_KEY",
    "greenscale": "GREENSCALE",
    "cloudzero": "CLOUDZERO",
    "lago": "LAGO_API_KEY",
    "galileo": "GALILEO_PROJECT_ID",
}


def vendor(
    requests: list[httpx.Request], status: Callable[[httpx.Request], int] = lambda r: 200
) -> httpx.MockTransport:
    """Answers lookups as the vendors do; ingestion with `status(request)`."""

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        path = request.url.path
        if path.endswith("/project"):
            name = json.loads(request.content)["name"]
            return httpx.Response(200, json={"id": f"p-{name}", "name": name})
        if path.endswith("/me/datasets"):
            return httpx.Response(
                200, json={"items": [{"id": "ds-1", "name": "litellm-completion"}]}
            )
        if path.endswith("/auth/token"):
            return httpx.Response(200, json={"token": "jwt", "project_id": "p1"})
        code = status(request)
        return httpx.Response(code, json={"error": "rejected by vendor"} if code >= 400 else {})

    return httpx.MockTransport(handle)


def sink_for(name: str, transport: httpx.MockTransport) -> tuple[Any, Destination]:
    client = httpx.AsyncClient(transport=transport)
    ctx = SinkContext(client, ExporterSettings(), LitellmSettings(), ENV)
    reg = registry()
    dest = reg.destination_for(name, {}, {}, ENV)
    assert isinstance(dest, Destination), dest
    t = reg.type_for(name, {}, {})
    assert t is not None
    return t.create(ctx), dest


@pytest.mark.parametrize("name", sorted(PART_B))
def test_every_name_routes_and_missing_credentials_name_the_variable(name: str) -> None:
    reg = registry()
    dest = reg.destination_for(name, {}, {}, ENV)
    assert isinstance(dest, Destination)
    assert "k" not in dest.label.split()  # a label never carries the secret
    reason = reg.destination_for(name, {}, {}, {})
    assert isinstance(reason, str)
    assert PART_B[name].split("_")[0].lower() in reason.lower()


@pytest.mark.parametrize("name", sorted(PART_B))
async def test_redacted_content_never_leaves(name: str) -> None:
    sent: list[httpx.Request] = []
    sink, dest = sink_for(name, vendor(sent))
    ok = completed("team-a", "h", end_user="cust", metadata={"greenscale_project": "p"})
    bad = failed("team-a", "h", end_user="cust")
    items = [ExportItem(redact(ok), True), ExportItem(redact(bad), True)]
    result = await sink.send(dest, items)
    assert result.rejected == {}
    body = b"".join(r.content for r in sent)
    assert ok.request_id.encode() in body or name == "agentops"
    assert PROMPT.encode() not in body
    assert REPLY.encode() not in body


async def test_whole_batch_refused_dead_letters_at_once_with_the_answer() -> None:
    sent: list[httpx.Request] = []
    sink, dest = sink_for("lago", vendor(sent, lambda r: 422))
    with pytest.raises(PermanentError) as err:
        await sink.send(dest, [ExportItem(completed(end_user="c"), False)])
    assert err.value.status_code == 422
    assert "rejected by vendor" in str(err.value)


async def test_rate_limit_is_retried_after_what_the_vendor_asks() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": "7"}, json={})

    sink, dest = sink_for("langsmith", httpx.MockTransport(handle))
    with pytest.raises(RetryableError) as err:
        await sink.send(dest, [ExportItem(completed(), False)])
    assert err.value.retry_after == 7.0


async def test_per_call_api_rejects_one_call_and_never_resends_the_accepted() -> None:
    sent: list[httpx.Request] = []
    calls = [completed(), completed(), completed()]
    answers = iter([200, 400, 503, 200])  # 2nd refused, 3rd fails, then succeeds
    sink, dest = sink_for("athina", vendor(sent, lambda r: next(answers)))
    items = [ExportItem(c, False) for c in calls]
    with pytest.raises(RetryableError):
        await sink.send(dest, items)
    result = await sink.send(dest, items)  # the retry
    assert set(result.rejected) == {1}
    assert "400" in result.rejected[1]
    refs = [json.loads(r.content)["external_reference_id"] for r in sent]
    assert refs == [
        calls[0].request_id,
        calls[1].request_id,
        calls[2].request_id,
        calls[2].request_id,
    ]


@pytest.mark.parametrize(
    ("charge_by", "customer"),
    [("end_user_id", "cust"), ("user_id", "user-1"), ("team_id", "team-a")],
)
async def test_lago_charges_whom_litellm_would(charge_by: str, customer: str) -> None:
    sent: list[httpx.Request] = []
    sink, _ = sink_for("lago", vendor(sent))
    dest = registry().destination_for("lago", {"lago_api_charge_by": charge_by}, {}, ENV)
    assert isinstance(dest, Destination)
    await sink.send(dest, [ExportItem(completed("team-a", end_user="cust"), False)])
    (event,) = json.loads(sent[0].content)["events"]
    assert event["external_subscription_id"] == customer


async def test_metering_without_a_customer_dead_letters_that_call_only() -> None:
    sent: list[httpx.Request] = []
    sink, dest = sink_for("openmeter", vendor(sent))
    nobody = completed(user_id=None, end_user=None)
    result = await sink.send(
        dest, [ExportItem(completed(end_user="c"), False), ExportItem(nobody, False)]
    )
    assert list(result.rejected) == [1]
    assert "subject" in result.rejected[1]
    (ce,) = json.loads(sent[0].content)
    assert sent[0].headers["content-type"] == "application/cloudevents-batch+json"
    assert ce["subject"] == "c"


async def test_braintrust_project_from_call_metadata_and_a_401_refetches_it() -> None:
    sent: list[httpx.Request] = []
    answers = iter([401, 200])
    sink, dest = sink_for("braintrust", vendor(sent, lambda r: next(answers)))
    item = ExportItem(completed(metadata={"project_name": "chat"}), False)
    with pytest.raises(PermanentError):
        await sink.send(dest, [item])
    await sink.send(dest, [item])
    paths = [r.url.path for r in sent]
    assert paths == [
        "/project",
        "/project_logs/p-chat/insert",
        "/project",
        "/project_logs/p-chat/insert",
    ]


ENDPOINT_VARS = {
    "langsmith": "langsmith_base_url",
    "lunary": "lunary_api_url",
    "helicone": "helicone_api_base",
    "deepeval": "confident_base_url",
    "athina": "athina_base_url",
    "braintrust": "braintrust_api_base",
    "humanloop": "humanloop_base_url",
    "literalai": "literalai_api_url",
    "promptlayer": "promptlayer_api_base",
    "argilla": "argilla_base_url",
    "agentops": "agentops_otlp_endpoint",
    "openmeter": "openmeter_api_endpoint",
    "greenscale": "greenscale_endpoint",
    "cloudzero": "cloudzero_api_base",
    "lago": "lago_api_base",
    "galileo": "galileo_base_url",
}


@pytest.mark.parametrize("name", sorted(ENDPOINT_VARS))
def test_a_callback_with_its_own_endpoint_never_carries_the_global_key(name: str) -> None:
    own = {ENDPOINT_VARS[name]: "https://team-host.example"}
    reason = registry().destination_for(name, own, {}, ENV)
    assert isinstance(reason, str), f"{name} sent the environment's key to the team's host"
