//! The `running` count of this agent's heartbeats: the protected guests it cannot account for
//! as stopped. The partner refuses to start this blade's guests while it hears a count above
//! zero ([`super::partner`]), so the count errs towards "running": a reading proves a guest
//! gone, an absence of readings never does.
//!
//! Also when an extra heartbeat goes out: at once when the count changes (the partner and the
//! ShMC learn quickly that the guests are gone), at most one per quarter heartbeat interval.
//! Pure: readings and durations in, numbers out.

use std::time::Duration;

/// The latest reading of this blade's protected guests (the newest one wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Nothing read yet in this run.
    Nothing,
    /// A libvirt listing: its protected guests with a QEMU (running, paused, shutting down).
    Listed {
        /// How many.
        active: u16,
    },
    /// A FenceSelf accounted for every protected guest with its own readings: `remaining` are
    /// those it could not prove gone (0: complete).
    Fenced {
        /// Guests not proven gone.
        remaining: u16,
    },
}

/// The heartbeat's `running` count. `libvirt_answers`: the hypervisor answers its pings now
/// (otherwise a listing may be stale); `stored`: the size of the stored protected set (`None`:
/// not known); `protected`: the protected guests of the last listing (the heartbeat's
/// `protected`).
///
/// A fence's accounting stands until a newer listing; a listing counts while libvirt answers.
/// Otherwise every protected guest not proven gone counts: the stored set, which holds the
/// defined guests too (libvirt saying "shut off" is not the agent's proof). With no stored set
/// the guests cannot be known: at least 1.
pub fn running_count(
    latest: Reading,
    libvirt_answers: bool,
    stored: Option<usize>,
    protected: u16,
) -> u16 {
    match latest {
        Reading::Fenced { remaining } => remaining,
        Reading::Listed { active } if libvirt_answers => active,
        Reading::Listed { .. } | Reading::Nothing => match stored {
            Some(n) => u16::try_from(n).unwrap_or(u16::MAX),
            None => protected.max(1),
        },
    }
}

/// When the next heartbeat is due, given the regular schedule `scheduled` (from now), the time
/// `since_last` the last heartbeat went out and the count it carried (`sent`; `None`: none
/// sent yet), and the count now: with a changed count, at once but no sooner than a quarter
/// `interval` after the last one.
pub fn next_beat_in(
    scheduled: Duration,
    since_last: Duration,
    sent: Option<u16>,
    now: u16,
    interval: Duration,
) -> Duration {
    if sent.is_none_or(|s| s == now) {
        return scheduled;
    }
    let spacing = (interval / 4).saturating_sub(since_last);
    scheduled.min(spacing)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_listing_counts_while_libvirt_answers() {
        assert_eq!(
            running_count(Reading::Listed { active: 2 }, true, Some(5), 5),
            2
        );
        assert_eq!(
            running_count(Reading::Listed { active: 0 }, true, Some(5), 5),
            0
        );
    }

    #[test]
    fn test_without_libvirt_every_stored_guest_counts() {
        assert_eq!(
            running_count(Reading::Listed { active: 0 }, false, Some(3), 3),
            3,
            "a listing is no proof once libvirt stopped answering"
        );
        assert_eq!(running_count(Reading::Nothing, true, Some(2), 0), 2);
        assert_eq!(running_count(Reading::Nothing, false, Some(0), 0), 0);
        assert_eq!(
            running_count(Reading::Nothing, false, None, 0),
            1,
            "guests that cannot be known"
        );
        assert_eq!(running_count(Reading::Nothing, false, None, 4), 4);
    }

    #[test]
    fn test_fence_accounting_stands_until_a_newer_listing() {
        assert_eq!(
            running_count(Reading::Fenced { remaining: 0 }, false, Some(3), 3),
            0
        );
        assert_eq!(
            running_count(Reading::Fenced { remaining: 1 }, true, Some(3), 3),
            1
        );
    }

    #[test]
    fn test_extra_beat_when_the_count_changes_rate_limited() {
        let ms = Duration::from_millis;
        let interval = ms(100);
        // Unchanged (or never sent): the regular schedule.
        assert_eq!(next_beat_in(ms(70), ms(30), Some(1), 1, interval), ms(70));
        assert_eq!(next_beat_in(ms(70), ms(30), None, 1, interval), ms(70));
        // Changed: at once, 25 ms after the last one at the earliest.
        assert_eq!(next_beat_in(ms(70), ms(30), Some(1), 0, interval), ms(0));
        assert_eq!(next_beat_in(ms(90), ms(10), Some(1), 0, interval), ms(15));
        assert_eq!(next_beat_in(ms(5), ms(10), Some(1), 0, interval), ms(5));
    }
}
