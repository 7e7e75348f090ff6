use super::*;

const MINIMAL: &str = "[shelf]
own_address = 0x20
ipmb_device = \"/dev/ipmb-0\"
[[blade]]
slot = 1
ipmb_address = 0x82
partner = 2
agent = \"10.0.0.11:7140\"
[[blade]]
slot = 2
ipmb_address = 0x84
partner = 1
agent = \"10.0.0.12:7140\"
";

fn bad(text: &str) -> FileError {
    parse(text, Path::new("shelf.toml")).unwrap_err()
}

#[test]
fn test_minimal_accepted() {
    let c = parse(MINIMAL, Path::new("shelf.toml")).unwrap();
    assert_eq!(c.shelf.own_address, IpmbAddr(0x20));
    assert_eq!(c.shelf.blades.len(), 2);
    assert_eq!(c.shelf.blades[0].ipmb_address, IpmbAddr(0x82));
    assert_eq!(c.shelf.blades[1].partner, Slot(1));
    assert_eq!(c.shelf.timing, Timing::DEFAULT);
    assert_eq!(
        c.agents[0],
        (Slot(1), Some("10.0.0.11:7140".parse().unwrap()))
    );
    assert!(!c.stream_mode());
    assert_eq!(c.listen, None);
}

#[test]
fn test_timing_and_options() {
    let text = MINIMAL.replace(
        "[[blade]]\nslot = 1",
        "[timing]\nprobe_interval_ms = 250\nguest_restart_limit = 2\n[[blade]]\nslot = 1",
    );
    let text = text.replace(
        "ipmb_device = \"/dev/ipmb-0\"",
        "ipmb_device = \"/tmp/pty\"\nlisten = \"0.0.0.0:7140\"\nkey_file = \"/etc/k\"",
    );
    let c = parse(&text, Path::new("s.toml")).unwrap();
    assert_eq!(c.shelf.timing.probe_interval_ms, 250);
    assert_eq!(c.shelf.timing.guest_restart_limit, 2);
    assert_eq!(c.shelf.timing.probe_timeout_ms, 1500);
    assert!(c.stream_mode());
    assert_eq!(c.listen, Some("0.0.0.0:7140".parse().unwrap()));
}

#[test]
fn test_failover_report_timeout() {
    assert_eq!(Timing::DEFAULT.failover_report_timeout_ms, 120_000);
    let with = |v: &str| {
        MINIMAL.replace(
            "[[blade]]\nslot = 1",
            &format!("[timing]\nfailover_report_timeout_ms = {v}\n[[blade]]\nslot = 1"),
        )
    };
    let c = parse(&with("30000"), Path::new("s.toml")).unwrap();
    assert_eq!(c.shelf.timing.failover_report_timeout_ms, 30_000);
    let e = bad(&with("0"));
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.to_string().starts_with("shelf.toml:5: "), "{e}");
    assert!(e.message.contains("failover_report_timeout_ms"), "{e}");
    let e = bad(&with("-1"));
    assert_eq!(e.line, Some(5), "{e}");
}

#[test]
fn test_unknown_key_names_line() {
    let e = bad(&MINIMAL.replace("partner = 1\n", "partner = 1\ncolour = 3\n"));
    assert_eq!(e.line, Some(13), "{e}");
    assert!(e.to_string().starts_with("shelf.toml:13: "), "{e}");
    assert!(e.message.contains("colour"), "{e}");
    let e = bad(&MINIMAL.replace("own_address", "own_adress"));
    assert_eq!(e.line, Some(2), "{e}");
}

#[test]
fn test_duplicate_address_names_line() {
    let e = bad(&MINIMAL.replace("ipmb_address = 0x84", "ipmb_address = 0x82"));
    assert_eq!(e.line, Some(11), "{e}");
    assert!(e.message.contains("duplicate IPMB address"), "{e}");
}

#[test]
fn test_duplicate_slot_names_line() {
    let e = bad(&MINIMAL.replace("slot = 2", "slot = 1"));
    assert_eq!(e.line, Some(10), "{e}");
    assert!(e.message.contains("duplicate slot"), "{e}");
}

#[test]
fn test_partner_rules_name_line() {
    let e = bad(&MINIMAL.replace("partner = 1", "partner = 3"));
    assert_eq!(e.line, Some(12), "{e}");
    assert!(e.message.contains("not a configured blade"), "{e}");
    // The literal one-blade example names a partner that is not configured.
    let one = MINIMAL.split("[[blade]]\nslot = 2").next().unwrap();
    let e = bad(one);
    assert_eq!(e.line, Some(7), "{e}");
    let three = format!("{MINIMAL}[[blade]]\nslot = 3\nipmb_address = 0x86\npartner = 1\n");
    let e = bad(&three);
    assert_eq!(e.line, Some(17), "{e}");
    assert!(e.message.contains("does not name this blade"), "{e}");
}

