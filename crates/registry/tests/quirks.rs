//! Hand-made `.reg` inputs, one per quirk of docs/config.md section 1.

use std::path::{Path, PathBuf};

use calloutd_registry::{
    reg_v5_text, write_parameters_reg, write_reg_v5, Parameters, RegError, RegValueData,
    RegistryTree, Warning,
};

const V5: &str = "Windows Registry Editor Version 5.00";
const KEY: &str = r"HKEY_LOCAL_MACHINE\SOFTWARE\calloutd-test";

fn apply(text: &str) -> (RegistryTree, Vec<Warning>) {
    let mut tree = RegistryTree::new();
    let warnings = tree.apply_str(text, Path::new("t.reg")).unwrap();
    (tree, warnings)
}

/// A v5 file holding `body` under `[KEY]`; `body` starts on line 4.
fn v5(body: &str) -> String {
    format!("{V5}\n\n[{KEY}]\n{body}")
}

fn data(tree: &RegistryTree, name: &str) -> Option<RegValueData> {
    tree.value(KEY, name).map(|v| v.data().clone())
}

fn lines_of(warnings: &[Warning]) -> Vec<usize> {
    warnings.iter().map(|w| w.line).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn both_headers_are_accepted_and_text_after_them_ignored() {
    for header in [
        V5,
        "REGEDIT4",
        "Windows Registry Editor Version 5.00 ;blah",
        "REGEDIT4 trailing",
    ] {
        let (tree, warnings) = apply(&format!("{header}\n[{KEY}]\n\"a\"=dword:00000001\n"));
        assert!(warnings.is_empty(), "{header}: {warnings:?}");
        assert_eq!(data(&tree, "a"), Some(RegValueData::Dword(1)), "{header}");
    }
}

#[test]
fn anything_else_as_header_is_an_error_naming_the_file() {
    for text in [
        "",
        "REGEDIT5\n",
        "Windows Registry Editor Version 4.00\n",
        " REGEDIT4\n",
        "[HKEY_USERS\\x]\n",
    ] {
        let mut tree = RegistryTree::new();
        let error = tree.apply_str(text, Path::new("/etc/bad.reg")).unwrap_err();
        assert!(matches!(error, RegError::BadHeader { .. }), "{text:?}");
        assert!(error.to_string().starts_with("/etc/bad.reg:1: "), "{error}");
        assert_eq!(tree, RegistryTree::new());
    }
}

#[test]
fn unreadable_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.reg");
    let error = RegistryTree::new().apply_file(&missing).unwrap_err();
    assert!(matches!(error, RegError::Read { .. }));
    assert!(error.to_string().contains("missing.reg"), "{error}");
}

