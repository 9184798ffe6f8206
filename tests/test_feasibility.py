from __future__ import annotations

from structlog.testing import capture_logs

from damond.control.arbiter import Claim, GoalArbiter


def claim(name: str, src: int, dst: int, demand: int, t: float = 0.0) -> Claim:
    return Claim(
        name=name,
        source=src,
        dest=dst,
        goal_node=src,
        metric="node_target_mem_bp",
        metric_bp=7000,
        target_bp=6000,
        demand_bytes=demand,
        time_s=t,
    )


def test_opposed_contexts_that_both_want_to_act_are_held_with_one_warning() -> None:
    arbiter = GoalArbiter(stale_after_s=3)
    with capture_logs() as logs:
        assert arbiter.may_act(claim("a", 0, 1, 100, 0))
        assert not arbiter.may_act(claim("b", 1, 0, 200, 0))
        for t in range(1, 10):
            assert not arbiter.may_act(claim("a", 0, 1, 100, t))
            assert not arbiter.may_act(claim("b", 1, 0, 200, t))
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    text = warnings[0]["event"]
    assert "cannot be met together" in text
    assert "b wants node_target_mem_bp of node 1 at 6000 bp (now 7000 bp)" in text
    assert "would move 100 bytes from node 0 to node 1" in text
    assert warnings[0]["contexts"] == ["a", "b"]


def test_conflict_clears_when_one_side_is_satisfied() -> None:
    arbiter = GoalArbiter(stale_after_s=3)
    arbiter.may_act(claim("a", 0, 1, 100))
    assert not arbiter.may_act(claim("b", 1, 0, 100))
    assert arbiter.in_conflict("a")
    with capture_logs() as logs:
        assert arbiter.may_act(claim("a", 0, 1, 0, 1))
    assert not arbiter.in_conflict("b")
    assert [e["event"] for e in logs] == ["context goals no longer conflict"]
    assert arbiter.may_act(claim("b", 1, 0, 100, 1))


def test_contexts_on_unrelated_nodes_never_conflict() -> None:
    arbiter = GoalArbiter(stale_after_s=3)
    assert arbiter.may_act(claim("a", 0, 1, 100))
    assert arbiter.may_act(claim("b", 2, 3, 100))
    assert arbiter.may_act(claim("c", 0, 1, 100))


def test_stale_claims_do_not_block() -> None:
    arbiter = GoalArbiter(stale_after_s=3)
    arbiter.may_act(claim("a", 0, 1, 100, 0))
    assert arbiter.may_act(claim("b", 1, 0, 100, 10))
