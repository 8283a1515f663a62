"""The console's pages at /ui: server-rendered HTML over the public APIs, with the signed-in key.

The key lives in an HttpOnly, SameSite=Strict cookie (never in a URL); every form carries a
token derived from it; every filter is a query parameter, so every view is a link.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie, State
from litestar.response import Redirect, ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from tollgate_ingress.console import charts, diff, views
from tollgate_ingress.console.api import ApiError, PublicApi, RoleCache, csrf_token
from tollgate_shared import names

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
COOKIE = "tollgate_console"
_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["pretty"] = views.pretty
_env.filters["urlq"] = lambda v: quote(str(v), safe="")
_roles = RoleCache()
_ACTIONS = ("block", "unblock", "regenerate", "delete")
# The Logs page counts matches up to this many ("10,000+"): an exact count of a wide filter
# over millions of rows would cost more than the page itself.
_COUNT_LIMIT = 10_000


class SignedOutError(Exception):
    """No console session: the page answers with the sign-in form."""


def _html(body: str, status: int = 200, cookies: list[Cookie] | None = None) -> Response[str]:
    return Response(
        body,
        status_code=status,
        media_type="text/html; charset=utf-8",
        cookies=cookies,
        headers={
            "cache-control": "no-store",
            "x-frame-options": "DENY",
            "referrer-policy": "same-origin",
            "content-security-policy": (
                "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                "script-src 'self'; frame-ancestors 'none'; form-action 'self'"
            ),
        },
    )


def _api(request: Request[Any, Any, Any], state: State) -> PublicApi:
    key = request.cookies.get(COOKIE)
    if not key or not hasattr(state, "owners"):
        raise SignedOutError
    return PublicApi(state.owners, state.forward_client, key)


async def _render(
    request: Request[Any, Any, Any],
    api: PublicApi,
    template: str,
    status: int = 200,
    **ctx: Any,
) -> Response[str]:
    master = await _roles.is_master(api)
    body = _env.get_template(template).render(
        path=request.url.path,
        query=dict(request.query_params),
        is_master=master,
        csrf=csrf_token(api.key),
        key_hint=f"sk-…{api.key[-4:]}",
        **ctx,
    )
    return _html(body, status)


async def _page(
    request: Request[Any, Any, Any], state: State, template: str, load: Any
) -> Response[Any]:
    """Render `template` with what `load(api, master)` returns; sign-in and API errors shown."""
    try:
        api = _api(request, state)
        master = await _roles.is_master(api)
        ctx = await load(api, master)
    except SignedOutError:
        return Redirect(f"/ui/login?next={quote(str(request.url.path))}")
    except ApiError as exc:
        if exc.status == 401:
            return Redirect("/ui/login?expired=1")
        return await _render(
            request, api, "error.html", exc.status if exc.status < 500 else 502, error=exc
        )
    return await _render(request, api, template, **ctx)


async def _form(request: Request[Any, Any, Any], api: PublicApi) -> dict[str, str]:
    """The posted form, once its token matches the signed-in key (else 403)."""
    form = await request.form()
    data = {k: str(v) for k, v in form.items()}
    if not hmac.compare_digest(data.pop("csrf", ""), csrf_token(api.key)):
        raise ApiError(403, "the form's token does not match your session: reload the page")
    return data


async def _act(request: Request[Any, Any, Any], state: State, act: Any, back: str) -> Response[Any]:
    """Run a posted action, then go back to `back` with its notice (or show its error)."""
    try:
        api = _api(request, state)
        data = await _form(request, api)
        notice = await act(api, data)
    except SignedOutError:
        return Redirect("/ui/login")
    except ApiError as exc:
        return await _render(
            request, api, "error.html", exc.status if exc.status < 500 else 502, error=exc
        )
    if isinstance(notice, Response):
        return notice
    sep = "&" if "?" in back else "?"
    return Redirect(f"{back}{sep}{urlencode({'notice': notice})}" if notice else back)


# --- sign-in ---------------------------------------------------------------------------


@get("/", include_in_schema=False)
async def home(request: Request[Any, Any, Any]) -> Redirect:
    return Redirect("/ui/logs" if request.cookies.get(COOKIE) else "/ui/login")


@get("/login", include_in_schema=False)
async def login_form(next: str = "/ui/logs", expired: bool = False) -> Response[str]:
    return _html(
        _env.get_template("login.html").render(
            next=next if next.startswith("/ui/") else "/ui/logs", expired=expired, error=None
        )
    )


@post("/login", include_in_schema=False, status_code=303)
async def login(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    form = await request.form()
    key = str(form.get("key", "")).strip()
    target = str(form.get("next", "/ui/logs"))
    target = target if target.startswith("/ui/") and "//" not in target else "/ui/logs"
    error = None
    if not key:
        error = "Enter the master key or a virtual key."
    else:
        try:
            # Any read that the ledger scopes: 401 for a key it does not know.
            await PublicApi(state.owners, state.forward_client, key).get(
                "/spend/logs/ui", page_size=1
            )
        except ApiError as exc:
            error = "That key is not valid." if exc.status == 401 else exc.message
    if error:
        body = _env.get_template("login.html").render(next=target, expired=False, error=error)
        return _html(body, 401)
    secure = request.url.scheme == "https"
    cookie = Cookie(
        key=COOKIE,
        value=key,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=secure,
        max_age=12 * 3600,
    )
    return Redirect(target, cookies=[cookie])


@post("/logout", include_in_schema=False, status_code=303)
async def logout() -> Redirect:
    return Redirect(
        "/ui/login", cookies=[Cookie(key=COOKIE, value="", path="/ui", max_age=0, httponly=True)]
    )


# --- logs and sessions -------------------------------------------------------------------


@get("/logs", include_in_schema=False)
async def logs(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    filters = {k: request.query_params.get(k, "") for k in views.LOG_FILTERS}
    page = max(int(request.query_params.get("page", "1") or 1), 1)

    async def load(api: PublicApi, _: bool) -> dict[str, Any]:
        found = await api.get(
            "/spend/logs/ui",
            page=page,
            page_size=50,
            count_limit=_COUNT_LIMIT,
            **views.log_query(filters),
        )
        rows = found["data"]
        for r in rows:
            r["_timings"] = views.timings(r)
        link = {k: v for k, v in filters.items() if v}
        return {
            "nav": "logs",
            "filters": filters,
            "rows": rows,
            "total": found["total"],
            "capped": found.get("total_capped", False),
            "page": page,
            "total_pages": found["total_pages"],
            "pages": views.page_links(page, found["total_pages"]),
            "link": urlencode(link),
        }

    return await _page(request, state, "logs.html", load)


@get("/logs/{request_id:str}", include_in_schema=False)
async def log_detail(
    request: Request[Any, Any, Any], state: State, request_id: str
) -> Response[Any]:
    async def load(api: PublicApi, _: bool) -> dict[str, Any]:
        found = await api.get("/spend/logs/ui", request_id=request_id, page_size=1)
        if not found["data"]:
            raise ApiError(404, f"no request {request_id!r} (or not one of your key's)")
        row = found["data"][0]
        return {
            "nav": "logs",
            "row": row,
            "timings": views.timings(row),
            "cost": views.cost_breakdown(row),
            "prompt": views.prompt_text(row.get("messages")),
            "answer": views.answer_text(row.get("response")),
        }

    return await _page(request, state, "log_detail.html", load)


@get("/sessions", include_in_schema=False)
async def sessions(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    page = max(int(request.query_params.get("page", "1") or 1), 1)

    async def load(api: PublicApi, _: bool) -> dict[str, Any]:
        found = await api.get("/sessions", page=page, page_size=50)
        return {
            "nav": "sessions",
            "rows": found["data"],
            "total": found["total"],
            "page": page,
            "pages": views.page_links(page, found["total_pages"]),
            "total_pages": found["total_pages"],
            "link": "",
        }

    return await _page(request, state, "sessions.html", load)


@get("/sessions/{session_id:str}", include_in_schema=False)
async def session(request: Request[Any, Any, Any], state: State, session_id: str) -> Response[Any]:
    async def load(api: PublicApi, _: bool) -> dict[str, Any]:
        found = await api.get(f"/sessions/{quote(session_id, safe='')}", page_size=200)
        turns = [
            {
                "row": r,
                "prompt": views.prompt_text(r.get("messages")),
                "answer": views.answer_text(r.get("response")),
                "timings": views.timings(r),
            }
            for r in found["requests"]
        ]
        return {"nav": "sessions", "session": found, "turns": turns}

    return await _page(request, state, "session.html", load)


# --- usage ---------------------------------------------------------------------------------


@get("/usage", include_in_schema=False)
async def usage(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    group_by = request.query_params.get("group_by", "team")
    group_by = group_by if group_by in ("team", "key", "model", "tag", "user") else "team"
    today = datetime.now(UTC).date()
    start = request.query_params.get("start_date") or (today - timedelta(days=13)).isoformat()
    end = request.query_params.get("end_date") or today.isoformat()

    async def load(api: PublicApi, master: bool) -> dict[str, Any]:
        found = await api.get("/spend/daily", group_by=group_by, start_date=start, end_date=end)
        label = {t["dimension_id"]: t.get("alias") or t["dimension_id"] for t in found["totals"]}
        ranked = [
            (label[t["dimension_id"]], Decimal(str(t["total_spend"]))) for t in found["totals"]
        ]
        series = charts.top_series(ranked)
        kept = {s.name for s in series}
        days = _days(start, end)
        spend: dict[str, dict[str, Decimal]] = {}
        tokens: dict[str, dict[str, Decimal]] = {}
        for r in found["data"]:
            name = label.get(r["dimension_id"], r["dimension_id"])
            name = name if name in kept else "other"
            for acc, value in ((spend, r["spend"]), (tokens, r["total_tokens"])):
                day = acc.setdefault(r["day"], {})
                day[name] = day.get(name, Decimal(0)) + Decimal(str(value))
        budgets = await _budgets(api, master)
        return {
            "nav": "usage",
            "group_by": group_by,
            "start": start,
            "end": end,
            "spend_chart": charts.stacked_bars(
                days, spend, series, title=f"Spend per day by {group_by}", unit="$"
            ),
            "token_chart": charts.stacked_bars(
                days, tokens, series, title=f"Tokens per day by {group_by}"
            ),
            "legend": charts.legend(series),
            "totals": found["totals"],
            "budgets": budgets,
        }

    return await _page(request, state, "usage.html", load)


def _days(start: str, end: str) -> list[str]:
    try:
        a = datetime.fromisoformat(start[:10]).date()
        b = datetime.fromisoformat(end[:10]).date()
    except ValueError:
        return []
    n = min((b - a).days, 366)
    return [(a + timedelta(days=i)).isoformat() for i in range(n + 1)]


async def _budgets(api: PublicApi, master: bool) -> list[dict[str, Any]]:
    """Budget used vs max_budget, with the period and its reset: teams and keys for the master
    key, the signed-in key itself otherwise."""
    out = []
    if master:
        for t in await api.get("/team/list"):
            out.append(_budget("team", t.get("team_alias") or t["team_id"], t))
        keys = await api.get("/key/list", return_full_object="true", size=100)
        items = [k for k in keys.get("keys", []) if isinstance(k, dict)]
    else:
        info = await api.get("/key/info")
        items = [info.get("info", info)]
    for k in items:
        out.append(_budget("key", k.get("key_alias") or k.get("key_name") or "key", k))
    return [b for b in out if b["max_budget"] is not None]


def _budget(kind: str, name: str, obj: dict[str, Any]) -> dict[str, Any]:
    spend = Decimal(str(obj.get("spend") or 0))
    cap = obj.get("max_budget")
    cap_d = Decimal(str(cap)) if cap is not None else None
    return {
        "kind": kind,
        "name": name,
        "spend": spend,
        "max_budget": cap_d,
        "pct": min(float(spend / cap_d * 100), 100.0) if cap_d else 0.0,
        "duration": obj.get("budget_duration"),
        "reset_at": obj.get("budget_reset_at"),
    }


# --- audit -----------------------------------------------------------------------------------


@get("/audit", include_in_schema=False)
async def audit(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    page = max(int(request.query_params.get("page", "1") or 1), 1)
    params = {k: request.query_params.get(k, "") for k in ("table_name", "action", "object_id")}

    async def load(api: PublicApi, master: bool) -> dict[str, Any]:
        if not master:
            raise ApiError(403, "the audit log is the master key's")
        found = await api.get("/audit", page=page, page_size=25, **params)
        entries = [
            {**e, "changes": diff.changes(e.get("before_value"), e.get("updated_values"))}
            for e in found["audit_logs"]
        ]
        return {
            "nav": "audit",
            "entries": entries,
            "filters": params,
            "total": found["total"],
            "page": page,
            "pages": views.page_links(page, found["total_pages"]),
            "total_pages": found["total_pages"],
            "link": urlencode({k: v for k, v in params.items() if v}),
        }

    return await _page(request, state, "audit.html", load)


# --- keys, teams, users, models --------------------------------------------------------------


@get("/keys", include_in_schema=False)
async def keys(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    page = max(int(request.query_params.get("page", "1") or 1), 1)

    async def load(api: PublicApi, master: bool) -> dict[str, Any]:
        if master:
            found = await api.get("/key/list", return_full_object="true", page=page, size=50)
            items = found.get("keys", [])
            total_pages = found.get("total_pages") or 1
        else:
            info = await api.get("/key/info")
            items, total_pages = [info.get("info", info)], 1
        teams = await api.get("/team/list") if master else []
        return {
            "nav": "keys",
            "keys": items,
            "teams": teams,
            "page": page,
            "pages": views.page_links(page, total_pages),
            "total_pages": total_pages,
            "link": "",
            "notice": request.query_params.get("notice"),
        }

    return await _page(request, state, "keys.html", load)


@post("/keys", include_in_schema=False, status_code=200)
async def key_create(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    async def act(api: PublicApi, data: dict[str, str]) -> Response[Any]:
        body: dict[str, Any] = {k: v for k, v in data.items() if v}
        for field in ("max_budget",):
            if field in body:
                body[field] = float(body[field])
        for field in ("rpm_limit", "tpm_limit"):
            if field in body:
                body[field] = int(body[field])
        if "models" in body:
            body["models"] = [m.strip() for m in body["models"].split(",") if m.strip()]
        created = await api.post("/key/generate", body)
        return await _render(request, api, "key_created.html", nav="keys", created=created)

    return await _act(request, state, act, "/ui/keys")


@get("/keys/{token:str}", include_in_schema=False)
async def key_detail(request: Request[Any, Any, Any], state: State, token: str) -> Response[Any]:
    async def load(api: PublicApi, master: bool) -> dict[str, Any]:
        info = await api.get("/key/info", key=token) if master else await api.get("/key/info")
        key = info.get("info", info)
        if not master and key.get("token") not in (None, token):
            raise ApiError(403, "a virtual key sees only itself")
        try:
            health = await api.get("/key/health") if not master else None
        except ApiError as exc:
            health = {"error": exc.message}
        return {
            "nav": "keys",
            "token": token,
            "key": key,
            "health": health,
            "notice": request.query_params.get("notice"),
        }

    return await _page(request, state, "key.html", load)


@post("/keys/{token:str}/{action:str}", include_in_schema=False, status_code=200)
async def key_action(
    request: Request[Any, Any, Any], state: State, token: str, action: str
) -> Response[Any]:
    async def act(api: PublicApi, _: dict[str, str]) -> Any:
        if action not in _ACTIONS:
            raise ApiError(404, f"no key action {action!r}")
        if action == "delete":
            await api.post("/key/delete", {"keys": [token]})
            return Redirect("/ui/keys?" + urlencode({"notice": "Key deleted."}))
        if action == "regenerate":
            created = await api.post(f"/key/{token}/regenerate", {})
            return await _render(request, api, "key_created.html", nav="keys", created=created)
        await api.post(f"/key/{action}", {"key": token})
        return f"Key {action}ed."

    return await _act(request, state, act, f"/ui/keys/{token}")


@get("/teams", include_in_schema=False)
async def teams(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    async def load(api: PublicApi, master: bool) -> dict[str, Any]:
        if not master:
            raise ApiError(403, "teams are managed with the master key")
        return {
            "nav": "teams",
            "teams": await api.get("/team/list"),
            "notice": request.query_params.get("notice"),
        }

    return await _page(request, state, "teams.html", load)


@post("/teams", include_in_schema=False, status_code=200)
async def team_create(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    async def act(api: PublicApi, data: dict[str, str]) -> Any:
        body: dict[str, Any] = {k: v for k, v in data.items() if v}
        if "max_budget" in body:
            body["max_budget"] = float(body["max_budget"])
        team = await api.post("/team/new", body)
        return Redirect(f"/ui/teams/{quote(team['team_id'], safe='')}?notice=Team+created.")

    return await _act(request, state, act, "/ui/teams")


@get("/teams/{team_id:str}", include_in_schema=False)
async def team_detail(request: Request[Any, Any, Any], state: State, team_id: str) -> Response[Any]:
    async def load(api: PublicApi, master: bool) -> dict[str, Any]:
        if not master:
            raise ApiError(403, "teams are managed with the master key")
        info, callbacks = await asyncio.gather(
            api.get("/team/info", team_id=team_id),
            api.get(f"/team/{quote(team_id, safe='')}/callback"),
        )
        q = request.query_params
        return {
            "nav": "teams",
            "team": info.get("team_info", info),
            "team_keys": info.get("keys", []),
            "callbacks": callbacks,
            "notice": q.get("notice"),
            "member_error": q.get("member_error"),
            "member_field": q.get("member_field"),
            "member_values": {k: q.get(f"m_{k}", "") for k in ("user_id", "user_email", "role")},
        }

    return await _page(request, state, "team.html", load)


@post("/teams/{team_id:str}/callback", include_in_schema=False, status_code=200)
async def team_callback(
    request: Request[Any, Any, Any], state: State, team_id: str
) -> Response[Any]:
    async def act(api: PublicApi, data: dict[str, str]) -> str:
        variables: dict[str, str] = {}
        for line in data.get("callback_vars", "").splitlines():
            name, sep, value = line.partition("=")
            if sep and name.strip():
                variables[name.strip()] = value.strip()
        await api.post(
            f"/team/{quote(team_id, safe='')}/callback",
            {
                "callback_name": data.get("callback_name", ""),
                "callback_type": data.get("callback_type") or "success_and_failure",
                "callback_vars": variables,
            },
        )
        return "Callback added."

    return await _act(request, state, act, f"/ui/teams/{quote(team_id, safe='')}")


@post("/teams/{team_id:str}/disable_logging", include_in_schema=False, status_code=200)
async def team_disable_logging(
    request: Request[Any, Any, Any], state: State, team_id: str
) -> Response[Any]:
    async def act(api: PublicApi, _: dict[str, str]) -> str:
        await api.post(f"/team/{quote(team_id, safe='')}/disable_logging")
        return "Logging disabled for this team."

    return await _act(request, state, act, f"/ui/teams/{quote(team_id, safe='')}")


@get("/users", include_in_schema=False)
async def users(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    async def load(api: PublicApi, master: bool) -> dict[str, Any]:
        if not master:
            raise ApiError(403, "users are managed with the master key")
        found = await api.get("/user/list")
        items = found.get("users", found) if isinstance(found, dict) else found
        return {"nav": "users", "users": items, "notice": request.query_params.get("notice")}

    return await _page(request, state, "users.html", load)


@post("/users", include_in_schema=False, status_code=200)
async def user_create(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    async def act(api: PublicApi, data: dict[str, str]) -> str:
        body: dict[str, Any] = {k: v for k, v in data.items() if v}
        if "max_budget" in body:
            body["max_budget"] = float(body["max_budget"])
        await api.post("/user/new", body)
        return "User created."

    return await _act(request, state, act, "/ui/users")


@get("/models", include_in_schema=False)
async def models(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    async def load(api: PublicApi, master: bool) -> dict[str, Any]:
        if not master:
            raise ApiError(403, "models are managed with the master key")
        found = await api.get("/model/info")
        return {
            "nav": "models",
            "models": found.get("data", []),
            "notice": request.query_params.get("notice"),
        }

    return await _page(request, state, "models.html", load)


@post("/alerting/test", include_in_schema=False, status_code=200)
async def alerting_test(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    async def act(api: PublicApi, _: dict[str, str]) -> str:
        result = await api.get("/health/services", service="slack")
        return f"Alerting test: {orjson.dumps(result).decode()[:200]}"

    return await _act(request, state, act, "/ui/teams")


# --- live ---------------------------------------------------------------------------------------


@get("/live", include_in_schema=False)
async def live(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    async def load(api: PublicApi, _: bool) -> dict[str, Any]:
        return {"nav": "live"}

    return await _page(request, state, "live.html", load)


def _live_row(data: bytes, key_hash: str | None) -> dict[str, Any] | None:
    """What the Live table shows of one event; None when it is not the key's own."""
    try:
        ev = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(ev, dict) or (key_hash is not None and ev.get("api_key_hash") != key_hash):
        return None
    return {
        "request_id": ev.get("request_id"),
        "time": ev.get("start_time"),
        "status": ev.get("status"),
        "model": ev.get("model_group") or ev.get("requested_model"),
        "key_alias": ev.get("key_alias"),
        "team": ev.get("team_alias") or ev.get("team_id"),
        "spend": ev.get("spend"),
        "tokens": ev.get("total_tokens"),
        "latency_ms": ev.get("total_latency_ms"),
        "error": ev.get("error_message"),
    }


