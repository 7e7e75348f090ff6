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
//! | `agent_heartbeat_ms` | 200 | the blade agents' heartbeat interval (blade-agent `heartbeat_ms`, whose default is 200); only checked against `heartbeat_timeout_ms` at start |
//!
//! # Timing that cannot work
//!
//! [`ShelfConfig::check_workable`] refuses, before anything runs, a shelf
//! whose timers contradict each other ([`Unworkable`]); the file loader names
//! the file and the line of the key. The rules, exactly:
//!
//! | rule | why |
//! |---|---|
//! | at least one `[[blade]]` | a shelf with no blade watches nothing |
//! | `probe_timeout_ms >= 2 * probe_interval_ms` | otherwise one unanswered probe declares a blade lost |
//! | `probe_timeout_ms >= 2 * request_timeout_ms` | otherwise an IPMC gets less than two answer times before it is lost |
//! | `heartbeat_timeout_ms >= 3 * agent_heartbeat_ms` (only with `listen`) | otherwise two late heartbeats make a live host `host_os` |
//! | `10 <= agent_heartbeat_ms <= 10000` | the range blade-agent accepts for `heartbeat_ms` |
//! | `confirm_poll_ms + request_timeout_ms <= fence_step_deadline_ms` | otherwise a fence step escalates before its first hot-swap reading can be answered |
//! | `request_timeout_ms * (request_retries + 1) <= fence_step_deadline_ms` | otherwise a step's request is still retried after the next, stronger step was sent (a cold reset retried after the power-off) |
//!
//! The defaults satisfy every rule. The agents' real heartbeat interval is
//! known only when they register; at start the plugin checks against
//! `agent_heartbeat_ms`, the interval the shelf's agents are configured with
//! (the agent's own default when the key is absent). Without `listen` no
//! heartbeat is heard and the heartbeat rule is not applied.
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
    /// The blade agents' heartbeat interval as configured on the blades
    /// (blade-agent `heartbeat_ms`); only checked against
    /// `heartbeat_timeout_ms` at start ([`ShelfConfig::check_workable`]).
    pub agent_heartbeat_ms: u64,
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
        agent_heartbeat_ms: AGENT_HEARTBEAT_MS,
    };
}

/// blade-agent's default heartbeat interval (`heartbeat_ms`), milliseconds.
pub const AGENT_HEARTBEAT_MS: u64 = 200;
/// Range of heartbeat intervals blade-agent accepts, milliseconds.
pub const AGENT_HEARTBEAT_RANGE: core::ops::RangeInclusive<u64> = 10..=10_000;
/// Heartbeats an agent may miss in a row without being declared silent, plus one.
pub const HEARTBEATS_PER_TIMEOUT: u64 = 3;
/// Probe intervals an IPMC may stay silent without being declared lost.
pub const PROBES_PER_TIMEOUT: u64 = 2;
/// Request timeouts an IPMC gets to answer before it may be declared lost.
pub const REQUESTS_PER_PROBE_TIMEOUT: u64 = 2;

/// A configuration whose timers cannot work ([`ShelfConfig::check_workable`]).
///
/// Each variant carries the values it compared; [`Unworkable::keys`] names
/// the `[timing]` keys involved, the one to change first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unworkable {
    /// No blade is configured.
    NoBlades,
    /// `probe_timeout_ms < 2 * probe_interval_ms`.
    ProbeTimeoutBelowTwoIntervals {
        /// `probe_timeout_ms`.
        timeout: u64,
        /// `probe_interval_ms`.
        interval: u64,
    },
    /// `probe_timeout_ms < 2 * request_timeout_ms`.
    ProbeTimeoutBelowTwoRequests {
        /// `probe_timeout_ms`.
        timeout: u64,
        /// `request_timeout_ms`.
        request: u64,
    },
    /// `heartbeat_timeout_ms < 3 * agent_heartbeat_ms`.
    HeartbeatTimeoutBelowThreeHeartbeats {
        /// `heartbeat_timeout_ms`.
        timeout: u64,
        /// `agent_heartbeat_ms`.
        heartbeat: u64,
    },
    /// `agent_heartbeat_ms` outside what blade-agent accepts.
    AgentHeartbeatOutOfRange(u64),
    /// `confirm_poll_ms + request_timeout_ms > fence_step_deadline_ms`.
    ConfirmPollBeyondStep {
        /// `confirm_poll_ms`.
        poll: u64,
        /// `request_timeout_ms`.
        request: u64,
        /// `fence_step_deadline_ms`.
        step: u64,
    },
    /// `request_timeout_ms * (request_retries + 1) > fence_step_deadline_ms`.
    FenceRetriesBeyondStep {
        /// `request_timeout_ms`.
        request: u64,
        /// `request_retries`.
        retries: u8,
        /// `fence_step_deadline_ms`.
        step: u64,
    },
}

