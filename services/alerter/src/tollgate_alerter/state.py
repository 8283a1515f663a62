"""The alerter's shared state in Redis: claims, outage windows, hanging requests, report aggregates.

Every replica reads and writes the same keys, and each decision that must be
made once (send this budget alert, this outage level, this report; call this
request hanging) is an atomic Redis operation, so two replicas never both act.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# Spend is summed in Redis as integers of 1e-10 dollars (HINCRBY is exact; floats are not).
SPEND_SCALE = Decimal(10) ** 10

_WINDOW_HIT = """
local ts = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. tostring(ts - window))
local n = redis.call('ZCARD', KEYS[1])
local max = tonumber(ARGV[4])
if n > max then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - max - 1) end
redis.call('EXPIRE', KEYS[1], math.ceil(window * 2) + 1)
local count = redis.call('ZCOUNT', KEYS[1], tostring(ts - window), ARGV[2])
local deployments = 0
if KEYS[2] then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. tostring(ts - window))
  redis.call('EXPIRE', KEYS[2], math.ceil(window * 2) + 1)
  deployments = redis.call('ZCOUNT', KEYS[2], tostring(ts - window), '+inf')
end
return {count, deployments}
"""

_HANG_START = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"""

_HANG_FINISH = """
redis.call('SET', KEYS[3], '1', 'EX', ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

_HANG_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local rec = redis.call('HGET', KEYS[2], id)
  redis.call('HDEL', KEYS[2], id)
  if rec then
    table.insert(out, id)
    table.insert(out, rec)
  end
end
return out
"""

# Move the live aggregate hashes aside atomically, so increments made while a
# report is being written land in the next period.
_SNAPSHOT = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local dest = key .. ':snap:' .. ARGV[1]
    redis.call('RENAME', key, dest)
    redis.call('EXPIRE', dest, 3600)
    table.insert(out, dest)
  else
    table.insert(out, '')
  end
end
return out
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class WindowCount:
    errors: int
    deployments: int = 0


