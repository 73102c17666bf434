//! End-to-end tests of the operations side of `calloutd serve` (issue 5) against the real binary,
//! each inside a network namespace of its own: the server on 127.0.0.1:67 with the control API on
//! 127.0.0.1:8067, a test relay (the client in relay mode) on 198.18.0.1:67 on the namespace's `lo`,
//! the `trace` callout loaded, `calloutd ctl` run inside the namespace. Covered: pause/continue
//! (Control 3/4, PAUSED drops), lease delete (DeleteClient), the expired-lease purge, exact
//! statistics and Prometheus metrics, ctl errors, and the audit log of a scenario.
//!
//! Tests skip (with a printed reason) when not run as root.

// Unix only: starts the Linux calloutd with .so fixture callouts, mostly inside network namespaces.
#![cfg(unix)]

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use support::*;

const CONTROL: &str = "127.0.0.1:8067";
const OPS_SCOPES: &str = "fixtures/scenarios/ops-scope.txt";
const SHORT_SCOPES: &str = "fixtures/scenarios/short-lease.txt";
const MIGRATED_SCOPES: &str = "fixtures/scenarios/migrated.xml";
const TRACE_DLL: &str = "trace";
const CONTROL_PAUSE: u64 = 3;
const CONTROL_CONTINUE: u64 = 4;

/// A namespace with the relay address on `lo`, the server with the trace callout, and its files.
struct Ops {
    ns: NetNs,
    /// Holds the files until the test ends.
    _dir: tempfile::TempDir,
    server: ServerProcess,
    /// The trace callout's log (CALLOUT_TRACE_FILE).
    callout_log: PathBuf,
    audit_dir: PathBuf,
}

impl Ops {
    /// Starts the server with `scopes` and `extra` arguments and waits for its control API; `None`
    /// (the test skips, saying why) when not root.
    fn start(tag: &str, scopes: &str, extra: &[&str]) -> Option<Ops> {
        if !have_root(&current_test()) {
            return None;
        }
        let ns = NetNs::new(tag).expect("create the namespace");
        ns.add_addr("198.18.0.1/24", "lo").expect("relay address");
        let dir = tempfile::tempdir().unwrap();
        let trace_so = calloutd_fixtures::library("trace").expect("build the trace callout");
        let reg = dir.path().join("callout.reg");
        write_callout_reg(&reg, &[trace_so]);
        let callout_log = dir.path().join("callout.jsonl");
        let audit_dir = dir.path().join("audit");
        let mut args: Vec<String> = [
            "--reg",
            reg.to_str().unwrap(),
            "--scopes",
            repo_root().join(scopes).to_str().unwrap(),
            "--listen",
            "127.0.0.1:67",
            "--lease-db",
            dir.path().join("leases.sqlite3").to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--audit-log",
            audit_dir.to_str().unwrap(),
            "--control",
            CONTROL,
            "--workers",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let log_file = callout_log.to_str().unwrap().to_string();
        let server = ServerProcess::start(
            &ns,
            &args,
            dir.path().join("server.log"),
            &[("CALLOUT_TRACE_FILE", log_file.as_str())],
        )
        .expect("start calloutd serve");
        let mut ops = Ops {
            ns,
            _dir: dir,
            server,
            callout_log,
            audit_dir,
        };
        ops.server
            .wait_for_log("control API listening", Duration::from_secs(10))
            .expect("control API up");
        Some(ops)
    }

    /// `calloutd ARGS` in the namespace, bounded by `limit`.
    fn run(&self, args: &[&str], limit: Duration) -> CommandRun {
        run_calloutd(&self.ns, args, limit)
    }

    /// `calloutd ctl --control CONTROL ARGS`.
    fn ctl(&self, args: &[&str]) -> CommandRun {
        let mut all = vec!["ctl", "--control", CONTROL];
        all.extend_from_slice(args);
        self.run(&all, Duration::from_secs(20))
    }

    /// A ctl call that must succeed; its JSON output.
    fn ctl_json(&self, args: &[&str]) -> Value {
        let run = self.ctl(args);
        assert_eq!(
            run.code,
            0,
            "ctl {args:?} failed: {}\nserver log:\n{}",
            run.stderr,
            self.server.log_text()
        );
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("ctl {args:?} output is not JSON: {e}: {}", run.stdout))
    }

