//! Killing a QEMU process directly: the first step of every fence of a guest whose QEMU pid
//! is known (libvirt's own destroy sends SIGTERM and looks again only 200 ms later, which
//! would be most of a failover's fence time), and the way out when libvirt does not answer.
//!
//! After libvirt's destroys (and without libvirt), every guest is accounted for by
//! [`account`] from two readings of the agent's own: its pid file and a scan of the process
//! table ([`Hypervisor::qemu_processes`]). libvirt can lose track of a QEMU (its state file
//! removed, libvirtd restarted: the guest is listed "shut off" while its QEMU runs), so its
//! listing never stands alone. Every QEMU of the guest either reading finds is SIGKILLed and
//! must be seen gone. A guest is proven stopped only by a positive reading: its QEMU seen gone
//! after SIGKILL, or a complete scan that shows no QEMU of that name (or, with the scan
//! failed, libvirt's own successful destroy). A missing pid file proves nothing; a guest with
//! no pid found and no complete scan is [`Accounted::Remaining`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::decide::fence::judge;
use crate::hypervisor::{Hypervisor, HypervisorError, QemuProcess, ScanError};

/// How often [`kill_and_wait`] looks whether the process is gone.
const POLL: Duration = Duration::from_millis(10);

/// Whether `pid` still runs: it exists in `/proc` and is not a zombie (a SIGKILLed QEMU whose
/// parent, libvirtd, is stuck stays a zombie until reaped, but it no longer runs the guest).
/// Only a reading proves it gone: `/proc/<pid>/stat` absent (ENOENT, ESRCH) or showing a
/// zombie; any other error, or a stat that cannot be parsed, counts as still running.
pub fn is_running(pid: i32) -> bool {
    let read = std::fs::read_to_string(format!("/proc/{pid}/stat"));
    if let Err(e) = &read {
        if !is_absence(e) {
            log::warn!("/proc/{pid}/stat: {e}: counted as still running");
        }
    }
    running_from_stat(&read)
}

/// Whether a read error is the kernel saying the process does not exist.
fn is_absence(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// [`is_running`] from the result of reading `/proc/<pid>/stat`.
fn running_from_stat(read: &std::io::Result<String>) -> bool {
    match read {
        // Format: "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_none_or(|state| state != 'Z' && state != 'X'),
        Err(e) => !is_absence(e),
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

pub use crate::decide::fence::{Accounted, Prior};

/// Accounts for the guests of `prior` with the agent's own readings, whatever libvirt said:
/// every QEMU of each found by its pid file or by `scan` (one reading of the process table,
/// taken after libvirt's destroys) is SIGKILLed, and each must be seen gone within `timeout`
/// (all are killed first, then waited for together). A guest counts as stopped only when
/// (a) every QEMU of it found was seen gone (or its prior is [`Prior::Killed`] and none is
/// left), (b) the scan is complete and shows no QEMU of it, or (c) the scan failed and
/// libvirt's destroy of it succeeded ([`Prior::Destroyed`]: a reading of libvirt's, logged as
/// resting on libvirt alone). A guest libvirt merely lists inactive or does not know is not
/// proven stopped by a failed scan: that is an absence in libvirt's books.
pub fn account<H: Hypervisor + ?Sized>(
    hv: &H,
    prior: &BTreeMap<String, Prior>,
    scan: &Result<Vec<QemuProcess>, ScanError>,
    timeout: Duration,
) -> BTreeMap<String, Accounted> {
    let mut targets: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
    for name in prior.keys() {
        let pids = targets.entry(name).or_default();
        pids.extend(hv.qemu_pid(name));
        if let Ok(procs) = scan {
            pids.extend(procs.iter().filter(|p| &p.guest == name).map(|p| p.pid));
        }
    }
    let all: BTreeSet<i32> = targets.values().flatten().copied().collect();
    let survivors = kill_all_and_wait(&all, timeout);
    targets
        .into_iter()
        .map(|(name, pids)| {
            let before = prior.get(name).copied().unwrap_or(Prior::Nothing);
            let left: Vec<i32> = pids.intersection(&survivors).copied().collect();
            let found: Vec<i32> = pids.iter().copied().collect();
            let a = judge(before, &found, &left, scan.as_ref().map(|_| ()));
            match (&a, scan) {
                (Accounted::Killed, _) if !found.is_empty() => {
                    if matches!(before, Prior::Destroyed | Prior::LibvirtInactive) {
                        log::error!(
                            "`{name}`: libvirt said it was stopped, but QEMU pid {pids:?} ran: \
                             killed directly (libvirt lost track of it)"
                        );
                    } else {
                        log::warn!("`{name}`: QEMU pid {pids:?} killed directly");
                    }
                }
                (Accounted::Destroyed, Err(e)) => log::warn!(
                    "`{name}`: the process table could not be read ({e}): the proof that it \
                     stopped rests on libvirt's destroy alone"
                ),
                _ => {}
            }
            (name.to_owned(), a)
        })
        .collect()
}

/// Sends SIGKILL to every pid, then waits up to `timeout` until none runs. Returns the ones
/// still running (pid 0 and 1 are never killed and count as running).
pub fn kill_all_and_wait(pids: &BTreeSet<i32>, timeout: Duration) -> BTreeSet<i32> {
    let mut left = BTreeSet::new();
    for &pid in pids {
        if pid <= 1 {
            left.insert(pid);
            continue;
        }
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) => {
                left.insert(pid);
            }
            Err(Errno::ESRCH) => {}
            Err(e) => {
                log::error!("kill -9 {pid}: {e}");
                left.insert(pid);
            }
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        left.retain(|&p| p <= 1 || is_running(p));
        if left.iter().all(|&p| p <= 1) || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(POLL);
    }
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
            // Not killed (EPERM, ...): gone only if a reading of /proc shows it gone.
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

    #[test]
    fn test_only_a_reading_proves_a_process_gone() {
        use std::io::{Error, ErrorKind};
        let stat = |s: &str| Ok(s.to_owned());
        assert!(running_from_stat(&stat("42 (qemu-kvm) S 1 2 3")));
        assert!(running_from_stat(&stat("42 (a) b) R 1")));
        assert!(!running_from_stat(&stat("42 (qemu-kvm) Z 1 2 3")));
        assert!(!running_from_stat(&stat("42 (qemu) X 1")));
        assert!(!running_from_stat(&Err(Error::from(ErrorKind::NotFound))));
        assert!(!running_from_stat(&Err(Error::from_raw_os_error(
            libc::ENOENT
        ))));
        assert!(!running_from_stat(&Err(Error::from_raw_os_error(
            libc::ESRCH
        ))));
        // Not readings of absence: still running.
        for errno in [
            libc::EACCES,
            libc::EPERM,
            libc::EIO,
            libc::ENOMEM,
            libc::EMFILE,
        ] {
            assert!(
                running_from_stat(&Err(Error::from_raw_os_error(errno))),
                "errno {errno}"
            );
        }
        assert!(running_from_stat(&stat("")), "unparseable");
        assert!(running_from_stat(&stat("42 (qemu")), "truncated");
        assert!(running_from_stat(&stat("42 (qemu) ")), "no state");
    }

    #[test]
    fn test_kill_all_reports_survivors() {
        let mut a = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = a.id() as i32;
        let left = kill_all_and_wait(&[1, pid].into(), Duration::from_secs(5));
        assert_eq!(left, [1].into(), "pid 1 survives, the child is gone");
        a.wait().unwrap();
    }
}
