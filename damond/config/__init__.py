"""The configuration: its schema, where it comes from, and how its errors read.

The package's face: the names other layers use, so that they need not know
which module of the folder holds each.
"""

from damond.config.checks import quota_capacity_error
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
from damond.config.loading import environment_warnings, load_settings
from damond.config.policy import PolicyConfig
from damond.config.service import MetricsConfig, MqttConfig, SysfsConfig
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
    "PolicyConfig",
    "QuotaConfig",
    "SchemeConfig",
    "Settings",
    "ShiftConfig",
    "SimNodeConfig",
    "SimulationConfig",
    "SysfsConfig",
    "WeightsConfig",
    "config_path",
    "environment_warnings",
    "is_loopback_host",
    "load_settings",
    "parse_listen",
    "quota_capacity_error",
]
