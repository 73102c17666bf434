//! End-to-end tests of broadcast DHCP (issue 4): two network namespaces joined by a veth pair, the
//! server on its side's interface (198.18.2.1/24, `--interface`), the client on the other side in
//! broadcast mode with no address at all. The leases and the hook sequences are checked in the
//! trace callout's log and the server's trace.
//!
//! Skip (with a printed reason) when not run as root.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use support::*;

const SERVER_IP: &str = "198.18.2.1";

/// A server namespace and a client namespace joined by a veth pair, the server running.
struct Segment {
    client_ns: NetNs,
    client_if: String,
    // Dropped before the namespaces (fields drop in order).
    server: Option<ServerProcess>,
    _server_ns: NetNs,
    callout_log: PathBuf,
    server_trace: PathBuf,
    _dir: tempfile::TempDir,
}

impl Segment {
    fn start(tag: &str) -> Segment {
        let server_ns = NetNs::new(&format!("{tag}s")).unwrap();
        let client_ns = NetNs::new(&format!("{tag}c")).unwrap();
        // Interface names are per namespace, but keep them unique per process and test anyway.
        let id = format!("{tag}{}", std::process::id() % 10_000);
        let (server_if, client_if) = (format!("s{id}"), format!("c{id}"));
        veth(&server_ns, &server_if, &client_ns, &client_if).unwrap();
        server_ns
            .add_addr(&format!("{SERVER_IP}/24"), &server_if)
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("callout.reg");
        write_callout_reg(
            &reg,
            &[calloutd_callout::fixtures::library("trace").unwrap()],
        );
        let callout_log = dir.path().join("callout.jsonl");
        let server_trace = dir.path().join("server-trace.jsonl");
        let scopes = repo_root().join("fixtures/scenarios/veth-scope.txt");
        let args: Vec<String> = [
            "--reg",
            reg.to_str().unwrap(),
            "--scopes",
            scopes.to_str().unwrap(),
            "--interface",
            &server_if,
            "--lease-db",
            dir.path().join("leases.sqlite3").to_str().unwrap(),
            "--trace",
            server_trace.to_str().unwrap(),
            "--workers",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let server = ServerProcess::start(
            &server_ns,
            &args,
            dir.path().join("server.log"),
            &[("CALLOUT_TRACE_FILE", callout_log.to_str().unwrap())],
        )
        .unwrap();
        Segment {
            client_ns,
            client_if,
            server: Some(server),
            _server_ns: server_ns,
            callout_log,
            server_trace,
            _dir: dir,
        }
    }

    /// Runs `calloutd client VERB --json ARGS` in the client namespace; it must succeed.
    fn client(&self, verb: &str, args: &[&str]) -> Value {
        let mut cmd = self.client_ns.command(&calloutd_bin());
        cmd.args(["client", verb, "--json", "--retries", "0", "--timeout", "5"])
            .args(args);
        let out = run_bounded(cmd, Duration::from_secs(25));
        assert!(
            out.status.success(),
            "client {verb} {args:?}: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.server.as_ref().unwrap().log_text()
        );
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
    }

    /// Waits for `n` finished packets, stops the server (exit 0) and checks the trace invariants;
    /// returns the packets from the trace callout's log.
    fn stop(&mut self, n: usize) -> Vec<PacketCalls> {
        wait_for_jsonl(
            &self.callout_log,
            Duration::from_secs(10),
            "packets processed",
            |r| processed_count(r) >= n,
        );
        let mut server = self.server.take().unwrap();
        let status = server.stop().unwrap();
        assert!(
            status.success(),
            "exit status {status}:\n{}",
            server.log_text()
        );
        let log = read_jsonl(&self.callout_log);
        let trace = read_jsonl(&self.server_trace);
        check_server_trace(&trace);
        assert_eq!(
            call_projection(&trace, None),
            call_projection(&log, Some("trace"))
        );
        let packets = callout_packets(&log, "trace");
        assert_eq!(packets.len(), n);
        for p in &packets {
            // The receiving address (IP_PKTINFO) on the server's interface, broadcast or not.
            check_packet(p, SERVER_IP);
            assert_eq!(
                p.call("HandleOptions")["scope_id"],
                "198.18.2.0",
                "scope chosen by the receiving interface"
            );
        }
        packets
    }
}

const DISCOVER_SEQ: [&str; 4] = [
    "NewPkt",
    "HandleOptions",
    "PktSend(0x10000000)",
    "PktDrop(0xb)",
];

fn acked_request_seq(code: &str) -> [String; 5] {
    [
        "NewPkt".into(),
        "HandleOptions".into(),
        format!("AddressOffer({code})"),
        "PktSend(0x10000000)".into(),
        "PktDrop(0xb)".into(),
    ]
}

fn check_ack(ack: &Value, ip: &str) {
    assert_eq!(ack["message_type"], "ACK", "{ack}");
    assert_eq!(ack["yiaddr"], ip);
    assert_eq!(ack["server_id"], SERVER_IP);
    assert_eq!(ack["lease_time"], 7200);
    assert_eq!(
        (ack["t1"].as_u64(), ack["t2"].as_u64()),
        (Some(3600), Some(6300))
    );
    assert_eq!(ack["giaddr"], "0.0.0.0", "not relayed");
}

#[test]
fn broadcast_dora_from_a_client_without_an_address() {
    if !have_root("broadcast_dora_from_a_client_without_an_address") {
        return;
    }
    let mut seg = Segment::start("bd");
    let mac = "02:00:00:00:07:01";
    let ack = seg.client(
        "dora",
        &[
            "--interface",
            &seg.client_if,
            "--mac",
            mac,
            "--xid",
            "0x0b0a0001",
        ],
    );
    check_ack(&ack, "198.18.2.100");
    assert_eq!(ack["broadcast_flag"], true);
    assert_eq!(ack["offer"]["message_type"], "OFFER");
    assert_eq!(ack["offer"]["yiaddr"], "198.18.2.100");
    let router = ack["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["code"] == 3)
        .expect("router option");
    assert_eq!(router["value"], SERVER_IP);
    // Without the broadcast flag the server cannot unicast to a client that has no address (no
    // ARP entry to inject), so it broadcasts: the client still gets its lease.
    let quiet = seg.client(
        "dora",
        &[
            "--interface",
            &seg.client_if,
            "--mac",
            "02:00:00:00:07:02",
            "--no-broadcast-flag",
        ],
    );
    check_ack(&quiet, "198.18.2.101");
    assert_eq!(quiet["broadcast_flag"], false);

    let packets = seg.stop(4);
    for p in &packets[..2] {
        assert_eq!(p.xid, 0x0b0a_0001u64);
        assert_eq!(p.call("HandleOptions")["hw_address"], mac);
    }
    assert_eq!(packets[0].signature(), DISCOVER_SEQ);
    assert_eq!(packets[0].call("HandleOptions")["message_type"], 1);
    assert_eq!(packets[1].signature(), acked_request_seq("0x30000001"));
    let request = packets[1].call("HandleOptions");
    assert_eq!(request["message_type"], 3);
    assert_eq!(request["requested_address"], "198.18.2.100");
    assert_eq!(request["server"], SERVER_IP);
    let give = packets[1].call("AddressOffer");
    assert_eq!(give["alt"], "198.18.2.100");
    assert_eq!(give["addr_type"], 0x3000_0004u64);
    assert_eq!(give["lease"], 7200);
    assert_eq!(packets[2].signature(), DISCOVER_SEQ);
    assert_eq!(packets[3].signature(), acked_request_seq("0x30000001"));
    assert_eq!(packets[3].call("AddressOffer")["alt"], "198.18.2.101");
}

#[test]
fn bound_client_renews_by_unicast_and_rebinds_by_broadcast() {
    if !have_root("bound_client_renews_by_unicast_and_rebinds_by_broadcast") {
        return;
    }
    let mut seg = Segment::start("br");
    let mac = "02:00:00:00:07:11";
    let ack = seg.client("dora", &["--interface", &seg.client_if, "--mac", mac]);
    let ip = ack["yiaddr"].as_str().unwrap().to_string();
    check_ack(&ack, &ip);
    // The client configures its lease, as a real client does.
    seg.client_ns
        .add_addr(&format!("{ip}/24"), &seg.client_if)
        .unwrap();

    // RENEWING: unicast from ip:68 to the server; the ACK comes back unicast to ciaddr.
    let renewed = seg.client(
        "renew",
        &[
            "--server",
            SERVER_IP,
            "--bind",
            &format!("{ip}:68"),
            "--mac",
            mac,
            "--ciaddr",
            &ip,
            "--xid",
            "0x0b0a0011",
        ],
    );
    check_ack(&renewed, &ip);
    assert_eq!(renewed["ciaddr"], ip.as_str());
    assert_eq!(renewed["from"], format!("{SERVER_IP}:67"));
    // REBINDING: broadcast with ciaddr set; the ACK goes unicast to ciaddr (RFC 2131 4.1).
    let rebound = seg.client(
        "rebind",
        &[
            "--interface",
            &seg.client_if,
            "--no-broadcast-flag",
            "--mac",
            mac,
            "--ciaddr",
            &ip,
            "--xid",
            "0x0b0a0012",
        ],
    );
    check_ack(&rebound, &ip);
    assert_eq!(rebound["ciaddr"], ip.as_str());

    let packets = seg.stop(4);
    for (p, xid) in packets[2..].iter().zip([0x0b0a_0011u64, 0x0b0a_0012]) {
        assert_eq!(p.xid, xid);
        assert_eq!(p.signature(), acked_request_seq("0x30000002"));
        let opts = p.call("HandleOptions");
        assert_eq!(opts["message_type"], 3);
        assert_eq!(opts["requested_address"], Value::Null);
        assert_eq!(opts["server"], Value::Null);
        let give = p.call("AddressOffer");
        assert_eq!(give["alt"], ip.as_str());
        assert_eq!(give["lease"], 7200);
    }
}
