//! Stopping `blade-agent run` cleanly on SIGTERM or SIGINT (systemd's stop, a terminal's
//! Ctrl-C): the daemon's loop ends within a heartbeat interval and, with a hardware watchdog
//! armed, disarms it only once the ShMC knows (see `watchdog::armed`).
//!
//! The handler only stores into an atomic (async-signal-safe); a small thread carries that
//! into the daemon's stop flag. Signals are handled, not blocked, so processes the agent or
//! libvirt start (ssh for a remote URI) keep the default dispositions of their own.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static REQUESTED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    REQUESTED.store(signal, Ordering::SeqCst);
}

/// How often the relay thread looks at the signal flag.
const RELAY_POLL: Duration = Duration::from_millis(50);

/// Installs the handlers; `stop` is set once SIGTERM or SIGINT arrived.
pub fn on_signal_set(stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only performs an atomic store, which is async-signal-safe.
        unsafe { sigaction(s, &action) }.map_err(std::io::Error::from)?;
    }
    std::thread::Builder::new()
        .name("agent-stop".into())
        .spawn(move || loop {
            let s = REQUESTED.load(Ordering::SeqCst);
            if s != 0 {
                let name = Signal::try_from(s).map_or("a signal", |s| s.as_str());
                log::info!("{name}: stopping");
                stop.store(true, Ordering::SeqCst);
                return;
            }
            std::thread::sleep(RELAY_POLL);
        })
        .map(|_| ())
}
