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
//! mutual, and more blades than [`MAX_BLADES`].

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::source::{EventSource, RawEventSource};
use super::{BladeConfig, ConfigError, Predictive, ShelfConfig, Timing};
use crate::capacity::MAX_BLADES;

/// How the IPMB device delivers bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
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
    pub agents: Vec<(u8, Option<SocketAddr>)>,
    /// Where events come from (`[event_source]`; `ipmb` when absent). With
    /// another source than `ipmb`, `ipmb_device` is empty and unused.
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    shelf: RawShelf,
    #[serde(default)]
    timing: RawTiming,
    #[serde(default)]
    blade: Vec<Spanned<RawBlade>>,
    #[serde(default)]
    event_source: Option<RawEventSource>,
    #[serde(default)]
    predictive: RawPredictive,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPredictive {
    enabled: Option<bool>,
    degraded_hold_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShelf {
    own_address: Spanned<u8>,
    #[serde(default)]
    ipmb_device: Option<String>,
    #[serde(default = "default_mode")]
    ipmb_mode: IpmbMode,
    #[serde(default)]
    listen: Option<Spanned<String>>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    sequence_file: Option<PathBuf>,
}

fn default_mode() -> IpmbMode {
    IpmbMode::Auto
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTiming {
    heartbeat_timeout_ms: Option<Spanned<u64>>,
    probe_interval_ms: Option<Spanned<u64>>,
    probe_timeout_ms: Option<Spanned<u64>>,
    fence_step_deadline_ms: Option<Spanned<u64>>,
    confirm_poll_ms: Option<Spanned<u64>>,
    hypervisor_grace_ms: Option<Spanned<u64>>,
    duplicate_window_ms: Option<Spanned<u64>>,
    guest_restart_limit: Option<Spanned<u8>>,
    guest_restart_window_ms: Option<Spanned<u64>>,
    request_timeout_ms: Option<Spanned<u64>>,
    request_retries: Option<Spanned<u8>>,
    self_fence_deadline_ms: Option<Spanned<u64>>,
    evacuation_timeout_ms: Option<Spanned<u64>>,
    guest_fence_timeout_ms: Option<Spanned<u64>>,
    failover_report_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlade {
    slot: Spanned<u8>,
    ipmb_address: Spanned<u8>,
    partner: Spanned<u8>,
    #[serde(default)]
    agent: Option<Spanned<String>>,
    #[serde(default)]
    hot_swap_sensor: Option<u8>,
}

/// 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<HostConfig, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        path: path.to_path_buf(),
        line: None,
        message: format!("cannot read: {e}"),
    })?;
    parse(&text, path)
}

