"""The sysfs worker's contract with its callers' cancellation."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from damond.backend.sysfs.io import Session, SysfsIO, SysfsWorker
from damond.model.errors import BackendError


async def test_a_cancellation_arriving_as_a_job_finishes_is_not_dropped(tmp_path: Path) -> None:
    """A shutdown that cancels a context loop just as its sysfs job returns must still
    stop it: a dropped cancellation leaves the loop running and the daemon hanging."""
    state = tmp_path / "state"
    state.write_text("on\n")
    loop = asyncio.get_running_loop()
    worker = SysfsWorker(SysfsIO())
    caller: asyncio.Task[str]

    def cancel_once_the_job_has_returned() -> None:
        time.sleep(0.2)  # holds the loop while the worker queues the job's result
        caller.cancel()

    def job(s: Session) -> str:
        loop.call_soon_threadsafe(cancel_once_the_job_has_returned)
        return s.read(state)

    caller = asyncio.create_task(worker.call(job))
    try:
        with pytest.raises(asyncio.CancelledError):
            await caller
    finally:
        worker.close()


async def test_a_job_over_its_time_limit_is_a_backend_error(tmp_path: Path) -> None:
    worker = SysfsWorker(SysfsIO())
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    def job(s: Session) -> None:
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(5)

    try:
        with pytest.raises(BackendError, match=r"sysfs operation timed out after 0\.1 s"):
            await worker.call(job, timeout_s=0.1)
    finally:
        release.set()
        worker.close()
