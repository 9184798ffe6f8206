"""The host's memory-tiering counters from ``/proc/vmstat``.

node_exporter's default vmstat collector filters these out, and they are what
shows whether promotion and demotion happen at all.
"""

from __future__ import annotations

from pathlib import Path

VMSTAT_PATH = Path("/proc/vmstat")
TIERING_COUNTERS = (
    "pgpromote_success",
    "pgdemote_kswapd",
    "pgdemote_direct",
    "numa_pages_migrated",
)


def read_tiering_counters(path: Path = VMSTAT_PATH) -> dict[str, int]:
    """The tiering counters the kernel has (older kernels lack some), by name.

    An unreadable file gives an empty result: the counters are informative and
    must not break a scrape.
    """
    try:
        text = path.read_text()
    except OSError:
        return {}
    wanted = set(TIERING_COUNTERS)
    found: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            try:
                found[name] = int(value)
            except ValueError:
                continue
    return found
