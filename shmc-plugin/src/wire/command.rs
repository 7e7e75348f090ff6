//! Typed IPMB requests and responses of the commands the core sends and
//! watches, so the engine never reads raw bytes: [`Request`] and
//! [`Response`] each parse from and emit to the data bytes of one message
//! (`parse(emit(x)) == x`; the golden vectors below pin the bytes).
//!
//! Codes, builders and decoders live in [`super::cmd`]; this module puts
//! them behind one enum per direction, and [`Inbound`] sorts any received
//! message into response, Platform Event or other request.

use core::fmt;

use super::addr::IpmbAddr;
use super::cmd::{
    self, check_picmg_response, check_response, CompletionCode, DeviceId, FruControlOption,
    ResponseError, SensorReading, PICMG_ID,
};
use super::event::{EventError, MState, PlatformEvent};
use super::ipmb::Repr;

/// Longest request data of a [`Request`] (Set Power Level).
pub const MAX_REQUEST_DATA: usize = 4;
/// Longest response data of a [`Response`] (Get Device ID, without its
/// optional auxiliary firmware revision).
pub const MAX_RESPONSE_DATA: usize = 12;

/// A request of the core to an IPMC (or of the shelf manager, seen on the bus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Request {
    /// Get Device ID (the probe).
    GetDeviceId,
    /// Get Sensor Reading (the hot-swap sensor while fencing).
    GetSensorReading {
        /// Sensor number.
        sensor_number: u8,
    },
    /// PICMG Set FRU Activation.
    SetFruActivation {
        /// FRU device id.
        fru_id: u8,
        /// Activate (true) or deactivate.
        activate: bool,
    },
    /// PICMG FRU Control.
    FruControl {
        /// FRU device id.
        fru_id: u8,
        /// What to do.
        option: FruControlOption,
    },
    /// PICMG Set Power Level.
    SetPowerLevel {
        /// FRU device id.
        fru_id: u8,
        /// Power level (0 = off).
        level: u8,
        /// Copy the desired levels to the present levels.
        copy_desired: bool,
    },
}

/// Why request data was not a [`Request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// A netFn/cmd pair that is not one of [`Request`]'s commands.
    Unknown {
        /// netFn.
        net_fn: u8,
        /// Command.
        cmd: u8,
    },
    /// Fewer bytes than the command takes.
    Truncated,
    /// A PICMG request whose first byte is not the PICMG identifier.
    NotPicmg(u8),
    /// A field outside its range (a FRU Control option, an activation byte).
    Invalid,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown { net_fn, cmd } => {
                write!(
                    f,
                    "not a known request (netFn 0x{net_fn:02x} cmd 0x{cmd:02x})"
                )
            }
            Self::Truncated => f.write_str("request data truncated"),
            Self::NotPicmg(id) => write!(f, "not a PICMG request (identifier 0x{id:02x})"),
            Self::Invalid => f.write_str("request field out of range"),
        }
    }
}

impl core::error::Error for RequestError {}

impl Request {
    /// Request netFn.
    pub const fn net_fn(&self) -> u8 {
        match self {
            Self::GetDeviceId => cmd::NETFN_APP,
            Self::GetSensorReading { .. } => cmd::NETFN_SENSOR_EVENT,
            Self::SetFruActivation { .. }
            | Self::FruControl { .. }
            | Self::SetPowerLevel { .. } => cmd::NETFN_GROUP_EXT,
        }
    }

    /// Command code.
    pub const fn cmd(&self) -> u8 {
        match self {
            Self::GetDeviceId => cmd::CMD_GET_DEVICE_ID,
            Self::GetSensorReading { .. } => cmd::CMD_GET_SENSOR_READING,
            Self::SetFruActivation { .. } => cmd::CMD_SET_FRU_ACTIVATION,
            Self::FruControl { .. } => cmd::CMD_FRU_CONTROL,
            Self::SetPowerLevel { .. } => cmd::CMD_SET_POWER_LEVEL,
        }
    }

