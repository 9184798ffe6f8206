"""structlog setup: JSON lines for journald and files, readable lines on a terminal."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import TextIO

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_threshold = logging.INFO
"""Events below this level are dropped; a reload may change it (loggers bound earlier too)."""


def set_log_level(level: str) -> None:
    global _threshold
    _threshold = _LEVELS[level]


def enabled(level: str) -> bool:
    """Whether events of ``level`` are logged now: a hot path asks before it builds one."""
    return _LEVELS[level] >= _threshold


def _drop_below_threshold(
    logger: object, method_name: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    if _LEVELS.get(str(event_dict.get("level")), logging.CRITICAL) < _threshold:
        raise structlog.DropEvent
    return event_dict


class _ResilientPrintLogger(structlog.PrintLogger):
    """A print logger that never lets a closed or broken output stop the daemon."""

    def msg(self, message: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().msg(message)

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg


class _ResilientLoggerFactory:
    def __init__(self, out: TextIO) -> None:
        self._out = out

    def __call__(self, *args: object) -> _ResilientPrintLogger:
        return _ResilientPrintLogger(self._out)


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    out = stream if stream is not None else sys.stdout
    set_log_level(level)
    processors: list[structlog.types.Processor] = [
        structlog.processors.add_log_level,
        _drop_below_threshold,
        structlog.contextvars.merge_contextvars,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if out.isatty():
        processors.append(structlog.dev.ConsoleRenderer())
    else:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    structlog.configure(
        processors=processors,
        # the level is filtered by _drop_below_threshold, so that a reload can change it
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=_ResilientLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
