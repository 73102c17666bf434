//! `calloutd serve` and `calloutd check` (the Linux binary) with a Windows DLL (PE) in
//! `CalloutDlls` (issue 13 item 4): calloutd hosts it with `calloutd.exe`'s host mode under wine,
//! through real UDP inside a network namespace of each test's own (server on 127.0.0.1:67, the
//! test relay on 198.18.0.1:67, as in isolate_e2e.rs).
//!
//! - `check` loads the PE build of the trace callout through the wine host, naming it as
//!   `CalloutDlls` does, with who can write it checked on Linux (`--strict-dll-permissions` loads
//!   it from a private folder, refuses it from an open one), and `serve` logs event 1033 for it; `serve` answers the same exchanges
//!   with the same hook calls as with the `.so` build: the server's `--trace` and what the DLL
//!   logged of every argument agree field by field, all but timings, thread ids and pointers.
//! - Faults of the PE build of the faulty callout under `serve`: a NULL write in NewPkt is an
//!   exception the host's shim ends, as Microsoft's DHCP Server does (event 1031 with the hook
//!   and the packet; the packet is dropped; the same host serves the next clients); an abort()
//!   in PktSend ends the host (event 1031, the host is restarted, the next clients are served);
//!   a hang in HandleOptions is ended by the hook timeout (event 1031, killed, restarted). An
//!   exception outside every hook (in the entry point) ends the host at once, reported as event
//!   1032 naming the access violation, without wine's debugger.
//!
//! Skipped without wine, mingw-w64 or `calloutd.exe` (scripts/build-windows.sh) unless
//! `CALLOUTD_REQUIRE_WINE=1`, and without root (namespaces) for the `serve` parts. Each test uses
//! a wine prefix of its own in a temporary folder, whose wineserver is stopped at the end.

// Unix only: PE hosting under wine is what the Linux calloutd does.
#![cfg(unix)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

const RELAY: &str = "198.18.0.1";
const BAD_MAC: &str = "02:00:00:00:0b:ad";
const BAD_HEX: &str = "020000000bad";
const BAD_DASHED: &str = "02-00-00-00-0b-ad";
const OK_MAC: &str = "02:00:00:00:00:01";

/// Wine, mingw-w64 or calloutd.exe missing: a failure under `CALLOUTD_REQUIRE_WINE=1`, else a
/// skip.
fn skip_without(what: &str) {
    if std::env::var_os("CALLOUTD_REQUIRE_WINE").is_some_and(|v| v == "1") {
        panic!("{what} is required (CALLOUTD_REQUIRE_WINE=1) but not available");
    }
    eprintln!("note: {what} not available, PE hosting test skipped");
}

/// `calloutd.exe` for wine: `$CALLOUTD_WINDOWS_HOST`, or the build's wine copy.
fn windows_exe() -> PathBuf {
    std::env::var_os("CALLOUTD_WINDOWS_HOST").map_or_else(wine_calloutd_exe, PathBuf::from)
}

/// What a PE test needs: the PE fixture DLLs, calloutd.exe and a wine prefix of its own (its
/// wineserver stopped on drop, also when the test fails).
struct Wine {
    dlls: PathBuf,
    exe: PathBuf,
    prefix: tempfile::TempDir,
}

impl Wine {
    /// `None` (after the skip note) when something is missing.
    fn find() -> Option<Wine> {
        let Some(dlls) = calloutd_fixtures::build_windows().expect("building the Windows DLLs")
        else {
            skip_without("mingw-w64");
            return None;
        };
        if calloutd_callout::isolate::pe::find_wine().is_none() {
            skip_without("wine");
            return None;
        }
        let exe = windows_exe();
        if !exe.is_file() {
            skip_without(&format!("{} (run scripts/build-windows.sh)", exe.display()));
            return None;
        }
        Some(Wine {
            dlls,
            exe,
            prefix: tempfile::tempdir().expect("wine prefix folder"),
        })
    }

