//! Failover reports and unprotected guests.

use super::*;

/// A's critical temperature, its self-fence confirmed: B has been ordered to restart A's
/// guests. The shelf and the decision.
fn failover_ordered() -> (Shelf, Decision) {
    let mut s = shelf();
    s.on_agent(0, Slot(1), HELLO);
    s.on_platform_event(10, 1, &critical_temp(A));
    let d = decisions(&drain(&mut s)).remove(0);
    s.on_agent(
        20,
        Slot(1),
        AgentInput::FenceSelfConfirmed {
            incident: d.incident,
        },
    );
    assert!(is_failover(&orders(&drain(&mut s))[0].1));
    (s, d)
}

#[test]
fn test_guests_not_restarted_raise_an_alert() {
    let (mut s, d) = failover_ordered();
    for (n, started) in [("g1", true), ("g2", false)] {
        s.on_agent(
            30,
            Slot(2),
            AgentInput::GuestOutcome {
                failed_slot: Slot(1),
                name: name(n),
                started,
                partner_running: false,
            },
        );
    }
    s.on_agent(
        40,
        Slot(2),
        AgentInput::AllReported {
            failed_slot: Slot(1),
            incident: d.incident,
        },
    );
    let outs = drain(&mut s);
    assert_eq!(
        alerts(&outs),
        [Alert::GuestsNotRestarted {
            slot: Slot(1),
            incident: d.incident,
            not_started: guest_list(&["g2"], 0),
            started: 1,
            reported: true,
            partner_running: false,
        }],
        "the guest not started is named"
    );
    assert!(matches!(
        s.blade(Slot(1)).unwrap().incident.unwrap().state,
        IncidentState::Recovered { .. }
    ));
    // The report is settled: no late alert follows.
    s.poll(40 + s.config().timing.failover_report_timeout_ms);
    assert!(alerts(&drain(&mut s)).is_empty());
    assert_eq!(s.pending_reports().count(), 0);
}

/// The partner refuses a whole-blade failover because the failed blade's agent still reports
/// running guests: one alert names the guests and says why; nothing is retried, nothing is
/// started anywhere else.
#[test]
fn test_partner_running_refusal_is_alerted_and_not_retried() {
    let (mut s, d) = failover_ordered();
    for n in ["g1", "g2"] {
        s.on_agent(
            30,
            Slot(2),
            AgentInput::GuestOutcome {
                failed_slot: Slot(1),
                name: name(n),
                started: false,
                partner_running: true,
            },
        );
    }
    s.on_agent(
        40,
        Slot(2),
        AgentInput::AllReported {
            failed_slot: Slot(1),
            incident: d.incident,
        },
    );
    let outs = drain(&mut s);
    let alert = Alert::GuestsNotRestarted {
        slot: Slot(1),
        incident: d.incident,
        not_started: guest_list(&["g1", "g2"], 0),
        started: 0,
        reported: true,
        partner_running: true,
    };
    assert_eq!(alerts(&outs), std::slice::from_ref(&alert));
    let text = alert.to_string();
    assert!(
        text.contains("partner still reports running guests")
            && text.contains("g1")
            && text.contains("g2"),
        "{text}"
    );
    assert!(orders(&outs).is_empty(), "{outs:?}");
    // Nothing follows: no retry, no start elsewhere, no late alert.
    for t in [
        1_000,
        60_000,
        40 + s.config().timing.failover_report_timeout_ms + 1,
    ] {
        s.poll(t);
        let outs = drain(&mut s);
        assert!(orders(&outs).is_empty(), "at {t}: {outs:?}");
        assert!(alerts(&outs).is_empty(), "at {t}: {outs:?}");
    }
    assert_eq!(s.pending_reports().count(), 0);
}

#[test]
fn test_failover_report_overdue_names_what_is_known() {
    let mut s = shelf();
    let id = failed_over(&mut s, 10);
    let due = 10 + s.config().timing.failover_report_timeout_ms;
    outcome(&mut s, 20, Slot(2), "web", true);
    outcome(&mut s, 30, Slot(2), "db", false);
    // Slot 1's own agent does not start its guests elsewhere: not booked.
    outcome(&mut s, 31, Slot(1), "mail", false);
    s.poll(due - 1);
    assert!(alerts(&drain(&mut s)).is_empty());
    // The partner never sends its final report (a start that hung).
    s.poll(due);
    let not_reported = Alert::GuestsNotRestarted {
        slot: Slot(1),
        incident: id,
        not_started: guest_list(&["db"], 0),
        started: 1,
        reported: false,
        partner_running: false,
    };
    assert_eq!(alerts(&drain(&mut s)), std::slice::from_ref(&not_reported));
    assert!(not_reported.to_string().contains("db"), "{not_reported}");
    assert_eq!(s.counters().failover_reports_overdue, 1);
    // Once only.
    s.poll(due + 100_000);
    assert!(alerts(&drain(&mut s)).is_empty());
    assert_eq!(
        s.pending_reports().collect::<std::vec::Vec<_>>(),
        [(Slot(1), id, None, true)]
    );
    // A late final report is still heard: its word is final.
    outcome(&mut s, due + 200_000, Slot(2), "crm", false);
    s.on_agent(
        due + 200_001,
        Slot(2),
        AgentInput::AllReported {
            failed_slot: Slot(1),
            incident: id,
        },
    );
    assert_eq!(
        alerts(&drain(&mut s)),
        [Alert::GuestsNotRestarted {
            slot: Slot(1),
            incident: id,
            not_started: guest_list(&["db", "crm"], 0),
            started: 1,
            reported: true,
            partner_running: false,
        }]
    );
    assert!(matches!(
        s.blade(Slot(1)).unwrap().incident.unwrap().state,
        IncidentState::Recovered { .. }
    ));
    assert_eq!(s.pending_reports().count(), 0);
}

