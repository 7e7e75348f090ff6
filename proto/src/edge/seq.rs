//! Send sequence numbers that keep increasing across restarts.
//!
//! Receivers reject a sequence that is not above (or inside the window below) the highest seen
//! from that sender, and they keep that state while the sender restarts. So a restarted sender
//! must start above everything it sent before. Two sources, combined:
//!
//! - the wall clock in microseconds since 1970: needs no storage and also works when the
//!   standby ShMC takes over id 0 (clocks are synchronised on a shelf); it fails if the clock
//!   steps back (an unset RTC at boot);
//! - a reservation file: it always holds a number above every sequence already used. At start
//!   the counter begins at `max(clock, file)` and the file is advanced by [`SeqCounter::RESERVE`];
//!   when the counter reaches the reserved limit, the file is advanced again (one small atomic
//!   write per `RESERVE` frames, so flash is not worn). This survives a clock that steps back.
//!
//! [`SeqSeed::File`] uses both and is the robust choice for daemons; [`SeqSeed::Clock`] suits
//! hosts without writable storage. After seeding, the counter only adds 1 per frame, so it
//! stays below the clock while fewer than a million frames per second are sent. A failed write
//! of the file is logged and does not stop sending (the clock still protects).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the first sequence number comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeqSeed {
    /// Wall clock in microseconds since 1970.
    Clock,
    /// `max(wall clock, reservation file)`; the file is created if missing.
    File(PathBuf),
    /// Exactly this first sequence (tests and tools; not restart-safe).
    Fixed(u64),
}

/// Hands out strictly increasing sequence numbers, persisting reservations if seeded from a file.
#[derive(Debug)]
pub struct SeqCounter {
    next: u64,
    limit: u64,
    path: Option<PathBuf>,
}

impl SeqCounter {
    /// Sequences reserved per write of the reservation file.
    pub const RESERVE: u64 = 1 << 20;

    /// Highest floor [`SeqCounter::advance_past`] jumps over: [`crate::auth::MAX_SEQUENCE`]
    /// less 2^40 sequences, so a counter that jumped keeps room to send for decades.
    pub const MAX_FLOOR: u64 = crate::auth::MAX_FLOOR;

    /// Seeds a counter; `Err` only when the reservation file exists but cannot be read, or
    /// cannot be written at start (then restart safety would silently depend on the clock).
    pub fn new(seed: &SeqSeed) -> io::Result<SeqCounter> {
        Self::new_at(seed, wall_clock_us())
    }

    /// As [`SeqCounter::new`] with the clock reading given (microseconds since 1970).
    pub fn new_at(seed: &SeqSeed, now_us: u64) -> io::Result<SeqCounter> {
        match seed {
            SeqSeed::Clock => Ok(SeqCounter {
                next: now_us.max(1),
                limit: u64::MAX,
                path: None,
            }),
            SeqSeed::Fixed(first) => Ok(SeqCounter {
                next: (*first).max(1),
                limit: u64::MAX,
                path: None,
            }),
            SeqSeed::File(path) => {
                let mut stored = read_reservation(path)?;
                if stored >= Self::MAX_FLOOR.saturating_sub(Self::RESERVE) {
                    log::error!(
                        "sequence reservation {} holds {}, beyond any clock: corrupt, ignored (seeding from the clock)",
                        path.display(),
                        stored
                    );
                    stored = 0;
                }
                let next = now_us.max(stored).max(1);
                if stored > now_us {
                    log::info!(
                        "sequence seeded from {} ({}), ahead of the clock ({})",
                        path.display(),
                        stored,
                        now_us
                    );
                }
                let limit = next.saturating_add(Self::RESERVE);
                write_reservation(path, limit)?;
                Ok(SeqCounter {
                    next,
                    limit,
                    path: Some(path.clone()),
                })
            }
        }
    }

    /// The sequence the next call to [`SeqCounter::next_seq`] returns.
    pub fn peek(&self) -> u64 {
        self.next
    }

    /// Makes every later sequence larger than `floor` (a receiver's [`crate::Message::Challenge`]
    /// says it has seen `floor` from us: our counter went back, e.g. a clock stepped back with
    /// no reservation file). Returns true if the counter moved.
    /// A floor at or above [`SeqCounter::MAX_FLOOR`] is refused (false): no counter seeded
    /// from a microsecond clock gets there for 140,000 years, so such a floor is corrupt or
    /// hostile, and jumping to it would leave too few sequences to ever send again.
    pub fn advance_past(&mut self, floor: u64) -> bool {
        if self.next > floor || floor >= Self::MAX_FLOOR {
            return false;
        }
        self.next = floor.saturating_add(1);
        if self.next >= self.limit {
            self.extend_reservation();
        }
        true
    }

