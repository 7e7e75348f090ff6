//! Agent configuration: one TOML file (`/etc/blade-agent/agent.toml`), every key documented in
//! `debian/agent.toml`. Unknown keys are errors; every error names the file and, where the
//! parser knows it, the line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default libvirt connection URI.
pub const DEFAULT_LIBVIRT_URI: &str = "qemu:///system";
/// Default state directory (journal, partner definitions).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/blade-agent";
/// Default directory where libvirt's QEMU driver writes `<name>.pid`.
pub const DEFAULT_QEMU_RUN_DIR: &str = "/run/libvirt/qemu";
/// Default key file (32-byte pre-shared shelf key).
pub const DEFAULT_KEY_FILE: &str = "/etc/blade-agent/shelf.key";
/// Default heartbeat interval.
pub const DEFAULT_HEARTBEAT_MS: u64 = 200;
/// Default time libvirt gets to destroy a guest during FenceSelf before QEMU is killed directly.
pub const DEFAULT_FENCE_TIMEOUT_MS: u64 = 500;
/// Default time a guest gets to shut down gracefully during an evacuation before it is destroyed.
pub const DEFAULT_EVACUATE_TIMEOUT_MS: u64 = 30_000;
/// Default number of guests started at once during a takeover.
pub const DEFAULT_START_WORKERS: usize = 4;
/// Default deadline of one guest's start on a failover path (its libvirt define, start or
/// resume); past it the guest is reported failed (timeout) and the next one starts.
pub const DEFAULT_START_TIMEOUT_MS: u64 = 30_000;
/// Accepted range of `start_timeout_ms`.
pub const START_TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 500..=600_000;
/// Default memory (KiB) kept free on the host when deciding whether a partner guest fits.
pub const DEFAULT_MEMORY_RESERVE_KIB: u64 = 0;
/// Default number of live migrations run at once on Evacuate / Migrate.
pub const DEFAULT_MIGRATION_WORKERS: usize = 2;
/// Default time one live migration may take before its job is aborted.
pub const DEFAULT_MIGRATION_TIMEOUT_MS: u64 = 60_000;
/// Default `[guests] allowed_storage_paths`: the directory prefixes a partner guest's disks and
/// other host files (kernel, loader, NVRAM...) may lie under (libvirt's default image pool).
pub const DEFAULT_ALLOWED_STORAGE_PATHS: &[&str] = &["/var/lib/libvirt/images"];
/// Default `[guests] allowed_emulators`: the binaries a partner guest's `<emulator>` may name
/// (the QEMU of Debian and Ubuntu, `/usr/bin/kvm` there, and RHEL's `qemu-kvm`).
pub const DEFAULT_ALLOWED_EMULATORS: &[&str] = &[
    "/usr/bin/qemu-system-x86_64",
    "/usr/bin/kvm",
    "/usr/libexec/qemu-kvm",
    "/usr/bin/qemu-kvm",
];
/// Default `[watchdog] timeout_ms`.
pub const DEFAULT_WATCHDOG_TIMEOUT_MS: u32 = 10_000;
/// Longest `[watchdog] timeout_ms`: the longest countdown of an IPMI watchdog (16 bits of
/// 100 ms); the ShMC refuses a longer announced watchdog.
pub const MAX_WATCHDOG_TIMEOUT_MS: u32 = 6_553_500;
/// Default `[watchdog] device` of kind `linux`.
pub const DEFAULT_WATCHDOG_DEVICE: &str = "/dev/watchdog";

/// Largest accepted slot number (ATCA shelves have at most 16 logical slots).
pub const MAX_SLOT: u8 = 16;

/// A configuration error; the message names the file and the line or key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key, or wrong type.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// 1-based line (0 when the parser gave no position).
        line: usize,
        /// Parser message.
        message: String,
    },
    /// A value is well-formed but not acceptable.
    #[error("{path}:{line}: key `{key}`: {message}")]
    Invalid {
        /// File path.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// Offending key.
        key: &'static str,
        /// Why it was refused.
        message: String,
    },
}

/// Which local domains the agent protects (fences, reports, pushes to its partner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// Every persistent domain.
    AllPersistent,
    /// Exactly the named domains.
    List(Vec<String>),
    /// Persistent domains carrying the agent's metadata element (see [`crate::hypervisor::METADATA_URI`]).
    Metadata,
}

