//! Loading against real built callouts: order, fallback, ChainDlls, missing DLLs, base dir.

// Unix only: loads the fixture callouts as .so files and sets Unix file modes.
#![cfg(unix)]

mod common;

use calloutd_callout::{AttemptOutcome, CalloutConfig, HookName, LoadOrder, LoadStatus};
use common::*;
use std::path::PathBuf;

fn s(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[test]
fn three_dlls_given_out_of_order_load_alphabetically_with_the_rest_as_chain() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    let c = copy_fixture(dir.path(), "trace", "c_trace.so");
    let a = copy_fixture(dir.path(), "trace2", "A_trace.so");
    let b = copy_fixture(dir.path(), "trace3", "b_trace.so");
    let config = enabled(&[&c, &a, &b], LoadOrder::Alphabetical);
    let result = load_with_env(&config, &[("CALLOUT_TRACE_FILE", &s(&trace))]);

    let report = &result.report;
    assert_eq!(report.status, LoadStatus::Loaded);
    assert_eq!(report.candidates, vec![s(&a), s(&b), s(&c)]);
    let loaded = report.loaded.as_ref().unwrap();
    assert_eq!(loaded.entry, s(&a));
    assert_eq!(loaded.chain_dlls, vec![s(&b), s(&c)]);
    assert_eq!(loaded.hooks, HookName::ALL.to_vec());
    assert_eq!(report.attempts.len(), 1);
    assert_eq!(report.attempts[0].outcome.event_id(), 1033);

    // What the DLL itself received: ChainDlls and CalloutVersion 0, a zeroed table.
    let entries = lines_for(&trace, "trace2", "Entry");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["chain"], serde_json::json!([s(&b), s(&c)]));
    assert_eq!(entries[0]["version"], 0);
    assert_eq!(entries[0]["table_was_zero"], true);
    // Nothing else was loaded.
    assert_eq!(read_lines(&trace).len(), 1);
    assert!(result.callout.is_some());
}

#[test]
fn listed_order_keeps_the_multi_sz_order() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    let c = copy_fixture(dir.path(), "trace", "c_trace.so");
    let a = copy_fixture(dir.path(), "trace2", "A_trace.so");
    let b = copy_fixture(dir.path(), "trace3", "b_trace.so");
    let config = enabled(&[&c, &a, &b], LoadOrder::Listed);
    let result = load_with_env(&config, &[("CALLOUT_TRACE_FILE", &s(&trace))]);
    let loaded = result.report.loaded.as_ref().unwrap();
    assert_eq!(loaded.entry, s(&c));
    assert_eq!(loaded.chain_dlls, vec![s(&a), s(&b)]);
    let entry = &lines_for(&trace, "trace", "Entry")[0];
    assert_eq!(entry["chain"], serde_json::json!([s(&a), s(&b)]));
}

#[test]
fn a_failing_entry_is_unloaded_and_the_next_dll_takes_over_with_the_shorter_chain() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    let a = copy_fixture(dir.path(), "faulty", "a_faulty.so");
    let b = copy_fixture(dir.path(), "trace", "b_trace.so");
    let c = copy_fixture(dir.path(), "trace2", "c_trace.so");
    let config = enabled(&[&c, &b, &a], LoadOrder::Alphabetical);
    let result = load_with_env(
        &config,
        &[
            ("CALLOUT_TRACE_FILE", &s(&trace)),
            ("CALLOUT_FAULTY_ENTRY", "87"),
        ],
    );
    let report = &result.report;
    assert_eq!(report.attempts.len(), 2);
    assert_eq!(report.attempts[0].entry, s(&a));
    assert_eq!(
        report.attempts[0].outcome,
        AttemptOutcome::EntryFailed { code: 87 }
    );
    assert_eq!(report.attempts[0].outcome.event_id(), 1034);
    assert_eq!(report.attempts[0].chain_dlls, vec![s(&b), s(&c)]);
    assert!(report.attempts[0].to_string().contains("returned 87"));
    assert_eq!(report.attempts[1].outcome, AttemptOutcome::Loaded);
    let loaded = report.loaded.as_ref().unwrap();
    assert_eq!(loaded.entry, s(&b));
    assert_eq!(loaded.chain_dlls, vec![s(&c)]);
    assert_eq!(report.failed_attempts().count(), 1);
    // The DLL that took over saw only the DLLs after it.
    let entries = lines_for(&trace, "trace", "Entry");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["chain"], serde_json::json!([s(&c)]));
}

