//! Evidence held back by the shelf manager's own faults, the freshness of
//! the partner's word in a watchdog proof, and what a registration may
//! announce.

use super::*;

fn failovers(outs: &[Output]) -> std::vec::Vec<(Slot, Order)> {
    orders(outs)
        .into_iter()
        .filter(|(_, o)| is_failover(o))
        .collect()
}

/// A is being fenced, its IPMC does not answer; its agent is cut from the
/// shelf manager but still hears B (and keeps petting its watchdog). B
/// reports hearing A until its own link is cut at 2000: the shelf manager
/// has no fresh word from B, and takes no watchdog proof.
#[test]
fn test_watchdog_proof_needs_a_fresh_partner_report() {
    let mut s = Shelf::new(config(true)).unwrap();
    s.on_platform_event(0, 1, &critical_temp(A));
    s.on_agent(0, Slot(1), hello(Some(1000), false));
    s.on_agent(0, Slot(2), HELLO);
    let outs = run(
        &mut s,
        0,
        10_000,
        |_, a| a == B,
        |s, now| {
            if now < 2000 && now.is_multiple_of(200) {
                beat(s, now, 2, Some(20));
            }
        },
    );
    assert!(failovers(&outs).is_empty(), "{:?}", failovers(&outs));
    assert!(kinds(&outs).contains(&"fence_unconfirmed"));

    // A partner that never registered, or never reports on A: no proof.
    for reports in [false, true] {
        let mut s = Shelf::new(config(true)).unwrap();
        s.on_platform_event(0, 1, &critical_temp(A));
        s.on_agent(0, Slot(1), hello(Some(1000), false));
        let outs = run(
            &mut s,
            0,
            10_000,
            |_, a| a == B,
            |s, now| {
                if reports && now.is_multiple_of(200) {
                    beat(s, now, 2, None);
                }
            },
        );
        assert!(failovers(&outs).is_empty(), "{:?}", failovers(&outs));
    }

    // A fresh report that it has not heard A for T + heartbeat timeout: proof.
    let mut s = Shelf::new(config(true)).unwrap();
    s.on_platform_event(0, 1, &critical_temp(A));
    s.on_agent(0, Slot(1), hello(Some(1000), false));
    s.on_agent(0, Slot(2), HELLO);
    let outs = run(
        &mut s,
        0,
        10_000,
        |_, a| a == B,
        |s, now| {
            if now.is_multiple_of(200) {
                beat(s, now, 2, Some(now as u32));
            }
        },
    );
    let o = failovers(&outs);
    assert!(
        matches!(
            o.as_slice(),
            [(
                Slot(2),
                Order::RestartPartnerGuests {
                    fence: Confirmation::WatchdogExpired,
                    ..
                }
            )]
        ),
        "{o:?}"
    );
}

/// Four blades; A is being fenced, its IPMC silent; B reports hearing A
/// every heartbeat. The shelf manager's own network is cut 1000..8000
/// (`network_suspect`). At 8000 C's heartbeat arrives first, B's at 8100:
/// no proof from the evidence the cut held back before B can say it still
/// hears A.
#[test]
fn test_no_watchdog_proof_right_after_network_suspect_ends() {
    let mut s = Shelf::new(four_blades()).unwrap();
    s.on_platform_event(0, 1, &critical_temp(A));
    s.on_agent(0, Slot(1), hello(Some(1000), false));
    for slot in 2..=4 {
        s.on_agent(0, Slot(slot), HELLO);
    }
    let agents = |s: &mut Shelf, now: u64| {
        let cut = (1000..8000).contains(&now);
        if !cut && now.is_multiple_of(200) {
            beat(s, now, 3, None);
            beat(s, now, 4, None);
        }
        if !cut && now >= 100 && (now - 100).is_multiple_of(200) {
            beat(s, now, 2, Some(20));
        }
    };
    let outs = run(&mut s, 0, 7990, |_, a| a != A, agents);
    assert!(kinds(&outs).contains(&"network_suspect"));
    assert!(failovers(&outs).is_empty(), "{:?}", failovers(&outs));
    let outs = run(&mut s, 8000, 12_000, |_, a| a != A, agents);
    assert!(failovers(&outs).is_empty(), "{:?}", failovers(&outs));
}

/// A's IPMC is dead, its agent heard (`ipmc_lost`). The shelf manager's
/// network is cut 1000..8000 (`network_suspect`). At 8000 C's heartbeat
/// comes first: A, whose agent speaks again at 8100, is not decided
/// `blade_lost` on the evidence the cut held back.
#[test]
fn test_no_blade_lost_right_after_network_suspect_ends() {
    let mut s = Shelf::new(four_blades()).unwrap();
    for slot in 1..=4 {
        s.on_agent(0, Slot(slot), HELLO);
    }
    let agents = |s: &mut Shelf, now: u64| {
        let cut = (1000..8000).contains(&now);
        if !cut && now.is_multiple_of(200) {
            beat(s, now, 3, None);
            beat(s, now, 4, None);
        }
        if !cut && now >= 100 && (now - 100).is_multiple_of(200) {
            beat(s, now, 1, Some(20));
            beat(s, now, 2, Some(20));
        }
    };
    let outs = run(&mut s, 0, 7990, |_, a| a != A, agents);
    assert_eq!(classes(&outs), [(Class::IpmcLost, Slot(1), 1500)]);
    assert!(kinds(&outs).contains(&"network_suspect"));
    let outs = run(&mut s, 8000, 12_000, |_, a| a != A, agents);
    assert!(
        classes(&outs).iter().all(|c| c.0 != Class::BladeLost),
        "{:?}",
        classes(&outs)
    );
}

