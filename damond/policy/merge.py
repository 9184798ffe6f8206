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
    of: Callable[[ContextConfig], str | None] | None = None
    """Why a context has no such field (None when it has): a goal's target is in basis
    points or in microseconds, by its metric."""

    def has(self, ctx: ContextConfig) -> bool:
        return self.of is None or self.of(ctx) is None

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


def _target_in_bp(ctx: ContextConfig) -> str | None:
    if ctx.goal.metric == "some_mem_psi_us":
        return "some_mem_psi_us takes target_us, not target_bp"
    return None


def _target_in_us(ctx: ContextConfig) -> str | None:
    if ctx.goal.metric != "some_mem_psi_us":
        return f"only some_mem_psi_us takes it, not {ctx.goal.metric}"
    return None


FIELDS = (
    PolicyField("target_bp", "goal.target_bp", of=_target_in_bp),
    PolicyField("target_us", "goal.target_us", of=_target_in_us),
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
    """The contexts to run: the configured ones, then those the policies add, under the
    accepted policies' changes, host over group over fleet, per field."""
    scopes = [s for s in SCOPES_BY_PRECEDENCE if s in policies]
    layers = [policies[s].document.contexts for s in scopes]
    added = [
        _apply(ctx, layers[scopes.index(scope) :])  # from the scope that adds it on
        for ctx, scope in _added(base, policies).values()
    ]
    return [*apply_layers(base, layers), *added]


def added_by(base: Sequence[ContextConfig], policies: Policies) -> dict[str, Scope]:
    """The contexts the policies add (and no more specific one removes), by the scope
    that adds them; a configured context of the same name wins over a policy's."""
    return {name: scope for name, (_, scope) in _added(base, policies).items()}


def _added(
    base: Sequence[ContextConfig], policies: Policies
) -> dict[str, tuple[ContextConfig, Scope]]:
    configured = {ctx.name for ctx in base}
    added: dict[str, tuple[ContextConfig, Scope]] = {}
    for scope in SCOPES_BY_PRECEDENCE:
        parsed = policies.get(scope)
        if parsed is None:
            continue
        for name in parsed.document.remove_contexts:
            added.pop(name, None)
        for ctx in parsed.document.add_contexts:
            if ctx.name not in configured:
                added[ctx.name] = (ctx, scope)
    return added


def apply_layers(base: Sequence[ContextConfig], layers: Sequence[Layer]) -> list[ContextConfig]:
    """``base`` with each field taken from the last layer that sets it (layers:
    least specific first); changes for contexts ``base`` lacks are ignored."""
    return [_apply(ctx, layers) for ctx in base]


def _apply(ctx: ContextConfig, layers: Sequence[Layer]) -> ContextConfig:
    """``ctx`` under ``layers``; a field the context lacks (a target in the other unit,
    after a reload changed the goal's metric) is left alone."""
    changes = [change for layer in layers if (change := layer.get(ctx.name)) is not None]
    for f in FIELDS:
        chosen = [value for change in changes if (value := getattr(change, f.name)) is not None]
        if chosen and f.has(ctx) and chosen[-1] != f.read(ctx):
            ctx = f.write(ctx, chosen[-1])
    return ctx


def effective_view(contexts: Sequence[ContextConfig]) -> dict[str, dict[str, Any]]:
    """The policy fields of each context as acks and the state report show them."""
    return {ctx.name: {f.name: f.read(ctx) for f in FIELDS if f.has(ctx)} for ctx in contexts}


def fit_errors(
    raw: Mapping[str, Any], known: Sequence[ContextConfig], capacity_of: CapacityOf
) -> list[PolicyError]:
    """Why the document ``raw`` cannot apply to this host's contexts ``known`` (the
    configured ones and those policies add; empty when it can).

    Works on the parsed JSON, so that a document with schema errors also gets
    these reported in the same answer.
    """
    changes = raw.get("contexts")
    if not isinstance(changes, Mapping):
        return []
    by_name = {ctx.name: ctx for ctx in known}
    names = ", ".join(sorted(by_name)) or "none"
    errors: list[PolicyError] = []
    for name, change in changes.items():
        ctx = by_name.get(name)
        if ctx is None:
            errors.append(
                PolicyError(f"contexts.{name}", f"unknown context, this host has: {names}")
            )
            continue
        if not isinstance(change, Mapping):
            continue
        for f in FIELDS:
            if f.name not in change:
                continue
            msg = f.of(ctx) if f.of is not None else None
            if msg is None and f.fits is not None:
                msg = f.fits(ctx, change[f.name], capacity_of)
            if msg is not None:
                errors.append(PolicyError(f"contexts.{name}.{f.name}", msg))
    return errors
