#!/usr/bin/env bash
# bench.sh — `make bench`: hypercall cost of DualVisor (lockstep off and on) against the real
# Xen 4.17, and the lockstep engine's own costs, measured in ONE run and printed as ratios.
#
#   1. builds what it needs: `make image guests xen`;
#   2. host: `cargo run --release -p lockstep --example bench` (mailbox vs raw ping-pong, one
#      transaction on vs off, digest cost);
#   3. QEMU, all with the same flags: the bench guest (build/guests/bench.elf) as dom0 on
#      Xen 4.17 (build/xen/xen.elf), on DualVisor with `lockstep=off`, on DualVisor with lockstep
#      on (also at -smp 2, where the leader decides rounds itself), DualVisor's
#      `selftest=lockstep` (recovery statistics over every fault kind), and the hcloop guest
#      making 20,000 xen_version calls with 2,000 `effects` faults injected (the steady-state
#      recovery latency of a hypercall, at -smp $BENCH_SMP and -smp 2);
#      and the bench guest again on Xen and on DualVisor lockstep=off under `-icount shift=0`,
#      where the TSC counts guest instructions (a load-independent instructions-per-call table);
#      the guest runs have dom0_max_vcpus=2 (1 under -icount): vCPU 1 stays down while vCPU 0
#      times the hypercalls and comes up only for the ping-pong after them; one more DualVisor
#      run at -smp $PAIRS_SMP (two lockstep pairs, so dom0's vCPU 1 runs on pair 1's leader)
#      is there for the ping-pong only;
#   4. parses the guest's `BENCH <name> cycles_per_call=<n>` lines (xen_version, evtchn_send,
#      sched_yield, gnttab_copy — also as MB/s — and mmu_update64, a 64-update batch — also as
#      updates per second — and pingpong, one cross-vCPU cache-line round trip) and prints a
#      table and the
#      ratios DualVisor-off/Xen, DualVisor-on/Xen and on/off next to the targets of issues 3
#      and 4 (off <= 1.0x Xen, on <= 3x Xen, recovery <= 20 us under TCG), and the floor the
#      ping-pong puts under lockstep: a hypercall under lockstep waits for at least one
#      cross-CPU round trip (leader -> follower -> leader) before the guest resumes, so it
#      costs at least (Xen's cost + Xen's round trip) / Xen's cost times Xen's.
#
# Ratios are printed, never judged: the exit status is 0 unless the script itself cannot run
# (no QEMU, bad knob values). A run that did not reach the guest's end is reported as such.
#
# Knobs (environment): BENCH_SMP (CPUs, default 3: a leader/follower pair and a coordinator),
# BENCH_TIMEOUT (seconds per QEMU run, default 240), BENCH_NO_BUILD=1 (use the artifacts
# already in build/), BENCH_NO_HOST=1 (skip the host lockstep bench), BENCH_LOG_DIR (serial
# logs, default build/bench), QEMU, XEN_ELF, DUALVISOR_ELF.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

QEMU="${QEMU:-qemu-system-x86_64}"
SMP="${BENCH_SMP:-3}"
TIMEOUT="${BENCH_TIMEOUT:-240}"
LOG_DIR="${BENCH_LOG_DIR:-$ROOT/build/bench}"
XEN="${XEN_ELF:-$ROOT/build/xen/xen.elf}"
IMAGE="${DUALVISOR_ELF:-$ROOT/build/dualvisor.elf}"
GUEST="$ROOT/build/guests/bench.elf"
CONSOLE="console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all noreboot"
NAMES=(xen_version evtchn_send sched_yield gnttab_copy mmu_update64)
# Not a hypercall: one cross-vCPU cache-line round trip (the lockstep floor), parsed and shown
# in the cycles table, judged against no target.
PINGPONG=pingpong
# DualVisor places all of a domain's vCPUs on one leader CPU per lockstep pair (and on one CPU
# with lockstep off), so dom0's two vCPUs run at the same time only with two pairs: five CPUs.
PAIRS_SMP=5

