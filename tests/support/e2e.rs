//! The end-to-end rig: two real libvirtd blades (A: slot 1, IPMC 0x82; B: slot 2,
//! IPMC 0x84), `shelfha simulate` on a pty, `shmc-plugin run` on that pty, and one
//! `blade-agent run` per blade, all on loopback with a fresh shelf key.
//!
//! Use from a test crate with `#[path = "support/blades.rs"] mod blades;` and
//! `#[path = "support/e2e.rs"] mod e2e;`.
//!
//! Power: the simulator models only the IPMC. When an IPMC reaches M1/M0 its
//! payload is off, so the simulator runs `power-off.sh` (written here) before it
//! reports the state: the script SIGKILLs the blade's QEMU processes, its
//! libvirtd (and the subreaper it runs under) and its agent.
//!
//! Watchdog: with [`Options::watchdog_ms`] an agent arms a pet-file watchdog
//! (`BASE/watchdog-x`); a [`PetWatcher`] plays the hardware: when the file has not
//! changed for its timeout while armed it runs `power-off.sh` for that blade, as a
//! real watchdog resets it, and records when.
//!
//! Never twice: a [`Poller`] asks both daemons for their running guests about
//! every 50 ms for the whole test (QEMU PID files stand in for a daemon that does
//! not answer) and records every guest seen running on both blades at once.
//!
//! Every process started here is killed when the [`Rig`] is dropped, also on a
//! panic; the blades' directory is kept after a failure, with every log.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use blade_agent::hypervisor::libvirt::LibvirtHypervisor;
use blade_agent::hypervisor::{GuestState, Hypervisor};
use serde_json::Value;

use crate::blades::{alive, Blades};

#[path = "bins.rs"]
mod bins;
#[path = "relay.rs"]
pub mod relay;

/// One shelf at a time: each test runs two daemons, QEMU guests and four programs.
static SHELF: Mutex<()> = Mutex::new(());

/// Takes the lock that runs end-to-end tests one at a time (survives poisoning).
pub fn one_shelf() -> MutexGuard<'static, ()> {
    SHELF.lock().unwrap_or_else(|e| e.into_inner())
}

/// IPMB address of blade A's IPMC (slot 1).
pub const A: u8 = 0x82;
/// IPMB address of blade B's IPMC (slot 2).
pub const B: u8 = 0x84;

/// `s` seconds.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Decision classes that move or restart guests (everything but the IPMB link alerts).
pub const FAILOVER_CLASSES: [&str; 6] = [
    "blade_lost",
    "blade_hardware",
    "host_os",
    "hypervisor",
    "guest",
    "blade_extraction",
];

/// Paths of the `shmc-plugin` and `blade-agent` binaries, built once per test run.
pub fn binaries() -> &'static (PathBuf, PathBuf) {
    static BINS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BINS.get_or_init(|| {
        let mut bins = bins::build(&["shmc-plugin", "blade-agent"]).into_iter();
        let plugin = bins.next().expect("shmc-plugin");
        (plugin, bins.next().expect("blade-agent"))
    })
}

type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

fn reader(stream: impl Read + Send + 'static, lines: Lines) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((Instant::now(), line));
        }
    });
}

/// A child process whose stdout and stderr lines are collected (with the time
/// each was read); SIGKILLed and reaped when dropped.
pub struct Proc {
    /// Name in messages.
    pub name: String,
    child: Child,
    lines: Lines,
    pid_file: Option<PathBuf>,
}

