"""Claiming DAMON at open and letting it go at close.

At open damond refuses a host where anything else uses DAMON (an exclusive DAMON
module, a kdamond it did not create), stages its own kdamonds (one per planned
context plus spares, recorded before they are created) and probes the kernel in
one of them. At close it turns its kdamonds off and removes them, unless they are
to be left running or someone else's appeared meanwhile.
"""

from __future__ import annotations

import errno
from pathlib import Path

from damond.backend.sysfs import ownership, paths
from damond.backend.sysfs.context import RunningContext, stop_job
from damond.backend.sysfs.features import Features, probe, probe_by_presence
from damond.backend.sysfs.io import Session, SysfsError
from damond.backend.sysfs.kdamond import log
from damond.config import SysfsConfig
from damond.model.errors import EnvironmentRefused


def refuse_without_permission(exc: BaseException) -> EnvironmentRefused | None:
    """The refusal for a file access at open that the host does not permit (not root)."""
    if isinstance(exc, SysfsError) and exc.errno in (errno.EACCES, errno.EPERM):
        return EnvironmentRefused(
            f"{exc}: no permission to use DAMON's sysfs files, which belong to root; "
            "run as root (sudo damond ...). damond wrote nothing."
        )
    return None


def open_job(
    s: Session, cfg: SysfsConfig, record_path: Path, nr_contexts: int
) -> tuple[str, ownership.Claim, Features]:
    """The kernel release, damond's claim on its kdamonds, and what the kernel supports."""
    admin = cfg.admin_root
    nr_file = paths.nr_kdamonds(admin)
    if not s.exists(nr_file):
        raise EnvironmentRefused(
            f"no DAMON sysfs interface at {admin} (the kernel needs CONFIG_DAMON_SYSFS)"
        )
    kernel = s.read(cfg.proc_root / "sys/kernel/osrelease").strip()
    boot_id = s.read(cfg.proc_root / "sys/kernel/random/boot_id").strip()
    held = ownership.exclusive_modules(s, cfg.module_root)
    if held:
        raise ownership.refuse_modules(held, cfg.module_root)
    states = ownership.scan(s, admin)
    record = ownership.load_record(record_path, boot_id, admin)
    mine = ownership.owned(states, record)
    refusal = ownership.refuse_foreign(states, mine, admin)
    if refusal is not None:
        raise refusal
    if record is None:
        record = ownership.Record(boot_id=boot_id, admin_root=str(admin))
    record.slots = {st.index: record.slots.get(st.index) or ownership.Slot() for st in states}
    claim = ownership.Claim(admin, record_path, record)
    need = max(1, nr_contexts + cfg.spare_kdamonds)
    running = [st.index for st in states if st.running]
    if len(states) < need and not running:
        # Recorded first: a crash right after the write leaves them known as ours.
        record.slots = {i: ownership.Slot() for i in range(need)}
        claim.save()
        s.write(nr_file, str(need))
    else:
        if len(states) < need:
            log.warning(
                "cannot add kdamonds while damond's own run",
                have=len(states),
                need=need,
                running=running,
            )
        claim.save()
    idle = [i for i in sorted(record.slots) if i not in running]
    if idle:
        features = probe(s, paths.kdamond(admin, idle[0]))
    else:
        features = probe_by_presence(s, paths.kdamond(admin, running[0]))
    return kernel, claim, features


def close_job(
    s: Session, claim: ownership.Claim, contexts: dict[str, RunningContext], leave: bool
) -> bool:
    """Stop the contexts and remove damond's kdamonds; True when nothing of damond's is
    left (no record either), False when its kdamonds stay, recorded."""
    if leave and contexts:
        # The supervisor left the loops' kdamonds on; the next start re-adopts them.
        claim.save()
        log.info("leaving kdamonds running", kdamonds=sorted(c.kd.index for c in contexts.values()))
        return False
    for name in list(contexts):
        stop_job(s, claim, contexts, name)
    states = ownership.scan(s, claim.admin)
    if any(st.running for st in states) or any(st.index not in claim.record.slots for st in states):
        claim.save()
        return False
    if states:
        s.write(paths.nr_kdamonds(claim.admin), "0")
    claim.path.unlink(missing_ok=True)
    return True
