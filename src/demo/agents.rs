//! The demo's blades and their agents, behind an in-memory agent link.
//!
//! [`MemoryAgents`] is an [`AgentLink`]: the core's orders go through the
//! real ShMC-side mapping ([`order_message`]) and the agent-side one
//! ([`blade_agent::wire_map::order_from`]) to each blade's real agent core, and
//! what the agent answers (outcomes, closing messages, heartbeats, hellos)
//! comes back as protocol messages through the real [`agent_input`] mapping,
//! as the daemons carry them over UDP.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use blade_agent::config::{Config as AgentConfig, Partner, Protection};
use blade_agent::execute::{Acceptance, Agent};
use blade_agent::hypervisor::libvirt::LibvirtHypervisor;
use blade_agent::hypervisor::Hypervisor;
use blade_agent::order::{GuestOutcome, Order as AgentOrder, OrderResult};
use blade_agent::store::definitions::GuestDef;
use blade_agent::wire_map::{final_messages, order_from, outcome_message, streams_outcomes};
use shelfha_proto::{Capabilities, Health, Message, NodeId, SoftwareVersion};
use shmc_plugin::edge::agents::udp::{agent_input, order_message};
use shmc_plugin::edge::agents::AgentLink;
use shmc_plugin::engine::{AgentInput, Order};
use shmc_plugin::wire::addr::Slot;

use super::error::{setup, DemoError};
use super::timeline::Narrator;
use super::HEARTBEAT_MS;

/// Incident base on the in-memory link: the core's decision numbers are the
/// agents' incidents (each demo run starts its agents afresh).
const INCIDENT_BASE: u32 = 0;

/// One blade of the demo: its hypervisor, its agent, and what the demo simulates around them.
pub(super) struct Blade {
    pub slot: Slot,
    pub hv: Arc<LibvirtHypervisor>,
    pub agent: Agent<LibvirtHypervisor>,
    /// Heartbeats stopped (agent silent) or hypervisor reported down.
    pub agent_silent: bool,
    pub hypervisor_down: bool,
    pub powered: bool,
}

fn agent_config(slot: u8, partner: u8, state_dir: PathBuf, guests: &[String]) -> AgentConfig {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    AgentConfig {
        slot,
        shmc: addr,
        listen: addr,
        partner: Partner {
            slot: partner,
            address: addr,
            libvirt_uri: None,
            migration_uri: None,
        },
        libvirt_uri: "test:///default".into(),
        key_file: PathBuf::from("/dev/null"),
        qemu_run_dir: state_dir.join("run"),
        state_dir,
        heartbeat: Duration::from_millis(HEARTBEAT_MS),
        fence_timeout: Duration::from_millis(500),
        evacuate_timeout: Duration::from_secs(5),
        start_timeout: Duration::from_millis(blade_agent::config::DEFAULT_START_TIMEOUT_MS),
        start_workers: 4,
        memory_reserve_kib: 0,
        protection: Protection::List(guests.to_vec()),
        default_priority: 0,
        priorities: BTreeMap::new(),
        zero_downtime: Default::default(),
        allowed_storage_paths: blade_agent::config::DEFAULT_ALLOWED_STORAGE_PATHS
            .iter()
            .map(PathBuf::from)
            .collect(),
        allowed_emulators: blade_agent::config::DEFAULT_ALLOWED_EMULATORS
            .iter()
            .map(PathBuf::from)
            .collect(),
        allow_network_disks: false,
        watchdog: None,
    }
}

pub(super) fn guest_xml(name: &str) -> String {
    format!(
        "<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64'>hvm</type></os></domain>"
    )
}