die() {
    echo "bench: $*" >&2
    exit 2
}
[[ "$SMP" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SMP must be a positive integer, not '$SMP'"
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "BENCH_TIMEOUT must be a positive integer, not '$TIMEOUT'"
command -v "$QEMU" >/dev/null 2>&1 || die "$QEMU not found (make deps installs it)"
command -v timeout >/dev/null 2>&1 || die "timeout(1) not found"
for f in "$XEN" "$IMAGE" "$GUEST"; do
    [[ "$f" != *,* ]] || die "path must not contain a comma (QEMU splits -initrd on commas): $f"
done
mkdir -p "$LOG_DIR" || die "cannot create $LOG_DIR"

section() {
    printf '\n== %s ==\n' "$*"
}

# ---------------------------------------------------------------------------------------------
# 1. Build.
NOTES=()
note() {
    NOTES+=("$*")
    echo "bench: $*"
}

# Each target on its own, so that one failing (e.g. the hypervisor mid-change) does not stop the
# others; a failed target leaves the previous artifact in build/, which is then said to be stale.
if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
    section "build: make image guests xen"
    for target in image guests xen; do
        if ! make --no-print-directory "$target"; then
            note "build: 'make $target' failed; using what build/ already holds"
        fi
    done
fi
# age FILE: its modification time and, if older than the last commit, that it may be stale.
age() {
    local t head
    t=$(stat -c %Y "$1" 2>/dev/null) || return
    head=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)
    printf '%s built %s' "${1#"$ROOT"/}" "$(date -d "@$t" '+%Y-%m-%d %H:%M')"
    ((t < head)) && printf ' (older than the last commit: may be stale)'
    echo
}
for f in "$IMAGE" "$GUEST"; do
    if [[ -s "$f" ]]; then
        echo "bench: $(age "$f")"
    fi
done

# ---------------------------------------------------------------------------------------------
# 2. Host lockstep bench.
HOST_LOG="$LOG_DIR/host-lockstep.log"
if [[ "${BENCH_NO_HOST:-0}" != 1 ]]; then
    section "host: cargo run --release -p lockstep --example bench"
    if cargo run --quiet --release -p lockstep --example bench >"$HOST_LOG" 2>&1; then
        cat "$HOST_LOG"
    else
        tail -n 20 "$HOST_LOG"
        note "host: the lockstep bench failed (log: $HOST_LOG)"
    fi
fi

# ---------------------------------------------------------------------------------------------
# 3. QEMU runs.

# Serial output without carriage returns and terminal escapes.
clean_log() {
    tr -d '\r' <"$1" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g'
}

# run_qemu NAME KERNEL APPEND MODULE DONE_RE: boots KERNEL under QEMU (module optional), serial
# to $LOG_DIR/NAME.log, until DONE_RE appears in the log, QEMU exits, or the timeout. QEMU is
# stopped by its PID. Sets RUN_STATUS (done | exited N | timeout) and RUN_SECONDS.
run_qemu() {
    local name="$1" kernel="$2" append="$3" module="$4" done_re="$5"
    local log="$LOG_DIR/$name.log"
    local args=(-machine q35 -cpu EPYC,-monitor,-smap -smp "$SMP" -m 1024 "${QEMU_EXTRA[@]}"
        -nic none -display none -monitor none -serial stdio -no-reboot
        -device isa-debug-exit,iobase=0xf4,iosize=0x04
        -kernel "$kernel" -append "$append")
    [[ -n "$module" ]] && args+=(-initrd "$module")
    echo "bench: $name: $QEMU -smp $SMP ${QEMU_EXTRA[*]}${QEMU_EXTRA[*]:+ }-kernel ${kernel#"$ROOT"/} -append \"$append\"${module:+ -initrd ${module#"$ROOT"/}}"
    local start=$SECONDS
    : >"$log"
    timeout "$TIMEOUT" "$QEMU" "${args[@]}" </dev/null >"$log" 2>&1 &
    local pid=$!
    local result_seen=""
    RUN_STATUS="timeout"
    while kill -0 "$pid" 2>/dev/null; do
        if grep -Eq "$done_re" "$log"; then
            RUN_STATUS="done"
            break
        fi
        # The guest finished but the hypervisor never said it halted: give it 10 s.
        if [[ -z "$result_seen" ]] && grep -q 'Test result:' "$log"; then
            result_seen=$SECONDS
        fi
        if [[ -n "$result_seen" ]] && ((SECONDS - result_seen > 10)); then
            RUN_STATUS="done (no halt line)"
            break
        fi
        sleep 0.5
    done
    sleep 0.3
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    else
        wait "$pid"
        local rc=$?
        if [[ "$RUN_STATUS" == timeout ]]; then
            if ((rc == 124)); then RUN_STATUS="timeout after ${TIMEOUT}s"; else RUN_STATUS="QEMU exited with status $rc"; fi
        fi
    fi
    RUN_SECONDS=$((SECONDS - start))
}

GUEST_DONE='Hardware Dom0 (halted|crashed)|Panic on CPU|Reboot in five seconds'
QEMU_EXTRA=()

declare -A CYC=()   # CYC[run:name] = cycles per call
declare -A WHY=()   # WHY[run:name] = why there is no number
declare -A RESULT=() # RESULT[run] = what the run ended with
declare -A KHZ=()   # KHZ[run] = TSC kHz the guest read from vcpu_time_info
RUNS=(xen off on on2 on5)
declare -A LABEL=([xen]="Xen 4.17" [off]="DualVisor lockstep=off" [on]="DualVisor lockstep on"
    [on2]="DualVisor on, -smp 2" [on5]="DualVisor on, -smp $PAIRS_SMP"
    [xen-icount]="Xen 4.17 (-icount)" [off-icount]="DualVisor lockstep=off (-icount)")

# parse_guest RUN: reads the BENCH lines of $LOG_DIR/RUN.log into CYC/WHY/KHZ and RESULT.
parse_guest() {
    local run="$1" log="$LOG_DIR/$1.log" line name rest
    while IFS= read -r line; do
        line="${line#"(XEN) "}"
        read -r _ name rest <<<"$line"
        case "$name" in
        tsc_khz=*) KHZ[$run]="${name#tsc_khz=}" ;;
        *)
            if [[ "$rest" =~ cycles_per_call=([0-9]+) ]]; then
                CYC[$run:$name]="${BASH_REMATCH[1]}"
            elif [[ "$rest" == unavailable* ]]; then
                WHY[$run:$name]="${rest#unavailable: }"
            fi
            ;;
        esac
    done < <(clean_log "$log" | grep -E '^(\(XEN\) )?BENCH ')
    local result
    result=$(clean_log "$log" | grep -o 'Test result: [A-Z]*' | tail -n 1)
    RESULT[$run]="${result:-no Test result line}"
}

