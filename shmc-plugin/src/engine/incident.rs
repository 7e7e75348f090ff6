//! Incidents: the decision for a failure and the state of an open incident.

use log::{debug, info, warn};

use super::*;

/// One IPMB fence step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceStep {
    /// PICMG Set FRU Activation, deactivate FRU 0.
    Deactivate,
    /// PICMG FRU Control, cold reset FRU 0.
    ColdReset,
    /// PICMG Set Power Level 0 for FRU 0.
    PowerOff,
}

/// Phase of an open incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Extraction: waiting for the partner to report the evacuation.
    Evacuating {
        /// When deactivation proceeds anyway.
        deadline: u64,
    },
    /// `hypervisor`: waiting for the agent's FenceSelf confirmation.
    SelfFencing {
        /// When the IPMB fence joins in.
        deadline: u64,
    },
    /// IPMB fence in progress.
    Fencing {
        /// Current step.
        step: FenceStep,
        /// When the next step starts.
        deadline: u64,
        /// Completed rounds of all steps.
        rounds: u32,
    },
    /// Fence confirmed; the partner was ordered to restart the guests.
    FailingOver,
    /// Recovery done; waiting for the blade to come back.
    Recovered,
}

/// An open incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incident {
    /// Decision number.
    pub id: u32,
    /// Class.
    pub class: Class,
    /// When it opened.
    pub opened_ms: u64,
    /// Phase.
    pub phase: Phase,
    /// The fence is confirmed.
    pub confirmed: bool,
    /// Extraction: the partner reported the evacuation.
    pub evacuated: bool,
    /// How the fence was confirmed, once it is.
    pub proof: Option<Confirmation>,
    /// The blade's agent was ordered to destroy its guests (FenceSelf); its
    /// confirmation then counts as the fence.
    pub self_fence: bool,
}

impl Shelf {
    /// Takes a decision for blade `idx` (or suppresses it when the blade is in recovery).
    pub(super) fn decide(
        &mut self,
        now: u64,
        idx: usize,
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
        idx: usize,
        class: Class,
        cause: Cause,
        guest: Option<(GuestName, bool)>,
    ) -> EventOutcome {
        if class.opens_incident() && class != Class::BladeDegraded {
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
        if class.opens_incident() {
            // One decision per incident: the blade's other warnings are the same story.
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
        let partner_ok = self.index_of_slot(b.cfg.partner).is_some_and(|p| {
            let pb = &self.blades[p];
            pb.incident.is_none() && matches!(pb.m_state, None | Some(MState::M4))
        });
        let mut actions = Vec::new();
        let list: &[Action] = match class {
            Class::BladeLost | Class::BladeHardware | Class::HostOs if b.registered => &[
                Action::FenceIpmb,
                Action::SelfFence,
                Action::FailoverToPartner,
            ],
            Class::BladeLost | Class::BladeHardware | Class::HostOs => {
                &[Action::FenceIpmb, Action::FailoverToPartner]
            }
            Class::BladeExtraction => &[Action::Evacuate, Action::Deactivate],
            Class::Hypervisor => &[Action::SelfFence, Action::FailoverToPartner],
            Class::Guest => match guest {
                Some((_, true)) => &[Action::FenceGuest, Action::FailoverGuest],
                _ => &[Action::RestartLocal],
            },
            Class::IpmbLinkDegraded | Class::IpmbLinkLost => &[Action::Alert],
            Class::BladeDegraded if partner_ok => &[Action::Evacuate, Action::Alert],
            Class::BladeDegraded => &[Action::Alert],
        };
        for a in list {
            let _ = actions.push(*a);
        }
        let decision = Decision {
            t_ms,
            incident: id,
            class,
            slot: b.cfg.slot,
            ipmb_address: b.cfg.ipmb_address,
            partner_slot: b.cfg.partner,
            actions,
            cause,
            guest: guest.as_ref().map(|(n, _)| n.clone()),
        };
        info!("{decision}");
        self.counters.decisions += 1;
        self.out.push(Output::Decision(decision));
        let slot = b.cfg.slot;
        if let Some(l) = link {
            self.blades[idx].link = l;
            self.alert(Alert::IpmbLink {
                slot,
                both: l == Link::Lost,
            });
            return EventOutcome::Decided(class);
        }
        if let Some((name, failover)) = guest {
            if failover {
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
            } else {
                self.out.push(Output::Order {
                    slot,
                    order: Order::RestartGuest { name, incident: id },
                });
            }
            return EventOutcome::Decided(class);
        }
        let partner = b.cfg.partner;
        if self
            .index_of_slot(partner)
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
            return EventOutcome::Decided(class);
        }
        let mut incident = Incident {
            id,
            class,
            opened_ms: now,
            phase: Phase::Recovered,
            confirmed: false,
            evacuated: false,
            proof: None,
            self_fence: false,
        };
        // Every class below queues its first fence request (FenceSelf,
        // Evacuate, Migrate or the first IPMB step) in this input: only what
        // is observed from now on proves the fence. No poll of an earlier
        // incident may answer for this one.
        self.blades[idx].fence_began = Some(Began {
            ms: now,
            input: self.input,
        });
        self.requests.cancel(idx, Purpose::ConfirmPoll);
        match class {
            Class::Hypervisor => {
                incident.phase = Phase::SelfFencing {
                    deadline: now.saturating_add(self.cfg.timing.self_fence_deadline_ms),
                };
                incident.self_fence = true;
                self.blades[idx].incident = Some(incident);
                self.out.push(Output::Order {
                    slot,
                    order: Order::FenceSelf { incident: id },
                });
            }
            Class::BladeDegraded => {
                incident.phase = Phase::Evacuating {
                    deadline: now.saturating_add(self.cfg.timing.evacuation_timeout_ms),
                };
                self.blades[idx].incident = Some(incident);
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
                incident.phase = Phase::Evacuating {
                    deadline: now.saturating_add(self.cfg.timing.evacuation_timeout_ms),
                };
                self.blades[idx].incident = Some(incident);
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
                    incident.self_fence = true;
                    self.out.push(Output::Order {
                        slot,
                        order: Order::FenceSelf { incident: id },
                    });
                }
                self.blades[idx].incident = Some(incident);
                // The agent of a fenced blade must register again.
                self.blades[idx].registered = false;
                self.blades[idx].hypervisor_down_since = None;
                self.start_ipmb_fence(now, idx);
            }
        }
        EventOutcome::Decided(class)
    }

    pub(super) fn set_phase(&mut self, idx: usize, phase: Phase) {
        if let Some(inc) = &mut self.blades[idx].incident {
            inc.phase = phase;
        }
    }

    pub(super) fn close_on_m4(&mut self, idx: usize) {
        let b = &mut self.blades[idx];
        b.commanded = false;
        b.fence_began = None;
        let Some(inc) = b.incident.take() else { return };
        if inc.confirmed || inc.class == Class::BladeExtraction {
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
