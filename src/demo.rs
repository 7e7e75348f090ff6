//! `shelfha demo`: a simulated two-blade shelf in one process.
//!
//! The real ShMC core ([`shmc_plugin::engine::Shelf`]) hears emulated IPMCs
//! ([`crate::sim`]) through real `ipmb_dev_int` frames; the real agent core
//! ([`blade_agent::logic::Agent`]) of each blade drives libvirt's in-process
//! test driver (a private `test:///PATH/node.xml` per blade: its own
//! hypervisor). What the daemons carry over UDP (orders, outcomes, heartbeats)
//! is handed over directly here. A blade whose IPMC reaches M1 loses payload
//! power: its guests stop, as on a real shelf.
//!
//! The demo injects a failure, prints the timeline (event, decision, fence,
//! confirmation, each guest started on the partner, downtime) and checks at
//! every step that no guest runs on both blades.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blade_agent::config::{Config as AgentConfig, Partner, Protection};
use blade_agent::hypervisor::libvirt::LibvirtHypervisor;
use blade_agent::hypervisor::Hypervisor;
use blade_agent::logic::{Acceptance, Agent};
use blade_agent::order::{GuestOutcome, Order as AgentOrder, OrderResult};
use blade_agent::store::definitions::GuestDef;
use shmc_plugin::config::{BladeConfig, ShelfConfig};
use shmc_plugin::engine::{AgentInput, GuestName, Order, Output, Phase, Shelf};
use shmc_plugin::event::MState;
use shmc_plugin::wire::cmd;
use shmc_plugin::wire::ipmb::{Message, Repr};

use crate::sim::{Backplane, Fault};

/// The ShMC's IPMB address.
const SHMC: u8 = 0x20;
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

/// One blade of the demo: its hypervisor, its agent, and what the demo simulates around them.
struct Blade {
    slot: u8,
    hv: Arc<LibvirtHypervisor>,
    agent: Agent<LibvirtHypervisor>,
    /// Heartbeats stopped (agent silent) or hypervisor reported down.
    agent_silent: bool,
    hypervisor_down: bool,
    powered: bool,
}

/// Runs the demo, printing to stdout; the error says what went wrong.
pub fn run(opts: &Options) -> Result<(), String> {
    let state_root = std::env::temp_dir().join(format!("shelfha-demo-{}", std::process::id()));
    let result = run_in(opts, &state_root);
    let _ = std::fs::remove_dir_all(&state_root);
    result
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
    }
}

fn guest_xml(name: &str) -> String {
    format!(
        "<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64'>hvm</type></os></domain>"
    )
}

