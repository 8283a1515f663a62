"""Which service owns a control or read path that ingress forwards (one base URL for all)."""

from __future__ import annotations

from dataclasses import dataclass

# Ordered: the first matching prefix wins, so specific paths precede their families.
FORWARDED_PREFIXES: tuple[tuple[str, str], ...] = (
    ("/key/health", "exporter"),
    ("/health/services", "alerter"),
    ("/key", "admin"),
    ("/team", "admin"),
    ("/user", "admin"),
    ("/model", "admin"),
    # LiteLLM serves /model/info under /v1 too; the owner answers it without the prefix.
    ("/v1/model", "admin"),
    ("/spend", "ledger"),
    ("/global", "ledger"),
    ("/sessions", "ledger"),
    ("/audit", "ledger"),
)


@dataclass(frozen=True)
class Owners:
    admin: str
    ledger: str
    exporter: str
    alerter: str

    def url_for(self, path: str) -> str | None:
        """The owning service's URL for `path`, or None when ingress does not forward it."""
        for prefix, owner in FORWARDED_PREFIXES:
            if path == prefix or path.startswith(prefix + "/"):
                base: str = getattr(self, owner)
                return base.rstrip("/") + (path[3:] if prefix.startswith("/v1/") else path)
        return None