    /// `calloutd client VERB --json` as the relay, no retransmission, `timeout_s` seconds.
    fn client(&self, verb: &str, args: &[&str], timeout_s: u64) -> (i32, Value) {
        let mut all = vec!["--server", "127.0.0.1:67", "--giaddr", "198.18.0.1:67"];
        all.extend_from_slice(args);
        let run = run_client(&self.ns, verb, timeout_s, &all);
        (run.code, run.json)
    }

    /// A DORA that must succeed; the leased address.
    fn dora(&self, mac: &str) -> String {
        let (code, ack) = self.client("dora", &["--mac", mac], 5);
        assert_eq!(
            code,
            0,
            "dora {mac} failed\nserver log:\n{}",
            self.server.log_text()
        );
        ack["yiaddr"].as_str().expect("yiaddr").to_string()
    }

    /// Waits until the trace callout logged `n` finished packets; returns the log.
    fn wait_processed(&self, n: usize) -> Vec<Value> {
        wait_processed(&self.callout_log, n, Duration::from_secs(15))
    }

    /// Waits until the trace callout logged a call matching `pred`; returns the log.
    fn wait_call(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        wait_for_jsonl(&self.callout_log, Duration::from_secs(15), what, |r| {
            r.iter().any(&pred)
        })
    }

    /// The audit events written so far (every DhcpSrvLog file, parsed with the engine's parser).
    fn audit_events(&self) -> Vec<calloutd_engine::AuditEvent> {
        let mut events = Vec::new();
        for entry in fs::read_dir(&self.audit_dir).expect("audit folder") {
            let path = entry.unwrap().path();
            let text = fs::read_to_string(&path).unwrap();
            events.extend(
                calloutd_engine::parse_audit_log(&text)
                    .unwrap_or_else(|e| panic!("{}: {e:?}", path.display())),
            );
        }
        events
    }
}

fn controls(records: &[Value]) -> Vec<u64> {
    records
        .iter()
        .filter(|r| r["dll"] == TRACE_DLL && r["hook"] == "Control")
        .map(|r| r["code"].as_u64().unwrap())
        .collect()
}

/// Hex digits only, lower case: `02:00:..` and `02-00-..` compare equal.
fn hex_only(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_hexdigit)
        .collect::<String>()
        .to_lowercase()
}

