"""Sums a batch's new calls per session, per day and dimension, and per spend total: one
row per group, as column arrays ready for one `unnest` upsert each."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from tollgate_ledger.rows import SpendRow

SUCCESS = "success"
_K = TypeVar("_K")
_S = TypeVar("_S")

# Running sums of a group, as a list for speed: [spend, prompt tokens, completion tokens,
# total tokens, requests, successes, index of the group's last row in the batch].
_SPEND, _PROMPT, _COMPLETION, _TOTAL, _REQUESTS, _SUCCESSES, _LAST = range(7)


@dataclass(slots=True)
class _Sums:
    spend: Decimal = Decimal(0)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    requests: int = 0
    successes: int = 0

    def merge(self, other: _Sums) -> None:
        self.spend += other.spend
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.total_tokens += other.total_tokens
        self.requests += other.requests
        self.successes += other.successes

    def add(self, sums: list[Any]) -> None:
        self.spend += sums[_SPEND]
        self.prompt_tokens += sums[_PROMPT]
        self.completion_tokens += sums[_COMPLETION]
        self.total_tokens += sums[_TOTAL]
        self.requests += sums[_REQUESTS]
        self.successes += sums[_SUCCESSES]


@dataclass(slots=True, kw_only=True)
class _Session(_Sums):
    first_seen: datetime
    last_seen: datetime


@dataclass(slots=True)
class _Total(_Sums):
    alias: str | None = None
    alias_at: int = -1  # index in the batch of the row the alias came from


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

    def keys(self) -> list[str]:
        """The key hashes the batch adds to the totals of."""
        return [entity_id for entity, entity_id in self.totals if entity == "key"]

    def move_keys(self, moves: Mapping[str, str]) -> None:
        """Add the totals of rotated keys (old hash -> newest hash) to their new hash's:
        calls made with a key before its rotation and recorded after it."""
        for old, new in moves.items():
            moved = self.totals.pop(("key", old), None)
            if moved is None:
                continue
            into = _group(self.totals, ("key", new), _Total)
            into.merge(moved)
            if moved.alias is not None and moved.alias_at > into.alias_at:
                into.alias, into.alias_at = moved.alias, moved.alias_at

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
    team, user and end user, with the batch's last alias of a key or team.

    The calls of a batch mostly share their day, key, team, user and model: they are
    summed once per distinct combination of those, and each combination is then added
    to its ten or so groups, instead of every call to every group.
    """
    out = BatchAggregates()
    combos: dict[tuple[Any, ...], list[Any]] = {}
    for i, row in enumerate(rows):
        ok = row.status == SUCCESS
        combo = (
            row.day,
            row.key,
            row.key_alias,
            row.team_id,
            row.team_alias,
            row.user_id,
            row.end_user,
            row.model_group,
            row.tags,
        )
        sums = combos.get(combo)
        if sums is None:
            sums = combos[combo] = [
                row.spend,
                row.prompt_tokens,
                row.completion_tokens,
                row.total_tokens,
                1,
                int(ok),
                i,
            ]
        else:
            sums[_SPEND] += row.spend
            sums[_PROMPT] += row.prompt_tokens
            sums[_COMPLETION] += row.completion_tokens
            sums[_TOTAL] += row.total_tokens
            sums[_REQUESTS] += 1
            sums[_SUCCESSES] += ok
            sums[_LAST] = i
        if row.session_id is not None:
            _add_to_session(out.sessions, row.session_id, row, ok)
    for combo, sums in combos.items():
        _add_to_groups(out, combo, sums)
    return out


def _add_to_session(
    sessions: dict[str, _Session], session_id: str, row: SpendRow, ok: bool
) -> None:
    s = sessions.get(session_id)
    if s is None:
        s = sessions[session_id] = _Session(first_seen=row.start_time, last_seen=row.end_time)
    else:
        s.first_seen = min(s.first_seen, row.start_time)
        s.last_seen = max(s.last_seen, row.end_time)
    s.add([row.spend, row.prompt_tokens, row.completion_tokens, row.total_tokens, 1, int(ok)])


def _add_to_groups(out: BatchAggregates, combo: tuple[Any, ...], sums: list[Any]) -> None:
    day, key, key_alias, team_id, team_alias, user_id, end_user, model_group, tags = combo
    for dimension, dimension_id in (
        ("key", key),
        ("team", team_id),
        ("user", user_id),
        ("end_user", end_user),
        ("model", model_group),
    ):
        if dimension_id is not None:
            _group(out.daily, (day, dimension, dimension_id), _Sums).add(sums)
    for tag in tags:
        _group(out.daily, (day, "tag", tag), _Sums).add(sums)
    for entity, entity_id, alias in (
        ("key", key, key_alias),
        ("team", team_id, team_alias),
        ("user", user_id, None),
        ("end_user", end_user, None),
    ):
        if entity_id is None:
            continue
        total = _group(out.totals, (entity, entity_id), _Total)
        total.add(sums)
        if alias is not None and sums[_LAST] > total.alias_at:
            total.alias, total.alias_at = alias, sums[_LAST]


def _group(groups: dict[_K, _S], key: _K, new: type[_S]) -> _S:
    found = groups.get(key)
    if found is None:
        found = groups[key] = new()
    return found
