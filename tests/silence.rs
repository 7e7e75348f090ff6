//! The rules of evidence on silence, on the real rig (two libvirtd blades, the
//! simulator's IPMB, `shmc-plugin run`, two `blade-agent`s; `tests/support/e2e.rs`):
//! a silence the other channel contradicts moves nothing.
//!
//! - The shelf manager's bus stops for every IPMC at once while both agents are
//!   alive: `ipmb_suspect`, nothing killed or moved; when the bus answers again, a
//!   real failure is still handled.
//! - A's IPMC goes silent while A's agent is heard, the agents configured with each
//!   other's libvirt URI: `ipmc_lost` (actions evacuate, alert), A's guests run on B by
//!   live migration (B's QEMU received them; libvirt's guest downtime reported), no
//!   guest restarted, A neither fenced nor powered off; nothing more once it answers.
//! - The network between the shelf manager and A is cut (a UDP relay,
//!   `tests/support/relay.rs`) while B still hears A: `agent_link_lost`, no fence;
//!   after the cut is healed nothing else happens.
//! - A goes dark on every channel (IPMC silent, agent stopped with SIGSTOP). With a
//!   pet-file watchdog armed by A's agent (2000 ms; the rig's watcher plays the
//!   hardware and cuts A's power when it is not petted): the watchdog fires, then the
//!   shelf manager confirms the fence `WatchdogExpired` and A's guests run on B, never
//!   before the power cut. Without a watchdog: `fence_unconfirmed`, nothing fails over.
//!
//! Every check is on the end state and the decisions taken; detection times are
//! printed, never asserted. Needs root and the packages of `tests/ci.sh install`.

#[path = "support/blades.rs"]
mod blades;
#[path = "support/e2e.rs"]
mod e2e;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::{one_shelf, secs, Options, Rig, A, B, FAILOVER_CLASSES};

