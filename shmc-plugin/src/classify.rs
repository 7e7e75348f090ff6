//! The failure classifier: one Platform Event plus what the shelf knows about
//! its blade -> a failure class or "record only". Pure and clock-free.
//!
//! This is the table of the ShMC core issue, row by row (assertions only
//! unless said):
//!
//! | input | class |
//! |---|---|
//! | hot-swap (0xF0) to M7, or M4 -> M6/M1/M0 not commanded by us, FRU 0 | `blade_lost` |
//! | hot-swap M5/M6 -> M1/M0 not commanded by us (a deactivation we did not see begin), FRU 0 | `blade_lost` |
//! | hot-swap M4 -> M5, FRU 0 | `blade_extraction` |
//! | threshold (reading type 0x01) offsets 0x2, 0x4, 0x9, 0xB | `blade_hardware` |
//! | processor (0x07) offsets 0, 1; memory (0x0C) offset 1; power unit (0x09) offsets 4, 6 | `blade_hardware` |
//! | watchdog 2 (0x23) offsets 0..=3; OS critical stop (0x20) offsets 0, 1 | `host_os` |
//! | IPMB link (0xF1) offsets 1, 2 / offset 0 | `ipmb_link_degraded` / `ipmb_link_lost` |
//! | non-critical thresholds, deassertions, other offsets, other FRU ids | record only |
//!
//! Predictive mode (`[predictive] enabled`, default off) adds one class,
//! decided by [`predictive`] and the engine's hold table; with the option off
//! the table above is unchanged:
//!
//! | input | class |
//! |---|---|
//! | threshold offsets 0, 1, 6, 7 (non-critical) asserted and not deasserted for `degraded_hold_ms` | `blade_degraded` |
//! | memory (0x0C, reading type 0x6F) offset 5, correctable-ECC logging limit reached | `blade_degraded` (at once) |
//!
//! Rows for probe loss (`blade_lost`), agent heartbeat loss (`host_os`),
//! hypervisor loss (`hypervisor`) and guest crashes (`guest`) are timer or
//! agent driven and live in [`crate::engine`].
//!
//! Choices where the table is silent:
//! - IPMI sensor-specific rows (processor, memory, power unit, watchdog 2, OS
//!   critical stop, IPMB link) require reading type 0x6F; the PICMG hot-swap
//!   sensor is accepted with any reading type (OpenIPMI's simulator form).
//! - A hot-swap event without a previous state (ED2 = 0xFF) uses the state
//!   the shelf last saw for the blade; if the shelf never saw one, the blade
//!   is presumed active (M4): a configured blade is presumed in service, and
//!   fencing a blade that is already off confirms at once.
//! - M7 is `blade_lost` whatever the previous state and whoever caused it.

use crate::wire::event::{
    MState, PlatformEvent, SensorType, READING_TYPE_SENSOR_SPECIFIC, READING_TYPE_THRESHOLD,
};

/// Failure classes (the `class` of a decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// The blade is gone (M7, uncommanded deactivation, IPMC silent).
    BladeLost,
    /// Planned extraction: the handle was opened (M4 -> M5).
    BladeExtraction,
    /// A critical hardware sensor event.
    BladeHardware,
    /// The blade's operating system failed (watchdog, critical stop, agent silent).
    HostOs,
    /// The blade's hypervisor is down past its grace period.
    Hypervisor,
    /// One guest crashed.
    Guest,
    /// One of the two IPMB buses to the blade is lost (alert only).
    IpmbLinkDegraded,
    /// Both IPMB buses to the blade are lost (alert only).
    IpmbLinkLost,
    /// Predictive mode: the blade warns (non-critical threshold held, or
    /// correctable-ECC logging limit); its guests live-migrate, it is not fenced.
    BladeDegraded,
    /// The IPMC is silent while the blade's agent is heard (at the shelf
    /// manager or by its partner): the blade is in service but cannot be
    /// managed over IPMB (alert only; its guests may live-migrate away).
    IpmcLost,
    /// The agent is not heard at the shelf manager while its IPMC answers
    /// in M4 and its partner still hears it: a network fault (alert only).
    AgentLinkLost,
}

