//! calloutd.exe (built by scripts/build-windows.sh) under Wine, with the mingw-built PE callouts from
//! the same C sources as the Linux `.so` files (issue 13, item 3):
//! - `calloutd.exe check --reg` on a UTF-16 `.reg` loads the PE trace callout, also named through a
//!   `%VAR%` from the environment, and `check --registry live` finds it in Wine's registry;
//! - `calloutd.exe serve` inside a network namespace answers a DORA from the Linux-side client
//!   (relay mode) with the PE trace callout loaded, and its `--trace` shows the same hook sequence
//!   as the native Linux calloutd with `trace.so` for the same exchange, and stops cleanly on the
//!   console's Ctrl-C; its lease database lands under `--data-dir` (`DatabasePath` unset), never
//!   in Wine's `C:\windows\System32\dhcp`;
//! - Ctrl-Break and console close stop it cleanly too: the stop is logged, the callout sees
//!   Control(STOP) last, the exit status is 0 and the ACKed lease is in the database. Wine 8 cannot
//!   raise these two events itself (GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT) fails with
//!   ERROR_INVALID_HANDLE even within one console; wineserver answers every event but Ctrl-C and
//!   Ctrl-Break with STATUS_NOT_IMPLEMENTED; Wine's conhost never sends CTRL_CLOSE_EVENT), so
//!   scripts/wine/ctrlevent.c delivers them as Windows does: a new thread in the process at
//!   kernelbase's CtrlRoutine with the event, which runs the handlers calloutd installed;
//! - a NULL write in the faulty PE callout's NewPkt is caught in-process, reported as event 1031,
//!   and the next client is still served.
//!
//! One test function, so the Wine prefix is created once per run, in a temporary folder, and
//! removed (its wineserver stopped) at the end, also when an assertion fails.
//!
//! Needs root (network namespaces), wine, mingw-w64 and the exe; without them the test says so and
//! skips, unless `CALLOUTD_REQUIRE_WINE=1` (scripts/test.sh sets it, installs wine and mingw-w64, and
//! runs scripts/build-windows.sh first), which makes it fail instead.

// Unix only: drives calloutd.exe under Wine from Linux, inside network namespaces.
#![cfg(unix)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

const RELAY: &str = "198.18.0.1";
const RELAY_LINK: &str = "relay0";

/// Missing tools: a failure when they are required, else a note and `true` (skip).
fn skip_without(what: &str) -> bool {
    if std::env::var_os("CALLOUTD_REQUIRE_WINE").is_some_and(|v| v == "1") {
        panic!("{what} is required (CALLOUTD_REQUIRE_WINE=1) but missing");
    }
    eprintln!("note: {what} missing, Wine end-to-end test skipped");
    true
}

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

/// The Wine copy of calloutd.exe (next to its bcryptprimitives.dll stub): `CALLOUTD_WINDOWS_EXE`, or
/// where scripts/build-windows.sh puts it in this build's target dir.
fn windows_exe() -> PathBuf {
    std::env::var_os("CALLOUTD_WINDOWS_EXE").map_or_else(wine_calloutd_exe, PathBuf::from)
}

/// A path as the Windows program sees it (wine maps `/` to drive Z:).
fn windows_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// The Wine prefix of this run; dropping it stops its wineserver and removes the folder.
struct Wine {
    loader: PathBuf,
    wineserver: PathBuf,
    prefix: tempfile::TempDir,
}

impl Wine {
    fn new(loader: PathBuf) -> Wine {
        let wineserver = loader.with_file_name(match loader.file_name() {
            Some(name) if name == "wine64" => "wineserver64",
            _ => "wineserver",
        });
        Wine {
            wineserver: if wineserver.exists() {
                wineserver
            } else {
                PathBuf::from("wineserver")
            },
            loader,
            prefix: tempfile::tempdir().expect("wine prefix dir"),
        }
    }

    /// `wine EXE` with this prefix and a quiet, prompt-free environment.
    fn command(&self, ns: Option<&NetNs>, exe: &Path) -> Command {
        let mut cmd = match ns {
            Some(ns) => ns.command(&self.loader),
            None => Command::new(&self.loader),
        };
        cmd.arg(exe)
            .env("WINEPREFIX", self.prefix.path())
            .env("WINEDEBUG", "-all")
            // No Mono or Gecko installer prompts in a new prefix.
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
        cmd
    }

