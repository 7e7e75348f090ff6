//! Sample messages shared by the protocol tests: one typical and one largest per kind.
#![allow(dead_code)]

use heapless::{String, Vec};
use shelfha_proto::message::guest_name;
use shelfha_proto::*;

/// The fixed key of the golden vectors: bytes 0x00, 0x01, .., 0x1f.
pub fn golden_key() -> Key {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = i as u8;
    }
    Key::new(k)
}

fn name(s: &str) -> GuestName {
    guest_name(s).unwrap()
}

/// Realistic (sender, dest) of a message: ShMC orders go from the ShMC to slot 3, everything
/// else from its blade (slot 3, or the Hello's slot) to the ShMC.
pub fn route(msg: &Message) -> (NodeId, NodeId) {
    match msg {
        Message::Hello { slot, .. } => (NodeId(*slot), NodeId::SHMC),
        m if m.kind().from_shmc() == Some(true) => (NodeId::SHMC, NodeId(3)),
        _ => (NodeId(3), NodeId::SHMC),
    }
}

/// A verifier for `me` that knows every node of the shelf.
pub fn verifier_for(me: NodeId) -> Verifier {
    let mut v = Verifier::new(golden_key(), me);
    for id in 0..=MAX_SLOT {
        v.add_peer(NodeId(id)).unwrap();
    }
    v
}

/// One typical message of every kind, in `Kind` order.
pub fn samples() -> std::vec::Vec<Message> {
    vec![
        Message::Hello {
            slot: 3,
            version: SoftwareVersion {
                major: 1,
                minor: 2,
                patch: 300,
            },
            capabilities: Capabilities::SELF_FENCE.with(Capabilities::KILL_QEMU),
            heartbeat_ms: 200,
            watchdog_ms: Some(5000),
        },
        Message::Heartbeat {
            beat: 1000,
            health: Health::Ok,
            protected: 2,
            digest: [0xab; 32],
            partner_heard_ms: Some(150),
            running: 1,
            partner_seq: Some(0x1_0000),
        },
        Message::Ack {
            acked: 0x1_0000,
            status: AckStatus::Duplicate,
        },
        Message::GuestCrashed { name: name("vm1") },
        Message::HypervisorDown,
        Message::HypervisorUp,
        Message::FenceSelf { incident: 7 },
        Message::FenceSelfConfirmed {
            incident: 7,
            destroyed: 3,
            killed: 1,
            remaining: 0,
        },
        Message::RestartPartnerGuests {
            incident: 8,
            failed_slot: 4,
            fence: FenceProof::HotSwapM1,
            subset: Some(Vec::from_slice(&[name("a"), name("bc")]).unwrap()),
        },
        Message::Evacuate {
            incident: 9,
            to_slot: 5,
        },
        Message::RestartGuest {
            incident: 10,
            name: name("db"),
        },
        Message::GuestOutcome {
            incident: 8,
            slot: 4,
            name: name("a"),
            outcome: Outcome::Refused,
            reason: ReasonCode::NoMemory,
            text: String::try_from("free 512").unwrap(),
            elapsed_ms: 200,
        },
        Message::IncidentDone {
            incident: 8,
            slot: 4,
            started: 1,
            refused: 1,
            failed: 0,
        },
        Message::DefinitionPush {
            name: name("vm1"),
            index: 0,
            total: 1,
            digest: definition_digest(b"<d/>"),
            bytes: Vec::from_slice(b"<d/>").unwrap(),
        },
        Message::DefinitionRemove { name: name("vm1") },
        Message::DefinitionRequest { name: None },
        Message::DestroyGuest {
            incident: 11,
            name: name("web"),
        },
        Message::GuestDestroyed {
            incident: 11,
            name: name("web"),
            killed: true,
        },
        Message::Migrate {
            incident: 12,
            to_slot: 5,
        },
        Message::GuestMoved {
            incident: 12,
            slot: 3,
            name: name("db"),
            how: Move::Migrated,
            elapsed_ms: 600,
            downtime_ms: Some(15),
        },
        Message::Challenge {
            nonce: 0x0123_4567_89ab_cdef,
            floor: 300,
        },
        Message::ChallengeReply {
            nonce: 0x0123_4567_89ab_cdef,
        },
        Message::GuestUnprotected {
            slot: 3,
            reason: UnprotectedReason::DiskPath,
            name: String::try_from("vm1").unwrap(),
            text: String::try_from("/srv/x.img").unwrap(),
        },
        Message::Present,
    ]
}

