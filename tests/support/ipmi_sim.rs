//! OpenIPMI `ipmi_sim` as a real ATCA shelf for system tests: writes its
//! configuration, starts it on free loopback ports, drives its console and
//! runs `ipmitool` against its RMCP+ LAN interface. Dropping [`IpmiSim`]
//! kills the simulator and removes its files.
//!
//! Pitfalls handled here: numbers in the emu/conf files are C literals (`0x82`,
//! never bare hex); blade MCs need `dynsens`; ipmitool talks to it with
//! `-I lanplus -C 3`.
#![allow(dead_code)]

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Admin user and password written into lan.conf.
pub const USER: &str = "admin";
/// Password of [`USER`].
pub const PASSWORD: &str = "secret";

/// A running simulator; killed on drop.
pub struct IpmiSim {
    child: Child,
    dir: PathBuf,
    /// UDP port of the RMCP+ LAN interface on 127.0.0.1.
    pub lan_port: u16,
    /// TCP port of the console on 127.0.0.1.
    pub console_port: u16,
    console: Option<Console>,
}

/// Fails the test with an install hint when `tool` cannot be run.
pub fn require_tool(tool: &str, arg: &str) {
    match Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) => panic!(
            "`{tool}` is needed by this system test and could not be run ({e}); \
             install it with `apt-get install -y openipmi ipmitool` (CI does)"
        ),
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a UDP port on loopback")
        .port()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a TCP port on loopback")
        .port()
}

/// Starts `ipmi_sim` on the files in `dir`, appending to its log there.
fn spawn(dir: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("ipmi_sim.log"))
        .expect("open log");
    Command::new("ipmi_sim")
        .arg("-c")
        .arg(dir.join("lan.conf"))
        .arg("-f")
        .arg(dir.join("shelf.emu"))
        .arg("-s")
        .arg(dir.join("state"))
        .arg("-n")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .spawn()
        .expect("start ipmi_sim")
}

impl IpmiSim {
    /// Starts `ipmi_sim` with the given emu commands (the shelf), a LAN
    /// interface with an admin user, and a console; waits until both answer.
    pub fn start(name: &str, emu: &str) -> IpmiSim {
        Self::start_with(name, emu, "")
    }

