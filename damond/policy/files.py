"""Durable small files in the state directory: atomic replacement, and the temp
files an interrupted replacement leaves behind."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import structlog

log = structlog.get_logger("damond.policy")


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file whole."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_temp_files(path: Path) -> None:
    """Delete the temp files :func:`write_atomic` left for ``path`` when the process was
    killed mid-write (only this process writes them, and it has not started writing)."""
    try:
        leftovers = sorted(path.parent.glob(f".{path.name}.*.tmp"))
    except OSError:
        return
    for leftover in leftovers:
        try:
            leftover.unlink()
        except OSError as exc:
            log.warning("could not remove a leftover temp file", path=str(leftover), error=str(exc))
        else:
            log.info("removed a temp file left by an interrupted write", path=str(leftover))


def move_aside(path: Path, reason: str, what: str) -> None:
    """Rename an unusable ``path`` to ``<name>.corrupt-<time>`` and log why."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    try:
        os.replace(path, aside)
    except OSError as move_exc:
        log.error(
            f"{what} unusable and could not be moved aside",
            path=str(path),
            reason=reason,
            move_error=str(move_exc),
        )
    else:
        log.error(
            f"{what} unusable; moved aside", path=str(path), moved_to=str(aside), reason=reason
        )
