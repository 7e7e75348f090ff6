//! The UDP endpoint over real loopback sockets: acks, retries, duplicates, give-ups, drops.
//!
//! Time is the `now_ms` argument, advanced by the test; the sockets are real. Waits for
//! datagrams use generous timeouts that only matter when a test fails.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{golden_key, largest};
use shelfha_proto::*;

const AGENT: NodeId = NodeId(3);
const LOCAL: &str = "127.0.0.1:0";
const PATIENCE_MS: u64 = 5_000;

fn config() -> EndpointConfig {
    EndpointConfig {
        seq: SeqSeed::Fixed(1),
        ..EndpointConfig::default()
    }
}

fn endpoint(me: NodeId) -> Endpoint {
    Endpoint::bind(LOCAL.parse().unwrap(), me, golden_key(), config()).unwrap()
}

/// A ShMC and an agent endpoint that know each other's addresses, synchronised.
fn pair() -> (Endpoint, Endpoint) {
    let mut shmc = endpoint(NodeId::SHMC);
    let mut agent = endpoint(AGENT);
    shmc.add_peer(AGENT, Some(agent.local_addr().unwrap()))
        .unwrap();
    agent
        .add_peer(NodeId::SHMC, Some(shmc.local_addr().unwrap()))
        .unwrap();
    sync(&mut shmc, &mut agent);
    (shmc, agent)
}

/// Runs the challenge exchange between two fresh endpoints at time 0 (each challenges the
/// other); no application event may come out of it.
fn sync(a: &mut Endpoint, b: &mut Endpoint) {
    let (ida, idb) = (a.me(), b.me());
    assert!(
        !a.is_synced(idb) && !b.is_synced(ida),
        "fresh peers start unsynced"
    );
    for _ in 0..500 {
        for ep in [&mut *a, &mut *b] {
            let ev = ep.poll(0);
            assert_eq!(ev, None, "handshake produced an event");
        }
        if a.is_synced(idb) && b.is_synced(ida) {
            return;
        }
        a.wait(Some(5)).unwrap();
        b.wait(Some(5)).unwrap();
    }
    panic!("endpoints did not synchronise");
}

/// Polls both endpoints from `start` on (5 ms per round) until `done` holds for the events
/// collected so far.
fn pump(
    a: &mut Endpoint,
    b: &mut Endpoint,
    start: u64,
    done: impl Fn(&[Event], &[Event]) -> bool,
) -> (Vec<Event>, Vec<Event>) {
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    for round in 0..1000u64 {
        let now = start + round * 5;
        while let Some(ev) = a.poll(now) {
            ea.push(ev);
        }
        while let Some(ev) = b.poll(now) {
            eb.push(ev);
        }
        if done(&ea, &eb) {
            return (ea, eb);
        }
        a.wait(Some(5)).unwrap();
        b.wait(Some(5)).unwrap();
    }
    panic!("condition not reached; events {ea:?} / {eb:?}");
}

/// The next event at `now`, waiting for datagrams if needed; `None` after `PATIENCE_MS`.
fn next_event(ep: &mut Endpoint, now: u64) -> Option<Event> {
    loop {
        if let Some(ev) = ep.poll(now) {
            return Some(ev);
        }
        if !ep.wait(Some(PATIENCE_MS)).unwrap() {
            return None;
        }
    }
}

/// Polls at `now` until `done(ep)` holds, collecting events.
fn poll_until(ep: &mut Endpoint, now: u64, done: impl Fn(&Endpoint) -> bool) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        while let Some(ev) = ep.poll(now) {
            events.push(ev);
        }
        if done(ep) {
            return events;
        }
        assert!(ep.wait(Some(PATIENCE_MS)).unwrap(), "nothing arrived");
    }
}

fn fence(incident: u32) -> Message {
    Message::FenceSelf { incident }
}

