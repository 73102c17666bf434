//! `calloutd check` against real .reg files and real compiled callouts.

// Unix only: starts the Linux calloutd with .so fixture callouts, mostly inside network namespaces.
#![cfg(unix)]

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{calloutd_bin, command_run, fixture, run_bounded, write_parameters, CommandRun};

/// The fixture callout `name`'s path, as text.
fn so(name: &str) -> String {
    fixture(name).display().to_string()
}

/// Runs `calloutd check ARGS` with the environment `envs` in the current folder (bounded).
fn check(args: &[&str], envs: &[(&str, &str)]) -> CommandRun {
    check_in(Path::new("."), args, envs)
}

/// Runs `calloutd check ARGS` with the environment `envs` in `folder`, bounded by a minute.
fn check_in(folder: &Path, args: &[&str], envs: &[(&str, &str)]) -> CommandRun {
    let mut cmd = Command::new(calloutd_bin());
    cmd.current_dir(folder).arg("check").args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    command_run(run_bounded(cmd, Duration::from_secs(60)))
}

/// Writes a `.reg` file `name` in `dir` with `CalloutDlls` = `dlls` and `CalloutEnabled` =
/// `enabled`; returns its path.
fn write_params(dir: &Path, name: &str, dlls: &[String], enabled: Option<u32>) -> String {
    let path = dir.join(name);
    write_parameters(&path, dlls, enabled);
    path.display().to_string()
}

#[test]
fn loads_the_trace_callout_and_lists_its_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let reg = write_params(dir.path(), "p.reg", &[so("trace")], Some(1));
    let out = check(&["--reg", &reg], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let text = out.stdout;
    assert!(text.contains(&format!("loaded: {}", so("trace"))), "{text}");
    assert!(text.contains("ChainDlls: []"), "{text}");
    for hook in [
        "DhcpControlHook",
        "DhcpNewPktHook",
        "DhcpPktDropHook",
        "DhcpPktSendHook",
        "DhcpAddressDelHook",
        "DhcpAddressOfferHook",
        "DhcpHandleOptionsHook",
        "DhcpDeleteClientHook",
    ] {
        assert!(text.contains(hook), "{hook} missing: {text}");
    }
    assert!(text.contains("check: OK"));
}

#[test]
fn a_failing_dll_before_the_loaded_one_is_a_warning_and_chain_dlls_are_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    // Copies with names that sort a < b < c, given out of order.
    let a = dir.path().join("a-faulty.so");
    let b = dir.path().join("b-trace.so");
    let c = dir.path().join("c-noop.so");
    fs::copy(so("faulty"), &a).unwrap();
    fs::copy(so("trace"), &b).unwrap();
    fs::copy(so("noop"), &c).unwrap();
    let dlls: Vec<String> = [&c, &a, &b]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let reg = write_params(dir.path(), "p.reg", &dlls, Some(1));
    let out = check(&["--reg", &reg], &[("CALLOUT_FAULTY_ENTRY", "87")]);
    let text = out.stdout;
    assert_eq!(out.code, 0, "{text}{}", out.stderr);
    assert!(
        text.contains(&format!("warning: event 1034: {}", a.display())),
        "{text}"
    );
    assert!(text.contains("returned 87"), "{text}");
    assert!(text.contains(&format!("loaded: {}", b.display())), "{text}");
    assert!(
        text.contains(&format!("ChainDlls: [{}]", c.display())),
        "{text}"
    );
}

#[test]
fn listed_order_keeps_the_multi_sz_order() {
    let dir = tempfile::tempdir().unwrap();
    let reg = write_params(dir.path(), "p.reg", &[so("noop"), so("trace")], Some(1));
    let out = check(&["--reg", &reg, "--load-order", "listed"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(&format!("loaded: {}", so("noop"))));
    assert!(out
        .stdout
        .contains(&format!("ChainDlls: [{}]", so("trace"))));
}

#[test]
fn relative_dll_paths_resolve_against_the_reg_files_folder() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("callouts")).unwrap();
    fs::copy(so("trace"), dir.path().join("callouts/t.so")).unwrap();
    let reg = write_params(dir.path(), "p.reg", &["callouts/t.so".to_string()], Some(1));
    // Run from another folder so the relative path only works against the .reg file's folder.
    let out = check_in(Path::new("/"), &["--reg", &reg], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("loaded: callouts/t.so"));
}

#[test]
fn callouts_disabled_or_absent_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let off = write_params(dir.path(), "off.reg", &[so("trace")], Some(0));
    let out = check(&["--reg", &off], &[]);
    assert_ne!(out.code, 0);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("CalloutEnabled is 0"), "{}", out.stderr);
    assert!(
        out.stderr.contains("off.reg:"),
        "names file:line: {}",
        out.stderr
    );

    let absent = write_params(dir.path(), "absent.reg", &[so("trace")], None);
    let out = check(&["--reg", &absent], &[]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("CalloutEnabled is absent"),
        "{}",
        out.stderr
    );
}

#[test]
fn no_loadable_dll_names_each_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.so").display().to_string();
    let reg = write_params(
        dir.path(),
        "p.reg",
        &[missing.clone(), so("faulty")],
        Some(1),
    );
    let out = check(&["--reg", &reg], &[("CALLOUT_FAULTY_ENTRY", "5")]);
    assert_ne!(out.code, 0);
    let err = out.stderr;
    assert!(err.contains("no callout DLL could be loaded"), "{err}");
    assert!(
        err.contains(&missing) && err.contains("cannot load"),
        "{err}"
    );
    assert!(err.contains("No such file"), "OS error text: {err}");
    assert!(err.contains("returned 5"), "{err}");
}

