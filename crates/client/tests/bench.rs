//! `calloutd bench` against the test responder: a short bounded run completes every exchange.

// Unix only: runs inside network namespaces.
#![cfg(unix)]

mod support;

use std::time::Duration;

use calloutd_client::bench::{self, BenchCommand, BenchConfig, MaxDrop};
use calloutd_client::MessageType;
use serde_json::Value;
use support::{Policy, Responder};

#[test]
fn short_run_completes_every_exchange() {
    let server = Responder::start(Policy::Serve);
    let config = BenchConfig {
        server: server.addr(),
        giaddr: "127.0.0.8:0".parse().unwrap(),
        rate: 2000,
        clients: 50,
        duration: Duration::from_secs(1),
        max_drop: None,
        // Generous: the responder is a debug build on a shared machine; no drop should be a delay.
        timeout: Duration::from_secs(5),
        max_outstanding: None,
    };
    let report = bench::run(&config, &mut |_| {}).unwrap();
    // The schedule starts rate × duration exchanges (fewer if this thread is starved of CPU).
    assert!((1000..=2000).contains(&report.discovers), "{report:?}");
    assert_eq!(report.offers, report.discovers);
    assert_eq!(report.requests, report.discovers);
    assert_eq!(report.acks, report.discovers);
    assert_eq!(
        (report.drops.no_offer, report.drops.no_ack, report.drops.nak),
        (0, 0, 0)
    );
    assert_eq!((report.unexpected, report.send_errors), (0, 0));
    assert!(!report.max_drop_exceeded);
    assert_eq!(report.latency_us.count, report.acks);
    assert!(
        report.latency_us.min <= report.latency_us.p50
            && report.latency_us.p50 <= report.latency_us.max
    );
    assert!(report.exchanges_per_s > 0.0);

    // Every exchange reached the server as DISCOVER + REQUEST, from 50 distinct MACs via giaddr.
    let received = server.received();
    let discovers = server.received_of(MessageType::Discover);
    assert_eq!(discovers.len() as u64, report.discovers);
    assert_eq!(received.len() as u64, 2 * report.discovers);
    let macs: std::collections::HashSet<Vec<u8>> = discovers
        .iter()
        .map(|r| r.message.chaddr().to_vec())
        .collect();
    assert_eq!(macs.len(), 50);
    assert!(received
        .iter()
        .all(|r| r.message.giaddr() == std::net::Ipv4Addr::new(127, 0, 0, 8)));
}

#[test]
fn silent_server_counts_drops_and_max_drop_stops_the_run() {
    let server = Responder::start(Policy::Silent);
    let config = BenchConfig {
        server: server.addr(),
        giaddr: "127.0.0.9:0".parse().unwrap(),
        rate: 500,
        clients: 10,
        duration: Duration::from_secs(3),
        max_drop: Some(MaxDrop::Count(20)),
        timeout: Duration::from_millis(100),
        max_outstanding: None,
    };
    let report = bench::run(&config, &mut |_| {}).unwrap();
    assert!(report.max_drop_exceeded);
    assert_eq!(report.acks, 0);
    assert_eq!(report.drops.no_offer, report.discovers);
    assert!(report.drops.no_offer > 20);
    assert!(report.send_phase_s < 3.0);
}

