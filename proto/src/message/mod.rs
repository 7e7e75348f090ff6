//! Protocol messages (the frame body) and their field types.
//!
//! The body of a frame is `postcard(Message)`: the variant index as a one-byte varint (the
//! [`Kind`]), then the variant's fields in declaration order. Integers other than `u8` are
//! postcard varints; digests are 32 raw bytes; strings and byte vectors carry a varint length.
//!
//! Rule (see the crate header): new variants only at the end of [`Message`], new fields only at
//! the end of a variant, new codes only as new values of the code enums. Never reorder.
//!
//! Direction and acknowledgement of each message is stated on its variant. Every message except
//! [`Message::Ack`] and [`Message::Heartbeat`] is a *command*: the receiver's endpoint answers it
//! with an `Ack` and the sender retries until acknowledged ([`Message::needs_ack`]).

use heapless::{String, Vec};
use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

mod codes;
pub use codes::*;

/// Longest guest (libvirt domain) name, in bytes.
pub const MAX_NAME: usize = 64;
/// Longest free text in a [`Message::GuestOutcome`], in bytes.
pub const MAX_TEXT: usize = 64;
/// Most guests named in one [`Message::RestartPartnerGuests`] subset.
pub const MAX_SUBSET: usize = 16;
/// Bytes of domain XML per [`Message::DefinitionPush`]; every chunk but the last is this full.
pub const DEFINITION_CHUNK: usize = 1024;
/// Most chunks of one definition, so a definition is at most 64 KiB of XML.
pub const MAX_DEFINITION_CHUNKS: u16 = 64;
/// Highest blade slot number; blades are `NodeId(1..=MAX_SLOT)`.
pub const MAX_SLOT: u8 = 16;

/// A guest (libvirt domain) name; see [`valid_guest_name`] for what a receiver accepts.
pub type GuestName = String<MAX_NAME>;
/// An incident number chosen by the ShMC; replies quote it back.
pub type IncidentId = u32;

/// Identity of a protocol node: `0` is the ShMC, `1..=16` the blade in that physical slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u8);

impl NodeId {
    /// The shelf manager.
    pub const SHMC: NodeId = NodeId(0);

    /// The agent of the blade in physical slot `slot`, if `1 <= slot <= MAX_SLOT`.
    pub const fn blade(slot: u8) -> Option<NodeId> {
        if slot >= 1 && slot <= MAX_SLOT {
            Some(NodeId(slot))
        } else {
            None
        }
    }

    /// True for `0..=MAX_SLOT`, the ids this protocol uses.
    pub const fn is_valid(self) -> bool {
        self.0 <= MAX_SLOT
    }
}

impl core::fmt::Display for NodeId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if *self == NodeId::SHMC {
            f.write_str("shmc")
        } else {
            write!(f, "slot {}", self.0)
        }
    }
}

/// Agent software version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub struct SoftwareVersion {
    /// Major version.
    pub major: u16,
    /// Minor version.
    pub minor: u16,
    /// Patch level.
    pub patch: u16,
}

/// Capability bits an agent announces in [`Message::Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, MaxSize)]
pub struct Capabilities(pub u32);

impl Capabilities {
    /// Destroys its protected guests on FenceSelf.
    pub const SELF_FENCE: Capabilities = Capabilities(1 << 0);
    /// Kills QEMU processes directly when libvirt does not answer.
    pub const KILL_QEMU: Capabilities = Capabilities(1 << 1);
    /// Restarts its partner's guests from stored definitions.
    pub const PARTNER_RESTART: Capabilities = Capabilities(1 << 2);
    /// Live-migrates its guests on Evacuate.
    pub const EVACUATE: Capabilities = Capabilities(1 << 3);
    /// Restarts a crashed local guest on RestartGuest.
    pub const LOCAL_RESTART: Capabilities = Capabilities(1 << 4);
    /// Its libvirt uses virtlockd on the shared lockspace.
    pub const DISK_LOCKS: Capabilities = Capabilities(1 << 5);

    /// True when every bit of `other` is set in `self`.
    pub const fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// Union of two sets.
    pub const fn with(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 | other.0)
    }
}

