"""What a start needs besides a valid configuration: a free metrics port and a usable
state directory (``damond check`` and ``damond run`` refuse with exit 3 instead of
failing after the start), and the files the policy channel reads only when it connects
(``damond check`` reports them with the configuration's errors)."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from damond.config import ConfigError, MqttConfig, Settings, parse_listen


def state_dir_problem(path: Path) -> str | None:
    """Why damond could not keep its state in ``path`` (None when it can)."""
    if path.exists():
        if not path.is_dir():
            return f"state_dir: {path} is not a directory"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"state_dir: {path} is not writable by this user"
        return None
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        return f"state_dir: {path} does not exist and cannot be created in {ancestor}"
    return None


_BIND_REASONS = {
    errno.EADDRINUSE: "is in use by another process",
    errno.EADDRNOTAVAIL: "is not an address of this host",
    errno.EACCES: "needs privileges to bind",
}


def listen_problem(listen: str) -> str | None:
    """Why the metrics endpoint could not listen on ``listen`` (None when it can)."""
    host, port = parse_listen(listen)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"metrics.listen: {listen!r}: cannot resolve {host!r} ({exc.strerror})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        # as the endpoint itself binds: a port in TIME_WAIT is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            reason = _BIND_REASONS.get(exc.errno or 0, f"cannot be bound ({exc.strerror})")
            return f"metrics.listen: {listen} {reason}"
    return None


def host_problems(settings: Settings) -> list[str]:
    """Every reason this host cannot run ``settings`` that the configuration cannot show."""
    problems: list[str] = []
    uses_state_dir = settings.backend == "sysfs" or settings.mqtt.enabled
    if uses_state_dir and (problem := state_dir_problem(settings.state_dir)) is not None:
        problems.append(problem)
    if settings.metrics.enabled and (problem := listen_problem(settings.metrics.listen)):
        problems.append(problem)
    return problems


def mqtt_file_errors(cfg: MqttConfig) -> list[str]:
    """Every problem with the files the policy channel reads only at run time (policy
    keys, the broker password), outside the configuration's validation."""
    # imported here: the policy modules (and cryptography) are for the commands that use them
    from damond.policy.broker import CredentialsError, read_password
    from damond.policy.signing import configured_keys

    errors: list[str] = []
    try:
        configured_keys(cfg)
    except ConfigError as exc:
        errors += exc.errors
    if cfg.username is not None and cfg.password_file is not None:
        try:
            read_password(cfg.password_file)
        except CredentialsError as exc:
            errors.append(str(exc))
    return errors
