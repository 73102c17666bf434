//! End-to-end tests of broadcast DHCP (issue 4): two network namespaces joined by a veth pair, the
//! server on its side's interface (198.18.2.1/24, `--interface`), the client on the other side in
//! broadcast mode with no address at all. The leases and the hook sequences are checked in the
//! trace callout's log and the server's trace.
//!
//! Skip (with a printed reason) when not run as root.

// Unix only: starts the Linux calloutd with .so fixture callouts, mostly inside network namespaces.
#![cfg(unix)]

mod support;

use serde_json::Value;
use support::*;

const SERVER_IP: &str = "198.18.2.1";
const SCOPE: &str = "198.18.2.0";
const LEASE: u64 = 7200;

/// The segment of these tests: the server on 198.18.2.1/24 with two workers.
fn segment(tag: &str) -> Segment {
    Segment::start(
        tag,
        &format!("{SERVER_IP}/24"),
        "fixtures/scenarios/veth-scope.txt",
        "2",
        None,
    )
}

// Methods of the shared segment that only these tests use.
impl Segment {
    /// Runs `calloutd client VERB --json --interface CLIENT_IF ARGS` (broadcast from the client's
    /// link); it must succeed.
    fn client_on_link(&self, verb: &str, args: &[&str]) -> Value {
        self.client(verb, &[&["--interface", &self.client_if], args].concat())
    }

    /// Runs `calloutd client VERB --json ARGS` in the client namespace; it must succeed.
    fn client(&self, verb: &str, args: &[&str]) -> Value {
        let run = run_client(&self.client_ns, verb, 5, args);
        assert!(
            run.code == 0,
            "client {verb} {args:?}: {}\nserver log:\n{}",
            run.stderr,
            self.server_log()
        );
        serde_json::from_str(run.stdout.trim()).unwrap()
    }

    /// Waits for `n` finished packets, stops the server (exit 0) and checks the trace invariants;
    /// returns the packets from the trace callout's log.
    fn stop(&mut self, n: usize) -> Vec<PacketCalls> {
        let (log, _) = self.stop_checked(n);
        let packets = callout_packets(&log, "trace");
        assert_eq!(packets.len(), n);
        for p in &packets {
            // The receiving address (IP_PKTINFO) on the server's interface, broadcast or not.
            check_packet(p, SERVER_IP);
            assert_eq!(
                p.call("HandleOptions")["scope_id"],
                SCOPE,
                "scope chosen by the receiving interface"
            );
        }
        packets
    }
}

/// Checks an ACK the server sent straight to the client (no relay).
fn check_direct_ack(ack: &Value, ip: &str) {
    check_ack(ack, ip, SERVER_IP, LEASE, "0.0.0.0");
}

#[test]
fn broadcast_dora_from_a_client_without_an_address() {
    if !have_root("broadcast_dora_from_a_client_without_an_address") {
        return;
    }
    let mut seg = segment("bd");
    let mac = "02:00:00:00:07:01";
    let ack = seg.client_on_link("dora", &["--mac", mac, "--xid", "0x0b0a0001"]);
    check_direct_ack(&ack, "198.18.2.100");
    assert_eq!(ack["broadcast_flag"], true);
    assert_eq!(ack["offer"]["message_type"], "OFFER");
    assert_eq!(ack["offer"]["yiaddr"], "198.18.2.100");
    assert_eq!(reply_option(&ack, 3)["value"], SERVER_IP, "router");
    // Without the broadcast flag the server cannot unicast to a client that has no address (no
    // ARP entry to inject), so it broadcasts: the client still gets its lease.
    let quiet_mac = "02:00:00:00:07:02";
    let quiet = seg.client_on_link("dora", &["--mac", quiet_mac, "--no-broadcast-flag"]);
    check_direct_ack(&quiet, "198.18.2.101");
    assert_eq!(quiet["broadcast_flag"], false);

    let packets = seg.stop(4);
    for p in &packets[..2] {
        assert_eq!(p.xid, 0x0b0a_0001u64);
        assert_eq!(p.call("HandleOptions")["hw_address"], mac);
    }
    check_discover(&packets[0], mac, SCOPE);
    check_acked_request(&packets[1], GIVE_NEW, "198.18.2.100", LEASE);
    let request = packets[1].call("HandleOptions");
    assert_eq!(request["requested_address"], "198.18.2.100");
    assert_eq!(request["server"], SERVER_IP);
    check_discover(&packets[2], quiet_mac, SCOPE);
    check_acked_request(&packets[3], GIVE_NEW, "198.18.2.101", LEASE);
}

#[test]
fn bound_client_renews_by_unicast_and_rebinds_by_broadcast() {
    if !have_root("bound_client_renews_by_unicast_and_rebinds_by_broadcast") {
        return;
    }
    let mut seg = segment("br");
    let mac = "02:00:00:00:07:11";
    let ack = seg.client_on_link("dora", &["--mac", mac]);
    let ip = ack["yiaddr"].as_str().unwrap().to_string();
    check_direct_ack(&ack, &ip);
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
    check_direct_ack(&renewed, &ip);
    assert_eq!(renewed["ciaddr"], ip.as_str());
    assert_eq!(renewed["from"], format!("{SERVER_IP}:67"));
    // REBINDING: broadcast with ciaddr set; the ACK goes unicast to ciaddr (RFC 2131 4.1).
    let rebound = seg.client_on_link(
        "rebind",
        &[
            "--no-broadcast-flag",
            "--mac",
            mac,
            "--ciaddr",
            &ip,
            "--xid",
            "0x0b0a0012",
        ],
    );
    check_direct_ack(&rebound, &ip);
    assert_eq!(rebound["ciaddr"], ip.as_str());

    let packets = seg.stop(4);
    for (p, xid) in packets[2..].iter().zip([0x0b0a_0011u64, 0x0b0a_0012]) {
        assert_eq!(p.xid, xid);
        check_acked_request(p, GIVE_OLD, &ip, LEASE);
        let opts = p.call("HandleOptions");
        assert_eq!(opts["requested_address"], Value::Null);
        assert_eq!(opts["server"], Value::Null);
    }
}
