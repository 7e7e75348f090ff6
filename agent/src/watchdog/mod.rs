//! The blade's hardware watchdog: the agent arms it at start, pets it only while it holds a
//! proof that its own frames are heard ([`policy`]), and disarms it (magic close) on a clean
//! stop once the ShMC knows it is no longer armed ([`armed`]).
//!
//! Why: the ShMC may confirm the fence of a blade that is dark on every channel (IPMC, agent
//! at the ShMC and at its partner) after the announced timeout plus its heartbeat timeout
//! (`WatchdogExpired`); that is only safe when the blade resets itself before then.
//!
//! Backends behind [`Watchdog`]: [`linux`] (a `/dev/watchdog` device) and [`petfile`] (a file
//! the agent writes on every pet, for tests and rigs without a watchdog device: a watcher
//! outside the agent powers the blade off when the file goes stale).

pub mod armed;
pub mod linux;
pub mod petfile;
pub mod policy;

use std::io;
use std::path::PathBuf;

use crate::config::{WatchdogConfig, WatchdogKind};

/// An armed hardware watchdog.
pub trait Watchdog: Send {
    /// Restarts the countdown.
    fn pet(&mut self) -> io::Result<()>;
    /// The countdown the watchdog actually runs, in ms (what the agent announces).
    fn timeout_ms(&self) -> u32;
    /// Stops the countdown for good (the magic close) and releases the watchdog.
    fn disarm(self: Box<Self>) -> io::Result<()>;
}

/// Why the watchdog could not be armed.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    /// Opening, configuring or first petting the device or file failed.
    #[error("watchdog {}: {what}: {source}", path.display())]
    Io {
        /// Device or pet file.
        path: PathBuf,
        /// The step that failed (`open`, `WDIOC_SETTIMEOUT`, ...).
        what: &'static str,
        /// The errno.
        source: io::Error,
    },
    /// The path is not a watchdog device.
    #[error("watchdog {}: not a character device (kind \"linux\" needs a watchdog device such as /dev/watchdog0)", path.display())]
    NotADevice {
        /// The configured device.
        path: PathBuf,
    },
    /// The driver runs a countdown other than the agent can use.
    #[error("watchdog {}: the driver reports a timeout of {reported_s} s for the {wanted_ms} ms asked", path.display())]
    Timeout {
        /// The device.
        path: PathBuf,
        /// What the agent asked, in ms.
        wanted_ms: u32,
        /// What the driver reports, in seconds.
        reported_s: i64,
    },
}

/// Arms the configured watchdog.
pub fn open(cfg: &WatchdogConfig) -> Result<Box<dyn Watchdog>, WatchdogError> {
    Ok(match cfg.kind {
        WatchdogKind::Linux => Box::new(linux::LinuxWatchdog::open(&cfg.device, cfg.timeout_ms)?),
        WatchdogKind::PetFile => Box::new(petfile::PetFile::open(&cfg.device, cfg.timeout_ms)?),
    })
}

#[cfg(test)]
mod test;
