//! The rules of evidence on silence: an IPMC or an agent that goes quiet is
//! a failure only when the other channel agrees, the shelf manager suspects
//! its own bus or network before it suspects a blade, a silence never
//! leaves both blades of a pair fenced, and an announced hardware watchdog
//! turns a long silence on every channel into a fence proof.
//!
//! # Channels and what each last heard of blade X
//! - IPMB: X's IPMC (`last_heard`: any response or Platform Event);
//! - the agent at the shelf manager (`last_heartbeat` of a registered agent,
//!   [`Evidence::agent_seen`](super::state::Evidence) for any message of it);
//! - the agent at its partner: the partner's heartbeat says how long ago it
//!   last heard X ([`AgentInput::Heartbeat::partner_heard_ago_ms`]).
//!
//! # Rules (`probe_timeout`, `heartbeat_timeout` from the configuration)
//! - IPMC silent >= `probe_timeout`: when X's agent was heard at the shelf
//!   manager, or by its partner, within `heartbeat_timeout`, X is in service:
//!   decision `ipmc_lost` (alert only, once per silence); a registered agent
//!   that announced live migration is ordered to migrate its guests to the
//!   partner ([`Order::Migrate`]: nothing is stopped, the blade is not
//!   fenced) when the partner can take them and the agent is heard here
//!   (the order must reach it). Otherwise `blade_lost`.
//! - Registered agent silent >= `heartbeat_timeout` while its IPMC answers
//!   in M4: when the partner heard X within `heartbeat_timeout`, decision
//!   `agent_link_lost` (alert only, once per silence); otherwise `host_os`.
//! - Bus suspect: when an IPMC's silence reaches `probe_timeout` while
//!   another blade without an open incident has missed a probe (silent longer
//!   than `probe_interval + request_timeout`, and silent since no more than
//!   one `probe_timeout` before it), alert `ipmb_suspect`; until any IPMC is
//!   heard again nothing is decided on IPMC silence. Then every IPMC's
//!   silence is shifted by the suspected span, and capped at half a probe
//!   timeout: a blade still silent gets at least that long before its
//!   silence counts again.
//! - Network suspect: the same for agents (another registered agent without
//!   an open incident silent longer than half `heartbeat_timeout`, and since
//!   no more than one `heartbeat_timeout` before it): alert
//!   `network_suspect`; no decision on agent silence, and agent silence
//!   corroborates nothing, until any agent is heard again; then the same
//!   shift, capped at half a heartbeat timeout, of every agent's
//!   `last_heartbeat`, of what the shelf manager last heard of it
//!   (`agent_seen`) and of what its partner last reported hearing of it
//!   (`partner_heard`).
//! - Settling: for one `heartbeat_timeout` after either suspicion ends, no
//!   decision on silence and no watchdog proof: the evidence the shelf
//!   manager's own fault held back (heartbeats, partner reports) comes in
//!   first.
//! - Pair: a silence-based fence (`blade_lost` on IPMC silence, `host_os` on
//!   agent silence) of X is not started while X's partner has an open
//!   incident (other than a `blade_degraded` migration): alert
//!   `fence_withheld`, once per silence; the operator decides.
//! - Watchdog: X's agent announced, when it registered, a hardware watchdog
//!   armed with timeout T. While X's fence is under way over IPMB, neither
//!   channel suspect nor settling, no channel has heard X for longer than
//!   T + `heartbeat_timeout` (the margin: an agent pets only for two
//!   heartbeat intervals after the sending of its latest frame the shelf
//!   manager acknowledged or its partner echoed, so its last pet came less
//!   than `heartbeat_timeout` after the last frame anyone heard from it),
//!   the partner's word is fresh (its agent registered and heard here within
//!   `heartbeat_timeout`, its latest report on X received within
//!   `heartbeat_timeout`, and that report says it has not heard X for at
//!   least T + `heartbeat_timeout`), and the IPMC was asked for at least
//!   `probe_timeout` (probing, or the fence's own requests): the fence is
//!   confirmed, [`Confirmation::WatchdogExpired`], and the guests fail over.
//!   A partner that is unregistered, silent, or reports nothing on X gives
//!   no proof: the fence stays unconfirmed, the operator decides.
//! - Announced watchdog: T = 0, T below the announced heartbeat interval,
//!   T beyond the longest IPMI watchdog countdown ([`WATCHDOG_MAX_MS`]), or
//!   a heartbeat interval not announced or above a third of
//!   `heartbeat_timeout` (the margin above would not cover the agent's two
//!   intervals of petting) is refused (the blade has no watchdog) and raises
//!   `watchdog_refused`.
//! - Timing: a registration announcing a heartbeat interval with
//!   `heartbeat_timeout < 3 x interval` raises `heartbeat_timing`.
//! - `heartbeat_timing` and `watchdog_refused` are raised at most once per
//!   registration episode: from the agent's registration until the blade
//!   is fenced and its agent registers again.

