"""All file access to sysfs and procfs, and the one worker that serializes it.

The kernel guards every DAMON sysfs command with one global lock (taken with
``trylock``, so contention shows up as EBUSY), and some commands block for an
apply interval or more. So every access of the process runs on one worker
thread, off the event loop, with EBUSY retried under a bounded backoff and a
timeout on each call. :class:`SysfsIO` is the only place that opens files: a
test subclasses it to emulate the kernel's write semantics on a fake tree.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from damond.model.errors import BackendError

T = TypeVar("T")


class SysfsError(BackendError):
    """A sysfs read or write failed; the message names the file and the value."""

    def __init__(self, op: str, path: Path, err: OSError, value: str | None = None) -> None:
        self.path = path
        self.value = value
        self.errno = err.errno
        code = errno.errorcode.get(err.errno or 0, str(err.errno))
        what = f"write {value!r} to {path}" if op == "write" else f"{op} {path}"
        super().__init__(f"{what}: {code} ({err.strerror})")


class SysfsIO:
    """Plain file access; values are written whole and read without the final newline."""

    def read(self, path: Path) -> str:
        with open(path, encoding="ascii", errors="replace") as fh:
            text = fh.read()
        return text[:-1] if text.endswith("\n") else text

    def write(self, path: Path, value: str) -> None:
        # No O_CREAT: a missing sysfs file is an error, never something to create.
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, value.encode("ascii"))
        finally:
            os.close(fd)

    def exists(self, path: Path) -> bool:
        return path.exists()

    def listdir(self, path: Path) -> list[str]:
        return sorted(os.listdir(path))


class Session:
    """What a job on the worker gets: the I/O object with EBUSY retries and errors that
    name the file and value."""

    def __init__(self, io: SysfsIO, ebusy_budget_s: float) -> None:
        self.io = io
        self.ebusy_budget_s = ebusy_budget_s

    def _retry(self, op: str, path: Path, fn: Callable[[], T], value: str | None = None) -> T:
        deadline = time.monotonic() + self.ebusy_budget_s
        delay = 0.005
        while True:
            try:
                return fn()
            except OSError as exc:
                if exc.errno == errno.EBUSY and time.monotonic() + delay < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.25)
                    continue
                raise SysfsError(op, path, exc, value) from None

    def read(self, path: Path) -> str:
        return self._retry("read", path, lambda: self.io.read(path))

    def read_int(self, path: Path) -> int:
        text = self.read(path).strip()
        try:
            return int(text)
        except ValueError:
            raise BackendError(f"read {path}: expected an integer, got {text!r}") from None

    def write(self, path: Path, value: str) -> None:
        self._retry("write", path, lambda: self.io.write(path, value), value)

    def exists(self, path: Path) -> bool:
        return self._retry("stat", path, lambda: self.io.exists(path))

    def listdir(self, path: Path) -> list[str]:
        return self._retry("list", path, lambda: self.io.listdir(path))


class SysfsWorker:
    """The process's single serialized executor for sysfs and procfs access."""

    def __init__(
        self, io: SysfsIO, *, ebusy_budget_s: float = 5.0, timeout_s: float = 30.0
    ) -> None:
        self.session = Session(io, ebusy_budget_s)
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="damond-sysfs")

    async def call(self, job: Callable[[Session], T], timeout_s: float | None = None) -> T:
        """Run ``job`` on the worker; raise BackendError if it takes longer than the timeout.

        A job that times out keeps the worker until the kernel returns (a thread
        cannot be interrupted), so later jobs queue behind it rather than race it.
        """
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, job, self.session)
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            # not asyncio.wait_for: on Python 3.11 it returns the result of a job that
            # finishes as a cancellation arrives and drops the cancellation
            async with asyncio.timeout(limit):
                return await future
        except TimeoutError:
            raise BackendError(f"sysfs operation timed out after {limit:.1f} s") from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
