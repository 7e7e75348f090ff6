//! The guest table: everything the agent keeps per guest, under one lock. Per guest: whether
//! it is being stopped on order (its death is then no crash to report), how many of its
//! define/start/resume calls are inside libvirt right now, and why its warm standby was
//! refused; for all guests, the protected set (stored: `protected.json`, see
//! [`ProtectedSet`]) and the fenced flag.
//!
//! The table is also the start gate: every define, start and resume passes [`GuestTable::call`].
//! None begins once the blade is fenced (the flag is read under the same lock the fence sets
//! it under), and the fence sees which calls are still inside libvirt. A call stays registered
//! until libvirt returns, also past its deadline (a late start may still create a QEMU).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::decide::standby::StandbyRefusal;
use crate::store::protected::ProtectedSet;

/// What the agent keeps of one guest (absent from the table: nothing of note).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Guest {
    /// Being stopped on order (DestroyGuest, Evacuate, FenceSelf).
    stopping: bool,
    /// Its define/start/resume calls inside libvirt right now.
    starts_in_flight: usize,
    /// Why its warm standby is refused (logged once per reason).
    standby_refusal: Option<StandbyRefusal>,
}

#[derive(Debug)]
struct Table {
    guests: BTreeMap<String, Guest>,
    protected: ProtectedSet,
}

impl Table {
    /// Applies `f` to the entry of `name`, dropping it again when it holds nothing.
    fn with<R>(&mut self, name: &str, f: impl FnOnce(&mut Guest) -> R) -> R {
        let g = self.guests.entry(name.to_owned()).or_default();
        let r = f(g);
        if *g == Guest::default() {
            self.guests.remove(name);
        }
        r
    }
}

/// The guest table (see the module documentation).
#[derive(Debug)]
pub(super) struct GuestTable {
    fenced: AtomicBool,
    table: Mutex<Table>,
    cv: Condvar,
}

impl GuestTable {
    /// A table with the stored protected set.
    pub(super) fn new(protected: ProtectedSet) -> GuestTable {
        GuestTable {
            fenced: AtomicBool::new(false),
            table: Mutex::new(Table {
                guests: BTreeMap::new(),
                protected,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ----- the fence and the start gate -----

    /// Marks the blade fenced (a fence recorded earlier in this boot): no call begins.
    pub(super) fn set_fenced(&self) {
        self.fenced.store(true, Ordering::SeqCst);
    }

    /// Whether the blade is fenced.
    pub(super) fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    /// Runs `call` for guest `name` unless the blade is fenced (then `None`, nothing called).
    pub(super) fn call<T>(&self, name: &str, call: impl FnOnce() -> T) -> Option<T> {
        {
            let mut t = self.lock();
            if self.is_fenced() {
                log::warn!("`{name}`: not started: this blade is fenced");
                return None;
            }
            t.with(name, |g| g.starts_in_flight += 1);
        }
        let r = call();
        self.lock().with(name, |g| {
            g.starts_in_flight = g.starts_in_flight.saturating_sub(1)
        });
        self.cv.notify_all();
        Some(r)
    }

    /// Sets the fenced flag (with `fence`) and waits up to `wait` for the calls in flight to
    /// return; returns the guests whose calls are still inside libvirt.
    pub(super) fn close(&self, fence: bool, wait: Duration) -> BTreeSet<String> {
        let deadline = Instant::now() + wait;
        let in_flight = |t: &Table| -> BTreeSet<String> {
            t.guests
                .iter()
                .filter(|(_, g)| g.starts_in_flight > 0)
                .map(|(n, _)| n.clone())
                .collect()
        };
        let mut t = self.lock();
        if fence {
            self.set_fenced();
        }
        while !in_flight(&t).is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            t = match self.cv.wait_timeout(t, left) {
                Ok((t, _)) => t,
                Err(p) => p.into_inner().0,
            };
        }
        in_flight(&t)
    }

    // ----- stopping on order -----

    /// These guests are being stopped on order.
    pub(super) fn stopping(&self, names: impl IntoIterator<Item = String>) {
        let mut t = self.lock();
        for n in names {
            t.with(&n, |g| g.stopping = true);
        }
    }

    /// `name` is no longer being stopped (it is started again).
    pub(super) fn not_stopping(&self, name: &str) {
        self.lock().with(name, |g| g.stopping = false);
    }

    /// Whether a crash of `name` is one to report: protected here and not stopped on order.
    pub(super) fn crash_is_news(&self, name: &str) -> bool {
        let t = self.lock();
        !t.guests.get(name).is_some_and(|g| g.stopping) && t.protected.contains(name)
    }

    // ----- protection -----

    /// Works on the protected set under the table's lock.
    pub(super) fn protected<R>(&self, f: impl FnOnce(&mut ProtectedSet) -> R) -> R {
        f(&mut self.lock().protected)
    }

    // ----- warm standby -----

    /// Records why the warm standby of `name` is refused (`None`: allowed); returns whether
    /// the reason is new (to log it once).
    pub(super) fn set_standby_refusal(&self, name: &str, why: Option<StandbyRefusal>) -> bool {
        self.lock().with(name, |g| {
            let new = why.is_some() && g.standby_refusal != why;
            g.standby_refusal = why;
            new
        })
    }

    /// Why the warm standby of `name` is refused, if it is.
    pub(super) fn standby_refusal(&self, name: &str) -> Option<StandbyRefusal> {
        self.lock()
            .guests
            .get(name)
            .and_then(|g| g.standby_refusal.clone())
    }

    /// Every refused warm standby, with why.
    pub(super) fn standby_refusals(&self) -> BTreeMap<String, StandbyRefusal> {
        self.lock()
            .guests
            .iter()
            .filter_map(|(n, g)| Some((n.clone(), g.standby_refusal.clone()?)))
            .collect()
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn test_one_entry_per_guest_dropped_when_empty() {
        let dir = TempDir::new("guest-table");
        let t = GuestTable::new(ProtectedSet::open(dir.path()));
        t.stopping(["a".to_owned()]);
        let no_disk = || StandbyRefusal::NoDisk { guest: "a".into() };
        assert!(t.set_standby_refusal("a", Some(no_disk())));
        assert!(!t.set_standby_refusal("a", Some(no_disk())), "logged once");
        assert_eq!(
            t.call("a", || t.close(false, Duration::ZERO)),
            Some(BTreeSet::from(["a".to_owned()]))
        );
        assert!(t.close(false, Duration::ZERO).is_empty());
        assert_eq!(t.standby_refusal("a"), Some(no_disk()));
        t.not_stopping("a");
        t.set_standby_refusal("a", None);
        assert!(t.lock().guests.is_empty());
        assert!(t.close(true, Duration::ZERO).is_empty());
        assert_eq!(t.call("a", || ()), None, "fenced: nothing begins");
    }
}
