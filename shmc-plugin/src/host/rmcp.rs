//! Event sources over an IPMI session: the shelf manager's System Event Log
//! read over IPMI v2.0 RMCP+ (this module) or through the local system
//! interface ([`super::system`]), with requests to blade IPMCs bridged.
//!
//! The same [`Shelf`] runs unchanged: each new SEL record becomes the
//! [`PlatformEvent`] the IPMC sent (IPMI v2.0 §32.1, [`crate::wire::sel`]) and
//! goes to [`Shelf::on_logged_event`]; each [`Output::Ipmb`] request of the
//! core becomes a bridged request to the blade's IPMC, and its answer goes to
//! [`Shelf::on_ipmb_response`] as if it had been read off IPMB.
//!
//! RMCP+ (IPMI v2.0 §13): the session is opened by `ipmi-rs` (RAKP with
//! cipher suite 3); this module then raises it to ADMINISTRATOR with Set
//! Session Privilege Level (§22.18; PICMG and bridged commands are refused
//! with 0xD4 at the session's initial privilege) and builds Send Message
//! (§22.7, netFn 0x06 cmd 0x34, "track request") by hand. The BMC answers
//! Send Message at once with a completion code; the blade's response arrives
//! later as a second message of the session.
//!
//! SEL polling ([`SelCursor`]): every `poll_interval_ms`, Get SEL Entry of the
//! last processed record; if it is still there with the same bytes, records
//! after it are new. If it is gone or changed, the log was cleared, wrapped
//! or edited: Get SEL Info tells which (its erase timestamp), and the whole
//! log is read again, keeping only records not seen yet (the records seen are
//! remembered byte for byte). At start the records already in the log are
//! history: walked once, remembered, skipped. The cursor survives reconnects,
//! so nothing is processed twice after a session loss.
//!
//! Session loss: the core's clock stops while the session is down (its
//! timers, probe-loss included, see no time pass, so nothing is decided on
//! missing answers that our own link lost), IPMB requests of the core are
//! not sent (its retries run once the clock moves again), the outage is
//! logged as an alert, and the session is reopened with back-off (100 ms
//! doubling to 5 s). Authentication failures are not retried: they end the
//! run with an error.
//!
//! SIGTERM or SIGINT ([`StopSignals`]) is seen at the top of each turn of the
//! loop, whose sleep it interrupts; a request already on the wire finishes
//! first (at most its `timeout_ms`). The stop is logged with the work left
//! open and the totals, the decision stream gets a last `stop` line, and the
//! run returns `Ok`.

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};

use super::agent::AgentLink;
use super::stop::{OpenWork, Stop, StopSignals};
use crate::config::file::HostConfig;
use crate::config::source::{Polling, RmcpSource};
use crate::engine::{unprotected_reason_str, Alert, EventOutcome, Output, Shelf};
use crate::event::PlatformEvent;
use crate::wire::cmd;
use crate::wire::ipmb::Repr;
use crate::wire::sel::{SelRecord, SEL_RECORD_LEN};

/// App netFn command Send Message.
pub const CMD_SEND_MESSAGE: u8 = 0x34;
/// App netFn command Set Session Privilege Level.
pub const CMD_SET_SESSION_PRIVILEGE: u8 = 0x3B;
/// Privilege level ADMINISTRATOR.
pub const PRIVILEGE_ADMINISTRATOR: u8 = 0x04;
/// Send Message channel byte flag: track the request, deliver the response.
pub const SEND_MESSAGE_TRACK: u8 = 0x40;
/// Completion code: requested record not present.
pub const CC_NOT_PRESENT: u8 = 0xCB;
/// Record id that names the first record of the SEL.
pub const SEL_FIRST: u16 = 0x0000;
/// Record id that names the last record (request) or the end (next id).
pub const SEL_LAST: u16 = 0xFFFF;
/// Most records read in one poll before the core's timers run again.
pub const MAX_RECORDS_PER_POLL: usize = 64;
/// Back-off of session reopening: first and longest wait.
pub const BACKOFF_MS: (u64, u64) = (100, 5000);
/// Processed records remembered (exact bytes) to recognise them when the log
/// is re-read after a wrap: more than a 64 KiB SEL holds (4,096 records).
pub const REMEMBERED_RECORDS: usize = 8192;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// No answer in time; the session may still be fine (a blade may be silent).
    Timeout,
    /// The session is unusable (socket error, peer gone, protocol error): reopen it.
    Lost(String),
    /// The peer refused our credentials or privilege: retrying will not help.
    Refused(String),
    /// Send Message was refused by the BMC with this completion code (the
    /// bridged request did not reach the blade or was not answered).
    Bridge(u8),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout => f.write_str("no response in time"),
            Self::Lost(e) => f.write_str(e),
            Self::Refused(e) => write!(f, "refused: {e}"),
            Self::Bridge(cc) => write!(f, "Send Message completion code 0x{cc:02x}"),
        }
    }
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

/// Get SEL Info response fields used here (IPMI v2.0 §31.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelInfo {
    /// Records in the log.
    pub entries: u16,
    /// Most recent addition timestamp.
    pub addition: u32,
    /// Most recent erase (clear) timestamp.
    pub erase: u32,
}

