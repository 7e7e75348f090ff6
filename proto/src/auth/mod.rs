//! Authentication and replay protection of received frames.
//!
//! Every frame carries HMAC-SHA256 over header and body with the shelf key (RFC 2104 /
//! FIPS 180-4). The key is shared by the whole shelf: it proves a frame comes from a key holder,
//! not which node; the claimed sender is then bound by the replay window of that sender.
//!
//! Replay protection: per known sender, the highest accepted sequence plus a 64-bit bitmap of
//! the 64 sequences at and below it ([`ReplayWindow`], as in IPsec's anti-replay window,
//! RFC 4303 §3.4.3). A newer sequence, or an older one inside the window not seen yet
//! (reordering), is accepted once; a seen one is `Replayed`; one below the window is `Stale`.
//! A receiver that restarts forgets its windows; [`Verifier::set_floor`] restores a floor
//! (e.g. persisted highest sequences) so that frames from before the restart stay rejected.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::frame::{field, peek, HEADER_LEN, MAX_FRAME, MIN_FRAME, PROTOCOL_VERSION, TAG_LEN};
use crate::message::{Kind, Message, NodeId};

type HmacSha256 = Hmac<Sha256>;

/// Sequences at or above this (2^62) are never accepted, restored as a floor, or jumped to:
/// counters are seeded from the microsecond clock, which gets there in 140,000 years, so such
/// a number is corrupt or hostile, and accepting it would leave a window no sender can pass.
pub const MAX_SEQUENCE: u64 = 1 << 62;

/// Highest floor a receiver restores and a sender jumps over: [`MAX_SEQUENCE`] less 2^40
/// sequences, so a sender that jumped keeps room to send for decades. Both ends use this one
/// bound: a floor one end keeps must be one the other can get above.
pub const MAX_FLOOR: u64 = MAX_SEQUENCE - (1 << 40);

/// The 32-byte pre-shared shelf key. `Debug` does not print it.
#[derive(Clone)]
pub struct Key {
    bytes: [u8; 32],
}

impl Key {
    /// Key length in bytes.
    pub const LEN: usize = 32;

    /// A key from its raw bytes.
    pub const fn new(bytes: [u8; 32]) -> Key {
        Key { bytes }
    }

    /// A key from 64 hexadecimal digits (either case), nothing else.
    pub fn from_hex(hex: &[u8]) -> Option<Key> {
        if hex.len() != 64 {
            return None;
        }
        let digit = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
        let mut bytes = [0u8; 32];
        for (b, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let &[hi, lo] = pair else {
                return None;
            };
            // Two hex digits: at most 0xff.
            *b = digit(hi)?.wrapping_mul(16).wrapping_add(digit(lo)?);
        }
        Some(Key { bytes })
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    fn mac(&self) -> HmacSha256 {
        // RFC 2104 pads a key shorter than the hash's 64-byte block with zeros. Padding it
        // here lets the infallible block-sized constructor be used (same tags: the golden
        // vectors check them).
        let mut block = hmac::digest::Key::<HmacSha256>::default();
        for (b, k) in block.iter_mut().zip(self.bytes.iter()) {
            *b = *k;
        }
        <HmacSha256 as KeyInit>::new(&block)
    }

    /// HMAC-SHA256 of `data` under this key.
    pub fn tag(&self, data: &[u8]) -> [u8; TAG_LEN] {
        let mut m = self.mac();
        m.update(data);
        m.finalize().into_bytes().into()
    }

    /// Constant-time check of `tag` against HMAC-SHA256 of `data`.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let mut m = self.mac();
        m.update(data);
        m.verify_slice(tag).is_ok()
    }
}