#[test]
fn test_too_many_blades_names_line() {
    let mut text = String::from("[shelf]\nown_address = 0x20\nipmb_device = \"/dev/ipmb-0\"\n");
    for i in 0..17u8 {
        let partner = if i % 2 == 0 { i + 2 } else { i };
        text.push_str(&format!(
            "[[blade]]\nslot = {}\nipmb_address = 0x{:02x}\npartner = {}\n",
            i + 1,
            0x82 + 2 * i,
            partner
        ));
    }
    let e = bad(&text);
    // The 17th [[blade]] starts at line 4 + 16 * 4 = 68; its body follows.
    assert!(matches!(e.line, Some(68..=69)), "{e}");
    assert!(e.message.contains("at most 16"), "{e}");
}

#[test]
fn test_predictive_section() {
    let c = parse(MINIMAL, Path::new("s.toml")).unwrap();
    assert_eq!(c.shelf.predictive, Predictive::DEFAULT);
    assert!(!c.shelf.predictive.enabled);
    let on = format!("{MINIMAL}[predictive]\nenabled = true\ndegraded_hold_ms = 5000\n");
    let c = parse(&on, Path::new("s.toml")).unwrap();
    assert!(c.shelf.predictive.enabled);
    assert_eq!(c.shelf.predictive.degraded_hold_ms, 5000);
    let e = bad(&format!(
        "{MINIMAL}[predictive]\nenabled = true\ndegraded_hold_ms = 0\n"
    ));
    assert_eq!(e.line, Some(16), "{e}");
    assert!(e.message.contains("degraded_hold_ms"), "{e}");
    let e = bad(&format!("{MINIMAL}[predictive]\nenable = true\n"));
    assert_eq!(e.line, Some(15), "{e}");
}

#[test]
fn test_syntax_outside_the_subset_names_line() {
    // Written by the configuration's own parser (`toml_subset`): each error
    // names the file and the line, none panics.
    for (text, line, what) in [
        (
            MINIMAL.replace("own_address = 0x20", "own_address = 0x120"),
            2,
            "expected u8",
        ),
        (
            MINIMAL.replace("own_address = 0x20", "own_address = 32.0"),
            2,
            "floating-point",
        ),
        (
            MINIMAL.replace("partner = 1\n", "partner = 1\nslot = 2\n"),
            13,
            "duplicate key `slot`",
        ),
        (
            format!("{MINIMAL}[timing]\nprobe_interval_ms = 1e3\n"),
            15,
            "floating-point",
        ),
        (
            format!("{MINIMAL}[timing]\nprobe_interval_ms = 2026-01-01\n"),
            15,
            "dates",
        ),
        (
            format!("{MINIMAL}[shelf]\n"),
            14,
            "duplicate table `[shelf]`",
        ),
        (format!("{MINIMAL}[blade]\n"), 14, "already defined"),
        (
            MINIMAL.replace("\"/dev/ipmb-0\"", "\"\"\"/dev/ipmb-0\"\"\""),
            3,
            "multi-line",
        ),
        (
            MINIMAL.replace("[shelf]\nown_address = 0x20\n", "[shelf]\n"),
            1,
            "missing field `own_address`",
        ),
        (
            MINIMAL.replace("partner = 2\n", ""),
            4,
            "missing field `partner`",
        ),
        (
            MINIMAL.replace("ipmb_device", "ipmb_mode = \"fifo\"\nipmb_device"),
            3,
            "unknown variant `fifo`",
        ),
        (
            MINIMAL.replace("slot = 1", "slot = { n = 1 }"),
            5,
            "inline tables",
        ),
        (
            MINIMAL.replace("slot = 1", "blade.slot = 1"),
            5,
            "dotted keys",
        ),
    ] {
        let e = bad(&text);
        assert_eq!(e.line, Some(line), "{text}: {e}");
        assert!(
            e.to_string().starts_with(&format!("shelf.toml:{line}: ")),
            "{e}"
        );
        assert!(e.message.contains(what), "{text}: {e}");
    }
    let e = bad("# no tables\n");
    assert_eq!(e.line, None, "{e}");
    assert!(e.message.contains("missing field `shelf`"), "{e}");
}

