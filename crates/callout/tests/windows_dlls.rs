//! The Windows builds of the test callouts, run under wine by a minimal Windows host
//! (`fixtures/callouts/windows-host/host.c`, built with mingw-w64): the chain callout loads the trace
//! callout named in its UTF-16 `ChainDlls`, and every hook is called once with Windows' ABI. This is
//! the check that the same C sources behave as DLLs, which calloutd itself (a Linux program) cannot
//! load. Needs mingw-w64 and wine; skipped without them unless `CALLOUTD_REQUIRE_WINE=1` (set by
//! scripts/test.sh, which installs both).

// Unix only: runs the PE callouts under Wine from Linux.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The wine loader, if installed (Debian's `wine64` package puts it outside PATH).
fn find_wine() -> Option<PathBuf> {
    let packaged = Path::new("/usr/lib/wine/wine64");
    if packaged.exists() {
        return Some(packaged.to_path_buf());
    }
    ["wine64", "wine"].into_iter().find_map(|name| {
        Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    })
}

/// Missing tools: a failure when they are required, else a note and `true` (skip).
fn skip_without(what: &str) -> bool {
    if std::env::var_os("CALLOUTD_REQUIRE_WINE").is_some_and(|v| v == "1") {
        panic!("{what} is required (CALLOUTD_REQUIRE_WINE=1) but not installed");
    }
    eprintln!("note: {what} not installed, Windows DLL test skipped");
    true
}

/// A path as the Windows program sees it (wine maps `/` to drive Z:).
fn windows_path(path: &Path) -> String {
    format!("Z:{}", path.display())
}

/// Stops the prefix's wineserver (it outlives the program for a few seconds), so nothing is left
/// running once the test ends, also when it fails.
struct Prefix {
    dir: tempfile::TempDir,
    wineserver: PathBuf,
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let _ = Command::new(&self.wineserver)
            .arg("-k")
            .env("WINEPREFIX", self.dir.path())
            .status();
    }
}

/// What the Windows host printed and the JSON lines the callouts wrote.
struct HostRun {
    stdout: String,
    lines: Vec<Value>,
}

/// Builds the Windows host and runs it under wine with the mingw builds of `dlls` (the first is
/// loaded, the rest are its ChainDlls); `None` (skipped) without mingw-w64 or wine.
fn run_host(dlls: &[&str]) -> Option<HostRun> {
    let Some(built_dlls) = calloutd_fixtures::build_windows().unwrap() else {
        skip_without("mingw-w64");
        return None;
    };
    let Some(wine) = find_wine() else {
        skip_without("wine");
        return None;
    };
    let work = tempfile::tempdir().unwrap();
    let host = work.path().join("host.exe");
    let built = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-O2", "-Wall", "-Werror", "-I", dhcpssdk::INCLUDE_DIR, "-o"])
        .arg(&host)
        .arg(Path::new(calloutd_fixtures::SOURCE_DIR).join("windows-host/host.c"))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "building the Windows host failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let wineserver = wine.with_file_name(match wine.file_name() {
        Some(name) if name == "wine64" => "wineserver64",
        _ => "wineserver",
    });
    let prefix = Prefix {
        dir: tempfile::tempdir().unwrap(),
        wineserver: if wineserver.exists() {
            wineserver
        } else {
            PathBuf::from("wineserver")
        },
    };
    let trace = work.path().join("trace.jsonl");
    // `timeout` bounds the run: wine's first start in a new prefix takes several seconds.
    let run = Command::new("timeout")
        .args(["-k", "5", "180"])
        .arg(&wine)
        .arg(&host)
        .args(
            dlls.iter()
                .map(|name| windows_path(&built_dlls.join(format!("{name}.dll")))),
        )
        .env("WINEPREFIX", prefix.dir.path())
        .env("WINEDEBUG", "-all")
        // No Mono or Gecko installer prompts in a new prefix.
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
        .env("CALLOUT_TRACE_FILE", windows_path(&trace))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "the Windows host failed ({}):\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let lines = std::fs::read_to_string(&trace)
        .expect("the callouts wrote their file")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    Some(HostRun { stdout, lines })
}

