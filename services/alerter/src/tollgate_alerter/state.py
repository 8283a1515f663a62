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
from dataclasses import dataclass, field
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

# One fetched batch's hanging-request bookkeeping in one call. KEYS: pending, info, then
# the done marker of each finished request (ARGV[2] of them), then of each started one.
# ARGV: remember seconds, finished count, finished ids, then (deadline, id, record) per start.
_HANG_BATCH = """
local nf = tonumber(ARGV[2])
if nf > 0 then
  local ids = {}
  for i = 1, nf do
    ids[i] = ARGV[2 + i]
    redis.call('SET', KEYS[2 + i], '1', 'EX', ARGV[1])
  end
  redis.call('ZREM', KEYS[1], unpack(ids))
  redis.call('HDEL', KEYS[2], unpack(ids))
end
local added = 0
local ns = #KEYS - 2 - nf
for i = 1, ns do
  local at = 2 + nf + 3 * (i - 1)
  if redis.call('EXISTS', KEYS[2 + nf + i]) == 0 then
    redis.call('ZADD', KEYS[1], ARGV[at + 1], ARGV[at + 2])
    redis.call('HSET', KEYS[2], ARGV[at + 2], ARGV[at + 3])
    added = added + 1
  end
end
return added
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


@dataclass
class DeploymentTotals:
    latency_s: float = 0.0
    output_tokens: int = 0
    ok: int = 0
    failed: int = 0
    info: str = ""


@dataclass
class Effects:
    """What a batch of LLM events changes in the shared state, summed before one round trip.

    Started requests whose end is in the same batch are never tracked (they cannot hang);
    their end is still remembered, as one event at a time would leave it.
    """

    started: dict[str, tuple[float, str]] = field(default_factory=dict)  # id: (deadline, record)
    finished: dict[str, None] = field(default_factory=dict)  # ordered set of ids
    spend_units: dict[str, int] = field(default_factory=dict)
    deployments: dict[str, DeploymentTotals] = field(default_factory=dict)

    def start(self, request_id: str, deadline: float, record: str) -> None:
        if request_id not in self.finished:
            self.started[request_id] = (deadline, record)

    def finish(self, request_id: str) -> None:
        self.started.pop(request_id, None)
        self.finished[request_id] = None

    def completion(
        self,
        spend_fields: Mapping[str, Decimal],
        deployment: str | None,
        deployment_info: str,
        latency_s: float,
        output_tokens: int,
    ) -> None:
        for name, amount in spend_fields.items():
            units = int((amount * SPEND_SCALE).to_integral_value())
            if units:
                self.spend_units[name] = self.spend_units.get(name, 0) + units
        if deployment:
            totals = self._deployment(deployment, deployment_info)
            totals.latency_s += latency_s
            totals.output_tokens += output_tokens
            totals.ok += 1

    def failure(self, deployment: str, deployment_info: str) -> None:
        self._deployment(deployment, deployment_info).failed += 1

    def _deployment(self, deployment: str, info: str) -> DeploymentTotals:
        totals = self.deployments.get(deployment)
        if totals is None:
            totals = self.deployments[deployment] = DeploymentTotals()
        totals.info = info
        return totals

    def __bool__(self) -> bool:
        return bool(self.started or self.finished or self.spend_units or self.deployments)


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
        self._hang_due = redis.register_script(_HANG_DUE)
        self._hang_batch = redis.register_script(_HANG_BATCH)
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
    async def take_hanging(self, now: float, limit: int = 100) -> list[tuple[str, str]]:
        """Claim the requests past their deadline (each is returned to one replica only)."""
        flat = await self._hang_due(
            keys=[self._k("hang", "pending"), self._k("hang", "info")], args=[repr(now), limit]
        )
        items = [x.decode() if isinstance(x, bytes) else str(x) for x in flat]
        return list(zip(items[0::2], items[1::2], strict=True))

    # -- a batch's effects ------------------------------------------------------------
    async def apply(self, effects: Effects, remember_finished_s: float) -> None:
        """Write a batch's hanging-request bookkeeping and report aggregates in one round trip."""
        if not effects:
            return
        pipe = self._r.pipeline(transaction=False)
        if effects.started or effects.finished:
            finished = list(effects.finished)
            started = list(effects.started.items())
            keys = [self._k("hang", "pending"), self._k("hang", "info")]
            keys += [self._k("hang", "done", rid) for rid in finished]
            keys += [self._k("hang", "done", rid) for rid, _ in started]
            args: list[str | int] = [max(1, int(remember_finished_s)), len(finished), *finished]
            for rid, (deadline, record) in started:
                args += [repr(deadline), rid, record]
            await self._hang_batch(keys=keys, args=args, client=pipe)
        for name, units in effects.spend_units.items():
            pipe.hincrby(self._k("agg", "spend"), name, units)
        for deployment, t in effects.deployments.items():
            if t.ok:
                pipe.hincrbyfloat(self._k("agg", "latency"), deployment, t.latency_s)
                pipe.hincrby(self._k("agg", "tokens"), deployment, t.output_tokens)
                pipe.hincrby(self._k("agg", "ok"), deployment, t.ok)
            if t.failed:
                pipe.hincrby(self._k("agg", "failed"), deployment, t.failed)
            pipe.hset(self._k("agg", "deployments"), deployment, t.info)
        await pipe.execute()

    # -- report aggregates ---------------------------------------------------------------
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
