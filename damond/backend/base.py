"""The interface every backend implements, and what it reports back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from damond import model


class BackendError(Exception):
    """A backend operation failed; the context loop backs off and retries."""


class EnvironmentRefused(Exception):
    """This host cannot be driven (no DAMON, a foreign kdamond, no permission).

    The daemon exits 3 with this message and has written nothing.
    """


@dataclass(frozen=True, slots=True)
class SchemeStats:
    """Cumulative scheme counters, as the kernel's ``stats/`` directory has them."""

    nr_tried: int = 0
    sz_tried: int = 0
    nr_applied: int = 0
    sz_applied: int = 0
    qt_exceeds: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One measurement of a context, taken at ``time_s`` on the backend's clock."""

    time_s: float
    eligible_bytes: Mapping[int, int]
    """Bytes matching the working scheme's access pattern, per node."""
    capacity_bytes: Mapping[int, int]
    stats: SchemeStats
    quota_bytes: int
    """The size quota damond last set (or the cap, in kernel and native modes)."""
    effective_quota_bytes: int
    """The size quota the kernel is using now (its tuner's output)."""
    running: bool


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
