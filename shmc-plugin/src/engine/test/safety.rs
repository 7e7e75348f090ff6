//! The safety invariant: no failover without a confirmed fence.

use super::*;

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
    let mut outstanding: std::vec::Vec<(IpmbAddr, u8, u8, u8, usize, u64)> = std::vec::Vec::new();
    // Per slot: (decision, input that opened it, time) of the open incident.
    let mut began: [Option<(u32, usize, u64)>; 3] = [None; 3];
    for step in 0..200_000usize {
        now += rnd(40);
        let gen = if rnd(2) == 0 { A } else { B };
        let slot = if gen == A { Slot(1) } else { Slot(2) };
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
                let open = |slot: Slot| s.blade(slot).and_then(|b| b.incident).map_or(0, |i| i.id);
                let (quoted, partner_quoted) = if rnd(2) == 0 {
                    (open(slot), open(Slot(3 - slot.get())))
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
                        failed_slot: Slot(3 - slot.get()),
                        name: name(["g", "h"][rnd(2) as usize]),
                        started: rnd(2) == 0,
                    },
                    8 => AgentInput::OrderUndelivered {
                        kind: OrderKind::RestartPartnerGuests,
                        incident: Some(quoted),
                        reason: Undelivered::Unacknowledged,
                    },
                    9 => AgentInput::GuestUnprotected {
                        owner_slot: Slot(rnd(4) as u8),
                        reason: UnprotectedReason::DiskPath,
                        name: ReportText::try_from("g").unwrap(),
                        text: ReportText::new(),
                    },
                    _ => AgentInput::AllReported {
                        failed_slot: Slot(3 - slot.get()),
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
                        began[usize::from(d.slot.get())] = Some((d.incident, step, now));
                    }
                }
                Output::Ipmb {
                    dest,
                    rq_seq,
                    request,
                } => {
                    let (net_fn, cmd) = (request.net_fn(), request.cmd());
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
                    let (id, began_in, began_at) = began[usize::from(failed_slot.get())]
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
