//! The one runtime: what every event source does with the core.
//!
//! A [`Runtime`] owns the [`Shelf`] and is the only place that
//! - sorts an IPMB message into response, Platform Event, a request of our
//!   own address sent by another controller, or another request
//!   ([`Runtime::on_message`]), answering what must be answered through the
//!   source's [`IpmbPort`];
//! - carries out the core's outputs ([`Runtime::carry_out`]): IPMB requests
//!   to the [`IpmbPort`], orders to the [`AgentLink`], decisions and alerts
//!   to the decision stream ([`RecordSink`], records of [`super::record`]);
//! - turns events into decision-stream records.
//!
//! Sources differ only in how bytes, events and time come in: the IPMB
//! device ([`super::source::ipmb`]), a capture ([`super::source::replay`]),
//! a SEL over a session ([`super::source::sel`]), and the `shelfha demo`'s
//! simulated backplane.

use std::io;

use log::debug;

use super::agents::AgentLink;
use super::record::{
    AlertRecord, DecisionRecord, EventFields, EventRecord, OutcomeText, Record, RecordSink, Shown,
};
use crate::config::{ConfigError, ShelfConfig};
use crate::engine::{EventOutcome, Output, Shelf};
use crate::wire;
use crate::wire::addr::IpmbAddr;
use crate::wire::cmd;
use crate::wire::command::{Response, MAX_REQUEST_DATA};
use crate::wire::event::{EventError, PlatformEvent};
use crate::wire::ipmb::Repr;
use crate::wire::sel::SelRecord;

/// Completion code of the answer to a request we do not serve (invalid command).
pub const CC_INVALID_COMMAND: u8 = 0xC1;

/// How much the records of a run say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// A capture (`replay`): the event and decision fields replay has always
    /// printed, and alert lines (the same alert records as a live source).
    Capture,
    /// A live source: incident numbers, causes and outcomes too.
    Live,
}

/// The two clocks of a turn: the core's (stopped while a SEL source's
/// session is down) and the agent link's (never stopped: its retries and
/// acknowledgements run on real time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clocks {
    /// The core's time, milliseconds.
    pub core_ms: u64,
    /// The agent link's time, milliseconds.
    pub link_ms: u64,
}

impl Clocks {
    /// One clock for both.
    pub const fn same(t_ms: u64) -> Self {
        Self {
            core_ms: t_ms,
            link_ms: t_ms,
        }
    }
}

/// The IPMB side of a source.
pub trait IpmbPort {
    /// Puts a response to a request heard on the bus (a Platform Event's
    /// acknowledgement, an invalid-command answer).
    fn answer(&mut self, response: &Repr<'_>);

    /// Sends a request of the core (rqSA = own address, LUNs 0). A port that
    /// has the answer at once (a bridged request over a session) returns it:
    /// the core's time of its arrival and its data, completion code first.
    /// Answers read off a bus later come back through [`Runtime::on_message`].
    fn request(&mut self, request: &Repr<'_>) -> Option<(u64, Vec<u8>)>;
}

/// An IPMB port that sends nothing (a capture: nobody answers).
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl IpmbPort for Silent {
    fn answer(&mut self, _response: &Repr<'_>) {}

    fn request(&mut self, _request: &Repr<'_>) -> Option<(u64, Vec<u8>)> {
        None
    }
}

/// What an IPMB message was, once handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// A response (matched to our requests by the core).
    Response,
    /// A Platform Event (acknowledged), and what the core made of it.
    Event {
        /// The event.
        event: PlatformEvent,
        /// The core's verdict.
        outcome: EventOutcome,
    },
    /// A Platform Event whose data the core refuses (acknowledged all the same).
    BadEvent(EventError),
    /// Another controller's request sent from our own address (a shared
    /// bus): the core tracks the deactivations among them.
    OwnRequest,
    /// Another request (answered with invalid command when addressed to us).
    Other,
}

/// Outputs carried out, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// IPMB requests handed to the port (retries included).
    pub requests: u64,
    /// Orders handed to the agent link.
    pub orders: u64,
    /// Decisions.
    pub decisions: u64,
    /// Alerts.
    pub alerts: u64,
}

/// The core and the work every source shares.
#[derive(Debug)]
pub struct Runtime {
    shelf: Shelf,
    own_address: IpmbAddr,
    detail: Detail,
    /// Outputs carried out so far.
    pub tally: Tally,
}

impl Runtime {
    /// A runtime around a shelf built from `cfg`.
    pub fn new(cfg: ShelfConfig, detail: Detail) -> Result<Self, ConfigError> {
        let own_address = cfg.own_address;
        Ok(Self {
            shelf: Shelf::new(cfg)?,
            own_address,
            detail,
            tally: Tally::default(),
        })
    }

