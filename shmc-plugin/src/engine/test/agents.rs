//! Agents and probing: probe loss, heartbeats, hypervisor grace, self-fence, undelivered orders.

use super::*;

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
        (Class::BladeLost, Slot(1), 1500)
    );
    assert_eq!(lost[0].cause, Cause::ProbeLoss { silent_ms: 1500 });
    assert!(s.blade(Slot(2)).unwrap().incident.is_none());
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

#[test]
fn test_heartbeat_loss_while_m4_is_host_os() {
    let mut s = Shelf::new(config(true)).unwrap();
    let found = run_answering(&mut s, 3000, |s, now| {
        if now == 0 {
            s.on_agent(0, Slot(1), HELLO);
            s.on_agent(0, Slot(2), HELLO);
        }
        // Slot 2 keeps beating; slot 1 stops after 200 ms.
        if now % 200 == 0 {
            s.on_agent(
                now,
                Slot(2),
                AgentInput::Heartbeat {
                    hypervisor_ok: true,
                    partner_heard_ago_ms: None,
                },
            );
            if now <= 200 {
                s.on_agent(
                    now,
                    Slot(1),
                    AgentInput::Heartbeat {
                        hypervisor_ok: true,
                        partner_heard_ago_ms: None,
                    },
                );
            }
        }
    });
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].class, found[0].slot, found[0].t_ms),
        (Class::HostOs, Slot(1), 1200)
    );
    assert_eq!(found[0].cause, Cause::HeartbeatLoss { silent_ms: 1000 });
    // The fenced blade's agent must register again before it is watched.
    assert!(!s.blade(Slot(1)).unwrap().agent_registered);
}

#[test]
fn test_heartbeat_loss_needs_m4_and_registration() {
    // Blade inactive (M1): its agent's silence is no host_os.
    let mut s = Shelf::new(config(true)).unwrap();
    let found = run_answering(&mut s, 3000, |s, now| {
        if now == 0 {
            s.on_platform_event(0, 1, &hs(A, 1, Some(0x16)));
            let _ = drain(s);
            s.on_agent(0, Slot(1), HELLO);
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
    s.on_agent(0, Slot(1), HELLO);
    s.on_agent(100, Slot(1), AgentInput::HypervisorDown);
    s.poll(599);
    s.on_agent(599, Slot(1), AgentInput::HypervisorUp);
    s.poll(700);
    assert!(
        drain(&mut s).is_empty(),
        "recovered within the grace period"
    );
    s.on_agent(
        1000,
        Slot(1),
        AgentInput::Heartbeat {
            hypervisor_ok: false,
            partner_heard_ago_ms: None,
        },
    );
    s.poll(1499);
    assert!(drain(&mut s).is_empty());
    s.poll(1500);
    let outs = drain(&mut s);
    let d = decisions(&outs);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].class, d[0].slot), (Class::Hypervisor, Slot(1)));
    assert_eq!(actions(&d[0]), ["self_fence", "failover_to_partner"]);
    assert_eq!(
        orders(&outs),
        [(
            Slot(1),
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
        Slot(1),
        AgentInput::FenceSelfConfirmed {
            incident: d[0].incident + 1,
        },
    );
    assert!(orders(&drain(&mut s)).is_empty());
    s.on_agent(
        1700,
        Slot(1),
        AgentInput::FenceSelfConfirmed {
            incident: d[0].incident,
        },
    );
    assert_eq!(
        orders(&drain(&mut s)),
        [(
            Slot(2),
            Order::RestartPartnerGuests {
                failed_slot: Slot(1),
                incident: d[0].incident,
                fence: Confirmation::SelfFenced,
                subset: None
            }
        )]
    );
    // The hypervisor comes back: the incident closes, the blade is watched again.
    s.on_agent(
        2000,
        Slot(1),
        AgentInput::Heartbeat {
            hypervisor_ok: true,
            partner_heard_ago_ms: None,
        },
    );
    assert!(s.blade(Slot(1)).unwrap().incident.is_none());
}

#[test]
fn test_hypervisor_self_fence_timeout_adds_ipmb_fence() {
    let mut s = shelf();
    s.on_agent(0, Slot(1), HELLO);
    s.on_agent(0, Slot(1), AgentInput::HypervisorDown);
    s.poll(500);
    let _ = drain(&mut s);
    s.poll(2499);
    assert!(requests(&drain(&mut s)).is_empty());
    s.poll(2500);
    let r = requests(&drain(&mut s));
    assert_eq!(r[0].2, cmd::CMD_SET_FRU_ACTIVATION);
    // Either confirmation now counts; the late agent confirmation does.
    s.on_agent(
        2600,
        Slot(1),
        AgentInput::FenceSelfConfirmed { incident: 1 },
    );
    assert!(is_failover(&orders(&drain(&mut s))[0].1));
}

#[test]
fn test_fence_self_confirmation_does_not_confirm_a_hardware_fence() {
    let mut s = shelf();
    one_decision(&mut s, 0, 1, &critical_temp(A));
    s.on_agent(10, Slot(1), AgentInput::FenceSelfConfirmed { incident: 1 });
    assert!(orders(&drain(&mut s)).is_empty());
    assert_eq!(s.counters().agent_ignored, 1);
}

#[test]
fn test_registered_agent_self_fences_in_parallel_with_ipmb_fence() {
    let mut s = shelf();
    s.on_agent(0, Slot(1), HELLO);
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
            Slot(1),
            Order::FenceSelf {
                incident: d[0].incident
            }
        )]
    );
    assert_eq!(requests(&outs)[0].2, cmd::CMD_SET_FRU_ACTIVATION);
    // The IPMC never answers (silent); the agent's confirmation is the fence.
    s.on_agent(
        60,
        Slot(1),
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
        Slot(1),
        AgentInput::FenceSelfConfirmed {
            incident: d[0].incident,
        },
    );
    let o = orders(&drain(&mut s));
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].0, Slot(2), "the partner is ordered");
    assert!(matches!(
        o[0].1,
        Order::RestartPartnerGuests {
            failed_slot: Slot(1),
            fence: Confirmation::SelfFenced,
            ..
        }
    ));
}

#[test]
fn test_order_undelivered_is_alerted() {
    let mut s = shelf();
    s.on_agent(
        5,
        Slot(2),
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
            slot: Slot(2),
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
        Slot(9),
        AgentInput::OrderUndelivered {
            kind: OrderKind::FenceSelf,
            incident: None,
            reason: Undelivered::NotSent,
        },
    );
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.counters().agent_unknown_slot, 1);
}
