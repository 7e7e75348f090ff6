//! The `std` edges of the plugin: capture replay, the run loop over the IPMB
//! device, the SEL-polling event sources (RMCP+ and the system interface,
//! cargo features `rmcp` and `system`), the agent-link seam, stopping on
//! SIGTERM/SIGINT and logging. The decisions themselves are in
//! [`crate::engine`]; this module only feeds it bytes and a clock.

pub mod agent;
pub mod replay;
#[cfg(feature = "rmcp")]
pub mod rmcp;
pub mod run;
pub mod stop;
#[cfg(feature = "system")]
pub mod system;
pub mod udp;

/// Sets up `log` through `simple_logger` on stderr at `level`
/// (`RUST_LOG`-style names: error, warn, info, debug, trace).
pub fn init_logging(level: log::LevelFilter) {
    // A second initialisation (tests) is harmless: keep the first logger.
    let _ = simple_logger::SimpleLogger::new()
        .with_level(level)
        .env()
        .init();
}
