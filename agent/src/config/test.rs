//! Loading and checking the configuration file.

use super::*;

const MINIMAL: &str = "slot = 3\nshmc = \"10.0.0.1:7300\"\nlisten = \"0.0.0.0:7301\"\n\
                       [partner]\nslot = 4\naddress = \"10.0.0.4:7301\"\n";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("agent.toml"))
}

#[test]
fn test_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.slot, 3);
    assert_eq!(c.partner.slot, 4);
    assert_eq!(c.libvirt_uri, DEFAULT_LIBVIRT_URI);
    assert_eq!(c.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    assert_eq!(c.heartbeat, Duration::from_millis(200));
    assert_eq!(c.protection, Protection::AllPersistent);
    assert_eq!(c.priority_of("x"), 0);
    assert_eq!(c.partner.libvirt_uri, None);
}

#[test]
fn test_start_timeout() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(
        c.start_timeout,
        Duration::from_millis(DEFAULT_START_TIMEOUT_MS)
    );
    let c = parse(&format!("start_timeout_ms = 5000\n{MINIMAL}")).unwrap();
    assert_eq!(c.start_timeout, Duration::from_secs(5));
    for bad in ["0", "499", "600001"] {
        let text = MINIMAL.replacen(
            "[partner]",
            &format!("start_timeout_ms = {bad}\n[partner]"),
            1,
        );
        let e = parse(&text).unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    key: "start_timeout_ms",
                    line: 4,
                    ..
                }
            ),
            "{bad}: {e}"
        );
        assert!(
            e.to_string()
                .starts_with("agent.toml:4: key `start_timeout_ms`"),
            "{e}"
        );
    }
}

#[test]
fn test_guests_list_and_priority() {
    let text = format!(
        "{MINIMAL}[guests]\nprotected = [\"db\", \"web\"]\ndefault_priority = 5\n\
         [guests.priority]\ndb = 100\n"
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.protection,
        Protection::List(vec!["db".into(), "web".into()])
    );
    assert_eq!(c.priority_of("db"), 100);
    assert_eq!(c.priority_of("web"), 5);
    assert!(c.protection.covers("db", false, false));
    assert!(!c.protection.covers("other", true, true));
}

#[test]
fn test_zero_downtime_keys() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.zero_downtime, ZeroDowntime::default());
    assert_eq!(c.zero_downtime.migration_workers, 2);
    let c = parse(&format!(
        "migration_workers = 3\nmigration_timeout_ms = 900\n{MINIMAL}[guests]\nwarm_standby = [\"db\"]\n"
    ))
    .unwrap();
    assert_eq!(c.zero_downtime.migration_workers, 3);
    assert_eq!(
        c.zero_downtime.migration_timeout,
        Duration::from_millis(900)
    );
    assert_eq!(c.zero_downtime.warm_standby, vec!["db".to_owned()]);
    let e = parse(&format!("migration_workers = 0\n{MINIMAL}")).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                key: "migration_workers",
                line: 1,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(explicit_port("tcp://[fd00::4]:4000/x"), Some(4000));
    assert_eq!(explicit_port("tcp://[fd00::4]"), None);
    let mut p = c.partner.clone();
    assert_eq!(c.zero_downtime.effective_workers(&p), 3);
    p.migration_uri = Some("tcp://10.0.0.4:49152".into());
    assert_eq!(
        c.zero_downtime.effective_workers(&p),
        1,
        "a fixed port: one at a time"
    );
    assert_eq!(explicit_port("tcp://10.0.0.4"), None);
    let e = parse(&format!("{MINIMAL}[guests]\nwarm_standby = [\"a/b\"]\n")).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                key: "guests.warm_standby",
                line: 8,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn test_allowed_storage_paths() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(
        c.allowed_storage_paths,
        vec![PathBuf::from("/var/lib/libvirt/images")]
    );
    let c = parse(&format!(
        "{MINIMAL}[guests]\nallowed_storage_paths = [\"/srv/vm\", \"/dev/disk/by-id/\"]\n"
    ))
    .unwrap();
    assert_eq!(
        c.allowed_storage_paths,
        vec![PathBuf::from("/srv/vm"), PathBuf::from("/dev/disk/by-id/")]
    );
    let c = parse(&format!("{MINIMAL}[guests]\nallowed_storage_paths = []\n")).unwrap();
    assert!(c.allowed_storage_paths.is_empty());
    assert!(
        !parse(MINIMAL).unwrap().allow_network_disks,
        "off by default"
    );
    let c = parse(&format!("{MINIMAL}[guests]\nallow_network_disks = true\n")).unwrap();
    assert!(c.allow_network_disks);
    assert!(parse(&format!(
        "{MINIMAL}[guests]\nallow_network_disks = \"yes\"\n"
    ))
    .is_err());
    for bad in ["srv/vm", "", "/srv/../etc", "/srv/./vm", "/srv/vm/.."] {
        let e = parse(&format!(
            "{MINIMAL}[guests]\nallowed_storage_paths = [\"{bad}\"]\n"
        ))
        .unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    key: "guests.allowed_storage_paths",
                    line: 8,
                    ..
                }
            ),
            "{bad}: {e}"
        );
    }
}

