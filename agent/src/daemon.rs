//! The running agent: threads and channels around the [`Agent`] core.
//!
//! - protocol thread (the caller of [`run`]): owns the [`Endpoint`]; receives orders and
//!   partner messages, sends what the other threads queue, heartbeats the ShMC and the partner;
//! - prober: pings the hypervisor every heartbeat and lists the protected guests every
//!   [`DEFINITION_REFRESH`] (at once after a define/undefine event), pushing changed
//!   definitions to the partner;
//! - watchdog: turns late or failed pings into HypervisorDown / HypervisorUp;
//! - event thread: lifecycle events from libvirt; crashes of protected guests become GuestCrashed;
//! - one thread per executed order (takeovers use a bounded pool inside).
//!
//! Only the ShMC gives orders; only the partner's agent may push or request definitions.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shelfha_proto::edge::definitions::{split, Assembler};
use shelfha_proto::message::{guest_name, short_text};
use shelfha_proto::{
    Capabilities, Endpoint, Event, Health, Kind, Message, NodeId, SendError, SoftwareVersion,
    UnprotectedReason, Waker,
};

use crate::decide::sync::{Keeper, KeeperAction, Outbox};
use crate::execute::{Acceptance, Agent, AgentError};
use crate::hypervisor::{Hypervisor, HypervisorError, HypervisorEvent, LifecycleKind};
use crate::order::{Order, OrderResult};
use crate::watchdog::armed::Armed;
use crate::wire_map;

use crate::store::definitions::GuestDef;
use crate::store::floors;

/// How often the protected guests are listed even without a lifecycle event.
pub const DEFINITION_REFRESH: Duration = Duration::from_secs(2);
/// Time before an unacknowledged Hello is sent again after the endpoint gave up.
const HELLO_RETRY: Duration = Duration::from_secs(1);
/// Replay floors are written at most this often for non-order messages.
const FLOORS_SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait in the protocol loop while messages are queued behind a full endpoint.
const BACKLOG_POLL_MS: u64 = 10;

/// Capabilities announced in Hello; `EVACUATE` (live migration) only with a partner libvirt URI.
pub fn capabilities(cfg: &crate::config::Config) -> Capabilities {
    let base = Capabilities::SELF_FENCE
        .with(Capabilities::KILL_QEMU)
        .with(Capabilities::PARTNER_RESTART)
        .with(Capabilities::LOCAL_RESTART);
    if cfg.partner.libvirt_uri.is_some() {
        base.with(Capabilities::EVACUATE)
    } else {
        base
    }
}

const HEALTH_OK: u8 = 0;
const HEALTH_DOWN: u8 = 2;

/// A queue towards the protocol thread, usable from any thread.
#[derive(Clone)]
pub struct Outbound {
    tx: Sender<(NodeId, Message)>,
    waker: Arc<Waker>,
}

impl Outbound {
    /// Queues `msg` for `to` and wakes the protocol thread.
    pub fn send(&self, to: NodeId, msg: Message) {
        if self.tx.send((to, msg)).is_ok() {
            self.waker.wake();
        }
    }
}

/// State shared between the daemon's threads.
struct Shared<H: Hypervisor> {
    agent: Arc<Agent<H>>,
    out: Outbound,
    partner: NodeId,
    slot: u8,
    stop: Arc<AtomicBool>,
    health: AtomicU8,
    refresh: AtomicBool,
    /// Wakes the prober before its interval ends (a guest started or stopped: list now).
    kick: Sender<()>,
    outbox: Mutex<Outbox>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn version() -> SoftwareVersion {
    let mut it = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<u16>().unwrap_or(0));
    SoftwareVersion {
        major: it.next().unwrap_or(0),
        minor: it.next().unwrap_or(0),
        patch: it.next().unwrap_or(0),
    }
}

