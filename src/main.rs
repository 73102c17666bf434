//! calloutd: a DHCPv4 server that runs Microsoft DHCP Server callout DLLs outside Windows Server.
//!
//! This binary only parses arguments and wires the crates together; each subcommand's logic lives in
//! its crate.

#![forbid(unsafe_code)]

mod ctl;
mod harness_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use calloutd_service::{CheckFailure, CheckOptions, ServeOptions};
use clap::{Parser, Subcommand};

/// calloutd: run, test and trust Microsoft DHCP Server callout DLLs outside Windows Server.
#[derive(Debug, Parser)]
#[command(name = "calloutd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve DHCP on UDP/67 with the configured callout in the loop.
    Serve(Box<ServeOptions>),
    /// Validate the configuration, load the callout and report what would run.
    Check(CheckOptions),
    /// Run one DHCP client exchange (for scripts and tests).
    Client(Box<calloutd_client::cli::ClientCommand>),
    /// Generate DHCP load against a server (4-way exchanges in relay mode).
    Bench(Box<calloutd_client::bench::BenchCommand>),
    /// Talk to a running server's control API (leases, pause/continue/stop, stats, metrics, config).
    Ctl(ctl::CtlArgs),
    /// Run scenario files against the engine and the callout on a virtual network (no root, no
    /// sockets); the callout runs in a child process (--isolate) unless --in-process. Exit 0: all
    /// expectations hold; 1: one failed; 2: an invalid scenario.
    Test(harness_cli::TestArgs),
    /// Feed the client messages of a capture (pcap, pcapng) through the engine and the callout
    /// (in-process unless --isolate).
    Replay(harness_cli::ReplayArgs),
    /// Show the whole idea in one command: a scripted scenario with a built-in callout.
    Demo,
    /// The isolated callout host (`--isolate`): started by `serve`/`check`, never by hand.
    #[command(name = "callout-host", hide = true)]
    CalloutHost(HostArgs),
}

/// The hidden host mode's arguments (given by the server that starts it).
#[derive(Debug, clap::Args)]
struct HostArgs {
    /// The inherited shared-memory file descriptor (the futex transport).
    #[arg(long, required_unless_present = "shm_path")]
    shm_fd: Option<i32>,
    /// The server's pid: the host exits when it is gone.
    #[arg(long, required_unless_present = "shm_path")]
    parent: Option<u32>,
    /// The shared-memory file to map (the pipe-doorbell transport of a PE host under wine).
    #[arg(long, requires_all = ["bell_in", "bell_out"], conflicts_with = "shm_fd")]
    shm_path: Option<PathBuf>,
    /// The FIFO the server posts slot indexes on.
    #[arg(long, requires = "shm_path")]
    bell_in: Option<PathBuf>,
    /// The FIFO the host answers on.
    #[arg(long, requires = "shm_path")]
    bell_out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match cli.command {
        Command::Serve(options) => serve(*options),
        Command::Check(options) => check(&options),
        Command::Client(cmd) => calloutd_client::cli::run(*cmd),
        Command::Bench(cmd) => calloutd_client::bench::run_bench(*cmd),
        Command::Ctl(args) => ctl::run(args),
        Command::Test(args) => harness_cli::test(args),
        Command::Replay(args) => harness_cli::replay(args),
        Command::Demo => harness_cli::demo(),
        Command::CalloutHost(args) => match (args.shm_path, args.bell_in, args.bell_out) {
            (Some(shm), Some(bell_in), Some(bell_out)) => {
                calloutd_callout::isolate::host_main_bells(&shm, &bell_in, &bell_out)
            }
            _ => match (args.shm_fd, args.parent) {
                (Some(fd), Some(parent)) => calloutd_callout::isolate::host_main(fd, parent),
                _ => ExitCode::FAILURE,
            },
        },
    }
}

/// Serves until SIGINT/SIGTERM; exit 0 after a clean stop.
fn serve(options: ServeOptions) -> ExitCode {
    init_logging();
    match calloutd_service::serve(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            tracing::error!("{reason}");
            eprintln!("calloutd serve: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// Exit 0 only when everything given is valid (and, with `--reg`, a callout loaded); 2 when there
/// was nothing to check.
fn check(options: &CheckOptions) -> ExitCode {
    match calloutd_service::check(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CheckFailure::NothingToCheck) => {
            eprintln!("calloutd check: nothing to check: give --reg FILE and/or --scopes FILE");
            ExitCode::from(2)
        }
        Err(CheckFailure::Invalid(reason)) => {
            eprintln!("calloutd check: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// Logging to stderr; `CALLOUTD_LOG` (an `EnvFilter` expression) sets the level, info by default.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CALLOUTD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Prints a clap error. Exit 2 is clap's usage code, but `calloutd client` reserves 2 for "timeout",
/// so its usage errors exit 3 (its "bad arguments" code); help and version exit 0.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let _ = e.print();
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if informational {
        ExitCode::SUCCESS
    } else if std::env::args().nth(1).as_deref() == Some("client") {
        ExitCode::from(calloutd_client::cli::EXIT_ERROR)
    } else {
        ExitCode::from(2)
    }
}

/// mimalloc instead of glibc's malloc: the packet path allocates and frees small buffers on every
/// datagram, and under load mimalloc's per-thread free lists cost measurably less CPU per exchange.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
