"""Cross-field checks that a single field's validator cannot make."""

from __future__ import annotations

from damond.config.context import ContextConfig, Mode, step_floor_bp
from damond.config.listen import is_loopback_host, parse_listen
from damond.config.presets import context_place
from damond.config.service import MetricsConfig, MqttConfig
from damond.config.settings import Settings
from damond.config.simulation import SimulationConfig, scheduled_errors
from damond.model import damon as model
from damond.model.filtering import acts_on_cgroup
from damond.model.units import BP_SCALE


def quota_capacity_error(node: int, capacity: int | None, max_bytes: object) -> str | None:
    """Why a quota cap cannot apply to a context on ``node`` (None when it can): a quota
    the node cannot hold is a mistake, or meant for another machine. The configuration
    and policies (``quota_max_bytes``) check it alike."""
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool):
        return None  # the schema reports the type
    if capacity is None or max_bytes <= capacity:
        return None
    return f"must not exceed the capacity of node {node} ({capacity} bytes), got {max_bytes}"


def semantic_errors(settings: Settings) -> list[str]:
    """Cross-field checks that a single field's validator cannot make."""
    errors: list[str] = []
    if not settings.contexts:
        errors.append("contexts: no contexts configured; damond would have nothing to do")
    sim = settings.simulation
    known_nodes = sim.node_ids if settings.backend == "simulated" else None
    capacities = (
        {n.id: n.capacity_bytes for n in sim.nodes} if settings.backend == "simulated" else {}
    )
    seen: dict[str, int] = {}
    for i, ctx in enumerate(settings.contexts):
        where = context_place(i, ctx)
        if ctx.name in seen:
            errors.append(
                f"{where}.name: duplicate context name {ctx.name!r} "
                f"(also contexts[{seen[ctx.name]}])"
            )
        else:
            seen[ctx.name] = i
        if known_nodes is not None:
            nodes_text = ", ".join(str(n) for n in known_nodes)
            for field, value in (
                ("node", ctx.node),
                ("scheme.target_nid", ctx.scheme.target_nid),
                ("goal.nid", ctx.goal.nid),
            ):
                if value is not None and value not in known_nodes:
                    errors.append(
                        f"{where}.{field}: unknown node {value}, "
                        f"the simulated machine has nodes {nodes_text}"
                    )
        quota_error = quota_capacity_error(
            ctx.node, capacities.get(ctx.node), ctx.scheme.quota.max_bytes
        )
        if quota_error is not None:
            errors.append(f"{where}.scheme.quota.max_bytes: {quota_error}")
        if ctx.scheme.target_nid == ctx.node:
            errors.append(
                f"{where}.scheme.target_nid: must differ from the context's node "
                f"({ctx.node}), got {ctx.scheme.target_nid}"
            )
        elif (lru_goal := ctx.goal.metric in _LRU_METRICS) and ctx.scheme.target_nid is not None:
            errors.append(
                f"{where}.scheme.action: {ctx.goal.metric} is moved only by lru_prio or "
                f"lru_deprio, not {ctx.scheme.action}: migration keeps pages on their LRU list"
            )
        elif ctx.scheme.target_nid is None and not lru_goal:
            errors.append(
                f"{where}.goal.metric: {ctx.scheme.action} moves pages between LRU lists, so "
                f"it steers only active_mem_bp or inactive_mem_bp, not {ctx.goal.metric}"
            )
        elif ctx.direction is None:
            errors.append(
                f"{where}.goal.nid: must be the context's node ({ctx.node}) or the "
                f"scheme's target_nid ({ctx.scheme.target_nid}), got {ctx.goal.nid}"
            )
        elif ctx.goal.path and not acts_on_cgroup(
            [f.to_model() for f in ctx.scheme.filters], ctx.goal.path
        ):
            errors.append(
                f"{where}.scheme.filters: exclude every page of the goal's cgroup "
                f"{ctx.goal.path}, so the scheme can never move {ctx.goal.metric}"
            )
        pattern = ctx.scheme.access_pattern
        if pattern.nr_accesses_min > pattern.nr_accesses_max:
            errors.append(
                f"{where}.scheme.access_pattern.nr_accesses_min: must not exceed "
                f"nr_accesses_max ({pattern.nr_accesses_max}), got {pattern.nr_accesses_min}"
            )
        if pattern.age_min > pattern.age_max:
            errors.append(
                f"{where}.scheme.access_pattern.age_min: must not exceed age_max "
                f"({pattern.age_max}), got {pattern.age_min}"
            )
        if ctx.intervals.aggr_us < ctx.intervals.sample_us:
            errors.append(
                f"{where}.intervals.aggr_us: must be at least sample_us "
                f"({ctx.intervals.sample_us}), got {ctx.intervals.aggr_us}"
            )
        if ctx.mode is Mode.NATIVE:
            if ctx.goal.metric == "node_target_mem_bp":
                errors.append(
                    f"{where}.goal.metric: native mode needs a metric the kernel computes; "
                    "no kernel has node_target_mem_bp (never merged): use "
                    'node_eligible_mem_bp (Linux 7.2+), or mode = "kernel" or "daemon"'
                )
            if ctx.direction is model.Direction.LOWERS:
                errors.append(_native_lowers(ctx, where))
    if settings.backend == "simulated":
        errors.extend(_simulation_errors(sim))
        errors.extend(scheduled_errors(sim, [c.name for c in settings.contexts]))
    errors.extend(_metrics_errors(settings.metrics))
    errors.extend(_mqtt_errors(settings.mqtt))
    if settings.sysfs.nr_regions_min > settings.sysfs.nr_regions_max:
        errors.append(
            f"sysfs.nr_regions_min: must not exceed nr_regions_max "
            f"({settings.sysfs.nr_regions_max}), got {settings.sysfs.nr_regions_min}"
        )
    return errors


