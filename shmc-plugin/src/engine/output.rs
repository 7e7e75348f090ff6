//! What the core asks the runtime to do: decisions, IPMB requests, agent
//! orders and alerts, queued in a fixed [`Outbox`].

use core::fmt;

use heapless::{Deque, String, Vec};

use shelfha_proto::UnprotectedReason;

use crate::capacity::{
    MAX_ACTIONS, MAX_ALERT_GUESTS, MAX_GUEST_NAME, MAX_OUTPUTS, MAX_REPORT_TEXT,
};
use crate::classify::Class;
use crate::wire::addr::{IpmbAddr, Slot};
use crate::wire::command::Request;
use crate::wire::event::MState;

pub use super::alert::{Alert, Table};

/// A guest (libvirt domain) name as carried through the core.
pub type GuestName = String<MAX_GUEST_NAME>;

/// Free text of an agent report (a guest name that may be invalid, a detail).
pub type ReportText = String<MAX_REPORT_TEXT>;

/// Guests named by an alert: the first [`MAX_ALERT_GUESTS`] names, and how
/// many more there were (policy when full: the name is counted, not kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestList {
    /// Names, in the order they were reported, each once.
    pub names: Vec<GuestName, MAX_ALERT_GUESTS>,
    /// Guests that did not fit in `names`.
    pub more: u16,
}

impl GuestList {
    /// An empty list.
    pub const fn new() -> Self {
        Self {
            names: Vec::new(),
            more: 0,
        }
    }

    /// Adds `name` unless it is listed already; counts it in `more` when full.
    pub fn add(&mut self, name: &GuestName) {
        if self.names.contains(name) {
            return;
        }
        if self.names.push(name.clone()).is_err() {
            self.more = self.more.saturating_add(1);
        }
    }

    /// Removes `name` if it is listed (a guest counted in `more` stays counted).
    pub fn remove(&mut self, name: &GuestName) {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            self.names.remove(i);
        }
    }

    /// Guests in the list, named or not.
    pub fn len(&self) -> usize {
        self.names.len() + usize::from(self.more)
    }

    /// True when no guest is in the list.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for GuestList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.names.iter().enumerate() {
            f.write_str(if i == 0 { "" } else { ", " })?;
            f.write_str(n)?;
        }
        match (self.names.is_empty(), self.more) {
            (true, 0) => f.write_str("none"),
            (_, 0) => Ok(()),
            (true, m) => write!(f, "{m} unnamed"),
            (false, m) => write!(f, " and {m} more"),
        }
    }
}

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
    pub slot: Slot,
    /// IPMB address of the failed blade's IPMC.
    pub ipmb_address: IpmbAddr,
    /// Slot of its partner.
    pub partner_slot: Slot,
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
            "decision #{} {} for slot {} (IPMC {}, partner slot {}) at {} ms",
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
        failed_slot: Slot,
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
        to_slot: Slot,
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
        to_slot: Slot,
        /// The decision this serves.
        incident: u32,
    },
}

/// What kind of order an [`Order`] is (named in [`Alert::OrderUndelivered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderKind {
    /// [`Order::FenceSelf`].
    FenceSelf,
    /// [`Order::RestartPartnerGuests`].
    RestartPartnerGuests,
    /// [`Order::Evacuate`].
    Evacuate,
    /// [`Order::RestartGuest`].
    RestartGuest,
    /// [`Order::DestroyGuest`].
    DestroyGuest,
    /// [`Order::Migrate`].
    Migrate,
}

impl OrderKind {
    /// The order's name in logs and JSON output.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FenceSelf => "fence_self",
            Self::RestartPartnerGuests => "restart_partner_guests",
            Self::Evacuate => "evacuate",
            Self::RestartGuest => "restart_guest",
            Self::DestroyGuest => "destroy_guest",
            Self::Migrate => "migrate",
        }
    }

    /// The order kind of a protocol message kind, if it is one of the orders.
    pub const fn of_wire(kind: shelfha_proto::Kind) -> Option<Self> {
        use shelfha_proto::Kind;
        Some(match kind {
            Kind::FenceSelf => Self::FenceSelf,
            Kind::RestartPartnerGuests => Self::RestartPartnerGuests,
            Kind::Evacuate => Self::Evacuate,
            Kind::RestartGuest => Self::RestartGuest,
            Kind::DestroyGuest => Self::DestroyGuest,
            Kind::Migrate => Self::Migrate,
            _ => return None,
        })
    }
}

impl Order {
    /// Its kind.
    pub const fn kind(&self) -> OrderKind {
        match self {
            Self::FenceSelf { .. } => OrderKind::FenceSelf,
            Self::RestartPartnerGuests { .. } => OrderKind::RestartPartnerGuests,
            Self::Evacuate { .. } => OrderKind::Evacuate,
            Self::RestartGuest { .. } => OrderKind::RestartGuest,
            Self::DestroyGuest { .. } => OrderKind::DestroyGuest,
            Self::Migrate { .. } => OrderKind::Migrate,
        }
    }

    /// The decision it serves.
    pub const fn incident(&self) -> u32 {
        match self {
            Self::FenceSelf { incident }
            | Self::RestartPartnerGuests { incident, .. }
            | Self::Evacuate { incident, .. }
            | Self::RestartGuest { incident, .. }
            | Self::DestroyGuest { incident, .. }
            | Self::Migrate { incident, .. } => *incident,
        }
    }
}

/// Why an order did not reach its agent (the runtime's link tells the core).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Undelivered {
    /// It could not be sent at all (agent address unknown, queue full).
    NotSent,
    /// Sent and retried, never acknowledged.
    Unacknowledged,
    /// Acknowledged with a refusal: the agent will not carry it out.
    Rejected,
}

impl Undelivered {
    /// Its name in logs and JSON output.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotSent => "not_sent",
            Self::Unacknowledged => "unacknowledged",
            Self::Rejected => "rejected",
        }
    }
}

/// The name of an [`UnprotectedReason`] in logs and JSON output.
pub const fn unprotected_reason_str(r: UnprotectedReason) -> &'static str {
    match r {
        UnprotectedReason::BadName => "bad_name",
        UnprotectedReason::TooLarge => "too_large",
        UnprotectedReason::NameMismatch => "name_mismatch",
        UnprotectedReason::HostDevice => "host_device",
        UnprotectedReason::QemuCommandline => "qemu_commandline",
        UnprotectedReason::DiskPath => "disk_path",
        UnprotectedReason::BadXml => "bad_xml",
        UnprotectedReason::StoreFailed => "store_failed",
        UnprotectedReason::Emulator => "emulator",
        UnprotectedReason::SecurityLabel => "security_label",
        UnprotectedReason::Unknown(_) => "unknown",
    }
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
    /// The blade's agent announced a hardware watchdog armed with timeout T,
    /// and no channel heard the blade for longer than T and a heartbeat
    /// timeout (see `silence.rs`): the watchdog has reset it.
    WatchdogExpired,
}

/// One thing the runtime must do.
// Inline as well (no allocator): an alert naming guests is the largest output.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this IPMB request (the runtime frames it: rqSA = own address, LUNs 0).
    Ipmb {
        /// Destination IPMC.
        dest: IpmbAddr,
        /// Sequence number (6 bits) the response will carry.
        rq_seq: u8,
        /// The request.
        request: Request,
    },
    /// A decision was taken (log it; `replay` prints it).
    Decision(Decision),
    /// Send this order to the agent of `slot`.
    Order {
        /// The agent's blade.
        slot: Slot,
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
