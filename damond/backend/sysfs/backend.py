"""The real backend: DAMON through its sysfs interface.

One kdamond per context, created by damond and recorded as its own (see
:mod:`damond.backend.sysfs.ownership`); all file access goes through one serialized
worker (:mod:`damond.backend.sysfs.io`). The jobs live by what they do: claiming
and releasing DAMON in :mod:`~damond.backend.sysfs.lifecycle`, a context's kdamond
in :mod:`~damond.backend.sysfs.context`, measuring in
:mod:`~damond.backend.sysfs.measure`, online changes in
:mod:`~damond.backend.sysfs.online`; the files themselves are named in
:mod:`~damond.backend.sysfs.paths`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from damond.backend.sysfs import context, lifecycle, measure, online, ownership, tree
from damond.backend.sysfs.context import RunningContext
from damond.backend.sysfs.features import Features
from damond.backend.sysfs.io import SysfsIO, SysfsWorker
from damond.backend.sysfs.kdamond import log
from damond.backend.sysfs.requirements import cgroup_problems, feature_problems
from damond.backend.sysfs.topology import Topology, read_topology
from damond.backend.sysfs.vmstat import read_tiering_counters
from damond.config import Settings, SysfsConfig
from damond.model import damon as model
from damond.model.errors import BackendError, EnvironmentRefused
from damond.model.measurement import Snapshot


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
        self._features = Features(verified=False)
        self._kernel = "unknown"
        self._claim: ownership.Claim | None = None
        self._contexts: dict[str, RunningContext] = {}
        self._topo: Topology | None = None
        self._topo_at = -1e18

    # -- Backend protocol --------------------------------------------------------------

    def features(self) -> Mapping[str, bool]:
        return self._features.table()

    def kernel_version(self) -> str:
        return self._kernel

    def tiering_counters(self) -> Mapping[str, int]:
        return read_tiering_counters(self.cfg.proc_root / "vmstat")

    async def tiers(self) -> Mapping[int, int]:
        return (await self._topology()).tier_by_node

    async def open(self) -> None:
        try:
            self._kernel, claim, self._features = await self.worker.call(
                lambda s: lifecycle.open_job(s, self.cfg, self.record_path, len(self.planned))
            )
        except BaseException as exc:
            self.worker.close()
            refusal = lifecycle.refuse_without_permission(exc)
            if refusal is not None:
                raise refusal from None
            raise
        self._claim = claim
        log.info(
            "sysfs backend open",
            kernel=self._kernel,
            kdamonds=sorted(claim.record.slots),
            features=[k for k, v in self._features.table().items() if v],
            features_verified=self._features.verified,
        )
        problems = [
            p
            for i, c in enumerate(self.planned)
            for p in feature_problems(c, self._features, self._kernel, f"contexts[{i}]")
        ]
        if problems:
            await self.close()
            raise EnvironmentRefused("; ".join(problems))

    async def close(self) -> None:
        try:
            claim = self._claim
            if claim is not None:
                leave = self.settings.on_exit == "leave"
                if await self.worker.call(
                    lambda s: lifecycle.close_job(s, claim, self._contexts, leave)
                ):
                    self._claim = None
        finally:
            self.worker.close()

    async def start_context(self, ctx: model.Context) -> None:
        where = next(
            (f"contexts[{i}]" for i, c in enumerate(self.planned) if c.name == ctx.name),
            f"contexts.{ctx.name}",
        )
        problems = feature_problems(ctx, self._features, self._kernel, where)
        if not problems:
            problems = await self.worker.call(lambda s: cgroup_problems(s, ctx, self.cfg, where))
        if problems:
            raise BackendError("; ".join(problems))
        topo = await self._topology(force=True)
        context.check_nodes(ctx, topo)
        lay = tree.layout(ctx, topo, self._features, self.cfg)
        staged = context.staged_layout(ctx, topo, self._features, self.cfg)
        claim = self._claim
        if claim is None:
            raise BackendError("the sysfs backend is not open")
        state = await self.worker.call(
            lambda s: context.start_job(
                s,
                claim,
                self._contexts,
                ctx,
                lay,
                staged,
                topo,
                window_s=self.cfg.measure_window_s,
                warmup_s=self.warmup_s(ctx),
            )
        )
        self._contexts[ctx.name] = state
        if state.layout is not lay:
            await context.arm(self.worker, state, lay)

    def warmup_s(self, ctx: model.Context) -> float:
        return measure.warmup_s(self.cfg, ctx)

    async def stop_context(self, name: str) -> None:
        claim = self._claim
        if name in self._contexts and claim is not None:
            await self.worker.call(lambda s: context.stop_job(s, claim, self._contexts, name))

    async def snapshot(self, name: str) -> Snapshot:
        c = self._get(name)
        topo = await self._topology()
        await online.follow_topology(self.worker, c, topo, self._features, self.cfg)
        return await measure.snapshot(self.worker, c, self._features, self.cfg)

    async def set_quota(self, name: str, quota_bytes: int) -> None:
        await online.set_quota(self.worker, self._get(name), quota_bytes)

    async def feed_goal(self, name: str, current_value: int, target_value: int) -> None:
        await online.feed_goal(self.worker, self._get(name), current_value, target_value)

    def _get(self, name: str) -> RunningContext:
        try:
            return self._contexts[name]
        except KeyError:
            raise BackendError(f"context {name} is not running") from None

    async def _topology(self, force: bool = False) -> Topology:
        """The node topology, read again at most every ``topology_refresh_s``."""
        now = time.monotonic()
        if force or self._topo is None or now - self._topo_at >= self.cfg.topology_refresh_s:
            self._topo = await self.worker.call(lambda s: read_topology(s, self.cfg.devices_root))
            self._topo_at = now
        return self._topo
