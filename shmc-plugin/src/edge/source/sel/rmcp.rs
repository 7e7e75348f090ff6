//! The RMCP+ session (IPMI v2.0 §13) of a SEL source: opened by `ipmi-rs`
//! (RAKP with cipher suite 3), then raised to ADMINISTRATOR with Set Session
//! Privilege Level (§22.18; PICMG and bridged commands are refused with 0xD4
//! at the session's initial privilege); requests to blade IPMCs are wrapped
//! in Send Message (§22.7, netFn 0x06 cmd 0x34, "track request") built
//! here. The BMC answers Send Message at once with a completion code; the
//! blade's response arrives later as a second message of the session.

use std::time::{Duration, Instant};

use log::debug;

use super::session::{no_answer, IpmiSession, SessionError, Target};
use super::{run_source, SourceError};
use crate::config::file::HostConfig;
use crate::config::source::RmcpSource;
use crate::edge::agents::AgentLink;
use crate::edge::record::RecordSink;
use crate::edge::stop::StopSignals;
use crate::wire::addr::IpmbAddr;
use crate::wire::cmd;
use crate::wire::ipmb::Repr;

/// App netFn command Send Message.
pub const CMD_SEND_MESSAGE: u8 = 0x34;
/// App netFn command Set Session Privilege Level.
pub const CMD_SET_SESSION_PRIVILEGE: u8 = 0x3B;
/// Privilege level ADMINISTRATOR.
pub const PRIVILEGE_ADMINISTRATOR: u8 = 0x04;
/// Send Message channel byte flag: track the request, deliver the response.
pub const SEND_MESSAGE_TRACK: u8 = 0x40;

/// Picks the awaited answer out of received messages: (netFn, cmd, data
/// with completion code) -> the answer's data.
type Accept<'a> = dyn FnMut(u8, u8, &[u8]) -> Option<Vec<u8>> + 'a;

/// An RMCP+ session through `ipmi-rs`, raised to ADMINISTRATOR, with
/// hand-built bridging.
pub struct RmcpSession {
    rmcp: ipmi_rs::rmcp::Rmcp,
    own_address: u8,
    timeout: Duration,
    stray: u64,
    messages: u64,
}

/// `ipmi-rs` answers some malformed input with a panic: keep it inside the
/// session (the session is then treated as lost and reopened).
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, SessionError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|_| SessionError::Lost(format!("ipmi-rs failed during {what}")))
}

fn io_lost(e: &std::io::Error) -> SessionError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => SessionError::Timeout,
        _ => SessionError::Lost(e.to_string()),
    }
}

fn rmcp_error(e: ipmi_rs::rmcp::RmcpIpmiError) -> SessionError {
    use ipmi_rs::rmcp::{RmcpIpmiError as E, RmcpIpmiReceiveError as R, RmcpIpmiSendError as S};
    match e {
        E::Receive(R::Io(io)) => io_lost(&io),
        E::Send(S::V2_0(ipmi_rs::rmcp::V2_0WriteError::Io(io)))
        | E::Send(S::V1_5(ipmi_rs::rmcp::V1_5WriteError::Io(io))) => {
            SessionError::Lost(io.to_string())
        }
        other => SessionError::Lost(format!("{other:?}")),
    }
}

/// Whether an activation error means "wrong credentials" rather than "no peer".
fn activation_error(e: ipmi_rs::rmcp::ActivationError) -> SessionError {
    use ipmi_rs::rmcp::{ActivationError as A, V2_0ActivationError as V2};
    match e {
        A::BindSocket(io) | A::PingSend(io) | A::PongReceive(io) => {
            SessionError::Lost(format!("no RMCP answer: {io}"))
        }
        A::V2_0(V2::Io(io)) => SessionError::Lost(io.to_string()),
        A::V2_0(V2::OpenSessionResponseReceive(r))
        | A::V2_0(V2::RakpMessage2Receive(r))
        | A::V2_0(V2::RakpMessage4Receive(r)) => SessionError::Lost(format!("{r:?}")),
        A::V2_0(V2::ServerAuthenticationFailed)
        | A::V2_0(V2::RakpMessage4InvalidIntegrityCheckValue) => {
            SessionError::Refused("authentication failed: wrong user name or password".into())
        }
        A::V2_0(V2::RakpMessage2Parse(p)) => {
            SessionError::Refused(format!("RAKP message 2 refused the user: {p:?}"))
        }
        A::V2_0(V2::OpenSessionResponseParse(p)) => {
            SessionError::Refused(format!("Open Session refused: {p:?}"))
        }
        other => SessionError::Refused(format!("{other:?}")),
    }
}