#[test]
fn test_command_is_delivered_and_acked() {
    let (mut shmc, mut agent) = pair();
    let seq = shmc.send(AGENT, &fence(1), 0).unwrap();
    assert_eq!(shmc.pending(), 1);
    assert_eq!(shmc.next_timeout_ms(0), Some(100));
    match next_event(&mut agent, 0) {
        Some(Event::Message {
            from,
            seq: s,
            message,
        }) => {
            assert_eq!((from, s, message), (NodeId::SHMC, seq, fence(1)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        next_event(&mut shmc, 10),
        Some(Event::Acked {
            to: AGENT,
            seq,
            kind: Kind::FenceSelf,
            status: AckStatus::Accepted
        })
    );
    assert_eq!(shmc.pending(), 0);
    assert_eq!(shmc.next_timeout_ms(10), None);
    // Nothing more happens later: no retry, no give-up.
    assert_eq!(shmc.poll(100_000), None);
    assert_eq!(shmc.drops().total() + agent.drops().total(), 0);
}

#[test]
fn test_retries_to_a_slow_receiver_are_delivered_once() {
    let (mut shmc, mut agent) = pair();
    let seq = shmc.send(AGENT, &fence(2), 0).unwrap();
    // The agent does not poll: three retries pile up in its socket.
    for now in [100, 200, 300] {
        assert_eq!(shmc.poll(now), None);
    }
    let events = poll_until(&mut agent, 300, |a| {
        a.drops().get(DropReason::Replayed) == 3
    });
    assert_eq!(
        events,
        vec![Event::Message {
            from: NodeId::SHMC,
            seq,
            message: fence(2)
        }],
        "delivered exactly once"
    );
    // Four acks come back: the first completes the command, the rest match nothing.
    let events = poll_until(&mut shmc, 300, |s| {
        s.drops().get(DropReason::UnmatchedAck) == 3
    });
    assert_eq!(
        events,
        vec![Event::Acked {
            to: AGENT,
            seq,
            kind: Kind::FenceSelf,
            status: AckStatus::Accepted
        }]
    );
    assert_eq!(shmc.poll(10_000), None, "no give-up after the ack");
    assert_eq!(agent.drops().total(), 3);
}

/// Forwards datagrams between two endpoints, dropping the first `drop_first` from `a`.
struct LossyLink {
    socket: UdpSocket,
    a: SocketAddr,
    b: SocketAddr,
    drop_first: u32,
    dropped: u32,
    forwarded_from_a: u32,
}

impl LossyLink {
    fn new(a: SocketAddr, b: SocketAddr, drop_first: u32) -> LossyLink {
        let socket = UdpSocket::bind(LOCAL).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(PATIENCE_MS)))
            .unwrap();
        LossyLink {
            socket,
            a,
            b,
            drop_first,
            dropped: 0,
            forwarded_from_a: 0,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Runs the challenge exchange of two fresh endpoints through the link, losing nothing.
    fn sync(&mut self, a: &mut Endpoint, b: &mut Endpoint) {
        let saved = self.drop_first;
        self.drop_first = 0;
        self.socket
            .set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let mut buf = [0u8; 2048];
        for _ in 0..500 {
            assert_eq!(a.poll(0), None);
            assert_eq!(b.poll(0), None);
            if a.is_synced(b.me()) && b.is_synced(a.me()) {
                break;
            }
            while let Ok((n, src)) = self.socket.recv_from(&mut buf) {
                let to = if src == self.a { self.b } else { self.a };
                self.socket.send_to(&buf[..n], to).unwrap();
            }
        }
        assert!(
            a.is_synced(b.me()) && b.is_synced(a.me()),
            "not synchronised"
        );
        self.socket
            .set_read_timeout(Some(Duration::from_millis(PATIENCE_MS)))
            .unwrap();
        self.drop_first = saved;
    }

    /// Handles exactly one datagram (blocking until it arrives).
    fn relay_one(&mut self) {
        let mut buf = [0u8; 2048];
        let (n, src) = self.socket.recv_from(&mut buf).expect("datagram to relay");
        if src == self.a {
            if self.dropped < self.drop_first {
                self.dropped += 1;
                return;
            }
            self.forwarded_from_a += 1;
            self.socket.send_to(&buf[..n], self.b).unwrap();
        } else {
            self.socket.send_to(&buf[..n], self.a).unwrap();
        }
    }
}

#[test]
fn test_lost_command_is_retried_and_acked_once() {
    let mut shmc = endpoint(NodeId::SHMC);
    let mut agent = endpoint(AGENT);
    let mut link = LossyLink::new(shmc.local_addr().unwrap(), agent.local_addr().unwrap(), 3);
    shmc.add_peer(AGENT, Some(link.addr())).unwrap();
    agent.add_peer(NodeId::SHMC, Some(link.addr())).unwrap();
    link.sync(&mut shmc, &mut agent);

    let seq = shmc.send(AGENT, &fence(3), 0).unwrap();
    link.relay_one(); // first transmission: lost
    let mut now = 0;
    while link.dropped < 3 {
        now += 100;
        assert_eq!(shmc.poll(now), None);
        link.relay_one();
    }
    assert_eq!(link.forwarded_from_a, 0);
    // Fourth transmission gets through.
    now += 100;
    assert_eq!(shmc.poll(now), None);
    link.relay_one();
    assert!(matches!(
        next_event(&mut agent, now),
        Some(Event::Message { seq: s, .. }) if s == seq
    ));
    link.relay_one(); // the ack
    assert_eq!(
        next_event(&mut shmc, now),
        Some(Event::Acked {
            to: AGENT,
            seq,
            kind: Kind::FenceSelf,
            status: AckStatus::Accepted
        })
    );
    assert_eq!(link.forwarded_from_a, 1);
    assert_eq!(shmc.pending(), 0);
    assert_eq!(agent.poll(now + 5_000), None, "delivered only once");
}

#[test]
fn test_give_up_after_max_tries() {
    let silent = UdpSocket::bind(LOCAL).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_millis(PATIENCE_MS)))
        .unwrap();
    let mut shmc = endpoint(NodeId::SHMC);
    let slot5 = NodeId(5);
    shmc.add_peer(slot5, Some(silent.local_addr().unwrap()))
        .unwrap();
    let order = Message::RestartGuest {
        incident: 4,
        name: guest_name("vm1").unwrap(),
    };
    let seq = shmc.send(slot5, &order, 0).unwrap();
    let mut gave_up = Vec::new();
    for now in (100..=3000).step_by(100) {
        while let Some(ev) = shmc.poll(now) {
            gave_up.push((now, ev));
        }
    }
    assert_eq!(
        gave_up,
        vec![(
            1000,
            Event::GaveUp {
                to: slot5,
                seq,
                kind: Kind::RestartGuest
            }
        )]
    );
    // Exactly ten identical transmissions reached the silent peer (besides the challenges
    // an endpoint sends a peer that has not proven itself yet).
    let mut buf = [0u8; 2048];
    let mut next = |silent: &UdpSocket| loop {
        let (n, _) = silent.recv_from(&mut buf).unwrap();
        if buf[HEADER_LEN] != Kind::Challenge as u8 {
            return buf[..n].to_vec();
        }
    };
    let first = next(&silent);
    for _ in 1..10 {
        assert_eq!(next(&silent), first);
    }
    silent.set_nonblocking(true).unwrap();
    while let Ok((_, _)) = silent.recv_from(&mut buf) {
        assert_eq!(
            buf[HEADER_LEN],
            Kind::Challenge as u8,
            "an eleventh transmission"
        );
    }
    assert_eq!(shmc.pending(), 0);
}

#[test]
fn test_configurable_retries_and_queue_limit() {
    let silent = UdpSocket::bind(LOCAL).unwrap();
    let cfg = EndpointConfig {
        retry_interval_ms: 30,
        max_tries: 3,
        max_pending: 2,
        seq: SeqSeed::Fixed(500),
        manual_ack: false,
    };
    let mut ep = Endpoint::bind(LOCAL.parse().unwrap(), NodeId::SHMC, golden_key(), cfg).unwrap();
    ep.add_peer(AGENT, Some(silent.local_addr().unwrap()))
        .unwrap();
    assert_eq!(ep.send(AGENT, &fence(1), 0).unwrap(), 500);
    assert_eq!(ep.send(AGENT, &fence(2), 10).unwrap(), 501);
    assert!(matches!(
        ep.send(AGENT, &fence(3), 10),
        Err(SendError::QueueFull)
    ));
    // Not a command: not queued, so not limited.
    let hb = largest().remove(Kind::Heartbeat as usize);
    assert_eq!(ep.send(AGENT, &hb, 10).unwrap(), 502);
    assert!(matches!(
        ep.send(NodeId(9), &fence(1), 10),
        Err(SendError::UnknownPeer(NodeId(9)))
    ));
    let mut events = Vec::new();
    for now in (0..=200).step_by(10) {
        while let Some(ev) = ep.poll(now) {
            events.push((now, ev));
        }
    }
    let expect = |seq, now| {
        (
            now,
            Event::GaveUp {
                to: AGENT,
                seq,
                kind: Kind::FenceSelf,
            },
        )
    };
    assert_eq!(events, vec![expect(500, 90), expect(501, 100)]);
    assert!(ep.send(AGENT, &fence(3), 200).is_ok(), "room again");
}

#[test]
fn test_heartbeat_is_neither_acked_nor_retried() {
    let (mut shmc, mut agent) = pair();
    let hb = common::samples().remove(Kind::Heartbeat as usize);
    let seq = agent.send(NodeId::SHMC, &hb, 0).unwrap();
    assert_eq!(agent.pending(), 0);
    assert_eq!(
        next_event(&mut shmc, 0),
        Some(Event::Message {
            from: AGENT,
            seq,
            message: hb
        })
    );
    // No ack came back to the agent.
    assert!(!agent.wait(Some(200)).unwrap());
    assert_eq!(agent.poll(1_000), None);
}

#[test]
fn test_address_learnt_from_the_answer_to_a_challenge() {
    let mut shmc = endpoint(NodeId::SHMC);
    let mut agent = endpoint(AGENT);
    shmc.add_peer(AGENT, None).unwrap();
    agent
        .add_peer(NodeId::SHMC, Some(shmc.local_addr().unwrap()))
        .unwrap();
    assert!(matches!(
        shmc.send(AGENT, &fence(1), 0),
        Err(SendError::NoAddress(AGENT))
    ));
    let hello = common::samples().remove(Kind::Hello as usize);
    let seq = agent.send(NodeId::SHMC, &hello, 0).unwrap();
    // The ShMC cannot tell the Hello from a replay: it challenges its source; the agent
    // answers and re-sends the Hello under a new sequence, which is then delivered.
    let (to_shmc, to_agent) = pump(&mut shmc, &mut agent, 0, |s, a| {
        !s.is_empty() && !a.is_empty()
    });
    assert!(matches!(&to_shmc[..], [Event::Message { message, .. }] if *message == hello));
    assert_eq!(shmc.peer_addr(AGENT), Some(agent.local_addr().unwrap()));
    assert!(
        matches!(&to_agent[..], [Event::Acked { seq: s, status: AckStatus::Accepted, .. }] if *s == seq),
        "the ack quotes the handle `send` returned: {to_agent:?}"
    );
    assert_eq!(shmc.drops().get(DropReason::Unsynced), 1);
    shmc.send(AGENT, &fence(1), 0).unwrap();
    assert!(matches!(
        next_event(&mut agent, 0),
        Some(Event::Message { .. })
    ));
}

#[test]
fn test_largest_definition_chunk_crosses_udp() {
    let (mut a, mut b) = (endpoint(AGENT), endpoint(NodeId(4)));
    a.add_peer(NodeId(4), Some(b.local_addr().unwrap()))
        .unwrap();
    b.add_peer(AGENT, Some(a.local_addr().unwrap())).unwrap();
    sync(&mut a, &mut b);
    let push = largest().remove(Kind::DefinitionPush as usize);
    a.send(NodeId(4), &push, 0).unwrap();
    match next_event(&mut b, 0) {
        Some(Event::Message { message, .. }) => assert_eq!(message, push),
        other => panic!("{other:?}"),
    }
    assert!(matches!(next_event(&mut a, 0), Some(Event::Acked { .. })));
}

/// An attacker's socket and a ShMC-side verifier to read what the agent sends back.
struct Outsider {
    socket: UdpSocket,
    verifier: Verifier,
}

impl Outsider {
    fn new() -> Outsider {
        let socket = UdpSocket::bind(LOCAL).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(PATIENCE_MS)))
            .unwrap();
        let mut verifier = Verifier::new(golden_key(), NodeId::SHMC);
        verifier.add_peer(AGENT).unwrap();
        Outsider { socket, verifier }
    }

    fn ack(&mut self) -> Message {
        let mut buf = [0u8; 2048];
        let (n, _) = self.socket.recv_from(&mut buf).unwrap();
        self.verifier.open(&buf[..n]).unwrap().message
    }

    /// Reads the agent's challenge: (nonce, floor).
    fn challenge(&mut self) -> (u64, u64) {
        match self.ack() {
            Message::Challenge { nonce, floor } => (nonce, floor),
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    /// Reads the agent's challenge and answers it (as the genuine ShMC would) with sequence
    /// `seq`; returns the challenge's floor.
    fn answer_challenge(&mut self, to: SocketAddr, seq: u64) -> u64 {
        let (nonce, floor) = self.challenge();
        let reply = sealed(&golden_key(), seq, &Message::ChallengeReply { nonce });
        self.socket.send_to(&reply, to).unwrap();
        floor
    }

    fn nothing_received(&self) -> bool {
        self.socket.set_nonblocking(true).unwrap();
        let r = self.socket.recv_from(&mut [0u8; 16]).is_err();
        self.socket.set_nonblocking(false).unwrap();
        r
    }
}

/// A frame sealed with `key` as `sender` would send it to `dest`.
fn frame(key: &Key, sender: NodeId, dest: NodeId, seq: u64, msg: &Message) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME];
    let h = Header { sender, dest, seq };
    let n = seal(key, &h, msg, &mut buf).unwrap();
    buf[..n].to_vec()
}

