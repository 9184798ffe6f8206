#!/bin/bash
# Build the venv that damond's systemd unit runs from in the VM guest (tests/test_vm_systemd.py).
# It comes from Debian's /usr/bin/python3: the unit's ProtectHome=yes hides a Python under
# /root (pyenv), so a venv made from that one fails to start (status=203/EXEC). The checkout
# is installed editable, so the venv is rebuilt only when pyproject.toml changes.
# usage: system-venv.sh <checkout> <venv dir>
set -euo pipefail
SRC=$(realpath "$1")
VENV=$(realpath -m "$2")
STAMP=$(sha256sum "$SRC/pyproject.toml" | cut -c1-16)
if [ "$(cat "$VENV/.damond-stamp" 2>/dev/null)" = "$STAMP" ] && [ -x "$VENV/bin/damond" ]; then
    exit 0
fi
rm -rf "$VENV"
/usr/bin/python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -e "$SRC"
echo "$STAMP" >"$VENV/.damond-stamp"
echo "venv ready: $VENV ($("$VENV/bin/python" --version))"
