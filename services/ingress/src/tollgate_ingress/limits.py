"""Admission counted in Redis so every replica agrees: requests and tokens per minute of a
key, its team and its user, a key's requests in flight (`max_parallel_requests`), and
budget reservations.

One Lua script admits a call in one round trip, atomically: it checks every limit
first and counts nothing unless all pass, so a key refused by its own limit never
uses up its team's (refusals are counted apart, in `...:refused`). Fixed one-minute
windows. Requests in flight are slots in a sorted set; a slot older than
`PARALLEL_TTL_S` is dropped, so what a crashed replica held comes back then.

A budget reservation is an estimated cost (integer nano-USD) held per key/team/user in
a hash (`_total` is the sum) with each reservation's deadline in a sorted set. A call
is admitted when the entity's headroom (max budget minus committed spend) is positive
and, if anything else is reserved, the reservations plus this estimate fit in it. When
the call ends its reservation becomes its real cost, held until the ledger has had time
to commit it (`release`), then dropped; a reservation whose replica died expires.

Only callers with a limit or a budget cost a Redis round trip. When Redis is unreachable
rate limits fail open with a warning (availability beats exact limits); budgets raise
`LimiterUnavailable`, and the gateway decides (fail closed unless configured open).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tollgate_ingress.auth import AuthError, Identity, RateLimit

log = logging.getLogger(__name__)

_PREFIX = "tollgate:ratelimit"
_BUDGET = "tollgate:budget"
# Longer than any call may take (LiteLLM's default timeout is 600 s).
PARALLEL_TTL_S = 900
_WINDOW_TTL_S = 120
NANO_PER_USD = 10**9


def to_nano(usd: Decimal) -> int:
    """USD as integer nano-USD, rounded up (a reservation never rounds below the cost)."""
    return math.ceil(usd * NANO_PER_USD)


# KEYS: per limit (rpm, tpm, refused); the parallel set; per budget (hash, deadlines).
# ARGV: now, n_limits, n_budgets, parallel limit (-1: none), member, parallel ttl,
#       reservation deadline, then per limit (rpm, tpm) (-1: none), per budget
#       (headroom, amount).
# Returns {0} when admitted, else {reason, index}: 1 rpm, 2 tpm, 3 parallel, 4 budget.
_ADMIT = """
local now = tonumber(ARGV[1])
local nl = tonumber(ARGV[2])
local nb = tonumber(ARGV[3])
local plimit = tonumber(ARGV[4])
local member = ARGV[5]
local pttl = tonumber(ARGV[6])
local deadline = ARGV[7]
local a = 8
local function refuse(i, why)
  local k = KEYS[3 * i + 3]
  redis.call('INCR', k)
  redis.call('EXPIRE', k, 120)
  return {why, i}
end
for i = 0, nl - 1 do
  local rpm = tonumber(ARGV[a + 2 * i])
  local tpm = tonumber(ARGV[a + 2 * i + 1])
  if rpm >= 0 and tonumber(redis.call('GET', KEYS[3 * i + 1]) or '0') + 1 > rpm then
    return refuse(i, 1)
  end
  if tpm >= 0 and tonumber(redis.call('GET', KEYS[3 * i + 2]) or '0') >= tpm then
    return refuse(i, 2)
  end
end
local pk = KEYS[3 * nl + 1]
if plimit >= 0 then
  redis.call('ZREMRANGEBYSCORE', pk, '-inf', now - pttl)
  if redis.call('ZCARD', pk) + 1 > plimit then
    return {3, 0}
  end
end
local b = a + 2 * nl
for j = 0, nb - 1 do
  local h = KEYS[3 * nl + 2 + 2 * j]
  local z = KEYS[3 * nl + 3 + 2 * j]
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, rid in ipairs(expired) do
    local amt = redis.call('HGET', h, rid)
    if amt then
      redis.call('HINCRBY', h, '_total', string.format('%d', -tonumber(amt)))
      redis.call('HDEL', h, rid)
    end
  end
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
  end
  local headroom = tonumber(ARGV[b + 2 * j])
  local amount = tonumber(ARGV[b + 2 * j + 1])
  local total = tonumber(redis.call('HGET', h, '_total') or '0')
  if headroom <= 0 or (total > 0 and total + amount > headroom) then
    return {4, j}
  end
