//! RestartPartnerGuests and RestartGuest, carried out: the partner's guests started here from
//! their stored definitions (or their warm standbys resumed), a bounded number at once, each
//! start through the start gate and bounded by `start_timeout`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::deadline::{self, DeadlineError};
use super::guests::GuestTable;
use super::{lock, ms, Agent, AgentError};
use crate::decide::orders::{by_priority, plan_takeover, Step};
use crate::failure::Failure;
use crate::hypervisor::{GuestState, Hypervisor, HypervisorError};
use crate::order::{GuestOutcome, GuestResult, Order, OrderResult, Refusal};
use crate::store::definitions::GuestDef;
use crate::store::journal::TakenOver;

/// Starts (or resumes the warm standby of) one partner guest, each libvirt call through the
/// gate; run on its own thread, bounded by `start_timeout` by the caller.
fn start_partner_guest<H: Hypervisor + ?Sized>(
    hv: &H,
    gate: &GuestTable,
    def: &GuestDef,
    standby_listed: bool,
) -> GuestResult {
    let failed = |e: HypervisorError| GuestResult::Failed { reason: e.into() };
    match hv.state(&def.name) {
        Ok(GuestState::Paused) if standby_listed => {
            return match gate.call(&def.name, || hv.resume(&def.name)) {
                None => GuestResult::Fenced,
                Some(Ok(())) => GuestResult::Resumed,
                Some(Err(e)) => GuestResult::Failed {
                    reason: Failure::StandbyResume(Box::new(e.into())),
                },
            };
        }
        Ok(s) if s.is_active() => return GuestResult::AlreadyRunning,
        Ok(_) | Err(HypervisorError::NoSuchGuest(_)) => {}
        Err(e) => return failed(e),
    }
    match gate.call(&def.name, || hv.define(&def.xml)) {
        None => return GuestResult::Fenced,
        Some(Err(e)) => return failed(e),
        Some(Ok(_)) => {}
    }
    no_autostart(hv, &def.name);
    match gate.call(&def.name, || hv.start(&def.name)) {
        None => GuestResult::Fenced,
        Some(Ok(())) => GuestResult::Started,
        Some(Err(e)) => failed(e),
    }
}

/// Clears libvirt autostart of a guest defined here on takeover (a redefinition keeps the
/// flag): if this blade is fenced and reboots, the guest must not start by itself. A failure
/// is logged; the start goes on.
pub(super) fn no_autostart<H: Hypervisor + ?Sized>(hv: &H, name: &str) {
    if let Err(e) = hv.set_autostart(name, false) {
        log::warn!("`{name}`: cannot clear libvirt autostart: {e}");
    }
}