#[test]
fn test_allowed_emulators() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(
        c.allowed_emulators,
        DEFAULT_ALLOWED_EMULATORS
            .iter()
            .map(PathBuf::from)
            .collect::<Vec<_>>()
    );
    assert!(c
        .allowed_emulators
        .contains(&PathBuf::from("/usr/libexec/qemu-kvm")));
    let c = parse(&format!(
        "{MINIMAL}[guests]\nallowed_emulators = [\"/opt/qemu/bin/qemu-system-x86_64\"]\n"
    ))
    .unwrap();
    assert_eq!(
        c.allowed_emulators,
        vec![PathBuf::from("/opt/qemu/bin/qemu-system-x86_64")]
    );
    let c = parse(&format!("{MINIMAL}[guests]\nallowed_emulators = []\n")).unwrap();
    assert!(c.allowed_emulators.is_empty());
    for bad in ["qemu-kvm", "", "/usr/bin/../bin/kvm", "/usr/./bin/kvm"] {
        let e = parse(&format!(
            "{MINIMAL}[guests]\nallowed_emulators = [\"/usr/bin/kvm\", \"{bad}\"]\n"
        ))
        .unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    key: "guests.allowed_emulators",
                    line: 8,
                    ..
                }
            ),
            "{bad}: {e}"
        );
        assert!(e.to_string().contains("agent.toml:8"), "{e}");
    }
}

#[test]
fn test_metadata_mode() {
    let c = parse(&format!("{MINIMAL}[guests]\nprotected = \"metadata\"\n")).unwrap();
    assert!(c.protection.covers("a", true, true));
    assert!(!c.protection.covers("a", true, false));
    assert!(!c.protection.covers("a", false, true));
}

#[test]
fn test_unknown_key_names_line() {
    let text = format!("{MINIMAL}[guests]\nprotectd = \"all\"\n");
    let e = parse(&text).unwrap_err();
    match &e {
        ConfigError::Parse { line, message, .. } => {
            assert_eq!(*line, 8, "{e}");
            assert!(message.contains("protectd"), "{e}");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(e.to_string().starts_with("agent.toml:8:"), "{e}");
}

#[test]
fn test_bad_values_name_key_and_line() {
    let e = parse(&MINIMAL.replace("slot = 4", "slot = 3")).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                key: "partner.slot",
                line: 5,
                ..
            }
        ),
        "{e}"
    );
    let e = parse(&MINIMAL.replace("slot = 3", "slot = 17")).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                key: "slot",
                line: 1,
                ..
            }
        ),
        "{e}"
    );
    let e = parse(&format!("heartbeat_ms = 1\n{MINIMAL}")).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                key: "heartbeat_ms",
                ..
            }
        ),
        "{e}"
    );
    let e = parse(&format!("{MINIMAL}[guests]\nprotected = \"some\"\n")).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                key: "guests.protected",
                line: 8,
                ..
            }
        ),
        "{e}"
    );
    let e = parse(&MINIMAL.replace("10.0.0.1:7300", "nowhere")).unwrap_err();
    assert!(matches!(e, ConfigError::Parse { line: 2, .. }), "{e}");
}

