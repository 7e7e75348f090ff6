//! The rules of evidence on silence, on the real rig (two libvirtd blades, the
//! simulator's IPMB, `shmc-plugin run`, two `blade-agent`s; `tests/support/e2e.rs`):
//! a silence the other channel contradicts moves nothing.
//!
//! - The shelf manager's bus stops for every IPMC at once while both agents are
//!   alive: `ipmb_suspect`, nothing killed or moved; when the bus answers again, a
//!   real failure is still handled.
//! - The network between the shelf manager and A is cut (a UDP relay,
//!   `tests/support/relay.rs`) while B still hears A: `agent_link_lost`, no fence;
//!   after the cut is healed nothing else happens.
//!
//! Every check is on the end state and the decisions taken; detection times are
//! printed, never asserted. Needs root and the packages of `tests/ci.sh install`.

#[path = "support/blades.rs"]
mod blades;
#[path = "support/e2e.rs"]
mod e2e;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::{one_shelf, Options, Rig, FAILOVER_CLASSES};

const A: u8 = 0x82;
const B: u8 = 0x84;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Where each program's log stood, and each guest's QEMU, before the fault.
struct Before {
    plugin: usize,
    agents: [usize; 2],
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
