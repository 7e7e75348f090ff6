//! Frame layout and sealing (encode + authenticate). Layout table in the crate header.
//!
//! [`peek`] reads a header from untrusted bytes: it checks the length first, after which no
//! access can panic. Receiving with authentication is [`crate::Verifier::open`].

use postcard::experimental::max_size::MaxSize;

use crate::auth::Key;
use crate::message::{Message, NodeId};

/// Protocol version carried in byte 0 of every frame.
pub const PROTOCOL_VERSION: u8 = 2;

/// Byte offsets of the header fields.
pub mod field {
    use core::ops::Range;
    /// Protocol version, u8.
    pub const VERSION: usize = 0;
    /// Sender NodeId, u8.
    pub const SENDER: usize = 1;
    /// Destination NodeId, u8.
    pub const DEST: usize = 2;
    /// Sequence number, u64 little-endian.
    pub const SEQ: Range<usize> = 3..11;
    /// Start of the postcard body; its first byte is the message kind.
    pub const BODY: usize = 11;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::BODY;
/// Length of the HMAC-SHA256 tag at the end of the frame.
pub const TAG_LEN: usize = 32;
/// Largest postcard encoding of any [`Message`] (postcard `MaxSize`).
pub const MAX_BODY: usize = Message::POSTCARD_MAX_SIZE;
/// Largest frame: header + largest body + tag. Receive buffers are sized from it.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_BODY + TAG_LEN;
/// Smallest frame: header + a one-byte body (a unit variant) + tag.
pub const MIN_FRAME: usize = HEADER_LEN + 1 + TAG_LEN;
/// A UDP payload that crosses any Ethernet or IPv6 path without fragmentation.
pub const SAFE_UDP_PAYLOAD: usize = 1200;

const _: () = assert!(MAX_FRAME <= SAFE_UDP_PAYLOAD);

/// The header fields a sender chooses (the version is always [`PROTOCOL_VERSION`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Who sends.
    pub sender: NodeId,
    /// Who may accept it.
    pub dest: NodeId,
    /// Strictly increasing per sender, never 0.
    pub seq: u64,
}

/// Why [`seal`] could not build a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// The output buffer is shorter than the frame (use a `[u8; MAX_FRAME]`).
    BufferTooSmall,
    /// The message fails [`Message::is_valid`].
    Invalid,
    /// Sequence number 0 is never accepted by a receiver.
    ZeroSequence,
}

impl core::fmt::Display for SealError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SealError::BufferTooSmall => "output buffer too small",
            SealError::Invalid => "message has invalid fields",
            SealError::ZeroSequence => "sequence number 0",
        })
    }
}

impl core::error::Error for SealError {}

/// Encodes `msg` with `header` into `out` and appends the tag; returns the frame length.
pub fn seal(key: &Key, header: &Header, msg: &Message, out: &mut [u8]) -> Result<usize, SealError> {
    if header.seq == 0 {
        return Err(SealError::ZeroSequence);
    }
    if !msg.is_valid() {
        return Err(SealError::Invalid);
    }
    if out.len() < MIN_FRAME {
        return Err(SealError::BufferTooSmall);
    }
    let (head, rest) = out
        .split_first_chunk_mut::<HEADER_LEN>()
        .ok_or(SealError::BufferTooSmall)?;
    let [version, sender, dest, seq @ ..] = head;
    debug_assert_eq!(
        (field::VERSION, field::SENDER, field::DEST, field::SEQ),
        (0, 1, 2, 3..HEADER_LEN)
    );
    *version = PROTOCOL_VERSION;
    *sender = header.sender.0;
    *dest = header.dest.0;
    *seq = header.seq.to_le_bytes();
    let body_room = rest.len().saturating_sub(TAG_LEN);
    let body = rest.get_mut(..body_room).ok_or(SealError::BufferTooSmall)?;
    // Every field is bounded (heapless), so the only possible error is a short buffer.
    let body_len = postcard::to_slice(msg, body)
        .map_err(|_| SealError::BufferTooSmall)?
        .len();
    let signed = HEADER_LEN.saturating_add(body_len);
    let (signed_part, tail) = out
        .split_at_mut_checked(signed)
        .ok_or(SealError::BufferTooSmall)?;
    let tag = key.tag(signed_part);
    tail.get_mut(..TAG_LEN)
        .ok_or(SealError::BufferTooSmall)?
        .copy_from_slice(&tag);
    Ok(signed.saturating_add(TAG_LEN))
}

/// Unauthenticated look at a frame: `(version, header, kind byte)`; `None` if shorter than
/// [`MIN_FRAME`]. Trust the result only after the tag has been checked.
pub fn peek(datagram: &[u8]) -> Option<(u8, Header, u8)> {
    if datagram.len() < MIN_FRAME {
        return None;
    }
    let (head, rest) = datagram.split_first_chunk::<HEADER_LEN>()?;
    let &[version, sender, dest, ref seq @ ..] = head;
    let kind = *rest.first()?;
    Some((
        version,
        Header {
            sender: NodeId(sender),
            dest: NodeId(dest),
            seq: u64::from_le_bytes(*seq),
        },
        kind,
    ))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_seal_layout() {
        let key = Key::new([7; 32]);
        let h = Header {
            sender: NodeId(3),
            dest: NodeId::SHMC,
            seq: 0x0102_0304_0506_0708,
        };
        let mut buf = [0u8; MAX_FRAME];
        let n = seal(&key, &h, &Message::HypervisorUp, &mut buf).unwrap();
        assert_eq!(n, MIN_FRAME);
        assert_eq!(&buf[..12], &[2, 3, 0, 8, 7, 6, 5, 4, 3, 2, 1, 5]);
        assert_eq!(&buf[12..n], &key.tag(&buf[..12]));
        assert_eq!(peek(&buf[..n]), Some((2, h, 5)));
        assert_eq!(peek(&buf[..MIN_FRAME - 1]), None);
    }

    #[test]
    fn test_seal_errors() {
        let key = Key::new([7; 32]);
        let mut h = Header {
            sender: NodeId(3),
            dest: NodeId::SHMC,
            seq: 0,
        };
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(
            seal(&key, &h, &Message::HypervisorUp, &mut buf),
            Err(SealError::ZeroSequence)
        );
        h.seq = 1;
        assert_eq!(
            seal(&key, &h, &Message::HypervisorUp, &mut buf[..MIN_FRAME - 1]),
            Err(SealError::BufferTooSmall)
        );
        let crashed = Message::GuestCrashed {
            name: crate::message::guest_name("vm").unwrap(),
        };
        assert_eq!(
            seal(&key, &h, &crashed, &mut buf[..MIN_FRAME]),
            Err(SealError::BufferTooSmall)
        );
        let bad = Message::GuestCrashed {
            name: heapless::String::try_from("../x").unwrap(),
        };
        assert_eq!(seal(&key, &h, &bad, &mut buf), Err(SealError::Invalid));
    }
}
