//! End-to-end tests of the control API's robustness (issue 14) against the real binary, each inside
//! a network namespace of its own: the server on 127.0.0.1:67 with the control API on an ephemeral
//! loopback port, a test relay (the client in relay mode) on 198.18.0.1:67 on the namespace's `lo`.
//! The test's own TCP clients run on a thread that entered the namespace.
//!
//! After every hostile client of the issue (a huge Content-Length with and without a token, an
//! announced body never sent, pipelined requests never read, 520 idle connections with the
//! server's descriptor limit lowered, a 100 MB header line without CRLF) a DORA must still be ACKed,
//! the API must answer another client within a second and the server's RSS must stay bounded; then
//! SIGTERM must end the server within a few seconds while a stalled client is connected.
//!
//! Tests skip (with a printed reason) when not run as root.

// Unix only: starts the Linux calloutd with .so fixture callouts, mostly inside network namespaces.
#![cfg(unix)]

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

const TOKEN: &str = "t0k-e2e";
const TOKEN_ENV: &str = "CALLOUTD_CONTROL_TOKEN";
/// Leases imported from the scope file: their list (~120 KB of JSON) is larger than a pipe buffer.
const IMPORTED_LEASES: usize = 512;
/// How much the server's RSS may grow over the whole test (the 100 MB header line used to add
/// 245 MB).
const RSS_GROWTH_LIMIT_KB: u64 = 48 * 1024;

/// A /22 scope around the relay address with [`IMPORTED_LEASES`] active leases, as
/// `Export-DhcpServer -Leases` writes them.
fn scope_xml() -> String {
    let leases: String = (0..IMPORTED_LEASES)
        .map(|i| {
            let (third, fourth) = (1 + i / 256, i % 256);
            format!(
                "<Lease><IPAddress>198.18.{third}.{fourth}</IPAddress><ScopeId>198.18.0.0</ScopeId>\
                 <ClientId>02-00-00-00-{third:02x}-{fourth:02x}</ClientId><HostName>pc-{i}</HostName>\
                 <AddressState>Active</AddressState><LeaseExpiryTime>2099-01-01T00:00:00</LeaseExpiryTime></Lease>\n"
            )
        })
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<DHCPServer>
  <MajorVersion>10</MajorVersion>
  <MinorVersion>0</MinorVersion>
  <IPv4>
    <Scopes>
      <Scope>
        <ScopeId>198.18.0.0</ScopeId><Name>ctl</Name><SubnetMask>255.255.252.0</SubnetMask>
        <StartRange>198.18.0.10</StartRange><EndRange>198.18.3.250</EndRange>
        <LeaseDuration>01:00:00</LeaseDuration>
        <State>Active</State><Type>Dhcp</Type><Delay>0</Delay><Description>control API tests</Description>
        <OptionValues>
          <OptionValue><OptionId>3</OptionId><Value>198.18.0.1</Value></OptionValue>
          <OptionValue><OptionId>51</OptionId><Value>3600</Value></OptionValue>
        </OptionValues>
        <Leases>
{leases}        </Leases>
      </Scope>
    </Scopes>
  </IPv4>
</DHCPServer>
"#
    )
}

/// A namespace with the relay address and a running server with its control API.
struct Api {
    ns: NetNs,
    _dir: tempfile::TempDir,
    server: ServerProcess,
    control: SocketAddr,
}

impl Api {
    /// Starts the server (token [`TOKEN`]); `None` (the test skips, saying why) when not root.
    fn start(tag: &str) -> Option<Api> {
        if !have_root(&current_test()) {
            return None;
        }
        let ns = NetNs::new(tag).expect("create the namespace");
        ns.add_addr("198.18.0.1/24", "lo").expect("relay address");
        let dir = tempfile::tempdir().unwrap();
        let scopes = dir.path().join("scopes.xml");
        fs::write(&scopes, scope_xml()).unwrap();
        let args = strings(&[
            "--scopes",
            scopes.to_str().unwrap(),
            "--listen",
            "127.0.0.1:67",
            "--lease-db",
            dir.path().join("leases.sqlite3").to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--no-audit-log",
            "--control",
            "127.0.0.1:0",
            "--workers",
            "2",
        ]);
        let mut server = ServerProcess::start(
            &ns,
            &args,
            dir.path().join("server.log"),
            &[(TOKEN_ENV, TOKEN)],
        )
        .expect("start calloutd serve");
        server
            .wait_for_log("control API listening", Duration::from_secs(10))
            .expect("control API up");
        let control = control_addr(&server.log_text());
        Some(Api {
            ns,
            _dir: dir,
            server,
            control,
        })
    }

