//! Test environments as guards: network namespaces, veth links and the calloutd server process.
//! Every guard tears down what it made in `Drop`, so a failing test leaves nothing behind, and
//! every wait here is bounded.
//!
//! Submodules: [`trace`] reads and checks the trace callout's log and the server's `--trace` file,
//! [`traced`] runs a server with both logs, [`segment`] joins a client namespace to a server
//! namespace by a veth pair.
#![allow(dead_code)]

pub mod segment;
pub mod trace;
pub mod traced;

// Each test binary uses a part of these.
#[allow(unused_imports)]
pub use segment::*;
#[allow(unused_imports)]
pub use trace::*;
#[allow(unused_imports)]
pub use traced::*;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The calloutd binary under test.
pub fn calloutd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_calloutd"))
}

/// The repository root.
/// Stops the wineserver of wine prefix `prefix` (when wine is installed), so a test that made the
/// prefix leaves no server behind.
pub fn stop_wineserver(prefix: &Path) {
    let Some(wine) = calloutd_callout::isolate::pe::find_wine() else {
        return;
    };
    for server in ["wineserver64", "wineserver"] {
        let path = wine.with_file_name(server);
        if path.exists() {
            let _ = Command::new(path)
                .arg("-k")
                .env("WINEPREFIX", prefix)
                .status();
            return;
        }
    }
}

/// Where scripts/build-windows.sh puts the wine copy of calloutd.exe (next to its ProcessPrng stub)
/// in this build's target dir: target/debug/calloutd -> target/x86_64-pc-windows-gnu/debug/wine/.
pub fn wine_calloutd_exe() -> PathBuf {
    let bin = calloutd_bin();
    let profile = bin.parent().and_then(Path::file_name).unwrap_or_default();
    let target = bin
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    target
        .join("x86_64-pc-windows-gnu")
        .join(profile)
        .join("wine/calloutd.exe")
}

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

/// The running test's name (libtest runs each test on a thread named after it), for messages.
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("a test thread")
        .to_string()
}

/// Owned copies of string arguments.
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

// ---- Bounded waiting ----

/// Calls `probe` every `every` until it gives a value; `None` when `limit` passes without one.
pub fn poll<T>(
    limit: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Polls `probe` (every 10 ms) until it gives a value, failing with `what` and `context()` after
/// `limit`.
pub fn wait_until<T>(
    limit: Duration,
    what: &str,
    context: impl Fn() -> String,
    probe: impl FnMut() -> Option<T>,
) -> T {
    poll(limit, Duration::from_millis(10), probe)
        .unwrap_or_else(|| panic!("{what} did not happen within {limit:?}:\n{}", context()))
}

/// Waits up to `limit` for `child` to exit; kills and reaps it when it does not (then `None`).
pub fn wait_or_kill(child: &mut Child, limit: Duration) -> io::Result<Option<ExitStatus>> {
    match poll(limit, Duration::from_millis(5), || {
        child.try_wait().transpose()
    }) {
        Some(status) => status.map(Some),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Ok(None)
        }
    }
}

// ---- Commands ----

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

