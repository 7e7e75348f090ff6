//! Guest definitions exchanged between partner agents, and the partner's copy kept here.
//!
//! A [`GuestDef`] is what a blade needs to restart a guest of its partner: its name and domain
//! XML (memory and UUID are read from the XML; the restart priority comes from the restarting
//! agent's configuration). The set's [`digest`] travels in heartbeats; when the digest of what
//! we store differs from the one the owner announces, the stored copy has drifted and is
//! requested again.
//!
//! A pushed definition the [`crate::policy`] refuses is not stored (a stored older copy of
//! that guest is removed): only its name, digest and refusal are remembered, in memory, and
//! count in the digest of what is held for the partner, so that the owner's digest (which
//! covers every guest it pushed) still matches and the refused guest is not requested again
//! and again. After an agent restart one request fetches it again and refuses it again.
//!
//! On disk: `<state>/partner/<name>.xml`, the domain XML itself (an operator can
//! `virsh define` it), one file per guest, each replaced atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{ensure_dir, write_atomic};
use crate::policy::Refusal;

/// Longest accepted guest name (libvirt's own limit is larger; names travel in datagrams).
pub const MAX_NAME_LEN: usize = shelfha_proto::MAX_NAME;
/// Largest accepted domain XML (what the protocol's definition chunks can carry).
pub const MAX_XML_LEN: usize =
    shelfha_proto::MAX_DEFINITION_CHUNKS as usize * shelfha_proto::DEFINITION_CHUNK;
/// Most definitions kept for the partner.
pub const MAX_PARTNER_GUESTS: usize = 256;

/// One guest definition, as pushed by its owner: the name and the domain XML, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDef {
    /// Domain name.
    pub name: String,
    /// Inactive domain XML.
    pub xml: String,
}

/// A definition or the partner store was refused.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// The name cannot be used as a file name or is too long.
    #[error("invalid guest name `{0}`")]
    BadName(String),
    /// The XML is empty or larger than [`MAX_XML_LEN`].
    #[error("definition of `{0}` empty or too large ({1} bytes)")]
    BadSize(String, usize),
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

/// Whether `name` is acceptable as a guest name and a file name (the protocol's rule:
/// at most [`MAX_NAME_LEN`] bytes, not starting with `.`, no `/` or control characters).
pub fn valid_name(name: &str) -> bool {
    shelfha_proto::message::guest_name(name).is_some()
}

/// The domain XML, parsed (`None` if it does not parse). No DTD: libvirt writes none, and the
/// definition policy refuses one.
fn parse(xml: &str) -> Option<roxmltree::Document<'_>> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: 100_000,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(xml, opts).ok()
}

/// The first child element `tag` of the `<domain>` root (no namespace).
fn top<'a, 'i>(doc: &'a roxmltree::Document<'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
    doc.root_element().children().find(|n| {
        n.is_element() && n.tag_name().name() == tag && n.tag_name().namespace().is_none()
    })
}

impl GuestDef {
    /// Checks the fields that come from the network.
    pub fn validate(&self) -> Result<(), DefinitionError> {
        if !valid_name(&self.name) {
            return Err(DefinitionError::BadName(self.name.clone()));
        }
        if self.xml.is_empty() || self.xml.len() > MAX_XML_LEN {
            return Err(DefinitionError::BadSize(self.name.clone(), self.xml.len()));
        }
        Ok(())
    }

    /// SHA-256 of the XML (the protocol's definition digest).
    pub fn digest(&self) -> [u8; 32] {
        shelfha_proto::definition_digest(self.xml.as_bytes())
    }

    /// The domain's `<uuid>`, if the XML has one.
    pub fn uuid(&self) -> Option<String> {
        let doc = parse(&self.xml)?;
        let text = top(&doc, "uuid")?.text()?.trim();
        Some(text.to_owned())
    }

