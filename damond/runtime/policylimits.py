"""The host's limits on what policies add, bound to the configuration they check against.

A policy-added context gets the configuration's own checks (nodes of the simulated
machine, a scheme's target node, access pattern bounds, ...) beside the contexts that
run, so that it reads the same errors as a ``[[contexts]]`` entry would.
"""

from __future__ import annotations

from collections.abc import Sequence

from damond.config import ContextConfig, Settings
from damond.config.checks import semantic_errors
from damond.policy.document import ParsedPolicy, PolicyError, Scope
from damond.policy.merge import Policies
from damond.policy.store import LoadCheck
from damond.policy.workloads import HostLimits, workload_errors


def host_limits(settings: Settings) -> HostLimits:
    """``[policy]`` and the configuration's checks of a list of contexts on this host."""

    def context_checks(contexts: Sequence[ContextConfig]) -> list[str]:
        return semantic_errors(settings.model_copy(update={"contexts": tuple(contexts)}))

    return HostLimits(settings.policy, context_checks)


def load_check(base: Sequence[ContextConfig], limits: HostLimits) -> LoadCheck:
    """A persisted policy's contexts checked again as at arrival: ``[policy]`` may have
    been narrowed since (node capacities are not known yet, the quota cap is not)."""

    def check(scope: Scope, parsed: ParsedPolicy, kept: Policies) -> list[PolicyError]:
        return workload_errors(parsed.document, scope, kept, base, limits, lambda _: None)

    return check
