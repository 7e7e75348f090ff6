//! A running agent (daemon threads, real UDP sockets, libvirt's test driver) driven by a test
//! ShMC endpoint and a test partner endpoint: registration, heartbeats, definition push and
//! storage, refused and accepted takeovers, duplicate orders, orders from the wrong node, and
//! forged / tampered / replayed / oversized datagrams that must have no effect.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use blade_agent::config::Config;
use blade_agent::execute::Agent;
use blade_agent::hypervisor::libvirt::LibvirtHypervisor;
use blade_agent::hypervisor::{GuestState, Hypervisor};
use shelfha_proto::edge::definitions::{split, Assembler};
use shelfha_proto::message::guest_name;
use shelfha_proto::{
    seal, Endpoint, EndpointConfig, Event, FenceProof, Header, Health, Key, Message, NodeId,
    Outcome, ReasonCode, SeqSeed, Verifier, MAX_FRAME,
};

const KEY: [u8; 32] = [
    0x8f, 0x13, 0xa2, 0x5c, 0x70, 0x01, 0xde, 0x44, 0x9b, 0x36, 0xe7, 0x28, 0xc5, 0x0a, 0x91, 0x6f,
    0xb4, 0x52, 0x1d, 0xee, 0x83, 0x47, 0x2a, 0xf9, 0x60, 0x3b, 0xcc, 0x15, 0x7e, 0xd8, 0x09, 0xa6,
];
const AGENT: NodeId = NodeId(1);
const PARTNER: NodeId = NodeId(2);

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn endpoint(me: NodeId, seq: u64) -> Endpoint {
    let cfg = EndpointConfig {
        seq: SeqSeed::Fixed(seq),
        ..EndpointConfig::default()
    };
    Endpoint::bind("127.0.0.1:0".parse().unwrap(), me, Key::new(KEY), cfg).unwrap()
}

/// The agent's own endpoint, as `blade-agent run` makes it: commands acknowledged by the
/// daemon once they are durable.
fn agent_endpoint(me: NodeId, seq: u64) -> Endpoint {
    let cfg = EndpointConfig {
        seq: SeqSeed::Fixed(seq),
        manual_ack: true,
        ..EndpointConfig::default()
    };
    Endpoint::bind("127.0.0.1:0".parse().unwrap(), me, Key::new(KEY), cfg).unwrap()
}

/// Polls `ep` until `want` accepts a message or `timeout`; returns every message seen.
fn collect(
    ep: &mut Endpoint,
    start: Instant,
    timeout: Duration,
    mut want: impl FnMut(&Message) -> bool,
) -> (bool, Vec<Message>) {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let now = start.elapsed().as_millis() as u64;
        while let Some(ev) = ep.poll(now) {
            if let Event::Message { message, .. } = ev {
                let hit = want(&message);
                seen.push(message);
                if hit {
                    return (true, seen);
                }
            }
        }
        ep.wait(Some(20)).unwrap();
    }
    (false, seen)
}

fn sealed(key: [u8; 32], sender: NodeId, seq: u64, msg: &Message) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME];
    let n = seal(
        &Key::new(key),
        &Header {
            sender,
            dest: AGENT,
            seq,
        },
        msg,
        &mut buf,
    )
    .unwrap();
    buf[..n].to_vec()
}

/// Runs the agent of slot 1 (partner slot 2) on `ep` with state in `dir` and libvirt's test
/// driver, knowing the ShMC and the partner at the given addresses; returns its stop flag and
/// thread. `name` names the configuration in error messages.
fn run_agent(
    mut ep: Endpoint,
    dir: &Path,
    shmc: SocketAddr,
    partner: SocketAddr,
    name: &str,
) -> (Arc<AtomicBool>, JoinHandle<std::io::Result<()>>) {
    let text = format!(
        "slot = 1\nshmc = \"{shmc}\"\nlisten = \"{}\"\nstate_dir = \"{}\"\nlibvirt_uri = \"test:///default\"\n\
         heartbeat_ms = 50\n[partner]\nslot = 2\naddress = \"{partner}\"\n[guests]\nallowed_storage_paths = [\"/guest\"]\n",
        ep.local_addr().unwrap(),
        dir.display(),
    );
    let cfg = Config::parse(&text, Path::new(name)).unwrap();
    ep.add_peer(NodeId::SHMC, Some(cfg.shmc)).unwrap();
    ep.add_peer(PARTNER, Some(cfg.partner.address)).unwrap();
    let hv = Arc::new(LibvirtHypervisor::open("test:///default", dir.join("run")).unwrap());
    let agent = Arc::new(Agent::new(hv, cfg).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let daemon = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || blade_agent::daemon::run(agent, ep, stop))
    };
    (stop, daemon)
}

fn partner_xml(name: &str) -> String {
    format!(
        "<domain type='test'><name>{name}</name><memory unit='KiB'>1024</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64'>hvm</type></os></domain>"
    )
}

