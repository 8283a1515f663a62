"""Process settings from the environment (`TOLLGATE_*`), read once at start and passed in."""

from __future__ import annotations

import ipaddress
import logging
import socket
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tollgate_shared.config import DEFAULT_MASTER_KEY, TollgateConfig, load_config
from tollgate_shared.sealing import Sealer, sealer_for

log = logging.getLogger(__name__)


class ServiceSettings(BaseSettings):
    """What every service reads; a service subclasses it to add its own port and knobs."""

    model_config = SettingsConfigDict(env_prefix="TOLLGATE_", extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
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
    # The ingress base URL, for links in logs and health answers.
    public_url: str = "http://127.0.0.1:4000"

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
