//! The agent's hardware watchdog over real UDP (daemon threads, libvirt's test driver, a
//! pet-file watchdog): announced in Hello, petted only on a proof that the agent is heard
//! (the ShMC's ack of a `Present`, the partner's echo of one of our heartbeats), not on
//! hearing others, not on an echo of a sequence we never sent; disarmed on a clean stop
//! only once the ShMC acknowledged a registration without watchdog.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use blade_agent::config::Config;
use blade_agent::execute::Agent;
use blade_agent::hypervisor::libvirt::LibvirtHypervisor;
use shelfha_proto::{Endpoint, EndpointConfig, Event, Health, Key, Message, NodeId, SeqSeed};

const KEY: [u8; 32] = [
    0x8f, 0x13, 0xa2, 0x5c, 0x70, 0x01, 0xde, 0x44, 0x9b, 0x36, 0xe7, 0x28, 0xc5, 0x0a, 0x91, 0x6f,
    0xb4, 0x52, 0x1d, 0xee, 0x83, 0x47, 0x2a, 0xf9, 0x60, 0x3b, 0xcc, 0x15, 0x7e, 0xd8, 0x09, 0xa6,
];
const AGENT: NodeId = NodeId(1);
const PARTNER: NodeId = NodeId(2);
/// The agent's heartbeat interval and watchdog timeout in these tests.
const HEARTBEAT_MS: u64 = 50;
const WATCHDOG_MS: u64 = 3000;

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test node's endpoint; commands are acknowledged only when the test says so.
fn endpoint(me: NodeId, seq: u64) -> Endpoint {
    let cfg = EndpointConfig {
        seq: SeqSeed::Fixed(seq),
        manual_ack: true,
        ..EndpointConfig::default()
    };
    let mut ep = Endpoint::bind("127.0.0.1:0".parse().unwrap(), me, Key::new(KEY), cfg).unwrap();
    ep.add_peer(AGENT, None).unwrap();
    ep
}

fn run_agent(
    dir: &Path,
    shmc: SocketAddr,
    partner: SocketAddr,
) -> (Arc<AtomicBool>, JoinHandle<std::io::Result<()>>) {
    let cfg = EndpointConfig {
        seq: SeqSeed::Fixed(5_000_000),
        manual_ack: true,
        ..EndpointConfig::default()
    };
    let mut ep = Endpoint::bind("127.0.0.1:0".parse().unwrap(), AGENT, Key::new(KEY), cfg).unwrap();
    let text = format!(
        "slot = 1\nshmc = \"{shmc}\"\nlisten = \"{}\"\nstate_dir = \"{}\"\nlibvirt_uri = \"test:///default\"\n\
         heartbeat_ms = {HEARTBEAT_MS}\n[partner]\nslot = 2\naddress = \"{partner}\"\n\
         [watchdog]\nkind = \"pet-file\"\ndevice = \"{}\"\ntimeout_ms = {WATCHDOG_MS}\n",
        ep.local_addr().unwrap(),
        dir.display(),
        dir.join("watchdog").display(),
    );
    let cfg = Config::parse(&text, Path::new("watchdog.toml")).unwrap();
    ep.add_peer(NodeId::SHMC, Some(shmc)).unwrap();
    ep.add_peer(PARTNER, Some(partner)).unwrap();
    let hv = Arc::new(LibvirtHypervisor::open("test:///default", dir.join("run")).unwrap());
    let agent = Arc::new(Agent::new(hv, cfg).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let daemon = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || blade_agent::daemon::run(agent, ep, stop))
    };
    (stop, daemon)
}

/// The pet file: `armed <timeout> <pets>` or `disarmed`.
fn pet_file(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("watchdog")).unwrap_or_default()
}

