//! Whole IPMB messages out of raw input (IPMI v2.0 §7, `ipmb_dev_int` layout).
//!
//! Two paths:
//! - message-oriented devices (`/dev/ipmb-N`: one `read()` = one message):
//!   [`validate_message`] / [`read_message`] check exactly one buffer;
//! - byte streams (pty, socket, replay file): [`StreamFramer`] finds message
//!   boundaries from the len byte and resynchronises after garbage. A candidate
//!   that fails (impossible len byte, bad chk1, bad chk2) is counted by reason,
//!   one byte is skipped and the search restarts at the next byte, so no bad
//!   byte can wedge the stream and no valid message after garbage is lost.
//!
//! The framer holds at most [`MAX_IPMB_MESSAGE`] bytes in a fixed buffer.

use embedded_io::Read;

use super::ipmb::{checksum, field, Frame, FrameError, Message, Repr, MAX_BODY_LEN, MIN_BODY_LEN};
use crate::capacity::MAX_IPMB_MESSAGE;

/// Counters of one input path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FramerStats {
    /// Valid messages delivered.
    pub frames: u64,
    /// Rejected candidates, indexed by [`FrameError::index`].
    pub bad_by_reason: [u64; FrameError::ALL.len()],
    /// Bytes dropped while resynchronising (stream path only).
    pub bytes_skipped: u64,
    /// Times the stream lost sync: first rejection after a good message or the start.
    pub resyncs: u64,
}

impl FramerStats {
    /// All-zero counters.
    pub const fn new() -> Self {
        FramerStats {
            frames: 0,
            bad_by_reason: [0; FrameError::ALL.len()],
            bytes_skipped: 0,
            resyncs: 0,
        }
    }

    /// Rejections for one reason.
    pub fn bad(&self, reason: FrameError) -> u64 {
        self.bad_by_reason[reason.index()]
    }

    /// Rejections for all reasons.
    pub fn bad_frames(&self) -> u64 {
        self.bad_by_reason.iter().sum()
    }

    /// Counts one rejection.
    pub fn record_bad(&mut self, reason: FrameError) {
        self.bad_by_reason[reason.index()] += 1;
    }
}

/// Validates one `read()` buffer of a message-oriented device as exactly one
/// message (lengths, len byte, both checksums) and counts the outcome.
pub fn validate_message<'a>(
    buf: &'a [u8],
    stats: &mut FramerStats,
) -> Result<Repr<'a>, FrameError> {
    match Frame::new_checked(buf).and_then(|f| Repr::parse(&f)) {
        Ok(repr) => {
            stats.frames += 1;
            Ok(repr)
        }
        Err(e) => {
            stats.record_bad(e);
            Err(e)
        }
    }
}

/// What one read produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// A valid message.
    Message(Message),
    /// Input rejected for this reason (already counted).
    Rejected(FrameError),
    /// End of input.
    Eof,
}

/// Reads exactly one message with one `read()` from a message-oriented device
/// (`/dev/ipmb-N`) and validates it. A read larger than any message is
/// rejected as `TooLong`, not split.
pub fn read_message<R: Read>(
    reader: &mut R,
    stats: &mut FramerStats,
) -> Result<ReadOutcome, R::Error> {
    // One byte more than the largest message, so an oversize read is seen as such.
    let mut buf = [0u8; MAX_IPMB_MESSAGE + 1];
    let n = reader.read(&mut buf)?;
    if n == 0 {
        return Ok(ReadOutcome::Eof);
    }
    Ok(match validate_message(&buf[..n], stats) {
        Ok(_) => match Message::from_bytes(&buf[..n]) {
            Ok(m) => ReadOutcome::Message(m),
            Err(e) => ReadOutcome::Rejected(e),
        },
        Err(e) => ReadOutcome::Rejected(e),
    })
}

/// Result of one [`StreamFramer::feed`] step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed<'a> {
    /// All input was taken; no message is complete yet.
    Consumed,
    /// A valid message; `remaining` is the input not yet taken.
    Message {
        /// The message.
        message: Message,
        /// Input after the message's last byte.
        remaining: &'a [u8],
    },
    /// A candidate was rejected (counted) and one byte skipped; feed `remaining` next.
    Rejected {
        /// Why the candidate failed.
        reason: FrameError,
        /// Input not yet taken.
        remaining: &'a [u8],
    },
}

