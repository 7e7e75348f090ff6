#!/usr/bin/env python3
"""The shelfha benchmark: measures everything in one run, prints one table, writes JSON.

Run through bench/run.sh (which builds the binaries first). Usage:
    bench.py [--smoke] --out FILE
Environment: BENCH_ROOT (repository root), BENCH_CROSS_DIR (extracted cross
binaries: <dir>/<target>/shmc-plugin).
"""
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.environ.get("BENCH_ROOT", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench")
WORK = os.path.join(ROOT, "target", "bench")
CROSS_DIR = os.environ.get("BENCH_CROSS_DIR", os.path.join(WORK, "cross"))
PROFILE_DIR = os.environ.get("BENCH_PROFILE_DIR", "release")
PLUGIN = os.path.join(ROOT, "target", PROFILE_DIR, "shmc-plugin")
SHELFHA = os.path.join(ROOT, "target", PROFILE_DIR, "shelfha")
AGENT = os.path.join(ROOT, "target", PROFILE_DIR, "blade-agent")
IPMB_LIMIT = 1500.0  # frames/s one IPMB bus carries (about 1.3 ms per event frame at 100 kbit/s)
EMULATED = {
    "armv5te-unknown-linux-musleabi": ["qemu-arm-static", "-cpu", "arm926"],
    "powerpc-unknown-linux-musl": ["qemu-ppc-static", "-cpu", "e500v2"],
}
CROSS_ALL = ["armv5te-unknown-linux-musleabi", "armv7-unknown-linux-musleabihf",
             "powerpc-unknown-linux-musl", "mips-unknown-linux-musl"]


def log(msg):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60).stdout.strip()
    except Exception:  # noqa: BLE001 - a missing tool only leaves a field empty
        return ""


