//! End-to-end tests of policies (also with `ActivatePolicies` false), superscopes, option overload
//! and the default `IgnoreBroadcastFlag` (issue 15) through the real binary: `calloutd serve` with
//! fixtures/config/policy-lab.xml and the trace callout inside a network namespace of its own,
//! `calloutd client` as the relay. The trace callout's log shows what a DLL would see: HandleOptions'
//! ScopeId and AddressOffer's LeaseTime. The option overload test reads the reply datagram itself
//! (`raw` in the client's JSON): option 52 and the options in `file` and `sname`.
//!
//! Tests skip (with a printed reason) when not run as root.

// Unix only: starts the Linux calloutd with .so fixture callouts, mostly inside network namespaces.
#![cfg(unix)]

mod support;

use serde_json::Value;
use support::*;

const SCOPES: &str = "fixtures/config/policy-lab.xml";
/// The relay of the policy scope 198.18.0.0/24.
const POLICY_RELAY: &str = "198.18.0.1";
/// The relay of superscope member 198.19.0.0/24 (whose pool is one address).
const MULTINET_RELAY: &str = "198.19.0.1";
/// The relay of scope 198.18.4.0/24, whose option values do not fit a 576-byte reply.
const OVERLOAD_RELAY: &str = "198.18.4.1";
/// The relay of scope 198.18.6.0/24: the MAC prefix policy again, with `ActivatePolicies` false.
const POLICIES_OFF_RELAY: &str = "198.18.6.1";

/// A namespace with both relay addresses on a veth link, and a server with the trace callout.
/// Fields drop in order: the server stops before its files and the namespace go.
struct Lab {
    run: TracedRun,
    _dir: tempfile::TempDir,
    ns: NetNs,
}

impl Lab {
    fn start(tag: &str) -> Option<Lab> {
        Lab::start_with(tag, &[])
    }

    /// [`Lab::start`] with more `serve` arguments.
    fn start_with(tag: &str, extra: &[&str]) -> Option<Lab> {
        if !have_root(&current_test()) {
            return None;
        }
        let ns = NetNs::new(tag).expect("create the namespace");
        // A veth link, not `lo`: a /24 on `lo` would make every address of the subnet local.
        ns.ip(&[
            "link", "add", "relay0", "type", "veth", "peer", "name", "relay1",
        ])
        .expect("relay link");
        ns.ip(&["link", "set", "relay0", "up"]).unwrap();
        ns.ip(&["link", "set", "relay1", "up"]).unwrap();
        ns.add_addr(&format!("{POLICY_RELAY}/24"), "relay0")
            .unwrap();
        ns.add_addr(&format!("{MULTINET_RELAY}/24"), "relay0")
            .unwrap();
        ns.add_addr(&format!("{OVERLOAD_RELAY}/24"), "relay0")
            .unwrap();
        ns.add_addr(&format!("{POLICIES_OFF_RELAY}/24"), "relay0")
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("callout.reg");
        write_callout_reg(&reg, &[fixture("trace")]);
        let mut args = strings(&["--listen", "127.0.0.1:67", "--workers", "1"]);
        args.extend(strings(extra));
        let run = TracedRun::start(
            &ns,
            dir.path(),
            1,
            &reg,
            &repo_root().join(SCOPES),
            &args,
            &[],
        );
        Some(Lab { run, _dir: dir, ns })
    }

    /// `calloutd client VERB` as relay `giaddr` to the server; must exit 0; its JSON.
    fn ok(&self, verb: &str, giaddr: &str, args: &[&str]) -> Value {
        let relay = format!("{giaddr}:67");
        let transport = ["--server", "127.0.0.1:67", "--giaddr", relay.as_str()];
        let run = run_client(&self.ns, verb, 5, &[&transport[..], args].concat());
        assert_eq!(
            run.code,
            0,
            "client {verb} {args:?}: {}\nserver log:\n{}",
            run.stderr,
            self.run.server_log()
        );
        run.json
    }

