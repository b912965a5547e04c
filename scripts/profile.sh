#!/usr/bin/env bash
# profile.sh — `make profile`: where the CPUs spend a hypercall's time under QEMU TCG.
#
# Builds the image and the guests, boots DualVisor (or, with PROFILE_KERNEL=build/xen/xen.elf,
# Xen 4.17) with the `hcloop` guest as dom0 calling one hypercall in a loop, and samples every
# vCPU's RIP through QEMU's monitor (scripts/profile.py), printing the hottest functions per
# CPU. Not a test and not a benchmark: the shares are what to look at, the cycles per call the
# guest prints are slowed by the sampling.
#
# Knobs (environment): PROFILE_CALL (version, send or yield; default version), PROFILE_LOCKSTEP
# (off or on; default off), PROFILE_SMP (default 3), PROFILE_SAMPLES (default 1500),
# PROFILE_DETAIL (a function-name substring: also show its hottest addresses with their
# source lines), PROFILE_KERNEL, PROFILE_NO_BUILD=1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CALL="${PROFILE_CALL:-version}"
LOCKSTEP="${PROFILE_LOCKSTEP:-off}"
KERNEL="${PROFILE_KERNEL:-$ROOT/build/dualvisor.elf}"
case "$CALL" in version | send | yield) ;; *) echo "profile: PROFILE_CALL must be version, send or yield, not '$CALL'" >&2; exit 2 ;; esac
case "$LOCKSTEP" in off | on) ;; *) echo "profile: PROFILE_LOCKSTEP must be off or on, not '$LOCKSTEP'" >&2; exit 2 ;; esac
command -v python3 >/dev/null || { echo "profile: python3 not found" >&2; exit 2; }
if [[ "${PROFILE_NO_BUILD:-0}" != 1 ]]; then
    make --no-print-directory image guests
fi
# Lockstep rounds are ~50x slower than single execution: fewer calls keep the run short.
COUNT=3000000
[[ "$LOCKSTEP" == on ]] && COUNT=100000
APPEND="console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all noreboot"
[[ "$LOCKSTEP" == off ]] && APPEND="$APPEND lockstep=off"
DETAIL=()
[[ -n "${PROFILE_DETAIL:-}" ]] && DETAIL=(--detail "$PROFILE_DETAIL")
mkdir -p build/profile
exec python3 scripts/profile.py --kernel "$KERNEL" \
    --module "$ROOT/build/guests/hcloop.elf call=$CALL count=$COUNT" \
    --append "$APPEND" --smp "${PROFILE_SMP:-3}" --samples "${PROFILE_SAMPLES:-1500}" \
    --log build/profile/serial.log "${DETAIL[@]}"
