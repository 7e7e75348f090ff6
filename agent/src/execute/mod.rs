//! Carrying out the ShMC's orders, behind the [`Hypervisor`] trait: accepting orders (with the
//! journal for duplicates and restarts), taking over the partner's guests, self-fencing,
//! restarting a crashed guest, evacuating, and keeping the definitions exchanged with the
//! partner. This is where threads, deadlines and hypervisor calls live; what to do is asked of
//! [`crate::decide`].
//!
//! Files: this one holds the [`Agent`] (state, acceptance, dispatch, the journal record of each
//! outcome); `deadline` (running a call with a deadline), `guests` (the guest table, also the
//! start gate), `takeover` (RestartPartnerGuests, RestartGuest), `fence` (FenceSelf,
//! DestroyGuest), `kill` (killing a QEMU directly and accounting for guests from the agent's
//! own readings), `evacuate` (Evacuate, Migrate), `standby` (warm standbys), `definitions`
//! (the definitions exchanged with the partner), `partner` (the partner's heartbeats and this
//! blade's `running` reading: the second line against a double start).
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

pub mod deadline;
mod definitions;
mod evacuate;
mod fence;
mod guests;
pub mod kill;
mod partner;
mod standby;
mod takeover;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::decide::orders::precondition;
use crate::failure::Failure;
use crate::hypervisor::{
    GuestInfo, GuestState, Hypervisor, HypervisorError, QemuProcess, ScanError,
};
use crate::order::{GuestOutcome, GuestResult, Order, OrderResult, Refusal};
use crate::store::definitions::{DefinitionError, PartnerStore};
use crate::store::fenced;
use crate::store::journal::{self, Begin, Journal, JournalError, OrderRecord, Stamp, TakenOver};
use crate::store::protected::ProtectedSet;
use deadline::DeadlineError;
use guests::GuestTable;

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

