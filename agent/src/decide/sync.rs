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
//!
//! Guests that cannot be pushed (a name that is not a protocol guest name, an XML larger than
//! the definition chunks carry) are not protected: the owner leaves them out of what it
//! pushes, of its heartbeat's count and of its digest, and reports them once per change
//! ([`Push::unprotected`]). A push the partner's policy refuses is held there by its digest
//! (see [`crate::store::definitions::PartnerStore::refuse`]), so both digests still agree:
//! neither kind of guest makes the keeper request the definitions again every second.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use shelfha_proto::UnprotectedReason;

use crate::policy::check_pushable;
use crate::store::definitions::{digest, GuestDef, Held};

/// Minimum time between two definition requests while the digests differ.
pub const REQUEST_INTERVAL: Duration = Duration::from_secs(1);

/// What the owner must send to its partner.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Push {
    /// Definitions to push (new or changed).
    pub changed: Vec<GuestDef>,
    /// Guests to remove from the partner's store.
    pub removed: Vec<String>,
    /// Local protected guests that cannot be pushed, new or with a new reason since the last
    /// update (each reported once per change: `GuestUnprotected` with this blade's slot).
    pub unprotected: Vec<Unpushable>,
}

/// A local protected guest that cannot be pushed to the partner, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpushable {
    /// The guest's name (possibly not a valid protocol guest name).
    pub name: String,
    /// [`UnprotectedReason::BadName`] or [`UnprotectedReason::TooLarge`] (or `BadXml` for
    /// an empty XML).
    pub reason: UnprotectedReason,
    /// Detail for the log and the message's text.
    pub detail: String,
}

impl Push {
    /// Whether there is nothing to send to the partner ([`Push::unprotected`] aside).
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Owner side: what was last handed to the partner.
#[derive(Debug, Default)]
pub struct Outbox {
    current: BTreeMap<String, GuestDef>,
    unpushable: BTreeMap<String, Unpushable>,
    known: bool,
}

impl Outbox {
    /// Takes the current protected set; returns what to send. Guests that cannot be pushed
    /// are left out (removed from the partner if pushed before) and listed in
    /// [`Push::unprotected`] when new or changed.
    pub fn update(&mut self, defs: &[GuestDef]) -> Push {
        let mut push = Push::default();
        let mut pushable = Vec::new();
        let mut unpushable = BTreeMap::new();
        for d in defs {
            match check_pushable(&d.name, &d.xml) {
                Ok(()) => pushable.push(d),
                Err(r) => {
                    let u = Unpushable {
                        name: d.name.clone(),
                        reason: r.reason,
                        detail: r.detail,
                    };
                    if self.unpushable.get(&d.name) != Some(&u) {
                        push.unprotected.push(u.clone());
                    }
                    unpushable.insert(d.name.clone(), u);
                }
            }
        }
        for d in &pushable {
            if self.current.get(&d.name) != Some(*d) {
                push.changed.push((*d).clone());
            }
        }
        for name in self.current.keys() {
            if !pushable.iter().any(|d| &d.name == name) {
                push.removed.push(name.clone());
            }
        }
        self.current = pushable
            .into_iter()
            .map(|d| (d.name.clone(), d.clone()))
            .collect();
        self.unpushable = unpushable;
        self.known = true;
        push
    }