fn open_blade(
    slot: u8,
    partner: u8,
    root: &std::path::Path,
    guests: &[String],
) -> Result<Blade, String> {
    let dir = root.join(format!("slot{slot}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Each blade gets its own node file: libvirt shares the `test:///default` node among
    // all connections of a process, but opens a private node per `test:///PATH`.
    let node = dir.join("node.xml");
    std::fs::write(&node, "<node><memory>8388608</memory></node>\n")
        .map_err(|e| format!("{}: {e}", node.display()))?;
    let mut cfg = agent_config(slot, partner, dir.clone(), guests);
    cfg.libvirt_uri = format!("test://{}", node.display());
    let hv = Arc::new(
        LibvirtHypervisor::open(&cfg.libvirt_uri, cfg.qemu_run_dir.clone())
            .map_err(|e| format!("slot {slot}: libvirt {}: {e}", cfg.libvirt_uri))?,
    );
    let agent = Agent::new(hv.clone(), cfg).map_err(|e| format!("slot {slot}: agent: {e}"))?;
    Ok(Blade {
        slot,
        hv,
        agent,
        agent_silent: false,
        hypervisor_down: false,
        powered: true,
    })
}

fn running(hv: &LibvirtHypervisor) -> Vec<String> {
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
fn sync_definitions(blades: &[Blade; 2]) -> Result<(), String> {
    for (from, to) in [(0, 1), (1, 0)] {
        if !blades[from].powered {
            continue;
        }
        let defs: Vec<GuestDef> = blades[from]
            .agent
            .local_definitions()
            .map_err(|e| e.to_string())?;
        for d in defs {
            blades[to]
                .agent
                .store_partner_definition(d)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

struct Clock {
    start: Instant,
}

impl Clock {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
    fn micros(&self) -> u128 {
        self.start.elapsed().as_micros()
    }
}

/// Timeline lines relative to the injection.
struct Timeline {
    t0_us: u128,
    /// When each guest of the failed blade was started on the partner (clock micros).
    starts: std::cell::RefCell<Vec<u128>>,
}

impl Timeline {
    fn new(clock: &Clock) -> Self {
        Self {
            t0_us: clock.micros(),
            starts: Default::default(),
        }
    }

    fn line(&self, clock: &Clock, text: &str) {
        self.line_at(clock.micros(), text);
    }

    fn line_at(&self, at_us: u128, text: &str) {
        let dt = at_us.saturating_sub(self.t0_us);
        println!("  {:>9.3} ms  {text}", dt as f64 / 1000.0);
    }
}

fn to_agent_order(order: &Order) -> Option<AgentOrder> {
    Some(match order {
        Order::FenceSelf { incident } => AgentOrder::FenceSelf {
            incident: *incident,
        },
        Order::RestartPartnerGuests {
            failed_slot,
            incident,
            subset,
            ..
        } => AgentOrder::RestartPartnerGuests {
            incident: *incident,
            failed_slot: *failed_slot,
            // The core sends this order only once the failed blade's fence is confirmed.
            fence_confirmed: true,
            subset: subset.as_ref().map(|g| vec![g.as_str().to_owned()]),
        },
        Order::Evacuate { incident, to_slot } => AgentOrder::Evacuate {
            incident: *incident,
            to_slot: *to_slot,
        },
        Order::RestartGuest { name, incident } => AgentOrder::RestartGuest {
            incident: *incident,
            name: name.as_str().to_owned(),
        },
        Order::DestroyGuest { .. } => return None,
        Order::Migrate { incident, to_slot } => AgentOrder::Migrate {
            incident: *incident,
            to_slot: *to_slot,
        },
    })
}

fn phase_name(p: &Phase) -> String {
    match p {
        Phase::Evacuating { .. } => "evacuating".into(),
        Phase::SelfFencing { .. } => "self-fencing (agent destroys its guests)".into(),
        Phase::Fencing { step, rounds, .. } => {
            format!("fencing over IPMB, step {step:?} (round {})", rounds + 1)
        }
        Phase::FailingOver => "fence confirmed; failing over to the partner".into(),
        Phase::Recovered => "recovered".into(),
    }
}

fn run_in(opts: &Options, root: &std::path::Path) -> Result<(), String> {
    let mut shelf_cfg = ShelfConfig::new(SHMC);
    for (i, &addr) in IPMC.iter().enumerate() {
        let slot = i as u8 + 1;
        let b = BladeConfig {
            slot,
            ipmb_address: addr,
            partner: 3 - slot,
            hot_swap_sensor: Some(crate::sim::ipmc::sensor::HOT_SWAP),
        };
        shelf_cfg
            .blades
            .push(b)
            .map_err(|_| "shelf capacity".to_string())?;
    }
    let timing = shelf_cfg.timing;
    let mut shelf = Shelf::new(shelf_cfg).map_err(|e| format!("shelf configuration: {e}"))?;
    let mut backplane = Backplane::new(&IPMC, SHMC);
    let vms: Vec<String> = (1..=opts.guests).map(|i| format!("vm-{i}")).collect();
    let mut protected = vms.clone();
    protected.push("db-1".into());
    let mut blades = [
        open_blade(1, 2, root, &protected)?,
        open_blade(2, 1, root, &protected)?,
    ];

    for name in &vms {
        let hv = &blades[0].hv;
        hv.define(&guest_xml(name))
            .map_err(|e| format!("define {name}: {e}"))?;
        hv.start(name).map_err(|e| format!("start {name}: {e}"))?;
    }
    blades[1]
        .hv
        .define(&guest_xml("db-1"))
        .map_err(|e| e.to_string())?;
    blades[1].hv.start("db-1").map_err(|e| e.to_string())?;
    sync_definitions(&blades)?;

    println!("shelfha demo: a simulated ATCA shelf with two paired blades");
    println!("  ShMC at IPMB 0x{SHMC:02x}; slot 1 = IPMC 0x{:02x}, slot 2 = IPMC 0x{:02x}; partners of each other", IPMC[0], IPMC[1]);
    println!("  each blade: a blade agent on its own libvirt test-driver node; guests on slot 1: {:?}, on slot 2: {:?}", running(&blades[0].hv), running(&blades[1].hv));
    println!(
        "  defaults: heartbeat {HEARTBEAT_MS} ms, heartbeat timeout {} ms, probe every {} ms, fence step deadline {} ms, confirmation poll {} ms",
        timing.heartbeat_timeout_ms, timing.probe_interval_ms, timing.fence_step_deadline_ms, timing.confirm_poll_ms
    );

    println!("  emulated IPMCs: a deactivation walks M4 -> M6 -> M1 in 20 ms; every frame crosses the bus as bytes");
    let clock = Clock {
        start: Instant::now(),
    };
    for b in &blades {
        shelf.on_agent(clock.now(), b.slot, AgentInput::Hello);
    }
    let mut next_heartbeat = 0u64;
    let mut failed = 0usize;
    // Let the shelf settle (first probes answered, heartbeats flowing).
    step_until(
        &mut shelf,
        &mut backplane,
        &mut blades,
        &clock,
        &mut next_heartbeat,
        None,
        Duration::from_millis(600),
        |_, _| false,
    )?;

    for (n, &scenario) in opts.scenarios.iter().enumerate() {
        let victim = failed;
        let partner = 1 - victim;
        let v_slot = blades[victim].slot;
        println!();
        println!(
            "== failure {}: slot {v_slot}: {} ==",
            n + 1,
            scenario.describe()
        );
        let before = running(&blades[victim].hv);
        println!(
            "  before: slot {v_slot} runs {before:?}; slot {} runs {:?}",
            blades[partner].slot,
            running(&blades[partner].hv)
        );
        let tl = Timeline::new(&clock);
        let now = clock.now();
        match scenario {
            Scenario::Hardware => inject(
                &mut backplane,
                IPMC[victim],
                now,
                Fault::CriticalTemperature,
            ),
            Scenario::Watchdog => inject(&mut backplane, IPMC[victim], now, Fault::WatchdogExpiry),
            Scenario::OsStop => inject(&mut backplane, IPMC[victim], now, Fault::OsCriticalStop),
            Scenario::Extraction => inject(&mut backplane, IPMC[victim], now, Fault::HandleOpened),
            Scenario::IpmcSilent => inject(&mut backplane, IPMC[victim], now, Fault::Silent),
            Scenario::AgentSilent => blades[victim].agent_silent = true,
            Scenario::Hypervisor => {
                blades[victim].hypervisor_down = true;
                shelf.on_agent(now, v_slot, AgentInput::HypervisorDown);
            }
        }
        if matches!(scenario, Scenario::Watchdog | Scenario::OsStop) {
            // The host is down: its agent neither sends heartbeats nor answers.
            blades[victim].agent_silent = true;
        }
        tl.line(&clock, &format!("injected: {}", scenario.describe()));
        let expect: Vec<String> = before.clone();
        let done = step_until(
            &mut shelf,
            &mut backplane,
            &mut blades,
            &clock,
            &mut next_heartbeat,
            Some(&tl),
            opts.timeout,
            |blades, shelf| {
                // Done when every guest runs on the partner and, where the failure
                // fences over IPMB, the ShMC has seen the blade reach M1/M0 (a silent
                // IPMC reports nothing: its agent's self-fence is the fence).
                let fenced = matches!(scenario, Scenario::Hypervisor | Scenario::IpmcSilent)
                    || matches!(
                        shelf.blade(v_slot).and_then(|b| b.m_state),
                        Some(MState::M1 | MState::M0)
                    );
                expect
                    .iter()
                    .all(|g| running(&blades[partner].hv).contains(g))
                    && running(&blades[victim].hv).is_empty()
                    && fenced
            },
        )?;
        if !done {
            return Err(format!(
                "failure {}: guests of slot {v_slot} not running on slot {} within {:?}",
                n + 1,
                blades[partner].slot,
                opts.timeout
            ));
        }
        let last_start = tl.starts.borrow().iter().copied().max().unwrap_or(tl.t0_us);
        let downtime = last_start.saturating_sub(tl.t0_us);
        println!(
            "  total downtime (failure injected -> last guest running on the partner): {:.1} ms",
            downtime as f64 / 1000.0
        );
        println!(
            "  after: slot {v_slot} runs {:?}; slot {} runs {:?}",
            running(&blades[victim].hv),
            blades[partner].slot,
            running(&blades[partner].hv)
        );

        // Repair: the blade comes back (activated, agent registered) and the pair is healthy again.
        let now = clock.now();
        if let Some(i) = backplane.ipmc(IPMC[victim]) {
            if scenario == Scenario::IpmcSilent {
                // Its IPMC never left M4 for the ShMC: the repair cycles the blade's FRU.
                i.cycle(now);
            } else {
                i.recover(now);
            }
        }
        let b = &mut blades[victim];
        b.powered = true;
        b.agent_silent = false;
        b.hypervisor_down = false;
        // A repaired blade boots with a fresh agent: new state directory, no fence latched.
        let fresh = open_blade(
            b.slot,
            blades[partner].slot,
            &root.join(format!("repair{n}")),
            &protected,
        )?;
        blades[victim] = fresh;
        shelf.on_agent(now, v_slot, AgentInput::HypervisorUp);
        shelf.on_agent(now, v_slot, AgentInput::Hello);
        step_until(
            &mut shelf,
            &mut backplane,
            &mut blades,
            &clock,
            &mut next_heartbeat,
            None,
            Duration::from_millis(600),
            |_, _| false,
        )?;
        sync_definitions(&blades)?;
        println!(
            "  repaired: slot {v_slot} back in {:?}, its agent registered again",
            backplane.ipmc(IPMC[victim]).map(|i| i.state())
        );
        failed = partner;
    }
    println!();
    println!("no guest ran on both blades at any step.");
    Ok(())
}

fn inject(backplane: &mut Backplane, addr: u8, now: u64, fault: Fault) {
    if let Some(i) = backplane.ipmc(addr) {
        i.inject(now, fault);
    }
}

/// Runs the shelf until `done` or `limit`; returns whether `done` was reached.
#[allow(clippy::too_many_arguments)]
fn step_until(
    shelf: &mut Shelf,
    backplane: &mut Backplane,
    blades: &mut [Blade; 2],
    clock: &Clock,
    next_heartbeat: &mut u64,
    tl: Option<&Timeline>,
    limit: Duration,
    done: impl Fn(&[Blade; 2], &Shelf) -> bool,
) -> Result<bool, String> {
    let deadline = Instant::now() + limit;
    let say = |text: &str| {
        if let Some(tl) = tl {
            tl.line(clock, text);
        }
    };
    let mut phases: [Option<(u32, String)>; 2] = [None, None];
    let mut states: [MState; 2] = [MState::M4, MState::M4];
    loop {
        let now = clock.now();
        // IPMCs -> ShMC.
        let mut msgs: Vec<Message> = Vec::new();
        backplane.poll(now, &mut msgs);
        for m in &msgs {
            // Every message crosses the bus as bytes and is validated again on arrival.
            let Ok(m) = Message::from_bytes(m.as_bytes()) else {
                continue;
            };
            let repr = m.repr();
            if repr.is_response() {
                shelf.on_ipmb_response(
                    now,
                    repr.rq_sa,
                    repr.rq_seq,
                    repr.net_fn,
                    repr.cmd,
                    repr.data,
                );
            } else if let Some(Ok(ev)) = cmd::platform_event(&repr) {
                if let Ok(rsp) =
                    Message::from_repr(&Repr::response_to(&repr, &cmd::PLATFORM_EVENT_RESPONSE))
                {
                    backplane.deliver(now, &rsp);
                }
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
                say(&text);
                shelf.on_platform_event(now, repr.rq_seq, &ev);
            }
        }
        // Payload power follows the hot-swap state: M1/M0 means off.
        for (i, b) in blades.iter_mut().enumerate() {
            let st = backplane
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
                    say(&format!(
                        "slot {}: IPMC in M{}: payload power off, its guests are gone",
                        b.slot, st as u8
                    ));
                }
            }
        }
        // Agents -> ShMC: heartbeats.
        if now >= *next_heartbeat {
            *next_heartbeat = now + HEARTBEAT_MS;
            for b in blades.iter() {
                if b.powered && !b.agent_silent {
                    shelf.on_agent(
                        now,
                        b.slot,
                        AgentInput::Heartbeat {
                            hypervisor_ok: !b.hypervisor_down,
                        },
                    );
                }
            }
        }
        shelf.poll(now);
        // ShMC -> IPMCs and agents.
        while let Some(out) = shelf.pop_output() {
            match out {
                Output::Ipmb {
                    dest,
                    net_fn,
                    cmd: c,
                    rq_seq,
                    data,
                } => {
                    let repr = Repr {
                        rs_sa: dest,
                        net_fn,
                        rs_lun: 0,
                        rq_sa: SHMC,
                        rq_seq,
                        rq_lun: 0,
                        cmd: c,
                        data: &data,
                    };
                    if net_fn == cmd::NETFN_GROUP_EXT {
                        let what = match c {
                            cmd::CMD_SET_FRU_ACTIVATION => "Set FRU Activation (deactivate)",
                            cmd::CMD_FRU_CONTROL => "FRU Control",
                            cmd::CMD_SET_POWER_LEVEL => "Set Power Level",
                            _ => "PICMG command",
                        };
                        say(&format!("fence: {what} -> IPMC 0x{dest:02x}"));
                    }
                    if let Ok(m) = Message::from_repr(&repr) {
                        backplane.deliver(now, &m);
                    }
                }
                Output::Decision(d) => {
                    let actions: Vec<&str> = d.actions.iter().map(|a| a.as_str()).collect();
                    say(&format!(
                        "decision #{}: {} on slot {} ({}) -> {}",
                        d.incident,
                        d.class,
                        d.slot,
                        d.cause,
                        actions.join(", ")
                    ));
                }
                Output::Alert(a) => say(&format!("ALERT {}: {a}", a.kind())),
                Output::Order { slot, order } => {
                    let Some(idx) = blades.iter().position(|b| b.slot == slot) else {
                        continue;
                    };
                    say(&format!("order to slot {slot}: {order:?}"));
                    execute_order(shelf, &blades[idx], &order, clock, tl);
                }
            }
        }
        // Incident phases, as the core sees them.
        for (i, b) in blades.iter().enumerate() {
            let inc = shelf.blade(b.slot).and_then(|s| s.incident);
            let cur = inc.map(|x| (x.id, phase_name(&x.phase)));
            if cur != phases[i] {
                if let Some((id, name)) = &cur {
                    say(&format!("incident #{id} on slot {}: {name}", b.slot));
                }
                phases[i] = cur;
            }
        }
        // Safety: never the same guest on both blades.
        let (a, b) = (running(&blades[0].hv), running(&blades[1].hv));
        if let Some(g) = a.iter().find(|g| b.contains(g)) {
            return Err(format!("guest {g} runs on both blades"));
        }
        if done(blades, shelf) {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn execute_order(
    shelf: &mut Shelf,
    blade: &Blade,
    order: &Order,
    clock: &Clock,
    tl: Option<&Timeline>,
) {
    let say = |text: &str| {
        if let Some(tl) = tl {
            tl.line(clock, text);
        }
    };
    let Some(agent_order) = to_agent_order(order) else {
        return;
    };
    let incident = agent_order.incident();
    if !blade.powered || blade.agent_silent {
        say(&format!(
            "slot {}: its agent does not answer (host down); order not delivered",
            blade.slot
        ));
        return;
    }
    match blade.agent.accept(&agent_order) {
        Ok(Acceptance::Execute) => {}
        Ok(other) => {
            say(&format!(
                "slot {}: order not executed: {other:?}",
                blade.slot
            ));
            return;
        }
        Err(e) => {
            say(&format!("slot {}: agent error: {e}", blade.slot));
            return;
        }
    }
    // Outcomes arrive from the agent's worker threads as each guest is handled.
    let outcomes = std::sync::Mutex::new(Vec::<(u128, GuestOutcome)>::new());
    let emit = |o: &GuestOutcome| {
        outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((clock.micros(), o.clone()));
    };
    let result = blade.agent.execute(&agent_order, &emit);
    let now = clock.now();
    for (at, o) in outcomes.into_inner().unwrap_or_else(|p| p.into_inner()) {
        if let Some(tl) = tl {
            tl.line_at(
                at,
                &format!(
                    "slot {}: guest {}: {:?} ({} ms after the order)",
                    blade.slot, o.name, o.result, o.elapsed_ms
                ),
            );
            if matches!(order, Order::RestartPartnerGuests { .. }) && o.result.is_success() {
                tl.starts.borrow_mut().push(at);
            }
        }
        if let (Order::RestartPartnerGuests { failed_slot, .. }, Ok(name)) =
            (order, GuestName::try_from(o.name.as_str()))
        {
            shelf.on_agent(
                now,
                blade.slot,
                AgentInput::GuestOutcome {
                    failed_slot: *failed_slot,
                    name,
                    started: o.result.is_success(),
                },
            );
        }
    }
    match (order, result) {
        (Order::FenceSelf { .. }, Ok(OrderResult::Fenced(r))) => {
            say(&format!(
                "slot {}: self-fence: {} destroyed, {} killed, {} failed",
                blade.slot, r.destroyed, r.killed, r.failed
            ));
            if r.complete() {
                shelf.on_agent(now, blade.slot, AgentInput::FenceSelfConfirmed { incident });
            }
        }
        (Order::RestartPartnerGuests { failed_slot, .. }, Ok(_)) => {
            shelf.on_agent(
                now,
                blade.slot,
                AgentInput::AllReported {
                    failed_slot: *failed_slot,
                    incident,
                },
            );
        }
        (Order::Evacuate { .. }, Ok(_)) => {
            shelf.on_agent(
                now,
                blade.slot,
                AgentInput::AllReported {
                    failed_slot: blade.slot,
                    incident,
                },
            );
        }
        (_, Ok(r)) => say(&format!("slot {}: {r:?}", blade.slot)),
        (_, Err(e)) => say(&format!("slot {}: order failed: {e}", blade.slot)),
    }
}
