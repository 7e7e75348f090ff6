//! `blade-agent run` and its hardware watchdog seen from outside: SIGTERM stops it cleanly
//! (exit 0), and a watchdog whose ShMC never acknowledged the stop stays armed; a watchdog
//! device that is not one is a start error naming it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp(tag: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("blade-agent-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// A configuration for `test:///default` with a watchdog of `kind` on `device`; nobody
/// listens at the ShMC's and the partner's addresses.
fn config(dir: &Path, kind: &str, device: &Path) -> PathBuf {
    let key = dir.join("shelf.key");
    shelfha_proto::write_key_file(&key, &shelfha_proto::generate_key().unwrap()).unwrap();
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "slot = 1\nshmc = \"127.0.0.1:9\"\nlisten = \"127.0.0.1:0\"\nlibvirt_uri = \"test:///default\"\n\
             key_file = \"{}\"\nstate_dir = \"{}\"\nheartbeat_ms = 50\n\
             [partner]\nslot = 2\naddress = \"127.0.0.1:9\"\n\
             [watchdog]\nkind = \"{kind}\"\ndevice = \"{}\"\ntimeout_ms = 1000\n",
            key.display(),
            dir.join("state").display(),
            device.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn test_sigterm_stops_the_agent_and_leaves_an_unacknowledged_watchdog_armed() {
    let dir = temp("sigterm");
    let pet = dir.0.join("watchdog");
    let cfg = config(&dir.0, "pet-file", &pet);
    let mut child = Command::new(env!("CARGO_BIN_EXE_blade-agent"))
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&pet).is_ok_and(|c| c.starts_with("armed 1000 ")) {
        assert!(Instant::now() < deadline, "the watchdog was never armed");
        assert!(child.try_wait().unwrap().is_none(), "the agent exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let out = child.wait_with_output().unwrap();
    // The logger writes to stdout, errors before it to stderr.
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("stopped {} ms after SIGTERM", t.elapsed().as_millis());
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("SIGTERM: stopping"), "{log}");
    // Nobody heard the agent: the pet file was never petted past its arming, and the ShMC
    // never acknowledged the stop, so the watchdog stays armed.
    assert_eq!(std::fs::read_to_string(&pet).unwrap(), "armed 1000 1\n");
    assert!(log.contains("left armed"), "{log}");
}

#[test]
fn test_a_watchdog_device_that_is_not_one_is_a_start_error() {
    let dir = temp("notwd");
    let plain = dir.0.join("plain");
    std::fs::write(&plain, "").unwrap();
    let cfg = config(&dir.0, "linux", &plain);
    let out = Command::new(env!("CARGO_BIN_EXE_blade-agent"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "watchdog {}: not a character device",
            plain.display()
        )),
        "{log}"
    );
}
