//! Bad input: every validation rule, malformed and truncated files, wrong encodings, absurd sizes.
//! Each gives a clear error (or is handled in bounded time and memory), never a panic.

use calloutd_config::*;

const P: &str = "Dhcp Server \\\\lab ";

fn netsh(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{P}{l}\r\n")).collect()
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match read_scopes(text.as_bytes(), "bad.txt") {
        Ok(l) => panic!("expected errors, got {:?}", l.config),
        Err(e) => e.errors,
    }
}

fn rules(text: &str) -> Vec<(&'static str, Option<u32>)> {
    errors(text).iter().map(|e| (e.rule, e.line)).collect()
}

const SCOPE: &str = "add scope 198.18.0.0 255.255.255.0 \"a\" \"\"";
const RANGE: &str = "Scope 198.18.0.0 Add iprange 198.18.0.10 198.18.0.200";

#[test]
fn every_rule_is_reported_together_with_its_line() {
    let text = netsh(&[
        SCOPE,                                                                         // 1
        "Scope 198.18.0.0 Add iprange 198.18.0.200 198.18.0.10", // 2 start > end
        "Scope 198.18.0.0 add excluderange 198.18.1.1 198.18.1.5", // 3 outside subnet
        "Scope 198.18.0.0 Add reservedip 198.18.2.1 001122334455 \"r\" \"\" \"BOTH\"", // 4 outside
        "Scope 198.18.0.0 set optionvalue 0 BYTE \"1\"",         // 5 id 0
        "Scope 198.18.0.0 set optionvalue 255 BYTE \"1\"",       // 6 id 255
        "Scope 198.18.0.0 set optionvalue 3 DWORD \"1\"",        // 7 type mismatch
        "Scope 198.18.0.0 set optionvalue 1 IPADDRESS \"255.0.0.0\" \"255.0.0.0\"", // 8 arity
        "Scope 198.18.0.0 set optionvalue 15 STRING user=\"Nobody\" \"x\"", // 9 unknown class
        "Scope 198.18.0.0 set optionvalue 3 IPADDRESS \"not-an-ip\"", // 10 bad value
        "Scope 198.18.0.0 set optionvalue 200 BYTE \"1\"",       // 11 no definition
        "add scope 198.18.0.128 255.255.255.128 \"b\" \"\"",     // 12 overlap
        "Scope 198.18.0.128 Add iprange 198.18.0.130 198.18.0.140", // 13
    ]);
    let got = rules(&text);
    let want = [
        ("range-order", Some(2)),
        ("outside-subnet", Some(3)),
        ("outside-subnet", Some(4)),
        ("option-id-range", Some(5)),
        ("option-id-range", Some(6)),
        ("option-type", Some(7)),
        ("option-arity", Some(8)),
        ("unknown-class", Some(9)),
        ("option-value", Some(10)),
        ("unknown-option", Some(11)),
        ("overlapping-scopes", Some(12)),
    ];
    assert_eq!(got, want);
    let shown = errors(&text)[0].to_string();
    assert_eq!(shown, "bad.txt:2: scope 198.18.0.0 range 198.18.0.200-198.18.0.10: start is after end [range-order]");
}

#[test]
fn lease_duration_and_option_51_must_agree() {
    let xml = r#"<DHCPServer><IPv4><Scopes><Scope>
<ScopeId>198.18.0.0</ScopeId><SubnetMask>255.255.255.0</SubnetMask>
<StartRange>198.18.0.10</StartRange><EndRange>198.18.0.20</EndRange>
<LeaseDuration>8.00:00:00</LeaseDuration>
<OptionValues><OptionValue><OptionId>51</OptionId><Value>3600</Value></OptionValue></OptionValues>
</Scope></Scopes></IPv4></DHCPServer>"#;
    let e = errors(xml);
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].rule, e[0].line), ("lease-mismatch", Some(4)));
    assert_eq!(
        e[0].path.as_deref(),
        Some("/DHCPServer/IPv4/Scopes/Scope[1]/LeaseDuration")
    );
    assert!(e[0]
        .to_string()
        .contains("(at /DHCPServer/IPv4/Scopes/Scope[1]/LeaseDuration)"));
    let ok = xml.replace("3600", "691200");
    assert!(read_scopes(ok.as_bytes(), "ok.xml").is_ok());
}