fn lease_ips(leases: &Value) -> Vec<String> {
    leases
        .as_array()
        .expect("lease list")
        .iter()
        .map(|l| l["ip"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn pause_drops_as_paused_and_continue_serves_again() {
    let Some(ops) = Ops::start("pause", OPS_SCOPES, &[]) else {
        return;
    };
    ops.dora("02:00:00:00:05:01");
    ops.wait_processed(2);

    let paused = ops.ctl_json(&["pause"]);
    assert_eq!(paused["state"], "paused");
    ops.wait_call("Control(PAUSE)", |r| {
        r["hook"] == "Control" && r["code"] == CONTROL_PAUSE
    });

    // No reply while paused: the client times out (exit 2).
    let (code, _) = ops.client("discover", &["--mac", "02:00:00:00:05:02"], 1);
    assert_eq!(code, 2, "a DISCOVER while paused must get no reply");
    ops.wait_processed(3);
    let stats = ops.ctl_json(&["stats"]);
    assert_eq!(stats["state"], "paused");
    assert_eq!(stats["drops"]["DHCP_DROP_PAUSED"], 1);
    assert_eq!(stats["runtime_drops"]["DHCP_DROP_PAUSED"], 1);

    let resumed = ops.ctl_json(&["continue"]);
    assert_eq!(resumed["state"], "running");
    ops.wait_call("Control(CONTINUE)", |r| {
        r["hook"] == "Control" && r["code"] == CONTROL_CONTINUE
    });
    ops.dora("02:00:00:00:05:03");
    let records = ops.wait_processed(5);

    assert_eq!(controls(&records), vec![1, CONTROL_PAUSE, CONTROL_CONTINUE]);
    let packets = callout_packets(&records, TRACE_DLL);
    assert_eq!(packets.len(), 5);
    assert_eq!(
        packets[2].signature(),
        vec!["NewPkt", "HandleOptions", "PktDrop(0x6)", "PktDrop(0xb)"],
        "the packet sent while paused"
    );
    // The order in the log: PAUSE before the paused packet's NewPkt, CONTINUE after its last call.
    let position = |pred: &dyn Fn(&Value) -> bool| records.iter().position(pred).unwrap();
    let pause_at = position(&|r| r["hook"] == "Control" && r["code"] == CONTROL_PAUSE);
    let continue_at = position(&|r| r["hook"] == "Control" && r["code"] == CONTROL_CONTINUE);
    // Packets are numbered by their NewPkt (contexts may be reused once a packet is done).
    let paused_first = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r["dll"] == TRACE_DLL && r["hook"] == "NewPkt")
        .nth(2)
        .map(|(i, _)| i)
        .unwrap();
    assert!(pause_at < paused_first && paused_first < continue_at);
    for p in [&packets[3], &packets[4]] {
        assert!(
            p.signature().contains(&"PktSend(0x10000000)".to_string()),
            "served after continue: {:?}",
            p.signature()
        );
    }
}

#[test]
fn delete_lease_calls_delete_client_and_removes_it() {
    let Some(ops) = Ops::start("delete", OPS_SCOPES, &[]) else {
        return;
    };
    let mac = "02:00:00:00:06:01";
    let ip = ops.dora(mac);
    let other = ops.dora("02:00:00:00:06:02");

    let leases = ops.ctl_json(&["leases"]);
    assert_eq!(lease_ips(&leases), vec![ip.clone(), other.clone()]);
    let lease = &leases[0];
    assert_eq!(hex_only(lease["mac"].as_str().unwrap()), hex_only(mac));
    assert_eq!(lease["state"], "active");
    assert_eq!(lease["scope"], "198.18.0.0");
    assert!(lease["expires"].as_u64().unwrap() > 0);
    let scoped = ops.ctl_json(&["leases", "--scope", "198.18.0.0"]);
    assert_eq!(lease_ips(&scoped).len(), 2);

    let deleted = ops.ctl_json(&["delete-lease", &ip]);
    assert_eq!(deleted["ip"], ip.as_str());
    let records = ops.wait_call("DeleteClient", |r| r["hook"] == "DeleteClient");
    let calls: Vec<&Value> = records
        .iter()
        .filter(|r| r["hook"] == "DeleteClient")
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["ip"], ip.as_str());
    assert_eq!(
        hex_only(calls[0]["hw_address"].as_str().unwrap()),
        hex_only(mac)
    );
    assert_eq!(lease_ips(&ops.ctl_json(&["leases"])), vec![other]);

    // Error paths: non-zero exit with the API's message.
    let again = ops.ctl(&["delete-lease", &ip]);
    assert_ne!(again.code, 0);
    assert!(
        again.stderr.contains(&format!("no lease for {ip}")),
        "{}",
        again.stderr
    );
    let bad = ops.ctl(&["delete-lease", "not-an-ip"]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("not an IPv4 address"), "{}", bad.stderr);
    let no_scope = ops.ctl(&["leases", "--scope", "198.19.0.0"]);
    assert_ne!(no_scope.code, 0);
    assert!(
        no_scope.stderr.contains("no scope 198.19.0.0"),
        "{}",
        no_scope.stderr
    );
    let nothing = ops.run(
        &["ctl", "--control", "127.0.0.1:8068", "stats"],
        Duration::from_secs(20),
    );
    assert_ne!(nothing.code, 0, "no server on that port");
}

#[test]
fn leases_of_an_export_are_imported_and_their_client_keeps_its_address() {
    let Some(mut ops) = Ops::start("import", MIGRATED_SCOPES, &[]) else {
        return;
    };
    // The active exported lease is there before any packet, the declined one is not.
    let leases = ops.ctl_json(&["leases"]);
    assert_eq!(lease_ips(&leases), vec!["198.18.0.44".to_string()]);
    assert_eq!(hex_only(leases[0]["mac"].as_str().unwrap()), "020000000707");
    ops.server
        .wait_for_log("1 imported", Duration::from_secs(5))
        .expect("the import is logged");
    // Its client asks again and is given its address back; another client is not given it.
    assert_eq!(ops.dora("02:00:00:00:07:07"), "198.18.0.44");
    assert_ne!(ops.dora("02:00:00:00:09:09"), "198.18.0.44");
}

#[test]
fn expired_leases_are_purged_with_delete_client() {
    // Leases of 2 s, kept 2 s past their expiry (instead of Microsoft's 4 hours) before the purge.
    let Some(ops) = Ops::start(
        "purge",
        SHORT_SCOPES,
        &["--cleanup-interval-secs", "1", "--expired-grace-secs", "2"],
    ) else {
        return;
    };
    let mac = "02:00:00:00:07:01";
    let (code, ack) = ops.client("dora", &["--mac", mac], 5);
    assert_eq!(code, 0);
    assert_eq!(ack["lease_time"], 2);
    let ip = ack["yiaddr"].as_str().unwrap().to_string();

    let records = ops.wait_call("DeleteClient of the expired lease", |r| {
        r["hook"] == "DeleteClient"
    });
    let call = records
        .iter()
        .find(|r| r["hook"] == "DeleteClient")
        .unwrap();
    assert_eq!(call["ip"], ip.as_str());
    assert_eq!(
        hex_only(call["hw_address"].as_str().unwrap()),
        hex_only(mac)
    );
    assert!(lease_ips(&ops.ctl_json(&["leases"])).is_empty());
    // Audit: a cleanup (24), the expiry (17) of that lease, the statistics (25).
    let events = poll(Duration::from_secs(15), Duration::from_millis(100), || {
        let events = ops.audit_events();
        events.iter().any(|e| e.id == 17).then_some(events)
    })
    .expect("no audit event 17");
    let expired = events.iter().find(|e| e.id == 17).unwrap();
    assert_eq!(expired.ip.map(|i| i.to_string()), Some(ip.clone()));
    assert!(events.iter().any(|e| e.id == 24));
}

/// Parses the Prometheus text format: every sample line as `name{labels}` → value; checks that each
/// sample's family was declared with `# TYPE` before it.
fn parse_prometheus(text: &str) -> BTreeMap<String, u64> {
    let mut declared = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_string();
            let kind = parts.next().unwrap();
            assert!(matches!(kind, "counter" | "gauge"), "{line}");
            declared.push(name);
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && name.starts_with("calloutd_"),
            "bad metric name in {line}"
        );
        assert!(declared.iter().any(|d| d == name), "{name} has no # TYPE");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = pair.split_once('=').unwrap();
                    assert!(
                        !k.is_empty() && v.starts_with('"') && v.ends_with('"'),
                        "{line}"
                    );
                }
            }
        }
        samples.insert(series.to_string(), value.parse().unwrap());
    }
    samples
}

