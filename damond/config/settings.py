"""Settings: the whole configuration, and where it comes from (TOML file < ``DAMOND_*``
environment < command-line flags)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from damond.config.context import ContextConfig, seed_contexts
from damond.config.errors import ConfigError
from damond.config.fields import PositiveFloat
from damond.config.service import MetricsConfig, MqttConfig, SysfsConfig
from damond.config.simulation import SimulationConfig

DEFAULT_CONFIG_PATH = Path("/etc/damond/damond.toml")


toml_data: ContextVar[Mapping[str, Any] | None] = ContextVar("toml_data", default=None)


class _TomlSource(PydanticBaseSettingsSource):
    """The parsed TOML file, as the lowest-priority settings source."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        data = toml_data.get() or {}
        return data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(toml_data.get() or {})


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
    contexts: tuple[ContextConfig, ...] = Field(default_factory=seed_contexts)

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
