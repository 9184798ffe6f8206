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
    """The most specific accepted policy that sets a context's target (``target_bp`` or
    ``target_us``) or adds the context, host over group over fleet as merging takes it,
    else the configuration file."""

    def target_layer(name: str) -> TargetLayer:
        policies = accepted.policies
        for scope in reversed(SCOPES_BY_PRECEDENCE):
            parsed = policies.get(scope)
            if parsed is None:
                continue
            doc = parsed.document
            change = doc.contexts.get(name)
            sets = change is not None and (change.target_bp, change.target_us) != (None, None)
            if sets or any(ctx.name == name for ctx in doc.add_contexts):
                return TargetLayer(scope.value, doc.generation)
        return CONFIG_LAYER

    return target_layer