    /// A DORA through the relay that must be ACKed.
    fn dora(&self, mac: &str) {
        let run = run_client(
            &self.ns,
            "dora",
            5,
            &[
                "--server",
                "127.0.0.1:67",
                "--giaddr",
                "198.18.0.1:67",
                "--mac",
                mac,
            ],
        );
        assert_eq!(
            run.code,
            0,
            "DORA of {mac} not ACKed: {}\nserver log:\n{}",
            run.stderr,
            self.server.log_text()
        );
        assert!(run.json["yiaddr"].is_string(), "{}", run.json);
    }

    /// `GET path` with the token, answered within a second; the body.
    fn get_within_a_second(&self, path: &str) -> String {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        );
        let answer = exchange(self.control, request.as_bytes(), Duration::from_secs(1))
            .unwrap_or_else(|e| {
                panic!(
                    "the control API did not answer within a second: {e}\nserver log:\n{}",
                    self.server.log_text()
                )
            });
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default()
    }

    /// `GET /v1/stats`, within a second.
    fn stats(&self) -> Value {
        serde_json::from_str(&self.get_within_a_second("/v1/stats")).expect("stats JSON")
    }

    /// The server's resident set, kB.
    fn rss_kb(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.server.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// What must hold after every hostile client: DHCP answers, the API answers, RSS is bounded.
    fn still_serving(&self, after: &str, mac: &str, rss_before: u64) {
        self.dora(mac);
        let state: Value = serde_json::from_str(&self.get_within_a_second("/v1/service")).unwrap();
        assert_eq!(state["state"], "running", "after {after}");
        let rss = self.rss_kb();
        eprintln!("after {after}: RSS {rss} kB ({rss_before} kB at start)");
        assert!(
            rss < rss_before + RSS_GROWTH_LIMIT_KB,
            "after {after}: RSS {rss} kB, {rss_before} kB at start"
        );
    }
}

/// The control address the server logged (`control API listening addr=127.0.0.1:PORT`).
fn control_addr(log: &str) -> SocketAddr {
    log.lines()
        .filter(|l| l.contains("control API listening"))
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no control address in the log:\n{log}"))
}

/// Connects within `limit`, sends `request`, reads until the server closes (each read within
/// `limit`).
fn exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, limit)?;
    stream.set_read_timeout(Some(limit))?;
    stream.set_write_timeout(Some(limit))?;
    stream.write_all(request)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Runs `body` on a thread inside the namespace `ns` (sockets it creates live there).
fn inside(ns: &str, body: impl FnOnce() + Send) {
    let file = fs::File::open(Path::new("/var/run/netns").join(ns)).expect("netns file");
    std::thread::scope(|scope| {
        scope.spawn(|| {
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            body();
        });
    });
}

/// The open descriptors of `pid`.
fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The soft RLIMIT_NOFILE of `pid`.
fn soft_nofile(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next().map(str::to_string))
        .expect("Max open files")
}

