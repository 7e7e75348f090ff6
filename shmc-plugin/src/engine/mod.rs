//! The shelf: per-blade state, incidents, fencing, probing and agent timers.
//! Deterministic and clock-free: every input carries `now` in milliseconds,
//! and everything the shelf wants done comes out of [`Shelf::pop_output`].
//!
//! # Inputs
//! - [`Shelf::on_platform_event`]: a decoded Platform Event (IPMB, SEL, replay);
//! - [`Shelf::on_ipmb_response`]: a response to one of our IPMB requests;
//! - [`Shelf::on_agent`]: an [`AgentInput`] from a blade agent;
//! - [`Shelf::poll`]: timers (probes, fence deadlines, confirmation polls,
//!   retries, heartbeat timeout, hypervisor grace, evacuation and guest timeouts).
//!
//! # Incident machine (one open incident per blade)
//! ```text
//! Healthy --blade_lost/blade_hardware/host_os--> Fencing(step, deadline)
//!          (+ FenceSelf to the blade's agent when it is registered)
//! Healthy --hypervisor--> SelfFencing(deadline) --deadline--> Fencing (both confirmations count)
//! Healthy --blade_extraction--> Evacuating (Evacuate order to the blade) --IncidentDone from the blade
//!          or its partner | timeout--> Fencing (deactivation, commanded)
//! Fencing --deadline--> next step: Set FRU Activation(deactivate) -> FRU Control(cold reset)
//!          -> Set Power Level 0 -> alert FenceUnconfirmed, next round from the first step (forever)
//! Fencing/SelfFencing/Evacuating --hot-swap M1/M0 observed after the incident's first fence
//!          request (event, or Get Sensor Reading sent after it), or FenceSelfConfirmed when
//!          FenceSelf was ordered--> confirmed
//! confirmed --> FailingOver (RestartPartnerGuests to the partner) --partner reports--> Recovered
//!          (no report within failover_report_timeout_ms: alert naming what was reported)
//! confirmed after an evacuation --> FailingOver as well: the partner starts
//!          the guests the evacuation stopped (it skips those that migrated)
//! any phase --hot-swap transition to M4--> closed (Healthy)
//! Healthy --blade_degraded (predictive), partner healthy--> Evacuating (Migrate order to the
//!          blade) --IncidentDone from the blade | timeout--> closed + alert (never fenced)
//! Healthy --blade_degraded, partner has an open incident or is not in M4--> alert only
//! hypervisor incident in FailingOver/Recovered --agent registered, hypervisor up--> closed
//! ```
//! "Power off" over IPMB is PICMG Set Power Level (cmd 0x11) with level 0:
//! FRU Control has no power-off option. FRU Control cold reset is the middle
//! step: it ends a payload that hangs in M6 refusing to shut down.
//!
//! SAFETY: [`Order::RestartPartnerGuests`] for a whole blade is only queued by
//! `order_failover`, which refuses unless that blade's fence is confirmed. A
//! guest failover (subset) is only queued after the blade's agent confirmed
//! the guest destroyed ([`AgentInput::GuestDestroyed`]).
//!
//! A hot-swap state is a fence proof only when it was observed after the
//! incident's first fence request (FenceSelf, Evacuate or the first IPMB fence
//! step, all queued when the incident opens): a hot-swap event received in a
//! later input, or the answer to a Get Sensor Reading sent after that moment.
//! The state the shelf last saw (a cached M1/M0, possibly stale after missed
//! events or a wrapped SEL) and the event that opened the incident prove
//! nothing; a fence that starts on a blade last seen in M1/M0 polls its
//! hot-swap sensor at once instead.
//!
//! Choices where the spec is silent:
//! - A hot-swap transition to M4 closes an incident, whatever its phase (an
//!   abandoned fence is logged). The agent must register again (Hello) after
//!   a hardware fence before its heartbeats are watched again, so a rebooting
//!   blade is not declared `host_os` while its agent starts.
//! - A heartbeat from an agent that is not registered registers it, unless its
//!   blade has an open incident (then it is ignored and counted).
//! - `hypervisor` incidents (the blade stays M4) close when, after the
//!   failover was ordered, the agent reports its hypervisor up again.
//! - IPMB link classes do not open an incident: a decision is taken when the
//!   link condition changes (ok -> degraded -> lost), not for repeats.
//! - `guest` decisions do not open an incident; crashes on a blade with an
//!   open incident are suppressed. Guest failover: the blade's agent destroys
//!   the guest (DestroyGuest), confirms, then the partner starts it.
//! - Probing is skipped for blades with an open incident (fence requests and
//!   confirmation polls watch them); silence is measured from the first poll.
//!
//! # Predictive mode (`[predictive] enabled`, off by default)
//! - A non-critical threshold assertion (offsets 0, 1, 6, 7) opens a hold in
//!   a fixed table ([`MAX_DEGRADED_HOLDS`], keyed by blade, sensor type,
//!   sensor number and offset; a repeated assertion keeps the first time).
//!   The deassertion of the same key cancels it. [`Shelf::poll`] decides
//!   `blade_degraded` once `now >= asserted + degraded_hold_ms`; the decision's
//!   `t_ms` is the time of the assertion that caused it. A full table drops
//!   the new hold (counted, one alert). A correctable-ECC logging-limit event
//!   (memory offset 5) decides at once.
//! - `blade_degraded` migrates, never fences: the blade's agent gets
//!   [`Order::Migrate`] (a guest that cannot migrate keeps running there),
//!   and the incident ends with the agent's report (or at
//!   `evacuation_timeout_ms`), followed by an [`Alert::BladeDegraded`]. A
//!   partner with an open incident or not in M4 gets nothing: alert only.
//! - A failure of the blade while its `blade_degraded` incident is open
//!   (any class that fences, extraction, hypervisor) supersedes it: the
//!   degraded incident is dropped and the new decision taken. Holds of a
//!   blade are forgotten when any incident of it is decided (a `blade_degraded`
//!   decision included: its other warnings are the same story).

mod dedupe;
mod guest;
pub mod output;
mod report;
pub mod request;
mod unprotected;

use heapless::Vec;
use log::{debug, info, warn};
use shelfha_proto::UnprotectedReason;

use crate::capacity::{MAX_BLADES, MAX_DEGRADED_HOLDS, MAX_FAILOVER_REPORTS, MAX_GUEST_FAILOVERS};
use crate::classify::{classify, predictive, BladeView, Class, Record, Verdict, Warning};
use crate::config::{BladeConfig, ConfigError, ShelfConfig};
use crate::event::{MState, PlatformEvent};
use crate::wire::cmd;

use dedupe::Dedupe;
use guest::GuestWindows;
pub use output::{
    unprotected_reason_str, Action, Alert, Cause, Confirmation, Decision, GuestList, GuestName,
    IpmbData, Order, OrderKind, Outbox, Output, ReportText, Table, Undelivered,
};
use report::Report;
pub use request::RequestStats;
use request::{Purpose, RequestTracker};
use unprotected::Unprotected;

/// Unknown IPMB addresses remembered for one alert each.
const UNKNOWN_ALERTS: usize = 8;

