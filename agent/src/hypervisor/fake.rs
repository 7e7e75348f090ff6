//! An in-memory [`Hypervisor`] for unit tests: domains, free memory, a call log, and knobs to
//! make libvirt hang or fail.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::mpsc::Sender;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{
    GuestInfo, GuestState, Hypervisor, HypervisorError, HypervisorEvent, MigrationStats,
    QemuProcess,
};

/// A fake domain.
#[derive(Debug, Clone)]
pub struct FakeDomain {
    /// UUID.
    pub uuid: String,
    /// XML as defined.
    pub xml: String,
    /// State.
    pub state: GuestState,
    /// Persistent.
    pub persistent: bool,
    /// Carries the metadata flag.
    pub flagged: bool,
    /// Memory in KiB.
    pub memory_kib: u64,
}

#[derive(Debug, Default)]
struct Inner {
    domains: BTreeMap<String, FakeDomain>,
    free_kib: u64,
    starts: BTreeMap<String, u32>,
    start_order: Vec<String>,
    in_flight: usize,
    max_in_flight: usize,
    hang: bool,
    fail_start: HashSet<String>,
    pids: BTreeMap<String, i32>,
    autostart: BTreeSet<String>,
    wait_for_overlap: bool,
    events: Option<Sender<HypervisorEvent>>,
    migrated: Vec<(String, String)>,
    unavailable: bool,
    memory_unknown: bool,
    fail_migrate: BTreeMap<String, String>,
    hang_migrate: HashSet<String>,
    aborted: Vec<String>,
    migrating: usize,
    max_migrating: usize,
    dest_free_kib: Option<u64>,
    processes: Vec<(String, i32)>,
    scan_fails: bool,
    scans: usize,
    hung_calls: HashSet<(&'static str, String)>,
    blocked: Vec<(&'static str, String)>,
    fail_define: HashSet<String>,
}

/// The fake hypervisor.
#[derive(Debug, Default)]
pub struct FakeHypervisor {
    inner: Mutex<Inner>,
    cv: Condvar,
}

/// The text of the `<domain>` root's child element `tag`, parsed like libvirt would.
fn tag(xml: &str, tag: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let node = doc
        .root_element()
        .children()
        .find(|n| n.is_element() && n.tag_name().name() == tag)?;
    Some(node.text().unwrap_or_default().to_owned())
}

impl FakeHypervisor {
    /// A fake host with `free_kib` free memory.
    pub fn new(free_kib: u64) -> FakeHypervisor {
        let f = FakeHypervisor::default();
        f.lock().free_kib = free_kib;
        f
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a persistent domain.
    pub fn add(&self, name: &str, state: GuestState, memory_kib: u64) {
        let xml = format!("<domain type='test'><name>{name}</name><memory unit='KiB'>{memory_kib}</memory></domain>");
        self.lock().domains.insert(
            name.into(),
            FakeDomain {
                uuid: format!("uuid-{name}"),
                xml,
                state,
                persistent: true,
                flagged: false,
                memory_kib,
            },
        );
    }

    /// Removes a domain (libvirt lost it: "no such domain").
    pub fn remove(&self, name: &str) {
        self.lock().domains.remove(name);
    }

    /// Changes a domain in place.
    pub fn with_domain(&self, name: &str, f: impl FnOnce(&mut FakeDomain)) {
        if let Some(d) = self.lock().domains.get_mut(name) {
            f(d);
        }
    }

    /// Marks a domain to start with the host (libvirt autostart), or not.
    pub fn set_autostart_flag(&self, name: &str, on: bool) {
        let mut g = self.lock();
        if on {
            g.autostart.insert(name.to_owned());
        } else {
            g.autostart.remove(name);
        }
    }

    /// Whether a domain starts with the host.
    pub fn autostart_of(&self, name: &str) -> bool {
        self.lock().autostart.contains(name)
    }

    /// State of a domain, if defined.
    pub fn state_of(&self, name: &str) -> Option<GuestState> {
        self.lock().domains.get(name).map(|d| d.state)
    }

    /// How many times `start` succeeded for `name`.
    pub fn starts(&self, name: &str) -> u32 {
        self.lock().starts.get(name).copied().unwrap_or(0)
    }

    /// Names in the order their starts began.
    pub fn start_order(&self) -> Vec<String> {
        self.lock().start_order.clone()
    }

    /// Most starts that were in progress at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.lock().max_in_flight
    }

    /// Makes every start wait (up to 2 s) until another start is in progress too.
    pub fn wait_for_overlap(&self) {
        self.lock().wait_for_overlap = true;
    }

    /// While set, every call blocks (a daemon that does not answer).
    pub fn set_hang(&self, hang: bool) {
        self.lock().hang = hang;
        self.cv.notify_all();
    }

    /// Makes `start` of `name` fail.
    pub fn fail_start(&self, name: &str) {
        self.lock().fail_start.insert(name.into());
    }

    /// Sets the QEMU pid reported for `name`.
    pub fn set_pid(&self, name: &str, pid: i32) {
        self.lock().pids.insert(name.into(), pid);
    }

    /// Makes `free_memory_kib` fail (a driver that cannot tell).
    pub fn set_memory_unknown(&self) {
        self.lock().memory_unknown = true;
    }

    /// While set, listing fails as if the daemon were gone.
    pub fn set_unavailable(&self, down: bool) {
        self.lock().unavailable = down;
    }

    /// Makes the migration of `name` fail with `message`.
    pub fn fail_migration(&self, name: &str, message: &str) {
        self.lock().fail_migrate.insert(name.into(), message.into());
    }

    /// Free memory the migration destination reports (default: plenty).
    pub fn set_destination_free(&self, kib: u64) {
        self.lock().dest_free_kib = Some(kib);
    }

    /// Makes the migration of `name` hang until its job is aborted.
    pub fn hang_migration(&self, name: &str) {
        self.lock().hang_migrate.insert(name.into());
    }

    /// Guests whose job was aborted.
    pub fn aborted(&self) -> Vec<String> {
        self.lock().aborted.clone()
    }

    /// Most migrations seen in flight at once.
    pub fn max_concurrent_migrations(&self) -> usize {
        self.lock().max_migrating
    }

    /// Guests migrated away, with their destination URI.
    pub fn migrated(&self) -> Vec<(String, String)> {
        self.lock().migrated.clone()
    }

    /// Lists `pid` (a real process, e.g. a `sleep` standing in for QEMU) as the QEMU of `name`
    /// in the process table: [`Hypervisor::qemu_processes`] reports it while it runs.
    pub fn add_process(&self, name: &str, pid: i32) {
        self.lock().processes.push((name.into(), pid));
    }

    /// While set, reading the process table fails.
    pub fn fail_scan(&self, fail: bool) {
        self.lock().scan_fails = fail;
    }

    /// How many times the process table was read.
    pub fn scans(&self) -> usize {
        self.lock().scans
    }

    /// Makes `op` ("define", "start", "resume", "shutdown", "destroy", "state") of `name` block until
    /// [`FakeHypervisor::release`]; the call then completes normally.
    pub fn hang_call(&self, op: &'static str, name: &str) {
        self.lock().hung_calls.insert((op, name.into()));
    }

    /// Lets hung calls of `op` on `name` complete.
    pub fn release(&self, op: &'static str, name: &str) {
        self.lock().hung_calls.remove(&(op, name.to_owned()));
        self.cv.notify_all();
    }

    /// Calls blocked by [`FakeHypervisor::hang_call`] right now.
    pub fn blocked(&self) -> Vec<(&'static str, String)> {
        self.lock().blocked.clone()
    }

    /// Makes `define` of `name` fail.
    pub fn fail_define(&self, name: &str) {
        self.lock().fail_define.insert(name.into());
    }

    /// Blocks while `op` of `name` is hung (see [`FakeHypervisor::hang_call`]).
    fn gate<'a>(
        &'a self,
        mut g: std::sync::MutexGuard<'a, Inner>,
        op: &'static str,
        name: &str,
    ) -> std::sync::MutexGuard<'a, Inner> {
        let key = (op, name.to_owned());
        if g.hung_calls.contains(&key) {
            g.blocked.push(key.clone());
            while g.hung_calls.contains(&key) {
                g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
            }
            if let Some(i) = g.blocked.iter().position(|k| *k == key) {
                g.blocked.remove(i);
            }
        }
        g
    }

