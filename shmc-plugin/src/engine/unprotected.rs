//! Guests reported unprotected (their partner cannot start them after a
//! failure), each (owner slot, name, reason) alerted once.
//!
//! Policy when the table ([`MAX_UNPROTECTED`]) is full: the oldest entry is
//! forgotten and counted, so a later repeat of it is alerted again (never a
//! report left unheard). The entries of a blade are forgotten when its agent
//! registers again: a restarted agent reports afresh what is still
//! unprotected, and the operator hears it again.

use heapless::Deque;
use log::{debug, warn};
use shelfha_proto::UnprotectedReason;

use super::output::{Alert, ReportText, Table};
use super::{BladeIdx, Shelf};
use crate::capacity::MAX_UNPROTECTED;
use crate::wire::addr::Slot;

/// The table of unprotected guests already alerted.
#[derive(Debug)]
pub(super) struct Unprotected {
    entries: Deque<(Slot, ReportText, UnprotectedReason), MAX_UNPROTECTED>,
    evictions: u64,
}

impl Unprotected {
    pub(super) const fn new() -> Self {
        Self {
            entries: Deque::new(),
            evictions: 0,
        }
    }

    /// Records the report; true when it was not known (alert it).
    fn first(&mut self, owner: Slot, name: &ReportText, reason: UnprotectedReason) -> bool {
        if self
            .entries
            .iter()
            .any(|(o, n, r)| *o == owner && n == name && *r == reason)
        {
            return false;
        }
        if self.entries.is_full() {
            self.entries.pop_front();
            self.evictions += 1;
        }
        // Room was made above.
        let _ = self.entries.push_back((owner, name.clone(), reason));
        true
    }

    /// Forgets every entry of blade `owner`.
    pub(super) fn forget_owner(&mut self, owner: Slot) {
        for _ in 0..self.entries.len() {
            if let Some(e) = self.entries.pop_front() {
                if e.0 != owner {
                    let _ = self.entries.push_back(e);
                }
            }
        }
    }

    /// Entries forgotten for room.
    pub(super) fn evictions(&self) -> u64 {
        self.evictions
    }
}

impl Shelf {
    /// The agent of blade `reporter` reports a guest of `owner_slot` unprotected.
    pub(super) fn guest_unprotected(
        &mut self,
        reporter: BladeIdx,
        owner_slot: Slot,
        reason: UnprotectedReason,
        name: ReportText,
        text: ReportText,
    ) {
        self.counters.unprotected_reports += 1;
        let reporter_slot = self.blades[reporter].cfg.slot;
        // The owner itself, or its partner (which refused the definition).
        let Some(owner) = self
            .index_of_slot(owner_slot)
            .filter(|&o| o == reporter || self.blades[o].cfg.partner == reporter_slot)
        else {
            self.counters.agent_ignored += 1;
            warn!("slot {reporter_slot}: unprotected-guest report about slot {owner_slot}, neither itself nor its partner: ignored");
            return;
        };
        let evictions = self.unprotected.evictions();
        if !self
            .unprotected
            .first(self.blades[owner].slot(), &name, reason)
        {
            debug!("slot {owner_slot}: guest {name:?} still unprotected ({reason:?})");
            return;
        }
        if self.unprotected.evictions() != evictions {
            self.table_full(Table::Unprotected);
        }
        self.alert(Alert::GuestUnprotected {
            owner_slot,
            reporter: reporter_slot,
            reason,
            name,
            text,
        });
    }
}
