//! End-to-end failover on real components (issue 4): two libvirtd blades with QEMU
//! (TCG) guests, two `blade-agent` processes, `shmc-plugin run` on the IPMB of
//! `shelfha simulate`, all on loopback with a fresh shelf key (see
//! `tests/support/e2e.rs`). Each test asserts the end state through libvirt and
//! that no guest ever ran on both blades at once; it prints the detection time
//! (injection -> decision) and the downtime (injection -> last guest running on
//! the partner), which are measured, never asserted.
//!
//! Needs root and the packages of `tests/ci.sh install` (as `tests/libvirt_blades.rs`).

#[path = "support/blades.rs"]
mod blades;
#[path = "support/e2e.rs"]
mod e2e;

use std::time::{Duration, Instant};

use e2e::{one_shelf, secs, Options, Rig, A, B, FAILOVER_CLASSES};

/// A failover of every guest of A to B after a hardware fence: the simulator reaches
/// M1 (A's power is cut), B runs A's guests, A runs nothing.
fn assert_failed_over(rig: &Rig, guests: &[&str]) {
    rig.wait_running('b', guests, secs(20));
    rig.assert_not_running('a', guests);
    rig.poller().sync();
    rig.poller().assert_never_twice();
}

#[test]
fn critical_temperature_fences_a_and_b_runs_its_guests() {
    let _shelf = one_shelf();
    let rig = Rig::start("crit", Options::default());
    let (sim0, log0) = (rig.sim.mark(), rig.plugin().mark());
    let t0 = rig.sim(&format!("inject {A:#04x} critical-temperature"));
    let decided = rig.wait_decision(log0, "blade_hardware", 1, secs(10));
    rig.wait_sim_state(sim0, A, "M1", secs(10));
    assert!(rig.powered_off('a'), "A's power was not cut at M1");
    assert_failed_over(&rig, &["g1", "g2"]);
    // B's own guest is untouched.
    assert!(rig.running('b').contains("h1"));
    rig.report(
        "critical temperature",
        t0,
        Some(decided),
        'b',
        &["g1", "g2"],
    );
}

#[test]
fn silent_ipmc_with_a_live_agent_is_ipmc_lost_and_nothing_moves() {
    let _shelf = one_shelf();
    let rig = Rig::start("silent", Options::default());
    let (log0, agent0) = (rig.plugin().mark(), rig.agent('a').mark());
    rig.sim(&format!("inject {A:#04x} silent"));
    // A's agent still heartbeats: the IPMC's silence is not corroborated, A stays in service.
    rig.wait_decision(log0, "ipmc_lost", 1, secs(10));
    rig.plugin()
        .wait_line(log0, "ipmc_lost alert", secs(5), |l| {
            l.contains("ALERT ipmc_lost")
        });
    // Three more probe timeouts: nothing fenced, nothing restarted, nothing killed.
    std::thread::sleep(secs(5));
    let running = rig.running('a');
    assert!(
        running.contains("g1") && running.contains("g2"),
        "A's guests stopped (running: {running:?})\n{}",
        rig.logs()
    );
    rig.assert_not_running('b', &["g1", "g2"]);
    assert!(!rig.powered_off('a'), "A was powered off");
    assert!(
        rig.agent('a')
            .find(agent0, |l| l.contains("self-fence")
                || l.contains("fenced:"))
            .is_none(),
        "A's agent self-fenced\n{}",
        rig.logs()
    );
    let decisions = rig.decisions(log0);
    assert!(
        decisions
            .iter()
            .all(|d| !d.contains(" blade_lost ") && !d.contains(" host_os ")),
        "a silence was decided without corroboration: {decisions:?}"
    );
    rig.poller().sync();
    rig.poller().assert_never_twice();
}

#[test]
fn watchdog_expiry_is_host_os_and_fails_over() {
    let _shelf = one_shelf();
    let rig = Rig::start("wdog", Options::default());
    let (sim0, log0) = (rig.sim.mark(), rig.plugin().mark());
    let t0 = rig.sim(&format!("inject {A:#04x} watchdog"));
    let decided = rig.wait_decision(log0, "host_os", 1, secs(10));
    rig.wait_sim_state(sim0, A, "M1", secs(10));
    assert_failed_over(&rig, &["g1", "g2"]);
    rig.report("watchdog", t0, Some(decided), 'b', &["g1", "g2"]);
}

