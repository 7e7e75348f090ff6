//! A fence, decided: what the readings taken of each guest prove (stopped, how, or still
//! remaining), and the counts a FenceSelf reports. The readings themselves (pid files, the
//! process table, SIGKILL and seen gone) are taken by `execute::kill`.
//!
//! A guest is proven stopped only by a positive reading: its QEMU seen gone after SIGKILL, or
//! a complete scan that shows no QEMU of that name (or, with the scan failed, libvirt's own
//! successful destroy). A missing pid file proves nothing; a guest with no pid found and no
//! complete scan is [`Accounted::Remaining`].

use std::collections::BTreeMap;

use crate::order::FenceReport;

/// How one guest was accounted for by a fence or a destroy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accounted {
    /// libvirt destroyed it (its destroy call succeeded).
    Destroyed,
    /// Its QEMU was SIGKILLed by the agent and seen gone.
    Killed,
    /// A positive reading that it does not run: libvirt lists it inactive or has no such
    /// domain, or a complete process-table scan shows no QEMU of that name.
    NotRunning,
    /// Not proven stopped, with why (log text): it counts as still running.
    Remaining(String),
}

/// What was known of a guest before the process table was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior {
    /// Nothing: libvirt did not answer, failed, or was not asked.
    Nothing,
    /// Its QEMU (found by the pid file) was SIGKILLed by the agent and seen gone.
    Killed,
    /// libvirt's destroy of it succeeded: libvirt had its QEMU and stopped it.
    Destroyed,
    /// libvirt lists it inactive or has no such domain: libvirt's bookkeeping only, which
    /// loses a QEMU whose state file is gone (it then lists a running guest "shut off").
    LibvirtInactive,
}

/// What the readings of one guest prove: `found` the QEMU pids of it found (pid file and
/// scan), `left` those still running after SIGKILL, `scan` the process-table reading
/// (`Err` with why it failed), `before` what libvirt did or said.
pub fn judge<E: std::fmt::Display + ?Sized>(
    before: Prior,
    found: &[i32],
    left: &[i32],
    scan: Result<(), &E>,
) -> Accounted {
    if !left.is_empty() {
        return Accounted::Remaining(format!("QEMU pid {left:?} still runs after SIGKILL"));
    }
    if !found.is_empty() {
        return Accounted::Killed;
    }
    match (scan, before) {
        (_, Prior::Killed) => Accounted::Killed,
        (Ok(()), Prior::Destroyed) => Accounted::Destroyed,
        (Ok(()), _) => Accounted::NotRunning,
        // The proof rests on libvirt's destroy alone (logged by the caller).
        (Err(_), Prior::Destroyed) => Accounted::Destroyed,
        (Err(e), Prior::LibvirtInactive) => Accounted::Remaining(format!(
            "libvirt lists it not running, but libvirt can lose track of a QEMU and the \
             process table could not be read ({e})"
        )),
        (Err(e), Prior::Nothing) => Accounted::Remaining(format!(
            "no QEMU pid file, and the process table could not be read ({e})"
        )),
    }
}

/// The counts of a FenceSelf from every guest's account (`elapsed_ms` is the caller's), and
/// the guests not confirmed stopped, with why.
pub fn tally(
    done: BTreeMap<String, Accounted>,
    elapsed_ms: u32,
) -> (FenceReport, Vec<(String, String)>) {
    let mut report = FenceReport {
        elapsed_ms,
        ..FenceReport::default()
    };
    let mut remaining = Vec::new();
    for (name, a) in done {
        let n = match a {
            Accounted::Destroyed => &mut report.destroyed,
            Accounted::Killed => &mut report.killed,
            Accounted::NotRunning => &mut report.already_stopped,
            Accounted::Remaining(why) => {
                remaining.push((name, why));
                &mut report.failed
            }
        };
        *n = n.saturating_add(1);
    }
    (report, remaining)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_only_positive_readings_prove_a_stop() {
        let ok: Result<(), &str> = Ok(());
        let failed: Result<(), &str> = Err("EACCES");
        assert_eq!(judge(Prior::Nothing, &[5], &[], failed), Accounted::Killed);
        assert!(matches!(
            judge(Prior::Destroyed, &[5], &[5], ok),
            Accounted::Remaining(_)
        ));
        assert_eq!(judge(Prior::Killed, &[], &[], failed), Accounted::Killed);
        assert_eq!(judge(Prior::Destroyed, &[], &[], ok), Accounted::Destroyed);
        assert_eq!(judge(Prior::Nothing, &[], &[], ok), Accounted::NotRunning);
        assert_eq!(
            judge(Prior::LibvirtInactive, &[], &[], ok),
            Accounted::NotRunning
        );
        assert_eq!(
            judge(Prior::Destroyed, &[], &[], failed),
            Accounted::Destroyed
        );
        assert!(matches!(
            judge(Prior::LibvirtInactive, &[], &[], failed),
            Accounted::Remaining(_)
        ));
        assert!(matches!(
            judge(Prior::Nothing, &[], &[], failed),
            Accounted::Remaining(_)
        ));
    }

    #[test]
    fn test_tally() {
        let done = BTreeMap::from([
            ("a".to_owned(), Accounted::Destroyed),
            ("b".to_owned(), Accounted::Killed),
            ("c".to_owned(), Accounted::NotRunning),
            ("d".to_owned(), Accounted::Remaining("x".into())),
        ]);
        let (r, remaining) = tally(done, 7);
        assert_eq!(
            (
                r.destroyed,
                r.killed,
                r.already_stopped,
                r.failed,
                r.elapsed_ms
            ),
            (1, 1, 1, 1, 7)
        );
        assert!(!r.complete());
        assert_eq!(remaining, vec![("d".to_owned(), "x".to_owned())]);
    }
}