    /// Sends an event to the subscriber, if any.
    pub fn emit(&self, ev: HypervisorEvent) {
        if let Some(tx) = &self.lock().events {
            let _ = tx.send(ev);
        }
    }

    /// Blocks while `hang` is set; returns the guard.
    fn call(&self) -> std::sync::MutexGuard<'_, Inner> {
        let mut g = self.lock();
        while g.hang {
            g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        g
    }

    fn get<'a>(g: &'a mut Inner, name: &str) -> Result<&'a mut FakeDomain, HypervisorError> {
        g.domains
            .get_mut(name)
            .ok_or_else(|| HypervisorError::NoSuchGuest(name.into()))
    }
}

impl Hypervisor for FakeHypervisor {
    fn list_guests(&self) -> Result<Vec<GuestInfo>, HypervisorError> {
        let g = self.call();
        if g.unavailable {
            return Err(HypervisorError::Unavailable("fake daemon down".into()));
        }
        Ok(g.domains
            .iter()
            .map(|(n, d)| GuestInfo {
                name: n.clone(),
                uuid: d.uuid.clone(),
                state: d.state,
                persistent: d.persistent,
                flagged: d.flagged,
                xml: d.xml.clone(),
                memory_kib: d.memory_kib,
            })
            .collect())
    }

