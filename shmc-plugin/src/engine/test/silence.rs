//! The rules of evidence on silence: corroboration by the other channel,
//! the shelf manager's suspicion of its own bus and network, the pair, the
//! watchdog proof, the announced heartbeat timing.

use super::*;

const ANSWER: [u8; 5] = [0x00, 0x01, 0x01, 0x01, 0x02];

/// Runs a probing shelf over `from..=until` in 10 ms ticks: an IPMC answers
/// its probes when `ipmc(now, addr)`; `agent` is called each tick. Returns
/// every output.
fn run(
    s: &mut Shelf,
    from: u64,
    until: u64,
    ipmc: impl Fn(u64, IpmbAddr) -> bool,
    mut agent: impl FnMut(&mut Shelf, u64),
) -> std::vec::Vec<Output> {
    let mut all = std::vec::Vec::new();
    for now in (from..=until).step_by(10) {
        agent(s, now);
        s.poll(now);
        let outs = drain(s);
        for (dest, net_fn, code, seq, _) in requests(&outs) {
            if code == cmd::CMD_GET_DEVICE_ID && ipmc(now, dest) {
                s.on_ipmb_response(now, dest, seq, net_fn + 1, code, &ANSWER);
            }
        }
        all.extend(outs);
        all.extend(drain(s));
    }
    all
}

fn beat(s: &mut Shelf, now: u64, slot: u8, partner_heard_ago_ms: Option<u32>) {
    s.on_agent(
        now,
        Slot(slot),
        AgentInput::Heartbeat {
            hypervisor_ok: true,
            partner_heard_ago_ms,
        },
    );
}

fn hello(watchdog_ms: Option<u32>, live_migration: bool) -> AgentInput {
    AgentInput::Hello {
        heartbeat_interval_ms: 200,
        watchdog_ms,
        live_migration,
    }
}

/// Two more blades, C (slot 3) and D (slot 4), a pair of their own.
fn four_blades() -> ShelfConfig {
    const C: IpmbAddr = IpmbAddr(0x86);
    const D: IpmbAddr = IpmbAddr(0x88);
    let mut c = config(true);
    for (slot, addr, partner) in [(3, C, 4), (4, D, 3)] {
        c.blades
            .push(BladeConfig {
                slot: Slot(slot),
                ipmb_address: addr,
                partner: Slot(partner),
                hot_swap_sensor: None,
            })
            .unwrap();
    }
    c
}

fn classes(outs: &[Output]) -> std::vec::Vec<(Class, Slot, u64)> {
    decisions(outs)
        .iter()
        .map(|d| (d.class, d.slot, d.t_ms))
        .collect()
}

fn kinds(outs: &[Output]) -> std::vec::Vec<&'static str> {
    alerts(outs).iter().map(|a| a.kind()).collect()
}

/// Fence requests (anything but probes and sensor polls) sent to `addr`.
fn fence_requests(outs: &[Output], addr: IpmbAddr) -> usize {
    requests(outs)
        .iter()
        .filter(|r| r.0 == addr && r.2 != cmd::CMD_GET_DEVICE_ID && !is_sensor_poll(r))
        .count()
}

#[test]
fn test_ipmc_silent_while_agent_heard_is_ipmc_lost() {
    let mut s = Shelf::new(config(true)).unwrap();
    let beats = |s: &mut Shelf, now: u64| {
        if now == 0 {
            s.on_agent(0, Slot(1), HELLO);
            s.on_agent(0, Slot(2), HELLO);
        }
        if now.is_multiple_of(200) {
            beat(s, now, 1, None);
            beat(s, now, 2, None);
        }
    };
    // A's IPMC is silent; its agent beats: in service, nothing fenced.
    let outs = run(&mut s, 0, 5000, |_, a| a == B, beats);
    assert_eq!(classes(&outs), [(Class::IpmcLost, Slot(1), 1500)]);
    let d = &decisions(&outs)[0];
    assert_eq!(actions(d), ["alert"]);
    assert_eq!(d.cause, Cause::ProbeLoss { silent_ms: 1500 });
    assert_eq!(
        alerts(&outs),
        [Alert::IpmcLost {
            slot: Slot(1),
            migrating: false
        }]
    );
    assert_eq!(alerts(&outs)[0].kind(), "ipmc_lost");
    assert!(
        orders(&outs).is_empty(),
        "nothing killed: {:?}",
        orders(&outs)
    );
    assert_eq!(fence_requests(&outs, A), 0);
    assert!(s.blade(Slot(1)).unwrap().incident.is_none());
    // The IPMC answers again, then goes silent again: a new silence, raised again.
    let outs = run(&mut s, 5010, 6000, |_, _| true, beats);
    assert!(decisions(&outs).is_empty());
    let outs = run(&mut s, 6010, 9000, |_, a| a == B, beats);
    assert_eq!(classes(&outs).len(), 1);
    assert_eq!(classes(&outs)[0].0, Class::IpmcLost);

    // Its agent not heard either: blade_lost.
    let mut s = Shelf::new(config(true)).unwrap();
    let outs = run(
        &mut s,
        0,
        3000,
        |_, a| a == B,
        |s, now| {
            if now.is_multiple_of(200) {
                beat(s, now, 2, None);
            }
        },
    );
    assert_eq!(classes(&outs), [(Class::BladeLost, Slot(1), 1500)]);
}

