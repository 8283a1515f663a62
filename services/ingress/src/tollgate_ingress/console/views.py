"""What the console's pages show, computed from API rows: filters, timings, conversation turns."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

# The Logs page's filters, in the URL as they are named here.
LOG_FILTERS = (
    "start_date",
    "end_date",
    "key",
    "team_id",
    "user_id",
    "end_user",
    "model",
    "status",
    "session_id",
    "tag",
    "request_id",
)
_HASH = re.compile(r"^[0-9a-f]{64}$")


def log_query(filters: dict[str, str]) -> dict[str, str]:
    """The console's filters as `/spend/logs/ui` parameters: `key` is a hash, an `sk-` key
    (hashed by the ledger) or an alias."""
    out = {k: v for k, v in filters.items() if v and k not in {"key", "status"}}
    key = filters.get("key", "")
    if key:
        out["api_key" if _HASH.match(key) or key.startswith("sk-") else "key_alias"] = key
    if filters.get("status"):
        out["status_filter"] = filters["status"]
    for bound in ("start_date", "end_date"):
        if out.get(bound):
            out[bound] = out[bound].replace("T", " ")
    return out


def when(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def ms_between(start: Any, end: Any) -> int | None:
    a, b = when(start), when(end)
    return round((b - a).total_seconds() * 1000) if a and b else None


def timings(row: dict[str, Any]) -> dict[str, int | None]:
    """Total latency, time to first token and what came after it, in ms."""
    total = ms_between(row.get("startTime"), row.get("endTime"))
    ttft = ms_between(row.get("startTime"), row.get("completionStartTime"))
    return {
        "total_ms": row.get("request_duration_ms") or total,
        "ttft_ms": ttft,
        "generation_ms": (total - ttft) if total is not None and ttft is not None else None,
    }


def cost_breakdown(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "spend": Decimal(str(row.get("spend") or 0)),
        "prompt_tokens": row.get("prompt_tokens") or 0,
        "completion_tokens": row.get("completion_tokens") or 0,
        "cached_tokens": row.get("cached_tokens") or 0,
        "reasoning_tokens": row.get("reasoning_tokens") or 0,
        "total_tokens": row.get("total_tokens") or 0,
    }


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content
        ).strip()
    return "" if content is None else orjson.dumps(content).decode()


def prompt_text(messages: Any) -> str:
    """The turn's last user message (Chat Completions) or its input (Responses API)."""
    if isinstance(messages, dict):
        messages = messages.get("input", messages.get("messages", messages))
    if isinstance(messages, str):
        return messages
    if isinstance(messages, list):
        for m in reversed(messages):
            if isinstance(m, dict) and m.get("role", "user") == "user":
                return _content_text(m.get("content"))
    return ""


def answer_text(response: Any) -> str:
    """The reply of a Chat Completions or Responses API answer, as text."""
    if not isinstance(response, dict):
        return _content_text(response)
    choices = response.get("choices")
    if isinstance(choices, list) and choices:
        first = choices[0] if isinstance(choices[0], dict) else {}
        msg = first.get("message") or first.get("delta") or {}
        return _content_text(msg.get("content") if isinstance(msg, dict) else msg)
    output = response.get("output")
    if isinstance(output, list):
        return "\n".join(
            _content_text(o.get("content")) for o in output if isinstance(o, dict)
        ).strip()
    return _content_text(response.get("output_text", ""))


def pretty(value: Any) -> str:
    if value in (None, "", {}, []):
        return ""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def page_links(page: int, total_pages: int) -> list[int]:
    """Page numbers to offer: the first, the last and two either side of the current one."""
    pages = {1, total_pages, *range(max(page - 2, 1), min(page + 2, total_pages) + 1)}
    return sorted(p for p in pages if 1 <= p <= max(total_pages, 1))