impl Protection {
    /// Whether a domain with this name, persistence and metadata flag is protected.
    pub fn covers(&self, name: &str, persistent: bool, flagged: bool) -> bool {
        match self {
            Protection::AllPersistent => persistent,
            Protection::List(names) => names.iter().any(|n| n == name),
            Protection::Metadata => persistent && flagged,
        }
    }
}

/// The partner blade: the one whose guests this agent restarts, and that restarts ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    /// Partner's slot.
    pub slot: u8,
    /// Partner agent's UDP address.
    pub address: SocketAddr,
    /// The partner's libvirt URI as this blade's libvirtd reaches it (peer-to-peer live
    /// migration on Evacuate); `None`: Evacuate stops the guests instead.
    pub libvirt_uri: Option<String>,
    /// Address for the migration data stream (libvirt `migrateuri`, e.g. `tcp://10.0.0.12`).
    pub migration_uri: Option<String>,
}

/// Live migration and warm standby settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZeroDowntime {
    /// Live migrations run at once (1..=16); one when `partner.migration_uri` names a port
    /// (see [`ZeroDowntime::effective_workers`]).
    pub migration_workers: usize,
    /// Per-guest migration timeout: the job is aborted, then (Evacuate) the guest is stopped
    /// and restarted on the partner after the fence, or (Migrate) it keeps running here.
    pub migration_timeout: Duration,
    /// Guests the partner keeps defined and started paused (warm standby).
    pub warm_standby: Vec<String>,
}

impl ZeroDowntime {
    /// Migrations that may run at once with this partner: one when `migration_uri` names a
    /// port (parallel incoming migrations would collide on it: "Address already in use").
    pub fn effective_workers(&self, partner: &Partner) -> usize {
        if partner
            .migration_uri
            .as_deref()
            .and_then(explicit_port)
            .is_some()
        {
            1
        } else {
            self.migration_workers.max(1)
        }
    }
}

impl Default for ZeroDowntime {
    fn default() -> Self {
        ZeroDowntime {
            migration_workers: DEFAULT_MIGRATION_WORKERS,
            migration_timeout: Duration::from_millis(DEFAULT_MIGRATION_TIMEOUT_MS),
            warm_standby: Vec::new(),
        }
    }
}

/// Which watchdog backend `[watchdog] kind` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchdogKind {
    /// `"linux"`: a Linux watchdog device.
    Linux,
    /// `"pet-file"`: a file a watcher outside the agent checks (tests and rigs only).
    PetFile,
}

/// The blade's hardware watchdog (`[watchdog]`; absent: none is armed or announced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchdogConfig {
    /// Backend.
    pub kind: WatchdogKind,
    /// The device (`linux`) or the pet file (`pet-file`).
    pub device: PathBuf,
    /// Countdown asked for, in ms (a Linux device rounds it up to whole seconds).
    pub timeout_ms: u32,
}

/// Validated agent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This blade's slot.
    pub slot: u8,
    /// ShMC's UDP address.
    pub shmc: SocketAddr,
    /// Local UDP address the agent listens on.
    pub listen: SocketAddr,
    /// The partner blade.
    pub partner: Partner,
    /// libvirt URI.
    pub libvirt_uri: String,
    /// Pre-shared shelf key file.
    pub key_file: PathBuf,
    /// State directory.
    pub state_dir: PathBuf,
    /// QEMU pid-file directory.
    pub qemu_run_dir: PathBuf,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Per-guest libvirt destroy timeout during FenceSelf.
    pub fence_timeout: Duration,
    /// Graceful shutdown timeout during an evacuation.
    pub evacuate_timeout: Duration,
    /// Guests started at once during a takeover (at least 1).
    pub start_workers: usize,
    /// Deadline of one guest's start (libvirt define, start, resume; a crashed guest's
    /// destroy before its restart): past it the guest is reported failed with a timeout.
    /// Also the age past which an unfinished order that starts guests, accepted by an earlier
    /// agent process in this boot, is abandoned instead of resumed.
    pub start_timeout: Duration,
    /// Memory (KiB) kept free when deciding whether a guest fits.
    pub memory_reserve_kib: u64,
    /// Protected-guest selection.
    pub protection: Protection,
    /// Restart priority of guests not named in `priorities`.
    pub default_priority: u32,
    /// Per-guest restart priority (higher starts first).
    pub priorities: BTreeMap<String, u32>,
    /// Live migration and warm standby.
    pub zero_downtime: ZeroDowntime,
    /// Directory prefixes (absolute, no `..`) a partner definition's disks and other host
    /// files must lie under (`[guests] allowed_storage_paths`); see [`crate::policy`].
    pub allowed_storage_paths: Vec<PathBuf>,
    /// Binaries (absolute, no `..`) a partner definition's `<emulator>` may name
    /// (`[guests] allowed_emulators`); see [`crate::policy`].
    pub allowed_emulators: Vec<PathBuf>,
    /// Whether a partner definition may have network disks (`[guests] allow_network_disks`,
    /// default false); see [`crate::policy`].
    pub allow_network_disks: bool,
    /// The hardware watchdog the agent arms, if any.
    pub watchdog: Option<WatchdogConfig>,
}

