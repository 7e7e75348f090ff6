//! Orders the agent accepts from the ShMC and the outcomes it reports: the agent's own
//! vocabulary, independent of the wire encoding (`wire_map` maps protocol messages to these).

use serde::{Deserialize, Serialize};

use crate::failure::{DeadlineExceeded, Failure, MigrationFailure};

/// An order from the ShMC. Each names the incident it belongs to; an order is identified by
/// ([`Order::key`]) so a retried or replayed order is recognised and answered from the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Order {
    /// Start the failed partner's guests here from the stored definitions.
    ///
    /// Preconditions: `failed_slot` is this agent's partner, and `fence_confirmed` is true: the
    /// ShMC has confirmed the failed blade is fenced (M1/M0 reached or its agent's
    /// FenceSelfConfirmed). Otherwise the order is refused and nothing starts.
    RestartPartnerGuests {
        /// Incident id.
        incident: u32,
        /// The failed blade.
        failed_slot: u8,
        /// The ShMC states the failed blade's fence is confirmed.
        fence_confirmed: bool,
        /// Only these guests (per-guest failover); `None` means all.
        subset: Option<Vec<String>>,
    },
    /// Destroy every protected guest on this blade now (self-fence). No precondition.
    FenceSelf {
        /// Incident id.
        incident: u32,
    },
    /// Restart a crashed protected guest of this blade. Precondition: the guest is defined here.
    RestartGuest {
        /// Incident id.
        incident: u32,
        /// Guest name.
        name: String,
    },
    /// Destroy one local guest now (before a per-guest failover): through libvirt, or by
    /// killing its QEMU when libvirt does not answer within `fence_timeout`. Answered
    /// destroyed only on a positive reading (libvirt's, the process seen gone after SIGKILL,
    /// or a complete process-table scan without a QEMU of that name); otherwise failed.
    /// Precondition: the guest is protected here.
    DestroyGuest {
        /// Incident id.
        incident: u32,
        /// Guest name.
        name: String,
    },
    /// Planned extraction: move this blade's protected guests away. With the partner's
    /// libvirt URI configured and `to_slot` the partner: live migration, one by one reported.
    /// Otherwise: graceful shutdown (destroy at the timeout), reported; the partner then starts
    /// them when the ShMC orders it.
    Evacuate {
        /// Incident id.
        incident: u32,
        /// Destination blade.
        to_slot: u8,
    },
    /// Predictive (degraded blade): live-migrate this blade's protected guests to `to_slot`.
    /// A guest that cannot migrate keeps running here: nothing is stopped, as the blade is
    /// not fenced afterwards.
    Migrate {
        /// Incident id.
        incident: u32,
        /// Destination blade.
        to_slot: u8,
    },
}

impl Order {
    /// Whether the order starts (or resumes) guests on this blade: RestartPartnerGuests and
    /// RestartGuest. Such an order is resumed after an agent restart only within the boot it
    /// was accepted in and within `start_timeout_ms` of its acceptance (see
    /// [`crate::execute::Agent::accept`]); the others stop or move guests away and are always
    /// resumed.
    pub fn starts_guests(&self) -> bool {
        matches!(
            self,
            Order::RestartPartnerGuests { .. } | Order::RestartGuest { .. }
        )
    }

    /// Incident id.
    pub fn incident(&self) -> u32 {
        match self {
            Order::RestartPartnerGuests { incident, .. }
            | Order::FenceSelf { incident }
            | Order::RestartGuest { incident, .. }
            | Order::DestroyGuest { incident, .. }
            | Order::Evacuate { incident, .. }
            | Order::Migrate { incident, .. } => *incident,
        }
    }

    /// Identity of the order for duplicate detection.
    pub fn key(&self) -> String {
        match self {
            Order::RestartPartnerGuests {
                incident,
                failed_slot,
                ..
            } => format!("{incident}:restart-partner:{failed_slot}"),
            Order::FenceSelf { incident } => format!("{incident}:fence-self"),
            Order::RestartGuest { incident, name } => format!("{incident}:restart-guest:{name}"),
            Order::DestroyGuest { incident, name } => format!("{incident}:destroy-guest:{name}"),
            Order::Evacuate { incident, to_slot } => format!("{incident}:evacuate:{to_slot}"),
            Order::Migrate { incident, to_slot } => format!("{incident}:migrate:{to_slot}"),
        }
    }
}

