//! The agent link over UDP: the protocol crate's [`Endpoint`] (authenticated,
//! acknowledged, retried) mapped to the core's [`Order`] and [`AgentInput`].
//!
//! Node ids are slots: the ShMC is node 0, the blade in slot N is node N.
//! Mapping choices:
//! - Heartbeat health `Ok` and `Degraded` mean the hypervisor answers;
//!   `Down` starts the core's hypervisor grace period; unknown codes are
//!   treated as healthy (an unknown code never causes an action).
//! - FenceSelfConfirmed counts only with `remaining == 0`; an incomplete
//!   self-fence is logged and the core's deadline brings in the IPMB fence.
//! - IncidentDone is the core's AllReported; GuestOutcome is logged.
//! - Present is the core's Present: the agent is heard (its silence clock
//!   restarts) and nothing else; the endpoint acknowledges it as it passes
//!   it on, and the agent pets its hardware watchdog on that ack.
//! - An order that cannot be queued (no address yet, queue full) is logged
//!   as an error and counted: the core does not resend orders.
//! - Incidents on the wire are the core's decision numbers plus a base taken
//!   from the link's first sequence number at start (the sequence counts
//!   microseconds since 1970 and survives a clock stepping back when
//!   `sequence_file` is configured; the base is its milliseconds modulo 2^32,
//!   see [`incident_base`]),
//!   and the base is taken off what agents send back. Agents key their journal
//!   by incident: without the base, a restarted plugin's decision #1 would be
//!   a "duplicate" of the previous run's #1, answered from the journal without
//!   being carried out (no self-fence, no restart). A reply to an order of an
//!   earlier run maps to no current incident and is ignored by the core.

use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use log::{error, info, warn};
use shelfha_proto::{
    load_key, Capabilities, Endpoint, EndpointConfig, Event, FenceProof, Health, Message, NodeId,
    Outcome, ReasonCode, SeqSeed,
};

use super::AgentLink;
use crate::engine::{AgentInput, Confirmation, Order, OrderKind, Undelivered};
use crate::wire::addr::Slot;

/// Why the agent link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The shelf key could not be loaded.
    #[error(transparent)]
    Key(#[from] shelfha_proto::KeyFileError),
    /// The directory of `sequence_file` could not be created.
    #[error("sequence_file directory {}", .0.display())]
    SequenceDir(std::path::PathBuf, #[source] std::io::Error),
    /// The listening socket could not be bound.
    #[error("cannot bind {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// A slot the protocol cannot name.
    #[error("slot {0} has no node id")]
    NoNodeId(Slot),
    /// More agents than the endpoint holds.
    #[error("too many peers at slot {0}")]
    TooManyPeers(Slot),
}

/// Orders and agent inputs over the shelf's UDP protocol.
pub struct UdpAgents {
    endpoint: Endpoint,
    /// Added to the core's decision numbers on the wire.
    incident_base: u32,
    /// Orders that could not be queued or were given up after all retries.
    pub undelivered: u64,
    /// Orders sent and not acknowledged yet: (handle, slot, kind, core decision).
    in_flight: Vec<(u64, Slot, OrderKind, u32)>,
    /// Undelivered orders to hand to the core at the next `receive`.
    failed: Vec<(Slot, AgentInput)>,
}

impl std::fmt::Debug for UdpAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpAgents")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl UdpAgents {
    /// Binds `listen` with the shelf key from `key_file`; `agents` gives each
    /// slot's agent address (`None`: learnt from its answer to a challenge).
    /// With `sequence_file`, sequence numbers (and so wire incidents) keep
    /// increasing across restarts even when the clock steps back.
    pub fn bind(
        listen: SocketAddr,
        key_file: &Path,
        sequence_file: Option<&Path>,
        agents: &[(Slot, Option<SocketAddr>)],
    ) -> Result<Self, LinkError> {
        let key = load_key(key_file)?;
        let seq = match sequence_file {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| LinkError::SequenceDir(dir.to_path_buf(), e))?;
                }
                SeqSeed::File(path.to_path_buf())
            }
            None => {
                warn!("no `sequence_file`: agent-link sequence numbers follow the wall clock (agents resynchronise a counter that goes back)");
                SeqSeed::Clock
            }
        };
        let config = EndpointConfig {
            seq,
            ..EndpointConfig::default()
        };
        let mut endpoint = Endpoint::bind(listen, NodeId::SHMC, key, config)
            .map_err(|e| LinkError::Bind(listen, e))?;
        for &(slot, addr) in agents {
            let id = node_of(slot).ok_or(LinkError::NoNodeId(slot))?;
            endpoint
                .add_peer(id, addr)
                .map_err(|_| LinkError::TooManyPeers(slot))?;
        }
        let incident_base = incident_base(endpoint.next_seq());
        info!("decision #N is incident {incident_base} + N on the agent link");
        Ok(Self {
            endpoint,
            incident_base,
            undelivered: 0,
            in_flight: Vec::with_capacity(IN_FLIGHT),
            failed: Vec::with_capacity(IN_FLIGHT),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }
}