#[test]
fn xml_errors_name_line_and_path() {
    let xml = "<DHCPServer>\n<IPv4>\n<Scopes>\n<Scope>\n<ScopeId>198.18.0.0</ScopeId>\n<SubnetMask>255.255.255.0</SubnetMask>\n<StartRange>198.18.0.300</StartRange>\n<EndRange>198.18.0.20</EndRange>\n<Colour>blue</Colour>\n</Scope>\n</Scopes>\n</IPv4>\n</DHCPServer>\n";
    let err = read_scopes(xml.as_bytes(), "x.xml").unwrap_err();
    let e = &err.errors[0];
    assert_eq!((e.rule, e.line), ("bad-address", Some(7)));
    assert_eq!(
        e.path.as_deref(),
        Some("/DHCPServer/IPv4/Scopes/Scope[1]/StartRange")
    );
    let w = &err.warnings[0];
    assert_eq!((w.rule, w.line), ("unknown-element", Some(9)));
    assert_eq!(
        w.path.as_deref(),
        Some("/DHCPServer/IPv4/Scopes/Scope[1]/Colour")
    );
}

#[test]
fn unknown_netsh_commands_are_warnings() {
    let text = netsh(&[
        SCOPE,
        RANGE,
        "add mscope \"m\" \"\" 1",
        "Scope 198.18.0.0 frobnicate now",
    ]);
    let loaded = read_scopes(text.as_bytes(), "w.txt").unwrap();
    let w: Vec<_> = loaded.warnings.iter().map(|w| (w.rule, w.line)).collect();
    assert_eq!(
        w,
        [("unknown-command", Some(3)), ("unknown-command", Some(4))]
    );
    assert_eq!(loaded.config.scopes.len(), 1);
}

#[test]
fn netsh_keywords_any_case_lf_and_quotes() {
    let text = "dhcp server 198.18.0.1 ADD SCOPE 198.18.0.0 255.255.255.0 \"my scope\" \"a \"\"b\"\"\"\n\
                DHCP SERVER 198.18.0.1 scope 198.18.0.0 ADD IPRANGE 198.18.0.10 198.18.0.20 bootp 7\n\
                Dhcp Server 198.18.0.1 SCOPE 198.18.0.0 SET OPTIONVALUE 15 string \"two words\"\n";
    let c = read_scopes(text.as_bytes(), "case.txt").unwrap().config;
    assert_eq!(c.scopes[0].name, "my scope");
    assert_eq!(c.scopes[0].kind, ScopeType::Bootp);
    assert_eq!(c.scopes[0].max_bootp_clients, Some(7));
    assert_eq!(
        c.scopes[0].option_values[0].value,
        vec![OptionElement::String("two words".into())]
    );
}

