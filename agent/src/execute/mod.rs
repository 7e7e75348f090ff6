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

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, Protection};
use crate::hypervisor::{GuestInfo, GuestState, Hypervisor, HypervisorError, QemuProcess};
use crate::order::{FenceReport, GuestOutcome, GuestResult, Order, OrderResult, Refusal};
use crate::store::definitions::{DefinitionError, GuestDef, PartnerStore};
use crate::store::fenced;
use crate::store::journal::{Begin, Journal, JournalError, TakenOver};
use crate::store::protected::ProtectedSet;
use fence::{Accounted, Prior};

/// How long a directly killed QEMU gets to disappear before the fence counts it failed; also
/// the bound of one process-table scan.
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

/// The gate every define, start and resume passes: none begins once the blade is fenced (the
/// flag is read under the same lock the fence sets it under), and the fence sees which are
/// still inside libvirt. A call stays registered until libvirt returns, also past its
/// deadline (a late start may still create a QEMU).
#[derive(Debug, Default)]
struct StartGate {
    fenced: AtomicBool,
    in_flight: Mutex<BTreeMap<String, usize>>,
    cv: Condvar,
}

impl StartGate {
    /// Runs `call` for guest `name` unless the blade is fenced (then `None`, nothing called).
    fn call<T>(&self, name: &str, call: impl FnOnce() -> T) -> Option<T> {
        {
            let mut g = lock(&self.in_flight);
            if self.fenced.load(Ordering::SeqCst) {
                log::warn!("`{name}`: not started: this blade is fenced");
                return None;
            }
            *g.entry(name.to_owned()).or_default() += 1;
        }
        let r = call();
        let mut g = lock(&self.in_flight);
        if let Some(n) = g.get_mut(name) {
            *n -= 1;
            if *n == 0 {
                g.remove(name);
            }
        }
        self.cv.notify_all();
        Some(r)
    }

    /// Sets the fenced flag (with `fence`) and waits up to `wait` for the calls in flight to
    /// return; returns the guests whose calls are still inside libvirt.
    fn close(&self, fence: bool, wait: Duration) -> BTreeSet<String> {
        let deadline = Instant::now() + wait;
        let mut g = lock(&self.in_flight);
        if fence {
            self.fenced.store(true, Ordering::SeqCst);
        }
        while !g.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            g = match self.cv.wait_timeout(g, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        g.keys().cloned().collect()
    }
}

/// Starts (or resumes the warm standby of) one partner guest, each libvirt call through the
/// gate; run on its own thread, bounded by `start_timeout` by the caller.
fn start_partner_guest<H: Hypervisor + ?Sized>(
    hv: &H,
    gate: &StartGate,
    def: &GuestDef,
    standby_listed: bool,
) -> GuestResult {
    let failed = |e: HypervisorError| GuestResult::Failed {
        reason: e.to_string(),
    };
    match hv.state(&def.name) {
        Ok(GuestState::Paused) if standby_listed => {
            return match gate.call(&def.name, || hv.resume(&def.name)) {
                None => GuestResult::Fenced,
                Some(Ok(())) => GuestResult::Resumed,
                Some(Err(e)) => GuestResult::Failed {
                    reason: format!("resume of the warm standby: {e}"),
                },
            };
        }
        Ok(s) if s.is_active() => return GuestResult::AlreadyRunning,
        Ok(_) | Err(HypervisorError::NoSuchGuest(_)) => {}
        Err(e) => return failed(e),
    }
    match gate.call(&def.name, || hv.define(&def.xml)) {
        None => return GuestResult::Fenced,
        Some(Err(e)) => return failed(e),
        Some(Ok(_)) => {}
    }
    match gate.call(&def.name, || hv.start(&def.name)) {
        None => GuestResult::Fenced,
        Some(Ok(())) => GuestResult::Started,
        Some(Err(e)) => failed(e),
    }
}

/// The agent core. Shared between threads (`Arc<Agent<H>>`).
pub struct Agent<H: Hypervisor> {
    hv: Arc<H>,
    cfg: Config,
    journal: Mutex<Journal>,
    partner: Mutex<PartnerStore>,
    running: Mutex<HashSet<String>>,
    /// The fenced flag and the starts inside libvirt right now.
    gate: Arc<StartGate>,
    /// FenceSelf orders an earlier process accepted and did not finish (journal keys).
    inherited_fences: Mutex<HashSet<String>>,
    /// This blade's protected guests, as last listed (and stored: `protected.json`).
    protected: Arc<Mutex<ProtectedSet>>,
    stopping: Mutex<HashSet<String>>,
    /// Warm-standby guests refused (unsafe disks), with the reason; logged once each.
    standby_refused: Mutex<BTreeMap<String, String>>,
    /// The kernel's boot id at start (`None`: not readable), recorded with a fence.
    boot_id: Option<String>,
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
    /// Opens the journal and partner store under the configured state directory; a fence
    /// recorded in this boot of the kernel ([`crate::store::fenced`]) is still in force.
    pub fn new(hv: Arc<H>, cfg: Config) -> Result<Agent<H>, AgentError> {
        Self::with_boot_id_file(hv, cfg, Path::new(fenced::BOOT_ID_FILE))
    }

