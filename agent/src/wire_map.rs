//! Mapping between protocol messages (`shelfha-proto`) and the agent's orders and outcomes,
//! and the one place a typed failure ([`Failure`]) becomes a wire reason code. No networking:
//! pure functions; the daemon moves the results over the [`shelfha_proto::Endpoint`].
//!
//! Only the ShMC gives orders: an order-kind message from any other node is ignored
//! ([`order_from`] takes the sender).
//!
//! Part of the receive path: outside tests nothing here may index or slice unchecked, unwrap,
//! expect or panic (the lints below; `fuzz/fuzz_targets/agent_datagram.rs` drives it).
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use shelfha_proto::message::{guest_name, short_text};
use shelfha_proto::{GuestName, Message, Move, NodeId, Outcome, ReasonCode};

use crate::failure::Failure;
use crate::order::{FenceReport, GuestOutcome, GuestResult, Order, OrderResult, Refusal};

/// The order a message carries, if it is an order from the ShMC.
pub fn order_from(from: NodeId, msg: &Message) -> Option<Order> {
    if from != NodeId::SHMC {
        return None;
    }
    match msg {
        Message::FenceSelf { incident } => Some(Order::FenceSelf {
            incident: *incident,
        }),
        Message::RestartPartnerGuests {
            incident,
            failed_slot,
            fence,
            subset,
        } => Some(Order::RestartPartnerGuests {
            incident: *incident,
            failed_slot: *failed_slot,
            fence_confirmed: fence.is_confirmed(),
            subset: subset
                .as_ref()
                .map(|s| s.iter().map(|n| n.as_str().to_owned()).collect()),
        }),
        Message::RestartGuest { incident, name } => Some(Order::RestartGuest {
            incident: *incident,
            name: name.as_str().to_owned(),
        }),
        Message::DestroyGuest { incident, name } => Some(Order::DestroyGuest {
            incident: *incident,
            name: name.as_str().to_owned(),
        }),
        Message::Evacuate { incident, to_slot } => Some(Order::Evacuate {
            incident: *incident,
            to_slot: *to_slot,
        }),
        Message::Migrate { incident, to_slot } => Some(Order::Migrate {
            incident: *incident,
            to_slot: *to_slot,
        }),
        _ => None,
    }
}

/// A guest name for the wire; names that cannot travel are replaced by `?` (they cannot have
/// come from the wire, and libvirt names are checked before they are pushed).
fn wire_name(name: &str) -> GuestName {
    guest_name(name).unwrap_or_else(|| guest_name("?").unwrap_or_default())
}

/// The reason code of a failure: the one place a [`Failure`] becomes a wire code.
pub fn failure_code(failure: &Failure) -> ReasonCode {
    match failure {
        Failure::Migration(_) => ReasonCode::MigrationFailed,
        Failure::DiskLocked { .. } => ReasonCode::DiskLocked,
        Failure::Unavailable { .. } => ReasonCode::Timeout,
        Failure::NotStopped {
            hypervisor_unavailable,
            ..
        } => {
            if *hypervisor_unavailable {
                ReasonCode::Timeout
            } else {
                ReasonCode::HypervisorError
            }
        }
        Failure::StandbyResume(inner) => failure_code(inner),
        Failure::Abandoned { .. } => ReasonCode::Abandoned,
        Failure::Hypervisor { .. }
        | Failure::DefinitionRefused { .. }
        | Failure::NoThread { .. } => ReasonCode::HypervisorError,
    }
}

