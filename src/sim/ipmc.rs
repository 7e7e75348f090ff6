//! An emulated blade IPMC: hot-swap state machine, a few sensors, answers to the
//! ShMC's requests, and Platform Event Messages retransmitted until answered.
//!
//! Behaviour follows PICMG 3.0 §3.2.4 (hot swap) and §3.2.4.2 (FRU activation):
//! a deactivation walks M4 (or M5) -> M6 -> M1 and every transition is reported
//! with a FRU Hot Swap event (ED1 = 0xA0|state, ED2 = cause<<4|previous, ED3 = FRU id).
//! Time is passed in; the IPMC never reads a clock.

use std::collections::VecDeque;

use shmc_plugin::wire::addr::IpmbAddr;
use shmc_plugin::wire::cmd;
use shmc_plugin::wire::event::{
    MState, PlatformEvent, SensorType, READING_TYPE_SENSOR_SPECIFIC, READING_TYPE_THRESHOLD,
};
use shmc_plugin::wire::ipmb::{Message, Repr};

/// Sensor numbers of the emulated IPMC.
pub mod sensor {
    /// FRU 0 hot-swap sensor.
    pub const HOT_SWAP: u8 = 0;
    /// CPU temperature.
    pub const CPU_TEMP: u8 = 1;
    /// Watchdog 2.
    pub const WATCHDOG: u8 = 2;
    /// OS critical stop.
    pub const OS_STOP: u8 = 3;
    /// IPMB physical link.
    pub const IPMB_LINK: u8 = 4;
}

/// Hot-swap transition causes (PICMG 3.0 table 3-20).
pub mod cause {
    /// Normal state change.
    pub const NORMAL: u8 = 0;
    /// Commanded by the shelf manager.
    pub const SHELF_MANAGER: u8 = 1;
    /// Operator changed the handle switch.
    pub const HANDLE: u8 = 2;
}

/// A fault to inject into an emulated blade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// CPU temperature crosses its upper critical threshold (UC going high).
    CriticalTemperature,
    /// CPU temperature crosses its upper non-critical threshold (UNC going high).
    NonCriticalTemperature,
    /// Watchdog 2 expired with hard reset.
    WatchdogExpiry,
    /// OS run-time critical stop (kernel panic).
    OsCriticalStop,
    /// The IPMC stops answering and sending (communication lost).
    Silent,
    /// The operator opens the ejector handle (M4 -> M5).
    HandleOpened,
    /// IPMB-A is lost (link sensor: only B enabled).
    IpmbALost,
    /// The IPMC acknowledges deactivation requests but never leaves its state.
    IgnoreDeactivation,
}

/// A Platform Event waiting for the ShMC's response.
#[derive(Debug, Clone, Copy)]
struct PendingEvent {
    event: PlatformEvent,
    rq_seq: u8,
    next_send: u64,
    sent: bool,
}

/// One emulated IPMC.
#[derive(Debug)]
pub struct Ipmc {
    address: u8,
    shmc_address: u8,
    state: MState,
    silent: bool,
    ignore_deactivation: bool,
    next_seq: u8,
    retransmit_ms: u64,
    deactivation_step_ms: u64,
    pending: VecDeque<PendingEvent>,
    /// When set, the time at which M6 -> M1 completes.
    deactivating_until: Option<u64>,
    out: VecDeque<Message>,
    /// Requests answered, by kind, for assertions.
    pub answered: u64,
    /// Events retransmitted because the ShMC had not answered yet.
    pub retransmits: u64,
}

impl Ipmc {
    /// An IPMC at `address` (8-bit), active (M4), reporting to `shmc_address`.
    pub fn new(address: u8, shmc_address: u8) -> Self {
        Self {
            address,
            shmc_address,
            state: MState::M4,
            silent: false,
            ignore_deactivation: false,
            next_seq: 0,
            retransmit_ms: 250,
            deactivation_step_ms: 20,
            pending: VecDeque::new(),
            deactivating_until: None,
            out: VecDeque::new(),
            answered: 0,
            retransmits: 0,
        }
    }

