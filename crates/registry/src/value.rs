//! Typed registry value data and its conversion to and from the raw bytes of `hex(N):` lists.

use std::fmt;

/// `REG_NONE`.
pub const REG_NONE: u32 = 0;
/// `REG_SZ`.
pub const REG_SZ: u32 = 1;
/// `REG_EXPAND_SZ`.
pub const REG_EXPAND_SZ: u32 = 2;
/// `REG_BINARY`.
pub const REG_BINARY: u32 = 3;
/// `REG_DWORD` (little-endian).
pub const REG_DWORD: u32 = 4;
/// `REG_DWORD_BIG_ENDIAN`.
pub const REG_DWORD_BIG_ENDIAN: u32 = 5;
/// `REG_LINK`.
pub const REG_LINK: u32 = 6;
/// `REG_MULTI_SZ`.
pub const REG_MULTI_SZ: u32 = 7;
/// `REG_RESOURCE_LIST`.
pub const REG_RESOURCE_LIST: u32 = 8;
/// `REG_FULL_RESOURCE_DESCRIPTOR`.
pub const REG_FULL_RESOURCE_DESCRIPTOR: u32 = 9;
/// `REG_RESOURCE_REQUIREMENTS_LIST`.
pub const REG_RESOURCE_REQUIREMENTS_LIST: u32 = 10;
/// `REG_QWORD` (little-endian).
pub const REG_QWORD: u32 = 11;

/// The data of one registry value, typed by its `REG_*` kind.
///
/// Data that a known kind cannot hold (a `hex(4)` with 1 byte, a `hex(1)` with an odd number of bytes
/// in a v5 file, invalid UTF-16) is kept as [`RegValueData::Other`] with its kind number, as the
/// registry itself would store it: regedit imports such values, and the typed [`crate::Parameters`]
/// view reports them as having the wrong shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegValueData {
    /// `REG_NONE` (`hex(0):`), with whatever bytes it carries.
    None(Vec<u8>),
    /// `REG_SZ`: `"text"` or `hex(1):`; trailing NULs (the terminator) are not part of the string.
    Sz(String),
    /// `REG_EXPAND_SZ` (`hex(2):`), unexpanded.
    ExpandSz(String),
    /// `REG_BINARY` (`hex:` or `hex(3):`).
    Binary(Vec<u8>),
    /// `REG_DWORD` (`dword:` or a 4-byte `hex(4):`).
    Dword(u32),
    /// `REG_DWORD_BIG_ENDIAN` (a 4-byte `hex(5):`).
    DwordBigEndian(u32),
    /// `REG_LINK` (`hex(6):`): raw bytes (a UTF-16LE path without terminator).
    Link(Vec<u8>),
    /// `REG_MULTI_SZ` (`hex(7):`): every string of the list, empty ones in the middle included.
    MultiSz(Vec<String>),
    /// `REG_RESOURCE_LIST` (`hex(8):`), raw.
    ResourceList(Vec<u8>),
    /// `REG_FULL_RESOURCE_DESCRIPTOR` (`hex(9):`), raw.
    FullResourceDescriptor(Vec<u8>),
    /// `REG_RESOURCE_REQUIREMENTS_LIST` (`hex(a):`), raw.
    ResourceRequirementsList(Vec<u8>),
    /// `REG_QWORD` (an 8-byte `hex(b):`).
    Qword(u64),
    /// An unknown kind, or bytes that do not fit their known kind: kept as they were.
    Other {
        /// The `N` of `hex(N):`.
        kind: u32,
        /// The bytes as listed.
        bytes: Vec<u8>,
    },
}

/// How the strings inside `hex(1)`, `hex(2)` and `hex(7)` lists are encoded: UTF-16LE in version 5
/// files, single-byte ANSI (windows-1252) in REGEDIT4 files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringBytes {
    /// `Windows Registry Editor Version 5.00`: UTF-16LE code units, 2-byte NULs.
    Utf16Le,
    /// `REGEDIT4`: one byte per character (windows-1252), 1-byte NULs.
    Ansi,
}