impl Unworkable {
    /// The `[timing]` keys the rule compares, the one to change first
    /// (empty for [`Unworkable::NoBlades`]).
    pub fn keys(&self) -> &'static [&'static str] {
        match self {
            Self::NoBlades => &[],
            Self::ProbeTimeoutBelowTwoIntervals { .. } => {
                &["probe_timeout_ms", "probe_interval_ms"]
            }
            Self::ProbeTimeoutBelowTwoRequests { .. } => {
                &["probe_timeout_ms", "request_timeout_ms"]
            }
            Self::HeartbeatTimeoutBelowThreeHeartbeats { .. } => {
                &["heartbeat_timeout_ms", "agent_heartbeat_ms"]
            }
            Self::AgentHeartbeatOutOfRange(_) => &["agent_heartbeat_ms"],
            Self::ConfirmPollBeyondStep { .. } => &[
                "confirm_poll_ms",
                "fence_step_deadline_ms",
                "request_timeout_ms",
            ],
            Self::FenceRetriesBeyondStep { .. } => &[
                "request_timeout_ms",
                "request_retries",
                "fence_step_deadline_ms",
            ],
        }
    }
}

impl core::fmt::Display for Unworkable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::NoBlades => f.write_str(
                "no [[blade]] configured: a shelf with no blade watches nothing",
            ),
            Self::ProbeTimeoutBelowTwoIntervals { timeout, interval } => write!(
                f,
                "probe_timeout_ms ({timeout}) must be at least {PROBES_PER_TIMEOUT} x probe_interval_ms \
                 ({PROBES_PER_TIMEOUT} x {interval} = {}): otherwise one unanswered probe declares a \
                 live blade lost",
                interval.saturating_mul(PROBES_PER_TIMEOUT)
            ),
            Self::ProbeTimeoutBelowTwoRequests { timeout, request } => write!(
                f,
                "probe_timeout_ms ({timeout}) must be at least {REQUESTS_PER_PROBE_TIMEOUT} x \
                 request_timeout_ms ({REQUESTS_PER_PROBE_TIMEOUT} x {request} = {}): otherwise an \
                 IPMC is declared lost before it had two answer times",
                request.saturating_mul(REQUESTS_PER_PROBE_TIMEOUT)
            ),
            Self::HeartbeatTimeoutBelowThreeHeartbeats { timeout, heartbeat } => write!(
                f,
                "heartbeat_timeout_ms ({timeout}) must be at least {HEARTBEATS_PER_TIMEOUT} x the \
                 agents' heartbeat interval ({HEARTBEATS_PER_TIMEOUT} x agent_heartbeat_ms {heartbeat} \
                 = {}): otherwise two late heartbeats make a live host `host_os` (set \
                 agent_heartbeat_ms to the blades' `heartbeat_ms` if they are configured faster \
                 than blade-agent's default {AGENT_HEARTBEAT_MS})",
                heartbeat.saturating_mul(HEARTBEATS_PER_TIMEOUT)
            ),
            Self::AgentHeartbeatOutOfRange(v) => write!(
                f,
                "agent_heartbeat_ms ({v}) must be between {} and {} (the range blade-agent accepts \
                 for heartbeat_ms)",
                AGENT_HEARTBEAT_RANGE.start(),
                AGENT_HEARTBEAT_RANGE.end()
            ),
            Self::ConfirmPollBeyondStep {
                poll,
                request,
                step,
            } => write!(
                f,
                "confirm_poll_ms ({poll}) plus request_timeout_ms ({request}) = {} must not exceed \
                 fence_step_deadline_ms ({step}): otherwise a fence step escalates before its first \
                 hot-swap reading can be answered",
                poll.saturating_add(request)
            ),
            Self::FenceRetriesBeyondStep {
                request,
                retries,
                step,
            } => write!(
                f,
                "request_timeout_ms ({request}) x (request_retries ({retries}) + 1) = {} must not \
                 exceed fence_step_deadline_ms ({step}): otherwise a fence step's request is still \
                 retried after the next, stronger step was sent",
                request.saturating_mul(u64::from(retries) + 1)
            ),
        }
    }
}

