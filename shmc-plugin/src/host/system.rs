//! The system-interface event source: shmc-plugin on a shelf manager whose
//! own daemon owns the IPMB reads that daemon's SEL through the local IPMI
//! driver (`/dev/ipmi0`, Linux `ipmi_devintf`) and reaches blade IPMCs with
//! the driver's IPMB addressing (the driver does the bridging; no Send
//! Message is built here). Polling, cursor and outage handling are those of
//! [`super::rmcp`].

use std::time::Duration;

use super::agent::AgentLink;
use super::rmcp::{
    no_answer, run_source, IpmiSession, JsonLines, SessionError, SourceError, Target,
};
use crate::config::file::HostConfig;
use crate::config::source::SystemSource;

/// A session over the IPMI character device.
pub struct SystemSession {
    file: ipmi_rs::File,
}

impl SystemSession {
    /// Opens `src.device`.
    pub fn open(src: &SystemSource) -> Result<SystemSession, SessionError> {
        let timeout = Duration::from_millis(src.polling.timeout_ms);
        match ipmi_rs::File::new(&src.device, timeout) {
            Ok(file) => Ok(SystemSession { file }),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(
                SessionError::Refused(format!("{}: {e}", src.device.display())),
            ),
            Err(e) => Err(SessionError::Lost(format!("{}: {e}", src.device.display()))),
        }
    }
}

impl IpmiSession for SystemSession {
    fn request(
        &mut self,
        target: Target,
        net_fn: u8,
        cmd: u8,
        _rq_seq: u8,
        data: &[u8],
    ) -> Result<Vec<u8>, SessionError> {
        use ipmi_rs::connection::{
            Address, Channel, IpmiConnection, LogicalUnit, Message, Request, RequestTargetAddress,
        };
        let address = match target {
            Target::Bmc => RequestTargetAddress::Bmc(LogicalUnit::Zero),
            Target::Ipmb { channel, address } => RequestTargetAddress::BmcOrIpmb(
                Address(address),
                Channel::new(channel)
                    .ok_or_else(|| SessionError::Lost(format!("bad channel {channel}")))?,
                LogicalUnit::Zero,
            ),
        };
        let mut req = Request::new(Message::new_raw(net_fn, cmd, data.to_vec()), address);
        match self.file.send_recv(&mut req) {
            Ok(rsp) if rsp.netfn_raw() == net_fn | 1 && rsp.cmd() == cmd => {
                let mut out = Vec::with_capacity(rsp.data().len() + 1);
                out.push(rsp.cc());
                out.extend_from_slice(rsp.data());
                // The driver answers an unanswered IPMB request itself (0xC3).
                if matches!(target, Target::Ipmb { .. }) && no_answer(&out) {
                    return Err(SessionError::Bridge(out[0]));
                }
                Ok(out)
            }
            Ok(rsp) => Err(SessionError::Lost(format!(
                "answer netFn 0x{:02x} cmd 0x{:02x} to a request netFn 0x{net_fn:02x} cmd 0x{cmd:02x}",
                rsp.netfn_raw(),
                rsp.cmd()
            ))),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Err(SessionError::Timeout),
            // The driver reports an unanswered IPMB request as a response
            // with an error completion code, or as a sequence mismatch later.
            Err(e) if matches!(target, Target::Ipmb { .. }) => {
                log::debug!("system interface: request to {target:?}: {e}");
                Err(SessionError::Timeout)
            }
            Err(e) => Err(SessionError::Lost(e.to_string())),
        }
    }
}

/// Runs the shelf with the system interface source `src`.
pub fn run(
    cfg: &HostConfig,
    src: &SystemSource,
    agents: &mut dyn AgentLink,
    json: &mut JsonLines<'_>,
) -> Result<(), SourceError> {
    let label = format!("system {}", src.device.display());
    run_source(
        cfg,
        &label,
        src.polling,
        &mut || SystemSession::open(src),
        agents,
        json,
    )
}