/// Orders remembered for their undelivered alert (the endpoint keeps at most 32 pending).
const IN_FLIGHT: usize = 64;

/// The node id of the agent in `slot` (node N is the blade in slot N).
fn node_of(slot: Slot) -> Option<NodeId> {
    NodeId::blade(wire_slot(slot))
}

/// The slot of the agent that is node `id`.
fn slot_of(id: NodeId) -> Slot {
    Slot(id.0)
}

/// A slot as messages carry it.
const fn wire_slot(slot: Slot) -> u8 {
    slot.get()
}

fn proof(c: Confirmation) -> FenceProof {
    match c {
        Confirmation::HotSwapM1 => FenceProof::HotSwapM1,
        Confirmation::HotSwapM0 => FenceProof::HotSwapM0,
        Confirmation::SelfFenced => FenceProof::SelfFenced,
        Confirmation::GuestDestroyed => FenceProof::GuestDestroyed,
        Confirmation::WatchdogExpired => FenceProof::WatchdogExpired,
    }
}

/// The wire incident base of a run whose first sequence number is `first_seq`
/// (microseconds since 1970, or above everything an earlier run used): its
/// milliseconds modulo 2^32 (it wraps every 49.7 days). A later run's base lies
/// beyond every incident of an earlier one unless that run took more than one
/// decision per millisecond of its life; never 0.
pub fn incident_base(first_seq: u64) -> u32 {
    // Truncation intended: the low 32 bits of the millisecond count.
    ((first_seq / 1000) % (1u64 << 32)).max(1) as u32
}

/// The protocol message for an order; `base` is added to its incident.
pub fn order_message(order: &Order, base: u32) -> Message {
    let wire = |incident: &u32| incident.wrapping_add(base);
    match order {
        Order::FenceSelf { incident } => Message::FenceSelf {
            incident: wire(incident),
        },
        Order::RestartPartnerGuests {
            failed_slot,
            incident,
            fence,
            subset,
        } => Message::RestartPartnerGuests {
            incident: wire(incident),
            failed_slot: wire_slot(*failed_slot),
            fence: proof(*fence),
            subset: subset.as_ref().map(|name| {
                let mut v = heapless::Vec::new();
                // One name always fits.
                let _ = v.push(name.clone());
                v
            }),
        },
        Order::Evacuate { to_slot, incident } => Message::Evacuate {
            incident: wire(incident),
            to_slot: wire_slot(*to_slot),
        },
        Order::RestartGuest { name, incident } => Message::RestartGuest {
            incident: wire(incident),
            name: name.clone(),
        },
        Order::DestroyGuest { name, incident } => Message::DestroyGuest {
            incident: wire(incident),
            name: name.clone(),
        },
        Order::Migrate { to_slot, incident } => Message::Migrate {
            incident: wire(incident),
            to_slot: wire_slot(*to_slot),
        },
    }
}