#[test]
fn malformed_and_truncated_files_never_panic() {
    let lab_xml = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/config/lab.xml"
    ))
    .unwrap();
    let lab_netsh = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/config/lab-netsh.txt"
    ))
    .unwrap();
    for cut in (0..lab_xml.len()).step_by(7) {
        if let Ok(l) = read_scopes(&lab_xml[..cut], "cut.xml") {
            panic!("truncated XML at {cut} loaded: {:?}", l.config.scopes.len());
        }
    }
    let e = read_scopes(&lab_xml[..lab_xml.len() / 2], "cut.xml").unwrap_err();
    assert!(
        e.errors
            .iter()
            .any(|d| d.rule == "xml-syntax" && d.message.contains("truncated")),
        "{e}"
    );
    for cut in (0..lab_netsh.len()).step_by(5) {
        let _ = read_scopes(&lab_netsh[..cut], "cut.txt");
    }
    for bad in [
        "<DHCPServer><IPv4></DHCPServer>",
        "<DHCPServer",
        "<Other/>",
        "<DHCPServer>&nope;</DHCPServer>",
        "<",
        "<?xml version=\"1.0\"?>",
    ] {
        let e = read_scopes(bad.as_bytes(), "m.xml").unwrap_err();
        assert!(!e.errors.is_empty(), "{bad}");
    }
    let e = read_scopes(b"<DHCPServer><IPv4></DHCPServer>", "m.xml").unwrap_err();
    assert!(e.to_string().starts_with("m.xml:1: malformed XML"), "{e}");
}

#[test]
fn wrong_encodings() {
    // windows-1252 bytes in XML without a BOM: refused with a clear reason.
    let e = read_scopes(b"<DHCPServer><IPv4><Classes><Class><Name>caf\xe9</Name></Class></Classes></IPv4></DHCPServer>", "w.xml").unwrap_err();
    assert_eq!(e.errors[0].rule, "encoding");
    // The same in a netsh dump is read as windows-1252, with a warning.
    let text = [
        netsh(&[SCOPE, RANGE]).as_bytes(),
        b"Dhcp Server \\\\lab Scope 198.18.0.0 set optionvalue 15 STRING \"caf\xe9\"\r\n",
    ]
    .concat();
    let l = read_scopes(&text, "w.txt").unwrap();
    assert_eq!(l.warnings[0].rule, "encoding");
    assert_eq!(
        l.config.scopes[0].option_values[0].value,
        vec![OptionElement::String("caf\u{e9}".into())]
    );
    // UTF-16LE without a BOM is recognised.
    let utf16: Vec<u8> = netsh(&[SCOPE, RANGE])
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    assert_eq!(read_scopes(&utf16, "u.txt").unwrap().config.scopes.len(), 1);
    // Random bytes: errors or warnings, no panic.
    let mut state = 0x1234_5678u32;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    let _ = read_scopes(&noise, "noise.bin");
    let _ = read_xml(&noise, "noise.xml");
    let _ = read_netsh(&noise, "noise.txt");
}

