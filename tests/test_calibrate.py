"""benchmarks/calibrate.py: the figures it compares, and its table on the simulator's side
(quick), so the script cannot rot; the guest's side boots a kernel (marked vm)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import calibrate  # noqa: E402
import calibration_figures as figs  # noqa: E402

from tests import vmguest  # noqa: E402

MiB = 1 << 20


def table_rows(out: str) -> list[list[str]]:
    """The cells of the table's figure rows."""
    lines = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[1:]]


def test_figures_of_a_known_run() -> None:
    # one reading a second: 2000 bp rising 500 bp a second to 6400 for 3 readings, back
    # to 6000 +- 50 and held; 8 MiB moved per second from 2.6 s to 8 s and beyond
    metric = [(float(t), min(2000 + 500 * t, 6400)) for t in range(12)]
    metric += [(float(t), 6000 + (50 if t % 2 else -50)) for t in range(12, 100)]
    moved = [(t / 10, max(0, min(t - 25, 80)) * MiB * 8 // 10) for t in range(1000)]
    got = figs.figures(figs.Run(metric, moved), 6000)
    assert got["time to first move"] == pytest.approx(2.6)
    assert got["time to settle (within 2 %)"] == 8.0  # the first reading within 200 bp
    assert got["overshoot (3-reading median)"] == 400
    assert got["noise (sigma, last minute)"] == pytest.approx(50, abs=1)
    # from the first move to the first reading within 200 bp of the target (8 s)
    assert got["bytes moved per quota window"] == pytest.approx(8, rel=0.1)


def test_one_reading_out_is_noise_not_overshoot() -> None:
    metric = [(float(t), 2000 + 500 * t) for t in range(9)]  # reaches 6000 at 8 s
    metric += [(float(t), 6000 + (900 if t == 80 else 0)) for t in range(9, 100)]
    got = figs.figures(figs.Run(metric, [(0.0, 0)]), 6000)
    assert got["overshoot (3-reading median)"] == 0
    # one reading of the 61 in the last minute (39-99 s) is 900 bp out
    assert got["noise (sigma, last minute)"] == pytest.approx(900 * 60**0.5 / 61)
    assert got["time to first move"] is None
    assert got["bytes moved per quota window"] is None


def test_agreement_is_within_a_quarter_or_the_resolution() -> None:
    row = figs.Row("x", "s", 1.0)
    assert figs.agree(row, 20.0, 24.9)
    assert not figs.agree(row, 20.0, 25.1)
    assert figs.agree(row, 2.0, 2.9)  # within the 1 s resolution
    assert figs.agree(row, None, None)
    assert not figs.agree(row, None, 3.0)


def test_sim_side_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert calibrate.main(["--no-guest", "--run-s", "90", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("guest speed (of the README's guest runs)") == 3
    assert "the medians of 2 seeds per guest run" in out
    assert "damond vs damo: not run (it needs the guest" in out
    rows = table_rows(out)
    assert [r[0].rsplit(" (", 1)[0] for r in rows] == [r.name for r in figs.ROWS]
    for cells in rows:
        assert cells[1] == "not run"
        assert cells[2] == "never" or float(cells[2]) >= 0


def test_guest_result_is_compared(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A stored guest result (as the guest writes it) gives the full table."""
    iterations = [{"t": t + 4.0, "metric_bp": min(2500 + 250 * t, 6100)} for t in range(100)]
    data = {
        "kernel": "7.2.13+deb14-amd64",
        "iterations": iterations,
        "moves_pages": [(t / 5, max(0, t - 24) * 410) for t in range(500)],
        "kdamond_sleeps": [(0.0, 0), (100.0, 20000)],
        "touch": {
            "hot0": {"period_s": 0.026, "stalled_share": 0.01},
            "hot1": {"period_s": 0.036, "stalled_share": 0.3},
        },
    }
    path = tmp_path / "guest.json"
    path.write_text(json.dumps(data))
    assert (
        calibrate.main(["--guest-json", str(path), "--no-peer", "--run-s", "90", "--seeds", "1"])
        == 0
    )
    out = capsys.readouterr().out
    assert "measured in 1 guest run(s)): kdamond sampling interval 5.0 ms" in out
    assert "damond iteration 1.00 s" in out
    assert "hot0 1%, hot1 30%" in out
    assert "WARNING: over 10% starved" in out
    rows = table_rows(out)
    assert len(rows) == len(figs.ROWS)
    for cells in rows:
        assert cells[4] in ("yes", "NO")
    assert rows[0][1] == "1.0"  # the first move at 5 s, damond measured first at 4 s


@pytest.mark.vm
def test_guest_side_runs() -> None:
    why = vmguest.missing_requirements(calibrate.SUITE)
    if why:
        pytest.skip(f"VM TEST NOT RUN: {why}")
    data = calibrate.run_guest(45)
    assert "error" not in data, data["error"]
    got = figs.figures(calibrate.guest_run(data), 6000)
    assert got["time to first move"] is not None
    assert calibrate.guest_speed(data)["sample_s"] >= 0.004


def test_peer_table_from_a_stored_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """benchmarks/peer.py's damond-vs-damo table follows the calibration table."""
    path = tmp_path / "peer.json"
    path.write_text(json.dumps({"damond": {"error": "no kdamond"}, "kernel": {}}))
    assert (
        calibrate.main(["--no-guest", "--peer-json", str(path), "--seeds", "1", "--run-s", "60"])
        == 0
    )
    out = capsys.readouterr().out
    peer = out[out.index("damond against the kernel's own quota-goal tuning") :]
    assert "| controller |" in peer
    assert "no kdamond" in peer


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--seeds", "0"], "--seeds: must be at least 1, got 0"), (["--run-s", "10"], "--run-s:")],
)
def test_bad_flags_are_named(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        calibrate.main(["--no-guest", *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_simulator_agrees_with_the_readme_guest_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's table: on the three stored 7.2 guest runs, bytes per window, noise and
    time to settle agree, the first move and overshoot do not (the README says why); a
    change to the simulator that moves a verdict is a change in calibration."""
    stored = str(calibrate.README_GUEST)
    assert calibrate.main(["--guest-json", stored, "--no-peer"]) == 0
    rows = table_rows(capsys.readouterr().out)
    verdicts = {cells[0].rsplit(" (", 1)[0]: cells[4] for cells in rows}
    assert verdicts == {
        "time to first move": "NO",
        "bytes moved per quota window": "yes",
        "noise (sigma, last minute)": "yes",
        "time to settle (within 2 %)": "yes",
        "overshoot (3-reading median)": "NO",
    }


def test_several_guest_runs_give_medians(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A list of guest runs: each figure is the median over the runs (and the simulator
    runs at each one's speed)."""
    runs = json.loads(calibrate.README_GUEST.read_text())
    runs = runs if isinstance(runs, list) else [runs]
    path = tmp_path / "guests.json"
    path.write_text(json.dumps([runs[0], {"error": "the kdamond did not turn on"}, runs[0]]))
    assert calibrate.main(["--guest-json", str(path), "--no-peer", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "the guest run failed: the kdamond did not turn on" in out
    assert "measured in 2 guest run(s)" in out
    one = figs.figures(calibrate.guest_run(runs[0]), 6000)
    first = table_rows(out)[0]
    assert float(first[1]) == pytest.approx(one["time to first move"], abs=0.05)
