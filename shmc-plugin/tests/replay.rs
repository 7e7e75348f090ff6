//! The real `shmc-plugin` binary on the captures in `tests/captures/`.
//!
//! Each capture's stdout must equal its reviewed `.jsonl` file byte for
//! byte; independently of those files, the decisions each capture must cause
//! are listed here by hand from the classifier table.
//!
//! The contract of the classifier on captures: alert lines only add to the
//! output. Without its alert lines, each capture's output is byte for byte
//! what it was before replay printed alerts; [`EVENTS_AND_DECISIONS`] pins
//! a digest of those lines per golden file, so no regeneration of a golden
//! can change an event or decision line unnoticed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn captures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures")
}

fn shmc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmc-plugin"))
        .args(args)
        .output()
        .expect("run shmc-plugin")
}

fn replay(capture: &str) -> Output {
    let dir = captures();
    let config = dir.join("shelf.toml");
    let capture = dir.join(capture);
    shmc(&[
        "replay",
        "--config",
        config.to_str().unwrap(),
        capture.to_str().unwrap(),
    ])
}

/// (t_ms, class, slot) of every decision line, in order.
fn decisions(stdout: &str) -> Vec<(u64, String, u64)> {
    stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("every line is JSON"))
        .filter(|v| v.get("decision").is_some())
        .map(|v| {
            let d = &v["decision"];
            (
                v["t_ms"].as_u64().unwrap(),
                d["class"].as_str().unwrap().to_string(),
                d["slot"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// FNV-1a (64 bits) of the event, decision and summary lines of each golden
/// file, taken when replay had no alert lines.
const EVENTS_AND_DECISIONS: &[(&str, u64)] = &[
    ("blade_extraction.jsonl", 0xf502_8c86_84ce_18ed),
    ("blade_hardware.jsonl", 0xbcf1_fbf8_e6d0_7ff3),
    ("blade_lost.jsonl", 0x13a5_44bf_4c1c_343f),
    ("commanded.jsonl", 0x28a8_5991_6d84_2888),
    ("degraded.jsonl", 0xbd2f_5cc5_bf94_63ef),
    ("degraded_off.jsonl", 0x6842_39a0_7101_f897),
    ("duplicates.jsonl", 0xa115_1444_b163_8673),
    ("garbage.jsonl", 0xe09a_4afe_64da_c0a6),
    ("host_os.jsonl", 0xb584_3418_05a3_b7ac),
    ("ipmb_link.jsonl", 0x27f0_34de_9442_6e28),
    ("operator_deactivate.jsonl", 0x69ee_8ca2_fedc_d1aa),
    ("record_only.jsonl", 0xfe32_9fb4_fe6c_02f2),
    ("unknown_generator.jsonl", 0x1734_c49a_82b2_930d),
];

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Whether `line` is an alert line (a top-level `alert` key; a decision's
/// `"actions":["alert"]` is not one).
fn is_alert(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .is_some_and(|v| v.get("alert").is_some())
}

/// `text` without its alert lines (every other line kept as it is).
fn without_alerts(text: &str) -> String {
    text.split_inclusive('\n')
        .filter(|l| !is_alert(l))
        .collect()
}

/// The classifier's contract on `stdout`, the output for `golden`: without
/// alert lines it is the golden without alert lines, and that is what it was
/// before replay printed alerts; every alert line is an alert record and the
/// summary counts them.
fn check_contract(golden: &str, stdout: &str) {
    let golden_text = std::fs::read_to_string(captures().join(golden)).unwrap();
    let kept = without_alerts(stdout);
    assert_eq!(
        kept,
        without_alerts(&golden_text),
        "{golden}: event or decision lines differ"
    );
    let pinned = EVENTS_AND_DECISIONS
        .iter()
        .find(|(g, _)| *g == golden)
        .unwrap_or_else(|| panic!("{golden}: no digest in EVENTS_AND_DECISIONS"))
        .1;
    assert_eq!(
        fnv1a(kept.as_bytes()),
        pinned,
        "{golden}: the event and decision lines changed; only alert lines may be added"
    );
    let mut alerts = 0;
    for line in stdout.lines().filter(|l| is_alert(l)) {
        alerts += 1;
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["t_ms"].is_u64(), "{line}");
        assert!(v["alert"].is_string(), "{line}");
        assert!(v["kind"].is_string(), "{line}");
        assert!(v.get("decision").is_none() && v.get("event").is_none());
    }
    assert_eq!(summary(stdout)["alerts"].as_u64(), Some(alerts), "{golden}");
}

fn summary(stdout: &str) -> serde_json::Value {
    let last = stdout.lines().last().expect("output");
    serde_json::from_str::<serde_json::Value>(last).unwrap()["summary"].clone()
}

fn check(capture: &str, want: &[(u64, &str, u64)]) -> String {
    let out = replay(capture);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{capture}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let golden =
        std::fs::read_to_string(captures().join(capture.replace(".cap", ".jsonl"))).unwrap();
    check_contract(&capture.replace(".cap", ".jsonl"), &stdout);
    assert_eq!(
        stdout, golden,
        "{capture}: output differs from the reviewed golden file"
    );
    let got = decisions(&stdout);
    let want: Vec<(u64, String, u64)> = want
        .iter()
        .map(|(t, c, s)| (*t, c.to_string(), *s))
        .collect();
    assert_eq!(got, want, "{capture}");
    assert_eq!(
        summary(&stdout)["decisions"].as_u64(),
        Some(want.len() as u64)
    );
    stdout
}

#[test]
fn test_blade_lost() {
    let out = check(
        "blade_lost.cap",
        &[
            (1000, "blade_lost", 1),
            (2000, "blade_lost", 2),
            (3000, "blade_lost", 3),
            (4000, "blade_lost", 4),
        ],
    );
    // The OpenIPMI form has no previous state.
    assert!(out.contains(
        "\"event_data\":[167,255,255],\"offset\":7,\"m_state\":7,\"previous_m_state\":null"
    ));
    let first: serde_json::Value = serde_json::from_str(out.lines().nth(1).unwrap()).unwrap();
    assert_eq!(
        first["decision"],
        serde_json::json!({"class":"blade_lost","slot":1,"ipmb_address":130,"partner_slot":2,
            "actions":["fence_ipmb","failover_to_partner"]})
    );
    // One failover: slot 1's M1 came after its fence began. Slot 4's M4 -> M1
    // opened its incident and proves nothing; no IPMC answers the Get Sensor
    // Reading (sent at once) in a replay, so slot 4 is not failed over.
    let sum = summary(&out);
    assert_eq!(sum["orders"], 1, "{sum}");
    assert_eq!(sum["requests_sent"], 12, "{sum}");
}

#[test]
fn test_commanded_deactivation_and_incident_end() {
    check(
        "commanded.cap",
        &[(100, "blade_hardware", 1), (9100, "blade_hardware", 1)],
    );
}

#[test]
fn test_blade_extraction() {
    let out = check(
        "blade_extraction.cap",
        &[(500, "blade_extraction", 3), (900, "blade_extraction", 3)],
    );
    assert!(out.contains("\"actions\":[\"evacuate\",\"deactivate\"]"));
}

#[test]
fn test_blade_hardware() {
    check(
        "blade_hardware.cap",
        &[
            (10, "blade_hardware", 1),
            (20, "blade_hardware", 2),
            (30, "blade_hardware", 3),
            (40, "blade_hardware", 4),
        ],
    );
}

#[test]
fn test_host_os() {
    check("host_os.cap", &[(7, "host_os", 1), (9, "host_os", 2)]);
}

#[test]
fn test_ipmb_link_alert_only() {
    let out = check(
        "ipmb_link.cap",
        &[
            (100, "ipmb_link_degraded", 1),
            (300, "ipmb_link_lost", 1),
            (500, "ipmb_link_degraded", 2),
        ],
    );
    assert!(!out.contains("fence_ipmb"));
    assert_eq!(summary(&out)["requests_sent"].as_u64(), Some(0));
}

#[test]
fn test_record_only() {
    let out = check("record_only.cap", &[]);
    assert_eq!(summary(&out)["events"].as_u64(), Some(7));
}

#[test]
fn test_duplicates() {
    let out = check("duplicates.cap", &[(7000, "blade_hardware", 1)]);
    let s = summary(&out);
    assert_eq!(
        (
            s["frames"].as_u64(),
            s["events"].as_u64(),
            s["duplicates"].as_u64()
        ),
        (Some(6), Some(3), Some(3))
    );
}

#[test]
fn test_unknown_generator() {
    let out = check("unknown_generator.cap", &[]);
    assert_eq!(summary(&out)["unknown_generator"].as_u64(), Some(2));
}

#[test]
fn test_garbage_is_counted_not_fatal() {
    let out = check("garbage.cap", &[(7, "blade_hardware", 1)]);
    let s = summary(&out);
    assert_eq!(s["bad_frames"].as_u64(), Some(6));
    assert_eq!(s["frames"].as_u64(), Some(4));
    assert_eq!(s["bad_events"].as_u64(), Some(1));
    assert_eq!(s["unmatched_responses"].as_u64(), Some(1));
    assert_eq!(s["other_requests"].as_u64(), Some(1));
}

#[test]
fn test_bad_lines_exit_2_naming_the_line() {
    for (capture, line, reason) in [
        ("bad_odd.cap", 4, "odd number of hex digits"),
        ("bad_hex.cap", 2, "not hex"),
        ("bad_time.cap", 3, "time is not a decimal number"),
        ("bad_backwards.cap", 2, "time goes backwards"),
    ] {
        let out = replay(capture);
        assert_eq!(out.status.code(), Some(2), "{capture}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains(&format!("{capture}:{line}: {reason}")),
            "{capture}: {stderr}"
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            !stdout.contains("summary"),
            "{capture}: no summary after an error"
        );
    }
}

#[test]
fn test_same_input_same_output() {
    let a = replay("blade_lost.cap").stdout;
    let b = replay("blade_lost.cap").stdout;
    assert_eq!(a, b);
}

#[test]
fn test_cli() {
    let help = shmc(&["--help"]);
    assert!(help.status.success());
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("shmc-plugin replay --config FILE CAPTURE")
    );
    let version = shmc(&["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("shmc-plugin {}", env!("CARGO_PKG_VERSION"))
    );
    // A bare command prints the usage (on stderr: it is a usage error).
    let bare = shmc(&[]);
    assert_eq!(bare.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bare.stderr).contains("Usage:"));
    // Every command answers --help.
    for cmd in ["run", "replay"] {
        let help = shmc(&[cmd, "--help"]);
        assert!(help.status.success(), "{cmd} --help");
        assert!(String::from_utf8_lossy(&help.stdout).contains("Usage:"));
    }
    assert_eq!(shmc(&["replay", "--config"]).status.code(), Some(2));
    assert_eq!(
        shmc(&["frobnicate", "--config", "x.toml"]).status.code(),
        Some(2)
    );
}

#[test]
fn test_bad_config_names_line() {
    let dir = std::env::temp_dir().join(format!("shmc-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[shelf]\nown_address = 0x20\nipmb_device = \"/dev/ipmb-0\"\n[[blade]]\nslot = 1\nipmb_address = 0x82\npartner = 2\n",
    )
    .unwrap();
    let cap = captures().join("record_only.cap");
    let out = shmc(&[
        "replay",
        "--config",
        path.to_str().unwrap(),
        cap.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("bad.toml:7: partner is not a configured blade"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn test_deactivation_by_the_shelf_manager_is_commanded() {
    let out = check("operator_deactivate.cap", &[(3000, "blade_lost", 3)]);
    assert_eq!(summary(&out)["other_requests"].as_u64(), Some(1));
}

/// Replays `capture` with the configuration file `config` (in the captures directory) and
/// checks the output against `golden` byte for byte and against the hand-listed decisions.
fn check_with(config: &str, capture: &str, golden: &str, want: &[(u64, &str, u64)]) -> String {
    let dir = captures();
    let out = shmc(&[
        "replay",
        "--config",
        dir.join(config).to_str().unwrap(),
        dir.join(capture).to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{capture}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    check_contract(golden, &stdout);
    let golden_text = std::fs::read_to_string(dir.join(golden)).unwrap();
    assert_eq!(
        stdout, golden_text,
        "{capture} with {config}: differs from {golden}"
    );
    let want: Vec<(u64, String, u64)> = want
        .iter()
        .map(|(t, c, s)| (*t, c.to_string(), *s))
        .collect();
    assert_eq!(decisions(&stdout), want, "{capture} with {config}");
    stdout
}

#[test]
fn test_blade_degraded_predictive_on() {
    // Slot 1 held past the hold time (decided when the frame at 1100 arrives, dated 100);
    // slot 2 deasserted within the hold; slot 4's ECC limit at once; slot 3 held to the end
    // of the capture (dated 1100), alert only because its partner (slot 4) is busy.
    let out = check_with(
        "replay_predictive.toml",
        "degraded.cap",
        "degraded.jsonl",
        &[
            (100, "blade_degraded", 1),
            (1500, "blade_degraded", 4),
            (1100, "blade_degraded", 3),
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    // Slot 1's decision comes right after the event of the frame whose time made it due.
    assert!(lines[3].contains("\"t_ms\":1100,\"event\""), "{out}");
    assert!(lines[4].contains("\"t_ms\":100,\"decision\""), "{out}");
    let d: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("decision").is_some())
        .collect();
    assert_eq!(
        d[0]["decision"]["actions"],
        serde_json::json!(["evacuate", "alert"])
    );
    assert_eq!(d[2]["decision"]["actions"], serde_json::json!(["alert"]));
    let s = summary(&out);
    assert_eq!(s["requests_sent"].as_u64(), Some(0), "never fenced");
    assert_eq!(s["orders"].as_u64(), Some(2), "two Migrate orders");
}

#[test]
fn test_blade_degraded_predictive_off() {
    // The same capture with the default configuration: the core table, nothing decided.
    let out = check_with("shelf.toml", "degraded.cap", "degraded_off.jsonl", &[]);
    let s = summary(&out);
    assert_eq!(
        (s["events"].as_u64(), s["orders"].as_u64()),
        (Some(6), Some(0))
    );
}

#[test]
fn test_end_of_capture_makes_holds_due() {
    // record_only.cap asserts upper non-critical on slot 1 at t=1 and nothing deasserts it.
    let dir = captures();
    let out = shmc(&[
        "replay",
        "--config",
        dir.join("replay_predictive.toml").to_str().unwrap(),
        dir.join("record_only.cap").to_str().unwrap(),
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        decisions(&stdout),
        vec![(1, "blade_degraded".to_string(), 1)]
    );
    // The decision is printed after the last event, before the summary.
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[lines.len() - 2].contains("\"decision\""), "{stdout}");
}

#[test]
fn test_every_golden_keeps_its_events_and_decisions() {
    // Every golden file is pinned, and none lost an event or decision line.
    let mut goldens: Vec<String> = std::fs::read_dir(captures())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    goldens.sort();
    let pinned: Vec<&str> = EVENTS_AND_DECISIONS.iter().map(|(g, _)| *g).collect();
    assert_eq!(goldens, pinned);
    for (golden, digest) in EVENTS_AND_DECISIONS {
        let text = std::fs::read_to_string(captures().join(golden)).unwrap();
        assert_eq!(
            fnv1a(without_alerts(&text).as_bytes()),
            *digest,
            "{golden}: only alert lines may be added to a golden file"
        );
    }
    // The filter keeps alert-only decisions: their action is named "alert".
    assert!(!is_alert(
        "{\"t_ms\":1,\"decision\":{\"class\":\"ipmb_link_lost\",\"actions\":[\"alert\"]}}"
    ));
    assert!(is_alert(
        "{\"t_ms\":1,\"alert\":\"x\",\"kind\":\"ipmb_link\"}"
    ));
}

#[test]
fn test_alert_lines_follow_their_decision() {
    // ipmb_link.cap: each alert-only decision is followed by its alert line,
    // the record every source writes (kind, slot).
    let out = check(
        "ipmb_link.cap",
        &[
            (100, "ipmb_link_degraded", 1),
            (300, "ipmb_link_lost", 1),
            (500, "ipmb_link_degraded", 2),
        ],
    );
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let alerts: Vec<&serde_json::Value> =
        lines.iter().filter(|v| v.get("alert").is_some()).collect();
    assert_eq!(alerts.len(), 3, "{out}");
    for (a, (t, slot)) in alerts.iter().zip([(100, 1), (300, 1), (500, 2)]) {
        assert_eq!(a["kind"], "ipmb_link", "{a}");
        assert_eq!(a["t_ms"], t, "{a}");
        assert_eq!(a["slot"], slot, "{a}");
    }
}

#[test]
fn test_replay_says_it_judges_no_silence() {
    let out = replay("record_only.cap");
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("replay judges no silence: a capture has no agents and no probe answers"),
        "{stderr}"
    );
    let help = String::from_utf8(shmc(&["replay", "--help"]).stdout).unwrap();
    assert!(help.contains("Silence is not judged"), "{help}");
}

#[test]
fn test_replay_needs_no_ipmb_device_nor_key() {
    // The capture stands for the device, and no agent is heard: neither
    // `ipmb_device` nor the key file (absent here) is needed.
    let dir = std::env::temp_dir().join(format!("shmc-nodev-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("shelf.toml");
    let text = std::fs::read_to_string(captures().join("shelf.toml")).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("ipmb_device"))
        .map(|l| format!("{l}\n"))
        .collect();
    let text = text.replace(
        "[shelf]\n",
        &format!(
            "[shelf]\nlisten = \"127.0.0.1:7140\"\nkey_file = {:?}\n",
            dir.join("absent.key").to_str().unwrap()
        ),
    );
    assert!(!text.contains("ipmb_device"), "{text}");
    std::fs::write(&config, &text).unwrap();
    let out = shmc(&[
        "replay",
        "--config",
        config.to_str().unwrap(),
        captures().join("blade_lost.cap").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let golden = std::fs::read_to_string(captures().join("blade_lost.jsonl")).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), golden);
    // `run` needs both: the same file is refused by check-config.
    let check = shmc(&["check-config", "--config", config.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
