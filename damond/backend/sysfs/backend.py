"""The real backend: DAMON through its sysfs interface.

One kdamond per context, created by damond and recorded as its own (see
:mod:`damond.backend.sysfs.ownership`); all file access goes through one serialized
worker (:mod:`damond.backend.sysfs.io`). Eligible bytes per node are measured by the
quota-less per-node ``stat`` schemes that :mod:`damond.backend.sysfs.tree` lays out:
from the ``sz_tried`` / ``nr_snapshots`` deltas on 7.0+, else from
``update_schemes_tried_bytes`` and ``total_bytes``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import structlog

from damond.backend.sysfs import ownership, tree
from damond.backend.sysfs.eligible import CounterWindow, ValueWindow
from damond.backend.sysfs.features import Features, probe, probe_by_presence
from damond.backend.sysfs.io import Session, SysfsIO, SysfsWorker
from damond.backend.sysfs.topology import Topology, read_topology
from damond.backend.sysfs.vmstat import read_tiering_counters
from damond.config import Settings, SysfsConfig
from damond.model import damon as model
from damond.model.errors import BackendError, EnvironmentRefused
from damond.model.measurement import SchemeStats, Snapshot

FIRST_MEASURE_WAIT_S = 0.2
ARM_MARGIN_S = 0.2
ADOPT_SKIP = ("/current_value",)
"""Goal values an adopted kdamond keeps: the last fed measurement, not a neutral one."""


@dataclass
class _Context:
    ctx: model.Context
    slot: int
    layout: tree.Layout
    topo: Topology
    pid: int
    counters: dict[int, CounterWindow] = field(default_factory=dict)
    readings: dict[int, ValueWindow] = field(default_factory=dict)
    eligible: dict[int, int] = field(default_factory=dict)
    measure_from: float = 0.0
    """Monotonic time from which the kdamond's measurements count (after its warm-up)."""


def feature_problems(ctx: model.Context, f: Features, kernel: str) -> list[str]:
    """Why this kernel cannot run ``ctx``, one line per missing feature."""
    out: list[str] = []
    where = f"context {ctx.name!r}"
    working = ctx.schemes[tree.WORKING_SCHEME]
    if not f.migrate_hot:
        out.append(f"{where}: {working.action.value} needs Linux 6.11+ (kernel {kernel})")
    metrics = {g.metric for g in working.quota.goals}
    if metrics and not f.quota_goals:
        out.append(f"{where}: quota goals need Linux 6.8+ (kernel {kernel})")
    if model.GoalMetric.NODE_ELIGIBLE_MEM_BP in metrics and not (
        f.node_eligible_mem_bp and f.goal_nid
    ):
        out.append(
            f"{where}: mode native needs the kernel's node_eligible_mem_bp goal metric "
            f'(Linux 7.2+), which kernel {kernel} lacks; use mode = "kernel" (damond feeds '
            "the metric as user_input)"
        )
    if working.quota.goal_tuner is not model.GoalTuner.CONSIST and not f.goal_tuner:
        out.append(
            f"{where}: controller.tuner {working.quota.goal_tuner.value!r} needs goal_tuner "
            f'(Linux 7.1+), which kernel {kernel} lacks; use tuner = "consist"'
        )
    if not (f.nr_snapshots or f.tried_bytes):
        out.append(
            f"{where}: measuring eligible bytes needs tried_regions/total_bytes (Linux 6.6+) "
            f"or stats/nr_snapshots (7.0+), kernel {kernel} has neither"
        )
    return out


