"""The highest generation applied per scope and signer, in a small file of its own.

Kept apart from ``policy.json`` so that losing or corrupting that file, or an old
copy of it coming back, does not let an old, validly signed document be applied
again: a replay stays stale as long as this file lives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from damond.policy.files import move_aside, remove_temp_files, write_atomic

HIGH_WATER_FILE = "policy-generations.json"

Marks = dict[str, dict[str, int]]
"""Scope key (``host/h1``, ``group/rack7``, ``fleet``) -> signer -> highest generation."""


class _Persisted(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    format: Literal[1]
    high_water: Marks


class HighWater:
    def __init__(self, path: Path, marks: Marks | None = None) -> None:
        self.path = path
        self._marks: Marks = {k: dict(v) for k, v in (marks or {}).items()}

    @classmethod
    def load(cls, state_dir: Path) -> HighWater:
        """The persisted marks; an unusable file is moved aside and logged."""
        path = state_dir / HIGH_WATER_FILE
        remove_temp_files(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            move_aside(path, f"cannot read: {exc.strerror or exc}", "policy generations file")
            return cls(path)
        try:
            return cls(path, _Persisted.model_validate_json(data).high_water)
        except ValidationError as exc:
            move_aside(
                path, f"invalid content ({exc.error_count()} errors)", "policy generations file"
            )
            return cls(path)

    def get(self, scope_key: str, signer: str) -> int | None:
        return self._marks.get(scope_key, {}).get(signer)

    def raised(self, scope_key: str, signer: str, generation: int) -> Marks:
        """The marks with ``generation`` counted for ``scope_key`` and ``signer``."""
        marks = {k: dict(v) for k, v in self._marks.items()}
        by_signer = marks.setdefault(scope_key, {})
        by_signer[signer] = max(generation, by_signer.get(signer, generation))
        return marks

    def fold(self, scope_key: str, signer: str, generation: int) -> None:
        """Count a generation found applied (a persisted policy) without writing."""
        self._marks = self.raised(scope_key, signer, generation)

    def save(self, marks: Marks) -> None:
        """Write ``marks`` durably, then make them current. Blocking: run in a thread."""
        data = json.dumps({"format": 1, "high_water": marks}, indent=1, sort_keys=True)
        write_atomic(self.path, data.encode() + b"\n")
        self._marks = marks
