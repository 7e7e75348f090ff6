//! `shmc-plugin run` on a pseudo-terminal standing in for the IPMB: these
//! tests play two IPMCs on the master side, byte stream framing and all, and
//! stop the real binary with SIGTERM and SIGINT (also on the SEL sources,
//! whose peer here never answers).

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shmc_plugin::wire::cmd;
use shmc_plugin::wire::framer::StreamFramer;
use shmc_plugin::wire::ipmb::{Message, Repr};

fn send(master: &OwnedFd, repr: &Repr<'_>) {
    let m = Message::from_repr(repr).unwrap();
    nix::unistd::write(master.as_fd(), m.as_bytes()).unwrap();
}

/// A Platform Event from the IPMC at `rq_sa` to the ShMC (0x20), event data `data`.
fn send_event(master: &OwnedFd, rq_sa: u8, rq_seq: u8, data: &[u8]) {
    send(
        master,
        &Repr {
            rs_sa: 0x20,
            net_fn: cmd::NETFN_SENSOR_EVENT,
            rs_lun: 0,
            rq_sa,
            rq_seq,
            rq_lun: 0,
            cmd: cmd::CMD_PLATFORM_EVENT,
            data,
        },
    );
}

#[test]
fn test_run_answers_events_fences_and_confirms_over_a_pty() {
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave_path = nix::unistd::ttyname(pty.slave.as_fd()).unwrap();
    let dir = std::env::temp_dir().join(format!("shmc-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("shelf.toml");
    std::fs::write(
        &config,
        format!(
            "[shelf]\nown_address = 0x20\nipmb_device = {:?}\n\
             [[blade]]\nslot = 1\nipmb_address = 0x82\npartner = 2\nhot_swap_sensor = 3\n\
             [[blade]]\nslot = 2\nipmb_address = 0x84\npartner = 1\n",
            slave_path.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmc-plugin"))
        .args(["run", "--config", config.to_str().unwrap(), "--log", "info"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Keep our copy of the slave open so the master never sees a hang-up.
    let _slave = pty.slave;
    let master = pty.master;
    std::thread::sleep(Duration::from_millis(300));

    // Slot 1 reports a critical temperature (UC going high), rqSeq 5; garbage first.
    nix::unistd::write(master.as_fd(), &[0xFF, 0x00, 0x13]).unwrap();
    let event = [0x04, 0x01, 0x10, 0x01, 0x59, 95, 90];
    send_event(&master, 0x82, 5, &event);

    let mut framer = StreamFramer::new();
    let mut buf = [0u8; 256];
    let mut event_answered = false;
    let mut deactivate_seen = false;
    let mut confirm_polls = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && confirm_polls < 3 {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap() == 0 {
            continue;
        }
        let n = nix::unistd::read(master.as_fd(), &mut buf).unwrap();
        let msgs: Vec<Message> = framer.push(&buf[..n]).filter_map(Result::ok).collect();
        for m in msgs {
            let r = m.repr();
            if r.is_response() {
                assert_eq!(
                    (r.rs_sa, r.rq_seq, r.cmd, r.data),
                    (0x82, 5, cmd::CMD_PLATFORM_EVENT, &[0x00][..])
                );
                event_answered = true;
                continue;
            }
            assert_eq!(r.rq_sa, 0x20);
            let reply: &[u8] = match (r.net_fn, r.cmd) {
                (cmd::NETFN_APP, cmd::CMD_GET_DEVICE_ID) => &[0x00, 0x01, 0x01, 0x01, 0x02],
                (cmd::NETFN_GROUP_EXT, cmd::CMD_SET_FRU_ACTIVATION) => {
                    assert_eq!((r.rs_sa, r.data), (0x82, &[0x00, 0x00, 0x00][..]));
                    deactivate_seen = true;
                    &[0x00, 0x00]
                }
                (cmd::NETFN_SENSOR_EVENT, cmd::CMD_GET_SENSOR_READING) => {
                    assert_eq!(
                        (r.rs_sa, r.data),
                        (0x82, &[0x03][..]),
                        "configured hot-swap sensor"
                    );
                    confirm_polls += 1;
                    // M6 twice, then M1.
                    if confirm_polls < 3 {
                        &[0x00, 0x00, 0xC0, 0x40, 0x80]
                    } else {
                        &[0x00, 0x00, 0xC0, 0x02, 0x80]
                    }
                }
                other => panic!("unexpected request {other:?}"),
            };
            send(&master, &Repr::response_to(&r, reply));
        }
    }
    // Let the last response be handled, then stop the daemon.
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::io::stderr().write_all(log.as_bytes());
    assert!(
        event_answered,
        "the Platform Event got its completion code 0x00"
    );
    assert!(deactivate_seen, "Set FRU Activation (deactivate) was sent");
    assert_eq!(confirm_polls, 3);
    assert!(
        log.contains("decision #1 blade_hardware for slot 1"),
        "{log}"
    );
    assert!(
        log.contains("fence of decision #1 confirmed (HotSwapM1)"),
        "{log}"
    );
    assert!(
        log.contains("ordering partner slot 2 to restart its guests"),
        "{log}"
    );
    assert!(
        !log.contains("decision #2"),
        "the answering blades are not lost: {log}"
    );
}

/// A running `shmc-plugin run` whose log (stderr) is read line by line.
struct Plugin {
    child: Child,
    lines: Receiver<String>,
    log: Vec<String>,
}

impl Plugin {
    fn start(config: &Path, extra: &[&str]) -> Plugin {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shmc-plugin"))
            .args(["run", "--config", config.to_str().unwrap(), "--log", "info"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Plugin {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Reads the log until a line contains `needle`; panics after 10 s.
    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.log.push(line);
                    if found {
                        return;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    panic!(
                        "no log line with {needle:?} ({e:?}):\n{}",
                        self.log.join("\n")
                    );
                }
            }
        }
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits (at most 10 s) for the process to exit; returns its status and whole log.
    fn finish(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "still running 10 s after the signal:\n{}",
                    self.log.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader ends at the end of the pipe.
        loop {
            match self.lines.recv_timeout(Duration::from_secs(5)) {
                Ok(line) => self.log.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("log pipe still open after exit"),
            }
        }
        let log = self.log.join("\n");
        let _ = std::io::stderr().write_all(format!("{log}\n").as_bytes());
        (status, log)
    }
}

/// A scratch directory and a two-blade configuration on a new pty.
struct PtyShelf {
    dir: PathBuf,
    config: PathBuf,
    master: OwnedFd,
    _slave: OwnedFd,
}

impl PtyShelf {
    fn new(name: &str) -> PtyShelf {
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave_path = nix::unistd::ttyname(pty.slave.as_fd()).unwrap();
        let dir = scratch(name);
        let config = dir.join("shelf.toml");
        std::fs::write(
            &config,
            format!(
                "[shelf]\nown_address = 0x20\nipmb_device = {:?}\n\
                 [[blade]]\nslot = 1\nipmb_address = 0x82\npartner = 2\nhot_swap_sensor = 3\n\
                 [[blade]]\nslot = 2\nipmb_address = 0x84\npartner = 1\n",
                slave_path.to_str().unwrap()
            ),
        )
        .unwrap();
        PtyShelf {
            dir,
            config,
            master: pty.master,
            _slave: pty.slave,
        }
    }
}

impl Drop for PtyShelf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shmc-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Index of the first log line containing `needle`, if any.
fn line_of(log: &str, needle: &str) -> Option<usize> {
    log.lines().position(|l| l.contains(needle))
}

#[test]
fn test_run_sigterm_stops_cleanly_and_names_the_unconfirmed_fence() {
    let shelf = PtyShelf::new("sigterm");
    let mut plugin = Plugin::start(&shelf.config, &[]);
    plugin.wait_for("shmc-plugin running");

    // Slot 1: critical temperature. The fence request is read and never
    // answered, so incident #1 is still fencing when the signal comes.
    send_event(
        &shelf.master,
        0x82,
        9,
        &[0x04, 0x01, 0x10, 0x01, 0x59, 95, 90],
    );
    let mut framer = StreamFramer::new();
    let mut buf = [0u8; 256];
    let mut fence_requested = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fence_requested && Instant::now() < deadline {
        let mut fds = [PollFd::new(shelf.master.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap() == 0 {
            continue;
        }
        let n = nix::unistd::read(shelf.master.as_fd(), &mut buf).unwrap();
        fence_requested = framer.push(&buf[..n]).filter_map(Result::ok).any(|m| {
            let r = m.repr();
            !r.is_response()
                && (r.net_fn, r.cmd) == (cmd::NETFN_GROUP_EXT, cmd::CMD_SET_FRU_ACTIVATION)
        });
    }
    assert!(fence_requested, "Set FRU Activation (deactivate) was sent");
    plugin.wait_for("decision #1 blade_hardware for slot 1");

    plugin.signal(Signal::SIGTERM);
    let (status, log) = plugin.finish();
    assert_eq!(status.code(), Some(0), "{log}");
    let stop_line = format!("stopping on SIGTERM from pid {}", std::process::id());
    let stop = line_of(&log, &stop_line).unwrap_or_else(|| panic!("no {stop_line:?}: {log}"));
    let warning = line_of(
        &log,
        "#1 blade_hardware slot 1: fence NOT confirmed (step deactivate, round 1); partner slot 2 not ordered to take over",
    )
    .unwrap_or_else(|| panic!("the open incident is not named: {log}"));
    assert!(log.lines().nth(warning).unwrap().contains("WARN"), "{log}");
    let totals = line_of(&log, "totals: ").unwrap_or_else(|| panic!("no totals: {log}"));
    assert!(stop < warning && warning < totals, "{log}");
    let totals = log.lines().nth(totals).unwrap();
    assert!(totals.contains("decisions: 1,"), "{totals}");
    assert!(totals.contains("fences_confirmed: 0,"), "{totals}");
}

#[test]
fn test_run_sigint_stops_cleanly_and_a_second_signal_loses_nothing() {
    let shelf = PtyShelf::new("sigint");
    let mut plugin = Plugin::start(&shelf.config, &[]);
    plugin.wait_for("shmc-plugin running");
    // One benign event (slot 2: an upper non-critical temperature
    // deasserted, recorded only) so the totals have something to count.
    send_event(
        &shelf.master,
        0x84,
        1,
        &[0x04, 0x01, 0x10, 0x81, 0x57, 40, 80],
    );
    let mut answered = false;
    let mut framer = StreamFramer::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !answered && Instant::now() < deadline {
        let mut fds = [PollFd::new(shelf.master.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap() == 0 {
            continue;
        }
        let n = nix::unistd::read(shelf.master.as_fd(), &mut buf).unwrap();
        answered = framer
            .push(&buf[..n])
            .filter_map(Result::ok)
            .any(|m| m.repr().is_response());
    }
    assert!(answered, "the Platform Event was answered");

    // Ctrl-C, and a SIGTERM right behind it: whichever the loop sees first
    // (SIGINT: lower signal numbers are taken first), the second must not
    // cut the shutdown short.
    plugin.signal(Signal::SIGINT);
    plugin.signal(Signal::SIGTERM);
    let (status, log) = plugin.finish();
    assert_eq!(status.code(), Some(0), "{log}");
    let stop = line_of(&log, "stopping on SIGINT from pid ")
        .unwrap_or_else(|| panic!("no stop line: {log}"));
    assert_eq!(log.matches("stopping on").count(), 1, "{log}");
    assert!(!log.contains("work in progress"), "nothing was open: {log}");
    let totals = line_of(&log, "totals: ").unwrap_or_else(|| panic!("no totals: {log}"));
    assert!(stop < totals, "{log}");
    let totals = log.lines().nth(totals).unwrap();
    assert!(totals.contains("1 frames, 0 bad"), "{totals}");
    assert!(totals.contains("events: 1,"), "{totals}");
    assert!(totals.contains("decisions: 0,"), "{totals}");
}

/// A SEL source whose peer never answers: the loop is in its reconnect
/// back-off when SIGTERM comes; the decision stream file ends with the stop.
#[cfg(feature = "rmcp")]
fn sel_source_stops_on_sigterm(name: &str, source: &str, waiting: &str) {
    let dir = scratch(name);
    let config = dir.join("shelf.toml");
    let stream = dir.join("decisions.jsonl");
    std::fs::write(
        &config,
        format!(
            "[shelf]\nown_address = 0x20\n[event_source]\n{source}\n\
             [[blade]]\nslot = 1\nipmb_address = 0x82\npartner = 2\n\
             [[blade]]\nslot = 2\nipmb_address = 0x84\npartner = 1\n"
        ),
    )
    .unwrap();
    let mut plugin = Plugin::start(&config, &["--decisions-json", stream.to_str().unwrap()]);
    plugin.wait_for("shmc-plugin running: event source");
    plugin.wait_for(waiting);
    plugin.signal(Signal::SIGTERM);
    let (status, log) = plugin.finish();
    let lines = std::fs::read_to_string(&stream).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status.code(), Some(0), "{log}");
    let stop = line_of(&log, "stopping on SIGTERM from pid ")
        .unwrap_or_else(|| panic!("no stop line: {log}"));
    let totals = line_of(&log, "totals: 0 SEL records").unwrap_or_else(|| panic!("{log}"));
    assert!(stop < totals, "{log}");
    assert!(!log.contains("work in progress"), "{log}");
    let last: serde_json::Value =
        serde_json::from_str(lines.lines().last().expect("a stop line in the stream")).unwrap();
    assert_eq!(last["stop"]["signal"], "SIGTERM", "{lines}");
    assert_eq!(
        last["stop"]["open_decisions"],
        serde_json::json!([]),
        "{lines}"
    );
}

#[cfg(feature = "rmcp")]
#[test]
fn test_rmcp_source_sigterm_stops_cleanly_and_ends_the_decision_stream() {
    // A UDP port that is bound (no ICMP refusal) and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    sel_source_stops_on_sigterm(
        "rmcp-sigterm",
        &format!(
            "kind = \"rmcp\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"admin\"\npassword = \"secret\"\ntimeout_ms = 100"
        ),
        "cannot open a session",
    );
}

#[cfg(feature = "system")]
#[test]
fn test_system_source_sigterm_stops_cleanly_and_ends_the_decision_stream() {
    sel_source_stops_on_sigterm(
        "system-sigterm",
        "kind = \"system\"\ndevice = \"/nonexistent/ipmi0\"",
        "cannot open a session",
    );
}

/// Runs `shmc-plugin ARGS` to its end (no device is ever opened by the
/// commands tested with it).
fn shmc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shmc-plugin"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A two-blade configuration; `shelf_extra` goes into `[shelf]` (from line 4), `timing`
/// into `[timing]` (from line 13 when `shelf_extra` is empty).
fn two_blades(ipmb_device: &str, shelf_extra: &str, timing: &str) -> String {
    format!(
        "[shelf]\nown_address = 0x20\nipmb_device = {ipmb_device:?}\n{shelf_extra}\
         [[blade]]\nslot = 1\nipmb_address = 0x82\npartner = 2\n\
         [[blade]]\nslot = 2\nipmb_address = 0x84\npartner = 1\n\
         [timing]\n{timing}"
    )
}

#[test]
fn test_check_config_valid_opens_nothing() {
    let dir = scratch("check-valid");
    let key = dir.join("shelf.key");
    shelfha_proto::write_key_file(&key, &shelfha_proto::generate_key().unwrap()).unwrap();
    // The port is taken and the device does not exist: check-config neither
    // binds nor opens, so neither matters.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = dir.join("shelf.toml");
    std::fs::write(
        &config,
        two_blades(
            "/nonexistent/ipmb-0",
            &format!(
                "listen = \"{}\"\nkey_file = {:?}\n",
                taken.local_addr().unwrap(),
                key.to_str().unwrap()
            ),
            "probe_interval_ms = 250\n",
        ),
    )
    .unwrap();
    let out = shmc(&["check-config", "--config", config.to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one summary line: {stdout}");
    assert!(stdout.contains(": valid: 2 blades (pairs 1+2)"), "{stdout}");
    assert!(
        stdout.contains("probe every 250 ms, lost after 1500 ms"),
        "{stdout}"
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn test_check_config_and_run_refuse_the_same_files_naming_the_line() {
    let dir = scratch("check-invalid");
    let key = dir.join("shelf.key");
    let listen = format!(
        "listen = \"127.0.0.1:1\"\nkey_file = {:?}\n",
        key.to_str().unwrap()
    );
    // (config, line, message): the first `[timing]` key is on line 13 (15 with `listen`).
    let cases: Vec<(String, usize, &str)> = vec![
        (
            two_blades("/dev/null", "", "probe_interval_ms = 5000\n"),
            13,
            "probe_timeout_ms (1500) must be at least 2 x probe_interval_ms",
        ),
        (
            two_blades("/dev/null", "", "probe_timeout_ms = 100\n"),
            13,
            "probe_timeout_ms (100) must be at least 2 x probe_interval_ms",
        ),
        (
            two_blades("/dev/null", "", "confirm_poll_ms = 2500\n"),
            13,
            "confirm_poll_ms (2500) plus request_timeout_ms (250) = 2750 must not exceed fence_step_deadline_ms (2000)",
        ),
        (
            two_blades("/dev/null", "", "request_retries = 2\nrequest_timeout_ms = 700\n"),
            14,
            "request_timeout_ms (700) x (request_retries (2) + 1) = 2100 must not exceed fence_step_deadline_ms (2000)",
        ),
        (
            two_blades("/dev/null", &listen, "heartbeat_timeout_ms = 400\n"),
            15,
            "heartbeat_timeout_ms (400) must be at least 3 x the agents' heartbeat interval",
        ),
        (
            "[shelf]\nown_address = 0x20\nipmb_device = \"/dev/null\"\n".to_string(),
            1,
            "no [[blade]] configured",
        ),
        (
            two_blades("/dev/null", "listen = \"127.0.0.1:1\"\n", ""),
            4,
            "`listen` needs `key_file`",
        ),
        // The key file is missing.
        (
            two_blades("/dev/null", &listen, ""),
            5,
            "key_file: the shelf key cannot be used: key file",
        ),
    ];
    let config = dir.join("shelf.toml");
    for (text, line, message) in &cases {
        std::fs::write(&config, text).unwrap();
        let want = format!("shelf.toml:{line}: {message}");
        let check = shmc(&["check-config", "--config", config.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&check.stderr).into_owned();
        assert_eq!(check.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(&want), "{text}: {stderr}");
        assert!(check.stdout.is_empty());
        // run refuses it the same way, before opening anything.
        let run = shmc(&["run", "--config", config.to_str().unwrap()]);
        let run_err = String::from_utf8_lossy(&run.stderr).into_owned();
        assert_eq!(run.status.code(), Some(2), "{text}: {run_err}");
        assert!(run_err.contains(&want), "{text}: {run_err}");
    }
    // The key file readable by others: refused, naming the key_file line.
    shelfha_proto::write_key_file(&key, &shelfha_proto::generate_key().unwrap()).unwrap();
    std::fs::write(&config, two_blades("/dev/null", &listen, "")).unwrap();
    assert_eq!(
        shmc(&["check-config", "--config", config.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let check = shmc(&["check-config", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&check.stderr).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(check.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("shelf.toml:5: key_file:"), "{stderr}");
    assert!(stderr.contains("mode 0640"), "{stderr}");
}

#[test]
fn test_check_config_usage() {
    let help = shmc(&["check-config", "--help"]);
    assert!(help.status.success());
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("shmc-plugin check-config --config FILE")
    );
    assert_eq!(shmc(&["check-config"]).status.code(), Some(2));
    assert_eq!(
        shmc(&["check-config", "--config", "/nonexistent.toml"])
            .status
            .code(),
        Some(2)
    );
}
