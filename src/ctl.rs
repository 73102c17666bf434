//! `calloutd ctl`: the client of the control API (`calloutd serve --control`).

use std::process::ExitCode;

use calloutd_server::control::{CONTROL_TOKEN_ENV, DEFAULT_CONTROL_ADDR};
use calloutd_server::control_client::{call, ControlVerb};

/// `calloutd ctl [--control ADDR:PORT] [--token T] VERB`.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The control API's address.
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_CONTROL_ADDR, global = true)]
    control: String,
    /// The bearer token (default: $CALLOUTD_CONTROL_TOKEN).
    #[arg(long, value_name = "TOKEN", global = true)]
    token: Option<String>,
    #[command(subcommand)]
    verb: CtlVerb,
}

#[derive(Debug, clap::Subcommand)]
enum CtlVerb {
    /// List the leases (JSON).
    Leases {
        /// Only the leases of this scope (its subnet address).
        #[arg(long, value_name = "SCOPE")]
        scope: Option<String>,
    },
    /// Delete the lease of IP (DeleteClient is called first).
    DeleteLease {
        /// The leased address.
        ip: String,
    },
    /// Pause the service (Control PAUSE; packets are dropped with DHCP_DROP_PAUSED).
    Pause,
    /// Continue a paused service (Control CONTINUE).
    Continue,
    /// Stop the server.
    Stop,
    /// The statistics (JSON).
    Stats,
    /// The statistics as Prometheus text.
    Metrics,
    /// The effective configuration (JSON).
    Config,
}

/// Sends the verb; prints the answer, or the API's error on stderr with exit 1.
pub fn run(args: CtlArgs) -> ExitCode {
    let verb = match args.verb {
        CtlVerb::Leases { scope } => ControlVerb::Leases { scope },
        CtlVerb::DeleteLease { ip } => ControlVerb::DeleteLease { ip },
        CtlVerb::Pause => ControlVerb::Pause,
        CtlVerb::Continue => ControlVerb::Continue,
        CtlVerb::Stop => ControlVerb::Stop,
        CtlVerb::Stats => ControlVerb::Stats,
        CtlVerb::Metrics => ControlVerb::Metrics,
        CtlVerb::Config => ControlVerb::Config,
    };
    let token = args
        .token
        .or_else(|| std::env::var(CONTROL_TOKEN_ENV).ok())
        .filter(|t| !t.is_empty());
    match call(&args.control, token.as_deref(), &verb) {
        Ok(body) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("calloutd ctl: {message}");
            ExitCode::FAILURE
        }
    }
}
