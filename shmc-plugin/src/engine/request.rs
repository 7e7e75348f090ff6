//! IPMB requests of ours awaiting a response (IPMI v2.0 §7.2: rqSeq, retries).
//!
//! Sequence numbers (6 bits) are kept per destination; a number still
//! outstanding to the same destination is never reused. A response matches a
//! request when its source is the request's destination, its netFn is the
//! request's netFn + 1, and cmd and rqSeq are equal; anything else is counted
//! and dropped. A retry resends the same bytes with the same rqSeq (the IPMC
//! may answer either copy). Policy when the table is full: a new request that
//! is not a probe evicts the oldest outstanding probe; otherwise the new
//! request is not sent and is counted (probes and confirmation polls repeat
//! on their own interval, fence steps on their deadline).

use heapless::Vec;

use super::output::{Outbox, Output};
use super::BladeIdx;
use crate::capacity::{MAX_BLADES, MAX_OUTSTANDING_REQUESTS};
use crate::wire::addr::IpmbAddr;
use crate::wire::command::Request;

/// Why we sent a request (what to do with its answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Periodic Get Device ID.
    Probe,
    /// Get Sensor Reading of the hot-swap sensor while fencing.
    ConfirmPoll,
    /// One fence step (Set FRU Activation, FRU Control, Set Power Level).
    Fence,
}

/// One outstanding request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Index of the destination blade in the configuration.
    pub blade: BladeIdx,
    /// Destination address.
    pub dest: IpmbAddr,
    /// Sequence number.
    pub rq_seq: u8,
    /// The request (kept for retries).
    pub request: Request,
    /// Why it was sent.
    pub purpose: Purpose,
    /// When it was first sent (a response is a reading taken after this).
    pub sent_ms: u64,
    /// When the current try times out.
    pub deadline: u64,
    /// Retries still allowed.
    pub retries_left: u8,
}

/// Counters of the tracker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// Requests sent (first tries).
    pub sent: u64,
    /// Retries sent.
    pub retries: u64,
    /// Requests that got no response after every retry.
    pub timeouts: u64,
    /// Responses that matched a request.
    pub matched: u64,
    /// Responses that matched nothing (late, duplicate, foreign).
    pub unmatched: u64,
    /// Probes evicted to make room for a more important request.
    pub evicted: u64,
    /// Requests not sent because the table was full.
    pub dropped: u64,
}

/// The outstanding-request table.
#[derive(Debug)]
pub struct RequestTracker {
    pending: Vec<Pending, MAX_OUTSTANDING_REQUESTS>,
    next_seq: [u8; MAX_BLADES],
    stats: RequestStats,
}

/// Result of [`RequestTracker::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Queued with this rqSeq.
    Seq(u8),
    /// Not sent: the table is full (counted).
    TableFull,
}

