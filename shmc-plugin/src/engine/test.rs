//! Engine tests: every row of the classifier table through the shelf, the
//! incident machine, fencing escalation, the time-based rules, and the
//! safety invariant (no failover without a confirmed fence).

use super::*;
use crate::config::BladeConfig;
use crate::wire::cmd;

const A: u8 = 0x82;
const B: u8 = 0x84;

fn config(probing: bool) -> ShelfConfig {
    let mut c = ShelfConfig::new(0x20);
    c.probing = probing;
    for (slot, addr, partner) in [(1, A, 2), (2, B, 1)] {
        c.blades
            .push(BladeConfig {
                slot,
                ipmb_address: addr,
                partner,
                hot_swap_sensor: None,
            })
            .unwrap();
    }
    c
}

fn shelf() -> Shelf {
    Shelf::new(config(false)).unwrap()
}

fn ev(generator: u8, sensor_type: u8, dir_type: u8, ed: [u8; 3]) -> PlatformEvent {
    PlatformEvent::parse(
        generator,
        0,
        &[0x04, sensor_type, 0x05, dir_type, ed[0], ed[1], ed[2]],
    )
    .unwrap()
}

/// FRU 0 hot-swap event, cause 0 (or 0xFF form when `prev` is None).
fn hs(generator: u8, cur: u8, prev: Option<u8>) -> PlatformEvent {
    match prev {
        Some(p) => ev(generator, 0xF0, 0x6F, [0xA0 | cur, p, 0]),
        None => ev(generator, 0xF0, 0x6F, [0xA0 | cur, 0xFF, 0xFF]),
    }
}

fn critical_temp(generator: u8) -> PlatformEvent {
    ev(generator, 0x01, 0x01, [0x59, 95, 90])
}

fn drain(s: &mut Shelf) -> std::vec::Vec<Output> {
    std::iter::from_fn(|| s.pop_output()).collect()
}

fn decisions(outs: &[Output]) -> std::vec::Vec<Decision> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Decision(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

fn orders(outs: &[Output]) -> std::vec::Vec<(u8, Order)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Order { slot, order } => Some((*slot, order.clone())),
            _ => None,
        })
        .collect()
}

/// (dest, netFn, cmd, rqSeq, data) of every IPMB request.
fn requests(outs: &[Output]) -> std::vec::Vec<(u8, u8, u8, u8, std::vec::Vec<u8>)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Ipmb {
                dest,
                net_fn,
                cmd,
                rq_seq,
                data,
            } => Some((*dest, *net_fn, *cmd, *rq_seq, data.to_vec())),
            _ => None,
        })
        .collect()
}

fn alerts(outs: &[Output]) -> std::vec::Vec<Alert> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Alert(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

fn is_failover(o: &Order) -> bool {
    matches!(o, Order::RestartPartnerGuests { subset: None, .. })
}

fn name(s: &str) -> GuestName {
    GuestName::try_from(s).unwrap()
}

fn guest_list(names: &[&str], more: u16) -> GuestList {
    let mut l = GuestList::new();
    for n in names {
        l.add(&name(n));
    }
    l.more = more;
    l
}

fn actions(d: &Decision) -> std::vec::Vec<&'static str> {
    d.actions.iter().map(|a| a.as_str()).collect()
}

/// Feeds one event and returns the one decision it caused (panics otherwise).
fn one_decision(
    s: &mut Shelf,
    now: u64,
    seq: u8,
    e: &PlatformEvent,
) -> (Decision, std::vec::Vec<Output>) {
    let outcome = s.on_platform_event(now, seq, e);
    let outs = drain(s);
    let d = decisions(&outs);
    assert_eq!(d.len(), 1, "{outcome:?} {outs:?}");
    (d[0].clone(), outs)
}

#[test]
fn test_blade_lost_m7_fences_then_fails_over() {
    let mut s = shelf();
    let (d, outs) = one_decision(&mut s, 100, 1, &hs(A, 7, Some(0x44)));
    assert_eq!(d.class, Class::BladeLost);
    assert_eq!(
        (d.slot, d.ipmb_address, d.partner_slot, d.t_ms),
        (1, A, 2, 100)
    );
    assert_eq!(actions(&d), ["fence_ipmb", "failover_to_partner"]);
    let reqs = requests(&outs);
    assert_eq!(reqs.len(), 1);
    assert_eq!((reqs[0].0, reqs[0].2), (A, cmd::CMD_SET_FRU_ACTIVATION));
    assert_eq!(reqs[0].1, cmd::NETFN_GROUP_EXT);
    assert_eq!(reqs[0].4, [0x00, 0x00, 0x00], "deactivate FRU 0");
    assert!(
        orders(&outs).is_empty(),
        "no failover before the fence is confirmed"
    );
    assert!(matches!(
        s.incident(1).unwrap().state,
        IncidentState::Fencing {
            step: FenceStep::Deactivate,
            rounds: 0,
            self_fence: false,
            evacuated: false,
            ..
        }
    ));
    // The IPMC acknowledges and walks M7 -> ... -> M1 (here straight to M1).
    s.on_response(
        110,
        IpmbAddr(A),
        reqs[0].3,
        &Response::parse(
            cmd::NETFN_GROUP_EXT_RSP,
            cmd::CMD_SET_FRU_ACTIVATION,
            &[0, 0],
        ),
    );
    assert_eq!(s.counters().fence_rejected, 0);
    assert_eq!(
        s.on_platform_event(300, 2, &hs(A, 1, Some(0x17))),
        EventOutcome::Recorded(Record::Transition)
    );
    let outs = drain(&mut s);
    assert_eq!(
        orders(&outs),
        [(
            2,
            Order::RestartPartnerGuests {
                failed_slot: 1,
                incident: d.incident,
                fence: Confirmation::HotSwapM1,
                subset: None
            }
        )]
    );
    assert_eq!(
        s.blade(1).unwrap().incident.unwrap().phase,
        Phase::FailingOver
    );
    // A report quoting another decision is ignored.
    s.on_agent(
        390,
        2,
        AgentInput::AllReported {
            failed_slot: 1,
            incident: d.incident + 7,
        },
    );
    assert_eq!(
        s.blade(1).unwrap().incident.unwrap().phase,
        Phase::FailingOver
    );
    s.on_agent(
        400,
        2,
        AgentInput::AllReported {
            failed_slot: 1,
            incident: d.incident,
        },
    );
    assert_eq!(
        s.blade(1).unwrap().incident.unwrap().phase,
        Phase::Recovered
    );
    assert_eq!(
        s.incident(1).unwrap().state,
        IncidentState::Recovered {
            proof: Confirmation::HotSwapM1,
            self_fence: false,
            evacuated: false
        }
    );
    // Back in M4: the incident ends and a new failure decides again.
    assert_eq!(
        s.on_platform_event(900, 3, &hs(A, 4, Some(0x03))),
        EventOutcome::Recorded(Record::Transition)
    );
    assert!(s.blade(1).unwrap().incident.is_none());
    assert_eq!(s.incident(1), None);
    let (d2, _) = one_decision(&mut s, 1000, 4, &critical_temp(A));
    assert_eq!(d2.class, Class::BladeHardware);
    assert_eq!(d2.incident, d.incident + 1);
}

/// Answers every Get Sensor Reading among `outs` with hot-swap state `m`
/// (FRU 0 sensor reading byte 3: bit m); returns how many it answered.
fn answer_polls(s: &mut Shelf, now: u64, outs: &[Output], m: u8) -> usize {
    let mut n = 0;
    for (dest, net_fn, code, seq, _) in requests(outs) {
        if net_fn == cmd::NETFN_SENSOR_EVENT && code == cmd::CMD_GET_SENSOR_READING {
            s.on_ipmb_response(
                now,
                dest,
                seq,
                net_fn + 1,
                code,
                &[0x00, 0x00, 0xC0, 1 << m, 0x80],
            );
            n += 1;
        }
    }
    n
}