impl Class {
    /// The class name used in logs and JSON output.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BladeLost => "blade_lost",
            Self::BladeExtraction => "blade_extraction",
            Self::BladeHardware => "blade_hardware",
            Self::HostOs => "host_os",
            Self::Hypervisor => "hypervisor",
            Self::Guest => "guest",
            Self::IpmbLinkDegraded => "ipmb_link_degraded",
            Self::IpmbLinkLost => "ipmb_link_lost",
            Self::BladeDegraded => "blade_degraded",
            Self::IpmcLost => "ipmc_lost",
            Self::AgentLinkLost => "agent_link_lost",
        }
    }

    /// Whether this class opens a recovery incident for the blade (alert-only
    /// and per-guest classes do not).
    pub const fn opens_incident(self) -> bool {
        !matches!(
            self,
            Self::Guest
                | Self::IpmbLinkDegraded
                | Self::IpmbLinkLost
                | Self::IpmcLost
                | Self::AgentLinkLost
        )
    }

    /// Whether recovery starts with a hardware fence over IPMB.
    pub const fn fences_hardware(self) -> bool {
        matches!(self, Self::BladeLost | Self::BladeHardware | Self::HostOs)
    }
}

impl core::fmt::Display for Class {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an event leads to no decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// A deassertion.
    Deassertion,
    /// A non-critical threshold offset (0, 1, 6, 7).
    NonCritical,
    /// An offset of a known sensor that is not in the table.
    OtherOffset,
    /// A sensor type (or reading type) the table does not cover.
    OtherSensor,
    /// A hot-swap event of a FRU other than 0.
    OtherFru,
    /// A hot-swap transition that is not a failure (activation, our own fence, ...).
    Transition,
    /// A deactivation we commanded.
    Commanded,
    /// IPMB link sensor says both buses are enabled again.
    LinkRestored,
}

impl Record {
    /// Short reason for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Deassertion => "deassertion",
            Self::NonCritical => "non-critical threshold",
            Self::OtherOffset => "offset not in the table",
            Self::OtherSensor => "sensor or reading type not in the table",
            Self::OtherFru => "hot-swap of a FRU other than 0",
            Self::Transition => "hot-swap transition that is not a failure",
            Self::Commanded => "deactivation commanded by the shelf manager",
            Self::LinkRestored => "IPMB link restored",
        }
    }
}

/// The classifier's answer for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The event is a failure of this class.
    Decide(Class),
    /// The event is recorded only.
    Record(Record),
}

/// What the shelf knows about the generator's blade when an event arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BladeView {
    /// Last M-state of FRU 0 the shelf saw, if any.
    pub m_state: Option<MState>,
    /// We sent a deactivation or fence request to this blade in its open incident.
    pub commanded: bool,
}

/// What predictive mode makes of an event the core table records only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning {
    /// A non-critical threshold assertion: `blade_degraded` once it has
    /// stayed asserted for `degraded_hold_ms`.
    Hold,
    /// The deassertion of a non-critical threshold: cancels its hold.
    Cancel,
    /// Correctable-ECC logging limit reached: `blade_degraded` at once.
    Now,
}

/// Memory (0x0C) sensor-specific offset 5: correctable-ECC logging limit reached.
pub const MEMORY_ECC_LOGGING_LIMIT: u8 = 5;

/// The predictive meaning of `ev`, if any (pure; the engine calls it only
/// when predictive mode is on). A hold or cancel is keyed by generator,
/// sensor type, sensor number and offset.
pub fn predictive(ev: &PlatformEvent) -> Option<Warning> {
    let offset = ev.offset();
    if ev.event_type == READING_TYPE_THRESHOLD
        && ev.sensor_type != SensorType::FruHotSwap
        && matches!(offset, 0x0 | 0x1 | 0x6 | 0x7)
    {
        return Some(if ev.assertion {
            Warning::Hold
        } else {
            Warning::Cancel
        });
    }
    if ev.assertion
        && ev.sensor_type == SensorType::Memory
        && ev.event_type == READING_TYPE_SENSOR_SPECIFIC
        && offset == MEMORY_ECC_LOGGING_LIMIT
    {
        return Some(Warning::Now);
    }
    None
}

