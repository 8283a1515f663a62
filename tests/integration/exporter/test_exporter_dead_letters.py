"""Dead-letter replay: `python -m tollgate_exporter dlq list|replay` against real NATS."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from asgi_lifespan import LifespanManager
from nats.js import JetStreamContext

from support.builders import completed
from support.receivers import WebhookReceiver, serving
from tollgate_devstack.embedded import StackUrls
from tollgate_exporter.app import create_app
from tollgate_exporter.settings import ExporterSettings
from tollgate_shared import names
from tollgate_shared.config import parse_config
from tollgate_shared.events import ExportDeadLettered
from tollgate_shared.publishing import publish_event
from tollgate_shared.state import LoggingCallback, TeamState


async def dlq(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run the operator's command as a process, as `./just dlq` does."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tollgate_exporter",
        "dlq",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    assert proc.returncode in (0, 1), err.decode()
    return proc.returncode, out.decode()


def listed(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


async def dead_letter_of(js: JetStreamContext, event_id: str) -> ExportDeadLettered:
    sub = await js.subscribe(
        names.EXPORT_DEAD_LETTER, stream=names.STREAM_EXPORT.name, ordered_consumer=True
    )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while True:
            msg = await sub.next_msg(timeout=max(0.1, deadline - loop.time()))
            record = ExportDeadLettered.from_json(msg.data)
            if record.source_event_id == event_id:
                return record
    finally:
        await sub.unsubscribe()


async def test_a_dead_lettered_export_is_delivered_by_replay_and_gone_from_list(
    provisioned: StackUrls, js: JetStreamContext, tmp_path: Path
) -> None:
    team = f"team-dlq-{uuid.uuid4().hex[:10]}"
    with serving(WebhookReceiver(fail_status=400)) as hook:
        callback = LoggingCallback(
            callback_name="webhook", callback_vars={"webhook_url": hook.url("dlq")}
        )
        kv = await js.key_value(names.KV_TEAMS)
        state = TeamState(team_id=team, logging=[callback])
        await kv.put(team, state.to_json())

        # The exporter gives up on the refused call: one dead letter.
        settings = ExporterSettings(nats_url=provisioned.nats_url, export_batch_wait_s=0.05)
        app = create_app(settings, parse_config({"litellm_settings": {}}), {})
        event = completed(team_id=team)
        async with LifespanManager(app, startup_timeout=30):
            await publish_event(js, event)
            record = await dead_letter_of(js, event.event_id)
        assert record.sink == "webhook"
        assert record.status_code == 400
        assert hook.events() == []

        config = tmp_path / "config.yaml"
        config.write_text("litellm_settings: {}\n")
        env = {
            **os.environ,
            "TOLLGATE_NATS_URL": provisioned.nats_url,
            "TOLLGATE_CONFIG": str(config),
        }
        only_this = ("--request-id", event.request_id or "")

        rc, out = await dlq(env, "list", "--json", *only_this)
        (doc,) = listed(out)
        assert rc == 0
        assert doc["source_event_id"] == event.event_id
        assert doc["source_stream_seq"] == record.source_stream_seq
        assert doc["destination"] == record.destination

        # Still refused: reported, and the dead letter stays.
        rc, out = await dlq(env, "replay", *only_this)
        assert rc == 1
        assert "0 delivered, 1 failed" in out
        assert "400" in out
        rc, out = await dlq(env, "list", "--json", *only_this)
        assert len(listed(out)) == 1

        # The destination is fixed: delivered once, and the dead letter is gone.
        hook.fail_status = None
        rc, out = await dlq(env, "replay", "--sink", "webhook", *only_this)
        assert rc == 0, out
        assert "1 delivered, 0 failed" in out
        assert [e["event_id"] for e in hook.events()] == [event.event_id]
        rc, out = await dlq(env, "list", "--json", *only_this)
        assert listed(out) == []
        rc, out = await dlq(env, "replay", *only_this)
        assert "0 delivered, 0 failed" in out
        assert len(hook.events()) == 1
