//! A pet file instead of a watchdog device, for tests and rigs without one: on every pet the
//! agent replaces the file (write to a temporary file, then rename, so a reader never sees a
//! torn line) with `armed <timeout_ms> <pet count>`; the magic close replaces it with
//! `disarmed`. A watcher outside the agent (the rig) plays the hardware: it powers the blade
//! off when the content has not changed for the timeout and the last line is not `disarmed`.
//! Not a protection on a real blade: a dead host stops the watcher too only if it runs there.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{Watchdog, WatchdogError};

/// Content of a disarmed pet file.
pub const DISARMED: &str = "disarmed\n";

/// An armed pet file.
#[derive(Debug)]
pub struct PetFile {
    path: PathBuf,
    tmp: PathBuf,
    timeout_ms: u32,
    pets: u64,
}

impl PetFile {
    /// Arms: writes the first pet (the countdown starts now).
    pub fn open(path: &Path, timeout_ms: u32) -> Result<Self, WatchdogError> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let mut f = PetFile {
            path: path.to_owned(),
            tmp: PathBuf::from(tmp),
            timeout_ms,
            pets: 0,
        };
        f.pet().map_err(|source| WatchdogError::Io {
            path: path.to_owned(),
            what: "write",
            source,
        })?;
        Ok(f)
    }

    fn replace(&self, content: &str) -> io::Result<()> {
        let named =
            |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", self.path.display()));
        let mut f = fs::File::create(&self.tmp).map_err(named)?;
        f.write_all(content.as_bytes()).map_err(named)?;
        fs::rename(&self.tmp, &self.path).map_err(named)
    }
}

impl Watchdog for PetFile {
    fn pet(&mut self) -> io::Result<()> {
        self.pets += 1;
        self.replace(&format!("armed {} {}\n", self.timeout_ms, self.pets))
    }

    fn timeout_ms(&self) -> u32 {
        self.timeout_ms
    }

    fn disarm(self: Box<Self>) -> io::Result<()> {
        self.replace(DISARMED)
    }
}
