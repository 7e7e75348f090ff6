//! Predictive migration end to end (issue 8): `shmc-plugin run` on the simulator's IPMB,
//! two `blade-agent`s with each other's libvirt URI, two real libvirtd blades (the rig of
//! `tests/support/e2e.rs`, reused as is). An upper non-critical temperature on A that
//! stays asserted past `degraded_hold_ms` makes A's guests live-migrate to B while A is
//! neither fenced nor deactivated; with predictive mode off (the default) the same event
//! moves nothing, and so does one deasserted within the hold time. No guest ever runs on
//! both blades (both daemons polled throughout). Needs root, as `tests/e2e.rs`.

#[path = "support/blades.rs"]
mod blades;
#[path = "support/e2e.rs"]
mod e2e;

use std::time::Duration;

use e2e::{one_shelf, secs, Options, Rig, A};

const HOLD_MS: u64 = 1500;

/// Restarts the plugin with `[predictive]` added to its configuration; waits until both
/// agents are registered again (their heartbeats register them).
fn enable_predictive(rig: &mut Rig) {
    rig.plugin.take();
    let path = rig.blades.base.join("shmc-plugin.toml");
    let mut text = std::fs::read_to_string(&path).expect("plugin config");
    text.push_str(&format!(
        "[predictive]\nenabled = true\ndegraded_hold_ms = {HOLD_MS}\n"
    ));
    std::fs::write(&path, text).expect("write plugin config");
    rig.start_plugin();
    for slot in [1, 2] {
        rig.plugin()
            .wait_line(0, "agent registration", secs(20), |l| {
                l.contains(&format!("slot {slot}: agent registered"))
            });
    }
}

#[test]
fn noncritical_temperature_held_migrates_a_without_fencing_it_only_when_enabled() {
    let _shelf = one_shelf();
    let mut rig = Rig::start(
        "degraded",
        Options {
            migrate: true,
            ..Options::default()
        },
    );

    // Predictive mode off (the default): recorded only, nothing moves.
    let (sim0, log0) = (rig.sim.mark(), rig.plugin().mark());
    rig.sim(&format!("inject {A:#04x} noncritical-temperature"));
    rig.sim.wait_line(sim0, "injection", secs(10), |l| {
        l.contains("NonCriticalTemperature")
    });
    // The IPMC retransmits until the plugin answers: well within this wait.
    std::thread::sleep(Duration::from_millis(HOLD_MS + 1000));
    assert!(rig.decisions(log0).is_empty(), "{:?}", rig.decisions(log0));
    assert!(rig.running('a').contains("g1") && rig.running('a').contains("g2"));
    assert!(!rig.running('b').contains("g1"));

    // On, but deasserted within the hold time: the hold is cancelled, nothing moves.
    enable_predictive(&mut rig);
    let (sim0, log0) = (rig.sim.mark(), rig.plugin().mark());
    rig.sim(&format!("inject {A:#04x} noncritical-temperature"));
    std::thread::sleep(Duration::from_millis(HOLD_MS / 3));
    rig.sim(&format!("clear {A:#04x} noncritical-temperature"));
    rig.sim
        .wait_line(sim0, "deassertion", secs(10), |l| l.contains("\"cleared\""));
    std::thread::sleep(Duration::from_millis(HOLD_MS + 1000));
    assert!(rig.decisions(log0).is_empty(), "{:?}", rig.decisions(log0));
    assert!(rig.running('a').contains("g1") && rig.running('a').contains("g2"));
    assert!(!rig.running('b').contains("g1"));

    // On: held past the hold time -> blade_degraded -> live migration, no fence.
    let (sim0, log0) = (rig.sim.mark(), rig.plugin().mark());
    let t0 = rig.sim(&format!("inject {A:#04x} noncritical-temperature"));
    let decided = rig.wait_decision(log0, "blade_degraded", 1, secs(10));
    assert!(
        decided.saturating_duration_since(t0) >= Duration::from_millis(HOLD_MS - 100),
        "decided before the hold time"
    );
    rig.wait_running('b', &["g1", "g2"], secs(30));
    // The agent reports once libvirt has finished each migration (the source QEMU is gone
    // a few ms after the switch-over, so A is checked after the report).
    rig.plugin()
        .wait_line(log0, "migration report", secs(30), |l| {
            l.contains("slot 1: migration reported; the blade stays up")
        });
    rig.assert_not_running('a', &["g1", "g2"]);
    let log = rig.plugin().lines_from(log0);
    assert!(
        !log.iter()
            .any(|(_, l)| l.contains("slot 1: fence step") || l.contains("slot 1: fence of")),
        "A was fenced\n{}",
        rig.logs()
    );
    // A stays active: the simulator saw no hot-swap transition of A.
    assert!(
        rig.sim
            .find(sim0, |l| l.contains("\"ipmc\":130")
                && l.contains("\"previous\""))
            .is_none(),
        "A changed state\n{}",
        rig.logs()
    );
    // Each guest was reported migrated with libvirt's numbers.
    for g in ["g1", "g2"] {
        let (_, _, line) = rig
            .plugin()
            .wait_line(log0, &format!("{g} moved"), secs(10), |l| {
                l.contains(&format!("guest {g} Migrated"))
            });
        println!("e2e degraded: {}", line.trim());
    }
    rig.poller().sync();
    for g in ["g1", "g2"] {
        assert_eq!(rig.poller().starts_after('b', g, t0), 1, "{g}");
    }
    rig.poller().assert_never_twice();
    rig.report(
        "non-critical temperature held (predictive live migration)",
        t0,
        Some(decided),
        'b',
        &["g1", "g2"],
    );
}

