//! System tests of the two-blade libvirt set-up the end-to-end tests build on, and of
//! libvirt's own double-run protection: two real `libvirtd` daemons with QEMU (TCG)
//! started by `tests/support/libvirt-blades.sh`, one shared `virtlockd` lockspace.
//!
//! Needs root and the packages `bash tests/ci.sh install` installs. Run one test alone:
//! `cargo test -p shelfha --test libvirt_blades -- second_start_refused_until_qemu_killed`.

#[path = "support/blades.rs"]
mod blades;

use std::process::Output;
use std::time::{Duration, Instant};

use blades::{alive, describe, run, serial, text, wait_for, Blades};

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
    let inside = run(&mut blades.exec_command(
        'a',
        "virsh",
        &["-q", "-c", "qemu:///system", "domstate", "g1"],
    ));
    assert!(
        inside.status.success(),
        "{}",
        describe("exec a virsh", &inside)
    );
    assert_eq!(text(&inside.stdout).trim(), "running");
    let inside = run(&mut blades.exec_command('a', "cat", &["/run/libvirt/qemu/g1.pid"]));
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
    let disk = blades.shared_disk("d1", 8);
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
    let disk = blades.shared_disk("d2", 8);
    blades.define(&['a', 'b'], "d2", Some(&disk));
    blades.virsh_ok('a', &["start", "d2"]);
    let qemu = blades.qemu_pid('a', "d2");
    let libvirtd = blades.daemon_pid('a', "libvirtd");

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
    let libvirtd = first.daemon_pid('b', "libvirtd");
    // a process started inside a blade (as an agent would be)
    let mut inside = first
        .exec_command('b', "sleep", &["600"])
        .spawn()
        .expect("spawn exec");
    let pid = inside.id();
    wait_for("sleep inside blade b", Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .map(|c| c.starts_with("sleep"))
            .unwrap_or(false)
    });
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
