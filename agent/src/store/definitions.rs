//! Guest definitions exchanged between partner agents, and the partner's copy kept here.
//!
//! A [`GuestDef`] is what a blade needs to restart a guest of its partner: the domain XML plus
//! the owner's restart priority and memory. The set's [`digest`] (SHA-256 over the sorted
//! definitions) travels in heartbeats; when the digest of what we store differs from the one
//! the owner announces, the stored copy has drifted and the owner pushes it again.
//!
//! On disk: `<state>/partner/<name>.json`, one file per guest, each replaced atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ensure_dir, write_atomic};

/// Longest accepted guest name (libvirt's own limit is larger; names travel in datagrams).
pub const MAX_NAME_LEN: usize = 64;
/// Largest accepted domain XML.
pub const MAX_XML_LEN: usize = 256 * 1024;
/// Most definitions kept for the partner.
pub const MAX_PARTNER_GUESTS: usize = 256;

/// One guest definition, as pushed by its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestDef {
    /// Domain name.
    pub name: String,
    /// Domain UUID.
    pub uuid: String,
    /// Restart priority (higher first).
    pub priority: u32,
    /// Maximum memory in KiB.
    pub memory_kib: u64,
    /// Inactive domain XML.
    pub xml: String,
}

/// A definition or the partner store was refused.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// The name cannot be used as a file name or is too long.
    #[error("invalid guest name `{0}`")]
    BadName(String),
    /// The XML is larger than [`MAX_XML_LEN`].
    #[error("definition of `{0}` too large ({1} bytes)")]
    TooLarge(String, usize),
    /// [`MAX_PARTNER_GUESTS`] definitions are already stored.
    #[error("partner store full ({MAX_PARTNER_GUESTS} guests), `{0}` not stored")]
    Full(String),
    /// Disk I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Whether `name` is acceptable as a guest name and a file name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'))
}

impl GuestDef {
    /// Checks the fields that come from the network.
    pub fn validate(&self) -> Result<(), DefinitionError> {
        if !valid_name(&self.name) {
            return Err(DefinitionError::BadName(self.name.clone()));
        }
        if self.xml.len() > MAX_XML_LEN {
            return Err(DefinitionError::TooLarge(self.name.clone(), self.xml.len()));
        }
        Ok(())
    }
}

/// SHA-256 over a set of definitions, independent of their order.
pub fn digest<'a>(defs: impl IntoIterator<Item = &'a GuestDef>) -> [u8; 32] {
    let mut sorted: Vec<&GuestDef> = defs.into_iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut h = Sha256::new();
    for d in sorted {
        for field in [d.name.as_bytes(), d.uuid.as_bytes(), d.xml.as_bytes()] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field);
        }
        h.update(d.priority.to_le_bytes());
        h.update(d.memory_kib.to_le_bytes());
    }
    h.finalize().into()
}

/// The partner's definitions, in memory and under `<state>/partner/`.
#[derive(Debug)]
pub struct PartnerStore {
    dir: PathBuf,
    defs: BTreeMap<String, GuestDef>,
}

