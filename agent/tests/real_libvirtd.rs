//! The agent against two real `libvirtd` daemons with QEMU (TCG), blades A and B, started and
//! stopped by `tests/support/libvirt-blades.sh` (root; the packages `tests/ci.sh install`
//! installs): partner restart from stored definitions (with virtlockd refusing a start while
//! the original still runs), FenceSelf with libvirt answering and with libvirtd stopped
//! (QEMU killed directly), FenceSelf of an agent restarted while libvirtd is dead (the stored
//! protected set, pid files and the process table), a crash seen through lifecycle events and reported over UDP,
//! RestartGuest, and HypervisorDown/Up when libvirtd dies and comes back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blade_agent::config::Config;
use blade_agent::execute::kill::is_running;
use blade_agent::execute::{Acceptance, Agent};
use blade_agent::hypervisor::libvirt::LibvirtHypervisor;
use blade_agent::hypervisor::{GuestState, Hypervisor};
use blade_agent::order::{GuestOutcome, GuestResult, Order, OrderResult};
use blade_agent::wire_map::failure_code;
use shelfha_proto::message::guest_name;
use shelfha_proto::{
    Endpoint, EndpointConfig, Event, Key, Message, NodeId, Outcome, ReasonCode, SeqSeed,
};

mod support;
use support::{agent, sh_ok, Blades, SERIAL};

fn config(slot: u8, partner: u8, uri: &str, run_dir: &Path, state: &Path) -> Config {
    // The shared disks (`shared-disk`) lie under the blades' base: the policy must allow it.
    let base = state.parent().expect("state dir under the blades' base");
    let text = format!(
        "slot = {slot}\nshmc = \"127.0.0.1:7300\"\nlisten = \"127.0.0.1:0\"\nlibvirt_uri = \"{uri}\"\n\
         state_dir = \"{}\"\nqemu_run_dir = \"{}\"\nstart_workers = 1\nfence_timeout_ms = 500\n\
         [partner]\nslot = {partner}\naddress = \"127.0.0.1:7301\"\n\
         [guests]\nallowed_storage_paths = [\"{}\"]\n\
         [guests.priority]\ng1 = 10\ng2 = 5\n",
        state.display(),
        run_dir.display(),
        base.join("disks").display()
    );
    Config::parse(&text, Path::new("real.toml")).unwrap()
}

