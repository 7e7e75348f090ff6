//! Guest crashes: local restart or, past the limit, a single-guest failover
//! (destroy confirmed by the blade's agent, then start on the partner).

use log::{debug, info};

use super::*;

#[derive(Debug, Clone)]
pub(super) struct PendingGuest {
    pub(super) blade: BladeIdx,
    pub(super) name: GuestName,
    pub(super) incident: u32,
    pub(super) deadline: u64,
}

impl Shelf {
    /// Guest failovers waiting for the blade's agent to confirm the guest
    /// destroyed, as (slot, guest, decision number): the partner has not been
    /// ordered to start them yet.
    pub fn pending_guest_failovers(&self) -> impl Iterator<Item = (Slot, &GuestName, u32)> + '_ {
        self.pending_guests
            .iter()
            .map(|g| (self.blades[g.blade].cfg.slot, &g.name, g.incident))
    }

    pub(super) fn guest_crashed(&mut self, now: u64, idx: BladeIdx, name: GuestName) {
        let t = self.cfg.timing;
        let slot = self.blades[idx].cfg.slot;
        if let Some(inc) = self.blades[idx].incident {
            self.counters.suppressed += 1;
            debug!(
                "slot {slot}: guest {name} crashed while decision #{} is open: no new decision",
                inc.id
            );
            return;
        }
        let evictions = self.guests.evictions();
        let n = self
            .guests
            .record(now, t.guest_restart_window_ms, slot, &name);
        if self.guests.evictions() != evictions {
            self.table_full(Table::Guests);
        }
        let failover = n > t.guest_restart_limit;
        if failover {
            self.guests.forget(slot, &name);
        }
        self.decide(
            now,
            idx,
            Class::Guest,
            Cause::GuestCrash {
                crashes_in_window: n,
            },
            Some((name, failover)),
        );
    }

    pub(super) fn guest_destroyed(
        &mut self,
        now: u64,
        idx: BladeIdx,
        name: GuestName,
        incident: u32,
    ) {
        let Some(i) = self
            .pending_guests
            .iter()
            .position(|g| g.blade == idx && g.name == name && g.incident == incident)
        else {
            self.counters.agent_ignored += 1;
            return;
        };
        let g = self.pending_guests.swap_remove(i);
        let b = self.blades[idx];
        self.counters.failovers += 1;
        self.open_report(now, idx, g.incident, Some(g.name.clone()));
        info!(
            "slot {}: guest {} destroyed; ordering partner slot {} to start it (decision #{})",
            b.cfg.slot, g.name, b.cfg.partner, g.incident
        );
        self.out.push(Output::Order {
            slot: b.cfg.partner,
            order: Order::RestartPartnerGuests {
                failed_slot: b.cfg.slot,
                incident: g.incident,
                fence: Confirmation::GuestDestroyed,
                subset: Some(g.name),
            },
        });
    }

    /// Orders the guest's own blade to restart it, or (past the restart
    /// limit) to destroy it before the partner starts it.
    pub(super) fn order_guest(
        &mut self,
        now: u64,
        idx: BladeIdx,
        id: u32,
        name: GuestName,
        failover: bool,
    ) {
        let slot = self.blades[idx].cfg.slot;
        if !failover {
            self.out.push(Output::Order {
                slot,
                order: Order::RestartGuest { name, incident: id },
            });
            return;
        }
        self.out.push(Output::Order {
            slot,
            order: Order::DestroyGuest {
                name: name.clone(),
                incident: id,
            },
        });
        let pending = PendingGuest {
            blade: idx,
            name,
            incident: id,
            deadline: now.saturating_add(self.cfg.timing.guest_fence_timeout_ms),
        };
        if let Err(p) = self.pending_guests.push(pending) {
            self.counters.guest_failovers_dropped += 1;
            self.table_full(Table::GuestFailovers);
            self.alert(Alert::GuestFenceUnconfirmed { slot, name: p.name });
        }
    }
}
