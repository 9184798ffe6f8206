"""Configuration: TOML file < ``DAMOND_*`` environment < command-line flags.

Every error is reported with its field path (``contexts[1].goal.target_bp``)
and reason; :func:`load_settings` collects all of them instead of stopping at
the first, so an operator fixes a file in one pass.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl
import tomllib
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from damond import model
from damond.endpointauth import PasswordHash, read_password_file, server_ssl_context

GiB = 1 << 30
MiB = 1 << 20

DEFAULT_CONFIG_PATH = Path("/etc/damond/damond.toml")


def _basis_points(value: int) -> int:
    if not 0 <= value <= 10_000:
        raise PydanticCustomError(
            "bp_range", "must be between 0 and 10000, got {value}", {"value": value}
        )
    return value


BasisPoints = Annotated[int, AfterValidator(_basis_points)]


def _positive(value: float) -> float:
    if value <= 0:
        raise PydanticCustomError(
            "positive", "must be greater than 0, got {value}", {"value": value}
        )
    return value


PositiveFloat = Annotated[float, AfterValidator(_positive)]
PositiveInt = Annotated[int, AfterValidator(_positive)]


def _non_negative(value: int) -> int:
    if value < 0:
        raise PydanticCustomError(
            "non_negative", "must be 0 or more, got {value}", {"value": value}
        )
    return value


NonNegativeInt = Annotated[int, AfterValidator(_non_negative)]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Mode(StrEnum):
    DAEMON = "daemon"
    KERNEL = "kernel"
    NATIVE = "native"


class KernelFeed(StrEnum):
    """What ``kernel`` mode feeds the kernel's tuner.

    ``corrected`` turns the metric around for schemes that lower it, so that a
    larger quota always raises the fed value (what the kernel's tuner assumes);
    ``literal`` feeds it as the seed RFC would have, to reproduce its problem.
    """

    CORRECTED = "corrected"
    LITERAL = "literal"


class IntervalsConfig(_Strict):
    sample_us: PositiveInt = 50_000
    aggr_us: PositiveInt = 1_000_000
    update_us: PositiveInt = 60_000_000


class AccessPatternConfig(_Strict):
    """Kernel units: nr_accesses in samples per aggregation, age in aggregations."""

    nr_accesses_min: NonNegativeInt = 10
    nr_accesses_max: NonNegativeInt = 2**32 - 1
    age_min: NonNegativeInt = 3
    age_max: NonNegativeInt = 2**32 - 1


class WeightsConfig(_Strict):
    sz_permil: NonNegativeInt = 0
    nr_accesses_permil: NonNegativeInt = 500
    age_permil: NonNegativeInt = 500


class QuotaConfig(_Strict):
    max_bytes: PositiveInt = 512 * MiB
    """The most the scheme may move per reset interval, whatever sets the quota."""
    reset_interval_ms: PositiveInt = 1_000
    weights: WeightsConfig = WeightsConfig()


class SchemeConfig(_Strict):
    action: Literal["migrate_hot", "migrate_cold"] = "migrate_hot"
    target_nid: NonNegativeInt
    access_pattern: AccessPatternConfig = AccessPatternConfig()
    quota: QuotaConfig = QuotaConfig()


class GoalConfig(_Strict):
    metric: Literal["node_target_mem_bp", "node_eligible_mem_bp"] = "node_target_mem_bp"
    nid: NonNegativeInt
    target_bp: BasisPoints


class ControllerConfig(_Strict):
    deadband_bp: BasisPoints = 20
    gain: Annotated[float, Field(gt=0, le=1)] = 0.5
    lag_s: float | None = None
    """Time until migrated memory looks hot at its destination; derived from the
    access pattern and intervals when unset."""
    tuner: model.GoalTuner = model.GoalTuner.CONSIST
    kernel_feed: KernelFeed = KernelFeed.CORRECTED


class ContextConfig(_Strict):
    name: str
    node: NonNegativeInt
    mode: Mode = Mode.DAEMON
    enabled: bool = True
    intervals: IntervalsConfig = IntervalsConfig()
    scheme: SchemeConfig
    goal: GoalConfig
    controller: ControllerConfig = ControllerConfig()

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise PydanticCustomError(
                "context_name",
                "must be 1-63 letters, digits, '_', '.' or '-', starting with a letter or "
                "digit, got {value}",
                {"value": repr(value)},
            )
        return value

    @property
    def direction(self) -> model.Direction | None:
        """How this context's scheme moves its goal metric, None if it cannot."""
        if self.goal.nid == self.scheme.target_nid:
            return model.Direction.RAISES
        if self.goal.nid == self.node:
            return model.Direction.LOWERS
        return None


class SimNodeConfig(_Strict):
    id: NonNegativeInt
    capacity_bytes: PositiveInt


class MemorySetConfig(_Strict):
    """A set of memory chunks with one access rate (probability per sample)."""

    name: str
    bytes: PositiveInt
    access_rate: Annotated[float, Field(ge=0, le=1)]
    placement: Literal["interleave"] | NonNegativeInt = "interleave"


class ShiftConfig(_Strict):
    """At ``at_s``, ``fraction`` of set ``from_set`` swaps access rates with
    as many bytes of ``to_set``: the hot set moves."""

    at_s: Annotated[float, Field(ge=0)]
    from_set: str
    to_set: str
    fraction: Annotated[float, Field(gt=0, le=1)]


class FaultConfig(_Strict):
    """An injected failure of a context's backend calls, for testing supervision.

    ``raise`` makes ``count`` snapshots of the context fail from ``at_s`` on;
    ``hang`` makes its snapshots block from ``at_s`` on, until cancelled.
    """

    context: str
    at_s: Annotated[float, Field(ge=0)] = 0.0
    kind: Literal["raise", "hang"] = "raise"
    count: PositiveInt = 1


class SimulationConfig(_Strict):
    seed: int = 1
    chunk_bytes: PositiveInt = 64 * MiB
    bandwidth_bytes_per_s: PositiveInt = 1 * GiB
    pingpong_window_s: PositiveFloat = 600.0
    nodes: tuple[SimNodeConfig, ...] = (
        SimNodeConfig(id=0, capacity_bytes=20 * GiB),
        SimNodeConfig(id=1, capacity_bytes=40 * GiB),
    )
    sets: tuple[MemorySetConfig, ...] = (
        MemorySetConfig(name="hot", bytes=28 * GiB, access_rate=0.9, placement="interleave"),
        MemorySetConfig(name="warm", bytes=1 * GiB, access_rate=0.05, placement=0),
        MemorySetConfig(name="idle", bytes=1 * GiB, access_rate=0.0, placement=0),
        MemorySetConfig(name="cold", bytes=8 * GiB, access_rate=0.01, placement=1),
    )
    shifts: tuple[ShiftConfig, ...] = (
        ShiftConfig(at_s=1800, from_set="hot", to_set="cold", fraction=0.25),
    )
    faults: tuple[FaultConfig, ...] = ()

    @property
    def node_ids(self) -> list[int]:
        return [n.id for n in self.nodes]


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT`` -> (host, port); ValueError says what is wrong."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError("must be HOST:PORT or [IPV6]:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address must be in brackets, as [::1]:9464")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError("port must be a number") from None
    if not 1 <= port <= 65535:
        raise ValueError("port must be between 1 and 65535")
    return host, port


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen_address(value: str) -> str:
    try:
        parse_listen(value)
    except ValueError as exc:
        raise PydanticCustomError("listen_address", f"{exc}, got {value!r}") from None
    return value


class TlsConfig(_Strict):
    """Serve the endpoint over HTTPS with this PEM certificate (chain) and key."""

    cert_file: Path
    key_file: Path


class BasicAuthConfig(_Strict):
    """Require HTTP basic auth; exactly one of ``password_file`` and ``password_hash``."""

    user: str
    password_file: Path | None = None
    password_hash: str | None = None
    """``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>``, from
    :func:`damond.endpointauth.hash_password`."""

    @field_validator("user")
    @classmethod
    def _valid_user(cls, value: str) -> str:
        if not value or ":" in value:
            raise PydanticCustomError(
                "basic_auth_user", f"must be non-empty and without ':', got {value!r}"
            )
        return value

    @field_validator("password_hash")
    @classmethod
    def _valid_hash(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                PasswordHash.parse(value)
            except ValueError as exc:
                raise PydanticCustomError("password_hash", str(exc)) from None
        return value


class MetricsConfig(_Strict):
    enabled: bool = True
    listen: Annotated[str, AfterValidator(_listen_address)] = "127.0.0.1:9464"
    tls: TlsConfig | None = None
    basic_auth: BasicAuthConfig | None = None
    allow_insecure_remote: bool = False
    """Serve a non-loopback address without TLS and basic auth."""


_TOPIC_LEVEL_RE = re.compile(r"^[^/+#\x00]{1,128}$")
_TOPIC_PREFIX_RE = re.compile(r"^[^/+#\x00]{1,64}(/[^/+#\x00]{1,64})*$")


def _topic_level(value: str) -> str:
    if not _TOPIC_LEVEL_RE.match(value):
        raise PydanticCustomError(
            "topic_level",
            "must be 1-128 characters without '/', '+', '#' or NUL (one MQTT topic level), "
            "got '{value}'",
            {"value": value},
        )
    return value


def _topic_prefix(value: str) -> str:
    if not _TOPIC_PREFIX_RE.match(value):
        raise PydanticCustomError(
            "topic_prefix",
            "must be one or more '/'-separated MQTT topic levels without '+', '#' or NUL, "
            "got '{value}'",
            {"value": value},
        )
    return value


TopicLevel = Annotated[str, AfterValidator(_topic_level)]


class MqttConfig(_Strict):
    """The policy channel: broker, identity, topics and the limits on what it accepts."""

    enabled: bool = True
    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    host_id: TopicLevel = Field(default_factory=socket.gethostname)
    group: TopicLevel | None = None
    topic_prefix: Annotated[str, AfterValidator(_topic_prefix)] = "damond"
    client_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    """MQTT client identifier; ``damond-<host_id>`` when unset."""
    username: str | None = None
    password_file: Path | None = None
    """A file whose first line is the password; read at every connection attempt."""
    tls: bool = False
    """Connect with TLS; implied by ``ca_file``, ``cert_file`` or ``key_file``."""
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    policy_keys: tuple[Path, ...] = ()
    """PEM files of Ed25519 public keys; when set, every policy must be signed by one."""
    rate_limit_per_s: PositiveFloat = 10.0
    """Policy messages processed per second; beyond it the newest per scope wins."""
    max_payload_bytes: Annotated[int, Field(ge=64, le=16 * MiB)] = 64 * 1024
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    reconnect_max_s: PositiveFloat = 60.0
    """The cap of the reconnection backoff (which starts at 0.5 s, with jitter)."""
    state_interval_s: PositiveFloat = 30.0
    """How often the retained state is republished when nothing changes."""

    @property
    def effective_client_id(self) -> str:
        return self.client_id or f"damond-{self.host_id}"

    @property
    def use_tls(self) -> bool:
        return self.tls or any(f is not None for f in (self.ca_file, self.cert_file, self.key_file))


class SysfsConfig(_Strict):
    """The real DAMON backend: where its trees are and how patiently it talks to them."""

    admin_root: Path = Path("/sys/kernel/mm/damon/admin")
    devices_root: Path = Path("/sys/devices/system")
    module_root: Path = Path("/sys/module")
    proc_root: Path = Path("/proc")
    spare_kdamonds: NonNegativeInt = 1
    """Idle kdamonds staged beside the contexts' own, for contexts added by a reload
    (``nr_kdamonds`` cannot grow while any kdamond runs)."""
    command_timeout_s: PositiveFloat = 30.0
    ebusy_retry_s: PositiveFloat = 5.0
    refresh_ms: NonNegativeInt = 1_000
    """The kernel's own stats refresh (6.17+); 0 makes damond ask for stats each iteration."""
    stat_apply_interval_us: NonNegativeInt = 0
    """Apply interval of the per-node measurement schemes; 0 is the aggregation interval."""
    nr_regions_min: PositiveInt = 10
    nr_regions_max: PositiveInt = 1_000
    topology_refresh_s: PositiveFloat = 10.0
    measure_window_s: PositiveFloat = 3.0
    """Eligible bytes are averaged over this many seconds of DAMON's apply intervals."""
    warmup_aggregations: NonNegativeInt = 10
    """Aggregation intervals after a kdamond starts before its measurements count: its
    first regions are coarse, and a coarse region with any access counts whole."""


def _seed_contexts() -> tuple[ContextConfig, ...]:
    """The seed RFC's two-context scenario."""
    return (
        ContextConfig(
            name="node0",
            node=0,
            scheme=SchemeConfig(target_nid=1),
            goal=GoalConfig(metric="node_target_mem_bp", nid=0, target_bp=6000),
        ),
        ContextConfig(
            name="node1",
            node=1,
            scheme=SchemeConfig(target_nid=0),
            goal=GoalConfig(metric="node_target_mem_bp", nid=1, target_bp=4000),
        ),
    )


_toml_data: ContextVar[Mapping[str, Any] | None] = ContextVar("_toml_data", default=None)


class _TomlSource(PydanticBaseSettingsSource):
    """The parsed TOML file, as the lowest-priority settings source."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        data = _toml_data.get() or {}
        return data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_toml_data.get() or {})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DAMOND_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    backend: Literal["simulated", "sysfs"] = "simulated"
    interval_s: PositiveFloat = 1.0
    state_dir: Path = Path("/var/lib/damond")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    on_exit: Literal["stop", "leave"] = "stop"
    """At shutdown, turn off the kdamonds damond owns (``stop``) or leave them
    running on their last settings (``leave``), e.g. across an upgrade."""
    metrics: MetricsConfig = MetricsConfig()
    mqtt: MqttConfig = MqttConfig()
    simulation: SimulationConfig = SimulationConfig()
    sysfs: SysfsConfig = SysfsConfig()
    contexts: tuple[ContextConfig, ...] = Field(default_factory=_seed_contexts)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    def context(self, name: str) -> ContextConfig:
        for ctx in self.contexts:
            if ctx.name == name:
                return ctx
        raise KeyError(name)


class ConfigError(Exception):
    """An invalid configuration; ``errors`` holds one ``path: reason`` per problem."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


def format_loc(loc: Sequence[str | int]) -> str:
    """``('contexts', 1, 'goal')`` -> ``contexts[1].goal``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


_PLAIN_INPUT = (str, int, float, bool)


def _plain_repr(value: object) -> str | None:
    return repr(value) if isinstance(value, _PLAIN_INPUT) else None


def describe_error(
    err: Mapping[str, Any],
    describe_input: Callable[[object], str | None] = _plain_repr,
) -> str:
    """One pydantic error as a reason an operator reads, ending in what was given.

    ``describe_input`` says how the rejected value is shown (None: not at all).
    """
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    msg = str(err["msg"])
    if "got " in msg:
        return msg
    msg = msg[0].lower() + msg[1:]
    got = describe_input(err.get("input"))
    return msg if got is None else f"{msg}, got {got}"


def _pydantic_errors(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        # union members show up as extra loc parts ("int", "literal['interleave']")
        loc = [p for p in loc if not (isinstance(p, str) and ("[" in p or p in {"int", "str"}))]
        lines.append(f"{format_loc(loc)}: {describe_error(err)}")
    return sorted(set(lines), key=lines.index)


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
    """The endpoint's protection: files load, and a remote listener is protected."""
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
    if metrics.tls is not None:
        missing = False
        for field in ("cert_file", "key_file"):
            path: Path = getattr(metrics.tls, field)
            if not path.is_file():
                errors.append(f"metrics.tls.{field}: {path} is not a readable file")
                missing = True
        if not missing:
            try:
                server_ssl_context(metrics.tls.cert_file, metrics.tls.key_file)
            except (OSError, ssl.SSLError) as exc:
                errors.append(
                    f"metrics.tls: {metrics.tls.cert_file} and {metrics.tls.key_file} do not "
                    f"load as a PEM certificate and its private key: {exc}"
                )
    auth = metrics.basic_auth
    if auth is not None:
        if (auth.password_file is None) == (auth.password_hash is None):
            errors.append("metrics.basic_auth: set exactly one of password_file and password_hash")
        elif auth.password_file is not None:
            try:
                read_password_file(auth.password_file)
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                errors.append(f"metrics.basic_auth.password_file: {auth.password_file}: {reason}")
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


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"config file {path}: not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"config file {path}: is a directory"]) from None
    except PermissionError:
        raise ConfigError([f"config file {path}: permission denied"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config file {path}: invalid TOML: {exc}"]) from None


def config_path(cli_path: Path | None) -> Path | None:
    """The file to read: ``-c``, else ``$DAMOND_CONFIG``, else the default if it exists."""
    if cli_path is not None:
        return cli_path
    env = os.environ.get("DAMOND_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def load_settings(path: Path | None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build the settings from file, environment and CLI overrides, or raise ConfigError."""
    data = read_toml(path) if path is not None else {}
    token = _toml_data.set(data)
    try:
        settings = Settings(**dict(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_pydantic_errors(exc)) from None
    finally:
        _toml_data.reset(token)
    errors = semantic_errors(settings)
    if errors:
        raise ConfigError(errors)
    return settings
