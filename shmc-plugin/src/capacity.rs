//! Every fixed capacity of the core, in one place.
//!
//! The core allocates nothing: each table below is a `heapless` container of
//! this size. When a table is full the policy is stated where it is used and
//! the overflow is counted.

/// Blades in one shelf (ATCA: at most 16 front-board slots).
pub const MAX_BLADES: usize = 16;
/// Largest IPMB message in the `ipmb_dev_int` layout, len byte included.
pub const MAX_IPMB_MESSAGE: usize = 33;
/// IPMB requests of ours awaiting a response, shelf-wide.
pub const MAX_OUTSTANDING_REQUESTS: usize = 32;
/// Platform Events remembered for duplicate suppression.
pub const DEDUPE_ENTRIES: usize = 64;
/// Guests whose crashes are counted for the per-guest restart limit.
pub const MAX_TRACKED_GUESTS: usize = 64;
/// Crashes remembered per guest (one more than the restart limit).
pub const CRASHES_PER_GUEST: usize = 4;
/// Actions one decision may carry.
pub const MAX_ACTIONS: usize = 4;
/// Outputs the core may queue between two drains by the runtime.
pub const MAX_OUTPUTS: usize = 64;
/// Longest guest name carried through the core (libvirt names are longer in
/// principle; ours are truncated-refused, see the protocol crate).
pub const MAX_GUEST_NAME: usize = 64;
/// Single-guest failovers awaiting the blade's destroy confirmation.
pub const MAX_GUEST_FAILOVERS: usize = 16;
/// Non-critical threshold assertions held (predictive mode) while their
/// `degraded_hold_ms` runs, shelf-wide.
pub const MAX_DEGRADED_HOLDS: usize = 32;
/// Guests named by one alert (the rest are counted in it).
pub const MAX_ALERT_GUESTS: usize = 8;
/// Failover orders (whole blade or one guest) whose partner report is awaited.
pub const MAX_FAILOVER_REPORTS: usize = MAX_BLADES + MAX_GUEST_FAILOVERS;
/// Unprotected guests (owner, name, reason) remembered so each is alerted once.
pub const MAX_UNPROTECTED: usize = 32;
/// Longest free text an agent report carries through the core (the protocol's `MAX_TEXT`).
pub const MAX_REPORT_TEXT: usize = 64;
