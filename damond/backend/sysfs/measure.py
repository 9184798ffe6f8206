"""Measuring a running context: eligible bytes per node and the working scheme's
counters.

Eligible bytes come from the quota-less per-node ``stat`` schemes that
:mod:`damond.backend.sysfs.tree` lays out: from the ``sz_tried`` /
``nr_snapshots`` deltas on 7.0+, else from ``update_schemes_tried_bytes`` and
``total_bytes``. A fresh kdamond is not measured during its warm-up, and its first
snapshot waits for a whole window of readings.
"""

from __future__ import annotations

import asyncio
import time

from damond.backend.sysfs import hostmemory, paths
from damond.backend.sysfs.context import RunningContext
from damond.backend.sysfs.features import Features
from damond.backend.sysfs.io import Session, SysfsWorker
from damond.backend.sysfs.tree import WORKING_SCHEME
from damond.config import SysfsConfig
from damond.model import damon as model
from damond.model.errors import BackendError
from damond.model.measurement import SchemeStats, Snapshot

FIRST_MEASURE_WAIT_S = 0.2


def warmup_s(cfg: SysfsConfig, ctx: model.Context) -> float:
    """How long a fresh kdamond of ``ctx`` is not measured: DAMON starts from the
    given regions and splits them once per aggregation interval."""
    return cfg.warmup_aggregations * ctx.intervals.aggr_us / 1e6


async def snapshot(
    worker: SysfsWorker, c: RunningContext, features: Features, cfg: SysfsConfig
) -> Snapshot:
    # The first measurement is a whole window of readings after the warm-up: one
    # reading is one aggregation interval's view, too noisy to act on.
    full_window_at = c.measure_from + cfg.measure_window_s
    refresh_s = cfg.refresh_ms / 1000 if features.refresh_ms else 0.0
    deadline = (
        max(time.monotonic(), full_window_at)
        + 2 * max(c.ctx.intervals.aggr_us / 1e6, refresh_s)
        + 1.0
    )
    while True:
        snap = await worker.call(lambda s: _snapshot_job(s, c, features, cfg))
        now = time.monotonic()
        measured = all(n in c.eligible for n in c.layout.stat_nodes)
        if (measured and now >= full_window_at) or now >= deadline:
            return snap
        await asyncio.sleep(FIRST_MEASURE_WAIT_S)


def _snapshot_job(s: Session, c: RunningContext, features: Features, cfg: SysfsConfig) -> Snapshot:
    kd = c.kd
    name = c.ctx.name
    if not kd.is_on(s):
        raise BackendError(
            f"context {name}: kdamond {kd.index} is off (stopped from outside?); restarting it"
        )
    pid = kd.pid(s)
    if pid != c.pid:
        raise BackendError(
            f"context {name}: kdamond {kd.index} now runs as pid {pid}, not {c.pid}; "
            "someone restarted it; restarting from damond's configuration"
        )
    refreshed = features.refresh_ms and cfg.refresh_ms > 0
    if not refreshed:
        kd.send(s, paths.UPDATE_STATS)
    if time.monotonic() >= c.measure_from:  # before, DAMON's regions are too coarse
        _measure(s, c, features)
    effective = 0
    if features.effective_bytes:
        if not refreshed:
            kd.send(s, paths.UPDATE_EFFECTIVE_QUOTAS)
        effective = s.read_int(kd.dir / paths.quota(WORKING_SCHEME, "effective_bytes"))
    counters = SchemeStats(
        **{key: s.read_int(kd.dir / paths.stat(WORKING_SCHEME, key)) for key in paths.SCHEME_STATS}
    )
    needs = hostmemory.context_needs(c.ctx)
    memory = hostmemory.read_memory(s, host_roots(cfg), needs) if needs else None
    return Snapshot(
        time_s=time.monotonic(),
        eligible_bytes={n: c.eligible.get(n, 0) for n in c.layout.stat_nodes},
        capacity_bytes=dict(c.topo.capacity_bytes),
        stats=counters,
        quota_bytes=int(c.layout.value(paths.quota(WORKING_SCHEME, "bytes"))),
        effective_quota_bytes=effective,
        running=True,
        memory=memory,
    )


def host_roots(cfg: SysfsConfig) -> hostmemory.HostRoots:
    """Where the host's memory readings are, by the backend's configuration."""
    return hostmemory.HostRoots(
        devices_root=cfg.devices_root, proc_root=cfg.proc_root, cgroup_root=cfg.cgroup_root
    )


def _measure(s: Session, c: RunningContext, features: Features) -> None:
    """Add this moment's eligible bytes per node to their windows."""
    kd = c.kd.dir
    if features.nr_snapshots:
        for i, nid in enumerate(c.layout.stat_nodes):
            sz = s.read_int(kd / paths.stat(i + 1, "sz_tried"))
            nr = s.read_int(kd / paths.stat(i + 1, "nr_snapshots"))
            average = c.counters[nid].add(time.monotonic(), sz, nr)
            if average is not None:
                c.eligible[nid] = average
    else:
        c.kd.send(s, paths.UPDATE_TRIED_BYTES)
        for i, nid in enumerate(c.layout.stat_nodes):
            total = s.read_int(kd / paths.tried_total_bytes(i + 1))
            c.eligible[nid] = c.readings[nid].add(time.monotonic(), total)