#[test]
fn stats_and_metrics_count_a_known_scenario_exactly() {
    let Some(ops) = Ops::start("stats", OPS_SCOPES, &[]) else {
        return;
    };
    ops.dora("02:00:00:00:08:01");
    send_garbage(&ops.ns);
    ops.dora("02:00:00:00:08:02");
    let records = ops.wait_processed(5);

    let stats = ops.ctl_json(&["stats"]);
    assert_eq!(stats["state"], "running");
    assert_eq!(stats["received"], 5);
    assert_eq!(stats["sent"], 4);
    assert_eq!(
        stats["requests"],
        serde_json::json!({"DISCOVER": 2, "REQUEST": 2, "unparsed": 1})
    );
    assert_eq!(stats["replies"], serde_json::json!({"OFFER": 2, "ACK": 2}));
    let drops = stats["drops"].as_object().unwrap();
    for (reason, count) in drops {
        let expected = u64::from(reason == "DHCP_DROP_INVALID");
        assert_eq!(count, expected, "{reason}");
    }
    assert!(drops.contains_key("DHCP_DROP_PAUSED"));
    assert_eq!(stats["runtime_drops"], serde_json::json!({}));

    // Hook counts: the ones the scenario fixes, and every one equal to the trace callout's own log.
    let hooks: BTreeMap<String, Value> = stats["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["hook"].as_str().unwrap().to_string(), h.clone()))
        .collect();
    let calls = |hook: &str| hooks[hook]["calls"].as_u64().unwrap();
    assert_eq!(calls("Control"), 1, "START only");
    assert_eq!(calls("NewPkt"), 5);
    assert_eq!(calls("HandleOptions"), 4, "not for the unparsable datagram");
    assert_eq!(calls("PktSend"), 4);
    assert_eq!(calls("PktDrop"), 6, "5 PROCESSED + 1 INVALID");
    assert_eq!(calls("DeleteClient"), 0);
    for (hook, view) in &hooks {
        let logged = records
            .iter()
            .filter(|r| r["dll"] == TRACE_DLL && r["hook"] == hook.as_str())
            .count() as u64;
        assert_eq!(view["calls"], logged, "{hook}");
        assert!(view["max_us"].as_u64().unwrap() <= view["total_us"].as_u64().unwrap());
        assert_eq!(view["faults"], 0);
    }
    assert_eq!(
        stats["scopes"],
        serde_json::json!([{"scope": "198.18.0.0", "name": "ops", "leases": 2, "free": 39}])
    );

    let metrics = ops.ctl(&["metrics"]);
    assert_eq!(metrics.code, 0, "{}", metrics.stderr);
    let m = parse_prometheus(&metrics.stdout);
    assert_eq!(m["calloutd_received_datagrams_total"], 5);
    assert_eq!(m["calloutd_sent_replies_total"], 4);
    assert_eq!(m["calloutd_requests_total{type=\"DISCOVER\"}"], 2);
    assert_eq!(m["calloutd_requests_total{type=\"REQUEST\"}"], 2);
    assert_eq!(m["calloutd_requests_total{type=\"unparsed\"}"], 1);
    assert_eq!(m["calloutd_replies_total{type=\"OFFER\"}"], 2);
    assert_eq!(m["calloutd_replies_total{type=\"ACK\"}"], 2);
    assert_eq!(m["calloutd_drops_total{reason=\"DHCP_DROP_INVALID\"}"], 1);
    assert_eq!(m["calloutd_drops_total{reason=\"DHCP_DROP_PAUSED\"}"], 0);
    assert_eq!(m["calloutd_paused"], 0);
    for (hook, view) in &hooks {
        assert_eq!(
            m[&format!("calloutd_hook_calls_total{{hook=\"{hook}\"}}")],
            view["calls"].as_u64().unwrap()
        );
    }
    assert_eq!(m["calloutd_scope_leases{scope=\"198.18.0.0\"}"], 2);
    assert_eq!(m["calloutd_scope_free_addresses{scope=\"198.18.0.0\"}"], 39);

    let config = ops.ctl_json(&["config"]);
    assert_eq!(config["scopes"][0]["scope"], "198.18.0.0");
    assert_eq!(config["scopes"][0]["start"], "198.18.0.10");
    assert_eq!(config["registry"]["CalloutEnabled"], 1);
    assert_eq!(config["settings"]["control"], CONTROL);
    assert!(!config.to_string().to_lowercase().contains("token\":\""));
}

#[test]
fn sigusr1_and_ctl_stop_log_the_summary() {
    let Some(mut ops) = Ops::start("stop", OPS_SCOPES, &[]) else {
        return;
    };
    ops.dora("02:00:00:00:09:01");
    ops.wait_processed(2);

    // SIGUSR1: the one-screen summary with the runtime, engine and hook figures.
    let pids = run_ok("ip", &["netns", "pids", &ops.ns.name]).unwrap();
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        run_ok("kill", &["-USR1", pid]).unwrap();
    }
    ops.server
        .wait_for_log("summary:", Duration::from_secs(10))
        .expect("summary on SIGUSR1");
    ops.server
        .wait_for_log("scopes:", Duration::from_secs(10))
        .unwrap();
    let log = ops.server.log_text();
    for needle in [
        "state running",
        "requests: DISCOVER 1, REQUEST 1",
        "replies:  ACK 1, OFFER 1",
        "NewPkt",
        "leases      1",
    ] {
        assert!(
            log.contains(needle),
            "{needle} missing from the summary:\n{log}"
        );
    }
    let stopping = ops.ctl_json(&["stop"]);
    assert_eq!(stopping["state"], "stopping");
    ops.server
        .wait_for_log("stopped; summary", Duration::from_secs(15))
        .expect("summary at stop");
    let log = ops.server.log_text();
    assert!(log.contains("requests: DISCOVER 1, REQUEST 1"), "{log}");
    let records = read_jsonl(&ops.callout_log);
    assert_eq!(controls(&records).last(), Some(&2), "Control(STOP) last");
}