/// A frame as the ShMC would send it to agent AGENT (sealed with `key`).
fn sealed(key: &Key, seq: u64, msg: &Message) -> Vec<u8> {
    frame(key, NodeId::SHMC, AGENT, seq, msg)
}

/// An agent endpoint whose configured ShMC is an [`Outsider`]; and the agent's address.
fn agent_and_outsider(cfg: EndpointConfig) -> (Endpoint, Outsider, SocketAddr) {
    let mut agent = Endpoint::bind(LOCAL.parse().unwrap(), AGENT, golden_key(), cfg).unwrap();
    let out = Outsider::new();
    agent
        .add_peer(NodeId::SHMC, Some(out.socket.local_addr().unwrap()))
        .unwrap();
    let to = agent.local_addr().unwrap();
    (agent, out, to)
}

#[test]
fn test_bad_datagrams_have_no_effect_and_endpoint_keeps_working() {
    let (mut agent, mut out, to) = agent_and_outsider(config());
    // A started endpoint challenges its configured peers at once.
    assert_eq!(agent.poll(0), None);
    let (nonce, floor) = out.challenge();
    assert_eq!(floor, 0, "nothing seen from the ShMC yet");
    let forged = sealed(&Key::new([9; 32]), 10, &fence(66));
    let mut tampered = sealed(&golden_key(), 11, &fence(66));
    tampered[HEADER_LEN + 1] ^= 0x40;
    let mut other_version = sealed(&golden_key(), 12, &fence(66));
    other_version[0] = 9;
    let bad: Vec<Vec<u8>> = vec![
        forged,
        tampered,
        other_version,
        vec![0xff; 1500],
        b"hello".to_vec(),
        vec![PROTOCOL_VERSION, 0, 3, 1, 0, 0, 0, 0, 0, 0, 0, 6, 1],
    ];
    for d in &bad {
        out.socket.send_to(d, to).unwrap();
    }
    let events = poll_until(&mut agent, 0, |a| a.drops().total() == 6);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(agent.drops().get(DropReason::BadMac), 2);
    assert_eq!(agent.drops().get(DropReason::BadVersion), 1);
    assert_eq!(agent.drops().get(DropReason::TooLarge), 1);
    assert_eq!(agent.drops().get(DropReason::Truncated), 2);
    assert!(
        out.nothing_received(),
        "no answer to unauthenticated datagrams"
    );

    // The agent has not synchronised with the ShMC yet: a genuine command is dropped; the
    // ShMC's reply to the challenge (sequence 19) opens the session.
    let early = sealed(&golden_key(), 18, &fence(7));
    out.socket.send_to(&early, to).unwrap();
    assert!(poll_until(&mut agent, 0, |a| a.drops().get(DropReason::Unsynced) == 1).is_empty());
    let reply = sealed(&golden_key(), 19, &Message::ChallengeReply { nonce });
    out.socket.send_to(&reply, to).unwrap();
    poll_until(&mut agent, 0, |a| a.is_synced(NodeId::SHMC));
    // Sent before the reply: refused for good (inside the window: re-acked, not delivered).
    out.socket.send_to(&early, to).unwrap();
    assert!(poll_until(&mut agent, 0, |a| a.drops().get(DropReason::Replayed) == 1).is_empty());
    assert!(matches!(
        out.ack(),
        Message::Ack {
            acked: 18,
            status: AckStatus::Duplicate
        }
    ));

    // A genuine command is delivered and acked.
    let genuine = sealed(&golden_key(), 20, &fence(7));
    out.socket.send_to(&genuine, to).unwrap();
    assert_eq!(
        next_event(&mut agent, 0),
        Some(Event::Message {
            from: NodeId::SHMC,
            seq: 20,
            message: fence(7)
        })
    );
    assert!(matches!(
        out.ack(),
        Message::Ack {
            acked: 20,
            status: AckStatus::Accepted
        }
    ));
    // Its replay is re-acked as a duplicate and not delivered.
    out.socket.send_to(&genuine, to).unwrap();
    assert!(poll_until(&mut agent, 0, |a| a.drops().get(DropReason::Replayed) == 2).is_empty());
    assert!(matches!(
        out.ack(),
        Message::Ack {
            acked: 20,
            status: AckStatus::Duplicate
        }
    ));
    // An authentic command of a kind this version does not know is rejected, not retried forever.
    let mut newer = vec![PROTOCOL_VERSION, 0, 3];
    newer.extend_from_slice(&21u64.to_le_bytes());
    newer.push(Kind::COUNT + 5);
    let tag = golden_key().tag(&newer);
    newer.extend_from_slice(&tag);
    out.socket.send_to(&newer, to).unwrap();
    assert!(
        poll_until(&mut agent, 0, |a| a.drops().get(DropReason::UnknownKind)
            == 1)
        .is_empty()
    );
    assert!(matches!(
        out.ack(),
        Message::Ack {
            acked: 21,
            status: AckStatus::Rejected
        }
    ));
    // Seventy newer commands push seq 20 out of the replay window...
    for seq in 100..170 {
        out.socket
            .send_to(&sealed(&golden_key(), seq, &fence(seq as u32)), to)
            .unwrap();
    }
    let mut delivered = 0;
    while delivered < 70 {
        match next_event(&mut agent, 0) {
            Some(Event::Message {
                message: Message::FenceSelf { .. },
                ..
            }) => delivered += 1,
            other => panic!("{other:?}"),
        }
    }
    for _ in 0..70 {
        assert!(matches!(
            out.ack(),
            Message::Ack {
                status: AckStatus::Accepted,
                ..
            }
        ));
    }
    // ... so its replay is now stale: dropped, and answered with a challenge carrying the
    // floor (a sender whose counter went back learns where to resume).
    out.socket.send_to(&genuine, to).unwrap();
    assert!(poll_until(&mut agent, 1_000, |a| a.drops().get(DropReason::Stale) == 1).is_empty());
    assert_eq!(out.answer_challenge(to, 170), 169);
    assert!(out.nothing_received());
}