#[test]
fn test_partner_report_corroborates_ipmc_silence() {
    // A's agent is never heard here; its partner hears it.
    for (ago, class) in [(50, Class::IpmcLost), (5000, Class::BladeLost)] {
        let mut s = Shelf::new(config(true)).unwrap();
        let outs = run(
            &mut s,
            0,
            3000,
            |_, a| a == B,
            |s, now| {
                if now.is_multiple_of(200) {
                    beat(s, now, 2, Some(ago));
                }
            },
        );
        assert_eq!(classes(&outs), [(class, Slot(1), 1500)], "ago {ago}");
    }
    // Nothing reported (the field unknown): no corroboration.
    let mut s = Shelf::new(config(true)).unwrap();
    let outs = run(
        &mut s,
        0,
        3000,
        |_, a| a == B,
        |s, now| {
            if now.is_multiple_of(200) {
                beat(s, now, 2, None);
            }
        },
    );
    assert_eq!(classes(&outs), [(Class::BladeLost, Slot(1), 1500)]);
}

#[test]
fn test_ipmc_lost_live_migrates_without_fence() {
    let mut s = Shelf::new(config(true)).unwrap();
    let outs = run(
        &mut s,
        0,
        3000,
        |_, a| a == B,
        |s, now| {
            if now == 0 {
                s.on_agent(0, Slot(1), hello(None, true));
            }
            if now.is_multiple_of(200) {
                beat(s, now, 1, None);
                beat(s, now, 2, None);
            }
        },
    );
    let d = decisions(&outs);
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].class, actions(&d[0])),
        (Class::IpmcLost, vec!["evacuate", "alert"])
    );
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
    assert_eq!(
        alerts(&outs),
        [Alert::IpmcLost {
            slot: Slot(1),
            migrating: true
        }]
    );
    assert_eq!(fence_requests(&outs, A), 0, "no deactivation");
    // The blade reports its migration: taken, nothing more happens.
    let ignored = s.counters().agent_ignored;
    s.on_agent(
        3010,
        Slot(1),
        AgentInput::AllReported {
            failed_slot: Slot(1),
            incident: d[0].incident,
        },
    );
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.counters().agent_ignored, ignored);
    assert!(s.blade(Slot(1)).unwrap().incident.is_none());

    // Only its partner hears it: an order would not reach it, alert only.
    let mut s = Shelf::new(config(true)).unwrap();
    let outs = run(
        &mut s,
        0,
        3000,
        |_, a| a == B,
        |s, now| {
            if now == 0 {
                s.on_agent(0, Slot(1), hello(None, true));
            }
            if now.is_multiple_of(200) {
                beat(s, now, 2, Some(30));
            }
        },
    );
    assert_eq!(
        classes(&outs),
        [
            (Class::AgentLinkLost, Slot(1), 1000),
            (Class::IpmcLost, Slot(1), 1500)
        ]
    );
    assert_eq!(actions(&decisions(&outs)[1]), ["alert"]);
    assert!(orders(&outs).is_empty());

    // The partner not in M4: alert only.
    let mut s = Shelf::new(config(true)).unwrap();
    s.on_platform_event(0, 1, &hs(B, 1, Some(0)));
    let outs = run(
        &mut s,
        0,
        3000,
        |_, a| a == B,
        |s, now| {
            if now == 0 {
                s.on_agent(0, Slot(1), hello(None, true));
            }
            if now.is_multiple_of(200) {
                beat(s, now, 1, None);
            }
        },
    );
    assert_eq!(actions(&decisions(&outs)[0]), ["alert"]);
    assert!(orders(&outs).is_empty());
}

