//! Definition reassembly on the receive path: authentic `DefinitionPush` frames, opened by the
//! verifier as an agent opens them, then given to the `Assembler`. Hostile chunk sequences
//! (duplicates, a resent last chunk of another length, mixed versions, random numbering) give
//! an error or nothing, never a panic, and memory stays bounded.
#![cfg(feature = "std")]

mod common;

use common::{golden_key, Rng};
use shelfha_proto::message::guest_name;
use shelfha_proto::*;

/// Seals `msg` from slot 2 to slot 3 and opens it with slot 3's verifier: what the agent's
/// endpoint hands to the assembler.
fn through_verifier(v: &mut Verifier, seq: u64, msg: &Message) -> Message {
    let header = Header {
        sender: NodeId(2),
        dest: NodeId(3),
        seq,
    };
    let mut buf = [0u8; MAX_FRAME];
    let n = seal(&golden_key(), &header, msg, &mut buf).unwrap();
    v.open(&buf[..n]).unwrap().message
}

fn verifier() -> Verifier {
    let mut v = Verifier::new(golden_key(), NodeId(3));
    v.add_peer(NodeId(2)).unwrap();
    v
}

fn push(name: &str, index: u16, total: u16, digest: Digest, bytes: &[u8]) -> Message {
    Message::DefinitionPush {
        name: guest_name(name).unwrap(),
        index,
        total,
        digest,
        bytes: heapless::Vec::from_slice(bytes).unwrap(),
    }
}

fn xml(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((i + usize::from(seed)) % 26) as u8)
        .collect()
}

/// The last chunk arrives twice, the second copy longer (a forged or garbled first copy, then
/// the real one): the assembler used to write the second copy past the end of its buffer,
/// which the first, shorter copy had cut to its own length, and the agent panicked.
#[test]
fn test_last_chunk_twice_second_longer_does_not_panic() {
    let real = xml(DEFINITION_CHUNK + 600, 0);
    let digest = definition_digest(&real);
    let chunks = split_definition("vm1", &real).unwrap();
    assert_eq!(chunks.len(), 2);
    let short_last = push("vm1", 1, 2, digest, b"<short/>");

    let mut v = verifier();
    let mut a = Assembler::new();
    let m = through_verifier(&mut v, 1, &short_last);
    assert_eq!(a.add(&m), Ok(None));
    let m = through_verifier(&mut v, 2, &chunks[1]);
    assert_eq!(a.add(&m), Ok(None), "the longer copy replaces the shorter");
    let m = through_verifier(&mut v, 3, &chunks[0]);
    let (name, got) = a.add(&m).unwrap().unwrap();
    assert_eq!(name.as_str(), "vm1");
    assert_eq!(got, real);
    assert_eq!(a.in_progress(), 0);
}

/// The same the other way round (long copy first, short one last), and a definition of one
/// chunk sent twice with different lengths: the copy that completes decides, the digest
/// tells a wrong one.
#[test]
fn test_resent_chunks_of_other_lengths_are_checked_by_digest() {
    let real = xml(2 * DEFINITION_CHUNK + 10, 1);
    let digest = definition_digest(&real);
    let chunks = split_definition("vm2", &real).unwrap();
    let mut a = Assembler::new();
    assert_eq!(a.add(&chunks[2]), Ok(None));
    assert_eq!(a.add(&push("vm2", 2, 3, digest, &[b'x'; 900])), Ok(None));
    assert_eq!(a.add(&chunks[0]), Ok(None));
    assert_eq!(a.add(&chunks[1]), Err(ChunkError::DigestMismatch));
    assert_eq!(
        a.in_progress(),
        0,
        "a mismatching definition is dropped whole"
    );

    let one = xml(100, 2);
    let d = definition_digest(&one);
    let mut a = Assembler::new();
    assert_eq!(
        a.add(&push("vm3", 0, 1, d, &one[..50])),
        Err(ChunkError::DigestMismatch)
    );
    assert_eq!(a.add(&push("vm3", 0, 1, d, &one)).unwrap().unwrap().1, one);
}

/// A chunk whose `total` disagrees with the chunks held for the same version drops that
/// version; numbering outside `total` is refused before anything is kept.
#[test]
fn test_inconsistent_numbering() {
    let real = xml(3 * DEFINITION_CHUNK, 3);
    let digest = definition_digest(&real);
    let chunks = split_definition("vm4", &real).unwrap();
    let mut a = Assembler::new();
    assert_eq!(a.add(&chunks[0]), Ok(None));
    assert_eq!(
        a.add(&push("vm4", 1, 2, digest, &real[..DEFINITION_CHUNK])),
        Err(ChunkError::Inconsistent)
    );
    assert_eq!(a.in_progress(), 0);
    for bad in [
        push("vm4", 3, 3, digest, b"x"),
        push("vm4", 0, 0, digest, b"x"),
        push("vm4", 0, MAX_DEFINITION_CHUNKS + 1, digest, b"x"),
        push("vm4", 0, 2, digest, b"short non-final chunk"),
        Message::HypervisorUp,
    ] {
        assert_eq!(a.add(&bad), Err(ChunkError::Inconsistent), "{bad:?}");
    }
    assert_eq!(a.in_progress(), 0);
}

/// Random chunk sequences from a hostile partner (random names, numbering, lengths, digests,
/// repeats), valid or not: never a panic, never more than `MAX_PARTIAL` definitions held,
/// and whatever completes matches its digest.
#[test]
fn test_random_chunk_sequences_never_panic() {
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let digests: Vec<Digest> = (0..4u8).map(|i| definition_digest(&[i])).collect();
    let mut a = Assembler::new();
    for _ in 0..50_000 {
        let name = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"][rng.below(10)];
        let total = 1 + rng.below(usize::from(MAX_DEFINITION_CHUNKS) + 1) as u16;
        let index = rng.below(usize::from(total) + 1) as u16;
        let len = match rng.below(3) {
            0 => DEFINITION_CHUNK,
            1 => 1 + rng.below(DEFINITION_CHUNK),
            _ => 1 + rng.below(8),
        };
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let m = push(name, index, total, digests[rng.below(4)], &bytes);
        if let Ok(Some((_, got))) = a.add(&m) {
            assert!(digests.contains(&definition_digest(&got)));
        }
        assert!(a.in_progress() <= Assembler::MAX_PARTIAL);
    }
}