#[test]
fn test_shipped_default_config_parses() {
    let text = include_str!("../../debian/agent.toml");
    let c = parse(text).unwrap();
    assert_eq!(c.libvirt_uri, DEFAULT_LIBVIRT_URI);
    assert_eq!(c.protection, Protection::AllPersistent);
}

#[test]
fn test_watchdog_section() {
    assert_eq!(
        parse(MINIMAL).unwrap().watchdog,
        None,
        "absent: no watchdog"
    );
    let c = parse(&format!("{MINIMAL}[watchdog]\nkind = \"linux\"\n")).unwrap();
    assert_eq!(
        c.watchdog,
        Some(WatchdogConfig {
            kind: WatchdogKind::Linux,
            device: PathBuf::from(DEFAULT_WATCHDOG_DEVICE),
            timeout_ms: DEFAULT_WATCHDOG_TIMEOUT_MS,
        })
    );
    let c = parse(&format!(
        "{MINIMAL}[watchdog]\nkind = \"pet-file\"\ndevice = \"/run/wd\"\ntimeout_ms = 2000\n"
    ))
    .unwrap();
    assert_eq!(
        c.watchdog,
        Some(WatchdogConfig {
            kind: WatchdogKind::PetFile,
            device: PathBuf::from("/run/wd"),
            timeout_ms: 2000,
        })
    );
}

#[test]
fn test_watchdog_errors_name_file_line_and_key() {
    // MINIMAL has 6 lines: `[watchdog]` is line 7, its first key line 8.
    let cases = [
        ("kind = \"ipmi\"\n", "watchdog.kind", 8),
        ("kind = \"pet-file\"\n", "watchdog.device", 8),
        (
            "kind = \"linux\"\ndevice = \"dev/watchdog\"\n",
            "watchdog.device",
            9,
        ),
        (
            "kind = \"linux\"\ntimeout_ms = 0\n",
            "watchdog.timeout_ms",
            9,
        ),
        // Below three heartbeat intervals (3 x 200 ms).
        (
            "kind = \"linux\"\ntimeout_ms = 599\n",
            "watchdog.timeout_ms",
            9,
        ),
        (
            "kind = \"linux\"\ntimeout_ms = 6553501\n",
            "watchdog.timeout_ms",
            9,
        ),
    ];
    for (body, key, line) in cases {
        let e = parse(&format!("{MINIMAL}[watchdog]\n{body}")).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { key: k, line: l, .. } if *k == key && *l == line),
            "{body}: {e}"
        );
        assert!(
            e.to_string()
                .starts_with(&format!("agent.toml:{line}: key `{key}`")),
            "{e}"
        );
    }
    // Exactly three intervals is enough; the bound follows heartbeat_ms.
    assert!(parse(&format!(
        "{MINIMAL}[watchdog]\nkind = \"linux\"\ntimeout_ms = 600\n"
    ))
    .is_ok());
    let slow =
        format!("heartbeat_ms = 1000\n{MINIMAL}[watchdog]\nkind = \"linux\"\ntimeout_ms = 2999\n");
    assert!(parse(&slow).is_err());
    // Unknown keys and a missing kind are refused with a line.
    for body in ["kind = \"linux\"\nperiod = 3\n", "timeout_ms = 5000\n"] {
        let e = parse(&format!("{MINIMAL}[watchdog]\n{body}")).unwrap_err();
        assert!(
            matches!(e, ConfigError::Parse { line, .. } if line >= 7),
            "{e}"
        );
    }
}