/// Sets the soft RLIMIT_NOFILE of `pid` (the hard limit stays).
fn set_soft_nofile(pid: u32, soft: &str) {
    let out = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")])
        .output()
        .expect("prlimit");
    assert!(
        out.status.success(),
        "prlimit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hostile_control_clients_take_down_neither_dhcp_nor_the_api() {
    let Some(mut api) = Api::start("hostile") else {
        return;
    };
    let rss_before = api.rss_kb();
    api.dora("02:00:00:00:aa:01");
    let pid = api.server.pid();
    let addr = api.control;
    let ns = api.ns.name.clone();
    inside(&ns, || {
        let limit = Duration::from_secs(5);
        // 1. A huge Content-Length, without and with the token: 413, nothing allocated.
        for auth in [String::new(), format!("Authorization: Bearer {TOKEN}\r\n")] {
            let request = format!(
                "POST /v1/service/pause HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 1000000000000000\r\n\r\n"
            );
            let answer = exchange(addr, request.as_bytes(), limit).unwrap();
            assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        }
        api.still_serving("a huge Content-Length", "02:00:00:00:aa:02", rss_before);

        // 2. A body announced and never sent; the client stays connected.
        let mut announced = TcpStream::connect(addr).unwrap();
        announced
            .write_all(
                format!(
                    "POST /v1/service/pause HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
        api.still_serving(
            "an announced body never sent",
            "02:00:00:00:aa:03",
            rss_before,
        );

        // 3. Pipelined requests whose answers (120 KB each) are never read.
        let mut pipelined = TcpStream::connect(addr).unwrap();
        pipelined.set_write_timeout(Some(limit)).unwrap();
        let one =
            format!("GET /v1/leases HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
        let _ = pipelined.write_all(one.repeat(300).as_bytes());
        api.still_serving(
            "pipelined requests never read",
            "02:00:00:00:aa:04",
            rss_before,
        );

        // 4. 520 idle connections with the server's descriptors nearly all in use.
        let fds = open_fds(pid);
        let soft = soft_nofile(pid);
        set_soft_nofile(pid, &(fds + 24).to_string());
        let idle: Vec<TcpStream> = (0..520)
            .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok())
            .collect();
        assert!(idle.len() >= 500, "only {} connections opened", idle.len());
        api.still_serving("520 idle connections", "02:00:00:00:aa:05", rss_before);
        let stats = api.stats();
        assert!(
            stats["control"]["accept_errors"].as_u64().unwrap_or(0) > 0,
            "the descriptor limit was never reached: {}",
            stats["control"]
        );
        set_soft_nofile(pid, &soft);
        drop(idle);

        // 5. A 100 MB header line without CRLF, streamed.
        let mut long = TcpStream::connect(addr).unwrap();
        long.set_write_timeout(Some(limit)).unwrap();
        long.set_read_timeout(Some(limit)).unwrap();
        let chunk = vec![b'a'; 64 * 1024];
        let mut sent = long
            .write_all(b"GET /v1/stats HTTP/1.1\r\nHost: x\r\nX-Long: ")
            .map(|()| 0usize);
        while let Ok(n) = sent {
            if n >= 100 << 20 {
                break;
            }
            sent = long.write_all(&chunk).map(|()| n + chunk.len());
        }
        assert!(
            sent.is_err(),
            "the server took 100 MB of one header line without closing the connection"
        );
        let mut answer = Vec::new();
        let _ = long.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "{answer}"
        );
        api.still_serving("a 100 MB header line", "02:00:00:00:aa:06", rss_before);

        // 6. Requests without the right token: 401, counted.
        for auth in [
            "",
            "Authorization: Bearer wrong\r\n",
            "Authorization: Basic eDp5\r\n",
        ] {
            let request =
                format!("GET /v1/leases HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
            let answer = exchange(addr, request.as_bytes(), limit).unwrap();
            assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        }
        let stats = api.stats();
        assert_eq!(stats["control"]["unauthorized"], 3, "{}", stats["control"]);
        assert_eq!(stats["control"]["too_large"], 2, "{}", stats["control"]);
        let metrics = api.get_within_a_second("/metrics");
        assert!(
            metrics
                .lines()
                .any(|l| l == "calloutd_control_unauthorized_total 3"),
            "{metrics}"
        );

        // 7. SIGTERM while a client is stalled in a request and another never reads.
        let mut stalled = TcpStream::connect(addr).unwrap();
        stalled
            .write_all(
                format!(
                    "POST /v1/service/pause HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 10\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
        let _ = pipelined.write_all(one.as_bytes());
        let status = api
            .server
            .stop_within("TERM", Duration::from_secs(8))
            .unwrap_or_else(|e| panic!("SIGTERM with stalled control clients: {e}"));
        assert!(status.success(), "exit status {status}");
        drop((announced, pipelined, stalled));
    });
}

#[test]
fn ctl_on_a_closed_pipe_exits_quietly() {
    let Some(api) = Api::start("pipe") else {
        return;
    };
    let control = api.control.to_string();
    for reader in ["head -c 250", "true"] {
        let script = format!(
            "CALLOUTD_CONTROL_TOKEN={TOKEN} \"$0\" ctl --control {control} leases | {reader} >/dev/null; \
             echo \"status=${{PIPESTATUS[0]}}\""
        );
        let mut cmd = api.ns.command(Path::new("bash"));
        cmd.args(["-c", &script]).arg(calloutd_bin());
        let run = command_run(run_bounded(cmd, Duration::from_secs(20)));
        let status = run
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("status="))
            .unwrap_or("?")
            .to_string();
        assert!(
            status == "141" || status == "0",
            "ctl leases | {reader}: status {status}, stderr: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    // The whole list is larger than a pipe buffer, so `head` really closed it early.
    let script = format!("\"$0\" ctl --control {control} --token {TOKEN} leases | wc -c");
    let mut cmd = api.ns.command(Path::new("bash"));
    cmd.args(["-c", &script]).arg(calloutd_bin());
    let run = command_run(run_bounded(cmd, Duration::from_secs(20)));
    let all: usize = run.stdout.trim().parse().expect("wc -c");
    assert!(all > 64 * 1024, "lease list of {all} bytes");
}

#[test]
fn off_loopback_the_server_refuses_to_start_without_a_token() {
    if !have_root(&current_test()) {
        return;
    }
    let ns = NetNs::new("offlo").expect("create the namespace");
    let dir = tempfile::tempdir().unwrap();
    let scopes = dir.path().join("scopes.xml");
    fs::write(&scopes, scope_xml()).unwrap();
    let mut cmd = ns.command(&calloutd_bin());
    cmd.env_remove(TOKEN_ENV).args([
        "serve",
        "--scopes",
        scopes.to_str().unwrap(),
        "--listen",
        "127.0.0.1:67",
        "--lease-db",
        dir.path().join("leases.sqlite3").to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--no-audit-log",
        "--control",
        "0.0.0.0:0",
    ]);
    let run = command_run(run_bounded(cmd, Duration::from_secs(20)));
    assert_ne!(run.code, 0, "served off loopback without a token");
    assert!(run.stderr.contains("token is required"), "{}", run.stderr);

    // With a token file it serves, and only to requests that carry the token.
    let token_file = dir.path().join("token");
    fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let args = strings(&[
        "--scopes",
        scopes.to_str().unwrap(),
        "--listen",
        "127.0.0.1:67",
        "--lease-db",
        dir.path().join("leases2.sqlite3").to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--no-audit-log",
        "--control",
        "0.0.0.0:0",
        "--control-token-file",
        token_file.to_str().unwrap(),
    ]);
    let mut server = ServerProcess::start(&ns, &args, dir.path().join("server.log"), &[])
        .expect("start calloutd serve");
    server
        .wait_for_log("control API listening", Duration::from_secs(10))
        .expect("control API up");
    let control = control_addr(&server.log_text()).to_string();
    let run = run_calloutd(
        &ns,
        &["ctl", "--control", &control, "stats"],
        Duration::from_secs(20),
    );
    assert!(run.stderr.contains("401"), "{}", run.stderr);
    let run = run_calloutd(
        &ns,
        &["ctl", "--control", &control, "--token", TOKEN, "stats"],
        Duration::from_secs(20),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let stats: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(stats["control"]["unauthorized"], 1);
    server.stop().expect("stop");
}
