//! The shelf simulator: emulated blade IPMCs on an IPMB carried in process.
//!
//! Each [`ipmc::Ipmc`] speaks the `ipmb_dev_int` message format; the [`Backplane`]
//! moves whole messages between them and the ShMC side, optionally corrupting
//! bytes, exactly as a byte channel (pty) would carry them.

pub mod ipmc;
pub mod pty;

use shmc_plugin::wire::ipmb::Message;

pub use ipmc::{Fault, Ipmc};

/// The emulated IPMCs of one shelf and the messages they put on the bus.
#[derive(Debug, Default)]
pub struct Backplane {
    ipmcs: Vec<Ipmc>,
}

impl Backplane {
    /// A backplane with one IPMC per address, all active (M4), reporting to `shmc_address`.
    pub fn new(addresses: &[u8], shmc_address: u8) -> Self {
        Self {
            ipmcs: addresses
                .iter()
                .map(|&a| Ipmc::new(a, shmc_address))
                .collect(),
        }
    }

    /// The IPMC at `address`.
    pub fn ipmc(&mut self, address: u8) -> Option<&mut Ipmc> {
        self.ipmcs.iter_mut().find(|i| i.address() == address)
    }

    /// Delivers a message from the ShMC to the IPMC it names (rsSA).
    pub fn deliver(&mut self, now: u64, msg: &Message) {
        let rs_sa = msg.repr().rs_sa;
        if let Some(i) = self.ipmc(rs_sa) {
            i.on_message(now, msg);
        }
    }

    /// Advances every IPMC to `now` and collects what they send to the ShMC.
    pub fn poll(&mut self, now: u64, out: &mut Vec<Message>) {
        for i in &mut self.ipmcs {
            i.poll(now);
            while let Some(m) = i.pop_output() {
                out.push(m);
            }
        }
    }
}