/// Classifies one Platform Event from a configured blade.
pub fn classify(ev: &PlatformEvent, blade: &BladeView) -> Verdict {
    use Verdict::{Decide, Record as R};
    if !ev.assertion {
        return R(Record::Deassertion);
    }
    let offset = ev.offset();
    let specific = ev.event_type == READING_TYPE_SENSOR_SPECIFIC;
    match ev.sensor_type {
        SensorType::FruHotSwap => classify_hot_swap(ev, blade),
        SensorType::IpmbLink if specific => match offset {
            0 => Decide(Class::IpmbLinkLost),
            1 | 2 => Decide(Class::IpmbLinkDegraded),
            3 => R(Record::LinkRestored),
            _ => R(Record::OtherOffset),
        },
        SensorType::Processor if specific => match offset {
            0 | 1 => Decide(Class::BladeHardware),
            _ => R(Record::OtherOffset),
        },
        SensorType::Memory if specific => match offset {
            1 => Decide(Class::BladeHardware),
            _ => R(Record::OtherOffset),
        },
        SensorType::PowerUnit if specific => match offset {
            4 | 6 => Decide(Class::BladeHardware),
            _ => R(Record::OtherOffset),
        },
        SensorType::Watchdog2 if specific => match offset {
            0..=3 => Decide(Class::HostOs),
            _ => R(Record::OtherOffset),
        },
        SensorType::OsCriticalStop if specific => match offset {
            0 | 1 => Decide(Class::HostOs),
            _ => R(Record::OtherOffset),
        },
        _ if ev.event_type == READING_TYPE_THRESHOLD => match offset {
            0x2 | 0x4 | 0x9 | 0xB => Decide(Class::BladeHardware),
            0x0 | 0x1 | 0x6 | 0x7 => R(Record::NonCritical),
            _ => R(Record::OtherOffset),
        },
        _ => R(Record::OtherSensor),
    }
}

