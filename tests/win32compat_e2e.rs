//! A callout written the way Windows authors write them, with Win32 calls only
//! (`fixtures/callouts/win32chain.c` through the opt-in `win32compat.h`, docs/hooks.md section 12):
//! the same source builds unchanged as a Linux `.so`, which the real binary runs (`calloutd test
//! --in-process` with fixtures/scenarios/win32chain.toml), and as a PE DLL with mingw-w64 (run
//! under wine by crates/callout/tests/windows_dlls.rs).

// Unix only: starts the Linux calloutd with .so fixture callouts, mostly inside network namespaces.
#![cfg(unix)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{calloutd_bin, command_run, repo_root, run_bounded};

/// JSON lines of a file.
fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn field<'a>(line: &'a Value, key: &str) -> &'a str {
    line[key].as_str().unwrap_or_default()
}

#[test]
fn a_win32_style_chain_loader_runs_as_a_so_forwarding_every_hook_with_dllmain_on_load_and_unload() {
    let callouts: PathBuf = calloutd_fixtures::build_all().expect("building the test callouts");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("callouts.jsonl");
    let trace = dir.path().join("trace.jsonl");
    let scenario = repo_root().join("fixtures/scenarios/win32chain.toml");
    let mut cmd = Command::new(calloutd_bin());
    // In-process, as Microsoft DHCP Server hosts it: the DLL is unloaded (DllMain's
    // PROCESS_DETACH) when the run ends; the isolated host is killed rather than unloaded.
    cmd.arg("test")
        .arg("--in-process")
        .arg("--callouts")
        .arg(&callouts)
        .arg("--trace")
        .arg(&trace)
        .arg(&scenario)
        .env("CALLOUT_TRACE_FILE", &log);
    let run = command_run(run_bounded(cmd, Duration::from_secs(120)));
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("1 passed, 0 failed, 0 invalid"),
        "{}",
        run.stdout
    );

    let lines = json_lines(&log);
    let events: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (field(l, "dll"), field(l, "hook")))
        .collect();
    // Load: DllMain(PROCESS_ATTACH) of each Win32-style DLL as it is loaded (calloutd loads
    // win32chain, whose LoadLibraryW loads win32chain2), then the entry points innermost first.
    assert_eq!(
        events[..5],
        [
            ("win32chain", "DllMain"),
            ("win32chain2", "DllMain"),
            ("win32chain_trace", "Entry"),
            ("win32chain2", "Entry"),
            ("win32chain", "Entry"),
        ],
        "{lines:#?}"
    );
    for (line, own) in [(&lines[0], "win32chain.so"), (&lines[1], "win32chain2.so")] {
        assert_eq!(field(line, "reason"), "PROCESS_ATTACH", "{line}");
        // GetModuleFileNameA on the HINSTANCE DllMain got names the library itself.
        assert_eq!(field(line, "self"), own, "{line}");
    }
    assert_eq!(lines[2]["chain"], serde_json::json!([]));
    assert_eq!(lines[2]["table_was_zero"], true);
    assert_eq!(field(&lines[3], "next"), "win32chain_trace.so");
    assert_eq!(field(&lines[4], "next"), "win32chain2.so");
    for line in &lines[3..5] {
        assert_eq!(line["result"], 0, "{line}");
        assert_eq!(line["hooks"], 8, "{line}");
    }

    // Every hook calloutd called reached the trace callout through both loaders, in order.
    let server_hooks: Vec<String> = json_lines(&trace)
        .iter()
        .map(|r| field(r, "hook").to_string())
        .collect();
    let reached: Vec<String> = lines[5..]
        .iter()
        .filter(|l| field(l, "dll") == "win32chain_trace")
        .map(|l| field(l, "hook").to_string())
        .collect();
    assert!(server_hooks.len() >= 10, "{server_hooks:?}");
    assert_eq!(reached, server_hooks);
    assert_eq!(reached.first().map(String::as_str), Some("Control"));
    assert_eq!(reached.last().map(String::as_str), Some("Control"));

    // Unload: DllMain(PROCESS_DETACH) of win32chain, whose FreeLibrary unloads win32chain2 (its
    // own DllMain runs then), after the last hook; each counted every call it forwarded.
    let detach: Vec<&Value> = lines
        .iter()
        .filter(|l| field(l, "hook") == "DllMain" && field(l, "reason") == "PROCESS_DETACH")
        .collect();
    assert_eq!(detach.len(), 2, "{lines:#?}");
    assert_eq!(lines.len(), 5 + reached.len() + 2, "{lines:#?}");
    assert_eq!(field(detach[0], "dll"), "win32chain");
    assert_eq!(field(detach[1], "dll"), "win32chain2");
    for line in detach {
        assert_eq!(line["forwarded"], reached.len(), "{line}");
        assert_eq!(line["freed"], true, "{line}");
    }
}

/// mingw-w64 missing: a failure under `CALLOUTD_REQUIRE_WINE=1` (scripts/test.sh), else a skip.
fn skip_without(what: &str) {
    if std::env::var_os("CALLOUTD_REQUIRE_WINE").is_some_and(|v| v == "1") {
        panic!("{what} is required (CALLOUTD_REQUIRE_WINE=1) but not installed");
    }
    eprintln!("note: {what} not installed, PE build test skipped");
}

#[test]
fn the_same_win32_style_source_builds_as_a_pe_dll_exporting_the_entry_point() {
    let Some(windows) = calloutd_fixtures::build_windows().expect("building the Windows DLLs")
    else {
        skip_without("mingw-w64 (x86_64-w64-mingw32-gcc)");
        return;
    };
    for name in ["win32chain", "win32chain2"] {
        let path = windows.join(format!("{name}.dll"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(&bytes[..2], b"MZ", "{}", path.display());
        let pe = u32::from_le_bytes(bytes[0x3c..0x40].try_into().unwrap()) as usize;
        assert_eq!(&bytes[pe..pe + 4], b"PE\0\0", "{}", path.display());
        // COFF header: machine x86-64, characteristics with IMAGE_FILE_DLL.
        assert_eq!(u16::from_le_bytes([bytes[pe + 4], bytes[pe + 5]]), 0x8664);
        let characteristics = u16::from_le_bytes([bytes[pe + 22], bytes[pe + 23]]);
        assert_ne!(
            characteristics & 0x2000,
            0,
            "{} is not a DLL",
            path.display()
        );
        let export = b"DhcpServerCalloutEntry\0";
        assert!(
            bytes.windows(export.len()).any(|w| w == export),
            "{} does not name DhcpServerCalloutEntry",
            path.display()
        );
    }
}
