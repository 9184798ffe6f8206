"""What to answer to one policy message, decided without touching anything.

Kept apart from the MQTT transport and from persistence so that every rule a
document must pass (and every text an operator reads in the ack) sits in pure
functions that need neither a broker nor a disk. A message is screened on
arrival (everything that does not depend on what is applied), so that only a
valid message may wait for its turn and replace another; it is decided when
its turn comes (duplicate, stale, fit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from damond.config import ContextConfig
from damond.policy.document import (
    Address,
    ParsedPolicy,
    PolicyDocument,
    PolicyError,
    PolicyRejected,
    Scope,
    address_errors,
    identity,
    parse_object,
    validate_document,
)
from damond.policy.merge import (
    CapacityOf,
    Policies,
    effective_contexts,
    fit_errors,
    with_policy,
)
from damond.policy.signing import signer_of
from damond.policy.workloads import HostLimits, workload_errors

BINDS = "the signature binds the document to where it applies"

Status = Literal["applied", "stale", "superseded", "duplicate", "rejected"]


@dataclass(frozen=True, slots=True)
class Screened:
    """A message that passed every check that does not depend on what is applied."""

    parsed: ParsedPolicy
    signer: str
    """The key that signed it (``signing.key_id``), or ``signing.UNSIGNED``."""

    @property
    def document(self) -> PolicyDocument:
        return self.parsed.document


@dataclass(frozen=True, slots=True)
class Candidate:
    """An accepted document and all the policies to persist with it."""

    document: PolicyDocument
    signer: str
    policies: Policies


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one message: what the ack says about it.

    ``candidate`` is set exactly when ``status`` is ``applied``; the ack may say
    so only once the candidate has been persisted and applied.
    """

    policy_id: str | None
    generation: int | None
    status: Status
    errors: Sequence[PolicyError] = ()
    candidate: Candidate | None = None

    def rejected(self, error: PolicyError) -> Verdict:
        """This verdict turned down after all (the candidate could not be carried out)."""
        return dataclasses.replace(self, status="rejected", errors=[error], candidate=None)


def screen(
    scope: Scope,
    payload: bytes,
    *,
    address: Address,
    base: Sequence[ContextConfig],
    policies: Policies,
    limits: HostLimits,
    keys: Sequence[Ed25519PublicKey],
    capacity_of: CapacityOf,
    max_bytes: int,
) -> Screened | Verdict:
    """Parse, then the signature (before any value, so that an unsigned document draws
    one error however many values it has), then schema, address and fit (to the
    contexts as the accepted ``policies`` and this document would make them)."""
    try:
        raw = parse_object(payload, max_bytes)
    except PolicyRejected as exc:
        return Verdict(exc.policy_id, exc.generation, "rejected", exc.errors)
    signer, errors = signer_of(raw, keys)
    if signer is None:
        pid, gen = identity(raw)
        return Verdict(pid, gen, "rejected", errors)
    try:
        parsed = validate_document(raw)
    except PolicyRejected as exc:
        others = {s: p for s, p in policies.items() if s is not scope}
        known = effective_contexts(base, others)
        errors = [*exc.errors, *fit_errors(raw, known, capacity_of)]
        return Verdict(exc.policy_id, exc.generation, "rejected", errors)
    doc = parsed.document
    if keys and doc.scope is None:
        errors.append(PolicyError("scope", f"required in a signed policy: {BINDS}"))
        if doc.target is None and address.target(scope) is not None:
            errors.append(
                PolicyError("target", f"required in a signed {scope.value} policy: {BINDS}")
            )
    errors += address_errors(doc, scope, address)
    errors += _fit(scope, parsed, policies, base, limits, capacity_of)
    if errors:
        return Verdict(doc.id, doc.generation, "rejected", errors)
    return Screened(parsed, signer)


def decide(
    scope: Scope,
    message: Screened,
    *,
    policies: Policies,
    high_water: int | None,
    base: Sequence[ContextConfig],
    limits: HostLimits,
    capacity_of: CapacityOf,
) -> Verdict:
    """Check a screened message against the accepted ``policies``, the highest
    generation its signer has had applied for this scope (``high_water``, which
    outlives the policy file) and the contexts configured now: duplicate, stale, fit."""
    doc = message.document
    current = policies.get(scope)
    if current is not None and current.document.id == doc.id:
        note = PolicyError(
            "id",
            f"already applied for scope {scope.value} (generation {current.document.generation})",
        )
        return Verdict(doc.id, doc.generation, "duplicate", [note])
    if current is not None and doc.generation <= current.document.generation:
        note = PolicyError(
            "generation",
            f"must be newer than {current.document.generation}, the last applied generation "
            f"of scope {scope.value}, got {doc.generation}",
        )
        return Verdict(doc.id, doc.generation, "stale", [note])
    if high_water is not None and doc.generation <= high_water:
        note = PolicyError(
            "generation",
            f"must be newer than {high_water}, the highest generation of scope {scope.value} "
            f"this signer has had applied here, got {doc.generation}",
        )
        return Verdict(doc.id, doc.generation, "stale", [note])
    errors = _fit(scope, message.parsed, policies, base, limits, capacity_of)
    if errors:
        return Verdict(doc.id, doc.generation, "rejected", errors)
    candidate = Candidate(doc, message.signer, with_policy(policies, scope, message.parsed))
    return Verdict(doc.id, doc.generation, "applied", candidate=candidate)


def _fit(
    scope: Scope,
    parsed: ParsedPolicy,
    policies: Policies,
    base: Sequence[ContextConfig],
    limits: HostLimits,
    capacity_of: CapacityOf,
) -> list[PolicyError]:
    """The contexts ``parsed`` adds and removes, then its changes to the contexts that
    would run with it."""
    doc = parsed.document
    errors = workload_errors(doc, scope, policies, base, limits, capacity_of)
    known = effective_contexts(base, with_policy(policies, scope, parsed))
    return [*errors, *fit_errors(parsed.raw, known, capacity_of)]