    /// The domain's `<memory>` in KiB (libvirt writes `unit='KiB'`; other units are converted).
    /// `None` if absent or unparsable: such a guest is started without a memory check.
    pub fn memory_kib(&self) -> Option<u64> {
        let doc = parse(&self.xml)?;
        let memory = top(&doc, "memory")?;
        let n: u64 = memory.text()?.trim().parse().ok()?;
        let unit = memory.attribute("unit").unwrap_or("KiB");
        let kib = match unit {
            "b" | "bytes" => n / 1024,
            "k" | "KiB" => n,
            "KB" => n.checked_mul(1000)? / 1024,
            "M" | "MiB" => n.checked_mul(1024)?,
            "MB" => n.checked_mul(1_000_000)? / 1024,
            "G" | "GiB" => n.checked_mul(1024 * 1024)?,
            "GB" => n.checked_mul(1_000_000_000)? / 1024,
            _ => return None,
        };
        Some(kib)
    }
}

/// One guest definition as the set digest sees it: its name and the SHA-256 of its XML.
pub trait Held {
    /// Guest name.
    fn held_name(&self) -> &str;
    /// Definition digest (SHA-256 of the XML bytes).
    fn held_digest(&self) -> [u8; 32];
}

impl Held for GuestDef {
    fn held_name(&self) -> &str {
        &self.name
    }
    fn held_digest(&self) -> [u8; 32] {
        self.digest()
    }
}

/// A guest held for the partner: a stored definition, or one the policy refused (only its
/// digest and the refusal are kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldDefinition {
    /// Guest name, as pushed.
    pub name: String,
    /// Digest of the pushed XML.
    pub digest: [u8; 32],
    /// Why it was refused; `None` for a stored definition.
    pub refused: Option<Refusal>,
}

impl Held for HeldDefinition {
    fn held_name(&self) -> &str {
        &self.name
    }
    fn held_digest(&self) -> [u8; 32] {
        self.digest
    }
}

/// Digest of a set of definitions, independent of their order: the protocol's
/// [`shelfha_proto::guest_set_digest`] over `(name, definition_digest(xml))`.
pub fn digest<'a, T: Held + 'a>(defs: impl IntoIterator<Item = &'a T>) -> [u8; 32] {
    let mut entries: Vec<(&str, [u8; 32])> = defs
        .into_iter()
        .map(|d| (d.held_name(), d.held_digest()))
        .collect();
    shelfha_proto::guest_set_digest(&mut entries)
}

