"""Limits counted in Redis so every replica agrees: requests and tokens per minute of a key,
its team and its user, and a key's requests in flight (`max_parallel_requests`).

Fixed one-minute windows (`INCR` + `EXPIRE` in one pipeline). Requests in flight
are slots in a sorted set, taken when a call is admitted and given back when its
answer (or its stream) ends; a slot older than `PARALLEL_TTL_S` is dropped, so
what a crashed replica held comes back then. Only keys with a
limit cost a Redis round trip. When Redis is unreachable the limiter fails open
with a warning: availability beats exact limits.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from tollgate_ingress.auth import AuthError, Identity, RateLimit

log = logging.getLogger(__name__)

_PREFIX = "tollgate:ratelimit"
# Longer than any call may take (LiteLLM's default timeout is 600 s).
PARALLEL_TTL_S = 900


def _window(now: float) -> int:
    return int(now // 60)


class RateLimiter:
    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def admit(self, identity: Identity, now: float | None = None) -> None:
        """Count this request against the key's, team's and user's minute; refuse with 429
        past any rpm, or once any tpm is already used up."""
        limits = identity.rate_limits
        if not limits:
            return
        w = _window(now or time.time())
        try:
            pipe = self.redis.pipeline(transaction=False)
            for limit in limits:
                base = _base(limit, w)
                pipe.incr(f"{base}:rpm")
                pipe.expire(f"{base}:rpm", 120)
                pipe.get(f"{base}:tpm")
            replies = await pipe.execute()
        except Exception as exc:
            log.warning("rate limiter unavailable (%s); request admitted", exc)
            return
        for i, limit in enumerate(limits):
            requests, _, tokens = replies[3 * i : 3 * i + 3]
            if limit.rpm is not None and int(requests) > limit.rpm:
                _refuse(limit, f"{limit.rpm} requests")
            if limit.tpm is not None and int(tokens or 0) >= limit.tpm:
                _refuse(limit, f"{limit.tpm} tokens")

    async def enter(self, identity: Identity, now: float | None = None) -> str | None:
        """Take one of the key's parallel slots, or refuse with 429 when all are in use.

        Returns the slot (give it back with `leave`), or None when there is no limit or
        Redis cannot count. A slot is a member of a sorted set scored by when it was
        taken; slots older than `PARALLEL_TTL_S` (a replica that died mid-call) are
        dropped on the next admission, so a crash never holds a slot for good.
        """
        limit = identity.max_parallel_requests
        if limit is None:
            return None
        key = _parallel_key(identity)
        slot = uuid.uuid4().hex
        t = now or time.time()
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.zremrangebyscore(key, "-inf", t - PARALLEL_TTL_S)
            pipe.zadd(key, {slot: t})
            pipe.zcard(key)
            pipe.expire(key, PARALLEL_TTL_S)
            _, _, in_flight, _ = await pipe.execute()
        except Exception as exc:
            log.warning("rate limiter unavailable (%s); request admitted", exc)
            return None
        if int(in_flight) > limit:
            await self.leave(identity, slot)
            raise AuthError(
                429,
                f"Max parallel request limit reached: key allows {limit} requests at once",
                "max_parallel_requests_exceeded",
            )
        return slot

    async def leave(self, identity: Identity, slot: str) -> None:
        """Give back a slot taken by `enter`."""
        try:
            await self.redis.zrem(_parallel_key(identity), slot)
        except Exception as exc:
            log.warning("rate limiter unavailable (%s); a parallel slot expires instead", exc)

    async def spend_tokens(self, identity: Identity, tokens: int, now: float | None = None) -> None:
        """Add a finished call's tokens to the minute of every limit that counts tokens."""
        counted = [limit for limit in identity.rate_limits if limit.tpm is not None]
        if not counted or tokens <= 0:
            return
        w = _window(now or time.time())
        try:
            pipe = self.redis.pipeline(transaction=False)
            for limit in counted:
                key = f"{_base(limit, w)}:tpm"
                pipe.incrby(key, tokens)
                pipe.expire(key, 120)
            await pipe.execute()
        except Exception as exc:
            log.warning("rate limiter unavailable (%s); %d tokens not counted", exc, tokens)


def _parallel_key(identity: Identity) -> str:
    return f"{_PREFIX}:key:{identity.api_key_hash}:parallel"


def _base(limit: RateLimit, window: int) -> str:
    return f"{_PREFIX}:{limit.entity}:{limit.entity_id}:{window}"


def _refuse(limit: RateLimit, allowed: str) -> None:
    who = "key" if limit.entity == "key" else f"{limit.entity} {limit.entity_id}"
    raise AuthError(
        429,
        f"Rate limit exceeded: {who} allows {allowed} per minute",
        "rate_limit_exceeded",
    )