use log::{info, warn};

use super::*;

/// The longest countdown of an IPMI watchdog timer (16 bits of 100 ms): an
/// announced watchdog beyond it is refused.
pub(super) const WATCHDOG_MAX_MS: u32 = 6_553_500;

/// The shelf manager suspects one of its own channels since then.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Suspect {
    /// Its IPMB: several IPMCs went silent together.
    pub(super) ipmb: Option<u64>,
    /// Its network: several agents went silent together.
    pub(super) network: Option<u64>,
    /// The latest suspicion (either channel) ended then: no decision on
    /// silence and no watchdog proof for one heartbeat timeout after it.
    pub(super) ended: Option<u64>,
}

impl Shelf {
    /// The IPMC of `idx` was heard (a response or a Platform Event).
    pub(super) fn ipmc_heard(&mut self, now: u64, idx: BladeIdx) {
        if let Some(since) = self.suspect.ipmb.take() {
            let cap = self.cfg.timing.probe_timeout_ms / 2;
            let paused = now.saturating_sub(since);
            for j in self.blades.indices() {
                let b = &mut self.blades[j];
                b.last_heard = b.last_heard.map(|h| shift(h, paused, now, cap));
            }
            self.suspect.ended = Some(now);
            info!(
                "IPMB answers again (slot {}); silence clocks resume after {paused} ms",
                self.blades[idx].cfg.slot
            );
        }
        let b = &mut self.blades[idx];
        b.last_heard = Some(now);
        b.evidence.ipmc_lost = false;
        if b.evidence.withheld == Some(Class::BladeLost) {
            b.evidence.withheld = None;
        }
    }

    /// The agent of `idx` sent something.
    pub(super) fn agent_heard(&mut self, now: u64, idx: BladeIdx) {
        if let Some(since) = self.suspect.network.take() {
            let cap = self.cfg.timing.heartbeat_timeout_ms / 2;
            let paused = now.saturating_sub(since);
            for j in self.blades.indices() {
                let b = &mut self.blades[j];
                b.last_heartbeat = shift(b.last_heartbeat, paused, now, cap);
                let e = &mut b.evidence;
                e.agent_seen = e.agent_seen.map(|h| shift(h, paused, now, cap));
                e.partner_heard = e.partner_heard.map(|h| shift(h, paused, now, cap));
            }
            self.suspect.ended = Some(now);
            info!(
                "agent of slot {} heard again; heartbeat clocks resume after {paused} ms",
                self.blades[idx].cfg.slot
            );
        }
        let e = &mut self.blades[idx].evidence;
        e.agent_seen = Some(now);
        e.agent_link_lost = false;
        e.withheld = None;
    }

    /// The agent of `idx` last heard its partner `ago_ms` before `now`.
    pub(super) fn partner_report(&mut self, now: u64, idx: BladeIdx, ago_ms: u32) {
        let Some(p) = self.index_of_slot(self.blades[idx].partner()) else {
            return;
        };
        let at = now.saturating_sub(u64::from(ago_ms));
        let e = &mut self.blades[p].evidence;
        e.partner_heard = Some(e.partner_heard.map_or(at, |h| h.max(at)));
        e.partner_report = Some(now);
    }

    /// A registration: the announced heartbeat interval fits the timeout
    /// (alerted once per registration episode).
    pub(super) fn check_heartbeat_timing(&mut self, idx: BladeIdx) {
        let b = &mut self.blades[idx];
        let interval_ms = b.evidence.heartbeat_interval_ms;
        let timeout_ms = self.cfg.timing.heartbeat_timeout_ms;
        if interval_ms != 0 && timeout_ms < 3 * u64::from(interval_ms) && !b.evidence.timing_alerted
        {
            b.evidence.timing_alerted = true;
            let slot = b.cfg.slot;
            self.alert(Alert::HeartbeatTiming {
                slot,
                interval_ms,
                timeout_ms,
            });
        }
    }

