//! A Linux watchdog device (`/dev/watchdog`, `/dev/watchdogN`): the timeout is set with
//! `WDIOC_SETTIMEOUT` (whole seconds, rounded up from the configured ms) and read back with
//! `WDIOC_GETTIMEOUT`; a pet is `WDIOC_KEEPALIVE`; the magic close writes `V` before closing,
//! which stops the countdown (unless the driver was built with `nowayout`).
//!
//! The three ioctls are the module's only unsafe code: each passes an open descriptor and a
//! pointer to a live `c_int`, as `<linux/watchdog.h>` defines them.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::{Watchdog, WatchdogError};

mod ioctl {
    // <linux/watchdog.h>: WATCHDOG_IOCTL_BASE 'W'.
    nix::ioctl_read!(keepalive, b'W', 5, libc::c_int);
    nix::ioctl_readwrite!(set_timeout, b'W', 6, libc::c_int);
    nix::ioctl_read!(get_timeout, b'W', 7, libc::c_int);
}

/// An open, armed watchdog device.
#[derive(Debug)]
pub struct LinuxWatchdog {
    file: File,
    path: PathBuf,
    timeout_ms: u32,
}

/// Whole seconds covering `ms` (a watchdog counts in seconds; rounding down would shorten it).
pub fn seconds_for(ms: u32) -> libc::c_int {
    libc::c_int::try_from(ms.div_ceil(1000)).unwrap_or(libc::c_int::MAX)
}

impl LinuxWatchdog {
    /// Opens `path` (which starts the countdown), sets the timeout to `timeout_ms` rounded up
    /// to seconds and reads back what the driver runs (refused when shorter than asked). On a failure after the open, the device
    /// is closed with the magic character so a half-configured watchdog does not reset the
    /// blade.
    pub fn open(path: &Path, timeout_ms: u32) -> Result<Self, WatchdogError> {
        let io_err = |what, source| WatchdogError::Io {
            path: path.to_owned(),
            what,
            source,
        };
        let meta = std::fs::metadata(path).map_err(|e| io_err("stat", e))?;
        if !meta.file_type().is_char_device() {
            return Err(WatchdogError::NotADevice {
                path: path.to_owned(),
            });
        }
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io_err("open", e))?;
        let mut wd = LinuxWatchdog {
            file,
            path: path.to_owned(),
            timeout_ms,
        };
        match wd.configure(timeout_ms) {
            Ok(()) => Ok(wd),
            Err(e) => {
                let _ = wd.file.write_all(b"V");
                Err(e)
            }
        }
    }

    fn configure(&mut self, timeout_ms: u32) -> Result<(), WatchdogError> {
        let fd = self.file.as_raw_fd();
        let err = |what, e: nix::errno::Errno| WatchdogError::Io {
            path: self.path.clone(),
            what,
            source: io::Error::from(e),
        };
        let mut secs = seconds_for(timeout_ms);
        // SAFETY: `fd` is an open descriptor and the argument a valid c_int for the call.
        unsafe { ioctl::set_timeout(fd, &mut secs) }.map_err(|e| err("WDIOC_SETTIMEOUT", e))?;
        let mut got: libc::c_int = 0;
        // SAFETY: as above.
        unsafe { ioctl::get_timeout(fd, &mut got) }.map_err(|e| err("WDIOC_GETTIMEOUT", e))?;
        let reported_ms = u64::try_from(got).unwrap_or(0) * 1000;
        // A driver may clamp the timeout: shorter than configured, the petting rule may not
        // keep a healthy blade alive (the configuration checked it against the heartbeat).
        match u32::try_from(reported_ms) {
            Ok(ms) if ms >= timeout_ms => self.timeout_ms = ms,
            _ => {
                return Err(WatchdogError::Timeout {
                    path: self.path.clone(),
                    wanted_ms: timeout_ms,
                    reported_s: i64::from(got),
                })
            }
        }
        self.pet().map_err(|e| WatchdogError::Io {
            path: self.path.clone(),
            what: "WDIOC_KEEPALIVE",
            source: e,
        })
    }
}

impl Watchdog for LinuxWatchdog {
    fn pet(&mut self) -> io::Result<()> {
        let mut dummy: libc::c_int = 0;
        // SAFETY: `file` is open; the argument is a valid c_int.
        unsafe { ioctl::keepalive(self.file.as_raw_fd(), &mut dummy) }
            .map(|_| ())
            .map_err(|e| io::Error::other(format!("{}: WDIOC_KEEPALIVE: {e}", self.path.display())))
    }

    fn timeout_ms(&self) -> u32 {
        self.timeout_ms
    }

    fn disarm(mut self: Box<Self>) -> io::Result<()> {
        self.file
            .write_all(b"V")
            .map_err(|e| io::Error::other(format!("{}: magic close: {e}", self.path.display())))
    }
}
