//! Decisions: a failure of a blade becomes a decision (its actions from the
//! table in `actions.rs`), then a link condition, a guest order or an open
//! incident; and the incident closes when the blade is back in M4.

use log::{debug, info, warn};

use super::actions::{actions, Facts};
use super::*;

impl Shelf {
    /// Takes a decision for blade `idx` (or suppresses it when the blade is in recovery).
    pub(super) fn decide(
        &mut self,
        now: u64,
        idx: BladeIdx,
        class: Class,
        cause: Cause,
        guest: Option<(GuestName, bool)>,
    ) -> EventOutcome {
        self.decide_at(now, now, idx, class, cause, guest)
    }

    /// [`Self::decide`] for a cause observed at `t_ms` (a held assertion).
    pub(super) fn decide_at(
        &mut self,
        now: u64,
        t_ms: u64,
        idx: BladeIdx,
        class: Class,
        cause: Cause,
        guest: Option<(GuestName, bool)>,
    ) -> EventOutcome {
        if class.opens_incident() {
            self.supersede_degraded(idx, class);
            self.forget_holds(idx);
        }
        let b = self.blades[idx];
        let link = match class {
            Class::IpmbLinkDegraded => Some(Link::Degraded),
            Class::IpmbLinkLost => Some(Link::Lost),
            _ => None,
        };
        if link.is_some() && link == Some(b.link) {
            self.counters.link_repeats += 1;
            return EventOutcome::Repeated(class);
        }
        if let Some(inc) = b.incident {
            self.counters.suppressed += 1;
            debug!(
                "slot {}: {class} ({cause}) while decision #{} is open: no new decision",
                b.cfg.slot, inc.id
            );
            return EventOutcome::Suppressed(class);
        }
        let id = self.next_incident;
        self.next_incident = self.next_incident.wrapping_add(1);
        let facts = Facts {
            registered: b.registered,
            guest_failover: matches!(guest, Some((_, true))),
            partner_available: self.partner_available(idx),
            live_migration: b.registered
                && b.evidence.live_migration
                && self.agent_heard_within(now, idx, self.cfg.timing.heartbeat_timeout_ms),
        };
        let mut list = Vec::new();
        for a in actions(class, &facts) {
            let _ = list.push(*a);
        }
        let decision = Decision {
            t_ms,
            incident: id,
            class,
            slot: b.cfg.slot,
            ipmb_address: b.cfg.ipmb_address,
            partner_slot: b.cfg.partner,
            actions: list,
            cause,
            guest: guest.as_ref().map(|(n, _)| n.clone()),
        };
        info!("{decision}");
        self.counters.decisions += 1;
        self.out.push(Output::Decision(decision));
        if let Some(l) = link {
            self.blades[idx].link = l;
            self.alert(Alert::IpmbLink {
                slot: b.cfg.slot,
                both: l == Link::Lost,
            });
        } else if let Some((name, failover)) = guest {
            self.order_guest(now, idx, id, name, failover);
        } else if !class.opens_incident() {
            let migrate = actions(class, &facts).contains(&Action::Evacuate);
            self.silence_alert(idx, id, class, migrate);
        } else {
            self.open_incident(now, idx, id, class, facts.partner_available);
        }
        EventOutcome::Decided(class)
    }

    /// A failure of a blade whose `blade_degraded` incident is open drops
    /// that incident: the new decision is taken instead.
    fn supersede_degraded(&mut self, idx: BladeIdx, class: Class) {
        if class == Class::BladeDegraded {
            return;
        }
        if let Some(inc) = self.blades[idx]
            .incident
            .filter(|i| i.class == Class::BladeDegraded)
        {
            info!(
                "slot {}: {class} supersedes blade_degraded decision #{}",
                self.blades[idx].cfg.slot, inc.id
            );
            self.blades[idx].incident = None;
            self.counters.incidents_closed += 1;
        }
    }

    /// One decision per incident: the blade's other warnings are the same story.
    fn forget_holds(&mut self, idx: BladeIdx) {
        let before = self.holds.len();
        self.holds.retain(|h| h.blade != idx);
        if self.holds.len() != before {
            debug!(
                "slot {}: {} non-critical hold(s) forgotten",
                self.blades[idx].cfg.slot,
                before - self.holds.len()
            );
        }
    }

    /// The partner of blade `idx` has no open incident and is in M4 (or not seen yet).
    fn partner_available(&self, idx: BladeIdx) -> bool {
        self.index_of_slot(self.blades[idx].partner())
            .is_some_and(|p| {
                let pb = &self.blades[p];
                pb.incident.is_none() && matches!(pb.m_state, None | Some(MState::M4))
            })
    }