fn is_sensor_poll(r: &(u8, u8, u8, u8, std::vec::Vec<u8>)) -> bool {
    r.1 == cmd::NETFN_SENSOR_EVENT && r.2 == cmd::CMD_GET_SENSOR_READING
}

#[test]
fn test_m4_to_inactive_uncommanded_is_blade_lost() {
    for cur in [6u8, 1, 0] {
        let mut s = shelf();
        let (d, outs) = one_decision(&mut s, 5, 9, &hs(A, cur, Some(0x94)));
        assert_eq!(d.class, Class::BladeLost, "M4 -> M{cur}");
        // The event that opened the incident is no proof of its fence.
        assert!(
            !orders(&outs).iter().any(|(_, o)| is_failover(o)),
            "M4 -> M{cur}: failover on the event that opened the incident"
        );
        assert!(!s.blade(1).unwrap().incident.unwrap().confirmed);
        let reqs = requests(&outs);
        assert_eq!(reqs[0].2, cmd::CMD_SET_FRU_ACTIVATION, "the fence starts");
        if cur == 6 {
            assert!(
                !reqs.iter().any(is_sensor_poll),
                "M6: the sensor is polled at the interval"
            );
            continue;
        }
        // Last seen inactive: the hot-swap sensor is read at once, and that
        // reading (taken after the fence began) confirms.
        assert!(reqs.iter().any(is_sensor_poll), "{reqs:?}");
        assert_eq!(answer_polls(&mut s, 8, &outs, cur), 1);
        let o = orders(&drain(&mut s));
        let proof = if cur == 1 {
            Confirmation::HotSwapM1
        } else {
            Confirmation::HotSwapM0
        };
        assert_eq!(
            o,
            [(
                2,
                Order::RestartPartnerGuests {
                    failed_slot: 1,
                    incident: d.incident,
                    fence: proof,
                    subset: None
                }
            )]
        );
    }
}

#[test]
fn test_cached_inactive_state_is_no_fence_proof() {
    let mut s = shelf();
    // The operator deactivated the blade (seen on the bus), it went to M1 ...
    s.on_own_request(
        A,
        cmd::NETFN_GROUP_EXT,
        cmd::CMD_SET_FRU_ACTIVATION,
        &[0, 0, 0],
    );
    s.on_platform_event(0, 1, &hs(A, 6, Some(4)));
    s.on_platform_event(10, 2, &hs(A, 1, Some(6)));
    assert_eq!(s.blade(1).unwrap().m_state, Some(MState::M1));
    assert!(drain(&mut s).is_empty());
    // ... and was activated again, but M2..M4 were missed (a wrapped SEL, a
    // lost event): the shelf still believes M1 when the blade overheats.
    let (d, outs) = one_decision(&mut s, 60_000, 3, &critical_temp(A));
    assert_eq!(d.class, Class::BladeHardware);
    assert!(
        orders(&outs).is_empty(),
        "a cached M1 confirmed the fence: {outs:?}"
    );
    assert_eq!(s.counters().fences_confirmed, 0);
    // The sensor is read at once; the blade really runs (M4): no failover.
    assert!(requests(&outs).iter().any(is_sensor_poll));
    assert_eq!(answer_polls(&mut s, 60_005, &outs, 4), 1);
    assert!(orders(&drain(&mut s)).is_empty());
    assert_eq!(s.blade(1).unwrap().m_state, Some(MState::M4));
    // The fence goes on; a later reading of M1 is the proof.
    s.poll(60_050);
    let outs = drain(&mut s);
    assert_eq!(answer_polls(&mut s, 60_060, &outs, 1), 1);
    let o = orders(&drain(&mut s));
    assert_eq!(o.len(), 1);
    assert!(matches!(
        o[0].1,
        Order::RestartPartnerGuests {
            failed_slot: 1,
            fence: Confirmation::HotSwapM1,
            ..
        }
    ));
}

#[test]
fn test_restarted_plugin_mid_fence_fails_over_on_a_fresh_reading() {
    // A plugin restarted while a blade was being fenced sees M6 -> M1 without
    // having seen its start: blade_lost, and the event is not the proof.
    let mut s = shelf();
    let (d, outs) = one_decision(&mut s, 100, 1, &hs(A, 1, Some(0x36)));
    assert_eq!(d.class, Class::BladeLost);
    assert!(orders(&outs).is_empty(), "{outs:?}");
    // A hot-swap event received after the fence began is a proof too.
    s.on_platform_event(130, 2, &hs(A, 1, Some(0x16)));
    let o = orders(&drain(&mut s));
    assert_eq!(o.len(), 1, "{o:?}");
    assert!(is_failover(&o[0].1));
    assert_eq!(s.counters().stale_proofs, 1);
}

#[test]
fn test_hypervisor_fence_on_a_blade_last_seen_inactive_needs_a_reading() {
    let mut s = shelf();
    s.on_own_request(
        A,
        cmd::NETFN_GROUP_EXT,
        cmd::CMD_SET_FRU_ACTIVATION,
        &[0, 0, 0],
    );
    s.on_platform_event(0, 1, &hs(A, 1, Some(6)));
    s.on_agent(10, 1, AgentInput::Hello);
    s.on_agent(10, 1, AgentInput::HypervisorDown);
    s.poll(600);
    let d = decisions(&drain(&mut s));
    assert_eq!(d[0].class, Class::Hypervisor);
    // The agent never confirms; the IPMB fence joins in at the deadline and
    // must not take the cached M1 for a proof.
    s.poll(2600);
    let outs = drain(&mut s);
    assert!(orders(&outs).is_empty(), "{outs:?}");
    assert!(requests(&outs).iter().any(is_sensor_poll));
    assert_eq!(answer_polls(&mut s, 2610, &outs, 1), 1);
    assert!(is_failover(&orders(&drain(&mut s))[0].1));
}

#[test]
fn test_m4_to_m6_commanded_by_us_is_no_new_failure() {
    let mut s = shelf();
    let (d, outs) = one_decision(&mut s, 0, 1, &critical_temp(A));
    assert_eq!(d.class, Class::BladeHardware);
    assert_eq!(requests(&outs).len(), 1);
    assert!(s.blade(1).unwrap().commanded);
    assert_eq!(
        s.on_platform_event(50, 2, &hs(A, 6, Some(0x14))),
        EventOutcome::Recorded(Record::Commanded)
    );
    assert!(orders(&drain(&mut s)).is_empty());
    assert_eq!(
        s.on_platform_event(80, 3, &hs(A, 1, Some(0x16))),
        EventOutcome::Recorded(Record::Transition)
    );
    let outs = drain(&mut s);
    assert_eq!(orders(&outs).len(), 1);
    assert!(is_failover(&orders(&outs)[0].1));
    assert_eq!(s.counters().decisions, 1);
}

#[test]
fn test_deactivation_sent_by_the_shelf_manager_is_commanded() {
    let mut s = shelf();
    // Not a deactivation: activation, other FRU, another blade.
    s.on_own_request(
        A,
        cmd::NETFN_GROUP_EXT,
        cmd::CMD_SET_FRU_ACTIVATION,
        &[0, 0, 1],
    );
    s.on_own_request(
        A,
        cmd::NETFN_GROUP_EXT,
        cmd::CMD_SET_FRU_ACTIVATION,
        &[0, 1, 0],
    );
    s.on_own_request(
        B,
        cmd::NETFN_GROUP_EXT,
        cmd::CMD_SET_FRU_ACTIVATION,
        &[0, 0, 0],
    );
    assert!(!s.blade(1).unwrap().commanded);
    s.on_own_request(
        A,
        cmd::NETFN_GROUP_EXT,
        cmd::CMD_SET_FRU_ACTIVATION,
        &[0, 0, 0],
    );
    assert_eq!(
        s.on_platform_event(10, 1, &hs(A, 6, Some(0x14))),
        EventOutcome::Recorded(Record::Commanded)
    );
    s.on_platform_event(20, 2, &hs(A, 1, Some(0x16)));
    assert!(drain(&mut s).is_empty());
    // Back in M4: the next uncommanded deactivation is a failure again.
    s.on_platform_event(30, 3, &hs(A, 4, Some(0x03)));
    assert!(!s.blade(1).unwrap().commanded);
    let (d, _) = one_decision(&mut s, 40, 4, &hs(A, 6, Some(0x94)));
    assert_eq!(d.class, Class::BladeLost);
}