impl core::fmt::Debug for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// Why a received datagram was dropped. Checked in this order; reasons from `Stale` on are
/// only given to frames whose tag was valid ([`DropReason::is_authentic`]).
/// (Not on the wire: the order may change between versions.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Longer than [`MAX_FRAME`].
    TooLarge,
    /// Shorter than [`MIN_FRAME`].
    Truncated,
    /// Another protocol version.
    BadVersion,
    /// Addressed to another node.
    NotForUs,
    /// Sender not in the table of known peers.
    UnknownSender,
    /// Tag does not match (tampered, wrong key, forged).
    BadMac,
    /// Authentic, but its sequence is below the replay window.
    Stale,
    /// Authentic, but its sequence was already accepted (a replay or a retry).
    Replayed,
    /// Authentic, but the sender has not proven since our start that the frame is not a
    /// replay (it has not answered a [`Message::Challenge`] yet; see [`Verifier::require_sync`]).
    Unsynced,
    /// Authentic, but a message kind this version does not know.
    UnknownKind,
    /// Authentic, but the body does not decode.
    Malformed,
    /// Authentic and decoded, but fails [`Message::is_valid`].
    Invalid,
    /// Authentic and valid, but this sender may not send this message
    /// ([`Message::sender_allowed`]).
    WrongRole,
    /// Authentic Ack that matches no command awaiting one (normal after retries).
    UnmatchedAck,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 14;

    /// Every reason, in check order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::TooLarge,
        DropReason::Truncated,
        DropReason::BadVersion,
        DropReason::NotForUs,
        DropReason::UnknownSender,
        DropReason::BadMac,
        DropReason::Stale,
        DropReason::Replayed,
        DropReason::Unsynced,
        DropReason::UnknownKind,
        DropReason::Malformed,
        DropReason::Invalid,
        DropReason::WrongRole,
        DropReason::UnmatchedAck,
    ];

    /// Position in [`DropReason::ALL`] (index into counters).
    pub fn index(self) -> usize {
        match self {
            DropReason::TooLarge => 0,
            DropReason::Truncated => 1,
            DropReason::BadVersion => 2,
            DropReason::NotForUs => 3,
            DropReason::UnknownSender => 4,
            DropReason::BadMac => 5,
            DropReason::Stale => 6,
            DropReason::Replayed => 7,
            DropReason::Unsynced => 8,
            DropReason::UnknownKind => 9,
            DropReason::Malformed => 10,
            DropReason::Invalid => 11,
            DropReason::WrongRole => 12,
            DropReason::UnmatchedAck => 13,
        }
    }

    /// True when the frame's tag was valid (it really comes from a key holder).
    pub fn is_authentic(self) -> bool {
        self.index() >= DropReason::Stale.index()
    }
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DropReason::TooLarge => "too large",
            DropReason::Truncated => "truncated",
            DropReason::BadVersion => "other protocol version",
            DropReason::NotForUs => "addressed to another node",
            DropReason::UnknownSender => "unknown sender",
            DropReason::BadMac => "bad authentication tag",
            DropReason::Stale => "sequence older than the replay window",
            DropReason::Replayed => "sequence already seen (replay or retry)",
            DropReason::Unsynced => "sender not yet challenged since our start (possible replay)",
            DropReason::UnknownKind => "unknown message kind",
            DropReason::Malformed => "body does not decode",
            DropReason::Invalid => "invalid field values",
            DropReason::WrongRole => "message not allowed from this sender",
            DropReason::UnmatchedAck => "ack matching no pending command",
        })
    }
}

/// Per-reason drop counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounters {
    counts: [u64; DropReason::COUNT],
}

impl DropCounters {
    /// Adds one drop for `reason`.
    pub fn count(&mut self, reason: DropReason) {
        // `index() < COUNT` for every reason (see `ALL`); `get_mut` keeps this panic-free.
        if let Some(c) = self.counts.get_mut(reason.index()) {
            *c = c.saturating_add(1);
        }
    }

    /// Drops counted for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts.get(reason.index()).copied().unwrap_or(0)
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, c| a.saturating_add(*c))
    }
}

/// Anti-replay state of one sender: highest accepted sequence and a bitmap of the 64
/// sequences `highest, highest-1, .., highest-63` (bit i = `highest - i` seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayWindow {
    highest: u64,
    seen: u64,
}

impl ReplayWindow {
    /// Window width in sequences.
    pub const WIDTH: u64 = 64;

    /// A window that accepts only sequences above `floor` (0 for a fresh peer).
    pub const fn new(floor: u64) -> ReplayWindow {
        ReplayWindow {
            highest: floor,
            seen: u64::MAX,
        }
    }

    /// Highest sequence accepted (or the floor).
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Would `seq` be accepted? Does not change the state.
    pub fn check(&self, seq: u64) -> Result<(), DropReason> {
        let Some(age) = self.highest.checked_sub(seq) else {
            // Newer than anything accepted.
            return Ok(());
        };
        if age >= Self::WIDTH {
            Err(DropReason::Stale)
        } else if self.seen & (1 << age) != 0 {
            Err(DropReason::Replayed)
        } else {
            Ok(())
        }
    }

    /// Clears the "seen" mark of `seq` if it lies inside the window (see [`Verifier::forget`]).
    pub fn forget(&mut self, seq: u64) {
        if let Some(age) = self.highest.checked_sub(seq) {
            if age < Self::WIDTH {
                self.seen &= !(1u64 << age);
            }
        }
    }

