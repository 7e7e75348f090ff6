//! `shelfha`: host-side tools of shelfha (demo, shelf simulator).

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
shelfha: host-side tools of shelfha

USAGE:
    shelfha simulate [--link PATH] [--shmc ADDR] --ipmc ADDR [--ipmc ADDR ...]
                     [--on-payload-off CMD] [--deactivation-ms N]
        Emulates blade IPMCs on a pty in the ipmb_dev_int message format. Point
        shmc-plugin's `ipmb_device` at PATH (a symlink to the pty's slave side).
        Control lines on stdin:
            inject ADDR FAULT   FAULT: critical-temperature, noncritical-temperature,
                                watchdog, os-stop, silent, handle, ipmb-a-lost,
                                ignore-deactivation
            clear ADDR FAULT    deassert a sensor fault (temperatures, watchdog,
                                os-stop, ipmb-a-lost)
            recover ADDR        answer again and activate (back to M4)
            garbage N           put N corrupted bytes on the bus
            state               print every IPMC's hot-swap state
            quit
        Reports (ready, state changes, errors) are JSON lines on stdout.
        --on-payload-off: shell command run (with the IPMC address as last
        argument, to completion) when an IPMC enters M1 or M0, before that state
        is reported on the bus: what cuts a blade's power in a test.
        --deactivation-ms: time from M6 to M1 after a deactivation (default 20).
        Defaults: --shmc 0x20; the simulation ends with its input.

    shelfha demo [--scenario NAME[,NAME...]] [--guests N]
        A simulated two-blade shelf in one process (no daemons, no root, no KVM):
        the ShMC core hears emulated IPMCs over IPMB frames, each blade's agent
        drives libvirt's in-process test driver. Injects failures one after the
        other (alternating blades) and prints each failover's timeline.
        NAME: hardware, watchdog, os-stop, agent-silent, hypervisor, ipmc-silent,
        extraction.
        Defaults: --scenario hardware,watchdog --guests 3.

    shelfha --help | --version
";

fn parse_addr(s: &str) -> Result<u8, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => s.parse(),
    };
    v.map_err(|_| format!("bad IPMB address {s:?} (expected e.g. 0x82)"))
}

fn simulate(args: &[String]) -> Result<(), String> {
    let mut link: Option<PathBuf> = None;
    let mut shmc = 0x20u8;
    let mut ipmcs = Vec::new();
    let mut options = shelfha::sim::pty::Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--link" => link = Some(PathBuf::from(value("--link")?)),
            "--shmc" => shmc = parse_addr(&value("--shmc")?)?,
            "--ipmc" => ipmcs.push(parse_addr(&value("--ipmc")?)?),
            "--on-payload-off" => options.payload_off_hook = Some(value("--on-payload-off")?),
            "--deactivation-ms" => {
                let v = value("--deactivation-ms")?;
                options.deactivation_ms = Some(
                    v.parse()
                        .map_err(|_| format!("--deactivation-ms {v:?}: not a number"))?,
                );
            }
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    if ipmcs.is_empty() {
        return Err(format!("at least one --ipmc is needed\n\n{USAGE}"));
    }
    shelfha::sim::pty::run_with(
        link.as_deref(),
        &ipmcs,
        shmc,
        &options,
        std::io::stdin(),
        std::io::stdout().lock(),
    )
    .map_err(|e| format!("simulator: {e}"))
}

fn demo(args: &[String]) -> Result<(), String> {
    let mut opts = shelfha::demo::Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--scenario" => {
                opts.scenarios = value("--scenario")?
                    .split(',')
                    .map(|s| {
                        shelfha::demo::Scenario::parse(s.trim()).ok_or(format!(
                            "unknown scenario {s:?} (one of: {})",
                            shelfha::demo::Scenario::NAMES
                        ))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--guests" => {
                let v = value("--guests")?;
                opts.guests = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or(format!("--guests {v:?}: expected 1..=64"))?;
            }
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    shelfha::demo::run(&opts)
}

fn main() -> ExitCode {
    // Component logs (the core's decisions, the agents' actions) on stderr: SHELFHA_LOG=info|debug.
    if let Ok(level) = std::env::var("SHELFHA_LOG") {
        let level = level.parse().unwrap_or(log::LevelFilter::Info);
        let _ = simple_logger::SimpleLogger::new().with_level(level).init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("simulate") => simulate(&args[1..]),
        Some("demo") => demo(&args[1..]),
        Some("--version") | Some("-V") => {
            println!("shelfha {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("--help") | Some("-h") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shelfha: {e}");
            ExitCode::from(2)
        }
    }
}
