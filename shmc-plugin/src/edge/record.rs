//! The decision stream: one JSON object per line, the same record types for
//! every event source.
//!
//! `shmc-plugin replay` prints these records on stdout; `shmc-plugin run`
//! with a SEL source (RMCP+, system interface) writes them to
//! `--decisions-json`. Every source uses the types below; fields that only a
//! live source knows are `Option`s left out of the line when `None`
//! (`skip_serializing_if`), and `replay` fills exactly the fields it has
//! always printed, so its output stays byte for byte what the golden files in
//! `shmc-plugin/tests/captures` hold. Fields are written in declaration order.
//!
//! # Record kinds
//!
//! | line | fields (in order; *italic* = live sources only) |
//! |------|--------|
//! | event | `t_ms`, *`record_id`*, *`timestamp`*, `event` ([`EventFields`]), *`outcome`* |
//! | decision | `t_ms` (of the causing input), `decision` ([`DecisionFields`]) |
//! | alert (every source; replay too) | `t_ms`, `alert`, `kind`, `slot`?, `incident`?, then per kind: `not_started`, `not_started_unnamed`, `started`, `reported` (guests_not_restarted); `order`, `reason` (order_undelivered); `guest`, `reason`, `detail`, `reporter` (guest_unprotected) |
//! | source (live only) | `t_ms`, `source`: `state` (`up`, `down`, `refused`), `outage_ms` (up) or `reason` (down, refused) |
//! | stop (live only) | `t_ms`, `stop`: `signal`, `open_decisions` |
//! | summary (replay only, last) | `summary` ([`Summary`]) |
//!
//! [`EventFields`]: `generator`, *`generator_lun`*, `sensor_type`,
//! `sensor_number`, `event_type`, `assertion`, `event_data` (3 numbers),
//! `offset`; hot-swap events (sensor type 0xF0) add `m_state`,
//! `previous_m_state`, `cause`, `fru_id` (numbers, `null` when unknown).
//!
//! [`DecisionFields`]: *`incident`*, `class`, `slot`, `ipmb_address`,
//! `partner_slot`, `actions` (names in order), *`cause`* (text).
//!
//! `t_ms` is the core's clock: milliseconds since start (not counting
//! session outages of a SEL source), or the capture's time in `replay`.

use core::fmt::Display;
use std::io::{self, Write};

use serde::{Serialize, Serializer};

use crate::engine::{unprotected_reason_str, Alert, Decision, EventOutcome};
use crate::wire::addr::{IpmbAddr, Slot};
use crate::wire::event::{PlatformEvent, SensorType};

/// Serializes a value through its `Display` (a JSON string, no allocation).
#[derive(Debug, Clone, Copy)]
pub struct Shown<T>(pub T);

impl<T: Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A list of names serialized as a JSON array of strings.
#[derive(Debug, Clone, Copy)]
pub struct Names<I>(pub I);

impl<I, T> Serialize for Names<I>
where
    I: IntoIterator<Item = T> + Clone,
    T: Display,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.clone().into_iter().map(Shown))
    }
}

/// The decoded fields of a Platform Event.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EventFields {
    /// 8-bit address of the generator.
    pub generator: IpmbAddr,
    /// LUN of the generator (live sources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator_lun: Option<u8>,
    /// Sensor type code.
    pub sensor_type: u8,
    /// Sensor number.
    pub sensor_number: u8,
    /// Event/reading type code.
    pub event_type: u8,
    /// Assertion (true) or deassertion.
    pub assertion: bool,
    /// Event data 1-3.
    pub event_data: [u8; 3],
    /// Event offset (event data 1, low nibble).
    pub offset: u8,
    /// Hot-swap events: state entered (`null`: not a valid state).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub m_state: Option<Option<u8>>,
    /// Hot-swap events: state left (`null`: not said).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_m_state: Option<Option<u8>>,
    /// Hot-swap events: cause of the transition (`null`: unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Option<u8>>,
    /// Hot-swap events: FRU device id (`null`: not a valid hot-swap event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fru_id: Option<Option<u8>>,
}

impl EventFields {
    /// The fields of `ev`; `with_lun` adds the generator's LUN (live sources).
    pub fn of(ev: &PlatformEvent, with_lun: bool) -> Self {
        let hot_swap = ev.sensor_type == SensorType::FruHotSwap;
        let hs = ev.hot_swap();
        let when = |v: Option<u8>| hot_swap.then_some(v);
        Self {
            generator: ev.generator,
            generator_lun: with_lun.then_some(ev.generator_lun),
            sensor_type: ev.sensor_type.into(),
            sensor_number: ev.sensor_number,
            event_type: ev.event_type,
            assertion: ev.assertion,
            event_data: ev.event_data,
            offset: ev.offset(),
            m_state: when(hs.map(|h| h.current as u8)),
            previous_m_state: when(hs.and_then(|h| h.previous).map(|m| m as u8)),
            cause: when(hs.and_then(|h| h.cause)),
            fru_id: when(hs.map(|h| h.fru_id)),
        }
    }
}

