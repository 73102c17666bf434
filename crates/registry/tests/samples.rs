//! The reader on every `.reg` fixture (copies of the project's samples), with the `regashii` crate as
//! an oracle where it agrees with docs/config.md section 1, and explicit assertions where it does
//! not.

use std::path::{Path, PathBuf};

use calloutd_registry::{
    write_reg_v5, Parameters, RegValueData, RegistryTree, REG_DWORD, REG_FULL_RESOURCE_DESCRIPTOR,
    REG_LINK, REG_NONE, REG_RESOURCE_LIST, REG_RESOURCE_REQUIREMENTS_LIST,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/reg")
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

fn reg_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "reg"))
        .collect();
    files.sort();
    files
}

fn read(path: &Path) -> (RegistryTree, Vec<String>) {
    let mut tree = RegistryTree::new();
    let warnings = tree.apply_file(path).unwrap();
    (tree, warnings.iter().map(ToString::to_string).collect())
}

/// What our reader should hold for a value regashii read, where the two agree by design.
fn expected_from_regashii(value: &regashii::Value) -> RegValueData {
    use regashii::Value as V;
    match value {
        V::Sz(s) => RegValueData::Sz(s.clone()),
        V::ExpandSz(s) => RegValueData::ExpandSz(s.clone()),
        V::Binary(b) => RegValueData::Binary(b.clone()),
        V::Dword(n) => RegValueData::Dword(*n),
        // regashii decodes hex(5) into `Dword`; docs/config.md section 1 keeps it
        // REG_DWORD_BIG_ENDIAN.
        V::DwordBigEndian(n) => RegValueData::DwordBigEndian(*n),
        V::MultiSz(list) => RegValueData::MultiSz(list.clone()),
        V::Qword(n) => RegValueData::Qword(*n),
        // regashii keeps these raw; we type the raw kinds and keep misfits as `Other`.
        V::Hex { kind, bytes } => {
            let kind = u32::from(u8::from(*kind));
            let bytes = bytes.clone();
            match kind {
                REG_NONE => RegValueData::None(bytes),
                REG_LINK => RegValueData::Link(bytes),
                REG_RESOURCE_LIST => RegValueData::ResourceList(bytes),
                REG_FULL_RESOURCE_DESCRIPTOR => RegValueData::FullResourceDescriptor(bytes),
                REG_RESOURCE_REQUIREMENTS_LIST => RegValueData::ResourceRequirementsList(bytes),
                _ => RegValueData::Other { kind, bytes },
            }
        }
        V::Delete => unreachable!("samples hold no deletions"),
    }
}

/// regashii drops every empty string of a REG_MULTI_SZ; docs/config.md section 1 wants the empty
/// strings in the middle kept (the CalloutDlls view, not the raw list, ends at the first one).
/// Compare without them here; `multi_sz_separation_keeps_empty_strings` asserts our exact lists.
fn without_empty_strings(data: &RegValueData) -> RegValueData {
    match data {
        RegValueData::MultiSz(list) => {
            RegValueData::MultiSz(list.iter().filter(|s| !s.is_empty()).cloned().collect())
        }
        other => other.clone(),
    }
}