impl SelInfo {
    /// Parses Get SEL Info response data (completion code first).
    pub fn parse(data: &[u8]) -> Option<SelInfo> {
        if data.first() != Some(&0) || data.len() < 14 {
            return None;
        }
        Some(SelInfo {
            entries: u16::from_le_bytes([data[2], data[3]]),
            addition: u32::from_le_bytes([data[6], data[7], data[8], data[9]]),
            erase: u32::from_le_bytes([data[10], data[11], data[12], data[13]]),
        })
    }
}

/// Where SEL reading stands: the last processed record and what is needed
/// to recognise records processed already after a clear or a wrap.
#[derive(Debug, Clone, Default)]
pub struct SelCursor {
    /// Id and exact bytes of the last processed record (None: start from the first).
    last: Option<(u16, [u8; SEL_RECORD_LEN])>,
    /// Erase timestamp of the log as last seen.
    erase: Option<u32>,
    /// The last [`REMEMBERED_RECORDS`] processed records, oldest first, and as a set.
    remembered: VecDeque<[u8; SEL_RECORD_LEN]>,
    remembered_set: HashSet<[u8; SEL_RECORD_LEN]>,
    started: bool,
    /// Records handed out.
    pub records: u64,
    /// Records that are not system events (OEM types), skipped.
    pub skipped: u64,
    /// Times the log was found cleared.
    pub clears: u64,
    /// Times the last record was gone without a clear (wrap, deletion).
    pub discontinuities: u64,
}

/// One SEL record read by [`SelCursor::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewRecord {
    /// The record's id.
    pub record_id: u16,
    /// The decoded record, when it is a system event record.
    pub record: Option<SelRecord>,
}

fn get_entry(
    s: &mut dyn IpmiSession,
    id: u16,
) -> Result<Result<(u16, [u8; SEL_RECORD_LEN]), u8>, SessionError> {
    let rsp = s.request(
        Target::Bmc,
        cmd::NETFN_STORAGE,
        cmd::CMD_GET_SEL_ENTRY,
        0,
        &cmd::get_sel_entry(id),
    )?;
    match rsp.first() {
        Some(0) if rsp.len() >= 3 + SEL_RECORD_LEN => {
            let next = u16::from_le_bytes([rsp[1], rsp[2]]);
            let mut bytes = [0u8; SEL_RECORD_LEN];
            bytes.copy_from_slice(&rsp[3..3 + SEL_RECORD_LEN]);
            Ok(Ok((next, bytes)))
        }
        Some(0) => Err(SessionError::Lost(format!(
            "Get SEL Entry answer of {} bytes",
            rsp.len()
        ))),
        Some(&cc) => Ok(Err(cc)),
        None => Err(SessionError::Lost("empty Get SEL Entry answer".into())),
    }
}

fn get_info(s: &mut dyn IpmiSession) -> Result<SelInfo, SessionError> {
    let rsp = s.request(
        Target::Bmc,
        cmd::NETFN_STORAGE,
        cmd::CMD_GET_SEL_INFO,
        0,
        &[],
    )?;
    SelInfo::parse(&rsp)
        .ok_or_else(|| SessionError::Lost(format!("Get SEL Info answer {rsp:02x?}")))
}

impl SelCursor {
    /// A cursor that has not seen the log yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Id of the last processed record.
    pub fn last_id(&self) -> Option<u16> {
        self.last.map(|(id, _)| id)
    }

    fn mark(&mut self, id: u16, bytes: [u8; SEL_RECORD_LEN]) {
        if self.remembered_set.insert(bytes) {
            self.remembered.push_back(bytes);
            if self.remembered.len() > REMEMBERED_RECORDS {
                if let Some(old) = self.remembered.pop_front() {
                    self.remembered_set.remove(&old);
                }
            }
        }
        self.last = Some((id, bytes));
    }

    /// Whether a record found while re-reading the log after a wrap was
    /// processed already. A wrap drops the oldest records first, so once our
    /// last record is gone every record still there is either one we
    /// processed (remembered byte for byte: id, timestamp, event) or new.
    /// Timestamps are not compared: a controller restarted with its clock
    /// reset (pre-init timestamps) logs new records with smaller ones.
    fn seen_before(&self, bytes: &[u8; SEL_RECORD_LEN]) -> bool {
        self.remembered_set.contains(bytes)
    }

    /// The first call of a session with the log: at the very start, skips
    /// the records already there (history).
    fn start(&mut self, s: &mut dyn IpmiSession) -> Result<(), SessionError> {
        if self.started {
            return Ok(());
        }
        let info = get_info(s)?;
        self.erase = Some(info.erase);
        // Walk the history once, remembering each record, so that none of it
        // can pass for new if the log is later re-read (wrap, deletion).
        let (mut next, mut count) = (SEL_FIRST, 0usize);
        while next != SEL_LAST && count < REMEMBERED_RECORDS {
            match get_entry(s, next)? {
                Ok((after, bytes)) => {
                    let id = u16::from_le_bytes([bytes[0], bytes[1]]);
                    if after == next {
                        break;
                    }
                    self.mark(id, bytes);
                    next = after;
                    count += 1;
                }
                Err(CC_NOT_PRESENT) => break,
                Err(cc) => {
                    return Err(SessionError::Lost(format!(
                        "Get SEL Entry 0x{next:04x} completion code 0x{cc:02x}"
                    )))
                }
            }
        }
        if next != SEL_LAST && count > 0 {
            // A log longer than the memory (or a looping chain): start after its last record.
            if let Ok((_, bytes)) = get_entry(s, SEL_LAST)? {
                self.mark(u16::from_le_bytes([bytes[0], bytes[1]]), bytes);
            }
        }
        match self.last {
            Some((id, _)) => info!(
                "SEL holds {} record(s) at start; they are history, reading from after record 0x{id:04x}",
                info.entries
            ),
            None => info!("SEL empty at start"),
        }
        self.started = true;
        Ok(())
    }