    /// Stops the prefix's wineserver (and every Wine process of it) and waits for that.
    fn stop_server(&self) {
        let _ = Command::new(&self.wineserver)
            .arg("-k")
            .env("WINEPREFIX", self.prefix.path())
            .status();
        let _ = Command::new(&self.wineserver)
            .arg("-w")
            .env("WINEPREFIX", self.prefix.path())
            .status();
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        self.stop_server();
    }
}

/// The lab scopes without conflict detection (no pings to wait for in this test).
fn quick_scopes(dir: &Path) -> PathBuf {
    let text = fs::read_to_string(repo_root().join("fixtures/config/lab-netsh.txt")).unwrap();
    let quick: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("DetectConflictRetry"))
        .collect();
    let path = dir.join("lab-quick.txt");
    fs::write(&path, quick.join("\n")).unwrap();
    path
}

/// A namespace with the relay address on a veth link (as serve_e2e.rs sets it up).
fn lab_namespace(tag: &str) -> NetNs {
    let ns = NetNs::new(tag).expect("create the namespace");
    ns.ip(&[
        "link", "add", RELAY_LINK, "type", "veth", "peer", "name", "relay1",
    ])
    .expect("relay link");
    ns.ip(&["link", "set", RELAY_LINK, "up"]).unwrap();
    ns.ip(&["link", "set", "relay1", "up"]).unwrap();
    ns.add_addr(&format!("{RELAY}/24"), RELAY_LINK)
        .expect("relay address");
    ns
}

/// One DORA through the test relay; the ACK's JSON.
fn dora(ns: &NetNs, mac: &str, server_log: &dyn Fn() -> String) -> Value {
    let run = run_client(
        ns,
        "dora",
        10,
        &[
            "--server",
            "127.0.0.1:67",
            "--giaddr",
            &format!("{RELAY}:67"),
            "--mac",
            mac,
        ],
    );
    assert_eq!(
        run.code,
        0,
        "client dora failed: {}\nserver log:\n{}",
        run.stderr,
        server_log()
    );
    run.json
}

/// The hook sequence of a server `--trace` file: `hook` or `hook(code)`.
fn hook_sequence(trace: &Path) -> Vec<String> {
    read_jsonl(trace)
        .iter()
        .map(|r| {
            let hook = r["hook"].as_str().unwrap_or("?").to_string();
            match r.get("code").and_then(Value::as_u64) {
                Some(code) => format!("{hook}(0x{code:x})"),
                None => hook,
            }
        })
        .collect()
}

/// A running `serve` (native or under Wine) in its own namespace, with its trace file.
struct Served {
    ns: NetNs,
    server: LoggedChild,
    trace: PathBuf,
    data: PathBuf,
    label: String,
}

impl Served {
    /// Starts `serve` in a fresh namespace with `env` set and waits until it serves.
    fn start(
        dir: &Path,
        label: &str,
        reg: &Path,
        scopes: &Path,
        wine: Option<(&Wine, &Path)>,
        env: &[(&str, &str)],
    ) -> Served {
        let ns = lab_namespace(label);
        let trace = dir.join(format!("{label}-trace.jsonl"));
        let data = dir.join(format!("{label}-data"));
        let log = dir.join(format!("{label}.log"));
        let path = |p: &Path| match wine {
            Some(_) => windows_path(p),
            None => p.display().to_string(),
        };
        let args = [
            "serve".to_string(),
            "--listen".into(),
            "127.0.0.1:67".into(),
            "--workers".into(),
            "1".into(),
            "--control".into(),
            "off".into(),
            "--reg".into(),
            path(reg),
            "--scopes".into(),
            path(scopes),
            "--data-dir".into(),
            path(&data),
            "--trace".into(),
            path(&trace),
        ];
        let mut cmd = match wine {
            Some((wine, exe)) => wine.command(Some(&ns), exe),
            None => ns.command(&calloutd_bin()),
        };
        cmd.args(&args).env("RUST_LOG", "info");
        for (name, value) in env {
            cmd.env(name, value);
        }
        let mut server = LoggedChild::spawn(cmd, log).expect("start the server");
        let serving = poll(Duration::from_secs(120), Duration::from_millis(50), || {
            let text = server.log_text();
            if text.contains("serving") {
                return Some(Ok(()));
            }
            match server.exited() {
                Ok(Some(status)) => Some(Err(format!("{label} exited with {status}:\n{text}"))),
                _ => None,
            }
        });
        match serving {
            Some(Ok(())) => {}
            Some(Err(e)) => panic!("{e}"),
            None => panic!("{label} did not serve within 120 s:\n{}", server.log_text()),
        }
        Served {
            ns,
            server,
            trace,
            data,
            label: label.to_string(),
        }
    }

