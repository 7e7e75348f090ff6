//! `shelfha demo`: a simulated two-blade shelf in one process.
//!
//! The real ShMC core, driven by the plugin's one runtime
//! ([`shmc_plugin::edge::runtime::Runtime`], as every event source drives
//! it), hears emulated IPMCs ([`crate::sim`]) through real `ipmb_dev_int`
//! frames; the real agent core ([`blade_agent::execute::Agent`]) of each blade
//! drives libvirt's in-process test driver (a private `test:///PATH/node.xml`
//! per blade: its own hypervisor). What the daemons carry over UDP (orders,
//! outcomes, heartbeats) goes through the real protocol mappings on an
//! in-memory agent link ([`agents::MemoryAgents`]). A blade whose IPMC
//! reaches M1 loses payload power: its guests stop, as on a real shelf.
//!
//! The demo injects a failure, prints the timeline (event, decision, fence,
//! confirmation, each guest started on the partner, downtime) and checks at
//! every step that no guest runs on both blades.

mod agents;
mod error;
mod timeline;

use self::error::setup;
pub use self::error::DemoError;

use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use blade_agent::hypervisor::Hypervisor;
use shmc_plugin::config::{BladeConfig, ShelfConfig};
use shmc_plugin::edge::runtime::{Clocks, Detail, Inbound, Runtime};
use shmc_plugin::engine::{IncidentState, Shelf};
use shmc_plugin::wire::addr::{IpmbAddr, Slot};
use shmc_plugin::wire::event::MState;
use shmc_plugin::wire::ipmb::Message;

use self::agents::{open_blade, running, sync_definitions, Blade, MemoryAgents};
use self::timeline::{BackplanePort, Clock, Narrator, Timeline};
use crate::sim::{Backplane, Fault};

/// The ShMC's IPMB address.
const SHMC: IpmbAddr = IpmbAddr(0x20);
/// Blade 1 (slot 1) and blade 2 (slot 2) IPMC addresses.
const IPMC: [u8; 2] = [0x82, 0x84];
/// Agent heartbeat period, as the agent's default.
const HEARTBEAT_MS: u64 = 200;

/// A failure the demo can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// CPU temperature crosses its upper critical threshold (`blade_hardware`).
    Hardware,
    /// Watchdog 2 expires (`host_os`).
    Watchdog,
    /// OS run-time critical stop (`host_os`).
    OsStop,
    /// The blade's agent stops sending heartbeats while its IPMC stays in M4 (`host_os`).
    AgentSilent,
    /// libvirtd on the blade stops answering (`hypervisor`: the agent self-fences).
    Hypervisor,
    /// The blade's IPMC stops answering on IPMB (`blade_lost`: the agent self-fences).
    IpmcSilent,
    /// The operator opens the ejector handle (`blade_extraction`).
    Extraction,
}

impl Scenario {
    /// Parses a scenario name as given on the command line.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "hardware" => Self::Hardware,
            "watchdog" => Self::Watchdog,
            "os-stop" => Self::OsStop,
            "agent-silent" => Self::AgentSilent,
            "hypervisor" => Self::Hypervisor,
            "ipmc-silent" => Self::IpmcSilent,
            "extraction" => Self::Extraction,
            _ => return None,
        })
    }

    /// The names [`Scenario::parse`] accepts.
    pub const NAMES: &'static str =
        "hardware, watchdog, os-stop, agent-silent, hypervisor, ipmc-silent, extraction";

    fn describe(self) -> &'static str {
        match self {
            Self::Hardware => "CPU temperature crosses its upper critical threshold",
            Self::Watchdog => "the blade's watchdog expires (hard reset)",
            Self::OsStop => "the blade's OS stops (kernel panic)",
            Self::AgentSilent => "the blade's agent stops sending heartbeats (IPMC still in M4)",
            Self::Hypervisor => "libvirtd on the blade stops answering",
            Self::IpmcSilent => "the blade's IPMC stops answering on IPMB (its host still runs)",
            Self::Extraction => "an operator opens the blade's ejector handle",
        }
    }
}

/// Demo settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Failures, injected one after the other, alternating blades (first: slot 1).
    pub scenarios: Vec<Scenario>,
    /// Guests protected on slot 1 at start.
    pub guests: usize,
    /// Give up on a scenario after this long.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            scenarios: vec![Scenario::Hardware, Scenario::Watchdog],
            guests: 3,
            timeout: Duration::from_secs(20),
        }
    }
}

/// Runs the demo, printing to stdout; the error says what went wrong.
pub fn run(opts: &Options) -> Result<(), DemoError> {
    let state_root = std::env::temp_dir().join(format!("shelfha-demo-{}", std::process::id()));
    let result = run_in(opts, &state_root);
    let _ = std::fs::remove_dir_all(&state_root);
    result
}

