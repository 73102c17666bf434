//! End-to-end tests of `calloutd serve` (issue 4) against the real binary over UDP, each inside a
//! network namespace of its own: the server on 127.0.0.1:67, a test relay (the client in relay mode)
//! on 198.18.0.1:67 on the namespace's `lo`, the `trace` callout loaded. For every exchange the trace
//! callout's log must show the exact hook sequence per packet with the right codes and arguments,
//! and the server's `--trace` file must agree with it and show the lock model.
//!
//! The lock-model test proves "a hook sleeping under the lease lock stalls other workers, one
//! sleeping in NewPkt does not" without timing assertions: the callout is the `chain` fixture
//! calling trace2, faulty (which sleeps) and trace3, so each hook call leaves a start line and an end
//! line in one shared log whose order is the order of events; the server trace's `ts_us`/`dur_us`
//! intervals must agree.
//!
//! Tests skip (with a printed reason) when not run as root.

// Unix only: starts the Linux calloutd with .so fixture callouts, mostly inside network namespaces.
#![cfg(unix)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::*;

const RELAY: &str = "198.18.0.1";
/// The interface in each test namespace that holds the relay addresses.
const RELAY_LINK: &str = "relay0";
const SERVER: &str = "127.0.0.1";
const LAB_SCOPES: &str = "fixtures/config/lab-netsh.txt";
/// lab-netsh.txt without its `Set DetectConflictRetry 2` line (made in the test's temp dir): every
/// DISCOVER there would wait for two unanswered pings, which only the conflict-detection tests need.
const LAB_QUICK: &str = "lab-netsh.txt without conflict detection";
const LAB_LEASE: u64 = 691_200;
/// The drop codes only these tests see, as `PacketCalls::signature` shows them (the common
/// signatures and codes are in support/trace.rs).
const DROP_INVALID: &str = "PktDrop(0x8)";
const DROP_WRONG_SERVER: &str = "PktDrop(0x9)";
const DROP_NOADDRESS: &str = "PktDrop(0xa)";

/// A namespace with the relay address, a running server with the trace callout, and its files.
struct Lab {
    ns: NetNs,
    dir: tempfile::TempDir,
    /// The server of the current run and its two logs (each run has its own).
    run: TracedRun,
    reg: PathBuf,
    scopes: PathBuf,
    runs: usize,
    extra_args: Vec<String>,
    envs: Vec<(String, String)>,
}

/// The scope file for `scopes` (relative to the repository root, or [`LAB_QUICK`]).
fn scope_file(scopes: &str, dir: &Path) -> PathBuf {
    if scopes != LAB_QUICK {
        return repo_root().join(scopes);
    }
    let text = fs::read_to_string(repo_root().join(LAB_SCOPES)).unwrap();
    assert!(
        text.contains("DetectConflictRetry"),
        "lab-netsh.txt changed: update LAB_QUICK"
    );
    let quick: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("DetectConflictRetry"))
        .collect();
    let path = dir.join("lab-quick.txt");
    fs::write(&path, quick.join("\n")).unwrap();
    path
}

impl Lab {
    /// Starts the server with the trace callout and `scopes` (relative to the repository root);
    /// `None` (the test skips, saying why) when not root.
    fn start(tag: &str, scopes: &str) -> Option<Lab> {
        Lab::start_with(tag, scopes, |_| vec![fixture("trace")], &[], &[])
    }

