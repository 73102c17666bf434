//! The callout developer's harness: `calloutd test`, `calloutd replay` and `calloutd demo`.
//!
//! One driver, [`VirtualNet`], runs the real engine and the real callout on a virtual network:
//! datagrams go straight into the engine's pipeline (`PacketHandler::handle`, every hook
//! included), no socket, no root, and a manual clock that moves only when told. It plays the
//! runtime's part: Control START/PAUSE/CONTINUE/STOP, the PAUSED/DUPLICATE/NOMEM/TIMEOUT
//! admission drops, the expired-lease purge. The scenario runner ([`run`]), the capture replay
//! ([`replay`]) and the demo ([`demo`]) all drive it, so there is no second DHCP implementation:
//! `serve` and `test` run the same engine.
//!
//! Not for: real sockets (the server crate), or the scenario format's documentation
//! (docs/scenarios.md).
//!
//! ```no_run
//! use calloutd_harness::{run_files, TestOptions};
//! let exit = run_files(&["fixtures/scenarios/dora-trace.toml".into()], &TestOptions::default());
//! assert_eq!(exit, 0);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod demo;
pub mod net;
pub mod replay;
pub mod report;
pub mod run;
pub mod scenario;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use net::{HostMode, NetConfig, SharedWriter, VirtualNet};
pub use run::{run_scenario, RunOptions, ScenarioReport};
pub use scenario::{Scenario, ScenarioError};

/// Exit status: every expectation held.
pub const EXIT_PASSED: u8 = 0;
/// Exit status: an expectation failed (or a scenario could not be set up).
pub const EXIT_FAILED: u8 = 1;
/// Exit status: a scenario file is invalid.
pub const EXIT_INVALID: u8 = 2;

/// `calloutd test` options.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Write JUnit XML here.
    pub junit: Option<PathBuf>,
    /// Write every hook call here (JSON Lines, as `serve --trace`).
    pub trace: Option<PathBuf>,
    /// Relative CalloutDlls entries resolve here.
    pub callout_dir: Option<PathBuf>,
    /// In-process or isolated.
    pub mode: HostMode,
}

/// Runs scenario files and prints the report to stdout; returns the exit status: 0 when every
/// expectation holds, 1 when one fails, 2 when a file is invalid (reported as `file:line`).
pub fn run_files(paths: &[PathBuf], options: &TestOptions) -> u8 {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let trace = match &options.trace {
        None => None,
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => Some(SharedWriter(Arc::new(Mutex::new(Box::new(file))))),
            Err(e) => {
                let _ = writeln!(out, "{}: cannot create the trace file: {e}", path.display());
                return EXIT_INVALID;
            }
        },
    };
    let run_options = RunOptions {
        callout_dir: options.callout_dir.clone(),
        trace: trace.clone(),
        mode: options.mode.clone(),
    };
    let mut reports = Vec::new();
    let mut invalid = Vec::new();
    for path in paths {
        match scenario::load(path) {
            Ok(scenario) => {
                let report = run_scenario(&scenario, &run_options);
                let _ = write!(out, "{}", report::text(&report));
                reports.push(report);
            }
            Err(errors) => {
                let _ = write!(out, "{}", report::invalid(&errors));
                invalid.push((path.clone(), errors));
            }
        }
    }
    if let Some(mut trace) = trace {
        let _ = trace.flush();
    }
    let skipped = reports.iter().filter(|r| r.is_skipped()).count();
    let failed = reports.iter().filter(|r| !r.passed()).count();
    let passed = reports.len() - failed - skipped;
    let _ = write!(
        out,
        "{passed} passed, {failed} failed, {} invalid",
        invalid.len()
    );
    if skipped > 0 {
        let _ = write!(out, ", {skipped} skipped");
    }
    let _ = writeln!(out);
    if let Some(junit) = &options.junit {
        if let Err(e) = std::fs::write(junit, report::junit(&reports, &invalid)) {
            let _ = writeln!(
                out,
                "{}: cannot write the JUnit report: {e}",
                junit.display()
            );
            return EXIT_FAILED.max(if invalid.is_empty() { 0 } else { EXIT_INVALID });
        }
    }
    if !invalid.is_empty() {
        EXIT_INVALID
    } else if failed > 0 {
        EXIT_FAILED
    } else {
        EXIT_PASSED
    }
}