/// The core input for a message from the agent in `slot`, if it is one;
/// `base` is taken off its incident.
pub fn agent_input(slot: Slot, message: Message, base: u32) -> Option<AgentInput> {
    let core = |incident: u32| incident.wrapping_sub(base);
    Some(match message {
        Message::Hello {
            slot: s,
            capabilities,
            heartbeat_ms,
            watchdog_ms,
            ..
        } if Slot(s) == slot => AgentInput::Hello {
            heartbeat_interval_ms: heartbeat_ms,
            watchdog_ms,
            live_migration: capabilities.contains(Capabilities::EVACUATE),
        },
        Message::Hello { slot: s, .. } => {
            warn!("agent of slot {slot} says it is slot {s}: ignored");
            return None;
        }
        Message::Heartbeat {
            health,
            partner_heard_ms,
            ..
        } => AgentInput::Heartbeat {
            hypervisor_ok: health != Health::Down,
            partner_heard_ago_ms: partner_heard_ms,
        },
        // Heard, nothing else: the agent's watchdog proof relies on the
        // engine counting it as seen (see `AgentInput::Present`).
        Message::Present => AgentInput::Present,
        Message::GuestCrashed { name } => AgentInput::GuestCrashed { name },
        Message::HypervisorDown => AgentInput::HypervisorDown,
        Message::HypervisorUp => AgentInput::HypervisorUp,
        Message::FenceSelfConfirmed {
            incident,
            remaining,
            ..
        } => {
            let incident = core(incident);
            if remaining != 0 {
                warn!("slot {slot}: self-fence of decision #{incident} left {remaining} guest(s) running: not a confirmation");
                return None;
            }
            AgentInput::FenceSelfConfirmed { incident }
        }
        Message::GuestOutcome {
            slot: of,
            name,
            outcome,
            reason,
            ..
        } => AgentInput::GuestOutcome {
            failed_slot: Slot(of),
            name,
            started: outcome == Outcome::Started,
            partner_running: outcome != Outcome::Started && reason == ReasonCode::PartnerRunning,
        },
        Message::IncidentDone {
            incident, slot: of, ..
        } => AgentInput::AllReported {
            failed_slot: Slot(of),
            incident: core(incident),
        },
        Message::GuestDestroyed { incident, name, .. } => AgentInput::GuestDestroyed {
            name,
            incident: core(incident),
        },
        Message::GuestUnprotected {
            slot: owner_slot,
            reason,
            name,
            text,
        } => {
            warn!("slot {slot}: guest {name} of slot {owner_slot} is not protected: {reason:?} {text}");
            AgentInput::GuestUnprotected {
                owner_slot: Slot(owner_slot),
                reason,
                name,
                text,
            }
        }
        Message::GuestMoved {
            incident,
            slot: of,
            name,
            how,
            elapsed_ms,
            downtime_ms,
        } => {
            let incident = core(incident);
            // Measured numbers for operators and benchmarks; the decision
            // waits for IncidentDone.
            match downtime_ms {
                Some(d) => info!(
                    "slot {of}: guest {name} {how:?} (decision #{incident}): {elapsed_ms} ms, guest downtime {d} ms"
                ),
                None => info!("slot {of}: guest {name} {how:?} (decision #{incident}): {elapsed_ms} ms"),
            }
            return None;
        }
        _ => return None,
    })
}