    /// A registration announcing a watchdog of `watchdog_ms` and a heartbeat
    /// interval of `interval_ms` (0: not announced): the watchdog kept, or
    /// `None` when it is 0, below the interval, or beyond the longest IPMI
    /// watchdog countdown (refused, alerted once per registration episode).
    pub(super) fn fitting_watchdog(
        &mut self,
        idx: BladeIdx,
        watchdog_ms: Option<u32>,
        interval_ms: u32,
    ) -> Option<u32> {
        let wd = watchdog_ms?;
        let timeout_ms = self.cfg.timing.heartbeat_timeout_ms;
        let margin_covers = interval_ms != 0 && u64::from(interval_ms) * 3 <= timeout_ms;
        if wd != 0 && wd >= interval_ms && wd <= WATCHDOG_MAX_MS && margin_covers {
            return Some(wd);
        }
        let b = &mut self.blades[idx];
        warn!(
            "slot {}: announced watchdog of {wd} ms refused (heartbeat interval {interval_ms} ms, heartbeat timeout {timeout_ms} ms)",
            b.cfg.slot
        );
        if !b.evidence.watchdog_alerted {
            b.evidence.watchdog_alerted = true;
            let slot = b.cfg.slot;
            self.alert(Alert::WatchdogRefused {
                slot,
                watchdog_ms: wd,
                interval_ms,
                timeout_ms,
            });
        }
        None
    }

    /// A suspicion ended less than a heartbeat timeout before `now`: the
    /// evidence it held back is not fresh yet.
    fn settling(&self, now: u64) -> bool {
        let t = self.cfg.timing.heartbeat_timeout_ms;
        self.suspect
            .ended
            .is_some_and(|e| now.saturating_sub(e) < t)
    }

    /// The agent of `idx` sent something within the last `ms`.
    pub(super) fn agent_heard_within(&self, now: u64, idx: BladeIdx, ms: u64) -> bool {
        self.blades[idx]
            .evidence
            .agent_seen
            .is_some_and(|h| now.saturating_sub(h) < ms)
    }

    /// The partner of `idx` heard its heartbeat within the heartbeat timeout.
    fn partner_hears(&self, now: u64, idx: BladeIdx) -> bool {
        let t = self.cfg.timing.heartbeat_timeout_ms;
        self.blades[idx]
            .evidence
            .partner_heard
            .is_some_and(|h| now.saturating_sub(h) < t)
    }

    /// The IPMC of `idx` (no open incident) is silent for `silent_ms`, at
    /// least the probe timeout.
    pub(super) fn ipmc_silent(&mut self, now: u64, idx: BladeIdx, silent_ms: u64) {
        if self.settling(now) || self.ipmb_suspected(now, idx, silent_ms) {
            return;
        }
        let hb = self.cfg.timing.heartbeat_timeout_ms;
        let b = self.blades[idx];
        if self.agent_heard_within(now, idx, hb) || self.partner_hears(now, idx) {
            if !b.evidence.ipmc_lost {
                self.blades[idx].evidence.ipmc_lost = true;
                self.decide(
                    now,
                    idx,
                    Class::IpmcLost,
                    Cause::ProbeLoss { silent_ms },
                    None,
                );
            }
            return;
        }
        // The agent's silence corroborates only when the network is not suspect.
        let agent_silent_ms = now.saturating_sub(b.last_heartbeat);
        if self.suspect.network.is_some()
            || (b.registered && self.network_suspected(now, idx, agent_silent_ms))
        {
            return;
        }
        if self.pair_withheld(idx, Class::BladeLost) {
            return;
        }
        self.decide(
            now,
            idx,
            Class::BladeLost,
            Cause::ProbeLoss { silent_ms },
            None,
        );
    }

    /// The registered agent of `idx` (no open incident, IPMC answering in
    /// M4) is silent for `silent_ms`, at least the heartbeat timeout.
    pub(super) fn agent_silent(&mut self, now: u64, idx: BladeIdx, silent_ms: u64) {
        if self.settling(now) || self.network_suspected(now, idx, silent_ms) {
            return;
        }
        if self.partner_hears(now, idx) {
            if !self.blades[idx].evidence.agent_link_lost {
                self.blades[idx].evidence.agent_link_lost = true;
                self.decide(
                    now,
                    idx,
                    Class::AgentLinkLost,
                    Cause::HeartbeatLoss { silent_ms },
                    None,
                );
            }
            return;
        }
        if self.pair_withheld(idx, Class::HostOs) {
            return;
        }
        self.decide(
            now,
            idx,
            Class::HostOs,
            Cause::HeartbeatLoss { silent_ms },
            None,
        );
    }

