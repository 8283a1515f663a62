"""Names behind ids: key aliases, team aliases and user e-mails from the admin KV buckets."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js import JetStreamContext

from tollgate_alerter.rules import EntityInfo
from tollgate_shared import names
from tollgate_shared.kvview import KvView
from tollgate_shared.state import KeyState, TeamState, UserState

log = logging.getLogger(__name__)


class KvDirectory:
    """Live mirrors of the key, team and user buckets; lookups never do I/O."""

    def __init__(self) -> None:
        self.keys: KvView[KeyState] = KvView(names.KV_KEYS, KeyState)
        self.teams: KvView[TeamState] = KvView(names.KV_TEAMS, TeamState)
        self.users: KvView[UserState] = KvView(names.KV_USERS, UserState)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, js: JetStreamContext) -> None:
        """Start watching in the background: alerts are only less rich until loaded."""
        for view in (self.keys, self.teams, self.users):
            self._tasks.append(asyncio.create_task(self._start(view, js)))

    @staticmethod
    async def _start(
        view: KvView[KeyState] | KvView[TeamState] | KvView[UserState], js: JetStreamContext
    ) -> None:
        try:
            await view.start(js, ready_timeout=30)
        except TimeoutError:
            log.warning("bucket %s not loaded yet; alerts lack its names meanwhile", view.bucket)

    async def stop(self) -> None:
        for view in (self.keys, self.teams, self.users):
            await view.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def entity(self, entity: str, entity_id: str) -> EntityInfo:
        user_id: str | None = None
        team_id: str | None = None
        key_alias: str | None = None
        if entity == "key":
            key = self.keys.get(entity_id)
            if key is not None:
                key_alias, team_id, user_id = key.key_alias, key.team_id, key.user_id
        elif entity == "team":
            team_id = entity_id
        elif entity == "user":
            user_id = entity_id
        team = self.teams.get(team_id) if team_id else None
        user = self.users.get(user_id) if user_id else None
        return EntityInfo(
            key_alias=key_alias,
            team_id=team_id,
            team_alias=team.team_alias if team else None,
            user_id=user_id,
            user_email=user.user_email if user else None,
        )