/// What the core made of an event, as text (`recorded: ...`, `decided: ...`).
#[derive(Debug, Clone, Copy)]
pub struct OutcomeText<'a>(pub &'a EventOutcome);

impl Display for OutcomeText<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            EventOutcome::Duplicate => f.write_str("duplicate"),
            EventOutcome::UnknownGenerator => f.write_str("unknown_generator"),
            EventOutcome::Recorded(r) => write!(f, "recorded: {}", r.as_str()),
            EventOutcome::Repeated(c) => write!(f, "repeated: {c}"),
            EventOutcome::Suppressed(c) => write!(f, "suppressed: {c}"),
            EventOutcome::Decided(c) => write!(f, "decided: {c}"),
        }
    }
}

/// An event line.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EventRecord<'a> {
    /// The core's time of the event.
    pub t_ms: u64,
    /// SEL record id (SEL sources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<u16>,
    /// SEL timestamp (SEL sources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u32>,
    /// The event.
    pub event: EventFields,
    /// What the core made of it (live sources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Shown<OutcomeText<'a>>>,
}

/// The fields of a decision.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DecisionFields<'a> {
    /// Decision number (live sources; the agents' incident).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<u32>,
    /// Failure class (snake_case).
    pub class: &'static str,
    /// Slot of the failed blade.
    pub slot: Slot,
    /// IPMB address of its IPMC.
    pub ipmb_address: IpmbAddr,
    /// Slot of its partner.
    pub partner_slot: Slot,
    /// Recovery steps, in order.
    pub actions: Names<ActionNames<'a>>,
    /// What caused it, as text (live sources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Shown<&'a crate::engine::Cause>>,
}

/// The action names of a decision.
#[derive(Debug, Clone, Copy)]
pub struct ActionNames<'a>(&'a Decision);

impl<'a> IntoIterator for ActionNames<'a> {
    type Item = &'static str;
    type IntoIter = core::iter::Map<
        core::slice::Iter<'a, crate::engine::Action>,
        fn(&crate::engine::Action) -> &'static str,
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.actions.iter().map(|a| a.as_str())
    }
}

/// A decision line.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DecisionRecord<'a> {
    /// Time of the input that caused the decision.
    pub t_ms: u64,
    /// The decision.
    pub decision: DecisionFields<'a>,
}

impl<'a> DecisionRecord<'a> {
    /// The line of `d`; `live` adds its incident number and cause.
    pub fn of(d: &'a Decision, live: bool) -> Self {
        Self {
            t_ms: d.t_ms,
            decision: DecisionFields {
                incident: live.then_some(d.incident),
                class: d.class.as_str(),
                slot: d.slot,
                ipmb_address: d.ipmb_address,
                partner_slot: d.partner_slot,
                actions: Names(ActionNames(d)),
                cause: live.then_some(Shown(&d.cause)),
            },
        }
    }
}

/// An alert line: its text, its stable snake_case `kind`, the blade and
/// decision it is about when it has them, and per kind what it names.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AlertRecord<'a> {
    /// The core's time when the alert was raised.
    pub t_ms: u64,
    /// The alert as text.
    pub alert: Shown<&'a Alert>,
    /// Its kind.
    pub kind: &'static str,
    /// The blade it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<Slot>,
    /// The decision it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<u32>,
    /// guests_not_restarted: the guests not started, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_started: Option<Names<GuestNames<'a>>>,
    /// guests_not_restarted: how many more were not named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_started_unnamed: Option<u16>,
    /// guests_not_restarted: how many were started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<u16>,
    /// guests_not_restarted: whether the agent reported all it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported: Option<bool>,
    /// order_undelivered: the order's kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<&'static str>,
    /// guest_unprotected: the guest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest: Option<&'a str>,
    /// order_undelivered and guest_unprotected: why; guests_not_restarted: `partner_running`
    /// when the partner refused guests because the failed blade's agent still reports
    /// running guests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// guest_unprotected: the agent's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
    /// guest_unprotected: the slot whose agent reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporter: Option<Slot>,
}

/// The guest names of a guests_not_restarted alert.
#[derive(Debug, Clone, Copy)]
pub struct GuestNames<'a>(&'a crate::engine::GuestList);

