//! The configuration file (TOML), loaded once at start.
//!
//! ```toml
//! [shelf]
//! own_address = 0x20              # 8-bit IPMB address of the ShMC
//! ipmb_device = "/dev/ipmb-0"     # message device, pty or FIFO
//! ipmb_mode = "auto"              # optional: "auto" | "message" | "stream"
//! listen = "0.0.0.0:7140"         # optional: UDP address for agent traffic
//! key_file = "/etc/shelfha/key"   # optional: shelf key for the agent link
//! sequence_file = "/var/lib/shelfha/sequence"  # optional: agent-link sequence reservation
//!
//! [timing]                        # optional, every key optional (see `config`)
//! probe_interval_ms = 500
//!
//! [predictive]                  # optional: predictive migration, off by default
//! enabled = false                 # decide `blade_degraded` (see `config`)
//! degraded_hold_ms = 30000        # non-critical threshold held this long
//!
//! [[blade]]
//! slot = 1
//! ipmb_address = 0x82
//! partner = 2
//! agent = "10.0.0.11:7140"        # optional: the blade agent's UDP address
//! hot_swap_sensor = 0             # optional: FRU 0 hot-swap sensor number
//!
//! [event_source]                  # optional: see `config::source` (default kind "ipmb")
//! kind = "rmcp"
//! ```
//!
//! `ipmb_mode = "auto"` treats a path starting with `/dev/ipmb-` as
//! message-oriented (one read() = one message, as `ipmb_dev_int` does) and
//! anything else (pty, FIFO, socket) as a byte stream that is re-framed.
//! Every error names the file and line: unknown keys, wrong types, out-of-range
//! numbers, duplicate slots or addresses, partners that are missing or not
//! mutual, and more blades than [`MAX_BLADES`]; `listen` without `key_file`;
//! timers that cannot work together and a shelf without blades
//! ([`ShelfConfig::check_workable`], the rules are listed in `config`), the
//! line being that of the key to change (or of `[shelf]` for "no blade").
//!
//! What a file must satisfy depends on its [`Use`]: [`Use::Run`] (`run` and
//! `check-config`, which apply exactly the same rules through [`load`])
//! also requires `ipmb_device` for the `ipmb` source, an event source that
//! is in this build (cargo features `rmcp`, `system`) and, with `listen`, a
//! usable key file (present, not accessible to group or others, random);
//! [`Use::Replay`] (`replay`) reads no device and no key, so it needs
//! neither. Loading never opens a device or a socket.
//!
//! The file is read by the plugin's own parser for the part of TOML used above
//! (module `config::toml_subset`, written for the firmware size budget): comments,
//! tables, `[[blade]]`, strings, integers (hex, `_`), booleans and arrays.
//! Floats, dates and times, multi-line strings, dotted keys and inline tables
//! are refused with the line named.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::source::{EventSource, RawEventSource};
use super::toml_subset::{self, At, Table};
use super::{BladeConfig, ConfigError, Predictive, ShelfConfig, Timing, Unworkable};
use crate::capacity::MAX_BLADES;
use crate::wire::addr::{IpmbAddr, Slot};

/// How the IPMB device delivers bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpmbMode {
    /// `/dev/ipmb-*` is a message device, anything else a stream.
    Auto,
    /// One read() returns one whole message.
    Message,
    /// A byte stream that is re-framed (pty, FIFO, socket).
    Stream,
}

/// Everything the `std` runtime needs: the core's config plus the edges.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The core's configuration (validated).
    pub shelf: ShelfConfig,
    /// Path of the IPMB device.
    pub ipmb_device: PathBuf,
    /// How the device delivers bytes (`Auto` resolved by [`HostConfig::stream_mode`]).
    pub ipmb_mode: IpmbMode,
    /// UDP address to listen on for agent traffic.
    pub listen: Option<SocketAddr>,
    /// Shelf key file for the agent link.
    pub key_file: Option<PathBuf>,
    /// Reservation file of the agent link's sequence numbers (`None`: the wall clock alone;
    /// agents then resynchronise a counter that went back through their challenges).
    pub sequence_file: Option<PathBuf>,
    /// Agent address per slot, in blade order.
    pub agents: Vec<(Slot, Option<SocketAddr>)>,
    /// Where events come from (`[event_source]`; `ipmb` when absent). With
    /// another source than `ipmb`, or loaded for [`Use::Replay`] without
    /// one, `ipmb_device` is empty and unused.
    pub source: EventSource,
}

