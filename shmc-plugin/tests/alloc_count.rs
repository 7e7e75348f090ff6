//! The daemon's steady-state event path allocates nothing.
//!
//! `shmc_plugin::edge::source::ipmb::run` (the loop `shmc-plugin run` uses) runs on its
//! own thread over a pseudo-terminal standing in for the IPMB. A counting
//! global allocator counts the heap allocations made on that thread only.
//! After a warm-up (start-up, every kind of event, one whole incident per
//! blade), the same traffic is sent again: benign and critical events,
//! retransmissions, the fence and its confirmation, the walk back to M4, link
//! events, events from an unknown address and garbage. Every Platform Event
//! must be answered, every critical event must produce a Set FRU Activation
//! request, and the allocation count must not move. No logger is installed,
//! so log lines (which do allocate when enabled) are outside this count.
//!
//! The agent link is scripted ([`Partner`]): each failover order is answered
//! with guest outcomes (one guest not started), an unprotected-guest report,
//! an undelivered-order report and, every other time, the final report; the
//! report deadline is 1 ms, so both the named alert and the overdue alert run
//! in the measured rounds.
#![allow(unsafe_code)] // a global allocator is an `unsafe impl`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::os::fd::BorrowedFd;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use shmc_plugin::edge::agents::AgentLink;
use shmc_plugin::edge::stop::StopSignals;
use shmc_plugin::engine::{AgentInput, GuestName, Order, OrderKind, ReportText, Undelivered};
use shmc_plugin::wire::addr::Slot;
use shmc_plugin::wire::cmd;
use shmc_plugin::wire::framer::{Feed, StreamFramer};
use shmc_plugin::wire::ipmb::{Message, Repr};

/// Counts allocations made by threads that opted in.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BLADES: [u8; 4] = [0x82, 0x84, 0x86, 0x88];

/// Failover orders the scripted partner received.
static FAILOVER_ORDERS: AtomicU64 = AtomicU64::new(0);
/// Agent inputs it delivered to the core.
static AGENT_INPUTS: AtomicU64 = AtomicU64::new(0);

/// A scripted agent link: answers each whole-blade failover order like a
/// partner that could not start one guest. Fixed buffers only.
#[derive(Default)]
struct Partner {
    queue: heapless::Deque<(Slot, AgentInput), 32>,
    orders: u64,
}

impl AgentLink for Partner {
    fn send_order(&mut self, _now_ms: u64, slot: Slot, order: &Order) {
        let Order::RestartPartnerGuests {
            failed_slot,
            incident,
            subset: None,
            ..
        } = order
        else {
            return;
        };
        self.orders += 1;
        FAILOVER_ORDERS.fetch_add(1, Ordering::SeqCst);
        let (failed_slot, incident) = (*failed_slot, *incident);
        let name = |n: &str| GuestName::try_from(n).unwrap();
        let mut inputs = [
            Some(AgentInput::GuestOutcome {
                failed_slot,
                name: name("web"),
                started: true,
                partner_running: false,
            }),
            Some(AgentInput::GuestOutcome {
                failed_slot,
                name: name("db"),
                started: false,
                partner_running: false,
            }),
            Some(AgentInput::GuestUnprotected {
                owner_slot: failed_slot,
                reason: shelfha_proto::UnprotectedReason::DiskPath,
                name: ReportText::try_from("db").unwrap(),
                text: ReportText::try_from("/srv/local/db.img").unwrap(),
            }),
            Some(AgentInput::OrderUndelivered {
                kind: OrderKind::FenceSelf,
                incident: Some(incident),
                reason: Undelivered::Unacknowledged,
            }),
            self.orders
                .is_multiple_of(2)
                .then_some(AgentInput::AllReported {
                    failed_slot,
                    incident,
                }),
        ];
        for input in inputs.iter_mut().filter_map(Option::take) {
            let _ = self.queue.push_back((slot, input));
        }
    }

    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn receive(&mut self, _now_ms: u64, sink: &mut dyn FnMut(Slot, AgentInput)) {
        while let Some((slot, input)) = self.queue.pop_front() {
            AGENT_INPUTS.fetch_add(1, Ordering::SeqCst);
            sink(slot, input);
        }
    }

    fn tick(&mut self, _now_ms: u64) {}
}

/// Replies seen on the master side.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Seen {
    event_responses: u64,
    fence_requests: u64,
}

struct Ipmb {
    master: OwnedFd,
    framer: StreamFramer,
    seen: Seen,
}

