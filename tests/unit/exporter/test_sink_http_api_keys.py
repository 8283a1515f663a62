"""HTTP-API sinks: a destination's key never changes for the same settings.

The key names the destination's health and derives the ids of its dead letters (so a
replay finds them), so refactoring how a vendor reads its settings must keep it: these
are the keys and labels each vendor had before its settings became an `HttpApi`.
"""

from __future__ import annotations

import pytest

from support.vendor_env import ENV
from tollgate_exporter.destinations import Destination
from tollgate_exporter.sinks import registry

# callback name -> (destination key, label) with ENV's settings
PINNED = {
    "agentops": ("agentops:cdcc167a55ed9d9e6cc6", "agentops http://vendor.test/v1/traces"),
    "argilla": ("argilla:13205b7d33c6b1c61f84", "argilla http://vendor.test litellm-completion"),
    "athina": ("athina:9548497d073d89cb743e", "athina http://vendor.test"),
    "braintrust": ("braintrust:33979e510fe86d13142d", "braintrust http://vendor.test litellm"),
    "cloudzero": ("cloudzero:9ebc42fe8ab30795f6da", "cloudzero http://vendor.test c1"),
    "deepeval": ("deepeval:3d3387a6d8731a49077f", "deepeval http://vendor.test development"),
    "galileo": ("galileo:f54ed393fda9edab61dd", "galileo http://vendor.test p1"),
    "greenscale": ("greenscale:e400f787d8df58ce22f1", "greenscale http://vendor.test/log"),
    "helicone": ("helicone:9548497d073d89cb743e", "helicone http://vendor.test"),
    "humanloop": ("humanloop:d8d0bb8d01464f8eced7", "humanloop http://vendor.test"),
    "lago": ("lago:25626a4150e8d0fd4c61", "lago http://vendor.test tokens"),
    "langsmith": (
        "langsmith:13205b7d33c6b1c61f84",
        "langsmith http://vendor.test litellm-completion",
    ),
    "literalai": ("literalai:9548497d073d89cb743e", "literalai http://vendor.test"),
    "lunary": ("lunary:9548497d073d89cb743e", "lunary http://vendor.test"),
    "openmeter": ("openmeter:b49e69f9fcf7a9b7f52c", "openmeter http://vendor.test litellm_tokens"),
    "promptlayer": ("promptlayer:9548497d073d89cb743e", "promptlayer http://vendor.test"),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_destination_key_and_label_are_what_they_were(name: str) -> None:
    dest = registry().destination_for(name, {}, {}, ENV)
    assert isinstance(dest, Destination), dest
    assert (dest.key, dest.label) == PINNED[name]
