"""The accepted policies, one per scope, and their atomic persistence in the state dir.

A policy is acknowledged only after it is on disk (temp file, fsync, rename,
fsync of the directory), so a host that crashes right after an ``applied`` ack
restarts with that policy in force, broker or not.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, ValidationError

from damond.config import ContextConfig
from damond.policy import merge
from damond.policy.document import SCOPES_BY_PRECEDENCE, ParsedPolicy, PolicyDocument, Scope
from damond.policy.merge import Policies

STATE_FILE = "policy.json"

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

    def __init__(self, path: Path, group: str | None, policies: Policies | None = None) -> None:
        self.path = path
        self.group = group
        self._policies: dict[Scope, ParsedPolicy] = dict(policies or {})

    @classmethod
    def load(cls, state_dir: Path, group: str | None) -> PolicyStore:
        """The persisted policies; a corrupt or unreadable file is moved aside and logged."""
        path = state_dir / STATE_FILE
        store = cls(path, group)
        try:
            store._policies = _read(path, group)
        except FileNotFoundError:
            return store
        except StateFileError as exc:
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            try:
                os.replace(path, aside)
            except OSError as move_exc:
                log.error(
                    "policy state file unusable and could not be moved aside; "
                    "starting from the configuration",
                    path=str(path),
                    reason=str(exc),
                    move_error=str(move_exc),
                )
            else:
                log.error(
                    "policy state file unusable; moved aside, starting from the configuration",
                    path=str(path),
                    moved_to=str(aside),
                    reason=str(exc),
                )
            return store
        if store._policies:
            log.info(
                "persisted policies loaded",
                path=str(path),
                generations=store.generations(),
            )
        return store

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

    def save(self, policies: Policies) -> None:
        """Write ``policies`` durably, then make them current. Blocking: run in a thread."""
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


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file whole."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
