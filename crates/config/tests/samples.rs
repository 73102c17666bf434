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

#[test]
fn lab_xml_and_netsh_give_equal_models() {
    let xml = load_scopes(&fixture("lab.xml")).unwrap();
    let netsh = load_scopes(&fixture("lab-netsh.txt")).unwrap();
    assert!(xml.warnings.is_empty(), "{:?}", xml.warnings);
    assert!(netsh.warnings.is_empty(), "{:?}", netsh.warnings);
    assert_eq!(xml.config, netsh.config);
    let c = &xml.config;
    assert_eq!(c.scopes.len(), 2);
    assert_eq!(c.settings.conflict_detection_attempts, 2);
    assert_eq!(c.scopes[1].kind, ScopeType::Both);
    assert_eq!(c.scopes[1].max_bootp_clients, Some(100));
    assert_eq!(
        c.scopes[1].lease_duration,
        Some(std::time::Duration::from_secs(1800))
    );
    assert_eq!(
        c.scopes[0].reservations[0].client_id,
        vec![0, 0x15, 0x5d, 1, 2, 3]
    );
}

#[test]
fn lab_resolves_options_for_its_clients() {
    let c = load_scopes(&fixture("lab.xml")).unwrap().config;
    let a = &c.scopes[0];
    let printer_mac = [0, 0x15, 0x5d, 1, 2, 3];
    let printer = ClientFacts {
        mac: &printer_mac,
        user_class: Some(b"LABPRN"),
        ..Default::default()
    };
    let res = a.reservation_for(None, &printer_mac);
    assert_eq!(
        res.map(|r| r.ip_address.to_string()).as_deref(),
        Some("198.18.0.50")
    );
    let eff = effective_options(&c, a, res, &printer);
    assert_eq!(eff.encoded(12), Some(b"printer1".to_vec()));
    assert_eq!(eff.encoded(15), Some(b"printers.lab.example".to_vec()));
    assert_eq!(eff.get(15).unwrap().class.as_deref(), Some("Lab Printers"));
    assert_eq!(eff.encoded(3), Some(vec![198, 18, 0, 1]));
    assert_eq!(eff.encoded(51), Some(691_200u32.to_be_bytes().to_vec()));
    let b = &c.scopes[1];
    let pxe = ClientFacts {
        mac: &[2; 6],
        vendor_class: Some(b"PXEClient:Arch:00007:UNDI:003016"),
        ..Default::default()
    };
    let eff = effective_options(&c, b, None, &pxe);
    assert_eq!(eff.encoded(43), Some(vec![6, 1, 8]));
    assert_eq!(eff.encoded(150), Some(vec![198, 18, 1, 5]));
    assert_eq!(eff.encoded(6), Some(vec![198, 18, 0, 53, 198, 18, 1, 53]));
    let bootp = ClientFacts {
        mac: &[3; 6],
        user_class: Some(b"BOOTP.Microsoft"),
        ..Default::default()
    };
    assert_eq!(
        effective_options(&c, a, None, &bootp).encoded(51),
        Some(2_592_000u32.to_be_bytes().to_vec())
    );
}

#[test]
fn writer_round_trips_the_lab_and_utf16() {
    let original = load_scopes(&fixture("lab.xml")).unwrap().config;
    let written = write_xml(&original);
    let again = read_xml(written.as_bytes(), "written.xml").unwrap();
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    assert_eq!(again.config, original);
    assert_eq!(write_xml(&again.config), written);
    // Export-DhcpServer writes UTF-16LE with a BOM on some systems.
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain(written.encode_utf16().flat_map(|u| u.to_le_bytes()))
        .collect();
    assert_eq!(read_scopes(&utf16, "utf16.xml").unwrap().config, original);
    let utf16be: Vec<u8> = [0xfe, 0xff]
        .into_iter()
        .chain(written.encode_utf16().flat_map(|u| u.to_be_bytes()))
        .collect();
    assert_eq!(
        read_scopes(&utf16be, "utf16be.xml").unwrap().config,
        original
    );
}

#[test]
fn scope_report_lists_the_lab() {
    let c = load_scopes(&fixture("lab.xml")).unwrap().config;
    let report = scope_report(&c);
    assert!(
        report.contains("scope 198.18.0.0/24 (mask 255.255.255.0) \"lab-a\""),
        "{report}"
    );
    // 191 addresses - 20 excluded - 2 reserved.
    assert!(
        report.contains(
            "range 198.18.0.10-198.18.0.200: 191 addresses, 20 excluded, 2 reserved, 169 free"
        ),
        "{report}"
    );
    assert!(
        report.contains(
            "range 198.18.1.20-198.18.1.250: 231 addresses, 11 excluded, 1 reserved, 219 free"
        ),
        "{report}"
    );
    assert!(
        report.contains("reservation 198.18.0.50 00-15-5d-01-02-03 \"printer1\""),
        "{report}"
    );
    assert!(report.contains("option 3 Router = 198.18.0.1"), "{report}");
}
