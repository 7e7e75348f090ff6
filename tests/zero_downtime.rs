//! Predictive migration end to end (issue 8): `shmc-plugin run` on the simulator's IPMB,
//! two `blade-agent`s with each other's libvirt URI, two real libvirtd blades (the rig of
//! `tests/support/e2e.rs`, reused as is). An upper non-critical temperature on A that
//! stays asserted past `degraded_hold_ms` makes A's guests live-migrate to B while A is
//! neither fenced nor deactivated; with predictive mode off (the default) the same event
//! moves nothing. No guest ever runs on both blades (both daemons polled throughout).
//!
//! The cancel-by-deassertion rule is covered by the engine and replay tests (the
//! simulator has no deassertion command). Needs root, as `tests/e2e.rs`.

#[path = "support/blades.rs"]
mod blades;
#[path = "support/e2e.rs"]
mod e2e;

use std::time::Duration;

use e2e::{one_shelf, Options, Rig};

const A: u8 = 0x82;
const HOLD_MS: u64 = 1500;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

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

    // On: held past the hold time -> blade_degraded -> live migration, no fence.
    enable_predictive(&mut rig);
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
