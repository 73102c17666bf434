//! What makes two datagrams "the same" for `DHCP_DROP_DUPLICATE` (docs/hooks.md section 7): the
//! same xid, hardware address and DHCP message type, or, for bytes that are not a readable BOOTP
//! message, the same bytes. A REQUEST that reuses its DISCOVER's xid differs in message type, so it
//! is never a duplicate of that DISCOVER.
//!
//! The runtime reads these few fields itself, before the engine parses anything, so this is a
//! bounds-checked mini-parse of the raw bytes, not a decoder.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// Offset of `xid` in a BOOTP message.
const XID: usize = 4;
/// Offset of `chaddr` (16 bytes).
const CHADDR: usize = 28;
/// Offset of `sname` (64 bytes), an option area under overload.
const SNAME: usize = 44;
/// Offset of `file` (128 bytes), an option area under overload.
const FILE: usize = 108;
/// Offset of the magic cookie; the options follow it.
const COOKIE: usize = 236;
/// The DHCP magic cookie (RFC 2131 section 3).
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Option code of DHCP Message Type.
const OPT_MESSAGE_TYPE: u8 = 53;
/// Option code of Option Overload.
const OPT_OVERLOAD: u8 = 52;
const OPT_PAD: u8 = 0;
const OPT_END: u8 = 255;

/// The identity of a datagram for duplicate detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DuplicateKey {
    /// A readable BOOTP/DHCP message.
    Message {
        /// Transaction id.
        xid: u32,
        /// Hardware type.
        htype: u8,
        /// Hardware address length.
        hlen: u8,
        /// The 16-byte `chaddr` field as sent.
        chaddr: [u8; 16],
        /// DHCP message type (option 53); 0 for BOOTP (no option 53).
        message_type: u8,
    },
    /// Bytes too short or malformed to read as a message: their length and a 64-bit hash stand for
    /// them (a hash collision can only make a garbage datagram look like a duplicate of another).
    Bytes {
        /// Datagram length.
        len: usize,
        /// Hash of the bytes.
        hash: u64,
    },
}

impl DuplicateKey {
    /// The key of `bytes`: see the module doc.
    pub fn of(bytes: &[u8]) -> DuplicateKey {
        message_key(bytes).unwrap_or_else(|| {
            let mut hasher = DefaultHasher::new();
            bytes.hash(&mut hasher);
            DuplicateKey::Bytes {
                len: bytes.len(),
                hash: hasher.finish(),
            }
        })
    }
}

/// Reads xid, htype, hlen, chaddr and the message type; `None` if the header is truncated or the
/// option area is malformed.
fn message_key(bytes: &[u8]) -> Option<DuplicateKey> {
    let xid = u32::from_be_bytes(bytes.get(XID..XID + 4)?.try_into().ok()?);
    let chaddr: [u8; 16] = bytes.get(CHADDR..CHADDR + 16)?.try_into().ok()?;
    let htype = *bytes.get(1)?;
    let hlen = *bytes.get(2)?;
    // A message must at least reach the cookie; without a cookie it is BOOTP (type 0).
    let header = bytes.get(..COOKIE)?;
    let message_type = match bytes.get(COOKIE..COOKIE + 4) {
        Some(cookie) if cookie == MAGIC_COOKIE => message_type(bytes.get(COOKIE + 4..)?, header)?,
        _ => 0,
    };
    Some(DuplicateKey::Message {
        xid,
        htype,
        hlen,
        chaddr,
        message_type,
    })
}

/// Option 53 from the options field, or, under option overload, from `file` then `sname`
/// (RFC 2131 section 4.1 order). 0 when absent (BOOTP with a cookie); `None` when malformed.
fn message_type(options: &[u8], header: &[u8]) -> Option<u8> {
    let found = scan_options(options)?;
    if let Some(kind) = found.message_type {
        return Some(kind);
    }
    let overload = found.overload.unwrap_or(0);
    if overload & 1 != 0 {
        if let Some(kind) = scan_options(header.get(FILE..COOKIE)?)?.message_type {
            return Some(kind);
        }
    }
    if overload & 2 != 0 {
        if let Some(kind) = scan_options(header.get(SNAME..FILE)?)?.message_type {
            return Some(kind);
        }
    }
    Some(0)
}

/// What one option area says about options 53 and 52.
struct Scanned {
    message_type: Option<u8>,
    overload: Option<u8>,
}

