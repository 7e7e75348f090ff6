//! The one-byte code tables of the messages (health, fence proofs, outcomes, reason codes,
//! unprotected reasons, moves, ack statuses): each keeps a value it does not know as
//! `Unknown(n)`, so a newer peer's code is carried, not refused.

use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Defines a one-byte code enum with an `Unknown(u8)` variant, encoded as a plain `u8`.
macro_rules! code_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $var:ident = $val:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $var,)+
            /// A value this version does not know (sent by a newer peer).
            Unknown(u8),
        }
        impl From<u8> for $name {
            fn from(v: u8) -> Self {
                match v {
                    $($val => $name::$var,)+
                    other => $name::Unknown(other),
                }
            }
        }
        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                match v {
                    $($name::$var => $val,)+
                    $name::Unknown(other) => other,
                }
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u8(u8::from(*self))
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                u8::deserialize(d).map($name::from)
            }
        }
        impl MaxSize for $name {
            const POSTCARD_MAX_SIZE: usize = 1;
        }
    };
}

code_enum! {
    /// Health of the blade's hypervisor as the agent sees it.
    pub enum Health {
        /// libvirt answers and the host is fine.
        Ok = 0,
        /// libvirt answers but something is wrong (slow, errors on some calls).
        Degraded = 1,
        /// libvirt does not answer.
        Down = 2,
    }
}

code_enum! {
    /// How a failed blade's fence was confirmed; the agent refuses a restart without one.
    pub enum FenceProof {
        /// Not confirmed: an agent must refuse the order ([`ReasonCode::FenceNotConfirmed`]).
        Unconfirmed = 0,
        /// The blade's hot-swap sensor reads M1 (deactivated).
        HotSwapM1 = 1,
        /// The blade's hot-swap sensor reads M0 (not installed / powered off).
        HotSwapM0 = 2,
        /// Payload power off confirmed by the IPMC.
        PowerOff = 3,
        /// The blade's own agent confirmed FenceSelf with no guest remaining.
        SelfFenced = 4,
        /// An operator declared the blade fenced.
        Operator = 5,
        /// Per-guest failover: the guest's own blade confirmed GuestDestroyed for every guest
        /// of the subset (the blade itself is not fenced).
        GuestDestroyed = 6,
        /// The blade's agent announced an armed hardware watchdog in this run, and the blade
        /// was silent on every channel for longer than its timeout plus a margin.
        WatchdogExpired = 7,
    }
}

impl FenceProof {
    /// True when the proof is a known confirmation (never for `Unconfirmed` or `Unknown`).
    pub fn is_confirmed(self) -> bool {
        !matches!(self, FenceProof::Unconfirmed | FenceProof::Unknown(_))
    }
}

code_enum! {
    /// Result of one guest start / migration ordered by the ShMC.
    pub enum Outcome {
        /// The guest runs (started or migrated).
        Started = 0,
        /// Not attempted, by policy (see the reason code).
        Refused = 1,
        /// Attempted and failed (see the reason code).
        Failed = 2,
    }
}

code_enum! {
    /// Why a guest outcome is not `Started` (or extra detail when it is).
    pub enum ReasonCode {
        /// No particular reason.
        None = 0,
        /// Not enough free memory on this blade.
        NoMemory = 1,
        /// The guest already runs here; not started twice.
        AlreadyRunning = 2,
        /// No stored definition for this guest.
        NoDefinition = 3,
        /// The order does not carry a confirmed fence.
        FenceNotConfirmed = 4,
        /// libvirt returned an error.
        HypervisorError = 5,
        /// libvirt did not answer in time.
        Timeout = 6,
        /// The disk lock is held elsewhere (virtlockd refused).
        DiskLocked = 7,
        /// The stored definition does not parse or libvirt rejected it.
        BadDefinition = 8,
        /// Migration failed.
        MigrationFailed = 9,
        /// The guest is not protected by this agent.
        NotProtected = 10,
        /// This blade fenced itself: it starts nothing more (queued starts are cancelled).
        Fenced = 11,
        /// Not started: the order was accepted before the agent restarted and is stale (of an
        /// earlier boot, or older than the agent's start bound); closed without starting.
        Abandoned = 12,
        /// Not started: the failed blade's agent still reports running protected guests in
        /// heartbeats this agent hears (the second line against a double start).
        PartnerRunning = 13,
    }
}

code_enum! {
    /// Why a guest is not protected by its partner ([`Message::GuestUnprotected`]).
    pub enum UnprotectedReason {
        /// Its name is longer than [`MAX_NAME`] bytes or not a valid guest name.
        BadName = 0,
        /// Its domain XML is larger than `MAX_DEFINITION_CHUNKS * DEFINITION_CHUNK` bytes.
        TooLarge = 1,
        /// The XML's `<name>` differs from the name it was pushed under.
        NameMismatch = 2,
        /// The definition passes a host device through (`<hostdev>`, host USB/PCI).
        HostDevice = 3,
        /// The definition carries `qemu:commandline` arguments.
        QemuCommandline = 4,
        /// A disk or other file of the definition lies outside the allowed storage paths.
        DiskPath = 5,
        /// The XML does not parse or is not UTF-8.
        BadXml = 6,
        /// The partner could not store the definition (its state directory).
        StoreFailed = 7,
        /// The definition names an emulator binary other than the host's QEMU.
        Emulator = 8,
        /// The definition sets its own security label (e.g. a static DAC label running QEMU
        /// as root, or labelling turned off).
        SecurityLabel = 9,
    }
}

code_enum! {
    /// How one guest left its blade in an Evacuate or Migrate order ([`Message::GuestMoved`]).
    pub enum Move {
        /// Live-migrated: it runs on the destination, its state kept.
        Migrated = 0,
        /// Stopped here (no migration path, or migration failed on Evacuate): the partner
        /// starts it once this blade is confirmed fenced.
        Stopped = 1,
        /// Migration failed or timed out on Migrate (predictive): it still runs here.
        KeptRunning = 2,
        /// Could neither be migrated nor stopped.
        Failed = 3,
    }
}

code_enum! {
    /// Status carried by an [`Message::Ack`].
    pub enum AckStatus {
        /// First reception; delivered to the application.
        Accepted = 0,
        /// A retry of a command already delivered; not delivered again.
        Duplicate = 1,
        /// Authentic but not understood (unknown kind, bad encoding or invalid fields); dropped.
        Rejected = 2,
    }
}

impl AckStatus {
    /// True when the receiver's application has the command (`Accepted` or `Duplicate`).
    pub fn is_delivered(self) -> bool {
        matches!(self, AckStatus::Accepted | AckStatus::Duplicate)
    }
}
