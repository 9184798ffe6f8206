"""How a validation error reads: a field path and a reason an operator understands.

Shared by the configuration and by policy documents, which differ only in how a
rejected value is shown."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError


def format_loc(loc: Sequence[str | int]) -> str:
    """``('contexts', 1, 'goal')`` -> ``contexts[1].goal``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


_PLAIN_INPUT = (str, int, float, bool)


def _plain_repr(value: object) -> str | None:
    return repr(value) if isinstance(value, _PLAIN_INPUT) else None


def describe_error(
    err: Mapping[str, Any],
    describe_input: Callable[[object], str | None] = _plain_repr,
) -> str:
    """One pydantic error as a reason an operator reads, ending in what was given.

    ``describe_input`` says how the rejected value is shown (None: not at all).
    """
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    msg = str(err["msg"])
    if "got " in msg:
        return msg
    msg = msg[0].lower() + msg[1:]
    got = describe_input(err.get("input"))
    return msg if got is None else f"{msg}, got {got}"


def pydantic_errors(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        # union members show up as extra loc parts ("int", "literal['interleave']")
        loc = [p for p in loc if not (isinstance(p, str) and ("[" in p or p in {"int", "str"}))]
        lines.append(f"{format_loc(loc)}: {describe_error(err)}")
    return sorted(set(lines), key=lines.index)