#[test]
fn test_failover_report_outlives_the_incident() {
    let mut s = shelf();
    let id = failed_over(&mut s, 0);
    // The blade is repaired and back in M4 before the partner reports.
    s.on_platform_event(5000, 2, &hs(A, 4, Some(0x03)));
    assert!(s.blade(Slot(1)).unwrap().incident.is_none());
    s.poll(s.config().timing.failover_report_timeout_ms);
    let a = alerts(&drain(&mut s));
    assert!(
        matches!(
            a.as_slice(),
            [Alert::GuestsNotRestarted { slot: Slot(1), incident, reported: false, .. }] if *incident == id
        ),
        "{a:?}"
    );
    // Its late report settles it without being counted as ignored.
    let ignored = s.counters().agent_ignored;
    s.on_agent(
        200_000,
        Slot(2),
        AgentInput::AllReported {
            failed_slot: Slot(1),
            incident: id,
        },
    );
    assert!(alerts(&drain(&mut s)).is_empty());
    assert_eq!(s.counters().agent_ignored, ignored);
    assert_eq!(s.pending_reports().count(), 0);
}

#[test]
fn test_guests_not_restarted_are_bounded() {
    let mut s = shelf();
    let id = failed_over(&mut s, 0);
    let names: std::vec::Vec<String> = (0..11).map(|i| format!("g{i}")).collect();
    for n in &names {
        outcome(&mut s, 10, Slot(2), n, false);
    }
    // Repeats are not counted twice; a guest started after all leaves the list.
    outcome(&mut s, 11, Slot(2), "g0", false);
    outcome(&mut s, 12, Slot(2), "g1", true);
    s.on_agent(
        20,
        Slot(2),
        AgentInput::AllReported {
            failed_slot: Slot(1),
            incident: id,
        },
    );
    let a = alerts(&drain(&mut s));
    let [Alert::GuestsNotRestarted {
        not_started,
        started: 1,
        reported: true,
        ..
    }] = a.as_slice()
    else {
        panic!("{a:?}")
    };
    let named: std::vec::Vec<&str> = not_started.names.iter().map(|n| n.as_str()).collect();
    // g0..g7 named, g8..g10 counted; g1 then left the list (started).
    assert_eq!(
        named,
        ["g0", "g2", "g3", "g4", "g5", "g6", "g7"],
        "{not_started}"
    );
    assert_eq!(not_started.more, 3);
    assert_eq!(not_started.len(), 10);
    assert!(
        a[0].to_string()
            .contains("could not start 10 of its guest(s): g0, g2, g3, g4, g5, g6, g7 and 3 more;"),
        "{}",
        a[0]
    );
}

#[test]
fn test_guest_failover_report_overdue_names_the_guest() {
    let mut s = shelf();
    let vm = name("vm1");
    for t in [0u64, 1, 2, 3] {
        s.on_agent(t, Slot(1), AgentInput::GuestCrashed { name: vm.clone() });
    }
    let d = decisions(&drain(&mut s)).pop().unwrap();
    s.on_agent(
        10,
        Slot(1),
        AgentInput::GuestDestroyed {
            name: vm.clone(),
            incident: d.incident,
        },
    );
    assert_eq!(orders(&drain(&mut s)).len(), 1);
    s.poll(10 + s.config().timing.failover_report_timeout_ms);
    assert_eq!(
        alerts(&drain(&mut s)),
        [Alert::GuestsNotRestarted {
            slot: Slot(1),
            incident: d.incident,
            not_started: guest_list(&["vm1"], 0),
            started: 0,
            reported: false,
            partner_running: false,
        }]
    );
}

