//! The `std` edge of the plugin: everything that needs an operating system
//! around the `no_std` core.
//!
//! - [`runtime`]: the one runtime every event source drives (IPMB demux,
//!   output dispatch, decision-stream records);
//! - [`record`]: the decision stream's record types (one schema);
//! - [`source`]: the event sources: the IPMB device ([`source::ipmb`]), a
//!   capture ([`source::replay`]), the shelf manager's SEL over a session
//!   ([`source::sel`], cargo features `rmcp` and `system`);
//! - [`agents`]: the seam to the blade agents and its UDP implementation;
//! - [`stop`]: stopping on SIGTERM/SIGINT; and logging ([`init_logging`]).
//!
//! The decisions themselves are in [`crate::engine`]; the edge only feeds it
//! bytes, events and a clock, and carries out what it queues.

pub mod agents;
pub mod record;
pub mod runtime;
pub mod source;
pub mod stop;

/// Sets up `log` through `simple_logger` on stderr at `level`
/// (`RUST_LOG`-style names: error, warn, info, debug, trace).
pub fn init_logging(level: log::LevelFilter) {
    // A second initialisation (tests) is harmless: keep the first logger.
    let _ = simple_logger::SimpleLogger::new()
        .with_level(level)
        .env()
        .init();
}
