//! The `[event_source]` table: where events come from and where fence
//! requests go.
//!
//! ```toml
//! [event_source]
//! kind = "rmcp"                   # "ipmb" (default) | "rmcp" | "system"
//! host = "192.0.2.10"             # rmcp: the shelf manager's LAN address
//! port = 623                      # rmcp: UDP port (default 623)
//! user = "admin"                  # rmcp: user with ADMINISTRATOR privilege
//! password_file = "/etc/shelfha/rmcp-password"   # rmcp: or `password = "..."`
//! cipher_suite = 3                # rmcp: only 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128)
//! poll_interval_ms = 100          # rmcp, system: SEL poll interval (default 100)
//! timeout_ms = 500                # rmcp, system: one request's response timeout (default 500)
//! channel = 0                     # rmcp, system: IPMB channel of the blades (default 0, IPMB-0)
//! device = "/dev/ipmi0"           # system: the IPMI device (default /dev/ipmi0)
//! ```
//!
//! Without the table the source is `ipmb` and `[shelf] ipmb_device` is
//! required; with `rmcp` or `system` it is not used. A key that does not belong
//! to the chosen kind is an error naming its line, as is a password file
//! readable by group or others (the same rule as the agent-link key file).

use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::toml_subset::{self, At, Table};

/// Longest IPMI v2.0 password (RAKP K_UID is at most 20 bytes).
pub const MAX_PASSWORD_LEN: usize = 20;
/// Longest IPMI v2.0 user name.
pub const MAX_USER_LEN: usize = 16;
/// The only RMCP+ cipher suite supported (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128).
pub const CIPHER_SUITE: u8 = 3;
/// Default UDP port of RMCP.
pub const DEFAULT_PORT: u16 = 623;
/// Default SEL poll interval.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 100;
/// Default response timeout of one request over a session.
pub const DEFAULT_TIMEOUT_MS: u64 = 500;
/// Default system interface device.
pub const DEFAULT_DEVICE: &str = "/dev/ipmi0";

/// Where events are read and fence requests are sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EventSource {
    /// Platform Event Messages on the IPMB device of `[shelf]` (the ShMC itself).
    #[default]
    Ipmb,
    /// The shelf manager's SEL over an IPMI v2.0 RMCP+ LAN session; requests
    /// to blades are bridged (Send Message).
    Rmcp(RmcpSource),
    /// The local BMC's SEL through the system interface; requests to blades
    /// go through the driver's IPMB addressing.
    System(SystemSource),
}

impl EventSource {
    /// The name used in the configuration and in logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ipmb => "ipmb",
            Self::Rmcp(_) => "rmcp",
            Self::System(_) => "system",
        }
    }
}

/// Settings shared by the SEL-polling sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polling {
    /// Interval between two SEL polls.
    pub poll_interval_ms: u64,
    /// Response timeout of one request.
    pub timeout_ms: u64,
    /// IPMB channel number the blade IPMCs are on.
    pub channel: u8,
}

/// A password that is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl Password {
    /// The password bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// `kind = "rmcp"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RmcpSource {
    /// Host name or address of the shelf manager.
    pub host: String,
    /// UDP port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password (from `password` or `password_file`).
    pub password: Password,
    /// Cipher suite (always [`CIPHER_SUITE`]).
    pub cipher_suite: u8,
    /// Poll interval, timeout, channel.
    pub polling: Polling,
}

/// `kind = "system"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemSource {
    /// The IPMI character device.
    pub device: PathBuf,
    /// Poll interval, timeout, channel.
    pub polling: Polling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ipmb,
    Rmcp,
    System,
}

/// The raw `[event_source]` table, typed; every value keeps its line.
pub(super) struct RawEventSource {
    kind: At<Kind>,
    host: Option<At<String>>,
    port: Option<At<u16>>,
    user: Option<At<String>>,
    password: Option<At<String>>,
    password_file: Option<At<PathBuf>>,
    cipher_suite: Option<At<u8>>,
    poll_interval_ms: Option<At<u64>>,
    timeout_ms: Option<At<u64>>,
    channel: Option<At<u8>>,
    device: Option<At<PathBuf>>,
}

/// An error with the line it refers to.
pub(super) type SpanError = (Option<usize>, String);

