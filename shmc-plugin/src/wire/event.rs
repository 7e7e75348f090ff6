//! Source-agnostic events: what an IPMC reported, whichever way it reached us.
//!
//! A Platform Event Message over IPMB (IPMI v2.0 §29.3), a SEL record read over
//! RMCP+ (IPMI v2.0 §32.1) and a replayed capture all become a [`PlatformEvent`].
//! Codes the core does not know decode to `Unknown(code)`: data, never an error.

use super::addr::IpmbAddr;
use super::code::code_enum;

code_enum! {
    /// IPMI sensor type codes (IPMI v2.0 table 42-3, PICMG 3.0 table 3-3).
    pub enum SensorType: open {
        /// 0x01
        Temperature = 0x01,
        /// 0x02
        Voltage = 0x02,
        /// 0x04
        Fan = 0x04,
        /// 0x07
        Processor = 0x07,
        /// 0x09
        PowerUnit = 0x09,
        /// 0x0C
        Memory = 0x0C,
        /// 0x20
        OsCriticalStop = 0x20,
        /// 0x23
        Watchdog2 = 0x23,
        /// 0xF0, PICMG FRU Hot Swap
        FruHotSwap = 0xF0,
        /// 0xF1, PICMG IPMB physical link
        IpmbLink = 0xF1,
    }
}

/// Event/reading type code for threshold sensors (IPMI v2.0 table 42-1).
pub const READING_TYPE_THRESHOLD: u8 = 0x01;
/// Event/reading type code for sensor-specific offsets (IPMI v2.0 table 42-1).
pub const READING_TYPE_SENSOR_SPECIFIC: u8 = 0x6F;

code_enum! {
    /// PICMG 3.0 FRU hot-swap states (PICMG 3.0 §3.2.4); `from_code` takes
    /// the 3-bit code.
    #[derive(PartialOrd, Ord)]
    pub enum MState: closed {
        /// M0 not installed
        M0 = 0,
        /// M1 inactive
        M1 = 1,
        /// M2 activation request
        M2 = 2,
        /// M3 activation in progress
        M3 = 3,
        /// M4 active
        M4 = 4,
        /// M5 deactivation request
        M5 = 5,
        /// M6 deactivation in progress
        M6 = 6,
        /// M7 communication lost
        M7 = 7,
    }
}

/// A decoded FRU Hot Swap event (PICMG 3.0 table 3-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotSwap {
    /// State entered.
    pub current: MState,
    /// State left; `None` when the generator did not say (ED2 = 0xFF).
    pub previous: Option<MState>,
    /// Cause of the transition (ED2 high nibble); `None` when unknown.
    pub cause: Option<u8>,
    /// FRU device id (ED3); 0 when the generator did not say (ED3 = 0xFF).
    pub fru_id: u8,
}

/// One Platform Event, as the IPMC generated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformEvent {
    /// 8-bit IPMB slave address of the generator (the frame's rqSA).
    pub generator: IpmbAddr,
    /// LUN of the generator (the frame's rqLUN).
    pub generator_lun: u8,
    /// Event message format revision (0x04 for IPMI v1.5/v2.0).
    pub evm_rev: u8,
    /// Sensor type.
    pub sensor_type: SensorType,
    /// Sensor number.
    pub sensor_number: u8,
    /// true = assertion, false = deassertion (the direction bit).
    pub assertion: bool,
    /// Event/reading type code (7 bits).
    pub event_type: u8,
    /// Event data 1-3.
    pub event_data: [u8; 3],
}

/// Why the 7 request-data bytes of a Platform Event were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventError {
    /// Fewer than 7 bytes of request data (EvMRev .. ED3); ED2/ED3 may not be omitted here.
    Truncated,
}

impl core::fmt::Display for EventError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => f.write_str("platform event shorter than 7 bytes"),
        }
    }
}

impl core::error::Error for EventError {}

impl PlatformEvent {
    /// Decodes the request data of a Platform Event Message (netFn 0x04, cmd 0x02)
    /// sent by `generator`/`generator_lun`: `[EvMRev, type, number, dir|reading type, ED1, ED2, ED3]`.
    /// Bytes after the seventh are ignored.
    pub fn parse(generator: IpmbAddr, generator_lun: u8, data: &[u8]) -> Result<Self, EventError> {
        if data.len() < 7 {
            return Err(EventError::Truncated);
        }
        Ok(Self {
            generator,
            generator_lun: generator_lun & 0x03,
            evm_rev: data[0],
            sensor_type: SensorType::from(data[1]),
            sensor_number: data[2],
            assertion: data[3] & 0x80 == 0,
            event_type: data[3] & 0x7F,
            event_data: [data[4], data[5], data[6]],
        })
    }

