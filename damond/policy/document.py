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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import from_json

from damond.config import ContextConfig
from damond.config.fields import BasisPoints, NonNegativeInt
from damond.config.wording import describe_error, format_loc

MAX_GENERATION = 2**63 - 1
MAX_LISTED_ERRORS = 20
"""An answer lists at most this many errors, then how many more there were, so that a
small document naming thousands of unknown contexts cannot draw a large ack."""
MAX_ERROR_TEXT = 240
"""Characters of one error's ``loc`` or ``msg`` in an answer; the rest is cut."""


class Scope(StrEnum):
    """Where a document was published; later members are more specific and win."""

    FLEET = "fleet"
    GROUP = "group"
    HOST = "host"


SCOPES_BY_PRECEDENCE = (Scope.FLEET, Scope.GROUP, Scope.HOST)


@dataclass(frozen=True, slots=True)
class Address:
    """Who this host is on the policy channel: what a document's ``target`` must name."""

    host_id: str
    group: str | None

    def target(self, scope: Scope) -> str | None:
        """The ``target`` a document for ``scope`` must carry here (None: the fleet has none)."""
        if scope is Scope.HOST:
            return self.host_id
        if scope is Scope.GROUP:
            return self.group
        return None

    def scope_key(self, scope: Scope) -> str:
        """Names a scope and its target, e.g. ``group/rack7``; generations count per key."""
        target = self.target(scope)
        return scope.value if target is None else f"{scope.value}/{target}"


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ContextPolicy(_Doc):
    """The fields of one context an operator may change; unset ones are left alone."""

    target_bp: BasisPoints | None = None
    target_us: NonNegativeInt | None = None
    """The target of a ``some_mem_psi_us`` goal, microseconds (it has no ``target_bp``)."""
    quota_max_bytes: Annotated[int, Field(ge=1, le=MAX_GENERATION)] | None = None
    enabled: bool | None = None


class PolicyDocument(_Doc):
    id: Annotated[str, Field(min_length=1, max_length=128)]
    generation: Annotated[int, Field(ge=0, le=MAX_GENERATION)]
    scope: Literal["fleet", "group", "host"] | None = None
    """Where the document is addressed; required in a signed one, which it binds."""
    target: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    """The host id (scope ``host``) or group (scope ``group``); absent for the fleet."""
    contexts: dict[Annotated[str, Field(max_length=63)], ContextPolicy] = Field(
        default_factory=dict
    )
    add_contexts: Annotated[list[ContextConfig], Field(max_length=64)] = Field(default_factory=list)
    """Whole contexts to run while the document is in force, as ``[[contexts]]`` entries
    of the configuration file; only within the host's ``[policy]`` limits."""
    remove_contexts: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=63)]], Field(max_length=64)
    ] = Field(default_factory=list)
    """Names of contexts a less specific scope's policy added, not to run here."""
    signature: Annotated[str, Field(max_length=256)] | None = None
    """Base64 Ed25519 signature over :func:`canonical_bytes` of the document."""


@dataclass(frozen=True, slots=True)
class PolicyError:
    loc: str
    msg: str

    def to_json(self) -> dict[str, str]:
        return {"loc": _cut(self.loc), "msg": _cut(self.msg)}


def _cut(text: str) -> str:
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 3] + "..."


def listed(errors: Sequence[PolicyError]) -> list[PolicyError]:
    """The first MAX_LISTED_ERRORS errors, and one saying how many more there were."""
    if len(errors) <= MAX_LISTED_ERRORS:
        return list(errors)
    more = len(errors) - MAX_LISTED_ERRORS
    return [*errors[:MAX_LISTED_ERRORS], PolicyError("(root)", f"{more} more errors not listed")]


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


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen.add(key)
    return dict(pairs)


def parse_object(payload: bytes, max_bytes: int) -> dict[str, Any]:
    """Check size, encoding, JSON syntax, duplicate keys and that the root is an
    object, in that order; raise PolicyRejected."""
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
        # pydantic's parser first: it bounds the nesting depth
        raw = from_json(payload)
    except ValueError as exc:
        raise PolicyRejected([PolicyError("payload", f"is not valid JSON: {exc}")]) from None
    policy_id, generation = identity(raw)
    if not isinstance(raw, dict):
        raise PolicyRejected(
            [PolicyError("(root)", f"must be a JSON object, got {_json_type(raw)}")]
        )
    try:
        # the same text again, only to see what the first parse silently dropped
        json.loads(payload, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as exc:
        key = _describe_payload_value(str(exc))
        raise PolicyRejected(
            [PolicyError("payload", f"has the key {key} twice in one object")],
            policy_id,
            generation,
        ) from None
    except (ValueError, RecursionError) as exc:
        raise PolicyRejected(
            [PolicyError("payload", f"is not valid JSON: {exc}")], policy_id, generation
        ) from None
    return raw


_NEW_CONTEXTS: TypeAdapter[list[ContextConfig]] = TypeAdapter(list[ContextConfig])


def _new_context_errors(raw: Mapping[str, Any]) -> list[PolicyError]:
    """``add_contexts`` as strictly as the rest of the document (``"1"`` is no number),
    with the configuration's own messages: the configuration schema is lax, as TOML
    has types of its own."""
    entries = raw.get("add_contexts")
    if not isinstance(entries, list):
        return []  # the document's schema reports it
    try:
        _NEW_CONTEXTS.validate_json(json.dumps(entries), strict=True)
    except ValidationError as exc:
        return [PolicyError(_loc(["add_contexts", *e["loc"]]), _describe(e)) for e in exc.errors()]
    return []


def validate_document(raw: Mapping[str, Any]) -> ParsedPolicy:
    """Check a parsed object against the schema; raise PolicyRejected with every error."""
    policy_id, generation = identity(raw)
    strict = _new_context_errors(raw)
    try:
        document = PolicyDocument.model_validate(raw)
    except ValidationError as exc:
        errors = [PolicyError(_loc(e["loc"]), _describe(e)) for e in exc.errors()]
        if strict:  # they say it all about add_contexts
            errors = [e for e in errors if not e.loc.startswith("add_contexts[")]
        unique = list(dict.fromkeys([*errors, *strict]))
        raise PolicyRejected(unique, policy_id, generation, raw) from None
    if strict:
        raise PolicyRejected(strict, policy_id, generation, raw)
    return ParsedPolicy(document, raw)


def parse_policy(payload: bytes, max_bytes: int) -> ParsedPolicy:
    """:func:`parse_object`, then :func:`validate_document`."""
    return validate_document(parse_object(payload, max_bytes))


def address_errors(document: PolicyDocument, scope: Scope, address: Address) -> list[PolicyError]:
    """Why a document that names its ``scope`` and ``target`` is not for this host on
    the topic it came from (empty when it is, or when it names neither)."""
    errors: list[PolicyError] = []
    if document.scope is not None and document.scope != scope.value:
        errors.append(
            PolicyError("scope", f"is {document.scope!r}, but it came on the {scope.value} topic")
        )
    wanted = address.target(scope)
    if document.target != wanted and (document.scope is not None or document.target is not None):
        if wanted is None:
            msg = f"must be absent for the fleet, got {_describe_payload_value(document.target)}"
        else:
            here = "this host" if scope is Scope.HOST else "this host's group"
            got = _describe_payload_value(document.target) if document.target else "nothing"
            msg = f"is not {here} {wanted!r}, got {got}"
        errors.append(PolicyError("target", msg))
    return errors


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
