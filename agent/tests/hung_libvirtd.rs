//! `blade-agent run` with a libvirt daemon that accepts the connection and never answers (a
//! stopped or hung libvirtd): the agent must still come up, register with the ShMC, report
//! HypervisorDown and answer a FenceSelf (by the process table), without libvirt.

use std::io::Read;
use std::net::UdpSocket;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shelfha_proto::{Endpoint, EndpointConfig, Event, Key, Message, NodeId, SeqSeed};

struct Cleanup {
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_udp_port() -> std::net::SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap()
}

#[test]
fn test_agent_comes_up_registers_and_fences_with_a_hung_libvirtd() {
    let dir = std::env::temp_dir().join(format!("agent-hung-libvirtd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::create_dir_all(dir.join("run")).unwrap();
    let mut guard = Cleanup {
        dir: dir.clone(),
        child: None,
    };

    // A "libvirtd" that accepts every connection and never reads or answers.
    let sock = dir.join("libvirt-sock");
    let listener = UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });

    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut raw)
        .unwrap();
    let key_file = dir.join("shelf.key");
    shelfha_proto::write_key_file(&key_file, &Key::new(raw)).unwrap();
    // The protected set of the last run: a name no other process on this host uses.
    let guest = format!("hung-test-{}", std::process::id());
    std::fs::write(
        dir.join("state/protected.json"),
        format!("{{\"version\":1,\"guests\":[\"{guest}\"]}}"),
    )
    .unwrap();

    let mut shmc = Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        NodeId::SHMC,
        Key::new(raw),
        EndpointConfig {
            seq: SeqSeed::Fixed(1),
            ..EndpointConfig::default()
        },
    )
    .unwrap();
    let agent_addr = free_udp_port();
    shmc.add_peer(NodeId(1), Some(agent_addr)).unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "slot = 1\nshmc = \"{}\"\nlisten = \"{agent_addr}\"\n\
             libvirt_uri = \"qemu+unix:///system?socket={}\"\nkey_file = \"{}\"\n\
             state_dir = \"{}\"\nqemu_run_dir = \"{}\"\nheartbeat_ms = 200\nfence_timeout_ms = 500\n\
             [partner]\nslot = 2\naddress = \"{}\"\n",
            shmc.local_addr().unwrap(),
            sock.display(),
            key_file.display(),
            dir.join("state").display(),
            dir.join("run").display(),
            free_udp_port(),
        ),
    )
    .unwrap();
    guard.child = Some(
        Command::new(env!("CARGO_BIN_EXE_blade-agent"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );

    let t0 = Instant::now();
    let mut seen: Vec<Message> = Vec::new();
    let mut poll_until =
        |shmc: &mut Endpoint, what: &str, within: Duration, want: &dyn Fn(&Message) -> bool| {
            let deadline = Instant::now() + within;
            loop {
                while let Some(ev) = shmc.poll(t0.elapsed().as_millis() as u64) {
                    if let Event::Message { message, .. } = ev {
                        seen.push(message);
                    }
                }
                if seen.iter().any(want) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "no {what} within {within:?} of the agent's start; seen: {seen:?}"
                );
                shmc.wait(Some(20)).unwrap();
            }
        };
    poll_until(&mut shmc, "Hello", Duration::from_secs(10), &|m| {
        matches!(m, Message::Hello { slot: 1, .. })
    });
    poll_until(&mut shmc, "HypervisorDown", Duration::from_secs(10), &|m| {
        matches!(m, Message::HypervisorDown)
    });
    shmc.send(
        NodeId(1),
        &Message::FenceSelf { incident: 9 },
        t0.elapsed().as_millis() as u64,
    )
    .unwrap();
    poll_until(
        &mut shmc,
        "FenceSelfConfirmed",
        Duration::from_secs(10),
        &|m| matches!(m, Message::FenceSelfConfirmed { incident: 9, .. }),
    );
    let answer = seen
        .iter()
        .find(|m| matches!(m, Message::FenceSelfConfirmed { .. }))
        .cloned();
    println!("answered without libvirt: {answer:?}");
    assert!(
        guard
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None))),
        "the agent exited"
    );
}