    /// Sets how long the payload takes to shut down in M6 before M1.
    pub fn set_deactivation_time(&mut self, ms: u64) {
        self.deactivation_step_ms = ms;
    }

    /// The IPMB address.
    pub fn address(&self) -> u8 {
        self.address
    }

    /// The current hot-swap state of FRU 0.
    pub fn state(&self) -> MState {
        self.state
    }

    /// Whether the IPMC has gone silent.
    pub fn is_silent(&self) -> bool {
        self.silent
    }

    /// The sensor event a fault asserts: (sensor type, number, reading type, ED1-3);
    /// `None` for faults that are not a sensor event.
    fn fault_event(fault: Fault) -> Option<(SensorType, u8, u8, [u8; 3])> {
        let t = READING_TYPE_THRESHOLD;
        let d = READING_TYPE_SENSOR_SPECIFIC;
        Some(match fault {
            // UC going high, with trigger reading and threshold in ED2/ED3.
            Fault::CriticalTemperature => {
                (SensorType::Temperature, sensor::CPU_TEMP, t, [0x59, 95, 90])
            }
            // UNC going high.
            Fault::NonCriticalTemperature => {
                (SensorType::Temperature, sensor::CPU_TEMP, t, [0x57, 80, 75])
            }
            Fault::WatchdogExpiry => (
                SensorType::Watchdog2,
                sensor::WATCHDOG,
                d,
                [0x01, 0xFF, 0xFF],
            ),
            Fault::OsCriticalStop => (
                SensorType::OsCriticalStop,
                sensor::OS_STOP,
                d,
                [0x01, 0xFF, 0xFF],
            ),
            Fault::IpmbALost => (
                SensorType::IpmbLink,
                sensor::IPMB_LINK,
                d,
                [0x02, 0xFF, 0xFF],
            ),
            Fault::Silent | Fault::HandleOpened | Fault::IgnoreDeactivation => return None,
        })
    }

    /// Injects `fault` at `now`.
    pub fn inject(&mut self, now: u64, fault: Fault) {
        if let Some((ty, number, reading, data)) = Self::fault_event(fault) {
            self.raise(now, ty, number, reading, data, true);
            return;
        }
        match fault {
            Fault::Silent => {
                self.silent = true;
                self.pending.clear();
            }
            Fault::HandleOpened => {
                if self.state == MState::M4 {
                    self.transition(now, MState::M5, cause::HANDLE);
                }
            }
            _ => self.ignore_deactivation = true,
        }
    }

    /// Sends the deassertion of a sensor fault (e.g. the temperature is back under its
    /// threshold); false for faults that are not a sensor event.
    pub fn clear(&mut self, now: u64, fault: Fault) -> bool {
        match Self::fault_event(fault) {
            Some((ty, number, reading, data)) => {
                self.raise(now, ty, number, reading, data, false);
                true
            }
            None => false,
        }
    }

    /// Brings the blade back: answering again, activated (M1 -> M2 -> M3 -> M4).
    pub fn recover(&mut self, now: u64) {
        self.silent = false;
        self.ignore_deactivation = false;
        self.deactivating_until = None;
        if self.state != MState::M4 {
            for next in [MState::M2, MState::M3, MState::M4] {
                self.transition(now, next, cause::NORMAL);
            }
        }
    }

    /// The operator cycles the FRU through the shelf manager (deactivate, then activate), as
    /// after repairing a blade whose IPMC was lost: the IPMC answers again and walks
    /// M4 -> M6 -> M1 -> M2 -> M3 -> M4.
    pub fn cycle(&mut self, now: u64) {
        self.recover(now);
        for next in [MState::M6, MState::M1] {
            self.transition(now, next, cause::SHELF_MANAGER);
        }
        self.recover(now);
    }

