//! Key files that are obviously not random are refused with an error that names the file and
//! says how to make a key; random keys and the fixed test key (bytes 0x00..0x1f) are accepted.
#![cfg(feature = "std")]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use shelfha_proto::edge::keyfile::{key_weakness, KEY_HOWTO};
use shelfha_proto::*;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shelfha-weak-{}-{}", name, std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn put(path: &Path, content: &[u8]) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn counting() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

/// Loads `content` from a 0600 file and expects `Weak`, whose message names the file and
/// quotes how to make a key.
fn assert_weak(p: &Path, content: &[u8], what: &str) {
    put(p, content);
    match load_key(p) {
        Err(e @ KeyFileError::Weak { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&p.display().to_string()), "{what}: {msg}");
            assert!(msg.contains(KEY_HOWTO), "{what}: {msg}");
            assert!(msg.contains("head -c 32 /dev/urandom"), "{what}: {msg}");
            assert!(msg.contains(what), "expected {what:?} in: {msg}");
        }
        other => panic!(
            "{what}: {:?} -> {other:?}",
            String::from_utf8_lossy(content)
        ),
    }
}

#[test]
fn test_all_zero_and_all_equal_refused() {
    let d = dir("equal");
    let p = d.join("shelf.key");
    assert_weak(&p, &[0; 32], "zero");
    assert_weak(&p, format!("{}\n", "0".repeat(64)).as_bytes(), "zero");
    assert_weak(&p, &[0x5a; 32], "all 32 bytes are 0x5a");
    assert_weak(&p, hex(&[0x3c; 32]).as_bytes(), "all 32 bytes are 0x3c");
    assert_weak(&p, &[0xff; 32], "all 32 bytes are 0xff");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn test_passphrases_refused() {
    let d = dir("text");
    let p = d.join("shelf.key");
    // 31 characters and the newline an editor or `echo` adds: exactly 32 bytes.
    let pass = b"correct horse battery staple 42\n";
    assert_eq!(pass.len(), 32);
    assert_weak(&p, pass, "text");
    assert_weak(&p, b"Tr0ub4dor&3-Tr0ub4dor&3-xyzzy!?#", "text");
    assert_weak(&p, "grüße aus der schweiz, café!\n".as_bytes(), "text");
    // A passphrase hex-encoded is still a passphrase.
    assert_weak(&p, format!("{}\n", hex(pass)).as_bytes(), "text");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn test_patterns_and_few_values_refused() {
    let d = dir("pattern");
    let p = d.join("shelf.key");
    // 16 distinct values, repeated: passes a distinct-value count, not the pattern check.
    let pattern: [u8; 32] = std::array::from_fn(|i| (i % 16) as u8 * 16 + 1);
    assert_weak(&p, &pattern, "repeats a 16-byte pattern");
    let pair: [u8; 32] = std::array::from_fn(|i| if i % 2 == 0 { 0x03 } else { 0xfe });
    assert_weak(&p, &pair, "repeats a 2-byte pattern");
    assert_weak(&p, hex(&pattern).as_bytes(), "repeats a 16-byte pattern");
    // Four byte values in no repeating order.
    let mut x = 0x1234_5678u32;
    let few: [u8; 32] = std::array::from_fn(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        0x80 + (x % 4) as u8
    });
    assert_weak(&p, &few, "distinct byte values");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn test_near_patterns_runs_and_counters_refused() {
    let d = dir("near");
    let p = d.join("shelf.key");
    let random = *generate_key().unwrap().as_bytes();
    let mut zeros_then_random = [0u8; 32];
    zeros_then_random[24..].copy_from_slice(&random[24..]);
    let mut pattern17 = [0u8; 32];
    for (i, b) in pattern17.iter_mut().enumerate() {
        *b = random[i % 17];
    }
    let mut pattern16_changed = [0u8; 32];
    for (i, b) in pattern16_changed.iter_mut().enumerate() {
        *b = random[i % 16];
    }
    pattern16_changed[20] = pattern16_changed[20].wrapping_add(1);
    let mut descending = [0u8; 32];
    let mut steps7 = [0u8; 32];
    for i in 0..32 {
        descending[i] = 0xff - i as u8;
        steps7[i] = (i as u8).wrapping_mul(7).wrapping_add(3);
    }
    for (key, why) in [
        (zeros_then_random, "in a row"),
        (pattern17, "pattern"),
        (pattern16_changed, "pattern"),
        (descending, "counts"),
        (steps7, "counts"),
    ] {
        put(&p, &key);
        assert_weak(&p, &key, why);
    }
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn test_random_keys_accepted() {
    let d = dir("ok");
    let p = d.join("shelf.key");
    // The fixed test key of the protocol's golden vectors counts 00 01 .. 1f: no key file
    // may hold it.
    for content in [counting().to_vec(), hex(&counting()).into_bytes()] {
        put(&p, &content);
        assert_weak(&p, &content, "counts");
    }
    // Keys from /dev/urandom pass, raw and hex (random text is vanishingly unlikely).
    for _ in 0..2000 {
        let k = generate_key().unwrap();
        assert_eq!(key_weakness(k.as_bytes()), None, "{:02x?}", k.as_bytes());
    }
    let k = generate_key().unwrap();
    put(&p, k.as_bytes());
    assert_eq!(load_key(&p).unwrap().as_bytes(), k.as_bytes());
    let p2 = d.join("written.key");
    write_key_file(&p2, &k).unwrap();
    assert_eq!(load_key(&p2).unwrap().as_bytes(), k.as_bytes());
    fs::remove_dir_all(&d).unwrap();
}
