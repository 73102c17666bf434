//! End-to-end test of a broadcast DORA (issue 4): two network namespaces joined by a veth pair, the
//! server on its side's interface (198.18.2.1/24, `--interface`), the client on the other side with
//! no address at all, in broadcast mode. The lease and the hook sequence of both packets are
//! checked in the trace callout's log and the server's trace.
//!
//! Skips (with a printed reason) when not run as root.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn broadcast_dora_from_a_client_without_an_address() {
    if !have_root("broadcast_dora_from_a_client_without_an_address") {
        return;
    }
    let server_ns = NetNs::new("bsrv").unwrap();
    let client_ns = NetNs::new("bcli").unwrap();
    // Interface names are per namespace, but keep them unique per process anyway.
    let tag = std::process::id() % 100_000;
    let (server_if, client_if) = (format!("cods{tag}"), format!("codc{tag}"));
    veth(&server_ns, &server_if, &client_ns, &client_if).unwrap();
    server_ns.add_addr("198.18.2.1/24", &server_if).unwrap();

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
    let mut server = ServerProcess::start(
        &server_ns,
        &args,
        dir.path().join("server.log"),
        &[("CALLOUT_TRACE_FILE", callout_log.to_str().unwrap())],
    )
    .unwrap();

    let mac = "02:00:00:00:07:01";
    let mut cmd = client_ns.command(&calloutd_bin());
    cmd.args([
        "client",
        "dora",
        "--json",
        "--retries",
        "0",
        "--timeout",
        "5",
    ])
    .args([
        "--interface",
        &client_if,
        "--mac",
        mac,
        "--xid",
        "0x0b0a0001",
    ]);
    let out = run_bounded(cmd, Duration::from_secs(25));
    assert!(
        out.status.success(),
        "client: {}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
    let ack: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(ack["message_type"], "ACK");
    assert_eq!(
        ack["yiaddr"], "198.18.2.100",
        "the first address of the pool"
    );
    assert_eq!(ack["server_id"], "198.18.2.1");
    assert_eq!(ack["lease_time"], 7200);
    assert_eq!(
        (ack["t1"].as_u64(), ack["t2"].as_u64()),
        (Some(3600), Some(6300))
    );
    assert_eq!(ack["giaddr"], "0.0.0.0", "not relayed");
    assert_eq!(ack["broadcast_flag"], true);
    assert_eq!(ack["offer"]["message_type"], "OFFER");
    assert_eq!(ack["offer"]["yiaddr"], "198.18.2.100");
    let router = ack["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["code"] == 3)
        .expect("router option");
    assert_eq!(router["value"], "198.18.2.1");

    wait_for_jsonl(
        &callout_log,
        Duration::from_secs(10),
        "2 packets processed",
        |r| processed_count(r) >= 2,
    );
    let status = server.stop().unwrap();
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        server.log_text()
    );

    let log = read_jsonl(&callout_log);
    let trace = read_jsonl(&server_trace);
    check_server_trace(&trace);
    assert_eq!(
        call_projection(&trace, None),
        call_projection(&log, Some("trace"))
    );
    let packets = callout_packets(&log, "trace");
    assert_eq!(packets.len(), 2, "DISCOVER and REQUEST");
    for p in &packets {
        // The receiving address (IP_PKTINFO) of a broadcast on the server's interface.
        check_packet(p, "198.18.2.1");
        assert_eq!(p.xid, 0x0b0a_0001u64);
        let opts = p.call("HandleOptions");
        assert_eq!(
            opts["scope_id"], "198.18.2.0",
            "scope chosen by the receiving interface"
        );
        assert_eq!(opts["hw_address"], mac);
    }
    assert_eq!(
        packets[0].signature(),
        [
            "NewPkt",
            "HandleOptions",
            "PktSend(0x10000000)",
            "PktDrop(0xb)"
        ]
    );
    assert_eq!(packets[0].call("HandleOptions")["message_type"], 1);
    assert_eq!(
        packets[1].signature(),
        [
            "NewPkt",
            "HandleOptions",
            "AddressOffer(0x30000001)",
            "PktSend(0x10000000)",
            "PktDrop(0xb)"
        ]
    );
    let request = packets[1].call("HandleOptions");
    assert_eq!(request["message_type"], 3);
    assert_eq!(request["requested_address"], "198.18.2.100");
    assert_eq!(request["server"], "198.18.2.1");
    let give = packets[1].call("AddressOffer");
    assert_eq!(give["alt"], "198.18.2.100");
    assert_eq!(give["addr_type"], 0x3000_0004u64);
    assert_eq!(give["lease"], 7200);
}
