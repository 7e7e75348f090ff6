//! The policy applied by the agent: on store, before a start, before a warm standby.

use std::sync::Arc;

use super::*;
use crate::execute::{Acceptance, Agent, AgentError};
use crate::hypervisor::fake::FakeHypervisor;
use crate::hypervisor::GuestState;
use crate::order::{GuestOutcome, GuestResult, Order, OrderResult};
use crate::store::definitions::GuestDef;
use crate::testutil::TempDir;

const LUN: &str = "<disk type='block' device='disk'><driver name='qemu' type='raw' \
                   cache='none'/><source dev='/dev/shared/db'/><target dev='vda'/></disk>";

fn config(dir: &TempDir, guests: &str) -> Config {
    let text = format!(
        "slot = 3\nshmc = \"127.0.0.1:7300\"\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n\
         [partner]\nslot = 4\naddress = \"127.0.0.1:7302\"\n[guests]\n{guests}",
        dir.path().display()
    );
    Config::parse(&text, Path::new("t.toml")).unwrap()
}

fn def(name: &str, xml_name: &str, devices: &str) -> GuestDef {
    GuestDef {
        name: name.into(),
        xml: format!(
            "<domain type='test'><name>{xml_name}</name><memory unit='KiB'>1000</memory>\
             <devices>{devices}</devices></domain>"
        ),
    }
}

fn refusal(r: Result<bool, AgentError>) -> UnprotectedReason {
    match r {
        Err(AgentError::Refused { refusal, .. }) => refusal.reason,
        other => panic!("not refused: {other:?}"),
    }
}

fn restart(a: &Agent<FakeHypervisor>, incident: u32) -> Vec<GuestOutcome> {
    let order = Order::RestartPartnerGuests {
        incident,
        failed_slot: 4,
        fence_confirmed: true,
        subset: None,
    };
    assert_eq!(a.accept(&order).unwrap(), Acceptance::Execute);
    match a.execute(&order, &|_: &GuestOutcome| {}).unwrap() {
        OrderResult::Guests(v) => v,
        other => panic!("{other:?}"),
    }
}

#[test]
fn test_refused_definitions_never_stored_defined_started_or_kept_warm() {
    let dir = TempDir::new("policy-agent");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("local1", GuestState::Running, 10);
    let cfg = config(
        &dir,
        "warm_standby = [\"db\", \"evil\"]\nallowed_storage_paths = [\"/dev/shared\"]\n",
    );
    let a = Agent::new(Arc::clone(&hv), cfg).unwrap();
    // Accepted: a LUN under the allowed path, a disk-less guest.
    assert!(a.store_partner_definition(def("db", "db", LUN)).unwrap());
    assert!(a.store_partner_definition(def("web", "web", "")).unwrap());
    // A push under another name redefining this blade's own guest.
    assert_eq!(
        refusal(a.store_partner_definition(def("web2", "local1", ""))),
        UnprotectedReason::NameMismatch
    );
    // A listed warm-standby guest with a host device.
    let pci = "<hostdev mode='subsystem' type='pci'><source><address bus='0x06'/></source>\
               </hostdev>";
    assert_eq!(
        refusal(a.store_partner_definition(def("evil", "evil", &format!("{LUN}{pci}")))),
        UnprotectedReason::HostDevice
    );
    // `web` changes into one with a disk outside the allowed paths: the older copy goes.
    let shadow = "<disk type='file'><source file='/etc/shadow'/><target dev='vda'/></disk>";
    assert_eq!(
        refusal(a.store_partner_definition(def("web", "web", shadow))),
        UnprotectedReason::DiskPath
    );
    let stored: Vec<String> = a
        .partner_definitions()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(stored, ["db"]);
    assert!(!dir.path().join("partner/web.xml").exists());
    assert!(!dir.path().join("partner/evil.xml").exists());
    let refused: Vec<String> = a.partner_refusals().into_iter().map(|(n, _)| n).collect();
    assert_eq!(refused, ["evil", "web", "web2"]);
    // Warm standby: only the accepted one.
    assert_eq!(a.ensure_standbys().unwrap(), ["db"]);
    assert_eq!(hv.state_of("evil"), None);
    // Takeover: only the accepted one; this blade's own guest untouched.
    let out = restart(&a, 1);
    let names: Vec<&str> = out.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["db"]);
    assert_eq!(out[0].result, GuestResult::Resumed);
    assert_eq!(hv.state_of("web"), None);
    assert_eq!(hv.state_of("local1"), Some(GuestState::Running));
    assert_eq!(hv.starts("local1"), 0);
}

