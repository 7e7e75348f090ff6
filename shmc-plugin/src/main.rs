//! `shmc-plugin` binary: argument parsing (`lexopt`) and wiring only.
//!
//! ```text
//! shmc-plugin run --config FILE [--log LEVEL] [--decisions-json PATH|-]
//! shmc-plugin replay --config FILE CAPTURE [--log LEVEL]
//! shmc-plugin check-config --config FILE
//! shmc-plugin [COMMAND] --help | --version
//! ```
//! Exit codes: 0 done (`run`: stopped by SIGTERM or SIGINT; `check-config`:
//! valid), 1 runtime failure (device, I/O), 2 bad usage, bad configuration or
//! bad capture line.
//!
//! `run` and `check-config` load the file with the same function
//! ([`file::load`]), so they refuse exactly the same files; `check-config`
//! stops there, before any device or socket is opened.
//! A bare `shmc-plugin` prints the usage on stderr (exit code 2).

use std::ffi::OsString;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use shmc_plugin::config::file::{self, HostConfig, Use};
use shmc_plugin::config::source::EventSource;
use shmc_plugin::edge::{
    self,
    agents::{udp::UdpAgents, AgentLink, NoAgents},
    record::{Discard, JsonLines, RecordSink},
    source::{ipmb, replay},
    stop::StopSignals,
};

const USAGE: &str = "\
shmc-plugin: ATCA shelf-manager plugin (IPMB failure detection, fencing, failover orders)