    fn state(&self, name: &str) -> Result<GuestState, HypervisorError> {
        let mut g = self.gate(self.call(), "state", name);
        Ok(Self::get(&mut g, name)?.state)
    }

    fn define(&self, xml: &str) -> Result<String, HypervisorError> {
        let g = self.call();
        let name = tag(xml, "name").ok_or(HypervisorError::Failed {
            op: "define",
            name: "<xml>".into(),
            message: "no <name>".into(),
        })?;
        let name = name.as_str();
        let mut g = self.gate(g, "define", name);
        if g.fail_define.contains(name) {
            return Err(HypervisorError::Failed {
                op: "define",
                name: name.into(),
                message: "injected failure".into(),
            });
        }
        let memory_kib = tag(xml, "memory")
            .and_then(|m| m.trim().parse().ok())
            .unwrap_or(0);
        let uuid = tag(xml, "uuid").unwrap_or_else(|| format!("uuid-{name}"));
        let state = g
            .domains
            .get(name)
            .map(|d| d.state)
            .unwrap_or(GuestState::Shutoff);
        g.domains.insert(
            name.to_owned(),
            FakeDomain {
                uuid,
                xml: xml.to_owned(),
                state,
                persistent: true,
                flagged: false,
                memory_kib,
            },
        );
        Ok(name.to_owned())
    }

    fn set_autostart(&self, name: &str, on: bool) -> Result<(), HypervisorError> {
        let mut g = self.gate(self.call(), "autostart", name);
        Self::get(&mut g, name)?;
        if on {
            g.autostart.insert(name.to_owned());
        } else {
            g.autostart.remove(name);
        }
        Ok(())
    }

