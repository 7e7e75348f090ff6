//! shmc-plugin core: IPMB framing, event decoding, failure classification and fencing.
//!
//! The core (everything but `edge`) is `no_std` without an allocator: tables are
//! `heapless` with sizes from [`capacity`], byte I/O goes through `embedded-io`,
//! and time is always passed in as milliseconds.
//!
//! Layers: [`wire`] (IPMB bytes <-> messages and events, [`wire::event`]:
//! what an IPMC reported), [`classify`] (event -> failure class, pure), [`engine`] (the
//! shelf: incidents, fencing, timers, orders), [`config`] (the core's
//! configuration; TOML loading under `std`), and, with `std`, `edge` (replay,
//! the run loop over the IPMB device, the agent link, logging).
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]

pub mod capacity;
pub mod classify;
pub mod config;
#[cfg(feature = "std")]
pub mod edge;
pub mod engine;
pub mod wire;
