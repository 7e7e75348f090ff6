//! IPMB inputs: Platform Events (bus or SEL), responses to our requests and
//! requests of the shelf manager seen on the bus.

use log::{debug, info, warn};

use super::*;

impl Shelf {
    /// A Platform Event from `ev.generator`, carried by a request with `rq_seq`.
    /// The runtime answers the request itself (completion code 0x00).
    pub fn on_platform_event(&mut self, now: u64, rq_seq: u8, ev: &PlatformEvent) -> EventOutcome {
        let mut data = [0u8; 7];
        ev.emit(&mut data);
        let evictions = self.dedupe.evictions();
        let dup = self.dedupe.seen(
            now,
            self.cfg.timing.duplicate_window_ms,
            ev.generator.get(),
            ev.generator_lun,
            rq_seq,
            data,
        );
        if self.dedupe.evictions() != evictions {
            self.table_full(Table::Dedupe);
        }
        if dup {
            self.counters.duplicates += 1;
            debug!("duplicate event from {} rqSeq {rq_seq}", ev.generator);
            return EventOutcome::Duplicate;
        }
        self.on_logged_event(now, ev)
    }

    /// An event read from a System Event Log (RMCP+ or system interface
    /// source). Each SEL record is one event (the log keeps no retransmits), so
    /// there is no duplicate suppression: the source reads each record once.
    pub fn on_logged_event(&mut self, now: u64, ev: &PlatformEvent) -> EventOutcome {
        self.input += 1;
        self.counters.events += 1;
        let Some(idx) = self.index_of_address(ev.generator) else {
            self.counters.unknown_generator += 1;
            if self.once.unknown_generator(ev.generator) {
                self.alert(Alert::UnknownGenerator {
                    address: ev.generator,
                });
            }
            return EventOutcome::UnknownGenerator;
        };
        self.ipmc_heard(now, idx);
        let blade = &mut self.blades[idx];
        let hs = ev.hot_swap().filter(|h| h.fru_id == 0 && ev.assertion);
        if hs.is_some() && blade.cfg.hot_swap_sensor.is_none() {
            blade.hot_swap_sensor = ev.sensor_number;
        }
        let view = BladeView {
            m_state: blade.m_state,
            commanded: blade.commanded,
        };
        let verdict = classify(ev, &view);
        let cause = Cause::Event {
            sensor_type: ev.sensor_type.into(),
            sensor_number: ev.sensor_number,
            event_type: ev.event_type,
            offset: ev.offset(),
            m_state: hs.map(|h| h.current),
            previous_m_state: hs.and_then(|h| h.previous.or(view.m_state)),
        };
        if let Some(h) = hs {
            blade.m_state = Some(h.current);
        }
        let warning = if self.cfg.predictive.enabled && matches!(verdict, Verdict::Record(_)) {
            predictive(ev)
        } else {
            None
        };
        let outcome = match (verdict, warning) {
            (Verdict::Record(_), Some(Warning::Now)) => {
                self.decide(now, idx, Class::BladeDegraded, cause, None)
            }
            (Verdict::Decide(class), _) => self.decide(now, idx, class, cause, None),
            (Verdict::Record(r), _) => {
                match warning {
                    Some(Warning::Hold) => self.hold(now, idx, ev, cause),
                    Some(Warning::Cancel) => self.cancel_hold(now, idx, ev),
                    _ => {}
                }
                self.counters.recorded += 1;
                if r == Record::LinkRestored && self.blades[idx].incident.is_none() {
                    self.blades[idx].link = Link::Ok;
                }
                debug!(
                    "slot {}: recorded ({}): {cause}",
                    self.blades[idx].cfg.slot,
                    r.as_str()
                );
                EventOutcome::Recorded(r)
            }
        };
        if let Some(h) = hs {
            match h.current {
                MState::M1 | MState::M0 => {
                    // Received now: after the fence began unless this very
                    // event opened the incident (its fence began in this input).
                    let input = self.input;
                    let fresh = self.blades[idx]
                        .fence_began
                        .is_some_and(|b| b.input < input && b.ms <= now);
                    self.on_inactive(now, idx, h.current, fresh, "hot-swap event");
                }
                MState::M4 => self.close_on_m4(idx),
                _ => {}
            }
        }
        outcome
    }

    /// A response to one of our requests from 8-bit address `from`, with
    /// its rqSeq.
    pub fn on_response(&mut self, now: u64, from: IpmbAddr, rq_seq: u8, rsp: &Response) {
        self.input += 1;
        self.counters.responses += 1;
        match self.index_of_address(from) {
            Some(idx) => self.ipmc_heard(now, idx),
            None => self.counters.responses_unknown += 1,
        }
        let Some(p) = self.requests.on_response(from, rq_seq, rsp.net_fn, rsp.cmd) else {
            debug!(
                "unmatched response from {from} netFn 0x{:02x} cmd 0x{:02x} rqSeq {rq_seq}",
                rsp.net_fn, rsp.cmd
            );
            return;
        };
        match p.purpose {
            Purpose::Probe => {}
            Purpose::ConfirmPoll => {
                if let Some(m) = rsp.hot_swap_state() {
                    self.blades[p.blade].m_state = Some(m);
                    if matches!(m, MState::M1 | MState::M0) {
                        // The reading was taken after the request was sent.
                        let fresh = self.blades[p.blade]
                            .fence_began
                            .is_some_and(|b| p.sent_ms >= b.ms);
                        self.on_inactive(now, p.blade, m, fresh, "Get Sensor Reading");
                    }
                }
            }
            Purpose::Fence => {
                if let Body::Failed(e) = rsp.body {
                    self.counters.fence_rejected += 1;
                    warn!(
                        "slot {}: fence request cmd 0x{:02x} refused: {e:?}",
                        self.blades[p.blade].cfg.slot, rsp.cmd
                    );
                }
            }
        }
    }

    /// A request sent to `dest` by the shelf manager outside this core (seen
    /// in a capture, or an operator command on the same bus): a deactivation
    /// of a configured blade's FRU 0 (Set FRU Activation deactivate, Set
    /// Power Level 0) makes its coming M4 -> M6/M1/M0 commanded, until it is
    /// back in M4.
    pub fn on_manager_request(&mut self, dest: IpmbAddr, req: &Request) {
        let Some(idx) = self.index_of_address(dest) else {
            return;
        };
        if req.deactivates_fru0() {
            info!(
                "slot {}: deactivation sent by the shelf manager; its next deactivation is commanded",
                self.blades[idx].cfg.slot
            );
            self.blades[idx].commanded = true;
        }
    }
}
