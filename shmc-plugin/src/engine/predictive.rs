//! Predictive mode: non-critical threshold holds and `blade_degraded`
//! incidents (migrate, never fence).

use log::{debug, info};

use super::*;

/// A non-critical threshold assertion waiting for its hold time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hold {
    pub(super) blade: BladeIdx,
    pub(super) sensor_type: u8,
    pub(super) sensor_number: u8,
    pub(super) offset: u8,
    pub(super) since: u64,
    pub(super) cause: Cause,
}

impl Shelf {
    /// End of input (replay: the end of the capture): every hold still
    /// pending is due, as no deassertion can come any more.
    pub fn finish_holds(&mut self, now: u64) {
        self.poll_holds(now, true);
    }

    /// Holds pending (predictive mode).
    pub fn pending_holds(&self) -> usize {
        self.holds.len()
    }

    /// Decides `blade_degraded` for every hold past its time (all when `all`),
    /// oldest assertion first.
    pub(super) fn poll_holds(&mut self, now: u64, all: bool) {
        let hold_ms = self.cfg.predictive.degraded_hold_ms;
        loop {
            let due = self
                .holds
                .iter()
                .enumerate()
                .filter(|(_, h)| all || now >= h.since.saturating_add(hold_ms))
                .min_by_key(|(_, h)| h.since)
                .map(|(i, _)| i);
            let Some(i) = due else { return };
            let h = self.holds.remove(i);
            info!(
                "slot {}: non-critical sensor type 0x{:02x} #{} offset {} still asserted {} ms after {} ms",
                self.blades[h.blade].cfg.slot,
                h.sensor_type,
                h.sensor_number,
                h.offset,
                now.saturating_sub(h.since),
                h.since
            );
            self.decide_at(now, h.since, h.blade, Class::BladeDegraded, h.cause, None);
        }
    }

    pub(super) fn hold(&mut self, now: u64, idx: BladeIdx, ev: &PlatformEvent, cause: Cause) {
        let key = (ev.sensor_type.into(), ev.sensor_number, ev.offset());
        let slot = self.blades[idx].cfg.slot;
        if self
            .holds
            .iter()
            .any(|h| h.blade == idx && (h.sensor_type, h.sensor_number, h.offset) == key)
        {
            debug!("slot {slot}: non-critical assertion repeated; its hold keeps its first time");
            return;
        }
        let hold = Hold {
            blade: idx,
            sensor_type: key.0,
            sensor_number: key.1,
            offset: key.2,
            since: now,
            cause,
        };
        if self.holds.push(hold).is_err() {
            self.counters.degraded_holds_dropped += 1;
            self.table_full(Table::DegradedHolds);
            return;
        }
        self.counters.degraded_holds += 1;
        info!(
            "slot {slot}: non-critical threshold asserted ({cause}); blade_degraded unless deasserted within {} ms",
            self.cfg.predictive.degraded_hold_ms
        );
    }

    pub(super) fn cancel_hold(&mut self, now: u64, idx: BladeIdx, ev: &PlatformEvent) {
        let key = (ev.sensor_type.into(), ev.sensor_number, ev.offset());
        if let Some(i) = self
            .holds
            .iter()
            .position(|h| h.blade == idx && (h.sensor_type, h.sensor_number, h.offset) == key)
        {
            let h = self.holds.remove(i);
            self.counters.degraded_cancelled += 1;
            info!(
                "slot {}: non-critical threshold deasserted after {} ms, within the hold: no decision",
                self.blades[idx].cfg.slot,
                now.saturating_sub(h.since)
            );
        }
    }

    /// Ends a `blade_degraded` incident (no fence) and tells the operator.
    pub(super) fn end_degraded(&mut self, idx: BladeIdx, evacuated: bool) {
        let b = &mut self.blades[idx];
        let Some(inc) = b.incident.take() else { return };
        let slot = b.cfg.slot;
        self.counters.incidents_closed += 1;
        info!("slot {slot}: decision #{} closed without a fence", inc.id);
        self.alert(Alert::BladeDegraded {
            slot,
            incident: inc.id,
            evacuated,
        });
    }
}