/// Runs the agent until `stop` is set. `ep` must know the ShMC and the partner as peers.
pub fn run<H: Hypervisor + 'static>(
    agent: Arc<Agent<H>>,
    mut ep: Endpoint,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let cfg = agent.config().clone();
    let partner = NodeId::blade(cfg.partner.slot).unwrap_or(NodeId(cfg.partner.slot));
    let (tx, rx) = mpsc::channel();
    let out = Outbound {
        tx,
        waker: Arc::new(ep.waker()?),
    };
    let (kick, kicked) = mpsc::channel();
    let shared = Arc::new(Shared {
        agent: Arc::clone(&agent),
        out: out.clone(),
        partner,
        slot: cfg.slot,
        stop: Arc::clone(&stop),
        health: AtomicU8::new(HEALTH_OK),
        refresh: AtomicBool::new(true),
        kick,
        outbox: Mutex::new(Outbox::default()),
    });
    // A changed `running` count goes out in an extra heartbeat.
    agent.on_running_change({
        let waker = Arc::clone(&out.waker);
        move || waker.wake()
    });

    match agent.check_warm_standby_config() {
        Ok(refused) if !refused.is_empty() => log::error!(
            "[guests] warm_standby: {} guest(s) refused (see above); they restart cold",
            refused.len()
        ),
        Ok(_) => {}
        Err(e) => log::warn!("warm standby configuration not checked yet: {e}"),
    }
    let (ev_tx, ev_rx) = mpsc::channel();
    if let Err(e) = agent.hypervisor().subscribe(ev_tx) {
        log::error!("lifecycle events not subscribed yet: {e} (subscribed when libvirt answers)");
    }
    spawn("agent-events", {
        let s = Arc::clone(&shared);
        move || events_loop(&s, ev_rx)
    })?;
    let (ping_tx, ping_rx) = mpsc::channel();
    spawn("agent-prober", {
        let s = Arc::clone(&shared);
        move || prober_loop(&s, ping_tx, &kicked)
    })?;
    spawn("agent-watchdog", {
        let s = Arc::clone(&shared);
        move || watchdog_loop(&s, ping_rx)
    })?;
    for (name, refusal) in agent.recheck_partner_definitions() {
        report_unprotected(&shared, partner.0, &name, refusal.reason, &refusal.detail);
    }
    for order in agent.interrupted_orders() {
        log::warn!(
            "{}: unfinished order of an earlier agent process (resumed, or abandoned if stale)",
            order.key()
        );
        handle_order(&shared, order);
    }

    for (id, floor) in floors::load(&cfg.state_dir) {
        if ep.set_floor(NodeId(id), floor) {
            log::info!("replay floor of {}: {floor}", NodeId(id));
        } else if floor >= shelfha_proto::MAX_FLOOR {
            log::error!(
                "replay floor of {} in the state directory is {floor}, beyond any clock: corrupt, ignored",
                NodeId(id)
            );
        }
    }
    let mut floors_saved = Instant::now();
    let (mut floors_dirty, mut floors_now) = (false, false);

    let start = Instant::now();
    let now_ms = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    // Armed before the Hello, which announces it only once armed.
    let mut watchdog = Armed::arm(&cfg).map_err(std::io::Error::other)?;
    let hello = Message::Hello {
        slot: cfg.slot,
        version: version(),
        capabilities: capabilities(&cfg),
        heartbeat_ms: u32::try_from(cfg.heartbeat.as_millis()).unwrap_or(u32::MAX),
        watchdog_ms: watchdog.as_ref().map(Armed::timeout_ms),
    };
    let mut backlog: VecDeque<(NodeId, Message)> = VecDeque::new();
    backlog.push_back((NodeId::SHMC, hello.clone()));
    let mut hello_again: Option<Instant> = None;
    let mut keeper = Keeper::default();
    let mut assembler = Assembler::new();
    let mut beat: u64 = 0;
    let mut next_beat = Instant::now();
    // When the partner's last authenticated heartbeat arrived: every heartbeat tells the ShMC
    // how long ago, so it can tell a network fault from a dead host.
    let mut partner_heard: Option<Instant> = None;
    // The frame sequence of the partner's latest heartbeat, echoed in ours: the partner's proof
    // that it was heard.
    let mut partner_seq: Option<u64> = None;
    let mut last_beat: Option<LastBeat> = None;
    while !stop.load(Ordering::SeqCst) {
        while let Some(ev) = ep.poll(now_ms()) {
            if let Some(w) = watchdog.as_mut() {
                w.observe(&ev);
            }
            match ev {
                Event::Message { from, seq, message } => {
                    if from == partner && message.kind() == Kind::Heartbeat {
                        partner_heard = Some(Instant::now());
                        partner_seq = Some(partner_seq.map_or(seq, |s| s.max(seq)));
                    }
                    // Orders are saved at once, heartbeats and pushes at most once per second.
                    floors_dirty = true;
                    floors_now |= message.kind().from_shmc() == Some(true);
                    let command = message.needs_ack();
                    let kind = message.kind();
                    let durable = on_message(&shared, &mut keeper, &mut assembler, from, message);
                    // Journal, then acknowledge: what could not be made durable is not acked,
                    // so the sender retries it (and alerts when it gives up).
                    if command {
                        if durable {
                            ep.ack(from, seq);
                        } else {
                            log::error!(
                                "{kind:?} from {from} (seq {seq}) not acknowledged: not durable; the sender will retry"
                            );
                            ep.refuse(from, seq);
                        }
                    }
                }
                Event::Acked {
                    to,
                    kind: Kind::Hello,
                    status,
                    ..
                } if to == NodeId::SHMC => {
                    log::info!("registered with the ShMC ({status:?})");
                }
                Event::GaveUp { to, kind, seq } => {
                    log::warn!("{to} did not acknowledge {kind:?} (seq {seq})");
                    if kind == Kind::Hello {
                        hello_again = Some(Instant::now() + HELLO_RETRY);
                    }
                }
                Event::Acked { .. } => {}
            }
        }
        if let Some(w) = watchdog.as_mut() {
            w.pet_if_heard();
        }
        if floors_dirty && (floors_now || floors_saved.elapsed() >= FLOORS_SAVE_INTERVAL) {
            let highest = ep.peer_highest().map(|(id, seq)| (id.0, seq)).collect();
            if let Err(e) = floors::save(&cfg.state_dir, &highest) {
                log::error!("cannot save replay floors: {e}");
            }
            floors_saved = Instant::now();
            (floors_dirty, floors_now) = (false, false);
        }
        if hello_again.is_some_and(|t| Instant::now() >= t) {
            hello_again = None;
            backlog.push_back((NodeId::SHMC, hello.clone()));
        }
        backlog.extend(rx.try_iter());
        while let Some((to, msg)) = backlog.pop_front() {
            match ep.send(to, &msg, now_ms()) {
                Ok(_) => {}
                Err(SendError::QueueFull) => {
                    backlog.push_front((to, msg));
                    break;
                }
                Err(e) => log::warn!("not sent to {to}: {:?}: {e}", msg.kind()),
            }
        }
        next_beat = beat_due(&shared, next_beat, last_beat);
        if Instant::now() >= next_beat {
            next_beat += cfg.heartbeat;
            if next_beat < Instant::now() {
                next_beat = Instant::now() + cfg.heartbeat;
            }
            beat += 1;
            let (protected, digest) = lock(&shared.outbox).summary();
            let health = match shared.health.load(Ordering::SeqCst) {
                HEALTH_OK => Health::Ok,
                _ => Health::Down,
            };
            let running = running_now(&shared, protected);
            last_beat = Some(LastBeat {
                at: Instant::now(),
                running,
                protected,
            });
            let hb = Message::Heartbeat {
                beat,
                health,
                protected,
                digest,
                partner_heard_ms: partner_heard
                    .map(|t| u32::try_from(t.elapsed().as_millis()).unwrap_or(u32::MAX)),
                running,
                partner_seq,
            };
            // The partner repairs its copy from our digest: only once we know our guests.
            let known = lock(&shared.outbox).is_known();
            for to in [NodeId::SHMC, partner] {
                if to == partner && !known {
                    continue;
                }
                match ep.send(to, &hb, now_ms()) {
                    Ok(seq) => {
                        if let Some(w) = watchdog.as_mut() {
                            w.beat_sent(to, seq);
                        }
                    }
                    Err(e) => log::debug!("heartbeat to {to}: {e}"),
                }
            }
            if let Some(w) = watchdog.as_mut() {
                w.send_present(&mut ep, now_ms());
            }
        }
        let mut timeout = u64::try_from(
            next_beat
                .saturating_duration_since(Instant::now())
                .as_millis(),
        )
        .unwrap_or(0);
        if let Some(t) = ep.next_timeout_ms(now_ms()) {
            timeout = timeout.min(t);
        }
        if !backlog.is_empty() {
            timeout = timeout.min(BACKLOG_POLL_MS);
        }
        ep.wait(Some(timeout))?;
    }
    if let Some(w) = watchdog {
        w.stop(&mut ep, &now_ms, &hello);
    }
    log::info!("agent stopping; {} datagrams dropped", ep.drops().total());
    Ok(())
}

