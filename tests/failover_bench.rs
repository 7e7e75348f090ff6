//! Failover timings on real components, for `bench/bench.py` (issue 7, row d):
//! the end-to-end rig of `tests/e2e.rs` (two libvirtd blades with QEMU TCG guests,
//! two `blade-agent`s, `shmc-plugin run` on the IPMB of `shelfha simulate`) with
//! `SHELFHA_BENCH_GUESTS` guests on blade A (1 to 16, default 4), one failure
//! class per test.
//!
//! Each test asserts the failover itself (A's guests run on B, none on A, none ever
//! on both) and prints one line `bench failover {json}` with the times measured
//! from the failure, in ms: `detection` (the plugin's decision line), `fence`
//! (the plugin's RestartPartnerGuests order to B, which it sends only once the
//! fence is confirmed), `first_guest` and `all_guests` (B's agent reporting each
//! guest started: libvirt's start call returned, the guest runs), and
//! `all_guests_polled` (the never-twice poller seeing the last one running, ~50 ms
//! resolution), and `a_reached_m1` (A's IPMC in M1, for the classes whose IPMB fence
//! cuts A's power); beside them the agents' memory in KiB: `agent_a_rss_kb` (A's
//! agent protecting its guests, before the failure), `agent_b_rss_kb` and
//! `agent_b_hwm_kb` (B's agent after it started them all). Times are printed, never asserted. `SHELFHA_BENCH_LOGS=1` also
//! prints every program's log: the whole timeline of the failover.
//!
//! Ignored in the test suite (each run boots up to 33 TCG guests); run one with
//! `SHELFHA_BENCH_GUESTS=16 cargo test --release --test failover_bench -- --ignored
//! --exact <test> --nocapture`. Needs root and the packages of `tests/ci.sh install`.

#[path = "support/blades.rs"]
mod blades;
#[path = "support/e2e.rs"]
mod e2e;

use std::time::Instant;

use e2e::{one_shelf, secs, Options, Rig, A};

/// Guest names on blade A, as many as `SHELFHA_BENCH_GUESTS` asks for.
const GUESTS: [&str; 16] = [
    "g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8", "g9", "g10", "g11", "g12", "g13", "g14", "g15",
    "g16",
];

/// The guests of blade A for this run.
fn guests() -> &'static [&'static str] {
    let n = match std::env::var("SHELFHA_BENCH_GUESTS") {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=GUESTS.len()).contains(n))
            .unwrap_or_else(|| panic!("SHELFHA_BENCH_GUESTS={v:?}: expected 1 to 16")),
        Err(_) => 4,
    };
    &GUESTS[..n]
}

/// A rig with `guests()` on A and one guest of its own on B.
fn rig(test: &str) -> Rig {
    Rig::start(
        test,
        Options {
            guests_a: guests().to_vec(),
            ..Options::default()
        },
    )
}

/// Where the logs were before the failure.
struct Marks {
    plugin: usize,
    agent_b: usize,
    sim: usize,
    /// VmRSS of A's agent, protecting its guests, in KiB.
    agent_a_rss_kb: Option<u64>,
}

fn marks(rig: &Rig) -> Marks {
    Marks {
        plugin: rig.plugin().mark(),
        agent_b: rig.agent('b').mark(),
        sim: rig.sim.mark(),
        agent_a_rss_kb: status_kb(rig.agent('a').pid(), "VmRSS"),
    }
}

/// A `/proc/PID/status` field in KiB (e.g. "VmRSS", "VmHWM").
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

fn ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}

/// How blade A's power goes off in a failover, if it does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PowerCut {
    /// It stays on (the agent's self-fence is the proof).
    None,
    /// The IPMB fence: A's IPMC reaches M1, waited for.
    Ipmb,
    /// A's hardware watchdog (the rig's pet-file watcher) cut it.
    Watchdog,
}