/// The wire (outcome, reason, text) of a guest result.
pub fn outcome_codes(result: &GuestResult) -> (Outcome, ReasonCode, String) {
    match result {
        GuestResult::Started => (Outcome::Started, ReasonCode::None, String::new()),
        GuestResult::AlreadyRunning => {
            (Outcome::Started, ReasonCode::AlreadyRunning, String::new())
        }
        GuestResult::NoMemory {
            needed_kib,
            available_kib,
        } => (
            Outcome::Refused,
            ReasonCode::NoMemory,
            format!("needs {needed_kib} KiB, {available_kib} KiB free"),
        ),
        GuestResult::Unknown => (Outcome::Refused, ReasonCode::NoDefinition, String::new()),
        // Evacuation by stopping: "started" means the order's goal (guest stopped here) is met.
        GuestResult::Stopped { graceful } => (
            Outcome::Started,
            ReasonCode::None,
            if *graceful {
                "stopped: shut down"
            } else {
                "stopped: destroyed"
            }
            .to_owned(),
        ),
        GuestResult::Migrated => (Outcome::Started, ReasonCode::None, "migrated".to_owned()),
        GuestResult::Destroyed { killed } => (
            Outcome::Started,
            ReasonCode::None,
            if *killed {
                "destroyed: QEMU killed"
            } else {
                "destroyed"
            }
            .to_owned(),
        ),
        GuestResult::Failed { reason } => {
            (Outcome::Failed, failure_code(reason), reason.to_string())
        }
        GuestResult::LiveMigrated {
            migration_ms,
            downtime_ms,
        } => (
            Outcome::Started,
            ReasonCode::None,
            match downtime_ms {
                Some(d) => format!("migrated in {migration_ms} ms, downtime {d} ms"),
                None => format!("migrated in {migration_ms} ms"),
            },
        ),
        GuestResult::Resumed => (
            Outcome::Started,
            ReasonCode::None,
            "resumed warm standby".to_owned(),
        ),
        GuestResult::Fenced => (
            Outcome::Refused,
            ReasonCode::Fenced,
            "not started: this blade fenced itself".to_owned(),
        ),
        GuestResult::TimedOut { reason } => {
            (Outcome::Failed, ReasonCode::Timeout, reason.to_string())
        }
        GuestResult::PartnerRunning { running } => (
            Outcome::Refused,
            ReasonCode::PartnerRunning,
            format!("partner still reports running guests ({running})"),
        ),
        // The order's goal (guest no longer runs here) is met; the reason says it did not migrate.
        GuestResult::StoppedAfterMigration { reason, graceful } => (
            Outcome::Started,
            ReasonCode::MigrationFailed,
            format!(
                "stopped ({}) after failed migration: {reason}",
                if *graceful { "shut down" } else { "destroyed" }
            ),
        ),
    }
}

/// The `GuestMoved` report of one guest of an Evacuate or Migrate order (none for other
/// orders and for results that say nothing about a move).
pub fn moved_message(order: &Order, own_slot: u8, o: &GuestOutcome) -> Option<Message> {
    let live_only = match order {
        Order::Evacuate { .. } => false,
        Order::Migrate { .. } => true,
        _ => return None,
    };
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    let (how, elapsed_ms, downtime_ms) = match &o.result {
        GuestResult::LiveMigrated {
            migration_ms,
            downtime_ms,
        } => (Move::Migrated, clamp(*migration_ms), downtime_ms.map(clamp)),
        GuestResult::Migrated => (Move::Migrated, o.elapsed_ms, None),
        GuestResult::Stopped { .. } | GuestResult::StoppedAfterMigration { .. } => {
            (Move::Stopped, o.elapsed_ms, None)
        }
        GuestResult::Failed { .. } | GuestResult::TimedOut { .. } if live_only => {
            (Move::KeptRunning, o.elapsed_ms, None)
        }
        GuestResult::Failed { .. } | GuestResult::TimedOut { .. } => {
            (Move::Failed, o.elapsed_ms, None)
        }
        _ => return None,
    };
    Some(Message::GuestMoved {
        incident: o.incident,
        slot: own_slot,
        name: wire_name(&o.name),
        how,
        elapsed_ms,
        downtime_ms,
    })
}

/// The blade whose guests an order handles (the `slot` of GuestOutcome and IncidentDone):
/// the failed blade for a takeover, this blade otherwise.
pub fn guests_slot(order: &Order, own_slot: u8) -> u8 {
    match order {
        Order::RestartPartnerGuests { failed_slot, .. } => *failed_slot,
        _ => own_slot,
    }
}

/// Whether each guest's outcome is reported as it happens (not for FenceSelf and
/// DestroyGuest, which answer with one closing message).
pub fn streams_outcomes(order: &Order) -> bool {
    !matches!(order, Order::FenceSelf { .. } | Order::DestroyGuest { .. })
}

/// The `GuestOutcome` message for one outcome of `order`.
pub fn outcome_message(order: &Order, own_slot: u8, o: &GuestOutcome) -> Message {
    let (outcome, reason, text) = outcome_codes(&o.result);
    Message::GuestOutcome {
        incident: o.incident,
        slot: guests_slot(order, own_slot),
        name: wire_name(&o.name),
        outcome,
        reason,
        text: short_text(&text),
        elapsed_ms: o.elapsed_ms,
    }
}

