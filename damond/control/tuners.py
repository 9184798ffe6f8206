"""The kernel's quota tuners (``quotas/goal_tuner``), as the kernel defines them.

The simulator uses them so that ``kernel`` and ``native`` modes behave as they
would on a real kernel, including their known weaknesses.
"""

from __future__ import annotations

from damond.model.damon import GoalTuner

GOAL_SCORE = 10_000
MIN_INPUT = 10_000  # esz_bp of 1 byte
ULONG_MAX = 2**64 - 1


def goal_score(current_value: int, target_value: int) -> int:
    """``current * 10000 / target``; the kernel skips goals with a target of 0."""
    if target_value <= 0:
        return GOAL_SCORE
    return current_value * GOAL_SCORE // target_value


def consist_next(last_esz_bp: int, score: int) -> int:
    """``damon_feed_loop_next_input``: a multiplicative feedback loop.

    Grows by the fraction of the shortfall (at most doubling), shrinks in
    proportion when over-achieving, and collapses to 1 byte at twice the goal.
    """
    last = max(last_esz_bp, MIN_INPUT)
    if score == GOAL_SCORE:
        return last
    if score >= 2 * GOAL_SCORE:
        return MIN_INPUT
    over = score > GOAL_SCORE
    diff = score - GOAL_SCORE if over else GOAL_SCORE - score
    compensation = last * diff // GOAL_SCORE
    if over:
        return max(last - compensation, MIN_INPUT)
    return min(last + compensation, ULONG_MAX)


def temporal_next(score: int, quota_bytes: int) -> int:
    """Bang-bang: the full size quota while below the goal, nothing once met.

    Returns esz in bytes; a ``bytes`` of 0 means unlimited (``ULONG_MAX``).
    """
    if score >= GOAL_SCORE:
        return 0
    return quota_bytes if quota_bytes > 0 else ULONG_MAX


def next_effective_quota(
    tuner: GoalTuner, last_esz_bp: int, score: int, quota_bytes: int
) -> tuple[int, int]:
    """One tuner evaluation: returns (esz_bp to remember, effective bytes).

    The size quota ``bytes``, when set, caps what either tuner gives.
    """
    if tuner is GoalTuner.TEMPORAL:
        esz = temporal_next(score, quota_bytes)
        return min(esz, ULONG_MAX // GOAL_SCORE) * GOAL_SCORE, esz
    esz_bp = consist_next(last_esz_bp, score)
    esz = esz_bp // GOAL_SCORE
    if quota_bytes > 0:
        esz = min(esz, quota_bytes)
    return esz_bp, esz
