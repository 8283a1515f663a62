"""Sealing credentials at rest: round trip, pass-through, wrong key, opening nested state."""

from __future__ import annotations

import pytest

from tollgate_admin import masking
from tollgate_shared.redaction import MASKED
from tollgate_shared.sealing import SEALED_PREFIX, Sealer, SealError, sealed_hint, sealer_for
from tollgate_shared.state import LoggingCallback, TeamState

SEALER = Sealer("sk-master-key-for-sealing-tests")
SECRET = "sk-lf-very-secret-value-1234"


def test_round_trip_hides_the_secret_but_keeps_a_hint() -> None:
    sealed = SEALER.seal(SECRET)
    assert sealed.startswith(SEALED_PREFIX)
    assert SECRET not in sealed
    assert SEALER.open(sealed) == SECRET
    assert sealed_hint(sealed) == "1234"
    assert SEALER.seal("short") != SEALER.seal("short")  # fresh IV every time
    assert sealed_hint(SEALER.seal("short")) == ""


def test_references_plain_and_sealed_values_pass_through() -> None:
    assert SEALER.seal("os.environ/LANGFUSE_SECRET") == "os.environ/LANGFUSE_SECRET"
    sealed = SEALER.seal(SECRET)
    assert SEALER.seal(sealed) == sealed  # never sealed twice
    assert SEALER.open("plain, written before sealing") == "plain, written before sealing"
    assert sealed_hint("plain") is None


# Bad input tried: a value sealed under another key, and a sealed value altered in storage.
def test_another_key_or_tampering_cannot_open() -> None:
    sealed = SEALER.seal(SECRET)
    with pytest.raises(SealError, match="another"):
        Sealer("a-different-master-key-000000").open(sealed)
    with pytest.raises(SealError):
        SEALER.open(sealed[:-6] + "AAAAAA")


def test_salt_key_wins_over_master_key() -> None:
    salted = sealer_for("salt-key-0123456789", "master")
    assert salted is not None
    assert Sealer("salt-key-0123456789").open(salted.seal("x")) == "x"
    assert sealer_for(None, None) is None


def test_admin_seals_credential_names_and_consumers_open_the_state() -> None:
    callback_vars = {
        "langfuse_public_key": "pk-lf-0123456789abcdef",
        "langfuse_secret_key": SECRET,
        "langfuse_host": "https://langfuse.example.com",
        "langfuse_password": "os.environ/LANGFUSE_PASSWORD",
    }
    stored = masking.seal_secrets(callback_vars, SEALER)
    assert stored["langfuse_host"] == "https://langfuse.example.com"
    assert stored["langfuse_password"] == "os.environ/LANGFUSE_PASSWORD"
    assert SECRET not in str(stored)
    # What an API read shows: masked, with the last four characters.
    assert masking.mask_callback_vars(stored)["langfuse_secret_key"] == MASKED + "1234"
    team = TeamState(
        team_id="t", logging=[LoggingCallback(callback_name="langfuse", callback_vars=stored)]
    )
    opened = SEALER.open_model(team)
    assert opened.logging is not None
    assert opened.logging[0].callback_vars == callback_vars
    plain = TeamState(team_id="t")
    assert SEALER.open_model(plain) is plain
    assert masking.seal_secrets(callback_vars, None) is callback_vars