    /// Stops the server and returns the trace callout's packets.
    fn packets(&mut self, n: usize) -> Vec<PacketCalls> {
        self.run.wait_processed(n);
        let (log, trace) = self.run.stop();
        check_server_trace(&trace);
        let packets = callout_packets(&log, "trace");
        assert_eq!(packets.len(), n, "packets: {packets:?}");
        packets
    }
}

fn text_option(reply: &Value, code: u64) -> String {
    reply_option(reply, code)["value"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The options of one area of a reply (options field, `file` or `sname`) up to END, as (code,
/// value); panics on an option that runs past the area or an area without END.
fn area_options(area: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        match area.get(at) {
            Some(255) => return out,
            Some(0) => at += 1,
            Some(&code) => {
                let len = usize::from(*area.get(at + 1).expect("option length"));
                let value = area
                    .get(at + 2..at + 2 + len)
                    .unwrap_or_else(|| panic!("option {code} runs past its area: {area:?}"));
                out.push((code, value.to_vec()));
                at += 2 + len;
            }
            None => panic!("no END in the area: {area:?}"),
        }
    }
}

/// The codes of `options`, in order.
fn codes(options: &[(u8, Vec<u8>)]) -> Vec<u8> {
    options.iter().map(|(code, _)| *code).collect()
}

/// The reply datagram as the client received it.
fn raw_reply(reply: &Value) -> Vec<u8> {
    let text = reply["raw"].as_str().expect("raw reply");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn options_beyond_the_clients_maximum_overflow_into_file_and_sname() {
    let Some(mut lab) = Lab::start("overload") else {
        return;
    };
    let prl = ["--prl", "1,3,6,15,43,40,64"];
    // Option 57 = 576: the reply may be at most 576 - 28 = 548 bytes of DHCP message.
    let small = lab.ok(
        "discover",
        OVERLOAD_RELAY,
        &[
            &["--mac", "02:00:00:0e:00:01", "--option", "57=0240"],
            &prl[..],
        ]
        .concat(),
    );
    let bytes = raw_reply(&small);
    assert!(
        bytes.len() <= 548,
        "{} bytes for a 576-byte maximum",
        bytes.len()
    );
    assert_eq!(bytes[236..240], [99, 130, 83, 99], "magic cookie");
    let main = area_options(&bytes[240..]);
    // 3, 6 and 15 fit the options field; 43 goes to `file`, 40 to `sname`; 64 fits nowhere.
    assert_eq!(
        codes(&main),
        [53, 54, 51, 58, 59, 1, 3, 6, 15, 52],
        "options field of {small}"
    );
    let overload = main.iter().find(|(code, _)| *code == 52).unwrap();
    assert_eq!(
        overload.1,
        [3],
        "option 52: both file and sname hold options"
    );
    let file = area_options(&bytes[108..236]);
    let vendor: Vec<u8> = (0..100).collect();
    assert_eq!(file, [(43, vendor.clone())], "file field");
    let sname = area_options(&bytes[44..108]);
    let nis = format!("nis-{}.example", "b".repeat(38));
    assert_eq!(sname, [(40, nis.as_bytes().to_vec())], "sname field");
    assert_eq!(main[7].1.len(), 80, "twenty DNS servers");
    assert_eq!(
        main[8].1,
        format!("overload-{}.example", "a".repeat(103)).into_bytes()
    );
    // The client decodes the same options (it follows option 52), and no file or boot server name.
    let decoded: Vec<u64> = small["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["code"].as_u64().unwrap())
        .collect();
    assert_eq!(decoded, [53, 54, 51, 58, 59, 1, 3, 6, 15, 52, 43, 40]);
    assert_eq!(
        (&small["file"], &small["sname"]),
        (&Value::Null, &Value::Null)
    );
    // With room (option 57 = 1500) everything goes in the options field, 64 included.
    let large = lab.ok(
        "discover",
        OVERLOAD_RELAY,
        &[
            &["--mac", "02:00:00:0e:00:02", "--option", "57=05dc"],
            &prl[..],
        ]
        .concat(),
    );
    let bytes = raw_reply(&large);
    assert_eq!(
        codes(&area_options(&bytes[240..])),
        [53, 54, 51, 58, 59, 1, 3, 6, 15, 43, 40, 64]
    );
    assert!(bytes[44..236].iter().all(|b| *b == 0), "no overload needed");
    lab.packets(2);
}

#[test]
fn the_mac_prefix_policy_gives_its_range_and_ten_minute_lease() {
    let Some(mut lab) = Lab::start("policy") else {
        return;
    };
    let ack = lab.ok(
        "dora",
        POLICY_RELAY,
        &["--mac", "02:00:00:0b:00:01", "--prl", "1,3,15"],
    );
    check_ack(&ack, "198.18.0.180", "127.0.0.1", 600, POLICY_RELAY);
    let domain = text_option(&ack, 15);
    assert!(
        domain.contains("macs.lab.example"),
        "policy option 15: {ack}"
    );
    // A client outside the prefix: the scope's day, from outside the policy range.
    let other = lab.ok(
        "dora",
        POLICY_RELAY,
        &["--mac", "02:00:00:0c:00:01", "--prl", "1,3,15"],
    );
    check_ack(&other, "198.18.0.10", "127.0.0.1", 86_400, POLICY_RELAY);
    // The renewal keeps the policy's lease.
    let renew = lab.ok(
        "renew",
        POLICY_RELAY,
        &["--mac", "02:00:00:0b:00:01", "--ciaddr", "198.18.0.180"],
    );
    check_ack(&renew, "198.18.0.180", "127.0.0.1", 600, POLICY_RELAY);
    let packets = lab.packets(5);
    // AddressOffer's LeaseTime is the policy's 600 s (first REQUEST: packet 2; renewal: packet 5).
    check_acked_request(&packets[1], GIVE_NEW, "198.18.0.180", 600);
    check_acked_request(&packets[3], GIVE_NEW, "198.18.0.10", 86_400);
    check_acked_request(&packets[4], GIVE_OLD, "198.18.0.180", 600);
}

#[test]
fn a_scope_with_activate_policies_false_ignores_its_matching_policy() {
    let Some(mut lab) = Lab::start("policies-off") else {
        return;
    };
    // The policy's MAC prefix, but the scope's policies are off: the scope's pool, lease and
    // option 15, not the policy's .180-.189, 10 minutes and macs.lab.example.
    let ack = lab.ok(
        "dora",
        POLICIES_OFF_RELAY,
        &["--mac", "02:00:00:0b:00:06", "--prl", "1,15"],
    );
    check_ack(&ack, "198.18.6.10", "127.0.0.1", 86_400, POLICIES_OFF_RELAY);
    assert_eq!(reply_option(&ack, 15)["hex"], hex(b"lab.example"), "{ack}");
    let packets = lab.packets(2);
    check_acked_request(&packets[1], GIVE_NEW, "198.18.6.10", 86_400);
}

#[test]
fn a_relayed_reply_is_broadcast_by_default_whatever_the_clients_flag() {
    let Some(mut lab) = Lab::start("ignore-bcast") else {
        return;
    };
    // IgnoreBroadcastFlag is absent from the lab's .reg: Microsoft's default 1 sets the broadcast
    // flag in every relayed reply, so the relay broadcasts it on the client's segment.
    let ack = lab.ok(
        "dora",
        POLICY_RELAY,
        &["--mac", "02:00:00:0c:00:07", "--no-broadcast-flag"],
    );
    assert_eq!(ack["broadcast_flag"], true, "ACK: {ack}");
    assert_eq!(ack["offer"]["broadcast_flag"], true, "OFFER: {ack}");
    lab.packets(2);
}

#[test]
fn a_full_superscope_member_hands_the_next_client_to_its_sibling() {
    let Some(mut lab) = Lab::start("multinet") else {
        return;
    };
    let first = lab.ok("dora", MULTINET_RELAY, &["--mac", "02:00:00:0d:00:01"]);
    check_ack(&first, "198.19.0.10", "127.0.0.1", 86_400, MULTINET_RELAY);
    let second = lab.ok(
        "dora",
        MULTINET_RELAY,
        &["--mac", "02:00:00:0d:00:02", "--prl", "1,3"],
    );
    // The sibling scope's address, lease, mask and router.
    check_ack(&second, "198.19.1.10", "127.0.0.1", 7_200, MULTINET_RELAY);
    assert_eq!(reply_option(&second, 3)["value"], "198.19.1.1", "{second}");
    // INIT-REBOOT through the same relay for the sibling's address: confirmed, not wrong-subnet.
    let reboot = lab.ok(
        "request",
        MULTINET_RELAY,
        &[
            "--mac",
            "02:00:00:0d:00:02",
            "--requested-ip",
            "198.19.1.10",
        ],
    );
    check_ack(&reboot, "198.19.1.10", "127.0.0.1", 7_200, MULTINET_RELAY);
    // A renewal of the sibling's address through the same relay: ACKed, not wrong-subnet.
    let renew = lab.ok(
        "renew",
        MULTINET_RELAY,
        &["--mac", "02:00:00:0d:00:02", "--ciaddr", "198.19.1.10"],
    );
    check_ack(&renew, "198.19.1.10", "127.0.0.1", 7_200, MULTINET_RELAY);
    let packets = lab.packets(6);
    check_discover(&packets[0], "02:00:00:0d:00:01", "198.19.0.0");
    // HandleOptions' ScopeId is the scope that served, for the DISCOVER and the three REQUESTs.
    check_discover(&packets[2], "02:00:00:0d:00:02", "198.19.1.0");
    for p in &packets[3..] {
        assert_eq!(p.call("HandleOptions")["scope_id"], "198.19.1.0");
    }
    check_acked_request(&packets[3], GIVE_NEW, "198.19.1.10", 7_200);
    check_acked_request(&packets[5], GIVE_OLD, "198.19.1.10", 7_200);
}

#[test]
fn an_ack_for_option_81_writes_dns_audit_events_30_and_35() {
    let audit = tempfile::tempdir().unwrap();
    let audit_dir = audit.path().to_str().unwrap().to_string();
    let Some(mut lab) = Lab::start_with("dns-audit", &["--audit-log", &audit_dir]) else {
        return;
    };
    // S = 1, E = 1: "update my A and PTR records", the name in DNS wire form.
    let wire = hex(b"\x03pc1\x03lab\x07example\x00");
    let ack = lab.ok(
        "dora",
        POLICY_RELAY,
        &[
            "--mac",
            "02:00:00:0c:00:31",
            "--option",
            &format!("81=050000{wire}"),
        ],
    );
    let ip = ack["yiaddr"].as_str().unwrap().to_string();
    // N = 1: "do not update": no DNS events.
    lab.ok(
        "dora",
        POLICY_RELAY,
        &[
            "--mac",
            "02:00:00:0c:00:32",
            "--option",
            &format!("81=080000{}", hex(b"pc2.lab.example")),
        ],
    );
    lab.packets(4);
    let mut events = Vec::new();
    for entry in std::fs::read_dir(audit.path()).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        events.extend(calloutd_engine::parse_audit_log(&text).unwrap());
    }
    let ids: Vec<u8> = events.iter().map(|e| e.id).filter(|id| *id >= 10).collect();
    assert_eq!(ids, [10, 30, 35, 10], "{events:?}");
    let dns: Vec<_> = events.iter().filter(|e| e.id >= 30).collect();
    for event in &dns {
        assert_eq!(event.ip.map(|a| a.to_string()), Some(ip.clone()));
        assert_eq!(event.host_name, "pc1.lab.example");
    }
    assert_eq!(dns[0].description, "DNS Update Request");
    assert_eq!(
        (dns[1].description.as_str(), dns[1].dns_reg_error.as_str()),
        ("DNS Update Request Failed", "9852")
    );
}