#[test]
fn dead_agent_with_ipmc_in_m4_is_host_os_and_fails_over() {
    let _shelf = one_shelf();
    let mut rig = Rig::start("hbeat", Options::default());
    let (sim0, log0) = (rig.sim.mark(), rig.plugin().mark());
    let t0 = Instant::now();
    rig.kill_agent('a');
    let decided = rig.wait_decision(log0, "host_os", 1, secs(10));
    // The IPMB fence deactivates A (its power is cut at M1), then B takes over.
    rig.wait_sim_state(sim0, A, "M1", secs(10));
    assert_failed_over(&rig, &["g1", "g2"]);
    rig.report(
        "agent killed (heartbeat loss)",
        t0,
        Some(decided),
        'b',
        &["g1", "g2"],
    );
}

#[test]
fn dead_libvirtd_is_hypervisor_and_the_agent_kills_its_qemus() {
    let _shelf = one_shelf();
    let rig = Rig::start("hyperv", Options::default());
    let log0 = rig.plugin().mark();
    let qemus = [
        rig.blades.qemu_pid('a', "g1"),
        rig.blades.qemu_pid('a', "g2"),
    ];
    let t0 = Instant::now();
    rig.blades.harness("kill-libvirtd", &["a"]);
    let decided = rig.wait_decision(log0, "hypervisor", 1, secs(10));
    assert_failed_over(&rig, &["g1", "g2"]);
    // A's QEMUs were killed by its agent (libvirtd could not), not by a power cut.
    assert!(!rig.powered_off('a'));
    for pid in qemus {
        assert!(!blades::alive(pid), "QEMU {pid} of blade A still alive");
    }
    rig.report("libvirtd killed", t0, Some(decided), 'b', &["g1", "g2"]);
}

#[test]
fn noncritical_threshold_ipmb_link_loss_and_garbage_move_nothing() {
    let _shelf = one_shelf();
    let rig = Rig::start("benign", Options::default());
    let (sim0, log0) = (rig.sim.mark(), rig.plugin().mark());
    rig.sim(&format!("inject {A:#04x} noncritical-temperature"));
    rig.sim(&format!("inject {A:#04x} ipmb-a-lost"));
    rig.sim("garbage 64");
    rig.sim(&format!("inject {B:#04x} noncritical-temperature"));
    rig.sim("garbage 200");
    // The link loss is heard (an alert-only decision), so the events did reach the plugin.
    rig.wait_decision(log0, "ipmb_link_degraded", 1, secs(10));
    rig.sim
        .wait_line(sim0, "garbage", secs(5), |l| l.contains("\"garbage\":200"));
    std::thread::sleep(secs(3));
    let decisions = rig.decisions(log0);
    for d in &decisions {
        assert!(
            !FAILOVER_CLASSES
                .iter()
                .any(|c| d.contains(&format!(" {c} for slot"))),
            "a failover decision was taken: {d}"
        );
    }
    assert!(rig
        .running('a')
        .is_superset(&["g1", "g2"].map(String::from).into()));
    assert!(rig.running('b').contains("h1"));
    rig.assert_not_running('b', &["g1", "g2"]);
    rig.assert_not_running('a', &["h1"]);
    assert!(!rig.powered_off('a') && !rig.powered_off('b'));
    rig.poller().assert_never_twice();
    println!("e2e benign events: decisions {decisions:?}");
}