    /// The variables that point calloutd at calloutd.exe and this prefix.
    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "CALLOUTD_WINDOWS_HOST".into(),
                self.exe.display().to_string(),
            ),
            (
                "WINEPREFIX".into(),
                self.prefix.path().display().to_string(),
            ),
        ]
    }

    /// A copy of the PE build of `name` in `dir` (the file the test names in CalloutDlls).
    fn dll(&self, name: &str, dir: &Path) -> PathBuf {
        let copy = dir.join(format!("{name}.dll"));
        fs::copy(self.dlls.join(format!("{name}.dll")), &copy).expect("copy the PE DLL");
        copy
    }

    /// `calloutd check --reg REG` with this prefix (and `envs`), bounded: wine makes the prefix on
    /// its first start.
    fn check(&self, reg: &Path, envs: &[(&str, &str)]) -> CommandRun {
        self.run_check(reg, &[], envs)
    }

    /// `calloutd check --reg REG ARGS` with this prefix.
    fn check_args(&self, reg: &Path, args: &[&str]) -> CommandRun {
        self.run_check(reg, args, &[])
    }

    fn run_check(&self, reg: &Path, args: &[&str], envs: &[(&str, &str)]) -> CommandRun {
        let mut cmd = Command::new(calloutd_bin());
        cmd.arg("check").arg("--reg").arg(reg).args(args);
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        command_run(run_bounded(cmd, Duration::from_secs(300)))
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        stop_wineserver(self.prefix.path());
    }
}

/// A namespace with the relay link, and the quick lab scopes (no conflict detection pings).
struct Lab {
    ns: NetNs,
    dir: tempfile::TempDir,
    scopes: PathBuf,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let ns = NetNs::new(tag).expect("create the namespace");
        ns.ip(&[
            "link", "add", "relay0", "type", "veth", "peer", "name", "relay1",
        ])
        .expect("relay link");
        ns.ip(&["link", "set", "relay0", "up"]).unwrap();
        ns.ip(&["link", "set", "relay1", "up"]).unwrap();
        ns.add_addr(&format!("{RELAY}/24"), "relay0").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let text = fs::read_to_string(repo_root().join("fixtures/config/lab-netsh.txt")).unwrap();
        let quick: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("DetectConflictRetry"))
            .collect();
        let scopes = dir.path().join("lab-quick.txt");
        fs::write(&scopes, quick.join("\n")).unwrap();
        Lab { ns, dir, scopes }
    }

    /// Starts `calloutd serve` with `dll` as the callout and its own lease database, `--trace`
    /// and callout log (`run` names them); waits for it to serve.
    fn serve(&self, run: &str, dll: &Path, args: &[&str], envs: &[(String, String)]) -> Served {
        let reg = self.dir.path().join(format!("{run}.reg"));
        write_callout_reg(&reg, &[dll.to_path_buf()]);
        let path = |p: PathBuf| p.display().to_string();
        let trace = self.dir.path().join(format!("{run}-trace.jsonl"));
        let callout_log = self.dir.path().join(format!("{run}-callout.jsonl"));
        let mut all = vec![
            "--reg".to_string(),
            path(reg),
            "--scopes".to_string(),
            path(self.scopes.clone()),
            "--lease-db".to_string(),
            path(self.dir.path().join(format!("{run}.sqlite3"))),
            "--trace".to_string(),
            path(trace.clone()),
            "--listen".to_string(),
            "127.0.0.1:67".to_string(),
            "--workers".to_string(),
            "2".to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let log_env = path(callout_log.clone());
        let mut env: Vec<(&str, &str)> = vec![("CALLOUT_TRACE_FILE", log_env.as_str())];
        env.extend(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let log = self.dir.path().join(format!("{run}.log"));
        // The PE host is a wine start: seconds on a busy machine.
        let server =
            ServerProcess::start_within(&self.ns, &all, log, &env, Duration::from_secs(180))
                .unwrap_or_else(|e| panic!("calloutd serve ({run}): {e}"));
        Served {
            server: Some(server),
            trace,
            callout_log,
        }
    }

    /// A client exchange through the relay, bounded.
    fn client(&self, verb: &str, args: &[&str], timeout_s: u64) -> CommandRun {
        let transport = ["--server", "127.0.0.1:67", "--giaddr", "198.18.0.1:67"];
        run_client(&self.ns, verb, timeout_s, &[&transport[..], args].concat())
    }

    /// `calloutd ctl ARGS` (JSON) in the namespace.
    fn ctl_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["ctl"];
        all.extend_from_slice(args);
        let run = run_calloutd(&self.ns, &all, Duration::from_secs(20));
        assert_eq!(run.code, 0, "ctl {args:?}: {}", run.stderr);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("ctl {args:?}: {e}"))
    }
}

