//! Duplicate Platform Event suppression.
//!
//! An IPMC retransmits a Platform Event until it sees our response, with the
//! same rqSeq and data. An event whose generator (address and LUN), rqSeq and
//! 7 data bytes equal those of one first seen less than the window ago counts
//! once. The window runs from the first sighting: a retransmission at or after
//! the window's end counts again. Policy when the table is full: the entry
//! seen first is replaced (counted as an eviction when it was still inside
//! its window).

use heapless::Vec;

use crate::capacity::DEDUPE_ENTRIES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    generator: u8,
    lun: u8,
    rq_seq: u8,
    data: [u8; 7],
    first_ms: u64,
}

/// The table of recently seen events.
#[derive(Debug)]
pub struct Dedupe {
    entries: Vec<Entry, DEDUPE_ENTRIES>,
    evictions: u64,
}

impl Dedupe {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
            evictions: 0,
        }
    }

    /// Entries replaced while still inside their window.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Returns true when the event is a duplicate; otherwise remembers it.
    pub fn seen(
        &mut self,
        now: u64,
        window_ms: u64,
        generator: u8,
        lun: u8,
        rq_seq: u8,
        data: [u8; 7],
    ) -> bool {
        let live = |e: &Entry| now.saturating_sub(e.first_ms) < window_ms;
        if self.entries.iter().any(|e| {
            live(e)
                && e.generator == generator
                && e.lun == lun
                && e.rq_seq == rq_seq
                && e.data == data
        }) {
            return true;
        }
        let new = Entry {
            generator,
            lun,
            rq_seq,
            data,
            first_ms: now,
        };
        if let Some(slot) = self.entries.iter_mut().find(|e| !live(e)) {
            *slot = new;
        } else if let Err(new) = self.entries.push(new) {
            // Full of live entries: replace the oldest.
            if let Some(oldest) = self.entries.iter_mut().min_by_key(|e| e.first_ms) {
                *oldest = new;
                self.evictions += 1;
            }
        }
        false
    }
}

impl Default for Dedupe {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const D: [u8; 7] = [4, 0xF0, 0, 0x6F, 0xA7, 0x74, 0];

    #[test]
    fn test_window_from_first_sighting() {
        let mut d = Dedupe::new();
        assert!(!d.seen(1000, 5000, 0x82, 0, 3, D));
        assert!(d.seen(1001, 5000, 0x82, 0, 3, D));
        assert!(d.seen(5999, 5000, 0x82, 0, 3, D));
        assert!(!d.seen(6000, 5000, 0x82, 0, 3, D), "window ended");
        assert!(d.seen(6500, 5000, 0x82, 0, 3, D));
    }

    #[test]
    fn test_key_fields() {
        let mut d = Dedupe::new();
        assert!(!d.seen(0, 5000, 0x82, 0, 3, D));
        assert!(!d.seen(0, 5000, 0x84, 0, 3, D), "other generator");
        assert!(!d.seen(0, 5000, 0x82, 1, 3, D), "other LUN");
        assert!(!d.seen(0, 5000, 0x82, 0, 4, D), "other rqSeq");
        let mut other = D;
        other[6] = 1;
        assert!(!d.seen(0, 5000, 0x82, 0, 3, other), "other data");
    }

    #[test]
    fn test_full_table_evicts_oldest() {
        let mut d = Dedupe::new();
        for i in 0..DEDUPE_ENTRIES as u64 {
            assert!(!d.seen(i, 5000, 0x82, 0, (i % 64) as u8, [i as u8; 7]));
        }
        assert!(!d.seen(100, 5000, 0x84, 0, 0, D));
        assert_eq!(d.evictions(), 1);
        // The first entry was evicted, so it now counts as new.
        assert!(!d.seen(101, 5000, 0x82, 0, 0, [0; 7]));
        // A recent one is still remembered.
        assert!(d.seen(102, 5000, 0x84, 0, 0, D));
    }
}
