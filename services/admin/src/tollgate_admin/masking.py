"""How admin keeps the credentials it is given: sealed at rest, masked whenever shown (the
rule of which names are credentials, and how one is shown, is `tollgate_shared.redaction`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tollgate_shared.redaction import is_secret_name, mask_secrets, mask_value
from tollgate_shared.sealing import Sealer


def seal_secrets(value: Any, sealer: Sealer | None, previous: Any = None) -> Any:
    """A copy of `value` whose credential-named strings are sealed for storage, at any depth
    (the names `mask_secrets` masks; `os.environ/` references stay as they are).

    A credential sent back as it was shown (masked: `********abcd`, `sk-...abcd`) keeps the
    stored value at the same place in `previous`, so an edit form that round-trips a masked
    value never overwrites the secret with its mask."""
    if sealer is None and previous is None:
        return value
    if isinstance(value, Mapping):
        before = previous if isinstance(previous, Mapping) else {}
        out: dict[str, Any] = {}
        for k, v in value.items():
            if isinstance(k, str) and is_secret_name(k) and isinstance(v, str):
                kept = before.get(k)
                if looks_masked(v) and isinstance(kept, str):
                    out[k] = kept
                else:
                    out[k] = sealer.seal(v) if sealer is not None else v
            else:
                out[k] = seal_secrets(v, sealer, before.get(k))
        return out
    if isinstance(value, list):
        before_list = previous if isinstance(previous, list) else []
        return [
            seal_secrets(v, sealer, before_list[i] if i < len(before_list) else None)
            for i, v in enumerate(value)
        ]
    return value


_MASKED_FORM = re.compile(r"^(\*{8}\S{0,4}|sk-\.\.\.\S{4})$")


def looks_masked(text: str) -> bool:
    """Whether `text` is a credential as `mask_value` shows it, not a credential."""
    return bool(_MASKED_FORM.fullmatch(text))


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