#[test]
fn test_guest_failover_reported_started_raises_nothing() {
    let mut s = shelf();
    let vm = name("vm1");
    for t in [0u64, 1, 2, 3] {
        s.on_agent(t, Slot(1), AgentInput::GuestCrashed { name: vm.clone() });
    }
    let d = decisions(&drain(&mut s)).pop().unwrap();
    s.on_agent(
        10,
        Slot(1),
        AgentInput::GuestDestroyed {
            name: vm.clone(),
            incident: d.incident,
        },
    );
    outcome(&mut s, 20, Slot(2), "vm1", true);
    s.on_agent(
        30,
        Slot(2),
        AgentInput::AllReported {
            failed_slot: Slot(1),
            incident: d.incident,
        },
    );
    s.poll(1_000_000);
    assert!(alerts(&drain(&mut s)).is_empty());
    assert_eq!(s.counters().agent_ignored, 0);
}

#[test]
fn test_guest_unprotected_alerted_once_per_guest_and_reason() {
    let mut s = shelf();
    unprotected(&mut s, Slot(1), Slot(1), "db", UnprotectedReason::DiskPath);
    let a = alerts(&drain(&mut s));
    assert_eq!(
        a,
        [Alert::GuestUnprotected {
            owner_slot: Slot(1),
            reporter: Slot(1),
            reason: UnprotectedReason::DiskPath,
            name: ReportText::try_from("db").unwrap(),
            text: ReportText::try_from("/local/disk.img").unwrap(),
        }]
    );
    assert_eq!(a[0].kind(), "guest_unprotected");
    assert_eq!(
        a[0].to_string(),
        "guest \"db\" of slot 1 is not protected (disk_path: /local/disk.img, reported by slot 1); its partner cannot start it after a failure"
    );
    // The same again (from the owner or the partner): nothing new.
    unprotected(&mut s, Slot(1), Slot(1), "db", UnprotectedReason::DiskPath);
    unprotected(&mut s, Slot(2), Slot(1), "db", UnprotectedReason::DiskPath);
    assert!(alerts(&drain(&mut s)).is_empty());
    // Another reason, another guest: alerted.
    unprotected(
        &mut s,
        Slot(2),
        Slot(1),
        "db",
        UnprotectedReason::StoreFailed,
    );
    unprotected(
        &mut s,
        Slot(1),
        Slot(1),
        "web",
        UnprotectedReason::Unknown(42),
    );
    let a = alerts(&drain(&mut s));
    assert_eq!(a.len(), 2, "{a:?}");
    assert!(a[1].to_string().contains("(unknown 42"), "{}", a[1]);
    // A blade that is neither the owner nor its partner, an unknown owner: ignored.
    let mut s3 = Shelf::new({
        let mut c = config(false);
        for (slot, addr, partner) in [(3, 0x86, 4), (4, 0x88, 3)] {
            c.blades
                .push(BladeConfig {
                    slot: Slot(slot),
                    ipmb_address: IpmbAddr(addr),
                    partner: Slot(partner),
                    hot_swap_sensor: None,
                })
                .unwrap();
        }
        c
    })
    .unwrap();
    unprotected(&mut s3, Slot(3), Slot(1), "db", UnprotectedReason::DiskPath);
    unprotected(
        &mut s3,
        Slot(3),
        Slot(12),
        "db",
        UnprotectedReason::DiskPath,
    );
    assert!(drain(&mut s3).is_empty());
    assert_eq!(s3.counters().agent_ignored, 2);
    assert_eq!(s3.counters().unprotected_reports, 2);
    // The owner's agent registering again re-arms its guests.
    s.on_agent(10, Slot(1), HELLO);
    unprotected(&mut s, Slot(1), Slot(1), "db", UnprotectedReason::DiskPath);
    assert_eq!(alerts(&drain(&mut s)).len(), 1);
}

#[test]
fn test_guest_unprotected_table_full_forgets_the_oldest() {
    let mut s = shelf();
    let n = crate::capacity::MAX_UNPROTECTED;
    for i in 0..=n {
        unprotected(
            &mut s,
            Slot(1),
            Slot(1),
            &format!("g{i}"),
            UnprotectedReason::BadXml,
        );
    }
    let a = alerts(&drain(&mut s));
    // Every report alerted, plus one TableFull.
    assert_eq!(a.len(), n + 2, "{a:?}");
    assert_eq!(
        a.iter()
            .filter(|a| matches!(
                a,
                Alert::TableFull {
                    table: Table::Unprotected
                }
            ))
            .count(),
        1
    );
    assert_eq!(s.counters().unprotected_evictions, 1);
    // g0 was forgotten: alerted again; g1 still known.
    unprotected(&mut s, Slot(1), Slot(1), "g1", UnprotectedReason::BadXml);
    assert!(alerts(&drain(&mut s)).is_empty());
    unprotected(&mut s, Slot(1), Slot(1), "g0", UnprotectedReason::BadXml);
    assert_eq!(alerts(&drain(&mut s)).len(), 1);
}