/// Runs `cmd` with piped output, killing it when it outlives `limit` (the test then fails).
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Drain both pipes while waiting: a child that prints more than a pipe holds (64 KiB) would
    // otherwise block on its write and never exit.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let exited = wait_or_kill(&mut child, limit).expect("try_wait");
    let status = child.wait().expect("wait");
    let out = Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    if exited.is_none() {
        panic!(
            "{cmd:?} did not finish within {limit:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Reads a child's pipe to its end on a thread of its own.
fn drain<R: io::Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Runs `cmd` with stdout and stderr appended to `log` (a daemonizing program keeps no pipe of ours
/// open), killing it when it outlives `limit` (then an error with the log).
pub fn run_logged(mut cmd: Command, log: &Path, limit: Duration) -> io::Result<ExitStatus> {
    let out = fs::OpenOptions::new().create(true).append(true).open(log)?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()?;
    wait_or_kill(&mut child, limit)?.ok_or_else(|| {
        io::Error::other(format!(
            "{cmd:?} did not finish within {limit:?}:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        ))
    })
}

/// How a calloutd command exited and what it printed.
#[derive(Debug)]
pub struct CommandRun {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
    /// For `calloutd client --json`: the last stdout line that is a JSON object, or null.
    pub json: serde_json::Value,
}

/// Runs `calloutd ARGS` inside `ns`, bounded by `limit`.
pub fn run_calloutd(ns: &NetNs, args: &[&str], limit: Duration) -> CommandRun {
    let mut cmd = ns.command(&calloutd_bin());
    cmd.args(args);
    command_run(run_bounded(cmd, limit))
}

/// The exit code and output of a finished command, as text.
pub fn command_run(out: Output) -> CommandRun {
    CommandRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        json: serde_json::Value::Null,
    }
}

/// Option `code` of a reply as `calloutd client --json` printed it; panics when it is absent.
pub fn reply_option(reply: &serde_json::Value, code: u64) -> &serde_json::Value {
    reply["options"]
        .as_array()
        .expect("options")
        .iter()
        .find(|o| o["code"] == code)
        .unwrap_or_else(|| panic!("no option {code} in {reply}"))
}

/// Lower-case hex digits of `bytes`, without separators.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `calloutd client VERB --json --retries 0 --timeout TIMEOUT_S ARGS` inside `ns`, bounded by
/// three times the timeout plus 10 s.
pub fn run_client(ns: &NetNs, verb: &str, timeout_s: u64, args: &[&str]) -> CommandRun {
    let timeout = timeout_s.to_string();
    let mut all = vec![
        "client",
        verb,
        "--json",
        "--retries",
        "0",
        "--timeout",
        &timeout,
    ];
    all.extend_from_slice(args);
    let mut run = run_calloutd(ns, &all, Duration::from_secs(timeout_s * 3 + 10));
    if let Some(line) = run.stdout.lines().rev().find(|l| l.starts_with('{')) {
        run.json =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("client JSON: {e}: {line}"));
    }
    run
}

/// Runs the Python program `script` inside `ns` (bounded); it must succeed. For datagrams
/// `calloutd client` does not send.
pub fn run_python(ns: &NetNs, script: &str) {
    let mut cmd = ns.command(Path::new("python3"));
    cmd.args(["-c", script]);
    let out = run_bounded(cmd, Duration::from_secs(10));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends a 12-byte datagram (too short for BOOTP; bytes 4..8 make the xid 0xdeadbeef) to
/// 127.0.0.1:67 from inside `ns`.
pub fn send_garbage(ns: &NetNs) {
    run_python(
        ns,
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
         s.sendto(bytes.fromhex('01010600deadbeef6a756e6b'), ('127.0.0.1', 67))",
    );
}

/// Sends relayed DISCOVERs (giaddr 198.18.0.1, hops 1), one per (xid, MAC), back to back from one
/// socket inside `ns` to 127.0.0.1:67.
pub fn send_relayed_discovers(ns: &NetNs, packets: &[(u32, [u8; 6])]) {
    let list: Vec<String> = packets
        .iter()
        .map(|(xid, mac)| format!("({xid:#010x}, bytes({mac:?}))"))
        .collect();
    run_python(
        ns,
        &format!(
            "import socket\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             for xid, mac in [{}]:\n\
             \x20   p = bytearray(240)\n\
             \x20   p[0:4] = bytes([1, 1, 6, 1])\n\
             \x20   p[4:8] = xid.to_bytes(4, 'big')\n\
             \x20   p[24:28] = bytes([198, 18, 0, 1])\n\
             \x20   p[28:34] = mac\n\
             \x20   p[236:240] = bytes([99, 130, 83, 99])\n\
             \x20   p += bytes([53, 1, 1, 255])\n\
             \x20   s.sendto(p, ('127.0.0.1', 67))\n",
            list.join(", ")
        ),
    );
}

// ---- Network namespaces ----

static NS_COUNTER: AtomicUsize = AtomicUsize::new(0);

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

// ---- Processes ----

/// A child process with its stdout and stderr in a log file, killed (and reaped) when dropped.
pub struct LoggedChild {
    child: Option<Child>,
    /// Where the process's output goes.
    pub log: PathBuf,
}

impl LoggedChild {
    /// Spawns `cmd` (stdin null) with its output in a fresh file `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> io::Result<LoggedChild> {
        let out = fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(LoggedChild {
            child: Some(child),
            log,
        })
    }

    /// The process id, 0 once reaped (`ip netns exec` execs its program, so it is the program's).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The exit status if the process has exited.
    pub fn exited(&mut self) -> io::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => child.try_wait(),
            None => Ok(None),
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) for the process to exit on its own; on timeout kills it and errs.
    pub fn wait_exit(&mut self, limit: Duration) -> io::Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("already reaped"))?;
        wait_or_kill(&mut child, limit)?
            .ok_or_else(|| io::Error::other(format!("did not exit within {limit:?}")))
    }

    /// Sends `signal` (e.g. "TERM") and waits up to 15 s for the exit (then kills it and errs).
    pub fn stop_with(&mut self, signal: &str) -> io::Result<ExitStatus> {
        let pid = self.pid();
        if self.child.is_none() {
            return Err(io::Error::other("already stopped"));
        }
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status();
        self.wait_exit(Duration::from_secs(15))
            .map_err(|_| io::Error::other(format!("did not stop within 15 s of SIG{signal}")))
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running `calloutd serve`, stopped with SIGTERM (then SIGKILL) when dropped.
pub struct ServerProcess {
    process: LoggedChild,
}

impl ServerProcess {
    /// Starts `calloutd serve ARGS` inside `ns` and waits until it logs that it is serving.
    pub fn start(
        ns: &NetNs,
        args: &[String],
        log: PathBuf,
        envs: &[(&str, &str)],
    ) -> io::Result<ServerProcess> {
        ServerProcess::start_within(ns, args, log, envs, Duration::from_secs(20))
    }

    /// [`ServerProcess::start`], waiting up to `limit` for it to serve (a callout hosted under
    /// wine loads in seconds on a busy machine).
    pub fn start_within(
        ns: &NetNs,
        args: &[String],
        log: PathBuf,
        envs: &[(&str, &str)],
        limit: Duration,
    ) -> io::Result<ServerProcess> {
        let mut cmd = ns.command(&calloutd_bin());
        cmd.arg("serve").args(args);
        // Keep the server's data (audit log, mapped Windows paths) beside its log, never in the
        // machine's /var/lib/calloutd.
        if !args.iter().any(|a| a == "--data-dir") {
            let data = log.with_extension("data");
            cmd.arg("--data-dir").arg(&data);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut server = ServerProcess {
            process: LoggedChild::spawn(cmd, log)?,
        };
        server.wait_for_log("serving", limit)?;
        Ok(server)
    }

    /// Waits until the server log contains `needle`.
    pub fn wait_for_log(&mut self, needle: &str, limit: Duration) -> io::Result<()> {
        let found = poll(limit, Duration::from_millis(20), || {
            let text = self.process.log_text();
            if text.contains(needle) {
                return Some(Ok(()));
            }
            match self.process.exited() {
                Ok(Some(status)) => Some(Err(io::Error::other(format!(
                    "server exited with {status} before '{needle}':\n{text}"
                )))),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            }
        });
        found.unwrap_or_else(|| {
            Err(io::Error::other(format!(
                "server did not log '{needle}' within {limit:?}:\n{}",
                self.process.log_text()
            )))
        })
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        self.stop_with("TERM")
    }

    /// Sends `signal` (e.g. "INT") and waits (bounded) for the exit; returns the exit status.
    pub fn stop_with(&mut self, signal: &str) -> io::Result<ExitStatus> {
        self.process
            .stop_with(signal)
            .map_err(|e| io::Error::other(format!("server: {e}")))
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// The server's process id (`ip netns exec` execs it, so it is calloutd's).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Sends `signal` and waits up to `limit` for the exit (then kills it and errs).
    pub fn stop_within(&mut self, signal: &str, limit: Duration) -> io::Result<ExitStatus> {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
        self.process.wait_exit(limit)
    }
}

// ---- Files ----

/// Parses JSON Lines (blank lines skipped); `path` names the file in the panic on a bad line.
pub fn parse_jsonl(text: &str, path: &Path) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("bad JSON line in {}: {e}: {l}", path.display()))
        })
        .collect()
}

