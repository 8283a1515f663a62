"""Retry-After: read in both spellings, honoured over the backoff, capped by the caller."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from tenacity import AsyncRetrying, stop_after_attempt

from tollgate_exporter.sinks.base import PermanentError, RetryableError, raise_for_status
from tollgate_shared.retries import retry_after_s, wait_retry_after

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 30.0),
        (" 0 ", 0.0),
        ("Mon, 30 Nov 2026 12:00:45 GMT", 45.0),
        ("Mon, 30 Nov 2026 11:00:00 GMT", 0.0),  # a date in the past: go now
        # Bad input tried: negative numbers, fractions, words, empty: ignored.
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after_values(value: str, seconds: float | None) -> None:
    assert retry_after_s({"retry-after": value}, NOW) == seconds


def test_no_header_no_hint() -> None:
    assert retry_after_s({}, NOW) is None


def test_sink_error_carries_the_destinations_hint() -> None:
    resp = httpx.Response(429, headers={"Retry-After": "7"}, text="slow down")
    with pytest.raises(RetryableError) as info:
        raise_for_status(resp, "langfuse")
    assert info.value.retry_after == 7.0
    with pytest.raises(PermanentError):
        raise_for_status(httpx.Response(401, text="bad key"), "langfuse")


class HintedError(Exception):
    def __init__(self, retry_after: float | None) -> None:
        self.retry_after = retry_after


async def test_hint_replaces_backoff_and_is_capped() -> None:
    waits: list[float] = []
    hints = [HintedError(3.0), HintedError(500.0), HintedError(None)]

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(4),
        wait=wait_retry_after(initial=0.01, maximum=0.02, cap=60.0),
        sleep=fake_sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            if hints:
                raise hints.pop(0)
    assert waits[:2] == [3.0, 60.0]
    assert 0 <= waits[2] <= 0.03  # no hint: the ordinary backoff