/// The last heartbeat sent: when, and its counts.
#[derive(Debug, Clone, Copy)]
struct LastBeat {
    at: Instant,
    running: u16,
    protected: u16,
}

/// The `running` count of a heartbeat now ([`crate::decide::running`]): libvirt's listing
/// while it answers, else every protected guest not proven gone.
fn running_now<H: Hypervisor + 'static>(s: &Shared<H>, protected: u16) -> u16 {
    let answers = s.health.load(Ordering::SeqCst) == HEALTH_OK;
    s.agent.running_count(answers, protected)
}

/// When the next heartbeat goes out: `next_beat`, or sooner when the `running` count changed
/// since the `last` one (at most one extra per quarter interval), so the partner and the ShMC
/// learn at once that this blade's guests are gone.
fn beat_due<H: Hypervisor + 'static>(
    s: &Shared<H>,
    next_beat: Instant,
    last: Option<LastBeat>,
) -> Instant {
    let Some(last) = last else {
        return next_beat;
    };
    let now = Instant::now();
    let running = running_now(s, last.protected);
    let due = crate::decide::running::next_beat_in(
        next_beat.saturating_duration_since(now),
        now.saturating_duration_since(last.at),
        Some(last.running),
        running,
        s.agent.config().heartbeat,
    );
    if running != last.running && due.is_zero() {
        log::info!(
            "protected guests running here: {} -> {running}; extra heartbeat",
            last.running
        );
    }
    next_beat.min(now + due)
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(|_| ())
}