    /// The bus is suspect (already, or now: another IPMC went silent within
    /// one probe timeout of this one, which is silent for `silent_ms`).
    fn ipmb_suspected(&mut self, now: u64, idx: BladeIdx, silent_ms: u64) -> bool {
        if self.suspect.ipmb.is_some() {
            return true;
        }
        let t = self.cfg.timing;
        let missed = t.probe_interval_ms.saturating_add(t.request_timeout_ms);
        let window = silent_ms.saturating_add(t.probe_timeout_ms);
        let others = self
            .blades
            .indices()
            .filter(|&j| j != idx)
            .filter(|&j| {
                let o = &self.blades[j];
                o.incident.is_none()
                    && o.last_heard
                        .map(|h| now.saturating_sub(h))
                        .is_some_and(|s| s > missed && s <= window)
            })
            .count();
        if others == 0 {
            return false;
        }
        self.suspect.ipmb = Some(now);
        self.alert(Alert::IpmbSuspect {
            silent: others.saturating_add(1) as u8,
        });
        true
    }

    /// The network is suspect (already, or now: another registered agent
    /// went silent within one heartbeat timeout of this one, which is silent
    /// for `silent_ms`).
    fn network_suspected(&mut self, now: u64, idx: BladeIdx, silent_ms: u64) -> bool {
        if self.suspect.network.is_some() {
            return true;
        }
        let t = self.cfg.timing.heartbeat_timeout_ms;
        let window = silent_ms.saturating_add(t);
        let others = self
            .blades
            .indices()
            .filter(|&j| j != idx)
            .filter(|&j| {
                let o = &self.blades[j];
                let s = now.saturating_sub(o.last_heartbeat);
                o.incident.is_none() && o.registered && s > t / 2 && s <= window
            })
            .count();
        if others == 0 {
            return false;
        }
        self.suspect.network = Some(now);
        self.alert(Alert::NetworkSuspect {
            silent: others.saturating_add(1) as u8,
        });
        true
    }

    /// A silence-based fence of `idx` (`class`) would leave both blades of
    /// its pair fenced: it is withheld (alerted once per silence).
    fn pair_withheld(&mut self, idx: BladeIdx, class: Class) -> bool {
        let partner = self.blades[idx].partner();
        let busy = self.index_of_slot(partner).is_some_and(|p| {
            self.blades[p]
                .incident
                .is_some_and(|i| !matches!(i.state, IncidentState::Migrating { .. }))
        });
        if !busy {
            return false;
        }
        if self.blades[idx].evidence.withheld != Some(class) {
            self.blades[idx].evidence.withheld = Some(class);
            let slot = self.blades[idx].cfg.slot;
            self.alert(Alert::FenceWithheld {
                slot,
                partner,
                class,
            });
        }
        true
    }

    /// The watchdog proof of the fence under way for `idx`, when it holds.
    pub(super) fn watchdog_proof(&mut self, now: u64, idx: BladeIdx) {
        if self.suspect.ipmb.is_some() || self.suspect.network.is_some() || self.settling(now) {
            return;
        }
        let t = self.cfg.timing;
        let b = &self.blades[idx];
        let Some(wd) = b.evidence.watchdog_ms else {
            return;
        };
        let margin = u64::from(wd).saturating_add(t.heartbeat_timeout_ms);
        // The partner's word must be fresh: its agent registered and heard
        // within a heartbeat timeout, its latest report on X within one, and
        // that report says it has not heard X for at least the margin (T +
        // a heartbeat timeout). A partner that says nothing proves nothing.
        let partner_fresh = self.index_of_slot(b.partner()).is_some_and(|p| {
            self.blades[p].registered && self.agent_heard_within(now, p, t.heartbeat_timeout_ms)
        });
        let report_says = match (b.evidence.partner_report, b.evidence.partner_heard) {
            (Some(r), Some(h)) => {
                now.saturating_sub(r) < t.heartbeat_timeout_ms && r.saturating_sub(h) >= margin
            }
            _ => false,
        };
        if !(partner_fresh && report_says) {
            return;
        }
        let asked = self.cfg.probing
            || b.fence_began
                .is_some_and(|f| now.saturating_sub(f.ms) >= t.probe_timeout_ms);
        let last = [
            b.last_heard,
            b.evidence.agent_seen,
            b.evidence.partner_heard,
        ]
        .into_iter()
        .flatten()
        .max();
        let (Some(last), true) = (last, asked) else {
            return;
        };
        let silent_ms = now.saturating_sub(last);
        if silent_ms > margin {
            info!(
                "slot {}: silent on every channel for {silent_ms} ms, past its announced watchdog of {wd} ms and a heartbeat timeout: reset by its watchdog",
                b.cfg.slot
            );
            self.fence_confirmed(now, idx, Confirmation::WatchdogExpired);
        }
    }
}

/// `heard` moved on by `paused`, no later than `now` and no earlier than
/// `cap` before it.
fn shift(heard: u64, paused: u64, now: u64, cap: u64) -> u64 {
    heard
        .saturating_add(paused)
        .max(now.saturating_sub(cap))
        .min(now)
}
