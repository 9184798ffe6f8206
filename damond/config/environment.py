"""``DAMOND_*`` environment variables: which ones are settings, and what is wrong with the rest.

Every field of the schema has a variable: ``DAMOND_<FIELD>``, with ``__`` between
nested names (``DAMOND_MQTT__PORT``); a section or a list takes JSON
(``DAMOND_CONTEXTS='[...]'``). A ``DAMOND_*`` variable that names no field is
ignored with a warning that suggests the closest known name, at the top level and
nested alike; one whose JSON does not parse is a configuration error.
"""

from __future__ import annotations

import difflib
import json
import types
from collections.abc import Iterator, Mapping
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

PREFIX = "DAMOND_"
NESTED = "__"
NOT_SETTINGS = frozenset({"DAMOND_CONFIG"})
"""Variables damond reads that are not fields (the config file's path)."""


def _section(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (also when optional), None for a plain value or a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            if arg is not type(None) and (found := _section(arg)) is not None:
                return found
    return None


def _is_json(annotation: Any) -> bool:
    """Whether the variable's value is read as JSON (a section, list, tuple or mapping)."""
    if _section(annotation) is not None:
        return True
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_is_json(a) for a in get_args(annotation) if a is not type(None))
    return origin in (list, tuple, dict, set, frozenset)


def variables(model: type[BaseModel], prefix: str = PREFIX) -> Iterator[tuple[str, str, bool]]:
    """``(variable, dotted field path, takes JSON)`` for every field of ``model``, nested too."""
    for name, info in model.model_fields.items():
        var = f"{prefix}{name.upper()}"
        yield var, var[len(PREFIX) :].lower().replace(NESTED, "."), _is_json(info.annotation)
        if (section := _section(info.annotation)) is not None:
            yield from variables(section, var + NESTED)


def unknown_variables(model: type[BaseModel], environ: Mapping[str, str]) -> list[str]:
    """A warning for every ``DAMOND_*`` variable that is no setting, with the closest name."""
    known = [var for var, _, _ in variables(model)]
    warnings: list[str] = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(PREFIX) or upper in NOT_SETTINGS or upper in known:
            continue
        close = difflib.get_close_matches(upper, [*known, *NOT_SETTINGS], n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{name}: not a damond setting, ignored{hint}")
    return warnings


def json_errors(model: type[BaseModel], environ: Mapping[str, str]) -> list[str]:
    """An error for every variable that takes JSON and holds something else."""
    takes_json = {var for var, _, is_json in variables(model) if is_json}
    errors: list[str] = []
    for name in sorted(environ):
        if name.upper() not in takes_json:
            continue
        try:
            json.loads(environ[name])
        except ValueError as exc:
            errors.append(f"{name}: not valid JSON ({exc})")
        except RecursionError:
            errors.append(f"{name}: not valid JSON (nested too deeply)")
    return errors


def setting_variables(model: type[BaseModel], environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that are settings, as pydantic-settings reads them (lower-case names)."""
    known = {var for var, _, _ in variables(model)}
    return {name.lower(): value for name, value in environ.items() if name.upper() in known}
