"""Response state in Redis, shared by every ingress replica: what `previous_response_id`,
`GET/DELETE /v1/responses/{id}` and its input items read. Written before the answer is sent,
so the next call sees it at once, on any replica."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

KEY_PREFIX = "tollgate:responses:"


@dataclass(frozen=True)
class StoredResponse:
    id: str
    api_key_hash: str
    team_id: str | None
    session_id: str | None
    native: bool
    model_id: str | None
    # This response's own input items (what /input_items lists).
    input_items: list[dict[str, Any]]
    # The whole conversation through this response's output (instructions excepted: OpenAI
    # does not carry them over), so a chain costs one read per turn, not one per ancestor.
    conversation: list[dict[str, Any]]
    response: dict[str, Any]

    def visible_to(self, api_key_hash: str, team_id: str | None, is_master: bool) -> bool:
        """The key that created it, its team, or the master key."""
        return (
            is_master
            or self.api_key_hash == api_key_hash
            or (self.team_id is not None and self.team_id == team_id)
        )


class ResponseStore:
    """One Redis key per stored response, expiring after the retention period."""

    def __init__(self, redis: aioredis.Redis, retention_s: float) -> None:
        self.redis = redis
        self.retention_s = max(1, int(retention_s))

    async def save(self, record: StoredResponse) -> None:
        await self.redis.set(
            KEY_PREFIX + record.id, orjson.dumps(asdict(record)), ex=self.retention_s
        )

    async def get(self, response_id: str) -> StoredResponse | None:
        raw = await self.redis.get(KEY_PREFIX + response_id)
        if raw is None:
            return None
        return StoredResponse(**orjson.loads(raw))

    async def delete(self, response_id: str) -> bool:
        return bool(await self.redis.delete(KEY_PREFIX + response_id))
