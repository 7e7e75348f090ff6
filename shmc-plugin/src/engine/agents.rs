//! Agents and heartbeats: what a blade agent tells the shelf, registration,
//! heartbeat and hypervisor watch.

use log::{info, warn};

use super::*;

/// What a blade agent told us (the runtime maps protocol messages to these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentInput {
    /// The agent registered (start-up or re-registration).
    Hello {
        /// The agent's heartbeat interval (0: not announced).
        heartbeat_interval_ms: u32,
        /// The agent armed the blade's hardware watchdog with this timeout
        /// (`None`: not announced, no watchdog proof for this blade).
        watchdog_ms: Option<u32>,
        /// The agent live-migrates its guests to its partner (the partner's
        /// libvirt URI is configured).
        live_migration: bool,
    },
    /// Periodic heartbeat; whether the hypervisor (libvirtd) is healthy.
    Heartbeat {
        /// Hypervisor healthy.
        hypervisor_ok: bool,
        /// How long ago this agent last heard its partner's heartbeat
        /// (`None`: not reported, no corroboration for the partner).
        partner_heard_ago_ms: Option<u32>,
    },
    /// The agent is present ([`shelfha_proto`]'s `Present`, sent while its
    /// hardware watchdog is armed): nothing but "heard now". It counts for
    /// the silence evidence exactly as a heartbeat does (`agent_seen`), and
    /// only that: the agent pets its watchdog on the acknowledgement of it,
    /// so a `Present` the shelf manager acknowledged but did not count would
    /// let a blade keep running while the shelf manager takes its silence
    /// for a watchdog reset.
    Present,
    /// The hypervisor is down (grace period starts).
    HypervisorDown,
    /// The hypervisor is up again.
    HypervisorUp,
    /// All protected guests are destroyed (answer to [`Order::FenceSelf`];
    /// the runtime passes it on only when no guest remains).
    FenceSelfConfirmed {
        /// Decision quoted from the order.
        incident: u32,
    },
    /// One guest crashed.
    GuestCrashed {
        /// The guest.
        name: GuestName,
    },
    /// The guest is destroyed (answer to [`Order::DestroyGuest`]).
    GuestDestroyed {
        /// The guest.
        name: GuestName,
        /// Decision quoted from the order.
        incident: u32,
    },
    /// The partner reports one guest of `failed_slot` (started / refused / failed).
    GuestOutcome {
        /// Blade whose guest it is.
        failed_slot: Slot,
        /// The guest.
        name: GuestName,
        /// Started (true) or not.
        started: bool,
        /// Not started because the failed blade's agent, heard by the partner, still reports
        /// running protected guests (the agent's second line against a double start).
        partner_running: bool,
    },
    /// The partner reported every guest of `failed_slot` (failover or evacuation done).
    AllReported {
        /// Blade whose guests were handled.
        failed_slot: Slot,
        /// Decision quoted from the order.
        incident: u32,
    },
    /// An order to this blade's agent did not get through: the link gave up
    /// retrying it, could not send it, or the agent refused it. Fed by the
    /// runtime, not by the agent; raises [`Alert::OrderUndelivered`].
    OrderUndelivered {
        /// The order's kind.
        kind: OrderKind,
        /// The decision it served, when the link knows it.
        incident: Option<u32>,
        /// What happened to it.
        reason: Undelivered,
    },
    /// A guest of `owner_slot` is not protected by its partner (reported by
    /// the owner or by the partner that refused its definition); raises
    /// [`Alert::GuestUnprotected`] once per owner, guest and reason.
    GuestUnprotected {
        /// The blade the guest runs on.
        owner_slot: Slot,
        /// Why it is not protected.
        reason: UnprotectedReason,
        /// The guest's name as reported (cut, possibly not a valid name).
        name: ReportText,
        /// Detail, may be empty.
        text: ReportText,
    },
}

