#!/usr/bin/env python3
"""Event-to-decision latency of `shmc-plugin run`, measured from outside.

Usage: latency.py TRIALS [--blades N] -- COMMAND...   (COMMAND runs the plugin binary,
e.g. `target/release/shmc-plugin` or `qemu-arm-static -cpu arm926 path/shmc-plugin`)

A pseudo-terminal stands in for the IPMB (the daemon's stream mode). Per trial,
for the next blade in turn: the driver writes one critical Platform Event
(upper critical going high), taking a timestamp just before write(); it then
reads the plugin's output until the Set FRU Activation (deactivate) request to
that blade's IPMC arrives, taking a timestamp just after read() returns. The
difference is frame write -> fence request read: the kernel's pty both ways,
the plugin's read, framing, decode, classification, incident machine, request
framing and write. Then the driver walks the blade M6 -> M1 -> M2 -> M3 -> M4 so
the incident ends before the blade's next turn.

Prints one JSON object: trials, p50_us, p99_us, max_us, mean_us, min_us, and
process_peak_rss_kb (VmHWM of the process started: under qemu-user, the emulator's).
"""
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import tty

SHMC = 0x20


def frame(rq_sa, seq, data, netfn=0x04, cmd=0x02):
    head = [SHMC, netfn << 2, (-(SHMC + (netfn << 2))) & 0xFF]
    body = [rq_sa, (seq & 0x3F) << 2, cmd] + list(data)
    msg = head + body + [(-sum(body)) & 0xFF]
    return bytes([len(msg)] + msg)


class Reader:
    def __init__(self, fd):
        self.fd = fd
        self.buf = b""

    def messages(self, timeout):
        """Returns (time_ns_after_read, [messages]) or (None, []) on timeout."""
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return None, []
        data = os.read(self.fd, 4096)
        t = time.perf_counter_ns()
        self.buf += data
        out = []
        while self.buf:
            n = self.buf[0]
            if n < 7 or n > 32:
                self.buf = self.buf[1:]
                continue
            if len(self.buf) < n + 1:
                break
            out.append(self.buf[1:n + 1])
            self.buf = self.buf[n + 1:]
        return t, out


def percentile(xs, p):
    s = sorted(xs)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def main():
    argv = sys.argv[1:]
    sep = argv.index("--")
    opts, cmd = argv[:sep], argv[sep + 1:]
    trials = int(opts[0])
    blades = 16
    if "--blades" in opts:
        blades = int(opts[opts.index("--blades") + 1])
    addrs = [0x82 + 2 * i for i in range(blades)]

    master, slave = os.openpty()
    tty.setraw(slave)
    slave_path = os.ttyname(slave)
    d = tempfile.mkdtemp(prefix="shelfha-lat-")
    cfg = os.path.join(d, "shelf.toml")
    with open(cfg, "w") as f:
        f.write('[shelf]\nown_address = 0x20\nipmb_device = "%s"\nipmb_mode = "stream"\n' % slave_path)
        f.write("[timing]\nprobe_timeout_ms = 3600000\n")
        for i, a in enumerate(addrs):
            slot = i + 1
            partner = slot + 1 if slot % 2 else slot - 1
            f.write("[[blade]]\nslot = %d\nipmb_address = 0x%02x\npartner = %d\nhot_swap_sensor = 0\n"
                    % (slot, a, partner))
    err = open(os.path.join(d, "plugin.log"), "w")
    proc = subprocess.Popen(cmd + ["run", "--config", cfg], stdout=subprocess.DEVNULL, stderr=err)
    rd = Reader(master)
    time.sleep(0.5)
    if proc.poll() is not None:
        sys.exit("plugin exited at start: see %s" % err.name)

    seq = 0

    def nxt():
        nonlocal seq
        seq = (seq + 1) & 0x3F
        return seq

    def send_wait_response(a, data):
        os.write(master, frame(a, nxt(), data))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _, msgs = rd.messages(0.5)
            for m in msgs:
                # response to our Platform Event: netFn 0x05 (<<2 = 0x14), cmd 0x02, rs_sa = a
                if m[0] == a and (m[1] >> 2) == 0x05 and m[5] == 0x02:
                    return
        sys.exit("no Platform Event response from the plugin")

    lat = []
    for trial in range(trials + 1):  # trial 0 is a warm-up, not counted
        a = addrs[trial % len(addrs)]
        ev = frame(a, nxt(), [0x04, 0x01, 1, 0x01, 0x59, 0x5F, 0x5A])
        t0 = time.perf_counter_ns()
        os.write(master, ev)
        t1 = None
        deadline = time.monotonic() + 10
        while t1 is None and time.monotonic() < deadline:
            t, msgs = rd.messages(0.5)
            for m in msgs:
                if m[0] == a and (m[1] >> 2) == 0x2C and m[5] == 0x0C:
                    t1 = t
                    break
        if t1 is None:
            proc.kill()
            sys.exit("no Set FRU Activation for 0x%02x within 10 s (trial %d)" % (a, trial))
        if trial > 0:
            lat.append((t1 - t0) / 1000.0)
        for new, prev in ((6, 4), (1, 6), (2, 1), (3, 2), (4, 3)):
            send_wait_response(a, [0x04, 0xF0, 0, 0x6F, 0xA0 | new, prev, 0x00])
    hwm = None
    with open("/proc/%d/status" % proc.pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    proc.kill()
    proc.wait()
    print(json.dumps({
        "process_peak_rss_kb": hwm,
        "trials": len(lat),
        "p50_us": round(percentile(lat, 50), 1),
        "p99_us": round(percentile(lat, 99), 1),
        "max_us": round(max(lat), 1),
        "mean_us": round(sum(lat) / len(lat), 1),
        "min_us": round(min(lat), 1),
    }))


if __name__ == "__main__":
    main()
