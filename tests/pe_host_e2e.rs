//! Windows DLLs (PE) on Linux (issue 13 item 4): calloutd hosts them with `calloutd.exe`'s host
//! mode under wine, over the pipe-doorbell transport (crates/callout/src/isolate/bells.rs).
//!
//! - The transport itself, without wine: the native host driven through the pipes makes exactly
//!   the calls the futex transport makes (same arguments, same results), so what a PE DLL sees
//!   under wine depends on wine only.
//! - A PE DLL with no `calloutd.exe` (or no wine) is a load failure naming what to install.
//! - Under wine (skipped without wine, mingw-w64 or `calloutd.exe` unless
//!   `CALLOUTD_REQUIRE_WINE=1`): `calloutd test` runs the win32chain scenario on the PE builds of
//!   the callouts and records the same hook trace as on the `.so` builds.

// Unix only: PE hosting under wine is what the Linux calloutd does; on Windows a PE DLL loads
// in-process.
#![cfg(unix)]

mod support;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use calloutd_callout::isolate::pe::PeHost;
use calloutd_callout::isolate::{IsolateOptions, IsolatedCallout};
use calloutd_callout::{CalloutConfig, HeldLocks, LoadOrder};
use dhcpssdk::{ClientType, ControlCode, DropReason, GiveCode};
use serde_json::Value;
use support::{
    calloutd_bin, command_run, fixture, repo_root, run_bounded, stop_wineserver, wine_calloutd_exe,
};

/// JSON lines of a file, with the pointer-valued fields (which differ between processes) removed.
fn lines_without_pointers(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            if let Some(map) = v.as_object_mut() {
                map.retain(|k, _| !k.starts_with("ctx") || k == "ctx_valid");
            }
            v
        })
        .collect()
}

/// Loads the trace callout in an isolated host (with `pe_host`'s transport when given), runs one
/// exchange's hooks, and returns what the calls gave back and the callout's own log.
fn exchange(dir: &Path, pe_host: Option<PeHost>) -> (Vec<String>, Vec<Value>) {
    let log = dir.join("trace.jsonl");
    let mut options = IsolateOptions::new(calloutd_bin(), vec!["callout-host".into()]);
    options.env = vec![("CALLOUT_TRACE_FILE".into(), log.clone().into())];
    options.slots = 2;
    options.pe_host = pe_host;
    let config = CalloutConfig {
        dlls: vec![fixture("trace").display().to_string()],
        enabled: Some(1),
        base_dir: None,
        order: LoadOrder::Listed,
        strict_permissions: false,
    };
    let loaded = IsolatedCallout::load(&config, options);
    let callout = loaded
        .callout
        .unwrap_or_else(|| panic!("{}", loaded.report.summary()));
    let discover = std::fs::read(repo_root().join("fixtures/packets/discover.bin")).unwrap();
    let server = Ipv4Addr::new(198, 18, 0, 1);
    let offered = Ipv4Addr::new(198, 18, 0, 10);
    let mut results = Vec::new();
    results.push(format!(
        "{:?}",
        callout.control(ControlCode::Start, HeldLocks::Service)
    ));
    let mut packet = discover.clone();
    let mut ctx = 0usize;
    results.push(format!(
        "{:?}",
        callout.new_pkt(&mut packet, server, &mut ctx, HeldLocks::None)
    ));
    results.push(format!(
        "{:?}",
        callout.handle_options(
            &packet,
            ctx,
            Some(Ipv4Addr::new(198, 18, 0, 0)),
            HeldLocks::None
        )
    ));
    results.push(format!(
        "{:?}",
        callout.address_offer(
            &packet,
            GiveCode::New,
            server,
            offered,
            ClientType::Dhcp,
            3600,
            ctx,
            HeldLocks::Lease
        )
    ));
    let mut reply = discover.clone();
    results.push(format!(
        "{:?}",
        callout.pkt_send(&mut reply, server, ctx, HeldLocks::None)
    ));
    results.push(format!("{} reply bytes", reply.len()));
    results.push(format!(
        "{:?}",
        callout.pkt_drop(
            &mut packet,
            DropReason::Processed,
            server,
            ctx,
            HeldLocks::None
        )
    ));
    results.push(format!(
        "{:?}",
        callout.delete_client(offered, &discover[28..34], HeldLocks::Lease)
    ));
    results.push(format!(
        "{:?}",
        callout.control(ControlCode::Stop, HeldLocks::Service)
    ));
    drop(callout);
    (results, lines_without_pointers(&log))
}

