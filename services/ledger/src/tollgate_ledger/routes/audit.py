"""Read routes for the audit log (LiteLLM's /audit and /audit/{id} shapes)."""

from __future__ import annotations

from typing import Annotated

from litestar import Response, Router, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, QueryParameter

from tollgate_ledger.audit import audit_table_filter
from tollgate_ledger.filters import AuditFilter, date_range, page_envelope, sort_ascending
from tollgate_ledger.routes.guards import ReadDeps, Scoped, read_guard, scope_provider
from tollgate_ledger.routes.responses import json_response, operation_ids

Str = Annotated[str | None, QueryParameter(max_length=512)]


def audit_router(deps: ReadDeps) -> Router:
    @get(
        ["/audit", "/audit/logs"],
        operation_id=operation_ids({"/audit": "audit_logs", "/audit/logs": "audit_logs_list"}),
        summary="Audit log, paginated",
    )
    async def audit_logs(
        object_id: Str = None,
        table_name: Str = None,
        entity: Str = None,
        action: Str = None,
        changed_by: Str = None,
        changed_by_api_key: Str = None,
        start_date: Str = None,
        end_date: Str = None,
        sort_order: FromQuery[str] = "desc",
        page: Annotated[int, QueryParameter(ge=1, le=1_000_000)] = 1,
        page_size: Annotated[int, QueryParameter(ge=1, le=1000)] = 10,
        *,
        key_scope: Scoped,
    ) -> Response[bytes]:
        """`{audit_logs, total, page, page_size, total_pages}`, newest first (LiteLLM's shape).

        Filters: `object_id`, `table_name` (LiteLLM's table name such as
        LiteLLM_VerificationToken, or Tollgate's entity: key, team, user, model; `entity` is
        an alias), `action` (created, updated, deleted, ...), `changed_by`,
        `changed_by_api_key`, `start_date`/`end_date` on updated_at.
        """
        key_scope.require_master("the audit log")
        ascending = sort_ascending(sort_order)
        start, end = date_range(start_date, end_date)
        table = table_name or entity
        f = AuditFilter(
            object_id=object_id or None,
            table_name=audit_table_filter(table) if table else None,
            action=action or None,
            changed_by=changed_by or None,
            changed_by_api_key=changed_by_api_key or None,
            start=start,
            end=end,
        )
        rows, total = await deps.reads.audit_logs(
            f, limit=page_size, offset=(page - 1) * page_size, ascending=ascending
        )
        return json_response(page_envelope(rows, total, page, page_size, key="audit_logs"))

    @get("/audit/{audit_id:str}", operation_id="audit_log_get", summary="One audit log entry")
    async def audit_log_get(audit_id: FromPath[str], key_scope: Scoped) -> Response[bytes]:
        """One audit entry by id: id, updated_at, changed_by, changed_by_api_key, action,
        table_name, object_id, before_value, updated_values. 404 when unknown."""
        key_scope.require_master("the audit log")
        row = await deps.reads.audit_log(audit_id)
        if row is None:
            raise NotFoundException(f"Audit log with ID {audit_id} not found")
        return json_response(row)

    return Router(
        path="/",
        route_handlers=[audit_logs, audit_log_get],
        tags=["Audit Logging"],
        dependencies={"key_scope": scope_provider(deps)},
        guards=[read_guard(deps)],
    )
