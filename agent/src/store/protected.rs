//! The protected set: the names of this blade's protected guests, in `<state>/protected.json`,
//! so an agent restarted while libvirt does not answer still knows which QEMU processes a
//! fence must account for.
//!
//! The set is replaced by every listing of the guests (written only when it changed), and a
//! guest this agent starts is added before its start is asked of libvirt (a start that
//! completes between two listings is never missing from the file). A guest whose start began
//! or ended after a listing began stays in the set until a later listing has seen it.
//!
//! A missing or unreadable file is [`ProtectedSet::names`] `None`: the agent cannot account
//! for its guests from it (a fence without libvirt then kills every QEMU of this blade it
//! finds). A write that fails removes the file, so a stale set is never believed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::write_atomic;

/// File name under the state directory.
pub const FILE: &str = "protected.json";
/// File format version.
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Data {
    version: u32,
    guests: BTreeSet<String>,
}

/// Reads the stored set; Err with why when there is none or it cannot be read.
pub fn load(state_dir: &Path) -> Result<BTreeSet<String>, String> {
    let path = state_dir.join(FILE);
    let bytes = std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("{}: none stored (never listed here)", path.display())
        } else {
            format!("{}: {e}", path.display())
        }
    })?;
    match serde_json::from_slice::<Data>(&bytes) {
        Ok(d) if d.version == VERSION => Ok(d.guests),
        Ok(d) => Err(format!("{}: unknown version {}", path.display(), d.version)),
        Err(e) => Err(format!("{}: unreadable: {e}", path.display())),
    }
}

/// Stores the set atomically.
pub fn save(state_dir: &Path, guests: &BTreeSet<String>) -> std::io::Result<()> {
    let data = Data {
        version: VERSION,
        guests: guests.clone(),
    };
    let bytes = serde_json::to_vec(&data).map_err(std::io::Error::other)?;
    write_atomic(&state_dir.join(FILE), &bytes)
}

/// The protected set in memory, kept in step with its file.
#[derive(Debug)]
pub struct ProtectedSet {
    dir: PathBuf,
    /// `None`: not known (nothing stored, unreadable, or a write failed).
    names: Option<BTreeSet<String>>,
    /// Guests started by this agent: `None` while the start runs, then when it ended.
    starts: BTreeMap<String, Option<Instant>>,
    /// Whether `names` is what the file holds (a failed write is retried at the next change
    /// or listing).
    stored: bool,
}

impl ProtectedSet {
    /// Loads the set stored under `state_dir` (unknown if there is none).
    pub fn open(state_dir: &Path) -> ProtectedSet {
        let names = match load(state_dir) {
            Ok(n) => {
                log::info!("protected set: {} guests stored", n.len());
                Some(n)
            }
            Err(why) => {
                log::warn!("protected set not known until libvirt lists the guests: {why}");
                None
            }
        };
        ProtectedSet {
            stored: names.is_some(),
            dir: state_dir.to_owned(),
            names,
            starts: BTreeMap::new(),
        }
    }

    /// The set, or `None` when it is not known.
    pub fn names(&self) -> Option<&BTreeSet<String>> {
        self.names.as_ref()
    }

    /// Whether `name` is in the set (or being started by this agent).
    pub fn contains(&self, name: &str) -> bool {
        self.starts.contains_key(name) || self.names.as_ref().is_some_and(|n| n.contains(name))
    }

    /// A listing that began at `listed_at` found these protected guests.
    pub fn listed(&mut self, names: impl IntoIterator<Item = String>, listed_at: Instant) {
        self.starts
            .retain(|_, ended| ended.is_none_or(|t| t >= listed_at));
        let mut set: BTreeSet<String> = names.into_iter().collect();
        set.extend(self.starts.keys().cloned());
        self.replace(set);
    }

    /// This agent is about to start these guests.
    pub fn starting<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        let mut set = self.names.clone();
        for n in names {
            self.starts.insert(n.to_owned(), None);
            if let Some(s) = set.as_mut() {
                s.insert(n.to_owned());
            }
        }
        if let Some(set) = set {
            self.replace(set);
        }
    }

    /// The start of `name` (see [`ProtectedSet::starting`]) has returned.
    pub fn start_ended(&mut self, name: &str) {
        if let Some(ended) = self.starts.get_mut(name) {
            *ended = Some(Instant::now());
        }
    }

    fn replace(&mut self, set: BTreeSet<String>) {
        if self.stored && self.names.as_ref() == Some(&set) {
            return;
        }
        self.stored = false;
        match save(&self.dir, &set) {
            Ok(()) => {
                self.names = Some(set);
                self.stored = true;
            }
            Err(e) => {
                let path = self.dir.join(FILE);
                log::error!(
                    "{}: cannot store the protected set ({e}); removing it so a restarted \
                     agent does not believe a stale one",
                    path.display()
                );
                if let Err(e) = std::fs::remove_file(&path) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        log::error!("{}: cannot remove: {e}", path.display());
                    }
                }
                // Known in memory (the listing was fresh), even though not stored.
                self.names = Some(set);
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn test_unknown_until_listed_then_survives_reopen() {
        let dir = crate::testutil::TempDir::new("protected");
        let mut p = ProtectedSet::open(dir.path());
        assert_eq!(p.names(), None, "nothing stored: not known");
        p.listed(["a".to_string(), "b".to_string()], Instant::now());
        assert_eq!(p.names(), Some(&set(&["a", "b"])));
        let p2 = ProtectedSet::open(dir.path());
        assert_eq!(p2.names(), Some(&set(&["a", "b"])));
        assert!(p2.contains("a") && !p2.contains("c"));
        std::fs::write(dir.path().join(FILE), b"{garbage").unwrap();
        assert_eq!(ProtectedSet::open(dir.path()).names(), None);
    }

    #[test]
    fn test_a_start_stays_until_a_later_listing_sees_it() {
        let dir = crate::testutil::TempDir::new("protected-starts");
        let mut p = ProtectedSet::open(dir.path());
        p.listed(["a".to_string()], Instant::now());
        p.starting(["g"]);
        assert_eq!(
            load(dir.path()).unwrap(),
            set(&["a", "g"]),
            "stored before the start"
        );
        // A listing that began before the start ended does not drop it...
        let before = Instant::now();
        p.start_ended("g");
        p.listed(["a".to_string()], before);
        assert!(p.contains("g"));
        assert_eq!(load(dir.path()).unwrap(), set(&["a", "g"]));
        // ... a listing that began after it does (it then reports what libvirt has).
        p.listed(["a".to_string()], Instant::now());
        assert!(!p.contains("g"));
        assert_eq!(load(dir.path()).unwrap(), set(&["a"]));
    }
}
