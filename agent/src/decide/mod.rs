//! The agent's decisions: pure functions and state machines with the time passed in. Nothing
//! here starts a thread, reads the clock or calls the hypervisor; `execute` does, and asks
//! these modules what to do.
//!
//! - `sync`: keeping the definitions exchanged with the partner in step.
//! - `standby`: which guest definitions may be kept started-paused on the partner.

pub mod standby;
pub mod sync;
