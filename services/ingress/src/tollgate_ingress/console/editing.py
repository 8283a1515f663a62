"""The console's edit forms: keys, teams (and their members), users and models, changed through
admin's public APIs with the signed-in key; a refused value is shown next to its field."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.response import Redirect
from litestar.types import ControllerRouterHandler

from tollgate_ingress.console import forms
from tollgate_ingress.console.api import ApiError, PublicApi
from tollgate_ingress.console.pages import SignedOutError, _api, _form, _page, _render
from tollgate_shared import names

Load = Callable[[PublicApi], Awaitable[dict[str, Any]]]
Save = Callable[[PublicApi, dict[str, Any]], Awaitable[Any]]
# Statuses that mean "this value was refused": shown on the form, the form kept.
_REFUSED = (400, 404, 409, 422)


def _q(value: str) -> str:
    return quote(value, safe="")


async def _master_only(api: PublicApi, master: bool, what: str) -> None:
    if not master:
        raise ApiError(403, f"{what} are changed with the master key")


def _form_ctx(
    *,
    nav: str,
    title: str,
    action: str,
    back: str,
    fields: tuple[forms.Field, ...],
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    form_error: str | None = None,
    submit: str = "Save",
    delete: str | None = None,
) -> dict[str, Any]:
    return {
        "nav": nav,
        "title": title,
        "action": action,
        "back": back,
        "fields": fields,
        "values": values,
        "errors": errors or {},
        "form_error": form_error,
        "submit": submit,
        "delete": delete,
    }


async def _edit_form(
    request: Request[Any, Any, Any],
    state: State,
    *,
    load: Load,
    fields: tuple[forms.Field, ...],
    **ctx: Any,
) -> Response[Any]:
    """GET: the form filled with the stored record (`load` is `{}` for a new one)."""

    async def page(api: PublicApi, master: bool) -> dict[str, Any]:
        await _master_only(api, master, ctx["what"])
        current = await load(api)
        ctx_ = {k: v for k, v in ctx.items() if k != "what"}
        return _form_ctx(fields=fields, values=forms.initial(fields, current), **ctx_)

    return await _page(request, state, "edit.html", page)


async def _edit_submit(
    request: Request[Any, Any, Any],
    state: State,
    *,
    load: Load,
    save: Save,
    fields: tuple[forms.Field, ...],
    done: Callable[[Any], str],
    **ctx: Any,
) -> Response[Any]:
    """POST: read the form, send what changed, go to `done(result)`; a value the form or the
    API refuses comes back on the form next to its field, with everything typed kept."""
    try:
        api = _api(request, state)
        data = await _form(request, api)
    except SignedOutError:
        return Redirect("/ui/login")
    except ApiError as exc:
        return await _render(request, api, "error.html", exc.status, error=exc)
    what = ctx.pop("what")
    values, errors = forms.parse(fields, data)
    form_error = None
    if not errors:
        try:
            current = await load(api)
            changes = forms.changed(fields, values, current)
            result = await save(api, forms.nested(changes)) if changes or not current else None
            return Redirect(done(result if result is not None else current))
        except ApiError as exc:
            if exc.status == 401:
                return Redirect("/ui/login?expired=1")
            if exc.status not in _REFUSED:
                status = exc.status if exc.status < 500 else 502
                return await _render(request, api, "error.html", status, error=exc)
            field = forms.field_of(exc.param, fields)
            if field:
                errors[field] = exc.message
            else:
                form_error = exc.message
    else:
        form_error = f"Check the {what} form: {len(errors)} field(s) need a change."
    shown = {f.name: data.get(f.name, "") for f in fields}
    return await _render(
        request,
        api,
        "edit.html",
        400,
        **_form_ctx(fields=fields, values=shown, errors=errors, form_error=form_error, **ctx),
    )


def _with_notice(path: str, notice: str) -> str:
    return f"{path}?{urlencode({'notice': notice})}"


# --- keys ---------------------------------------------------------------------------------


def _key_loader(token: str) -> Load:
    async def load(api: PublicApi) -> dict[str, Any]:
        info = await api.get("/key/info", key=token)
        return dict(info.get("info", info))

    return load


def _key_ctx(token: str) -> dict[str, Any]:
    return {
        "what": "keys",
        "nav": "keys",
        "title": "Edit key",
        "action": f"/ui/keys/{_q(token)}/edit",
        "back": f"/ui/keys/{_q(token)}",
    }


@get("/keys/{token:str}/edit", include_in_schema=False)
async def key_edit_form(request: Request[Any, Any, Any], state: State, token: str) -> Response[Any]:
    return await _edit_form(
        request, state, load=_key_loader(token), fields=forms.KEY, **_key_ctx(token)
    )


@post("/keys/{token:str}/edit", include_in_schema=False, status_code=200)
async def key_edit(request: Request[Any, Any, Any], state: State, token: str) -> Response[Any]:
    async def save(api: PublicApi, body: dict[str, Any]) -> Any:
        return await api.post("/key/update", {"key": token, **body})

    return await _edit_submit(
        request,
        state,
        load=_key_loader(token),
        save=save,
        fields=forms.KEY,
        done=lambda _: _with_notice(f"/ui/keys/{_q(token)}", "Key updated."),
        **_key_ctx(token),
    )


# --- teams and members -----------------------------------------------------------------------


def _team_loader(team_id: str) -> Load:
    async def load(api: PublicApi) -> dict[str, Any]:
        info = await api.get("/team/info", team_id=team_id)
        return dict(info.get("team_info", info))

    return load


def _team_ctx(team_id: str) -> dict[str, Any]:
    return {
        "what": "teams",
        "nav": "teams",
        "title": "Edit team",
        "action": f"/ui/teams/{_q(team_id)}/edit",
        "back": f"/ui/teams/{_q(team_id)}",
    }


@get("/teams/{team_id:str}/edit", include_in_schema=False)
async def team_edit_form(
    request: Request[Any, Any, Any], state: State, team_id: str
) -> Response[Any]:
    return await _edit_form(
        request, state, load=_team_loader(team_id), fields=forms.TEAM, **_team_ctx(team_id)
    )


@post("/teams/{team_id:str}/edit", include_in_schema=False, status_code=200)
async def team_edit(request: Request[Any, Any, Any], state: State, team_id: str) -> Response[Any]:
    async def save(api: PublicApi, body: dict[str, Any]) -> Any:
        return await api.post("/team/update", {"team_id": team_id, **body})

    return await _edit_submit(
        request,
        state,
        load=_team_loader(team_id),
        save=save,
        fields=forms.TEAM,
        done=lambda _: _with_notice(f"/ui/teams/{_q(team_id)}", "Team updated."),
        **_team_ctx(team_id),
    )


async def _member_act(
    request: Request[Any, Any, Any], state: State, team_id: str, send: Save, notice: str
) -> Response[Any]:
    """Add or remove a member; a refusal is shown on the team page next to its field."""
    back = f"/ui/teams/{_q(team_id)}"
    try:
        api = _api(request, state)
        data = await _form(request, api)
        await send(api, data)
    except SignedOutError:
        return Redirect("/ui/login")
    except ApiError as exc:
        if exc.status not in _REFUSED:
            return await _render(request, api, "error.html", exc.status, error=exc)
        # admin names `member.user_id` (or `member[0].role`): the input it came from.
        named = [f for f in ("user_email", "user_id", "role") if f in (exc.param or "")]
        field = named[0] if named else "member"
        params = {"member_error": exc.message, "member_field": field}
        params |= {f"m_{k}": v for k, v in data.items() if k in ("user_id", "user_email", "role")}
        return Redirect(f"{back}?{urlencode(params)}")
    return Redirect(_with_notice(back, notice))


@post("/teams/{team_id:str}/members", include_in_schema=False, status_code=200)
async def team_member_add(
    request: Request[Any, Any, Any], state: State, team_id: str
) -> Response[Any]:
    async def send(api: PublicApi, data: dict[str, Any]) -> Any:
        who = {k: data[k].strip() for k in ("user_id", "user_email") if data.get(k, "").strip()}
        if not who:
            raise ApiError(400, "give a user id or an e-mail", "user_id")
        if "user_id" in who and not re.fullmatch(names.ID_PATTERN, who["user_id"]):
            raise ApiError(
                400, f"a user id is letters, digits, _ and - ({names.ID_PATTERN})", "user_id"
            )
        role = data.get("role") or "user"
        if role not in forms.MEMBER_ROLES:
            raise ApiError(400, f"role must be one of {', '.join(forms.MEMBER_ROLES)}", "role")
        return await api.post(
            "/team/member_add", {"team_id": team_id, "member": {**who, "role": role}}
        )

    return await _member_act(request, state, team_id, send, "Member added.")


@post("/teams/{team_id:str}/members/remove", include_in_schema=False, status_code=200)
async def team_member_remove(
    request: Request[Any, Any, Any], state: State, team_id: str
) -> Response[Any]:
    async def send(api: PublicApi, data: dict[str, Any]) -> Any:
        who = {k: data[k] for k in ("user_id", "user_email") if data.get(k)}
        return await api.post("/team/member_delete", {"team_id": team_id, **who})

    return await _member_act(request, state, team_id, send, "Member removed.")


# --- users ------------------------------------------------------------------------------------


def _user_loader(user_id: str) -> Load:
    async def load(api: PublicApi) -> dict[str, Any]:
        info = await api.get("/user/info", user_id=user_id)
        return dict(info.get("user_info", info))

    return load


def _user_ctx(user_id: str) -> dict[str, Any]:
    return {
        "what": "users",
        "nav": "users",
        "title": f"Edit user {user_id}",
        "action": f"/ui/users/{_q(user_id)}/edit",
        "back": "/ui/users",
    }


@get("/users/{user_id:str}/edit", include_in_schema=False)
async def user_edit_form(
    request: Request[Any, Any, Any], state: State, user_id: str
) -> Response[Any]:
    return await _edit_form(
        request, state, load=_user_loader(user_id), fields=forms.USER, **_user_ctx(user_id)
    )


@post("/users/{user_id:str}/edit", include_in_schema=False, status_code=200)
async def user_edit(request: Request[Any, Any, Any], state: State, user_id: str) -> Response[Any]:
    async def save(api: PublicApi, body: dict[str, Any]) -> Any:
        return await api.post("/user/update", {"user_id": user_id, **body})

    return await _edit_submit(
        request,
        state,
        load=_user_loader(user_id),
        save=save,
        fields=forms.USER,
        done=lambda _: _with_notice("/ui/users", f"User {user_id} updated."),
        **_user_ctx(user_id),
    )


# --- models -----------------------------------------------------------------------------------


def _model_loader(model_id: str) -> Load:
    async def load(api: PublicApi) -> dict[str, Any]:
        found = await api.get("/model/info")
        for m in found.get("data", []):
            if (m.get("model_info") or {}).get("id") == model_id or m.get("model_id") == model_id:
                return dict(m)
        raise ApiError(404, f"no model deployment {model_id!r}")

    return load


async def _nothing(_: PublicApi) -> dict[str, Any]:
    return {}


_NEW_MODEL = {
    "what": "models",
    "nav": "models",
    "title": "Add a model",
    "action": "/ui/models/new",
    "back": "/ui/models",
    "submit": "Add model",
}


@get("/models/new", include_in_schema=False)
async def model_new_form(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    return await _edit_form(request, state, load=_nothing, fields=forms.MODEL, **_NEW_MODEL)


@post("/models/new", include_in_schema=False, status_code=200)
async def model_new(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    async def save(api: PublicApi, body: dict[str, Any]) -> Any:
        params = {k: v for k, v in body.get("litellm_params", {}).items() if v is not None}
        return await api.post(
            "/model/new", {"model_name": body.get("model_name"), "litellm_params": params}
        )

    return await _edit_submit(
        request,
        state,
        load=_nothing,
        save=save,
        fields=forms.MODEL,
        done=lambda _: _with_notice("/ui/models", "Model added."),
        **_NEW_MODEL,
    )


def _model_ctx(model_id: str) -> dict[str, Any]:
    return {
        "what": "models",
        "nav": "models",
        "title": "Edit model",
        "action": f"/ui/models/{_q(model_id)}/edit",
        "back": "/ui/models",
        "delete": f"/ui/models/{_q(model_id)}/delete",
    }


@get("/models/{model_id:str}/edit", include_in_schema=False)
async def model_edit_form(
    request: Request[Any, Any, Any], state: State, model_id: str
) -> Response[Any]:
    return await _edit_form(
        request, state, load=_model_loader(model_id), fields=forms.MODEL, **_model_ctx(model_id)
    )


@post("/models/{model_id:str}/edit", include_in_schema=False, status_code=200)
async def model_edit(request: Request[Any, Any, Any], state: State, model_id: str) -> Response[Any]:
    async def save(api: PublicApi, body: dict[str, Any]) -> Any:
        return await api.post("/model/update", {**body, "model_info": {"id": model_id}})

    return await _edit_submit(
        request,
        state,
        load=_model_loader(model_id),
        save=save,
        fields=forms.MODEL,
        done=lambda _: _with_notice("/ui/models", "Model updated."),
        **_model_ctx(model_id),
    )


@post("/models/{model_id:str}/delete", include_in_schema=False, status_code=200)
async def model_delete(
    request: Request[Any, Any, Any], state: State, model_id: str
) -> Response[Any]:
    try:
        api = _api(request, state)
        await _form(request, api)
        await api.post("/model/delete", {"id": model_id})
    except SignedOutError:
        return Redirect("/ui/login")
    except ApiError as exc:
        return await _render(request, api, "error.html", exc.status, error=exc)
    return Redirect(_with_notice("/ui/models", "Model deleted."))


HANDLERS: list[ControllerRouterHandler] = [
    key_edit_form,
    key_edit,
    team_edit_form,
    team_edit,
    team_member_add,
    team_member_remove,
    user_edit_form,
    user_edit,
    model_new_form,
    model_new,
    model_edit_form,
    model_edit,
    model_delete,
]