    /// Writes the request data into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8; MAX_REQUEST_DATA]) -> usize {
        let data: &[u8] = match *self {
            Self::GetDeviceId => &cmd::get_device_id(),
            Self::GetSensorReading { sensor_number } => &cmd::get_sensor_reading(sensor_number),
            Self::SetFruActivation { fru_id, activate } => {
                &cmd::set_fru_activation(fru_id, activate)
            }
            Self::FruControl { fru_id, option } => &cmd::fru_control(fru_id, option),
            Self::SetPowerLevel {
                fru_id,
                level,
                copy_desired,
            } => &cmd::set_power_level(fru_id, level, copy_desired),
        };
        buf[..data.len()].copy_from_slice(data);
        data.len()
    }

    /// Decodes the request data of netFn `net_fn`, command `cmd`. Bytes after
    /// the command's last are ignored; a Set Power Level without its copy
    /// byte reads as "no copy".
    pub fn parse(net_fn: u8, cmd_code: u8, data: &[u8]) -> Result<Self, RequestError> {
        let picmg = |n: usize| -> Result<&[u8], RequestError> {
            let d = data.get(..n).ok_or(RequestError::Truncated)?;
            if d[0] != PICMG_ID {
                return Err(RequestError::NotPicmg(d[0]));
            }
            Ok(d)
        };
        match (net_fn, cmd_code) {
            (cmd::NETFN_APP, cmd::CMD_GET_DEVICE_ID) => Ok(Self::GetDeviceId),
            (cmd::NETFN_SENSOR_EVENT, cmd::CMD_GET_SENSOR_READING) => {
                let &sensor_number = data.first().ok_or(RequestError::Truncated)?;
                Ok(Self::GetSensorReading { sensor_number })
            }
            (cmd::NETFN_GROUP_EXT, cmd::CMD_SET_FRU_ACTIVATION) => {
                let d = picmg(3)?;
                let activate = match d[2] {
                    0 => false,
                    1 => true,
                    _ => return Err(RequestError::Invalid),
                };
                Ok(Self::SetFruActivation {
                    fru_id: d[1],
                    activate,
                })
            }
            (cmd::NETFN_GROUP_EXT, cmd::CMD_FRU_CONTROL) => {
                let d = picmg(3)?;
                let option = FruControlOption::from_code(d[2]).ok_or(RequestError::Invalid)?;
                Ok(Self::FruControl {
                    fru_id: d[1],
                    option,
                })
            }
            (cmd::NETFN_GROUP_EXT, cmd::CMD_SET_POWER_LEVEL) => {
                let d = picmg(3)?;
                Ok(Self::SetPowerLevel {
                    fru_id: d[1],
                    level: d[2],
                    copy_desired: data.get(3) == Some(&1),
                })
            }
            _ => Err(RequestError::Unknown {
                net_fn,
                cmd: cmd_code,
            }),
        }
    }

    /// A deactivation of FRU 0 (Set FRU Activation deactivate, or Set Power
    /// Level 0): what makes a blade's coming M1/M0 commanded.
    pub const fn deactivates_fru0(&self) -> bool {
        matches!(
            self,
            Self::SetFruActivation {
                fru_id: 0,
                activate: false
            } | Self::SetPowerLevel {
                fru_id: 0,
                level: 0,
                ..
            }
        )
    }
}

/// What a response says, decoded by the command it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Get Device ID answered.
    DeviceId(DeviceId),
    /// Get Sensor Reading answered.
    SensorReading {
        /// The reading.
        reading: SensorReading,
        /// The discrete state bytes were sent.
        with_states: bool,
    },
    /// Any other command completed (completion code 0x00, and the PICMG
    /// identifier for a PICMG command).
    Done,
    /// Refused (error completion code) or not what the command promises.
    Failed(ResponseError),
}

/// A response: its netFn (odd) and command as received, and its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// Response netFn (the request's + 1).
    pub net_fn: u8,
    /// Command code.
    pub cmd: u8,
    /// What it says.
    pub body: Body,
}

impl Response {
    /// Decodes response data (completion code first) of netFn `net_fn`,
    /// command `cmd`. Never fails: malformed data is [`Body::Failed`].
    pub fn parse(net_fn: u8, cmd_code: u8, data: &[u8]) -> Self {
        let body = match (net_fn, cmd_code) {
            (n, cmd::CMD_GET_DEVICE_ID) if n == cmd::NETFN_APP | 1 => {
                DeviceId::parse(data).map_or_else(Body::Failed, Body::DeviceId)
            }
            (n, cmd::CMD_GET_SENSOR_READING) if n == cmd::NETFN_SENSOR_EVENT | 1 => {
                match SensorReading::parse(data) {
                    Ok(reading) => Body::SensorReading {
                        reading,
                        with_states: data.len() >= 4,
                    },
                    Err(e) => Body::Failed(e),
                }
            }
            (cmd::NETFN_GROUP_EXT_RSP, _) => {
                check_picmg_response(data).map_or_else(Body::Failed, |()| Body::Done)
            }
            _ => check_response(data).map_or_else(Body::Failed, |()| Body::Done),
        };
        Self {
            net_fn,
            cmd: cmd_code,
            body,
        }
    }

