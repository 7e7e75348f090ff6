//! Keeping the partner's copy of our definitions in step, and ours of theirs (pure, clock
//! passed in).
//!
//! Owner side ([`Outbox`]): after each listing of the protected guests, the definitions that
//! changed are pushed and the ones that disappeared are removed; on the partner's
//! `DefinitionRequest` everything is pushed again.
//!
//! Safety: a definition is only ever dropped on the partner's word. An owner that has not
//! listed its guests yet sends no heartbeat to its partner, and a heartbeat reporting an
//! unhealthy hypervisor is not used for repair, so a partner in trouble never makes us forget
//! the definitions we may soon need.
//!
//! Keeper side ([`Keeper`]): each partner heartbeat carries the digest of the partner's
//! protected set. If it differs from the digest of what we store, we request a full push
//! (again after [`REQUEST_INTERVAL`] if still different). Definitions we hold that the
//! partner no longer has cannot be pushed; once the definitions refreshed since the request
//! alone match the announced digest, the others are stale and dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::store::definitions::{digest, GuestDef};

/// Minimum time between two definition requests while the digests differ.
pub const REQUEST_INTERVAL: Duration = Duration::from_secs(1);

/// What the owner must send to its partner.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Push {
    /// Definitions to push (new or changed).
    pub changed: Vec<GuestDef>,
    /// Guests to remove from the partner's store.
    pub removed: Vec<String>,
}

impl Push {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Owner side: what was last handed to the partner.
#[derive(Debug, Default)]
pub struct Outbox {
    current: BTreeMap<String, GuestDef>,
    known: bool,
}

impl Outbox {
    /// Takes the current protected set; returns what to send.
    pub fn update(&mut self, defs: &[GuestDef]) -> Push {
        let mut push = Push::default();
        for d in defs {
            if self.current.get(&d.name) != Some(d) {
                push.changed.push(d.clone());
            }
        }
        for name in self.current.keys() {
            if !defs.iter().any(|d| &d.name == name) {
                push.removed.push(name.clone());
            }
        }
        self.current = defs.iter().map(|d| (d.name.clone(), d.clone())).collect();
        self.known = true;
        push
    }

    /// Whether the protected set has been listed at least once. Until then the summary means
    /// nothing and must not reach the partner: an empty set would make it drop our definitions.
    pub fn is_known(&self) -> bool {
        self.known
    }

    /// Everything (answer to a full request), or one guest.
    pub fn resend(&self, name: Option<&str>) -> Vec<GuestDef> {
        self.current
            .values()
            .filter(|d| name.is_none_or(|n| n == d.name))
            .cloned()
            .collect()
    }

    /// Count and digest of the current set (for heartbeats).
    pub fn summary(&self) -> (u16, [u8; 32]) {
        (
            u16::try_from(self.current.len()).unwrap_or(u16::MAX),
            digest(self.current.values()),
        )
    }
}

/// What the keeper does after a partner heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeeperAction {
    /// The stored copy matches.
    InSync,
    /// Ask the partner to push everything.
    Request,
    /// Drop these stale definitions (the rest matches).
    Drop(Vec<String>),
    /// A request is outstanding; wait.
    Wait,
}

/// Keeper side: state of the repair of the partner's definitions stored here.
#[derive(Debug, Default)]
pub struct Keeper {
    requested_at: Option<Instant>,
    refreshed: BTreeSet<String>,
}

impl Keeper {
    /// Notes a definition received from the partner (after storing it).
    pub fn received(&mut self, name: &str) {
        self.refreshed.insert(name.to_owned());
    }

    /// Decides after a partner heartbeat announcing `theirs`, given what is stored.
    pub fn on_heartbeat(
        &mut self,
        theirs: &[u8; 32],
        stored: &[GuestDef],
        now: Instant,
    ) -> KeeperAction {
        if &digest(stored) == theirs {
            self.requested_at = None;
            self.refreshed.clear();
            return KeeperAction::InSync;
        }
        if self.requested_at.is_some() {
            let fresh: Vec<&GuestDef> = stored
                .iter()
                .filter(|d| self.refreshed.contains(&d.name))
                .collect();
            if &digest(fresh.iter().copied()) == theirs {
                let stale = stored
                    .iter()
                    .filter(|d| !self.refreshed.contains(&d.name))
                    .map(|d| d.name.clone())
                    .collect();
                self.requested_at = None;
                self.refreshed.clear();
                return KeeperAction::Drop(stale);
            }
        }
        match self.requested_at {
            Some(t) if now.saturating_duration_since(t) < REQUEST_INTERVAL => KeeperAction::Wait,
            _ => {
                self.requested_at = Some(now);
                self.refreshed.clear();
                KeeperAction::Request
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn def(name: &str, v: u32) -> GuestDef {
        GuestDef {
            name: name.into(),
            xml: format!("<domain><name>{name}</name><!-- v{v} --></domain>"),
        }
    }

    #[test]
    fn test_outbox_pushes_changes_only() {
        let mut o = Outbox::default();
        assert!(!o.is_known());
        let p = o.update(&[def("a", 1), def("b", 1)]);
        assert_eq!(p.changed.len(), 2);
        assert!(o.is_known());
        assert!(o.update(&[def("a", 1), def("b", 1)]).is_empty());
        let p = o.update(&[def("a", 2)]);
        assert_eq!(p.changed, vec![def("a", 2)]);
        assert_eq!(p.removed, vec!["b".to_string()]);
        assert_eq!(o.resend(None), vec![def("a", 2)]);
        assert_eq!(o.summary(), (1, digest([&def("a", 2)])));
    }

    #[test]
    fn test_keeper_repairs_drift_and_drops_stale() {
        let t0 = Instant::now();
        let owner = [def("a", 2), def("b", 1)];
        let theirs = digest(&owner);
        let mut k = Keeper::default();
        // We hold an old `a` and a `c` the owner no longer has.
        let mut stored = vec![def("a", 1), def("b", 1), def("c", 1)];
        assert_eq!(k.on_heartbeat(&theirs, &stored, t0), KeeperAction::Request);
        assert_eq!(
            k.on_heartbeat(&theirs, &stored, t0 + Duration::from_millis(200)),
            KeeperAction::Wait
        );
        // The owner pushes everything.
        stored[0] = def("a", 2);
        k.received("a");
        k.received("b");
        assert_eq!(
            k.on_heartbeat(&theirs, &stored, t0 + Duration::from_millis(400)),
            KeeperAction::Drop(vec!["c".into()])
        );
        stored.pop();
        assert_eq!(
            k.on_heartbeat(&theirs, &stored, t0 + Duration::from_millis(600)),
            KeeperAction::InSync
        );
    }

    #[test]
    fn test_keeper_requests_again_when_push_lost() {
        let t0 = Instant::now();
        let theirs = digest([&def("a", 2)]);
        let stored = vec![def("a", 1)];
        let mut k = Keeper::default();
        assert_eq!(k.on_heartbeat(&theirs, &stored, t0), KeeperAction::Request);
        assert_eq!(
            k.on_heartbeat(&theirs, &stored, t0 + REQUEST_INTERVAL),
            KeeperAction::Request
        );
    }
}