fn execute(a: &Agent<LibvirtHypervisor>, order: &Order) -> OrderResult {
    assert_eq!(a.accept(order).unwrap(), Acceptance::Execute);
    a.execute(order, &|_: &GuestOutcome| {}).unwrap()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn test_partner_restart_from_stored_definitions_and_fence() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let blades = Blades::start("restart");
    let disk = sh_ok(&["shared-disk", &blades.base, "d1"])
        .trim()
        .to_owned();
    let state = PathBuf::from(&blades.base);
    let (hv_a, agent_a) = agent(config(
        1,
        2,
        &blades.a,
        &blades.run_dir("a"),
        &state.join("state-a"),
    ));
    let (hv_b, agent_b) = agent(config(
        2,
        1,
        &blades.b,
        &blades.run_dir("b"),
        &state.join("state-b"),
    ));
    hv_a.define(&blades.guest_xml("g1", Some(&disk))).unwrap();
    hv_a.define(&blades.guest_xml("g2", None)).unwrap();
    hv_a.start("g1").unwrap();
    hv_a.start("g2").unwrap();

    // A's definitions as the partner receives them, stored on B.
    for d in agent_a.local_definitions().unwrap() {
        agent_b.store_partner_definition(d).unwrap();
    }
    assert!(state.join("state-b/partner/g1.xml").exists());

    // Second line: even with a (wrongly) confirmed fence, virtlockd refuses g1 on B while A runs it.
    let early = Order::RestartPartnerGuests {
        incident: 1,
        failed_slot: 1,
        fence_confirmed: true,
        subset: Some(vec!["g1".into()]),
    };
    let OrderResult::Guests(out) = execute(&agent_b, &early) else {
        panic!()
    };
    match &out[0].result {
        GuestResult::Failed { reason } => {
            assert_eq!(failure_code(reason), ReasonCode::DiskLocked, "{reason}")
        }
        other => panic!("g1 started twice: {other:?}"),
    }
    assert!(!hv_b.state("g1").unwrap().is_active());

    // FenceSelf on A with libvirt answering: both QEMUs SIGKILLed first (their pids are
    // known), then destroyed through libvirt, which shows them shut off.
    let pids = [blades.qemu_pid("a", "g1"), blades.qemu_pid("a", "g2")];
    let OrderResult::Fenced(r) = execute(&agent_a, &Order::FenceSelf { incident: 2 }) else {
        panic!()
    };
    assert_eq!((r.destroyed, r.killed, r.failed), (0, 2, 0), "{r:?}");
    assert!(
        pids.iter().all(|&p| !is_running(p)),
        "QEMU still runs after FenceSelf"
    );
    // libvirt's destroy follows the answer as bookkeeping: it shows them shut off soon after.
    wait_until(
        "libvirt to see g1 shut off",
        Duration::from_secs(20),
        || hv_a.state("g1").is_ok_and(|s| s == GuestState::Shutoff),
    );

    // The takeover on B: highest priority first, from the stored XML.
    let order = Order::RestartPartnerGuests {
        incident: 3,
        failed_slot: 1,
        fence_confirmed: true,
        subset: None,
    };
    let OrderResult::Guests(out) = execute(&agent_b, &order) else {
        panic!()
    };
    let names: Vec<&str> = out.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, vec!["g1", "g2"]);
    assert!(
        out.iter().all(|o| o.result == GuestResult::Started),
        "{out:?}"
    );
    assert_eq!(hv_b.state("g1").unwrap(), GuestState::Running);
    assert_eq!(hv_b.state("g2").unwrap(), GuestState::Running);
    assert!(is_running(blades.qemu_pid("b", "g1")));
    // Not twice: the same order again answers from the journal; a new incident finds them running.
    assert!(matches!(
        agent_b.accept(&order).unwrap(),
        Acceptance::Done { .. }
    ));
    let again = Order::RestartPartnerGuests {
        incident: 4,
        failed_slot: 1,
        fence_confirmed: true,
        subset: None,
    };
    let OrderResult::Guests(out) = execute(&agent_b, &again) else {
        panic!()
    };
    assert!(
        out.iter().all(|o| o.result == GuestResult::AlreadyRunning),
        "{out:?}"
    );
}

#[test]
fn test_fence_self_kills_qemu_when_libvirtd_does_not_answer() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let blades = Blades::start("fencekill");
    let state = PathBuf::from(&blades.base).join("state-a");
    let (hv, agent) = agent(config(1, 2, &blades.a, &blades.run_dir("a"), &state));
    for g in ["g1", "g2"] {
        hv.define(&blades.guest_xml(g, None)).unwrap();
        hv.start(g).unwrap();
    }
    agent.local_definitions().unwrap(); // the periodic listing: the last known protected guests
    let pids = [blades.qemu_pid("a", "g1"), blades.qemu_pid("a", "g2")];
    let libvirtd = sh_ok(&["pid", &blades.base, "a", "libvirtd"])
        .trim()
        .to_owned();
    let status = Command::new("kill")
        .args(["-STOP", &libvirtd])
        .status()
        .unwrap();
    assert!(status.success());
    let result = execute(&agent, &Order::FenceSelf { incident: 1 });
    let _ = Command::new("kill").args(["-CONT", &libvirtd]).status();
    let OrderResult::Fenced(r) = result else {
        panic!()
    };
    assert_eq!((r.destroyed, r.killed, r.failed), (0, 2, 0), "{r:?}");
    assert!(
        pids.iter().all(|&p| !is_running(p)),
        "QEMU still runs after FenceSelf"
    );
    // libvirt, once it runs again, sees them stopped.
    wait_until(
        "libvirt to see g1 and g2 stopped",
        Duration::from_secs(20),
        || {
            ["g1", "g2"]
                .iter()
                .all(|g| hv.state(g).is_ok_and(|s| !s.is_active()))
        },
    );
}

