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
    /// The isolated callout host (`--isolate`): started by `serve`/`check`, never by hand.
    #[command(name = "callout-host", hide = true)]
    CalloutHost(HostArgs),
}

/// The hidden host mode's arguments (given by the server that starts it).
#[derive(Debug, clap::Args)]
struct HostArgs {
    /// The inherited shared-memory file descriptor.
    #[arg(long)]
    shm_fd: i32,
    /// The server's pid: the host exits when it is gone.
    #[arg(long)]
    parent: u32,
}

/// The isolation switches shared by `serve` and `check`.
#[derive(Debug, Clone, clap::Args)]
pub struct IsolateArgs {
    /// Run the callout in a child process: a crash or a hang in a hook is reported (event 1031)
    /// and survived instead of ending the server.
    #[arg(long)]
    pub isolate: bool,
    /// With --isolate: a hook call not back within this many milliseconds is a hang, handled like
    /// a crash (the host is killed).
    #[arg(long, value_name = "MS", default_value_t = calloutd_callout::isolate::DEFAULT_HOOK_TIMEOUT.as_millis() as u64)]
    pub hook_timeout_ms: u64,
    /// With --isolate: after a crash or hang, restart the host (default; disabled after 5 crashes
    /// within 60 s), disable the callout, or stop the server.
    #[arg(long, value_enum, default_value_t = CrashPolicyArg::Restart)]
    pub on_callout_crash: CrashPolicyArg,
}

/// `--on-callout-crash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CrashPolicyArg {
    /// Start a new host and keep calling the DLL (Microsoft ignores the exception and keeps
    /// calling it); disable it after 5 crashes within 60 s.
    Restart,
    /// Serve without the callout from the first crash on.
    Disable,
    /// Stop the server (for callouts without which it must not answer).
    Stop,
}

impl IsolateArgs {
    /// The options for the host: this binary in its hidden host mode.
    pub fn options(&self) -> Result<calloutd_callout::isolate::IsolateOptions, String> {
        use calloutd_callout::isolate::{CrashPolicy, IsolateOptions};
        let program = std::env::current_exe()
            .map_err(|e| format!("cannot find the calloutd binary for the callout host: {e}"))?;
        let mut options = IsolateOptions::new(program, vec!["callout-host".into()]);
        options.hook_timeout = std::time::Duration::from_millis(self.hook_timeout_ms.max(1));
        options.on_crash = match self.on_callout_crash {
            CrashPolicyArg::Restart => CrashPolicy::Restart,
            CrashPolicyArg::Disable => CrashPolicy::Disable,
            CrashPolicyArg::Stop => CrashPolicy::Stop,
        };
        Ok(options)
    }
}

/// The registry and callout options shared by `serve` and `check`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegArgs {
    /// A `.reg` file with the DHCPServer Parameters (CalloutDlls, CalloutEnabled...). Several apply in
    /// order, as if each were `reg import`ed.
    #[arg(long = "reg", value_name = "FILE")]
    pub reg: Vec<PathBuf>,
    /// The order in which CalloutDlls entries are tried.
    #[arg(long, value_enum, default_value_t = LoadOrderArg::Alphabetical)]
    pub load_order: LoadOrderArg,
    /// Refuse to load a callout DLL that a user other than calloutd's own or root could have
    /// written (the file or any folder above it), instead of warning.
    #[arg(long)]
    pub strict_dll_permissions: bool,
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
        Command::CalloutHost(args) => {
            calloutd_callout::isolate::host_main(args.shm_fd, args.parent)
        }
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