/// What a blade agent told us (the runtime maps protocol messages to these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentInput {
    /// The agent registered (start-up or re-registration).
    Hello,
    /// Periodic heartbeat; whether the hypervisor (libvirtd) is healthy.
    Heartbeat {
        /// Hypervisor healthy.
        hypervisor_ok: bool,
    },
    /// The hypervisor is down (grace period starts).
    HypervisorDown,
    /// The hypervisor is up again.
    HypervisorUp,
    /// All protected guests are destroyed (answer to [`Order::FenceSelf`];
    /// the runtime passes it on only when no guest remains).
    FenceSelfConfirmed {
        /// Decision quoted from the order.
        incident: u32,
    },
    /// One guest crashed.
    GuestCrashed {
        /// The guest.
        name: GuestName,
    },
    /// The guest is destroyed (answer to [`Order::DestroyGuest`]).
    GuestDestroyed {
        /// The guest.
        name: GuestName,
        /// Decision quoted from the order.
        incident: u32,
    },
    /// The partner reports one guest of `failed_slot` (started / refused / failed).
    GuestOutcome {
        /// Blade whose guest it is.
        failed_slot: u8,
        /// The guest.
        name: GuestName,
        /// Started (true) or not.
        started: bool,
    },
    /// The partner reported every guest of `failed_slot` (failover or evacuation done).
    AllReported {
        /// Blade whose guests were handled.
        failed_slot: u8,
        /// Decision quoted from the order.
        incident: u32,
    },
    /// An order to this blade's agent did not get through: the link gave up
    /// retrying it, could not send it, or the agent refused it. Fed by the
    /// runtime, not by the agent; raises [`Alert::OrderUndelivered`].
    OrderUndelivered {
        /// The order's kind.
        kind: OrderKind,
        /// The decision it served, when the link knows it.
        incident: Option<u32>,
        /// What happened to it.
        reason: Undelivered,
    },
    /// A guest of `owner_slot` is not protected by its partner (reported by
    /// the owner or by the partner that refused its definition); raises
    /// [`Alert::GuestUnprotected`] once per owner, guest and reason.
    GuestUnprotected {
        /// The blade the guest runs on.
        owner_slot: u8,
        /// Why it is not protected.
        reason: UnprotectedReason,
        /// The guest's name as reported (cut, possibly not a valid name).
        name: ReportText,
        /// Detail, may be empty.
        text: ReportText,
    },
}

/// One IPMB fence step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceStep {
    /// PICMG Set FRU Activation, deactivate FRU 0.
    Deactivate,
    /// PICMG FRU Control, cold reset FRU 0.
    ColdReset,
    /// PICMG Set Power Level 0 for FRU 0.
    PowerOff,
}

/// Phase of an open incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Extraction: waiting for the partner to report the evacuation.
    Evacuating {
        /// When deactivation proceeds anyway.
        deadline: u64,
    },
    /// `hypervisor`: waiting for the agent's FenceSelf confirmation.
    SelfFencing {
        /// When the IPMB fence joins in.
        deadline: u64,
    },
    /// IPMB fence in progress.
    Fencing {
        /// Current step.
        step: FenceStep,
        /// When the next step starts.
        deadline: u64,
        /// Completed rounds of all steps.
        rounds: u32,
    },
    /// Fence confirmed; the partner was ordered to restart the guests.
    FailingOver,
    /// Recovery done; waiting for the blade to come back.
    Recovered,
}

/// An open incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incident {
    /// Decision number.
    pub id: u32,
    /// Class.
    pub class: Class,
    /// When it opened.
    pub opened_ms: u64,
    /// Phase.
    pub phase: Phase,
    /// The fence is confirmed.
    pub confirmed: bool,
    /// Extraction: the partner reported the evacuation.
    pub evacuated: bool,
    /// How the fence was confirmed, once it is.
    pub proof: Option<Confirmation>,
    /// The blade's agent was ordered to destroy its guests (FenceSelf); its
    /// confirmation then counts as the fence.
    pub self_fence: bool,
}

/// IPMB link condition as last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Link {
    /// Both buses (or nothing reported).
    #[default]
    Ok,
    /// One bus lost.
    Degraded,
    /// Both buses lost.
    Lost,
}

/// What the shelf knows about one blade (see [`Shelf::blade`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BladeStatus {
    /// Configuration.
    pub config: BladeConfig,
    /// Last M-state of FRU 0 seen (event or poll).
    pub m_state: Option<MState>,
    /// Open incident.
    pub incident: Option<Incident>,
    /// We sent a deactivation or fence in the open incident.
    pub commanded: bool,
    /// The agent is registered.
    pub agent_registered: bool,
    /// IPMB link condition.
    pub link: Link,
}

#[derive(Debug, Clone, Copy)]
struct Blade {
    cfg: BladeConfig,
    m_state: Option<MState>,
    hot_swap_sensor: u8,
    incident: Option<Incident>,
    commanded: bool,
    link: Link,
    registered: bool,
    last_heartbeat: u64,
    hypervisor_down_since: Option<u64>,
    last_heard: Option<u64>,
    next_probe: u64,
    next_confirm_poll: u64,
    /// When the open incident's first fence request was queued: only hot-swap
    /// states observed after it confirm the fence.
    fence_began: Option<Began>,
}

/// The moment an incident's fence began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Began {
    /// Time.
    ms: u64,
    /// Number of the input that began it ([`Shelf::input`]); an event of the
    /// same input (the one that opened the incident) is not after it.
    input: u64,
}

/// A non-critical threshold assertion waiting for its hold time.
#[derive(Debug, Clone, Copy)]
struct Hold {
    blade: usize,
    sensor_type: u8,
    sensor_number: u8,
    offset: u8,
    since: u64,
    cause: Cause,
}

#[derive(Debug, Clone)]
struct PendingGuest {
    blade: usize,
    name: GuestName,
    incident: u32,
    deadline: u64,
}

/// Counters of the shelf (every drop and overflow is here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Platform Events accepted (duplicates excluded).
    pub events: u64,
    /// Platform Events suppressed as duplicates.
    pub duplicates: u64,
    /// Platform Events from unconfigured addresses (ignored).
    pub unknown_generator: u64,
    /// Events recorded only.
    pub recorded: u64,
    /// Decisions taken.
    pub decisions: u64,
    /// Failures seen while the blade already had an open incident (no decision).
    pub suppressed: u64,
    /// IPMB link reports repeating the known condition.
    pub link_repeats: u64,
    /// IPMB responses received.
    pub responses: u64,
    /// IPMB responses from unconfigured addresses.
    pub responses_unknown: u64,
    /// Fence requests answered with an error completion code.
    pub fence_rejected: u64,
    /// Fences confirmed.
    pub fences_confirmed: u64,
    /// Failover orders (whole blade or one guest).
    pub failovers: u64,
    /// Failover attempts refused because the fence was not confirmed (must stay 0).
    pub unsafe_failover_refused: u64,
    /// Incidents closed.
    pub incidents_closed: u64,
    /// Alerts raised.
    pub alerts: u64,
    /// Agent inputs for unconfigured slots.
    pub agent_unknown_slot: u64,
    /// Agent inputs that did not fit the blade's state (ignored).
    pub agent_ignored: u64,
    /// Guest outcome reports.
    pub guest_reports: u64,
    /// Duplicate table entries evicted while live.
    pub dedupe_evictions: u64,
    /// Guest windows forgotten for room.
    pub guest_evictions: u64,
    /// Guest failovers not started because their table was full.
    pub guest_failovers_dropped: u64,
    /// Outputs dropped because the output queue was full.
    pub outputs_dropped: u64,
    /// Predictive mode: non-critical threshold holds opened.
    pub degraded_holds: u64,
    /// Predictive mode: holds cancelled by a deassertion within the hold time.
    pub degraded_cancelled: u64,
    /// Predictive mode: holds not opened because their table was full.
    pub degraded_holds_dropped: u64,
    /// Hot-swap M1/M0 seen during a fence but not counted as its proof,
    /// because it was not observed after the fence began.
    pub stale_proofs: u64,
    /// Failover orders whose partner report came late or never (alerted).
    pub failover_reports_overdue: u64,
    /// Failover orders not tracked for their report because the table was full.
    pub failover_reports_dropped: u64,
    /// Orders the runtime reported undelivered or refused.
    pub orders_undelivered: u64,
    /// Unprotected-guest reports (repeats included).
    pub unprotected_reports: u64,
    /// Unprotected guests forgotten for room (a repeat is alerted again).
    pub unprotected_evictions: u64,
}

