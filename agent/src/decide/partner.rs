//! The second line against a double start: whether this agent may start its partner's guests
//! while it still hears the partner's heartbeats.
//!
//! The ShMC orders a whole-blade takeover only once it has confirmed the failed blade's fence
//! by a fresh reading: that is the proof. This line only adds refusals. Every heartbeat of the
//! partner carries `running`, the protected guests it cannot account for as stopped; a partner
//! heard recently that still says `running > 0` may be a blade whose fence reading was wrong,
//! and starting its guests here would run them twice. So, for an order that starts the
//! partner's guests (with `W` = [`window`], 1.5 own heartbeat intervals):
//!
//! - partner not heard within `W`, or its latest heartbeat says 0: go on;
//! - else wait, until its latest heartbeat is older than `W`, for a heartbeat received after
//!   the order: it says 0, go on; it says more, refuse; none came, go on (a partner whose agent
//!   died with its blade stops speaking: the wait costs at most `W` after its last heartbeat);
//! - during the starts, a heartbeat received after the order saying `running > 0` refuses the
//!   starts still to come ([`refuses_start`]).
//!
//! Pure: the readings (ages, counts) are passed in; `execute::partner` keeps them and waits.

use std::time::Duration;

/// The partner's latest heartbeat, as this agent heard it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartnerBeat {
    /// How long ago it was received.
    pub age: Duration,
    /// Its `running` count: protected guests the partner cannot account for as stopped.
    pub running: u16,
    /// Its number among the partner heartbeats received by this agent run (1 for the first):
    /// it tells whether the heartbeat came after an order.
    pub count: u64,
}

/// Why the starts may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Go {
    /// No heartbeat of the partner heard in this run.
    NeverHeard,
    /// The partner's latest heartbeat is older than the window: it is silent.
    Silent {
        /// Age of its latest heartbeat.
        age: Duration,
    },
    /// The partner's latest heartbeat says no protected guest runs there.
    ReportsNone {
        /// That heartbeat was received after the order.
        after_order: bool,
    },
}

/// The verdict on the partner's heartbeats for an order that starts its guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Start the guests.
    Go(Go),
    /// Heard recently with guests running: wait at most this long for a newer heartbeat, then
    /// ask again.
    Wait(Duration),
    /// A heartbeat received after the order says guests still run there: start none.
    Refuse {
        /// Its `running` count.
        running: u16,
    },
}

/// The window `W`: 1.5 times this agent's heartbeat interval (the partner is configured alike).
/// A partner whose latest heartbeat is older than this is taken as silent.
pub fn window(heartbeat: Duration) -> Duration {
    heartbeat.saturating_mul(3) / 2
}

/// The verdict for an order accepted when `order_count` partner heartbeats had been received,
/// given the partner's `latest` heartbeat now (`None`: none received in this run).
pub fn gate(latest: Option<PartnerBeat>, order_count: u64, window: Duration) -> Verdict {
    let Some(b) = latest else {
        return Verdict::Go(Go::NeverHeard);
    };
    let after_order = b.count > order_count;
    if after_order {
        return match b.running {
            0 => Verdict::Go(Go::ReportsNone { after_order }),
            running => Verdict::Refuse { running },
        };
    }
    if b.age >= window {
        return Verdict::Go(Go::Silent { age: b.age });
    }
    if b.running == 0 {
        return Verdict::Go(Go::ReportsNone { after_order });
    }
    Verdict::Wait(window - b.age)
}

/// At the start gate of one partner guest, after [`gate`] let the order go on: the partner's
/// `running` count when a heartbeat received after the order reports guests running there
/// (the starts still to come are refused), `None` otherwise.
pub fn refuses_start(latest: Option<PartnerBeat>, order_count: u64) -> Option<u16> {
    latest
        .filter(|b| b.count > order_count && b.running > 0)
        .map(|b| b.running)
}

#[cfg(test)]
mod test {
    use super::*;

    const W: Duration = Duration::from_millis(150);

    fn beat(age_ms: u64, running: u16, count: u64) -> Option<PartnerBeat> {
        Some(PartnerBeat {
            age: Duration::from_millis(age_ms),
            running,
            count,
        })
    }

    #[test]
    fn test_window_is_one_and_a_half_heartbeats() {
        assert_eq!(window(Duration::from_millis(100)), W);
        assert_eq!(window(Duration::from_secs(1)), Duration::from_millis(1500));
    }

    #[test]
    fn test_never_heard_or_silent_partner_goes_on() {
        assert_eq!(gate(None, 0, W), Verdict::Go(Go::NeverHeard));
        assert_eq!(
            gate(beat(150, 3, 7), 7, W),
            Verdict::Go(Go::Silent {
                age: Duration::from_millis(150)
            })
        );
        assert_eq!(
            gate(beat(4000, 1, 7), 7, W),
            Verdict::Go(Go::Silent {
                age: Duration::from_secs(4)
            })
        );
    }

    #[test]
    fn test_partner_reporting_none_goes_on() {
        assert_eq!(
            gate(beat(10, 0, 7), 7, W),
            Verdict::Go(Go::ReportsNone { after_order: false })
        );
        assert_eq!(
            gate(beat(0, 0, 8), 7, W),
            Verdict::Go(Go::ReportsNone { after_order: true })
        );
    }

    #[test]
    fn test_recent_running_partner_waits_until_its_heartbeat_is_older_than_the_window() {
        assert_eq!(
            gate(beat(40, 2, 7), 7, W),
            Verdict::Wait(Duration::from_millis(110))
        );
        assert_eq!(
            gate(beat(149, 1, 7), 7, W),
            Verdict::Wait(Duration::from_millis(1))
        );
        // The same heartbeat, aged past the window, no newer one: go on.
        assert_eq!(
            gate(beat(151, 1, 7), 7, W),
            Verdict::Go(Go::Silent {
                age: Duration::from_millis(151)
            })
        );
    }

    #[test]
    fn test_newer_heartbeat_decides() {
        assert_eq!(
            gate(beat(5, 2, 8), 7, W),
            Verdict::Refuse { running: 2 },
            "a heartbeat after the order still reports guests"
        );
        // Even an old one, as long as it came after the order (the order waited that long).
        assert_eq!(gate(beat(500, 1, 9), 7, W), Verdict::Refuse { running: 1 });
        assert_eq!(
            gate(beat(5, 0, 8), 7, W),
            Verdict::Go(Go::ReportsNone { after_order: true })
        );
    }

    #[test]
    fn test_start_gate_refuses_only_on_a_heartbeat_after_the_order() {
        assert_eq!(refuses_start(None, 0), None);
        assert_eq!(
            refuses_start(beat(5, 3, 7), 7),
            None,
            "judged by the gate already"
        );
        assert_eq!(refuses_start(beat(5, 0, 8), 7), None);
        assert_eq!(refuses_start(beat(5, 3, 8), 7), Some(3));
    }
}
