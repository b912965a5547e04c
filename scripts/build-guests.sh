#!/usr/bin/env bash
# build-guests.sh — build the PV test guests (tests/guests) and copy each to
# build/guests/<name>.elf.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

cargo build --release -p test-guests
# domu needs a heap (the domain builder allocates): a crate of its own, built on its own so
# that its features never reach the other guests.
cargo build --release -p domu-guest

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN_DIR="$TARGET_DIR/x86_64-unknown-linux-gnu/release"
OUT="$ROOT/build/guests"
mkdir -p "$OUT"

# The binaries are the [[bin]] entries of tests/guests/Cargo.toml.
names=$(sed -n '/^\[\[bin\]\]/,/^path/ s/^name *= *"\(.*\)"/\1/p' tests/guests/Cargo.toml)
[[ -n "$names" ]] || { echo "build-guests: no [[bin]] in tests/guests/Cargo.toml" >&2; exit 1; }
for name in $names domu gnttab2 ptwrdomu; do
    src="$BIN_DIR/$name"
    [[ -f "$src" ]] || { echo "build-guests: missing $src" >&2; exit 1; }
    cp -f "$src" "$OUT/$name.elf"
    echo "build-guests: $OUT/$name.elf"
done
# Kernels that only run as domUs of a test guest (given to it as its boot module), not as
# test guests of their own: a subdirectory, which the runner does not boot as dom0.
mkdir -p "$OUT/domus"
for name in gntpeer; do
    src="$BIN_DIR/$name"
    [[ -f "$src" ]] || { echo "build-guests: missing $src" >&2; exit 1; }
    cp -f "$src" "$OUT/domus/$name.elf"
    echo "build-guests: $OUT/domus/$name.elf"
done
