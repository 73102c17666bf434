//! End-to-end tests of hook timing around the lease commit (issue 15 item 6, docs/hooks.md) against
//! the real binary with the trace callout, each inside a network namespace of its own (the server on
//! 127.0.0.1:67, a test relay on 198.18.0.1:67 on the namespace's `lo`): an ACK's PktSend runs only
//! once its lease is in the database, and an ACK whose lease cannot be committed gets no PktSend but
//! PktDrop(DHCP_DROP_INTERNAL_ERROR) and then PktDrop(DHCP_DROP_PROCESSED), and no audit line.
//!
//! Tests skip (with a printed reason) when not run as root.

// Unix only: starts the Linux calloutd with .so fixture callouts, mostly inside network namespaces.
#![cfg(unix)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::*;

const OPS_SCOPES: &str = "fixtures/scenarios/ops-scope.txt";
/// `PacketCalls::signature` of PktDrop(DHCP_DROP_INTERNAL_ERROR).
const DROP_INTERNAL_ERROR: &str = "PktDrop(0x3)";
/// How long the `faulty` callout sleeps in each PktSend in the ordering test: the window in which
/// the test reads the database while the ACK's PktSend is running.
const SEND_SLEEP_MS: &str = "3000";

/// A namespace with the relay address on `lo`; `None` (the test skips) when not root.
fn lab(tag: &str) -> Option<NetNs> {
    if !have_root(&current_test()) {
        return None;
    }
    let ns = NetNs::new(tag).expect("create the namespace");
    ns.add_addr("198.18.0.1/24", "lo").expect("relay address");
    Some(ns)
}

/// Starts `calloutd serve` with the callouts `dlls` on the ops scope (lease database
/// DIR/leases.sqlite3, audit log in DIR/audit).
fn start(ns: &NetNs, dir: &Path, dlls: &[PathBuf], envs: &[(&str, &str)]) -> TracedRun {
    let reg = dir.join("callout.reg");
    write_callout_reg(&reg, dlls);
    let audit = dir.join("audit");
    let args = strings(&[
        "--listen",
        "127.0.0.1:67",
        "--audit-log",
        audit.to_str().expect("UTF-8 path"),
        "--workers",
        "2",
    ]);
    TracedRun::start(ns, dir, 1, &reg, &repo_root().join(OPS_SCOPES), &args, envs)
}

/// A DORA through the relay with a `timeout_s` second wait per reply; the leased address, or `None`
/// when no ACK came.
fn dora(ns: &NetNs, mac: &str, timeout_s: u64) -> Option<String> {
    let run = run_client(
        ns,
        "dora",
        timeout_s,
        &[
            "--server",
            "127.0.0.1:67",
            "--giaddr",
            "198.18.0.1:67",
            "--mac",
            mac,
        ],
    );
    (run.code == 0).then(|| run.json["yiaddr"].as_str().expect("yiaddr").to_string())
}

/// The leases in the database at `db` as (address, hardware address hex).
fn stored_leases(db: &Path) -> Vec<(String, String)> {
    let reader = rusqlite::Connection::open(db).unwrap();
    let mut stmt = reader.prepare("SELECT ip, hw_address FROM leases").unwrap();
    stmt.query_map([], |row| {
        Ok((row.get::<_, u32>(0)?, row.get::<_, Vec<u8>>(1)?))
    })
    .unwrap()
    .map(|row| {
        let (ip, hw) = row.unwrap();
        (std::net::Ipv4Addr::from(ip).to_string(), hex(&hw))
    })
    .collect()
}

/// The audit events in DIR/audit (every DhcpSrvLog file) as (ID, address, MAC).
fn audit_events(dir: &Path) -> Vec<(u8, Option<String>, String)> {
    let mut events = Vec::new();
    for entry in std::fs::read_dir(dir.join("audit")).expect("audit folder") {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        events.extend(calloutd_engine::parse_audit_log(&text).expect("audit log"));
    }
    events
        .into_iter()
        .map(|e| (e.id, e.ip.map(|ip| ip.to_string()), e.mac))
        .collect()
}

/// The trace callout's PktSend lines so far.
fn pkt_sends(records: &[Value]) -> usize {
    records
        .iter()
        .filter(|r| r["dll"] == "trace" && r["hook"] == "PktSend")
        .count()
}

