"""The coordinator: one plan over every context of a daemon (or of a simulation).

Each context loop reports its measurement (a :class:`~damond.control.plan.Member`)
once per tick and gets its part of the plan back. The plan is recomputed from
every context's latest report (:func:`~damond.control.plan.plan`), so contexts
that share a goal see one value, one gap and one sum of bytes in flight (with
the quota each of the others was given at its last report, which no measurement
shows yet), and contexts that would trade pages are held together.

Decisions are explained in one log line each, once per episode: a conflict is
told when it starts and again only after it has been gone for
:data:`EPISODE_QUIET_S` (a conflict that comes and goes at a goal's edge is one
episode, not a warning a minute).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

import structlog

from damond.control.plan import (
    HELD_CONFLICT,
    HELD_INFEASIBLE,
    Member,
    Plan,
    Share,
    plan,
)
from damond.control.tiers import Tiers

EPISODE_QUIET_S = 300.0
"""A hold not seen for this long is over; seen again later, it is a new episode."""


@dataclass
class _Episode:
    kind: str
    names: set[str]
    last_seen_s: float


class Coordinator:
    """Shared by all context loops; pure (no I/O), it only logs."""

    def __init__(self, interval_s: float, tiers: Tiers | None = None) -> None:
        self.interval_s = interval_s
        self.stale_after_s = 3 * interval_s
        """A context silent for longer (a failing loop) is left out of the plan."""
        self.tiers = tiers or Tiers()
        self._members: dict[str, Member] = {}
        self._granted: dict[str, int] = {}
        """The quota each context was given at its last report: bytes it may be moving
        now that the others cannot see yet (they count them as in flight)."""
        self._episodes: list[_Episode] = []
        self._told_sharing: set[frozenset[str]] = set()
        self._log = structlog.get_logger("damond.control.coordinator")

    def forget(self, name: str) -> None:
        """Leave a stopped context out of the plan from now on."""
        self._members.pop(name, None)
        self._granted.pop(name, None)

    def granted(self, name: str, quota_bytes: int) -> None:
        """Record the quota ``name`` was given for the coming interval: until its next
        report, the contexts that share its goal count it as on its way from its source
        (where the goal's reading still sees it) to its destination."""
        self._granted[name] = quota_bytes

    def decide(self, member: Member) -> Share:
        """Record ``member``'s report and return its part of the plan."""
        self._members[member.name] = member
        self._granted.pop(member.name, None)  # what it moved is in its own report now
        now = member.time_s
        fresh = [
            replace(m, pending_bytes=self._granted.get(m.name, 0))
            for m in self._members.values()
            if now - m.time_s <= self.stale_after_s
        ]
        result = plan(fresh)
        self._explain(result, {m.name: m for m in fresh}, now)
        return result.shares[member.name]

    def _explain(self, result: Plan, members: Mapping[str, Member], now: float) -> None:
        holds = ((HELD_CONFLICT, result.conflicts), (HELD_INFEASIBLE, result.infeasible))
        for kind, groups in holds:
            for group in groups:
                if self._continues(kind, group, now):
                    continue
                parts = "; ".join(self._side(members[n], result.shares[n]) for n in sorted(group))
                if kind == HELD_CONFLICT:
                    event = (
                        "context goals cannot be met together: they would move the same "
                        f"pages back and forth; holding them still (held: {kind}): {parts}"
                    )
                else:
                    event = (
                        "context goals cannot be met together: no value of their shared goal "
                        f"meets all their targets; holding them still (held: {kind}): {parts}"
                    )
                self._log.warning(event, contexts=sorted(group), reason=kind)
        for episode in list(self._episodes):
            if now - episode.last_seen_s > EPISODE_QUIET_S:
                self._episodes.remove(episode)
                self._log.info(
                    "context goals no longer conflict",
                    contexts=sorted(episode.names),
                    reason=episode.kind,
                )
        for share in result.shares.values():
            sharers = frozenset(share.sharers)
            if sharers and sharers not in self._told_sharing and share.demand_bytes > 0:
                self._told_sharing.add(sharers)
                self._tell_sharing(sorted(sharers), result.shares, members)

    def _continues(self, kind: str, group: Collection[str], now: float) -> bool:
        """Whether ``group`` belongs to an open episode (which it then extends)."""
        for episode in self._episodes:
            if episode.kind == kind and episode.names & set(group):
                episode.names |= set(group)
                episode.last_seen_s = now
                return True
        self._episodes.append(_Episode(kind, set(group), now))
        return False

    def _side(self, m: Member, share: Share) -> str:
        verb = "raise" if m.raises else "lower"
        unit = "us" if m.goal.metric == "some_mem_psi_us" else "bp"
        return (
            f"{m.name} would {verb} {m.goal.metric}{self._of(m)} to "
            f"{m.target_bp} {unit} (now {share.value_bp} {unit}) by moving {share.gap_bytes} bytes "
            f"of {m.moved_class.describe()}, "
            f"{self.tiers.route(m.source, m.dest)}"
        )

    def _of(self, m: Member) -> str:
        """`` of node 0 (tier 0)`` (and its cgroup), or nothing for a goal of no node."""
        cgroup = f" for cgroup {m.goal.path}" if m.goal.path else ""
        return f" of {self.tiers.node(m.goal.nid)}{cgroup}" if m.goal.nid >= 0 else ""

    def _tell_sharing(
        self, names: list[str], shares: Mapping[str, Share], members: Mapping[str, Member]
    ) -> None:
        first = members[names[0]]
        routes = {n: self.tiers.route(members[n].source, members[n].dest) for n in names}
        parts = ", ".join(f"{n} {shares[n].demand_bytes} bytes ({routes[n]})" for n in names)
        self._log.info(
            f"contexts share the goal {first.goal.metric}{self._of(first)}: "
            f"one view of it, one gap of {shares[names[0]].gap_bytes} bytes split by the memory "
            f"each can move: {parts}",
            contexts=names,
        )
