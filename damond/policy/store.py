"""The accepted policies, one per scope, and their atomic persistence in the state dir.

A policy is acknowledged only after it is on disk (temp file, fsync, rename,
fsync of the directory), so a host that crashes right after an ``applied`` ack
restarts with that policy in force, broker or not. What is loaded is checked as
a message would be (signature with the keys configured now, address), and the
highest generations live in a file of their own (:mod:`damond.policy.highwater`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Self

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

from damond.config import ContextConfig
from damond.policy import merge
from damond.policy.document import (
    SCOPES_BY_PRECEDENCE,
    Address,
    ParsedPolicy,
    PolicyDocument,
    PolicyError,
    Scope,
    address_errors,
)
from damond.policy.files import move_aside, remove_temp_files, write_atomic
from damond.policy.highwater import HIGH_WATER_FILE, HighWater
from damond.policy.merge import Policies
from damond.policy.signing import signer_of

STATE_FILE = "policy.json"

LoadCheck = Callable[[Scope, ParsedPolicy, Policies], list[PolicyError]]
"""Why a persisted policy of a scope no longer fits this host, given the less specific
scopes' policies kept before it (the contexts it adds, against ``[policy]``)."""

log = structlog.get_logger("damond.policy")


class _PersistedScope(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    group: str | None = None
    document: dict[str, Any]


class _PersistedState(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    format: Literal[1]
    scopes: dict[Scope, _PersistedScope]


class StateFileError(Exception):
    """The state file exists but cannot be used."""


class PolicyStore:
    """What each scope last had applied; the daemon's policy layers."""

    def __init__(
        self,
        path: Path,
        address: Address,
        policies: Policies | None = None,
        high_water: HighWater | None = None,
    ) -> None:
        self.path = path
        self.address = address
        self.group = address.group
        self._policies: dict[Scope, ParsedPolicy] = dict(policies or {})
        self.high_water = high_water or HighWater(path.parent / HIGH_WATER_FILE)

    @classmethod
    def load(
        cls,
        state_dir: Path,
        address: Address,
        keys: Sequence[Ed25519PublicKey] = (),
        check: LoadCheck | None = None,
    ) -> Self:
        """The persisted policies that still verify and pass ``check``; a corrupt or
        unreadable file is moved aside and logged, and temp files of an interrupted
        write are removed."""
        path = state_dir / STATE_FILE
        remove_temp_files(path)
        store = cls(path, address, high_water=HighWater.load(state_dir))
        try:
            loaded = _read(path, address.group)
        except FileNotFoundError:
            return store
        except StateFileError as exc:
            move_aside(path, str(exc), "policy state file")
            return store
        for scope, (parsed, signer) in _verified(loaded, address, keys, check).items():
            store._policies[scope] = parsed
            store.high_water.fold(address.scope_key(scope), signer, parsed.document.generation)
        if store._policies:
            log.info(
                "persisted policies loaded",
                path=str(path),
                generations=store.generations(),
            )
        return store

    def scope_key(self, scope: Scope) -> str:
        return self.address.scope_key(scope)

    @property
    def policies(self) -> Policies:
        return dict(self._policies)

    def with_policy(self, scope: Scope, parsed: ParsedPolicy) -> dict[Scope, ParsedPolicy]:
        """The policies as they would be with ``parsed`` accepted for ``scope``."""
        return merge.with_policy(self._policies, scope, parsed)

    def effective_contexts(self, base: Sequence[ContextConfig]) -> list[ContextConfig]:
        """``base`` under the persisted policies: what to run at start."""
        return merge.effective_contexts(base, self._policies)

    def generations(self) -> dict[str, int | None]:
        return {
            scope.value: (p.document.generation if (p := self._policies.get(scope)) else None)
            for scope in SCOPES_BY_PRECEDENCE
        }

    def ids(self) -> dict[str, str | None]:
        return {
            scope.value: (p.document.id if (p := self._policies.get(scope)) else None)
            for scope in SCOPES_BY_PRECEDENCE
        }

    def save(self, policies: Policies, mark: tuple[Scope, str, int] | None = None) -> None:
        """Write ``policies`` durably, then the generation ``mark`` (scope, signer,
        generation) in the high-water file, then make them current; if the second
        write fails, the first is undone. Blocking: run in a thread. A crash between
        the two writes is repaired at load, which counts the loaded generations."""
        previous = self._policies
        self._write(policies)
        if mark is not None:
            scope, signer, generation = mark
            try:
                self.high_water.save(
                    self.high_water.raised(self.scope_key(scope), signer, generation)
                )
            except OSError:
                self._write(previous)
                raise

    def _write(self, policies: Policies) -> None:
        state = {
            "format": 1,
            "scopes": {
                scope.value: {
                    "group": self.group if scope is Scope.GROUP else None,
                    "document": dict(parsed.raw),
                }
                for scope, parsed in policies.items()
            },
        }
        write_atomic(self.path, json.dumps(state, indent=1, sort_keys=True).encode() + b"\n")
        self._policies = dict(policies)


def _verified(
    loaded: dict[Scope, ParsedPolicy],
    address: Address,
    keys: Sequence[Ed25519PublicKey],
    check: LoadCheck | None,
) -> dict[Scope, tuple[ParsedPolicy, str]]:
    """The loaded policies that the configured keys still sign, that are addressed
    to this host and pass ``check`` (least specific first), with their signers; each
    one left out is logged."""
    kept: dict[Scope, tuple[ParsedPolicy, str]] = {}
    for scope in SCOPES_BY_PRECEDENCE:
        parsed = loaded.get(scope)
        if parsed is None:
            continue
        signer, errors = signer_of(parsed.raw, keys)
        errors += address_errors(parsed.document, scope, address)
        if check is not None:
            errors += check(scope, parsed, {s: p for s, (p, _) in kept.items()})
        if signer is None or errors:
            log.warning(
                "persisted policy not applied: it no longer passes this host's checks",
                scope=scope.value,
                id=parsed.document.id,
                generation=parsed.document.generation,
                errors=[f"{e.loc}: {e.msg}" for e in errors],
            )
            continue
        kept[scope] = (parsed, signer)
    return kept


def _read(path: Path, group: str | None) -> dict[Scope, ParsedPolicy]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StateFileError(f"cannot read: {exc.strerror or exc}") from None
    try:
        state = _PersistedState.model_validate_json(data)
        policies: dict[Scope, ParsedPolicy] = {}
        for scope, entry in state.scopes.items():
            if scope is Scope.GROUP and entry.group != group:
                log.warning(
                    "persisted group policy is for another group; ignoring it",
                    persisted_group=entry.group,
                    group=group,
                )
                continue
            document = PolicyDocument.model_validate(entry.document)
            policies[scope] = ParsedPolicy(document, entry.document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise StateFileError(
            f"invalid content ({exc.error_count()} errors, first: {where}: {first['msg']})"
        ) from None
    return policies


def saved_policy_exists(state_dir: Path) -> bool:
    """Whether a policy was saved here (temp files of an interrupted write are removed)."""
    path = state_dir / STATE_FILE
    remove_temp_files(path)
    remove_temp_files(state_dir / HIGH_WATER_FILE)
    return path.exists()
