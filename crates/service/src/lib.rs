//! Assembles calloutd's long-running service and its configuration check from what the user gave:
//! the `.reg` files, the scope file and the switches.
//!
//! - [`serve()`]: reads the registry and the scopes, loads the callout, maps the Windows paths
//!   (DatabasePath, DhcpLogFilePath) under the data directory, opens the lease database and the audit
//!   log, imports exported leases, starts the runtime with its purge timer and the control API, and
//!   serves until stopped.
//! - [`check()`]: validates the same inputs and loads the callout, printing what would run.
//! - [`sources`]: the registry side of both (Parameters, the callout's loading configuration).
//!
//! Not for: argument parsing (the binary's; with the `clap` feature the option structs derive
//! `clap::Args`), DHCP logic (the engine's), sockets (the runtime's) or calling a DLL (the callout
//! crate's).
//!
//! ```no_run
//! use calloutd_service::{check, CheckOptions, LoadOrderArg, RegOptions};
//!
//! let options = CheckOptions {
//!     reg: RegOptions { reg: vec!["dhcp.reg".into()], load_order: LoadOrderArg::Alphabetical },
//!     scopes: Some("lab.xml".into()),
//! };
//! if let Err(failure) = check(&options) {
//!     eprintln!("{failure:?}");
//! }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backend;
mod check;
mod serve;
pub mod sources;

use std::path::PathBuf;

pub use check::{check, CheckFailure, CheckOptions};
pub use serve::{serve, DeleteClientArg, ServeOptions};

/// The registry and callout options shared by `serve` and `check`.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct RegOptions {
    /// A `.reg` file with the DHCPServer Parameters (CalloutDlls, CalloutEnabled...). Several apply in
    /// order, as if each were `reg import`ed.
    #[cfg_attr(feature = "clap", arg(long = "reg", value_name = "FILE"))]
    pub reg: Vec<PathBuf>,
    /// The order in which CalloutDlls entries are tried.
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value_t = LoadOrderArg::Alphabetical))]
    pub load_order: LoadOrderArg,
}

/// `--load-order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LoadOrderArg {
    /// Case-insensitive alphabetical order of the full strings (Microsoft's documented behaviour).
    #[default]
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
