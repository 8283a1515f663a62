"""Pure modules of the admin service: durations, key material, ids, masking, storable values,
request schemas, views."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tollgate_admin import key_material, masking, schemas, validation, views
from tollgate_admin.errors import BadRequestError, ForbiddenError
from tollgate_shared.redaction import MASKED, is_secret_name, mask_secrets
from tollgate_shared.sealing import Sealer

NOW = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("duration", "delta"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("15min", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("24hr", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        (" 3d ", timedelta(days=3)),
    ],
)
def test_durations(duration: str, delta: timedelta) -> None:
    assert validation.duration_end(duration, NOW) == NOW + delta


def test_months_are_calendar_months_clamped_to_month_end() -> None:
    assert validation.duration_end("1mo", NOW) == datetime(2025, 2, 28, 12, 0, tzinfo=UTC)
    assert validation.duration_end("12mo", NOW) == datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "bad", ["", "soon", "1", "d", "-1d", "0s", "1.5h", "99999999d", "2000mo", "1h30m"]
)
def test_bad_durations_name_the_field(bad: str) -> None:
    with pytest.raises(BadRequestError) as info:
        validation.duration_end(bad, NOW, "budget_duration")
    assert info.value.param == "budget_duration"
    assert info.value.message.startswith("budget_duration")


def test_key_expiry() -> None:
    assert validation.key_expiry(None, NOW) is None
    assert validation.key_expiry("-1", NOW) is None  # LiteLLM: never expire
    assert validation.key_expiry("1h", NOW) == NOW + timedelta(hours=1)


@given(st.text(max_size=20))
def test_duration_parser_never_raises_anything_but_bad_request(text: str) -> None:
    with contextlib.suppress(BadRequestError):
        validation.duration_end(text, NOW)


def test_new_keys_are_random_and_named_like_litellm() -> None:
    keys = {key_material.new_key() for _ in range(50)}
    assert len(keys) == 50
    key = keys.pop()
    assert key.startswith("sk-")
    assert len(key) == 35
    assert key_material.key_name(key) == f"sk-...{key[-4:]}"


def test_token_of_accepts_plaintext_or_hash() -> None:
    key = "sk-abcdefgh"
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert key_material.token_of(key) == digest
    assert key_material.token_of(digest) == digest
    assert key_material.token_of(f" {digest} ") == digest


def test_custom_keys_must_look_like_keys() -> None:
    key_material.check_custom_key("sk-my-own-key")
    for bad in ("my-key", "sk-1", "0" * 64):
        with pytest.raises(BadRequestError):
            key_material.check_custom_key(bad)


@pytest.mark.parametrize("good", ["team-a", "T_1", "a" * 128, "0b9c2d1e-uuid"])
def test_ids_accepted(good: str) -> None:
    validation.check_id(good, "team_id")


@pytest.mark.parametrize("bad", ["", "a b", "a.b", "a*", ">", "a" * 129, "ü"])
def test_ids_refused(bad: str) -> None:
    with pytest.raises(BadRequestError) as info:
        validation.check_id(bad, "team_id")
    assert info.value.param == "team_id"


@pytest.mark.parametrize(
    "name",
    [
        "langfuse_secret_key",
        "langfuse_public_key",
        "api_key",
        "password",
        "x-api-key",
        "Authorization",
        "token",
        "gcs_private_key",
        "DD_API_KEY",
        "client_secret",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name", ["langfuse_host", "max_tokens", "model", "api_base", "project", "user", "region_name"]
)
def test_plain_names(name: str) -> None:
    assert not is_secret_name(name)


def test_masking_keeps_env_references_and_hides_values() -> None:
    secret = "sk-lf-0123456789abcdef"
    masked = mask_secrets(
        {
            "api_key": secret,
            "short_token": "abc",
            "long_secret": "0123456789abcdefwxyz",
            "password": "os.environ/DB_PASSWORD",
            "api_base": "https://example.com",
            "nested": {"client_secret": secret, "list": [{"token": secret}]},
            "rpm": 5,
        }
    )
    assert secret not in repr(masked)
    # A plaintext virtual key keeps LiteLLM's abbreviation (the shared redaction rule).
    assert masked["api_key"] == "sk-..." + secret[-4:]
    assert masked["long_secret"] == MASKED + "wxyz"
    assert masked["short_token"] == MASKED
    assert masked["password"] == "os.environ/DB_PASSWORD"
    assert masked["api_base"] == "https://example.com"
    assert masked["rpm"] == 5
    assert masked["nested"]["list"][0]["token"] == "sk-..." + secret[-4:]


def test_metadata_logging_callback_vars_are_masked() -> None:
    secret = "pk-and-sk-secret-123456789"
    meta = {
        "user": "a@example.com",
        "logging": [
            {
                "callback_name": "langfuse",
                "callback_type": "success",
                "callback_vars": {"langfuse_secret_key": secret, "langfuse_host": "h"},
            }
        ],
    }
    masked = masking.mask_metadata(meta)
    assert secret not in repr(masked)
    assert masked["logging"][0]["callback_vars"]["langfuse_host"] == "h"
    assert masked["user"] == "a@example.com"
    assert meta["logging"][0]["callback_vars"]["langfuse_secret_key"] == secret  # not mutated


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(min_size=16, max_size=30),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(["api_key", "secret", "token", "x", "password"]),
                children,
                max_size=3,
            )
        ),
        max_leaves=10,
    )
)
def test_masking_never_leaks_a_secret_named_string(value: Any) -> None:
    masked = mask_secrets({"root": value})

    def leaked(original: Any, shown: Any) -> bool:
        if isinstance(original, dict):
            for k, v in original.items():
                if (
                    is_secret_name(k)
                    and isinstance(v, str)
                    and len(v) >= 16
                    and not v.startswith("os.environ/")
                    and shown[k] == v
                ):
                    return True
                if leaked(v, shown[k]):
                    return True
        if isinstance(original, list):
            return any(leaked(o, s) for o, s in zip(original, shown, strict=True))
        return False

    assert not leaked({"root": value}, masked)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("a\x00b", "f"),
        ({"k": "a\x00"}, "f.k"),
        ({"a\x00": 1}, "f"),
        (["\ud800"], "f[0]"),
        ({"x": float("nan")}, "f.x"),
    ],
)
def test_unstorable_values(value: Any, field: str) -> None:
    with pytest.raises(BadRequestError) as info:
        validation.check_storable(value, "f")
    assert info.value.param == field


def test_deep_nesting_is_refused() -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = {"a": deep}
    with pytest.raises(BadRequestError):
        validation.check_storable(deep, "metadata")


def test_changed_fields() -> None:
    assert views.changed_fields({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == {"b": 3, "c": 4}


def test_error_body_is_litellm_shaped() -> None:
    assert ForbiddenError("no", "key").body() == {
        "error": {"message": "no", "type": "auth_error", "param": "key", "code": "403"}
    }
    # The shared rule: a 400 is OpenAI's `invalid_request_error`.
    assert BadRequestError("bad", "f").body()["error"] == {
        "message": "bad",
        "type": "invalid_request_error",
        "param": "f",
        "code": "400",
    }


# --- request schemas ------------------------------------------------------------------------
def test_request_models_name_bad_fields() -> None:
    with pytest.raises(ValidationError) as info:
        schemas.GenerateKeyRequest.model_validate({"team_id": "no spaces", "rpm_limit": -1})
    locs = {e["loc"][0] for e in info.value.errors()}
    assert locs == {"team_id", "rpm_limit"}
    with pytest.raises(ValidationError):
        schemas.KeyRequest.model_validate({})
    with pytest.raises(ValidationError):
        schemas.Member.model_validate({"role": "user"})
    with pytest.raises(ValidationError):
        schemas.AddTeamCallback.model_validate({"callback_name": "x", "callback_type": "maybe"})
    with pytest.raises(ValidationError):
        schemas.GenerateKeyRequest.model_validate({"max_budget": float("inf")})


def test_requests_ignore_litellm_fields_tollgate_does_not_use() -> None:
    req = schemas.GenerateKeyRequest.model_validate({"aliases": {"a": "b"}, "tags": ["x"]})
    assert req.model_fields_set == set()


def test_callback_vars_must_be_scalars() -> None:
    ok = schemas.AddTeamCallback.model_validate(
        {"callback_name": "langfuse", "callback_vars": {"n": 1, "s": "x"}}
    )
    assert ok.callback_type == "success_and_failure"
    with pytest.raises(ValidationError):
        schemas.AddTeamCallback.model_validate(
            {"callback_name": "langfuse", "callback_vars": {"n": {"deep": 1}}}
        )


# --- KV state from rows -------------------------------------------------------------------
TEAM_ROW: dict[str, Any] = {
    "team_id": "t1",
    "team_alias": None,
    "models": [],
    "max_budget": None,
    "budget_duration": None,
    "blocked": False,
    "metadata": {},
    "logging_disabled": False,
    "tpm_limit": None,
    "rpm_limit": None,
    "created_at": NOW,
    "updated_at": NOW,
}
CALLBACK = {
    "callback_name": "langfuse",
    "callback_type": "success",
    "callback_vars": {"langfuse_secret_key": "s" * 20},
}


def test_team_logging_state() -> None:
    assert views.team_state(TEAM_ROW, [], []).logging is None  # not configured here
    configured = views.team_state(TEAM_ROW, [], [CALLBACK])
    assert configured.logging is not None
    assert configured.logging[0].callback_vars["langfuse_secret_key"] == "s" * 20
    off = views.team_state({**TEAM_ROW, "logging_disabled": True}, [], [])
    assert off.logging == []
    assert off.logging_disabled


def test_team_public_masks_callbacks() -> None:
    public = views.team_public(TEAM_ROW, [], [CALLBACK])
    assert "s" * 20 not in repr(public)
    assert public["metadata"]["logging"][0]["callback_name"] == "langfuse"


def test_audit_diff_ignores_volatile_fields() -> None:
    before = {"a": 1, "updated_at": NOW}
    after = {"a": 2, "updated_at": NOW + timedelta(seconds=1)}
    assert views.audit_diff(before, after) == {"a": 2}


def test_a_masked_credential_sent_back_keeps_the_stored_one() -> None:
    sealer = Sealer("a-salt-key-for-this-test-0123456789")
    stored = masking.seal_secrets(
        {"logging": [{"callback_vars": {"langfuse_secret_key": "sk-lf-real-secret-12345678"}}]},
        sealer,
    )
    shown = masking.mask_metadata(stored)
    shown_secret = shown["logging"][0]["callback_vars"]["langfuse_secret_key"]
    assert masking.looks_masked(shown_secret)
    # The edit form round-trips what it showed, with one other field changed.
    edited = {**shown, "note": "edited"}
    saved = masking.seal_secrets(edited, sealer, stored)
    kept = saved["logging"][0]["callback_vars"]["langfuse_secret_key"]
    assert sealer.open(kept) == "sk-lf-real-secret-12345678"
    # A new secret replaces it; a masked value with nothing stored is kept as given.
    replaced = masking.seal_secrets(
        {"logging": [{"callback_vars": {"langfuse_secret_key": "sk-lf-new-secret-abcdefgh"}}]},
        sealer,
        stored,
    )
    assert sealer.open(replaced["logging"][0]["callback_vars"]["langfuse_secret_key"]) == (
        "sk-lf-new-secret-abcdefgh"
    )


@pytest.mark.parametrize("text", ["********", "********abcd", "sk-...wxyz"])
def test_masked_forms_are_recognised(text: str) -> None:
    assert masking.looks_masked(text)


@pytest.mark.parametrize("text", ["sk-real-key-0123456789", "********abcdef", "secret"])
def test_real_values_are_not_taken_for_masks(text: str) -> None:
    assert not masking.looks_masked(text)