fn pets(dir: &Path) -> u64 {
    pet_file(dir)
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The test ShMC and partner around one agent.
struct Shelf {
    t0: Instant,
    shmc: Endpoint,
    partner: Endpoint,
    /// Acknowledge the agent's `Present` commands.
    ack_present: bool,
    /// What the partner echoes in its heartbeats: `Some(None)` our latest heartbeat's
    /// sequence, `Some(Some(s))` a fixed `s`, `None`: the partner sends nothing.
    echo: Option<Option<u64>>,
    /// The sequence of the latest heartbeat the partner received from the agent.
    latest_beat: Option<u64>,
    hellos: Vec<(u64, Option<u32>)>,
    presents: usize,
    /// Presents received while `ack_present` was off (their retries wait for an answer).
    unacked: Vec<(NodeId, u64)>,
    next_partner_beat: Instant,
}

impl Shelf {
    fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// Runs both test nodes for `span`.
    fn run(&mut self, span: Duration) {
        let until = Instant::now() + span;
        while Instant::now() < until {
            let now = self.now_ms();
            if self.ack_present {
                for (from, seq) in self.unacked.drain(..) {
                    self.shmc.ack(from, seq);
                }
            }
            while let Some(ev) = self.shmc.poll(now) {
                if let Event::Message { from, seq, message } = ev {
                    match message {
                        Message::Hello { watchdog_ms, .. } => {
                            self.hellos.push((seq, watchdog_ms));
                            self.shmc.ack(from, seq);
                        }
                        Message::Present => {
                            self.presents += 1;
                            if self.ack_present {
                                self.shmc.ack(from, seq);
                            } else {
                                self.unacked.push((from, seq));
                            }
                        }
                        m if m.needs_ack() => {
                            self.shmc.ack(from, seq);
                        }
                        _ => {}
                    }
                }
            }
            while let Some(ev) = self.partner.poll(now) {
                if let Event::Message { from, seq, message } = ev {
                    if matches!(message, Message::Heartbeat { .. }) {
                        self.latest_beat = Some(seq);
                    } else if message.needs_ack() {
                        self.partner.ack(from, seq);
                    }
                }
            }
            if let Some(echo) = self.echo {
                if Instant::now() >= self.next_partner_beat {
                    self.next_partner_beat = Instant::now() + Duration::from_millis(HEARTBEAT_MS);
                    let hb = Message::Heartbeat {
                        beat: 1,
                        health: Health::Ok,
                        protected: 0,
                        digest: shelfha_proto::guest_set_digest(&mut []),
                        partner_heard_ms: Some(0),
                        running: 0,
                        partner_seq: echo.or(self.latest_beat),
                    };
                    let _ = self.partner.send(AGENT, &hb, now);
                }
            }
            self.shmc.wait(Some(5)).unwrap();
        }
    }
}

/// An empty state directory named after `tag`, and the ShMC's and the partner's endpoints.
fn setup(tag: &str) -> (TempDir, Endpoint, Endpoint) {
    let dir =
        TempDir(std::env::temp_dir().join(format!("blade-agent-{tag}-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let shmc = endpoint(NodeId::SHMC, 1_000_000);
    let partner = endpoint(PARTNER, 1_000_000);
    (dir, shmc, partner)
}

#[test]
fn test_watchdog_petted_only_on_proofs_of_being_heard() {
    let (dir, shmc, partner) = setup("wd");
    let (shmc_addr, partner_addr) = (shmc.local_addr().unwrap(), partner.local_addr().unwrap());
    let mut shelf = Shelf {
        t0: Instant::now(),
        shmc,
        partner,
        ack_present: false,
        echo: None,
        latest_beat: None,
        hellos: Vec::new(),
        presents: 0,
        unacked: Vec::new(),
        next_partner_beat: Instant::now(),
    };
    let (stop, daemon) = run_agent(&dir.0, shmc_addr, partner_addr);

    // Registered with the watchdog announced; Presents come, none acknowledged, the partner
    // silent: armed (the first write) and never petted.
    shelf.run(Duration::from_millis(600));
    assert_eq!(
        shelf.hellos.first().map(|h| h.1),
        Some(Some(WATCHDOG_MS as u32)),
        "{:?}",
        shelf.hellos
    );
    assert!(
        shelf.presents >= 1,
        "no Present while the watchdog is armed"
    );
    assert_eq!(pet_file(&dir.0), format!("armed {WATCHDOG_MS} 1\n"));

    // The ShMC acknowledges Presents: petted.
    shelf.ack_present = true;
    shelf.run(Duration::from_millis(400));
    let acked = pets(&dir.0);
    assert!(acked > 2, "petted {acked} times on acked Presents");

    // Acks stop: petting stops within two heartbeat intervals of the last proof.
    shelf.ack_present = false;
    shelf.run(Duration::from_millis(4 * HEARTBEAT_MS));
    let stopped = pets(&dir.0);
    shelf.run(Duration::from_millis(400));
    assert_eq!(pets(&dir.0), stopped, "petted without a proof");

    // The partner heartbeats, echoing a sequence the agent never sent: hearing the partner
    // proves nothing of being heard.
    shelf.echo = Some(Some(42));
    shelf.run(Duration::from_millis(400));
    assert_eq!(pets(&dir.0), stopped, "petted on hearing the partner");

    // The partner echoes our latest heartbeat: petted again, the ShMC still silent.
    shelf.echo = Some(None);
    shelf.run(Duration::from_millis(400));
    assert!(
        shelf.latest_beat.is_some(),
        "the agent never heartbeated its partner"
    );
    let echoed = pets(&dir.0);
    assert!(
        echoed > stopped + 2,
        "petted {stopped} then {echoed} times on echoes"
    );

    // The partner goes quiet until less than half the countdown is left, then echoes again:
    // the ShMC may still hold an older report of the partner, so its echo alone does not
    // resume petting; the ShMC's ack of a Present does.
    shelf.echo = None;
    shelf.run(Duration::from_millis(WATCHDOG_MS / 2 + 300));
    let quiet = pets(&dir.0);
    shelf.echo = Some(None);
    shelf.run(Duration::from_millis(400));
    assert_eq!(
        pets(&dir.0),
        quiet,
        "resumed on the partner's echo late in the countdown"
    );
    shelf.ack_present = true;
    shelf.run(Duration::from_millis(300));
    assert!(pets(&dir.0) > quiet + 2, "not resumed on the ShMC's ack");

    // Clean stop: a Hello without watchdog, acknowledged, then the magic close.
    let before = shelf.hellos.len();
    stop.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !daemon.is_finished() && Instant::now() < deadline {
        shelf.run(Duration::from_millis(20));
    }
    daemon.join().unwrap().unwrap();
    assert_eq!(
        shelf
            .hellos
            .get(before..)
            .unwrap_or_default()
            .last()
            .map(|h| h.1),
        Some(None),
        "{:?}",
        shelf.hellos
    );
    assert_eq!(pet_file(&dir.0), "disarmed\n");
}

#[test]
fn test_watchdog_left_armed_when_the_shmc_does_not_hear_the_stop() {
    let (dir, shmc, partner) = setup("wd2");
    let (shmc_addr, partner_addr) = (shmc.local_addr().unwrap(), partner.local_addr().unwrap());
    let (stop, daemon) = run_agent(&dir.0, shmc_addr, partner_addr);
    let mut shelf = Shelf {
        t0: Instant::now(),
        shmc,
        partner,
        ack_present: true,
        echo: None,
        latest_beat: None,
        hellos: Vec::new(),
        presents: 0,
        unacked: Vec::new(),
        next_partner_beat: Instant::now(),
    };
    shelf.run(Duration::from_millis(500));
    assert!(pets(&dir.0) > 2, "{}", pet_file(&dir.0));
    // The ShMC is gone when the agent stops: the ShMC may still rely on the watchdog, so
    // it is not disarmed (the blade resets unless an agent pets it again).
    drop(shelf);
    let t = Instant::now();
    stop.store(true, Ordering::SeqCst);
    daemon.join().unwrap().unwrap();
    println!("stop without the ShMC took {} ms", t.elapsed().as_millis());
    assert!(
        pet_file(&dir.0).starts_with("armed "),
        "{}",
        pet_file(&dir.0)
    );
}
