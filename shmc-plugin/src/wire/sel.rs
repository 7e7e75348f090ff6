//! SEL system event records (IPMI v2.0 §32.1, table 32-1) to and from
//! [`PlatformEvent`]s.
//!
//! ```text
//! byte 0-1 record id (LS first)   2 record type (0x02)   3-6 timestamp (LS first)
//!      7   generator id byte 1: bit 0 = 0: bits 7:1 = 7-bit IPMB slave address
//!                               bit 0 = 1: bits 7:1 = system software id
//!      8   generator id byte 2: bits 7:4 channel, 3:2 reserved, 1:0 LUN
//!      9   EvMRev  10 sensor type  11 sensor number  12 dir<<7 | event type  13-15 ED1-ED3
//! ```
//!
//! Generator id byte 1 holds the 7-bit slave address in bits 7:1, which is
//! numerically the 8-bit address the IPMB frame carries as rqSA: a record
//! from the IPMC at 0x82 (7-bit 0x41) has byte 1 = 0x82 and becomes a
//! [`PlatformEvent`] with `generator = 0x82`, exactly as the same event read
//! off IPMB would. Tools print the 7-bit form (0x41); never compare the two
//! forms without converting. A software-generated record (bit 0 = 1) keeps
//! byte 1 as is: its odd value can never equal an 8-bit IPMB address.
//!
//! [`SelRecord::parse`] ignores the reserved bits 3:2 of byte 8 and
//! [`SelRecord::emit`] writes them as 0; otherwise the two are exact inverses.

use core::fmt;

use super::cmd::CompletionCode;
use crate::wire::addr::IpmbAddr;
use crate::wire::event::PlatformEvent;

/// Bytes in one SEL record.
pub const SEL_RECORD_LEN: usize = 16;
/// Record type of a system event record.
pub const RECORD_TYPE_SYSTEM_EVENT: u8 = 0x02;

/// Why bytes are not a SEL system event record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SelError {
    /// Fewer than 16 bytes.
    Truncated,
    /// Record type other than 0x02 (OEM records carry no standard event).
    NotSystemEvent(u8),
    /// Get SEL Entry answered with an error completion code.
    Completion(CompletionCode),
}

impl fmt::Display for SelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("SEL record shorter than 16 bytes"),
            Self::NotSystemEvent(t) => write!(f, "SEL record type 0x{t:02x} is not a system event"),
            Self::Completion(cc) => {
                write!(f, "Get SEL Entry completion code 0x{:02x}", u8::from(*cc))
            }
        }
    }
}

impl core::error::Error for SelError {}

/// One SEL system event record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelRecord {
    /// Record id.
    pub record_id: u16,
    /// Seconds since 1970 (or since controller start for values up to 0x20000000).
    pub timestamp: u32,
    /// Channel the event arrived on (4 bits; 0 = primary IPMB).
    pub channel: u8,
    /// The event; `generator` in the 8-bit IPMB address form (see module header).
    pub event: PlatformEvent,
}

impl SelRecord {
    /// Decodes the first 16 bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<SelRecord, SelError> {
        let b = bytes.get(..SEL_RECORD_LEN).ok_or(SelError::Truncated)?;
        if b[2] != RECORD_TYPE_SYSTEM_EVENT {
            return Err(SelError::NotSystemEvent(b[2]));
        }
        // Bit 0 = 0: bits 7:1 are the 7-bit address, whose 8-bit form is the
        // byte itself. Bit 0 = 1: software id, kept as is (odd).
        let generator = IpmbAddr(b[7]);
        let event = PlatformEvent::parse(generator, b[8] & 0x03, &b[9..16])
            .map_err(|_| SelError::Truncated)?;
        Ok(SelRecord {
            record_id: u16::from_le_bytes([b[0], b[1]]),
            timestamp: u32::from_le_bytes([b[3], b[4], b[5], b[6]]),
            channel: b[8] >> 4,
            event,
        })
    }

    /// Writes the record; inverse of [`SelRecord::parse`] (reserved bits as 0).
    pub fn emit(&self, out: &mut [u8; SEL_RECORD_LEN]) {
        out[0..2].copy_from_slice(&self.record_id.to_le_bytes());
        out[2] = RECORD_TYPE_SYSTEM_EVENT;
        out[3..7].copy_from_slice(&self.timestamp.to_le_bytes());
        out[7] = self.event.generator.get();
        out[8] = ((self.channel & 0x0F) << 4) | (self.event.generator_lun & 0x03);
        let mut ev = [0u8; 7];
        self.event.emit(&mut ev);
        out[9..16].copy_from_slice(&ev);
    }

    /// The record as bytes.
    pub fn to_bytes(&self) -> [u8; SEL_RECORD_LEN] {
        let mut out = [0u8; SEL_RECORD_LEN];
        self.emit(&mut out);
        out
    }

    /// True when system software, not an IPMB controller, generated the event.
    pub fn is_software_generated(&self) -> bool {
        self.event.generator.get() & 1 == 1
    }

    /// The generator's 7-bit slave address, as SEL tools print it; `None` for software ids.
    pub fn generator_7bit(&self) -> Option<u8> {
        if self.is_software_generated() {
            None
        } else {
            Some(self.event.generator.get() >> 1)
        }
    }
}