#[test]
fn an_ack_whose_lease_cannot_be_committed_gets_no_pkt_send_but_a_drop_reason() {
    let Some(ns) = lab("commit-withheld") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leases.sqlite3");
    let mut run = start(&ns, dir.path(), &[fixture("trace")], &[]);
    // Another writer holds the database's write lock: the ACK's commit fails after the store's
    // busy timeout, so the ACK must never leave.
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    assert_eq!(
        dora(&ns, "02:00:00:00:0f:01", 3),
        None,
        "an ACK left without its lease stored"
    );
    run.wait_processed(2);
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    // The database writable again: the next client's ACK is stored and sent.
    let ip = dora(&ns, "02:00:00:00:0f:02", 5).expect("an ACK once the database can be written");
    run.wait_processed(4);
    let (log, _) = run.stop();
    let packets = callout_packets(&log, "trace");
    let sigs: Vec<Vec<String>> = packets.iter().map(PacketCalls::signature).collect();
    assert_eq!(sigs.len(), 4, "{sigs:?}");
    // The withheld ACK: no PktSend; the reason, then PROCESSED.
    assert_eq!(
        sigs[1],
        [
            NEW_PKT,
            HANDLE_OPTIONS,
            OFFER_NEW,
            DROP_INTERNAL_ERROR,
            PROCESSED
        ],
        "the REQUEST whose commit failed"
    );
    assert_eq!(
        sigs[3],
        [NEW_PKT, HANDLE_OPTIONS, OFFER_NEW, PKT_SEND, PROCESSED],
        "the REQUEST whose commit succeeded"
    );
    let stored = stored_leases(&db);
    assert_eq!(
        stored,
        vec![(ip.clone(), "020000000f02".to_string())],
        "only the second client's lease"
    );
    // The audit log (flushed at the stop) follows the replies: an Assign line only for the lease
    // that was stored.
    let grants: Vec<_> = audit_events(dir.path())
        .into_iter()
        .filter(|(id, ..)| *id >= 10)
        .collect();
    assert_eq!(
        grants,
        [(10, Some(ip), "020000000F02".to_string())],
        "audit events of the withheld and the stored ACK"
    );
}

#[test]
fn an_acks_pkt_send_runs_after_its_lease_is_in_the_database() {
    let Some(ns) = lab("commit-order") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leases.sqlite3");
    // chain → trace, faulty (sleeping in every PktSend): while the ACK's PktSend sleeps, the
    // test reads the database.
    let dlls = fixture_copies(
        dir.path(),
        &[
            ("a-chain", "chain"),
            ("b-trace", "trace"),
            ("c-faulty", "faulty"),
        ],
    );
    let mut run = start(
        &ns,
        dir.path(),
        &dlls,
        &[
            ("CALLOUT_FAULTY_SLEEP_HOOK", "PktSend"),
            ("CALLOUT_FAULTY_SLEEP_MS", SEND_SLEEP_MS),
        ],
    );
    let mut command = ns.command(&calloutd_bin());
    command.args([
        "client",
        "dora",
        "--json",
        "--retries",
        "0",
        "--timeout",
        "20",
        "--server",
        "127.0.0.1:67",
        "--giaddr",
        "198.18.0.1:67",
        "--mac",
        "02:00:00:00:0f:11",
    ]);
    // Killed when dropped, also when the test fails.
    let mut client =
        LoggedChild::spawn(command, dir.path().join("client.log")).expect("start the client");
    // The second PktSend is the ACK's (the first, the OFFER's): it has started when trace logs it.
    wait_for_jsonl(
        &run.callout_log,
        Duration::from_secs(30),
        "the ACK's PktSend",
        |r| pkt_sends(r) >= 2,
    );
    let stored = stored_leases(&db);
    // Still inside that PktSend (its packet has not ended): what was read, was read meanwhile.
    let records = read_jsonl(&run.callout_log);
    assert_eq!(
        processed_count(&records),
        1,
        "the ACK's PktSend ended before the database was read: the test cannot tell the order \
         (raise SEND_SLEEP_MS)"
    );
    assert_eq!(
        stored.iter().map(|(_, hw)| hw.as_str()).collect::<Vec<_>>(),
        ["020000000f11"],
        "the lease is not in the database while the ACK's PktSend runs"
    );
    let status = client
        .wait_exit(Duration::from_secs(60))
        .expect("the client exits");
    let output = client.log_text();
    assert!(status.success(), "no ACK: {output}");
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("client JSON");
    let ack: Value = serde_json::from_str(line).unwrap();
    assert_eq!(ack["yiaddr"].as_str(), Some(stored[0].0.as_str()));
    run.wait_processed(2);
    let (log, _) = run.stop();
    let packets = callout_packets(&log, "trace");
    assert_eq!(
        packets[1].signature(),
        [NEW_PKT, HANDLE_OPTIONS, OFFER_NEW, PKT_SEND, PROCESSED]
    );
}