_LRU_METRICS = ("active_mem_bp", "inactive_mem_bp")


def _native_lowers(ctx: ContextConfig, where: str) -> str:
    """Why native mode cannot steer a goal its scheme lowers, and which goal it could."""
    metric = model.GoalMetric(ctx.goal.metric)
    if not metric.takes_nid:
        dest = ctx.scheme.target_nid
        moving = f"moving pages from node {ctx.node} to node {dest}" if dest is not None else ""
        moving = moving or ctx.scheme.action
        return (
            f"{where}.goal.metric: native mode needs a goal the scheme raises, because the "
            f"kernel's tuner assumes a larger quota raises the metric; {moving} lowers "
            f'{metric.value}: use mode = "kernel" or "daemon"'
        )
    other = ctx.node if ctx.goal.nid == ctx.scheme.target_nid else ctx.scheme.target_nid
    side = "source" if other == ctx.node else "destination"
    return (
        f"{where}.goal.nid: native mode needs the goal on the scheme's {side} (nid={other}) "
        f"because the kernel's tuner assumes a larger quota raises the metric, got "
        f"{ctx.goal.nid}"
    )


def deadband_notes(settings: Settings) -> list[str]:
    """Dead bands narrower than one measurement step, and the floor each is raised to.

    Known before running on the simulated machine (a step is one chunk); a real
    kernel's regions are learnt as it runs, and the daemon says so at start."""
    if settings.backend != "simulated":
        return []
    sim = settings.simulation
    capacity = {n.id: n.capacity_bytes for n in sim.nodes}
    memory = sum(s.bytes for s in sim.sets)
    notes = []
    for i, ctx in enumerate(settings.contexts):
        nid = ctx.goal.nid
        if ctx.goal.metric in ("some_mem_psi_us", "active_mem_bp", "inactive_mem_bp"):
            continue  # not a share of a node: no step of it is known before running
        if ctx.goal.metric != "node_eligible_mem_bp":  # a share of the node's memory
            floor = step_floor_bp(sim.chunk_bytes, capacity.get(nid, 0) / BP_SCALE)
            of = f"node {nid}'s {capacity.get(nid, 0)} bytes"
        else:  # a share of the eligible memory, which is at most all the memory
            floor = step_floor_bp(sim.chunk_bytes, memory / BP_SCALE)
            of = f"at most {memory} bytes of eligible memory"
        configured = ctx.controller.deadband_bp
        if floor > configured:
            notes.append(
                f"contexts[{i}].controller.deadband_bp: {configured} bp is narrower than one "
                f"measurement step ({floor} bp: a {sim.chunk_bytes}-byte region of {of}); "
                f"raised to {floor} bp"
            )
    return notes


def _mqtt_errors(mqtt: MqttConfig) -> list[str]:
    errors: list[str] = []
    if mqtt.password_file is not None and mqtt.username is None:
        errors.append("mqtt.password_file: needs mqtt.username to be set as well")
    if mqtt.cert_file is not None and mqtt.key_file is None:
        errors.append("mqtt.key_file: required with mqtt.cert_file (they go together)")
    if mqtt.key_file is not None and mqtt.cert_file is None:
        errors.append("mqtt.cert_file: required with mqtt.key_file (they go together)")
    return errors


def _metrics_errors(metrics: MetricsConfig) -> list[str]:
    """A remote listener is protected (by its web configuration file) or explicitly not.

    The file is read where it is used (:mod:`damond.metrics.webconfig`)."""
    if not metrics.enabled:
        return []
    host, _ = parse_listen(metrics.listen)
    protected = metrics.web_config_file is not None
    if not is_loopback_host(host) and not protected and not metrics.allow_insecure_remote:
        return [
            f"metrics.listen: {metrics.listen!r} is not a loopback address; protect it with "
            "TLS and basic auth in metrics.web_config_file, or set "
            "metrics.allow_insecure_remote = true"
        ]
    return []


def _simulation_errors(sim: SimulationConfig) -> list[str]:
    errors: list[str] = []
    ids = sim.node_ids
    if not ids:
        errors.append("simulation.nodes: must list at least one node")
    for i, node_id in enumerate(ids):
        if node_id in ids[:i]:
            errors.append(f"simulation.nodes[{i}].id: duplicate node id {node_id}")
    names = [s.name for s in sim.sets]
    for i, mset in enumerate(sim.sets):
        if mset.name in names[:i]:
            errors.append(f"simulation.sets[{i}].name: duplicate set name {mset.name!r}")
        if mset.placement != "interleave" and mset.placement not in ids:
            errors.append(
                f"simulation.sets[{i}].placement: unknown node {mset.placement}, "
                f"the simulated machine has nodes {', '.join(map(str, ids))}"
            )
    for i, shift in enumerate(sim.shifts):
        for field in ("from_set", "to_set"):
            name = getattr(shift, field)
            if name not in names:
                errors.append(f"simulation.shifts[{i}].{field}: unknown set {name!r}")
    total = sum(s.bytes for s in sim.sets)
    capacity = sum(n.capacity_bytes for n in sim.nodes)
    if total > capacity:
        errors.append(
            f"simulation.sets: {total} bytes of memory do not fit the machine's "
            f"{capacity} bytes of capacity"
        )
    return errors
