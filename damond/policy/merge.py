"""Pure policy arithmetic: which value of each field is in force, and whether a
document fits this host (its contexts, its nodes' capacities)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from damond.config import ContextConfig
from damond.policy.document import ContextPolicy, PolicyError

CapacityOf = Callable[[int], int | None]
"""Capacity in bytes of a NUMA node, None when not known (yet)."""


def apply_policy(
    ctx: ContextConfig, layers: Sequence[Mapping[str, ContextPolicy]]
) -> ContextConfig:
    """``ctx`` with each field taken from the last layer that sets it (layers: least
    specific first)."""
    target_bp = ctx.goal.target_bp
    quota_max = ctx.scheme.quota.max_bytes
    enabled = ctx.enabled
    for layer in layers:
        change = layer.get(ctx.name)
        if change is None:
            continue
        if change.target_bp is not None:
            target_bp = change.target_bp
        if change.quota_max_bytes is not None:
            quota_max = change.quota_max_bytes
        if change.enabled is not None:
            enabled = change.enabled
    if (target_bp, quota_max, enabled) == (
        ctx.goal.target_bp,
        ctx.scheme.quota.max_bytes,
        ctx.enabled,
    ):
        return ctx
    quota = ctx.scheme.quota.model_copy(update={"max_bytes": quota_max})
    return ctx.model_copy(
        update={
            "enabled": enabled,
            "goal": ctx.goal.model_copy(update={"target_bp": target_bp}),
            "scheme": ctx.scheme.model_copy(update={"quota": quota}),
        }
    )


def effective_contexts(
    base: Sequence[ContextConfig], layers: Sequence[Mapping[str, ContextPolicy]]
) -> list[ContextConfig]:
    """The contexts to run: the configured ones with the policy layers on top.

    Policies for contexts the configuration no longer has are ignored.
    """
    return [apply_policy(ctx, layers) for ctx in base]


def effective_view(contexts: Sequence[ContextConfig]) -> dict[str, dict[str, Any]]:
    """The policy fields of each context as acks and the state report show them."""
    return {
        ctx.name: {
            "target_bp": ctx.goal.target_bp,
            "quota_max_bytes": ctx.scheme.quota.max_bytes,
            "enabled": ctx.enabled,
        }
        for ctx in contexts
    }


def fit_errors(
    raw: Mapping[str, Any], base: Sequence[ContextConfig], capacity_of: CapacityOf
) -> list[PolicyError]:
    """Why the document ``raw`` cannot apply to this host's contexts (empty when it can).

    Works on the parsed JSON, so that a document with schema errors also gets
    these reported in the same answer.
    """
    changes = raw.get("contexts")
    if not isinstance(changes, Mapping):
        return []
    known = {ctx.name: ctx for ctx in base}
    names = ", ".join(sorted(known)) or "none"
    errors: list[PolicyError] = []
    for name, change in changes.items():
        ctx = known.get(name)
        if ctx is None:
            errors.append(
                PolicyError(f"contexts.{name}", f"unknown context, this host has: {names}")
            )
            continue
        quota = change.get("quota_max_bytes") if isinstance(change, Mapping) else None
        if isinstance(quota, int) and not isinstance(quota, bool):
            capacity = capacity_of(ctx.node)
            if capacity is not None and quota > capacity:
                errors.append(
                    PolicyError(
                        f"contexts.{name}.quota_max_bytes",
                        f"must not exceed the capacity of node {ctx.node} ({capacity} bytes), "
                        f"got {quota}",
                    )
                )
    return errors
