//! When the agent may pet the blade's hardware watchdog: only while it holds a recent proof
//! that its own frames are heard (pure bookkeeping; times are passed in).
//!
//! Hearing others proves nothing: an agent whose outbound traffic is cut while its inbound
//! traffic still arrives would pet forever while the ShMC, hearing nothing of it, fails its
//! guests over. Two proofs count, both free of clock offsets between nodes:
//!
//! 1. **Partner echo.** Every heartbeat carries `partner_seq`, the frame sequence of the
//!    latest heartbeat its sender received from its partner. We remember when we sent each of
//!    our recent heartbeats to the partner ([`PetPolicy::beat_sent`]); an echo of sequence `s`
//!    proves the partner heard us at or after the send time of `s`. A sequence we do not
//!    remember (an earlier run's, one pushed out of the ring, a forged value) proves nothing.
//! 2. **ShMC acknowledgement.** The ShMC acknowledges a `Present` (and counts it as hearing
//!    us) only once it received it: the delivered ack of a `Present` first transmitted at `c`
//!    proves the ShMC heard us at or after `c` ([`PetPolicy::present_sent`],
//!    [`PetPolicy::present_answered`]). A `Rejected` ack (a ShMC that does not know the kind)
//!    proves nothing.
//!
//! With `c` the send time of the latest frame proven heard, the agent pets only while
//! `now < c + 2 x heartbeat interval` ([`PetPolicy::may_pet`]). The ShMC decides
//! `WatchdogExpired` at `d` only when neither it nor the partner heard the blade since
//! `d - T - heartbeat_timeout`, so `c <= d - T - heartbeat_timeout`; the last pet is before
//! `c + 2 x interval`, and the watchdog resets the blade before
//! `c + 2 x interval + T <= d - heartbeat_timeout + 2 x interval < d` because the ShMC
//! requires `heartbeat_timeout >= 3 x interval`. See `docs/design.md`, "Hardware watchdog".
//!
//! **Resuming** after petting stopped (or before the first pet after arming) is stricter. The
//! ShMC knows what the partner heard only from the partner's latest report, which can be older
//! than what the partner has already echoed back to us (the echo and the report leave in the
//! same heartbeat, and the one to the ShMC may be delayed). A blade unheard for `T +
//! heartbeat_timeout` whose next heartbeat reaches the partner just before its watchdog fires
//! could otherwise resume on the echo while the ShMC, still holding the older report, decides.
//! So petting resumes on a fresh ShMC proof at any time (the ShMC counts what it acks before it
//! acks it), but on a fresh partner proof only while at least half the timeout is left on the
//! countdown: that race then needs the report to reach the ShMC more than
//! `heartbeat_timeout - 2 x interval + T / 2` later than the echo reaches us.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Sent frames remembered per proof: far more than are in flight within two heartbeat
/// intervals (one heartbeat per interval, at most one `Present` in flight).
pub const RING: usize = 32;

/// The proof bookkeeping of one agent run.
#[derive(Debug, Clone)]
pub struct PetPolicy {
    /// The agent's heartbeat interval.
    interval: Duration,
    /// The watchdog's countdown.
    timeout: Duration,
    /// (wire sequence, send time) of our latest heartbeats to the partner, oldest first.
    beats: VecDeque<(u64, Instant)>,
    /// (send handle, first transmission) of our `Present` commands not answered yet.
    presents: VecDeque<(u64, Instant)>,
    /// Send time of the latest frame the partner proved it heard.
    by_partner: Option<Instant>,
    /// Send time of the latest frame the ShMC proved it heard.
    by_shmc: Option<Instant>,
    /// The latest pet (or the arming, which starts the countdown).
    last_pet: Instant,
    /// Petted on the latest proof (false after arming and once the proofs got too old).
    petting: bool,
}

/// Who proved that the agent was heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Witness {
    /// The partner echoed one of our heartbeats.
    Partner,
    /// The ShMC acknowledged one of our `Present` commands.
    Shmc,
}

