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

use e2e::{one_shelf, Options, Rig, FAILOVER_CLASSES};

const A: u8 = 0x82;
const B: u8 = 0x84;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

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
    rig.report("critical temperature", t0, Some(decided), 'b', &["g1", "g2"]);
}