/// A protocol message (the frame body). Variant order is the wire [`Kind`]: append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub enum Message {
    /// Agent -> ShMC, at start and until acknowledged: registration. Command.
    Hello {
        /// The agent's physical slot (must equal its NodeId).
        slot: u8,
        /// Agent software version.
        version: SoftwareVersion,
        /// What this agent can do.
        capabilities: Capabilities,
        /// The agent's heartbeat interval in milliseconds (the ShMC checks its heartbeat
        /// timeout against it).
        heartbeat_ms: u32,
        /// `Some(T)`: the agent armed the blade's hardware watchdog with timeout `T` ms in this
        /// run and pets it only while it is heard; a blade silent on every channel for longer
        /// than `T` plus a margin has been reset by it.
        watchdog_ms: Option<u32>,
    },
    /// Agent -> ShMC and agent -> partner agent, periodically. Not acknowledged.
    Heartbeat {
        /// Heartbeat counter of this agent run, +1 per heartbeat (gaps show losses).
        beat: u64,
        /// Hypervisor health.
        health: Health,
        /// Number of protected guests defined on this blade.
        protected: u16,
        /// [`crate::guest_set_digest`] of their definitions; the partner compares it with what it holds.
        digest: Digest,
        /// How long ago (ms) this agent last received its partner's heartbeat; `None` when it
        /// has not heard it in this run. The ShMC uses it to tell a network fault from a dead
        /// host.
        partner_heard_ms: Option<u32>,
        /// Protected guests this agent cannot account for as stopped: those libvirt lists as
        /// running, or, when libvirt cannot be read, every protected guest not proven gone.
        /// The partner refuses to restart this blade's guests while it still hears a count
        /// above zero.
        running: u16,
        /// The frame sequence number of the latest heartbeat received from the partner in
        /// this run (`None`: none yet). The partner knows when it sent that frame, so this is
        /// its proof, free of clock offsets and delays, that it was heard at or after then:
        /// it pets its hardware watchdog only on such proofs.
        partner_seq: Option<u64>,
    },
    /// Any -> any: acknowledges the command with sequence `acked` sent by the receiver of this Ack.
    Ack {
        /// Sequence number of the acknowledged frame.
        acked: u64,
        /// What happened to it.
        status: AckStatus,
    },
    /// Agent -> ShMC: a protected guest crashed (libvirt lifecycle event). Command.
    GuestCrashed {
        /// The guest.
        name: GuestName,
    },
    /// Agent -> ShMC: libvirt stopped answering. Command.
    HypervisorDown,
    /// Agent -> ShMC: libvirt answers again. Command.
    HypervisorUp,
    /// ShMC -> agent: destroy every protected guest now, then confirm. Command.
    FenceSelf {
        /// Incident this fence belongs to.
        incident: IncidentId,
    },
    /// Agent -> ShMC: answer to FenceSelf. Command.
    FenceSelfConfirmed {
        /// Incident quoted from FenceSelf.
        incident: IncidentId,
        /// Guests destroyed through libvirt alone (no QEMU pid known).
        destroyed: u16,
        /// Guests whose QEMU process the agent SIGKILLed and saw gone.
        killed: u16,
        /// Protected guests still running after all attempts (0 for a complete fence).
        remaining: u16,
    },
    /// ShMC -> partner agent: start the failed blade's guests from stored definitions. Command.
    /// Precondition: the failed blade is fenced; an agent refuses the order when
    /// `!fence.is_confirmed()`.
    RestartPartnerGuests {
        /// Incident number; outcomes quote it.
        incident: IncidentId,
        /// Slot of the failed (fenced) blade.
        failed_slot: u8,
        /// How the fence was confirmed.
        fence: FenceProof,
        /// Only these guests (per-guest failover); `None` = all of the failed blade's guests.
        subset: Option<Vec<GuestName, MAX_SUBSET>>,
    },
    /// ShMC -> agent of a blade about to be extracted: migrate all protected guests to
    /// `to_slot`, report each with GuestOutcome, then IncidentDone. Command.
    Evacuate {
        /// Incident number.
        incident: IncidentId,
        /// Destination blade.
        to_slot: u8,
    },
    /// ShMC -> agent: restart this crashed local guest. Command.
    RestartGuest {
        /// Incident number (0 if none); the outcome quotes it.
        incident: IncidentId,
        /// The guest.
        name: GuestName,
    },
    /// Agent -> ShMC: result for one guest of an order. Command.
    GuestOutcome {
        /// Incident quoted from the order.
        incident: IncidentId,
        /// Blade the guest belongs to: the failed or evacuated blade, or the reporter itself
        /// for RestartGuest.
        slot: u8,
        /// The guest.
        name: GuestName,
        /// Started, refused or failed.
        outcome: Outcome,
        /// Why (or `None`).
        reason: ReasonCode,
        /// Short human-readable detail (e.g. a libvirt error), may be empty.
        text: String<MAX_TEXT>,
        /// Time from receiving the order to this result.
        elapsed_ms: u32,
    },
    /// Agent -> ShMC: every guest of the incident has been reported. Command.
    IncidentDone {
        /// Incident quoted from the order.
        incident: IncidentId,
        /// Blade whose guests were handled (as in GuestOutcome).
        slot: u8,
        /// Guests reported `Started`.
        started: u16,
        /// Guests reported `Refused`.
        refused: u16,
        /// Guests reported `Failed`.
        failed: u16,
    },
    /// Agent -> partner agent: one chunk of a protected guest's domain XML. Command.
    /// Chunk `index` holds bytes `index * DEFINITION_CHUNK ..` of the XML.
    DefinitionPush {
        /// The guest.
        name: GuestName,
        /// Chunk number, `0..total`.
        index: u16,
        /// Number of chunks, `1..=MAX_DEFINITION_CHUNKS`.
        total: u16,
        /// [`crate::definition_digest`] of the whole XML (ties chunks of one version together).
        digest: Digest,
        /// The chunk's bytes (non-empty; full `DEFINITION_CHUNK` except in the last chunk).
        bytes: Vec<u8, DEFINITION_CHUNK>,
    },
    /// Agent -> partner agent: forget the stored definition of this guest. Command.
    DefinitionRemove {
        /// The guest.
        name: GuestName,
    },
    /// Agent -> partner agent: please push your definitions again (digest mismatch). Command.
    DefinitionRequest {
        /// Only this guest; `None` = all.
        name: Option<GuestName>,
    },
    /// ShMC -> agent: destroy this local guest now (before per-guest failover), then answer
    /// GuestDestroyed, or GuestOutcome `Failed` with a reason if it cannot be stopped. Command.
    DestroyGuest {
        /// Incident number; the answer quotes it.
        incident: IncidentId,
        /// The guest.
        name: GuestName,
    },
    /// Agent -> ShMC: the guest no longer runs here (answer to DestroyGuest). Command.
    GuestDestroyed {
        /// Incident quoted from DestroyGuest.
        incident: IncidentId,
        /// The guest.
        name: GuestName,
        /// Its QEMU process was SIGKILLed by the agent (the first step when its pid is
        /// known, and the way out when libvirt does not answer).
        killed: bool,
    },
    /// ShMC -> agent of a degraded blade (predictive): live-migrate all protected guests to
    /// `to_slot`; a guest that cannot migrate keeps running here (nothing is stopped). Each
    /// guest is reported with GuestOutcome and GuestMoved, then IncidentDone. Command.
    Migrate {
        /// Incident number.
        incident: IncidentId,
        /// Destination blade.
        to_slot: u8,
    },
    /// Agent -> ShMC: how one guest of an Evacuate or Migrate order left (or did not leave)
    /// this blade, with libvirt's job statistics. Sent after its GuestOutcome. Command.
    GuestMoved {
        /// Incident quoted from the order.
        incident: IncidentId,
        /// The evacuated blade (the reporter).
        slot: u8,
        /// The guest.
        name: GuestName,
        /// Migrated, stopped, kept running or failed.
        how: Move,
        /// Migration (or stop) time as libvirt's job measured it, else as the agent did.
        elapsed_ms: u32,
        /// Guest downtime of a live migration (libvirt's completed-job statistics), when known.
        downtime_ms: Option<u32>,
    },
    /// Any -> any, not acknowledged: "prove you are live". Sent by a receiver that cannot
    /// tell a peer's frame from a replay: after its own start (it forgot its windows), or on
    /// an authentic frame below its window (the peer's counter went back). The peer raises
    /// its sequence counter above `floor`, answers [`Message::ChallengeReply`] with `nonce`,
    /// and sends its unacknowledged commands again under new sequence numbers.
    Challenge {
        /// Random, single use; the reply must quote it.
        nonce: u64,
        /// Highest sequence the challenger accepted from the peer (0 if none).
        floor: u64,
    },
    /// Any -> any, not acknowledged: answer to [`Message::Challenge`]. Its sequence number
    /// becomes the challenger's replay floor for this sender: everything sent before it is
    /// refused from then on.
    ChallengeReply {
        /// The challenge's nonce.
        nonce: u64,
    },
    /// Agent -> ShMC: a guest is not protected by its partner, and why (an owner that cannot
    /// push its definition, or a partner that refused it). Command.
    GuestUnprotected {
        /// The blade the guest runs on (its owner).
        slot: u8,
        /// Why it is not protected.
        reason: UnprotectedReason,
        /// The guest's name, cut to [`MAX_TEXT`] bytes (it may not be a valid [`GuestName`]).
        name: String<MAX_TEXT>,
        /// Short detail (e.g. the offending disk path), may be empty.
        text: String<MAX_TEXT>,
    },
    /// Agent -> ShMC, periodically while the agent has armed the blade's hardware watchdog:
    /// "I am here". Command, without a body: its only content is that it is acknowledged. The
    /// ShMC counts it as hearing the agent (as a heartbeat, for the silence evidence) before
    /// its endpoint acknowledges it, so the Ack of a `Present` first sent at `c` proves the
    /// agent was heard at or after `c`: one of the proofs on which it pets its watchdog. It
    /// does not depend on the partner, so a dead partner does not make the survivor reset.
    Present,
}