#[test]
fn audit_log_records_dora_renew_release_decline_and_delete() {
    let Some(mut ops) = Ops::start("audit", OPS_SCOPES, &[]) else {
        return;
    };
    let mac_a = "02:00:00:00:0a:01";
    let ip_a = ops.dora(mac_a);
    let (code, _) = ops.client("renew", &["--mac", mac_a, "--ciaddr", &ip_a], 5);
    assert_eq!(code, 0, "renew");
    let (code, _) = ops.client("release", &["--mac", mac_a, "--ciaddr", &ip_a], 2);
    assert_eq!(code, 0, "release");

    let mac_b = "02:00:00:00:0a:02";
    let (code, offer) = ops.client("discover", &["--mac", mac_b], 5);
    assert_eq!(code, 0, "discover");
    let ip_b = offer["yiaddr"].as_str().unwrap().to_string();
    let (code, _) = ops.client(
        "decline",
        &[
            "--mac",
            mac_b,
            "--requested-ip",
            &ip_b,
            "--server-id",
            "127.0.0.1",
        ],
        2,
    );
    assert_eq!(code, 0, "decline");

    let mac_c = "02:00:00:00:0a:03";
    let ip_c = ops.dora(mac_c);
    ops.ctl_json(&["delete-lease", &ip_c]);
    // DORA 2 + renew 1 + release 1 + discover 1 + decline 1 + DORA 2 = 8 packets.
    ops.wait_processed(8);
    ops.ctl_json(&["stop"]);
    ops.server
        .wait_for_log("stopped; summary", Duration::from_secs(15))
        .unwrap();
    // The server already stopped on its own; this only collects its exit status.
    let status = ops.server.stop().expect("server exit");
    assert!(status.success(), "server exited with {status}");

    let events = ops.audit_events();
    let summary: Vec<(u8, Option<String>, String)> = events
        .iter()
        .map(|e| (e.id, e.ip.map(|i| i.to_string()), hex_only(&e.mac)))
        .collect();
    let ids: Vec<u8> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![0, 10, 11, 12, 13, 10, 16, 1], "{summary:?}");
    let ip = |s: &str| Some(s.to_string());
    assert_eq!(summary[1], (10, ip(&ip_a), hex_only(mac_a)));
    assert_eq!(summary[2], (11, ip(&ip_a), hex_only(mac_a)));
    assert_eq!(summary[3], (12, ip(&ip_a), hex_only(mac_a)));
    assert_eq!(summary[4], (13, ip(&ip_b), hex_only(mac_b)));
    assert_eq!(summary[5], (10, ip(&ip_c), hex_only(mac_c)));
    assert_eq!(summary[6], (16, ip(&ip_c), hex_only(mac_c)));
}