/// Parses and validates configuration `text`; `path` only names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<HostConfig, FileError> {
    let err = |span: Option<Range<usize>>, message: String| FileError {
        path: path.to_path_buf(),
        line: span.map(|s| line_of(text, s.start)),
        message,
    };
    let raw: RawFile =
        toml::from_str(text).map_err(|e| err(e.span(), e.message().trim().to_string()))?;

    let mut timing = Timing::DEFAULT;
    let t = &raw.timing;
    let mut spans: Vec<(&'static str, Range<usize>)> = Vec::new();
    macro_rules! take {
        ($($key:ident),*) => {$(
            if let Some(v) = &t.$key {
                timing.$key = *v.get_ref();
                spans.push((stringify!($key), v.span()));
            }
        )*};
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
        failover_report_timeout_ms
    );

    if raw.blade.len() > MAX_BLADES {
        let extra = &raw.blade[MAX_BLADES];
        return Err(err(
            Some(extra.span()),
            format!(
                "{} blades configured, at most {MAX_BLADES} are supported",
                raw.blade.len()
            ),
        ));
    }

    let mut shelf = ShelfConfig::new(*raw.shelf.own_address.get_ref());
    shelf.timing = timing;
    shelf.predictive = Predictive {
        enabled: raw.predictive.enabled.unwrap_or(false),
        degraded_hold_ms: raw
            .predictive
            .degraded_hold_ms
            .as_ref()
            .map_or(Predictive::DEFAULT.degraded_hold_ms, |v| *v.get_ref()),
    };
    if let Some(v) = &raw.predictive.degraded_hold_ms {
        spans.push(("degraded_hold_ms", v.span()));
    }
    let mut agents = Vec::new();
    for b in &raw.blade {
        let r = b.get_ref();
        let agent = match &r.agent {
            None => None,
            Some(a) => Some(a.get_ref().parse::<SocketAddr>().map_err(|e| {
                err(
                    Some(a.span()),
                    format!("agent address {:?}: {e} (expected ip:port)", a.get_ref()),
                )
            })?),
        };
        agents.push((*r.slot.get_ref(), agent));
        // Capacity was checked above, so the push cannot fail.
        let _ = shelf.blades.push(BladeConfig {
            slot: *r.slot.get_ref(),
            ipmb_address: *r.ipmb_address.get_ref(),
            partner: *r.partner.get_ref(),
            hot_swap_sensor: r.hot_swap_sensor,
        });
    }
    let listen = match &raw.shelf.listen {
        None => None,
        Some(l) => Some(l.get_ref().parse::<SocketAddr>().map_err(|e| {
            err(
                Some(l.span()),
                format!("listen address {:?}: {e} (expected ip:port)", l.get_ref()),
            )
        })?),
    };

    if let Err(e) = shelf.validate() {
        let blade_span =
            |i: usize, f: fn(&RawBlade) -> Range<usize>| Some(f(raw.blade[i].get_ref()));
        let (span, detail) = match e {
            ConfigError::TooManyBlades(i) => (Some(raw.blade[i].span()), String::new()),
            ConfigError::BadSlot(i) => (
                blade_span(i, |b| b.slot.span()),
                format!(" (slot {})", shelf.blades[i].slot),
            ),
            ConfigError::DuplicateSlot(i) => (
                blade_span(i, |b| b.slot.span()),
                format!(" (slot {})", shelf.blades[i].slot),
            ),
            ConfigError::DuplicateAddress(i) => (
                blade_span(i, |b| b.ipmb_address.span()),
                format!(
                    " (0x{:02x} in slot {})",
                    shelf.blades[i].ipmb_address, shelf.blades[i].slot
                ),
            ),
            ConfigError::BadAddress(i) => (
                blade_span(i, |b| b.ipmb_address.span()),
                format!(
                    " (0x{:02x} in slot {})",
                    shelf.blades[i].ipmb_address, shelf.blades[i].slot
                ),
            ),
            ConfigError::PartnerNotConfigured(i)
            | ConfigError::PartnerNotMutual(i)
            | ConfigError::PartnerIsSelf(i) => (
                blade_span(i, |b| b.partner.span()),
                format!(
                    " (slot {} names partner {})",
                    shelf.blades[i].slot, shelf.blades[i].partner
                ),
            ),
            ConfigError::GuestLimitTooHigh => (
                spans
                    .iter()
                    .find(|(k, _)| *k == "guest_restart_limit")
                    .map(|(_, s)| s.clone()),
                String::new(),
            ),
            ConfigError::BadTiming(key) => (
                spans
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, s)| s.clone()),
                String::new(),
            ),
        };
        let span = if matches!(e, ConfigError::DuplicateAddress(_)) && span.is_none() {
            Some(raw.shelf.own_address.span())
        } else {
            span
        };
        return Err(err(span, format!("{e}{detail}")));
    }

    let source = match raw.event_source {
        None => EventSource::Ipmb,
        Some(s) => s.resolve().map_err(|(span, message)| err(span, message))?,
    };
    let ipmb_device = match (&source, raw.shelf.ipmb_device) {
        (EventSource::Ipmb, None) => {
            return Err(err(
                None,
                "missing field `ipmb_device` in [shelf] (required with event source \"ipmb\")"
                    .into(),
            ))
        }
        (_, d) => PathBuf::from(d.unwrap_or_default()),
    };

    Ok(HostConfig {
        shelf,
        ipmb_device,
        ipmb_mode: raw.shelf.ipmb_mode,
        listen,
        key_file: raw.shelf.key_file,
        sequence_file: raw.shelf.sequence_file,
        agents,
        source,
    })
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
        assert_eq!(c.shelf.own_address, 0x20);
        assert_eq!(c.shelf.blades.len(), 2);
        assert_eq!(c.shelf.blades[0].ipmb_address, 0x82);
        assert_eq!(c.shelf.blades[1].partner, 1);
        assert_eq!(c.shelf.timing, Timing::DEFAULT);
        assert_eq!(c.agents[0], (1, Some("10.0.0.11:7140".parse().unwrap())));
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