impl RmcpSession {
    /// Opens a session to `src` and raises it to ADMINISTRATOR; bridged
    /// requests carry `own_address` as requester.
    pub fn open(src: &RmcpSource, own_address: IpmbAddr) -> Result<RmcpSession, SessionError> {
        let timeout = Duration::from_millis(src.polling.timeout_ms);
        let mut rmcp = ipmi_rs::rmcp::Rmcp::new((src.host.as_str(), src.port), timeout)
            .map_err(|e| SessionError::Lost(format!("{}:{}: {e}", src.host, src.port)))?;
        guarded("session activation", || {
            rmcp.activate(true, Some(&src.user), Some(src.password.bytes()))
        })?
        .map_err(activation_error)?;
        let mut s = RmcpSession {
            rmcp,
            own_address: own_address.get(),
            timeout,
            stray: 0,
            messages: 0,
        };
        let rsp = s.request(
            Target::Bmc,
            cmd::NETFN_APP,
            CMD_SET_SESSION_PRIVILEGE,
            0,
            &[PRIVILEGE_ADMINISTRATOR],
        )?;
        match rsp.as_slice() {
            [0, level, ..] if level & 0x0F == PRIVILEGE_ADMINISTRATOR => Ok(s),
            [0, level, ..] => Err(SessionError::Refused(format!(
                "Set Session Privilege Level gave level {level:#x}, not ADMINISTRATOR"
            ))),
            [cc, ..] => Err(SessionError::Refused(format!(
                "Set Session Privilege Level (ADMINISTRATOR) completion code 0x{cc:02x}"
            ))),
            [] => Err(SessionError::Lost("empty answer".into())),
        }
    }

    fn send(&mut self, net_fn: u8, cmd_code: u8, data: &[u8]) -> Result<(), SessionError> {
        use ipmi_rs::connection::{
            IpmiConnection, LogicalUnit, Message, Request, RequestTargetAddress,
        };
        // ipmi-rs does not handle its session sequence number wrapping: reopen well before.
        self.messages += 1;
        if self.messages > 0x7FFF_FFFF {
            return Err(SessionError::Lost(
                "session sequence number exhausted".into(),
            ));
        }
        let mut req = Request::new(
            Message::new_raw(net_fn, cmd_code, data.to_vec()),
            RequestTargetAddress::Bmc(LogicalUnit::Zero),
        );
        guarded("send", || self.rmcp.send(&mut req))?.map_err(rmcp_error)
    }

    /// Receives messages until `accept` takes one or `deadline` passes.
    fn receive(
        &mut self,
        deadline: Instant,
        accept: &mut Accept<'_>,
    ) -> Result<Vec<u8>, SessionError> {
        use ipmi_rs::connection::IpmiConnection;
        loop {
            if Instant::now() >= deadline {
                return Err(SessionError::Timeout);
            }
            let rsp = guarded("receive", || self.rmcp.recv())?.map_err(rmcp_error)?;
            let mut data = Vec::with_capacity(rsp.data().len() + 1);
            data.push(rsp.cc());
            data.extend_from_slice(rsp.data());
            let (net_fn, cmd_code) = (rsp.netfn_raw(), rsp.cmd());
            match accept(net_fn, cmd_code, &data) {
                Some(d) => return Ok(d),
                None => {
                    self.stray += 1;
                    debug!(
                        "RMCP+: message netFn 0x{net_fn:02x} cmd 0x{cmd_code:02x} {data:02x?} answers nothing pending; dropped"
                    );
                }
            }
        }
    }
}

/// Decodes the second message of a bridged exchange: the blade's response
/// as the BMC forwards it. Accepts the response carried as the session
/// message itself (netFn/cmd of the inner request) or encapsulated whole in
/// a Send Message response (`[rqSA][netFn][chk][rsSA][rqSeq][cmd][cc][data][chk]`).
/// Returns the response data (completion code first) when it answers
/// `net_fn`/`cmd_code` (and, when encapsulated, `address`/`rq_seq`).
pub fn bridged_response(
    outer_net_fn: u8,
    outer_cmd: u8,
    data: &[u8],
    address: u8,
    net_fn: u8,
    cmd_code: u8,
    rq_seq: u8,
) -> Option<Vec<u8>> {
    if outer_net_fn == net_fn | 1 && outer_cmd == cmd_code {
        return Some(data.to_vec());
    }
    if outer_net_fn != cmd::NETFN_APP | 1 || outer_cmd != CMD_SEND_MESSAGE {
        return None;
    }
    // Encapsulated: data = [cc of the outer message][IPMB response message].
    let msg = data.get(1..)?;
    if msg.len() < 8 {
        return None;
    }
    let mut framed = [0u8; crate::capacity::MAX_IPMB_MESSAGE];
    let n = msg.len();
    if n + 1 > framed.len() {
        return None;
    }
    framed[0] = u8::try_from(n).ok()?;
    framed[1..=n].copy_from_slice(msg);
    let repr = crate::wire::ipmb::Frame::new_checked(&framed[..=n])
        .ok()
        .and_then(|f| Repr::parse(&f).ok())?;
    (repr.net_fn == net_fn | 1
        && repr.cmd == cmd_code
        && repr.rq_sa == address
        && repr.rq_seq == rq_seq)
        .then(|| repr.data.to_vec())
}