/// A frame as agent AGENT would send it to the ShMC.
fn from_agent(seq: u64, msg: &Message) -> Vec<u8> {
    frame(&golden_key(), AGENT, NodeId::SHMC, seq, msg)
}

fn crashed() -> Message {
    Message::GuestCrashed {
        name: guest_name("vm1").unwrap(),
    }
}

#[test]
fn test_restarted_receiver_never_accepts_frames_sent_before_its_start() {
    // The genuine agent's socket, configured at the ShMC; a replayer elsewhere.
    let genuine = UdpSocket::bind(LOCAL).unwrap();
    genuine
        .set_read_timeout(Some(Duration::from_millis(PATIENCE_MS)))
        .unwrap();
    let replayer = UdpSocket::bind(LOCAL).unwrap();
    let mut agent_side = Verifier::new(golden_key(), AGENT);
    agent_side.add_peer(NodeId::SHMC).unwrap();
    // Frames the agent sent to the ShMC's previous run, captured on the wire.
    let captured: Vec<Vec<u8>> = (1000..1004).map(|s| from_agent(s, &crashed())).collect();

    // The ShMC restarts: a new endpoint, every window forgotten.
    let mut shmc = endpoint(NodeId::SHMC);
    shmc.add_peer(AGENT, Some(genuine.local_addr().unwrap()))
        .unwrap();
    let to = shmc.local_addr().unwrap();
    for c in &captured {
        replayer.send_to(c, to).unwrap();
    }
    let events = poll_until(&mut shmc, 0, |s| s.drops().get(DropReason::Unsynced) == 4);
    assert!(events.is_empty(), "a replay was delivered: {events:?}");
    assert_eq!(shmc.peer_addr(AGENT), Some(genuine.local_addr().unwrap()));
    // The challenge went to the configured address, not to the replayer.
    let mut buf = [0u8; 2048];
    let (n, _) = genuine.recv_from(&mut buf).unwrap();
    let nonce = match agent_side.open(&buf[..n]).unwrap().message {
        Message::Challenge { nonce, floor: 0 } => nonce,
        other => panic!("{other:?}"),
    };
    replayer.set_nonblocking(true).unwrap();
    assert!(
        replayer.recv_from(&mut buf).is_err(),
        "replayer got an answer"
    );
    // The genuine agent answers with its current sequence.
    genuine
        .send_to(&from_agent(5000, &Message::ChallengeReply { nonce }), to)
        .unwrap();
    poll_until(&mut shmc, 0, |s| s.is_synced(AGENT));
    // The captured frames stay refused; the agent's next frame is accepted.
    for c in &captured {
        replayer.send_to(c, to).unwrap();
    }
    let events = poll_until(&mut shmc, 0, |s| s.drops().get(DropReason::Stale) == 4);
    assert!(events.is_empty(), "a replay was delivered: {events:?}");
    assert_eq!(shmc.peer_addr(AGENT), Some(genuine.local_addr().unwrap()));
    // A replayed reply (its nonce is spent) does not reopen anything.
    genuine
        .send_to(&from_agent(4000, &Message::ChallengeReply { nonce }), to)
        .unwrap();
    genuine.send_to(&from_agent(5001, &crashed()), to).unwrap();
    assert!(matches!(
        next_event(&mut shmc, 0),
        Some(Event::Message { seq: 5001, .. })
    ));
}

