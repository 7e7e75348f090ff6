//! Failover reports: what the partner said about the guests of one failover
//! order, and the deadline of its final report (`failover_report_timeout_ms`).
//!
//! A report opens when a failover order is queued (a whole blade in
//! `order_failover`, one guest after its GuestDestroyed) and is keyed by the
//! failed blade and the decision. GuestOutcome inputs from the failed blade's
//! partner are booked to it (a one-guest report takes only its own guest);
//! AllReported quoting the decision settles it, and guests reported not
//! started raise [`Alert::GuestsNotRestarted`] naming them (and saying so when
//! the partner refused them because the failed blade's agent still reports
//! running guests: nothing retries them, nothing starts them elsewhere; the
//! operator decides). Without an
//! AllReported by the deadline the same alert (`reported: false`) names what
//! is known: the guests reported not started, and for a one-guest failover
//! its guest unless it was reported started. The report then stays, overdue,
//! so a late final report is still heard; it does not depend on the incident,
//! which may close first (the blade back in M4).
//!
//! Table policy ([`MAX_FAILOVER_REPORTS`]): when full, the oldest overdue
//! report is forgotten; with none overdue the new report is not tracked
//! (counted, one [`Table::FailoverReports`] alert). The order is sent either
//! way. A whole-blade failover of a blade whose previous one is still
//! reporting supersedes it (its overdue alert is raised at once).

use log::info;

use super::output::{Alert, GuestList, GuestName, Table};
use super::{BladeIdx, Shelf};
use crate::capacity::MAX_FAILOVER_REPORTS;
use crate::wire::addr::Slot;

/// One failover order awaiting its partner's report.
#[derive(Debug, Clone)]
pub(super) struct Report {
    /// Index of the failed blade.
    blade: BladeIdx,
    /// The decision the order quoted.
    incident: u32,
    /// The guest of a one-guest failover; `None` for a whole blade.
    guest: Option<GuestName>,
    /// When AllReported is due.
    due: u64,
    /// The deadline passed and was alerted.
    overdue: bool,
    /// Guests reported started.
    started: u16,
    /// Guests reported not started.
    not_started: GuestList,
    /// Some were refused because the failed blade's agent still reports running guests.
    partner_running: bool,
}

impl Report {
    /// What the alert names as not started: for a one-guest failover whose
    /// guest was never reported started, that guest as well.
    fn missing(&self) -> GuestList {
        let mut list = self.not_started.clone();
        if let (Some(g), 0) = (&self.guest, self.started) {
            list.add(g);
        }
        list
    }
}

impl Shelf {
    /// Tracks the report of a failover order of decision `incident` for the
    /// guests of blade `blade` (all, or `guest` only).
    pub(super) fn open_report(
        &mut self,
        now: u64,
        blade: BladeIdx,
        incident: u32,
        guest: Option<GuestName>,
    ) {
        if guest.is_none() {
            if let Some(i) = self
                .reports
                .iter()
                .position(|r| r.blade == blade && r.guest.is_none())
            {
                let old = self.reports.remove(i);
                if !old.overdue {
                    self.report_overdue(&old);
                }
            }
        }
        if self.reports.is_full() {
            if let Some(i) = self.reports.iter().position(|r| r.overdue) {
                self.reports.remove(i);
            }
        }
        let report = Report {
            blade,
            incident,
            guest,
            due: now.saturating_add(self.cfg.timing.failover_report_timeout_ms),
            overdue: false,
            started: 0,
            not_started: GuestList::new(),
            partner_running: false,
        };
        if self.reports.push(report).is_err() {
            self.counters.failover_reports_dropped += 1;
            self.table_full(Table::FailoverReports);
        }
    }

    /// A guest outcome from the agent of blade `reporter` about a guest of
    /// `failed_slot`: booked to the open failover report it belongs to
    /// (`partner_running`: refused because the failed blade's agent still
    /// reports running guests).
    pub(super) fn guest_outcome(
        &mut self,
        reporter: BladeIdx,
        failed_slot: Slot,
        name: &GuestName,
        started: bool,
        partner_running: bool,
    ) {
        let Some(f) = self.index_of_slot(failed_slot) else {
            return;
        };
        // Only the partner starts a failed blade's guests.
        if self.blades[f].cfg.partner != self.blades[reporter].cfg.slot {
            return;
        }
        let i = self
            .reports
            .iter()
            .position(|r| r.blade == f && r.guest.as_ref() == Some(name))
            .or_else(|| {
                self.reports
                    .iter()
                    .position(|r| r.blade == f && r.guest.is_none())
            });
        let Some(r) = i.map(|i| &mut self.reports[i]) else {
            return;
        };
        if started {
            r.started = r.started.saturating_add(1);
            r.not_started.remove(name);
        } else {
            r.not_started.add(name);
            r.partner_running |= partner_running;
        }
    }

    /// AllReported for decision `incident` about blade `blade` from its
    /// partner: settles that report. False when none was open.
    pub(super) fn settle_report(&mut self, blade: BladeIdx, incident: u32) -> bool {
        let Some(i) = self
            .reports
            .iter()
            .position(|r| r.blade == blade && r.incident == incident)
        else {
            return false;
        };
        let r = self.reports.remove(i);
        let slot = self.blades[blade].cfg.slot;
        if r.not_started.is_empty() {
            if r.overdue {
                info!(
                    "slot {slot}: late report of decision #{incident}: the partner started every guest it reported"
                );
            }
        } else {
            self.alert(Alert::GuestsNotRestarted {
                slot,
                incident,
                not_started: r.not_started,
                started: r.started,
                reported: true,
                partner_running: r.partner_running,
            });
        }
        true
    }

    /// Raises the overdue alert of every report past its deadline.
    pub(super) fn poll_reports(&mut self, now: u64) {
        for i in 0..self.reports.len() {
            if self.reports[i].overdue || now < self.reports[i].due {
                continue;
            }
            self.reports[i].overdue = true;
            let r = self.reports[i].clone();
            self.report_overdue(&r);
        }
    }

    fn report_overdue(&mut self, r: &Report) {
        self.counters.failover_reports_overdue += 1;
        let slot = self.blades[r.blade].cfg.slot;
        self.alert(Alert::GuestsNotRestarted {
            slot,
            incident: r.incident,
            not_started: r.missing(),
            started: r.started,
            reported: false,
            partner_running: r.partner_running,
        });
    }

    /// Failover orders whose partner report is awaited, as (slot of the
    /// failed blade, decision, guest of a one-guest failover, overdue).
    pub fn pending_reports(
        &self,
    ) -> impl Iterator<Item = (Slot, u32, Option<&GuestName>, bool)> + '_ {
        self.reports.iter().map(|r| {
            (
                self.blades[r.blade].cfg.slot,
                r.incident,
                r.guest.as_ref(),
                r.overdue,
            )
        })
    }
}

// The table holds one whole-blade report per blade and one per guest failover.
const _: () = assert!(MAX_FAILOVER_REPORTS >= crate::capacity::MAX_BLADES);