#[test]
fn test_agent_silent_while_partner_hears_it_is_agent_link_lost() {
    let mut s = Shelf::new(config(true)).unwrap();
    let outs = run(
        &mut s,
        0,
        4000,
        |_, _| true,
        |s, now| {
            if now == 0 {
                s.on_agent(0, Slot(1), HELLO);
                s.on_agent(0, Slot(2), HELLO);
            }
            if now.is_multiple_of(200) {
                // Agent 1 reaches the shelf manager until 200 ms; its partner
                // hears it until 1800 ms.
                if now <= 200 {
                    beat(s, now, 1, None);
                }
                let ago = now.saturating_sub(now.min(1800)) as u32;
                beat(s, now, 2, Some(ago));
            }
        },
    );
    assert_eq!(
        classes(&outs),
        [
            (Class::AgentLinkLost, Slot(1), 1200),
            (Class::HostOs, Slot(1), 2800)
        ]
    );
    let d = decisions(&outs);
    assert_eq!(actions(&d[0]), ["alert"]);
    assert_eq!(d[0].cause, Cause::HeartbeatLoss { silent_ms: 1000 });
    assert_eq!(alerts(&outs)[0], Alert::AgentLinkLost { slot: Slot(1) });
    assert_eq!(alerts(&outs)[0].kind(), "agent_link_lost");
    // No fence before the partner lost it too.
    let before: std::vec::Vec<_> = outs
        .iter()
        .take_while(|o| !matches!(o, Output::Decision(d) if d.class == Class::HostOs))
        .cloned()
        .collect();
    assert!(orders(&before).is_empty());
    assert_eq!(fence_requests(&before, A), 0);
}

#[test]
fn test_bus_silence_is_suspected_not_fenced() {
    let mut s = Shelf::new(config(true)).unwrap();
    // No IPMC answers: the bus of the shelf manager, not two blades.
    let outs = run(&mut s, 0, 5000, |_, _| false, |_, _| {});
    assert!(decisions(&outs).is_empty(), "{:?}", classes(&outs));
    assert_eq!(alerts(&outs), [Alert::IpmbSuspect { silent: 2 }]);
    assert_eq!(alerts(&outs)[0].kind(), "ipmb_suspect");
    // Positive evidence still acts.
    let (d, _) = one_decision(&mut s, 5005, 1, &critical_temp(B));
    assert_eq!((d.class, d.slot), (Class::BladeHardware, Slot(2)));

    // The bus answers again (B only, at 5500): A's silence counts again,
    // after a fresh half probe timeout and no earlier than a heartbeat
    // timeout after the suspicion ended, and a real failure is handled.
    let mut s = Shelf::new(config(true)).unwrap();
    let outs = run(&mut s, 0, 5000, |_, _| false, |_, _| {});
    assert!(decisions(&outs).is_empty());
    let outs = run(&mut s, 5010, 8000, |_, a| a == B, |_, _| {});
    let c = classes(&outs);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!((c[0].0, c[0].1), (Class::BladeLost, Slot(1)));
    assert!((6500..=6600).contains(&c[0].2), "{c:?}");
}

#[test]
fn test_one_silent_ipmc_is_not_suspected() {
    // B goes silent long after A: not together, no suspicion.
    let mut s = Shelf::new(config(true)).unwrap();
    let outs = run(&mut s, 0, 6000, |now, a| a == B && now < 2000, |_, _| {});
    let c = classes(&outs);
    assert_eq!(
        c.iter().map(|d| (d.0, d.1)).collect::<std::vec::Vec<_>>(),
        [(Class::BladeLost, Slot(1))],
        "{c:?}"
    );
    assert!(!kinds(&outs).contains(&"ipmb_suspect"));
}

#[test]
fn test_network_silence_is_suspected_not_fenced() {
    let mut s = Shelf::new(config(true)).unwrap();
    let agents = |s: &mut Shelf, now: u64| {
        if now == 0 {
            s.on_agent(0, Slot(1), HELLO);
            s.on_agent(0, Slot(2), HELLO);
        }
        if now.is_multiple_of(200) && (now <= 200 || now >= 4000) {
            beat(s, now, 1, None);
            if now <= 200 {
                beat(s, now, 2, None);
            }
        }
    };
    let outs = run(&mut s, 0, 3990, |_, _| true, agents);
    assert!(decisions(&outs).is_empty(), "{:?}", classes(&outs));
    assert_eq!(alerts(&outs), [Alert::NetworkSuspect { silent: 2 }]);
    // Agent 1 is heard again, agent 2 is not: its silence counts again.
    let outs = run(&mut s, 4000, 6000, |_, _| true, agents);
    let c = classes(&outs);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!((c[0].0, c[0].1), (Class::HostOs, Slot(2)));
    assert!((4400..=5100).contains(&c[0].2), "{c:?}");
}

