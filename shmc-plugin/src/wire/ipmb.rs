//! One IPMB message as Linux `ipmb_dev_int` reads and writes it (IPMI v2.0 §7,
//! Linux `drivers/char/ipmi/ipmb_dev_int.c`, `Documentation/driver-api/ipmb.rst`).
//!
//! ```text
//! byte  0      1      2              3     4      5              6    7..n-2  n-1
//!       [len] [rsSA] [netFn<<2|rsLUN] [chk1] [rqSA] [rqSeq<<2|rqLUN] [cmd] [data..] [chk2]
//! ```
//!
//! `len` counts the bytes after itself. `chk1` makes rsSA + netFn/rsLUN + chk1 sum
//! to 0 mod 256; `chk2` does the same for rqSA through the last data byte
//! (IPMI v2.0 §7.2, two's complement checksums).
//!
//! Byte 1 is always the destination and byte 4 the source, whatever the
//! direction: in a response, byte 1 holds the requester's address (IPMI v2.0
//! §7.3). The field names follow the byte positions of a request.
//!
//! [`Frame`] is a view over a byte buffer. [`Frame::new_unchecked`] never fails
//! and is meant for emitting; [`Frame::new_checked`] is for untrusted input:
//! once it (or [`Frame::check_len`]) has succeeded, no accessor can panic.
//! Checksums are checked separately ([`Frame::verify_header_checksum`],
//! [`Frame::verify_data_checksum`]). [`Repr`] is the validated, zero-copy
//! high-level form; [`Repr::parse`] and [`Repr::emit`] are exact inverses.

use core::fmt;

use crate::capacity::MAX_IPMB_MESSAGE;

/// Byte offsets of the fields (the len byte is byte 0).
pub mod field {
    /// Bytes that follow this one.
    pub const LEN: usize = 0;
    /// Responder (destination) slave address.
    pub const RS_SA: usize = 1;
    /// netFn (bits 7:2) and responder LUN (bits 1:0).
    pub const NETFN_RSLUN: usize = 2;
    /// Header checksum over bytes 1..=2.
    pub const CHK1: usize = 3;
    /// Requester (source) slave address.
    pub const RQ_SA: usize = 4;
    /// rqSeq (bits 7:2) and requester LUN (bits 1:0).
    pub const RQSEQ_RQLUN: usize = 5;
    /// Command code.
    pub const CMD: usize = 6;
    /// First data byte; the data checksum follows the last data byte.
    pub const DATA: usize = 7;
}

/// Fewest bytes after the len byte: rsSA through cmd plus chk2, no data.
pub const MIN_BODY_LEN: usize = 7;
/// Most bytes after the len byte (IPMB messages are at most 32 bytes).
pub const MAX_BODY_LEN: usize = MAX_IPMB_MESSAGE - 1;
/// Most data bytes one message can carry.
pub const MAX_DATA_LEN: usize = MAX_BODY_LEN - MIN_BODY_LEN;

/// Why bytes are not a valid IPMB message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer than 7 bytes after the len byte (or the output buffer is too small).
    Truncated,
    /// More than 32 bytes after the len byte (or more than 25 data bytes to emit).
    TooLong,
    /// The len byte does not match the bytes present.
    LengthMismatch,
    /// chk1 does not cover rsSA and netFn/rsLUN.
    BadHeaderChecksum,
    /// chk2 does not cover rqSA through the data.
    BadDataChecksum,
}

impl FrameError {
    /// Every reason, in a fixed order (used for per-reason counters).
    pub const ALL: [FrameError; 5] = [
        Self::Truncated,
        Self::TooLong,
        Self::LengthMismatch,
        Self::BadHeaderChecksum,
        Self::BadDataChecksum,
    ];

    /// Position of this reason in [`FrameError::ALL`].
    pub const fn index(self) -> usize {
        match self {
            Self::Truncated => 0,
            Self::TooLong => 1,
            Self::LengthMismatch => 2,
            Self::BadHeaderChecksum => 3,
            Self::BadDataChecksum => 4,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "IPMB message truncated (fewer than 7 bytes after len)",
            Self::TooLong => "IPMB message longer than 32 bytes after len",
            Self::LengthMismatch => "IPMB len byte does not match the bytes present",
            Self::BadHeaderChecksum => "IPMB header checksum (chk1) mismatch",
            Self::BadDataChecksum => "IPMB data checksum (chk2) mismatch",
        })
    }
}

