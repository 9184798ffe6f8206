"""The fake kernel itself behaves like the kernel where damond depends on it."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tests.fakedamon import make_machine


def test_nr_writes_recreate_children_and_parse_octal(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path, "7.2")
    k.write(m.admin / "kdamonds/nr_kdamonds", "1")
    ctx = m.admin / "kdamonds/0/contexts"
    k.write(ctx / "nr_contexts", "1")
    k.write(ctx / "0/schemes/nr_schemes", "1")
    k.write(ctx / "0/schemes/0/quotas/bytes", "010")
    assert k.read(ctx / "0/schemes/0/quotas/bytes") == "8"
    k.write(ctx / "0/schemes/nr_schemes", "1")
    assert k.read(ctx / "0/schemes/0/quotas/bytes") == "0"


@pytest.mark.parametrize(
    ("rel", "value"),
    [("action", "migrate_warm"), ("quotas/goals/nr_goals", "-1"), ("core_filters/nr_filters", "x")],
)
def test_bad_values_are_einval(tmp_path: Path, rel: str, value: str) -> None:
    m, k = make_machine(tmp_path, "7.2")
    k.write(m.admin / "kdamonds/nr_kdamonds", "1")
    ctx = m.admin / "kdamonds/0/contexts"
    k.write(ctx / "nr_contexts", "1")
    k.write(ctx / "0/schemes/nr_schemes", "1")
    with pytest.raises(OSError) as info:
        k.write(ctx / "0/schemes/0" / rel, value)
    assert info.value.errno == errno.EINVAL


def test_node_eligible_metric_only_on_7_2(tmp_path: Path) -> None:
    for version, accepted in (("6.18", False), ("7.2", True)):
        m, k = make_machine(tmp_path / version, version)
        k.write(m.admin / "kdamonds/nr_kdamonds", "1")
        ctx = m.admin / "kdamonds/0/contexts"
        k.write(ctx / "nr_contexts", "1")
        k.write(ctx / "0/schemes/nr_schemes", "1")
        k.write(ctx / "0/schemes/0/quotas/goals/nr_goals", "1")
        goal = ctx / "0/schemes/0/quotas/goals/0/target_metric"
        if accepted:
            k.write(goal, "node_eligible_mem_bp")
        else:
            with pytest.raises(OSError):
                k.write(goal, "node_eligible_mem_bp")


def test_nr_kdamonds_is_ebusy_while_one_runs(tmp_path: Path) -> None:
    m, k = make_machine(tmp_path, "6.18")
    k.start_foreign()
    with pytest.raises(OSError) as info:
        k.write(m.admin / "kdamonds/nr_kdamonds", "2")
    assert info.value.errno == errno.EBUSY
