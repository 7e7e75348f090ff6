//! `shmc-plugin replay`: a capture of IPMB messages through the same [`Shelf`]
//! core as `run`, JSON lines out. Deterministic, streaming, and the
//! throughput benchmark.
//!
//! # Input
//! One message per line: `<t_ms> <hex bytes of one ipmb_dev_int message, len byte first>`.
//! `t_ms` is a decimal integer that never decreases. The hex may be one run
//! (`0b2010d0...`) or split by spaces or tabs (`0b 20 10 d0 ...`); each piece
//! must have an even number of digits and may carry a `0x` prefix. A `#`
//! starts a comment to the end of the line; blank lines are skipped. A line
//! that breaks these rules is an error naming the line (exit code 2); a
//! well-formed line whose bytes are not a valid IPMB message is counted in
//! `bad_frames` and replay goes on.
//!
//! # Output (stdout, one JSON object per line)
//! - per Platform Event accepted (not a duplicate within the window; events of
//!   unconfigured generators included, they are decoded and then ignored):
//!   `{"t_ms":..,"event":{"generator":..,"sensor_type":..,"sensor_number":..,"event_type":..,"assertion":..,"event_data":[..],"offset":..}}`,
//!   hot-swap events (type 0xF0) add `"m_state"`, `"previous_m_state"`, `"cause"`
//!   and `"fru_id"` as numbers (null when unknown);
//! - per decision: `{"t_ms":..,"decision":{"class":..,"slot":..,"ipmb_address":..,"partner_slot":..,"actions":[..]}}`
//!   with the time of the causing event;
//! - last: `{"summary":{...}}` with `frames` (valid IPMB messages), `bad_frames`,
//!   `events`, `decisions`, `duplicates`, `unknown_generator`, `bad_events`
//!   (Platform Events with fewer than 7 data bytes), `responses`,
//!   `unmatched_responses`, `other_requests`, `requests_sent` (IPMB requests
//!   the core would have sent), `orders`, `alerts`.
//!
//! # Semantics
//! The core runs with the capture's times: [`Shelf::poll`] before every
//! message, so fence steps escalate as they would have. No IPMC answers in a
//! replay: requests are only counted, but a fence we would have sent still
//! makes a later M6/M1 "commanded", and so does a deactivation request the
//! capture shows the shelf manager (`own_address`) sending to a blade
//! (Set FRU Activation deactivate or Set Power Level 0 for FRU 0). Probing is off: only the capture's events
//! count (a capture holds no silence worth judging). Alerts go to the log
//! (stderr), never to stdout.
//!
//! A fence is confirmed only by a hot-swap M1/M0 observed after it began, as
//! in the daemon: a later event of the capture, or a response in the capture
//! that matches a Get Sensor Reading the core sent after the fence began. The
//! event that opens an incident proves nothing (an uncommanded M4 -> M1 is
//! `blade_lost` with its fence and a sensor read, and without an answer in the
//! capture no failover order follows).
//!
//! Predictive mode (`[predictive] enabled = true`): a non-critical threshold
//! assertion is held; its `blade_degraded` decision is due once a later
//! frame's time, or the end of the capture, reaches the assertion's time plus
//! `degraded_hold_ms` (the core is polled with each frame's time before the
//! frame, so a deassertion at exactly that time comes too late). The decision
//! line is printed when it is due, right after the event line of the frame
//! whose time made it due, but its `t_ms` is the time of the assertion that
//! caused it, as for every decision (so `t_ms` of decision lines is not
//! monotonic).
//! At the end of the capture every hold still open is due: no deassertion
//! can follow. With the option off (the default) nothing is held and the
//! output is that of the core table.
//!
//! The hot path reuses one line buffer and one byte buffer and formats JSON
//! straight into a buffered stdout: no allocation per line.

use std::io::{self, BufRead, Write};

use crate::config::ShelfConfig;
use crate::engine::{EventOutcome, Output, Shelf};
use crate::event::{PlatformEvent, SensorType};
use crate::wire::cmd;
use crate::wire::framer::{validate_message, FramerStats};
use crate::wire::ipmb::FrameError;

/// Longest message a line may carry before it is rejected as too long; a
/// longer line is still read to its end and counted as a bad frame.
const LINE_BYTES: usize = 64;

