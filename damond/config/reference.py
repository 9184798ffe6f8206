"""The configuration reference (``docs/configuration.md``), generated from the schema so
that it cannot drift: every section and field with its type, default, environment
variable and description (the field's docstring).

Regenerate with ``python -m damond.config.reference > docs/configuration.md``;
``tests/test_config_reference.py`` fails when the file is out of date.
"""

from __future__ import annotations

import enum
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from damond.config.environment import NESTED, PREFIX
from damond.config.presets import MtierPresetConfig
from damond.config.settings import Settings

COMMAND = "python -m damond.config.reference > docs/configuration.md"

INTRODUCTION = f"""\
# Configuration reference

<!-- generated from the schema in damond/config/ by `{COMMAND}`;
     tests/test_config_reference.py fails when this file is out of date -->

damond reads a TOML file (`-c FILE`, else `$DAMOND_CONFIG`, else
`/etc/damond/damond.toml` if it exists, else the embedded default). Every field
can be overridden by an environment variable, named in the tables below (`__`
between nested names; a section or a list takes JSON, as
`DAMOND_CONTEXTS='[...]'`), and some by flags of `damond run` (`--backend`,
`--interval`, `--log-level`, `--state-dir`). Flags win over the environment,
which wins over the file. A `DAMOND_*` variable that names no field is ignored
with a warning that suggests the closest name. Choices (`log_level`, `mode`, ...)
are accepted in any case.

An invalid configuration exits 2 and lists every error with its field path;
`damond check` validates a file without starting anything.
"""


def _plain(annotation: Any) -> Any:
    """The annotation without ``Annotated`` metadata."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _model_of(annotation: Any) -> type[BaseModel] | None:
    annotation = _plain(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        models = [m for a in get_args(annotation) if (m := _model_of(a)) is not None]
        return models[0] if len(models) == 1 else None
    return None


def _list_item(annotation: Any) -> Any | None:
    """The item type of a list or tuple field, None for other fields."""
    annotation = _plain(annotation)
    if get_origin(annotation) in (tuple, list):
        return get_args(annotation)[0]
    return None


_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "path"}


def type_name(annotation: Any) -> str:
    annotation = _plain(annotation)
    origin = get_origin(annotation)
    if origin is Literal:
        return " or ".join(_toml(v) for v in get_args(annotation))
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        names = [type_name(a) for a in args]
        unique = sorted(set(names), key=names.index)
        return " or ".join(unique) + (
            " (optional)" if len(args) < len(get_args(annotation)) else ""
        )
    if (item := _list_item(annotation)) is not None:
        return f"list of {type_name(item)}"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " or ".join(_toml(m.value) for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    return _SCALARS.get(annotation, str(annotation))


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return _toml(value.value)
    if isinstance(value, str | Path):
        return f'"{value}"'
    return str(value)


def default_text(info: FieldInfo) -> str:
    """The default as a table cell: a TOML value in code, or what stands for it in words."""
    if info.default_factory is not None:
        return "computed"
    default = info.default
    if default is PydanticUndefined:
        return "required"
    if default is None:
        return "unset"
    if isinstance(default, BaseModel):
        return "its section's defaults"
    if isinstance(default, tuple):
        if default and isinstance(default[0], BaseModel):
            return f"{len(default)} built-in entries"
        return "`[" + ", ".join(_toml(v) for v in default) + "]`"
    return f"`{_toml(default)}`"


_ROLE = re.compile(r":\w+:`~?([^`]+)`")


def description(info: FieldInfo) -> str:
    text = " ".join((info.description or "").split())
    text = _ROLE.sub(r"`\1`", text).replace("``", "`")
    return text.replace("|", "\\|")


def sections(
    model: type[BaseModel], path: str = "", env_prefix: str | None = PREFIX
) -> Iterator[tuple[str, type[BaseModel], str | None]]:
    """``(TOML header, model, environment prefix)`` for ``model`` and every section
    below it; fields inside lists have no variable of their own (None)."""
    yield path, model, env_prefix
    for name, info in model.model_fields.items():
        sub_path = f"{path.strip('[]')}.{name}".lstrip(".")
        if (sub := _model_of(info.annotation)) is not None:
            env = None if env_prefix is None else f"{env_prefix}{name.upper()}{NESTED}"
            yield from sections(sub, f"[{sub_path}]", env)
        elif (item := _list_item(info.annotation)) is not None and (
            sub := _model_of(item)
        ) is not None:
            yield from sections(sub, f"[[{sub_path}]]", None)


def _table(model: type[BaseModel], env_prefix: str | None) -> list[str]:
    lines = [
        "| field | type | default | environment variable | description |",
        "|---|---|---|---|---|",
    ]
    for name, info in model.model_fields.items():
        env = "" if env_prefix is None else f"`{env_prefix}{name.upper()}`"
        lines.append(
            f"| `{name}` | {type_name(info.annotation)} | {default_text(info)} "
            f"| {env} | {description(info)} |"
        )
    return lines


def render() -> str:
    out = [INTRODUCTION]
    for header, model, env_prefix in sections(Settings):
        out.append(f"## {header or 'Top level'}\n")
        doc = " ".join((model.__doc__ or "").split()) if model is not Settings else ""
        if doc:
            out.append(_ROLE.sub(r"`\1`", doc).replace("``", "`") + "\n")
        if header.startswith("[["):
            out.append("From the environment, the whole list is set as JSON in its variable.\n")
        out.append("\n".join(_table(model, env_prefix)) + "\n")
    out.append("## [[contexts]] with `preset`\n")
    doc = " ".join((MtierPresetConfig.__doc__ or "").split())
    out.append(_ROLE.sub(r"`\1`", doc).replace("``", "`") + "\n")
    out.append("\n".join(_table(MtierPresetConfig, None)) + "\n")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
