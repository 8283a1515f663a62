"""Credentials at rest: sealed (authenticated encryption) wherever admin stores them.

Admin seals the credential-named values it is given — an API-added model's
`api_key`, a team's Langfuse keys in `callback_vars`, a key's
`metadata.logging[].callback_vars` — before they reach PostgreSQL or the KV
buckets. The services that use them (ingress for upstream keys, exporter for
sink credentials) open them as they load state, never per request. The seal is
Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) with a key derived from
`TOLLGATE_SALT_KEY` (or LiteLLM's `LITELLM_SALT_KEY`), else from the master key,
as LiteLLM does. A value that is not sealed (an `os.environ/` reference, or a row
written before sealing existed) passes through unchanged.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any, TypeVar

from cryptography.fernet import Fernet, InvalidToken
from pydantic import BaseModel

from tollgate_shared.config import ENV_PREFIX

SEALED_PREFIX = "tollgate-sealed:v1:"

M = TypeVar("M", bound=BaseModel)


class SealError(ValueError):
    """A sealed value that this key cannot open (another salt key sealed it, or it was altered)."""


class Sealer:
    def __init__(self, secret: str) -> None:
        digest = hashlib.sha256(b"tollgate-sealing-v1\0" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, text: str) -> str:
        """Seal a credential; references and already-sealed values are returned unchanged.

        The sealed form keeps the last four characters of a long secret readable (as the
        masked display shows them, LiteLLM-style): `tollgate-sealed:v1:<hint>.<token>`.
        """
        if text.startswith((SEALED_PREFIX, ENV_PREFIX)):
            return text
        hint = base64.urlsafe_b64encode(text[-4:].encode()).decode() if len(text) >= 16 else ""
        return f"{SEALED_PREFIX}{hint}.{self._fernet.encrypt(text.encode()).decode()}"

    def open(self, text: str) -> str:
        if not text.startswith(SEALED_PREFIX):
            return text
        token = text[len(SEALED_PREFIX) :].partition(".")[2]
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SealError(
                "a stored credential cannot be opened: it was sealed with another "
                "TOLLGATE_SALT_KEY / master key"
            ) from None

    def open_all(self, value: Any) -> Any:
        """`value` with every sealed string in it opened, at any depth (the same object
        when nothing in it was sealed)."""
        if isinstance(value, str):
            return self.open(value)
        if isinstance(value, Mapping):
            opened = {k: self.open_all(v) for k, v in value.items()}
            return value if all(opened[k] is v for k, v in value.items()) else opened
        if isinstance(value, list):
            items = [self.open_all(v) for v in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        return value

    def open_model(self, model: M) -> M:
        """A state model with its sealed credentials opened (itself when it holds none)."""
        dumped = model.model_dump()
        opened = self.open_all(dumped)
        return model if opened is dumped else type(model).model_validate(opened)


def sealed_hint(text: str) -> str | None:
    """For a sealed value, the last characters it keeps readable ("" when none); None when
    `text` is not sealed."""
    if not text.startswith(SEALED_PREFIX):
        return None
    hint = text[len(SEALED_PREFIX) :].partition(".")[0]
    try:
        return base64.urlsafe_b64decode(hint.encode()).decode()
    except ValueError:
        return ""


def sealer_for(salt_key: str | None, master_key: str | None) -> Sealer | None:
    """The sealer every service derives alike; None when there is no secret to derive it from."""
    secret = salt_key or master_key
    return Sealer(secret) if secret else None
