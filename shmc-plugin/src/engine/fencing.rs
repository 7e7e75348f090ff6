//! Fencing: IPMB fence steps, confirmation polls and fence proofs.

use log::{debug, info};

use super::*;

/// The moment an incident's fence began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Began {
    /// Time.
    pub(super) ms: u64,
    /// Number of the input that began it ([`Shelf::input`]); an event of the
    /// same input (the one that opened the incident) is not after it.
    pub(super) input: u64,
}

impl Shelf {
    /// Queues `req` to blade `idx`'s IPMC and tracks it for its response.
    pub(super) fn send_request(
        &mut self,
        now: u64,
        idx: BladeIdx,
        req: Request,
        purpose: Purpose,
        timeout_ms: u64,
        retries: u8,
    ) -> request::Sent {
        self.requests.send(
            now,
            &mut self.out,
            idx,
            self.blades[idx].addr(),
            req,
            purpose,
            timeout_ms,
            retries,
        )
    }

    /// Starts (or restarts) the IPMB fence with its first step.
    ///
    /// A blade last seen in M1/M0 is not taken as fenced: that state may be
    /// stale (missed events, a wrapped SEL, the event that opened the
    /// incident). Its hot-swap sensor is read at once instead, and only that
    /// reading (or a later event) confirms. `evacuated`: an extraction whose
    /// evacuation was reported.
    pub(super) fn start_ipmb_fence(&mut self, now: u64, idx: BladeIdx, evacuated: bool) {
        let cached_inactive = inactive_proof(self.blades[idx].m_state).is_some();
        let deadline = now.saturating_add(self.cfg.timing.fence_step_deadline_ms);
        if let Some(inc) = &mut self.blades[idx].incident {
            inc.state = IncidentState::Fencing {
                step: FenceStep::Deactivate,
                deadline,
                rounds: 0,
                self_fence: inc.state.self_fence(),
                evacuated,
            };
        }
        self.blades[idx].next_confirm_poll = now.saturating_add(self.cfg.timing.confirm_poll_ms);
        self.send_fence_step(now, idx, FenceStep::Deactivate);
        if cached_inactive {
            info!(
                "slot {}: last seen inactive; reading its hot-swap sensor now to confirm",
                self.blades[idx].cfg.slot
            );
            self.blades[idx].next_confirm_poll = now;
            self.confirm_poll(now, idx);
        }
    }

    pub(super) fn send_fence_step(&mut self, now: u64, idx: BladeIdx, step: FenceStep) {
        let b = &mut self.blades[idx];
        b.commanded = true;
        let (dest, slot) = (b.cfg.ipmb_address, b.cfg.slot);
        let t = self.cfg.timing;
        info!("slot {slot}: fence step {step:?} sent to IPMC 0x{dest:02x}");
        if let request::Sent::TableFull = self.send_request(
            now,
            idx,
            step.request(),
            Purpose::Fence,
            t.request_timeout_ms,
            t.request_retries,
        ) {
            self.table_full(Table::Requests);
        }
    }

    pub(super) fn next_fence_step(
        &mut self,
        now: u64,
        idx: BladeIdx,
        step: FenceStep,
        rounds: u32,
    ) {
        let (next, rounds) = match step {
            FenceStep::Deactivate => (FenceStep::ColdReset, rounds),
            FenceStep::ColdReset => (FenceStep::PowerOff, rounds),
            FenceStep::PowerOff => (FenceStep::Deactivate, rounds + 1),
        };
        let deadline = now.saturating_add(self.cfg.timing.fence_step_deadline_ms);
        let Some(inc) = &mut self.blades[idx].incident else {
            return;
        };
        inc.state = IncidentState::Fencing {
            step: next,
            deadline,
            rounds,
            self_fence: inc.state.self_fence(),
            evacuated: inc.state.evacuated(),
        };
        let id = inc.id;
        if next == FenceStep::Deactivate {
            let slot = self.blades[idx].cfg.slot;
            self.alert(Alert::FenceUnconfirmed {
                slot,
                incident: id,
                rounds,
            });
        }
        self.send_fence_step(now, idx, next);
    }

    pub(super) fn confirm_poll(&mut self, now: u64, idx: BladeIdx) {
        let b = self.blades[idx];
        if now < b.next_confirm_poll || self.requests.has(idx, Purpose::ConfirmPoll) {
            return;
        }
        self.blades[idx].next_confirm_poll = now.saturating_add(self.cfg.timing.confirm_poll_ms);
        let timeout = self.cfg.timing.request_timeout_ms;
        let _ = self.send_request(
            now,
            idx,
            Request::GetSensorReading {
                sensor_number: b.hot_swap_sensor,
            },
            Purpose::ConfirmPoll,
            timeout,
            0,
        );
    }

    /// The blade was observed in `m` (M1 or M0): confirms its fence if one is
    /// in progress and the observation is `fresh` (made after the fence began).
    pub(super) fn on_inactive(
        &mut self,
        now: u64,
        idx: BladeIdx,
        m: MState,
        fresh: bool,
        how: &str,
    ) {
        let Some(proof) = inactive_proof(Some(m)) else {
            return;
        };
        let Some(inc) = self.blades[idx].incident else {
            return;
        };
        if !inc.state.awaits_proof() {
            return;
        }
        let slot = self.blades[idx].cfg.slot;
        if !fresh {
            self.counters.stale_proofs += 1;
            info!(
                "slot {slot}: M{} seen by {how} is not a proof of the fence of decision #{} (not observed after the fence began); waiting for a fresh reading",
                m as u8, inc.id
            );
            if matches!(inc.state, IncidentState::Fencing { .. }) {
                // Read the sensor now rather than at the next interval.
                self.blades[idx].next_confirm_poll = now;
                self.confirm_poll(now, idx);
            }
            return;
        }
        debug!("slot {slot}: inactive state seen by {how}");
        self.fence_confirmed(now, idx, proof);
    }

    pub(super) fn fence_confirmed(&mut self, now: u64, idx: BladeIdx, proof: Confirmation) {
        let b = &mut self.blades[idx];
        let Some(inc) = &mut b.incident else { return };
        let evacuated = inc.state.evacuated();
        let Some(next) = inc.state.confirmed(proof) else {
            return;
        };
        inc.state = next;
        let inc = *inc;
        let slot = b.cfg.slot;
        self.counters.fences_confirmed += 1;
        self.requests.cancel(idx, Purpose::Fence);
        self.requests.cancel(idx, Purpose::ConfirmPoll);
        info!(
            "slot {slot}: fence of decision #{} confirmed ({proof:?})",
            inc.id
        );
        if inc.class == Class::BladeExtraction && evacuated {
            // Guests stopped by the evacuation (not live-migrated) start on the
            // partner now; the partner skips those already running there.
            info!("slot {slot}: evacuated and inactive; partner starts what did not migrate");
        }
        self.order_failover(now, idx);
    }
}

/// The fence proof an observed M-state gives, if any.
pub(super) fn inactive_proof(m: Option<MState>) -> Option<Confirmation> {
    match m {
        Some(MState::M1) => Some(Confirmation::HotSwapM1),
        Some(MState::M0) => Some(Confirmation::HotSwapM0),
        _ => None,
    }
}
