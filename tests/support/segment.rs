//! A network segment: a server namespace and a client namespace joined by a veth pair, calloutd
//! serving on the server side's interface with the trace callout.

use std::path::PathBuf;

use serde_json::Value;

use super::TracedRun;
use super::{
    check_traces_agree, fixture, repo_root, set_parameter_dword, strings, veth, write_callout_reg,
    NetNs,
};

/// Two namespaces joined by a veth pair, the server running. Fields drop in order: the client
/// namespace first (killing any client left in it), then the server, its namespace and the files.
pub struct Segment {
    /// The client side's namespace.
    pub client_ns: NetNs,
    /// The client side's end of the veth pair.
    pub client_if: String,
    /// The server and its logs.
    pub run: TracedRun,
    server_ns: NetNs,
    dir: tempfile::TempDir,
}

impl Segment {
    /// Creates namespaces `<tag>s` and `<tag>c` joined by veth `s<id>`/`c<id>`, gives the client end
    /// `client_mac` (when set) and the server end `server_cidr`, and starts `calloutd serve
    /// --interface s<id> --scopes SCOPES --workers WORKERS` there with the trace callout.
    pub fn start(
        tag: &str,
        server_cidr: &str,
        scopes: &str,
        workers: &str,
        client_mac: Option<&str>,
    ) -> Segment {
        let server_ns = NetNs::new(&format!("{tag}s")).unwrap();
        let client_ns = NetNs::new(&format!("{tag}c")).unwrap();
        // Interface names are per namespace, but keep them unique per process and test anyway.
        let id = format!("{tag}{}", std::process::id() % 10_000);
        let (server_if, client_if) = (format!("s{id}"), format!("c{id}"));
        veth(&server_ns, &server_if, &client_ns, &client_if).unwrap();
        if let Some(mac) = client_mac {
            client_ns
                .ip(&["link", "set", "dev", &client_if, "address", mac])
                .unwrap();
        }
        server_ns.add_addr(server_cidr, &server_if).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("callout.reg");
        // The segment tests check RFC 2131's unicast replies (renewals to ciaddr, the client's
        // broadcast flag honoured): IgnoreBroadcastFlag 0, not Microsoft's default 1.
        write_callout_reg(&reg, &[fixture("trace")]);
        set_parameter_dword(&reg, "IgnoreBroadcastFlag", 0);
        let run = TracedRun::start(
            &server_ns,
            dir.path(),
            1,
            &reg,
            &repo_root().join(scopes),
            &strings(&["--interface", &server_if, "--workers", workers]),
            &[],
        );
        Segment {
            client_ns,
            client_if,
            run,
            server_ns,
            dir,
        }
    }

    /// A path in the segment's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The server's log so far.
    pub fn server_log(&self) -> String {
        self.run.server_log()
    }

    /// Waits for `n` finished packets, stops the server (exit 0) and checks that both logs agree
    /// ([`check_traces_agree`]); returns the trace callout's log and the server's trace.
    pub fn stop_checked(&mut self, n: usize) -> (Vec<Value>, Vec<Value>) {
        self.run.wait_processed(n);
        let (log, trace) = self.run.stop();
        check_traces_agree(&log, &trace, "trace");
        (log, trace)
    }
}