class SysfsBackend:
    name = "sysfs"

    def __init__(
        self,
        settings: Settings,
        planned: Sequence[model.Context],
        io: SysfsIO | None = None,
    ) -> None:
        """``planned``: the DAMON contexts damond will run, checked against the kernel at
        :meth:`open` so that a host that cannot run them is refused before any is started."""
        self.settings = settings
        self.planned = list(planned)
        self.cfg: SysfsConfig = settings.sysfs
        self.worker = SysfsWorker(
            io or SysfsIO(),
            ebusy_budget_s=self.cfg.ebusy_retry_s,
            timeout_s=self.cfg.command_timeout_s,
        )
        self.record_path = settings.state_dir / ownership.RECORD_NAME
        self.log = structlog.get_logger("damond.sysfs")
        self._features = Features(verified=False)
        self._kernel = "unknown"
        self._record: ownership.Record | None = None
        self._contexts: dict[str, _Context] = {}
        self._topo: Topology | None = None
        self._topo_at = -1e18

    @property
    def admin(self) -> Path:
        return self.cfg.admin_root

    def kdamond_dir(self, index: int) -> Path:
        return self.admin / "kdamonds" / str(index)

    # -- Backend protocol --------------------------------------------------------------

    def features(self) -> Mapping[str, bool]:
        return self._features.table()

    def kernel_version(self) -> str:
        return self._kernel

    def tiering_counters(self) -> Mapping[str, int]:
        return read_tiering_counters(self.cfg.proc_root / "vmstat")

    async def open(self) -> None:
        try:
            self._kernel, record, self._features = await self.worker.call(self._open_job)
        except BaseException:
            self.worker.close()
            raise
        self._record = record
        self.log.info(
            "sysfs backend open",
            kernel=self._kernel,
            kdamonds=sorted(record.slots),
            features=[k for k, v in self._features.table().items() if v],
            features_verified=self._features.verified,
        )
        problems = [
            p for c in self.planned for p in feature_problems(c, self._features, self._kernel)
        ]
        if problems:
            await self.close()
            raise EnvironmentRefused("; ".join(problems))

    def _open_job(self, s: Session) -> tuple[str, ownership.Record, Features]:
        cfg = self.cfg
        nr_file = self.admin / "kdamonds" / "nr_kdamonds"
        if not s.exists(nr_file):
            raise EnvironmentRefused(
                f"no DAMON sysfs interface at {self.admin} (the kernel needs CONFIG_DAMON_SYSFS)"
            )
        kernel = s.read(cfg.proc_root / "sys/kernel/osrelease").strip()
        boot_id = s.read(cfg.proc_root / "sys/kernel/random/boot_id").strip()
        held = ownership.exclusive_modules(s, cfg.module_root)
        if held:
            raise ownership.refuse_modules(held, cfg.module_root)
        states = ownership.scan(s, self.admin)
        record = ownership.load_record(self.record_path, boot_id, self.admin)
        mine = ownership.owned(states, record)
        refusal = ownership.refuse_foreign(states, mine, self.admin)
        if refusal is not None:
            raise refusal
        if record is None:
            record = ownership.Record(boot_id=boot_id, admin_root=str(self.admin))
        record.slots = {st.index: record.slots.get(st.index) or ownership.Slot() for st in states}
        need = max(1, len(self.planned) + cfg.spare_kdamonds)
        running = [st.index for st in states if st.running]
        if len(states) < need and not running:
            # Recorded first: a crash right after the write leaves them known as ours.
            record.slots = {i: ownership.Slot() for i in range(need)}
            ownership.save_record(self.record_path, record)
            s.write(nr_file, str(need))
        else:
            if len(states) < need:
                self.log.warning(
                    "cannot add kdamonds while damond's own run",
                    have=len(states),
                    need=need,
                    running=running,
                )
            ownership.save_record(self.record_path, record)
        idle = [i for i in sorted(record.slots) if i not in running]
        if idle:
            features = probe(s, self.kdamond_dir(idle[0]))
        else:
            features = probe_by_presence(s, self.kdamond_dir(running[0]))
        return kernel, record, features

    async def close(self) -> None:
        try:
            if self._record is not None:
                await self.worker.call(self._close_job)
        finally:
            self.worker.close()

    def _close_job(self, s: Session) -> None:
        record = self._record
        assert record is not None
        if self.settings.on_exit == "leave" and self._contexts:
            # The supervisor left the loops' kdamonds on; the next start re-adopts them.
            ownership.save_record(self.record_path, record)
            self.log.info("leaving kdamonds running", kdamonds=sorted(self._running_slots()))
            return
        for name in list(self._contexts):
            self._stop_job(s, name)
        states = ownership.scan(s, self.admin)
        if any(st.running for st in states) or any(st.index not in record.slots for st in states):
            ownership.save_record(self.record_path, record)
            return
        if states:
            s.write(self.admin / "kdamonds" / "nr_kdamonds", "0")
        self.record_path.unlink(missing_ok=True)
        self._record = None

    def _running_slots(self) -> list[int]:
        return [c.slot for c in self._contexts.values()]

    async def start_context(self, ctx: model.Context) -> None:
        problems = feature_problems(ctx, self._features, self._kernel)
        if problems:
            raise BackendError("; ".join(problems))
        topo = await self._topology(force=True)
        self._check_nodes(ctx, topo)
        lay = self._layout(ctx, topo)
        staged = self._staged_layout(ctx, topo)
        state = await self.worker.call(lambda s: self._start_job(s, ctx, lay, topo, staged))
        self._contexts[ctx.name] = state
        if state.layout is not lay:
            working = ctx.schemes[tree.WORKING_SCHEME]
            await asyncio.sleep(working.quota.reset_interval_ms / 1000 + ARM_MARGIN_S)

            def arm(s: Session) -> None:
                kd = self.kdamond_dir(state.slot)
                changes = tree.apply(s, kd, lay.entries, ADOPT_SKIP)
                self._command(s, state.slot, ctx.name, "commit", lay, changes)

            await self.worker.call(arm)
            state.layout = lay
            self.log.info("working scheme armed", context=ctx.name, kdamond=state.slot)

    def _staged_layout(self, ctx: model.Context, topo: Topology) -> tree.Layout | None:
        """The layout to start with on kernels that apply no quota in a scheme's first
        reset interval (before 7.1, where an unset effective quota means "unlimited"):
        the working scheme starts as ``stat`` and gets its action by a commit once its
        first quota window is in place. None where the kernel needs no staging."""
        if self._features.goal_tuner:
            return None
        working = ctx.schemes[tree.WORKING_SCHEME]
        harmless = replace(working, action=model.Action.STAT)
        return self._layout(replace(ctx, schemes=(harmless, *ctx.schemes[1:])), topo)

    def _layout(self, ctx: model.Context, topo: Topology) -> tree.Layout:
        return tree.layout(
            ctx,
            topo,
            self._features,
            refresh_ms=self.cfg.refresh_ms,
            nr_regions=(self.cfg.nr_regions_min, self.cfg.nr_regions_max),
            stat_apply_interval_us=self.cfg.stat_apply_interval_us,
        )

    @staticmethod
    def _check_nodes(ctx: model.Context, topo: Topology) -> None:
        for node in (*ctx.nodes, ctx.schemes[tree.WORKING_SCHEME].target_nid):
            if node not in topo.ranges:
                raise BackendError(
                    f"context {ctx.name}: node {node} has no online memory "
                    f"(nodes with memory: {', '.join(map(str, topo.nodes))}); context stopped"
                )

    def _slot_for(self, s: Session, name: str) -> int:
        record = self._record
        if record is None:
            raise BackendError("the sysfs backend is not open")
        for i, slot in sorted(record.slots.items()):
            if slot.context == name:
                return i
        busy = {c.slot for c in self._contexts.values()}
        for i, slot in sorted(record.slots.items()):
            idle = slot.context is None and i not in busy
            if idle and s.read(self.kdamond_dir(i) / "state").strip() == "off":
                return i
        raise BackendError(
            f"context {name}: no idle kdamond left (damond owns {len(record.slots)}); "
            "raise sysfs.spare_kdamonds and restart damond to add contexts"
        )

    def _start_job(
        self,
        s: Session,
        ctx: model.Context,
        lay: tree.Layout,
        topo: Topology,
        staged: tree.Layout | None,
    ) -> _Context:
        record = self._record
        assert record is not None
        index = self._slot_for(s, ctx.name)
        kd = self.kdamond_dir(index)
        slot = record.slots[index]
        running = s.read(kd / "state").strip() == "on"
        if running:
            pid = s.read_int(kd / "pid")
            if slot.pid != pid:
                raise BackendError(
                    f"context {ctx.name}: kdamond {index} runs with pid {pid}, not damond's "
                    f"{slot.pid}; it is not damond's any more"
                )
            changes = tree.apply(s, kd, lay.entries, ADOPT_SKIP)
            self._verify(s, kd, ctx.name, lay, ADOPT_SKIP)
            if changes:
                self._command(s, index, ctx.name, "commit", lay, changes)
            self.log.info(
                "re-adopted kdamond",
                context=ctx.name,
                kdamond=index,
                pid=pid,
                changed=[c.path for c in changes],
            )
        else:
            lay = staged or lay
            changes = tree.apply(s, kd, lay.entries)
            self._verify(s, kd, ctx.name, lay)
            self._command(s, index, ctx.name, "on", lay, changes)
            pid = s.read_int(kd / "pid")
            self.log.info("kdamond on", context=ctx.name, kdamond=index, pid=pid)
        slot.context, slot.pid = ctx.name, pid
        ownership.save_record(self.record_path, record)
        warmup_s = 0.0 if running else self.warmup_s(ctx)
        state = _Context(
            ctx=ctx,
            slot=index,
            layout=lay,
            topo=topo,
            pid=pid,
            measure_from=time.monotonic() + warmup_s,
        )
        window = self.cfg.measure_window_s
        for nid in lay.stat_nodes:
            state.counters[nid] = CounterWindow(window)
            state.readings[nid] = ValueWindow(window)
        return state

    def warmup_s(self, ctx: model.Context) -> float:
        """How long a fresh kdamond of ``ctx`` is not measured: DAMON starts from the
        given regions and splits them once per aggregation interval."""
        return self.cfg.warmup_aggregations * ctx.intervals.aggr_us / 1e6

    def _verify(
        self,
        s: Session,
        kd: Path,
        name: str,
        lay: tree.Layout,
        skip: tuple[str, ...] = (),
    ) -> None:
        bad = tree.mismatches(s, kd, lay.entries, skip)
        if bad:
            raise BackendError(
                f"context {name}: {kd} does not read back what damond wrote: " + tree.describe(bad)
            )

    def _command(
        self,
        s: Session,
        index: int,
        name: str,
        command: str,
        lay: tree.Layout,
        changes: list[tree.Change],
    ) -> None:
        """Write a state command that needs the kdamond on afterwards; a kdamond
        that is off afterwards is a failed commit, reported with what was written."""
        kd = self.kdamond_dir(index)
        error: BackendError | None = None
        try:
            s.write(kd / "state", command)
        except BackendError as exc:
            error = exc
        off = s.read(kd / "state").strip() != "on"
        if not off and error is None:
            return
        drift = tree.mismatches(s, kd, lay.entries, ADOPT_SKIP)
        self.log.error(
            "state command failed" if not off else "kdamond is off after a state command",
            context=name,
            kdamond=index,
            command=command,
            error=str(error) if error else None,
            written=tree.describe(changes),
            differs_from_damond=tree.describe(drift),
        )
        raise BackendError(
            f"context {name}: kdamond {index} {'is off' if off else 'rejected'} after '{command}'"
            + (f" ({error})" if error else "")
            + (f"; written: {tree.describe(changes)}" if changes else "")
            + (f"; files not as damond wrote them: {tree.describe(drift)}" if drift else "")
            + "; restarting it from damond's configuration"
        )

    async def stop_context(self, name: str) -> None:
        if name in self._contexts:
            await self.worker.call(lambda s: self._stop_job(s, name))

    def _stop_job(self, s: Session, name: str) -> None:
        state = self._contexts.pop(name, None)
        record = self._record
        if state is None or record is None:
            return
        kd = self.kdamond_dir(state.slot)
        if s.read(kd / "state").strip() == "on":
            pid = s.read_int(kd / "pid")
            if pid != state.pid:
                # Someone else turned it on again: it is theirs now; never touch it.
                record.slots.pop(state.slot, None)
                ownership.save_record(self.record_path, record)
                self.log.warning(
                    "kdamond was taken over; giving it up",
                    context=name,
                    kdamond=state.slot,
                    pid=pid,
                )
                return
            s.write(kd / "state", "off")
        slot = record.slots.get(state.slot)
        if slot is not None:
            slot.context = slot.pid = None
        ownership.save_record(self.record_path, record)
        self.log.info("kdamond off", context=name, kdamond=state.slot)

    def _get(self, name: str) -> _Context:
        try:
            return self._contexts[name]
        except KeyError:
            raise BackendError(f"context {name} is not running") from None

    async def _topology(self, force: bool = False) -> Topology:
        now = time.monotonic()
        if force or self._topo is None or now - self._topo_at >= self.cfg.topology_refresh_s:
            self._topo = await self.worker.call(lambda s: read_topology(s, self.cfg.devices_root))
            self._topo_at = now
        return self._topo

    async def _follow_topology(self, c: _Context) -> None:
        """Memory was hot-(un)plugged: re-stage regions and filters online."""
        topo = await self._topology()
        if topo == c.topo:
            return
        self._check_nodes(c.ctx, topo)
        lay = self._layout(c.ctx, topo)
        if lay.stat_nodes != c.layout.stat_nodes:
            raise BackendError(f"context {c.ctx.name}: the set of memory nodes changed; restarting")

        def job(s: Session) -> None:
            kd = self.kdamond_dir(c.slot)
            changes = tree.apply(s, kd, lay.entries, ADOPT_SKIP)
            self._verify(s, kd, c.ctx.name, lay, ADOPT_SKIP)
            self._command(s, c.slot, c.ctx.name, "commit", lay, changes)

        self.log.info("memory topology changed; re-staging", context=c.ctx.name)
        await self.worker.call(job)
        c.layout, c.topo = lay, topo

    async def snapshot(self, name: str) -> Snapshot:
        c = self._get(name)
        await self._follow_topology(c)
        # The first measurement is a whole window of readings after the warm-up: one
        # reading is one aggregation interval's view, too noisy to act on.
        full_window_at = c.measure_from + self.cfg.measure_window_s
        refresh_s = self.cfg.refresh_ms / 1000 if self._features.refresh_ms else 0.0
        deadline = (
            max(time.monotonic(), full_window_at)
            + 2 * max(c.ctx.intervals.aggr_us / 1e6, refresh_s)
            + 1.0
        )
        while True:
            snap = await self.worker.call(lambda s: self._snapshot_job(s, c))
            now = time.monotonic()
            measured = all(n in c.eligible for n in c.layout.stat_nodes)
            if (measured and now >= full_window_at) or now >= deadline:
                return snap
            await asyncio.sleep(FIRST_MEASURE_WAIT_S)

    def _snapshot_job(self, s: Session, c: _Context) -> Snapshot:
        kd = self.kdamond_dir(c.slot)
        name = c.ctx.name
        if s.read(kd / "state").strip() != "on":
            raise BackendError(
                f"context {name}: kdamond {c.slot} is off (stopped from outside?); restarting it"
            )
        pid = s.read_int(kd / "pid")
        if pid != c.pid:
            raise BackendError(
                f"context {name}: kdamond {c.slot} now runs as pid {pid}, not {c.pid}; "
                "someone restarted it; restarting from damond's configuration"
            )
        refreshed = self._features.refresh_ms and self.cfg.refresh_ms > 0
        if not refreshed:
            s.write(kd / "state", "update_schemes_stats")
        if time.monotonic() >= c.measure_from:  # before, DAMON's regions are too coarse
            self._measure(s, c, kd)
        working = kd / tree.scheme_dir(tree.WORKING_SCHEME)
        effective = 0
        if self._features.effective_bytes:
            if not refreshed:
                s.write(kd / "state", "update_schemes_effective_quotas")
            effective = s.read_int(working / "quotas" / "effective_bytes")
        counters = SchemeStats(
            **{
                key: s.read_int(working / "stats" / key)
                for key in ("nr_tried", "sz_tried", "nr_applied", "sz_applied", "qt_exceeds")
            }
        )
        return Snapshot(
            time_s=time.monotonic(),
            eligible_bytes={n: c.eligible.get(n, 0) for n in c.layout.stat_nodes},
            capacity_bytes=dict(c.topo.capacity_bytes),
            stats=counters,
            quota_bytes=int(c.layout.value(f"{tree.scheme_dir(0)}/quotas/bytes")),
            effective_quota_bytes=effective,
            running=True,
        )

    def _measure(self, s: Session, c: _Context, kd: Path) -> None:
        """Add this moment's eligible bytes per node to their windows."""
        if self._features.nr_snapshots:
            for i, nid in enumerate(c.layout.stat_nodes):
                stats = kd / tree.scheme_dir(i + 1) / "stats"
                sz, nr = s.read_int(stats / "sz_tried"), s.read_int(stats / "nr_snapshots")
                average = c.counters[nid].add(time.monotonic(), sz, nr)
                if average is not None:
                    c.eligible[nid] = average
        else:
            s.write(kd / "state", "update_schemes_tried_bytes")
            for i, nid in enumerate(c.layout.stat_nodes):
                path = kd / tree.scheme_dir(i + 1) / "tried_regions" / "total_bytes"
                c.eligible[nid] = c.readings[nid].add(time.monotonic(), s.read_int(path))

    async def set_quota(self, name: str, quota_bytes: int) -> None:
        c = self._get(name)
        rel = f"{tree.scheme_dir(tree.WORKING_SCHEME)}/quotas/bytes"
        lay = _with(c.layout, {rel: str(quota_bytes)})

        def job(s: Session) -> None:
            kd = self.kdamond_dir(c.slot)
            changes = tree.apply(s, kd, [(rel, str(quota_bytes))])
            self._command(s, c.slot, name, "commit", lay, changes)

        await self.worker.call(job)
        c.layout = lay

    async def feed_goal(self, name: str, current_value: int, target_value: int) -> None:
        c = self._get(name)
        goals = c.ctx.schemes[tree.WORKING_SCHEME].quota.goals
        if not goals:
            raise BackendError(f"context {name}: its scheme has no quota goal to feed")
        g = f"{tree.scheme_dir(tree.WORKING_SCHEME)}/quotas/goals/0"
        values = {f"{g}/target_value": str(target_value)}
        if goals[0].metric is model.GoalMetric.USER_INPUT:
            values[f"{g}/current_value"] = str(current_value)
        lay = _with(c.layout, values)

        def job(s: Session) -> None:
            kd = self.kdamond_dir(c.slot)
            changes = tree.apply(s, kd, list(values.items()))
            self._command(s, c.slot, name, "commit_schemes_quota_goals", lay, changes)

        await self.worker.call(job)
        c.layout = lay


def _with(lay: tree.Layout, values: Mapping[str, str]) -> tree.Layout:
    return replace(lay, entries=tuple((p, values.get(p, v)) for p, v in lay.entries))