#[test]
fn test_quoting_and_hex() {
    let text = MINIMAL
        .replace("own_address = 0x20", "own_address = 0x2_0 # comment")
        .replace("\"/dev/ipmb-0\"", "'/dev/ipmb-0'")
        .replace("\"10.0.0.11:7140\"", "\"10.0.0.\\u0031\\u0031:7140\"")
        .replace("\n", "\r\n");
    let c = parse(&text, Path::new("shelf.toml")).unwrap();
    assert_eq!(c.shelf.own_address, IpmbAddr(0x20));
    assert_eq!(c.ipmb_device, PathBuf::from("/dev/ipmb-0"));
    assert_eq!(
        c.agents[0],
        (Slot(1), Some("10.0.0.11:7140".parse().unwrap()))
    );
    let bundle = include_str!("../../../../cross/bundle/shmc-plugin.toml");
    let c = parse(bundle, Path::new("shmc-plugin.toml")).unwrap();
    assert_eq!(c.shelf.blades.len(), 2);
    assert_eq!(
        c.sequence_file,
        Some(PathBuf::from("/var/lib/shelfha/sequence"))
    );
}

/// `MINIMAL` with a `[timing]` table of `keys` appended (its first key on line 15).
fn timed(keys: &str) -> String {
    format!("{MINIMAL}[timing]\n{keys}")
}

#[test]
fn test_no_blades_refused_naming_shelf_line() {
    let e = bad("# a shelf\n[shelf]\nown_address = 0x20\nipmb_device = \"/dev/ipmb-0\"\n");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(
        e.to_string()
            .starts_with("shelf.toml:2: no [[blade]] configured"),
        "{e}"
    );
}

#[test]
fn test_unworkable_timing_refused_naming_line() {
    for (keys, line, rule) in [
            // The case: probes every 5 s, lost after the default 1.5 s.
            (
                "probe_interval_ms = 5000\n",
                15,
                "probe_timeout_ms (1500) must be at least 2 x probe_interval_ms (2 x 5000 = 10000)",
            ),
            (
                "probe_timeout_ms = 100\n",
                15,
                "probe_timeout_ms (100) must be at least 2 x probe_interval_ms (2 x 500 = 1000)",
            ),
            (
                "probe_interval_ms = 100\nprobe_timeout_ms = 400\n",
                16,
                "probe_timeout_ms (400) must be at least 2 x request_timeout_ms (2 x 250 = 500)",
            ),
            (
                "agent_heartbeat_ms = 5\n",
                15,
                "agent_heartbeat_ms (5) must be between 10 and 10000",
            ),
            (
                "confirm_poll_ms = 1900\n",
                15,
                "confirm_poll_ms (1900) plus request_timeout_ms (250) = 2150 must not exceed fence_step_deadline_ms (2000)",
            ),
            // Only the deadline is set: its line is named.
            (
                "fence_step_deadline_ms = 200\n",
                15,
                "confirm_poll_ms (50) plus request_timeout_ms (250) = 300 must not exceed fence_step_deadline_ms (200)",
            ),
            (
                "request_retries = 9\n",
                15,
                "request_timeout_ms (250) x (request_retries (9) + 1) = 2500 must not exceed fence_step_deadline_ms (2000)",
            ),
            (
                "fence_step_deadline_ms = 600\nrequest_timeout_ms = 201\n",
                16,
                "request_timeout_ms (201) x (request_retries (2) + 1) = 603 must not exceed fence_step_deadline_ms (600)",
            ),
        ] {
            let text = timed(keys);
            let e = bad(&text);
            assert_eq!(e.line, Some(line), "{keys}: {e}");
            assert!(
                e.to_string().starts_with(&format!("shelf.toml:{line}: {rule}")),
                "{keys}: {e}"
            );
        }
    // Where each value came from is said.
    let e = bad(&timed("probe_timeout_ms = 100\n"));
    assert!(
        e.message
            .ends_with("[probe_timeout_ms: line 15, probe_interval_ms: default]"),
        "{e}"
    );
    // The boundaries are accepted.
    for keys in [
        "probe_interval_ms = 750\n",
        "fence_step_deadline_ms = 750\n",
        "confirm_poll_ms = 1750\n",
        "request_retries = 7\n",
        "fence_step_deadline_ms = 600\nrequest_timeout_ms = 200\n",
    ] {
        parse(&timed(keys), Path::new("s.toml")).unwrap_or_else(|e| panic!("{keys}: {e}"));
    }
}