#[test]
fn the_last_dll_gets_an_empty_chain_that_is_not_null() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    let only = copy_fixture(dir.path(), "trace", "only.so");
    let result = load_with_env(
        &enabled(&[&only], LoadOrder::Alphabetical),
        &[("CALLOUT_TRACE_FILE", &s(&trace))],
    );
    assert!(result.callout.is_some());
    let entry = &lines_for(&trace, "trace", "Entry")[0];
    assert_eq!(entry["chain_null"], false);
    assert_eq!(entry["chain"], serde_json::json!([]));
}

#[test]
fn a_missing_dll_reports_the_os_error_and_the_next_one_loads() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("a_missing.so");
    let b = copy_fixture(dir.path(), "noop", "b_noop.so");
    let result = load_with_env(&enabled(&[&missing, &b], LoadOrder::Alphabetical), &[]);
    let report = &result.report;
    match &report.attempts[0].outcome {
        AttemptOutcome::LoadFailed { error } => {
            assert!(error.contains("a_missing.so"), "{error}");
            assert!(
                error.contains("No such file or directory"),
                "OS text missing: {error}"
            );
        }
        other => panic!("expected LoadFailed, got {other:?}"),
    }
    assert_eq!(report.loaded.as_ref().unwrap().entry, s(&b));
}

#[test]
fn a_library_without_the_entry_point_is_skipped_and_bare_names_use_the_library_search() {
    let dir = tempfile::tempdir().unwrap();
    let noop = copy_fixture(dir.path(), "noop", "z_noop.so");
    // A bare name resolved by the normal search: the C math library exists everywhere.
    let config = CalloutConfig {
        dlls: vec!["libm.so.6".into(), s(&noop)],
        enabled: Some(1),
        base_dir: Some(dir.path().to_path_buf()),
        order: LoadOrder::Listed,

        strict_permissions: false,
    };
    let result = load_with_env(&config, &[]);
    let first = &result.report.attempts[0];
    assert_eq!(first.path, PathBuf::from("libm.so.6"));
    match &first.outcome {
        AttemptOutcome::EntryPointMissing { error } => {
            assert!(error.contains("DhcpServerCalloutEntry"), "{error}")
        }
        other => panic!("expected EntryPointMissing, got {other:?}"),
    }
    assert_eq!(result.report.loaded.as_ref().unwrap().entry, s(&noop));
}

#[test]
fn every_candidate_failing_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("nope1.so");
    let b = dir.path().join("nope2.so");
    let result = load_with_env(&enabled(&[&a, &b], LoadOrder::Alphabetical), &[]);
    assert_eq!(result.report.status, LoadStatus::AllFailed);
    assert_eq!(result.report.attempts.len(), 2);
    assert!(result.callout.is_none());
    assert!(result
        .report
        .summary()
        .contains("no callout DLL could be loaded"));
}

#[test]
fn callout_enabled_zero_or_absent_loads_no_dll_even_when_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    let dll = copy_fixture(dir.path(), "trace", "trace.so");
    for enabled_value in [Some(0), None] {
        let config = CalloutConfig {
            dlls: vec![s(&dll)],
            enabled: enabled_value,
            ..CalloutConfig::default()
        };
        let result = load_with_env(&config, &[("CALLOUT_TRACE_FILE", &s(&trace))]);
        assert_eq!(result.report.status, LoadStatus::Disabled);
        assert!(result.callout.is_none());
        assert!(result.report.attempts.is_empty());
    }
    // The entry point never ran.
    assert!(read_lines(&trace).is_empty());
}

#[test]
fn relative_entries_resolve_against_the_base_dir_first() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("callouts")).unwrap();
    let dll = copy_fixture(&dir.path().join("callouts"), "noop", "noop.so");
    let config = CalloutConfig {
        dlls: vec!["callouts/noop.so".into()],
        enabled: Some(1),
        base_dir: Some(dir.path().to_path_buf()),
        order: LoadOrder::Alphabetical,

        strict_permissions: false,
    };
    let result = load_with_env(&config, &[]);
    let loaded = result.report.loaded.as_ref().unwrap();
    assert_eq!(loaded.entry, "callouts/noop.so");
    assert_eq!(loaded.path, dll);
    assert_eq!(result.callout.unwrap().path(), dll.as_path());

    // Not in the base dir: handed to the OS loader as written, which fails with its own text.
    let other_base = tempfile::tempdir().unwrap();
    let config = CalloutConfig {
        base_dir: Some(other_base.path().to_path_buf()),
        ..config
    };
    let result = load_with_env(&config, &[]);
    assert_eq!(
        result.report.attempts[0].path,
        PathBuf::from("callouts/noop.so")
    );
    assert!(matches!(
        result.report.attempts[0].outcome,
        AttemptOutcome::LoadFailed { .. }
    ));
}

