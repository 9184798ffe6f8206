"""Policy documents: the bytes an operator publishes, checked before anything else looks.

Parsing is strict (JSON only, exact types, no unknown fields) and reports every
problem with its field path, because the operator reads these in an ack and
fixes the document in one pass.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import from_json

from damond.config.fields import BasisPoints
from damond.config.wording import describe_error, format_loc

MAX_GENERATION = 2**63 - 1


class Scope(StrEnum):
    """Where a document was published; later members are more specific and win."""

    FLEET = "fleet"
    GROUP = "group"
    HOST = "host"


SCOPES_BY_PRECEDENCE = (Scope.FLEET, Scope.GROUP, Scope.HOST)


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ContextPolicy(_Doc):
    """The fields of one context an operator may change; unset ones are left alone."""

    target_bp: BasisPoints | None = None
    quota_max_bytes: Annotated[int, Field(ge=1, le=MAX_GENERATION)] | None = None
    enabled: bool | None = None


class PolicyDocument(_Doc):
    id: Annotated[str, Field(min_length=1, max_length=128)]
    generation: Annotated[int, Field(ge=0, le=MAX_GENERATION)]
    contexts: dict[Annotated[str, Field(max_length=63)], ContextPolicy] = Field(
        default_factory=dict
    )
    signature: Annotated[str, Field(max_length=256)] | None = None
    """Base64 Ed25519 signature over :func:`canonical_bytes` of the document."""


@dataclass(frozen=True, slots=True)
class PolicyError:
    loc: str
    msg: str

    def to_json(self) -> dict[str, str]:
        return {"loc": self.loc, "msg": self.msg}


class PolicyRejected(Exception):
    """A document that cannot be accepted, with every reason and what is known of it.

    ``raw`` is the parsed JSON object when the payload got that far.
    """

    def __init__(
        self,
        errors: Sequence[PolicyError],
        policy_id: str | None = None,
        generation: int | None = None,
        raw: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__("; ".join(f"{e.loc}: {e.msg}" for e in errors))
        self.errors = list(errors)
        self.policy_id = policy_id
        self.generation = generation
        self.raw = raw


@dataclass(frozen=True, slots=True)
class ParsedPolicy:
    """A schema-valid document and the JSON object it came from (what signatures cover)."""

    document: PolicyDocument
    raw: Mapping[str, Any]


def canonical_bytes(raw: Mapping[str, Any]) -> bytes:
    """The signed form: the document without ``signature``, keys sorted, no spaces, UTF-8."""
    body = {k: v for k, v in raw.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def identity(raw: object) -> tuple[str | None, int | None]:
    """``id`` and ``generation`` of a parsed object, where they have the right types."""
    if not isinstance(raw, dict):
        return None, None
    pid = raw.get("id")
    gen = raw.get("generation")
    return (
        pid if isinstance(pid, str) else None,
        gen if isinstance(gen, int) and not isinstance(gen, bool) else None,
    )


def peek_identity(payload: bytes) -> tuple[str | None, int | None]:
    """Best-effort ``id`` and ``generation`` of a payload that will not be processed."""
    try:
        return identity(from_json(payload))
    except ValueError:
        return None, None


def _describe(err: Mapping[str, Any]) -> str:
    if err["type"] in ("model_type", "dict_type"):
        return f"must be a JSON object, got {_json_type(err.get('input'))}"
    return describe_error(err, _describe_payload_value)


def _describe_payload_value(value: object) -> str:
    """A value from an untrusted payload, kept short."""
    if isinstance(value, str) and len(value) > 40:
        return f"a string of {len(value)} characters"
    if isinstance(value, bool | int | float | str):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return _json_type(value)


def _loc(parts: Sequence[str | int]) -> str:
    # dict keys in the path become plain levels: contexts.node0.target_bp
    cleaned = [p for p in parts if not (isinstance(p, str) and p.startswith("function-"))]
    cleaned = [p for p in cleaned if p not in ("[key]",)]
    return format_loc(cleaned)


def size_error(payload: bytes, max_bytes: int) -> PolicyError | None:
    """Why ``payload`` is too large to look at, None when it is not; the channel
    checks this on arrival, before a message takes a slot in its inbox."""
    if len(payload) > max_bytes:
        return PolicyError("payload", f"is {len(payload)} bytes, more than the limit {max_bytes}")
    return None


def parse_policy(payload: bytes, max_bytes: int) -> ParsedPolicy:
    """Check size, encoding, JSON syntax and schema, in that order; raise PolicyRejected."""
    too_large = size_error(payload, max_bytes)
    if too_large is not None:
        raise PolicyRejected([too_large])
    if not payload:
        raise PolicyRejected(
            [PolicyError("payload", "is empty (a cleared retained message); nothing changes")]
        )
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyRejected(
            [PolicyError("payload", f"is not valid UTF-8 (byte {exc.start})")]
        ) from None
    try:
        raw = from_json(payload)
    except ValueError as exc:
        raise PolicyRejected([PolicyError("payload", f"is not valid JSON: {exc}")]) from None
    policy_id, generation = identity(raw)
    if not isinstance(raw, dict):
        raise PolicyRejected(
            [PolicyError("(root)", f"must be a JSON object, got {_json_type(raw)}")]
        )
    try:
        document = PolicyDocument.model_validate(raw)
    except ValidationError as exc:
        errors = [PolicyError(_loc(e["loc"]), _describe(e)) for e in exc.errors()]
        unique = list(dict.fromkeys(errors))
        raise PolicyRejected(unique, policy_id, generation, raw) from None
    return ParsedPolicy(document, raw)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    return "array"