/// Handles one received message; false when a command could not be made durable (its
/// journal or store write failed), so it must not be acknowledged.
fn on_message<H: Hypervisor + 'static>(
    s: &Arc<Shared<H>>,
    keeper: &mut Keeper,
    assembler: &mut Assembler,
    from: NodeId,
    message: Message,
) -> bool {
    if let Some(order) = wire_map::order_from(from, &message) {
        return handle_order(s, order);
    }
    if from != s.partner {
        log::debug!("ignoring {:?} from {from}", message.kind());
        return true;
    }
    note_partner_beat(s, &message);
    match message {
        Message::Heartbeat { health, .. } if health != Health::Ok => {
            log::debug!(
                "partner heartbeat with hypervisor {health:?}: definitions left as they are"
            );
        }
        Message::Heartbeat { digest, .. } => {
            // Stored definitions and refused pushes: what the partner's digest covers.
            let stored = s.agent.partner_held();
            match keeper.on_heartbeat(&digest, &stored, Instant::now()) {
                KeeperAction::Request => {
                    log::info!(
                        "partner definitions differ from the partner's digest: requesting them"
                    );
                    s.out
                        .send(s.partner, Message::DefinitionRequest { name: None });
                }
                KeeperAction::Drop(stale) => {
                    let keep: Vec<&str> = stored
                        .iter()
                        .map(|d| d.name.as_str())
                        .filter(|n| !stale.iter().any(|x| x == n))
                        .collect();
                    if let Err(e) = s.agent.retain_partner_definitions(&keep) {
                        log::error!("partner definitions: {e}");
                    }
                }
                KeeperAction::InSync | KeeperAction::Wait => {}
            }
        }
        msg @ Message::DefinitionPush { .. } => match assembler.add(&msg) {
            Ok(Some((name, xml))) => match s.agent.store_pushed_definition(name.as_str(), xml) {
                Ok(changed) => {
                    keeper.received(name.as_str());
                    if changed && s.agent.warm_standby_listed(name.as_str()) {
                        // The prober (re)creates the warm standby soon.
                        s.refresh.store(true, Ordering::SeqCst);
                    }
                }
                Err(AgentError::Refused { name: n, refusal }) => {
                    // Refused durably (held by its digest): acknowledged, and reported.
                    keeper.received(name.as_str());
                    report_unprotected(s, s.partner.0, &n, refusal.reason, &refusal.detail);
                }
                Err(e) => {
                    log::error!("partner definition of `{name}`: {e}");
                    return false;
                }
            },
            Ok(None) => {}
            Err(e) => log::warn!("partner definition chunk dropped: {e}"),
        },
        Message::DefinitionRemove { name } => {
            let keep = s.agent.partner_held();
            let keep: Vec<&str> = keep
                .iter()
                .map(|d| d.name.as_str())
                .filter(|n| *n != name.as_str())
                .collect();
            if let Err(e) = s.agent.retain_partner_definitions(&keep) {
                log::error!("partner definitions: {e}");
                return false;
            }
        }
        Message::DefinitionRequest { name } => {
            let defs = lock(&s.outbox).resend(name.as_ref().map(|n| n.as_str()));
            log::info!("partner requested {} definitions", defs.len());
            push_definitions(s, &defs);
        }
        other => log::debug!("ignoring {:?} from the partner", other.kind()),
    }
    true
}

