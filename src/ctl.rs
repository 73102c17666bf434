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
    verb: ControlVerb,
}

/// Sends the verb; prints the answer, or the API's error on stderr with exit 1.
pub fn run(args: CtlArgs) -> ExitCode {
    let verb = args.verb;
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