#[test]
fn absurd_values() {
    // A /0 mask.
    let r = rules(&netsh(&[
        "add scope 0.0.0.0 0.0.0.0 \"all\" \"\"",
        "Scope 0.0.0.0 Add iprange 0.0.0.0 255.255.255.255",
    ]));
    assert_eq!(r, [("bad-mask", Some(1))]);
    // Non-contiguous mask, scope id not the network address.
    assert_eq!(
        rules(&netsh(&[
            "add scope 198.18.0.0 255.0.255.0 \"x\" \"\"",
            RANGE
        ]))[0]
            .0,
        "bad-mask"
    );
    assert_eq!(
        rules(&netsh(&[
            "add scope 198.18.0.1 255.255.255.0 \"x\" \"\"",
            "Scope 198.18.0.1 Add iprange 198.18.0.10 198.18.0.20"
        ]))[0]
            .0,
        "scope-id"
    );
    // A /1 with a 2^31 - 2 address range is counted, never enumerated.
    let big = netsh(&[
        "add scope 0.0.0.0 128.0.0.0 \"half\" \"\"",
        "Scope 0.0.0.0 Add iprange 0.0.0.1 127.255.255.254",
        "Scope 0.0.0.0 add excluderange 0.0.0.1 100.0.0.0",
    ]);
    let c = read_scopes(big.as_bytes(), "big.txt").unwrap().config;
    let counts = c.scopes[0].pool_counts();
    assert_eq!(counts.range, (1 << 31) - 2);
    assert_eq!(
        counts.free,
        (1 << 31)
            - 2
            - u64::from(u32::from(
                "100.0.0.0".parse::<std::net::Ipv4Addr>().unwrap()
            ))
    );
    assert!(scope_report(&c).contains("2147483646 addresses"));
    // A range including the subnet or broadcast address.
    assert_eq!(
        rules(&netsh(&[
            SCOPE,
            "Scope 198.18.0.0 Add iprange 198.18.0.0 198.18.0.255"
        ])),
        [("range-network-broadcast", Some(2))]
    );
    // A scope without a range.
    assert_eq!(rules(&netsh(&[SCOPE])), [("no-range", Some(1))]);
    // A 1 MB option value.
    let huge = "x".repeat(1 << 20);
    let line = format!("Scope 198.18.0.0 set optionvalue 15 STRING \"{huge}\"");
    assert_eq!(
        rules(&netsh(&[SCOPE, RANGE, &line])),
        [("option-too-long", Some(3))]
    );
    let hex = format!(
        "Scope 198.18.0.0 set optionvalue 43 BINARY \"{}\"",
        "ab".repeat(1 << 19)
    );
    assert_eq!(
        rules(&netsh(&[SCOPE, RANGE, &hex])),
        [("option-too-long", Some(3))]
    );
    let xml = format!("<DHCPServer><IPv4><OptionValues><OptionValue><OptionId>15</OptionId><Value>{huge}</Value></OptionValue></OptionValues></IPv4></DHCPServer>");
    assert_eq!(errors(&xml)[0].rule, "option-too-long");
    // Out-of-range numbers.
    assert_eq!(
        rules(&netsh(&[
            SCOPE,
            RANGE,
            "Scope 198.18.0.0 set optionvalue 46 BYTE \"256\""
        ])),
        [("option-value", Some(3))]
    );
    assert_eq!(
        rules(&netsh(&["Set DetectConflictRetry 99999999999999999999999"])),
        [("bad-number", Some(1))]
    );
    assert_eq!(
        rules(&netsh(&["Set DetectConflictRetry 6"])),
        [("bad-number", Some(1))]
    );
}

#[test]
fn ten_thousand_scopes() {
    let mut lines = Vec::new();
    for i in 0..10_000u32 {
        let net = std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8));
        let first = std::net::Ipv4Addr::from(u32::from(net) + 1);
        let last = std::net::Ipv4Addr::from(u32::from(net) + 254);
        lines.push(format!("add scope {net} 255.255.255.0 \"s{i}\" \"\""));
        lines.push(format!("Scope {net} Add iprange {first} {last}"));
    }
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let text = netsh(&refs);
    let loaded = read_scopes(text.as_bytes(), "many.txt").unwrap();
    assert_eq!(loaded.config.scopes.len(), 10_000);
    let xml = write_xml(&loaded.config);
    assert_eq!(
        read_xml(xml.as_bytes(), "many.xml").unwrap().config,
        loaded.config
    );
    // All overlapping: the error list is capped, not 10 000 lines long.
    let mut same = Vec::new();
    for i in 0..10_000u32 {
        let net = std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8));
        same.push(format!("add scope {net} 255.0.0.0 \"s{i}\" \"\""));
    }
    let refs: Vec<&str> = same.iter().map(String::as_str).collect();
    let e = errors(&netsh(&refs));
    assert!(e.len() <= 1001, "{}", e.len());
    assert_eq!(e.last().unwrap().rule, "too-many-errors");
}

#[test]
fn deep_or_wide_xml_is_bounded() {
    let deep = format!("<DHCPServer>{}", "<a>".repeat(100_000));
    let e = errors(&deep);
    assert!(e[0].message.contains("nested too deeply"), "{}", e[0]);
    let wide = format!(
        "<DHCPServer><IPv4>{}</IPv4></DHCPServer>",
        "<x/>".repeat(100_000)
    );
    let l = read_scopes(wide.as_bytes(), "wide.xml").unwrap();
    assert!(l.warnings.len() <= 1000);
}