#[test]
fn test_foreign_emulator_and_own_security_label_never_stored() {
    let dir = TempDir::new("policy-emulator");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let cfg = config(
        &dir,
        "allowed_emulators = [\"/opt/qemu/bin/qemu-system-x86_64\"]\n",
    );
    let a = Agent::new(Arc::clone(&hv), cfg).unwrap();
    let opt = "<emulator>/opt/qemu/bin/qemu-system-x86_64</emulator>";
    assert!(a.store_partner_definition(def("db", "db", opt)).unwrap());
    // The default list no longer applies once the setting is given.
    let kvm = "<emulator>/usr/bin/kvm</emulator>";
    assert_eq!(
        refusal(a.store_partner_definition(def("web", "web", kvm))),
        UnprotectedReason::Emulator
    );
    let root = format!(
        "{opt}</devices><seclabel type='static' model='dac' relabel='no'>\
         <label>0:0</label></seclabel><devices>"
    );
    assert_eq!(
        refusal(a.store_partner_definition(def("app", "app", &root))),
        UnprotectedReason::SecurityLabel
    );
    let stored: Vec<String> = a
        .partner_definitions()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(stored, ["db"]);
    let refused: Vec<String> = a.partner_refusals().into_iter().map(|(n, _)| n).collect();
    assert_eq!(refused, ["app", "web"]);
    let out = restart(&a, 3);
    let names: Vec<&str> = out.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["db"]);
    assert_eq!(hv.state_of("web"), None);
    assert_eq!(hv.state_of("app"), None);
}

#[test]
fn test_stored_definition_checked_again_under_a_narrower_configuration() {
    let dir = TempDir::new("policy-recheck");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    {
        let wide = config(&dir, "allowed_storage_paths = [\"/dev/shared\"]\n");
        let a = Agent::new(Arc::clone(&hv), wide).unwrap();
        a.store_partner_definition(def("db", "db", LUN)).unwrap();
        a.store_partner_definition(def("web", "web", "")).unwrap();
    }
    // Restarted with the default allowed paths: db's LUN is no longer allowed.
    let a = Agent::new(Arc::clone(&hv), config(&dir, "warm_standby = [\"db\"]\n")).unwrap();
    assert_eq!(a.partner_count(), 2, "loaded as stored");
    assert!(a.ensure_standbys().unwrap().is_empty(), "no standby");
    assert!(a.standby_refusals()["db"]
        .to_string()
        .contains("/dev/shared/db"));
    assert_eq!(hv.state_of("db"), None);
    let out = restart(&a, 2);
    let db = out.iter().find(|o| o.name == "db").unwrap();
    match &db.result {
        GuestResult::Failed {
            reason: reason @ crate::failure::Failure::DefinitionRefused { .. },
        } => {
            assert!(
                reason.to_string().contains("definition refused"),
                "{reason}"
            )
        }
        other => panic!("db: {other:?}"),
    }
    assert_eq!(hv.state_of("db"), None, "never defined");
    assert_eq!(hv.state_of("web"), Some(GuestState::Running));
    // The start-up recheck moves it to the refusals (to be reported).
    let refused = a.recheck_partner_definitions();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, "db");
    assert_eq!(refused[0].1.reason, UnprotectedReason::DiskPath);
    assert_eq!(a.partner_count(), 1);
    assert!(a.recheck_partner_definitions().is_empty());
    assert!(!dir.path().join("partner/db.xml").exists());
}
