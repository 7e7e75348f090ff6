//! Shelf configuration: the core's view ([`ShelfConfig`], `no_std`) and, with
//! the `std` feature, loading it from a TOML file ([`mod@file`]).
//!
//! # Timing defaults
//!
//! Every key below is optional in the `[timing]` table of the configuration
//! file; the value in the middle column applies when it is omitted.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `heartbeat_timeout_ms` | 1000 | a registered agent silent this long while its IPMC answers and reports M4 -> `host_os` |
//! | `probe_interval_ms` | 500 | Get Device ID sent to every IPMC this often (`run` only) |
//! | `probe_timeout_ms` | 1500 | nothing heard from an IPMC this long (3 probes) -> `blade_lost` |
//! | `fence_step_deadline_ms` | 2000 | time one fence step gets to reach M1/M0 before the next step |
//! | `confirm_poll_ms` | 50 | hot-swap sensor polled (Get Sensor Reading) this often while fencing |
//! | `hypervisor_grace_ms` | 500 | hypervisor reported down this long without recovering -> `hypervisor` |
//! | `duplicate_window_ms` | 5000 | identical Platform Event (generator, rqSeq, data) within this counts once |
//! | `guest_restart_limit` | 3 | local restarts of one guest allowed within the window; one more crash fails it over |
//! | `guest_restart_window_ms` | 600000 | the window of the guest restart limit (10 min) |
//! | `request_timeout_ms` | 250 | an IPMB request of ours unanswered this long is retried |
//! | `request_retries` | 2 | retries of a fence request before it counts as unanswered |
//! | `self_fence_deadline_ms` | 2000 | agent's FenceSelf confirmation awaited this long before the IPMB fence joins in |
//! | `evacuation_timeout_ms` | 120000 | extraction: partner's report awaited this long before deactivation proceeds anyway |
//! | `guest_fence_timeout_ms` | 10000 | guest failover: local destroy confirmation awaited this long (then alert, no failover) |
//! | `failover_report_timeout_ms` | 120000 | failover: the partner's final report awaited this long, then an alert names the guests not reported started |
//!
//! # Predictive migration (`[predictive]`, default off)
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `enabled` | false | class `blade_degraded` is decided (off: those events are recorded only, as in the core table) |
//! | `degraded_hold_ms` | 30000 | a non-critical threshold assertion still asserted after this long -> `blade_degraded` |
//!
//! The core checks the shelf-level rules in [`ShelfConfig::validate`]; the file
//! loader maps each violation to the line that caused it.

use heapless::Vec;

use crate::capacity::{CRASHES_PER_GUEST, MAX_BLADES};
use crate::wire::addr::{IpmbAddr, Slot};

/// Timers of the core, all in milliseconds (see the module table for defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Agent heartbeat silence that means `host_os`.
    pub heartbeat_timeout_ms: u64,
    /// Interval between two Get Device ID probes of one IPMC.
    pub probe_interval_ms: u64,
    /// Silence of an IPMC that means `blade_lost`.
    pub probe_timeout_ms: u64,
    /// Deadline of one fence step.
    pub fence_step_deadline_ms: u64,
    /// Interval of hot-swap sensor polls while a fence is unconfirmed.
    pub confirm_poll_ms: u64,
    /// How long a reported hypervisor outage may last before it is a failure.
    pub hypervisor_grace_ms: u64,
    /// Duplicate Platform Event window.
    pub duplicate_window_ms: u64,
    /// Local restarts of one guest allowed within `guest_restart_window_ms`.
    pub guest_restart_limit: u8,
    /// Window of the guest restart limit.
    pub guest_restart_window_ms: u64,
    /// Response timeout of one IPMB request of ours.
    pub request_timeout_ms: u64,
    /// Retries of a fence request.
    pub request_retries: u8,
    /// How long the agent's FenceSelf confirmation is awaited alone.
    pub self_fence_deadline_ms: u64,
    /// How long the partner's evacuation report is awaited.
    pub evacuation_timeout_ms: u64,
    /// How long a guest's local destroy confirmation is awaited.
    pub guest_fence_timeout_ms: u64,
    /// How long the partner's final report of a failover order is awaited.
    pub failover_report_timeout_ms: u64,
}

impl Timing {
    /// The documented defaults.
    pub const DEFAULT: Self = Self {
        heartbeat_timeout_ms: 1000,
        probe_interval_ms: 500,
        probe_timeout_ms: 1500,
        fence_step_deadline_ms: 2000,
        confirm_poll_ms: 50,
        hypervisor_grace_ms: 500,
        duplicate_window_ms: 5000,
        guest_restart_limit: 3,
        guest_restart_window_ms: 600_000,
        request_timeout_ms: 250,
        request_retries: 2,
        self_fence_deadline_ms: 2000,
        evacuation_timeout_ms: 120_000,
        guest_fence_timeout_ms: 10_000,
        failover_report_timeout_ms: 120_000,
    };
}

