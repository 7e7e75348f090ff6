//! The event sources: where bytes, events and time come from. Each drives
//! the same [`super::runtime::Runtime`].
//!
//! - [`ipmb`]: the IPMB device (`ipmb_dev_int` message device, or a byte
//!   stream such as a pty), the daemon's poll loop;
//! - [`replay`]: a capture file, deterministic, JSON lines out;
//! - [`sel`]: the shelf manager's System Event Log over an IPMI session
//!   (RMCP+ or the system interface), requests bridged.

pub mod ipmb;
pub mod replay;
#[cfg(feature = "rmcp")]
pub mod sel;
