//! Two real libvirtd blades for system tests, driven through
//! `tests/support/libvirt-blades.sh` (see tests/README.md).
//!
//! Use from a test crate with `#[path = "support/blades.rs"] mod blades;`.
//! [`Blades`] stops everything it started when dropped; its directory is removed
//! after a passing test and kept (with the daemons' logs) after a failing one.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Blades are heavy (two daemons, QEMU) and tests of one binary run in parallel
/// threads: take this lock for the whole test to run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the per-binary lock that serialises blade tests (survives a poisoned lock).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Path of the harness script.
pub fn harness_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/libvirt-blades.sh")
}

/// Lossy UTF-8 text of command output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Status, stdout and stderr of a finished command, for assertion messages.
pub fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout).trim(),
        text(&out.stderr).trim()
    )
}

/// Runs a command to completion; panics only if it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// True while /proc shows the process alive (a zombie counts as dead).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Waits (bounded) until `cond` holds; panics with `what` when it never does.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two running blades `a` and `b`.
pub struct Blades {
    /// The harness's BASEDIR: blade x's `/P` is `base/x/P`.
    pub base: PathBuf,
    /// libvirt URI of blade A (usable from the host).
    pub a: String,
    /// libvirt URI of blade B.
    pub b: String,
}

impl Blades {
    /// Starts blades in `/var/tmp/shelfha-blades-<test>-<pid>`; panics (naming the
    /// install step) when they do not come up. `test` must be short and path-safe.
    pub fn start(test: &str) -> Blades {
        let root = run(Command::new("id").arg("-u"));
        assert!(
            text(&root.stdout).trim() == "0",
            "libvirt blade tests need root (they run libvirtd and QEMU)"
        );
        Blades::start_at(PathBuf::from(format!(
            "/var/tmp/shelfha-blades-{}-{}",
            test,
            std::process::id()
        )))
    }

    /// Starts blades in `base`; whatever an earlier run left there is stopped first.
    pub fn start_at(base: PathBuf) -> Blades {
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

    /// URI of blade `'a'` or `'b'`.
    pub fn uri(&self, blade: char) -> &str {
        match blade {
            'a' => &self.a,
            'b' => &self.b,
            _ => panic!("blade {blade}"),
        }
    }

    /// Runs a harness subcommand on these blades (`cmd BASEDIR args...`); panics
    /// unless it succeeds; returns its trimmed stdout.
    pub fn harness(&self, cmd: &str, args: &[&str]) -> String {
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

    /// A command that runs `program args...` inside blade `blade` (its mount
    /// namespace: `/run/libvirt` and `qemu:///system` are the blade's).
    pub fn exec_command(&self, blade: char, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(harness_path())
            .arg("exec")
            .arg(&self.base)
            .arg(blade.to_string())
            .arg(program)
            .args(args);
        cmd
    }

    /// `virsh -q -c URI args...` against a blade, from the host.
    pub fn virsh(&self, blade: char, args: &[&str]) -> Output {
        run(Command::new("virsh")
            .arg("-q")
            .arg("-c")
            .arg(self.uri(blade))
            .args(args))
    }

    /// virsh that must succeed; returns its trimmed stdout.
    pub fn virsh_ok(&self, blade: char, args: &[&str]) -> String {
        let out = self.virsh(blade, args);
        assert!(
            out.status.success(),
            "{}",
            describe(&format!("virsh on blade {blade} {args:?}"), &out)
        );
        text(&out.stdout).trim().to_string()
    }

    /// `virsh domstate` of a guest, e.g. "running" or "shut off".
    pub fn domstate(&self, blade: char, guest: &str) -> String {
        self.virsh_ok(blade, &["domstate", guest])
    }

    /// Writes the template guest's XML (`guest-xml NAME [DISK]`) to
    /// `base/NAME.xml` and returns that path.
    pub fn guest_xml(&self, guest: &str, disk: Option<&str>) -> PathBuf {
        let mut args = vec![guest];
        args.extend(disk);
        let out = run(Command::new("bash")
            .arg(harness_path())
            .arg("guest-xml")
            .args(&args));
        assert!(out.status.success(), "{}", describe("guest-xml", &out));
        let xml = self.base.join(format!("{guest}.xml"));
        std::fs::write(&xml, &out.stdout).expect("write guest XML");
        xml
    }

    /// Defines the template guest on the given blades.
    pub fn define(&self, blades: &[char], guest: &str, disk: Option<&str>) {
        let xml = self.guest_xml(guest, disk);
        for &blade in blades {
            self.virsh_ok(blade, &["define", xml.to_str().expect("utf-8 path")]);
        }
    }

    /// A disk both blades see as a block device at one path (a shared LUN).
    pub fn shared_disk(&self, name: &str, size_mib: u32) -> String {
        self.harness("shared-disk", &[name, &size_mib.to_string()])
    }

    /// PID of the guest's QEMU on a blade, from libvirt's run directory.
    pub fn qemu_pid(&self, blade: char, guest: &str) -> u32 {
        let pid = self.harness("qemu-pid", &[&blade.to_string(), guest]);
        pid.parse()
            .unwrap_or_else(|_| panic!("qemu-pid printed {pid:?}"))
    }

    /// PID of a blade daemon: "libvirtd", "virtlogd" or "virtlockd".
    pub fn daemon_pid(&self, blade: char, daemon: &str) -> u32 {
        let pid = self.harness("pid", &[&blade.to_string(), daemon]);
        pid.parse()
            .unwrap_or_else(|_| panic!("pid printed {pid:?}"))
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
