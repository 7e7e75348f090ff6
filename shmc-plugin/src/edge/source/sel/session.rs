//! The session a SEL source talks through: one IPMI session able to send a
//! request to the shelf manager or, bridged, to a blade's IPMC, and wait for
//! its answer. Implemented over RMCP+ ([`super::rmcp`]) and over the local
//! system interface ([`super::system`]); tests put a fake SEL behind it.

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The BMC/ShMC the session is with.
    Bmc,
    /// A controller on an IPMB channel behind it (8-bit address).
    Ipmb {
        /// IPMB channel number.
        channel: u8,
        /// 8-bit slave address.
        address: u8,
    },
}

/// Why a request over a session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// No answer in time; the session may still be fine (a blade may be silent).
    #[error("no response in time")]
    Timeout,
    /// The session is unusable (socket error, peer gone, protocol error): reopen it.
    #[error("{0}")]
    Lost(String),
    /// The peer refused our credentials or privilege: retrying will not help.
    #[error("refused: {0}")]
    Refused(String),
    /// Send Message was refused by the BMC with this completion code (the
    /// bridged request did not reach the blade or was not answered).
    #[error("Send Message completion code 0x{0:02x}")]
    Bridge(u8),
}

/// One IPMI session able to send requests and wait for their responses.
pub trait IpmiSession {
    /// Sends a request (`net_fn` even) and returns the response data,
    /// completion code first.
    fn request(
        &mut self,
        target: Target,
        net_fn: u8,
        cmd: u8,
        rq_seq: u8,
        data: &[u8],
    ) -> Result<Vec<u8>, SessionError>;

    /// Messages received that answered nothing pending (late or stray), for the totals.
    fn stray(&self) -> u64 {
        0
    }
}

/// Completion codes a BMC or driver puts in a bridged response it made up
/// itself because the blade did not answer: 0xC3 timeout, 0x82 bus error,
/// 0x83 NAK on write. Such an "answer" is no sign of life, so it counts as
/// none (a blade that really answers with one of them looks silent too).
pub const NO_ANSWER_CODES: [u8; 3] = [0xC3, 0x82, 0x83];

/// Whether bridged response data (completion code first) means the blade did not answer.
pub fn no_answer(rsp: &[u8]) -> bool {
    rsp.first().is_none_or(|cc| NO_ANSWER_CODES.contains(cc))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_made_up_answers_are_no_answer() {
        assert!(no_answer(&[0xC3]));
        assert!(no_answer(&[0x83]));
        assert!(no_answer(&[]));
        assert!(!no_answer(&[0x00, 0x00]));
        assert!(!no_answer(&[0xC1]));
    }
}