impl Proc {
    /// Starts `cmd` (stdin piped when `stdin`); writes its PID to `pid_file`.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        pid_file: Option<PathBuf>,
        stdin: bool,
    ) -> (Proc, Option<ChildStdin>) {
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let lines: Lines = Arc::default();
        reader(child.stdout.take().expect("stdout"), lines.clone());
        reader(child.stderr.take().expect("stderr"), lines.clone());
        if let Some(f) = &pid_file {
            std::fs::write(f, child.id().to_string()).expect("write PID file");
        }
        let input = child.stdin.take();
        (
            Proc {
                name: name.into(),
                child,
                lines,
                pid_file,
            },
            input,
        )
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL and reap (also when it is already gone); removes its PID file first.
    pub fn kill(&mut self) {
        if let Some(f) = &self.pid_file {
            let _ = std::fs::remove_file(f);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Number of lines read so far (a cursor for [`Proc::wait_line`]).
    pub fn mark(&self) -> usize {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Lines from index `from` on.
    pub fn lines_from(&self, from: usize) -> Vec<(Instant, String)> {
        let l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        l.get(from..).map(<[_]>::to_vec).unwrap_or_default()
    }

    /// All lines, for messages.
    pub fn text(&self) -> String {
        self.lines_from(0)
            .into_iter()
            .map(|(_, l)| l)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The first line from index `from` on that satisfies `pred`, if any yet.
    pub fn find(
        &self,
        from: usize,
        pred: impl Fn(&str) -> bool,
    ) -> Option<(usize, Instant, String)> {
        let l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        l.iter()
            .enumerate()
            .skip(from)
            .find(|(_, (_, s))| pred(s))
            .map(|(i, (t, s))| (i, *t, s.clone()))
    }

    /// Waits (bounded) for a line from index `from` on that satisfies `pred`.
    pub fn wait_line(
        &self,
        from: usize,
        what: &str,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> (usize, Instant, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(found) = self.find(from, &pred) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no line for {what} within {limit:?}; output:\n{}",
                self.name,
                tail(&self.text(), 80)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Guests running on one blade: libvirt's answer, or, when the daemon does not
/// answer, the guests whose QEMU (from libvirt's PID files) is alive.
fn running_on(hv: &LibvirtHypervisor, run_dir: &Path) -> BTreeSet<String> {
    match hv.list_guests() {
        Ok(list) => list
            .into_iter()
            .filter(|g| g.state == GuestState::Running)
            .map(|g| g.name)
            .collect(),
        Err(_) => qemu_alive(run_dir),
    }
}

/// Guests whose QEMU process, named in `run_dir/<guest>.pid`, is alive.
pub fn qemu_alive(run_dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(dir) = std::fs::read_dir(run_dir) else {
        return out;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(guest) = name.strip_suffix(".pid") else {
            continue;
        };
        if guest == "driver" {
            continue;
        }
        let pid = std::fs::read_to_string(e.path())
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if let Some(pid) = pid {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if alive(pid) && String::from_utf8_lossy(&cmdline).contains("qemu-system") {
                out.insert(guest.to_string());
            }
        }
    }
    out
}

/// What the poller saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Rounds completed.
    pub rounds: u64,
    /// Guests seen running on both blades at once (with when).
    pub twice: Vec<(Instant, String)>,
    /// (time, blade, guest, running): every change of a guest's running state.
    pub changes: Vec<(Instant, char, String, bool)>,
    current: [BTreeSet<String>; 2],
}

/// Background check of both daemons.
pub struct Poller {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    /// What it saw so far.
    pub seen: Arc<Mutex<Seen>>,
}

impl Poller {
    /// Starts polling blades A and B of `blades`.
    pub fn start(blades: &Blades) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let dirs = [
            blades.base.join("a/run/libvirt/qemu"),
            blades.base.join("b/run/libvirt/qemu"),
        ];
        let hv = [
            LibvirtHypervisor::open(&blades.a, dirs[0].clone()).expect("libvirt A"),
            LibvirtHypervisor::open(&blades.b, dirs[1].clone()).expect("libvirt B"),
        ];
        let (s, st) = (seen.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                // A, B, A, B: a guest counts twice only if one blade ran it in two
                // consecutive looks and the other in the look between them (a live
                // migration that switches between two looks is not an overlap).
                let a1 = running_on(&hv[0], &dirs[0]);
                let b1 = running_on(&hv[1], &dirs[1]);
                let a2 = running_on(&hv[0], &dirs[0]);
                let b2 = running_on(&hv[1], &dirs[1]);
                let now = Instant::now();
                let mut g = s.lock().unwrap_or_else(|e| e.into_inner());
                g.rounds += 1;
                for name in &b1 {
                    if a1.contains(name) && a2.contains(name) {
                        g.twice.push((now, name.clone()));
                    }
                }
                for name in &a2 {
                    if b1.contains(name) && b2.contains(name) {
                        g.twice.push((now, name.clone()));
                    }
                }
                for (i, latest) in [a2, b2].into_iter().enumerate() {
                    let blade = if i == 0 { 'a' } else { 'b' };
                    let before = std::mem::take(&mut g.current[i]);
                    for n in latest.difference(&before) {
                        g.changes.push((now, blade, n.clone(), true));
                    }
                    for n in before.difference(&latest) {
                        g.changes.push((now, blade, n.clone(), false));
                    }
                    g.current[i] = latest;
                }
                drop(g);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Poller {
            stop,
            handle: Some(handle),
            seen,
        }
    }

    /// Waits for at least one more full round.
    pub fn sync(&self) {
        let start = self.seen.lock().unwrap_or_else(|e| e.into_inner()).rounds;
        crate::blades::wait_for("a poller round", Duration::from_secs(10), || {
            self.seen.lock().unwrap_or_else(|e| e.into_inner()).rounds >= start + 2
        });
    }

    /// Panics if any guest was seen on both blades.
    pub fn assert_never_twice(&self) {
        let g = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        assert!(g.rounds > 0, "the poller never completed a round");
        assert!(
            g.twice.is_empty(),
            "guests seen running on both blades at once: {:?}; changes: {:?}",
            g.twice.iter().map(|(_, n)| n).collect::<Vec<_>>(),
            g.changes
        );
    }

    /// First time after `after` that `guest` was seen starting to run on `blade`.
    pub fn started_after(&self, blade: char, guest: &str, after: Instant) -> Option<Instant> {
        let g = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        g.changes
            .iter()
            .find(|(t, b, n, up)| *t >= after && *b == blade && n == guest && *up)
            .map(|(t, ..)| *t)
    }

    /// How many times after `after` `guest` started running on `blade`.
    pub fn starts_after(&self, blade: char, guest: &str, after: Instant) -> usize {
        let g = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        g.changes
            .iter()
            .filter(|(t, b, n, up)| *t >= after && *b == blade && n == guest && *up)
            .count()
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// How a rig is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// Guests defined and started on blade A.
    pub guests_a: Vec<&'static str>,
    /// Guests defined and started on blade B.
    pub guests_b: Vec<&'static str>,
    /// `[timing]` keys of the plugin's configuration.
    pub timing: Vec<(&'static str, u64)>,
    /// Give each agent its partner's libvirt URI (Evacuate live-migrates).
    pub migrate: bool,
    /// The simulator's M6 -> M1 time (default 20 ms).
    pub deactivation_ms: Option<u64>,
    /// Put a [`relay::Relay`] between the plugin and blade A's agent (the network
    /// between the shelf manager and A, which a test can cut): [`Rig::relay`].
    pub relay_a: bool,
    /// Per blade (A, B): arm a pet-file watchdog with this timeout in its agent, watched
    /// by a [`PetWatcher`] that cuts the blade's power when it is not petted in time.
    pub watchdog_ms: [Option<u64>; 2],
}

impl Default for Options {
    fn default() -> Self {
        Options {
            guests_a: vec!["g1", "g2"],
            guests_b: vec!["h1"],
            timing: Vec::new(),
            migrate: false,
            deactivation_ms: None,
            relay_a: false,
            watchdog_ms: [None, None],
        }
    }
}

/// Starts a defined guest; a first start right after the daemons came up can meet a
/// virtlogd that does not accept connections yet: retried a few times.
pub fn start_guest(blades: &Blades, blade: char, guest: &str) {
    for _ in 0..10 {
        let out = blades.virsh(blade, &["start", guest]);
        if out.status.success() {
            return;
        }
        let err = crate::blades::text(&out.stderr);
        assert!(
            err.contains("virtlogd-sock"),
            "{}",
            crate::blades::describe(&format!("virsh start {guest} on blade {blade}"), &out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    blades.virsh_ok(blade, &["start", guest]);
}

fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
}

/// The script the simulator runs when an IPMC's payload goes off: it kills the
/// blade's QEMUs, libvirtd, its subreaper and its agent, and waits until they are gone.
const POWER_OFF: &str = r#"#!/bin/bash
# power-off.sh BASE IPMC: what M1/M0 means on a real shelf: the blade's payload is off.
B=$1
case "$2" in 0x82) x=a ;; 0x84) x=b ;; *) exit 0 ;; esac
pids=
add() { # PID EXPECTED-NAME: only a live process of that name
    [[ "$1" =~ ^[0-9]+$ ]] || return 0
    tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2" && pids="$pids $1"
    return 0
}
for f in "$B/$x"/run/libvirt/qemu/*.pid; do
    [ -f "$f" ] && [ "${f##*/}" != driver.pid ] && add "$(cat "$f" 2>/dev/null)" qemu-system
done
tini=$(cat "$B/$x/tini.pid" 2>/dev/null)
if [[ "$tini" =~ ^[0-9]+$ ]]; then
    for p in $(pgrep -P "$tini"); do add "$p" qemu-system; done
fi
qemus=$(echo $pids | tr ' ' '\n' | sort -u | tr '\n' ' ')
pids=$qemus
add "$tini" tini
add "$(cat "$B/$x/run/libvirt/libvirtd.pid" 2>/dev/null)" libvirtd
add "$(cat "$B/agent-$x.pid" 2>/dev/null)" blade-agent
[ -n "$pids" ] && kill -KILL $pids 2>/dev/null
for i in $(seq 1 400); do
    left=
    for p in $pids; do
        [ -r "/proc/$p/stat" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] && left="$left $p"
    done
    # A power cut is a reboot: the agent's fence record (kept for one boot id, which the rig's
    # blades share with the host) ends with it, and so does libvirt's runtime state (/run is a
    # tmpfs): a libvirtd started again must not list a guest of the dead QEMU as running
    # until it fails to reconnect to it.
    [ -z "$left" ] && { rm -f "$B/state-$x/fenced.json" "$B/$x"/run/libvirt/qemu/*.xml; echo "blade $x powered off; QEMU killed: $qemus" >> "$B/power.log"; exit 0; }
    sleep 0.01
done
echo "blade $x: still alive after power-off:$left" >> "$B/power.log"
exit 1
"#;

/// The hardware of a pet-file watchdog: polls the file every [`PetWatcher::POLL`];
/// while it reads `armed <timeout_ms> <count>` and has not changed for the timeout,
/// runs the blade's `power-off.sh` once and records when that returned (the blade's
/// processes are gone then). `disarmed` (the agent's magic close) stops the countdown.
pub struct PetWatcher {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    fired: Arc<Mutex<Option<Instant>>>,
}

impl PetWatcher {
    /// How often the file is read.
    pub const POLL: Duration = Duration::from_millis(10);

    /// Watches `file`; on expiry runs `bash power_off base ipmc`.
    pub fn start(file: PathBuf, power_off: PathBuf, base: PathBuf, ipmc: u8) -> PetWatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let fired: Arc<Mutex<Option<Instant>>> = Arc::default();
        let (st, f) = (stop.clone(), fired.clone());
        let handle = std::thread::spawn(move || {
            let mut last: Option<(String, Instant)> = None;
            while !st.load(Ordering::SeqCst) {
                let now = Instant::now();
                if let Ok(content) = std::fs::read_to_string(&file) {
                    if last.as_ref().is_none_or(|(c, _)| *c != content) {
                        last = Some((content, now));
                    }
                }
                let timeout = last.as_ref().and_then(|(c, _)| {
                    let mut w = c.split_whitespace();
                    (w.next() == Some("armed"))
                        .then(|| w.next().and_then(|t| t.parse::<u64>().ok()))
                        .flatten()
                });
                if let (Some(t), Some((_, since))) = (timeout, &last) {
                    if now.duration_since(*since) >= Duration::from_millis(t) {
                        let status = Command::new("bash")
                            .arg(&power_off)
                            .arg(&base)
                            .arg(format!("{ipmc:#04x}"))
                            .status();
                        eprintln!(
                            "watchdog {}: not petted for {t} ms: power cut ({status:?})",
                            file.display()
                        );
                        *f.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                        return;
                    }
                }
                std::thread::sleep(Self::POLL);
            }
        });
        PetWatcher {
            stop,
            handle: Some(handle),
            fired,
        }
    }

    /// When the watchdog cut the power (after the hook returned), if it did.
    pub fn fired(&self) -> Option<Instant> {
        *self.fired.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for PetWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A running shelf: simulator, plugin, two agents, two blades, the poller.
pub struct Rig {
    // Dropped in this order: the poller, the programs, then the blades.
    /// The watchdogs of blades A and B ([`Options::watchdog_ms`]).
    pub watchers: [Option<PetWatcher>; 2],
    /// Never-twice watcher.
    pub poller: Option<Poller>,
    /// `shmc-plugin run`.
    pub plugin: Option<Proc>,
    /// Agents of A and B.
    pub agents: [Option<Proc>; 2],
    /// `shelfha simulate`.
    pub sim: Proc,
    sim_in: Mutex<ChildStdin>,
    /// The blades (their directory holds every file of the run).
    pub blades: Blades,
    /// Set-up.
    pub opts: Options,
    /// The relay between the plugin and A's agent ([`Options::relay_a`]).
    pub relay: Option<relay::Relay>,
    plugin_config: PathBuf,
    agent_configs: [PathBuf; 2],
}

/// Index of blade `'a'` or `'b'`.
pub fn idx(blade: char) -> usize {
    match blade {
        'a' => 0,
        'b' => 1,
        _ => panic!("blade {blade}"),
    }
}

impl Rig {
    /// Sets up a shelf for test `test` (short, path-safe) and waits until both agents
    /// are registered and each holds its partner's definitions.
    pub fn start(test: &str, opts: Options) -> Rig {
        let (plugin_bin, agent_bin) = binaries();
        let blades = Blades::start(&format!("e2e-{test}"));
        let base = blades.base.clone();
        for (blade, guests) in [('a', &opts.guests_a), ('b', &opts.guests_b)] {
            for g in guests.iter() {
                blades.define(&[blade], g, None);
                start_guest(&blades, blade, g);
            }
        }
        let key_file = base.join("shelf.key");
        shelfha_proto::write_key_file(&key_file, &shelfha_proto::generate_key().expect("key"))
            .expect("write key file");
        let power = base.join("power-off.sh");
        std::fs::write(&power, POWER_OFF).expect("write power-off.sh");

        // The simulator.
        let link = base.join("ipmb");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shelfha"));
        cmd.arg("simulate")
            .arg("--link")
            .arg(&link)
            .args(["--ipmc", "0x82", "--ipmc", "0x84", "--on-payload-off"])
            .arg(format!("bash {} {}", power.display(), base.display()));
        if let Some(ms) = opts.deactivation_ms {
            cmd.args(["--deactivation-ms", &ms.to_string()]);
        }
        let (sim, sim_in) = Proc::spawn("simulator", cmd, None, true);
        sim.wait_line(0, "ready", Duration::from_secs(10), |l| {
            l.contains("\"ready\"")
        });

        // The plugin.
        let shmc = free_udp();
        let agent_addr = [free_udp(), free_udp()];
        // The plugin's address for A's agent and A's address for the plugin: the relay
        // when there is one.
        let relay = opts
            .relay_a
            .then(|| relay::Relay::start(shmc, agent_addr[0]));
        let shmc_of = |i: usize| match (&relay, i) {
            (Some(r), 0) => r.addr,
            _ => shmc,
        };
        let agent_of = |i: usize| match (&relay, i) {
            (Some(r), 0) => r.addr,
            _ => agent_addr[i],
        };
        let mut timing = String::new();
        for (k, v) in &opts.timing {
            timing.push_str(&format!("{k} = {v}\n"));
        }
        let plugin_config = base.join("shmc-plugin.toml");
        std::fs::write(
            &plugin_config,
            format!(
                "[shelf]\nown_address = 0x20\nipmb_device = \"{}\"\nlisten = \"{shmc}\"\nkey_file = \"{}\"\n\
                 [timing]\n{timing}\
                 [[blade]]\nslot = 1\nipmb_address = 0x82\npartner = 2\nagent = \"{}\"\n\
                 [[blade]]\nslot = 2\nipmb_address = 0x84\npartner = 1\nagent = \"{}\"\n",
                link.display(),
                key_file.display(),
                agent_of(0),
                agent_of(1)
            ),
        )
        .expect("write plugin config");

        // The agents' configurations.
        let mut agent_configs = [PathBuf::new(), PathBuf::new()];
        for (i, x) in ['a', 'b'].into_iter().enumerate() {
            let partner = 1 - i;
            let partner_uri = if opts.migrate {
                format!(
                    // No port: libvirt picks one per migration (they may run in parallel).
                    "libvirt_uri = \"{}\"\nmigration_uri = \"tcp://127.0.0.1\"\n",
                    blades.uri(if x == 'a' { 'b' } else { 'a' }),
                )
            } else {
                String::new()
            };
            let watchdog = match opts.watchdog_ms[i] {
                Some(t) => format!(
                    "[watchdog]\nkind = \"pet-file\"\ndevice = \"{}\"\ntimeout_ms = {t}\n",
                    base.join(format!("watchdog-{x}")).display()
                ),
                None => String::new(),
            };
            let path = base.join(format!("agent-{x}.toml"));
            std::fs::write(
                &path,
                format!(
                    "slot = {}\nshmc = \"{}\"\nlisten = \"{}\"\nlibvirt_uri = \"{}\"\nkey_file = \"{}\"\n\
                     state_dir = \"{}\"\nqemu_run_dir = \"{}\"\nheartbeat_ms = 100\nfence_timeout_ms = 500\n\
                     evacuate_timeout_ms = 2000\n\
                     [partner]\nslot = {}\naddress = \"{}\"\n{partner_uri}\
                     [guests]\nallowed_storage_paths = [\"{}\", \"{}\"]\n{watchdog}",
                    i + 1,
                    shmc_of(i),
                    agent_addr[i],
                    blades.uri(x),
                    key_file.display(),
                    base.join(format!("state-{x}")).display(),
                    base.join(format!("{x}/run/libvirt/qemu")).display(),
                    partner + 1,
                    agent_addr[partner],
                    base.join("shared").display(),
                    base.join("disks").display(),
                ),
            )
            .expect("write agent config");
            agent_configs[i] = path;
        }

        let mut cmd = Command::new(plugin_bin);
        cmd.args(["run", "--log", "info", "--config"])
            .arg(&plugin_config);
        let (plugin, _) = Proc::spawn("shmc-plugin", cmd, None, false);
        plugin.wait_line(0, "start-up", Duration::from_secs(10), |l| {
            l.contains("shmc-plugin running")
        });
        let watchers = [('a', A), ('b', B)].map(|(x, ipmc)| {
            opts.watchdog_ms[idx(x)].map(|_| {
                PetWatcher::start(
                    base.join(format!("watchdog-{x}")),
                    power.clone(),
                    base.clone(),
                    ipmc,
                )
            })
        });
        let mut rig = Rig {
            watchers,
            poller: None,
            plugin: Some(plugin),
            agents: [None, None],
            sim,
            sim_in: Mutex::new(sim_in.expect("simulator stdin")),
            blades,
            opts,
            relay,
            plugin_config,
            agent_configs,
        };
        let _ = agent_bin;
        rig.start_agent('a');
        rig.start_agent('b');
        let deadline = Instant::now() + Duration::from_secs(20);
        while [1, 2].iter().any(|slot| {
            let text = format!("slot {slot}: agent registered");
            rig.plugin().find(0, |l| l.contains(&text)).is_none()
        }) {
            for blade in ['a', 'b'] {
                let agent = rig.agents[idx(blade)].as_mut().expect("agent");
                assert!(agent.running(), "agent {blade} exited:\n{}", agent.text());
            }
            assert!(
                Instant::now() < deadline,
                "agents not registered within 20 s\n{}",
                rig.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let (ga, gb) = (rig.opts.guests_a.clone(), rig.opts.guests_b.clone());
        rig.wait_definitions('b', &ga);
        rig.wait_definitions('a', &gb);
        rig.poller = Some(Poller::start(&rig.blades));
        rig.poller().sync();
        rig
    }

    /// Starts (or restarts) the agent of `blade`.
    pub fn start_agent(&mut self, blade: char) {
        let (_, agent_bin) = binaries();
        let mut cmd = Command::new(agent_bin);
        cmd.args(["run", "--config"])
            .arg(&self.agent_configs[idx(blade)])
            .env("RUST_LOG", "info");
        let (p, _) = Proc::spawn(
            &format!("agent {blade}"),
            cmd,
            Some(self.blades.base.join(format!("agent-{blade}.pid"))),
            false,
        );
        self.agents[idx(blade)] = Some(p);
    }

    /// SIGKILLs the agent of `blade`.
    pub fn kill_agent(&mut self, blade: char) {
        if let Some(mut a) = self.agents[idx(blade)].take() {
            a.kill();
        }
    }

    /// The agent of `blade` (panics if it was never started or was killed).
    pub fn agent(&self, blade: char) -> &Proc {
        self.agents[idx(blade)].as_ref().expect("agent running")
    }

    /// Starts (again) `shmc-plugin run` on the same configuration.
    pub fn start_plugin(&mut self) {
        let (plugin_bin, _) = binaries();
        let mut cmd = Command::new(plugin_bin);
        cmd.args(["run", "--log", "info", "--config"])
            .arg(&self.plugin_config);
        let (p, _) = Proc::spawn("shmc-plugin", cmd, None, false);
        p.wait_line(0, "start-up", Duration::from_secs(10), |l| {
            l.contains("shmc-plugin running")
        });
        self.plugin = Some(p);
    }

    /// The running plugin.
    pub fn plugin(&self) -> &Proc {
        self.plugin.as_ref().expect("plugin running")
    }

    /// The poller.
    pub fn poller(&self) -> &Poller {
        self.poller.as_ref().expect("poller")
    }

    /// Waits until `blade`'s agent stored the definitions of its partner's `guests`.
    pub fn wait_definitions(&self, blade: char, guests: &[&str]) {
        let dir = self.blades.base.join(format!("state-{blade}/partner"));
        crate::blades::wait_for(
            &format!("definitions of {guests:?} stored on blade {blade}"),
            Duration::from_secs(20),
            || guests.iter().all(|g| dir.join(format!("{g}.xml")).exists()),
        );
    }

    /// Sends one control line to the simulator; returns when it was written.
    pub fn sim(&self, line: &str) -> Instant {
        let mut input = self.sim_in.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(input, "{line}").expect("simulator input");
        input.flush().expect("simulator input");
        Instant::now()
    }

    /// Waits for the simulator to report IPMC `ipmc` in `state` (e.g. "M1") from
    /// line index `from` on; returns when that line was read.
    pub fn wait_sim_state(&self, from: usize, ipmc: u8, state: &str, limit: Duration) -> Instant {
        self.sim
            .wait_line(from, &format!("IPMC {ipmc:#04x} in {state}"), limit, |l| {
                serde_json::from_str::<Value>(l).is_ok_and(|v| {
                    v["ipmc"] == ipmc && v["state"] == state && v.get("previous").is_some()
                })
            })
            .1
    }

    /// Waits for the plugin's decision of `class` for `slot` (log line index `from` on);
    /// returns when it was read.
    pub fn wait_decision(&self, from: usize, class: &str, slot: u8, limit: Duration) -> Instant {
        let pat = format!(" {class} for slot {slot} ");
        self.plugin()
            .wait_line(from, &format!("decision {class} slot {slot}"), limit, |l| {
                l.contains("decision #") && l.contains(&pat)
            })
            .1
    }

    /// Decision lines of the plugin from index `from` on.
    pub fn decisions(&self, from: usize) -> Vec<String> {
        self.plugin()
            .lines_from(from)
            .into_iter()
            .map(|(_, l)| l)
            .filter(|l| l.contains("decision #"))
            .collect()
    }

    /// Guests libvirt reports running on `blade` (`virsh list --name --state-running`:
    /// a guest whose QEMU is still starting is listed as active but paused).
    pub fn running(&self, blade: char) -> BTreeSet<String> {
        self.blades
            .virsh_ok(blade, &["list", "--name", "--state-running"])
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Waits until libvirt reports every guest of `guests` running on `blade`.
    pub fn wait_running(&self, blade: char, guests: &[&str], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let out = self
                .blades
                .virsh(blade, &["list", "--name", "--state-running"]);
            let running: BTreeSet<String> = crate::blades::text(&out.stdout)
                .lines()
                .map(|l| l.trim().to_string())
                .collect();
            if out.status.success() && guests.iter().all(|g| running.contains(*g)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{guests:?} not running on blade {blade} within {limit:?} (running: {running:?})\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asserts blade `blade` runs none of `guests`: libvirt does not report them
    /// running (when its daemon answers) and no QEMU of theirs is alive.
    pub fn assert_not_running(&self, blade: char, guests: &[&str]) {
        let qemus = qemu_alive(&self.blades.base.join(format!("{blade}/run/libvirt/qemu")));
        let out = self.blades.virsh(blade, &["list", "--name"]);
        let listed: BTreeSet<String> = if out.status.success() {
            crate::blades::text(&out.stdout)
                .lines()
                .map(|l| l.trim().to_string())
                .collect()
        } else {
            BTreeSet::new()
        };
        for g in guests {
            assert!(
                !qemus.contains(*g) && !listed.contains(*g),
                "guest {g} still runs on blade {blade} (libvirt: {listed:?}, QEMU alive: {qemus:?})\n{}",
                self.logs()
            );
        }
    }

    /// The QEMU PIDs the power cut of `blade` killed (`None`: its power was not cut).
    pub fn power_off_qemus(&self, blade: char) -> Option<Vec<u32>> {
        let log = std::fs::read_to_string(self.blades.base.join("power.log")).unwrap_or_default();
        let prefix = format!("blade {blade} powered off; QEMU killed:");
        log.lines().find_map(|l| {
            l.strip_prefix(&prefix).map(|rest| {
                rest.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
        })
    }

    /// Whether `blade`'s power was cut by the simulator's hook.
    pub fn powered_off(&self, blade: char) -> bool {
        std::fs::read_to_string(self.blades.base.join("power.log"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("blade {blade} powered off")))
    }

    /// When `blade`'s watchdog cut its power, if it did.
    pub fn watchdog_fired(&self, blade: char) -> Option<Instant> {
        self.watchers[idx(blade)]
            .as_ref()
            .and_then(PetWatcher::fired)
    }

    /// The last lines of every program's output.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        let procs = [
            self.plugin.as_ref(),
            self.agents[0].as_ref(),
            self.agents[1].as_ref(),
            Some(&self.sim),
        ];
        for p in procs.into_iter().flatten() {
            s.push_str(&format!("---- {} ----\n{}\n", p.name, tail(&p.text(), 60)));
        }
        s
    }

    /// Prints the measured detection time and downtime (never asserted): from `inject`
    /// to `decision`, and to the last of `guests` seen running on `partner`.
    pub fn report(
        &self,
        scenario: &str,
        inject: Instant,
        decision: Option<Instant>,
        partner: char,
        guests: &[&str],
    ) {
        let detection = decision.map(|d| d.saturating_duration_since(inject));
        let last = guests
            .iter()
            .map(|g| self.poller().started_after(partner, g, inject))
            .collect::<Option<Vec<_>>>()
            .and_then(|v| v.into_iter().max());
        let downtime = last.map(|t| t.saturating_duration_since(inject));
        println!(
            "e2e {scenario}: detection {} ms, downtime {} ms ({} guest(s) on blade {partner})",
            detection.map_or("-".into(), |d| d.as_millis().to_string()),
            downtime.map_or("-".into(), |d| d.as_millis().to_string()),
            guests.len()
        );
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        // Stop the watchdogs and the poller before the daemons go.
        self.watchers = [None, None];
        self.poller.take();
        self.plugin.take();
        self.kill_agent('a');
        self.kill_agent('b');
        self.sim.kill();
        self.relay.take();
    }
}