impl Ipmb {
    fn write(&self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            match nix::unistd::write(self.master.as_fd(), rest) {
                Ok(n) => rest = &rest[n..],
                Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("pty write: {e}"),
            }
        }
    }

    fn send(&self, rq_sa: u8, seq: u8, data: &[u8]) {
        let m = Message::from_repr(&Repr {
            rs_sa: 0x20,
            net_fn: cmd::NETFN_SENSOR_EVENT,
            rs_lun: 0,
            rq_sa,
            rq_seq: seq & 0x3F,
            rq_lun: 0,
            cmd: cmd::CMD_PLATFORM_EVENT,
            data,
        })
        .unwrap();
        self.write(m.as_bytes());
    }

    /// Reads whatever the plugin wrote within `wait`, counting replies.
    fn drain(&mut self, wait: Duration) {
        let mut buf = [0u8; 512];
        let fd = self.master.try_clone().unwrap();
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        if poll(&mut fds, PollTimeout::from(ms)).unwrap() == 0 {
            return;
        }
        let n = nix::unistd::read(fd.as_fd(), &mut buf).unwrap();
        let mut rest = &buf[..n];
        loop {
            match self.framer.feed(rest) {
                Feed::Consumed => break,
                Feed::Message { message, remaining } => {
                    let r = message.repr();
                    if r.net_fn == cmd::NETFN_SENSOR_EVENT + 1 && r.cmd == cmd::CMD_PLATFORM_EVENT {
                        self.seen.event_responses += 1;
                    } else if r.net_fn == cmd::NETFN_GROUP_EXT
                        && r.cmd == cmd::CMD_SET_FRU_ACTIVATION
                    {
                        self.seen.fence_requests += 1;
                    }
                    rest = remaining;
                }
                Feed::Rejected { remaining, .. } => rest = remaining,
            }
        }
    }

    /// Waits until `want` Platform Event responses have arrived in total.
    fn wait_responses(&mut self, want: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.seen.event_responses < want {
            assert!(
                Instant::now() < deadline,
                "plugin stopped answering: {:?}",
                self.seen
            );
            self.drain(Duration::from_millis(50));
        }
    }
}

/// One round of traffic for every blade; returns (Platform Events sent that
/// must be answered, critical events sent).
fn round(ipmb: &mut Ipmb, seq: &mut u8, answered: &mut u64) -> u64 {
    let mut critical = 0;
    for &a in &BLADES {
        let mut next = || {
            *seq = seq.wrapping_add(1) & 0x3F;
            *seq
        };
        let mut ev = |ipmb: &mut Ipmb, rq_sa: u8, s: u8, data: &[u8]| {
            ipmb.send(rq_sa, s, data);
            *answered += 1;
            ipmb.wait_responses(*answered);
        };
        // Recorded only: non-critical threshold, a deassertion.
        ev(ipmb, a, next(), &[0x04, 0x01, 1, 0x01, 0x50, 0x30, 0x20]);
        ev(ipmb, a, next(), &[0x04, 0x01, 1, 0x81, 0x59, 0x5F, 0x5A]);
        // Critical: upper critical going high, then its retransmission.
        let s = next();
        let crit = [0x04, 0x01, 1, 0x01, 0x59, 0x5F, 0x5A];
        ev(ipmb, a, s, &crit);
        critical += 1;
        ev(ipmb, a, s, &crit);
        // Fence carried out (M4 -> M6 -> M1), then back to M4.
        for (new, prev) in [(6u8, 4u8), (1, 6), (2, 1), (3, 2), (4, 3)] {
            ev(
                ipmb,
                a,
                next(),
                &[0x04, 0xF0, 0, 0x6F, 0xA0 | new, prev, 0x00],
            );
        }
        // IPMB-A lost (alert only) and an unconfigured sender.
        ev(ipmb, a, next(), &[0x04, 0xF1, 7, 0x6F, 0x01, 0xFF, 0xFF]);
        ev(ipmb, 0xC2, next(), &[0x04, 0x01, 1, 0x01, 0x59, 0x5F, 0x5A]);
        // Garbage: a frame with a bad data checksum, then stray bytes.
        let mut bad = Message::from_repr(&Repr {
            rs_sa: 0x20,
            net_fn: cmd::NETFN_SENSOR_EVENT,
            rs_lun: 0,
            rq_sa: a,
            rq_seq: next(),
            rq_lun: 0,
            cmd: cmd::CMD_PLATFORM_EVENT,
            data: &[0x04, 0x01, 1, 0x01, 0x50, 0x30, 0x20],
        })
        .unwrap()
        .as_bytes()
        .to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0x5A;
        ipmb.write(&bad);
        // Stray bytes; the zeros complete any candidate the framer started inside the bad frame.
        ipmb.write(&[0xFF, 0x02]);
        ipmb.write(&[0u8; 34]);
    }
    critical
}