impl core::error::Error for FrameError {}

/// Two's complement checksum: the byte that makes `bytes` sum to 0 mod 256.
pub fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b)))
}

/// A view over one `ipmb_dev_int` message, len byte first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checks; accessors may panic until [`Frame::check_len`] succeeds.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps untrusted bytes: the buffer must be exactly one message whose len
    /// byte matches; afterwards no accessor can panic.
    pub fn new_checked(buffer: T) -> Result<Frame<T>, FrameError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the buffer holds 7..=32 bytes after the len byte and that the
    /// len byte says so.
    pub fn check_len(&self) -> Result<(), FrameError> {
        let buf = self.buffer.as_ref();
        let body = buf.len().saturating_sub(1);
        if buf.is_empty() || body < MIN_BODY_LEN {
            Err(FrameError::Truncated)
        } else if body > MAX_BODY_LEN {
            Err(FrameError::TooLong)
        } else if usize::from(buf[field::LEN]) != body {
            Err(FrameError::LengthMismatch)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The message bytes, len byte first (`length_field() + 1` bytes).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.total_len()]
    }

    /// The len byte: bytes after itself.
    pub fn length_field(&self) -> u8 {
        self.buffer.as_ref()[field::LEN]
    }

    /// Whole message length, len byte included.
    pub fn total_len(&self) -> usize {
        usize::from(self.length_field()) + 1
    }

    /// Destination slave address (8-bit form).
    pub fn rs_sa(&self) -> u8 {
        self.buffer.as_ref()[field::RS_SA]
    }

    /// Network function (6 bits; odd = response).
    pub fn net_fn(&self) -> u8 {
        self.buffer.as_ref()[field::NETFN_RSLUN] >> 2
    }

    /// Destination LUN.
    pub fn rs_lun(&self) -> u8 {
        self.buffer.as_ref()[field::NETFN_RSLUN] & 0x03
    }

    /// Header checksum as received.
    pub fn header_checksum(&self) -> u8 {
        self.buffer.as_ref()[field::CHK1]
    }

    /// Source slave address (8-bit form).
    pub fn rq_sa(&self) -> u8 {
        self.buffer.as_ref()[field::RQ_SA]
    }

    /// Request sequence number (6 bits).
    pub fn rq_seq(&self) -> u8 {
        self.buffer.as_ref()[field::RQSEQ_RQLUN] >> 2
    }

    /// Source LUN.
    pub fn rq_lun(&self) -> u8 {
        self.buffer.as_ref()[field::RQSEQ_RQLUN] & 0x03
    }

    /// Command code.
    pub fn cmd(&self) -> u8 {
        self.buffer.as_ref()[field::CMD]
    }

    /// Data bytes (for a response the first one is the completion code).
    pub fn data(&self) -> &[u8] {
        let end = usize::from(self.length_field());
        &self.buffer.as_ref()[field::DATA..end]
    }

    /// Data checksum as received.
    pub fn data_checksum(&self) -> u8 {
        self.buffer.as_ref()[usize::from(self.length_field())]
    }

    /// True when chk1 is right.
    pub fn verify_header_checksum(&self) -> bool {
        let buf = self.buffer.as_ref();
        checksum(&buf[field::RS_SA..field::CHK1]) == buf[field::CHK1]
    }

    /// True when chk2 is right.
    pub fn verify_data_checksum(&self) -> bool {
        let end = usize::from(self.length_field());
        let buf = self.buffer.as_ref();
        checksum(&buf[field::RQ_SA..end]) == buf[end]
    }

    /// [`Frame::check_len`] then both checksums: the whole validation of one message.
    pub fn check(&self) -> Result<(), FrameError> {
        self.check_len()?;
        if !self.verify_header_checksum() {
            return Err(FrameError::BadHeaderChecksum);
        }
        if !self.verify_data_checksum() {
            return Err(FrameError::BadDataChecksum);
        }
        Ok(())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the len byte.
    pub fn set_length_field(&mut self, value: u8) {
        self.buffer.as_mut()[field::LEN] = value;
    }

    /// Sets the destination address.
    pub fn set_rs_sa(&mut self, value: u8) {
        self.buffer.as_mut()[field::RS_SA] = value;
    }

    /// Sets the network function (masked to 6 bits).
    pub fn set_net_fn(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::NETFN_RSLUN];
        *b = (*b & 0x03) | ((value & 0x3F) << 2);
    }

    /// Sets the destination LUN (masked to 2 bits).
    pub fn set_rs_lun(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::NETFN_RSLUN];
        *b = (*b & 0xFC) | (value & 0x03);
    }

    /// Sets the source address.
    pub fn set_rq_sa(&mut self, value: u8) {
        self.buffer.as_mut()[field::RQ_SA] = value;
    }

    /// Sets the sequence number (masked to 6 bits).
    pub fn set_rq_seq(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::RQSEQ_RQLUN];
        *b = (*b & 0x03) | ((value & 0x3F) << 2);
    }

    /// Sets the source LUN (masked to 2 bits).
    pub fn set_rq_lun(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::RQSEQ_RQLUN];
        *b = (*b & 0xFC) | (value & 0x03);
    }

    /// Sets the command code.
    pub fn set_cmd(&mut self, value: u8) {
        self.buffer.as_mut()[field::CMD] = value;
    }

    /// The data bytes, as the len byte delimits them.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.length_field());
        &mut self.buffer.as_mut()[field::DATA..end]
    }

    /// Computes and stores both checksums.
    pub fn fill_checksums(&mut self) {
        let end = usize::from(self.length_field());
        let buf = self.buffer.as_mut();
        buf[field::CHK1] = checksum(&buf[field::RS_SA..field::CHK1]);
        buf[end] = checksum(&buf[field::RQ_SA..end]);
    }
}