/// A running server and its two logs.
struct Served {
    server: Option<ServerProcess>,
    trace: PathBuf,
    callout_log: PathBuf,
}

impl Served {
    fn log(&self) -> String {
        self.server
            .as_ref()
            .map(ServerProcess::log_text)
            .unwrap_or_default()
    }

    fn wait_log(&mut self, needle: &str) {
        let server = self.server.as_mut().expect("server running");
        if let Err(e) = server.wait_for_log(needle, Duration::from_secs(30)) {
            panic!("{needle:?} not logged: {e}\n{}", server.log_text());
        }
    }

    /// Stops the server (it must exit 0); its log, `--trace` and the callout's log.
    fn stop(&mut self) -> (String, Vec<Value>, Vec<Value>) {
        let mut server = self.server.take().expect("server running");
        let status = server.stop().expect("stop the server");
        let log = server.log_text();
        assert!(
            status.success(),
            "calloutd serve exit status {status}:\n{log}"
        );
        let callout = if self.callout_log.exists() {
            read_jsonl(&self.callout_log)
        } else {
            Vec::new()
        };
        (log, read_jsonl(&self.trace), callout)
    }
}

/// `record` without what differs between runs by nature: timings (and the slow-hook reports they
/// cause), thread ids, and the pointer values of contexts (whether a context is the DLL's own,
/// `ctx_valid`, stays).
fn comparable(record: &Value) -> Value {
    let mut r = record.clone();
    if let Some(map) = r.as_object_mut() {
        for field in ["dur_us", "ts_us", "thread", "ctx", "ctx_in", "ctx_out"] {
            map.remove(field);
        }
        if let Some(Value::Array(list)) = map.get_mut("misbehaviour") {
            list.retain(|m| m["kind"] != "slow-hook");
            if list.is_empty() {
                map.remove("misbehaviour");
            }
        }
    }
    r
}

/// The same exchanges, one at a time with fixed xids: two DORAs, a renewal, an INFORM, a
/// release; then stops the server. Returns (log, server trace, callout log).
fn traffic(
    lab: &Lab,
    run: &str,
    dll: &Path,
    envs: &[(String, String)],
) -> (String, Vec<Value>, Vec<Value>) {
    let mut served = lab.serve(run, dll, &[], envs);
    let expect = |r: CommandRun, what: &str, served: &Served| {
        assert_eq!(r.code, 0, "{run}: {what}: {}\n{}", r.stderr, served.log());
        r
    };
    let a = "02:00:00:00:00:a1";
    let b = "02:00:00:00:00:b2";
    let dora_a = lab.client("dora", &["--mac", a, "--xid", "0x1501"], 10);
    let ip_a = expect(dora_a, "dora a", &served).json["yiaddr"]
        .as_str()
        .unwrap()
        .to_string();
    let dora_b = lab.client(
        "dora",
        &["--mac", b, "--xid", "0x1502", "--hostname", "bee"],
        10,
    );
    let ip_b = expect(dora_b, "dora b", &served).json["yiaddr"]
        .as_str()
        .unwrap()
        .to_string();
    let renew = lab.client(
        "renew",
        &["--mac", a, "--ciaddr", &ip_a, "--xid", "0x1503"],
        10,
    );
    expect(renew, "renew a", &served);
    let inform = lab.client(
        "inform",
        &["--mac", a, "--ciaddr", &ip_a, "--xid", "0x1504"],
        10,
    );
    expect(inform, "inform a", &served);
    let release = lab.client(
        "release",
        &["--mac", b, "--ciaddr", &ip_b, "--xid", "0x1505"],
        10,
    );
    expect(release, "release b", &served);
    // 2 DORAs (4 packets), renew, inform, release.
    wait_processed(&served.callout_log, 7, Duration::from_secs(30));
    served.stop()
}

