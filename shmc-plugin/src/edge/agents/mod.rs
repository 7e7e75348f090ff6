//! The seam between the runtime and the blade agents: the [`AgentLink`]
//! trait, [`NoAgents`], and the UDP link ([`udp`]).
//!
//! The core speaks [`Order`] and [`AgentInput`]; an [`AgentLink`] carries them
//! over the ShMC <-> agent protocol (UDP, authenticated, acknowledged and
//! retried by the protocol crate's endpoint). The run loop polls
//! [`AgentLink::poll_fd`] together with the IPMB device, calls
//! [`AgentLink::receive`] and [`AgentLink::tick`] on every
//! wake-up (readable or not), and hands every order the core queues to [`AgentLink::send_order`].

pub mod udp;

use std::os::fd::BorrowedFd;

use crate::engine::{AgentInput, Order};
use crate::wire::addr::Slot;

/// Transport to the blade agents.
pub trait AgentLink {
    /// Delivers `order` to the agent of `slot` (the link retries until acknowledged).
    fn send_order(&mut self, now_ms: u64, slot: Slot, order: &Order);
    /// A descriptor to wait on for agent traffic, if the link has one.
    fn poll_fd(&self) -> Option<BorrowedFd<'_>>;
    /// Reads what arrived and passes each authenticated input to `sink` as (slot, input).
    fn receive(&mut self, now_ms: u64, sink: &mut dyn FnMut(Slot, AgentInput));
    /// Runs the link's timers (retries, acknowledgements).
    fn tick(&mut self, now_ms: u64);
    /// Orders sent and not acknowledged yet (still being retried).
    fn unacknowledged(&self) -> usize {
        0
    }
}

/// No agent link: orders are logged and counted, nothing arrives. Used when
/// the configuration names no `listen` address, and by tests.
#[derive(Debug, Default)]
pub struct NoAgents {
    /// Orders that could not be delivered.
    pub undelivered: u64,
}

impl AgentLink for NoAgents {
    fn send_order(&mut self, _now_ms: u64, slot: Slot, order: &Order) {
        self.undelivered += 1;
        log::warn!("no agent link configured: order for slot {slot} not delivered: {order:?}");
    }

    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn receive(&mut self, _now_ms: u64, _sink: &mut dyn FnMut(Slot, AgentInput)) {}

    fn tick(&mut self, _now_ms: u64) {}
}
