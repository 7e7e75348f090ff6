//! Orders journaled by an earlier agent process: an order that starts guests is resumed only
//! within its boot and `start_timeout_ms`; otherwise it is closed as abandoned, nothing
//! started. Stop orders are always resumed; a FenceSelf of another boot is carried out again.

use super::*;

/// An agent in boot `boot` whose `start_timeout_ms` is `start_timeout`.
fn agent_with_bound(
    state: &TempDir,
    hv: &Arc<FakeHypervisor>,
    boot: &str,
    start_timeout: Duration,
) -> Agent<FakeHypervisor> {
    let file = state.path().join("boot_id");
    std::fs::write(&file, format!("{boot}\n")).unwrap();
    let mut cfg = config(state.path());
    cfg.start_timeout = start_timeout;
    Agent::with_boot_id_file(Arc::clone(hv), cfg, &file).unwrap()
}

/// Hands each interrupted order to the agent as the daemon does at start-up.
fn resume_all(a: &Agent<FakeHypervisor>) -> Vec<(Acceptance, Option<OrderResult>)> {
    a.interrupted_orders()
        .iter()
        .map(|o| {
            let (acc, res, _) = run(a, o);
            (acc, res)
        })
        .collect()
}

fn abandoned(acc: &Acceptance, name: &str) -> bool {
    match acc {
        Acceptance::Done { outcomes, result } => {
            let o = outcomes.iter().find(|o| o.name == name);
            matches!(
                o.map(|o| &o.result),
                Some(GuestResult::Failed {
                    reason: Failure::Abandoned { .. }
                })
            ) && matches!(result, OrderResult::Guests(v) if v == outcomes)
        }
        _ => false,
    }
}

/// A takeover accepted, then this blade reboots before it starts anything: the new boot does
/// not resume it (the partner may have been repaired and run its guests again since).
#[test]
fn test_stale_takeover_not_resumed_after_reboot() {
    let dir = TempDir::new("stale-takeover");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let order = restart(70, true);
    {
        let a = agent_in_boot(&dir, &hv, "boot-1");
        a.store_partner_definition(def("db", 1000)).unwrap();
        assert_eq!(a.accept(&order).unwrap(), Acceptance::Execute);
        // power lost before any start
    }
    let a = agent_in_boot(&dir, &hv, "boot-2");
    assert_eq!(a.interrupted_orders(), vec![order.clone()]);
    let resumed = resume_all(&a);
    assert_eq!(resumed.len(), 1);
    assert!(abandoned(&resumed[0].0, "db"), "{resumed:?}");
    assert_ne!(
        hv.state_of("db"),
        Some(GuestState::Running),
        "partner guest started in a new boot from a takeover order of the previous boot"
    );
    assert!(a.interrupted_orders().is_empty(), "record closed");
    // The ShMC's retry is answered from the journal: still nothing started.
    let (acc, _, _) = run(&a, &order);
    assert!(abandoned(&acc, "db"), "{acc:?}");
    assert_ne!(hv.state_of("db"), Some(GuestState::Running));
}

/// The same within one boot: the agent process was down longer than `start_timeout_ms`.
#[test]
fn test_stale_takeover_not_resumed_after_long_agent_outage() {
    let dir = TempDir::new("stale-takeover2");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let order = restart(71, true);
    let bound = Duration::from_millis(50);
    {
        let a = agent_with_bound(&dir, &hv, "boot-1", bound);
        a.store_partner_definition(def("db", 1000)).unwrap();
        assert_eq!(a.accept(&order).unwrap(), Acceptance::Execute);
    }
    std::thread::sleep(bound * 3);
    let a = agent_with_bound(&dir, &hv, "boot-1", bound);
    let resumed = resume_all(&a);
    assert_eq!(resumed.len(), 1);
    assert!(abandoned(&resumed[0].0, "db"), "{resumed:?}");
    assert_ne!(hv.state_of("db"), Some(GuestState::Running));
}

/// An agent restart in the same boot within `start_timeout_ms` resumes the takeover.
#[test]
fn test_fresh_takeover_resumed_after_quick_agent_restart() {
    let dir = TempDir::new("fresh-takeover");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let order = restart(72, true);
    {
        let a = agent_with_bound(&dir, &hv, "boot-1", Duration::from_secs(60));
        a.store_partner_definition(def("db", 1000)).unwrap();
        assert_eq!(a.accept(&order).unwrap(), Acceptance::Execute);
    }
    let a = agent_with_bound(&dir, &hv, "boot-1", Duration::from_secs(60));
    let resumed = resume_all(&a);
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].0, Acceptance::Execute, "{resumed:?}");
    assert_eq!(hv.state_of("db"), Some(GuestState::Running));
}

