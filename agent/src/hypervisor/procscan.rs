//! This blade's QEMU processes, read from the process table without the hypervisor daemon:
//! the reading a fence relies on when libvirt does not answer.
//!
//! A QEMU process is one whose command line carries QEMU's `-name` option naming a guest
//! (libvirt writes `-name guest=NAME,debug-threads=on`; a comma in NAME is doubled). The scan
//! reads every `/proc/<pid>` entry; it succeeds only if the whole table could be read (pid 1
//! visible, every directory listed, every command line read or its process seen gone), so an
//! empty successful scan is a positive reading that no QEMU of this blade runs. Zombies do not
//! count: a SIGKILLed QEMU whose parent has not reaped it runs no guest.
//!
//! Blades sharing one kernel (containers, or the test rig's two libvirtd in private mount
//! namespaces) are told apart by the mount namespace: a process in the agent's own mount
//! namespace is this blade's; one in another namespace is this blade's when its view of
//! libvirt's run directory ([`DEFAULT_QEMU_RUN_DIR`] through `/proc/<pid>/root`) is the agent's
//! `qemu_run_dir`, or when that cannot be read (what cannot be told apart counts as ours).

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::DEFAULT_QEMU_RUN_DIR;

/// One live QEMU process of this blade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuProcess {
    /// Process id.
    pub pid: i32,
    /// The guest its `-name` option names.
    pub guest: String,
}

/// The guest a process's NUL-separated command line names with QEMU's `-name` option
/// (`guest=NAME,...` or the implied form `NAME,...`; `,,` is a literal comma).
pub fn guest_of(cmdline: &[u8]) -> Option<String> {
    let mut args = cmdline.split(|&b| b == 0);
    while let Some(arg) = args.next() {
        if arg != b"-name" && arg != b"--name" {
            continue;
        }
        let opts = String::from_utf8_lossy(args.next()?).into_owned();
        for (i, item) in split_opts(&opts).into_iter().enumerate() {
            match item.split_once('=') {
                Some(("guest", v)) => return Some(v.to_owned()).filter(|v| !v.is_empty()),
                None if i == 0 => return Some(item).filter(|v| !v.is_empty()),
                _ => {}
            }
        }
        return None;
    }
    None
}

/// QEMU option syntax: items separated by `,`; `,,` stands for one `,` inside an item.
fn split_opts(s: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                if let Some(i) = items.last_mut() {
                    i.push(',');
                }
            } else {
                items.push(String::new());
            }
        } else if let Some(i) = items.last_mut() {
            i.push(c);
        }
    }
    items
}

/// Whether a read error means the process is gone (it exited while the table was read).
fn gone(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(nix::errno::Errno::ESRCH as i32)
}

/// Why the process table could not be read completely (the caller then knows nothing).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// pid 1 is not visible: not the whole table (another PID namespace, hidepid).
    #[error("{}: pid 1 not visible: the process table cannot be read completely", root.display())]
    Incomplete {
        /// The table's root (`/proc`).
        root: PathBuf,
    },
    /// A part of the table could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The reading did not complete within its deadline (a process stuck in the kernel can
    /// block a reader of its command line).
    #[error("process table not read within {within_ms} ms")]
    NoAnswer {
        /// The deadline.
        within_ms: u64,
    },
    /// No thread could be started for the reading.
    #[error("process table: no thread: {0}")]
    NoThread(#[source] std::io::Error),
}

/// Reads the process table under `proc_root` (`/proc`) and returns this blade's live QEMU
/// processes; `run_dir` is the agent's `qemu_run_dir`. Err (with why) when any part of the
/// table could not be read: the caller then knows nothing.
pub fn scan(proc_root: &Path, run_dir: &Path) -> Result<Vec<QemuProcess>, ScanError> {
    let fail = |what: &Path, source: std::io::Error| ScanError::Read {
        path: what.to_owned(),
        source,
    };
    if !proc_root.join("1").is_dir() {
        return Err(ScanError::Incomplete {
            root: proc_root.to_owned(),
        });
    }
    let own_ns = std::fs::read_link(proc_root.join("self/ns/mnt")).ok();
    let run_dir_id = std::fs::metadata(run_dir).ok().map(|m| (m.dev(), m.ino()));
    let mut found = Vec::new();
    let entries = std::fs::read_dir(proc_root).map_err(|e| fail(proc_root, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| fail(proc_root, e))?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let cmdline = match read_cmdline(&dir) {
            Ok(c) => c,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(fail(&dir.join("cmdline"), e)),
        };
        let Some(guest) = guest_of(&cmdline) else {
            continue;
        };
        match std::fs::read_to_string(dir.join("stat")) {
            Ok(stat) => {
                let state = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.trim_start().chars().next());
                if matches!(state, Some('Z' | 'X')) {
                    continue;
                }
            }
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(fail(&dir.join("stat"), e)),
        }
        if !ours(&dir, own_ns.as_deref(), run_dir_id) {
            log::debug!("pid {pid} (QEMU of `{guest}`) belongs to another blade on this host");
            continue;
        }
        found.push(QemuProcess { pid, guest });
    }
    found.sort_by_key(|p| p.pid);
    Ok(found)
}