/// The agent core. Shared between threads (`Arc<Agent<H>>`).
pub struct Agent<H: Hypervisor> {
    hv: Arc<H>,
    cfg: Config,
    journal: Mutex<Journal>,
    partner: Mutex<PartnerStore>,
    /// The orders being carried out right now (journal keys).
    running: Mutex<HashMap<String, Order>>,
    /// Per guest: stopping on order, starts inside libvirt, standby refusal; the protected
    /// set and the fenced flag (see [`GuestTable`]).
    guests: Arc<GuestTable>,
    /// FenceSelf orders an earlier process accepted and did not finish (journal keys).
    inherited_fences: Mutex<HashSet<String>>,
    /// The kernel's boot id at start (`None`: not readable), recorded with a fence and with
    /// every order accepted.
    boot_id: Option<String>,
    /// Orders accepted (or resumed) by this process (journal keys); an unfinished order not
    /// among them was accepted by an earlier process.
    accepted_here: Mutex<HashSet<String>>,
    /// Protected guests whose libvirt autostart this process cleared.
    autostart_cleared: Mutex<HashSet<String>>,
    /// The partner's latest heartbeat and this blade's `running` reading.
    pair: partner::Pair,
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
        let boot_id = fenced::boot_id(boot_id_file);
        let guests = GuestTable::new(ProtectedSet::open(&cfg.state_dir));
        if let Some(why) = fenced::in_force(&cfg.state_dir, boot_id.as_deref()) {
            log::warn!("this blade is fenced: {why}; it starts nothing until it reboots");
            guests.set_fenced();
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
            guests.set_fenced();
        }
        Ok(Agent {
            hv,
            cfg,
            journal: Mutex::new(journal),
            partner: Mutex::new(partner),
            running: Mutex::new(HashMap::new()),
            guests: Arc::new(guests),
            inherited_fences: Mutex::new(inherited_fences),
            boot_id,
            accepted_here: Mutex::new(HashSet::new()),
            autostart_cleared: Mutex::new(HashSet::new()),
            pair: partner::Pair::default(),
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
        self.guests.is_fenced()
    }

    /// Orders accepted before an agent restart and not finished; the caller hands each to
    /// [`Agent::accept`] again, which resumes it or, for a stale order that starts guests,
    /// closes it as abandoned (see there).
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
    ///
    /// An unfinished order accepted by an earlier agent process is resumed, except an order
    /// that starts guests ([`Order::starts_guests`]) accepted in another boot (or in an unknown
    /// one), or `start_timeout_ms` or longer ago (`CLOCK_BOOTTIME`): the fence or failure it
    /// relied on is a reading of the past, the partner may run those guests again by now. It
    /// is closed as abandoned instead: nothing is started, each guest without a recorded
    /// outcome is reported not started ([`Failure::Abandoned`]) and the journal record is
    /// finished, so the ShMC reports them and the operator decides. A FenceSelf finished in
    /// another boot is carried out again (fresh readings), not answered from the journal.
    pub fn accept(&self, order: &Order) -> Result<Acceptance, AgentError> {
        if let Err(refusal) = precondition(order, self.cfg.partner.slot, self.is_fenced()) {
            log::warn!("refusing {}: {refusal}", order.key());
            return Ok(Acceptance::Refused(refusal));
        }
        let key = order.key();
        let mut running = lock(&self.running);
        if running.contains_key(&key) {
            return Ok(Acceptance::InProgress);
        }
        let stamp = Stamp {
            boot_id: self.boot_id.clone(),
            boottime_ms: journal::boottime_ms(),
        };
        let begun = lock(&self.journal).begin(order, &stamp)?;
        match begun {
            Begin::Done(rec)
                if matches!(order, Order::FenceSelf { .. })
                    && !same_boot(rec.boot_id.as_deref(), self.boot_id.as_deref()) =>
            {
                log::warn!(
                    "{key}: finished in another boot ({}): carried out again with fresh readings",
                    rec.boot_id.as_deref().unwrap_or("unknown")
                );
                lock(&self.journal).restart(order, &stamp)?;
                self.accepted_new(order, key, &mut running);
                Ok(Acceptance::Execute)
            }
            Begin::Done(rec) => {
                log::info!("{key}: duplicate of a finished order, repeating its result");
                Ok(Acceptance::Done {
                    outcomes: rec.outcomes,
                    result: rec.result.unwrap_or(OrderResult::Guests(Vec::new())),
                })
            }
            Begin::Unfinished(rec) => {
                let inherited = !lock(&self.accepted_here).contains(&key);
                if inherited && order.starts_guests() {
                    if let Some(why) = self.stale(&rec) {
                        return self.abandon(order, rec, &why);
                    }
                }
                log::info!("{key}: resuming an order interrupted by an agent restart");
                lock(&self.accepted_here).insert(key.clone());
                self.mark_partner_beats(order);
                running.insert(key, order.clone());
                Ok(Acceptance::Execute)
            }
            Begin::New => {
                log::info!("{key}: accepted");
                self.accepted_new(order, key, &mut running);
                Ok(Acceptance::Execute)
            }
        }
    }

    /// An order (newly) accepted: a FenceSelf is recorded in the fence record; the order is
    /// marked running.
    fn accepted_new(&self, order: &Order, key: String, running: &mut HashMap<String, Order>) {
        if matches!(order, Order::FenceSelf { .. }) {
            // Recorded before it is acknowledged: a restarted agent stays fenced
            // until the blade reboots.
            if let Err(e) = fenced::save(&self.cfg.state_dir, self.boot_id.as_deref(), &key) {
                log::error!(
                    "{key}: cannot record the fence ({e}): a restarted agent would not \
                     know this blade is fenced"
                );
            }
        }
        lock(&self.accepted_here).insert(key.clone());
        self.mark_partner_beats(order);
        running.insert(key, order.clone());
    }

    /// Why an unfinished order of an earlier process is too old to start guests now, if it is.
    fn stale(&self, rec: &OrderRecord) -> Option<String> {
        match (rec.boot_id.as_deref(), self.boot_id.as_deref()) {
            (Some(then), Some(now)) if then == now => {}
            (None, _) => return Some("accepted in an unknown boot (no boot id recorded)".into()),
            (_, None) => return Some("the boot id of this boot cannot be read".into()),
            (Some(then), Some(_)) => return Some(format!("accepted in an earlier boot ({then})")),
        }
        let bound = u64::try_from(self.cfg.start_timeout.as_millis()).unwrap_or(u64::MAX);
        match (rec.accepted_boottime_ms, journal::boottime_ms()) {
            (Some(then), Some(now)) => {
                let age = now.saturating_sub(then);
                (age >= bound)
                    .then(|| format!("accepted {age} ms ago, start_timeout_ms is {bound}"))
            }
            (None, _) => Some("its acceptance time was not recorded".into()),
            (_, None) => Some("the boot time cannot be read".into()),
        }
    }

    /// Closes a stale order that starts guests without starting anything (see
    /// [`Agent::accept`]).
    fn abandon(
        &self,
        order: &Order,
        rec: OrderRecord,
        why: &str,
    ) -> Result<Acceptance, AgentError> {
        let key = order.key();
        let names: Vec<String> = match order {
            Order::RestartGuest { name, .. } => vec![name.clone()],
            Order::RestartPartnerGuests {
                subset: Some(s), ..
            } => s.clone(),
            Order::RestartPartnerGuests { subset: None, .. } => {
                lock(&self.partner).all().map(|d| d.name.clone()).collect()
            }
            _ => Vec::new(),
        };
        log::error!(
            "{key}: accepted by an earlier agent process and not finished, ABANDONED: {why}; \
             nothing is started, {} guest(s) reported not started, the operator decides",
            names.len()
        );
        let mut outcomes = rec.outcomes;
        for name in names {
            if outcomes.iter().any(|o| o.name == name) {
                continue;
            }
            log::warn!("{key}: `{name}` not started (order abandoned)");
            let o = GuestOutcome {
                incident: order.incident(),
                name,
                result: GuestResult::Failed {
                    reason: Failure::Abandoned {
                        detail: why.to_owned(),
                    },
                },
                elapsed_ms: 0,
            };
            lock(&self.journal).record_outcome(order, &o)?;
            outcomes.push(o);
        }
        let result = OrderResult::Guests(outcomes.clone());
        lock(&self.journal).finish(order, &result)?;
        Ok(Acceptance::Done { outcomes, result })
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
                let report = self.fence_self(started, !inherited);
                self.note_fenced(report.failed);
                Ok(OrderResult::Fenced(report))
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
                return Ok(OrderResult::Refused(Refusal::Hypervisor(e.into())));
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

    /// Lists the guests within `timeout` and refreshes the protected set from the listing.
    /// Runs one hypervisor call on its own thread and waits for it up to `timeout`; past it
    /// the call is left blocked on its thread and [`HypervisorError::NoAnswer`] is returned.
    fn bounded<T: Send + 'static>(
        &self,
        what: &str,
        timeout: Duration,
        call: impl FnOnce(&H) -> Result<T, HypervisorError> + Send + 'static,
    ) -> Result<T, HypervisorError> {
        let hv = Arc::clone(&self.hv);
        match deadline::run(what, "libvirt-call", timeout, move || call(&*hv)) {
            Ok(r) => r,
            Err(DeadlineError::Exceeded(e)) => Err(HypervisorError::NoAnswer(e)),
            Err(e @ DeadlineError::NoThread { .. }) => {
                Err(HypervisorError::Unavailable(e.to_string()))
            }
        }
    }

    /// One reading of this blade's QEMU processes, bounded by [`KILL_WAIT`] (a process stuck
    /// in the kernel can block a reader of its command line).
    fn scan_bounded(&self) -> Result<Vec<QemuProcess>, ScanError> {
        let hv = Arc::clone(&self.hv);
        match deadline::run("process table", "qemu-scan", KILL_WAIT, move || {
            hv.qemu_processes()
        }) {
            Ok(r) => r,
            Err(DeadlineError::Exceeded(e)) => Err(ScanError::NoAnswer {
                within_ms: e.within_ms,
            }),
            Err(DeadlineError::NoThread { source, .. }) => Err(ScanError::NoThread(source)),
        }
    }

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
    /// Also the `running` reading of the heartbeats: the protected guests with a QEMU (a
    /// crashed one that libvirt preserves holds its QEMU and disks too).
    fn note_listing(&self, all: &[GuestInfo], at: Instant) {
        let protected = self.protected_of(all);
        let active = protected
            .iter()
            .filter(|g| g.state.is_active() || g.state == GuestState::Crashed)
            .count();
        let names: Vec<String> = protected.iter().map(|g| g.name.clone()).collect();
        self.guests.protected(|p| p.listed(names, at));
        self.note_active(at, active);
    }

    /// Whether a lifecycle crash of `name` should be reported to the ShMC.
    /// Not for a guest this agent is stopping on order (DestroyGuest, Evacuate): killing its
    /// QEMU looks like a crash to libvirt.
    pub fn reports_crash_of(&self, name: &str) -> bool {
        !self.is_fenced() && self.guests.crash_is_news(name)
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
}

/// Whether a record of boot `then` is of the boot `now` (an unknown boot is another one).
fn same_boot(then: Option<&str>, now: Option<&str>) -> bool {
    matches!((then, now), (Some(a), Some(b)) if a == b)
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