#[test]
fn test_extraction_evacuates_then_deactivates() {
    let mut s = shelf();
    let (d, outs) = one_decision(&mut s, 10, 1, &hs(A, 5, Some(0x24)));
    assert_eq!(d.class, Class::BladeExtraction);
    assert_eq!(actions(&d), ["evacuate", "deactivate"]);
    assert_eq!(
        orders(&outs),
        [(
            1,
            Order::Evacuate {
                to_slot: 2,
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
        1,
        AgentInput::AllReported {
            failed_slot: 1,
            incident: d.incident + 1,
        },
    );
    assert!(requests(&drain(&mut s)).is_empty());
    // The evacuating blade's agent reports when its guests have moved.
    s.on_agent(
        30,
        1,
        AgentInput::AllReported {
            failed_slot: 1,
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
    assert_eq!(o[0].0, 2);
    assert!(matches!(
        o[0].1,
        Order::RestartPartnerGuests {
            failed_slot: 1,
            fence: Confirmation::HotSwapM1,
            ..
        }
    ));
    s.on_agent(
        70,
        2,
        AgentInput::AllReported {
            failed_slot: 1,
            incident: d.incident,
        },
    );
    assert_eq!(
        s.blade(1).unwrap().incident.unwrap().phase,
        Phase::Recovered
    );
    s.on_platform_event(90, 4, &hs(A, 4, Some(0x03)));
    assert!(s.blade(1).unwrap().incident.is_none());
}

#[test]
fn test_evacuation_report_from_partner_or_self_only() {
    let mut s = Shelf::new({
        let mut c = config(false);
        c.blades
            .push(BladeConfig {
                slot: 3,
                ipmb_address: 0x86,
                partner: 4,
                hot_swap_sensor: None,
            })
            .unwrap();
        c.blades
            .push(BladeConfig {
                slot: 4,
                ipmb_address: 0x88,
                partner: 3,
                hot_swap_sensor: None,
            })
            .unwrap();
        c
    })
    .unwrap();
    let (d, _) = one_decision(&mut s, 0, 1, &hs(A, 5, Some(0x24)));
    let report = AgentInput::AllReported {
        failed_slot: 1,
        incident: d.incident,
    };
    s.on_agent(10, 3, report.clone());
    assert!(
        requests(&drain(&mut s)).is_empty(),
        "slot 3 is not involved"
    );
    assert_eq!(s.counters().agent_ignored, 1);
    s.on_agent(20, 2, report);
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
        slot: 1,
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
        assert_eq!((d.slot, d.partner_slot), (2, 1));
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
            slot: 1,
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
    s.on_agent(200, 1, AgentInput::GuestCrashed { name: name("vm1") });
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
        s.on_platform_event(0, 1, &critical_temp(0x90)),
        EventOutcome::UnknownGenerator
    );
    let outs = drain(&mut s);
    assert!(decisions(&outs).is_empty() && requests(&outs).is_empty());
    assert_eq!(alerts(&outs), [Alert::UnknownGenerator { address: 0x90 }]);
    assert_eq!(
        s.on_platform_event(10, 2, &critical_temp(0x90)),
        EventOutcome::UnknownGenerator
    );
    assert!(drain(&mut s).is_empty(), "one alert per address");
    assert_eq!(s.counters().unknown_generator, 2);
}

/// An IPMC that acknowledges every fence request and keeps reporting M4.
fn stubborn_ipmc(s: &mut Shelf, now: u64, outs: &[Output]) -> std::vec::Vec<u8> {
    let mut cmds = std::vec::Vec::new();
    for (dest, net_fn, code, seq, _) in requests(outs) {
        if net_fn == cmd::NETFN_SENSOR_EVENT && code == cmd::CMD_GET_SENSOR_READING {
            s.on_ipmb_response(
                now,
                dest,
                seq,
                net_fn + 1,
                code,
                &[0x00, 0x00, 0xC0, 0x10, 0x80],
            );
        } else {
            cmds.push(code);
            s.on_ipmb_response(now, dest, seq, net_fn + 1, code, &[0x00, 0x00]);
        }
    }
    cmds
}

#[test]
fn test_unconfirmed_fence_escalates_and_never_fails_over() {
    let mut s = shelf();
    let (_, outs) = one_decision(&mut s, 0, 1, &critical_temp(A));
    let mut steps = stubborn_ipmc(&mut s, 0, &outs);
    let mut all_alerts = std::vec::Vec::new();
    let mut now = 0;
    while now < 20_000 {
        now += 10;
        s.poll(now);
        // The partner even claims to be done: that must not matter.
        if now == 5000 {
            s.on_agent(
                now,
                2,
                AgentInput::AllReported {
                    failed_slot: 1,
                    incident: 1,
                },
            );
            s.on_agent(now, 1, AgentInput::FenceSelfConfirmed { incident: 1 });
        }
        let outs = drain(&mut s);
        let sent = orders(&outs);
        assert!(
            sent.is_empty(),
            "orders {sent:?} while the fence is unconfirmed"
        );
        all_alerts.extend(alerts(&outs));
        steps.extend(stubborn_ipmc(&mut s, now, &outs));
    }
    use cmd::{
        CMD_FRU_CONTROL as RESET, CMD_SET_FRU_ACTIVATION as DEACT, CMD_SET_POWER_LEVEL as OFF,
    };
    assert_eq!(
        steps,
        [DEACT, RESET, OFF, DEACT, RESET, OFF, DEACT, RESET, OFF, DEACT, RESET]
    );
    assert_eq!(
        all_alerts,
        [
            Alert::FenceUnconfirmed {
                slot: 1,
                incident: 1,
                rounds: 1
            },
            Alert::FenceUnconfirmed {
                slot: 1,
                incident: 1,
                rounds: 2
            },
            Alert::FenceUnconfirmed {
                slot: 1,
                incident: 1,
                rounds: 3
            },
        ]
    );
    assert_eq!(s.counters().failovers, 0);
    assert!(!s.blade(1).unwrap().incident.unwrap().confirmed);
}

#[test]
fn test_fence_steps_carry_picmg_data() {
    let mut s = shelf();
    let (_, outs) = one_decision(&mut s, 0, 1, &critical_temp(A));
    assert_eq!(requests(&outs)[0].4, cmd::set_fru_activation(0, false));
    s.poll(2000);
    let r = requests(&drain(&mut s));
    let reset = r.iter().find(|r| r.2 == cmd::CMD_FRU_CONTROL).unwrap();
    assert_eq!(
        reset.4,
        cmd::fru_control(0, cmd::FruControlOption::ColdReset)
    );
    s.poll(4000);
    let r = requests(&drain(&mut s));
    let off = r.iter().find(|r| r.2 == cmd::CMD_SET_POWER_LEVEL).unwrap();
    assert_eq!(off.4, [0x00, 0x00, 0x00, 0x00]);
}

#[test]
fn test_confirmation_by_get_sensor_reading() {
    let mut s = shelf();
    // The hot-swap sensor number is learned from the blade's events.
    s.on_platform_event(0, 1, &ev(A, 0xF0, 0x6F, [0xA4, 0x03, 0x00]));
    let (d, _) = one_decision(&mut s, 10, 2, &critical_temp(A));
    s.poll(59);
    assert!(
        requests(&drain(&mut s)).is_empty(),
        "first poll after 50 ms"
    );
    s.poll(60);
    let outs = drain(&mut s);
    let r = requests(&outs);
    assert_eq!(r.len(), 1);
    let (dest, net_fn, code, seq, data) = r[0].clone();
    assert_eq!(
        (dest, net_fn, code, data),
        (
            A,
            cmd::NETFN_SENSOR_EVENT,
            cmd::CMD_GET_SENSOR_READING,
            vec![0x05]
        )
    );
    // Still M6: keep polling.
    s.on_ipmb_response(
        65,
        A,
        seq,
        net_fn + 1,
        code,
        &[0x00, 0x00, 0xC0, 0x40, 0x80],
    );
    assert!(orders(&drain(&mut s)).is_empty());
    assert_eq!(s.blade(1).unwrap().m_state, Some(MState::M6));
    s.poll(110);
    let r = requests(&drain(&mut s));
    let seq = r[0].3;
    // A response with the wrong rqSeq confirms nothing.
    s.on_ipmb_response(
        115,
        A,
        seq.wrapping_add(1) & 0x3F,
        net_fn + 1,
        code,
        &[0x00, 0x00, 0xC0, 0x02, 0x80],
    );
    assert!(orders(&drain(&mut s)).is_empty());
    s.on_ipmb_response(
        120,
        A,
        seq,
        net_fn + 1,
        code,
        &[0x00, 0x00, 0xC0, 0x02, 0x80],
    );
    assert_eq!(
        orders(&drain(&mut s)),
        [(
            2,
            Order::RestartPartnerGuests {
                failed_slot: 1,
                incident: d.incident,
                fence: Confirmation::HotSwapM1,
                subset: None
            }
        )]
    );
    assert!(s.blade(1).unwrap().incident.unwrap().confirmed);
}

#[test]
fn test_probe_loss_is_blade_lost() {
    let mut s = Shelf::new(config(true)).unwrap();
    let mut now = 0;
    let mut lost = std::vec::Vec::new();
    while now <= 3000 && lost.is_empty() {
        s.poll(now);
        let outs = drain(&mut s);
        for (dest, net_fn, code, seq, _) in requests(&outs) {
            // Only B answers its probes.
            if dest == B && code == cmd::CMD_GET_DEVICE_ID {
                s.on_ipmb_response(
                    now + 2,
                    B,
                    seq,
                    net_fn + 1,
                    code,
                    &[0x00, 0x01, 0x01, 0x01, 0x02],
                );
            }
        }
        lost = decisions(&outs);
        now += 10;
    }
    assert_eq!(lost.len(), 1);
    assert_eq!(
        (lost[0].class, lost[0].slot, lost[0].t_ms),
        (Class::BladeLost, 1, 1500)
    );
    assert_eq!(lost[0].cause, Cause::ProbeLoss { silent_ms: 1500 });
    assert!(s.blade(2).unwrap().incident.is_none());
}

#[test]
fn test_probes_use_get_device_id_every_interval() {
    let mut s = Shelf::new(config(true)).unwrap();
    let mut probes = std::vec::Vec::new();
    for now in (0..=1000).step_by(10) {
        s.poll(now);
        for (dest, net_fn, code, seq, _) in requests(&drain(&mut s)) {
            assert_eq!((net_fn, code), (cmd::NETFN_APP, cmd::CMD_GET_DEVICE_ID));
            s.on_ipmb_response(
                now,
                dest,
                seq,
                net_fn + 1,
                code,
                &[0x00, 0x01, 0x01, 0x01, 0x02],
            );
            probes.push((now, dest));
        }
    }
    assert_eq!(
        probes,
        [(0, A), (0, B), (500, A), (500, B), (1000, A), (1000, B)]
    );
    assert_eq!(s.counters().decisions, 0);
}

/// Runs a probing shelf whose IPMCs all answer; `agent` is called each tick.
fn run_answering(
    s: &mut Shelf,
    until: u64,
    mut agent: impl FnMut(&mut Shelf, u64),
) -> std::vec::Vec<Decision> {
    let mut found = std::vec::Vec::new();
    for now in (0..=until).step_by(10) {
        agent(s, now);
        s.poll(now);
        let outs = drain(s);
        for (dest, net_fn, code, seq, _) in requests(&outs) {
            if code == cmd::CMD_GET_DEVICE_ID {
                s.on_ipmb_response(
                    now,
                    dest,
                    seq,
                    net_fn + 1,
                    code,
                    &[0x00, 0x01, 0x01, 0x01, 0x02],
                );
            }
        }
        found.extend(decisions(&outs));
    }
    found
}

#[test]
fn test_heartbeat_loss_while_m4_is_host_os() {
    let mut s = Shelf::new(config(true)).unwrap();
    let found = run_answering(&mut s, 3000, |s, now| {
        if now == 0 {
            s.on_agent(0, 1, AgentInput::Hello);
            s.on_agent(0, 2, AgentInput::Hello);
        }
        // Slot 2 keeps beating; slot 1 stops after 200 ms.
        if now % 200 == 0 {
            s.on_agent(
                now,
                2,
                AgentInput::Heartbeat {
                    hypervisor_ok: true,
                },
            );
            if now <= 200 {
                s.on_agent(
                    now,
                    1,
                    AgentInput::Heartbeat {
                        hypervisor_ok: true,
                    },
                );
            }
        }
    });
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].class, found[0].slot, found[0].t_ms),
        (Class::HostOs, 1, 1200)
    );
    assert_eq!(found[0].cause, Cause::HeartbeatLoss { silent_ms: 1000 });
    // The fenced blade's agent must register again before it is watched.
    assert!(!s.blade(1).unwrap().agent_registered);
}

#[test]
fn test_heartbeat_loss_needs_m4_and_registration() {
    // Blade inactive (M1): its agent's silence is no host_os.
    let mut s = Shelf::new(config(true)).unwrap();
    let found = run_answering(&mut s, 3000, |s, now| {
        if now == 0 {
            s.on_platform_event(0, 1, &hs(A, 1, Some(0x16)));
            let _ = drain(s);
            s.on_agent(0, 1, AgentInput::Hello);
        }
    });
    // The M6 -> M1 event alone decides nothing; the silence neither.
    assert!(found.is_empty(), "{found:?}");
    // An agent that never registered is never declared lost.
    let mut s = Shelf::new(config(true)).unwrap();
    assert!(run_answering(&mut s, 3000, |_, _| {}).is_empty());
}

#[test]
fn test_hypervisor_grace_then_self_fence() {
    let mut s = shelf();
    s.on_agent(0, 1, AgentInput::Hello);
    s.on_agent(100, 1, AgentInput::HypervisorDown);
    s.poll(599);
    s.on_agent(599, 1, AgentInput::HypervisorUp);
    s.poll(700);
    assert!(
        drain(&mut s).is_empty(),
        "recovered within the grace period"
    );
    s.on_agent(
        1000,
        1,
        AgentInput::Heartbeat {
            hypervisor_ok: false,
        },
    );
    s.poll(1499);
    assert!(drain(&mut s).is_empty());
    s.poll(1500);
    let outs = drain(&mut s);
    let d = decisions(&outs);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].class, d[0].slot), (Class::Hypervisor, 1));
    assert_eq!(actions(&d[0]), ["self_fence", "failover_to_partner"]);
    assert_eq!(
        orders(&outs),
        [(
            1,
            Order::FenceSelf {
                incident: d[0].incident
            }
        )]
    );
    assert!(
        requests(&outs).is_empty(),
        "no IPMB fence while the agent self-fences"
    );
    s.poll(1600);
    assert!(orders(&drain(&mut s)).is_empty());
    // A confirmation quoting another decision confirms nothing.
    s.on_agent(
        1650,
        1,
        AgentInput::FenceSelfConfirmed {
            incident: d[0].incident + 1,
        },
    );
    assert!(orders(&drain(&mut s)).is_empty());
    s.on_agent(
        1700,
        1,
        AgentInput::FenceSelfConfirmed {
            incident: d[0].incident,
        },
    );
    assert_eq!(
        orders(&drain(&mut s)),
        [(
            2,
            Order::RestartPartnerGuests {
                failed_slot: 1,
                incident: d[0].incident,
                fence: Confirmation::SelfFenced,
                subset: None
            }
        )]
    );
    // The hypervisor comes back: the incident closes, the blade is watched again.
    s.on_agent(
        2000,
        1,
        AgentInput::Heartbeat {
            hypervisor_ok: true,
        },
    );
    assert!(s.blade(1).unwrap().incident.is_none());
}

