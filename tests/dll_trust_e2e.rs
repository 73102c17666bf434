//! The callout as a persistence risk (issue 14 item 3), against the real binary: a DLL in a folder
//! every user can write is a warning naming who can write it in `check` and `serve`, and with
//! `--strict-dll-permissions` a load failure; the loaded DLL's SHA-256 is printed and logged.
//!
//! The `serve` test runs inside a network namespace and skips (saying why) when not run as root.

// Unix only: starts the Linux calloutd with .so fixture callouts, mostly inside network namespaces.
#![cfg(unix)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

/// A temp dir with `open/noop.so` (the folder mode 0777) and a `.reg` naming it.
struct OpenFolder {
    dir: tempfile::TempDir,
    open: PathBuf,
    reg: PathBuf,
}

fn open_folder() -> OpenFolder {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    fs::create_dir(&open).unwrap();
    let dll = open.join("noop.so");
    fs::copy(fixture("noop"), &dll).unwrap();
    fs::set_permissions(&dll, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let reg = dir.path().join("callout.reg");
    write_callout_reg(&reg, &[dll]);
    OpenFolder { dir, open, reg }
}

fn check(args: &[&str]) -> CommandRun {
    let mut cmd = Command::new(calloutd_bin());
    cmd.arg("check").args(args);
    command_run(run_bounded(cmd, Duration::from_secs(60)))
}

/// The hex SHA-256 of `path`, by `sha256sum`.
fn sha256sum(path: &Path) -> String {
    let out = run_ok("sha256sum", &[path.to_str().unwrap()]).expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn check_warns_about_a_world_writable_folder_and_strict_refuses_it() {
    let folder = open_folder();
    let reg = folder.reg.to_str().unwrap();
    let run = check(&["--reg", reg]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let warning = run
        .stdout
        .lines()
        .find(|l| l.starts_with("warning:") && l.contains(folder.open.to_str().unwrap()))
        .unwrap_or_else(|| panic!("no permission warning:\n{}", run.stdout));
    assert!(warning.contains("every user can write it"), "{warning}");
    assert!(warning.contains("group "), "{warning}");
    let digest = sha256sum(&folder.open.join("noop.so"));
    assert!(
        run.stdout.contains(&format!("SHA-256: {digest}")),
        "{}",
        run.stdout
    );

    let strict = check(&["--reg", reg, "--strict-dll-permissions"]);
    assert_eq!(strict.code, 1, "{}{}", strict.stdout, strict.stderr);
    assert!(
        strict.stderr.contains("--strict-dll-permissions")
            && strict.stderr.contains("every user can write it"),
        "{}",
        strict.stderr
    );

    // Closed again: no warning, and strict loads it.
    fs::set_permissions(&folder.open, fs::Permissions::from_mode(0o755)).unwrap();
    let clean = check(&["--reg", reg, "--strict-dll-permissions"]);
    assert_eq!(clean.code, 0, "{}{}", clean.stdout, clean.stderr);
    assert!(!clean.stdout.contains("can write it"), "{}", clean.stdout);
    drop(folder.dir);
}

#[test]
fn serve_warns_and_logs_the_hash_and_strict_refuses_to_start() {
    if !have_root(&current_test()) {
        return;
    }
    let folder = open_folder();
    let ns = NetNs::new("trust").expect("create the namespace");
    let base = strings(&[
        "--reg",
        folder.reg.to_str().unwrap(),
        "--scopes",
        repo_root()
            .join("fixtures/scenarios/ops-scope.txt")
            .to_str()
            .unwrap(),
        "--listen",
        "127.0.0.1:67",
        "--lease-db",
        folder.dir.path().join("leases.sqlite3").to_str().unwrap(),
        "--data-dir",
        folder.dir.path().to_str().unwrap(),
        "--no-audit-log",
        "--control",
        "off",
    ]);
    let mut server = ServerProcess::start(&ns, &base, folder.dir.path().join("serve.log"), &[])
        .expect("start calloutd serve");
    let log = server.log_text();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains(folder.open.to_str().unwrap())
            && l.contains("every user can write it")),
        "{log}"
    );
    let digest = sha256sum(&folder.open.join("noop.so"));
    assert!(log.contains(&format!("SHA-256 {digest}")), "{log}");
    server.stop().expect("stop");

    let mut cmd = ns.command(&calloutd_bin());
    cmd.arg("serve").args(&base).arg("--strict-dll-permissions");
    let run = command_run(run_bounded(cmd, Duration::from_secs(30)));
    assert_ne!(run.code, 0, "served a DLL others can write");
    assert!(
        run.stderr.contains("--strict-dll-permissions"),
        "{}",
        run.stderr
    );
}
