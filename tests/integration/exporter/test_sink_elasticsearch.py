"""elasticsearch through the official async client into a receiver that validates bulk
NDJSON and the index template: the template is installed first, one document per call
lands in the data stream, a redelivery conflicts harmlessly, a refused item is rejected
alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.emulators import check_record, destination_of, item, sink_of
from support.receivers import serving
from support.receivers.elasticsearch import ElasticsearchReceiver
from support.receivers.samples import completed, failed
from tollgate_exporter.sinks import PermanentError, RetryableError
from tollgate_exporter.sinks.elasticsearch import DEFAULT_INDEX, TEMPLATE_NAME

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def es() -> Iterator[ElasticsearchReceiver]:
    with serving(ElasticsearchReceiver()) as r:
        yield r


def env(es: ElasticsearchReceiver, **more: str) -> dict[str, str]:
    return {"ELASTICSEARCH_URL": es.base_url, "ELASTICSEARCH_API_KEY": es.api_key, **more}


@pytest.mark.parametrize("content", [True, False])
async def test_bulk_into_the_data_stream(es: ElasticsearchReceiver, content: bool) -> None:
    index = f"logs-tollgate.llm-{str(content).lower()}"
    dest = destination_of("elasticsearch", {"elasticsearch_index": index}, env(es))
    events = [completed("team-a", "h", tags=["e"]), failed("team-a", "h")]
    async with sink_of("elasticsearch") as sink:
        assert not (await sink.send(dest, [item(e, content) for e in events])).rejected
        assert not (await sink.send(dest, [item(events[0], content)])).rejected  # 409: delivered
    template = es.templates[TEMPLATE_NAME]
    props = template["template"]["mappings"]["properties"]
    assert props["cost"] == {"type": "scaled_float", "scaling_factor": 1_000_000}
    assert props["team_id"] == {"type": "keyword"}
    assert props["@timestamp"] == {"type": "date"}
    docs = {d["event_id"]: d for d in es.documents(index)}
    assert set(docs) == {e.event_id for e in events}
    doc = docs[events[0].event_id]
    check_record(doc, events[0], content)
    assert doc["cost"] == float(events[0].spend)
    assert doc["event"]["duration"] == 850_000_000
    assert not es.invalid
    assert DEFAULT_INDEX.startswith("logs-tollgate.llm-")


async def test_a_refused_item_is_rejected_alone(es: ElasticsearchReceiver) -> None:
    dest = destination_of("elasticsearch", {}, env(es))
    good, bad = completed("t"), completed("t")
    es.refuse_ids.add(bad.event_id)
    async with sink_of("elasticsearch") as sink:
        result = await sink.send(dest, [item(good, True), item(bad, True)])
    assert list(result.rejected) == [1]
    assert "mapper_parsing_exception" in result.rejected[1]


async def test_answers_map_to_the_retry_decision(es: ElasticsearchReceiver) -> None:
    async with sink_of("elasticsearch") as sink:
        wrong = destination_of("elasticsearch", {}, env(es, ELASTICSEARCH_API_KEY="nope"))
        with pytest.raises(PermanentError, match="401"):
            await sink.send(wrong, [item(completed("t"), True)])
        es.fail_status = 429
        try:
            dest = destination_of(
                "elasticsearch", {"elasticsearch_manage_template": "false"}, env(es)
            )
            with pytest.raises(RetryableError):
                await sink.send(dest, [item(completed("t"), True)])
        finally:
            es.fail_status = None
