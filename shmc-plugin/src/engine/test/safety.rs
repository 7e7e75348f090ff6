//! The safety invariant: no failover without a confirmed fence; no fence on
//! uncorroborated silence, never both of a pair fenced on silence.

use super::*;
use crate::config::Timing;

/// Deterministic pseudo-random inputs; after every input, every failover
/// order must name a blade whose fence is confirmed by its own agent's
/// self-fence confirmation, or by a hot-swap M1/M0 observed after the
/// incident's fence began: a hot-swap event of a later input than the one
/// that opened the incident, or the answer to a Get Sensor Reading sent no
/// earlier than that input. In both cases the reading's time is at or after
/// the fence's start.
///
/// Silences on both channels: for stretches of the walk a blade's IPMC (its
/// responses and events) or its agent (its inputs) or both are dropped, or
/// its agent is cut from the shelf manager while its partner still hears it.
/// Every `blade_lost` on IPMC silence has neither the blade's agent heard
/// nor its partner's report of hearing it within the heartbeat timeout;
/// every `host_os` on agent silence has no such partner report; both blades
/// of the pair never have silence-based incidents open at once; a
/// watchdog proof names a blade whose last registration announced a
/// watchdog of T (a refused announcement of 0 ms counts as none), unheard
/// on every channel for longer than T and a heartbeat timeout, and whose
/// partner's latest report on it came within a heartbeat timeout and said
/// it had not heard it for at least T and a heartbeat timeout.
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
    let mut by_watchdog = 0;
    let t = Timing::DEFAULT;
    let hb = t.heartbeat_timeout_ms;
    // Per slot (index 1, 2): silence mode (bit 0: IPMC dropped, bit 1: agent
    // dropped, bit 2: agent cut from the shelf manager only, its partner
    // still hears it), next periodic heartbeat, last IPMC input, last agent input,
    // latest time its partner reported hearing it, time of the partner's
    // latest report on it, watchdog of its last registration, and the
    // decision of its silence-based incident.
    let mut mode = [0u64; 3];
    let mut next_beat = [0u64; 3];
    let mut ipmc_last = [0u64; 3];
    let mut agent_last: [Option<u64>; 3] = [None; 3];
    let mut partner_heard: [Option<u64>; 3] = [None; 3];
    let mut partner_report: [Option<u64>; 3] = [None; 3];
    let mut watchdog: [Option<u32>; 3] = [None; 3];
    let mut silence_decisions: std::vec::Vec<u32> = std::vec::Vec::new();
    let mut seen: std::collections::BTreeMap<&'static str, u32> = Default::default();
    // (dest, netFn, cmd, rqSeq, input that sent it, time it was sent).
    let mut outstanding: std::vec::Vec<(IpmbAddr, u8, u8, u8, usize, u64)> = std::vec::Vec::new();
    // Per slot: (decision, input that opened it, time) of the open incident.
    let mut began: [Option<(u32, usize, u64)>; 3] = [None; 3];
    for step in 0..200_000usize {
        now += rnd(40);
        if step % 300 == 0 {
            for m in &mut mode[1..] {
                // Half the stretches without silence.
                *m = rnd(10).saturating_sub(5);
            }
        }
        let gen = if rnd(2) == 0 { A } else { B };
        let slot = if gen == A { Slot(1) } else { Slot(2) };
        let i = usize::from(slot.get());
        let ipmc_up = mode[i] & 1 == 0;
        let agent_up = mode[i] & 6 == 0;
        let mut self_fence_fed = None;
        let mut event_of = None;
        let mut answered = None;
        let due = [1usize, 2]
            .into_iter()
            .find(|&j| mode[j] & 6 == 0 && now >= next_beat[j]);
        if let Some(j) = due {
            // The periodic heartbeat, with what it heard of its partner.
            next_beat[j] = now + 150 + rnd(150);
            let ago = match rnd(4) {
                0 => None,
                1 => Some(rnd(3000) as u32),
                _ => Some(rnd(300) as u32),
            };
            // A partner whose agent is dropped is not heard by this one
            // either: it reports the time since it last spoke.
            let ago = if mode[3 - j] & 2 == 0 {
                ago
            } else {
                let last = agent_last[3 - j].unwrap_or(0);
                ago.map(|_| u32::try_from(now - last).unwrap_or(u32::MAX))
            };
            agent_last[j] = Some(now);
            if let Some(a) = ago {
                let at = now.saturating_sub(u64::from(a));
                let p = &mut partner_heard[3 - j];
                *p = Some(p.map_or(at, |h| h.max(at)));
                partner_report[3 - j] = Some(now);
            }
            s.on_agent(
                now,
                Slot(j as u8),
                AgentInput::Heartbeat {
                    hypervisor_ok: rnd(50) != 0,
                    partner_heard_ago_ms: ago,
                },
            );
        } else {
            match rnd(12) {
                0 | 1 if !ipmc_up => {}
                2 if !agent_up => {}
                0 => {
                    ipmc_last[i] = now;
                    let cur = rnd(8) as u8;
                    let prev = rnd(9) as u8;
                    let prev = if prev == 8 { None } else { Some(prev) };
                    event_of = Some(slot);
                    s.on_platform_event(now, rnd(64) as u8, &hs(gen, cur, prev));
                }
                1 => {
                    ipmc_last[i] = now;
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
                    let open =
                        |slot: Slot| s.blade(slot).and_then(|b| b.incident).map_or(0, |i| i.id);
                    let (quoted, partner_quoted) = if rnd(2) == 0 {
                        (open(slot), open(Slot(3 - slot.get())))
                    } else {
                        (rnd(40) as u32, rnd(40) as u32)
                    };
                    let input = match rnd(11) {
                        0 => {
                            let wd = [None, Some(0), Some(1000), Some(3000)][rnd(4) as usize];
                            let interval = [0, 200, 400][rnd(3) as usize];
                            // A watchdog of 0 ms is refused, and so is any watchdog with an
                            // unknown interval or one the heartbeat timeout does not cover
                            // three times.
                            watchdog[i] = wd.filter(|&w| {
                                w != 0 && interval != 0 && u64::from(interval) * 3 <= hb
                            });
                            AgentInput::Hello {
                                heartbeat_interval_ms: interval,
                                watchdog_ms: wd,
                                live_migration: rnd(2) == 0,
                            }
                        }
                        1 => AgentInput::Heartbeat {
                            hypervisor_ok: rnd(2) == 0,
                            partner_heard_ago_ms: None,
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
                            partner_running: false,
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
                    if !matches!(input, AgentInput::OrderUndelivered { .. }) {
                        agent_last[i] = Some(now);
                    }
                    s.on_agent(now, slot, input);
                }
                3 | 4 => {
                    // Answer an outstanding request with a random hot-swap state.
                    if let Some(i) =
                        (!outstanding.is_empty()).then(|| rnd(outstanding.len() as u64) as usize)
                    {
                        let (dest, net_fn, code, seq, sent_in, sent_at) =
                            outstanding.swap_remove(i);
                        let j = if dest == A { 1 } else { 2 };
                        if mode[j] & 1 != 0 {
                            // Lost on the way.
                            continue;
                        }
                        ipmc_last[j] = now;
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
        }
        for o in drain(&mut s) {
            match o {
                Output::Decision(d) => {
                    let j = usize::from(d.slot.get());
                    let b = s.blade(d.slot).unwrap();
                    if b.incident.is_some_and(|i| i.id == d.incident) {
                        began[j] = Some((d.incident, step, now));
                    }
                    *seen.entry(d.class.as_str()).or_default() += 1;
                    let partner_hears = partner_heard[j].is_some_and(|h| now - h < hb);
                    match (d.class, d.cause) {
                        (Class::BladeLost, Cause::ProbeLoss { .. }) => {
                            let agent_heard = agent_last[j].is_some_and(|h| now - h < hb);
                            assert!(
                                !agent_heard && !partner_hears,
                                "step {step}: blade_lost of slot {} on IPMC silence while its agent is heard: {agent_last:?} {partner_heard:?}",
                                d.slot
                            );
                            silence_decisions.push(d.incident);
                        }
                        (Class::HostOs, Cause::HeartbeatLoss { .. }) => {
                            assert!(
                                !partner_hears,
                                "step {step}: host_os of slot {} while its partner hears it",
                                d.slot
                            );
                            silence_decisions.push(d.incident);
                        }
                        _ => {}
                    }
                }
                Output::Alert(a) => *seen.entry(a.kind()).or_default() += 1,
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
                    assert!(inc.state.is_confirmed());
                    assert_eq!(inc.state.proof(), Some(fence));
                    let (id, began_in, began_at) = began[usize::from(failed_slot.get())]
                        .expect("failover of an incident never opened");
                    assert_eq!(id, inc.id, "failover of another incident");
                    match fence {
                        Confirmation::SelfFenced => {
                            assert!(
                                inc.state.self_fence() && self_fence_fed == Some(failed_slot),
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
                        Confirmation::WatchdogExpired => {
                            let j = usize::from(failed_slot.get());
                            let wd = watchdog[j].expect("watchdog proof without an announcement");
                            let last = [Some(ipmc_last[j]), agent_last[j], partner_heard[j]]
                                .into_iter()
                                .flatten()
                                .max()
                                .unwrap();
                            assert!(
                                now - last > u64::from(wd) + hb,
                                "step {step}: watchdog proof of slot {failed_slot} heard {} ms ago (watchdog {wd} ms)",
                                now - last
                            );
                            let report = partner_report[j]
                                .expect("watchdog proof without a report of the partner");
                            assert!(
                                now - report < hb
                                    && report - partner_heard[j].unwrap() >= u64::from(wd) + hb,
                                "step {step}: watchdog proof of slot {failed_slot} on a stale or short partner report at {report} ms (heard {:?})",
                                partner_heard[j]
                            );
                            by_watchdog += 1;
                        }
                    }
                }
                _ => {}
            }
        }
        let silence_open = |slot: u8| {
            s.blade(Slot(slot))
                .and_then(|b| b.incident)
                .is_some_and(|i| silence_decisions.contains(&i.id))
        };
        assert!(
            !(silence_open(1) && silence_open(2)),
            "step {step}: both blades of the pair fenced on silence"
        );
    }
    println!("{failovers} failovers, {by_watchdog} by watchdog; {seen:?}");
    assert!(
        failovers > 10,
        "the walk must reach failovers ({failovers})"
    );
    assert!(
        self_fenced > 0 && by_event > 0 && by_poll > 0,
        "the walk must reach every kind of proof: {self_fenced} self-fenced, {by_event} by event, {by_poll} by poll"
    );
    assert!(by_watchdog > 0, "the walk must reach a watchdog proof");
    for kind in [
        "ipmc_lost",
        "agent_link_lost",
        "ipmb_suspect",
        "network_suspect",
        "fence_withheld",
        "heartbeat_timing",
        "watchdog_refused",
    ] {
        assert!(
            seen.contains_key(kind),
            "the walk must reach {kind}: {seen:?}"
        );
    }
    assert_eq!(s.counters().unsafe_failover_refused, 0);
}