#[test]
fn an_exhausted_scope_writes_event_14_with_its_subnet_address() {
    let Some(mut ops) = Ops::start("scope-full", "fixtures/scenarios/tiny-pool.txt", &[]) else {
        return;
    };
    ops.dora("02:00:00:00:0b:01");
    ops.dora("02:00:00:00:0b:02");
    let (code, _) = ops.client("discover", &["--mac", "02:00:00:00:0b:03"], 1);
    assert_ne!(code, 0, "an OFFER from an exhausted pool");
    ops.wait_processed(5);
    let status = ops.server.stop().expect("server exit");
    assert!(status.success(), "server exited with {status}");
    let events = ops.audit_events();
    let full: Vec<_> = events.iter().filter(|e| e.id == 14).collect();
    assert_eq!(full.len(), 1, "{events:?}");
    // As Microsoft writes it: the scope's subnet address, no MAC, xid 0, QResult 6.
    let e = full[0];
    assert_eq!(
        (e.ip.map(|ip| ip.to_string()), e.mac.as_str()),
        (Some("198.18.0.0".to_string()), "")
    );
    assert_eq!((e.transaction_id, e.qresult), (Some(0), Some(6)));
}

#[test]
fn delete_client_on_release_calls_it_before_address_del() {
    let Some(ops) = Ops::start("delrel", OPS_SCOPES, &["--delete-client-on", "release"]) else {
        return;
    };
    let mac = "02:00:00:00:07:31";
    let (code, ack) = ops.client("dora", &["--mac", mac], 5);
    assert_eq!(code, 0);
    let ip = ack["yiaddr"].as_str().unwrap().to_string();
    let (code, _) = ops.client("release", &["--mac", mac, "--ciaddr", &ip], 5);
    assert_eq!(code, 0, "release");
    let records = ops.wait_call("AddressDel of the release", |r| r["hook"] == "AddressDel");
    let order: Vec<&str> = records
        .iter()
        .filter(|r| r["hook"] == "DeleteClient" || r["hook"] == "AddressDel")
        .map(|r| r["hook"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["DeleteClient", "AddressDel"]);
    let delete = records
        .iter()
        .find(|r| r["hook"] == "DeleteClient")
        .unwrap();
    assert_eq!(delete["ip"], ip.as_str());
    assert_eq!(
        hex_only(delete["hw_address"].as_str().unwrap()),
        hex_only(mac)
    );
}
