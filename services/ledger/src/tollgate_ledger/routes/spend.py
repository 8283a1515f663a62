"""Read routes for spend logs, sessions and spend totals (LiteLLM's shapes where it has one)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from litestar import Response, Router, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, QueryParameter

from tollgate_ledger.filters import (
    DAILY_DIMENSIONS,
    FilterError,
    SpendLogFilter,
    date_range,
    key_filter,
    money_filter,
    page_envelope,
    sort_ascending,
    status_filter,
    total_entity_filter,
    total_pages,
)
from tollgate_ledger.routes.guards import ReadDeps, Scoped, read_guard, scope_provider
from tollgate_ledger.routes.responses import json_response, operation_ids
from tollgate_ledger.routes.spend_report import GROUP_BYS, by_api_key, by_day
from tollgate_ledger.service import NotReadyError

Page = Annotated[int, QueryParameter(ge=1, le=1_000_000, description="page number, from 1")]
Str = Annotated[str | None, QueryParameter(max_length=512)]


def sum_by_id(rows: list[dict[str, Any]]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for r in rows:
        out[r["dimension_id"]] = out.get(r["dimension_id"], Decimal(0)) + r["spend"]
    return out


def top_rows(daily: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Daily rows summed per id, highest spend first (`top_by_dimension`'s shape)."""
    acc: dict[str, dict[str, Any]] = {}
    for r in daily:
        t = acc.setdefault(
            r["dimension_id"],
            {
                "dimension_id": r["dimension_id"],
                "total_spend": Decimal(0),
                "requests": 0,
                "total_tokens": 0,
            },
        )
        t["total_spend"] += r["spend"]
        t["requests"] += r["requests"]
        t["total_tokens"] += r["total_tokens"]
    return sorted(acc.values(), key=lambda t: (-t["total_spend"], t["dimension_id"]))


