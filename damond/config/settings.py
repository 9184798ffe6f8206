"""Settings: the whole configuration, and where it comes from (TOML file < ``DAMOND_*``
environment < command-line flags)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidatorFunctionWrapHandler, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from damond.config.context import ContextConfig, seed_contexts
from damond.config.environment import NESTED, PREFIX, setting_variables
from damond.config.errors import ConfigError
from damond.config.fields import AnyCase, PositiveFloat
from damond.config.policy import PolicyConfig
from damond.config.presets import expand_contexts
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


class _EnvSource(EnvSettingsSource):
    """The environment, narrowed to the variables that are settings: the others are
    reported as warnings (:func:`unknown_variables`), not as errors."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return setting_variables(self.settings_cls, os.environ)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_nested_delimiter=NESTED,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )

    backend: Annotated[Literal["simulated", "sysfs"], AnyCase] = "simulated"
    """``simulated``: a simulated machine inside the daemon (see ``[simulation]``);
    ``sysfs``: the kernel's DAMON through ``/sys/kernel/mm/damon/admin`` (needs root)."""
    interval_s: PositiveFloat = 1.0
    """Control-loop period: one measure, decide, apply cycle per context."""
    state_dir: Path = Path("/var/lib/damond")
    """Accepted policies and the records of the kdamonds damond created."""
    log_level: Annotated[Literal["debug", "info", "warning", "error"], AnyCase] = "info"
    """Lowest level logged; a reload applies it."""
    on_exit: Annotated[Literal["stop", "leave"], AnyCase] = "stop"
    """At shutdown, turn off the kdamonds damond owns (``stop``) or leave them
    running on their last settings (``leave``), e.g. across an upgrade."""
    metrics: MetricsConfig = MetricsConfig()
    """The Prometheus endpoint."""
    mqtt: MqttConfig = MqttConfig()
    """The policy channel (remote targets and quotas over MQTT)."""
    policy: PolicyConfig = PolicyConfig()
    """What remote policies may do beyond retuning the configured contexts."""
    simulation: SimulationConfig = SimulationConfig()
    """The simulated machine of ``backend = "simulated"`` and ``damond simulate``."""
    sysfs: SysfsConfig = SysfsConfig()
    """The real DAMON backend (``backend = "sysfs"``)."""
    contexts: tuple[ContextConfig, ...] = Field(default_factory=seed_contexts)
    """The DAMON contexts damond steers, one kdamond each; at least one. The default is
    the two-context scenario on the simulated machine described in the README. An entry
    with ``preset`` stands for a recipe's contexts (see the preset entry below)."""

    @field_validator("contexts", mode="wrap")
    @classmethod
    def _expand_presets(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return expand_contexts(value, handler)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _EnvSource(settings_cls), _TomlSource(settings_cls))


def read_toml(path: Path) -> dict[str, Any]:
    """The file's table; every way a file can be unusable is a ConfigError."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"config file {path}: not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"config file {path}: is a directory"]) from None
    except PermissionError:
        raise ConfigError([f"config file {path}: permission denied"]) from None
    except OSError as exc:
        raise ConfigError([f"config file {path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"config file {path}: not valid UTF-8 (byte {exc.start}: {exc.reason})"]
        ) from None
    except RecursionError:
        raise ConfigError([f"config file {path}: invalid TOML: nested too deeply"]) from None
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
