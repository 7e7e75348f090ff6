//! The armed watchdog inside the daemon's protocol loop: feeds the proofs of being heard to
//! the [`PetPolicy`], sends the `Present` commands whose acks are the ShMC's proof, pets when
//! the policy allows and says so in the log when petting stops and resumes, and on a clean
//! stop disarms only once the ShMC acknowledged a registration without a watchdog.
//!
//! `Present` cadence: one per heartbeat interval, and never a second while one is unanswered.
//! Every interval keeps the ShMC's proof at most one interval plus a round trip old, well
//! within the two intervals the petting rule allows, without depending on the partner (a dead
//! partner must not make the survivor reset); one in flight at most keeps it to one of the
//! endpoint's pending slots and one retry sequence when the ShMC is unreachable.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shelfha_proto::{Endpoint, Event, Kind, Message, NodeId};

use super::policy::{PetPolicy, Witness};
use super::{Watchdog, WatchdogError};
use crate::config::Config;

/// Longest wait, on a clean stop, for the ShMC to acknowledge that the watchdog is no longer
/// armed (the endpoint gives a command up after about a second of retries).
const STOP_WAIT: Duration = Duration::from_secs(2);

/// The watchdog of a running agent.
pub struct Armed {
    wd: Box<dyn Watchdog>,
    policy: PetPolicy,
    interval: Duration,
    partner: NodeId,
    /// Petted at least once in this run (for the log).
    ever_petted: bool,
}

impl Armed {
    /// Arms the configured watchdog; `None` without a `[watchdog]` section.
    pub fn arm(cfg: &Config) -> Result<Option<Armed>, WatchdogError> {
        let Some(wcfg) = &cfg.watchdog else {
            return Ok(None);
        };
        let wd = super::open(wcfg)?;
        let timeout = Duration::from_millis(u64::from(wd.timeout_ms()));
        log::warn!(
            "hardware watchdog {} armed with {} ms: petted only while the ShMC or the partner proves it hears this agent; the blade resets if neither does",
            wcfg.device.display(),
            timeout.as_millis()
        );
        Ok(Some(Armed {
            wd,
            policy: PetPolicy::new(cfg.heartbeat, timeout, Instant::now()),
            interval: cfg.heartbeat,
            partner: NodeId::blade(cfg.partner.slot).unwrap_or(NodeId(cfg.partner.slot)),
            ever_petted: false,
        }))
    }

    /// The countdown the watchdog runs (what the Hello announces).
    pub fn timeout_ms(&self) -> u32 {
        self.wd.timeout_ms()
    }

    /// Takes the proofs out of an endpoint event: a partner heartbeat's echo, the ShMC's
    /// answer to a `Present`.
    pub fn observe(&mut self, ev: &Event) {
        match ev {
            Event::Message {
                from,
                message:
                    Message::Heartbeat {
                        partner_seq: Some(s),
                        ..
                    },
                ..
            } if *from == self.partner => {
                self.policy.partner_echo(*s);
            }
            Event::Acked {
                to,
                seq,
                kind: Kind::Present,
                status,
            } if *to == NodeId::SHMC => {
                self.policy.present_answered(*seq, status.is_delivered());
            }
            Event::GaveUp {
                to,
                seq,
                kind: Kind::Present,
            } if *to == NodeId::SHMC => {
                self.policy.present_answered(*seq, false);
            }
            _ => {}
        }
    }

    /// A heartbeat went to `to` under wire sequence `seq` (remembered when `to` is the partner).
    pub fn beat_sent(&mut self, to: NodeId, seq: u64) {
        if to == self.partner {
            self.policy.beat_sent(seq, Instant::now());
        }
    }

    /// Sends a `Present` to the ShMC unless one is still unanswered (see the module doc).
    pub fn send_present(&mut self, ep: &mut Endpoint, now_ms: u64) {
        if self.policy.presents_in_flight() > 0 {
            return;
        }
        match ep.send(NodeId::SHMC, &Message::Present, now_ms) {
            Ok(seq) => self.policy.present_sent(seq, Instant::now()),
            Err(e) => log::debug!("Present to the ShMC: {e}"),
        }
    }

