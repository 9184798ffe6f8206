"""Backends: where DAMON lives (the kernel's sysfs tree, or a simulated machine)."""

from damond.backend.base import Backend, BackendError, EnvironmentRefused, SchemeStats, Snapshot

__all__ = ["Backend", "BackendError", "EnvironmentRefused", "SchemeStats", "Snapshot"]
