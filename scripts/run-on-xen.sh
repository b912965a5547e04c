#!/usr/bin/env bash
# run-on-xen.sh GUEST.elf [NVCPUS] — the differential oracle: boot the real Xen 4.17
# (build/xen/xen.elf, see fetch-xen.sh) under QEMU with GUEST.elf as the dom0 kernel, print the
# serial output, and stop QEMU once the guest's `Test result:` line and Xen's dom0 shutdown line
# (`Hardware Dom0 halted` / `Hardware Dom0 crashed`, or a Xen panic) have appeared.
#
# Exit status: 0 only if the guest printed `Test result: SUCCESS`; 1 for any other result or
# none (timeout); 2 for usage errors; 77 if Xen is not available (the caller may skip).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
XEN="${XEN_ELF:-$ROOT/build/xen/xen.elf}"
TIMEOUT="${XEN_TIMEOUT:-120}"

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 GUEST.elf [NVCPUS]" >&2
    exit 2
fi
GUEST="$1"
NVCPUS="${2:-1}"
if [[ ! -f "$GUEST" ]]; then
    echo "run-on-xen: no such guest: $GUEST" >&2
    exit 2
fi
if ! [[ "$NVCPUS" =~ ^[1-9][0-9]*$ ]]; then
    echo "run-on-xen: NVCPUS must be a positive integer, not '$NVCPUS'" >&2
    exit 2
fi
if [[ ! -s "$XEN" ]]; then
    echo "run-on-xen: SKIP: $XEN missing (run scripts/fetch-xen.sh)" >&2
    exit 77
fi

LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT

# QEMU's -kernel/-initrd split module arguments on commas.
if [[ "$GUEST" == *,* ]]; then
    echo "run-on-xen: guest path must not contain a comma: $GUEST" >&2
    exit 2
fi

timeout "$TIMEOUT" qemu-system-x86_64 \
    -machine q35 -cpu EPYC,-monitor,-smap -smp 2 -m 1024 \
    -nic none -display none -monitor none -serial stdio -no-reboot \
    -kernel "$XEN" \
    -append "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all noreboot dom0_max_vcpus=$NVCPUS" \
    -initrd "$GUEST" </dev/null >"$LOG" 2>&1 &
QEMU_PID=$!

# Follow the log until the guest has reported and Xen has finished with dom0.
done_re='Hardware Dom0 (halted|crashed)|Panic on CPU|Reboot in five seconds|Domain 0 crashed'
status="timeout"
while kill -0 "$QEMU_PID" 2>/dev/null; do
    if grep -q 'Test result:' "$LOG" && grep -Eq "$done_re" "$LOG"; then
        status="done"
        break
    fi
    if grep -Eq 'Panic on CPU|Reboot in five seconds' "$LOG"; then
        status="xen-panic"
        break
    fi
    sleep 0.5
done
# Give Xen a moment to flush the rest of the line, then stop QEMU (ours, by PID).
sleep 0.3
kill "$QEMU_PID" 2>/dev/null
wait "$QEMU_PID" 2>/dev/null

# Print the serial output without terminal control characters.
tr -d '\r' <"$LOG" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g'

result=$(tr -d '\r' <"$LOG" | grep -o 'Test result: [A-Z]*' | tail -n 1)
echo "run-on-xen: ${result:-no Test result line} (${status}, guest $(basename "$GUEST"), ${NVCPUS} vCPUs)"
[[ "$result" == "Test result: SUCCESS" ]]