#[test]
fn test_hypervisor_self_fence_timeout_adds_ipmb_fence() {
    let mut s = shelf();
    s.on_agent(0, 1, AgentInput::Hello);
    s.on_agent(0, 1, AgentInput::HypervisorDown);
    s.poll(500);
    let _ = drain(&mut s);
    s.poll(2499);
    assert!(requests(&drain(&mut s)).is_empty());
    s.poll(2500);
    let r = requests(&drain(&mut s));
    assert_eq!(r[0].2, cmd::CMD_SET_FRU_ACTIVATION);
    // Either confirmation now counts; the late agent confirmation does.
    s.on_agent(2600, 1, AgentInput::FenceSelfConfirmed { incident: 1 });
    assert!(is_failover(&orders(&drain(&mut s))[0].1));
}

#[test]
fn test_fence_self_confirmation_does_not_confirm_a_hardware_fence() {
    let mut s = shelf();
    one_decision(&mut s, 0, 1, &critical_temp(A));
    s.on_agent(10, 1, AgentInput::FenceSelfConfirmed { incident: 1 });
    assert!(orders(&drain(&mut s)).is_empty());
    assert_eq!(s.counters().agent_ignored, 1);
}

#[test]
fn test_registered_agent_self_fences_in_parallel_with_ipmb_fence() {
    let mut s = shelf();
    s.on_agent(0, 1, AgentInput::Hello);
    s.on_platform_event(10, 1, &critical_temp(A));
    let outs = drain(&mut s);
    let d = decisions(&outs);
    assert_eq!(
        actions(&d[0]),
        ["fence_ipmb", "self_fence", "failover_to_partner"]
    );
    assert_eq!(
        orders(&outs),
        [(
            1,
            Order::FenceSelf {
                incident: d[0].incident
            }
        )]
    );
    assert_eq!(requests(&outs)[0].2, cmd::CMD_SET_FRU_ACTIVATION);
    // The IPMC never answers (silent); the agent's confirmation is the fence.
    s.on_agent(
        60,
        1,
        AgentInput::FenceSelfConfirmed {
            incident: d[0].incident + 1,
        },
    );
    assert!(
        orders(&drain(&mut s)).is_empty(),
        "a confirmation quoting another decision"
    );
    s.on_agent(
        70,
        1,
        AgentInput::FenceSelfConfirmed {
            incident: d[0].incident,
        },
    );
    let o = orders(&drain(&mut s));
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].0, 2, "the partner is ordered");
    assert!(matches!(
        o[0].1,
        Order::RestartPartnerGuests {
            failed_slot: 1,
            fence: Confirmation::SelfFenced,
            ..
        }
    ));
}

