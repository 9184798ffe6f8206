"""The sd_notify protocol: newline-separated ``KEY=VALUE`` lines in one datagram.

systemd passes the socket in ``$NOTIFY_SOCKET``: a file-system path, or a name
in the abstract namespace written with a leading ``@``. Without the variable
(not started by systemd) every message is dropped, so callers need not care.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger("damond.runtime.sdnotify")


def socket_address(value: str) -> str | bytes:
    """The ``AF_UNIX`` address named by ``$NOTIFY_SOCKET``.

    ``@name`` is ``name`` in the abstract namespace (a leading NUL byte);
    anything else must be an absolute path.
    """
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    raise ValueError(f"NOTIFY_SOCKET: not an absolute path or @abstract name, got {value!r}")


def format_message(fields: Mapping[str, str | int]) -> bytes:
    """``{"READY": 1, "STATUS": "ok"}`` -> ``b"READY=1\\nSTATUS=ok\\n"``.

    A value is one line: embedded newlines would start a new assignment.
    """
    lines = []
    for key, value in fields.items():
        text = " ".join(str(value).splitlines())
        lines.append(f"{key}={text}\n")
    return "".join(lines).encode()


def watchdog_period_s(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between two ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC``.

    None when systemd runs no watchdog for this process (unset, zero or
    meant for another PID via ``$WATCHDOG_PID``).
    """
    env = os.environ if environ is None else environ
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


class Notifier:
    """Sends sd_notify messages; a no-op when there is no socket to send to."""

    def __init__(self, address: str | None) -> None:
        self._address = socket_address(address) if address else None
        self._sock: socket.socket | None = None
        self._failed = False
        if self._address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        try:
            return cls(env.get("NOTIFY_SOCKET") or None)
        except ValueError as exc:
            log.warning("sd_notify disabled", reason=str(exc))
            return cls(None)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: str | int) -> bool:
        """Send one message; False (logged once) when it could not be delivered."""
        if self._sock is None or self._address is None:
            return False
        try:
            self._sock.sendto(format_message(fields), self._address)
        except OSError as exc:
            if not self._failed:
                log.warning("sd_notify message not delivered", error=str(exc), fields=list(fields))
            self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send(READY=1, **({"STATUS": status} if status else {}))

    def reloading(self) -> bool:
        """``RELOADING=1`` with the timestamp newer systemd versions require."""
        return self.send(
            RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        )

    def stopping(self) -> bool:
        return self.send(STOPPING=1)

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