/// The largest valid message of every kind, in `Kind` order.
pub fn largest() -> std::vec::Vec<Message> {
    let long = |c: char| name(&c.to_string().repeat(MAX_NAME));
    let text: String<MAX_TEXT> = String::try_from("t".repeat(MAX_TEXT).as_str()).unwrap();
    let mut subset = Vec::new();
    for i in 0..MAX_SUBSET {
        subset.push(long((b'a' + i as u8) as char)).unwrap();
    }
    vec![
        Message::Hello {
            slot: MAX_SLOT,
            version: SoftwareVersion {
                major: u16::MAX,
                minor: u16::MAX,
                patch: u16::MAX,
            },
            capabilities: Capabilities(u32::MAX),
            heartbeat_ms: u32::MAX,
            watchdog_ms: Some(u32::MAX),
        },
        Message::Heartbeat {
            beat: u64::MAX,
            health: Health::Unknown(255),
            protected: u16::MAX,
            digest: [0xff; 32],
            partner_heard_ms: Some(u32::MAX),
            running: u16::MAX,
            partner_seq: Some(u64::MAX),
        },
        Message::Ack {
            acked: u64::MAX,
            status: AckStatus::Unknown(255),
        },
        Message::GuestCrashed { name: long('c') },
        Message::HypervisorDown,
        Message::HypervisorUp,
        Message::FenceSelf { incident: u32::MAX },
        Message::FenceSelfConfirmed {
            incident: u32::MAX,
            destroyed: u16::MAX,
            killed: u16::MAX,
            remaining: u16::MAX,
        },
        Message::RestartPartnerGuests {
            incident: u32::MAX,
            failed_slot: MAX_SLOT,
            fence: FenceProof::Unknown(255),
            subset: Some(subset),
        },
        Message::Evacuate {
            incident: u32::MAX,
            to_slot: MAX_SLOT,
        },
        Message::RestartGuest {
            incident: u32::MAX,
            name: long('r'),
        },
        Message::GuestOutcome {
            incident: u32::MAX,
            slot: MAX_SLOT,
            name: long('o'),
            outcome: Outcome::Unknown(255),
            reason: ReasonCode::Unknown(255),
            text: text.clone(),
            elapsed_ms: u32::MAX,
        },
        Message::IncidentDone {
            incident: u32::MAX,
            slot: MAX_SLOT,
            started: u16::MAX,
            refused: u16::MAX,
            failed: u16::MAX,
        },
        Message::DefinitionPush {
            name: long('p'),
            index: MAX_DEFINITION_CHUNKS - 1,
            total: MAX_DEFINITION_CHUNKS,
            digest: [0xff; 32],
            bytes: Vec::from_slice(&[0xff; DEFINITION_CHUNK]).unwrap(),
        },
        Message::DefinitionRemove { name: long('d') },
        Message::DefinitionRequest {
            name: Some(long('q')),
        },
        Message::DestroyGuest {
            incident: u32::MAX,
            name: long('x'),
        },
        Message::GuestDestroyed {
            incident: u32::MAX,
            name: long('y'),
            killed: true,
        },
        Message::Migrate {
            incident: u32::MAX,
            to_slot: MAX_SLOT,
        },
        Message::GuestMoved {
            incident: u32::MAX,
            slot: MAX_SLOT,
            name: long('m'),
            how: Move::Unknown(255),
            elapsed_ms: u32::MAX,
            downtime_ms: Some(u32::MAX),
        },
        Message::Challenge {
            nonce: u64::MAX,
            floor: u64::MAX,
        },
        Message::ChallengeReply { nonce: u64::MAX },
        Message::GuestUnprotected {
            slot: MAX_SLOT,
            reason: UnprotectedReason::Unknown(255),
            name: text.clone(),
            text: text.clone(),
        },
        Message::Present,
    ]
}

/// Deterministic pseudo-random bytes (xorshift64*), for garbage and mutation tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