fn phase_name(state: &IncidentState) -> String {
    match state {
        IncidentState::Migrating { .. } | IncidentState::Evacuating { .. } => "evacuating".into(),
        IncidentState::SelfFencing { .. } => "self-fencing (agent destroys its guests)".into(),
        IncidentState::Fencing { step, rounds, .. } => {
            format!("fencing over IPMB, step {step:?} (round {})", rounds + 1)
        }
        IncidentState::FailingOver { .. } => "fence confirmed; failing over to the partner".into(),
        IncidentState::Recovered { .. } => "recovered".into(),
    }
}

/// The simulated shelf: the runtime around the core, the backplane of
/// emulated IPMCs, the blades' agents on their in-memory link.
struct Shelfsim {
    rt: Runtime,
    backplane: Backplane,
    link: MemoryAgents,
    clock: Clock,
    next_heartbeat: u64,
}

fn run_in(opts: &Options, root: &std::path::Path) -> Result<(), DemoError> {
    let mut shelf_cfg = ShelfConfig::new(SHMC);
    for (i, &addr) in IPMC.iter().enumerate() {
        let slot = i as u8 + 1;
        let b = BladeConfig {
            slot: Slot(slot),
            ipmb_address: IpmbAddr(addr),
            partner: Slot(3 - slot),
            hot_swap_sensor: Some(crate::sim::ipmc::sensor::HOT_SWAP),
        };
        shelf_cfg.blades.push(b).map_err(|_| DemoError::Capacity)?;
    }
    let timing = shelf_cfg.timing;
    let rt = Runtime::new(shelf_cfg, Detail::Live)?;
    let vms: Vec<String> = (1..=opts.guests).map(|i| format!("vm-{i}")).collect();
    let mut protected = vms.clone();
    protected.push("db-1".into());
    let blades = [
        open_blade(Slot(1), Slot(2), root, &protected)?,
        open_blade(Slot(2), Slot(1), root, &protected)?,
    ];

    for name in &vms {
        let hv = &blades[0].hv;
        hv.define(&agents::guest_xml(name))
            .map_err(setup(format!("define {name}")))?;
        hv.start(name).map_err(setup(format!("start {name}")))?;
    }
    blades[1]
        .hv
        .define(&agents::guest_xml("db-1"))
        .map_err(setup("define db-1"))?;
    blades[1].hv.start("db-1").map_err(setup("start db-1"))?;
    sync_definitions(&blades)?;

    println!("shelfha demo: a simulated ATCA shelf with two paired blades");
    println!("  ShMC at IPMB 0x{SHMC:02x}; slot 1 = IPMC 0x{:02x}, slot 2 = IPMC 0x{:02x}; partners of each other", IPMC[0], IPMC[1]);
    println!("  each blade: a blade agent on its own libvirt test-driver node; guests on slot 1: {:?}, on slot 2: {:?}", running(&blades[0].hv), running(&blades[1].hv));
    println!(
        "  defaults: heartbeat {HEARTBEAT_MS} ms, heartbeat timeout {} ms, probe every {} ms, fence step deadline {} ms, confirmation poll {} ms",
        timing.heartbeat_timeout_ms, timing.probe_interval_ms, timing.fence_step_deadline_ms, timing.confirm_poll_ms
    );

    println!("  emulated IPMCs: a deactivation walks M4 -> M6 -> M1 in 20 ms; every frame crosses the bus as bytes");
    let clock = Clock::new();
    let mut sim = Shelfsim {
        rt,
        backplane: Backplane::new(&IPMC, SHMC.get()),
        link: MemoryAgents::new(
            blades,
            Narrator {
                clock,
                timeline: None,
            },
        ),
        clock,
        next_heartbeat: 0,
    };
    for slot in [Slot(1), Slot(2)] {
        sim.link.hello(slot);
    }
    let mut failed = 0usize;
    // Let the shelf settle (first probes answered, heartbeats flowing).
    sim.step_until(Duration::from_millis(600), |_, _| false)?;

    for (n, &scenario) in opts.scenarios.iter().enumerate() {
        let victim = failed;
        let partner = 1 - victim;
        let v_slot = sim.link.blades[victim].slot;
        let p_slot = sim.link.blades[partner].slot;
        println!();
        println!(
            "== failure {}: slot {v_slot}: {} ==",
            n + 1,
            scenario.describe()
        );
        let before = running(&sim.link.blades[victim].hv);
        println!(
            "  before: slot {v_slot} runs {before:?}; slot {p_slot} runs {:?}",
            running(&sim.link.blades[partner].hv)
        );
        let tl = Rc::new(Timeline::new(&clock));
        sim.link.narrator.timeline = Some(tl.clone());
        let now = clock.now();
        let ipmc = IPMC[victim];
        match scenario {
            Scenario::Hardware => sim.inject(ipmc, now, Fault::CriticalTemperature),
            Scenario::Watchdog => sim.inject(ipmc, now, Fault::WatchdogExpiry),
            Scenario::OsStop => sim.inject(ipmc, now, Fault::OsCriticalStop),
            Scenario::Extraction => sim.inject(ipmc, now, Fault::HandleOpened),
            Scenario::IpmcSilent => sim.inject(ipmc, now, Fault::Silent),
            Scenario::AgentSilent => sim.link.blades[victim].agent_silent = true,
            Scenario::Hypervisor => {
                sim.link.blades[victim].hypervisor_down = true;
                sim.link.hypervisor(v_slot, false);
            }
        }
        if matches!(scenario, Scenario::Watchdog | Scenario::OsStop) {
            // The host is down: its agent neither sends heartbeats nor answers.
            sim.link.blades[victim].agent_silent = true;
        }
        sim.link
            .narrator
            .say(&format!("injected: {}", scenario.describe()));
        let expect: Vec<String> = before.clone();
        if scenario == Scenario::IpmcSilent {
            // Its host and agent still run and still heartbeat: the IPMC's silence is not
            // corroborated, so the blade stays in service (alert `ipmc_lost`, nothing restarted).
            let tl2 = tl.clone();
            let done = sim.step_until(opts.timeout, |blades, _| {
                tl2.alerts.borrow().iter().any(|k| k == "ipmc_lost")
                    && running(&blades[victim].hv) == expect
                    && !expect
                        .iter()
                        .any(|g| running(&blades[partner].hv).contains(g))
            })?;
            if !done {
                return Err(DemoError::NotKeptInService {
                    failure: n + 1,
                    slot: v_slot,
                    limit: opts.timeout,
                });
            }
            println!(
                "  no downtime: slot {v_slot} stays in service and still runs {:?}; slot {p_slot} runs {:?}",
                running(&sim.link.blades[victim].hv),
                running(&sim.link.blades[partner].hv)
            );
            sim.link.narrator.timeline = None;
            // Repair: the IPMC is replaced or reset and answers again; nothing else changed.
            if let Some(i) = sim.backplane.ipmc(IPMC[victim]) {
                i.recover(clock.now());
            }
            sim.step_until(Duration::from_millis(600), |_, _| false)?;
            println!(
                "  repaired: slot {v_slot}'s IPMC answers again ({:?})",
                sim.backplane.ipmc(IPMC[victim]).map(|i| i.state())
            );
            continue;
        }
        let done = sim.step_until(opts.timeout, |blades, shelf| {
            // Done when every guest runs on the partner and, where the failure
            // fences over IPMB, the ShMC has seen the blade reach M1/M0 (a hypervisor
            // failure is fenced by its agent's self-fence).
            let fenced = scenario == Scenario::Hypervisor
                || matches!(
                    shelf.blade(v_slot).and_then(|b| b.m_state),
                    Some(MState::M1 | MState::M0)
                );
            expect
                .iter()
                .all(|g| running(&blades[partner].hv).contains(g))
                && running(&blades[victim].hv).is_empty()
                && fenced
        })?;
        if !done {
            return Err(DemoError::NotFailedOver {
                failure: n + 1,
                slot: v_slot,
                partner: p_slot,
                limit: opts.timeout,
            });
        }
        let last_start = tl.starts.borrow().iter().copied().max().unwrap_or(tl.t0_us);
        let downtime = last_start.saturating_sub(tl.t0_us);
        println!(
            "  total downtime (failure injected -> last guest running on the partner): {:.1} ms",
            downtime as f64 / 1000.0
        );
        println!(
            "  after: slot {v_slot} runs {:?}; slot {p_slot} runs {:?}",
            running(&sim.link.blades[victim].hv),
            running(&sim.link.blades[partner].hv)
        );
        sim.link.narrator.timeline = None;

        // Repair: the blade comes back (activated, agent registered) and the pair is healthy again.
        let now = clock.now();
        if let Some(i) = sim.backplane.ipmc(IPMC[victim]) {
            i.recover(now);
        }
        // A repaired blade boots with a fresh agent: new state directory, no fence latched.
        let fresh = open_blade(v_slot, p_slot, &root.join(format!("repair{n}")), &protected)?;
        sim.link.blades[victim] = fresh;
        sim.link.hypervisor(v_slot, true);
        sim.link.hello(v_slot);
        sim.step_until(Duration::from_millis(600), |_, _| false)?;
        sync_definitions(&sim.link.blades)?;
        println!(
            "  repaired: slot {v_slot} back in {:?}, its agent registered again",
            sim.backplane.ipmc(IPMC[victim]).map(|i| i.state())
        );
        failed = partner;
    }
    println!();
    println!("no guest ran on both blades at any step.");
    Ok(())
}