/// Reads a JSON Lines file into values (missing file = empty).
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    parse_jsonl(&fs::read_to_string(path).unwrap_or_default(), path)
}

/// Polls the JSON Lines file at `path` until `done` holds for its records (bounded by `limit`);
/// returns the records.
pub fn wait_for_jsonl(
    path: &Path,
    limit: Duration,
    what: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    // A line may be half-written while we read: only complete lines count.
    let complete_lines = || {
        let text = fs::read_to_string(path).unwrap_or_default();
        match text.rfind('\n') {
            Some(end) => text[..=end].to_string(),
            None => String::new(),
        }
    };
    let found = poll(limit, Duration::from_millis(10), || {
        let records = parse_jsonl(&complete_lines(), path);
        done(&records).then_some(records)
    });
    found.unwrap_or_else(|| {
        panic!(
            "{}: {what} did not happen within {limit:?}; records so far:\n{}",
            path.display(),
            complete_lines()
        )
    })
}

/// Writes a `.reg` file with `CalloutDlls` = `dlls` (absolute paths) and `CalloutEnabled` = 1.
pub fn write_callout_reg(path: &Path, dlls: &[PathBuf]) {
    let names: Vec<String> = dlls.iter().map(|p| p.display().to_string()).collect();
    write_parameters(path, &names, Some(1));
}

