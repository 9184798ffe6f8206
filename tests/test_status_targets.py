"""``/status`` says which layer set each target: the file, or the most specific policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from damond.metrics.statusdoc import CONFIG_LAYER, TargetLayer
from damond.policy.document import ParsedPolicy, Scope, validate_document
from damond.runtime.targets import policy_target_source


def policy(generation: int, contexts: dict[str, Any]) -> ParsedPolicy:
    return validate_document(
        {"id": f"p{generation}", "generation": generation, "contexts": contexts}
    )


@dataclass
class Accepted:
    policies: dict[Scope, ParsedPolicy] = field(default_factory=dict)


def test_the_most_specific_policy_setting_the_target_wins() -> None:
    accepted = Accepted()
    source = policy_target_source(accepted)
    assert source("node0") == CONFIG_LAYER
    accepted.policies[Scope.FLEET] = policy(3, {"node0": {"target_bp": 5000}})
    accepted.policies[Scope.HOST] = policy(9, {"node0": {"quota_max_bytes": 4096}})
    accepted.policies[Scope.GROUP] = policy(7, {"node1": {"target_bp": 4500}})
    # the host's policy does not set node0's target: the fleet's does
    assert source("node0") == TargetLayer("fleet", 3)
    assert source("node1") == TargetLayer("group", 7)
    accepted.policies[Scope.HOST] = policy(10, {"node0": {"target_bp": 5100}})
    assert source("node0") == TargetLayer("host", 10)
    assert source("other") == CONFIG_LAYER