    /// [`Agent::new`] with the kernel's boot id read from `boot_id_file` (tests, and rigs
    /// whose blades share one kernel, tell reboots apart with their own file).
    pub fn with_boot_id_file(
        hv: Arc<H>,
        cfg: Config,
        boot_id_file: &Path,
    ) -> Result<Agent<H>, AgentError> {
        let journal = Journal::open(&cfg.state_dir)?;
        let partner = PartnerStore::open(&cfg.state_dir)?;
        let taken = journal.taken_over().len();
        let inherited_fences: HashSet<String> = journal
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
        let protected = ProtectedSet::open(&cfg.state_dir);
        let boot_id = fenced::boot_id(boot_id_file);
        let gate = StartGate::default();
        if let Some(why) = fenced::in_force(&cfg.state_dir, boot_id.as_deref()) {
            log::warn!("this blade is fenced: {why}; it starts nothing until it reboots");
            gate.fenced.store(true, Ordering::SeqCst);
        } else if !inherited_fences.is_empty() && !cfg.state_dir.join(fenced::FILE).exists() {
            // Accepted, but its record never written: whether the blade rebooted since cannot
            // be told, so the fence holds for this boot.
            log::error!(
                "unfinished {inherited_fences:?} without a fence record: this blade is fenced \
                 until it reboots"
            );
            if let Err(e) = fenced::save(&cfg.state_dir, boot_id.as_deref(), "unfinished fence") {
                log::error!("{}: cannot record the fence: {e}", fenced::FILE);
            }
            gate.fenced.store(true, Ordering::SeqCst);
        }
        Ok(Agent {
            hv,
            cfg,
            journal: Mutex::new(journal),
            partner: Mutex::new(partner),
            running: Mutex::new(HashSet::new()),
            gate: Arc::new(gate),
            inherited_fences: Mutex::new(inherited_fences),
            protected: Arc::new(Mutex::new(protected)),
            stopping: Mutex::new(HashSet::new()),
            standby_refused: Mutex::new(BTreeMap::new()),
            boot_id,
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
        self.gate.fenced.load(Ordering::SeqCst)
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
                if matches!(order, Order::FenceSelf { .. }) {
                    // Recorded before it is acknowledged: a restarted agent stays fenced
                    // until the blade reboots.
                    if let Err(e) = fenced::save(&self.cfg.state_dir, self.boot_id.as_deref(), &key)
                    {
                        log::error!(
                            "{key}: cannot record the fence ({e}): a restarted agent would not \
                             know this blade is fenced"
                        );
                    }
                }
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
                // destroyed, the ShMC gets its answer). It fences this process too unless the
                // blade rebooted since (its fence record is of another boot): a reboot ends
                // the fenced state, an agent restart does not (see `Agent::new`).
                let inherited =
                    lock(&self.inherited_fences).remove(&order.key()) && !self.is_fenced();
                if inherited {
                    log::info!(
                        "{}: finishing a fence of an earlier boot; this boot is not fenced",
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

    /// Runs one hypervisor call on its own thread and waits for it up to `timeout`; past it
    /// the call is left blocked on its thread and `Unavailable` is returned.
    fn bounded<T: Send + 'static>(
        &self,
        what: &str,
        timeout: Duration,
        call: impl FnOnce(&H) -> Result<T, HypervisorError> + Send + 'static,
    ) -> Result<T, HypervisorError> {
        let (tx, rx) = mpsc::channel();
        let hv = Arc::clone(&self.hv);
        std::thread::Builder::new()
            .name("libvirt-call".into())
            .spawn(move || {
                let _ = tx.send(call(&*hv));
            })
            .map_err(|e| HypervisorError::Unavailable(format!("{what}: no thread: {e}")))?;
        rx.recv_timeout(timeout).unwrap_or_else(|_| {
            Err(HypervisorError::Unavailable(format!(
                "{what}: no answer from libvirt within {} ms",
                timeout.as_millis()
            )))
        })
    }

    /// Lists the guests within `timeout` and refreshes the protected set from the listing.
    fn list_bounded(
        &self,
        what: &str,
        timeout: Duration,
    ) -> Result<Vec<GuestInfo>, HypervisorError> {
        let at = Instant::now();
        let all = self.bounded(what, timeout, |hv| hv.list_guests())?;
        self.note_listing(&all, at);
        Ok(all)
    }

    /// A listing that began at `at` found `all`: the protected set is replaced (and stored).
    fn note_listing(&self, all: &[GuestInfo], at: Instant) {
        let names: Vec<String> = self
            .protected_of(all)
            .iter()
            .map(|g| g.name.clone())
            .collect();
        lock(&self.protected).listed(names, at);
    }

    /// One reading of this blade's QEMU processes, bounded by [`KILL_WAIT`] (a process stuck
    /// in the kernel can block a reader of its command line).
    fn scan_bounded(&self) -> Result<Vec<QemuProcess>, String> {
        let (tx, rx) = mpsc::channel();
        let hv = Arc::clone(&self.hv);
        std::thread::Builder::new()
            .name("qemu-scan".into())
            .spawn(move || {
                let _ = tx.send(hv.qemu_processes());
            })
            .map_err(|e| format!("no thread: {e}"))?;
        rx.recv_timeout(KILL_WAIT).unwrap_or_else(|_| {
            Err(format!(
                "process table not read within {} ms",
                KILL_WAIT.as_millis()
            ))
        })
    }

    /// Runs one guest's start `job` on its own thread and waits for it up to
    /// `start_timeout`: past it the guest is reported [`GuestResult::TimedOut`] and the call is
    /// left inside libvirt (still in flight for the fence). A start that completes later is
    /// logged; the caller records nothing more.
    fn start_bounded(
        &self,
        name: &str,
        job: impl FnOnce(&H, &StartGate) -> GuestResult + Send + 'static,
    ) -> GuestResult {
        let timeout = self.cfg.start_timeout;
        let (tx, rx) = mpsc::channel();
        let (hv, gate, protected) = (
            Arc::clone(&self.hv),
            Arc::clone(&self.gate),
            Arc::clone(&self.protected),
        );
        let n = name.to_owned();
        let spawned = std::thread::Builder::new()
            .name("guest-start".into())
            .spawn(move || {
                let r = job(&*hv, &gate);
                lock(&protected).start_ended(&n);
                if let Err(mpsc::SendError(r)) = tx.send(r) {
                    if matches!(r, GuestResult::Started | GuestResult::Resumed) {
                        log::error!(
                            "`{n}`: libvirt's start returned after the {} ms deadline: the guest \
                             runs here although it was reported failed (not recorded as taken over)",
                            timeout.as_millis()
                        );
                    } else {
                        log::warn!(
                            "`{n}`: libvirt's start returned after the {} ms deadline: {r:?}",
                            timeout.as_millis()
                        );
                    }
                }
            });
        if let Err(e) = spawned {
            lock(&self.protected).start_ended(name);
            return GuestResult::Failed {
                reason: format!("start of `{name}`: no thread: {e}"),
            };
        }
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(_) => {
                log::error!(
                    "`{name}`: libvirt did not complete the start within {} ms: reported failed; \
                     the call is left to itself and the next guests start",
                    timeout.as_millis()
                );
                GuestResult::TimedOut {
                    reason: format!(
                        "start of `{name}`: no answer from libvirt within {} ms",
                        timeout.as_millis()
                    ),
                }
            }
        }
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
            .and_then(|()| crate::decide::standby::check_disks(&def.name, &def.xml));
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
            let Some(defined) = self.gate.call(&def.name, || self.hv.define(&def.xml)) else {
                break;
            };
            defined?;
            let Some(started) = self
                .gate
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

    /// Whether a lifecycle crash of `name` should be reported to the ShMC.
    /// Not for a guest this agent is stopping on order (DestroyGuest, Evacuate): killing its
    /// QEMU looks like a crash to libvirt.
    pub fn reports_crash_of(&self, name: &str) -> bool {
        !self.is_fenced()
            && !lock(&self.stopping).contains(name)
            && lock(&self.protected).contains(name)
    }

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
            .list_bounded("list", self.cfg.start_timeout)?
            .into_iter()
            .map(|g| (g.name, g.state))
            .collect();
        // Unknown free memory (some hosts and libvirt drivers cannot tell) must not block a
        // takeover: the guests are then started without the check, and libvirt refuses what
        // does not fit.
        let mut budget = match self.bounded("free memory", self.cfg.start_timeout, |hv| {
            hv.free_memory_kib()
        }) {
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
        // Stored before libvirt is asked: a restarted agent fences what these starts create.
        lock(&self.protected).starting(plan.iter().map(|d| d.name.as_str()));
        let queue = Mutex::new(plan.into_iter().collect::<VecDeque<GuestDef>>());
        let results = Mutex::new(Vec::new());
        let workers = self.cfg.start_workers.max(1);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let Some(def) = lock(&queue).pop_front() else {
                        break;
                    };
                    // A fence cancels the queued starts (the gate refuses the ones that race it).
                    let result = if self.is_fenced() {
                        lock(&self.protected).start_ended(&def.name);
                        GuestResult::Fenced
                    } else {
                        self.define_and_start(&def)
                    };
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
    /// still holds the disk lease). Bounded by `start_timeout`; nothing is asked of libvirt
    /// once the blade is fenced.
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
        let standby = self.warm_standby_listed(&def.name);
        let d = def.clone();
        self.start_bounded(&def.name, move |hv, gate| {
            start_partner_guest(hv, gate, &d, standby)
        })
    }

    // ----- FenceSelf -----

    /// Destroys every protected guest and accounts for each one with a fresh reading:
    /// 1. no start begins any more (with `fence_blade`), and the starts inside libvirt get
    ///    `fence_timeout` to return; those still inside count as remaining (a pending call
    ///    may create a QEMU after any reading);
    /// 2. libvirt lists the guests within `fence_timeout` (the listing refreshes the stored
    ///    protected set); each active protected guest is stopped at once ([`fence::stop_now`]);
    /// 3. then, whatever libvirt said (it can lose track of a QEMU and list a running guest
    ///    "shut off"), every protected name (libvirt's protected guests, the stored protected
    ///    set, the configured list) is accounted for with the agent's own readings
    ///    ([`fence::account`]: pid file and process-table scan, SIGKILL, seen gone). When
    ///    libvirt does not list and the protected set is not known either, every QEMU the scan
    ///    finds is killed, and a failed scan leaves at least one guest remaining.
    ///
    /// With `fence_blade`, this agent then refuses every start (see [`Agent::is_fenced`]).
    fn fence_self(&self, started: Instant, fence_blade: bool) -> FenceReport {
        let in_flight = self.gate.close(fence_blade, self.cfg.fence_timeout);
        if !in_flight.is_empty() {
            log::error!(
                "fence: starts of {in_flight:?} still inside libvirt after {} ms: counted remaining",
                self.cfg.fence_timeout.as_millis()
            );
        }
        let deadline = Instant::now() + self.cfg.fence_timeout;
        let mut done: BTreeMap<String, Accounted> = BTreeMap::new();
        // Every guest to look for in the process table, with what libvirt said of it.
        let mut prior: BTreeMap<String, Prior> = in_flight
            .iter()
            .map(|n| (n.clone(), Prior::Nothing))
            .collect();
        // Why the guests of this blade cannot be known (libvirt silent, no stored set).
        let mut unknown: Option<String> = None;
        // The stored set and the configured list: libvirt may not list a guest whose QEMU
        // it lost.
        let stored = lock(&self.protected).names().cloned();
        if let Protection::List(names) = &self.cfg.protection {
            for n in names {
                prior.entry(n.clone()).or_insert(Prior::Nothing);
            }
        }
        match self.list_bounded("fence: list", self.cfg.fence_timeout) {
            Ok(all) => {
                for n in stored.iter().flatten() {
                    prior.entry(n.clone()).or_insert(Prior::Nothing);
                }
                let protected: Vec<GuestInfo> =
                    self.protected_of(&all).into_iter().cloned().collect();
                let (tx, rx) = mpsc::channel();
                let mut asked = BTreeSet::new();
                for g in protected {
                    if !g.state.is_active() {
                        prior.insert(g.name.clone(), Prior::LibvirtInactive);
                        continue;
                    }
                    prior.insert(g.name.clone(), Prior::Nothing);
                    asked.insert(g.name.clone());
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
                drop(tx);
                while !asked.is_empty() {
                    let Ok((name, r)) =
                        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    else {
                        break;
                    };
                    asked.remove(&name);
                    let p = match r {
                        Ok(Some(pid)) => {
                            log::info!("fence: `{name}` QEMU pid {pid} killed");
                            Prior::Killed
                        }
                        Ok(None) => {
                            log::info!("fence: `{name}` destroyed through libvirt");
                            Prior::Destroyed
                        }
                        Err(HypervisorError::NoSuchGuest(_)) => {
                            log::info!("fence: `{name}` no longer exists in libvirt");
                            Prior::LibvirtInactive
                        }
                        Err(e) => {
                            log::warn!("fence: libvirt destroy `{name}` failed: {e}");
                            Prior::Nothing
                        }
                    };
                    prior.insert(name, p);
                }
                if !asked.is_empty() {
                    log::warn!(
                        "fence: libvirt did not destroy {asked:?} within {} ms; killing their QEMU",
                        self.cfg.fence_timeout.as_millis()
                    );
                }
            }
            Err(e) => match stored {
                Some(set) => {
                    log::warn!(
                        "fence: libvirt cannot list the guests ({e}); accounting for the {} \
                         stored protected guests without it",
                        set.len()
                    );
                    for n in set {
                        prior.entry(n).or_insert(Prior::Nothing);
                    }
                }
                None => {
                    log::error!(
                        "fence: libvirt cannot list the guests ({e}) and no protected set is \
                         stored: killing every QEMU of this blade"
                    );
                    unknown = Some(e.to_string());
                }
            },
        }
        // libvirt can lose track of a QEMU: whatever it said, the process table is read (after
        // its destroys) and every QEMU of a protected guest found is killed and seen gone.
        let scan = self.scan_bounded();
        if unknown.is_some() {
            if let Ok(procs) = &scan {
                for p in procs {
                    prior.entry(p.guest.clone()).or_insert(Prior::Nothing);
                }
            }
        }
        lock(&self.stopping).extend(prior.keys().cloned());
        done.extend(fence::account(&*self.hv, &prior, &scan, KILL_WAIT));
        if let (Some(why), Err(e)) = (&unknown, &scan) {
            done.insert(
                "(guests of this blade)".into(),
                Accounted::Remaining(format!(
                    "libvirt does not answer ({why}), no protected set is stored, and the \
                     process table could not be read ({e})"
                )),
            );
        }
        for name in in_flight {
            done.insert(
                name,
                Accounted::Remaining("its start is still inside libvirt".into()),
            );
        }
        let mut report = FenceReport::default();
        for (name, a) in done {
            let n = match a {
                Accounted::Destroyed => &mut report.destroyed,
                Accounted::Killed => &mut report.killed,
                Accounted::NotRunning => &mut report.already_stopped,
                Accounted::Remaining(why) => {
                    log::error!("fence: `{name}` not confirmed stopped: {why}");
                    &mut report.failed
                }
            };
            *n = n.saturating_add(1);
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
        let all = self.list_bounded("list", self.cfg.start_timeout)?;
        let Some(g) = self.protected_of(&all).into_iter().find(|g| g.name == name) else {
            log::warn!("{}: `{name}` is not a protected guest here", order.key());
            return Ok(OrderResult::Refused(Refusal::NotProtected(name.to_owned())));
        };
        lock(&self.stopping).remove(name);
        let result = if g.state.is_active() && g.state != GuestState::Crashed {
            GuestResult::AlreadyRunning
        } else {
            // A crashed domain must be destroyed before it can start again.
            let crashed = g.state == GuestState::Crashed;
            let n = name.to_owned();
            self.start_bounded(name, move |hv, gate| {
                let r = gate.call(&n, || {
                    if crashed {
                        hv.destroy(&n)?;
                    }
                    hv.start(&n)
                });
                match r {
                    None => GuestResult::Fenced,
                    Some(Ok(())) => GuestResult::Started,
                    Some(Err(e)) => GuestResult::Failed {
                        reason: e.to_string(),
                    },
                }
            })
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
        // Listing may hang like any libvirt call: fall back to the stored protected set (a
        // guest cannot be refused as unprotected when the set is not known). A guest of the
        // stored set is protected also when libvirt no longer lists it (libvirt can lose a
        // guest whose QEMU still runs); the set is read before the listing replaces it.
        let stored = lock(&self.protected).contains(name);
        let protected = match self.list_bounded("destroy: list", self.cfg.fence_timeout) {
            Ok(all) => stored || self.protected_of(&all).iter().any(|g| g.name == name),
            Err(e) => {
                log::warn!(
                    "{}: {e}; deciding from the stored protected set",
                    order.key()
                );
                let set = lock(&self.protected);
                set.names().is_none()
                    || set.contains(name)
                    || matches!(&self.cfg.protection, Protection::List(l) if l.iter().any(|n| n == name))
            }
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
        let (prior, libvirt) = match answer {
            Ok(Ok(Some(pid))) => (Prior::Killed, format!("QEMU pid {pid} killed")),
            Ok(Ok(None)) => (Prior::Destroyed, "destroyed through libvirt".to_owned()),
            Ok(Err(HypervisorError::NoSuchGuest(_))) => (
                Prior::LibvirtInactive,
                "libvirt has no such domain".to_owned(),
            ),
            // "not running" and the like: the process table decides.
            Ok(Err(e)) => (Prior::Nothing, e.to_string()),
            Err(_) => (Prior::Nothing, "libvirt did not answer".to_owned()),
        };
        let result = self.kill_guest(name, prior, &libvirt);
        self.single_outcome(order, incident, name, result, started, emit)
    }

    /// Accounts for one guest with the agent's own readings ([`fence::account`]) after
    /// libvirt's destroy: `prior` and `libvirt` are what libvirt did or said. libvirt can lose
    /// track of a QEMU, so the process table is read whatever it said. Destroyed only on a
    /// positive reading.
    fn kill_guest(&self, name: &str, prior: Prior, libvirt: &str) -> GuestResult {
        let scan = self.scan_bounded();
        let prior = BTreeMap::from([(name.to_owned(), prior)]);
        match fence::account(&*self.hv, &prior, &scan, KILL_WAIT).remove(name) {
            Some(Accounted::Killed) => {
                log::warn!("`{name}`: QEMU killed directly ({libvirt})");
                GuestResult::Destroyed { killed: true }
            }
            Some(Accounted::NotRunning | Accounted::Destroyed) => {
                log::info!("`{name}`: no QEMU of it runs ({libvirt})");
                GuestResult::Destroyed { killed: false }
            }
            Some(Accounted::Remaining(why)) => GuestResult::Failed {
                reason: format!("{why}; {libvirt}"),
            },
            None => GuestResult::Failed {
                reason: format!("not accounted for; {libvirt}"),
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
        let all = self.list_bounded("list", self.cfg.start_timeout)?;
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
            let u = uri.to_owned();
            let free = self.bounded(
                "free memory of the partner",
                self.cfg.start_timeout,
                move |hv| hv.free_memory_kib_at(&u),
            );
            free.unwrap_or_else(|e| {
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
    /// The abort and the migration call's return after it each get `start_timeout`; a call
    /// that still does not return is left on its thread and the migration counts as failed
    /// (the guest is then stopped here on Evacuate, which a completed migration makes moot).
    fn migrate_bounded(&self, name: &str, dest_uri: &str) -> Result<GuestResult, String> {
        let timeout = self.cfg.zero_downtime.migration_timeout;
        let t0 = Instant::now();
        let (tx, rx) = mpsc::channel();
        let (hv, n, dest, via) = (
            Arc::clone(&self.hv),
            name.to_owned(),
            dest_uri.to_owned(),
            self.cfg.partner.migration_uri.clone(),
        );
        std::thread::Builder::new()
            .name("migrate".into())
            .spawn(move || {
                let _ = tx.send(hv.migrate(&n, &dest, via.as_deref()));
            })
            .map_err(|e| format!("no thread: {e}"))?;
        let result = match rx.recv_timeout(timeout) {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => {
                log::warn!(
                    "`{name}`: migration still running after {} ms: aborting its job",
                    timeout.as_millis()
                );
                let n = name.to_owned();
                if let Err(e) =
                    self.bounded("abort", self.cfg.start_timeout, move |hv| hv.abort_job(&n))
                {
                    log::warn!("`{name}`: abort: {e}");
                }
                // The migration call returns once its job is aborted (or has completed).
                match rx.recv_timeout(self.cfg.start_timeout) {
                    Ok(Ok(stats)) => Ok(stats),
                    Ok(Err(e)) => Err(format!(
                        "timed out after {} ms, job aborted: {e}",
                        timeout.as_millis()
                    )),
                    Err(_) => Err(format!(
                        "timed out after {} ms; the migration call did not return within {} ms \
                         of the abort",
                        timeout.as_millis(),
                        self.cfg.start_timeout.as_millis()
                    )),
                }
            }
        }?;
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

    /// Shuts a guest down (destroyed at `evacuate_timeout`), on its own thread: past
    /// `evacuate_timeout + start_timeout` it is reported [`GuestResult::TimedOut`].
    fn stop_gracefully(&self, name: &str) -> GuestResult {
        let bound = self.cfg.evacuate_timeout + self.cfg.start_timeout;
        let (tx, rx) = mpsc::channel();
        let (hv, n, evacuate_timeout) = (
            Arc::clone(&self.hv),
            name.to_owned(),
            self.cfg.evacuate_timeout,
        );
        let spawned = std::thread::Builder::new()
            .name("stop-guest".into())
            .spawn(move || {
                let _ = tx.send(stop_gracefully(&*hv, &n, evacuate_timeout));
            });
        if let Err(e) = spawned {
            return GuestResult::Failed {
                reason: format!("stop of `{name}`: no thread: {e}"),
            };
        }
        rx.recv_timeout(bound).unwrap_or_else(|_| {
            log::error!(
                "evacuate: `{name}` not confirmed stopped within {} ms: libvirt does not answer",
                bound.as_millis()
            );
            GuestResult::TimedOut {
                reason: format!(
                    "stop of `{name}`: no answer from libvirt within {} ms",
                    bound.as_millis()
                ),
            }
        })
    }
}

/// ACPI shutdown, polled until `evacuate_timeout`, then destroy.
fn stop_gracefully<H: Hypervisor + ?Sized>(
    hv: &H,
    name: &str,
    evacuate_timeout: Duration,
) -> GuestResult {
    let deadline = Instant::now() + evacuate_timeout;
    if let Err(e) = hv.shutdown(name) {
        log::warn!("evacuate: shutdown `{name}`: {e}; destroying");
    } else {
        while Instant::now() < deadline {
            match hv.state(name) {
                Ok(s) if !s.is_active() => return GuestResult::Stopped { graceful: true },
                Err(HypervisorError::NoSuchGuest(_)) => {
                    return GuestResult::Stopped { graceful: true }
                }
                _ => std::thread::sleep(SHUTDOWN_POLL),
            }
        }
        log::warn!(
            "evacuate: `{name}` did not shut down in {} ms; destroying",
            evacuate_timeout.as_millis()
        );
    }
    match hv.destroy(name) {
        Ok(()) | Err(HypervisorError::NoSuchGuest(_)) => GuestResult::Stopped { graceful: false },
        Err(e) => GuestResult::Failed {
            reason: e.to_string(),
        },
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
