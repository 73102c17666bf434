//! `calloutd ctl stats` lists the callout's misbehaviour reports (issue 12 item 2): the real binary
//! serving on 127.0.0.1:67 inside a network namespace of its own, the real faulty test callout
//! writing into the by-value packet of HandleOptions, real DHCP exchanges over UDP through a relay
//! address on the namespace's `lo`, then `calloutd ctl stats`: each report with its kind, hook,
//! xid, chaddr and one-line explanation, in-process and `--isolate`.
//!
//! Tests skip (with a printed reason) when not run as root.

// Unix only: starts the Linux calloutd with .so fixture callouts, mostly inside network namespaces.
#![cfg(unix)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// The clients: each DISCOVER makes HandleOptions write into its packet once.
const MACS: [&str; 2] = ["02:00:00:00:1a:01", "02:00:00:00:1a:02"];

fn control_addr(log: &str) -> SocketAddr {
    log.lines()
        .filter(|l| l.contains("control API listening"))
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no control address in the log:\n{log}"))
}

/// Serves with the faulty callout (`extra` switches added), runs a DORA for each of [`MACS`],
/// and returns `ctl stats` as JSON and as the server log.
fn stats_after_doras(tag: &str, extra: &[&str]) -> Option<(Value, String)> {
    if !have_root(&current_test()) {
        return None;
    }
    let ns = NetNs::new(tag).expect("create the namespace");
    ns.add_addr("198.18.0.1/24", "lo").expect("relay address");
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("faulty.reg");
    write_callout_reg(&reg, &[fixture("faulty")]);
    let scopes = repo_root().join("fixtures/scenarios/dora.txt");
    let mut args = strings(&[
        "--reg",
        reg.to_str().unwrap(),
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
    args.extend(strings(extra));
    let mut server = ServerProcess::start(
        &ns,
        &args,
        dir.path().join("server.log"),
        &[("CALLOUT_FAULTY_SCRIBBLE_HOOK", "HandleOptions")],
    )
    .expect("start calloutd serve");
    server
        .wait_for_log("control API listening", Duration::from_secs(10))
        .expect("control API up");
    let control = control_addr(&server.log_text()).to_string();
    for mac in MACS {
        let run = run_client(
            &ns,
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
            "dora {mac}: {}\nserver log:\n{}",
            run.stderr,
            server.log_text()
        );
    }
    let run = run_calloutd(
        &ns,
        &["ctl", "--control", &control, "stats"],
        Duration::from_secs(20),
    );
    assert_eq!(run.code, 0, "ctl stats: {}", run.stderr);
    let stats: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("ctl stats: {e}: {}", run.stdout));
    let _ = server.stop();
    Some((stats, server.log_text()))
}

fn check_reports(stats: &Value, log: &str) {
    let reports = stats["misbehaviour"]
        .as_array()
        .unwrap_or_else(|| panic!("no misbehaviour list in {stats}"));
    // A DORA is DISCOVER and REQUEST: HandleOptions runs (and scribbles) for each.
    assert_eq!(reports.len(), 2 * MACS.len(), "{reports:?}\n{log}");
    for (i, mac) in MACS.iter().enumerate() {
        for report in &reports[2 * i..2 * i + 2] {
            assert_eq!(report["kind"], "wrote-read-only-packet", "{report}");
            assert_eq!(report["hook"], "HandleOptions", "{report}");
            assert_eq!(report["chaddr"], *mac, "{report}");
            assert!(report["xid"].as_u64().is_some(), "{report}");
            let explanation = report["explanation"].as_str().unwrap_or_default();
            assert!(
                !explanation.is_empty() && !explanation.contains('\n'),
                "{report}"
            );
        }
    }
    assert_eq!(
        stats["engine"]["misbehaviour_wrote-read-only-packet"],
        2 * MACS.len(),
        "{stats}"
    );
}

#[test]
fn ctl_stats_lists_each_misbehaviour_with_hook_packet_and_explanation() {
    let Some((stats, log)) = stats_after_doras("mbstats", &[]) else {
        return;
    };
    check_reports(&stats, &log);
}

#[test]
fn ctl_stats_lists_the_isolated_hosts_misbehaviour_too() {
    let Some((stats, log)) = stats_after_doras("mbstatsiso", &["--isolate"]) else {
        return;
    };
    check_reports(&stats, &log);
}