/// The partner's definitions, in memory and under `<state>/partner/`, and the pushes the
/// policy refused (in memory only).
#[derive(Debug)]
pub struct PartnerStore {
    dir: PathBuf,
    defs: BTreeMap<String, GuestDef>,
    refused: BTreeMap<String, ([u8; 32], Refusal)>,
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
            if path.extension().and_then(|e| e.to_str()) != Some("xml") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
                continue;
            };
            match std::fs::read_to_string(&path) {
                Ok(xml) => {
                    let d = GuestDef { name, xml };
                    match d.validate() {
                        Ok(()) => {
                            defs.insert(d.name.clone(), d);
                        }
                        Err(e) => log::warn!("{}: ignoring definition: {e}", path.display()),
                    }
                }
                Err(e) => log::warn!("{}: ignoring unreadable definition: {e}", path.display()),
            }
        }
        Ok(PartnerStore {
            dir,
            defs,
            refused: BTreeMap::new(),
        })
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.xml"))
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
        write_atomic(&path, def.xml.as_bytes())
            .map_err(|source| DefinitionError::Io { path, source })?;
        self.refused.remove(&def.name);
        self.defs.insert(def.name.clone(), def);
        Ok(true)
    }

    /// Records that the policy refused the definition of `name` whose XML has `digest`: a
    /// stored copy of that guest is removed (it is no longer the owner's definition) and the
    /// refusal is held instead. Nothing is recorded for an invalid name, nor for a new name
    /// once [`MAX_PARTNER_GUESTS`] guests are held. Returns whether anything changed.
    pub fn refuse(
        &mut self,
        name: &str,
        digest: [u8; 32],
        refusal: Refusal,
    ) -> Result<bool, DefinitionError> {
        if !valid_name(name) {
            return Ok(false);
        }
        let known = self.defs.contains_key(name) || self.refused.contains_key(name);
        if !known && self.defs.len() + self.refused.len() >= MAX_PARTNER_GUESTS {
            return Err(DefinitionError::Full(name.to_owned()));
        }
        let removed = self.defs.contains_key(name);
        if removed {
            let path = self.path_of(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(DefinitionError::Io { path, source }),
            }
            self.defs.remove(name);
        }
        let entry = (digest, refusal);
        let changed = self.refused.get(name) != Some(&entry);
        self.refused.insert(name.to_owned(), entry);
        Ok(removed || changed)
    }

    /// The refused pushes held, by name.
    pub fn refusals(&self) -> impl Iterator<Item = (&str, &Refusal)> {
        self.refused.iter().map(|(n, (_, r))| (n.as_str(), r))
    }

    /// Everything held for the partner: stored definitions and refused pushes, by name.
    pub fn held(&self) -> Vec<HeldDefinition> {
        let mut all: Vec<HeldDefinition> = self
            .defs
            .values()
            .map(|d| HeldDefinition {
                name: d.name.clone(),
                digest: d.digest(),
                refused: None,
            })
            .chain(self.refused.iter().map(|(n, (digest, r))| HeldDefinition {
                name: n.clone(),
                digest: *digest,
                refused: Some(r.clone()),
            }))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Removes every definition and refusal whose name is not in `keep`; returns the removed
    /// definitions' names.
    pub fn retain(&mut self, keep: &[&str]) -> Result<Vec<String>, DefinitionError> {
        self.refused.retain(|n, _| keep.contains(&n.as_str()));
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

    /// Digest of what is held (stored definitions and refused pushes), comparable with the
    /// owner's [`digest`] of the guests it pushes.
    pub fn digest(&self) -> [u8; 32] {
        digest(&self.held())
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

    fn def(name: &str, memory_kib: u64) -> GuestDef {
        GuestDef {
            name: name.into(),
            xml: format!("<domain type='test'><name>{name}</name><memory unit='KiB'>{memory_kib}</memory></domain>"),
        }
    }

    #[test]
    fn test_digest_order_independent_and_sensitive() {
        let (a, b) = (def("a", 10), def("b", 20));
        assert_eq!(digest([&a, &b]), digest([&b, &a]));
        let mut b2 = b.clone();
        b2.xml.push(' ');
        assert_ne!(digest([&a, &b]), digest([&a, &b2]));
        assert_ne!(digest([&a]), digest([&a, &b]));
        // Known answer: the definition digest is SHA-256 of the XML (of "" here).
        let empty = GuestDef {
            name: "a".into(),
            xml: String::new(),
        };
        assert_eq!(empty.digest()[..4], [0xe3, 0xb0, 0xc4, 0x42]);
    }

    #[test]
    fn test_xml_fields() {
        let xml = "<domain type='qemu'>\n  <name>db</name>\n  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>\n  \
                   <memoryBacking><hugepages/></memoryBacking>\n  <memory unit='MiB'>128</memory>\n</domain>";
        let d = GuestDef {
            name: "db".into(),
            xml: xml.into(),
        };
        assert_eq!(
            d.uuid().as_deref(),
            Some("4dea22b3-1d52-d8f3-2516-782e98ab3fa0")
        );
        // A comment is not an element; `<memoryBacking>` is not `<memory>`.
        let commented = GuestDef {
            name: "db".into(),
            xml: "<domain><!-- <memory>1</memory> --><memoryBacking/>\
                  <memory unit='MiB'>128</memory></domain>"
                .into(),
        };
        assert_eq!(commented.memory_kib(), Some(128 * 1024));
        assert_eq!(d.memory_kib(), Some(128 * 1024));
        assert_eq!(def("x", 2048).memory_kib(), Some(2048));
        let bare = GuestDef {
            name: "x".into(),
            xml: "<domain><memory>512</memory></domain>".into(),
        };
        assert_eq!(bare.memory_kib(), Some(512));
        let bad = GuestDef {
            name: "x".into(),
            xml: "<domain><memory unit='parsec'>5</memory></domain>".into(),
        };
        assert_eq!(bad.memory_kib(), None);
        assert_eq!(bad.uuid(), None);
        let huge = GuestDef {
            name: "x".into(),
            xml: format!("<domain><memory unit='KB'>{}</memory></domain>", u64::MAX),
        };
        assert_eq!(huge.memory_kib(), None, "overflow is not a panic");
    }

    #[test]
    fn test_store_persists_and_digest_repairs() {
        let dir = TempDir::new("defs");
        let owner = vec![def("web", 1024), def("db", 2048)];
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
        assert_eq!(
            std::fs::read_to_string(dir.path().join("partner/db.xml")).unwrap(),
            owner[1].xml
        );
        // Drift: a file damaged on disk is loaded as it is, the digest no longer matches,
        // and re-pushing the owner's definition repairs it.
        std::fs::write(
            dir.path().join("partner/web.xml"),
            b"<domain><name>web</name",
        )
        .unwrap();
        let mut s = PartnerStore::open(dir.path()).unwrap();
        assert_eq!(s.len(), 2);
        assert_ne!(s.digest(), digest(&owner));
        for d in &owner {
            s.put(d.clone()).unwrap();
        }
        assert_eq!(s.digest(), digest(&owner));
        let s = PartnerStore::open(dir.path()).unwrap();
        assert_eq!(s.digest(), digest(&owner));
        assert_eq!(s.get("db"), Some(&owner[1]));
        let names: Vec<_> = std::fs::read_dir(dir.path().join("partner"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
    }

    #[test]
    fn test_retain_removes_files() {
        let dir = TempDir::new("retain");
        let mut s = PartnerStore::open(dir.path()).unwrap();
        s.put(def("a", 1)).unwrap();
        s.put(def("b", 1)).unwrap();
        assert_eq!(s.retain(&["b"]).unwrap(), vec!["a".to_string()]);
        assert!(!dir.path().join("partner/a.xml").exists());
        assert_eq!(PartnerStore::open(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn test_refused_push_held_by_digest_not_stored() {
        use shelfha_proto::UnprotectedReason;
        let dir = TempDir::new("refused");
        let mut s = PartnerStore::open(dir.path()).unwrap();
        let (web, db) = (def("web", 1), def("db", 1));
        s.put(web.clone()).unwrap();
        s.put(db.clone()).unwrap();
        // The owner's db changes into something the policy refuses.
        let bad = GuestDef {
            name: "db".into(),
            xml: "<domain><name>db</name><devices><hostdev/></devices></domain>".into(),
        };
        let why = Refusal {
            reason: UnprotectedReason::HostDevice,
            detail: "<hostdev>".into(),
        };
        assert!(s.refuse("db", bad.digest(), why.clone()).unwrap());
        assert!(
            !s.refuse("db", bad.digest(), why.clone()).unwrap(),
            "same refusal again: no change"
        );
        assert!(s.get("db").is_none(), "the older copy is not kept");
        assert!(!dir.path().join("partner/db.xml").exists());
        assert_eq!(s.len(), 1);
        // What is held matches the owner's digest over both guests.
        assert_eq!(s.digest(), digest([&web, &bad]));
        let held = s.held();
        assert_eq!(held.len(), 2);
        assert_eq!(held[0].refused, Some(why.clone()));
        assert_eq!(s.refusals().count(), 1);
        // Not persisted: a restart forgets the refusal (one request fetches it again).
        assert_eq!(
            PartnerStore::open(dir.path()).unwrap().digest(),
            digest([&web])
        );
        // An acceptable push replaces the refusal.
        s.put(db.clone()).unwrap();
        assert_eq!(s.refusals().count(), 0);
        assert_eq!(s.digest(), digest([&web, &db]));
        // Retain forgets refusals of guests the owner no longer has.
        s.refuse("x", bad.digest(), why.clone()).unwrap();
        s.retain(&["web", "db"]).unwrap();
        assert_eq!(s.refusals().count(), 0);
        // Invalid names are not recorded.
        assert!(!s.refuse("../x", bad.digest(), why).unwrap());
        assert_eq!(s.held().len(), 2);
    }

    #[test]
    fn test_bad_definitions_refused() {
        let dir = TempDir::new("names");
        let mut s = PartnerStore::open(dir.path()).unwrap();
        for bad in ["", "../x", "a/b", ".hidden", "a\nb", &"x".repeat(65)] {
            assert!(
                matches!(s.put(def(bad, 1)), Err(DefinitionError::BadName(_))),
                "{bad}"
            );
        }
        let big = GuestDef {
            name: "big".into(),
            xml: "x".repeat(MAX_XML_LEN + 1),
        };
        assert!(matches!(s.put(big), Err(DefinitionError::BadSize(..))));
        let empty = GuestDef {
            name: "e".into(),
            xml: String::new(),
        };
        assert!(matches!(s.put(empty), Err(DefinitionError::BadSize(..))));
        assert!(s.is_empty());
    }
}
