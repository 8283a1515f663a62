"""`os.environ/NAME` references: one rule for config.yaml and for callback_vars."""

from __future__ import annotations

import pytest

from tollgate_shared.config import ConfigError, resolve_env


def test_config_yaml_references_raise_when_unset() -> None:
    with pytest.raises(ConfigError, match=r"a\.b: environment variable NOPE is not set"):
        resolve_env({"a": {"b": "os.environ/NOPE"}}, environ={})


def test_collected_instead_of_raised_and_never_usable() -> None:
    unset: list[str] = []
    out = resolve_env({"k": ["os.environ/NOPE"]}, "cb", environ={}, unset=unset)
    assert unset == ["cb.k[0]: environment variable NOPE is not set"]
    assert out == {"k": ["<unset NOPE>"]}


@pytest.mark.parametrize(
    "name",
    ["TOLLGATE_MASTER_KEY", "TOLLGATE_DATABASE_URL", "LITELLM_MASTER_KEY", "LITELLM_SALT_KEY"],
)
def test_protected_references_cannot_leave_through_a_callback(name: str) -> None:
    env = {name: "the-secret"}
    unset: list[str] = []
    out = resolve_env({"h": f"os.environ/{name}"}, "cb", environ=env, unset=unset, protect=True)
    assert "the-secret" not in repr(out)
    assert "cannot be used" in unset[0]
    # config.yaml itself may name them.
    assert resolve_env({"h": f"os.environ/{name}"}, environ=env) == {"h": "the-secret"}


def test_other_references_resolve() -> None:
    env = {"LANGFUSE_SECRET_KEY": "sk-lf"}
    assert resolve_env("os.environ/LANGFUSE_SECRET_KEY", environ=env, protect=True) == "sk-lf"