    /// The core.
    pub fn shelf(&self) -> &Shelf {
        &self.shelf
    }

    /// The core, for inputs that are not IPMB messages (agents, timers).
    pub fn shelf_mut(&mut self) -> &mut Shelf {
        &mut self.shelf
    }

    /// The shelf manager's own IPMB address.
    pub fn own_address(&self) -> IpmbAddr {
        self.own_address
    }

    /// Handles one valid IPMB message heard at `now`: a response goes to
    /// the core; a Platform Event is acknowledged through `port` first (an
    /// IPMC retransmits until answered), then given to the core; a request
    /// from our own address (another sender on it) is shown to the core; any
    /// other request addressed to us is answered with invalid command.
    pub fn on_message(&mut self, now: u64, repr: &Repr<'_>, port: &mut dyn IpmbPort) -> Inbound {
        match wire::command::Inbound::parse(repr) {
            wire::command::Inbound::Response {
                from,
                rq_seq,
                response,
            } => {
                self.shelf.on_response(now, from, rq_seq, &response);
                Inbound::Response
            }
            wire::command::Inbound::PlatformEvent { rq_seq, event } => {
                port.answer(&Repr::response_to(repr, &cmd::PLATFORM_EVENT_RESPONSE));
                match event {
                    Ok(event) => {
                        let outcome = self.shelf.on_platform_event(now, rq_seq, &event);
                        Inbound::Event { event, outcome }
                    }
                    Err(e) => Inbound::BadEvent(e),
                }
            }
            wire::command::Inbound::Request {
                from, to, request, ..
            } if from == self.own_address => {
                // Only the requests the core knows can deactivate a blade;
                // the others change nothing.
                if let Ok(request) = request {
                    self.shelf.on_manager_request(to, &request);
                }
                Inbound::OwnRequest
            }
            wire::command::Inbound::Request { to, .. } => {
                if to == self.own_address {
                    port.answer(&Repr::response_to(repr, &[CC_INVALID_COMMAND]));
                }
                Inbound::Other
            }
        }
    }

    /// Hands a SEL record read at `now` to the core and records it (with
    /// its record id, timestamp and outcome).
    pub fn on_logged_event(
        &mut self,
        now: u64,
        record_id: u16,
        record: &SelRecord,
        records: &mut dyn RecordSink,
    ) -> io::Result<EventOutcome> {
        let outcome = self.shelf.on_logged_event(now, &record.event);
        debug!(
            "SEL record 0x{record_id:04x} from 0x{:02x}: {outcome:?}",
            record.event.generator
        );
        records.record(&Record::Event(EventRecord {
            t_ms: now,
            record_id: Some(record_id),
            timestamp: Some(record.timestamp),
            event: EventFields::of(&record.event, true),
            outcome: Some(Shown(OutcomeText(&outcome))),
        }))?;
        Ok(outcome)
    }

    /// The record of an event heard at `t_ms` (as [`Detail`] says).
    pub fn event_record<'a>(&self, t_ms: u64, event: &PlatformEvent) -> Record<'a> {
        Record::Event(EventRecord {
            t_ms,
            record_id: None,
            timestamp: None,
            event: EventFields::of(event, self.detail == Detail::Live),
            outcome: None,
        })
    }

    /// Reads what the agent link has (each input to the core at the core's
    /// time) and runs its timers.
    pub fn on_agents(&mut self, now: Clocks, agents: &mut dyn AgentLink) {
        let shelf = &mut self.shelf;
        agents.receive(now.link_ms, &mut |slot, input| {
            shelf.on_agent(now.core_ms, slot, input)
        });
        agents.tick(now.link_ms);
    }

    /// Runs the core's timers.
    pub fn poll(&mut self, now: u64) {
        self.shelf.poll(now);
    }