/// Result of [`Shelf::on_platform_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Identical event seen within the duplicate window: counted once.
    Duplicate,
    /// Generator not configured: ignored.
    UnknownGenerator,
    /// Recorded only.
    Recorded(Record),
    /// IPMB link report repeating the known condition.
    Repeated(Class),
    /// A failure of a blade with an open incident: no new decision.
    Suppressed(Class),
    /// A decision was taken (queued as [`Output::Decision`]).
    Decided(Class),
}

/// The shelf core.
#[derive(Debug)]
pub struct Shelf {
    cfg: ShelfConfig,
    blades: Vec<Blade, MAX_BLADES>,
    requests: RequestTracker,
    dedupe: Dedupe,
    guests: GuestWindows,
    pending_guests: Vec<PendingGuest, MAX_GUEST_FAILOVERS>,
    holds: Vec<Hold, MAX_DEGRADED_HOLDS>,
    unknown_alerted: Vec<u8, UNKNOWN_ALERTS>,
    tables_alerted: [bool; Table::COUNT],
    reports: Vec<Report, MAX_FAILOVER_REPORTS>,
    unprotected: Unprotected,
    out: Outbox,
    counters: Counters,
    next_incident: u32,
    /// Inputs taken so far (events, responses, agent inputs, polls): orders
    /// observations within one millisecond.
    input: u64,
}

