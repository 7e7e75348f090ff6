//! Event sources over an IPMI session: the shelf manager's System Event Log
//! read over IPMI v2.0 RMCP+ ([`rmcp`]) or through the local system
//! interface ([`system`]), with requests to blade IPMCs bridged.
//!
//! The same [`Runtime`] runs unchanged: each new SEL record becomes the
//! Platform Event the IPMC sent (IPMI v2.0 §32.1, [`crate::wire::sel`]) and
//! goes to [`Runtime::on_logged_event`]; each IPMB request of the core
//! becomes a bridged request to the blade's IPMC ([`SessionPort`]), and its
//! answer goes back to the core as if it had been read off IPMB.
//!
//! Pieces: [`session`] (the request/response seam), [`cursor`] (which SEL
//! records are new, every `poll_interval_ms`), [`clock`] (the core's clock,
//! stopped during outages), and this module's loop.
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

pub mod clock;
pub mod cursor;
#[cfg(feature = "rmcp")]
pub mod rmcp;
pub mod session;
#[cfg(feature = "system")]
pub mod system;

use std::io;

use log::{debug, error, info, warn};

use self::clock::PausableClock;
use self::cursor::SelCursor;
use self::session::{IpmiSession, SessionError, Target};
use super::ipmb::TICK_MS;
use crate::config::file::HostConfig;
use crate::config::source::Polling;
use crate::config::ConfigError;
use crate::edge::agents::AgentLink;
use crate::edge::record::{Record, RecordSink, SourceRecord, SourceState, StopFields, StopRecord};
use crate::edge::runtime::{Clocks, Detail, IpmbPort, Runtime};
use crate::edge::stop::{OpenWork, Stop, StopSignals};
use crate::engine::Shelf;
use crate::wire::ipmb::Repr;

/// Back-off of session reopening: first and longest wait.
pub const BACKOFF_MS: (u64, u64) = (100, 5000);

/// Why a SEL-source run stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The configuration was refused by the core.
    #[error("configuration")]
    Config(#[from] ConfigError),
    /// The peer refused the session (credentials, privilege): not retried.
    #[error("event source {source_label}: {reason}")]
    Refused {
        /// The source, e.g. `rmcp 192.0.2.10:623`.
        source_label: String,
        /// What the peer or the session said.
        reason: String,
    },
    /// The decision stream could not be written.
    #[error("decision stream")]
    Output(#[from] io::Error),
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
    records: &mut dyn RecordSink,
) -> Result<(), SourceError> {
    info!("stopping on {stop}");
    let open = OpenWork::of(shelf, agents);
    open.log();
    log_totals(totals, shelf);
    let decisions = open.decisions();
    records.record(&Record::Stop(StopRecord {
        t_ms,
        stop: StopFields {
            signal: stop.signal.as_str(),
            open_decisions: &decisions,
        },
    }))?;
    Ok(())
}

/// The IPMB side of a SEL source: the core's requests go bridged over the
/// session, and the answer comes back at once. Nothing is sent while the
/// session is down or once it was found lost in this turn (the core retries
/// later, on its stopped clock).
pub struct SessionPort<'a, S: IpmiSession> {
    session: Option<&'a mut S>,
    channel: u8,
    clock: &'a PausableClock,
    lost: &'a mut Option<SessionError>,
    tally: &'a mut Tally,
}

