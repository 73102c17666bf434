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

#[test]
fn chain_and_trace_dlls_run_every_hook_under_wine() {
    let Some(dlls) = calloutd_fixtures::build_windows().unwrap() else {
        skip_without("mingw-w64");
        return;
    };
    let Some(wine) = find_wine() else {
        skip_without("wine");
        return;
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
        .arg(windows_path(&dlls.join("chain.dll")))
        .arg(windows_path(&dlls.join("trace.dll")))
        .env("WINEPREFIX", prefix.dir.path())
        .env("WINEDEBUG", "-all")
        // No Mono or Gecko installer prompts in a new prefix.
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
        .env("CALLOUT_TRACE_FILE", windows_path(&trace))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the Windows host failed ({}):\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    // The chain DLL returns a table holding every hook (its own forwarders).
    assert!(
        stdout.contains(
            "hooks: Control NewPkt PktDrop PktSend AddressDel AddressOffer HandleOptions DeleteClient"
        ),
        "{stdout}"
    );

    let lines: Vec<Value> = std::fs::read_to_string(&trace)
        .expect("the trace callout wrote its file")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
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
