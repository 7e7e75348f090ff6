//! The class-to-actions table: what a decision of each class carries.
//!
//! Rows are tried in order; the first row of the decision's class whose
//! condition holds gives the actions. Every class ends with an `Always` row.

use super::output::Action;
use crate::classify::Class;

/// When a row applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum When {
    /// Whatever the blade's state.
    Always,
    /// The blade's agent is registered (it can destroy its own guests).
    AgentRegistered,
    /// The guest crashed past its restart limit (it moves to the partner).
    GuestFailover,
    /// The partner has no open incident and is in M4 (or not seen yet).
    PartnerAvailable,
    /// The blade's registered agent live-migrates to its partner, and the
    /// partner is available.
    LiveMigration,
}

/// Facts about the blade a row's condition reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Facts {
    /// The blade's agent is registered.
    pub registered: bool,
    /// A guest decision that moves the guest to the partner.
    pub guest_failover: bool,
    /// The partner can take the blade's guests now.
    pub partner_available: bool,
    /// The blade's registered agent announced live migration to its partner.
    pub live_migration: bool,
}

impl When {
    const fn holds(self, f: &Facts) -> bool {
        match self {
            Self::Always => true,
            Self::AgentRegistered => f.registered,
            Self::GuestFailover => f.guest_failover,
            Self::PartnerAvailable => f.partner_available,
            Self::LiveMigration => f.live_migration && f.partner_available,
        }
    }
}

/// One row of [`ACTIONS`].
#[derive(Debug)]
pub(super) struct Row {
    class: Class,
    when: When,
    actions: &'static [Action],
}

const fn row(class: Class, when: When, actions: &'static [Action]) -> Row {
    Row {
        class,
        when,
        actions,
    }
}

use Action::*;
use When::*;

/// The class-to-actions table.
pub(super) const ACTIONS: &[Row] = &[
    row(
        Class::BladeLost,
        AgentRegistered,
        &[FenceIpmb, SelfFence, FailoverToPartner],
    ),
    row(Class::BladeLost, Always, &[FenceIpmb, FailoverToPartner]),
    row(
        Class::BladeHardware,
        AgentRegistered,
        &[FenceIpmb, SelfFence, FailoverToPartner],
    ),
    row(
        Class::BladeHardware,
        Always,
        &[FenceIpmb, FailoverToPartner],
    ),
    row(
        Class::HostOs,
        AgentRegistered,
        &[FenceIpmb, SelfFence, FailoverToPartner],
    ),
    row(Class::HostOs, Always, &[FenceIpmb, FailoverToPartner]),
    row(Class::BladeExtraction, Always, &[Evacuate, Deactivate]),
    row(Class::Hypervisor, Always, &[SelfFence, FailoverToPartner]),
    row(Class::Guest, GuestFailover, &[FenceGuest, FailoverGuest]),
    row(Class::Guest, Always, &[RestartLocal]),
    row(Class::IpmbLinkDegraded, Always, &[Alert]),
    row(Class::IpmbLinkLost, Always, &[Alert]),
    row(Class::BladeDegraded, PartnerAvailable, &[Evacuate, Alert]),
    row(Class::BladeDegraded, Always, &[Alert]),
    row(Class::IpmcLost, LiveMigration, &[Evacuate, Alert]),
    row(Class::IpmcLost, Always, &[Alert]),
    row(Class::AgentLinkLost, Always, &[Alert]),
];

/// The actions of a decision of `class` for a blade with `facts`.
pub(super) fn actions(class: Class, facts: &Facts) -> &'static [Action] {
    ACTIONS
        .iter()
        .find(|r| r.class == class && r.when.holds(facts))
        .map_or(&[], |r| r.actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSES: [Class; 11] = [
        Class::BladeLost,
        Class::BladeExtraction,
        Class::BladeHardware,
        Class::HostOs,
        Class::Hypervisor,
        Class::Guest,
        Class::IpmbLinkDegraded,
        Class::IpmbLinkLost,
        Class::BladeDegraded,
        Class::IpmcLost,
        Class::AgentLinkLost,
    ];

    #[test]
    fn test_every_class_has_a_fallback_row() {
        for class in CLASSES {
            let last = ACTIONS.iter().rfind(|r| r.class == class);
            assert_eq!(last.map(|r| r.when), Some(Always), "{class}");
        }
    }

    #[test]
    fn test_rows_fit_one_decision() {
        for r in ACTIONS {
            assert!(!r.actions.is_empty() && r.actions.len() <= crate::capacity::MAX_ACTIONS);
        }
    }

    #[test]
    fn test_conditions_pick_their_row() {
        let none = Facts {
            registered: false,
            guest_failover: false,
            partner_available: false,
            live_migration: false,
        };
        let all = Facts {
            registered: true,
            guest_failover: true,
            partner_available: true,
            live_migration: true,
        };
        assert_eq!(
            actions(Class::HostOs, &none),
            [FenceIpmb, FailoverToPartner]
        );
        assert_eq!(
            actions(Class::HostOs, &all),
            [FenceIpmb, SelfFence, FailoverToPartner]
        );
        assert_eq!(actions(Class::Guest, &none), [RestartLocal]);
        assert_eq!(actions(Class::Guest, &all), [FenceGuest, FailoverGuest]);
        assert_eq!(actions(Class::BladeDegraded, &none), [Alert]);
        assert_eq!(actions(Class::BladeDegraded, &all), [Evacuate, Alert]);
        assert_eq!(actions(Class::IpmcLost, &none), [Alert]);
        assert_eq!(actions(Class::IpmcLost, &all), [Evacuate, Alert]);
        let no_partner = Facts {
            partner_available: false,
            ..all
        };
        assert_eq!(actions(Class::IpmcLost, &no_partner), [Alert]);
        assert_eq!(actions(Class::AgentLinkLost, &all), [Alert]);
    }
}