/// Sets the DWORD `name` of the DHCPServer Parameters key in the `.reg` file at `path` (rewritten).
pub fn set_parameter_dword(path: &Path, name: &str, value: u32) {
    let mut tree = calloutd_registry::RegistryTree::new();
    tree.apply_file(path).expect("read .reg");
    tree.set_value(
        calloutd_registry::DHCP_PARAMETERS_KEY,
        name,
        calloutd_registry::RegValueData::Dword(value),
        None,
    )
    .expect("set the value");
    calloutd_registry::write_reg_v5_file(&tree, path).expect("write .reg");
}

/// Writes a `.reg` file of the DHCPServer Parameters key with `CalloutDlls` = `dlls` (as given)
/// and `CalloutEnabled` = `enabled` (absent when `None`).
pub fn write_parameters(path: &Path, dlls: &[String], enabled: Option<u32>) {
    fs::write(path, calloutd_registry::write_parameters_reg(dlls, enabled)).expect("write .reg");
}

/// The fixture callout `name` (built on first use).
pub fn fixture(name: &str) -> PathBuf {
    calloutd_fixtures::library(name).unwrap_or_else(|e| panic!("building the {name} callout: {e}"))
}

/// Copies fixture callouts into `dir` as `<name>.so` for each (name, fixture), in that order (the
/// names set the alphabetical load order); returns the copies.
pub fn fixture_copies(dir: &Path, copies: &[(&str, &str)]) -> Vec<PathBuf> {
    copies
        .iter()
        .map(|(name, which)| {
            let to = dir.join(format!("{name}.so"));
            fs::copy(fixture(which), &to).unwrap();
            to
        })
        .collect()
}
