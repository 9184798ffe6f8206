"""Run the damond CLI as its own process against a fake DAMON tree a test laid out, with
the fake kernel's write semantics (a real kernel creates a directory's children when
``nr_*`` is written; plain files do not).

Usage: ``python -m tests.fake_cli ROOT VERSION damond-arguments...``
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from damond import cli
from damond.backend.sysfs import backend as sysfs_backend
from tests.fakedamon import KERNELS, FakeKernel, FakeMachine


def main(argv: list[str]) -> int:
    root, version, *args = argv
    machine = FakeMachine(root=Path(root), kernel=KERNELS[version])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sysfs_backend, "SysfsIO", lambda: FakeKernel(machine))
        return cli.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
