//! A UDP relay between the shelf manager and one blade's agent, standing in for
//! the network between them: one socket X forwards every datagram from the
//! plugin's address to the agent's real address and every datagram from the
//! agent's address to the plugin's real address. The plugin's `agent` address of
//! that blade and the agent's `shmc` address are X, so each sees the address it was
//! configured with as the source (configured addresses never move). [`Relay::cut`]
//! drops everything in both directions (a cut cable) until [`Relay::heal`].
//!
//! Datagrams from any other source are dropped and counted.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Datagram counters of a relay.
#[derive(Debug, Default)]
pub struct Counts {
    /// Forwarded plugin -> agent.
    pub to_agent: AtomicU64,
    /// Forwarded agent -> plugin.
    pub to_plugin: AtomicU64,
    /// Dropped by the cut (either direction).
    pub cut: AtomicU64,
    /// From neither endpoint.
    pub stray: AtomicU64,
}

/// Snapshot of [`Counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Forwarded plugin -> agent.
    pub to_agent: u64,
    /// Forwarded agent -> plugin.
    pub to_plugin: u64,
    /// Dropped by the cut.
    pub cut: u64,
    /// From neither endpoint.
    pub stray: u64,
}

/// A running relay; stopped when dropped.
pub struct Relay {
    /// X: the address both endpoints are configured with.
    pub addr: SocketAddr,
    /// Held while a datagram is checked against the cut and forwarded, so that a
    /// cut is exact: what was forwarded is counted before [`Relay::cut`] returns.
    cut: Arc<Mutex<bool>>,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    handle: Option<JoinHandle<()>>,
}

impl Relay {
    /// Binds X on loopback and relays between `plugin` and `agent` (their real addresses).
    pub fn start(plugin: SocketAddr, agent: SocketAddr) -> Relay {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind relay socket");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("relay read timeout");
        let addr = sock.local_addr().expect("relay address");
        let cut = Arc::new(Mutex::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<Counts> = Arc::default();
        let (c, s, n) = (cut.clone(), stop.clone(), counts.clone());
        let handle = std::thread::Builder::new()
            .name("udp-relay".into())
            .spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !s.load(Ordering::SeqCst) {
                    let (len, from) = match sock.recv_from(&mut buf) {
                        Ok(r) => r,
                        // Timeout (checks `stop`), or an ICMP error of an earlier send.
                        Err(_) => continue,
                    };
                    let (to, counter) = if from == plugin {
                        (agent, &n.to_agent)
                    } else if from == agent {
                        (plugin, &n.to_plugin)
                    } else {
                        n.stray.fetch_add(1, Ordering::SeqCst);
                        continue;
                    };
                    let cut = c.lock().unwrap_or_else(|e| e.into_inner());
                    if *cut {
                        n.cut.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    // A lost datagram is what UDP allows; the endpoints retry.
                    if sock.send_to(&buf[..len], to).is_ok() {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    drop(cut);
                }
            })
            .expect("relay thread");
        Relay {
            addr,
            cut,
            stop,
            counts,
            handle: Some(handle),
        }
    }

    /// Drops everything from now on, both directions; returns the counters at the
    /// cut (nothing forwarded later).
    pub fn cut(&self) -> Snapshot {
        let mut cut = self.cut.lock().unwrap_or_else(|e| e.into_inner());
        *cut = true;
        self.counts()
    }

    /// Forwards again.
    pub fn heal(&self) {
        *self.cut.lock().unwrap_or_else(|e| e.into_inner()) = false;
    }

    /// The counters now.
    pub fn counts(&self) -> Snapshot {
        Snapshot {
            to_agent: self.counts.to_agent.load(Ordering::SeqCst),
            to_plugin: self.counts.to_plugin.load(Ordering::SeqCst),
            cut: self.counts.cut.load(Ordering::SeqCst),
            stray: self.counts.stray.load(Ordering::SeqCst),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
