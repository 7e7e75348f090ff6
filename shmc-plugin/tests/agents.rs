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
    }
}

#[test]
fn test_hypervisor_down_self_fence_then_partner_restart_over_udp() {
    let dir = std::env::temp_dir().join(format!("shmc-agents-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = Key::new([0x5A; 32]);
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