#[test]
fn test_never_both_of_a_pair_on_silence() {
    // B is being fenced (positive evidence); A then goes silent on both channels.
    let mut s = Shelf::new(config(true)).unwrap();
    let outs = run(
        &mut s,
        0,
        4000,
        |_, _| false,
        |s, now| {
            if now == 0 {
                s.on_platform_event(0, 1, &critical_temp(B));
            }
        },
    );
    assert_eq!(classes(&outs), [(Class::BladeHardware, Slot(2), 0)]);
    assert_eq!(
        alerts(&outs)
            .into_iter()
            .filter(|a| a.kind() == "fence_withheld")
            .collect::<std::vec::Vec<_>>(),
        [Alert::FenceWithheld {
            slot: Slot(1),
            partner: Slot(2),
            class: Class::BladeLost
        }]
    );
    assert_eq!(fence_requests(&outs, A), 0);
    // B back in M4: A's silence decides.
    s.on_platform_event(4005, 2, &hs(B, 4, Some(3)));
    let outs = run(&mut s, 4010, 4100, |_, a| a == B, |_, _| {});
    assert_eq!(classes(&outs), [(Class::BladeLost, Slot(1), 4010)]);

    // The same for an agent silent while its IPMC answers.
    let mut s = Shelf::new(config(true)).unwrap();
    let outs = run(
        &mut s,
        0,
        3000,
        |_, a| a == A,
        |s, now| {
            if now == 0 {
                s.on_agent(0, Slot(1), HELLO);
                s.on_platform_event(0, 1, &critical_temp(B));
            }
        },
    );
    assert_eq!(classes(&outs), [(Class::BladeHardware, Slot(2), 0)]);
    assert!(alerts(&outs).contains(&Alert::FenceWithheld {
        slot: Slot(1),
        partner: Slot(2),
        class: Class::HostOs
    }));
    assert!(orders(&outs).iter().all(|(slot, _)| *slot != Slot(1)));
}

#[test]
fn test_watchdog_proof_after_timeout_and_margin() {
    for watchdog in [Some(3000), None] {
        let mut s = Shelf::new(config(true)).unwrap();
        // A and its agent go dark at 0; B and its agent are fine, and B's
        // agent reports it has not heard A since 0.
        let outs = run(
            &mut s,
            0,
            4000,
            |_, a| a == B,
            |s, now| {
                if now == 0 {
                    s.on_agent(0, Slot(1), hello(watchdog, false));
                    s.on_agent(0, Slot(2), HELLO);
                }
                if now.is_multiple_of(200) {
                    beat(s, now, 2, Some(now as u32));
                }
            },
        );
        let d = decisions(&outs);
        // Its agent's silence decides first (its IPMC not silent long enough yet).
        assert_eq!(classes(&outs), [(Class::HostOs, Slot(1), 1000)]);
        assert!(
            orders(&outs).iter().all(|(_, o)| !is_failover(o)),
            "never before T + heartbeat timeout"
        );
        let outs = run(
            &mut s,
            4010,
            20_000,
            |_, a| a == B,
            |s, now| {
                if now.is_multiple_of(200) {
                    beat(s, now, 2, Some(now as u32));
                }
            },
        );
        let failovers: std::vec::Vec<_> = orders(&outs)
            .into_iter()
            .filter(|(_, o)| is_failover(o))
            .collect();
        if watchdog.is_some() {
            assert_eq!(
                failovers,
                [(
                    Slot(2),
                    Order::RestartPartnerGuests {
                        failed_slot: Slot(1),
                        incident: d[0].incident,
                        fence: Confirmation::WatchdogExpired,
                        subset: None
                    }
                )]
            );
            let inc = s.blade(Slot(1)).unwrap().incident.unwrap();
            assert_eq!(inc.state.proof(), Some(Confirmation::WatchdogExpired));
        } else {
            assert!(failovers.is_empty());
            assert!(kinds(&outs).contains(&"fence_unconfirmed"));
        }
    }
    // The proof comes on the first poll past 3000 + 1000 ms of silence,
    // when the partner's latest report (4000: not heard since 0) is fresh.
    let mut s = Shelf::new(config(true)).unwrap();
    let outs = run(
        &mut s,
        0,
        4000,
        |_, a| a == B,
        |s, now| {
            if now == 0 {
                s.on_agent(0, Slot(1), hello(Some(3000), false));
            }
            if now.is_multiple_of(200) {
                beat(s, now, 2, Some(now as u32));
            }
        },
    );
    assert!(orders(&outs).iter().all(|(_, o)| !is_failover(o)));
    s.poll(4001);
    assert!(is_failover(&orders(&drain(&mut s))[0].1));
    // A partner that says nothing does not say it has not heard A: no
    // proof, the fence stays unconfirmed (the operator decides).
    let mut s = Shelf::new(config(true)).unwrap();
    let outs = run(
        &mut s,
        0,
        20_000,
        |_, a| a == B,
        |s, now| {
            if now == 0 {
                s.on_agent(0, Slot(1), hello(Some(3000), false));
            }
        },
    );
    assert!(orders(&outs).iter().all(|(_, o)| !is_failover(o)));
    assert!(kinds(&outs).contains(&"fence_unconfirmed"));
}