/// Handle opened on A with two guests that can migrate and one whose qcow2 image lies on a
/// filesystem libvirt does not see as shared (it refuses that migration as unsafe): the two
/// move live before A deactivates; the third is stopped on A and started on B only after A
/// reached M1 (its fence), once; nothing runs twice.
#[test]
fn opened_handle_falls_back_to_restart_after_the_fence_for_a_guest_that_cannot_migrate() {
    let _shelf = one_shelf();
    let rig = Rig::start(
        "zdfall",
        Options {
            migrate: true,
            ..Options::default()
        },
    );
    let image = rig.blades.base.join("shared/gd.qcow2");
    let out = std::process::Command::new("bash")
        .arg(blades::harness_path())
        .arg("make-disk")
        .arg(&image)
        .output()
        .expect("make-disk");
    assert!(out.status.success(), "make-disk failed");
    rig.blades
        .define(&['a'], "gd", Some(image.to_str().expect("utf-8 path")));
    rig.blades.virsh_ok('a', &["start", "gd"]);
    rig.wait_definitions('b', &["gd"]);
    let (sim0, log0) = (rig.sim.mark(), rig.plugin().mark());
    let t0 = rig.sim(&format!("inject {A:#04x} handle"));
    let decided = rig.wait_decision(log0, "blade_extraction", 1, secs(10));
    let m1 = rig.wait_sim_state(sim0, A, "M1", secs(60));
    rig.wait_running('b', &["g1", "g2", "gd"], secs(30));
    rig.assert_not_running('a', &["g1", "g2", "gd"]);
    for g in ["g1", "g2"] {
        let (_, _, line) = rig
            .plugin()
            .wait_line(log0, &format!("{g} migrated"), secs(10), |l| {
                l.contains(&format!("guest {g} Migrated"))
            });
        println!("e2e handle, migrated: {}", line.trim());
    }
    rig.plugin().wait_line(log0, "gd stopped", secs(10), |l| {
        l.contains("guest gd Stopped")
    });
    rig.poller().sync();
    let gd_on_b = rig
        .poller()
        .started_after('b', "gd", t0)
        .expect("gd started on B");
    assert!(
        gd_on_b >= m1 - Duration::from_millis(60),
        "gd ran on B before A reached M1"
    );
    for g in ["g1", "g2", "gd"] {
        assert_eq!(rig.poller().starts_after('b', g, t0), 1, "{g}");
    }
    rig.poller().assert_never_twice();
    rig.report(
        "handle opened, one guest cannot migrate",
        t0,
        Some(decided),
        'b',
        &["g1", "g2", "gd"],
    );
}