impl RawEventSource {
    /// Types the table: unknown keys, wrong types, out-of-range integers and a
    /// missing `kind` are errors naming their line.
    pub(super) fn from_table(t: &Table) -> Result<Self, toml_subset::Error> {
        t.only(&[
            "kind",
            "host",
            "port",
            "user",
            "password",
            "password_file",
            "cipher_suite",
            "poll_interval_ms",
            "timeout_ms",
            "channel",
            "device",
        ])?;
        let kind = t
            .variant("kind", &["ipmb", "rmcp", "system"])?
            .ok_or_else(|| t.missing("kind"))?;
        let path = |key: &str| -> Result<Option<At<PathBuf>>, toml_subset::Error> {
            Ok(t.string(key)?.map(|v| At {
                value: PathBuf::from(v.value),
                line: v.line,
            }))
        };
        Ok(Self {
            kind: At {
                value: match kind.value {
                    0 => Kind::Ipmb,
                    1 => Kind::Rmcp,
                    _ => Kind::System,
                },
                line: kind.line,
            },
            host: t.string("host")?,
            port: t.int("port")?,
            user: t.string("user")?,
            password: t.string("password")?,
            password_file: path("password_file")?,
            cipher_suite: t.int("cipher_suite")?,
            poll_interval_ms: t.int("poll_interval_ms")?,
            timeout_ms: t.int("timeout_ms")?,
            channel: t.int("channel")?,
            device: path("device")?,
        })
    }
}

/// Reads a password file: at most [`MAX_PASSWORD_LEN`] bytes, one trailing
/// newline ignored, not readable by group or others.
pub fn read_password_file(path: &std::path::Path) -> Result<Password, String> {
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("password file {}: {e}", path.display()))?;
    let mode = f
        .metadata()
        .map_err(|e| format!("password file {}: {e}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "password file {} has mode {:o}: it must not be readable by group or others (chmod 600)",
            path.display(),
            mode & 0o777
        ));
    }
    let mut buf = Vec::new();
    Read::by_ref(&mut f)
        .take(MAX_PASSWORD_LEN as u64 + 2)
        .read_to_end(&mut buf)
        .map_err(|e| format!("password file {}: {e}", path.display()))?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    if buf.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "password file {}: longer than {MAX_PASSWORD_LEN} bytes",
            path.display()
        ));
    }
    Ok(Password(buf))
}

impl RawEventSource {
    /// Validates the table; errors carry the span of the offending value.
    /// Line of the `kind` key.
    pub(super) fn kind_line(&self) -> usize {
        self.kind.line
    }

