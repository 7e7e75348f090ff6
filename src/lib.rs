//! Host-side tools of shelfha: the shelf simulator and the in-process demo.

pub mod demo;
pub mod sim;
