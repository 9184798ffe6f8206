"""Constrained field types shared by every section of the configuration and by policies."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict
from pydantic_core import PydanticCustomError


def _basis_points(value: int) -> int:
    if not 0 <= value <= 10_000:
        raise PydanticCustomError(
            "bp_range", "must be between 0 and 10000, got {value}", {"value": value}
        )
    return value


BasisPoints = Annotated[int, AfterValidator(_basis_points)]


def _positive(value: float) -> float:
    if value <= 0:
        raise PydanticCustomError(
            "positive", "must be greater than 0, got {value}", {"value": value}
        )
    return value


PositiveFloat = Annotated[float, AfterValidator(_positive)]
PositiveInt = Annotated[int, AfterValidator(_positive)]


def _non_negative(value: int) -> int:
    if value < 0:
        raise PydanticCustomError(
            "non_negative", "must be 0 or more, got {value}", {"value": value}
        )
    return value


NonNegativeInt = Annotated[int, AfterValidator(_non_negative)]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
"""A context's name: what a DAMON context, a metric label and a policy key all accept."""


def _lower_case(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


AnyCase = BeforeValidator(_lower_case)
"""Accept a choice in any case (``DAMOND_LOG_LEVEL=DEBUG``): the choices are lower-case."""


class _Strict(BaseModel):
    # attribute docstrings become the fields' descriptions (docs/configuration.md)
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
