"""The configuration as the daemon takes it, and where it came from.

Besides the configuration's own checks, the files that ``[metrics]`` names must
be usable: they are read where they are used (the endpoint), and checked here so
that a start or a reload that could not serve them is refused with the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damond.config import Settings, config_path, load_settings
from damond.metrics.auth import endpoint_file_errors


def _endpoint_files(settings: Settings) -> list[str]:
    return endpoint_file_errors(settings.metrics)


def load_daemon_settings(path: Path | None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """The settings from file, environment and overrides, with every file they name usable;
    raise ConfigError listing every problem."""
    return load_settings(path, overrides, extra_checks=(_endpoint_files,))


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
