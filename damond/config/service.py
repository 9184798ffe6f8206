"""The schema of the service sections: ``[metrics]``, ``[mqtt]`` and ``[sysfs]``."""

from __future__ import annotations

import re
import socket
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from damond.config.fields import NonNegativeInt, PositiveFloat, PositiveInt, _Strict
from damond.config.listen import parse_listen
from damond.model.units import MiB


def _listen_address(value: str) -> str:
    try:
        parse_listen(value)
    except ValueError as exc:
        raise PydanticCustomError("listen_address", f"{exc}, got {value!r}") from None
    return value


REMOVED_METRICS_FIELDS = ("tls", "basic_auth")


class MetricsConfig(_Strict):
    enabled: bool = True
    """Serve ``/metrics``, ``/healthz`` and ``/status`` (docs/metrics.md)."""
    listen: Annotated[str, AfterValidator(_listen_address)] = "127.0.0.1:9464"
    """``HOST:PORT`` or ``[IPV6]:PORT`` to listen on."""
    web_config_file: Path | None = None
    """TLS and basic auth of the endpoint: a web configuration file in the Prometheus
    exporter-toolkit format, as node_exporter's ``--web.config.file`` (docs/metrics.md)."""
    allow_insecure_remote: bool = False
    """Serve a non-loopback address without TLS and basic auth."""

    @model_validator(mode="before")
    @classmethod
    def _no_inline_protection(cls, data: Any) -> Any:
        """A configuration still using the inline tables of earlier versions is told
        where TLS and basic auth went, not merely that the fields are unknown."""
        if isinstance(data, Mapping):
            removed = [f"[metrics.{name}]" for name in REMOVED_METRICS_FIELDS if name in data]
            if removed:
                raise PydanticCustomError(
                    "removed_field",
                    f"{' and '.join(removed)} {'is' if len(removed) == 1 else 'are'} no longer "
                    "read: put TLS and basic auth in "
                    "a web configuration file (the exporter-toolkit format node_exporter "
                    "reads) and name it in metrics.web_config_file; see docs/metrics.md",
                )
        return data


_TOPIC_LEVEL_RE = re.compile(r"^[^/+#\x00]{1,128}$")
_TOPIC_PREFIX_RE = re.compile(r"^[^/+#\x00]{1,64}(/[^/+#\x00]{1,64})*$")


