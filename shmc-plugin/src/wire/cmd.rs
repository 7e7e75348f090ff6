//! IPMI and PICMG 3.0 commands the shelf manager sends or answers: codes,
//! request-data builders and response decoders.
//!
//! IPMI v2.0 §5.2 (completion codes), §20.1 (Get Device ID), §29.3 (Platform
//! Event), §35.14 (Get Sensor Reading); PICMG 3.0 §3.1 (Get PICMG Properties,
//! Get Address Info), §3.2.4 (Set FRU Activation, FRU Control, hot swap sensor).
//! PICMG commands use netFn 0x2C and start their request and response data
//! with the PICMG identifier 0x00.

use core::fmt;

use super::addr::IpmbAddr;
use super::code::code_enum;
use super::event::{EventError, MState, PlatformEvent};
use super::ipmb::Repr;

/// netFn Sensor/Event (requests; responses 0x05).
pub const NETFN_SENSOR_EVENT: u8 = 0x04;
/// netFn Application (requests; responses 0x07).
pub const NETFN_APP: u8 = 0x06;
/// netFn Storage (requests; responses 0x0B).
pub const NETFN_STORAGE: u8 = 0x0A;
/// netFn Group Extension: PICMG requests.
pub const NETFN_GROUP_EXT: u8 = 0x2C;
/// netFn Group Extension response.
pub const NETFN_GROUP_EXT_RSP: u8 = 0x2D;

/// Sensor/Event: Platform Event ("Event Message").
pub const CMD_PLATFORM_EVENT: u8 = 0x02;
/// Sensor/Event: Get Sensor Reading.
pub const CMD_GET_SENSOR_READING: u8 = 0x2D;
/// App: Get Device ID.
pub const CMD_GET_DEVICE_ID: u8 = 0x01;
/// Storage: Get SEL Info.
pub const CMD_GET_SEL_INFO: u8 = 0x40;
/// Storage: Get SEL Entry.
pub const CMD_GET_SEL_ENTRY: u8 = 0x43;
/// Storage: Add SEL Entry.
pub const CMD_ADD_SEL_ENTRY: u8 = 0x44;
/// PICMG: Get PICMG Properties.
pub const CMD_GET_PICMG_PROPERTIES: u8 = 0x00;
/// PICMG: Get Address Info.
pub const CMD_GET_ADDRESS_INFO: u8 = 0x01;
/// PICMG: FRU Control.
pub const CMD_FRU_CONTROL: u8 = 0x04;
/// PICMG: Set FRU Activation Policy.
pub const CMD_SET_FRU_ACTIVATION_POLICY: u8 = 0x0A;
/// PICMG: Get FRU Activation Policy.
pub const CMD_GET_FRU_ACTIVATION_POLICY: u8 = 0x0B;
/// PICMG: Set FRU Activation.
pub const CMD_SET_FRU_ACTIVATION: u8 = 0x0C;
/// PICMG: Set Power Level.
pub const CMD_SET_POWER_LEVEL: u8 = 0x11;

/// PICMG identifier: first request and response data byte of PICMG commands.
pub const PICMG_ID: u8 = 0x00;
/// Event message revision of IPMI v1.5 / v2.0 Platform Events.
pub const EVM_REV: u8 = 0x04;

code_enum! {
    /// IPMI completion codes (IPMI v2.0 table 5-2).
    pub enum CompletionCode: open {
        /// 0x00
        Ok = 0x00,
        /// 0xC0
        NodeBusy = 0xC0,
        /// 0xC1
        InvalidCommand = 0xC1,
        /// 0xC3
        Timeout = 0xC3,
        /// 0xC7
        RequestDataLength = 0xC7,
        /// 0xC9
        ParameterOutOfRange = 0xC9,
        /// 0xCC
        InvalidDataField = 0xCC,
        /// 0xCE
        CannotProvideResponse = 0xCE,
        /// 0xD3
        DestinationUnavailable = 0xD3,
        /// 0xD4
        InsufficientPrivilege = 0xD4,
        /// 0xD5
        NotSupportedInState = 0xD5,
        /// 0xFF
        Unspecified = 0xFF,
    }
}

