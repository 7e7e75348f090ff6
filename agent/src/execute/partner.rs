//! What this agent knows of guests running on either blade of the pair, for the second line
//! against a double start ([`crate::decide::partner`], [`crate::decide::running`]):
//!
//! - the partner's latest heartbeat (when it arrived, its `running` count, how many came
//!   before it), and the bounded wait of an order that starts the partner's guests for a
//!   heartbeat newer than the order; the wait runs on the order's thread, never on the
//!   protocol thread, and lasts at most the window after the partner's latest heartbeat;
//! - the latest reading of this blade's own protected guests (a listing, or a fence's
//!   accounting), from which the heartbeat's `running` count is made; a change wakes the
//!   protocol thread so an extra heartbeat goes out.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Instant;

use super::{lock, Agent};
use crate::decide::partner::{self, PartnerBeat, Verdict};
use crate::decide::running::{running_count, Reading};
use crate::hypervisor::Hypervisor;
use crate::order::Order;

/// The partner's latest heartbeat as received.
#[derive(Debug, Clone, Copy)]
struct Heard {
    at: Instant,
    running: u16,
    count: u64,
}

/// The partner's heartbeats and this blade's own reading (see the module documentation).
#[derive(Default)]
pub(super) struct Pair {
    /// Partner heartbeats received in this run (the latest, and how many).
    heard: Mutex<(Option<Heard>, u64)>,
    /// Signalled on every partner heartbeat.
    cv: Condvar,
    /// Per accepted order that starts partner guests (journal key): how many partner
    /// heartbeats had been received when it was accepted.
    marks: Mutex<HashMap<String, u64>>,
    /// This blade's latest reading, with the moment it began (an older reading noted later
    /// does not replace a newer one).
    own: Mutex<Option<(Instant, Reading)>>,
    /// Called when the own reading changes (wakes the protocol thread).
    changed: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair").finish_non_exhaustive()
    }
}

impl Pair {
    fn latest(&self) -> (Option<PartnerBeat>, u64) {
        let (heard, count) = *lock(&self.heard);
        let beat = heard.map(|h| PartnerBeat {
            age: h.at.elapsed(),
            running: h.running,
            count: h.count,
        });
        (beat, count)
    }

    /// Notes a reading of this blade's guests that began at `at`.
    pub(super) fn own_reading(&self, at: Instant, reading: Reading) {
        let changed = {
            let mut own = lock(&self.own);
            if own.is_some_and(|(t, _)| t > at) {
                return;
            }
            let changed = own.map(|(_, r)| r) != Some(reading);
            *own = Some((at, reading));
            changed
        };
        if changed {
            if let Some(f) = self.changed.get() {
                f();
            }
        }
    }
}

impl<H: Hypervisor + 'static> Agent<H> {
    /// Records a heartbeat of the partner carrying `running` (called by the protocol thread for
    /// every authenticated partner heartbeat).
    pub fn partner_heartbeat(&self, running: u16) {
        {
            let mut heard = lock(&self.pair.heard);
            heard.1 += 1;
            heard.0 = Some(Heard {
                at: Instant::now(),
                running,
                count: heard.1,
            });
        }
        self.pair.cv.notify_all();
    }

    /// Notes, for an order that starts the partner's guests, how many partner heartbeats were
    /// received when it was accepted: those that come later are "after the order".
    pub(super) fn mark_partner_beats(&self, order: &Order) {
        if matches!(order, Order::RestartPartnerGuests { .. }) {
            let count = lock(&self.pair.heard).1;
            lock(&self.pair.marks).insert(order.key(), count);
        }
    }

    /// The mark of `order` noted at its acceptance (taken now if it was not noted).
    pub(super) fn partner_mark(&self, order: &Order) -> u64 {
        lock(&self.pair.marks)
            .remove(&order.key())
            .unwrap_or_else(|| lock(&self.pair.heard).1)
    }

    /// The second line for an order that starts partner guests, marked `mark`: waits (bounded
    /// by the window after the partner's latest heartbeat) and returns `Some(running)` when
    /// the partner still reports running guests, `None` when the starts may go on.
    pub(super) fn partner_gate(&self, what: &str, mark: u64) -> Option<u16> {
        let window = partner::window(self.cfg.heartbeat);
        let waited = Instant::now();
        loop {
            let (latest, _) = self.pair.latest();
            match partner::gate(latest, mark, window) {
                Verdict::Go(why) => {
                    log::info!(
                        "{what}: partner heartbeats allow the starts ({why:?}, waited {} ms)",
                        waited.elapsed().as_millis()
                    );
                    return None;
                }
                Verdict::Refuse { running } => {
                    log::error!(
                        "{what}: REFUSED: the partner still reports {running} running protected \
                         guest(s) in a heartbeat received after the order (waited {} ms); \
                         nothing started",
                        waited.elapsed().as_millis()
                    );
                    return Some(running);
                }
                Verdict::Wait(d) => {
                    log::info!(
                        "{what}: the partner reported running guests {} ms ago: waiting up to \
                         {} ms for a newer heartbeat",
                        latest.map_or(0, |b| b.age.as_millis()),
                        d.as_millis()
                    );
                    let heard = lock(&self.pair.heard);
                    let count = heard.1;
                    // Woken by any partner heartbeat; the loop judges again either way.
                    let _ = self
                        .pair
                        .cv
                        .wait_timeout_while(heard, d, |h| h.1 == count)
                        .map_err(|p| p.into_inner());
                }
            }
        }
    }

    /// At one partner guest's start: `Some(running)` when a partner heartbeat received after
    /// the order (marked `mark`) reports running guests, so this start is refused.
    pub(super) fn partner_refuses_start(&self, mark: u64) -> Option<u16> {
        partner::refuses_start(self.pair.latest().0, mark)
    }

    /// Calls `f` whenever this blade's `running` reading changes (once; later calls are
    /// ignored): the daemon wakes its protocol thread to send an extra heartbeat.
    pub fn on_running_change(&self, f: impl Fn() + Send + Sync + 'static) {
        if self.pair.changed.set(Box::new(f)).is_err() {
            log::warn!("running-change notification already set");
        }
    }

    /// The `running` count of the next heartbeat ([`running_count`]): `libvirt_answers` from
    /// the hypervisor's pings, `protected` the heartbeat's protected count.
    pub fn running_count(&self, libvirt_answers: bool, protected: u16) -> u16 {
        let latest = lock(&self.pair.own).map_or(Reading::Nothing, |(_, r)| r);
        let stored = self.guests.protected(|p| p.names().map(|n| n.len()));
        running_count(latest, libvirt_answers, stored, protected)
    }

    /// Notes what a listing that began at `at` found active among the protected guests.
    pub(super) fn note_active(&self, at: Instant, active: usize) {
        let active = u16::try_from(active).unwrap_or(u16::MAX);
        self.pair.own_reading(at, Reading::Listed { active });
    }

    /// Notes a FenceSelf's accounting, finished now: `remaining` not proven gone.
    pub(super) fn note_fenced(&self, remaining: u16) {
        self.pair
            .own_reading(Instant::now(), Reading::Fenced { remaining });
    }
}
