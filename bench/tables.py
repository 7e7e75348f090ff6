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
    print("| heap allocations in the steady-state event path (`shmc-plugin/tests/alloc_count.rs`) | %s |"
          % fp["alloc_test"])
    print("\n### d. Failover, `shelfha demo` (libvirt test driver, in-process shelf), ms after the failure, median (p99) over %d runs\n"
          % (r["demo"][0]["reps"] if r["demo"] else 0))
    print("| failure | guests | detection | fence confirmed | first guest running | all guests running |")
    print("|---|---|---|---|---|---|")
    for d in r["demo"]:
        cells = []
        for k in ("detection_ms", "fence_confirmed_ms", "first_guest_ms", "all_guests_ms"):
            s = d[k]
            cells.append("%s (%s)" % (f(s["median"], 2), f(s["p99"], 2)) if s else "-")
        print("| %s | %d | %s |" % (d["class"], d["guests"], " | ".join(cells)))
    if r["e2e"]:
        print("\n### d. Failover end to end: real libvirtd + QEMU (TCG) blades, ms after the injection\n")
        print("| failure (test in tests/e2e.rs) | guests failed over | runs ok | detection median (max) | all guests running median (max) |")
        print("|---|---|---|---|---|")
        for e in r["e2e"]:
            d, a2 = e["detection_ms"], e["all_guests_ms"]
            print("| %s (`%s`) | %s | %d/%d | %s (%s) | %s (%s) |" % (
                e["class"], e["test"], e["guests"], e["reps"] - e["failed_runs"], e["reps"],
                f(d and d["median"], 0), f(d and d["max"], 0), f(a2 and a2["median"], 0), f(a2 and a2["max"], 0)))
    pm = r.get("peer_measured", {}).get("seconds", {})
    if pm:
        print("\n### e. The peer, measured in this run: Pacemaker + Corosync + VirtualDomain, STONITH disabled\n")
        print("| profile | trials (s) | median s |")
        print("|---|---|---|")
        for prof, xs in pm.items():
            print("| %s | %s | %s |" % (prof, ", ".join("%.2f" % x for x in xs) or "failed",
                                       "%.2f" % sorted(xs)[len(xs) // 2] if xs else "-"))
    if r.get("ratios"):
        print("\n### e. Ratios: ours (e2e median, all guests running) / Pacemaker (median)\n")
        print('Rows marked "measured" compare two numbers of this run; rows marked "documented" divide our')
        print("measured time by Pacemaker figures measured earlier on the same kind of machine (with fencing), not measured in this run.\n")
        print("| comparison | ratio |")
        print("|---|---|")
        for x in r["ratios"]:
            print("| %s | %.3f |" % (x["what"].replace("e. ratio ", ""), x["ratio"]))


if __name__ == "__main__":
    main()
