//! `shmc-plugin` binary: argument parsing and wiring only.
//!
//! ```text
//! shmc-plugin run --config FILE [--log LEVEL] [--decisions-json PATH|-]
//! shmc-plugin replay --config FILE CAPTURE [--log LEVEL]
//! shmc-plugin --help | --version
//! ```
//! Exit codes: 0 done (`run`: stopped by SIGTERM or SIGINT), 1 runtime
//! failure (device, I/O), 2 bad usage, bad configuration or bad capture line.

use std::io::{self, BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use shmc_plugin::config::file;
use shmc_plugin::config::source::EventSource;
#[cfg(feature = "rmcp")]
use shmc_plugin::host::rmcp::{self, JsonLines};
#[cfg(feature = "system")]
use shmc_plugin::host::system;
use shmc_plugin::host::{
    self,
    agent::{AgentLink, NoAgents},
    replay, run,
    stop::StopSignals,
    udp::UdpAgents,
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
      JSON lines on stdout.
  shmc-plugin --help | --version

LEVEL: error, warn, info, debug, trace (default: info for run, warn for replay).
Exit codes: 0 ok, 1 runtime failure, 2 bad usage, configuration or capture line.
";

enum Command {
    Run {
        config: PathBuf,
        decisions_json: Option<String>,
    },
    Replay {
        config: PathBuf,
        capture: PathBuf,
    },
}

fn parse_args(args: &[String]) -> Result<(Command, Option<log::LevelFilter>), String> {
    let mut config = None;
    let mut level = None;
    let mut decisions_json = None;
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let mut value = |name: &str| -> Result<String, String> {
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a {
            "--config" | "-c" => config = Some(PathBuf::from(value("--config")?)),
            "--decisions-json" => decisions_json = Some(value("--decisions-json")?),
            "--log" => {
                let v = value("--log")?;
                level = Some(v.parse().map_err(|_| format!("unknown log level {v:?}"))?);
            }
            _ if a.starts_with("--config=") => {
                config = Some(PathBuf::from(&a["--config=".len()..]))
            }
            _ if a.starts_with('-') && a.len() > 1 => return Err(format!("unknown option {a:?}")),
            _ => positional.push(a.to_string()),
        }
        i += 1;
    }
    let config = config.ok_or("--config FILE is required")?;
    match positional.as_slice() {
        [cmd] if cmd == "run" => Ok((
            Command::Run {
                config,
                decisions_json,
            },
            level,
        )),
        _ if decisions_json.is_some() => Err("--decisions-json is an option of run".into()),
        [cmd, capture] if cmd == "replay" => Ok((
            Command::Replay {
                config,
                capture: PathBuf::from(capture),
            },
            level,
        )),
        [cmd, ..] if cmd == "replay" => Err("replay needs exactly one CAPTURE file".into()),
        [cmd, ..] => Err(format!("unknown command {cmd:?}")),
        [] => Err("a command is required (run or replay)".into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("shmc-plugin {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let (command, level) = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shmc-plugin: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Run {
            config,
            decisions_json,
        } => {
            // First, while this is the only thread: SIGTERM and SIGINT from
            // here on wait for the run loop instead of killing the process.
            let stop = match StopSignals::install() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("shmc-plugin: cannot set up SIGTERM/SIGINT handling: {e}");
                    return ExitCode::from(1);
                }
            };
            host::init_logging(level.unwrap_or(log::LevelFilter::Info));
            let cfg = match file::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("shmc-plugin: {e}");
                    return ExitCode::from(2);
                }
            };
            #[cfg_attr(not(feature = "rmcp"), allow(unused_mut, unused_variables))]
            let mut json_out: Option<Box<dyn io::Write>> = match decisions_json.as_deref() {
                None => None,
                Some(_) if cfg.source == EventSource::Ipmb => {
                    eprintln!(
                        "shmc-plugin: --decisions-json needs the rmcp or system event source"
                    );
                    return ExitCode::from(2);
                }
                Some("-") => Some(Box::new(io::stdout())),
                Some(path) => match std::fs::File::create(path) {
                    Ok(f) => Some(Box::new(f)),
                    Err(e) => {
                        eprintln!("shmc-plugin: cannot create {path}: {e}");
                        return ExitCode::from(1);
                    }
                },
            };
            #[cfg_attr(not(feature = "rmcp"), allow(unused_mut))]
            let mut run_with = |agents: &mut dyn AgentLink| -> Result<(), String> {
                match &cfg.source {
                    EventSource::Ipmb => run::run(&cfg, agents, &stop).map_err(|e| e.to_string()),
                    #[cfg(feature = "rmcp")]
                    EventSource::Rmcp(src) => {
                        let mut json = JsonLines::new(
                            json_out.as_mut().map(|b| &mut **b as &mut dyn io::Write),
                        );
                        rmcp::run(&cfg, src, agents, &mut json, &stop).map_err(|e| e.to_string())
                    }
                    #[cfg(feature = "system")]
                    EventSource::System(src) => {
                        let mut json = JsonLines::new(
                            json_out.as_mut().map(|b| &mut **b as &mut dyn io::Write),
                        );
                        system::run(&cfg, src, agents, &mut json, &stop).map_err(|e| e.to_string())
                    }
                    #[cfg(not(all(feature = "rmcp", feature = "system")))]
                    other => Err(format!(
                        "event source \"{0}\" is not in this build (cargo feature `{0}`)",
                        other.kind()
                    )),
                }
            };
            let result = match (cfg.listen, &cfg.key_file) {
                (Some(listen), Some(key_file)) => {
                    match UdpAgents::bind(
                        listen,
                        key_file,
                        cfg.sequence_file.as_deref(),
                        &cfg.agents,
                    ) {
                        Ok(mut agents) => run_with(&mut agents),
                        Err(e) => {
                            eprintln!("shmc-plugin: agent link: {e}");
                            return ExitCode::from(2);
                        }
                    }
                }
                (Some(_), None) => {
                    eprintln!(
                        "shmc-plugin: {}: `listen` needs `key_file`",
                        config.display()
                    );
                    return ExitCode::from(2);
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
                    ExitCode::from(1)
                }
                (Err(e), _) => {
                    log::error!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Replay { config, capture } => {
            host::init_logging(level.unwrap_or(log::LevelFilter::Warn));
            let cfg = match file::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("shmc-plugin: {e}");
                    return ExitCode::from(2);
                }
            };
            let input = match std::fs::File::open(&capture) {
                Ok(f) => BufReader::with_capacity(1 << 16, f),
                Err(e) => {
                    eprintln!("shmc-plugin: cannot read {}: {e}", capture.display());
                    return ExitCode::from(1);
                }
            };
            let out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
            match replay::replay(cfg.shelf, input, out) {
                Ok(_) => ExitCode::SUCCESS,
                Err(replay::ReplayError::BadLine { line, reason }) => {
                    eprintln!("shmc-plugin: {}:{line}: {reason}", capture.display());
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("shmc-plugin: {}: {e}", capture.display());
                    ExitCode::from(1)
                }
            }
        }
    }
}
