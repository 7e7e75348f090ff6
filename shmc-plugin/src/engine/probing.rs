//! Timers: the poll entry point, IPMC probes, heartbeat and probe loss.

use log::warn;

use super::*;

impl Shelf {
    /// Runs the timers.
    pub fn poll(&mut self, now: u64) {
        self.input += 1;
        self.poll_holds(now, false);
        let t = self.cfg.timing;
        for idx in self.blades.indices() {
            let b = &mut self.blades[idx];
            if self.cfg.probing && b.last_heard.is_none() {
                b.last_heard = Some(now);
            }
            match b.incident.map(|i| i.state) {
                Some(IncidentState::Fencing {
                    step,
                    deadline,
                    rounds,
                    ..
                }) => {
                    self.watchdog_proof(now, idx);
                    if !matches!(
                        self.blades[idx].incident.map(|i| i.state),
                        Some(IncidentState::Fencing { .. })
                    ) {
                        continue;
                    }
                    if now >= deadline {
                        self.next_fence_step(now, idx, step, rounds);
                    }
                    self.confirm_poll(now, idx);
                }
                Some(IncidentState::SelfFencing { deadline }) if now >= deadline => {
                    warn!(
                        "slot {}: no FenceSelf confirmation in {} ms; fencing over IPMB as well",
                        b.cfg.slot, t.self_fence_deadline_ms
                    );
                    self.start_ipmb_fence(now, idx, false);
                }
                Some(IncidentState::Migrating { deadline }) if now >= deadline => {
                    let (slot, id) = (b.cfg.slot, b.incident.map_or(0, |i| i.id));
                    warn!("slot {slot}: migration of decision #{id} not reported in time; the blade is not fenced");
                    self.end_degraded(idx, false);
                }
                Some(IncidentState::Evacuating { deadline }) if now >= deadline => {
                    let (slot, id) = (b.cfg.slot, b.incident.map_or(0, |i| i.id));
                    self.alert(Alert::EvacuationTimeout { slot, incident: id });
                    self.start_ipmb_fence(now, idx, false);
                }
                Some(_) => {}
                None => self.watch(now, idx),
            }
        }
        let expired = self
            .requests
            .poll::<8>(now, &mut self.out, t.request_timeout_ms);
        for p in expired {
            if p.purpose == Purpose::Fence {
                warn!(
                    "slot {}: fence request cmd 0x{:02x} unanswered after retries",
                    self.blades[p.blade].cfg.slot,
                    p.request.cmd()
                );
            }
        }
        let mut i = 0;
        while i < self.pending_guests.len() {
            if now >= self.pending_guests[i].deadline {
                let g = self.pending_guests.swap_remove(i);
                let slot = self.blades[g.blade].cfg.slot;
                self.alert(Alert::GuestFenceUnconfirmed { slot, name: g.name });
            } else {
                i += 1;
            }
        }
        self.poll_reports(now);
    }

    /// Timers of a blade without an open incident: probe loss, heartbeat
    /// loss (both under the rules of `silence.rs`), hypervisor grace, and
    /// the next probe.
    pub(super) fn watch(&mut self, now: u64, idx: BladeIdx) {
        let t = self.cfg.timing;
        let b = self.blades[idx];
        let silent = b.last_heard.map(|h| now.saturating_sub(h));
        if self.cfg.probing {
            if let Some(silent_ms) = silent.filter(|&s| s >= t.probe_timeout_ms) {
                self.ipmc_silent(now, idx, silent_ms);
                if self.blades[idx].incident.is_some() {
                    return;
                }
            }
        }
        let ipmc_alive = !self.cfg.probing || silent.is_some_and(|s| s < t.probe_timeout_ms);
        let in_m4 = matches!(b.m_state, None | Some(MState::M4));
        if b.registered && ipmc_alive && in_m4 {
            let silent_ms = now.saturating_sub(b.last_heartbeat);
            if silent_ms >= t.heartbeat_timeout_ms {
                self.agent_silent(now, idx, silent_ms);
                if self.blades[idx].incident.is_some() {
                    return;
                }
            }
        }
        self.check_hypervisor(now, idx);
        if self.blades[idx].incident.is_some() || !self.cfg.probing {
            return;
        }
        // Keep room for decisions and fence traffic: probes wait when the queue is nearly full.
        if now >= b.next_probe && !self.requests.has(idx, Purpose::Probe) && self.out.free() > 8 {
            let timeout = t.request_timeout_ms.min(t.probe_interval_ms);
            let _ = self.send_request(now, idx, Request::GetDeviceId, Purpose::Probe, timeout, 0);
            self.blades[idx].next_probe = now.saturating_add(t.probe_interval_ms);
        }
    }
}
