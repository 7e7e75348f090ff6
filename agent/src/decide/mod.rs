//! The agent's decisions: pure functions and state machines with the time passed in. Nothing
//! here starts a thread, reads the clock or calls the hypervisor; `execute` does, and asks
//! these modules what to do.
//!
//! - `sync`: keeping the definitions exchanged with the partner in step.
//! - `orders`: an order's preconditions, and the plan of a takeover.
//! - `fence`: what the readings of a fence prove, and its counts.
//! - `evacuate`: what becomes of each guest of an Evacuate or Migrate order.
//! - `standby`: which guest definitions may be kept started-paused on the partner.
//! - `partner`: whether the partner's heartbeats let this agent start the partner's guests.
//! - `running`: the `running` count of this agent's heartbeats, and when an extra one is due.

pub mod evacuate;
pub mod fence;
pub mod orders;
pub mod partner;
pub mod running;
pub mod standby;
pub mod sync;
