"""Reads config.yaml in LiteLLM's format: typed, `os.environ/` resolved, errors name the key."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tollgate_shared import durations

log = logging.getLogger(__name__)

ENV_PREFIX = "os.environ/"
DEFAULT_MASTER_KEY = "sk-1234"


class ConfigError(ValueError):
    """config.yaml is unusable; the message names the key's path."""


class _Section(BaseModel):
    # Unknown keys are kept (and warned about), never fatal: LiteLLM has many.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class LitellmParams(_Section):
    model: str
    api_base: str | None = None
    api_key: str | None = None
    api_version: str | None = None
    rpm: int | None = Field(None, ge=0)
    tpm: int | None = Field(None, ge=0)
    timeout: float | None = Field(None, gt=0)
    stream_timeout: float | None = Field(None, gt=0)
    max_retries: int | None = Field(None, ge=0)
    region_name: str | None = None
    input_cost_per_token: Decimal | None = Field(None, ge=0)
    output_cost_per_token: Decimal | None = Field(None, ge=0)
    cache_read_input_token_cost: Decimal | None = Field(None, ge=0)
    cache_creation_input_token_cost: Decimal | None = Field(None, ge=0)
    input_cost_per_second: Decimal | None = Field(None, ge=0)
    output_cost_per_second: Decimal | None = Field(None, ge=0)
    mock_response: Any = None
    # Provider credentials and places, as LiteLLM names them (read by ingress's adapters).
    vertex_project: str | None = None
    vertex_location: str | None = None
    vertex_credentials: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    aws_region_name: str | None = None
    azure_ad_token: str | None = None

    @property
    def provider(self) -> str:
        """The provider prefix of `model` (`openai/gpt-4o` -> `openai`)."""
        return self.model.split("/", 1)[0] if "/" in self.model else "openai"

    @property
    def upstream_model(self) -> str:
        """The model name sent upstream (`openai/gpt-4o` -> `gpt-4o`)."""
        return self.model.split("/", 1)[1] if "/" in self.model else self.model


class ModelInfo(_Section):
    id: str | None = None
    mode: str | None = None
    base_model: str | None = None
    description: str | None = None


class ModelEntry(_Section):
    model_name: str
    litellm_params: LitellmParams
    model_info: ModelInfo = Field(default_factory=ModelInfo)


class PrometheusMetricsGroup(_Section):
    """One entry of `prometheus_metrics_config`: these metrics, with only these labels."""

    group: str
    metrics: list[str]
    include_labels: list[str] | None = None


