//! Wire formats: where IPMB bytes become typed messages and events.
//!
//! - [`addr`]: typed blade identities (`Slot`, `IpmbAddr`).
//! - [`event`]: what an IPMC reported (Platform Event, hot-swap states, sensor types).
//! - [`ipmb`]: one IPMB message in the Linux `ipmb_dev_int` layout (IPMI v2.0 §7).
//! - [`framer`]: whole messages out of a byte stream or a message-oriented device.
//! - [`cmd`]: IPMI / PICMG 3.0 command codes, request builders, response decoders.
//! - [`command`]: typed requests and responses ([`command::Request`], [`command::Response`]).
//! - [`sel`]: 16-byte SEL system event records (IPMI v2.0 §32.1) to and from events.
//! - `code`: the `code_enum!` macro behind every one-byte code table.
//!
//! Everything here is `no_std` and allocates nothing; untrusted bytes only ever
//! produce a value or a typed error.

pub mod addr;
pub mod cmd;
mod code;
pub mod command;
pub mod event;
pub mod framer;
pub mod ipmb;
pub mod sel;
