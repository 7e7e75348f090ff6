//! The agent's decisions, behind the [`Hypervisor`] trait: accepting orders (with the journal
//! for duplicates and restarts), taking over the partner's guests, self-fencing, restarting a
//! crashed guest, evacuating, and keeping the definitions exchanged with the partner.
//!
//! Order handling is split in two so the network thread never waits for libvirt:
//! [`Agent::accept`] decides at once (refuse, new, in progress, or already done) and is
//! acknowledged; [`Agent::execute`] then does the work on its own thread and streams each
//! guest's outcome.
//!
//! Planned evacuation (extraction) sequence: the ShMC sends `Evacuate { to_slot }` to the blade
//! being extracted. With `partner.libvirt_uri` configured (and `to_slot` the partner), its agent
//! live-migrates the running protected guests there one at a time (peer to peer, persistent
//! there, undefined here) and reports each. Without it, the agent shuts them down (destroying
//! those still running at `evacuate_timeout`) and reports each one stopped; the ShMC, treating
//! that report as the blade's fence, then orders the partner to `RestartPartnerGuests`. Either
//! way a guest never runs on both blades: the partner starts nothing before it is reported
//! stopped here, and a migration hands the guest over inside libvirt.

pub mod fence;
pub mod standby;
pub mod sync;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::hypervisor::{GuestInfo, GuestState, Hypervisor, HypervisorError};
use crate::order::{FenceReport, GuestOutcome, GuestResult, Order, OrderResult, Refusal};
use crate::store::definitions::{DefinitionError, GuestDef, PartnerStore};
use crate::store::journal::{Begin, Journal, JournalError, TakenOver};

/// How long a directly killed QEMU gets to disappear before the fence counts it failed.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// Poll interval while waiting for a graceful shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// The decision of [`Agent::accept`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    /// Refused; nothing will be done. Not journaled: the same order with its precondition
    /// met later is a new decision.
    Refused(Refusal),
    /// Accepted (or resumed after an agent restart): call [`Agent::execute`].
    Execute,
    /// Being executed right now: acknowledge only.
    InProgress,
    /// Done before: acknowledge and repeat these outcomes and result; do nothing.
    Done {
        /// Per-guest outcomes recorded.
        outcomes: Vec<GuestOutcome>,
        /// Recorded result.
        result: OrderResult,
    },
}

/// Errors of the agent core.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The partner store could not be read or written.
    #[error(transparent)]
    Definitions(#[from] DefinitionError),
    /// A hypervisor call failed.
    #[error(transparent)]
    Hypervisor(#[from] HypervisorError),
    /// The definition policy refused a partner definition (see [`crate::policy`]); it was
    /// not stored. Report it (`GuestUnprotected`, slot = the partner's).
    #[error("partner definition of `{name}` refused: {refusal}")]
    Refused {
        /// Name the definition was pushed under.
        name: String,
        /// Why.
        refusal: crate::policy::Refusal,
    },
}

/// The agent core. Shared between threads (`Arc<Agent<H>>`).
pub struct Agent<H: Hypervisor> {
    hv: Arc<H>,
    cfg: Config,
    journal: Mutex<Journal>,
    partner: Mutex<PartnerStore>,
    running: Mutex<HashSet<String>>,
    fenced: AtomicBool,
    /// FenceSelf orders an earlier process accepted and did not finish (journal keys).
    inherited_fences: Mutex<HashSet<String>>,
    protected: Mutex<Vec<String>>,
    stopping: Mutex<HashSet<String>>,
    /// Warm-standby guests refused (unsafe disks), with the reason; logged once each.
    standby_refused: Mutex<BTreeMap<String, String>>,
}

impl<H: Hypervisor> std::fmt::Debug for Agent<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("slot", &self.cfg.slot)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ms(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_millis()).unwrap_or(u32::MAX)
}

