//! The SEL cursor: which records of the shelf manager's System Event Log
//! are new, exactly once, across clears, wraps, edits and reconnects.
//!
//! Every poll reads Get SEL Entry of the last processed record; if it is
//! still there with the same bytes, records after it are new. If it is gone
//! or changed, the log was cleared, wrapped or edited: Get SEL Info tells
//! which (its erase timestamp), and the whole log is read again, keeping
//! only records not seen yet (the records seen are remembered byte for
//! byte). At start the records already in the log are history: walked
//! once, remembered, skipped. The cursor outlives sessions, so nothing is
//! processed twice after a session loss. It only sends requests through an
//! [`IpmiSession`]; it keeps no clock.

use std::collections::{HashSet, VecDeque};

use log::{debug, info, warn};

use super::session::{IpmiSession, SessionError, Target};
use crate::wire::cmd;
use crate::wire::sel::{SelRecord, SEL_RECORD_LEN};

/// Completion code: requested record not present.
pub const CC_NOT_PRESENT: u8 = 0xCB;
/// Record id that names the first record of the SEL.
pub const SEL_FIRST: u16 = 0x0000;
/// Record id that names the last record (request) or the end (next id).
pub const SEL_LAST: u16 = 0xFFFF;
/// Most records read in one poll before the core's timers run again.
pub const MAX_RECORDS_PER_POLL: usize = 64;
/// Processed records remembered (exact bytes) to recognise them when the log
/// is re-read after a wrap: more than a 64 KiB SEL holds (4,096 records).
pub const REMEMBERED_RECORDS: usize = 8192;

/// Get SEL Info response fields used here (IPMI v2.0 §31.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelInfo {
    /// Records in the log.
    pub entries: u16,
    /// Most recent addition timestamp.
    pub addition: u32,
    /// Most recent erase (clear) timestamp.
    pub erase: u32,
}

impl SelInfo {
    /// Parses Get SEL Info response data (completion code first).
    pub fn parse(data: &[u8]) -> Option<SelInfo> {
        if data.first() != Some(&0) || data.len() < 14 {
            return None;
        }
        Some(SelInfo {
            entries: u16::from_le_bytes([data[2], data[3]]),
            addition: u32::from_le_bytes([data[6], data[7], data[8], data[9]]),
            erase: u32::from_le_bytes([data[10], data[11], data[12], data[13]]),
        })
    }
}

/// Where SEL reading stands: the last processed record and what is needed
/// to recognise records processed already after a clear or a wrap.
#[derive(Debug, Clone, Default)]
pub struct SelCursor {
    /// Id and exact bytes of the last processed record (None: start from the first).
    last: Option<(u16, [u8; SEL_RECORD_LEN])>,
    /// Erase timestamp of the log as last seen.
    erase: Option<u32>,
    /// The last [`REMEMBERED_RECORDS`] processed records, oldest first, and as a set.
    remembered: VecDeque<[u8; SEL_RECORD_LEN]>,
    remembered_set: HashSet<[u8; SEL_RECORD_LEN]>,
    started: bool,
    /// Records handed out.
    pub records: u64,
    /// Records that are not system events (OEM types), skipped.
    pub skipped: u64,
    /// Times the log was found cleared.
    pub clears: u64,
    /// Times the last record was gone without a clear (wrap, deletion).
    pub discontinuities: u64,
}

/// One SEL record read by [`SelCursor::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewRecord {
    /// The record's id.
    pub record_id: u16,
    /// The decoded record, when it is a system event record.
    pub record: Option<SelRecord>,
}

fn get_entry(
    s: &mut dyn IpmiSession,
    id: u16,
) -> Result<Result<(u16, [u8; SEL_RECORD_LEN]), u8>, SessionError> {
    let rsp = s.request(
        Target::Bmc,
        cmd::NETFN_STORAGE,
        cmd::CMD_GET_SEL_ENTRY,
        0,
        &cmd::get_sel_entry(id),
    )?;
    match rsp.first() {
        Some(0) if rsp.len() >= 3 + SEL_RECORD_LEN => {
            let next = u16::from_le_bytes([rsp[1], rsp[2]]);
            let mut bytes = [0u8; SEL_RECORD_LEN];
            bytes.copy_from_slice(&rsp[3..3 + SEL_RECORD_LEN]);
            Ok(Ok((next, bytes)))
        }
        Some(0) => Err(SessionError::Lost(format!(
            "Get SEL Entry answer of {} bytes",
            rsp.len()
        ))),
        Some(&cc) => Ok(Err(cc)),
        None => Err(SessionError::Lost("empty Get SEL Entry answer".into())),
    }
}

