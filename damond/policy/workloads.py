"""Whether a policy may add and remove contexts here: the host's ``[policy]`` limits.

A policy-added context is checked as a ``[[contexts]]`` entry of the configuration
would be (the same checks, the same messages, under ``add_contexts[i]``), and then
against what the host's operator allows: new contexts at all, how many, and which
cgroups they may act on. A context whose pages are not kept to those cgroups by its
filters could move any workload's memory, so it is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from damond.config import ContextConfig, PolicyConfig, quota_capacity_error
from damond.policy.document import (
    SCOPES_BY_PRECEDENCE,
    ParsedPolicy,
    PolicyDocument,
    PolicyError,
    Scope,
)
from damond.policy.merge import CapacityOf, Policies, added_by, with_policy

ContextChecks = Callable[[Sequence[ContextConfig]], list[str]]
"""The configuration's own checks of a list of contexts, as ``contexts[i].field: reason``
lines (the runtime runs the configuration's checks on its settings with these contexts)."""

_CONTEXT_LINE = re.compile(r"contexts\[(\d+)\]([^:]*): (.*)", re.DOTALL)


def no_context_checks(_: Sequence[ContextConfig]) -> list[str]:
    """No checks beyond the schema's (tests of the policy layer alone)."""
    return []


@dataclass(frozen=True)
class HostLimits:
    """What a policy may do to this host's set of contexts."""

    config: PolicyConfig = field(default_factory=PolicyConfig)
    context_checks: ContextChecks = no_context_checks


def workload_errors(
    document: PolicyDocument,
    scope: Scope,
    policies: Policies,
    base: Sequence[ContextConfig],
    limits: HostLimits,
    capacity_of: CapacityOf,
) -> list[PolicyError]:
    """Why ``document``'s ``add_contexts`` and ``remove_contexts`` cannot apply for
    ``scope`` here, with ``policies`` the other scopes' accepted ones (empty when they can)."""
    others = {s: p for s, p in policies.items() if s is not scope}
    errors = _removal_errors(document, scope, others, base)
    if not document.add_contexts:
        return errors
    cfg = limits.config
    if not cfg.allow_new_contexts:
        return [
            *errors,
            PolicyError(
                "add_contexts",
                "this host takes no contexts from policies ([policy] allow_new_contexts is false)",
            ),
        ]
    configured = {ctx.name for ctx in base}
    first: dict[str, int] = {}
    for j, ctx in enumerate(document.add_contexts):
        where = f"add_contexts[{j}]"
        if ctx.name in first:
            errors.append(
                PolicyError(
                    f"{where}.name",
                    f"{ctx.name!r} is added twice (also add_contexts[{first[ctx.name]}])",
                )
            )
        first.setdefault(ctx.name, j)
        if ctx.name in configured:
            errors.append(
                PolicyError(
                    f"{where}.name",
                    f"{ctx.name!r} is a context of this host's configuration file; change "
                    "its fields under contexts instead",
                )
            )
        if ctx.name in document.remove_contexts:
            errors.append(PolicyError(f"{where}.name", f"{ctx.name!r} is also in remove_contexts"))
        errors += _cgroup_errors(ctx, where, cfg)
        capacity_error = quota_capacity_error(
            ctx.node, capacity_of(ctx.node), ctx.scheme.quota.max_bytes
        )
        if capacity_error is not None:
            errors.append(PolicyError(f"{where}.scheme.quota.max_bytes", capacity_error))
    errors += _config_check_errors(document, others, base, limits)
    parsed = ParsedPolicy(document, {})
    count = len(added_by(base, with_policy(others, scope, parsed)))
    if count > cfg.max_new_contexts:
        errors.append(
            PolicyError(
                "add_contexts",
                f"would make {count} policy-added contexts on this host, more than "
                f"[policy] max_new_contexts ({cfg.max_new_contexts})",
            )
        )
    return list(dict.fromkeys(errors))


def _removal_errors(
    document: PolicyDocument, scope: Scope, others: Policies, base: Sequence[ContextConfig]
) -> list[PolicyError]:
    """A policy removes only what a less specific scope's policy added."""
    less_specific = SCOPES_BY_PRECEDENCE[: SCOPES_BY_PRECEDENCE.index(scope)]
    added = added_by(base, {s: p for s, p in others.items() if s in less_specific})
    configured = {ctx.name for ctx in base}
    errors: list[PolicyError] = []
    for k, name in enumerate(document.remove_contexts):
        where = f"remove_contexts[{k}]"
        if name in configured:
            errors.append(
                PolicyError(
                    where,
                    f"{name!r} is a context of this host's configuration file, which a "
                    "policy cannot remove (enabled = false stops it)",
                )
            )
        elif name not in added:
            listed = ", ".join(sorted(added)) or "none"
            errors.append(
                PolicyError(
                    where,
                    f"{name!r} is not added by a less specific scope's policy; those add: {listed}",
                )
            )
    return errors


def _cgroup_errors(ctx: ContextConfig, where: str, cfg: PolicyConfig) -> list[PolicyError]:
    """A policy-added context acts only on pages of the cgroups the host allows: every
    cgroup it names is under a prefix, every filter that allows pages is a memcg
    filter, and the last filter allows (so that pages no filter decides are left)."""
    prefixes = ", ".join(cfg.cgroup_prefixes)
    outside = f"is not under this host's [policy] cgroup_prefixes ({prefixes})"
    errors: list[PolicyError] = []
    filters = ctx.scheme.filters
    for k, flt in enumerate(filters):
        at = f"{where}.scheme.filters[{k}]"
        if flt.memcg_path is not None and not cfg.allows_path(flt.memcg_path):
            errors.append(PolicyError(f"{at}.memcg_path", f"{flt.memcg_path!r} {outside}"))
        elif flt.allow and not (flt.type == "memcg" and flt.matching):
            errors.append(
                PolicyError(
                    f"{at}.allow",
                    "a policy-added context may allow only pages of its cgroups: an "
                    "allow filter must be a memcg filter with matching = true",
                )
            )
    last = filters[-1] if filters else None
    if last is None or not (last.type == "memcg" and last.matching and last.allow):
        errors.append(
            PolicyError(
                f"{where}.scheme.filters",
                "must end with a memcg filter that allows its cgroup (matching = true, "
                "allow = true): a policy-added context acts only on the cgroups of "
                "[policy] cgroup_prefixes",
            )
        )
    if ctx.goal.path and not cfg.allows_path(ctx.goal.path):
        errors.append(PolicyError(f"{where}.goal.path", f"{ctx.goal.path!r} {outside}"))
    return errors


def _config_check_errors(
    document: PolicyDocument, others: Policies, base: Sequence[ContextConfig], limits: HostLimits
) -> list[PolicyError]:
    """The configuration's checks of the added contexts beside the ones that run."""
    names = {ctx.name for ctx in document.add_contexts}
    running = [ctx for ctx in base if ctx.name not in names]
    added_elsewhere = added_by(running, others)
    for scope in SCOPES_BY_PRECEDENCE:
        parsed = others.get(scope)
        if parsed is None:
            continue
        running += [
            ctx
            for ctx in parsed.document.add_contexts
            if added_elsewhere.get(ctx.name) is scope and ctx.name not in names
        ]
    offset = len(running)
    errors: list[PolicyError] = []
    for line in limits.context_checks([*running, *document.add_contexts]):
        match = _CONTEXT_LINE.fullmatch(line)
        if match is None or int(match[1]) < offset or match[2] == ".name":
            continue  # about the contexts that run already; names are checked above
        errors.append(PolicyError(f"add_contexts[{int(match[1]) - offset}]{match[2]}", match[3]))
    return errors