/// Wire kind of a message: the postcard variant index of [`Message`], byte 11 of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// [`Message::Hello`].
    Hello = 0,
    /// [`Message::Heartbeat`].
    Heartbeat = 1,
    /// [`Message::Ack`].
    Ack = 2,
    /// [`Message::GuestCrashed`].
    GuestCrashed = 3,
    /// [`Message::HypervisorDown`].
    HypervisorDown = 4,
    /// [`Message::HypervisorUp`].
    HypervisorUp = 5,
    /// [`Message::FenceSelf`].
    FenceSelf = 6,
    /// [`Message::FenceSelfConfirmed`].
    FenceSelfConfirmed = 7,
    /// [`Message::RestartPartnerGuests`].
    RestartPartnerGuests = 8,
    /// [`Message::Evacuate`].
    Evacuate = 9,
    /// [`Message::RestartGuest`].
    RestartGuest = 10,
    /// [`Message::GuestOutcome`].
    GuestOutcome = 11,
    /// [`Message::IncidentDone`].
    IncidentDone = 12,
    /// [`Message::DefinitionPush`].
    DefinitionPush = 13,
    /// [`Message::DefinitionRemove`].
    DefinitionRemove = 14,
    /// [`Message::DefinitionRequest`].
    DefinitionRequest = 15,
    /// [`Message::DestroyGuest`].
    DestroyGuest = 16,
    /// [`Message::GuestDestroyed`].
    GuestDestroyed = 17,
    /// [`Message::Migrate`].
    Migrate = 18,
    /// [`Message::GuestMoved`].
    GuestMoved = 19,
    /// [`Message::Challenge`].
    Challenge = 20,
    /// [`Message::ChallengeReply`].
    ChallengeReply = 21,
    /// [`Message::GuestUnprotected`].
    GuestUnprotected = 22,
    /// [`Message::Present`].
    Present = 23,
}

