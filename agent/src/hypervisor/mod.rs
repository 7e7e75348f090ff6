//! The agent's view of the hypervisor: a trait with the few operations the agent needs, the
//! libvirt implementation (`libvirt`, with the lifecycle-event shim in `events`), and a fake
//! for unit tests (`fake`, test builds only).

pub mod events;
// Feature `fuzzing` exposes the fake to the fuzz targets (`fuzz/`); never in a release build.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fake;
pub mod libvirt;
pub mod procscan;

pub use procscan::{QemuProcess, ScanError};

use std::sync::mpsc::Sender;

/// Namespace of the agent's libvirt metadata element (`protected = "metadata"`).
pub const METADATA_URI: &str = "https://shelfha.org/xmlns/agent/1";

/// A guest's run state, reduced to what the agent decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestState {
    /// Running (or blocked on I/O): a QEMU process exists and runs the guest.
    Running,
    /// Paused: a QEMU process exists, CPUs stopped.
    Paused,
    /// Shutting down.
    ShuttingDown,
    /// Not running.
    Shutoff,
    /// Crashed (libvirt still holds a dead instance).
    Crashed,
    /// Any other state (pm-suspended, no state).
    Other,
}

impl GuestState {
    /// Whether a QEMU process for the guest exists (starting it again would be a second run).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            GuestState::Running | GuestState::Paused | GuestState::ShuttingDown | GuestState::Other
        )
    }
}

/// One domain as listed by the hypervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestInfo {
    /// Domain name.
    pub name: String,
    /// Domain UUID, canonical text form.
    pub uuid: String,
    /// Current state.
    pub state: GuestState,
    /// Whether the domain is persistent (defined), as opposed to transient.
    pub persistent: bool,
    /// Whether the domain carries the agent's metadata element.
    pub flagged: bool,
    /// Inactive (persistent) domain XML, secure fields included.
    pub xml: String,
    /// Maximum memory in KiB.
    pub memory_kib: u64,
}

/// What happened to a domain, as reported by libvirt's lifecycle events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleKind {
    /// Defined or its definition changed.
    Defined,
    /// Undefined.
    Undefined,
    /// Started.
    Started,
    /// Stopped on request (shutdown, destroy, migrated away, saved).
    Stopped,
    /// Stopped without being asked: QEMU died or the guest crashed.
    Crashed,
    /// Suspended or resumed or another transition the agent does not act on.
    Other,
}

/// An event from the hypervisor connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HypervisorEvent {
    /// A domain lifecycle event.
    Lifecycle {
        /// Domain name.
        name: String,
        /// Domain UUID.
        uuid: String,
        /// What happened.
        kind: LifecycleKind,
        /// libvirt's raw event and detail codes, for the log.
        raw: (i32, i32),
    },
    /// The connection to the hypervisor closed (daemon died, keepalive timed out).
    ConnectionClosed {
        /// libvirt's close reason code.
        reason: i32,
    },
}

/// A hypervisor call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HypervisorError {
    /// No domain with this name.
    #[error("no domain `{0}`")]
    NoSuchGuest(String),
    /// The hypervisor refused or failed the operation.
    #[error("{op} `{name}`: {message}")]
    Failed {
        /// Operation.
        op: &'static str,
        /// Domain (or URI for connection-level calls).
        name: String,
        /// Hypervisor's message.
        message: String,
    },
    /// A disk of the domain is locked by another QEMU ([`is_lock_conflict`]): the guest
    /// runs elsewhere.
    #[error("{op} `{name}`: {message}")]
    DiskLocked {
        /// Operation.
        op: &'static str,
        /// Domain.
        name: String,
        /// Hypervisor's message.
        message: String,
    },
    /// The hypervisor cannot be reached.
    #[error("hypervisor unavailable: {0}")]
    Unavailable(String),
    /// The hypervisor did not answer within the call's deadline (the call is left to itself).
    #[error("hypervisor unavailable: {0}")]
    NoAnswer(#[source] crate::failure::DeadlineExceeded),
}

impl HypervisorError {
    /// A failed operation, classified: a lock conflict ([`is_lock_conflict`]) is
    /// [`HypervisorError::DiskLocked`], anything else [`HypervisorError::Failed`].
    pub fn failed(op: &'static str, name: &str, message: String) -> HypervisorError {
        let name = name.to_owned();
        if is_lock_conflict(&message) {
            HypervisorError::DiskLocked { op, name, message }
        } else {
            HypervisorError::Failed { op, name, message }
        }
    }
}