/// Finds messages in a byte stream, resynchronising after garbage.
#[derive(Debug, Clone)]
pub struct StreamFramer {
    buf: [u8; MAX_IPMB_MESSAGE],
    len: usize,
    in_sync: bool,
    stats: FramerStats,
}

impl Default for StreamFramer {
    fn default() -> Self {
        Self::new()
    }
}

/// What the bytes buffered so far amount to.
enum Scan {
    /// A valid prefix: more bytes needed (or nothing buffered).
    NeedMore,
    /// A complete valid message of this many bytes.
    Complete(usize),
    /// The candidate at byte 0 cannot be a message.
    Bad(FrameError),
}

impl StreamFramer {
    /// An empty framer.
    pub const fn new() -> Self {
        StreamFramer {
            buf: [0; MAX_IPMB_MESSAGE],
            len: 0,
            in_sync: true,
            stats: FramerStats::new(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &FramerStats {
        &self.stats
    }

    /// Bytes buffered toward the next message.
    pub fn buffered(&self) -> usize {
        self.len
    }

    fn scan(&self) -> Scan {
        let b = &self.buf[..self.len];
        let Some(&len_byte) = b.first() else {
            return Scan::NeedMore;
        };
        let body = usize::from(len_byte);
        if body < MIN_BODY_LEN {
            return Scan::Bad(FrameError::Truncated);
        }
        if body > MAX_BODY_LEN {
            return Scan::Bad(FrameError::TooLong);
        }
        // Check chk1 as soon as it is here: a false len byte is found before
        // waiting for up to 32 bytes.
        if b.len() > field::CHK1 && checksum(&b[field::RS_SA..field::CHK1]) != b[field::CHK1] {
            return Scan::Bad(FrameError::BadHeaderChecksum);
        }
        let total = body + 1;
        if b.len() < total {
            return Scan::NeedMore;
        }
        if checksum(&b[field::RQ_SA..body]) != b[body] {
            return Scan::Bad(FrameError::BadDataChecksum);
        }
        Scan::Complete(total)
    }

    /// Takes the complete candidate scan() accepted. Copying re-validates it;
    /// should that ever fail, the candidate is rejected like any other.
    fn take_message(&mut self, total: usize) -> Result<Message, FrameError> {
        match Message::from_bytes(&self.buf[..total]) {
            Ok(msg) => {
                self.buf.copy_within(total..self.len, 0);
                self.len -= total;
                self.stats.frames += 1;
                self.in_sync = true;
                Ok(msg)
            }
            Err(reason) => {
                self.reject(reason);
                Err(reason)
            }
        }
    }

    fn reject(&mut self, reason: FrameError) {
        self.stats.record_bad(reason);
        if self.in_sync {
            self.stats.resyncs += 1;
            self.in_sync = false;
        }
        self.stats.bytes_skipped += 1;
        self.buf.copy_within(1..self.len, 0);
        self.len -= 1;
    }

    /// Takes bytes from `input` until one message is complete, one candidate is
    /// rejected, or the input is used up.
    pub fn feed<'a>(&mut self, input: &'a [u8]) -> Feed<'a> {
        let mut taken = 0;
        loop {
            match self.scan() {
                Scan::Complete(total) => {
                    let remaining = &input[taken..];
                    return match self.take_message(total) {
                        Ok(message) => Feed::Message { message, remaining },
                        Err(reason) => Feed::Rejected { reason, remaining },
                    };
                }
                Scan::Bad(reason) => {
                    self.reject(reason);
                    return Feed::Rejected {
                        reason,
                        remaining: &input[taken..],
                    };
                }
                Scan::NeedMore => {
                    let Some(&byte) = input.get(taken) else {
                        return Feed::Consumed;
                    };
                    // NeedMore means len < total <= MAX_IPMB_MESSAGE: there is room.
                    if self.len < self.buf.len() {
                        self.buf[self.len] = byte;
                        self.len += 1;
                    }
                    taken += 1;
                }
            }
        }
    }

    /// All outcomes for `input`: valid messages and (already counted) rejections.
    pub fn push<'f, 'a>(&'f mut self, input: &'a [u8]) -> Pushed<'f, 'a> {
        Pushed {
            framer: self,
            input,
        }
    }

    /// Ends the stream: resolves buffered bytes as if no more will come.
    /// Call until it returns `None`. An incomplete candidate is counted as
    /// `Truncated` and skipped a byte at a time, so a message hidden behind a
    /// false len byte is still found.
    pub fn finish(&mut self) -> Option<Result<Message, FrameError>> {
        let reason = match self.scan() {
            Scan::Complete(total) => return Some(self.take_message(total)),
            Scan::NeedMore if self.len == 0 => return None,
            Scan::NeedMore => FrameError::Truncated,
            Scan::Bad(reason) => reason,
        };
        self.reject(reason);
        Some(Err(reason))
    }

    /// Reads from `reader` until a message is complete; `Eof` once the reader
    /// is exhausted and the buffered bytes are resolved ([`StreamFramer::finish`]).
    /// Reads one byte at a time, so nothing is read past the message returned.
    pub fn read_from<R: Read>(&mut self, reader: &mut R) -> Result<ReadOutcome, R::Error> {
        let mut byte = [0u8; 1];
        loop {
            let n = reader.read(&mut byte)?;
            if n == 0 {
                return Ok(match self.finish() {
                    Some(Ok(m)) => ReadOutcome::Message(m),
                    Some(Err(e)) => ReadOutcome::Rejected(e),
                    None => ReadOutcome::Eof,
                });
            }
            match self.feed(&byte) {
                Feed::Consumed => {}
                Feed::Message { message, .. } => return Ok(ReadOutcome::Message(message)),
                Feed::Rejected { reason, .. } => return Ok(ReadOutcome::Rejected(reason)),
            }
        }
    }
}

/// Iterator over the outcomes of one [`StreamFramer::push`].
#[derive(Debug)]
pub struct Pushed<'f, 'a> {
    framer: &'f mut StreamFramer,
    input: &'a [u8],
}

impl Iterator for Pushed<'_, '_> {
    type Item = Result<Message, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.framer.feed(self.input) {
            Feed::Consumed => {
                self.input = &[];
                None
            }
            Feed::Message { message, remaining } => {
                self.input = remaining;
                Some(Ok(message))
            }
            Feed::Rejected { reason, remaining } => {
                self.input = remaining;
                Some(Err(reason))
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    static EVENT_BYTES: [u8; 15] = [
        0x0E, 0x20, 0x10, 0xD0, 0x82, 0x14, 0x02, 0x04, 0xF0, 0x00, 0x6F, 0xA5, 0x24, 0x00, 0x3C,
    ];
    static GET_DEVICE_ID_BYTES: [u8; 8] = [0x07, 0x82, 0x18, 0x66, 0x20, 0x04, 0x01, 0xDB];
    static SET_FRU_ACT_RSP_BYTES: [u8; 10] =
        [0x09, 0x20, 0xB4, 0x2C, 0x82, 0x28, 0x0C, 0x00, 0x00, 0x4A];

    /// Pushes `chunks` in order, then finishes; returns the messages and the rejections.
    fn run(framer: &mut StreamFramer, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<FrameError>) {
        let mut msgs = Vec::new();
        let mut bad = Vec::new();
        let mut sink = |r: Result<Message, FrameError>| match r {
            Ok(m) => msgs.push(m.as_bytes().to_vec()),
            Err(e) => bad.push(e),
        };
        for chunk in chunks {
            for r in framer.push(chunk) {
                sink(r);
            }
        }
        while let Some(r) = framer.finish() {
            sink(r);
        }
        (msgs, bad)
    }

    #[test]
    fn test_clean_stream() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&EVENT_BYTES);
        stream.extend_from_slice(&GET_DEVICE_ID_BYTES);
        stream.extend_from_slice(&SET_FRU_ACT_RSP_BYTES);
        let mut f = StreamFramer::new();
        let (msgs, bad) = run(&mut f, &[&stream]);
        assert_eq!(
            msgs,
            vec![
                EVENT_BYTES.to_vec(),
                GET_DEVICE_ID_BYTES.to_vec(),
                SET_FRU_ACT_RSP_BYTES.to_vec()
            ]
        );
        assert!(bad.is_empty());
        assert_eq!(f.stats().frames, 3);
        assert_eq!(f.stats().bytes_skipped, 0);
        assert_eq!(f.stats().resyncs, 0);
    }