#[test]
fn test_heartbeat_timeout_checked_with_an_agent_link() {
    let linked = MINIMAL.replace(
        "ipmb_device = \"/dev/ipmb-0\"",
        "ipmb_device = \"/dev/ipmb-0\"\nlisten = \"0.0.0.0:7140\"\nkey_file = \"/etc/k\"",
    );
    // [timing] on line 16, its first key on 17.
    let with = |keys: &str| format!("{linked}[timing]\n{keys}");
    let e = bad(&with("heartbeat_timeout_ms = 500\n"));
    assert_eq!(e.line, Some(17), "{e}");
    assert!(
            e.message.starts_with(
                "heartbeat_timeout_ms (500) must be at least 3 x the agents' heartbeat interval (3 x agent_heartbeat_ms 200 = 600)"
            ),
            "{e}"
        );
    // Agents configured faster are stated, and then the timeout fits.
    parse(
        &with("heartbeat_timeout_ms = 500\nagent_heartbeat_ms = 100\n"),
        Path::new("s.toml"),
    )
    .unwrap();
    // The interval's line is named when the timeout is the default.
    let e = bad(&with("agent_heartbeat_ms = 400\n"));
    assert_eq!(e.line, Some(17), "{e}");
    assert!(
        e.message.contains("3 x agent_heartbeat_ms 400 = 1200"),
        "{e}"
    );
    // No agent link: no heartbeat is heard, the timeout is not checked.
    parse(&timed("heartbeat_timeout_ms = 500\n"), Path::new("s.toml")).unwrap();
}

#[test]
fn test_listen_needs_key_file_naming_line() {
    let text = MINIMAL.replace(
        "ipmb_device = \"/dev/ipmb-0\"",
        "ipmb_device = \"/dev/ipmb-0\"\nlisten = \"0.0.0.0:7140\"",
    );
    let e = bad(&text);
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("`listen` needs `key_file`"), "{e}");
    // The same rule for replay: it is the file's consistency, not a resource.
    let e = parse_for(&text, Path::new("shelf.toml"), Use::Replay).unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");
}

#[test]
fn test_replay_needs_no_ipmb_device() {
    let text = MINIMAL.replace("ipmb_device = \"/dev/ipmb-0\"\n", "");
    let e = bad(&text);
    assert_eq!(e.line, Some(1), "{e}");
    assert!(e.message.contains("missing field `ipmb_device`"), "{e}");
    let c = parse_for(&text, Path::new("shelf.toml"), Use::Replay).unwrap();
    assert_eq!(c.ipmb_device, PathBuf::new());
    assert_eq!(c.shelf.blades.len(), 2);
    // Every other rule still holds for replay.
    let e = parse_for(
        &format!("{text}[timing]\nprobe_timeout_ms = 100\n"),
        Path::new("shelf.toml"),
        Use::Replay,
    )
    .unwrap_err();
    assert_eq!(e.line, Some(14), "{e}");
}

#[test]
fn test_run_checks_the_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("shmc-keycheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("shelf.key");
    let config = dir.join("shelf.toml");
    let text = MINIMAL.replace(
        "ipmb_device = \"/dev/ipmb-0\"",
        &format!(
            "ipmb_device = \"/dev/ipmb-0\"\nlisten = \"127.0.0.1:7140\"\nkey_file = {:?}",
            key.to_str().unwrap()
        ),
    );
    std::fs::write(&config, &text).unwrap();
    // Missing.
    let e = load(&config).unwrap_err();
    assert_eq!(e.line, Some(5), "{e}");
    assert!(
        e.message
            .starts_with("key_file: the shelf key cannot be used"),
        "{e}"
    );
    // Present, mode 0600: accepted; replay never reads it.
    let k = shelfha_proto::generate_key().unwrap();
    shelfha_proto::write_key_file(&key, &k).unwrap();
    load(&config).unwrap();
    // Readable by others.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = load(&config).unwrap_err();
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.contains("mode 0644"), "{e}");
    load_for(&config, Use::Replay).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn test_bad_values_name_line() {
    let e = bad(&MINIMAL.replace("ipmb_address = 0x84", "ipmb_address = 0x184"));
    assert_eq!(e.line, Some(11), "{e}");
    let e = bad(&MINIMAL.replace("10.0.0.12:7140", "10.0.0.12"));
    assert_eq!(e.line, Some(13), "{e}");
    let e = bad(&MINIMAL.replace("slot = 2\n", "slot = 17\n"));
    assert_eq!(e.line, Some(10), "{e}");
    assert!(e.message.contains("slot must be between 1 and 16"), "{e}");
    let e = bad(&MINIMAL.replace("slot = 1\n", "slot = \"one\"\n"));
    assert_eq!(e.line, Some(5), "{e}");
    let e = bad(&format!("{MINIMAL}[timing]\nconfirm_poll_ms = 0\n"));
    assert_eq!(e.line, Some(15), "{e}");
    let e = bad("[shelf]\nown_address = 0x20\n");
    assert!(e.message.contains("ipmb_device"), "{e}");
}
