//! What the core asks the runtime to do: decisions, IPMB requests, agent
//! orders and alerts, queued in a fixed [`Outbox`].

use core::fmt;

use heapless::{Deque, String, Vec};

use crate::capacity::{MAX_ACTIONS, MAX_GUEST_NAME, MAX_OUTPUTS};
use crate::classify::Class;
use crate::event::MState;
use crate::wire::ipmb::MAX_DATA_LEN;

/// A guest (libvirt domain) name as carried through the core.
pub type GuestName = String<MAX_GUEST_NAME>;

/// One step of a recovery, as data (the `actions` of a decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Fence the blade over IPMB (Set FRU Activation, escalating).
    FenceIpmb,
    /// The blade's agent destroys all its protected guests.
    SelfFence,
    /// After a confirmed fence, the partner restarts the blade's guests.
    FailoverToPartner,
    /// Planned: the blade's guests move to the partner.
    Evacuate,
    /// After evacuation, let the blade deactivate (Set FRU Activation).
    Deactivate,
    /// The blade's agent restarts the crashed guest in place.
    RestartLocal,
    /// The blade's agent destroys the crashed guest (before it moves).
    FenceGuest,
    /// After the guest is destroyed, the partner starts it.
    FailoverGuest,
    /// Tell the operator; nothing else.
    Alert,
}

impl Action {
    /// The action name used in logs and JSON output.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FenceIpmb => "fence_ipmb",
            Self::SelfFence => "self_fence",
            Self::FailoverToPartner => "failover_to_partner",
            Self::Evacuate => "evacuate",
            Self::Deactivate => "deactivate",
            Self::RestartLocal => "restart_local",
            Self::FenceGuest => "fence_guest",
            Self::FailoverGuest => "failover_guest",
            Self::Alert => "alert",
        }
    }
}

/// What caused a decision (for the log's explanation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A Platform Event.
    Event {
        /// Sensor type code.
        sensor_type: u8,
        /// Sensor number.
        sensor_number: u8,
        /// Event/reading type code.
        event_type: u8,
        /// ED1 low nibble.
        offset: u8,
        /// Hot-swap: state entered.
        m_state: Option<MState>,
        /// Hot-swap: state left (as given, or as last seen by the shelf).
        previous_m_state: Option<MState>,
    },
    /// The IPMC answered nothing for this long.
    ProbeLoss {
        /// Milliseconds since the IPMC was last heard.
        silent_ms: u64,
    },
    /// The registered agent sent no heartbeat for this long while its IPMC answered in M4.
    HeartbeatLoss {
        /// Milliseconds since the last heartbeat.
        silent_ms: u64,
    },
    /// The agent reported its hypervisor down this long ago.
    HypervisorDown {
        /// Milliseconds since the first down report.
        down_ms: u64,
    },
    /// The agent reported a guest crash.
    GuestCrash {
        /// Crashes of this guest within the restart window, this one included.
        crashes_in_window: u8,
    },
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Event {
                sensor_type,
                sensor_number,
                event_type,
                offset,
                m_state,
                previous_m_state,
            } => {
                write!(
                    f,
                    "event sensor type 0x{sensor_type:02x} #{sensor_number} reading type 0x{event_type:02x} offset {offset}"
                )?;
                if let Some(m) = m_state {
                    match previous_m_state {
                        Some(p) => write!(f, " (hot swap M{} -> M{})", p as u8, m as u8)?,
                        None => write!(f, " (hot swap ? -> M{})", m as u8)?,
                    }
                }
                Ok(())
            }
            Self::ProbeLoss { silent_ms } => write!(f, "IPMC silent for {silent_ms} ms"),
            Self::HeartbeatLoss { silent_ms } => write!(
                f,
                "agent silent for {silent_ms} ms while its IPMC answers in M4"
            ),
            Self::HypervisorDown { down_ms } => write!(f, "hypervisor down for {down_ms} ms"),
            Self::GuestCrash { crashes_in_window } => {
                write!(
                    f,
                    "guest crash #{crashes_in_window} within the restart window"
                )
            }
        }
    }
}