/// A RestartGuest of a local guest accepted, then the blade is reset (the ShMC fails the
/// guest over to the partner): the new boot does not restart it here.
#[test]
fn test_stale_restart_guest_not_resumed_after_reboot() {
    let dir = TempDir::new("stale-restartguest");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("db", GuestState::Crashed, 10);
    let order = Order::RestartGuest {
        incident: 80,
        name: "db".into(),
    };
    {
        let a = agent_in_boot(&dir, &hv, "boot-1");
        assert_eq!(a.accept(&order).unwrap(), Acceptance::Execute);
    }
    hv.with_domain("db", |d| d.state = GuestState::Shutoff);
    let a = agent_in_boot(&dir, &hv, "boot-2");
    let resumed = resume_all(&a);
    assert_eq!(resumed.len(), 1);
    assert!(abandoned(&resumed[0].0, "db"), "{resumed:?}");
    assert_ne!(
        hv.state_of("db"),
        Some(GuestState::Running),
        "own guest restarted in a new boot from a stale order"
    );
}

/// A record written before orders carried their boot counts as another boot.
#[test]
fn test_record_without_boot_id_counts_as_another_boot() {
    let dir = TempDir::new("stale-old-record");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let order = restart(73, true);
    {
        let a = agent_in_boot(&dir, &hv, "boot-1");
        a.store_partner_definition(def("db", 1000)).unwrap();
        assert_eq!(a.accept(&order).unwrap(), Acceptance::Execute);
    }
    let path = dir.path().join("journal.json");
    let mut j: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for rec in j["orders"].as_object_mut().unwrap().values_mut() {
        let rec = rec.as_object_mut().unwrap();
        assert!(rec.remove("boot_id").is_some());
        assert!(rec.remove("accepted_boottime_ms").is_some());
    }
    std::fs::write(&path, serde_json::to_vec(&j).unwrap()).unwrap();
    let a = agent_in_boot(&dir, &hv, "boot-1");
    let resumed = resume_all(&a);
    assert!(abandoned(&resumed[0].0, "db"), "{resumed:?}");
    assert_ne!(hv.state_of("db"), Some(GuestState::Running));
}

/// A stop order interrupted by a reboot is still resumed.
#[test]
fn test_destroy_guest_resumed_after_reboot() {
    let dir = TempDir::new("destroy-resume");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("db", GuestState::Running, 10);
    let order = Order::DestroyGuest {
        incident: 81,
        name: "db".into(),
    };
    {
        let a = agent_in_boot(&dir, &hv, "boot-1");
        assert_eq!(a.accept(&order).unwrap(), Acceptance::Execute);
    }
    let a = agent_in_boot(&dir, &hv, "boot-2");
    let resumed = resume_all(&a);
    assert_eq!(resumed[0].0, Acceptance::Execute);
    assert_ne!(hv.state_of("db"), Some(GuestState::Running));
}

/// A FenceSelf finished in boot-1 and retried in boot-2 is carried out again with fresh
/// readings (a guest running again is destroyed), not answered from the journal.
#[test]
fn test_fence_self_of_another_boot_runs_again() {
    let dir = TempDir::new("fence-done-newboot");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("db", GuestState::Running, 10);
    let fence = Order::FenceSelf { incident: 90 };
    {
        let a = agent_in_boot(&dir, &hv, "boot-1");
        let (acc, _, _) = run(&a, &fence);
        assert_eq!(acc, Acceptance::Execute);
        assert_ne!(hv.state_of("db"), Some(GuestState::Running));
        // The same boot: answered from the journal.
        let (acc, _, _) = run(&a, &fence);
        assert!(matches!(acc, Acceptance::Done { .. }), "{acc:?}");
    }
    hv.with_domain("db", |d| d.state = GuestState::Running);
    let a = agent_in_boot(&dir, &hv, "boot-2");
    let (acc, result, _) = run(&a, &fence);
    assert_eq!(acc, Acceptance::Execute, "run again in the new boot");
    let Some(OrderResult::Fenced(r)) = result else {
        panic!("{result:?}")
    };
    assert!(r.complete(), "{r:?}");
    assert_ne!(hv.state_of("db"), Some(GuestState::Running));
    assert!(a.is_fenced());
}
