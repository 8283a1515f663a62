"""Sums a batch's new calls per session, per day and dimension, and per spend total: one
row per group, as column arrays ready for one `unnest` upsert each."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from tollgate_ledger.rows import SpendRow

SUCCESS = "success"


@dataclass(slots=True)
class _Sums:
    spend: Decimal = Decimal(0)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    requests: int = 0
    successes: int = 0

    def add(self, row: SpendRow) -> None:
        self.spend += row.spend
        self.prompt_tokens += row.prompt_tokens
        self.completion_tokens += row.completion_tokens
        self.total_tokens += row.total_tokens
        self.requests += 1
        self.successes += row.status == SUCCESS


@dataclass(slots=True, kw_only=True)
class _Session(_Sums):
    first_seen: datetime
    last_seen: datetime


@dataclass(slots=True)
class _Total(_Sums):
    alias: str | None = None


@dataclass
class BatchAggregates:
    """What a batch adds to `sessions`, `daily_spend` and `spend_totals`, one entry per row
    it upserts. Each `*_columns` method gives that table's columns as arrays, sorted by
    the table's key so concurrent writers lock rows in the same order."""

    sessions: dict[str, _Session] = field(default_factory=dict)
    daily: dict[tuple[date, str, str], _Sums] = field(default_factory=dict)
    totals: dict[tuple[str, str], _Total] = field(default_factory=dict)

    def session_columns(self) -> list[list[Any]]:
        keys = sorted(self.sessions)
        s = [self.sessions[k] for k in keys]
        return [
            keys,
            [x.first_seen for x in s],
            [x.last_seen for x in s],
            [x.requests for x in s],
            [x.successes for x in s],
            [x.requests - x.successes for x in s],
            [x.spend for x in s],
            [x.prompt_tokens for x in s],
            [x.completion_tokens for x in s],
            [x.total_tokens for x in s],
        ]

    def daily_columns(self) -> list[list[Any]]:
        keys = sorted(self.daily)
        d = [self.daily[k] for k in keys]
        return [
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            [x.spend for x in d],
            [x.prompt_tokens for x in d],
            [x.completion_tokens for x in d],
            [x.total_tokens for x in d],
            [x.requests for x in d],
            [x.successes for x in d],
            [x.requests - x.successes for x in d],
        ]

    def total_columns(self) -> list[list[Any]]:
        keys = sorted(self.totals)
        t = [self.totals[k] for k in keys]
        return [
            [k[0] for k in keys],
            [k[1] for k in keys],
            [x.spend for x in t],
            [x.requests for x in t],
            [x.total_tokens for x in t],
            [x.alias for x in t],
        ]


def aggregate(rows: Iterable[SpendRow]) -> BatchAggregates:
    """Group new calls: a session by its id; a day (UTC, of the start) by key, team, user,
    end user, model group and each tag (a tag listed twice counts twice); a total by key,
    team, user and end user, with the batch's last alias of a key or team."""
    out = BatchAggregates()
    sessions, daily, totals = out.sessions, out.daily, out.totals
    for row in rows:
        if row.session_id is not None:
            s = sessions.get(row.session_id)
            if s is None:
                s = sessions[row.session_id] = _Session(
                    first_seen=row.start_time, last_seen=row.end_time
                )
            else:
                s.first_seen = min(s.first_seen, row.start_time)
                s.last_seen = max(s.last_seen, row.end_time)
            s.add(row)
        day = row.start_time.astimezone(UTC).date()
        for dimension, dimension_id in (
            ("key", row.key),
            ("team", row.team_id),
            ("user", row.user_id),
            ("end_user", row.end_user),
            ("model", row.model_group),
        ):
            if dimension_id is not None:
                _sums(daily, (day, dimension, dimension_id)).add(row)
        for tag in row.tags:
            _sums(daily, (day, "tag", tag)).add(row)
        for entity, entity_id, alias in (
            ("key", row.key, row.key_alias),
            ("team", row.team_id, row.team_alias),
            ("user", row.user_id, None),
            ("end_user", row.end_user, None),
        ):
            if entity_id is None:
                continue
            t = totals.get((entity, entity_id))
            if t is None:
                t = totals[(entity, entity_id)] = _Total()
            t.add(row)
            if alias is not None:
                t.alias = alias
    return out


def _sums(groups: dict[tuple[date, str, str], _Sums], key: tuple[date, str, str]) -> _Sums:
    found = groups.get(key)
    if found is None:
        found = groups[key] = _Sums()
    return found
