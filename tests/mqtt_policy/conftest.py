from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mqtt_policy.support import Broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh anonymous mosquitto on a free loopback port, for this test alone."""
    b = Broker(tmp_path)
    b.start()
    yield b
    b.kill()
