//! System tests of the two-blade libvirt set-up the end-to-end tests build on, and of
//! libvirt's own double-run protection: two real `libvirtd` daemons with QEMU (TCG)
//! started by `tests/support/libvirt-blades.sh`, one shared `virtlockd` lockspace.
//!
//! Needs root and the packages `bash tests/ci.sh install` installs. Run one test alone:
//! `cargo test -p shelfha --test libvirt_blades -- second_start_refused_until_qemu_killed`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The blades are heavy (two daemons, QEMU) and share loop devices: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn harness_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/libvirt-blades.sh")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout).trim(),
        text(&out.stderr).trim()
    )
}

/// Two running blades; stopped (and their directory removed on success) when dropped.
struct Blades {
    base: PathBuf,
    a: String,
    b: String,
}

impl Blades {
    fn start(test: &str) -> Blades {
        assert!(
            Command::new("id")
                .arg("-u")
                .output()
                .map(|o| text(&o.stdout).trim() == "0")
                .unwrap_or(false),
            "libvirt blade tests need root (they run libvirtd and QEMU)"
        );
        Blades::start_at(PathBuf::from(format!(
            "/var/tmp/shelfha-blades-{}-{}",
            test,
            std::process::id()
        )))
    }

    /// Starts blades in `base`; whatever an earlier run left there is stopped first.
    fn start_at(base: PathBuf) -> Blades {
        let out = run(Command::new("bash")
            .arg(harness_path())
            .arg("start")
            .arg(&base));
        assert!(
            out.status.success(),
            "{}\n(packages missing? run `bash tests/ci.sh install`)",
            describe("libvirt-blades.sh start", &out)
        );
        let stdout = text(&out.stdout);
        let uri = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} line in: {stdout}"))
                .to_string()
        };
        let (a, b) = (uri("A="), uri("B="));
        Blades { base, a, b }
    }

    fn uri(&self, blade: char) -> &str {
        match blade {
            'a' => &self.a,
            'b' => &self.b,
            _ => panic!("blade {blade}"),
        }
    }

    /// Runs a harness subcommand on these blades; panics unless it succeeds.
    fn harness(&self, cmd: &str, args: &[&str]) -> String {
        let out = run(Command::new("bash")
            .arg(harness_path())
            .arg(cmd)
            .arg(&self.base)
            .args(args));
        assert!(
            out.status.success(),
            "{}",
            describe(&format!("libvirt-blades.sh {cmd} {args:?}"), &out)
        );
        text(&out.stdout).trim().to_string()
    }

    fn virsh(&self, blade: char, args: &[&str]) -> Output {
        run(Command::new("virsh")
            .arg("-q")
            .arg("-c")
            .arg(self.uri(blade))
            .args(args))
    }

    /// virsh that must succeed; returns its trimmed stdout.
    fn virsh_ok(&self, blade: char, args: &[&str]) -> String {
        let out = self.virsh(blade, args);
        assert!(
            out.status.success(),
            "{}",
            describe(&format!("virsh on blade {blade} {args:?}"), &out)
        );
        text(&out.stdout).trim().to_string()
    }

    fn domstate(&self, blade: char, guest: &str) -> String {
        self.virsh_ok(blade, &["domstate", guest])
    }

    /// Defines a guest from the harness's template on the given blades.
    fn define(&self, blades: &[char], guest: &str, disk: Option<&str>) {
        let mut args = vec![guest];
        args.extend(disk);
        let out = run(Command::new("bash")
            .arg(harness_path())
            .arg("guest-xml")
            .args(&args));
        assert!(out.status.success(), "{}", describe("guest-xml", &out));
        let xml = self.base.join(format!("{guest}.xml"));
        std::fs::write(&xml, &out.stdout).expect("write guest XML");
        for &blade in blades {
            self.virsh_ok(blade, &["define", xml.to_str().expect("utf-8 path")]);
        }
    }

    /// PID of the guest's QEMU on a blade, from libvirt's run directory.
    fn qemu_pid(&self, blade: char, guest: &str) -> u32 {
        let pid = self.harness("qemu-pid", &[&blade.to_string(), guest]);
        pid.parse()
            .unwrap_or_else(|_| panic!("qemu-pid printed {pid:?}"))
    }
}

