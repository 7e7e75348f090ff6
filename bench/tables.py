#!/usr/bin/env python3
"""Renders a bench/results/*.json file as the Markdown tables of BENCHMARKS.md.

Usage: tables.py RESULT.json
"""
import json
import sys


def f(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, float):
        return ("%.*f" % (nd, x)) if abs(x) < 1000 else "%.0f" % x
    return str(x)


def cell(s, nd):
    """`median (p99)` of a stats dict, or `-`."""
    return "%s (%s)" % (f(s["median"], nd), f(s["p99"], nd)) if s else "-"


def main():
    r = json.load(open(sys.argv[1]))
    m = r["machine"]
    print("Run: %s, commit %s%s. Machine: %s, %d cores, %d MiB RAM, Linux %s, %s; %s; cross: %s; %s; %s; %s; /dev/kvm %s.\n"
          % (m["date_utc"], m["commit"], " (with uncommitted changes)" if m["dirty"] else "", m["cpu"], m["cores"],
             m["ram_mib"], m["kernel"], m["os"], m["rustc"], m["cross_rustc"], m["qemu_user"], m["qemu_system"],
             m["libvirt"], "present" if m["kvm"] else "absent"))
    print("### a. Decode + classify throughput (`shmc-plugin replay`, 16 blades)\n")
    print("| build | frames | runs | median frames/s | slowest run frames/s | median / IPMB limit (1,500 frames/s) |")
    print("|---|---|---|---|---|---|")
    for t in r["throughput"]:
        s = t["frames_per_s"]
        print("| %s | %d | %d | %s | %s | %.0fx |" % (t["target"], t["frames"], t["reps"], f(s["median"]),
                                                       f(s["p99_slow"]), t["ratio_to_ipmb"]))
    print("\n### b. Event-to-decision latency (critical event written -> Set FRU Activation read, `shmc-plugin run` on a pty)\n")
    print("| build | trials | p50 µs | p99 µs | max µs |")
    print("|---|---|---|---|---|")
    for t in r["latency"]:
        print("| %s | %d | %s | %s | %s |" % (t["target"], t["trials"], f(t["p50_us"]), f(t["p99_us"]), f(t["max_us"])))
    fp = r["footprint"]
    print("\n### c. Footprint\n")
    print("| what | value |")
    print("|---|---|")
    for t, s in fp["sizes"].items():
        print("| stripped static size, %s | %d bytes (%.0f KB) |" % (t, s["bytes"], s["bytes"] / 1024))
    for k, v in fp["rss"].items():
        print("| peak RSS shmc-plugin, %s | %s KB |" % (k, v))
    a = fp.get("agent")
    if a:
        print("| blade-agent RSS, %s | %d KB (peak %d KB) |" % (a["libvirt"], a["rss_kb"], a["peak_rss_kb"]))
    al = fp.get("agent_libvirtd")
    if al:
        print("| blade-agent RSS, real libvirtd, %d protected guests (VmRSS before the failure, median of the %s runs) | %d KB |"
              % (al["guests"], al["run"], al["protecting_rss_kb"]))
        print("| blade-agent peak RSS, real libvirtd, after starting %d partner guests (VmHWM, max of the %s runs) | %d KB |"
              % (al["guests"], al["run"], al["after_takeover_hwm_kb"]))
    print("| heap allocations in the steady-state event path (`shmc-plugin/tests/alloc_count.rs`) | %s |"
          % fp["alloc_test"])
    print("\n### d. Failover, `shelfha demo` (libvirt test driver, in-process shelf), ms after the failure, median (p99) over %d runs\n"
          % (r["demo"][0]["reps"] if r["demo"] else 0))
    print("| failure | guests | detection | fence confirmed | first guest running | all guests running |")
    print("|---|---|---|---|---|---|")
    for d in r["demo"]:
        cells = [cell(d[k], 2) for k in ("detection_ms", "fence_confirmed_ms", "first_guest_ms", "all_guests_ms")]
        print("| %s | %d | %s |" % (d["class"], d["guests"], " | ".join(cells)))
    if r["e2e"]:
        print("\n### d. Failover end to end: real libvirtd + QEMU (TCG) blades, ms after the failure, median (p99) over %d runs\n"
              % r["e2e"][0]["reps"])
        print("| failure (test in tests/failover_bench.rs) | guests | runs ok | fence confirmed by | detection | fence confirmed | first guest running | all guests running |")
        print("|---|---|---|---|---|---|---|---|")
        for e in r["e2e"]:
            cells = [cell(e[k], 0) for k in ("detection_ms", "fence_ms", "first_guest_ms", "all_guests_ms")]
            print("| %s (`%s`) | %d | %d/%d | %s | %s |" % (
                e["class"], e["test"], e["guests"], e["reps"] - e["failed_runs"], e["reps"],
                ", ".join(e["fence_confirmation"]) or "-", " | ".join(cells)))
    z = r.get("zero_downtime")
    if z:
        print("\n### d. Zero-downtime modes beside a cold restart: real libvirtd + QEMU (TCG) blades, ms (`agent/tests/zero_downtime.rs`, %d runs)\n"
              % z["reps"])
        print("| measure | n | median | p99 (max) |")
        print("|---|---|---|---|")
        for k, what in (("migration_job_ms", "live migration on Evacuate, libvirt job time per guest"),
                        ("migration_guest_downtime_ms", "live migration, guest downtime (libvirt's completed-job statistics)"),
                        ("warm_standby_resume_ms", "warm standby: paused guest resumed, from the restart order"),
                        ("cold_start_same_order_ms", "cold start of a guest in the same restart order")):
            st = z[k]
            print("| %s | %s | %s | %s |" % (what, st["n"] if st else 0, f(st and st["median"], 0), f(st and st["p99"], 0)))
    pm = r.get("peer_measured", {}).get("trials", {})
    if pm:
        print("\n### e. The peer, measured in this run: Pacemaker + Corosync + VirtualDomain + fence_ipmilan\n")
        print("| profile | trials: guest running on the survivor (s) | median s | trials: node fenced (s) |")
        print("|---|---|---|---|")
        for prof, trials in pm.items():
            xs = [t["running_s"] for t in trials]
            fs = ["-" if t["fenced_s"] is None else "%.2f" % t["fenced_s"] for t in trials]
            print("| %s | %s | %s | %s |" % (prof, ", ".join("%.2f" % x for x in xs) or "failed",
                                            "%.2f" % sorted(xs)[len(xs) // 2] if xs else "-", ", ".join(fs) or "-"))
    if r.get("ratios"):
        print("\n### e. Ratios: ours (end to end, 1 guest, all guests running, median) / Pacemaker (median)\n")
        if r.get("peer_documented"):
            print("The peer did not run in this run: these ratios use its DOCUMENTED figures (%s).\n"
                  % r["peer_documented"]["source"])
        print("| comparison | ratio |")
        print("|---|---|")
        for x in r["ratios"]:
            print("| %s | %.3f |" % (x["what"].replace("e. ratio ", ""), x["ratio"]))

if __name__ == "__main__":
    main()