#[test]
fn cli_json_report_shape() {
    let server = Responder::start(Policy::Serve);
    let cmd = BenchCommand {
        server: server.addr().to_string(),
        giaddr: "127.0.0.10:0".into(),
        rate: 500,
        clients: 5,
        duration: 0.3,
        max_drop: Some("1%".into()),
        timeout: 5.0,
        max_outstanding: None,
        json: true,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = bench::run_bench_with(&cmd, &mut out, &mut err, false);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    assert!(err.is_empty());
    let json: Value = serde_json::from_slice(&out).unwrap();
    assert!(json["generator_cpu_s"].is_number());
    for key in [
        "exchanges_per_s",
        "acks",
        "discovers",
        "drops",
        "latency_us",
        "discover_offer_us",
        "request_ack_us",
    ] {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }
    for key in ["no_offer", "no_ack", "nak"] {
        assert_eq!(json["drops"][key], 0);
    }
    for key in ["min", "p50", "p99", "max", "avg", "count"] {
        assert!(json["latency_us"][key].is_number());
    }
    assert_eq!(json["acks"], json["discovers"]);

    let bad = BenchCommand {
        giaddr: "nowhere".into(),
        ..cmd
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(bench::run_bench_with(&bad, &mut out, &mut err, false), 3);
    assert!(String::from_utf8(err)
        .unwrap()
        .starts_with("error: --giaddr"));
}

/// `--rate 0` with every other setting at its default, against a responder whose receive buffer
/// (16 KiB, doubled by the kernel) holds a few dozen datagrams, so a burst of 64 overflows it.
/// The generator used to send its whole window (256 by default) at once: much of the burst was
/// lost, and each lost exchange blocked the window for the 1 s timeout, so a run completed at most
/// 256 exchanges per timeout period (checked: 82 of 543 started; with a fixed window of 64, 119 of
/// 178). It must now find the window the responder can take and complete nearly every exchange
/// it starts. Counts only, no timing: the bound below is 4 × what the old behaviour could do in
/// this run, and the debug-build responder does far more.
#[test]
fn max_rate_default_window_survives_a_small_server_buffer() {
    let server = support::FastResponder::with_recv_buffer(16 << 10);
    let cmd = BenchCommand {
        server: server.addr().to_string(),
        giaddr: "127.0.0.12:0".into(),
        rate: 0,
        clients: 1000,
        duration: 2.0,
        max_drop: None,
        timeout: 1.0,
        max_outstanding: None,
        json: true,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = bench::run_bench_with(&cmd, &mut out, &mut err, false);
    server.stop();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    let json: Value = serde_json::from_slice(&out).unwrap();
    let count = |key: &str| json[key].as_u64().unwrap();
    let (started, acks) = (count("discovers"), count("acks"));
    let drops = &json["drops"];
    let dropped = drops["no_offer"].as_u64().unwrap() + drops["no_ack"].as_u64().unwrap();
    eprintln!("{json}");
    let old_bound = 256 * (2 + 1);
    assert!(acks > 4 * old_bound, "{json}");
    assert!(acks * 10 >= started * 9, "{json}");
    assert_eq!(
        acks + dropped + drops["nak"].as_u64().unwrap(),
        started,
        "{json}"
    );
}

/// Throughput of the generator itself against a responder that keeps up. A measurement, not a
/// check: run with `cargo test --release -p calloutd-client --test bench -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, run by hand with --release --ignored"]
fn throughput_against_a_fast_responder() {
    for rate in [0, 30_000, 40_000] {
        let server = support::FastResponder::start();
        let config = BenchConfig {
            server: server.addr(),
            giaddr: "127.0.0.11:0".parse().unwrap(),
            rate,
            clients: 10_000,
            duration: Duration::from_secs(3),
            max_drop: None,
            timeout: Duration::from_secs(1),
            max_outstanding: None,
        };
        let report = bench::run(&config, &mut |_| {}).unwrap();
        let responder_cpu = server.stop();
        let generator_cpu = report.generator_cpu_s.unwrap_or_default();
        println!(
            "rate {rate}: {:.0} exchanges/s, drops {:?}, latency p50 {:.0} µs; generator CPU {:.2}s = {:.1} µs/exchange, responder CPU {:.2}s",
            report.exchanges_per_s,
            report.drops,
            report.latency_us.p50,
            generator_cpu,
            generator_cpu * 1e6 / report.acks.max(1) as f64,
            responder_cpu
        );
        assert!(report.acks > 0);
    }
}