impl Drop for Blades {
    fn drop(&mut self) {
        let out = Command::new("bash")
            .arg(harness_path())
            .arg("stop")
            .arg(&self.base)
            .output();
        let stopped = matches!(&out, Ok(o) if o.status.success());
        if !stopped {
            eprintln!(
                "stopping the blades of {} failed: {out:?}",
                self.base.display()
            );
        }
        if std::thread::panicking() || !stopped {
            eprintln!("blade logs kept in {}", self.base.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// True while /proc shows the process alive (a zombie counts as dead).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// The message libvirt gives when virtlockd refuses a lease held elsewhere.
fn assert_refused_by_virtlockd(out: &Output) {
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "second start was not refused: {}",
        describe("start", out)
    );
    assert!(
        err.contains("Lockspace resource") && err.contains("is locked"),
        "refused, but not by virtlockd: {}",
        describe("start", out)
    );
}

/// Retries a start that is expected to succeed once a lease is released; the lease
/// goes when the holder's QEMU exits, which libvirt and virtlockd learn asynchronously.
fn start_when_lease_free(blades: &Blades, blade: char, guest: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = blades.virsh(blade, &["start", guest]);
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "start on blade {blade} still failing: {}",
            describe("start", &out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn host_uuid(blades: &Blades, blade: char) -> String {
    let caps = blades.virsh_ok(blade, &["capabilities"]);
    let start = caps.find("<uuid>").expect("capabilities without <uuid>") + "<uuid>".len();
    let end = caps[start..].find("</uuid>").expect("unterminated <uuid>") + start;
    caps[start..end].to_string()
}

#[test]
fn both_blades_run_a_guest() {
    let _serial = serial();
    let blades = Blades::start("run");
    assert_ne!(blades.a, blades.b);
    let (ua, ub) = (host_uuid(&blades, 'a'), host_uuid(&blades, 'b'));
    assert_ne!(ua, ub, "both blades report host UUID {ua}");

    blades.define(&['a'], "g1", None);
    blades.virsh_ok('a', &["start", "g1"]);
    assert_eq!(blades.domstate('a', "g1"), "running");
    let pid = blades.qemu_pid('a', "g1");
    assert!(alive(pid), "QEMU {pid} of g1 not alive");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("QEMU cmdline");
    assert!(
        text(&cmdline).contains("guest=g1"),
        "PID {pid} from the run directory is not g1's QEMU"
    );
    // inside blade A, the default URI and /run/libvirt are A's
    let inside = run(Command::new("bash")
        .arg(harness_path())
        .args(["exec"])
        .arg(&blades.base)
        .args(["a", "virsh", "-q", "-c", "qemu:///system", "domstate", "g1"]));
    assert!(
        inside.status.success(),
        "{}",
        describe("exec a virsh", &inside)
    );
    assert_eq!(text(&inside.stdout).trim(), "running");
    let inside = run(Command::new("bash")
        .arg(harness_path())
        .args(["exec"])
        .arg(&blades.base)
        .args(["a", "cat", "/run/libvirt/qemu/g1.pid"]));
    assert_eq!(text(&inside.stdout).trim(), pid.to_string());
    // each blade has its own libvirt state: B does not know the guest
    let out = blades.virsh('b', &["domstate", "g1"]);
    assert!(
        !out.status.success(),
        "blade b knows g1: {}",
        describe("domstate", &out)
    );

    blades.virsh_ok('a', &["destroy", "g1"]);
    assert_eq!(blades.domstate('a', "g1"), "shut off");
    assert!(!alive(pid), "QEMU {pid} survived destroy");
}

#[test]
fn second_start_refused_until_qemu_killed() {
    let _serial = serial();
    let blades = Blades::start("lock");
    let disk = blades.harness("shared-disk", &["d1", "8"]);
    blades.define(&['a', 'b'], "d1", Some(&disk));

    blades.virsh_ok('a', &["start", "d1"]);
    assert_eq!(blades.domstate('a', "d1"), "running");
    let out = blades.virsh('b', &["start", "d1"]);
    assert_refused_by_virtlockd(&out);
    assert_eq!(blades.domstate('b', "d1"), "shut off");
    assert_eq!(blades.domstate('a', "d1"), "running");

    let pid = blades.qemu_pid('a', "d1");
    blades.harness("kill-qemu", &["a", "d1"]);
    assert!(!alive(pid));
    start_when_lease_free(&blades, 'b', "d1");
    assert_eq!(blades.domstate('b', "d1"), "running");
    assert_ne!(blades.domstate('a', "d1"), "running");
    // and now A is the one refused
    assert_refused_by_virtlockd(&blades.virsh('a', &["start", "d1"]));
}

#[test]
fn split_brain_held_by_virtlockd() {
    let _serial = serial();
    let blades = Blades::start("split");
    let disk = blades.harness("shared-disk", &["d2", "8"]);
    blades.define(&['a', 'b'], "d2", Some(&disk));
    blades.virsh_ok('a', &["start", "d2"]);
    let qemu = blades.qemu_pid('a', "d2");
    let libvirtd: u32 = blades
        .harness("pid", &["a", "libvirtd"])
        .parse()
        .expect("libvirtd pid");

    blades.harness("kill-libvirtd", &["a"]);
    assert!(
        !alive(libvirtd),
        "libvirtd {libvirtd} of A survived SIGKILL"
    );
    assert!(
        !blades.virsh('a', &["list"]).status.success(),
        "A's libvirtd still answers"
    );
    assert!(alive(qemu), "A's guest died with its libvirtd");

    // A's hypervisor is gone but its guest runs: B must not start it too
    assert_refused_by_virtlockd(&blades.virsh('b', &["start", "d2"]));
    assert!(alive(qemu));
    assert_eq!(blades.domstate('b', "d2"), "shut off");

    // fencing A's QEMU ends the split brain
    blades.harness("kill-qemu", &["a", "d2"]);
    start_when_lease_free(&blades, 'b', "d2");
    assert_eq!(blades.domstate('b', "d2"), "running");
}

#[test]
fn restarted_libvirtd_finds_its_running_guest() {
    let _serial = serial();
    let blades = Blades::start("revive");
    blades.define(&['a'], "g2", None);
    blades.virsh_ok('a', &["start", "g2"]);
    let qemu = blades.qemu_pid('a', "g2");

    blades.harness("kill-libvirtd", &["a"]);
    let uri = blades.harness("start-libvirtd", &["a"]);
    assert_eq!(uri, blades.a);
    assert_eq!(blades.domstate('a', "g2"), "running");
    assert_eq!(
        blades.qemu_pid('a', "g2"),
        qemu,
        "a new QEMU replaced the old one"
    );
    blades.virsh_ok('a', &["destroy", "g2"]);
    assert!(
        !alive(qemu),
        "QEMU {qemu} survived destroy after the restart"
    );
}

#[test]
fn start_cleans_up_after_a_crashed_run() {
    let _serial = serial();
    let first = Blades::start("stale");
    first.define(&['a'], "g3", None);
    first.virsh_ok('a', &["start", "g3"]);
    let qemu = first.qemu_pid('a', "g3");
    let libvirtd: u32 = first
        .harness("pid", &["b", "libvirtd"])
        .parse()
        .expect("libvirtd pid");
    // a process started inside a blade (as an agent would be)
    let mut inside = Command::new("bash")
        .arg(harness_path())
        .arg("exec")
        .arg(&first.base)
        .args(["b", "sleep", "600"])
        .spawn()
        .expect("spawn exec");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{}/cmdline", inside.id()))
        .map(|c| c.starts_with("sleep"))
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "exec did not start sleep");
        std::thread::sleep(Duration::from_millis(20));
    }
    // a run that dies without stopping its blades leaves them behind
    let base = first.base.clone();
    std::mem::forget(first);

    let second = Blades::start_at(base);
    assert!(!alive(qemu), "QEMU {qemu} of the crashed run still alive");
    assert!(
        !alive(libvirtd),
        "libvirtd {libvirtd} of the crashed run still alive"
    );
    let status = inside.wait().expect("wait for exec");
    assert!(
        !status.success(),
        "the process inside blade b was not killed"
    );
    // fresh blades: the old guest definition is gone
    assert!(!second.virsh('a', &["domstate", "g3"]).status.success());
    second.define(&['a'], "g3", None);
    second.virsh_ok('a', &["start", "g3"]);
    assert_eq!(second.domstate('a', "g3"), "running");
}