/// Why a replay stopped.
#[derive(Debug)]
pub enum ReplayError {
    /// A line that is not `<t_ms> <hex>`.
    BadLine {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// Reading the capture or writing the output failed.
    Io(io::Error),
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadLine { line, reason } => write!(f, "line {line}: {reason}"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReplayError {}

impl From<io::Error> for ReplayError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Totals of one replay (the summary line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Valid IPMB messages.
    pub frames: u64,
    /// Lines whose bytes are not a valid IPMB message.
    pub bad_frames: u64,
    /// Platform Events accepted (duplicates excluded).
    pub events: u64,
    /// Decisions.
    pub decisions: u64,
    /// Duplicate Platform Events.
    pub duplicates: u64,
    /// Platform Events from unconfigured generators.
    pub unknown_generator: u64,
    /// Platform Events with fewer than 7 data bytes.
    pub bad_events: u64,
    /// Responses seen.
    pub responses: u64,
    /// Responses matching no request of ours.
    pub unmatched_responses: u64,
    /// Requests other than Platform Events.
    pub other_requests: u64,
    /// IPMB requests the core would have sent (retries included).
    pub requests_sent: u64,
    /// Agent orders the core would have sent.
    pub orders: u64,
    /// Alerts raised.
    pub alerts: u64,
}

/// One parsed capture line.
enum Line {
    Skip,
    Message {
        t_ms: u64,
        len: usize,
        overflow: bool,
    },
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn parse_line(text: &[u8], bytes: &mut [u8; LINE_BYTES]) -> Result<Line, &'static str> {
    let text = match text.iter().position(|&c| c == b'#') {
        Some(i) => &text[..i],
        None => text,
    };
    let mut tokens = text
        .split(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .filter(|t| !t.is_empty());
    let Some(time) = tokens.next() else {
        return Ok(Line::Skip);
    };
    let mut t_ms: u64 = 0;
    for &c in time {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return Err("time is not a decimal number of milliseconds");
        }
        t_ms = t_ms
            .checked_mul(10)
            .and_then(|t| t.checked_add(u64::from(d)))
            .ok_or("time does not fit 64 bits")?;
    }
    let mut len = 0usize;
    let mut overflow = false;
    let mut any = false;
    for tok in tokens {
        let tok = match tok {
            [b'0', b'x' | b'X', rest @ ..] => rest,
            t => t,
        };
        if tok.is_empty() {
            return Err("empty 0x prefix");
        }
        if tok.len() % 2 != 0 {
            return Err("odd number of hex digits");
        }
        for pair in tok.chunks_exact(2) {
            let (Some(hi), Some(lo)) = (hex_val(pair[0]), hex_val(pair[1])) else {
                return Err("not hex");
            };
            any = true;
            if len < LINE_BYTES {
                bytes[len] = hi << 4 | lo;
                len += 1;
            } else {
                overflow = true;
            }
        }
    }
    if !any {
        return Err("no message bytes after the time");
    }
    Ok(Line::Message {
        t_ms,
        len,
        overflow,
    })
}

fn write_m_state(out: &mut impl Write, key: &str, m: Option<u8>) -> io::Result<()> {
    match m {
        Some(v) => write!(out, ",\"{key}\":{v}"),
        None => write!(out, ",\"{key}\":null"),
    }
}

fn write_event(out: &mut impl Write, t_ms: u64, ev: &PlatformEvent) -> io::Result<()> {
    let st: u8 = ev.sensor_type.into();
    let [d1, d2, d3] = ev.event_data;
    write!(
        out,
        "{{\"t_ms\":{t_ms},\"event\":{{\"generator\":{},\"sensor_type\":{st},\"sensor_number\":{},\"event_type\":{},\"assertion\":{},\"event_data\":[{d1},{d2},{d3}],\"offset\":{}",
        ev.generator,
        ev.sensor_number,
        ev.event_type,
        ev.assertion,
        ev.offset()
    )?;
    if ev.sensor_type == SensorType::FruHotSwap {
        let hs = ev.hot_swap();
        write_m_state(out, "m_state", hs.map(|h| h.current as u8))?;
        write_m_state(
            out,
            "previous_m_state",
            hs.and_then(|h| h.previous).map(|m| m as u8),
        )?;
        write_m_state(out, "cause", hs.and_then(|h| h.cause))?;
        write_m_state(out, "fru_id", hs.map(|h| h.fru_id))?;
    }
    out.write_all(b"}}\n")
}

fn drain(shelf: &mut Shelf, out: &mut impl Write, sum: &mut Summary) -> io::Result<()> {
    while let Some(o) = shelf.pop_output() {
        match o {
            Output::Decision(d) => {
                sum.decisions += 1;
                write!(
                    out,
                    "{{\"t_ms\":{},\"decision\":{{\"class\":\"{}\",\"slot\":{},\"ipmb_address\":{},\"partner_slot\":{},\"actions\":[",
                    d.t_ms, d.class, d.slot, d.ipmb_address, d.partner_slot
                )?;
                for (i, a) in d.actions.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    write!(out, "\"{}\"", a.as_str())?;
                }
                out.write_all(b"]}}\n")?;
            }
            Output::Ipmb { .. } => sum.requests_sent += 1,
            Output::Order { .. } => sum.orders += 1,
            Output::Alert(_) => sum.alerts += 1,
        }
    }
    Ok(())
}

/// Replays `input` through a shelf built from `cfg` (probing is switched
/// off) and writes JSON lines to `out`; returns the summary it printed last.
pub fn replay(
    mut cfg: ShelfConfig,
    mut input: impl BufRead,
    mut out: impl Write,
) -> Result<Summary, ReplayError> {
    cfg.probing = false;
    let own_address = cfg.own_address;
    let mut shelf = Shelf::new(cfg).map_err(|_| ReplayError::BadLine {
        line: 0,
        reason: "invalid configuration",
    })?;
    let mut sum = Summary::default();
    let mut stats = FramerStats::new();
    let mut line = Vec::with_capacity(256);
    let mut bytes = [0u8; LINE_BYTES];
    let mut line_no: u64 = 0;
    let mut last_t: u64 = 0;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        line_no += 1;
        let (t_ms, len, overflow) = match parse_line(&line, &mut bytes) {
            Ok(Line::Skip) => continue,
            Ok(Line::Message {
                t_ms,
                len,
                overflow,
            }) => (t_ms, len, overflow),
            Err(reason) => {
                return Err(ReplayError::BadLine {
                    line: line_no,
                    reason,
                })
            }
        };
        if t_ms < last_t {
            return Err(ReplayError::BadLine {
                line: line_no,
                reason: "time goes backwards",
            });
        }
        last_t = t_ms;
        shelf.poll(t_ms);
        if overflow {
            stats.record_bad(FrameError::TooLong);
        } else if let Ok(repr) = validate_message(&bytes[..len], &mut stats) {
            if repr.is_response() {
                sum.responses += 1;
                shelf.on_ipmb_response(
                    t_ms,
                    repr.rq_sa,
                    repr.rq_seq,
                    repr.net_fn,
                    repr.cmd,
                    repr.data,
                );
            } else {
                match cmd::platform_event(&repr) {
                    Some(Ok(ev)) => match shelf.on_platform_event(t_ms, repr.rq_seq, &ev) {
                        EventOutcome::Duplicate => {}
                        _ => write_event(&mut out, t_ms, &ev)?,
                    },
                    Some(Err(_)) => sum.bad_events += 1,
                    None => {
                        sum.other_requests += 1;
                        if repr.rq_sa == own_address {
                            shelf.on_own_request(repr.rs_sa, repr.net_fn, repr.cmd, repr.data);
                        }
                    }
                }
            }
        }
        drain(&mut shelf, &mut out, &mut sum)?;
    }
    shelf.finish_holds(last_t);
    drain(&mut shelf, &mut out, &mut sum)?;
    let c = shelf.counters();
    sum.frames = stats.frames;
    sum.bad_frames = stats.bad_frames();
    sum.events = c.events;
    sum.duplicates = c.duplicates;
    sum.unknown_generator = c.unknown_generator;
    sum.unmatched_responses = shelf.request_stats().unmatched;
    writeln!(
        out,
        "{{\"summary\":{{\"frames\":{},\"bad_frames\":{},\"events\":{},\"decisions\":{},\"duplicates\":{},\"unknown_generator\":{},\"bad_events\":{},\"responses\":{},\"unmatched_responses\":{},\"other_requests\":{},\"requests_sent\":{},\"orders\":{},\"alerts\":{}}}}}",
        sum.frames,
        sum.bad_frames,
        sum.events,
        sum.decisions,
        sum.duplicates,
        sum.unknown_generator,
        sum.bad_events,
        sum.responses,
        sum.unmatched_responses,
        sum.other_requests,
        sum.requests_sent,
        sum.orders,
        sum.alerts
    )?;
    out.flush()?;
    Ok(sum)
}

#[cfg(test)]
mod test {
    use super::*;

