//! Turning file bytes into text (BOMs, UTF-16, windows-1252) and small shared parsers.

use std::time::Duration;

/// How the bytes were decoded, for a warning when it was a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// BOM or valid UTF-8: nothing to say.
    Clean,
    /// UTF-16 without a BOM, guessed from NUL bytes.
    GuessedUtf16,
    /// Not UTF-8: read as windows-1252.
    Windows1252,
}

/// Decodes a file: BOM FF FE → UTF-16LE; FE FF → UTF-16BE; EF BB BF → UTF-8; else UTF-16 when every
/// other byte is NUL, else UTF-8 if valid, else windows-1252 (lossless for single-byte text).
pub(crate) fn decode(bytes: &[u8]) -> (String, Decoded) {
    if let Some((enc, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = enc.decode_without_bom_handling(&bytes[bom_len..]);
        return (text.into_owned(), Decoded::Clean);
    }
    // UTF-16 of ASCII text is also valid UTF-8 (NULs and letters), so it is checked first.
    if looks_utf16(bytes) {
        let enc = if bytes.get(1) == Some(&0) {
            encoding_rs::UTF_16LE
        } else {
            encoding_rs::UTF_16BE
        };
        let (text, _) = enc.decode_without_bom_handling(bytes);
        return (text.into_owned(), Decoded::GuessedUtf16);
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return (s.to_string(), Decoded::Clean);
    }
    let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
    (text.into_owned(), Decoded::Windows1252)
}

/// True when the first bytes alternate text and NUL (ASCII in UTF-16 without a BOM).
fn looks_utf16(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(64)];
    if head.len() < 4 {
        return false;
    }
    let even_nuls = head.iter().step_by(2).filter(|b| **b == 0).count();
    let odd_nuls = head.iter().skip(1).step_by(2).filter(|b| **b == 0).count();
    let half = head.len() / 2;
    (odd_nuls * 10 >= half * 9 && even_nuls == 0) || (even_nuls * 10 >= half * 9 && odd_nuls == 0)
}

/// `text` trimmed and without a leading `0x`/`0X`.
pub(crate) fn strip_hex_prefix(text: &str) -> &str {
    let t = text.trim();
    t.strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t)
}

/// Two optional class names are the same: both absent, or equal ignoring ASCII case (as Windows compares).
pub(crate) fn same_class_name(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

/// Hex bytes as the formats write them: `0x4d53`, `4d534654`, `00-15-5d-8a-54-a1`, `00:15:...`. An odd
/// digit count gets a leading zero (`0x1` is one byte).
pub(crate) fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let t = strip_hex_prefix(text);
    let mut digits: Vec<u32> = Vec::with_capacity(t.len());
    for c in t.chars() {
        if matches!(c, '-' | ':' | ' ' | ',') {
            continue;
        }
        digits.push(c.to_digit(16)?);
    }
    if digits.len() % 2 == 1 {
        digits.insert(0, 0);
    }
    digits
        .chunks(2)
        .map(|p| u8::try_from(p[0] * 16 + p[1]).ok())
        .collect()
}

/// Bytes as Microsoft writes a client id: lower-case hex pairs joined by `-`.
pub fn dashed_hex(bytes: &[u8]) -> String {
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    parts.join("-")
}

/// An unsigned integer in decimal or `0x` hex.
pub(crate) fn parse_u64(text: &str) -> Option<u64> {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        t.parse().ok()
    }
}

/// A signed integer in decimal (or unsigned in hex), for option ids that may be out of range.
pub(crate) fn parse_i64(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.starts_with('-') {
        t.parse().ok()
    } else {
        parse_u64(t).and_then(|v| i64::try_from(v).ok())
    }
}

/// .NET's TimeSpan.MaxValue, which Windows writes for an unlimited lease.
pub(crate) const TIMESPAN_MAX: &str = "10675199.02:48:05.4775807";

/// Lease seconds Windows treats as unlimited (option 51 = 0xFFFFFFFF).
pub(crate) const UNLIMITED_SECS: u64 = 0xFFFF_FFFF;