    /// Reads records added since the last call (at most
    /// [`MAX_RECORDS_PER_POLL`]) and hands each new one to `each`, in log
    /// order, exactly once. Returns whether more may be waiting.
    pub fn poll(
        &mut self,
        s: &mut dyn IpmiSession,
        each: &mut dyn FnMut(NewRecord),
    ) -> Result<bool, SessionError> {
        self.start(s)?;
        // Where to read from, and whether records must be filtered (re-read after a wrap).
        let (mut next, filter) = match self.last {
            None => (SEL_FIRST, false),
            Some((id, bytes)) => match get_entry(s, id)? {
                Ok((next, now)) if now == bytes => (next, false),
                other => {
                    let info = get_info(s)?;
                    if self.erase != Some(info.erase) {
                        self.clears += 1;
                        warn!(
                            "SEL was cleared (erase timestamp {}); {} record(s) now, all of them new",
                            info.erase, info.entries
                        );
                        self.erase = Some(info.erase);
                        self.last = None;
                        (SEL_FIRST, false)
                    } else {
                        self.discontinuities += 1;
                        warn!(
                            "SEL record 0x{id:04x} {} without a clear (wrap or deletion); re-reading the log, skipping records processed already",
                            if other.is_ok() { "changed" } else { "is gone" }
                        );
                        (SEL_FIRST, true)
                    }
                }
            },
        };
        let mut handed = 0;
        while next != SEL_LAST {
            if handed >= MAX_RECORDS_PER_POLL {
                return Ok(true);
            }
            let (after, bytes) = match get_entry(s, next)? {
                Ok(v) => v,
                // Empty log, or the record vanished while reading: next poll.
                Err(CC_NOT_PRESENT) => break,
                Err(cc) => {
                    return Err(SessionError::Lost(format!(
                        "Get SEL Entry 0x{next:04x} completion code 0x{cc:02x}"
                    )))
                }
            };
            let id = u16::from_le_bytes([bytes[0], bytes[1]]);
            if after == next {
                return Err(SessionError::Lost(format!(
                    "SEL record 0x{id:04x} names itself as next"
                )));
            }
            next = after;
            if filter && self.seen_before(&bytes) {
                continue;
            }
            let record = match SelRecord::parse(&bytes) {
                Ok(r) => Some(r),
                Err(e) => {
                    self.skipped += 1;
                    debug!("SEL record 0x{id:04x} skipped: {e}");
                    None
                }
            };
            self.mark(id, bytes);
            self.records += 1;
            handed += 1;
            each(NewRecord {
                record_id: id,
                record,
            });
        }
        Ok(false)
    }
}

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
    pub fn open(src: &RmcpSource, own_address: u8) -> Result<RmcpSession, SessionError> {
        let timeout = Duration::from_millis(src.polling.timeout_ms);
        let mut rmcp = ipmi_rs::rmcp::Rmcp::new((src.host.as_str(), src.port), timeout)
            .map_err(|e| SessionError::Lost(format!("{}:{}: {e}", src.host, src.port)))?;
        guarded("session activation", || {
            rmcp.activate(true, Some(&src.user), Some(src.password.bytes()))
        })?
        .map_err(activation_error)?;
        let mut s = RmcpSession {
            rmcp,
            own_address,
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

/// Why a SEL-source run stopped.
#[derive(Debug)]
pub enum SourceError {
    /// The configuration was refused by the core.
    Config(String),
    /// The peer refused the session (credentials, privilege): not retried.
    Refused {
        /// The source, e.g. `rmcp 192.0.2.10:623`.
        source: String,
        /// What the peer or the session said.
        reason: String,
    },
    /// The decision stream could not be written.
    Output(std::io::Error),
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(e) => write!(f, "configuration: {e}"),
            Self::Refused { source, reason } => write!(f, "event source {source}: {reason}"),
            Self::Output(e) => write!(f, "decision stream: {e}"),
        }
    }
}

impl std::error::Error for SourceError {}

/// The core's clock: milliseconds since start, not counting session outages.
struct Clock {
    start: Instant,
    paused_ms: u64,
    down_since: Option<u64>,
}

impl Clock {
    fn real(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The core's time at real time `real`.
    fn shelf(&self, real: u64) -> u64 {
        let upto = self.down_since.unwrap_or(real);
        upto.saturating_sub(self.paused_ms)
    }

    fn pause(&mut self, real: u64) {
        self.down_since.get_or_insert(real);
    }

    /// Resumes; returns how long the pause lasted.
    fn resume(&mut self, real: u64) -> u64 {
        let d = self
            .down_since
            .take()
            .map_or(0, |since| real.saturating_sub(since));
        self.paused_ms += d;
        d
    }
}

/// The machine-readable decision stream (`--decisions-json`): one JSON
/// object per line for each SEL event, decision, alert and source state change.
pub struct JsonLines<'a> {
    out: Option<&'a mut dyn Write>,
}

