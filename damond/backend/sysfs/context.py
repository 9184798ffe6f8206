"""A context's kdamond: started fresh or re-adopted, armed, and stopped.

A kdamond damond left running (``on_exit = "leave"``) is re-adopted when it still
runs with the recorded pid: it gets only the files that differ, by one ``commit``,
and keeps its fed goal values. Any other kdamond is turned ``on`` from the whole
layout, read back first so that a value the kernel did not take is caught before
it runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from damond.backend.sysfs import paths, tree
from damond.backend.sysfs.eligible import CounterWindow, ValueWindow
from damond.backend.sysfs.features import Features
from damond.backend.sysfs.io import Session, SysfsWorker
from damond.backend.sysfs.kdamond import ADOPT_SKIP, Kdamond, log
from damond.backend.sysfs.ownership import Claim, Slot
from damond.backend.sysfs.topology import Topology
from damond.config import SysfsConfig
from damond.model import damon as model
from damond.model.errors import BackendError

ARM_MARGIN_S = 0.2


@dataclass
class RunningContext:
    ctx: model.Context
    kd: Kdamond
    layout: tree.Layout
    topo: Topology
    pid: int
    counters: dict[int, CounterWindow] = field(default_factory=dict)
    readings: dict[int, ValueWindow] = field(default_factory=dict)
    eligible: dict[int, int] = field(default_factory=dict)
    measure_from: float = 0.0
    """Monotonic time from which the kdamond's measurements count (after its warm-up)."""


def check_nodes(ctx: model.Context, topo: Topology) -> None:
    """A node without online memory cannot be monitored nor migrated to."""
    for node in (*ctx.nodes, ctx.schemes[tree.WORKING_SCHEME].target_nid):
        if node >= 0 and node not in topo.ranges:  # -1: an lru action, no destination
            raise BackendError(
                f"context {ctx.name}: node {node} has no online memory "
                f"(nodes with memory: {', '.join(map(str, topo.nodes))}); context stopped"
            )


def staged_layout(
    ctx: model.Context, topo: Topology, features: Features, cfg: SysfsConfig
) -> tree.Layout | None:
    """The layout to start with on kernels that apply no quota in a scheme's first
    reset interval (before 7.1, where an unset effective quota means "unlimited"):
    the working scheme starts as ``stat`` and gets its action by a commit once its
    first quota window is in place. None where the kernel needs no staging."""
    if features.goal_tuner:
        return None
    working = ctx.schemes[tree.WORKING_SCHEME]
    harmless = replace(working, action=model.Action.STAT)
    return tree.layout(replace(ctx, schemes=(harmless, *ctx.schemes[1:])), topo, features, cfg)


def start_job(
    s: Session,
    claim: Claim,
    contexts: Mapping[str, RunningContext],
    ctx: model.Context,
    lay: tree.Layout,
    staged: tree.Layout | None,
    topo: Topology,
    *,
    window_s: float,
    warmup_s: float,
) -> RunningContext:
    """Run ``ctx`` on its kdamond (``staged`` if given and the kdamond is fresh; the
    caller arms it); a fresh kdamond is not measured for ``warmup_s``."""
    index = claim.pick(s, ctx.name, {c.kd.index for c in contexts.values()})
    kd = Kdamond.at(claim.admin, index)
    running = kd.is_on(s)
    if running:
        pid = _adopt(s, kd, claim.record.slots[index], ctx.name, lay)
    else:
        lay = staged or lay
        try:
            changes = kd.apply(s, lay.entries)
            kd.verify(s, ctx.name, lay)
            kd.command(s, ctx.name, paths.ON, lay, changes)
        except BackendError:
            _roll_back(s, kd, ctx.name)
            raise
        pid = kd.pid(s)
        log.info("kdamond on", context=ctx.name, kdamond=index, pid=pid)
    claim.hold(index, ctx.name, pid)
    state = RunningContext(
        ctx=ctx,
        kd=kd,
        layout=lay,
        topo=topo,
        pid=pid,
        measure_from=time.monotonic() + (0.0 if running else warmup_s),
    )
    for nid in lay.stat_nodes:
        state.counters[nid] = CounterWindow(window_s)
        state.readings[nid] = ValueWindow(window_s)
    return state


def _roll_back(s: Session, kd: Kdamond, context: str) -> None:
    """Remove what a failed start left staged in a kdamond that stayed off, so that no
    half-written context (a scheme without its filters) is left for anyone to turn on."""
    try:
        if not kd.is_on(s):
            s.write(kd.dir / paths.NR_CONTEXTS, "0")
    except BackendError as exc:
        log.warning("could not roll back a failed start", context=context, error=str(exc))


def _adopt(s: Session, kd: Kdamond, slot: Slot, context: str, lay: tree.Layout) -> int:
    """Take over the running kdamond damond left, if it is still the one damond ran."""
    pid = kd.pid(s)
    if slot.pid != pid:
        raise BackendError(
            f"context {context}: kdamond {kd.index} runs with pid {pid}, not damond's "
            f"{slot.pid}; it is not damond's any more"
        )
    changes = kd.apply(s, lay.entries, ADOPT_SKIP)
    kd.verify(s, context, lay, ADOPT_SKIP)
    if changes:
        kd.command(s, context, paths.COMMIT, lay, changes)
    log.info(
        "re-adopted kdamond",
        context=context,
        kdamond=kd.index,
        pid=pid,
        changed=[c.path for c in changes],
    )
    return pid


async def arm(worker: SysfsWorker, c: RunningContext, lay: tree.Layout) -> None:
    """Give a staged working scheme its layout ``lay`` once its first quota window
    is in place."""
    working = c.ctx.schemes[tree.WORKING_SCHEME]
    await asyncio.sleep(working.quota.reset_interval_ms / 1000 + ARM_MARGIN_S)

    def job(s: Session) -> None:
        changes = c.kd.apply(s, lay.entries, ADOPT_SKIP)
        c.kd.command(s, c.ctx.name, paths.COMMIT, lay, changes)

    await worker.call(job)
    c.layout = lay
    log.info("working scheme armed", context=c.ctx.name, kdamond=c.kd.index)


def stop_job(s: Session, claim: Claim, contexts: dict[str, RunningContext], name: str) -> None:
    """Turn the context's kdamond off and free it, unless someone else runs it now."""
    c = contexts.pop(name, None)
    if c is None:
        return
    kd = c.kd
    if kd.is_on(s):
        pid = kd.pid(s)
        if pid != c.pid:
            # Someone else turned it on again: it is theirs now; never touch it.
            claim.give_up(kd.index)
            log.warning(
                "kdamond was taken over; giving it up", context=name, kdamond=kd.index, pid=pid
            )
            return
        kd.send(s, paths.OFF)
    claim.release(kd.index)
    log.info("kdamond off", context=name, kdamond=kd.index)
