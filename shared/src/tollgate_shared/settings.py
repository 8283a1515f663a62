"""Process settings from the environment (`TOLLGATE_*`), read once at start and passed in."""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from tollgate_shared.config import DEFAULT_MASTER_KEY, TollgateConfig, load_config
from tollgate_shared.sealing import Sealer, sealer_for

log = logging.getLogger(__name__)


class NatsAuth(BaseSettings):
    """How a process authenticates to NATS: its own user, and TLS where NATS is remote.

    `TOLLGATE_NATS_USER` / `TOLLGATE_NATS_PASSWORD` rather than `user:password@` in
    `TOLLGATE_NATS_URL`, so the password never appears where URLs are logged (a URL's
    own credentials still work when these are unset). TLS: a `tls://` URL, or a server
    that requires it, is verified against the system CAs or `TOLLGATE_NATS_TLS_CA`;
    `TOLLGATE_NATS_TLS_CERT`/`_KEY` add a client certificate (mutual TLS).
    """

    model_config = SettingsConfigDict(env_prefix="TOLLGATE_NATS_", extra="ignore")

    user: str | None = None
    password: SecretStr | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        ctx = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(self.tls_ca) if self.tls_ca else None
        )
        if self.tls_cert:
            ctx.load_cert_chain(str(self.tls_cert), str(self.tls_key) if self.tls_key else None)
        return ctx

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for `nats.connect`."""
        options: dict[str, Any] = {}
        if self.user:
            options["user"] = self.user
            options["password"] = self.password.get_secret_value() if self.password else ""
        tls = self.ssl_context()
        if tls is not None:
            options["tls"] = tls
        return options


class ServiceSettings(BaseSettings):
    """What every service reads; a service subclasses it to add its own port and knobs."""

    model_config = SettingsConfigDict(env_prefix="TOLLGATE_", extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
    # This process's own NATS user (see NatsAuth; connect_nats reads the same variables).
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    nats_tls_ca: Path | None = None
    nats_tls_cert: Path | None = None
    nats_tls_key: Path | None = None
    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    redis_url: str = "redis://127.0.0.1:6379/0"
    config: Path | None = Field(None, description="path to config.yaml (LiteLLM format)")
    master_key: str | None = None
    # Derives the key credentials are sealed with at rest (else the master key), as
    # LiteLLM's LITELLM_SALT_KEY does; every service must see the same value.
    salt_key: str | None = Field(
        None, validation_alias=AliasChoices("salt_key", "TOLLGATE_SALT_KEY", "LITELLM_SALT_KEY")
    )
    host: str = "127.0.0.1"
    port: int = 0
    log_level: str = "INFO"
    # How long a stopping service lets calls in flight finish before cancelling them.
    shutdown_grace_s: int = Field(10, ge=1, le=300)
    # A consumer whose fetch came back short waits this long before the next one, so
    # batches fill (one fetch, one ack write and, in the ledger, one transaction per
    # batch, not per message); it bounds the latency it adds. Used by every consumer.
    consumer_linger_ms: int = Field(50, ge=0, le=5000)
    # The ingress base URL, for links in logs and health answers.
    public_url: str = "http://127.0.0.1:4000"

    def nats_auth(self) -> NatsAuth:
        return NatsAuth(
            user=self.nats_user,
            password=self.nats_password,
            tls_ca=self.nats_tls_ca,
            tls_cert=self.nats_tls_cert,
            tls_key=self.nats_tls_key,
        )

    def load_config(self) -> TollgateConfig:
        return load_config(self.config)

    def effective_master_key(self, cfg: TollgateConfig) -> str | None:
        return self.master_key or cfg.general_settings.master_key

    def sealer(self, cfg: TollgateConfig) -> Sealer | None:
        return sealer_for(self.salt_key, self.effective_master_key(cfg))


class WeakMasterKeyError(RuntimeError):
    pass


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(
                ipaddress.ip_address(info[4][0]).is_loopback
                for info in socket.getaddrinfo(host, None)
            )
        except OSError:
            return False


def check_master_key(master_key: str | None, host: str) -> None:
    """Refuse a weak or default master key on a non-loopback bind; warn on loopback."""
    weak = master_key is None or master_key == DEFAULT_MASTER_KEY or len(master_key) < 16
    if not weak:
        return
    if is_loopback(host):
        log.warning("master key is the default or weak; accepted only because %s is loopback", host)
        return
    raise WeakMasterKeyError(
        f"refusing to listen on {host} with a weak or default master key: set "
        "general_settings.master_key or TOLLGATE_MASTER_KEY to a strong secret (16+ chars)"
    )