    fn parse(s: &str) -> Result<(u64, Vec<u8>), &'static str> {
        let mut b = [0u8; LINE_BYTES];
        match parse_line(s.as_bytes(), &mut b)? {
            Line::Skip => Ok((u64::MAX, Vec::new())),
            Line::Message { t_ms, len, .. } => Ok((t_ms, b[..len].to_vec())),
        }
    }

    #[test]
    fn test_line_forms() {
        assert_eq!(parse("  # comment").unwrap().0, u64::MAX);
        assert_eq!(parse("\n").unwrap().0, u64::MAX);
        assert_eq!(parse("10 0b20 10").unwrap(), (10, vec![0x0b, 0x20, 0x10]));
        assert_eq!(
            parse("10\t0B 0x20 10 # x\r\n").unwrap(),
            (10, vec![0x0b, 0x20, 0x10])
        );
        assert_eq!(parse("7 a"), Err("odd number of hex digits"));
        assert_eq!(parse("7 0g"), Err("not hex"));
        assert_eq!(parse("7"), Err("no message bytes after the time"));
        assert_eq!(
            parse("x7 00"),
            Err("time is not a decimal number of milliseconds")
        );
        assert_eq!(
            parse("-7 00"),
            Err("time is not a decimal number of milliseconds")
        );
        assert_eq!(
            parse("99999999999999999999 00"),
            Err("time does not fit 64 bits")
        );
    }
}