#[test]
fn test_guests_not_restarted_raise_an_alert() {
    let mut s = shelf();
    s.on_agent(0, 1, AgentInput::Hello);
    s.on_platform_event(10, 1, &critical_temp(A));
    let d = decisions(&drain(&mut s)).remove(0);
    s.on_agent(
        20,
        1,
        AgentInput::FenceSelfConfirmed {
            incident: d.incident,
        },
    );
    assert!(is_failover(&orders(&drain(&mut s))[0].1));
    for (n, started) in [("g1", true), ("g2", false)] {
        s.on_agent(
            30,
            2,
            AgentInput::GuestOutcome {
                failed_slot: 1,
                name: name(n),
                started,
            },
        );
    }
    s.on_agent(
        40,
        2,
        AgentInput::AllReported {
            failed_slot: 1,
            incident: d.incident,
        },
    );
    let outs = drain(&mut s);
    assert_eq!(
        alerts(&outs),
        [Alert::GuestsNotRestarted {
            slot: 1,
            incident: d.incident,
            not_started: guest_list(&["g2"], 0),
            started: 1,
            reported: true,
        }],
        "the guest not started is named"
    );
    assert_eq!(
        s.blade(1).unwrap().incident.unwrap().phase,
        Phase::Recovered
    );
    // The report is settled: no late alert follows.
    s.poll(40 + s.config().timing.failover_report_timeout_ms);
    assert!(alerts(&drain(&mut s)).is_empty());
    assert_eq!(s.pending_reports().count(), 0);
}

/// A blade failed over on its agent's self-fence; returns its decision.
fn failed_over(s: &mut Shelf, now: u64) -> u32 {
    s.on_agent(now, 1, AgentInput::Hello);
    s.on_platform_event(now, 1, &critical_temp(A));
    let d = decisions(&drain(s)).remove(0);
    s.on_agent(
        now,
        1,
        AgentInput::FenceSelfConfirmed {
            incident: d.incident,
        },
    );
    assert!(is_failover(&orders(&drain(s))[0].1));
    d.incident
}

fn outcome(s: &mut Shelf, now: u64, from: u8, guest: &str, started: bool) {
    s.on_agent(
        now,
        from,
        AgentInput::GuestOutcome {
            failed_slot: 1,
            name: name(guest),
            started,
        },
    );
}

#[test]
fn test_failover_report_overdue_names_what_is_known() {
    let mut s = shelf();
    let id = failed_over(&mut s, 10);
    let due = 10 + s.config().timing.failover_report_timeout_ms;
    outcome(&mut s, 20, 2, "web", true);
    outcome(&mut s, 30, 2, "db", false);
    // Slot 1's own agent does not start its guests elsewhere: not booked.
    outcome(&mut s, 31, 1, "mail", false);
    s.poll(due - 1);
    assert!(alerts(&drain(&mut s)).is_empty());
    // The partner never sends its final report (a start that hung).
    s.poll(due);
    let not_reported = Alert::GuestsNotRestarted {
        slot: 1,
        incident: id,
        not_started: guest_list(&["db"], 0),
        started: 1,
        reported: false,
    };
    assert_eq!(alerts(&drain(&mut s)), std::slice::from_ref(&not_reported));
    assert!(not_reported.to_string().contains("db"), "{not_reported}");
    assert_eq!(s.counters().failover_reports_overdue, 1);
    // Once only.
    s.poll(due + 100_000);
    assert!(alerts(&drain(&mut s)).is_empty());
    assert_eq!(
        s.pending_reports().collect::<std::vec::Vec<_>>(),
        [(1, id, None, true)]
    );
    // A late final report is still heard: its word is final.
    outcome(&mut s, due + 200_000, 2, "crm", false);
    s.on_agent(
        due + 200_001,
        2,
        AgentInput::AllReported {
            failed_slot: 1,
            incident: id,
        },
    );
    assert_eq!(
        alerts(&drain(&mut s)),
        [Alert::GuestsNotRestarted {
            slot: 1,
            incident: id,
            not_started: guest_list(&["db", "crm"], 0),
            started: 1,
            reported: true,
        }]
    );
    assert_eq!(
        s.blade(1).unwrap().incident.unwrap().phase,
        Phase::Recovered
    );
    assert_eq!(s.pending_reports().count(), 0);
}