impl Config {
    /// Restart priority of a guest.
    pub fn priority_of(&self, name: &str) -> u32 {
        self.priorities
            .get(name)
            .copied()
            .unwrap_or(self.default_priority)
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(0),
            message: e.message().trim().to_owned(),
        })?;
        let invalid = |key: &'static str, span: std::ops::Range<usize>, message: String| {
            ConfigError::Invalid {
                path: path.to_owned(),
                line: line_of(text, span.start),
                key,
                message,
            }
        };
        let slot = *raw.slot.get_ref();
        if slot == 0 || slot > MAX_SLOT {
            return Err(invalid(
                "slot",
                raw.slot.span(),
                format!("{slot} is not in 1..={MAX_SLOT}"),
            ));
        }
        let pslot = *raw.partner.slot.get_ref();
        if pslot == 0 || pslot > MAX_SLOT || pslot == slot {
            return Err(invalid(
                "partner.slot",
                raw.partner.slot.span(),
                format!("{pslot} must be in 1..={MAX_SLOT} and differ from slot {slot}"),
            ));
        }
        let heartbeat_ms = raw
            .heartbeat_ms
            .as_ref()
            .map(|v| *v.get_ref())
            .unwrap_or(DEFAULT_HEARTBEAT_MS);
        if !(10..=10_000).contains(&heartbeat_ms) {
            let span = raw.heartbeat_ms.as_ref().map(|v| v.span()).unwrap_or(0..0);
            return Err(invalid(
                "heartbeat_ms",
                span,
                format!("{heartbeat_ms} is not in 10..=10000"),
            ));
        }
        let start_workers = raw
            .start_workers
            .as_ref()
            .map(|v| *v.get_ref())
            .unwrap_or(DEFAULT_START_WORKERS);
        if !(1..=64).contains(&start_workers) {
            let span = raw.start_workers.as_ref().map(|v| v.span()).unwrap_or(0..0);
            return Err(invalid(
                "start_workers",
                span,
                format!("{start_workers} is not in 1..=64"),
            ));
        }
        let start_timeout_ms = raw
            .start_timeout_ms
            .as_ref()
            .map(|v| *v.get_ref())
            .unwrap_or(DEFAULT_START_TIMEOUT_MS);
        if !START_TIMEOUT_RANGE_MS.contains(&start_timeout_ms) {
            let span = raw
                .start_timeout_ms
                .as_ref()
                .map(|v| v.span())
                .unwrap_or(0..0);
            return Err(invalid(
                "start_timeout_ms",
                span,
                format!(
                    "{start_timeout_ms} is not in {}..={} (milliseconds)",
                    START_TIMEOUT_RANGE_MS.start(),
                    START_TIMEOUT_RANGE_MS.end()
                ),
            ));
        }
        let migration_workers = raw
            .migration_workers
            .as_ref()
            .map(|v| *v.get_ref())
            .unwrap_or(DEFAULT_MIGRATION_WORKERS);
        if !(1..=16).contains(&migration_workers) {
            let span = raw
                .migration_workers
                .as_ref()
                .map(|v| v.span())
                .unwrap_or(0..0);
            return Err(invalid(
                "migration_workers",
                span,
                format!("{migration_workers} is not in 1..=16"),
            ));
        }
        let migration_timeout_ms = raw
            .migration_timeout_ms
            .as_ref()
            .map(|v| *v.get_ref())
            .unwrap_or(DEFAULT_MIGRATION_TIMEOUT_MS);
        if migration_timeout_ms == 0 {
            let span = raw
                .migration_timeout_ms
                .as_ref()
                .map(|v| v.span())
                .unwrap_or(0..0);
            return Err(invalid(
                "migration_timeout_ms",
                span,
                "must be greater than zero".to_owned(),
            ));
        }
        let guests = raw.guests.unwrap_or_default();
        let warm_standby = match guests.warm_standby {
            None => Vec::new(),
            Some(list) => {
                if let Some(bad) = list
                    .get_ref()
                    .iter()
                    .find(|n| n.is_empty() || n.contains('/'))
                {
                    return Err(invalid(
                        "guests.warm_standby",
                        list.span(),
                        format!("`{bad}` is not a valid domain name"),
                    ));
                }
                list.into_inner()
            }
        };
        // A list of absolute paths (each checked), or the default when the key is absent.
        let path_list = |key: &'static str,
                         value: Option<toml::Spanned<Vec<String>>>,
                         default: &[&str],
                         what: &str|
         -> Result<Vec<PathBuf>, ConfigError> {
            let Some(list) = value else {
                return Ok(default.iter().map(PathBuf::from).collect());
            };
            if let Some(bad) = list
                .get_ref()
                .iter()
                .find(|p| !crate::policy::valid_prefix(p))
            {
                return Err(invalid(
                    key,
                    list.span(),
                    format!("`{bad}` is not an absolute {what} without `.` or `..` components"),
                ));
            }
            Ok(list.into_inner().into_iter().map(PathBuf::from).collect())
        };
        let allowed_storage_paths = path_list(
            "guests.allowed_storage_paths",
            guests.allowed_storage_paths,
            DEFAULT_ALLOWED_STORAGE_PATHS,
            "directory path",
        )?;
        let allowed_emulators = path_list(
            "guests.allowed_emulators",
            guests.allowed_emulators,
            DEFAULT_ALLOWED_EMULATORS,
            "path",
        )?;
        let protection = match guests.protected {
            None => Protection::AllPersistent,
            Some(spec) => {
                let span = spec.span();
                match spec.into_inner() {
                    RawProtected::Mode(m) if m == "all" => Protection::AllPersistent,
                    RawProtected::Mode(m) if m == "metadata" => Protection::Metadata,
                    RawProtected::Mode(m) => {
                        return Err(invalid(
                            "guests.protected",
                            span,
                            format!(
                                "`{m}`: expected \"all\", \"metadata\" or a list of domain names"
                            ),
                        ))
                    }
                    RawProtected::List(names) => {
                        if let Some(bad) = names.iter().find(|n| n.is_empty() || n.contains('/')) {
                            return Err(invalid(
                                "guests.protected",
                                span,
                                format!("`{bad}` is not a valid domain name"),
                            ));
                        }
                        Protection::List(names)
                    }
                }
            }
        };
        let watchdog = match raw.watchdog {
            None => None,
            Some(w) => Some(watchdog_config(w, heartbeat_ms, &invalid)?),
        };
        Ok(Config {
            slot,
            shmc: raw.shmc,
            listen: raw.listen,
            partner: Partner {
                slot: pslot,
                address: raw.partner.address,
                libvirt_uri: raw.partner.libvirt_uri,
                migration_uri: raw.partner.migration_uri,
            },
            libvirt_uri: raw
                .libvirt_uri
                .unwrap_or_else(|| DEFAULT_LIBVIRT_URI.to_owned()),
            key_file: raw
                .key_file
                .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_FILE)),
            state_dir: raw
                .state_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            qemu_run_dir: raw
                .qemu_run_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_QEMU_RUN_DIR)),
            heartbeat: Duration::from_millis(heartbeat_ms),
            fence_timeout: Duration::from_millis(
                raw.fence_timeout_ms.unwrap_or(DEFAULT_FENCE_TIMEOUT_MS),
            ),
            evacuate_timeout: Duration::from_millis(
                raw.evacuate_timeout_ms
                    .unwrap_or(DEFAULT_EVACUATE_TIMEOUT_MS),
            ),
            start_workers,
            start_timeout: Duration::from_millis(start_timeout_ms),
            memory_reserve_kib: raw.memory_reserve_kib.unwrap_or(DEFAULT_MEMORY_RESERVE_KIB),
            protection,
            default_priority: guests.default_priority.unwrap_or(0),
            priorities: guests.priority,
            zero_downtime: ZeroDowntime {
                migration_workers,
                migration_timeout: Duration::from_millis(migration_timeout_ms),
                warm_standby,
            },
            allowed_storage_paths,
            allowed_emulators,
            allow_network_disks: guests.allow_network_disks.unwrap_or(false),
            watchdog,
        })
    }
}