run_guest() {
    local run="$1" kernel="$2" append="$3"
    if [[ ! -s "$kernel" ]]; then
        RESULT[$run]="not run: ${kernel#"$ROOT"/} missing"
        note "${LABEL[$run]}: not run, ${kernel#"$ROOT"/} missing"
        return
    fi
    run_qemu "$run" "$kernel" "$append" "$GUEST" "$GUEST_DONE"
    parse_guest "$run"
    RESULT[$run]="${RESULT[$run]}, $RUN_STATUS, ${RUN_SECONDS}s"
    echo "bench: ${LABEL[$run]}: ${RESULT[$run]} (log: ${LOG_DIR#"$ROOT"/}/$run.log)"
}

# dom0's vCPUs: two where there are two CPUs for them (the ping-pong's second vCPU, down
# until the hypercall benches are done), one on a single CPU.
vcpus() {
    if (($1 >= 2)); then echo "dom0_max_vcpus=2"; else echo "dom0_max_vcpus=1"; fi
}
section "QEMU: bench guest as dom0 (-smp $SMP, $(vcpus "$SMP"), vCPU 1 up only for the ping-pong)"
if [[ ! -s "$GUEST" ]]; then
    note "no ${GUEST#"$ROOT"/}: the guest runs are skipped (make guests builds it)"
    for run in "${RUNS[@]}"; do RESULT[$run]="not run: no bench guest"; done
else
    run_guest xen "$XEN" "$CONSOLE $(vcpus "$SMP")"
    run_guest off "$IMAGE" "$CONSOLE $(vcpus "$SMP") lockstep=off"
    run_guest on "$IMAGE" "$CONSOLE $(vcpus "$SMP")"
    # Two CPUs: one pair, the leader decides each round itself (no coordinator core to wake).
    SMP_WAS="$SMP" SMP=2
    run_guest on2 "$IMAGE" "$CONSOLE $(vcpus 2)"
    # Two pairs: dom0's vCPU 1 on pair 1's leader, so DualVisor's ping-pong crosses CPUs (its
    # hypercall numbers are not in the table: five vCPU threads share the host's cores).
    SMP=$PAIRS_SMP
    run_guest on5 "$IMAGE" "$CONSOLE $(vcpus "$PAIRS_SMP")"
    SMP="$SMP_WAS"