    /// Every local protected guest that cannot be pushed now, by name.
    pub fn unpushable(&self) -> Vec<Unpushable> {
        self.unpushable.values().cloned().collect()
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

    /// Count and digest of the pushed set (for heartbeats): guests that cannot be pushed are
    /// not counted.
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
    /// Notes a definition received from the partner (after storing it, or after the policy
    /// refused it: it was pushed all the same).
    pub fn received(&mut self, name: &str) {
        self.refreshed.insert(name.to_owned());
    }

    /// Decides after a partner heartbeat announcing `theirs`, given what is held: the stored
    /// definitions and, so that a refused push does not look missing, the refused ones with
    /// their digests (`Agent::partner_held`). A refused push counts as received.
    pub fn on_heartbeat<T: Held>(
        &mut self,
        theirs: &[u8; 32],
        stored: &[T],
        now: Instant,
    ) -> KeeperAction {
        if &digest(stored) == theirs {
            self.requested_at = None;
            self.refreshed.clear();
            return KeeperAction::InSync;
        }
        if self.requested_at.is_some() {
            let fresh: Vec<&T> = stored
                .iter()
                .filter(|d| self.refreshed.contains(d.held_name()))
                .collect();
            if &digest(fresh.iter().copied()) == theirs {
                let stale = stored
                    .iter()
                    .filter(|d| !self.refreshed.contains(d.held_name()))
                    .map(|d| d.held_name().to_owned())
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

/// The definition exchange between an owner and its partner's agent, end to end with the
/// policy: what is pushed, refused, counted and requested.
#[cfg(test)]
mod exchange_test {
    use std::sync::Arc;

    use shelfha_proto::edge::definitions::{split, Assembler};
    use shelfha_proto::UnprotectedReason;

    use super::*;
    use crate::config::Config;
    use crate::execute::{Agent, AgentError};
    use crate::hypervisor::fake::FakeHypervisor;
    use crate::store::definitions::MAX_XML_LEN;
    use crate::testutil::TempDir;

    fn def(name: &str, extra: &str) -> GuestDef {
        GuestDef {
            name: name.into(),
            xml: format!(
                "<domain type='test'><name>{name}</name><memory unit='KiB'>1024</memory>\
                 <devices>{extra}</devices></domain>"
            ),
        }
    }

    fn partner(dir: &TempDir) -> Agent<FakeHypervisor> {
        let text = format!(
            "slot = 4\nshmc = \"127.0.0.1:7300\"\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n\
             [partner]\nslot = 3\naddress = \"127.0.0.1:7302\"\n",
            dir.path().display()
        );
        let cfg = Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        Agent::new(Arc::new(FakeHypervisor::new(1 << 20)), cfg).unwrap()
    }

    /// Pushes `defs` as the daemon does (chunks, reassembly, store); returns the refusals.
    fn deliver(
        defs: &[GuestDef],
        to: &Agent<FakeHypervisor>,
        keeper: &mut Keeper,
    ) -> Vec<(String, UnprotectedReason)> {
        let mut asm = Assembler::new();
        let mut refused = Vec::new();
        for d in defs {
            for chunk in split(&d.name, d.xml.as_bytes()).unwrap() {
                if let Some((name, xml)) = asm.add(&chunk).unwrap() {
                    match to.store_pushed_definition(name.as_str(), xml) {
                        Ok(_) => keeper.received(name.as_str()),
                        Err(AgentError::Refused { name, refusal }) => {
                            keeper.received(&name);
                            refused.push((name, refusal.reason));
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }
        refused
    }

    /// Heartbeats once a second for `secs` seconds; returns how many requests the keeper made.
    fn run(
        owner: &Outbox,
        to: &Agent<FakeHypervisor>,
        keeper: &mut Keeper,
        t0: Instant,
        secs: u64,
    ) -> usize {
        let mut requests = 0;
        for s in 0..secs {
            let (_, theirs) = owner.summary();
            let now = t0 + Duration::from_secs(s);
            match keeper.on_heartbeat(&theirs, &to.partner_held(), now) {
                KeeperAction::Request => {
                    requests += 1;
                    deliver(&owner.resend(None), to, keeper);
                }
                KeeperAction::Drop(stale) => {
                    let held = to.partner_held();
                    let keep: Vec<&str> = held
                        .iter()
                        .map(|h| h.name.as_str())
                        .filter(|n| !stale.iter().any(|x| x == n))
                        .collect();
                    to.retain_partner_definitions(&keep).unwrap();
                }
                KeeperAction::InSync | KeeperAction::Wait => {}
            }
        }
        requests
    }

    #[test]
    fn test_unpushable_guests_not_counted_reported_once_and_never_requested() {
        let long = "n".repeat(65);
        let big = def("big", &format!("<!--{}-->", "x".repeat(MAX_XML_LEN)));
        let local = vec![def("a", ""), def(&long, ""), big.clone()];
        let mut owner = Outbox::default();
        let push = owner.update(&local);
        assert_eq!(push.changed, vec![def("a", "")], "only the pushable guest");
        let reasons: Vec<_> = push
            .unprotected
            .iter()
            .map(|u| (u.name.as_str(), u.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                (long.as_str(), UnprotectedReason::BadName),
                ("big", UnprotectedReason::TooLarge)
            ]
        );
        assert_eq!(owner.summary(), (1, digest([&def("a", "")])));
        assert_eq!(owner.unpushable().len(), 2);
        // Once per change: the next listing reports nothing new.
        let again = owner.update(&local);
        assert!(
            again.is_empty() && again.unprotected.is_empty(),
            "{again:?}"
        );
        // `a` grows too large: removed from the partner, reported.
        let a_big = def("a", &format!("<!--{}-->", "y".repeat(MAX_XML_LEN)));
        let p = owner.update(&[a_big, def(&long, ""), big]);
        assert_eq!(p.removed, vec!["a".to_string()]);
        assert_eq!(p.unprotected.len(), 1);
        assert_eq!(p.unprotected[0].name, "a");
        assert_eq!(owner.summary().0, 0);
        assert!(owner.resend(None).is_empty());

        // The partner compares what it holds with the owner's digest: in sync, no requests.
        let dir = TempDir::new("unpushable");
        let to = partner(&dir);
        let mut keeper = Keeper::default();
        let mut owner = Outbox::default();
        let push = owner.update(&local);
        deliver(&push.changed, &to, &mut keeper);
        assert_eq!(run(&owner, &to, &mut keeper, Instant::now(), 10), 0);
        assert_eq!(to.partner_count(), 1);
    }

    #[test]
    fn test_refused_definition_held_by_digest_no_request_loop() {
        let dir = TempDir::new("refused-sync");
        let to = partner(&dir);
        let mut keeper = Keeper::default();
        let mut owner = Outbox::default();
        let hostdev = "<hostdev mode='subsystem' type='pci'/>";
        let local = vec![
            def("a", ""),
            def("dev", hostdev),
            def(
                "disk",
                "<disk type='file'><source file='/etc/shadow'/></disk>",
            ),
        ];
        let push = owner.update(&local);
        assert_eq!(
            push.changed.len(),
            3,
            "the owner pushes; the partner decides"
        );
        let refused = deliver(&push.changed, &to, &mut keeper);
        assert_eq!(
            refused,
            [
                ("dev".to_string(), UnprotectedReason::HostDevice),
                ("disk".to_string(), UnprotectedReason::DiskPath)
            ]
        );
        assert_eq!(to.partner_count(), 1, "refused definitions are not stored");
        assert_eq!(to.partner_refusals().len(), 2);
        let t0 = Instant::now();
        assert_eq!(run(&owner, &to, &mut keeper, t0, 10), 0, "no request loop");

        // A restarted partner forgot its refusals: one request, refused again, then quiet.
        drop(to);
        let to = partner(&dir);
        let mut keeper = Keeper::default();
        assert_eq!(run(&owner, &to, &mut keeper, t0, 10), 1);
        assert_eq!(to.partner_refusals().len(), 2);

        // The owner fixes `dev`: stored, no longer refused; still in sync.
        let push = owner.update(&[local[0].clone(), def("dev", ""), local[2].clone()]);
        assert_eq!(push.changed, vec![def("dev", "")]);
        assert!(deliver(&push.changed, &to, &mut keeper).is_empty());
        assert_eq!(to.partner_count(), 2);
        assert_eq!(
            run(&owner, &to, &mut keeper, t0 + Duration::from_secs(20), 5),
            0
        );

        // The owner stops protecting `disk`: the refusal is dropped with it.
        owner.update(&[local[0].clone(), def("dev", "")]);
        let t1 = t0 + Duration::from_secs(40);
        assert_eq!(
            run(&owner, &to, &mut keeper, t1, 5),
            1,
            "stale entry: one request"
        );
        assert!(to.partner_refusals().is_empty());
        assert_eq!(to.partner_digest(), owner.summary().1);
    }

    #[test]
    fn test_non_utf8_push_refused_and_held() {
        let dir = TempDir::new("utf8");
        let to = partner(&dir);
        let mut xml = b"<domain><name>a</name><description>".to_vec();
        xml.extend_from_slice(&[0xc3, 0x28]);
        xml.extend_from_slice(b"</description></domain>");
        let Err(AgentError::Refused { name, refusal }) =
            to.store_pushed_definition("a", xml.clone())
        else {
            panic!("accepted")
        };
        assert_eq!(
            (name.as_str(), refusal.reason),
            ("a", UnprotectedReason::BadXml)
        );
        assert_eq!(to.partner_count(), 0);
        let mut entries = vec![("a", shelfha_proto::definition_digest(&xml))];
        assert_eq!(
            to.partner_digest(),
            shelfha_proto::guest_set_digest(&mut entries)
        );
    }
}
