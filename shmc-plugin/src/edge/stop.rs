//! Stopping `shmc-plugin run` on SIGTERM or SIGINT.
//!
//! [`StopSignals::install`] blocks both signals in the calling thread (the
//! binary does it first thing, before any other thread could start) and
//! opens a `signalfd` for them. Blocked, they never interrupt or kill the
//! process: they wait in the descriptor, which the run loops poll together
//! with their event source, so a stop wakes the loop at once. The loop then
//! logs which signal stopped it, names what was left open ([`OpenWork`]),
//! logs its totals, writes its last decision-stream line and returns `Ok`;
//! the binary flushes its outputs and exits with status 0. A second signal
//! during that shutdown waits in the descriptor like the first, so it cannot
//! cut the shutdown short (only SIGKILL can).
//!
//! Open incidents are left as they are: nothing more is sent, no fence is
//! undone, no order is withdrawn. A plugin started again learns the blades'
//! states from their events (a blade found in M1/M0 without the start of its
//! deactivation seen is `blade_lost`, so it is still failed over once).

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};

use log::{info, warn};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::agents::AgentLink;

use crate::engine::{Confirmation, FenceStep, IncidentState, OpenIncident, Shelf};
use crate::wire::addr::Slot;

/// The signals that stop the daemon.
pub const STOP_SIGNALS: [Signal; 2] = [Signal::SIGTERM, Signal::SIGINT];

/// A stop request: the signal and the process that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// SIGTERM or SIGINT.
    pub signal: Signal,
    /// Process id of the sender (0 for the kernel, e.g. a terminal's Ctrl-C).
    pub sender: u32,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sender == 0 {
            write!(f, "{}", self.signal)
        } else {
            write!(f, "{} from pid {}", self.signal, self.sender)
        }
    }
}

/// Where the run loops learn that they must stop.
#[derive(Debug)]
pub struct StopSignals {
    fd: Option<SignalFd>,
}

impl StopSignals {
    /// Blocks SIGTERM and SIGINT in the calling thread (threads it starts
    /// later inherit the mask) and opens a non-blocking `signalfd` for them.
    pub fn install() -> nix::Result<Self> {
        let mut mask = SigSet::empty();
        for s in STOP_SIGNALS {
            mask.add(s);
        }
        mask.thread_block()?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Self { fd: Some(fd) })
    }

    /// Never asks for a stop (the run loops then end only on their own errors).
    pub fn none() -> Self {
        Self { fd: None }
    }

    /// The descriptor to poll: readable while a stop signal is pending.
    pub fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// Takes one pending stop signal, without waiting.
    pub fn take(&self) -> Option<Stop> {
        let fd = self.fd.as_ref()?;
        match fd.read_signal() {
            Ok(Some(info)) => {
                let signal = i32::try_from(info.ssi_signo)
                    .ok()
                    .and_then(|n| Signal::try_from(n).ok())?;
                Some(Stop {
                    signal,
                    sender: info.ssi_pid,
                })
            }
            Ok(None) => None,
            Err(e) => {
                warn!("reading the stop signal descriptor failed: {e}");
                None
            }
        }
    }

    /// Logs, then drops, any stop signal that arrived during the shutdown.
    pub fn note_late(&self) {
        while let Some(s) = self.take() {
            info!("{s} during shutdown: ignored, the shutdown completes");
        }
    }
}

/// What a stop leaves unfinished: open incidents, guest failovers waiting
/// for their guest to be destroyed, predictive holds, unacknowledged orders.
#[derive(Debug, Clone, Default)]
pub struct OpenWork {
    /// Open incidents with their blade's slot and partner slot.
    pub incidents: Vec<(Slot, Slot, OpenIncident)>,
    /// Guest failovers waiting for DestroyGuest's confirmation: (slot, guest, decision).
    pub guests: Vec<(Slot, String, u32)>,
    /// Predictive holds pending (dropped by the stop).
    pub holds: usize,
    /// Agent orders not acknowledged yet (no longer retried).
    pub unacknowledged: usize,
}

fn step_name(s: FenceStep) -> &'static str {
    match s {
        FenceStep::Deactivate => "deactivate",
        FenceStep::ColdReset => "cold reset",
        FenceStep::PowerOff => "power off",
    }
}

fn proof_name(c: Confirmation) -> &'static str {
    match c {
        Confirmation::HotSwapM1 => "M1",
        Confirmation::HotSwapM0 => "M0",
        Confirmation::SelfFenced => "self-fence",
        Confirmation::GuestDestroyed => "guest destroyed",
        Confirmation::WatchdogExpired => "watchdog expired",
    }
}

