//! The journal: every accepted order (with its per-guest outcomes and final result) and every
//! guest taken over from the partner, in `<state>/journal.json`, rewritten atomically after
//! each change. It is what lets a restarted agent neither forget nor repeat:
//! - a duplicate of a finished order is answered with the recorded result, nothing is redone;
//! - an order interrupted by an agent restart is resumed, skipping guests with a recorded outcome
//!   (an order that starts guests only within the boot and the bound it was accepted in: each
//!   record carries the boot id and the boot time of its acceptance, see `crate::execute`);
//! - guests taken over are remembered (and reported) across restarts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::write_atomic;
use crate::order::{GuestOutcome, Order, OrderResult};

/// Most order records kept; the oldest finished ones are pruned beyond this.
pub const MAX_ORDERS: usize = 512;
/// Journal format version.
const VERSION: u32 = 1;

/// A journal read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Disk I/O failed.
    #[error("journal {path}: {source}")]
    Io {
        /// Journal file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// One accepted order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// Acceptance sequence number (for pruning, oldest first).
    pub seq: u64,
    /// The order as accepted.
    pub order: Order,
    /// Per-guest outcomes recorded so far.
    pub outcomes: Vec<GuestOutcome>,
    /// Final result, once the order is done.
    pub result: Option<OrderResult>,
    /// The kernel's boot id when the order was accepted (`None`: not readable, or a record
    /// of an older agent: counted as another boot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// `CLOCK_BOOTTIME` in ms when the order was accepted (`None`: not readable, or a record
    /// of an older agent). Only comparable within the boot of [`OrderRecord::boot_id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_boottime_ms: Option<u64>,
}

/// When an order is accepted: the kernel's boot id and `CLOCK_BOOTTIME` in ms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp {
    /// The kernel's boot id (`None`: not readable).
    pub boot_id: Option<String>,
    /// `CLOCK_BOOTTIME` in ms (`None`: not readable).
    pub boottime_ms: Option<u64>,
}

/// `CLOCK_BOOTTIME` in ms: time since this boot, suspend included; `None` if unreadable.
pub fn boottime_ms() -> Option<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    let secs = u64::try_from(t.tv_sec()).ok()?;
    let ms = u64::try_from(t.tv_nsec()).ok()? / 1_000_000;
    secs.checked_mul(1000)?.checked_add(ms)
}

/// A guest of the partner started here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakenOver {
    /// Domain UUID.
    pub uuid: String,
    /// Incident that made us start it.
    pub incident: u32,
    /// Slot of the blade it came from.
    pub from_slot: u8,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Data {
    version: u32,
    next_seq: u64,
    orders: BTreeMap<String, OrderRecord>,
    taken_over: BTreeMap<String, TakenOver>,
}

/// What [`Journal::begin`] found for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// First time seen: recorded as accepted, execute it.
    New,
    /// Accepted before and not finished (in progress, or interrupted by a restart).
    Unfinished(OrderRecord),
    /// Already done: answer with this record, do nothing.
    Done(OrderRecord),
}

/// The journal file and its in-memory copy.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    data: Data,
    max_orders: usize,
}