    /// Like [`IpmiSim::start`], with `extra_conf` appended to lan.conf (e.g.
    /// `set_working_mc 0x82` / `ipmb 0 ipmb_dev_int PATH` to give a blade an
    /// IPMB channel on a pty).
    pub fn start_with(name: &str, emu: &str, extra_conf: &str) -> IpmiSim {
        require_tool("ipmi_sim", "--version");
        require_tool("ipmitool", "-V");
        let dir = std::env::temp_dir().join(format!("shelfha-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).expect("create simulator directory");
        let lan_port = free_udp_port();
        let console_port = free_tcp_port();
        let lan_conf = format!(
            "name \"shelfha\"\n\
             set_working_mc 0x20\n\
             \x20 startlan 1\n\
             \x20   addr 127.0.0.1 {lan_port}\n\
             \x20   priv_limit admin\n\
             \x20   allowed_auths_callback none md2 md5 straight\n\
             \x20   allowed_auths_user none md2 md5 straight\n\
             \x20   allowed_auths_operator none md2 md5 straight\n\
             \x20   allowed_auths_admin none md2 md5 straight\n\
             \x20   guid a123456789abcdefa123456789abcdef\n\
             \x20 endlan\n\
             \x20 user 1 true \"\" \"test\" user 10 none md2 md5 straight\n\
             \x20 user 2 true \"{USER}\" \"{PASSWORD}\" admin 10 none md2 md5 straight\n\
             console 127.0.0.1 {console_port}\n\
             {extra_conf}"
        );
        std::fs::write(dir.join("lan.conf"), lan_conf).expect("write lan.conf");
        std::fs::write(dir.join("shelf.emu"), emu).expect("write shelf.emu");
        let child = spawn(&dir);
        let mut sim = IpmiSim {
            child,
            dir,
            lan_port,
            console_port,
            console: None,
        };
        sim.console = Some(sim.connect_console());
        sim.wait_lan();
        sim
    }

    /// Kills the simulator (its LAN session and console go away; its SEL
    /// stays in the state directory). [`IpmiSim::resume`] starts it again.
    pub fn stop(&mut self) {
        self.console = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the simulator again on the same files and ports (the emu file
    /// runs again; the SEL is read back from the state directory).
    pub fn resume(&mut self) {
        self.child = spawn(&self.dir);
        self.console = Some(self.connect_console());
        self.wait_lan();
    }

    /// The simulator's directory (configuration, state, log).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Adds `event` to the ShMC's (0x20) SEL with `sel_add` (the record
    /// bytes as `wire::sel` writes them; the simulator sets id and
    /// timestamp); returns the record id it assigned.
    pub fn sel_add(&mut self, event: &shmc_plugin::wire::event::PlatformEvent) -> u16 {
        let record = shmc_plugin::wire::sel::SelRecord {
            record_id: 0,
            timestamp: 0,
            channel: 0,
            event: *event,
        };
        let bytes = record.to_bytes();
        let mut cmd = String::from("sel_add 0x20 0x02");
        for b in &bytes[3..] {
            cmd.push_str(&format!(" 0x{b:02x}"));
        }
        let out = self.console(&cmd);
        out.split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .filter(|_| out.contains("Added record"))
            .unwrap_or_else(|| panic!("sel_add: {out}"))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("ipmi_sim.log")).unwrap_or_default()
    }

    fn connect_console(&mut self) -> Console {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ipmi_sim exited ({status}): {}", self.log_text());
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.console_port)) {
                let mut console = Console::new(stream);
                console.read_prompt();
                return console;
            }
            assert!(
                Instant::now() < deadline,
                "ipmi_sim console on port {} never came up: {}",
                self.console_port,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_lan(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = self.ipmitool_output(&["mc", "info"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ipmi_sim LAN on port {} never answered: {}\n{}",
                self.lan_port,
                String::from_utf8_lossy(&out.stderr),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs one console command and returns its output; panics on a `**` error line.
    pub fn console(&mut self, command: &str) -> String {
        let out = self
            .console
            .as_mut()
            .expect("console connected")
            .command(command);
        assert!(
            !out.contains("**"),
            "ipmi_sim console refused `{command}`: {out}"
        );
        out
    }

    fn ipmitool_output(&self, args: &[&str]) -> std::process::Output {
        Command::new("ipmitool")
            .args(["-I", "lanplus", "-H", "127.0.0.1", "-p"])
            .arg(self.lan_port.to_string())
            .args(["-U", USER, "-P", PASSWORD, "-C", "3"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ipmitool")
    }

    /// Runs ipmitool over RMCP+ with `args`; returns stdout, panics on failure.
    pub fn ipmitool(&self, args: &[&str]) -> String {
        let out = self.ipmitool_output(args);
        assert!(
            out.status.success(),
            "ipmitool {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("ipmitool prints UTF-8")
    }

    /// `ipmitool raw ...`: the response data bytes it prints (completion code excluded).
    pub fn raw(&self, args: &[&str]) -> Vec<u8> {
        let mut all = vec!["raw"];
        all.extend_from_slice(args);
        parse_hex_bytes(&self.ipmitool(&all))
    }
}

impl Drop for IpmiSim {
    fn drop(&mut self) {
        self.console = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Parses whitespace-separated hex bytes as `ipmitool raw` prints them.
pub fn parse_hex_bytes(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|t| u8::from_str_radix(t, 16).unwrap_or_else(|_| panic!("not a hex byte: {t:?}")))
        .collect()
}

/// The simulator's telnet-style console.
struct Console {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Console {
    fn new(stream: TcpStream) -> Console {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("console timeout");
        let writer = stream.try_clone().expect("clone console stream");
        Console {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// Reads up to and including the next "> " prompt; returns the text before it.
    fn read_prompt(&mut self) -> String {
        let mut text = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match self.reader.read(&mut byte) {
                Ok(0) => panic!(
                    "ipmi_sim console closed: {}",
                    String::from_utf8_lossy(&text)
                ),
                Ok(_) => {
                    text.push(byte[0]);
                    if text.ends_with(b"> ") {
                        text.truncate(text.len() - 2);
                        // Telnet negotiation bytes (IAC ...) are not text.
                        let clean: Vec<u8> = text.into_iter().filter(|b| b.is_ascii()).collect();
                        return String::from_utf8_lossy(&clean).into_owned();
                    }
                }
                Err(e) => panic!(
                    "ipmi_sim console read failed ({e}) after {:?}",
                    String::from_utf8_lossy(&text)
                ),
            }
        }
    }

    /// Sends `command` and returns its output: the text between its echo and
    /// the next prompt (stale prompts, e.g. the two sent on connect, are skipped).
    fn command(&mut self, command: &str) -> String {
        self.writer
            .write_all(format!("{command}\n").as_bytes())
            .expect("write to console");
        loop {
            let text = self.read_prompt();
            if let Some(at) = text.find(command) {
                let after = &text[at + command.len()..];
                return after
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n");
            }
        }
    }
}