#[test]
fn chain_and_trace_dlls_run_every_hook_under_wine() {
    let Some(HostRun { stdout, lines }) = run_host(&["chain", "trace"]) else {
        return;
    };
    // The chain DLL returns a table holding every hook (its own forwarders).
    assert!(
        stdout.contains(
            "hooks: Control NewPkt PktDrop PktSend AddressDel AddressOffer HandleOptions DeleteClient"
        ),
        "{stdout}"
    );

    let calls: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["dll"].as_str().unwrap().into(),
                l["hook"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("trace", "Entry"),
        ("chain", "Entry"),
        ("trace", "Control"),
        ("trace", "NewPkt"),
        ("trace", "HandleOptions"),
        ("trace", "AddressOffer"),
        ("trace", "PktSend"),
        ("trace", "AddressDel"),
        ("trace", "PktDrop"),
        ("trace", "DeleteClient"),
        ("trace", "Control"),
    ]
    .iter()
    .map(|(dll, hook)| (dll.to_string(), hook.to_string()))
    .collect();
    assert_eq!(calls, expected);

    // The chained DLL was loaded from ChainDlls and got an empty chain and a zeroed table itself.
    assert_eq!(lines[0]["version"], 0);
    assert_eq!(lines[0]["chain"], serde_json::json!([]));
    assert_eq!(lines[0]["table_was_zero"], true);
    assert_eq!(lines[1]["children"][0]["result"], 0);
    // Arguments crossed the Windows ABI intact.
    assert_eq!(lines[2]["code"], 1);
    assert_eq!(lines[3]["ip"], "198.18.0.1");
    assert_eq!(lines[3]["size"], 300);
    assert_eq!(lines[3]["xid"], 0x1122_3344);
    assert_eq!(lines[4]["message_type"], 1);
    assert_eq!(lines[4]["hw_address"], "02:00:00:00:00:01");
    assert_eq!(lines[4]["scope_id"], "198.18.0.0");
    assert_eq!(lines[5]["code"], 0x3000_0001);
    assert_eq!(lines[5]["alt"], "198.18.0.20");
    assert_eq!(lines[5]["addr_type"], 0x3000_0004);
    assert_eq!(lines[5]["lease"], 3600);
    assert_eq!(lines[6]["code"], 0x1000_0000);
    assert_eq!(lines[7]["code"], 0x2000_0003);
    assert_eq!(lines[8]["code"], 11);
    assert_eq!(lines[9]["hw_address"], "02:00:00:00:00:01");
    assert_eq!(lines[10]["code"], 2);
    // The packet context NewPkt made reached every later hook of the packet.
    let ctx = &lines[3]["ctx_out"];
    for line in &lines[4..=8] {
        assert_eq!(&line["ctx"], ctx, "{line}");
        assert_eq!(line["ctx_valid"], true, "{line}");
    }
}

/// The Win32-style chain loader (fixtures/callouts/win32chain.c, the source tests/win32compat_e2e.rs
/// runs as a `.so`) as PE DLLs in Windows' own loader: DllMain runs on load and at exit, and every
/// hook reaches the trace DLL through both LoadLibraryW'd levels.
#[test]
fn win32chain_dlls_chain_every_hook_under_wine_with_dllmain() {
    let Some(HostRun { stdout, lines }) =
        run_host(&["win32chain", "win32chain2", "win32chain_trace"])
    else {
        return;
    };
    assert!(
        stdout.contains(
            "hooks: Control NewPkt PktDrop PktSend AddressDel AddressOffer HandleOptions DeleteClient"
        ),
        "{stdout}"
    );
    let field = |line: &Value, key: &str| line[key].as_str().unwrap_or_default().to_string();
    let events: Vec<(String, String)> = lines
        .iter()
        .map(|l| (field(l, "dll"), field(l, "hook")))
        .collect();
    let expected_start = [
        ("win32chain", "DllMain"),
        ("win32chain2", "DllMain"),
        ("win32chain_trace", "Entry"),
        ("win32chain2", "Entry"),
        ("win32chain", "Entry"),
    ];
    assert_eq!(events.len(), expected_start.len() + 9 + 2, "{lines:#?}");
    for (got, want) in events.iter().zip(expected_start) {
        assert_eq!((got.0.as_str(), got.1.as_str()), want, "{lines:#?}");
    }
    assert_eq!(field(&lines[0], "self"), "win32chain.dll");
    assert_eq!(field(&lines[1], "self"), "win32chain2.dll");
    assert_eq!(field(&lines[3], "next"), "win32chain_trace.dll");
    assert_eq!(field(&lines[4], "next"), "win32chain2.dll");
    // The host calls each of the eight hooks once, Control twice (START, STOP).
    let reached: Vec<String> = lines[5..14]
        .iter()
        .filter(|l| field(l, "dll") == "win32chain_trace")
        .map(|l| field(l, "hook"))
        .collect();
    assert_eq!(
        reached,
        [
            "Control",
            "NewPkt",
            "HandleOptions",
            "AddressOffer",
            "PktSend",
            "AddressDel",
            "PktDrop",
            "DeleteClient",
            "Control"
        ]
    );
    // The host exits without FreeLibrary: DLL_PROCESS_DETACH comes at process exit, where the
    // loader (not the callout) unloads the rest, so neither frees its next DLL.
    let mut detached: Vec<String> = lines[14..]
        .iter()
        .map(|l| {
            assert_eq!(field(l, "reason"), "PROCESS_DETACH", "{l}");
            assert_eq!(l["forwarded"], 9, "{l}");
            assert_eq!(l["freed"], false, "{l}");
            field(l, "dll")
        })
        .collect();
    detached.sort();
    assert_eq!(detached, ["win32chain", "win32chain2"]);
}
