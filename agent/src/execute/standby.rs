//! Warm standby, carried out: which local domains are standbys of partner guests, the disk
//! check of each definition (the decision is [`crate::decide::standby`]), and keeping a paused
//! standby of every listed partner guest.

use std::collections::BTreeMap;
use std::time::Instant;

use super::{lock, ms, Agent, AgentError};
use crate::decide::standby::StandbyRefusal;
use crate::hypervisor::{GuestState, Hypervisor, HypervisorError};
use crate::order::Order;
use crate::store::definitions::GuestDef;

impl<H: Hypervisor + 'static> Agent<H> {
    // ----- warm standby -----

    /// Whether `name` is configured for warm standby.
    pub fn warm_standby_listed(&self, name: &str) -> bool {
        self.cfg
            .zero_downtime
            .warm_standby
            .iter()
            .any(|n| n == name)
    }

    /// Whether a local domain in `state` is a warm standby of a partner guest.
    pub(super) fn is_standby(&self, name: &str, state: GuestState) -> bool {
        state == GuestState::Paused
            && self.warm_standby_listed(name)
            && lock(&self.partner).get(name).is_some()
    }

    /// Checks a definition for warm standby (the definition policy, then the disks); a
    /// refusal is logged (once per guest and reason) and remembered. False when the guest is
    /// not listed.
    pub(super) fn standby_allowed(&self, def: &GuestDef) -> bool {
        if !self.warm_standby_listed(&def.name) {
            return false;
        }
        let checked = crate::policy::check_definition(&self.cfg, &def.name, &def.xml)
            .map_err(|refusal| StandbyRefusal::Policy {
                guest: def.name.clone(),
                refusal,
            })
            .and_then(|()| crate::decide::standby::check_disks(&def.name, &def.xml));
        match checked {
            Ok(()) => {
                self.guests.set_standby_refusal(&def.name, None);
                true
            }
            Err(why) => {
                if self
                    .guests
                    .set_standby_refusal(&def.name, Some(why.clone()))
                {
                    log::error!("{why}; it is restarted cold on failover instead");
                }
                false
            }
        }
    }

    /// Warm-standby guests refused so far (unsafe disks), with the reason.
    pub fn standby_refusals(&self) -> BTreeMap<String, StandbyRefusal> {
        self.guests.standby_refusals()
    }

    /// The start-time check of `[guests] warm_standby` against this blade's own guests
    /// (the partner checks the definitions it receives). Returns the refusals.
    pub fn check_warm_standby_config(&self) -> Result<Vec<StandbyRefusal>, AgentError> {
        let all = self.hv.list_guests()?;
        let mut refusals = Vec::new();
        for g in all.iter().filter(|g| self.warm_standby_listed(&g.name)) {
            let def = GuestDef {
                name: g.name.clone(),
                xml: g.xml.clone(),
            };
            if !self.standby_allowed(&def) {
                if let Some(why) = self.guests.standby_refusal(&g.name) {
                    refusals.push(why);
                }
            }
        }
        Ok(refusals)
    }

    /// Keeps a paused standby of every listed partner guest whose definition is stored here
    /// and whose disks allow it: defined from the stored XML and started paused, unless the
    /// guest is already active here (paused standby, or running after a takeover). Nothing
    /// while this blade is fenced. Returns the guests whose standby was (re)created.
    pub fn ensure_standbys(&self) -> Result<Vec<String>, AgentError> {
        if self.is_fenced() || self.cfg.zero_downtime.warm_standby.is_empty() {
            return Ok(Vec::new());
        }
        let defs: Vec<GuestDef> = lock(&self.partner)
            .all()
            .filter(|d| self.warm_standby_listed(&d.name))
            .cloned()
            .collect();
        let mut created = Vec::new();
        for def in defs {
            if !self.standby_allowed(&def)
                || lock(&self.running)
                    .values()
                    .any(|o| matches!(o, Order::RestartPartnerGuests { .. }))
            {
                continue;
            }
            match self.hv.state(&def.name) {
                Ok(s) if s.is_active() => continue,
                Ok(_) | Err(HypervisorError::NoSuchGuest(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let t0 = Instant::now();
            let Some(defined) = self.guests.call(&def.name, || self.hv.define(&def.xml)) else {
                break;
            };
            defined?;
            super::takeover::no_autostart(&*self.hv, &def.name);
            let Some(started) = self
                .guests
                .call(&def.name, || self.hv.start_paused(&def.name))
            else {
                break;
            };
            match started {
                Ok(()) => {
                    log::info!(
                        "warm standby of partner guest `{}` ready (started paused in {} ms)",
                        def.name,
                        ms(t0)
                    );
                    created.push(def.name);
                }
                Err(e) => log::warn!("warm standby of `{}` not started: {e}", def.name),
            }
        }
        Ok(created)
    }
}
