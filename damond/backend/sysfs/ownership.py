"""Who owns which kdamond, and whether DAMON is free for damond at all.

damond records the kdamonds it created (index, kdamond pid, boot id) in its
state dir. A kdamond is damond's when the record is from this boot and either
the kdamond is off or it runs with the recorded pid. Anything else is foreign:
damond never changes it, and never writes ``nr_kdamonds`` (which recreates
every kdamond) while a foreign one exists.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from damond.backend.sysfs import paths
from damond.backend.sysfs.io import Session
from damond.backend.sysfs.kdamond import Kdamond
from damond.model.errors import BackendError, EnvironmentRefused

RECORD_NAME = "sysfs-kdamonds.json"

EXCLUSIVE_MODULES: Mapping[str, str] = {
    "damon_reclaim": "DAMON_RECLAIM",
    "damon_lru_sort": "DAMON_LRU_SORT",
    "damon_stat": "DAMON_STAT",
}


@dataclass(frozen=True, slots=True)
class KdamondState:
    index: int
    running: bool
    pid: int


@dataclass
class Slot:
    """A kdamond damond created: the context it serves and the pid it ran with."""

    context: str | None = None
    pid: int | None = None


@dataclass
class Record:
    boot_id: str
    admin_root: str
    slots: dict[int, Slot] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "boot_id": self.boot_id,
                "admin_root": self.admin_root,
                "kdamonds": {
                    str(i): {"context": s.context, "pid": s.pid} for i, s in self.slots.items()
                },
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Record:
        data = json.loads(text)
        slots = {
            int(i): Slot(context=v.get("context"), pid=v.get("pid"))
            for i, v in data.get("kdamonds", {}).items()
        }
        return cls(boot_id=str(data["boot_id"]), admin_root=str(data["admin_root"]), slots=slots)


def load_record(path: Path, boot_id: str, admin_root: Path) -> Record | None:
    """The record if it is from this boot and this tree, else None."""
    try:
        record = Record.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if record.boot_id != boot_id or record.admin_root != str(admin_root):
        return None
    return record


def save_record(path: Path, record: Record) -> None:
    """Atomically: a crash leaves the old record or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(record.to_json())
    os.replace(tmp, path)


@dataclass
class Claim:
    """damond's record and where it is kept, while the backend is open. Every change
    is saved before it matters: a crash leaves the kdamonds known as damond's."""

    admin: Path
    path: Path
    record: Record

    def save(self) -> None:
        save_record(self.path, self.record)

    def pick(self, s: Session, context: str, busy: Collection[int]) -> int:
        """The kdamond for ``context``: the one recorded as its own (left running or
        not), else an idle one that no other context holds."""
        slots = sorted(self.record.slots.items())
        for i, slot in slots:
            if slot.context == context:
                return i
        for i, slot in slots:
            idle = slot.context is None and i not in busy
            if idle and not Kdamond.at(self.admin, i).is_on(s):
                return i
        raise BackendError(
            f"context {context}: no idle kdamond left (damond owns {len(self.record.slots)}); "
            "raise sysfs.spare_kdamonds and restart damond to add contexts"
        )

    def hold(self, index: int, context: str, pid: int) -> None:
        slot = self.record.slots[index]
        slot.context, slot.pid = context, pid
        self.save()

    def release(self, index: int) -> None:
        """The kdamond is off and stays damond's, free for another context."""
        slot = self.record.slots.get(index)
        if slot is not None:
            slot.context = slot.pid = None
        self.save()

    def give_up(self, index: int) -> None:
        """Someone else runs the kdamond now: it is no longer damond's."""
        self.record.slots.pop(index, None)
        self.save()


def scan(s: Session, admin_root: Path) -> list[KdamondState]:
    out = []
    for i in range(s.read_int(paths.nr_kdamonds(admin_root))):
        kd = Kdamond.at(admin_root, i)
        on = kd.is_on(s)
        out.append(KdamondState(i, on, kd.pid(s) if on else -1))
    return out


def _enabled(module_root: Path, module: str) -> Path:
    return module_root / module / "parameters" / "enabled"


def exclusive_modules(s: Session, module_root: Path) -> list[str]:
    """DAMON modules that hold DAMON exclusively now (their ``enabled`` is Y)."""
    held = []
    for module in EXCLUSIVE_MODULES:
        path = _enabled(module_root, module)
        if s.exists(path) and s.read(path).strip() in ("Y", "y", "1"):
            held.append(module)
    return held


def refuse_modules(modules: Sequence[str], module_root: Path) -> EnvironmentRefused:
    parts = []
    for module in modules:
        param = _enabled(module_root, module)
        parts.append(
            f"{EXCLUSIVE_MODULES[module]} ({module}) holds DAMON exclusively; free it with "
            f"'echo N > {param}' or boot with '{module}.enabled=N'"
        )
    return EnvironmentRefused("; ".join(parts) + ". damond wrote nothing.")


def owned(states: Sequence[KdamondState], record: Record | None) -> set[int]:
    if record is None:
        return set()
    mine = set()
    for st in states:
        slot = record.slots.get(st.index)
        if slot is None:
            continue
        if not st.running or (slot.pid is not None and slot.pid == st.pid):
            mine.add(st.index)
    return mine


def refuse_foreign(
    states: Sequence[KdamondState], mine: set[int], admin_root: Path
) -> EnvironmentRefused | None:
    """The refusal for kdamonds damond did not create, or None if there are none."""
    running = [st for st in states if st.running and st.index not in mine]
    staged = [st for st in states if not st.running and st.index not in mine]
    nr_file = paths.nr_kdamonds(admin_root)
    if running:
        names = ", ".join(f"kdamond {st.index} (pid {st.pid})" for st in running)
        stop = "; ".join(
            f"'echo off > {paths.kdamond(admin_root, st.index) / paths.STATE}'" for st in running
        )
        return EnvironmentRefused(
            f"a foreign kdamond runs: {names} was not started by damond, and damond never "
            f"changes a kdamond it did not create. Free DAMON by having its owner stop it "
            f"({stop}) and remove it ('echo 0 > {nr_file}'). damond wrote nothing."
        )
    if staged:
        names = ", ".join(str(st.index) for st in staged)
        return EnvironmentRefused(
            f"foreign kdamonds are staged (off) under {paths.kdamonds(admin_root)}: {names}; "
            f"damond would have to rewrite nr_kdamonds, which destroys them. Free DAMON with "
            f"'echo 0 > {nr_file}' once their owner is done. damond wrote nothing."
        )
    return None
