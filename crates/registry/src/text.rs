//! Turning the bytes of a `.reg` file into text: BOM sniffing, UTF-8, windows-1252 fallback.

use std::path::Path;

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8, WINDOWS_1252};

use crate::error::Warning;

/// Decodes `.reg` file bytes: BOM `FF FE` → UTF-16LE, `FE FF` → UTF-16BE, `EF BB BF` → UTF-8;
/// without a BOM, UTF-8 when valid, else windows-1252 (REGEDIT4's usual ANSI code page).
///
/// Malformed sequences under a BOM become U+FFFD and one warning (naming the first such line).
pub fn decode_reg_bytes(bytes: &[u8], origin: &Path) -> (String, Vec<Warning>) {
    let (encoding, body): (&'static Encoding, &[u8]) = match bytes {
        [0xFF, 0xFE, rest @ ..] => (UTF_16LE, rest),
        [0xFE, 0xFF, rest @ ..] => (UTF_16BE, rest),
        [0xEF, 0xBB, 0xBF, rest @ ..] => (UTF_8, rest),
        _ => match std::str::from_utf8(bytes) {
            Ok(text) => return (text.to_string(), Vec::new()),
            Err(_) => (WINDOWS_1252, bytes),
        },
    };
    let (text, had_errors) = encoding.decode_without_bom_handling(body);
    let mut warnings = Vec::new();
    if had_errors {
        let line = text
            .find('\u{FFFD}')
            .map_or(0, |at| text[..at].matches('\n').count() + 1);
        warnings.push(Warning {
            file: origin.to_path_buf(),
            line,
            reason: format!(
                "malformed {} text; the bad bytes were replaced by U+FFFD",
                encoding.name()
            ),
        });
    }
    (text.into_owned(), warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> String {
        decode_reg_bytes(bytes, Path::new("t.reg")).0
    }

    #[test]
    fn detects_each_encoding() {
        let mut le = vec![0xFF, 0xFE];
        le.extend("Ré\r\n".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(decode(&le), "Ré\r\n");
        let mut be = vec![0xFE, 0xFF];
        be.extend("Ré\n".encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(decode(&be), "Ré\n");
        assert_eq!(decode(b"\xEF\xBB\xBFR\xC3\xA9"), "Ré");
        assert_eq!(decode(b"R\xC3\xA9"), "Ré");
        // Not UTF-8: windows-1252, where 0xE9 is é and 0x80 is the euro sign.
        assert_eq!(decode(b"R\xE9\x80"), "Ré€");
    }

    #[test]
    fn malformed_utf16_is_reported_on_its_line() {
        let mut le = vec![0xFF, 0xFE];
        le.extend("a\nb".encode_utf16().flat_map(u16::to_le_bytes));
        le.extend([0x00, 0xD8]); // lone high surrogate
        let (_, warnings) = decode_reg_bytes(&le, Path::new("t.reg"));
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].line, 2);
    }
}
