//! The second line against a double start: a whole-blade takeover waits for, and obeys, the
//! partner's heartbeats (`running`); the heartbeat's own `running` count follows listings and
//! fences.

use std::time::Instant;

use super::*;

/// An agent with `start_workers` start workers (the heartbeat interval is the default).
fn agent_with_workers(
    dir: &TempDir,
    hv: &Arc<FakeHypervisor>,
    workers: usize,
) -> Agent<FakeHypervisor> {
    let mut c = config(dir.path());
    c.start_workers = workers;
    Agent::new(Arc::clone(hv), c).unwrap()
}

fn window(a: &Agent<FakeHypervisor>) -> Duration {
    crate::decide::partner::window(a.config().heartbeat)
}

#[test]
fn test_partner_still_reporting_running_guests_refuses_the_takeover() {
    let dir = TempDir::new("partner-running");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let a = Arc::new(agent(&dir, &hv));
    a.store_partner_definition(def("db", 1000)).unwrap();
    a.store_partner_definition(def("web", 1000)).unwrap();
    a.partner_heartbeat(2);
    // The partner goes on reporting its guests running while the order waits.
    let beats = {
        let a = Arc::clone(&a);
        std::thread::spawn(move || {
            for _ in 0..5 {
                std::thread::sleep(Duration::from_millis(20));
                a.partner_heartbeat(2);
            }
        })
    };
    let t = Instant::now();
    let (acc, result, out) = run(&a, &restart(40, true));
    println!("refused after {} ms", t.elapsed().as_millis());
    beats.join().unwrap();
    assert_eq!(acc, Acceptance::Execute);
    assert_eq!(
        result,
        Some(OrderResult::Refused(Refusal::PartnerRunning {
            slot: PARTNER,
            running: 2
        }))
    );
    assert!(out.is_empty(), "no guest outcome streamed: {out:?}");
    assert_eq!((hv.starts("db"), hv.starts("web")), (0, 0));
    assert_eq!(hv.state_of("db"), None, "nothing defined either");
    // Journaled: a repeated order is answered with the same refusal, nothing started.
    match a.accept(&restart(40, true)).unwrap() {
        Acceptance::Done { result, .. } => assert!(
            matches!(result, OrderResult::Refused(Refusal::PartnerRunning { .. })),
            "{result:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(hv.starts("db"), 0);
}

#[test]
fn test_partner_reporting_none_after_the_order_lets_the_takeover_go_on() {
    let dir = TempDir::new("partner-none");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let a = Arc::new(agent(&dir, &hv));
    a.store_partner_definition(def("db", 1000)).unwrap();
    a.partner_heartbeat(1);
    let beat = {
        let a = Arc::clone(&a);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            a.partner_heartbeat(0);
        })
    };
    let (_, result, out) = run(&a, &restart(41, true));
    beat.join().unwrap();
    assert_eq!(result_of(&out, "db"), &GuestResult::Started, "{result:?}");
    assert_eq!(hv.starts("db"), 1);
}

#[test]
fn test_partner_silent_past_the_window_lets_the_takeover_go_on() {
    let dir = TempDir::new("partner-silent");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let a = agent(&dir, &hv);
    a.store_partner_definition(def("db", 1000)).unwrap();
    // Its last word was "running", then nothing: its agent died with the blade.
    a.partner_heartbeat(1);
    let t = Instant::now();
    let (_, _, out) = run(&a, &restart(42, true));
    let waited = t.elapsed();
    println!(
        "started after {} ms (window {} ms)",
        waited.as_millis(),
        window(&a).as_millis()
    );
    assert_eq!(result_of(&out, "db"), &GuestResult::Started);
    assert!(
        waited >= window(&a) - Duration::from_millis(1),
        "went on before the partner's heartbeat was older than the window"
    );
    // Never heard at all: no wait, started.
    let dir = TempDir::new("partner-never");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let a = agent(&dir, &hv);
    a.store_partner_definition(def("db", 1000)).unwrap();
    let (_, _, out) = run(&a, &restart(43, true));
    assert_eq!(result_of(&out, "db"), &GuestResult::Started);
}