impl HostConfig {
    /// Whether the IPMB device is read as a byte stream (true) or one message per read.
    pub fn stream_mode(&self) -> bool {
        match self.ipmb_mode {
            IpmbMode::Message => false,
            IpmbMode::Stream => true,
            IpmbMode::Auto => !self.ipmb_device.to_string_lossy().starts_with("/dev/ipmb-"),
        }
    }
}

/// What the configuration is loaded for: the rules that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// `run` and `check-config`: the event source's device and, with
    /// `listen`, the key file are required ([`load`] checks the key file).
    Run,
    /// `replay`: a capture is read instead of a device and no agent is
    /// heard, so neither `ipmb_device` nor the key file is required.
    Replay,
}

/// A configuration file that could not be used.
#[derive(Debug)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line of the offending text, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.path.display(), l, self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for FileError {}

/// The file's tables, typed; every value keeps its line.
struct RawFile<'a> {
    shelf: RawShelf,
    timing: Option<&'a Table>,
    blade: Vec<RawBlade>,
    event_source: Option<RawEventSource>,
    predictive: RawPredictive,
}

#[derive(Default)]
struct RawPredictive {
    enabled: Option<bool>,
    degraded_hold_ms: Option<At<u64>>,
}

struct RawShelf {
    /// Line of the `[shelf]` header.
    line: Option<usize>,
    own_address: At<u8>,
    ipmb_device: Option<String>,
    ipmb_mode: IpmbMode,
    listen: Option<At<String>>,
    key_file: Option<At<String>>,
    sequence_file: Option<PathBuf>,
}

struct RawBlade {
    /// Line of the `[[blade]]` header.
    line: usize,
    slot: At<u8>,
    ipmb_address: At<u8>,
    partner: At<u8>,
    agent: Option<At<String>>,
    hot_swap_sensor: Option<u8>,
}

/// Types the parsed document: unknown keys, wrong types, out-of-range
/// integers and missing required keys are errors naming their line.
fn raw_file(root: &Table) -> Result<RawFile<'_>, toml_subset::Error> {
    root.only(&["shelf", "timing", "blade", "event_source", "predictive"])?;
    let s = root.table("shelf")?.ok_or_else(|| root.missing("shelf"))?;
    s.only(&[
        "own_address",
        "ipmb_device",
        "ipmb_mode",
        "listen",
        "key_file",
        "sequence_file",
    ])?;
    let path = |key: &str| -> Result<Option<PathBuf>, toml_subset::Error> {
        Ok(s.string(key)?.map(|v| PathBuf::from(v.value)))
    };
    let shelf = RawShelf {
        line: s.line,
        own_address: s
            .int("own_address")?
            .ok_or_else(|| s.missing("own_address"))?,
        ipmb_device: s.string("ipmb_device")?.map(|v| v.value),
        ipmb_mode: match s.variant("ipmb_mode", &["auto", "message", "stream"])? {
            None => IpmbMode::Auto,
            Some(At { value: 0, .. }) => IpmbMode::Auto,
            Some(At { value: 1, .. }) => IpmbMode::Message,
            Some(_) => IpmbMode::Stream,
        },
        listen: s.string("listen")?,
        key_file: s.string("key_file")?,
        sequence_file: path("sequence_file")?,
    };
    let mut blade = Vec::new();
    for b in root.tables("blade")? {
        b.only(&[
            "slot",
            "ipmb_address",
            "partner",
            "agent",
            "hot_swap_sensor",
        ])?;
        blade.push(RawBlade {
            line: b.line.unwrap_or(0),
            slot: b.int("slot")?.ok_or_else(|| b.missing("slot"))?,
            ipmb_address: b
                .int("ipmb_address")?
                .ok_or_else(|| b.missing("ipmb_address"))?,
            partner: b.int("partner")?.ok_or_else(|| b.missing("partner"))?,
            agent: b.string("agent")?,
            hot_swap_sensor: b.int("hot_swap_sensor")?.map(|v| v.value),
        });
    }
    let predictive = match root.table("predictive")? {
        None => RawPredictive::default(),
        Some(p) => {
            p.only(&["enabled", "degraded_hold_ms"])?;
            RawPredictive {
                enabled: p.boolean("enabled")?.map(|v| v.value),
                degraded_hold_ms: p.int("degraded_hold_ms")?,
            }
        }
    };
    let event_source = match root.table("event_source")? {
        None => None,
        Some(t) => Some(RawEventSource::from_table(t)?),
    };
    Ok(RawFile {
        shelf,
        timing: root.table("timing")?,
        blade,
        event_source,
        predictive,
    })
}

/// Reads and validates the configuration file at `path` for `run` (and
/// `check-config`): every rule of [`parse`], and with `listen` the key file
/// must be usable (read, not kept). Opens no device and no socket.
pub fn load(path: &Path) -> Result<HostConfig, FileError> {
    load_for(path, Use::Run)
}