    pub(super) fn resolve(self) -> Result<EventSource, SpanError> {
        let kind = self.kind.value;
        let name = match kind {
            Kind::Ipmb => "ipmb",
            Kind::Rmcp => "rmcp",
            Kind::System => "system",
        };
        let misplaced = |key: &str, line: usize| -> SpanError {
            (
                Some(line),
                format!("`{key}` does not apply to event source kind \"{name}\""),
            )
        };
        // Keys per kind: reject the ones that do not belong.
        let rmcp_only = [
            ("host", self.host.as_ref().map(|v| v.line)),
            ("port", self.port.as_ref().map(|v| v.line)),
            ("user", self.user.as_ref().map(|v| v.line)),
            ("password", self.password.as_ref().map(|v| v.line)),
            ("password_file", self.password_file.as_ref().map(|v| v.line)),
            ("cipher_suite", self.cipher_suite.as_ref().map(|v| v.line)),
        ];
        let polling_keys = [
            (
                "poll_interval_ms",
                self.poll_interval_ms.as_ref().map(|v| v.line),
            ),
            ("timeout_ms", self.timeout_ms.as_ref().map(|v| v.line)),
            ("channel", self.channel.as_ref().map(|v| v.line)),
        ];
        let device_key = [("device", self.device.as_ref().map(|v| v.line))];
        let allowed: &[&str] = match kind {
            Kind::Ipmb => &[],
            Kind::Rmcp => &[
                "host",
                "port",
                "user",
                "password",
                "password_file",
                "cipher_suite",
                "poll_interval_ms",
                "timeout_ms",
                "channel",
            ],
            Kind::System => &["poll_interval_ms", "timeout_ms", "channel", "device"],
        };
        for (key, span) in rmcp_only.iter().chain(&polling_keys).chain(&device_key) {
            if let Some(span) = span {
                if !allowed.contains(key) {
                    return Err(misplaced(key, *span));
                }
            }
        }
        let polling = || -> Result<Polling, SpanError> {
            let p = Polling {
                poll_interval_ms: self
                    .poll_interval_ms
                    .as_ref()
                    .map_or(DEFAULT_POLL_INTERVAL_MS, |v| v.value),
                timeout_ms: self
                    .timeout_ms
                    .as_ref()
                    .map_or(DEFAULT_TIMEOUT_MS, |v| v.value),
                channel: self.channel.as_ref().map_or(0, |v| v.value),
            };
            if let Some(v) = &self.poll_interval_ms {
                if p.poll_interval_ms == 0 || p.poll_interval_ms > 60_000 {
                    return Err((
                        Some(v.line),
                        "poll_interval_ms must be between 1 and 60000".into(),
                    ));
                }
            }
            if let Some(v) = &self.timeout_ms {
                if p.timeout_ms < 10 || p.timeout_ms > 60_000 {
                    return Err((
                        Some(v.line),
                        "timeout_ms must be between 10 and 60000".into(),
                    ));
                }
            }
            if let Some(v) = &self.channel {
                if p.channel > 0x0B {
                    return Err((
                        Some(v.line),
                        "channel must be an IPMB channel number between 0 and 11".into(),
                    ));
                }
            }
            Ok(p)
        };
        match kind {
            Kind::Ipmb => Ok(EventSource::Ipmb),
            Kind::System => Ok(EventSource::System(SystemSource {
                device: self
                    .device
                    .as_ref()
                    .map_or_else(|| PathBuf::from(DEFAULT_DEVICE), |d| d.value.clone()),
                polling: polling()?,
            })),
            Kind::Rmcp => {
                let whole = Some(self.kind.line);
                let host = self
                    .host
                    .as_ref()
                    .ok_or((whole, "event source \"rmcp\" needs `host`".to_string()))?;
                if host.value.is_empty() {
                    return Err((Some(host.line), "`host` is empty".into()));
                }
                let user = self
                    .user
                    .as_ref()
                    .ok_or((whole, "event source \"rmcp\" needs `user`".to_string()))?;
                if user.value.len() > MAX_USER_LEN {
                    return Err((
                        Some(user.line),
                        format!("`user` is longer than {MAX_USER_LEN} bytes"),
                    ));
                }
                let password = match (&self.password, &self.password_file) {
                    (Some(_), Some(f)) => {
                        return Err((
                            Some(f.line),
                            "give either `password` or `password_file`, not both".into(),
                        ))
                    }
                    (None, None) => {
                        return Err((
                            whole,
                            "event source \"rmcp\" needs `password` or `password_file`".into(),
                        ))
                    }
                    (Some(p), None) => {
                        if p.value.len() > MAX_PASSWORD_LEN {
                            return Err((
                                Some(p.line),
                                format!("`password` is longer than {MAX_PASSWORD_LEN} bytes"),
                            ));
                        }
                        Password(p.value.as_bytes().to_vec())
                    }
                    (None, Some(f)) => {
                        read_password_file(&f.value).map_err(|e| (Some(f.line), e))?
                    }
                };
                let cipher_suite = match &self.cipher_suite {
                    None => CIPHER_SUITE,
                    Some(c) if c.value == CIPHER_SUITE => CIPHER_SUITE,
                    Some(c) => {
                        return Err((
                            Some(c.line),
                            format!(
                                "cipher_suite {} is not supported; only {CIPHER_SUITE} (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128)",
                                c.value
                            ),
                        ))
                    }
                };
                Ok(EventSource::Rmcp(RmcpSource {
                    host: host.value.clone(),
                    port: self.port.as_ref().map_or(DEFAULT_PORT, |p| p.value),
                    user: user.value.clone(),
                    password,
                    cipher_suite,
                    polling: polling()?,
                }))
            }
        }
    }
}

#[cfg(test)]
mod test {
    use std::path::Path;

    use super::*;
    use crate::config::file::{parse, FileError};

