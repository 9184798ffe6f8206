"""A config file that cannot even be parsed (invalid UTF-8, TOML nested past the
parser's recursion) is a rejected reload like any invalid file: the daemon keeps running."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.daemon_harness import Daemon, two_contexts


def test_sighup_with_an_unparsable_file_is_rejected_and_the_daemon_runs_on(
    tmp_path: Path,
) -> None:
    config = tmp_path / "damond.toml"
    config.write_text("interval_s = 0.2\n" + two_contexts())
    daemon = Daemon(config, str(tmp_path / "notify.sock"))
    try:
        daemon.wait_message("READY")
        unparsable = [
            (b"# caf\xe9\n", "not valid UTF-8 (byte 5: invalid continuation byte)"),
            (b"a = " + b"[" * 10_000 + b"]" * 10_000 + b"\n", "invalid TOML: nested too deeply"),
        ]
        for count, (content, reason) in enumerate(unparsable, start=1):
            config.write_bytes(content)
            daemon.signal(signal.SIGHUP)
            rejected = daemon.wait_event("reload rejected; the running configuration stays", count)
            assert rejected.record["errors"] == [f"config file {config}: {reason}"]
        iterations = len(daemon.events("iteration"))
        config.write_text('log_level = "debug"\ninterval_s = 0.2\n' + two_contexts())
        daemon.signal(signal.SIGHUP)
        daemon.wait_event("configuration reloaded")
        daemon.wait_until(
            "an iteration after the reloads", lambda: bool(daemon.events("iteration"))
        )
        assert iterations == 0  # debug lines appear only after the good reload
        assert daemon.stop() == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