def pct(xs, p):
    """Nearest-rank percentile."""
    s = sorted(xs)
    k = min(len(s) - 1, max(0, -(-len(s) * p // 100) - 1))
    return s[int(k)]


def stats(xs):
    return {"n": len(xs), "median": statistics.median(xs), "p99": pct(xs, 99),
            "min": min(xs), "max": max(xs)}


def machine():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_mib": mem_kb // 1024,
        "kernel": platform.release(),
        "os": sh(". /etc/os-release && echo $PRETTY_NAME"),
        "commit": sh("git -C %s rev-parse --short HEAD" % ROOT),
        "dirty": bool(sh("git -C %s status --porcelain --untracked-files=no" % ROOT)),
        "rustc": sh("rustc --version"),
        "cross_rustc": sh("/usr/bin/rustc --version"),
        "qemu_user": sh("qemu-arm-static --version | head -1"),
        "qemu_system": sh("qemu-system-x86_64 --version | head -1"),
        "libvirt": sh("libvirtd --version"),
        "kvm": os.path.exists("/dev/kvm"),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def vm_hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def run_rusage(cmd):
    """Runs cmd; returns (seconds, peak RSS KB of the program, exit status).

    The peak is VmHWM of the program's own address space, sampled every 2 ms until it
    exits (VmHWM only grows, so the last sample is the peak up to a few ms before exit).
    getrusage's ru_maxrss is not used: it also counts the forked copy of this Python
    process before exec."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while p.poll() is None:
        h = vm_hwm_kb(p.pid)
        if h:
            peak = max(peak, h)
        time.sleep(0.002)
    dt = time.perf_counter() - t0
    return dt, peak, p.returncode


# ---------------------------------------------------------------- a. throughput


def capture(frames):
    os.makedirs(WORK, exist_ok=True)
    path = os.path.join(WORK, "capture-%d.txt" % frames)
    if not os.path.exists(path):
        log("generating %d-frame capture" % frames)
        with open(path + ".tmp", "w") as f:
            subprocess.run([sys.executable, os.path.join(BENCH, "gen-capture.py"), str(frames)],
                           stdout=f, check=True)
        os.rename(path + ".tmp", path)
    return path


def replay_summary(cmd, cap):
    """The replay's summary line (its output is streamed: only the last line is kept)."""
    p = subprocess.Popen(cmd + ["replay", "--config", os.path.join(BENCH, "shelf16.toml"), cap],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    last = ""
    for line in p.stdout:
        last = line
    assert p.wait() == 0, "replay failed"
    return json.loads(last)["summary"]


def throughput(name, cmd, cap, frames, reps):
    summary = replay_summary(cmd, cap)
    assert summary["frames"] + summary["bad_frames"] == frames, summary
    argv = cmd + ["replay", "--config", os.path.join(BENCH, "shelf16.toml"), cap]
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        rc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        dt = time.perf_counter() - t0
        assert rc == 0, "%s replay failed (%d)" % (name, rc)
        rates.append(frames / dt)
    # One more run for the memory peak (sampling would slow the timed runs).
    _, kb, _ = run_rusage(argv)
    rss = [kb]
    s = stats(rates)
    # For a rate the slow tail is the low end: p99 of the per-run times.
    s["p99_slow"] = pct([-r for r in rates], 99) * -1
    log("throughput %s: median %.0f frames/s" % (name, s["median"]))
    return {"target": name, "frames": frames, "reps": reps, "frames_per_s": s,
            "ratio_to_ipmb": s["median"] / IPMB_LIMIT, "summary": summary,
            "process_peak_rss_kb": max(rss)}


# ---------------------------------------------------------------- b. latency


def latency(name, cmd, trials):
    out = subprocess.run([sys.executable, os.path.join(BENCH, "latency.py"), str(trials), "--"] + cmd,
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError("latency %s: %s" % (name, out.stderr.strip()))
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["target"] = name
    log("latency %s: p50 %.1f us p99 %.1f us" % (name, r["p50_us"], r["p99_us"]))
    return r


# ---------------------------------------------------------------- c. footprint


def guest_rss(target, binary, cap):
    out = os.path.join(WORK, "guest-rss-%s.out" % target)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "cross", "guest-rss.py"), out]
                       + EMULATED[target] + ["--", binary, "replay", "--config",
                                             os.path.join(BENCH, "shelf16.toml"), cap],
                       capture_output=True, text=True, timeout=900)
    m = re.search(r"guest_peak_kb=(\d+) qemu_peak_kb=(\d+) rc=(\d+)", r.stdout)
    if not m or m.group(3) != "0":
        raise RuntimeError("guest-rss %s: %s %s" % (target, r.stdout, r.stderr))
    return {"guest_peak_kb": int(m.group(1)), "qemu_peak_kb": int(m.group(2))}


def sizes():
    res = {}
    for t in CROSS_ALL:
        b = os.path.join(CROSS_DIR, t, "shmc-plugin")
        if os.path.exists(b):
            res[t] = {"bytes": os.path.getsize(b), "file": sh("file -b %s" % b)}
    return res


def agent_rss(guests=16):
    d = tempfile.mkdtemp(prefix="shelfha-bench-agent-")
    node = os.path.join(d, "node.xml")
    with open(node, "w") as f:
        f.write("<node>\n")
        for i in range(guests):
            f.write("<domain type='test'><name>vm-%d</name><memory unit='MiB'>64</memory>"
                    "<vcpu>1</vcpu><os><type>hvm</type></os></domain>\n" % (i + 1))
        f.write("</node>\n")
    key = os.path.join(d, "shelf.key")
    with open(key, "wb") as f:
        f.write(os.urandom(32))
    os.chmod(key, 0o600)
    cfg = os.path.join(d, "agent.toml")
    with open(cfg, "w") as f:
        f.write('slot = 1\nshmc = "127.0.0.1:9"\nlisten = "127.0.0.1:0"\nlibvirt_uri = "test://%s"\n'
                'key_file = "%s"\nstate_dir = "%s"\n[partner]\nslot = 2\naddress = "127.0.0.1:9"\n'
                % (node, key, os.path.join(d, "state")))
    os.makedirs(os.path.join(d, "state"))
    logf = open(os.path.join(d, "agent.log"), "w")
    p = subprocess.Popen([AGENT, "run", "--config", cfg], stdout=logf, stderr=logf)
    time.sleep(3)
    status = {}
    try:
        with open("/proc/%d/status" % p.pid) as f:
            for line in f:
                k, v = line.split(":", 1)
                status[k] = v.strip()
    finally:
        p.kill()
        p.wait()
    logtext = open(os.path.join(d, "agent.log")).read()
    shutil.rmtree(d, ignore_errors=True)
    if "VmRSS" not in status:
        raise RuntimeError("blade-agent exited: %s" % logtext[-2000:])
    return {"guests": guests, "libvirt": "test driver (in-process), %d running domains" % guests,
            "rss_kb": int(status["VmRSS"].split()[0]), "peak_rss_kb": int(status["VmHWM"].split()[0]),
            "log_tail": logtext.strip().splitlines()[-3:]}


# ---------------------------------------------------------------- d. failover

DEMO_SCENARIOS = ["hardware", "watchdog", "os-stop", "agent-silent", "hypervisor", "ipmc-silent"]
DEMO_CLASS = {"hardware": "blade_hardware", "watchdog": "host_os (watchdog)",
              "os-stop": "host_os (OS critical stop)", "agent-silent": "host_os (heartbeat loss)",
              "hypervisor": "hypervisor",
              "ipmc-silent": "ipmc_lost (silent IPMC, agent heard: no failover)"}


def parse_demo(text):
    """Per failure block: detection, fence confirmed (restart order), first and last guest."""
    blocks = re.split(r"^== failure \d+: ", text, flags=re.M)[1:]
    res = []
    for b in blocks:
        def first(pattern):
            m = re.search(r"^\s+([\d.]+) ms  " + pattern, b, flags=re.M)
            return float(m.group(1)) if m else None
        started = [float(x) for x in re.findall(r"^\s+([\d.]+) ms  slot \d: guest \S+: Started", b, re.M)]
        res.append({
            "detection_ms": first(r"decision #"),
            "fence_confirmed_ms": first(r"order to slot \d: RestartPartnerGuests"),
            "first_guest_ms": min(started) if started else None,
            "all_guests_ms": max(started) if started else None,
            "guests_started": len(started),
        })
    return res


def demo(guests, reps):
    rows = {s: [] for s in DEMO_SCENARIOS}
    for _ in range(reps):
        out = subprocess.run([SHELFHA, "demo", "--scenario", ",".join(DEMO_SCENARIOS),
                              "--guests", str(guests)], capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError("demo failed: %s" % out.stderr[-2000:])
        parsed = parse_demo(out.stdout)
        assert len(parsed) == len(DEMO_SCENARIOS), out.stdout[-3000:]
        for s, p in zip(DEMO_SCENARIOS, parsed):
            rows[s].append(p)
    res = []
    for s in DEMO_SCENARIOS:
        r = {"scenario": s, "class": DEMO_CLASS[s], "guests": guests, "reps": reps}
        for k in ("detection_ms", "fence_confirmed_ms", "first_guest_ms", "all_guests_ms"):
            xs = [p[k] for p in rows[s] if p[k] is not None]
            r[k] = stats(xs) if xs else None
        res.append(r)
    log("demo %d guests done" % guests)
    return res


def run_bounded(cmd, timeout, env=None):
    """Runs a system-test command in its own session; when it exceeds `timeout` seconds the
    whole session (the test, its daemons and guests) is killed and the run counts as failed
    (returncode None, the output so far kept). The tests' blades are stopped by the next
    test's `libvirt-blades.sh reap`."""
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return subprocess.CompletedProcess(cmd, p.returncode, out, err)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, 9)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
        log("%s: no result within %d s, killed" % (" ".join(cmd[-6:]), timeout))
        return subprocess.CompletedProcess(cmd, None, out, (err or "") + "\nTIMEOUT after %d s" % timeout)


E2E_TESTS = [
    ("bench_blade_hardware_critical_temperature", "blade_hardware (critical temperature)"),
    ("bench_host_os_watchdog", "host_os (watchdog)"),
    ("bench_host_os_heartbeat_loss", "host_os (heartbeat loss)"),
    ("bench_hypervisor_libvirtd_killed", "hypervisor (libvirtd killed)"),
    ("bench_blade_lost_dark_watchdog", "blade_lost (dark on every channel, watchdog 2 s)"),
]
E2E_MEASURES = ("detection", "fence", "first_guest", "all_guests")


def e2e(guest_counts, reps):
    """Failover on real libvirtd + QEMU (TCG) blades, shmc-plugin run, two blade agents and the
    emulated IPMCs: the ignored tests of tests/failover_bench.rs, one failure class each, with
    N guests on the failed blade; each asserts the failover and prints its timeline."""
    res = []
    only = [t for t in os.environ.get("BENCH_E2E_TESTS", "").split(",") if t]
    for n in guest_counts:
        for name, cls in E2E_TESTS:
            if only and name not in only:
                continue
            runs, fails, why = [], 0, []
            for _ in range(reps):
                out = run_bounded(["cargo", "test", "--release", "-q", "-p", "shelfha", "--test",
                                   "failover_bench", "--", "--ignored", "--exact", name, "--nocapture",
                                   "--test-threads=1"], 300, env=dict(os.environ, SHELFHA_BENCH_GUESTS=str(n)))
                m = re.search(r"^bench failover (\{.*\})$", out.stdout, re.M)
                if out.returncode != 0 or not m:
                    fails += 1
                    why.append("timeout (killed)" if out.returncode is None else (out.stdout + out.stderr)[-300:])
                    log("e2e %s (%d guests) failed: %s" % (name, n, (out.stdout + out.stderr)[-800:]))
                    continue
                runs.append(json.loads(m.group(1)))
            r = {"test": name, "class": cls, "guests": n, "reps": reps, "failed_runs": fails, "failures": why,
                 "fence_confirmation": sorted({x["fence_confirmation"] for x in runs})}
            for k in E2E_MEASURES:
                xs = [x[k] for x in runs if x.get(k) is not None]
                r[k + "_ms"] = stats(xs) if xs else None
            for k in ("agent_a_rss_kb", "agent_b_hwm_kb"):
                xs = [x[k] for x in runs if x.get(k) is not None]
                r[k] = stats(xs) if xs else None
            res.append(r)
            log("e2e %s, %d guests: all guests %s" % (cls, n, r["all_guests_ms"]))
    return res


def zero_downtime(reps):
    """Zero-downtime modes on two real libvirtd blades (agent/tests/zero_downtime.rs prints
    them): live migration (libvirt's job time and guest downtime, per guest) and warm standby
    (resume after the restart order) beside a cold start in the same order."""
    mig_job, mig_down, resume, cold, fails = [], [], [], [], 0
    for _ in range(reps):
        for name in ("test_evacuate_migrates_three_and_falls_back_for_one",
                     "test_warm_standby_resume_after_fence_and_refusals"):
            out = run_bounded(["cargo", "test", "--release", "-q", "-p", "blade-agent", "--test",
                               "zero_downtime", "--", "--exact", name, "--nocapture", "--test-threads=1"], 600)
            if out.returncode != 0:
                fails += 1
                log("zero_downtime %s failed: %s" % (name, (out.stdout + out.stderr)[-600:]))
                continue
            for m in re.finditer(r"^\S+: migrated, libvirt job (\d+) ms, guest downtime (\d+) ms", out.stdout, re.M):
                mig_job.append(float(m.group(1)))
                mig_down.append(float(m.group(2)))
            m = re.search(r"^failover: db resumed (\d+) ms after the order .* dq cold-started (\d+) ms after the order",
                          out.stdout, re.M)
            if m:
                resume.append(float(m.group(1)))
                cold.append(float(m.group(2)))
    res = {"reps": reps, "failed_runs": fails}
    for k, xs in (("migration_job_ms", mig_job), ("migration_guest_downtime_ms", mig_down),
                  ("warm_standby_resume_ms", resume), ("cold_start_same_order_ms", cold)):
        res[k] = stats(xs) if xs else None
    log("zero downtime: %s" % res)
    return res


# ---------------------------------------------------------------- e. the peer

PEER_DOCUMENTED = {
    "source": "earlier measurement with fence_ipmilan on this kind of machine "
              "(Nov 2026), NOT measured in this run",
    "stack": "Pacemaker 2.1.5 + Corosync 3.1.7 + ocf:heartbeat:VirtualDomain + fence_ipmilan, one 64 MiB TCG guest",
    "default_s": [11.02, 12.56, 12.54],
    "fast_s": [8.20, 8.18, 7.06],
    "fastest_s": [2.95, 3.00, 4.03],
}


PEER_PROFILES = [
    ("default", "default: token 3000 ms, fence reboot, power_wait 2 s"),
    ("fast", "fast: token 1000 ms, consensus 1200 ms, stonith-timeout 15 s"),
    ("fastest", "fastest: fast + fence action off, power_wait 0"),
]


def peer_measured(profile, trials):
    """bench/peer/pacemaker.sh: Pacemaker + Corosync + VirtualDomain + fence_ipmilan on the e2e
    blades' libvirtd, one guest, the node running it killed; STONITH through an ipmi_sim BMC per
    node. Returns per trial the seconds to the guest running on the survivor and to the fence."""
    base = "/var/tmp/shelfha-bench-pcmk"
    shutil.rmtree(base, ignore_errors=True)
    out = run_bounded(["bash", os.path.join(BENCH, "peer", "pacemaker.sh"), "run", base, profile, str(trials)],
                      1800)
    trials_out = []
    for m in re.finditer(r"^trial \d+: (\d+) ms; fenced (\S+) ms", out.stdout, re.M):
        trials_out.append({"running_s": int(m.group(1)) / 1000.0,
                           "fenced_s": None if m.group(2) == "-" else int(m.group(2)) / 1000.0})
    if out.returncode != 0 or not trials_out:
        log("pacemaker peer (%s) failed: %s" % (profile, (out.stdout + out.stderr)[-800:]))
    else:
        shutil.rmtree(base, ignore_errors=True)
    log("pacemaker peer %s: %s" % (profile, trials_out))
    return trials_out


# ---------------------------------------------------------------- main


def fmt(x, unit=""):
    if x is None:
        return "-"
    if isinstance(x, float):
        if abs(x) >= 1000:
            return "%.0f%s" % (x, unit)
        return "%.3g%s" % (x, unit)
    return "%s%s" % (x, unit)


def table(res):
    rows = []
    add = rows.append
    m = res["machine"]
    add("shelfha benchmark  %s  commit %s%s  %s" % (m["date_utc"], m["commit"], " (dirty)" if m["dirty"] else "",
                                                    "SMOKE" if res["smoke"] else "full"))
    add("machine: %s, %s cores, %s MiB RAM, Linux %s, %s; %s; %s; %s" % (
        m["cpu"], m["cores"], m["ram_mib"], m["kernel"], m["os"], m["rustc"], m["qemu_user"], m["libvirt"]))
    add("")
    add("%-58s %14s %14s %10s" % ("measure", "median", "p99 / worst", "note"))
    for t in res["throughput"]:
        f = t["frames_per_s"]
        add("%-58s %14s %14s %10s" % ("a. replay %s frames/s (%d frames x%d)" % (t["target"], t["frames"], t["reps"]),
                                       fmt(f["median"]), fmt(f["p99_slow"]), "%.0fx IPMB" % t["ratio_to_ipmb"]))
    for t in res["latency"]:
        add("%-58s %14s %14s %10s" % ("b. event->fence request %s (us, %d trials)" % (t["target"], t["trials"]),
                                       fmt(t["p50_us"]), fmt(t["p99_us"]), "max %s" % fmt(t["max_us"])))
    for t, s in res["footprint"]["sizes"].items():
        add("%-58s %14s %14s %10s" % ("c. stripped static size %s (bytes)" % t, s["bytes"], "", ""))
    for t, r in res["footprint"]["rss"].items():
        add("%-58s %14s %14s %10s" % ("c. shmc-plugin peak RSS %s (KB)" % t, r, "", ""))
    a = res["footprint"].get("agent")
    if a:
        add("%-58s %14s %14s %10s" % ("c. blade-agent RSS, %d guests, test driver (KB)" % a["guests"],
                                       a["rss_kb"], a["peak_rss_kb"], "peak"))
    al = res["footprint"].get("agent_libvirtd")
    if al:
        add("%-58s %14s %14s %10s" % ("c. blade-agent RSS, %d guests protected, libvirtd (KB)" % al["guests"],
                                       al["protecting_rss_kb"], "", "median"))
        add("%-58s %14s %14s %10s" % ("c. blade-agent peak RSS, %d partner guests started (KB)" % al["guests"],
                                       al["after_takeover_hwm_kb"], "", "max"))
    add("%-58s %14s %14s %10s" % ("c. heap allocations, steady-state event path",
                                   res["footprint"]["alloc_test"], "", "asserted"))
    for d in res["demo"]:
        for k in ("detection_ms", "fence_confirmed_ms", "first_guest_ms", "all_guests_ms"):
            s = d[k]
            add("%-58s %14s %14s %10s" % ("d. demo %s %dg %s (ms)" % (d["scenario"], d["guests"], k[:-3]),
                                           fmt(s and s["median"]), fmt(s and s["p99"]), "n=%d" % d["reps"]))
    for e in res["e2e"]:
        for k in E2E_MEASURES:
            st = e[k + "_ms"]
            add("%-58s %14s %14s %10s" % ("d. e2e %s %dg %s (ms)" % (e["class"], e["guests"], k),
                                           fmt(st and st["median"]), fmt(st and st["p99"]),
                                           "n=%d" % (st["n"] if st else 0)))
    z = res.get("zero_downtime")
    if z:
        for k, what in (("migration_job_ms", "live migration, libvirt job"),
                        ("migration_guest_downtime_ms", "live migration, guest downtime"),
                        ("warm_standby_resume_ms", "warm standby: resume after the order"),
                        ("cold_start_same_order_ms", "cold start in the same order")):
            st = z[k]
            add("%-58s %14s %14s %10s" % ("d. %s (ms)" % what, fmt(st and st["median"]), fmt(st and st["p99"]),
                                           "n=%d" % (st["n"] if st else 0)))
    for prof, trials in res.get("peer_measured", {}).get("trials", {}).items():
        xs = [t["running_s"] for t in trials]
        fs = [t["fenced_s"] for t in trials if t["fenced_s"] is not None]
        if xs:
            add("%-58s %14s %14s %10s" % ("e. Pacemaker %s, guest running (s)" % prof.split(":")[0],
                                           fmt(statistics.median(xs)), fmt(max(xs)), "n=%d" % len(xs)))
        if fs:
            add("%-58s %14s %14s %10s" % ("e. Pacemaker %s, node fenced (s)" % prof.split(":")[0],
                                           fmt(statistics.median(fs)), fmt(max(fs)), "n=%d" % len(fs)))
    for r in res.get("ratios", []):
        add("%-58s %14s %14s %10s" % (r["what"], "%.3f" % r["ratio"], "", ""))
    return "\n".join(rows)


def main():
    smoke = "--smoke" in sys.argv
    out = sys.argv[sys.argv.index("--out") + 1]
    res = {"smoke": smoke, "machine": machine(), "ipmb_limit_frames_per_s": IPMB_LIMIT}
    frames = 20000 if smoke else 1000000
    reps = 3 if smoke else 5
    cap = capture(frames)

    # a. throughput
    res["throughput"] = [throughput("host x86_64", [PLUGIN], cap, frames, reps)]
    emu_cap = cap
    for t, q in EMULATED.items():
        b = os.path.join(CROSS_DIR, t, "shmc-plugin")
        if os.path.exists(b) and shutil.which(q[0]):
            res["throughput"].append(throughput("%s (%s)" % (t, " ".join(q)), q + [b], emu_cap, frames,
                                                2 if smoke else 3))
        else:
            log("no %s binary or %s: skipped" % (t, q[0]))

    # b. latency
    res["latency"] = [latency("host x86_64", [PLUGIN], 100 if smoke else 2000)]
    arm = os.path.join(CROSS_DIR, "armv5te-unknown-linux-musleabi", "shmc-plugin")
    if os.path.exists(arm) and shutil.which("qemu-arm-static"):
        res["latency"].append(latency("armv5te (qemu-arm-static -cpu arm926)",
                                      EMULATED["armv5te-unknown-linux-musleabi"] + [arm], 50 if smoke else 1000))

    # c. footprint
    fp = {"sizes": sizes(), "rss": {}}
    fp["rss"]["host x86_64 replay, 16-blade storm"] = res["throughput"][0]["process_peak_rss_kb"]
    for t in res["latency"]:
        fp["rss"]["%s run, 16 blades, latency storm (process VmHWM)" % t["target"]] = t["process_peak_rss_kb"]
    if os.path.exists(arm) and shutil.which("qemu-arm-static"):
        g = guest_rss("armv5te-unknown-linux-musleabi", arm, cap)
        fp["rss"]["armv5te guest memory, replay 16-blade storm"] = g["guest_peak_kb"]
        fp["rss"]["armv5te whole qemu-user process"] = g["qemu_peak_kb"]
    fp["agent"] = agent_rss(16)
    fp["alloc_test"] = os.environ.get("BENCH_ALLOC_RESULT", "not run")
    res["footprint"] = fp

    # d. failover
    res["demo"] = []
    for g in ([1, 4] if smoke else [1, 4, 16]):
        res["demo"] += demo(g, 2 if smoke else 5)
    e2e_guests = [int(x) for x in os.environ.get("BENCH_E2E_GUESTS", "1,4,16").split(",")]
    res["e2e"] = ([] if smoke or os.environ.get("BENCH_E2E") == "0"
                  else e2e(e2e_guests, int(os.environ.get("BENCH_E2E_REPS", "3"))))
    for e in res["e2e"]:
        if e["guests"] == max(e2e_guests) and e["agent_a_rss_kb"] and e["agent_b_hwm_kb"]:
            fp["agent_libvirtd"] = {"guests": e["guests"], "run": e["class"],
                                    "protecting_rss_kb": e["agent_a_rss_kb"]["median"],
                                    "after_takeover_hwm_kb": e["agent_b_hwm_kb"]["max"]}
            break
    res["zero_downtime"] = (None if smoke or os.environ.get("BENCH_E2E") == "0"
                            else zero_downtime(int(os.environ.get("BENCH_E2E_REPS", "3"))))

    # e. the peer
    measured = {}
    if not smoke and shutil.which("pacemakerd") and os.geteuid() == 0 and os.environ.get("BENCH_PEER") != "0":
        n = int(os.environ.get("BENCH_PEER_TRIALS", "3"))
        for prof, what in PEER_PROFILES:
            measured[what] = peer_measured(prof, n)
    res["peer_measured"] = {"what": "Pacemaker + Corosync (knet) + VirtualDomain + fence_ipmilan (ipmi_sim BMC per "
                                    "node), same blades and guest, node SIGKILLed with the guest's QEMU",
                            "trials": measured}
    ratios = []
    ours = [e for e in res["e2e"] if e["guests"] == 1 and e["all_guests_ms"]]
    got_peer = False
    for prof, trials in measured.items():
        if not trials:
            continue
        got_peer = True
        med = statistics.median([t["running_s"] for t in trials]) * 1000
        for e in ours:
            ratios.append({"what": "e. ratio %s, 1 guest / Pacemaker %s (measured)" % (e["class"], prof.split(":")[0]),
                           "ratio": e["all_guests_ms"]["median"] / med})
    # Only when the peer could not run here: its documented figures, marked as such.
    res["peer_documented"] = None if got_peer else PEER_DOCUMENTED
    if not got_peer:
        for key in ("default_s", "fastest_s"):
            med = statistics.median(PEER_DOCUMENTED[key]) * 1000
            for e in ours:
                ratios.append({"what": "e. ratio %s, 1 guest / Pacemaker %s (DOCUMENTED, not measured here)"
                                       % (e["class"], key[:-2]),
                               "ratio": e["all_guests_ms"]["median"] / med})
    res["ratios"] = ratios

    text = table(res)
    res["table"] = text.splitlines()
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print(text)
    log("wrote %s" % out)


if __name__ == "__main__":
    main()
