"""Budget guarding without I/O: fail closed when spend totals are unknown (or open when
configured), the cost estimate a call reserves, and the settings that refuse a bad value."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from support.builders import key_state
from tollgate_ingress.auth import AuthError
from tollgate_ingress.parsing import parse_chat_request
from tollgate_ingress.service import BudgetPolicy, Gateway, StateViews
from tollgate_ingress.settings import IngressSettings
from tollgate_ingress.usage import estimate_prompt_tokens
from tollgate_shared.config import TollgateConfig
from tollgate_shared.state import hash_key

KEY = "sk-budgeted"
H = hash_key(KEY)
CFG = TollgateConfig.model_validate(
    {
        "model_list": [
            {
                "model_name": "m",
                "litellm_params": {
                    "model": "openai/m",
                    "input_cost_per_token": "0.000001",
                    "output_cost_per_token": "0.000002",
                },
            }
        ]
    }
)


class _View(dict[str, Any]):
    def items(self) -> Any:  # type: ignore[override]
        return self


def _gateway(live: bool, policy: BudgetPolicy | None = None) -> Gateway:
    views = StateViews(
        keys=_View({H: key_state(token=H, max_budget=Decimal("1"))}),  # type: ignore[arg-type]
        teams=_View(),  # type: ignore[arg-type]
        users=_View(),  # type: ignore[arg-type]
        models=_View(),  # type: ignore[arg-type]
        spend=_View(),  # type: ignore[arg-type]
    )
    return Gateway(
        CFG,
        "sk-master",
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        views,
        1.0,
        budget=policy,
        spend_live=lambda: live,
    )


def _request(**body: Any) -> Any:
    raw = orjson.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "abcd" * 5}], **body}
    )
    return parse_chat_request(raw, {})


def test_a_budgeted_caller_is_refused_while_spend_totals_are_unknown() -> None:
    gw = _gateway(live=False)
    who = gw.identify({"authorization": f"Bearer {KEY}"})
    with pytest.raises(AuthError) as info:
        gw.admit(who, _request())
    assert (info.value.status, info.value.code) == (503, "budget_state_unknown")
    # The master key has no budget: never refused for this.
    gw.admit(gw.identify({"authorization": "Bearer sk-master"}), _request())
    # Configured to fail open, the same caller is admitted.
    open_gw = _gateway(live=False, policy=BudgetPolicy(fail_open=True))
    open_gw.admit(open_gw.identify({"authorization": f"Bearer {KEY}"}), _request())
    _gateway(live=True).admit(who, _request())


def test_the_reserved_estimate_covers_prompt_and_max_tokens_at_the_group_price() -> None:
    gw = _gateway(live=True, policy=BudgetPolicy(reserve_output_tokens=100))
    prompt = estimate_prompt_tokens([{"role": "user", "content": "abcd" * 5}])
    assert prompt == 5 + 4  # 20 characters, and the message's framing
    assert gw.estimate_cost(_request(max_tokens=7)) == Decimal("0.000009") + Decimal("0.000014")
    assert gw.estimate_cost(_request()) == Decimal("0.000009") + Decimal("0.0002")
    [r] = gw.reservations(gw.identify({"authorization": f"Bearer {KEY}"}), _request(max_tokens=7))
    assert (r.entity, r.headroom, r.amount) == ("key", 10**9, 23_000)


@pytest.mark.parametrize("value", ["maybe", "2", "open"])
def test_an_unknown_fail_open_value_is_refused_at_start(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOLLGATE_BUDGET_FAIL_OPEN", value)
    with pytest.raises(ValidationError, match="budget_fail_open"):
        IngressSettings()
    monkeypatch.setenv("TOLLGATE_BUDGET_FAIL_OPEN", "true")
    assert IngressSettings().budget_fail_open is True