/// The messages answering a refused order: one `Refused` outcome per guest concerned (all
/// partner guests stored here for a restart, the named guest for RestartGuest) and the
/// incident's `IncidentDone`; a refused FenceSelf cannot happen.
pub fn refusal_messages(
    order: &Order,
    own_slot: u8,
    refusal: &Refusal,
    guests: &[String],
) -> Vec<Message> {
    let incident = order.incident();
    let slot = guests_slot(order, own_slot);
    let reason = match refusal {
        Refusal::FenceNotConfirmed(_) => ReasonCode::FenceNotConfirmed,
        Refusal::NotProtected(_) => ReasonCode::NotProtected,
        Refusal::Hypervisor(_) => ReasonCode::Timeout,
        Refusal::Fenced => ReasonCode::Fenced,
        Refusal::NotPartner(_) => ReasonCode::None,
        Refusal::PartnerRunning { .. } => ReasonCode::PartnerRunning,
    };
    let text = short_text(&refusal.to_string());
    let mut out: Vec<Message> = guests
        .iter()
        .map(|g| Message::GuestOutcome {
            incident,
            slot,
            name: wire_name(g),
            outcome: Outcome::Refused,
            reason,
            text: text.clone(),
            elapsed_ms: 0,
        })
        .collect();
    if matches!(order, Order::DestroyGuest { .. }) {
        return out;
    }
    out.push(Message::IncidentDone {
        incident,
        slot,
        started: 0,
        refused: u16::try_from(guests.len()).unwrap_or(u16::MAX),
        failed: 0,
    });
    out
}