def spend_router(deps: ReadDeps) -> Router:
    def spend_filter(
        *,
        request_id: str | None,
        api_key: str | None,
        user_id: str | None,
        team_id: str | None,
        session_id: str | None,
        status: str | None,
        start_date: str | None,
        end_date: str | None,
        model: str | None = None,
        key_alias: str | None = None,
        end_user: str | None = None,
        min_spend: str | None = None,
        max_spend: str | None = None,
        tag: str | None = None,
        status_param: str = "status",
    ) -> SpendLogFilter:
        start, end = date_range(start_date, end_date)
        return SpendLogFilter(
            request_id=request_id or None,
            api_key=key_filter(api_key),
            user_id=user_id or None,
            team_id=team_id or None,
            session_id=session_id or None,
            status=status_filter(status, status_param),
            model=model or None,
            key_alias=key_alias or None,
            end_user=end_user or None,
            tag=tag or None,
            start=start,
            end=end,
            min_spend=money_filter(min_spend, "min_spend"),
            max_spend=money_filter(max_spend, "max_spend"),
        )

    @get("/spend/logs", operation_id="spend_logs", summary="Spend logs (LiteLLM /spend/logs)")
    async def spend_logs(
        request_id: Str = None,
        api_key: Str = None,
        user_id: Str = None,
        start_date: Str = None,
        end_date: Str = None,
        team_id: Str = None,
        session_id: Str = None,
        status: Str = None,
        summarize: FromQuery[bool] = True,
        page: Page = 1,
        page_size: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        *,
        key_scope: Scoped,
    ) -> Response[bytes]:
        """Spend-log rows, newest first, as a JSON list (LiteLLM's shape).

        Filters: `request_id`, `api_key` (hash, or an `sk-` key which is hashed),
        `user_id`, `start_date`/`end_date` (`YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS`, UTC),
        `team_id`, `session_id`, `status` (success|failure). Paginated with `page` and
        `page_size` (default 100); the `x-total-count` and `x-total-pages` headers tell the
        size of the whole result. As in LiteLLM, when both dates are given and
        `summarize` is true (the default), the answer is spend per day with its split by
        key, user and model; `summarize=false` returns the rows.
        """
        f = spend_filter(
            request_id=request_id,
            api_key=api_key,
            user_id=user_id,
            team_id=team_id,
            session_id=session_id,
            status=status,
            start_date=start_date,
            end_date=end_date,
        )
        if start_date and end_date and summarize:
            return json_response(await deps.reads.spend_summary(f, key_scope.key_hash))
        rows, total = await deps.reads.spend_logs(
            f, limit=page_size, offset=(page - 1) * page_size, key_scope=key_scope.key_hash
        )
        return json_response(
            rows,
            headers={
                "x-total-count": str(total),
                "x-page": str(page),
                "x-total-pages": str(total_pages(total, page_size)),
            },
        )

    async def paged_logs(
        *,
        request_id: str | None,
        api_key: str | None,
        user_id: str | None,
        team_id: str | None,
        session_id: str | None,
        status_filter: str | None,
        start_date: str | None,
        end_date: str | None,
        model: str | None,
        key_alias: str | None,
        min_spend: str | None,
        max_spend: str | None,
        sort_order: str,
        page: int,
        page_size: int,
        end_user: str | None,
        tag: str | None,
        count_limit: int | None,
        key_scope: Scoped,
    ) -> Response[bytes]:
        ascending = sort_ascending(sort_order)
        f = spend_filter(
            request_id=request_id,
            api_key=api_key,
            user_id=user_id,
            team_id=team_id,
            session_id=session_id,
            status=status_filter,
            start_date=start_date,
            end_date=end_date,
            model=model,
            key_alias=key_alias,
            min_spend=min_spend,
            max_spend=max_spend,
            end_user=end_user,
            tag=tag,
            status_param="status_filter",
        )
        rows, total = await deps.reads.spend_logs(
            f,
            limit=page_size,
            offset=(page - 1) * page_size,
            ascending=ascending,
            key_scope=key_scope.key_hash,
            count_limit=count_limit,
        )
        envelope = page_envelope(rows, total, page, page_size)
        if count_limit is not None:
            envelope["total_capped"] = total > count_limit
        return json_response(envelope)

    @get(
        ["/spend/logs/v2", "/spend/logs/ui"],
        operation_id=operation_ids(
            {"/spend/logs/v2": "spend_logs_v2", "/spend/logs/ui": "spend_logs_ui"}
        ),
        summary="Paginated spend logs (LiteLLM /spend/logs/v2)",
    )
    async def spend_logs_v2(
        request_id: Str = None,
        api_key: Str = None,
        user_id: Str = None,
        team_id: Str = None,
        session_id: Str = None,
        status_filter: Str = None,
        status: Str = None,
        start_date: Str = None,
        end_date: Str = None,
        model: Str = None,
        key_alias: Str = None,
        min_spend: Str = None,
        max_spend: Str = None,
        end_user: Str = None,
        tag: Str = None,
        count_limit: Annotated[int | None, QueryParameter(ge=1, le=1_000_000)] = None,
        sort_order: FromQuery[str] = "desc",
        page: Page = 1,
        page_size: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
        *,
        key_scope: Scoped,
    ) -> Response[bytes]:
        """`{data, total, page, page_size, total_pages}` of spend-log rows (LiteLLM's v2/UI shape).

        Filters as `/spend/logs` plus `status_filter` (or `status`), `model`, `key_alias`,
        `end_user`, `tag` (rows carrying that request tag), `min_spend`, `max_spend`;
        `sort_order` asc|desc on startTime. A virtual key reads only its own rows.
        `count_limit=N` stops counting past N rows (`total` is then N + 1 and
        `total_capped` true), which keeps a wide filter over millions of rows fast.
        """
        return await paged_logs(
            request_id=request_id,
            api_key=api_key,
            user_id=user_id,
            team_id=team_id,
            session_id=session_id,
            status_filter=status_filter or status,
            start_date=start_date,
            end_date=end_date,
            model=model,
            key_alias=key_alias,
            min_spend=min_spend,
            max_spend=max_spend,
            sort_order=sort_order,
            page=page,
            page_size=page_size,
            end_user=end_user,
            tag=tag,
            count_limit=count_limit,
            key_scope=key_scope,
        )

    @get("/sessions", operation_id="sessions_list", summary="Sessions, most recent first")
    async def sessions_list(
        start_date: Str = None,
        end_date: Str = None,
        page: Page = 1,
        page_size: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
        *,
        key_scope: Scoped,
    ) -> Response[bytes]:
        """`{data, total, page, page_size, total_pages}` of sessions active in the range.

        Each session: session_id, first_seen, last_seen, request_count, success_count,
        failure_count, spend and token counts (for a virtual key: of its own calls).
        """
        start, end = date_range(start_date, end_date)
        rows, total = await deps.reads.sessions(
            limit=page_size,
            offset=(page - 1) * page_size,
            start=start,
            end=end,
            key_scope=key_scope.key_hash,
        )
        return json_response(page_envelope(rows, total, page, page_size))

    @get(
        "/sessions/{session_id:str}",
        operation_id="session_get",
        summary="One session with its requests",
    )
    async def session_get(
        session_id: FromPath[str],
        page: Page = 1,
        page_size: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        *,
        key_scope: Scoped,
    ) -> Response[bytes]:
        """A session's totals and its spend-log rows in call order (`requests`, paginated).

        404 when no request carried this session id (for a virtual key: none of its own).
        """
        found = await deps.reads.session_with_requests(
            session_id,
            limit=page_size,
            offset=(page - 1) * page_size,
            key_scope=key_scope.key_hash,
        )
        if found is None:
            raise NotFoundException(f"session {session_id!r} not found")
        session, rows, total = found
        return json_response(
            {
                **session,
                "requests": rows,
                "requests_total": total,
                "page": page,
                "page_size": page_size,
                "total_pages": total_pages(total, page_size),
            }
        )

    @get(
        "/spend/totals",
        operation_id="spend_totals",
        summary="Lifetime spend of keys, teams, users and end users",
    )
    async def spend_totals(
        entity: Str = None,
        entity_id: Str = None,
        page: Page = 1,
        page_size: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        *,
        key_scope: Scoped,
    ) -> Response[bytes]:
        """`{data, total, page, page_size, total_pages}` of running totals, highest spend first.

        `entity` is one of key (the key hash), team, user, end_user. A virtual key reads only
        its own key's total.
        """
        kind, ident = total_entity_filter(entity), entity_id or None
        if key_scope.key_hash is not None:
            if kind not in (None, "key") or ident not in (None, key_scope.key_hash):
                return json_response(page_envelope([], 0, page, page_size))
            kind, ident = "key", key_scope.key_hash
        rows, total = await deps.reads.totals(
            kind, ident, limit=page_size, offset=(page - 1) * page_size
        )
        return json_response(page_envelope(rows, total, page, page_size))

    def since_days(days: int) -> Any:
        return (datetime.now(UTC) - timedelta(days=days)).date()

    @get("/global/spend", operation_id="global_spend", summary="Total spend, last 30 days")
    async def global_spend(key_scope: Scoped) -> Response[bytes]:
        """`{spend, max_budget}`: spend across all keys over the last 30 days (LiteLLM); for a
        virtual key, its own."""
        if key_scope.key_hash is not None:
            rows, _ = await deps.reads.daily(
                "key", since=since_days(30), until=None, key_scope=key_scope.key_hash
            )
            return json_response(
                {"spend": sum_by_id(rows).get(key_scope.key_hash, Decimal(0)), "max_budget": None}
            )
        spend = await deps.reads.total_spend(since_days(30))
        return json_response({"spend": spend, "max_budget": None})

    @get(
        "/global/spend/keys",
        operation_id="global_spend_keys",
        summary="Top keys by spend, last 30 days",
    )
    async def global_spend_keys(
        limit: Annotated[int | None, QueryParameter(ge=1, le=10_000)] = None,
        *,
        key_scope: Scoped,
    ) -> Response[bytes]:
        """`[{api_key, total_spend, key_alias, key_name}]`, highest spend first (LiteLLM)."""
        if key_scope.key_hash is not None:
            rows, aliases = await scoped_top("key", key_scope.key_hash)
        else:
            rows, aliases = await deps.reads.top_with_aliases(
                "key", since=since_days(30), limit=limit
            )
        return json_response(
            [
                {
                    "api_key": r["dimension_id"],
                    "total_spend": r["total_spend"],
                    "key_alias": aliases.get(r["dimension_id"]),
                    "key_name": None,
                }
                for r in rows
            ]
        )

    @get(
        "/global/spend/models",
        operation_id="global_spend_models",
        summary="Top models by spend, last 30 days",
    )
    async def global_spend_models(
        limit: Annotated[int, QueryParameter(ge=1, le=10_000)] = 10,
        *,
        key_scope: Scoped,
    ) -> Response[bytes]:
        """`[{model, total_spend, total_tokens}]`, highest spend first (LiteLLM)."""
        if key_scope.key_hash is not None:
            rows = (await scoped_top("model", key_scope.key_hash))[0][:limit]
        else:
            rows = await deps.reads.top_by_dimension(
                "model", since=since_days(30), until=None, limit=limit
            )
        return json_response(
            [
                {
                    "model": r["dimension_id"],
                    "total_spend": r["total_spend"],
                    "total_tokens": r["total_tokens"],
                }
                for r in rows
            ]
        )

    @get("/global/spend/teams", operation_id="global_spend_teams", summary="Daily spend per team")
    async def global_spend_teams(
        start_date: Str = None,
        end_date: Str = None,
        *,
        key_scope: Scoped,
    ) -> Response[bytes]:
        """`{daily_spend, teams, total_spend_per_team}` (LiteLLM's shape); default last 30 days.
        For a virtual key: its own calls per team."""
        start, end = date_range(start_date, end_date)
        since = start.date() if start else since_days(30)
        rows, aliases = await deps.reads.daily(
            "team", since=since, until=end.date() if end else None, key_scope=key_scope.key_hash
        )
        by_day: dict[str, dict[str, Any]] = {}
        per_team: dict[str, Decimal] = {}
        for r in rows:
            name = aliases.get(r["dimension_id"]) or r["dimension_id"]
            day = r["day"].isoformat()
            by_day.setdefault(day, {})[name] = r["spend"]
            per_team[name] = per_team.get(name, Decimal(0)) + r["spend"]
        ranked = sorted(per_team.items(), key=lambda kv: kv[1], reverse=True)
        return json_response(
            {
                "daily_spend": [{"date": d, **v} for d, v in by_day.items()],
                "teams": sorted(per_team),
                "total_spend_per_team": [{"team_id": t, "total_spend": s} for t, s in ranked[:10]],
            }
        )

    @get(
        "/global/spend/logs",
        operation_id="global_spend_logs",
        summary="Spend per day, last 30 days (LiteLLM /global/spend/logs)",
    )
    async def global_spend_logs(api_key: Str = None, *, key_scope: Scoped) -> Response[bytes]:
        """`[{date, spend}]` per UTC day over the last 30 days, oldest first (LiteLLM's shape);
        with `api_key` (its hash, or an `sk-` key which is hashed) that key's days as
        `[{date, spend, api_key}]`. A virtual key reads only its own spend."""
        key = key_filter(api_key)
        if key_scope.key_hash is not None:
            if key not in (None, key_scope.key_hash):
                return json_response([])
            key = key_scope.key_hash
        if key is None:
            rows, _ = await deps.reads.daily("model", since=since_days(30), until=None)
        else:
            # One key's own days: summed from its spend rows (the scoped daily read).
            rows, _ = await deps.reads.daily("key", since=since_days(30), until=None, key_scope=key)
        per_day: dict[str, Decimal] = {}
        for r in rows:
            day = r["day"].isoformat()
            per_day[day] = per_day.get(day, Decimal(0)) + r["spend"]
        extra = {} if key is None else {"api_key": key}
        return json_response(
            [{"date": day, "spend": spend, **extra} for day, spend in sorted(per_day.items())]
        )

    @get(
        "/global/spend/report",
        operation_id="global_spend_report",
        summary="Daily spend per team, customer or key (LiteLLM /global/spend/report)",
    )
    async def global_spend_report(
        start_date: Str = None,
        end_date: Str = None,
        group_by: FromQuery[str] = "team",
        api_key: Str = None,
        internal_user_id: Str = None,
        team_id: Str = None,
        customer_id: Str = None,
        *,
        key_scope: Scoped,
    ) -> Response[bytes]:
        """Spend between `start_date` and `end_date` (both required; `YYYY-MM-DD`, the end day
        included, UTC) in LiteLLM's shapes, chosen as LiteLLM chooses them:

        - `api_key` (hash or `sk-` key) or `internal_user_id`: that key's or user's spend per
          key, `[{api_key, total_cost, total_input_tokens, total_output_tokens,
          model_details: [{model, total_cost, total_input_tokens, total_output_tokens}]}]`;
        - `team_id` and `customer_id` together: `[{group_by_day, teams_customers: [{team_name,
          team_id, customer, total_spend, metadata}]}]`;
        - else by `group_by`: `team` (default) `[{group_by_day, teams: [{team_name, team_id,
          total_spend, metadata: [{model, api_key, spend, total_tokens}]}]}]`, `customer`
          (`customers: [{customer, ...}]`) or `api_key` (the per-key shape above).

        `team_id` or `customer_id` alone narrows any shape. A virtual key reads only its own
        spend.
        """
        if not start_date:
            raise FilterError("start_date", "start_date and end_date are required (YYYY-MM-DD)")
        if not end_date:
            raise FilterError("end_date", "start_date and end_date are required (YYYY-MM-DD)")
        if group_by not in GROUP_BYS:
            raise FilterError("group_by", f"group_by must be one of {', '.join(GROUP_BYS)}")
        start, end = date_range(start_date, end_date)
        f = SpendLogFilter(
            api_key=key_filter(api_key),
            user_id=internal_user_id or None,
            team_id=team_id or None,
            end_user=customer_id or None,
            start=start,
            end=end,
        )
        rows = await report_rows(f, key_scope.key_hash)
        if f.api_key or f.user_id or group_by == "api_key":
            return json_response(by_api_key(rows))
        if f.team_id and f.end_user:
            return json_response(by_day(rows, "team_customer"))
        return json_response(by_day(rows, group_by))

    async def report_rows(f: SpendLogFilter, key_scope: str | None) -> list[dict[str, Any]]:
        # The read service has no report method yet (service.py is not this change's to
        # edit): the query runs on its pool, through its reader, as its methods do.
        pool = deps.reads.pool
        if pool is None:
            raise NotReadyError("database not connected")
        async with pool.acquire() as conn:
            return await deps.reads.reader.spend_report(conn, f, key_scope)

    @get("/spend/tags", operation_id="spend_tags", summary="Spend per request tag")
    async def spend_tags(
        start_date: Str = None, end_date: Str = None, *, key_scope: Scoped
    ) -> Response[bytes]:
        """`[{individual_request_tag, log_count, total_spend}]` (LiteLLM's shape); for a virtual
        key, of its own calls."""
        start, end = date_range(start_date, end_date)
        since = start.date() if start else datetime(1970, 1, 1).date()
        until = end.date() if end else None
        if key_scope.key_hash is not None:
            daily, _ = await deps.reads.daily(
                "tag", since=since, until=until, key_scope=key_scope.key_hash
            )
            rows = top_rows(daily)
        else:
            rows = await deps.reads.top_by_dimension("tag", since=since, until=until, limit=None)
        return json_response(
            [
                {
                    "individual_request_tag": r["dimension_id"],
                    "log_count": r["requests"],
                    "total_spend": r["total_spend"],
                }
                for r in rows
            ]
        )

    async def scoped_top(
        dimension: str, key_hash: str
    ) -> tuple[list[dict[str, Any]], dict[str, str | None]]:
        daily, aliases = await deps.reads.daily(
            dimension, since=since_days(30), until=None, key_scope=key_hash
        )
        return top_rows(daily), aliases

    @get("/spend/daily", operation_id="spend_daily", summary="Spend per day by key, team, ...")
    async def spend_daily(
        group_by: FromQuery[str] = "model",
        start_date: Str = None,
        end_date: Str = None,
        *,
        key_scope: Scoped,
    ) -> Response[bytes]:
        """`{group_by, start_date, end_date, data, totals}`: spend, requests and tokens per UTC
        day and id of `group_by` (key, team, user, end_user, model, tag), and per id over the
        range, highest spend first; default the last 30 days. A virtual key sees only its own
        calls. Keys, teams and users carry their last alias."""
        if group_by not in DAILY_DIMENSIONS:
            raise FilterError("group_by", f"group_by must be one of {', '.join(DAILY_DIMENSIONS)}")
        start, end = date_range(start_date, end_date)
        since = start.date() if start else since_days(30)
        until = end.date() if end else None
        rows, aliases = await deps.reads.daily(
            group_by, since=since, until=until, key_scope=key_scope.key_hash
        )
        data = [
            {**r, "day": r["day"].isoformat(), "alias": aliases.get(r["dimension_id"])}
            for r in rows
        ]
        totals = [{**r, "alias": aliases.get(r["dimension_id"])} for r in top_rows(rows)]
        return json_response(
            {
                "group_by": group_by,
                "start_date": since.isoformat(),
                "end_date": until.isoformat() if until else None,
                "data": data,
                "totals": totals,
            }
        )

    return Router(
        path="/",
        dependencies={"key_scope": scope_provider(deps)},
        route_handlers=[
            spend_daily,
            spend_logs,
            spend_logs_v2,
            sessions_list,
            session_get,
            spend_totals,
            global_spend,
            global_spend_keys,
            global_spend_models,
            global_spend_teams,
            global_spend_logs,
            global_spend_report,
            spend_tags,
        ],
        tags=["Budget & Spend Tracking"],
        guards=[read_guard(deps)],
    )
