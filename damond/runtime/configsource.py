"""The configuration as the daemon takes it, and where it came from.

Besides the configuration's own checks, the files that ``[metrics]`` names must
be usable: they are read where they are used (the endpoint), and checked here so
that a start or a reload that could not serve them is refused with the rest. On a
real host each context's quota cap must fit its node, as a policy's must: the
capacities are the host's, read here (the simulated machine's are in the file).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damond.backend.sysfs.io import Session, SysfsIO
from damond.backend.sysfs.topology import read_topology
from damond.config import Settings, config_path, load_settings, quota_capacity_error
from damond.metrics.auth import endpoint_file_errors
from damond.model.errors import BackendError


def _endpoint_files(settings: Settings) -> list[str]:
    return endpoint_file_errors(settings.metrics)


def _quotas_fit_the_host(settings: Settings) -> list[str]:
    if settings.backend != "sysfs":
        return []
    session = Session(SysfsIO(), settings.sysfs.ebusy_retry_s)
    try:
        capacity = read_topology(session, settings.sysfs.devices_root).capacity_bytes
    except BackendError:
        return []  # the backend reports an unreadable topology when it opens
    errors: list[str] = []
    for i, ctx in enumerate(settings.contexts):
        error = quota_capacity_error(ctx.node, capacity.get(ctx.node), ctx.scheme.quota.max_bytes)
        if error is not None:
            errors.append(f"contexts[{i}].scheme.quota.max_bytes: {error}")
    return errors


def load_daemon_settings(path: Path | None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """The settings from file, environment and overrides, with every file they name usable;
    raise ConfigError listing every problem."""
    return load_settings(path, overrides, extra_checks=(_endpoint_files, _quotas_fit_the_host))


@dataclass(frozen=True)
class ConfigSource:
    """Where the settings came from at start, so that a reload reads the same."""

    path: Path | None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def default(cls) -> ConfigSource:
        """What a plain ``damond run`` reads: ``$DAMOND_CONFIG`` or the default file."""
        return cls(config_path(None))

    def load(self) -> Settings:
        return load_daemon_settings(self.path, self.overrides)