/// Why a response's data was not what the command promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseError {
    /// No completion code, or fewer bytes than the command's response holds.
    Truncated,
    /// The completion code is not 0x00.
    Completion(CompletionCode),
    /// A PICMG response whose second byte is not the PICMG identifier.
    NotPicmg(u8),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("response data truncated"),
            Self::Completion(cc) => write!(f, "completion code 0x{:02x}", u8::from(*cc)),
            Self::NotPicmg(id) => write!(f, "not a PICMG response (identifier 0x{id:02x})"),
        }
    }
}

impl core::error::Error for ResponseError {}

code_enum! {
    /// PICMG FRU Control options (PICMG 3.0 table 3-25).
    pub enum FruControlOption: closed {
        /// 0: cold reset.
        ColdReset = 0,
        /// 1: warm reset.
        WarmReset = 1,
        /// 2: graceful reboot.
        GracefulReboot = 2,
        /// 3: issue diagnostic interrupt.
        DiagnosticInterrupt = 3,
        /// 4: quiesce.
        Quiesce = 4,
    }
}

/// Set FRU Activation request data: `[0x00, FRU id, 1 = activate | 0 = deactivate]`.
pub fn set_fru_activation(fru_id: u8, activate: bool) -> [u8; 3] {
    [PICMG_ID, fru_id, u8::from(activate)]
}

/// FRU Control request data: `[0x00, FRU id, option]`.
pub fn fru_control(fru_id: u8, option: FruControlOption) -> [u8; 3] {
    [PICMG_ID, fru_id, option.into()]
}

/// Set Power Level request data: `[0x00, FRU id, level, copy desired to present]`;
/// level 0 powers the FRU off.
pub fn set_power_level(fru_id: u8, level: u8, copy_desired: bool) -> [u8; 4] {
    [PICMG_ID, fru_id, level, u8::from(copy_desired)]
}

/// Get Sensor Reading request data: `[sensor number]`.
pub fn get_sensor_reading(sensor_number: u8) -> [u8; 1] {
    [sensor_number]
}

/// Get Address Info request data for the addressed controller itself: `[0x00]`.
pub fn get_address_info() -> [u8; 1] {
    [PICMG_ID]
}

/// Get PICMG Properties request data: `[0x00]`.
pub fn get_picmg_properties() -> [u8; 1] {
    [PICMG_ID]
}

/// Get Device ID request data (none).
pub fn get_device_id() -> [u8; 0] {
    []
}

/// Get SEL Entry request data: no reservation, `record_id`, whole record.
pub fn get_sel_entry(record_id: u16) -> [u8; 6] {
    let id = record_id.to_le_bytes();
    [0x00, 0x00, id[0], id[1], 0x00, 0xFF]
}

/// Response data to a Platform Event: completion code 0x00.
pub const PLATFORM_EVENT_RESPONSE: [u8; 1] = [0x00];

/// The completion code of response data (its first byte).
pub fn completion_code(data: &[u8]) -> Option<CompletionCode> {
    data.first().map(|c| CompletionCode::from(*c))
}

/// `Ok` when the response data starts with completion code 0x00.
pub fn check_response(data: &[u8]) -> Result<(), ResponseError> {
    match completion_code(data) {
        None => Err(ResponseError::Truncated),
        Some(CompletionCode::Ok) => Ok(()),
        Some(cc) => Err(ResponseError::Completion(cc)),
    }
}

/// `Ok` for a successful PICMG response: completion code 0x00 then the PICMG identifier.
pub fn check_picmg_response(data: &[u8]) -> Result<(), ResponseError> {
    check_response(data)?;
    match data.get(1) {
        None => Err(ResponseError::Truncated),
        Some(&PICMG_ID) => Ok(()),
        Some(&other) => Err(ResponseError::NotPicmg(other)),
    }
}

