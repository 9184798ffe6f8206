"""``damond simulate`` as operators run it: the real script, odd durations and workloads,
scheduled events and the JSON file's contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

NO_HOT_MEMORY = """
[simulation]
sets = [ { name = "idle", bytes = 1073741824, access_rate = 0.0, placement = 0 } ]
shifts = []
"""

PATTERN_MATCHES_NOTHING = """
[[contexts]]
name = "never"
node = 0
scheme = { target_nid = 1, access_pattern = { nr_accesses_min = 30, nr_accesses_max = 40 } }
goal = { nid = 0, target_bp = 5000 }
"""

EVENTS = """
[simulation]
description = "two pushed target changes"
seed = 7
shifts = []
events = [
  { at_s = 300, context = "node0", target_bp = 5000 },
  { at_s = 300, context = "node1", target_bp = 4500 },
  { at_s = 600, context = "node0", target_bp = 6000 },
  { at_s = 600, context = "node1", target_bp = 4000 },
]
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "damond.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("duration", ["0", "2"])
def test_short_runs_print_a_summary(duration: str) -> None:
    """Problem 5: an IndexError when no iteration had measured anything yet."""
    result = run_cli("simulate", "--duration", duration)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"simulated {duration} s"
    assert lines[2].startswith("node0 ") and "never" in lines[2]


@pytest.mark.parametrize("duration", ["-5", "nan", "inf", "-inf", "1e9"])
def test_impossible_durations_exit_2_naming_the_flag(duration: str) -> None:
    """Problem 5: negative durations crashed, nan and inf gave tracebacks."""
    result = run_cli("simulate", f"--duration={duration}")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "damond: invalid configuration (1 error):",
        f"  --duration: must be a number of seconds from 0 to 864000, got {float(duration):g}",
    ]
    assert result.stdout == ""


@pytest.mark.parametrize("text", [NO_HOT_MEMORY, PATTERN_MATCHES_NOTHING])
def test_runs_where_nothing_is_eligible_report_a_value_of_0(tmp_path: Path, text: str) -> None:
    """Problem 5: nothing hot, or an access pattern that matches nothing, crashed."""
    out = tmp_path / "out.json"
    result = run_cli(
        "simulate", "-c", write(tmp_path, text), "--duration", "60", "--json", str(out)
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    for ctx in data["contexts"]:
        assert ctx["final_bp"] == 0
        assert ctx["time_to_goal_s"] is None
        assert ctx["migrated_bytes"] == 0
        assert ctx["series"]["value_bp"] == [0] * 61


def test_json_carries_the_run_and_follows_each_scheduled_target(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = run_cli(
        "simulate", "-c", write(tmp_path, EVENTS), "--duration", "900", "--json", str(out)
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["seed"] == 7
    assert data["description"] == "two pushed target changes"
    assert [p["t_s"] for p in data["phases"]] == [0, 300, 600, 900]
    wanted = {"node0": (6000, 5000, 6000), "node1": (4000, 4500, 4000)}
    for ctx in data["contexts"]:
        series = ctx["series"]
        assert set(series) == {"t_s", "value_bp", "target_bp", "quota_bytes"}
        assert series["t_s"] == [float(t) for t in range(901)]
        assert all(len(v) == 901 for v in series.values())
        before, during, after = wanted[ctx["name"]]
        targets = dict(zip(series["t_s"], series["target_bp"], strict=True))
        assert targets[299.0] == before and targets[300.0] == during
        assert targets[599.0] == during and targets[600.0] == after
        values = dict(zip(series["t_s"], series["value_bp"], strict=True))
        for end, target in ((299.0, before), (599.0, during), (900.0, after)):
            assert abs(values[end] - target) <= 100, (ctx["name"], end, values[end])
        assert ctx["target_bp"] == after
        assert ctx["held"] is False and ctx["held_s"] == 0
        assert isinstance(ctx["warnings"], list)


def test_long_series_are_thinned_evenly_to_5000_points(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = run_cli(
        "simulate", "--duration", "3000", "--interval", "0.5", "--json", str(out), timeout=120
    )
    assert result.returncode == 0, result.stderr
    series = json.loads(out.read_text())["contexts"][0]["series"]
    assert len(series["t_s"]) == 5000  # of 6001 iterations
    assert series["t_s"][0] == 0.0 and series["t_s"][-1] == 3000.0
    gaps = {b - a for a, b in zip(series["t_s"], series["t_s"][1:], strict=False)}
    assert gaps <= {0.5, 1.0}


def test_warnings_carry_simulated_times(tmp_path: Path) -> None:
    """The infeasible pair holds still and says why; the time is the simulated second it
    happened, not the wall clock."""
    text = """
[simulation]
sets = [
  { name = "hot", bytes = 36507222016, access_rate = 1.0, placement = 1 },
  { name = "idle", bytes = 4294967296, access_rate = 0.0, placement = 0 },
]
shifts = []
"""
    out = tmp_path / "out.json"
    result = run_cli(
        "simulate", "-c", write(tmp_path, text), "--duration", "600", "--json", str(out)
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["warnings"], "an infeasible goal pair says why it holds still"
    for warning in data["warnings"]:
        assert 0 <= warning["t_s"] <= 600
        assert warning["message"]
    assert any(ctx["held"] for ctx in data["contexts"])


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (
            '[ { at_s = 10, context = "nodeX", target_bp = 5000 } ]',
            "simulation.events[0].context: unknown context 'nodeX' (contexts: node0, node1)",
        ),
        (
            '[ { at_s = 10, set = "warmish", bytes = 0 } ]',
            "simulation.events[0].set: unknown set 'warmish' (sets: hot, warm, idle, cold)",
        ),
    ],
)
def test_events_naming_unknown_things_exit_2(tmp_path: Path, events: str, message: str) -> None:
    path = write(tmp_path, f"[simulation]\nevents = {events}\n")
    result = run_cli("simulate", "-c", path, "--duration", "10")
    assert result.returncode == 2
    assert f"  {message}" in result.stderr.splitlines()


def test_bad_event_values_exit_2_with_their_field_paths(tmp_path: Path) -> None:
    text = """
[simulation]
events = [ { at_s = 10, context = "node0", target_bp = 12000 } ]
phases = [ { at_s = 10, set = "hot", bytes = -1 } ]
"""
    result = run_cli("simulate", "-c", write(tmp_path, text), "--duration", "10")
    assert result.returncode == 2
    errors = result.stderr.splitlines()
    assert errors[0] == "damond: invalid configuration (2 errors):"
    assert any(
        e.startswith("  simulation.events[0].")
        and e.endswith("target_bp: must be between 0 and 10000, got 12000")
        for e in errors
    )
    assert "  simulation.phases[0].bytes: must be 0 or more, got -1" in errors


def test_an_event_after_the_end_is_skipped_with_a_warning(tmp_path: Path) -> None:
    text = '[simulation]\nevents = [ { at_s = 100, context = "node0", target_bp = 5000 } ]\n'
    out = tmp_path / "out.json"
    result = run_cli(
        "simulate", "-c", write(tmp_path, text), "--duration", "30", "--json", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "node0 target 5000 bp at 100 s is after the run's end (30 s): skipped" in result.stderr
    data = json.loads(out.read_text())
    assert set(data["contexts"][0]["series"]["target_bp"]) == {6000}
