"""SIGHUP while ``damond run`` is still starting (``systemctl reload`` right after
``start``): the daemon stays up and reloads once it can."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONFIG = """\
backend = "simulated"
interval_s = 0.2
state_dir = "{state}"
log_level = "info"
[metrics]
enabled = false
[mqtt]
enabled = false
"""


def write_when_read(
    fifo: Path, text: str, proc: subprocess.Popen[bytes], hang_up: bool = False
) -> None:
    """Write ``text`` into ``fifo`` once the daemon opens it to read (``hang_up``: send
    SIGHUP while it waits for the text); fail if it exits."""
    deadline = time.monotonic() + 30
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: nobody reads yet
                raise
        assert proc.poll() is None, f"damond exited with {proc.returncode} while starting"
        assert time.monotonic() < deadline, "damond never read its configuration"
        time.sleep(0.005)
    os.set_blocking(fd, True)
    try:
        if hang_up:
            os.kill(proc.pid, signal.SIGHUP)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def wait_for_event(log: Path, name: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not any(e.get("event") == name for e in events(log)):
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.05)


def test_a_sighup_while_reading_the_configuration_becomes_a_reload(tmp_path: Path) -> None:
    fifo = tmp_path / "damond.toml"
    os.mkfifo(fifo)
    text = CONFIG.format(state=tmp_path / "state")
    log = tmp_path / "damond.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAMOND_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "damond", "run", "-c", str(fifo)],
            stdout=out,
            stderr=out,
            env=env,
        )
    try:
        write_when_read(fifo, text, proc, hang_up=True)
        wait_for_event(log, "starting", proc)  # done with the file
        write_when_read(fifo, text, proc)  # the reload reads it again
        wait_for_event(log, "configuration reloaded", proc)
        assert proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
    assert code == 0, log.read_text()[-2000:]
