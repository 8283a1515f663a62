"""The control plane's use cases, one module per area (keys, teams, users, models), behind
the one `AdminService` the routes call. Each write is a unit of work (`tollgate_admin.uow`):
one PostgreSQL transaction that also queues its `admin.*` events in the outbox; after commit
the KV buckets are updated and the events published. Reads answer from PostgreSQL (plus the
ledger's spend bucket for display)."""

from __future__ import annotations

from tollgate_admin import auth, store
from tollgate_admin.service.keys import KeyService
from tollgate_admin.service.models import ModelService
from tollgate_admin.service.teams import TeamService
from tollgate_admin.service.users import UserService
from tollgate_admin.uow import UnitOfWork
from tollgate_shared.config import TollgateConfig
from tollgate_shared.sealing import Sealer

__all__ = ["AdminService", "KeyService", "ModelService", "TeamService", "UserService"]


class AdminService(KeyService, TeamService, UserService, ModelService):
    """Every area's use cases on one object, plus who is calling."""

    def __init__(
        self,
        uow: UnitOfWork,
        cfg: TollgateConfig,
        sealer: Sealer | None = None,
        master_key: str | None = None,
    ) -> None:
        super().__init__(uow, cfg, sealer)
        self.master_key = master_key

    async def authenticate(self, presented: str | None) -> auth.Caller:
        """The caller the presented key stands for (401/403 when none may call)."""
        return await auth.authenticate(presented, self.master_key, self._find_key)

    async def _find_key(self, token: str) -> store.Row | None:
        async with self.uow.pool.acquire() as conn:
            return await store.get_key(conn, token)