impl core::error::Error for Unworkable {}

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

    /// Checks that the timers can work together and that there is a blade
    /// to watch (the rules of the module table); the first violation found
    /// is returned. `agent_link`: agents are heard (`listen` is set), so the
    /// heartbeat timeout is checked against `agent_heartbeat_ms`.
    ///
    /// Separate from [`ShelfConfig::validate`]: the core runs any shelf that
    /// validates (tests build odd ones); a shelf that is started for real
    /// (`run`, `check-config`, `replay`) must pass both.
    pub fn check_workable(&self, agent_link: bool) -> Result<(), Unworkable> {
        let t = &self.timing;
        if self.blades.is_empty() {
            return Err(Unworkable::NoBlades);
        }
        if t.probe_timeout_ms < t.probe_interval_ms.saturating_mul(PROBES_PER_TIMEOUT) {
            return Err(Unworkable::ProbeTimeoutBelowTwoIntervals {
                timeout: t.probe_timeout_ms,
                interval: t.probe_interval_ms,
            });
        }
        if t.probe_timeout_ms
            < t.request_timeout_ms
                .saturating_mul(REQUESTS_PER_PROBE_TIMEOUT)
        {
            return Err(Unworkable::ProbeTimeoutBelowTwoRequests {
                timeout: t.probe_timeout_ms,
                request: t.request_timeout_ms,
            });
        }
        if !AGENT_HEARTBEAT_RANGE.contains(&t.agent_heartbeat_ms) {
            return Err(Unworkable::AgentHeartbeatOutOfRange(t.agent_heartbeat_ms));
        }
        if agent_link
            && t.heartbeat_timeout_ms < t.agent_heartbeat_ms.saturating_mul(HEARTBEATS_PER_TIMEOUT)
        {
            return Err(Unworkable::HeartbeatTimeoutBelowThreeHeartbeats {
                timeout: t.heartbeat_timeout_ms,
                heartbeat: t.agent_heartbeat_ms,
            });
        }
        if t.confirm_poll_ms.saturating_add(t.request_timeout_ms) > t.fence_step_deadline_ms {
            return Err(Unworkable::ConfirmPollBeyondStep {
                poll: t.confirm_poll_ms,
                request: t.request_timeout_ms,
                step: t.fence_step_deadline_ms,
            });
        }
        if t.request_timeout_ms
            .saturating_mul(u64::from(t.request_retries) + 1)
            > t.fence_step_deadline_ms
        {
            return Err(Unworkable::FenceRetriesBeyondStep {
                request: t.request_timeout_ms,
                retries: t.request_retries,
                step: t.fence_step_deadline_ms,
            });
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
    fn test_defaults_are_workable_and_each_rule_bites() {
        let pair = [blade(1, 0x82, 2), blade(2, 0x84, 1)];
        assert_eq!(shelf(&pair).check_workable(true), Ok(()));
        assert_eq!(shelf(&[]).check_workable(false), Err(Unworkable::NoBlades));
        let with = |f: fn(&mut Timing)| {
            let mut c = shelf(&pair);
            f(&mut c.timing);
            c.check_workable(true)
        };
        assert_eq!(
            with(|t| t.probe_interval_ms = 5000),
            Err(Unworkable::ProbeTimeoutBelowTwoIntervals {
                timeout: 1500,
                interval: 5000
            })
        );
        // Exactly two intervals is enough.
        assert_eq!(with(|t| t.probe_interval_ms = 750), Ok(()));
        assert_eq!(
            with(|t| {
                t.probe_timeout_ms = 400;
                t.probe_interval_ms = 100;
            }),
            Err(Unworkable::ProbeTimeoutBelowTwoRequests {
                timeout: 400,
                request: 250
            })
        );
        assert_eq!(
            with(|t| t.heartbeat_timeout_ms = 599),
            Err(Unworkable::HeartbeatTimeoutBelowThreeHeartbeats {
                timeout: 599,
                heartbeat: 200
            })
        );
        assert_eq!(with(|t| t.heartbeat_timeout_ms = 600), Ok(()));
        assert_eq!(
            with(|t| {
                t.heartbeat_timeout_ms = 300;
                t.agent_heartbeat_ms = 100;
            }),
            Ok(())
        );
        assert_eq!(
            with(|t| t.agent_heartbeat_ms = 5),
            Err(Unworkable::AgentHeartbeatOutOfRange(5))
        );
        assert_eq!(
            with(|t| t.confirm_poll_ms = 1751),
            Err(Unworkable::ConfirmPollBeyondStep {
                poll: 1751,
                request: 250,
                step: 2000
            })
        );
        assert_eq!(with(|t| t.confirm_poll_ms = 1750), Ok(()));
        assert_eq!(
            with(|t| t.request_retries = 8),
            Err(Unworkable::FenceRetriesBeyondStep {
                request: 250,
                retries: 8,
                step: 2000
            })
        );
        assert_eq!(with(|t| t.request_retries = 7), Ok(()));
        // Without an agent link the heartbeat timeout is not checked.
        let mut c = shelf(&pair);
        c.timing.heartbeat_timeout_ms = 1;
        assert_eq!(c.check_workable(false), Ok(()));
        // Saturating arithmetic: huge values are refused, never wrap.
        assert!(with(|t| t.probe_interval_ms = u64::MAX).is_err());
    }

    #[test]
    fn test_bad_timing() {
        let mut c = shelf(&[blade(1, 0x82, 2), blade(2, 0x84, 1)]);
        c.timing.confirm_poll_ms = 0;
        assert_eq!(c.validate(), Err(ConfigError::BadTiming("confirm_poll_ms")));
    }
}