    #[test]
    fn test_garbage_before_between_after() {
        // Garbage that looks like len bytes (0x0E, 0x20, 0x09 are plausible lengths).
        let garbage1 = [0xFF, 0x00, 0x0E, 0x20, 0x11, 0x07];
        let garbage2 = [0x09, 0x55];
        let garbage3 = [0x20, 0x01, 0x02];
        let mut stream = Vec::new();
        stream.extend_from_slice(&garbage1);
        stream.extend_from_slice(&EVENT_BYTES);
        stream.extend_from_slice(&garbage2);
        stream.extend_from_slice(&GET_DEVICE_ID_BYTES);
        stream.extend_from_slice(&garbage3);
        let mut f = StreamFramer::new();
        let (msgs, bad) = run(&mut f, &[&stream]);
        assert_eq!(
            msgs,
            vec![EVENT_BYTES.to_vec(), GET_DEVICE_ID_BYTES.to_vec()]
        );
        let skipped = (garbage1.len() + garbage2.len() + garbage3.len()) as u64;
        assert_eq!(f.stats().bytes_skipped, skipped);
        assert_eq!(bad.len() as u64, skipped);
        assert_eq!(f.stats().bad_frames(), skipped);
        assert_eq!(f.stats().frames, 2);
        assert_eq!(f.stats().resyncs, 3);
        // 0xFF and 0x55 claim more than 32 bytes; 0x00, 0x01, 0x02 fewer than 7.
        assert!(f.stats().bad(FrameError::TooLong) >= 2);
        assert!(f.stats().bad(FrameError::Truncated) >= 2);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn test_split_across_pushes() {
        let mut f = StreamFramer::new();
        let mut all = Vec::new();
        for cut in 1..EVENT_BYTES.len() {
            let (msgs, bad) = run(&mut f, &[&EVENT_BYTES[..cut], &EVENT_BYTES[cut..]]);
            assert!(bad.is_empty(), "cut at {cut}");
            all.extend(msgs);
        }
        assert_eq!(all.len(), EVENT_BYTES.len() - 1);
        assert!(all.iter().all(|m| m == &EVENT_BYTES));
        // Byte by byte.
        let chunks: Vec<&[u8]> = EVENT_BYTES.chunks(1).collect();
        let (msgs, _) = run(&mut f, &chunks);
        assert_eq!(msgs, vec![EVENT_BYTES.to_vec()]);
    }

    #[test]
    fn test_feed_reports_remaining() {
        let mut stream = EVENT_BYTES.to_vec();
        stream.extend_from_slice(&GET_DEVICE_ID_BYTES[..3]);
        let mut f = StreamFramer::new();
        match f.feed(&stream) {
            Feed::Message { message, remaining } => {
                assert_eq!(message.as_bytes(), &EVENT_BYTES);
                assert_eq!(remaining, &GET_DEVICE_ID_BYTES[..3]);
                assert_eq!(f.feed(remaining), Feed::Consumed);
                assert_eq!(f.buffered(), 3);
            }
            other => panic!("expected a message, got {other:?}"),
        }
        match f.feed(&GET_DEVICE_ID_BYTES[3..]) {
            Feed::Message { message, remaining } => {
                assert_eq!(message.as_bytes(), &GET_DEVICE_ID_BYTES);
                assert!(remaining.is_empty());
            }
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn test_truncated_at_end_of_stream() {
        let mut f = StreamFramer::new();
        let (msgs, bad) = run(&mut f, &[&GET_DEVICE_ID_BYTES, &EVENT_BYTES[..10]]);
        assert_eq!(msgs, vec![GET_DEVICE_ID_BYTES.to_vec()]);
        assert!(!bad.is_empty());
        assert!(f.stats().bad(FrameError::Truncated) >= 1);
        assert_eq!(f.stats().bytes_skipped, 10);
        assert_eq!(f.buffered(), 0);
        assert_eq!(f.finish(), None);
    }

    #[test]
    fn test_corrupt_frame_does_not_hide_next() {
        // A frame whose chk2 is wrong, directly followed by a good one.
        let mut corrupt = EVENT_BYTES;
        corrupt[14] ^= 0x40;
        let mut stream = corrupt.to_vec();
        stream.extend_from_slice(&SET_FRU_ACT_RSP_BYTES);
        let mut f = StreamFramer::new();
        let (msgs, _) = run(&mut f, &[&stream]);
        assert_eq!(msgs, vec![SET_FRU_ACT_RSP_BYTES.to_vec()]);
        assert_eq!(f.stats().bad(FrameError::BadDataChecksum), 1);
        assert_eq!(f.stats().resyncs, 1);
        assert_eq!(f.stats().bytes_skipped, corrupt.len() as u64);
    }

    #[test]
    fn test_false_len_byte_before_last_frame() {
        // 0x20 claims 32 bytes; with a matching chk1 by chance it would wait:
        // finish() must still find the message behind it.
        let mut stream = vec![0x20, 0x00, 0x00, 0x00];
        stream.extend_from_slice(&GET_DEVICE_ID_BYTES);
        let mut f = StreamFramer::new();
        let (msgs, _) = run(&mut f, &[&stream]);
        assert_eq!(msgs, vec![GET_DEVICE_ID_BYTES.to_vec()]);
        assert_eq!(f.stats().bytes_skipped, 4);
    }

    #[test]
    fn test_validate_message() {
        let mut stats = FramerStats::new();
        assert!(validate_message(&EVENT_BYTES, &mut stats).is_ok());
        assert_eq!(
            validate_message(&EVENT_BYTES[..5], &mut stats),
            Err(FrameError::Truncated)
        );
        // Two messages in one read: the len byte does not cover the second.
        let mut two = EVENT_BYTES.to_vec();
        two.extend_from_slice(&GET_DEVICE_ID_BYTES);
        assert_eq!(
            validate_message(&two, &mut stats),
            Err(FrameError::LengthMismatch)
        );
        two.extend_from_slice(&EVENT_BYTES);
        assert_eq!(validate_message(&two, &mut stats), Err(FrameError::TooLong));
        let mut bad = GET_DEVICE_ID_BYTES;
        bad[3] = 0;
        assert_eq!(
            validate_message(&bad, &mut stats),
            Err(FrameError::BadHeaderChecksum)
        );
        assert_eq!(stats.frames, 1);
        assert_eq!(stats.bad_frames(), 4);
        assert_eq!(stats.bad(FrameError::TooLong), 1);
        assert_eq!(stats.bad(FrameError::LengthMismatch), 1);
        assert_eq!(stats.bytes_skipped, 0);
    }

    /// A message-oriented reader: each read returns one queued buffer.
    struct Device<'a> {
        reads: &'a [&'a [u8]],
    }

    impl embedded_io::ErrorType for Device<'_> {
        type Error = core::convert::Infallible;
    }

