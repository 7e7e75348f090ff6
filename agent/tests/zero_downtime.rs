//! Zero downtime on two real libvirtd blades (root; `tests/support/libvirt-blades.sh` starts
//! and stops them, each with its own `host_uuid`): live migration on Evacuate with libvirt's
//! job statistics, the fallback to stop + restart-after-fence for a guest that cannot
//! migrate, and no guest ever running on both blades (both daemons polled throughout).
//!
//! Measured numbers are printed (`cargo test -p blade-agent --test zero_downtime -- --nocapture`);
//! the tests assert correctness only.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use blade_agent::config::Config;
use blade_agent::execute::{Acceptance, Agent, AgentError};
use blade_agent::hypervisor::libvirt::LibvirtHypervisor;
use blade_agent::hypervisor::{GuestState, Hypervisor};
use blade_agent::order::{GuestOutcome, GuestResult, Order, OrderResult, Refusal};
use blade_agent::store::definitions::GuestDef;
use shelfha_proto::UnprotectedReason;

mod support;
use support::{agent, sh_ok, Blades, SERIAL};

/// `extra`: top-level keys, or a `[guests]` table (placed last). The disks of these tests
/// (`make-disk`, `shared-disk`) lie under the blades' base directory, which the definition
/// policy must allow.
fn config(slot: u8, partner: u8, uri: &str, run_dir: &Path, state: &Path, extra: &str) -> Config {
    let base = state.parent().expect("state dir under the blades' base");
    let allowed = format!(
        "allowed_storage_paths = [\"{}\", \"{}\"]\n",
        base.join("shared").display(),
        base.join("disks").display()
    );
    let (top, guests) = extra.split_once("[guests]\n").unwrap_or((extra, ""));
    let text = format!(
        "slot = {slot}\nshmc = \"127.0.0.1:7300\"\nlisten = \"127.0.0.1:0\"\nlibvirt_uri = \"{uri}\"\n\
         state_dir = \"{}\"\nqemu_run_dir = \"{}\"\nstart_workers = 2\nfence_timeout_ms = 500\n\
         evacuate_timeout_ms = 3000\n{top}\
         [partner]\nslot = {partner}\naddress = \"127.0.0.1:7301\"\n\
         [guests]\n{allowed}{guests}",
        state.display(),
        run_dir.display()
    );
    Config::parse(&text, Path::new("zd.toml")).unwrap()
}

fn execute(a: &Agent<LibvirtHypervisor>, order: &Order) -> OrderResult {
    match a.accept(order).unwrap() {
        Acceptance::Execute => a.execute(order, &|_: &GuestOutcome| {}).unwrap(),
        Acceptance::Refused(r) => OrderResult::Refused(r),
        other => panic!("{other:?}"),
    }
}

fn running(hv: &LibvirtHypervisor) -> BTreeSet<String> {
    hv.list_guests()
        .map(|v| {
            v.into_iter()
                .filter(|g| g.state == GuestState::Running)
                .map(|g| g.name)
                .collect()
        })
        .unwrap_or_default()
}

/// Polls both daemons until stopped; collects every guest seen running on both. B is asked
/// first: after a migration's switch-over the source never runs the guest again, so a guest
/// seen running on B and then still on A really ran twice.
struct Watch {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<(BTreeSet<String>, u64)>>,
}

