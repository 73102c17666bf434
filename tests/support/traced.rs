//! A `calloutd serve` run that writes both logs the tests read: the trace callout's log
//! (CALLOUT_TRACE_FILE) and the server's `--trace` file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{processed_count, read_jsonl, wait_for_jsonl, NetNs, ServerProcess};

/// A server started with `--trace` and the trace callout's log, and the paths of both logs.
/// (`Default`: no server yet, for a guard that starts one later.)
#[derive(Default)]
pub struct TracedRun {
    /// The server while it runs (dropping it kills the server).
    pub server: Option<ServerProcess>,
    /// The trace callout's log (CALLOUT_TRACE_FILE).
    pub callout_log: PathBuf,
    /// The server's `--trace` file.
    pub server_trace: PathBuf,
}

impl TracedRun {
    /// Starts `calloutd serve --reg REG --scopes SCOPES --lease-db DIR/leases.sqlite3 --trace
    /// DIR/server-trace-RUN.jsonl ARGS` inside `ns`, with CALLOUT_TRACE_FILE = DIR/callout-RUN.jsonl
    /// and `envs`, its output in DIR/server-RUN.log; waits until it serves.
    pub fn start(
        ns: &NetNs,
        dir: &Path,
        run: usize,
        reg: &Path,
        scopes: &Path,
        args: &[String],
        envs: &[(&str, &str)],
    ) -> TracedRun {
        let callout_log = dir.join(format!("callout-{run}.jsonl"));
        let server_trace = dir.join(format!("server-trace-{run}.jsonl"));
        let path = |p: &Path| p.to_str().expect("UTF-8 path").to_string();
        let mut all = vec![
            "--reg".to_string(),
            path(reg),
            "--scopes".to_string(),
            path(scopes),
            "--lease-db".to_string(),
            path(&dir.join("leases.sqlite3")),
            "--trace".to_string(),
            path(&server_trace),
        ];
        all.extend_from_slice(args);
        let log_file = path(&callout_log);
        let mut all_envs = vec![("CALLOUT_TRACE_FILE", log_file.as_str())];
        all_envs.extend_from_slice(envs);
        let log = dir.join(format!("server-{run}.log"));
        let server = ServerProcess::start(ns, &all, log, &all_envs).expect("start calloutd serve");
        TracedRun {
            server: Some(server),
            callout_log,
            server_trace,
        }
    }

    /// Waits (10 s at most) until the trace callout has logged `n` finished packets (PktDrop
    /// PROCESSED); returns its log.
    pub fn wait_processed(&self, n: usize) -> Vec<Value> {
        wait_processed(&self.callout_log, n, Duration::from_secs(10))
    }

    /// The server's log so far (empty once stopped).
    pub fn server_log(&self) -> String {
        self.server
            .as_ref()
            .map(ServerProcess::log_text)
            .unwrap_or_default()
    }

    /// Stops the server with SIGTERM; see [`TracedRun::stop_with`].
    pub fn stop(&mut self) -> (Vec<Value>, Vec<Value>) {
        self.stop_with("TERM")
    }

    /// Stops the server with `signal` (it must exit 0) and returns the trace callout's log and the
    /// server's trace.
    pub fn stop_with(&mut self, signal: &str) -> (Vec<Value>, Vec<Value>) {
        let mut server = self.server.take().expect("server running");
        let status = server.stop_with(signal).expect("stop the server");
        assert!(
            status.success(),
            "calloutd serve exit status after SIG{signal}: {status}:\n{}",
            server.log_text()
        );
        (
            read_jsonl(&self.callout_log),
            read_jsonl(&self.server_trace),
        )
    }
}

/// Waits up to `limit` until the trace callout's log at `callout_log` shows `n` finished packets
/// (PktDrop PROCESSED); returns the log.
pub fn wait_processed(callout_log: &Path, n: usize, limit: Duration) -> Vec<Value> {
    wait_for_jsonl(callout_log, limit, &format!("{n} packets processed"), |r| {
        processed_count(r) >= n
    })
}
