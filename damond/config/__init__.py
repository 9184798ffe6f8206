"""The configuration: its schema, where it comes from, and how its errors read.

The package's face: the names other layers use, so that they need not know
which module of the folder holds each.
"""

from damond.config.context import (
    AccessPatternConfig,
    ContextConfig,
    ControllerConfig,
    GoalConfig,
    IntervalsConfig,
    KernelFeed,
    Mode,
    QuotaConfig,
    SchemeConfig,
    WeightsConfig,
)
from damond.config.errors import ConfigError
from damond.config.fields import BasisPoints
from damond.config.listen import is_loopback_host, parse_listen
from damond.config.loading import load_settings
from damond.config.service import BasicAuthConfig, MetricsConfig, MqttConfig, SysfsConfig, TlsConfig
from damond.config.settings import DEFAULT_CONFIG_PATH, Settings, config_path
from damond.config.simulation import (
    FaultConfig,
    MemorySetConfig,
    ShiftConfig,
    SimNodeConfig,
    SimulationConfig,
)
from damond.model.units import GiB, MiB

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AccessPatternConfig",
    "BasicAuthConfig",
    "BasisPoints",
    "ConfigError",
    "ContextConfig",
    "ControllerConfig",
    "FaultConfig",
    "GiB",
    "GoalConfig",
    "IntervalsConfig",
    "KernelFeed",
    "MemorySetConfig",
    "MetricsConfig",
    "MiB",
    "Mode",
    "MqttConfig",
    "QuotaConfig",
    "SchemeConfig",
    "Settings",
    "ShiftConfig",
    "SimNodeConfig",
    "SimulationConfig",
    "SysfsConfig",
    "TlsConfig",
    "WeightsConfig",
    "config_path",
    "is_loopback_host",
    "load_settings",
    "parse_listen",
]
