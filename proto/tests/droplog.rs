//! Drop logging is rate-limited: at most one line per reason per second, with counts.

mod common;

use std::net::UdpSocket;
use std::sync::Mutex;

use shelfha_proto::*;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) && r.args().to_string().contains("dropped") {
            LINES.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

static LOGGER: Capture = Capture;

fn lines() -> Vec<String> {
    std::mem::take(&mut *LINES.lock().unwrap())
}

#[test]
fn test_drops_logged_once_per_reason_per_second() {
    log::set_logger(&LOGGER).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let cfg = EndpointConfig {
        seq: SeqSeed::Fixed(1),
        ..EndpointConfig::default()
    };
    let mut ep = Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        NodeId(3),
        common::golden_key(),
        cfg,
    )
    .unwrap();
    ep.add_peer(NodeId::SHMC, None).unwrap();
    let to = ep.local_addr().unwrap();
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send_burst = |n: usize| {
        for _ in 0..n {
            attacker.send_to(&[1u8; 60], to).unwrap(); // version 1, dest 1: NotForUs
            attacker.send_to(&[0u8; 5], to).unwrap(); // Truncated
        }
    };
    let wait_drops = |ep: &mut Endpoint, now: u64, total: u64| {
        while ep.drops().total() < total {
            assert_eq!(ep.poll(now), None);
            if ep.drops().total() < total {
                assert!(ep.wait(Some(5_000)).unwrap());
            }
        }
    };
    send_burst(50);
    wait_drops(&mut ep, 0, 100);
    let first = lines();
    assert_eq!(first.len(), 2, "one line per reason: {first:?}");
    // Within the same second: nothing more, however many drops.
    send_burst(50);
    wait_drops(&mut ep, 999, 200);
    assert!(lines().is_empty());
    // A second later the suppressed counts are reported, once per reason.
    assert_eq!(ep.poll(1_000), None);
    let summary = lines();
    assert_eq!(summary.len(), 2, "{summary:?}");
    for l in &summary {
        assert!(l.contains("dropped 99 more datagrams"), "{l}");
        assert!(l.contains("100 in all"), "{l}");
    }
    assert_eq!(ep.poll(1_500), None);
    assert!(lines().is_empty());
}