/// Asserts the failover of every guest of A to B, then prints the timings.
fn failed_over_and_report(
    rig: &Rig,
    class: &str,
    how: &str,
    t0: Instant,
    m: &Marks,
    power_cut: PowerCut,
) {
    let guests = guests();
    // `class` "|"-separated: whichever of them is decided first (a blade dark on every
    // channel is `host_os` when its agent's silence is noticed before its IPMC's).
    let (_, detected, line) = rig.plugin().wait_line(
        m.plugin,
        &format!("decision {class} slot 1"),
        secs(10),
        |l| {
            l.contains("decision #")
                && class
                    .split('|')
                    .any(|c| l.contains(&format!(" {c} for slot 1 ")))
        },
    );
    let class = class
        .split('|')
        .find(|c| line.contains(&format!(" {c} for slot 1 ")))
        .unwrap_or(class);
    rig.wait_running('b', guests, secs(180));
    rig.assert_not_running('a', guests);
    rig.poller().sync();
    rig.poller().assert_never_twice();
    assert!(rig.running('b').contains("h1"), "B's own guest was lost");

    // The restart order to B: sent only after the fence of A was confirmed.
    let (fenced, order) = rig
        .plugin()
        .lines_from(m.plugin)
        .into_iter()
        .find(|(_, l)| l.contains("to slot 2: RestartPartnerGuests"))
        .unwrap_or_else(|| panic!("no restart order to slot 2\n{}", rig.logs()));
    let confirmation = order
        .split("fence: ")
        .nth(1)
        .and_then(|s| s.split([',', ' ', '}']).next())
        .unwrap_or("?")
        .to_string();
    // B's agent reports each guest as it starts.
    let started: Vec<(Instant, String)> = rig
        .agent('b')
        .lines_from(m.agent_b)
        .into_iter()
        .filter(|(_, l)| l.contains("partner guest `") && l.contains("`: Started after"))
        .collect();
    for g in guests {
        let tag = format!("partner guest `{g}`: Started");
        assert_eq!(
            started.iter().filter(|(_, l)| l.contains(&tag)).count(),
            1,
            "B's agent did not report {g} started exactly once\n{}",
            rig.logs()
        );
    }
    assert_eq!(started.len(), guests.len(), "{started:?}");
    let first = started.iter().map(|(t, _)| *t).min().expect("a guest");
    let all = started.iter().map(|(t, _)| *t).max().expect("a guest");
    let polled = guests
        .iter()
        .map(|g| rig.poller().started_after('b', g, t0))
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().max());
    let sim_m1 =
        (power_cut == PowerCut::Ipmb).then(|| rig.wait_sim_state(m.sim, A, "M1", secs(10)));
    assert_eq!(
        rig.powered_off('a'),
        power_cut != PowerCut::None,
        "A's power cut"
    );
    let watchdog_fired = rig.watchdog_fired('a');
    if power_cut == PowerCut::Watchdog {
        let fired = watchdog_fired.expect("A's watchdog never fired");
        assert!(
            fired < fenced,
            "the fence was confirmed before A's watchdog fired"
        );
        assert!(
            fired < first,
            "a guest started on B before A's watchdog fired"
        );
    }
    let line = serde_json::json!({
        "class": class,
        "how": how,
        "guests": guests.len(),
        "fence_confirmation": confirmation,
        "detection": ms(t0, detected),
        "fence": ms(t0, fenced),
        "first_guest": ms(t0, first),
        "all_guests": ms(t0, all),
        "all_guests_polled": polled.map(|p| ms(t0, p)),
        "a_reached_m1": sim_m1.map(|t| ms(t0, t)),
        "a_watchdog_fired": watchdog_fired.map(|t| ms(t0, t)),
        "agent_a_rss_kb": m.agent_a_rss_kb,
        "agent_b_rss_kb": status_kb(rig.agent('b').pid(), "VmRSS"),
        "agent_b_hwm_kb": status_kb(rig.agent('b').pid(), "VmHWM"),
    });
    println!("bench failover {line}");
    if std::env::var_os("SHELFHA_BENCH_LOGS").is_some() {
        println!("{}", rig.logs());
    }
}

/// A failure the simulator injects into A's IPMC (`fault`, its `inject` word), on a rig
/// for `test`; then [`failed_over_and_report`].
fn injected(test: &str, fault: &str, class: &str, how: &str, power_cut: PowerCut) {
    let _shelf = one_shelf();
    let rig = rig(test);
    let m = marks(&rig);
    let t0 = rig.sim(&format!("inject {A:#04x} {fault}"));
    failed_over_and_report(&rig, class, how, t0, &m, power_cut);
}

#[test]
#[ignore = "benchmark: run by bench/bench.py"]
fn bench_blade_hardware_critical_temperature() {
    injected(
        "b-crit",
        "critical-temperature",
        "blade_hardware",
        "critical temperature",
        PowerCut::Ipmb,
    );
}

#[test]
#[ignore = "benchmark: run by bench/bench.py"]
fn bench_host_os_watchdog() {
    injected("b-wdog", "watchdog", "host_os", "watchdog", PowerCut::Ipmb);
}

#[test]
#[ignore = "benchmark: run by bench/bench.py"]
fn bench_host_os_heartbeat_loss() {
    let _shelf = one_shelf();
    let mut rig = rig("b-hbeat");
    let m = marks(&rig);
    let t0 = Instant::now();
    rig.kill_agent('a');
    failed_over_and_report(&rig, "host_os", "heartbeat loss", t0, &m, PowerCut::Ipmb);
}

#[test]
#[ignore = "benchmark: run by bench/bench.py"]
fn bench_hypervisor_libvirtd_killed() {
    let _shelf = one_shelf();
    let rig = rig("b-hyperv");
    let m = marks(&rig);
    let t0 = Instant::now();
    rig.blades.harness("kill-libvirtd", &["a"]);
    failed_over_and_report(
        &rig,
        "hypervisor",
        "libvirtd killed",
        t0,
        &m,
        PowerCut::None,
    );
}

/// Blade A dark on every channel (its IPMC silent, its agent stopped) with a hardware
/// watchdog of [`DARK_WATCHDOG_MS`] announced: the fence is confirmed by `WatchdogExpired`
/// once nobody heard A for the watchdog's timeout plus the heartbeat timeout.
#[test]
#[ignore = "benchmark: run by bench/bench.py"]
fn bench_blade_lost_dark_watchdog() {
    let _shelf = one_shelf();
    let rig = Rig::start(
        "b-dark",
        Options {
            guests_a: guests().to_vec(),
            watchdog_ms: [Some(DARK_WATCHDOG_MS), None],
            ..Options::default()
        },
    );
    rig.agent('a')
        .wait_line(0, "first pet on a proof", secs(10), |l| {
            l.contains("hardware watchdog petted")
        });
    let m = marks(&rig);
    let pid = rig.agent('a').pid().to_string();
    let t0 = rig.sim(&format!("inject {A:#04x} silent"));
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success(), "A's agent not stopped");
    failed_over_and_report(
        &rig,
        "blade_lost|host_os",
        "dark: IPMC and agent silent, watchdog",
        t0,
        &m,
        PowerCut::Watchdog,
    );
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
}

/// The watchdog timeout A's agent announces in [`bench_blade_lost_dark_watchdog`].
const DARK_WATCHDOG_MS: u64 = 2000;
