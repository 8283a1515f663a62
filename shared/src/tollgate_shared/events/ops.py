"""Operations events: the supervisor of `./just up` on services and servers that crash-loop."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from tollgate_shared import names
from tollgate_shared.events.base import Event
from tollgate_shared.vocabulary import ServiceCondition


class ServiceCrashLoop(Event):
    """A supervised service or server entered a crash loop, or ran stable again after one."""

    event_type: ClassVar[str] = names.ops_service_subject("crash_loop")
    condition: ServiceCondition = Field(
        description="`crash_loop`: N exits within the window; `recovered`: it stayed up again"
    )
    service: str = Field(description="the supervised unit: a service (ledger, …) or a server")
    kind: Literal["service", "server"] = "service"
    loop_id: str = Field(
        description="one crash loop: the same id on its `crash_loop` and `recovered` events"
    )
    host: str = Field(description="the machine the supervisor runs on")
    exits: int = Field(0, description="exits within the window when the loop was seen")
    window_s: float = Field(0.0, description="the crash-loop window, seconds")
    restarts: int = Field(0, description="restarts of the unit since the supervisor started")
    last_exit_code: int | None = None
    retry_in_s: float | None = Field(None, description="seconds until the next restart")
    log_file: str | None = Field(None, description="where the unit's output is, on that host")

    def subject(self) -> str:
        return names.ops_service_subject(self.condition)