impl RegValueData {
    /// The `REG_*` kind number of this data.
    pub fn kind(&self) -> u32 {
        match self {
            Self::None(_) => REG_NONE,
            Self::Sz(_) => REG_SZ,
            Self::ExpandSz(_) => REG_EXPAND_SZ,
            Self::Binary(_) => REG_BINARY,
            Self::Dword(_) => REG_DWORD,
            Self::DwordBigEndian(_) => REG_DWORD_BIG_ENDIAN,
            Self::Link(_) => REG_LINK,
            Self::MultiSz(_) => REG_MULTI_SZ,
            Self::ResourceList(_) => REG_RESOURCE_LIST,
            Self::FullResourceDescriptor(_) => REG_FULL_RESOURCE_DESCRIPTOR,
            Self::ResourceRequirementsList(_) => REG_RESOURCE_REQUIREMENTS_LIST,
            Self::Qword(_) => REG_QWORD,
            Self::Other { kind, .. } => *kind,
        }
    }

    /// Types the bytes of a `hex(N):` list (`hex:` is N = 3), decoding strings as `strings` says.
    pub fn from_hex(kind: u32, bytes: Vec<u8>, strings: StringBytes) -> Self {
        let other = |bytes| Self::Other { kind, bytes };
        match kind {
            REG_NONE => Self::None(bytes),
            REG_SZ => match decode_string(&bytes, strings) {
                Some(text) => Self::Sz(text),
                None => other(bytes),
            },
            REG_EXPAND_SZ => match decode_string(&bytes, strings) {
                Some(text) => Self::ExpandSz(text),
                None => other(bytes),
            },
            REG_BINARY => Self::Binary(bytes),
            REG_DWORD => match <[u8; 4]>::try_from(bytes.as_slice()) {
                Ok(four) => Self::Dword(u32::from_le_bytes(four)),
                Err(_) => other(bytes),
            },
            REG_DWORD_BIG_ENDIAN => match <[u8; 4]>::try_from(bytes.as_slice()) {
                Ok(four) => Self::DwordBigEndian(u32::from_be_bytes(four)),
                Err(_) => other(bytes),
            },
            REG_LINK => Self::Link(bytes),
            REG_MULTI_SZ => match decode_multi_sz(&bytes, strings) {
                Some(list) => Self::MultiSz(list),
                None => other(bytes),
            },
            REG_RESOURCE_LIST => Self::ResourceList(bytes),
            REG_FULL_RESOURCE_DESCRIPTOR => Self::FullResourceDescriptor(bytes),
            REG_RESOURCE_REQUIREMENTS_LIST => Self::ResourceRequirementsList(bytes),
            REG_QWORD => match <[u8; 8]>::try_from(bytes.as_slice()) {
                Ok(eight) => Self::Qword(u64::from_le_bytes(eight)),
                Err(_) => other(bytes),
            },
            _ => other(bytes),
        }
    }

    /// The bytes the registry stores for this data, strings as UTF-16LE with terminators (what a
    /// version 5 `hex(N):` list holds).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::None(bytes)
            | Self::Binary(bytes)
            | Self::Link(bytes)
            | Self::ResourceList(bytes)
            | Self::FullResourceDescriptor(bytes)
            | Self::ResourceRequirementsList(bytes)
            | Self::Other { bytes, .. } => bytes.clone(),
            Self::Sz(text) | Self::ExpandSz(text) => {
                let mut out = utf16le(text);
                out.extend_from_slice(&[0, 0]);
                out
            }
            Self::Dword(n) => n.to_le_bytes().to_vec(),
            Self::DwordBigEndian(n) => n.to_be_bytes().to_vec(),
            Self::MultiSz(list) => encode_multi_sz(list),
            Self::Qword(n) => n.to_le_bytes().to_vec(),
        }
    }
}

/// The Microsoft name of a `REG_*` kind number, e.g. `REG_MULTI_SZ`, or `type N` for unknown ones.
pub fn kind_name(kind: u32) -> String {
    let name = match kind {
        REG_NONE => "REG_NONE",
        REG_SZ => "REG_SZ",
        REG_EXPAND_SZ => "REG_EXPAND_SZ",
        REG_BINARY => "REG_BINARY",
        REG_DWORD => "REG_DWORD",
        REG_DWORD_BIG_ENDIAN => "REG_DWORD_BIG_ENDIAN",
        REG_LINK => "REG_LINK",
        REG_MULTI_SZ => "REG_MULTI_SZ",
        REG_RESOURCE_LIST => "REG_RESOURCE_LIST",
        REG_FULL_RESOURCE_DESCRIPTOR => "REG_FULL_RESOURCE_DESCRIPTOR",
        REG_RESOURCE_REQUIREMENTS_LIST => "REG_RESOURCE_REQUIREMENTS_LIST",
        REG_QWORD => "REG_QWORD",
        other => return format!("type {other:#x}"),
    };
    name.to_string()
}

