//! Unit tests of the agent logic against the fake hypervisor.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::*;
use crate::config::{Config, Protection};
use crate::failure::{Failure, MigrationFailure};
use crate::hypervisor::fake::FakeHypervisor;
use crate::hypervisor::GuestState;
use crate::order::{FenceReport, GuestResult};
use crate::store::definitions::{digest, GuestDef};
use crate::testutil::TempDir;
use std::time::Duration;

const PARTNER: u8 = 4;

fn config(state: &Path) -> Config {
    let text = format!(
        "slot = 3\nshmc = \"127.0.0.1:7300\"\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n\
         fence_timeout_ms = 200\nevacuate_timeout_ms = 300\nstart_workers = 3\n\
         [partner]\nslot = {PARTNER}\naddress = \"127.0.0.1:7302\"\n\
         [guests.priority]\ndb = 100\nweb = 50\n",
        state.display()
    );
    Config::parse(&text, Path::new("test.toml")).unwrap()
}

fn def(name: &str, memory_kib: u64) -> GuestDef {
    GuestDef {
        name: name.into(),
        xml: format!("<domain type='test'><name>{name}</name><memory unit='KiB'>{memory_kib}</memory></domain>"),
    }
}

fn agent(state: &TempDir, hv: &Arc<FakeHypervisor>) -> Agent<FakeHypervisor> {
    Agent::new(Arc::clone(hv), config(state.path())).unwrap()
}

fn restart(incident: u32, confirmed: bool) -> Order {
    Order::RestartPartnerGuests {
        incident,
        failed_slot: PARTNER,
        fence_confirmed: confirmed,
        subset: None,
    }
}

/// Accepts and executes, collecting the streamed outcomes.
fn run(
    a: &Agent<FakeHypervisor>,
    o: &Order,
) -> (Acceptance, Option<OrderResult>, Vec<GuestOutcome>) {
    let acc = a.accept(o).unwrap();
    let seen = Mutex::new(Vec::new());
    let result = if acc == Acceptance::Execute {
        Some(
            a.execute(o, &|g: &GuestOutcome| seen.lock().unwrap().push(g.clone()))
                .unwrap(),
        )
    } else {
        None
    };
    (acc, result, seen.into_inner().unwrap())
}

fn result_of<'a>(outcomes: &'a [GuestOutcome], name: &str) -> &'a GuestResult {
    &outcomes
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no outcome for {name}"))
        .result
}

#[test]
fn test_refused_without_confirmed_fence() {
    let dir = TempDir::new("refuse");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let a = agent(&dir, &hv);
    a.store_partner_definition(def("db", 1000)).unwrap();
    let (acc, _, _) = run(&a, &restart(1, false));
    assert_eq!(
        acc,
        Acceptance::Refused(Refusal::FenceNotConfirmed(PARTNER))
    );
    let other = Order::RestartPartnerGuests {
        incident: 1,
        failed_slot: 9,
        fence_confirmed: true,
        subset: None,
    };
    assert_eq!(
        run(&a, &other).0,
        Acceptance::Refused(Refusal::NotPartner(9))
    );
    assert_eq!(hv.starts("db"), 0);
    assert_eq!(hv.state_of("db"), None, "nothing defined either");
    // The same incident with the fence confirmed is then executed (refusals are not journaled).
    let (acc, _, out) = run(&a, &restart(1, true));
    assert_eq!(acc, Acceptance::Execute);
    assert_eq!(result_of(&out, "db"), &GuestResult::Started);
}

#[test]
fn test_priority_order_and_memory_skip() {
    let dir = TempDir::new("prio");
    // 3000 KiB free: db (100, 2000) fits, web (50, 1500) does not fit after db, tiny (0, 500) fits.
    let hv = Arc::new(FakeHypervisor::new(3000));
    let a = Agent::new(Arc::clone(&hv), {
        let mut c = config(dir.path());
        c.start_workers = 1; // sequential, so the start order is the plan order
        c
    })
    .unwrap();
    for d in [def("tiny", 500), def("web", 1500), def("db", 2000)] {
        a.store_partner_definition(d).unwrap();
    }
    let (_, result, streamed) = run(&a, &restart(2, true));
    assert_eq!(hv.start_order(), vec!["db", "tiny"]);
    assert_eq!(result_of(&streamed, "db"), &GuestResult::Started);
    assert_eq!(result_of(&streamed, "tiny"), &GuestResult::Started);
    assert_eq!(
        result_of(&streamed, "web"),
        &GuestResult::NoMemory {
            needed_kib: 1500,
            available_kib: 1000
        }
    );
    assert_eq!(hv.starts("web"), 0);
    let Some(OrderResult::Guests(out)) = result else {
        panic!()
    };
    assert_eq!(out.len(), 3);
    let taken: Vec<String> = a.taken_over().into_iter().map(|(n, _)| n).collect();
    assert_eq!(taken, vec!["db", "tiny"]);
}

#[test]
fn test_reserve_memory_respected() {
    let dir = TempDir::new("reserve");
    let hv = Arc::new(FakeHypervisor::new(3000));
    let mut c = config(dir.path());
    c.memory_reserve_kib = 1500;
    let a = Agent::new(Arc::clone(&hv), c).unwrap();
    a.store_partner_definition(def("db", 2000)).unwrap();
    let (_, _, out) = run(&a, &restart(2, true));
    assert_eq!(
        result_of(&out, "db"),
        &GuestResult::NoMemory {
            needed_kib: 2000,
            available_kib: 1500
        }
    );
}

#[test]
fn test_several_at_once() {
    let dir = TempDir::new("parallel");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.wait_for_overlap();
    let a = agent(&dir, &hv);
    for i in 0..5 {
        a.store_partner_definition(def(&format!("g{i}"), 10))
            .unwrap();
    }
    let (_, _, out) = run(&a, &restart(3, true));
    assert!(
        out.iter().all(|o| o.result == GuestResult::Started),
        "{out:?}"
    );
    assert!(hv.max_in_flight() >= 2, "starts did not overlap");
    assert!(hv.max_in_flight() <= 3, "more than start_workers at once");
}

#[test]
fn test_no_double_start() {
    let dir = TempDir::new("double");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("db", GuestState::Running, 1000);
    let a = agent(&dir, &hv);
    a.store_partner_definition(def("db", 1000)).unwrap();
    a.store_partner_definition(def("web", 1000)).unwrap();
    let (_, _, out) = run(&a, &restart(4, true));
    assert_eq!(result_of(&out, "db"), &GuestResult::AlreadyRunning);
    assert_eq!(result_of(&out, "web"), &GuestResult::Started);
    assert_eq!(hv.starts("db"), 0);
    // A new incident later (the first takeover already ran them): nothing starts twice.
    let (_, _, out) = run(&a, &restart(5, true));
    assert_eq!(result_of(&out, "web"), &GuestResult::AlreadyRunning);
    assert_eq!(hv.starts("web"), 1);
}

