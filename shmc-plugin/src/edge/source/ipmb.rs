//! The IPMB device source (`shmc-plugin run` with `ipmb_device`): the
//! single-threaded poll loop of the daemon.
//!
//! Each wake-up (IPMB readable, agent socket readable, a stop signal, or the
//! tick of [`TICK_MS`]) reads what is there, feeds the [`Runtime`] with the monotonic
//! time since start, runs the core's timers, and carries out every queued
//! output: IPMB requests are framed (rqSA = own address, LUNs 0) and written,
//! orders go to the [`AgentLink`], decisions and alerts are logged by the core.
//!
//! The IPMB device is opened read-write and non-blocking. In message mode
//! (`/dev/ipmb-N`) one read() is one message; in stream mode (pty, FIFO) the
//! bytes go through a [`StreamFramer`], and a terminal is switched to raw mode.
//! Every Platform Event request is answered at once with completion code 0x00
//! (an IPMC retransmits until answered); other requests addressed to us get
//! 0xC1 (invalid command). Buffers are fixed and reused: after start-up the
//! event path allocates nothing (log lines aside, and per-event logs are at
//! debug level).
//!
//! SIGTERM or SIGINT ([`StopSignals`]) ends the loop after the wake-up's
//! work is done: the stop is logged with what was left open and the totals,
//! and [`run`] returns `Ok`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Instant;

use log::{debug, error, info, warn};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::config::file::HostConfig;
use crate::config::ConfigError;
use crate::edge::agents::AgentLink;
use crate::edge::record::Discard;
use crate::edge::runtime::{Clocks, Detail, Inbound, IpmbPort, Runtime};
use crate::edge::stop::{OpenWork, StopSignals};
use crate::engine::Shelf;
use crate::wire::framer::{validate_message, Feed, FramerStats, StreamFramer};
use crate::wire::ipmb::{FrameError, Repr};

/// Longest wait between two timer runs, in milliseconds.
pub const TICK_MS: u16 = 10;