#[test]
fn the_pipe_doorbell_transport_makes_the_same_calls_as_the_futex_transport() {
    let futex_dir = tempfile::tempdir().unwrap();
    let pipes_dir = tempfile::tempdir().unwrap();
    let (futex_results, futex_log) = exchange(futex_dir.path(), None);
    // The native host on the pipes: what wine adds is only the Windows side of the same bytes.
    let native = PeHost {
        launcher: Vec::new(),
        program: calloutd_bin(),
        windows_paths: false,
    };
    let (pipe_results, pipe_log) = exchange(pipes_dir.path(), Some(native));
    assert_eq!(pipe_results, futex_results);
    assert_eq!(pipe_log, futex_log);
    let hooks: Vec<&str> = pipe_log
        .iter()
        .map(|l| l["hook"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        hooks,
        [
            "Entry",
            "Control",
            "NewPkt",
            "HandleOptions",
            "AddressOffer",
            "PktSend",
            "PktDrop",
            "DeleteClient",
            "Control"
        ]
    );
    // The context NewPkt made reached the later hooks of the packet through the pipes too.
    for line in &pipe_log[3..7] {
        assert_eq!(line["ctx_valid"], true, "{line}");
    }
}

/// Wine, mingw-w64 or calloutd.exe missing: a failure under `CALLOUTD_REQUIRE_WINE=1`, else a
/// skip.
fn skip_without(what: &str) {
    if std::env::var_os("CALLOUTD_REQUIRE_WINE").is_some_and(|v| v == "1") {
        panic!("{what} is required (CALLOUTD_REQUIRE_WINE=1) but not available");
    }
    eprintln!("note: {what} not available, PE hosting test skipped");
}

/// A `.reg` naming the win32chain callouts with `suffix` in `folder` (empty: bare names, resolved
/// in `calloutd test --callouts DIR`).
fn win32chain_reg(dir: &Path, folder: &str, suffix: &str) -> PathBuf {
    let names = ["win32chain", "win32chain2", "win32chain_trace"];
    let mut bytes = Vec::new();
    for name in names {
        for unit in format!("{folder}{name}{suffix}").encode_utf16() {
            bytes.extend(unit.to_le_bytes());
        }
        bytes.extend([0, 0]);
    }
    bytes.extend([0, 0]);
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let reg = dir.join(format!("win32chain{suffix}.reg"));
    std::fs::write(
        &reg,
        format!(
            "Windows Registry Editor Version 5.00\r\n\r\n\
             [HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Services\\DHCPServer\\Parameters]\r\n\
             \"CalloutDlls\"=hex(7):{}\r\n\"CalloutEnabled\"=dword:00000001\r\n",
            hex.join(",")
        ),
    )
    .unwrap();
    reg
}

/// The shipped win32chain scenario with its `.reg` replaced.
fn scenario_with_reg(dir: &Path, reg: &Path) -> PathBuf {
    let text =
        std::fs::read_to_string(repo_root().join("fixtures/scenarios/win32chain.toml")).unwrap();
    let text = text.replace(
        "reg = \"win32chain.reg\"",
        &format!("reg = {:?}", reg.display().to_string()),
    );
    let text = text.replace(
        "scopes = \"dora.txt\"",
        &format!(
            "scopes = {:?}",
            repo_root()
                .join("fixtures/scenarios/dora.txt")
                .display()
                .to_string()
        ),
    );
    let path = dir.join(format!(
        "{}.toml",
        reg.file_stem().unwrap().to_string_lossy()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `calloutd test` on `scenario` with the callouts of `callouts`; returns the hook names of
/// its trace.
fn run_scenario(
    scenario: &Path,
    callouts: &Path,
    trace: &Path,
    env: &[(&str, &Path)],
) -> Vec<String> {
    let mut cmd = Command::new(calloutd_bin());
    cmd.arg("test")
        .arg("--callouts")
        .arg(callouts)
        .arg("--trace")
        .arg(trace)
        .arg(scenario);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let run = command_run(run_bounded(cmd, Duration::from_secs(300)));
    assert_eq!(
        run.code,
        0,
        "{}:\n{}{}",
        scenario.display(),
        run.stdout,
        run.stderr
    );
    std::fs::read_to_string(trace)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let mut name = v["hook"].as_str().unwrap_or_default().to_string();
            if let Some(code) = v["code"].as_u64() {
                name.push_str(&format!("({code})"));
            }
            name
        })
        .collect()
}

/// `calloutd.exe` for wine: `$CALLOUTD_WINDOWS_HOST`, or the build's wine copy.
fn windows_exe() -> PathBuf {
    std::env::var_os("CALLOUTD_WINDOWS_HOST").map_or_else(wine_calloutd_exe, PathBuf::from)
}

#[test]
fn a_pe_callout_without_calloutd_exe_is_a_load_failure_naming_what_is_missing() {
    let Some(windows) = calloutd_fixtures::build_windows().expect("building the Windows DLLs")
    else {
        skip_without("mingw-w64");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let reg = win32chain_reg(dir.path(), &format!("{}/", windows.display()), ".dll");
    let missing = dir.path().join("no-such/calloutd.exe");
    let mut cmd = Command::new(calloutd_bin());
    cmd.arg("check")
        .arg("--reg")
        .arg(&reg)
        .env("CALLOUTD_WINDOWS_HOST", &missing);
    let run = command_run(run_bounded(cmd, Duration::from_secs(60)));
    assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("win32chain.dll is a Windows DLL (PE)") && all.contains("calloutd.exe"),
        "{all}"
    );
    assert!(all.contains(&missing.display().to_string()), "{all}");

    // No wine at all: the error names the package.
    let mut cmd = Command::new(calloutd_bin());
    cmd.arg("check")
        .arg("--reg")
        .arg(&reg)
        .env("CALLOUTD_WINE", dir.path().join("no-such/wine64"));
    let run = command_run(run_bounded(cmd, Duration::from_secs(60)));
    assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("win32chain.dll is a Windows DLL (PE): hosting it on Linux needs wine")
            && all.contains("apt-get install wine64"),
        "{all}"
    );
}

#[test]
fn a_pe_callout_under_wine_gives_the_same_trace_as_the_so_build() {
    let Some(windows) = calloutd_fixtures::build_windows().expect("building the Windows DLLs")
    else {
        skip_without("mingw-w64");
        return;
    };
    if calloutd_callout::isolate::pe::find_wine().is_none() {
        skip_without("wine");
        return;
    }
    let exe = windows_exe();
    if !exe.is_file() {
        skip_without(&format!("{} (run scripts/build-windows.sh)", exe.display()));
        return;
    }
    let linux = calloutd_fixtures::build_all().expect("building the test callouts");
    let dir = tempfile::tempdir().unwrap();
    let prefix = tempfile::tempdir().unwrap();
    let _stop_wineserver = WineServer(prefix.path().to_path_buf());
    let so_scenario = scenario_with_reg(dir.path(), &win32chain_reg(dir.path(), "", ".so"));
    let pe_scenario = scenario_with_reg(dir.path(), &win32chain_reg(dir.path(), "", ".dll"));
    let so_trace = dir.path().join("so.jsonl");
    let pe_trace = dir.path().join("pe.jsonl");
    let so_hooks = run_scenario(&so_scenario, &linux, &so_trace, &[]);
    let pe_hooks = run_scenario(
        &pe_scenario,
        &windows,
        &pe_trace,
        &[
            ("CALLOUTD_WINDOWS_HOST", &exe),
            ("WINEPREFIX", prefix.path()),
        ],
    );
    assert!(so_hooks.len() >= 10, "{so_hooks:?}");
    assert_eq!(pe_hooks, so_hooks);
}

/// Stops the test prefix's wineserver when the test ends, also when it fails.
struct WineServer(PathBuf);

impl Drop for WineServer {
    fn drop(&mut self) {
        stop_wineserver(&self.0);
    }
}
