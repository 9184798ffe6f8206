"""The one error type of an invalid configuration."""

from __future__ import annotations

from collections.abc import Sequence


class ConfigError(Exception):
    """An invalid configuration; ``errors`` holds one ``path: reason`` per problem."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)
