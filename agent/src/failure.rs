//! Why a guest operation failed, typed: built where the failure happens (`execute`), kept in
//! the journal, and mapped to a wire reason code in one place
//! ([`crate::wire_map::outcome_codes`]). Decisions match on the variant; a `detail` string is
//! log and report text only and is never parsed.
//!
//! Journal compatibility: records written before these types existed hold a plain string;
//! such a string reads back as the variant that carries free text (`Hypervisor`,
//! [`MigrationFailure::Hypervisor`], a [`DeadlineExceeded`] without a bound).

use serde::{Deserialize, Serialize};

use crate::hypervisor::HypervisorError;

/// Why a guest operation failed ([`crate::order::GuestResult::Failed`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(from = "FailureRepr")]
pub enum Failure {
    /// The hypervisor refused or failed the operation.
    #[error("{detail}")]
    Hypervisor {
        /// The hypervisor's message.
        detail: String,
    },
    /// A disk of the guest is locked by another QEMU (virtlockd's lease, QEMU's image lock):
    /// the guest still runs elsewhere.
    #[error("{detail}")]
    DiskLocked {
        /// The hypervisor's message.
        detail: String,
    },
    /// The hypervisor could not be reached.
    #[error("{detail}")]
    Unavailable {
        /// What could not be asked, and why.
        detail: String,
    },
    /// A live migration did not happen; the guest keeps running here (Migrate).
    #[error("migration: {0}; it keeps running here")]
    Migration(MigrationFailure),
    /// The stored definition is refused by the current definition policy.
    #[error("definition refused: {detail}")]
    DefinitionRefused {
        /// The policy's refusal.
        detail: String,
    },
    /// The warm standby could not be resumed.
    #[error("resume of the warm standby: {0}")]
    StandbyResume(Box<Failure>),
    /// The guest could not be confirmed stopped (no positive reading of its QEMU gone).
    #[error("{detail}")]
    NotStopped {
        /// The readings, and what libvirt said.
        detail: String,
        /// libvirt could not be reached for the destroy.
        hypervisor_unavailable: bool,
    },
    /// No thread could be started for the call.
    #[error("{what}: no thread: {detail}")]
    NoThread {
        /// The call.
        what: String,
        /// The system's error.
        detail: String,
    },
    /// Not started: the order was accepted by an earlier agent process and is stale (of
    /// another boot, or older than `start_timeout_ms`); it was closed without starting
    /// anything, the operator decides.
    #[error("order abandoned: {detail}")]
    Abandoned {
        /// Why it was not resumed.
        detail: String,
    },
}

impl From<HypervisorError> for Failure {
    fn from(e: HypervisorError) -> Failure {
        let detail = e.to_string();
        match e {
            HypervisorError::DiskLocked { .. } => Failure::DiskLocked { detail },
            HypervisorError::Unavailable(_) | HypervisorError::NoAnswer(_) => {
                Failure::Unavailable { detail }
            }
            HypervisorError::NoSuchGuest(_) | HypervisorError::Failed { .. } => {
                Failure::Hypervisor { detail }
            }
        }
    }
}

/// Why a live migration did not happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(from = "MigrationRepr")]
pub enum MigrationFailure {
    /// The partner holds a paused warm standby of the guest.
    #[error("a warm standby waits on the partner")]
    StandbyOnPartner,
    /// No partner libvirt URI is configured for the destination.
    #[error("no migration path to the partner")]
    NoPath,
    /// The destination has not enough free memory.
    #[error("no capacity on slot {slot}: needs {needed_kib} KiB, {free_kib} KiB free")]
    NoCapacity {
        /// Destination slot.
        slot: u8,
        /// KiB the guest needs.
        needed_kib: u64,
        /// KiB free there.
        free_kib: u64,
    },
    /// The migration call failed.
    #[error("{detail}")]
    Hypervisor {
        /// The hypervisor's message.
        detail: String,
    },
    /// The migration did not complete within its deadline; its job was aborted.
    #[error("timed out after {after_ms} ms, job aborted: {detail}")]
    Aborted {
        /// The deadline.
        after_ms: u64,
        /// What the migration call said once aborted.
        detail: String,
    },
    /// The migration call did not return within `start_timeout` of the abort.
    #[error(
        "timed out after {after_ms} ms; the migration call did not return within {abort_ms} ms \
         of the abort"
    )]
    NoReturn {
        /// The migration deadline.
        after_ms: u64,
        /// The wait after the abort.
        abort_ms: u64,
    },
    /// No thread could be started for the migration.
    #[error("no thread: {0}")]
    NoThread(String),
}

/// A call that did not answer within its deadline: it is left to itself on its thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "DeadlineRepr")]
pub struct DeadlineExceeded {
    /// What was left undone (the call, and its guest).
    pub undone: String,
    /// The deadline in ms (0: not known, a record of an older journal).
    pub within_ms: u64,
}

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.within_ms == 0 {
            // An older journal's record: its text says it all.
            f.write_str(&self.undone)
        } else {
            write!(
                f,
                "{}: no answer from libvirt within {} ms",
                self.undone, self.within_ms
            )
        }
    }
}

impl std::error::Error for DeadlineExceeded {}

// ----- journal compatibility: a plain string, or the typed form -----

#[derive(Deserialize)]
#[serde(untagged)]
enum FailureRepr {
    Legacy(String),
    Typed(FailureTyped),
}

