//! The blade's fence, in `<state>/fenced.json`: once this blade fenced itself it starts
//! nothing until it reboots, also across an agent restart. The record carries the kernel's
//! boot id (`/proc/sys/kernel/random/boot_id`, new at every boot): a fence recorded under the
//! current boot id is still in force; one of another boot was ended by the reboot.
//!
//! What cannot be read counts as in force: an unreadable record, or a boot id that could not
//! be read (when the fence was recorded or now), keeps the blade fenced (the log names the
//! file to remove by hand once the blade is known to have been reset).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::write_atomic;

/// File name under the state directory.
pub const FILE: &str = "fenced.json";
/// Where the kernel tells its boot id.
pub const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";
/// File format version.
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Data {
    version: u32,
    /// The boot id the fence was recorded under (`None`: could not be read).
    boot_id: Option<String>,
    /// The order that fenced the blade (journal key).
    order: String,
}

/// The boot id read from `file` (trimmed), `None` when it cannot be read or is empty.
pub fn boot_id(file: &Path) -> Option<String> {
    match std::fs::read_to_string(file) {
        Ok(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Ok(_) => {
            log::error!("{}: empty boot id", file.display());
            None
        }
        Err(e) => {
            log::error!("{}: cannot read the boot id: {e}", file.display());
            None
        }
    }
}

/// Records that this blade fenced itself on `order` under `boot_id`, atomically.
pub fn save(state_dir: &Path, boot_id: Option<&str>, order: &str) -> std::io::Result<()> {
    let data = Data {
        version: VERSION,
        boot_id: boot_id.map(str::to_owned),
        order: order.to_owned(),
    };
    let bytes = serde_json::to_vec(&data).map_err(std::io::Error::other)?;
    write_atomic(&state_dir.join(FILE), &bytes)
}

/// Whether a fence recorded under `state_dir` is in force for the boot `current`: `Some(why)`
/// when it is (recorded under this boot, or not decidable), `None` when there is none or it
/// was recorded under another boot (the reboot ended it).
pub fn in_force(state_dir: &Path, current: Option<&str>) -> Option<String> {
    let path = state_dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            return Some(format!(
                "{}: unreadable ({e}): counted in force",
                path.display()
            ))
        }
    };
    let data = match serde_json::from_slice::<Data>(&bytes) {
        Ok(d) if d.version == VERSION => d,
        Ok(d) => {
            return Some(format!(
                "{}: unknown version {}: counted in force",
                path.display(),
                d.version
            ))
        }
        Err(e) => {
            return Some(format!(
                "{}: unreadable ({e}): counted in force",
                path.display()
            ))
        }
    };
    match (data.boot_id.as_deref(), current) {
        (Some(then), Some(now)) if then == now => Some(format!(
            "{} fenced this blade in this boot ({now})",
            data.order
        )),
        (Some(then), Some(now)) => {
            log::info!(
                "{}: the fence of {} (boot {then}) ended with the reboot (boot {now})",
                path.display(),
                data.order
            );
            None
        }
        _ => Some(format!(
            "{} fenced this blade and the boot id is not known (then {:?}, now {current:?}): \
             counted in force until {} is removed",
            data.order,
            data.boot_id,
            path.display()
        )),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_in_force_in_the_same_boot_only() {
        let dir = crate::testutil::TempDir::new("fenced");
        assert_eq!(in_force(dir.path(), Some("b1")), None, "nothing recorded");
        save(dir.path(), Some("b1"), "fence-self/1").unwrap();
        assert!(in_force(dir.path(), Some("b1")).is_some());
        assert_eq!(in_force(dir.path(), Some("b2")), None, "a reboot ends it");
        assert!(
            in_force(dir.path(), None).is_some(),
            "boot id unknown now: in force"
        );
        save(dir.path(), None, "fence-self/2").unwrap();
        assert!(in_force(dir.path(), Some("b2")).is_some(), "unknown then");
        std::fs::write(dir.path().join(FILE), b"{garbage").unwrap();
        assert!(in_force(dir.path(), Some("b2")).is_some(), "unreadable");
    }

    #[test]
    fn test_boot_id_of_this_kernel() {
        let id = boot_id(Path::new(BOOT_ID_FILE)).expect("Linux boot id");
        assert_eq!(id.len(), 36, "{id}");
        let dir = crate::testutil::TempDir::new("bootid");
        let f = dir.path().join("boot_id");
        std::fs::write(&f, "\n").unwrap();
        assert_eq!(boot_id(&f), None);
        assert_eq!(boot_id(&dir.path().join("none")), None);
    }
}