    /// Records `seq` as accepted (call only after `check` succeeded).
    pub fn accept(&mut self, seq: u64) {
        match seq.checked_sub(self.highest) {
            Some(shift) if shift > 0 => {
                self.seen = if shift >= Self::WIDTH {
                    0
                } else {
                    self.seen << shift
                };
                self.seen |= 1;
                self.highest = seq;
            }
            _ => {
                let age = self.highest.saturating_sub(seq);
                if age < Self::WIDTH {
                    self.seen |= 1 << age;
                }
            }
        }
    }
}

/// Known senders and their replay windows; fixed capacity (ShMC + 16 blades).
#[derive(Debug, Clone, Default)]
pub struct Peers {
    entries: heapless::Vec<(NodeId, ReplayWindow), { Peers::CAPACITY }>,
}

impl Peers {
    /// Most peers: the ShMC and 16 blades.
    pub const CAPACITY: usize = 17;

    /// An empty table.
    pub const fn new() -> Peers {
        Peers {
            entries: heapless::Vec::new(),
        }
    }

    /// Adds `id` with a fresh window (no-op if known); `Err(id)` when the table is full.
    pub fn add(&mut self, id: NodeId) -> Result<(), NodeId> {
        if self.get(id).is_some() {
            return Ok(());
        }
        self.entries
            .push((id, ReplayWindow::new(0)))
            .map_err(|(id, _)| id)
    }

    /// Forgets `id`; its frames become `UnknownSender`.
    pub fn remove(&mut self, id: NodeId) {
        self.entries.retain(|(n, _)| *n != id);
    }

    /// The window of `id`, if known.
    pub fn get(&self, id: NodeId) -> Option<&ReplayWindow> {
        self.entries.iter().find(|(n, _)| *n == id).map(|(_, w)| w)
    }

    fn get_mut(&mut self, id: NodeId) -> Option<&mut ReplayWindow> {
        self.entries
            .iter_mut()
            .find(|(n, _)| *n == id)
            .map(|(_, w)| w)
    }

    /// Known peer ids.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.entries.iter().map(|(n, _)| *n)
    }
}

/// An authenticated, fresh, decoded and valid message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Who sent it.
    pub sender: NodeId,
    /// Its sequence number (what an Ack quotes).
    pub seq: u64,
    /// The message.
    pub message: Message,
}

/// Receiver side: checks datagrams addressed to `me` from known peers, counts drops.
#[derive(Debug, Clone)]
pub struct Verifier {
    key: Key,
    me: NodeId,
    peers: Peers,
    drops: DropCounters,
    /// Bit `n` set: node `n` must answer a challenge before its frames are accepted.
    unsynced: u32,
}

impl Verifier {
    /// A verifier for node `me` with no known peers yet.
    pub fn new(key: Key, me: NodeId) -> Verifier {
        Verifier {
            key,
            me,
            peers: Peers::new(),
            drops: DropCounters::default(),
            unsynced: 0,
        }
    }

    /// From now on, frames from `id` are dropped as [`DropReason::Unsynced`] until
    /// [`Verifier::mark_synced`]: only the session kinds ([`Kind::is_session`]) pass, without
    /// touching the replay window. An endpoint calls this for every peer at start, because a
    /// receiver that restarted cannot tell a fresh frame from one captured before.
    pub fn require_sync(&mut self, id: NodeId) {
        if let Some(bit) = node_bit(id) {
            self.unsynced |= bit;
        }
    }

    /// `id` proved its freshness with a frame of sequence `seq` (its
    /// [`Message::ChallengeReply`]): frames up to `seq` are refused from now on, later ones
    /// accepted. Never lowers the window. Returns false if `id` is unknown.
    pub fn mark_synced(&mut self, id: NodeId, seq: u64) -> bool {
        let Some(w) = self.peers.get_mut(id) else {
            return false;
        };
        if seq > w.highest() {
            *w = ReplayWindow::new(seq);
        }
        if let Some(bit) = node_bit(id) {
            self.unsynced &= !bit;
        }
        true
    }

    /// False while frames from `id` are refused as [`DropReason::Unsynced`].
    pub fn is_synced(&self, id: NodeId) -> bool {
        node_bit(id).is_none_or(|bit| self.unsynced & bit == 0)
    }

    /// Forgets that `seq` from `id` was accepted, so that a retry of it is delivered again
    /// (a command the application could not make durable). Only inside the window. Undo it
    /// with [`Verifier::remember`] once the sender's retries are over.
    pub fn forget(&mut self, id: NodeId, seq: u64) {
        if let Some(w) = self.peers.get_mut(id) {
            w.forget(seq);
        }
    }

