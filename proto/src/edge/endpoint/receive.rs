//! The receive path: a datagram is authenticated, checked against the peer's session and
//! replay window, and becomes an [`Event`] (acks matched to pending commands, commands acked
//! or held for a manual ack, session messages handled) or a counted drop.

use std::net::SocketAddr;

use super::*;

impl Endpoint {
    pub(super) fn receive(&mut self, n: usize, src: SocketAddr, now_ms: u64) -> Option<Event> {
        let datagram = self.rx.get(..n).unwrap_or_default();
        match self.verifier.open(datagram) {
            Ok(rx) => {
                match rx.message {
                    Message::Challenge { nonce, floor } => {
                        self.on_challenge(rx.sender, nonce, floor, src, now_ms);
                        return None;
                    }
                    Message::ChallengeReply { nonce } => {
                        self.on_reply(rx.sender, rx.seq, nonce, src, now_ms);
                        return None;
                    }
                    Message::Ack { acked, status } => {
                        self.check_source(rx.sender, src, now_ms);
                        return self.on_ack(rx.sender, acked, status, now_ms, src);
                    }
                    _ => {}
                }
                self.check_source(rx.sender, src, now_ms);
                if rx.message.needs_ack() {
                    if self.config.manual_ack {
                        // A retry of a refused command, within its retry span.
                        self.refused
                            .retain(|(f, s, _)| !(*f == rx.sender && *s == rx.seq));
                        self.awaiting.push((rx.sender, rx.seq, src));
                    } else {
                        self.send_ack(rx.sender, rx.seq, AckStatus::Accepted, src);
                    }
                }
                Some(Event::Message {
                    from: rx.sender,
                    seq: rx.seq,
                    message: rx.message,
                })
            }
            Err(reason) => {
                if matches!(reason, DropReason::Stale | DropReason::Unsynced) {
                    // Authentic but not provably fresh: ask the sender to prove it.
                    if let Some((_, h, _)) = peek(datagram) {
                        self.challenge(h.sender, src, now_ms);
                    }
                } else if reason.is_authentic() {
                    if let Some((_, h, kind)) = peek(datagram) {
                        // An unknown kind may be a newer command: say we cannot use it.
                        let needs_ack = Kind::from_u8(kind).is_none_or(Kind::needs_ack);
                        // Not acked while the application has not made it durable.
                        let awaiting = self
                            .awaiting
                            .iter()
                            .any(|(f, s, _)| *f == h.sender && *s == h.seq);
                        if needs_ack && !awaiting {
                            // A command refused for good (never made durable) is not a
                            // duplicate of a delivered one: the sender must not take it
                            // for delivered.
                            let refused = self
                                .refused
                                .iter()
                                .any(|(f, s, _)| *f == h.sender && *s == h.seq);
                            let status = if reason == DropReason::Replayed && !refused {
                                AckStatus::Duplicate
                            } else {
                                AckStatus::Rejected
                            };
                            self.send_ack(h.sender, h.seq, status, src);
                        }
                    }
                }
                self.log_drop(reason, src, now_ms);
                None
            }
        }
    }

    fn on_ack(
        &mut self,
        from: NodeId,
        acked: u64,
        status: AckStatus,
        now_ms: u64,
        src: SocketAddr,
    ) -> Option<Event> {
        match self
            .pending
            .iter()
            .position(|p| p.to == from && p.wire_seq == acked)
        {
            Some(i) => {
                let p = self.pending.swap_remove(i);
                self.free_frames.push(p.frame);
                if !status.is_delivered() {
                    log::warn!("{} rejected {:?} #{} ({:?})", from, p.kind, p.seq, status);
                }
                Some(Event::Acked {
                    to: from,
                    seq: p.seq,
                    kind: p.kind,
                    status,
                })
            }
            None => {
                self.verifier.count_drop(DropReason::UnmatchedAck);
                self.log_drop(DropReason::UnmatchedAck, src, now_ms);
                None
            }
        }
    }
}
