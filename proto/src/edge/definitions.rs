//! Splitting a domain XML into [`Message::DefinitionPush`] chunks and reassembling them.
//!
//! Chunk `i` of `n` holds XML bytes `i * DEFINITION_CHUNK ..`; every chunk carries the digest of
//! the whole XML so chunks of two versions never mix, and the assembled XML is checked against
//! it. At most [`MAX_DEFINITION_CHUNKS`] chunks (64 KiB) per definition and
//! [`Assembler::MAX_PARTIAL`] definitions in progress at once; the oldest is evicted beyond that.

use heapless::Vec as HVec;

use crate::digest::{definition_digest, Digest};
use crate::message::{guest_name, GuestName, Message, DEFINITION_CHUNK, MAX_DEFINITION_CHUNKS};

/// Why a definition cannot be split or a chunk was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkError {
    /// The XML is empty or longer than `MAX_DEFINITION_CHUNKS * DEFINITION_CHUNK` bytes.
    BadSize,
    /// The guest name is not a valid [`GuestName`].
    BadName,
    /// Not a `DefinitionPush`, or its numbering disagrees with the chunks already held.
    Inconsistent,
    /// All chunks arrived but their digest does not match.
    DigestMismatch,
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChunkError::BadSize => "definition empty or larger than 64 KiB",
            ChunkError::BadName => "invalid guest name",
            ChunkError::Inconsistent => "chunk numbering inconsistent",
            ChunkError::DigestMismatch => "assembled definition does not match its digest",
        })
    }
}

impl std::error::Error for ChunkError {}

/// The `DefinitionPush` messages carrying `xml` for guest `name`, in order.
pub fn split(name: &str, xml: &[u8]) -> Result<Vec<Message>, ChunkError> {
    let name = guest_name(name).ok_or(ChunkError::BadName)?;
    let max = usize::from(MAX_DEFINITION_CHUNKS) * DEFINITION_CHUNK;
    if xml.is_empty() || xml.len() > max {
        return Err(ChunkError::BadSize);
    }
    let digest = definition_digest(xml);
    let total = xml.len().div_ceil(DEFINITION_CHUNK);
    let total_u16 = u16::try_from(total).map_err(|_| ChunkError::BadSize)?;
    Ok(xml
        .chunks(DEFINITION_CHUNK)
        .zip(0u16..)
        .map(|(bytes, index)| Message::DefinitionPush {
            name: name.clone(),
            index,
            total: total_u16,
            digest,
            // Chunks are at most DEFINITION_CHUNK long by construction.
            bytes: HVec::from_slice(bytes).unwrap_or_default(),
        })
        .collect())
}

/// One definition being assembled: each chunk kept as it arrived, joined only when all are
/// there. Nothing is written at an offset computed from the wire, so no chunk (a duplicate, a
/// resent last chunk of another length) can reach past what was allocated.
#[derive(Debug)]
struct Partial {
    name: GuestName,
    digest: Digest,
    total: u16,
    /// `chunks.len() == total`; `None` until chunk `i` arrived.
    chunks: Vec<Option<HVec<u8, DEFINITION_CHUNK>>>,
    age: u64,
}

impl Partial {
    fn complete(&self) -> bool {
        self.chunks.iter().all(Option::is_some)
    }

    /// The chunks joined in order (call when [`Partial::complete`]).
    fn join(&self) -> Vec<u8> {
        let len = self.chunks.iter().flatten().map(|c| c.len()).sum();
        let mut xml = Vec::with_capacity(len);
        for c in self.chunks.iter().flatten() {
            xml.extend_from_slice(c);
        }
        xml
    }
}

/// Reassembles pushed definitions from one partner.
///
/// Hostile input never panics it: a chunk is stored in its own slot (replacing an earlier copy
/// of the same chunk), chunk numbering and lengths are checked against the message rules
/// ([`Message::is_valid`]) before anything is kept, and memory is bounded by
/// [`Assembler::MAX_PARTIAL`] definitions of at most [`MAX_DEFINITION_CHUNKS`] chunks.
#[derive(Debug, Default)]
pub struct Assembler {
    partial: Vec<Partial>,
    clock: u64,
}

impl Assembler {
    /// Definitions being assembled at once; a further one evicts the least recently updated.
    pub const MAX_PARTIAL: usize = 8;

    /// An empty assembler.
    pub fn new() -> Assembler {
        Assembler::default()
    }

    /// Definitions currently being assembled (at most [`Assembler::MAX_PARTIAL`]).
    pub fn in_progress(&self) -> usize {
        self.partial.len()
    }