#[test]
fn the_report_serializes_for_check_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let a = copy_fixture(dir.path(), "rewrite", "rewrite.so");
    let result = load_with_env(&enabled(&[&a], LoadOrder::Alphabetical), &[]);
    let json = serde_json::to_value(&result.report).unwrap();
    assert_eq!(json["status"], "loaded");
    assert_eq!(json["attempts"][0]["result"], "loaded");
    assert_eq!(
        json["loaded"]["hooks"],
        serde_json::json!(["NewPkt", "PktSend"])
    );
    assert!(result
        .report
        .summary()
        .contains("DhcpNewPktHook, DhcpPktSendHook"));
}

#[test]
fn windows_dlls_build_from_the_same_sources_when_mingw_is_installed() {
    match calloutd_fixtures::build_windows().unwrap() {
        None => eprintln!("note: mingw-w64 not installed, skipped"),
        Some(dir) => {
            for fixture in calloutd_fixtures::FIXTURES {
                let bytes = std::fs::read(dir.join(format!("{}.dll", fixture.name))).unwrap();
                assert_eq!(&bytes[..2], b"MZ", "{} is not a PE file", fixture.name);
                let path = dir.join(format!("{}.dll", fixture.name));
                match std::process::Command::new("x86_64-w64-mingw32-objdump")
                    .arg("-p")
                    .arg(&path)
                    .output()
                {
                    Ok(out) => {
                        let text = String::from_utf8_lossy(&out.stdout);
                        let exports = text.split("[Ordinal/Name Pointer] Table").nth(1);
                        assert!(
                            exports.is_some_and(|t| t.contains("] DhcpServerCalloutEntry")),
                            "{} does not export DhcpServerCalloutEntry undecorated:\n{text}",
                            fixture.name
                        );
                        let name = format!(" {}\n", path.file_name().unwrap().to_string_lossy());
                        let dll_name = text.lines().find(|l| l.starts_with("Name ")).unwrap_or("");
                        assert!(
                            format!("{dll_name}\n").ends_with(&name),
                            "export table names the DLL {dll_name:?}"
                        );
                    }
                    Err(e) => eprintln!("note: no mingw objdump ({e}); export table not checked"),
                }
            }
        }
    }
}

#[test]
fn a_dll_others_can_write_is_a_warning_and_with_strict_permissions_a_load_failure() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    let noop = copy_fixture(&open, "noop", "noop.so");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = enabled(&[&noop], LoadOrder::Listed);

    let warned = load_with_env(&config, &[]);
    assert_eq!(warned.report.status, LoadStatus::Loaded);
    let warnings: Vec<String> = warned.report.permission_warnings().collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&open.display().to_string())
            && warnings[0].contains("every user can write it")
            && warnings[0].contains("group "),
        "{warnings:?}"
    );
    let digest = warned
        .report
        .loaded
        .as_ref()
        .unwrap()
        .sha256
        .clone()
        .unwrap();
    assert_eq!(digest.len(), 64);
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
    drop(warned);

    let strict = CalloutConfig {
        strict_permissions: true,
        ..config.clone()
    };
    let refused = load_with_env(&strict, &[]);
    assert_eq!(refused.report.status, LoadStatus::AllFailed);
    assert!(refused.callout.is_none());
    let attempt = &refused.report.attempts[0];
    assert_eq!(attempt.outcome.event_id(), 1034);
    match &attempt.outcome {
        AttemptOutcome::Untrusted { error } => assert!(error.contains("every user"), "{error}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        attempt.to_string().contains("--strict-dll-permissions"),
        "{attempt}"
    );

    // Closed again, the strict load succeeds and nothing is reported.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let loaded = load_with_env(&strict, &[]);
    assert_eq!(loaded.report.status, LoadStatus::Loaded);
    assert_eq!(loaded.report.permission_warnings().count(), 0);
}