/// Checks `[watchdog]`: a known kind, a device where one is needed, and a timeout the
/// ShMC accepts and the petting rule can keep (at least three heartbeat intervals: the agent
/// pets only within two intervals of its latest proof of being heard).
fn watchdog_config(
    w: RawWatchdog,
    heartbeat_ms: u64,
    invalid: &dyn Fn(&'static str, std::ops::Range<usize>, String) -> ConfigError,
) -> Result<WatchdogConfig, ConfigError> {
    let kind_span = w.kind.span();
    let kind = match w.kind.get_ref().as_str() {
        "linux" => WatchdogKind::Linux,
        "pet-file" => WatchdogKind::PetFile,
        other => {
            return Err(invalid(
                "watchdog.kind",
                kind_span,
                format!("`{other}`: expected \"linux\" or \"pet-file\""),
            ))
        }
    };
    let device = match (w.device, kind) {
        (Some(d), _) => {
            if !d.get_ref().is_absolute() {
                return Err(invalid(
                    "watchdog.device",
                    d.span(),
                    format!("`{}` is not an absolute path", d.get_ref().display()),
                ));
            }
            d.into_inner()
        }
        (None, WatchdogKind::Linux) => PathBuf::from(DEFAULT_WATCHDOG_DEVICE),
        (None, WatchdogKind::PetFile) => {
            return Err(invalid(
                "watchdog.device",
                kind_span,
                "kind \"pet-file\" needs `device`, the pet file's path".to_owned(),
            ))
        }
    };
    let (timeout, span) = match w.timeout_ms {
        Some(t) => (*t.get_ref(), t.span()),
        None => (u64::from(DEFAULT_WATCHDOG_TIMEOUT_MS), kind_span),
    };
    let least = heartbeat_ms.saturating_mul(3);
    if timeout == 0 || timeout < least || timeout > u64::from(MAX_WATCHDOG_TIMEOUT_MS) {
        return Err(invalid(
            "watchdog.timeout_ms",
            span,
            format!(
                "{timeout} is not in {least}..={MAX_WATCHDOG_TIMEOUT_MS} (at least three heartbeat intervals of {heartbeat_ms} ms, at most the longest IPMI watchdog countdown)"
            ),
        ));
    }
    Ok(WatchdogConfig {
        kind,
        device,
        timeout_ms: u32::try_from(timeout).unwrap_or(MAX_WATCHDOG_TIMEOUT_MS),
    })
}

/// The port a `scheme://host:port[/...]` URI names explicitly, if any (IPv6 hosts in brackets).
pub fn explicit_port(uri: &str) -> Option<u16> {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let after_host = match authority.rfind(']') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    after_host
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    slot: toml::Spanned<u8>,
    shmc: SocketAddr,
    listen: SocketAddr,
    partner: RawPartner,
    libvirt_uri: Option<String>,
    key_file: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    qemu_run_dir: Option<PathBuf>,
    heartbeat_ms: Option<toml::Spanned<u64>>,
    fence_timeout_ms: Option<u64>,
    evacuate_timeout_ms: Option<u64>,
    start_workers: Option<toml::Spanned<usize>>,
    start_timeout_ms: Option<toml::Spanned<u64>>,
    memory_reserve_kib: Option<u64>,
    migration_workers: Option<toml::Spanned<usize>>,
    migration_timeout_ms: Option<toml::Spanned<u64>>,
    guests: Option<RawGuests>,
    watchdog: Option<RawWatchdog>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatchdog {
    kind: toml::Spanned<String>,
    device: Option<toml::Spanned<PathBuf>>,
    timeout_ms: Option<toml::Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartner {
    slot: toml::Spanned<u8>,
    address: SocketAddr,
    libvirt_uri: Option<String>,
    migration_uri: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGuests {
    protected: Option<toml::Spanned<RawProtected>>,
    default_priority: Option<u32>,
    #[serde(default)]
    priority: BTreeMap<String, u32>,
    warm_standby: Option<toml::Spanned<Vec<String>>>,
    allowed_storage_paths: Option<toml::Spanned<Vec<String>>>,
    allowed_emulators: Option<toml::Spanned<Vec<String>>>,
    allow_network_disks: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawProtected {
    Mode(String),
    List(Vec<String>),
}

#[cfg(test)]
mod test;