impl Watch {
    fn start(a_uri: &str, a_run: PathBuf, b_uri: &str, b_run: PathBuf) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, a_uri, b_uri) = (Arc::clone(&stop), a_uri.to_owned(), b_uri.to_owned());
        let handle = std::thread::spawn(move || {
            let a = LibvirtHypervisor::open(&a_uri, a_run).unwrap();
            let b = LibvirtHypervisor::open(&b_uri, b_run).unwrap();
            let (mut twice, mut polls) = (BTreeSet::new(), 0u64);
            while !s.load(Ordering::SeqCst) {
                let on_b = running(&b);
                let on_a = running(&a);
                twice.extend(on_b.intersection(&on_a).cloned());
                polls += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            (twice, polls)
        });
        Watch {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops polling; panics if a guest ran on both blades.
    fn finish(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let (twice, polls) = self.handle.take().unwrap().join().unwrap();
        assert!(polls > 5, "the watch polled only {polls} times");
        assert!(twice.is_empty(), "running on both blades: {twice:?}");
        println!("no guest ran on both blades ({polls} polls of both daemons)");
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Evacuate on A with three diskless guests and one whose qcow2 image libvirt will not
/// migrate (a file on a local filesystem: "unsafe migration"): the three move live and are
/// reported migrated with libvirt's numbers; the fourth is stopped on A and started on B
/// only by the restart order that follows the fence, never before.
#[test]
fn test_evacuate_migrates_three_and_falls_back_for_one() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let blades = Blades::start("evac");
    let state = PathBuf::from(&blades.base);
    let image = sh_ok(&["make-disk", &format!("{}/shared/gd.qcow2", blades.base)])
        .trim()
        .to_owned();
    let mut cfg_a = config(
        1,
        2,
        &blades.a,
        &blades.run_dir("a"),
        &state.join("state-a"),
        "migration_workers = 2\nmigration_timeout_ms = 60000\n",
    );
    cfg_a.partner.libvirt_uri = Some(blades.b.clone());
    // No port: parallel migrations each get one from the destination daemon.
    cfg_a.partner.migration_uri = Some("tcp://127.0.0.1".into());
    let (hv_a, agent_a) = agent(cfg_a);
    let (hv_b, agent_b) = agent(config(
        2,
        1,
        &blades.b,
        &blades.run_dir("b"),
        &state.join("state-b"),
        "",
    ));
    for g in ["g1", "g2", "g3"] {
        hv_a.define(&blades.guest_xml(g, None)).unwrap();
        hv_a.start(g).unwrap();
    }
    hv_a.define(&blades.guest_xml("gd", Some(&image))).unwrap();
    hv_a.start("gd").unwrap();
    // A's definitions as its partner keeps them.
    for d in agent_a.local_definitions().unwrap() {
        agent_b.store_partner_definition(d).unwrap();
    }
    let watch = Watch::start(
        &blades.a,
        blades.run_dir("a"),
        &blades.b,
        blades.run_dir("b"),
    );

    let OrderResult::Guests(out) = execute(
        &agent_a,
        &Order::Evacuate {
            incident: 1,
            to_slot: 2,
        },
    ) else {
        panic!()
    };
    assert_eq!(out.len(), 4, "{out:?}");
    for o in &out {
        match &o.result {
            GuestResult::LiveMigrated {
                migration_ms,
                downtime_ms,
            } => println!(
                "{}: migrated, libvirt job {migration_ms} ms, guest downtime {} ms",
                o.name,
                downtime_ms.map_or("?".into(), |d| d.to_string())
            ),
            other => println!("{}: {other:?}", o.name),
        }
    }
    for g in ["g1", "g2", "g3"] {
        let o = out.iter().find(|o| o.name == g).unwrap();
        assert!(
            matches!(
                o.result,
                GuestResult::LiveMigrated {
                    downtime_ms: Some(_),
                    ..
                }
            ),
            "{g}: {:?}",
            o.result
        );
        assert_eq!(hv_b.state(g).unwrap(), GuestState::Running, "{g} on B");
        assert!(hv_a.state(g).is_err(), "{g} undefined on A after migration");
    }
    let gd = out.iter().find(|o| o.name == "gd").unwrap();
    assert!(
        matches!(gd.result, GuestResult::StoppedAfterMigration { .. }),
        "{:?}",
        gd.result
    );
    assert_eq!(hv_a.state("gd").unwrap(), GuestState::Shutoff);
    assert!(
        !running(&hv_b).contains("gd"),
        "gd must not start on B before the fence"
    );

    // Before the fence is confirmed B refuses; after it, B starts only what did not migrate.
    let early = Order::RestartPartnerGuests {
        incident: 1,
        failed_slot: 1,
        fence_confirmed: false,
        subset: None,
    };
    assert!(matches!(
        execute(&agent_b, &early),
        OrderResult::Refused(Refusal::FenceNotConfirmed(1))
    ));
    assert!(!running(&hv_b).contains("gd"));
    let order = Order::RestartPartnerGuests {
        incident: 1,
        failed_slot: 1,
        fence_confirmed: true,
        subset: None,
    };
    let OrderResult::Guests(out) = execute(&agent_b, &order) else {
        panic!()
    };
    for o in &out {
        let want = if o.name == "gd" {
            GuestResult::Started
        } else {
            GuestResult::AlreadyRunning
        };
        assert_eq!(o.result, want, "{}", o.name);
    }
    assert_eq!(
        running(&hv_b),
        ["g1", "g2", "g3", "gd"].map(String::from).into()
    );
    assert!(running(&hv_a).is_empty());
    watch.finish();
}

fn kill_qemu(blades: &Blades, blade: &str, guest: &str) {
    sh_ok(&["kill-qemu", &blades.base, blade, guest]);
}

/// Warm standby on a shared raw block device (two loop devices over one file, the same path in
/// each blade): B keeps A's guest started paused; a forced early resume (fence wrongly
/// claimed while A runs) is refused by virtlockd; after A's QEMU is killed, the restart order
/// resumes the standby; the standby is then re-created on A. A qcow2 guest listed for warm
/// standby is refused with a message naming the guest and the disk.
#[test]
fn test_warm_standby_resume_after_fence_and_refusals() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let blades = Blades::start("standby");
    let state = PathBuf::from(&blades.base);
    let lun = sh_ok(&["shared-disk", &blades.base, "db"])
        .trim()
        .to_owned();
    let image = sh_ok(&["make-disk", &format!("{}/shared/dq.qcow2", blades.base)])
        .trim()
        .to_owned();
    // The warm-standby list is in both blades' configuration (a symmetric pair).
    let standby = "[guests]\nwarm_standby = [\"db\", \"dq\"]\n";
    let (hv_a, agent_a) = agent(config(
        1,
        2,
        &blades.a,
        &blades.run_dir("a"),
        &state.join("state-a"),
        standby,
    ));
    let (hv_b, agent_b) = agent(config(
        2,
        1,
        &blades.b,
        &blades.run_dir("b"),
        &state.join("state-b"),
        standby,
    ));

    hv_a.define(&blades.guest_xml("db", Some(&lun))).unwrap();
    hv_a.define(&blades.guest_xml("dq", Some(&image))).unwrap();
    hv_a.start("db").unwrap();
    hv_a.start("dq").unwrap();
    // Start-time check on A names the refused guest and its disk.
    let refused = agent_a.check_warm_standby_config().unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].to_string().contains("guest `dq`") && refused[0].to_string().contains(&image),
        "{}",
        refused[0]
    );
    println!("refusal: {}", refused[0]);
    let watch = Watch::start(
        &blades.a,
        blades.run_dir("a"),
        &blades.b,
        blades.run_dir("b"),
    );

    // Tampered copies of A's real db definition are refused by B's definition policy and
    // never reach B's libvirt: another disk path, another name, a QEMU command line.
    let db = agent_a
        .local_definitions()
        .unwrap()
        .into_iter()
        .find(|d| d.name == "db")
        .expect("db listed on A");
    assert!(db.xml.contains(&lun), "{}", db.xml);
    let qemu_args = "<q:commandline xmlns:q='http://libvirt.org/schemas/domain/qemu/1.0'>\
                     <q:arg value='-S'/></q:commandline></domain>";
    for (name, xml, reason) in [
        (
            "db",
            db.xml.replace(&lun, "/dev/sda"),
            UnprotectedReason::DiskPath,
        ),
        ("dq", db.xml.clone(), UnprotectedReason::NameMismatch),
        (
            "db",
            db.xml.replace("</domain>", qemu_args),
            UnprotectedReason::QemuCommandline,
        ),
    ] {
        let pushed = GuestDef {
            name: name.into(),
            xml,
        };
        match agent_b.store_partner_definition(pushed) {
            Err(AgentError::Refused { refusal, .. }) => assert_eq!(refusal.reason, reason),
            other => panic!("{name}: {reason:?} not refused: {other:?}"),
        }
        assert!(agent_b.ensure_standbys().unwrap().is_empty());
        assert!(hv_b.state(name).is_err(), "{name} defined on B");
        assert!(hv_b.state("db").is_err(), "db defined on B");
    }
    assert_eq!(agent_b.partner_count(), 0);

    // The definitions arrive on B: db gets a paused standby, dq is refused.
    for d in agent_a.local_definitions().unwrap() {
        agent_b.store_partner_definition(d).unwrap();
    }
    assert!(
        agent_b.partner_refusals().is_empty(),
        "genuine pushes replace the refusals"
    );
    let refusals = agent_b.standby_refusals();
    let why = refusals
        .get("dq")
        .expect("dq refused on arrival")
        .to_string();
    assert!(why.contains("guest `dq`") && why.contains("qcow2"), "{why}");
    assert_eq!(agent_b.ensure_standbys().unwrap(), vec!["db".to_string()]);
    assert_eq!(hv_b.state("db").unwrap(), GuestState::Paused);
    assert!(hv_b.state("dq").is_err(), "no standby for the qcow2 guest");
    // The paused standby is not one of B's protected guests.
    assert!(agent_b
        .local_definitions()
        .unwrap()
        .iter()
        .all(|d| d.name != "db"));
    assert!(agent_b.ensure_standbys().unwrap().is_empty(), "idempotent");

    // Forced early resume while A still runs db: virtlockd refuses it.
    let forced = Order::RestartPartnerGuests {
        incident: 7,
        failed_slot: 1,
        fence_confirmed: true,
        subset: Some(vec!["db".into()]),
    };
    let OrderResult::Guests(out) = execute(&agent_b, &forced) else {
        panic!()
    };
    match &out[0].result {
        GuestResult::Failed { reason } => {
            println!("early resume refused: {reason}");
            assert!(
                reason.to_string().contains("resource busy")
                    || reason.to_string().contains("Lockspace"),
                "{reason}"
            );
        }
        other => panic!("db resumed while A runs it: {other:?}"),
    }
    assert_eq!(hv_b.state("db").unwrap(), GuestState::Paused);
    assert_eq!(hv_a.state("db").unwrap(), GuestState::Running);

    // A dies (its QEMU killed); the fence is confirmed; the restart order resumes the standby.
    let kill = std::time::Instant::now();
    kill_qemu(&blades, "a", "db");
    kill_qemu(&blades, "a", "dq");
    let order = Order::RestartPartnerGuests {
        incident: 8,
        failed_slot: 1,
        fence_confirmed: true,
        subset: None,
    };
    let OrderResult::Guests(out) = execute(&agent_b, &order) else {
        panic!()
    };
    let resumed_after = kill.elapsed();
    let result_of = |n: &str| out.iter().find(|o| o.name == n).unwrap().result.clone();
    assert_eq!(result_of("db"), GuestResult::Resumed, "{out:?}");
    assert_eq!(result_of("dq"), GuestResult::Started, "cold start: {out:?}");
    let db = out.iter().find(|o| o.name == "db").unwrap();
    let dq = out.iter().find(|o| o.name == "dq").unwrap();
    println!(
        "failover: db resumed {} ms after the order ({} ms after the kill), dq cold-started {} ms after the order",
        db.elapsed_ms,
        resumed_after.as_millis(),
        dq.elapsed_ms
    );
    assert_eq!(hv_b.state("db").unwrap(), GuestState::Running);
    assert!(
        agent_b
            .local_definitions()
            .unwrap()
            .iter()
            .any(|d| d.name == "db"),
        "after the resume db is B's protected guest"
    );

    // The pair is healthy again: A keeps B's definitions and re-creates the standby on A.
    for d in agent_b.local_definitions().unwrap() {
        agent_a.store_partner_definition(d).unwrap();
    }
    assert_eq!(agent_a.ensure_standbys().unwrap(), vec!["db".to_string()]);
    assert_eq!(hv_a.state("db").unwrap(), GuestState::Paused);
    assert_eq!(hv_b.state("db").unwrap(), GuestState::Running);
    watch.finish();
}