end
for i = 0, nl - 1 do
  if tonumber(ARGV[a + 2 * i]) >= 0 then
    redis.call('INCR', KEYS[3 * i + 1])
    redis.call('EXPIRE', KEYS[3 * i + 1], 120)
  end
end
if plimit >= 0 then
  redis.call('ZADD', pk, now, member)
  redis.call('EXPIRE', pk, pttl)
end
for j = 0, nb - 1 do
  local h = KEYS[3 * nl + 2 + 2 * j]
  local z = KEYS[3 * nl + 3 + 2 * j]
  local amount = ARGV[b + 2 * j + 1]
  redis.call('HSET', h, member, amount)
  redis.call('HINCRBY', h, '_total', amount)
  redis.call('ZADD', z, deadline, member)
  redis.call('EXPIRE', h, pttl * 2)
  redis.call('EXPIRE', z, pttl * 2)
end
return {0}
"""

# KEYS: the parallel set; per token limit its tpm counter; per budget (hash, deadlines).
# ARGV: member, n_tpm, n_budgets, tokens, then per budget (cost, hold deadline).
_RELEASE = """
local member = ARGV[1]
local nt = tonumber(ARGV[2])
local nb = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
redis.call('ZREM', KEYS[1], member)
if tokens > 0 then
  for i = 1, nt do
    redis.call('INCRBY', KEYS[1 + i], ARGV[4])
    redis.call('EXPIRE', KEYS[1 + i], 120)
  end
end
for j = 0, nb - 1 do
  local h = KEYS[2 + nt + 2 * j]
  local z = KEYS[3 + nt + 2 * j]
  local old = redis.call('HGET', h, member)
  if old then
    local cost = ARGV[5 + 2 * j]
    if tonumber(cost) > 0 then
      redis.call('HSET', h, member, cost)
      redis.call('HINCRBY', h, '_total', string.format('%d', tonumber(cost) - tonumber(old)))
      redis.call('ZADD', z, ARGV[6 + 2 * j], member)
    else
      redis.call('HDEL', h, member)
      redis.call('HINCRBY', h, '_total', string.format('%d', -tonumber(old)))
      redis.call('ZREM', z, member)
    end
  end