#[test]
fn steady_state_event_path_allocates_nothing() {
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave_path = nix::unistd::ttyname(pty.slave.as_fd()).unwrap();
    let mut text = format!(
        "[shelf]\nown_address = 0x20\nipmb_device = {:?}\nipmb_mode = \"stream\"\n\
         [timing]\nprobe_timeout_ms = 3600000\nfailover_report_timeout_ms = 1\n",
        slave_path.to_str().unwrap()
    );
    for (i, a) in BLADES.iter().enumerate() {
        let slot = i + 1;
        let partner = if slot % 2 == 1 { slot + 1 } else { slot - 1 };
        text += &format!(
            "[[blade]]\nslot = {slot}\nipmb_address = 0x{a:02x}\npartner = {partner}\nhot_swap_sensor = 0\n"
        );
    }
    // Raw mode before any byte is written (the plugin also sets it when it opens the device).
    let mut t = nix::sys::termios::tcgetattr(pty.slave.as_fd()).unwrap();
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(pty.slave.as_fd(), nix::sys::termios::SetArg::TCSANOW, &t)
        .unwrap();
    let cfg =
        shmc_plugin::config::file::parse(&text, std::path::Path::new("alloc_count.toml")).unwrap();
    let runner = std::thread::spawn(move || {
        COUNTED.with(|c| c.set(true));
        // One allocation of our own proves the counter sees this thread.
        drop(std::hint::black_box(Vec::<u8>::with_capacity(16)));
        shmc_plugin::edge::source::ipmb::run(&cfg, &mut Partner::default(), &StopSignals::none())
    });
    let _slave = pty.slave;
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !runner.is_finished(),
        "run stopped at start: {:?}",
        runner.join()
    );
    let mut ipmb = Ipmb {
        master: pty.master,
        framer: StreamFramer::new(),
        seen: Seen::default(),
    };

    // Warm-up: start-up allocations (configuration copy, device) happen here.
    let mut seq = 0u8;
    let mut answered = 0u64;
    let mut critical = 0;
    for _ in 0..2 {
        critical += round(&mut ipmb, &mut seq, &mut answered);
    }
    ipmb.drain(Duration::from_millis(100));
    assert!(
        ipmb.seen.fence_requests >= critical,
        "warm-up: {critical} critical events, {:?}",
        ipmb.seen
    );

    let before_allocs = ALLOCATIONS.load(Ordering::SeqCst);
    let before = ipmb.seen;
    let before_failovers = FAILOVER_ORDERS.load(Ordering::SeqCst);
    let before_inputs = AGENT_INPUTS.load(Ordering::SeqCst);
    let mut measured_critical = 0;
    for _ in 0..5 {
        measured_critical += round(&mut ipmb, &mut seq, &mut answered);
    }
    ipmb.drain(Duration::from_millis(100));
    let allocs = ALLOCATIONS.load(Ordering::SeqCst) - before_allocs;
    let seen = ipmb.seen;

    assert!(
        before_allocs >= 1,
        "the counter does not see the run thread"
    );
    assert_eq!(
        seen.event_responses - before.event_responses,
        5 * 11 * BLADES.len() as u64
    );
    assert!(
        seen.fence_requests - before.fence_requests >= measured_critical,
        "{measured_critical} critical events, {:?} -> {:?}",
        before,
        seen
    );
    let failovers = FAILOVER_ORDERS.load(Ordering::SeqCst) - before_failovers;
    let inputs = AGENT_INPUTS.load(Ordering::SeqCst) - before_inputs;
    assert!(
        failovers >= measured_critical && inputs >= 4 * failovers,
        "{failovers} failover orders, {inputs} agent inputs for {measured_critical} critical events"
    );
    assert_eq!(allocs, 0, "heap allocations in the steady-state event path");

    // Closing the master ends the run loop (the device reports end of file or an error).
    drop(ipmb);
    drop(_slave);
    let r = runner.join().unwrap();
    assert!(r.is_err(), "run returned Ok after the device closed");
}
