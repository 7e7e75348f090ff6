use super::*;

#[test]
fn test_window_in_order_and_replay() {
    let mut w = ReplayWindow::new(0);
    assert_eq!(w.check(0), Err(DropReason::Replayed));
    for s in 1..=100 {
        assert_eq!(w.check(s), Ok(()));
        w.accept(s);
        assert_eq!(w.check(s), Err(DropReason::Replayed));
    }
    assert_eq!(w.check(100 - 63), Err(DropReason::Replayed));
    assert_eq!(w.check(100 - 64), Err(DropReason::Stale));
}

#[test]
fn test_window_reordering() {
    let mut w = ReplayWindow::new(1000);
    assert_eq!(w.check(1000), Err(DropReason::Replayed));
    assert_eq!(w.check(999), Err(DropReason::Replayed));
    w.accept(1010);
    // 1001..1009 were skipped: each accepted once, in any order.
    for s in [1005, 1001, 1009] {
        assert_eq!(w.check(s), Ok(()));
        w.accept(s);
        assert_eq!(w.check(s), Err(DropReason::Replayed));
    }
    assert_eq!(w.check(1002), Ok(()));
    // A jump larger than the window clears it.
    w.accept(1010 + 200);
    assert_eq!(w.check(1010 + 199), Ok(()));
    assert_eq!(w.check(1010 + 200 - 64), Err(DropReason::Stale));
    assert_eq!(w.check(u64::MAX), Ok(()));
    w.accept(u64::MAX);
    assert_eq!(w.check(u64::MAX), Err(DropReason::Replayed));
}

#[test]
fn test_peers_capacity() {
    let mut p = Peers::new();
    for i in 0..Peers::CAPACITY as u8 {
        assert_eq!(p.add(NodeId(i)), Ok(()));
    }
    assert_eq!(
        p.add(NodeId(3)),
        Ok(()),
        "re-adding a known peer is a no-op"
    );
    assert_eq!(p.add(NodeId(40)), Err(NodeId(40)));
    p.remove(NodeId(3));
    assert!(p.get(NodeId(3)).is_none());
    assert_eq!(p.add(NodeId(40)), Ok(()));
}

#[test]
fn test_key_hex() {
    let k =
        Key::from_hex(b"000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F").unwrap();
    assert_eq!(k.as_bytes()[31], 0x1f);
    assert_eq!(k.as_bytes()[10], 0x0a);
    assert!(Key::from_hex(b"00").is_none());
    assert!(Key::from_hex(&[b'g'; 64]).is_none());
    assert!(Key::from_hex("é".repeat(32).as_bytes()).is_none());
    assert_eq!(format!("{k:?}"), "Key(..)");
}
