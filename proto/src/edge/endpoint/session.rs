//! Sessions: challenges to unsynced peers, replies that set a peer's floor, and the
//! re-sequencing of commands still pending when a peer resynchronises (see the module
//! documentation of [`super`]).

use std::net::SocketAddr;

use super::*;

impl Endpoint {
    /// A fresh frame of a peer whose learnt address differs from its source: the source is
    /// challenged, and only its reply moves the address. Configured addresses never move.
    pub(super) fn check_source(&mut self, id: NodeId, src: SocketAddr, now_ms: u64) {
        let differs = self
            .peers
            .iter()
            .any(|p| p.id == id && !p.fixed && p.addr != Some(src));
        if differs {
            self.challenge(id, src, now_ms);
        }
    }

    /// Sends `id` a challenge (at most once per retry interval): to its configured address,
    /// else to `src`. The outstanding nonce is reused until answered.
    pub(super) fn challenge(&mut self, id: NodeId, src: SocketAddr, now_ms: u64) {
        let interval = self.config.retry_interval_ms;
        let floor = self
            .verifier
            .peers()
            .get(id)
            .map(ReplayWindow::highest)
            .unwrap_or(0);
        let fresh_nonce = self.nonce_base ^ self.nonces.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let Some(p) = self.peers.iter_mut().find(|p| p.id == id) else {
            return;
        };
        if p.challenged_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < interval)
        {
            return;
        }
        let dest = if p.fixed { p.addr } else { Some(src) };
        let Some(dest) = dest else { return };
        let nonce = match p.challenge {
            Some(n) => n,
            None => {
                self.nonces = self.nonces.wrapping_add(1);
                p.challenge = Some(fresh_nonce);
                fresh_nonce
            }
        };
        p.challenged_ms = Some(now_ms);
        log::debug!("challenging {} at {} (floor {})", id, dest, floor);
        self.send_session(id, &Message::Challenge { nonce, floor }, dest);
    }

    /// Challenges every unsynced peer with a known address that has not been challenged for
    /// [`Endpoint::CHALLENGE_IDLE_MS`], so a restarted node resynchronises without waiting
    /// for the peer's next frame.
    pub(super) fn challenge_idle(&mut self, now_ms: u64) {
        for i in 0..self.peers.len() {
            let Some(p) = self.peers.get(i) else { break };
            let (id, addr) = (p.id, p.addr);
            let idle = p
                .challenged_ms
                .is_none_or(|t| now_ms.saturating_sub(t) >= Self::CHALLENGE_IDLE_MS);
            if let Some(addr) = addr {
                if idle && !self.verifier.is_synced(id) {
                    self.challenge(id, addr, now_ms);
                }
            }
        }
    }

    /// A peer challenges us: raise our counter above its floor, answer with its nonce, and
    /// re-send what it has not acknowledged under new sequences (once per challenge).
    pub(super) fn on_challenge(
        &mut self,
        from: NodeId,
        nonce: u64,
        floor: u64,
        src: SocketAddr,
        now_ms: u64,
    ) {
        if floor >= SeqCounter::MAX_FLOOR {
            if self.may_complain(from, now_ms) {
                log::error!(
                    "{} claims to have seen sequence {} from us, beyond any we can have sent: not followed (its state is corrupt; it refuses our frames until repaired)",
                    from,
                    floor
                );
            }
        } else if self.seq.advance_past(floor) {
            log::warn!(
                "{} has seen sequence {} from us, above our counter: counter raised (clock stepped back?)",
                from,
                floor
            );
        }
        let Some(p) = self.peers.iter_mut().find(|p| p.id == from) else {
            return;
        };
        let dest = if p.fixed { p.addr } else { Some(src) };
        let Some(dest) = dest else { return };
        let first = !p.answered.contains(&Some(nonce));
        if first {
            p.answered.rotate_right(1);
            if let Some(newest) = p.answered.first_mut() {
                *newest = Some(nonce);
            }
        }
        self.send_session(from, &Message::ChallengeReply { nonce }, dest);
        if first {
            self.resequence(from, now_ms);
        }
        if !self.verifier.is_synced(from) {
            self.challenge(from, src, now_ms);
        }
    }

    /// True at most once per [`COMPLAINT_INTERVAL_MS`] per peer.
    fn may_complain(&mut self, id: NodeId, now_ms: u64) -> bool {
        let Some(p) = self.peers.iter_mut().find(|p| p.id == id) else {
            return false;
        };
        let due = p
            .complained_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= COMPLAINT_INTERVAL_MS);
        if due {
            p.complained_ms = Some(now_ms);
        }
        due
    }

    /// Our challenge answered: the reply's sequence becomes `from`'s floor. The challenge rate
    /// limit stays in force, so a peer that cannot get above the floor is challenged at most
    /// once per retry interval.
    pub(super) fn on_reply(
        &mut self,
        from: NodeId,
        seq: u64,
        nonce: u64,
        src: SocketAddr,
        now_ms: u64,
    ) {
        let Some(p) = self.peers.iter_mut().find(|p| p.id == from) else {
            return;
        };
        if p.challenge != Some(nonce) {
            log::debug!(
                "{} answered a challenge we did not send (nonce {:#x})",
                from,
                nonce
            );
            return;
        }
        p.challenge = None;
        if !p.fixed && p.addr != Some(src) {
            match p.addr {
                None => log::info!("{} is at {}", from, src),
                Some(old) => log::info!("{} moved from {} to {}", from, old, src),
            }
            p.addr = Some(src);
        }
        let was = self.verifier.is_synced(from);
        let floor = self
            .verifier
            .peers()
            .get(from)
            .map(ReplayWindow::highest)
            .unwrap_or(0);
        self.verifier.mark_synced(from, seq);
        if seq <= floor {
            if self.may_complain(from, now_ms) {
                log::error!(
                    "{} answered our challenge with sequence {}, not above {} already seen from it: its frames stay refused (its counter went back and cannot follow)",
                    from,
                    seq,
                    floor
                );
            }
        } else if !was {
            log::info!(
                "{} answered our challenge: frames after sequence {} accepted",
                from,
                seq
            );
        }
    }

    /// Gives every command pending for `to` a new sequence and sends it now (the peer's floor
    /// is about to rise above the old ones). Handles (`Pending::seq`) do not change.
    fn resequence(&mut self, to: NodeId, now_ms: u64) {
        let addr = self.peer_addr(to);
        for i in 0..self.pending.len() {
            if self.pending.get(i).is_none_or(|p| p.to != to) {
                continue;
            }
            // A re-sequenced frame is a transmission: it counts towards `max_tries`, so
            // replayed challenges cannot keep a command alive forever.
            if self
                .pending
                .get(i)
                .is_none_or(|p| p.tries >= self.config.max_tries)
            {
                continue;
            }
            let seq = self.seq.next_seq();
            let Some(p) = self.pending.get_mut(i) else {
                break;
            };
            p.tries += 1;
            if !reseal(&self.key, &mut p.frame[..], p.len, seq) {
                log::error!("cannot re-sequence {:?} #{}", p.kind, p.seq);
                continue;
            }
            p.wire_seq = seq;
            p.next_at_ms = now_ms.saturating_add(self.config.retry_interval_ms);
            if let (Some(addr), Some(frame)) = (addr, p.frame.get(..p.len)) {
                if let Err(e) = self.socket.send_to(frame, addr) {
                    log::debug!("re-sequenced {:?} #{} to {}: {}", p.kind, p.seq, to, e);
                }
            }
        }
    }

    pub(super) fn send_session(&mut self, to: NodeId, msg: &Message, addr: SocketAddr) {
        let header = Header {
            sender: self.me,
            dest: to,
            seq: self.seq.next_seq(),
        };
        match seal(&self.key, &header, msg, &mut self.tx[..]) {
            Ok(len) => {
                if let Some(frame) = self.tx.get(..len) {
                    if let Err(e) = self.socket.send_to(frame, addr) {
                        log::debug!("{:?} to {} ({}): {}", msg.kind(), to, addr, e);
                    }
                }
            }
            Err(e) => log::error!("cannot seal {:?}: {}", msg.kind(), e),
        }
    }
}