/// One classification that starts (or is) a recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Time of the input that caused it.
    pub t_ms: u64,
    /// Shelf-wide decision number (1, 2, ...); orders of its recovery carry it.
    pub incident: u32,
    /// Failure class.
    pub class: Class,
    /// Slot of the failed blade.
    pub slot: u8,
    /// IPMB address of the failed blade's IPMC.
    pub ipmb_address: u8,
    /// Slot of its partner.
    pub partner_slot: u8,
    /// Recovery steps, in order.
    pub actions: Vec<Action, MAX_ACTIONS>,
    /// What caused it.
    pub cause: Cause,
    /// The guest, for class `guest`.
    pub guest: Option<GuestName>,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "decision #{} {} for slot {} (IPMC 0x{:02x}, partner slot {}) at {} ms",
            self.incident, self.class, self.slot, self.ipmb_address, self.partner_slot, self.t_ms
        )?;
        if let Some(g) = &self.guest {
            write!(f, ", guest {g}")?;
        }
        write!(f, ": {}; actions", self.cause)?;
        for (i, a) in self.actions.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { ", " })?;
            f.write_str(a.as_str())?;
        }
        Ok(())
    }
}

/// A command for one blade agent. The runtime maps it to the agent protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    /// Destroy every protected guest now and confirm (class `hypervisor`).
    FenceSelf {
        /// The decision this serves.
        incident: u32,
    },
    /// Start the guests of `failed_slot` here. Sent only after the failed
    /// blade's fence (or, with `subset`, the guest's destruction) is confirmed.
    RestartPartnerGuests {
        /// The blade whose guests to start.
        failed_slot: u8,
        /// The decision whose confirmed fence allows it.
        incident: u32,
        /// How the fence was confirmed (the agent refuses an order without one).
        fence: Confirmation,
        /// Only this guest (class `guest`); all when `None`.
        subset: Option<GuestName>,
    },
    /// Planned: move every guest to `to_slot` (extraction).
    Evacuate {
        /// Partner that receives the guests.
        to_slot: u8,
        /// The decision this serves.
        incident: u32,
    },
    /// Restart this crashed guest in place.
    RestartGuest {
        /// The guest.
        name: GuestName,
        /// The decision this serves.
        incident: u32,
    },
    /// Destroy this guest here and confirm (before it moves to the partner).
    DestroyGuest {
        /// The guest.
        name: GuestName,
        /// The decision this serves.
        incident: u32,
    },
    /// Predictive (`blade_degraded`): live-migrate every guest to `to_slot`;
    /// a guest that cannot migrate keeps running here (nothing is stopped,
    /// the blade is not fenced).
    Migrate {
        /// Partner that receives the guests.
        to_slot: u8,
        /// The decision this serves.
        incident: u32,
    },
}

/// How a fence was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Confirmation {
    /// The blade's FRU 0 hot-swap sensor reported M1 (event or Get Sensor Reading).
    HotSwapM1,
    /// The blade's FRU 0 hot-swap sensor reported M0.
    HotSwapM0,
    /// The blade's own agent confirmed FenceSelf with no guest remaining.
    SelfFenced,
    /// The guest's blade confirmed the guest destroyed (per-guest failover).
    GuestDestroyed,
}

