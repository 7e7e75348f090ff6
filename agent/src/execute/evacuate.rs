//! Evacuate and Migrate, carried out: this blade's running protected guests live-migrated to
//! the partner a bounded number at once (each bounded by `migration_timeout`, its job aborted
//! past it), or shut down here (destroyed at `evacuate_timeout`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::deadline::{self, DeadlineError};
use super::{lock, ms, Agent, AgentError, SHUTDOWN_POLL};
use crate::decide::evacuate::{route, Room, Route};
use crate::decide::orders::by_priority;
use crate::failure::{Failure, MigrationFailure};
use crate::hypervisor::{GuestInfo, Hypervisor, HypervisorError};
use crate::order::{GuestOutcome, GuestResult, Order, OrderResult};

impl<H: Hypervisor + 'static> Agent<H> {
    // ----- Evacuate -----

    /// Evacuate (`live_only` false) or Migrate (`live_only` true) this blade's running
    /// protected guests to `to_slot`: `zero_downtime.migration_workers` migrations at once,
    /// each bounded by `zero_downtime.migration_timeout` (then its job is aborted). A guest
    /// that does not migrate is stopped here on Evacuate (the partner starts it after the
    /// fence) and left running on Migrate.
    pub(super) fn evacuate(
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
        by_priority(&mut protected, |g| &g.name, |n| self.cfg.priority_of(n));
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
            self.guests
                .stopping(protected.iter().map(|g| g.name.clone()));
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
        let room = Mutex::new(Room {
            slot: to_slot,
            free_kib: dest.map_or(u64::MAX, |uri| {
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
            }),
        });
        let queue = Mutex::new(protected.into_iter().collect::<VecDeque<GuestInfo>>());
        let results = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let Some(g) = lock(&queue).pop_front() else {
                        break;
                    };
                    let standby = self.warm_standby_listed(&g.name);
                    let result = match route(g.state.is_active(), standby, live_only, dest) {
                        Route::AlreadyStopped => GuestResult::Stopped { graceful: true },
                        Route::KeepRunning(why) => GuestResult::Failed {
                            reason: Failure::Migration(why),
                        },
                        Route::Stop => self.stop_gracefully(&g.name),
                        Route::Migrate(uri) => self.migrate_one(order, &g, uri, &room, live_only),
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

    /// One guest's migration (its room taken from `room` first); on Evacuate a guest that does
    /// not migrate is stopped here.
    fn migrate_one(
        &self,
        order: &Order,
        g: &GuestInfo,
        uri: &str,
        room: &Mutex<Room>,
        live_only: bool,
    ) -> GuestResult {
        // The room is taken under its lock, released before the migration.
        let taken = lock(room).take(g.memory_kib);
        let migrated = taken.and_then(|()| {
            self.migrate_bounded(&g.name, uri).inspect_err(|_| {
                // Not moved: its room is free again.
                lock(room).give_back(g.memory_kib);
            })
        });
        match migrated {
            Ok(r) => r,
            Err(why) if live_only => GuestResult::Failed {
                reason: Failure::Migration(why),
            },
            Err(why) => {
                log::warn!(
                    "{}: `{}`: migration failed ({why}); stopping it here, the partner starts it after the fence",
                    order.key(),
                    g.name
                );
                self.guests.stopping([g.name.clone()]);
                match self.stop_gracefully(&g.name) {
                    GuestResult::Stopped { graceful } => GuestResult::StoppedAfterMigration {
                        reason: why,
                        graceful,
                    },
                    other => other,
                }
            }
        }
    }

    /// One live migration, bounded by `zero_downtime.migration_timeout`: past it the job is
    /// aborted (the guest stays here). Ok with the result to report, Err with why it failed.
    /// The abort and the migration call's return after it each get `start_timeout`; a call
    /// that still does not return is left on its thread and the migration counts as failed
    /// (the guest is then stopped here on Evacuate, which a completed migration makes moot).
    fn migrate_bounded(&self, name: &str, dest_uri: &str) -> Result<GuestResult, MigrationFailure> {
        let timeout = self.cfg.zero_downtime.migration_timeout;
        let t0 = Instant::now();
        let (hv, n, dest, via) = (
            Arc::clone(&self.hv),
            name.to_owned(),
            dest_uri.to_owned(),
            self.cfg.partner.migration_uri.clone(),
        );
        let pending = deadline::spawn(format!("migration of `{name}`"), "migrate", move |reply| {
            let _ = reply.send(hv.migrate(&n, &dest, via.as_deref()));
        })
        .map_err(|e| MigrationFailure::NoThread(e.to_string()))?;
        let after_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let result = match pending.wait(timeout) {
            Ok(r) => r.map_err(|e| MigrationFailure::Hypervisor {
                detail: e.to_string(),
            }),
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
                match pending.wait(self.cfg.start_timeout) {
                    Ok(Ok(stats)) => Ok(stats),
                    Ok(Err(e)) => Err(MigrationFailure::Aborted {
                        after_ms,
                        detail: e.to_string(),
                    }),
                    Err(_) => Err(MigrationFailure::NoReturn {
                        after_ms,
                        abort_ms: u64::try_from(self.cfg.start_timeout.as_millis())
                            .unwrap_or(u64::MAX),
                    }),
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
        let (hv, n, evacuate_timeout) = (
            Arc::clone(&self.hv),
            name.to_owned(),
            self.cfg.evacuate_timeout,
        );
        let stopped = deadline::run(
            format!("stop of `{name}`"),
            "stop-guest",
            bound,
            move || stop_gracefully(&*hv, &n, evacuate_timeout),
        );
        match stopped {
            Ok(r) => r,
            Err(DeadlineError::Exceeded(e)) => {
                log::error!(
                    "evacuate: `{name}` not confirmed stopped within {} ms: libvirt does not answer",
                    bound.as_millis()
                );
                GuestResult::TimedOut { reason: e }
            }
            Err(DeadlineError::NoThread { what, source }) => GuestResult::Failed {
                reason: Failure::NoThread {
                    what,
                    detail: source.to_string(),
                },
            },
        }
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
        Err(e) => GuestResult::Failed { reason: e.into() },
    }
}