class AlertState:
    """Redis-backed state shared by every alerter replica (keys under `prefix`)."""

    def __init__(self, redis: Any, prefix: str = "tollgate:alerter") -> None:
        self._r = redis
        self._p = prefix.rstrip(":")
        self._window_hit = redis.register_script(_WINDOW_HIT)
        self._hang_start = redis.register_script(_HANG_START)
        self._hang_finish = redis.register_script(_HANG_FINISH)
        self._hang_due = redis.register_script(_HANG_DUE)
        self._snapshot = redis.register_script(_SNAPSHOT)
        self._release = redis.register_script(_RELEASE)

    def _k(self, *parts: str) -> str:
        return ":".join((self._p, *parts))

    # -- claims ------------------------------------------------------------------
    async def claim(self, key: str, ttl_s: float) -> bool:
        """True for exactly one caller per key within `ttl_s` (across replicas)."""
        ok = await self._r.set(self._k("claim", key), "1", nx=True, px=max(1, int(ttl_s * 1000)))
        return bool(ok)

    # -- outages ---------------------------------------------------------------------
    async def outage_hit(
        self, scope: str, subject: str, member: str, at: float, window_s: float, max_size: int
    ) -> WindowCount:
        """Record one error (idempotent per member) and count the errors within the window."""
        count, _ = await self._window_hit(
            keys=[self._k("outage", scope, subject)],
            args=[member, repr(at), repr(window_s), max_size],
        )
        return WindowCount(int(count))

    async def region_hit(
        self,
        region: str,
        deployment: str,
        member: str,
        at: float,
        window_s: float,
        max_size: int,
    ) -> WindowCount:
        """As `outage_hit`, and count the distinct deployments hit within the window."""
        count, deps = await self._window_hit(
            keys=[self._k("outage", "region", region), self._k("outage", "region-deps", region)],
            args=[member, repr(at), repr(window_s), max_size, deployment],
        )
        return WindowCount(int(count), int(deps))

    async def window_codes(self, scope: str, subject: str, at: float, window_s: float) -> list[int]:
        members = await self._r.zrangebyscore(
            self._k("outage", scope, subject), repr(at - window_s), repr(at)
        )
        codes: list[int] = []
        for m in members:
            text = m.decode() if isinstance(m, bytes) else str(m)
            _, _, code = text.rpartition("|")
            if code.isdigit():
                codes.append(int(code))
        return codes

    # -- hanging requests ------------------------------------------------------------
    def _hang_keys(self, request_id: str) -> list[str]:
        return [
            self._k("hang", "pending"),
            self._k("hang", "info"),
            self._k("hang", "done", request_id),
        ]

    async def request_started(self, request_id: str, deadline: float, record: str) -> bool:
        """Track a started request; False when it already finished (events out of order)."""
        added = await self._hang_start(
            keys=self._hang_keys(request_id), args=[repr(deadline), request_id, record]
        )
        return bool(added)

    async def request_finished(self, request_id: str, remember_s: float) -> None:
        await self._hang_finish(
            keys=self._hang_keys(request_id), args=[request_id, max(1, int(remember_s))]
        )

    async def take_hanging(self, now: float, limit: int = 100) -> list[tuple[str, str]]:
        """Claim the requests past their deadline (each is returned to one replica only)."""
        flat = await self._hang_due(
            keys=[self._k("hang", "pending"), self._k("hang", "info")], args=[repr(now), limit]
        )
        items = [x.decode() if isinstance(x, bytes) else str(x) for x in flat]
        return list(zip(items[0::2], items[1::2], strict=True))

    # -- report aggregates ---------------------------------------------------------------
    async def record_completion(
        self,
        spend_fields: Mapping[str, Decimal],
        deployment: str | None,
        deployment_info: str,
        latency_s: float,
        output_tokens: int,
    ) -> None:
        pipe = self._r.pipeline(transaction=False)
        for name, amount in spend_fields.items():
            units = int((amount * SPEND_SCALE).to_integral_value())
            if units:
                pipe.hincrby(self._k("agg", "spend"), name, units)
        if deployment:
            pipe.hincrbyfloat(self._k("agg", "latency"), deployment, latency_s)
            pipe.hincrby(self._k("agg", "tokens"), deployment, output_tokens)
            pipe.hincrby(self._k("agg", "ok"), deployment, 1)
            pipe.hset(self._k("agg", "deployments"), deployment, deployment_info)
        await pipe.execute()

    async def record_failure(self, deployment: str, deployment_info: str) -> None:
        pipe = self._r.pipeline(transaction=False)
        pipe.hincrby(self._k("agg", "failed"), deployment, 1)
        pipe.hset(self._k("agg", "deployments"), deployment, deployment_info)
        await pipe.execute()

    async def record_fallback(self, route: str) -> None:
        await self._r.hincrby(self._k("agg", "fallbacks"), route, 1)

    async def take_aggregates(self, *names: str) -> list[dict[str, str]]:
        """Each named aggregate hash as it stood, emptied for the next period."""
        keys = [self._k("agg", n) for n in names]
        moved = await self._snapshot(keys=keys, args=[secrets.token_hex(6)])
        out: list[dict[str, str]] = []
        for dest in moved:
            name = dest.decode() if isinstance(dest, bytes) else str(dest)
            if not name:
                out.append({})
                continue
            raw = await self._r.hgetall(name)
            await self._r.delete(name)
            out.append({_s(k): _s(v) for k, v in raw.items()})
        return out

    async def deployments(self) -> dict[str, dict[str, str]]:
        raw = await self._r.hgetall(self._k("agg", "deployments"))
        return {_s(k): json.loads(_s(v)) for k, v in raw.items()}

    # -- schedules -------------------------------------------------------------------------
    @asynccontextmanager
    async def lock(self, name: str, ttl_s: float) -> AsyncIterator[bool]:
        """Hold `name` for at most `ttl_s`; yields False when another replica holds it."""
        key = self._k("lock", name)
        token = secrets.token_hex(8)
        got = False
        try:
            got = bool(await self._r.set(key, token, nx=True, px=max(1, int(ttl_s * 1000))))
            yield got
        finally:
            if got:
                await self._release(keys=[key], args=[token])

    async def last_run(self, name: str) -> float | None:
        raw = await self._r.get(self._k("schedule", name))
        return float(_s(raw)) if raw is not None else None

    async def set_last_run(self, name: str, at: float) -> None:
        await self._r.set(self._k("schedule", name), repr(at))


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
