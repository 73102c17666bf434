//! End-to-end tests of lease storage (issue 14 item 4) against the real binary, each inside a
//! network namespace of its own (the server on 127.0.0.1:67, a test relay on 198.18.0.1:67 on the
//! namespace's `lo`, the control API on 127.0.0.1:8067): an unwritable or missing lease database is
//! refused at startup with one clear error; a reply whose lease cannot be committed is withheld and
//! counted as withheld, not as an ACK; the periodic backup restores into a server that serves from it;
//! the audit log goes to the folder of `DatabasePath` when `DhcpLogFilePath` is absent (issue 15).
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

const CONTROL: &str = "127.0.0.1:8067";
const OPS_SCOPES: &str = "fixtures/scenarios/ops-scope.txt";

/// A namespace with the relay address on `lo`.
fn lab(tag: &str) -> Option<NetNs> {
    if !have_root(&current_test()) {
        return None;
    }
    let ns = NetNs::new(tag).expect("create the namespace");
    ns.add_addr("198.18.0.1/24", "lo").expect("relay address");
    Some(ns)
}

/// `serve` arguments for the ops scope, no callout, the given lease database and data directory.
fn serve_args(lease_db: &Path, data_dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--scopes",
        repo_root().join(OPS_SCOPES).to_str().unwrap(),
        "--listen",
        "127.0.0.1:67",
        "--lease-db",
        lease_db.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--no-audit-log",
        "--control",
        CONTROL,
        "--workers",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn start(ns: &NetNs, args: &[String], log: PathBuf) -> ServerProcess {
    let mut server = ServerProcess::start(ns, args, log, &[]).expect("start calloutd serve");
    server
        .wait_for_log("control API listening", Duration::from_secs(10))
        .expect("control API up");
    server
}

/// `calloutd serve ARGS` that must fail at startup: its stderr.
fn serve_fails(ns: &NetNs, args: &[String]) -> String {
    let mut all = vec!["serve"];
    all.extend(args.iter().map(String::as_str));
    let run = run_calloutd(ns, &all, Duration::from_secs(20));
    assert_ne!(run.code, 0, "serve started:\n{}", run.stderr);
    run.stderr
}

/// A DORA through the relay; the leased address, or `None` when no ACK came.
fn dora(ns: &NetNs, mac: &str) -> Option<String> {
    let run = run_client(
        ns,
        "dora",
        2,
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

fn ctl_json(ns: &NetNs, args: &[&str]) -> Value {
    let mut all = vec!["ctl", "--control", CONTROL];
    all.extend_from_slice(args);
    let run = run_calloutd(ns, &all, Duration::from_secs(20));
    assert_eq!(run.code, 0, "ctl {args:?}: {}", run.stderr);
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("ctl {args:?}: {e}: {}", run.stdout))
}

/// Makes `path` unwritable even for root (the immutable attribute) until dropped.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Immutable {
        let out = run_ok("chattr", &["+i", path.to_str().unwrap()]).expect("chattr +i");
        assert!(out.status.success(), "chattr +i {}", path.display());
        Immutable(path.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = run_ok("chattr", &["-i", self.0.to_str().unwrap()]);
    }
}

#[test]
fn an_unwritable_or_missing_lease_database_is_refused_at_startup_with_one_error() {
    let Some(ns) = lab("db-refused") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = dir.path().join("leases.sqlite3");
    // A database made by a first run, then made immutable.
    let mut first = start(
        &ns,
        &serve_args(&db, &data, &[]),
        dir.path().join("first.log"),
    );
    assert!(
        dora(&ns, "02:00:00:00:0e:01").is_some(),
        "no ACK from a writable database"
    );
    first.stop().expect("stop");
    {
        let _sealed = Immutable::set(&db);
        let stderr = serve_fails(&ns, &serve_args(&db, &data, &[]));
        let said: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("cannot be written"))
            .collect();
        assert!(
            !said.is_empty() && said.iter().all(|l| l.contains(db.to_str().unwrap())),
            "no clear error naming the database:\n{stderr}"
        );
        assert!(!stderr.contains("serving"), "it served:\n{stderr}");
    }
    // A folder that does not exist: an error, unless --create-dirs.
    let mistyped = dir.path().join("no-such-folder").join("leases.sqlite3");
    let stderr = serve_fails(&ns, &serve_args(&mistyped, &data, &[]));
    assert!(
        stderr.contains("does not exist") && stderr.contains("--create-dirs"),
        "{stderr}"
    );
    assert!(!mistyped.parent().unwrap().exists());
    let mut created = start(
        &ns,
        &serve_args(&mistyped, &data, &["--create-dirs"]),
        dir.path().join("created.log"),
    );
    assert!(mistyped.exists());
    created.stop().expect("stop");
}