impl Default for Timing {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Predictive migration (class `blade_degraded`), opt-in per shelf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Predictive {
    /// Whether `blade_degraded` is decided at all.
    pub enabled: bool,
    /// How long a non-critical threshold assertion must stay asserted.
    pub degraded_hold_ms: u64,
}

impl Predictive {
    /// The documented defaults (off, 30 s hold).
    pub const DEFAULT: Self = Self {
        enabled: false,
        degraded_hold_ms: 30_000,
    };
}

impl Default for Predictive {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One configured blade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BladeConfig {
    /// Slot number (the operator's name for the blade).
    pub slot: Slot,
    /// 8-bit IPMB address of the blade's IPMC.
    pub ipmb_address: IpmbAddr,
    /// Slot of the partner blade that takes over this blade's guests.
    pub partner: Slot,
    /// Sensor number of the IPMC's FRU 0 hot-swap sensor, when configured;
    /// otherwise the core learns it from the first hot-swap event (default 0).
    pub hot_swap_sensor: Option<u8>,
}

/// The core's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShelfConfig {
    /// 8-bit IPMB address of the shelf manager (usually 0x20).
    pub own_address: IpmbAddr,
    /// Configured blades, at most [`MAX_BLADES`].
    pub blades: Vec<BladeConfig, MAX_BLADES>,
    /// Timers.
    pub timing: Timing,
    /// Whether the core probes IPMCs (Get Device ID) and declares silent ones
    /// lost. On in `run`, off in `replay` (only the capture's events count).
    pub probing: bool,
    /// Predictive migration (`[predictive]`).
    pub predictive: Predictive,
}

/// A violation of the shelf-level rules (the file loader adds the line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// More blades than [`MAX_BLADES`]; carries the index of the first extra blade.
    TooManyBlades(usize),
    /// Two blades with one slot; carries the index of the second.
    DuplicateSlot(usize),
    /// Two blades with one IPMB address (or a blade at the shelf's own address).
    DuplicateAddress(usize),
    /// The partner slot is not a configured blade.
    PartnerNotConfigured(usize),
    /// The partner's partner is not this blade.
    PartnerNotMutual(usize),
    /// A blade names itself as partner.
    PartnerIsSelf(usize),
    /// An IPMB address that is odd (not an 8-bit slave address) or zero.
    BadAddress(usize),
    /// A slot number outside 1..=16 (the agent protocol names blades by slot).
    BadSlot(usize),
    /// A timing value that is zero where zero makes no sense.
    BadTiming(&'static str),
    /// `guest_restart_limit` not below [`CRASHES_PER_GUEST`].
    GuestLimitTooHigh,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooManyBlades(_) => write!(f, "more than {MAX_BLADES} blades"),
            Self::DuplicateSlot(_) => f.write_str("duplicate slot"),
            Self::DuplicateAddress(_) => f.write_str("duplicate IPMB address"),
            Self::PartnerNotConfigured(_) => f.write_str("partner is not a configured blade"),
            Self::PartnerNotMutual(_) => {
                f.write_str("partner does not name this blade as its partner")
            }
            Self::PartnerIsSelf(_) => f.write_str("a blade cannot be its own partner"),
            Self::BadAddress(_) => {
                f.write_str("IPMB address must be an even, non-zero 8-bit address")
            }
            Self::BadSlot(_) => write!(f, "slot must be between 1 and {MAX_BLADES}"),
            Self::BadTiming(key) => write!(f, "timing key `{key}` must be greater than zero"),
            Self::GuestLimitTooHigh => write!(
                f,
                "guest_restart_limit must be at most {}",
                CRASHES_PER_GUEST - 1
            ),
        }
    }
}

impl core::error::Error for ConfigError {}

impl ShelfConfig {
    /// An empty shelf with default timing and probing on.
    pub const fn new(own_address: IpmbAddr) -> Self {
        Self {
            own_address,
            blades: Vec::new(),
            timing: Timing::DEFAULT,
            probing: true,
            predictive: Predictive::DEFAULT,
        }
    }

    /// Index of the blade in `slot`.
    pub fn index_of_slot(&self, slot: Slot) -> Option<usize> {
        self.blades.iter().position(|b| b.slot == slot)
    }

    /// Index of the blade whose IPMC has 8-bit address `address`.
    pub fn index_of_address(&self, address: IpmbAddr) -> Option<usize> {
        self.blades.iter().position(|b| b.ipmb_address == address)
    }