/// A validated IPMB message, borrowing its data bytes.
///
/// Field names follow request byte positions: `rs_sa` is the destination,
/// `rq_sa` the source (see the module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    /// Destination slave address (byte 1).
    pub rs_sa: u8,
    /// Network function, 6 bits.
    pub net_fn: u8,
    /// Destination LUN, 2 bits.
    pub rs_lun: u8,
    /// Source slave address (byte 4).
    pub rq_sa: u8,
    /// Sequence number, 6 bits.
    pub rq_seq: u8,
    /// Source LUN, 2 bits.
    pub rq_lun: u8,
    /// Command code.
    pub cmd: u8,
    /// Data bytes (at most [`MAX_DATA_LEN`]); a response's first byte is the completion code.
    pub data: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Validates lengths and both checksums and returns the message.
    pub fn parse(frame: &Frame<&'a [u8]>) -> Result<Repr<'a>, FrameError> {
        frame.check()?;
        Ok(Self::from_checked(frame.buffer))
    }

    /// Builds the Repr of bytes already validated by [`Frame::check`].
    pub(crate) fn from_checked(buf: &'a [u8]) -> Repr<'a> {
        let end = usize::from(buf[field::LEN]);
        Repr {
            rs_sa: buf[field::RS_SA],
            net_fn: buf[field::NETFN_RSLUN] >> 2,
            rs_lun: buf[field::NETFN_RSLUN] & 0x03,
            rq_sa: buf[field::RQ_SA],
            rq_seq: buf[field::RQSEQ_RQLUN] >> 2,
            rq_lun: buf[field::RQSEQ_RQLUN] & 0x03,
            cmd: buf[field::CMD],
            data: &buf[field::DATA..end],
        }
    }

    /// Bytes [`Repr::emit`] writes, len byte included.
    pub fn buffer_len(&self) -> usize {
        1 + MIN_BODY_LEN + self.data.len()
    }

    /// Writes the message, len byte first, with both checksums, at the start of
    /// `buf`; returns the bytes written ([`Repr::buffer_len`]).
    ///
    /// Fields are masked to their wire width (netFn and rqSeq 6 bits, LUNs 2
    /// bits); [`Repr::parse`] only yields values within them, so parse then emit
    /// reproduces the input exactly. Errors: more than [`MAX_DATA_LEN`] data
    /// bytes gives `TooLong`, a `buf` shorter than `buffer_len()` gives `Truncated`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, FrameError> {
        if self.data.len() > MAX_DATA_LEN {
            return Err(FrameError::TooLong);
        }
        let n = self.buffer_len();
        let out = buf.get_mut(..n).ok_or(FrameError::Truncated)?;
        // n - 1 <= MAX_BODY_LEN = 32, fits a byte.
        out[field::LEN] = (n - 1) as u8;
        let mut frame = Frame::new_unchecked(out);
        frame.set_rs_sa(self.rs_sa);
        frame.set_net_fn(self.net_fn);
        frame.set_rs_lun(self.rs_lun);
        frame.set_rq_sa(self.rq_sa);
        frame.set_rq_seq(self.rq_seq);
        frame.set_rq_lun(self.rq_lun);
        frame.set_cmd(self.cmd);
        frame.data_mut().copy_from_slice(self.data);
        frame.fill_checksums();
        Ok(n)
    }

    /// True for a response (odd netFn).
    pub fn is_response(&self) -> bool {
        self.net_fn & 1 == 1
    }

    /// The response to `request` carrying `data` (first byte: completion code):
    /// netFn + 1, addresses and LUNs swapped, same rqSeq and command.
    pub fn response_to(request: &Repr<'_>, data: &'a [u8]) -> Repr<'a> {
        Repr {
            rs_sa: request.rq_sa,
            net_fn: request.net_fn | 1,
            rs_lun: request.rq_lun,
            rq_sa: request.rs_sa,
            rq_seq: request.rq_seq,
            rq_lun: request.rs_lun,
            cmd: request.cmd,
            data,
        }
    }

    /// True when `self` is the response to `request` (see [`Repr::response_to`]):
    /// netFn, command, rqSeq and both addresses match; LUNs are not compared.
    pub fn answers(&self, request: &Repr<'_>) -> bool {
        self.is_response()
            && !request.is_response()
            && self.net_fn == request.net_fn | 1
            && self.cmd == request.cmd
            && self.rq_seq == request.rq_seq
            && self.rs_sa == request.rq_sa
            && self.rq_sa == request.rs_sa
    }

    /// Completion code of a response (first data byte); `None` for requests or empty data.
    pub fn completion_code(&self) -> Option<u8> {
        if self.is_response() {
            self.data.first().copied()
        } else {
            None
        }
    }
}

