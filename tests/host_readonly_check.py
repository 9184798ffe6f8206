"""Run INSIDE a private mount namespace in which the DAMON admin tree is bind-mounted
read-only: dump the tree, run ``damond check`` against it, dump it again, print JSON.

Started by test_sysfs_host.py through ``unshare -m``; never run it otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ADMIN = Path("/sys/kernel/mm/damon/admin")


def dump(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            try:
                out[str(path)] = path.read_text()
            except OSError as exc:  # EBUSY on lock contention, EACCES on write-only files
                out[str(path)] = f"<{exc.strerror}>"
    return out


def main() -> int:
    config, state_dir = sys.argv[1], sys.argv[2]
    read_only = bool(os.statvfs(ADMIN).f_flag & os.ST_RDONLY)
    if not read_only:
        print(json.dumps({"error": f"{ADMIN} is not mounted read-only"}))
        return 1
    before = dump(ADMIN)
    result = subprocess.run(
        [sys.executable, "-m", "damond", "check", "-c", config, "--state-dir", state_dir],
        capture_output=True,
        text=True,
        timeout=120,
    )
    after = dump(ADMIN)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    print(
        json.dumps(
            {
                "read_only": read_only,
                "rc": result.returncode,
                "stdout": result.stdout,
                "stderr": result.stderr,
                "files": len(before),
                "changed": changed,
                "refresh_ms": {p: v for p, v in before.items() if p.endswith("/refresh_ms")},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