fn classify_hot_swap(ev: &PlatformEvent, blade: &BladeView) -> Verdict {
    let Some(hs) = ev.hot_swap() else {
        // ED1 low nibble 8..15: not an M-state.
        return Verdict::Record(Record::OtherOffset);
    };
    if hs.fru_id != 0 {
        return Verdict::Record(Record::OtherFru);
    }
    let previous = hs.previous.or(blade.m_state).unwrap_or(MState::M4);
    match (previous, hs.current) {
        (_, MState::M7) => Verdict::Decide(Class::BladeLost),
        (MState::M4, MState::M5) => Verdict::Decide(Class::BladeExtraction),
        (MState::M4, MState::M6 | MState::M1 | MState::M0) => {
            if blade.commanded {
                Verdict::Record(Record::Commanded)
            } else {
                Verdict::Decide(Class::BladeLost)
            }
        }
        // The end of a deactivation whose start we did not see (we were not
        // running, e.g. restarted in the middle of a fence): the payload is off
        // and nobody we know of asked for it. With an open incident (we did see
        // the start) the engine adds no decision.
        (MState::M5 | MState::M6, MState::M1 | MState::M0) if !blade.commanded => {
            Verdict::Decide(Class::BladeLost)
        }
        _ => Verdict::Record(Record::Transition),
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::addr::IpmbAddr;

    fn ev(sensor_type: u8, dir_type: u8, ed: [u8; 3]) -> PlatformEvent {
        PlatformEvent::parse(
            IpmbAddr(0x82),
            0,
            &[0x04, sensor_type, 0x01, dir_type, ed[0], ed[1], ed[2]],
        )
        .unwrap()
    }

    fn c(e: &PlatformEvent) -> Verdict {
        classify(e, &BladeView::default())
    }

    fn hot_swap(cur: u8, prev: u8, fru: u8) -> PlatformEvent {
        ev(0xF0, 0x6F, [0xA0 | cur, prev, fru])
    }

    const LOST: Verdict = Verdict::Decide(Class::BladeLost);

    #[test]
    fn test_hot_swap_rows() {
        for prev in 0..=6u8 {
            assert_eq!(c(&hot_swap(7, prev, 0)), LOST, "M{prev} -> M7");
        }
        assert_eq!(c(&hot_swap(7, 0xFF, 0xFF)), LOST, "OpenIPMI form");
        for cur in [6u8, 1, 0] {
            assert_eq!(c(&hot_swap(cur, 0x04, 0)), LOST, "M4 -> M{cur}");
            assert_eq!(c(&hot_swap(cur, 0x94, 0)), LOST, "cause 9");
            let commanded = BladeView {
                m_state: Some(MState::M4),
                commanded: true,
            };
            assert_eq!(
                classify(&hot_swap(cur, 0x14, 0), &commanded),
                Verdict::Record(Record::Commanded)
            );
        }
        assert_eq!(
            c(&hot_swap(5, 0x24, 0)),
            Verdict::Decide(Class::BladeExtraction)
        );
        assert_eq!(
            c(&hot_swap(6, 0x05, 0)),
            Verdict::Record(Record::Transition)
        );
        for (cur, prev) in [(1u8, 0x06u8), (0, 0x06), (1, 0x05), (1, 0x16)] {
            assert_eq!(
                c(&hot_swap(cur, prev, 0)),
                LOST,
                "M{} -> M{cur}",
                prev & 0xF
            );
            let commanded = BladeView {
                m_state: Some(MState::M6),
                commanded: true,
            };
            assert_eq!(
                classify(&hot_swap(cur, prev, 0), &commanded),
                Verdict::Record(Record::Transition),
                "commanded M{} -> M{cur}",
                prev & 0xF
            );
        }
        assert_eq!(
            c(&hot_swap(2, 0x01, 0)),
            Verdict::Record(Record::Transition)
        );
        assert_eq!(
            c(&hot_swap(4, 0x03, 0)),
            Verdict::Record(Record::Transition)
        );
        assert_eq!(c(&hot_swap(7, 0x04, 1)), Verdict::Record(Record::OtherFru));
        assert_eq!(c(&hot_swap(1, 0x04, 2)), Verdict::Record(Record::OtherFru));
        assert_eq!(
            c(&ev(0xF0, 0xEF, [0xA7, 0x04, 0])),
            Verdict::Record(Record::Deassertion)
        );
    }

    #[test]
    fn test_hot_swap_unknown_previous_uses_known_state() {
        let m1 = hot_swap(1, 0xFF, 0xFF);
        assert_eq!(c(&m1), LOST, "never seen: presumed M4");
        let seen_m3 = BladeView {
            m_state: Some(MState::M3),
            commanded: false,
        };
        assert_eq!(classify(&m1, &seen_m3), Verdict::Record(Record::Transition));
        let seen_m6 = BladeView {
            m_state: Some(MState::M6),
            commanded: false,
        };
        assert_eq!(classify(&m1, &seen_m6), LOST, "deactivation not seen begin");
        let seen_m4 = BladeView {
            m_state: Some(MState::M4),
            commanded: false,
        };
        assert_eq!(classify(&m1, &seen_m4), LOST);
        assert_eq!(
            classify(&hot_swap(5, 0xFF, 0xFF), &seen_m4),
            Verdict::Decide(Class::BladeExtraction)
        );
    }

    #[test]
    fn test_threshold_rows() {
        for (offset, want) in [
            (0x0, Verdict::Record(Record::NonCritical)),
            (0x1, Verdict::Record(Record::NonCritical)),
            (0x2, Verdict::Decide(Class::BladeHardware)),
            (0x3, Verdict::Record(Record::OtherOffset)),
            (0x4, Verdict::Decide(Class::BladeHardware)),
            (0x5, Verdict::Record(Record::OtherOffset)),
            (0x6, Verdict::Record(Record::NonCritical)),
            (0x7, Verdict::Record(Record::NonCritical)),
            (0x8, Verdict::Record(Record::OtherOffset)),
            (0x9, Verdict::Decide(Class::BladeHardware)),
            (0xA, Verdict::Record(Record::OtherOffset)),
            (0xB, Verdict::Decide(Class::BladeHardware)),
            (0xC, Verdict::Record(Record::OtherOffset)),
        ] {
            // ED1 bits 7:4 say what ED2/ED3 hold; they must not matter.
            assert_eq!(
                c(&ev(0x01, 0x01, [0x50 | offset, 90, 85])),
                want,
                "offset {offset}"
            );
            assert_eq!(
                c(&ev(0x77, 0x01, [offset, 0xFF, 0xFF])),
                want,
                "unknown type, offset {offset}"
            );
        }
        assert_eq!(
            c(&ev(0x01, 0x81, [0x59, 90, 85])),
            Verdict::Record(Record::Deassertion)
        );
    }

    #[test]
    fn test_predictive_rows() {
        for offset in [0u8, 1, 6, 7] {
            let a = ev(0x01, 0x01, [0x50 | offset, 70, 65]);
            assert_eq!(predictive(&a), Some(Warning::Hold), "offset {offset}");
            // The core table is unchanged: still recorded only.
            assert_eq!(c(&a), Verdict::Record(Record::NonCritical));
            let d = ev(0x01, 0x81, [0x50 | offset, 60, 65]);
            assert_eq!(predictive(&d), Some(Warning::Cancel), "offset {offset}");
        }
        for offset in [2u8, 3, 4, 5, 8, 9, 0xA, 0xB] {
            assert_eq!(predictive(&ev(0x01, 0x01, [offset, 0, 0])), None);
        }
        let ecc = ev(0x0C, 0x6F, [5, 0xFF, 0xFF]);
        assert_eq!(predictive(&ecc), Some(Warning::Now));
        assert_eq!(c(&ecc), Verdict::Record(Record::OtherOffset));
        assert_eq!(predictive(&ev(0x0C, 0xEF, [5, 0xFF, 0xFF])), None);
        assert_eq!(predictive(&ev(0x0C, 0x6F, [1, 0xFF, 0xFF])), None);
        assert_eq!(predictive(&ev(0x0C, 0x03, [5, 0xFF, 0xFF])), None);
        assert_eq!(predictive(&ev(0x07, 0x6F, [5, 0xFF, 0xFF])), None);
        assert_eq!(predictive(&ev(0xF0, 0x01, [0xA1, 0x04, 0])), None);
    }

    #[test]
    fn test_sensor_specific_rows() {
        let hw = Verdict::Decide(Class::BladeHardware);
        let os = Verdict::Decide(Class::HostOs);
        let other = Verdict::Record(Record::OtherOffset);
        let cases: [(u8, u8, Verdict); 22] = [
            (0x07, 0, hw),
            (0x07, 1, hw),
            (0x07, 2, other),
            (0x0C, 0, other),
            (0x0C, 1, hw),
            (0x0C, 2, other),
            (0x09, 0, other),
            (0x09, 4, hw),
            (0x09, 5, other),
            (0x09, 6, hw),
            (0x23, 0, os),
            (0x23, 1, os),
            (0x23, 2, os),
            (0x23, 3, os),
            (0x23, 8, other),
            (0x20, 0, os),
            (0x20, 1, os),
            (0x20, 2, other),
            (0xF1, 0, Verdict::Decide(Class::IpmbLinkLost)),
            (0xF1, 1, Verdict::Decide(Class::IpmbLinkDegraded)),
            (0xF1, 2, Verdict::Decide(Class::IpmbLinkDegraded)),
            (0xF1, 3, Verdict::Record(Record::LinkRestored)),
        ];
        for (st, offset, want) in cases {
            assert_eq!(
                c(&ev(st, 0x6F, [offset, 0xFF, 0xFF])),
                want,
                "type {st:#x} offset {offset}"
            );
            assert_eq!(
                c(&ev(st, 0xEF, [offset, 0xFF, 0xFF])),
                Verdict::Record(Record::Deassertion)
            );
            // Generic reading types do not carry the sensor-specific meaning.
            assert_eq!(
                c(&ev(st, 0x03, [offset, 0xFF, 0xFF])),
                Verdict::Record(Record::OtherSensor)
            );
        }
        assert_eq!(
            c(&ev(0x42, 0x6F, [0, 0xFF, 0xFF])),
            Verdict::Record(Record::OtherSensor)
        );
    }
}
