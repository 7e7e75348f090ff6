//! Incidents: the state of an open incident, one enum carrying its data.

use super::*;

/// One IPMB fence step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceStep {
    /// PICMG Set FRU Activation, deactivate FRU 0.
    Deactivate,
    /// PICMG FRU Control, cold reset FRU 0.
    ColdReset,
    /// PICMG Set Power Level 0 for FRU 0.
    PowerOff,
}

impl FenceStep {
    /// The IPMB request of this step (FRU 0).
    pub const fn request(self) -> Request {
        match self {
            Self::Deactivate => Request::SetFruActivation {
                fru_id: 0,
                activate: false,
            },
            Self::ColdReset => Request::FruControl {
                fru_id: 0,
                option: FruControlOption::ColdReset,
            },
            Self::PowerOff => Request::SetPowerLevel {
                fru_id: 0,
                level: 0,
                copy_desired: false,
            },
        }
    }
}

/// An open incident: its decision, and the state it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenIncident {
    /// Decision number.
    pub id: u32,
    /// Class of the decision that opened it.
    pub class: Class,
    /// When it opened.
    pub opened_ms: u64,
    /// Where the recovery stands.
    pub state: IncidentState,
}

/// Where the recovery of an open incident stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentState {
    /// `blade_degraded`: the blade's agent live-migrates its guests
    /// ([`Order::Migrate`]); the blade is never fenced.
    Migrating {
        /// When the migration counts as not reported (alert, no fence).
        deadline: u64,
    },
    /// Extraction: the blade's agent evacuates ([`Order::Evacuate`]).
    Evacuating {
        /// When deactivation proceeds anyway.
        deadline: u64,
    },
    /// `hypervisor`: waiting for the agent's FenceSelf confirmation.
    SelfFencing {
        /// When the IPMB fence joins in.
        deadline: u64,
    },
    /// IPMB fence in progress.
    Fencing {
        /// Current step.
        step: FenceStep,
        /// When the next step starts.
        deadline: u64,
        /// Completed rounds of all steps.
        rounds: u32,
        /// The blade's agent was ordered to destroy its guests too; its
        /// confirmation counts as the fence.
        self_fence: bool,
        /// Extraction: the evacuation was reported before deactivation.
        evacuated: bool,
    },
    /// Fence confirmed; the partner was ordered to restart the guests.
    FailingOver {
        /// How the fence was confirmed.
        proof: Confirmation,
        /// FenceSelf had been ordered.
        self_fence: bool,
        /// Extraction: the evacuation had been reported.
        evacuated: bool,
    },
    /// The partner reported the failover; waiting for the blade to come back.
    Recovered {
        /// How the fence was confirmed.
        proof: Confirmation,
        /// FenceSelf had been ordered.
        self_fence: bool,
        /// Extraction: the evacuation had been reported.
        evacuated: bool,
    },
}

impl IncidentState {
    /// The fence is confirmed (the failover was ordered).
    pub const fn is_confirmed(&self) -> bool {
        matches!(self, Self::FailingOver { .. } | Self::Recovered { .. })
    }

    /// How the fence was confirmed, once it is.
    pub const fn proof(&self) -> Option<Confirmation> {
        match *self {
            Self::FailingOver { proof, .. } | Self::Recovered { proof, .. } => Some(proof),
            _ => None,
        }
    }

    /// FenceSelf was ordered in this incident.
    pub const fn self_fence(&self) -> bool {
        match *self {
            Self::SelfFencing { .. } => true,
            Self::Fencing { self_fence, .. }
            | Self::FailingOver { self_fence, .. }
            | Self::Recovered { self_fence, .. } => self_fence,
            Self::Migrating { .. } | Self::Evacuating { .. } => false,
        }
    }

    /// Extraction: the evacuation was reported.
    pub const fn evacuated(&self) -> bool {
        match *self {
            Self::Fencing { evacuated, .. }
            | Self::FailingOver { evacuated, .. }
            | Self::Recovered { evacuated, .. } => evacuated,
            _ => false,
        }
    }

    /// Waiting for a proof that the blade is fenced: a fresh M1/M0 confirms
    /// the fence in these states.
    pub const fn awaits_proof(&self) -> bool {
        matches!(
            self,
            Self::Migrating { .. }
                | Self::Evacuating { .. }
                | Self::SelfFencing { .. }
                | Self::Fencing { .. }
        )
    }

    /// Waiting for the agent's FenceSelf confirmation.
    pub const fn awaits_self_fence(&self) -> bool {
        matches!(
            self,
            Self::SelfFencing { .. }
                | Self::Fencing {
                    self_fence: true,
                    ..
                }
        )
    }

    /// The state once the fence is confirmed by `proof` (`None` when this
    /// state awaits no proof).
    pub const fn confirmed(&self, proof: Confirmation) -> Option<Self> {
        if !self.awaits_proof() {
            return None;
        }
        Some(Self::FailingOver {
            proof,
            self_fence: self.self_fence(),
            evacuated: self.evacuated(),
        })
    }

    /// The state once the partner reported the failover.
    pub const fn reported(&self) -> Option<Self> {
        match *self {
            Self::FailingOver {
                proof,
                self_fence,
                evacuated,
            } => Some(Self::Recovered {
                proof,
                self_fence,
                evacuated,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_confirmation_carries_the_fence_flags() {
        let fencing = IncidentState::Fencing {
            step: FenceStep::ColdReset,
            deadline: 10,
            rounds: 1,
            self_fence: true,
            evacuated: true,
        };
        let done = fencing.confirmed(Confirmation::HotSwapM1).unwrap();
        assert_eq!(
            done,
            IncidentState::FailingOver {
                proof: Confirmation::HotSwapM1,
                self_fence: true,
                evacuated: true
            }
        );
        assert!(done.is_confirmed() && !done.awaits_proof() && !done.awaits_self_fence());
        assert_eq!(done.confirmed(Confirmation::HotSwapM0), None, "never twice");
        let recovered = done.reported().unwrap();
        assert!(matches!(recovered, IncidentState::Recovered { .. }));
        assert_eq!(recovered.proof(), Some(Confirmation::HotSwapM1));
        assert_eq!(recovered.reported(), None);
    }

    #[test]
    fn test_self_fence_awaited_only_when_ordered() {
        let ipmb_only = IncidentState::Fencing {
            step: FenceStep::Deactivate,
            deadline: 0,
            rounds: 0,
            self_fence: false,
            evacuated: false,
        };
        assert!(!ipmb_only.awaits_self_fence());
        assert!(IncidentState::SelfFencing { deadline: 0 }.awaits_self_fence());
        assert!(!IncidentState::Migrating { deadline: 0 }.awaits_self_fence());
    }
}