    /// One DORA for `mac`: the ACK's JSON.
    fn dora(&self, mac: &str) -> Value {
        dora(&self.ns, mac, &|| self.server.log_text())
    }

    /// Stops it the way a console user would (SIGINT: Linux's handler; under Wine, the console's
    /// Ctrl-C event, the Windows handler) and checks it stopped cleanly; the trace's hooks.
    fn stop(mut self) -> (Vec<String>, String) {
        let status = self.server.stop_with("INT").expect("stop the server");
        let log = self.server.log_text();
        assert!(
            status.success(),
            "{} did not stop cleanly ({status}):\n{log}",
            self.label
        );
        (hook_sequence(&self.trace), log)
    }

    /// Under Wine: delivers the console control `event` (`break`, `close`) with `ctrlevent` (see the
    /// module comment) and checks it stopped cleanly, with `logged` in its log; the trace's hooks.
    fn stop_with_console_event(
        mut self,
        wine: &Wine,
        ctrlevent: &Path,
        event: &str,
        logged: &str,
    ) -> (Vec<String>, String) {
        let mut deliver = wine.command(Some(&self.ns), ctrlevent);
        deliver.args([event, "calloutd.exe"]);
        let out = run_bounded(deliver, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "ctrlevent {event} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.server.log_text()
        );
        let status = self.server.wait_exit(Duration::from_secs(30));
        let log = self.server.log_text();
        let status = status.unwrap_or_else(|e| panic!("{}: {e}\n{log}", self.label));
        assert!(
            status.success(),
            "{} did not stop cleanly on {event} ({status}):\n{log}",
            self.label
        );
        assert!(
            log.contains(&format!("{logged}: stopping")),
            "{}: the stop is not logged as {logged}:\n{log}",
            self.label
        );
        (hook_sequence(&self.trace), log)
    }

    /// The lease database where an unset `DatabasePath` puts it: under `--data-dir`, on Windows too.
    fn lease_db(&self) -> PathBuf {
        self.data.join("Windows/System32/dhcp/dhcp.sqlite3")
    }
}

/// The addresses stored in the lease database `db`.
fn stored_leases(db: &Path) -> Vec<String> {
    assert!(db.is_file(), "no lease database at {}", db.display());
    let reader = rusqlite::Connection::open(db).unwrap();
    let mut stmt = reader.prepare("SELECT ip FROM leases").unwrap();
    stmt.query_map([], |row| row.get::<_, u32>(0))
        .unwrap()
        .map(|ip| std::net::Ipv4Addr::from(ip.unwrap()).to_string())
        .collect()
}

