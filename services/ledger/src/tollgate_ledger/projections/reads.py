"""Read queries behind the ledger's HTTP API (spend logs, sessions, totals, audit log)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from tollgate_ledger.filters import STATUSES, AuditFilter, SpendLogFilter

_SPEND_JSON = ("metadata", "request_tags", "messages", "response", "proxy_server_request")
_AUDIT_JSON = ("before_value", "updated_values")
# The spend-row column behind each daily dimension, for one key's own aggregates.
_KEY_DIMENSIONS = {
    "key": "api_key",
    "team": "team_id",
    "user": '"user"',
    "end_user": "end_user",
    "model": "model",
    "tag": "t.tag",
}


def _row(rec: asyncpg.Record, json_cols: tuple[str, ...]) -> dict[str, Any]:
    out = dict(rec)
    for col in json_cols:
        if isinstance(out.get(col), str):
            out[col] = orjson.loads(out[col])
    return out


class _Where:
    """Collects `column = $n` conditions with numbered parameters."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.args: list[Any] = []

    def add(self, sql: str, value: Any) -> None:
        """`sql` holds `{}` where the parameter goes, e.g. `"user" = {}`."""
        if value is None:
            return
        self.args.append(value)
        self.parts.append(sql.format(f"${len(self.args)}"))

    def clause(self) -> str:
        return f"WHERE {' AND '.join(self.parts)}" if self.parts else ""

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


def _spend_where(
    f: SpendLogFilter, key_scope: str | None = None, *, with_model: bool = True
) -> _Where:
    """The filter's conditions; `with_model=False` leaves the model out for a caller that
    splits it into index-friendly branches (`_model_branches`)."""
    w = _Where()
    # A virtual key's scope is one more condition: a filter on another key finds nothing.
    w.add("api_key = {}", key_scope)
    w.add("request_id = {}", f.request_id)
    w.add("api_key = {}", f.api_key)
    w.add('"user" = {}', f.user_id)
    w.add("team_id = {}", f.team_id)
    w.add("session_id = {}", f.session_id)
    if f.status in STATUSES:
        # A literal, not a parameter: a generic plan (asyncpg prepares, PostgreSQL switches
        # to one after five runs) can then still prove migration 0005's partial index of
        # failures, instead of walking every row's time to count them.
        w.parts.append(f"status = '{f.status}'")
    else:
        w.add("status = {}", f.status)
    if with_model:
        w.add("(model = {0} OR model_group = {0})", f.model)
    w.add("key_alias = {}", f.key_alias)
    w.add("end_user = {}", f.end_user)
    w.add("request_tags @> {}::jsonb", orjson.dumps([f.tag]).decode() if f.tag else None)
    w.add('"startTime" >= {}', f.start)
    w.add('"startTime" <= {}', f.end)
    w.add("spend >= {}", f.min_spend)
    w.add("spend <= {}", f.max_spend)
    return w


# The group of a row whose model has another name: migration 0006's indexed expression, so
# `_GROUP_ONLY = m` is the second branch of the model filter, ordered by that index.
_GROUP_ONLY = "(CASE WHEN model IS DISTINCT FROM model_group THEN model_group END)"


def _model_branches(w: _Where, model: str | None) -> list[str]:
    """WHERE clauses whose rows together are the filter's: the model filter matches `model`
    OR `model_group`, which no single index orders by time, so it becomes two branches that
    never overlap, each ordered by its own index and stopped at the page."""
    if model is None:
        return [w.clause()]
    m = w.param(model)
    return [
        f"WHERE {' AND '.join([*w.parts, f'model = {m}'])}",
        f"WHERE {' AND '.join([*w.parts, f'{_GROUP_ONLY} = {m}'])}",
    ]


def _audit_where(f: AuditFilter) -> _Where:
    w = _Where()
    w.add("object_id = {}", f.object_id)
    w.add("table_name = {}", f.table_name)
    w.add("action = {}", f.action)
    w.add("changed_by = {}", f.changed_by)
    w.add("changed_by_api_key = {}", f.changed_by_api_key)
    w.add("updated_at >= {}", f.start)
    w.add("updated_at <= {}", f.end)
    return w