/// Walks one option area; `None` if an option runs past the end of the area.
fn scan_options(area: &[u8]) -> Option<Scanned> {
    let mut found = Scanned {
        message_type: None,
        overload: None,
    };
    let mut at = 0;
    while let Some(&code) = area.get(at) {
        match code {
            OPT_PAD => at += 1,
            OPT_END => break,
            _ => {
                let len = usize::from(*area.get(at + 1)?);
                let value = area.get(at + 2..at + 2 + len)?;
                match code {
                    OPT_MESSAGE_TYPE => {
                        found.message_type = found.message_type.or(value.first().copied())
                    }
                    OPT_OVERLOAD => found.overload = found.overload.or(value.first().copied()),
                    _ => {}
                }
                at += 2 + len;
            }
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal BOOTP message with a cookie and the given options bytes.
    fn message(xid: u32, mac: [u8; 6], options: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; COOKIE];
        bytes[0] = 1;
        bytes[1] = 1;
        bytes[2] = 6;
        bytes[XID..XID + 4].copy_from_slice(&xid.to_be_bytes());
        bytes[CHADDR..CHADDR + 6].copy_from_slice(&mac);
        bytes.extend_from_slice(&MAGIC_COOKIE);
        bytes.extend_from_slice(options);
        bytes
    }

    const MAC: [u8; 6] = [0, 0x11, 0x22, 0x33, 0x44, 0x55];

    fn key_type(key: DuplicateKey) -> Option<u8> {
        match key {
            DuplicateKey::Message { message_type, .. } => Some(message_type),
            DuplicateKey::Bytes { .. } => None,
        }
    }

    #[test]
    fn reads_xid_chaddr_and_message_type() {
        let key = DuplicateKey::of(&message(0xDEAD_BEEF, MAC, &[53, 1, 1, 255]));
        let DuplicateKey::Message {
            xid,
            htype,
            hlen,
            chaddr,
            message_type,
        } = key
        else {
            panic!("not a message key: {key:?}");
        };
        assert_eq!(xid, 0xDEAD_BEEF);
        assert_eq!((htype, hlen), (1, 6));
        assert_eq!(&chaddr[..6], &MAC);
        assert_eq!(message_type, 1);
    }

    #[test]
    fn request_with_discover_xid_is_a_different_key() {
        let discover = DuplicateKey::of(&message(7, MAC, &[53, 1, 1, 255]));
        let request = DuplicateKey::of(&message(7, MAC, &[53, 1, 3, 50, 4, 1, 2, 3, 4, 255]));
        assert_ne!(discover, request);
        let retransmitted = DuplicateKey::of(&message(7, MAC, &[0, 0, 53, 1, 1, 255]));
        assert_eq!(discover, retransmitted);
    }

    #[test]
    fn different_client_or_xid_is_a_different_key() {
        let a = DuplicateKey::of(&message(7, MAC, &[53, 1, 1, 255]));
        let other_mac = DuplicateKey::of(&message(7, [9; 6], &[53, 1, 1, 255]));
        let other_xid = DuplicateKey::of(&message(8, MAC, &[53, 1, 1, 255]));
        assert_ne!(a, other_mac);
        assert_ne!(a, other_xid);
    }

    #[test]
    fn bootp_without_cookie_or_option_53_is_type_zero() {
        let mut no_cookie = message(1, MAC, &[]);
        no_cookie.truncate(COOKIE);
        assert_eq!(key_type(DuplicateKey::of(&no_cookie)), Some(0));
        let wrong_cookie = {
            let mut bytes = message(1, MAC, &[255]);
            bytes[COOKIE] = 0;
            bytes
        };
        assert_eq!(key_type(DuplicateKey::of(&wrong_cookie)), Some(0));
        assert_eq!(
            key_type(DuplicateKey::of(&message(1, MAC, &[255]))),
            Some(0)
        );
        // Options running to the end of the datagram without an END option are fine.
        assert_eq!(
            key_type(DuplicateKey::of(&message(1, MAC, &[12, 1, b'x']))),
            Some(0)
        );
    }

    #[test]
    fn message_type_under_overload_is_found_in_file_then_sname() {
        let mut bytes = message(1, MAC, &[52, 1, 3, 255]);
        bytes[SNAME..SNAME + 4].copy_from_slice(&[53, 1, 5, 255]);
        assert_eq!(key_type(DuplicateKey::of(&bytes)), Some(5));
        bytes[FILE..FILE + 4].copy_from_slice(&[53, 1, 8, 255]);
        assert_eq!(key_type(DuplicateKey::of(&bytes)), Some(8));
        // Without the overload option the fields are not option areas.
        let mut plain = message(1, MAC, &[255]);
        plain[FILE..FILE + 4].copy_from_slice(&[53, 1, 8, 255]);
        assert_eq!(key_type(DuplicateKey::of(&plain)), Some(0));
    }

    #[test]
    fn truncated_or_malformed_bytes_fall_back_to_a_bytes_key() {
        for bytes in [
            Vec::new(),
            vec![1u8; 10],
            message(1, MAC, &[])[..COOKIE - 1].to_vec(),
            message(1, MAC, &[53, 4, 1]),
            message(1, MAC, &[53]),
        ] {
            let key = DuplicateKey::of(&bytes);
            assert!(
                matches!(key, DuplicateKey::Bytes { len, .. } if len == bytes.len()),
                "{key:?} for {} bytes",
                bytes.len()
            );
        }
        let garbage = b"not a dhcp message".to_vec();
        assert_eq!(
            DuplicateKey::of(&garbage),
            DuplicateKey::of(&garbage.clone())
        );
        assert_ne!(
            DuplicateKey::of(&garbage),
            DuplicateKey::of(b"not a dhcp messagf")
        );
    }

    #[test]
    fn overload_pointing_at_malformed_area_is_malformed() {
        let mut bytes = message(1, MAC, &[52, 1, 1, 255]);
        bytes[FILE] = 53;
        bytes[FILE + 1] = 200;
        assert!(matches!(
            DuplicateKey::of(&bytes),
            DuplicateKey::Bytes { .. }
        ));
    }
}
