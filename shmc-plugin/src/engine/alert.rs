//! Alerts: what an operator must hear about, and the core's fixed tables.

use core::fmt;

use heapless::Vec;
use shelfha_proto::UnprotectedReason;

use crate::classify::Class;
use crate::wire::addr::{IpmbAddr, Slot};

use super::output::{
    unprotected_reason_str, GuestList, GuestName, OrderKind, ReportText, Undelivered,
};

/// Something an operator must hear about.
// The core has no allocator: an alert naming guests carries them inline
// (bounded by MAX_ALERT_GUESTS), so its variants differ in size.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// Every fence step was tried and the blade never reached M1/M0; the core
    /// keeps escalating and orders no failover.
    FenceUnconfirmed {
        /// The blade.
        slot: Slot,
        /// Its decision.
        incident: u32,
        /// Completed rounds of the fence steps.
        rounds: u32,
    },
    /// One or both IPMB buses to a blade are lost.
    IpmbLink {
        /// The blade.
        slot: Slot,
        /// Both buses (true) or one (false).
        both: bool,
    },
    /// Extraction: the partner did not report within the timeout; deactivation proceeds.
    EvacuationTimeout {
        /// The blade.
        slot: Slot,
        /// Its decision.
        incident: u32,
    },
    /// Guest failover: the blade did not confirm the guest destroyed; no failover.
    GuestFenceUnconfirmed {
        /// The blade.
        slot: Slot,
        /// The guest.
        name: GuestName,
    },
    /// A blade failed while its partner has an open incident of its own.
    PartnerUnavailable {
        /// The failed blade.
        slot: Slot,
        /// Its partner.
        partner: Slot,
    },
    /// Platform Events from an IPMB address that is not configured (first one per address).
    UnknownGenerator {
        /// The 8-bit address.
        address: IpmbAddr,
    },
    /// A fixed table overflowed (first time per table; counters hold the rest).
    TableFull {
        /// The table.
        table: Table,
    },
    /// A failover order (whole blade, or one guest) ended with guests of the
    /// failed blade not started: the partner reported them not started (no
    /// memory, no definition, a start that hit its deadline), or it did not
    /// report the failover done within `failover_report_timeout_ms`.
    GuestsNotRestarted {
        /// The failed blade.
        slot: Slot,
        /// Its decision (of the guest failover for one guest).
        incident: u32,
        /// Guests reported not started.
        not_started: GuestList,
        /// Guests reported started so far.
        started: u16,
        /// The partner reported every guest (false: its report is overdue, and
        /// every guest of the blade not reported started may be down).
        reported: bool,
        /// The partner refused some because the failed blade's agent, heard by
        /// the partner, still reports running protected guests (its second line
        /// against a double start): the fence's confirmation may be wrong.
        partner_running: bool,
    },
    /// A `blade_degraded` decision ended: the blade warns and should be
    /// serviced; it was not fenced.
    BladeDegraded {
        /// The blade.
        slot: Slot,
        /// Its decision.
        incident: u32,
        /// Its guests were reported migrated (or moved) by the agent; false
        /// when the partner was unavailable or the report did not come in time.
        evacuated: bool,
    },
    /// An order never reached its agent, or the agent refused it; what it
    /// asked for is not being done by that agent.
    OrderUndelivered {
        /// The agent's blade.
        slot: Slot,
        /// The decision the order served, when the link knows it.
        incident: Option<u32>,
        /// The order.
        kind: OrderKind,
        /// What happened to it.
        reason: Undelivered,
    },
    /// A guest is not protected: its partner cannot start it after a failure
    /// (first report per owner, guest and reason).
    GuestUnprotected {
        /// The blade the guest runs on.
        owner_slot: Slot,
        /// The agent that reported it (the owner or its partner).
        reporter: Slot,
        /// Why.
        reason: UnprotectedReason,
        /// The guest's name as reported (cut, possibly not a valid name).
        name: ReportText,
        /// Detail (e.g. the offending disk path), may be empty.
        text: ReportText,
    },
    /// The blade's IPMC is silent while its agent is heard: it stays in
    /// service, nothing is fenced (decision `ipmc_lost`).
    IpmcLost {
        /// The blade.
        slot: Slot,
        /// Its agent was ordered to live-migrate its guests to the partner.
        migrating: bool,
    },
    /// The blade's agent is not heard by the shelf manager while its IPMC
    /// answers in M4 and its partner hears it: not fenced (decision
    /// `agent_link_lost`).
    AgentLinkLost {
        /// The blade.
        slot: Slot,
    },
    /// Several IPMCs went silent together: the shelf manager suspects its
    /// own IPMB and decides nothing on IPMC silence until one answers.
    IpmbSuspect {
        /// IPMCs silent when it was raised.
        silent: u8,
    },
    /// Several agents went silent together: the shelf manager suspects its
    /// own network and decides nothing on agent silence until one is heard.
    NetworkSuspect {
        /// Agents silent when it was raised.
        silent: u8,
    },
    /// A fence on silence was not started: the blade's partner has an open
    /// incident, and a silence never leaves both blades of a pair fenced.
    FenceWithheld {
        /// The silent blade.
        slot: Slot,
        /// Its partner.
        partner: Slot,
        /// The decision that was withheld.
        class: Class,
    },
    /// An agent announced a heartbeat interval that the heartbeat timeout
    /// does not cover three times.
    HeartbeatTiming {
        /// The agent's blade.
        slot: Slot,
        /// Its announced interval.
        interval_ms: u32,
        /// The configured heartbeat timeout.
        timeout_ms: u64,
    },
    /// An agent announced a hardware watchdog timeout of 0, below its
    /// announced heartbeat interval, or beyond the longest IPMI watchdog
    /// countdown: the announcement is refused, the blade has no watchdog
    /// proof.
    WatchdogRefused {
        /// The agent's blade.
        slot: Slot,
        /// The announced watchdog timeout.
        watchdog_ms: u32,
        /// The announced heartbeat interval (0: not announced).
        interval_ms: u32,
        /// The configured heartbeat timeout.
        timeout_ms: u64,
    },
}