    /// Pets when the proofs allow it (at most four times per heartbeat interval while petting);
    /// logs when petting stops and when it resumes.
    pub fn pet_if_heard(&mut self) {
        let now = Instant::now();
        if self.policy.may_pet(now) {
            let resumed = !self.policy.petting();
            if resumed || now.duration_since(self.policy.last_pet()) >= self.interval / 4 {
                if let Err(e) = self.wd.pet() {
                    log::error!("hardware watchdog not petted: {e}");
                    return;
                }
                self.policy.petted(now);
            }
            if resumed {
                let by = match self.policy.heard() {
                    Some((_, Witness::Shmc)) => "the ShMC",
                    _ => "the partner",
                };
                log::warn!(
                    "heard by {by} again{}: hardware watchdog petted",
                    if self.ever_petted {
                        ""
                    } else {
                        " (first time in this run)"
                    }
                );
                self.ever_petted = true;
            }
        } else if self.policy.petting() {
            self.policy.stopped();
            let since = self
                .policy
                .heard()
                .map(|(at, _)| wall_clock(at))
                .unwrap_or_else(|| "the start".to_owned());
            let left = (self.policy.last_pet()
                + Duration::from_millis(u64::from(self.timeout_ms())))
            .saturating_duration_since(now);
            log::error!(
                "not heard by the ShMC nor the partner since {since}: watchdog no longer petted, the blade resets in about {} ms",
                left.as_millis()
            );
        }
    }

    /// Clean stop: tells the ShMC that the watchdog is no longer armed (`hello` again, without
    /// watchdog) and disarms once it acknowledged; otherwise leaves it armed, so the ShMC's
    /// watchdog proof stays true (the blade resets unless an agent pets it again).
    pub fn stop(mut self, ep: &mut Endpoint, now_ms: &dyn Fn() -> u64, hello: &Message) {
        let unarmed = match hello {
            Message::Hello {
                slot,
                version,
                capabilities,
                heartbeat_ms,
                ..
            } => Message::Hello {
                slot: *slot,
                version: *version,
                capabilities: *capabilities,
                heartbeat_ms: *heartbeat_ms,
                watchdog_ms: None,
            },
            other => other.clone(),
        };
        let acked = match ep.send(NodeId::SHMC, &unarmed, now_ms()) {
            Ok(seq) => self.await_ack(ep, now_ms, seq),
            Err(e) => {
                log::error!("cannot tell the ShMC that the watchdog is disarmed: {e}");
                false
            }
        };
        let timeout = self.timeout_ms();
        if acked {
            match self.wd.disarm() {
                Ok(()) => log::info!("the ShMC knows the watchdog is no longer armed: disarmed"),
                Err(e) => log::error!(
                    "hardware watchdog not disarmed: {e}; the blade resets in about {timeout} ms unless an agent pets it"
                ),
            }
        } else {
            log::error!(
                "the ShMC did not acknowledge that the watchdog is disarmed: left armed, the blade resets in about {timeout} ms unless an agent pets it"
            );
        }
    }

    /// Waits up to [`STOP_WAIT`] for the ShMC's answer to the command `seq`, petting on the
    /// proofs that still come in meanwhile.
    fn await_ack(&mut self, ep: &mut Endpoint, now_ms: &dyn Fn() -> u64, seq: u64) -> bool {
        let deadline = Instant::now() + STOP_WAIT;
        while Instant::now() < deadline {
            while let Some(ev) = ep.poll(now_ms()) {
                match ev {
                    Event::Acked {
                        to, seq: s, status, ..
                    } if to == NodeId::SHMC && s == seq => return status.is_delivered(),
                    Event::GaveUp { to, seq: s, .. } if to == NodeId::SHMC && s == seq => {
                        return false
                    }
                    other => self.observe(&other),
                }
            }
            self.pet_if_heard();
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = ep
                .next_timeout_ms(now_ms())
                .map_or(left, |t| left.min(Duration::from_millis(t)));
            if ep
                .wait(Some(u64::try_from(wait.as_millis()).unwrap_or(0)))
                .is_err()
            {
                return false;
            }
        }
        false
    }
}

/// `at` on the wall clock, UTC, to the millisecond (`2026-12-02T18:34:03.123Z`).
pub fn wall_clock(at: Instant) -> String {
    let ago = Instant::now().saturating_duration_since(at);
    let t = SystemTime::now()
        .checked_sub(ago)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    format_utc(t)
}

/// Formats a time since 1970 as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_utc(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}