    /// Carries out every output the core queued: IPMB requests to `port`
    /// (an answer it has at once goes back to the core), orders to `agents`
    /// (counted only without a link), decisions and alerts to `records`
    /// (the core logged them when it queued them). Stops at the first
    /// record that cannot be written.
    pub fn carry_out(
        &mut self,
        now: Clocks,
        port: &mut dyn IpmbPort,
        mut agents: Option<&mut dyn AgentLink>,
        records: &mut dyn RecordSink,
    ) -> io::Result<()> {
        while let Some(o) = self.shelf.pop_output() {
            match o {
                Output::Ipmb {
                    dest,
                    rq_seq,
                    request,
                } => {
                    self.tally.requests += 1;
                    let mut data = [0u8; MAX_REQUEST_DATA];
                    let n = request.emit(&mut data);
                    let (net_fn, cmd) = (request.net_fn(), request.cmd());
                    let frame = Repr {
                        rs_sa: dest.get(),
                        net_fn,
                        rs_lun: 0,
                        rq_sa: self.own_address.get(),
                        rq_seq,
                        rq_lun: 0,
                        cmd,
                        data: &data[..n],
                    };
                    if let Some((t_ms, rsp)) = port.request(&frame) {
                        let response = Response::parse(net_fn | 1, cmd, &rsp);
                        self.shelf.on_response(t_ms, dest, rq_seq, &response);
                    }
                }
                Output::Order { slot, order } => {
                    self.tally.orders += 1;
                    if let Some(a) = agents.as_deref_mut() {
                        a.send_order(now.link_ms, slot, &order);
                    }
                }
                Output::Decision(d) => {
                    self.tally.decisions += 1;
                    let live = self.detail == Detail::Live;
                    records.record(&Record::Decision(DecisionRecord::of(&d, live)))?;
                }
                Output::Alert(a) => {
                    self.tally.alerts += 1;
                    records.record(&Record::Alert(AlertRecord::of(now.core_ms, &a)))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::config::BladeConfig;
    use crate::edge::record::JsonLines;
    use crate::wire::addr::Slot;

    /// Records what the runtime put on the bus; answers nothing itself.
    #[derive(Default)]
    struct Wire {
        answers: Vec<Vec<u8>>,
        requests: Vec<(u8, u8, u8, u8)>,
    }

    impl IpmbPort for Wire {
        fn answer(&mut self, response: &Repr<'_>) {
            assert!(response.is_response());
            self.answers.push(response.data.to_vec());
        }

        fn request(&mut self, request: &Repr<'_>) -> Option<(u64, Vec<u8>)> {
            self.requests
                .push((request.rs_sa, request.rq_sa, request.net_fn, request.cmd));
            None
        }
    }

    fn runtime(detail: Detail) -> Runtime {
        let mut cfg = ShelfConfig::new(IpmbAddr(0x20));
        cfg.probing = false;
        for (slot, address, partner) in [(1, 0x82, 2), (2, 0x84, 1)] {
            cfg.blades
                .push(BladeConfig {
                    slot: Slot(slot),
                    ipmb_address: IpmbAddr(address),
                    partner: Slot(partner),
                    hot_swap_sensor: None,
                })
                .unwrap();
        }
        Runtime::new(cfg, detail).unwrap()
    }

    fn request<'a>(rq_sa: u8, rs_sa: u8, net_fn: u8, cmd: u8, data: &'a [u8]) -> Repr<'a> {
        Repr {
            rs_sa,
            net_fn,
            rs_lun: 0,
            rq_sa,
            rq_seq: 3,
            rq_lun: 0,
            cmd,
            data,
        }
    }

    /// Critical temperature (upper critical going high) from `rq_sa`.
    const CRITICAL: [u8; 7] = [0x04, 0x01, 0x01, 0x01, 0x59, 95, 90];

    #[test]
    fn test_platform_event_acknowledged_then_decided() {
        let mut rt = runtime(Detail::Live);
        let mut wire = Wire::default();
        let ev = request(
            0x82,
            0x20,
            cmd::NETFN_SENSOR_EVENT,
            cmd::CMD_PLATFORM_EVENT,
            &CRITICAL,
        );
        let got = rt.on_message(10, &ev, &mut wire);
        assert!(
            matches!(got, Inbound::Event { event, outcome: EventOutcome::Decided(_) } if event.generator == IpmbAddr(0x82)),
            "{got:?}"
        );
        assert_eq!(wire.answers, vec![cmd::PLATFORM_EVENT_RESPONSE.to_vec()]);
        // The fence goes out framed from our address; the decision is recorded with its incident.
        let mut out = JsonLines::new(Vec::new(), false);
        rt.carry_out(Clocks::same(10), &mut wire, None, &mut out)
            .unwrap();
        assert!(
            wire.requests
                .iter()
                .any(|&(to, from, net_fn, _)| (to, from, net_fn)
                    == (0x82, 0x20, cmd::NETFN_GROUP_EXT))
        );
        let text = String::from_utf8(out.into_inner()).unwrap();
        assert!(
            text.starts_with(
                "{\"t_ms\":10,\"decision\":{\"incident\":1,\"class\":\"blade_hardware\","
            ),
            "{text}"
        );
        // No agent registered: no self-fence order; the partner's order waits for the fence.
        assert_eq!(
            rt.tally,
            Tally {
                requests: 1,
                orders: 0,
                decisions: 1,
                alerts: 0
            }
        );
    }

    #[test]
    fn test_capture_detail_prints_what_replay_prints() {
        let mut rt = runtime(Detail::Capture);
        let ev = request(
            0x82,
            0x20,
            cmd::NETFN_SENSOR_EVENT,
            cmd::CMD_PLATFORM_EVENT,
            &CRITICAL,
        );
        let Inbound::Event { event, .. } = rt.on_message(7, &ev, &mut Silent) else {
            panic!("not an event");
        };
        let mut out = JsonLines::new(Vec::new(), false);
        out.record(&rt.event_record(7, &event)).unwrap();
        rt.carry_out(Clocks::same(7), &mut Silent, None, &mut out)
            .unwrap();
        let text = String::from_utf8(out.into_inner()).unwrap();
        assert_eq!(
            text,
            "{\"t_ms\":7,\"event\":{\"generator\":130,\"sensor_type\":1,\"sensor_number\":1,\"event_type\":1,\"assertion\":true,\"event_data\":[89,95,90],\"offset\":9}}\n\
             {\"t_ms\":7,\"decision\":{\"class\":\"blade_hardware\",\"slot\":1,\"ipmb_address\":130,\"partner_slot\":2,\"actions\":[\"fence_ipmb\",\"failover_to_partner\"]}}\n"
        );
    }

    #[test]
    fn test_requests_sorted_and_answered() {
        let mut rt = runtime(Detail::Live);
        let mut wire = Wire::default();
        // A request to us that we do not serve: invalid command.
        let get = request(0x82, 0x20, cmd::NETFN_APP, 0x01, &[]);
        assert_eq!(rt.on_message(1, &get, &mut wire), Inbound::Other);
        assert_eq!(wire.answers, vec![vec![CC_INVALID_COMMAND]]);
        // Between two others: not ours to answer.
        let other = request(0x82, 0x84, cmd::NETFN_APP, 0x01, &[]);
        assert_eq!(rt.on_message(1, &other, &mut wire), Inbound::Other);
        // Another sender on our address deactivating a blade: shown to the core, not answered.
        let deactivate = request(
            0x20,
            0x82,
            cmd::NETFN_GROUP_EXT,
            cmd::CMD_SET_FRU_ACTIVATION,
            &[cmd::PICMG_ID, 0, 0],
        );
        assert_eq!(
            rt.on_message(1, &deactivate, &mut wire),
            Inbound::OwnRequest
        );
        // A Platform Event with too few bytes is acknowledged and refused.
        let short = request(
            0x82,
            0x20,
            cmd::NETFN_SENSOR_EVENT,
            cmd::CMD_PLATFORM_EVENT,
            &[4],
        );
        assert!(matches!(
            rt.on_message(1, &short, &mut wire),
            Inbound::BadEvent(_)
        ));
        assert_eq!(wire.answers.len(), 2);
        // A response goes to the core's request tracker.
        let rsp = Repr::response_to(&get, &[0]);
        assert_eq!(rt.on_message(1, &rsp, &mut wire), Inbound::Response);
        assert_eq!(rt.shelf().request_stats().unmatched, 1);
    }
}
