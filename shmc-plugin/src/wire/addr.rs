//! Typed blade identities on the wire: a shelf slot and an IPMB address.
//!
//! Both are one byte; the types keep a slot from being taken for an address
//! (and the other way round) where both travel together.

use core::fmt;

/// An 8-bit IPMB slave address (the form in a frame: the 7-bit address
/// shifted left, e.g. 0x82 for the blade in logical slot 1 of many shelves).
/// `Debug` prints the bare number, as the byte did.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpmbAddr(pub u8);

/// A shelf slot number as configured (the agent protocol names blades by it).
/// `Debug` prints the bare number, as the byte did.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(pub u8);

impl IpmbAddr {
    /// The address byte.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl Slot {
    /// The slot number.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl From<u8> for IpmbAddr {
    fn from(a: u8) -> Self {
        Self(a)
    }
}

impl From<IpmbAddr> for u8 {
    fn from(a: IpmbAddr) -> u8 {
        a.0
    }
}

impl From<u8> for Slot {
    fn from(s: u8) -> Self {
        Self(s)
    }
}

impl From<Slot> for u8 {
    fn from(s: Slot) -> u8 {
        s.0
    }
}

impl fmt::Display for IpmbAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02x}", self.0)
    }
}

impl fmt::Debug for IpmbAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::LowerHex for IpmbAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_display_and_bytes() {
        extern crate std;
        use std::format;
        assert_eq!(format!("{}", IpmbAddr(0x82)), "0x82");
        assert_eq!(format!("{}", Slot(7)), "7");
        assert_eq!(format!("{:>2}", Slot(7)), " 7");
        assert_eq!(format!("{:?}", (Slot(7), IpmbAddr(0x82))), "(7, 130)");
        assert_eq!(format!("0x{:02x}", IpmbAddr(0x0A)), "0x0a");
        assert_eq!(u8::from(IpmbAddr::from(0x9A)), 0x9A);
        assert_eq!(Slot::from(3).get(), 3);
    }
}