#[test]
fn test_sender_whose_counter_went_back_resynchronises_instead_of_being_ignored() {
    let (shmc, mut agent) = pair();
    let shmc_addr = shmc.local_addr().unwrap();
    // The ShMC restarts with its clock far behind (no reservation file): its new counter
    // lies below what the agent has already seen from it.
    let seen = shmc.next_seq() + 1_000_000;
    agent.set_floor(NodeId::SHMC, seen);
    drop(shmc);
    let cfg = EndpointConfig {
        seq: SeqSeed::Fixed(10),
        ..EndpointConfig::default()
    };
    let mut shmc = Endpoint::bind(shmc_addr, NodeId::SHMC, golden_key(), cfg).unwrap();
    shmc.add_peer(AGENT, Some(agent.local_addr().unwrap()))
        .unwrap();
    let handle = shmc.send(AGENT, &fence(9), 0).unwrap();
    assert!(handle < seen);
    let (to_shmc, to_agent) = pump(&mut shmc, &mut agent, 0, |s, a| {
        s.iter().any(|e| matches!(e, Event::Acked { .. })) && !a.is_empty()
    });
    assert!(
        matches!(&to_agent[..], [Event::Message { message, seq, .. }] if *message == fence(9) && *seq > seen),
        "{to_agent:?}"
    );
    assert!(
        to_shmc.contains(&Event::Acked {
            to: AGENT,
            seq: handle,
            kind: Kind::FenceSelf,
            status: AckStatus::Accepted
        }),
        "{to_shmc:?}"
    );
    assert!(
        shmc.next_seq() > seen,
        "the counter stays above the agent's floor"
    );
    assert!(agent.drops().get(DropReason::Stale) >= 1);
}

