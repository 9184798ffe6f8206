"""The one owner of policy merging: which value of each field is in force, and
whether a document fits this host (its contexts, its nodes' capacities).

Everything here is driven by :data:`FIELDS`, so that a new policy field is one
row there plus the field in :class:`~damond.policy.document.ContextPolicy`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from damond.config import ContextConfig, quota_capacity_error
from damond.policy.document import (
    SCOPES_BY_PRECEDENCE,
    ContextPolicy,
    ParsedPolicy,
    PolicyError,
    Scope,
)

CapacityOf = Callable[[int], int | None]
"""Capacity in bytes of a NUMA node, None when not known (yet)."""

FitCheck = Callable[[ContextConfig, object, CapacityOf], str | None]
"""Why a field's raw JSON value cannot apply to a context (None when it can)."""

Policies = Mapping[Scope, ParsedPolicy]
"""The accepted policy of each scope that has one."""

Layer = Mapping[str, ContextPolicy]
"""One scope's changes, by context name."""

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class PolicyField:
    """A :class:`ContextPolicy` field, the configuration value it sets and what
    bounds it on this host."""

    name: str
    path: str
    """Dotted path of the value in :class:`ContextConfig`."""
    fits: FitCheck | None = None

    def read(self, ctx: ContextConfig) -> object:
        """The value in force in ``ctx``."""
        value: object = ctx
        for part in self.path.split("."):
            value = getattr(value, part)
        return value

    def write(self, ctx: ContextConfig, value: object) -> ContextConfig:
        """A copy of ``ctx`` with ``value`` in force; configurations are frozen."""
        return _replace(ctx, self.path.split("."), value)


def _replace(model: M, parts: Sequence[str], value: object) -> M:
    head, *rest = parts
    new = _replace(getattr(model, head), rest, value) if rest else value
    return model.model_copy(update={head: new})


def _within_node_capacity(ctx: ContextConfig, value: object, capacity_of: CapacityOf) -> str | None:
    """The configuration's own check of ``scheme.quota.max_bytes``, so that both agree."""
    return quota_capacity_error(ctx.node, capacity_of(ctx.node), value)


FIELDS = (
    PolicyField("target_bp", "goal.target_bp"),
    PolicyField("quota_max_bytes", "scheme.quota.max_bytes", _within_node_capacity),
    PolicyField("enabled", "enabled"),
)
"""Every policy field, in the order acks and state reports list them."""

if {f.name for f in FIELDS} != set(ContextPolicy.model_fields):
    # a field missing here would be accepted and silently ignored; fail at start instead
    raise RuntimeError("merge.FIELDS and ContextPolicy must name the same fields")


def with_policy(
    policies: Policies, scope: Scope, parsed: ParsedPolicy
) -> dict[Scope, ParsedPolicy]:
    """``policies`` as they would be with ``parsed`` accepted for ``scope``."""
    return {**policies, scope: parsed}


def effective_contexts(base: Sequence[ContextConfig], policies: Policies) -> list[ContextConfig]:
    """The contexts to run: the configured ones under the accepted policies, host
    over group over fleet, per field."""
    layers = [policies[s].document.contexts for s in SCOPES_BY_PRECEDENCE if s in policies]
    return apply_layers(base, layers)


def apply_layers(base: Sequence[ContextConfig], layers: Sequence[Layer]) -> list[ContextConfig]:
    """``base`` with each field taken from the last layer that sets it (layers:
    least specific first); changes for contexts ``base`` lacks are ignored."""
    return [_apply(ctx, layers) for ctx in base]


def _apply(ctx: ContextConfig, layers: Sequence[Layer]) -> ContextConfig:
    changes = [change for layer in layers if (change := layer.get(ctx.name)) is not None]
    for f in FIELDS:
        chosen = [value for change in changes if (value := getattr(change, f.name)) is not None]
        if chosen and chosen[-1] != f.read(ctx):
            ctx = f.write(ctx, chosen[-1])
    return ctx


def effective_view(contexts: Sequence[ContextConfig]) -> dict[str, dict[str, Any]]:
    """The policy fields of each context as acks and the state report show them."""
    return {ctx.name: {f.name: f.read(ctx) for f in FIELDS} for ctx in contexts}


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
        if not isinstance(change, Mapping):
            continue
        for f in FIELDS:
            if f.fits is not None and f.name in change:
                msg = f.fits(ctx, change[f.name], capacity_of)
                if msg is not None:
                    errors.append(PolicyError(f"contexts.{name}.{f.name}", msg))
    return errors