end
return 0
"""


@dataclass(frozen=True)
class Reservation:
    """An estimated cost to hold against one key/team/user budget while a call runs.

    `headroom` is the max budget minus the committed spend, `amount` the estimate
    (both nano-USD); `period_end` bounds how long the settled cost is held.
    """

    entity: str
    entity_id: str
    headroom: int
    amount: int
    period_end: float | None = None


@dataclass
class Ticket:
    """What one admitted call holds in Redis: give it back with `RateLimiter.release`."""

    member: str
    parallel_key: str | None
    tpm_keys: list[str] = field(default_factory=list)
    reservations: list[Reservation] = field(default_factory=list)


class LimiterUnavailableError(Exception):
    """Redis could not be asked, and the call has a budget (which must not be guessed)."""


class RateLimiter:
    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._admit = redis.register_script(_ADMIT)
        self._release = redis.register_script(_RELEASE)

    async def admit(
        self,
        identity: Identity,
        now: float | None = None,
        *,
        reserve: list[Reservation] | tuple[Reservation, ...] = (),
        member: str | None = None,
    ) -> Ticket | None:
        """Admit one call against every rpm/tpm, the key's parallel slots and the budgets in
        `reserve`, all or nothing; refuse with AuthError (429, or 400 `budget_exceeded`).

        Returns the ticket to `release` when the call ends, or None when nothing was
        counted (no limit, no budget, or Redis down and no budget to guard).
        """
        limits = identity.rate_limits
        plimit = identity.max_parallel_requests
        if not limits and plimit is None and not reserve:
            return None
        t = now or time.time()
        w = _window(t)
        member = member or f"{t:.6f}-{id(identity):x}-{time.perf_counter_ns()}"
        pkey = _parallel_key(identity)
        keys: list[str] = []
        args: list[Any] = [
            repr(t),
            len(limits),
            len(reserve),
            -1 if plimit is None else plimit,
            member,
            PARALLEL_TTL_S,
            repr(t + PARALLEL_TTL_S),
        ]
        for limit in limits:
            base = _base(limit, w)
            keys += [f"{base}:rpm", f"{base}:tpm", f"{base}:refused"]
            args += [
                -1 if limit.rpm is None else limit.rpm,
                -1 if limit.tpm is None else limit.tpm,
            ]
        keys.append(pkey)
        for r in reserve:
            keys += list(_budget_keys(r))
            args += [r.headroom, r.amount]
        try:
            reply = await self._admit(keys=keys, args=args)
        except Exception as exc:
            if reserve:
                raise LimiterUnavailableError(str(exc)) from exc
            log.warning("rate limiter unavailable (%s); request admitted", exc)
            return None
        why = int(reply[0])
        if why == 1:
            _refuse(limits[int(reply[1])], f"{limits[int(reply[1])].rpm} requests")
        elif why == 2:
            _refuse(limits[int(reply[1])], f"{limits[int(reply[1])].tpm} tokens")
        elif why == 3:
            raise AuthError(
                429,
                f"Max parallel request limit reached: key allows {plimit} requests at once",
                "max_parallel_requests_exceeded",
            )
        elif why == 4:
            r = reserve[int(reply[1])]
            raise AuthError(
                400,
                f"Budget has been exceeded! {r.entity} {r.entity_id}: spend committed and "
                f"reserved by calls in flight leaves no room for this call "
                f"(estimated {Decimal(r.amount) / NANO_PER_USD} USD)",
                "budget_exceeded",
                type_="budget_exceeded",
            )
        return Ticket(
            member=member,
            parallel_key=pkey if plimit is not None else None,
            tpm_keys=[f"{_base(x, w)}:tpm" for x in limits if x.tpm is not None],
            reservations=list(reserve),
        )

    async def release(
        self,
        ticket: Ticket,
        *,
        tokens: int,
        costs: list[int] | None = None,
        hold_until: list[float] | None = None,
    ) -> None:
        """Give back the call's parallel slot, count its tokens in this minute, and turn each
        reservation into the call's cost (nano-USD), held until `hold_until` (or drop it
        when the cost is 0)."""
        keys = [ticket.parallel_key or f"{_PREFIX}:none", *ticket.tpm_keys]
        args: list[Any] = [
            ticket.member,
            len(ticket.tpm_keys),
            len(ticket.reservations),
            max(tokens, 0),
        ]
        for i, r in enumerate(ticket.reservations):
            keys += list(_budget_keys(r))
            args += [
                (costs[i] if costs else 0),
                repr(hold_until[i] if hold_until else time.time()),
            ]
        try:
            await self._release(keys=keys, args=args)
        except Exception as exc:
            log.warning(
                "rate limiter unavailable (%s); the call's slot and reservations expire instead",
                exc,
            )


def _window(now: float) -> int:
    return int(now // 60)


def _parallel_key(identity: Identity) -> str:
    return f"{_PREFIX}:key:{identity.api_key_hash}:parallel"


def _base(limit: RateLimit, window: int) -> str:
    return f"{_PREFIX}:{limit.entity}:{limit.entity_id}:{window}"


def _budget_keys(r: Reservation) -> tuple[str, str]:
    base = f"{_BUDGET}:{r.entity}:{r.entity_id}"
    return f"{base}:reserved", f"{base}:deadlines"


def _refuse(limit: RateLimit, allowed: str) -> None:
    who = "key" if limit.entity == "key" else f"{limit.entity} {limit.entity_id}"
    raise AuthError(
        429,
        f"Rate limit exceeded: {who} allows {allowed} per minute",
        "rate_limit_exceeded",
    )
