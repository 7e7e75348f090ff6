//! The simulated IPMB on a pty pair: shmc-plugin opens the slave side exactly as
//! it would open `/dev/ipmb-0`; the simulator owns the master side and carries
//! whole `ipmb_dev_int` messages between it and the emulated IPMCs.
//!
//! Control is line-oriented on stdin (see [`Command`]); what happens on the
//! bus is reported as JSON lines on stdout, so a test or an operator can drive
//! and watch a shelf from the shell.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::openpty;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use shmc_plugin::wire::event::MState;
use shmc_plugin::wire::framer::{Feed, StreamFramer};
use shmc_plugin::wire::ipmb::Message;

use super::{Backplane, Fault};

/// A command read from the control input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `inject ADDR FAULT`: inject a fault into the IPMC at ADDR (e.g. `0x82`).
    Inject(u8, Fault),
    /// `recover ADDR`: the IPMC answers again and activates its blade (back to M4).
    Recover(u8),
    /// `clear ADDR FAULT`: the deassertion of a sensor fault (e.g. the temperature back to normal).
    Clear(u8, Fault),
    /// `garbage N`: put N corrupted bytes on the bus.
    Garbage(usize),
    /// `state`: print every IPMC's hot-swap state.
    State,
    /// `quit`: stop the simulator.
    Quit,
}

/// Parses one control line; the error names what was wrong.
pub fn parse_command(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let addr = |w: Option<&&str>| -> Result<u8, String> {
        let w = w.ok_or("missing IPMB address")?;
        let v = match w.strip_prefix("0x") {
            Some(hex) => u8::from_str_radix(hex, 16),
            None => w.parse(),
        };
        v.map_err(|_| format!("bad IPMB address {w:?}"))
    };
    match words.first().copied() {
        Some(verb @ ("inject" | "clear")) => {
            let a = addr(words.get(1))?;
            let fault = match words.get(2).copied() {
                Some("critical-temperature") => Fault::CriticalTemperature,
                Some("noncritical-temperature") => Fault::NonCriticalTemperature,
                Some("watchdog") => Fault::WatchdogExpiry,
                Some("os-stop") => Fault::OsCriticalStop,
                Some("silent") => Fault::Silent,
                Some("handle") => Fault::HandleOpened,
                Some("ipmb-a-lost") => Fault::IpmbALost,
                Some("ignore-deactivation") => Fault::IgnoreDeactivation,
                other => return Err(format!("unknown fault {other:?}")),
            };
            Ok(if verb == "inject" {
                Command::Inject(a, fault)
            } else {
                Command::Clear(a, fault)
            })
        }
        Some("recover") => Ok(Command::Recover(addr(words.get(1))?)),
        Some("garbage") => {
            let n = words
                .get(1)
                .and_then(|w| w.parse().ok())
                .ok_or("garbage needs a byte count")?;
            Ok(Command::Garbage(n))
        }
        Some("state") => Ok(Command::State),
        Some("quit") => Ok(Command::Quit),
        other => Err(format!("unknown command {other:?}")),
    }
}

/// A pty whose slave side stands in for `/dev/ipmb-N`.
#[derive(Debug)]
pub struct PtyBus {
    master: OwnedFd,
    // Held open so the master never sees a hang-up while the plugin reopens the slave.
    _slave: OwnedFd,
    slave_path: PathBuf,
    link: Option<PathBuf>,
}

impl PtyBus {
    /// Opens a raw-mode pty pair; with `link`, a symlink to the slave is made there.
    pub fn open(link: Option<&Path>) -> std::io::Result<Self> {
        let pty = openpty(None, None)?;
        let mut t = tcgetattr(&pty.slave)?;
        cfmakeraw(&mut t);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &t)?;
        let flags = OFlag::from_bits_truncate(fcntl(&pty.master, FcntlArg::F_GETFL)?);
        fcntl(&pty.master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        let slave_path = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd()))?;
        if let Some(l) = link {
            let _ = std::fs::remove_file(l);
            std::os::unix::fs::symlink(&slave_path, l)?;
        }
        Ok(Self {
            master: pty.master,
            _slave: pty.slave,
            slave_path,
            link: link.map(Path::to_path_buf),
        })
    }

    /// The slave device path (e.g. `/dev/pts/3`).
    pub fn slave_path(&self) -> &Path {
        &self.slave_path
    }

    /// Writes one whole message (or garbage) to the plugin.
    pub fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut off = 0;
        while off < bytes.len() {
            match nix::unistd::write(&self.master, &bytes[off..]) {
                Ok(n) => off += n,
                Err(nix::errno::Errno::EAGAIN) => {
                    let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLOUT)];
                    poll(&mut fds, PollTimeout::from(100u16))?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads what the plugin wrote; empty when nothing is pending.
    pub fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match nix::unistd::read(&self.master, buf) {
            Ok(n) => Ok(n),
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EIO) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for PtyBus {
    fn drop(&mut self) {
        if let Some(l) = &self.link {
            let _ = std::fs::remove_file(l);
        }
    }
}

fn state_name(s: MState) -> String {
    format!("M{}", s as u8)
}

/// Optional behaviour of a simulated shelf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Shell command run when an IPMC's payload goes off (the IPMC enters M1 or M0 from
    /// another state), with the IPMC address (e.g. `0x82`) as its last argument. It runs to
    /// completion before the hot-swap event goes on the bus: on a real shelf the payload is
    /// already off when the IPMC reports M1, and a test uses the hook to cut the blade's
    /// "power" (kill its processes). Its exit status is reported as a JSON line.
    pub payload_off_hook: Option<String>,
    /// Time each IPMC's payload takes to shut down in M6 before M1 (default 20 ms).
    pub deactivation_ms: Option<u64>,
}