impl Shelf {
    /// A shelf for a validated configuration.
    pub fn new(cfg: ShelfConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mut blades = Vec::new();
        for b in &cfg.blades {
            // validate() bounds the count by MAX_BLADES.
            let _ = blades.push(Blade {
                cfg: *b,
                m_state: None,
                hot_swap_sensor: b.hot_swap_sensor.unwrap_or(0),
                incident: None,
                commanded: false,
                link: Link::Ok,
                registered: false,
                last_heartbeat: 0,
                hypervisor_down_since: None,
                last_heard: None,
                next_probe: 0,
                next_confirm_poll: 0,
                fence_began: None,
            });
        }
        Ok(Self {
            cfg,
            blades,
            requests: RequestTracker::new(),
            dedupe: Dedupe::new(),
            guests: GuestWindows::new(),
            pending_guests: Vec::new(),
            holds: Vec::new(),
            unknown_alerted: Vec::new(),
            tables_alerted: [false; Table::COUNT],
            reports: Vec::new(),
            unprotected: Unprotected::new(),
            out: Outbox::new(),
            counters: Counters::default(),
            next_incident: 1,
            input: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ShelfConfig {
        &self.cfg
    }

    /// Counters (refreshed from the tables on each call).
    pub fn counters(&self) -> Counters {
        let mut c = self.counters;
        c.dedupe_evictions = self.dedupe.evictions();
        c.guest_evictions = self.guests.evictions();
        c.outputs_dropped = self.out.dropped();
        c.unprotected_evictions = self.unprotected.evictions();
        c
    }

    /// Counters of the IPMB request tracker.
    pub fn request_stats(&self) -> RequestStats {
        *self.requests.stats()
    }

    /// State of the blade in `slot`.
    pub fn blade(&self, slot: u8) -> Option<BladeStatus> {
        let b = self.blades.iter().find(|b| b.cfg.slot == slot)?;
        Some(BladeStatus {
            config: b.cfg,
            m_state: b.m_state,
            incident: b.incident,
            commanded: b.commanded,
            agent_registered: b.registered,
            link: b.link,
        })
    }

    /// Takes the oldest queued output.
    pub fn pop_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    /// Outputs queued and not yet taken.
    pub fn pending_outputs(&self) -> usize {
        self.out.len()
    }

    fn index_of_slot(&self, slot: u8) -> Option<usize> {
        self.blades.iter().position(|b| b.cfg.slot == slot)
    }

    fn index_of_address(&self, address: u8) -> Option<usize> {
        self.blades
            .iter()
            .position(|b| b.cfg.ipmb_address == address)
    }

    fn alert(&mut self, alert: Alert) {
        warn!("ALERT {}: {alert}", alert.kind());
        self.counters.alerts += 1;
        self.out.push(Output::Alert(alert));
    }

    fn table_full(&mut self, table: Table) {
        let i = table as usize;
        if !self.tables_alerted[i] {
            self.tables_alerted[i] = true;
            self.alert(Alert::TableFull { table });
        }
    }

    /// A Platform Event from `ev.generator`, carried by a request with `rq_seq`.
    /// The runtime answers the request itself (completion code 0x00).
    pub fn on_platform_event(&mut self, now: u64, rq_seq: u8, ev: &PlatformEvent) -> EventOutcome {
        let mut data = [0u8; 7];
        ev.emit(&mut data);
        let evictions = self.dedupe.evictions();
        let dup = self.dedupe.seen(
            now,
            self.cfg.timing.duplicate_window_ms,
            ev.generator,
            ev.generator_lun,
            rq_seq,
            data,
        );
        if self.dedupe.evictions() != evictions {
            self.table_full(Table::Dedupe);
        }
        if dup {
            self.counters.duplicates += 1;
            debug!("duplicate event from 0x{:02x} rqSeq {rq_seq}", ev.generator);
            return EventOutcome::Duplicate;
        }
        self.on_logged_event(now, ev)
    }

    /// An event read from a System Event Log (RMCP+ or system interface
    /// source). Each SEL record is one event (the log keeps no retransmits), so
    /// there is no duplicate suppression: the source reads each record once.
    pub fn on_logged_event(&mut self, now: u64, ev: &PlatformEvent) -> EventOutcome {
        self.input += 1;
        self.counters.events += 1;
        let Some(idx) = self.index_of_address(ev.generator) else {
            self.counters.unknown_generator += 1;
            if !self.unknown_alerted.contains(&ev.generator)
                && self.unknown_alerted.push(ev.generator).is_ok()
            {
                self.alert(Alert::UnknownGenerator {
                    address: ev.generator,
                });
            }
            return EventOutcome::UnknownGenerator;
        };
        let blade = &mut self.blades[idx];
        blade.last_heard = Some(now);
        let hs = ev.hot_swap().filter(|h| h.fru_id == 0 && ev.assertion);
        if hs.is_some() && blade.cfg.hot_swap_sensor.is_none() {
            blade.hot_swap_sensor = ev.sensor_number;
        }
        let view = BladeView {
            m_state: blade.m_state,
            commanded: blade.commanded,
        };
        let verdict = classify(ev, &view);
        let cause = Cause::Event {
            sensor_type: ev.sensor_type.into(),
            sensor_number: ev.sensor_number,
            event_type: ev.event_type,
            offset: ev.offset(),
            m_state: hs.map(|h| h.current),
            previous_m_state: hs.and_then(|h| h.previous.or(view.m_state)),
        };
        if let Some(h) = hs {
            blade.m_state = Some(h.current);
        }
        let warning = if self.cfg.predictive.enabled && matches!(verdict, Verdict::Record(_)) {
            predictive(ev)
        } else {
            None
        };
        let outcome = match (verdict, warning) {
            (Verdict::Record(_), Some(Warning::Now)) => {
                self.decide(now, idx, Class::BladeDegraded, cause, None)
            }
            (Verdict::Decide(class), _) => self.decide(now, idx, class, cause, None),
            (Verdict::Record(r), _) => {
                match warning {
                    Some(Warning::Hold) => self.hold(now, idx, ev, cause),
                    Some(Warning::Cancel) => self.cancel_hold(now, idx, ev),
                    _ => {}
                }
                self.counters.recorded += 1;
                if r == Record::LinkRestored && self.blades[idx].incident.is_none() {
                    self.blades[idx].link = Link::Ok;
                }
                debug!(
                    "slot {}: recorded ({}): {cause}",
                    self.blades[idx].cfg.slot,
                    r.as_str()
                );
                EventOutcome::Recorded(r)
            }
        };
        if let Some(h) = hs {
            match h.current {
                MState::M1 | MState::M0 => {
                    // Received now: after the fence began unless this very
                    // event opened the incident (its fence began in this input).
                    let input = self.input;
                    let fresh = self.blades[idx]
                        .fence_began
                        .is_some_and(|b| b.input < input && b.ms <= now);
                    self.on_inactive(now, idx, h.current, fresh, "hot-swap event");
                }
                MState::M4 => self.close_on_m4(idx),
                _ => {}
            }
        }
        outcome
    }

    /// A response to one of our requests: from 8-bit address `from`, with the
    /// response netFn (odd), cmd, rqSeq and data (completion code first).
    pub fn on_ipmb_response(
        &mut self,
        now: u64,
        from: u8,
        rq_seq: u8,
        net_fn: u8,
        cmd_code: u8,
        data: &[u8],
    ) {
        self.input += 1;
        self.counters.responses += 1;
        match self.index_of_address(from) {
            Some(idx) => self.blades[idx].last_heard = Some(now),
            None => self.counters.responses_unknown += 1,
        }
        let Some(p) = self.requests.on_response(from, rq_seq, net_fn, cmd_code) else {
            debug!("unmatched response from 0x{from:02x} netFn 0x{net_fn:02x} cmd 0x{cmd_code:02x} rqSeq {rq_seq}");
            return;
        };
        match p.purpose {
            Purpose::Probe => {}
            Purpose::ConfirmPoll => {
                if let Some(m) = cmd::hot_swap_state(data) {
                    self.blades[p.blade].m_state = Some(m);
                    if matches!(m, MState::M1 | MState::M0) {
                        // The reading was taken after the request was sent.
                        let fresh = self.blades[p.blade]
                            .fence_began
                            .is_some_and(|b| p.sent_ms >= b.ms);
                        self.on_inactive(now, p.blade, m, fresh, "Get Sensor Reading");
                    }
                }
            }
            Purpose::Fence => {
                if let Err(e) = cmd::check_picmg_response(data) {
                    self.counters.fence_rejected += 1;
                    warn!(
                        "slot {}: fence request cmd 0x{cmd_code:02x} refused: {e:?}",
                        self.blades[p.blade].cfg.slot
                    );
                }
            }
        }
    }

    /// A request sent by the shelf manager outside this core (seen in a
    /// capture, or an operator command on the same bus): a deactivation of a
    /// configured blade's FRU 0 (Set FRU Activation deactivate, Set Power
    /// Level 0) makes its coming M4 -> M6/M1/M0 commanded, until it is back in M4.
    pub fn on_own_request(&mut self, dest: u8, net_fn: u8, cmd_code: u8, data: &[u8]) {
        let Some(idx) = self.index_of_address(dest) else {
            return;
        };
        let deactivation = net_fn == cmd::NETFN_GROUP_EXT
            && matches!(
                (cmd_code, data),
                (
                    cmd::CMD_SET_FRU_ACTIVATION | cmd::CMD_SET_POWER_LEVEL,
                    [cmd::PICMG_ID, 0, 0, ..]
                )
            );
        if deactivation {
            info!(
                "slot {}: deactivation sent by the shelf manager; its next deactivation is commanded",
                self.blades[idx].cfg.slot
            );
            self.blades[idx].commanded = true;
        }
    }

    /// An input from the agent of `slot`.
    pub fn on_agent(&mut self, now: u64, slot: u8, input: AgentInput) {
        self.input += 1;
        let Some(idx) = self.index_of_slot(slot) else {
            self.counters.agent_unknown_slot += 1;
            warn!("agent input for unconfigured slot {slot} ignored");
            return;
        };
        match input {
            AgentInput::Hello => {
                let b = &mut self.blades[idx];
                b.registered = true;
                b.last_heartbeat = now;
                b.hypervisor_down_since = None;
                info!("slot {slot}: agent registered");
                self.unprotected.forget_owner(slot);
                self.maybe_close_hypervisor(idx);
            }
            AgentInput::Heartbeat { hypervisor_ok } => {
                let b = &mut self.blades[idx];
                if !b.registered {
                    if b.incident.is_some() {
                        self.counters.agent_ignored += 1;
                        return;
                    }
                    b.registered = true;
                    info!("slot {slot}: agent registered by heartbeat");
                }
                b.last_heartbeat = now;
                if hypervisor_ok {
                    b.hypervisor_down_since = None;
                    self.maybe_close_hypervisor(idx);
                } else {
                    b.hypervisor_down_since.get_or_insert(now);
                    self.check_hypervisor(now, idx);
                }
            }
            AgentInput::HypervisorDown => {
                let b = &mut self.blades[idx];
                if !b.registered {
                    self.counters.agent_ignored += 1;
                    return;
                }
                b.hypervisor_down_since.get_or_insert(now);
                info!("slot {slot}: agent reports hypervisor down");
                self.check_hypervisor(now, idx);
            }
            AgentInput::HypervisorUp => {
                self.blades[idx].hypervisor_down_since = None;
                self.maybe_close_hypervisor(idx);
            }
            AgentInput::FenceSelfConfirmed { incident } => match self.blades[idx].incident {
                Some(Incident {
                    id,
                    self_fence: true,
                    confirmed: false,
                    phase: Phase::SelfFencing { .. } | Phase::Fencing { .. },
                    ..
                }) if id == incident => self.fence_confirmed(now, idx, Confirmation::SelfFenced),
                _ => {
                    self.counters.agent_ignored += 1;
                    warn!("slot {slot}: FenceSelf confirmation without a self-fence in progress ignored");
                }
            },
            AgentInput::GuestCrashed { name } => self.guest_crashed(now, idx, name),
            AgentInput::GuestDestroyed { name, incident } => {
                self.guest_destroyed(now, idx, name, incident)
            }
            AgentInput::GuestOutcome {
                failed_slot,
                name,
                started,
            } => {
                self.counters.guest_reports += 1;
                info!(
                    "slot {slot}: guest {name} of slot {failed_slot} {}",
                    if started { "started" } else { "not started" }
                );
                self.guest_outcome(idx, failed_slot, &name, started);
            }
            AgentInput::AllReported {
                failed_slot,
                incident,
            } => self.all_reported(now, idx, failed_slot, incident),
            AgentInput::OrderUndelivered {
                kind,
                incident,
                reason,
            } => {
                self.counters.orders_undelivered += 1;
                self.alert(Alert::OrderUndelivered {
                    slot,
                    incident,
                    kind,
                    reason,
                });
            }
            AgentInput::GuestUnprotected {
                owner_slot,
                reason,
                name,
                text,
            } => self.guest_unprotected(idx, owner_slot, reason, name, text),
        }
    }

    /// Runs the timers.
    pub fn poll(&mut self, now: u64) {
        self.input += 1;
        self.poll_holds(now, false);
        let t = self.cfg.timing;
        for idx in 0..self.blades.len() {
            let b = &mut self.blades[idx];
            if self.cfg.probing && b.last_heard.is_none() {
                b.last_heard = Some(now);
            }
            match b.incident.map(|i| i.phase) {
                Some(Phase::Fencing {
                    step,
                    deadline,
                    rounds,
                }) => {
                    if now >= deadline {
                        self.next_fence_step(now, idx, step, rounds);
                    }
                    self.confirm_poll(now, idx);
                }
                Some(Phase::SelfFencing { deadline }) if now >= deadline => {
                    warn!(
                        "slot {}: no FenceSelf confirmation in {} ms; fencing over IPMB as well",
                        b.cfg.slot, t.self_fence_deadline_ms
                    );
                    self.start_ipmb_fence(now, idx);
                }
                Some(Phase::Evacuating { deadline })
                    if now >= deadline
                        && b.incident.is_some_and(|i| i.class == Class::BladeDegraded) =>
                {
                    let (slot, id) = (b.cfg.slot, b.incident.map_or(0, |i| i.id));
                    warn!("slot {slot}: migration of decision #{id} not reported in time; the blade is not fenced");
                    self.end_degraded(idx, false);
                }
                Some(Phase::Evacuating { deadline }) if now >= deadline => {
                    let (slot, id) = (b.cfg.slot, b.incident.map_or(0, |i| i.id));
                    self.alert(Alert::EvacuationTimeout { slot, incident: id });
                    self.start_ipmb_fence(now, idx);
                }
                Some(_) => {}
                None => self.watch(now, idx),
            }
        }
        let expired = self
            .requests
            .poll::<8>(now, &mut self.out, t.request_timeout_ms);
        for p in expired {
            if p.purpose == Purpose::Fence {
                warn!(
                    "slot {}: fence request cmd 0x{:02x} unanswered after retries",
                    self.blades[p.blade].cfg.slot, p.cmd
                );
            }
        }
        let mut i = 0;
        while i < self.pending_guests.len() {
            if now >= self.pending_guests[i].deadline {
                let g = self.pending_guests.swap_remove(i);
                let slot = self.blades[g.blade].cfg.slot;
                self.alert(Alert::GuestFenceUnconfirmed { slot, name: g.name });
            } else {
                i += 1;
            }
        }
        self.poll_reports(now);
    }

    /// End of input (replay: the end of the capture): every hold still
    /// pending is due, as no deassertion can come any more.
    pub fn finish_holds(&mut self, now: u64) {
        self.poll_holds(now, true);
    }

    /// Holds pending (predictive mode).
    pub fn pending_holds(&self) -> usize {
        self.holds.len()
    }

    /// Guest failovers waiting for the blade's agent to confirm the guest
    /// destroyed, as (slot, guest, decision number): the partner has not been
    /// ordered to start them yet.
    pub fn pending_guest_failovers(&self) -> impl Iterator<Item = (u8, &GuestName, u32)> + '_ {
        self.pending_guests
            .iter()
            .map(|g| (self.blades[g.blade].cfg.slot, &g.name, g.incident))
    }

    /// Decides `blade_degraded` for every hold past its time (all when `all`),
    /// oldest assertion first.
    fn poll_holds(&mut self, now: u64, all: bool) {
        let hold_ms = self.cfg.predictive.degraded_hold_ms;
        loop {
            let due = self
                .holds
                .iter()
                .enumerate()
                .filter(|(_, h)| all || now >= h.since.saturating_add(hold_ms))
                .min_by_key(|(_, h)| h.since)
                .map(|(i, _)| i);
            let Some(i) = due else { return };
            let h = self.holds.remove(i);
            info!(
                "slot {}: non-critical sensor type 0x{:02x} #{} offset {} still asserted {} ms after {} ms",
                self.blades[h.blade].cfg.slot,
                h.sensor_type,
                h.sensor_number,
                h.offset,
                now.saturating_sub(h.since),
                h.since
            );
            self.decide_at(now, h.since, h.blade, Class::BladeDegraded, h.cause, None);
        }
    }

    fn hold(&mut self, now: u64, idx: usize, ev: &PlatformEvent, cause: Cause) {
        let key = (ev.sensor_type.into(), ev.sensor_number, ev.offset());
        let slot = self.blades[idx].cfg.slot;
        if self
            .holds
            .iter()
            .any(|h| h.blade == idx && (h.sensor_type, h.sensor_number, h.offset) == key)
        {
            debug!("slot {slot}: non-critical assertion repeated; its hold keeps its first time");
            return;
        }
        let hold = Hold {
            blade: idx,
            sensor_type: key.0,
            sensor_number: key.1,
            offset: key.2,
            since: now,
            cause,
        };
        if self.holds.push(hold).is_err() {
            self.counters.degraded_holds_dropped += 1;
            self.table_full(Table::DegradedHolds);
            return;
        }
        self.counters.degraded_holds += 1;
        info!(
            "slot {slot}: non-critical threshold asserted ({cause}); blade_degraded unless deasserted within {} ms",
            self.cfg.predictive.degraded_hold_ms
        );
    }

    fn cancel_hold(&mut self, now: u64, idx: usize, ev: &PlatformEvent) {
        let key = (ev.sensor_type.into(), ev.sensor_number, ev.offset());
        if let Some(i) = self
            .holds
            .iter()
            .position(|h| h.blade == idx && (h.sensor_type, h.sensor_number, h.offset) == key)
        {
            let h = self.holds.remove(i);
            self.counters.degraded_cancelled += 1;
            info!(
                "slot {}: non-critical threshold deasserted after {} ms, within the hold: no decision",
                self.blades[idx].cfg.slot,
                now.saturating_sub(h.since)
            );
        }
    }

    /// Ends a `blade_degraded` incident (no fence) and tells the operator.
    fn end_degraded(&mut self, idx: usize, evacuated: bool) {
        let b = &mut self.blades[idx];
        let Some(inc) = b.incident.take() else { return };
        let slot = b.cfg.slot;
        self.counters.incidents_closed += 1;
        info!("slot {slot}: decision #{} closed without a fence", inc.id);
        self.alert(Alert::BladeDegraded {
            slot,
            incident: inc.id,
            evacuated,
        });
    }

    /// Timers of a blade without an open incident: probe loss, heartbeat
    /// loss, hypervisor grace, and the next probe.
    fn watch(&mut self, now: u64, idx: usize) {
        let t = self.cfg.timing;
        let b = self.blades[idx];
        let silent = b.last_heard.map(|h| now.saturating_sub(h));
        if self.cfg.probing {
            if let Some(silent_ms) = silent.filter(|&s| s >= t.probe_timeout_ms) {
                self.decide(
                    now,
                    idx,
                    Class::BladeLost,
                    Cause::ProbeLoss { silent_ms },
                    None,
                );
                return;
            }
        }
        let ipmc_alive = !self.cfg.probing || silent.is_some_and(|s| s < t.probe_timeout_ms);
        let in_m4 = matches!(b.m_state, None | Some(MState::M4));
        if b.registered && ipmc_alive && in_m4 {
            let silent_ms = now.saturating_sub(b.last_heartbeat);
            if silent_ms >= t.heartbeat_timeout_ms {
                self.decide(
                    now,
                    idx,
                    Class::HostOs,
                    Cause::HeartbeatLoss { silent_ms },
                    None,
                );
                return;
            }
        }
        self.check_hypervisor(now, idx);
        if self.blades[idx].incident.is_some() || !self.cfg.probing {
            return;
        }
        // Keep room for decisions and fence traffic: probes wait when the queue is nearly full.
        if now >= b.next_probe && !self.requests.has(idx, Purpose::Probe) && self.out.free() > 8 {
            let timeout = t.request_timeout_ms.min(t.probe_interval_ms);
            let _ = self.requests.send(
                now,
                &mut self.out,
                idx,
                b.cfg.ipmb_address,
                cmd::NETFN_APP,
                cmd::CMD_GET_DEVICE_ID,
                &cmd::get_device_id(),
                Purpose::Probe,
                timeout,
                0,
            );
            self.blades[idx].next_probe = now.saturating_add(t.probe_interval_ms);
        }
    }

    fn check_hypervisor(&mut self, now: u64, idx: usize) {
        let b = self.blades[idx];
        if let Some(since) = b.hypervisor_down_since {
            let down_ms = now.saturating_sub(since);
            if b.incident.is_none()
                && b.registered
                && down_ms >= self.cfg.timing.hypervisor_grace_ms
            {
                self.decide(
                    now,
                    idx,
                    Class::Hypervisor,
                    Cause::HypervisorDown { down_ms },
                    None,
                );
            }
        }
    }

    fn maybe_close_hypervisor(&mut self, idx: usize) {
        let b = &mut self.blades[idx];
        if let Some(inc) = b.incident {
            if inc.class == Class::Hypervisor
                && matches!(inc.phase, Phase::FailingOver | Phase::Recovered)
                && b.registered
                && b.hypervisor_down_since.is_none()
            {
                info!(
                    "slot {}: decision #{} closed: agent reports its hypervisor up again",
                    b.cfg.slot, inc.id
                );
                b.incident = None;
                b.commanded = false;
                self.counters.incidents_closed += 1;
                self.requests.cancel(idx, Purpose::Fence);
                self.requests.cancel(idx, Purpose::ConfirmPoll);
            }
        }
    }

    /// Takes a decision for blade `idx` (or suppresses it when the blade is in recovery).
    fn decide(
        &mut self,
        now: u64,
        idx: usize,
        class: Class,
        cause: Cause,
        guest: Option<(GuestName, bool)>,
    ) -> EventOutcome {
        self.decide_at(now, now, idx, class, cause, guest)
    }

    /// [`Self::decide`] for a cause observed at `t_ms` (a held assertion).
    fn decide_at(
        &mut self,
        now: u64,
        t_ms: u64,
        idx: usize,
        class: Class,
        cause: Cause,
        guest: Option<(GuestName, bool)>,
    ) -> EventOutcome {
        if class.opens_incident() && class != Class::BladeDegraded {
            if let Some(inc) = self.blades[idx]
                .incident
                .filter(|i| i.class == Class::BladeDegraded)
            {
                info!(
                    "slot {}: {class} supersedes blade_degraded decision #{}",
                    self.blades[idx].cfg.slot, inc.id
                );
                self.blades[idx].incident = None;
                self.counters.incidents_closed += 1;
            }
        }
        if class.opens_incident() {
            // One decision per incident: the blade's other warnings are the same story.
            let before = self.holds.len();
            self.holds.retain(|h| h.blade != idx);
            if self.holds.len() != before {
                debug!(
                    "slot {}: {} non-critical hold(s) forgotten",
                    self.blades[idx].cfg.slot,
                    before - self.holds.len()
                );
            }
        }
        let b = self.blades[idx];
        let link = match class {
            Class::IpmbLinkDegraded => Some(Link::Degraded),
            Class::IpmbLinkLost => Some(Link::Lost),
            _ => None,
        };
        if link.is_some() && link == Some(b.link) {
            self.counters.link_repeats += 1;
            return EventOutcome::Repeated(class);
        }
        if let Some(inc) = b.incident {
            self.counters.suppressed += 1;
            debug!(
                "slot {}: {class} ({cause}) while decision #{} is open: no new decision",
                b.cfg.slot, inc.id
            );
            return EventOutcome::Suppressed(class);
        }
        let id = self.next_incident;
        self.next_incident = self.next_incident.wrapping_add(1);
        let partner_ok = self.index_of_slot(b.cfg.partner).is_some_and(|p| {
            let pb = &self.blades[p];
            pb.incident.is_none() && matches!(pb.m_state, None | Some(MState::M4))
        });
        let mut actions = Vec::new();
        let list: &[Action] = match class {
            Class::BladeLost | Class::BladeHardware | Class::HostOs if b.registered => &[
                Action::FenceIpmb,
                Action::SelfFence,
                Action::FailoverToPartner,
            ],
            Class::BladeLost | Class::BladeHardware | Class::HostOs => {
                &[Action::FenceIpmb, Action::FailoverToPartner]
            }
            Class::BladeExtraction => &[Action::Evacuate, Action::Deactivate],
            Class::Hypervisor => &[Action::SelfFence, Action::FailoverToPartner],
            Class::Guest => match guest {
                Some((_, true)) => &[Action::FenceGuest, Action::FailoverGuest],
                _ => &[Action::RestartLocal],
            },
            Class::IpmbLinkDegraded | Class::IpmbLinkLost => &[Action::Alert],
            Class::BladeDegraded if partner_ok => &[Action::Evacuate, Action::Alert],
            Class::BladeDegraded => &[Action::Alert],
        };
        for a in list {
            let _ = actions.push(*a);
        }
        let decision = Decision {
            t_ms,
            incident: id,
            class,
            slot: b.cfg.slot,
            ipmb_address: b.cfg.ipmb_address,
            partner_slot: b.cfg.partner,
            actions,
            cause,
            guest: guest.as_ref().map(|(n, _)| n.clone()),
        };
        info!("{decision}");
        self.counters.decisions += 1;
        self.out.push(Output::Decision(decision));
        let slot = b.cfg.slot;
        if let Some(l) = link {
            self.blades[idx].link = l;
            self.alert(Alert::IpmbLink {
                slot,
                both: l == Link::Lost,
            });
            return EventOutcome::Decided(class);
        }
        if let Some((name, failover)) = guest {
            if failover {
                self.out.push(Output::Order {
                    slot,
                    order: Order::DestroyGuest {
                        name: name.clone(),
                        incident: id,
                    },
                });
                let pending = PendingGuest {
                    blade: idx,
                    name,
                    incident: id,
                    deadline: now.saturating_add(self.cfg.timing.guest_fence_timeout_ms),
                };
                if let Err(p) = self.pending_guests.push(pending) {
                    self.counters.guest_failovers_dropped += 1;
                    self.table_full(Table::GuestFailovers);
                    self.alert(Alert::GuestFenceUnconfirmed { slot, name: p.name });
                }
            } else {
                self.out.push(Output::Order {
                    slot,
                    order: Order::RestartGuest { name, incident: id },
                });
            }
            return EventOutcome::Decided(class);
        }
        let partner = b.cfg.partner;
        if self
            .index_of_slot(partner)
            .is_some_and(|p| self.blades[p].incident.is_some())
        {
            self.alert(Alert::PartnerUnavailable { slot, partner });
        }
        if class == Class::BladeDegraded && !partner_ok {
            warn!("slot {slot}: degraded, but partner slot {partner} cannot take its guests now");
            self.alert(Alert::BladeDegraded {
                slot,
                incident: id,
                evacuated: false,
            });
            return EventOutcome::Decided(class);
        }
        let mut incident = Incident {
            id,
            class,
            opened_ms: now,
            phase: Phase::Recovered,
            confirmed: false,
            evacuated: false,
            proof: None,
            self_fence: false,
        };
        // Every class below queues its first fence request (FenceSelf,
        // Evacuate, Migrate or the first IPMB step) in this input: only what
        // is observed from now on proves the fence. No poll of an earlier
        // incident may answer for this one.
        self.blades[idx].fence_began = Some(Began {
            ms: now,
            input: self.input,
        });
        self.requests.cancel(idx, Purpose::ConfirmPoll);
        match class {
            Class::Hypervisor => {
                incident.phase = Phase::SelfFencing {
                    deadline: now.saturating_add(self.cfg.timing.self_fence_deadline_ms),
                };
                incident.self_fence = true;
                self.blades[idx].incident = Some(incident);
                self.out.push(Output::Order {
                    slot,
                    order: Order::FenceSelf { incident: id },
                });
            }
            Class::BladeDegraded => {
                incident.phase = Phase::Evacuating {
                    deadline: now.saturating_add(self.cfg.timing.evacuation_timeout_ms),
                };
                self.blades[idx].incident = Some(incident);
                info!("slot {slot}: live-migrating its guests to slot {partner}; the blade is not fenced");
                self.out.push(Output::Order {
                    slot,
                    order: Order::Migrate {
                        to_slot: partner,
                        incident: id,
                    },
                });
            }
            Class::BladeExtraction => {
                incident.phase = Phase::Evacuating {
                    deadline: now.saturating_add(self.cfg.timing.evacuation_timeout_ms),
                };
                self.blades[idx].incident = Some(incident);
                self.out.push(Output::Order {
                    slot,
                    order: Order::Evacuate {
                        to_slot: partner,
                        incident: id,
                    },
                });
            }
            _ => {
                // A registered agent destroys its guests in parallel with the IPMB
                // fence: whichever confirms first is the fence. This also fences a
                // blade whose IPMC went silent while its host still runs.
                if b.registered {
                    incident.self_fence = true;
                    self.out.push(Output::Order {
                        slot,
                        order: Order::FenceSelf { incident: id },
                    });
                }
                self.blades[idx].incident = Some(incident);
                // The agent of a fenced blade must register again.
                self.blades[idx].registered = false;
                self.blades[idx].hypervisor_down_since = None;
                self.start_ipmb_fence(now, idx);
            }
        }
        EventOutcome::Decided(class)
    }

    /// Starts (or restarts) the IPMB fence with its first step.
    ///
    /// A blade last seen in M1/M0 is not taken as fenced: that state may be
    /// stale (missed events, a wrapped SEL, the event that opened the
    /// incident). Its hot-swap sensor is read at once instead, and only that
    /// reading (or a later event) confirms.
    fn start_ipmb_fence(&mut self, now: u64, idx: usize) {
        let cached_inactive = inactive_proof(self.blades[idx].m_state).is_some();
        let deadline = now.saturating_add(self.cfg.timing.fence_step_deadline_ms);
        if let Some(inc) = &mut self.blades[idx].incident {
            inc.phase = Phase::Fencing {
                step: FenceStep::Deactivate,
                deadline,
                rounds: 0,
            };
        }
        self.blades[idx].next_confirm_poll = now.saturating_add(self.cfg.timing.confirm_poll_ms);
        self.send_fence_step(now, idx, FenceStep::Deactivate);
        if cached_inactive {
            info!(
                "slot {}: last seen inactive; reading its hot-swap sensor now to confirm",
                self.blades[idx].cfg.slot
            );
            self.blades[idx].next_confirm_poll = now;
            self.confirm_poll(now, idx);
        }
    }

    fn send_fence_step(&mut self, now: u64, idx: usize, step: FenceStep) {
        let b = &mut self.blades[idx];
        b.commanded = true;
        let (dest, slot) = (b.cfg.ipmb_address, b.cfg.slot);
        let t = self.cfg.timing;
        info!("slot {slot}: fence step {step:?} sent to IPMC 0x{dest:02x}");
        let (code, data): (u8, &[u8]) = match step {
            FenceStep::Deactivate => (
                cmd::CMD_SET_FRU_ACTIVATION,
                &cmd::set_fru_activation(0, false),
            ),
            FenceStep::ColdReset => (
                cmd::CMD_FRU_CONTROL,
                &cmd::fru_control(0, cmd::FruControlOption::ColdReset),
            ),
            FenceStep::PowerOff => (cmd::CMD_SET_POWER_LEVEL, &cmd::set_power_level(0, 0, false)),
        };
        if let request::Sent::TableFull = self.requests.send(
            now,
            &mut self.out,
            idx,
            dest,
            cmd::NETFN_GROUP_EXT,
            code,
            data,
            Purpose::Fence,
            t.request_timeout_ms,
            t.request_retries,
        ) {
            self.table_full(Table::Requests);
        }
    }

    fn next_fence_step(&mut self, now: u64, idx: usize, step: FenceStep, rounds: u32) {
        let (next, rounds) = match step {
            FenceStep::Deactivate => (FenceStep::ColdReset, rounds),
            FenceStep::ColdReset => (FenceStep::PowerOff, rounds),
            FenceStep::PowerOff => (FenceStep::Deactivate, rounds + 1),
        };
        let deadline = now.saturating_add(self.cfg.timing.fence_step_deadline_ms);
        let Some(inc) = &mut self.blades[idx].incident else {
            return;
        };
        inc.phase = Phase::Fencing {
            step: next,
            deadline,
            rounds,
        };
        let id = inc.id;
        if next == FenceStep::Deactivate {
            let slot = self.blades[idx].cfg.slot;
            self.alert(Alert::FenceUnconfirmed {
                slot,
                incident: id,
                rounds,
            });
        }
        self.send_fence_step(now, idx, next);
    }

    fn confirm_poll(&mut self, now: u64, idx: usize) {
        let b = self.blades[idx];
        if now < b.next_confirm_poll || self.requests.has(idx, Purpose::ConfirmPoll) {
            return;
        }
        self.blades[idx].next_confirm_poll = now.saturating_add(self.cfg.timing.confirm_poll_ms);
        let timeout = self.cfg.timing.request_timeout_ms;
        let _ = self.requests.send(
            now,
            &mut self.out,
            idx,
            b.cfg.ipmb_address,
            cmd::NETFN_SENSOR_EVENT,
            cmd::CMD_GET_SENSOR_READING,
            &cmd::get_sensor_reading(b.hot_swap_sensor),
            Purpose::ConfirmPoll,
            timeout,
            0,
        );
    }

    /// The blade was observed in `m` (M1 or M0): confirms its fence if one is
    /// in progress and the observation is `fresh` (made after the fence began).
    fn on_inactive(&mut self, now: u64, idx: usize, m: MState, fresh: bool, how: &str) {
        let Some(proof) = inactive_proof(Some(m)) else {
            return;
        };
        let Some(inc) = self.blades[idx].incident else {
            return;
        };
        if inc.confirmed
            || !matches!(
                inc.phase,
                Phase::Fencing { .. } | Phase::SelfFencing { .. } | Phase::Evacuating { .. }
            )
        {
            return;
        }
        let slot = self.blades[idx].cfg.slot;
        if !fresh {
            self.counters.stale_proofs += 1;
            info!(
                "slot {slot}: M{} seen by {how} is not a proof of the fence of decision #{} (not observed after the fence began); waiting for a fresh reading",
                m as u8, inc.id
            );
            if matches!(inc.phase, Phase::Fencing { .. }) {
                // Read the sensor now rather than at the next interval.
                self.blades[idx].next_confirm_poll = now;
                self.confirm_poll(now, idx);
            }
            return;
        }
        debug!("slot {slot}: inactive state seen by {how}");
        self.fence_confirmed(now, idx, proof);
    }

    fn fence_confirmed(&mut self, now: u64, idx: usize, proof: Confirmation) {
        let b = &mut self.blades[idx];
        let Some(inc) = &mut b.incident else { return };
        inc.confirmed = true;
        inc.proof = Some(proof);
        let inc = *inc;
        let slot = b.cfg.slot;
        self.counters.fences_confirmed += 1;
        self.requests.cancel(idx, Purpose::Fence);
        self.requests.cancel(idx, Purpose::ConfirmPoll);
        info!(
            "slot {slot}: fence of decision #{} confirmed ({proof:?})",
            inc.id
        );
        if inc.class == Class::BladeExtraction && inc.evacuated {
            // Guests stopped by the evacuation (not live-migrated) start on the
            // partner now; the partner skips those already running there.
            info!("slot {slot}: evacuated and inactive; partner starts what did not migrate");
        }
        self.order_failover(now, idx);
    }

    /// The only place a whole-blade failover is ordered.
    fn order_failover(&mut self, now: u64, idx: usize) {
        let b = self.blades[idx];
        let Some(inc) = b.incident else { return };
        let (true, Some(fence)) = (inc.confirmed, inc.proof) else {
            self.counters.unsafe_failover_refused += 1;
            warn!("slot {}: failover refused: fence not confirmed", b.cfg.slot);
            return;
        };
        self.counters.failovers += 1;
        info!(
            "slot {}: ordering partner slot {} to restart its guests (decision #{})",
            b.cfg.slot, b.cfg.partner, inc.id
        );
        self.out.push(Output::Order {
            slot: b.cfg.partner,
            order: Order::RestartPartnerGuests {
                failed_slot: b.cfg.slot,
                incident: inc.id,
                fence,
                subset: None,
            },
        });
        self.open_report(now, idx, inc.id, None);
        self.set_phase(idx, Phase::FailingOver);
    }

    fn set_phase(&mut self, idx: usize, phase: Phase) {
        if let Some(inc) = &mut self.blades[idx].incident {
            inc.phase = phase;
        }
    }

    fn close_on_m4(&mut self, idx: usize) {
        let b = &mut self.blades[idx];
        b.commanded = false;
        b.fence_began = None;
        let Some(inc) = b.incident.take() else { return };
        if inc.confirmed || inc.class == Class::BladeExtraction {
            info!(
                "slot {}: decision #{} closed: blade back in M4",
                b.cfg.slot, inc.id
            );
        } else {
            warn!(
                "slot {}: decision #{} closed: blade back in M4 before its fence was confirmed; no failover was ordered",
                b.cfg.slot, inc.id
            );
        }
        self.counters.incidents_closed += 1;
        self.requests.cancel(idx, Purpose::Fence);
        self.requests.cancel(idx, Purpose::ConfirmPoll);
    }

    fn all_reported(&mut self, now: u64, reporter: usize, failed_slot: u8, incident: u32) {
        let Some(idx) = self.index_of_slot(failed_slot) else {
            self.counters.agent_ignored += 1;
            return;
        };
        // A failover is reported by the partner; an evacuation by the
        // evacuating blade itself (it migrates its guests) or its partner.
        let evacuating = matches!(
            self.blades[idx].incident.map(|i| i.phase),
            Some(Phase::Evacuating { .. })
        );
        let from_partner = self.blades[idx].cfg.partner == self.blades[reporter].cfg.slot;
        if !(from_partner || (evacuating && reporter == idx)) {
            self.counters.agent_ignored += 1;
            warn!(
                "slot {}: report about slot {failed_slot}, which is not its partner: ignored",
                self.blades[reporter].cfg.slot
            );
            return;
        }
        // The failover order's report (whole blade or one guest), even if the
        // incident closed meanwhile (the blade came back first).
        let settled = from_partner && self.settle_report(idx, incident);
        if self.blades[idx].incident.map(|i| i.id) != Some(incident) {
            if !settled {
                self.counters.agent_ignored += 1;
                warn!(
                    "slot {failed_slot}: report for decision #{incident}, which is not open: ignored"
                );
            }
            return;
        }
        match self.blades[idx].incident.map(|i| i.phase) {
            Some(Phase::FailingOver) => {
                self.set_phase(idx, Phase::Recovered);
                info!("slot {failed_slot}: partner reported the failover done; recovered");
            }
            Some(Phase::Evacuating { .. })
                if self.blades[idx]
                    .incident
                    .is_some_and(|i| i.class == Class::BladeDegraded) =>
            {
                info!("slot {failed_slot}: migration reported; the blade stays up");
                self.end_degraded(idx, true);
            }
            Some(Phase::Evacuating { .. }) => {
                if let Some(inc) = &mut self.blades[idx].incident {
                    inc.evacuated = true;
                }
                info!("slot {failed_slot}: evacuation reported; allowing deactivation");
                self.start_ipmb_fence(now, idx);
            }
            _ => self.counters.agent_ignored += 1,
        }
    }

    fn guest_crashed(&mut self, now: u64, idx: usize, name: GuestName) {
        let t = self.cfg.timing;
        let slot = self.blades[idx].cfg.slot;
        if let Some(inc) = self.blades[idx].incident {
            self.counters.suppressed += 1;
            debug!(
                "slot {slot}: guest {name} crashed while decision #{} is open: no new decision",
                inc.id
            );
            return;
        }
        let evictions = self.guests.evictions();
        let n = self
            .guests
            .record(now, t.guest_restart_window_ms, slot, &name);
        if self.guests.evictions() != evictions {
            self.table_full(Table::Guests);
        }
        let failover = n > t.guest_restart_limit;
        if failover {
            self.guests.forget(slot, &name);
        }
        self.decide(
            now,
            idx,
            Class::Guest,
            Cause::GuestCrash {
                crashes_in_window: n,
            },
            Some((name, failover)),
        );
    }

    fn guest_destroyed(&mut self, now: u64, idx: usize, name: GuestName, incident: u32) {
        let Some(i) = self
            .pending_guests
            .iter()
            .position(|g| g.blade == idx && g.name == name && g.incident == incident)
        else {
            self.counters.agent_ignored += 1;
            return;
        };
        let g = self.pending_guests.swap_remove(i);
        let b = self.blades[idx];
        self.counters.failovers += 1;
        self.open_report(now, idx, g.incident, Some(g.name.clone()));
        info!(
            "slot {}: guest {} destroyed; ordering partner slot {} to start it (decision #{})",
            b.cfg.slot, g.name, b.cfg.partner, g.incident
        );
        self.out.push(Output::Order {
            slot: b.cfg.partner,
            order: Order::RestartPartnerGuests {
                failed_slot: b.cfg.slot,
                incident: g.incident,
                fence: Confirmation::GuestDestroyed,
                subset: Some(g.name),
            },
        });
    }
}

/// The fence proof an observed M-state gives, if any.
fn inactive_proof(m: Option<MState>) -> Option<Confirmation> {
    match m {
        Some(MState::M1) => Some(Confirmation::HotSwapM1),
        Some(MState::M0) => Some(Confirmation::HotSwapM0),
        _ => None,
    }
}

#[cfg(test)]
mod test;