#[test]
fn test_manual_ack_journal_then_acknowledge() {
    let mut shmc = endpoint(NodeId::SHMC);
    let cfg = EndpointConfig {
        manual_ack: true,
        ..config()
    };
    let mut agent = Endpoint::bind(LOCAL.parse().unwrap(), AGENT, golden_key(), cfg).unwrap();
    shmc.add_peer(AGENT, Some(agent.local_addr().unwrap()))
        .unwrap();
    agent
        .add_peer(NodeId::SHMC, Some(shmc.local_addr().unwrap()))
        .unwrap();
    sync(&mut shmc, &mut agent);
    let handle = shmc.send(AGENT, &fence(4), 0).unwrap();
    let seq = match next_event(&mut agent, 0) {
        Some(Event::Message { seq, message, .. }) if message == fence(4) => seq,
        other => panic!("{other:?}"),
    };
    // Not durable yet: no ack, and a retry is not acked as a duplicate either.
    assert_eq!(shmc.poll(100), None);
    assert!(
        poll_until(&mut agent, 100, |a| a.drops().get(DropReason::Replayed)
            == 1)
        .is_empty()
    );
    assert!(
        !shmc.wait(Some(100)).unwrap(),
        "acked before it was durable"
    );
    // The journal write failed: handed back, so the next retry is delivered again.
    assert!(agent.refuse(NodeId::SHMC, seq));
    assert_eq!(shmc.poll(200), None);
    assert!(matches!(
        next_event(&mut agent, 200),
        Some(Event::Message { seq: s, .. }) if s == seq
    ));
    // Durable now: acknowledged.
    assert!(agent.ack(NodeId::SHMC, seq));
    assert!(!agent.ack(NodeId::SHMC, seq), "acked once");
    assert_eq!(
        next_event(&mut shmc, 200),
        Some(Event::Acked {
            to: AGENT,
            seq: handle,
            kind: Kind::FenceSelf,
            status: AckStatus::Accepted
        })
    );
}

