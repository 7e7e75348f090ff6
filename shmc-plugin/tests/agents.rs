//! `shmc-plugin run` with its agent link on real UDP sockets: two blade
//! agents played with the protocol crate's endpoint, two IPMCs on a pty.
//! Scenario `hypervisor`: slot 1's libvirt goes down past the grace period,
//! the ShMC orders FenceSelf, and only after slot 1 confirms does slot 2 get
//! RestartPartnerGuests, carrying the self-fence as its proof.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shelfha_proto::{
    write_key_file, Capabilities, Endpoint, EndpointConfig, Event, FenceProof, Health, Key,
    Message, NodeId, SoftwareVersion,
};
use shmc_plugin::wire::cmd;
use shmc_plugin::wire::framer::StreamFramer;
use shmc_plugin::wire::ipmb::{Message as IpmbMessage, Repr};

/// Answers every request on the pty as a healthy IPMC in M4 would.
fn answer_ipmcs(master: &OwnedFd, framer: &mut StreamFramer) {
    let mut buf = [0u8; 256];
    loop {
        let n = match nix::unistd::read(master.as_fd(), &mut buf) {
            Ok(n) => n,
            Err(_) => return,
        };
        let msgs: Vec<IpmbMessage> = framer.push(&buf[..n]).filter_map(Result::ok).collect();
        for m in msgs {
            let r = m.repr();
            let reply: &[u8] = match (r.net_fn, r.cmd) {
                (cmd::NETFN_APP, cmd::CMD_GET_DEVICE_ID) => &[0x00, 0x01, 0x01, 0x01, 0x02],
                (cmd::NETFN_SENSOR_EVENT, cmd::CMD_GET_SENSOR_READING) => {
                    &[0x00, 0x00, 0xC0, 0x10, 0x80]
                }
                _ => &[0x00, 0x00],
            };
            let out = IpmbMessage::from_repr(&Repr::response_to(&r, reply)).unwrap();
            nix::unistd::write(master.as_fd(), out.as_bytes()).unwrap();
        }
    }
}

/// A fixed key that passes the key file's randomness checks.
fn test_key() -> Key {
    Key::new([
        0x8f, 0x13, 0xa2, 0x5c, 0x70, 0x01, 0xde, 0x44, 0x9b, 0x36, 0xe7, 0x28, 0xc5, 0x0a, 0x91,
        0x6f, 0xb4, 0x52, 0x1d, 0xee, 0x83, 0x47, 0x2a, 0xf9, 0x60, 0x3b, 0xcc, 0x15, 0x7e, 0xd8,
        0x09, 0xa6,
    ])
}

fn free_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn agent(slot: u8, key: &Key, shmc: SocketAddr) -> Endpoint {
    let mut ep = Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        NodeId(slot),
        key.clone(),
        EndpointConfig::default(),
    )
    .unwrap();
    ep.add_peer(NodeId::SHMC, Some(shmc)).unwrap();
    ep
}

fn heartbeat(beat: u64, health: Health) -> Message {
    Message::Heartbeat {
        beat,
        health,
        protected: 1,
        digest: [0; 32],
        partner_heard_ms: None,
        running: 1,
        partner_seq: None,
    }
}

