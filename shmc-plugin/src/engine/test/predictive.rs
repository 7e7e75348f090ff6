//! Predictive mode: holds, `blade_degraded`, supersession.

use super::*;

#[test]
fn test_degraded_held_past_hold_migrates_without_fence() {
    let mut s = predictive_shelf(true);
    assert_eq!(
        s.on_platform_event(100, 1, &unc(A, 3, true)),
        EventOutcome::Recorded(Record::NonCritical)
    );
    assert!(decisions(&drain(&mut s)).is_empty());
    assert_eq!(s.pending_holds(), 1);
    s.poll(100 + HOLD - 1);
    assert!(
        decisions(&drain(&mut s)).is_empty(),
        "not before the hold time"
    );
    s.poll(100 + HOLD);
    let outs = drain(&mut s);
    let d = decisions(&outs);
    assert_eq!(d.len(), 1, "{outs:?}");
    assert_eq!(d[0].class, Class::BladeDegraded);
    assert_eq!(d[0].t_ms, 100, "t_ms is the assertion's time");
    assert_eq!(actions(&d[0]), ["evacuate", "alert"]);
    assert_eq!(
        orders(&outs),
        [(
            Slot(1),
            Order::Migrate {
                to_slot: Slot(2),
                incident: d[0].incident
            }
        )]
    );
    assert!(requests(&outs).is_empty(), "never fenced");
    // While it migrates, more warnings add no decision.
    assert_eq!(
        s.on_platform_event(1200, 2, &ecc_limit(A)),
        EventOutcome::Suppressed(Class::BladeDegraded)
    );
    // The blade's own agent reports: the incident ends with an alert, still no fence.
    s.on_agent(
        1500,
        Slot(1),
        AgentInput::AllReported {
            failed_slot: Slot(1),
            incident: d[0].incident,
        },
    );
    let outs = drain(&mut s);
    assert!(requests(&outs).is_empty());
    assert!(orders(&outs).is_empty(), "no failover order");
    assert_eq!(
        alerts(&outs),
        [Alert::BladeDegraded {
            slot: Slot(1),
            incident: d[0].incident,
            evacuated: true
        }]
    );
    assert!(s.blade(Slot(1)).unwrap().incident.is_none());
    assert_eq!(s.counters().fences_confirmed, 0);
    assert_eq!(s.counters().failovers, 0);
}

#[test]
fn test_degraded_deasserted_within_hold_cancels() {
    let mut s = predictive_shelf(true);
    s.on_platform_event(100, 1, &unc(A, 3, true));
    // A deassertion of another sensor does not cancel it.
    s.on_platform_event(500, 2, &unc(A, 4, false));
    assert_eq!(s.pending_holds(), 1);
    s.on_platform_event(900, 3, &unc(A, 3, false));
    assert_eq!(s.pending_holds(), 0);
    s.poll(100 + 10 * HOLD);
    s.finish_holds(100 + 10 * HOLD);
    let outs = drain(&mut s);
    assert!(decisions(&outs).is_empty(), "{outs:?}");
    assert!(orders(&outs).is_empty());
    assert_eq!(s.counters().degraded_cancelled, 1);
}

#[test]
fn test_degraded_off_by_default_records_only() {
    let mut s = predictive_shelf(false);
    s.on_platform_event(100, 1, &unc(A, 3, true));
    assert_eq!(
        s.on_platform_event(150, 2, &ecc_limit(A)),
        EventOutcome::Recorded(Record::OtherOffset)
    );
    s.poll(100 + 10 * HOLD);
    s.finish_holds(100 + 10 * HOLD);
    let outs = drain(&mut s);
    assert!(decisions(&outs).is_empty(), "{outs:?}");
    assert!(orders(&outs).is_empty());
    assert_eq!(s.pending_holds(), 0);
    assert!(!ShelfConfig::new(IpmbAddr(0x20)).predictive.enabled);
}

