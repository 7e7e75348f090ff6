//! Every kind of bad datagram is dropped with its reason and counted; nothing panics.

mod common;

use common::{golden_key, largest, samples, Rng};
use shelfha_proto::*;

const AGENT: NodeId = NodeId(3);

fn verifier() -> Verifier {
    let mut v = Verifier::new(golden_key(), NodeId::SHMC);
    v.add_peer(AGENT).unwrap();
    v
}

fn frame_with(key: &Key, sender: NodeId, dest: NodeId, seq: u64, msg: &Message) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME];
    let n = seal(key, &Header { sender, dest, seq }, msg, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn frame(seq: u64, msg: &Message) -> Vec<u8> {
    frame_with(&golden_key(), AGENT, NodeId::SHMC, seq, msg)
}

/// Header + raw body + a valid tag: an authentic frame whose body we choose freely.
fn authentic_raw(seq: u64, body: &[u8]) -> Vec<u8> {
    let mut f = vec![PROTOCOL_VERSION, AGENT.0, NodeId::SHMC.0];
    f.extend_from_slice(&seq.to_le_bytes());
    f.extend_from_slice(body);
    let tag = golden_key().tag(&f);
    f.extend_from_slice(&tag);
    f
}

fn crashed() -> Message {
    Message::GuestCrashed {
        name: guest_name("vm1").unwrap(),
    }
}

/// Opens `datagram` with a fresh verifier and checks it is dropped for `reason`, counted once.
fn assert_dropped(datagram: &[u8], reason: DropReason) {
    let mut v = verifier();
    assert_eq!(v.open(datagram).map(|r| r.message), Err(reason));
    assert_eq!(v.drops().get(reason), 1);
    assert_eq!(v.drops().total(), 1);
}

#[test]
fn test_valid_frame_is_accepted() {
    let mut v = verifier();
    let rx = v.open(&frame(1, &crashed())).unwrap();
    assert_eq!(rx.message, crashed());
}

#[test]
fn test_truncated() {
    let f = frame(1, &crashed());
    assert_dropped(&f[..MIN_FRAME - 1], DropReason::Truncated);
    assert_dropped(&[], DropReason::Truncated);
    // Long enough for a header, but the tag no longer lines up.
    assert_dropped(&f[..f.len() - 1], DropReason::BadMac);
}

#[test]
fn test_flipped_bits() {
    let f = frame(1, &crashed());
    for pos in [HEADER_LEN, HEADER_LEN + 2, 3] {
        let mut g = f.clone();
        g[pos] ^= 0x01;
        assert_dropped(&g, DropReason::BadMac);
    }
    let mut g = f.clone();
    let last = g.len() - 1;
    g[last] ^= 0x80;
    assert_dropped(&g, DropReason::BadMac);
    let mut g = f;
    let first_tag_byte = g.len() - TAG_LEN;
    g[first_tag_byte] ^= 0x01;
    assert_dropped(&g, DropReason::BadMac);
}

#[test]
fn test_wrong_key() {
    let other = Key::new([0x55; 32]);
    let f = frame_with(&other, AGENT, NodeId::SHMC, 1, &crashed());
    assert_dropped(&f, DropReason::BadMac);
}

#[test]
fn test_replayed_and_stale() {
    let mut v = verifier();
    let f = frame(100, &crashed());
    assert!(v.open(&f).is_ok());
    assert_eq!(v.open(&f).map(|_| ()), Err(DropReason::Replayed));
    assert!(v.open(&frame(200, &crashed())).is_ok());
    // 100 is now 100 below the highest: outside the 64-wide window.
    assert_eq!(v.open(&f).map(|_| ()), Err(DropReason::Stale));
    assert_eq!(
        v.open(&frame(200 - 64, &crashed())).map(|_| ()),
        Err(DropReason::Stale)
    );
    assert_eq!(v.drops().get(DropReason::Replayed), 1);
    assert_eq!(v.drops().get(DropReason::Stale), 2);
}

#[test]
fn test_reordering_within_window_accepted_once() {
    let mut v = verifier();
    let seqs = [10u64, 14, 12, 11, 13, 14, 12, 73, 15, 9];
    let expect = [
        Ok(()),
        Ok(()),
        Ok(()),
        Ok(()),
        Ok(()),
        Err(DropReason::Replayed),
        Err(DropReason::Replayed),
        Ok(()),
        Ok(()), // 73 - 15 = 58 < 64: still inside the window
        Err(DropReason::Stale),
    ];
    for (s, e) in seqs.iter().zip(expect) {
        assert_eq!(v.open(&frame(*s, &crashed())).map(|_| ()), e, "seq {s}");
    }
}

#[test]
fn test_floor_rejects_frames_from_before_a_restart() {
    let mut v = verifier();
    assert!(v.set_floor(AGENT, 1000));
    assert!(!v.set_floor(NodeId(9), 1000), "unknown peer");
    assert_eq!(
        v.open(&frame(1000, &crashed())).map(|_| ()),
        Err(DropReason::Replayed)
    );
    assert_eq!(
        v.open(&frame(10, &crashed())).map(|_| ()),
        Err(DropReason::Stale)
    );
    assert!(v.open(&frame(1001, &crashed())).is_ok());
    // A lower floor never reopens the window.
    v.set_floor(AGENT, 5);
    assert_eq!(
        v.open(&frame(1001, &crashed())).map(|_| ()),
        Err(DropReason::Replayed)
    );
}

#[test]
fn test_unknown_sender_and_not_for_us() {
    let f = frame_with(&golden_key(), NodeId(9), NodeId::SHMC, 1, &crashed());
    assert_dropped(&f, DropReason::UnknownSender);
    let f = frame_with(&golden_key(), AGENT, NodeId(4), 1, &crashed());
    assert_dropped(&f, DropReason::NotForUs);
}

#[test]
fn test_other_version() {
    let mut f = frame(1, &crashed());
    f[0] = PROTOCOL_VERSION + 1;
    assert_dropped(&f, DropReason::BadVersion);
    // A frame of the previous version (before Hello and Heartbeat grew their fields).
    f[0] = PROTOCOL_VERSION - 1;
    assert_dropped(&f, DropReason::BadVersion);
    f[0] = PROTOCOL_VERSION + 1;
    // Even with a valid tag over the changed header.
    let n = f.len() - TAG_LEN;
    let tag = golden_key().tag(&f[..n]);
    f[n..].copy_from_slice(&tag);
    assert_dropped(&f, DropReason::BadVersion);
}

#[test]
fn test_oversized() {
    let mut f = frame(1, &crashed());
    f.resize(MAX_FRAME + 1, 0);
    assert_dropped(&f, DropReason::TooLarge);
    assert_dropped(&vec![1u8; 65_507], DropReason::TooLarge);
}

#[test]
fn test_authentic_but_bad_body() {
    assert_dropped(&authentic_raw(1, &[Kind::COUNT]), DropReason::UnknownKind);
    assert_dropped(&authentic_raw(1, &[200, 1, 2]), DropReason::UnknownKind);
    // GuestCrashed with a name length of 100 (> 64 and beyond the data).
    assert_dropped(
        &authentic_raw(1, &[Kind::GuestCrashed as u8, 100, b'a']),
        DropReason::Malformed,
    );
    // Invalid UTF-8 in a name.
    assert_dropped(
        &authentic_raw(1, &[Kind::GuestCrashed as u8, 2, 0xff, 0xfe]),
        DropReason::Malformed,
    );
    // Option tag 2 is neither None nor Some.
    assert_dropped(
        &authentic_raw(1, &[Kind::DefinitionRequest as u8, 2]),
        DropReason::Malformed,
    );
    // Decodes, but a path-like guest name is refused.
    assert_dropped(
        &authentic_raw(1, &[Kind::GuestCrashed as u8, 4, b'.', b'.', b'/', b'x']),
        DropReason::Invalid,
    );
    // An authentic frame with a bad body still consumes its sequence.
    let mut v = verifier();
    let bad = authentic_raw(5, &[200]);
    assert_eq!(v.open(&bad).map(|_| ()), Err(DropReason::UnknownKind));
    assert_eq!(v.open(&bad).map(|_| ()), Err(DropReason::Replayed));
    for r in [
        DropReason::WrongRole,
        DropReason::UnknownKind,
        DropReason::Malformed,
        DropReason::Invalid,
        DropReason::Replayed,
        DropReason::Stale,
    ] {
        assert!(r.is_authentic());
    }
    assert!(!DropReason::BadMac.is_authentic());
    assert!(!DropReason::UnknownSender.is_authentic());
}

#[test]
fn test_wrong_role() {
    // A blade may not give ShMC orders, nor register under another slot.
    assert_dropped(
        &frame(1, &Message::FenceSelf { incident: 1 }),
        DropReason::WrongRole,
    );
    let mut hello = samples().remove(Kind::Hello as usize);
    if let Message::Hello { slot, .. } = &mut hello {
        *slot = 4;
    }
    assert_dropped(&frame(1, &hello), DropReason::WrongRole);
    // The ShMC may not send agent reports.
    let mut v = Verifier::new(golden_key(), AGENT);
    v.add_peer(NodeId::SHMC).unwrap();
    let f = frame_with(&golden_key(), NodeId::SHMC, AGENT, 1, &crashed());
    assert_eq!(v.open(&f).map(|_| ()), Err(DropReason::WrongRole));
    let f = frame_with(
        &golden_key(),
        NodeId::SHMC,
        AGENT,
        2,
        &Message::FenceSelf { incident: 1 },
    );
    assert!(v.open(&f).is_ok());
}

#[test]
fn test_random_garbage_never_accepted() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut v = verifier();
    for i in 0..20_000 {
        let len = rng.below(MAX_FRAME + 100);
        let mut g: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Half of them look like real headers, to reach the tag check.
        if i % 2 == 0 && g.len() >= 3 {
            g[0] = PROTOCOL_VERSION;
            g[1] = AGENT.0;
            g[2] = NodeId::SHMC.0;
        }
        let r = v.open(&g);
        assert!(r.is_err(), "garbage accepted: {g:02x?}");
    }
    assert_eq!(v.drops().total(), 20_000);
    assert!(v.drops().get(DropReason::BadMac) > 5_000);
}

