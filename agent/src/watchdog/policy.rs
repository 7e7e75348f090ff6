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
    /// (wire sequence, send time) of our latest heartbeats to the partner, oldest first.
    beats: VecDeque<(u64, Instant)>,
    /// (send handle, first transmission) of our `Present` commands not answered yet.
    presents: VecDeque<(u64, Instant)>,
    /// Send time of the latest frame proven heard, and by whom.
    heard: Option<(Instant, Witness)>,
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
    /// A policy for an agent heartbeating every `interval`; nothing proven yet.
    pub fn new(interval: Duration) -> Self {
        PetPolicy {
            interval,
            beats: VecDeque::with_capacity(RING),
            presents: VecDeque::with_capacity(RING),
            heard: None,
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
        self.proven(at, Witness::Partner);
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
        self.proven(at, Witness::Shmc);
        Some(at)
    }

    fn proven(&mut self, at: Instant, by: Witness) {
        if self.heard.is_none_or(|(h, _)| at > h) {
            self.heard = Some((at, by));
        }
    }

    /// Send time of the latest frame proven heard, and who heard it.
    pub fn heard(&self) -> Option<(Instant, Witness)> {
        self.heard
    }

    /// Until when petting is allowed: the latest proof plus two heartbeat intervals.
    pub fn pet_deadline(&self) -> Option<Instant> {
        self.heard.map(|(h, _)| h + self.interval * 2)
    }

    /// Whether the watchdog may be petted at `now`.
    pub fn may_pet(&self, now: Instant) -> bool {
        self.pet_deadline().is_some_and(|d| now < d)
    }
}
