//! Fencing: fence steps, escalation, fence proofs (events and readings), commanded deactivations.

use super::*;

#[test]
fn test_blade_lost_m7_fences_then_fails_over() {
    let mut s = shelf();
    let (d, outs) = one_decision(&mut s, 100, 1, &hs(A, 7, Some(0x44)));
    assert_eq!(d.class, Class::BladeLost);
    assert_eq!(
        (d.slot, d.ipmb_address, d.partner_slot, d.t_ms),
        (Slot(1), A, Slot(2), 100)
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
        s.incident(Slot(1)).unwrap().state,
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
        A,
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
            Slot(2),
            Order::RestartPartnerGuests {
                failed_slot: Slot(1),
                incident: d.incident,
                fence: Confirmation::HotSwapM1,
                subset: None
            }
        )]
    );
    assert!(matches!(
        s.blade(Slot(1)).unwrap().incident.unwrap().state,
        IncidentState::FailingOver { .. }
    ));
    // A report quoting another decision is ignored.
    s.on_agent(
        390,
        Slot(2),
        AgentInput::AllReported {
            failed_slot: Slot(1),
            incident: d.incident + 7,
        },
    );
    assert!(matches!(
        s.blade(Slot(1)).unwrap().incident.unwrap().state,
        IncidentState::FailingOver { .. }
    ));
    s.on_agent(
        400,
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
    assert_eq!(
        s.incident(Slot(1)).unwrap().state,
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
    assert!(s.blade(Slot(1)).unwrap().incident.is_none());
    assert_eq!(s.incident(Slot(1)), None);
    let (d2, _) = one_decision(&mut s, 1000, 4, &critical_temp(A));
    assert_eq!(d2.class, Class::BladeHardware);
    assert_eq!(d2.incident, d.incident + 1);
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
        assert!(!s
            .blade(Slot(1))
            .unwrap()
            .incident
            .unwrap()
            .state
            .is_confirmed());
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
                Slot(2),
                Order::RestartPartnerGuests {
                    failed_slot: Slot(1),
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
    assert_eq!(s.blade(Slot(1)).unwrap().m_state, Some(MState::M1));
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
    assert_eq!(s.blade(Slot(1)).unwrap().m_state, Some(MState::M4));
    // The fence goes on; a later reading of M1 is the proof.
    s.poll(60_050);
    let outs = drain(&mut s);
    assert_eq!(answer_polls(&mut s, 60_060, &outs, 1), 1);
    let o = orders(&drain(&mut s));
    assert_eq!(o.len(), 1);
    assert!(matches!(
        o[0].1,
        Order::RestartPartnerGuests {
            failed_slot: Slot(1),
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
    s.on_agent(10, Slot(1), HELLO);
    s.on_agent(10, Slot(1), AgentInput::HypervisorDown);
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
    assert!(s.blade(Slot(1)).unwrap().commanded);
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
    assert!(!s.blade(Slot(1)).unwrap().commanded);
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
    assert!(!s.blade(Slot(1)).unwrap().commanded);
    let (d, _) = one_decision(&mut s, 40, 4, &hs(A, 6, Some(0x94)));
    assert_eq!(d.class, Class::BladeLost);
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
                Slot(2),
                AgentInput::AllReported {
                    failed_slot: Slot(1),
                    incident: 1,
                },
            );
            s.on_agent(now, Slot(1), AgentInput::FenceSelfConfirmed { incident: 1 });
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
                slot: Slot(1),
                incident: 1,
                rounds: 1
            },
            Alert::FenceUnconfirmed {
                slot: Slot(1),
                incident: 1,
                rounds: 2
            },
            Alert::FenceUnconfirmed {
                slot: Slot(1),
                incident: 1,
                rounds: 3
            },
        ]
    );
    assert_eq!(s.counters().failovers, 0);
    assert!(!s
        .blade(Slot(1))
        .unwrap()
        .incident
        .unwrap()
        .state
        .is_confirmed());
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
    assert_eq!(s.blade(Slot(1)).unwrap().m_state, Some(MState::M6));
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
            Slot(2),
            Order::RestartPartnerGuests {
                failed_slot: Slot(1),
                incident: d.incident,
                fence: Confirmation::HotSwapM1,
                subset: None
            }
        )]
    );
    assert!(s
        .blade(Slot(1))
        .unwrap()
        .incident
        .unwrap()
        .state
        .is_confirmed());
}

#[test]
fn test_incident_ends_on_m4_even_unconfirmed() {
    let mut s = shelf();
    one_decision(&mut s, 0, 1, &hs(A, 5, Some(0x24)));
    // Handle closed again before evacuation finished.
    s.on_platform_event(500, 2, &hs(A, 4, Some(0x25)));
    assert!(s.blade(Slot(1)).unwrap().incident.is_none());
    assert!(!s.blade(Slot(1)).unwrap().commanded);
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

#[test]
fn test_typed_manager_request_power_off_is_commanded() {
    let mut s = shelf();
    s.on_manager_request(
        A,
        &Request::SetPowerLevel {
            fru_id: 0,
            level: 1,
            copy_desired: false,
        },
    );
    assert!(
        !s.blade(Slot(1)).unwrap().commanded,
        "power level 1 is no deactivation"
    );
    s.on_manager_request(
        A,
        &Request::SetPowerLevel {
            fru_id: 0,
            level: 0,
            copy_desired: true,
        },
    );
    assert!(s.blade(Slot(1)).unwrap().commanded);
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
    s.on_response(5, A, r[0].3, &rsp);
    assert_eq!(s.counters().fence_rejected, 1);
    // A response from an address no blade has is counted, not matched.
    s.on_response(6, IpmbAddr(0xEE), r[0].3, &rsp);
    assert_eq!(s.counters().responses_unknown, 1);
    assert_eq!(s.counters().fence_rejected, 1);
}