/// Decodes Get SEL Entry response data (completion code first): the next
/// record id and the record.
pub fn parse_get_sel_entry(data: &[u8]) -> Result<(u16, SelRecord), SelError> {
    match data.first().map(|c| CompletionCode::from(*c)) {
        None => return Err(SelError::Truncated),
        Some(CompletionCode::Ok) => {}
        Some(cc) => return Err(SelError::Completion(cc)),
    }
    let next = data.get(1..3).ok_or(SelError::Truncated)?;
    let record = SelRecord::parse(&data[3..])?;
    Ok((u16::from_le_bytes([next[0], next[1]]), record))
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::event::{MState, SensorType, READING_TYPE_THRESHOLD};

    // Record 0x0005 at 0x5F5E1000 from IPMC 0x82 (7-bit 0x41) LUN 0, channel 0:
    // PICMG hot swap M4 -> M5 by operator handle, FRU 0 (IPMI v2.0 table 32-1).
    static HOT_SWAP_RECORD: [u8; 16] = [
        0x05, 0x00, 0x02, 0x00, 0x10, 0x5E, 0x5F, 0x82, 0x00, 0x04, 0xF0, 0x00, 0x6F, 0xA5, 0x24,
        0x00,
    ];
    // Record 0x0102 from 0x84 LUN 1, channel 0: temperature sensor 0x30,
    // Upper Critical going high deasserted, trigger reading 0x5A, threshold 0x50.
    static THRESHOLD_RECORD: [u8; 16] = [
        0x02, 0x01, 0x02, 0x78, 0x56, 0x34, 0x12, 0x84, 0x01, 0x04, 0x01, 0x30, 0x81, 0x59, 0x5A,
        0x50,
    ];

    #[test]
    fn test_parse_hot_swap_record() {
        let r = SelRecord::parse(&HOT_SWAP_RECORD).unwrap();
        assert_eq!(r.record_id, 5);
        assert_eq!(r.timestamp, 0x5F5E_1000);
        assert_eq!(r.channel, 0);
        assert_eq!(r.generator_7bit(), Some(0x41));
        assert!(!r.is_software_generated());
        let ev = r.event;
        assert_eq!((ev.generator, ev.generator_lun), (IpmbAddr(0x82), 0));
        assert_eq!(ev.sensor_type, SensorType::FruHotSwap);
        assert!(ev.assertion);
        let hs = ev.hot_swap().unwrap();
        assert_eq!((hs.current, hs.previous), (MState::M5, Some(MState::M4)));
        // The same event as the golden IPMB Platform Event frame carries.
        let ipmb = PlatformEvent::parse(
            IpmbAddr(0x82),
            0,
            &[0x04, 0xF0, 0x00, 0x6F, 0xA5, 0x24, 0x00],
        );
        assert_eq!(Ok(ev), ipmb);
    }

    #[test]
    fn test_parse_threshold_record() {
        let r = SelRecord::parse(&THRESHOLD_RECORD).unwrap();
        assert_eq!(r.record_id, 0x0102);
        assert_eq!(r.timestamp, 0x1234_5678);
        let ev = r.event;
        assert_eq!((ev.generator, ev.generator_lun), (IpmbAddr(0x84), 1));
        assert_eq!(ev.sensor_type, SensorType::Temperature);
        assert_eq!(ev.sensor_number, 0x30);
        assert!(!ev.assertion);
        assert_eq!(ev.event_type, READING_TYPE_THRESHOLD);
        assert_eq!(ev.offset(), 9);
        assert_eq!(ev.event_data, [0x59, 0x5A, 0x50]);
    }

    #[test]
    fn test_round_trip() {
        for bytes in [HOT_SWAP_RECORD, THRESHOLD_RECORD] {
            let r = SelRecord::parse(&bytes).unwrap();
            assert_eq!(r.to_bytes(), bytes);
        }
        // Channel and software generator survive too.
        let mut b = THRESHOLD_RECORD;
        b[7] = 0x21; // software id 0x10
        b[8] = 0x72; // channel 7, LUN 2
        let r = SelRecord::parse(&b).unwrap();
        assert!(r.is_software_generated());
        assert_eq!(r.generator_7bit(), None);
        assert_eq!(r.channel, 7);
        assert_eq!(r.event.generator_lun, 2);
        assert_eq!(r.to_bytes(), b);
        // Reserved bits are dropped.
        b[8] = 0x7E;
        assert_eq!(SelRecord::parse(&b).unwrap().to_bytes()[8], 0x72);
    }

    #[test]
    fn test_errors() {
        assert_eq!(
            SelRecord::parse(&HOT_SWAP_RECORD[..15]),
            Err(SelError::Truncated)
        );
        let mut oem = HOT_SWAP_RECORD;
        oem[2] = 0xC0;
        assert_eq!(SelRecord::parse(&oem), Err(SelError::NotSystemEvent(0xC0)));
        assert_eq!(parse_get_sel_entry(&[]), Err(SelError::Truncated));
        assert_eq!(
            parse_get_sel_entry(&[0xCB]),
            Err(SelError::Completion(CompletionCode::Unknown(0xCB)))
        );
        assert_eq!(parse_get_sel_entry(&[0x00, 0x06]), Err(SelError::Truncated));
    }

    #[test]
    fn test_get_sel_entry_response() {
        let mut data = vec![0x00, 0x06, 0x00];
        data.extend_from_slice(&HOT_SWAP_RECORD);
        let (next, r) = parse_get_sel_entry(&data).unwrap();
        assert_eq!(next, 6);
        assert_eq!(r.record_id, 5);
    }
}
