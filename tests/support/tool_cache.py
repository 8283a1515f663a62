"""Where the tests keep tools that are not Python packages (Azurite from npm, the AsyncAPI
schema): per user, like uv's and npm's caches, so a fresh checkout reuses them. The same
rule as the justfile's `tool_cache`: TOLLGATE_TOOL_CACHE, else $XDG_CACHE_HOME/tollgate,
else ~/.cache/tollgate."""

from __future__ import annotations

import os
from pathlib import Path


def tool_cache() -> Path:
    explicit = os.environ.get("TOLLGATE_TOOL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tollgate"