#[test]
fn ignored_deactivation_with_dead_agent_starts_nothing_on_b_and_escalates() {
    let _shelf = one_shelf();
    let mut rig = Rig::start(
        "nofence",
        Options {
            // Short fence steps; requests retried within a step (3 x 100 ms).
            timing: vec![("fence_step_deadline_ms", 300), ("request_timeout_ms", 100)],
            ..Options::default()
        },
    );
    let log0 = rig.plugin().mark();
    rig.sim(&format!("inject {A:#04x} ignore-deactivation"));
    // Without its agent, nothing can confirm A's fence but the IPMC.
    rig.kill_agent('a');
    let t0 = rig.sim(&format!("inject {A:#04x} critical-temperature"));
    rig.plugin()
        .wait_line(log0, "FenceUnconfirmed alert", secs(20), |l| {
            l.contains("ALERT") && l.contains("unconfirmed after")
        });
    std::thread::sleep(secs(1));
    let log = rig.plugin().lines_from(log0);
    let has = |s: &str| log.iter().any(|(_, l)| l.contains(s));
    assert!(has("fence step Deactivate"), "{}", rig.logs());
    assert!(has("fence step ColdReset"), "{}", rig.logs());
    assert!(has("fence step PowerOff"), "{}", rig.logs());
    assert!(
        !has("RestartPartnerGuests"),
        "a failover was ordered: {}",
        rig.logs()
    );
    rig.assert_not_running('b', &["g1", "g2"]);
    assert!(rig
        .running('a')
        .is_superset(&["g1", "g2"].map(String::from).into()));
    rig.poller().assert_never_twice();
    println!(
        "e2e ignored deactivation: alert after {} ms, still no failover",
        rig.plugin()
            .find(log0, |l| l.contains("unconfirmed after"))
            .map_or(0, |(_, t, _)| t.saturating_duration_since(t0).as_millis())
    );
}