#[test]
fn test_failover_report_outlives_the_incident() {
    let mut s = shelf();
    let id = failed_over(&mut s, 0);
    // The blade is repaired and back in M4 before the partner reports.
    s.on_platform_event(5000, 2, &hs(A, 4, Some(0x03)));
    assert!(s.blade(1).unwrap().incident.is_none());
    s.poll(s.config().timing.failover_report_timeout_ms);
    let a = alerts(&drain(&mut s));
    assert!(
        matches!(
            a.as_slice(),
            [Alert::GuestsNotRestarted { slot: 1, incident, reported: false, .. }] if *incident == id
        ),
        "{a:?}"
    );
    // Its late report settles it without being counted as ignored.
    let ignored = s.counters().agent_ignored;
    s.on_agent(
        200_000,
        2,
        AgentInput::AllReported {
            failed_slot: 1,
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
        outcome(&mut s, 10, 2, n, false);
    }
    // Repeats are not counted twice; a guest started after all leaves the list.
    outcome(&mut s, 11, 2, "g0", false);
    outcome(&mut s, 12, 2, "g1", true);
    s.on_agent(
        20,
        2,
        AgentInput::AllReported {
            failed_slot: 1,
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
        s.on_agent(t, 1, AgentInput::GuestCrashed { name: vm.clone() });
    }
    let d = decisions(&drain(&mut s)).pop().unwrap();
    s.on_agent(
        10,
        1,
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
            slot: 1,
            incident: d.incident,
            not_started: guest_list(&["vm1"], 0),
            started: 0,
            reported: false,
        }]
    );
}

#[test]
fn test_guest_failover_reported_started_raises_nothing() {
    let mut s = shelf();
    let vm = name("vm1");
    for t in [0u64, 1, 2, 3] {
        s.on_agent(t, 1, AgentInput::GuestCrashed { name: vm.clone() });
    }
    let d = decisions(&drain(&mut s)).pop().unwrap();
    s.on_agent(
        10,
        1,
        AgentInput::GuestDestroyed {
            name: vm.clone(),
            incident: d.incident,
        },
    );
    outcome(&mut s, 20, 2, "vm1", true);
    s.on_agent(
        30,
        2,
        AgentInput::AllReported {
            failed_slot: 1,
            incident: d.incident,
        },
    );
    s.poll(1_000_000);
    assert!(alerts(&drain(&mut s)).is_empty());
    assert_eq!(s.counters().agent_ignored, 0);
}

#[test]
fn test_order_undelivered_is_alerted() {
    let mut s = shelf();
    s.on_agent(
        5,
        2,
        AgentInput::OrderUndelivered {
            kind: OrderKind::RestartPartnerGuests,
            incident: Some(4),
            reason: Undelivered::Unacknowledged,
        },
    );
    let a = alerts(&drain(&mut s));
    assert_eq!(
        a,
        [Alert::OrderUndelivered {
            slot: 2,
            incident: Some(4),
            kind: OrderKind::RestartPartnerGuests,
            reason: Undelivered::Unacknowledged,
        }]
    );
    assert_eq!(a[0].kind(), "order_undelivered");
    assert_eq!(
        a[0].to_string(),
        "order restart_partner_guests to slot 2 (decision #4) was never acknowledged; that agent is not carrying it out"
    );
    assert_eq!(s.counters().orders_undelivered, 1);
    // An unconfigured slot is counted, not alerted.
    s.on_agent(
        6,
        9,
        AgentInput::OrderUndelivered {
            kind: OrderKind::FenceSelf,
            incident: None,
            reason: Undelivered::NotSent,
        },
    );
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.counters().agent_unknown_slot, 1);
}

fn unprotected(s: &mut Shelf, from: u8, owner: u8, guest: &str, reason: UnprotectedReason) {
    s.on_agent(
        0,
        from,
        AgentInput::GuestUnprotected {
            owner_slot: owner,
            reason,
            name: ReportText::try_from(guest).unwrap(),
            text: ReportText::try_from("/local/disk.img").unwrap(),
        },
    );
}