/// Reads and validates the configuration file at `path` for `what`.
pub fn load_for(path: &Path, what: Use) -> Result<HostConfig, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        path: path.to_path_buf(),
        line: None,
        message: format!("cannot read: {e}"),
    })?;
    let (cfg, key_line) = build(&text, path, what)?;
    if what == Use::Run && cfg.listen.is_some() {
        if let Some(key_file) = &cfg.key_file {
            if let Err(e) = shelfha_proto::load_key(key_file) {
                return Err(FileError {
                    path: path.to_path_buf(),
                    line: key_line,
                    message: format!("key_file: the shelf key cannot be used: {e}"),
                });
            }
        }
    }
    Ok(cfg)
}

/// Parses and validates configuration `text` with the rules of `run`, short
/// of reading the key file; `path` only names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<HostConfig, FileError> {
    parse_for(text, path, Use::Run)
}

/// Parses and validates configuration `text` for `what`, short of reading
/// the key file; `path` only names it in errors.
pub fn parse_for(text: &str, path: &Path, what: Use) -> Result<HostConfig, FileError> {
    build(text, path, what).map(|(cfg, _)| cfg)
}

/// The configuration and the line of `key_file`.
fn build(text: &str, path: &Path, what: Use) -> Result<(HostConfig, Option<usize>), FileError> {
    let err = |line: Option<usize>, message: String| FileError {
        path: path.to_path_buf(),
        line,
        message,
    };
    let typed = |e: toml_subset::Error| err(e.line, e.message);
    let root = toml_subset::parse(text).map_err(typed)?;
    let raw = raw_file(&root).map_err(typed)?;

    let mut timing = Timing::DEFAULT;
    let mut spans: Vec<(&'static str, usize)> = Vec::new();
    macro_rules! take {
        ($($key:ident),*) => {
            if let Some(t) = raw.timing {
                t.only(&[$(stringify!($key)),*]).map_err(typed)?;
                $(
                    if let Some(v) = t.int(stringify!($key)).map_err(typed)? {
                        timing.$key = v.value;
                        spans.push((stringify!($key), v.line));
                    }
                )*
            }
        };
    }
    take!(
        heartbeat_timeout_ms,
        probe_interval_ms,
        probe_timeout_ms,
        fence_step_deadline_ms,
        confirm_poll_ms,
        hypervisor_grace_ms,
        duplicate_window_ms,
        guest_restart_limit,
        guest_restart_window_ms,
        request_timeout_ms,
        request_retries,
        self_fence_deadline_ms,
        evacuation_timeout_ms,
        guest_fence_timeout_ms,
        failover_report_timeout_ms,
        agent_heartbeat_ms
    );

    if raw.blade.len() > MAX_BLADES {
        return Err(err(
            raw.blade.get(MAX_BLADES).map(|b| b.line),
            format!(
                "{} blades configured, at most {MAX_BLADES} are supported",
                raw.blade.len()
            ),
        ));
    }

    let mut shelf = ShelfConfig::new(IpmbAddr(raw.shelf.own_address.value));
    shelf.timing = timing;
    shelf.predictive = Predictive {
        enabled: raw.predictive.enabled.unwrap_or(false),
        degraded_hold_ms: raw
            .predictive
            .degraded_hold_ms
            .as_ref()
            .map_or(Predictive::DEFAULT.degraded_hold_ms, |v| v.value),
    };
    if let Some(v) = &raw.predictive.degraded_hold_ms {
        spans.push(("degraded_hold_ms", v.line));
    }
    let mut agents = Vec::new();
    for b in &raw.blade {
        let r = b;
        let agent = match &r.agent {
            None => None,
            Some(a) => Some(a.value.parse::<SocketAddr>().map_err(|e| {
                err(
                    Some(a.line),
                    format!("agent address {:?}: {e} (expected ip:port)", a.value),
                )
            })?),
        };
        agents.push((Slot(r.slot.value), agent));
        // Capacity was checked above, so the push cannot fail.
        let _ = shelf.blades.push(BladeConfig {
            slot: Slot(r.slot.value),
            ipmb_address: IpmbAddr(r.ipmb_address.value),
            partner: Slot(r.partner.value),
            hot_swap_sensor: r.hot_swap_sensor,
        });
    }
    let listen = match &raw.shelf.listen {
        None => None,
        Some(l) => Some(l.value.parse::<SocketAddr>().map_err(|e| {
            err(
                Some(l.line),
                format!("listen address {:?}: {e} (expected ip:port)", l.value),
            )
        })?),
    };

    if let Err(e) = shelf.validate() {
        let blade_span = |i: usize, f: fn(&RawBlade) -> usize| raw.blade.get(i).map(f);
        let (span, detail) = match e {
            ConfigError::TooManyBlades(i) => (raw.blade.get(i).map(|b| b.line), String::new()),
            ConfigError::BadSlot(i) => (
                blade_span(i, |b| b.slot.line),
                format!(" (slot {})", shelf.blades[i].slot),
            ),
            ConfigError::DuplicateSlot(i) => (
                blade_span(i, |b| b.slot.line),
                format!(" (slot {})", shelf.blades[i].slot),
            ),
            ConfigError::DuplicateAddress(i) => (
                blade_span(i, |b| b.ipmb_address.line),
                format!(
                    " (0x{:02x} in slot {})",
                    shelf.blades[i].ipmb_address, shelf.blades[i].slot
                ),
            ),
            ConfigError::BadAddress(i) => (
                blade_span(i, |b| b.ipmb_address.line),
                format!(
                    " (0x{:02x} in slot {})",
                    shelf.blades[i].ipmb_address, shelf.blades[i].slot
                ),
            ),
            ConfigError::PartnerNotConfigured(i)
            | ConfigError::PartnerNotMutual(i)
            | ConfigError::PartnerIsSelf(i) => (
                blade_span(i, |b| b.partner.line),
                format!(
                    " (slot {} names partner {})",
                    shelf.blades[i].slot, shelf.blades[i].partner
                ),
            ),
            ConfigError::GuestLimitTooHigh => (
                spans
                    .iter()
                    .find(|(k, _)| *k == "guest_restart_limit")
                    .map(|(_, l)| *l),
                String::new(),
            ),
            ConfigError::BadTiming(key) => (
                spans.iter().find(|(k, _)| *k == key).map(|(_, l)| *l),
                String::new(),
            ),
        };
        let span = if matches!(e, ConfigError::DuplicateAddress(_)) && span.is_none() {
            Some(raw.shelf.own_address.line)
        } else {
            span
        };
        return Err(err(span, format!("{e}{detail}")));
    }

    let kind_line = raw.event_source.as_ref().map(|s| s.kind_line());
    let source = match raw.event_source {
        None => EventSource::Ipmb,
        Some(s) => s.resolve().map_err(|(span, message)| err(span, message))?,
    };
    let built = match source {
        EventSource::Ipmb => true,
        EventSource::Rmcp(_) => cfg!(feature = "rmcp"),
        EventSource::System(_) => cfg!(feature = "system"),
    };
    if what == Use::Run && !built {
        return Err(err(
            kind_line,
            format!(
                "event source \"{0}\" is not in this build (cargo feature `{0}`)",
                source.kind()
            ),
        ));
    }
    let ipmb_device = match (&source, raw.shelf.ipmb_device) {
        (EventSource::Ipmb, None) if what == Use::Run => {
            return Err(err(
                raw.shelf.line,
                "missing field `ipmb_device` in [shelf] (required with event source \"ipmb\")"
                    .into(),
            ))
        }
        (_, d) => PathBuf::from(d.unwrap_or_default()),
    };

    if let (Some(l), None) = (&raw.shelf.listen, &raw.shelf.key_file) {
        return Err(err(
            Some(l.line),
            "`listen` needs `key_file` in [shelf]: the agent link is authenticated with the \
             shelf key"
                .into(),
        ));
    }
    if let Err(e) = shelf.check_workable(listen.is_some()) {
        let line_of = |key: &str| spans.iter().find(|(k, _)| *k == key).map(|(_, l)| *l);
        let span = match e {
            Unworkable::NoBlades => raw.shelf.line,
            _ => e.keys().iter().find_map(|k| line_of(k)),
        };
        let mut message = e.to_string();
        if !e.keys().is_empty() {
            let set: Vec<String> = e
                .keys()
                .iter()
                .map(|k| match line_of(k) {
                    Some(l) => format!("{k}: line {l}"),
                    None => format!("{k}: default"),
                })
                .collect();
            message.push_str(&format!(" [{}]", set.join(", ")));
        }
        return Err(err(span, message));
    }

    let key_line = raw.shelf.key_file.as_ref().map(|k| k.line);
    Ok((
        HostConfig {
            shelf,
            ipmb_device,
            ipmb_mode: raw.shelf.ipmb_mode,
            listen,
            key_file: raw.shelf.key_file.map(|k| PathBuf::from(k.value)),
            sequence_file: raw.shelf.sequence_file,
            agents,
            source,
        },
        key_line,
    ))
}

#[cfg(test)]
mod test;
