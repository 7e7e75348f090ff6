//! [`Hypervisor`] over libvirt (`virt` crate). Safe code only; lifecycle events come from the
//! shim in `events`.
//!
//! The connection is opened on its own thread and reopened after a failure: a call that fails
//! because the daemon is gone drops the connection, and the next call (typically the
//! heartbeat's [`Hypervisor::ping`]) begins a new attempt, which re-registers the event
//! subscription. A call waits for an attempt at most [`CONNECT_WAIT`] after it began; a daemon
//! that accepts the socket and never answers (stopped, hung) leaves its attempt blocked on its
//! thread and every call fails at once, so the agent starts, registers, answers and fences
//! (by the process table) without libvirt, and the watchdog reports HypervisorDown. libvirt
//! calls are made on a clone of the connection (a reference count), never under the lock, so a
//! hung daemon blocks only the calling thread.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::{Domain, DomainState, MigrateParameters};
use virt::error::ErrorNumber;
use virt::sys;

use super::events::{self, Registration};
use super::procscan;
use super::{
    GuestInfo, GuestState, Hypervisor, HypervisorError, HypervisorEvent, MigrationStats,
    QemuProcess, METADATA_URI,
};

/// libvirt keepalive: probe every `KEEPALIVE_INTERVAL_S` seconds, give up after
/// `KEEPALIVE_COUNT` unanswered probes (the connection is then closed and reported).
const KEEPALIVE_INTERVAL_S: i32 = 1;
/// See [`KEEPALIVE_INTERVAL_S`].
const KEEPALIVE_COUNT: u32 = 3;

/// libvirt's statistics of the migration job that just completed, read on the destination
/// (`VIR_DOMAIN_JOB_STATS_COMPLETED`): the source no longer has the domain (undefined there).
/// Unknown values (destination not reachable from here, old libvirt) are `None`.
fn completed_job_stats(dest_uri: &str, name: &str) -> MigrationStats {
    let stats = Connect::open(Some(dest_uri)).and_then(|c| {
        c.lookup_domain_by_name(name)
            .and_then(|d| d.job_stats(sys::VIR_DOMAIN_JOB_STATS_COMPLETED))
    });
    match stats {
        Ok(s) => MigrationStats {
            elapsed_ms: s.time_elapsed,
            downtime_ms: s.downtime,
        },
        Err(e) => {
            log::warn!("`{name}`: migration statistics not available from {dest_uri}: {e}");
            MigrationStats::default()
        }
    }
}

/// How long a call waits for a connection attempt in progress, counted from the attempt's
/// start. Past it, calls fail at once ([`HypervisorError::Unavailable`]) while the attempt
/// stays blocked on its own thread (a hung daemon accepts the socket and never answers).
pub const CONNECT_WAIT: Duration = Duration::from_secs(2);

/// The connection and the attempt to open one.
#[derive(Default)]
struct LinkState {
    conn: Option<Connect>,
    /// When the attempt in progress began (`None`: none in progress).
    attempt: Option<Instant>,
    /// Number of attempts begun, and of attempts finished.
    begun: u64,
    finished: u64,
    /// Why the last attempt failed.
    last_error: String,
}

