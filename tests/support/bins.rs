//! Binaries of other workspace packages for the root package's system tests.
//!
//! Use with `#[path = "support/bins.rs"] mod bins;` (from `support/e2e.rs`:
//! `#[path = "bins.rs"]`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the binaries `names` (each the binary of the workspace package of the same
/// name: the root package cannot name another package's binary) with this test's own
/// profile, so a release test never runs stale release binaries; returns their paths.
pub fn build(names: &[&str]) -> Vec<PathBuf> {
    // The test executable is <target>/<profile dir>/deps/<name>; the binaries go to
    // <target>/<profile dir>/.
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .to_path_buf();
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--profile", profile]);
    for name in names {
        cmd.args(["-p", name, "--bin", name]);
    }
    let status = cmd
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building {names:?} failed");
    names
        .iter()
        .map(|name| {
            let bin = dir.join(name);
            assert!(bin.exists(), "{} not built", bin.display());
            bin
        })
        .collect()
}