    /// Writes the response data into `buf`; returns its length. A
    /// [`ResponseError::Truncated`] body emits no byte.
    pub fn emit(&self, buf: &mut [u8; MAX_RESPONSE_DATA]) -> usize {
        let picmg = self.net_fn == cmd::NETFN_GROUP_EXT_RSP;
        let mut put = |bytes: &[u8]| {
            buf[..bytes.len()].copy_from_slice(bytes);
            bytes.len()
        };
        match self.body {
            Body::DeviceId(d) => {
                let m = d.manufacturer_id.to_le_bytes();
                let p = d.product_id.to_le_bytes();
                put(&[
                    0x00,
                    d.device_id,
                    (d.device_revision & 0x0F) | if d.provides_sdrs { 0x80 } else { 0 },
                    (d.firmware_major & 0x7F) | if d.available { 0 } else { 0x80 },
                    d.firmware_minor,
                    d.ipmi_version,
                    d.additional_support,
                    m[0],
                    m[1],
                    m[2] & 0x0F,
                    p[0],
                    p[1],
                ])
            }
            Body::SensorReading {
                reading: r,
                with_states,
            } => {
                let flags = if r.events_enabled { 0x80 } else { 0 }
                    | if r.scanning_enabled { 0x40 } else { 0 }
                    | if r.unavailable { 0x20 } else { 0 };
                let s = r.states.to_le_bytes();
                let all = [0x00, r.reading, flags, s[0], s[1] & 0x7F];
                put(if with_states { &all } else { &all[..3] })
            }
            Body::Done if picmg => put(&[0x00, PICMG_ID]),
            Body::Done => put(&[0x00]),
            Body::Failed(ResponseError::Truncated) => 0,
            Body::Failed(ResponseError::Completion(cc)) => put(&[u8::from(cc)]),
            Body::Failed(ResponseError::NotPicmg(id)) => put(&[0x00, id]),
        }
    }

    /// The M-state of a FRU Hot Swap sensor from a Get Sensor Reading
    /// answer: PICMG 3.0 §3.2.4.3 asserts exactly one of state bits 0..=7,
    /// bit n = Mn. `None` for any other body, an unavailable reading, no
    /// state bytes, or not exactly one state bit set.
    pub fn hot_swap_state(&self) -> Option<MState> {
        let Body::SensorReading {
            reading,
            with_states: true,
        } = self.body
        else {
            return None;
        };
        let bits = reading.states & 0x00FF;
        if reading.unavailable || bits.count_ones() != 1 {
            return None;
        }
        MState::from_code(bits.trailing_zeros() as u8)
    }

    /// The completion code, when the body carries one other than 0x00.
    pub fn refused(&self) -> Option<CompletionCode> {
        match self.body {
            Body::Failed(ResponseError::Completion(cc)) => Some(cc),
            _ => None,
        }
    }
}

/// What one IPMB message is, for the runtime's demux (the same for every
/// source: bus, capture, demo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// A response (odd netFn) from `from` (its rqSA field).
    Response {
        /// Sender.
        from: IpmbAddr,
        /// Sequence number of the request it answers.
        rq_seq: u8,
        /// What it says.
        response: Response,
    },
    /// A Platform Event request (the sender expects completion code 0x00).
    PlatformEvent {
        /// Sequence number (duplicate suppression).
        rq_seq: u8,
        /// The event, or why its data was refused.
        event: Result<PlatformEvent, EventError>,
    },
    /// Any other request, from `from` to `to`.
    Request {
        /// Sender (rqSA).
        from: IpmbAddr,
        /// Destination (rsSA).
        to: IpmbAddr,
        /// netFn.
        net_fn: u8,
        /// Command.
        cmd: u8,
        /// The request, when it is one of [`Request`]'s commands.
        request: Result<Request, RequestError>,
    },
}

