//! UDP endpoint: one node's protocol socket with acknowledgements, retries and drop logging.
//!
//! No threads and no clock: the caller passes `now_ms` (any monotonic millisecond clock) to
//! [`Endpoint::send`] and [`Endpoint::poll`]. The socket is non-blocking.
//!
//! Poll-loop daemon (ShMC): put [`Endpoint::as_raw_fd`] in the `poll(2)` set with timeout
//! [`Endpoint::next_timeout_ms`]; after every wake-up call `poll(now)` until it returns `None`.
//!
//! Threaded daemon (agent): one protocol thread owns the endpoint and loops:
//! `while let Some(ev) = ep.poll(now) { .. }`, then sends what other threads queued on a
//! channel, then [`Endpoint::wait`] for the socket or the next retry. Other threads wake it
//! early with a [`Waker`] (an empty datagram to the endpoint) after queueing.
//!
//! Commands ([`Message::needs_ack`]) are kept until acknowledged and re-sent with the same
//! sequence every `retry_interval_ms`, `max_tries` times in all; then [`Event::GaveUp`]. A received
//! command is acked at once (or, with [`EndpointConfig::manual_ack`], when the application
//! calls [`Endpoint::ack`] after making it durable); a retry of a command already delivered
//! is re-acked as `Duplicate` and not delivered again (the replay window recognises its
//! sequence). Drops are counted ([`Endpoint::drops`]) and logged at most once per reason per
//! second, with counts.
//!
//! **Sessions.** A receiver that starts has forgotten every replay window, so it cannot tell a
//! peer's fresh frame from one captured before its start. Every peer therefore starts
//! *unsynced*: its frames are dropped ([`DropReason::Unsynced`]) and answered with a
//! [`Message::Challenge`] carrying a random single-use nonce and the highest sequence seen from
//! that peer. The peer raises its counter above that floor, answers [`Message::ChallengeReply`]
//! quoting the nonce, and re-sends its unacknowledged commands under new sequence numbers; the
//! reply's sequence becomes the floor, so nothing sent before it is ever accepted. The same
//! challenge answers an authentic frame below the window (a sender whose counter went back):
//! the sender resynchronises instead of being dropped in silence. Challenges are sent to a
//! peer's configured address (never to a datagram's source when one is configured), at most
//! once per retry interval per peer, and every `CHALLENGE_IDLE_MS` to an unsynced peer whose
//! address is known. A configured address never moves; a learnt one moves only to the source
//! of a reply to a challenge sent there, so a replayed or spoofed datagram moves nothing.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use shelfha_proto::{Endpoint, EndpointConfig, Event, Key, Message, NodeId};
//! let key = Key::new([7; 32]); // in a daemon: shelfha_proto::load_key(path)
//! let any = "127.0.0.1:0".parse().unwrap();
//! let mut shmc = Endpoint::bind(any, NodeId::SHMC, key.clone(), EndpointConfig::default())?;
//! let mut agent = Endpoint::bind(any, NodeId(3), key, EndpointConfig::default())?;
//! shmc.add_peer(NodeId(3), Some(agent.local_addr()?)).unwrap();
//! agent.add_peer(NodeId::SHMC, None).unwrap(); // address learnt from the first frame
//!
//! let seq = shmc.send(NodeId(3), &Message::FenceSelf { incident: 1 }, 0).unwrap();
//! // Both just started: each challenges the other before accepting its frames; the ShMC
//! // then re-sends the order under a new sequence. `send`'s sequence stays the handle.
//! let (mut order, mut acked) = (None, false);
//! for _ in 0..200 {
//!     while let Some(ev) = agent.poll(0) {
//!         if let Event::Message { from, message: Message::FenceSelf { incident }, .. } = ev {
//!             order = Some((from, incident)); // already acked by `poll`
//!         }
//!     }
//!     while let Some(ev) = shmc.poll(0) {
//!         acked |= matches!(ev, Event::Acked { seq: s, .. } if s == seq);
//!     }
//!     if acked { break; }
//!     agent.wait(Some(10))?;
//! }
//! assert_eq!(order, Some((NodeId::SHMC, 1)));
//! assert!(acked);
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::auth::{DropCounters, DropReason, Key, ReplayWindow, Verifier};
use crate::edge::seq::{SeqCounter, SeqSeed};
use crate::frame::{field, peek, seal, Header, SealError, MAX_FRAME, TAG_LEN};
use crate::message::{AckStatus, Kind, Message, NodeId};