/// Summary of a Get Device ID response (IPMI v2.0 table 20-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceId {
    /// Device ID.
    pub device_id: u8,
    /// Device revision (4 bits).
    pub device_revision: u8,
    /// The controller provides device SDRs.
    pub provides_sdrs: bool,
    /// false while a firmware or SDR update or self-initialisation is in progress.
    pub available: bool,
    /// Major firmware revision (7 bits).
    pub firmware_major: u8,
    /// Minor firmware revision (BCD).
    pub firmware_minor: u8,
    /// IPMI version (BCD, 0x51 = 1.5, 0x02 = 2.0).
    pub ipmi_version: u8,
    /// Additional device support bits.
    pub additional_support: u8,
    /// IANA manufacturer id (20 bits).
    pub manufacturer_id: u32,
    /// Product id.
    pub product_id: u16,
}

impl DeviceId {
    /// Decodes response data (completion code first).
    pub fn parse(data: &[u8]) -> Result<DeviceId, ResponseError> {
        check_response(data)?;
        let d = data.get(..12).ok_or(ResponseError::Truncated)?;
        Ok(DeviceId {
            device_id: d[1],
            device_revision: d[2] & 0x0F,
            provides_sdrs: d[2] & 0x80 != 0,
            available: d[3] & 0x80 == 0,
            firmware_major: d[3] & 0x7F,
            firmware_minor: d[4],
            ipmi_version: d[5],
            additional_support: d[6],
            manufacturer_id: u32::from_le_bytes([d[7], d[8], d[9], 0]) & 0x000F_FFFF,
            product_id: u16::from_le_bytes([d[10], d[11]]),
        })
    }
}

/// A Get Address Info response (PICMG 3.0 table 3-10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressInfo {
    /// Hardware address (7 bits).
    pub hardware_address: u8,
    /// IPMB-0 address (8-bit form).
    pub ipmb0_address: u8,
    /// FRU device id.
    pub fru_id: u8,
    /// Site number.
    pub site_number: u8,
    /// Site type (0 = front board).
    pub site_type: u8,
}

impl AddressInfo {
    /// Decodes response data (completion code first).
    pub fn parse(data: &[u8]) -> Result<AddressInfo, ResponseError> {
        check_picmg_response(data)?;
        let d = data.get(..8).ok_or(ResponseError::Truncated)?;
        Ok(AddressInfo {
            hardware_address: d[2],
            ipmb0_address: d[3],
            fru_id: d[5],
            site_number: d[6],
            site_type: d[7],
        })
    }
}

/// A Get Sensor Reading response (IPMI v2.0 table 35-15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SensorReading {
    /// Raw reading byte (meaningful for threshold sensors).
    pub reading: u8,
    /// Event messages enabled.
    pub events_enabled: bool,
    /// Sensor scanning enabled.
    pub scanning_enabled: bool,
    /// Reading or state unavailable.
    pub unavailable: bool,
    /// Discrete states 0..=14, bit n = state n asserted (0 when not sent).
    pub states: u16,
}

impl SensorReading {
    /// Decodes response data (completion code first); the state bytes are optional.
    pub fn parse(data: &[u8]) -> Result<SensorReading, ResponseError> {
        check_response(data)?;
        let d = data.get(..3).ok_or(ResponseError::Truncated)?;
        let lo = data.get(3).copied().unwrap_or(0);
        let hi = data.get(4).copied().unwrap_or(0) & 0x7F;
        Ok(SensorReading {
            reading: d[1],
            events_enabled: d[2] & 0x80 != 0,
            scanning_enabled: d[2] & 0x40 != 0,
            unavailable: d[2] & 0x20 != 0,
            states: u16::from_le_bytes([lo, hi]),
        })
    }
}

