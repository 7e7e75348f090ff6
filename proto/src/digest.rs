//! Digests of guest definitions, exchanged between partner agents to detect drift.
//!
//! `definition_digest` is SHA-256 of one domain XML document (as pushed, byte for byte).
//! `guest_set_digest` is SHA-256 over the set, sorted by guest name, of
//! `len(name) as u8 || name || definition_digest`; both partners compute it the same way.

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// SHA-256 of one domain XML document.
pub fn definition_digest(xml: &[u8]) -> Digest {
    Sha256::digest(xml).into()
}

/// Digest of a set of `(guest name, definition digest)`; sorts `entries` by name first.
/// Names longer than 255 bytes cannot occur (guest names are at most 64 bytes).
pub fn guest_set_digest(entries: &mut [(&str, Digest)]) -> Digest {
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut h = Sha256::new();
    for (name, d) in entries.iter() {
        let len = u8::try_from(name.len()).unwrap_or(u8::MAX);
        h.update([len]);
        h.update(name.as_bytes());
        h.update(d);
    }
    h.finalize().into()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_set_digest_is_order_independent_and_content_sensitive() {
        let a = definition_digest(b"<domain>a</domain>");
        let b = definition_digest(b"<domain>b</domain>");
        let d1 = guest_set_digest(&mut [("a", a), ("b", b)]);
        let d2 = guest_set_digest(&mut [("b", b), ("a", a)]);
        assert_eq!(d1, d2);
        assert_ne!(d1, guest_set_digest(&mut [("a", b), ("b", a)]));
        assert_ne!(d1, guest_set_digest(&mut [("a", a)]));
        // "ab"+"c" must differ from "a"+"bc": the length prefix separates names.
        assert_ne!(
            guest_set_digest(&mut [("ab", a), ("c", a)]),
            guest_set_digest(&mut [("a", a), ("bc", a)])
        );
        // Known SHA-256 of the empty string.
        assert_eq!(definition_digest(b"")[..4], [0xe3, 0xb0, 0xc4, 0x42]);
    }
}
