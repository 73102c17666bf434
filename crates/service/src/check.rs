//! `calloutd check`: validate the configuration, load the callout, report what would run.

use std::path::PathBuf;

use calloutd_callout::{load_callout, LoadStatus};

use crate::sources::{callout_config, callouts_off_reason, read_registry};
use crate::{IsolateOptions, RegOptions};

/// `calloutd check --reg FILE... [--scopes FILE]`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct CheckOptions {
    /// The registry files and the callout load order.
    #[cfg_attr(feature = "clap", command(flatten))]
    pub reg: RegOptions,
    /// Whether the callout is loaded in an isolated host, as `serve --isolate` would.
    #[cfg_attr(feature = "clap", command(flatten))]
    pub isolate: IsolateOptions,
    /// A scope file: Export-DhcpServer XML or a `netsh dhcp server dump`.
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE"))]
    pub scopes: Option<PathBuf>,
}

/// Why `check` did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckFailure {
    /// Neither `--reg` nor `--scopes` was given (a usage error).
    NothingToCheck,
    /// Something given is invalid, or no callout loaded: the one-line reason.
    Invalid(String),
}

/// Runs the check, printing what it found to stdout; `Ok` only when everything given is valid (and,
/// with `--reg`, a callout loaded).
pub fn check(args: &CheckOptions) -> Result<(), CheckFailure> {
    // `--registry live` is a registry source like `--reg FILE`.
    let registry_given = !args.reg.reg.is_empty() || args.reg.registry.is_some();
    if !registry_given && args.scopes.is_none() {
        return Err(CheckFailure::NothingToCheck);
    }
    let mut failure: Option<String> = None;
    if registry_given {
        if let Err(reason) = check_registry(&args.reg, &args.isolate) {
            failure.get_or_insert(reason);
        }
    }
    if let Some(scopes) = &args.scopes {
        match calloutd_config::load_scopes(scopes) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    println!("warning: {w}");
                }
                print!("{}", calloutd_config::scope_report(&loaded.config));
            }
            Err(errors) => {
                for w in &errors.warnings {
                    println!("warning: {w}");
                }
                for e in &errors.errors {
                    println!("error: {e}");
                }
                failure.get_or_insert(format!(
                    "{}: {} error(s) in the scope configuration",
                    scopes.display(),
                    errors.errors.len()
                ));
            }
        }
    }
    match failure {
        None => {
            println!("check: OK");
            Ok(())
        }
        Some(reason) => Err(CheckFailure::Invalid(reason)),
    }
}

/// Reads the `.reg` files and loads the callout, printing what happened; `Err` is the one-line reason.
fn check_registry(args: &RegOptions, isolate: &IsolateOptions) -> Result<(), String> {
    let registry = read_registry(args)?;
    for w in &registry.warnings {
        println!("warning: {w}");
    }
    for unused in &registry.unused {
        println!("warning: {unused}");
    }
    if let Some(reason) = callouts_off_reason(&registry.params) {
        return Err(reason);
    }
    let config = callout_config(&registry.params, args);
    // A Windows DLL (PE) on Linux is hosted under wine, which is the isolated host.
    let report = if isolate.isolate || calloutd_callout::isolate::needs_windows_host(&config) {
        // The host is stopped when the callout is dropped at the end of the check.
        calloutd_callout::isolate::IsolatedCallout::load(&config, isolate.options()?).report
    } else {
        load_callout(&config).report
    };
    let report = &report;
    if let Some(d) = &registry.params.callout_dlls {
        println!("CalloutDlls ({}): {}", d.location(), d.value.join(", "));
    }
    println!("load order: {}", report.candidates.join(", "));
    for warning in report.permission_warnings() {
        println!("warning: {warning}");
    }
    for attempt in report.failed_attempts() {
        println!("warning: {attempt}");
    }
    match (report.status, &report.loaded) {
        (LoadStatus::Loaded, Some(dll)) => {
            println!("loaded: {} ({})", dll.entry, dll.path.display());
            if let Some(digest) = &dll.sha256 {
                println!("SHA-256: {digest}");
            }
            println!("ChainDlls: [{}]", dll.chain_dlls.join(", "));
            let hooks: Vec<&str> = dll.hooks.iter().map(|h| h.table_slot()).collect();
            println!("hooks: {}", hooks.join(", "));
            Ok(())
        }
        _ => {
            let why: Vec<String> = report
                .attempts
                .iter()
                .map(|a| format!("{}: {}", a.entry, a.outcome))
                .collect();
            Err(format!(
                "no callout DLL could be loaded: {}",
                why.join("; ")
            ))
        }
    }
}