    /// Checks the shelf-level rules; the first violation found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let t = &self.timing;
        for (key, v) in [
            ("heartbeat_timeout_ms", t.heartbeat_timeout_ms),
            ("probe_interval_ms", t.probe_interval_ms),
            ("probe_timeout_ms", t.probe_timeout_ms),
            ("fence_step_deadline_ms", t.fence_step_deadline_ms),
            ("confirm_poll_ms", t.confirm_poll_ms),
            ("duplicate_window_ms", t.duplicate_window_ms),
            ("guest_restart_window_ms", t.guest_restart_window_ms),
            ("request_timeout_ms", t.request_timeout_ms),
            ("self_fence_deadline_ms", t.self_fence_deadline_ms),
            ("evacuation_timeout_ms", t.evacuation_timeout_ms),
            ("guest_fence_timeout_ms", t.guest_fence_timeout_ms),
            ("failover_report_timeout_ms", t.failover_report_timeout_ms),
        ] {
            if v == 0 {
                return Err(ConfigError::BadTiming(key));
            }
        }
        if self.predictive.degraded_hold_ms == 0 {
            return Err(ConfigError::BadTiming("degraded_hold_ms"));
        }
        if usize::from(t.guest_restart_limit) >= CRASHES_PER_GUEST {
            return Err(ConfigError::GuestLimitTooHigh);
        }
        for (i, b) in self.blades.iter().enumerate() {
            if b.slot.get() == 0 || usize::from(b.slot.get()) > MAX_BLADES {
                return Err(ConfigError::BadSlot(i));
            }
            if b.ipmb_address.get() == 0 || b.ipmb_address.get() & 1 != 0 {
                return Err(ConfigError::BadAddress(i));
            }
            let earlier = &self.blades[..i];
            if earlier.iter().any(|o| o.slot == b.slot) {
                return Err(ConfigError::DuplicateSlot(i));
            }
            if b.ipmb_address == self.own_address
                || earlier.iter().any(|o| o.ipmb_address == b.ipmb_address)
            {
                return Err(ConfigError::DuplicateAddress(i));
            }
        }
        for (i, b) in self.blades.iter().enumerate() {
            if b.partner == b.slot {
                return Err(ConfigError::PartnerIsSelf(i));
            }
            if self.index_of_slot(b.partner).is_none() {
                return Err(ConfigError::PartnerNotConfigured(i));
            }
        }
        for (i, b) in self.blades.iter().enumerate() {
            if let Some(p) = self.index_of_slot(b.partner) {
                if self.blades[p].partner != b.slot {
                    return Err(ConfigError::PartnerNotMutual(i));
                }
            }
        }
        Ok(())
    }
}

#[cfg(feature = "std")]
pub mod file;
#[cfg(feature = "std")]
pub mod source;
#[cfg(feature = "std")]
mod toml_subset;

#[cfg(test)]
mod test {
    use super::*;

    fn blade(slot: u8, addr: u8, partner: u8) -> BladeConfig {
        BladeConfig {
            slot: Slot(slot),
            ipmb_address: IpmbAddr(addr),
            partner: Slot(partner),
            hot_swap_sensor: None,
        }
    }

    fn shelf(blades: &[BladeConfig]) -> ShelfConfig {
        let mut c = ShelfConfig::new(IpmbAddr(0x20));
        for b in blades {
            c.blades.push(*b).unwrap();
        }
        c
    }

    #[test]
    fn test_validate_pairs() {
        assert_eq!(
            shelf(&[blade(1, 0x82, 2), blade(2, 0x84, 1)]).validate(),
            Ok(())
        );
        assert_eq!(
            shelf(&[blade(1, 0x82, 2), blade(2, 0x82, 1)]).validate(),
            Err(ConfigError::DuplicateAddress(1))
        );
        assert_eq!(
            shelf(&[blade(1, 0x82, 2), blade(1, 0x84, 1)]).validate(),
            Err(ConfigError::DuplicateSlot(1))
        );
        assert_eq!(
            shelf(&[blade(1, 0x82, 3), blade(2, 0x84, 1)]).validate(),
            Err(ConfigError::PartnerNotConfigured(0))
        );
        assert_eq!(
            shelf(&[blade(1, 0x82, 2), blade(2, 0x84, 3), blade(3, 0x86, 2)]).validate(),
            Err(ConfigError::PartnerNotMutual(0))
        );
        assert_eq!(
            shelf(&[blade(1, 0x82, 1)]).validate(),
            Err(ConfigError::PartnerIsSelf(0))
        );
        assert_eq!(
            shelf(&[blade(1, 0x20, 2), blade(2, 0x84, 1)]).validate(),
            Err(ConfigError::DuplicateAddress(0))
        );
        assert_eq!(
            shelf(&[blade(1, 0x83, 2), blade(2, 0x84, 1)]).validate(),
            Err(ConfigError::BadAddress(0))
        );
    }

    #[test]
    fn test_bad_timing() {
        let mut c = shelf(&[blade(1, 0x82, 2), blade(2, 0x84, 1)]);
        c.timing.confirm_poll_ms = 0;
        assert_eq!(c.validate(), Err(ConfigError::BadTiming("confirm_poll_ms")));
    }
}
