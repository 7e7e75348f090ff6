//! `shelfha`: host-side tools (demo, shelf simulator).
fn main() {}
