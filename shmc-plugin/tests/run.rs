//! `shmc-plugin run` on a pseudo-terminal standing in for the IPMB: this test
//! plays two IPMCs on the master side, byte stream framing and all.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use shmc_plugin::wire::cmd;
use shmc_plugin::wire::framer::StreamFramer;
use shmc_plugin::wire::ipmb::{Message, Repr};

fn send(master: &OwnedFd, repr: &Repr<'_>) {
    let m = Message::from_repr(repr).unwrap();
    nix::unistd::write(master.as_fd(), m.as_bytes()).unwrap();
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
    send(
        &master,
        &Repr {
            rs_sa: 0x20,
            net_fn: cmd::NETFN_SENSOR_EVENT,
            rs_lun: 0,
            rq_sa: 0x82,
            rq_seq: 5,
            rq_lun: 0,
            cmd: cmd::CMD_PLATFORM_EVENT,
            data: &event,
        },
    );

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
