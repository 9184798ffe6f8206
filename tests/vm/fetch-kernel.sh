#!/bin/bash
# Fetch a Debian kernel into a cache dir (never installed on the host) and build its initramfs.
# usage: fetch-kernel.sh <suite> [cache dir]
#   sid     -> the newest linux-binary-7.2.*-amd64 (7.x packaging: vmlinuz in usr/lib/modules/<ver>/)
#   trixie  -> the suite's linux-image-amd64 (6.12)
# result: <cache>/<kver>/{vmlinuz,config,initrd.gz} and <cache>/<suite>.kver naming <kver>.
# A kernel already in the cache is reused without touching the network.
set -euo pipefail
HERE=$(dirname "$(realpath "$0")")
SUITE=$1
DEST=$(realpath -m "${2:-${DAMOND_VM_CACHE:-$HOME/.cache/damond-vm}}")
STAMP=$(sha256sum "$HERE/mkinitramfs.sh" | cut -c1-16)
if [ -f "$DEST/$SUITE.kver" ] && [ -z "${REFRESH:-}" ]; then
    K="$DEST/$(cat "$DEST/$SUITE.kver")"
    if [ -f "$K/vmlinuz" ] && [ -d "$K/modules9p" ]; then
        if [ "$(cat "$K/initrd.stamp" 2>/dev/null)" != "$STAMP" ]; then
            "$HERE/mkinitramfs.sh" "$K/modules9p" "$K/initrd.gz"
            echo "$STAMP" >"$K/initrd.stamp"
        fi
        echo "kernel cached: $K"
        exit 0
    fi
fi
A="$DEST/apt-$SUITE"
mkdir -p "$A"/{lists/partial,cache/archives/partial,parts,prefs} "$DEST/debs"
MIRROR=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\([^ ]*\/debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)}
[ -n "$MIRROR" ] || MIRROR=$(grep -ho '^deb \(\[[^]]*\] \)\?[^ ]*/debian ' /etc/apt/sources.list 2>/dev/null | awk '{print $NF}' | head -1)
[ -n "$MIRROR" ] || { echo "cannot find the Debian mirror; set DEBIAN_MIRROR" >&2; exit 1; }
printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' "$MIRROR" "$SUITE" >"$A/sources.list"
O=(-o Dir::Etc::SourceList="$A/sources.list" -o Dir::Etc::SourceParts="$A/parts"
    -o Dir::Etc::PreferencesParts="$A/prefs" -o Dir::Etc::Preferences=/dev/null
    -o Dir::State::Lists="$A/lists" -o Dir::Cache="$A/cache" -o APT::Sandbox::User=root)
apt-get "${O[@]}" -qq update
case "$SUITE" in
sid | unstable)
    PKG=$(apt-cache "${O[@]}" pkgnames linux-binary-7.2. | grep -E '^linux-binary-7\.2\.[0-9]+\+deb[0-9]+-amd64$' | sort -V | tail -1)
    ;;
*)
    PKG=$(apt-cache "${O[@]}" depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -1)
    ;;
esac
[ -n "$PKG" ] || { echo "no kernel package found in $SUITE" >&2; exit 1; }
KVER=${PKG#linux-binary-}
KVER=${KVER#linux-image-}
echo "suite $SUITE -> $PKG ($KVER)"
cd "$DEST/debs"
apt-get "${O[@]}" -qq download "$PKG"
case "$PKG" in
linux-binary-*) apt-get "${O[@]}" -qq download "linux-modules-$KVER" "linux-base-$KVER" 2>/dev/null || apt-get "${O[@]}" -qq download "linux-modules-$KVER" ;;
esac
X=$(mktemp -d)
trap 'rm -rf "$X"' EXIT
for f in "$DEST"/debs/linux-*"$KVER"_*.deb; do dpkg -x "$f" "$X"; done
first() { for p in "$@"; do [ -e "$p" ] && { echo "$p"; return; }; done; return 1; }
M=$(first "$X/usr/lib/modules/$KVER" "$X/lib/modules/$KVER")
OUT="$DEST/$KVER"
mkdir -p "$OUT"
cp "$(first "$X/boot/vmlinuz-$KVER" "$M/vmlinuz")" "$OUT/vmlinuz"
cp "$(first "$X/boot/config-$KVER" "$M/config" "$X/usr/lib/linux/config-$KVER")" "$OUT/config" 2>/dev/null || true
# keep the 9p modules the initramfs needs, so it can be rebuilt without a download
rm -rf "$OUT/modules9p"
for m in fs/netfs/netfs net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p; do
    for f in "$M/kernel/$m.ko"*; do
        [ -e "$f" ] || continue
        mkdir -p "$OUT/modules9p/kernel/$(dirname "$m")"
        cp "$f" "$OUT/modules9p/kernel/$(dirname "$m")/"
    done
done
mkdir -p "$OUT/modules9p"
"$HERE/mkinitramfs.sh" "$OUT/modules9p" "$OUT/initrd.gz"
echo "$STAMP" >"$OUT/initrd.stamp"
echo "$KVER" >"$DEST/$SUITE.kver"
rm -f "$DEST"/debs/*.deb
echo "kernel ready: $OUT"