#[test]
fn test_ecc_limit_is_immediate() {
    let mut s = predictive_shelf(true);
    let (d, outs) = one_decision(&mut s, 50, 1, &ecc_limit(B));
    assert_eq!(
        (d.class, d.slot, d.t_ms),
        (Class::BladeDegraded, Slot(2), 50)
    );
    assert_eq!(
        orders(&outs),
        [(
            Slot(2),
            Order::Migrate {
                to_slot: Slot(1),
                incident: d.incident
            }
        )]
    );
}

#[test]
fn test_degraded_with_partner_in_trouble_alerts_only() {
    let mut s = predictive_shelf(true);
    // Partner (slot 2) fails first.
    one_decision(&mut s, 10, 1, &critical_temp(B));
    let (d, outs) = one_decision(&mut s, 20, 2, &ecc_limit(A));
    assert_eq!(d.class, Class::BladeDegraded);
    assert_eq!(actions(&d), ["alert"]);
    assert!(orders(&outs).is_empty(), "{outs:?}");
    assert!(alerts(&outs).contains(&Alert::BladeDegraded {
        slot: Slot(1),
        incident: d.incident,
        evacuated: false
    }));
    assert!(s.blade(Slot(1)).unwrap().incident.is_none());
}

#[test]
fn test_degraded_timeout_closes_without_fence() {
    let mut s = predictive_shelf(true);
    let (d, _) = one_decision(&mut s, 0, 1, &ecc_limit(A));
    let t = s.config().timing.evacuation_timeout_ms;
    s.poll(t);
    let outs = drain(&mut s);
    assert!(requests(&outs).is_empty(), "never fenced: {outs:?}");
    assert_eq!(
        alerts(&outs),
        [Alert::BladeDegraded {
            slot: Slot(1),
            incident: d.incident,
            evacuated: false
        }]
    );
    assert!(s.blade(Slot(1)).unwrap().incident.is_none());
}

#[test]
fn test_critical_failure_supersedes_degraded() {
    let mut s = predictive_shelf(true);
    s.on_platform_event(0, 1, &unc(A, 3, true));
    s.on_platform_event(5, 2, &unc(A, 5, true));
    let (d1, _) = one_decision(&mut s, 10, 3, &ecc_limit(A));
    assert_eq!(d1.class, Class::BladeDegraded);
    let (d2, outs) = one_decision(&mut s, 20, 4, &critical_temp(A));
    assert_eq!(d2.class, Class::BladeHardware);
    assert_eq!(
        s.pending_holds(),
        0,
        "holds of a fenced blade are forgotten"
    );
    let reqs = requests(&outs);
    assert_eq!(reqs[0].2, cmd::CMD_SET_FRU_ACTIVATION, "the fence starts");
    // A late migration report of the superseded decision changes nothing.
    s.on_agent(
        30,
        Slot(1),
        AgentInput::AllReported {
            failed_slot: Slot(1),
            incident: d1.incident,
        },
    );
    assert_eq!(s.blade(Slot(1)).unwrap().incident.unwrap().id, d2.incident);
    s.on_platform_event(40, 5, &hs(A, 1, Some(0x14)));
    let o = orders(&drain(&mut s));
    assert!(
        o.iter().any(|(slot, o)| *slot == Slot(2) && is_failover(o)),
        "{o:?}"
    );
}

#[test]
fn test_hold_table_overflow_is_counted() {
    let mut s = predictive_shelf(true);
    let n = crate::capacity::MAX_DEGRADED_HOLDS;
    for i in 0..=n {
        // Distinct sensor numbers, distinct rqSeq (no duplicate suppression).
        s.on_platform_event(
            1,
            (i % 64) as u8,
            &unc(if i % 2 == 0 { A } else { B }, i as u8, true),
        );
    }
    assert_eq!(s.pending_holds(), n);
    assert_eq!(s.counters().degraded_holds_dropped, 1);
    let outs = drain(&mut s);
    assert!(alerts(&outs).contains(&Alert::TableFull {
        table: Table::DegradedHolds
    }));
    // The end of input makes every hold due; one decision per blade (then suppressed).
    s.finish_holds(2);
    let d = decisions(&drain(&mut s));
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d
        .iter()
        .all(|d| d.class == Class::BladeDegraded && d.t_ms == 1));
}