class LitellmSettings(_Section):
    callbacks: list[str] = Field(default_factory=list)
    success_callback: list[str] = Field(default_factory=list)
    failure_callback: list[str] = Field(default_factory=list)
    default_team_settings: list[dict[str, Any]] = Field(default_factory=list)
    langfuse_default_tags: list[str] = Field(default_factory=list)
    turn_off_message_logging: bool = False
    store_audit_logs: bool = False
    custom_prometheus_metadata_labels: list[str] = Field(default_factory=list)
    custom_prometheus_tags: list[str] = Field(default_factory=list)
    # Which metrics are exported and with which labels (LiteLLM's; unset: all, all labels).
    prometheus_metrics_config: list[PrometheusMetricsGroup] | None = None
    # The `end_user` label stays "None" unless this is on (LiteLLM's default: off).
    enable_end_user_cost_tracking_prometheus_only: bool = False
    require_auth_for_metrics_endpoint: bool = False
    prometheus_latency_buckets: list[float] | None = None
    # Tollgate's own: series per metric as Prometheus counts them (each histogram bucket is
    # one); label sets that would pass it are dropped and counted.
    prometheus_max_series_per_metric: int = Field(20000, ge=1)
    drop_params: bool = False
    request_timeout: float | None = Field(None, gt=0)
    # The zone budget periods (`budget_duration`) reset in: midnight there, as LiteLLM.
    timezone: str = "UTC"

    @field_validator("callbacks", "success_callback", "failure_callback", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        durations.budget_timezone(v)
        return v


class GeneralSettings(_Section):
    master_key: str | None = None
    database_url: str | None = None
    store_prompts_in_spend_logs: bool = False
    disable_spend_logs: bool = False
    disable_error_logs: bool = False
    maximum_spend_logs_retention_period: str | None = None
    maximum_spend_logs_retention_interval: str | None = None
    # Tollgate's own, in LiteLLM's style: each table's retention (unset: kept; sessions
    # follow the spend logs by default, the audit log only ever by its own setting).
    maximum_session_logs_retention_period: str | None = None
    maximum_daily_spend_retention_period: str | None = None
    maximum_audit_logs_retention_period: str | None = None
    alerting: list[Literal["slack", "webhook", "pagerduty", "email", "discord", "msteams"]] = Field(
        default_factory=list
    )
    alerting_threshold: float = Field(300, gt=0)
    alert_types: list[str] | None = None
    alerting_args: dict[str, Any] = Field(default_factory=dict)
    alert_to_webhook_url: dict[str, str | list[str]] = Field(default_factory=dict)
    spend_report_frequency: str | None = None

    @field_validator(
        "maximum_spend_logs_retention_period",
        "maximum_spend_logs_retention_interval",
        "maximum_session_logs_retention_period",
        "maximum_daily_spend_retention_period",
        "maximum_audit_logs_retention_period",
    )
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None:
            durations.parse_duration(v)
        return v


class RouterSettings(_Section):
    routing_strategy: str = "simple-shuffle"
    num_retries: int = Field(0, ge=0)
    timeout: float | None = Field(None, gt=0)
    allowed_fails: int = Field(3, ge=0)
    cooldown_time: float = Field(5, ge=0)
    fallbacks: list[dict[str, list[str]]] = Field(default_factory=list)


class TollgateConfig(_Section):
    model_list: list[ModelEntry] = Field(default_factory=list)
    litellm_settings: LitellmSettings = Field(default_factory=LitellmSettings)
    general_settings: GeneralSettings = Field(default_factory=GeneralSettings)
    router_settings: RouterSettings = Field(default_factory=RouterSettings)
    environment_variables: dict[str, str] = Field(default_factory=dict)

    def model_names(self) -> list[str]:
        return list(dict.fromkeys(m.model_name for m in self.model_list))


# Tollgate's own secrets: config.yaml may name them, a key's or team's `callback_vars` may
# not (whoever sets a callback controls where its values are sent).
_PROTECTED_ENV = re.compile(r"^(TOLLGATE_.*|LITELLM_MASTER_KEY|LITELLM_SALT_KEY|DATABASE_URL)$")


def resolve_env(
    value: Any,
    path: str = "",
    *,
    environ: Mapping[str, str] | None = None,
    unset: list[str] | None = None,
    protect: bool = False,
) -> Any:
    """Replace every `os.environ/NAME` string with the variable's value.

    `environ` defaults to the process environment. A missing variable raises ConfigError,
    or, when `unset` is given, is recorded there and replaced by a placeholder that is
    never a usable value. With `protect`, Tollgate's own secrets cannot be referenced.
    """
    env = os.environ if environ is None else environ
    if isinstance(value, dict):
        return {
            k: resolve_env(
                v, f"{path}.{k}" if path else str(k), environ=env, unset=unset, protect=protect
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            resolve_env(v, f"{path}[{i}]", environ=env, unset=unset, protect=protect)
            for i, v in enumerate(value)
        ]
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        problem = None
        if protect and _PROTECTED_ENV.match(name):
            problem = f"{path}: environment variable {name} is Tollgate's own and cannot be used"
        elif name not in env:
            problem = f"{path}: environment variable {name} is not set"
        if problem is None:
            return env[name]
        if unset is None:
            raise ConfigError(problem)
        unset.append(problem)
        return f"<unset {name}>"
    return value


# A sink's global settings, as LiteLLM spells them (`s3_callback_params`, …): read by the
# exporter's sink of that name, so not unknown.
_CALLBACK_PARAMS = re.compile(r"^[a-z0-9_]+_callback_params$")


def _unknown_keys(model: BaseModel, path: str = "") -> list[str]:
    found: list[str] = []
    for key in model.model_extra or {}:
        if isinstance(model, LitellmSettings) and _CALLBACK_PARAMS.match(str(key)):
            continue
        found.append(f"{path}.{key}" if path else key)
    for name in type(model).model_fields:
        child = getattr(model, name)
        children = child if isinstance(child, list) else [child]
        for i, item in enumerate(children):
            if isinstance(item, _Section):
                sub = f"{path}.{name}" if path else name
                if isinstance(child, list):
                    sub = f"{sub}[{i}]"
                found.extend(_unknown_keys(item, sub))
    return found


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_config(raw: dict[str, Any] | None, source: str = "config.yaml") -> TollgateConfig:
    """Validate a config mapping; environment references are resolved first."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping")
    # environment_variables are exported before anything references them.
    for k, v in (raw.get("environment_variables") or {}).items():
        os.environ.setdefault(str(k), str(resolve_env(v, f"environment_variables.{k}")))
    resolved = resolve_env(raw)
    try:
        cfg = TollgateConfig.model_validate(resolved)
    except ValidationError as exc:
        problems = "; ".join(f"{_format_loc(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{source}: {problems}") from None
    for key in _unknown_keys(cfg):
        log.warning("%s: unknown key %s (ignored)", source, key)
    return cfg


def load_config(path: str | Path | None) -> TollgateConfig:
    """Load config.yaml from `path`, or the built-in default (a mock `demo` model)."""
    if path is None:
        return parse_config(default_config_dict(), "default config")
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_config(raw, str(p))


def default_config_dict() -> dict[str, Any]:
    """The offline default: a `demo` model answered by the built-in mock provider."""
    return {
        "model_list": [
            {
                "model_name": "demo",
                "litellm_params": {
                    "model": "openai/demo",
                    "mock_response": "Hello from Tollgate's built-in mock provider.",
                    "input_cost_per_token": "0.000001",
                    "output_cost_per_token": "0.000002",
                },
                "model_info": {"id": "demo-mock-1"},
            }
        ],
        "litellm_settings": {"store_audit_logs": True},
        "general_settings": {
            "master_key": DEFAULT_MASTER_KEY,
            "store_prompts_in_spend_logs": True,
        },
    }
