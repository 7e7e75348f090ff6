//! Decisions: classifier rows through the shelf, extraction, link conditions, duplicates.

use super::*;

#[test]
fn test_extraction_evacuates_then_deactivates() {
    let mut s = shelf();
    let (d, outs) = one_decision(&mut s, 10, 1, &hs(A, 5, Some(0x24)));
    assert_eq!(d.class, Class::BladeExtraction);
    assert_eq!(actions(&d), ["evacuate", "deactivate"]);
    assert_eq!(
        orders(&outs),
        [(
            Slot(1),
            Order::Evacuate {
                to_slot: Slot(2),
                incident: d.incident
            }
        )]
    );
    assert!(
        requests(&outs).is_empty(),
        "no deactivation before the partner reports"
    );
    // A report quoting another decision is ignored.
    s.on_agent(
        20,
        Slot(1),
        AgentInput::AllReported {
            failed_slot: Slot(1),
            incident: d.incident + 1,
        },
    );
    assert!(requests(&drain(&mut s)).is_empty());
    // The evacuating blade's agent reports when its guests have moved.
    s.on_agent(
        30,
        Slot(1),
        AgentInput::AllReported {
            failed_slot: Slot(1),
            incident: d.incident,
        },
    );
    let outs = drain(&mut s);
    let reqs = requests(&outs);
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        (reqs[0].2, reqs[0].4.clone()),
        (cmd::CMD_SET_FRU_ACTIVATION, vec![0, 0, 0])
    );
    assert_eq!(
        s.on_platform_event(40, 2, &hs(A, 6, Some(0x15))),
        EventOutcome::Recorded(Record::Transition)
    );
    s.on_platform_event(60, 3, &hs(A, 1, Some(0x16)));
    let outs = drain(&mut s);
    // Inactive: the partner starts what the evacuation stopped (migrated guests are skipped there).
    let o = orders(&outs);
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].0, Slot(2));
    assert!(matches!(
        o[0].1,
        Order::RestartPartnerGuests {
            failed_slot: Slot(1),
            fence: Confirmation::HotSwapM1,
            ..
        }
    ));
    s.on_agent(
        70,
        Slot(2),
        AgentInput::AllReported {
            failed_slot: Slot(1),
            incident: d.incident,
        },
    );
    assert!(matches!(
        s.blade(Slot(1)).unwrap().incident.unwrap().state,
        IncidentState::Recovered { .. }
    ));
    s.on_platform_event(90, 4, &hs(A, 4, Some(0x03)));
    assert!(s.blade(Slot(1)).unwrap().incident.is_none());
}

#[test]
fn test_evacuation_report_from_partner_or_self_only() {
    let mut s = Shelf::new({
        let mut c = config(false);
        c.blades
            .push(BladeConfig {
                slot: Slot(3),
                ipmb_address: IpmbAddr(0x86),
                partner: Slot(4),
                hot_swap_sensor: None,
            })
            .unwrap();
        c.blades
            .push(BladeConfig {
                slot: Slot(4),
                ipmb_address: IpmbAddr(0x88),
                partner: Slot(3),
                hot_swap_sensor: None,
            })
            .unwrap();
        c
    })
    .unwrap();
    let (d, _) = one_decision(&mut s, 0, 1, &hs(A, 5, Some(0x24)));
    let report = AgentInput::AllReported {
        failed_slot: Slot(1),
        incident: d.incident,
    };
    s.on_agent(10, Slot(3), report.clone());
    assert!(
        requests(&drain(&mut s)).is_empty(),
        "slot 3 is not involved"
    );
    assert_eq!(s.counters().agent_ignored, 1);
    s.on_agent(20, Slot(2), report);
    assert_eq!(requests(&drain(&mut s))[0].2, cmd::CMD_SET_FRU_ACTIVATION);
}

