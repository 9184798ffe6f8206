"""Cross-field checks that a single field's validator cannot make."""

from __future__ import annotations

from damond.config.context import Mode
from damond.config.listen import is_loopback_host, parse_listen
from damond.config.service import MetricsConfig, MqttConfig
from damond.config.settings import Settings
from damond.config.simulation import SimulationConfig
from damond.model import damon as model


def semantic_errors(settings: Settings) -> list[str]:
    """Cross-field checks that a single field's validator cannot make."""
    errors: list[str] = []
    sim = settings.simulation
    known_nodes = sim.node_ids if settings.backend == "simulated" else None
    seen: dict[str, int] = {}
    for i, ctx in enumerate(settings.contexts):
        where = f"contexts[{i}]"
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
                if value not in known_nodes:
                    errors.append(
                        f"{where}.{field}: unknown node {value}, "
                        f"the simulated machine has nodes {nodes_text}"
                    )
        if ctx.scheme.target_nid == ctx.node:
            errors.append(
                f"{where}.scheme.target_nid: must differ from the context's node "
                f"({ctx.node}), got {ctx.scheme.target_nid}"
            )
        elif ctx.direction is None:
            errors.append(
                f"{where}.goal.nid: must be the context's node ({ctx.node}) or the "
                f"scheme's target_nid ({ctx.scheme.target_nid}), got {ctx.goal.nid}"
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
            if ctx.goal.metric != "node_eligible_mem_bp":
                errors.append(
                    f"{where}.goal.metric: native mode needs node_eligible_mem_bp "
                    f"(the only metric a kernel computes), got {ctx.goal.metric!r}"
                )
            if ctx.direction is model.Direction.LOWERS:
                errors.append(
                    f"{where}.goal.nid: native mode needs the goal on the scheme's "
                    f"destination (nid={ctx.scheme.target_nid}) because the kernel's tuner "
                    f"assumes a larger quota raises the metric, got {ctx.goal.nid}"
                )
    if settings.backend == "simulated":
        errors.extend(_simulation_errors(sim))
    errors.extend(_metrics_errors(settings.metrics))
    errors.extend(_mqtt_errors(settings.mqtt))
    if settings.sysfs.nr_regions_min > settings.sysfs.nr_regions_max:
        errors.append(
            f"sysfs.nr_regions_min: must not exceed nr_regions_max "
            f"({settings.sysfs.nr_regions_max}), got {settings.sysfs.nr_regions_min}"
        )
    return errors


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
    """The endpoint's protection: a remote listener is protected, and the password is set once.

    The files it names are read where they are used (:mod:`damond.metrics.auth`)."""
    if not metrics.enabled:
        return []
    errors: list[str] = []
    host, _ = parse_listen(metrics.listen)
    protected = metrics.tls is not None or metrics.basic_auth is not None
    if not is_loopback_host(host) and not protected and not metrics.allow_insecure_remote:
        errors.append(
            f"metrics.listen: {metrics.listen!r} is not a loopback address; protect it with "
            "metrics.tls or metrics.basic_auth, or set metrics.allow_insecure_remote = true"
        )
    auth = metrics.basic_auth
    if auth is not None and (auth.password_file is None) == (auth.password_hash is None):
        errors.append("metrics.basic_auth: set exactly one of password_file and password_hash")
    return errors


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
