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
mod test {
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
        let bundle = include_str!("../../../cross/bundle/shmc-plugin.toml");
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
            // The issue's case: probes every 5 s, lost after the default 1.5 s.
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
}