fi

# The same guest under `-icount shift=0` (single-threaded TCG; the virtual clock, and with it
# the TSC, advances one nanosecond per guest instruction, so the TSC reads 1 GHz and the
# guest's "cycles per call" are instructions per call): a count that host load cannot move.
# Lockstep on is not run this way: its cost is waiting for other vCPUs, which icount's
# round-robin would not show. For the same reason these runs keep one dom0 vCPU: the
# ping-pong would time the round-robin's switch between vCPU threads, not a round trip.
section "QEMU: bench guest under -icount shift=0 (instructions per call)"
if [[ -s "$GUEST" ]]; then
    QEMU_EXTRA=(-icount shift=0)
    run_guest xen-icount "$XEN" "$CONSOLE dom0_max_vcpus=1"
    run_guest off-icount "$IMAGE" "$CONSOLE dom0_max_vcpus=1 lockstep=off"
    QEMU_EXTRA=()
fi

section "QEMU: DualVisor selftest=lockstep (-smp $SMP)"
SELFTEST_RESULT="not run: ${IMAGE#"$ROOT"/} missing"
if [[ -s "$IMAGE" ]]; then
    run_qemu selftest "$IMAGE" "$CONSOLE selftest=lockstep" "" \
        'selftest lockstep: (PASS|FAIL)|Panic on CPU'
    SELFTEST_RESULT=$(clean_log "$LOG_DIR/selftest.log" | grep -Eo 'selftest lockstep: (PASS|FAIL.*)' | tail -n 1)
    SELFTEST_RESULT="${SELFTEST_RESULT:-no PASS/FAIL line}, $RUN_STATUS, ${RUN_SECONDS}s"
    echo "bench: selftest=lockstep: $SELFTEST_RESULT (log: ${LOG_DIR#"$ROOT"/}/selftest.log)"
fi

# Steady-state recovery: hcloop makes 20,000 xen_version calls after arming 2,000 `effects`
# faults, so its first 2,000 calls are each detected, rolled back and re-executed (with the
# code paths warm, unlike the self-test's few injections per kind); it prints the mean of
# the recovery latencies the lockstep status reports.
HCLOOP="$ROOT/build/guests/hcloop.elf"
declare -A RECOVERY=() # RECOVERY[smp] = "N recoveries, mean X ns" or why not
declare -A RECOVERY_HIST=() # RECOVERY_HIST[smp] = hcloop's "recovery latency median ..." line
recovery_run() {
    local smp="$1" SMP_WAS="$SMP"
    SMP="$smp"
    run_qemu "recovery-smp$smp" "$IMAGE" "$CONSOLE dom0_max_vcpus=1" \
        "$HCLOOP count=20000 inject=2000" "$GUEST_DONE"
    SMP="$SMP_WAS"
    local line
    line=$(clean_log "$LOG_DIR/recovery-smp$smp.log" | grep -Eo 'hcloop: [0-9]+ recoveries, mean recovery latency [0-9]+ ns' | tail -n 1)
    RECOVERY[$smp]="${line:-no recovery line ($RUN_STATUS)}"
    RECOVERY_HIST[$smp]=$(clean_log "$LOG_DIR/recovery-smp$smp.log" | grep -Eo 'hcloop: recovery latency median .*' | tail -n 1)
    echo "bench: recovery -smp $smp: ${RECOVERY[$smp]} (log: ${LOG_DIR#"$ROOT"/}/recovery-smp$smp.log)"
}
RECOVERY_SMPS=("$SMP")
[[ "$SMP" != 2 ]] && RECOVERY_SMPS+=(2)
section "QEMU: steady-state recovery (hcloop: 20,000 xen_version calls, 2,000 effects faults)"
if [[ -s "$IMAGE" && -s "$HCLOOP" ]]; then
    for smp in "${RECOVERY_SMPS[@]}"; do recovery_run "$smp"; done
else
    for smp in "${RECOVERY_SMPS[@]}"; do RECOVERY[$smp]="not run: no image or no hcloop guest"; done
fi

# ---------------------------------------------------------------------------------------------
# 4. Report.

# ratio A B -> "A/B" with two decimals, or "n/a".
ratio() {
    if [[ -n "$1" && -n "$2" && "$2" != 0 ]]; then
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'
    else
        echo "n/a"
    fi
}

