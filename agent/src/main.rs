//! `blade-agent` binary: command line (clap), logging, and wiring of the parts (see the
//! library). Exit codes: 0 done, 1 the agent failed while running, 2 usage or configuration
//! (bad arguments, a configuration file that cannot be read or is refused).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use blade_agent::config::{Config, ConfigError};
use blade_agent::execute::{Agent, AgentError};
use blade_agent::hypervisor::libvirt::LibvirtHypervisor;
use blade_agent::hypervisor::HypervisorError;
use shelfha_proto::{Endpoint, EndpointConfig, KeyFileError, NodeId, SeqSeed};

const DEFAULT_CONFIG: &str = "/etc/blade-agent/agent.toml";

/// Exit code of usage and configuration errors.
const USAGE_EXIT: u8 = 2;

/// shelfha blade agent (self-fencing, partner guest restart, crash reports).
#[derive(Debug, Parser)]
#[command(
    name = "blade-agent",
    version,
    override_usage = "\
blade-agent run [--config PATH]           run the agent
       blade-agent check-config [--config PATH]  validate the configuration and print it
       blade-agent --version                     print the version
       blade-agent --help                        print this help",
    after_help = "The configuration defaults to /etc/blade-agent/agent.toml. \
                  Log level: RUST_LOG (default info). SIGTERM or SIGINT stops `run` cleanly \
                  (exit 0; an armed hardware watchdog is disarmed once the ShMC knows)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent.
    Run(ConfigArg),
    /// Validate the configuration and print it.
    CheckConfig(ConfigArg),
}

#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// The configuration file.
    #[arg(short, long, value_name = "PATH", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
}

/// Why the agent did not start or stopped.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{}: {source}", path.display())]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error(transparent)]
    Hypervisor(#[from] HypervisorError),
    #[error("slot {0} has no protocol id")]
    NoProtocolId(u8),
    #[error("{addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot add peer {0}")]
    Peer(NodeId),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("daemon: {0}")]
    Daemon(#[source] std::io::Error),
}

impl RunError {
    /// Configuration errors exit with [`USAGE_EXIT`], the others with 1.
    fn exit_code(&self) -> ExitCode {
        match self {
            RunError::Config(_) | RunError::Key(_) | RunError::NoProtocolId(_) => {
                ExitCode::from(USAGE_EXIT)
            }
            _ => ExitCode::FAILURE,
        }
    }
}

fn run(path: &Path) -> Result<(), RunError> {
    let cfg = Config::load(path)?;
    log::info!(
        "blade-agent {} slot {} partner slot {} ({}), ShMC {}, libvirt {}",
        env!("CARGO_PKG_VERSION"),
        cfg.slot,
        cfg.partner.slot,
        cfg.partner.address,
        cfg.shmc,
        cfg.libvirt_uri
    );
    blade_agent::store::ensure_dir(&cfg.state_dir).map_err(|source| RunError::StateDir {
        path: cfg.state_dir.clone(),
        source,
    })?;
    let key = shelfha_proto::load_key(&cfg.key_file)?;
    let hv = Arc::new(LibvirtHypervisor::open(
        &cfg.libvirt_uri,
        cfg.qemu_run_dir.clone(),
    )?);
    let me = NodeId::blade(cfg.slot).ok_or(RunError::NoProtocolId(cfg.slot))?;
    let partner =
        NodeId::blade(cfg.partner.slot).ok_or(RunError::NoProtocolId(cfg.partner.slot))?;
    let ep_cfg = EndpointConfig {
        seq: SeqSeed::File(cfg.state_dir.join("sequence")),
        // Journal, then acknowledge: the daemon acks each command once it is durable.
        manual_ack: true,
        ..EndpointConfig::default()
    };
    let mut ep = Endpoint::bind(cfg.listen, me, key, ep_cfg).map_err(|source| RunError::Bind {
        addr: cfg.listen,
        source,
    })?;
    ep.add_peer(NodeId::SHMC, Some(cfg.shmc))
        .map_err(RunError::Peer)?;
    ep.add_peer(partner, Some(cfg.partner.address))
        .map_err(RunError::Peer)?;
    let agent = Arc::new(Agent::new(hv, cfg)?);
    let stop = Arc::new(AtomicBool::new(false));
    blade_agent::stop::on_signal_set(Arc::clone(&stop)).map_err(RunError::Daemon)?;
    blade_agent::daemon::run(agent, ep, stop).map_err(RunError::Daemon)
}

/// The error and its causes, for the log.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(USAGE_EXIT)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        None => {
            // No command is a usage error, as for shmc-plugin and shelfha: the help on stderr.
            use clap::CommandFactory;
            eprintln!("{}", Cli::command().render_help());
            ExitCode::from(USAGE_EXIT)
        }
        Some(Command::CheckConfig(a)) => match Config::load(&a.config) {
            Ok(c) => {
                println!("{c:#?}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("blade-agent: {}", chain(&e));
                ExitCode::from(USAGE_EXIT)
            }
        },
        Some(Command::Run(a)) => {
            let logger = simple_logger::SimpleLogger::new()
                .with_level(log::LevelFilter::Info)
                .env();
            if let Err(e) = logger.init() {
                eprintln!("blade-agent: logger: {e}");
            }
            match run(&a.config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{}", chain(&e));
                    e.exit_code()
                }
            }
        }
    }
}
