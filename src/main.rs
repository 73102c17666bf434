//! calloutd: a DHCPv4 server that runs Microsoft DHCP Server callout DLLs outside Windows Server.
//!
//! This binary only parses arguments and wires the crates together; each subcommand's logic lives in
//! its crate.

mod callout_hooks;
mod check;
mod config_sources;
mod control_backend;
mod ctl;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

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
    Serve(Box<serve::ServeArgs>),
    /// Validate the configuration, load the callout and report what would run.
    Check(check::CheckArgs),
    /// Run one DHCP client exchange (for scripts and tests).
    Client(Box<calloutd_client::cli::ClientCommand>),
    /// Generate DHCP load against a server (4-way exchanges in relay mode).
    Bench(Box<calloutd_client::bench::BenchCommand>),
    /// Talk to a running server's control API (leases, pause/continue/stop, stats, metrics, config).
    Ctl(ctl::CtlArgs),
}

/// The registry and callout options shared by `serve` and `check`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegArgs {
    /// A `.reg` file with the DHCPServer Parameters (CalloutDlls, CalloutEnabled...). Several apply in
    /// order, as if each were `reg import`ed.
    #[arg(long = "reg", value_name = "FILE")]
    pub reg: Vec<PathBuf>,
    /// `live`: read HKLM\SYSTEM\CurrentControlSet\Services\DHCPServer\Parameters from the Windows
    /// registry first (Windows only); `--reg` files then apply on top of it.
    #[arg(long, value_enum, value_name = "SOURCE")]
    pub registry: Option<RegistrySource>,
    /// The order in which CalloutDlls entries are tried.
    #[arg(long, value_enum, default_value_t = LoadOrderArg::Alphabetical)]
    pub load_order: LoadOrderArg,
}

/// `--registry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RegistrySource {
    /// The live Windows registry.
    Live,
}

/// `--load-order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadOrderArg {
    /// Case-insensitive alphabetical order of the full strings (Microsoft's documented behaviour).
    Alphabetical,
    /// The order the multi-sz lists them in.
    Listed,
}

impl From<LoadOrderArg> for calloutd_callout::LoadOrder {
    fn from(order: LoadOrderArg) -> Self {
        match order {
            LoadOrderArg::Alphabetical => calloutd_callout::LoadOrder::Alphabetical,
            LoadOrderArg::Listed => calloutd_callout::LoadOrder::Listed,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Check(args) => check::run(args),
        Command::Client(cmd) => calloutd_client::cli::run(*cmd),
        Command::Bench(cmd) => calloutd_client::bench::run_bench(*cmd),
        Command::Ctl(args) => ctl::run(args),
    }
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
