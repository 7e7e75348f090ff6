//! The start gate: every define, start and resume of a guest passes it. None begins once the
//! blade is fenced, and the fence sees which calls are still inside libvirt.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::lock;

/// The gate every define, start and resume passes: none begins once the blade is fenced (the
/// flag is read under the same lock the fence sets it under), and the fence sees which are
/// still inside libvirt. A call stays registered until libvirt returns, also past its
/// deadline (a late start may still create a QEMU).
#[derive(Debug, Default)]
pub(super) struct StartGate {
    fenced: AtomicBool,
    in_flight: Mutex<BTreeMap<String, usize>>,
    cv: Condvar,
}

impl StartGate {
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
            let mut g = lock(&self.in_flight);
            if self.fenced.load(Ordering::SeqCst) {
                log::warn!("`{name}`: not started: this blade is fenced");
                return None;
            }
            *g.entry(name.to_owned()).or_default() += 1;
        }
        let r = call();
        let mut g = lock(&self.in_flight);
        if let Some(n) = g.get_mut(name) {
            *n -= 1;
            if *n == 0 {
                g.remove(name);
            }
        }
        self.cv.notify_all();
        Some(r)
    }

    /// Sets the fenced flag (with `fence`) and waits up to `wait` for the calls in flight to
    /// return; returns the guests whose calls are still inside libvirt.
    pub(super) fn close(&self, fence: bool, wait: Duration) -> BTreeSet<String> {
        let deadline = Instant::now() + wait;
        let mut g = lock(&self.in_flight);
        if fence {
            self.fenced.store(true, Ordering::SeqCst);
        }
        while !g.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            g = match self.cv.wait_timeout(g, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        g.keys().cloned().collect()
    }
}