#[test]
fn unreadable_bad_header_and_wrong_type_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(&["--reg", "/nonexistent/x.reg"], &[]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("/nonexistent/x.reg"), "{}", out.stderr);

    let bad = dir.path().join("bad.reg");
    fs::write(&bad, "REGEDIT5\r\n").unwrap();
    let out = check(&["--reg", &bad.display().to_string()], &[]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("bad.reg"), "{}", out.stderr);

    let wrong = dir.path().join("wrong.reg");
    fs::write(
        &wrong,
        "Windows Registry Editor Version 5.00\r\n\r\n\
         [HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Services\\DHCPServer\\Parameters]\r\n\
         \"CalloutDlls\"=\"trace.so\"\r\n\"CalloutEnabled\"=dword:00000001\r\n",
    )
    .unwrap();
    let out = check(&["--reg", &wrong.display().to_string()], &[]);
    assert_ne!(out.code, 0);
    let err = out.stderr;
    assert!(
        err.contains("wrong.reg:4") && err.contains("CalloutDlls is REG_SZ"),
        "{err}"
    );
}

#[test]
fn skipped_reg_lines_are_warnings_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("w.reg");
    fs::write(
        &reg,
        format!(
            "Windows Registry Editor Version 5.00\n\n\
             [HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Services\\DHCPServer\\Parameters]\n\
             this line is garbage\n\
             \"CalloutDlls\"=hex(7):{}\n\"CalloutEnabled\"=dword:00000001\n",
            utf16_multi_sz_hex(&so("trace"))
        ),
    )
    .unwrap();
    let out = check(&["--reg", &reg.display().to_string()], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("w.reg:4:"), "{}", out.stdout);
}

fn utf16_multi_sz_hex(s: &str) -> String {
    let mut units: Vec<u16> = s.encode_utf16().collect();
    units.extend([0, 0]);
    units
        .iter()
        .flat_map(|u| u.to_le_bytes())
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn scopes_alone_are_checked_and_reported() {
    let root = support::repo_root();
    let lab = root.join("fixtures/config/lab.xml").display().to_string();
    let out = check(&["--scopes", &lab], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("scope 198.18.0.0/24"), "{}", out.stdout);

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.txt");
    fs::write(
        &bad,
        "Dhcp Server \\\\lab add scope 198.18.0.0 255.255.255.0 \"a\" \"\"\n\
         Dhcp Server \\\\lab Scope 198.18.0.0 Add iprange 198.18.0.50 198.18.0.10\n",
    )
    .unwrap();
    let out = check(&["--scopes", &bad.display().to_string()], &[]);
    assert_ne!(out.code, 0);
    assert!(out.stdout.contains("bad.txt:2"), "{}", out.stdout);
}

#[test]
fn the_shipped_example_checks_clean() {
    let build = Command::new(support::repo_root().join("scripts/build-callouts.sh"));
    let built = command_run(run_bounded(build, Duration::from_secs(300)));
    assert_eq!(built.code, 0, "{}", built.stderr);
    let root = support::repo_root();
    let out = check(
        &[
            "--reg",
            &root
                .join("fixtures/config/example.reg")
                .display()
                .to_string(),
            "--scopes",
            &root.join("fixtures/config/lab.xml").display().to_string(),
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

#[test]
fn parameters_calloutd_ignores_get_one_warning_each_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("export.reg");
    // As a real `reg export` of DHCPServer\Parameters carries them, beside the callout values.
    let text = format!(
        "Windows Registry Editor Version 5.00\r\n\r\n\
         [HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Services\\DHCPServer\\Parameters]\r\n\
         \"CalloutDlls\"=hex(7):{}\r\n\
         \"CalloutEnabled\"=dword:00000001\r\n\
         \"DatabaseLoggingFlag\"=dword:00000001\r\n\
         \"RestoreFlag\"=dword:00000000\r\n\
         \"DebugFlag\"=dword:00000000\r\n\
         \"APIProtocolSupport\"=dword:00000005\r\n\
         \"DisableRogueDetection\"=dword:00000001\r\n\
         \"DhcpLogDiskSpaceCheckInterval\"=dword:00000032\r\n",
        utf16_multi_sz_hex(&so("trace"))
    );
    fs::write(&reg, text).unwrap();
    let out = check(&["--reg", reg.to_str().unwrap()], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    for (value, line, why) in [
        ("DatabaseLoggingFlag", 6, "JET"),
        ("RestoreFlag", 7, "never restores a backup at start"),
        ("DebugFlag", 8, "RUST_LOG"),
        ("APIProtocolSupport", 9, "RPC"),
        ("DisableRogueDetection", 10, "Active Directory"),
    ] {
        let warning = out
            .stdout
            .lines()
            .find(|l| l.starts_with("warning: ") && l.contains(&format!(" {value} is ignored: ")))
            .unwrap_or_else(|| panic!("no warning for {value}:\n{}", out.stdout));
        assert!(
            warning.contains(&format!("export.reg:{line}:")),
            "{warning}"
        );
        assert!(warning.contains(why), "{warning}");
    }
    // Used values, DhcpLogDiskSpaceCheckInterval among them, are not reported.
    for used in [
        "CalloutDlls",
        "CalloutEnabled",
        "DhcpLogDiskSpaceCheckInterval",
    ] {
        assert!(
            !out.stdout.contains(&format!(" {used} is ignored")),
            "{used} reported:\n{}",
            out.stdout
        );
    }
}