impl<'a> JsonLines<'a> {
    /// Writes to `out`, or nowhere.
    pub fn new(out: Option<&'a mut dyn Write>) -> Self {
        Self { out }
    }

    fn line(&mut self, value: serde_json::Value) -> Result<(), SourceError> {
        if let Some(out) = self.out.as_mut() {
            writeln!(out, "{value}").map_err(SourceError::Output)?;
            out.flush().map_err(SourceError::Output)?;
        }
        Ok(())
    }
}

fn event_json(ev: &PlatformEvent) -> serde_json::Value {
    let hs = ev.hot_swap();
    serde_json::json!({
        "generator": ev.generator,
        "generator_lun": ev.generator_lun,
        "sensor_type": u8::from(ev.sensor_type),
        "sensor_number": ev.sensor_number,
        "event_type": ev.event_type,
        "assertion": ev.assertion,
        "event_data": ev.event_data,
        "offset": ev.offset(),
        "m_state": hs.map(|h| h.current as u8),
        "previous_m_state": hs.and_then(|h| h.previous).map(|m| m as u8),
    })
}

/// The decision-stream line of an alert: its text, its stable snake_case
/// `kind`, the blade and decision it is about when it has them, and the
/// guests it names.
pub fn alert_line(t_ms: u64, a: &Alert) -> serde_json::Value {
    let mut v = serde_json::json!({"t_ms": t_ms, "alert": a.to_string(), "kind": a.kind()});
    if let Some(slot) = a.slot() {
        v["slot"] = slot.into();
    }
    if let Some(id) = a.incident() {
        v["incident"] = id.into();
    }
    match a {
        Alert::GuestsNotRestarted {
            not_started,
            started,
            reported,
            ..
        } => {
            let names: Vec<&str> = not_started.names.iter().map(|n| n.as_str()).collect();
            v["not_started"] = names.into();
            v["not_started_unnamed"] = not_started.more.into();
            v["started"] = (*started).into();
            v["reported"] = (*reported).into();
        }
        Alert::OrderUndelivered { kind, reason, .. } => {
            v["order"] = kind.as_str().into();
            v["reason"] = reason.as_str().into();
        }
        Alert::GuestUnprotected {
            reporter,
            reason,
            name,
            text,
            ..
        } => {
            v["guest"] = name.as_str().into();
            v["reason"] = unprotected_reason_str(*reason).into();
            v["detail"] = text.as_str().into();
            v["reporter"] = (*reporter).into();
        }
        _ => {}
    }
    v
}

fn outcome_str(o: &EventOutcome) -> String {
    match o {
        EventOutcome::Duplicate => "duplicate".into(),
        EventOutcome::UnknownGenerator => "unknown_generator".into(),
        EventOutcome::Recorded(r) => format!("recorded: {}", r.as_str()),
        EventOutcome::Repeated(c) => format!("repeated: {c}"),
        EventOutcome::Suppressed(c) => format!("suppressed: {c}"),
        EventOutcome::Decided(c) => format!("decided: {c}"),
    }
}

/// Counters of a SEL-source run, for its totals line.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    outages: u64,
    not_sent: u64,
    bridge_failures: u64,
}

/// What a totals line reports besides the core's counters.
struct Totals<'a> {
    cursor: &'a SelCursor,
    tally: Tally,
    /// Stray answers in the last session.
    stray: u64,
}

fn log_totals(t: &Totals<'_>, shelf: &Shelf) {
    let (cursor, tally, stray) = (t.cursor, &t.tally, t.stray);
    info!(
        "totals: {} SEL records ({} skipped, {} clears, {} wraps), {} outages, {} requests not sent while down, {} bridge failures, {} stray answers in the last session; {:?}; {:?}",
        cursor.records,
        cursor.skipped,
        cursor.clears,
        cursor.discontinuities,
        tally.outages,
        tally.not_sent,
        tally.bridge_failures,
        stray,
        shelf.counters(),
        shelf.request_stats()
    );
}

/// The end of a run stopped by a signal: the stop, the work left open, the
/// totals and the decision stream's last line.
fn stopped(
    stop: Stop,
    shelf: &Shelf,
    agents: &dyn AgentLink,
    totals: &Totals<'_>,
    t_ms: u64,
    json: &mut JsonLines<'_>,
) -> Result<(), SourceError> {
    info!("stopping on {stop}");
    let open = OpenWork::of(shelf, agents);
    open.log();
    log_totals(totals, shelf);
    json.line(serde_json::json!({
        "t_ms": t_ms,
        "stop": {"signal": stop.signal.as_str(), "open_decisions": open.decisions()},
    }))
}

