"""Settings and fixtures shared by the sysfs backend tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from damond.backend.sysfs.backend import SysfsBackend
from damond.config import Settings
from damond.control.translation import build_context
from tests.fakedamon import FakeKernel, FakeMachine


def pull_context(mode: str = "daemon", name: str = "pull", **extra: Any) -> dict[str, Any]:
    """Hot pages from node 1 (CXL) to node 0 (DRAM) until node 0 holds 60 % of them."""
    ctx: dict[str, Any] = {
        "name": name,
        "node": 1,
        "mode": mode,
        "scheme": {"target_nid": 0},
        "goal": {"metric": "node_eligible_mem_bp", "nid": 0, "target_bp": 6000},
    }
    ctx.update(extra)
    return ctx


def sysfs_settings(
    machine: FakeMachine, state_dir: Path, contexts: list[dict[str, Any]] | None = None, **kw: Any
) -> Settings:
    return Settings(
        backend="sysfs",
        state_dir=state_dir,
        sysfs={
            "admin_root": machine.admin,
            "devices_root": machine.devices,
            "module_root": machine.modules,
            "proc_root": machine.proc,
            "ebusy_retry_s": 1.0,
            # a fake kdamond's regions need no time to adapt, nor its readings averaging
            "warmup_aggregations": 0,
            "measure_window_s": 0.001,
            **kw.pop("sysfs", {}),
        },
        contexts=contexts if contexts is not None else [pull_context()],
        **kw,
    )


def backend(machine: FakeMachine, kernel: FakeKernel, state_dir: Path, **kw: Any) -> SysfsBackend:
    settings = sysfs_settings(machine, state_dir, **kw)
    return SysfsBackend(settings, [build_context(c) for c in settings.contexts], io=kernel)