/// After a suspicion ends, nothing is decided on silence for one heartbeat
/// timeout: the bus answers again at 5500 (B's first probe), A (silent all
/// along, its clock resumed at half a probe timeout) is decided at 6500, not
/// at 6250.
#[test]
fn test_no_silence_decision_for_a_heartbeat_timeout_after_a_suspicion() {
    let mut s = Shelf::new(config(true)).unwrap();
    let outs = run(&mut s, 0, 5000, |_, _| false, |_, _| {});
    assert!(decisions(&outs).is_empty());
    let outs = run(&mut s, 5010, 8000, |_, a| a == B, |_, _| {});
    let c = classes(&outs);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!((c[0].0, c[0].1), (Class::BladeLost, Slot(1)));
    assert_eq!(c[0].2, 6500, "{c:?}");
}

/// A watchdog of 0 ms, below the announced heartbeat interval, or beyond
/// the longest IPMI watchdog countdown is refused (no watchdog proof) and
/// alerted; a fitting one is kept.
#[test]
fn test_unfit_watchdog_announcement_is_refused() {
    // The default heartbeat timeout (1000 ms) covers three intervals of at most 333 ms.
    assert_eq!(crate::config::Timing::DEFAULT.heartbeat_timeout_ms, 1000);
    for (wd, interval, fits) in [
        (0, 300, false),
        (299, 300, false),
        (6_553_501, 300, false),
        (u32::MAX, 300, false),
        (300, 300, true),
        (6_553_500, 300, true),
        (3000, 333, true),
        // The margin (one heartbeat timeout) does not cover the agent's two intervals of
        // petting after its latest proof of being heard, or the interval is unknown.
        (3000, 334, false),
        (3000, 0, false),
    ] {
        let mut s = Shelf::new(config(true)).unwrap();
        s.on_platform_event(0, 1, &critical_temp(A));
        let hello = AgentInput::Hello {
            heartbeat_interval_ms: interval,
            watchdog_ms: Some(wd),
            live_migration: false,
        };
        s.on_agent(0, Slot(1), hello.clone());
        let a = alerts(&drain(&mut s));
        let kept = s.blades[s.index_of_slot(Slot(1)).unwrap()]
            .evidence
            .watchdog_ms;
        if fits {
            assert_eq!(kept, Some(wd));
            assert!(a.iter().all(|a| a.kind() != "watchdog_refused"), "{a:?}");
        } else {
            assert_eq!(kept, None, "{wd}");
            let refused: std::vec::Vec<_> = a
                .iter()
                .filter(|a| a.kind() == "watchdog_refused")
                .collect();
            assert_eq!(
                refused,
                [&Alert::WatchdogRefused {
                    slot: Slot(1),
                    watchdog_ms: wd,
                    interval_ms: interval,
                    timeout_ms: 1000,
                }]
            );
            // Once per registration.
            s.on_agent(0, Slot(1), hello);
            assert!(alerts(&drain(&mut s)).is_empty());
        }
    }
    // A refused watchdog of 0 ms gives no proof, however long A is silent.
    let mut s = Shelf::new(config(true)).unwrap();
    s.on_platform_event(0, 1, &critical_temp(A));
    s.on_agent(0, Slot(1), hello(Some(0), false));
    s.on_agent(0, Slot(2), HELLO);
    let outs = run(
        &mut s,
        0,
        20_000,
        |_, a| a == B,
        |s, now| {
            if now.is_multiple_of(200) {
                beat(s, now, 2, Some(now as u32));
            }
        },
    );
    assert!(kinds(&outs).contains(&"fence_unconfirmed"));
    assert!(failovers(&outs).is_empty(), "{:?}", failovers(&outs));
}

/// Registrations alternating their announced interval raise
/// `heartbeat_timing` once per registration episode, again once after the
/// blade was fenced and registers again.
#[test]
fn test_heartbeat_timing_once_per_registration_episode() {
    let mut s = shelf();
    let hello = |i: u64| AgentInput::Hello {
        heartbeat_interval_ms: 400 + (i % 2) as u32,
        watchdog_ms: None,
        live_migration: false,
    };
    let mut n = 0;
    for i in 0..1000u64 {
        s.on_agent(i, Slot(1), hello(i));
        n += alerts(&drain(&mut s)).len();
    }
    assert_eq!(n, 1);
    // Fenced: its agent must register again, a new episode.
    let _ = one_decision(&mut s, 1000, 1, &critical_temp(A));
    assert!(!s.blade(Slot(1)).unwrap().agent_registered);
    let mut n = 0;
    for i in 1001..1100u64 {
        s.on_agent(i, Slot(1), hello(i));
        n += alerts(&drain(&mut s))
            .iter()
            .filter(|a| a.kind() == "heartbeat_timing")
            .count();
    }
    assert_eq!(n, 1);
}
