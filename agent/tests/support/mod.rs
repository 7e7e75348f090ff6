//! Two real libvirtd blades for the agent's system tests, through
//! `tests/support/libvirt-blades.sh` at the workspace root.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use blade_agent::config::Config;
use blade_agent::execute::Agent;
use blade_agent::hypervisor::libvirt::LibvirtHypervisor;

/// The libvirt hypervisor for `cfg` and an agent core over it.
pub fn agent(cfg: Config) -> (Arc<LibvirtHypervisor>, Agent<LibvirtHypervisor>) {
    let hv = Arc::new(LibvirtHypervisor::open(&cfg.libvirt_uri, cfg.qemu_run_dir.clone()).unwrap());
    let a = Agent::new(Arc::clone(&hv), cfg).unwrap();
    (hv, a)
}

/// Two daemons and their QEMUs per test: one test at a time.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support/libvirt-blades.sh")
}

pub fn sh(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(harness())
        .args(args)
        .output()
        .expect("bash")
}

pub fn sh_ok(args: &[&str]) -> String {
    let out = sh(args);
    assert!(
        out.status.success(),
        "libvirt-blades.sh {args:?}: {}\n{}\n(packages missing? run `bash tests/ci.sh install`)",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Blades A and B; stopped and removed when dropped (also when a test panics).
pub struct Blades {
    pub base: String,
    pub a: String,
    pub b: String,
}

impl Blades {
    pub fn start(test: &str) -> Blades {
        let base = format!("/var/tmp/agent-{test}-{}", std::process::id());
        let out = sh_ok(&["start", &base]);
        let uri = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(k))
                .expect("URI line")
                .to_owned()
        };
        Blades {
            a: uri("A="),
            b: uri("B="),
            base,
        }
    }

    pub fn run_dir(&self, blade: &str) -> PathBuf {
        PathBuf::from(format!("{}/{blade}/run/libvirt/qemu", self.base))
    }

    pub fn guest_xml(&self, name: &str, disk: Option<&str>) -> String {
        let mut args = vec!["guest-xml", name];
        if let Some(d) = disk {
            args.push(d);
        }
        sh_ok(&args)
    }
}

impl Blades {
    /// PID of the QEMU running `name` on `blade` ("a" or "b").
    pub fn qemu_pid(&self, blade: &str, name: &str) -> i32 {
        sh_ok(&["qemu-pid", &self.base, blade, name])
            .trim()
            .parse()
            .expect("qemu pid")
    }
}

impl Drop for Blades {
    fn drop(&mut self) {
        let _ = sh(&["stop", &self.base]);
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