    fn start(&self, name: &str) -> Result<(), HypervisorError> {
        let mut g = self.gate(self.call(), "start", name);
        if Self::get(&mut g, name)?.state.is_active() {
            return Err(HypervisorError::Failed {
                op: "start",
                name: name.into(),
                message: "already active".into(),
            });
        }
        g.start_order.push(name.to_owned());
        g.in_flight += 1;
        g.max_in_flight = g.max_in_flight.max(g.in_flight);
        self.cv.notify_all();
        if g.wait_for_overlap {
            let deadline = Instant::now() + Duration::from_secs(2);
            while g.max_in_flight < 2 && Instant::now() < deadline {
                g = self
                    .cv
                    .wait_timeout(g, Duration::from_millis(20))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        g.in_flight -= 1;
        if g.fail_start.contains(name) {
            return Err(HypervisorError::Failed {
                op: "start",
                name: name.into(),
                message: "injected failure".into(),
            });
        }
        let mem = Self::get(&mut g, name)?.memory_kib;
        if mem > g.free_kib {
            return Err(HypervisorError::Failed {
                op: "start",
                name: name.into(),
                message: "out of memory".into(),
            });
        }
        g.free_kib -= mem;
        Self::get(&mut g, name)?.state = GuestState::Running;
        *g.starts.entry(name.to_owned()).or_default() += 1;
        Ok(())
    }

    fn start_paused(&self, name: &str) -> Result<(), HypervisorError> {
        self.start(name)?;
        let mut g = self.call();
        Self::get(&mut g, name)?.state = GuestState::Paused;
        Ok(())
    }

    fn resume(&self, name: &str) -> Result<(), HypervisorError> {
        let mut g = self.gate(self.call(), "resume", name);
        let d = Self::get(&mut g, name)?;
        if d.state != GuestState::Paused {
            return Err(HypervisorError::Failed {
                op: "resume",
                name: name.into(),
                message: "not paused".into(),
            });
        }
        d.state = GuestState::Running;
        Ok(())
    }

    fn shutdown(&self, name: &str) -> Result<(), HypervisorError> {
        let mut g = self.gate(self.call(), "shutdown", name);
        let d = Self::get(&mut g, name)?;
        let mem = d.memory_kib;
        d.state = GuestState::Shutoff;
        g.free_kib += mem;
        Ok(())
    }

    fn destroy(&self, name: &str) -> Result<(), HypervisorError> {
        let mut g = self.gate(self.call(), "destroy", name);
        let d = Self::get(&mut g, name)?;
        if !d.state.is_active() && d.state != GuestState::Crashed {
            return Err(HypervisorError::Failed {
                op: "destroy",
                name: name.into(),
                message: "not running".into(),
            });
        }
        let was_running = d.state.is_active();
        let mem = d.memory_kib;
        d.state = GuestState::Shutoff;
        if was_running {
            g.free_kib += mem;
        }
        Ok(())
    }

    fn migrate(
        &self,
        name: &str,
        dest_uri: &str,
        _migration_uri: Option<&str>,
    ) -> Result<MigrationStats, HypervisorError> {
        let mut g = self.call();
        let d = Self::get(&mut g, name)?;
        if !d.state.is_active() {
            return Err(HypervisorError::Failed {
                op: "migrate",
                name: name.into(),
                message: "not running".into(),
            });
        }
        g.migrating += 1;
        g.max_migrating = g.max_migrating.max(g.migrating);
        self.cv.notify_all();
        // Give concurrent migrations time to overlap (bounded parallelism is observable):
        // until two have run at once, or a generous deadline for a single worker.
        let overlap = Instant::now() + Duration::from_millis(1000);
        while g.max_migrating < 2 && Instant::now() < overlap {
            g = self
                .cv
                .wait_timeout(g, Duration::from_millis(10))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        while g.hang_migrate.contains(name) && !g.aborted.iter().any(|a| a == name) {
            g = self
                .cv
                .wait_timeout(g, Duration::from_millis(20))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        g.migrating -= 1;
        if g.aborted.iter().any(|a| a == name) {
            return Err(HypervisorError::Failed {
                op: "migrate",
                name: name.into(),
                message: "operation aborted: migration job: canceled by client".into(),
            });
        }
        if let Some(message) = g.fail_migrate.get(name).cloned() {
            return Err(HypervisorError::Failed {
                op: "migrate",
                name: name.into(),
                message,
            });
        }
        let Some(d) = g.domains.remove(name) else {
            return Err(HypervisorError::NoSuchGuest(name.into()));
        };
        g.free_kib += d.memory_kib;
        g.migrated.push((name.to_owned(), dest_uri.to_owned()));
        Ok(MigrationStats {
            elapsed_ms: Some(50),
            downtime_ms: Some(1),
        })
    }

    fn abort_job(&self, name: &str) -> Result<(), HypervisorError> {
        let mut g = self.lock();
        g.aborted.push(name.to_owned());
        self.cv.notify_all();
        Ok(())
    }

    fn free_memory_kib_at(&self, _uri: &str) -> Result<u64, HypervisorError> {
        Ok(self.lock().dest_free_kib.unwrap_or(u64::MAX / 2))
    }

    fn free_memory_kib(&self) -> Result<u64, HypervisorError> {
        let g = self.call();
        if g.memory_unknown {
            return Err(HypervisorError::Failed {
                op: "free memory",
                name: "fake".into(),
                message: "unknown".into(),
            });
        }
        Ok(g.free_kib)
    }

    fn qemu_pid(&self, name: &str) -> Option<i32> {
        // Never blocks: the pid file is read without the daemon.
        self.lock().pids.get(name).copied()
    }

    fn qemu_processes(&self) -> Result<Vec<QemuProcess>, super::ScanError> {
        // Never blocks: the process table is read without the daemon.
        let mut g = self.lock();
        g.scans += 1;
        if g.scan_fails {
            return Err(super::ScanError::Read {
                path: "/proc".into(),
                source: std::io::Error::other("injected: process table unreadable"),
            });
        }
        Ok(g.processes
            .iter()
            .filter(|(_, pid)| crate::execute::kill::is_running(*pid))
            .map(|(guest, pid)| QemuProcess {
                pid: *pid,
                guest: guest.clone(),
            })
            .collect())
    }

    fn ping(&self) -> Result<(), HypervisorError> {
        let _g = self.call();
        Ok(())
    }

    fn subscribe(&self, sink: Sender<HypervisorEvent>) -> Result<(), HypervisorError> {
        self.lock().events = Some(sink);
        Ok(())
    }
}