/// Builds scripts/wine/ctrlevent.c with mingw-w64 into `dir`.
fn build_ctrlevent(dir: &Path) -> PathBuf {
    let exe = dir.join("ctrlevent.exe");
    let out = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(repo_root().join("scripts/wine/ctrlevent.c"))
        .output()
        .expect("run x86_64-w64-mingw32-gcc");
    assert!(
        out.status.success(),
        "building ctrlevent.exe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Serves one DORA under Wine, stops it with the console control `event` and checks the clean stop:
/// logged as `logged`, Control(STOP) the callout's last hook, the ACKed lease stored.
fn stop_by_console_event(
    dir: &Path,
    wine: &Wine,
    exe: &Path,
    ctrlevent: &Path,
    (reg, scopes): (&Path, &Path),
    (event, logged, mac): (&str, &str, &str),
) {
    wine.stop_server();
    let served = Served::start(
        dir,
        &format!("wine-{event}"),
        reg,
        scopes,
        Some((wine, exe)),
        &[],
    );
    let ack = served.dora(mac);
    assert_eq!(ack["message_type"], "ACK", "{ack}");
    let ip = ack["yiaddr"]
        .as_str()
        .expect("the ACK's yiaddr")
        .to_string();
    let db = served.lease_db();
    let (hooks, _) = served.stop_with_console_event(wine, ctrlevent, event, logged);
    // DHCP_CONTROL_STOP is 2 (docs/hooks.md).
    assert_eq!(
        hooks.last().map(String::as_str),
        Some("Control(0x2)"),
        "{event}: the callout's last hook is not Control(STOP): {hooks:?}"
    );
    let stored = stored_leases(&db);
    assert!(
        stored.contains(&ip),
        "{event}: the ACKed lease {ip} is not stored: {stored:?}"
    );
}

/// Runs `serve` in a fresh namespace, one DORA, stop; the trace's hooks.
fn serve_one_dora(
    dir: &Path,
    label: &str,
    reg: &Path,
    scopes: &Path,
    wine: Option<(&Wine, &Path)>,
) -> Vec<String> {
    let served = Served::start(dir, label, reg, scopes, wine, &[]);
    let ack = served.dora("02:00:00:00:13:01");
    assert_eq!(ack["message_type"], "ACK", "{ack}");
    let ip = ack["yiaddr"]
        .as_str()
        .expect("the ACK's yiaddr")
        .to_string();
    let db = served.lease_db();
    let hooks = served.stop().0;
    // No DatabasePath in the registry: the database goes under --data-dir on Linux and on
    // Windows alike (docs/config.md section 3).
    let stored = stored_leases(&db);
    assert!(
        stored.contains(&ip),
        "{label}: the ACKed lease {ip} is not in {}: {stored:?}",
        db.display()
    );
    hooks
}

#[test]
fn calloutd_exe_under_wine_checks_and_serves_with_a_pe_callout() {
    if !have_root(&current_test()) {
        return;
    }
    let Some(dlls) = calloutd_fixtures::build_windows().unwrap() else {
        skip_without("mingw-w64");
        return;
    };
    let Some(loader) = find_wine() else {
        skip_without("wine");
        return;
    };
    let exe = windows_exe();
    if !exe.exists() {
        skip_without(&format!("{} (run scripts/build-windows.sh)", exe.display()));
        return;
    }
    let wine = Wine::new(loader);
    let dir = tempfile::tempdir().unwrap();

    // check --reg: a UTF-16 .reg naming the PE trace callout by its Windows path.
    let reg = dir.path().join("pe.reg");
    let pe_trace = windows_path(&dlls.join("trace.dll"));
    let bytes = calloutd_registry::write_parameters_reg(std::slice::from_ref(&pe_trace), Some(1));
    assert_eq!(&bytes[..2], &[0xFF, 0xFE], "a UTF-16LE .reg");
    fs::write(&reg, bytes).unwrap();
    let mut check = wine.command(None, &exe);
    check.args(["check", "--reg", &windows_path(&reg)]);
    let out = run_bounded(check, Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "calloutd.exe check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("loaded: ") && stdout.contains("trace.dll"),
        "{stdout}\n{stderr}"
    );
    // A CalloutDlls entry with a %VAR% reference, expanded from the real environment.
    let var_reg = dir.path().join("var.reg");
    fs::write(
        &var_reg,
        calloutd_registry::write_parameters_reg(&[r"%CALLOUTD_PE_DIR%\trace.dll"], Some(1)),
    )
    .unwrap();
    let mut var_check = wine.command(None, &exe);
    var_check
        .args(["check", "--reg", &windows_path(&var_reg)])
        .env("CALLOUTD_PE_DIR", windows_path(&dlls));
    let out = run_bounded(var_check, Duration::from_secs(180));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "check with %CALLOUTD_PE_DIR% failed:\n{text}"
    );
    assert!(
        text.contains(&format!("({})", windows_path(&dlls.join("trace.dll")))),
        "the entry was expanded: {text}"
    );

    // --registry live: the same Parameters imported into the prefix's registry with Wine's reg.exe.
    let mut import = Command::new(&wine.loader);
    import
        .args(["reg", "import", &windows_path(&reg)])
        .env("WINEPREFIX", wine.prefix.path())
        .env("WINEDEBUG", "-all");
    let out = run_bounded(import, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "wine reg import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut live = wine.command(None, &exe);
    live.args(["check", "--registry", "live"]);
    let out = run_bounded(live, Duration::from_secs(180));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "check --registry live failed:\n{text}"
    );
    assert!(
        text.contains("loaded: ") && text.contains("trace.dll"),
        "{text}"
    );

    // The wineserver runs in the namespace of the first Wine process: the serve below needs its
    // own, inside the test namespace (Wine creates sockets in the wineserver).
    wine.stop_server();

    // serve: the same DORA natively with trace.so and under Wine with trace.dll.
    let scopes = quick_scopes(dir.path());
    let linux_reg = dir.path().join("linux.reg");
    write_callout_reg(&linux_reg, &[fixture("trace")]);
    let native = serve_one_dora(dir.path(), "native", &linux_reg, &scopes, None);
    let under_wine = serve_one_dora(dir.path(), "wine", &reg, &scopes, Some((&wine, &exe)));
    assert!(
        native.iter().any(|h| h.starts_with("AddressOffer")),
        "{native:?}"
    );
    assert_eq!(
        under_wine, native,
        "the PE callout under calloutd.exe saw another hook sequence than trace.so under calloutd"
    );
    // ... and nothing in Wine's C:\windows\System32\dhcp, where Microsoft's server keeps its files.
    let system_dhcp = wine.prefix.path().join("drive_c/windows/system32/dhcp");
    assert!(
        !system_dhcp.join("dhcp.sqlite3").exists(),
        "calloutd.exe wrote its lease database into {}",
        system_dhcp.display()
    );

    // Ctrl-Break and console close: the same clean stop as Ctrl-C.
    let ctrlevent = build_ctrlevent(dir.path());
    for (event, logged, mac) in [
        ("break", "Ctrl-Break", "02:00:00:00:13:0b"),
        ("close", "console closed", "02:00:00:00:13:0c"),
    ] {
        stop_by_console_event(
            dir.path(),
            &wine,
            &exe,
            &ctrlevent,
            (&reg, &scopes),
            (event, logged, mac),
        );
    }

    // A NULL write in NewPkt for one client, in-process under calloutd.exe: the exception shim
    // reports it as event 1031 with the hook, that packet gets no answer, and the next client is
    // served by the same process with the same callout.
    wine.stop_server();
    let faulty_reg = dir.path().join("faulty.reg");
    let pe_faulty = windows_path(&dlls.join("faulty.dll"));
    fs::write(
        &faulty_reg,
        calloutd_registry::write_parameters_reg(std::slice::from_ref(&pe_faulty), Some(1)),
    )
    .unwrap();
    let served = Served::start(
        dir.path(),
        "wine-faulty",
        &faulty_reg,
        &scopes,
        Some((&wine, &exe)),
        &[
            ("CALLOUT_FAULTY_CRASH_HOOK", "NewPkt"),
            ("CALLOUT_FAULTY_MAC", "020000001366"),
        ],
    );
    let faulted = run_client(
        &served.ns,
        "discover",
        3,
        &[
            "--server",
            "127.0.0.1:67",
            "--giaddr",
            &format!("{RELAY}:67"),
            "--mac",
            "02:00:00:00:13:66",
        ],
    );
    assert_ne!(
        faulted.code,
        0,
        "the faulting client got an answer: {}\n{}",
        faulted.stdout,
        served.server.log_text()
    );
    let ack = served.dora("02:00:00:00:13:67");
    assert_eq!(ack["message_type"], "ACK", "{ack}");
    let (hooks, log) = served.stop();
    let event = log
        .lines()
        .find(|l| l.contains("event 1031"))
        .unwrap_or_else(|| panic!("no event 1031 in the log:\n{log}"));
    assert!(
        event.contains("NewPkt") && event.contains("0xC0000005"),
        "event 1031 names the hook and the access violation: {event}"
    );
    assert!(
        hooks.iter().filter(|h| h.as_str() == "NewPkt").count() >= 2,
        "both clients reached the callout: {hooks:?}"
    );
}