/// What the connection threads share.
struct Link {
    uri: String,
    state: Mutex<LinkState>,
    cv: Condvar,
    sink: Mutex<Option<Sender<HypervisorEvent>>>,
    registration: Mutex<Option<Registration>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Link {
    /// The open connection. Without one, an attempt to open it is begun on its own thread
    /// (unless one is in progress) and waited for until [`CONNECT_WAIT`] after it began.
    fn conn(self: &Arc<Self>) -> Result<Connect, HypervisorError> {
        let mut g = lock(&self.state);
        if let Some(c) = &g.conn {
            return Ok(c.clone());
        }
        if g.attempt.is_none() {
            g.begun += 1;
            g.attempt = Some(Instant::now());
            let (link, n) = (Arc::clone(self), g.begun);
            let spawned = std::thread::Builder::new()
                .name("libvirt-connect".into())
                .spawn(move || link.attempt(n));
            if let Err(e) = spawned {
                g.attempt = None;
                g.finished = g.begun;
                return Err(HypervisorError::Unavailable(format!(
                    "{}: no thread to connect: {e}",
                    self.uri
                )));
            }
        }
        let (n, began) = (g.begun, g.attempt.unwrap_or_else(Instant::now));
        let until = began + CONNECT_WAIT;
        loop {
            if let Some(c) = &g.conn {
                return Ok(c.clone());
            }
            if g.finished >= n {
                return Err(HypervisorError::Unavailable(g.last_error.clone()));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HypervisorError::Unavailable(format!(
                    "{}: libvirt has not answered the connection for {} ms (still trying)",
                    self.uri,
                    began.elapsed().as_millis()
                )));
            }
            g = match self.cv.wait_timeout(g, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Attempt `n` to open the connection (on its own thread: it may block for as long as the
    /// daemon does not answer). The event subscription is registered before the connection
    /// is used.
    fn attempt(self: &Arc<Self>, n: u64) {
        let r = Connect::open(Some(&self.uri));
        let mut g = lock(&self.state);
        g.attempt = None;
        g.finished = n;
        match r {
            Ok(c) => {
                drop(g);
                if let Err(e) = c.set_keep_alive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT) {
                    log::debug!("{}: keepalive not available: {e}", self.uri);
                }
                let sink = lock(&self.sink).clone();
                if let Some(sink) = sink {
                    if let Err(e) = self.register(&c, sink) {
                        log::error!("{e}");
                    }
                }
                log::info!("{}: connected", self.uri);
                g = lock(&self.state);
                g.conn = Some(c);
            }
            Err(e) => {
                g.last_error = format!("{}: {e}", self.uri);
                log::warn!("{}", g.last_error);
            }
        }
        drop(g);
        self.cv.notify_all();
    }

    fn register(&self, c: &Connect, sink: Sender<HypervisorEvent>) -> Result<(), HypervisorError> {
        let reg = events::register(c, sink).map_err(|e| HypervisorError::Failed {
            op: "subscribe",
            name: self.uri.clone(),
            message: e.to_string(),
        })?;
        // Replacing drops the previous registration (deregisters it on the old connection).
        *lock(&self.registration) = Some(reg);
        Ok(())
    }

    fn drop_connection(&self) {
        lock(&self.registration).take();
        lock(&self.state).conn.take();
    }
}

/// The libvirt implementation of [`Hypervisor`].
pub struct LibvirtHypervisor {
    uri: String,
    qemu_run_dir: PathBuf,
    link: Arc<Link>,
}

impl std::fmt::Debug for LibvirtHypervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibvirtHypervisor")
            .field("uri", &self.uri)
            .finish()
    }
}

impl LibvirtHypervisor {
    /// Whether the domain starts with the host (libvirt autostart).
    pub fn autostart(&self, name: &str) -> Result<bool, HypervisorError> {
        self.lookup(name)?
            .autostart()
            .map_err(|e| self.error("autostart", name, e))
    }

    /// Starts libvirt's event loop (once per process) and begins connecting to `uri`,
    /// waiting at most [`CONNECT_WAIT`]: a daemon that is down or does not answer is not
    /// fatal (the heartbeat's ping reconnects and reports health; calls fail meanwhile).
    pub fn open(uri: &str, qemu_run_dir: PathBuf) -> Result<LibvirtHypervisor, HypervisorError> {
        events::start_event_loop().map_err(HypervisorError::Unavailable)?;
        virt::error::clear_error_callback();
        let hv = LibvirtHypervisor {
            uri: uri.to_owned(),
            qemu_run_dir,
            link: Arc::new(Link {
                uri: uri.to_owned(),
                state: Mutex::new(LinkState::default()),
                cv: Condvar::new(),
                sink: Mutex::new(None),
                registration: Mutex::new(None),
            }),
        };
        if let Err(e) = hv.conn() {
            log::error!("{e}");
        }
        Ok(hv)
    }

    /// The libvirt URI this hypervisor talks to.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The open connection (see [`Link::conn`]): opened on its own thread, waited for at
    /// most [`CONNECT_WAIT`] after the attempt began.
    fn conn(&self) -> Result<Connect, HypervisorError> {
        self.link.conn()
    }