impl<'a> IntoIterator for GuestNames<'a> {
    type Item = &'a str;
    type IntoIter = core::iter::Map<
        core::slice::Iter<'a, crate::engine::GuestName>,
        fn(&'a crate::engine::GuestName) -> &'a str,
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.names.iter().map(|n| n.as_str())
    }
}

impl<'a> AlertRecord<'a> {
    /// The line of alert `a` raised at `t_ms`.
    pub fn of(t_ms: u64, a: &'a Alert) -> Self {
        let mut r = Self {
            t_ms,
            alert: Shown(a),
            kind: a.kind(),
            slot: a.slot(),
            incident: a.incident(),
            not_started: None,
            not_started_unnamed: None,
            started: None,
            reported: None,
            order: None,
            guest: None,
            reason: None,
            detail: None,
            reporter: None,
        };
        match a {
            Alert::GuestsNotRestarted {
                not_started,
                started,
                reported,
                partner_running,
                ..
            } => {
                r.not_started = Some(Names(GuestNames(not_started)));
                r.not_started_unnamed = Some(not_started.more);
                r.started = Some(*started);
                r.reported = Some(*reported);
                r.reason = partner_running.then_some("partner_running");
            }
            Alert::OrderUndelivered { kind, reason, .. } => {
                r.order = Some(kind.as_str());
                r.reason = Some(reason.as_str());
            }
            Alert::GuestUnprotected {
                reporter,
                reason,
                name,
                text,
                ..
            } => {
                r.guest = Some(name.as_str());
                r.reason = Some(unprotected_reason_str(*reason));
                r.detail = Some(text.as_str());
                r.reporter = Some(*reporter);
            }
            _ => {}
        }
        r
    }
}

/// The state of a SEL source's session.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SourceState<'a> {
    /// The session is open; `outage_ms` is how long it was down (0 at start).
    Up {
        /// Length of the outage that ended.
        outage_ms: u64,
    },
    /// The session was lost.
    Down {
        /// Why.
        reason: &'a str,
    },
    /// The peer refused the session (not retried).
    Refused {
        /// Why.
        reason: &'a str,
    },
}

/// A source line.
#[derive(Debug, Clone, Serialize)]
pub struct SourceRecord<'a> {
    /// The core's time.
    pub t_ms: u64,
    /// The new state.
    pub source: SourceState<'a>,
}

/// The fields of a stop line.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StopFields<'a> {
    /// The signal (`SIGTERM`, `SIGINT`).
    pub signal: &'static str,
    /// Decisions whose work was still open.
    pub open_decisions: &'a [u32],
}

/// The last line of a run stopped by a signal.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StopRecord<'a> {
    /// The core's time.
    pub t_ms: u64,
    /// The stop.
    pub stop: StopFields<'a>,
}

/// Totals of one replay (the summary line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Valid IPMB messages.
    pub frames: u64,
    /// Lines whose bytes are not a valid IPMB message.
    pub bad_frames: u64,
    /// Platform Events accepted (duplicates excluded).
    pub events: u64,
    /// Decisions.
    pub decisions: u64,
    /// Duplicate Platform Events.
    pub duplicates: u64,
    /// Platform Events from unconfigured generators.
    pub unknown_generator: u64,
    /// Platform Events with fewer than 7 data bytes.
    pub bad_events: u64,
    /// Responses seen.
    pub responses: u64,
    /// Responses matching no request of ours.
    pub unmatched_responses: u64,
    /// Requests other than Platform Events.
    pub other_requests: u64,
    /// IPMB requests the core would have sent (retries included).
    pub requests_sent: u64,
    /// Agent orders the core would have sent.
    pub orders: u64,
    /// Alerts raised.
    pub alerts: u64,
}

/// The summary line.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SummaryRecord {
    /// The totals.
    pub summary: Summary,
}

