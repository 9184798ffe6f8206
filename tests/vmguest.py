"""Boot a Debian kernel under QEMU with two NUMA nodes and run one shell script in it.

The guest sees the host's ``/`` read-only over virtio-9p (so the project's venv
and numactl are there at the same paths) and the project checkout read-write at
its own path; tmpfs holds ``/tmp`` and ``/run``. Node 0 has both vCPUs, node 1
has none (like a CXL expander). The guest's DAMON tree is its own kernel's:
writing it is the point, the host's is never touched. TCG only: on these hosts
``/dev/kvm`` is a PVM device on which QEMU hangs instead of failing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

SUITES = ("sid", "trixie")
"""sid: Linux 7.2 (native node_eligible_mem_bp, goal_tuner); trixie: 6.12 (user_input only)."""


def cache_dir() -> Path:
    return Path(os.environ.get("DAMOND_VM_CACHE", Path.home() / ".cache/damond-vm"))


def kernel_dir(suite: str) -> Path | None:
    kver = cache_dir() / f"{suite}.kver"
    if not kver.is_file():
        return None
    return cache_dir() / kver.read_text().strip()


def missing_requirements(suite: str) -> str | None:
    """Why the VM tests cannot run here, or None."""
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
    if shutil.which("numactl") is None:
        return "numactl is not installed (apt-get install numactl)"
    k = kernel_dir(suite)
    if k is None or not (k / "vmlinuz").is_file() or not (k / "initrd.gz").is_file():
        return f"no {suite} guest kernel in {cache_dir()} (run tests/vm/fetch-kernel.sh {suite})"
    return None


def skip_or_fail(kind: str, suite: str, why: str | None) -> None:
    """When VM tests cannot run here (``why``): fail in CI (``CI=true``), where they
    must run; elsewhere warn loudly and skip."""
    if why is None:
        return
    import pytest  # here, not at the top: the benchmarks import this module without it

    message = f"{kind} NOT RUN ({suite}): {why}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    warnings.warn(message, stacklevel=2)
    pytest.skip(message)


@dataclass(frozen=True)
class GuestResult:
    rc: int
    out: str
    console: str
    wall_s: float
    kernel: str
    timed_out: bool


def run_in_guest(
    suite: str,
    workdir: Path,
    script: str,
    *,
    timeout_s: float = 240,
    append: str = "damon_stat.enabled=N",
    node_mem_mib: tuple[int, int] = (1024, 1024),
) -> GuestResult:
    """Boot the guest and run ``script`` in it; a kernel that panics while booting
    (seen once under TCG, an int3 oops in early init) is booted once more."""
    result = _boot(suite, workdir, script, timeout_s, append, node_mem_mib)
    if result.rc == 255 and not result.out and "Kernel panic" in result.console:
        result = _boot(suite, workdir, script, timeout_s, append, node_mem_mib)
    return result


def _boot(
    suite: str,
    workdir: Path,
    script: str,
    timeout_s: float,
    append: str,
    node_mem_mib: tuple[int, int],
) -> GuestResult:
    kdir = kernel_dir(suite)
    assert kdir is not None
    work = workdir.resolve()
    vmdir = work / ".vm" / uuid.uuid4().hex[:12]
    vmdir.mkdir(parents=True)
    (vmdir / "cmd.sh").write_text(script)
    cmd = [
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-machine",
        "q35",
        "-smp",
        "2",
        "-m",
        f"{sum(node_mem_mib)}M",
        "-nographic",
        "-no-reboot",
        "-nodefaults",
        "-serial",
        f"file:{vmdir}/console.log",
        "-device",
        "virtio-serial-pci",
        "-device",
        "virtconsole,chardev=out",
        "-chardev",
        f"file,id=out,path={vmdir}/out.log",
        "-fsdev",
        "local,id=r,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device",
        "virtio-9p-pci,fsdev=r,mount_tag=hostroot",
        "-fsdev",
        f"local,id=w,path={work},security_model=none,multidevs=remap",
        "-device",
        "virtio-9p-pci,fsdev=w,mount_tag=work",
        "-kernel",
        str(kdir / "vmlinuz"),
        "-initrd",
        str(kdir / "initrd.gz"),
        "-append",
        f"console=ttyS0 quiet panic=-1 vmwork={work} vmdir={vmdir} {append}",
    ]
    for i, mib in enumerate(node_mem_mib):
        cmd += ["-object", f"memory-backend-ram,id=m{i},size={mib}M"]
        cmd += ["-numa", f"node,nodeid={i},memdev=m{i}" + (",cpus=0-1" if i == 0 else "")]
    started = time.monotonic()
    timed_out = False
    try:
        subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        timed_out = True
    wall = time.monotonic() - started

    def read(name: str) -> str:
        path = vmdir / name
        return path.read_text(errors="replace") if path.exists() else ""

    rc = read("rc").strip()
    result = GuestResult(
        rc=int(rc) if rc else 255,
        out=read("out.log"),
        console=read("console.log"),
        wall_s=wall,
        kernel=kdir.name,
        timed_out=timed_out,
    )
    shutil.rmtree(vmdir, ignore_errors=True)
    return result