/// One incident in words: where it stands and what is left undone.
pub fn describe(slot: Slot, partner: Slot, inc: &OpenIncident) -> String {
    let state = match inc.state {
        IncidentState::Migrating { .. } => {
            "guests being migrated (Migrate ordered, no report yet)".to_string()
        }
        IncidentState::Evacuating { .. } => format!(
            "evacuation to partner slot {partner} under way, blade not deactivated yet"
        ),
        IncidentState::SelfFencing { .. } => format!(
            "self-fence ordered, not confirmed, IPMB fence not started; partner slot {partner} not ordered to take over"
        ),
        IncidentState::Fencing {
            step,
            rounds,
            self_fence,
            ..
        } => format!(
            "fence NOT confirmed (step {}, round {}{}); partner slot {partner} not ordered to take over",
            step_name(step),
            rounds.saturating_add(1),
            if self_fence { ", self-fence ordered too" } else { "" }
        ),
        IncidentState::FailingOver { proof, .. } => format!(
            "fence confirmed ({}), partner slot {partner} ordered to restart the guests, no report yet",
            proof_name(proof)
        ),
        IncidentState::Recovered { .. } => "failed over, blade not back in M4 yet".to_string(),
    };
    format!("#{} {} slot {slot}: {state}", inc.id, inc.class)
}

impl OpenWork {
    /// Collects what `shelf` and `agents` have not finished.
    pub fn of(shelf: &Shelf, agents: &dyn AgentLink) -> Self {
        let incidents = shelf
            .config()
            .blades
            .iter()
            .filter_map(|b| {
                let status = shelf.blade(b.slot)?;
                Some((b.slot, b.partner, status.incident?))
            })
            .collect();
        let guests = shelf
            .pending_guest_failovers()
            .map(|(slot, name, id)| (slot, name.as_str().to_string(), id))
            .collect();
        Self {
            incidents,
            guests,
            holds: shelf.pending_holds(),
            unacknowledged: agents.unacknowledged(),
        }
    }

    /// Decision numbers of the open incidents and pending guest failovers.
    pub fn decisions(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.incidents.iter().map(|(_, _, i)| i.id).collect();
        ids.extend(self.guests.iter().map(|(_, _, id)| *id));
        ids
    }

    /// Logs one warning naming everything left open, or nothing if all is done.
    pub fn log(&self) {
        let mut parts: Vec<String> = self
            .incidents
            .iter()
            .map(|(slot, partner, inc)| describe(*slot, *partner, inc))
            .collect();
        parts.extend(self.guests.iter().map(|(slot, name, id)| {
            format!("#{id} guest {name} of slot {slot}: destroy not confirmed, partner not ordered to start it")
        }));
        if self.holds > 0 {
            parts.push(format!(
                "{} predictive hold(s) dropped undecided",
                self.holds
            ));
        }
        if self.unacknowledged > 0 {
            parts.push(format!(
                "{} agent order(s) unacknowledged, no longer retried",
                self.unacknowledged
            ));
        }
        if parts.is_empty() {
            return;
        }
        warn!(
            "stopping with work in progress, left as it is (nothing more is sent, no fence undone; a restarted plugin learns the blades' states from their events): {}",
            parts.join("; ")
        );
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::classify::Class;

    fn incident(state: IncidentState) -> OpenIncident {
        OpenIncident {
            id: 7,
            class: Class::BladeHardware,
            opened_ms: 0,
            state,
        }
    }

    #[test]
    fn test_unconfirmed_fence_named_with_its_step() {
        let d = describe(
            Slot(3),
            Slot(4),
            &incident(IncidentState::Fencing {
                step: FenceStep::ColdReset,
                deadline: 0,
                rounds: 1,
                self_fence: true,
                evacuated: false,
            }),
        );
        assert_eq!(
            d,
            "#7 blade_hardware slot 3: fence NOT confirmed (step cold reset, round 2, self-fence ordered too); partner slot 4 not ordered to take over"
        );
    }

    #[test]
    fn test_confirmed_fence_names_the_partner_order() {
        let inc = incident(IncidentState::FailingOver {
            proof: Confirmation::HotSwapM1,
            self_fence: false,
            evacuated: false,
        });
        assert_eq!(
            describe(Slot(1), Slot(2), &inc),
            "#7 blade_hardware slot 1: fence confirmed (M1), partner slot 2 ordered to restart the guests, no report yet"
        );
    }

    #[test]
    fn test_stop_display_names_the_sender() {
        let s = Stop {
            signal: Signal::SIGTERM,
            sender: 42,
        };
        assert_eq!(s.to_string(), "SIGTERM from pid 42");
        let s = Stop {
            signal: Signal::SIGINT,
            sender: 0,
        };
        assert_eq!(s.to_string(), "SIGINT");
    }

    #[test]
    fn test_none_never_stops() {
        let s = StopSignals::none();
        assert!(s.poll_fd().is_none());
        assert_eq!(s.take(), None);
    }
}