impl RequestTracker {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            pending: Vec::new(),
            next_seq: [0; MAX_BLADES],
            stats: RequestStats {
                sent: 0,
                retries: 0,
                timeouts: 0,
                matched: 0,
                unmatched: 0,
                evicted: 0,
                dropped: 0,
            },
        }
    }

    /// Counters.
    pub fn stats(&self) -> &RequestStats {
        &self.stats
    }

    /// Outstanding requests.
    pub fn iter(&self) -> impl Iterator<Item = &Pending> {
        self.pending.iter()
    }

    /// True when a request of `purpose` to blade `blade` is outstanding.
    pub fn has(&self, blade: BladeIdx, purpose: Purpose) -> bool {
        self.pending
            .iter()
            .any(|p| p.blade == blade && p.purpose == purpose)
    }

    fn allocate_seq(&mut self, blade: BladeIdx, dest: IpmbAddr) -> u8 {
        let slot = blade.get() % MAX_BLADES;
        // At most MAX_OUTSTANDING_REQUESTS (< 64) numbers can be in use, so
        // one of the next 64 is free.
        for _ in 0..64 {
            let seq = self.next_seq[slot] & 0x3F;
            self.next_seq[slot] = (seq + 1) & 0x3F;
            if !self
                .pending
                .iter()
                .any(|p| p.dest == dest && p.rq_seq == seq)
            {
                return seq;
            }
        }
        self.next_seq[slot]
    }

    /// Sends a request (queues an [`Output::Ipmb`]) and tracks it.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        now: u64,
        out: &mut Outbox,
        blade: BladeIdx,
        dest: IpmbAddr,
        request: Request,
        purpose: Purpose,
        timeout_ms: u64,
        retries: u8,
    ) -> Sent {
        if self.pending.is_full() {
            let oldest_probe = (purpose != Purpose::Probe)
                .then(|| {
                    self.pending
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| p.purpose == Purpose::Probe)
                        .min_by_key(|(_, p)| p.deadline)
                        .map(|(i, _)| i)
                })
                .flatten();
            match oldest_probe {
                Some(i) => {
                    self.pending.swap_remove(i);
                    self.stats.evicted += 1;
                }
                None => {
                    self.stats.dropped += 1;
                    return Sent::TableFull;
                }
            }
        }
        let rq_seq = self.allocate_seq(blade, dest);
        out.push(Output::Ipmb {
            dest,
            rq_seq,
            request,
        });
        self.stats.sent += 1;
        // Not full: checked above.
        let _ = self.pending.push(Pending {
            blade,
            dest,
            rq_seq,
            request,
            purpose,
            sent_ms: now,
            deadline: now.saturating_add(timeout_ms),
            retries_left: retries,
        });
        Sent::Seq(rq_seq)
    }

    /// Matches a response from `from`; returns the request it answers.
    pub fn on_response(
        &mut self,
        from: IpmbAddr,
        rq_seq: u8,
        net_fn: u8,
        cmd: u8,
    ) -> Option<Pending> {
        let found = self.pending.iter().position(|p| {
            p.dest == from
                && p.rq_seq == rq_seq
                && p.request.net_fn() | 1 == net_fn
                && p.request.cmd() == cmd
        });
        match found {
            Some(i) => {
                self.stats.matched += 1;
                Some(self.pending.swap_remove(i))
            }
            None => {
                self.stats.unmatched += 1;
                None
            }
        }
    }

    /// Forgets every outstanding request of `purpose` to `blade` (a late
    /// response to one of them then counts as unmatched).
    pub fn cancel(&mut self, blade: BladeIdx, purpose: Purpose) {
        self.pending
            .retain(|p| !(p.blade == blade && p.purpose == purpose));
    }

    /// Retries what timed out; returns the requests that got no response
    /// after their last retry (at most `N` per call; the rest on the next).
    pub fn poll<const N: usize>(
        &mut self,
        now: u64,
        out: &mut Outbox,
        timeout_ms: u64,
    ) -> Vec<Pending, N> {
        let mut expired = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            if now < p.deadline {
                i += 1;
                continue;
            }
            if p.retries_left > 0 {
                p.retries_left -= 1;
                p.deadline = now.saturating_add(timeout_ms);
                self.stats.retries += 1;
                out.push(Output::Ipmb {
                    dest: p.dest,
                    rq_seq: p.rq_seq,
                    request: p.request,
                });
                i += 1;
            } else if expired.is_full() {
                break;
            } else {
                let p = self.pending.swap_remove(i);
                self.stats.timeouts += 1;
                let _ = expired.push(p);
            }
        }
        expired
    }
}

impl Default for RequestTracker {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const B0: BladeIdx = BladeIdx(0);
    const A: IpmbAddr = IpmbAddr(0x82);

    fn seq_of(out: &mut Outbox) -> u8 {
        match out.pop() {
            Some(Output::Ipmb { rq_seq, .. }) => rq_seq,
            other => panic!("expected an IPMB request, got {other:?}"),
        }
    }

