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
//! use calloutd_service::{check, CheckOptions, IsolateOptions, RegOptions};
//!
//! let options = CheckOptions {
//!     reg: RegOptions { reg: vec!["dhcp.reg".into()], ..RegOptions::default() },
//!     scopes: Some("lab.xml".into()),
//!     isolate: IsolateOptions::default(),
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
pub use serve::{serve, DeleteClientArg, PinWorkersArg, ServeOptions};

/// The registry and callout options shared by `serve` and `check`.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct RegOptions {
    /// A `.reg` file with the DHCPServer Parameters (CalloutDlls, CalloutEnabled...). Several apply in
    /// order, as if each were `reg import`ed.
    #[cfg_attr(feature = "clap", arg(long = "reg", value_name = "FILE"))]
    pub reg: Vec<PathBuf>,
    /// `live`: read HKLM\SYSTEM\CurrentControlSet\Services\DHCPServer\Parameters from the Windows
    /// registry first (Windows only); `--reg` files then apply on top of it.
    #[cfg_attr(feature = "clap", arg(long, value_enum, value_name = "SOURCE"))]
    pub registry: Option<RegistrySource>,
    /// The order in which CalloutDlls entries are tried.
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value_t = LoadOrderArg::Alphabetical))]
    pub load_order: LoadOrderArg,
    /// Refuse to load a callout DLL that a user other than calloutd's own or root could have
    /// written (the file or any folder above it), instead of warning.
    #[cfg_attr(feature = "clap", arg(long))]
    pub strict_dll_permissions: bool,
}

/// `--registry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum RegistrySource {
    /// The live Windows registry.
    Live,
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

/// The isolation switches shared by `serve` and `check`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct IsolateOptions {
    /// Run the callout in a child process: a crash or a hang in a hook is reported (event 1031)
    /// and survived instead of ending the server.
    #[cfg_attr(feature = "clap", arg(long))]
    pub isolate: bool,
    /// With --isolate: a hook call not back within this many milliseconds is a hang, handled like
    /// a crash (the host is killed).
    #[cfg_attr(feature = "clap", arg(long, value_name = "MS", default_value_t = calloutd_callout::isolate::DEFAULT_HOOK_TIMEOUT.as_millis() as u64))]
    pub hook_timeout_ms: u64,
    /// With --isolate: after a crash or hang, restart the host (default; disabled after 5 crashes
    /// within 60 s), disable the callout, or stop the server.
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value_t = CrashPolicyArg::Restart))]
    pub on_callout_crash: CrashPolicyArg,
}

impl Default for IsolateOptions {
    fn default() -> Self {
        IsolateOptions {
            isolate: false,
            hook_timeout_ms: calloutd_callout::isolate::DEFAULT_HOOK_TIMEOUT.as_millis() as u64,
            on_callout_crash: CrashPolicyArg::Restart,
        }
    }
}

/// `--on-callout-crash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum CrashPolicyArg {
    /// Start a new host and keep calling the DLL (Microsoft ignores the exception and keeps
    /// calling it); disable it after 5 crashes within 60 s.
    #[default]
    Restart,
    /// Serve without the callout from the first crash on.
    Disable,
    /// Stop the server (for callouts without which it must not answer).
    Stop,
}

impl IsolateOptions {
    /// The options for the host: the running `calloutd` binary in its hidden `callout-host` mode.
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
