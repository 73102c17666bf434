//! End-to-end tests of `calloutd serve --isolate` (issue 11 items 2-5 and 8) against the real
//! binary over UDP, each inside a network namespace of its own (server on 127.0.0.1:67, the test
//! relay on 198.18.0.1:67, as in serve_e2e.rs).
//!
//! For each kind of hook, the `faulty` callout crashes (or hangs) for one client (chaddr
//! 02:00:00:00:0b:ad), once (CALLOUT_FAULTY_ONCE). Each test shows: calloutd keeps answering
//! other clients; the fault is logged as event 1031 with the hook and the packet; the server's
//! trace records it with a `fault`; after the restarted host is back, the faulting client is
//! served too, and no lease is lost or doubled. A last test sends the same traffic through the
//! trace callout in both modes and compares the traces field by field (all but timings and thread
//! ids). Tests skip (with a printed reason) when not run as root.

// Unix only: starts the Linux calloutd with .so fixture callouts, mostly inside network namespaces.
#![cfg(unix)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::*;

const RELAY: &str = "198.18.0.1";
const BAD_MAC: &str = "02:00:00:00:0b:ad";
const BAD_HEX: &str = "020000000bad";
const BAD_DASHED: &str = "02-00-00-00-0b-ad";
const OK_MAC: &str = "02:00:00:00:00:01";

/// How the faulty hook misbehaves.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// CALLOUT_FAULTY_CRASH_KIND: segv, bus, abort or exit.
    Crash(&'static str),
    /// Never returns.
    Hang,
}

impl Fault {
    /// How the server log names the end of the host.
    fn cause(self) -> &'static str {
        match self {
            Fault::Crash("segv") => "SIGSEGV",
            Fault::Crash("bus") => "SIGBUS",
            Fault::Crash("abort") => "SIGABRT",
            Fault::Crash("exit") => "exit 3",
            Fault::Crash(other) => panic!("unknown crash kind {other}"),
            Fault::Hang => "--hook-timeout-ms",
        }
    }
}