# verdict RATIO TARGET -> "meets" / "above" / "" (for n/a).
verdict() {
    [[ "$1" == n/a ]] && return
    awk -v r="${1%x}" -v t="$2" 'BEGIN { print (r <= t ? "meets" : "above") }'
}

cell() {
    local v="${CYC[$1:$2]:-}"
    if [[ -n "$v" ]]; then echo "$v"; elif [[ -n "${WHY[$1:$2]:-}" ]]; then echo "unavail."; else echo "-"; fi
}

section "results: cycles per call (median of 32 batches x 256 calls; TSC cycles, TCG)"
for run in "${RUNS[@]}"; do
    printf '  %-24s %s%s\n' "${LABEL[$run]}:" "${RESULT[$run]}" "${KHZ[$run]:+, TSC ${KHZ[$run]} kHz}"
    # DualVisor states its lockstep roles at boot: show them, so the on/off runs prove it.
    if [[ "$run" != xen && -s "$LOG_DIR/$run.log" ]]; then
        roles=$(clean_log "$LOG_DIR/$run.log" | sed -n 's/^(XEN) \(lockstep: .*\)/\1/p' | head -n 1)
        printf '  %-24s %s\n' "" "${roles:-(no 'lockstep:' line at boot)}"
    fi
done
echo
printf '  %-12s %10s %14s %14s %14s\n' hypercall "Xen 4.17" "DV lockstep=off" "DV lockstep on" "DV on -smp 2"
for n in "${NAMES[@]}" "$PINGPONG"; do
    printf '  %-12s %10s %14s %14s %14s\n' "$n" "$(cell xen "$n")" "$(cell off "$n")" "$(cell on "$n")" "$(cell on2 "$n")"
done

# rate_row LABEL NAME FORMAT FACTOR: FACTOR * TSC kHz / cycles per call of NAME, per run.
rate_row() {
    printf '  %-12s' "$1"
    for run in xen off on on2; do
        c="${CYC[$run:$2]:-}" k="${KHZ[$run]:-}"
        if [[ -n "$c" && -n "$k" && "$c" != 0 ]]; then
            printf ' %14s' "$(awk -v c="$c" -v k="$k" -v f="$4" -v fmt="$3" 'BEGIN { printf fmt, f * k / c }')"
        else
            printf ' %14s' "n/a"
        fi
    done
    echo
}
echo
# gnttab_copy copies 4096 bytes per call: MB/s = 4096 bytes * TSC kHz * 1000 / cycles / 1e6.
rate_row "gnttab_copy MB/s" gnttab_copy "%.1f" 4.096
# mmu_update64 does 64 validated L1 updates per call: updates/s = 64 * TSC kHz * 1000 / cycles.
rate_row "mmu_update/s" mmu_update64 "%.0f" 64000

echo
echo "  instructions per call (-icount shift=0; the run's TSC is 1 GHz, one tick per instruction):"
printf '  %-12s %10s %14s %10s\n' hypercall "Xen 4.17" "DV lockstep=off" "off/Xen"
for n in "${NAMES[@]}"; do
    printf '  %-12s %10s %14s %10s\n' "$n" "$(cell xen-icount "$n")" "$(cell off-icount "$n")" \
        "$(ratio "${CYC[off-icount:$n]:-}" "${CYC[xen-icount:$n]:-}")"
done
for run in xen-icount off-icount; do
    [[ -n "${KHZ[$run]:-}" ]] && printf '  %-36s %s\n' "${LABEL[$run]} TSC:" "${KHZ[$run]} kHz (1 GHz expected)"
done

section "RATIOS (printed, not judged)"
printf '  %-12s %-30s %-30s %-30s %s\n' hypercall "DualVisor-off/Xen (<= 1.0x)" "DualVisor-on/Xen (<= 3.0x)" "on -smp 2/Xen (<= 3.0x)" "on/off"
for n in "${NAMES[@]}"; do
    x="${CYC[xen:$n]:-}" f="${CYC[off:$n]:-}" o="${CYC[on:$n]:-}" o2="${CYC[on2:$n]:-}"
    r1=$(ratio "$f" "$x") r2=$(ratio "$o" "$x") r4=$(ratio "$o2" "$x") r3=$(ratio "$o" "$f")
    v1=$(verdict "$r1" 1.0) v2=$(verdict "$r2" 3.0) v4=$(verdict "$r4" 3.0)
    printf '  %-12s %-30s %-30s %-30s %s\n' "$n" "$r1${v1:+ ($v1 target)}" "$r2${v2:+ ($v2 target)}" "$r4${v4:+ ($v4 target)}" "$r3"