fn get_info(s: &mut dyn IpmiSession) -> Result<SelInfo, SessionError> {
    let rsp = s.request(
        Target::Bmc,
        cmd::NETFN_STORAGE,
        cmd::CMD_GET_SEL_INFO,
        0,
        &[],
    )?;
    SelInfo::parse(&rsp)
        .ok_or_else(|| SessionError::Lost(format!("Get SEL Info answer {rsp:02x?}")))
}

impl SelCursor {
    /// A cursor that has not seen the log yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Id of the last processed record.
    pub fn last_id(&self) -> Option<u16> {
        self.last.map(|(id, _)| id)
    }

    fn mark(&mut self, id: u16, bytes: [u8; SEL_RECORD_LEN]) {
        if self.remembered_set.insert(bytes) {
            self.remembered.push_back(bytes);
            if self.remembered.len() > REMEMBERED_RECORDS {
                if let Some(old) = self.remembered.pop_front() {
                    self.remembered_set.remove(&old);
                }
            }
        }
        self.last = Some((id, bytes));
    }

    /// Whether a record found while re-reading the log after a wrap was
    /// processed already. A wrap drops the oldest records first, so once our
    /// last record is gone every record still there is either one we
    /// processed (remembered byte for byte: id, timestamp, event) or new.
    /// Timestamps are not compared: a controller restarted with its clock
    /// reset (pre-init timestamps) logs new records with smaller ones.
    fn seen_before(&self, bytes: &[u8; SEL_RECORD_LEN]) -> bool {
        self.remembered_set.contains(bytes)
    }

    /// The first call of a session with the log: at the very start, skips
    /// the records already there (history).
    fn start(&mut self, s: &mut dyn IpmiSession) -> Result<(), SessionError> {
        if self.started {
            return Ok(());
        }
        let info = get_info(s)?;
        self.erase = Some(info.erase);
        // Walk the history once, remembering each record, so that none of it
        // can pass for new if the log is later re-read (wrap, deletion).
        let (mut next, mut count) = (SEL_FIRST, 0usize);
        while next != SEL_LAST && count < REMEMBERED_RECORDS {
            match get_entry(s, next)? {
                Ok((after, bytes)) => {
                    let id = u16::from_le_bytes([bytes[0], bytes[1]]);
                    if after == next {
                        break;
                    }
                    self.mark(id, bytes);
                    next = after;
                    count += 1;
                }
                Err(CC_NOT_PRESENT) => break,
                Err(cc) => {
                    return Err(SessionError::Lost(format!(
                        "Get SEL Entry 0x{next:04x} completion code 0x{cc:02x}"
                    )))
                }
            }
        }
        if next != SEL_LAST && count > 0 {
            // A log longer than the memory (or a looping chain): start after its last record.
            if let Ok((_, bytes)) = get_entry(s, SEL_LAST)? {
                self.mark(u16::from_le_bytes([bytes[0], bytes[1]]), bytes);
            }
        }
        match self.last {
            Some((id, _)) => info!(
                "SEL holds {} record(s) at start; they are history, reading from after record 0x{id:04x}",
                info.entries
            ),
            None => info!("SEL empty at start"),
        }
        self.started = true;
        Ok(())
    }