    /// Marks `seq` from `id` as seen again after [`Verifier::forget`] (no effect on a sequence
    /// above the window's highest, which was never accepted).
    pub fn remember(&mut self, id: NodeId, seq: u64) {
        if let Some(w) = self.peers.get_mut(id) {
            if seq <= w.highest() {
                w.accept(seq);
            }
        }
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The shelf key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Accepts frames from `id` from now on; `Err(id)` when the table is full.
    pub fn add_peer(&mut self, id: NodeId) -> Result<(), NodeId> {
        self.peers.add(id)
    }

    /// Rejects every sequence `<= floor` from `id` (e.g. restored after a restart). Returns
    /// false if `id` is unknown. Never lowers the current window.
    pub fn set_floor(&mut self, id: NodeId, floor: u64) -> bool {
        if floor >= MAX_FLOOR {
            return false;
        }
        match self.peers.get_mut(id) {
            Some(w) => {
                if floor > w.highest() {
                    *w = ReplayWindow::new(floor);
                }
                true
            }
            None => false,
        }
    }

    /// The known peers and their windows.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Drop counters.
    pub fn drops(&self) -> &DropCounters {
        &self.drops
    }

    /// Counts a drop decided outside the verifier (e.g. [`DropReason::UnmatchedAck`]).
    pub fn count_drop(&mut self, reason: DropReason) {
        self.drops.count(reason);
    }

    /// Checks and decodes one datagram. Never panics; every `Err` has been counted.
    /// An authentic frame consumes its sequence even when its body is then rejected.
    pub fn open(&mut self, datagram: &[u8]) -> Result<Received, DropReason> {
        let r = self.open_uncounted(datagram);
        if let Err(reason) = r {
            self.drops.count(reason);
        }
        r
    }

    fn open_uncounted(&mut self, datagram: &[u8]) -> Result<Received, DropReason> {
        if datagram.len() > MAX_FRAME {
            return Err(DropReason::TooLarge);
        }
        let (version, header, kind) = peek(datagram).ok_or(DropReason::Truncated)?;
        if version != PROTOCOL_VERSION {
            return Err(DropReason::BadVersion);
        }
        if header.dest != self.me {
            return Err(DropReason::NotForUs);
        }
        let window = self
            .peers
            .get_mut(header.sender)
            .ok_or(DropReason::UnknownSender)?;
        // `peek` checked `len >= MIN_FRAME > TAG_LEN`; the checked split keeps it panic-free.
        let (signed, tag) = datagram
            .split_at_checked(datagram.len().saturating_sub(TAG_LEN))
            .ok_or(DropReason::Truncated)?;
        if !self.key.verify(signed, tag) {
            return Err(DropReason::BadMac);
        }
        // Session kinds (challenge and reply) bypass the window: a challenge must be answered
        // even from a peer whose counter went back, and a reply is bound by its nonce.
        if header.seq >= MAX_SEQUENCE {
            return Err(DropReason::Invalid);
        }
        let session = Kind::from_u8(kind).is_some_and(Kind::is_session);
        if !session {
            if node_bit(header.sender).is_some_and(|bit| self.unsynced & bit != 0) {
                return Err(DropReason::Unsynced);
            }
            window.check(header.seq)?;
            window.accept(header.seq);
        }
        if Kind::from_u8(kind).is_none() {
            return Err(DropReason::UnknownKind);
        }
        debug_assert_eq!(field::BODY, HEADER_LEN);
        // Bytes after the known fields are ignored: a newer sender may append fields.
        let body = signed.get(HEADER_LEN..).ok_or(DropReason::Truncated)?;
        let message: Message = postcard::from_bytes(body).map_err(|_| DropReason::Malformed)?;
        if !message.is_valid() {
            return Err(DropReason::Invalid);
        }
        if !message.sender_allowed(header.sender) {
            return Err(DropReason::WrongRole);
        }
        Ok(Received {
            sender: header.sender,
            seq: header.seq,
            message,
        })
    }
}

/// The bit of `id` in [`Verifier`]'s unsynced set (`None` past bit 31: never used by the
/// protocol's ids 0..=16).
fn node_bit(id: NodeId) -> Option<u32> {
    1u32.checked_shl(u32::from(id.0))
}

// MIN_FRAME is what `peek` requires; keep the two in step.
const _: () = assert!(MIN_FRAME == HEADER_LEN + 1 + TAG_LEN);

#[cfg(test)]
mod test;