/// The agent restarts while libvirtd is dead and its guests' QEMUs keep running: it must not
/// confirm a fence with a QEMU alive. It knows its guests from the protected set stored at the
/// last listing, finds g1's QEMU by its pid file and g2's (pid file gone) in the process table,
/// kills both and sees them gone. Blade B runs a guest of the same name, which is not A's.
#[test]
fn test_fence_self_after_an_agent_restart_with_libvirtd_dead() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let blades = Blades::start("fencerestart");
    let state = PathBuf::from(&blades.base).join("state-a");
    let cfg = config(1, 2, &blades.a, &blades.run_dir("a"), &state);
    {
        let (hv, agent) = agent(cfg.clone());
        for g in ["g1", "g2"] {
            hv.define(&blades.guest_xml(g, None)).unwrap();
            hv.start(g).unwrap();
        }
        agent.local_definitions().unwrap(); // the periodic listing stores the protected set
    }
    let hv_b = LibvirtHypervisor::open(&blades.b, blades.run_dir("b")).unwrap();
    hv_b.define(&blades.guest_xml("g1", None)).unwrap();
    hv_b.start("g1").unwrap();
    let other = blades.qemu_pid("b", "g1");
    let pids = [blades.qemu_pid("a", "g1"), blades.qemu_pid("a", "g2")];
    sh_ok(&["kill-libvirtd", &blades.base, "a"]);
    std::fs::remove_file(blades.run_dir("a").join("g2.pid")).unwrap();
    assert!(
        pids.iter().all(|&p| is_running(p)),
        "QEMU outlives libvirtd"
    );

    let (_hv, agent) = agent(cfg);
    let t0 = Instant::now();
    let OrderResult::Fenced(r) = execute(&agent, &Order::FenceSelf { incident: 1 }) else {
        panic!()
    };
    let alive: Vec<i32> = pids.iter().copied().filter(|&p| is_running(p)).collect();
    assert!(
        alive.is_empty(),
        "QEMU {alive:?} still runs after FenceSelf answered {r:?}"
    );
    assert_eq!((r.killed, r.failed), (2, 0), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(
        is_running(other),
        "blade B's guest of the same name was killed"
    );
}

/// libvirt loses track of a running QEMU: libvirtd dies, g1's state file and pid file are
/// removed, libvirtd starts again and lists g1 "shut off" while its QEMU still runs. FenceSelf
/// must not confirm on libvirt's word: the process table finds the QEMU, it is killed and
/// seen gone. DestroyGuest likewise.
#[test]
fn test_fence_self_kills_a_qemu_libvirt_lost_track_of() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let blades = Blades::start("fencelost");
    let state = PathBuf::from(&blades.base).join("state-a");
    let (hv, agent) = agent(config(1, 2, &blades.a, &blades.run_dir("a"), &state));
    for g in ["g1", "g2"] {
        hv.define(&blades.guest_xml(g, None)).unwrap();
        hv.start(g).unwrap();
    }
    agent.local_definitions().unwrap(); // protected.json = [g1, g2]
    let pids = [blades.qemu_pid("a", "g1"), blades.qemu_pid("a", "g2")];
    sh_ok(&["kill-libvirtd", &blades.base, "a"]);
    for g in ["g1", "g2"] {
        for ext in ["xml", "pid"] {
            std::fs::remove_file(blades.run_dir("a").join(format!("{g}.{ext}"))).unwrap();
        }
    }
    sh_ok(&["start-libvirtd", &blades.base, "a"]);
    wait_until(
        "libvirt to list g1 and g2 shut off",
        Duration::from_secs(20),
        || {
            let _ = hv.ping(); // the heartbeat's ping reconnects
            ["g1", "g2"]
                .iter()
                .all(|g| hv.state(g).is_ok_and(|s| s == GuestState::Shutoff))
        },
    );
    assert!(
        pids.iter().all(|&p| is_running(p)),
        "the QEMUs run although libvirt lists them shut off"
    );

    let destroy = Order::DestroyGuest {
        incident: 1,
        name: "g2".into(),
    };
    let OrderResult::Guests(out) = execute(&agent, &destroy) else {
        panic!()
    };
    assert!(
        !is_running(pids[1]),
        "g2's QEMU survived DestroyGuest: {out:?}"
    );
    assert_eq!(out[0].result, GuestResult::Destroyed { killed: true });

    let OrderResult::Fenced(r) = execute(&agent, &Order::FenceSelf { incident: 2 }) else {
        panic!()
    };
    assert!(
        !is_running(pids[0]),
        "g1's QEMU survived a FenceSelf that answered {r:?}"
    );
    assert_eq!((r.killed, r.failed), (1, 0), "{r:?}");
}

