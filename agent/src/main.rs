//! `blade-agent` binary.
fn main() {}