done

# Why numbers are missing.
missing=0
for run in "${RUNS[@]}"; do
    for n in "${NAMES[@]}"; do
        if [[ -z "${CYC[$run:$n]:-}" ]]; then
            missing=1
            why="${WHY[$run:$n]:-no BENCH line in the log}"
            echo "  ${LABEL[$run]}: $n: $why"
        fi
    done
done
for run in off on on2 on5; do
    if [[ "${RESULT[$run]}" != "Test result: SUCCESS"* ]]; then
        echo "  NOTE: ${LABEL[$run]} did not run the bench guest to a successful end (${RESULT[$run]});"
        echo "        the PV hypercall paths may not be wired up yet. Last lines of its serial log:"
        clean_log "$LOG_DIR/$run.log" 2>/dev/null | grep -Ev "^qemu-system|TCG doesn't support" | tail -n 8 | sed 's/^/          | /'
    fi
done
((missing)) && echo "  (ratios need both numbers; 'n/a' where one is missing)"

# The floor: under lockstep a hypercall's guest resumes only after at least one cross-CPU round
# trip (leader -> follower -> leader), so it costs at least Xen's cost plus the round trip
# the bench guest's two vCPUs measured on Xen (a cache line bounced with no hypercall).
section "lockstep floor: cross-vCPU cache-line ping-pong (printed, not judged)"
# pp_cell RUN -> "N cycles" or "unavailable: why" or "no pingpong line".
pp_cell() {
    if [[ -n "${CYC[$1:$PINGPONG]:-}" ]]; then
        echo "${CYC[$1:$PINGPONG]} cycles per round trip"
    elif [[ -n "${WHY[$1:$PINGPONG]:-}" ]]; then
        echo "unavailable: ${WHY[$1:$PINGPONG]}"
    else
        echo "no $PINGPONG line (${RESULT[$1]:-not run})"
    fi
}
rt="${CYC[xen:$PINGPONG]:-}" xv="${CYC[xen:xen_version]:-}"
if [[ -n "$rt" ]]; then
    echo "  cross-CPU round trip on Xen 4.17 (this QEMU): $rt cycles = $(ratio "$rt" "$xv") Xen's xen_version"
    for n in "${NAMES[@]}"; do
        x="${CYC[xen:$n]:-}"
        if [[ -n "$x" && "$x" != 0 ]]; then
            floor=$(awk -v x="$x" -v r="$rt" 'BEGIN { printf "%.2fx", (x + r) / x }')
        else
            floor="n/a"
        fi
        printf '  lockstep-on floor for %-13s >= (Xen %s + round trip)/Xen %s = %s   (measured: on/Xen %s, on -smp 2/Xen %s)\n' \
            "$n:" "$n" "$n" "$floor" "$(ratio "${CYC[on:$n]:-}" "$x")" "$(ratio "${CYC[on2:$n]:-}" "$x")"
    done
else
    echo "  cross-CPU round trip on Xen 4.17 (this QEMU): $(pp_cell xen); no floor"
fi
echo "  DualVisor's ping-pong (no hypercall in a round trip, so lockstep cannot slow it down):"
for run in off on on2 on5; do
    c="$(pp_cell "$run")"
    [[ -n "${CYC[$run:$PINGPONG]:-}" && -n "$rt" ]] && c="$c = $(ratio "${CYC[$run:$PINGPONG]}" "$rt") Xen's"
    printf '    %-26s %s\n' "${LABEL[$run]}:" "$c"
done
echo "  (-icount runs: one dom0 vCPU, no ping-pong: with one host thread QEMU switches vCPUs in"
echo "   turn, so a round trip there would time that switch, not a cache line.)"

