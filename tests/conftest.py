"""Shared test helpers: the real ``damond`` console script as a subprocess."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

DAMOND = str(Path(sys.executable).parent / "damond")


def damond_env(**extra: str) -> dict[str, str]:
    """An environment for the daemon with no side services, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAMOND_")}
    env.update({"DAMOND_MQTT__ENABLED": "false", "DAMOND_METRICS__ENABLED": "false"})
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DAMOND, *args],
        capture_output=True,
        text=True,
        env=env if env is not None else damond_env(),
        timeout=timeout,
        check=False,
    )


class LogReader:
    """Collects a daemon's JSON log lines from a thread, so waits can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._done = False
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for raw in stream:
            entry: dict[str, Any] = json.loads(raw)
            self._queue.put(entry)
        self._queue.put(None)

    def _take(self, timeout: float) -> bool:
        try:
            entry = self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return False
        if entry is None:
            self._done = True
            return False
        self.lines.append(entry)
        return True

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if pred(line):
                    return line
            seen = len(self.lines)
            left = deadline - time.monotonic()
            if self._done or left <= 0 or not self._take(left):
                raise AssertionError(
                    f"no matching log line within {timeout} s; last lines: {self.lines[-5:]}"
                )

    def drain(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """All lines, once the daemon has closed its output."""
        deadline = time.monotonic() + timeout
        while not self._done and self._take(deadline - time.monotonic()):
            pass
        return self.lines


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Any]:
    """Start ``damond run`` with the given args and env; kill it if a test leaves it."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, **env: str) -> tuple[subprocess.Popen[str], LogReader]:
        proc = subprocess.Popen(
            [DAMOND, "run", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=damond_env(DAMOND_STATE_DIR=str(tmp_path / "state"), **env),
        )
        procs.append(proc)
        assert proc.stdout is not None
        return proc, LogReader(proc.stdout)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
