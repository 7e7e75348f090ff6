//! Round trips and maximum sizes of every message kind.

mod common;

use common::{golden_key, largest, route, samples, verifier_for};
use postcard::experimental::max_size::MaxSize;
use shelfha_proto::*;

fn verifier() -> Verifier {
    let mut v = Verifier::new(golden_key(), NodeId::SHMC);
    v.add_peer(NodeId(3)).unwrap();
    v
}

#[test]
fn test_roles() {
    // Ack and the session kinds may come from anyone.
    for msg in samples()
        .into_iter()
        .filter(|m| m.kind().from_shmc().is_some())
    {
        let (sender, _) = route(&msg);
        assert!(msg.sender_allowed(sender), "{msg:?}");
        let other = if sender == NodeId::SHMC {
            NodeId(3)
        } else {
            NodeId::SHMC
        };
        assert!(!msg.sender_allowed(other), "{msg:?} from {other}");
        assert!(!msg.sender_allowed(NodeId(17)));
    }
    let ack = Message::Ack {
        acked: 1,
        status: AckStatus::Accepted,
    };
    assert!(ack.sender_allowed(NodeId::SHMC) && ack.sender_allowed(NodeId(16)));
    // A Hello names the sender's own slot.
    let hello = samples().remove(0);
    assert!(hello.sender_allowed(NodeId(3)) && !hello.sender_allowed(NodeId(4)));
}

#[test]
fn test_samples_cover_every_kind_in_order() {
    for list in [samples(), largest()] {
        let kinds: Vec<Kind> = list.iter().map(Message::kind).collect();
        assert_eq!(kinds, Kind::ALL.to_vec());
        assert!(list.iter().all(Message::is_valid));
    }
}

#[test]
fn test_round_trip_every_message() {
    let mut to_shmc = verifier_for(NodeId::SHMC);
    let mut to_blade = verifier_for(NodeId(3));
    for (seq, msg) in (1..).zip(samples().into_iter().chain(largest())) {
        // Body alone.
        let mut body = [0u8; MAX_BODY];
        let enc = postcard::to_slice(&msg, &mut body).unwrap();
        assert_eq!(enc[0], msg.kind() as u8, "kind byte of {msg:?}");
        let back: Message = postcard::from_bytes(enc).unwrap();
        assert_eq!(back, msg);
        // Whole frame through seal and open.
        let mut buf = [0u8; MAX_FRAME];
        let (sender, dest) = route(&msg);
        let h = Header { sender, dest, seq };
        let n = seal(&golden_key(), &h, &msg, &mut buf).unwrap();
        assert_eq!(n, HEADER_LEN + enc.len() + TAG_LEN);
        let v = if dest == NodeId::SHMC {
            &mut to_shmc
        } else {
            &mut to_blade
        };
        let rx = v.open(&buf[..n]).unwrap();
        assert_eq!(rx.sender, sender);
        assert_eq!(rx.seq, seq);
        assert_eq!(rx.message, msg);
    }
    assert_eq!(to_shmc.drops().total() + to_blade.drops().total(), 0);
}

#[test]
fn test_largest_of_every_kind_fits_max_frame() {
    let mut biggest = 0;
    for msg in largest() {
        let mut buf = [0u8; MAX_FRAME];
        let h = Header {
            sender: NodeId(16),
            dest: NodeId(15),
            seq: u64::MAX,
        };
        let n = seal(&golden_key(), &h, &msg, &mut buf)
            .unwrap_or_else(|e| panic!("{:?} does not fit: {e}", msg.kind()));
        assert!(n <= MAX_FRAME);
        biggest = biggest.max(n);
    }
    // The bound is reached (by DefinitionPush with the widest varints), so it is not slack.
    let mut push = largest().remove(Kind::DefinitionPush as usize);
    if let Message::DefinitionPush { index, total, .. } = &mut push {
        *index = u16::MAX;
        *total = u16::MAX;
    }
    let mut body = [0u8; MAX_BODY];
    assert_eq!(
        postcard::to_slice(&push, &mut body).unwrap().len(),
        MAX_BODY
    );
    assert_eq!(Message::POSTCARD_MAX_SIZE, MAX_BODY);
    assert!(
        biggest > MAX_FRAME - 8,
        "largest valid frame {biggest} vs {MAX_FRAME}"
    );
    const { assert!(MAX_FRAME <= SAFE_UDP_PAYLOAD) };
    assert_eq!(MAX_FRAME, 1173);
}

#[test]
fn test_trailing_bytes_are_ignored_for_forward_compatibility() {
    // A newer sender appends a field to FenceSelfConfirmed: an older receiver still reads it.
    let key = golden_key();
    let mut frame = vec![PROTOCOL_VERSION, 3, 0];
    frame.extend_from_slice(&5u64.to_le_bytes());
    frame.extend_from_slice(&[Kind::FenceSelfConfirmed as u8, 42, 1, 0, 0, 0x99, 0x01]);
    let tag = key.tag(&frame);
    frame.extend_from_slice(&tag);
    let rx = verifier().open(&frame).unwrap();
    assert_eq!(
        rx.message,
        Message::FenceSelfConfirmed {
            incident: 42,
            destroyed: 1,
            killed: 0,
            remaining: 0
        }
    );
}