#[test]
fn check_and_serve_host_a_pe_callout_with_the_same_calls_as_the_so_build() {
    let Some(wine) = Wine::find() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let trace_dll = wine.dll("trace", dir.path());

    // check: loaded through the wine host (which makes the prefix), named as configured.
    let reg = dir.path().join("pe.reg");
    write_callout_reg(&reg, std::slice::from_ref(&trace_dll));
    let log = dir.path().join("check-callout.jsonl");
    let log_env = log.display().to_string();
    let run = wine.check(&reg, &[("CALLOUT_TRACE_FILE", &log_env)]);
    let text = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(run.code, 0, "check: {text}");
    assert!(
        text.contains(&format!("loaded: {0} ({0})", trace_dll.display())),
        "{text}"
    );
    assert!(
        text.contains(
            "hooks: DhcpControlHook, DhcpNewPktHook, DhcpPktDropHook, DhcpPktSendHook, \
                       DhcpAddressDelHook, DhcpAddressOfferHook, DhcpHandleOptionsHook, \
                       DhcpDeleteClientHook"
        ),
        "{text}"
    );
    assert!(text.contains("check: OK"), "{text}");
    // Who can write the DLL is checked on Linux, where the file is (not "not checked", as the
    // Windows host would say), so --strict-dll-permissions judges the Linux file.
    assert!(!text.contains("was not checked"), "{text}");
    let strict = |what: &str| {
        let run = wine.check_args(&reg, &["--strict-dll-permissions"]);
        (run.code, format!("{what}: {}{}", run.stdout, run.stderr))
    };
    let (code, out) = strict("a private folder");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("loaded: ") && !out.contains("can write it"),
        "{out}"
    );
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let (code, out) = strict("a folder every user can write");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("--strict-dll-permissions") && out.contains("every user can write it"),
        "{out}"
    );
    // The DLL itself ran under wine: its entry point logged the call.
    let entry = read_jsonl(&log);
    assert_eq!(
        entry.first().map(|e| &e["hook"]),
        Some(&Value::from("Entry")),
        "{entry:?}"
    );

    if !have_root(&current_test()) {
        return;
    }
    let lab = Lab::new("pe-same");
    let (so_log, so_trace, so_callout) = traffic(&lab, "so", &fixture("trace"), &[]);
    let (pe_log, pe_trace, pe_callout) = traffic(&lab, "pe", &trace_dll, &wine.env());
    assert!(
        pe_log.contains("is a Windows DLL: hosted by") && pe_log.contains("under "),
        "the PE DLL went through the wine host: {pe_log}"
    );
    assert!(
        pe_log.contains(&format!(
            "event 1033: {}: loaded (DhcpServerCalloutEntry returned 0)",
            trace_dll.display()
        )),
        "{pe_log}"
    );
    assert!(so_trace.len() > 20, "a real trace: {so_trace:#?}\n{so_log}");
    let hooks = |t: &[Value]| -> Vec<String> { t.iter().map(hook_signature).collect() };
    assert_eq!(hooks(&pe_trace), hooks(&so_trace), "the same hook sequence");
    for (so, pe) in so_trace.iter().zip(&pe_trace) {
        assert_eq!(comparable(pe), comparable(so), "server trace, PE vs .so");
    }
    // What the DLL saw: every argument it logged (buffers, options, addresses, codes), with
    // PktContext its own throughout.
    assert_eq!(
        pe_callout.len(),
        so_callout.len(),
        "callout logs: same length"
    );
    for (so, pe) in so_callout.iter().zip(&pe_callout) {
        assert_eq!(comparable(pe), comparable(so), "callout log, PE vs .so");
    }
    assert!(
        pe_callout
            .iter()
            .filter(|r| r.get("ctx_valid").is_some())
            .all(|r| r["ctx_valid"] == true),
        "PktContext round-trips through the wine host"
    );
}

