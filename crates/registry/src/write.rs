//! Writing a tree as a version 5 `.reg` file, laid out as regedit exports it.

use std::path::Path;

use crate::parse::HEADER_V5;
use crate::tree::RegistryTree;
use crate::value::{RegValueData, REG_BINARY, REG_EXPAND_SZ, REG_SZ};

/// The key `Parameters::from_tree` reads, as written by [`write_parameters_reg`].
pub const DHCP_PARAMETERS_KEY: &str =
    r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\DHCPServer\Parameters";

/// Regedit breaks a hex list once a line reaches this many characters (before the `\`).
const HEX_LINE_LIMIT: usize = 77;

/// The tree as a `Windows Registry Editor Version 5.00` file: UTF-16LE with BOM, CRLF line ends,
/// one `[key]` section per key (parents that only exist to hold subkeys are implied, not written),
/// strings as `"text"` (or `hex(1):` when they hold CR, LF or NUL), `dword:`, and `hex(N):` lists
/// wrapped with `,\` and a two-space indent as regedit wraps them.
pub fn write_reg_v5(tree: &RegistryTree) -> Vec<u8> {
    let text = reg_v5_text(tree);
    let mut out = vec![0xFF, 0xFE];
    out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    out
}

/// [`write_reg_v5`] into a file.
pub fn write_reg_v5_file(tree: &RegistryTree, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, write_reg_v5(tree))
}

/// The text of [`write_reg_v5`] before UTF-16 encoding (no BOM; CRLF line ends).
pub fn reg_v5_text(tree: &RegistryTree) -> String {
    let mut out = String::new();
    out.push_str(HEADER_V5);
    out.push_str("\r\n\r\n");
    for (path, key) in tree.walk_keys() {
        if key.values().is_empty() && key.subkeys().next().is_some() {
            continue;
        }
        out.push_str(&format!("[{path}]\r\n"));
        for value in key.values() {
            write_value(&mut out, value.name(), value.data());
        }
        out.push_str("\r\n");
    }
    out
}

/// A `.reg` file (v5 bytes) that sets `CalloutDlls` (REG_MULTI_SZ) and, when given, `CalloutEnabled`
/// (REG_DWORD) under [`DHCP_PARAMETERS_KEY`]: what tests use to point calloutd at built callouts.
pub fn write_parameters_reg<S: AsRef<str>>(
    callout_dlls: &[S],
    callout_enabled: Option<u32>,
) -> Vec<u8> {
    write_reg_v5(&parameters_tree(callout_dlls, callout_enabled))
}

/// The tree [`write_parameters_reg`] writes.
pub fn parameters_tree<S: AsRef<str>>(
    callout_dlls: &[S],
    callout_enabled: Option<u32>,
) -> RegistryTree {
    let mut tree = RegistryTree::new();
    let list = callout_dlls
        .iter()
        .map(|s| s.as_ref().to_string())
        .collect();
    let segments = [
        "SYSTEM",
        "CurrentControlSet",
        "Services",
        "DHCPServer",
        "Parameters",
    ];
    tree.set_in(
        "HKEY_LOCAL_MACHINE",
        &segments,
        "CalloutDlls",
        RegValueData::MultiSz(list),
        None,
    );
    if let Some(enabled) = callout_enabled {
        tree.set_in(
            "HKEY_LOCAL_MACHINE",
            &segments,
            "CalloutEnabled",
            RegValueData::Dword(enabled),
            None,
        );
    }
    tree
}

fn write_value(out: &mut String, name: &str, data: &RegValueData) {
    let prefix = if name.is_empty() {
        "@=".to_string()
    } else {
        format!("\"{}\"=", escape(name))
    };
    match data {
        RegValueData::Sz(text) if !text.contains(['\r', '\n', '\0']) => {
            out.push_str(&format!("{prefix}\"{}\"\r\n", escape(text)));
        }
        RegValueData::Dword(n) => out.push_str(&format!("{prefix}dword:{n:08x}\r\n")),
        other => {
            let kind = match other.kind() {
                REG_BINARY => "hex:".to_string(),
                // A string regedit can't quote: as UTF-16 bytes, like regashii and regedit do.
                REG_SZ => "hex(1):".to_string(),
                REG_EXPAND_SZ => "hex(2):".to_string(),
                n => format!("hex({n:x}):"),
            };
            out.push_str(&prefix);
            out.push_str(&kind);
            let line_len = prefix.chars().count() + kind.len();
            write_hex_list(out, &other.to_bytes(), line_len);
            out.push_str("\r\n");
        }
    }
}

