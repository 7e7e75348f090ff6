//! The definitions exchanged with the partner: this blade's protected guests (sent), and the
//! partner's (stored here after the definition policy, refusals held by digest).

use std::time::Instant;

use super::{lock, Agent, AgentError};
use crate::hypervisor::Hypervisor;
use crate::store::definitions::GuestDef;

impl<H: Hypervisor + 'static> Agent<H> {
    // ----- definitions exchanged with the partner -----

    /// The definitions of this blade's protected guests (sent to the partner), sorted by name.
    /// Also refreshes the protected set (stored in the state directory) used by FenceSelf and
    /// DestroyGuest when libvirt does not answer.
    pub fn local_definitions(&self) -> Result<Vec<GuestDef>, AgentError> {
        let at = Instant::now();
        let all = self.hv.list_guests()?;
        self.note_listing(&all, at);
        let mut defs: Vec<GuestDef> = self
            .protected_of(&all)
            .into_iter()
            .filter(|g| g.persistent)
            .map(|g| GuestDef {
                name: g.name.clone(),
                xml: g.xml.clone(),
            })
            .collect();
        defs.sort_by(|a, b| a.name.cmp(&b.name));
        self.clear_autostart(&defs);
        Ok(defs)
    }

    /// Clears libvirt autostart of each protected guest once per agent process (the first
    /// time it is seen protected): a fenced blade that reboots must not start a guest its
    /// partner took over. A failure is logged and tried again at the next listing.
    fn clear_autostart(&self, defs: &[GuestDef]) {
        for def in defs {
            if lock(&self.autostart_cleared).contains(&def.name) {
                continue;
            }
            match self.hv.set_autostart(&def.name, false) {
                Ok(()) => {
                    log::debug!("`{}`: libvirt autostart cleared (protected)", def.name);
                    lock(&self.autostart_cleared).insert(def.name.clone());
                }
                Err(e) => log::warn!(
                    "`{}`: cannot clear libvirt autostart of a protected guest: {e}",
                    def.name
                ),
            }
        }
    }

    /// Stores one definition pushed by the partner; returns whether it changed. A definition
    /// the policy refuses ([`crate::policy::check_definition`]) is not stored, a stored older
    /// copy of that guest is removed, the refusal is held by its digest (see
    /// [`Agent::partner_held`]) and returned as [`AgentError::Refused`].
    pub fn store_partner_definition(&self, def: GuestDef) -> Result<bool, AgentError> {
        if let Err(refusal) = crate::policy::check_definition(&self.cfg, &def.name, &def.xml) {
            return Err(self.refuse_partner_definition(&def.name, def.digest(), refusal));
        }
        let name = def.name.clone();
        // A guest listed for warm standby is checked as its definition arrives.
        self.standby_allowed(&def);
        let changed = lock(&self.partner).put(def)?;
        if changed {
            log::info!("stored partner definition of `{name}`");
        }
        Ok(changed)
    }

    /// [`Agent::store_partner_definition`] for the raw bytes of a reassembled push: XML that
    /// is not UTF-8 is refused ([`shelfha_proto::UnprotectedReason::BadXml`]) and held by the
    /// digest of its bytes like any other refusal.
    pub fn store_pushed_definition(&self, name: &str, xml: Vec<u8>) -> Result<bool, AgentError> {
        match String::from_utf8(xml) {
            Ok(xml) => self.store_partner_definition(GuestDef {
                name: name.to_owned(),
                xml,
            }),
            Err(e) => {
                let digest = shelfha_proto::definition_digest(e.as_bytes());
                let refusal = crate::policy::check_bytes(&self.cfg, name, e.as_bytes())
                    .err()
                    .unwrap_or_else(|| crate::policy::Refusal {
                        reason: shelfha_proto::UnprotectedReason::BadXml,
                        detail: "not UTF-8".into(),
                    });
                Err(self.refuse_partner_definition(name, digest, refusal))
            }
        }
    }

    /// Holds a refusal in the partner store (removing a stored copy), logs it, and returns the
    /// error to report.
    fn refuse_partner_definition(
        &self,
        name: &str,
        digest: [u8; 32],
        refusal: crate::policy::Refusal,
    ) -> AgentError {
        log::error!(
            "partner definition of `{name}` refused: {refusal}; the guest is not protected here"
        );
        match lock(&self.partner).refuse(name, digest, refusal.clone()) {
            Ok(true) => log::info!("partner guest `{name}`: refusal recorded"),
            Ok(false) => {}
            Err(e) => log::error!("partner definitions: {e}"),
        }
        AgentError::Refused {
            name: name.to_owned(),
            refusal,
        }
    }

    /// Everything held for the partner, by name: its stored definitions and the pushes the
    /// policy refused, each with its digest. This is what the partner's heartbeat digest is
    /// compared with ([`crate::decide::sync::Keeper::on_heartbeat`]).
    pub fn partner_held(&self) -> Vec<crate::store::definitions::HeldDefinition> {
        lock(&self.partner).held()
    }

    /// The partner pushes refused by the policy and held here, with the refusal.
    pub fn partner_refusals(&self) -> Vec<(String, crate::policy::Refusal)> {
        lock(&self.partner)
            .refusals()
            .map(|(n, r)| (n.to_owned(), r.clone()))
            .collect()
    }

    /// Checks the stored partner definitions against the current policy (the configuration
    /// may have changed since they were stored): each one refused is removed and held as a
    /// refusal. Returns the refusals, to report. Call at start-up.
    pub fn recheck_partner_definitions(&self) -> Vec<(String, crate::policy::Refusal)> {
        let defs: Vec<GuestDef> = lock(&self.partner).all().cloned().collect();
        let mut refused = Vec::new();
        for def in defs {
            if let Err(refusal) = crate::policy::check_definition(&self.cfg, &def.name, &def.xml) {
                self.refuse_partner_definition(&def.name, def.digest(), refusal.clone());
                refused.push((def.name, refusal));
            }
        }
        refused
    }

    /// Drops stored partner definitions not in `names` (the partner's complete list).
    pub fn retain_partner_definitions(&self, names: &[&str]) -> Result<Vec<String>, AgentError> {
        let gone = lock(&self.partner).retain(names)?;
        for n in &gone {
            log::info!("dropped partner definition of `{n}` (no longer protected there)");
        }
        Ok(gone)
    }

    /// The partner definitions stored here, by name.
    pub fn partner_definitions(&self) -> Vec<GuestDef> {
        lock(&self.partner).all().cloned().collect()
    }

    /// Digest of the partner definitions stored here.
    pub fn partner_digest(&self) -> [u8; 32] {
        lock(&self.partner).digest()
    }

    /// Number of partner definitions stored here.
    pub fn partner_count(&self) -> usize {
        lock(&self.partner).len()
    }
}