    const BASE: &str = "[shelf]
own_address = 0x20
[[blade]]
slot = 1
ipmb_address = 0x82
partner = 2
[[blade]]
slot = 2
ipmb_address = 0x84
partner = 1
";

    fn with(table: &str) -> Result<EventSource, FileError> {
        parse(
            &format!("{BASE}[event_source]\n{table}"),
            Path::new("s.toml"),
        )
        .map(|c| c.source)
    }

    #[test]
    fn test_rmcp_defaults() {
        let s =
            with("kind = \"rmcp\"\nhost = \"10.0.0.2\"\nuser = \"admin\"\npassword = \"secret\"\n")
                .unwrap();
        let EventSource::Rmcp(r) = s else {
            panic!("{s:?}")
        };
        assert_eq!(r.host, "10.0.0.2");
        assert_eq!(r.port, DEFAULT_PORT);
        assert_eq!(r.user, "admin");
        assert_eq!(r.password.bytes(), b"secret");
        assert_eq!(r.cipher_suite, 3);
        assert_eq!(
            r.polling,
            Polling {
                poll_interval_ms: 100,
                timeout_ms: 500,
                channel: 0
            }
        );
        assert!(!format!("{r:?}").contains("secret"));
    }

    #[test]
    fn test_system_and_ipmb() {
        let s = with("kind = \"system\"\npoll_interval_ms = 50\n").unwrap();
        let EventSource::System(sys) = s else {
            panic!("{s:?}")
        };
        assert_eq!(sys.device, PathBuf::from("/dev/ipmi0"));
        assert_eq!(sys.polling.poll_interval_ms, 50);
        // No table: ipmb, which needs the device.
        let e = parse(BASE, Path::new("s.toml")).unwrap_err();
        assert!(e.message.contains("ipmb_device"), "{e}");
        let c = parse(
            &BASE.replace("0x20\n", "0x20\nipmb_device = \"/dev/ipmb-0\"\n"),
            Path::new("s.toml"),
        )
        .unwrap();
        assert_eq!(c.source, EventSource::Ipmb);
    }

    #[test]
    fn test_errors_name_line() {
        // [event_source] starts at line 11.
        let e = with(
            "kind = \"rmcp\"\nhost = \"h\"\nuser = \"u\"\npassword = \"p\"\ncipher_suite = 17\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(16), "{e}");
        assert!(e.message.contains("only 3"), "{e}");
        let e = with("kind = \"system\"\nhost = \"h\"\n").unwrap_err();
        assert_eq!(e.line, Some(13), "{e}");
        assert!(e.message.contains("`host` does not apply"), "{e}");
        let e = with("kind = \"rmcp\"\nhost = \"h\"\nuser = \"u\"\n").unwrap_err();
        assert_eq!(e.line, Some(12), "{e}");
        assert!(e.message.contains("password"), "{e}");
        let e = with(
            "kind = \"rmcp\"\nhost = \"h\"\nuser = \"u\"\npassword = \"123456789012345678901\"\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(15), "{e}");
        let e = with("kind = \"serial\"\n").unwrap_err();
        assert_eq!(e.line, Some(12), "{e}");
        let e = with("kind = \"system\"\npoll_interval_ms = 0\n").unwrap_err();
        assert_eq!(e.line, Some(13), "{e}");
        let e = with("kind = \"rmcp\"\nhost = \"h\"\nuser = \"u\"\npassword = \"p\"\ncolour = 1\n")
            .unwrap_err();
        assert!(e.message.contains("colour"), "{e}");
    }

    #[test]
    fn test_password_file_mode_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("shmc-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pw");
        std::fs::write(&p, "secret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let table = format!(
            "kind = \"rmcp\"\nhost = \"h\"\nuser = \"u\"\npassword_file = \"{}\"\n",
            p.display()
        );
        let e = with(&table).unwrap_err();
        assert_eq!(e.line, Some(15), "{e}");
        assert!(e.message.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let EventSource::Rmcp(r) = with(&table).unwrap() else {
            panic!()
        };
        assert_eq!(r.password.bytes(), b"secret");
        let e = with(&format!("{table}password = \"x\"\n")).unwrap_err();
        assert!(e.message.contains("not both"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