/// Something an operator must hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// Every fence step was tried and the blade never reached M1/M0; the core
    /// keeps escalating and orders no failover.
    FenceUnconfirmed {
        /// The blade.
        slot: u8,
        /// Its decision.
        incident: u32,
        /// Completed rounds of the fence steps.
        rounds: u32,
    },
    /// One or both IPMB buses to a blade are lost.
    IpmbLink {
        /// The blade.
        slot: u8,
        /// Both buses (true) or one (false).
        both: bool,
    },
    /// Extraction: the partner did not report within the timeout; deactivation proceeds.
    EvacuationTimeout {
        /// The blade.
        slot: u8,
        /// Its decision.
        incident: u32,
    },
    /// Guest failover: the blade did not confirm the guest destroyed; no failover.
    GuestFenceUnconfirmed {
        /// The blade.
        slot: u8,
        /// The guest.
        name: GuestName,
    },
    /// A blade failed while its partner has an open incident of its own.
    PartnerUnavailable {
        /// The failed blade.
        slot: u8,
        /// Its partner.
        partner: u8,
    },
    /// Platform Events from an IPMB address that is not configured (first one per address).
    UnknownGenerator {
        /// The 8-bit address.
        address: u8,
    },
    /// A fixed table overflowed (first time per table; counters hold the rest).
    TableFull {
        /// The table.
        table: Table,
    },
    /// The partner reported the failover done, but could not start some guests
    /// of the failed blade (no memory, no definition, hypervisor error).
    GuestsNotRestarted {
        /// The failed blade.
        slot: u8,
        /// Its decision.
        incident: u32,
        /// Guests reported not started.
        count: u16,
    },
    /// A `blade_degraded` decision ended: the blade warns and should be
    /// serviced; it was not fenced.
    BladeDegraded {
        /// The blade.
        slot: u8,
        /// Its decision.
        incident: u32,
        /// Its guests were reported migrated (or moved) by the agent; false
        /// when the partner was unavailable or the report did not come in time.
        evacuated: bool,
    },
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
                "Platform Events from unconfigured IPMB address 0x{address:02x} are ignored"
            ),
            Self::TableFull { table } => write!(f, "table {table:?} full; see counters"),
            Self::GuestsNotRestarted {
                slot,
                incident,
                count,
            } => write!(
                f,
                "slot {slot} (decision #{incident}): the partner could not start {count} of its guest(s); they are down"
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
        }
    }
}

/// Data bytes of one IPMB request of ours.
pub type IpmbData = Vec<u8, MAX_DATA_LEN>;

/// One thing the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this IPMB request (the runtime frames it: rqSA = own address, LUNs 0).
    Ipmb {
        /// 8-bit destination address.
        dest: u8,
        /// Network function (even: a request).
        net_fn: u8,
        /// Command.
        cmd: u8,
        /// Sequence number (6 bits) the response will carry.
        rq_seq: u8,
        /// Request data.
        data: IpmbData,
    },
    /// A decision was taken (log it; `replay` prints it).
    Decision(Decision),
    /// Send this order to the agent of `slot`.
    Order {
        /// The agent's blade.
        slot: u8,
        /// The order.
        order: Order,
    },
    /// Tell the operator.
    Alert(Alert),
}

/// The fixed output queue. Policy when full: the new output is dropped and
/// counted. One input produces at most a handful of outputs and the runtime
/// drains after every input and every poll, so this only happens when a
/// runtime stops draining.
#[derive(Debug)]
pub struct Outbox {
    queue: Deque<Output, MAX_OUTPUTS>,
    dropped: u64,
}

impl Outbox {
    /// An empty queue.
    pub const fn new() -> Self {
        Self {
            queue: Deque::new(),
            dropped: 0,
        }
    }

    /// Queues `out`, or counts it dropped when full.
    pub fn push(&mut self, out: Output) {
        if self.queue.push_back(out).is_err() {
            self.dropped += 1;
        }
    }

    /// Takes the oldest output.
    pub fn pop(&mut self) -> Option<Output> {
        self.queue.pop_front()
    }

    /// Outputs dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Free places.
    pub fn free(&self) -> usize {
        self.queue.capacity() - self.queue.len()
    }

    /// Queued outputs.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Iterates over queued outputs without removing them.
    pub fn iter(&self) -> impl Iterator<Item = &Output> {
        self.queue.iter()
    }
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}