/// The M-state of a FRU Hot Swap sensor from its Get Sensor Reading response
/// data: PICMG 3.0 §3.2.4.3 asserts exactly one of state bits 0..=7, bit n = Mn.
/// `None` for an error completion code, short data, an unavailable reading, or
/// not exactly one state bit set.
pub fn hot_swap_state(data: &[u8]) -> Option<MState> {
    let reading = SensorReading::parse(data).ok()?;
    if reading.unavailable || data.len() < 4 {
        return None;
    }
    let bits = reading.states & 0x00FF;
    if bits.count_ones() != 1 {
        return None;
    }
    MState::from_code(bits.trailing_zeros() as u8)
}

/// The Platform Event carried by `repr`, if it is a Platform Event request
/// (netFn 0x04, cmd 0x02); the generator is its rqSA/rqLUN.
pub fn platform_event(repr: &Repr<'_>) -> Option<Result<PlatformEvent, EventError>> {
    if repr.net_fn == NETFN_SENSOR_EVENT && repr.cmd == CMD_PLATFORM_EVENT {
        Some(PlatformEvent::parse(
            IpmbAddr(repr.rq_sa),
            repr.rq_lun,
            repr.data,
        ))
    } else {
        None
    }
}

/// A Platform Event request from `event.generator` to `receiver`, its 7 data
/// bytes written into `data`.
pub fn platform_event_request<'a>(
    event: &PlatformEvent,
    receiver: u8,
    rq_seq: u8,
    data: &'a mut [u8; 7],
) -> Repr<'a> {
    event.emit(data);
    Repr {
        rs_sa: receiver,
        net_fn: NETFN_SENSOR_EVENT,
        rs_lun: 0,
        rq_sa: event.generator.get(),
        rq_seq: rq_seq & 0x3F,
        rq_lun: event.generator_lun & 0x03,
        cmd: CMD_PLATFORM_EVENT,
        data,
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::event::SensorType;
    use crate::wire::ipmb::{Frame, Message};

    #[test]
    fn test_request_builders() {
        assert_eq!(set_fru_activation(0, false), [0x00, 0x00, 0x00]);
        assert_eq!(set_fru_activation(3, true), [0x00, 0x03, 0x01]);
        assert_eq!(
            fru_control(0, FruControlOption::ColdReset),
            [0x00, 0x00, 0x00]
        );
        assert_eq!(
            fru_control(1, FruControlOption::Quiesce),
            [0x00, 0x01, 0x04]
        );
        assert_eq!(set_power_level(0, 0, true), [0x00, 0x00, 0x00, 0x01]);
        assert_eq!(get_sensor_reading(0x42), [0x42]);
        assert_eq!(get_address_info(), [0x00]);
        assert_eq!(get_sel_entry(0x1234), [0x00, 0x00, 0x34, 0x12, 0x00, 0xFF]);
    }

    #[test]
    fn test_completion_codes() {
        for code in 0..=255u8 {
            assert_eq!(u8::from(CompletionCode::from(code)), code);
        }
        assert_eq!(CompletionCode::from(0xC1), CompletionCode::InvalidCommand);
        assert_eq!(CompletionCode::from(0x80), CompletionCode::Unknown(0x80));
        assert_eq!(check_response(&[0x00]), Ok(()));
        assert_eq!(check_response(&[]), Err(ResponseError::Truncated));
        assert_eq!(
            check_response(&[0xC1]),
            Err(ResponseError::Completion(CompletionCode::InvalidCommand))
        );
        assert_eq!(check_picmg_response(&[0x00, 0x00]), Ok(()));
        assert_eq!(check_picmg_response(&[0x00]), Err(ResponseError::Truncated));
        assert_eq!(
            check_picmg_response(&[0x00, 0x05]),
            Err(ResponseError::NotPicmg(0x05))
        );
    }

    #[test]
    fn test_device_id() {
        // Response data as in the Get Device ID golden frame of `ipmb`.
        let data = [
            0x00, 0x00, 0x81, 0x02, 0x10, 0x51, 0x29, 0x00, 0x90, 0x00, 0x02, 0x00,
        ];
        let id = DeviceId::parse(&data).unwrap();
        assert_eq!(
            id,
            DeviceId {
                device_id: 0,
                device_revision: 1,
                provides_sdrs: true,
                available: true,
                firmware_major: 2,
                firmware_minor: 0x10,
                ipmi_version: 0x51,
                additional_support: 0x29,
                manufacturer_id: 0x009000,
                product_id: 0x0002,
            }
        );
        assert_eq!(DeviceId::parse(&data[..11]), Err(ResponseError::Truncated));
        assert_eq!(
            DeviceId::parse(&[0xC3]),
            Err(ResponseError::Completion(CompletionCode::Timeout))
        );
    }

    #[test]
    fn test_address_info() {
        // As OpenIPMI's simulator answers for the blade at 0x82 in site 1.
        let data = [0x00, 0x00, 0x41, 0x82, 0xFF, 0x00, 0x01, 0x00];
        let info = AddressInfo::parse(&data).unwrap();
        assert_eq!(info.hardware_address, 0x41);
        assert_eq!(info.ipmb0_address, 0x82);
        assert_eq!(info.site_number, 1);
        assert_eq!(
            AddressInfo::parse(&data[..7]),
            Err(ResponseError::Truncated)
        );
    }

    #[test]
    fn test_hot_swap_state() {
        for state in 0..8u8 {
            let data = [0x00, 0x00, 0xC0, 1 << state, 0x00];
            assert_eq!(hot_swap_state(&data), MState::from_code(state), "M{state}");
        }
        // Two bits, no bits, unavailable, short, error code.
        assert_eq!(hot_swap_state(&[0x00, 0x00, 0xC0, 0x12, 0x00]), None);
        assert_eq!(hot_swap_state(&[0x00, 0x00, 0xC0, 0x00, 0x00]), None);
        assert_eq!(hot_swap_state(&[0x00, 0x00, 0xE0, 0x10, 0x00]), None);
        assert_eq!(hot_swap_state(&[0x00, 0x00, 0xC0]), None);
        assert_eq!(hot_swap_state(&[0xCB]), None);
        // State bits 8..14 are not hot swap states and do not count.
        assert_eq!(
            hot_swap_state(&[0x00, 0x00, 0xC0, 0x10, 0x01]),
            Some(MState::M4)
        );
        let r = SensorReading::parse(&[0x00, 0x7F, 0x40, 0x01, 0xFF]).unwrap();
        assert_eq!(r.reading, 0x7F);
        assert!(!r.events_enabled && r.scanning_enabled && !r.unavailable);
        assert_eq!(r.states, 0x7F01);
    }

    #[test]
    fn test_platform_event_request_round_trip() {
        let ev = PlatformEvent {
            generator: IpmbAddr(0x82),
            generator_lun: 0,
            evm_rev: EVM_REV,
            sensor_type: SensorType::FruHotSwap,
            sensor_number: 0,
            assertion: true,
            event_type: 0x6F,
            event_data: [0xA5, 0x24, 0x00],
        };
        let mut data = [0u8; 7];
        let repr = platform_event_request(&ev, 0x20, 5, &mut data);
        let msg = Message::from_repr(&repr).unwrap();
        // The golden Platform Event frame of `ipmb`.
        assert_eq!(
            msg.as_bytes(),
            &[
                0x0E, 0x20, 0x10, 0xD0, 0x82, 0x14, 0x02, 0x04, 0xF0, 0x00, 0x6F, 0xA5, 0x24, 0x00,
                0x3C
            ]
        );
        let frame = Frame::new_checked(msg.as_bytes()).unwrap();
        let parsed = Repr::parse(&frame).unwrap();
        assert_eq!(platform_event(&parsed), Some(Ok(ev)));
        let rsp = Repr::response_to(&parsed, &PLATFORM_EVENT_RESPONSE);
        assert_eq!(platform_event(&rsp), None);
        let short = Repr {
            data: &parsed.data[..6],
            ..parsed
        };
        assert_eq!(platform_event(&short), Some(Err(EventError::Truncated)));
    }
}
