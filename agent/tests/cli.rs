//! The `blade-agent` binary's command line: help, version, configuration check, bad usage.

use std::process::Command;

fn agent(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_blade-agent"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn test_version_and_help() {
    let out = agent(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("blade-agent {}", env!("CARGO_PKG_VERSION"))
    );
    let out = agent(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("blade-agent run [--config PATH]"));
}

#[test]
fn test_check_config() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/debian/agent.toml");
    let out = agent(&["check-config", "--config", shipped]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("qemu:///system"));

    let bad = std::env::temp_dir().join(format!("blade-agent-cli-{}.toml", std::process::id()));
    std::fs::write(
        &bad,
        "slot = 1\nshmc = \"10.0.0.1:7300\"\nlisten = \"0.0.0.0:7301\"\nbogus = 1\n",
    )
    .unwrap();
    let out = agent(&["check-config", "--config", bad.to_str().unwrap()]);
    let _ = std::fs::remove_file(&bad);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:4:", bad.display())) && err.contains("bogus"),
        "{err}"
    );
}

#[test]
fn test_every_subcommand_answers_help() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["help"],
        &["run", "--help"],
        &["check-config", "--help"],
        &["help", "run"],
    ] {
        let out = agent(args);
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("--config") || text.contains("blade-agent run"),
            "{args:?}: {text}"
        );
    }
    let out = agent(&["-V"]);
    assert!(out.status.success());
}

#[test]
fn test_bad_usage_and_configuration_exit_2() {
    let out = agent(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("frobnicate"));
    // No command at all: the usage on stderr, exit 2 (as shmc-plugin and shelfha).
    let out = agent(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("blade-agent run"));
    let out = agent(&["run", "--config"]);
    assert_eq!(out.status.code(), Some(2));
    let out = agent(&["run", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    // A configuration that cannot be read is a configuration error, with either spelling.
    let out = agent(&["run", "--config", "/nonexistent/agent.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let out = agent(&["check-config", "-c", "/nonexistent/agent.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/agent.toml"));
}
