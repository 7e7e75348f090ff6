//! shelfha blade agent: acts on the ShMC's orders on one blade. It fences its own guests,
//! restarts its partner's guests from definitions the partner pushed, restarts crashed guests,
//! and reports guest crashes and hypervisor loss. See `README.md` for the deployment view.
//!
//! Layers: `config` (the TOML file), `hypervisor` (the trait, libvirt, lifecycle events),
//! `store` (journal and partner definitions on disk), `order` (orders and outcomes),
//! `failure` (why a guest operation failed, typed), `decide` (pure decisions, time passed in),
//! `execute` (carrying orders out: threads, deadlines, hypervisor calls), `wire_map`
//! (protocol messages <-> orders and outcomes), `watchdog` (the blade's hardware watchdog,
//! petted only on proofs of being heard), `daemon` (threads and the protocol endpoint).

pub mod config;
pub mod daemon;
pub mod decide;
pub mod execute;
pub mod failure;
pub mod hypervisor;
pub mod order;
pub mod policy;
pub mod stop;
pub mod store;
pub mod watchdog;
pub mod wire_map;

#[cfg(test)]
mod testutil;
