"""Carries out policy verdicts: persist an accepted policy, then apply it, or neither.

Sits between the pure decision and the transport; it alone holds the configured
contexts the policies are merged onto, so a reload rebases them here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from damond.config import ContextConfig
from damond.control.status import ContextStatus
from damond.policy.decision import Candidate, Screened, Verdict, decide, screen
from damond.policy.document import PolicyError, Scope
from damond.policy.merge import (
    CapacityOf,
    Policies,
    added_by,
    effective_contexts,
    effective_view,
)
from damond.policy.observer import PolicyMetrics
from damond.policy.store import PolicyStore
from damond.policy.workloads import HostLimits

log = structlog.get_logger("damond.policy")


class PolicyApplier:
    """The accepted policies over the configured contexts, and how a new one gets in force."""

    def __init__(
        self,
        store: PolicyStore,
        base_contexts: Sequence[ContextConfig],
        apply_contexts: Callable[[list[ContextConfig]], None],
        capacity_of: CapacityOf,
        keys: Sequence[Ed25519PublicKey],
        max_payload_bytes: int,
        metrics: PolicyMetrics,
        limits: HostLimits,
    ) -> None:
        self._store = store
        self._limits = limits
        self._base = list(base_contexts)
        self._apply_contexts = apply_contexts
        self._capacity_of = capacity_of
        self._keys = list(keys)
        self._max_payload_bytes = max_payload_bytes
        self._metrics = metrics

    def rebase(self, base: Sequence[ContextConfig]) -> list[ContextConfig]:
        """Take ``base`` as the configured contexts (a reload); returns the ones to run."""
        self._base = list(base)
        added = added_by((), self._store.policies)
        shadowed = sorted(name for name in added if name in {ctx.name for ctx in base})
        if shadowed:
            log.warning(
                "the configuration now defines contexts a policy adds; the file's run",
                contexts=shadowed,
            )
        return self.running()

    def running(self) -> list[ContextConfig]:
        """The contexts to run: the configured ones under the accepted policies."""
        return effective_contexts(self._base, self._store.policies)

    def summary(self, statuses: Mapping[str, ContextStatus]) -> dict[str, dict[str, Any]]:
        """How each context is doing, as the state report shows it; a stall goal's
        value and target in microseconds."""
        goals = {ctx.name: ctx.goal for ctx in self.running()}
        summary = {}
        for name, status in statuses.items():
            stall_us = None if (goal := goals.get(name)) is None else goal.target_us
            values = (
                {"metric_bp": status.metric_bp, "target_bp": status.target_bp}
                if stall_us is None
                else {"metric_us": status.metric_bp, "target_us": stall_us}
            )
            summary[name] = {
                **values,
                "quota_bytes": status.quota_bytes,
                "up": status.up,
                "iterations": status.iterations,
            }
        return summary

    def effective(self) -> dict[str, dict[str, Any]]:
        """The policy fields in force, as acks and state reports show them."""
        return effective_view(self.running())

    def screen(self, scope: Scope, payload: bytes) -> Screened | Verdict:
        """The checks that do not depend on what is applied, run on arrival."""
        return screen(
            scope,
            payload,
            address=self._store.address,
            base=self._base,
            policies=self._store.policies,
            limits=self._limits,
            keys=self._keys,
            capacity_of=self._capacity_of,
            max_bytes=self._max_payload_bytes,
        )

    async def process(self, scope: Scope, message: Screened) -> Verdict:
        """Decide on one screened message; an accepted one is persisted, then applied."""
        verdict = decide(
            scope,
            message,
            policies=self._store.policies,
            high_water=self._store.high_water.get(self._store.scope_key(scope), message.signer),
            base=self._base,
            limits=self._limits,
            capacity_of=self._capacity_of,
        )
        if verdict.candidate is None:
            return verdict
        return await self._carry_out(scope, verdict, verdict.candidate)

    async def _carry_out(self, scope: Scope, verdict: Verdict, candidate: Candidate) -> Verdict:
        previous = self._store.policies
        doc = candidate.document
        mark = (scope, candidate.signer, doc.generation)
        try:
            await asyncio.to_thread(self._store.save, candidate.policies, mark)
        except OSError as exc:
            log.error("policy could not be persisted", path=str(self._store.path), error=str(exc))
            return verdict.rejected(
                PolicyError(
                    "(root)",
                    f"could not be persisted in {self._store.path}: {exc}; nothing changed",
                )
            )
        # merged onto the configuration in force now: a reload may have come in
        # while the policy was being written, and must not be undone
        contexts = effective_contexts(self._base, candidate.policies)
        try:
            self._apply_contexts(contexts)
        except Exception as exc:
            log.error("policy could not be applied; restoring the previous one", exc_info=True)
            await asyncio.to_thread(self._restore, previous)
            return verdict.rejected(
                PolicyError("(root)", f"could not be applied: {exc}; nothing changed")
            )
        self._metrics.policy_generation(scope.value, doc.generation)
        log.info(
            "policy applied",
            scope=scope.value,
            id=doc.id,
            generation=doc.generation,
            effective=effective_view(contexts),
        )
        return verdict

    def _restore(self, previous: Policies) -> None:
        """Put the previous policies back on disk, best effort (blocking)."""
        try:
            self._store.save(previous)
        except OSError as exc:
            log.error("previous policy could not be restored on disk", error=str(exc))