impl<S: IpmiSession> IpmbPort for SessionPort<'_, S> {
    fn answer(&mut self, _response: &Repr<'_>) {
        // A SEL source hears no requests.
    }

    fn request(&mut self, request: &Repr<'_>) -> Option<(u64, Vec<u8>)> {
        let (dest, cmd) = (request.rs_sa, request.cmd);
        let Some(s) = self.session.as_deref_mut().filter(|_| self.lost.is_none()) else {
            // Never sent while the session is down; the core retries later.
            self.tally.not_sent += 1;
            return None;
        };
        let target = Target::Ipmb {
            channel: self.channel,
            address: dest,
        };
        match s.request(target, request.net_fn, cmd, request.rq_seq, request.data) {
            Ok(rsp) => Some((self.clock.core(self.clock.real()), rsp)),
            Err(SessionError::Timeout) => {
                debug!("bridged request to 0x{dest:02x} cmd 0x{cmd:02x}: no answer");
                None
            }
            Err(SessionError::Bridge(cc)) => {
                self.tally.bridge_failures += 1;
                debug!("bridged request to 0x{dest:02x} cmd 0x{cmd:02x}: Send Message completion code 0x{cc:02x}");
                None
            }
            Err(e) => {
                *self.lost = Some(e);
                None
            }
        }
    }
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
    records: &mut dyn RecordSink,
    stop: &StopSignals,
) -> Result<(), SourceError> {
    let mut rt = Runtime::new(cfg.shelf.clone(), Detail::Live)?;
    let mut clock = PausableClock::paused();
    let mut cursor = SelCursor::new();
    let mut session: Option<S> = None;
    let mut ever_up = false;
    let mut backoff = BACKOFF_MS.0;
    let mut next_attempt = 0u64;
    let mut next_poll = 0u64;
    let mut more = false;
    let mut tally = Tally::default();
    let refused = |reason: String| SourceError::Refused {
        source_label: label.to_string(),
        reason,
    };
    info!(
        "shmc-plugin running: event source {label}, SEL poll every {} ms, own address 0x{:02x}, {} blade(s)",
        polling.poll_interval_ms,
        rt.own_address(),
        cfg.shelf.blades.len()
    );
    loop {
        if let Some(s) = stop.take() {
            let totals = Totals {
                cursor: &cursor,
                tally,
                stray: session.as_ref().map_or(0, |s| s.stray()),
            };
            let t_ms = clock.core(clock.real());
            let r = stopped(s, rt.shelf(), agents, &totals, t_ms, records);
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
                    records.record(&Record::Source(SourceRecord {
                        t_ms: clock.core(real),
                        source: SourceState::Up { outage_ms: paused },
                    }))?;
                    ever_up = true;
                    next_poll = real;
                }
                Err(SessionError::Refused(reason)) => {
                    error!("event source {label}: {reason}");
                    records.record(&Record::Source(SourceRecord {
                        t_ms: clock.core(real),
                        source: SourceState::Refused { reason: &reason },
                    }))?;
                    return Err(refused(reason));
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
                let now = clock.core(clock.real());
                let mut write_err = None;
                let r = cursor.poll(s, &mut |rec| {
                    let Some(record) = rec.record else {
                        return;
                    };
                    if let Err(e) = rt.on_logged_event(now, rec.record_id, &record, records) {
                        write_err.get_or_insert(e);
                    }
                });
                if let Some(e) = write_err {
                    return Err(e.into());
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
        let now = Clocks {
            core_ms: clock.core(real),
            link_ms: real,
        };
        rt.on_agents(now, agents);
        if lost.is_none() {
            rt.poll(now.core_ms);
        }
        let mut port = SessionPort {
            session: session.as_mut(),
            channel: polling.channel,
            clock: &clock,
            lost: &mut lost,
            tally: &mut tally,
        };
        rt.carry_out(now, &mut port, Some(&mut *agents), records)?;

        if let Some(e) = lost {
            let real = clock.real();
            if let SessionError::Refused(reason) = e {
                error!("event source {label}: {reason}");
                return Err(refused(reason));
            }
            tally.outages += 1;
            error!(
                "ALERT: event source {label} lost ({e}); the shelf clock stops and no request is sent until the session is back (outage #{})",
                tally.outages
            );
            let reason = e.to_string();
            records.record(&Record::Source(SourceRecord {
                t_ms: clock.core(real),
                source: SourceState::Down { reason: &reason },
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
            log_totals(&totals, rt.shelf());
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
        let wait = due.saturating_sub(real).min(u64::from(TICK_MS));
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

#[cfg(test)]
mod test {
    use super::*;
    use crate::edge::agents::NoAgents;
    use crate::edge::record::JsonLines;
    use crate::wire::sel::SEL_RECORD_LEN;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A SEL holding one critical temperature event from 0x82 that appears
    /// after start; bridged requests go unanswered; the session is lost
    /// after `life` requests and the next open is refused.
    struct OneEvent {
        served: u32,
        life: u32,
    }

    const EVENT: [u8; SEL_RECORD_LEN] = [
        0x01, 0x00, 0x02, 0x10, 0, 0, 0, 0x82, 0x00, 0x04, 0x01, 0x01, 0x01, 0x59, 95, 90,
    ];

    impl IpmiSession for OneEvent {
        fn request(
            &mut self,
            target: Target,
            _net_fn: u8,
            cmd_code: u8,
            _rq_seq: u8,
            data: &[u8],
        ) -> Result<Vec<u8>, SessionError> {
            self.served += 1;
            if self.served > self.life {
                return Err(SessionError::Lost("peer gone".into()));
            }
            if target != Target::Bmc {
                return Err(SessionError::Timeout);
            }
            // The log is empty at start (history), then holds the event.
            let present = self.served > 2;
            match cmd_code {
                crate::wire::cmd::CMD_GET_SEL_INFO => {
                    let mut r = vec![0, 0x51, u8::from(present), 0];
                    r.extend([0; 11]);
                    Ok(r)
                }
                _ => {
                    let id = u16::from_le_bytes([data[2], data[3]]);
                    if !present || !matches!(id, 0 | 1 | 0xFFFF) {
                        return Ok(vec![cursor::CC_NOT_PRESENT]);
                    }
                    let mut r = vec![0, 0xFF, 0xFF];
                    r.extend(EVENT);
                    Ok(r)
                }
            }
        }
    }

    #[test]
    fn test_sel_source_records_one_schema() {
        let cfg = crate::config::file::parse(
            "[shelf]\nown_address = 0x20\nipmb_device = \"/dev/null\"\n\
             [[blade]]\nslot = 1\nipmb_address = 0x82\npartner = 2\n\
             [[blade]]\nslot = 2\nipmb_address = 0x84\npartner = 1\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let polling = Polling {
            poll_interval_ms: 1,
            timeout_ms: 10,
            channel: 0,
        };
        let opened = Rc::new(Cell::new(0));
        let o = opened.clone();
        let mut open = move || {
            o.set(o.get() + 1);
            if o.get() > 1 {
                Err(SessionError::Refused("no more".into()))
            } else {
                Ok(OneEvent {
                    served: 0,
                    life: 12,
                })
            }
        };
        let mut json = JsonLines::new(Vec::new(), false);
        let r = run_source(
            &cfg,
            "fake",
            polling,
            &mut open,
            &mut NoAgents::default(),
            &mut json,
            &StopSignals::none(),
        );
        assert!(matches!(r, Err(SourceError::Refused { .. })), "{r:?}");
        let out = String::from_utf8(json.into_inner()).unwrap();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["source"]["state"], "up", "{out}");
        let event = lines.iter().find(|v| v.get("record_id").is_some()).unwrap();
        assert_eq!(event["record_id"], 1);
        assert_eq!(event["event"]["generator"], 0x82);
        assert_eq!(event["event"]["generator_lun"], 0);
        assert!(event["event"].get("m_state").is_none(), "{event}");
        assert!(event["outcome"].as_str().unwrap().starts_with("decided"));
        let decision = lines.iter().find(|v| v.get("decision").is_some()).unwrap();
        let d = &decision["decision"];
        assert_eq!(
            (&d["incident"], &d["class"], &d["slot"]),
            (&1.into(), &"blade_hardware".into(), &1.into())
        );
        assert!(
            d["cause"].as_str().unwrap().contains("sensor type 0x01"),
            "{d}"
        );
        // Field order of a decision line: as replay prints it, with incident first and cause last.
        let line = out.lines().find(|l| l.contains("\"decision\"")).unwrap();
        assert!(line.starts_with("{\"t_ms\":"), "{line}");
        assert!(line.contains("{\"incident\":1,\"class\":\"blade_hardware\",\"slot\":1,\"ipmb_address\":130,\"partner_slot\":2,\"actions\":["), "{line}");
        assert!(
            lines.iter().any(|v| v["source"]["state"] == "down"),
            "{out}"
        );
        assert_eq!(lines.last().unwrap()["source"]["state"], "refused", "{out}");
    }
}