    fn raise(
        &mut self,
        now: u64,
        sensor_type: SensorType,
        number: u8,
        reading_type: u8,
        data: [u8; 3],
        assertion: bool,
    ) {
        let event = PlatformEvent {
            generator: IpmbAddr(self.address),
            generator_lun: 0,
            evm_rev: cmd::EVM_REV,
            sensor_type,
            sensor_number: number,
            assertion,
            event_type: reading_type,
            event_data: data,
        };
        self.send_event(now, event);
    }

    fn transition(&mut self, now: u64, next: MState, why: u8) {
        let previous = self.state;
        self.state = next;
        let data = [0xA0 | next as u8, (why << 4) | previous as u8, 0];
        self.raise(
            now,
            SensorType::FruHotSwap,
            sensor::HOT_SWAP,
            READING_TYPE_SENSOR_SPECIFIC,
            data,
            true,
        );
    }

    fn send_event(&mut self, now: u64, event: PlatformEvent) {
        if self.silent {
            return;
        }
        let rq_seq = self.next_seq;
        self.next_seq = (self.next_seq + 1) & 0x3F;
        self.pending.push_back(PendingEvent {
            event,
            rq_seq,
            next_send: now,
            sent: false,
        });
        self.flush_events(now);
    }

    /// Sends the oldest unanswered event when due (one in flight, as an IPMC does).
    fn flush_events(&mut self, now: u64) {
        if let Some(p) = self.pending.front_mut() {
            if now >= p.next_send {
                let retransmit = p.sent;
                p.sent = true;
                p.next_send = now + self.retransmit_ms;
                let mut data = [0u8; 7];
                let repr =
                    cmd::platform_event_request(&p.event, self.shmc_address, p.rq_seq, &mut data);
                if let Ok(m) = Message::from_repr(&repr) {
                    self.out.push_back(m);
                }
                if retransmit {
                    self.retransmits += 1;
                }
            }
        }
    }

    /// Advances timers to `now`: deactivation progress, event retransmission.
    pub fn poll(&mut self, now: u64) {
        if let Some(until) = self.deactivating_until {
            if now >= until {
                self.deactivating_until = None;
                self.transition(now, MState::M1, cause::SHELF_MANAGER);
            }
        }
        if !self.silent {
            self.flush_events(now);
        }
    }

    /// Takes the next message this IPMC puts on the bus.
    pub fn pop_output(&mut self) -> Option<Message> {
        self.out.pop_front()
    }

    /// Handles a message addressed to this IPMC.
    pub fn on_message(&mut self, now: u64, msg: &Message) {
        if self.silent {
            return;
        }
        let repr = msg.repr();
        if repr.rs_sa != self.address {
            return;
        }
        if repr.is_response() {
            // The ShMC answered one of our Platform Events: stop retransmitting it.
            if repr.net_fn == cmd::NETFN_SENSOR_EVENT + 1 && repr.cmd == cmd::CMD_PLATFORM_EVENT {
                if let Some(p) = self.pending.front() {
                    if p.rq_seq == repr.rq_seq {
                        self.pending.pop_front();
                        self.flush_events(now);
                    }
                }
            }
            return;
        }
        let mut buf = [0u8; 32];
        let n = self.answer(now, &repr, &mut buf);
        let rsp = Repr::response_to(&repr, &buf[..n]);
        if let Ok(m) = Message::from_repr(&rsp) {
            self.answered += 1;
            self.out.push_back(m);
        }
    }

