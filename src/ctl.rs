//! `calloutd ctl`: the client of the control API (`calloutd serve --control`).

use std::io::Write;
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

/// The exit status when the reader of our output went away (a shell shows 128 + SIGPIPE for a
/// process killed by it, so scripts see the same either way).
const EXIT_BROKEN_PIPE: u8 = 141;

/// Sends the verb; prints the answer, or the API's error on stderr with exit 1. A closed stdout
/// (`ctl leases | head`) ends it quietly with [`EXIT_BROKEN_PIPE`].
pub fn run(args: CtlArgs) -> ExitCode {
    let verb = args.verb;
    let token = args
        .token
        .or_else(|| std::env::var(CONTROL_TOKEN_ENV).ok())
        .filter(|t| !t.is_empty());
    match call(&args.control, token.as_deref(), &verb) {
        Ok(body) => {
            let mut out = std::io::stdout().lock();
            match out.write_all(body.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    ExitCode::from(EXIT_BROKEN_PIPE)
                }
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "calloutd ctl: writing the answer: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(message) => {
            // Not eprintln!: it panics when stderr is a closed pipe.
            let _ = writeln!(std::io::stderr(), "calloutd ctl: {message}");
            ExitCode::FAILURE
        }
    }
}