impl Inbound {
    /// Sorts `repr`.
    pub fn parse(repr: &Repr<'_>) -> Self {
        if repr.is_response() {
            return Self::Response {
                from: IpmbAddr(repr.rq_sa),
                rq_seq: repr.rq_seq,
                response: Response::parse(repr.net_fn, repr.cmd, repr.data),
            };
        }
        if let Some(event) = cmd::platform_event(repr) {
            return Self::PlatformEvent {
                rq_seq: repr.rq_seq,
                event,
            };
        }
        Self::Request {
            from: IpmbAddr(repr.rq_sa),
            to: IpmbAddr(repr.rs_sa),
            net_fn: repr.net_fn,
            cmd: repr.cmd,
            request: Request::parse(repr.net_fn, repr.cmd, repr.data),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn request_round_trip(req: Request, golden: &[u8]) {
        let mut buf = [0u8; MAX_REQUEST_DATA];
        let n = req.emit(&mut buf);
        assert_eq!(&buf[..n], golden, "{req:?}");
        assert_eq!(Request::parse(req.net_fn(), req.cmd(), golden), Ok(req));
    }

    fn response_round_trip(net_fn: u8, cmd_code: u8, golden: &[u8], body: Body) {
        let rsp = Response::parse(net_fn, cmd_code, golden);
        assert_eq!(rsp.body, body, "{golden:02x?}");
        let mut buf = [0u8; MAX_RESPONSE_DATA];
        let n = rsp.emit(&mut buf);
        assert_eq!(&buf[..n], golden);
    }

    #[test]
    fn test_request_golden_vectors() {
        request_round_trip(Request::GetDeviceId, &[]);
        request_round_trip(
            Request::GetSensorReading {
                sensor_number: 0x42,
            },
            &[0x42],
        );
        request_round_trip(
            Request::SetFruActivation {
                fru_id: 0,
                activate: false,
            },
            &[0x00, 0x00, 0x00],
        );
        request_round_trip(
            Request::SetFruActivation {
                fru_id: 3,
                activate: true,
            },
            &[0x00, 0x03, 0x01],
        );
        request_round_trip(
            Request::FruControl {
                fru_id: 0,
                option: FruControlOption::ColdReset,
            },
            &[0x00, 0x00, 0x00],
        );
        request_round_trip(
            Request::SetPowerLevel {
                fru_id: 0,
                level: 0,
                copy_desired: false,
            },
            &[0x00, 0x00, 0x00, 0x00],
        );
        request_round_trip(
            Request::SetPowerLevel {
                fru_id: 1,
                level: 2,
                copy_desired: true,
            },
            &[0x00, 0x01, 0x02, 0x01],
        );
    }

    #[test]
    fn test_request_refusals() {
        let (g, a) = (cmd::NETFN_GROUP_EXT, cmd::CMD_SET_FRU_ACTIVATION);
        assert_eq!(
            Request::parse(g, a, &[0x00, 0x00]),
            Err(RequestError::Truncated)
        );
        assert_eq!(
            Request::parse(g, a, &[0x05, 0x00, 0x00]),
            Err(RequestError::NotPicmg(5))
        );
        assert_eq!(
            Request::parse(g, a, &[0x00, 0x00, 0x02]),
            Err(RequestError::Invalid)
        );
        assert_eq!(
            Request::parse(g, cmd::CMD_FRU_CONTROL, &[0x00, 0x00, 0x09]),
            Err(RequestError::Invalid)
        );
        assert_eq!(
            Request::parse(0x30, 0x01, &[]),
            Err(RequestError::Unknown {
                net_fn: 0x30,
                cmd: 0x01
            })
        );
        assert_eq!(
            Request::parse(cmd::NETFN_SENSOR_EVENT, cmd::CMD_GET_SENSOR_READING, &[]),
            Err(RequestError::Truncated)
        );
    }

    #[test]
    fn test_deactivation_of_fru0() {
        let parse = |c, d: &[u8]| Request::parse(cmd::NETFN_GROUP_EXT, c, d).unwrap();
        assert!(parse(cmd::CMD_SET_FRU_ACTIVATION, &[0, 0, 0]).deactivates_fru0());
        assert!(parse(cmd::CMD_SET_POWER_LEVEL, &[0, 0, 0]).deactivates_fru0());
        assert!(parse(cmd::CMD_SET_POWER_LEVEL, &[0, 0, 0, 1, 9]).deactivates_fru0());
        assert!(!parse(cmd::CMD_SET_FRU_ACTIVATION, &[0, 0, 1]).deactivates_fru0());
        assert!(!parse(cmd::CMD_SET_FRU_ACTIVATION, &[0, 1, 0]).deactivates_fru0());
        assert!(!parse(cmd::CMD_SET_POWER_LEVEL, &[0, 0, 1, 0]).deactivates_fru0());
        assert!(!parse(cmd::CMD_FRU_CONTROL, &[0, 0, 0]).deactivates_fru0());
    }

    #[test]
    fn test_response_golden_vectors() {
        let data = [
            0x00, 0x00, 0x81, 0x02, 0x10, 0x51, 0x29, 0x00, 0x90, 0x00, 0x02, 0x00,
        ];
        let id = DeviceId::parse(&data).unwrap();
        response_round_trip(0x07, cmd::CMD_GET_DEVICE_ID, &data, Body::DeviceId(id));
        // Hot-swap sensor in M1 (state bit 1), scanning and events enabled.
        let m1 = [0x00, 0x00, 0xC0, 0x02, 0x00];
        response_round_trip(
            0x05,
            cmd::CMD_GET_SENSOR_READING,
            &m1,
            Body::SensorReading {
                reading: SensorReading::parse(&m1).unwrap(),
                with_states: true,
            },
        );
        assert_eq!(
            Response::parse(0x05, cmd::CMD_GET_SENSOR_READING, &m1).hot_swap_state(),
            Some(MState::M1)
        );
        let no_states = [0x00, 0x00, 0xC0];
        let r = Response::parse(0x05, cmd::CMD_GET_SENSOR_READING, &no_states);
        assert_eq!(r.hot_swap_state(), None);
        response_round_trip(0x05, cmd::CMD_GET_SENSOR_READING, &no_states, r.body);
        response_round_trip(
            cmd::NETFN_GROUP_EXT_RSP,
            cmd::CMD_SET_FRU_ACTIVATION,
            &[0x00, 0x00],
            Body::Done,
        );
        response_round_trip(
            cmd::NETFN_GROUP_EXT_RSP,
            cmd::CMD_SET_POWER_LEVEL,
            &[0xCC],
            Body::Failed(ResponseError::Completion(CompletionCode::InvalidDataField)),
        );
        response_round_trip(
            cmd::NETFN_GROUP_EXT_RSP,
            cmd::CMD_FRU_CONTROL,
            &[0x00, 0x07],
            Body::Failed(ResponseError::NotPicmg(0x07)),
        );
        response_round_trip(
            cmd::NETFN_GROUP_EXT_RSP,
            cmd::CMD_FRU_CONTROL,
            &[],
            Body::Failed(ResponseError::Truncated),
        );
        response_round_trip(0x0B, 0x40, &[0x00], Body::Done);
    }

    #[test]
    fn test_hot_swap_state_agrees_with_the_raw_decoder() {
        let cases: [&[u8]; 7] = [
            &[0x00, 0x00, 0xC0, 0x10, 0x00],
            &[0x00, 0x00, 0xE0, 0x02, 0x00],
            &[0x00, 0x00, 0xC0, 0x03, 0x00],
            &[0x00, 0x00, 0xC0, 0x01],
            &[0x00, 0x00, 0xC0],
            &[0xC3],
            &[],
        ];
        for data in cases {
            let typed = Response::parse(0x05, cmd::CMD_GET_SENSOR_READING, data).hot_swap_state();
            assert_eq!(typed, cmd::hot_swap_state(data), "{data:02x?}");
        }
    }

    #[test]
    fn test_inbound_sorts_messages() {
        let rsp = Repr {
            rs_sa: 0x20,
            net_fn: cmd::NETFN_GROUP_EXT_RSP,
            rs_lun: 0,
            rq_sa: 0x82,
            rq_seq: 9,
            rq_lun: 0,
            cmd: cmd::CMD_SET_FRU_ACTIVATION,
            data: &[0x00, 0x00],
        };
        assert_eq!(
            Inbound::parse(&rsp),
            Inbound::Response {
                from: IpmbAddr(0x82),
                rq_seq: 9,
                response: Response {
                    net_fn: cmd::NETFN_GROUP_EXT_RSP,
                    cmd: cmd::CMD_SET_FRU_ACTIVATION,
                    body: Body::Done
                }
            }
        );
        let ev_data = [0x04, 0xF0, 0x00, 0x6F, 0xA5, 0x24, 0x00];
        let ev = Repr {
            net_fn: cmd::NETFN_SENSOR_EVENT,
            cmd: cmd::CMD_PLATFORM_EVENT,
            data: &ev_data,
            ..rsp
        };
        assert_eq!(
            Inbound::parse(&ev),
            Inbound::PlatformEvent {
                rq_seq: 9,
                event: PlatformEvent::parse(IpmbAddr(0x82), 0, &ev_data)
            }
        );
        let own = Repr {
            rs_sa: 0x84,
            rq_sa: 0x20,
            net_fn: cmd::NETFN_GROUP_EXT,
            cmd: cmd::CMD_SET_POWER_LEVEL,
            data: &[0x00, 0x00, 0x00, 0x00],
            ..rsp
        };
        assert_eq!(
            Inbound::parse(&own),
            Inbound::Request {
                from: IpmbAddr(0x20),
                to: IpmbAddr(0x84),
                net_fn: cmd::NETFN_GROUP_EXT,
                cmd: cmd::CMD_SET_POWER_LEVEL,
                request: Ok(Request::SetPowerLevel {
                    fru_id: 0,
                    level: 0,
                    copy_desired: false
                })
            }
        );
    }
}