#[test]
fn test_decoder_never_panics_on_authentic_mutations() {
    // Mutate bodies and re-sign them, so that arbitrary bytes reach the postcard decoder.
    let mut rng = Rng(42);
    let mut v = verifier();
    let mut seq = 1;
    let mut outcomes = [0u32; 2];
    for msg in samples().iter().chain(largest().iter()) {
        let f = frame(1, msg);
        let body = &f[HEADER_LEN..f.len() - TAG_LEN];
        for _ in 0..500 {
            let mut b = body.to_vec();
            match rng.below(3) {
                0 => {
                    let p = rng.below(b.len());
                    b[p] = rng.next() as u8;
                }
                1 => b.truncate(rng.below(b.len()) + 1),
                _ => {
                    let p = rng.below(b.len());
                    b.insert(p, rng.next() as u8);
                }
            }
            if b.len() > MAX_BODY {
                b.truncate(MAX_BODY);
            }
            match v.open(&authentic_raw(seq, &b)) {
                Ok(rx) => {
                    assert!(rx.message.is_valid());
                    outcomes[0] += 1;
                }
                Err(r) => {
                    assert!(
                        matches!(
                            r,
                            DropReason::UnknownKind
                                | DropReason::Malformed
                                | DropReason::Invalid
                                | DropReason::WrongRole
                        ),
                        "{r:?}"
                    );
                    outcomes[1] += 1;
                }
            }
            seq += 1;
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}
