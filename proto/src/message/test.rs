use super::*;

#[test]
fn test_kind_table_matches_variant_order() {
    for (i, k) in Kind::ALL.iter().enumerate() {
        assert_eq!(*k as u8 as usize, i);
        assert_eq!(Kind::from_u8(i as u8), Some(*k));
    }
    assert_eq!(Kind::from_u8(Kind::COUNT), None);
}

#[test]
fn test_code_enum_round_trip() {
    for v in 0..=255u8 {
        assert_eq!(u8::from(ReasonCode::from(v)), v);
        assert_eq!(u8::from(FenceProof::from(v)), v);
        assert_eq!(u8::from(Move::from(v)), v);
    }
    assert_eq!(FenceProof::from(4), FenceProof::SelfFenced);
    assert_eq!(FenceProof::from(200), FenceProof::Unknown(200));
    assert!(!FenceProof::Unknown(200).is_confirmed());
    assert!(!FenceProof::Unconfirmed.is_confirmed());
    assert!(FenceProof::HotSwapM1.is_confirmed());
}

#[test]
fn test_guest_names() {
    assert!(valid_guest_name("web-01.example_db"));
    for bad in ["", ".", "..", ".hidden", "a/b", "../etc", "a\nb", "a\0b"] {
        assert!(!valid_guest_name(bad), "{bad:?}");
    }
    assert!(guest_name(&"x".repeat(64)).is_some());
    assert!(guest_name(&"x".repeat(65)).is_none());
}

#[test]
fn test_short_text() {
    assert_eq!(short_text("error:\nno\tway").as_str(), "error: no way");
    let long = "é".repeat(40); // 80 bytes
    let t = short_text(&long);
    assert_eq!(t.len(), 64);
    assert!(!t.chars().any(char::is_control));
}

#[test]
fn test_validation() {
    let push = |index, total, len| Message::DefinitionPush {
        name: guest_name("g").unwrap(),
        index,
        total,
        digest: [0; 32],
        bytes: Vec::from_slice(&[b'x'; DEFINITION_CHUNK][..len]).unwrap(),
    };
    assert!(push(0, 1, 10).is_valid());
    assert!(push(0, 2, DEFINITION_CHUNK).is_valid());
    assert!(!push(0, 2, 10).is_valid(), "short non-final chunk");
    assert!(!push(2, 2, 10).is_valid(), "index out of range");
    assert!(!push(0, 0, 10).is_valid());
    assert!(!push(0, MAX_DEFINITION_CHUNKS + 1, DEFINITION_CHUNK).is_valid());
    assert!(!push(0, 1, 0).is_valid(), "empty chunk");
    let restart = |slot, subset| Message::RestartPartnerGuests {
        incident: 1,
        failed_slot: slot,
        fence: FenceProof::HotSwapM1,
        subset,
    };
    assert!(restart(3, None).is_valid());
    assert!(!restart(0, None).is_valid());
    assert!(!restart(17, None).is_valid());
    assert!(!restart(3, Some(Vec::new())).is_valid());
    assert!(!Message::Hello {
        slot: 0,
        version: SoftwareVersion {
            major: 0,
            minor: 1,
            patch: 0
        },
        capabilities: Capabilities::default(),
        heartbeat_ms: 200,
        watchdog_ms: None,
    }
    .is_valid());
}