pub(super) fn open_blade(
    slot: Slot,
    partner: Slot,
    root: &std::path::Path,
    guests: &[String],
) -> Result<Blade, DemoError> {
    let dir = root.join(format!("slot{slot}"));
    std::fs::create_dir_all(&dir).map_err(setup(dir.display().to_string()))?;
    // Each blade gets its own node file: libvirt shares the `test:///default` node among
    // all connections of a process, but opens a private node per `test:///PATH`.
    let node = dir.join("node.xml");
    std::fs::write(&node, "<node><memory>8388608</memory></node>\n")
        .map_err(setup(node.display().to_string()))?;
    let mut cfg = agent_config(slot.get(), partner.get(), dir.clone(), guests);
    cfg.libvirt_uri = format!("test://{}", node.display());
    let hv = Arc::new(
        LibvirtHypervisor::open(&cfg.libvirt_uri, cfg.qemu_run_dir.clone())
            .map_err(setup(format!("slot {slot}: libvirt {}", cfg.libvirt_uri)))?,
    );
    let agent = Agent::new(hv.clone(), cfg).map_err(setup(format!("slot {slot}: agent")))?;
    Ok(Blade {
        slot,
        hv,
        agent,
        agent_silent: false,
        hypervisor_down: false,
        powered: true,
    })
}

pub(super) fn running(hv: &LibvirtHypervisor) -> Vec<String> {
    let mut v: Vec<String> = hv
        .list_guests()
        .unwrap_or_default()
        .into_iter()
        .filter(|g| g.state.is_active())
        .map(|g| g.name)
        .collect();
    v.sort();
    v
}

/// Pushes each blade's protected definitions to its partner, as agents do over UDP.
pub(super) fn sync_definitions(blades: &[Blade; 2]) -> Result<(), DemoError> {
    for (from, to) in [(0, 1), (1, 0)] {
        if !blades[from].powered {
            continue;
        }
        let defs: Vec<GuestDef> =
            blades[from]
                .agent
                .local_definitions()
                .map_err(setup(format!(
                    "slot {}: protected definitions",
                    blades[from].slot
                )))?;
        for d in defs {
            blades[to]
                .agent
                .store_partner_definition(d)
                .map_err(setup(format!(
                    "slot {}: partner definition",
                    blades[to].slot
                )))?;
        }
    }
    Ok(())
}

/// The agents of the two blades, linked to the core in memory.
pub(super) struct MemoryAgents {
    /// Slot 1 and slot 2.
    pub blades: [Blade; 2],
    /// What the agents sent the ShMC and the core has not read yet: (slot, message).
    inbox: VecDeque<(Slot, Message)>,
    /// Heartbeats sent so far.
    beat: u64,
    /// Where the timeline goes.
    pub narrator: Narrator,
}

impl MemoryAgents {
    pub fn new(blades: [Blade; 2], narrator: Narrator) -> Self {
        Self {
            blades,
            inbox: VecDeque::new(),
            beat: 0,
            narrator,
        }
    }

    /// The agent of `slot` says hello (at start, after a repair).
    pub fn hello(&mut self, slot: Slot) {
        let hello = Message::Hello {
            slot: slot.get(),
            version: SoftwareVersion {
                major: 0,
                minor: 1,
                patch: 0,
            },
            capabilities: Capabilities::default(),
            heartbeat_ms: HEARTBEAT_MS as u32,
            watchdog_ms: None,
        };
        self.inbox.push_back((slot, hello));
    }

    /// The agent of `slot` reports its hypervisor down or up again.
    pub fn hypervisor(&mut self, slot: Slot, up: bool) {
        let m = if up {
            Message::HypervisorUp
        } else {
            Message::HypervisorDown
        };
        self.inbox.push_back((slot, m));
    }