#[test]
fn test_hypervisor_down_self_fence_then_partner_restart_over_udp() {
    let dir = std::env::temp_dir().join(format!("shmc-agents-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = test_key();
    let key_path = dir.join("shelf.key");
    write_key_file(&key_path, &key).unwrap();

    let pty = nix::pty::openpty(None, None).unwrap();
    nix::fcntl::fcntl(
        pty.master.as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let slave_path = nix::unistd::ttyname(pty.slave.as_fd()).unwrap();
    let shmc_addr = free_port();
    let mut a1 = agent(1, &key, shmc_addr);
    let mut a2 = agent(2, &key, shmc_addr);
    let config = dir.join("shelf.toml");
    std::fs::write(
        &config,
        format!(
            "[shelf]\nown_address = 0x20\nipmb_device = {:?}\nlisten = \"{shmc_addr}\"\nkey_file = {:?}\n\
             [[blade]]\nslot = 1\nipmb_address = 0x82\npartner = 2\nagent = \"{}\"\n\
             [[blade]]\nslot = 2\nipmb_address = 0x84\npartner = 1\nagent = \"{}\"\n",
            slave_path.to_str().unwrap(),
            key_path.to_str().unwrap(),
            a1.local_addr().unwrap(),
            a2.local_addr().unwrap(),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmc-plugin"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _slave = pty.slave;
    let master = pty.master;
    let mut framer = StreamFramer::new();

    let start = Instant::now();
    let ms = || start.elapsed().as_millis() as u64;
    let hello = |slot| Message::Hello {
        slot,
        version: SoftwareVersion {
            major: 0,
            minor: 1,
            patch: 0,
        },
        capabilities: Capabilities::SELF_FENCE,
        heartbeat_ms: 200,
        watchdog_ms: None,
    };
    std::thread::sleep(Duration::from_millis(200));
    a1.send(NodeId::SHMC, &hello(1), ms()).unwrap();
    a2.send(NodeId::SHMC, &hello(2), ms()).unwrap();

    let mut beat = 0;
    let mut next_beat = 0;
    let mut down_sent = false;
    let mut fence_self = None;
    let mut restart = None;
    let mut early_restart = false;
    while ms() < 6000 && restart.is_none() {
        answer_ipmcs(&master, &mut framer);
        let now = ms();
        if now >= next_beat {
            beat += 1;
            let health = if down_sent { Health::Down } else { Health::Ok };
            let _ = a1.send(NodeId::SHMC, &heartbeat(beat, health), now);
            let _ = a2.send(NodeId::SHMC, &heartbeat(beat, Health::Ok), now);
            next_beat = now + 200;
        }
        if !down_sent && now >= 700 {
            a1.send(NodeId::SHMC, &Message::HypervisorDown, now)
                .unwrap();
            down_sent = true;
        }
        while let Some(ev) = a1.poll(now) {
            if let Event::Message {
                message: Message::FenceSelf { incident },
                ..
            } = ev
            {
                fence_self = Some((incident, now));
                // Guests destroyed: confirm.
                a1.send(
                    NodeId::SHMC,
                    &Message::FenceSelfConfirmed {
                        incident,
                        destroyed: 1,
                        killed: 0,
                        remaining: 0,
                    },
                    now,
                )
                .unwrap();
            }
        }
        while let Some(ev) = a2.poll(now) {
            if let Event::Message {
                message: msg @ Message::RestartPartnerGuests { .. },
                ..
            } = ev
            {
                early_restart |= fence_self.is_none();
                restart = Some(msg);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{log}");

    let (incident, fenced_at) = fence_self.expect("FenceSelf reached slot 1's agent");
    assert!(
        fenced_at >= 700 + 500,
        "not before the grace period: {fenced_at} ms"
    );
    assert!(
        !early_restart,
        "no restart before the self-fence was confirmed"
    );
    assert_eq!(
        restart,
        Some(Message::RestartPartnerGuests {
            incident,
            failed_slot: 1,
            fence: FenceProof::SelfFenced,
            subset: None,
        })
    );
    assert!(log.contains("hypervisor for slot 1"), "{log}");
    assert!(
        !log.contains("host_os"),
        "heartbeats kept the agents alive: {log}"
    );
}

/// A blade agent played by hand on a raw socket: frames sealed with the shelf key and
/// chosen sequence numbers, as captured on the wire.
struct RawAgent {
    socket: UdpSocket,
    key: Key,
    slot: u8,
    verifier: shelfha_proto::Verifier,
}

impl RawAgent {
    fn new(key: &Key, slot: u8) -> RawAgent {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut verifier = shelfha_proto::Verifier::new(key.clone(), NodeId(slot));
        verifier.add_peer(NodeId::SHMC).unwrap();
        RawAgent {
            socket,
            key: key.clone(),
            slot,
            verifier,
        }
    }

    fn frame(&self, seq: u64, msg: &Message) -> Vec<u8> {
        let mut buf = [0u8; shelfha_proto::MAX_FRAME];
        let h = shelfha_proto::Header {
            sender: NodeId(self.slot),
            dest: NodeId::SHMC,
            seq,
        };
        let n = shelfha_proto::seal(&self.key, &h, msg, &mut buf).unwrap();
        buf[..n].to_vec()
    }

    /// Every message from the ShMC that arrives within `ms` (IPMCs answered meanwhile).
    fn receive(&mut self, ms: u64, ipmc: &mut dyn FnMut()) -> Vec<Message> {
        let end = Instant::now() + Duration::from_millis(ms);
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while Instant::now() < end {
            ipmc();
            if let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                if let Ok(rx) = self.verifier.open(&buf[..n]) {
                    got.push(rx.message);
                }
            }
        }
        got
    }
}

fn guest_crashed() -> Message {
    Message::GuestCrashed {
        name: shelfha_proto::guest_name("vm1").unwrap(),
    }
}

fn is_order(m: &Message) -> bool {
    m.kind().from_shmc() == Some(true)
}

#[test]
fn test_frames_captured_before_a_plugin_restart_are_never_acted_on() {
    let dir = std::env::temp_dir().join(format!("shmc-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = test_key();
    let key_path = dir.join("shelf.key");
    write_key_file(&key_path, &key).unwrap();
    let pty = nix::pty::openpty(None, None).unwrap();
    nix::fcntl::fcntl(
        pty.master.as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let slave_path = nix::unistd::ttyname(pty.slave.as_fd()).unwrap();
    let shmc_addr = free_port();
    let mut genuine = RawAgent::new(&key, 1);
    let mut replayer = RawAgent::new(&key, 1);
    let config = dir.join("shelf.toml");
    std::fs::write(
        &config,
        format!(
            "[shelf]\nown_address = 0x20\nipmb_device = {:?}\nlisten = \"{shmc_addr}\"\nkey_file = {:?}\n\
             [[blade]]\nslot = 1\nipmb_address = 0x82\npartner = 2\nagent = \"{}\"\n\
             [[blade]]\nslot = 2\nipmb_address = 0x84\npartner = 1\n",
            slave_path.to_str().unwrap(),
            key_path.to_str().unwrap(),
            genuine.socket.local_addr().unwrap(),
        ),
    )
    .unwrap();
    let _slave = pty.slave;
    let master = pty.master;
    let mut framer = StreamFramer::new();
    let mut ipmc = || answer_ipmcs(&master, &mut framer);
    let start = |log: &str| {
        Command::new(env!("CARGO_BIN_EXE_shmc-plugin"))
            .args(["run", "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let challenge = |msgs: &[Message]| {
        msgs.iter().find_map(|m| match m {
            Message::Challenge { nonce, .. } => Some(*nonce),
            _ => None,
        })
    };

    // Run 1: the genuine agent answers the challenge and reports four crashes, which run 1
    // acknowledges (and acts on). An attacker records those four datagrams.
    let mut run1 = start("run1.log");
    let nonce = challenge(&genuine.receive(1500, &mut ipmc)).expect("run 1 challenges slot 1");
    genuine
        .socket
        .send_to(
            &genuine.frame(999, &Message::ChallengeReply { nonce }),
            shmc_addr,
        )
        .unwrap();
    let captured: Vec<Vec<u8>> = (1000..1004)
        .map(|seq| genuine.frame(seq, &guest_crashed()))
        .collect();
    for c in &captured {
        genuine.socket.send_to(c, shmc_addr).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let run1_answers = genuine.receive(800, &mut ipmc);
    let acks = run1_answers
        .iter()
        .filter(|m| matches!(m, Message::Ack { acked, .. } if (1000..1004).contains(acked)))
        .count();
    assert_eq!(acks, 4, "run 1 took the genuine reports: {run1_answers:?}");
    run1.kill().unwrap();
    run1.wait().unwrap();

    // Run 2: the recorded datagrams are replayed, from the attacker's own address and from
    // the genuine one.
    let mut run2 = start("run2.log");
    genuine.receive(300, &mut ipmc);
    for c in &captured {
        replayer.socket.send_to(c, shmc_addr).unwrap();
        genuine.socket.send_to(c, shmc_addr).unwrap();
    }
    let to_replayer = replayer.receive(800, &mut ipmc);
    let to_genuine = genuine.receive(400, &mut ipmc);
    assert!(
        to_replayer.is_empty(),
        "nothing goes to the replayer's address: {to_replayer:?}"
    );
    assert!(
        !to_genuine.iter().any(is_order),
        "a replayed report was acted on: {to_genuine:?}"
    );
    let nonce = challenge(&to_genuine).expect("run 2 challenges the configured address");

    // Positive control: the genuine agent answers the challenge; its next report is taken.
    genuine
        .socket
        .send_to(
            &genuine.frame(5000, &Message::ChallengeReply { nonce }),
            shmc_addr,
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    genuine
        .socket
        .send_to(&genuine.frame(5001, &guest_crashed()), shmc_addr)
        .unwrap();
    let after = genuine.receive(1000, &mut ipmc);
    // The captured frames stay refused after the session opened.
    for c in &captured {
        replayer.socket.send_to(c, shmc_addr).unwrap();
    }
    let late = replayer.receive(500, &mut ipmc);
    run2.kill().unwrap();
    run2.wait().unwrap();
    let log2 = std::fs::read_to_string(dir.join("run2.log")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        after
            .iter()
            .any(|m| matches!(m, Message::Ack { acked: 5001, .. })),
        "a fresh report is acknowledged: {after:?}\n{log2}"
    );
    assert!(
        after
            .iter()
            .any(|m| matches!(m, Message::RestartGuest { .. })),
        "a fresh crash report is acted on (local restart): {after:?}\n{log2}"
    );
    assert!(late.is_empty(), "{late:?}");
    let restarts = log2.matches("RestartGuest").count();
    assert!(
        !log2.contains("DestroyGuest") && restarts >= 1,
        "run 2 ordered only the fresh report's restart:\n{log2}"
    );
}

#[test]
fn test_an_order_never_acknowledged_raises_an_alert_naming_it() {
    let dir = std::env::temp_dir().join(format!("shmc-unacked-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = test_key();
    let key_path = dir.join("shelf.key");
    write_key_file(&key_path, &key).unwrap();
    let pty = nix::pty::openpty(None, None).unwrap();
    nix::fcntl::fcntl(
        pty.master.as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let slave_path = nix::unistd::ttyname(pty.slave.as_fd()).unwrap();
    let shmc_addr = free_port();
    let mut agent = RawAgent::new(&key, 1);
    let config = dir.join("shelf.toml");
    std::fs::write(
        &config,
        format!(
            "[shelf]\nown_address = 0x20\nipmb_device = {:?}\nlisten = \"{shmc_addr}\"\nkey_file = {:?}\n\
             [[blade]]\nslot = 1\nipmb_address = 0x82\npartner = 2\nagent = \"{}\"\n\
             [[blade]]\nslot = 2\nipmb_address = 0x84\npartner = 1\n",
            slave_path.to_str().unwrap(),
            key_path.to_str().unwrap(),
            agent.socket.local_addr().unwrap(),
        ),
    )
    .unwrap();
    let _slave = pty.slave;
    let master = pty.master;
    let mut framer = StreamFramer::new();
    let mut ipmc = || answer_ipmcs(&master, &mut framer);
    let log_path = dir.join("run.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmc-plugin"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let nonce = agent
        .receive(1500, &mut ipmc)
        .iter()
        .find_map(|m| match m {
            Message::Challenge { nonce, .. } => Some(*nonce),
            _ => None,
        })
        .expect("challenge");
    agent
        .socket
        .send_to(
            &agent.frame(10, &Message::ChallengeReply { nonce }),
            shmc_addr,
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    agent
        .socket
        .send_to(&agent.frame(11, &guest_crashed()), shmc_addr)
        .unwrap();
    // The agent takes the report but never acknowledges the restart order it gets.
    let seen = agent.receive(2000, &mut ipmc);
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let orders = seen
        .iter()
        .filter(|m| matches!(m, Message::RestartGuest { .. }))
        .count();
    assert_eq!(orders, 1, "the order (its retries are replays): {seen:?}");
    assert!(
        log.lines()
            .any(|l| l.contains("ALERT order_undelivered") && l.contains("slot 1")),
        "{log}"
    );
}