impl fmt::Display for RegValueData {
    /// A short human form, e.g. `REG_DWORD 0x00000001` or `REG_MULTI_SZ ["a.dll", "b.dll"]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = kind_name(self.kind());
        match self {
            Self::Sz(text) | Self::ExpandSz(text) => write!(f, "{kind} {text:?}"),
            Self::Dword(n) | Self::DwordBigEndian(n) => write!(f, "{kind} {n:#010x}"),
            Self::Qword(n) => write!(f, "{kind} {n:#018x}"),
            Self::MultiSz(list) => write!(f, "{kind} {list:?}"),
            other => write!(f, "{kind} ({} bytes)", other.to_bytes().len()),
        }
    }
}

/// UTF-16LE bytes of `text`, without terminator.
pub(crate) fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Code units (u16 for UTF-16, u8 widened for ANSI) of string data; `None` for an odd UTF-16 length.
fn code_units(bytes: &[u8], strings: StringBytes) -> Option<Vec<u16>> {
    match strings {
        StringBytes::Utf16Le => {
            if !bytes.len().is_multiple_of(2) {
                return None;
            }
            Some(
                bytes
                    .chunks_exact(2)
                    .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
                    .collect(),
            )
        }
        StringBytes::Ansi => Some(bytes.iter().map(|&b| u16::from(b)).collect()),
    }
}

/// Decodes one run of code units (no NULs inside) as text.
fn units_to_string(units: &[u16], strings: StringBytes) -> Option<String> {
    match strings {
        StringBytes::Utf16Le => String::from_utf16(units).ok(),
        StringBytes::Ansi => {
            // ANSI units were widened from bytes, so the narrowing is lossless.
            let bytes: Vec<u8> = units.iter().map(|&u| u as u8).collect();
            let (text, _, _) = encoding_rs::WINDOWS_1252.decode(&bytes);
            Some(text.into_owned())
        }
    }
}

/// A REG_SZ / REG_EXPAND_SZ string: trailing NULs are the terminator and are dropped; a missing
/// terminator is accepted.
fn decode_string(bytes: &[u8], strings: StringBytes) -> Option<String> {
    let units = code_units(bytes, strings)?;
    let end = units.iter().rposition(|&u| u != 0).map_or(0, |i| i + 1);
    units_to_string(&units[..end], strings)
}

/// A REG_MULTI_SZ list. Each string ends with a NUL and the list with one more NUL; a lone NUL is the
/// empty list. Real exports also show a missing final terminator (`a\0b\0`), no terminator at all, and
/// empty strings in the middle (`a\0\0b\0\0`), which are kept as `""` entries.
fn decode_multi_sz(bytes: &[u8], strings: StringBytes) -> Option<Vec<String>> {
    let mut units = code_units(bytes, strings)?;
    if units.len() <= 1 && units.iter().all(|&u| u == 0) {
        return Some(Vec::new());
    }
    // The list terminator: the last of two closing NULs.
    if units.ends_with(&[0, 0]) {
        units.pop();
    }
    let terminated = units.last() == Some(&0);
    if terminated {
        units.pop();
    }
    units
        .split(|&u| u == 0)
        .map(|run| units_to_string(run, strings))
        .collect()
}