impl IpmiSession for RmcpSession {
    fn request(
        &mut self,
        target: Target,
        net_fn: u8,
        cmd_code: u8,
        rq_seq: u8,
        data: &[u8],
    ) -> Result<Vec<u8>, SessionError> {
        // The socket's own timeout bounds each receive; this bounds the exchange.
        let timeout = self.timeout;
        match target {
            Target::Bmc => {
                self.send(net_fn, cmd_code, data)?;
                self.receive(Instant::now() + timeout, &mut |nf, c, d| {
                    (nf == net_fn | 1 && c == cmd_code).then(|| d.to_vec())
                })
            }
            Target::Ipmb { channel, address } => {
                let inner = Repr {
                    rs_sa: address,
                    net_fn,
                    rs_lun: 0,
                    rq_sa: self.own_address,
                    rq_seq,
                    rq_lun: 0,
                    cmd: cmd_code,
                    data,
                };
                let mut buf = [0u8; crate::capacity::MAX_IPMB_MESSAGE + 1];
                let n = inner
                    .emit(&mut buf[1..])
                    .map_err(|e| SessionError::Lost(format!("bridged request: {e}")))?;
                // Send Message data: channel byte, then the IPMB message without its len byte.
                buf[1] = SEND_MESSAGE_TRACK | (channel & 0x0F);
                self.send(cmd::NETFN_APP, CMD_SEND_MESSAGE, &buf[1..=n])?;
                let deadline = Instant::now() + timeout;
                // First answer: Send Message's own completion code.
                let outer = self.receive(deadline, &mut |nf, c, d| {
                    (nf == cmd::NETFN_APP | 1 && c == CMD_SEND_MESSAGE && d.len() == 1)
                        .then(|| d.to_vec())
                })?;
                if outer[0] != 0 {
                    return Err(SessionError::Bridge(outer[0]));
                }
                let r = self
                    .receive(deadline, &mut |nf, c, d| {
                        bridged_response(nf, c, d, address, net_fn, cmd_code, rq_seq)
                    })
                    .and_then(|d| {
                        if no_answer(&d) {
                            Err(SessionError::Bridge(d.first().copied().unwrap_or(0)))
                        } else {
                            Ok(d)
                        }
                    });
                if r == Err(SessionError::Timeout) {
                    // The forwarded answer carries no responder address or rqSeq
                    // once ipmi-rs has parsed it: a late one could pass for the
                    // answer to a later request. A BMC-only request (Get SEL
                    // Info) flushes whatever arrives before its own answer.
                    self.send(cmd::NETFN_STORAGE, cmd::CMD_GET_SEL_INFO, &[])?;
                    self.receive(Instant::now() + timeout, &mut |nf, c, d| {
                        (nf == cmd::NETFN_STORAGE | 1 && c == cmd::CMD_GET_SEL_INFO)
                            .then(|| d.to_vec())
                    })?;
                }
                r
            }
        }
    }

    fn stray(&self) -> u64 {
        self.stray
    }
}

/// Runs the shelf with the RMCP+ source `src` (see [`run_source`]).
pub fn run(
    cfg: &HostConfig,
    src: &RmcpSource,
    agents: &mut dyn AgentLink,
    records: &mut dyn RecordSink,
    stop: &StopSignals,
) -> Result<(), SourceError> {
    let label = format!("rmcp {}:{}", src.host, src.port);
    let own = cfg.shelf.own_address;
    run_source(
        cfg,
        &label,
        src.polling,
        &mut || RmcpSession::open(src, own),
        agents,
        records,
        stop,
    )
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_bridged_response_forms() {
        // The blade's response as the session message itself (ipmi_sim's form).
        let d = [0x00, 0x00, 0x83, 0x09];
        assert_eq!(
            bridged_response(0x07, 0x01, &d, 0x82, 0x06, 0x01, 5),
            Some(d.to_vec())
        );
        assert_eq!(bridged_response(0x2D, 0x0C, &d, 0x82, 0x06, 0x01, 5), None);
        // Encapsulated in a Send Message response: Set FRU Activation answer
        // from 0x82, rqSeq 10 (the golden frame of wire::ipmb without len).
        let enc = [0x00, 0x20, 0xB4, 0x2C, 0x82, 0x28, 0x0C, 0x00, 0x00, 0x4A];
        assert_eq!(
            bridged_response(0x07, 0x34, &enc, 0x82, 0x2C, 0x0C, 10),
            Some(vec![0x00, 0x00])
        );
        // Another blade, rqSeq or a bad checksum: not ours.
        assert_eq!(
            bridged_response(0x07, 0x34, &enc, 0x84, 0x2C, 0x0C, 10),
            None
        );
        assert_eq!(
            bridged_response(0x07, 0x34, &enc, 0x82, 0x2C, 0x0C, 11),
            None
        );
        let mut bad = enc;
        bad[9] ^= 1;
        assert_eq!(
            bridged_response(0x07, 0x34, &bad, 0x82, 0x2C, 0x0C, 10),
            None
        );
        assert_eq!(
            bridged_response(0x07, 0x34, &[0x00], 0x82, 0x2C, 0x0C, 10),
            None
        );
    }
}