    /// Starts the server with the callout DLLs `dlls` makes (given the lab's temp dir, for copies),
    /// `scopes`, `extra_args` and the environment `envs`; `None` (the test skips) when not root.
    fn start_with(
        tag: &str,
        scopes: &str,
        dlls: impl FnOnce(&Path) -> Vec<PathBuf>,
        extra_args: &[&str],
        envs: &[(&str, &str)],
    ) -> Option<Lab> {
        if !have_root(&current_test()) {
            return None;
        }
        let ns = NetNs::new(tag).expect("create the namespace");
        // The test relay's link: a veth pair inside the namespace (the kernel has no dummy driver),
        // not `lo`: a /24 on `lo` makes every address of the subnet local, so every
        // conflict-detection ping (lab-netsh.txt sets DetectConflictRetry 2) would be answered.
        // Here the scope's addresses are on-link and unanswered, as on a real segment.
        ns.ip(&[
            "link", "add", RELAY_LINK, "type", "veth", "peer", "name", "relay1",
        ])
        .expect("relay link");
        ns.ip(&["link", "set", RELAY_LINK, "up"]).unwrap();
        ns.ip(&["link", "set", "relay1", "up"]).unwrap();
        ns.add_addr(&format!("{RELAY}/24"), RELAY_LINK)
            .expect("relay address");
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("callout.reg");
        write_callout_reg(&reg, &dlls(dir.path()));
        let mut lab = Lab {
            ns,
            reg,
            scopes: scope_file(scopes, dir.path()),
            dir,
            run: TracedRun::default(),
            runs: 0,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        lab.start_server();
        Some(lab)
    }

    /// (Re)starts the server on the same lease database; each run gets its own trace files.
    fn start_server(&mut self) {
        self.runs += 1;
        let mut args = strings(&["--listen", "127.0.0.1:67"]);
        if !self.extra_args.iter().any(|a| a == "--workers") {
            args.extend(strings(&["--workers", "2"]));
        }
        args.extend(self.extra_args.iter().cloned());
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.run = TracedRun::start(
            &self.ns,
            self.dir.path(),
            self.runs,
            &self.reg,
            &self.scopes,
            &args,
            &envs,
        );
    }

    /// Runs `calloutd client VERB` as the test relay (giaddr 198.18.0.1:67, server 127.0.0.1:67)
    /// with `--json`, no retransmission and a timeout of `timeout_s` seconds.
    fn client(&self, verb: &str, args: &[&str], timeout_s: u64) -> CommandRun {
        self.client_via(
            verb,
            &["--server", "127.0.0.1:67", "--giaddr", "198.18.0.1:67"],
            args,
            timeout_s,
        )
    }

    /// Runs `calloutd client VERB` with the transport arguments `transport` (server, relay or
    /// bind address), `--json`, no retransmission and a timeout of `timeout_s` seconds.
    fn client_via(
        &self,
        verb: &str,
        transport: &[&str],
        args: &[&str],
        timeout_s: u64,
    ) -> CommandRun {
        run_client(&self.ns, verb, timeout_s, &[transport, args].concat())
    }

    /// Runs [`Lab::client`], which must exit with `code` (1: NAK, 2: no reply); `what` says what
    /// the exit means.
    fn client_exit(
        &self,
        code: i32,
        what: &str,
        verb: &str,
        args: &[&str],
        timeout_s: u64,
    ) -> CommandRun {
        let run = self.client(verb, args, timeout_s);
        assert_eq!(run.code, code, "{what}: {}", run.stderr);
        run
    }

    /// A client exchange that must succeed (exit 0); returns its JSON.
    fn ok(&self, verb: &str, args: &[&str]) -> Value {
        let run = self.client(verb, args, 5);
        assert_eq!(
            run.code,
            0,
            "client {verb} {args:?} failed: {}\nserver log:\n{}",
            run.stderr,
            self.server_log()
        );
        run.json
    }

    /// A DORA for `mac` that must succeed; the leased address.
    fn dora_ip(&self, mac: &str) -> String {
        let ack = self.ok("dora", &["--mac", mac]);
        ack["yiaddr"].as_str().unwrap().to_string()
    }

    /// Waits until the trace callout has logged `n` finished packets (PktDrop PROCESSED).
    fn wait_processed(&self, n: usize) -> Vec<Value> {
        self.run.wait_processed(n)
    }

    fn server_log(&self) -> String {
        self.run.server_log()
    }

    /// Waits for `n` finished packets, then [`Lab::stop`]; there must be exactly `n`.
    fn finish(&mut self, n: usize) -> (Vec<Value>, Vec<Value>, Vec<PacketCalls>) {
        self.wait_processed(n);
        let (log, trace, packets) = self.stop();
        assert_eq!(packets.len(), n, "packets: {packets:?}");
        (log, trace, packets)
    }

    /// Stops the server with SIGTERM (must exit 0) and returns the packets of trace callout `dll`
    /// after checking the server trace ([`check_server_trace`]) and each packet ([`check_packet`],
    /// `ip` = `receiving_ip`). For runs with packets in flight at once, or DLLs besides the trace
    /// callout, where [`Lab::stop`]'s one-at-a-time checks do not hold.
    fn stop_concurrent(&mut self, dll: &str, receiving_ip: &str) -> Vec<PacketCalls> {
        let (log, trace) = self.run.stop();
        check_server_trace(&trace);
        let packets = callout_packets(&log, dll);
        for p in &packets {
            check_packet(p, receiving_ip);
        }
        packets
    }

    /// Stops the server with SIGTERM (must exit 0) and returns (callout log, server trace, packets)
    /// after checking the invariants both must show: Control START first and STOP last in each, the
    /// lock model in the server trace, the same calls in the same order in both (the tests that use
    /// this send one packet at a time), and per-packet invariants with `ip` = 127.0.0.1.
    fn stop(&mut self) -> (Vec<Value>, Vec<Value>, Vec<PacketCalls>) {
        let (log, trace) = self.run.stop();
        assert_eq!(log[0]["hook"], "Entry", "{:?}", log[0]);
        let controls: Vec<&Value> = log.iter().filter(|r| r["hook"] == "Control").collect();
        assert_eq!(
            controls.len(),
            2,
            "Control START and STOP only: {controls:?}"
        );
        assert_eq!(log[1]["hook"], "Control");
        assert_eq!(log[1]["code"], 1, "Control START before the first packet");
        assert_eq!(log[log.len() - 1]["hook"], "Control");
        assert_eq!(
            log[log.len() - 1]["code"],
            2,
            "Control STOP after the last packet"
        );
        check_traces_agree(&log, &trace, "trace");
        // One packet at a time here, so a packet's calls are contiguous: all on one worker
        // thread up to PktSend. A reply that waited for its round's commit is finished (PktSend,
        // the final PktDrop) by the worker that committed the round, which may be another one
        // (docs/hooks.md section 3.2): the only hand-off allowed.
        let mut thread = None;
        for r in trace.iter().filter(|r| r["hook"] != "Control") {
            if r["hook"] == "NewPkt" || r["hook"] == "PktSend" {
                thread = Some(r["thread"].clone());
            }
            assert_eq!(
                Some(&r["thread"]),
                thread.as_ref(),
                "packet moved threads: {r}"
            );
            if r["hook"] == "PktDrop" && r["code"] == 11 {
                thread = None;
            }
        }
        let packets = callout_packets(&log, "trace");
        for p in &packets {
            check_packet(p, SERVER);
        }
        assert_eq!(
            trace
                .iter()
                .filter(|r| r["hook"] == "PktDrop" && r["code"] == 11)
                .count(),
            packets.len(),
            "one PROCESSED per packet in the server trace too"
        );
        (log, trace, packets)
    }
}

fn xid_of(reply: &Value) -> u64 {
    let text = reply["xid"].as_str().expect("xid");
    u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap()
}

/// Checks the ACK of a DORA or REQUEST through the test relay as the client printed it.
fn check_relay_ack(reply: &Value, ip: &str, lease: u64) {
    check_ack(reply, ip, SERVER, lease, RELAY);
}

#[test]
fn full_dora() {
    // The lab configuration as shipped: conflict detection pings .20 twice (unanswered) first.
    let Some(mut lab) = Lab::start("dora", LAB_SCOPES) else {
        return;
    };
    let mac = "02:00:00:00:00:01";
    let ack = lab.ok(
        "dora",
        &["--mac", mac, "--xid", "0x0d0a0001", "--hostname", "pc1"],
    );
    check_relay_ack(&ack, "198.18.0.20", LAB_LEASE);
    assert_eq!(ack["offer"]["message_type"], "OFFER");
    assert_eq!(
        ack["offer"]["yiaddr"], "198.18.0.20",
        "first address after the exclusion .10-.19"
    );
    assert_eq!(ack["offer"]["lease_time"], LAB_LEASE);
    assert_eq!(xid_of(&ack), 0x0d0a_0001);
    assert_eq!(
        ack["from"], "127.0.0.1:67",
        "the reply comes from the server's port 67"
    );

    let (log, trace, packets) = lab.finish(2);
    // E2E_DUMP=1 prints both logs of a complete DORA (handy when reading the schema).
    if std::env::var_os("E2E_DUMP").is_some() {
        for r in log.iter().chain(trace.iter()) {
            eprintln!("{r}");
        }
    }
    // DISCOVER and REQUEST.
    check_discover(&packets[0], mac, "198.18.0.0");
    assert_eq!(packets[0].xid, 0x0d0a_0001);
    check_acked_request(&packets[1], GIVE_NEW, "198.18.0.20", LAB_LEASE);
    let opts = packets[1].call("HandleOptions");
    assert_eq!(opts["requested_address"], "198.18.0.20");
    assert_eq!(opts["server"], SERVER);
    assert_eq!(opts["machine_name"], "pc1");
    // The server trace has the same AddressOffer, under the lease lock.
    let give: Vec<&Value> = trace
        .iter()
        .filter(|r| r["hook"] == "AddressOffer")
        .collect();
    assert_eq!(give.len(), 1);
    assert_eq!(give[0]["ip"], SERVER);
    assert_eq!(give[0]["alt"], "198.18.0.20");
    assert_eq!(give[0]["code"], GIVE_NEW);
    assert_eq!(give[0]["xid"], 0x0d0a_0001);
}

/// A DORA for `mac`, then `verb` (renew or rebind, through the relay, ciaddr set) with `xid`: it
/// must be ACKed, the lease extended with AddressOffer OLD and no option 50. Returns the lab (its
/// server stopped), the address, the ACK and the three packets; `None` when not root.
fn extended_lease(
    tag: &str,
    verb: &str,
    mac: &str,
    xid: u64,
) -> Option<(Lab, String, Value, Vec<PacketCalls>)> {
    let mut lab = Lab::start(tag, LAB_QUICK)?;
    let ip = lab.dora_ip(mac);
    let reply = lab.ok(
        verb,
        &[
            "--mac",
            mac,
            "--ciaddr",
            &ip,
            "--xid",
            &format!("{xid:#010x}"),
        ],
    );
    check_relay_ack(&reply, &ip, LAB_LEASE);
    let (_, _, packets) = lab.finish(3);
    check_acked_request(&packets[2], GIVE_OLD, &ip, LAB_LEASE);
    assert_eq!(packets[2].xid, xid);
    assert_eq!(
        packets[2].call("HandleOptions")["requested_address"],
        Value::Null,
        "RENEWING and REBINDING send no option 50"
    );
    Some((lab, ip, reply, packets))
}

#[test]
fn renew_extends_the_lease_with_address_offer_old() {
    // A relayed renewal (ciaddr set, giaddr the relay): ACK, AddressOffer OLD.
    let mac = "02:00:00:00:00:02";
    let Some((mut lab, ip, renewed, packets)) = extended_lease("renew", "renew", mac, 0x0e0e_0001)
    else {
        return;
    };
    assert_eq!(renewed["ciaddr"], ip.as_str());
    check_acked_request(&packets[1], GIVE_NEW, &ip, LAB_LEASE);

    // A real RENEWING client: unicast from its leased address (port 68) to the server's address in
    // the scope, no relay. The ACK comes back unicast to ciaddr:68, and the hooks' IpAddress is the
    // receiving address 198.18.0.2. (Restarted on the same lease database to add the listener.)
    lab.ns.add_addr(&format!("{ip}/32"), "lo").unwrap();
    lab.ns.add_addr("198.18.0.2/32", "lo").unwrap();
    lab.extra_args = vec!["--listen".into(), "198.18.0.2:67".into()];
    // RFC 2131's unicast to ciaddr needs IgnoreBroadcastFlag 0 (Microsoft's default 1 broadcasts).
    set_parameter_dword(&lab.reg, "IgnoreBroadcastFlag", 0);
    lab.start_server();
    let unicast = lab.client_via(
        "renew",
        &["--server", "198.18.0.2:67", "--bind", &format!("{ip}:68")],
        &["--mac", mac, "--ciaddr", &ip, "--xid", "0x0e0e0002"],
        5,
    );
    assert_eq!(
        unicast.code,
        0,
        "unicast renew: {}\n{}",
        unicast.stderr,
        lab.server_log()
    );
    assert_eq!(unicast.json["message_type"], "ACK");
    assert_eq!(unicast.json["yiaddr"], ip.as_str());
    assert_eq!(unicast.json["server_id"], "198.18.0.2");
    assert_eq!(unicast.json["giaddr"], "0.0.0.0");
    lab.wait_processed(1);
    let packets = lab.stop_concurrent("trace", "198.18.0.2");
    assert_eq!(packets.len(), 1);
    check_acked_request(&packets[0], GIVE_OLD, &ip, LAB_LEASE);
    assert_eq!(packets[0].call("HandleOptions")["scope_id"], "198.18.0.0");
}

#[test]
fn rebind_is_acked_with_address_offer_old() {
    extended_lease("rebind", "rebind", "02:00:00:00:00:03", 0x0e0e_0004);
}

#[test]
fn init_reboot_with_a_wrong_address_is_nacked() {
    let Some(mut lab) = Lab::start("nak", LAB_QUICK) else {
        return;
    };
    let mac = "02:00:00:00:00:04";
    let ip = lab.dora_ip(mac);
    assert_ne!(ip, "198.18.0.77");
    // INIT-REBOOT (no server id) for an address that is not the client's.
    let nak = lab.client_exit(
        1,
        "exit 1 = NAK",
        "request",
        &[
            "--mac",
            mac,
            "--requested-ip",
            "198.18.0.77",
            "--xid",
            "0x0bad0001",
        ],
        5,
    );
    assert_eq!(nak.json["message_type"], "NAK");
    assert_eq!(nak.json["yiaddr"], "0.0.0.0");
    assert_eq!(nak.json["lease_time"], Value::Null);
    assert_eq!(nak.json["server_id"], SERVER);
    assert_eq!(
        nak.json["broadcast_flag"], true,
        "a NAK through a relay has the broadcast flag"
    );
    // Its own address is still ACKed.
    check_relay_ack(
        &lab.ok("request", &["--mac", mac, "--requested-ip", &ip]),
        &ip,
        LAB_LEASE,
    );
    // An address on another network: NAK even for an unknown client.
    lab.client_exit(
        1,
        "NAK for a foreign network",
        "request",
        &["--mac", "02:00:00:00:00:44", "--requested-ip", "10.1.2.3"],
        5,
    );

    let (_, trace, packets) = lab.finish(5);
    assert_eq!(packets[4].signature(), handled(&[DEL_NACKED, PKT_SEND]));
    assert_eq!(packets[4].call("AddressDel")["alt"], "10.1.2.3");
    let p = &packets[2];
    assert_eq!(p.signature(), handled(&[DEL_NACKED, PKT_SEND]));
    assert_eq!(p.xid, 0x0bad_0001);
    assert_eq!(p.call("HandleOptions")["requested_address"], "198.18.0.77");
    assert_eq!(
        p.call("HandleOptions")["server"],
        Value::Null,
        "INIT-REBOOT has no server id"
    );
    let del = p.call("AddressDel");
    assert_eq!(
        del["alt"], "198.18.0.77",
        "AddressDel alt = the requested address"
    );
    assert_eq!(del["size"], p.calls[0]["size"]);
    check_acked_request(&packets[3], GIVE_OLD, &ip, LAB_LEASE);
    let dels: Vec<&Value> = trace.iter().filter(|r| r["hook"] == "AddressDel").collect();
    assert_eq!(dels.len(), 2);
    assert_eq!(dels[0]["code"], 0x2000_0004u64);
    assert_eq!(dels[0]["alt"], "198.18.0.77");
    assert_eq!(dels[1]["alt"], "10.1.2.3");
}

#[test]
fn decline_puts_the_address_aside() {
    let Some(mut lab) = Lab::start("decline", LAB_QUICK) else {
        return;
    };
    let ip = lab.dora_ip("02:00:00:00:00:05");
    lab.client_exit(
        0,
        "client decline",
        "decline",
        &[
            "--mac",
            "02:00:00:00:00:05",
            "--requested-ip",
            &ip,
            "--xid",
            "0x0dec0001",
        ],
        5,
    );
    lab.wait_processed(3);
    // Neither another client nor the same one is offered the declined address.
    let other = lab.ok("dora", &["--mac", "02:00:00:00:00:06"]);
    assert_ne!(other["yiaddr"], ip.as_str());
    let again = lab.ok(
        "discover",
        &["--mac", "02:00:00:00:00:05", "--requested-ip", &ip],
    );
    assert_eq!(again["message_type"], "OFFER");
    assert_ne!(
        again["yiaddr"],
        ip.as_str(),
        "the declined address is on probation"
    );

    let (_, _, packets) = lab.finish(6);
    let p = &packets[2];
    assert_eq!(
        p.signature(),
        handled(&[DEL_DECLINE]),
        "no reply to a DECLINE"
    );
    assert_eq!(p.xid, 0x0dec_0001);
    assert_eq!(p.call("HandleOptions")["message_type"], 4);
    assert_eq!(p.call("AddressDel")["alt"], ip.as_str());
    check_acked_request(
        &packets[4],
        GIVE_NEW,
        other["yiaddr"].as_str().unwrap(),
        LAB_LEASE,
    );
}

#[test]
fn release_frees_the_binding() {
    // A single worker (no hand-off at all) serves as well.
    let Some(mut lab) = Lab::start_with(
        "release",
        LAB_QUICK,
        |_| vec![fixture("trace")],
        &["--workers", "1"],
        &[],
    ) else {
        return;
    };
    let mac = "02:00:00:00:00:07";
    let ip = lab.dora_ip(mac);
    lab.client_exit(
        0,
        "client release",
        "release",
        &["--mac", mac, "--ciaddr", &ip, "--xid", "0x0e1e0001"],
        5,
    );
    lab.wait_processed(3);
    // A renewal of the released address is refused now.
    lab.client_exit(
        1,
        "renewing a released lease: NAK",
        "renew",
        &["--mac", mac, "--ciaddr", &ip],
        5,
    );

    let (_, trace, packets) = lab.finish(4);
    let threads: std::collections::BTreeSet<u64> = trace
        .iter()
        .filter(|r| r["hook"] != "Control")
        .map(|r| r["thread"].as_u64().unwrap())
        .collect();
    assert_eq!(
        threads.len(),
        1,
        "--workers 1: every packet hook on one thread"
    );
    check_release(&packets[2], &ip);
    assert_eq!(packets[2].xid, 0x0e1e_0001);
    assert_eq!(packets[3].signature(), handled(&[DEL_NACKED, PKT_SEND]));
}

#[test]
fn inform_gets_an_ack_without_lease_time() {
    let Some(mut lab) = Lab::start("inform", LAB_QUICK) else {
        return;
    };
    let ack = lab.ok(
        "inform",
        &[
            "--mac",
            "02:00:00:00:00:08",
            "--ciaddr",
            "198.18.0.222",
            "--xid",
            "0x1f0e0001",
            "--prl",
            "1,3,6,15",
        ],
    );
    assert_eq!(ack["message_type"], "ACK");
    assert_eq!(ack["yiaddr"], "0.0.0.0");
    assert_eq!(ack["ciaddr"], "198.18.0.222");
    for field in ["lease_time", "t1", "t2"] {
        assert_eq!(ack[field], Value::Null, "no {field} in an INFORM ACK");
    }
    let codes: Vec<u64> = ack["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["code"].as_u64().unwrap())
        .collect();
    assert!(
        codes.contains(&3) && codes.contains(&6) && codes.contains(&15),
        "asked-for options: {codes:?}"
    );

    let (_, trace, packets) = lab.finish(1);
    assert_eq!(
        packets[0].signature(),
        handled(&[PKT_SEND]),
        "no AddressOffer for INFORM"
    );
    assert_eq!(packets[0].call("HandleOptions")["message_type"], 8);
    assert_eq!(
        packets[0].call("HandleOptions")["prl"],
        serde_json::json!([1, 3, 6, 15])
    );
    assert!(!trace.iter().any(|r| r["hook"] == "AddressOffer"));
}

#[test]
fn bootp_client_gets_an_address_with_address_offer_bootp() {
    let Some(mut lab) = Lab::start("bootp", "fixtures/scenarios/bootp-scope.txt") else {
        return;
    };
    let reply = lab.ok(
        "bootp",
        &["--mac", "02:00:00:00:00:09", "--xid", "0x0b007001"],
    );
    assert_eq!(reply["message_type"], "BOOTREPLY");
    assert_eq!(reply["yiaddr"], "198.18.0.20");
    assert_eq!(reply["giaddr"], RELAY);
    assert_eq!(reply["magic_cookie"], true);
    let plain = lab.ok("bootp", &["--mac", "02:00:00:00:00:0a", "--no-cookie"]);
    assert_eq!(plain["yiaddr"], "198.18.0.21");
    assert_eq!(
        plain["magic_cookie"], false,
        "no vendor extensions for an RFC 951 request"
    );

    let (_, _, packets) = lab.finish(2);
    for (p, ip) in packets.iter().zip(["198.18.0.20", "198.18.0.21"]) {
        assert_eq!(p.signature(), handled(&[OFFER_NEW, PKT_SEND]));
        assert_eq!(
            p.call("HandleOptions")["message_type"],
            Value::Null,
            "BOOTP has no option 53"
        );
        let give = p.call("AddressOffer");
        assert_eq!(give["alt"], ip);
        assert_eq!(give["addr_type"], CLIENT_BOOTP);
        assert_eq!(
            give["lease"], 0xFFFF_FFFFu64,
            "dynamic BOOTP leases are permanent"
        );
        assert!(p.call("PktSend")["size"].as_u64().unwrap() >= 300);
    }
}

#[test]
fn reservation_is_given_to_its_mac() {
    // The XML export of the same lab configuration.
    let Some(mut lab) = Lab::start("resv", "fixtures/config/lab.xml") else {
        return;
    };
    let mac = "00:15:5d:01:02:03";
    let ack = lab.ok("dora", &["--mac", mac, "--requested-ip", "198.18.0.30"]);
    check_relay_ack(&ack, "198.18.0.50", LAB_LEASE);
    assert_eq!(
        ack["offer"]["yiaddr"], "198.18.0.50",
        "the reservation beats the requested address"
    );
    // Nobody else gets the reserved address, even asking for it.
    let other = lab.ok(
        "dora",
        &[
            "--mac",
            "02:00:00:00:00:0b",
            "--requested-ip",
            "198.18.0.50",
        ],
    );
    assert_ne!(other["yiaddr"], "198.18.0.50");

    let (_, _, packets) = lab.finish(4);
    check_discover(&packets[0], mac, "198.18.0.0");
    check_acked_request(&packets[1], GIVE_NEW, "198.18.0.50", LAB_LEASE);
    check_acked_request(
        &packets[3],
        GIVE_NEW,
        other["yiaddr"].as_str().unwrap(),
        LAB_LEASE,
    );
}

/// The addresses excluded in fixtures/scenarios/exclusions.txt.
fn excluded(ip: &str) -> bool {
    let last: u8 = ip.strip_prefix("198.18.0.").unwrap().parse().unwrap();
    (10..=19).contains(&last) || (22..=27).contains(&last)
}

#[test]
fn excluded_addresses_are_never_offered() {
    let Some(mut lab) = Lab::start("excl", "fixtures/scenarios/exclusions.txt") else {
        return;
    };
    let mut leased = Vec::new();
    // Five clients, each asking for an excluded address: they get the five free ones.
    for (n, wish) in [
        "198.18.0.10",
        "198.18.0.15",
        "198.18.0.22",
        "198.18.0.25",
        "198.18.0.27",
    ]
    .iter()
    .enumerate()
    {
        let ack = lab.ok(
            "dora",
            &[
                "--mac",
                &format!("02:00:00:00:01:{n:02x}"),
                "--requested-ip",
                wish,
            ],
        );
        let ip = ack["yiaddr"].as_str().unwrap().to_string();
        assert!(!excluded(&ip), "{ip} is excluded");
        assert_eq!(ack["offer"]["yiaddr"], ip.as_str());
        leased.push(ip);
    }
    leased.sort();
    assert_eq!(
        leased,
        [
            "198.18.0.20",
            "198.18.0.21",
            "198.18.0.28",
            "198.18.0.29",
            "198.18.0.30"
        ]
    );
    // The sixth finds no address although 16 of the range's are excluded and unused.
    lab.client_exit(
        2,
        "no offer",
        "discover",
        &[
            "--mac",
            "02:00:00:00:01:05",
            "--requested-ip",
            "198.18.0.12",
        ],
        1,
    );

    let (_, trace, packets) = lab.finish(11);
    for p in &packets[..10] {
        assert!(
            p.signature() == handled(&[PKT_SEND]) || p.signature()[2] == OFFER_NEW,
            "{:?}",
            p.signature()
        );
    }
    assert_eq!(packets[10].signature(), handled(&[DROP_NOADDRESS]));
    for give in trace.iter().filter(|r| r["hook"] == "AddressOffer") {
        assert!(!excluded(give["alt"].as_str().unwrap()), "{give}");
    }
}

#[test]
fn pool_exhaustion_drops_noaddress() {
    let Some(mut lab) = Lab::start("exhaust", "fixtures/scenarios/tiny-pool.txt") else {
        return;
    };
    let a = lab.ok("dora", &["--mac", "02:00:00:00:02:01"]);
    let b = lab.ok("dora", &["--mac", "02:00:00:00:02:02"]);
    let mut got = [a["yiaddr"].as_str().unwrap(), b["yiaddr"].as_str().unwrap()];
    got.sort();
    assert_eq!(got, ["198.18.0.10", "198.18.0.11"]);
    lab.client_exit(
        2,
        "no OFFER when the pool is exhausted",
        "discover",
        &["--mac", "02:00:00:00:02:03", "--xid", "0x0e0a0003"],
        1,
    );

    let (_, trace, packets) = lab.finish(5);
    let p = &packets[4];
    assert_eq!(p.signature(), handled(&[DROP_NOADDRESS]));
    assert_eq!(p.xid, 0x0e0a_0003);
    assert_eq!(p.call("HandleOptions")["message_type"], 1);
    assert!(!trace
        .iter()
        .any(|r| r["hook"] == "PktSend" && r["xid"] == 0x0e0a_0003u64));
}

#[test]
fn garbage_datagram_is_invalid_and_the_server_keeps_serving() {
    let Some(mut lab) = Lab::start("garbage", LAB_QUICK) else {
        return;
    };
    // 12 bytes: too short for BOOTP; bytes 4..8 make the xid 0xdeadbeef.
    send_garbage(&lab.ns);
    lab.wait_processed(1);
    let ack = lab.ok("dora", &["--mac", "02:00:00:00:03:01"]);
    check_relay_ack(&ack, "198.18.0.20", LAB_LEASE);

    let (_, _, packets) = lab.finish(3);
    let p = &packets[0];
    assert_eq!(
        p.signature(),
        sig(&[NEW_PKT, DROP_INVALID, PROCESSED]),
        "no HandleOptions for an unparsable datagram"
    );
    assert_eq!(p.xid, 0xdead_beefu64);
    assert_eq!(p.calls[0]["size"], 12);
    check_acked_request(&packets[2], GIVE_NEW, "198.18.0.20", LAB_LEASE);
}

#[test]
fn request_for_another_server_is_dropped_wrong_server() {
    // Two addresses: the first client's offer holds one, a second client takes the other.
    let Some(mut lab) = Lab::start("wrongsrv", "fixtures/scenarios/tiny-pool.txt") else {
        return;
    };
    let mac = "02:00:00:00:04:01";
    let offer = lab.ok("discover", &["--mac", mac, "--xid", "0x05e40001"]);
    assert_eq!(offer["message_type"], "OFFER");
    let offered = offer["yiaddr"].as_str().unwrap().to_string();
    let second = lab.ok("dora", &["--mac", "02:00:00:00:04:02"]);
    assert_ne!(second["yiaddr"], offered.as_str());
    // The first client chose another server's offer: REQUEST with that server's id.
    lab.client_exit(
        2,
        "no reply to a REQUEST for another server",
        "request",
        &[
            "--mac",
            mac,
            "--xid",
            "0x05e40001",
            "--requested-ip",
            "198.18.0.140",
            "--server-id",
            "198.18.0.254",
        ],
        1,
    );
    // Our offer was freed at once: a third client gets that address (otherwise the pool is empty).
    let third = lab.ok("dora", &["--mac", "02:00:00:00:04:03"]);
    assert_eq!(
        third["yiaddr"],
        offered.as_str(),
        "the offer to the first client was freed"
    );

    let (_, trace, packets) = lab.finish(6);
    let p = &packets[3];
    assert_eq!(p.signature(), handled(&[DROP_WRONG_SERVER]));
    assert_eq!(p.xid, 0x05e4_0001);
    assert_eq!(p.call("HandleOptions")["server"], "198.18.0.254");
    assert_eq!(p.call("HandleOptions")["requested_address"], "198.18.0.140");
    assert!(
        !trace.iter().any(|r| r["hook"] == "AddressDel"),
        "no AddressDel for a REQUEST to another server"
    );
}

#[test]
fn restart_keeps_leases() {
    let audit = tempfile::tempdir().unwrap();
    let audit_dir = audit.path().to_str().unwrap().to_string();
    let trace = |_: &Path| vec![fixture("trace")];
    let extra = ["--audit-log", audit_dir.as_str()];
    let Some(mut lab) = Lab::start_with("restart", LAB_QUICK, trace, &extra, &[]) else {
        return;
    };
    let mac = "02:00:00:00:05:01";
    let ip = lab.dora_ip(mac);
    lab.finish(2);

    lab.start_server();
    // INIT-REBOOT for its address: ACK, AddressOffer OLD (the lease came back from the database).
    let again = lab.ok(
        "request",
        &["--mac", mac, "--requested-ip", &ip, "--xid", "0x4e500001"],
    );
    check_relay_ack(&again, &ip, LAB_LEASE);
    let renewed = lab.ok(
        "renew",
        &["--mac", mac, "--ciaddr", &ip, "--xid", "0x4e500002"],
    );
    check_relay_ack(&renewed, &ip, LAB_LEASE);
    // Another client does not get the restored address.
    let other = lab.ok("dora", &["--mac", "02:00:00:00:05:02"]);
    assert_ne!(other["yiaddr"], ip.as_str());

    let (_, _, packets) = lab.finish(4);
    check_acked_request(&packets[0], GIVE_OLD, &ip, LAB_LEASE);
    check_acked_request(&packets[1], GIVE_OLD, &ip, LAB_LEASE);
    check_acked_request(
        &packets[3],
        GIVE_NEW,
        other["yiaddr"].as_str().unwrap(),
        LAB_LEASE,
    );
    // The audit header at every service start (not only into an empty file), each followed by 00,
    // and 01 at each stop.
    let files: Vec<PathBuf> = fs::read_dir(audit.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    if files.len() != 1 {
        // The test ran over midnight: a new day's file starts with a header of its own.
        eprintln!("restart_keeps_leases: audit header check skipped: {files:?}");
        return;
    }
    let text = fs::read_to_string(&files[0]).unwrap();
    let runs: Vec<&str> = text.split(calloutd_engine::audit::HEADER).collect();
    assert_eq!(runs.len(), 3, "two headers in:\n{text}");
    assert_eq!(runs[0], "", "the file starts with the header");
    for run in &runs[1..] {
        assert!(run.starts_with("00,"), "00 right after the header:\n{text}");
        assert!(run.contains("\n01,"), "01 at each stop:\n{text}");
    }
}

/// One hook call as seen by two copies of the trace callout around a sleeping `faulty` in a chain:
/// its position in the log when it started (trace2's line) and when it ended (trace3's line).
#[derive(Debug, Clone, Copy)]
struct Interval {
    xid: u64,
    start: usize,
    end: usize,
}

/// Pairs trace2 (before faulty) and trace3 (after faulty) lines of `hook` into intervals of log
/// positions: the log is one file both append to, so its order is the order of events in time.
fn intervals(log: &[Value], hook: &str) -> Vec<Interval> {
    let mut open: Vec<(u64, usize)> = Vec::new();
    let mut done = Vec::new();
    for (i, r) in log.iter().enumerate().filter(|(_, r)| r["hook"] == hook) {
        let xid = r["xid"].as_u64().unwrap();
        match r["dll"].as_str() {
            Some("trace2") => open.push((xid, i)),
            Some("trace3") => {
                let at = open
                    .iter()
                    .position(|(x, _)| *x == xid)
                    .unwrap_or_else(|| panic!("end without start: {r}"));
                let (_, start) = open.remove(at);
                done.push(Interval { xid, start, end: i });
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "{hook} calls that never ended: {open:?}");
    done.sort_by_key(|iv| iv.start);
    done
}

/// Something that spans [start, end): a hook call in log positions or in microseconds.
trait Span: Copy {
    fn span(&self) -> (u64, u64);
}

impl Span for Interval {
    fn span(&self) -> (u64, u64) {
        (self.start as u64, self.end as u64)
    }
}

/// The pairs of `list` whose spans overlap.
fn overlapping_pairs<T: Span>(list: &[T]) -> Vec<(T, T)> {
    let mut pairs = Vec::new();
    for (i, a) in list.iter().enumerate() {
        for b in &list[i + 1..] {
            let ((a_start, a_end), (b_start, b_end)) = (a.span(), b.span());
            if b_start < a_end && a_start < b_end {
                pairs.push((*a, *b));
            }
        }
    }
    pairs
}

/// A hook call from the server's trace: [ts_us, ts_us + dur_us) on a worker thread.
#[derive(Debug, Clone, Copy)]
struct TimedCall {
    start: u64,
    end: u64,
    thread: u64,
}

fn timed_calls(trace: &[Value], hook: &str) -> Vec<TimedCall> {
    trace
        .iter()
        .filter(|r| r["hook"] == hook)
        .map(|r| {
            let start = r["ts_us"].as_u64().expect("ts_us in the server trace");
            TimedCall {
                start,
                end: start + r["dur_us"].as_u64().unwrap(),
                thread: r["thread"].as_u64().unwrap(),
            }
        })
        .collect()
}

impl Span for TimedCall {
    fn span(&self) -> (u64, u64) {
        (self.start, self.end)
    }
}

/// Runs `clients` concurrent DORAs (one relay address each) against a server with 4 workers whose
/// callout is chain → trace2, faulty (sleeping 50 ms in `sleep_hook`), trace3, and returns the
/// chain's shared log and the server trace.
fn stalled_run(tag: &str, sleep_hook: &str, clients: usize) -> (Vec<Value>, Vec<Value>) {
    let mut lab = Lab::start_with(
        tag,
        LAB_QUICK,
        chained_faulty,
        &["--workers", "4"],
        &[
            ("CALLOUT_FAULTY_SLEEP_HOOK", sleep_hook),
            ("CALLOUT_FAULTY_SLEEP_MS", "50"),
        ],
    )
    .expect("the test checked for root");
    for n in 0..clients {
        lab.ns
            .add_addr(&format!("198.18.0.{}/32", 2 + n), "lo")
            .unwrap();
    }
    let children: Vec<_> = (0..clients)
        .map(|n| {
            let mut cmd = lab.ns.command(&calloutd_bin());
            cmd.args([
                "client",
                "dora",
                "--retries",
                "0",
                "--timeout",
                "10",
                "--server",
                "127.0.0.1:67",
            ])
            .args(["--giaddr", &format!("198.18.0.{}:67", 2 + n)])
            .args([
                "--mac",
                &format!("02:00:00:00:06:{n:02x}"),
                "--xid",
                &format!("0x5a{n:06x}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for mut child in children {
        // The clients give up on their own after 10 s; the bound covers a client that hangs.
        let status = wait_or_kill(&mut child, Duration::from_secs(30)).unwrap();
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        assert!(
            status.is_some_and(|s| s.success()),
            "client ({status:?}): {stderr}"
        );
    }
    lab.wait_processed(2 * clients * 2);
    let (log, trace) = lab.run.stop();
    check_server_trace(&trace);
    (log, trace)
}

#[test]
fn slow_address_offer_stalls_other_workers_slow_new_pkt_does_not() {
    if !have_root("slow_address_offer_stalls_other_workers_slow_new_pkt_does_not") {
        return;
    }
    const CLIENTS: usize = 6;
    // Both runs at once, in two namespaces.
    let offer_run = std::thread::spawn(|| stalled_run("stall-o", "AddressOffer", CLIENTS));
    let (pkt_log, pkt_trace) = stalled_run("stall-n", "NewPkt", CLIENTS);
    let (offer_log, offer_trace) = offer_run.join().unwrap();

    // Sleeping in AddressOffer (under the lease lock): while one worker sleeps, no other worker's
    // AddressOffer starts - even though REQUESTs were being processed concurrently.
    let offers = intervals(&offer_log, "AddressOffer");
    eprintln!("AddressOffer calls (log positions) with AddressOffer sleeping: {offers:?}");
    assert_eq!(offers.len(), CLIENTS, "{offers:?}");
    assert!(
        overlapping_pairs(&offers).is_empty(),
        "AddressOffer calls overlapped: {:?}",
        overlapping_pairs(&offers)
    );
    let requests: Vec<Interval> = {
        // A REQUEST packet's span: from its NewPkt start to its PktDrop(PROCESSED) end.
        let starts = intervals(&offer_log, "NewPkt");
        let ends = intervals(&offer_log, "PktDrop");
        let mut spans = Vec::new();
        for give in &offers {
            let start = starts
                .iter()
                .filter(|s| s.xid == give.xid && s.start < give.start)
                .map(|s| s.start)
                .max()
                .unwrap();
            let end = ends
                .iter()
                .filter(|e| e.xid == give.xid && e.end > give.end)
                .map(|e| e.end)
                .min()
                .unwrap();
            spans.push(Interval {
                xid: give.xid,
                start,
                end,
            });
        }
        spans.sort_by_key(|s| s.start);
        spans
    };
    assert!(
        !overlapping_pairs(&requests).is_empty(),
        "no two REQUESTs were in flight at once, so the run shows nothing: {requests:?}"
    );
    // The stalled calls ran on several worker threads, all under the lease lock.
    let give: Vec<&Value> = offer_trace
        .iter()
        .filter(|r| r["hook"] == "AddressOffer")
        .collect();
    assert_eq!(give.len(), CLIENTS);
    let granted: std::collections::BTreeSet<&str> =
        give.iter().map(|r| r["alt"].as_str().unwrap()).collect();
    assert_eq!(
        granted.len(),
        CLIENTS,
        "concurrent clients got distinct addresses: {give:?}"
    );
    let threads: std::collections::BTreeSet<u64> =
        give.iter().map(|r| r["thread"].as_u64().unwrap()).collect();
    assert!(
        threads.len() >= 2,
        "AddressOffer on one thread only: {give:?}"
    );

    // Sleeping in NewPkt (no server lock): NewPkt calls of different packets overlap, on different
    // worker threads.
    let new_pkts = intervals(&pkt_log, "NewPkt");
    eprintln!("NewPkt calls (log positions) with NewPkt sleeping: {new_pkts:?}");
    assert_eq!(new_pkts.len(), 2 * CLIENTS);
    let overlaps = overlapping_pairs(&new_pkts);
    assert!(
        !overlaps.is_empty(),
        "no NewPkt calls overlapped: {new_pkts:?}"
    );
    assert!(overlaps.iter().any(|(a, b)| a.xid != b.xid));
    let threads: std::collections::BTreeSet<u64> = pkt_trace
        .iter()
        .filter(|r| r["hook"] == "NewPkt")
        .map(|r| r["thread"].as_u64().unwrap())
        .collect();
    assert!(threads.len() >= 2, "NewPkt on one thread only");
    let timed = timed_calls(&pkt_trace, "NewPkt");
    assert!(
        overlapping_pairs(&timed)
            .iter()
            .any(|(a, b)| a.thread != b.thread),
        "no NewPkt calls on different threads overlap in the server trace: {timed:?}"
    );
}

#[test]
fn relay_agent_information_is_echoed_last() {
    let Some(mut lab) = Lab::start("opt82", LAB_QUICK) else {
        return;
    };
    // Option 82 with a circuit id (1) "eth0" and a remote id (2) of three bytes.
    let relay_info = "01:04:65:74:68:30:02:03:aa:bb:cc";
    let ack = lab.ok(
        "dora",
        &[
            "--mac",
            "02:00:00:00:08:01",
            "--option",
            &format!("82={relay_info}"),
        ],
    );
    check_relay_ack(&ack, "198.18.0.20", LAB_LEASE);
    for reply in [&ack["offer"], &ack] {
        let options = reply["options"].as_array().unwrap();
        let last = options.last().unwrap();
        assert_eq!(
            last["code"], 82,
            "option 82 is the last option: {options:?}"
        );
        assert_eq!(
            last["hex"].as_str().unwrap().replace([':', ' '], ""),
            relay_info.replace(':', ""),
            "echoed unchanged"
        );
        assert_eq!(options[0]["code"], 53, "option 53 first");
    }
    let (_, _, packets) = lab.finish(2);
    check_acked_request(&packets[1], GIVE_NEW, "198.18.0.20", LAB_LEASE);
}

#[test]
fn pkt_send_edits_go_on_the_wire() {
    // rewrite.c: NewPkt swaps in a copy with option 224 added; PktSend adds option 225 in place.
    let Some(mut lab) =
        Lab::start_with("rewrite", LAB_QUICK, |_| vec![fixture("rewrite")], &[], &[])
    else {
        return;
    };
    let ack = lab.ok("dora", &["--mac", "02:00:00:00:09:01"]);
    check_relay_ack(&ack, "198.18.0.20", LAB_LEASE);
    for reply in [&ack["offer"], &ack] {
        // Option 225 comes from PktSend.
        let mark = reply_option(reply, 225);
        assert_eq!(
            mark["hex"].as_str().unwrap().replace([':', ' '], ""),
            hex(b"sent-by-rewrite")
        );
    }
    // rewrite sets only NewPkt and PktSend: the trace holds only the calls that reached the DLL.
    let (_, trace) = lab.run.stop();
    let hooks: Vec<&str> = trace.iter().map(|r| r["hook"].as_str().unwrap()).collect();
    assert_eq!(hooks, ["NewPkt", "PktSend", "NewPkt", "PktSend"]);
    assert!(trace.iter().all(|r| r.get("fault").is_none()), "{trace:?}");
}

#[test]
fn conflict_detection_skips_an_address_in_use() {
    // lab-netsh.txt sets DetectConflictRetry 2. Someone already uses 198.18.0.20 (it answers
    // pings inside the namespace), so the server must skip it: AddressDel(CONFLICT), offer .21.
    let Some(mut lab) = Lab::start("conflict", LAB_SCOPES) else {
        return;
    };
    lab.ns.add_addr("198.18.0.20/32", "lo").unwrap();
    let ack = lab.ok("dora", &["--mac", "02:00:00:00:0a:01"]);
    check_relay_ack(&ack, "198.18.0.21", LAB_LEASE);
    let (_, _, packets) = lab.finish(2);
    assert_eq!(
        packets[0].signature(),
        handled(&["AddressDel(0x20000001)", PKT_SEND])
    );
    assert_eq!(packets[0].call("AddressDel")["alt"], "198.18.0.20");
    check_acked_request(&packets[1], GIVE_NEW, "198.18.0.21", LAB_LEASE);
}

#[test]
fn process_it_false_drops_the_packet() {
    // chain → macfilter (ProcessIt = FALSE for DISCOVER/REQUEST from 02:00:5e:...), trace.
    let chain = |dir: &Path| {
        fixture_copies(
            dir,
            &[
                ("a-chain", "chain"),
                ("b-macfilter", "macfilter"),
                ("c-trace", "trace"),
            ],
        )
    };
    let Some(mut lab) = Lab::start_with(
        "macfilt",
        LAB_QUICK,
        chain,
        &[],
        &[("CALLOUT_MACFILTER_PREFIX", "02:00:5e")],
    ) else {
        return;
    };
    lab.client_exit(
        2,
        "no OFFER for a filtered MAC",
        "discover",
        &["--mac", "02:00:5e:00:00:01", "--xid", "0x0f1e0001"],
        1,
    );
    check_relay_ack(
        &lab.ok("dora", &["--mac", "02:00:00:00:0b:01"]),
        "198.18.0.20",
        LAB_LEASE,
    );

    lab.wait_processed(3);
    let packets = lab.stop_concurrent("trace", SERVER);
    assert_eq!(packets.len(), 3);
    assert_eq!(
        packets[0].signature(),
        sig(&[NEW_PKT, PROCESSED]),
        "ProcessIt = FALSE: nothing but PROCESSED after NewPkt"
    );
    assert_eq!(packets[0].xid, 0x0f1e_0001);
    check_acked_request(&packets[2], GIVE_NEW, "198.18.0.20", LAB_LEASE);
}

#[test]
fn relay_outside_every_scope_is_dropped_no_subnets() {
    let Some(mut lab) = Lab::start("nosubnet", LAB_QUICK) else {
        return;
    };
    lab.ns.add_addr("198.19.5.1/32", "lo").unwrap();
    let none = lab.client_via(
        "discover",
        &["--server", "127.0.0.1:67", "--giaddr", "198.19.5.1:67"],
        &["--mac", "02:00:00:00:0c:01", "--xid", "0x05c00001"],
        1,
    );
    assert_eq!(
        none.code, 2,
        "no OFFER for a relay outside every scope: {}",
        none.stderr
    );
    let (_, _, packets) = lab.finish(1);
    assert_eq!(packets[0].signature(), handled(&["PktDrop(0x7)"]));
    assert_eq!(
        packets[0].call("HandleOptions")["scope_id"],
        Value::Null,
        "no scope: ScopeId NULL"
    );
}

#[test]
fn sigint_stops_cleanly_with_control_stop_last() {
    let Some(mut lab) = Lab::start("sigint", LAB_QUICK) else {
        return;
    };
    let ip = lab.dora_ip("02:00:00:00:0d:01");
    lab.wait_processed(2);
    let (log, trace) = lab.run.stop_with("INT");
    assert_eq!(log.last().unwrap()["hook"], "Control");
    assert_eq!(log.last().unwrap()["code"], 2, "Control STOP last");
    check_server_trace(&trace);
    // The lease was flushed: a restart knows it.
    lab.start_server();
    let again = lab.ok(
        "request",
        &["--mac", "02:00:00:00:0d:01", "--requested-ip", &ip],
    );
    check_relay_ack(&again, &ip, LAB_LEASE);
    let (_, _, packets) = lab.finish(1);
    check_acked_request(&packets[0], GIVE_OLD, &ip, LAB_LEASE);
}

/// A DORA through a relay in the lab's second scope (198.18.1.0/24, type Both: reservation
/// 198.18.1.30 for the client UID 01:00:15:5d:0a:0b:0c, lease 1800, options 66/67).
fn scope_b_dora(lab: &Lab, extra: &[&str]) -> Value {
    let mut args = vec!["--mac", "00:15:5d:0a:0b:0c", "--prl", "1,3,66,67"];
    args.extend_from_slice(extra);
    let run = lab.client_via(
        "dora",
        &["--server", "127.0.0.1:67", "--giaddr", "198.18.1.1:67"],
        &args,
        5,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json
}

#[test]
fn second_scope_by_giaddr_with_reservation_and_boot_fields() {
    let Some(mut lab) = Lab::start("scopeb", LAB_QUICK) else {
        return;
    };
    lab.ns.add_addr("198.18.1.1/24", RELAY_LINK).unwrap();
    let ack = scope_b_dora(&lab, &["--client-id", "01:00:15:5d:0a:0b:0c"]);
    assert_eq!(ack["message_type"], "ACK");
    assert_eq!(
        ack["yiaddr"], "198.18.1.30",
        "the reservation by client identifier (option 61)"
    );
    assert_eq!(ack["lease_time"], 1800);
    assert_eq!(ack["giaddr"], "198.18.1.1");
    assert_eq!(ack["file"], "pxelinux.0", "boot file from option 67");
    assert_eq!(reply_option(&ack, 3)["value"], "198.18.1.1", "router");

    let (_, _, packets) = lab.finish(2);
    assert_eq!(packets[0].call("HandleOptions")["scope_id"], "198.18.1.0");
    check_acked_request(&packets[1], GIVE_NEW, "198.18.1.30", 1800);
}

#[test]
fn reservation_uid_matches_htype_and_chaddr_without_option_61() {
    let Some(lab) = Lab::start("scopebh", LAB_QUICK) else {
        return;
    };
    lab.ns.add_addr("198.18.1.1/24", RELAY_LINK).unwrap();
    let ack = scope_b_dora(&lab, &[]);
    assert_eq!(
        ack["yiaddr"], "198.18.1.30",
        "identity htype+chaddr = 01:00:15:5d:0a:0b:0c is the reservation's UID"
    );
}

#[test]
fn user_class_gets_its_option_values() {
    // lab: option 15 = "lab.example" for everyone, "printers.lab.example" for user class "LABPRN".
    let Some(mut lab) = Lab::start("uclass", LAB_QUICK) else {
        return;
    };
    let domain = |reply: &Value| -> String {
        let opt = reply_option(reply, 15)["value"].as_str().unwrap();
        opt.trim_matches('"').to_string()
    };
    let printer = lab.ok(
        "dora",
        &[
            "--mac",
            "02:00:00:00:0e:01",
            "--user-class",
            "LABPRN",
            "--prl",
            "1,3,15",
        ],
    );
    assert_eq!(domain(&printer), "printers.lab.example");
    assert_eq!(domain(&printer["offer"]), "printers.lab.example");
    let plain = lab.ok("dora", &["--mac", "02:00:00:00:0e:02", "--prl", "1,3,15"]);
    assert_eq!(domain(&plain), "lab.example");
    lab.finish(4);
}

#[test]
fn handle_options_maps_the_request_options() {
    let Some(mut lab) = Lab::start("hopts", LAB_QUICK) else {
        return;
    };
    let fqdn = hex(b"pc9.lab.example");
    let discover = lab.ok(
        "discover",
        &[
            "--mac",
            "02:00:00:00:0f:01",
            "--hostname",
            "pc9",
            "--vendor-class",
            "MSFT 5.0",
            "--user-class",
            "LABPRN",
            "--prl",
            "1,3,6,15",
            "--option",
            "51=00000e10",
            "--option",
            "1=ffffff00",
            "--option",
            "3=c6120001",
            "--option",
            &format!("81=010000{fqdn}"),
        ],
    );
    assert_eq!(discover["message_type"], "OFFER");
    let (_, _, packets) = lab.finish(1);
    let o = packets[0].call("HandleOptions");
    assert_eq!(o["message_type"], 1);
    assert_eq!(o["request_lease_time"], 3600);
    assert_eq!(o["subnet_mask"], "255.255.255.0");
    assert_eq!(o["router_address"], "198.18.0.1");
    assert_eq!(o["prl"], serde_json::json!([1, 3, 6, 15]));
    assert_eq!(o["machine_name"], "pc9");
    assert_eq!(o["vendor_class"], "MSFT 5.0");
    assert_eq!(
        o["class_id"], "LABPRN",
        "ClassIdentifier = the user class (77)"
    );
    assert_eq!(o["dns_flags"], 1);
    assert_eq!(o["dns_name"], "pc9.lab.example");
    assert_eq!(o["ds_domain_name_null"], true);
    assert_eq!(o["requested_address"], Value::Null);
    assert_eq!(o["server"], Value::Null);
    assert_eq!(o["scope_id"], "198.18.0.0");
}

#[test]
fn an_acked_lease_survives_sigkill() {
    // An ACK is sent only after its lease is committed: killing the server right after the ACK
    // (no clean stop, no flush) must not lose the lease.
    let Some(mut lab) = Lab::start("sigkill", LAB_QUICK) else {
        return;
    };
    let mac = "02:00:00:00:10:01";
    let ip = lab.dora_ip(mac);
    drop(lab.run.server.take()); // SIGKILL
    lab.start_server();
    // Another client must not get the address; the owner's INIT-REBOOT is ACKed as OLD.
    let other = lab.ok("dora", &["--mac", "02:00:00:00:10:02"]);
    assert_ne!(
        other["yiaddr"],
        ip.as_str(),
        "the killed server's lease was lost"
    );
    let again = lab.ok("request", &["--mac", mac, "--requested-ip", &ip]);
    check_relay_ack(&again, &ip, LAB_LEASE);
    let (_, _, packets) = lab.finish(3);
    check_acked_request(&packets[2], GIVE_OLD, &ip, LAB_LEASE);
}

#[test]
fn a_copy_of_a_packet_in_flight_is_dropped_duplicate() {
    // chain → trace2, faulty (NewPkt sleeps 200 ms), trace3: the first copy is still in NewPkt when
    // the second arrives.
    let Some(mut lab) = Lab::start_with(
        "dup",
        LAB_QUICK,
        chained_faulty,
        &[],
        &[
            ("CALLOUT_FAULTY_SLEEP_HOOK", "NewPkt"),
            ("CALLOUT_FAULTY_SLEEP_MS", "200"),
        ],
    ) else {
        return;
    };
    // The same relayed DISCOVER (xid 0x0d0b0001, giaddr 198.18.0.1, hops 1) sent twice at once.
    send_relayed_discovers(&lab.ns, &[(0x0d0b_0001, [2, 0, 0, 0, 0x11, 1]); 2]);
    // Two packets, each seen by trace2 and trace3.
    lab.wait_processed(4);
    let mut signatures: Vec<Vec<String>> = lab
        .stop_concurrent("trace2", SERVER)
        .iter()
        .map(|p| {
            assert_eq!(p.xid, 0x0d0b_0001u64);
            p.signature()
        })
        .collect();
    signatures.sort();
    assert_eq!(
        signatures,
        [handled(&["PktDrop(0x1)"]), handled(&[PKT_SEND]),],
        "one copy answered, the other dropped as DUPLICATE"
    );
}

/// The callout chain → trace2, faulty, trace3, copied into `dir` under names whose alphabetical load
/// order puts the chain first (it then loads the other three, in this order, from ChainDlls).
fn chained_faulty(dir: &Path) -> Vec<PathBuf> {
    fixture_copies(
        dir,
        &[
            ("a-chain", "chain"),
            ("b-start", "trace2"),
            ("c-faulty", "faulty"),
            ("d-end", "trace3"),
        ],
    )
}

/// Sends relayed DISCOVERs with xids 0x0e0e0100 + i and MACs 02:00:00:00:12:i for i < `count`,
/// back to back from one socket inside the namespace.
fn burst_discovers(ns: &NetNs, count: u8) {
    let packets: Vec<(u32, [u8; 6])> = (0..count)
        .map(|i| (0x0e0e_0100 + u32::from(i), [2, 0, 0, 0, 0x12, i]))
        .collect();
    send_relayed_discovers(ns, &packets);
}

#[test]
fn a_full_queue_drops_nomem() {
    // One worker stuck 200 ms in NewPkt, a queue of one: a burst of DISCOVERs overflows it.
    let Some(mut lab) = Lab::start_with(
        "nomem",
        LAB_QUICK,
        chained_faulty,
        &["--workers", "1", "--queue", "1"],
        &[
            ("CALLOUT_FAULTY_SLEEP_HOOK", "NewPkt"),
            ("CALLOUT_FAULTY_SLEEP_MS", "200"),
        ],
    ) else {
        return;
    };
    const BURST: usize = 5;
    burst_discovers(&lab.ns, BURST as u8);
    lab.wait_processed(2 * BURST);
    let packets = lab.stop_concurrent("trace2", SERVER);
    assert_eq!(packets.len(), BURST, "every datagram reached NewPkt");
    let answered = handled(&[PKT_SEND]);
    let nomem = handled(&["PktDrop(0x2)"]);
    for p in &packets {
        assert!(
            p.signature() == answered || p.signature() == nomem,
            "{:?}",
            p.signature()
        );
    }
    // Which copies overflow depends on when the worker finds a backlog; that one does is certain.
    assert!(
        packets.iter().any(|p| p.signature() == nomem),
        "no NOMEM drop: {packets:?}"
    );
}