#[test]
fn test_guest_unprotected_alerted_once_per_guest_and_reason() {
    let mut s = shelf();
    unprotected(&mut s, 1, 1, "db", UnprotectedReason::DiskPath);
    let a = alerts(&drain(&mut s));
    assert_eq!(
        a,
        [Alert::GuestUnprotected {
            owner_slot: 1,
            reporter: 1,
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
    unprotected(&mut s, 1, 1, "db", UnprotectedReason::DiskPath);
    unprotected(&mut s, 2, 1, "db", UnprotectedReason::DiskPath);
    assert!(alerts(&drain(&mut s)).is_empty());
    // Another reason, another guest: alerted.
    unprotected(&mut s, 2, 1, "db", UnprotectedReason::StoreFailed);
    unprotected(&mut s, 1, 1, "web", UnprotectedReason::Unknown(42));
    let a = alerts(&drain(&mut s));
    assert_eq!(a.len(), 2, "{a:?}");
    assert!(a[1].to_string().contains("(unknown 42"), "{}", a[1]);
    // A blade that is neither the owner nor its partner, an unknown owner: ignored.
    let mut s3 = Shelf::new({
        let mut c = config(false);
        for (slot, addr, partner) in [(3, 0x86, 4), (4, 0x88, 3)] {
            c.blades
                .push(BladeConfig {
                    slot,
                    ipmb_address: addr,
                    partner,
                    hot_swap_sensor: None,
                })
                .unwrap();
        }
        c
    })
    .unwrap();
    unprotected(&mut s3, 3, 1, "db", UnprotectedReason::DiskPath);
    unprotected(&mut s3, 3, 12, "db", UnprotectedReason::DiskPath);
    assert!(drain(&mut s3).is_empty());
    assert_eq!(s3.counters().agent_ignored, 2);
    assert_eq!(s3.counters().unprotected_reports, 2);
    // The owner's agent registering again re-arms its guests.
    s.on_agent(10, 1, AgentInput::Hello);
    unprotected(&mut s, 1, 1, "db", UnprotectedReason::DiskPath);
    assert_eq!(alerts(&drain(&mut s)).len(), 1);
}

#[test]
fn test_guest_unprotected_table_full_forgets_the_oldest() {
    let mut s = shelf();
    let n = crate::capacity::MAX_UNPROTECTED;
    for i in 0..=n {
        unprotected(&mut s, 1, 1, &format!("g{i}"), UnprotectedReason::BadXml);
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
    unprotected(&mut s, 1, 1, "g1", UnprotectedReason::BadXml);
    assert!(alerts(&drain(&mut s)).is_empty());
    unprotected(&mut s, 1, 1, "g0", UnprotectedReason::BadXml);
    assert_eq!(alerts(&drain(&mut s)).len(), 1);
}

#[test]
fn test_guest_restart_limit_then_failover() {
    let mut s = shelf();
    let vm = name("vm1");
    for (i, t) in [0u64, 1000, 2000].iter().enumerate() {
        s.on_agent(*t, 1, AgentInput::GuestCrashed { name: vm.clone() });
        let outs = drain(&mut s);
        let d = decisions(&outs);
        assert_eq!(
            (d[0].class, actions(&d[0])),
            (Class::Guest, vec!["restart_local"])
        );
        assert_eq!(
            d[0].cause,
            Cause::GuestCrash {
                crashes_in_window: i as u8 + 1
            }
        );
        assert_eq!(d[0].guest.as_deref(), Some("vm1"));
        assert_eq!(
            orders(&outs),
            [(
                1,
                Order::RestartGuest {
                    name: vm.clone(),
                    incident: i as u32 + 1
                }
            )]
        );
    }
    s.on_agent(3000, 1, AgentInput::GuestCrashed { name: vm.clone() });
    let outs = drain(&mut s);
    let d = decisions(&outs);
    assert_eq!(actions(&d[0]), ["fence_guest", "failover_guest"]);
    assert_eq!(
        orders(&outs),
        [(
            1,
            Order::DestroyGuest {
                name: vm.clone(),
                incident: d[0].incident
            }
        )]
    );
    let pending: std::vec::Vec<_> = s.pending_guest_failovers().collect();
    assert_eq!(pending, [(1, &vm, d[0].incident)]);
    // Another guest's destruction does not release this one.
    s.on_agent(
        3100,
        1,
        AgentInput::GuestDestroyed {
            name: name("vm2"),
            incident: d[0].incident,
        },
    );
    assert!(orders(&drain(&mut s)).is_empty());
    s.on_agent(
        3200,
        1,
        AgentInput::GuestDestroyed {
            name: vm.clone(),
            incident: d[0].incident,
        },
    );
    assert_eq!(
        orders(&drain(&mut s)),
        [(
            2,
            Order::RestartPartnerGuests {
                failed_slot: 1,
                incident: d[0].incident,
                fence: Confirmation::GuestDestroyed,
                subset: Some(vm.clone())
            }
        )]
    );
    assert_eq!(s.pending_guest_failovers().count(), 0);
    // The blade itself stays healthy.
    assert!(s.blade(1).unwrap().incident.is_none());
}

#[test]
fn test_guest_window_is_ten_minutes() {
    let mut s = shelf();
    let vm = name("vm1");
    for t in [0u64, 1000, 2000, 600_000] {
        s.on_agent(t, 1, AgentInput::GuestCrashed { name: vm.clone() });
        let d = decisions(&drain(&mut s));
        assert_eq!(
            actions(&d[0]),
            ["restart_local"],
            "crash at {t}: the one at 0 left the window"
        );
    }
    s.on_agent(600_500, 1, AgentInput::GuestCrashed { name: vm.clone() });
    let d = decisions(&drain(&mut s));
    assert_eq!(actions(&d[0]), ["fence_guest", "failover_guest"]);
}

#[test]
fn test_guest_destroy_unconfirmed_is_no_failover() {
    let mut s = shelf();
    let vm = name("vm1");
    for t in 0..4u64 {
        s.on_agent(t, 1, AgentInput::GuestCrashed { name: vm.clone() });
    }
    let _ = drain(&mut s);
    s.poll(10_003);
    let outs = drain(&mut s);
    assert_eq!(
        alerts(&outs),
        [Alert::GuestFenceUnconfirmed {
            slot: 1,
            name: vm.clone()
        }]
    );
    s.on_agent(
        10_100,
        1,
        AgentInput::GuestDestroyed {
            name: vm,
            incident: 4,
        },
    );
    assert!(orders(&drain(&mut s)).is_empty());
}

#[test]
fn test_incident_ends_on_m4_even_unconfirmed() {
    let mut s = shelf();
    one_decision(&mut s, 0, 1, &hs(A, 5, Some(0x24)));
    // Handle closed again before evacuation finished.
    s.on_platform_event(500, 2, &hs(A, 4, Some(0x25)));
    assert!(s.blade(1).unwrap().incident.is_none());
    assert!(!s.blade(1).unwrap().commanded);
    s.poll(200_000);
    let outs = drain(&mut s);
    assert!(requests(&outs).is_empty() && orders(&outs).is_empty());
}

#[test]
fn test_fence_error_completion_code_counted() {
    let mut s = shelf();
    let (_, outs) = one_decision(&mut s, 0, 1, &critical_temp(A));
    let r = requests(&outs);
    s.on_ipmb_response(5, A, r[0].3, cmd::NETFN_GROUP_EXT_RSP, r[0].2, &[0xC1]);
    assert_eq!(s.counters().fence_rejected, 1);
    assert_eq!(s.request_stats().matched, 1);
}

#[test]
fn test_fence_request_retried() {
    let mut s = shelf();
    let (_, outs) = one_decision(&mut s, 0, 1, &critical_temp(A));
    let first = requests(&outs)[0].clone();
    s.poll(250);
    let r: std::vec::Vec<_> = requests(&drain(&mut s))
        .into_iter()
        .filter(|r| r.2 == cmd::CMD_SET_FRU_ACTIVATION)
        .collect();
    assert_eq!(r, std::slice::from_ref(&first), "same bytes, same rqSeq");
    s.poll(500);
    s.poll(750);
    let r: std::vec::Vec<_> = requests(&drain(&mut s))
        .into_iter()
        .filter(|r| r.2 == cmd::CMD_SET_FRU_ACTIVATION)
        .collect();
    assert_eq!(r.len(), 1, "two retries in all: {r:?}");
    // Retries of the fence request only (confirmation polls are not retried).
    assert_eq!(s.request_stats().retries, 2);
    s.poll(1000);
    assert!(requests(&drain(&mut s))
        .iter()
        .all(|r| r.2 != cmd::CMD_SET_FRU_ACTIVATION));
}

/// Deterministic pseudo-random inputs; after every input, every failover
/// order must name a blade whose fence is confirmed by its own agent's
/// self-fence confirmation, or by a hot-swap M1/M0 observed after the
/// incident's fence began: a hot-swap event of a later input than the one
/// that opened the incident, or the answer to a Get Sensor Reading sent no
/// earlier than that input. In both cases the reading's time is at or after
/// the fence's start.
#[test]
fn test_safety_no_failover_without_confirmed_fence() {
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut s = Shelf::new(config(true)).unwrap();
    let mut now = 0u64;
    let mut failovers = 0;
    let mut self_fenced = 0;
    let mut by_event = 0;
    let mut by_poll = 0;
    // (dest, netFn, cmd, rqSeq, input that sent it, time it was sent).
    let mut outstanding: std::vec::Vec<(u8, u8, u8, u8, usize, u64)> = std::vec::Vec::new();
    // Per slot: (decision, input that opened it, time) of the open incident.
    let mut began: [Option<(u32, usize, u64)>; 3] = [None; 3];
    for step in 0..200_000usize {
        now += rnd(40);
        let gen = if rnd(2) == 0 { A } else { B };
        let slot = if gen == A { 1 } else { 2 };
        let mut self_fence_fed = None;
        let mut event_of = None;
        let mut answered = None;
        match rnd(12) {
            0 => {
                let cur = rnd(8) as u8;
                let prev = rnd(9) as u8;
                let prev = if prev == 8 { None } else { Some(prev) };
                event_of = Some(slot);
                s.on_platform_event(now, rnd(64) as u8, &hs(gen, cur, prev));
            }
            1 => {
                s.on_platform_event(
                    now,
                    rnd(64) as u8,
                    &ev(
                        gen,
                        [0x01, 0x07, 0x23, 0xF1][rnd(4) as usize],
                        [0x01, 0x6F][rnd(2) as usize],
                        [rnd(16) as u8, 0, 0],
                    ),
                );
            }
            2 => {
                // Half the time the agent quotes the open decision, else any number.
                let open = |slot: u8| s.blade(slot).and_then(|b| b.incident).map_or(0, |i| i.id);
                let (quoted, partner_quoted) = if rnd(2) == 0 {
                    (open(slot), open(3 - slot))
                } else {
                    (rnd(40) as u32, rnd(40) as u32)
                };
                let input = match rnd(11) {
                    0 => AgentInput::Hello,
                    1 => AgentInput::Heartbeat {
                        hypervisor_ok: rnd(2) == 0,
                    },
                    2 => AgentInput::HypervisorDown,
                    3 => AgentInput::HypervisorUp,
                    4 => {
                        self_fence_fed = Some(slot);
                        AgentInput::FenceSelfConfirmed { incident: quoted }
                    }
                    5 => AgentInput::GuestCrashed { name: name("g") },
                    6 => AgentInput::GuestDestroyed {
                        name: name("g"),
                        incident: quoted,
                    },
                    7 => AgentInput::GuestOutcome {
                        failed_slot: 3 - slot,
                        name: name(["g", "h"][rnd(2) as usize]),
                        started: rnd(2) == 0,
                    },
                    8 => AgentInput::OrderUndelivered {
                        kind: OrderKind::RestartPartnerGuests,
                        incident: Some(quoted),
                        reason: Undelivered::Unacknowledged,
                    },
                    9 => AgentInput::GuestUnprotected {
                        owner_slot: rnd(4) as u8,
                        reason: UnprotectedReason::DiskPath,
                        name: ReportText::try_from("g").unwrap(),
                        text: ReportText::new(),
                    },
                    _ => AgentInput::AllReported {
                        failed_slot: 3 - slot,
                        incident: partner_quoted,
                    },
                };
                s.on_agent(now, slot, input);
            }
            3 | 4 => {
                // Answer an outstanding request with a random hot-swap state.
                if let Some(i) =
                    (!outstanding.is_empty()).then(|| rnd(outstanding.len() as u64) as usize)
                {
                    let (dest, net_fn, code, seq, sent_in, sent_at) = outstanding.swap_remove(i);
                    answered = Some((sent_in, sent_at));
                    let state = 1u8 << rnd(8);
                    s.on_ipmb_response(
                        now,
                        dest,
                        seq,
                        net_fn + 1,
                        code,
                        &[0x00, 0x00, 0xC0, state, 0x80],
                    );
                }
            }
            _ => s.poll(now),
        }
        for o in drain(&mut s) {
            match o {
                Output::Decision(d) => {
                    let b = s.blade(d.slot).unwrap();
                    if b.incident.is_some_and(|i| i.id == d.incident) {
                        began[usize::from(d.slot)] = Some((d.incident, step, now));
                    }
                }
                Output::Ipmb {
                    dest,
                    net_fn,
                    cmd,
                    rq_seq,
                    ..
                } => {
                    outstanding.push((dest, net_fn, cmd, rq_seq, step, now));
                    if outstanding.len() > 64 {
                        outstanding.remove(0);
                    }
                }
                Output::Order {
                    order:
                        Order::RestartPartnerGuests {
                            failed_slot,
                            subset: None,
                            fence,
                            ..
                        },
                    ..
                } => {
                    failovers += 1;
                    let b = s.blade(failed_slot).unwrap();
                    let inc = b.incident.expect("failover without an incident");
                    assert!(inc.confirmed);
                    assert_eq!(inc.proof, Some(fence));
                    let (id, began_in, began_at) = began[usize::from(failed_slot)]
                        .expect("failover of an incident never opened");
                    assert_eq!(id, inc.id, "failover of another incident");
                    match fence {
                        Confirmation::SelfFenced => {
                            assert!(
                                inc.self_fence && self_fence_fed == Some(failed_slot),
                                "self-fence proof without its confirmation: {b:?}"
                            );
                            self_fenced += 1;
                        }
                        Confirmation::HotSwapM1 | Confirmation::HotSwapM0 => {
                            assert!(matches!(b.m_state, Some(MState::M1 | MState::M0)));
                            if event_of == Some(failed_slot) {
                                assert!(
                                    step > began_in && now >= began_at,
                                    "step {step}: slot {failed_slot} confirmed by the hot-swap event that opened decision #{id} (input {began_in}): {b:?}"
                                );
                                by_event += 1;
                            } else {
                                let (sent_in, sent_at) = answered.unwrap_or_else(|| {
                                    panic!("step {step}: slot {failed_slot} confirmed by M1/M0 without a reading in this input (a cached state): {b:?}")
                                });
                                assert!(
                                    sent_in >= began_in && sent_at >= began_at,
                                    "step {step}: slot {failed_slot} confirmed by a reading requested at {sent_at} ms (input {sent_in}), before decision #{id} began at {began_at} ms (input {began_in})"
                                );
                                by_poll += 1;
                            }
                        }
                        Confirmation::GuestDestroyed => {
                            panic!("whole-blade failover with a guest proof")
                        }
                    }
                }
                _ => {}
            }
        }
    }
    assert!(
        failovers > 10,
        "the walk must reach failovers ({failovers})"
    );
    assert!(
        self_fenced > 0 && by_event > 0 && by_poll > 0,
        "the walk must reach every kind of proof: {self_fenced} self-fenced, {by_event} by event, {by_poll} by poll"
    );
    assert_eq!(s.counters().unsafe_failover_refused, 0);
}

// ----- predictive mode (blade_degraded) -----

const HOLD: u64 = 1000;

fn predictive_shelf(enabled: bool) -> Shelf {
    let mut c = config(false);
    c.predictive.enabled = enabled;
    c.predictive.degraded_hold_ms = HOLD;
    Shelf::new(c).unwrap()
}

/// Upper non-critical going high (offset 7) on temperature sensor `number`.
fn unc(generator: u8, number: u8, assertion: bool) -> PlatformEvent {
    let dir = if assertion { 0x01 } else { 0x81 };
    PlatformEvent::parse(generator, 0, &[0x04, 0x01, number, dir, 0x57, 70, 65]).unwrap()
}

fn ecc_limit(generator: u8) -> PlatformEvent {
    ev(generator, 0x0C, 0x6F, [0x05, 0xFF, 0xFF])
}

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
            1,
            Order::Migrate {
                to_slot: 2,
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
        1,
        AgentInput::AllReported {
            failed_slot: 1,
            incident: d[0].incident,
        },
    );
    let outs = drain(&mut s);
    assert!(requests(&outs).is_empty());
    assert!(orders(&outs).is_empty(), "no failover order");
    assert_eq!(
        alerts(&outs),
        [Alert::BladeDegraded {
            slot: 1,
            incident: d[0].incident,
            evacuated: true
        }]
    );
    assert!(s.blade(1).unwrap().incident.is_none());
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
    assert!(!ShelfConfig::new(0x20).predictive.enabled);
}

#[test]
fn test_ecc_limit_is_immediate() {
    let mut s = predictive_shelf(true);
    let (d, outs) = one_decision(&mut s, 50, 1, &ecc_limit(B));
    assert_eq!((d.class, d.slot, d.t_ms), (Class::BladeDegraded, 2, 50));
    assert_eq!(
        orders(&outs),
        [(
            2,
            Order::Migrate {
                to_slot: 1,
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
        slot: 1,
        incident: d.incident,
        evacuated: false
    }));
    assert!(s.blade(1).unwrap().incident.is_none());
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
            slot: 1,
            incident: d.incident,
            evacuated: false
        }]
    );
    assert!(s.blade(1).unwrap().incident.is_none());
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
        1,
        AgentInput::AllReported {
            failed_slot: 1,
            incident: d1.incident,
        },
    );
    assert_eq!(s.blade(1).unwrap().incident.unwrap().id, d2.incident);
    s.on_platform_event(40, 5, &hs(A, 1, Some(0x14)));
    let o = orders(&drain(&mut s));
    assert!(
        o.iter().any(|(slot, o)| *slot == 2 && is_failover(o)),
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

#[test]
fn test_typed_manager_request_power_off_is_commanded() {
    let mut s = shelf();
    s.on_manager_request(
        IpmbAddr(A),
        &Request::SetPowerLevel {
            fru_id: 0,
            level: 1,
            copy_desired: false,
        },
    );
    assert!(
        !s.blade(1).unwrap().commanded,
        "power level 1 is no deactivation"
    );
    s.on_manager_request(
        IpmbAddr(A),
        &Request::SetPowerLevel {
            fru_id: 0,
            level: 0,
            copy_desired: true,
        },
    );
    assert!(s.blade(1).unwrap().commanded);
    assert_eq!(
        s.on_platform_event(10, 1, &hs(A, 6, Some(0x14))),
        EventOutcome::Recorded(Record::Commanded)
    );
}

#[test]
fn test_typed_refused_fence_step_is_counted() {
    let mut s = shelf();
    let (_, outs) = one_decision(&mut s, 0, 1, &critical_temp(A));
    let r = requests(&outs);
    let rsp = Response::parse(r[0].1 + 1, r[0].2, &[0xC1]);
    assert_eq!(rsp.refused(), Some(cmd::CompletionCode::InvalidCommand));
    s.on_response(5, IpmbAddr(A), r[0].3, &rsp);
    assert_eq!(s.counters().fence_rejected, 1);
    // A response from an address no blade has is counted, not matched.
    s.on_response(6, IpmbAddr(0xEE), r[0].3, &rsp);
    assert_eq!(s.counters().responses_unknown, 1);
    assert_eq!(s.counters().fence_rejected, 1);
}
