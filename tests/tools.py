"""Test helpers shared by every suite: external binaries and free loopback ports."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest


def require_binary(name: str, package: str) -> str:
    """The binary's path; a missing one fails the test in CI (CI=true) and skips it elsewhere."""
    path = shutil.which(name)
    if path is None and Path(f"/usr/sbin/{name}").exists():
        path = f"/usr/sbin/{name}"
    if path is None:
        message = f"{name} is not installed (Debian package {package}, installed by .ci/run)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
