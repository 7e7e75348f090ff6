//! FenceSelf and DestroyGuest, carried out: no start begins any more, every protected guest is
//! stopped at once, and each is accounted for with the agent's own readings ([`super::kill`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use super::kill::{self, Accounted, Prior};
use super::{deadline, ms, Agent, AgentError, KILL_WAIT};
use crate::config::Protection;
use crate::decide::fence::tally;
use crate::failure::Failure;
use crate::hypervisor::{GuestInfo, Hypervisor, HypervisorError};
use crate::order::{FenceReport, GuestOutcome, GuestResult, Order, OrderResult, Refusal};

impl<H: Hypervisor + 'static> Agent<H> {
    // ----- FenceSelf -----

    /// Destroys every protected guest and accounts for each one with a fresh reading:
    /// 1. no start begins any more (with `fence_blade`), and the starts inside libvirt get
    ///    `fence_timeout` to return; those still inside count as remaining (a pending call
    ///    may create a QEMU after any reading);
    /// 2. libvirt lists the guests within `fence_timeout` (the listing refreshes the stored
    ///    protected set); each active protected guest is stopped at once ([`kill::stop_now`]);
    /// 3. then, whatever libvirt said (it can lose track of a QEMU and list a running guest
    ///    "shut off"), every protected name (libvirt's protected guests, the stored protected
    ///    set, the configured list) is accounted for with the agent's own readings
    ///    ([`kill::account`]: pid file and process-table scan, SIGKILL, seen gone). When
    ///    libvirt does not list and the protected set is not known either, every QEMU the scan
    ///    finds is killed, and a failed scan leaves at least one guest remaining.
    ///
    /// With `fence_blade`, this agent then refuses every start (see [`Agent::is_fenced`]).
    pub(super) fn fence_self(&self, started: Instant, fence_blade: bool) -> FenceReport {
        let in_flight = self.guests.close(fence_blade, self.cfg.fence_timeout);
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
        let stored = self.guests.protected(|p| p.names().cloned());
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
                let mut asked = Vec::new();
                for g in protected {
                    if !g.state.is_active() {
                        prior.insert(g.name.clone(), Prior::LibvirtInactive);
                        continue;
                    }
                    prior.insert(g.name.clone(), Prior::Nothing);
                    // Its death must not be reported as a crash.
                    self.guests.stopping([g.name.clone()]);
                    let hv = Arc::clone(&self.hv);
                    let n = g.name.clone();
                    match deadline::spawn(
                        format!("destroy of `{n}`"),
                        "fence-destroy",
                        move |reply| {
                            kill::stop_now(&*hv, &n, KILL_WAIT, |r| {
                                let _ = reply.send(r);
                            });
                        },
                    ) {
                        Ok(p) => asked.push((g.name, p)),
                        Err(e) => log::warn!("fence: {e}"),
                    }
                }
                // One deadline for all of them: they run at once.
                let mut unanswered = BTreeSet::new();
                for (name, pending) in asked {
                    let Ok(r) = pending.wait_until(deadline) else {
                        unanswered.insert(name);
                        continue;
                    };
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
                if !unanswered.is_empty() {
                    log::warn!(
                        "fence: libvirt did not destroy {unanswered:?} within {} ms; killing their QEMU",
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
        self.guests.stopping(prior.keys().cloned());
        done.extend(kill::account(&*self.hv, &prior, &scan, KILL_WAIT));
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
        let (report, remaining) = tally(done, ms(started));
        for (name, why) in remaining {
            log::error!("fence: `{name}` not confirmed stopped: {why}");
        }
        report
    }

    // ----- DestroyGuest -----

    pub(super) fn destroy_guest(
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
        let stored = self.guests.protected(|p| p.contains(name));
        let protected = match self.list_bounded("destroy: list", self.cfg.fence_timeout) {
            Ok(all) => stored || self.protected_of(&all).iter().any(|g| g.name == name),
            Err(e) => {
                log::warn!(
                    "{}: {e}; deciding from the stored protected set",
                    order.key()
                );
                let (unknown, listed) = self
                    .guests
                    .protected(|set| (set.names().is_none(), set.contains(name)));
                unknown
                    || listed
                    || matches!(&self.cfg.protection, Protection::List(l) if l.iter().any(|n| n == name))
            }
        };
        if !protected {
            log::warn!("{}: `{name}` is not a protected guest here", order.key());
            return Ok(OrderResult::Refused(Refusal::NotProtected(name.to_owned())));
        }
        self.guests.stopping([name.to_owned()]);
        let deadline = started + self.cfg.fence_timeout;
        let (hv, n) = (Arc::clone(&self.hv), name.to_owned());
        let answer = deadline::spawn(format!("destroy of `{name}`"), "destroy", move |reply| {
            kill::stop_now(&*hv, &n, KILL_WAIT, |r| {
                let _ = reply.send(r);
            });
        })
        .ok()
        .and_then(|p| p.wait_until(deadline).ok());
        let (prior, libvirt) = match answer {
            Some(Ok(Some(pid))) => (
                Prior::Killed,
                Libvirt::Said(format!("QEMU pid {pid} killed")),
            ),
            Some(Ok(None)) => (
                Prior::Destroyed,
                Libvirt::Said("destroyed through libvirt".into()),
            ),
            Some(Err(HypervisorError::NoSuchGuest(_))) => (
                Prior::LibvirtInactive,
                Libvirt::Said("libvirt has no such domain".into()),
            ),
            // "not running" and the like: the process table decides.
            Some(Err(e)) => (Prior::Nothing, Libvirt::Failed(e)),
            None => (
                Prior::Nothing,
                Libvirt::Said("libvirt did not answer".into()),
            ),
        };
        let result = self.kill_guest(name, prior, &libvirt);
        self.single_outcome(order, incident, name, result, started, emit)
    }

    /// Accounts for one guest with the agent's own readings ([`kill::account`]) after
    /// libvirt's destroy: `prior` and `libvirt` are what libvirt did or said. libvirt can lose
    /// track of a QEMU, so the process table is read whatever it said. Destroyed only on a
    /// positive reading.
    fn kill_guest(&self, name: &str, prior: Prior, libvirt: &Libvirt) -> GuestResult {
        let scan = self.scan_bounded();
        let prior = BTreeMap::from([(name.to_owned(), prior)]);
        match kill::account(&*self.hv, &prior, &scan, KILL_WAIT).remove(name) {
            Some(Accounted::Killed) => {
                log::warn!("`{name}`: QEMU killed directly ({libvirt})");
                GuestResult::Destroyed { killed: true }
            }
            Some(Accounted::NotRunning | Accounted::Destroyed) => {
                log::info!("`{name}`: no QEMU of it runs ({libvirt})");
                GuestResult::Destroyed { killed: false }
            }
            Some(Accounted::Remaining(why)) => GuestResult::Failed {
                reason: Failure::NotStopped {
                    detail: format!("{why}; {libvirt}"),
                    hypervisor_unavailable: libvirt.unavailable(),
                },
            },
            None => GuestResult::Failed {
                reason: Failure::NotStopped {
                    detail: format!("not accounted for; {libvirt}"),
                    hypervisor_unavailable: libvirt.unavailable(),
                },
            },
        }
    }
}

/// What libvirt did or said about a destroy, for the log and the failure.
enum Libvirt {
    /// What it did (log text).
    Said(String),
    /// Its error.
    Failed(HypervisorError),
}

impl Libvirt {
    /// Whether libvirt could not be reached.
    fn unavailable(&self) -> bool {
        matches!(
            self,
            Libvirt::Failed(HypervisorError::Unavailable(_) | HypervisorError::NoAnswer(_))
        )
    }
}

impl std::fmt::Display for Libvirt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Libvirt::Said(s) => f.write_str(s),
            Libvirt::Failed(e) => e.fmt(f),
        }
    }
}
