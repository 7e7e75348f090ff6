//! ShMC <-> blade agent protocol: messages, frame encoding and authentication.
//!
//! One message travels in one UDP datagram on the shelf's base interface. A datagram is a
//! [`frame`]: a fixed 11-byte header, the postcard encoding of a [`Message`], and a 32-byte
//! HMAC-SHA256 tag over both, computed with the shelf's pre-shared [`Key`].
//!
//! ```text
//! offset  size  field
//! 0       1     protocol version (PROTOCOL_VERSION = 2)
//! 1       1     sender NodeId   (0 = ShMC, 1..=16 = blade in that physical slot)
//! 2       1     dest NodeId     (the only node that may accept the frame)
//! 3       8     sequence, u64 little-endian, strictly increasing per sender, never 0
//! 11      n     body: postcard(Message); its first byte is the message Kind
//! 11+n    32    tag: HMAC-SHA256(key, bytes[0 .. 11+n])
//! ```
//! The largest possible frame is [`MAX_FRAME`] bytes (computed from postcard's `MaxSize`
//! and checked by tests to fit every message), below [`SAFE_UDP_PAYLOAD`].
//!
//! Receiving: [`Verifier::open`] checks size, version, destination, sender, tag, replay window,
//! kind, encoding, field validity and sender role, in that order; every rejection is a counted [`DropReason`]
//! and never yields a message. Sending: [`seal`].
//!
//! Compatibility rule: within one protocol version, new message variants are added only at the
//! end of [`Message`], new fields only at the end of a variant, and new codes only as new values
//! of the `Unknown(u8)`-carrying code enums. A receiver ignores bytes after the fields it knows
//! (a newer sender's appended fields), reports an unknown variant as [`DropReason::UnknownKind`]
//! and keeps an unknown code as `Unknown(n)`. Anything else needs a new `PROTOCOL_VERSION`.
//!
//! The core is `no_std` without allocation. Feature `std` adds key files, sequence seeding,
//! definition chunk reassembly and the UDP [`Endpoint`] (module [`edge`], the std edge).
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]
// Receiving handles hostile bytes: outside tests nothing in this crate may index or slice
// unchecked, unwrap, expect or panic (use `get`, `split_at_checked`, `?`, checked arithmetic).
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod auth;
pub mod digest;
pub mod frame;
pub mod message;

#[cfg(feature = "std")]
pub mod edge;

pub use auth::{
    DropCounters, DropReason, Key, Peers, Received, ReplayWindow, Verifier, MAX_FLOOR, MAX_SEQUENCE,
};
pub use digest::{definition_digest, guest_set_digest, Digest};
pub use frame::{
    seal, Header, SealError, HEADER_LEN, MAX_BODY, MAX_FRAME, MIN_FRAME, PROTOCOL_VERSION,
    SAFE_UDP_PAYLOAD, TAG_LEN,
};
pub use message::{
    guest_name, short_text, valid_guest_name, AckStatus, Capabilities, FenceProof, GuestName,
    Health, IncidentId, Kind, Message, Move, NodeId, Outcome, ReasonCode, SoftwareVersion,
    UnprotectedReason, DEFINITION_CHUNK, MAX_DEFINITION_CHUNKS, MAX_NAME, MAX_SLOT, MAX_SUBSET,
    MAX_TEXT,
};

#[cfg(feature = "std")]
pub use edge::definitions::{split as split_definition, Assembler, ChunkError};
#[cfg(feature = "std")]
pub use edge::endpoint::{Endpoint, EndpointConfig, Event, SendError, Waker};
#[cfg(feature = "std")]
pub use edge::keyfile::{generate_key, load_key, write_key_file, KeyFileError};
#[cfg(feature = "std")]
pub use edge::seq::{SeqCounter, SeqSeed};
