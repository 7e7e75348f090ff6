//! Failover: the partner's orders for a fenced blade and its reports.

use log::{info, warn};

use super::*;

impl Shelf {
    /// The only place a whole-blade failover is ordered.
    pub(super) fn order_failover(&mut self, now: u64, idx: BladeIdx) {
        let b = self.blades[idx];
        let Some(inc) = b.incident else { return };
        let IncidentState::FailingOver { proof: fence, .. } = inc.state else {
            self.counters.unsafe_failover_refused += 1;
            warn!("slot {}: failover refused: fence not confirmed", b.cfg.slot);
            return;
        };
        self.counters.failovers += 1;
        info!(
            "slot {}: ordering partner slot {} to restart its guests (decision #{})",
            b.cfg.slot, b.cfg.partner, inc.id
        );
        self.out.push(Output::Order {
            slot: b.cfg.partner,
            order: Order::RestartPartnerGuests {
                failed_slot: b.cfg.slot,
                incident: inc.id,
                fence,
                subset: None,
            },
        });
        self.open_report(now, idx, inc.id, None);
    }

    pub(super) fn all_reported(
        &mut self,
        now: u64,
        reporter: BladeIdx,
        failed_slot: Slot,
        incident: u32,
    ) {
        let Some(idx) = self.index_of_slot(failed_slot) else {
            self.counters.agent_ignored += 1;
            return;
        };
        if reporter == idx && self.blades[idx].evidence.migration == Some(incident) {
            self.blades[idx].evidence.migration = None;
            info!("slot {failed_slot}: migration of decision #{incident} reported; the blade stays in service");
            return;
        }
        // A failover is reported by the partner; an evacuation by the
        // evacuating blade itself (it migrates its guests) or its partner.
        let evacuating = matches!(
            self.blades[idx].incident.map(|i| i.state),
            Some(IncidentState::Migrating { .. } | IncidentState::Evacuating { .. })
        );
        let from_partner = self.blades[idx].cfg.partner == self.blades[reporter].cfg.slot;
        if !(from_partner || (evacuating && reporter == idx)) {
            self.counters.agent_ignored += 1;
            warn!(
                "slot {}: report about slot {failed_slot}, which is not its partner: ignored",
                self.blades[reporter].cfg.slot
            );
            return;
        }
        // The failover order's report (whole blade or one guest), even if the
        // incident closed meanwhile (the blade came back first).
        let settled = from_partner && self.settle_report(idx, incident);
        if self.blades[idx].incident.map(|i| i.id) != Some(incident) {
            if !settled {
                self.counters.agent_ignored += 1;
                warn!(
                    "slot {failed_slot}: report for decision #{incident}, which is not open: ignored"
                );
            }
            return;
        }
        let Some(inc) = &mut self.blades[idx].incident else {
            return;
        };
        match inc.state {
            IncidentState::FailingOver { .. } => {
                if let Some(next) = inc.state.reported() {
                    inc.state = next;
                }
                info!("slot {failed_slot}: partner reported the failover done; recovered");
            }
            IncidentState::Migrating { .. } => {
                info!("slot {failed_slot}: migration reported; the blade stays up");
                self.end_degraded(idx, true);
            }
            IncidentState::Evacuating { .. } => {
                info!("slot {failed_slot}: evacuation reported; allowing deactivation");
                self.start_ipmb_fence(now, idx, true);
            }
            _ => self.counters.agent_ignored += 1,
        }
    }
}