impl Journal {
    /// Opens `<state_dir>/journal.json` (empty if absent). A file that cannot be parsed is
    /// moved aside to `journal.json.corrupt` and an empty journal started; the hypervisor's own
    /// state still prevents double starts.
    pub fn open(state_dir: &Path) -> Result<Journal, JournalError> {
        let path = state_dir.join("journal.json");
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        super::ensure_dir(state_dir).map_err(io)?;
        let data = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Data>(&bytes) {
                Ok(d) if d.version == VERSION => d,
                Ok(d) => {
                    log::error!(
                        "{}: unknown journal version {}, starting empty",
                        path.display(),
                        d.version
                    );
                    Self::set_aside(&path);
                    Data {
                        version: VERSION,
                        ..Data::default()
                    }
                }
                Err(e) => {
                    log::error!(
                        "{}: unreadable journal ({e}), starting empty",
                        path.display()
                    );
                    Self::set_aside(&path);
                    Data {
                        version: VERSION,
                        ..Data::default()
                    }
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Data {
                version: VERSION,
                ..Data::default()
            },
            Err(e) => return Err(io(e)),
        };
        Ok(Journal {
            path,
            data,
            max_orders: MAX_ORDERS,
        })
    }

    fn set_aside(path: &Path) {
        let mut aside = path.as_os_str().to_owned();
        aside.push(".corrupt");
        if let Err(e) = std::fs::rename(path, &aside) {
            log::error!("{}: cannot move aside: {e}", path.display());
        }
    }

    fn save(&self) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec(&self.data).map_err(|e| JournalError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&self.path, &bytes).map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Looks the order up and, if new, records it as accepted at `stamp` (durably, before
    /// returning).
    pub fn begin(&mut self, order: &Order, stamp: &Stamp) -> Result<Begin, JournalError> {
        let key = order.key();
        if let Some(rec) = self.data.orders.get(&key) {
            return Ok(if rec.result.is_some() {
                Begin::Done(rec.clone())
            } else {
                Begin::Unfinished(rec.clone())
            });
        }
        self.accept_afresh(order, stamp)?;
        Ok(Begin::New)
    }

    /// Records the order as newly accepted at `stamp`, replacing any earlier record of it
    /// (its outcomes and result are dropped: the order is carried out again).
    pub fn restart(&mut self, order: &Order, stamp: &Stamp) -> Result<(), JournalError> {
        let old = self.data.orders.remove(&order.key());
        let r = self.accept_afresh(order, stamp);
        if r.is_err() {
            if let Some(old) = old {
                self.data.orders.insert(order.key(), old);
            }
        }
        r
    }

    fn accept_afresh(&mut self, order: &Order, stamp: &Stamp) -> Result<(), JournalError> {
        let key = order.key();
        let seq = self.data.next_seq;
        self.data.next_seq += 1;
        self.data.orders.insert(
            key.clone(),
            OrderRecord {
                seq,
                order: order.clone(),
                outcomes: Vec::new(),
                result: None,
                boot_id: stamp.boot_id.clone(),
                accepted_boottime_ms: stamp.boottime_ms,
            },
        );
        self.prune();
        if let Err(e) = self.save() {
            // Not durable: forget it, so a retry is journaled (and acknowledged) afresh
            // instead of being taken for an order interrupted by a restart.
            self.data.orders.remove(&key);
            return Err(e);
        }
        Ok(())
    }

    /// Records one guest's outcome within an accepted order (replacing an earlier one).
    pub fn record_outcome(
        &mut self,
        order: &Order,
        outcome: &GuestOutcome,
    ) -> Result<(), JournalError> {
        if let Some(rec) = self.data.orders.get_mut(&order.key()) {
            rec.outcomes.retain(|o| o.name != outcome.name);
            rec.outcomes.push(outcome.clone());
        }
        self.save()
    }

    /// Records the final result of an order.
    pub fn finish(&mut self, order: &Order, result: &OrderResult) -> Result<(), JournalError> {
        if let Some(rec) = self.data.orders.get_mut(&order.key()) {
            rec.result = Some(result.clone());
        }
        self.save()
    }

    /// Records a partner guest started here.
    pub fn record_takeover(&mut self, name: &str, taken: TakenOver) -> Result<(), JournalError> {
        self.data.taken_over.insert(name.to_owned(), taken);
        self.save()
    }

    /// Guests taken over from the partner, by name.
    pub fn taken_over(&self) -> &BTreeMap<String, TakenOver> {
        &self.data.taken_over
    }

    /// The record of an order, if accepted before.
    pub fn record(&self, order: &Order) -> Option<&OrderRecord> {
        self.data.orders.get(&order.key())
    }

    /// Orders accepted but not finished (interrupted by an agent restart), oldest first.
    pub fn unfinished(&self) -> Vec<OrderRecord> {
        let mut v: Vec<OrderRecord> = self
            .data
            .orders
            .values()
            .filter(|r| r.result.is_none())
            .cloned()
            .collect();
        v.sort_by_key(|r| r.seq);
        v
    }

    /// Drops the oldest finished records beyond [`MAX_ORDERS`].
    fn prune(&mut self) {
        while self.data.orders.len() > self.max_orders {
            let oldest = self
                .data
                .orders
                .iter()
                .filter(|(_, r)| r.result.is_some())
                .min_by_key(|(_, r)| r.seq)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.data.orders.remove(&k);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::order::GuestResult;
    use crate::testutil::TempDir;

    fn fence(incident: u32) -> Order {
        Order::FenceSelf { incident }
    }

    #[test]
    fn test_begin_finish_survives_reopen() {
        let dir = TempDir::new("journal");
        let o = Order::RestartPartnerGuests {
            incident: 7,
            failed_slot: 4,
            fence_confirmed: true,
            subset: None,
        };
        let out = GuestOutcome {
            incident: 7,
            name: "db".into(),
            result: GuestResult::Started,
            elapsed_ms: 12,
        };
        {
            let mut j = Journal::open(dir.path()).unwrap();
            assert_eq!(j.begin(&o, &Stamp::default()).unwrap(), Begin::New);
            j.record_outcome(&o, &out).unwrap();
            j.record_takeover(
                "db",
                TakenOver {
                    uuid: "u".into(),
                    incident: 7,
                    from_slot: 4,
                },
            )
            .unwrap();
        }
        let mut j = Journal::open(dir.path()).unwrap();
        let unfinished = j.unfinished();
        assert_eq!(unfinished.len(), 1);
        assert_eq!(unfinished[0].outcomes, vec![out.clone()]);
        assert!(matches!(
            j.begin(&o, &Stamp::default()).unwrap(),
            Begin::Unfinished(_)
        ));
        j.finish(&o, &OrderResult::Guests(vec![out.clone()]))
            .unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        match j.begin(&o, &Stamp::default()).unwrap() {
            Begin::Done(rec) => assert_eq!(rec.result, Some(OrderResult::Guests(vec![out]))),
            other => panic!("{other:?}"),
        }
        assert_eq!(j.taken_over().get("db").map(|t| t.from_slot), Some(4));
        assert!(j.unfinished().is_empty());
    }

    #[test]
    fn test_corrupt_journal_set_aside() {
        let dir = TempDir::new("corrupt");
        std::fs::write(dir.path().join("journal.json"), b"{not json").unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        assert!(dir.path().join("journal.json.corrupt").exists());
        assert_eq!(j.begin(&fence(1), &Stamp::default()).unwrap(), Begin::New);
    }

    #[test]
    fn test_prune_keeps_unfinished() {
        let dir = TempDir::new("prune");
        let mut j = Journal::open(dir.path()).unwrap();
        j.max_orders = 8;
        assert_eq!(j.begin(&fence(0), &Stamp::default()).unwrap(), Begin::New); // never finished
        for i in 1..=13 {
            j.begin(&fence(i), &Stamp::default()).unwrap();
            j.finish(&fence(i), &OrderResult::Fenced(Default::default()))
                .unwrap();
        }
        assert!(j.record(&fence(0)).is_some(), "unfinished order pruned");
        assert!(j.record(&fence(1)).is_none(), "oldest finished order kept");
        assert!(j.record(&fence(13)).is_some(), "newest kept");
        assert_eq!(j.data.orders.len(), 8);
    }
}