/// The timeline line of a Platform Event heard by the ShMC.
fn event_text(ev: &shmc_plugin::wire::event::PlatformEvent) -> String {
    let mut text = format!("IPMB event from 0x{:02x}: ", ev.generator);
    match ev.hot_swap() {
        Some(hs) => {
            let _ = write!(
                text,
                "hot swap {} -> M{}",
                hs.previous
                    .map(|p| format!("M{}", p as u8))
                    .unwrap_or("?".into()),
                hs.current as u8
            );
        }
        None => {
            let _ = write!(
                text,
                "sensor type 0x{:02x} #{} offset {}",
                u8::from(ev.sensor_type),
                ev.sensor_number,
                ev.offset()
            );
        }
    }
    text
}

impl Shelfsim {
    fn inject(&mut self, addr: u8, now: u64, fault: Fault) {
        if let Some(i) = self.backplane.ipmc(addr) {
            i.inject(now, fault);
        }
    }

    /// Runs the shelf until `done` or `limit`; returns whether `done` was reached.
    fn step_until(
        &mut self,
        limit: Duration,
        done: impl Fn(&[Blade; 2], &Shelf) -> bool,
    ) -> Result<bool, DemoError> {
        let deadline = Instant::now() + limit;
        let mut phases: [Option<(u32, String)>; 2] = [None, None];
        let mut states: [MState; 2] = [MState::M4, MState::M4];
        let mut finishing = false;
        loop {
            let now = self.clock.now();
            let narrator = self.link.narrator.clone();
            // IPMCs -> ShMC.
            let mut msgs: Vec<Message> = Vec::new();
            self.backplane.poll(now, &mut msgs);
            for m in &msgs {
                // Every message crosses the bus as bytes and is validated again on arrival.
                let Ok(m) = Message::from_bytes(m.as_bytes()) else {
                    continue;
                };
                let mut port = BackplanePort {
                    backplane: &mut self.backplane,
                    now,
                    narrator: &narrator,
                };
                if let Inbound::Event { event, .. } = self.rt.on_message(now, &m.repr(), &mut port)
                {
                    narrator.say(&event_text(&event));
                }
            }
            // Payload power follows the hot-swap state: M1/M0 means off.
            for (i, b) in self.link.blades.iter_mut().enumerate() {
                let st = self
                    .backplane
                    .ipmc(IPMC[i])
                    .map(|x| x.state())
                    .unwrap_or(MState::M4);
                if st != states[i] {
                    states[i] = st;
                    if matches!(st, MState::M1 | MState::M0) && b.powered {
                        b.powered = false;
                        for g in running(&b.hv) {
                            let _ = b.hv.destroy(&g);
                        }
                        narrator.say(&format!(
                            "slot {}: IPMC in M{}: payload power off, its guests are gone",
                            b.slot, st as u8
                        ));
                    }
                }
            }
            // Agents -> ShMC: heartbeats, then whatever the agents sent.
            if now >= self.next_heartbeat {
                self.next_heartbeat = now + HEARTBEAT_MS;
                self.link.heartbeats();
            }
            self.rt.on_agents(Clocks::same(now), &mut self.link);
            self.rt.poll(now);
            // ShMC -> IPMCs and agents; decisions and alerts to the timeline.
            let mut port = BackplanePort {
                backplane: &mut self.backplane,
                now,
                narrator: &narrator,
            };
            let mut story = narrator.clone();
            self.rt.carry_out(
                Clocks::same(now),
                &mut port,
                Some(&mut self.link),
                &mut story,
            )?;
            // Incident phases, as the core sees them.
            for (i, b) in self.link.blades.iter().enumerate() {
                let inc = self.rt.shelf().blade(b.slot).and_then(|s| s.incident);
                let cur = inc.map(|x| (x.id, phase_name(&x.state)));
                if cur != phases[i] {
                    if let Some((id, name)) = &cur {
                        narrator.say(&format!("incident #{id} on slot {}: {name}", b.slot));
                    }
                    phases[i] = cur;
                }
            }
            // Safety: never the same guest on both blades.
            let blades = &self.link.blades;
            let (a, b) = (running(&blades[0].hv), running(&blades[1].hv));
            if let Some(g) = a.iter().find(|g| b.contains(g)) {
                return Err(DemoError::BothBlades(g.clone()));
            }
            if finishing {
                return Ok(true);
            }
            if done(blades, self.rt.shelf()) {
                // One more turn: what the agents answered last reaches the
                // core (an agent's report closes its incident) and the timeline.
                finishing = true;
                continue;
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
