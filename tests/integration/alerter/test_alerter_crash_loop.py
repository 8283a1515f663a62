"""The supervisor's crash-loop events through JetStream to the alerter's `alerter-ops` consumer:
one Slack-compatible message per service per crash loop, and one when it is over."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext

from support.alert_receivers import AlertReceiver
from tollgate_devstack.announce import Announcer, crash_loop_event, new_loop_id
from tollgate_devstack.embedded import StackUrls
from tollgate_shared import names
from tollgate_shared.events import ServiceCrashLoop

OPS_HOOK = "/slack/T000/B000/ops"


def _event(condition: str, service: str, loop_id: str, exits: int = 5) -> ServiceCrashLoop:
    return crash_loop_event(
        "crash_loop" if condition == "crash_loop" else "recovered",
        service=service,
        kind="service",
        loop_id=loop_id,
        exits=exits,
        window_s=120.0,
        restarts=exits - 1,
        last_exit_code=1,
        retry_in_s=16.0 if condition == "crash_loop" else None,
        log_file=None,
    )


async def _acked(js: JetStreamContext, timeout: float = 15.0) -> None:
    """Until `alerter-ops` has acked everything in the OPS stream."""
    spec = names.ALERTER_OPS
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        stream = await js.stream_info(spec.stream)
        info = await js.consumer_info(spec.stream, spec.name)
        if info.ack_floor.stream_seq >= stream.state.last_seq:
            return
        assert loop.time() < deadline, f"{spec.name} did not ack up to {stream.state.last_seq}"
        await asyncio.sleep(0.05)


async def test_one_message_per_crash_loop_and_one_when_it_is_over(
    provisioned: StackUrls,
    js: JetStreamContext,
    run_alerter,
    receiver: AlertReceiver,
    uid: str,
) -> None:
    service = f"svc-{uid}"
    loop_id = new_loop_id()
    said: list[str] = []
    # The supervisor's own publishing path: its thread, tollgate_shared.publishing, retries.
    announcer = Announcer(lambda: (provisioned.nats_url, None), said.append)
    general = {
        "alerting": ["slack"],
        "alert_to_webhook_url": {"service_crash_loop": receiver.url(OPS_HOOK)},
    }
    try:
        async with run_alerter(general):
            # The loop, then the same loop announced again (a supervisor retry with a new
            # event id, a later exit): no second message. One after the other: two
            # announcements in flight at once may reach the stream in either order.
            for event in (
                _event("crash_loop", service, loop_id),
                _event("crash_loop", service, loop_id, exits=6),
            ):
                future = announcer.announce(event)
                assert future is not None
                await asyncio.wrap_future(future)
            begun = await receiver.wait_for(OPS_HOOK, lambda r: service in r.text, timeout=10)
            over = announcer.announce(_event("recovered", service, loop_id, exits=0))
            assert over is not None
            await asyncio.wrap_future(over)
            await receiver.wait_for(OPS_HOOK, lambda r: service in r.text, count=2, timeout=10)
            await _acked(js)
    finally:
        await asyncio.to_thread(announcer.close)
    texts = receiver.texts(OPS_HOOK, service)
    assert len(begun) == 1
    assert len(texts) == 2, texts
    assert "Level: `High`" in texts[0]
    assert f"the service `{service}` exited 5 times" in texts[0]
    assert "Level: `Low`" in texts[1]
    assert f"Recovered: the service `{service}`" in texts[1]
    assert said == []
