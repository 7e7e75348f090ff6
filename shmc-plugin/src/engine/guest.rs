//! Per-guest crash windows (class `guest`): a crashed guest is restarted in
//! place at most `guest_restart_limit` times within `guest_restart_window_ms`;
//! the next crash inside the window fails it over instead.
//!
//! Each guest keeps the times of its last [`CRASHES_PER_GUEST`] crashes.
//! Policy when the table is full: the guest whose last crash is oldest is
//! forgotten (counted).

use heapless::{Deque, Vec};

use super::output::GuestName;
use crate::capacity::{CRASHES_PER_GUEST, MAX_TRACKED_GUESTS};
use crate::wire::addr::Slot;

#[derive(Debug)]
struct Entry {
    slot: Slot,
    name: GuestName,
    crashes: Deque<u64, CRASHES_PER_GUEST>,
}

/// Crash history of guests.
#[derive(Debug)]
pub struct GuestWindows {
    entries: Vec<Entry, MAX_TRACKED_GUESTS>,
    evictions: u64,
}

impl GuestWindows {
    /// No guest known.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
            evictions: 0,
        }
    }

    /// Guests forgotten because the table was full.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Records a crash of `name` on `slot`; returns the crashes within the
    /// window, this one included (at most [`CRASHES_PER_GUEST`]).
    pub fn record(&mut self, now: u64, window_ms: u64, slot: Slot, name: &GuestName) -> u8 {
        let idx = match self
            .entries
            .iter()
            .position(|e| e.slot == slot && e.name == *name)
        {
            Some(i) => i,
            None => {
                let entry = Entry {
                    slot,
                    name: name.clone(),
                    crashes: Deque::new(),
                };
                match self.entries.push(entry) {
                    Ok(()) => self.entries.len() - 1,
                    Err(entry) => {
                        let oldest = self
                            .entries
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, e)| e.crashes.back().copied().unwrap_or(0))
                            .map(|(i, _)| i)
                            .unwrap_or(0);
                        self.entries[oldest] = entry;
                        self.evictions += 1;
                        oldest
                    }
                }
            }
        };
        let crashes = &mut self.entries[idx].crashes;
        while crashes
            .front()
            .is_some_and(|&t| now.saturating_sub(t) >= window_ms)
        {
            crashes.pop_front();
        }
        if crashes.is_full() {
            crashes.pop_front();
        }
        let _ = crashes.push_back(now);
        crashes.len() as u8
    }

    /// Forgets the history of `name` on `slot` (after it failed over).
    pub fn forget(&mut self, slot: Slot, name: &GuestName) {
        self.entries
            .retain(|e| !(e.slot == slot && e.name == *name));
    }
}

impl Default for GuestWindows {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn name(s: &str) -> GuestName {
        GuestName::try_from(s).unwrap()
    }

    #[test]
    fn test_window() {
        let mut g = GuestWindows::new();
        let w = 600_000;
        assert_eq!(g.record(0, w, Slot(1), &name("a")), 1);
        assert_eq!(g.record(1000, w, Slot(1), &name("a")), 2);
        assert_eq!(
            g.record(1000, w, Slot(2), &name("a")),
            1,
            "same name on another blade"
        );
        assert_eq!(g.record(2000, w, Slot(1), &name("b")), 1);
        assert_eq!(g.record(599_999, w, Slot(1), &name("a")), 3);
        // The crash at 0 left the window.
        assert_eq!(g.record(600_000, w, Slot(1), &name("a")), 3);
        assert_eq!(g.record(600_001, w, Slot(1), &name("a")), 4);
        assert_eq!(
            g.record(600_002, w, Slot(1), &name("a")),
            4,
            "saturates at capacity"
        );
        g.forget(Slot(1), &name("a"));
        assert_eq!(g.record(600_003, w, Slot(1), &name("a")), 1);
    }
}