    fn extend_reservation(&mut self) {
        if let Some(path) = &self.path {
            let limit = self.next.max(self.limit).saturating_add(Self::RESERVE);
            match write_reservation(path, limit) {
                Ok(()) => self.limit = limit,
                Err(e) => log::error!(
                    "cannot advance sequence reservation {}: {} (restart safety relies on the clock)",
                    path.display(),
                    e
                ),
            }
        }
    }

    /// The next sequence number; advances the reservation file when needed.
    pub fn next_seq(&mut self) -> u64 {
        let seq = self.next;
        self.next = self.next.saturating_add(1);
        if self.next >= self.limit {
            self.extend_reservation();
        }
        seq
    }
}

fn wall_clock_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Reads the decimal reservation; a missing file is 0, a corrupt one is logged and read as 0.
fn read_reservation(path: &Path) -> io::Result<u64> {
    match fs::read_to_string(path) {
        Ok(s) => match s.trim().parse::<u64>() {
            Ok(v) => Ok(v),
            Err(_) => {
                log::warn!(
                    "sequence reservation {} is corrupt; seeding from the clock only",
                    path.display()
                );
                Ok(0)
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("sequence reservation {}: {}", path.display(), e),
        )),
    }
}

/// Writes the reservation atomically: temporary file, fsync, rename.
fn write_reservation(path: &Path, value: u64) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let res = (|| {
        let mut f = fs::File::create(&tmp)?;
        writeln!(f, "{value}")?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    res.map_err(|e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("sequence reservation {}: {}", path.display(), e),
        )
    })
}

#[cfg(test)]
mod test {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("shelfha-seq-{}-{}", name, std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn test_file_seed_survives_clock_going_back() {
        let d = tmpdir("back");
        let path = d.join("seq");
        let seed = SeqSeed::File(path.clone());
        let mut a = SeqCounter::new_at(&seed, 5_000_000).unwrap();
        let mut last = 0;
        for _ in 0..10 {
            last = a.next_seq();
        }
        assert_eq!(last, 5_000_009);
        drop(a);
        // Restart with the clock reset to near zero: still above everything sent.
        let mut b = SeqCounter::new_at(&seed, 10).unwrap();
        let first = b.next_seq();
        assert!(first > last, "{first} <= {last}");
        assert_eq!(first, 5_000_000 + SeqCounter::RESERVE);
        // Restart with a clock far ahead: the clock wins.
        let mut c = SeqCounter::new_at(&seed, 9_000_000_000).unwrap();
        assert_eq!(c.next_seq(), 9_000_000_000);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn test_reservation_advances_before_exhausted() {
        let d = tmpdir("adv");
        let path = d.join("seq");
        let seed = SeqSeed::File(path.clone());
        let mut a = SeqCounter::new_at(&seed, 100).unwrap();
        let mut last = 0;
        for _ in 0..SeqCounter::RESERVE + 5 {
            let s = a.next_seq();
            assert!(s > last);
            last = s;
        }
        let stored: u64 = fs::read_to_string(&path).unwrap().trim().parse().unwrap();
        assert!(stored > last, "reservation {stored} not above used {last}");
        fs::write(&path, "garbage").unwrap();
        let mut b = SeqCounter::new_at(&seed, 7).unwrap();
        assert_eq!(b.next_seq(), 7, "corrupt file falls back to the clock");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn test_advance_past_a_challenge_floor_is_persisted() {
        let d = tmpdir("advance");
        let path = d.join("seq");
        let seed = SeqSeed::File(path.clone());
        let mut a = SeqCounter::new_at(&seed, 100).unwrap();
        assert!(!a.advance_past(50), "already above");
        assert!(
            !a.advance_past(u64::MAX - 1),
            "a floor no clock reaches is refused"
        );
        assert_eq!(a.peek(), 100);
        let far = 100 + 3 * SeqCounter::RESERVE;
        assert!(a.advance_past(far));
        assert_eq!(a.next_seq(), far + 1);
        let stored: u64 = fs::read_to_string(&path).unwrap().trim().parse().unwrap();
        assert!(
            stored > far + 1,
            "reservation {stored} not above the new counter"
        );
        // A restart with the clock back starts above what was sent after the jump.
        let mut b = SeqCounter::new_at(&seed, 1).unwrap();
        assert!(b.next_seq() > far + 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn test_reservation_beyond_any_clock_is_ignored() {
        let d = tmpdir("huge");
        let path = d.join("seq");
        fs::write(&path, "18446744073709551000\n").unwrap();
        let mut a = SeqCounter::new_at(&SeqSeed::File(path.clone()), 5_000).unwrap();
        assert_eq!(a.next_seq(), 5_000, "a corrupt reservation is not followed");
        let stored: u64 = fs::read_to_string(&path).unwrap().trim().parse().unwrap();
        assert_eq!(stored, 5_000 + SeqCounter::RESERVE);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn test_unwritable_reservation_is_an_error() {
        let seed = SeqSeed::File(PathBuf::from("/nonexistent-dir/seq"));
        let e = SeqCounter::new_at(&seed, 1).unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir/seq"), "{e}");
    }
}