    impl Read for Device<'_> {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let Some((first, rest)) = self.reads.split_first() else {
                return Ok(0);
            };
            self.reads = rest;
            let n = first.len().min(buf.len());
            buf[..n].copy_from_slice(&first[..n]);
            Ok(n)
        }
    }

    #[test]
    fn test_read_message() {
        let mut long = [0u8; 40];
        long[..EVENT_BYTES.len()].copy_from_slice(&EVENT_BYTES);
        let reads: [&[u8]; 3] = [&EVENT_BYTES, &long, &GET_DEVICE_ID_BYTES[..6]];
        let mut dev = Device { reads: &reads };
        let mut stats = FramerStats::new();
        match read_message(&mut dev, &mut stats).unwrap() {
            ReadOutcome::Message(m) => assert_eq!(m.as_bytes(), &EVENT_BYTES),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            read_message(&mut dev, &mut stats).unwrap(),
            ReadOutcome::Rejected(FrameError::TooLong)
        );
        assert_eq!(
            read_message(&mut dev, &mut stats).unwrap(),
            ReadOutcome::Rejected(FrameError::Truncated)
        );
        assert_eq!(
            read_message(&mut dev, &mut stats).unwrap(),
            ReadOutcome::Eof
        );
        assert_eq!(stats.frames, 1);
        assert_eq!(stats.bad_frames(), 2);
    }

    #[test]
    fn test_read_from_stream() {
        let mut stream = vec![0x00, 0xEE];
        stream.extend_from_slice(&EVENT_BYTES);
        stream.extend_from_slice(&SET_FRU_ACT_RSP_BYTES[..4]);
        let mut reader: &[u8] = &stream;
        let mut f = StreamFramer::new();
        let mut outcomes = Vec::new();
        loop {
            let o = f.read_from(&mut reader).unwrap();
            if o == ReadOutcome::Eof {
                break;
            }
            outcomes.push(o);
        }
        let msgs: Vec<_> = outcomes
            .iter()
            .filter_map(|o| match o {
                ReadOutcome::Message(m) => Some(m.as_bytes().to_vec()),
                _ => None,
            })
            .collect();
        assert_eq!(msgs, vec![EVENT_BYTES.to_vec()]);
        assert_eq!(f.stats().bytes_skipped, 2 + 4);
        assert_eq!(outcomes.len(), 1 + 6);
    }

    #[test]
    fn test_every_length_every_chunking() {
        // Frames with 0..=25 data bytes back to back (7 to 32 bytes after len),
        // pushed in chunks of every size: all come out, in order, nothing skipped.
        let data = [0xA5u8; crate::wire::ipmb::MAX_DATA_LEN];
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for len in 0..=data.len() {
            let repr = Repr {
                rs_sa: 0x20,
                net_fn: 0x04,
                rs_lun: 0,
                rq_sa: 0x82,
                rq_seq: len as u8,
                rq_lun: 1,
                cmd: 0x02,
                data: &data[..len],
            };
            let msg = Message::from_repr(&repr).unwrap();
            stream.extend_from_slice(msg.as_bytes());
            expected.push(msg.as_bytes().to_vec());
        }
        assert_eq!(expected.last().unwrap().len(), MAX_IPMB_MESSAGE);
        for chunk in 1..=40 {
            let mut f = StreamFramer::new();
            let chunks: Vec<&[u8]> = stream.chunks(chunk).collect();
            let (msgs, bad) = run(&mut f, &chunks);
            assert_eq!(msgs, expected, "chunk {chunk}");
            assert!(bad.is_empty(), "chunk {chunk}: {bad:?}");
            assert_eq!(f.stats().bytes_skipped, 0);
        }
    }

    #[test]
    fn test_random_noise_never_wedges() {
        // Deterministic pseudo-random noise with valid frames spliced in: every
        // valid frame must come out, whatever precedes it.
        let mut x: u32 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        };
        let mut f = StreamFramer::new();
        let mut found = 0;
        for round in 0..200 {
            let mut chunk = Vec::new();
            for _ in 0..(round % 40) {
                chunk.push(next());
            }
            chunk.extend_from_slice(&EVENT_BYTES);
            for m in f.push(&chunk).flatten() {
                if m.as_bytes() == EVENT_BYTES {
                    found += 1;
                }
            }
            assert!(f.buffered() <= MAX_IPMB_MESSAGE);
        }
        while let Some(r) = f.finish() {
            if let Ok(m) = r {
                if m.as_bytes() == EVENT_BYTES {
                    found += 1;
                }
            }
        }
        // Only noise that passes both checksums by chance (about 1 in 65536
        // candidates) could swallow the start of a real frame.
        assert_eq!(found, 200);
    }
}
