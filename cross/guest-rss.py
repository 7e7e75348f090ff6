#!/usr/bin/env python3
"""Runs a program under qemu-user and reports its peak memory.

Usage: guest-rss.py OUT_FILE QEMU [QEMU_ARGS...] -- PROGRAM [ARGS...]

Stdout of the program goes to OUT_FILE, its stderr is passed through. Prints
one line: `guest_peak_kb=N qemu_peak_kb=M rc=R samples=S`.

guest_peak_kb: the largest resident size, sampled every 2 ms from
/proc/PID/smaps, of the mappings inside the guest address space that qemu
reserves (its base is read from qemu's `-d page` log). That is the memory the
program itself touches: its image, heap, stack and mmaps, as it would be
resident on the device. qemu_peak_kb: the peak RSS of the whole emulator
process (getrusage), which adds qemu's own code cache and heap.
The exit status is R (the program's).
"""
import os
import re
import resource
import subprocess
import sys
import tempfile
import time


def guest_rss_kb(pid, lo, hi):
    total = 0
    inside = False
    try:
        with open("/proc/%d/smaps" % pid) as f:
            for line in f:
                if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                    a, b = line.split(" ", 1)[0].split("-")
                    inside = int(a, 16) >= lo and int(b, 16) <= hi
                elif inside and line.startswith("Rss:"):
                    total += int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return total


def main():
    out_path = sys.argv[1]
    argv = sys.argv[2:]
    sep = argv.index("--")
    qemu, prog = argv[:sep], argv[sep + 1:]
    log = tempfile.NamedTemporaryFile(prefix="qemu-page-", suffix=".log", delete=False)
    log.close()
    cmd = qemu + ["-d", "page", "-D", log.name] + prog
    with open(out_path, "wb") as out:
        p = subprocess.Popen(cmd, stdout=out)
        base = None
        peak = 0
        samples = 0
        while True:
            if p.poll() is not None:
                break
            if base is None:
                try:
                    with open(log.name) as f:
                        m = re.search(r"Locating guest address space @ (0x[0-9a-f]+)", f.read())
                    if m:
                        base = int(m.group(1), 16)
                except OSError:
                    pass
            if base is not None:
                kb = guest_rss_kb(p.pid, base, base + (1 << 32))
                if kb is not None:
                    peak = max(peak, kb)
                    samples += 1
            time.sleep(0.002)
    rc = p.returncode
    # The emulator is the only child this process waited for.
    qemu_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    os.unlink(log.name)
    print("guest_peak_kb=%d qemu_peak_kb=%d rc=%d samples=%d" % (peak, qemu_peak, rc, samples))
    sys.exit(0 if samples > 0 else 3)


main()