/// A process's command line. It reads empty for kernel threads, zombies, and for a moment
/// while a process executes a new program (libvirt's child becoming QEMU): an empty one is
/// read again a few times before the process is passed over.
fn read_cmdline(dir: &Path) -> std::io::Result<Vec<u8>> {
    const TRIES: u32 = 5;
    let mut tries = 0;
    loop {
        let c = std::fs::read(dir.join("cmdline"))?;
        tries += 1;
        if !c.is_empty() || tries >= TRIES || kernel_thread(dir) {
            return Ok(c);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Whether `/proc/<pid>` is a kernel thread (PF_KTHREAD in its `stat` flags) or a zombie.
fn kernel_thread(dir: &Path) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    std::fs::read_to_string(dir.join("stat")).is_ok_and(|stat| {
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // After the comm: state (0), ..., flags (6).
        matches!(fields.first(), Some(&"Z" | &"X"))
            || fields
                .get(6)
                .and_then(|f| f.parse::<u64>().ok())
                .is_some_and(|f| f & PF_KTHREAD != 0)
    })
}

/// Whether the process at `/proc/<pid>` (`dir`) is this blade's (see the module comment).
fn ours(dir: &Path, own_ns: Option<&Path>, run_dir_id: Option<(u64, u64)>) -> bool {
    let (Some(own_ns), Some(run_dir_id)) = (own_ns, run_dir_id) else {
        return true;
    };
    match std::fs::read_link(dir.join("ns/mnt")) {
        Ok(ns) if ns == own_ns => return true,
        Ok(_) => {}
        Err(_) => return true,
    }
    let view = dir
        .join("root")
        .join(DEFAULT_QEMU_RUN_DIR.trim_start_matches('/'));
    match std::fs::metadata(view) {
        Ok(m) => (m.dev(), m.ino()) == run_dir_id,
        Err(_) => true,
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn cmdline(args: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for a in args {
            v.extend_from_slice(a.as_bytes());
            v.push(0);
        }
        v
    }

    #[test]
    fn test_guest_of_libvirt_and_implied_forms() {
        let libvirt = cmdline(&[
            "/usr/bin/qemu-system-x86_64",
            "-name",
            "guest=db,debug-threads=on",
            "-S",
        ]);
        assert_eq!(guest_of(&libvirt).as_deref(), Some("db"));
        let commas = cmdline(&["qemu", "-name", "guest=a,,b,,,debug-threads=on"]);
        assert_eq!(guest_of(&commas).as_deref(), Some("a,b,"));
        let implied = cmdline(&["qemu-kvm", "-name", "web,process=qemu:web"]);
        assert_eq!(guest_of(&implied).as_deref(), Some("web"));
        let later = cmdline(&["qemu", "-name", "debug-threads=on,guest=x"]);
        assert_eq!(guest_of(&later).as_deref(), Some("x"));
        assert_eq!(guest_of(&cmdline(&["sleep", "60"])), None);
        assert_eq!(guest_of(&cmdline(&["qemu", "-name"])), None);
        assert_eq!(guest_of(b""), None);
        // "guest=db" elsewhere on the line is not a name.
        assert_eq!(guest_of(&cmdline(&["grep", "guest=db"])), None);
    }

    /// A process whose command line carries `-name guest=NAME`: `sh -s` waiting on its stdin.
    pub(crate) fn fake_qemu(name_opt: &str) -> (std::process::Child, std::process::ChildStdin) {
        let mut child = Command::new("sh")
            .args(["-s", "--", "-name", name_opt])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        (child, stdin)
    }

    #[test]
    fn test_scan_finds_a_live_process_and_not_a_zombie() {
        let run_dir = crate::testutil::TempDir::new("scan-run");
        let (mut child, mut stdin) = fake_qemu("guest=scan,,probe,debug-threads=on");
        let pid = child.id() as i32;
        let procs = scan(Path::new("/proc"), run_dir.path()).unwrap();
        assert!(
            procs.contains(&QemuProcess {
                pid,
                guest: "scan,probe".into()
            }),
            "found right after its exec: {procs:?}"
        );
        // Exited but not reaped: a zombie runs no guest.
        stdin.write_all(b"exit 0\n").unwrap();
        drop(stdin);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while scan(Path::new("/proc"), run_dir.path())
            .unwrap()
            .iter()
            .any(|p| p.pid == pid)
        {
            assert!(std::time::Instant::now() < deadline, "zombie still listed");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.wait().unwrap();
    }

    #[test]
    fn test_scan_of_an_unreadable_table_fails() {
        let fake = crate::testutil::TempDir::new("scan-proc");
        // No pid 1: not the whole table.
        let e = scan(fake.path(), fake.path()).unwrap_err();
        assert!(matches!(e, ScanError::Incomplete { .. }), "{e}");
        assert!(e.to_string().contains("pid 1"), "{e}");
        std::fs::create_dir(fake.path().join("1")).unwrap();
        std::fs::write(fake.path().join("1/cmdline"), b"init\0").unwrap();
        std::fs::write(fake.path().join("1/stat"), b"1 (init) S 0").unwrap();
        std::fs::create_dir(fake.path().join("77")).unwrap();
        std::fs::write(
            fake.path().join("77/cmdline"),
            cmdline(&["q", "-name", "guest=g"]),
        )
        .unwrap();
        std::fs::write(fake.path().join("77/stat"), b"77 (q) S 1").unwrap();
        assert_eq!(
            scan(fake.path(), fake.path()).unwrap(),
            vec![QemuProcess {
                pid: 77,
                guest: "g".into()
            }]
        );
        // A command line that exists but cannot be read: the scan knows nothing.
        std::fs::create_dir(fake.path().join("78")).unwrap();
        std::fs::create_dir(fake.path().join("78/cmdline")).unwrap();
        assert!(scan(fake.path(), fake.path()).is_err());
    }
}