#[test]
fn test_waker_wakes_a_waiting_thread() {
    let mut agent = endpoint(AGENT);
    let waker = agent.waker().unwrap();
    let t = std::thread::spawn(move || waker.wake());
    assert!(agent.wait(Some(PATIENCE_MS)).unwrap(), "woken");
    t.join().unwrap();
    assert_eq!(agent.poll(0), None);
    assert_eq!(agent.wakeups(), 1);
    assert_eq!(agent.drops().total(), 0);
}

#[test]
fn test_replayed_challenges_cannot_keep_a_command_alive() {
    // The agent is gone; an attacker replays two challenges the agent once sent.
    let silent = UdpSocket::bind(LOCAL).unwrap();
    let mut shmc = endpoint(NodeId::SHMC);
    shmc.add_peer(AGENT, Some(silent.local_addr().unwrap()))
        .unwrap();
    let to = shmc.local_addr().unwrap();
    let replayer = UdpSocket::bind(LOCAL).unwrap();
    let captured = [
        from_agent(50, &Message::Challenge { nonce: 1, floor: 0 }),
        from_agent(60, &Message::Challenge { nonce: 2, floor: 0 }),
    ];
    let handle = shmc.send(AGENT, &fence(5), 0).unwrap();
    let mut gave_up = None;
    for step in 0..60u64 {
        let now = step * 50;
        replayer
            .send_to(&captured[(step % 2) as usize], to)
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
        while let Some(ev) = shmc.poll(now) {
            if ev
                == (Event::GaveUp {
                    to: AGENT,
                    seq: handle,
                    kind: Kind::FenceSelf,
                })
            {
                gave_up = gave_up.or(Some(now));
            }
        }
    }
    let at = gave_up.expect("the command was never given up");
    assert!(at <= 1_500, "given up only at {at} ms");
    assert_eq!(shmc.pending(), 0);
}

