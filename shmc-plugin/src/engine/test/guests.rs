//! Guest crashes: restart limit, window, single-guest failover.

use super::*;

#[test]
fn test_guest_restart_limit_then_failover() {
    let mut s = shelf();
    let vm = name("vm1");
    for (i, t) in [0u64, 1000, 2000].iter().enumerate() {
        s.on_agent(*t, Slot(1), AgentInput::GuestCrashed { name: vm.clone() });
        let outs = drain(&mut s);
        let d = decisions(&outs);
        assert_eq!(
            (d[0].class, actions(&d[0])),
            (Class::Guest, vec!["restart_local"])
        );
        assert_eq!(
            d[0].cause,
            Cause::GuestCrash {
                crashes_in_window: i as u8 + 1
            }
        );
        assert_eq!(d[0].guest.as_deref(), Some("vm1"));
        assert_eq!(
            orders(&outs),
            [(
                Slot(1),
                Order::RestartGuest {
                    name: vm.clone(),
                    incident: i as u32 + 1
                }
            )]
        );
    }
    s.on_agent(3000, Slot(1), AgentInput::GuestCrashed { name: vm.clone() });
    let outs = drain(&mut s);
    let d = decisions(&outs);
    assert_eq!(actions(&d[0]), ["fence_guest", "failover_guest"]);
    assert_eq!(
        orders(&outs),
        [(
            Slot(1),
            Order::DestroyGuest {
                name: vm.clone(),
                incident: d[0].incident
            }
        )]
    );
    let pending: std::vec::Vec<_> = s.pending_guest_failovers().collect();
    assert_eq!(pending, [(Slot(1), &vm, d[0].incident)]);
    // Another guest's destruction does not release this one.
    s.on_agent(
        3100,
        Slot(1),
        AgentInput::GuestDestroyed {
            name: name("vm2"),
            incident: d[0].incident,
        },
    );
    assert!(orders(&drain(&mut s)).is_empty());
    s.on_agent(
        3200,
        Slot(1),
        AgentInput::GuestDestroyed {
            name: vm.clone(),
            incident: d[0].incident,
        },
    );
    assert_eq!(
        orders(&drain(&mut s)),
        [(
            Slot(2),
            Order::RestartPartnerGuests {
                failed_slot: Slot(1),
                incident: d[0].incident,
                fence: Confirmation::GuestDestroyed,
                subset: Some(vm.clone())
            }
        )]
    );
    assert_eq!(s.pending_guest_failovers().count(), 0);
    // The blade itself stays healthy.
    assert!(s.blade(Slot(1)).unwrap().incident.is_none());
}

#[test]
fn test_guest_window_is_ten_minutes() {
    let mut s = shelf();
    let vm = name("vm1");
    for t in [0u64, 1000, 2000, 600_000] {
        s.on_agent(t, Slot(1), AgentInput::GuestCrashed { name: vm.clone() });
        let d = decisions(&drain(&mut s));
        assert_eq!(
            actions(&d[0]),
            ["restart_local"],
            "crash at {t}: the one at 0 left the window"
        );
    }
    s.on_agent(
        600_500,
        Slot(1),
        AgentInput::GuestCrashed { name: vm.clone() },
    );
    let d = decisions(&drain(&mut s));
    assert_eq!(actions(&d[0]), ["fence_guest", "failover_guest"]);
}

#[test]
fn test_guest_destroy_unconfirmed_is_no_failover() {
    let mut s = shelf();
    let vm = name("vm1");
    for t in 0..4u64 {
        s.on_agent(t, Slot(1), AgentInput::GuestCrashed { name: vm.clone() });
    }
    let _ = drain(&mut s);
    s.poll(10_003);
    let outs = drain(&mut s);
    assert_eq!(
        alerts(&outs),
        [Alert::GuestFenceUnconfirmed {
            slot: Slot(1),
            name: vm.clone()
        }]
    );
    s.on_agent(
        10_100,
        Slot(1),
        AgentInput::GuestDestroyed {
            name: vm,
            incident: 4,
        },
    );
    assert!(orders(&drain(&mut s)).is_empty());
}
