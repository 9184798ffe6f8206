"""A progress line for long runs on a terminal: silent for the first seconds, then
rewritten in place a few times per second, and cleared at the end."""

from __future__ import annotations

import time
from typing import TextIO

SHOW_AFTER_S = 2.0
"""Runs quicker than this (wall-clock) never show the line."""

REFRESH_S = 0.25


class ProgressLine:
    def __init__(self, out: TextIO, show_after_s: float = SHOW_AFTER_S) -> None:
        self._out = out
        self._started = time.monotonic()
        self._show_after_s = show_after_s
        self._last = -float("inf")
        self.shown = False

    def __call__(self, done_s: float, total_s: float) -> None:
        now = time.monotonic()
        elapsed = now - self._started
        if elapsed < self._show_after_s or now - self._last < REFRESH_S:
            return
        self._last = now
        share = done_s / total_s if total_s > 0 else 1.0
        left = elapsed * (1 - share) / share if share > 0 else 0.0
        self._out.write(
            f"\rsimulating: {done_s:.0f}/{total_s:.0f} s ({share:.0%}), "
            f"{elapsed:.0f} s elapsed, about {left:.0f} s left "
        )
        self._out.flush()
        self.shown = True

    def close(self) -> None:
        """Clear the line, if it was shown, so the summary starts on a clean line."""
        if self.shown:
            self._out.write("\r\033[K")
            self._out.flush()