_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Control and format characters, lone surrogates (undecodable bytes from the
environment) and line separators: a broker refuses them in a client id or topic."""


def _unprintable(value: str) -> bool:
    return any(unicodedata.category(ch) in _UNPRINTABLE_CATEGORIES for ch in value)


def _topic_level(value: str) -> str:
    if not _TOPIC_LEVEL_RE.match(value) or _unprintable(value):
        raise PydanticCustomError(
            "topic_level",
            "must be 1-128 printable characters (valid UTF-8) without '/', '+' or '#' "
            "(one MQTT topic level), got {value}",
            {"value": repr(value)},
        )
    return value


def _printable(value: str) -> str:
    if _unprintable(value):
        raise PydanticCustomError(
            "printable",
            "must be printable characters (valid UTF-8, no control characters), got {value}",
            {"value": repr(value)},
        )
    return value


def _topic_prefix(value: str) -> str:
    if not _TOPIC_PREFIX_RE.match(value) or _unprintable(value):
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

    enabled: bool = False
    """Take policies over MQTT. When not set, the channel is on exactly when ``host``
    is set: a configuration that names no broker runs without one, and says so."""
    host: str = "localhost"
    """The broker's host name or address."""
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    """The broker's port (mosquitto: 1883, or 8883 for TLS)."""
    host_id: TopicLevel = Field(default_factory=socket.gethostname)
    """This host's name in the topics (``<prefix>/hosts/<host_id>/...``); default: the
    host name."""
    group: TopicLevel | None = None
    """The group whose policies (``<prefix>/groups/<group>/policy``) this host takes."""
    topic_prefix: Annotated[str, AfterValidator(_topic_prefix)] = "damond"
    """The first levels of every topic."""
    client_id: (
        Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_printable)] | None
    ) = None
    """MQTT client identifier; ``damond-<host_id>`` when unset."""
    username: str | None = None
    """User name at the broker."""
    password_file: Path | None = None
    """A file whose first line is the password; read at every connection attempt."""
    tls: bool = False
    """Connect with TLS; implied by ``ca_file``, ``cert_file`` or ``key_file``."""
    ca_file: Path | None = None
    """PEM file of the CA that signed the broker's certificate; default: the system's."""
    cert_file: Path | None = None
    """PEM client certificate (with ``key_file``) for brokers that require one."""
    key_file: Path | None = None
    """PEM private key of ``cert_file``."""
    policy_keys: tuple[Path, ...] = ()
    """A list of file paths, each a PEM file of an Ed25519 public key; when set, every
    policy must be signed by one of them."""
    rate_limit_per_s: PositiveFloat = 10.0
    """Policy messages processed per second; beyond it the newest per scope wins."""
    max_payload_bytes: Annotated[int, Field(ge=64, le=16 * MiB)] = 64 * 1024
    """Larger policy messages are rejected unparsed (with an ack)."""
    max_packet_bytes: Annotated[int, Field(ge=1024, le=256 * MiB)] = 256 * 1024
    """The MQTT v5 Maximum Packet Size the daemon announces: the broker drops larger
    messages for it; larger ones that still arrive are dropped unread, with a log line."""
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    """MQTT keep-alive: the broker drops the connection (and publishes the last will)
    after 1.5 times this without a packet."""
    reconnect_initial_s: PositiveFloat = 1.0
    """The first retries after a lost connection wait this long; later ones grow."""
    reconnect_max_s: PositiveFloat = 30.0
    """The cap of the reconnection backoff (jittered)."""
    state_interval_s: PositiveFloat = 30.0
    """How often the retained state is republished when nothing changes."""

    @model_validator(mode="before")
    @classmethod
    def _enabled_when_a_broker_is_named(cls, data: Any) -> Any:
        if isinstance(data, dict) and "enabled" not in data:
            return {**data, "enabled": "host" in data}
        return data

    @model_validator(mode="after")
    def _packet_holds_a_payload(self) -> MqttConfig:
        if self.max_packet_bytes <= self.max_payload_bytes:
            raise PydanticCustomError(
                "max_packet_bytes",
                "max_packet_bytes ({packet}) must be larger than max_payload_bytes "
                "({payload}): a packet carries the payload and its topic",
                {"packet": self.max_packet_bytes, "payload": self.max_payload_bytes},
            )
        return self

    @property
    def effective_client_id(self) -> str:
        return self.client_id or f"damond-{self.host_id}"

    @property
    def use_tls(self) -> bool:
        return self.tls or any(f is not None for f in (self.ca_file, self.cert_file, self.key_file))


class SysfsConfig(_Strict):
    """The real DAMON backend: where its trees are and how patiently it talks to them."""

    admin_root: Path = Path("/sys/kernel/mm/damon/admin")
    """DAMON's sysfs interface."""
    devices_root: Path = Path("/sys/devices/system")
    """Where the NUMA nodes and memory blocks are listed."""
    module_root: Path = Path("/sys/module")
    """Where the DAMON modules' parameters are (to find one that holds DAMON)."""
    proc_root: Path = Path("/proc")
    """procfs: kernel release, boot id and ``vmstat``."""
    cgroup_root: Path | None = None
    """The cgroup v2 mount, whose ``memory.numa_stat`` files the ``node_memcg_*`` goals
    are computed from; unset: the ``cgroup2`` mount in ``/proc/self/mounts``."""
    spare_kdamonds: NonNegativeInt = 1
    """Idle kdamonds staged beside the contexts' own, for contexts added by a reload
    (``nr_kdamonds`` cannot grow while any kdamond runs)."""
    command_timeout_s: PositiveFloat = 30.0
    """A sysfs operation that takes longer fails (the context backs off and retries)."""
    ebusy_retry_s: PositiveFloat = 5.0
    """How long a write the kernel answers EBUSY is retried."""
    refresh_ms: NonNegativeInt = 1_000
    """The kernel's own stats refresh (6.17+); 0 makes damond ask for stats each iteration."""
    stat_apply_interval_us: NonNegativeInt = 0
    """Apply interval of the per-node measurement schemes; 0 is the aggregation interval."""
    nr_regions_min: PositiveInt = 10
    """The least monitoring regions per context (DAMON's ``nr_regions/min``)."""
    nr_regions_max: PositiveInt = 1_000
    """The most monitoring regions per context (DAMON's ``nr_regions/max``)."""
    topology_refresh_s: PositiveFloat = 10.0
    """How often the nodes' memory (hotplug) is read again."""
    measure_window_s: PositiveFloat = 3.0
    """Eligible bytes are averaged over this many seconds of DAMON's apply intervals."""
    warmup_aggregations: NonNegativeInt = 10
    """Aggregation intervals after a kdamond starts before its measurements count: its
    first regions are coarse, and a coarse region with any access counts whole."""
