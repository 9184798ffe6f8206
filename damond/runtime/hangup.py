"""A SIGHUP that arrives before the daemon's event loop handles it is remembered, not fatal.

SIGHUP's default action ends the process, and ``systemctl reload`` may send it
while damond is still importing, reading its configuration or opening its backend.
The command's entry point (``damond.__main__``) catches it first thing, before the
heavy imports; the daemon turns a remembered one into a reload once its own
handler is in place.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_requested = threading.Event()


def _remember(signum: int, frame: FrameType | None) -> None:
    _requested.set()


def catch_hangup() -> None:
    """Remember SIGHUP instead of dying of it (main thread only)."""
    signal.signal(signal.SIGHUP, _remember)


def take_hangup() -> bool:
    """Whether a SIGHUP was remembered since the last call."""
    requested = _requested.is_set()
    _requested.clear()
    return requested