/// The closing messages of an executed order: `FenceSelfConfirmed`; `GuestDestroyed` (or the
/// `Failed` outcome) for DestroyGuest; `IncidentDone` otherwise.
pub fn final_messages(order: &Order, own_slot: u8, result: &OrderResult) -> Vec<Message> {
    let incident = order.incident();
    let slot = guests_slot(order, own_slot);
    match result {
        OrderResult::Fenced(FenceReport {
            destroyed,
            killed,
            failed,
            ..
        }) => vec![Message::FenceSelfConfirmed {
            incident,
            destroyed: *destroyed,
            killed: *killed,
            remaining: *failed,
        }],
        OrderResult::Guests(outcomes) if matches!(order, Order::DestroyGuest { .. }) => outcomes
            .iter()
            .map(|o| match o.result {
                GuestResult::Destroyed { killed } => Message::GuestDestroyed {
                    incident,
                    name: wire_name(&o.name),
                    killed,
                },
                _ => outcome_message(order, own_slot, o),
            })
            .collect(),
        OrderResult::Guests(outcomes) => {
            let (mut started, mut refused, mut failed) = (0u16, 0u16, 0u16);
            for o in outcomes {
                match outcome_codes(&o.result).0 {
                    Outcome::Started => started = started.saturating_add(1),
                    Outcome::Refused => refused = refused.saturating_add(1),
                    _ => failed = failed.saturating_add(1),
                }
            }
            vec![Message::IncidentDone {
                incident,
                slot,
                started,
                refused,
                failed,
            }]
        }
        OrderResult::Refused(r) => refusal_messages(order, own_slot, r, &[]),
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use shelfha_proto::FenceProof;

    fn name(s: &str) -> GuestName {
        guest_name(s).unwrap()
    }

    #[test]
    fn test_orders_only_from_shmc() {
        let m = Message::FenceSelf { incident: 5 };
        assert_eq!(
            order_from(NodeId::SHMC, &m),
            Some(Order::FenceSelf { incident: 5 })
        );
        assert_eq!(
            order_from(NodeId(2), &m),
            None,
            "a partner cannot order a fence"
        );
        assert_eq!(order_from(NodeId::SHMC, &Message::HypervisorUp), None);
    }

    #[test]
    fn test_restart_order_fence_proof() {
        let mut subset = heapless::Vec::new();
        subset.push(name("db")).unwrap();
        for (fence, confirmed) in [
            (FenceProof::Unconfirmed, false),
            (FenceProof::Unknown(77), false),
            (FenceProof::HotSwapM1, true),
            (FenceProof::SelfFenced, true),
        ] {
            let m = Message::RestartPartnerGuests {
                incident: 9,
                failed_slot: 4,
                fence,
                subset: Some(subset.clone()),
            };
            assert_eq!(
                order_from(NodeId::SHMC, &m),
                Some(Order::RestartPartnerGuests {
                    incident: 9,
                    failed_slot: 4,
                    fence_confirmed: confirmed,
                    subset: Some(vec!["db".into()]),
                })
            );
        }
    }

    #[test]
    fn test_outcome_messages() {
        let restart = Order::RestartPartnerGuests {
            incident: 3,
            failed_slot: 4,
            fence_confirmed: true,
            subset: None,
        };
        let o = GuestOutcome {
            incident: 3,
            name: "db".into(),
            result: GuestResult::AlreadyRunning,
            elapsed_ms: 40,
        };
        assert_eq!(
            outcome_message(&restart, 3, &o),
            Message::GuestOutcome {
                incident: 3,
                slot: 4,
                name: name("db"),
                outcome: Outcome::Started,
                reason: ReasonCode::AlreadyRunning,
                text: heapless::String::new(),
                elapsed_ms: 40
            }
        );
        let long = "resource busy: Lockspace resource '0123456789abcdef0123456789abcdef0123456789abcdef' is locked";
        let o = GuestOutcome {
            incident: 3,
            name: "db".into(),
            result: GuestResult::Failed {
                reason: Failure::DiskLocked {
                    detail: long.into(),
                },
            },
            elapsed_ms: 1,
        };
        let local = Order::RestartGuest {
            incident: 3,
            name: "db".into(),
        };
        let Message::GuestOutcome {
            outcome,
            reason,
            text,
            slot,
            ..
        } = outcome_message(&local, 3, &o)
        else {
            panic!()
        };
        assert_eq!(slot, 3, "RestartGuest reports our own slot");
        assert_eq!((outcome, reason), (Outcome::Failed, ReasonCode::DiskLocked));
        assert_eq!(text.len(), shelfha_proto::MAX_TEXT);
        assert!(long.starts_with(text.as_str()));
        assert!(outcome_message(&local, 3, &o).is_valid());
    }

    #[test]
    fn test_failure_codes() {
        let d = || "x".to_owned();
        for (f, code) in [
            (
                Failure::Hypervisor { detail: d() },
                ReasonCode::HypervisorError,
            ),
            (Failure::DiskLocked { detail: d() }, ReasonCode::DiskLocked),
            (Failure::Unavailable { detail: d() }, ReasonCode::Timeout),
            (
                Failure::Migration(crate::failure::MigrationFailure::NoPath),
                ReasonCode::MigrationFailed,
            ),
            (
                Failure::DefinitionRefused { detail: d() },
                ReasonCode::HypervisorError,
            ),
            (
                Failure::StandbyResume(Box::new(Failure::DiskLocked { detail: d() })),
                ReasonCode::DiskLocked,
            ),
            (
                Failure::NotStopped {
                    detail: d(),
                    hypervisor_unavailable: true,
                },
                ReasonCode::Timeout,
            ),
            (
                Failure::NotStopped {
                    detail: d(),
                    hypervisor_unavailable: false,
                },
                ReasonCode::HypervisorError,
            ),
            (Failure::Abandoned { detail: d() }, ReasonCode::Abandoned),
            (
                Failure::NoThread {
                    what: d(),
                    detail: d(),
                },
                ReasonCode::HypervisorError,
            ),
        ] {
            assert_eq!(failure_code(&f), code, "{f:?}");
        }
    }

    #[test]
    fn test_fenced_and_timed_out_codes() {
        assert_eq!(
            outcome_codes(&GuestResult::Fenced).0,
            Outcome::Refused,
            "a start cancelled by the fence is refused"
        );
        assert_eq!(outcome_codes(&GuestResult::Fenced).1, ReasonCode::Fenced);
        let t = GuestResult::TimedOut {
            reason: crate::failure::DeadlineExceeded {
                undone: "start `db`".into(),
                within_ms: 30_000,
            },
        };
        let (outcome, reason, text) = outcome_codes(&t);
        assert_eq!((outcome, reason), (Outcome::Failed, ReasonCode::Timeout));
        assert!(text.contains("30000 ms"));
        let order = Order::RestartPartnerGuests {
            incident: 8,
            failed_slot: 2,
            fence_confirmed: true,
            subset: None,
        };
        let o = |result| GuestOutcome {
            incident: 8,
            name: "db".into(),
            result,
            elapsed_ms: 1,
        };
        assert_eq!(
            final_messages(
                &order,
                1,
                &OrderResult::Guests(vec![o(t.clone()), o(GuestResult::Fenced)])
            ),
            vec![Message::IncidentDone {
                incident: 8,
                slot: 2,
                started: 0,
                refused: 1,
                failed: 1
            }]
        );
        let msgs = refusal_messages(&order, 1, &Refusal::Fenced, &["db".into()]);
        assert!(matches!(
            msgs[0],
            Message::GuestOutcome {
                outcome: Outcome::Refused,
                reason: ReasonCode::Fenced,
                ..
            }
        ));
    }

    #[test]
    fn test_partner_running_codes() {
        let (outcome, reason, text) = outcome_codes(&GuestResult::PartnerRunning { running: 2 });
        assert_eq!(
            (outcome, reason),
            (Outcome::Refused, ReasonCode::PartnerRunning)
        );
        assert!(
            text.contains("partner still reports running guests"),
            "{text}"
        );
        let order = Order::RestartPartnerGuests {
            incident: 9,
            failed_slot: 2,
            fence_confirmed: true,
            subset: None,
        };
        let refusal = Refusal::PartnerRunning {
            slot: 2,
            running: 1,
        };
        let msgs = refusal_messages(&order, 1, &refusal, &["db".into(), "web".into()]);
        assert_eq!(msgs.len(), 3);
        for m in &msgs[..2] {
            match m {
                Message::GuestOutcome {
                    slot: 2,
                    outcome: Outcome::Refused,
                    reason: ReasonCode::PartnerRunning,
                    text,
                    ..
                } => assert!(
                    text.contains("partner still reports running guests"),
                    "{text}"
                ),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            msgs[2],
            Message::IncidentDone {
                incident: 9,
                slot: 2,
                started: 0,
                refused: 2,
                failed: 0
            }
        );
    }

    #[test]
    fn test_final_and_refusal_messages() {
        let order = Order::RestartPartnerGuests {
            incident: 8,
            failed_slot: 2,
            fence_confirmed: true,
            subset: None,
        };
        let outs = vec![
            GuestOutcome {
                incident: 8,
                name: "a".into(),
                result: GuestResult::Started,
                elapsed_ms: 1,
            },
            GuestOutcome {
                incident: 8,
                name: "b".into(),
                result: GuestResult::NoMemory {
                    needed_kib: 2,
                    available_kib: 1,
                },
                elapsed_ms: 1,
            },
            GuestOutcome {
                incident: 8,
                name: "c".into(),
                result: GuestResult::Failed {
                    reason: Failure::Hypervisor { detail: "x".into() },
                },
                elapsed_ms: 1,
            },
        ];
        assert_eq!(
            final_messages(&order, 1, &OrderResult::Guests(outs)),
            vec![Message::IncidentDone {
                incident: 8,
                slot: 2,
                started: 1,
                refused: 1,
                failed: 1
            }]
        );
        let fence = Order::FenceSelf { incident: 9 };
        let r = FenceReport {
            destroyed: 2,
            killed: 1,
            already_stopped: 3,
            failed: 0,
            elapsed_ms: 5,
        };
        assert_eq!(
            final_messages(&fence, 1, &OrderResult::Fenced(r)),
            vec![Message::FenceSelfConfirmed {
                incident: 9,
                destroyed: 2,
                killed: 1,
                remaining: 0
            }]
        );
        let destroy = Order::DestroyGuest {
            incident: 10,
            name: "a".into(),
        };
        let done = GuestOutcome {
            incident: 10,
            name: "a".into(),
            result: GuestResult::Destroyed { killed: true },
            elapsed_ms: 3,
        };
        assert_eq!(
            final_messages(&destroy, 1, &OrderResult::Guests(vec![done])),
            vec![Message::GuestDestroyed {
                incident: 10,
                name: name("a"),
                killed: true
            }]
        );
        let stuck = GuestOutcome {
            incident: 10,
            name: "a".into(),
            result: GuestResult::Failed {
                reason: Failure::Hypervisor { detail: "x".into() },
            },
            elapsed_ms: 3,
        };
        assert!(matches!(
            final_messages(&destroy, 1, &OrderResult::Guests(vec![stuck]))[..],
            [Message::GuestOutcome {
                outcome: Outcome::Failed,
                slot: 1,
                ..
            }]
        ));
        assert!(
            !streams_outcomes(&destroy) && !streams_outcomes(&fence) && streams_outcomes(&order)
        );
        let msgs = refusal_messages(
            &order,
            1,
            &Refusal::FenceNotConfirmed(2),
            &["a".into(), "b".into()],
        );
        assert_eq!(msgs.len(), 3);
        assert!(msgs.iter().all(|m| m.is_valid()));
        assert!(matches!(
            &msgs[0],
            Message::GuestOutcome {
                reason: ReasonCode::FenceNotConfirmed,
                outcome: Outcome::Refused,
                ..
            }
        ));
        assert_eq!(
            msgs[2],
            Message::IncidentDone {
                incident: 8,
                slot: 2,
                started: 0,
                refused: 2,
                failed: 0
            }
        );
    }
}