/// Writes `aa,bb,...`, breaking with `,\` + CRLF + two spaces once a line reaches the limit.
fn write_hex_list(out: &mut String, bytes: &[u8], mut line_len: usize) {
    for (i, byte) in bytes.iter().enumerate() {
        out.push_str(&format!("{byte:02x}"));
        if i + 1 == bytes.len() {
            break;
        }
        out.push(',');
        line_len += 3;
        if line_len >= HEX_LINE_LIMIT {
            out.push_str("\\\r\n  ");
            line_len = 2;
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('\\', r"\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two-DLL example of docs/config.md section 1, byte for byte (modulo CRLF).
    #[test]
    fn writes_the_documented_callout_dlls_example() {
        let tree = parameters_tree(&[r"C:\callouts\a.dll", r"C:\callouts\b.dll"], Some(1));
        let expected = "Windows Registry Editor Version 5.00\n\n\
[HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Services\\DHCPServer\\Parameters]\n\
\"CalloutDlls\"=hex(7):43,00,3a,00,5c,00,63,00,61,00,6c,00,6c,00,6f,00,75,00,74,\\\n\
\x20 00,73,00,5c,00,61,00,2e,00,64,00,6c,00,6c,00,00,00,43,00,3a,00,5c,00,63,00,\\\n\
\x20 61,00,6c,00,6c,00,6f,00,75,00,74,00,73,00,5c,00,62,00,2e,00,64,00,6c,00,6c,\\\n\
\x20 00,00,00,00,00\n\
\"CalloutEnabled\"=dword:00000001\n\n";
        assert_eq!(reg_v5_text(&tree).replace("\r\n", "\n"), expected);
    }

    #[test]
    fn wraps_long_names_like_regedit() {
        // The layout regashii's irregular sample shows for a name longer than a line.
        let mut tree = RegistryTree::new();
        let name =
            "hex-continuations-with-long-name ............................................ end";
        tree.set_value(
            r"HKCU\k",
            name,
            RegValueData::Binary((0..32).collect()),
            None,
        )
        .unwrap();
        let text = reg_v5_text(&tree).replace("\r\n", "\n");
        let expected = format!(
            "\"{name}\"=hex:00,\\\n  01,02,03,04,05,06,07,08,09,0a,0b,0c,0d,0e,0f,10,11,12,13,14,15,16,17,18,19,\\\n  1a,1b,1c,1d,1e,1f\n"
        );
        assert!(text.contains(&expected), "{text}");
    }

    #[test]
    fn output_is_utf16le_with_bom_and_crlf() {
        let bytes = write_parameters_reg(&["a.so"], None);
        assert_eq!(&bytes[..2], &[0xFF, 0xFE]);
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]]))
            .collect();
        let text = String::from_utf16(&units).unwrap();
        assert!(text.starts_with("Windows Registry Editor Version 5.00\r\n\r\n"));
        assert!(!text.replace("\r\n", "").contains('\n'));
        assert!(!text.contains("CalloutEnabled"));
    }

    #[test]
    fn strings_with_line_breaks_become_hex1_and_escapes_apply() {
        let mut tree = RegistryTree::new();
        tree.set_value(
            r"HKCU\k",
            "a\"b\\c",
            RegValueData::Sz("x\\y\"z".into()),
            None,
        )
        .unwrap();
        tree.set_value(r"HKCU\k", "", RegValueData::Sz("a\nb".into()), None)
            .unwrap();
        let text = reg_v5_text(&tree);
        assert!(
            text.contains("\"a\\\"b\\\\c\"=\"x\\\\y\\\"z\"\r\n"),
            "{text}"
        );
        assert!(
            text.contains("@=hex(1):61,00,0a,00,62,00,00,00\r\n"),
            "{text}"
        );
    }
}