impl PartnerStore {
    /// Opens (creating) the store under `state_dir` and loads every stored definition.
    /// Unreadable files are logged and skipped: a damaged copy is repaired by the next push.
    pub fn open(state_dir: &Path) -> Result<PartnerStore, DefinitionError> {
        let dir = state_dir.join("partner");
        ensure_dir(&dir).map_err(|source| DefinitionError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut defs = BTreeMap::new();
        let entries = std::fs::read_dir(&dir).map_err(|source| DefinitionError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<GuestDef>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(d)
                    if d.validate().is_ok()
                        && path.file_stem().and_then(|s| s.to_str()) == Some(d.name.as_str()) =>
                {
                    defs.insert(d.name.clone(), d);
                }
                Ok(d) => log::warn!(
                    "{}: ignoring definition of `{}` (name does not match)",
                    path.display(),
                    d.name
                ),
                Err(e) => log::warn!("{}: ignoring unreadable definition: {e}", path.display()),
            }
        }
        Ok(PartnerStore { dir, defs })
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Stores (or replaces) one definition; returns whether anything changed.
    pub fn put(&mut self, def: GuestDef) -> Result<bool, DefinitionError> {
        def.validate()?;
        if self.defs.get(&def.name) == Some(&def) {
            return Ok(false);
        }
        if !self.defs.contains_key(&def.name) && self.defs.len() >= MAX_PARTNER_GUESTS {
            return Err(DefinitionError::Full(def.name));
        }
        let path = self.path_of(&def.name);
        let bytes = serde_json::to_vec_pretty(&def).map_err(|e| DefinitionError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&path, &bytes).map_err(|source| DefinitionError::Io { path, source })?;
        self.defs.insert(def.name.clone(), def);
        Ok(true)
    }

    /// Removes every definition whose name is not in `keep`; returns the removed names.
    pub fn retain(&mut self, keep: &[&str]) -> Result<Vec<String>, DefinitionError> {
        let gone: Vec<String> = self
            .defs
            .keys()
            .filter(|n| !keep.contains(&n.as_str()))
            .cloned()
            .collect();
        for name in &gone {
            let path = self.path_of(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(DefinitionError::Io { path, source }),
            }
            self.defs.remove(name);
        }
        Ok(gone)
    }

    /// Digest of the stored set, comparable with the owner's [`digest`].
    pub fn digest(&self) -> [u8; 32] {
        digest(self.defs.values())
    }

    /// One stored definition.
    pub fn get(&self, name: &str) -> Option<&GuestDef> {
        self.defs.get(name)
    }

    /// Every stored definition, by name.
    pub fn all(&self) -> impl Iterator<Item = &GuestDef> {
        self.defs.values()
    }

    /// Number of stored definitions.
    pub fn len(&self) -> usize {
        self.defs.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::testutil::TempDir;

    pub(crate) fn def(name: &str, priority: u32, memory_kib: u64) -> GuestDef {
        GuestDef {
            name: name.into(),
            uuid: format!("00000000-0000-0000-0000-{:012}", name.len()),
            priority,
            memory_kib,
            xml: format!(
                "<domain type='test'><name>{name}</name><memory>{memory_kib}</memory></domain>"
            ),
        }
    }

    #[test]
    fn test_digest_order_independent_and_sensitive() {
        let (a, b) = (def("a", 1, 10), def("b", 2, 20));
        assert_eq!(digest([&a, &b]), digest([&b, &a]));
        let mut b2 = b.clone();
        b2.xml.push(' ');
        assert_ne!(digest([&a, &b]), digest([&a, &b2]));
        let mut b3 = b.clone();
        b3.priority = 3;
        assert_ne!(digest([&a, &b]), digest([&a, &b3]));
        assert_ne!(digest([&a]), digest([&a, &b]));
    }

    #[test]
    fn test_store_persists_and_digest_repairs() {
        let dir = TempDir::new("defs");
        let owner = vec![def("web", 50, 1024), def("db", 100, 2048)];
        {
            let mut s = PartnerStore::open(dir.path()).unwrap();
            for d in &owner {
                assert!(s.put(d.clone()).unwrap());
            }
            assert!(
                !s.put(owner[0].clone()).unwrap(),
                "unchanged put is a no-op"
            );
            assert_eq!(s.digest(), digest(&owner));
        }
        // Drift: a file damaged on disk is dropped at load, the digest no longer matches,
        // and re-pushing the owner's set repairs it.
        std::fs::write(dir.path().join("partner/web.json"), b"{ torn").unwrap();
        let mut s = PartnerStore::open(dir.path()).unwrap();
        assert_eq!(s.len(), 1);
        assert_ne!(s.digest(), digest(&owner));
        for d in &owner {
            s.put(d.clone()).unwrap();
        }
        assert_eq!(s.digest(), digest(&owner));
        let s = PartnerStore::open(dir.path()).unwrap();
        assert_eq!(s.digest(), digest(&owner));
        assert_eq!(s.get("db"), Some(&owner[1]));
    }

    #[test]
    fn test_retain_removes_files() {
        let dir = TempDir::new("retain");
        let mut s = PartnerStore::open(dir.path()).unwrap();
        s.put(def("a", 0, 1)).unwrap();
        s.put(def("b", 0, 1)).unwrap();
        assert_eq!(s.retain(&["b"]).unwrap(), vec!["a".to_string()]);
        assert!(!dir.path().join("partner/a.json").exists());
        assert_eq!(PartnerStore::open(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn test_bad_names_refused() {
        let dir = TempDir::new("names");
        let mut s = PartnerStore::open(dir.path()).unwrap();
        for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(65)] {
            assert!(
                matches!(s.put(def(bad, 0, 1)), Err(DefinitionError::BadName(_))),
                "{bad}"
            );
        }
        let mut big = def("big", 0, 1);
        big.xml = "x".repeat(MAX_XML_LEN + 1);
        assert!(matches!(s.put(big), Err(DefinitionError::TooLarge(..))));
        assert!(s.is_empty());
    }
}
