"""docs/configuration.md is the schema's own reference: regenerated, it must not change."""

from __future__ import annotations

from pathlib import Path

from damond.config import Settings
from damond.config.environment import variables
from damond.config.reference import COMMAND, render

REFERENCE = Path(__file__).parent.parent / "docs" / "configuration.md"


def test_the_reference_is_up_to_date() -> None:
    assert REFERENCE.read_text() == render(), f"docs/configuration.md is out of date: run {COMMAND}"


def test_the_reference_names_every_field_and_its_variable() -> None:
    text = REFERENCE.read_text()
    for var, path, _ in variables(Settings):
        assert f"| `{path.rsplit('.', 1)[-1]}` |" in text
        assert f"`{var}`" in text
    for section in ("## [mqtt]", "## [[contexts]]", "## [contexts.scheme.quota]", "## [sysfs]"):
        assert section in text
