//! Test environments as guards: network namespaces, veth links and the calloutd server process.
//! Every guard tears down what it made in `Drop`, so a failing test leaves nothing behind.
#![allow(dead_code)]

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The calloutd binary under test.
pub fn calloutd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_calloutd"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// True when the test may create network namespaces; otherwise prints why the test is skipped.
pub fn have_root(test: &str) -> bool {
    // SAFETY-free check: `id -u` avoids a libc dependency in tests.
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref() == Some("0") {
        true
    } else {
        eprintln!("{test}: skipped: needs root for network namespaces (CI runs as root)");
        false
    }
}

static NS_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Runs a command to completion, failing with its output when it does not succeed.
pub fn run_ok(program: &str, args: &[&str]) -> io::Result<Output> {
    let out = Command::new(program).args(args).output()?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(io::Error::other(format!(
            "{program} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// A network namespace that exists while the guard lives; processes left inside are killed on drop.
pub struct NetNs {
    /// The namespace name (for `ip netns exec`).
    pub name: String,
}

impl NetNs {
    /// Creates a fresh namespace with its loopback up.
    pub fn new(tag: &str) -> io::Result<NetNs> {
        let n = NS_COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("cod-{tag}-{}-{n}", std::process::id());
        run_ok("ip", &["netns", "add", &name])?;
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs `ip -n <ns> ARGS`.
    pub fn ip(&self, args: &[&str]) -> io::Result<Output> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run_ok("ip", &all)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Adds an address to an interface of the namespace (only 198.18.0.0/15 and loopback addresses).
    pub fn add_addr(&self, cidr: &str, dev: &str) -> io::Result<()> {
        assert!(
            cidr.starts_with("198.18.") || cidr.starts_with("198.19.") || cidr.starts_with("127."),
            "test addresses must be in 198.18.0.0/15"
        );
        self.ip(&["addr", "add", cidr, "dev", dev]).map(|_| ())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Joins two namespaces with a veth pair named `a_dev` (in `a`) and `b_dev` (in `b`), both up.
pub fn veth(a: &NetNs, a_dev: &str, b: &NetNs, b_dev: &str) -> io::Result<()> {
    run_ok(
        "ip",
        &[
            "link", "add", a_dev, "netns", &a.name, "type", "veth", "peer", "name", b_dev, "netns",
            &b.name,
        ],
    )?;
    a.ip(&["link", "set", a_dev, "up"])?;
    b.ip(&["link", "set", b_dev, "up"])?;
    Ok(())
}

/// A running `calloutd serve`, stopped with SIGTERM (then SIGKILL) when dropped.
pub struct ServerProcess {
    child: Option<Child>,
    /// Where the server's stderr goes.
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts `calloutd serve ARGS` inside `ns` and waits until it logs that it is serving.
    pub fn start(
        ns: &NetNs,
        args: &[String],
        log: PathBuf,
        envs: &[(&str, &str)],
    ) -> io::Result<ServerProcess> {
        let logf = fs::File::create(&log)?;
        let mut cmd = ns.command(&calloutd_bin());
        cmd.arg("serve").args(args);
        // Keep the server's data (audit log, mapped Windows paths) beside its log, never in the
        // machine's /var/lib/calloutd.
        if !args.iter().any(|a| a == "--data-dir") {
            let data = log.with_extension("data");
            cmd.arg("--data-dir").arg(&data);
        }
        cmd.stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn()?;
        let mut server = ServerProcess {
            child: Some(child),
            log,
        };
        server.wait_for_log("serving", Duration::from_secs(20))?;
        Ok(server)
    }

    /// Waits until the server log contains `needle`.
    pub fn wait_for_log(&mut self, needle: &str, limit: Duration) -> io::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let text = fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains(needle) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    return Err(io::Error::other(format!(
                        "server exited with {status} before '{needle}':\n{text}"
                    )));
                }
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "server did not log '{needle}' within {limit:?}:\n{text}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("already stopped"))?;
        // `ip netns exec` execs the program, so the child pid is calloutd itself.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(
                    "server did not stop within 15 s of SIGTERM",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads a JSON Lines file into values (missing file = empty).
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("bad JSON line in {}: {e}: {l}", path.display()))
        })
        .collect()
}

// ---- Added for the end-to-end tests of the serve command (serve_e2e.rs, broadcast_e2e.rs). ----

/// Runs `cmd` with piped output, killing it when it outlives `limit` (the test then fails).
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("wait_with_output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait_with_output");
            panic!(
                "{cmd:?} did not finish within {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Writes a `.reg` file with `CalloutDlls` = `dlls` (absolute paths) and `CalloutEnabled` = 1.
pub fn write_callout_reg(path: &Path, dlls: &[PathBuf]) {
    let names: Vec<String> = dlls.iter().map(|p| p.display().to_string()).collect();
    fs::write(
        path,
        calloutd_registry::write_parameters_reg(&names, Some(1)),
    )
    .expect("write .reg");
}

/// Polls the JSON Lines file at `path` until `done` holds for its records (bounded by `limit`);
/// returns the records.
pub fn wait_for_jsonl(
    path: &Path,
    limit: Duration,
    what: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + limit;
    loop {
        // A line may be half-written while we read: only complete lines count.
        let text = fs::read_to_string(path).unwrap_or_default();
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        let records: Vec<serde_json::Value> = complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("bad JSON line in {}: {e}: {l}", path.display()))
            })
            .collect();
        if done(&records) {
            return records;
        }
        if Instant::now() > deadline {
            panic!(
                "{}: {what} did not happen within {limit:?}; records so far:\n{}",
                path.display(),
                complete
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How many `PktDrop(DHCP_DROP_PROCESSED)` calls the trace callout has logged (one per finished packet).
pub fn processed_count(records: &[serde_json::Value]) -> usize {
    records
        .iter()
        .filter(|r| r["hook"] == "PktDrop" && r["code"] == 11)
        .count()
}

/// One packet's hook calls in the trace callout's log, grouped by the PktContext NewPkt stored.
#[derive(Debug, Clone)]
pub struct PacketCalls {
    /// The packet's xid as NewPkt saw it (null for datagrams shorter than 8 bytes).
    pub xid: serde_json::Value,
    /// The context pointer NewPkt stored.
    pub ctx: u64,
    /// The calls, NewPkt first, in log order.
    pub calls: Vec<serde_json::Value>,
}

impl PacketCalls {
    /// The hook signatures: `Hook` or `Hook(0xCODE)` for hooks with a code.
    pub fn signature(&self) -> Vec<String> {
        self.calls.iter().map(hook_signature).collect()
    }

    /// The first call of `hook`.
    pub fn call(&self, hook: &str) -> &serde_json::Value {
        self.calls
            .iter()
            .find(|c| c["hook"] == hook)
            .unwrap_or_else(|| {
                panic!(
                    "no {hook} call in packet {:?}: {:?}",
                    self.xid,
                    self.signature()
                )
            })
    }
}

/// `Hook` or `Hook(0xCODE)`.
pub fn hook_signature(call: &serde_json::Value) -> String {
    let hook = call["hook"].as_str().unwrap_or("?");
    match call["code"].as_u64() {
        Some(code) => format!("{hook}({code:#x})"),
        None => hook.to_string(),
    }
}

/// Groups the packet hooks of a trace callout log (lines whose `dll` is `dll`) by PktContext: a
/// NewPkt opens a packet under the context it stored, later calls with that `ctx` join it, and
/// `PktDrop(DHCP_DROP_PROCESSED)` closes it (the callout frees the context there, so the pointer may
/// be reused afterwards). Panics on a call whose context belongs to no open packet, and on packets
/// never closed. Packets come in the order of their NewPkt.
pub fn callout_packets(records: &[serde_json::Value], dll: &str) -> Vec<PacketCalls> {
    let mut done: Vec<(usize, PacketCalls)> = Vec::new();
    let mut open: Vec<(usize, PacketCalls)> = Vec::new();
    let mut opened = 0;
    for r in records.iter().filter(|r| r["dll"] == dll) {
        match r["hook"].as_str() {
            Some("NewPkt") => {
                let ctx = r["ctx_out"].as_u64().expect("ctx_out");
                assert!(ctx != 0, "NewPkt stored no context: {r}");
                assert!(
                    !open.iter().any(|(_, p)| p.ctx == ctx),
                    "context {ctx:#x} of an open packet reused: {r}"
                );
                open.push((
                    opened,
                    PacketCalls {
                        xid: r["xid"].clone(),
                        ctx,
                        calls: vec![r.clone()],
                    },
                ));
                opened += 1;
            }
            Some("HandleOptions" | "PktSend" | "PktDrop" | "AddressDel" | "AddressOffer") => {
                let ctx = r["ctx"].as_u64().expect("ctx");
                let at = open
                    .iter()
                    .position(|(_, p)| p.ctx == ctx)
                    .unwrap_or_else(|| panic!("hook call with a context of no open packet: {r}"));
                open[at].1.calls.push(r.clone());
                if r["hook"] == "PktDrop" && r["code"] == 11 {
                    done.push(open.remove(at));
                }
            }
            _ => {}
        }
    }
    assert!(
        open.is_empty(),
        "packets without PktDrop(PROCESSED): {:?}",
        open.iter().map(|(_, p)| p.signature()).collect::<Vec<_>>()
    );
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, p)| p).collect()
}

/// What must hold for every packet in the trace callout's log: one xid and one valid context
/// throughout, `ip` = the receiving address, Reserved NULL, and exactly one
/// `PktDrop(DHCP_DROP_PROCESSED)`, as the last call.
pub fn check_packet(p: &PacketCalls, receiving_ip: &str) {
    let sig = p.signature();
    assert_eq!(p.calls[0]["hook"], "NewPkt", "{sig:?}");
    assert_eq!(
        p.calls[0]["ctx_in"], 0,
        "NewPkt gets a NULL context: {:?}",
        p.calls[0]
    );
    assert_eq!(
        sig.iter().filter(|s| *s == "PktDrop(0xb)").count(),
        1,
        "one PROCESSED per packet: {sig:?}"
    );
    assert_eq!(
        sig.last().map(String::as_str),
        Some("PktDrop(0xb)"),
        "PROCESSED is last: {sig:?}"
    );
    for c in &p.calls {
        assert_eq!(c["xid"], p.xid, "xid of the packet throughout: {c}");
        assert_eq!(c["reserved_null"], true, "Reserved is NULL: {c}");
        if c["hook"] != "NewPkt" {
            assert_eq!(c["ctx"], p.ctx, "PktContext from NewPkt: {c}");
            assert_eq!(
                c["ctx_valid"], true,
                "the context is the one NewPkt allocated: {c}"
            );
        }
        if !c["ip"].is_null() || c["hook"] != "HandleOptions" {
            assert_eq!(
                c["ip"], receiving_ip,
                "IpAddress = the receiving address: {c}"
            );
        }
    }
}

/// Checks the server's `--trace` file after a clean stop: Control START first and STOP last (under
/// the service lock), AddressOffer/AddressDel/DeleteClient under `["lease"]`, packet hooks under no
/// lock, no faults, every return 0, `seq` 1, 2, 3...
pub fn check_server_trace(trace: &[serde_json::Value]) {
    assert!(trace.len() >= 2, "trace too short: {trace:?}");
    let first = &trace[0];
    let last = &trace[trace.len() - 1];
    assert!(
        first["hook"] == "Control" && first["code"] == 1,
        "Control START first: {first}"
    );
    assert!(
        last["hook"] == "Control" && last["code"] == 2,
        "Control STOP last: {last}"
    );
    for (i, r) in trace.iter().enumerate() {
        assert_eq!(r["seq"], i as u64 + 1, "seq: {r}");
        let locks: Vec<&str> = r["locks"]
            .as_array()
            .expect("locks")
            .iter()
            .filter_map(|l| l.as_str())
            .collect();
        let expected: &[&str] = match r["hook"].as_str() {
            Some("AddressOffer" | "AddressDel" | "DeleteClient") => &["lease"],
            Some("Control") => &["service"],
            _ => &[],
        };
        assert_eq!(locks, expected, "locks of {r}");
        assert!(r.get("fault").is_none(), "no DLL fault: {r}");
        assert_eq!(r["ret"], 0, "{r}");
        assert!(
            r["thread"].as_u64().is_some() && r["dur_us"].as_u64().is_some(),
            "{r}"
        );
        if r["hook"] == "Control" {
            assert!(
                i == 0 || i == trace.len() - 1,
                "Control only at start and stop: {r}"
            );
        }
    }
}

/// The (hook, code, xid, alt) of each hook call: what the server's trace and the trace callout's
/// log must agree on (the callout's own Entry line left out).
pub fn call_projection(records: &[serde_json::Value], dll: Option<&str>) -> Vec<String> {
    records
        .iter()
        .filter(|r| dll.is_none_or(|d| r["dll"] == d) && r["hook"] != "Entry")
        .map(|r| {
            let xid = if r["hook"] == "Control" {
                serde_json::Value::Null
            } else {
                r["xid"].clone()
            };
            let alt = if r["hook"] == "AddressOffer" || r["hook"] == "AddressDel" {
                r["alt"].clone()
            } else {
                serde_json::Value::Null
            };
            format!("{} xid={xid} alt={alt}", hook_signature(r))
        })
        .collect()
}

impl ServerProcess {
    /// Sends `signal` (e.g. "INT") and waits (bounded) for the exit; returns the exit status.
    pub fn stop_with(&mut self, signal: &str) -> io::Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("already stopped"))?;
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "server did not stop within 15 s of SIG{signal}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