Usage:
  shmc-plugin run --config FILE [--log LEVEL] [--decisions-json PATH|-]
      Read the event source named in FILE (IPMB device, or the shelf
      manager's SEL over RMCP+ or the system interface), classify failures,
      fence blades and order their partners to restart guests.
      --decisions-json: with the rmcp and system sources, also write one JSON
      line per SEL event, decision, alert and session change to PATH (- = stdout).
      SIGTERM or SIGINT stops it: the stop, any incident left open and the
      totals are logged, outputs flushed, exit code 0.
  shmc-plugin replay --config FILE CAPTURE [--log LEVEL]
      Run a capture (`<t_ms> <hex message>` per line) through the same core;
      JSON lines on stdout: events, decisions, alerts, then a summary.
      Silence is not judged: a capture has no agents and no probe answers,
      so nothing is decided on a silent IPMC or agent (no blade_lost by
      probe loss, no host_os by heartbeat loss); only the capture's events
      count. FILE needs no ipmb_device; its key file is not read.
  shmc-plugin check-config --config FILE
      Apply every rule `run` applies to FILE (keys, pairs, timing that can
      work together, ipmb_device, `listen` with `key_file`, the key file
      present and not readable by group or others) without opening a
      device or a socket. Valid: one summary line on stdout, exit code 0;
      invalid: the reason with file and line on stderr, exit code 2.
  shmc-plugin [COMMAND] --help | --version

Options: -c, --config FILE (also --config=FILE); --log LEVEL.
LEVEL: error, warn, info, debug, trace (default: info for run, warn for replay).
Exit codes: 0 ok, 1 runtime failure, 2 bad usage, configuration or capture line.
";

/// A usage or configuration error: exit code 2.
const EXIT_USAGE: u8 = 2;
/// A runtime failure: exit code 1.
const EXIT_FAILURE: u8 = 1;

enum Command {
    Run {
        config: PathBuf,
        decisions_json: Option<OsString>,
    },
    Replay {
        config: PathBuf,
        capture: PathBuf,
    },
    CheckConfig {
        config: PathBuf,
    },
}

enum Parsed {
    Help,
    Version,
    /// No arguments at all.
    Bare,
    Command(Command, Option<log::LevelFilter>),
}

/// Why the command line was refused.
#[derive(Debug, thiserror::Error)]
enum UsageError {
    #[error(transparent)]
    Lexopt(#[from] lexopt::Error),
    #[error("unknown log level {0:?}")]
    Level(String),
    #[error("{0}")]
    Rule(&'static str),
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
}

fn parse_args(mut parser: lexopt::Parser) -> Result<Parsed, UsageError> {
    use lexopt::prelude::*;
    let mut config = None;
    let mut level = None;
    let mut decisions_json = None;
    let mut positional: Vec<OsString> = Vec::new();
    let mut any = false;
    while let Some(arg) = parser.next()? {
        any = true;
        match arg {
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Short('V') | Long("version") => return Ok(Parsed::Version),
            Short('c') | Long("config") => config = Some(PathBuf::from(parser.value()?)),
            Long("decisions-json") => decisions_json = Some(parser.value()?),
            Long("log") => {
                let v = parser.value()?.string()?;
                level = Some(v.parse().map_err(|_| UsageError::Level(v))?);
            }
            Value(v) => positional.push(v),
            _ => return Err(arg.unexpected().into()),
        }
    }
    if !any {
        return Ok(Parsed::Bare);
    }
    let command = match positional.first().map(|c| c.to_string_lossy()) {
        None => {
            return Err(UsageError::Rule(
                "a command is required (run, replay or check-config)",
            ))
        }
        Some(c) if c == "run" || c == "replay" || c == "check-config" => c.into_owned(),
        Some(c) => return Err(UsageError::UnknownCommand(c.into_owned())),
    };
    let config = config.ok_or(UsageError::Rule("--config FILE is required"))?;
    let command = match (command.as_str(), &positional[1..]) {
        ("run", []) => Command::Run {
            config,
            decisions_json,
        },
        ("run", _) => return Err(UsageError::Rule("run takes no CAPTURE argument")),
        _ if decisions_json.is_some() => {
            return Err(UsageError::Rule("--decisions-json is an option of run"))
        }
        ("check-config", []) => Command::CheckConfig { config },
        ("check-config", _) => {
            return Err(UsageError::Rule("check-config takes no CAPTURE argument"))
        }
        (_, [capture]) => Command::Replay {
            config,
            capture: PathBuf::from(capture),
        },
        _ => return Err(UsageError::Rule("replay needs exactly one CAPTURE file")),
    };
    Ok(Parsed::Command(command, level))
}

fn main() -> ExitCode {
    let (command, level) = match parse_args(lexopt::Parser::from_env()) {
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("shmc-plugin {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Bare) => {
            eprint!("{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
        Ok(Parsed::Command(c, level)) => (c, level),
        Err(e) => {
            eprintln!("shmc-plugin: {e}\n\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match command {
        Command::Run {
            config,
            decisions_json,
        } => run(&config, decisions_json, level),
        Command::Replay { config, capture } => replay_capture(&config, &capture, level),
        Command::CheckConfig { config } => check_config(&config),
    }
}

/// `check-config`: the rules of `run` ([`file::load`]), nothing opened.
fn check_config(config: &std::path::Path) -> ExitCode {
    match file::load(config) {
        Ok(cfg) => {
            println!("{}: valid: {}", config.display(), summary_of(&cfg));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shmc-plugin: {}", report(&e));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// One line saying what a valid configuration sets up.
fn summary_of(cfg: &HostConfig) -> String {
    let t = &cfg.shelf.timing;
    let pairs: Vec<String> = cfg
        .shelf
        .blades
        .iter()
        .filter(|b| b.slot.get() < b.partner.get())
        .map(|b| format!("{}+{}", b.slot, b.partner))
        .collect();
    let source = match &cfg.source {
        EventSource::Ipmb => format!(
            "ipmb {} ({})",
            cfg.ipmb_device.display(),
            if cfg.stream_mode() {
                "stream"
            } else {
                "message"
            }
        ),
        other => other.kind().to_string(),
    };
    let agents = match cfg.listen {
        Some(l) => format!(
            "agents on {l} (heartbeat timeout {} ms)",
            t.heartbeat_timeout_ms
        ),
        None => "no agent link".to_string(),
    };
    format!(
        "{} blades (pairs {}), event source {source}, {agents}, probe every {} ms, lost after {} ms, fence step {} ms",
        cfg.shelf.blades.len(),
        pairs.join(" "),
        t.probe_interval_ms,
        t.probe_timeout_ms,
        t.fence_step_deadline_ms
    )
}

/// Prints `e` with its chain of sources, `: `-separated.
fn report(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn load(config: &std::path::Path) -> Result<HostConfig, ExitCode> {
    file::load(config).map_err(|e| {
        eprintln!("shmc-plugin: {}", report(&e));
        ExitCode::from(EXIT_USAGE)
    })
}

/// Why `run` ended with an error.
#[derive(Debug, thiserror::Error)]
enum RunFailure {
    #[error(transparent)]
    Ipmb(#[from] ipmb::RunError),
    #[cfg(feature = "rmcp")]
    #[error(transparent)]
    Sel(#[from] edge::source::sel::SourceError),
    #[cfg(not(all(feature = "rmcp", feature = "system")))]
    #[error("event source \"{0}\" is not in this build (cargo feature `{0}`)")]
    NotBuilt(&'static str),
}

fn run(
    config: &std::path::Path,
    decisions_json: Option<OsString>,
    level: Option<log::LevelFilter>,
) -> ExitCode {
    // First, while this is the only thread: SIGTERM and SIGINT from
    // here on wait for the run loop instead of killing the process.
    let stop = match StopSignals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shmc-plugin: cannot set up SIGTERM/SIGINT handling: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    edge::init_logging(level.unwrap_or(log::LevelFilter::Info));
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut json_out: Option<JsonLines<Box<dyn Write>>> = match decisions_json {
        None => None,
        Some(_) if cfg.source == EventSource::Ipmb => {
            eprintln!("shmc-plugin: --decisions-json needs the rmcp or system event source");
            return ExitCode::from(EXIT_USAGE);
        }
        Some(path) if path == "-" => Some(JsonLines::new(Box::new(io::stdout()), true)),
        Some(path) => match std::fs::File::create(&path) {
            Ok(f) => Some(JsonLines::new(Box::new(f), true)),
            Err(e) => {
                eprintln!("shmc-plugin: cannot create {}: {e}", path.to_string_lossy());
                return ExitCode::from(EXIT_FAILURE);
            }
        },
    };
    let mut discard = Discard;
    #[cfg_attr(not(feature = "rmcp"), allow(unused_variables))]
    let records: &mut dyn RecordSink = match json_out.as_mut() {
        Some(j) => j,
        None => &mut discard,
    };
    #[cfg_attr(not(feature = "rmcp"), allow(unused_mut))]
    let mut run_with = |agents: &mut dyn AgentLink| -> Result<(), RunFailure> {
        match &cfg.source {
            EventSource::Ipmb => Ok(ipmb::run(&cfg, agents, &stop)?),
            #[cfg(feature = "rmcp")]
            EventSource::Rmcp(src) => Ok(edge::source::sel::rmcp::run(
                &cfg, src, agents, records, &stop,
            )?),
            #[cfg(feature = "system")]
            EventSource::System(src) => Ok(edge::source::sel::system::run(
                &cfg, src, agents, records, &stop,
            )?),
            #[cfg(not(all(feature = "rmcp", feature = "system")))]
            other => Err(RunFailure::NotBuilt(other.kind())),
        }
    };
    let result = match (cfg.listen, &cfg.key_file) {
        (Some(listen), Some(key_file)) => {
            match UdpAgents::bind(listen, key_file, cfg.sequence_file.as_deref(), &cfg.agents) {
                Ok(mut agents) => run_with(&mut agents),
                Err(e) => {
                    eprintln!("shmc-plugin: agent link: {}", report(&e));
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
        (Some(_), None) => {
            eprintln!(
                "shmc-plugin: {}: `listen` needs `key_file`",
                config.display()
            );
            return ExitCode::from(EXIT_USAGE);
        }
        (None, _) => {
            log::warn!("no `listen` address configured: agent orders are logged only");
            run_with(&mut NoAgents::default())
        }
    };
    // The decision stream is flushed per line; flush once more so a
    // failure to do so is seen (and stdout, if that is where it goes).
    let flushed = json_out.as_mut().map_or(Ok(()), |out| out.flush());
    match (result, flushed) {
        (Ok(()), Ok(())) => ExitCode::SUCCESS,
        (Ok(()), Err(e)) => {
            log::error!("decision stream: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
        (Err(e), _) => {
            log::error!("{}", report(&e));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn replay_capture(
    config: &std::path::Path,
    capture: &std::path::Path,
    level: Option<log::LevelFilter>,
) -> ExitCode {
    edge::init_logging(level.unwrap_or(log::LevelFilter::Warn));
    let cfg = match file::load_for(config, Use::Replay) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shmc-plugin: {}", report(&e));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let input = match std::fs::File::open(capture) {
        Ok(f) => BufReader::with_capacity(1 << 16, f),
        Err(e) => {
            eprintln!("shmc-plugin: cannot read {}: {e}", capture.display());
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    match replay::replay(cfg.shelf, input, out) {
        Ok(_) => ExitCode::SUCCESS,
        Err(replay::ReplayError::BadLine { line, reason }) => {
            eprintln!("shmc-plugin: {}:{line}: {reason}", capture.display());
            ExitCode::from(EXIT_USAGE)
        }
        Err(e @ replay::ReplayError::Config(_)) => {
            eprintln!("shmc-plugin: {}: {}", config.display(), report(&e));
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("shmc-plugin: {}: {}", capture.display(), report(&e));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, UsageError> {
        parse_args(lexopt::Parser::from_args(args.iter().copied()))
    }

    #[test]
    fn test_every_spelling_parses() {
        for args in [
            &["run", "--config", "a.toml"][..],
            &["run", "-c", "a.toml", "--log", "debug"],
            &["--config=a.toml", "run"],
            &["run", "--config", "a.toml", "--decisions-json", "-"],
            &["replay", "--config", "a.toml", "cap.txt"],
            &["replay", "cap.txt", "--config", "a.toml", "--log", "info"],
            &["check-config", "--config", "a.toml"],
            &["check-config", "-c", "a.toml"],
        ] {
            assert!(matches!(parse(args), Ok(Parsed::Command(..))), "{args:?}");
        }
        assert!(matches!(parse(&[]), Ok(Parsed::Bare)));
        assert!(matches!(parse(&["run", "--help"]), Ok(Parsed::Help)));
        assert!(matches!(parse(&["replay", "-h"]), Ok(Parsed::Help)));
        assert!(matches!(parse(&["-V"]), Ok(Parsed::Version)));
    }

    #[test]
    fn test_usage_errors() {
        for args in [
            &["run"][..],
            &["replay", "--config"],
            &["frobnicate", "--config", "x.toml"],
            &["replay", "--config", "a.toml"],
            &["replay", "--config", "a.toml", "a", "b"],
            &["replay", "--config", "a.toml", "a", "--decisions-json", "-"],
            &["run", "--config", "a.toml", "--log", "loud"],
            &["run", "--config", "a.toml", "--frob"],
            &["--config", "a.toml"],
            &["check-config"],
            &["check-config", "--config", "a.toml", "cap.txt"],
            &[
                "check-config",
                "--config",
                "a.toml",
                "--decisions-json",
                "-",
            ],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