    /// Maps a libvirt error; errors meaning "the daemon is gone" also drop the connection.
    fn error(&self, op: &'static str, name: &str, e: virt::error::Error) -> HypervisorError {
        let code = e.code();
        if code.is(ErrorNumber::NoDomain) {
            return HypervisorError::NoSuchGuest(name.to_owned());
        }
        if code.is_any(vec![
            ErrorNumber::NoConnect,
            ErrorNumber::InvalidConn,
            ErrorNumber::SystemError,
            ErrorNumber::Rpc,
        ]) {
            self.drop_connection();
            return HypervisorError::Unavailable(format!("{op} `{name}`: {e}"));
        }
        HypervisorError::failed(op, name, e.message().to_owned())
    }

    fn drop_connection(&self) {
        self.link.drop_connection();
    }

    fn lookup(&self, name: &str) -> Result<Domain, HypervisorError> {
        let c = self.conn()?;
        c.lookup_domain_by_name(name)
            .map_err(|e| self.error("lookup", name, e))
    }

    fn info(&self, d: &Domain) -> Result<GuestInfo, HypervisorError> {
        let name = d.name().map_err(|e| self.error("name", "?", e))?;
        let uuid = d.uuid_string().map_err(|e| self.error("uuid", &name, e))?;
        let (state, _) = d.state().map_err(|e| self.error("state", &name, e))?;
        let persistent = d
            .is_persistent()
            .map_err(|e| self.error("persistent", &name, e))?;
        let flags = if persistent {
            sys::VIR_DOMAIN_XML_INACTIVE | sys::VIR_DOMAIN_XML_SECURE
        } else {
            sys::VIR_DOMAIN_XML_SECURE
        };
        let xml = d.xml_desc(flags).map_err(|e| self.error("xml", &name, e))?;
        let flagged = d
            .metadata(
                sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
                Some(METADATA_URI),
                sys::VIR_DOMAIN_AFFECT_CONFIG,
            )
            .is_ok();
        let memory_kib = d.max_memory().map_err(|e| self.error("memory", &name, e))?;
        Ok(GuestInfo {
            name,
            uuid,
            state: map_state(state.unwrap_or(DomainState::NoState)),
            persistent,
            flagged,
            xml,
            memory_kib,
        })
    }
}

/// PID of `name`'s QEMU from `<run_dir>/<name>.pid`, only if that process's command line
/// names the guest (`-name guest=<name>,...`, see [`procscan::guest_of`]): a stale pid file whose number was reused by
/// another process is never believed.
pub fn qemu_pid_from(run_dir: &Path, name: &str) -> Option<i32> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let file = run_dir.join(format!("{name}.pid"));
    let pid = std::fs::read_to_string(&file)
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|&p| p > 1)?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let names_guest = procscan::guest_of(&cmdline).is_some_and(|g| g == name);
    if !names_guest {
        log::warn!(
            "{}: pid {pid} is not the QEMU of `{name}`; ignoring the stale pid file",
            file.display()
        );
        return None;
    }
    Some(pid)
}

fn map_state(s: DomainState) -> GuestState {
    match s {
        DomainState::Running | DomainState::Blocked => GuestState::Running,
        DomainState::Paused => GuestState::Paused,
        DomainState::Shutdown => GuestState::ShuttingDown,
        DomainState::Shutoff => GuestState::Shutoff,
        DomainState::Crashed => GuestState::Crashed,
        DomainState::PMSuspended | DomainState::NoState => GuestState::Other,
    }
}