/// Why a guest was not started, or how a start ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GuestResult {
    /// Started here.
    Started,
    /// It was already running here: not started again.
    AlreadyRunning,
    /// Not started: does not fit the free memory.
    NoMemory {
        /// KiB the guest needs.
        needed_kib: u64,
        /// KiB that were left for it.
        available_kib: u64,
    },
    /// Not started: no stored definition.
    Unknown,
    /// Stopped here (evacuation): `graceful` if it shut down by itself.
    Stopped {
        /// Shut down without being destroyed.
        graceful: bool,
    },
    /// Live-migrated to the partner (Evacuate).
    Migrated,
    /// Destroyed here (DestroyGuest); `killed` if its QEMU had to be killed directly.
    Destroyed {
        /// libvirt did not answer; the QEMU process was killed.
        killed: bool,
    },
    /// The operation failed.
    Failed {
        /// Why.
        reason: Failure,
    },
    /// Live-migrated to the partner, with libvirt's job statistics (Evacuate, Migrate).
    LiveMigrated {
        /// Duration of the migration job in ms (libvirt's, else measured by the agent).
        migration_ms: u64,
        /// Guest downtime in ms, when libvirt reported it.
        downtime_ms: Option<u64>,
    },
    /// Partner restart: the guest's paused warm standby was resumed (not started cold).
    Resumed,
    /// Not started: this blade fenced itself before the guest's start was asked of libvirt
    /// (a queued start is cancelled; nothing is started after a fence).
    Fenced,
    /// The hypervisor did not answer within the deadline (`start_timeout_ms` for a start):
    /// reported failed. The blocked call is left to itself; a start that completes later is
    /// logged and not recorded as a takeover.
    TimedOut {
        /// What did not answer, and after how long.
        reason: DeadlineExceeded,
    },
    /// Not started: a heartbeat of the failed blade received after the order still reports
    /// `running` protected guests there (the starts still to come are refused, see
    /// [`crate::decide::partner`]).
    PartnerRunning {
        /// The heartbeat's `running` count.
        running: u16,
    },
    /// Evacuate: the migration failed or timed out (its job aborted), so the guest was stopped
    /// here; the partner starts it once this blade is confirmed fenced.
    StoppedAfterMigration {
        /// Why the migration failed.
        reason: MigrationFailure,
        /// Shut down without being destroyed.
        graceful: bool,
    },
}

impl GuestResult {
    /// Whether the guest ended up in the state the order asked for.
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            GuestResult::Started
                | GuestResult::AlreadyRunning
                | GuestResult::Stopped { .. }
                | GuestResult::Migrated
                | GuestResult::LiveMigrated { .. }
                | GuestResult::StoppedAfterMigration { .. }
                | GuestResult::Resumed
        )
    }
}

/// The outcome of one guest within an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestOutcome {
    /// Incident id of the order.
    pub incident: u32,
    /// Guest name.
    pub name: String,
    /// What happened.
    pub result: GuestResult,
    /// Time from the order's acceptance to this outcome, in milliseconds.
    pub elapsed_ms: u32,
}

/// FenceSelf result counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceReport {
    /// Guests destroyed through libvirt alone (no QEMU pid known, e.g. the test driver).
    pub destroyed: u16,
    /// Guests whose QEMU the agent SIGKILLed and saw gone: the first step whenever its pid
    /// is known, and the way out when libvirt does not answer in time.
    pub killed: u16,
    /// Guests that were already stopped.
    pub already_stopped: u16,
    /// Guests that could not be confirmed stopped (kill failed, no positive reading while
    /// libvirt does not answer, a start still in flight, guests that cannot be known): the
    /// fence is NOT complete while this is non-zero. Sent as FenceSelfConfirmed `remaining`.
    pub failed: u16,
    /// Time from the order to the confirmation, in milliseconds.
    pub elapsed_ms: u32,
}

impl FenceReport {
    /// Whether every protected guest is confirmed stopped.
    pub fn complete(&self) -> bool {
        self.failed == 0
    }
}

/// Why an order was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// RestartPartnerGuests without a confirmed fence of the failed blade.
    #[error("fence of slot {0} not confirmed")]
    FenceNotConfirmed(u8),
    /// RestartPartnerGuests naming a blade that is not our partner.
    #[error("slot {0} is not our partner")]
    NotPartner(u8),
    /// RestartGuest of a guest that is not protected here.
    #[error("guest `{0}` is not protected here")]
    NotProtected(String),
    /// This blade fenced itself; it starts nothing until the agent restarts.
    #[error("this blade is fenced")]
    Fenced,
    /// The hypervisor could not be asked.
    #[error("hypervisor unavailable: {0}")]
    Hypervisor(Failure),
    /// RestartPartnerGuests while the failed blade's agent, heard recently, still reports
    /// `running` protected guests in a heartbeat received after the order: nothing started
    /// (see [`crate::decide::partner`]).
    #[error("partner still reports running guests: slot {slot} reports {running} running")]
    PartnerRunning {
        /// The failed blade.
        slot: u8,
        /// Its heartbeat's `running` count.
        running: u16,
    },
}

/// The final answer to an order, kept in the journal and re-sent for duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderResult {
    /// Refused; nothing was done.
    Refused(Refusal),
    /// Per-guest outcomes (restart, evacuate).
    Guests(Vec<GuestOutcome>),
    /// Self-fence counts.
    Fenced(FenceReport),
}
