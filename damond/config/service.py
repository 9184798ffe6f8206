"""The schema of the service sections: ``[metrics]``, ``[mqtt]`` and ``[sysfs]``."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator
from pydantic_core import PydanticCustomError

from damond.config.fields import NonNegativeInt, PositiveFloat, PositiveInt, _Strict
from damond.config.listen import parse_listen
from damond.config.passwordhash import PasswordHash
from damond.model.units import MiB


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
    :func:`damond.metrics.auth.hash_password`."""

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
