//! The blade agent's receive path, end to end: datagrams through `Verifier::open` (fixed test
//! key), message decoding, definition reassembly (`Assembler`), the definitions `Keeper`, and
//! the agent core (`wire_map::order_from`, `Agent::accept` / `execute` with a fresh state
//! directory) against the fake hypervisor. Nothing may panic, and:
//! - every message the agent would answer with is valid and can be sealed;
//! - orders come only from the ShMC; a frame from any other node never starts a guest;
//! - a RestartPartnerGuests without a confirmed fence of the partner starts nothing;
//! - once the blade has fenced itself, nothing starts any more.
//!
//! Input: a sequence of records `ctl, len (u16 LE), payload[len]` (a short last payload is
//! taken as is; at most 32 records, the first 4 orders among them executed). `ctl` bit 0 set: the payload is a frame *body* that the harness seals with a
//! valid header and HMAC (so the fuzzer gets past the tag), clear: the payload is a raw
//! datagram. Bits 1-2: sender (ShMC, partner slot 4, other blade slot 5, unknown node 20).
//! Bit 3: reuse the sender's previous sequence (a replay) instead of the next one. Bit 4:
//! addressed to the ShMC instead of this agent (slot 3). Bit 5: one tag bit flipped.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use blade_agent::config::Config;
use blade_agent::hypervisor::fake::FakeHypervisor;
use blade_agent::hypervisor::GuestState;
use blade_agent::decide::sync::{Keeper, KeeperAction};
use blade_agent::execute::{Acceptance, Agent};
use blade_agent::wire_map;
use blade_agent::order::{GuestOutcome, Order, OrderResult};
use blade_agent::store::definitions::GuestDef;
use libfuzzer_sys::fuzz_target;
use shelfha_proto::frame::field;
use shelfha_proto::{
    seal, Assembler, Header, Health, Key, Message, NodeId, Received, Verifier, HEADER_LEN,
    MAX_FRAME, PROTOCOL_VERSION,
};

const ME: u8 = 3;
const PARTNER: u8 = 4;
const OTHER: u8 = 5;
const UNKNOWN: u8 = 20;
/// Most records handled per input, and most orders given to the agent per input (each one
/// is journaled and may start threads): keeps every run short.
const MAX_RECORDS: usize = 32;
const MAX_ORDERS: usize = 4;

/// The fixed test key of the golden vectors: bytes 0x00 .. 0x1f.
fn key() -> Key {
    Key::new(std::array::from_fn(|i| i as u8))
}

/// This process's state directory on tmpfs (the journal fsyncs every order).
fn state_dir() -> PathBuf {
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("shelfha-fuzz-agent-{}", std::process::id()))
}

fn config(state: &Path) -> Config {
    let text = format!(
        "slot = {ME}\nshmc = \"127.0.0.1:7300\"\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n\
         fence_timeout_ms = 200\nevacuate_timeout_ms = 300\nstart_workers = 2\n\
         [partner]\nslot = {PARTNER}\naddress = \"127.0.0.1:7302\"\n\
         [guests.priority]\ndb = 100\n",
        state.display()
    );
    match Config::parse(&text, Path::new("fuzz.toml")) {
        Ok(c) => c,
        Err(e) => panic!("fuzz configuration: {e}"),
    }
}

/// The agent under test, created on first use (most inputs never get past the verifier).
struct Blade {
    hv: Arc<FakeHypervisor>,
    agent: Agent<FakeHypervisor>,
    keeper: Keeper,
    assembler: Assembler,
    fenced: bool,
    orders: usize,
}

