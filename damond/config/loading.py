"""Loading the configuration: build it from its sources and validate it whole.

Every error is reported with its field path (``contexts[1].goal.target_bp``)
and reason; all of them are collected instead of stopping at the first, so an
operator fixes a file in one pass."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from damond.config.checks import semantic_errors
from damond.config.environment import json_errors, unknown_variables
from damond.config.errors import ConfigError
from damond.config.settings import Settings, read_toml, toml_data
from damond.config.wording import pydantic_errors

ExtraCheck = Callable[[Settings], list[str]]
"""A check that a layer above adds (reading the files a section names), reported
together with the configuration's own errors."""


def load_settings(
    path: Path | None,
    overrides: Mapping[str, Any] | None = None,
    extra_checks: Sequence[ExtraCheck] = (),
) -> Settings:
    """Build the settings from file, environment and CLI overrides, or raise ConfigError."""
    data = read_toml(path) if path is not None else {}
    unreadable = json_errors(Settings, os.environ)
    if unreadable:
        raise ConfigError(unreadable)
    token = toml_data.set(data)
    try:
        settings = Settings(**dict(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(pydantic_errors(exc)) from None
    finally:
        toml_data.reset(token)
    errors = semantic_errors(settings)
    for check in extra_checks:
        errors += check(settings)
    if errors:
        raise ConfigError(errors)
    return settings


def environment_warnings() -> list[str]:
    """One line per ``DAMOND_*`` variable that is no setting (it is ignored)."""
    return unknown_variables(Settings, os.environ)