    /// Fills `buf` with the response data (completion code first); returns its length.
    fn answer(&mut self, now: u64, req: &Repr<'_>, buf: &mut [u8; 32]) -> usize {
        const CC_INVALID_COMMAND: u8 = 0xC1;
        const CC_INVALID_DATA: u8 = 0xCC;
        match (req.net_fn, req.cmd) {
            (cmd::NETFN_APP, cmd::CMD_GET_DEVICE_ID) => {
                let rsp = [
                    0x00, 0x12, 0x81, 0x01, 0x00, 0x02, 0x3F, 0x5A, 0x31, 0x00, 0x01, 0x00,
                ];
                buf[..rsp.len()].copy_from_slice(&rsp);
                rsp.len()
            }
            (cmd::NETFN_SENSOR_EVENT, cmd::CMD_GET_SENSOR_READING)
                if req.data.first() == Some(&sensor::HOT_SWAP) =>
            {
                let bits = 1u8 << (self.state as u8);
                let rsp = [0x00, 0x00, 0xC0, bits, 0x80];
                buf[..rsp.len()].copy_from_slice(&rsp);
                rsp.len()
            }
            (cmd::NETFN_GROUP_EXT, cmd::CMD_SET_FRU_ACTIVATION) => {
                if req.data.len() < 3 || req.data[0] != cmd::PICMG_ID || req.data[1] != 0 {
                    buf[0] = CC_INVALID_DATA;
                    return 1;
                }
                if req.data[2] == 0
                    && !self.ignore_deactivation
                    && matches!(self.state, MState::M3 | MState::M4 | MState::M5)
                {
                    self.transition(now, MState::M6, cause::SHELF_MANAGER);
                    self.deactivating_until = Some(now + self.deactivation_step_ms);
                } else if req.data[2] == 1 && self.state == MState::M1 {
                    for next in [MState::M2, MState::M3, MState::M4] {
                        self.transition(now, next, cause::SHELF_MANAGER);
                    }
                }
                buf[..2].copy_from_slice(&[0x00, cmd::PICMG_ID]);
                2
            }
            (cmd::NETFN_GROUP_EXT, cmd::CMD_FRU_CONTROL)
            | (cmd::NETFN_GROUP_EXT, cmd::CMD_SET_POWER_LEVEL) => {
                // A cold reset or power-off of an IPMC that ignores deactivation changes nothing.
                buf[..2].copy_from_slice(&[0x00, cmd::PICMG_ID]);
                2
            }
            _ => {
                buf[0] = CC_INVALID_COMMAND;
                1
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use shmc_plugin::wire::cmd::FruControlOption;

    const SHMC: u8 = 0x20;
    const BLADE: u8 = 0x82;

    fn request(net_fn: u8, command: u8, seq: u8, data: &[u8]) -> Message {
        let repr = Repr {
            rs_sa: BLADE,
            net_fn,
            rs_lun: 0,
            rq_sa: SHMC,
            rq_seq: seq,
            rq_lun: 0,
            cmd: command,
            data,
        };
        Message::from_repr(&repr).unwrap()
    }

    fn drain(i: &mut Ipmc) -> Vec<Message> {
        std::iter::from_fn(|| i.pop_output()).collect()
    }

    fn hot_swap_states(msgs: &[Message]) -> Vec<(MState, Option<MState>)> {
        msgs.iter()
            .filter_map(|m| cmd::platform_event(&m.repr()).and_then(|r| r.ok()))
            .filter_map(|e| e.hot_swap())
            .map(|h| (h.current, h.previous))
            .collect()
    }

    fn ack(i: &mut Ipmc, now: u64, event: &Message) {
        let rsp = Repr::response_to(&event.repr(), &cmd::PLATFORM_EVENT_RESPONSE);
        i.on_message(now, &Message::from_repr(&rsp).unwrap());
    }

    #[test]
    fn test_deactivation_walks_m6_to_m1() {
        let mut i = Ipmc::new(BLADE, SHMC);
        i.on_message(
            0,
            &request(
                cmd::NETFN_GROUP_EXT,
                cmd::CMD_SET_FRU_ACTIVATION,
                5,
                &cmd::set_fru_activation(0, false),
            ),
        );
        let out = drain(&mut i);
        // The M6 event is sent first, then the response to our request.
        assert_eq!(hot_swap_states(&out), vec![(MState::M6, Some(MState::M4))]);
        let rsp = out.iter().find(|m| m.repr().is_response()).unwrap();
        assert_eq!(rsp.repr().rq_seq, 5);
        assert_eq!(rsp.repr().data, &[0x00, cmd::PICMG_ID]);
        let m6 = out.iter().find(|m| !m.repr().is_response()).unwrap();
        ack(&mut i, 1, m6);
        i.poll(100);
        let out = drain(&mut i);
        assert_eq!(hot_swap_states(&out), vec![(MState::M1, Some(MState::M6))]);
        assert_eq!(i.state(), MState::M1);
        // The hot-swap sensor reading now says M1.
        i.on_message(
            101,
            &request(
                cmd::NETFN_SENSOR_EVENT,
                cmd::CMD_GET_SENSOR_READING,
                6,
                &cmd::get_sensor_reading(0),
            ),
        );
        let out = drain(&mut i);
        let rsp = out.iter().find(|m| m.repr().is_response()).unwrap();
        assert_eq!(cmd::hot_swap_state(rsp.repr().data), Some(MState::M1));
    }

    #[test]
    fn test_event_retransmitted_until_answered() {
        let mut i = Ipmc::new(BLADE, SHMC);
        i.inject(0, Fault::CriticalTemperature);
        let first = drain(&mut i);
        assert_eq!(first.len(), 1);
        i.poll(100);
        assert!(drain(&mut i).is_empty());
        i.poll(250);
        let again = drain(&mut i);
        assert_eq!(
            again, first,
            "the same request, same rqSeq, is retransmitted"
        );
        ack(&mut i, 260, &again[0]);
        i.poll(1000);
        assert!(drain(&mut i).is_empty());
        assert_eq!(i.retransmits, 1);
    }

    #[test]
    fn test_ignores_deactivation_and_silence() {
        let mut i = Ipmc::new(BLADE, SHMC);
        i.inject(0, Fault::IgnoreDeactivation);
        i.on_message(
            0,
            &request(
                cmd::NETFN_GROUP_EXT,
                cmd::CMD_SET_FRU_ACTIVATION,
                1,
                &cmd::set_fru_activation(0, false),
            ),
        );
        i.on_message(
            0,
            &request(
                cmd::NETFN_GROUP_EXT,
                cmd::CMD_FRU_CONTROL,
                2,
                &cmd::fru_control(0, FruControlOption::ColdReset),
            ),
        );
        i.poll(5000);
        assert_eq!(i.state(), MState::M4);
        assert_eq!(
            drain(&mut i)
                .iter()
                .filter(|m| m.repr().is_response())
                .count(),
            2
        );
        i.inject(10, Fault::Silent);
        i.on_message(10, &request(cmd::NETFN_APP, cmd::CMD_GET_DEVICE_ID, 3, &[]));
        i.inject(11, Fault::CriticalTemperature);
        i.poll(20_000);
        assert!(drain(&mut i).is_empty());
    }

    #[test]
    fn test_clear_sends_the_deassertion() {
        let mut i = Ipmc::new(BLADE, SHMC);
        i.inject(0, Fault::NonCriticalTemperature);
        let on = drain(&mut i);
        ack(&mut i, 1, &on[0]);
        assert!(i.clear(2, Fault::NonCriticalTemperature));
        let off = drain(&mut i);
        let (a, b) = (
            cmd::platform_event(&on[0].repr()).unwrap().unwrap(),
            cmd::platform_event(&off[0].repr()).unwrap().unwrap(),
        );
        assert!(a.assertion && !b.assertion);
        assert_eq!((a.sensor_number, a.offset()), (b.sensor_number, b.offset()));
        assert!(!i.clear(3, Fault::Silent));
    }

    #[test]
    fn test_handle_opened_then_allowed_deactivation() {
        let mut i = Ipmc::new(BLADE, SHMC);
        i.inject(0, Fault::HandleOpened);
        let out = drain(&mut i);
        assert_eq!(hot_swap_states(&out), vec![(MState::M5, Some(MState::M4))]);
        let ev = cmd::platform_event(&out[0].repr())
            .unwrap()
            .unwrap()
            .hot_swap()
            .unwrap();
        assert_eq!(ev.cause, Some(cause::HANDLE));
        assert_eq!(i.state(), MState::M5);
    }
}