/// UTF-16LE multi-sz bytes: every string NUL-terminated, plus the list's closing NUL.
fn encode_multi_sz(list: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for text in list {
        out.extend(utf16le(text));
        out.extend_from_slice(&[0, 0]);
    }
    out.extend_from_slice(&[0, 0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v5_multi(bytes: &[u8]) -> RegValueData {
        RegValueData::from_hex(REG_MULTI_SZ, bytes.to_vec(), StringBytes::Utf16Le)
    }

    fn list(items: &[&str]) -> RegValueData {
        RegValueData::MultiSz(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn multi_sz_v5_shapes() {
        assert_eq!(v5_multi(&[0, 0]), list(&[]));
        assert_eq!(v5_multi(&[]), list(&[]));
        assert_eq!(v5_multi(&[0x61, 0, 0, 0, 0, 0]), list(&["a"]));
        // Missing final terminator.
        assert_eq!(v5_multi(&[0x61, 0, 0, 0]), list(&["a"]));
        // No terminator at all.
        assert_eq!(v5_multi(&[0x61, 0]), list(&["a"]));
        // Empty string in the middle, with and without the final terminator.
        assert_eq!(
            v5_multi(&[0x61, 0, 0, 0, 0, 0, 0x62, 0, 0, 0, 0, 0]),
            list(&["a", "", "b"])
        );
        assert_eq!(
            v5_multi(&[0x61, 0, 0, 0, 0, 0, 0x62, 0, 0, 0]),
            list(&["a", "", "b"])
        );
        // Odd length cannot be UTF-16: kept raw.
        assert_eq!(
            v5_multi(&[0x61]),
            RegValueData::Other {
                kind: REG_MULTI_SZ,
                bytes: vec![0x61]
            }
        );
    }

    #[test]
    fn multi_sz_ansi_is_single_byte() {
        let data =
            RegValueData::from_hex(REG_MULTI_SZ, vec![0x61, 0, 0xe9, 0, 0], StringBytes::Ansi);
        assert_eq!(data, list(&["a", "é"]));
        assert_eq!(
            RegValueData::from_hex(REG_MULTI_SZ, vec![0], StringBytes::Ansi),
            list(&[])
        );
    }

    #[test]
    fn multi_sz_encode_decode_round_trip() {
        for items in [
            &[][..],
            &["a"],
            &["a", "", "b"],
            &[""],
            &["a", ""],
            &["Ünï", "c.dll"],
        ] {
            let data = list(items);
            let back = RegValueData::from_hex(REG_MULTI_SZ, data.to_bytes(), StringBytes::Utf16Le);
            assert_eq!(back, data, "{items:?}");
        }
    }

    #[test]
    fn fixed_size_kinds_need_exact_lengths() {
        let d =
            |kind, bytes: &[u8]| RegValueData::from_hex(kind, bytes.to_vec(), StringBytes::Utf16Le);
        assert_eq!(d(REG_DWORD, &[1, 0, 0, 0]), RegValueData::Dword(1));
        assert_eq!(
            d(REG_DWORD_BIG_ENDIAN, &[0, 0, 0, 1]),
            RegValueData::DwordBigEndian(1)
        );
        assert_eq!(
            d(REG_QWORD, &[0xff, 0, 0, 0, 0, 0, 0, 0]),
            RegValueData::Qword(255)
        );
        assert_eq!(
            d(REG_DWORD, &[0]),
            RegValueData::Other {
                kind: REG_DWORD,
                bytes: vec![0]
            }
        );
        assert_eq!(
            d(REG_DWORD_BIG_ENDIAN, &[0, 1]),
            RegValueData::Other {
                kind: REG_DWORD_BIG_ENDIAN,
                bytes: vec![0, 1]
            }
        );
        assert_eq!(
            d(0x20, &[1, 2]),
            RegValueData::Other {
                kind: 0x20,
                bytes: vec![1, 2]
            }
        );
    }

    #[test]
    fn strings_drop_terminators_only() {
        let sz = RegValueData::from_hex(
            REG_SZ,
            vec![0x61, 0, 0x0a, 0, 0x62, 0, 0, 0],
            StringBytes::Utf16Le,
        );
        assert_eq!(sz, RegValueData::Sz("a\nb".into()));
        let unterminated =
            RegValueData::from_hex(REG_EXPAND_SZ, vec![0x61, 0], StringBytes::Utf16Le);
        assert_eq!(unterminated, RegValueData::ExpandSz("a".into()));
        let ansi = RegValueData::from_hex(REG_EXPAND_SZ, vec![0x61, 0], StringBytes::Ansi);
        assert_eq!(ansi, RegValueData::ExpandSz("a".into()));
    }
}