impl Hypervisor for LibvirtHypervisor {
    fn list_guests(&self) -> Result<Vec<GuestInfo>, HypervisorError> {
        let c = self.conn()?;
        let domains = c
            .list_all_domains(0)
            .map_err(|e| self.error("list", &self.uri, e))?;
        let mut out = Vec::with_capacity(domains.len());
        for d in &domains {
            match self.info(d) {
                Ok(i) => out.push(i),
                // Undefined between listing and inspection.
                Err(HypervisorError::NoSuchGuest(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn state(&self, name: &str) -> Result<GuestState, HypervisorError> {
        let d = self.lookup(name)?;
        let (s, _) = d.state().map_err(|e| self.error("state", name, e))?;
        Ok(map_state(s.unwrap_or(DomainState::NoState)))
    }

    fn define(&self, xml: &str) -> Result<String, HypervisorError> {
        let c = self.conn()?;
        let d = c
            .define_domain_xml(xml)
            .map_err(|e| self.error("define", "<xml>", e))?;
        d.name().map_err(|e| self.error("define", "<xml>", e))
    }

    fn set_autostart(&self, name: &str, on: bool) -> Result<(), HypervisorError> {
        self.lookup(name)?
            .set_autostart(on)
            .map_err(|e| self.error("autostart", name, e))
    }

    fn start(&self, name: &str) -> Result<(), HypervisorError> {
        self.lookup(name)?
            .create()
            .map_err(|e| self.error("start", name, e))
    }

    fn start_paused(&self, name: &str) -> Result<(), HypervisorError> {
        self.lookup(name)?
            .create_with_flags(sys::VIR_DOMAIN_START_PAUSED)
            .map_err(|e| self.error("start paused", name, e))
    }

    fn resume(&self, name: &str) -> Result<(), HypervisorError> {
        self.lookup(name)?
            .resume()
            .map_err(|e| self.error("resume", name, e))
    }

    fn shutdown(&self, name: &str) -> Result<(), HypervisorError> {
        self.lookup(name)?
            .shutdown()
            .map_err(|e| self.error("shutdown", name, e))
    }

    fn destroy(&self, name: &str) -> Result<(), HypervisorError> {
        self.lookup(name)?
            .destroy()
            .map_err(|e| self.error("destroy", name, e))
    }

    fn migrate(
        &self,
        name: &str,
        dest_uri: &str,
        migration_uri: Option<&str>,
    ) -> Result<MigrationStats, HypervisorError> {
        let params = MigrateParameters {
            uri: migration_uri.map(str::to_owned),
            ..MigrateParameters::default()
        };
        let flags = sys::VIR_MIGRATE_LIVE
            | sys::VIR_MIGRATE_PEER2PEER
            | sys::VIR_MIGRATE_PERSIST_DEST
            | sys::VIR_MIGRATE_UNDEFINE_SOURCE;
        self.lookup(name)?
            .migrate_to_uri3(Some(dest_uri), params, flags)
            .map_err(|e| self.error("migrate", name, e))?;
        Ok(completed_job_stats(dest_uri, name))
    }

    fn abort_job(&self, name: &str) -> Result<(), HypervisorError> {
        let dom = self.lookup(name)?;
        events::abort_job(&dom).map_err(|message| HypervisorError::Failed {
            op: "abort job",
            name: name.to_owned(),
            message,
        })
    }

    fn free_memory_kib_at(&self, uri: &str) -> Result<u64, HypervisorError> {
        let c = Connect::open(Some(uri))
            .map_err(|e| HypervisorError::Unavailable(format!("{uri}: {e}")))?;
        c.free_memory()
            .map(|b| b / 1024)
            .map_err(|e| self.error("free memory", uri, e))
    }

    fn free_memory_kib(&self) -> Result<u64, HypervisorError> {
        let c = self.conn()?;
        c.free_memory()
            .map(|b| b / 1024)
            .map_err(|e| self.error("free memory", &self.uri, e))
    }

    fn qemu_pid(&self, name: &str) -> Option<i32> {
        qemu_pid_from(&self.qemu_run_dir, name)
    }

    fn qemu_processes(&self) -> Result<Vec<QemuProcess>, procscan::ScanError> {
        procscan::scan(Path::new("/proc"), &self.qemu_run_dir)
    }

    fn ping(&self) -> Result<(), HypervisorError> {
        let c = self.conn()?;
        match c.is_alive() {
            Ok(true) => {}
            Ok(false) => {
                self.drop_connection();
                return Err(HypervisorError::Unavailable(format!(
                    "{}: connection closed",
                    self.uri
                )));
            }
            Err(e) => return Err(self.error("ping", &self.uri, e)),
        }
        c.num_of_domains().map(|_| ()).map_err(|e| {
            // Any failure of this trivial call means the daemon is not usable.
            let err = self.error("ping", &self.uri, e);
            self.drop_connection();
            err
        })
    }

    fn subscribe(&self, sink: Sender<HypervisorEvent>) -> Result<(), HypervisorError> {
        *lock(&self.link.sink) = Some(sink.clone());
        let open = lock(&self.link.state).conn.clone();
        match open {
            Some(c) => self.link.register(&c, sink),
            // The attempt that opens the connection registers the sink set above.
            None => self.conn().map(|_| ()),
        }
    }
}