/// Warm standby end to end: B keeps A's `db` (a shared LUN, raw, cache='none') started
/// paused; a critical temperature on A fences it (its agent's FenceSelf or M1, whichever
/// confirms first); only then B resumes
/// the standby (not a cold start). When A is back (its libvirtd, IPMC and agent), the
/// standby is re-created on A.
#[test]
fn warm_standby_resumes_on_b_after_the_fence_and_comes_back_on_a() {
    let _shelf = one_shelf();
    let mut rig = Rig::start(
        "zdwarm",
        Options {
            guests_a: vec!["g1"],
            // The agents are restarted with the warm-standby list: no host_os meanwhile.
            timing: vec![("heartbeat_timeout_ms", 30_000)],
            ..Options::default()
        },
    );
    let lun = rig.blades.shared_disk("db", 16);
    rig.blades.define(&['a'], "db", Some(&lun));
    rig.blades.virsh_ok('a', &["start", "db"]);
    let log0 = rig.plugin().mark();
    for x in ['a', 'b'] {
        let path = rig.blades.base.join(format!("agent-{x}.toml"));
        let mut text = std::fs::read_to_string(&path).expect("agent config");
        // The rig writes the `[guests]` table last: this key joins it.
        text.push_str("warm_standby = [\"db\"]\n");
        std::fs::write(&path, text).expect("write agent config");
        rig.kill_agent(x);
        rig.start_agent(x);
    }
    for slot in [1, 2] {
        rig.plugin()
            .wait_line(log0, "agent registration", secs(20), |l| {
                l.contains(&format!("slot {slot}: agent registered"))
            });
    }
    rig.wait_definitions('b', &["db"]);
    blades::wait_for("db's standby paused on B", secs(30), || {
        rig.blades.virsh('b', &["domstate", "db"]).status.success()
            && rig.blades.domstate('b', "db") == "paused"
    });
    assert_eq!(rig.blades.domstate('a', "db"), "running");

    let (sim0, log0) = (rig.sim.mark(), rig.plugin().mark());
    let t0 = rig.sim(&format!("inject {A:#04x} critical-temperature"));
    let decided = rig.wait_decision(log0, "blade_hardware", 1, secs(10));
    // A is fenced by whichever confirms first: its agent's FenceSelf or M1 over IPMB.
    let (_, confirmed, line) = rig
        .plugin()
        .wait_line(log0, "A's fence confirmed", secs(30), |l| {
            l.contains("slot 1: fence of decision #") && l.contains("confirmed")
        });
    println!("e2e warm standby: {}", line.trim());
    rig.wait_running('b', &["db", "g1"], secs(30));
    rig.wait_sim_state(sim0, A, "M1", secs(30));
    rig.poller().sync();
    let resumed = rig
        .poller()
        .started_after('b', "db", t0)
        .expect("db running on B");
    assert!(
        resumed >= confirmed,
        "db ran on B before A's fence was confirmed"
    );
    rig.agent('b').wait_line(0, "db resumed", secs(10), |l| {
        l.contains("partner guest `db`: Resumed")
    });
    println!(
        "e2e warm standby: db seen running on B {} ms after the fence confirmation (poller, 50 ms rounds)",
        resumed.saturating_duration_since(confirmed).as_millis()
    );
    rig.report(
        "warm standby (critical temperature)",
        t0,
        Some(decided),
        'b',
        &["db", "g1"],
    );

    rig.poller().sync();
    rig.poller().assert_never_twice();

    // A comes back: its daemon, its IPMC (M4) and its agent; the standby moves to A. (From
    // here the rig's poller is not used: while a daemon does not answer it counts every live
    // QEMU as running, a paused standby's too; libvirt is asked instead.)
    let log1 = rig.plugin().mark();
    rig.blades.harness("start-libvirtd", &["a"]);
    rig.sim(&format!("recover {A:#04x}"));
    rig.start_agent('a');
    rig.plugin()
        .wait_line(log1, "A's agent back", secs(30), |l| {
            l.contains("slot 1: agent registered")
        });
    let mut looks = 0;
    blades::wait_for("db's standby paused on A", secs(40), || {
        looks += 1;
        let on_b = rig.running('b');
        let on_a = rig.running('a');
        assert!(
            !(on_a.contains("db") && on_b.contains("db")),
            "db running on both blades"
        );
        rig.blades.domstate('a', "db") == "paused"
    });
    for _ in 0..10 {
        assert!(!rig.running('a').contains("db"), "the standby on A runs");
        assert!(rig.running('b').contains("db"));
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("e2e warm standby: re-created paused on A ({looks} looks at both daemons)");
}