#[derive(Deserialize)]
enum FailureTyped {
    Hypervisor {
        detail: String,
    },
    DiskLocked {
        detail: String,
    },
    Unavailable {
        detail: String,
    },
    Migration(MigrationFailure),
    DefinitionRefused {
        detail: String,
    },
    StandbyResume(Box<Failure>),
    NotStopped {
        detail: String,
        hypervisor_unavailable: bool,
    },
    NoThread {
        what: String,
        detail: String,
    },
    Abandoned {
        detail: String,
    },
}

impl From<FailureRepr> for Failure {
    fn from(r: FailureRepr) -> Failure {
        match r {
            FailureRepr::Legacy(detail) => Failure::Hypervisor { detail },
            FailureRepr::Typed(t) => match t {
                FailureTyped::Hypervisor { detail } => Failure::Hypervisor { detail },
                FailureTyped::DiskLocked { detail } => Failure::DiskLocked { detail },
                FailureTyped::Unavailable { detail } => Failure::Unavailable { detail },
                FailureTyped::Migration(m) => Failure::Migration(m),
                FailureTyped::DefinitionRefused { detail } => Failure::DefinitionRefused { detail },
                FailureTyped::StandbyResume(f) => Failure::StandbyResume(f),
                FailureTyped::NotStopped {
                    detail,
                    hypervisor_unavailable,
                } => Failure::NotStopped {
                    detail,
                    hypervisor_unavailable,
                },
                FailureTyped::NoThread { what, detail } => Failure::NoThread { what, detail },
                FailureTyped::Abandoned { detail } => Failure::Abandoned { detail },
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MigrationRepr {
    Legacy(String),
    Typed(MigrationTyped),
}

#[derive(Deserialize)]
enum MigrationTyped {
    StandbyOnPartner,
    NoPath,
    NoCapacity {
        slot: u8,
        needed_kib: u64,
        free_kib: u64,
    },
    Hypervisor {
        detail: String,
    },
    Aborted {
        after_ms: u64,
        detail: String,
    },
    NoReturn {
        after_ms: u64,
        abort_ms: u64,
    },
    NoThread(String),
}

impl From<MigrationRepr> for MigrationFailure {
    fn from(r: MigrationRepr) -> MigrationFailure {
        match r {
            MigrationRepr::Legacy(detail) => MigrationFailure::Hypervisor { detail },
            MigrationRepr::Typed(t) => match t {
                MigrationTyped::StandbyOnPartner => MigrationFailure::StandbyOnPartner,
                MigrationTyped::NoPath => MigrationFailure::NoPath,
                MigrationTyped::NoCapacity {
                    slot,
                    needed_kib,
                    free_kib,
                } => MigrationFailure::NoCapacity {
                    slot,
                    needed_kib,
                    free_kib,
                },
                MigrationTyped::Hypervisor { detail } => MigrationFailure::Hypervisor { detail },
                MigrationTyped::Aborted { after_ms, detail } => {
                    MigrationFailure::Aborted { after_ms, detail }
                }
                MigrationTyped::NoReturn { after_ms, abort_ms } => {
                    MigrationFailure::NoReturn { after_ms, abort_ms }
                }
                MigrationTyped::NoThread(e) => MigrationFailure::NoThread(e),
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DeadlineRepr {
    Legacy(String),
    Typed { undone: String, within_ms: u64 },
}

impl From<DeadlineRepr> for DeadlineExceeded {
    fn from(r: DeadlineRepr) -> DeadlineExceeded {
        match r {
            DeadlineRepr::Legacy(undone) => DeadlineExceeded {
                undone,
                within_ms: 0,
            },
            DeadlineRepr::Typed { undone, within_ms } => DeadlineExceeded { undone, within_ms },
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::order::GuestResult;

    #[test]
    fn test_typed_failures_round_trip_through_the_journal_encoding() {
        for r in [
            GuestResult::Failed {
                reason: Failure::DiskLocked {
                    detail: "start `g`: locked".into(),
                },
            },
            GuestResult::Failed {
                reason: Failure::Migration(MigrationFailure::NoCapacity {
                    slot: 2,
                    needed_kib: 3,
                    free_kib: 1,
                }),
            },
            GuestResult::Failed {
                reason: Failure::StandbyResume(Box::new(Failure::Unavailable {
                    detail: "x".into(),
                })),
            },
            GuestResult::TimedOut {
                reason: DeadlineExceeded {
                    undone: "start of `g`".into(),
                    within_ms: 30_000,
                },
            },
            GuestResult::StoppedAfterMigration {
                reason: MigrationFailure::NoReturn {
                    after_ms: 1,
                    abort_ms: 2,
                },
                graceful: true,
            },
        ] {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(
                serde_json::from_str::<GuestResult>(&json).unwrap(),
                r,
                "{json}"
            );
        }
    }

    #[test]
    fn test_records_of_an_older_journal_still_read() {
        let old = r#"{"Failed":{"reason":"start `g`: boom"}}"#;
        let GuestResult::Failed { reason } = serde_json::from_str(old).unwrap() else {
            panic!()
        };
        assert_eq!(reason.to_string(), "start `g`: boom");
        let old = r#"{"TimedOut":{"reason":"start of `g`: no answer from libvirt within 5 ms"}}"#;
        let GuestResult::TimedOut { reason } = serde_json::from_str(old).unwrap() else {
            panic!()
        };
        assert_eq!(
            reason.to_string(),
            "start of `g`: no answer from libvirt within 5 ms"
        );
        let old = r#"{"StoppedAfterMigration":{"reason":"boom","graceful":false}}"#;
        assert!(serde_json::from_str::<GuestResult>(old).is_ok());
    }
}
