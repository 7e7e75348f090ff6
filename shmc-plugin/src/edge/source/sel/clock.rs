//! The pausable clock of a SEL source: the core's time is milliseconds
//! since start, not counting session outages, so that no timer of the core
//! (probe loss included) runs on answers our own link lost.

use std::time::Instant;

/// The core's clock: milliseconds since start, not counting session outages.
#[derive(Debug, Clone, Copy)]
pub struct PausableClock {
    start: Instant,
    paused_ms: u64,
    down_since: Option<u64>,
}

impl PausableClock {
    /// A clock started now and paused (no session yet).
    pub fn paused() -> Self {
        Self {
            start: Instant::now(),
            paused_ms: 0,
            down_since: Some(0),
        }
    }

    /// Real milliseconds since start.
    pub fn real(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The core's time at real time `real`.
    pub fn core(&self, real: u64) -> u64 {
        let upto = self.down_since.unwrap_or(real);
        upto.saturating_sub(self.paused_ms)
    }

    /// Stops the core's time at real time `real` (no effect when stopped).
    pub fn pause(&mut self, real: u64) {
        self.down_since.get_or_insert(real);
    }

    /// Resumes; returns how long the pause lasted.
    pub fn resume(&mut self, real: u64) -> u64 {
        let d = self
            .down_since
            .take()
            .map_or(0, |since| real.saturating_sub(since));
        self.paused_ms += d;
        d
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_clock_stops_during_outage() {
        let mut c = PausableClock::paused();
        assert_eq!(c.core(500), 0);
        assert_eq!(c.resume(500), 500);
        assert_eq!(c.core(700), 200);
        c.pause(700);
        assert_eq!(c.core(5000), 200);
        assert_eq!(c.resume(5000), 4300);
        assert_eq!(c.core(5100), 300);
    }
}
