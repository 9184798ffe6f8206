"""What to answer to one policy message, decided without touching anything.

Kept apart from the MQTT transport and from persistence so that every rule a
document must pass (and every text an operator reads in the ack) sits in one
pure function that needs neither a broker nor a disk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from damond.config import ContextConfig
from damond.policy.document import (
    PolicyDocument,
    PolicyError,
    PolicyRejected,
    Scope,
    parse_policy,
)
from damond.policy.merge import CapacityOf, Policies, effective_contexts, fit_errors, with_policy
from damond.policy.signing import signature_errors

Status = Literal["applied", "stale", "duplicate", "rejected"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An accepted document and what it leads to: all policies to persist, the contexts to run."""

    document: PolicyDocument
    policies: Policies
    contexts: list[ContextConfig]


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


def decide(
    scope: Scope,
    payload: bytes,
    *,
    policies: Policies,
    base: Sequence[ContextConfig],
    keys: Sequence[Ed25519PublicKey],
    capacity_of: CapacityOf,
    max_bytes: int,
) -> Verdict:
    """Check ``payload`` for ``scope`` against the accepted ``policies`` and the
    configured contexts ``base``: parse, signature, duplicate, stale, fit, in that order."""
    try:
        parsed = parse_policy(payload, max_bytes)
    except PolicyRejected as exc:
        errors = list(exc.errors)
        if exc.raw is not None:
            errors += fit_errors(exc.raw, base, capacity_of)
        return Verdict(exc.policy_id, exc.generation, "rejected", errors)
    doc = parsed.document
    errors = signature_errors(parsed.raw, doc.signature, keys)
    if errors:
        return Verdict(doc.id, doc.generation, "rejected", errors)
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
    errors = fit_errors(parsed.raw, base, capacity_of)
    if errors:
        return Verdict(doc.id, doc.generation, "rejected", errors)
    candidate = with_policy(policies, scope, parsed)
    contexts = effective_contexts(base, candidate)
    return Verdict(doc.id, doc.generation, "applied", candidate=Candidate(doc, candidate, contexts))