#[test]
fn test_present_counts_as_heard_for_the_watchdog_proof() {
    // As in the test above, but A's agent is heard once more at 2000 by a
    // Present (the command whose ack its watchdog petting relies on): the
    // proof must wait for 2000 + 3000 + 1000 ms, not 4000.
    let mut s = Shelf::new(config(true)).unwrap();
    let partner = |s: &mut Shelf, now: u64| {
        if now == 0 {
            s.on_agent(0, Slot(1), hello(Some(3000), false));
        }
        if now == 2000 {
            s.on_agent(2000, Slot(1), AgentInput::Present);
        }
        if now.is_multiple_of(200) {
            beat(s, now, 2, Some(now as u32));
        }
    };
    let outs = run(&mut s, 0, 6000, |_, a| a == B, partner);
    assert!(
        orders(&outs).iter().all(|(_, o)| !is_failover(o)),
        "a Present resets the silence the watchdog proof counts"
    );
    let outs = run(&mut s, 6010, 8000, |_, a| a == B, partner);
    let o = orders(&outs);
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

#[test]
fn test_watchdog_proof_waits_for_every_channel() {
    // The partner still hears A: no proof, however long the IPMC is silent.
    let mut s = Shelf::new(config(true)).unwrap();
    s.on_platform_event(0, 1, &critical_temp(A));
    s.on_agent(0, Slot(1), hello(Some(1000), false));
    let outs = run(
        &mut s,
        0,
        10_000,
        |_, a| a == B,
        |s, now| {
            if now.is_multiple_of(200) {
                beat(s, now, 2, Some(20));
            }
        },
    );
    assert!(orders(&outs).iter().all(|(_, o)| !is_failover(o)));
}

#[test]
fn test_announced_heartbeat_interval_is_checked() {
    let mut s = shelf();
    let hello = |interval| AgentInput::Hello {
        heartbeat_interval_ms: interval,
        watchdog_ms: None,
        live_migration: false,
    };
    s.on_agent(0, Slot(1), hello(400));
    let a = alerts(&drain(&mut s));
    assert_eq!(
        a,
        [Alert::HeartbeatTiming {
            slot: Slot(1),
            interval_ms: 400,
            timeout_ms: 1000
        }]
    );
    assert_eq!(a[0].kind(), "heartbeat_timing");
    // Once per registration: a repeated Hello is the same registration.
    s.on_agent(10, Slot(1), hello(400));
    assert!(drain(&mut s).is_empty());
    for fits in [0, 300, 333] {
        s.on_agent(20, Slot(2), hello(fits));
        assert!(drain(&mut s).is_empty(), "{fits}");
    }
}

#[test]
fn test_watchdog_proof_never_while_the_bus_is_suspect() {
    let mut s = Shelf::new(four_blades()).unwrap();
    // A and its agent go dark at 0; every other IPMC stops answering at
    // 2000; B's agent reports it has not heard A since 0.
    let partner = |s: &mut Shelf, now: u64| {
        if now == 0 {
            s.on_agent(0, Slot(1), hello(Some(3000), false));
        }
        if now.is_multiple_of(200) {
            beat(s, now, 2, Some(now as u32));
        }
    };
    let outs = run(&mut s, 0, 10_000, |now, a| a != A && now < 2000, partner);
    assert_eq!(classes(&outs), [(Class::HostOs, Slot(1), 1000)]);
    assert!(kinds(&outs).contains(&"ipmb_suspect"));
    assert!(
        orders(&outs).iter().all(|(_, o)| !is_failover(o)),
        "no watchdog proof while the bus is suspect"
    );
    // The bus answers again: A's clock resumed, capped at half a probe
    // timeout of silence (9250 ms), proof past 9250 + 3000 + 1000 ms.
    let outs = run(&mut s, 10_010, 13_250, |_, a| a != A, partner);
    assert!(orders(&outs).iter().all(|(_, o)| !is_failover(o)));
    let outs = run(&mut s, 13_260, 14_000, |_, a| a != A, partner);
    let o = orders(&outs);
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

mod fresh;
