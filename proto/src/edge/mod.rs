//! The std edge (feature `std`): key files, sequence seeding, definition chunking, the UDP endpoint.

pub mod definitions;
pub mod endpoint;
pub mod keyfile;
pub mod seq;
