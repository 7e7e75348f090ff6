//! The capture source (`shmc-plugin replay`): a capture of IPMB messages through the same
//! [`Runtime`] as `run`, JSON lines out. Deterministic, streaming, and the
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
//! - per alert the core raises: `{"t_ms":..,"alert":"<text>","kind":"<kind>",...}`, the
//!   alert record of every source ([`crate::edge::record::AlertRecord`]: `slot`,
//!   `incident` and the fields of its kind), at the capture's time when it was raised.
//!   Alert lines only add to the output: the event and decision lines of a
//!   capture are the same with or without them (`tests/replay.rs` checks it);
//! - last: `{"summary":{...}}` with `frames` (valid IPMB messages), `bad_frames`,
//!   `events`, `decisions`, `duplicates`, `unknown_generator`, `bad_events`
//!   (Platform Events with fewer than 7 data bytes), `responses`,
//!   `unmatched_responses`, `other_requests`, `requests_sent` (IPMB requests
//!   the core would have sent), `orders`, `alerts`.
//!
//! # Semantics
//! The core runs with the capture's times: [`Shelf::poll`](crate::engine::Shelf::poll) before every
//! message, so fence steps escalate as they would have. No IPMC answers in a
//! replay: requests are only counted, but a fence we would have sent still
//! makes a later M6/M1 "commanded", and so does a deactivation request the
//! capture shows the shelf manager (`own_address`) sending to a blade
//! (Set FRU Activation deactivate or Set Power Level 0 for FRU 0).
//!
//! **Silence is not judged.** A capture has no agents and nobody answers a
//! probe, so probing is off and no heartbeat is expected: no `blade_lost` by
//! probe loss, no `host_os` by heartbeat loss, nothing decided on a silence.
//! Only the capture's events (and the fences and timers they start) count.
//! Replay says so in its first log line ([`SILENCE_NOTE`], level warn, on
//! stderr). Alerts are printed as JSON lines on stdout and also logged.
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
//! The records are those of every source ([`crate::edge::record`]), with the
//! fields a capture has. The hot path reuses one line buffer and one byte
//! buffer and serializes straight into a buffered stdout: no allocation per
//! line.

use std::io::{self, BufRead, Write};

use crate::config::{ConfigError, ShelfConfig};
pub use crate::edge::record::Summary;
use crate::edge::record::{JsonLines, Record, RecordSink, SummaryRecord};
use crate::edge::runtime::{Clocks, Detail, Inbound, Runtime, Silent};
use crate::engine::EventOutcome;
use crate::wire::framer::{validate_message, FramerStats};
use crate::wire::ipmb::FrameError;

/// What replay does with silence: its first log line.
pub const SILENCE_NOTE: &str = "replay judges no silence: a capture has no agents and no probe \
answers, so no blade_lost by probe loss and no host_os by heartbeat loss is decided; only the \
capture's events count";

/// Longest message a line may carry before it is rejected as too long; a
/// longer line is still read to its end and counted as a bad frame.
const LINE_BYTES: usize = 64;

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A line that is not `<t_ms> <hex>`.
    #[error("line {line}: {reason}")]
    BadLine {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The core refused the configuration.
    #[error("configuration: {0}")]
    Config(#[source] ConfigError),
    /// Reading the capture or writing the output failed.
    #[error(transparent)]
    Io(#[from] io::Error),
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

/// Replays `input` through a shelf built from `cfg` (probing is switched
/// off) and writes JSON lines to `out`; returns the summary it printed last.
pub fn replay(
    mut cfg: ShelfConfig,
    mut input: impl BufRead,
    out: impl Write,
) -> Result<Summary, ReplayError> {
    cfg.probing = false;
    log::warn!("{SILENCE_NOTE}");
    let mut rt = Runtime::new(cfg, Detail::Capture).map_err(ReplayError::Config)?;
    let mut out = JsonLines::new(out, false);
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
        rt.poll(t_ms);
        if overflow {
            stats.record_bad(FrameError::TooLong);
        } else if let Ok(repr) = validate_message(&bytes[..len], &mut stats) {
            match rt.on_message(t_ms, &repr, &mut Silent) {
                Inbound::Response => sum.responses += 1,
                Inbound::Event {
                    outcome: EventOutcome::Duplicate,
                    ..
                } => {}
                Inbound::Event { event, .. } => out.record(&rt.event_record(t_ms, &event))?,
                Inbound::BadEvent(_) => sum.bad_events += 1,
                Inbound::OwnRequest | Inbound::Other => sum.other_requests += 1,
            }
        }
        rt.carry_out(Clocks::same(t_ms), &mut Silent, None, &mut out)?;
    }
    rt.shelf_mut().finish_holds(last_t);
    rt.carry_out(Clocks::same(last_t), &mut Silent, None, &mut out)?;
    let c = rt.shelf().counters();
    sum.frames = stats.frames;
    sum.bad_frames = stats.bad_frames();
    sum.events = c.events;
    sum.duplicates = c.duplicates;
    sum.unknown_generator = c.unknown_generator;
    sum.unmatched_responses = rt.shelf().request_stats().unmatched;
    sum.decisions = rt.tally.decisions;
    sum.requests_sent = rt.tally.requests;
    sum.orders = rt.tally.orders;
    sum.alerts = rt.tally.alerts;
    out.record(&Record::Summary(SummaryRecord { summary: sum }))?;
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
