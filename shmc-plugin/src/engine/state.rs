//! Per-blade state, counters and the outcome of an event.

use super::*;

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
    pub incident: Option<OpenIncident>,
    /// We sent a deactivation or fence in the open incident.
    pub commanded: bool,
    /// The agent is registered.
    pub agent_registered: bool,
    /// IPMB link condition.
    pub link: Link,
}

/// Index of a blade in the configuration (and in the shelf's blade table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BladeIdx(pub(crate) u8);

impl BladeIdx {
    /// The index.
    pub const fn get(self) -> usize {
        self.0 as usize
    }
}

/// The shelf's blades in configuration order, indexed by [`BladeIdx`].
#[derive(Debug)]
pub(super) struct Blades(Vec<Blade, MAX_BLADES>);

impl Blades {
    /// The blades of a validated configuration (at most [`MAX_BLADES`]).
    pub(super) fn new(cfg: &ShelfConfig) -> Self {
        let mut blades = Vec::new();
        for b in &cfg.blades {
            // validate() bounds the count by MAX_BLADES.
            let _ = blades.push(Blade::new(*b));
        }
        Self(blades)
    }

    /// Every index, in configuration order.
    pub(super) fn indices(&self) -> impl Iterator<Item = BladeIdx> {
        // At most MAX_BLADES (16) entries: the index fits a byte.
        (0..self.0.len()).map(|i| BladeIdx(i as u8))
    }

    /// The blade in `slot`.
    pub(super) fn by_slot(&self, slot: Slot) -> Option<BladeIdx> {
        self.position(|b| b.slot() == slot)
    }

    /// The blade whose IPMC has `addr`.
    pub(super) fn by_addr(&self, addr: IpmbAddr) -> Option<BladeIdx> {
        self.position(|b| b.addr() == addr)
    }

    fn position(&self, f: impl Fn(&Blade) -> bool) -> Option<BladeIdx> {
        self.0.iter().position(f).map(|i| BladeIdx(i as u8))
    }
}

impl core::ops::Index<BladeIdx> for Blades {
    type Output = Blade;

    fn index(&self, i: BladeIdx) -> &Blade {
        &self.0[i.get()]
    }
}

impl core::ops::IndexMut<BladeIdx> for Blades {
    fn index_mut(&mut self, i: BladeIdx) -> &mut Blade {
        &mut self.0[i.get()]
    }
}

/// One blade's state.
#[derive(Debug, Clone, Copy)]
pub(super) struct Blade {
    pub(super) cfg: BladeConfig,
    pub(super) m_state: Option<MState>,
    pub(super) hot_swap_sensor: u8,
    pub(super) incident: Option<OpenIncident>,
    pub(super) commanded: bool,
    pub(super) link: Link,
    pub(super) registered: bool,
    pub(super) last_heartbeat: u64,
    pub(super) hypervisor_down_since: Option<u64>,
    pub(super) last_heard: Option<u64>,
    pub(super) next_probe: u64,
    pub(super) next_confirm_poll: u64,
    /// When the open incident's first fence request was queued: only hot-swap
    /// states observed after it confirm the fence.
    pub(super) fence_began: Option<Began>,
    /// The rules of evidence on silence (`silence.rs`).
    pub(super) evidence: Evidence,
}

/// What one blade's agent announced, and what each channel last heard of
/// the blade, beyond the IPMC's `last_heard` and the agent's `last_heartbeat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Evidence {
    /// Last input from the blade's own agent (any message it sent).
    pub(super) agent_seen: Option<u64>,
    /// When the partner's agent last heard this blade's heartbeat, as the
    /// partner reported it (time of its report minus the age it gave).
    pub(super) partner_heard: Option<u64>,
    /// When the partner's agent last reported how long ago it heard this
    /// blade (the time of its latest report).
    pub(super) partner_report: Option<u64>,
    /// `heartbeat_timing` was raised in this registration episode (until
    /// the blade is fenced and its agent registers again).
    pub(super) timing_alerted: bool,
    /// `watchdog_refused` was raised in this registration episode.
    pub(super) watchdog_alerted: bool,
    /// Announced in the agent's registration: heartbeat interval (0: unknown).
    pub(super) heartbeat_interval_ms: u32,
    /// Announced in the agent's registration: an armed hardware watchdog
    /// with this timeout. Kept through a fence, forgotten when the blade is
    /// back in M4 (its agent registers again).
    pub(super) watchdog_ms: Option<u32>,
    /// Announced in the agent's registration: it live-migrates its guests to
    /// its partner.
    pub(super) live_migration: bool,
    /// `ipmc_lost` was raised in the current IPMC silence.
    pub(super) ipmc_lost: bool,
    /// `agent_link_lost` was raised in the current agent silence.
    pub(super) agent_link_lost: bool,
    /// A silence-based fence (of this class) was withheld by the rule of the
    /// pair in this silence.
    pub(super) withheld: Option<Class>,
    /// The `ipmc_lost` migration ordered (its decision), until reported.
    pub(super) migration: Option<u32>,
}

impl Blade {
    fn new(cfg: BladeConfig) -> Self {
        Self {
            cfg,
            m_state: None,
            hot_swap_sensor: cfg.hot_swap_sensor.unwrap_or(0),
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
            evidence: Evidence::default(),
        }
    }

    /// Its slot.
    pub(super) const fn slot(&self) -> Slot {
        self.cfg.slot
    }

    /// Its IPMC's address.
    pub(super) const fn addr(&self) -> IpmbAddr {
        self.cfg.ipmb_address
    }

    /// Its partner's slot.
    pub(super) const fn partner(&self) -> Slot {
        self.cfg.partner
    }
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