/// Runs the shelf on a SEL-polling source until the peer refuses the session
/// or the decision stream fails (errors), or `stop` reports a signal (`Ok`).
/// `open` opens one session; `label` names the source in logs.
pub fn run_source<S: IpmiSession>(
    cfg: &HostConfig,
    label: &str,
    polling: Polling,
    open: &mut dyn FnMut() -> Result<S, SessionError>,
    agents: &mut dyn AgentLink,
    json: &mut JsonLines<'_>,
    stop: &StopSignals,
) -> Result<(), SourceError> {
    let mut shelf =
        Shelf::new(cfg.shelf.clone()).map_err(|e| SourceError::Config(e.to_string()))?;
    let mut clock = Clock {
        start: Instant::now(),
        paused_ms: 0,
        down_since: Some(0),
    };
    let mut cursor = SelCursor::new();
    let mut session: Option<S> = None;
    let mut ever_up = false;
    let mut backoff = BACKOFF_MS.0;
    let mut next_attempt = 0u64;
    let mut next_poll = 0u64;
    let mut more = false;
    let mut tally = Tally::default();
    info!(
        "shmc-plugin running: event source {label}, SEL poll every {} ms, own address 0x{:02x}, {} blade(s)",
        polling.poll_interval_ms,
        cfg.shelf.own_address,
        cfg.shelf.blades.len()
    );
    loop {
        if let Some(s) = stop.take() {
            let totals = Totals {
                cursor: &cursor,
                tally,
                stray: session.as_ref().map_or(0, |s| s.stray()),
            };
            let t_ms = clock.shelf(clock.real());
            let r = stopped(s, &shelf, agents, &totals, t_ms, json);
            stop.note_late();
            return r;
        }
        let real = clock.real();
        if session.is_none() && real >= next_attempt {
            match open() {
                Ok(s) => {
                    session = Some(s);
                    let paused = clock.resume(real);
                    backoff = BACKOFF_MS.0;
                    if ever_up {
                        warn!(
                            "event source {label}: session back after {paused} ms; reading the SEL after record {}",
                            cursor.last_id().map_or("(none)".into(), |id| format!("0x{id:04x}"))
                        );
                    } else {
                        info!("event source {label}: session open (ADMINISTRATOR)");
                    }
                    json.line(serde_json::json!({
                        "t_ms": clock.shelf(real),
                        "source": {"state": "up", "outage_ms": paused},
                    }))?;
                    ever_up = true;
                    next_poll = real;
                }
                Err(SessionError::Refused(reason)) => {
                    error!("event source {label}: {reason}");
                    json.line(serde_json::json!({
                        "t_ms": clock.shelf(real),
                        "source": {"state": "refused", "reason": reason},
                    }))?;
                    return Err(SourceError::Refused {
                        source: label.to_string(),
                        reason,
                    });
                }
                Err(e) => {
                    warn!("event source {label}: cannot open a session ({e}); retrying in {backoff} ms");
                    next_attempt = real + backoff;
                    backoff = (backoff * 2).min(BACKOFF_MS.1);
                }
            }
        }

        let mut lost: Option<SessionError> = None;
        if let Some(s) = session.as_mut() {
            if more || real >= next_poll {
                next_poll = real + polling.poll_interval_ms;
                let now = clock.shelf(clock.real());
                let mut write_err = None;
                let r = cursor.poll(s, &mut |rec| {
                    let Some(record) = rec.record else {
                        return;
                    };
                    let outcome = shelf.on_logged_event(now, &record.event);
                    debug!(
                        "SEL record 0x{:04x} from 0x{:02x}: {outcome:?}",
                        rec.record_id, record.event.generator
                    );
                    if let Err(e) = json.line(serde_json::json!({
                        "t_ms": now,
                        "record_id": rec.record_id,
                        "timestamp": record.timestamp,
                        "event": event_json(&record.event),
                        "outcome": outcome_str(&outcome),
                    })) {
                        write_err.get_or_insert(e);
                    }
                });
                if let Some(e) = write_err {
                    return Err(e);
                }
                match r {
                    Ok(m) => more = m,
                    Err(SessionError::Timeout) => {
                        lost = Some(SessionError::Lost("SEL read timed out".into()))
                    }
                    Err(e) => lost = Some(e),
                }
            }
        }

        let real = clock.real();
        let now = clock.shelf(real);
        agents.receive(real, &mut |slot, input| shelf.on_agent(now, slot, input));
        agents.tick(real);
        if lost.is_none() {
            shelf.poll(now);
        }
        while let Some(o) = shelf.pop_output() {
            match o {
                Output::Ipmb {
                    dest,
                    net_fn,
                    cmd,
                    rq_seq,
                    data,
                } => {
                    let Some(s) = session.as_mut().filter(|_| lost.is_none()) else {
                        // Never sent while the session is down; the core retries later.
                        tally.not_sent += 1;
                        continue;
                    };
                    let target = Target::Ipmb {
                        channel: polling.channel,
                        address: dest,
                    };
                    match s.request(target, net_fn, cmd, rq_seq, &data) {
                        Ok(rsp) => {
                            let now = clock.shelf(clock.real());
                            shelf.on_ipmb_response(now, dest, rq_seq, net_fn | 1, cmd, &rsp);
                        }
                        Err(SessionError::Timeout) => {
                            debug!("bridged request to 0x{dest:02x} cmd 0x{cmd:02x}: no answer")
                        }
                        Err(SessionError::Bridge(cc)) => {
                            tally.bridge_failures += 1;
                            debug!("bridged request to 0x{dest:02x} cmd 0x{cmd:02x}: Send Message completion code 0x{cc:02x}")
                        }
                        Err(e) => lost = Some(e),
                    }
                }
                Output::Order { slot, order } => agents.send_order(real, slot, &order),
                Output::Decision(d) => {
                    let actions: Vec<&str> = d.actions.iter().map(|a| a.as_str()).collect();
                    json.line(serde_json::json!({
                        "t_ms": d.t_ms,
                        "decision": {
                            "incident": d.incident,
                            "class": d.class.as_str(),
                            "slot": d.slot,
                            "ipmb_address": d.ipmb_address,
                            "partner_slot": d.partner_slot,
                            "actions": actions,
                            "cause": d.cause.to_string(),
                        },
                    }))?;
                }
                Output::Alert(a) => json.line(alert_line(now, &a))?,
            }
        }

        if let Some(e) = lost {
            let real = clock.real();
            if let SessionError::Refused(reason) = &e {
                error!("event source {label}: {reason}");
                return Err(SourceError::Refused {
                    source: label.to_string(),
                    reason: reason.clone(),
                });
            }
            tally.outages += 1;
            error!(
                "ALERT: event source {label} lost ({e}); the shelf clock stops and no request is sent until the session is back (outage #{})",
                tally.outages
            );
            json.line(serde_json::json!({
                "t_ms": clock.shelf(real),
                "source": {"state": "down", "reason": e.to_string()},
            }))?;
            clock.pause(real);
            let stray = session.as_ref().map_or(0, |s| s.stray());
            session = None;
            more = false;
            next_attempt = real + backoff;
            backoff = (backoff * 2).min(BACKOFF_MS.1);
            let totals = Totals {
                cursor: &cursor,
                tally,
                stray,
            };
            log_totals(&totals, &shelf);
        }

        // Sleep until the next poll, waking for agent traffic.
        let real = clock.real();
        let due = if session.is_some() {
            if more {
                real
            } else {
                next_poll
            }
        } else {
            next_attempt
        };
        let wait = due.saturating_sub(real).min(u64::from(super::run::TICK_MS));
        if wait > 0 {
            let mut fds: heapless::Vec<nix::poll::PollFd<'_>, 2> = heapless::Vec::new();
            for fd in [agents.poll_fd(), stop.poll_fd()].into_iter().flatten() {
                let _ = fds.push(nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN));
            }
            let t = nix::poll::PollTimeout::from(u16::try_from(wait).unwrap_or(u16::MAX));
            let _ = nix::poll::poll(&mut fds, t);
        }
    }
}