/// Where each program's log stood, and each guest's QEMU, before the fault.
struct Before {
    plugin: usize,
    agents: [usize; 2],
    sim: usize,
    qemus: BTreeMap<(char, &'static str), u32>,
    at: Instant,
}

fn before(rig: &Rig) -> Before {
    let mut qemus = BTreeMap::new();
    for g in ["g1", "g2"] {
        qemus.insert(('a', g), rig.blades.qemu_pid('a', g));
    }
    qemus.insert(('b', "h1"), rig.blades.qemu_pid('b', "h1"));
    Before {
        plugin: rig.plugin().mark(),
        agents: [rig.agent('a').mark(), rig.agent('b').mark()],
        sim: rig.sim.mark(),
        qemus,
        at: Instant::now(),
    }
}

/// Nothing moved since `b`: every guest runs where it ran, under the same QEMU, the
/// poller saw no guest stop or start anywhere (and keeps polling), no power was cut,
/// no agent fenced anything, and the plugin took no decision that moves guests.
fn assert_untouched(rig: &Rig, b: &Before) {
    let (a, bb) = (rig.running('a'), rig.running('b'));
    for ((blade, g), pid) in &b.qemus {
        let running = if *blade == 'a' { &a } else { &bb };
        assert!(
            running.contains(*g),
            "{g} no longer runs on blade {blade} (A: {a:?}, B: {bb:?})\n{}",
            rig.logs()
        );
        let now = rig.blades.qemu_pid(*blade, g);
        assert_eq!(
            now,
            *pid,
            "{g} was restarted on blade {blade}\n{}",
            rig.logs()
        );
    }
    rig.assert_not_running('b', &["g1", "g2"]);
    rig.assert_not_running('a', &["h1"]);
    assert!(
        !rig.powered_off('a') && !rig.powered_off('b'),
        "a blade was powered off\n{}",
        rig.logs()
    );
    for (i, blade) in ['a', 'b'].into_iter().enumerate() {
        assert!(
            rig.agent(blade)
                .find(b.agents[i], |l| l.contains("self-fence")
                    || l.contains("fenced:"))
                .is_none(),
            "agent {blade} fenced its guests\n{}",
            rig.logs()
        );
    }
    for d in rig.decisions(b.plugin) {
        assert!(
            !FAILOVER_CLASSES
                .iter()
                .any(|c| d.contains(&format!(" {c} for slot"))),
            "a decision that moves guests was taken: {d}\n{}",
            rig.logs()
        );
    }
    rig.poller().sync();
    {
        let seen = rig.poller().seen.lock().unwrap_or_else(|e| e.into_inner());
        let changes: Vec<_> = seen
            .changes
            .iter()
            .filter(|(t, ..)| *t >= b.at)
            .map(|(_, blade, g, up)| (*blade, g.clone(), *up))
            .collect();
        assert!(
            changes.is_empty(),
            "guests stopped or started: {changes:?}\n{}",
            rig.logs()
        );
    }
    rig.poller().assert_never_twice();
}

/// Checks [`assert_untouched`] every half second for `span`.
fn hold_untouched(rig: &Rig, b: &Before, span: Duration) {
    let until = Instant::now() + span;
    while Instant::now() < until {
        assert_untouched(rig, b);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_untouched(rig, b);
}

/// Milliseconds from `from` to the first plugin line (index `mark` on) containing `pat`.
fn ms_to(rig: &Rig, mark: usize, from: Instant, pat: &str) -> String {
    rig.plugin()
        .find(mark, |l| l.contains(pat))
        .map_or("-".into(), |(_, t, _)| {
            t.saturating_duration_since(from).as_millis().to_string()
        })
}

#[test]
fn every_ipmc_silent_is_ipmb_suspect_moves_nothing_then_a_real_failure_is_handled() {
    let _shelf = one_shelf();
    let rig = Rig::start("bus", Options::default());
    let b = before(&rig);
    // The shelf manager's bus stops answering for every IPMC; both agents keep heartbeating.
    let t0 = rig.sim(&format!("inject {A:#04x} silent"));
    rig.sim(&format!("inject {B:#04x} silent"));
    rig.plugin()
        .wait_line(b.plugin, "ipmb_suspect alert", secs(10), |l| {
            l.contains("ALERT ipmb_suspect")
        });
    // Four more default probe timeouts (1.5 s) with the bus silent: nothing moves.
    hold_untouched(&rig, &b, secs(6));
    // Nothing at all is decided on the IPMCs' silence while the bus is suspect: no
    // blade_lost, and not even the alert-only ipmc_lost.
    let decisions = rig.decisions(b.plugin);
    assert!(
        decisions.iter().all(|d| !d.contains(" blade_lost ")
            && !d.contains(" host_os ")
            && !d.contains(" ipmc_lost ")),
        "a decision on a silence of a suspect bus: {decisions:?}\n{}",
        rig.logs()
    );
    println!(
        "silence bus: ipmb_suspect {} ms after the bus stopped; decisions {decisions:?}",
        ms_to(&rig, b.plugin, t0, "ALERT ipmb_suspect")
    );

    // The bus answers again: the clocks resume, still nothing moves.
    let (sim1, log1) = (rig.sim.mark(), rig.plugin().mark());
    let t1 = rig.sim(&format!("recover {A:#04x}"));
    rig.sim(&format!("recover {B:#04x}"));
    for ipmc in [A, B] {
        rig.sim.wait_line(sim1, "recovered", secs(5), |l| {
            l.contains(&format!("\"recovered\":{ipmc}"))
        });
    }
    rig.plugin()
        .wait_line(log1, "IPMB answers again", secs(10), |l| {
            l.contains("IPMB answers again")
        });
    hold_untouched(&rig, &b, secs(3));
    println!(
        "silence bus: IPMB answering again {} ms after recover",
        ms_to(&rig, log1, t1, "IPMB answers again")
    );
    for (_, l) in rig.plugin().lines_from(b.plugin) {
        if l.contains("ALERT") || l.contains("IPMB answers again") {
            println!("silence bus: {l}");
        }
    }

    // A real failure is still handled: A is fenced, B runs A's guests, never twice.
    let (sim2, log2) = (rig.sim.mark(), rig.plugin().mark());
    let t2 = rig.sim(&format!("inject {A:#04x} critical-temperature"));
    let decided = rig.wait_decision(log2, "blade_hardware", 1, secs(10));
    rig.wait_sim_state(sim2, A, "M1", secs(10));
    assert!(rig.powered_off('a'), "A's power was not cut at M1");
    rig.wait_running('b', &["g1", "g2"], secs(20));
    rig.assert_not_running('a', &["g1", "g2"]);
    assert!(rig.running('b').contains("h1"), "B's own guest stopped");
    assert!(!rig.powered_off('b'), "B was powered off");
    rig.poller().sync();
    for g in ["g1", "g2"] {
        assert_eq!(rig.poller().starts_after('b', g, t2), 1, "{g}");
    }
    rig.poller().assert_never_twice();
    rig.report(
        "critical temperature after an IPMB outage",
        t2,
        Some(decided),
        'b',
        &["g1", "g2"],
    );
}

#[test]
fn network_cut_between_shmc_and_a_is_agent_link_lost_and_nothing_is_fenced() {
    let _shelf = one_shelf();
    let rig = Rig::start(
        "netcut",
        Options {
            relay_a: true,
            ..Options::default()
        },
    );
    let relay = rig.relay.as_ref().expect("relay");
    let b = before(&rig);
    let t0 = Instant::now();
    let up = relay.cut();
    // A's traffic with the shelf manager went through the relay, both ways.
    assert!(
        up.to_agent > 0 && up.to_plugin > 0 && up.stray == 0,
        "the relay did not carry A's link: {up:?}"
    );
    let decided = rig.wait_decision(b.plugin, "agent_link_lost", 1, secs(10));
    rig.plugin()
        .wait_line(b.plugin, "agent_link_lost alert", secs(5), |l| {
            l.contains("ALERT agent_link_lost")
        });
    // Five more default heartbeat timeouts (1 s) with the link cut: nothing moves.
    hold_untouched(&rig, &b, secs(5));
    let during = rig.decisions(b.plugin);
    assert!(
        during
            .iter()
            .all(|d| !d.contains(" host_os ") && !d.contains(" blade_lost ")),
        "A was fenced on a network cut: {during:?}\n{}",
        rig.logs()
    );
    assert!(
        !rig.plugin()
            .lines_from(b.plugin)
            .iter()
            .any(|(_, l)| l.contains("fence step")),
        "a fence step was taken\n{}",
        rig.logs()
    );
    let cut = relay.counts();
    assert!(
        cut.cut > up.cut && cut.to_agent == up.to_agent && cut.to_plugin == up.to_plugin,
        "the cut did not hold: before {up:?}, during {cut:?}"
    );
    println!(
        "silence netcut: agent_link_lost {} ms after the cut ({} datagrams dropped); decisions {during:?}",
        decided.saturating_duration_since(t0).as_millis(),
        cut.cut - up.cut
    );

    // Healed: A's heartbeats reach the plugin again and nothing else happens.
    let log1 = rig.plugin().mark();
    relay.heal();
    blades::wait_for("A's agent forwarded to the plugin again", secs(10), || {
        relay.counts().to_plugin > cut.to_plugin
    });
    hold_untouched(&rig, &b, secs(4));
    let after = rig.decisions(log1);
    assert!(
        after.is_empty(),
        "decisions after the cut was healed: {after:?}\n{}",
        rig.logs()
    );
    // The plugin did hear A again: `agent_link_lost` is raised once per silence, so a
    // second cut is a second decision, and still nothing moves.
    let log2 = rig.plugin().mark();
    let t2 = Instant::now();
    relay.cut();
    let again = rig.wait_decision(log2, "agent_link_lost", 1, secs(10));
    hold_untouched(&rig, &b, secs(2));
    relay.heal();
    hold_untouched(&rig, &b, secs(2));
    println!(
        "silence netcut: second cut, agent_link_lost again after {} ms",
        again.saturating_duration_since(t2).as_millis()
    );
    rig.poller().assert_never_twice();
}

/// The guest downtime libvirt's job statistics gave for `guest`, from the plugin's
/// line for the agent's report ("guest g1 Migrated (decision #N): X ms, guest downtime D ms").
fn reported_downtime(line: &str) -> Option<u64> {
    line.split("guest downtime ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether the QEMU `pid` was started to receive a live migration (libvirt starts the
/// destination's QEMU with `-incoming`; a guest started afresh has no such argument).
fn incoming_qemu(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .any(|arg| arg == b"-incoming")
}

#[test]
fn one_ipmc_silent_while_its_agent_is_heard_live_migrates_its_guests_restarting_none() {
    let _shelf = one_shelf();
    let mut rig = Rig::start(
        "ipmclost",
        Options {
            migrate: true,
            ..Options::default()
        },
    );
    let b = before(&rig);
    let h1 = b.qemus[&('b', "h1")];
    // A's IPMC stops answering; A's host, its libvirtd and its agent keep running.
    let t0 = rig.sim(&format!("inject {A:#04x} silent"));
    let decided = rig.wait_decision(b.plugin, "ipmc_lost", 1, secs(10));
    let (_, _, alert) = rig
        .plugin()
        .wait_line(b.plugin, "ipmc_lost alert", secs(5), |l| {
            l.contains("ALERT ipmc_lost")
        });
    assert!(
        alert.contains("live-migrating"),
        "the ipmc_lost alert announces no migration: {alert}\n{}",
        rig.logs()
    );
    let decision = rig
        .decisions(b.plugin)
        .into_iter()
        .find(|d| d.contains(" ipmc_lost for slot 1 "))
        .expect("the ipmc_lost decision");
    let actions = decision.split("; actions ").nth(1).unwrap_or_default();
    assert!(
        actions.split(", ").any(|a| a.trim() == "evacuate"),
        "ipmc_lost without evacuate: {decision}\n{}",
        rig.logs()
    );

    // A's guests run on B by live migration: the agent reports each with libvirt's
    // numbers, and B's QEMU of each received the running guest (never booted afresh).
    rig.wait_running('b', &["g1", "g2"], secs(60));
    let mut downtimes = Vec::new();
    for g in ["g1", "g2"] {
        let (_, _, line) =
            rig.plugin()
                .wait_line(b.plugin, &format!("{g} migrated"), secs(30), |l| {
                    l.contains(&format!("guest {g} Migrated"))
                });
        println!("silence ipmc_lost: {}", line.trim());
        downtimes.push((g, reported_downtime(&line)));
        rig.agent('a')
            .wait_line(b.agents[0], &format!("{g} live-migrated"), secs(10), |l| {
                l.contains(&format!("`{g}`: live-migrated in"))
            });
        let pid = rig.blades.qemu_pid('b', g);
        assert!(
            incoming_qemu(pid),
            "{g}'s QEMU on B ({pid}) was not started for an incoming migration: it was restarted\n{}",
            rig.logs()
        );
    }
    for (g, d) in &downtimes {
        assert!(
            d.is_some(),
            "no guest downtime from libvirt's job statistics for {g}\n{}",
            rig.logs()
        );
    }
    rig.assert_not_running('a', &["g1", "g2"]);
    let migrated = Instant::now();

    // What must never happen, checked now and for four more default probe timeouts
    // (1.5 s) with A's IPMC still silent.
    let check = |rig: &Rig| {
        assert!(
            rig.running('b')
                .is_superset(&["g1", "g2", "h1"].map(String::from).into()),
            "a guest left B (B: {:?})\n{}",
            rig.running('b'),
            rig.logs()
        );
        rig.assert_not_running('a', &["g1", "g2"]);
        assert_eq!(rig.blades.qemu_pid('b', "h1"), h1, "h1 was restarted on B");
        assert!(
            !rig.powered_off('a') && !rig.powered_off('b'),
            "a blade was powered off\n{}",
            rig.logs()
        );
        for (i, blade) in ['a', 'b'].into_iter().enumerate() {
            assert!(
                rig.agent(blade)
                    .find(b.agents[i], |l| l.contains("self-fence")
                        || l.contains("fenced:"))
                    .is_none(),
                "agent {blade} fenced its guests\n{}",
                rig.logs()
            );
        }
        let plugin = rig.plugin().lines_from(b.plugin);
        for (_, l) in &plugin {
            assert!(
                !l.contains("slot 1: fence step")
                    && !l.contains("slot 1: fence of")
                    && !(l.contains("guest g")
                        && (l.contains(" Stopped") || l.contains(" Started"))),
                "A was fenced or a guest restarted: {l}\n{}",
                rig.logs()
            );
        }
        // The engine's decision lines (the agents' reports name their decision too).
        let decisions: Vec<_> = rig
            .decisions(b.plugin)
            .into_iter()
            .filter(|d| d.contains("] decision #"))
            .collect();
        assert_eq!(
            decisions.len(),
            1,
            "more decisions than the one ipmc_lost: {decisions:?}\n{}",
            rig.logs()
        );
        for d in &decisions {
            assert!(
                !FAILOVER_CLASSES
                    .iter()
                    .any(|c| d.contains(&format!(" {c} for slot"))),
                "a failover decision: {d}\n{}",
                rig.logs()
            );
        }
        // A stays active: the simulator saw no hot-swap transition of A.
        assert!(
            rig.sim
                .find(b.sim, |l| l.contains("\"ipmc\":130")
                    && l.contains("\"previous\""))
                .is_none(),
            "A changed state\n{}",
            rig.logs()
        );
    };
    let until = Instant::now() + secs(6);
    while Instant::now() < until {
        check(&rig);
        std::thread::sleep(Duration::from_millis(500));
    }
    check(&rig);
    let a_agent = rig.agents[0].as_mut().expect("A's agent");
    assert!(a_agent.running(), "A's agent exited\n{}", a_agent.text());

    // The poller saw each of A's guests leave A and start on B once, h1 never change,
    // and no guest on both blades.
    rig.poller().sync();
    {
        let seen = rig.poller().seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut changes: Vec<_> = seen
            .changes
            .iter()
            .filter(|(t, ..)| *t >= t0)
            .map(|(_, blade, g, up)| (*blade, g.clone(), *up))
            .collect();
        changes.sort();
        let want: Vec<_> = [
            ('a', "g1", false),
            ('a', "g2", false),
            ('b', "g1", true),
            ('b', "g2", true),
        ]
        .into_iter()
        .map(|(x, g, up)| (x, g.to_string(), up))
        .collect();
        assert_eq!(
            changes,
            want,
            "guest changes seen by the poller\n{}",
            rig.logs()
        );
    }
    rig.poller().assert_never_twice();

    println!(
        "silence ipmc_lost: decision {} ms after the IPMC went silent, both guests on B {} ms after it; \
         libvirt guest downtime {downtimes:?}",
        decided.saturating_duration_since(t0).as_millis(),
        migrated.saturating_duration_since(t0).as_millis(),
    );
    for (_, l) in rig.plugin().lines_from(b.plugin) {
        if l.contains("ALERT") || l.contains("decision #") || l.contains("migrat") {
            println!("silence ipmc_lost: {l}");
        }
    }

    // A's IPMC answers again: nothing moves back, nothing else is decided.
    let sim1 = rig.sim.mark();
    rig.sim(&format!("recover {A:#04x}"));
    rig.sim.wait_line(sim1, "recovered", secs(5), |l| {
        l.contains(&format!("\"recovered\":{A}"))
    });
    let until = Instant::now() + secs(3);
    while Instant::now() < until {
        check(&rig);
        std::thread::sleep(Duration::from_millis(500));
    }
    check(&rig);
    rig.poller().assert_never_twice();
    rig.report(
        "IPMC silent, agent heard (live migration)",
        t0,
        Some(decided),
        'b',
        &["g1", "g2"],
    );
}

/// The pet-file watchdog timeout of blade A in the dark-blade tests (the rig's agents
/// heartbeat every 100 ms; the plugin's heartbeat timeout is 1000 ms).
const WATCHDOG_MS: u64 = 2000;

/// Stops (SIGSTOP) or resumes (SIGCONT) a process.
fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

/// Blade A goes dark on every channel: its IPMC is silent and its agent is stopped
/// (SIGSTOP), so neither the shelf manager nor B hears anything of A. Returns the rig,
/// where the logs stood, A's agent's pid and when A went dark.
fn dark_a(test: &str, watchdog: bool) -> (Rig, Before, u32, Instant) {
    let rig = Rig::start(
        test,
        Options {
            watchdog_ms: [watchdog.then_some(WATCHDOG_MS), None],
            ..Options::default()
        },
    );
    if watchdog {
        // Armed, announced, and petted in steady state: the proofs of being heard work.
        rig.agent('a').wait_line(0, "watchdog armed", secs(5), |l| {
            l.contains("hardware watchdog") && l.contains("armed with 2000 ms")
        });
        rig.agent('a')
            .wait_line(0, "first pet on a proof", secs(5), |l| {
                l.contains("hardware watchdog petted")
            });
        let file = rig.blades.base.join("watchdog-a");
        let pets = || -> u64 {
            let c = std::fs::read_to_string(&file).unwrap_or_default();
            c.split_whitespace()
                .nth(2)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        let first = pets();
        std::thread::sleep(secs(1));
        let later = pets();
        assert!(
            later >= first + 3,
            "A's watchdog petted {first} then {later} times over one second\n{}",
            rig.logs()
        );
        println!(
            "silence dark: A's watchdog petted {} times in 1 s",
            later - first
        );
    }
    let b = before(&rig);
    let pid = rig.agent('a').pid();
    let t0 = rig.sim(&format!("inject {A:#04x} silent"));
    signal(pid, "-STOP");
    (rig, b, pid, t0)
}

#[test]
fn blade_dark_on_every_channel_fails_over_only_after_its_watchdog_reset_it() {
    let _shelf = one_shelf();
    let (rig, b, pid, t0) = dark_a("darkwd", true);
    // The fence of a silent IPMC cannot be confirmed over IPMB; the watchdog proof
    // confirms it once A was not heard for T + heartbeat timeout.
    let confirmed = rig
        .plugin()
        .wait_line(b.plugin, "fence confirmed by the watchdog", secs(20), |l| {
            l.contains("slot 1: fence of decision") && l.contains("(WatchdogExpired)")
        })
        .1;
    rig.plugin()
        .wait_line(b.plugin, "failover order", secs(5), |l| {
            l.contains("to slot 2: RestartPartnerGuests") && l.contains("WatchdogExpired")
        });
    rig.wait_running('b', &["g1", "g2"], secs(20));
    let fired = rig.watchdog_fired('a').unwrap_or_else(|| {
        panic!(
            "A's guests run on B but A's watchdog never fired\n{}",
            rig.logs()
        )
    });
    assert!(
        rig.powered_off('a'),
        "the watchdog's power cut did not complete"
    );
    // The poller has seen what libvirt reports.
    rig.poller().sync();
    // A's agent stopped petting when it was no longer heard; the blade was reset before
    // the shelf manager decided, and every guest started on B after that.
    assert!(
        fired < confirmed,
        "WatchdogExpired decided {} ms before the watchdog fired\n{}",
        fired.saturating_duration_since(confirmed).as_millis(),
        rig.logs()
    );
    for g in ["g1", "g2"] {
        let started = rig
            .poller()
            .started_after('b', g, b.at)
            .unwrap_or_else(|| panic!("{g} never seen starting on B\n{}", rig.logs()));
        assert!(
            started > fired,
            "{g} started on B {} ms before A's watchdog fired\n{}",
            fired.saturating_duration_since(started).as_millis(),
            rig.logs()
        );
    }
    let killed = rig.power_off_qemus('a').unwrap_or_default();
    for g in ["g1", "g2"] {
        assert!(
            killed.contains(&b.qemus[&('a', g)]),
            "A's QEMU of {g} was not among those the power cut killed: {killed:?}"
        );
    }
    rig.assert_not_running('a', &["g1", "g2"]);
    assert!(rig.running('b').contains("h1"), "B's own guest stopped");
    assert!(!rig.powered_off('b'), "B was powered off");
    rig.poller().sync();
    rig.poller().assert_never_twice();
    let decisions = rig.decisions(b.plugin);
    println!(
        "silence dark watchdog: watchdog fired {} ms after A went dark, WatchdogExpired {} ms, \
         margin {} ms; decisions {decisions:?}",
        fired.saturating_duration_since(t0).as_millis(),
        confirmed.saturating_duration_since(t0).as_millis(),
        confirmed.saturating_duration_since(fired).as_millis()
    );
    rig.report(
        "silence dark watchdog",
        t0,
        Some(confirmed),
        'b',
        &["g1", "g2"],
    );
    // The power cut killed the stopped agent; in case it did not, let it run to its end.
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status();
}

#[test]
fn blade_dark_on_every_channel_without_watchdog_is_left_to_the_operator() {
    let _shelf = one_shelf();
    let (rig, b, pid, t0) = dark_a("dark", false);
    rig.plugin()
        .wait_line(b.plugin, "fence_unconfirmed alert", secs(30), |l| {
            l.contains("ALERT fence_unconfirmed") && l.contains("slot 1")
        });
    // Far past the watchdog proof's time (T + heartbeat timeout) had A announced one:
    // nothing starts on B, A is not powered off, never twice.
    let until = t0 + secs(12);
    while Instant::now() < until {
        rig.assert_not_running('b', &["g1", "g2"]);
        std::thread::sleep(Duration::from_millis(500));
    }
    rig.assert_not_running('b', &["g1", "g2"]);
    assert!(
        !rig.powered_off('a') && !rig.powered_off('b'),
        "a blade was powered off"
    );
    assert!(
        !rig.plugin()
            .lines_from(b.plugin)
            .iter()
            .any(|(_, l)| l.contains("RestartPartnerGuests") || l.contains("WatchdogExpired")),
        "a failover without a confirmed fence\n{}",
        rig.logs()
    );
    rig.poller().sync();
    for g in ["g1", "g2"] {
        assert_eq!(
            rig.poller().started_after('b', g, b.at),
            None,
            "{g} started on B"
        );
    }
    rig.poller().assert_never_twice();
    println!(
        "silence dark without watchdog: decisions {:?}; nothing failed over within {} ms",
        rig.decisions(b.plugin),
        t0.elapsed().as_millis()
    );
    signal(pid, "-CONT");
}