fn payload_off(state: MState) -> bool {
    matches!(state, MState::M0 | MState::M1)
}

fn run_hook(hook: &str, address: u8) -> String {
    match std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{hook} {address:#04x}"))
        .stdin(std::process::Stdio::null())
        .status()
    {
        Ok(s) => s.to_string(),
        Err(e) => format!("not started: {e}"),
    }
}

/// Runs a simulated shelf on a pty until `quit` or the end of the control input: IPMCs at
/// `addresses` report to `shmc_address`; commands come from `control`, reports go to `out`.
pub fn run(
    link: Option<&Path>,
    addresses: &[u8],
    shmc_address: u8,
    control: impl AsFd,
    out: impl Write,
) -> std::io::Result<()> {
    run_with(
        link,
        addresses,
        shmc_address,
        &Options::default(),
        control,
        out,
    )
}

/// [`run`] with [`Options`].
pub fn run_with(
    link: Option<&Path>,
    addresses: &[u8],
    shmc_address: u8,
    options: &Options,
    control: impl AsFd,
    mut out: impl Write,
) -> std::io::Result<()> {
    let bus = PtyBus::open(link)?;
    let mut shelf = Backplane::new(addresses, shmc_address);
    if let Some(ms) = options.deactivation_ms {
        for &a in addresses {
            if let Some(i) = shelf.ipmc(a) {
                i.set_deactivation_time(ms);
            }
        }
    }
    let start = Instant::now();
    let now = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    writeln!(
        out,
        "{}",
        serde_json::json!({"ready": true, "pty": bus.slave_path(), "link": link, "ipmcs": addresses})
    )?;
    out.flush()?;
    let mut framer = StreamFramer::new();
    let mut states: Vec<(u8, MState)> = addresses.iter().map(|&a| (a, MState::M4)).collect();
    let mut pending_input: Vec<u8> = Vec::new();
    let mut garbage_seed: u32 = 0x1234_5678;
    loop {
        let ready = {
            let mut fds = [
                PollFd::new(bus.master.as_fd(), PollFlags::POLLIN),
                PollFd::new(control.as_fd(), PollFlags::POLLIN),
            ];
            poll(&mut fds, PollTimeout::from(5u16))?;
            fds[1].revents().is_some_and(|r| !r.is_empty())
        };
        if ready {
            let mut chunk = [0u8; 512];
            let n = match nix::unistd::read(&control, &mut chunk) {
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                // End of the control input ends the simulation.
                return Ok(());
            }
            pending_input.extend_from_slice(&chunk[..n]);
        }
        while let Some(pos) = pending_input.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = pending_input.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&raw);
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let t = now();
            match parse_command(&line) {
                Ok(Command::Quit) => return Ok(()),
                Ok(Command::Inject(a, f)) => match shelf.ipmc(a) {
                    Some(i) => {
                        i.inject(t, f);
                        writeln!(
                            out,
                            "{}",
                            serde_json::json!({"t_ms": t, "injected": format!("{f:?}"), "ipmc": a})
                        )?;
                    }
                    None => writeln!(
                        out,
                        "{}",
                        serde_json::json!({"t_ms": t, "error": format!("no IPMC at {a:#04x}")})
                    )?,
                },
                Ok(Command::Clear(a, f)) => {
                    let line = match shelf.ipmc(a).map(|i| i.clear(t, f)) {
                        Some(true) => {
                            serde_json::json!({"t_ms": t, "cleared": format!("{f:?}"), "ipmc": a})
                        }
                        Some(false) => {
                            serde_json::json!({"t_ms": t, "error": format!("{f:?} is not a sensor event: nothing to clear")})
                        }
                        None => {
                            serde_json::json!({"t_ms": t, "error": format!("no IPMC at {a:#04x}")})
                        }
                    };
                    writeln!(out, "{line}")?;
                }
                Ok(Command::Recover(a)) => match shelf.ipmc(a) {
                    Some(i) => {
                        i.recover(t);
                        writeln!(out, "{}", serde_json::json!({"t_ms": t, "recovered": a}))?;
                    }
                    None => writeln!(
                        out,
                        "{}",
                        serde_json::json!({"t_ms": t, "error": format!("no IPMC at {a:#04x}")})
                    )?,
                },
                Ok(Command::Garbage(n)) => {
                    let bytes: Vec<u8> = (0..n)
                        .map(|_| {
                            garbage_seed ^= garbage_seed << 13;
                            garbage_seed ^= garbage_seed >> 17;
                            garbage_seed ^= garbage_seed << 5;
                            garbage_seed as u8
                        })
                        .collect();
                    bus.write(&bytes)?;
                    writeln!(out, "{}", serde_json::json!({"t_ms": t, "garbage": n}))?;
                }
                Ok(Command::State) => {
                    for &(a, _) in &states {
                        let s = shelf.ipmc(a).map(|i| state_name(i.state()));
                        writeln!(
                            out,
                            "{}",
                            serde_json::json!({"t_ms": t, "ipmc": a, "state": s})
                        )?;
                    }
                }
                Err(e) => writeln!(out, "{}", serde_json::json!({"t_ms": t, "error": e}))?,
            }
            out.flush()?;
        }
        // From the plugin to the IPMCs.
        let mut buf = [0u8; 256];
        loop {
            let n = bus.read(&mut buf)?;
            if n == 0 {
                break;
            }
            let mut input = &buf[..n];
            loop {
                match framer.feed(input) {
                    Feed::Consumed => break,
                    Feed::Message { message, remaining } => {
                        shelf.deliver(now(), &message);
                        input = remaining;
                    }
                    Feed::Rejected { remaining, .. } => input = remaining,
                }
            }
        }
        // From the IPMCs to the plugin.
        let t = now();
        let mut msgs: Vec<Message> = Vec::new();
        shelf.poll(t, &mut msgs);
        if let Some(hook) = &options.payload_off_hook {
            // The payload is off before the IPMC reports it.
            for &(a, last) in &states {
                let now_off = shelf.ipmc(a).is_some_and(|i| payload_off(i.state()));
                if now_off && !payload_off(last) {
                    let status = run_hook(hook, a);
                    writeln!(
                        out,
                        "{}",
                        serde_json::json!({"t_ms": now(), "payload_off": a, "hook": status})
                    )?;
                    out.flush()?;
                }
            }
        }
        for m in &msgs {
            bus.write(m.as_bytes())?;
        }
        for (a, last) in &mut states {
            if let Some(i) = shelf.ipmc(*a) {
                if i.state() != *last {
                    writeln!(
                        out,
                        "{}",
                        serde_json::json!({"t_ms": t, "ipmc": *a, "state": state_name(i.state()), "previous": state_name(*last)})
                    )?;
                    *last = i.state();
                    out.flush()?;
                }
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_parse_command() {
        assert_eq!(
            parse_command("inject 0x82 watchdog"),
            Ok(Command::Inject(0x82, Fault::WatchdogExpiry))
        );
        assert_eq!(parse_command("recover 130"), Ok(Command::Recover(0x82)));
        assert_eq!(
            parse_command("clear 0x82 noncritical-temperature"),
            Ok(Command::Clear(0x82, Fault::NonCriticalTemperature))
        );
        assert_eq!(parse_command("garbage 7"), Ok(Command::Garbage(7)));
        assert!(parse_command("inject 0x82 meteor")
            .unwrap_err()
            .contains("meteor"));
        assert!(parse_command("inject 0x1ff watchdog")
            .unwrap_err()
            .contains("0x1ff"));
        assert!(parse_command("launch").is_err());
    }

    #[test]
    fn test_payload_off_hook_gets_the_address_and_runs_to_completion() {
        assert!(payload_off(MState::M1) && payload_off(MState::M0));
        assert!(!payload_off(MState::M6) && !payload_off(MState::M4));
        let out = std::env::temp_dir().join(format!("shelfha-hook-{}", std::process::id()));
        let status = run_hook(&format!("sleep 0.1; echo > {} got", out.display()), 0x82);
        assert_eq!(status, "exit status: 0");
        // Written before run_hook returned: the hook ran to completion.
        let text = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        assert_eq!(text.trim(), "got 0x82");
        assert_eq!(run_hook("exit 3; :", 0x84), "exit status: 3");
    }
}