#[test]
fn test_extraction_timeout_deactivates_and_fails_over_the_rest() {
    let mut s = shelf();
    one_decision(&mut s, 0, 1, &hs(A, 5, Some(0x24)));
    s.poll(119_999);
    assert!(requests(&drain(&mut s)).is_empty());
    s.poll(120_000);
    let outs = drain(&mut s);
    assert!(alerts(&outs).contains(&Alert::EvacuationTimeout {
        slot: Slot(1),
        incident: 1
    }));
    assert_eq!(requests(&outs)[0].2, cmd::CMD_SET_FRU_ACTIVATION);
    s.on_platform_event(120_100, 2, &hs(A, 1, Some(0x16)));
    assert!(is_failover(&orders(&drain(&mut s))[0].1));
}

#[test]
fn test_every_hardware_and_os_row() {
    let rows: [(u8, u8, u8, Class); 14] = [
        (0x01, 0x01, 0x02, Class::BladeHardware),
        (0x02, 0x01, 0x04, Class::BladeHardware),
        (0x01, 0x01, 0x09, Class::BladeHardware),
        (0x04, 0x01, 0x0B, Class::BladeHardware),
        (0x07, 0x6F, 0, Class::BladeHardware),
        (0x07, 0x6F, 1, Class::BladeHardware),
        (0x0C, 0x6F, 1, Class::BladeHardware),
        (0x09, 0x6F, 4, Class::BladeHardware),
        (0x09, 0x6F, 6, Class::BladeHardware),
        (0x23, 0x6F, 0, Class::HostOs),
        (0x23, 0x6F, 3, Class::HostOs),
        (0x20, 0x6F, 0, Class::HostOs),
        (0x20, 0x6F, 1, Class::HostOs),
        (0x23, 0x6F, 2, Class::HostOs),
    ];
    for (st, rt, offset, class) in rows {
        let mut s = shelf();
        let (d, outs) = one_decision(&mut s, 7, 1, &ev(B, st, rt, [offset, 0xFF, 0xFF]));
        assert_eq!(d.class, class, "type {st:#x} offset {offset}");
        assert_eq!((d.slot, d.partner_slot), (Slot(2), Slot(1)));
        assert_eq!(actions(&d), ["fence_ipmb", "failover_to_partner"]);
        assert_eq!(requests(&outs)[0].0, B);
    }
}

#[test]
fn test_record_only_rows() {
    let mut s = shelf();
    for (i, e) in [
        ev(A, 0x01, 0x01, [0x57, 80, 75]),     // UNC going high
        ev(A, 0x01, 0x01, [0x50, 80, 75]),     // LNC going low
        ev(A, 0x01, 0x81, [0x59, 80, 75]),     // deassertion of UC going high
        ev(A, 0x0C, 0x6F, [0x00, 0xFF, 0xFF]), // correctable ECC
        ev(A, 0x23, 0x6F, [0x08, 0xFF, 0xFF]), // watchdog pre-timeout interrupt
        ev(A, 0xF0, 0x6F, [0xA7, 0x04, 0x01]), // FRU 1 lost
        ev(A, 0xF1, 0x6F, [0x03, 0xFF, 0xFF]), // both links enabled
        ev(A, 0x42, 0x6F, [0x00, 0xFF, 0xFF]), // unknown sensor type
    ]
    .iter()
    .enumerate()
    {
        assert!(
            matches!(
                s.on_platform_event(10 * i as u64, i as u8, e),
                EventOutcome::Recorded(_)
            ),
            "{e:?}"
        );
    }
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.counters().recorded, 8);
    assert_eq!(s.counters().decisions, 0);
}

