//! Host side (feature `std`): key files, sequence seeding, definition chunking, UDP endpoint.

pub mod definitions;
pub mod endpoint;
pub mod keyfile;
pub mod seq;
