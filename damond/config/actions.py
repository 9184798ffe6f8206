"""The scheme's actions and which way each moves a goal's metric.

Migration (``migrate_hot``, ``migrate_cold``) moves pages to ``target_nid`` and keeps
them on their LRU list; ``lru_prio`` marks pages accessed (activates them) and
``lru_deprio`` deactivates them, on their node: only these move ``active_mem_bp`` and
``inactive_mem_bp``, and they take no ``target_nid``.
"""

from __future__ import annotations

from typing import Literal

from pydantic_core import PydanticCustomError

from damond.model import damon as model

ActionName = Literal["migrate_hot", "migrate_cold", "lru_prio", "lru_deprio"]

M = model.GoalMetric
_LRU_METRICS = (M.ACTIVE_MEM_BP, M.INACTIVE_MEM_BP)
_FREE_METRICS = (M.NODE_MEM_FREE_BP, M.NODE_MEMCG_FREE_BP)


def target_nid_error(action: str, target_nid: int | None) -> PydanticCustomError | None:
    """Why ``target_nid`` does not suit ``action`` (None when it does)."""
    if model.Action(action).moves_lru:
        if target_nid is None:
            return None
        reason = "{action} moves pages between LRU lists on their node; remove target_nid"
    else:
        if target_nid is not None:
            return None
        reason = "required by {action}: the node it moves pages to"
    return PydanticCustomError("scheme_field", "target_nid: " + reason, {"action": action})


def direction(
    action: str, node: int, target_nid: int | None, metric_name: str, nid: int
) -> model.Direction | None:
    """How a scheme moves its goal's metric, None if it cannot: ``lru_prio`` raises
    ``active_mem_bp`` and lowers ``inactive_mem_bp`` (``lru_deprio`` the reverse), and
    nothing else moves them; pages moved into the goal's node raise its share and used
    memory and lower its free memory; a move to a lower node id (taken as the faster
    tier) lowers stall."""
    metric = M(metric_name)
    lru = model.Action(action).moves_lru
    into: bool | None
    if lru or target_nid is None or metric in _LRU_METRICS:
        if not lru or metric not in _LRU_METRICS:
            return None
        into = (action == "lru_prio") == (metric is M.ACTIVE_MEM_BP)
    elif metric is M.SOME_MEM_PSI_US:
        into = target_nid > node if target_nid != node else None  # a demotion raises stall
    else:
        into = {target_nid: True, node: False}.get(nid)
    if into is None:
        return None
    if metric in _FREE_METRICS:
        into = not into
    return model.Direction.RAISES if into else model.Direction.LOWERS
