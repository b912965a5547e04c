#!/usr/bin/env python3
"""profile.py: a sampling profiler for DualVisor (or Xen) under QEMU TCG.

Boots KERNEL under QEMU with the `hcloop` guest (or any dom0 module) and an HMP monitor on a
Unix socket, then, every INTERVAL seconds, stops the VM (`stop` takes every vCPU out of TCG at a
translation-block boundary, so the RIP it shows is exact to the block), reads every vCPU's RIP
(`info registers -a`) and resumes it (`cont`). The samples are mapped to the function symbols of
the hypervisor ELF (`nm`) and printed per CPU, most frequent first. Sampling costs the guest
wall-clock time only, not where its cycles go, so a busy host does not skew the shares.

Used by scripts/profile.sh (`make profile`); run with --help for the knobs.
"""
import argparse
import bisect
import collections
import os
import re
import socket
import subprocess
import sys
import tempfile
import time


def symbols(elf):
    """(sorted addresses, names) of the function symbols of `elf`."""
    out = subprocess.run(["nm", "-n", "--demangle", "--defined-only", elf],
                         check=True, capture_output=True, text=True).stdout
    addrs, names = [], []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            addrs.append(int(parts[0], 16))
            names.append(shorten(parts[2]))
    return addrs, names


def shorten(name):
    """A demangled Rust name without its hash and generic noise."""
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    return name


class Monitor:
    """A minimal HMP client: sends a command, returns its output up to the next prompt."""

    def __init__(self, path, timeout):
        deadline = time.time() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.buf = b""
        self.read_prompt()

    def read_prompt(self):
        while b"(qemu) " not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("monitor closed")
            self.buf += data
        out, _, self.buf = self.buf.partition(b"(qemu) ")
        return out.decode(errors="replace")

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\n")
        return self.read_prompt()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", required=True, help="hypervisor ELF QEMU boots (-kernel)")
    ap.add_argument("--module", required=True, help="dom0 module and its command line (-initrd)")
    ap.add_argument("--append", default="", help="hypervisor command line")
    ap.add_argument("--smp", type=int, default=3)
    ap.add_argument("--accel", default="tcg")
    ap.add_argument("--samples", type=int, default=2000, help="samples to take")
    ap.add_argument("--interval", type=float, default=0.005, help="seconds between samples")
    ap.add_argument("--start", default="hcloop: ", help="serial text that starts the sampling")
    ap.add_argument("--timeout", type=int, default=300, help="seconds for the whole QEMU run")
    ap.add_argument("--top", type=int, default=25, help="functions shown per CPU")
    ap.add_argument("--log", default=None, help="serial log path (default: a temp file)")
    ap.add_argument("--singlestep", action="store_true",
                    help="one instruction per translation block (QEMU -singlestep): samples "
                         "weigh instructions by count, exact to the instruction")
    ap.add_argument("--detail", action="append", default=[],
                    help="also show the sampled addresses inside functions whose name contains this")
    args = ap.parse_args()

    addrs, names = symbols(args.kernel)
    tmp = tempfile.mkdtemp(prefix="dv-profile-")
    sock_path = os.path.join(tmp, "mon.sock")
    log = args.log or os.path.join(tmp, "serial.log")
    qemu = ["timeout", str(args.timeout), "qemu-system-x86_64", "-machine", "q35",
            "-accel", args.accel, "-cpu", "EPYC,-monitor,-smap", "-smp", str(args.smp),
            "-m", "1024", "-nic", "none", "-display", "none",
            "-monitor", f"unix:{sock_path},server,nowait",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-no-reboot",
            "-serial", f"file:{log}", "-kernel", args.kernel, "-append", args.append,
            "-initrd", args.module] + (["-singlestep"] if args.singlestep else [])
    proc = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        mon = Monitor(sock_path, 30)
        deadline = time.time() + args.timeout
        while args.start not in read(log):
            if proc.poll() is not None or time.time() > deadline:
                sys.exit(f"profile: '{args.start}' never appeared in {log}")
            time.sleep(0.05)
        per_cpu = collections.defaultdict(collections.Counter)
        taken = 0
        while taken < args.samples and proc.poll() is None:
            if "Test result:" in read(log)[-4096:]:
                break
            mon.cmd("stop")
            regs = mon.cmd("info registers -a")
            mon.cmd("cont")
            cpu = None
            for line in regs.splitlines():
                m = re.match(r"\s*CPU#(\d+)", line)
                if m:
                    cpu = int(m.group(1))
                m = re.search(r"RIP=([0-9a-f]{16})", line)
                if m and cpu is not None:
                    per_cpu[cpu][int(m.group(1), 16)] += 1
            taken += 1
            time.sleep(args.interval)
    finally:
        # SIGTERM to `timeout`, which passes it on to QEMU (a SIGKILL would orphan QEMU).
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print(f"profile: {taken} samples of {args.smp} CPUs, serial log {log}")
    for cpu in sorted(per_cpu):
        funcs = collections.Counter()
        for rip, n in per_cpu[cpu].items():
            i = bisect.bisect_right(addrs, rip) - 1
            if i >= 0 and rip <= addrs[-1]:
                funcs[names[i]] += n
            else:
                funcs["(outside the image: guest %s)" % ("kernel" if rip >> 63 else "user")] += n
        total = sum(funcs.values())
        print(f"\nCPU{cpu}: {total} samples")
        for name, n in funcs.most_common(args.top):
            print(f"  {100.0 * n / total:5.1f}%  {n:6d}  {name}")
        for want in args.detail:
            hits = [(rip, n) for rip, n in per_cpu[cpu].items()
                    if (i := bisect.bisect_right(addrs, rip) - 1) >= 0 and want in names[i]]
            by_line = collections.Counter()
            for rip, n in hits:
                by_line[where(args.kernel, rip).split(" < ")[-1]] += n
            print(f"  {want}: by source line of the function itself")
            for line, n in by_line.most_common(args.top):
                print(f"    {n:6d}  {line}")


def where(elf, rip):
    """The source lines of `rip` (innermost inlined frame first), from addr2line."""
    out = subprocess.run(["addr2line", "-i", "-e", elf, hex(rip)],
                         capture_output=True, text=True).stdout.split()
    return " < ".join(os.path.basename(p) for p in out)


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


if __name__ == "__main__":
    main()