impl<H: Hypervisor + 'static> Agent<H> {
    /// Opens the journal and partner store under the configured state directory.
    pub fn new(hv: Arc<H>, cfg: Config) -> Result<Agent<H>, AgentError> {
        let journal = Journal::open(&cfg.state_dir)?;
        let partner = PartnerStore::open(&cfg.state_dir)?;
        let taken = journal.taken_over().len();
        let inherited_fences = journal
            .unfinished()
            .into_iter()
            .filter(|r| matches!(r.order, Order::FenceSelf { .. }))
            .map(|r| r.order.key())
            .collect();
        log::info!(
            "state {}: {} partner definitions, {} guests taken over, {} unfinished orders",
            cfg.state_dir.display(),
            partner.len(),
            taken,
            journal.unfinished().len()
        );
        Ok(Agent {
            hv,
            cfg,
            journal: Mutex::new(journal),
            partner: Mutex::new(partner),
            running: Mutex::new(HashSet::new()),
            fenced: AtomicBool::new(false),
            inherited_fences: Mutex::new(inherited_fences),
            protected: Mutex::new(Vec::new()),
            stopping: Mutex::new(HashSet::new()),
            standby_refused: Mutex::new(BTreeMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The hypervisor.
    pub fn hypervisor(&self) -> &Arc<H> {
        &self.hv
    }

    /// Whether this blade has fenced itself (it then starts nothing and reports no crashes).
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    /// Orders accepted before an agent restart and not finished; the caller executes them again.
    pub fn interrupted_orders(&self) -> Vec<Order> {
        lock(&self.journal)
            .unfinished()
            .into_iter()
            .map(|r| r.order)
            .collect()
    }

    /// Guests taken over from the partner (name, record).
    pub fn taken_over(&self) -> Vec<(String, TakenOver)> {
        lock(&self.journal)
            .taken_over()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Decides what to do with an order, without calling the hypervisor.
    pub fn accept(&self, order: &Order) -> Result<Acceptance, AgentError> {
        if let Order::RestartPartnerGuests {
            failed_slot,
            fence_confirmed,
            ..
        } = order
        {
            if *failed_slot != self.cfg.partner.slot {
                log::warn!(
                    "refusing {}: slot {failed_slot} is not our partner",
                    order.key()
                );
                return Ok(Acceptance::Refused(Refusal::NotPartner(*failed_slot)));
            }
            if !fence_confirmed {
                log::warn!(
                    "refusing {}: fence of slot {failed_slot} not confirmed",
                    order.key()
                );
                return Ok(Acceptance::Refused(Refusal::FenceNotConfirmed(
                    *failed_slot,
                )));
            }
        }
        if self.is_fenced() && !matches!(order, Order::FenceSelf { .. }) {
            log::warn!("refusing {}: this blade is fenced", order.key());
            return Ok(Acceptance::Refused(Refusal::Fenced));
        }
        let key = order.key();
        let mut running = lock(&self.running);
        if running.contains(&key) {
            return Ok(Acceptance::InProgress);
        }
        match lock(&self.journal).begin(order)? {
            Begin::Done(rec) => {
                log::info!("{key}: duplicate of a finished order, repeating its result");
                Ok(Acceptance::Done {
                    outcomes: rec.outcomes,
                    result: rec.result.unwrap_or(OrderResult::Guests(Vec::new())),
                })
            }
            Begin::Unfinished(_) => {
                log::info!("{key}: resuming an order interrupted by an agent restart");
                running.insert(key);
                Ok(Acceptance::Execute)
            }
            Begin::New => {
                log::info!("{key}: accepted");
                running.insert(key);
                Ok(Acceptance::Execute)
            }
        }
    }

    /// Executes an accepted order; `emit` receives each guest outcome as it happens. The
    /// outcomes and the result are journaled before this returns.
    pub fn execute(
        &self,
        order: &Order,
        emit: &(dyn Fn(&GuestOutcome) + Sync),
    ) -> Result<OrderResult, AgentError> {
        let started = Instant::now();
        let result = match order {
            Order::RestartPartnerGuests {
                incident,
                failed_slot,
                subset,
                ..
            } => self.restart_partner_guests(
                order,
                *incident,
                *failed_slot,
                subset.as_deref(),
                started,
                emit,
            ),
            Order::FenceSelf { .. } => {
                // A fence an earlier process did not finish is finished (what still runs is
                // destroyed, the ShMC gets its answer) without fencing this process: the
                // restart (a blade's reboot after a power cut) ended that fenced state, as it
                // ends one that was finished before the restart.
                let inherited = lock(&self.inherited_fences).remove(&order.key());
                if inherited {
                    log::info!(
                        "{}: finishing a fence of an earlier run; this run is not fenced",
                        order.key()
                    );
                }
                Ok(OrderResult::Fenced(self.fence_self(started, !inherited)))
            }
            Order::RestartGuest { incident, name } => {
                self.restart_guest(order, *incident, name, started, emit)
            }
            Order::DestroyGuest { incident, name } => {
                self.destroy_guest(order, *incident, name, started, emit)
            }
            Order::Evacuate { incident, to_slot } => {
                self.evacuate(order, *incident, *to_slot, false, started, emit)
            }
            Order::Migrate { incident, to_slot } => {
                self.evacuate(order, *incident, *to_slot, true, started, emit)
            }
        };
        let result = match result {
            Ok(r) => r,
            Err(AgentError::Hypervisor(e)) => {
                // Not journaled as done: a retry once libvirt answers executes the order
                // (resuming it, guests with a recorded outcome are not redone).
                lock(&self.running).remove(&order.key());
                log::warn!("{}: hypervisor unavailable: {e}", order.key());
                return Ok(OrderResult::Refused(Refusal::Hypervisor(e.to_string())));
            }
            Err(e) => {
                lock(&self.running).remove(&order.key());
                return Err(e);
            }
        };
        lock(&self.journal).finish(order, &result)?;
        lock(&self.running).remove(&order.key());
        log::info!(
            "{}: done in {} ms: {}",
            order.key(),
            ms(started),
            summary(&result)
        );
        Ok(result)
    }

    fn record(
        &self,
        order: &Order,
        outcome: GuestOutcome,
        emit: &(dyn Fn(&GuestOutcome) + Sync),
    ) -> Result<GuestOutcome, AgentError> {
        lock(&self.journal).record_outcome(order, &outcome)?;
        emit(&outcome);
        Ok(outcome)
    }

    /// The protected guests among `all`. A paused warm standby of a partner guest is not
    /// one of ours (it is neither pushed, fenced nor reported) until it is resumed.
    fn protected_of<'a>(&self, all: &'a [GuestInfo]) -> Vec<&'a GuestInfo> {
        all.iter()
            .filter(|g| self.cfg.protection.covers(&g.name, g.persistent, g.flagged))
            .filter(|g| !self.is_standby(&g.name, g.state))
            .collect()
    }

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
    fn is_standby(&self, name: &str, state: GuestState) -> bool {
        state == GuestState::Paused
            && self.warm_standby_listed(name)
            && lock(&self.partner).get(name).is_some()
    }

    /// Checks a definition for warm standby (the definition policy, then the disks); a
    /// refusal is logged (once per guest and reason) and remembered. False when the guest is
    /// not listed.
    fn standby_allowed(&self, def: &GuestDef) -> bool {
        if !self.warm_standby_listed(&def.name) {
            return false;
        }
        let checked = crate::policy::check_definition(&self.cfg, &def.name, &def.xml)
            .map_err(|r| format!("warm standby refused for guest `{}`: {r}", def.name))
            .and_then(|()| standby::check_disks(&def.name, &def.xml));
        match checked {
            Ok(()) => {
                lock(&self.standby_refused).remove(&def.name);
                true
            }
            Err(why) => {
                let mut refused = lock(&self.standby_refused);
                if refused.get(&def.name) != Some(&why) {
                    log::error!("{why}; it is restarted cold on failover instead");
                    refused.insert(def.name.clone(), why);
                }
                false
            }
        }
    }

    /// Warm-standby guests refused so far (unsafe disks), with the reason.
    pub fn standby_refusals(&self) -> BTreeMap<String, String> {
        lock(&self.standby_refused).clone()
    }

    /// The start-time check of `[guests] warm_standby` against this blade's own guests
    /// (the partner checks the definitions it receives). Returns the refusals.
    pub fn check_warm_standby_config(&self) -> Result<Vec<String>, AgentError> {
        let all = self.hv.list_guests()?;
        let mut refusals = Vec::new();
        for g in all.iter().filter(|g| self.warm_standby_listed(&g.name)) {
            let def = GuestDef {
                name: g.name.clone(),
                xml: g.xml.clone(),
            };
            if !self.standby_allowed(&def) {
                if let Some(why) = lock(&self.standby_refused).get(&g.name) {
                    refusals.push(why.clone());
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
                    .iter()
                    .any(|k| k.contains("restart-partner"))
            {
                continue;
            }
            match self.hv.state(&def.name) {
                Ok(s) if s.is_active() => continue,
                Ok(_) | Err(HypervisorError::NoSuchGuest(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let t0 = Instant::now();
            self.hv.define(&def.xml)?;
            match self.hv.start_paused(&def.name) {
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

    /// Whether a lifecycle crash of `name` should be reported to the ShMC.
    /// Not for a guest this agent is stopping on order (DestroyGuest, Evacuate): killing its
    /// QEMU looks like a crash to libvirt.
    pub fn reports_crash_of(&self, name: &str) -> bool {
        !self.is_fenced()
            && !lock(&self.stopping).contains(name)
            && lock(&self.protected).iter().any(|n| n == name)
    }

    // ----- definitions exchanged with the partner -----

    /// The definitions of this blade's protected guests (sent to the partner), sorted by name.
    /// Also refreshes the cached list of protected guests used by FenceSelf when libvirt hangs.
    pub fn local_definitions(&self) -> Result<Vec<GuestDef>, AgentError> {
        let all = self.hv.list_guests()?;
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
        *lock(&self.protected) = self
            .protected_of(&all)
            .iter()
            .map(|g| g.name.clone())
            .collect();
        Ok(defs)
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
    /// compared with ([`sync::Keeper::on_heartbeat`]).
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

    // ----- RestartPartnerGuests -----

    fn restart_partner_guests(
        &self,
        order: &Order,
        incident: u32,
        failed_slot: u8,
        subset: Option<&[String]>,
        started: Instant,
        emit: &(dyn Fn(&GuestOutcome) + Sync),
    ) -> Result<OrderResult, AgentError> {
        let recorded: BTreeMap<String, GuestOutcome> = lock(&self.journal)
            .record(order)
            .map(|r| {
                r.outcomes
                    .iter()
                    .map(|o| (o.name.clone(), o.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut defs: Vec<GuestDef> = {
            let store = lock(&self.partner);
            store
                .all()
                .filter(|d| subset.is_none_or(|s| s.iter().any(|n| n == &d.name)))
                .cloned()
                .collect()
        };
        // Highest priority first (the restarting agent's configuration), then by name.
        defs.sort_by(|a, b| {
            let (pa, pb) = (self.cfg.priority_of(&a.name), self.cfg.priority_of(&b.name));
            pb.cmp(&pa).then_with(|| a.name.cmp(&b.name))
        });
        let mut outcomes = Vec::new();
        for name in subset.unwrap_or(&[]) {
            if !defs.iter().any(|d| &d.name == name) {
                let o = GuestOutcome {
                    incident,
                    name: name.clone(),
                    result: GuestResult::Unknown,
                    elapsed_ms: ms(started),
                };
                outcomes.push(self.record(order, o, emit)?);
            }
        }
        let local: BTreeMap<String, GuestState> = self
            .hv
            .list_guests()?
            .into_iter()
            .map(|g| (g.name, g.state))
            .collect();
        // Unknown free memory (some hosts and libvirt drivers cannot tell) must not block a
        // takeover: the guests are then started without the check, and libvirt refuses what
        // does not fit.
        let mut budget = match self.hv.free_memory_kib() {
            Ok(free) => free.saturating_sub(self.cfg.memory_reserve_kib),
            Err(e) => {
                log::warn!(
                    "{}: free memory unknown ({e}): starting without a memory check",
                    order.key()
                );
                u64::MAX
            }
        };
        let mut plan = Vec::new();
        for def in defs {
            if let Some(prev) = recorded.get(&def.name).filter(|o| o.result.is_success()) {
                // Finished before an agent restart: repeat, do not redo.
                emit(prev);
                outcomes.push(prev.clone());
                continue;
            }
            let standby = local
                .get(&def.name)
                .is_some_and(|s| *s == GuestState::Paused && self.warm_standby_listed(&def.name));
            let result = if standby {
                // Resumed, not started: its memory is already allocated here.
                None
            } else if local.get(&def.name).is_some_and(|s| s.is_active()) {
                Some(GuestResult::AlreadyRunning)
            } else {
                // A definition without a readable <memory> is started without a memory check.
                let needed = def.memory_kib().unwrap_or(0);
                if needed > budget {
                    Some(GuestResult::NoMemory {
                        needed_kib: needed,
                        available_kib: budget,
                    })
                } else {
                    budget -= needed;
                    None
                }
            };
            match result {
                Some(r) => {
                    log::info!("{}: partner guest `{}`: {r:?}", order.key(), def.name);
                    let o = GuestOutcome {
                        incident,
                        name: def.name.clone(),
                        result: r,
                        elapsed_ms: ms(started),
                    };
                    outcomes.push(self.record(order, o, emit)?);
                }
                None => plan.push(def),
            }
        }
        log::info!(
            "{}: starting {} partner guests of slot {failed_slot}, {} at once",
            order.key(),
            plan.len(),
            self.cfg.start_workers
        );
        let queue = Mutex::new(plan.into_iter().collect::<VecDeque<GuestDef>>());
        let results = Mutex::new(Vec::new());
        let workers = self.cfg.start_workers.max(1);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let Some(def) = lock(&queue).pop_front() else {
                        break;
                    };
                    let result = self.define_and_start(&def);
                    if matches!(result, GuestResult::Started | GuestResult::Resumed) {
                        let taken = TakenOver {
                            uuid: def.uuid().unwrap_or_default().to_owned(),
                            incident,
                            from_slot: failed_slot,
                        };
                        if let Err(e) = lock(&self.journal).record_takeover(&def.name, taken) {
                            log::error!("journal: {e}");
                        }
                    }
                    let o = GuestOutcome {
                        incident,
                        name: def.name.clone(),
                        result,
                        elapsed_ms: ms(started),
                    };
                    log::info!(
                        "{}: partner guest `{}`: {:?} after {} ms",
                        order.key(),
                        o.name,
                        o.result,
                        o.elapsed_ms
                    );
                    lock(&results).push(self.record(order, o, emit));
                });
            }
        });
        for r in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
            outcomes.push(r?);
        }
        Ok(OrderResult::Guests(outcomes))
    }

    /// Defines and starts one partner guest, unless it already runs here; resumes its warm
    /// standby instead when it has one (virtlockd refuses the resume while the original
    /// still holds the disk lease).
    fn define_and_start(&self, def: &GuestDef) -> GuestResult {
        // The stored copy passed the policy when it was pushed; the configuration may be newer.
        if let Err(r) = crate::policy::check_definition(&self.cfg, &def.name, &def.xml) {
            log::error!(
                "partner guest `{}` not started: definition refused: {r}",
                def.name
            );
            return GuestResult::Failed {
                reason: format!("definition refused: {r}"),
            };
        }
        lock(&self.stopping).remove(&def.name);
        match self.hv.state(&def.name) {
            Ok(GuestState::Paused) if self.warm_standby_listed(&def.name) => {
                return match self.hv.resume(&def.name) {
                    Ok(()) => GuestResult::Resumed,
                    Err(e) => GuestResult::Failed {
                        reason: format!("resume of the warm standby: {e}"),
                    },
                };
            }
            Ok(s) if s.is_active() => return GuestResult::AlreadyRunning,
            Ok(_) | Err(HypervisorError::NoSuchGuest(_)) => {}
            Err(e) => {
                return GuestResult::Failed {
                    reason: e.to_string(),
                }
            }
        }
        if let Err(e) = self.hv.define(&def.xml) {
            return GuestResult::Failed {
                reason: e.to_string(),
            };
        }
        match self.hv.start(&def.name) {
            Ok(()) => GuestResult::Started,
            Err(e) => GuestResult::Failed {
                reason: e.to_string(),
            },
        }
    }

    // ----- FenceSelf -----

    /// Destroys every protected guest: through libvirt within `fence_timeout`, then by killing
    /// QEMU directly for the ones libvirt did not confirm.
    /// With `fence_blade`, this agent then refuses every start (see [`Agent::is_fenced`]).
    fn fence_self(&self, started: Instant, fence_blade: bool) -> FenceReport {
        if fence_blade {
            self.fenced.store(true, Ordering::SeqCst);
        }
        let deadline = started + self.cfg.fence_timeout;
        let mut report = FenceReport::default();
        let (list_tx, list_rx) = mpsc::channel();
        let hv = Arc::clone(&self.hv);
        // A hung libvirt leaves this thread blocked; it ends when libvirt answers or the process exits.
        let _ = std::thread::Builder::new()
            .name("fence-list".into())
            .spawn(move || {
                let _ = list_tx.send(hv.list_guests());
            });
        let listed = list_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        // Guests libvirt has not confirmed stopped, with whether libvirt knows them stopped.
        let mut pending: Vec<String> = Vec::new();
        match listed {
            Ok(Ok(all)) => {
                let protected: Vec<GuestInfo> =
                    self.protected_of(&all).into_iter().cloned().collect();
                *lock(&self.protected) = protected.iter().map(|g| g.name.clone()).collect();
                let (tx, rx) = mpsc::channel();
                let mut asked = 0;
                for g in protected {
                    if !g.state.is_active() {
                        report.already_stopped += 1;
                        continue;
                    }
                    asked += 1;
                    pending.push(g.name.clone());
                    // Its death must not be reported as a crash.
                    lock(&self.stopping).insert(g.name.clone());
                    let (hv, tx) = (Arc::clone(&self.hv), tx.clone());
                    let _ = std::thread::Builder::new()
                        .name("fence-destroy".into())
                        .spawn(move || {
                            fence::stop_now(&*hv, &g.name, KILL_WAIT, |r| {
                                let _ = tx.send((g.name.clone(), r));
                            });
                        });
                }
                for _ in 0..asked {
                    let Ok((name, r)) =
                        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    else {
                        break;
                    };
                    match r {
                        Ok(Some(pid)) => {
                            report.killed += 1;
                            log::info!("fence: `{name}` QEMU pid {pid} killed");
                        }
                        Ok(None) => {
                            report.destroyed += 1;
                            log::info!("fence: `{name}` destroyed through libvirt");
                        }
                        Err(HypervisorError::NoSuchGuest(_)) => {
                            report.already_stopped += 1;
                            log::info!("fence: `{name}` no longer exists");
                        }
                        Err(e) => {
                            log::warn!("fence: libvirt destroy `{name}` failed: {e}");
                            continue;
                        }
                    }
                    pending.retain(|n| n != &name);
                }
            }
            Ok(Err(e)) => {
                log::warn!("fence: libvirt cannot list guests ({e}); killing QEMU of the last known protected guests");
                pending = lock(&self.protected).clone();
            }
            Err(_) => {
                log::warn!(
                    "fence: libvirt did not answer within {} ms; killing QEMU of the last known protected guests",
                    self.cfg.fence_timeout.as_millis()
                );
                pending = lock(&self.protected).clone();
            }
        }
        for name in pending {
            match self.hv.qemu_pid(&name) {
                // libvirt removes the pid file when QEMU stops: no file, no process.
                None => {
                    log::info!("fence: `{name}` has no QEMU pid file: not running");
                    report.already_stopped += 1;
                }
                Some(pid) if fence::kill_and_wait(pid, KILL_WAIT) => {
                    log::warn!("fence: `{name}` QEMU pid {pid} killed directly");
                    report.killed += 1;
                }
                Some(pid) => {
                    log::error!("fence: `{name}` QEMU pid {pid} still runs after SIGKILL");
                    report.failed += 1;
                }
            }
        }
        report.elapsed_ms = ms(started);
        report
    }

    // ----- RestartGuest -----

    fn restart_guest(
        &self,
        order: &Order,
        incident: u32,
        name: &str,
        started: Instant,
        emit: &(dyn Fn(&GuestOutcome) + Sync),
    ) -> Result<OrderResult, AgentError> {
        let all = self.hv.list_guests()?;
        let Some(g) = self.protected_of(&all).into_iter().find(|g| g.name == name) else {
            log::warn!("{}: `{name}` is not a protected guest here", order.key());
            return Ok(OrderResult::Refused(Refusal::NotProtected(name.to_owned())));
        };
        lock(&self.stopping).remove(name);
        let result = if g.state == GuestState::Crashed {
            // A crashed domain must be destroyed before it can start again.
            match self.hv.destroy(name).and_then(|()| self.hv.start(name)) {
                Ok(()) => GuestResult::Started,
                Err(e) => GuestResult::Failed {
                    reason: e.to_string(),
                },
            }
        } else if g.state.is_active() {
            GuestResult::AlreadyRunning
        } else {
            match self.hv.start(name) {
                Ok(()) => GuestResult::Started,
                Err(e) => GuestResult::Failed {
                    reason: e.to_string(),
                },
            }
        };
        self.single_outcome(order, incident, name, result, started, emit)
    }

    /// Records, logs and returns the one outcome of a single-guest order.
    fn single_outcome(
        &self,
        order: &Order,
        incident: u32,
        name: &str,
        result: GuestResult,
        started: Instant,
        emit: &(dyn Fn(&GuestOutcome) + Sync),
    ) -> Result<OrderResult, AgentError> {
        let o = GuestOutcome {
            incident,
            name: name.to_owned(),
            result,
            elapsed_ms: ms(started),
        };
        log::info!("{}: {:?} after {} ms", order.key(), o.result, o.elapsed_ms);
        Ok(OrderResult::Guests(vec![self.record(order, o, emit)?]))
    }

    // ----- DestroyGuest -----

    fn destroy_guest(
        &self,
        order: &Order,
        incident: u32,
        name: &str,
        started: Instant,
        emit: &(dyn Fn(&GuestOutcome) + Sync),
    ) -> Result<OrderResult, AgentError> {
        // Listing may hang like any libvirt call: fall back to the cached protected list.
        let (tx, rx) = mpsc::channel();
        let hv = Arc::clone(&self.hv);
        let _ = std::thread::Builder::new()
            .name("destroy-list".into())
            .spawn(move || {
                let _ = tx.send(hv.list_guests());
            });
        let protected = match rx.recv_timeout(self.cfg.fence_timeout) {
            Ok(Ok(all)) => self.protected_of(&all).iter().any(|g| g.name == name),
            _ => lock(&self.protected).iter().any(|n| n == name),
        };
        if !protected {
            log::warn!("{}: `{name}` is not a protected guest here", order.key());
            return Ok(OrderResult::Refused(Refusal::NotProtected(name.to_owned())));
        }
        lock(&self.stopping).insert(name.to_owned());
        let deadline = started + self.cfg.fence_timeout;
        let (tx, rx) = mpsc::channel();
        let (hv, n) = (Arc::clone(&self.hv), name.to_owned());
        let _ = std::thread::Builder::new()
            .name("destroy".into())
            .spawn(move || {
                fence::stop_now(&*hv, &n, KILL_WAIT, |r| {
                    let _ = tx.send(r);
                });
            });
        let answer = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        let result = match answer {
            Ok(Ok(Some(pid))) => {
                log::info!("`{name}`: QEMU pid {pid} killed");
                GuestResult::Destroyed { killed: true }
            }
            Ok(Ok(None)) | Ok(Err(HypervisorError::NoSuchGuest(_))) => {
                GuestResult::Destroyed { killed: false }
            }
            // "not running" and the like: the pid file decides below.
            Ok(Err(e)) => self.kill_guest(name, Some(e.to_string())),
            Err(_) => self.kill_guest(name, None),
        };
        self.single_outcome(order, incident, name, result, started, emit)
    }

    /// Kills a guest's QEMU directly; `libvirt_error` is what libvirt said, if it answered.
    fn kill_guest(&self, name: &str, libvirt_error: Option<String>) -> GuestResult {
        match self.hv.qemu_pid(name) {
            None => GuestResult::Destroyed { killed: false },
            Some(pid) if fence::kill_and_wait(pid, KILL_WAIT) => {
                log::warn!(
                    "`{name}`: QEMU pid {pid} killed directly ({})",
                    libvirt_error.as_deref().unwrap_or("libvirt did not answer")
                );
                GuestResult::Destroyed { killed: true }
            }
            Some(pid) => GuestResult::Failed {
                reason: format!("QEMU pid {pid} still runs after SIGKILL"),
            },
        }
    }

    // ----- Evacuate -----

    /// Evacuate (`live_only` false) or Migrate (`live_only` true) this blade's running
    /// protected guests to `to_slot`: `zero_downtime.migration_workers` migrations at once,
    /// each bounded by `zero_downtime.migration_timeout` (then its job is aborted). A guest
    /// that does not migrate is stopped here on Evacuate (the partner starts it after the
    /// fence) and left running on Migrate.
    fn evacuate(
        &self,
        order: &Order,
        incident: u32,
        to_slot: u8,
        live_only: bool,
        started: Instant,
        emit: &(dyn Fn(&GuestOutcome) + Sync),
    ) -> Result<OrderResult, AgentError> {
        let all = self.hv.list_guests()?;
        let mut protected: Vec<GuestInfo> = self.protected_of(&all).into_iter().cloned().collect();
        // Highest priority first, as for a takeover.
        protected.sort_by(|a, b| {
            let (pa, pb) = (self.cfg.priority_of(&a.name), self.cfg.priority_of(&b.name));
            pb.cmp(&pa).then_with(|| a.name.cmp(&b.name))
        });
        let dest = self
            .cfg
            .partner
            .libvirt_uri
            .as_deref()
            .filter(|_| to_slot == self.cfg.partner.slot);
        if dest.is_none() {
            if live_only {
                log::warn!(
                    "{}: no migration path to slot {to_slot}: the guests keep running here",
                    order.key()
                );
            } else {
                log::info!(
                    "{}: no migration path to slot {to_slot}: stopping the guests here",
                    order.key()
                );
            }
        }
        if !live_only {
            lock(&self.stopping).extend(protected.iter().map(|g| g.name.clone()));
        }
        // Migrations share the link: a bounded number at once; shutdowns run in parallel.
        let workers = if dest.is_some() {
            let n = self.cfg.zero_downtime.effective_workers(&self.cfg.partner);
            if n < self.cfg.zero_downtime.migration_workers {
                log::warn!(
                    "{}: partner.migration_uri names a port: migrating one guest at a time \
                     (leave the port out for {} at once)",
                    order.key(),
                    self.cfg.zero_downtime.migration_workers
                );
            }
            n
        } else {
            self.cfg.start_workers.max(1)
        };
        // Room on the destination, shared by the migrations of this order (unknown: no check).
        let room = Mutex::new(dest.map_or(u64::MAX, |uri| {
            self.hv.free_memory_kib_at(uri).unwrap_or_else(|e| {
                log::warn!(
                    "{}: free memory of slot {to_slot} unknown ({e}): migrating without a check",
                    order.key()
                );
                u64::MAX
            })
        }));
        let queue = Mutex::new(protected.into_iter().collect::<VecDeque<GuestInfo>>());
        let results = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let Some(g) = lock(&queue).pop_front() else {
                        break;
                    };
                    let fits = || {
                        let mut r = lock(&room);
                        if g.memory_kib > *r {
                            Err(format!(
                                "no capacity on slot {to_slot}: needs {} KiB, {} KiB free",
                                g.memory_kib, *r
                            ))
                        } else {
                            *r -= g.memory_kib;
                            Ok(())
                        }
                    };
                    let result = match dest {
                        _ if !g.state.is_active() => GuestResult::Stopped { graceful: true },
                        // The partner holds a paused standby under the same name: no migration;
                        // on Evacuate it is stopped here and the standby resumed after the fence.
                        _ if self.warm_standby_listed(&g.name) && live_only => GuestResult::Failed {
                            reason: "migration: a warm standby waits on the partner; it keeps running here".into(),
                        },
                        _ if self.warm_standby_listed(&g.name) => self.stop_gracefully(&g.name),
                        Some(uri) => match fits().and_then(|()| {
                            self.migrate_bounded(&g.name, uri).inspect_err(|_| {
                                // Not moved: its room is free again.
                                let mut r = lock(&room);
                                *r = r.saturating_add(g.memory_kib);
                            })
                        }) {
                            Ok(r) => r,
                            Err(reason) if live_only => GuestResult::Failed {
                                reason: format!("migration: {reason}; it keeps running here"),
                            },
                            Err(reason) => {
                                log::warn!(
                                    "{}: `{}`: migration failed ({reason}); stopping it here, the partner starts it after the fence",
                                    order.key(),
                                    g.name
                                );
                                lock(&self.stopping).insert(g.name.clone());
                                match self.stop_gracefully(&g.name) {
                                    GuestResult::Stopped { graceful } => {
                                        GuestResult::StoppedAfterMigration { reason, graceful }
                                    }
                                    other => other,
                                }
                            }
                        },
                        None if live_only => GuestResult::Failed {
                            reason: "migration: no migration path to the partner; it keeps running here".into(),
                        },
                        None => self.stop_gracefully(&g.name),
                    };
                    let o = GuestOutcome {
                        incident,
                        name: g.name.clone(),
                        result,
                        elapsed_ms: ms(started),
                    };
                    log::info!(
                        "{}: `{}`: {:?} after {} ms",
                        order.key(),
                        o.name,
                        o.result,
                        o.elapsed_ms
                    );
                    lock(&results).push(self.record(order, o, emit));
                });
            }
        });
        let mut outcomes = Vec::new();
        for r in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
            outcomes.push(r?);
        }
        Ok(OrderResult::Guests(outcomes))
    }

    /// One live migration, bounded by `zero_downtime.migration_timeout`: past it the job is
    /// aborted (the guest stays here). Ok with the result to report, Err with why it failed.
    fn migrate_bounded(&self, name: &str, dest_uri: &str) -> Result<GuestResult, String> {
        let timeout = self.cfg.zero_downtime.migration_timeout;
        let t0 = Instant::now();
        let (tx, rx) = mpsc::channel();
        let result = std::thread::scope(|s| {
            s.spawn(move || {
                let r = self
                    .hv
                    .migrate(name, dest_uri, self.cfg.partner.migration_uri.as_deref());
                let _ = tx.send(r);
            });
            match rx.recv_timeout(timeout) {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => {
                    log::warn!(
                        "`{name}`: migration still running after {} ms: aborting its job",
                        timeout.as_millis()
                    );
                    if let Err(e) = self.hv.abort_job(name) {
                        log::warn!("`{name}`: abort: {e}");
                    }
                    // The migration call returns once its job is aborted (or has completed).
                    match rx.recv() {
                        Ok(Ok(stats)) => Ok(stats),
                        Ok(Err(e)) => Err(format!(
                            "timed out after {} ms, job aborted: {e}",
                            timeout.as_millis()
                        )),
                        Err(_) => Err("migration thread ended without a result".into()),
                    }
                }
            }
        })?;
        let measured = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        let migration_ms = result.elapsed_ms.unwrap_or(measured);
        match result.downtime_ms {
            Some(d) => log::info!(
                "`{name}`: live-migrated in {migration_ms} ms (libvirt job), guest downtime {d} ms"
            ),
            None => log::info!(
                "`{name}`: live-migrated in {migration_ms} ms, downtime not reported by libvirt"
            ),
        }
        Ok(GuestResult::LiveMigrated {
            migration_ms,
            downtime_ms: result.downtime_ms,
        })
    }

    fn stop_gracefully(&self, name: &str) -> GuestResult {
        let deadline = Instant::now() + self.cfg.evacuate_timeout;
        if let Err(e) = self.hv.shutdown(name) {
            log::warn!("evacuate: shutdown `{name}`: {e}; destroying");
        } else {
            while Instant::now() < deadline {
                match self.hv.state(name) {
                    Ok(s) if !s.is_active() => return GuestResult::Stopped { graceful: true },
                    Err(HypervisorError::NoSuchGuest(_)) => {
                        return GuestResult::Stopped { graceful: true }
                    }
                    _ => std::thread::sleep(SHUTDOWN_POLL),
                }
            }
            log::warn!(
                "evacuate: `{name}` did not shut down in {} ms; destroying",
                self.cfg.evacuate_timeout.as_millis()
            );
        }
        match self.hv.destroy(name) {
            Ok(()) | Err(HypervisorError::NoSuchGuest(_)) => {
                GuestResult::Stopped { graceful: false }
            }
            Err(e) => GuestResult::Failed {
                reason: e.to_string(),
            },
        }
    }
}

/// One line describing a result, for the log.
pub fn summary(r: &OrderResult) -> String {
    match r {
        OrderResult::Refused(why) => format!("refused: {why}"),
        OrderResult::Fenced(f) => format!(
            "fenced: {} destroyed, {} killed, {} already stopped, {} failed",
            f.destroyed, f.killed, f.already_stopped, f.failed
        ),
        OrderResult::Guests(v) => {
            let ok = v.iter().filter(|o| o.result.is_success()).count();
            format!("{ok} of {} guests ok", v.len())
        }
    }
}

#[cfg(test)]
mod test;