#[test]
fn a_reply_whose_lease_cannot_be_committed_is_withheld_and_counted_as_withheld() {
    let Some(ns) = lab("db-withheld") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leases.sqlite3");
    let mut server = start(
        &ns,
        &serve_args(&db, &dir.path().join("data"), &[]),
        dir.path().join("server.log"),
    );
    // Another writer (the sqlite3 shell, a backup tool) holds the database's write lock: every
    // commit fails after the store's busy timeout, and the ACK is withheld.
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    assert_eq!(
        dora(&ns, "02:00:00:00:0e:11"),
        None,
        "an ACK left without its lease stored"
    );
    let stats = ctl_json(&ns, &["stats"]);
    assert!(stats["replies_withheld"].as_u64() >= Some(1), "{stats}");
    assert_eq!(
        stats["replies"].get("ACK"),
        None,
        "a withheld ACK counted as sent: {stats}"
    );
    assert!(server.log_text().contains("reply withheld"));
    // The lock released, the next exchange is stored and ACKed.
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    let ip = dora(&ns, "02:00:00:00:0e:12").expect("ACK once the database can be written");
    let stats = ctl_json(&ns, &["stats"]);
    assert_eq!(stats["replies"]["ACK"], 1, "{stats}");
    server.stop().expect("stop");
    let stored: Vec<String> = {
        let reader = rusqlite::Connection::open(&db).unwrap();
        let mut stmt = reader.prepare("SELECT ip FROM leases").unwrap();
        stmt.query_map([], |row| row.get::<_, u32>(0))
            .unwrap()
            .map(|ip| std::net::Ipv4Addr::from(ip.unwrap()).to_string())
            .collect()
    };
    assert!(
        stored.contains(&ip),
        "the ACKed lease {ip} is not stored: {stored:?}"
    );
}

#[test]
fn a_periodic_backup_restores_into_a_server_that_serves_from_it() {
    let Some(ns) = lab("db-backup") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = dir.path().join("leases.sqlite3");
    let mut server = start(
        &ns,
        &serve_args(&db, &data, &["--backup-interval-secs", "1"]),
        dir.path().join("server.log"),
    );
    let first = dora(&ns, "02:00:00:00:0e:21").expect("first DORA");
    let second = dora(&ns, "02:00:00:00:0e:22").expect("second DORA");
    // `ctl backup` backs up at once, into the data directory.
    let report = ctl_json(&ns, &["backup"]);
    assert_eq!(report["leases"], 2, "{report}");
    let file = PathBuf::from(report["file"].as_str().expect("file"));
    assert!(file.starts_with(&data) && file.is_file(), "{report}");
    // And every BackupInterval (here every second) on its own: BackupDatabasePath's default,
    // %SystemRoot%\System32\dhcp\backup, mapped under the data directory.
    server
        .wait_for_log("(2 leases", Duration::from_secs(20))
        .expect("a backup holding both leases");
    server.stop().expect("stop");
    let backups: Vec<PathBuf> = walk(&data)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "leases.sqlite3"))
        .collect();
    assert_eq!(
        backups.len(),
        1,
        "one backup file under {}: {backups:?}",
        data.display()
    );
    assert!(
        backups[0]
            .to_string_lossy()
            .to_lowercase()
            .contains("backup"),
        "{backups:?}"
    );

    // The restore procedure of the README: the server stopped, the backup copied where the lease
    // database is expected (its -wal and -shm gone), the server started again.
    fs::remove_file(&db).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", db.display()));
    }
    fs::copy(&backups[0], &db).unwrap();
    let mut restored = start(
        &ns,
        &serve_args(&db, &data, &[]),
        dir.path().join("restored.log"),
    );
    let leases = ctl_json(&ns, &["leases"]);
    let mut ips: Vec<&str> = leases
        .as_array()
        .expect("lease list")
        .iter()
        .map(|l| l["ip"].as_str().unwrap())
        .collect();
    ips.sort_unstable();
    assert_eq!(ips, [first.as_str(), second.as_str()]);
    // The clients keep their addresses; a new one gets a free address.
    assert_eq!(dora(&ns, "02:00:00:00:0e:21"), Some(first.clone()));
    let third = dora(&ns, "02:00:00:00:0e:23").expect("a new client");
    assert!(third != first && third != second);
    restored.stop().expect("stop");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn the_audit_log_defaults_to_the_folder_of_database_path() {
    let Some(ns) = lab("audit-default") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = dir.path().join("leases.sqlite3");
    // DatabasePath set, DhcpLogFilePath absent: Microsoft writes the audit log beside the database.
    let reg = dir.path().join("params.reg");
    write_parameters(&reg, &[], None);
    let mut tree = calloutd_registry::RegistryTree::new();
    tree.apply_file(&reg).expect("read .reg");
    tree.set_value(
        calloutd_registry::DHCP_PARAMETERS_KEY,
        "DatabasePath",
        calloutd_registry::RegValueData::ExpandSz(r"C:\LabDb".to_string()),
        None,
    )
    .expect("set DatabasePath");
    calloutd_registry::write_reg_v5_file(&tree, &reg).expect("write .reg");
    let args: Vec<String> = serve_args(&db, &data, &["--reg", reg.to_str().unwrap()])
        .into_iter()
        .filter(|a| a != "--no-audit-log")
        .collect();
    let mut server = start(&ns, &args, dir.path().join("server.log"));
    let ip = dora(&ns, "02:00:00:00:0e:31").expect("DORA");
    server.stop().expect("stop");
    let logs: Vec<PathBuf> = walk(&data)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("DhcpSrvLog-"))
        })
        .collect();
    assert_eq!(
        logs.len(),
        1,
        "audit files under {}: {logs:?}",
        data.display()
    );
    assert_eq!(
        logs[0].parent(),
        Some(data.join("LabDb").as_path()),
        "C:\\LabDb mapped under the data directory"
    );
    let events = calloutd_engine::parse_audit_log(&fs::read_to_string(&logs[0]).unwrap())
        .expect("audit log");
    assert!(
        events
            .iter()
            .any(|e| e.id == 10 && e.ip.map(|a| a.to_string()) == Some(ip.clone())),
        "{events:?}"
    );
}
