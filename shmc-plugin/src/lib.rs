//! shmc-plugin core: IPMB framing, event decoding, failure classification and fencing.
//!
//! The core (everything but `host`) is `no_std` without an allocator: tables are
//! `heapless` with sizes from [`capacity`], byte I/O goes through `embedded-io`,
//! and time is always passed in as milliseconds.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]

pub mod capacity;
pub mod classify;
pub mod config;
pub mod engine;
pub mod event;
pub mod wire;
#[cfg(feature = "std")]
pub mod host;
