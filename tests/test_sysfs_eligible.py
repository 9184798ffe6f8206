"""The smoothing windows of per-node eligible bytes."""

from __future__ import annotations

from damond.backend.sysfs.eligible import CounterWindow, ValueWindow


def test_counter_window_averages_per_snapshot_over_the_window() -> None:
    w = CounterWindow(window_s=3.0)
    assert w.add(0.0, 0, 0) is None
    assert w.add(1.0, 100, 10) == 10
    assert w.add(2.0, 300, 20) == 15
    assert w.add(2.5, 300, 20) == 15  # no new snapshot: the same window
    # at t = 4 the base moves to the sample of t = 1
    assert w.add(4.0, 700, 30) == (700 - 100) // 20


def test_counter_window_without_snapshots_has_no_value() -> None:
    w = CounterWindow(window_s=1.0)
    w.add(0.0, 50, 5)
    assert w.add(0.5, 50, 5) is None


def test_value_window_is_the_mean_of_recent_readings() -> None:
    w = ValueWindow(window_s=2.0)
    assert w.add(0.0, 100) == 100
    assert w.add(1.0, 300) == 200
    assert w.add(3.5, 500) == 500  # both older readings fell out
