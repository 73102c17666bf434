//! `calloutd test`, `calloutd replay` and `calloutd demo`: arguments in, `calloutd-harness` does
//! the rest.

use std::path::PathBuf;
use std::process::ExitCode;

use calloutd_harness::HostMode;

/// `calloutd test SCENARIO.toml... [--junit FILE] [--trace FILE]`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Scenario files (format: docs/scenarios.md).
    #[arg(required = true, value_name = "SCENARIO.toml")]
    scenarios: Vec<PathBuf>,
    /// Write a JUnit XML report (one test case per scenario) to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write one JSON line per hook call to FILE (the schema of `serve --trace`).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Relative CalloutDlls entries of the scenarios' .reg files resolve in DIR.
    #[arg(long, value_name = "DIR")]
    callouts: Option<PathBuf>,
    #[command(flatten)]
    host: HostArgs,
}

/// `--isolate` / `--in-process`, and the isolated host's switches (those of `serve --isolate`).
#[derive(Debug, clap::Args)]
pub struct HostArgs {
    #[command(flatten)]
    isolate: calloutd_service::IsolateOptions,
    /// Run the callout in this process (as Microsoft DHCP Server does): faster, but a crash in
    /// the DLL ends the run.
    #[arg(long, conflicts_with = "isolate")]
    in_process: bool,
}

impl HostArgs {
    /// The mode asked for, `isolated` when neither switch is given and `isolated_by_default`. The
    /// host is this very binary (`current_exe`) in its hidden `callout-host` mode.
    fn mode(&self, isolated_by_default: bool) -> Result<HostMode, String> {
        let isolated = if self.in_process {
            false
        } else {
            self.isolate.isolate || isolated_by_default
        };
        if !isolated {
            return Ok(HostMode::InProcess);
        }
        Ok(HostMode::Isolated(Box::new(self.isolate.options()?)))
    }
}

/// `calloutd replay CAPTURE --reg FILE... --scopes FILE [--json] [--realtime]`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The capture (pcap or pcapng; Ethernet, Linux cooked or raw IP).
    #[arg(value_name = "CAPTURE")]
    capture: PathBuf,
    /// `.reg` files with the callout configuration (CalloutDlls, CalloutEnabled...).
    #[arg(long = "reg", value_name = "FILE")]
    reg: Vec<PathBuf>,
    /// The scope configuration: Export-DhcpServer XML or a `netsh dhcp server dump`.
    #[arg(long, value_name = "FILE")]
    scopes: PathBuf,
    /// The server address the messages arrive on (default: the first scope's first address).
    #[arg(long, value_name = "IP")]
    server: Option<std::net::Ipv4Addr>,
    /// One JSON object per client message instead of text.
    #[arg(long)]
    json: bool,
    /// Keep the capture's timing instead of compressing time.
    #[arg(long)]
    realtime: bool,
    /// Write one JSON line per hook call to FILE (the schema of `serve --trace`).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    #[command(flatten)]
    host: HostArgs,
}

/// Runs `calloutd test`: isolated unless `--in-process`.
pub fn test(args: TestArgs) -> ExitCode {
    let mode = match args.host.mode(true) {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("calloutd test: {e}");
            return ExitCode::from(calloutd_harness::EXIT_FAILED);
        }
    };
    let options = calloutd_harness::TestOptions {
        junit: args.junit,
        trace: args.trace,
        callout_dir: args.callouts,
        mode,
    };
    ExitCode::from(calloutd_harness::run_files(&args.scenarios, &options))
}

/// Runs `calloutd replay`: in-process unless `--isolate`.
pub fn replay(args: ReplayArgs) -> ExitCode {
    let mode = match args.host.mode(false) {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("calloutd replay: {e}");
            return ExitCode::from(2);
        }
    };
    let options = calloutd_harness::replay::ReplayOptions {
        capture: args.capture,
        reg: args.reg,
        scopes: args.scopes,
        server: args.server,
        json: args.json,
        realtime: args.realtime,
        trace: args.trace,
        mode,
    };
    ExitCode::from(calloutd_harness::replay::run(&options))
}

/// Runs `calloutd demo`.
pub fn demo() -> ExitCode {
    ExitCode::from(calloutd_harness::demo::run())
}