class LedgerReader:
    def __init__(self, schema: str) -> None:
        self.s = f'"{schema}"'

    async def spend_logs(
        self,
        conn: asyncpg.Connection,
        f: SpendLogFilter,
        *,
        limit: int,
        offset: int,
        ascending: bool = False,
        count: bool = True,
        key_scope: str | None = None,
        count_limit: int | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of rows and the total; with `count_limit`, counting stops past that many
        (the total is then `count_limit + 1`: "more than"), which keeps a wide filter fast."""
        w = _spend_where(f, key_scope, with_model=False)
        order = "ASC" if ascending else "DESC"
        sort = f'ORDER BY "startTime" {order}, request_id {order}'
        table = f"{self.s}.spend_logs"
        branches = _model_branches(w, f.model)
        lim, off = w.param(limit), w.param(offset)
        if len(branches) == 1:
            page_sql = f"SELECT * FROM {table} {branches[0]} {sort} LIMIT {lim} OFFSET {off}"
        else:
            upto = w.param(limit + offset)
            union = " UNION ALL ".join(
                f"(SELECT * FROM {table} {b} {sort} LIMIT {upto})" for b in branches
            )
            page_sql = f"SELECT * FROM ({union}) u {sort} LIMIT {lim} OFFSET {off}"
        rows = await conn.fetch(page_sql, *w.args)
        total = len(rows) + offset
        if count:
            wc = _spend_where(f, key_scope, with_model=False)
            parts = _model_branches(wc, f.model)
            if count_limit is None:
                sql = " + ".join(f"(SELECT count(*) FROM {table} {b})" for b in parts)
                sql = f"SELECT {sql}"
            else:
                cap = wc.param(count_limit + 1)
                union = " UNION ALL ".join(
                    f"(SELECT 1 FROM {table} {b} LIMIT {cap})" for b in parts
                )
                sql = f"SELECT count(*) FROM (SELECT 1 FROM ({union}) u LIMIT {cap}) capped"
            total = await conn.fetchval(sql, *wc.args)
        return [_row(r, _SPEND_JSON) for r in rows], int(total)

    async def spend_summary(
        self, conn: asyncpg.Connection, f: SpendLogFilter, key_scope: str | None = None
    ) -> list[dict[str, Any]]:
        """LiteLLM's summarized /spend/logs: spend per day, per key, user and model."""
        w = _spend_where(f, key_scope)
        rows = await conn.fetch(
            f"""SELECT ("startTime" AT TIME ZONE 'UTC')::date AS day, api_key, "user", model,
                       sum(spend) AS spend
                FROM {self.s}.spend_logs {w.clause()}
                GROUP BY 1, 2, 3, 4 ORDER BY 1""",
            *w.args,
        )
        days: dict[date, dict[str, Any]] = {}
        for r in rows:
            day = days.setdefault(r["day"], {"spend": Decimal(0), "users": {}, "models": {}})
            day["spend"] += r["spend"]
            day[r["api_key"]] = day.get(r["api_key"], Decimal(0)) + r["spend"]
            day["users"][r["user"]] = day["users"].get(r["user"], Decimal(0)) + r["spend"]
            day["models"][r["model"]] = day["models"].get(r["model"], Decimal(0)) + r["spend"]
        return [{**v, "startTime": k.isoformat()} for k, v in sorted(days.items())]

    async def spend_report(
        self, conn: asyncpg.Connection, f: SpendLogFilter, key_scope: str | None = None
    ) -> list[dict[str, Any]]:
        """Spend and tokens per UTC day, team, end user, model and key (LiteLLM's
        /global/spend/report, before it is shaped); a team carries its last alias."""
        w = _spend_where(f, key_scope)
        rows = await conn.fetch(
            f"""SELECT ("startTime" AT TIME ZONE 'UTC')::date AS day, team_id,
                       (array_agg(team_alias ORDER BY "startTime" DESC)
                            FILTER (WHERE team_alias IS NOT NULL))[1] AS team_alias,
                       end_user, model, api_key, sum(spend) AS spend,
                       sum(total_tokens) AS total_tokens,
                       sum(prompt_tokens) AS prompt_tokens,
                       sum(completion_tokens) AS completion_tokens
                FROM {self.s}.spend_logs {w.clause()}
                GROUP BY 1, 2, 4, 5, 6 ORDER BY 1, 7 DESC""",
            *w.args,
        )
        return [dict(r) for r in rows]

    async def session(self, conn: asyncpg.Connection, session_id: str) -> dict[str, Any] | None:
        rec = await conn.fetchrow(
            f"SELECT * FROM {self.s}.sessions WHERE session_id = $1", session_id
        )
        return dict(rec) if rec else None

    async def sessions(
        self,
        conn: asyncpg.Connection,
        *,
        limit: int,
        offset: int,
        start: datetime | None,
        end: datetime | None,
    ) -> tuple[list[dict[str, Any]], int]:
        w = _Where()
        w.add("last_seen >= {}", start)
        w.add("first_seen <= {}", end)
        total = await conn.fetchval(f"SELECT count(*) FROM {self.s}.sessions {w.clause()}", *w.args)
        lim, off = w.param(limit), w.param(offset)
        rows = await conn.fetch(
            f"SELECT * FROM {self.s}.sessions {w.clause()} "
            f"ORDER BY last_seen DESC, session_id LIMIT {lim} OFFSET {off}",
            *w.args,
        )
        return [dict(r) for r in rows], int(total)

    async def key_sessions(
        self,
        conn: asyncpg.Connection,
        key_hash: str,
        *,
        limit: int,
        offset: int,
        start: datetime | None,
        end: datetime | None,
        session_id: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Sessions as one key saw them: totals of that key's own rows only (a session id
        shared with other keys shows none of their calls)."""
        w = _Where()
        w.add("api_key = {}", key_hash)
        w.add("session_id = {}", session_id)
        having = _Where()
        having.args = w.args
        having.add('max("startTime") >= {}', start)
        having.add('min("startTime") <= {}', end)
        grouped = f"""SELECT session_id, min("startTime") AS first_seen,
                       max("startTime") AS last_seen,
                       count(*) AS request_count,
                       count(*) FILTER (WHERE status = 'success') AS success_count,
                       count(*) FILTER (WHERE status <> 'success') AS failure_count,
                       sum(spend) AS spend, sum(prompt_tokens) AS prompt_tokens,
                       sum(completion_tokens) AS completion_tokens,
                       sum(total_tokens) AS total_tokens
                FROM {self.s}.spend_logs {w.clause()} AND session_id IS NOT NULL
                GROUP BY session_id """ + (
            f"HAVING {' AND '.join(having.parts)}" if having.parts else ""
        )
        total = await conn.fetchval(f"SELECT count(*) FROM ({grouped}) g", *w.args)
        lim, off = w.param(limit), w.param(offset)
        rows = await conn.fetch(
            f"{grouped} ORDER BY last_seen DESC, session_id LIMIT {lim} OFFSET {off}", *w.args
        )
        return [dict(r) for r in rows], int(total)

    async def daily(
        self,
        conn: asyncpg.Connection,
        dimension: str,
        *,
        since: date,
        until: date | None,
        dimension_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Spend, requests and tokens per day and id of one dimension (the daily aggregate)."""
        w = _Where()
        w.add("dimension = {}", dimension)
        w.add("dimension_id = {}", dimension_id)
        w.add("day >= {}", since)
        w.add("day <= {}", until)
        rows = await conn.fetch(
            f"""SELECT day, dimension_id, spend, requests, successes, failures,
                       prompt_tokens, completion_tokens, total_tokens
                FROM {self.s}.daily_spend {w.clause()} ORDER BY day, spend DESC, dimension_id""",
            *w.args,
        )
        return [dict(r) for r in rows]

    async def key_daily(
        self,
        conn: asyncpg.Connection,
        key_hash: str,
        dimension: str,
        *,
        since: date,
        until: date | None,
    ) -> list[dict[str, Any]]:
        """`daily` for one key's own calls, summed from its spend rows (the daily aggregate
        does not split a model's or a tag's spend by key)."""
        column = _KEY_DIMENSIONS[dimension]
        lateral = (
            "CROSS JOIN LATERAL jsonb_array_elements_text("
            "CASE WHEN jsonb_typeof(request_tags) = 'array' THEN request_tags "
            "ELSE '[]'::jsonb END) AS t(tag)"
            if dimension == "tag"
            else ""
        )
        w = _Where()
        w.add("api_key = {}", key_hash)
        w.add('"startTime" >= {}', datetime.combine(since, time(), UTC))
        w.add(
            '"startTime" < {}',
            datetime.combine(until, time(), UTC) + timedelta(days=1) if until else None,
        )
        rows = await conn.fetch(
            f"""SELECT ("startTime" AT TIME ZONE 'UTC')::date AS day,
                       COALESCE({column}, '') AS dimension_id, sum(spend) AS spend,
                       count(*) AS requests,
                       count(*) FILTER (WHERE status = 'success') AS successes,
                       count(*) FILTER (WHERE status <> 'success') AS failures,
                       sum(prompt_tokens) AS prompt_tokens,
                       sum(completion_tokens) AS completion_tokens,
                       sum(total_tokens) AS total_tokens
                FROM {self.s}.spend_logs {lateral} {w.clause()}
                GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2""",
            *w.args,
        )
        return [dict(r) for r in rows]

    async def audit_logs(
        self,
        conn: asyncpg.Connection,
        f: AuditFilter,
        *,
        limit: int,
        offset: int,
        ascending: bool = False,
    ) -> tuple[list[dict[str, Any]], int]:
        w = _audit_where(f)
        total = await conn.fetchval(
            f"SELECT count(*) FROM {self.s}.audit_log {w.clause()}", *w.args
        )
        order = "ASC" if ascending else "DESC"
        lim, off = w.param(limit), w.param(offset)
        rows = await conn.fetch(
            f"SELECT * FROM {self.s}.audit_log {w.clause()} "
            f"ORDER BY updated_at {order}, id {order} LIMIT {lim} OFFSET {off}",
            *w.args,
        )
        return [_row(r, _AUDIT_JSON) for r in rows], int(total)

    async def audit_log(self, conn: asyncpg.Connection, audit_id: str) -> dict[str, Any] | None:
        rec = await conn.fetchrow(f"SELECT * FROM {self.s}.audit_log WHERE id = $1", audit_id)
        return _row(rec, _AUDIT_JSON) if rec else None

    async def totals(
        self,
        conn: asyncpg.Connection,
        entity: str | None,
        entity_id: str | None,
        *,
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, Any]], int]:
        w = _Where()
        w.add("entity = {}", entity)
        w.add("entity_id = {}", entity_id)
        total = await conn.fetchval(
            f"SELECT count(*) FROM {self.s}.spend_totals {w.clause()}", *w.args
        )
        lim, off = w.param(limit), w.param(offset)
        rows = await conn.fetch(
            f"SELECT entity, entity_id, spend, requests, total_tokens, last_alias, updated_at "
            f"FROM {self.s}.spend_totals {w.clause()} "
            f"ORDER BY spend DESC, entity, entity_id LIMIT {lim} OFFSET {off}",
            *w.args,
        )
        return [dict(r) for r in rows], int(total)

    async def all_totals(self, conn: asyncpg.Connection) -> dict[tuple[str, str], Decimal]:
        rows = await conn.fetch(f"SELECT entity, entity_id, spend FROM {self.s}.spend_totals")
        return {(r["entity"], r["entity_id"]): r["spend"] for r in rows}

    async def top_by_dimension(
        self,
        conn: asyncpg.Connection,
        dimension: str,
        *,
        since: date,
        until: date | None,
        limit: int | None,
    ) -> list[dict[str, Any]]:
        """Spend per id of one daily dimension over a date range, highest first."""
        w = _Where()
        w.add("dimension = {}", dimension)
        w.add("day >= {}", since)
        w.add("day <= {}", until)
        lim = f"LIMIT {w.param(limit)}" if limit else ""
        rows = await conn.fetch(
            f"""SELECT dimension_id, sum(spend) AS total_spend, sum(requests) AS requests,
                       sum(total_tokens) AS total_tokens
                FROM {self.s}.daily_spend {w.clause()}
                GROUP BY dimension_id ORDER BY total_spend DESC, dimension_id {lim}""",
            *w.args,
        )
        return [dict(r) for r in rows]

    async def daily_by_dimension(
        self, conn: asyncpg.Connection, dimension: str, *, since: date, until: date | None
    ) -> list[dict[str, Any]]:
        w = _Where()
        w.add("dimension = {}", dimension)
        w.add("day >= {}", since)
        w.add("day <= {}", until)
        rows = await conn.fetch(
            f"""SELECT day, dimension_id, spend FROM {self.s}.daily_spend {w.clause()}
                ORDER BY day DESC, spend DESC""",
            *w.args,
        )
        return [dict(r) for r in rows]

    async def aliases(
        self, conn: asyncpg.Connection, entity: str, ids: list[str]
    ) -> dict[str, str | None]:
        rows = await conn.fetch(
            f"SELECT entity_id, last_alias FROM {self.s}.spend_totals "
            f"WHERE entity = $1 AND entity_id = ANY($2::text[])",
            entity,
            ids,
        )
        return {r["entity_id"]: r["last_alias"] for r in rows}

    async def total_spend(self, conn: asyncpg.Connection, since: date) -> Decimal:
        val = await conn.fetchval(
            f"SELECT COALESCE(sum(spend), 0) FROM {self.s}.daily_spend "
            f"WHERE dimension = 'model' AND day >= $1",
            since,
        )
        return Decimal(val)