impl Kind {
    /// Number of kinds this version knows; a body byte `>= COUNT` is an unknown kind.
    pub const COUNT: u8 = 24;

    /// Every kind, in wire order.
    pub const ALL: [Kind; Kind::COUNT as usize] = [
        Kind::Hello,
        Kind::Heartbeat,
        Kind::Ack,
        Kind::GuestCrashed,
        Kind::HypervisorDown,
        Kind::HypervisorUp,
        Kind::FenceSelf,
        Kind::FenceSelfConfirmed,
        Kind::RestartPartnerGuests,
        Kind::Evacuate,
        Kind::RestartGuest,
        Kind::GuestOutcome,
        Kind::IncidentDone,
        Kind::DefinitionPush,
        Kind::DefinitionRemove,
        Kind::DefinitionRequest,
        Kind::DestroyGuest,
        Kind::GuestDestroyed,
        Kind::Migrate,
        Kind::GuestMoved,
        Kind::Challenge,
        Kind::ChallengeReply,
        Kind::GuestUnprotected,
        Kind::Present,
    ];

    /// The kind with wire value `v`, if known.
    pub fn from_u8(v: u8) -> Option<Kind> {
        Kind::ALL.get(usize::from(v)).copied()
    }

    /// Who may send this kind: `Some(true)` only the ShMC, `Some(false)` only blade agents,
    /// `None` anyone (Ack). The verifier drops other senders as `WrongRole`.
    pub fn from_shmc(self) -> Option<bool> {
        match self {
            Kind::Ack | Kind::Challenge | Kind::ChallengeReply => None,
            Kind::FenceSelf
            | Kind::RestartPartnerGuests
            | Kind::Evacuate
            | Kind::RestartGuest
            | Kind::DestroyGuest
            | Kind::Migrate => Some(true),
            Kind::Hello
            | Kind::Heartbeat
            | Kind::GuestCrashed
            | Kind::HypervisorDown
            | Kind::HypervisorUp
            | Kind::FenceSelfConfirmed
            | Kind::GuestOutcome
            | Kind::IncidentDone
            | Kind::DefinitionPush
            | Kind::DefinitionRemove
            | Kind::DefinitionRequest
            | Kind::GuestDestroyed
            | Kind::GuestMoved
            | Kind::GuestUnprotected
            | Kind::Present => Some(false),
        }
    }

