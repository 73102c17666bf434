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
    let uid = Command::new("id").arg("-u").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
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
        assert!(cidr.starts_with("198.18.") || cidr.starts_with("198.19.") || cidr.starts_with("127."), "test addresses must be in 198.18.0.0/15");
        self.ip(&["addr", "add", cidr, "dev", dev]).map(|_| ())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Joins two namespaces with a veth pair named `a_dev` (in `a`) and `b_dev` (in `b`), both up.
pub fn veth(a: &NetNs, a_dev: &str, b: &NetNs, b_dev: &str) -> io::Result<()> {
    run_ok("ip", &["link", "add", a_dev, "netns", &a.name, "type", "veth", "peer", "name", b_dev, "netns", &b.name])?;
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
    pub fn start(ns: &NetNs, args: &[String], log: PathBuf, envs: &[(&str, &str)]) -> io::Result<ServerProcess> {
        let logf = fs::File::create(&log)?;
        let mut cmd = ns.command(&calloutd_bin());
        cmd.arg("serve").args(args).stdin(Stdio::null()).stdout(logf.try_clone()?).stderr(logf);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn()?;
        let mut server = ServerProcess { child: Some(child), log };
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
                    return Err(io::Error::other(format!("server exited with {status} before '{needle}':\n{text}")));
                }
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!("server did not log '{needle}' within {limit:?}:\n{text}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> io::Result<ExitStatus> {
        let mut child = self.child.take().ok_or_else(|| io::Error::other("already stopped"))?;
        // `ip netns exec` execs the program, so the child pid is calloutd itself.
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other("server did not stop within 15 s of SIGTERM"));
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
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line in {}: {e}: {l}", path.display())))
        .collect()
}
