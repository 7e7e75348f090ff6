//! The shelf: per-blade state, incidents, fencing, probing and agent timers.
//! Deterministic and clock-free: every input carries `now` in milliseconds,
//! and everything the shelf wants done comes out of [`Shelf::pop_output`].
//!
//! # Inputs
//! - [`Shelf::on_platform_event`]: a decoded Platform Event (IPMB, SEL, replay);
//! - [`Shelf::on_response`]: a typed response to one of our IPMB requests;
//! - [`Shelf::on_manager_request`]: a request of the shelf manager seen on the bus;
//! - [`Shelf::on_agent`]: an [`AgentInput`] from a blade agent;
//! - [`Shelf::poll`]: timers (probes, fence deadlines, confirmation polls,
//!   retries, heartbeat timeout, hypervisor grace, evacuation and guest timeouts).
//!
//! # Files (one `impl Shelf` block per concern)
//! - `mod.rs`: [`Shelf`], its construction and accessors;
//! - `events.rs`: IPMB inputs (Platform Events, responses, the shelf
//!   manager's own requests);
//! - `agents.rs`: [`AgentInput`], registration, heartbeats, hypervisor watch;
//! - `decide.rs`: a failure becomes a decision, a link condition, a guest
//!   order or an open incident; `actions.rs`: the class-to-actions table;
//! - `incident.rs`: [`OpenIncident`] and its [`IncidentState`];
//! - `fencing.rs`: fence steps, confirmation polls, fence proofs;
//! - `failover.rs`: the whole-blade failover order and the partner's report;
//! - `guest.rs`, `guest_failover.rs`: guest crash windows, restart or move;
//! - `predictive.rs`: non-critical holds and `blade_degraded`;
//! - `probing.rs`: [`Shelf::poll`], probes, heartbeat and probe loss;
//! - `silence.rs`: the rules of evidence on silence (corroboration, the
//!   shelf manager's own suspicion, the pair, the watchdog proof);
//! - `report.rs`, `unprotected.rs`: failover reports, unprotected guests;
//! - `request.rs`, `dedupe.rs`: IPMB request tracking, duplicate window;
//! - `state.rs`: [`BladeIdx`], the blade table, [`Counters`];
//! - `output.rs`, `alert.rs`: what comes out ([`Output`], [`Decision`],
//!   [`Order`], [`Alert`]).
//!
//! # Incident machine (one open incident per blade, an [`IncidentState`])
//! ```text
//! Healthy --blade_lost/blade_hardware/host_os--> Fencing(step, deadline)
//!          (+ FenceSelf to the blade's agent when it is registered)
//! Healthy --hypervisor--> SelfFencing(deadline) --deadline--> Fencing (both confirmations count)
//! Healthy --blade_extraction--> Evacuating (Evacuate order to the blade) --IncidentDone from the blade
//!          or its partner | timeout--> Fencing (deactivation, commanded)
//! Fencing --deadline--> next step: Set FRU Activation(deactivate) -> FRU Control(cold reset)
//!          -> Set Power Level 0 -> alert FenceUnconfirmed, next round from the first step (forever)
//! Fencing/SelfFencing/Evacuating/Migrating --hot-swap M1/M0 observed after the incident's first fence
//!          request (event, or Get Sensor Reading sent after it), or FenceSelfConfirmed when
//!          FenceSelf was ordered--> confirmed
//! Fencing --announced watchdog T, no channel heard the blade for > T + heartbeat timeout,
//!          no channel suspect--> confirmed (WatchdogExpired)
//! confirmed --> FailingOver (RestartPartnerGuests to the partner) --partner reports--> Recovered
//!          (no report within failover_report_timeout_ms: alert naming what was reported)
//! confirmed after an evacuation --> FailingOver as well: the partner starts
//!          the guests the evacuation stopped (it skips those that migrated)
//! any phase --hot-swap transition to M4--> closed (Healthy)
//! Healthy --blade_degraded (predictive), partner healthy--> Migrating (Migrate order to the
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
//! - Silence decides only under the rules of evidence of `silence.rs`:
//!   corroborated by the other channel (else the alert-only classes
//!   `ipmc_lost`, `agent_link_lost`), not while the shelf manager suspects
//!   its own IPMB or network, never leaving both blades of a pair fenced;
//!   an announced armed watchdog makes a long silence on every channel a
//!   fence proof ([`Confirmation::WatchdogExpired`]).
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

mod actions;
mod agents;
mod alert;
mod decide;
mod dedupe;
mod events;
mod failover;
mod fencing;
mod guest;
mod guest_failover;
mod incident;
pub mod output;
mod predictive;
mod probing;
mod report;
pub mod request;
mod silence;
mod state;
mod unprotected;

