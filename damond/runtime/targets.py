"""Which layer set each context's target: the read-only view ``/status`` is given of
the accepted policies, so that the metrics layer need not know how policies merge."""

from __future__ import annotations

from typing import Protocol

from damond.metrics.statusdoc import CONFIG_LAYER, TargetLayer, TargetSource
from damond.policy.document import SCOPES_BY_PRECEDENCE
from damond.policy.merge import Policies


class AcceptedPolicies(Protocol):
    """What holds the accepted policy of each scope (the policy store)."""

    @property
    def policies(self) -> Policies: ...


def policy_target_source(accepted: AcceptedPolicies) -> TargetSource:
    """The most specific accepted policy that sets a context's ``target_bp`` (host over
    group over fleet, as merging takes it), else the configuration file."""

    def target_layer(name: str) -> TargetLayer:
        policies = accepted.policies
        for scope in reversed(SCOPES_BY_PRECEDENCE):
            parsed = policies.get(scope)
            change = None if parsed is None else parsed.document.contexts.get(name)
            if parsed is not None and change is not None and change.target_bp is not None:
                return TargetLayer(scope.value, parsed.document.generation)
        return CONFIG_LAYER

    return target_layer
