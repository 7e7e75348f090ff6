//! `shelfha`: host-side tools of shelfha (demo, shelf simulator).
//!
//! Command line by `clap` (derive). Exit codes: 0 done, 1 the demo or the
//! simulator failed, 2 bad usage (every subcommand answers `--help`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Host-side tools of shelfha.
#[derive(Debug, Parser)]
#[command(name = "shelfha", version, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Emulates blade IPMCs on a pty in the ipmb_dev_int message format.
    ///
    /// Point shmc-plugin's `ipmb_device` at PATH (a symlink to the pty's
    /// slave side). Control lines on stdin:
    ///   inject ADDR FAULT   FAULT: critical-temperature, noncritical-temperature,
    ///                       watchdog, os-stop, silent, handle, ipmb-a-lost,
    ///                       ignore-deactivation
    ///   clear ADDR FAULT    deassert a sensor fault (temperatures, watchdog,
    ///                       os-stop, ipmb-a-lost)
    ///   recover ADDR        answer again and activate (back to M4)
    ///   garbage N           put N corrupted bytes on the bus
    ///   state               print every IPMC's hot-swap state
    ///   quit
    /// Reports (ready, state changes, errors) are JSON lines on stdout. The
    /// simulation ends with its input.
    #[command(verbatim_doc_comment)]
    Simulate {
        /// Symlink to the pty's slave side.
        #[arg(long, value_name = "PATH")]
        link: Option<PathBuf>,
        /// The ShMC's IPMB address.
        #[arg(long, value_name = "ADDR", default_value = "0x20", value_parser = parse_addr)]
        shmc: u8,
        /// An emulated IPMC's address (repeat for more).
        #[arg(long, value_name = "ADDR", required = true, value_parser = parse_addr)]
        ipmc: Vec<u8>,
        /// Shell command run (with the IPMC address as last argument, to
        /// completion) when an IPMC enters M1 or M0, before that state is
        /// reported on the bus: what cuts a blade's power in a test.
        #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
        on_payload_off: Option<String>,
        /// Time from M6 to M1 after a deactivation [default: 20].
        #[arg(long, value_name = "N")]
        deactivation_ms: Option<u64>,
    },
    /// A simulated two-blade shelf in one process (no daemons, no root, no KVM).
    ///
    /// The ShMC core hears emulated IPMCs over IPMB frames, each blade's
    /// agent drives libvirt's in-process test driver. Injects failures one
    /// after the other (alternating blades) and prints each failover's
    /// timeline.
    Demo {
        /// Failures to inject, comma-separated: hardware, watchdog, os-stop,
        /// agent-silent, hypervisor, ipmc-silent, extraction.
        #[arg(long, value_name = "NAME[,NAME...]", default_value = "hardware,watchdog",
              value_parser = parse_scenarios)]
        scenario: Scenarios,
        /// Guests protected on slot 1 at start (1..=64).
        #[arg(long, value_name = "N", default_value_t = 3,
              value_parser = clap::value_parser!(u16).range(1..=64))]
        guests: u16,
    },
}

/// The scenarios of `--scenario`, in order.
#[derive(Debug, Clone)]
struct Scenarios(Vec<shelfha::demo::Scenario>);

fn parse_scenarios(s: &str) -> Result<Scenarios, String> {
    s.split(',')
        .map(|name| {
            shelfha::demo::Scenario::parse(name.trim()).ok_or(format!(
                "unknown scenario {name:?} (one of: {})",
                shelfha::demo::Scenario::NAMES
            ))
        })
        .collect::<Result<_, _>>()
        .map(Scenarios)
}

fn parse_addr(s: &str) -> Result<u8, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => s.parse(),
    };
    v.map_err(|_| format!("bad IPMB address {s:?} (expected e.g. 0x82)"))
}

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("simulator")]
    Simulator(#[source] std::io::Error),
    #[error("demo")]
    Demo(#[from] shelfha::demo::DemoError),
}

fn main() -> ExitCode {
    // Component logs (the core's decisions, the agents' actions) on stderr: SHELFHA_LOG=info|debug.
    if let Ok(level) = std::env::var("SHELFHA_LOG") {
        let level = level.parse().unwrap_or(log::LevelFilter::Info);
        let _ = simple_logger::SimpleLogger::new().with_level(level).init();
    }
    // clap prints help and version with exit code 0 and usage errors with 2.
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate {
            link,
            shmc,
            ipmc,
            on_payload_off,
            deactivation_ms,
        } => {
            let options = shelfha::sim::pty::Options {
                payload_off_hook: on_payload_off,
                deactivation_ms,
            };
            shelfha::sim::pty::run_with(
                link.as_deref(),
                &ipmc,
                shmc,
                &options,
                std::io::stdin(),
                std::io::stdout().lock(),
            )
            .map_err(Failure::Simulator)
        }
        Command::Demo { scenario, guests } => {
            let opts = shelfha::demo::Options {
                scenarios: scenario.0,
                guests: usize::from(guests),
                ..Default::default()
            };
            shelfha::demo::run(&opts).map_err(Failure::Demo)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut text = e.to_string();
            let mut cur = std::error::Error::source(&e);
            while let Some(c) = cur {
                text.push_str(&format!(": {c}"));
                cur = c.source();
            }
            eprintln!("shelfha: {text}");
            ExitCode::from(1)
        }
    }
}