fn poll_for(
    ep: &mut Endpoint,
    t0: Instant,
    timeout: Duration,
    want: impl Fn(&Message) -> bool,
) -> Vec<Message> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        while let Some(ev) = ep.poll(t0.elapsed().as_millis() as u64) {
            if let Event::Message { message, .. } = ev {
                let hit = want(&message);
                seen.push(message);
                if hit {
                    return seen;
                }
            }
        }
        ep.wait(Some(20)).unwrap();
    }
    panic!("timed out; seen: {seen:?}");
}

#[test]
fn test_crash_reported_and_restarted_and_hypervisor_loss() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let blades = Blades::start("crash");
    let key = [0x33; 32];
    let ep_cfg = || EndpointConfig {
        seq: SeqSeed::Fixed(1),
        ..EndpointConfig::default()
    };
    let mut shmc = Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        NodeId::SHMC,
        Key::new(key),
        ep_cfg(),
    )
    .unwrap();
    let mut agent_ep = Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        NodeId(1),
        Key::new(key),
        ep_cfg(),
    )
    .unwrap();
    let partner = Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        NodeId(2),
        Key::new(key),
        ep_cfg(),
    )
    .unwrap();
    shmc.add_peer(NodeId(1), Some(agent_ep.local_addr().unwrap()))
        .unwrap();
    agent_ep
        .add_peer(NodeId::SHMC, Some(shmc.local_addr().unwrap()))
        .unwrap();
    agent_ep
        .add_peer(NodeId(2), Some(partner.local_addr().unwrap()))
        .unwrap();

    let state = PathBuf::from(&blades.base).join("state-a");
    let mut cfg = config(1, 2, &blades.a, &blades.run_dir("a"), &state);
    cfg.heartbeat = Duration::from_millis(100);
    let (hv, agent) = agent(cfg);
    hv.define(&blades.guest_xml("g1", None)).unwrap();
    hv.start("g1").unwrap();
    let agent = Arc::new(agent);
    let stop = Arc::new(AtomicBool::new(false));
    let daemon = {
        let (agent, stop) = (Arc::clone(&agent), Arc::clone(&stop));
        std::thread::spawn(move || blade_agent::daemon::run(agent, agent_ep, stop))
    };
    let t0 = Instant::now();
    poll_for(&mut shmc, t0, Duration::from_secs(10), |m| {
        matches!(m, Message::Heartbeat { protected: 1, .. })
    });
    // The protected list is refreshed with the heartbeat's listing; give it one round.
    wait_until("g1 known as protected", Duration::from_secs(5), || {
        agent.reports_crash_of("g1")
    });

    // QEMU dies: libvirt's lifecycle event becomes GuestCrashed.
    let old_pid = blades.qemu_pid("a", "g1");
    sh_ok(&["kill-qemu", &blades.base, "a", "g1"]);
    poll_for(
        &mut shmc,
        t0,
        Duration::from_secs(10),
        |m| matches!(m, Message::GuestCrashed { name } if name.as_str() == "g1"),
    );

    // The ShMC orders a local restart.
    let order = Message::RestartGuest {
        incident: 7,
        name: guest_name("g1").unwrap(),
    };
    shmc.send(NodeId(1), &order, t0.elapsed().as_millis() as u64)
        .unwrap();
    let seen = poll_for(&mut shmc, t0, Duration::from_secs(10), |m| {
        matches!(m, Message::IncidentDone { incident: 7, .. })
    });
    assert!(
        seen.iter().any(|m| matches!(
            m,
            Message::GuestOutcome {
                incident: 7,
                outcome: Outcome::Started,
                slot: 1,
                ..
            }
        )),
        "{seen:?}"
    );
    assert_eq!(hv.state("g1").unwrap(), GuestState::Running);
    assert_ne!(blades.qemu_pid("a", "g1"), old_pid);

    // libvirtd dies (guests keep running): HypervisorDown; back: HypervisorUp.
    sh_ok(&["kill-libvirtd", &blades.base, "a"]);
    poll_for(&mut shmc, t0, Duration::from_secs(15), |m| {
        matches!(m, Message::HypervisorDown)
    });
    sh_ok(&["start-libvirtd", &blades.base, "a"]);
    poll_for(&mut shmc, t0, Duration::from_secs(20), |m| {
        matches!(m, Message::HypervisorUp)
    });
    assert_eq!(
        hv.state("g1").unwrap(),
        GuestState::Running,
        "the guest survived the daemon restart"
    );

    stop.store(true, Ordering::SeqCst);
    daemon.join().unwrap().unwrap();
}