#[test]
fn test_ipmb_link_is_alert_only() {
    let mut s = shelf();
    let (d, outs) = one_decision(&mut s, 0, 1, &ev(A, 0xF1, 0x6F, [0x01, 0xFF, 0xFF]));
    assert_eq!(d.class, Class::IpmbLinkDegraded);
    assert_eq!(actions(&d), ["alert"]);
    assert!(requests(&outs).is_empty() && orders(&outs).is_empty());
    assert_eq!(
        alerts(&outs),
        [Alert::IpmbLink {
            slot: Slot(1),
            both: false
        }]
    );
    // The same condition again (new rqSeq) is no new decision.
    assert_eq!(
        s.on_platform_event(10, 2, &ev(A, 0xF1, 0x6F, [0x02, 0xFF, 0xFF])),
        EventOutcome::Repeated(Class::IpmbLinkDegraded)
    );
    let (d, outs) = one_decision(&mut s, 20, 3, &ev(A, 0xF1, 0x6F, [0x00, 0xFF, 0xFF]));
    assert_eq!(d.class, Class::IpmbLinkLost);
    assert!(requests(&outs).is_empty(), "never fence on IPMB loss alone");
    // Link alerts open no incident: a real failure still decides.
    let (d, _) = one_decision(&mut s, 30, 4, &critical_temp(A));
    assert_eq!(d.class, Class::BladeHardware);
}

#[test]
fn test_one_decision_per_incident() {
    let mut s = shelf();
    one_decision(&mut s, 0, 1, &critical_temp(A));
    for (i, e) in [
        hs(A, 7, Some(0x64)),
        ev(A, 0x23, 0x6F, [0, 0xFF, 0xFF]),
        ev(A, 0x07, 0x6F, [0, 0xFF, 0xFF]),
        ev(A, 0xF1, 0x6F, [0, 0xFF, 0xFF]),
    ]
    .iter()
    .enumerate()
    {
        assert!(matches!(
            s.on_platform_event(100 + i as u64, 10 + i as u8, e),
            EventOutcome::Suppressed(_)
        ));
    }
    s.on_agent(200, Slot(1), AgentInput::GuestCrashed { name: name("vm1") });
    assert!(decisions(&drain(&mut s)).is_empty());
    assert_eq!(s.counters().decisions, 1);
    assert_eq!(s.counters().suppressed, 5);
    // The other blade is independent.
    one_decision(&mut s, 300, 1, &critical_temp(B));
}

#[test]
fn test_retransmits_within_and_after_window() {
    let mut s = shelf();
    let e = ev(A, 0x01, 0x01, [0x57, 80, 75]);
    assert!(matches!(
        s.on_platform_event(1000, 7, &e),
        EventOutcome::Recorded(_)
    ));
    assert_eq!(s.on_platform_event(2000, 7, &e), EventOutcome::Duplicate);
    assert_eq!(s.on_platform_event(5999, 7, &e), EventOutcome::Duplicate);
    assert!(
        matches!(s.on_platform_event(5999, 8, &e), EventOutcome::Recorded(_)),
        "other rqSeq"
    );
    assert!(
        matches!(s.on_platform_event(6000, 7, &e), EventOutcome::Recorded(_)),
        "window over"
    );
    let c = s.counters();
    assert_eq!((c.events, c.duplicates), (3, 2));
    // A retransmitted failure decides once.
    one_decision(&mut s, 7000, 9, &critical_temp(B));
    assert_eq!(
        s.on_platform_event(7100, 9, &critical_temp(B)),
        EventOutcome::Duplicate
    );
    assert!(drain(&mut s).is_empty());
}

#[test]
fn test_unknown_generator_ignored_and_counted() {
    let mut s = shelf();
    assert_eq!(
        s.on_platform_event(0, 1, &critical_temp(IpmbAddr(0x90))),
        EventOutcome::UnknownGenerator
    );
    let outs = drain(&mut s);
    assert!(decisions(&outs).is_empty() && requests(&outs).is_empty());
    assert_eq!(
        alerts(&outs),
        [Alert::UnknownGenerator {
            address: IpmbAddr(0x90)
        }]
    );
    assert_eq!(
        s.on_platform_event(10, 2, &critical_temp(IpmbAddr(0x90))),
        EventOutcome::UnknownGenerator
    );
    assert!(drain(&mut s).is_empty(), "one alert per address");
    assert_eq!(s.counters().unknown_generator, 2);
}