#[test]
fn test_heartbeat_after_the_order_refuses_the_starts_still_to_come() {
    let dir = TempDir::new("partner-mid");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let a = Arc::new(agent_with_workers(&dir, &hv, 1));
    a.store_partner_definition(def("db", 1000)).unwrap();
    a.store_partner_definition(def("web", 1000)).unwrap();
    // db (priority 100) starts first; its start hangs until the partner is heard again.
    hv.hang_call("start", "db");
    let order = restart(44, true);
    let exec = {
        let (a, order) = (Arc::clone(&a), order.clone());
        std::thread::spawn(move || run(&a, &order))
    };
    let until = Instant::now() + Duration::from_secs(5);
    while !hv.blocked().contains(&("start", "db".to_owned())) {
        assert!(Instant::now() < until, "db's start never began");
        std::thread::sleep(Duration::from_millis(5));
    }
    a.partner_heartbeat(1);
    hv.release("start", "db");
    let (_, result, out) = exec.join().unwrap();
    assert_eq!(result_of(&out, "db"), &GuestResult::Started);
    assert_eq!(
        result_of(&out, "web"),
        &GuestResult::PartnerRunning { running: 1 }
    );
    assert_eq!(hv.starts("web"), 0);
    let Some(OrderResult::Guests(all)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(all.len(), 2);
}

#[test]
fn test_one_guest_failover_is_not_gated_by_the_blade_count() {
    let dir = TempDir::new("partner-subset");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let a = agent(&dir, &hv);
    a.store_partner_definition(def("db", 1000)).unwrap();
    // The blade is alive and runs its other guests.
    a.partner_heartbeat(3);
    let order = Order::RestartPartnerGuests {
        incident: 45,
        failed_slot: PARTNER,
        fence_confirmed: true,
        subset: Some(vec!["db".into()]),
    };
    let (_, _, out) = run(&a, &order);
    assert_eq!(result_of(&out, "db"), &GuestResult::Started);
}

#[test]
fn test_running_count_follows_listings_and_the_fence() {
    let dir = TempDir::new("running-count");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    hv.add("a", GuestState::Running, 10);
    hv.add("b", GuestState::Paused, 10);
    hv.add("c", GuestState::Shutoff, 10);
    let a = agent(&dir, &hv);
    let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    a.on_running_change({
        let w = Arc::clone(&woken);
        move || {
            w.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    // Nothing listed yet, no stored set: cannot account, counts as running.
    assert_eq!(a.running_count(true, 0), 1);
    a.local_definitions().unwrap();
    assert_eq!(a.running_count(true, 3), 2, "a and b have a QEMU");
    assert_eq!(
        a.running_count(false, 3),
        3,
        "libvirt silent: every stored protected guest counts"
    );
    let woken_before = woken.load(std::sync::atomic::Ordering::SeqCst);
    assert!(woken_before >= 1);
    let (_, result, _) = run(&a, &Order::FenceSelf { incident: 46 });
    assert!(matches!(result, Some(OrderResult::Fenced(r)) if r.complete()));
    assert_eq!(a.running_count(true, 3), 0);
    assert_eq!(a.running_count(false, 3), 0, "the fence's proof stands");
    assert!(woken.load(std::sync::atomic::Ordering::SeqCst) > woken_before);
    // A guest started by hand afterwards shows in the next listing.
    hv.with_domain("c", |d| d.state = GuestState::Running);
    a.local_definitions().unwrap();
    assert_eq!(a.running_count(true, 3), 1);
}

#[test]
fn test_heartbeat_between_acceptance_and_execution_counts_as_after_the_order() {
    let dir = TempDir::new("partner-mark");
    let hv = Arc::new(FakeHypervisor::new(1 << 20));
    let a = agent(&dir, &hv);
    a.store_partner_definition(def("db", 1000)).unwrap();
    let order = restart(47, true);
    assert_eq!(a.accept(&order).unwrap(), Acceptance::Execute);
    // The network thread handles the next datagram before the order's thread begins.
    a.partner_heartbeat(1);
    let result = a.execute(&order, &|_| {}).unwrap();
    assert_eq!(
        result,
        OrderResult::Refused(Refusal::PartnerRunning {
            slot: PARTNER,
            running: 1
        })
    );
    assert_eq!(hv.starts("db"), 0);
}