use heapless::Vec;
use log::warn;
use shelfha_proto::UnprotectedReason;

use crate::capacity::{MAX_BLADES, MAX_DEGRADED_HOLDS, MAX_FAILOVER_REPORTS, MAX_GUEST_FAILOVERS};
use crate::classify::{classify, predictive, BladeView, Class, Record, Verdict, Warning};
use crate::config::{BladeConfig, ConfigError, ShelfConfig};
use crate::wire::addr::{IpmbAddr, Slot};
use crate::wire::cmd::FruControlOption;
use crate::wire::command::{Body, Request, Response};
use crate::wire::event::{MState, PlatformEvent};

use dedupe::Dedupe;
use guest::GuestWindows;
pub use output::{
    unprotected_reason_str, Action, Alert, Cause, Confirmation, Decision, GuestList, GuestName,
    Order, OrderKind, Outbox, Output, ReportText, Table, Undelivered,
};
use report::Report;
pub use request::RequestStats;
use request::{Purpose, RequestTracker};
use unprotected::Unprotected;

pub use agents::AgentInput;
use fencing::Began;
use guest_failover::PendingGuest;
pub use incident::{FenceStep, IncidentState, OpenIncident};
use predictive::Hold;
use state::Blades;
pub use state::{BladeIdx, BladeStatus, Counters, EventOutcome, Link};

/// The shelf core.
#[derive(Debug)]
pub struct Shelf {
    cfg: ShelfConfig,
    /// Per-blade state and open incidents (`state.rs`, `incident.rs`).
    blades: Blades,
    /// IPMB: our outstanding requests (`request.rs`) and the duplicate
    /// window of Platform Events (`dedupe.rs`).
    requests: RequestTracker,
    dedupe: Dedupe,
    /// Guests: crash windows (`guest.rs`), single-guest failovers awaiting
    /// the destroy confirmation (`guest_failover.rs`), unprotected guests
    /// alerted (`unprotected.rs`).
    guests: GuestWindows,
    pending_guests: Vec<PendingGuest, MAX_GUEST_FAILOVERS>,
    unprotected: Unprotected,
    /// Predictive mode: non-critical threshold holds (`predictive.rs`).
    holds: Vec<Hold, MAX_DEGRADED_HOLDS>,
    /// Failover orders awaiting the partner's report (`report.rs`).
    reports: Vec<Report, MAX_FAILOVER_REPORTS>,
    /// The shelf manager's suspicion of its own channels (`silence.rs`).
    suspect: silence::Suspect,
    /// What the runtime gets: alerts raised once (`alert.rs`), the output
    /// queue, counters, and the next decision number.
    once: alert::Once,
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
        let blades = Blades::new(&cfg);
        Ok(Self {
            cfg,
            blades,
            requests: RequestTracker::new(),
            dedupe: Dedupe::new(),
            guests: GuestWindows::new(),
            pending_guests: Vec::new(),
            unprotected: Unprotected::new(),
            holds: Vec::new(),
            reports: Vec::new(),
            suspect: silence::Suspect::default(),
            once: alert::Once::default(),
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
    pub fn blade(&self, slot: Slot) -> Option<BladeStatus> {
        let b = &self.blades[self.blades.by_slot(slot)?];
        Some(BladeStatus {
            config: b.cfg,
            m_state: b.m_state,
            incident: b.incident,
            commanded: b.commanded,
            agent_registered: b.registered,
            link: b.link,
        })
    }

    /// The open incident of the blade in `slot`, if any.
    pub fn incident(&self, slot: Slot) -> Option<OpenIncident> {
        self.blades[self.blades.by_slot(slot)?].incident
    }

    /// Takes the oldest queued output.
    pub fn pop_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    /// Outputs queued and not yet taken.
    pub fn pending_outputs(&self) -> usize {
        self.out.len()
    }

    fn index_of_slot(&self, slot: Slot) -> Option<BladeIdx> {
        self.blades.by_slot(slot)
    }

    fn index_of_address(&self, addr: IpmbAddr) -> Option<BladeIdx> {
        self.blades.by_addr(addr)
    }

    fn alert(&mut self, alert: Alert) {
        warn!("ALERT {}: {alert}", alert.kind());
        self.counters.alerts += 1;
        self.out.push(Output::Alert(alert));
    }

    fn table_full(&mut self, table: Table) {
        if self.once.table_full(table) {
            self.alert(Alert::TableFull { table });
        }
    }
}

#[cfg(test)]
mod test;