    /// Opens the incident of decision `id` and queues its first fence request.
    fn open_incident(&mut self, now: u64, idx: BladeIdx, id: u32, class: Class, partner_ok: bool) {
        let b = self.blades[idx];
        let (slot, partner) = (b.cfg.slot, b.cfg.partner);
        if self
            .index_of_slot(b.partner())
            .is_some_and(|p| self.blades[p].incident.is_some())
        {
            self.alert(Alert::PartnerUnavailable { slot, partner });
        }
        if class == Class::BladeDegraded && !partner_ok {
            warn!("slot {slot}: degraded, but partner slot {partner} cannot take its guests now");
            self.alert(Alert::BladeDegraded {
                slot,
                incident: id,
                evacuated: false,
            });
            return;
        }
        // Every class below queues its first fence request (FenceSelf,
        // Evacuate, Migrate or the first IPMB step) in this input: only what
        // is observed from now on proves the fence. No poll of an earlier
        // incident may answer for this one.
        self.blades[idx].fence_began = Some(Began {
            ms: now,
            input: self.input,
        });
        self.requests.cancel(idx, Purpose::ConfirmPoll);
        let t = self.cfg.timing;
        let open = |state| {
            Some(OpenIncident {
                id,
                class,
                opened_ms: now,
                state,
            })
        };
        match class {
            Class::Hypervisor => {
                self.blades[idx].incident = open(IncidentState::SelfFencing {
                    deadline: now.saturating_add(t.self_fence_deadline_ms),
                });
                self.out.push(Output::Order {
                    slot,
                    order: Order::FenceSelf { incident: id },
                });
            }
            Class::BladeDegraded => {
                self.blades[idx].incident = open(IncidentState::Migrating {
                    deadline: now.saturating_add(t.evacuation_timeout_ms),
                });
                info!("slot {slot}: live-migrating its guests to slot {partner}; the blade is not fenced");
                self.out.push(Output::Order {
                    slot,
                    order: Order::Migrate {
                        to_slot: partner,
                        incident: id,
                    },
                });
            }
            Class::BladeExtraction => {
                self.blades[idx].incident = open(IncidentState::Evacuating {
                    deadline: now.saturating_add(t.evacuation_timeout_ms),
                });
                self.out.push(Output::Order {
                    slot,
                    order: Order::Evacuate {
                        to_slot: partner,
                        incident: id,
                    },
                });
            }
            _ => {
                // A registered agent destroys its guests in parallel with the IPMB
                // fence: whichever confirms first is the fence. This also fences a
                // blade whose IPMC went silent while its host still runs.
                if b.registered {
                    self.out.push(Output::Order {
                        slot,
                        order: Order::FenceSelf { incident: id },
                    });
                }
                self.blades[idx].incident = open(IncidentState::Fencing {
                    step: FenceStep::Deactivate,
                    deadline: now,
                    rounds: 0,
                    self_fence: b.registered,
                    evacuated: false,
                });
                // The agent of a fenced blade must register again.
                self.blades[idx].registered = false;
                self.blades[idx].hypervisor_down_since = None;
                self.start_ipmb_fence(now, idx, false);
            }
        }
    }

    /// An alert-only decision on silence (`ipmc_lost`, `agent_link_lost`);
    /// `migrate`: the blade's agent moves its guests to the partner by live
    /// migration, nothing stopped, the blade not fenced.
    fn silence_alert(&mut self, idx: BladeIdx, id: u32, class: Class, migrate: bool) {
        let (slot, partner) = (self.blades[idx].cfg.slot, self.blades[idx].partner());
        if class == Class::AgentLinkLost {
            self.alert(Alert::AgentLinkLost { slot });
            return;
        }
        if migrate {
            self.blades[idx].evidence.migration = Some(id);
            info!("slot {slot}: live-migrating its guests to slot {partner}; the blade stays in service");
            self.out.push(Output::Order {
                slot,
                order: Order::Migrate {
                    to_slot: partner,
                    incident: id,
                },
            });
        }
        self.alert(Alert::IpmcLost {
            slot,
            migrating: migrate,
        });
    }

    pub(super) fn close_on_m4(&mut self, idx: BladeIdx) {
        let b = &mut self.blades[idx];
        b.commanded = false;
        b.fence_began = None;
        // Back in M4: its agent registers (and announces its watchdog) again.
        b.evidence.watchdog_ms = None;
        let Some(inc) = b.incident.take() else { return };
        if inc.state.is_confirmed() || inc.class == Class::BladeExtraction {
            info!(
                "slot {}: decision #{} closed: blade back in M4",
                b.cfg.slot, inc.id
            );
        } else {
            warn!(
                "slot {}: decision #{} closed: blade back in M4 before its fence was confirmed; no failover was ordered",
                b.cfg.slot, inc.id
            );
        }
        self.counters.incidents_closed += 1;
        self.requests.cancel(idx, Purpose::Fence);
        self.requests.cancel(idx, Purpose::ConfirmPoll);
    }
}