#[test]
fn every_fixture_matches_regashii() {
    let files = reg_files();
    assert!(files.len() >= 6, "fixtures missing: {files:?}");
    for file in files {
        let oracle = regashii::Registry::deserialize_file(&file).unwrap();
        let (tree, _) = read(&file);
        assert!(!oracle.keys().is_empty(), "{}", file.display());
        for (key_name, key) in oracle.keys() {
            assert_eq!(key.kind(), regashii::KeyKind::Add);
            let ours = tree
                .key(key_name.raw())
                .unwrap_or_else(|| panic!("{}: key {} missing", file.display(), key_name.raw()));
            assert_eq!(
                ours.values().len(),
                key.values().len(),
                "{}: {}",
                file.display(),
                key_name.raw()
            );
            for (value_name, value) in key.values() {
                let name = match value_name {
                    regashii::ValueName::Default => "",
                    regashii::ValueName::Named(name) => name.as_str(),
                };
                let got = ours
                    .value(name)
                    .unwrap_or_else(|| panic!("{}: value {name:?} missing", file.display()));
                assert_eq!(
                    without_empty_strings(got.data()),
                    expected_from_regashii(value),
                    "{}: value {name:?}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn complex_v5_and_v4_hold_the_same_data() {
    let (v5, w5) = read(&fixture("reg-format_regashii_complex-regedit5.reg"));
    let (v4, w4) = read(&fixture("reg-format_regashii_complex-regedit4.reg"));
    assert!(w5.is_empty() && w4.is_empty(), "{w5:?} {w4:?}");
    // REGEDIT4's hex(2)/hex(7) are single-byte strings, v5's UTF-16: same tree either way.
    assert_eq!(v5, v4);
    let key = v5
        .key(r"HKEY_CURRENT_USER\Software\regashii\complex")
        .unwrap();
    let data = |name: &str| key.value(name).unwrap().data().clone();
    assert_eq!(data("multi-sz"), RegValueData::MultiSz(vec![]));
    assert_eq!(
        data("multi-sz-a-b"),
        RegValueData::MultiSz(vec!["a".into(), "b".into()])
    );
    assert_eq!(data("expand-sz"), RegValueData::ExpandSz(String::new()));
    assert_eq!(data("qword-255"), RegValueData::Qword(255));
    assert_eq!(
        data("sz-sp\\ec\"ial"),
        RegValueData::Sz("sp\\ec\"ial".into())
    );
    assert_eq!(
        key.value("sz-sp\\ec\"ial").unwrap().origin().unwrap().line,
        16
    );
}

#[test]
fn multi_sz_separation_keeps_empty_strings() {
    for name in [
        "reg-format_regashii_multi-sz-separation-regedit5.reg",
        "reg-format_regashii_multi-sz-separation-regedit4.reg",
    ] {
        let (tree, warnings) = read(&fixture(name));
        assert!(warnings.is_empty(), "{warnings:?}");
        let key = tree
            .key(r"HKCU\Software\regashii\multi-sz-separation")
            .unwrap();
        let list = |value: &str| match key.value(value).unwrap().data() {
            RegValueData::MultiSz(list) => list.clone(),
            other => panic!("{name}: {value} is {other}"),
        };
        // The value names spell the layout: `_` marks an empty string.
        assert_eq!(list("a"), ["a"], "{name}");
        assert_eq!(
            list("a-_"),
            ["a"],
            "{name}: a\\0\\0 is one string and the list end"
        );
        assert_eq!(
            list("a-_-b"),
            ["a", "", "b"],
            "{name}: missing final terminator"
        );
        assert_eq!(list("a-b"), ["a", "b"], "{name}");
        assert_eq!(list("a-b-_"), ["a", "b"], "{name}");
    }
}

#[test]
fn irregular_file_reads_as_regedit_would_and_reports_the_dropped_dword() {
    let file = fixture("reg-format_regashii_irregular-regedit5.reg");
    let (tree, warnings) = read(&file);
    // Line 11: `"invalid-backslash"=dword:00000000\` (regedit drops it; we say so).
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(&format!("{}:11: ", file.display())),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("invalid-backslash"), "{warnings:?}");
    // The name runs to the last `]` (`]";` inside it), `\\` is one separator, text after is ignored.
    let key = tree
        .key(r#"HKEY_CURRENT_USER\Software\regashii\irre]";gular"#)
        .unwrap();
    assert!(key.value("invalid-backslash").is_none());
    assert_eq!(
        key.value("").unwrap().data(),
        &RegValueData::Sz(String::new())
    );
    assert_eq!(
        key.value("dword").unwrap().data(),
        &RegValueData::Other {
            kind: REG_DWORD,
            bytes: vec![0]
        }
    );
    assert_eq!(
        key.value("sz-line-break").unwrap().data(),
        &RegValueData::Sz("a\nb".into())
    );
    let continued = key.value("hex-continuations").unwrap();
    assert_eq!(continued.data(), &RegValueData::Binary(vec![0, 1, 2]));
    assert_eq!(continued.origin().unwrap().line, 7);
    assert_eq!(
        key.value("semi;colons").unwrap().data(),
        &RegValueData::Sz("and\"quotes;".into())
    );
}

#[test]
fn offline_control_set_fixture_feeds_parameters() {
    let file = fixture("dhcp-parameters_offline-controlset001.reg");
    let (tree, warnings) = read(&file);
    assert!(warnings.is_empty(), "{warnings:?}");
    let params = Parameters::from_tree(&tree).unwrap();
    let dlls = params.callout_dlls.as_ref().unwrap();
    assert_eq!(dlls.value, ["callout_a.so", "callout_b.so"]);
    assert_eq!((dlls.file.as_path(), dlls.line), (file.as_path(), 5));
    assert_eq!(dlls.dir(), Some(fixtures().as_path()));
    assert!(params.callouts_enabled());
    assert_eq!(params.callout_enabled.as_ref().unwrap().line, 8);
    assert_eq!(
        params.database_path_or_default(),
        r"%SystemRoot%\System32\dhcp"
    );
    assert_eq!(params.database_name_or_default(), "dhcp.mdb");
}

#[test]
fn every_fixture_survives_write_then_read() {
    for file in reg_files() {
        let (tree, _) = read(&file);
        let mut again = RegistryTree::new();
        let warnings = again
            .apply_bytes(&write_reg_v5(&tree), Path::new("written.reg"))
            .unwrap();
        assert!(warnings.is_empty(), "{}: {warnings:?}", file.display());
        assert_eq!(again, tree, "{}", file.display());
    }
}

/// Hand-made quirks both readers handle, compared value by value (names case-insensitively).
#[test]
fn inline_quirks_match_regashii() {
    let text = concat!(
        "Windows Registry Editor Version 5.00 ; header comment\r\n",
        "\r\n",
        "[HKEY_CURRENT_USER\\Software\\calloutd\\Quirks] trailing text\r\n",
        "\"Mixed\"=\"first\"\r\n",
        "\"MIXED\"=\"last wins\"\r\n",
        "\"gone\"=dword:00000001\r\n",
        "\"GONE\"=-\r\n",
        "\"esc\\\\aped\\\"\"=\"v\\\\al\\\"ue\"\r\n",
        "\"wrapped\"=hex(7):61,00,00,00,\\ ; comment\r\n",
        "  62,00,00,00,00,00\r\n",
        "\"qword\"=hex(b):01,02,03,04,05,06,07,08\r\n",
        "\"unknown\"=hex(1f):01\r\n",
        "\"dropped\"=dword:00000001\\\r\n",
        "\"be\"=hex(5):00,00,01,00\r\n",
    );
    let oracle = regashii::Registry::deserialize(text).unwrap();
    let mut tree = RegistryTree::new();
    let warnings = tree.apply_str(text, Path::new("inline.reg")).unwrap();
    assert_eq!(warnings.iter().map(|w| w.line).collect::<Vec<_>>(), [13]);
    let path = r"HKEY_CURRENT_USER\Software\calloutd\Quirks";
    let key = &oracle.keys()[&regashii::KeyName::new(path)];
    let ours = tree.key(path).unwrap();
    // regashii records `"GONE"=-` as a pending deletion (it models the file, not the result); we
    // apply it, so the value is simply absent.
    assert_eq!(
        key.values()[&regashii::ValueName::named("GONE")],
        regashii::Value::Delete
    );
    assert!(ours.value("gone").is_none());
    let applied: Vec<_> = key
        .values()
        .iter()
        .filter(|(_, v)| **v != regashii::Value::Delete)
        .collect();
    assert_eq!(ours.values().len(), applied.len());
    for (name, value) in applied {
        let got = ours.value(name.raw()).unwrap();
        if name.raw() == "be" {
            // regashii turns hex(5) into a plain Dword (0x00000100 read big-endian = 256); the type
            // stays REG_DWORD_BIG_ENDIAN in the registry, and docs/config.md section 1 lists it as
            // such.
            assert_eq!(value, &regashii::Value::Dword(256));
            assert_eq!(got.data(), &RegValueData::DwordBigEndian(256));
            continue;
        }
        assert_eq!(got.data(), &expected_from_regashii(value), "{name:?}");
    }
    // Both keep the spelling the value was created with, as the registry does.
    assert!(key
        .values()
        .contains_key(&regashii::ValueName::named("Mixed")));
    assert_eq!(ours.value("mixed").unwrap().name(), "Mixed");
}