/// Waits until `guest` runs on A again under a QEMU other than `old`.
fn wait_restarted_on_a(rig: &Rig, guest: &str, old: u32) -> Instant {
    let deadline = Instant::now() + secs(20);
    loop {
        if rig.running('a').contains(guest) {
            let pid = rig.blades.qemu_pid('a', guest);
            if pid != old {
                return Instant::now();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{guest} not restarted on A\n{}",
            rig.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn crashed_guest_restarts_on_a_then_moves_to_b_after_four_crashes() {
    let _shelf = one_shelf();
    let rig = Rig::start("crash", Options::default());
    for round in 1..=3 {
        let log0 = rig.plugin().mark();
        let old = rig.blades.qemu_pid('a', "g1");
        let t0 = Instant::now();
        rig.blades.harness("kill-qemu", &["a", "g1"]);
        let decided = rig.wait_decision(log0, "guest", 1, secs(10));
        let back = wait_restarted_on_a(&rig, "g1", old);
        rig.assert_not_running('b', &["g1"]);
        println!(
            "e2e guest crash {round}: detection {} ms, downtime {} ms (restarted on blade a)",
            decided.saturating_duration_since(t0).as_millis(),
            back.saturating_duration_since(t0).as_millis()
        );
    }
    let log0 = rig.plugin().mark();
    let t0 = Instant::now();
    rig.blades.harness("kill-qemu", &["a", "g1"]);
    let decided = rig.wait_decision(log0, "guest", 1, secs(10));
    rig.wait_running('b', &["g1"], secs(20));
    rig.assert_not_running('a', &["g1"]);
    // Only that guest moved.
    assert!(rig.running('a').contains("g2"));
    rig.assert_not_running('b', &["g2"]);
    rig.poller().sync();
    rig.poller().assert_never_twice();
    rig.report("guest crash 4 (moved)", t0, Some(decided), 'b', &["g1"]);
}

#[test]
fn opened_handle_evacuates_a_by_live_migration_before_it_deactivates() {
    let _shelf = one_shelf();
    let rig = Rig::start(
        "handle",
        Options {
            migrate: true,
            ..Options::default()
        },
    );
    let (sim0, log0) = (rig.sim.mark(), rig.plugin().mark());
    let t0 = rig.sim(&format!("inject {A:#04x} handle"));
    let decided = rig.wait_decision(log0, "blade_extraction", 1, secs(10));
    rig.wait_sim_state(sim0, A, "M1", secs(30));
    rig.wait_running('b', &["g1", "g2"], secs(20));
    rig.assert_not_running('a', &["g1", "g2"]);
    // The guests had left A before its deactivation: the power cut at M1 found no QEMU.
    assert_eq!(
        rig.power_off_qemus('a'),
        Some(vec![]),
        "A's guests were still there when it deactivated\n{}",
        rig.logs()
    );
    // The plugin deactivated A only after the evacuation was reported.
    let log = rig.plugin().lines_from(log0);
    let at = |s: &str| log.iter().position(|(_, l)| l.contains(s));
    let (reported, deactivated) = (at("allowing deactivation"), at("fence step Deactivate"));
    assert!(
        reported.is_some() && deactivated.is_some() && reported < deactivated,
        "evacuation {reported:?}, deactivation {deactivated:?}\n{}",
        rig.logs()
    );
    // Live-migrated, hence started on B exactly once each.
    rig.poller().sync();
    for g in ["g1", "g2"] {
        assert_eq!(rig.poller().starts_after('b', g, t0), 1, "{g}");
    }
    rig.poller().assert_never_twice();
    // A's agent live-migrated them (libvirt's job statistics: the guest's real downtime),
    // as the plugin heard.
    for g in ["g1", "g2"] {
        let pat = format!("guest {g} Migrated");
        let (_, _, line) = rig
            .plugin()
            .find(log0, |l| l.contains(&pat))
            .unwrap_or_else(|| panic!("{g} was not live-migrated\n{}", rig.logs()));
        let downtime = line.split("guest downtime").nth(1).unwrap_or(" ?").trim();
        println!("e2e handle opened: {g} live-migrated, guest downtime {downtime}");
    }
    rig.report(
        "handle opened (live migration)",
        t0,
        Some(decided),
        'b',
        &["g1", "g2"],
    );
}

#[test]
fn opened_handle_without_partner_uri_stops_guests_and_b_starts_them() {
    let _shelf = one_shelf();
    let rig = Rig::start("handle2", Options::default());
    let (sim0, log0) = (rig.sim.mark(), rig.plugin().mark());
    let t0 = rig.sim(&format!("inject {A:#04x} handle"));
    let decided = rig.wait_decision(log0, "blade_extraction", 1, secs(10));
    rig.wait_sim_state(sim0, A, "M1", secs(30));
    rig.wait_running('b', &["g1", "g2"], secs(20));
    rig.assert_not_running('a', &["g1", "g2"]);
    // Stopped on A before its deactivation, started on B after it.
    assert_eq!(
        rig.power_off_qemus('a'),
        Some(vec![]),
        "A's guests were still there when it deactivated\n{}",
        rig.logs()
    );
    rig.poller().sync();
    for g in ["g1", "g2"] {
        assert_eq!(rig.poller().starts_after('b', g, t0), 1, "{g}");
    }
    rig.poller().assert_never_twice();
    rig.report(
        "handle opened (stop, restart on B)",
        t0,
        Some(decided),
        'b',
        &["g1", "g2"],
    );
}

#[test]
fn b_fails_after_taking_a_guests_and_a_back_in_m4_runs_everything() {
    let _shelf = one_shelf();
    let mut rig = Rig::start("back", Options::default());
    let (sim0, log0) = (rig.sim.mark(), rig.plugin().mark());
    rig.sim(&format!("inject {A:#04x} critical-temperature"));
    rig.wait_decision(log0, "blade_hardware", 1, secs(10));
    rig.wait_sim_state(sim0, A, "M1", secs(10));
    assert_failed_over(&rig, &["g1", "g2"]);

    // A comes back: IPMC active again, then its libvirtd and agent start (a reboot).
    let (sim1, log1) = (rig.sim.mark(), rig.plugin().mark());
    rig.sim(&format!("recover {A:#04x}"));
    rig.wait_sim_state(sim1, A, "M4", secs(10));
    rig.blades.harness("start-libvirtd", &["a"]);
    rig.start_agent('a');
    rig.plugin()
        .wait_line(log1, "A's agent registered again", secs(20), |l| {
            l.contains("slot 1: agent registered")
        });
    // A holds B's definitions, its own former guests among them.
    rig.wait_definitions('a', &["g1", "g2", "h1"]);

    let (sim2, log2) = (rig.sim.mark(), rig.plugin().mark());
    let t0 = rig.sim(&format!("inject {B:#04x} critical-temperature"));
    let decided = rig.wait_decision(log2, "blade_hardware", 2, secs(10));
    rig.wait_sim_state(sim2, B, "M1", secs(10));
    assert!(rig.powered_off('b'), "B's power was not cut at M1");
    rig.wait_running('a', &["g1", "g2", "h1"], secs(30));
    rig.assert_not_running('b', &["g1", "g2", "h1"]);
    rig.poller().sync();
    rig.poller().assert_never_twice();
    rig.report(
        "B fails after takeover",
        t0,
        Some(decided),
        'a',
        &["g1", "g2", "h1"],
    );
}

#[test]
fn plugin_restarted_during_a_failover_completes_it_once() {
    let _shelf = one_shelf();
    // A slow deactivation (M6 for 1.5 s) puts the restart between decision and fence.
    let mut rig = Rig::start(
        "restart",
        Options {
            deactivation_ms: Some(1500),
            ..Options::default()
        },
    );
    let (sim0, log0) = (rig.sim.mark(), rig.plugin().mark());
    let t0 = rig.sim(&format!("inject {A:#04x} critical-temperature"));
    let decided = rig.wait_decision(log0, "blade_hardware", 1, secs(10));
    // Killed as soon as it decided: before any failover order.
    rig.plugin.as_mut().expect("plugin").kill();
    let old_log = rig.plugin().text();
    assert!(
        !old_log.contains("RestartPartnerGuests"),
        "the first plugin ordered the failover before it was killed"
    );
    rig.start_plugin();
    rig.wait_sim_state(sim0, A, "M1", secs(10));
    assert_failed_over(&rig, &["g1", "g2"]);
    // Started once each on B, and nothing more happens after a while.
    std::thread::sleep(secs(2));
    rig.poller().sync();
    for g in ["g1", "g2"] {
        assert_eq!(rig.poller().starts_after('b', g, t0), 1, "{g}");
    }
    assert!(rig
        .running('b')
        .is_superset(&["g1", "g2", "h1"].map(String::from).into()));
    rig.poller().assert_never_twice();
    rig.report(
        "plugin restarted mid-failover",
        t0,
        Some(decided),
        'b',
        &["g1", "g2"],
    );
}

#[test]
fn plugin_restart_then_a_second_failure_of_the_same_blade_fails_over_again() {
    let _shelf = one_shelf();
    let mut rig = Rig::start("again", Options::default());
    // First failure: B, with the first plugin.
    let (sim0, log0) = (rig.sim.mark(), rig.plugin().mark());
    rig.sim(&format!("inject {B:#04x} critical-temperature"));
    rig.wait_decision(log0, "blade_hardware", 2, secs(10));
    rig.wait_sim_state(sim0, B, "M1", secs(10));
    rig.wait_running('a', &["h1"], secs(20));
    // B comes back; the plugin restarts.
    let (sim1, log1) = (rig.sim.mark(), rig.plugin().mark());
    rig.sim(&format!("recover {B:#04x}"));
    rig.wait_sim_state(sim1, B, "M4", secs(10));
    rig.blades.harness("start-libvirtd", &["b"]);
    rig.start_agent('b');
    rig.plugin()
        .wait_line(log1, "B's agent registered again", secs(20), |l| {
            l.contains("slot 2: agent registered")
        });
    rig.plugin.as_mut().expect("plugin").kill();
    rig.start_plugin();
    for slot in [1, 2] {
        rig.plugin()
            .wait_line(0, "agents registered", secs(20), |l| {
                l.contains(&format!("slot {slot}: agent registered"))
            });
    }
    // B runs a new guest; A holds its definition.
    rig.blades.define(&['b'], "k1", None);
    e2e::start_guest(&rig.blades, 'b', "k1");
    rig.wait_definitions('a', &["k1"]);
    // Second failure of B, with the second plugin: its libvirtd dies.
    let log2 = rig.plugin().mark();
    let k1 = rig.blades.qemu_pid('b', "k1");
    let t0 = Instant::now();
    rig.blades.harness("kill-libvirtd", &["b"]);
    let decided = rig.wait_decision(log2, "hypervisor", 2, secs(10));
    rig.wait_running('a', &["k1"], secs(20));
    assert!(!blades::alive(k1), "k1's QEMU still runs on B");
    rig.poller().sync();
    rig.poller().assert_never_twice();
    rig.report(
        "second failure after a plugin restart",
        t0,
        Some(decided),
        'a',
        &["k1"],
    );
}