impl AgentLink for UdpAgents {
    fn send_order(&mut self, now_ms: u64, slot: Slot, order: &Order) {
        let undelivered = AgentInput::OrderUndelivered {
            kind: order.kind(),
            incident: Some(order.incident()),
            reason: Undelivered::NotSent,
        };
        let Some(id) = node_of(slot) else {
            self.undelivered += 1;
            self.failed.push((slot, undelivered));
            return;
        };
        match self
            .endpoint
            .send(id, &order_message(order, self.incident_base), now_ms)
        {
            Ok(seq) => {
                info!("order #{seq} to slot {slot}: {order:?}");
                if self.in_flight.len() >= IN_FLIGHT {
                    self.in_flight.remove(0);
                }
                self.in_flight
                    .push((seq, slot, order.kind(), order.incident()));
            }
            Err(e) => {
                self.undelivered += 1;
                error!("order to slot {slot} not sent: {e}: {order:?}");
                self.failed.push((slot, undelivered));
            }
        }
    }

    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.endpoint.as_fd())
    }

    fn unacknowledged(&self) -> usize {
        self.endpoint.pending()
    }

    fn receive(&mut self, now_ms: u64, sink: &mut dyn FnMut(Slot, AgentInput)) {
        for (slot, input) in self.failed.drain(..) {
            sink(slot, input);
        }
        while let Some(event) = self.endpoint.poll(now_ms) {
            match event {
                Event::Message { from, message, .. } => {
                    let slot = slot_of(from);
                    if let Some(input) = agent_input(slot, message, self.incident_base) {
                        sink(slot, input);
                    }
                }
                Event::Acked {
                    to,
                    seq,
                    kind,
                    status,
                } => {
                    let order = self.take_in_flight(seq);
                    if !status.is_delivered() {
                        self.undelivered += 1;
                        error!("{to} rejected {kind:?} ({status:?})");
                        undelivered(sink, to, kind, order, Undelivered::Rejected);
                    }
                }
                Event::GaveUp { to, seq, kind } => {
                    let order = self.take_in_flight(seq);
                    self.undelivered += 1;
                    error!("{to} never acknowledged {kind:?}");
                    undelivered(sink, to, kind, order, Undelivered::Unacknowledged);
                }
            }
        }
    }

    fn tick(&mut self, _now_ms: u64) {}
}

impl UdpAgents {
    /// Forgets a sent order; its (kind, decision) if it was one.
    fn take_in_flight(&mut self, seq: u64) -> Option<(OrderKind, u32)> {
        let i = self.in_flight.iter().position(|o| o.0 == seq)?;
        let (_, _, kind, incident) = self.in_flight.remove(i);
        Some((kind, incident))
    }
}