/// Why the run loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The IPMB device could not be opened or set up.
    #[error("cannot open IPMB device {}", .0.display())]
    Open(PathBuf, #[source] io::Error),
    /// The IPMB device failed.
    #[error("IPMB device {}", .0.display())]
    Device(PathBuf, #[source] Errno),
    /// The IPMB device closed (end of file).
    #[error("IPMB device {}: closed (end of file)", .0.display())]
    Closed(PathBuf),
    /// The configuration was refused by the core.
    #[error("configuration")]
    Config(#[from] ConfigError),
}

/// The daemon's IPMB side: device, framing state and counters.
struct Bus {
    file: File,
    stream: bool,
    framer: StreamFramer,
    stats: FramerStats,
    write_errors: u64,
}

impl Bus {
    fn write(&mut self, repr: &Repr<'_>) {
        let mut buf = [0u8; crate::capacity::MAX_IPMB_MESSAGE];
        let n = match repr.emit(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                self.write_errors += 1;
                warn!("IPMB message not sent: {e}");
                return;
            }
        };
        // One write() per message: message devices and ipmi_sim's channel need it.
        match nix::unistd::write(self.file.as_fd(), &buf[..n]) {
            Ok(w) if w == n => {}
            Ok(_) | Err(_) => {
                self.write_errors += 1;
                warn!("IPMB write to 0x{:02x} failed or was short", repr.rs_sa);
            }
        }
    }
}

impl IpmbPort for Bus {
    fn answer(&mut self, response: &Repr<'_>) {
        self.write(response);
    }

    fn request(&mut self, request: &Repr<'_>) -> Option<(u64, Vec<u8>)> {
        // The answer comes back over the bus.
        self.write(request);
        None
    }
}

fn milliseconds(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn handle(rt: &mut Runtime, bus: &mut Bus, now: u64, repr: &Repr<'_>) {
    match rt.on_message(now, repr, bus) {
        Inbound::Response => {}
        Inbound::Event { event, outcome } => {
            debug!("event from 0x{:02x}: {outcome:?}", event.generator)
        }
        Inbound::BadEvent(e) => warn!("Platform Event from 0x{:02x} refused: {e}", repr.rq_sa),
        Inbound::OwnRequest | Inbound::Other => debug!(
            "request netFn 0x{:02x} cmd 0x{:02x} from 0x{:02x} not handled",
            repr.net_fn, repr.cmd, repr.rq_sa
        ),
    }
}

fn log_totals(shelf: &Shelf, bus: &Bus) {
    let framed = if bus.stream {
        bus.framer.stats()
    } else {
        &bus.stats
    };
    info!(
        "totals: {} frames, {} bad, {} write errors; {:?}; {:?}",
        framed.frames,
        framed.bad_frames(),
        bus.write_errors,
        shelf.counters(),
        shelf.request_stats()
    );
}

fn open_device(cfg: &HostConfig) -> Result<File, RunError> {
    let path = &cfg.ipmb_device;
    let open = |e: io::Error| RunError::Open(path.clone(), e);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(open)?;
    if cfg.stream_mode() && nix::unistd::isatty(file.as_fd()).unwrap_or(false) {
        let mut t = nix::sys::termios::tcgetattr(file.as_fd()).map_err(|e| open(e.into()))?;
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(file.as_fd(), nix::sys::termios::SetArg::TCSANOW, &t)
            .map_err(|e| open(e.into()))?;
    }
    Ok(file)
}

/// Runs the daemon until the IPMB device fails (an error) or `stop` reports
/// a signal (`Ok`, after logging the stop, the work left open and the totals).
pub fn run(
    cfg: &HostConfig,
    agents: &mut dyn AgentLink,
    stop: &StopSignals,
) -> Result<(), RunError> {
    let mut rt = Runtime::new(cfg.shelf.clone(), Detail::Live)?;
    let file = open_device(cfg)?;
    let mut bus = Bus {
        file,
        stream: cfg.stream_mode(),
        framer: StreamFramer::new(),
        stats: FramerStats::new(),
        write_errors: 0,
    };
    info!(
        "shmc-plugin running: IPMB {} ({} mode), own address 0x{:02x}, {} blade(s)",
        cfg.ipmb_device.display(),
        if bus.stream { "stream" } else { "message" },
        rt.own_address(),
        cfg.shelf.blades.len()
    );
    let start = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        let (ipmb_ready, stop_ready) = {
            let mut fds: heapless::Vec<PollFd<'_>, 3> = heapless::Vec::new();
            let _ = fds.push(PollFd::new(bus.file.as_fd(), PollFlags::POLLIN));
            let stop_at = stop.poll_fd().map(|fd| {
                let _ = fds.push(PollFd::new(fd, PollFlags::POLLIN));
                fds.len() - 1
            });
            if let Some(fd) = agents.poll_fd() {
                let _ = fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::from(TICK_MS)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(RunError::Device(cfg.ipmb_device.clone(), e)),
            }
            let ready = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
            (ready(0), stop_at.is_some_and(ready))
        };
        let now = milliseconds(start);
        if ipmb_ready {
            match nix::unistd::read(bus.file.as_fd(), &mut buf) {
                Ok(0) => {
                    log_totals(rt.shelf(), &bus);
                    return Err(RunError::Closed(cfg.ipmb_device.clone()));
                }
                Ok(n) => {
                    if bus.stream {
                        let mut rest = &buf[..n];
                        loop {
                            match bus.framer.feed(rest) {
                                Feed::Consumed => break,
                                Feed::Message { message, remaining } => {
                                    handle(&mut rt, &mut bus, now, &message.repr());
                                    rest = remaining;
                                }
                                Feed::Rejected { reason, remaining } => {
                                    debug!("IPMB stream: {reason}");
                                    rest = remaining;
                                }
                            }
                        }
                    } else {
                        match validate_message(&buf[..n], &mut bus.stats) {
                            Ok(repr) => handle(&mut rt, &mut bus, now, &repr),
                            Err(e) => {
                                debug!("IPMB message rejected: {e}");
                                if e == FrameError::TooLong {
                                    warn!("IPMB read of {n} bytes is not one message");
                                }
                            }
                        }
                    }
                }
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                Err(e) => {
                    error!("IPMB read failed: {e}");
                    log_totals(rt.shelf(), &bus);
                    return Err(RunError::Device(cfg.ipmb_device.clone(), e));
                }
            }
        }
        // Every wake-up: the link also runs its retries here.
        rt.on_agents(Clocks::same(now), agents);
        rt.poll(now);
        // Without a decision stream nothing can fail to be written.
        let _ = rt.carry_out(Clocks::same(now), &mut bus, Some(agents), &mut Discard);
        if let Some(s) = stop_ready.then(|| stop.take()).flatten() {
            info!("stopping on {s}");
            OpenWork::of(rt.shelf(), agents).log();
            log_totals(rt.shelf(), &bus);
            stop.note_late();
            return Ok(());
        }
    }
}
