"""Graceful shutdown: SIGTERM turns the owned contexts off, or leaves them
running with ``on_exit = "leave"``, and exits 0 quickly."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Literal

import pytest
import structlog.testing

from damond.backend.simulated.backend import SimBackend
from damond.config import Settings
from damond.runtime.supervisor import Supervisor
from tests.daemon_harness import Daemon, two_contexts


class StopRecordingBackend(SimBackend):
    """The simulated backend, noting which contexts were turned off."""

    stopped: list[str]

    async def stop_context(self, name: str) -> None:
        self.stopped.append(name)
        await super().stop_context(name)


async def run_and_stop(on_exit: Literal["stop", "leave"]) -> list[str]:
    settings = Settings(interval_s=0.1, on_exit=on_exit)
    start = time.monotonic()
    backend = StopRecordingBackend(
        settings.simulation, settings.contexts, lambda: time.monotonic() - start
    )
    backend.stopped = []
    supervisor = Supervisor(settings, backend)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(supervisor.run())
        for _ in range(250):
            if supervisor.loops and supervisor.all_iterated:
                break
            await asyncio.sleep(0.02)
        assert supervisor.all_iterated
        supervisor.stop()
    return backend.stopped


async def test_shutdown_turns_owned_contexts_off() -> None:
    assert sorted(await run_and_stop("stop")) == ["node0", "node1"]


async def test_shutdown_leaves_contexts_running_with_on_exit_leave() -> None:
    assert await run_and_stop("leave") == []


@pytest.mark.parametrize("on_exit", ["stop", "leave"])
def test_sigterm_exits_0_promptly(tmp_path: Path, on_exit: str) -> None:
    config = tmp_path / "damond.toml"
    config.write_text(f'interval_s = 0.2\non_exit = "{on_exit}"\n' + two_contexts())
    daemon = Daemon(config, str(tmp_path / "notify.sock"))
    try:
        daemon.wait_message("READY")
        asked = time.monotonic()
        assert daemon.stop(timeout=10) == 0
        assert time.monotonic() - asked < 3.0  # far inside TimeoutStopSec=30s
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
    assert daemon.wait_event("stopping").record["on_exit"] == on_exit
    assert [m.fields for m in daemon.messages_with("STOPPING")] == [{"STOPPING": "1"}]


async def test_a_shutdown_held_up_names_the_task_it_waits_for() -> None:
    """A task that does not end when cancelled is named in the journal, so that the
    operator learns what held the stop up before systemd's SIGKILL ends it."""
    settings = Settings(interval_s=0.1)
    start = time.monotonic()
    backend = SimBackend(settings.simulation, settings.contexts, lambda: time.monotonic() - start)
    release = asyncio.Event()

    async def stubborn_service() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()
            raise

    supervisor = Supervisor(settings, backend, services=[stubborn_service])
    supervisor.slow_stop_report_s = 0.2
    with structlog.testing.capture_logs() as logs:
        async with asyncio.TaskGroup() as tg:
            run = tg.create_task(supervisor.run())
            for _ in range(250):
                if supervisor.loops and supervisor.all_iterated:
                    break
                await asyncio.sleep(0.02)
            supervisor.stop()
            try:
                for _ in range(40):
                    if any(e["event"] == "shutdown still waiting for tasks" for e in logs):
                        break
                    await asyncio.sleep(0.05)
                assert not run.done()
            finally:
                release.set()
    [report] = [e for e in logs if e["event"] == "shutdown still waiting for tasks"]
    assert report["tasks"] == [
        "test_a_shutdown_held_up_names_the_task_it_waits_for.<locals>.stubborn_service"
    ]
    assert report["log_level"] == "warning"