    /// True for commands (acknowledged and retried): all but `Ack`, `Heartbeat`, `Challenge`
    /// and `ChallengeReply`.
    pub fn needs_ack(self) -> bool {
        !matches!(
            self,
            Kind::Ack | Kind::Heartbeat | Kind::Challenge | Kind::ChallengeReply
        )
    }

    /// True for the session kinds an endpoint handles itself (`Challenge`, `ChallengeReply`):
    /// accepted from a sender whose freshness is not proven yet, never given to the application.
    pub fn is_session(self) -> bool {
        matches!(self, Kind::Challenge | Kind::ChallengeReply)
    }
}

// A one-byte varint holds the kind only while there are fewer than 128 variants.
const _: () = assert!(Kind::COUNT < 128);

impl Message {
    /// The wire kind of this message.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Hello { .. } => Kind::Hello,
            Message::Heartbeat { .. } => Kind::Heartbeat,
            Message::Ack { .. } => Kind::Ack,
            Message::GuestCrashed { .. } => Kind::GuestCrashed,
            Message::HypervisorDown => Kind::HypervisorDown,
            Message::HypervisorUp => Kind::HypervisorUp,
            Message::FenceSelf { .. } => Kind::FenceSelf,
            Message::FenceSelfConfirmed { .. } => Kind::FenceSelfConfirmed,
            Message::RestartPartnerGuests { .. } => Kind::RestartPartnerGuests,
            Message::Evacuate { .. } => Kind::Evacuate,
            Message::RestartGuest { .. } => Kind::RestartGuest,
            Message::GuestOutcome { .. } => Kind::GuestOutcome,
            Message::IncidentDone { .. } => Kind::IncidentDone,
            Message::DefinitionPush { .. } => Kind::DefinitionPush,
            Message::DefinitionRemove { .. } => Kind::DefinitionRemove,
            Message::DefinitionRequest { .. } => Kind::DefinitionRequest,
            Message::DestroyGuest { .. } => Kind::DestroyGuest,
            Message::GuestDestroyed { .. } => Kind::GuestDestroyed,
            Message::Migrate { .. } => Kind::Migrate,
            Message::GuestMoved { .. } => Kind::GuestMoved,
            Message::Challenge { .. } => Kind::Challenge,
            Message::ChallengeReply { .. } => Kind::ChallengeReply,
            Message::GuestUnprotected { .. } => Kind::GuestUnprotected,
            Message::Present => Kind::Present,
        }
    }

    /// True for commands, which the receiver acknowledges and the sender retries.
    pub fn needs_ack(&self) -> bool {
        self.kind().needs_ack()
    }

    /// True when `sender` may send this message: the role of [`Kind::from_shmc`], and a Hello
    /// names the sender's own slot. The shelf key is shared, so this guards against
    /// misdirected and buggy senders, not against a key holder.
    pub fn sender_allowed(&self, sender: NodeId) -> bool {
        let role_ok = match self.kind().from_shmc() {
            None => sender.is_valid(),
            Some(true) => sender == NodeId::SHMC,
            Some(false) => NodeId::blade(sender.0).is_some(),
        };
        match self {
            Message::Hello { slot, .. } => role_ok && *slot == sender.0,
            _ => role_ok,
        }
    }

    /// Checks field values beyond what the encoding guarantees: slots in range, guest names
    /// safe as file names, text without control characters, chunk numbering consistent.
    /// [`crate::seal`] refuses and [`crate::Verifier::open`] drops a message failing this.
    pub fn is_valid(&self) -> bool {
        let slot_ok = |s: &u8| NodeId::blade(*s).is_some();
        match self {
            Message::Hello { slot, .. } => slot_ok(slot),
            Message::GuestCrashed { name }
            | Message::RestartGuest { name, .. }
            | Message::DefinitionRemove { name }
            | Message::DestroyGuest { name, .. }
            | Message::GuestDestroyed { name, .. } => valid_guest_name(name),
            Message::RestartPartnerGuests {
                failed_slot,
                subset,
                ..
            } => {
                slot_ok(failed_slot)
                    && subset.as_ref().is_none_or(|names| {
                        !names.is_empty() && names.iter().all(|n| valid_guest_name(n))
                    })
            }
            Message::Evacuate { to_slot, .. } | Message::Migrate { to_slot, .. } => {
                slot_ok(to_slot)
            }
            Message::GuestMoved { slot, name, .. } => slot_ok(slot) && valid_guest_name(name),
            Message::GuestOutcome {
                slot, name, text, ..
            } => slot_ok(slot) && valid_guest_name(name) && !text.chars().any(char::is_control),
            Message::IncidentDone { slot, .. } => slot_ok(slot),
            Message::GuestUnprotected {
                slot, name, text, ..
            } => {
                slot_ok(slot)
                    && !name.is_empty()
                    && !name.chars().any(char::is_control)
                    && !text.chars().any(char::is_control)
            }
            Message::DefinitionPush {
                name,
                index,
                total,
                bytes,
                ..
            } => {
                valid_guest_name(name)
                    && (1..=MAX_DEFINITION_CHUNKS).contains(total)
                    && index < total
                    && !bytes.is_empty()
                    && (index + 1 == *total || bytes.len() == DEFINITION_CHUNK)
            }
            Message::DefinitionRequest { name } => {
                name.as_ref().is_none_or(|n| valid_guest_name(n))
            }
            Message::Heartbeat { .. }
            | Message::Ack { .. }
            | Message::HypervisorDown
            | Message::HypervisorUp
            | Message::FenceSelf { .. }
            | Message::FenceSelfConfirmed { .. }
            | Message::Challenge { .. }
            | Message::ChallengeReply { .. }
            | Message::Present => true,
        }
    }
}

/// A guest name a receiver accepts: non-empty, not starting with `.`, without `/`, NUL or
/// other control characters (the partner stores definitions in files named after guests).
pub fn valid_guest_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.chars().any(|c| c == '/' || c.is_control())
}

/// Builds a [`GuestName`]; `None` when longer than [`MAX_NAME`] bytes or not [`valid_guest_name`].
pub fn guest_name(name: &str) -> Option<GuestName> {
    if !valid_guest_name(name) {
        return None;
    }
    GuestName::try_from(name).ok()
}

/// Free text for [`Message::GuestOutcome`]: control characters (newlines in libvirt errors)
/// become spaces and the text is cut to [`MAX_TEXT`] bytes on a character boundary.
pub fn short_text(text: &str) -> String<MAX_TEXT> {
    let mut out = String::new();
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod test;