#[test]
fn test_evacuate_live_migrates_to_partner() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let blades = Blades::start("migrate");
    let state = PathBuf::from(&blades.base);
    let mut cfg = config(
        1,
        2,
        &blades.a,
        &blades.run_dir("a"),
        &state.join("state-a"),
    );
    cfg.partner.libvirt_uri = Some(blades.b.clone());
    cfg.partner.migration_uri = Some("tcp://127.0.0.1:49321".into());
    let (hv_a, agent_a) = agent(cfg);
    let hv_b = LibvirtHypervisor::open(&blades.b, blades.run_dir("b")).unwrap();
    hv_a.define(&blades.guest_xml("g1", None)).unwrap();
    hv_a.start("g1").unwrap();
    // Warm standby primitives: a paused start, then resume.
    hv_b.define(&blades.guest_xml("w1", None)).unwrap();
    hv_b.start_paused("w1").unwrap();
    assert_eq!(hv_b.state("w1").unwrap(), GuestState::Paused);
    hv_b.resume("w1").unwrap();
    assert_eq!(hv_b.state("w1").unwrap(), GuestState::Running);
    let OrderResult::Guests(out) = execute(
        &agent_a,
        &Order::Evacuate {
            incident: 1,
            to_slot: 2,
        },
    ) else {
        panic!()
    };
    assert_eq!(out.len(), 1);
    assert!(
        matches!(
            out[0].result,
            GuestResult::LiveMigrated {
                downtime_ms: Some(_),
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(hv_b.state("g1").unwrap(), GuestState::Running);
    assert!(hv_b
        .list_guests()
        .unwrap()
        .iter()
        .any(|g| g.name == "g1" && g.persistent));
    assert!(is_running(blades.qemu_pid("b", "g1")));
    assert!(matches!(
        hv_a.state("g1"),
        Err(blade_agent::hypervisor::HypervisorError::NoSuchGuest(_))
    ));
}

/// The whole path on real blades: two running agents exchange definitions over UDP; the ShMC
/// fences A through its agent, then orders B to take over; B starts A's guests from the pushed
/// definitions.
#[test]
fn test_two_agents_fence_and_takeover_over_udp() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let blades = Blades::start("e2e");
    let key = [0x44; 32];
    let ep = |id| {
        let cfg = EndpointConfig {
            seq: SeqSeed::Fixed(1),
            ..EndpointConfig::default()
        };
        Endpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            NodeId(id),
            Key::new(key),
            cfg,
        )
        .unwrap()
    };
    let mut shmc = ep(0);
    let mut eps = vec![ep(1), ep(2)];
    let addrs = [eps[0].local_addr().unwrap(), eps[1].local_addr().unwrap()];
    for (i, a) in addrs.iter().enumerate() {
        shmc.add_peer(NodeId(i as u8 + 1), Some(*a)).unwrap();
    }
    let state = PathBuf::from(&blades.base);
    let stop = Arc::new(AtomicBool::new(false));
    let mut daemons = Vec::new();
    let mut hvs = Vec::new();
    for (i, (blade, uri)) in [("a", blades.a.clone()), ("b", blades.b.clone())]
        .into_iter()
        .enumerate()
    {
        let (slot, partner) = (i as u8 + 1, 2 - i as u8);
        let mut cfg = config(
            slot,
            partner,
            &uri,
            &blades.run_dir(blade),
            &state.join(format!("state-{blade}")),
        );
        cfg.heartbeat = Duration::from_millis(100);
        cfg.partner.address = addrs[1 - i];
        let mut e = eps.remove(0);
        e.add_peer(NodeId::SHMC, Some(shmc.local_addr().unwrap()))
            .unwrap();
        e.add_peer(NodeId(partner), Some(addrs[1 - i])).unwrap();
        let (hv, agent) = agent(cfg);
        let agent = Arc::new(agent);
        let stop = Arc::clone(&stop);
        daemons.push(std::thread::spawn(move || {
            blade_agent::daemon::run(agent, e, stop)
        }));
        hvs.push(hv);
    }
    let (hv_a, hv_b) = (&hvs[0], &hvs[1]);
    for g in ["g1", "g2"] {
        hv_a.define(&blades.guest_xml(g, None)).unwrap();
        hv_a.start(g).unwrap();
    }
    let t0 = Instant::now();
    // B holds A's definitions once A's heartbeat digest matches what B stored.
    wait_until(
        "A's definitions stored on B",
        Duration::from_secs(15),
        || {
            ["g1", "g2"]
                .iter()
                .all(|g| state.join(format!("state-b/partner/{g}.xml")).exists())
        },
    );
    shmc.send(
        NodeId(1),
        &Message::FenceSelf { incident: 5 },
        t0.elapsed().as_millis() as u64,
    )
    .unwrap();
    let seen = poll_for(&mut shmc, t0, Duration::from_secs(10), |m| {
        matches!(m, Message::FenceSelfConfirmed { .. })
    });
    assert!(
        matches!(
            seen.last(),
            Some(Message::FenceSelfConfirmed {
                incident: 5,
                destroyed: 0,
                killed: 2,
                remaining: 0
            })
        ),
        "{seen:?}"
    );
    let order = Message::RestartPartnerGuests {
        incident: 5,
        failed_slot: 1,
        fence: shelfha_proto::FenceProof::SelfFenced,
        subset: None,
    };
    shmc.send(NodeId(2), &order, t0.elapsed().as_millis() as u64)
        .unwrap();
    let seen = poll_for(&mut shmc, t0, Duration::from_secs(20), |m| {
        matches!(m, Message::IncidentDone { incident: 5, .. })
    });
    assert!(
        matches!(
            seen.last(),
            Some(Message::IncidentDone {
                slot: 1,
                started: 2,
                refused: 0,
                failed: 0,
                ..
            })
        ),
        "{seen:?}"
    );
    let started: Vec<&str> = seen
        .iter()
        .filter_map(|m| match m {
            Message::GuestOutcome {
                name,
                outcome: Outcome::Started,
                ..
            } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(started, vec!["g1", "g2"], "priority order");
    assert_eq!(hv_b.state("g1").unwrap(), GuestState::Running);
    assert_eq!(hv_b.state("g2").unwrap(), GuestState::Running);
    assert!(!hv_a.state("g1").unwrap().is_active());
    stop.store(true, Ordering::SeqCst);
    for d in daemons {
        d.join().unwrap().unwrap();
    }
}
