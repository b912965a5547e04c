#!/usr/bin/env bash
# fetch-xen.sh — obtain the Xen 4.17 hypervisor ELF used as the differential oracle.
#
# Downloads Debian's xen-hypervisor-4.17-amd64 package with apt-get, unpacks it and gunzips
# boot/xen-4.17-amd64*.gz into build/xen/xen.elf (QEMU -kernel loads the ELF, not the .gz).
# Idempotent: does nothing if build/xen/xen.elf exists. If the package cannot be had, prints
# a clear message, leaves no partial file and exits 0 (callers then skip the Xen side).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="$ROOT/build/xen"
OUT="$OUT_DIR/xen.elf"
PKG="xen-hypervisor-4.17-amd64"

if [[ -s "$OUT" ]]; then
    echo "fetch-xen: $OUT already present"
    exit 0
fi

skip() {
    echo "fetch-xen: SKIP: $*" >&2
    echo "fetch-xen: Xen 4.17 is not available; the differential oracle will be skipped" >&2
    exit 0
}

command -v apt-get >/dev/null 2>&1 || skip "apt-get not found"
command -v dpkg-deb >/dev/null 2>&1 || skip "dpkg-deb not found"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

download() {
    (cd "$TMP" && apt-get download "$PKG") >"$TMP/apt.log" 2>&1
}

if ! download; then
    echo "fetch-xen: apt-get download failed; running apt-get update and retrying" >&2
    if ! apt-get update >"$TMP/update.log" 2>&1; then
        echo "fetch-xen: apt-get update failed (not root?):" >&2
        tail -n 3 "$TMP/update.log" >&2 || true
    fi
    download || { tail -n 5 "$TMP/apt.log" >&2 || true; skip "apt-get download $PKG failed"; }
fi

shopt -s nullglob
debs=("$TMP"/"$PKG"_*.deb)
((${#debs[@]} > 0)) || skip "apt-get download produced no .deb"

mkdir -p "$TMP/x"
dpkg-deb -x "${debs[0]}" "$TMP/x" || skip "dpkg-deb -x failed"

gz=("$TMP"/x/boot/xen-4.17*amd64*.gz)
if ((${#gz[@]} == 0)); then
    gz=("$TMP"/x/boot/xen-4.17*.gz)
fi
((${#gz[@]} > 0)) || skip "no boot/xen-4.17*.gz in the package"

# Write to a temporary name in the destination directory, then rename: never a partial file.
mkdir -p "$OUT_DIR"
PART="$OUT_DIR/.xen.elf.part.$$"
if ! gunzip -c "${gz[0]}" >"$PART"; then
    rm -f "$PART"
    skip "gunzip of ${gz[0]##*/} failed"
fi
if [[ "$(head -c 4 "$PART" | od -An -tx1 | tr -d ' \n')" != "7f454c46" ]]; then
    rm -f "$PART"
    skip "${gz[0]##*/} did not unpack to an ELF file"
fi
mv -f "$PART" "$OUT"
echo "fetch-xen: wrote $OUT from ${debs[0]##*/} (${gz[0]##*/})"
