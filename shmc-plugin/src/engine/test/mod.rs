//! Engine tests: every row of the classifier table through the shelf, the
//! incident machine, fencing escalation, the time-based rules, and the
//! safety invariant (no failover without a confirmed fence). Shared fixtures
//! here; the tests by concern in the files below.

use super::*;
use crate::config::BladeConfig;
use crate::wire::cmd;
use crate::wire::command::MAX_REQUEST_DATA;

mod agents;

/// The raw-byte inputs the engine tests are written in: an IPMB response or
/// a shelf manager's request as the bus carries them, parsed by the wire
/// layer into the typed inputs.
trait RawInputs {
    fn on_ipmb_response(
        &mut self,
        now: u64,
        from: IpmbAddr,
        rq_seq: u8,
        net_fn: u8,
        cmd: u8,
        data: &[u8],
    );
    fn on_own_request(&mut self, dest: IpmbAddr, net_fn: u8, cmd: u8, data: &[u8]);
}

impl RawInputs for Shelf {
    fn on_ipmb_response(
        &mut self,
        now: u64,
        from: IpmbAddr,
        rq_seq: u8,
        net_fn: u8,
        cmd: u8,
        data: &[u8],
    ) {
        let response = crate::wire::command::Response::parse(net_fn, cmd, data);
        self.on_response(now, from, rq_seq, &response);
    }

    fn on_own_request(&mut self, dest: IpmbAddr, net_fn: u8, cmd: u8, data: &[u8]) {
        if let Ok(req) = crate::wire::command::Request::parse(net_fn, cmd, data) {
            self.on_manager_request(dest, &req);
        }
    }
}

mod decisions;
mod fencing;
mod guests;
mod predictive;
mod reports;
mod safety;
mod silence;

const A: IpmbAddr = IpmbAddr(0x82);

/// A registration announcing nothing (no interval, no watchdog, no migration).
const HELLO: AgentInput = AgentInput::Hello {
    heartbeat_interval_ms: 0,
    watchdog_ms: None,
    live_migration: false,
};

const B: IpmbAddr = IpmbAddr(0x84);

fn config(probing: bool) -> ShelfConfig {
    let mut c = ShelfConfig::new(IpmbAddr(0x20));
    c.probing = probing;
    for (slot, addr, partner) in [(1, A, 2), (2, B, 1)] {
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

fn shelf() -> Shelf {
    Shelf::new(config(false)).unwrap()
}

fn ev(generator: IpmbAddr, sensor_type: u8, dir_type: u8, ed: [u8; 3]) -> PlatformEvent {
    PlatformEvent::parse(
        generator,
        0,
        &[0x04, sensor_type, 0x05, dir_type, ed[0], ed[1], ed[2]],
    )
    .unwrap()
}

/// FRU 0 hot-swap event, cause 0 (or 0xFF form when `prev` is None).
fn hs(generator: IpmbAddr, cur: u8, prev: Option<u8>) -> PlatformEvent {
    match prev {
        Some(p) => ev(generator, 0xF0, 0x6F, [0xA0 | cur, p, 0]),
        None => ev(generator, 0xF0, 0x6F, [0xA0 | cur, 0xFF, 0xFF]),
    }
}

fn critical_temp(generator: IpmbAddr) -> PlatformEvent {
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

fn orders(outs: &[Output]) -> std::vec::Vec<(Slot, Order)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Order { slot, order } => Some((*slot, order.clone())),
            _ => None,
        })
        .collect()
}

/// (dest, netFn, cmd, rqSeq, data) of every IPMB request, as the runtime
/// emits them.
fn requests(outs: &[Output]) -> std::vec::Vec<(IpmbAddr, u8, u8, u8, std::vec::Vec<u8>)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Ipmb {
                dest,
                rq_seq,
                request,
            } => {
                let mut data = [0u8; MAX_REQUEST_DATA];
                let n = request.emit(&mut data);
                Some((
                    *dest,
                    request.net_fn(),
                    request.cmd(),
                    *rq_seq,
                    data[..n].to_vec(),
                ))
            }
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

fn is_sensor_poll(r: &(IpmbAddr, u8, u8, u8, std::vec::Vec<u8>)) -> bool {
    r.1 == cmd::NETFN_SENSOR_EVENT && r.2 == cmd::CMD_GET_SENSOR_READING
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

/// A blade failed over on its agent's self-fence; returns its decision.
fn failed_over(s: &mut Shelf, now: u64) -> u32 {
    s.on_agent(now, Slot(1), HELLO);
    s.on_platform_event(now, 1, &critical_temp(A));
    let d = decisions(&drain(s)).remove(0);
    s.on_agent(
        now,
        Slot(1),
        AgentInput::FenceSelfConfirmed {
            incident: d.incident,
        },
    );
    assert!(is_failover(&orders(&drain(s))[0].1));
    d.incident
}

fn outcome(s: &mut Shelf, now: u64, from: Slot, guest: &str, started: bool) {
    s.on_agent(
        now,
        from,
        AgentInput::GuestOutcome {
            failed_slot: Slot(1),
            name: name(guest),
            started,
            partner_running: false,
        },
    );
}

fn unprotected(s: &mut Shelf, from: Slot, owner: Slot, guest: &str, reason: UnprotectedReason) {
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

// ----- predictive mode (blade_degraded) -----

const HOLD: u64 = 1000;

fn predictive_shelf(enabled: bool) -> Shelf {
    let mut c = config(false);
    c.predictive.enabled = enabled;
    c.predictive.degraded_hold_ms = HOLD;
    Shelf::new(c).unwrap()
}

/// Upper non-critical going high (offset 7) on temperature sensor `number`.
fn unc(generator: IpmbAddr, number: u8, assertion: bool) -> PlatformEvent {
    let dir = if assertion { 0x01 } else { 0x81 };
    PlatformEvent::parse(generator, 0, &[0x04, 0x01, number, dir, 0x57, 70, 65]).unwrap()
}

fn ecc_limit(generator: IpmbAddr) -> PlatformEvent {
    ev(generator, 0x0C, 0x6F, [0x05, 0xFF, 0xFF])
}