#[test]
fn test_agent_over_udp() {
    let dir = TempDir(std::env::temp_dir().join(format!("blade-agent-udp-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let t0 = Instant::now();
    let mut shmc = endpoint(NodeId::SHMC, 1_000_000);
    let mut partner = endpoint(PARTNER, 1_000_000);
    let agent_ep = agent_endpoint(AGENT, 1_000_000);
    let agent_addr = agent_ep.local_addr().unwrap();
    shmc.add_peer(AGENT, Some(agent_addr)).unwrap();
    partner.add_peer(AGENT, Some(agent_addr)).unwrap();
    let text = format!(
        "slot = 1\nshmc = \"{}\"\nlisten = \"{agent_addr}\"\nstate_dir = \"{}\"\nlibvirt_uri = \"test:///default\"\n\
         heartbeat_ms = 50\n[partner]\nslot = 2\naddress = \"{}\"\n[guests]\nallowed_storage_paths = [\"/guest\"]\n",
        shmc.local_addr().unwrap(),
        dir.0.display(),
        partner.local_addr().unwrap()
    );
    let cfg = Config::parse(&text, Path::new("udp.toml")).unwrap();
    let mut agent_ep = agent_ep;
    agent_ep.add_peer(NodeId::SHMC, Some(cfg.shmc)).unwrap();
    agent_ep
        .add_peer(PARTNER, Some(cfg.partner.address))
        .unwrap();
    let hv = Arc::new(LibvirtHypervisor::open("test:///default", dir.0.join("run")).unwrap());
    let agent = Arc::new(Agent::new(Arc::clone(&hv), cfg).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let daemon = {
        let (agent, stop) = (Arc::clone(&agent), Arc::clone(&stop));
        std::thread::spawn(move || blade_agent::daemon::run(agent, agent_ep, stop))
    };

    // Registration and heartbeats (the test driver's own domain "test" is protected).
    // The Hello announces the heartbeat interval and no hardware watchdog.
    let (ok, seen) = collect(&mut shmc, t0, Duration::from_secs(5), |m| {
        matches!(
            m,
            Message::Hello {
                slot: 1,
                heartbeat_ms: 50,
                watchdog_ms: None,
                ..
            }
        )
    });
    assert!(ok, "no Hello announcing 50 ms heartbeats: {seen:?}");
    let (ok, seen) = collect(&mut shmc, t0, Duration::from_secs(5), |m| {
        matches!(
            m,
            Message::Heartbeat {
                protected: 1,
                health: Health::Ok,
                ..
            }
        )
    });
    assert!(ok, "no heartbeat with one protected guest: {seen:?}");

    // Heartbeats tell the ShMC how long ago the partner was last heard: nothing before the
    // partner speaks, then the age of its last heartbeat.
    assert!(
        seen.iter().all(|m| !matches!(
            m,
            Message::Heartbeat {
                partner_heard_ms: Some(_),
                ..
            }
        )),
        "a partner report before the partner spoke: {seen:?}"
    );

    // Our definition reaches the partner.
    let mut asm = Assembler::new();
    let mut pushed = None;
    let (ok, _) = collect(&mut partner, t0, Duration::from_secs(5), |m| {
        if let Ok(Some((name, xml))) = asm.add(m) {
            pushed = Some((name.as_str().to_owned(), String::from_utf8(xml).unwrap()));
            return true;
        }
        false
    });
    assert!(ok, "no definition pushed to the partner");
    let (name, xml) = pushed.unwrap();
    assert_eq!(name, "test");
    assert!(xml.contains("<name>test</name>"));

    // The partner speaks: the agent's heartbeats now say how long ago it was heard.
    let empty = shelfha_proto::guest_set_digest(&mut []);
    let (mut heard, mut beat) = (false, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !heard && Instant::now() < deadline {
        beat += 1;
        let hb = Message::Heartbeat {
            beat,
            health: Health::Ok,
            protected: 0,
            digest: empty,
            partner_heard_ms: None,
            running: 0,
            partner_seq: None,
        };
        let _ = partner.send(AGENT, &hb, t0.elapsed().as_millis() as u64);
        let _ = collect(&mut partner, t0, Duration::from_millis(20), |_| false);
        heard = collect(
            &mut shmc,
            t0,
            Duration::from_millis(100),
            |m| matches!(m, Message::Heartbeat { partner_heard_ms: Some(ms), .. } if *ms < 2000),
        )
        .0;
    }
    assert!(heard, "no heartbeat reported hearing the partner");

    // The partner pushes its guest's definition; the agent stores it.
    for chunk in split("pg", partner_xml("pg").as_bytes()).unwrap() {
        partner
            .send(AGENT, &chunk, t0.elapsed().as_millis() as u64)
            .unwrap();
    }
    let stored = dir.0.join("partner/pg.xml");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stored.exists() && Instant::now() < deadline {
        let _ = collect(&mut partner, t0, Duration::from_millis(50), |_| false);
    }
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), partner_xml("pg"));

    // A pushed definition whose disk lies outside the allowed storage paths is refused, never
    // stored, and reported to the ShMC naming the guest and the reason.
    let evil =
        "<domain type='test'><name>evil</name><memory unit='KiB'>1024</memory><vcpu>1</vcpu>\
                <os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'>\
                <source file='/etc/shadow'/><target dev='vda'/></disk></devices></domain>";
    for chunk in split("evil", evil.as_bytes()).unwrap() {
        partner
            .send(AGENT, &chunk, t0.elapsed().as_millis() as u64)
            .unwrap();
    }
    let (ok, seen) = collect(&mut shmc, t0, Duration::from_secs(5), |m| {
        matches!(m, Message::GuestUnprotected { .. })
    });
    assert!(ok, "no report of the refused definition: {seen:?}");
    match seen.last() {
        Some(Message::GuestUnprotected {
            slot: 2,
            reason: shelfha_proto::UnprotectedReason::DiskPath,
            name,
            text,
        }) => {
            assert_eq!(name.as_str(), "evil");
            assert!(text.contains("/etc/shadow"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!dir.0.join("partner/evil.xml").exists());
    assert!(hv.state("evil").is_err(), "refused definition defined");

    // A takeover without a confirmed fence is refused; nothing starts.
    let order = |fence| Message::RestartPartnerGuests {
        incident: 42,
        failed_slot: 2,
        fence,
        subset: None,
    };
    shmc.send(
        AGENT,
        &order(FenceProof::Unconfirmed),
        t0.elapsed().as_millis() as u64,
    )
    .unwrap();
    let (ok, seen) = collect(&mut shmc, t0, Duration::from_secs(5), |m| {
        matches!(m, Message::IncidentDone { incident: 42, .. })
    });
    assert!(ok, "{seen:?}");
    assert!(seen.iter().any(|m| matches!(
        m,
        Message::GuestOutcome {
            outcome: Outcome::Refused,
            reason: ReasonCode::FenceNotConfirmed,
            ..
        }
    )));
    assert!(matches!(
        seen.last(),
        Some(Message::IncidentDone {
            slot: 2,
            started: 0,
            refused: 1,
            failed: 0,
            ..
        })
    ));
    assert!(hv.state("pg").is_err(), "pg must not even be defined");

    // With the fence confirmed it starts.
    shmc.send(
        AGENT,
        &order(FenceProof::HotSwapM1),
        t0.elapsed().as_millis() as u64,
    )
    .unwrap();
    let (ok, seen) = collect(&mut shmc, t0, Duration::from_secs(5), |m| {
        matches!(m, Message::IncidentDone { incident: 42, .. })
    });
    assert!(ok, "{seen:?}");
    assert!(seen.iter().any(|m| matches!(
        m,
        Message::GuestOutcome {
            outcome: Outcome::Started,
            reason: ReasonCode::None,
            slot: 2,
            ..
        }
    )));
    assert_eq!(hv.state("pg").unwrap(), GuestState::Running);
    // The same order again (a new frame, e.g. after a ShMC restart): same answer, no second start.
    hv.destroy("pg").unwrap();
    shmc.send(
        AGENT,
        &order(FenceProof::HotSwapM1),
        t0.elapsed().as_millis() as u64,
    )
    .unwrap();
    let (ok, seen) = collect(&mut shmc, t0, Duration::from_secs(5), |m| {
        matches!(m, Message::IncidentDone { incident: 42, .. })
    });
    assert!(ok, "{seen:?}");
    assert!(matches!(
        seen.last(),
        Some(Message::IncidentDone {
            started: 1,
            refused: 0,
            failed: 0,
            ..
        })
    ));
    assert_eq!(
        hv.state("pg").unwrap(),
        GuestState::Shutoff,
        "duplicate order started the guest again"
    );
    hv.start("pg").unwrap();

    // A FenceSelf from the partner (authentic, but not the ShMC) has no effect.
    partner
        .send(
            AGENT,
            &Message::FenceSelf { incident: 7 },
            t0.elapsed().as_millis() as u64,
        )
        .ok();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hv.state("test").unwrap(), GuestState::Running);

    // From here a raw socket plays the ShMC at its configured address (frames sealed by hand,
    // answers checked with a Verifier).
    let shmc_addr = shmc.local_addr().unwrap();
    drop(shmc);
    let raw = UdpSocket::bind(shmc_addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut verifier = Verifier::new(Key::new(KEY), NodeId::SHMC);
    verifier.add_peer(AGENT).unwrap();
    let mut read_raw =
        |timeout: Duration, want: &dyn Fn(&Message) -> bool| -> (bool, Vec<Message>) {
            let deadline = Instant::now() + timeout;
            let mut seen = Vec::new();
            let mut buf = [0u8; 2048];
            while Instant::now() < deadline {
                if let Ok(n) = raw.recv(&mut buf) {
                    // Retries of the agent's own commands (unacked here) are replays: skipped.
                    if let Ok(rx) = verifier.open(&buf[..n]) {
                        let hit = want(&rx.message);
                        seen.push(rx.message);
                        if hit {
                            return (true, seen);
                        }
                    }
                }
            }
            (false, seen)
        };
    let send = |bytes: &[u8]| {
        raw.send_to(bytes, agent_addr).unwrap();
    };
    let fence = Message::FenceSelf { incident: 99 };
    let probe = Message::RestartGuest {
        incident: 98,
        name: guest_name("nosuch").unwrap(),
    };
    let legit_probe = sealed(KEY, NodeId::SHMC, 5_000_001, &probe);
    send(&legit_probe);
    let is_probe_answer = |m: &Message| {
        matches!(
            m,
            Message::GuestOutcome {
                incident: 98,
                reason: ReasonCode::NotProtected,
                ..
            }
        )
    };
    let (ok, seen) = read_raw(Duration::from_secs(5), &is_probe_answer);
    assert!(ok, "authentic frame not answered: {seen:?}");
    let _ = read_raw(Duration::from_millis(300), &|_| false);
    send(&legit_probe); // replay
    let mut tampered = sealed(KEY, NodeId::SHMC, 5_000_002, &fence);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    send(&tampered);
    let mut body_tampered = sealed(KEY, NodeId::SHMC, 5_000_003, &fence);
    body_tampered[12] ^= 0x40;
    send(&body_tampered);
    send(&sealed([0x11; 32], NodeId::SHMC, 5_000_004, &fence)); // forged: wrong key
    send(&sealed(KEY, PARTNER, 5_000_005, &fence)); // authentic, but not from the ShMC
    send(&[0u8; 1500]); // oversized
    send(&legit_probe[..5]); // truncated
    let (_, seen) = read_raw(Duration::from_secs(1), &|_| false);
    assert!(
        !seen.iter().any(is_probe_answer),
        "replay answered: {seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|m| matches!(m, Message::FenceSelfConfirmed { .. })),
        "{seen:?}"
    );
    assert_eq!(hv.state("test").unwrap(), GuestState::Running);
    assert_eq!(hv.state("pg").unwrap(), GuestState::Running);
    assert!(!agent.is_fenced());

    // The agent still works: heartbeats continue and an authentic FenceSelf is carried out.
    let (ok, _) = read_raw(Duration::from_secs(5), &|m| {
        matches!(m, Message::Heartbeat { .. })
    });
    assert!(ok, "heartbeats stopped");
    send(&sealed(KEY, NodeId::SHMC, 5_000_010, &fence));
    let (ok, seen) = read_raw(Duration::from_secs(5), &|m| {
        matches!(m, Message::FenceSelfConfirmed { incident: 99, .. })
    });
    assert!(ok, "{seen:?}");
    assert!(matches!(
        seen.last(),
        Some(Message::FenceSelfConfirmed {
            destroyed: 2,
            killed: 0,
            remaining: 0,
            ..
        })
    ));
    assert_eq!(hv.state("test").unwrap(), GuestState::Shutoff);
    assert_eq!(hv.state("pg").unwrap(), GuestState::Shutoff);

    stop.store(true, Ordering::SeqCst);
    daemon.join().unwrap().unwrap();

    // An agent restarted on the same state directory never acts on the old frame: it
    // challenges the ShMC instead, and answers a fresh frame once the ShMC has replied.
    let mut ep2 = agent_endpoint(AGENT, 2_000_000);
    let addr2 = ep2.local_addr().unwrap();
    ep2.add_peer(NodeId::SHMC, Some(shmc_addr)).unwrap();
    ep2.add_peer(PARTNER, Some(partner.local_addr().unwrap()))
        .unwrap();
    let cfg2 = Config::parse(&text, Path::new("udp.toml")).unwrap();
    let agent2 = Arc::new(Agent::new(Arc::clone(&hv), cfg2).unwrap());
    let stop2 = Arc::new(AtomicBool::new(false));
    let daemon2 = {
        let (agent, stop) = (Arc::clone(&agent2), Arc::clone(&stop2));
        std::thread::spawn(move || blade_agent::daemon::run(agent, ep2, stop))
    };
    raw.send_to(&legit_probe, addr2).unwrap();
    let (_, seen) = read_raw(Duration::from_secs(1), &|_| false);
    let about_98 = |m: &Message| {
        matches!(
            m,
            Message::GuestOutcome { incident: 98, .. } | Message::IncidentDone { incident: 98, .. }
        )
    };
    assert!(
        !seen.iter().any(about_98),
        "old frame accepted after restart: {seen:?}"
    );
    let (nonce, floor) = seen
        .iter()
        .find_map(|m| match m {
            Message::Challenge { nonce, floor } => Some((*nonce, *floor)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the restarted agent challenges the ShMC: {seen:?}"));
    assert!(
        floor >= 5_000_010,
        "the persisted floor travels with the challenge: {floor}"
    );
    raw.send_to(
        &sealed(
            KEY,
            NodeId::SHMC,
            5_000_015,
            &Message::ChallengeReply { nonce },
        ),
        addr2,
    )
    .unwrap();
    let probe2 = Message::RestartGuest {
        incident: 97,
        name: guest_name("nosuch").unwrap(),
    };
    raw.send_to(&sealed(KEY, NodeId::SHMC, 5_000_020, &probe2), addr2)
        .unwrap();
    let (ok, seen) = read_raw(Duration::from_secs(5), &|m| {
        matches!(m, Message::GuestOutcome { incident: 97, .. })
    });
    assert!(ok, "restarted agent does not answer: {seen:?}");
    stop2.store(true, Ordering::SeqCst);
    daemon2.join().unwrap().unwrap();
}

/// Two running agents: each pushes its definitions to the other; a stale copy (an outdated
/// definition and one of a guest the partner no longer has) is repaired through the digest in
/// the heartbeats.
#[test]
fn test_partner_definitions_sync_and_drift_repair() {
    let dir =
        TempDir(std::env::temp_dir().join(format!("blade-agent-sync-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let shmc = endpoint(NodeId::SHMC, 1);
    let mut eps = [agent_endpoint(AGENT, 1), agent_endpoint(PARTNER, 1)];
    let addrs = [eps[0].local_addr().unwrap(), eps[1].local_addr().unwrap()];
    let stale_dir = dir.0.join("b/partner");
    std::fs::create_dir_all(&stale_dir).unwrap();
    std::fs::write(stale_dir.join("ghost.xml"), partner_xml("ghost")).unwrap();
    std::fs::write(stale_dir.join("test.xml"), partner_xml("test")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut daemons = Vec::new();
    let mut hvs = Vec::new();
    for (i, (slot, partner_slot)) in [(1u8, 2u8), (2, 1)].into_iter().enumerate() {
        let state = dir.0.join(if i == 0 { "a" } else { "b" });
        let text = format!(
            "slot = {slot}\nshmc = \"{}\"\nlisten = \"{}\"\nstate_dir = \"{}\"\nlibvirt_uri = \"test:///default\"\n\
             heartbeat_ms = 50\n[partner]\nslot = {partner_slot}\naddress = \"{}\"\n[guests]\nallowed_storage_paths = [\"/guest\"]\n",
            shmc.local_addr().unwrap(),
            addrs[i],
            state.display(),
            addrs[1 - i]
        );
        let cfg = Config::parse(&text, Path::new("sync.toml")).unwrap();
        let mut ep = std::mem::replace(&mut eps[i], endpoint(NodeId(9), 1));
        ep.add_peer(NodeId::SHMC, Some(cfg.shmc)).unwrap();
        ep.add_peer(NodeId(partner_slot), Some(cfg.partner.address))
            .unwrap();
        let hv = Arc::new(LibvirtHypervisor::open("test:///default", state.join("run")).unwrap());
        let agent = Arc::new(Agent::new(Arc::clone(&hv), cfg).unwrap());
        let stop = Arc::clone(&stop);
        daemons.push(std::thread::spawn(move || {
            blade_agent::daemon::run(agent, ep, stop)
        }));
        hvs.push(hv);
    }
    let a_test_xml = hvs[0]
        .list_guests()
        .unwrap()
        .into_iter()
        .find(|g| g.name == "test")
        .unwrap()
        .xml;
    let b_test_xml = hvs[1]
        .list_guests()
        .unwrap()
        .into_iter()
        .find(|g| g.name == "test")
        .unwrap()
        .xml;
    let deadline = Instant::now() + Duration::from_secs(15);
    let listing = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    loop {
        // Other tests of this binary share `test:///default` and may define more guests
        // there (both agents then protect them): only the stale copies matter here.
        let held = listing(&stale_dir);
        let b_ok = !held.iter().any(|n| n == "ghost.xml")
            && held.iter().any(|n| n == "test.xml")
            && std::fs::read_to_string(stale_dir.join("test.xml"))
                .ok()
                .as_deref()
                == Some(a_test_xml.as_str());
        let a_ok = std::fs::read_to_string(dir.0.join("a/partner/test.xml"))
            .ok()
            .as_deref()
            == Some(b_test_xml.as_str());
        if a_ok && b_ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not repaired: b has {:?}, a has {:?}",
            listing(&stale_dir),
            listing(&dir.0.join("a/partner"))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A guest defined later on A reaches B too (lifecycle event -> push).
    hvs[0].define(&partner_xml("late")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stale_dir.join("late.xml").exists() {
        assert!(Instant::now() < deadline, "late definition not pushed");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    for d in daemons {
        d.join().unwrap().unwrap();
    }
}

/// A partner whose hypervisor is down announces nothing we act on: its (empty) digest does not
/// make us drop its definitions. Healthy, the same digest makes us request a push, and then
/// drop what it no longer has.
#[test]
fn test_unhealthy_partner_heartbeat_keeps_definitions() {
    let dir =
        TempDir(std::env::temp_dir().join(format!("blade-agent-keep-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let t0 = Instant::now();
    let shmc = endpoint(NodeId::SHMC, 1);
    let mut partner = endpoint(PARTNER, 1);
    let agent_ep = agent_endpoint(AGENT, 1);
    partner
        .add_peer(AGENT, Some(agent_ep.local_addr().unwrap()))
        .unwrap();
    let (stop, daemon) = run_agent(
        agent_ep,
        &dir.0,
        shmc.local_addr().unwrap(),
        partner.local_addr().unwrap(),
        "keep.toml",
    );
    let now = || t0.elapsed().as_millis() as u64;
    for chunk in split("pg", partner_xml("pg").as_bytes()).unwrap() {
        partner.send(AGENT, &chunk, now()).unwrap();
    }
    let stored = dir.0.join("partner/pg.xml");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stored.exists() {
        assert!(Instant::now() < deadline, "definition not stored");
        let _ = collect(&mut partner, t0, Duration::from_millis(50), |_| false);
    }
    let empty = shelfha_proto::guest_set_digest(&mut []);
    let beat = |health| Message::Heartbeat {
        beat: 1,
        health,
        protected: 0,
        digest: empty,
        partner_heard_ms: None,
        running: 0,
        partner_seq: None,
    };
    for _ in 0..10 {
        partner.send(AGENT, &beat(Health::Down), now()).unwrap();
        let (requested, _) = collect(&mut partner, t0, Duration::from_millis(100), |m| {
            matches!(m, Message::DefinitionRequest { .. })
        });
        assert!(!requested, "acted on an unhealthy partner's digest");
    }
    assert!(
        stored.exists(),
        "definition dropped on an unhealthy partner's word"
    );
    partner.send(AGENT, &beat(Health::Ok), now()).unwrap();
    let (requested, _) = collect(&mut partner, t0, Duration::from_secs(5), |m| {
        matches!(m, Message::DefinitionRequest { name: None })
    });
    assert!(requested);
    let deadline = Instant::now() + Duration::from_secs(5);
    while stored.exists() {
        assert!(Instant::now() < deadline, "stale definition kept");
        partner.send(AGENT, &beat(Health::Ok), now()).unwrap();
        let _ = collect(&mut partner, t0, Duration::from_millis(100), |_| false);
    }
    stop.store(true, Ordering::SeqCst);
    daemon.join().unwrap().unwrap();
}

/// Journal, then acknowledge: an order whose journal write fails is neither acknowledged nor
/// carried out; the ShMC's retry is, once the journal can be written again.
#[test]
fn test_order_not_journaled_is_not_acknowledged_and_its_retry_is_carried_out() {
    let dir =
        TempDir(std::env::temp_dir().join(format!("blade-agent-journal-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let t0 = Instant::now();
    let now = || t0.elapsed().as_millis() as u64;
    let mut shmc = endpoint(NodeId::SHMC, 1);
    let partner = endpoint(PARTNER, 1);
    let agent_ep = agent_endpoint(AGENT, 1);
    shmc.add_peer(AGENT, Some(agent_ep.local_addr().unwrap()))
        .unwrap();
    let (stop, daemon) = run_agent(
        agent_ep,
        &dir.0,
        shmc.local_addr().unwrap(),
        partner.local_addr().unwrap(),
        "journal.toml",
    );
    let (ok, _) = collect(&mut shmc, t0, Duration::from_secs(5), |m| {
        matches!(m, Message::Hello { slot: 1, .. })
    });
    assert!(ok, "no Hello");

    // The journal cannot be written: its temporary file's name is taken by a directory.
    let blocker = dir.0.join(".journal.json.tmp");
    std::fs::create_dir_all(&blocker).unwrap();
    let order = Message::RestartGuest {
        incident: 77,
        name: guest_name("nosuch").unwrap(),
    };
    let handle = shmc.send(AGENT, &order, now()).unwrap();
    let mut acked = false;
    let mut answered = false;
    let mut watch = |shmc: &mut Endpoint, until: Instant| {
        while Instant::now() < until && !(acked && answered) {
            while let Some(ev) = shmc.poll(now()) {
                match ev {
                    Event::Acked { seq, status, .. } if seq == handle => {
                        assert!(
                            status.is_delivered(),
                            "a retry answered {status:?}: taken for a late copy"
                        );
                        acked = true
                    }
                    Event::GaveUp { seq, .. } if seq == handle => panic!("gave up"),
                    Event::Message {
                        message: Message::GuestOutcome { incident: 77, .. },
                        ..
                    } => answered = true,
                    _ => {}
                }
            }
            shmc.wait(Some(10)).unwrap();
        }
        (acked, answered)
    };
    let (a, b) = watch(&mut shmc, Instant::now() + Duration::from_millis(400));
    assert!(!a, "acknowledged although the journal write failed");
    assert!(!b, "carried out although not journaled");
    assert!(shmc.pending() == 1, "still being retried");
    // The journal can be written again: the next retry is journaled, acknowledged, carried out.
    std::fs::remove_dir(&blocker).unwrap();
    let (a, b) = watch(&mut shmc, Instant::now() + Duration::from_secs(5));
    assert!(
        a && b,
        "retry not acknowledged ({a}) or not carried out ({b})"
    );
    stop.store(true, Ordering::SeqCst);
    daemon.join().unwrap().unwrap();
}

/// The second line against a double start: a whole-blade takeover is refused while the
/// partner's heartbeats keep reporting running guests (reason `PartnerRunning`, nothing
/// started), carried out when they report none, and carried out when the partner falls silent
/// (its agent died with its blade) once its last heartbeat is older than 1.5 heartbeats. The
/// agent's own heartbeats count the protected guests running here, and a change goes out at
/// once. The blade has a private libvirt test driver (no guests of the other tests).
#[test]
fn test_partner_heartbeats_reporting_running_guests_refuse_a_takeover() {
    let dir =
        TempDir(std::env::temp_dir().join(format!("blade-agent-second-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let node = dir.0.join("node.xml");
    std::fs::write(&node, "<node><memory>8388608</memory></node>\n").unwrap();
    let uri = format!("test://{}", node.display());
    let t0 = Instant::now();
    let now = || t0.elapsed().as_millis() as u64;
    let mut shmc = endpoint(NodeId::SHMC, 1);
    let mut partner = endpoint(PARTNER, 1);
    let mut agent_ep = agent_endpoint(AGENT, 1);
    let agent_addr = agent_ep.local_addr().unwrap();
    shmc.add_peer(AGENT, Some(agent_addr)).unwrap();
    partner.add_peer(AGENT, Some(agent_addr)).unwrap();
    let text = format!(
        "slot = 1\nshmc = \"{}\"\nlisten = \"{agent_addr}\"\nstate_dir = \"{}\"\nlibvirt_uri = \"{uri}\"\n\
         heartbeat_ms = 50\n[partner]\nslot = 2\naddress = \"{}\"\n[guests]\nallowed_storage_paths = [\"/guest\"]\n",
        shmc.local_addr().unwrap(),
        dir.0.display(),
        partner.local_addr().unwrap()
    );
    let cfg = Config::parse(&text, Path::new("second.toml")).unwrap();
    agent_ep.add_peer(NodeId::SHMC, Some(cfg.shmc)).unwrap();
    agent_ep
        .add_peer(PARTNER, Some(cfg.partner.address))
        .unwrap();
    let hv = Arc::new(LibvirtHypervisor::open(&uri, dir.0.join("run")).unwrap());
    let agent = Arc::new(Agent::new(Arc::clone(&hv), cfg).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let daemon = {
        let (agent, stop) = (Arc::clone(&agent), Arc::clone(&stop));
        std::thread::spawn(move || blade_agent::daemon::run(agent, agent_ep, stop))
    };
    let (ok, _) = collect(&mut shmc, t0, Duration::from_secs(5), |m| {
        matches!(m, Message::Hello { slot: 1, .. })
    });
    assert!(ok, "no Hello");
    let (ok, seen) = collect(&mut shmc, t0, Duration::from_secs(5), |m| {
        matches!(
            m,
            Message::Heartbeat {
                protected: 0,
                running: 0,
                ..
            }
        )
    });
    assert!(ok, "no heartbeat saying nothing runs here: {seen:?}");

    // The partner's guest, stored here; its heartbeats carry the matching digest (so the
    // agent keeps the definition).
    // With its UUID, as libvirt gives it: defining it again after a takeover is a redefinition.
    let guest = "second-line";
    let xml = partner_xml(guest).replace(
        "<memory",
        "<uuid>6f1c2f5e-2b1d-4c3a-9e57-5a1d2c3b4e5f</uuid><memory",
    );
    for chunk in split(guest, xml.as_bytes()).unwrap() {
        partner.send(AGENT, &chunk, now()).unwrap();
    }
    let stored = dir.0.join(format!("partner/{guest}.xml"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stored.exists() {
        assert!(Instant::now() < deadline, "definition not stored");
        let _ = collect(&mut partner, t0, Duration::from_millis(50), |_| false);
    }
    let digest = shelfha_proto::guest_set_digest(&mut [(
        guest,
        shelfha_proto::definition_digest(xml.as_bytes()),
    )]);
    let beat = std::cell::Cell::new(0u64);
    let heartbeat = |partner: &mut Endpoint, running: u16| {
        beat.set(beat.get() + 1);
        let hb = Message::Heartbeat {
            beat: beat.get(),
            health: Health::Ok,
            protected: 1,
            digest,
            partner_heard_ms: None,
            running,
            partner_seq: None,
        };
        partner.send(AGENT, &hb, now()).unwrap();
        let _ = collect(partner, t0, Duration::from_millis(1), |_| false);
    };
    let order = |incident| Message::RestartPartnerGuests {
        incident,
        failed_slot: 2,
        fence: FenceProof::HotSwapM1,
        subset: None,
    };
    // Sends the order, the partner beating every 25 ms with `running` (`None`: silent), and
    // returns what the ShMC saw up to the order's IncidentDone.
    let takeover = |shmc: &mut Endpoint,
                    partner: &mut Endpoint,
                    incident: u32,
                    running: Option<u16>|
     -> (Duration, Vec<Message>) {
        let sent = Instant::now();
        shmc.send(AGENT, &order(incident), now()).unwrap();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(r) = running {
                heartbeat(partner, r);
            }
            let (done, more) = collect(
                shmc,
                t0,
                Duration::from_millis(25),
                |m| matches!(m, Message::IncidentDone { incident: i, .. } if *i == incident),
            );
            seen.extend(more);
            if done {
                return (sent.elapsed(), seen);
            }
        }
        panic!("no IncidentDone for {incident}: {seen:?}");
    };
    let outcome_of = |seen: &[Message]| -> Vec<(Outcome, ReasonCode)> {
        seen.iter()
            .filter_map(|m| match m {
                Message::GuestOutcome {
                    name,
                    outcome,
                    reason,
                    slot: 2,
                    ..
                } if name.as_str() == guest => Some((*outcome, *reason)),
                _ => None,
            })
            .collect()
    };

    // (i) The partner keeps reporting a running guest: refused, nothing started or defined.
    heartbeat(&mut partner, 1);
    let (took, seen) = takeover(&mut shmc, &mut partner, 301, Some(1));
    println!("refused after {} ms", took.as_millis());
    assert_eq!(
        outcome_of(&seen),
        [(Outcome::Refused, ReasonCode::PartnerRunning)],
        "{seen:?}"
    );
    assert!(matches!(
        seen.last(),
        Some(Message::IncidentDone {
            slot: 2,
            started: 0,
            refused: 1,
            failed: 0,
            ..
        })
    ));
    assert!(
        hv.state(guest).is_err(),
        "the guest must not even be defined"
    );

    // (ii) Its heartbeats say no guest runs there: carried out.
    let (took, seen) = takeover(&mut shmc, &mut partner, 302, Some(0));
    println!(
        "carried out after {} ms (partner reports 0)",
        took.as_millis()
    );
    assert_eq!(
        outcome_of(&seen),
        [(Outcome::Started, ReasonCode::None)],
        "{seen:?}"
    );
    assert_eq!(hv.state(guest).unwrap(), GuestState::Running);
    // The guest taken over is protected here now: this agent's heartbeats count it running,
    // and its stop goes out at once (lifecycle event, listing, extra heartbeat).
    let (ok, seen) = collect(&mut shmc, t0, Duration::from_secs(5), |m| {
        matches!(m, Message::Heartbeat { running: 1, .. })
    });
    assert!(ok, "no heartbeat counting the guest running: {seen:?}");
    hv.destroy(guest).unwrap();
    let stopped = Instant::now();
    let (ok, seen) = collect(&mut shmc, t0, Duration::from_secs(5), |m| {
        matches!(m, Message::Heartbeat { running: 0, .. })
    });
    assert!(ok, "no heartbeat counting the guest stopped: {seen:?}");
    println!(
        "stop reported by a heartbeat after {} ms",
        stopped.elapsed().as_millis()
    );

    // (iii) Its last heartbeat still said "running", then nothing: carried out once that
    // heartbeat is older than 1.5 heartbeat intervals.
    heartbeat(&mut partner, 1);
    let (took, seen) = takeover(&mut shmc, &mut partner, 303, None);
    println!("carried out after {} ms (partner silent)", took.as_millis());
    assert_eq!(
        outcome_of(&seen),
        [(Outcome::Started, ReasonCode::None)],
        "{seen:?}"
    );
    assert_eq!(hv.state(guest).unwrap(), GuestState::Running);
    stop.store(true, Ordering::SeqCst);
    daemon.join().unwrap().unwrap();
}