    /// Takes one `DefinitionPush` (already validated by the verifier, checked again here).
    /// Returns the guest name and the whole XML when this chunk completes a definition whose
    /// digest matches. A chunk with a new digest for a guest replaces that guest's partial
    /// definition; a chunk that arrives again replaces its earlier copy.
    pub fn add(&mut self, msg: &Message) -> Result<Option<(GuestName, Vec<u8>)>, ChunkError> {
        let Message::DefinitionPush {
            name,
            index,
            total,
            digest,
            bytes,
        } = msg
        else {
            return Err(ChunkError::Inconsistent);
        };
        if !msg.is_valid() {
            return Err(ChunkError::Inconsistent);
        }
        self.clock = self.clock.wrapping_add(1);
        let found = self.partial.iter().position(|p| p.name == *name);
        let pos = match found.and_then(|i| self.partial.get(i).map(|p| (i, p))) {
            Some((i, p)) if p.digest == *digest => {
                if p.total != *total {
                    self.partial.swap_remove(i);
                    return Err(ChunkError::Inconsistent);
                }
                i
            }
            other => {
                if let Some((i, _)) = other {
                    self.partial.swap_remove(i);
                }
                if self.partial.len() >= Self::MAX_PARTIAL {
                    if let Some(oldest) = self
                        .partial
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, p)| p.age)
                        .map(|(i, _)| i)
                    {
                        let p = self.partial.swap_remove(oldest);
                        log::warn!(
                            "dropping incomplete definition of {} (too many in progress)",
                            p.name
                        );
                    }
                }
                self.partial.push(Partial {
                    name: name.clone(),
                    digest: *digest,
                    total: *total,
                    chunks: vec![None; usize::from(*total)],
                    age: 0,
                });
                self.partial.len().saturating_sub(1)
            }
        };
        let Some(p) = self.partial.get_mut(pos) else {
            return Err(ChunkError::Inconsistent);
        };
        p.age = self.clock;
        // `index < total == chunks.len()` by `is_valid` and the check above; `get_mut` keeps
        // it safe regardless.
        let Some(slot) = p.chunks.get_mut(usize::from(*index)) else {
            self.partial.swap_remove(pos);
            return Err(ChunkError::Inconsistent);
        };
        *slot = Some(bytes.clone());
        if !p.complete() {
            return Ok(None);
        }
        let p = self.partial.swap_remove(pos);
        let xml = p.join();
        if definition_digest(&xml) != p.digest {
            return Err(ChunkError::DigestMismatch);
        }
        Ok(Some((p.name, xml)))
    }
}

// Partials are allocated from `total`; keep that bounded.
const _: () = assert!(MAX_DEFINITION_CHUNKS <= 64);

#[cfg(test)]
mod test {
    use super::*;

    fn xml(len: usize) -> Vec<u8> {
        (0..len).map(|i| b'a' + (i % 26) as u8).collect()
    }

    #[test]
    fn test_split_and_reassemble_out_of_order() {
        for len in [
            1,
            DEFINITION_CHUNK,
            DEFINITION_CHUNK + 1,
            5000,
            64 * DEFINITION_CHUNK,
        ] {
            let x = xml(len);
            let mut msgs = split("vm1", &x).unwrap();
            assert_eq!(msgs.len(), len.div_ceil(DEFINITION_CHUNK));
            assert!(msgs.iter().all(Message::is_valid));
            msgs.reverse();
            let mut a = Assembler::new();
            let mut done = None;
            for (i, m) in msgs.iter().enumerate() {
                let r = a.add(m).unwrap();
                if i + 1 < msgs.len() {
                    assert!(r.is_none());
                } else {
                    done = r;
                }
            }
            let (name, got) = done.unwrap();
            assert_eq!(name.as_str(), "vm1");
            assert_eq!(got, x);
        }
    }

    #[test]
    fn test_split_limits() {
        assert_eq!(split("vm", b""), Err(ChunkError::BadSize));
        assert_eq!(
            split("vm", &xml(64 * DEFINITION_CHUNK + 1)),
            Err(ChunkError::BadSize)
        );
        assert_eq!(split("../vm", b"x"), Err(ChunkError::BadName));
    }

    #[test]
    fn test_new_version_replaces_partial_and_digest_checked() {
        let old = split("vm", &xml(3000)).unwrap();
        let mut new_xml = xml(3000);
        new_xml[0] = b'Z';
        let new = split("vm", &new_xml).unwrap();
        let mut a = Assembler::new();
        assert!(a.add(&old[0]).unwrap().is_none());
        assert!(a.add(&new[0]).unwrap().is_none());
        assert!(
            a.add(&old[1]).unwrap().is_none(),
            "old chunk restarts the old version"
        );
        assert!(a.add(&new[1]).unwrap().is_none());
        assert!(a.add(&new[2]).unwrap().is_none());
        // new[0] was dropped when old[1] replaced the partial: resend it.
        let (_, got) = a.add(&new[0]).unwrap().unwrap();
        assert_eq!(got, new_xml);
        // A forged digest is caught at completion.
        let mut forged = split("vm", &xml(10)).unwrap().remove(0);
        if let Message::DefinitionPush { digest, .. } = &mut forged {
            digest[0] ^= 1;
        }
        assert_eq!(a.add(&forged), Err(ChunkError::DigestMismatch));
        assert_eq!(a.add(&Message::HypervisorUp), Err(ChunkError::Inconsistent));
    }
}