/// Whether libvirt's message for a failed operation is a real lock conflict. libvirt has no
/// error number for it, so its text is read here, at the edge, once: virtlockd's "Lockspace
/// resource '...' is locked" or QEMU's image lock ("Failed to get \"write\" lock"). A lock
/// daemon that cannot be reached ("Failed to connect socket to '.../virtlockd-sock': Device or
/// resource busy") is not one.
pub fn is_lock_conflict(message: &str) -> bool {
    (message.contains("Lockspace resource") && message.contains("is locked"))
        || message.contains("get \"write\" lock")
}

/// What the hypervisor measured of one completed live migration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MigrationStats {
    /// Duration of the migration job, in ms (libvirt's `time_elapsed`), when reported.
    pub elapsed_ms: Option<u64>,
    /// Guest downtime (CPUs paused during the switch-over), in ms, when reported.
    pub downtime_ms: Option<u64>,
}

/// The operations the agent performs on its hypervisor. Every call may block (libvirt RPC);
/// callers that need a bound on the wait run the call on a worker thread.
pub trait Hypervisor: Send + Sync {
    /// All domains (active and defined), with their inactive XML.
    fn list_guests(&self) -> Result<Vec<GuestInfo>, HypervisorError>;
    /// Current state of a domain.
    fn state(&self, name: &str) -> Result<GuestState, HypervisorError>;
    /// Defines (or redefines) a persistent domain from XML; returns its name.
    fn define(&self, xml: &str) -> Result<String, HypervisorError>;
    /// Sets whether the host starts the domain when it boots (libvirt autostart). A protected
    /// guest must not autostart: a fenced blade that reboots would start a guest already
    /// failed over to its partner.
    fn set_autostart(&self, name: &str, on: bool) -> Result<(), HypervisorError>;
    /// Starts a defined, inactive domain. Precondition: the domain is not active.
    fn start(&self, name: &str) -> Result<(), HypervisorError>;
    /// Starts a defined domain with its CPUs paused (warm standby).
    fn start_paused(&self, name: &str) -> Result<(), HypervisorError>;
    /// Resumes a paused domain.
    fn resume(&self, name: &str) -> Result<(), HypervisorError>;
    /// Asks the guest to shut down (ACPI); returns at once.
    fn shutdown(&self, name: &str) -> Result<(), HypervisorError>;
    /// Stops a domain at once (kills QEMU through libvirt).
    fn destroy(&self, name: &str) -> Result<(), HypervisorError>;
    /// Live-migrates a running domain to `dest_uri` (peer to peer), persistent there and
    /// undefined here; `migration_uri` selects the data stream address. Returns what the
    /// hypervisor measured of the completed job.
    fn migrate(
        &self,
        name: &str,
        dest_uri: &str,
        migration_uri: Option<&str>,
    ) -> Result<MigrationStats, HypervisorError>;
    /// Aborts the domain's running job (a migration that takes too long); the migration
    /// call then fails and the domain keeps running here.
    fn abort_job(&self, name: &str) -> Result<(), HypervisorError>;
    /// Host memory that is free for new guests, in KiB.
    fn free_memory_kib(&self) -> Result<u64, HypervisorError>;
    /// Free memory of the host behind another libvirt URI (a migration's destination), in KiB.
    fn free_memory_kib_at(&self, uri: &str) -> Result<u64, HypervisorError>;
    /// PID of the domain's QEMU process, read without asking the hypervisor daemon (pid file).
    /// `None` proves nothing: the file may be gone while the process runs.
    fn qemu_pid(&self, name: &str) -> Option<i32>;
    /// Every live QEMU process of this blade, read from the process table without asking the
    /// hypervisor daemon (see [`procscan`]). Err (with why) when the table could not be read
    /// completely; an Ok reading is a positive statement that no other QEMU of this blade runs.
    fn qemu_processes(&self) -> Result<Vec<QemuProcess>, ScanError>;
    /// Checks that the hypervisor answers.
    fn ping(&self) -> Result<(), HypervisorError>;
    /// Delivers lifecycle events (and connection loss) to `sink` from now on.
    fn subscribe(&self, sink: Sender<HypervisorEvent>) -> Result<(), HypervisorError>;
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_only_a_lock_conflict_is_disk_locked() {
        for conflict in [
            "resource busy: Lockspace resource '0123abcd' is locked",
            "internal error: qemu unexpectedly closed the monitor: Failed to get \"write\" lock",
        ] {
            assert!(matches!(
                HypervisorError::failed("start", "g1", conflict.into()),
                HypervisorError::DiskLocked { .. }
            ));
        }
        for other in [
            "Failed to connect socket to '/run/libvirt/virtlockd-sock': Device or resource busy",
            "Failed to connect socket to '/run/libvirt/virtlockd-sock': Connection refused",
            "resource busy: cannot acquire state change lock",
            "Lockspace for path /x does not exist",
        ] {
            assert!(matches!(
                HypervisorError::failed("start", "g1", other.into()),
                HypervisorError::Failed { .. }
            ));
        }
    }
}