impl Alert {
    /// The alert's stable name in logs and JSON output.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::FenceUnconfirmed { .. } => "fence_unconfirmed",
            Self::IpmbLink { .. } => "ipmb_link",
            Self::EvacuationTimeout { .. } => "evacuation_timeout",
            Self::GuestFenceUnconfirmed { .. } => "guest_fence_unconfirmed",
            Self::PartnerUnavailable { .. } => "partner_unavailable",
            Self::UnknownGenerator { .. } => "unknown_generator",
            Self::TableFull { .. } => "table_full",
            Self::GuestsNotRestarted { .. } => "guests_not_restarted",
            Self::BladeDegraded { .. } => "blade_degraded",
            Self::OrderUndelivered { .. } => "order_undelivered",
            Self::GuestUnprotected { .. } => "guest_unprotected",
            Self::IpmcLost { .. } => "ipmc_lost",
            Self::AgentLinkLost { .. } => "agent_link_lost",
            Self::IpmbSuspect { .. } => "ipmb_suspect",
            Self::NetworkSuspect { .. } => "network_suspect",
            Self::FenceWithheld { .. } => "fence_withheld",
            Self::HeartbeatTiming { .. } => "heartbeat_timing",
            Self::WatchdogRefused { .. } => "watchdog_refused",
        }
    }

    /// The blade it is about, if one.
    pub const fn slot(&self) -> Option<Slot> {
        match self {
            Self::FenceUnconfirmed { slot, .. }
            | Self::IpmbLink { slot, .. }
            | Self::EvacuationTimeout { slot, .. }
            | Self::GuestFenceUnconfirmed { slot, .. }
            | Self::PartnerUnavailable { slot, .. }
            | Self::GuestsNotRestarted { slot, .. }
            | Self::BladeDegraded { slot, .. }
            | Self::OrderUndelivered { slot, .. }
            | Self::IpmcLost { slot, .. }
            | Self::AgentLinkLost { slot }
            | Self::FenceWithheld { slot, .. }
            | Self::HeartbeatTiming { slot, .. }
            | Self::WatchdogRefused { slot, .. } => Some(*slot),
            Self::GuestUnprotected { owner_slot, .. } => Some(*owner_slot),
            Self::UnknownGenerator { .. }
            | Self::TableFull { .. }
            | Self::IpmbSuspect { .. }
            | Self::NetworkSuspect { .. } => None,
        }
    }

    /// The decision it is about, if one.
    pub const fn incident(&self) -> Option<u32> {
        match self {
            Self::FenceUnconfirmed { incident, .. }
            | Self::EvacuationTimeout { incident, .. }
            | Self::GuestsNotRestarted { incident, .. }
            | Self::BladeDegraded { incident, .. } => Some(*incident),
            Self::OrderUndelivered { incident, .. } => *incident,
            _ => None,
        }
    }
}