    /// Writes the 7 request-data bytes; exact inverse of [`PlatformEvent::parse`].
    pub fn emit(&self, data: &mut [u8; 7]) {
        data[0] = self.evm_rev;
        data[1] = self.sensor_type.into();
        data[2] = self.sensor_number;
        data[3] = (if self.assertion { 0 } else { 0x80 }) | (self.event_type & 0x7F);
        data[4..7].copy_from_slice(&self.event_data);
    }

    /// Event offset (ED1 low nibble), meaningful for threshold and discrete events.
    pub fn offset(&self) -> u8 {
        self.event_data[0] & 0x0F
    }

    /// The hot-swap transition, when this is a FRU Hot Swap sensor event.
    ///
    /// Accepts both the PICMG form (ED1 = 0xA0|state, ED2 = cause<<4|previous,
    /// ED3 = FRU id) and the form OpenIPMI's simulator writes (ED2 = ED3 = 0xFF):
    /// previous state and cause unknown, FRU id taken as 0.
    pub fn hot_swap(&self) -> Option<HotSwap> {
        if self.sensor_type != SensorType::FruHotSwap {
            return None;
        }
        let current = MState::from_code(self.event_data[0] & 0x0F)?;
        let ed2 = self.event_data[1];
        let (previous, cause) = if ed2 == 0xFF {
            (None, None)
        } else {
            (MState::from_code(ed2 & 0x0F), Some(ed2 >> 4))
        };
        let fru_id = if self.event_data[2] == 0xFF {
            0
        } else {
            self.event_data[2]
        };
        Some(HotSwap {
            current,
            previous,
            cause,
            fru_id,
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    // PICMG hot-swap M4 -> M5 by operator handle (cause 2), FRU 0, from IPMC 0x82.
    static HANDLE_OPEN: [u8; 7] = [0x04, 0xF0, 0x00, 0x6F, 0xA5, 0x24, 0x00];

    #[test]
    fn test_parse_hot_swap() {
        let ev = PlatformEvent::parse(IpmbAddr(0x82), 0, &HANDLE_OPEN).unwrap();
        assert_eq!(ev.sensor_type, SensorType::FruHotSwap);
        assert!(ev.assertion);
        assert_eq!(ev.event_type, READING_TYPE_SENSOR_SPECIFIC);
        let hs = ev.hot_swap().unwrap();
        assert_eq!(hs.current, MState::M5);
        assert_eq!(hs.previous, Some(MState::M4));
        assert_eq!(hs.cause, Some(2));
        assert_eq!(hs.fru_id, 0);
        let mut out = [0u8; 7];
        ev.emit(&mut out);
        assert_eq!(out, HANDLE_OPEN);
    }

    #[test]
    fn test_openipmi_hot_swap_form() {
        let ev = PlatformEvent::parse(
            IpmbAddr(0x82),
            0,
            &[0x04, 0xF0, 0x00, 0x6F, 0xA7, 0xFF, 0xFF],
        )
        .unwrap();
        let hs = ev.hot_swap().unwrap();
        assert_eq!(hs.current, MState::M7);
        assert_eq!(hs.previous, None);
        assert_eq!(hs.cause, None);
        assert_eq!(hs.fru_id, 0);
    }

    #[test]
    fn test_deassertion_and_unknown_type() {
        let ev = PlatformEvent::parse(
            IpmbAddr(0x84),
            1,
            &[0x04, 0x77, 0x05, 0x81, 0x59, 0x00, 0x00],
        )
        .unwrap();
        assert!(!ev.assertion);
        assert_eq!(ev.event_type, READING_TYPE_THRESHOLD);
        assert_eq!(ev.sensor_type, SensorType::Unknown(0x77));
        assert_eq!(ev.offset(), 9);
        assert_eq!(ev.hot_swap(), None);
    }

    #[test]
    fn test_truncated() {
        assert_eq!(
            PlatformEvent::parse(IpmbAddr(0x82), 0, &[0x04, 0x01]),
            Err(EventError::Truncated)
        );
    }
}