/// Hands the partner's `running` count to the agent's second line against a double start.
fn note_partner_beat<H: Hypervisor + 'static>(s: &Shared<H>, message: &Message) {
    if let Message::Heartbeat { running, .. } = message {
        s.agent.partner_heartbeat(*running);
    }
}

/// Logs a guest that is not protected by its partner and tells the ShMC (`owner` is the slot
/// the guest runs on).
fn report_unprotected<H: Hypervisor>(
    s: &Shared<H>,
    owner: u8,
    name: &str,
    reason: UnprotectedReason,
    detail: &str,
) {
    log::error!(
        "guest `{name}` of slot {owner} is not protected by its partner: {reason:?}: {detail}"
    );
    let name = match short_text(name) {
        n if n.is_empty() => short_text("?"),
        n => n,
    };
    s.out.send(
        NodeId::SHMC,
        Message::GuestUnprotected {
            slot: owner,
            reason,
            name,
            text: short_text(detail),
        },
    );
}

fn push_definitions<H: Hypervisor>(s: &Shared<H>, defs: &[GuestDef]) {
    for d in defs {
        match split(&d.name, d.xml.as_bytes()) {
            Ok(chunks) => {
                for c in chunks {
                    s.out.send(s.partner, c);
                }
            }
            Err(e) => log::error!("definition of `{}` cannot be pushed: {e}", d.name),
        }
    }
}

/// Names of the guests an order concerns, for refusal reports.
fn guests_of<H: Hypervisor + 'static>(s: &Shared<H>, order: &Order) -> Vec<String> {
    match order {
        Order::RestartPartnerGuests {
            subset: Some(names),
            ..
        } => names.clone(),
        Order::RestartPartnerGuests { subset: None, .. } => s
            .agent
            .partner_definitions()
            .into_iter()
            .map(|d| d.name)
            .collect(),
        Order::RestartGuest { name, .. } | Order::DestroyGuest { name, .. } => vec![name.clone()],
        Order::FenceSelf { .. } | Order::Evacuate { .. } | Order::Migrate { .. } => Vec::new(),
    }
}

