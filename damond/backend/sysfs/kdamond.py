"""One kdamond's directory and what every job does with it: read its state and pid,
write a layout, read it back, and send state commands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from damond.backend.sysfs import paths, tree
from damond.backend.sysfs.io import Session
from damond.model.errors import BackendError

log = structlog.get_logger("damond.sysfs")
"""The sysfs backend's logger, shared by its modules."""

ADOPT_SKIP = (paths.GOAL_CURRENT_VALUE,)
"""Goal values a running kdamond keeps: the last fed measurement, not a neutral one."""


@dataclass(frozen=True, slots=True)
class Kdamond:
    index: int
    dir: Path

    @classmethod
    def at(cls, admin: Path, index: int) -> Kdamond:
        return cls(index, paths.kdamond(admin, index))

    def is_on(self, s: Session) -> bool:
        return s.read(self.dir / paths.STATE).strip() == paths.ON

    def pid(self, s: Session) -> int:
        return s.read_int(self.dir / paths.PID)

    def send(self, s: Session, command: str) -> None:
        """Write a state command whose outcome the caller does not check (``off``, the
        ``update_*`` requests)."""
        s.write(self.dir / paths.STATE, command)

    def apply(
        self, s: Session, entries: Sequence[tree.Entry], skip: tuple[str, ...] = ()
    ) -> list[tree.Change]:
        return tree.apply(s, self.dir, entries, skip)

    def verify(
        self, s: Session, context: str, lay: tree.Layout, skip: tuple[str, ...] = ()
    ) -> None:
        """Read back what was written: the kernel can hold another value than the one
        written without the write failing, and a kdamond must not run on it."""
        bad = tree.mismatches(s, self.dir, lay.entries, skip)
        if bad:
            raise BackendError(
                f"context {context}: {self.dir} does not read back what damond wrote: "
                + tree.describe(bad)
            )

    def command(
        self,
        s: Session,
        context: str,
        command: str,
        lay: tree.Layout,
        changes: Sequence[tree.Change],
    ) -> None:
        """Write a state command that needs the kdamond on afterwards; a kdamond
        that is off afterwards is a failed commit, reported with what was written."""
        error: BackendError | None = None
        try:
            self.send(s, command)
        except BackendError as exc:
            error = exc
        off = not self.is_on(s)
        if not off and error is None:
            return
        drift = tree.mismatches(s, self.dir, lay.entries, ADOPT_SKIP)
        log.error(
            "state command failed" if not off else "kdamond is off after a state command",
            context=context,
            kdamond=self.index,
            command=command,
            error=str(error) if error else None,
            written=tree.describe(changes),
            differs_from_damond=tree.describe(drift),
        )
        raise BackendError(
            f"context {context}: kdamond {self.index} {'is off' if off else 'rejected'} "
            f"after '{command}'"
            + (f" ({error})" if error else "")
            + (f"; written: {tree.describe(changes)}" if changes else "")
            + (f"; files not as damond wrote them: {tree.describe(drift)}" if drift else "")
            + "; restarting it from damond's configuration"
        )