/// Any line of the decision stream.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Record<'a> {
    /// An event.
    Event(EventRecord<'a>),
    /// A decision.
    Decision(DecisionRecord<'a>),
    /// An alert.
    Alert(AlertRecord<'a>),
    /// A source state change.
    Source(SourceRecord<'a>),
    /// A stop.
    Stop(StopRecord<'a>),
    /// The replay summary.
    Summary(SummaryRecord),
}

/// Where records go.
pub trait RecordSink {
    /// Writes one record.
    fn record(&mut self, r: &Record<'_>) -> io::Result<()>;
}

/// No decision stream: records are dropped.
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl RecordSink for Discard {
    fn record(&mut self, _r: &Record<'_>) -> io::Result<()> {
        Ok(())
    }
}

/// JSON lines to a writer; `flush_each` flushes after every line (a live
/// stream read as it is written), otherwise the writer's buffer decides.
pub struct JsonLines<W: Write> {
    out: W,
    flush_each: bool,
}

impl<W: Write> JsonLines<W> {
    /// Writes to `out`.
    pub fn new(out: W, flush_each: bool) -> Self {
        Self { out, flush_each }
    }

    /// Flushes the writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> RecordSink for JsonLines<W> {
    fn record(&mut self, r: &Record<'_>) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, r)?;
        self.out.write_all(b"\n")?;
        if self.flush_each {
            self.out.flush()?;
        }
        Ok(())
    }
}

impl<S: RecordSink + ?Sized> RecordSink for &mut S {
    fn record(&mut self, r: &Record<'_>) -> io::Result<()> {
        (**self).record(r)
    }
}

/// A slot is recorded as its number.
impl Serialize for Slot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.get())
    }
}

/// An IPMB address is recorded as its 8-bit number.
impl Serialize for IpmbAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.get())
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::Value;

    fn line(r: &Record<'_>) -> Value {
        serde_json::to_value(r).unwrap()
    }

    #[test]
    fn test_alert_lines_name_their_kind() {
        use crate::engine::{GuestList, GuestName, OrderKind, ReportText, Undelivered};
        let mut not_started = GuestList::new();
        not_started.add(&GuestName::try_from("db").unwrap());
        not_started.more = 2;
        let a = Alert::GuestsNotRestarted {
            slot: Slot(1),
            incident: 7,
            not_started,
            started: 3,
            reported: false,
            partner_running: false,
        };
        let v = line(&Record::Alert(AlertRecord::of(40, &a)));
        assert_eq!(v["kind"], "guests_not_restarted");
        assert_eq!(v["alert"], a.to_string());
        assert_eq!(
            (&v["t_ms"], &v["slot"], &v["incident"]),
            (&40.into(), &1.into(), &7.into())
        );
        assert_eq!(v["not_started"], serde_json::json!(["db"]));
        assert_eq!(v["not_started_unnamed"], 2);
        assert_eq!((&v["started"], &v["reported"]), (&3.into(), &false.into()));
        let a = Alert::OrderUndelivered {
            slot: Slot(2),
            incident: None,
            kind: OrderKind::Evacuate,
            reason: Undelivered::Rejected,
        };
        let v = line(&Record::Alert(AlertRecord::of(1, &a)));
        assert_eq!(
            (&v["kind"], &v["order"], &v["reason"]),
            (
                &"order_undelivered".into(),
                &"evacuate".into(),
                &"rejected".into()
            )
        );
        assert!(v.get("incident").is_none());
        let a = Alert::GuestUnprotected {
            owner_slot: Slot(3),
            reporter: Slot(4),
            reason: shelfha_proto::UnprotectedReason::HostDevice,
            name: ReportText::try_from("gpu-vm").unwrap(),
            text: ReportText::new(),
        };
        let v = line(&Record::Alert(AlertRecord::of(1, &a)));
        assert_eq!(
            (
                &v["kind"],
                &v["slot"],
                &v["guest"],
                &v["reason"],
                &v["reporter"]
            ),
            (
                &"guest_unprotected".into(),
                &3.into(),
                &"gpu-vm".into(),
                &"host_device".into(),
                &4.into()
            )
        );
        let a = Alert::UnknownGenerator {
            address: IpmbAddr(0xC2),
        };
        let v = line(&Record::Alert(AlertRecord::of(1, &a)));
        assert_eq!(v["kind"], "unknown_generator");
        assert!(v.get("slot").is_none());
    }

    #[test]
    fn test_source_and_stop_lines() {
        let up = Record::Source(SourceRecord {
            t_ms: 5,
            source: SourceState::Up { outage_ms: 7 },
        });
        assert_eq!(
            serde_json::to_string(&up).unwrap(),
            r#"{"t_ms":5,"source":{"state":"up","outage_ms":7}}"#
        );
        let why = "gone";
        let down = Record::Source(SourceRecord {
            t_ms: 6,
            source: SourceState::Down { reason: why },
        });
        assert_eq!(
            serde_json::to_string(&down).unwrap(),
            r#"{"t_ms":6,"source":{"state":"down","reason":"gone"}}"#
        );
        let stop = Record::Stop(StopRecord {
            t_ms: 9,
            stop: StopFields {
                signal: "SIGTERM",
                open_decisions: &[1],
            },
        });
        assert_eq!(
            serde_json::to_string(&stop).unwrap(),
            r#"{"t_ms":9,"stop":{"signal":"SIGTERM","open_decisions":[1]}}"#
        );
    }
}