/// Accepts (journals) and carries out an order; false when it could not be journaled (it is
/// then neither executed nor acknowledged).
fn handle_order<H: Hypervisor + 'static>(s: &Arc<Shared<H>>, order: Order) -> bool {
    let acceptance = match s.agent.accept(&order) {
        Ok(a) => a,
        Err(e) => {
            log::error!(
                "{}: cannot journal the order, not executed: {e}",
                order.key()
            );
            return false;
        }
    };
    match acceptance {
        Acceptance::Refused(r) => {
            for m in wire_map::refusal_messages(&order, s.slot, &r, &guests_of(s, &order)) {
                s.out.send(NodeId::SHMC, m);
            }
        }
        Acceptance::InProgress => log::info!("{}: retry of an order in progress", order.key()),
        Acceptance::Done { outcomes, result } => {
            if wire_map::streams_outcomes(&order) {
                for o in &outcomes {
                    s.out
                        .send(NodeId::SHMC, wire_map::outcome_message(&order, s.slot, o));
                    if let Some(m) = wire_map::moved_message(&order, s.slot, o) {
                        s.out.send(NodeId::SHMC, m);
                    }
                }
            }
            let msgs = match &result {
                OrderResult::Refused(r) => {
                    wire_map::refusal_messages(&order, s.slot, r, &guests_of(s, &order))
                }
                _ => wire_map::final_messages(&order, s.slot, &result),
            };
            for m in msgs {
                s.out.send(NodeId::SHMC, m);
            }
        }
        Acceptance::Execute => {
            let s2 = Arc::clone(s);
            let spawned = spawn("agent-order", move || {
                let (out, slot) = (s2.out.clone(), s2.slot);
                let streams = wire_map::streams_outcomes(&order);
                let emit = |o: &crate::order::GuestOutcome| {
                    if streams {
                        out.send(NodeId::SHMC, wire_map::outcome_message(&order, slot, o));
                        if let Some(m) = wire_map::moved_message(&order, slot, o) {
                            out.send(NodeId::SHMC, m);
                        }
                    }
                };
                match s2.agent.execute(&order, &emit) {
                    Ok(OrderResult::Refused(r)) => {
                        for m in
                            wire_map::refusal_messages(&order, slot, &r, &guests_of(&s2, &order))
                        {
                            s2.out.send(NodeId::SHMC, m);
                        }
                    }
                    Ok(result) => {
                        for m in wire_map::final_messages(&order, slot, &result) {
                            s2.out.send(NodeId::SHMC, m);
                        }
                    }
                    Err(e) => log::error!("{}: {e}", order.key()),
                }
                // Takeovers and evacuations change the protected set.
                s2.refresh.store(true, Ordering::SeqCst);
            });
            if let Err(e) = spawned {
                log::error!("cannot start a thread for the order: {e}");
            }
        }
    }
    true
}