/// A namespace with the relay link and a running `serve --isolate` with `dlls`.
struct Lab {
    ns: NetNs,
    dir: tempfile::TempDir,
    run: TracedRun,
    reg: PathBuf,
    scopes: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Lab {
    fn start(
        tag: &str,
        dlls: impl FnOnce(&Path) -> Vec<PathBuf>,
        args: &[&str],
        envs: &[(&str, String)],
    ) -> Option<Lab> {
        if !have_root(&current_test()) {
            return None;
        }
        let ns = NetNs::new(tag).expect("create the namespace");
        ns.ip(&[
            "link", "add", "relay0", "type", "veth", "peer", "name", "relay1",
        ])
        .expect("relay link");
        ns.ip(&["link", "set", "relay0", "up"]).unwrap();
        ns.ip(&["link", "set", "relay1", "up"]).unwrap();
        ns.add_addr(&format!("{RELAY}/24"), "relay0").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("callout.reg");
        write_callout_reg(&reg, &dlls(dir.path()));
        // The lab scopes without conflict detection (no pings before each offer).
        let text = fs::read_to_string(repo_root().join("fixtures/config/lab-netsh.txt")).unwrap();
        let quick: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("DetectConflictRetry"))
            .collect();
        let scopes = dir.path().join("lab-quick.txt");
        fs::write(&scopes, quick.join("\n")).unwrap();
        let mut lab = Lab {
            ns,
            dir,
            run: TracedRun::default(),
            reg,
            scopes,
            args: args.iter().map(|s| s.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        lab.start_server(1);
        Some(lab)
    }

    fn start_server(&mut self, run: usize) {
        let mut args = strings(&["--listen", "127.0.0.1:67", "--workers", "2"]);
        args.extend(self.args.iter().cloned());
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.run = TracedRun::start(
            &self.ns,
            self.dir.path(),
            run,
            &self.reg,
            &self.scopes,
            &args,
            &envs,
        );
    }

    fn client(&self, verb: &str, args: &[&str], timeout_s: u64) -> CommandRun {
        let transport = ["--server", "127.0.0.1:67", "--giaddr", "198.18.0.1:67"];
        run_client(&self.ns, verb, timeout_s, &[&transport[..], args].concat())
    }

    /// A DORA that must succeed; the leased address.
    fn dora_ok(&self, mac: &str) -> String {
        self.dora_within(mac, 5)
    }

    /// A DORA that must succeed with `timeout_s` for each reply; the leased address.
    fn dora_within(&self, mac: &str, timeout_s: u64) -> String {
        let run = self.client("dora", &["--mac", mac], timeout_s);
        assert_eq!(
            run.code,
            0,
            "dora {mac}: {}\nserver log:\n{}",
            run.stderr,
            self.run.server_log()
        );
        run.json["yiaddr"].as_str().unwrap().to_string()
    }

    fn ctl(&self, args: &[&str]) -> CommandRun {
        let mut all = vec!["ctl"];
        all.extend_from_slice(args);
        run_calloutd(&self.ns, &all, Duration::from_secs(20))
    }

    fn ctl_json(&self, args: &[&str]) -> Value {
        let run = self.ctl(args);
        assert_eq!(run.code, 0, "ctl {args:?}: {}", run.stderr);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("ctl {args:?}: {e}"))
    }

    /// The leases as (mac, ip) pairs.
    fn leases(&self) -> Vec<(String, String)> {
        let leases = self.ctl_json(&["leases"]);
        leases
            .as_array()
            .or_else(|| leases["leases"].as_array())
            .expect("lease list")
            .iter()
            .map(|l| {
                (
                    l["mac"].as_str().unwrap_or_default().to_lowercase(),
                    l["ip"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Waits until the server log contains `needle`.
    fn wait_log(&mut self, needle: &str) {
        let server = self.run.server.as_mut().expect("server running");
        if let Err(e) = server.wait_for_log(needle, Duration::from_secs(15)) {
            panic!("{needle:?} not logged: {e}\n{}", server.log_text());
        }
    }
}

/// The one lease of `mac` (dashed, lower case) among `leases`; fails on none or several.
fn one_lease(leases: &[(String, String)], mac: &str) -> String {
    let dashed = mac.replace(':', "-");
    let mine: Vec<&(String, String)> = leases.iter().filter(|(m, _)| *m == dashed).collect();
    assert_eq!(mine.len(), 1, "exactly one lease of {mac}: {leases:?}");
    mine[0].1.clone()
}

/// Runs the fault scenario for `hook`: see the crate doc.
fn scenario(tag: &str, hook: &str, fault: Fault) {
    let once = std::env::temp_dir().join(format!(
        "calloutd-isolate-once-{tag}-{}",
        std::process::id()
    ));
    let _ = fs::remove_file(&once);
    struct RemoveOnDrop(PathBuf);
    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }
    let _cleanup = RemoveOnDrop(once.clone());
    let mut envs = vec![
        ("CALLOUT_FAULTY_MAC", BAD_HEX.to_string()),
        ("CALLOUT_FAULTY_ONCE", once.display().to_string()),
    ];
    match fault {
        Fault::Crash(kind) => {
            envs.push(("CALLOUT_FAULTY_CRASH_HOOK", hook.to_string()));
            envs.push(("CALLOUT_FAULTY_CRASH_KIND", kind.to_string()));
        }
        Fault::Hang => envs.push(("CALLOUT_FAULTY_HANG_HOOK", hook.to_string())),
    }
    if hook == "Control" {
        // Control(PAUSE) only: a crash in START would be at every (re)start.
        envs.retain(|(k, _)| *k != "CALLOUT_FAULTY_MAC");
        envs.push(("CALLOUT_FAULTY_CODE", "3".to_string()));
    }
    let Some(mut lab) = Lab::start(
        tag,
        |_| vec![fixture("faulty")],
        &["--isolate", "--hook-timeout-ms", "2500"],
        &envs,
    ) else {
        return;
    };

    // With a hang the trigger runs on a thread while another client is served: under the lease
    // lock, that client's packets wait for the lock and resume once the hung host is killed.
    let trigger = {
        let ns_name = lab.ns.name.clone();
        let hook = hook.to_string();
        let bad_ip = match hook.as_str() {
            "AddressDel" | "DeleteClient" => Some(lab.dora_ok(BAD_MAC)),
            _ => None,
        };
        let ns = NetNsRef(ns_name);
        std::thread::spawn(move || trigger_fault(&ns, &hook, bad_ip.as_deref()))
    };
    std::thread::sleep(Duration::from_millis(200));
    // A paused service answers no one: with Control(PAUSE) as the trigger, the other client comes
    // after CONTINUE.
    // With a crash, the other client comes after it: a call of its own that happened to run in
    // the host at the moment it died would be lost with it (and is reported as such).
    let (other, triggered) = if hook == "Control" || matches!(fault, Fault::Crash(_)) {
        (None, trigger.join().expect("trigger thread"))
    } else {
        // Its packets may wait for the hang (the hook timeout) and for the new host to start: on
        // a loaded machine that takes seconds.
        // It retransmits, as real clients do (see the report of issue 11: one loaded run saw its
        // first DISCOVER go unanswered during an AddressOffer hang).
        let ns = NetNsRef(lab.ns.name.clone());
        let run = ns.calloutd(&[
            "client",
            "dora",
            "--json",
            "--retries",
            "3",
            "--timeout",
            "20",
            "--server",
            "127.0.0.1:67",
            "--giaddr",
            "198.18.0.1:67",
            "--mac",
            OK_MAC,
        ]);
        assert_eq!(
            run.code,
            0,
            "dora {OK_MAC}: {}\n{}",
            run.stderr,
            lab.run.server_log()
        );
        let other = run.json["yiaddr"].as_str().unwrap().to_string();
        (Some(other), trigger.join().expect("trigger thread"))
    };

    // Event 1031 with the hook, the packet (or lease, or control code), the cause and the DLL.
    lab.wait_log("event 1031");
    let log = lab.run.server_log();
    let line = log
        .lines()
        .find(|l| l.contains("event 1031"))
        .expect("event 1031 line")
        .to_string();
    assert!(line.contains(&format!(" in {hook} ")), "hook named: {line}");
    assert!(line.contains(fault.cause()), "cause named: {line}");
    assert!(line.contains("faulty.so"), "DLL path named: {line}");
    match hook {
        "Control" => assert!(line.contains("Control(DHCP_CONTROL_PAUSE)"), "{line}"),
        "DeleteClient" => assert!(line.contains(BAD_DASHED), "hw address named: {line}"),
        _ => {
            assert!(
                line.contains(&format!("chaddr {BAD_DASHED}")),
                "chaddr: {line}"
            );
            assert!(line.contains("xid 0x"), "xid: {line}");
        }
    }
    lab.wait_log("back in the loop");
    let other = match other {
        Some(other) => other,
        None => {
            let r = lab.ctl(&["continue"]);
            assert_eq!(r.code, 0, "ctl continue: {}", r.stderr);
            lab.dora_ok(OK_MAC)
        }
    };

    // The faulting client is served once the host is back (the fault happens once), and still
    // holds at most one lease; the other client kept its lease.
    let bad = lab.dora_ok(BAD_MAC);
    let leases = lab.leases();
    assert_eq!(one_lease(&leases, BAD_MAC), bad);
    assert_eq!(one_lease(&leases, OK_MAC), other);
    if hook == "AddressOffer" {
        assert_eq!(triggered.as_deref(), None, "no ACK after the fault");
    }

    let stats = lab.ctl_json(&["stats"]);
    assert_eq!(stats["engine"]["callout_crashes"], 1, "{stats}");
    assert_eq!(stats["engine"]["callout_host_restarts"], 1, "{stats}");
    let hangs = u64::from(matches!(fault, Fault::Hang));
    assert_eq!(stats["engine"]["callout_hangs"], hangs, "{stats}");
    let metrics = lab.ctl(&["metrics"]).stdout;
    assert!(
        metrics.contains("counter=\"callout_crashes\"} 1"),
        "metrics: {metrics}"
    );

    let (_, trace) = lab.run.stop();
    let word = match fault {
        Fault::Crash(_) => "crash",
        Fault::Hang => "hang",
    };
    let faulted: Vec<&Value> = trace
        .iter()
        .filter(|r| r["hook"] == hook && r["fault"].as_str().is_some_and(|f| f.contains(word)))
        .collect();
    assert_eq!(faulted.len(), 1, "one {word} record for {hook}: {trace:#?}");
    assert_eq!(
        faulted[0]["misbehaviour"][0]["kind"], word,
        "{}",
        faulted[0]
    );
    if hook == "AddressOffer" {
        // The lease committed before the fault is the one given on the retry: not lost, not
        // doubled.
        assert_eq!(faulted[0]["alt"], bad.as_str(), "{}", faulted[0]);
    }
    if let Some(xid) = faulted[0]["xid"].as_u64() {
        // The packet that met it ends in the trace: its last PktDrop(PROCESSED), not delivered.
        let end = trace
            .iter()
            .rev()
            .find(|r| r["xid"] == xid && r["hook"] == "PktDrop" && r["code"] == 11);
        if hook != "PktDrop" {
            let end = end.unwrap_or_else(|| panic!("end of packet {xid}: {trace:#?}"));
            assert!(
                end["fault"]
                    .as_str()
                    .is_some_and(|f| f.contains("not delivered")),
                "{end}"
            );
        }
    }
    // Control START was called again in the new host, and STOP last.
    let starts = trace
        .iter()
        .filter(|r| r["hook"] == "Control" && r["code"] == 1)
        .count();
    assert_eq!(starts, 2, "START at start and after the restart");
    assert_eq!(trace[trace.len() - 1]["hook"], "Control");
    assert_eq!(trace[trace.len() - 1]["code"], 2);
}

/// A namespace name usable from another thread (the guard stays with the lab).
struct NetNsRef(String);

impl NetNsRef {
    /// `calloutd ARGS` inside the namespace, bounded; the last JSON line of stdout parsed.
    fn calloutd(&self, args: &[&str]) -> CommandRun {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.0])
            .arg(calloutd_bin())
            .args(args);
        let mut run = command_run(run_bounded(cmd, Duration::from_secs(20)));
        if let Some(line) = run.stdout.lines().rev().find(|l| l.starts_with('{')) {
            run.json = serde_json::from_str(line).unwrap_or(Value::Null);
        }
        run
    }
}

/// Makes the faulty client meet `hook`; returns the address of an ACK, if one came.
fn trigger_fault(ns: &NetNsRef, hook: &str, bad_ip: Option<&str>) -> Option<String> {
    let client = [
        "client",
        "--json",
        "--retries",
        "0",
        "--timeout",
        "5",
        "--server",
        "127.0.0.1:67",
        "--giaddr",
        "198.18.0.1:67",
        "--mac",
        BAD_MAC,
    ];
    // `client VERB` comes first: the verb goes between `client` and the options.
    let with_verb = |verb: &str, extra: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = vec!["client".into(), verb.into()];
        all.extend(client[1..].iter().map(|s| s.to_string()));
        all.extend(extra.iter().map(|s| s.to_string()));
        all
    };
    let args: Vec<String> = match hook {
        "AddressDel" => with_verb("release", &["--ciaddr", bad_ip.expect("lease to release")]),
        "DeleteClient" => strings(&["ctl", "delete-lease", bad_ip.expect("lease to delete")]),
        "Control" => strings(&["ctl", "pause"]),
        _ => with_verb("dora", &[]),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = ns.calloutd(&args);
    (run.code == 0 && args[0] == "client")
        .then(|| run.json["yiaddr"].as_str().map(str::to_string))
        .flatten()
}

macro_rules! fault_tests {
    ($($name:ident: $hook:literal, $fault:expr;)*) => {$(
        #[test]
        fn $name() {
            scenario(stringify!($name), $hook, $fault);
        }
    )*};
}

fault_tests! {
    crash_in_new_pkt: "NewPkt", Fault::Crash("segv");
    crash_in_handle_options: "HandleOptions", Fault::Crash("bus");
    crash_in_pkt_send: "PktSend", Fault::Crash("abort");
    crash_in_pkt_drop: "PktDrop", Fault::Crash("exit");
    crash_in_address_offer_before_the_ack: "AddressOffer", Fault::Crash("segv");
    crash_in_address_del: "AddressDel", Fault::Crash("abort");
    crash_in_delete_client: "DeleteClient", Fault::Crash("segv");
    crash_in_control: "Control", Fault::Crash("segv");
    hang_in_new_pkt: "NewPkt", Fault::Hang;
    hang_in_handle_options: "HandleOptions", Fault::Hang;
    hang_in_pkt_send: "PktSend", Fault::Hang;
    hang_in_pkt_drop: "PktDrop", Fault::Hang;
    hang_in_address_offer_under_the_lease_lock: "AddressOffer", Fault::Hang;
    hang_in_address_del: "AddressDel", Fault::Hang;
    hang_in_delete_client: "DeleteClient", Fault::Hang;
    hang_in_control: "Control", Fault::Hang;
}

/// A hang under the lease lock followed by a slow restart (the restarted host's entry sleeps
/// 6 s) holds other clients up for the hook timeout, not for the restart as well: a call under
/// the lease lock does not wait for the new host, and the other calls wait only until the hook
/// timeout after the failure; meanwhile their hooks are traced as not delivered.
#[test]
fn a_slow_restart_holds_no_one_up_beyond_the_hook_timeout() {
    let once = std::env::temp_dir().join(format!("calloutd-slow-restart-{}", std::process::id()));
    let _ = fs::remove_file(&once);
    struct RemoveOnDrop(PathBuf);
    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }
    let _cleanup = RemoveOnDrop(once.clone());
    let envs = [
        ("CALLOUT_FAULTY_MAC", BAD_HEX.to_string()),
        ("CALLOUT_FAULTY_ONCE", once.display().to_string()),
        ("CALLOUT_FAULTY_HANG_HOOK", "AddressOffer".to_string()),
        ("CALLOUT_FAULTY_RESTART_SLEEP_MS", "6000".to_string()),
    ];
    let Some(mut lab) = Lab::start(
        "slow-restart",
        |_| vec![fixture("faulty")],
        &["--isolate", "--hook-timeout-ms", "1500"],
        &envs,
    ) else {
        return;
    };
    let trigger = {
        let ns = NetNsRef(lab.ns.name.clone());
        std::thread::spawn(move || trigger_fault(&ns, "AddressOffer", None))
    };
    // The hang was detected and the slow restart began.
    lab.wait_log("event 1031");
    let other = lab.dora_within(OK_MAC, 5);
    assert!(
        !lab.run.server_log().contains("back in the loop"),
        "{OK_MAC} was served only once the new host was up:\n{}",
        lab.run.server_log()
    );
    assert_eq!(
        trigger.join().expect("trigger thread"),
        None,
        "no ACK after the hang"
    );
    lab.wait_log("back in the loop");
    let bad = lab.dora_ok(BAD_MAC);
    let leases = lab.leases();
    assert_eq!(one_lease(&leases, OK_MAC), other);
    assert_eq!(one_lease(&leases, BAD_MAC), bad);
    let stats = lab.ctl_json(&["stats"]);
    assert_eq!(stats["engine"]["callout_hangs"], 1, "{stats}");
    let (_, trace) = lab.run.stop();
    let skipped: Vec<&Value> = trace
        .iter()
        .filter(|r| {
            r["fault"]
                .as_str()
                .is_some_and(|f| f.contains("the callout host was being restarted"))
        })
        .collect();
    assert!(
        skipped
            .iter()
            .any(|r| r["hook"] == "AddressOffer" && r["locks"][0] == "lease"),
        "the other client's AddressOffer, under the lease lock, was not held for the restart: {skipped:#?}"
    );
}

/// Runs the same exchanges, one at a time, with fixed xids, against a fresh server with the trace
/// callout (`extra` args); returns (callout log, server trace).
fn traffic(tag: &str, extra: &[&str]) -> Option<(Vec<Value>, Vec<Value>)> {
    let mut lab = Lab::start(tag, |_| vec![fixture("trace")], extra, &[])?;
    let expect = |run: CommandRun, code: i32, what: &str| {
        assert_eq!(run.code, code, "{what}: {}", run.stderr);
        run
    };
    let a = "02:00:00:00:00:a1";
    let b = "02:00:00:00:00:b2";
    let ip_a = expect(
        lab.client("dora", &["--mac", a, "--xid", "0x1501"], 5),
        0,
        "dora a",
    )
    .json["yiaddr"]
        .as_str()
        .unwrap()
        .to_string();
    let ip_b = expect(
        lab.client(
            "dora",
            &["--mac", b, "--xid", "0x1502", "--hostname", "bee"],
            5,
        ),
        0,
        "dora b",
    )
    .json["yiaddr"]
        .as_str()
        .unwrap()
        .to_string();
    expect(
        lab.client(
            "renew",
            &["--mac", a, "--ciaddr", &ip_a, "--xid", "0x1503"],
            5,
        ),
        0,
        "renew a",
    );
    expect(
        lab.client(
            "inform",
            &["--mac", a, "--ciaddr", &ip_a, "--xid", "0x1504"],
            5,
        ),
        0,
        "inform a",
    );
    expect(
        lab.client(
            "release",
            &["--mac", b, "--ciaddr", &ip_b, "--xid", "0x1505"],
            5,
        ),
        0,
        "release b",
    );
    expect(
        lab.client(
            "renew",
            &["--mac", b, "--ciaddr", &ip_b, "--xid", "0x1506"],
            5,
        ),
        1,
        "renew of a released lease: NAK",
    );
    let r = lab.ctl(&["delete-lease", &ip_a]);
    assert_eq!(r.code, 0, "delete-lease: {}", r.stderr);
    // 2 DORAs (4 packets), renew, inform, release, NAKed renew.
    lab.run.wait_processed(8);
    Some(lab.run.stop())
}

/// `record` without the fields that differ between runs by nature: timings (and the slow-hook
/// reports they cause), thread ids, and the pointer values of contexts (whether a context is the
/// DLL's own, `ctx_valid`, stays).
fn comparable(record: &Value) -> Value {
    let mut r = record.clone();
    if let Some(map) = r.as_object_mut() {
        for field in ["dur_us", "ts_us", "thread", "ctx", "ctx_in", "ctx_out"] {
            map.remove(field);
        }
        if let Some(Value::Array(list)) = map.get_mut("misbehaviour") {
            list.retain(|m| m["kind"] != "slow-hook");
            if list.is_empty() {
                map.remove("misbehaviour");
            }
        }
    }
    r
}

#[test]
fn the_same_traffic_gives_the_same_traces_in_both_modes() {
    let Some((log_in, trace_in)) = traffic("same-inproc", &[]) else {
        return;
    };
    let Some((log_iso, trace_iso)) = traffic("same-isolated", &["--isolate"]) else {
        return;
    };
    assert!(trace_in.len() > 20, "a real trace: {trace_in:#?}");
    assert_eq!(
        trace_in.len(),
        trace_iso.len(),
        "server traces: same length"
    );
    for (a, b) in trace_in.iter().zip(&trace_iso) {
        assert_eq!(
            comparable(a),
            comparable(b),
            "server trace, in-process vs isolated"
        );
    }
    // What the DLL saw: every argument it logged, PktContext its own throughout.
    assert_eq!(log_in.len(), log_iso.len(), "callout logs: same length");
    for (a, b) in log_in.iter().zip(&log_iso) {
        assert_eq!(
            comparable(a),
            comparable(b),
            "callout log, in-process vs isolated"
        );
    }
    assert!(
        log_iso
            .iter()
            .filter(|r| r.get("ctx_valid").is_some())
            .all(|r| r["ctx_valid"] == true),
        "PktContext round-trips in the isolated host"
    );
}

#[test]
fn check_isolate_reports_a_crash_while_loading_as_1032_and_loads_the_next_dll() {
    let dir = tempfile::tempdir().unwrap();
    // Alphabetical order: a missing DLL (1034), faulty crashing in its entry (1032), trace (1033).
    let dlls = [
        dir.path().join("a-missing.so"),
        dir.path().join("b-faulty.so"),
        dir.path().join("c-trace.so"),
    ];
    fs::copy(fixture("faulty"), &dlls[1]).unwrap();
    fs::copy(fixture("trace"), &dlls[2]).unwrap();
    let reg = dir.path().join("c.reg");
    write_callout_reg(&reg, &dlls);
    let mut cmd = std::process::Command::new(calloutd_bin());
    cmd.args(["check", "--isolate", "--reg"])
        .arg(&reg)
        .env("CALLOUT_FAULTY_ENTRY_CRASH", "1")
        .env("CALLOUT_TRACE_FILE", dir.path().join("trace.jsonl"));
    let run = command_run(run_bounded(cmd, Duration::from_secs(60)));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let out = &run.stdout;
    let line = |needle: &str| {
        out.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} in:\n{out}"))
            .to_string()
    };
    assert!(line("event 1034").contains("a-missing.so"), "{out}");
    let crashed = line("event 1032");
    assert!(
        crashed.contains("b-faulty.so: exception while loading"),
        "{crashed}"
    );
    assert!(crashed.contains("SIGSEGV"), "{crashed}");
    assert!(line("loaded:").contains("c-trace.so"), "{out}");
    // c-trace.so got ChainDlls = [] (it is last) and CalloutVersion 0, as in-process.
    assert!(line("ChainDlls:").contains("[]"), "{out}");
}

/// The CPUs a thread may run on (`Cpus_allowed_list` of /proc/PID/task/TID/status), e.g. "0-1".
fn cpus_allowed(task: &Path) -> String {
    let status = fs::read_to_string(task.join("status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// Each thread of process `pid` as (name, allowed CPUs).
fn threads(pid: u32) -> Vec<(String, String)> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .map(|task| {
            let name = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            (name.trim().to_string(), cpus_allowed(&task.path()))
        })
        .collect()
}

/// The children of process `pid` (the callout host).
fn children(pid: u32) -> Vec<u32> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            let stat = fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // The parent pid is the second field after the parenthesised name.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(pid)
        })
        .collect()
}