@get("/live/stream", include_in_schema=False)
async def live_stream(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    """Server-sent events: each completed or failed call as it is published (a core NATS
    subscription, not a durable consumer; nothing is stored), scoped to a virtual key's own."""
    try:
        api = _api(request, state)
        master = await _roles.is_master(api)
    except SignedOutError:
        return Response(b"sign in first", status_code=401)
    nc = getattr(state, "nc", None)
    if nc is None or not nc.is_connected:
        return Response(b"NATS is not connected", status_code=503)
    key_hash = None if master else hashlib.sha256(api.key.encode()).hexdigest()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=500)

    async def on_message(msg: Any) -> None:
        row = _live_row(msg.data, key_hash)
        if row is not None:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(row)

    subs = [
        await nc.subscribe(f"{subject}.*", cb=on_message)
        for subject in (names.LLM_REQUEST_COMPLETED, names.LLM_REQUEST_FAILED)
    ]

    async def events() -> AsyncIterator[ServerSentEventMessage]:
        try:
            yield ServerSentEventMessage(event="ready", data="{}")
            while True:
                try:
                    row = await asyncio.wait_for(queue.get(), 15)
                except TimeoutError:
                    yield ServerSentEventMessage(comment="keep-alive")
                    continue
                yield ServerSentEventMessage(
                    event="call", data=orjson.dumps(row, default=str).decode()
                )
        finally:
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    return ServerSentEvent(events(), headers={"cache-control": "no-store"})


HANDLERS: list[ControllerRouterHandler] = [
    home,
    login_form,
    login,
    logout,
    logs,
    log_detail,
    sessions,
    session,
    usage,
    audit,
    keys,
    key_create,
    key_detail,
    key_action,
    teams,
    team_create,
    team_detail,
    team_callback,
    team_disable_logging,
    users,
    user_create,
    models,
    alerting_test,
    live,
    live_stream,
    create_static_files_router(
        path="/static", directories=[HERE / "static"], include_in_schema=False
    ),
]