fn events_loop<H: Hypervisor + 'static>(s: &Arc<Shared<H>>, rx: Receiver<HypervisorEvent>) {
    while !s.stop.load(Ordering::SeqCst) {
        let ev = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        match ev {
            HypervisorEvent::Lifecycle {
                name, kind, raw, ..
            } => {
                log::debug!("lifecycle `{name}`: {kind:?} {raw:?}");
                if matches!(
                    kind,
                    LifecycleKind::Started | LifecycleKind::Stopped | LifecycleKind::Crashed
                ) {
                    // A guest started or stopped: listed at once, for the `running` count.
                    s.refresh.store(true, Ordering::SeqCst);
                    let _ = s.kick.send(());
                }
                match kind {
                    LifecycleKind::Crashed if s.agent.reports_crash_of(&name) => {
                        log::warn!("protected guest `{name}` crashed (event {raw:?}); reporting");
                        match guest_name(&name) {
                            Some(n) => s.out.send(NodeId::SHMC, Message::GuestCrashed { name: n }),
                            None => log::error!("guest name `{name}` cannot be reported"),
                        }
                    }
                    LifecycleKind::Defined | LifecycleKind::Undefined => {
                        s.refresh.store(true, Ordering::SeqCst)
                    }
                    _ => {}
                }
            }
            HypervisorEvent::ConnectionClosed { reason } => {
                // Reported at once; the next answered ping reports HypervisorUp.
                log::error!("hypervisor down: libvirt connection closed (reason {reason})");
                if s.health.swap(HEALTH_DOWN, Ordering::SeqCst) != HEALTH_DOWN {
                    s.out.send(NodeId::SHMC, Message::HypervisorDown);
                }
            }
        }
    }
}

fn prober_loop<H: Hypervisor + 'static>(
    s: &Arc<Shared<H>>,
    results: Sender<Result<(), HypervisorError>>,
    kicked: &Receiver<()>,
) {
    let interval = s.agent.config().heartbeat;
    let mut last_refresh: Option<Instant> = None;
    while !s.stop.load(Ordering::SeqCst) {
        let r = s.agent.hypervisor().ping();
        let ok = r.is_ok();
        if results.send(r).is_err() {
            return;
        }
        let due = last_refresh.is_none_or(|t| t.elapsed() >= DEFINITION_REFRESH);
        if ok && (s.refresh.swap(false, Ordering::SeqCst) || due) {
            last_refresh = Some(Instant::now());
            match s.agent.local_definitions() {
                Ok(defs) => {
                    let push = lock(&s.outbox).update(&defs);
                    if !push.is_empty() {
                        log::info!(
                            "protected guests changed: pushing {} definitions, removing {}",
                            push.changed.len(),
                            push.removed.len()
                        );
                    }
                    push_definitions(s, &push.changed);
                    for u in &push.unprotected {
                        report_unprotected(s, s.slot, &u.name, u.reason, &u.detail);
                    }
                    for name in push.removed {
                        if let Some(n) = guest_name(&name) {
                            s.out.send(s.partner, Message::DefinitionRemove { name: n });
                        }
                    }
                }
                Err(e) => log::warn!("cannot list protected guests: {e}"),
            }
            if let Err(e) = s.agent.ensure_standbys() {
                log::warn!("warm standby: {e}");
            }
        }
        nap(kicked, interval);
    }
}

/// The prober's pause: `interval`, cut short by a kick (the kicks queued meanwhile count once).
fn nap(kicked: &Receiver<()>, interval: Duration) {
    if kicked.recv_timeout(interval).is_ok() {
        while kicked.try_recv().is_ok() {}
    }
}

fn watchdog_loop<H: Hypervisor + 'static>(
    s: &Arc<Shared<H>>,
    results: Receiver<Result<(), HypervisorError>>,
) {
    // A ping that has not answered after this long means libvirt does not answer.
    let timeout = (s.agent.config().heartbeat * 3).max(Duration::from_millis(1000));
    while !s.stop.load(Ordering::SeqCst) {
        let (healthy, why) = match results.recv_timeout(timeout) {
            Ok(Ok(())) => (true, String::new()),
            Ok(Err(e)) => (false, e.to_string()),
            Err(RecvTimeoutError::Timeout) => (
                false,
                format!("no answer within {} ms", timeout.as_millis()),
            ),
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let new = if healthy { HEALTH_OK } else { HEALTH_DOWN };
        let old = s.health.swap(new, Ordering::SeqCst);
        if old != new {
            if healthy {
                log::info!("hypervisor answers again");
                s.out.send(NodeId::SHMC, Message::HypervisorUp);
            } else {
                log::error!("hypervisor down: {why}");
                s.out.send(NodeId::SHMC, Message::HypervisorDown);
            }
        }
    }
}