mod drops;
mod receive;
mod session;

/// Endpoint settings; `Default` gives the shelf defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Time between transmissions of an unacknowledged command (default 100 ms).
    pub retry_interval_ms: u64,
    /// Transmissions of a command in all, the first included (default 10).
    pub max_tries: u32,
    /// Commands awaiting an ack at once (default 32); `send` refuses more. Keep it below the
    /// replay window (64): a retry is recognised as a duplicate only while fewer than 64 newer
    /// frames of this sender have reached the receiver.
    pub max_pending: usize,
    /// Source of the first sequence number (default: the wall clock).
    pub seq: SeqSeed,
    /// Commands are delivered unacknowledged; the application acks each with
    /// [`Endpoint::ack`] once it is durable (journal, then acknowledge), or hands it back with
    /// [`Endpoint::refuse`] so that the sender's retry is delivered again. Default false.
    pub manual_ack: bool,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            retry_interval_ms: 100,
            max_tries: 10,
            max_pending: 32,
            seq: SeqSeed::Clock,
            manual_ack: false,
        }
    }
}

/// What [`Endpoint::poll`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // no allocation on the event path
pub enum Event {
    /// An authenticated, fresh, valid message (commands among them are already acked).
    Message {
        /// Sender.
        from: NodeId,
        /// Its sequence number.
        seq: u64,
        /// The message.
        message: Message,
    },
    /// A command we sent was acknowledged.
    Acked {
        /// The command's destination.
        to: NodeId,
        /// The command's sequence (as returned by `send`).
        seq: u64,
        /// The command's kind.
        kind: Kind,
        /// What the receiver did with it (see [`AckStatus::is_delivered`]).
        status: AckStatus,
    },
    /// A command we sent was not acknowledged after `max_tries` transmissions.
    GaveUp {
        /// The command's destination.
        to: NodeId,
        /// The command's sequence.
        seq: u64,
        /// The command's kind.
        kind: Kind,
    },
}