impl Blade {
    fn new(dir: &Path) -> Blade {
        let _ = std::fs::remove_dir_all(dir);
        if let Err(e) = std::fs::create_dir_all(dir) {
            panic!("state directory {}: {e}", dir.display());
        }
        let hv = Arc::new(FakeHypervisor::new(8 * 1024 * 1024));
        hv.add("web", GuestState::Running, 512 * 1024);
        hv.add("db", GuestState::Running, 1024 * 1024);
        hv.add("crashed", GuestState::Crashed, 256 * 1024);
        let agent = match Agent::new(Arc::clone(&hv), config(dir)) {
            Ok(a) => a,
            Err(e) => panic!("agent: {e}"),
        };
        Blade {
            hv,
            agent,
            keeper: Keeper::default(),
            assembler: Assembler::new(),
            fenced: false,
            orders: 0,
        }
    }

    fn starts(&self) -> usize {
        self.hv.start_order().len()
    }

    /// What the daemon does with a message, minus the network.
    fn on_message(&mut self, from: NodeId, message: Message) {
        let starts = self.starts();
        if let Some(order) = wire_map::order_from(from, &message) {
            assert_eq!(from, NodeId::SHMC, "order from {from}: {order:?}");
            if self.orders >= MAX_ORDERS {
                return;
            }
            self.orders += 1;
            self.on_order(&order);
            let started = self.starts() > starts;
            if let Order::RestartPartnerGuests {
                failed_slot,
                fence_confirmed,
                ..
            } = &order
            {
                assert!(
                    !started || (*fence_confirmed && *failed_slot == PARTNER),
                    "{order:?} started a guest"
                );
            }
            if self.fenced {
                assert!(!started, "{order:?} started a guest on a fenced blade");
            }
            if self.agent.is_fenced() {
                self.fenced = true;
            }
            return;
        }
        if from != NodeId(PARTNER) {
            assert_eq!(self.starts(), starts);
            return;
        }
        match message {
            Message::Heartbeat { health, .. } if health != Health::Ok => {}
            Message::Heartbeat { digest, .. } => {
                let stored = self.agent.partner_definitions();
                if let KeeperAction::Drop(stale) =
                    self.keeper.on_heartbeat(&digest, &stored, Instant::now())
                {
                    let keep: Vec<&str> = stored
                        .iter()
                        .map(|d| d.name.as_str())
                        .filter(|n| !stale.iter().any(|x| x == n))
                        .collect();
                    let _ = self.agent.retain_partner_definitions(&keep);
                }
            }
            msg @ Message::DefinitionPush { .. } => {
                if let Ok(Some((name, xml))) = self.assembler.add(&msg) {
                    if let Ok(xml) = String::from_utf8(xml) {
                        let def = GuestDef {
                            name: name.as_str().to_owned(),
                            xml,
                        };
                        if self.agent.store_partner_definition(def).is_ok() {
                            self.keeper.received(name.as_str());
                        }
                    }
                }
                assert!(self.assembler.in_progress() <= Assembler::MAX_PARTIAL);
            }
            Message::DefinitionRemove { name } => {
                let all = self.agent.partner_definitions();
                let keep: Vec<&str> = all
                    .iter()
                    .map(|d| d.name.as_str())
                    .filter(|n| *n != name.as_str())
                    .collect();
                let _ = self.agent.retain_partner_definitions(&keep);
            }
            _ => {}
        }
        assert_eq!(self.starts(), starts, "a partner message started a guest");
    }

    fn on_order(&mut self, order: &Order) {
        let acceptance = match self.agent.accept(order) {
            Ok(a) => a,
            Err(_) => return,
        };
        match acceptance {
            Acceptance::Refused(r) => {
                let guests: Vec<String> = self
                    .agent
                    .partner_definitions()
                    .into_iter()
                    .map(|d| d.name)
                    .collect();
                check_all(&wire_map::refusal_messages(order, ME, &r, &guests));
            }
            Acceptance::InProgress => {}
            Acceptance::Done { outcomes, result } => {
                check_outcomes(order, &outcomes);
                check_result(order, &result);
            }
            Acceptance::Execute => {
                let seen = Mutex::new(Vec::new());
                let emit = |o: &GuestOutcome| {
                    if let Ok(mut v) = seen.lock() {
                        v.push(o.clone());
                    }
                };
                if let Ok(result) = self.agent.execute(order, &emit) {
                    check_result(order, &result);
                }
                let outcomes = seen.into_inner().unwrap_or_default();
                check_outcomes(order, &outcomes);
            }
        }
    }
}

