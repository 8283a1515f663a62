"""How admin keeps the credentials it is given: sealed at rest, masked whenever shown (the
rule of which names are credentials, and how one is shown, is `tollgate_shared.redaction`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollgate_shared.redaction import is_secret_name, mask_secrets, mask_value
from tollgate_shared.sealing import Sealer


def seal_secrets(value: Any, sealer: Sealer | None) -> Any:
    """A copy of `value` whose credential-named strings are sealed for storage, at any depth
    (the names `mask_secrets` masks; `os.environ/` references stay as they are)."""
    if sealer is None:
        return value
    if isinstance(value, Mapping):
        return {
            k: sealer.seal(v)
            if isinstance(k, str) and is_secret_name(k) and isinstance(v, str)
            else seal_secrets(v, sealer)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [seal_secrets(v, sealer) for v in value]
    return value


def mask_callback_vars(callback_vars: Mapping[str, Any]) -> dict[str, Any]:
    """Callback variables for display: every credential-named value masked, whatever its type."""
    return {
        k: mask_value(v) if is_secret_name(k) else mask_secrets(v) for k, v in callback_vars.items()
    }


def mask_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Key or team metadata for display: secrets masked, including `logging[].callback_vars`."""
    masked: dict[str, Any] = mask_secrets(metadata)
    logging = metadata.get("logging")
    if isinstance(logging, list):
        masked["logging"] = [
            {
                **mask_secrets(entry),
                "callback_vars": mask_callback_vars(entry.get("callback_vars") or {}),
            }
            if isinstance(entry, Mapping) and isinstance(entry.get("callback_vars"), Mapping)
            else mask_secrets(entry)
            for entry in logging
        ]
    return masked
