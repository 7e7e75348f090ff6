//! Why the demo stopped.

use std::error::Error;
use std::time::Duration;

use shmc_plugin::config::ConfigError;
use shmc_plugin::wire::addr::Slot;

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Setting up the blades (directories, libvirt, agents, guests) failed.
    #[error("{what}")]
    Setup {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: Box<dyn Error + Send + Sync>,
    },
    /// The core refused the demo shelf.
    #[error("shelf configuration")]
    Shelf(#[from] ConfigError),
    /// More blades than the core holds.
    #[error("shelf capacity")]
    Capacity,
    /// The safety check failed: a guest ran on both blades.
    #[error("guest {0} runs on both blades")]
    BothBlades(String),
    /// A failover did not complete in time.
    #[error(
        "failure {failure}: guests of slot {slot} not running on slot {partner} within {limit:?}"
    )]
    NotFailedOver {
        /// Number of the failure (1, 2, ...).
        failure: usize,
        /// The failed blade.
        slot: Slot,
        /// Its partner.
        partner: Slot,
        /// How long the demo waited.
        limit: Duration,
    },
    /// A blade whose IPMC alone went silent was not kept in service with its guests.
    #[error(
        "failure {failure}: slot {slot} (IPMC silent, host alive) not kept in service with its guests within {}s",
        limit.as_secs()
    )]
    NotKeptInService {
        /// Number of the failure (1, 2, ...).
        failure: usize,
        /// The blade.
        slot: Slot,
        /// How long the demo waited.
        limit: Duration,
    },
    /// The timeline could not be written.
    #[error("timeline")]
    Timeline(#[from] std::io::Error),
}

/// Wraps an error of a setup step named `what`.
pub(super) fn setup<E>(what: impl Into<String>) -> impl FnOnce(E) -> DemoError
where
    E: Error + Send + Sync + 'static,
{
    let what = what.into();
    move |e| DemoError::Setup {
        what,
        source: Box::new(e),
    }
}