/// An answer the agent would send: valid, and sealable into one frame.
fn check(msg: &Message) {
    assert!(
        msg.is_valid(),
        "agent would send an invalid message: {msg:?}"
    );
    let header = Header {
        sender: NodeId(ME),
        dest: NodeId::SHMC,
        seq: 1,
    };
    let mut buf = [0u8; MAX_FRAME];
    if let Err(e) = seal(&key(), &header, msg, &mut buf) {
        panic!("agent answer cannot be sealed ({e}): {msg:?}");
    }
}

fn check_all(msgs: &[Message]) {
    msgs.iter().for_each(check);
}

fn check_outcomes(order: &Order, outcomes: &[GuestOutcome]) {
    for o in outcomes {
        check(&wire_map::outcome_message(order, ME, o));
        if let Some(m) = wire_map::moved_message(order, ME, o) {
            check(&m);
        }
    }
}

fn check_result(order: &Order, result: &OrderResult) {
    check_all(&wire_map::final_messages(order, ME, result));
}

/// Builds the datagram of one record.
fn datagram(ctl: u8, payload: &[u8], sender: NodeId, dest: NodeId, seq: u64) -> Vec<u8> {
    if ctl & 1 == 0 {
        return payload.to_vec();
    }
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len() + 32);
    frame.push(PROTOCOL_VERSION);
    frame.push(sender.0);
    frame.push(dest.0);
    frame.extend_from_slice(&seq.to_le_bytes());
    debug_assert_eq!(frame.len(), field::BODY);
    frame.extend_from_slice(payload);
    let mut tag = key().tag(&frame);
    if ctl & 0x20 != 0 {
        tag[usize::from(ctl >> 6) % tag.len()] ^= 1;
    }
    frame.extend_from_slice(&tag);
    frame
}

fuzz_target!(|data: &[u8]| {
    let dir = state_dir();
    let mut verifier = Verifier::new(key(), NodeId(ME));
    for id in [0, PARTNER, OTHER] {
        let _ = verifier.add_peer(NodeId(id));
    }
    let mut seqs = [0u64; 4];
    let mut blade: Option<Blade> = None;
    let mut rest = data;
    for _ in 0..MAX_RECORDS {
        let Some((&ctl, tail)) = rest.split_first() else {
            break;
        };
        let (len, tail) = match tail {
            [lo, hi, tail @ ..] => (usize::from(u16::from_le_bytes([*lo, *hi])), tail),
            _ => (tail.len(), &[][..]),
        };
        let (payload, tail) = tail.split_at(len.min(tail.len()));
        rest = tail;

        let who = usize::from((ctl >> 1) & 3);
        let sender = NodeId([0, PARTNER, OTHER, UNKNOWN][who]);
        let dest = if ctl & 0x10 != 0 {
            NodeId::SHMC
        } else {
            NodeId(ME)
        };
        if ctl & 0x08 == 0 || seqs[who] == 0 {
            seqs[who] += 1;
        }
        let frame = datagram(ctl, payload, sender, dest, seqs[who]);
        let Ok(Received {
            sender, message, ..
        }) = verifier.open(&frame)
        else {
            continue;
        };
        assert!(message.is_valid());
        assert!(message.sender_allowed(sender));
        assert!(frame.len() <= MAX_FRAME);
        let b = blade.get_or_insert_with(|| Blade::new(&dir));
        b.on_message(sender, message);
    }
    if blade.is_some() {
        drop(blade);
        let _ = std::fs::remove_dir_all(&dir);
    }
});