#[test]
fn test_duplicate_order_repeats_recorded_outcome() {
    let dir = TempDir::new("dup");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let a = agent(&dir, &hv);
    a.store_partner_definition(def("db", 1000)).unwrap();
    let (_, first, _) = run(&a, &restart(6, true));
    // The guest is destroyed meanwhile: a duplicate must still not start it again.
    hv.destroy("db").unwrap();
    match run(&a, &restart(6, true)).0 {
        Acceptance::Done { outcomes, result } => {
            assert_eq!(Some(result), first);
            assert_eq!(outcomes.len(), 1);
            assert_eq!(outcomes[0].result, GuestResult::Started);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(hv.starts("db"), 1);
}

#[test]
fn test_journal_restore_after_agent_restart() {
    let dir = TempDir::new("restore");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let order = restart(7, true);
    {
        let a = agent(&dir, &hv);
        a.store_partner_definition(def("db", 1000)).unwrap();
        a.store_partner_definition(def("web", 1000)).unwrap();
        let (acc, ..) = run(&a, &order);
        assert_eq!(acc, Acceptance::Execute);
    }
    // A finished order after a restart: answered from the journal, nothing started again.
    {
        let a = agent(&dir, &hv);
        assert!(a.interrupted_orders().is_empty());
        assert!(matches!(a.accept(&order).unwrap(), Acceptance::Done { .. }));
        assert_eq!(a.partner_count(), 2, "partner definitions reloaded");
        assert_eq!(a.taken_over().len(), 2);
    }
    assert_eq!((hv.starts("db"), hv.starts("web")), (1, 1));

    // An order interrupted after one guest: accepted, db started, agent dies before web.
    let order2 = restart(8, true);
    hv.destroy("db").unwrap();
    hv.destroy("web").unwrap();
    {
        let a = agent(&dir, &hv);
        assert_eq!(a.accept(&order2).unwrap(), Acceptance::Execute);
        assert_eq!(
            a.accept(&order2).unwrap(),
            Acceptance::InProgress,
            "retry while running"
        );
        hv.start("db").unwrap(); // as the worker would have done
        let outcome = GuestOutcome {
            incident: 8,
            name: "db".into(),
            result: GuestResult::Started,
            elapsed_ms: 1,
        };
        lock(&a.journal).record_outcome(&order2, &outcome).unwrap();
        // dropped without finishing: the agent process died
    }
    let a = agent(&dir, &hv);
    assert_eq!(a.interrupted_orders(), vec![order2.clone()]);
    let (acc, _, out) = run(&a, &order2);
    assert_eq!(acc, Acceptance::Execute, "resumed");
    assert_eq!(
        result_of(&out, "db"),
        &GuestResult::Started,
        "recorded outcome repeated"
    );
    assert_eq!(result_of(&out, "web"), &GuestResult::Started);
    assert_eq!(
        hv.starts("db"),
        2,
        "db started once per incident, not again on resume"
    );
    assert_eq!(hv.starts("web"), 2);
    assert!(a.interrupted_orders().is_empty());
}

#[test]
fn test_subset_and_unknown_guest() {
    let dir = TempDir::new("subset");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let a = agent(&dir, &hv);
    a.store_partner_definition(def("db", 1000)).unwrap();
    a.store_partner_definition(def("web", 1000)).unwrap();
    let o = Order::RestartPartnerGuests {
        incident: 9,
        failed_slot: PARTNER,
        fence_confirmed: true,
        subset: Some(vec!["web".into(), "ghost".into()]),
    };
    let (_, _, out) = run(&a, &o);
    assert_eq!(result_of(&out, "web"), &GuestResult::Started);
    assert_eq!(result_of(&out, "ghost"), &GuestResult::Unknown);
    assert_eq!(hv.starts("db"), 0);
}

#[test]
fn test_start_failure_reported() {
    let dir = TempDir::new("fail");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.fail_start("db");
    let a = agent(&dir, &hv);
    a.store_partner_definition(def("db", 1000)).unwrap();
    let (_, _, out) = run(&a, &restart(10, true));
    assert!(
        matches!(result_of(&out, "db"), GuestResult::Failed { reason } if reason.to_string().contains("injected"))
    );
    assert!(a.taken_over().is_empty());
}

#[test]
fn test_fence_self_through_libvirt() {
    let dir = TempDir::new("fence");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("a", GuestState::Running, 10);
    hv.add("b", GuestState::Paused, 10);
    hv.add("c", GuestState::Shutoff, 10);
    hv.add("transient", GuestState::Running, 10);
    hv.with_domain("transient", |d| d.persistent = false);
    let a = agent(&dir, &hv);
    let (_, result, _) = run(&a, &Order::FenceSelf { incident: 11 });
    let Some(OrderResult::Fenced(r)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(
        (r.destroyed, r.killed, r.already_stopped, r.failed),
        (2, 0, 1, 0)
    );
    assert!(r.complete());
    assert_eq!(hv.state_of("a"), Some(GuestState::Shutoff));
    assert_eq!(hv.state_of("b"), Some(GuestState::Shutoff));
    assert_eq!(
        hv.state_of("transient"),
        Some(GuestState::Running),
        "not protected"
    );
    assert!(a.is_fenced());
    assert_eq!(
        run(&a, &restart(12, true)).0,
        Acceptance::Refused(Refusal::Fenced)
    );
}

/// An agent over `hv` whose kernel boot id is `boot` (a file in `state`'s parent directory).
fn agent_in_boot(state: &TempDir, hv: &Arc<FakeHypervisor>, boot: &str) -> Agent<FakeHypervisor> {
    let file = state.path().join("boot_id");
    std::fs::write(&file, format!("{boot}\n")).unwrap();
    Agent::with_boot_id_file(Arc::clone(hv), config(state.path()), &file).unwrap()
}

#[test]
fn test_fence_self_interrupted_by_a_reboot_is_finished_without_fencing_the_new_boot() {
    let dir = TempDir::new("fenceresume");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("a", GuestState::Running, 10);
    let fence = Order::FenceSelf { incident: 13 };
    {
        let a = agent_in_boot(&dir, &hv, "boot-1");
        assert_eq!(a.accept(&fence).unwrap(), Acceptance::Execute);
        // dropped before executing: the blade lost its power
    }
    let a = agent_in_boot(&dir, &hv, "boot-2");
    assert_eq!(a.interrupted_orders(), vec![fence.clone()]);
    let (acc, result, _) = run(&a, &fence);
    assert_eq!(acc, Acceptance::Execute, "resumed");
    let Some(OrderResult::Fenced(r)) = result else {
        panic!("{result:?}")
    };
    assert!(r.complete());
    assert_eq!(
        hv.state_of("a"),
        Some(GuestState::Shutoff),
        "still destroyed"
    );
    assert!(!a.is_fenced(), "the rebooted blade is not fenced");
    a.store_partner_definition(def("db", 1000)).unwrap();
    let (acc, _, out) = run(&a, &restart(14, true));
    assert_eq!(
        acc,
        Acceptance::Execute,
        "takes over its partner's guests again"
    );
    assert_eq!(result_of(&out, "db"), &GuestResult::Started);
    // A new FenceSelf in this boot fences it.
    run(&a, &Order::FenceSelf { incident: 15 });
    assert!(a.is_fenced());
}

/// The fenced state survives an agent restart (kill -9) in the same boot: every start is
/// refused (`Fenced`) until the blade reboots (a new boot id).
#[test]
fn test_the_fence_survives_an_agent_restart_until_the_blade_reboots() {
    let dir = TempDir::new("fence-persist");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("a", GuestState::Running, 10);
    {
        let a = agent_in_boot(&dir, &hv, "boot-1");
        let r = fenced(run(&a, &Order::FenceSelf { incident: 20 }).1);
        assert!(r.complete() && a.is_fenced(), "{r:?}");
    }
    hv.with_domain("a", |d| d.state = GuestState::Crashed);
    let a = agent_in_boot(&dir, &hv, "boot-1");
    assert!(a.is_fenced(), "an agent restart does not lift the fence");
    let crashed = Order::RestartGuest {
        incident: 21,
        name: "a".into(),
    };
    assert_eq!(run(&a, &crashed).0, Acceptance::Refused(Refusal::Fenced));
    a.store_partner_definition(def("db", 1000)).unwrap();
    assert_eq!(
        run(&a, &restart(22, true)).0,
        Acceptance::Refused(Refusal::Fenced)
    );
    assert_eq!((hv.starts("a"), hv.starts("db")), (0, 0));
    // An unfinished fence interrupted by an agent restart in the same boot fences it too.
    let dir2 = TempDir::new("fence-persist-unfinished");
    {
        let a = agent_in_boot(&dir2, &hv, "boot-1");
        assert_eq!(
            a.accept(&Order::FenceSelf { incident: 23 }).unwrap(),
            Acceptance::Execute
        );
    }
    let a2 = agent_in_boot(&dir2, &hv, "boot-1");
    assert!(a2.is_fenced());
    // The blade rebooted: the fence is over.
    let a = agent_in_boot(&dir, &hv, "boot-2");
    assert!(!a.is_fenced());
    assert_eq!(run(&a, &crashed).0, Acceptance::Execute);
    assert_eq!(hv.starts("a"), 1);
}

#[test]
fn test_fence_self_kills_qemu_when_libvirt_hangs() {
    let dir = TempDir::new("fencekill");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("a", GuestState::Running, 10);
    hv.add("b", GuestState::Running, 10);
    let a = agent(&dir, &hv);
    a.local_definitions().unwrap(); // the heartbeat's listing fills the protected cache
    let mut qemu = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    hv.set_pid("a", qemu.id() as i32); // b has no pid file: not running
    hv.set_hang(true);
    let (_, result, _) = run(&a, &Order::FenceSelf { incident: 13 });
    let Some(OrderResult::Fenced(r)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(
        (r.destroyed, r.killed, r.already_stopped, r.failed),
        (0, 1, 1, 0)
    );
    assert!(!qemu.wait().unwrap().success(), "the process was killed");
    hv.set_hang(false);
}

#[test]
fn test_fence_self_reports_unkillable() {
    let dir = TempDir::new("fencefail");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("a", GuestState::Running, 10);
    let a = agent(&dir, &hv);
    a.local_definitions().unwrap();
    hv.set_pid("a", 1); // never killed
    hv.set_hang(true);
    let (_, result, _) = run(&a, &Order::FenceSelf { incident: 14 });
    let Some(OrderResult::Fenced(r)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(r.failed, 1);
    assert!(!r.complete());
    hv.set_hang(false);
}

#[test]
fn test_restart_guest() {
    let dir = TempDir::new("restartguest");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("db", GuestState::Crashed, 10);
    hv.add("web", GuestState::Running, 10);
    hv.add("temp", GuestState::Shutoff, 10);
    hv.with_domain("temp", |d| d.persistent = false);
    let a = agent(&dir, &hv);
    let (_, _, out) = run(
        &a,
        &Order::RestartGuest {
            incident: 15,
            name: "db".into(),
        },
    );
    assert_eq!(result_of(&out, "db"), &GuestResult::Started);
    assert_eq!(hv.state_of("db"), Some(GuestState::Running));
    let (_, _, out) = run(
        &a,
        &Order::RestartGuest {
            incident: 15,
            name: "web".into(),
        },
    );
    assert_eq!(result_of(&out, "web"), &GuestResult::AlreadyRunning);
    let (_, result, _) = run(
        &a,
        &Order::RestartGuest {
            incident: 15,
            name: "temp".into(),
        },
    );
    assert_eq!(
        result,
        Some(OrderResult::Refused(Refusal::NotProtected("temp".into())))
    );
    assert_eq!(hv.starts("temp"), 0);
}

#[test]
fn test_evacuate_stops_protected_guests() {
    let dir = TempDir::new("evacuate");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("db", GuestState::Running, 10);
    hv.add("web", GuestState::Shutoff, 10);
    let a = agent(&dir, &hv);
    let (_, _, out) = run(
        &a,
        &Order::Evacuate {
            incident: 16,
            to_slot: PARTNER,
        },
    );
    assert_eq!(
        result_of(&out, "db"),
        &GuestResult::Stopped { graceful: true }
    );
    assert_eq!(
        result_of(&out, "web"),
        &GuestResult::Stopped { graceful: true }
    );
    assert_eq!(hv.state_of("db"), Some(GuestState::Shutoff));
}

#[test]
fn test_protection_list_and_local_definitions() {
    let dir = TempDir::new("localdefs");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("db", GuestState::Running, 2048);
    hv.add("web", GuestState::Shutoff, 1024);
    hv.add("scratch", GuestState::Running, 512);
    let mut c = config(dir.path());
    c.protection = Protection::List(vec!["db".into(), "web".into()]);
    let a = Agent::new(Arc::clone(&hv), c).unwrap();
    let defs = a.local_definitions().unwrap();
    let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, vec!["db", "web"]);
    assert_eq!(defs[0].memory_kib(), Some(2048));
    assert!(a.reports_crash_of("db"));
    assert!(!a.reports_crash_of("scratch"));
    // Partner side: store what we pushed, the digests agree; a changed definition is detected.
    let dir2 = TempDir::new("localdefs-partner");
    let hv2 = Arc::new(FakeHypervisor::new(1 << 20));
    let b = agent(&dir2, &hv2);
    for d in &defs {
        b.store_partner_definition(d.clone()).unwrap();
    }
    assert_eq!(b.partner_digest(), digest(&defs));
    hv.with_domain("web", |d| d.xml.push_str("<!-- changed -->"));
    let defs2 = a.local_definitions().unwrap();
    assert_ne!(b.partner_digest(), digest(&defs2), "drift detected");
    for d in &defs2 {
        b.store_partner_definition(d.clone()).unwrap();
    }
    assert_eq!(b.partner_digest(), digest(&defs2), "drift repaired");
}

#[test]
fn test_destroy_guest() {
    let dir = TempDir::new("destroyguest");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("db", GuestState::Running, 10);
    hv.add("web", GuestState::Running, 10);
    let a = agent(&dir, &hv);
    let (_, _, out) = run(
        &a,
        &Order::DestroyGuest {
            incident: 17,
            name: "db".into(),
        },
    );
    assert_eq!(
        result_of(&out, "db"),
        &GuestResult::Destroyed { killed: false }
    );
    assert_eq!(hv.state_of("db"), Some(GuestState::Shutoff));
    assert!(!a.is_fenced(), "a single destroy does not fence the blade");
    // libvirt hangs: the QEMU process is killed directly.
    a.local_definitions().unwrap();
    let mut qemu = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    hv.set_pid("web", qemu.id() as i32);
    hv.set_hang(true);
    let (_, _, out) = run(
        &a,
        &Order::DestroyGuest {
            incident: 17,
            name: "web".into(),
        },
    );
    assert_eq!(
        result_of(&out, "web"),
        &GuestResult::Destroyed { killed: true }
    );
    assert!(!qemu.wait().unwrap().success());
    hv.set_hang(false);
    let (_, result, _) = run(
        &a,
        &Order::DestroyGuest {
            incident: 17,
            name: "ghost".into(),
        },
    );
    assert_eq!(
        result,
        Some(OrderResult::Refused(Refusal::NotProtected("ghost".into())))
    );
}

#[test]
fn test_evacuate_migrates_when_partner_uri_known() {
    let dir = TempDir::new("migrate");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("db", GuestState::Running, 10);
    hv.add("web", GuestState::Running, 10);
    hv.add("idle", GuestState::Shutoff, 10);
    let mut c = config(dir.path());
    c.partner.libvirt_uri = Some("qemu+tls://b/system".into());
    // One at a time, so the migration order shows the priority order.
    c.zero_downtime.migration_workers = 1;
    let a = Agent::new(Arc::clone(&hv), c).unwrap();
    // Not to our partner: no migration path, the guests are stopped instead.
    let (_, _, out) = run(
        &a,
        &Order::Evacuate {
            incident: 18,
            to_slot: 9,
        },
    );
    assert_eq!(
        result_of(&out, "db"),
        &GuestResult::Stopped { graceful: true }
    );
    assert!(hv.migrated().is_empty());
    hv.start("db").unwrap();
    hv.start("web").unwrap();
    let (_, result, out) = run(
        &a,
        &Order::Evacuate {
            incident: 19,
            to_slot: PARTNER,
        },
    );
    let migrated = GuestResult::LiveMigrated {
        migration_ms: 50,
        downtime_ms: Some(1),
    };
    assert_eq!(result_of(&out, "db"), &migrated);
    assert_eq!(result_of(&out, "web"), &migrated);
    assert_eq!(
        result_of(&out, "idle"),
        &GuestResult::Stopped { graceful: true }
    );
    let dest = "qemu+tls://b/system".to_string();
    // Priority order: db (100) before web (50).
    assert_eq!(
        hv.migrated(),
        vec![("db".to_string(), dest.clone()), ("web".to_string(), dest)]
    );
    assert_eq!(hv.state_of("db"), None, "undefined here after migration");
    let Some(OrderResult::Guests(v)) = result else {
        panic!()
    };
    assert_eq!(v.len(), 3);
}

#[test]
fn test_hypervisor_unavailable_is_retried_not_remembered() {
    let dir = TempDir::new("unavailable");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let a = agent(&dir, &hv);
    a.store_partner_definition(def("db", 1000)).unwrap();
    hv.set_unavailable(true);
    let (acc, result, _) = run(&a, &restart(20, true));
    assert_eq!(acc, Acceptance::Execute);
    assert!(
        matches!(result, Some(OrderResult::Refused(Refusal::Hypervisor(_)))),
        "{result:?}"
    );
    hv.set_unavailable(false);
    let (acc, _, out) = run(&a, &restart(20, true));
    assert_eq!(acc, Acceptance::Execute, "the retry executes");
    assert_eq!(result_of(&out, "db"), &GuestResult::Started);
}

#[test]
fn test_unknown_free_memory_does_not_block_takeover() {
    let dir = TempDir::new("memunknown");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.set_memory_unknown();
    let a = agent(&dir, &hv);
    a.store_partner_definition(def("db", 1000)).unwrap();
    let (_, _, out) = run(&a, &restart(21, true));
    assert_eq!(result_of(&out, "db"), &GuestResult::Started);
}

fn migrating_agent(
    dir: &TempDir,
    hv: &Arc<FakeHypervisor>,
    timeout_ms: u64,
) -> Agent<FakeHypervisor> {
    let mut c = config(dir.path());
    c.partner.libvirt_uri = Some("qemu+tls://b/system".into());
    c.zero_downtime.migration_timeout = Duration::from_millis(timeout_ms);
    Agent::new(Arc::clone(hv), c).unwrap()
}

#[test]
fn test_evacuate_migrates_in_parallel_up_to_the_bound() {
    let dir = TempDir::new("migrate-par");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    for g in ["g1", "g2", "g3", "g4", "g5"] {
        hv.add(g, GuestState::Running, 10);
    }
    let a = migrating_agent(&dir, &hv, 10_000);
    let (_, _, out) = run(
        &a,
        &Order::Evacuate {
            incident: 30,
            to_slot: PARTNER,
        },
    );
    assert_eq!(out.len(), 5);
    assert!(out
        .iter()
        .all(|o| matches!(o.result, GuestResult::LiveMigrated { .. })));
    assert_eq!(hv.migrated().len(), 5);
    // Default migration_workers = 2: overlapping, never more than two at once.
    assert_eq!(hv.max_concurrent_migrations(), 2);
}

#[test]
fn test_evacuate_falls_back_to_stop_when_migration_fails_or_times_out() {
    let dir = TempDir::new("migrate-fail");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("db", GuestState::Running, 10);
    hv.add("web", GuestState::Running, 10);
    hv.add("ok", GuestState::Running, 10);
    hv.fail_migration("db", "no space on destination");
    hv.hang_migration("web");
    let a = migrating_agent(&dir, &hv, 300);
    let (_, _, out) = run(
        &a,
        &Order::Evacuate {
            incident: 31,
            to_slot: PARTNER,
        },
    );
    assert!(
        matches!(result_of(&out, "ok"), GuestResult::LiveMigrated { .. }),
        "{out:?}"
    );
    for g in ["db", "web"] {
        assert!(
            matches!(
                result_of(&out, g),
                GuestResult::StoppedAfterMigration { .. }
            ),
            "{g}: {out:?}"
        );
        // Stopped here (still defined): the partner starts it after the fence.
        assert_eq!(hv.state_of(g), Some(GuestState::Shutoff), "{g}");
    }
    let GuestResult::StoppedAfterMigration { reason, .. } = result_of(&out, "web") else {
        unreachable!()
    };
    assert!(
        matches!(
            reason,
            MigrationFailure::Aborted { .. } | MigrationFailure::NoReturn { .. }
        ),
        "{reason}"
    );
    assert!(reason.to_string().contains("timed out"), "{reason}");
    assert_eq!(
        hv.aborted(),
        vec!["web".to_string()],
        "the hung job was aborted"
    );
    let msg = crate::wire_map::moved_message(
        &Order::Evacuate {
            incident: 31,
            to_slot: PARTNER,
        },
        3,
        out.iter().find(|o| o.name == "db").unwrap(),
    );
    assert!(
        matches!(
            msg,
            Some(shelfha_proto::Message::GuestMoved {
                how: shelfha_proto::Move::Stopped,
                ..
            })
        ),
        "{msg:?}"
    );
}

#[test]
fn test_migrate_order_never_stops_a_guest() {
    let dir = TempDir::new("migrate-live");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("db", GuestState::Running, 10);
    hv.add("web", GuestState::Running, 10);
    hv.fail_migration("db", "no space on destination");
    let a = migrating_agent(&dir, &hv, 10_000);
    let order = Order::Migrate {
        incident: 32,
        to_slot: PARTNER,
    };
    let (_, result, out) = run(&a, &order);
    assert!(
        matches!(result_of(&out, "db"), GuestResult::Failed { .. }),
        "{out:?}"
    );
    assert_eq!(
        hv.state_of("db"),
        Some(GuestState::Running),
        "kept running here"
    );
    assert!(matches!(
        result_of(&out, "web"),
        GuestResult::LiveMigrated { .. }
    ));
    assert!(result.is_some());
    let moved: Vec<_> = out
        .iter()
        .filter_map(|o| crate::wire_map::moved_message(&order, 3, o))
        .collect();
    assert!(moved.iter().any(|m| matches!(
        m,
        shelfha_proto::Message::GuestMoved {
            how: shelfha_proto::Move::KeptRunning,
            ..
        }
    )));
    assert!(moved.iter().any(|m| matches!(
        m,
        shelfha_proto::Message::GuestMoved {
            how: shelfha_proto::Move::Migrated,
            downtime_ms: Some(1),
            ..
        }
    )));
    // Without a migration path nothing is stopped either.
    let dir2 = TempDir::new("migrate-nopath");
    let hv2 = Arc::new(FakeHypervisor::new(1 << 20));
    hv2.add("db", GuestState::Running, 10);
    let a2 = Agent::new(Arc::clone(&hv2), config(dir2.path())).unwrap();
    let (_, _, out) = run(&a2, &order);
    assert!(matches!(result_of(&out, "db"), GuestResult::Failed { .. }));
    assert_eq!(hv2.state_of("db"), Some(GuestState::Running));
}

fn standby_def(name: &str, disk: &str) -> GuestDef {
    GuestDef {
        name: name.into(),
        xml: format!(
            "<domain type='test'><name>{name}</name><memory unit='KiB'>1000</memory>\
             <devices>{disk}</devices></domain>"
        ),
    }
}

const LUN: &str = "<disk type='block' device='disk'><driver name='qemu' type='raw' \
                   cache='none'/><source dev='/dev/shared/db'/><target dev='vda'/></disk>";

fn standby_agent(dir: &TempDir, hv: &Arc<FakeHypervisor>) -> Agent<FakeHypervisor> {
    let mut c = config(dir.path());
    c.zero_downtime.warm_standby = vec!["db".into(), "dq".into()];
    c.allowed_storage_paths = vec!["/dev/shared".into(), "/img".into()];
    Agent::new(Arc::clone(hv), c).unwrap()
}

#[test]
fn test_warm_standby_kept_paused_then_resumed_by_the_restart_order() {
    let dir = TempDir::new("standby");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let a = standby_agent(&dir, &hv);
    a.store_partner_definition(standby_def("db", LUN)).unwrap();
    a.store_partner_definition(standby_def(
        "dq",
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
         <source file='/img/dq.qcow2'/><target dev='vda'/></disk>",
    ))
    .unwrap();
    a.store_partner_definition(def("web", 1000)).unwrap();
    let refused = a.standby_refusals();
    assert_eq!(refused.keys().collect::<Vec<_>>(), ["dq"]);
    assert!(
        refused["dq"].to_string().contains("/img/dq.qcow2"),
        "{refused:?}"
    );
    assert_eq!(a.ensure_standbys().unwrap(), vec!["db".to_string()]);
    assert_eq!(hv.state_of("db"), Some(GuestState::Paused));
    assert_eq!(hv.state_of("dq"), None, "no standby for an unsafe disk");
    assert_eq!(hv.state_of("web"), None, "not listed");
    assert!(a.ensure_standbys().unwrap().is_empty(), "idempotent");
    // Not one of this blade's protected guests while paused.
    assert!(a
        .local_definitions()
        .unwrap()
        .iter()
        .all(|d| d.name != "db"));
    // Without a confirmed fence: refused, still paused.
    let (acc, _, _) = run(&a, &restart(40, false));
    assert_eq!(
        acc,
        Acceptance::Refused(Refusal::FenceNotConfirmed(PARTNER))
    );
    assert_eq!(hv.state_of("db"), Some(GuestState::Paused));
    let (_, _, out) = run(&a, &restart(41, true));
    assert_eq!(result_of(&out, "db"), &GuestResult::Resumed);
    assert_eq!(result_of(&out, "dq"), &GuestResult::Started, "cold start");
    assert_eq!(result_of(&out, "web"), &GuestResult::Started);
    assert_eq!(hv.state_of("db"), Some(GuestState::Running));
    assert_eq!(hv.starts("db"), 1, "started once (paused), then resumed");
    assert!(a
        .local_definitions()
        .unwrap()
        .iter()
        .any(|d| d.name == "db"));
}

#[test]
fn test_no_standby_while_fenced_and_no_migration_of_a_standby_guest() {
    let dir = TempDir::new("standby-fenced");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let a = standby_agent(&dir, &hv);
    a.store_partner_definition(standby_def("db", LUN)).unwrap();
    run(&a, &Order::FenceSelf { incident: 42 });
    assert!(a.is_fenced());
    assert!(a.ensure_standbys().unwrap().is_empty());
    assert_eq!(hv.state_of("db"), None);

    // On the other side: a listed guest running here is not migrated (the partner holds
    // its standby); Evacuate stops it, Migrate leaves it running.
    let dir = TempDir::new("standby-evac");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("db", GuestState::Running, 10);
    let mut c = config(dir.path());
    c.partner.libvirt_uri = Some("qemu+tls://b/system".into());
    c.zero_downtime.warm_standby = vec!["db".into()];
    let a = Agent::new(Arc::clone(&hv), c).unwrap();
    let (_, _, out) = run(
        &a,
        &Order::Migrate {
            incident: 43,
            to_slot: PARTNER,
        },
    );
    assert!(matches!(result_of(&out, "db"), GuestResult::Failed { .. }));
    assert_eq!(hv.state_of("db"), Some(GuestState::Running));
    let (_, _, out) = run(
        &a,
        &Order::Evacuate {
            incident: 44,
            to_slot: PARTNER,
        },
    );
    assert!(
        matches!(result_of(&out, "db"), GuestResult::Stopped { .. }),
        "{out:?}"
    );
    assert!(hv.migrated().is_empty());
}

#[test]
fn test_evacuate_without_room_on_the_partner_falls_back() {
    let dir = TempDir::new("migrate-room");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("db", GuestState::Running, 10);
    hv.add("web", GuestState::Running, 10);
    hv.set_destination_free(15);
    let mut c = config(dir.path());
    c.partner.libvirt_uri = Some("qemu+tls://b/system".into());
    c.zero_downtime.migration_workers = 1;
    let a = Agent::new(Arc::clone(&hv), c).unwrap();
    let (_, _, out) = run(
        &a,
        &Order::Evacuate {
            incident: 45,
            to_slot: PARTNER,
        },
    );
    // Priority: db first, it fits; web does not and is stopped for the restart after the fence.
    assert!(matches!(
        result_of(&out, "db"),
        GuestResult::LiveMigrated { .. }
    ));
    match result_of(&out, "web") {
        GuestResult::StoppedAfterMigration { reason, .. } => {
            assert!(
                matches!(reason, MigrationFailure::NoCapacity { slot: 4, .. }),
                "{reason}"
            );
            assert!(
                reason.to_string().contains("no capacity on slot 4"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(hv.migrated().len(), 1);
    assert_eq!(hv.state_of("web"), Some(GuestState::Shutoff));
}

// ----- fence proofs, fenced starts, start deadlines -----

/// A real process standing in for a guest's QEMU; killed and reaped on drop.
struct Qemu(std::process::Child);

impl Qemu {
    fn spawn() -> Qemu {
        Qemu(
            std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .unwrap(),
        )
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Whether it still runs (a zombie does not: it is reaped here).
    fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fenced(result: Option<OrderResult>) -> FenceReport {
    match result {
        Some(OrderResult::Fenced(r)) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn test_fence_after_an_agent_restart_with_libvirt_down_uses_the_persisted_set() {
    let dir = TempDir::new("fence-persisted");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("a", GuestState::Running, 10);
    hv.add("b", GuestState::Running, 10);
    hv.add("scratch", GuestState::Running, 10);
    hv.with_domain("scratch", |d| d.persistent = false);
    {
        let a = agent(&dir, &hv);
        a.local_definitions().unwrap(); // the periodic listing
    }
    // The agent restarts while libvirtd is down; the guests' QEMUs keep running. `a` still has
    // its pid file; `b`'s is gone, only the process table shows its QEMU.
    let (mut qa, mut qb, mut qs) = (Qemu::spawn(), Qemu::spawn(), Qemu::spawn());
    hv.set_pid("a", qa.pid());
    hv.add_process("a", qa.pid());
    hv.add_process("b", qb.pid());
    hv.add_process("scratch", qs.pid());
    hv.set_unavailable(true);
    let a = agent(&dir, &hv);
    let r = fenced(run(&a, &Order::FenceSelf { incident: 50 }).1);
    assert!(!qa.alive(), "QEMU of `a` still runs: {r:?}");
    assert!(!qb.alive(), "QEMU of `b` still runs: {r:?}");
    assert_eq!((r.killed, r.failed), (2, 0), "{r:?}");
    assert!(qs.alive(), "an unprotected guest is not fenced");
}

#[test]
fn test_fence_without_libvirt_no_pid_file_is_no_proof() {
    let dir = TempDir::new("fence-nopid");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("a", GuestState::Running, 10);
    hv.add("b", GuestState::Running, 10);
    let a = agent(&dir, &hv);
    a.local_definitions().unwrap();
    // No pid files; the process table cannot be read: nothing proves a or b stopped.
    hv.fail_scan(true);
    hv.set_hang(true);
    let r = fenced(run(&a, &Order::FenceSelf { incident: 51 }).1);
    hv.set_hang(false);
    assert_eq!((r.already_stopped, r.failed), (0, 2), "{r:?}");
    assert!(!r.complete());

    // A complete reading of the process table without their QEMU is a proof.
    let dir = TempDir::new("fence-scan-proof");
    let a = agent(&dir, &hv);
    a.local_definitions().unwrap();
    hv.fail_scan(false);
    hv.set_hang(true);
    let r = fenced(run(&a, &Order::FenceSelf { incident: 52 }).1);
    hv.set_hang(false);
    assert_eq!((r.already_stopped, r.failed), (2, 0), "{r:?}");
    assert!(hv.scans() > 0);
}

#[test]
fn test_fence_with_no_known_set_kills_every_qemu_found() {
    let dir = TempDir::new("fence-unknown");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    // Never listed with this state directory, and libvirt does not answer.
    let (mut q1, mut q2) = (Qemu::spawn(), Qemu::spawn());
    hv.add_process("x", q1.pid());
    hv.add_process("y", q2.pid());
    hv.set_unavailable(true);
    let a = agent(&dir, &hv);
    let r = fenced(run(&a, &Order::FenceSelf { incident: 53 }).1);
    assert!(!q1.alive() && !q2.alive(), "{r:?}");
    assert_eq!((r.killed, r.failed), (2, 0), "{r:?}");

    // The same without a readable process table: the agent cannot account for its guests.
    let dir = TempDir::new("fence-unknown-noscan");
    hv.fail_scan(true);
    let a = agent(&dir, &hv);
    let r = fenced(run(&a, &Order::FenceSelf { incident: 54 }).1);
    assert!(r.failed >= 1, "{r:?}");
}

#[test]
fn test_destroy_guest_answers_destroyed_only_on_a_positive_reading() {
    let dir = TempDir::new("destroy-proof");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("db", GuestState::Running, 10);
    hv.add("web", GuestState::Running, 10);
    let a = agent(&dir, &hv);
    a.local_definitions().unwrap();
    hv.set_hang(true);
    // No pid file, QEMU in the process table: found and killed.
    let mut q = Qemu::spawn();
    hv.add_process("db", q.pid());
    let destroy = |incident, name: &str| Order::DestroyGuest {
        incident,
        name: name.into(),
    };
    let (_, _, out) = run(&a, &destroy(55, "db"));
    assert_eq!(
        result_of(&out, "db"),
        &GuestResult::Destroyed { killed: true }
    );
    assert!(!q.alive());
    // No pid file and no readable process table: not destroyed, failed with why.
    hv.fail_scan(true);
    let (_, _, out) = run(&a, &destroy(56, "web"));
    match result_of(&out, "web") {
        GuestResult::Failed {
            reason: reason @ Failure::NotStopped { .. },
        } => assert!(reason.to_string().contains("process table"), "{reason}"),
        other => panic!("web reported {other:?} without a proof"),
    }
    // A complete reading without its QEMU: destroyed.
    hv.fail_scan(false);
    let (_, _, out) = run(&a, &destroy(57, "web"));
    assert_eq!(
        result_of(&out, "web"),
        &GuestResult::Destroyed { killed: false }
    );
    hv.set_hang(false);
}

/// Runs `order` on its own thread; the outcomes arrive on the returned channel, then the result.
fn spawn_order(
    a: &Arc<Agent<FakeHypervisor>>,
    order: Order,
) -> std::sync::mpsc::Receiver<Result<OrderResult, Vec<GuestOutcome>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let a = Arc::clone(a);
    std::thread::spawn(move || {
        assert_eq!(a.accept(&order).unwrap(), Acceptance::Execute);
        let seen = Mutex::new(Vec::new());
        let r = a
            .execute(&order, &|g: &GuestOutcome| {
                seen.lock().unwrap().push(g.clone())
            })
            .unwrap();
        let _ = tx.send(Err(seen.into_inner().unwrap()));
        let _ = tx.send(Ok(r));
    });
    rx
}

fn wait_blocked(hv: &FakeHypervisor, op: &'static str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !hv.blocked().contains(&(op, name.to_owned())) {
        assert!(Instant::now() < deadline, "{op} of {name} never began");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn finished(
    rx: &std::sync::mpsc::Receiver<Result<OrderResult, Vec<GuestOutcome>>>,
    within: Duration,
) -> (Vec<GuestOutcome>, OrderResult) {
    let outcomes = match rx.recv_timeout(within) {
        Ok(Err(o)) => o,
        other => panic!("order not finished within {within:?}: {other:?}"),
    };
    match rx.recv_timeout(Duration::from_secs(1)) {
        Ok(Ok(r)) => (outcomes, r),
        other => panic!("{other:?}"),
    }
}

#[test]
fn test_takeover_starts_nothing_after_a_fence() {
    let dir = TempDir::new("fence-takeover");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let mut c = config(dir.path());
    c.start_workers = 1;
    let a = Arc::new(Agent::new(Arc::clone(&hv), c).unwrap());
    for d in [def("db", 10), def("web", 10), def("tiny", 10)] {
        a.store_partner_definition(d).unwrap();
    }
    // db's start is in libvirt when this blade is told to fence itself; it completes soon.
    hv.hang_call("start", "db");
    let takeover = spawn_order(&a, restart(60, true));
    wait_blocked(&hv, "start", "db");
    let fence = spawn_order(&a, Order::FenceSelf { incident: 61 });
    std::thread::sleep(Duration::from_millis(50));
    hv.release("start", "db");
    let (_, r) = finished(&fence, Duration::from_secs(10));
    let OrderResult::Fenced(r) = r else { panic!() };
    let (out, _) = finished(&takeover, Duration::from_secs(10));
    for g in ["db", "web", "tiny"] {
        assert!(
            !hv.state_of(g).is_some_and(|s| s.is_active()),
            "`{g}` runs after the fence: {r:?} {out:?}"
        );
    }
    assert_eq!(r.failed, 0, "{r:?}");
    assert_eq!(
        r.destroyed, 1,
        "the start in flight was waited for, then destroyed: {r:?}"
    );
    assert_eq!((hv.starts("web"), hv.starts("tiny")), (0, 0));
    assert_eq!(result_of(&out, "web"), &GuestResult::Fenced);
    assert_eq!(result_of(&out, "tiny"), &GuestResult::Fenced);
}

#[test]
fn test_fence_counts_a_start_still_in_flight_as_remaining() {
    let dir = TempDir::new("fence-inflight");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let mut c = config(dir.path());
    c.start_workers = 1;
    c.start_timeout = Duration::from_secs(30);
    let a = Arc::new(Agent::new(Arc::clone(&hv), c).unwrap());
    a.store_partner_definition(def("db", 10)).unwrap();
    hv.hang_call("start", "db");
    let takeover = spawn_order(&a, restart(62, true));
    wait_blocked(&hv, "start", "db");
    let fence = spawn_order(&a, Order::FenceSelf { incident: 63 });
    // libvirt's start does not return: it may still create the QEMU after any reading.
    let (_, r) = finished(&fence, Duration::from_secs(10));
    let OrderResult::Fenced(r) = r else { panic!() };
    assert!(r.failed >= 1, "a start in flight reported fenced: {r:?}");
    hv.release("start", "db");
    finished(&takeover, Duration::from_secs(10));
}

#[test]
fn test_a_hung_start_times_out_and_the_other_guests_start() {
    let dir = TempDir::new("start-deadline");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let mut c = config(dir.path());
    c.start_workers = 1; // the one worker must not stay with the hung start
    c.start_timeout = Duration::from_millis(300);
    let a = Arc::new(Agent::new(Arc::clone(&hv), c).unwrap());
    for d in [def("db", 10), def("web", 10), def("tiny", 10)] {
        a.store_partner_definition(d).unwrap();
    }
    hv.hang_call("start", "db");
    let t0 = Instant::now();
    let (out, _) = finished(&spawn_order(&a, restart(64, true)), Duration::from_secs(10));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    match result_of(&out, "db") {
        GuestResult::TimedOut { reason } => {
            assert_eq!(reason.within_ms, 300, "{reason}");
            assert!(reason.to_string().contains("300 ms"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(result_of(&out, "web"), &GuestResult::Started);
    assert_eq!(result_of(&out, "tiny"), &GuestResult::Started);
    // libvirt completes the start later: the guest runs here, but it is not recorded as taken over.
    hv.release("start", "db");
    let deadline = Instant::now() + Duration::from_secs(5);
    while hv.starts("db") == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    let taken: Vec<String> = a.taken_over().into_iter().map(|(n, _)| n).collect();
    assert_eq!(taken, vec!["tiny", "web"]);
}

#[test]
fn test_a_hung_define_or_restart_times_out() {
    let dir = TempDir::new("define-deadline");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("local", GuestState::Crashed, 10);
    let mut c = config(dir.path());
    c.start_timeout = Duration::from_millis(300);
    let a = Arc::new(Agent::new(Arc::clone(&hv), c).unwrap());
    a.store_partner_definition(def("db", 10)).unwrap();
    hv.hang_call("define", "db");
    let (out, _) = finished(&spawn_order(&a, restart(65, true)), Duration::from_secs(10));
    assert!(
        matches!(result_of(&out, "db"), GuestResult::TimedOut { .. }),
        "{out:?}"
    );
    hv.hang_call("start", "local");
    let order = Order::RestartGuest {
        incident: 66,
        name: "local".into(),
    };
    let (out, _) = finished(&spawn_order(&a, order), Duration::from_secs(10));
    assert!(
        matches!(result_of(&out, "local"), GuestResult::TimedOut { .. }),
        "{out:?}"
    );
    hv.release("define", "db");
    hv.release("start", "local");
}

#[test]
fn test_an_evacuation_stop_that_libvirt_never_answers_is_bounded() {
    let dir = TempDir::new("evacuate-deadline");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("db", GuestState::Running, 10);
    hv.add("web", GuestState::Running, 10);
    let mut c = config(dir.path());
    c.start_timeout = Duration::from_millis(300);
    let a = Arc::new(Agent::new(Arc::clone(&hv), c).unwrap());
    hv.hang_call("shutdown", "db");
    let order = Order::Evacuate {
        incident: 67,
        to_slot: PARTNER,
    };
    let (out, _) = finished(&spawn_order(&a, order), Duration::from_secs(10));
    match result_of(&out, "db") {
        // evacuate_timeout_ms (300) + start_timeout (300)
        GuestResult::TimedOut { reason } => {
            assert_eq!(reason.within_ms, 600, "{reason}");
            assert!(reason.to_string().contains("600 ms"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        result_of(&out, "web"),
        &GuestResult::Stopped { graceful: true }
    );
    hv.release("shutdown", "db");
}

/// libvirt lost track of a QEMU (its state file removed, libvirtd restarted): it lists the
/// guest "shut off", or not at all, while the QEMU runs. FenceSelf must find and kill it by
/// the process table, not confirm it stopped on libvirt's word.
#[test]
fn test_fence_kills_a_qemu_libvirt_lists_shut_off_or_lost() {
    let dir = TempDir::new("fence-lost");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("g1", GuestState::Running, 10);
    hv.add("g2", GuestState::Running, 10);
    hv.add("g3", GuestState::Running, 10);
    let a = agent(&dir, &hv);
    a.local_definitions().unwrap(); // protected.json = [g1, g2, g3]
    let (mut q1, mut q2) = (Qemu::spawn(), Qemu::spawn());
    hv.add_process("g1", q1.pid());
    hv.add_process("g2", q2.pid());
    hv.with_domain("g1", |d| d.state = GuestState::Shutoff); // listed shut off
    hv.remove("g2"); // not listed at all
    hv.with_domain("g3", |d| d.state = GuestState::Shutoff); // really stopped
    let r = fenced(run(&a, &Order::FenceSelf { incident: 60 }).1);
    assert!(
        !q1.alive(),
        "QEMU of g1 survived a fence that answered {r:?}"
    );
    assert!(
        !q2.alive(),
        "QEMU of g2 survived a fence that answered {r:?}"
    );
    assert_eq!(
        (r.destroyed, r.killed, r.already_stopped, r.failed),
        (0, 2, 1, 0),
        "{r:?}"
    );
}

/// Without a complete process-table reading, libvirt's "shut off" is no proof (it is what
/// libvirt shows of a QEMU it lost); libvirt's own successful destroy is (logged as resting on
/// libvirt alone).
#[test]
fn test_fence_with_a_failed_scan_trusts_only_libvirts_destroy() {
    let dir = TempDir::new("fence-noscan-libvirt");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("up", GuestState::Running, 10);
    hv.add("off", GuestState::Shutoff, 10);
    let a = agent(&dir, &hv);
    hv.fail_scan(true);
    let r = fenced(run(&a, &Order::FenceSelf { incident: 61 }).1);
    assert_eq!(
        (r.destroyed, r.already_stopped, r.failed),
        (1, 0, 1),
        "{r:?}"
    );
    assert!(!r.complete());
    // With a complete reading, "off" is proven stopped.
    hv.fail_scan(false);
    let dir = TempDir::new("fence-scan-libvirt");
    let a = agent(&dir, &hv);
    let r = fenced(run(&a, &Order::FenceSelf { incident: 62 }).1);
    assert_eq!((r.already_stopped, r.failed), (2, 0), "{r:?}");
}

/// DestroyGuest of a guest libvirt lists "shut off" (or no longer knows) while its QEMU runs:
/// the QEMU is killed, and only then is the guest reported destroyed.
#[test]
fn test_destroy_guest_kills_a_qemu_libvirt_lost() {
    let dir = TempDir::new("destroy-lost");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("db", GuestState::Running, 10);
    hv.add("web", GuestState::Running, 10);
    let a = agent(&dir, &hv);
    a.local_definitions().unwrap();
    let destroy = |incident, name: &str| Order::DestroyGuest {
        incident,
        name: name.into(),
    };
    let mut q = Qemu::spawn();
    hv.add_process("db", q.pid());
    hv.with_domain("db", |d| d.state = GuestState::Shutoff);
    let (_, _, out) = run(&a, &destroy(63, "db"));
    assert!(!q.alive(), "QEMU of db survived: {out:?}");
    assert_eq!(
        result_of(&out, "db"),
        &GuestResult::Destroyed { killed: true }
    );
    // Not listed at all (stored set only), QEMU running.
    let mut q = Qemu::spawn();
    hv.add_process("web", q.pid());
    hv.remove("web");
    let (_, _, out) = run(&a, &destroy(64, "web"));
    assert!(!q.alive(), "QEMU of web survived: {out:?}");
    assert_eq!(
        result_of(&out, "web"),
        &GuestResult::Destroyed { killed: true }
    );
    // libvirt says shut off, the process table cannot be read: no proof.
    hv.add("app", GuestState::Running, 10);
    a.local_definitions().unwrap();
    hv.with_domain("app", |d| d.state = GuestState::Shutoff);
    hv.fail_scan(true);
    let (_, _, out) = run(&a, &destroy(65, "app"));
    assert!(
        matches!(result_of(&out, "app"), GuestResult::Failed { reason: reason @ Failure::NotStopped { .. } } if reason.to_string().contains("lose track") || reason.to_string().contains("process table")),
        "{out:?}"
    );
}

mod partner;
mod stale;

/// A guest defined on takeover does not autostart (a redefinition keeps the flag), and a
/// protected guest's autostart is cleared when it is listed; an unprotected one keeps it.
#[test]
fn test_autostart_cleared_on_takeover_and_for_protected_guests() {
    let dir = TempDir::new("autostart");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("db", GuestState::Shutoff, 1000);
    hv.set_autostart_flag("db", true);
    let a = agent(&dir, &hv);
    a.store_partner_definition(def("db", 1000)).unwrap();
    let (_, _, out) = run(&a, &restart(95, true));
    assert_eq!(result_of(&out, "db"), &GuestResult::Started);
    assert!(!hv.autostart_of("db"), "taken-over guest autostarts");

    let dir = TempDir::new("autostart-local");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("app", GuestState::Running, 100);
    hv.add("scratch", GuestState::Running, 100);
    hv.set_autostart_flag("app", true);
    hv.set_autostart_flag("scratch", true);
    let mut c = config(dir.path());
    c.protection = Protection::List(vec!["app".into()]);
    let a = Agent::new(Arc::clone(&hv), c).unwrap();
    a.local_definitions().unwrap();
    assert!(!hv.autostart_of("app"), "protected guest autostarts");
    assert!(hv.autostart_of("scratch"), "unprotected guest left alone");
}
