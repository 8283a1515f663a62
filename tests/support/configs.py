"""Writes config.yaml files (LiteLLM format) for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MASTER_KEY = "sk-test-master-key-0123456789"


def write_config(path: Path, upstream_base: str | None = None, **sections: Any) -> Path:
    """A config with model `fake` (OpenAI-compatible upstream) and `demo` (mock provider)."""
    models: list[dict[str, Any]] = [
        {
            "model_name": "demo",
            "litellm_params": {
                "model": "openai/demo",
                "mock_response": "mocked reply",
                "input_cost_per_token": "0.000001",
                "output_cost_per_token": "0.000002",
            },
            "model_info": {"id": "demo-1"},
        },
    ]
    if upstream_base:
        models.append(
            {
                "model_name": "fake",
                "litellm_params": {
                    "model": "openai/fake-model",
                    "api_base": upstream_base,
                    "api_key": "sk-upstream",
                    "input_cost_per_token": "0.000003",
                    "output_cost_per_token": "0.000007",
                },
                "model_info": {"id": "fake-1"},
            }
        )
    cfg: dict[str, Any] = {
        "model_list": models,
        "general_settings": {"master_key": MASTER_KEY, "store_prompts_in_spend_logs": True},
        "litellm_settings": {"store_audit_logs": True},
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(name), dict):
            cfg[name] = {**cfg[name], **value}
        else:
            cfg[name] = value
    path.write_text(yaml.safe_dump(cfg))
    return path