impl<H: Hypervisor + 'static> Agent<H> {
    /// Runs one guest's start `job` on its own thread and waits for it up to
    /// `start_timeout`: past it the guest is reported [`GuestResult::TimedOut`] and the call is
    /// left inside libvirt (still in flight for the fence). A start that completes later is
    /// logged; the caller records nothing more.
    fn start_bounded(
        &self,
        name: &str,
        job: impl FnOnce(&H, &GuestTable) -> GuestResult + Send + 'static,
    ) -> GuestResult {
        let timeout = self.cfg.start_timeout;
        let (hv, gate) = (Arc::clone(&self.hv), Arc::clone(&self.guests));
        let n = name.to_owned();
        let spawned = deadline::spawn(format!("start of `{name}`"), "guest-start", move |reply| {
            let r = job(&*hv, &gate);
            gate.protected(|p| p.start_ended(&n));
            if let Err(r) = reply.send(r) {
                if matches!(r, GuestResult::Started | GuestResult::Resumed) {
                    log::error!(
                        "`{n}`: libvirt's start returned after the {} ms deadline: the guest \
                         runs here although it was reported failed (not recorded as taken over)",
                        timeout.as_millis()
                    );
                } else {
                    log::warn!(
                        "`{n}`: libvirt's start returned after the {} ms deadline: {r:?}",
                        timeout.as_millis()
                    );
                }
            }
        });
        let pending = match spawned {
            Ok(p) => p,
            Err(DeadlineError::NoThread { what, source }) => {
                self.guests.protected(|p| p.start_ended(name));
                return GuestResult::Failed {
                    reason: Failure::NoThread {
                        what,
                        detail: source.to_string(),
                    },
                };
            }
            Err(DeadlineError::Exceeded(e)) => return GuestResult::TimedOut { reason: e },
        };
        pending.wait(timeout).unwrap_or_else(|e| {
            log::error!(
                "`{name}`: libvirt did not complete the start within {} ms: reported failed; \
                 the call is left to itself and the next guests start",
                timeout.as_millis()
            );
            GuestResult::TimedOut { reason: e }
        })
    }

    // ----- RestartPartnerGuests -----

    pub(super) fn restart_partner_guests(
        &self,
        order: &Order,
        incident: u32,
        failed_slot: u8,
        subset: Option<&[String]>,
        started: Instant,
        emit: &(dyn Fn(&GuestOutcome) + Sync),
    ) -> Result<OrderResult, AgentError> {
        // The second line against a double start, for a whole blade: its agent must not still
        // report running guests. A one-guest failover (subset) is not gated: its blade is
        // alive and runs its other guests, so a count cannot speak for one guest; the proof is
        // its own agent's reading of that guest destroyed.
        let gated = subset.is_none();
        let mark = self.partner_mark(order);
        if gated {
            if let Some(running) = self.partner_gate(&order.key(), mark) {
                return Ok(OrderResult::Refused(Refusal::PartnerRunning {
                    slot: failed_slot,
                    running,
                }));
            }
        }
        let recorded: BTreeMap<String, GuestOutcome> = lock(&self.journal)
            .record(order)
            .map(|r| {
                r.outcomes
                    .iter()
                    .map(|o| (o.name.clone(), o.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut defs: Vec<GuestDef> = {
            let store = lock(&self.partner);
            store
                .all()
                .filter(|d| subset.is_none_or(|s| s.iter().any(|n| n == &d.name)))
                .cloned()
                .collect()
        };
        // Highest priority first (the restarting agent's configuration), then by name.
        by_priority(&mut defs, |d| &d.name, |n| self.cfg.priority_of(n));
        let mut outcomes = Vec::new();
        for name in subset.unwrap_or(&[]) {
            if !defs.iter().any(|d| &d.name == name) {
                let o = GuestOutcome {
                    incident,
                    name: name.clone(),
                    result: GuestResult::Unknown,
                    elapsed_ms: ms(started),
                };
                outcomes.push(self.record(order, o, emit)?);
            }
        }
        let local: BTreeMap<String, GuestState> = self
            .list_bounded("list", self.cfg.start_timeout)?
            .into_iter()
            .map(|g| (g.name, g.state))
            .collect();
        // Unknown free memory (some hosts and libvirt drivers cannot tell) must not block a
        // takeover: the guests are then started without the check, and libvirt refuses what
        // does not fit.
        let budget = match self.bounded("free memory", self.cfg.start_timeout, |hv| {
            hv.free_memory_kib()
        }) {
            Ok(free) => free.saturating_sub(self.cfg.memory_reserve_kib),
            Err(e) => {
                log::warn!(
                    "{}: free memory unknown ({e}): starting without a memory check",
                    order.key()
                );
                u64::MAX
            }
        };
        let steps = plan_takeover(
            defs,
            &recorded,
            &local,
            |n| self.warm_standby_listed(n),
            budget,
        );
        let mut plan = Vec::new();
        for (def, step) in steps {
            match step {
                Step::Repeat(prev) => {
                    emit(&prev);
                    outcomes.push(prev);
                }
                Step::Report(r) => {
                    log::info!("{}: partner guest `{}`: {r:?}", order.key(), def.name);
                    let o = GuestOutcome {
                        incident,
                        name: def.name.clone(),
                        result: r,
                        elapsed_ms: ms(started),
                    };
                    outcomes.push(self.record(order, o, emit)?);
                }
                Step::Start => plan.push(def),
            }
        }
        log::info!(
            "{}: starting {} partner guests of slot {failed_slot}, {} at once",
            order.key(),
            plan.len(),
            self.cfg.start_workers
        );
        // Stored before libvirt is asked: a restarted agent fences what these starts create.
        self.guests
            .protected(|p| p.starting(plan.iter().map(|d| d.name.as_str())));
        let queue = Mutex::new(plan.into_iter().collect::<VecDeque<GuestDef>>());
        let results = Mutex::new(Vec::new());
        let workers = self.cfg.start_workers.max(1);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let Some(def) = lock(&queue).pop_front() else {
                        break;
                    };
                    // A fence cancels the queued starts (the gate refuses the ones that race it),
                    // and so does a partner heard after the order with guests running.
                    let partner_running = if gated {
                        self.partner_refuses_start(mark)
                    } else {
                        None
                    };
                    let result = if self.is_fenced() {
                        self.guests.protected(|p| p.start_ended(&def.name));
                        GuestResult::Fenced
                    } else if let Some(running) = partner_running {
                        self.guests.protected(|p| p.start_ended(&def.name));
                        log::error!(
                            "{}: partner guest `{}` NOT started: the partner still reports {running} \
                             running guest(s) in a heartbeat received after the order",
                            order.key(),
                            def.name
                        );
                        GuestResult::PartnerRunning { running }
                    } else {
                        self.define_and_start(&def)
                    };
                    if matches!(result, GuestResult::Started | GuestResult::Resumed) {
                        let taken = TakenOver {
                            uuid: def.uuid().unwrap_or_default(),
                            incident,
                            from_slot: failed_slot,
                        };
                        if let Err(e) = lock(&self.journal).record_takeover(&def.name, taken) {
                            log::error!("journal: {e}");
                        }
                    }
                    let o = GuestOutcome {
                        incident,
                        name: def.name.clone(),
                        result,
                        elapsed_ms: ms(started),
                    };
                    log::info!(
                        "{}: partner guest `{}`: {:?} after {} ms",
                        order.key(),
                        o.name,
                        o.result,
                        o.elapsed_ms
                    );
                    lock(&results).push(self.record(order, o, emit));
                });
            }
        });
        for r in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
            outcomes.push(r?);
        }
        Ok(OrderResult::Guests(outcomes))
    }

    /// Defines and starts one partner guest, unless it already runs here; resumes its warm
    /// standby instead when it has one (virtlockd refuses the resume while the original
    /// still holds the disk lease). Bounded by `start_timeout`; nothing is asked of libvirt
    /// once the blade is fenced.
    fn define_and_start(&self, def: &GuestDef) -> GuestResult {
        // The stored copy passed the policy when it was pushed; the configuration may be newer.
        if let Err(r) = crate::policy::check_definition(&self.cfg, &def.name, &def.xml) {
            log::error!(
                "partner guest `{}` not started: definition refused: {r}",
                def.name
            );
            return GuestResult::Failed {
                reason: Failure::DefinitionRefused {
                    detail: r.to_string(),
                },
            };
        }
        self.guests.not_stopping(&def.name);
        let standby = self.warm_standby_listed(&def.name);
        let d = def.clone();
        self.start_bounded(&def.name, move |hv, gate| {
            start_partner_guest(hv, gate, &d, standby)
        })
    }

    pub(super) fn restart_guest(
        &self,
        order: &Order,
        incident: u32,
        name: &str,
        started: Instant,
        emit: &(dyn Fn(&GuestOutcome) + Sync),
    ) -> Result<OrderResult, AgentError> {
        let all = self.list_bounded("list", self.cfg.start_timeout)?;
        let Some(g) = self.protected_of(&all).into_iter().find(|g| g.name == name) else {
            log::warn!("{}: `{name}` is not a protected guest here", order.key());
            return Ok(OrderResult::Refused(Refusal::NotProtected(name.to_owned())));
        };
        self.guests.not_stopping(name);
        let result = if g.state.is_active() && g.state != GuestState::Crashed {
            GuestResult::AlreadyRunning
        } else {
            // A crashed domain must be destroyed before it can start again.
            let crashed = g.state == GuestState::Crashed;
            let n = name.to_owned();
            self.start_bounded(name, move |hv, gate| {
                let r = gate.call(&n, || {
                    if crashed {
                        hv.destroy(&n)?;
                    }
                    hv.start(&n)
                });
                match r {
                    None => GuestResult::Fenced,
                    Some(Ok(())) => GuestResult::Started,
                    Some(Err(e)) => GuestResult::Failed { reason: e.into() },
                }
            })
        };
        self.single_outcome(order, incident, name, result, started, emit)
    }
}
