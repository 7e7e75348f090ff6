//! The libvirt implementation against libvirt's in-process test driver (`test:///default`):
//! define, start, pause, destroy, events, metadata flag, and the agent logic on top of it.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use blade_agent::config::Config;
use blade_agent::execute::{Acceptance, Agent};
use blade_agent::hypervisor::libvirt::{qemu_pid_from, LibvirtHypervisor};
use blade_agent::hypervisor::{
    GuestState, Hypervisor, HypervisorError, HypervisorEvent, LifecycleKind, METADATA_URI,
};
use blade_agent::order::{GuestOutcome, GuestResult, Order, OrderResult};
use blade_agent::store::definitions::GuestDef;

fn xml(name: &str, memory_kib: u64, flagged: bool) -> String {
    let meta = if flagged {
        format!("<metadata><shelfha:protect xmlns:shelfha='{METADATA_URI}'/></metadata>")
    } else {
        String::new()
    };
    format!(
        "<domain type='test'><name>{name}</name>{meta}<memory unit='KiB'>{memory_kib}</memory>\
         <vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"
    )
}

fn open() -> LibvirtHypervisor {
    LibvirtHypervisor::open("test:///default", PathBuf::from("/nonexistent")).expect("test driver")
}

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("blade-agent-it-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn test_define_start_pause_destroy() {
    let hv = open();
    assert_eq!(hv.define(&xml("vm1", 65536, false)).unwrap(), "vm1");
    let g = hv
        .list_guests()
        .unwrap()
        .into_iter()
        .find(|g| g.name == "vm1")
        .unwrap();
    assert_eq!(g.state, GuestState::Shutoff);
    assert!(g.persistent);
    assert!(!g.flagged);
    assert_eq!(g.memory_kib, 65536);
    assert!(g.xml.contains("<name>vm1</name>"));
    assert_eq!(g.uuid.len(), 36);
    hv.start("vm1").unwrap();
    assert_eq!(hv.state("vm1").unwrap(), GuestState::Running);
    assert!(matches!(
        hv.start("vm1"),
        Err(HypervisorError::Failed { op: "start", .. })
    ));
    hv.destroy("vm1").unwrap();
    assert_eq!(hv.state("vm1").unwrap(), GuestState::Shutoff);
    // The test driver has no paused start (checked against QEMU in the real-libvirtd tests);
    // the error must name the operation, and leave the guest stopped.
    let e = hv.start_paused("vm1").unwrap_err();
    assert!(
        matches!(
            &e,
            HypervisorError::Failed {
                op: "start paused",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(hv.state("vm1").unwrap(), GuestState::Shutoff);
    assert!(matches!(
        hv.resume("vm1"),
        Err(HypervisorError::Failed { op: "resume", .. })
    ));
    assert_eq!(
        hv.state("nope"),
        Err(HypervisorError::NoSuchGuest("nope".into()))
    );
    assert!(matches!(
        hv.destroy("nope"),
        Err(HypervisorError::NoSuchGuest(_))
    ));
    assert!(hv.free_memory_kib().unwrap() > 0);
    hv.ping().unwrap();
}

#[test]
fn test_autostart_cleared() {
    let hv = open();
    hv.define(&xml("auto1", 1024, false)).unwrap();
    hv.set_autostart("auto1", true).unwrap();
    assert!(hv.autostart("auto1").unwrap());
    hv.set_autostart("auto1", false).unwrap();
    assert!(!hv.autostart("auto1").unwrap());
    assert!(matches!(
        hv.set_autostart("nope", false),
        Err(HypervisorError::NoSuchGuest(_))
    ));
}

#[test]
fn test_metadata_flag() {
    let hv = open();
    hv.define(&xml("flagged", 1024, true)).unwrap();
    hv.define(&xml("plain", 1024, false)).unwrap();
    let all = hv.list_guests().unwrap();
    assert!(all.iter().find(|g| g.name == "flagged").unwrap().flagged);
    assert!(!all.iter().find(|g| g.name == "plain").unwrap().flagged);
}

#[test]
fn test_lifecycle_events() {
    let hv = open();
    let (tx, rx) = mpsc::channel();
    hv.subscribe(tx).unwrap();
    hv.define(&xml("ev", 1024, false)).unwrap();
    hv.start("ev").unwrap();
    hv.destroy("ev").unwrap();
    let mut kinds = Vec::new();
    while let Ok(ev) = rx.recv_timeout(Duration::from_secs(5)) {
        if let HypervisorEvent::Lifecycle {
            name, kind, uuid, ..
        } = ev
        {
            if name == "ev" {
                assert_eq!(uuid.len(), 36);
                kinds.push(kind);
                if kind == LifecycleKind::Stopped {
                    break;
                }
            }
        }
    }
    assert_eq!(
        kinds,
        vec![
            LifecycleKind::Defined,
            LifecycleKind::Started,
            LifecycleKind::Stopped
        ]
    );
}

#[test]
fn test_qemu_pid_file_checked_against_cmdline() {
    let dir = TempDir::new("pid");
    let mut child = std::process::Command::new("sh")
        .args([
            "-c",
            "sleep 30",
            "qemu-system-x86_64",
            "-name",
            "guest=vm7,debug-threads=on",
        ])
        .spawn()
        .unwrap();
    // Until the child has exec'd, its /proc cmdline is still ours.
    let cmdline = format!("/proc/{}/cmdline", child.id());
    for _ in 0..500 {
        if std::fs::read(&cmdline).is_ok_and(|c| c.windows(10).any(|w| w == b"guest=vm7,")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(dir.0.join("vm7.pid"), format!("{}\n", child.id())).unwrap();
    std::fs::write(dir.0.join("other.pid"), format!("{}\n", child.id())).unwrap();
    assert_eq!(qemu_pid_from(&dir.0, "vm7"), Some(child.id() as i32));
    assert_eq!(
        qemu_pid_from(&dir.0, "other"),
        None,
        "pid of another guest's QEMU"
    );
    assert_eq!(qemu_pid_from(&dir.0, "absent"), None);
    assert_eq!(qemu_pid_from(&dir.0, "../vm7"), None);
    child.kill().unwrap();
    child.wait().unwrap();
}

fn config(state: &Path) -> Config {
    let text = format!(
        "slot = 1\nshmc = \"127.0.0.1:7300\"\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n\
         libvirt_uri = \"test:///default\"\nstart_workers = 2\n\
         [partner]\nslot = 2\naddress = \"127.0.0.1:7302\"\n\
         [guests.priority]\nhigh = 10\n",
        state.display()
    );
    Config::parse(&text, Path::new("it.toml")).unwrap()
}

#[test]
fn test_agent_takeover_and_fence_on_test_driver() {
    let dir = TempDir::new("agent");
    let hv = Arc::new(open());
    let agent = Agent::new(Arc::clone(&hv), config(&dir.0)).unwrap();
    for name in ["low", "high"] {
        agent
            .store_partner_definition(GuestDef {
                name: name.into(),
                xml: xml(name, 1024, false),
            })
            .unwrap();
    }
    let order = Order::RestartPartnerGuests {
        incident: 1,
        failed_slot: 2,
        fence_confirmed: true,
        subset: None,
    };
    assert_eq!(agent.accept(&order).unwrap(), Acceptance::Execute);
    let noop = |_: &GuestOutcome| {};
    let Ok(OrderResult::Guests(out)) = agent.execute(&order, &noop) else {
        panic!()
    };
    assert!(
        out.iter().all(|o| o.result == GuestResult::Started),
        "{out:?}"
    );
    assert_eq!(hv.state("high").unwrap(), GuestState::Running);
    assert_eq!(hv.state("low").unwrap(), GuestState::Running);

    let fence = Order::FenceSelf { incident: 2 };
    assert_eq!(agent.accept(&fence).unwrap(), Acceptance::Execute);
    let Ok(OrderResult::Fenced(r)) = agent.execute(&fence, &noop) else {
        panic!()
    };
    // The test driver's own running domain "test" is persistent too: all three destroyed.
    assert_eq!((r.destroyed, r.killed, r.failed), (3, 0, 0), "{r:?}");
    assert!(hv
        .list_guests()
        .unwrap()
        .iter()
        .all(|g| !g.state.is_active()));
}
