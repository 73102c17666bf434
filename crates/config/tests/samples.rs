//! The real-world and lab fixtures in `fixtures/config/`.

use std::path::PathBuf;

use calloutd_config::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/config")
        .join(name)
}

/// The VVelox dump reads without a syntax error. Its data was anonymised: scope 10.40.10.0/23 got the
/// range 10.40.51.3-254, outside its subnet, which Windows would refuse; that is the one (and only)
/// validation error, reported on the line of the `Add iprange`.
#[test]
fn vvelox_netsh_dump_parses() {
    let path = fixture("netsh-dump_VVelox_test.data.txt");
    let err = load_scopes(&path).unwrap_err();
    assert_eq!(err.errors.len(), 1, "{err}");
    let e = &err.errors[0];
    assert_eq!((e.rule, e.line), ("outside-subnet", Some(147)), "{err}");
    assert!(e
        .to_string()
        .contains("netsh-dump_VVelox_test.data.txt:147: scope 10.40.10.0 range"));
    // Only the DHCPv6 section is set aside, with one warning.
    assert_eq!(err.warnings.len(), 1, "{:?}", err.warnings);
    assert_eq!(err.warnings[0].rule, "ignored-v6");

    // With that one range moved into its subnet, the whole dump validates into the model.
    let text = std::fs::read_to_string(&path).unwrap();
    let fixed = text.replace(
        "Add iprange 10.40.51.3 10.40.51.254 BOTH",
        "Add iprange 10.40.10.3 10.40.11.254 BOTH",
    );
    let loaded = read_scopes(fixed.as_bytes(), "fixed.txt").unwrap();
    let c = &loaded.config;
    assert_eq!(c.classes.len(), 6);
    assert_eq!(c.scopes.len(), 7);
    assert_eq!(
        c.option_definitions
            .iter()
            .filter(|d| d.vendor_class.is_some())
            .count(),
        6
    );
    assert_eq!(c.option_values.len(), 5);
    let audit = c.settings.audit_log.as_ref().unwrap();
    assert_eq!(
        (
            audit.max_size_mb,
            audit.min_size_mb,
            audit.interval,
            audit.enabled
        ),
        (70, 20, 50, true)
    );
    assert_eq!(audit.path, "C:\\Windows\\system32\\dhcp");
    assert_eq!(c.settings.database_cleanup_interval_min, Some(60));
    assert_eq!(c.settings.database_backup_interval_min, Some(60));
    assert_eq!(c.settings.database_name.as_deref(), Some("dhcp.mdb"));
    let first = &c.scopes[0];
    assert_eq!(
        first.scope_id,
        "10.40.10.0".parse::<std::net::Ipv4Addr>().unwrap()
    );
    assert_eq!(first.kind, ScopeType::Both);
    assert_eq!(
        first.lease_duration,
        Some(std::time::Duration::from_secs(1800))
    );
    assert_eq!(
        first
            .option_values
            .iter()
            .filter(|v| v.user_class.as_deref() == Some("Default BOOTP Class"))
            .count(),
        1
    );
}