/// A .NET TimeSpan `[-][d.]hh:mm:ss[.fffffff]`; `Some(None)` = unlimited (TimeSpan.MaxValue, `Unlimited`,
/// or 0xFFFFFFFF seconds and more). `None` = not a TimeSpan.
pub(crate) fn parse_timespan(text: &str) -> Option<Option<Duration>> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("infinite") {
        return Some(None);
    }
    let (days, clock) = match t.split_once(':') {
        Some((head, _)) if head.contains('.') => {
            let (d, rest) = t.split_once('.')?;
            (d.parse::<u64>().ok()?, rest)
        }
        _ => (0, t),
    };
    let mut parts = clock.split(':');
    let hours: u64 = parts.next()?.parse().ok()?;
    let minutes: u64 = parts.next()?.parse().ok()?;
    let sec_text = parts.next()?;
    if parts.next().is_some() || hours > 23 || minutes > 59 {
        return None;
    }
    let (secs, frac) = match sec_text.split_once('.') {
        Some((s, f)) => (s, Some(f)),
        None => (sec_text, None),
    };
    let secs: u64 = secs.parse().ok()?;
    if secs > 59 || days > 10_675_199 {
        return None;
    }
    let nanos = match frac {
        Some(f) if !f.is_empty() && f.len() <= 7 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let padded = format!("{f:0<9}");
            padded.parse::<u32>().ok()?
        }
        Some(_) => return None,
        None => 0,
    };
    let total = days * 86_400 + hours * 3_600 + minutes * 60 + secs;
    if total >= UNLIMITED_SECS {
        return Some(None);
    }
    Some(Some(Duration::new(total, nanos)))
}

/// A duration as a TimeSpan (`d.hh:mm:ss`, or `hh:mm:ss` under a day); `None` = unlimited.
pub(crate) fn format_timespan(d: Option<Duration>) -> String {
    let Some(d) = d else {
        return TIMESPAN_MAX.to_string();
    };
    let s = d.as_secs();
    let (days, h, m, sec) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60, s % 60);
    let frac = if d.subsec_nanos() > 0 {
        format!(".{:07}", d.subsec_nanos() / 100)
    } else {
        String::new()
    };
    if days > 0 {
        format!("{days}.{h:02}:{m:02}:{sec:02}{frac}")
    } else {
        format!("{h:02}:{m:02}:{sec:02}{frac}")
    }
}

/// `true`/`false` (any case) or `1`/`0`.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("true") || t == "1" {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") || t == "0" {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans() {
        assert_eq!(
            parse_timespan("8.00:00:00"),
            Some(Some(Duration::from_secs(691_200)))
        );
        assert_eq!(
            parse_timespan("00:30:00"),
            Some(Some(Duration::from_secs(1800)))
        );
        assert_eq!(
            parse_timespan("1.02:03:04.5"),
            Some(Some(Duration::new(93_784, 500_000_000)))
        );
        assert_eq!(parse_timespan(TIMESPAN_MAX), Some(None));
        assert_eq!(parse_timespan("Unlimited"), Some(None));
        for bad in [
            "",
            "8",
            "8.00:00",
            "25:00:00",
            "00:61:00",
            "x.00:00:00",
            "00:00:00.12345678",
            "99999999999999999999.00:00:00",
        ] {
            assert_eq!(parse_timespan(bad), None, "{bad}");
        }
        for d in [
            Some(Duration::from_secs(691_200)),
            Some(Duration::from_secs(1800)),
            None,
            Some(Duration::new(5, 100)),
        ] {
            assert_eq!(parse_timespan(&format_timespan(d)), Some(d));
        }
        assert_eq!(
            format_timespan(Some(Duration::from_secs(691_200))),
            "8.00:00:00"
        );
    }

    #[test]
    fn hex_and_decoding() {
        assert_eq!(parse_hex("0x4d53"), Some(vec![0x4d, 0x53]));
        assert_eq!(
            parse_hex("00-15-5d-8a-54-a1"),
            Some(vec![0, 0x15, 0x5d, 0x8a, 0x54, 0xa1])
        );
        assert_eq!(parse_hex("0x1"), Some(vec![1]));
        assert_eq!(parse_hex("zz"), None);
        assert_eq!(dashed_hex(&[0, 0xab]), "00-ab");
        let utf16: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain("a\u{e9}".encode_utf16().flat_map(|u| u.to_le_bytes()))
            .collect();
        assert_eq!(decode(&utf16), ("a\u{e9}".to_string(), Decoded::Clean));
        let bare16: Vec<u8> = "<DHCPServer>"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(
            decode(&bare16),
            ("<DHCPServer>".to_string(), Decoded::GuessedUtf16)
        );
        assert_eq!(
            decode(b"caf\xe9"),
            ("caf\u{e9}".to_string(), Decoded::Windows1252)
        );
        assert_eq!(
            decode(b"\xef\xbb\xbfok"),
            ("ok".to_string(), Decoded::Clean)
        );
    }
}