#[test]
fn test_a_peer_that_cannot_get_above_the_floor_is_challenged_at_a_bounded_rate() {
    // The agent has seen a sequence from the ShMC that the ShMC can never reach again.
    let (mut agent, mut out, to) = agent_and_outsider(config());
    assert!(agent.set_floor(NodeId::SHMC, MAX_FLOOR - 1));
    assert!(
        !agent.set_floor(NodeId::SHMC, MAX_FLOOR),
        "a floor no sender can get above: refused"
    );
    out.socket
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    // For one second the ShMC's frames arrive every 5 ms, all below the floor, and it
    // answers every challenge at once with its (low) counter.
    let mut challenges = 0;
    let mut seq = 1_000;
    let mut buf = [0u8; 2048];
    for step in 0..200u64 {
        seq += 1;
        out.socket
            .send_to(&sealed(&golden_key(), seq, &fence(1)), to)
            .unwrap();
        let _ = agent.poll(step * 5);
        while let Ok(n) = out.socket.recv(&mut buf) {
            if let Ok(Received {
                message: Message::Challenge { nonce, .. },
                ..
            }) = out.verifier.open(&buf[..n])
            {
                challenges += 1;
                seq += 1;
                let reply = sealed(&golden_key(), seq, &Message::ChallengeReply { nonce });
                out.socket.send_to(&reply, to).unwrap();
            }
        }
        let _ = agent.poll(step * 5);
    }
    assert!(
        challenges >= 5,
        "the peer is still challenged: {challenges}"
    );
    assert!(
        challenges <= 12,
        "challenge storm: {challenges} in one second"
    );
    assert!(!agent.is_synced(NodeId::SHMC) || agent.drops().get(DropReason::Stale) > 100);
}

#[test]
fn test_a_refused_command_is_never_delivered_after_its_retries() {
    // The agent cannot make the ShMC's command durable (journal write fails) while the ShMC
    // retries; afterwards a late copy (a delayed duplicate, a replay) must not be carried out,
    // nor be taken for delivered.
    let cfg = EndpointConfig {
        manual_ack: true,
        ..config()
    };
    let (mut agent, mut out, to) = agent_and_outsider(cfg);
    assert_eq!(agent.poll(0), None);
    out.answer_challenge(to, 10);
    poll_until(&mut agent, 0, |a| a.is_synced(NodeId::SHMC));
    let command = sealed(&golden_key(), 20, &fence(3));
    // First transmission and one retry: delivered, refused.
    for now in [0, 100] {
        out.socket.send_to(&command, to).unwrap();
        match next_event(&mut agent, now) {
            Some(Event::Message { seq: 20, .. }) => assert!(agent.refuse(NodeId::SHMC, 20)),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        out.nothing_received(),
        "a refused command is not acknowledged"
    );
    // A retry that waited in the socket while the receiver was stalled (three intervals after
    // the last refusal) is still delivered again.
    out.socket.send_to(&command, to).unwrap();
    match next_event(&mut agent, 400) {
        Some(Event::Message { seq: 20, .. }) => assert!(agent.refuse(NodeId::SHMC, 20)),
        other => panic!("a stalled receiver took a retry for a late copy: {other:?}"),
    }
    assert!(out.nothing_received(), "refused, not acknowledged");
    // The sender's whole retry schedule (max_tries x retry_interval) after the last refusal it
    // has given up: a late copy is dropped and answered Rejected (not Duplicate: it never was
    // delivered).
    let late = 400 + u64::from(config().max_tries) * config().retry_interval_ms;
    assert_eq!(agent.poll(late), None);
    out.socket.send_to(&command, to).unwrap();
    let events = poll_until(&mut agent, late, |a| {
        a.drops().get(DropReason::Replayed) == 1
    });
    assert!(events.is_empty(), "delivered after its retries: {events:?}");
    assert!(matches!(
        out.ack(),
        Message::Ack {
            acked: 20,
            status: AckStatus::Rejected
        }
    ));
}
