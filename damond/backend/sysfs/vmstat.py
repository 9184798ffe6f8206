"""The host's memory-tiering counters from ``/proc/vmstat``.

node_exporter's default vmstat collector filters these out, and they are what
shows whether promotion and demotion happen at all.
"""

from __future__ import annotations

import re
from pathlib import Path

TIERING_COUNTERS = (
    "pgpromote_success",
    "pgdemote_kswapd",
    "pgdemote_direct",
    "numa_pages_migrated",
)
_COUNTER_LINE = re.compile(rb"^(%s) (\d+)$" % "|".join(TIERING_COUNTERS).encode(), re.MULTILINE)


def read_tiering_counters(path: Path) -> dict[str, int]:
    """The tiering counters the kernel has (older kernels lack some), by name.

    An unreadable file gives an empty result: the counters are informative and
    must not break a scrape.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    return {m[1].decode(): int(m[2]) for m in _COUNTER_LINE.finditer(data)}