/// Fixed tables of the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Outstanding IPMB requests.
    Requests,
    /// Duplicate suppression.
    Dedupe,
    /// Per-guest crash windows.
    Guests,
    /// Guest failovers awaiting the destroy confirmation.
    GuestFailovers,
    /// Non-critical threshold holds (predictive mode).
    DegradedHolds,
    /// Failover orders awaiting the partner's report.
    FailoverReports,
    /// Unprotected guests already alerted.
    Unprotected,
}

impl Table {
    /// Number of tables.
    pub const COUNT: usize = 7;
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FenceUnconfirmed { slot, incident, rounds } => write!(
                f,
                "fence of slot {slot} (decision #{incident}) unconfirmed after {rounds} round(s) of all steps; still escalating, no failover"
            ),
            Self::IpmbLink { slot, both } => write!(
                f,
                "slot {slot}: {} IPMB bus(es) lost; not fencing on IPMB loss alone",
                if *both { "both" } else { "one of two" }
            ),
            Self::EvacuationTimeout { slot, incident } => write!(
                f,
                "slot {slot} (decision #{incident}): evacuation not reported in time; deactivating anyway"
            ),
            Self::GuestFenceUnconfirmed { slot, name } => write!(
                f,
                "slot {slot}: guest {name} not confirmed destroyed; it is not failed over"
            ),
            Self::PartnerUnavailable { slot, partner } => write!(
                f,
                "slot {slot} failed while its partner slot {partner} has an open incident"
            ),
            Self::UnknownGenerator { address } => write!(
                f,
                "Platform Events from unconfigured IPMB address {address} are ignored"
            ),
            Self::TableFull { table } => write!(f, "table {table:?} full; see counters"),
            Self::GuestsNotRestarted {
                slot,
                incident,
                not_started,
                started: _,
                reported: true,
                partner_running: true,
            } => write!(
                f,
                "slot {slot} (decision #{incident}): partner still reports running guests: the partner refused to start {} guest(s): {not_started}; slot {slot}'s agent still reports protected guests running although its fence was confirmed; not started anywhere, the operator decides",
                not_started.len()
            ),
            Self::GuestsNotRestarted {
                slot,
                incident,
                not_started,
                started: _,
                reported: true,
                partner_running: false,
            } => write!(
                f,
                "slot {slot} (decision #{incident}): the partner could not start {} of its guest(s): {not_started}; they are down",
                not_started.len()
            ),
            Self::GuestsNotRestarted {
                slot,
                incident,
                not_started,
                started,
                reported: false,
                partner_running,
            } => write!(
                f,
                "slot {slot} (decision #{incident}): the partner has not reported the failover done in time; {started} guest(s) reported started, not started: {not_started}{}; every guest of slot {slot} not reported started may be down",
                if *partner_running {
                    " (partner still reports running guests)"
                } else {
                    ""
                }
            ),
            Self::BladeDegraded {
                slot,
                incident,
                evacuated: true,
            } => write!(
                f,
                "slot {slot} is degraded (decision #{incident}): its guests were moved to the partner; the blade still runs and needs service"
            ),
            Self::BladeDegraded {
                slot,
                incident,
                evacuated: false,
            } => write!(
                f,
                "slot {slot} is degraded (decision #{incident}): its guests were NOT all moved (partner unavailable or no report in time); the blade still runs and needs service"
            ),
            Self::OrderUndelivered {
                slot,
                incident,
                kind,
                reason,
            } => {
                write!(f, "order {} to slot {slot}", kind.as_str())?;
                if let Some(id) = incident {
                    write!(f, " (decision #{id})")?;
                }
                let what = match reason {
                    Undelivered::NotSent => "could not be sent",
                    Undelivered::Unacknowledged => "was never acknowledged",
                    Undelivered::Rejected => "was refused by the agent",
                };
                write!(f, " {what}; that agent is not carrying it out")
            }
            Self::GuestUnprotected {
                owner_slot,
                reporter,
                reason,
                name,
                text,
            } => {
                write!(
                    f,
                    "guest {name:?} of slot {owner_slot} is not protected ({}",
                    unprotected_reason_str(*reason)
                )?;
                if let UnprotectedReason::Unknown(code) = reason {
                    write!(f, " {code}")?;
                }
                if !text.is_empty() {
                    write!(f, ": {text}")?;
                }
                write!(
                    f,
                    ", reported by slot {reporter}); its partner cannot start it after a failure"
                )
            }
            Self::IpmcLost { slot, migrating } => write!(
                f,
                "slot {slot}: IPMC silent while its agent is heard; the blade stays in service, not fenced{}",
                if *migrating {
                    "; its guests are live-migrating to the partner"
                } else {
                    ""
                }
            ),
            Self::AgentLinkLost { slot } => write!(
                f,
                "slot {slot}: agent not heard here while its IPMC answers in M4 and its partner hears it; not fenced"
            ),
            Self::IpmbSuspect { silent } => write!(
                f,
                "{silent} IPMCs went silent together: suspecting this shelf manager's IPMB; no decision on IPMC silence until one answers"
            ),
            Self::NetworkSuspect { silent } => write!(
                f,
                "{silent} agents went silent together: suspecting this shelf manager's network; no decision on agent silence until one is heard"
            ),
            Self::FenceWithheld {
                slot,
                partner,
                class,
            } => write!(
                f,
                "slot {slot}: {class} on silence not decided: its partner slot {partner} has an open incident, and a silence never fences both of a pair; operator action needed"
            ),
            Self::HeartbeatTiming {
                slot,
                interval_ms,
                timeout_ms,
            } => write!(
                f,
                "slot {slot}: agent heartbeat interval {interval_ms} ms is not covered three times by heartbeat_timeout_ms = {timeout_ms}"
            ),
            Self::WatchdogRefused {
                slot,
                watchdog_ms,
                interval_ms,
                timeout_ms,
            } => write!(
                f,
                "slot {slot}: announced watchdog of {watchdog_ms} ms refused (needs a heartbeat interval, announced {interval_ms} ms, at most a third of heartbeat_timeout_ms = {timeout_ms}, and a watchdog from the interval up to the longest IPMI watchdog, {} ms): no watchdog proof for this blade",
                super::silence::WATCHDOG_MAX_MS
            ),
        }
    }
}

/// Unknown IPMB addresses remembered for one alert each.
const UNKNOWN_ALERTS: usize = 8;

/// Alerts raised once: per unknown generator address (the first
/// [`UNKNOWN_ALERTS`]) and per full table.
#[derive(Debug, Default)]
pub(super) struct Once {
    unknown: Vec<IpmbAddr, UNKNOWN_ALERTS>,
    tables: [bool; Table::COUNT],
}

impl Once {
    /// True the first time `addr` is seen (while there is room to remember it).
    pub(super) fn unknown_generator(&mut self, addr: IpmbAddr) -> bool {
        !self.unknown.contains(&addr) && self.unknown.push(addr).is_ok()
    }

    /// True the first time `table` is full.
    pub(super) fn table_full(&mut self, table: Table) -> bool {
        !core::mem::replace(&mut self.tables[table as usize], true)
    }
}
