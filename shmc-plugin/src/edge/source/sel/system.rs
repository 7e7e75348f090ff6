//! The system-interface event source: shmc-plugin on a shelf manager whose
//! own daemon owns the IPMB reads that daemon's SEL through the local IPMI
//! driver (`/dev/ipmi0`, Linux `ipmi_devintf`) and reaches blade IPMCs with
//! the driver's IPMB addressing (the driver does the bridging; no Send
//! Message is built here). Polling, cursor and outage handling are those of
//! every SEL source ([`super::run_source`]).

use std::time::Duration;

use super::session::{no_answer, IpmiSession, SessionError, Target};
use super::{run_source, SourceError};
use crate::config::file::HostConfig;
use crate::config::source::SystemSource;
use crate::edge::agents::AgentLink;
use crate::edge::record::RecordSink;
use crate::edge::stop::StopSignals;

/// A session over the IPMI character device.
pub struct SystemSession {
    file: ipmi_rs::File,
    timeout: Duration,
    stray: u64,
}

impl SystemSession {
    /// Opens `src.device`.
    pub fn open(src: &SystemSource) -> Result<SystemSession, SessionError> {
        let timeout = Duration::from_millis(src.polling.timeout_ms);
        match ipmi_rs::File::new(&src.device, timeout) {
            Ok(file) => Ok(SystemSession {
                file,
                timeout,
                stray: 0,
            }),
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
        self.file.send(&mut req).map_err(|e| match target {
            // The driver refuses a request to an address it cannot reach.
            Target::Ipmb { .. } => {
                log::debug!("system interface: request to {target:?} refused: {e}");
                SessionError::Timeout
            }
            Target::Bmc => SessionError::Lost(e.to_string()),
        })?;
        let deadline = std::time::Instant::now() + self.timeout;
        loop {
            match self.file.recv() {
                Ok(rsp) if rsp.netfn_raw() == net_fn | 1 && rsp.cmd() == cmd => {
                    let mut out = Vec::with_capacity(rsp.data().len() + 1);
                    out.push(rsp.cc());
                    out.extend_from_slice(rsp.data());
                    // The driver answers an unanswered IPMB request itself (0xC3).
                    if matches!(target, Target::Ipmb { .. }) && no_answer(&out) {
                        return Err(SessionError::Bridge(out[0]));
                    }
                    return Ok(out);
                }
                Ok(rsp) => {
                    self.stray += 1;
                    log::debug!(
                        "system interface: answer netFn 0x{:02x} cmd 0x{:02x} to an earlier request dropped",
                        rsp.netfn_raw(),
                        rsp.cmd()
                    );
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    return Err(SessionError::Timeout)
                }
                // ipmi-rs reads the late answer to an earlier request, then
                // reports its sequence number as an error: read on.
                Err(e) if e.to_string().starts_with("Invalid sequence number") => {
                    self.stray += 1;
                    log::debug!("system interface: {e}; dropped");
                }
                Err(e) => return Err(SessionError::Lost(e.to_string())),
            }
            if std::time::Instant::now() >= deadline {
                return Err(SessionError::Timeout);
            }
        }
    }

    fn stray(&self) -> u64 {
        self.stray
    }
}

/// Runs the shelf with the system interface source `src` (see [`run_source`]).
pub fn run(
    cfg: &HostConfig,
    src: &SystemSource,
    agents: &mut dyn AgentLink,
    records: &mut dyn RecordSink,
    stop: &StopSignals,
) -> Result<(), SourceError> {
    let label = format!("system {}", src.device.display());
    run_source(
        cfg,
        &label,
        src.polling,
        &mut || SystemSession::open(src),
        agents,
        records,
        stop,
    )
}
