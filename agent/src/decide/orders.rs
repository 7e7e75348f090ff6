//! Orders, decided: whether an order may be carried out at all (its preconditions), and the
//! plan of a takeover (which partner guests start, in which order, and which are reported
//! at once: already running, no memory, finished before an agent restart).

use std::collections::BTreeMap;

use crate::hypervisor::GuestState;
use crate::order::{GuestOutcome, GuestResult, Order, Refusal};
use crate::store::definitions::GuestDef;

/// The preconditions of `order` on a blade whose partner is `partner_slot`: a takeover needs
/// our partner and a confirmed fence of it; a fenced blade carries out nothing but a FenceSelf.
pub fn precondition(order: &Order, partner_slot: u8, fenced: bool) -> Result<(), Refusal> {
    if let Order::RestartPartnerGuests {
        failed_slot,
        fence_confirmed,
        ..
    } = order
    {
        if *failed_slot != partner_slot {
            return Err(Refusal::NotPartner(*failed_slot));
        }
        if !fence_confirmed {
            return Err(Refusal::FenceNotConfirmed(*failed_slot));
        }
    }
    if fenced && !matches!(order, Order::FenceSelf { .. }) {
        return Err(Refusal::Fenced);
    }
    Ok(())
}

/// What a takeover does with one partner guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Finished before an agent restart: its recorded outcome is repeated, nothing redone.
    Repeat(GuestOutcome),
    /// Reported at once with this result; nothing asked of libvirt.
    Report(GuestResult),
    /// Started (or its warm standby resumed).
    Start,
}

/// Sorts guests highest priority first, then by name.
pub fn by_priority<T>(items: &mut [T], name: impl Fn(&T) -> &str, priority: impl Fn(&str) -> u32) {
    items.sort_by(|a, b| {
        let (na, nb) = (name(a), name(b));
        priority(nb).cmp(&priority(na)).then_with(|| na.cmp(nb))
    });
}

/// The plan of a takeover, in the order of `defs`: `recorded` the outcomes journaled before an
/// agent restart, `local` the states of the domains here, `standby_listed` whether a guest is
/// configured for warm standby, `budget_kib` the memory left for new guests (`u64::MAX`:
/// unknown, no check). A paused warm standby is resumed without a memory check (its memory is
/// allocated already); a definition without a readable `<memory>` is started without one.
pub fn plan_takeover(
    defs: Vec<GuestDef>,
    recorded: &BTreeMap<String, GuestOutcome>,
    local: &BTreeMap<String, GuestState>,
    standby_listed: impl Fn(&str) -> bool,
    mut budget_kib: u64,
) -> Vec<(GuestDef, Step)> {
    let mut plan = Vec::with_capacity(defs.len());
    for def in defs {
        if let Some(prev) = recorded.get(&def.name).filter(|o| o.result.is_success()) {
            plan.push((def.clone(), Step::Repeat(prev.clone())));
            continue;
        }
        let state = local.get(&def.name).copied();
        let step = if state == Some(GuestState::Paused) && standby_listed(&def.name) {
            Step::Start
        } else if state.is_some_and(GuestState::is_active) {
            Step::Report(GuestResult::AlreadyRunning)
        } else {
            let needed = def.memory_kib().unwrap_or(0);
            if needed > budget_kib {
                Step::Report(GuestResult::NoMemory {
                    needed_kib: needed,
                    available_kib: budget_kib,
                })
            } else {
                budget_kib -= needed;
                Step::Start
            }
        };
        plan.push((def, step));
    }
    plan
}

#[cfg(test)]
mod test {
    use super::*;

    fn def(name: &str, kib: u64) -> GuestDef {
        GuestDef {
            name: name.into(),
            xml: format!("<domain><name>{name}</name><memory unit='KiB'>{kib}</memory></domain>"),
        }
    }

    #[test]
    fn test_preconditions() {
        let restart = |slot, confirmed| Order::RestartPartnerGuests {
            incident: 1,
            failed_slot: slot,
            fence_confirmed: confirmed,
            subset: None,
        };
        assert_eq!(precondition(&restart(4, true), 4, false), Ok(()));
        assert_eq!(
            precondition(&restart(5, true), 4, false),
            Err(Refusal::NotPartner(5))
        );
        assert_eq!(
            precondition(&restart(4, false), 4, false),
            Err(Refusal::FenceNotConfirmed(4))
        );
        assert_eq!(
            precondition(&restart(4, true), 4, true),
            Err(Refusal::Fenced)
        );
        assert_eq!(
            precondition(&Order::FenceSelf { incident: 1 }, 4, true),
            Ok(())
        );
    }

    #[test]
    fn test_takeover_plan() {
        let done = GuestOutcome {
            incident: 1,
            name: "done".into(),
            result: GuestResult::Started,
            elapsed_ms: 3,
        };
        let recorded = BTreeMap::from([("done".to_owned(), done.clone())]);
        let local = BTreeMap::from([
            ("up".to_owned(), GuestState::Running),
            ("standby".to_owned(), GuestState::Paused),
        ]);
        let defs = vec![
            def("done", 1),
            def("up", 1),
            def("standby", 1_000),
            def("a", 60),
            def("b", 60),
        ];
        let plan = plan_takeover(defs, &recorded, &local, |n| n == "standby", 100);
        let steps: Vec<(&str, &Step)> = plan.iter().map(|(d, s)| (d.name.as_str(), s)).collect();
        assert_eq!(
            steps,
            vec![
                ("done", &Step::Repeat(done)),
                ("up", &Step::Report(GuestResult::AlreadyRunning)),
                ("standby", &Step::Start),
                ("a", &Step::Start),
                (
                    "b",
                    &Step::Report(GuestResult::NoMemory {
                        needed_kib: 60,
                        available_kib: 40
                    })
                ),
            ]
        );
        let mut names = vec!["low", "high", "mid", "also-high"];
        by_priority(
            &mut names,
            |n| n,
            |n| match n {
                "high" | "also-high" => 9,
                "mid" => 5,
                _ => 0,
            },
        );
        assert_eq!(names, vec!["also-high", "high", "mid", "low"]);
    }
}
