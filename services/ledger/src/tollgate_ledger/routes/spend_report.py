"""LiteLLM's /global/spend/report shapes, built from spend per day, team, end user, model, key."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

GroupBy = Literal["team", "customer", "api_key"]
GROUP_BYS: tuple[GroupBy, ...] = ("team", "customer", "api_key")
UNASSIGNED_TEAM = "Unassigned Team"

# The list each day carries, by what its entries are grouped on.
_DAY_LISTS = {"team": "teams", "customer": "customers", "team_customer": "teams_customers"}


def team_names(rows: list[dict[str, Any]]) -> dict[str | None, str]:
    """Each team's name: its latest alias, else its id; LiteLLM's "Unassigned Team" for none."""
    names: dict[str | None, str] = {}
    for r in reversed(rows):  # newest day first, so the latest alias wins
        if r["team_id"] not in names or names[r["team_id"]] == r["team_id"]:
            names[r["team_id"]] = r["team_alias"] or r["team_id"] or UNASSIGNED_TEAM
    return names


def by_day(rows: list[dict[str, Any]], group: str) -> list[dict[str, Any]]:
    """`[{group_by_day, teams|customers|teams_customers: [{team_name?, customer?, total_spend,
    metadata: [{model, api_key, spend, total_tokens}]}]}]`, days in order, highest spend first.
    """
    names = team_names(rows)
    days: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    for r in rows:
        ident: dict[str, Any] = {}
        if group in ("team", "team_customer"):
            ident["team_name"] = names[r["team_id"]]
            ident["team_id"] = r["team_id"]
        if group in ("customer", "team_customer"):
            ident["customer"] = r["end_user"]
        entry = days.setdefault(r["day"].isoformat(), {}).setdefault(
            tuple(ident.values()), {**ident, "total_spend": Decimal(0), "metadata": []}
        )
        entry["total_spend"] += r["spend"]
        entry["metadata"].append(
            {
                "model": r["model"],
                "api_key": r["api_key"],
                "spend": r["spend"],
                "total_tokens": r["total_tokens"],
            }
        )
    return [
        {
            "group_by_day": day,
            _DAY_LISTS[group]: sorted(groups.values(), key=lambda g: -g["total_spend"]),
        }
        for day, groups in days.items()
    ]


def by_api_key(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`[{api_key, total_cost, total_input_tokens, total_output_tokens, model_details:
    [{model, total_cost, total_input_tokens, total_output_tokens}]}]`, highest cost first."""
    keys: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = keys.setdefault(
            r["api_key"],
            {
                "api_key": r["api_key"],
                "total_cost": Decimal(0),
                "total_input_tokens": 0,
                "total_output_tokens": 0,
                "models": {},
            },
        )
        model = key["models"].setdefault(
            r["model"],
            {
                "model": r["model"],
                "total_cost": Decimal(0),
                "total_input_tokens": 0,
                "total_output_tokens": 0,
            },
        )
        for acc in (key, model):
            acc["total_cost"] += r["spend"]
            acc["total_input_tokens"] += r["prompt_tokens"]
            acc["total_output_tokens"] += r["completion_tokens"]
    out = []
    for key in sorted(keys.values(), key=lambda k: (-k["total_cost"], k["api_key"])):
        models = key.pop("models")
        key["model_details"] = sorted(models.values(), key=lambda m: -m["total_cost"])
        out.append(key)
    return out
