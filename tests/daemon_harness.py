"""Runs ``python -m damond run`` as systemd would: with a notification socket
the test listens on, and its JSON log lines collected as they come."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import DAMOND, damond_env

TWO_CONTEXTS = """
[[contexts]]
name = "node0"
node = 0
scheme = {{ target_nid = 1 }}
goal = {{ nid = 0, target_bp = {node0_target} }}

[[contexts]]
name = "node1"
node = 1
scheme = {{ target_nid = 0 }}
goal = {{ nid = 1, target_bp = {node1_target} }}
"""


def two_contexts(node0_target: int = 6000, node1_target: int = 4000) -> str:
    """The seed's two contexts as TOML, with the targets given."""
    return TWO_CONTEXTS.format(node0_target=node0_target, node1_target=node1_target)


@dataclass(frozen=True)
class Message:
    """One sd_notify datagram, seconds after the daemon was started."""

    t: float
    fields: dict[str, str]


@dataclass(frozen=True)
class LogLine:
    t: float
    record: dict[str, Any]


def parse_message(data: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in data.decode().splitlines():
        key, _, value = line.partition("=")
        fields[key] = value
    return fields


class Daemon:
    """A ``damond run`` subprocess and everything it has sent and logged so far."""

    def __init__(
        self,
        config: Path,
        notify_socket: str,
        watchdog_usec: int | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        env = {
            k: v
            for k, v in damond_env(DAMOND_STATE_DIR=str(config.parent / "state")).items()
            if not k.startswith(("NOTIFY_SOCKET", "WATCHDOG_"))
        }
        env.update(NOTIFY_SOCKET=notify_socket, **(extra_env or {}))
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.messages: list[Message] = []
        self.logs: list[LogLine] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        address = "\0" + notify_socket[1:] if notify_socket.startswith("@") else notify_socket
        self._sock.bind(address)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [DAMOND, "run", "-c", str(config)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._threads = [
            threading.Thread(target=self._read_socket, daemon=True),
            threading.Thread(target=self._read_logs, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _now(self) -> float:
        return time.monotonic() - self.started

    def _read_socket(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append(Message(self._now(), parse_message(data)))

    def _drain_socket(self) -> None:
        self._sock.setblocking(False)
        while True:
            try:
                data = self._sock.recv(4096)
            except BlockingIOError:
                return
            self.messages.append(Message(self._now(), parse_message(data)))

    def _read_logs(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = {"event": "unparsed output", "text": line.rstrip()}
            with self._lock:
                self.logs.append(LogLine(self._now(), record))

    def messages_with(self, key: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if key in m.fields]

    def events(self, event: str) -> list[LogLine]:
        with self._lock:
            return [line for line in self.logs if line.record.get("event") == event]

    def wait_until(self, what: str, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None and not condition():
                raise AssertionError(f"damond exited ({self.proc.returncode}) before {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; log: {self.log_text()}")
            time.sleep(0.02)

    def wait_message(self, key: str, count: int = 1, timeout: float = 10.0) -> Message:
        self.wait_until(
            f"{count} {key} message(s)", lambda: len(self.messages_with(key)) >= count, timeout
        )
        return self.messages_with(key)[count - 1]

    def wait_event(self, event: str, count: int = 1, timeout: float = 10.0) -> LogLine:
        self.wait_until(f"log event {event!r}", lambda: len(self.events(event)) >= count, timeout)
        return self.events(event)[count - 1]

    def log_text(self) -> str:
        with self._lock:
            return "\n".join(json.dumps(line.record) for line in self.logs[-40:])

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit code (the process is killed if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"damond did not exit within {timeout} s of SIGTERM") from None
        finally:
            for thread in self._threads[1:]:
                thread.join(timeout=2)
            self._stop.set()
            self._threads[0].join(timeout=2)
            self._drain_socket()
            self._sock.close()
        return code