/// Why [`Endpoint::send`] refused a message.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// The destination is not a known peer.
    UnknownPeer(NodeId),
    /// The peer's address is not known yet (it has not been heard from).
    NoAddress(NodeId),
    /// `max_pending` commands await an ack; try again after some are acked or given up.
    QueueFull,
    /// The message could not be sealed (invalid fields).
    Seal(SealError),
    /// The socket refused a message that is not retried (Heartbeat, Ack).
    Io(io::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::UnknownPeer(n) => write!(f, "{n} is not a known peer"),
            SendError::NoAddress(n) => write!(f, "address of {n} not known yet"),
            SendError::QueueFull => f.write_str("too many commands awaiting an ack"),
            SendError::Seal(e) => write!(f, "cannot encode message: {e}"),
            SendError::Io(e) => write!(f, "send failed: {e}"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Seal(e) => Some(e),
            SendError::Io(e) => Some(e),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Peer {
    id: NodeId,
    addr: Option<SocketAddr>,
    /// Configured by the operator: never moved by received datagrams.
    fixed: bool,
    /// Nonce of our outstanding challenge to this peer.
    challenge: Option<u64>,
    /// When we last sent this peer a challenge.
    challenged_ms: Option<u64>,
    /// Nonces of the last challenges of this peer we answered (its pending commands were
    /// re-sequenced for each once), newest first.
    answered: [Option<u64>; ANSWERED],
    /// When we last logged that this peer's floor is beyond our reach, or that its replies
    /// stay below our floor (such logs are rate-limited).
    complained_ms: Option<u64>,
}

struct Pending {
    to: NodeId,
    /// Sequence `send` returned: the handle [`Event::Acked`] and [`Event::GaveUp`] quote.
    seq: u64,
    /// Sequence on the wire (differs from `seq` once re-sequenced after a challenge).
    wire_seq: u64,
    kind: Kind,
    tries: u32,
    next_at_ms: u64,
    len: usize,
    frame: Box<[u8; MAX_FRAME]>,
}

#[derive(Debug, Default, Clone, Copy)]
struct LogState {
    last_ms: Option<u64>,
    suppressed: u64,
}

/// One node's protocol socket. See the module documentation for how to drive it.
pub struct Endpoint {
    socket: UdpSocket,
    me: NodeId,
    key: Key,
    verifier: Verifier,
    peers: Vec<Peer>,
    config: EndpointConfig,
    seq: SeqCounter,
    pending: Vec<Pending>,
    #[allow(clippy::vec_box)] // frames move between pool and pending without copying
    free_frames: Vec<Box<[u8; MAX_FRAME]>>,
    events: std::collections::VecDeque<Event>,
    rx: Box<[u8; MAX_FRAME + 1]>,
    tx: Box<[u8; MAX_FRAME]>,
    log: [LogState; DropReason::COUNT],
    wakeups: u64,
    /// Commands delivered under `manual_ack` and not yet acked or refused: (from, seq, source).
    awaiting: Vec<(NodeId, u64, SocketAddr)>,
    /// Commands refused under `manual_ack`, newest last: (from, seq, until_ms while its
    /// sequence is forgotten so a retry is delivered again, `None` once it is seen again).
    refused: Vec<(NodeId, u64, Option<u64>)>,
    /// The `now_ms` of the latest `poll`.
    last_now_ms: u64,
    /// Base of the challenge nonces of this run (random) and a counter.
    nonce_base: u64,
    nonces: u64,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("me", &self.me)
            .field("socket", &self.socket)
            .field("peers", &self.peers)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Most datagrams one call of [`Endpoint::poll`] reads without producing an event.
    pub const RECV_BUDGET: usize = 256;

    /// An unsynced peer with a known address is challenged this often while it is silent.
    pub const CHALLENGE_IDLE_MS: u64 = 1000;

    /// Binds a non-blocking UDP socket on `addr` for node `me`. All memory is allocated here.
    pub fn bind(
        addr: SocketAddr,
        me: NodeId,
        key: Key,
        config: EndpointConfig,
    ) -> io::Result<Endpoint> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        let seq = SeqCounter::new(&config.seq)?;
        let pending = Vec::with_capacity(config.max_pending);
        let free_frames = (0..config.max_pending)
            .map(|_| Box::new([0u8; MAX_FRAME]))
            .collect();
        let events = std::collections::VecDeque::with_capacity(config.max_pending + 1);
        log::info!(
            "protocol endpoint {} on {}, first sequence {}",
            me,
            socket.local_addr()?,
            seq.peek()
        );
        Ok(Endpoint {
            socket,
            me,
            verifier: Verifier::new(key.clone(), me),
            key,
            peers: Vec::with_capacity(crate::auth::Peers::CAPACITY),
            config,
            seq,
            pending,
            free_frames,
            events,
            rx: Box::new([0; MAX_FRAME + 1]),
            tx: Box::new([0; MAX_FRAME]),
            log: [LogState::default(); DropReason::COUNT],
            wakeups: 0,
            awaiting: Vec::with_capacity(crate::auth::Peers::CAPACITY),
            refused: Vec::with_capacity(REFUSED),
            last_now_ms: 0,
            nonce_base: random_u64(),
            nonces: 0,
        })
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Adds (or updates) a peer. A given address is fixed (received datagrams never move
    /// it); with `addr = None` the address is learnt from the peer's answer to a challenge.
    /// A new peer is unsynced until it answers one (module documentation). `Err` when 17
    /// peers are already known.
    pub fn add_peer(&mut self, id: NodeId, addr: Option<SocketAddr>) -> Result<(), NodeId> {
        let known = self.peers.iter().any(|p| p.id == id);
        self.verifier.add_peer(id)?;
        if !known {
            self.verifier.require_sync(id);
        }
        match self.peers.iter_mut().find(|p| p.id == id) {
            Some(p) => {
                if addr.is_some() {
                    p.addr = addr;
                    p.fixed = true;
                }
            }
            None => self.peers.push(Peer {
                id,
                addr,
                fixed: addr.is_some(),
                challenge: None,
                challenged_ms: None,
                answered: [None; ANSWERED],
                complained_ms: None,
            }),
        }
        Ok(())
    }

    /// True once `id` answered our challenge since this endpoint started (its frames are
    /// accepted from then on).
    pub fn is_synced(&self, id: NodeId) -> bool {
        self.peers.iter().any(|p| p.id == id) && self.verifier.is_synced(id)
    }

    /// Acknowledges a command delivered under [`EndpointConfig::manual_ack`], now durable.
    /// Returns false if it was not awaiting an ack.
    pub fn ack(&mut self, from: NodeId, seq: u64) -> bool {
        match self
            .awaiting
            .iter()
            .position(|(f, s, _)| *f == from && *s == seq)
        {
            Some(i) => {
                let (_, _, src) = self.awaiting.swap_remove(i);
                self.send_ack(from, seq, AckStatus::Accepted, src);
                true
            }
            None => false,
        }
    }

    /// Hands back a command delivered under [`EndpointConfig::manual_ack`] that could not be
    /// made durable: no ack is sent and its sequence is forgotten, so the sender's next retry
    /// is delivered again. Returns false if it was not awaiting an ack.
    pub fn refuse(&mut self, from: NodeId, seq: u64) -> bool {
        match self
            .awaiting
            .iter()
            .position(|(f, s, _)| *f == from && *s == seq)
        {
            Some(i) => {
                self.awaiting.swap_remove(i);
                self.verifier.forget(from, seq);
                // Only the sender's retries may bring it back: once a sender with these
                // settings has surely given up (its whole retry schedule, `max_tries` times
                // `retry_interval_ms`, after the last refusal) it is marked seen again, so a
                // late duplicate or a replay of a command the sender has given up on is never
                // delivered. The span is the whole schedule, not one or two intervals: a
                // receiver stalled between two retries (a slow fsync) must still deliver the
                // retry waiting in its socket, not answer it `Rejected`.
                let until = self.last_now_ms.saturating_add(self.retry_span_ms());
                self.refused.retain(|(f, s, _)| !(*f == from && *s == seq));
                if self.refused.len() >= REFUSED {
                    if let Some((f, s, pending)) = self.refused.first().copied() {
                        if pending.is_some() {
                            self.verifier.remember(f, s);
                        }
                        self.refused.remove(0);
                    }
                }
                self.refused.push((from, seq, Some(until)));
                true
            }
            None => false,
        }
    }

    /// How long a sender with this endpoint's settings goes on retrying a command.
    fn retry_span_ms(&self) -> u64 {
        self.config
            .retry_interval_ms
            .saturating_mul(u64::from(self.config.max_tries.max(1)))
    }

    /// Marks seen again the refused commands whose retry span is over (they stay listed, so
    /// a later copy is answered `Rejected`, not `Duplicate`).
    fn expire_refused(&mut self, now_ms: u64) {
        for entry in self.refused.iter_mut() {
            if let (from, seq, Some(until)) = *entry {
                if now_ms >= until {
                    self.verifier.remember(from, seq);
                    entry.2 = None;
                }
            }
        }
    }

    /// Current address of a peer, if known.
    pub fn peer_addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.peers.iter().find(|p| p.id == id).and_then(|p| p.addr)
    }

    /// Rejects sequences `<= floor` from `id` (see [`Verifier::set_floor`]); a restored floor
    /// is also what this endpoint's challenges carry, so a peer whose counter went back
    /// raises it above the floor before its reply.
    pub fn set_floor(&mut self, id: NodeId, floor: u64) -> bool {
        self.verifier.set_floor(id, floor)
    }

    /// Sends `msg` to `to`; returns its sequence number. A command is kept and retried until
    /// acked or given up ([`Event::Acked`] / [`Event::GaveUp`] carry this sequence). A failed
    /// first transmission of a command is logged and left to the retries.
    pub fn send(&mut self, to: NodeId, msg: &Message, now_ms: u64) -> Result<u64, SendError> {
        let addr = match self.peers.iter().find(|p| p.id == to) {
            None => return Err(SendError::UnknownPeer(to)),
            Some(p) => p.addr.ok_or(SendError::NoAddress(to))?,
        };
        let header = Header {
            sender: self.me,
            dest: to,
            seq: self.seq.peek(),
        };
        if !msg.needs_ack() {
            let len = seal(&self.key, &header, msg, &mut self.tx[..]).map_err(SendError::Seal)?;
            let seq = self.seq.next_seq();
            let frame = self.tx.get(..len).unwrap_or_default();
            self.socket.send_to(frame, addr).map_err(SendError::Io)?;
            return Ok(seq);
        }
        // Frames come from the pool allocated in `bind`: no allocation here.
        let Some(mut frame) = self.free_frames.pop() else {
            return Err(SendError::QueueFull);
        };
        let len = match seal(&self.key, &header, msg, &mut frame[..]) {
            Ok(len) => len,
            Err(e) => {
                self.free_frames.push(frame);
                return Err(SendError::Seal(e));
            }
        };
        let seq = self.seq.next_seq();
        let sent = self
            .socket
            .send_to(frame.get(..len).unwrap_or_default(), addr);
        if let Err(e) = sent {
            log::warn!(
                "sending {:?} #{} to {} ({}): {}; will retry",
                msg.kind(),
                seq,
                to,
                addr,
                e
            );
        }
        self.pending.push(Pending {
            to,
            seq,
            wire_seq: seq,
            kind: msg.kind(),
            tries: 1,
            next_at_ms: now_ms.saturating_add(self.config.retry_interval_ms),
            len,
            frame,
        });
        Ok(seq)
    }

    /// Does all due work and returns the next event, or `None` when there is nothing more
    /// until the socket is readable or [`Endpoint::next_timeout_ms`] passes. Call it repeatedly.
    /// Reads at most [`Endpoint::RECV_BUDGET`] datagrams per call (the socket then stays
    /// readable, so a flood of bad datagrams cannot starve the caller).
    pub fn poll(&mut self, now_ms: u64) -> Option<Event> {
        self.last_now_ms = now_ms;
        self.expire_refused(now_ms);
        self.retransmit(now_ms);
        self.flush_drop_logs(now_ms);
        if let Some(ev) = self.events.pop_front() {
            return Some(ev);
        }
        // Bounded work per call, so a flood cannot starve the caller's other duties; the
        // socket stays readable, so the caller's next wait returns at once.
        for _ in 0..Self::RECV_BUDGET {
            let (n, src) = match self.socket.recv_from(&mut self.rx[..]) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. ECONNREFUSED from an ICMP error about an earlier send.
                    log::debug!("receive on protocol socket: {}", e);
                    return None;
                }
            };
            if n == 0 {
                self.wakeups += 1;
                continue;
            }
            if let Some(ev) = self.receive(n, src, now_ms) {
                return Some(ev);
            }
        }
        None
    }

    /// Milliseconds from `now_ms` until the next retry is due (`Some(0)` if overdue), or `None`
    /// when no command awaits an ack. Use it as the poll timeout.
    pub fn next_timeout_ms(&self, now_ms: u64) -> Option<u64> {
        self.pending
            .iter()
            .map(|p| p.next_at_ms.saturating_sub(now_ms))
            .min()
    }

    /// Blocks up to `timeout_ms` (`None` = forever) until a datagram is readable; returns
    /// whether one is. For threaded callers; a poll-loop daemon polls the fd itself.
    pub fn wait(&self, timeout_ms: Option<u64>) -> io::Result<bool> {
        let timeout = match timeout_ms {
            None => PollTimeout::NONE,
            Some(ms) => PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        };
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, timeout) {
            Ok(n) => Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// A handle that wakes a thread blocked in [`Endpoint::wait`] (or `poll(2)` on the fd).
    pub fn waker(&self) -> io::Result<Waker> {
        let mut target = self.socket.local_addr()?;
        if target.ip().is_unspecified() {
            target.set_ip(match target.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let any: SocketAddr = match target.ip() {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(any)?;
        Ok(Waker { socket, target })
    }

    /// Commands awaiting an ack.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Per-reason drop counters.
    pub fn drops(&self) -> &DropCounters {
        self.verifier.drops()
    }

    /// Empty datagrams received (wake-ups).
    pub fn wakeups(&self) -> u64 {
        self.wakeups
    }

    /// The sequence number the next frame will carry.
    pub fn next_seq(&self) -> u64 {
        self.seq.peek()
    }

    /// Highest sequence accepted from each known peer (persist these to restore floors).
    pub fn peer_highest(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        let peers = self.verifier.peers();
        peers
            .ids()
            .filter_map(move |id| peers.get(id).map(|w| (id, w.highest())))
    }

    fn retransmit(&mut self, now_ms: u64) {
        self.challenge_idle(now_ms);
        let mut i = 0;
        while let Some(p) = self.pending.get_mut(i) {
            if p.next_at_ms > now_ms {
                i += 1;
                continue;
            }
            if p.tries >= self.config.max_tries {
                let p = self.pending.swap_remove(i);
                self.free_frames.push(p.frame);
                log::warn!(
                    "{:?} #{} to {} not acknowledged after {} tries; giving up",
                    p.kind,
                    p.seq,
                    p.to,
                    p.tries
                );
                self.events.push_back(Event::GaveUp {
                    to: p.to,
                    seq: p.seq,
                    kind: p.kind,
                });
                continue;
            }
            p.tries += 1;
            p.next_at_ms = now_ms.saturating_add(self.config.retry_interval_ms);
            let to = p.to;
            let addr = self.peers.iter().find(|q| q.id == to).and_then(|q| q.addr);
            let Some(p) = self.pending.get(i) else { break };
            match addr {
                Some(addr) => {
                    let frame = p.frame.get(..p.len).unwrap_or_default();
                    if let Err(e) = self.socket.send_to(frame, addr) {
                        log::debug!("retry {:?} #{} to {}: {}", p.kind, p.seq, p.to, e);
                    }
                }
                None => log::debug!("retry {:?} #{}: peer {} has no address", p.kind, p.seq, to),
            }
            i += 1;
        }
    }

    fn send_ack(&mut self, to: NodeId, acked: u64, status: AckStatus, addr: SocketAddr) {
        let header = Header {
            sender: self.me,
            dest: to,
            seq: self.seq.next_seq(),
        };
        let ack = Message::Ack { acked, status };
        match seal(&self.key, &header, &ack, &mut self.tx[..]) {
            Ok(len) => {
                let frame = self.tx.get(..len).unwrap_or_default();
                if let Err(e) = self.socket.send_to(frame, addr) {
                    log::debug!("ack #{} to {} ({}): {}", acked, to, addr, e);
                }
            }
            Err(e) => log::error!("cannot seal ack: {}", e),
        }
    }
}

/// Refused commands whose sequence can be forgotten at once (more: the oldest is remembered).
const REFUSED: usize = 32;
/// Challenges of a peer remembered as answered (a replay of one of them re-sequences nothing).
const ANSWERED: usize = 4;
/// Least time between two logs about one peer's unusable sequence state.
const COMPLAINT_INTERVAL_MS: u64 = 10_000;

/// Writes sequence `seq` into a sealed frame of `len` bytes and recomputes its tag.
fn reseal(key: &Key, frame: &mut [u8], len: usize, seq: u64) -> bool {
    let Some(signed) = len.checked_sub(TAG_LEN) else {
        return false;
    };
    let Some(seq_bytes) = frame.get_mut(field::SEQ) else {
        return false;
    };
    seq_bytes.copy_from_slice(&seq.to_le_bytes());
    let Some(tag) = frame.get(..signed).map(|b| key.tag(b)) else {
        return false;
    };
    match frame.get_mut(signed..len) {
        Some(t) => {
            t.copy_from_slice(&tag);
            true
        }
        None => false,
    }
}

/// 64 random bits from the kernel; the clock and pid when /dev/urandom cannot be read (nonces
/// must be unique per run, and a forged reply needs the key anyway).
fn random_u64() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u64::from_le_bytes(b),
        Err(e) => {
            log::warn!("/dev/urandom: {e}; challenge nonces derived from the clock");
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t ^ (u64::from(std::process::id()) << 32)
        }
    }
}

impl AsFd for Endpoint {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for Endpoint {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// Wakes the thread that waits on an [`Endpoint`] by sending it an empty datagram.
#[derive(Debug)]
pub struct Waker {
    socket: UdpSocket,
    target: SocketAddr,
}

impl Waker {
    /// Wakes the endpoint's thread (best effort; a lost wake-up only delays until the timeout).
    pub fn wake(&self) {
        if let Err(e) = self.socket.send_to(&[], self.target) {
            log::debug!("wake-up datagram to {}: {}", self.target, e);
        }
    }
}