/// How the faulty PE callout misbehaves for BAD_MAC, once (CALLOUT_FAULTY_ONCE).
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// A NULL write in NewPkt: an access violation the host's exception shim ends.
    NullWriteInNewPkt,
    /// abort() in PktSend: the host ends (exit 3).
    AbortInPktSend,
    /// HandleOptions never returns.
    HangInHandleOptions,
}

/// Runs one fault under `serve` with the faulty PE callout; checks the report, the policy and
/// that both clients are served after it.
fn fault_scenario(lab: &Lab, wine: &Wine, dll: &Path, fault: Fault) {
    let tag = format!("{fault:?}");
    let once = lab.dir.path().join(format!("{tag}.once"));
    let mut envs = wine.env();
    envs.push(("CALLOUT_FAULTY_MAC".into(), BAD_HEX.into()));
    envs.push(("CALLOUT_FAULTY_ONCE".into(), once.display().to_string()));
    let hook = match fault {
        Fault::NullWriteInNewPkt => {
            envs.push(("CALLOUT_FAULTY_CRASH_HOOK".into(), "NewPkt".into()));
            "NewPkt"
        }
        Fault::AbortInPktSend => {
            envs.push(("CALLOUT_FAULTY_CRASH_HOOK".into(), "PktSend".into()));
            envs.push(("CALLOUT_FAULTY_CRASH_KIND".into(), "abort".into()));
            "PktSend"
        }
        Fault::HangInHandleOptions => {
            envs.push(("CALLOUT_FAULTY_HANG_HOOK".into(), "HandleOptions".into()));
            "HandleOptions"
        }
    };
    let mut served = lab.serve(&tag, dll, &["--hook-timeout-ms", "2500"], &envs);
    // The faulting client gets no answer for that packet.
    let bad = lab.client("dora", &["--mac", BAD_MAC], 8);
    assert_ne!(
        bad.code, 0,
        "{tag}: the faulting packet was answered: {}",
        bad.stdout
    );
    let restarted = !matches!(fault, Fault::NullWriteInNewPkt);
    if restarted {
        served.wait_log("back in the loop");
    }
    // The next clients are served: another one, and the faulting one again (the fault was once).
    let ok = lab.client("dora", &["--mac", OK_MAC], 10);
    assert_eq!(
        ok.code,
        0,
        "{tag}: dora {OK_MAC}: {}\n{}",
        ok.stderr,
        served.log()
    );
    let again = lab.client("dora", &["--mac", BAD_MAC], 10);
    assert_eq!(
        again.code,
        0,
        "{tag}: dora {BAD_MAC} again: {}\n{}",
        again.stderr,
        served.log()
    );

    let stats = lab.ctl_json(&["stats"]);
    let engine = &stats["engine"];
    let counted = |name: &str| engine[name].as_u64().unwrap_or(0);
    let (log, trace, _) = served.stop();
    let event = log
        .lines()
        .find(|l| l.contains("event 1031"))
        .unwrap_or_else(|| panic!("{tag}: no event 1031 in the log:\n{log}"));
    assert!(event.contains(hook), "{tag}: the hook named: {event}");
    assert!(
        event.contains(&format!("chaddr {BAD_DASHED}")) && event.contains("xid 0x"),
        "{tag}: the packet named: {event}"
    );
    let word = match fault {
        Fault::NullWriteInNewPkt => {
            // Microsoft's behaviour: the exception is ignored, the callout stays in the same host.
            assert!(
                event.contains("the callout raised exception 0xC0000005")
                    && event.contains("the server has ignored this exception"),
                "{tag}: {event}"
            );
            assert_eq!(counted("callout_host_restarts"), 0, "{tag}: {stats}");
            assert_eq!(counted("callout_crashes"), 0, "{tag}: {stats}");
            "0xC0000005"
        }
        Fault::AbortInPktSend => {
            assert!(
                event.contains("faulty.dll crashed in PktSend (exit 3)"),
                "{tag}: {event}"
            );
            assert_eq!(counted("callout_host_restarts"), 1, "{tag}: {stats}");
            assert_eq!(counted("callout_crashes"), 1, "{tag}: {stats}");
            "crash"
        }
        Fault::HangInHandleOptions => {
            assert!(
                event.contains("faulty.dll hung in HandleOptions (no return within 2500 ms"),
                "{tag}: {event}"
            );
            assert_eq!(counted("callout_host_restarts"), 1, "{tag}: {stats}");
            assert_eq!(counted("callout_hangs"), 1, "{tag}: {stats}");
            "hang"
        }
    };
    // Wine's debugger never ran: no backtrace, no crash dialog.
    assert!(
        !log.contains("winedbg") && !log.contains("starting debugger"),
        "{tag}: {log}"
    );
    let faulted: Vec<&Value> = trace
        .iter()
        .filter(|r| r["hook"] == hook && r["fault"].as_str().is_some_and(|f| f.contains(word)))
        .collect();
    assert_eq!(
        faulted.len(),
        1,
        "{tag}: one faulted {hook} in the trace: {trace:#?}"
    );
    // Reported as the DLL's misbehaviour too, also when the server carried on (the exception).
    let kind = if word == "hang" { "hang" } else { "crash" };
    assert_eq!(
        faulted[0]["misbehaviour"][0]["kind"], kind,
        "{tag}: {}",
        faulted[0]
    );
    assert_eq!(
        counted(&format!("misbehaviour_{kind}")),
        1,
        "{tag}: {stats}"
    );
    // Both clients went through the callout after the fault: three NewPkt for the DISCOVERs and
    // REQUESTs that were answered, besides the faulting one.
    let new_pkts = trace.iter().filter(|r| r["hook"] == "NewPkt").count();
    assert!(new_pkts >= 5, "{tag}: {new_pkts} NewPkt calls: {trace:#?}");
}