impl PetPolicy {
    /// A policy for an agent heartbeating every `interval` whose watchdog, counting `timeout`,
    /// was armed at `armed`; nothing proven yet.
    pub fn new(interval: Duration, timeout: Duration, armed: Instant) -> Self {
        PetPolicy {
            interval,
            timeout,
            beats: VecDeque::with_capacity(RING),
            presents: VecDeque::with_capacity(RING),
            by_partner: None,
            by_shmc: None,
            last_pet: armed,
            petting: false,
        }
    }

    /// A heartbeat went to the partner under wire sequence `seq` at `at`.
    pub fn beat_sent(&mut self, seq: u64, at: Instant) {
        if self.beats.len() >= RING {
            self.beats.pop_front();
        }
        self.beats.push_back((seq, at));
    }

    /// A `Present` with send handle `seq` was first transmitted at `at`.
    pub fn present_sent(&mut self, seq: u64, at: Instant) {
        if self.presents.len() >= RING {
            self.presents.pop_front();
        }
        self.presents.push_back((seq, at));
    }

    /// `Present`s sent and not answered yet.
    pub fn presents_in_flight(&self) -> usize {
        self.presents.len()
    }

    /// The partner's heartbeat echoed `partner_seq`; returns the send time it proves, if any.
    pub fn partner_echo(&mut self, partner_seq: u64) -> Option<Instant> {
        let at = self
            .beats
            .iter()
            .find(|(s, _)| *s == partner_seq)
            .map(|(_, t)| *t)?;
        self.by_partner = Some(self.by_partner.map_or(at, |h| h.max(at)));
        Some(at)
    }

    /// The ShMC answered the `Present` with handle `seq` (`delivered`: accepted or duplicate),
    /// or the endpoint gave it up (`delivered` false). Returns the send time it proves, if any.
    pub fn present_answered(&mut self, seq: u64, delivered: bool) -> Option<Instant> {
        let i = self.presents.iter().position(|(s, _)| *s == seq)?;
        let (_, at) = self.presents.remove(i)?;
        if !delivered {
            return None;
        }
        self.by_shmc = Some(self.by_shmc.map_or(at, |h| h.max(at)));
        Some(at)
    }

    /// Send time of the latest frame proven heard, and who heard it.
    pub fn heard(&self) -> Option<(Instant, Witness)> {
        match (self.by_shmc, self.by_partner) {
            (Some(s), Some(p)) if p > s => Some((p, Witness::Partner)),
            (Some(s), _) => Some((s, Witness::Shmc)),
            (None, Some(p)) => Some((p, Witness::Partner)),
            (None, None) => None,
        }
    }

    /// Until when petting may go on: the latest proof plus two heartbeat intervals.
    pub fn pet_deadline(&self) -> Option<Instant> {
        self.heard().map(|(h, _)| h + self.interval * 2)
    }

    /// Whether `proof` is fresh at `now`.
    fn fresh(&self, proof: Option<Instant>, now: Instant) -> bool {
        proof.is_some_and(|c| now < c + self.interval * 2)
    }

    /// Whether the watchdog may be petted at `now`: while petting, on any fresh proof; to
    /// resume, on a fresh ShMC proof, or on a fresh partner proof with at least half the
    /// timeout left on the countdown (see the module doc).
    pub fn may_pet(&self, now: Instant) -> bool {
        if self.petting {
            return self.fresh(self.heard().map(|h| h.0), now);
        }
        let left = (self.last_pet + self.timeout).saturating_duration_since(now);
        self.fresh(self.by_shmc, now)
            || (self.fresh(self.by_partner, now) && left >= self.timeout / 2)
    }

    /// Whether the latest decision was to pet.
    pub fn petting(&self) -> bool {
        self.petting
    }

    /// The watchdog was petted at `now`.
    pub fn petted(&mut self, now: Instant) {
        self.last_pet = now;
        self.petting = true;
    }

    /// Petting stopped (the proofs got too old); resuming is stricter from now on.
    pub fn stopped(&mut self) {
        self.petting = false;
    }

    /// The latest pet (or the arming).
    pub fn last_pet(&self) -> Instant {
        self.last_pet
    }
}
