//! Killing a QEMU process directly: the first step of every fence of a guest whose QEMU pid
//! is known (libvirt's own destroy sends SIGTERM and looks again only 200 ms later, which
//! would be most of a failover's fence time), and the way out when libvirt does not answer.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::hypervisor::{Hypervisor, HypervisorError};

/// How often [`kill_and_wait`] looks whether the process is gone.
const POLL: Duration = Duration::from_millis(10);

/// Whether `pid` still runs: it exists in `/proc` and is not a zombie (a SIGKILLed QEMU whose
/// parent, libvirtd, is stuck stays a zombie until reaped, but it no longer runs the guest).
pub fn is_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Format: "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// Stops guest `name` at once, as a fence must, and hands the outcome to `done` as soon as it
/// is known: `Ok(Some(pid))` when the hypervisor's pid file named a live QEMU of the guest and
/// it was SIGKILLed and seen gone within `timeout` (libvirt's destroy then follows as its
/// bookkeeping, after `done`, so a hung libvirt cannot delay the answer); otherwise libvirt's
/// destroy decides (`Ok(None)` or its error): no QEMU pid known (libvirt's test driver, a
/// guest already stopped) or the process survived.
pub fn stop_now<H: Hypervisor + ?Sized>(
    hv: &H,
    name: &str,
    timeout: Duration,
    done: impl FnOnce(Result<Option<i32>, HypervisorError>),
) {
    if let Some(pid) = hv.qemu_pid(name).filter(|&pid| kill_and_wait(pid, timeout)) {
        done(Ok(Some(pid)));
        if let Err(e) = hv.destroy(name) {
            log::debug!("libvirt destroy of killed `{name}`: {e}");
        }
        return;
    }
    done(hv.destroy(name).map(|()| None));
}

/// Sends SIGKILL to `pid` and waits up to `timeout` until it no longer runs.
/// Returns whether the process is confirmed gone.
pub fn kill_and_wait(pid: i32, timeout: Duration) -> bool {
    if pid <= 1 {
        return false;
    }
    match kill(Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) => {}
        Err(Errno::ESRCH) => return true,
        Err(e) => {
            log::error!("kill -9 {pid}: {e}");
            return !is_running(pid);
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        if !is_running(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_kill_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(is_running(pid));
        // The child becomes a zombie until waited for: that counts as gone.
        assert!(kill_and_wait(pid, Duration::from_secs(5)));
        assert!(!child.wait().unwrap().success());
        assert!(!is_running(pid));
        assert!(
            !kill_and_wait(1, Duration::from_millis(1)),
            "pid 1 is never killed"
        );
    }
}
