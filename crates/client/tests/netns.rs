//! Broadcast mode for real: a client with no address on one end of a veth pair, the responder on
//! the other, each in a network namespace this test creates (198.18.0.0/15 only; the host's
//! interfaces are never touched). Needs root and iproute2; skipped otherwise.
//!
//! The test binary re-runs itself inside each namespace (`ip netns exec NS <this binary> <role>`),
//! selecting the role with an environment variable; the role tests do nothing without it.

// Unix only: runs inside network namespaces.
#![cfg(unix)]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use calloutd_client::cli::{self, ClientCommand, ClientVerb, EXIT_OK};
use clap::Parser;
use serde_json::Value;

const ROLE_VAR: &str = "CALLOUTD_CLIENT_NETNS_ROLE";
const SERVER_IF: &str = "cdc-veth-s";
const CLIENT_IF: &str = "cdc-veth-c";

/// Deletes the namespaces (and with them the veth pair) and kills the responder, even on failure.
struct Namespaces {
    server: String,
    client: String,
    responder: Option<Child>,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        if let Some(mut child) = self.responder.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn setup() -> Result<Namespaces, String> {
    let pid = std::process::id();
    let ns = Namespaces {
        server: format!("cdc-s-{pid}"),
        client: format!("cdc-c-{pid}"),
        responder: None,
    };
    ip(&["netns", "add", &ns.server])?;
    ip(&["netns", "add", &ns.client])?;
    ip(&[
        "-n", &ns.server, "link", "add", SERVER_IF, "type", "veth", "peer", "name", CLIENT_IF,
        "netns", &ns.client,
    ])?;
    ip(&[
        "-n",
        &ns.server,
        "addr",
        "add",
        "198.18.0.1/24",
        "dev",
        SERVER_IF,
    ])?;
    for (namespace, device) in [(&ns.server, SERVER_IF), (&ns.client, CLIENT_IF)] {
        ip(&["-n", namespace, "link", "set", "lo", "up"])?;
        ip(&["-n", namespace, "link", "set", device, "up"])?;
    }
    Ok(ns)
}

fn run_role(namespace: &str, role: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", namespace])
        .arg(exe)
        .args([
            role,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_VAR, role);
    command
}

#[test]
fn broadcast_mode_in_network_namespaces() {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        eprintln!("skipped: needs root to create network namespaces");
        return;
    }
    let mut ns = match setup() {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("skipped: cannot create network namespaces: {e}");
            return;
        }
    };
    ns.responder = Some(
        run_role(&ns.server, "responder_role")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let output = run_role(&ns.client, "client_role").output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    eprintln!("{text}");
    assert!(output.status.success(), "client role failed:\n{text}");
    assert!(
        text.contains("client role passed"),
        "the client role did not run:\n{text}"
    );
}

/// Inside the server namespace: answer on SERVER_IF for a bounded time.
#[test]
#[ignore = "a role the namespace test re-executes inside its server namespace"]
fn responder_role() {
    if std::env::var(ROLE_VAR).as_deref() != Ok("responder_role") {
        return;
    }
    let _responder = support::Responder::start_on_device(
        "0.0.0.0:67".parse().unwrap(),
        Some(SERVER_IF),
        support::Policy::Serve,
        false,
    );
    std::thread::sleep(Duration::from_secs(20));
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    verb: ClientVerb,
}

/// Inside the client namespace: no address on CLIENT_IF; DORA and BOOTP by broadcast.
#[test]
#[ignore = "a role the namespace test re-executes inside its client namespace"]
fn client_role() {
    if std::env::var(ROLE_VAR).as_deref() != Ok("client_role") {
        return;
    }
    let args = [
        "client",
        "dora",
        "--interface",
        CLIENT_IF,
        "--mac",
        "02:00:00:00:00:2a",
        "--json",
        "--timeout",
        "6",
        "--retries",
        "5",
    ];
    let verb = Cli::try_parse_from(args).unwrap().verb;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = cli::run_with(&ClientCommand { verb }, &mut out, &mut err);
    assert_eq!(code, EXIT_OK, "{}", String::from_utf8_lossy(&err));
    let json: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["message_type"], "ACK");
    assert_eq!(json["yiaddr"], "198.18.0.52");
    assert_eq!(json["server_id"], "198.18.0.1");
    assert_eq!(json["broadcast_flag"], true);
    assert_eq!(json["giaddr"], "0.0.0.0");

    let transport = calloutd_client::Transport::Broadcast {
        interface: CLIENT_IF.into(),
        client_port: 68,
        server_port: 67,
        server: None,
    };
    let settings = calloutd_client::ClientSettings {
        mac: [2, 0, 0, 0, 0, 0x2b],
        broadcast_flag: true,
        ..Default::default()
    };
    let mut client = calloutd_client::Client::new(transport, settings).unwrap();
    let bootp = client.bootp(false).unwrap();
    assert_eq!(bootp.yiaddr, std::net::Ipv4Addr::new(198, 18, 0, 53));
    assert!(
        client
            .renew(std::net::Ipv4Addr::new(198, 18, 0, 53))
            .is_err(),
        "renew needs a server address"
    );
    println!("client role passed");
}