    #[test]
    fn test_seq_match_and_retry() {
        let mut t = RequestTracker::new();
        let mut out = Outbox::new();
        assert_eq!(
            t.send(
                0,
                &mut out,
                B0,
                A,
                Request::SetFruActivation {
                    fru_id: 0,
                    activate: false
                },
                Purpose::Fence,
                100,
                1
            ),
            Sent::Seq(0)
        );
        assert_eq!(
            t.send(
                0,
                &mut out,
                B0,
                A,
                Request::GetDeviceId,
                Purpose::Probe,
                100,
                0
            ),
            Sent::Seq(1)
        );
        assert_eq!(seq_of(&mut out), 0);
        assert_eq!(seq_of(&mut out), 1);
        // Wrong netFn, wrong source, wrong seq: unmatched.
        assert!(t.on_response(A, 0, 0x2C, 0x0C).is_none());
        assert!(t.on_response(IpmbAddr(0x84), 0, 0x2D, 0x0C).is_none());
        assert!(t.on_response(A, 5, 0x2D, 0x0C).is_none());
        assert_eq!(t.stats().unmatched, 3);
        // Timeout: the fence request is retried with the same seq, the probe expires.
        let expired = t.poll::<4>(100, &mut out, 100);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].purpose, Purpose::Probe);
        assert_eq!(seq_of(&mut out), 0);
        let p = t.on_response(A, 0, 0x2D, 0x0C).unwrap();
        assert_eq!(p.purpose, Purpose::Fence);
        assert_eq!(t.stats().matched, 1);
        assert_eq!(t.stats().retries, 1);
        // A late duplicate response matches nothing.
        assert!(t.on_response(A, 0, 0x2D, 0x0C).is_none());
    }

    #[test]
    fn test_seq_not_reused_while_outstanding() {
        let mut t = RequestTracker::new();
        let mut out = Outbox::new();
        t.send(
            0,
            &mut out,
            B0,
            A,
            Request::SetFruActivation {
                fru_id: 0,
                activate: false,
            },
            Purpose::Fence,
            1_000_000,
            0,
        );
        let mut seen = [false; 64];
        for i in 0..70u64 {
            let _ = t.send(
                i,
                &mut out,
                B0,
                A,
                Request::GetDeviceId,
                Purpose::Probe,
                1,
                0,
            );
            let _ = t.poll::<32>(i + 2, &mut out, 1);
            while let Some(o) = out.pop() {
                if let Output::Ipmb {
                    rq_seq,
                    request: Request::GetDeviceId,
                    ..
                } = o
                {
                    assert_ne!(rq_seq, 0, "seq 0 is still outstanding");
                    seen[usize::from(rq_seq)] = true;
                }
            }
        }
        assert!(
            seen[63] && seen[1],
            "sequence wraps through all 6-bit values"
        );
    }

    #[test]
    fn test_full_table_policy() {
        let mut t = RequestTracker::new();
        let mut out = Outbox::new();
        for i in 0..MAX_OUTSTANDING_REQUESTS {
            let s = t.send(
                0,
                &mut out,
                BladeIdx((i % 4) as u8),
                IpmbAddr(0x82 + 2 * (i % 4) as u8),
                Request::GetDeviceId,
                Purpose::Probe,
                10,
                0,
            );
            assert!(matches!(s, Sent::Seq(_)));
            while out.pop().is_some() {}
        }
        assert_eq!(
            t.send(
                0,
                &mut out,
                B0,
                A,
                Request::GetDeviceId,
                Purpose::Probe,
                10,
                0
            ),
            Sent::TableFull
        );
        assert_eq!(t.stats().dropped, 1);
        assert!(matches!(
            t.send(
                0,
                &mut out,
                B0,
                A,
                Request::SetFruActivation {
                    fru_id: 0,
                    activate: false
                },
                Purpose::Fence,
                10,
                0
            ),
            Sent::Seq(_)
        ));
        assert_eq!(t.stats().evicted, 1);
        assert!(t.has(B0, Purpose::Fence));
    }
}
