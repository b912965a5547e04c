#!/usr/bin/env bash
# fetch-linux.sh — obtain Debian's Linux 6.1 kernel as an ELF for the `linux-dom0` scenarios.
#
# Picks the linux-image-6.1.0-N-amd64 package Debian's linux-image-amd64 depends on (else the
# highest N apt-cache knows), downloads it with apt-get, unpacks it and extracts the ELF
# vmlinux from boot/vmlinuz-* (the xz payload after the bzImage setup code, as the Linux
# tree's scripts/extract-vmlinux does) into build/linux/vmlinux. Idempotent: does nothing if
# build/linux/vmlinux exists. If the kernel cannot be had, prints why, leaves no partial file
# and exits 0 (the linux-dom0 scenarios are then skipped).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="$ROOT/build/linux"
OUT="$OUT_DIR/vmlinux"

if [[ -s "$OUT" ]]; then
    echo "fetch-linux: $OUT already present"
    exit 0
fi

skip() {
    echo "fetch-linux: SKIP: $*" >&2
    echo "fetch-linux: Debian's Linux 6.1 is not available; the linux-dom0 scenarios will be skipped" >&2
    exit 0
}

for c in apt-get apt-cache dpkg-deb xz; do
    command -v "$c" >/dev/null 2>&1 || skip "$c not found"
done

pick() {
    local p
    p=$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-6\.1\.0-[0-9]*-amd64\)$/\1/p' | head -n 1)
    if [[ -z "$p" ]]; then
        p=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' 2>/dev/null |
            awk '{print $1}' | sort -t- -k4,4n | tail -n 1)
    fi
    echo "$p"
}

PKG=$(pick)
if [[ -z "$PKG" ]]; then
    echo "fetch-linux: no linux-image-6.1.0-*-amd64 known; running apt-get update" >&2
    apt-get update >/dev/null 2>&1 || echo "fetch-linux: apt-get update failed (not root?)" >&2
    PKG=$(pick)
fi
[[ -n "$PKG" ]] || skip "apt-cache knows no linux-image-6.1.0-*-amd64 package"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

(cd "$TMP" && apt-get download "$PKG") >"$TMP/apt.log" 2>&1 ||
    { tail -n 5 "$TMP/apt.log" >&2 || true; skip "apt-get download $PKG failed"; }

shopt -s nullglob
debs=("$TMP"/"$PKG"_*.deb)
((${#debs[@]} > 0)) || skip "apt-get download produced no .deb"
mkdir -p "$TMP/x"
dpkg-deb -x "${debs[0]}" "$TMP/x" || skip "dpkg-deb -x failed"
images=("$TMP"/x/boot/vmlinuz-*)
((${#images[@]} > 0)) || skip "no boot/vmlinuz-* in $PKG"

# The xz stream starts with FD 37 7A 58 5A 00; try each occurrence until one unpacks to an ELF.
mkdir -p "$OUT_DIR"
PART="$OUT_DIR/.vmlinux.part.$$"
for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "${images[0]}" | cut -d: -f1); do
    if tail -c +"$((off + 1))" "${images[0]}" | xz -dc >"$PART" 2>/dev/null ||
        [[ -s "$PART" ]]; then
        if [[ "$(head -c 4 "$PART" | od -An -tx1 | tr -d ' \n')" == "7f454c46" ]]; then
            mv -f "$PART" "$OUT"
            echo "fetch-linux: wrote $OUT from ${debs[0]##*/} (${images[0]##*/})"
            exit 0
        fi
    fi
done
rm -f "$PART"
skip "no xz-compressed ELF found in ${images[0]##*/}"
