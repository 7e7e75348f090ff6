//! Drop logging: every dropped datagram is counted; its log line is rate-limited to one per
//! reason per second, with the number suppressed since.

use std::net::SocketAddr;

use super::Endpoint;
use crate::auth::DropReason;

impl Endpoint {
    pub(super) fn log_drop(&mut self, reason: DropReason, src: SocketAddr, now_ms: u64) {
        let Some(st) = self.log.get_mut(reason.index()) else {
            return;
        };
        let due = st.last_ms.is_none_or(|t| now_ms.saturating_sub(t) >= 1000);
        if !due {
            st.suppressed += 1;
            return;
        }
        log::log!(
            drop_log_level(reason),
            "dropped datagram from {}: {} ({} more since last report, {} in all)",
            src,
            reason,
            st.suppressed,
            self.verifier.drops().get(reason)
        );
        st.last_ms = Some(now_ms);
        st.suppressed = 0;
    }

    pub(super) fn flush_drop_logs(&mut self, now_ms: u64) {
        for reason in DropReason::ALL {
            let Some(st) = self.log.get_mut(reason.index()) else {
                continue;
            };
            if st.suppressed > 0 && st.last_ms.is_some_and(|t| now_ms.saturating_sub(t) >= 1000) {
                log::log!(
                    drop_log_level(reason),
                    "dropped {} more datagrams: {} ({} in all)",
                    st.suppressed,
                    reason,
                    self.verifier.drops().get(reason)
                );
                st.last_ms = Some(now_ms);
                st.suppressed = 0;
            }
        }
    }
}

fn drop_log_level(reason: DropReason) -> log::Level {
    match reason {
        // Normal after retries and lost acks, and while a restarted peer resynchronises.
        DropReason::Replayed | DropReason::UnmatchedAck | DropReason::Unsynced => log::Level::Debug,
        _ => log::Level::Warn,
    }
}
