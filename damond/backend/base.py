"""The interface every backend implements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from damond.model import damon as model
from damond.model.measurement import Snapshot


class Backend(Protocol):
    """What a context loop needs from DAMON.

    Implementations own all I/O. They write only what changed, read back what
    they wrote, and never touch DAMON state they did not create.
    """

    name: str

    async def open(self) -> None:
        """Probe the host and claim what damond needs; raise EnvironmentRefused."""

    async def close(self) -> None:
        """Release everything (turn owned kdamonds off unless configured to leave them)."""

    def features(self) -> Mapping[str, bool]:
        """Kernel features found by probing, by name."""

    def kernel_version(self) -> str:
        """The kernel release the backend drives."""

    def tiering_counters(self) -> Mapping[str, int]:
        """The machine's memory-tiering counters in pages, by their ``/proc/vmstat`` names
        (``numa_pages_migrated``, ...); a counter the machine lacks is absent."""

    async def tiers(self) -> Mapping[int, int]:
        """Each node's memory tier, ranked from 0 (the fastest); empty if unknown."""

    async def start_context(self, ctx: model.Context) -> None:
        """Create (or re-adopt) the DAMON objects of ``ctx`` and turn them on."""

    async def stop_context(self, name: str) -> None:
        """Turn the context's DAMON objects off."""

    async def snapshot(self, name: str) -> Snapshot:
        """Measure the context now."""

    async def set_quota(self, name: str, quota_bytes: int) -> None:
        """Set the working scheme's size quota (``daemon`` mode)."""

    async def feed_goal(self, name: str, current_value: int, target_value: int) -> None:
        """Update the working scheme's goal online (``commit_schemes_quota_goals``).

        ``current_value`` is what damond measured, for a ``user_input`` goal
        (``kernel`` mode); a goal the kernel measures itself (``native``) takes
        only the target.
        """