impl Shelf {
    /// An input from the agent of `slot`.
    pub fn on_agent(&mut self, now: u64, slot: Slot, input: AgentInput) {
        self.input += 1;
        let Some(idx) = self.index_of_slot(slot) else {
            self.counters.agent_unknown_slot += 1;
            warn!("agent input for unconfigured slot {slot} ignored");
            return;
        };
        if !matches!(input, AgentInput::OrderUndelivered { .. }) {
            // Fed by the agent itself: the blade's host runs.
            self.agent_heard(now, idx);
        }
        match input {
            AgentInput::Hello {
                heartbeat_interval_ms,
                watchdog_ms,
                live_migration,
            } => {
                let b = &mut self.blades[idx];
                if !b.registered {
                    // A new registration episode: its alerts may be raised again.
                    b.evidence.timing_alerted = false;
                    b.evidence.watchdog_alerted = false;
                }
                b.registered = true;
                b.last_heartbeat = now;
                b.hypervisor_down_since = None;
                b.evidence.heartbeat_interval_ms = heartbeat_interval_ms;
                b.evidence.live_migration = live_migration;
                info!("slot {slot}: agent registered");
                let watchdog_ms = self.fitting_watchdog(idx, watchdog_ms, heartbeat_interval_ms);
                self.blades[idx].evidence.watchdog_ms = watchdog_ms;
                self.check_heartbeat_timing(idx);
                self.unprotected.forget_owner(slot);
                self.maybe_close_hypervisor(idx);
            }
            AgentInput::Heartbeat {
                hypervisor_ok,
                partner_heard_ago_ms,
            } => {
                // What it heard of its partner counts even when this
                // heartbeat does not (evidence of the partner being alive).
                if let Some(ago) = partner_heard_ago_ms {
                    self.partner_report(now, idx, ago);
                }
                let b = &mut self.blades[idx];
                if !b.registered {
                    if b.incident.is_some() {
                        self.counters.agent_ignored += 1;
                        return;
                    }
                    b.registered = true;
                    b.evidence.timing_alerted = false;
                    b.evidence.watchdog_alerted = false;
                    info!("slot {slot}: agent registered by heartbeat");
                }
                b.last_heartbeat = now;
                if hypervisor_ok {
                    b.hypervisor_down_since = None;
                    self.maybe_close_hypervisor(idx);
                } else {
                    b.hypervisor_down_since.get_or_insert(now);
                    self.check_hypervisor(now, idx);
                }
            }
            // `agent_heard` above recorded it; nothing more to do.
            AgentInput::Present => {}
            AgentInput::HypervisorDown => {
                let b = &mut self.blades[idx];
                if !b.registered {
                    self.counters.agent_ignored += 1;
                    return;
                }
                b.hypervisor_down_since.get_or_insert(now);
                info!("slot {slot}: agent reports hypervisor down");
                self.check_hypervisor(now, idx);
            }
            AgentInput::HypervisorUp => {
                self.blades[idx].hypervisor_down_since = None;
                self.maybe_close_hypervisor(idx);
            }
            AgentInput::FenceSelfConfirmed { incident } => match self.blades[idx].incident {
                Some(inc) if inc.id == incident && inc.state.awaits_self_fence() => {
                    self.fence_confirmed(now, idx, Confirmation::SelfFenced)
                }
                _ => {
                    self.counters.agent_ignored += 1;
                    warn!("slot {slot}: FenceSelf confirmation without a self-fence in progress ignored");
                }
            },
            AgentInput::GuestCrashed { name } => self.guest_crashed(now, idx, name),
            AgentInput::GuestDestroyed { name, incident } => {
                self.guest_destroyed(now, idx, name, incident)
            }
            AgentInput::GuestOutcome {
                failed_slot,
                name,
                started,
                partner_running,
            } => {
                self.counters.guest_reports += 1;
                info!(
                    "slot {slot}: guest {name} of slot {failed_slot} {}",
                    match (started, partner_running) {
                        (true, _) => "started",
                        (false, true) => "not started: partner still reports running guests",
                        (false, false) => "not started",
                    }
                );
                self.guest_outcome(idx, failed_slot, &name, started, partner_running);
            }
            AgentInput::AllReported {
                failed_slot,
                incident,
            } => self.all_reported(now, idx, failed_slot, incident),
            AgentInput::OrderUndelivered {
                kind,
                incident,
                reason,
            } => {
                self.counters.orders_undelivered += 1;
                self.alert(Alert::OrderUndelivered {
                    slot,
                    incident,
                    kind,
                    reason,
                });
            }
            AgentInput::GuestUnprotected {
                owner_slot,
                reason,
                name,
                text,
            } => self.guest_unprotected(idx, owner_slot, reason, name, text),
        }
    }

    pub(super) fn check_hypervisor(&mut self, now: u64, idx: BladeIdx) {
        let b = self.blades[idx];
        if let Some(since) = b.hypervisor_down_since {
            let down_ms = now.saturating_sub(since);
            if b.incident.is_none()
                && b.registered
                && down_ms >= self.cfg.timing.hypervisor_grace_ms
            {
                self.decide(
                    now,
                    idx,
                    Class::Hypervisor,
                    Cause::HypervisorDown { down_ms },
                    None,
                );
            }
        }
    }

    pub(super) fn maybe_close_hypervisor(&mut self, idx: BladeIdx) {
        let b = &mut self.blades[idx];
        if let Some(inc) = b.incident {
            if inc.class == Class::Hypervisor
                && inc.state.is_confirmed()
                && b.registered
                && b.hypervisor_down_since.is_none()
            {
                info!(
                    "slot {}: decision #{} closed: agent reports its hypervisor up again",
                    b.cfg.slot, inc.id
                );
                b.incident = None;
                b.commanded = false;
                self.counters.incidents_closed += 1;
                self.requests.cancel(idx, Purpose::Fence);
                self.requests.cancel(idx, Purpose::ConfirmPoll);
            }
        }
    }
}