#[test]
fn serve_survives_a_pe_callouts_null_write_abort_and_hang() {
    let Some(wine) = Wine::find() else {
        return;
    };
    if !have_root(&current_test()) {
        return;
    }
    let lab = Lab::new("pe-fault");
    let dll = wine.dll("faulty", lab.dir.path());
    for fault in [
        Fault::NullWriteInNewPkt,
        Fault::AbortInPktSend,
        Fault::HangInHandleOptions,
    ] {
        fault_scenario(&lab, &wine, &dll, fault);
    }
}

#[test]
fn an_exception_outside_every_hook_ends_the_host_at_once_without_wines_debugger() {
    let Some(wine) = Wine::find() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dll = wine.dll("faulty", dir.path());
    let reg = dir.path().join("faulty.reg");
    write_callout_reg(&reg, std::slice::from_ref(&dll));
    // The entry point writes to NULL: no hook call (and so no shim) is around it.
    let run = wine.check(&reg, &[("CALLOUT_FAULTY_ENTRY_CRASH", "1")]);
    let text = format!("{}{}", run.stdout, run.stderr);
    assert_ne!(run.code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "event 1032: {}: exception while loading: the callout host died (exception \
             0xC0000005 (access violation))",
            dll.display()
        )),
        "{text}"
    );
    assert!(
        !text.contains("starting debugger") && !text.contains("winedbg"),
        "wine's debugger was started: {text}"
    );
}