    /// Reads records added since the last call (at most
    /// [`MAX_RECORDS_PER_POLL`]) and hands each new one to `each`, in log
    /// order, exactly once. Returns whether more may be waiting.
    pub fn poll(
        &mut self,
        s: &mut dyn IpmiSession,
        each: &mut dyn FnMut(NewRecord),
    ) -> Result<bool, SessionError> {
        self.start(s)?;
        // Where to read from, and whether records must be filtered (re-read after a wrap).
        let (mut next, filter) = match self.last {
            None => (SEL_FIRST, false),
            Some((id, bytes)) => match get_entry(s, id)? {
                Ok((next, now)) if now == bytes => (next, false),
                other => {
                    let info = get_info(s)?;
                    if self.erase != Some(info.erase) {
                        self.clears += 1;
                        warn!(
                            "SEL was cleared (erase timestamp {}); {} record(s) now, all of them new",
                            info.erase, info.entries
                        );
                        self.erase = Some(info.erase);
                        self.last = None;
                        (SEL_FIRST, false)
                    } else {
                        self.discontinuities += 1;
                        warn!(
                            "SEL record 0x{id:04x} {} without a clear (wrap or deletion); re-reading the log, skipping records processed already",
                            if other.is_ok() { "changed" } else { "is gone" }
                        );
                        (SEL_FIRST, true)
                    }
                }
            },
        };
        let mut handed = 0;
        while next != SEL_LAST {
            if handed >= MAX_RECORDS_PER_POLL {
                return Ok(true);
            }
            let (after, bytes) = match get_entry(s, next)? {
                Ok(v) => v,
                // Empty log, or the record vanished while reading: next poll.
                Err(CC_NOT_PRESENT) => break,
                Err(cc) => {
                    return Err(SessionError::Lost(format!(
                        "Get SEL Entry 0x{next:04x} completion code 0x{cc:02x}"
                    )))
                }
            };
            let id = u16::from_le_bytes([bytes[0], bytes[1]]);
            if after == next {
                return Err(SessionError::Lost(format!(
                    "SEL record 0x{id:04x} names itself as next"
                )));
            }
            next = after;
            if filter && self.seen_before(&bytes) {
                continue;
            }
            let record = match SelRecord::parse(&bytes) {
                Ok(r) => Some(r),
                Err(e) => {
                    self.skipped += 1;
                    debug!("SEL record 0x{id:04x} skipped: {e}");
                    None
                }
            };
            self.mark(id, bytes);
            self.records += 1;
            handed += 1;
            each(NewRecord {
                record_id: id,
                record,
            });
        }
        Ok(false)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// A SEL behind a fake session: records in log order, erase timestamp.
    struct FakeSel {
        records: Vec<[u8; SEL_RECORD_LEN]>,
        erase: u32,
        next_id: u16,
        down: bool,
    }

    impl FakeSel {
        fn new() -> Self {
            Self {
                records: Vec::new(),
                erase: 0,
                next_id: 1,
                down: false,
            }
        }

        /// Adds a threshold event from 0x82 with sensor number `n` at `ts`.
        fn add(&mut self, ts: u32, n: u8) -> u16 {
            let id = self.next_id;
            self.next_id = if id == 0xFFFE { 1 } else { id + 1 };
            let mut r = [
                0, 0, 0x02, 0, 0, 0, 0, 0x82, 0x00, 0x04, 0x01, n, 0x01, 0x57, 0x40, 0x50,
            ];
            r[0..2].copy_from_slice(&id.to_le_bytes());
            r[3..7].copy_from_slice(&ts.to_le_bytes());
            self.records.push(r);
            id
        }

        fn clear(&mut self, ts: u32) {
            self.records.clear();
            self.erase = ts;
        }
    }

    impl IpmiSession for FakeSel {
        fn request(
            &mut self,
            target: Target,
            net_fn: u8,
            cmd_code: u8,
            _rq_seq: u8,
            data: &[u8],
        ) -> Result<Vec<u8>, SessionError> {
            if self.down {
                return Err(SessionError::Lost("down".into()));
            }
            assert_eq!((target, net_fn), (Target::Bmc, cmd::NETFN_STORAGE));
            match cmd_code {
                cmd::CMD_GET_SEL_INFO => {
                    let mut r = vec![0, 0x51];
                    r.extend((self.records.len() as u16).to_le_bytes());
                    r.extend([0, 0, 0, 0, 0, 0]);
                    r.extend(self.erase.to_le_bytes());
                    r.push(0x0A);
                    Ok(r)
                }
                cmd::CMD_GET_SEL_ENTRY => {
                    let id = u16::from_le_bytes([data[2], data[3]]);
                    let at = match id {
                        SEL_FIRST => (!self.records.is_empty()).then_some(0),
                        SEL_LAST => self.records.len().checked_sub(1),
                        _ => self
                            .records
                            .iter()
                            .position(|r| u16::from_le_bytes([r[0], r[1]]) == id),
                    };
                    let Some(at) = at else {
                        return Ok(vec![CC_NOT_PRESENT]);
                    };
                    let next = self
                        .records
                        .get(at + 1)
                        .map_or(SEL_LAST, |r| u16::from_le_bytes([r[0], r[1]]));
                    let mut r = vec![0];
                    r.extend(next.to_le_bytes());
                    r.extend(self.records[at]);
                    Ok(r)
                }
                other => panic!("unexpected command 0x{other:02x}"),
            }
        }
    }
    fn poll_all(c: &mut SelCursor, s: &mut FakeSel) -> Vec<u16> {
        let mut got = Vec::new();
        while c
            .poll(s, &mut |r| {
                assert!(r.record.is_some());
                got.push(r.record_id)
            })
            .unwrap()
        {}
        got
    }

    #[test]
    fn test_history_skipped_then_new_records_once() {
        let mut sel = FakeSel::new();
        sel.add(10, 1);
        sel.add(10, 2);
        let mut c = SelCursor::new();
        assert_eq!(poll_all(&mut c, &mut sel), Vec::<u16>::new());
        let a = sel.add(11, 3);
        let b = sel.add(11, 4);
        assert_eq!(poll_all(&mut c, &mut sel), vec![a, b]);
        assert_eq!(poll_all(&mut c, &mut sel), Vec::<u16>::new());
        assert_eq!(c.records, 2);
    }

    #[test]
    fn test_empty_at_start_reads_everything_after() {
        let mut sel = FakeSel::new();
        let mut c = SelCursor::new();
        assert!(poll_all(&mut c, &mut sel).is_empty());
        let ids: Vec<u16> = (0..200).map(|i| sel.add(5, i as u8)).collect();
        // More than one poll's worth: handed out in batches, in order, once.
        let mut got = Vec::new();
        let more = c.poll(&mut sel, &mut |r| got.push(r.record_id)).unwrap();
        assert!(more);
        assert_eq!(got.len(), MAX_RECORDS_PER_POLL);
        got.extend(poll_all(&mut c, &mut sel));
        assert_eq!(got, ids);
    }

    #[test]
    fn test_clear_under_us() {
        let mut sel = FakeSel::new();
        let mut c = SelCursor::new();
        poll_all(&mut c, &mut sel);
        let a = sel.add(20, 1);
        assert_eq!(poll_all(&mut c, &mut sel), vec![a]);
        // Cleared, and new records in the same second as the last one processed.
        sel.clear(20);
        let b = sel.add(20, 2);
        let d = sel.add(21, 3);
        assert_eq!(poll_all(&mut c, &mut sel), vec![b, d]);
        assert_eq!(c.clears, 1);
        // Cleared with nothing new: nothing handed out, and later records are.
        sel.clear(22);
        assert!(poll_all(&mut c, &mut sel).is_empty());
        let e = sel.add(23, 4);
        assert_eq!(poll_all(&mut c, &mut sel), vec![e]);
        assert_eq!(c.clears, 2);
    }

    #[test]
    fn test_wrap_drops_oldest() {
        let mut sel = FakeSel::new();
        let mut c = SelCursor::new();
        poll_all(&mut c, &mut sel);
        let ids: Vec<u16> = (0..3).map(|i| sel.add(30, i)).collect();
        assert_eq!(poll_all(&mut c, &mut sel), ids);
        // The log overwrote its oldest records, ours included, and got two new ones.
        let x = sel.add(30, 10);
        let y = sel.add(31, 11);
        sel.records.drain(..3);
        assert_eq!(poll_all(&mut c, &mut sel), vec![x, y]);
        assert_eq!((c.clears, c.discontinuities), (0, 1));
    }

    #[test]
    fn test_restart_with_new_log_and_clock_reset() {
        let mut sel = FakeSel::new();
        let mut c = SelCursor::new();
        poll_all(&mut c, &mut sel);
        let a = sel.add(0x5000_0000, 1);
        assert_eq!(poll_all(&mut c, &mut sel), vec![a]);
        // The controller restarted with an empty log (never cleared, same
        // erase timestamp) and a clock counting from its start again.
        sel.records.clear();
        let b = sel.add(12, 2);
        let d = sel.add(13, 3);
        assert_eq!(poll_all(&mut c, &mut sel), vec![b, d]);
        assert_eq!((c.clears, c.discontinuities), (0, 1));
    }

    #[test]
    fn test_remembered_records_bounded() {
        let mut c = SelCursor::new();
        for i in 0..(REMEMBERED_RECORDS as u32 + 10) {
            let mut r = [0u8; SEL_RECORD_LEN];
            r[3..7].copy_from_slice(&i.to_le_bytes());
            c.mark(i as u16, r);
        }
        assert_eq!(c.remembered.len(), REMEMBERED_RECORDS);
        assert_eq!(c.remembered_set.len(), REMEMBERED_RECORDS);
        let mut first = [0u8; SEL_RECORD_LEN];
        assert!(!c.seen_before(&first));
        first[3..7].copy_from_slice(&(REMEMBERED_RECORDS as u32 + 9).to_le_bytes());
        assert!(c.seen_before(&first));
    }

    #[test]
    fn test_last_record_deleted_history_not_new() {
        let mut sel = FakeSel::new();
        sel.add(70, 1);
        sel.add(71, 2);
        let mut c = SelCursor::new();
        assert!(poll_all(&mut c, &mut sel).is_empty());
        let a = sel.add(72, 3);
        assert_eq!(poll_all(&mut c, &mut sel), vec![a]);
        // An operator deletes our last record; history and the rest stay.
        sel.records.pop();
        let b = sel.add(72, 4);
        assert_eq!(poll_all(&mut c, &mut sel), vec![b]);
        assert_eq!((c.clears, c.discontinuities), (0, 1));
    }

    #[test]
    fn test_record_id_wrap() {
        let mut sel = FakeSel::new();
        sel.next_id = 0xFFFD;
        let mut c = SelCursor::new();
        poll_all(&mut c, &mut sel);
        let ids: Vec<u16> = (0..4).map(|i| sel.add(40, i)).collect();
        assert_eq!(ids, vec![0xFFFD, 0xFFFE, 1, 2]);
        assert_eq!(poll_all(&mut c, &mut sel), ids);
    }

    #[test]
    fn test_reconnect_no_double_processing() {
        let mut sel = FakeSel::new();
        let mut c = SelCursor::new();
        poll_all(&mut c, &mut sel);
        let a = sel.add(50, 1);
        assert_eq!(poll_all(&mut c, &mut sel), vec![a]);
        sel.down = true;
        let b = sel.add(51, 2);
        assert!(matches!(
            c.poll(&mut sel, &mut |_| panic!("nothing while down")),
            Err(SessionError::Lost(_))
        ));
        // Back (same log, as ipmi_sim keeps it across restarts): b only, once.
        sel.down = false;
        assert_eq!(poll_all(&mut c, &mut sel), vec![b]);
        assert!(poll_all(&mut c, &mut sel).is_empty());
    }

    #[test]
    fn test_oem_record_skipped_not_stuck() {
        let mut sel = FakeSel::new();
        let mut c = SelCursor::new();
        poll_all(&mut c, &mut sel);
        let a = sel.add(60, 1);
        sel.records[0][2] = 0xC0;
        let b = sel.add(60, 2);
        let mut got = Vec::new();
        c.poll(&mut sel, &mut |r| {
            got.push((r.record_id, r.record.is_some()))
        })
        .unwrap();
        assert_eq!(got, vec![(a, false), (b, true)]);
        assert_eq!(c.skipped, 1);
    }

    #[test]
    fn test_sel_info_parse() {
        let d = [
            0x00, 0x51, 0x02, 0x00, 0x60, 0x3e, 0x41, 0x07, 0x00, 0x00, 0x42, 0x07, 0x00, 0x00,
            0x0a,
        ];
        assert_eq!(
            SelInfo::parse(&d),
            Some(SelInfo {
                entries: 2,
                addition: 0x741,
                erase: 0x742
            })
        );
        assert_eq!(SelInfo::parse(&d[..10]), None);
        assert_eq!(SelInfo::parse(&[0xC1]), None);
    }
}
