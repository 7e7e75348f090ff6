//! `blade-agent` binary: command line, logging, and wiring of the parts (see the library).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use blade_agent::config::Config;
use blade_agent::execute::Agent;
use blade_agent::hypervisor::libvirt::LibvirtHypervisor;
use shelfha_proto::{Endpoint, EndpointConfig, NodeId, SeqSeed};

const DEFAULT_CONFIG: &str = "/etc/blade-agent/agent.toml";

const USAGE: &str = "\
blade-agent: shelfha blade agent (self-fencing, partner guest restart, crash reports)

Usage:
  blade-agent run [--config PATH]           run the agent
  blade-agent check-config [--config PATH]  validate the configuration and print it
  blade-agent --version                     print the version
  blade-agent --help                        print this help

The configuration defaults to /etc/blade-agent/agent.toml. Log level: RUST_LOG (default info).
";

enum Command {
    Run(PathBuf),
    Check(PathBuf),
    Help,
    Version,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter();
    let cmd = match it.next().map(String::as_str) {
        None | Some("-h") | Some("--help") | Some("help") => return Ok(Command::Help),
        Some("-V") | Some("--version") => return Ok(Command::Version),
        Some(c @ ("run" | "check-config")) => c,
        Some(other) => return Err(format!("unknown command `{other}`")),
    };
    let mut config = PathBuf::from(DEFAULT_CONFIG);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" | "-c" => config = PathBuf::from(it.next().ok_or("--config needs a path")?),
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(if cmd == "run" {
        Command::Run(config)
    } else {
        Command::Check(config)
    })
}

fn run(path: &std::path::Path) -> Result<(), String> {
    let cfg = Config::load(path).map_err(|e| e.to_string())?;
    log::info!(
        "blade-agent {} slot {} partner slot {} ({}), ShMC {}, libvirt {}",
        env!("CARGO_PKG_VERSION"),
        cfg.slot,
        cfg.partner.slot,
        cfg.partner.address,
        cfg.shmc,
        cfg.libvirt_uri
    );
    blade_agent::store::ensure_dir(&cfg.state_dir)
        .map_err(|e| format!("{}: {e}", cfg.state_dir.display()))?;
    let key = shelfha_proto::load_key(&cfg.key_file).map_err(|e| e.to_string())?;
    let hv = Arc::new(
        LibvirtHypervisor::open(&cfg.libvirt_uri, cfg.qemu_run_dir.clone())
            .map_err(|e| e.to_string())?,
    );
    let me =
        NodeId::blade(cfg.slot).ok_or_else(|| format!("slot {} has no protocol id", cfg.slot))?;
    let partner = NodeId::blade(cfg.partner.slot)
        .ok_or_else(|| format!("slot {} has no protocol id", cfg.partner.slot))?;
    let ep_cfg = EndpointConfig {
        seq: SeqSeed::File(cfg.state_dir.join("sequence")),
        // Journal, then acknowledge: the daemon acks each command once it is durable.
        manual_ack: true,
        ..EndpointConfig::default()
    };
    let mut ep =
        Endpoint::bind(cfg.listen, me, key, ep_cfg).map_err(|e| format!("{}: {e}", cfg.listen))?;
    ep.add_peer(NodeId::SHMC, Some(cfg.shmc))
        .map_err(|id| format!("cannot add peer {id}"))?;
    ep.add_peer(partner, Some(cfg.partner.address))
        .map_err(|id| format!("cannot add peer {id}"))?;
    let agent = Arc::new(Agent::new(hv, cfg).map_err(|e| e.to_string())?);
    blade_agent::daemon::run(agent, ep, Arc::new(AtomicBool::new(false))).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("blade-agent: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match cmd {
        Command::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("blade-agent {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check(path) => match Config::load(&path) {
            Ok(c) => {
                println!("{c:#?}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("blade-agent: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(path) => {
            let logger = simple_logger::SimpleLogger::new()
                .with_level(log::LevelFilter::Info)
                .env();
            if let Err(e) = logger.init() {
                eprintln!("blade-agent: logger: {e}");
            }
            match run(&path) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