/// Runs the shelf with the RMCP+ source `src` (see [`run_source`]).
pub fn run(
    cfg: &HostConfig,
    src: &RmcpSource,
    agents: &mut dyn AgentLink,
    json: &mut JsonLines<'_>,
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
        json,
        stop,
    )
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_alert_lines_name_their_kind() {
        use crate::engine::{GuestList, GuestName, OrderKind, ReportText, Undelivered};
        let mut not_started = GuestList::new();
        not_started.add(&GuestName::try_from("db").unwrap());
        not_started.more = 2;
        let a = Alert::GuestsNotRestarted {
            slot: 1,
            incident: 7,
            not_started,
            started: 3,
            reported: false,
        };
        let v = alert_line(40, &a);
        assert_eq!(v["kind"], "guests_not_restarted");
        assert_eq!(v["alert"], a.to_string());
        assert_eq!(
            (&v["t_ms"], &v["slot"], &v["incident"]),
            (&40.into(), &1.into(), &7.into())
        );
        assert_eq!(v["not_started"], serde_json::json!(["db"]));
        assert_eq!(v["not_started_unnamed"], 2);
        assert_eq!((&v["started"], &v["reported"]), (&3.into(), &false.into()));
        let v = alert_line(
            1,
            &Alert::OrderUndelivered {
                slot: 2,
                incident: None,
                kind: OrderKind::Evacuate,
                reason: Undelivered::Rejected,
            },
        );
        assert_eq!(
            (&v["kind"], &v["order"], &v["reason"]),
            (
                &"order_undelivered".into(),
                &"evacuate".into(),
                &"rejected".into()
            )
        );
        assert!(v.get("incident").is_none());
        let v = alert_line(
            1,
            &Alert::GuestUnprotected {
                owner_slot: 3,
                reporter: 4,
                reason: shelfha_proto::UnprotectedReason::HostDevice,
                name: ReportText::try_from("gpu-vm").unwrap(),
                text: ReportText::new(),
            },
        );
        assert_eq!(
            (
                &v["kind"],
                &v["slot"],
                &v["guest"],
                &v["reason"],
                &v["reporter"]
            ),
            (
                &"guest_unprotected".into(),
                &3.into(),
                &"gpu-vm".into(),
                &"host_device".into(),
                &4.into()
            )
        );
        let v = alert_line(1, &Alert::UnknownGenerator { address: 0xC2 });
        assert_eq!(v["kind"], "unknown_generator");
        assert!(v.get("slot").is_none());
    }

    /// A SEL behind a fake session: records in log order, erase timestamp.
    struct FakeSel {
        records: Vec<[u8; SEL_RECORD_LEN]>,
        erase: u32,
        next_id: u16,
        down: bool,
    }

    impl FakeSel {
        fn new() -> Self {
            Self {
                records: Vec::new(),
                erase: 0,
                next_id: 1,
                down: false,
            }
        }

        /// Adds a threshold event from 0x82 with sensor number `n` at `ts`.
        fn add(&mut self, ts: u32, n: u8) -> u16 {
            let id = self.next_id;
            self.next_id = if id == 0xFFFE { 1 } else { id + 1 };
            let mut r = [
                0, 0, 0x02, 0, 0, 0, 0, 0x82, 0x00, 0x04, 0x01, n, 0x01, 0x57, 0x40, 0x50,
            ];
            r[0..2].copy_from_slice(&id.to_le_bytes());
            r[3..7].copy_from_slice(&ts.to_le_bytes());
            self.records.push(r);
            id
        }

        fn clear(&mut self, ts: u32) {
            self.records.clear();
            self.erase = ts;
        }
    }

    impl IpmiSession for FakeSel {
        fn request(
            &mut self,
            target: Target,
            net_fn: u8,
            cmd_code: u8,
            _rq_seq: u8,
            data: &[u8],
        ) -> Result<Vec<u8>, SessionError> {
            if self.down {
                return Err(SessionError::Lost("down".into()));
            }
            assert_eq!((target, net_fn), (Target::Bmc, cmd::NETFN_STORAGE));
            match cmd_code {
                cmd::CMD_GET_SEL_INFO => {
                    let mut r = vec![0, 0x51];
                    r.extend((self.records.len() as u16).to_le_bytes());
                    r.extend([0, 0, 0, 0, 0, 0]);
                    r.extend(self.erase.to_le_bytes());
                    r.push(0x0A);
                    Ok(r)
                }
                cmd::CMD_GET_SEL_ENTRY => {
                    let id = u16::from_le_bytes([data[2], data[3]]);
                    let at = match id {
                        SEL_FIRST => (!self.records.is_empty()).then_some(0),
                        SEL_LAST => self.records.len().checked_sub(1),
                        _ => self
                            .records
                            .iter()
                            .position(|r| u16::from_le_bytes([r[0], r[1]]) == id),
                    };
                    let Some(at) = at else {
                        return Ok(vec![CC_NOT_PRESENT]);
                    };
                    let next = self
                        .records
                        .get(at + 1)
                        .map_or(SEL_LAST, |r| u16::from_le_bytes([r[0], r[1]]));
                    let mut r = vec![0];
                    r.extend(next.to_le_bytes());
                    r.extend(self.records[at]);
                    Ok(r)
                }
                other => panic!("unexpected command 0x{other:02x}"),
            }
        }
    }

    fn poll_all(c: &mut SelCursor, s: &mut FakeSel) -> Vec<u16> {
        let mut got = Vec::new();
        while c
            .poll(s, &mut |r| {
                assert!(r.record.is_some());
                got.push(r.record_id)
            })
            .unwrap()
        {}
        got
    }

    #[test]
    fn test_history_skipped_then_new_records_once() {
        let mut sel = FakeSel::new();
        sel.add(10, 1);
        sel.add(10, 2);
        let mut c = SelCursor::new();
        assert_eq!(poll_all(&mut c, &mut sel), Vec::<u16>::new());
        let a = sel.add(11, 3);
        let b = sel.add(11, 4);
        assert_eq!(poll_all(&mut c, &mut sel), vec![a, b]);
        assert_eq!(poll_all(&mut c, &mut sel), Vec::<u16>::new());
        assert_eq!(c.records, 2);
    }

    #[test]
    fn test_empty_at_start_reads_everything_after() {
        let mut sel = FakeSel::new();
        let mut c = SelCursor::new();
        assert!(poll_all(&mut c, &mut sel).is_empty());
        let ids: Vec<u16> = (0..200).map(|i| sel.add(5, i as u8)).collect();
        // More than one poll's worth: handed out in batches, in order, once.
        let mut got = Vec::new();
        let more = c.poll(&mut sel, &mut |r| got.push(r.record_id)).unwrap();
        assert!(more);
        assert_eq!(got.len(), MAX_RECORDS_PER_POLL);
        got.extend(poll_all(&mut c, &mut sel));
        assert_eq!(got, ids);
    }

    #[test]
    fn test_clear_under_us() {
        let mut sel = FakeSel::new();
        let mut c = SelCursor::new();
        poll_all(&mut c, &mut sel);
        let a = sel.add(20, 1);
        assert_eq!(poll_all(&mut c, &mut sel), vec![a]);
        // Cleared, and new records in the same second as the last one processed.
        sel.clear(20);
        let b = sel.add(20, 2);
        let d = sel.add(21, 3);
        assert_eq!(poll_all(&mut c, &mut sel), vec![b, d]);
        assert_eq!(c.clears, 1);
        // Cleared with nothing new: nothing handed out, and later records are.
        sel.clear(22);
        assert!(poll_all(&mut c, &mut sel).is_empty());
        let e = sel.add(23, 4);
        assert_eq!(poll_all(&mut c, &mut sel), vec![e]);
        assert_eq!(c.clears, 2);
    }

    #[test]
    fn test_wrap_drops_oldest() {
        let mut sel = FakeSel::new();
        let mut c = SelCursor::new();
        poll_all(&mut c, &mut sel);
        let ids: Vec<u16> = (0..3).map(|i| sel.add(30, i)).collect();
        assert_eq!(poll_all(&mut c, &mut sel), ids);
        // The log overwrote its oldest records, ours included, and got two new ones.
        let x = sel.add(30, 10);
        let y = sel.add(31, 11);
        sel.records.drain(..3);
        assert_eq!(poll_all(&mut c, &mut sel), vec![x, y]);
        assert_eq!((c.clears, c.discontinuities), (0, 1));
    }

    #[test]
    fn test_restart_with_new_log_and_clock_reset() {
        let mut sel = FakeSel::new();
        let mut c = SelCursor::new();
        poll_all(&mut c, &mut sel);
        let a = sel.add(0x5000_0000, 1);
        assert_eq!(poll_all(&mut c, &mut sel), vec![a]);
        // The controller restarted with an empty log (never cleared, same
        // erase timestamp) and a clock counting from its start again.
        sel.records.clear();
        let b = sel.add(12, 2);
        let d = sel.add(13, 3);
        assert_eq!(poll_all(&mut c, &mut sel), vec![b, d]);
        assert_eq!((c.clears, c.discontinuities), (0, 1));
    }

    #[test]
    fn test_remembered_records_bounded() {
        let mut c = SelCursor::new();
        for i in 0..(REMEMBERED_RECORDS as u32 + 10) {
            let mut r = [0u8; SEL_RECORD_LEN];
            r[3..7].copy_from_slice(&i.to_le_bytes());
            c.mark(i as u16, r);
        }
        assert_eq!(c.remembered.len(), REMEMBERED_RECORDS);
        assert_eq!(c.remembered_set.len(), REMEMBERED_RECORDS);
        let mut first = [0u8; SEL_RECORD_LEN];
        assert!(!c.seen_before(&first));
        first[3..7].copy_from_slice(&(REMEMBERED_RECORDS as u32 + 9).to_le_bytes());
        assert!(c.seen_before(&first));
    }

    #[test]
    fn test_last_record_deleted_history_not_new() {
        let mut sel = FakeSel::new();
        sel.add(70, 1);
        sel.add(71, 2);
        let mut c = SelCursor::new();
        assert!(poll_all(&mut c, &mut sel).is_empty());
        let a = sel.add(72, 3);
        assert_eq!(poll_all(&mut c, &mut sel), vec![a]);
        // An operator deletes our last record; history and the rest stay.
        sel.records.pop();
        let b = sel.add(72, 4);
        assert_eq!(poll_all(&mut c, &mut sel), vec![b]);
        assert_eq!((c.clears, c.discontinuities), (0, 1));
    }

    #[test]
    fn test_record_id_wrap() {
        let mut sel = FakeSel::new();
        sel.next_id = 0xFFFD;
        let mut c = SelCursor::new();
        poll_all(&mut c, &mut sel);
        let ids: Vec<u16> = (0..4).map(|i| sel.add(40, i)).collect();
        assert_eq!(ids, vec![0xFFFD, 0xFFFE, 1, 2]);
        assert_eq!(poll_all(&mut c, &mut sel), ids);
    }

    #[test]
    fn test_reconnect_no_double_processing() {
        let mut sel = FakeSel::new();
        let mut c = SelCursor::new();
        poll_all(&mut c, &mut sel);
        let a = sel.add(50, 1);
        assert_eq!(poll_all(&mut c, &mut sel), vec![a]);
        sel.down = true;
        let b = sel.add(51, 2);
        assert!(matches!(
            c.poll(&mut sel, &mut |_| panic!("nothing while down")),
            Err(SessionError::Lost(_))
        ));
        // Back (same log, as ipmi_sim keeps it across restarts): b only, once.
        sel.down = false;
        assert_eq!(poll_all(&mut c, &mut sel), vec![b]);
        assert!(poll_all(&mut c, &mut sel).is_empty());
    }

    #[test]
    fn test_oem_record_skipped_not_stuck() {
        let mut sel = FakeSel::new();
        let mut c = SelCursor::new();
        poll_all(&mut c, &mut sel);
        let a = sel.add(60, 1);
        sel.records[0][2] = 0xC0;
        let b = sel.add(60, 2);
        let mut got = Vec::new();
        c.poll(&mut sel, &mut |r| {
            got.push((r.record_id, r.record.is_some()))
        })
        .unwrap();
        assert_eq!(got, vec![(a, false), (b, true)]);
        assert_eq!(c.skipped, 1);
    }

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

    #[test]
    fn test_made_up_answers_are_no_answer() {
        assert!(no_answer(&[0xC3]));
        assert!(no_answer(&[0x83]));
        assert!(no_answer(&[]));
        assert!(!no_answer(&[0x00, 0x00]));
        assert!(!no_answer(&[0xC1]));
    }

    #[test]
    fn test_sel_info_parse() {
        let d = [
            0x00, 0x51, 0x02, 0x00, 0x60, 0x3e, 0x41, 0x07, 0x00, 0x00, 0x42, 0x07, 0x00, 0x00,
            0x0a,
        ];
        assert_eq!(
            SelInfo::parse(&d),
            Some(SelInfo {
                entries: 2,
                addition: 0x741,
                erase: 0x742
            })
        );
        assert_eq!(SelInfo::parse(&d[..10]), None);
        assert_eq!(SelInfo::parse(&[0xC1]), None);
    }

    #[test]
    fn test_clock_stops_during_outage() {
        let mut c = Clock {
            start: Instant::now(),
            paused_ms: 0,
            down_since: Some(0),
        };
        assert_eq!(c.shelf(500), 0);
        assert_eq!(c.resume(500), 500);
        assert_eq!(c.shelf(700), 200);
        c.pause(700);
        assert_eq!(c.shelf(5000), 200);
        assert_eq!(c.resume(5000), 4300);
        assert_eq!(c.shelf(5100), 300);
    }
}
