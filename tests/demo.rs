//! The README's first command: `shelfha demo` on every scenario, on the real
//! binary. The demo itself fails (exit status 1) when a guest runs on both
//! blades at any step or a failover does not complete.

use std::process::Command;

fn demo(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_shelfha"))
        .arg("demo")
        .args(args)
        .output()
        .expect("run shelfha demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn demo_default_fails_over_twice() {
    let out = demo(&[]);
    assert!(
        out.contains("decision #1: blade_hardware on slot 1"),
        "{out}"
    );
    assert!(out.contains("decision #2: host_os on slot 2"), "{out}");
    assert_eq!(out.matches("total downtime").count(), 2, "{out}");
    assert!(
        out.contains("after: slot 1 runs []; slot 2 runs [\"db-1\", \"vm-1\", \"vm-2\", \"vm-3\"]"),
        "{out}"
    );
    assert!(
        out.contains("after: slot 2 runs []; slot 1 runs [\"db-1\", \"vm-1\", \"vm-2\", \"vm-3\"]"),
        "{out}"
    );
    assert!(
        out.contains("no guest ran on both blades at any step."),
        "{out}"
    );
}

#[test]
fn demo_every_scenario() {
    let out = demo(&[
        "--scenario",
        "hypervisor,agent-silent,extraction,os-stop,ipmc-silent,hardware",
        "--guests",
        "2",
    ]);
    for (n, class) in [
        "hypervisor on slot 1",
        "host_os on slot 2",
        "blade_extraction on slot 1",
        "host_os on slot 2",
        "ipmc_lost on slot 1",
        "blade_hardware on slot 1",
    ]
    .into_iter()
    .enumerate()
    {
        let line = format!("decision #{}: {class}", n + 1);
        assert!(out.contains(&line), "{line} missing:\n{out}");
    }
    // A silent IPMC whose agent still heartbeats is not a dead blade: the blade keeps its
    // guests (no downtime) and the only alert of the whole run is `ipmc_lost`.
    let alerts: Vec<&str> = out.lines().filter(|l| l.contains("ALERT")).collect();
    assert!(
        alerts.len() == 1 && alerts[0].contains("ALERT ipmc_lost: slot 1"),
        "{out}"
    );
    assert!(
        out.contains("no downtime: slot 1 stays in service"),
        "{out}"
    );
    // The hardware-fenced failures wait for the IPMB fence: the partner starts nothing before M1.
    assert!(out.contains("fence: HotSwapM1"), "{out}");
    assert!(out.contains("fence: SelfFenced"), "{out}");
    assert_eq!(out.matches("total downtime").count(), 5, "{out}");
}

#[test]
fn demo_rejects_bad_arguments() {
    for args in [
        &["--scenario", "meteor"][..],
        &["--guests", "0"],
        &["--bogus"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_shelfha"))
            .arg("demo")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: an error message");
    }
}

#[test]
fn every_subcommand_answers_help() {
    for args in [
        &["--help"][..],
        &["demo", "--help"],
        &["simulate", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_shelfha"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
}
