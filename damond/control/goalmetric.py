"""The node-share metrics, as pure functions in integer basis points.

Both are defined for every input: an empty node, a node of zero capacity or no
eligible memory anywhere gives 0 (as the kernel returns for
``node_eligible_mem_bp``), never a division error.
"""

from __future__ import annotations

from collections.abc import Mapping

from damond.model.units import BP_SCALE

_OF_CAPACITY = ("node_target_mem_bp", "node_mem_used_bp", "node_memcg_used_bp")


def _ratio_bp(numerator: int, denominator: int) -> int:
    if denominator <= 0 or numerator <= 0:
        return 0
    return min(BP_SCALE, numerator * BP_SCALE // denominator)


def node_target_mem_bp(eligible_on_node: int, node_capacity: int) -> int:
    """The seed RFC's metric: scheme-eligible bytes on the node / node capacity."""
    return _ratio_bp(eligible_on_node, node_capacity)


def node_eligible_mem_bp(eligible_by_node: Mapping[int, int], nid: int) -> int:
    """Linux 7.2's metric: eligible bytes on ``nid`` / eligible bytes on all nodes."""
    total = sum(max(0, v) for v in eligible_by_node.values())
    return _ratio_bp(eligible_by_node.get(nid, 0), total)


def goal_value_bp(
    metric: str,
    nid: int,
    eligible_by_node: Mapping[int, int],
    capacity_by_node: Mapping[int, int],
) -> int:
    """The value of goal ``metric`` for node ``nid``. The used metrics of the machine's
    memory are a share of the node's total, like ``node_target_mem_bp``, given the bytes
    they count per node and the nodes' totals."""
    if metric in _OF_CAPACITY:
        return node_target_mem_bp(eligible_by_node.get(nid, 0), capacity_by_node.get(nid, 0))
    if metric == "node_eligible_mem_bp":
        return node_eligible_mem_bp(eligible_by_node, nid)
    raise ValueError(f"unknown goal metric {metric!r}")


def bytes_per_bp(
    metric: str,
    nid: int,
    eligible_by_node: Mapping[int, int],
    capacity_by_node: Mapping[int, int],
) -> float:
    """How many bytes moved into or out of ``nid`` change the metric by 1 bp.

    Migration keeps the total of eligible bytes, so for the share metric the
    denominator stays put while pages move.
    """
    if metric in _OF_CAPACITY:
        return capacity_by_node.get(nid, 0) / BP_SCALE
    return sum(max(0, v) for v in eligible_by_node.values()) / BP_SCALE
