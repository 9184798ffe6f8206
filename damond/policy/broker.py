"""Topic names and broker connection settings, shared by the daemon and the operator tool."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from damond.config import MqttConfig
from damond.policy.document import Scope


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str

    @property
    def fleet_policy(self) -> str:
        return f"{self.prefix}/fleet/policy"

    def group_policy(self, group: str) -> str:
        return f"{self.prefix}/groups/{group}/policy"

    def host(self, host: str, leaf: str) -> str:
        """``policy``, ``ack``, ``state`` or ``online`` of one host (``+`` for all)."""
        return f"{self.prefix}/hosts/{host}/{leaf}"

    def host_of(self, topic: str, leaf: str) -> str | None:
        """The host level of ``<prefix>/hosts/<host>/<leaf>``, None for other topics."""
        head = f"{self.prefix}/hosts/"
        tail = f"/{leaf}"
        if topic.startswith(head) and topic.endswith(tail):
            host = topic[len(head) : -len(tail)]
            return host if host and "/" not in host else None
        return None

    def policy_topics(self, host: str, group: str | None) -> dict[str, Scope]:
        topics = {self.fleet_policy: Scope.FLEET, self.host(host, "policy"): Scope.HOST}
        if group is not None:
            topics[self.group_policy(group)] = Scope.GROUP
        return topics


class CredentialsError(Exception):
    """The configured password file cannot be read."""


def read_password(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CredentialsError(f"mqtt.password_file {path}: cannot read: {reason}") from None
    lines = text.splitlines()
    return lines[0] if lines else ""


def client_options(cfg: MqttConfig) -> dict[str, Any]:
    """Keyword arguments for :class:`aiomqtt.Client` (reads the password file: blocking)."""
    options: dict[str, Any] = {
        "hostname": cfg.host,
        "port": cfg.port,
        "keepalive": cfg.keepalive_s,
        "timeout": 5.0,
        # acks are small and answer a request: Nagle's delay would add tens of ms to each
        "socket_options": [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    }
    if cfg.username is not None:
        options["username"] = cfg.username
        if cfg.password_file is not None:
            options["password"] = read_password(cfg.password_file)
    if cfg.use_tls:
        options["tls_params"] = aiomqtt.TLSParameters(
            ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
            certfile=str(cfg.cert_file) if cfg.cert_file else None,
            keyfile=str(cfg.key_file) if cfg.key_file else None,
        )
    return options