    /// A heartbeat of every agent whose host runs.
    pub fn heartbeats(&mut self) {
        self.beat += 1;
        // Both agents beat together: each hears its partner at every beat while the
        // partner's host runs and its agent speaks.
        let speaks: Vec<bool> = self
            .blades
            .iter()
            .map(|b| b.powered && !b.agent_silent)
            .collect();
        for (i, b) in self.blades.iter().enumerate() {
            if b.powered && !b.agent_silent {
                let health = if b.hypervisor_down {
                    Health::Down
                } else {
                    Health::Ok
                };
                let hb = Message::Heartbeat {
                    beat: self.beat,
                    health,
                    protected: 0,
                    digest: [0; 32],
                    partner_heard_ms: speaks.get(1 - i).copied().unwrap_or(false).then_some(0),
                    running: 0,
                    partner_seq: None,
                };
                self.inbox.push_back((b.slot, hb));
            }
        }
    }

    /// Carries out `order` on the agent of blade `idx` (when its host runs)
    /// and queues what the agent answers.
    fn execute(&mut self, idx: usize, order: &AgentOrder) {
        let blade = &self.blades[idx];
        let slot = blade.slot;
        let say = |text: &str| self.narrator.say(text);
        if !blade.powered || blade.agent_silent {
            say(&format!(
                "slot {slot}: its agent does not answer (host down); order not delivered"
            ));
            return;
        }
        match blade.agent.accept(order) {
            Ok(Acceptance::Execute) => {}
            Ok(other) => {
                say(&format!("slot {slot}: order not executed: {other:?}"));
                return;
            }
            Err(e) => {
                say(&format!("slot {slot}: agent error: {e}"));
                return;
            }
        }
        // Outcomes arrive from the agent's worker threads as each guest is handled.
        let outcomes = std::sync::Mutex::new(Vec::<(u128, GuestOutcome)>::new());
        let clock = self.narrator.clock;
        let emit = |o: &GuestOutcome| {
            outcomes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((clock.micros(), o.clone()));
        };
        let result = blade.agent.execute(order, &emit);
        for (at, o) in outcomes.into_inner().unwrap_or_else(|p| p.into_inner()) {
            self.narrator.say_at(
                at,
                &format!(
                    "slot {slot}: guest {}: {:?} ({} ms after the order)",
                    o.name, o.result, o.elapsed_ms
                ),
            );
            if matches!(order, AgentOrder::RestartPartnerGuests { .. }) && o.result.is_success() {
                self.narrator.started_at(at);
            }
            if streams_outcomes(order) {
                self.inbox
                    .push_back((slot, outcome_message(order, slot.get(), &o)));
            }
        }
        match &result {
            Ok(OrderResult::Fenced(r)) => self.narrator.say(&format!(
                "slot {slot}: self-fence: {} destroyed, {} killed, {} failed",
                r.destroyed, r.killed, r.failed
            )),
            Ok(_)
                if matches!(
                    order,
                    AgentOrder::RestartPartnerGuests { .. } | AgentOrder::Evacuate { .. }
                ) => {}
            Ok(r) => self.narrator.say(&format!("slot {slot}: {r:?}")),
            Err(e) => self
                .narrator
                .say(&format!("slot {slot}: order failed: {e}")),
        }
        if let Ok(r) = &result {
            for m in final_messages(order, slot.get(), r) {
                self.inbox.push_back((slot, m));
            }
        }
    }
}

impl AgentLink for MemoryAgents {
    fn send_order(&mut self, _now_ms: u64, slot: Slot, order: &Order) {
        let Some(idx) = self.blades.iter().position(|b| b.slot == slot) else {
            return;
        };
        self.narrator
            .say(&format!("order to slot {slot}: {order:?}"));
        let message = order_message(order, INCIDENT_BASE);
        if let Some(agent_order) = order_from(NodeId::SHMC, &message) {
            self.execute(idx, &agent_order);
        }
    }

    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn receive(&mut self, _now_ms: u64, sink: &mut dyn FnMut(Slot, AgentInput)) {
        while let Some((slot, message)) = self.inbox.pop_front() {
            if let Some(input) = agent_input(slot, message, INCIDENT_BASE) {
                sink(slot, input);
            }
        }
    }

    fn tick(&mut self, _now_ms: u64) {}
}