/// Tells the core that an order to `to` did not get through (orders only: other
/// commands, e.g. acks to agents, are not the core's).
fn undelivered(
    sink: &mut dyn FnMut(Slot, AgentInput),
    to: NodeId,
    kind: shelfha_proto::Kind,
    order: Option<(OrderKind, u32)>,
    reason: Undelivered,
) {
    let (kind, incident) = match order {
        Some((k, i)) => (k, Some(i)),
        None => match OrderKind::of_wire(kind) {
            Some(k) => (k, None),
            None => return,
        },
    };
    sink(
        slot_of(to),
        AgentInput::OrderUndelivered {
            kind,
            incident,
            reason,
        },
    );
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::engine::GuestName;

    #[test]
    fn test_failover_order_carries_proof_and_subset() {
        let name = GuestName::try_from("vm1").unwrap();
        let m = order_message(
            &Order::RestartPartnerGuests {
                failed_slot: Slot(1),
                incident: 7,
                fence: Confirmation::GuestDestroyed,
                subset: Some(name.clone()),
            },
            0,
        );
        match m {
            Message::RestartPartnerGuests {
                incident: 7,
                failed_slot: 1,
                fence: FenceProof::GuestDestroyed,
                subset: Some(s),
            } => assert_eq!(s.as_slice(), [name]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn test_announcements_and_partner_reports_reach_the_core() {
        let hello = Message::Hello {
            slot: 2,
            version: shelfha_proto::SoftwareVersion {
                major: 0,
                minor: 1,
                patch: 0,
            },
            capabilities: Capabilities::EVACUATE,
            heartbeat_ms: 150,
            watchdog_ms: Some(4000),
        };
        assert_eq!(
            agent_input(Slot(2), hello.clone(), 0),
            Some(AgentInput::Hello {
                heartbeat_interval_ms: 150,
                watchdog_ms: Some(4000),
                live_migration: true,
            })
        );
        // A Hello naming another slot is nobody's announcement.
        assert_eq!(agent_input(Slot(1), hello, 0), None);
        let beat = |partner_heard_ms| Message::Heartbeat {
            beat: 9,
            health: Health::Ok,
            protected: 1,
            digest: [0; 32],
            partner_heard_ms,
            running: 1,
            partner_seq: None,
        };
        assert_eq!(
            agent_input(Slot(1), beat(Some(120)), 0),
            Some(AgentInput::Heartbeat {
                hypervisor_ok: true,
                partner_heard_ago_ms: Some(120),
            })
        );
        assert_eq!(
            agent_input(Slot(1), beat(None), 0),
            Some(AgentInput::Heartbeat {
                hypervisor_ok: true,
                partner_heard_ago_ms: None,
            })
        );
        // Present marks the agent heard and carries nothing else.
        assert_eq!(
            agent_input(Slot(1), Message::Present, 0),
            Some(AgentInput::Present)
        );
        // The watchdog proof travels under its own code, which agents accept.
        match order_message(
            &Order::RestartPartnerGuests {
                failed_slot: Slot(1),
                incident: 7,
                fence: Confirmation::WatchdogExpired,
                subset: None,
            },
            0,
        ) {
            Message::RestartPartnerGuests { fence, .. } => {
                assert_eq!(fence, FenceProof::WatchdogExpired);
                assert!(fence.is_confirmed());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn test_partner_running_refusal_reaches_the_core() {
        let outcome = |outcome, reason| Message::GuestOutcome {
            incident: 3,
            slot: 1,
            name: shelfha_proto::message::guest_name("db").unwrap(),
            outcome,
            reason,
            text: shelfha_proto::message::short_text("partner still reports running guests"),
            elapsed_ms: 0,
        };
        let input = |partner_running, started| {
            Some(AgentInput::GuestOutcome {
                failed_slot: Slot(1),
                name: crate::engine::GuestName::try_from("db").unwrap(),
                started,
                partner_running,
            })
        };
        assert_eq!(
            agent_input(
                Slot(2),
                outcome(Outcome::Refused, ReasonCode::PartnerRunning),
                0
            ),
            input(true, false)
        );
        assert_eq!(
            agent_input(Slot(2), outcome(Outcome::Refused, ReasonCode::NoMemory), 0),
            input(false, false)
        );
        assert_eq!(
            agent_input(Slot(2), outcome(Outcome::Started, ReasonCode::None), 0),
            input(false, true)
        );
    }

    #[test]
    fn test_incomplete_self_fence_is_no_confirmation() {
        let m = |remaining| Message::FenceSelfConfirmed {
            incident: 3,
            destroyed: 2,
            killed: 0,
            remaining,
        };
        assert_eq!(agent_input(Slot(1), m(1), 0), None);
        assert_eq!(
            agent_input(Slot(1), m(0), 0),
            Some(AgentInput::FenceSelfConfirmed { incident: 3 })
        );
    }

    #[test]
    fn test_incidents_on_the_wire_differ_between_runs() {
        let start = 1_764_000_000_123u64;
        let first = incident_base(start * 1000);
        // A restart 250 ms later (a run killed right after its first decision).
        let later = incident_base((start + 250) * 1000);
        assert_eq!(u64::from(first), start % (1 << 32));
        assert_eq!(later.wrapping_sub(first), 250);
        assert_eq!(incident_base(5), 1);
        let fence = Order::FenceSelf { incident: 1 };
        let (a, b) = (order_message(&fence, first), order_message(&fence, later));
        // Decision #1 of two runs: two orders for the agent's journal.
        assert_eq!(
            a,
            Message::FenceSelf {
                incident: first + 1
            }
        );
        assert_ne!(a, b);
        let confirmed = |incident| Message::FenceSelfConfirmed {
            incident,
            destroyed: 1,
            killed: 0,
            remaining: 0,
        };
        // The answer maps back to the core's number; one to the earlier run's
        // order is not the later run's decision #1.
        assert_eq!(
            agent_input(Slot(1), confirmed(first + 1), first),
            Some(AgentInput::FenceSelfConfirmed { incident: 1 })
        );
        assert_ne!(
            agent_input(Slot(1), confirmed(first + 1), later),
            Some(AgentInput::FenceSelfConfirmed { incident: 1 })
        );
        let done = Message::IncidentDone {
            incident: u32::MAX.wrapping_add(3),
            slot: 2,
            started: 1,
            refused: 0,
            failed: 0,
        };
        assert!(matches!(
            agent_input(Slot(1), done, u32::MAX),
            Some(AgentInput::AllReported {
                incident: 3,
                failed_slot: Slot(2)
            })
        ));
    }
}