section "lockstep recovery (selftest=lockstep, -smp $SMP)"
echo "  $SELFTEST_RESULT"
if [[ -s "$LOG_DIR/selftest.log" ]]; then
    stats=$(clean_log "$LOG_DIR/selftest.log" | sed 's/^(XEN) //' |
        grep -E '^(lockstep: |lockstep selftest|transactions |detected |recovery latency|inject )')
    if [[ -n "$stats" ]]; then
        echo "$stats" | sed 's/^/  /'
        rec=$(echo "$stats" | grep -Eo 'recovery latency: n [0-9]+ mean [0-9]+ max [0-9]+' | tail -n 1)
        khz="" khz_from=""
        for run in on off xen; do
            if [[ -n "${KHZ[$run]:-}" ]]; then
                khz="${KHZ[$run]}" khz_from="${LABEL[$run]}"
                break
            fi
        done
        if [[ -n "$rec" && -n "$khz" ]]; then
            read -r _ _ _ cnt _ mean _ max <<<"$rec"
            awk -v n="$cnt" -v mean="$mean" -v max="$max" -v khz="$khz" -v from="$khz_from" 'BEGIN {
                us = mean * 1000 / khz; mx = max * 1000 / khz
                printf "  recovery latency: %d recoveries, mean %.1f us, max %.1f us   target <= 20 us: %s\n",
                    n, us, mx, (n == 0 ? "n/a (nothing recovered)" : (us <= 20 ? "meets" : "above"))
                printf "  (cycles converted with TSC %d kHz as the %s guest read it; under TCG every run reads the host TSC)\n",
                    khz, from
            }'
        elif [[ -n "$rec" ]]; then
            echo "  (no TSC frequency from a guest run: recovery latency left in cycles)"
        fi
    else
        echo "  the self-test printed no lockstep statistics"
    fi
fi
section "lockstep recovery, steady state (hcloop xen_version with 2,000 effects faults)"
for smp in "${RECOVERY_SMPS[@]}"; do
    r="${RECOVERY[$smp]}"
    if [[ "$r" =~ ([0-9]+)\ recoveries,\ mean\ recovery\ latency\ ([0-9]+)\ ns ]]; then
        awk -v smp="$smp" -v n="${BASH_REMATCH[1]}" -v ns="${BASH_REMATCH[2]}" 'BEGIN {
            printf "  -smp %s: %d recoveries, mean %.1f us   target <= 20 us: %s\n",
                smp, n, ns / 1000, (ns <= 20000 ? "meets" : "above")
        }'
        # The histogram's view (buckets of a 1-2-5 series): the typical recovery, the tail
        # and the share under the target, which a few host-descheduled outliers do not move.
        h="${RECOVERY_HIST[$smp]:-}"
        if [[ "$h" =~ median\ ([0-9]+)-([0-9]+)\ ns,\ p90\ ([^,]+),\ p99\ ([^,]+),\ ([0-9]+)\ of\ ([0-9]+)\ below ]]; then
            awk -v lo="${BASH_REMATCH[1]}" -v hi="${BASH_REMATCH[2]}" -v p90="${BASH_REMATCH[3]}" \
                -v p99="${BASH_REMATCH[4]}" -v below="${BASH_REMATCH[5]}" -v all="${BASH_REMATCH[6]}" '
            # "A-B ns" as "a-b us", ">=A ns" as ">=a us".
            function us(b,   m) {
                if (match(b, /^[0-9]+-[0-9]+ ns$/)) {
                    split(b, m, /[- ]/)
                    return sprintf("%g-%g us", m[1] / 1000, m[2] / 1000)
                }
                if (match(b, /^>=[0-9]+ ns$/)) {
                    split(substr(b, 3), m, / /)
                    return sprintf(">=%g us", m[1] / 1000)
                }
                return b
            }
            BEGIN {
                printf "           median %g-%g us, p90 %s, p99 %s; %.1f%% below 20 us   median: %s\n",
                    lo / 1000, hi / 1000, us(p90), us(p99), (all ? 100 * below / all : 0),
                    (hi <= 20000 ? "meets" : "above")
            }'
        elif [[ -n "$h" ]]; then
            echo "           ${h#hcloop: }"
        fi
    else
        echo "  -smp $smp: $r"
    fi
done
if [[ -s "$HOST_LOG" ]] && grep -q 'mailbox round trip' "$HOST_LOG"; then
    section "host lockstep engine (targets: mailbox <= 1.5x raw ping-pong)"
    sed 's/^/  /' "$HOST_LOG"
fi

if ((${#NOTES[@]})); then
    section "notes"
    printf '  %s\n' "${NOTES[@]}"
fi
echo
echo "bench: serial logs in ${LOG_DIR#"$ROOT"/}/"
exit 0
