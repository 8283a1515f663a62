"""The console's edit forms: which fields each entity's form has, how a posted value becomes an
API value, what changed against the stored record, and which field an API error names."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import orjson

Kind = Literal["text", "email", "int", "float", "list", "json", "choice", "secret"]


@dataclass(frozen=True)
class Field:
    """One input: `name` is the API's field (`litellm_params.x` for a model's params)."""

    name: str
    label: str
    kind: Kind = "text"
    choices: tuple[str, ...] = ()
    help: str = ""
    required: bool = False

    @property
    def input_id(self) -> str:
        return "f-" + self.name.replace(".", "-").replace("_", "-")


_LIMITS = (
    Field("rpm_limit", "RPM limit", "int"),
    Field("tpm_limit", "TPM limit", "int"),
)
_BUDGET = (
    Field("max_budget", "Max budget (USD)", "float", help="empty = no budget"),
    Field("budget_duration", "Budget period", help="30d, 1mo, 1d; empty = lifetime"),
)
KEY = (
    Field("key_alias", "Alias"),
    Field("models", "Models", "list", help="comma separated; empty = all"),
    *_BUDGET,
    *_LIMITS,
    Field("max_parallel_requests", "Max parallel requests", "int"),
    Field("metadata", "Metadata (JSON)", "json", help="a JSON object"),
)
TEAM = (
    Field("team_alias", "Alias"),
    Field("models", "Models", "list", help="comma separated; empty = all"),
    *_BUDGET,
    *_LIMITS,
)
USER_ROLES = ("proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer")
USER = (
    Field("user_email", "E-mail", "email"),
    Field("user_role", "Role", "choice", choices=("", *USER_ROLES)),
    *_BUDGET,
    *_LIMITS,
)
MODEL = (
    Field("model_name", "Model name", required=True, help="the name clients ask for"),
    Field("litellm_params.model", "Upstream model", required=True, help="provider/model"),
    Field("litellm_params.api_base", "API base"),
    Field("litellm_params.api_key", "API key", "secret", help="empty = unchanged"),
    Field("litellm_params.rpm", "RPM", "int"),
    Field("litellm_params.tpm", "TPM", "int"),
    Field("litellm_params.input_cost_per_token", "Input $/token", "float"),
    Field("litellm_params.output_cost_per_token", "Output $/token", "float"),
)
MEMBER_ROLES = ("user", "admin")


def lookup(obj: dict[str, Any], name: str) -> Any:
    """`obj[name]`, following `a.b` into nested objects."""
    value: Any = obj
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def shown(field: Field, value: Any) -> str:
    """A stored value as the form's text."""
    if value is None or field.kind == "secret":
        return ""
    if field.kind == "list":
        return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if field.kind == "json":
        return "" if value in ({}, []) else orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    if field.kind == "float" and isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def initial(fields: tuple[Field, ...], obj: dict[str, Any]) -> dict[str, str]:
    return {f.name: shown(f, lookup(obj, f.name)) for f in fields}


def _parse_one(field: Field, raw: str) -> Any:
    text = raw.strip()
    if field.kind == "list":
        return [m.strip() for m in text.split(",") if m.strip()]
    if field.kind == "json":
        if not text:
            return {}
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.args[0].split(':')[0]})") from None
        if not isinstance(value, dict):
            raise ValueError('must be a JSON object, e.g. {"env": "prod"}')
        return value
    if not text:
        if field.required:
            raise ValueError("required")
        return None
    if field.kind == "int":
        try:
            number = int(text)
        except ValueError:
            raise ValueError("must be a whole number") from None
        if number < 0:
            raise ValueError("must be 0 or more")
        return number
    if field.kind == "float":
        try:
            amount = float(text)
        except ValueError:
            raise ValueError("must be a number") from None
        if not math.isfinite(amount) or amount < 0:
            raise ValueError("must be a number, 0 or more")
        return amount
    if field.kind == "choice" and text not in field.choices:
        raise ValueError(f"must be one of {', '.join(c for c in field.choices if c)}")
    return text


def parse(fields: tuple[Field, ...], data: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The posted values as API values, and a message per field that could not be read."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields:
        try:
            values[f.name] = _parse_one(f, data.get(f.name, ""))
        except ValueError as exc:
            errors[f.name] = str(exc)
    return values, errors


def _same(field: Field, new: Any, old: Any) -> bool:
    if field.kind == "list":
        return list(new or []) == list(old or [])
    if field.kind == "json":
        return (new or {}) == (old or {})
    if field.kind in ("int", "float") and new is not None and old is not None:
        try:
            return float(new) == float(old)
        except (TypeError, ValueError):
            return False
    return bool(new == (old if old != "" else None))


def changed(
    fields: tuple[Field, ...], values: dict[str, Any], current: dict[str, Any]
) -> dict[str, Any]:
    """Only what differs from the stored record (a cleared field is sent as null, so a
    budget or limit can be removed); a secret left empty is not sent."""
    out: dict[str, Any] = {}
    for f in fields:
        new = values.get(f.name)
        if f.kind == "secret" and new is None:
            continue
        if not _same(f, new, lookup(current, f.name)):
            out[f.name] = new
    return out


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """`{"litellm_params.model": x}` as `{"litellm_params": {"model": x}}`."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        head, _, rest = name.partition(".")
        if rest:
            out.setdefault(head, {})[rest] = value
        else:
            out[name] = value
    return out


def field_of(param: str | None, fields: tuple[Field, ...]) -> str | None:
    """The form field an API error's `param` names (`body.max_budget`, `litellm_params.rpm`,
    `max_budget`), or None when it names none of them."""
    if not param:
        return None
    names = {f.name for f in fields}
    parts = [p for p in param.replace("[", ".").replace("]", "").split(".") if p]
    for i in range(len(parts)):
        candidate = ".".join(parts[i:])
        if candidate in names:
            return candidate
    tail = parts[-1] if parts else ""
    matches = [f.name for f in fields if f.name.rsplit(".", 1)[-1] == tail]
    return matches[0] if len(matches) == 1 else None