/// A single CPU ("3"), not a list or range.
fn single_cpu(allowed: &str) -> bool {
    !allowed.is_empty() && allowed.chars().all(|c| c.is_ascii_digit())
}

/// `--pin-workers` (docs/hooks.md section 8.4, "One CPU per call"): with `--isolate` each worker is
/// pinned to one CPU and the host thread that served its hook calls runs on that CPU; with
/// `--pin-workers never` neither is pinned.
#[test]
fn isolated_workers_are_pinned_and_their_host_threads_follow_them() {
    let process_cpus = cpus_allowed(
        Path::new("/proc/self/task")
            .join(std::process::id().to_string())
            .as_path(),
    );
    for (mode, extra) in [("pinned", None), ("never", Some("never"))] {
        let mut args = vec!["--isolate"];
        if let Some(when) = extra {
            args.extend(["--pin-workers", when]);
        }
        let Some(mut lab) = Lab::start(
            &format!("pin-{mode}"),
            |_| vec![fixture("trace")],
            &args,
            &[],
        ) else {
            return;
        };
        lab.dora_ok(OK_MAC);
        let server = lab.run.server.as_ref().expect("server running").pid();
        let workers: Vec<String> = threads(server)
            .into_iter()
            .filter(|(name, _)| name.starts_with("calloutd-w"))
            .map(|(_, cpus)| cpus)
            .collect();
        assert_eq!(
            workers.len(),
            2,
            "{mode}: two workers: {:?}",
            threads(server)
        );
        let hosts = children(server);
        assert_eq!(hosts.len(), 1, "{mode}: one callout host: {hosts:?}");
        let host_cpus: Vec<String> = threads(hosts[0])
            .into_iter()
            .map(|(_, cpus)| cpus)
            .collect();
        match extra {
            None => {
                for cpus in &workers {
                    assert!(single_cpu(cpus), "a worker pinned to one CPU: {workers:?}");
                }
                assert!(
                    host_cpus
                        .iter()
                        .any(|cpus| single_cpu(cpus) && workers.contains(cpus)),
                    "a host thread on the CPU of a worker {workers:?}: {host_cpus:?}"
                );
            }
            Some(_) => {
                assert!(
                    workers.iter().all(|cpus| *cpus == process_cpus),
                    "workers free to run on {process_cpus}: {workers:?}"
                );
                if !single_cpu(&process_cpus) {
                    assert!(
                        host_cpus.iter().all(|cpus| !single_cpu(cpus)),
                        "no host thread pinned: {host_cpus:?}"
                    );
                }
            }
        }
        lab.run.stop();
    }
}
