//! `shmc-plugin` binary.
fn main() {}