#[test]
fn every_encoding_reads_to_the_same_tree() {
    let text = format!("{V5}\r\n\r\n[{KEY}]\r\n\"café\"=\"crème brûlée\"\r\n");
    let utf16 = |big_endian: bool| -> Vec<u8> {
        let mut out = if big_endian {
            vec![0xFE, 0xFF]
        } else {
            vec![0xFF, 0xFE]
        };
        for unit in text.encode_utf16() {
            out.extend(if big_endian {
                unit.to_be_bytes()
            } else {
                unit.to_le_bytes()
            });
        }
        out
    };
    let mut utf8_bom = vec![0xEF, 0xBB, 0xBF];
    utf8_bom.extend(text.as_bytes());
    let (cp1252, _, _) = encoding_rs::WINDOWS_1252.encode(&text);
    assert!(
        std::str::from_utf8(&cp1252).is_err(),
        "the windows-1252 input must not be valid UTF-8"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut trees = Vec::new();
    for (name, bytes) in [
        ("utf16le.reg", utf16(false)),
        ("utf16be.reg", utf16(true)),
        ("utf8bom.reg", utf8_bom),
        ("utf8.reg", text.as_bytes().to_vec()),
        ("cp1252.reg", cp1252.into_owned()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let mut tree = RegistryTree::new();
        let warnings = tree.apply_file(&path).unwrap();
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
        assert_eq!(
            data(&tree, "CAFÉ"),
            Some(RegValueData::Sz("crème brûlée".into())),
            "{name}"
        );
        trees.push(tree);
    }
    assert!(trees.windows(2).all(|pair| pair[0] == pair[1]));
}

#[test]
fn crlf_and_lf_read_the_same() {
    let lf = v5("\"a\"=hex:01,\\\n  02\n\"b\"=\"x\"\n");
    let (with_lf, w1) = apply(&lf);
    let (with_crlf, w2) = apply(&lf.replace('\n', "\r\n"));
    assert!(w1.is_empty() && w2.is_empty());
    assert_eq!(with_lf, with_crlf);
    assert_eq!(
        data(&with_crlf, "a"),
        Some(RegValueData::Binary(vec![1, 2]))
    );
}

#[test]
fn every_hex_kind_in_a_v5_file() {
    let (tree, warnings) = apply(&v5(concat!(
        "\"none\"=hex(0):01,02\n",
        "\"sz\"=hex(1):61,00,62,00,00,00\n",
        "\"expand\"=hex(2):25,00,41,00,25,00,00,00\n",
        "\"binary\"=hex(3):ff\n",
        "\"binary-short\"=hex:\n",
        "\"dword\"=hex(4):2a,00,00,00\n",
        "\"dword-be\"=hex(5):00,00,00,2a\n",
        "\"link\"=hex(6):5c,00\n",
        "\"multi\"=hex(7):61,00,00,00,62,00,00,00,00,00\n",
        "\"res\"=hex(8):01\n",
        "\"full-res\"=hex(9):02\n",
        "\"res-req\"=hex(a):03\n",
        "\"qword\"=hex(b):2a,00,00,00,00,00,00,00\n",
        "\"unknown\"=hex(20):de,ad\n",
        "\"QWORD-UPPER\"=hex(B):01,00,00,00,00,00,00,00\n",
    )));
    assert!(warnings.is_empty(), "{warnings:?}");
    let expected = [
        ("none", RegValueData::None(vec![1, 2])),
        ("sz", RegValueData::Sz("ab".into())),
        ("expand", RegValueData::ExpandSz("%A%".into())),
        ("binary", RegValueData::Binary(vec![0xff])),
        ("binary-short", RegValueData::Binary(vec![])),
        ("dword", RegValueData::Dword(42)),
        ("dword-be", RegValueData::DwordBigEndian(42)),
        ("link", RegValueData::Link(vec![0x5c, 0])),
        ("multi", RegValueData::MultiSz(strings(&["a", "b"]))),
        ("res", RegValueData::ResourceList(vec![1])),
        ("full-res", RegValueData::FullResourceDescriptor(vec![2])),
        ("res-req", RegValueData::ResourceRequirementsList(vec![3])),
        ("qword", RegValueData::Qword(42)),
        (
            "unknown",
            RegValueData::Other {
                kind: 0x20,
                bytes: vec![0xde, 0xad],
            },
        ),
        ("qword-upper", RegValueData::Qword(1)),
    ];
    for (name, want) in expected {
        assert_eq!(data(&tree, name), Some(want), "{name}");
    }
}

#[test]
fn regedit4_strings_in_hex_are_single_byte_ansi() {
    let text = format!(
        "REGEDIT4\n\n[{KEY}]\n\"sz\"=hex(1):e9,00\n\"expand\"=hex(2):25,41,25,00\n\"multi\"=hex(7):61,00,e9,00,00\n\"empty\"=hex(7):00\n"
    );
    let (tree, warnings) = apply(&text);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(data(&tree, "sz"), Some(RegValueData::Sz("é".into())));
    assert_eq!(
        data(&tree, "expand"),
        Some(RegValueData::ExpandSz("%A%".into()))
    );
    assert_eq!(
        data(&tree, "multi"),
        Some(RegValueData::MultiSz(strings(&["a", "é"])))
    );
    assert_eq!(data(&tree, "empty"), Some(RegValueData::MultiSz(vec![])));
}

#[test]
fn multi_sz_edge_cases_and_the_callout_dlls_view() {
    let (tree, warnings) = apply(&v5(concat!(
        "\"empty\"=hex(7):00,00\n",
        "\"unterminated\"=hex(7):61,00,00,00,62,00,00,00\n",
        "\"middle\"=hex(7):61,00,00,00,00,00,62,00,00,00,00,00\n",
    )));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(data(&tree, "empty"), Some(RegValueData::MultiSz(vec![])));
    assert_eq!(
        data(&tree, "unterminated"),
        Some(RegValueData::MultiSz(strings(&["a", "b"])))
    );
    assert_eq!(
        data(&tree, "middle"),
        Some(RegValueData::MultiSz(strings(&["a", "", "b"])))
    );

    let params_key = r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\DHCPServer\Parameters";
    let text = format!(
        "{V5}\n[{params_key}]\n\"CalloutDlls\"=hex(7):61,00,00,00,00,00,62,00,00,00,00,00\n"
    );
    let (tree, _) = apply(&text);
    let params = Parameters::from_tree(&tree).unwrap();
    // The raw list keeps the empty string; CalloutDlls ends at it.
    assert_eq!(params.callout_dlls.unwrap().value, ["a"]);
}

#[test]
fn continuation_lines_with_comments_and_blank_lines() {
    let (tree, warnings) = apply(&v5(concat!(
        "\"a\"=hex:00,\\\n",
        "  01,\\ ; a comment after the backslash\n",
        "\n",
        "\t02 ; and after the last byte\n",
        "\"b\"=dword:00000002\n",
    )));
    assert!(warnings.is_empty(), "{warnings:?}");
    let a = tree.value(KEY, "a").unwrap();
    assert_eq!(a.data(), &RegValueData::Binary(vec![0, 1, 2]));
    assert_eq!(
        a.origin().unwrap().line,
        4,
        "the line where the statement starts"
    );
    assert_eq!(tree.value(KEY, "b").unwrap().origin().unwrap().line, 8);
}

#[test]
fn backslash_after_a_dword_drops_the_value_with_a_warning() {
    let (tree, warnings) = apply(&v5(
        "\"before\"=dword:00000001\n\"bad\"=dword:00000002\\\n\"after\"=dword:00000003\n",
    ));
    assert_eq!(lines_of(&warnings), [5]);
    assert!(warnings[0].reason.contains("\"bad\""), "{}", warnings[0]);
    assert!(
        warnings[0].reason.contains("not a line continuation"),
        "{}",
        warnings[0]
    );
    assert_eq!(data(&tree, "bad"), None);
    assert_eq!(data(&tree, "before"), Some(RegValueData::Dword(1)));
    // The next line is not swallowed as a continuation.
    assert_eq!(data(&tree, "after"), Some(RegValueData::Dword(3)));
}

#[test]
fn deleting_keys_and_values() {
    let text = format!(
        "{V5}\n\n[{KEY}\\sub\\deeper]\n\"x\"=\"1\"\n[{KEY}]\n\"keep\"=\"k\"\n\"gone\"=\"g\"\n\"GONE\"=-\n\
         [-{KEY}\\SUB]\n\"orphan\"=\"o\"\n[-{KEY}\\never-existed]\n"
    );
    let (tree, warnings) = apply(&text);
    assert!(
        tree.key(&format!("{KEY}\\sub")).is_none(),
        "[-key] deletes the subtree"
    );
    assert!(tree.key(KEY).is_some());
    assert_eq!(data(&tree, "keep"), Some(RegValueData::Sz("k".into())));
    assert_eq!(data(&tree, "gone"), None);
    // A value after a [-key] line has no key to go to.
    assert_eq!(lines_of(&warnings), [10]);
    assert!(warnings[0].reason.contains("line 9"), "{}", warnings[0]);
}

#[test]
fn deleting_then_recreating_a_key_starts_empty() {
    let text = format!("{V5}\n[{KEY}]\n\"a\"=\"1\"\n[-{KEY}]\n[{KEY}]\n\"b\"=\"2\"\n");
    let (tree, warnings) = apply(&text);
    assert!(warnings.is_empty());
    assert_eq!(data(&tree, "a"), None);
    assert_eq!(data(&tree, "b"), Some(RegValueData::Sz("2".into())));
}

#[test]
fn names_are_case_insensitive_keep_their_first_spelling_and_the_last_assignment_wins() {
    let text = format!(
        "{V5}\n[HKEY_LOCAL_MACHINE\\Software\\MiXed]\n\"Value\"=\"1\"\n\
         [hkey_local_machine\\SOFTWARE\\mixed]\n\"VALUE\"=\"2\"\n\"value\"=\"3\"\n"
    );
    let (tree, warnings) = apply(&text);
    assert!(warnings.is_empty(), "{warnings:?}");
    let key = tree.key(r"HKLM\software\MIXED").unwrap();
    assert_eq!(key.name(), "MiXed");
    assert_eq!(key.values().len(), 1);
    let value = key.value("vAlUe").unwrap();
    assert_eq!(value.name(), "Value");
    assert_eq!(value.data(), &RegValueData::Sz("3".into()));
    assert_eq!(value.origin().unwrap().line, 6);
    assert!(reg_v5_text(&tree).contains("[HKEY_LOCAL_MACHINE\\Software\\MiXed]\r\n\"Value\"=\"3\""));
}

#[test]
fn key_lines_run_to_the_last_bracket_and_create_parents() {
    let text = format!("{V5}\n  [HKEY_CURRENT_USER\\a\\b]c] trailing text ; here\n\"v\"=\"1\"\n[HKEY_CURRENT_USER\\a\\\\x\\]\n");
    let (tree, warnings) = apply(&text);
    assert!(warnings.is_empty(), "{warnings:?}");
    let key = tree.key(r"HKEY_CURRENT_USER\a\b]c").unwrap();
    assert_eq!(
        key.value("v").unwrap().data(),
        &RegValueData::Sz("1".into())
    );
    assert!(
        tree.key(r"HKEY_CURRENT_USER\a").is_some(),
        "parents are created"
    );
    assert!(
        tree.key(r"HKEY_CURRENT_USER\a\x").is_some(),
        "\\\\ and a trailing \\ are tolerated"
    );
}

#[test]
fn value_names_and_strings_unescape_only_backslash_and_quote() {
    let (tree, warnings) = apply(&v5(concat!(
        "\"a\\\\b\\\"c\"=\"d\\\\e\\\"f;g\" ; comment\n",
        "@=\"default\"\n",
        "\"@\"=\"named at\"\n",
        "\"path\"=\"C:\\dhcp\\n\"\n",
    )));
    assert_eq!(
        data(&tree, "a\\b\"c"),
        Some(RegValueData::Sz("d\\e\"f;g".into()))
    );
    assert_eq!(data(&tree, ""), Some(RegValueData::Sz("default".into())));
    assert_eq!(data(&tree, "@"), Some(RegValueData::Sz("named at".into())));
    // `\d` and `\n` are not escapes: the backslashes stay, and the line gets a warning saying so.
    assert_eq!(
        data(&tree, "path"),
        Some(RegValueData::Sz("C:\\dhcp\\n".into()))
    );
    assert_eq!(lines_of(&warnings), [7]);
    assert!(
        warnings[0].reason.contains("literal backslash"),
        "{}",
        warnings[0]
    );
}

#[test]
fn several_files_apply_in_order_onto_one_tree() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.reg");
    let second = dir.path().join("second.reg");
    std::fs::write(
        &first,
        v5("\"a\"=dword:00000001\n\"b\"=dword:00000001\n\"c\"=dword:00000001\n"),
    )
    .unwrap();
    std::fs::write(&second, v5("\"B\"=dword:00000002\n\"c\"=-\n")).unwrap();
    let mut tree = RegistryTree::new();
    assert!(tree.apply_file(&first).unwrap().is_empty());
    assert!(tree.apply_file(&second).unwrap().is_empty());
    assert_eq!(data(&tree, "a"), Some(RegValueData::Dword(1)));
    assert_eq!(data(&tree, "b"), Some(RegValueData::Dword(2)));
    assert_eq!(data(&tree, "c"), None);
    assert_eq!(tree.value(KEY, "a").unwrap().origin().unwrap().file, first);
    assert_eq!(tree.value(KEY, "b").unwrap().origin().unwrap().file, second);

    let (reversed, warnings) = RegistryTree::from_files(&[&second, &first]).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(data(&reversed, "b"), Some(RegValueData::Dword(1)));
    assert_eq!(data(&reversed, "c"), Some(RegValueData::Dword(1)));
    let missing = dir.path().join("missing.reg");
    assert!(RegistryTree::from_files(&[&first, &missing]).is_err());
}

#[test]
fn control_set_001_is_current_control_set_for_parameters() {
    let offline = r"HKEY_LOCAL_MACHINE\SYSTEM\ControlSet001\Services\DHCPServer\Parameters";
    let live = r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\DHCPServer\Parameters";
    let text = format!(
        "{V5}\n[{offline}]\n\"CalloutEnabled\"=dword:00000001\n\"BackupInterval\"=dword:00000005\n\
         [{live}]\n\"BackupInterval\"=dword:00000007\n"
    );
    let (tree, warnings) = apply(&text);
    assert!(warnings.is_empty());
    let params = Parameters::from_tree(&tree).unwrap();
    assert_eq!(params.callout_enabled.as_ref().unwrap().line, 3);
    // Both spellings set BackupInterval: the later line wins.
    assert_eq!(params.backup_interval_minutes(), 7);
    assert!(tree.key(live).is_some());
}

#[test]
fn wrong_types_are_errors_naming_value_and_file_line() {
    let key = r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\DHCPServer\Parameters";
    let text = format!(
        "{V5}\n\n[{key}]\n\"CalloutDlls\"=\"C:\\\\callouts\\\\a.dll\"\n\"CalloutEnabled\"=\"1\"\n\"BackupInterval\"=dword:0000003c\n"
    );
    let mut tree = RegistryTree::new();
    tree.apply_str(&text, Path::new("/cfg/dhcp.reg")).unwrap();
    let error = Parameters::from_tree(&tree).unwrap_err();
    assert_eq!(
        error.to_string(),
        "/cfg/dhcp.reg:4: CalloutDlls is REG_SZ, expected REG_MULTI_SZ\n\
         /cfg/dhcp.reg:5: CalloutEnabled is REG_SZ, expected REG_DWORD"
    );
}

#[test]
fn garbage_lines_are_warnings_with_exact_line_numbers() {
    let text = format!(
        "{V5}\n\
         [{KEY}]\n\
         garbage here\n\
         \"ok1\"=dword:00000001\n\
         \"no-equals\" dword:1\n\
         \"unterminated=\"x\n\
         \"bad-dword\"=dword:123456789\n\
         \"bad-hex\"=hex:01,zz,03\n\
         \"bad-type\"=hex(zz):01\n\
         \"bad-data\"=word:1\n\
         \"junk-after\"=\"x\" junk\n\
         [SOFTWARE\\no-root]\n\
         \"in-bad-key\"=\"x\"\n\
         [HKEY_CURRENT_USER\\unclosed\n\
         [{KEY}]\n\
         \"ends-early\"=hex:01,\\\n\
         \"ok2\"=hex:01,\\\n  02\n\
         \"past-eof\"=hex:01,\\\n"
    );
    let (tree, warnings) = apply(&text);
    let got: Vec<(usize, &str)> = warnings
        .iter()
        .map(|w| (w.line, w.reason.as_str()))
        .collect();
    assert_eq!(
        lines_of(&warnings),
        [3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 19],
        "{got:#?}"
    );
    assert!(
        warnings[0].reason.contains("unrecognised line"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[8].reason.contains("unknown root key"),
        "{}",
        warnings[8]
    );
    assert!(
        warnings[11]
            .reason
            .contains("line 17 starts a new statement"),
        "{}",
        warnings[11]
    );
    assert!(
        warnings[12].reason.contains("end of the file"),
        "{}",
        warnings[12]
    );
    assert_eq!(data(&tree, "ok1"), Some(RegValueData::Dword(1)));
    assert_eq!(data(&tree, "ok2"), Some(RegValueData::Binary(vec![1, 2])));
    assert_eq!(tree.key(KEY).unwrap().values().len(), 2);
    assert_eq!(warnings[0].to_string(), "t.reg:3: unrecognised line \"garbage here\" (expected [key], \"name\"=data, @=data or a ; comment); skipped");
}

#[test]
fn a_bad_hex_list_skips_its_continuation_lines_too() {
    let (tree, warnings) = apply(&v5(
        "\"bad\"=hex:01,zz,\\\n  02,\\\n  03\n\"ok\"=dword:00000001\n",
    ));
    assert_eq!(lines_of(&warnings), [4]);
    assert_eq!(data(&tree, "ok"), Some(RegValueData::Dword(1)));
    // Reported on the statement's line, naming the continuation line that holds the bad byte.
    let (tree, warnings) = apply(&v5(
        "\"bad\"=hex:01,\\\n  02,\\\n  0g\n\"ok\"=dword:00000001\n",
    ));
    assert_eq!(lines_of(&warnings), [4]);
    assert!(
        warnings[0].reason.contains("(on line 6)"),
        "{}",
        warnings[0]
    );
    assert_eq!(data(&tree, "ok"), Some(RegValueData::Dword(1)));
}

#[test]
fn values_before_any_key_are_reported() {
    let (_, warnings) = apply(&format!("{V5}\n\"early\"=\"x\"\n"));
    assert_eq!(lines_of(&warnings), [2]);
    assert!(warnings[0].reason.contains("before any [key]"));
}

fn every_kind_tree() -> RegistryTree {
    let mut tree = RegistryTree::new();
    let all = [
        RegValueData::None(vec![1]),
        RegValueData::Sz("plain \"quoted\" back\\slash ünï".into()),
        RegValueData::Sz("two\r\nlines".into()),
        RegValueData::ExpandSz(r"%SystemRoot%\System32\dhcp".into()),
        RegValueData::Binary((0..=255).collect()),
        RegValueData::Dword(0xdead_beef),
        RegValueData::DwordBigEndian(7),
        RegValueData::Link(vec![0x5c, 0]),
        RegValueData::MultiSz(strings(&["a", "", "b"])),
        RegValueData::MultiSz(vec![]),
        RegValueData::ResourceList(vec![8]),
        RegValueData::FullResourceDescriptor(vec![9]),
        RegValueData::ResourceRequirementsList(vec![10]),
        RegValueData::Qword(u64::MAX),
        RegValueData::Other {
            kind: 0x4000,
            bytes: vec![1, 2, 3],
        },
    ];
    for (i, data) in all.into_iter().enumerate() {
        tree.set_value(
            r"HKCU\Software\every kind",
            &format!("value {i}"),
            data,
            None,
        )
        .unwrap();
    }
    tree.set_value(
        r"HKCU\Software\every kind",
        "",
        RegValueData::Sz("default".into()),
        None,
    )
    .unwrap();
    tree.create_key(r"HKEY_USERS\.DEFAULT\empty key").unwrap();
    tree
}

#[test]
fn write_then_read_gives_the_same_tree() {
    let tree = every_kind_tree();
    let bytes = write_reg_v5(&tree);
    let mut again = RegistryTree::new();
    let warnings = again.apply_bytes(&bytes, Path::new("w.reg")).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(again, tree);
    // And regashii, as an independent reader, agrees on the strings and numbers.
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("w.reg");
    std::fs::write(&path, &bytes).unwrap();
    let oracle = regashii::Registry::deserialize_file(&path).unwrap();
    let key = &oracle.keys()[&regashii::KeyName::new(r"HKEY_CURRENT_USER\Software\every kind")];
    assert_eq!(
        key.values()[&regashii::ValueName::named("value 5")],
        regashii::Value::Dword(0xdead_beef)
    );
    assert_eq!(
        key.values()[&regashii::ValueName::named("value 2")],
        regashii::Value::Sz("two\r\nlines".into())
    );
    assert_eq!(
        key.values()[&regashii::ValueName::Default],
        regashii::Value::Sz("default".into())
    );
}

#[test]
fn parameters_file_points_calloutd_at_built_callouts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callouts.reg");
    std::fs::write(
        &path,
        write_parameters_reg(&["/build/b.so", "/build/a.so"], Some(1)),
    )
    .unwrap();
    let mut tree = RegistryTree::new();
    assert!(tree.apply_file(&path).unwrap().is_empty());
    let params = Parameters::from_tree(&tree).unwrap();
    let dlls = params.callout_dlls.unwrap();
    assert_eq!(dlls.value, ["/build/b.so", "/build/a.so"]);
    assert_eq!((dlls.file, dlls.line), (path, 4));
    assert_eq!(params.callout_enabled.unwrap().value, 1);
}

#[test]
fn roots_must_be_spelled_out_in_files_but_may_be_short_in_lookups() {
    let text = format!(
        "{V5}\n[HKLM\\SOFTWARE\\x]\n\"a\"=\"1\"\n[hkey_local_machine\\SOFTWARE\\x]\n\"b\"=\"2\"\n"
    );
    let (tree, warnings) = apply(&text);
    assert_eq!(lines_of(&warnings), [2, 3]);
    assert!(
        warnings[0].reason.contains("unknown root key \"HKLM\""),
        "{}",
        warnings[0]
    );
    let key = tree.key(r"HKLM\software\X").unwrap();
    assert!(key.value("a").is_none());
    assert_eq!(
        key.value("b").unwrap().data(),
        &RegValueData::Sz("2".into())
    );
    assert_eq!(
        tree.roots().map(|r| r.name()).collect::<Vec<_>>(),
        ["HKEY_LOCAL_MACHINE"]
    );
}
