//! Property tests: arbitrary input never panics, and written trees read back unchanged.

use std::path::Path;

use calloutd_registry::{write_reg_v5, Parameters, RegValueData, RegistryTree, ROOT_KEYS};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    // Bounded so the suite stays quick on a shared 2-core machine.
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// Lines that look like `.reg` statements, with the characters that matter to the parser.
fn reg_like_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[\\[\\]\\\\\"@=;:,\\-a-z0-9 ()]{0,30}",
        "\\[-?HKEY_(LOCAL_MACHINE|CURRENT_USER)(\\\\[a-zA-Z\\]\\\\]{0,6}){0,3}\\]?[ a-z;]{0,5}",
        "\"[a-zé\\\\\"]{0,6}\"?=(-|\"[a-z\\\\\"]{0,6}\"?|dword:[0-9a-fA-FxZ]{0,10}\\\\?|hex(\\([0-9a-fz]{0,3}\\))?:([0-9a-fA-F]{1,3},?){0,8}\\\\?)[ ;a-z]{0,4}",
        " {0,3}([0-9a-f]{2},){0,6}\\\\?",
    ]
}

fn segment() -> impl Strategy<Value = String> {
    "[A-Za-z0-9 _.\\-\\[\\]é;\"@=]{1,8}"
}

fn text() -> impl Strategy<Value = String> {
    // No NUL: a trailing NUL is a string's terminator in the registry, so it does not survive.
    "[^\u{0}]{0,12}"
}

fn data() -> impl Strategy<Value = RegValueData> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        bytes().prop_map(RegValueData::None),
        text().prop_map(RegValueData::Sz),
        text().prop_map(RegValueData::ExpandSz),
        bytes().prop_map(RegValueData::Binary),
        any::<u32>().prop_map(RegValueData::Dword),
        any::<u32>().prop_map(RegValueData::DwordBigEndian),
        bytes().prop_map(RegValueData::Link),
        proptest::collection::vec(text(), 0..4).prop_map(RegValueData::MultiSz),
        bytes().prop_map(RegValueData::ResourceList),
        any::<u64>().prop_map(RegValueData::Qword),
        (12u32..100_000, bytes()).prop_map(|(kind, bytes)| RegValueData::Other { kind, bytes }),
    ]
}

type Assignment = (usize, Vec<String>, String, RegValueData);

fn assignment() -> impl Strategy<Value = Assignment> {
    (
        0..ROOT_KEYS.len(),
        proptest::collection::vec(segment(), 1..4),
        "[^\r\n\u{0}]{0,10}",
        data(),
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), v5 in any::<bool>()) {
        let mut tree = RegistryTree::new();
        let _ = tree.apply_bytes(&bytes, Path::new("fuzz.reg"));
        // Also past the header check, where the real parsing happens.
        let mut with_header = if v5 { b"Windows Registry Editor Version 5.00\r\n".to_vec() } else { b"REGEDIT4\n".to_vec() };
        with_header.extend(&bytes);
        let _ = tree.apply_bytes(&with_header, Path::new("fuzz.reg"));
        let _ = Parameters::from_tree(&tree);
    }

    #[test]
    fn reg_like_text_never_panics_and_warnings_point_at_real_lines(lines in proptest::collection::vec(reg_like_line(), 0..25)) {
        let text = format!("Windows Registry Editor Version 5.00\n{}", lines.join("\n"));
        let mut tree = RegistryTree::new();
        let warnings = tree.apply_str(&text, Path::new("fuzz.reg")).unwrap();
        let line_count = lines.len() + 1;
        for warning in &warnings {
            prop_assert!(warning.line >= 2 && warning.line <= line_count, "{warning}");
        }
        // Whatever was read can be written and read back unchanged.
        let mut again = RegistryTree::new();
        let rewarnings = again.apply_bytes(&write_reg_v5(&tree), Path::new("w.reg")).unwrap();
        prop_assert!(rewarnings.is_empty(), "{rewarnings:?}");
        prop_assert_eq!(again, tree);
    }

    #[test]
    fn written_trees_read_back_unchanged(assignments in proptest::collection::vec(assignment(), 0..12)) {
        let mut tree = RegistryTree::new();
        for (root, segments, name, data) in assignments {
            let path = format!("{}\\{}", ROOT_KEYS[root], segments.join("\\"));
            tree.set_value(&path, &name, data, None).unwrap();
        }
        let mut again = RegistryTree::new();
        let warnings = again.apply_bytes(&write_reg_v5(&tree), Path::new("w.reg")).unwrap();
        prop_assert!(warnings.is_empty(), "{warnings:?}");
        prop_assert_eq!(again, tree);
    }
}
