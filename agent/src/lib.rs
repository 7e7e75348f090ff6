//! shelfha blade agent: acts on the ShMC's orders on one blade. It fences its own guests,
//! restarts its partner's guests from definitions the partner pushed, restarts crashed guests,
//! and reports guest crashes and hypervisor loss. See `README.md` for the deployment view.
//!
//! Layers: `config` (the TOML file), `hypervisor` (the trait, libvirt, lifecycle events),
//! `store` (journal and partner definitions on disk), `order` (orders and outcomes),
//! `logic` (decisions behind the trait), `net` (protocol messages <-> orders), `daemon`
//! (threads and the protocol endpoint).

pub mod config;
pub mod daemon;
pub mod hypervisor;
pub mod logic;
pub mod net;
pub mod order;
pub mod policy;
pub mod store;

#[cfg(test)]
mod testutil;