/// One validated message, copied out of its source (fixed size, no allocation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Message {
    bytes: [u8; MAX_IPMB_MESSAGE],
    len: u8,
}

impl Message {
    /// Validates `bytes` as exactly one message (lengths and both checksums) and copies it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Message, FrameError> {
        Frame::new_unchecked(bytes).check()?;
        let mut out = [0u8; MAX_IPMB_MESSAGE];
        out[..bytes.len()].copy_from_slice(bytes);
        Ok(Message {
            bytes: out,
            // check() bounds the length by MAX_IPMB_MESSAGE.
            len: bytes.len() as u8,
        })
    }

    /// Emits `repr` into a new message.
    pub fn from_repr(repr: &Repr<'_>) -> Result<Message, FrameError> {
        let mut bytes = [0u8; MAX_IPMB_MESSAGE];
        let n = repr.emit(&mut bytes)?;
        Ok(Message {
            bytes,
            len: n as u8,
        })
    }

    /// The message bytes, len byte first.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// A view of the message; it is valid, so no accessor can panic.
    pub fn frame(&self) -> Frame<&[u8]> {
        Frame::new_unchecked(self.as_bytes())
    }

    /// The parsed message (infallible: validated on construction).
    pub fn repr(&self) -> Repr<'_> {
        Repr::from_checked(self.as_bytes())
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Message(")?;
        for (i, b) in self.as_bytes().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod test {
    use super::*;

    // Golden vectors, checksums worked out by hand from IPMI v2.0 §7.2.

    // Platform Event (netFn 0x04, cmd 0x02) from IPMC 0x82 to the ShMC 0x20, rqSeq 5:
    // PICMG hot swap M4 -> M5, cause 2 (operator handle), FRU 0.
    static EVENT_BYTES: [u8; 15] = [
        0x0E, 0x20, 0x10, 0xD0, 0x82, 0x14, 0x02, 0x04, 0xF0, 0x00, 0x6F, 0xA5, 0x24, 0x00, 0x3C,
    ];
    static EVENT_DATA: [u8; 7] = [0x04, 0xF0, 0x00, 0x6F, 0xA5, 0x24, 0x00];
    // Its response: netFn 0x05, to 0x82 from 0x20, CC 0x00.
    static EVENT_RSP_BYTES: [u8; 9] = [0x08, 0x82, 0x14, 0x6A, 0x20, 0x14, 0x02, 0x00, 0xCA];

    // PICMG Set FRU Activation (netFn 0x2C, cmd 0x0C) 0x20 -> 0x82, rqSeq 10: deactivate FRU 0.
    static SET_FRU_ACT_BYTES: [u8; 11] = [
        0x0A, 0x82, 0xB0, 0xCE, 0x20, 0x28, 0x0C, 0x00, 0x00, 0x00, 0xAC,
    ];
    // Its response: netFn 0x2D, CC 0x00, PICMG id 0x00.
    static SET_FRU_ACT_RSP_BYTES: [u8; 10] =
        [0x09, 0x20, 0xB4, 0x2C, 0x82, 0x28, 0x0C, 0x00, 0x00, 0x4A];

    // Get Device ID (netFn 0x06, cmd 0x01) 0x20 -> 0x82, rqSeq 1, and its response.
    static GET_DEVICE_ID_BYTES: [u8; 8] = [0x07, 0x82, 0x18, 0x66, 0x20, 0x04, 0x01, 0xDB];
    static GET_DEVICE_ID_RSP_BYTES: [u8; 20] = [
        0x13, 0x20, 0x1C, 0xC4, 0x82, 0x04, 0x01, 0x00, 0x00, 0x81, 0x02, 0x10, 0x51, 0x29, 0x00,
        0x90, 0x00, 0x02, 0x00, 0xDA,
    ];

    fn event_repr() -> Repr<'static> {
        Repr {
            rs_sa: 0x20,
            net_fn: 0x04,
            rs_lun: 0,
            rq_sa: 0x82,
            rq_seq: 5,
            rq_lun: 0,
            cmd: 0x02,
            data: &EVENT_DATA,
        }
    }

    fn set_fru_act_repr() -> Repr<'static> {
        Repr {
            rs_sa: 0x82,
            net_fn: 0x2C,
            rs_lun: 0,
            rq_sa: 0x20,
            rq_seq: 10,
            rq_lun: 0,
            cmd: 0x0C,
            data: &[0x00, 0x00, 0x00],
        }
    }

    fn emit_vec(repr: &Repr<'_>) -> ([u8; MAX_IPMB_MESSAGE], usize) {
        let mut buf = [0u8; MAX_IPMB_MESSAGE];
        let n = repr.emit(&mut buf).unwrap();
        (buf, n)
    }

    #[test]
    fn test_checksum() {
        assert_eq!(checksum(&[0x20, 0x10]), 0xD0);
        assert_eq!(checksum(&[]), 0x00);
        assert_eq!(checksum(&[0x80, 0x80]), 0x00);
    }

    #[test]
    fn test_frame_accessors() {
        let frame = Frame::new_checked(&EVENT_BYTES[..]).unwrap();
        assert_eq!(frame.length_field(), 14);
        assert_eq!(frame.total_len(), 15);
        assert_eq!(frame.rs_sa(), 0x20);
        assert_eq!(frame.net_fn(), 0x04);
        assert_eq!(frame.rs_lun(), 0);
        assert_eq!(frame.header_checksum(), 0xD0);
        assert_eq!(frame.rq_sa(), 0x82);
        assert_eq!(frame.rq_seq(), 5);
        assert_eq!(frame.rq_lun(), 0);
        assert_eq!(frame.cmd(), 0x02);
        assert_eq!(frame.data(), &EVENT_DATA);
        assert_eq!(frame.data_checksum(), 0x3C);
        assert!(frame.verify_header_checksum());
        assert!(frame.verify_data_checksum());
    }

    #[test]
    fn test_parse_event() {
        let frame = Frame::new_checked(&EVENT_BYTES[..]).unwrap();
        let repr = Repr::parse(&frame).unwrap();
        assert_eq!(repr, event_repr());
        assert!(!repr.is_response());
        assert_eq!(repr.completion_code(), None);
    }

    #[test]
    fn test_emit_event() {
        let repr = event_repr();
        assert_eq!(repr.buffer_len(), EVENT_BYTES.len());
        let (buf, n) = emit_vec(&repr);
        assert_eq!(&buf[..n], &EVENT_BYTES);
    }

    #[test]
    fn test_event_response() {
        let request = event_repr();
        let rsp = Repr::response_to(&request, &[0x00]);
        let (buf, n) = emit_vec(&rsp);
        assert_eq!(&buf[..n], &EVENT_RSP_BYTES);
        let parsed = Repr::parse(&Frame::new_checked(&EVENT_RSP_BYTES[..]).unwrap()).unwrap();
        assert!(parsed.is_response());
        assert_eq!(parsed.completion_code(), Some(0x00));
        assert!(parsed.answers(&request));
        assert!(!request.answers(&parsed));
        let mut other_seq = parsed;
        other_seq.rq_seq = 6;
        assert!(!other_seq.answers(&request));
    }

    #[test]
    fn test_set_fru_activation() {
        let request = set_fru_act_repr();
        let (buf, n) = emit_vec(&request);
        assert_eq!(&buf[..n], &SET_FRU_ACT_BYTES);
        let parsed = Repr::parse(&Frame::new_checked(&SET_FRU_ACT_BYTES[..]).unwrap()).unwrap();
        assert_eq!(parsed, request);

        let rsp = Repr::response_to(&request, &[0x00, 0x00]);
        let (buf, n) = emit_vec(&rsp);
        assert_eq!(&buf[..n], &SET_FRU_ACT_RSP_BYTES);
        let parsed = Repr::parse(&Frame::new_checked(&SET_FRU_ACT_RSP_BYTES[..]).unwrap()).unwrap();
        assert_eq!(parsed.net_fn, 0x2D);
        assert_eq!((parsed.rs_sa, parsed.rq_sa), (0x20, 0x82));
        assert!(parsed.answers(&request));
    }

    #[test]
    fn test_get_device_id() {
        let request = Repr {
            rs_sa: 0x82,
            net_fn: 0x06,
            rs_lun: 0,
            rq_sa: 0x20,
            rq_seq: 1,
            rq_lun: 0,
            cmd: 0x01,
            data: &[],
        };
        let (buf, n) = emit_vec(&request);
        assert_eq!(&buf[..n], &GET_DEVICE_ID_BYTES);
        let data = [
            0x00, 0x00, 0x81, 0x02, 0x10, 0x51, 0x29, 0x00, 0x90, 0x00, 0x02, 0x00,
        ];
        let (buf, n) = emit_vec(&Repr::response_to(&request, &data));
        assert_eq!(&buf[..n], &GET_DEVICE_ID_RSP_BYTES);
    }

    #[test]
    fn test_round_trip_golden() {
        for bytes in [
            &EVENT_BYTES[..],
            &EVENT_RSP_BYTES,
            &SET_FRU_ACT_BYTES,
            &SET_FRU_ACT_RSP_BYTES,
            &GET_DEVICE_ID_BYTES,
            &GET_DEVICE_ID_RSP_BYTES,
        ] {
            let repr = Repr::parse(&Frame::new_checked(bytes).unwrap()).unwrap();
            let (buf, n) = emit_vec(&repr);
            assert_eq!(&buf[..n], bytes);
            let msg = Message::from_bytes(bytes).unwrap();
            assert_eq!(msg.as_bytes(), bytes);
            assert_eq!(msg.repr(), repr);
            assert_eq!(Message::from_repr(&repr).unwrap(), msg);
        }
    }

    #[test]
    fn test_round_trip_all_fields() {
        // Every LUN, sequence and data length, with non-trivial values.
        let payload: [u8; MAX_DATA_LEN] = core::array::from_fn(|i| (i as u8).wrapping_mul(37));
        for len in 0..=MAX_DATA_LEN {
            for lun in 0..4u8 {
                let repr = Repr {
                    rs_sa: 0x20 + lun,
                    net_fn: 0x3F - lun,
                    rs_lun: lun,
                    rq_sa: 0xFE - lun,
                    rq_seq: (len as u8 * 3 + lun) & 0x3F,
                    rq_lun: 3 - lun,
                    cmd: 0xFF - len as u8,
                    data: &payload[..len],
                };
                let (buf, n) = emit_vec(&repr);
                assert_eq!(n, repr.buffer_len());
                let parsed = Repr::parse(&Frame::new_checked(&buf[..n]).unwrap()).unwrap();
                assert_eq!(parsed, repr);
            }
        }
    }

    #[test]
    fn test_emit_errors() {
        let long = [0u8; MAX_DATA_LEN + 1];
        let mut repr = event_repr();
        repr.data = &long;
        let mut buf = [0u8; 64];
        assert_eq!(repr.emit(&mut buf), Err(FrameError::TooLong));
        let repr = event_repr();
        assert_eq!(repr.emit(&mut buf[..14]), Err(FrameError::Truncated));
        assert_eq!(repr.emit(&mut buf[..15]), Ok(15));
    }

    /// Copies `base` and applies `edit` to it.
    fn mutated<const N: usize>(base: [u8; N], edit: impl Fn(&mut [u8; N])) -> [u8; N] {
        let mut b = base;
        edit(&mut b);
        b
    }

    #[test]
    fn test_malformed_table() {
        let mut long = [0u8; 34];
        long[0] = 33;
        let bad_chk1 = mutated(EVENT_BYTES, |b| b[3] ^= 0x01);
        let bad_chk2 = mutated(EVENT_BYTES, |b| b[14] = b[14].wrapping_add(1));
        let bad_data = mutated(EVENT_BYTES, |b| b[11] = 0xA7);
        let bad_netfn = mutated(EVENT_BYTES, |b| b[2] = 0x14);
        let len_short = mutated(EVENT_BYTES, |b| b[0] = 13);
        let len_long = mutated(EVENT_BYTES, |b| b[0] = 15);
        let len_zero = mutated(EVENT_BYTES, |b| b[0] = 0);
        let cases: &[(&str, &[u8], FrameError)] = &[
            ("empty", &[], FrameError::Truncated),
            ("len byte only", &[0x00], FrameError::Truncated),
            (
                "6 bytes after len",
                &EVENT_BYTES[..7],
                FrameError::Truncated,
            ),
            ("33 bytes after len", &long, FrameError::TooLong),
            ("len byte too small", &len_short, FrameError::LengthMismatch),
            ("len byte too large", &len_long, FrameError::LengthMismatch),
            ("len byte zero", &len_zero, FrameError::LengthMismatch),
            (
                "message cut before chk2",
                &EVENT_BYTES[..14],
                FrameError::LengthMismatch,
            ),
            ("chk1 flipped", &bad_chk1, FrameError::BadHeaderChecksum),
            ("netFn changed", &bad_netfn, FrameError::BadHeaderChecksum),
            ("chk2 off by one", &bad_chk2, FrameError::BadDataChecksum),
            ("data byte changed", &bad_data, FrameError::BadDataChecksum),
        ];
        for (name, bytes, want) in cases {
            let got = Frame::new_checked(*bytes)
                .and_then(|f| Repr::parse(&f))
                .map(|_| ());
            assert_eq!(got, Err(*want), "{name}");
            assert_eq!(Message::from_bytes(bytes).map(|_| ()), Err(*want), "{name}");
        }
    }

    #[test]
    fn test_max_len_accepted() {
        let data = [0x5Au8; MAX_DATA_LEN];
        let mut repr = event_repr();
        repr.data = &data;
        let (buf, n) = emit_vec(&repr);
        assert_eq!(n, MAX_IPMB_MESSAGE);
        assert_eq!(buf[0], 32);
        assert!(Frame::new_checked(&buf[..n]).is_ok());
    }

    #[test]
    fn test_error_index_and_display() {
        for (i, e) in FrameError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
        let text = format!("{}", FrameError::BadDataChecksum);
        assert!(text.contains("chk2"));
        let msg = Message::from_bytes(&GET_DEVICE_ID_BYTES).unwrap();
        assert_eq!(format!("{msg:?}"), "Message(07 82 18 66 20 04 01 db)");
    }
}
