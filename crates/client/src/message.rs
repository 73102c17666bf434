//! Building the client's requests and decoding the server's replies, on top of dhcproto.
//!
//! dhcproto encodes the fixed header and each option; this module chooses the option order a real
//! client uses (message type first), pads to the 300-byte BOOTP minimum, handles BOOTP without the
//! magic cookie, and decodes replies option by option in wire order (RFC 3396 concatenation and
//! RFC 2131 option overload included) so that every option is reported, even one dhcproto rejects.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};

use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode, UnknownOption};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use serde_json::{json, Value};

use crate::ClientError;

/// Minimum length of a BOOTP message (RFC 951): requests are zero-padded up to it.
pub const BOOTP_MIN_LEN: usize = 300;
/// Length of the fixed BOOTP header, up to and excluding the vendor area.
pub const HEADER_LEN: usize = 236;
/// Offset of the first option, after the magic cookie.
pub const OPTIONS_OFFSET: usize = 240;
/// Offset of the 16-byte client hardware address in the header.
pub const CHADDR_OFFSET: usize = 28;
/// Offset of the transaction id in the header.
pub const XID_OFFSET: usize = 4;
/// Offset of the `secs` field in the header.
pub const SECS_OFFSET: usize = 8;
const SNAME_RANGE: std::ops::Range<usize> = 44..108;
const FILE_RANGE: std::ops::Range<usize> = 108..236;

/// One option given as raw bytes, e.g. from `--option CODE=HEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOption {
    /// Option code (1..=254).
    pub code: u8,
    /// Option payload, without code and length.
    pub data: Vec<u8>,
}

impl std::str::FromStr for RawOption {
    type Err = String;

    /// Parses `CODE=HEX`: a decimal code 1..=254 and hex bytes (colons, dashes or spaces allowed,
    /// an empty value is a zero-length option).
    fn from_str(text: &str) -> Result<Self, String> {
        let (code, hex) = text
            .split_once('=')
            .ok_or_else(|| format!("option {text:?}: expected CODE=HEX"))?;
        let code: u8 = code
            .trim()
            .parse()
            .map_err(|_| format!("option {text:?}: code must be a number 1..=254"))?;
        if code == 0 || code == 255 {
            return Err(format!(
                "option {text:?}: codes 0 (pad) and 255 (end) are not options"
            ));
        }
        let data = parse_hex(hex).map_err(|e| format!("option {text:?}: {e}"))?;
        Ok(RawOption { code, data })
    }
}

/// Parses hex bytes, allowing `:`, `-`, `.` and spaces between them and an optional `0x` prefix.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    let text = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !matches!(b, b':' | b'-' | b'.' | b' '))
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("hex {text:?} has an odd number of digits"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let hi = hex_value(pair[0]);
            let lo = hex_value(pair[1]);
            match (hi, lo) {
                (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
                _ => Err(format!(
                    "hex {text:?} has a character that is not a hex digit"
                )),
            }
        })
        .collect()
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|v| v as u8)
}

/// Parses a MAC address `aa:bb:cc:dd:ee:ff` (also `-` separated or bare 12 hex digits).
pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let bytes = parse_hex(text).map_err(|e| format!("MAC {text:?}: {e}"))?;
    bytes
        .try_into()
        .map_err(|_| format!("MAC {text:?}: expected 6 bytes"))
}

/// Lower-case hex without separators.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Hex bytes joined with `:`, the usual MAC notation.
pub fn to_colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The upper-case name DHCP documents use for a message type (`ACK`, `NAK`...).
pub fn message_type_name(kind: MessageType) -> String {
    match kind {
        MessageType::Discover => "DISCOVER".into(),
        MessageType::Offer => "OFFER".into(),
        MessageType::Request => "REQUEST".into(),
        MessageType::Decline => "DECLINE".into(),
        MessageType::Ack => "ACK".into(),
        MessageType::Nak => "NAK".into(),
        MessageType::Release => "RELEASE".into(),
        MessageType::Inform => "INFORM".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

/// What one outgoing message carries besides the client's settings.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Option 53; `None` for a BOOTP request.
    pub kind: Option<MessageType>,
    /// The transaction id.
    pub xid: u32,
    /// `ciaddr` (the client's address when it has one in use).
    pub ciaddr: Ipv4Addr,
    /// `giaddr` (the relay agent's address, 0 for a direct client).
    pub giaddr: Ipv4Addr,
    /// `hops`.
    pub hops: u8,
    /// The BROADCAST flag.
    pub broadcast_flag: bool,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// BOOTP only: whether the vendor area starts with the magic cookie.
    pub magic_cookie: bool,
}

/// The client-identity options put in every message (RFC 2131 table 5 decides which).
#[derive(Debug, Clone, Default)]
pub struct Identity<'a> {
    /// chaddr.
    pub mac: [u8; 6],
    /// Option 61.
    pub client_id: Option<&'a [u8]>,
    /// Option 12.
    pub hostname: Option<&'a str>,
    /// Option 60.
    pub vendor_class: Option<&'a [u8]>,
    /// Option 77.
    pub user_class: Option<&'a [u8]>,
    /// Option 55 (omitted when empty).
    pub parameter_request_list: &'a [u8],
    /// Further options; one with the code of a built-in option replaces it in its place.
    pub extra_options: &'a [RawOption],
}

/// Encodes a request: header via dhcproto, options in the order a real client sends them
/// (53, 61, 50, 54, 12, 60, 77, 55, then extra options), END, zero padding to 300 bytes.
pub fn encode_request(id: &Identity<'_>, out: &Outgoing) -> Result<Vec<u8>, ClientError> {
    let mut header = v4::Message::new_with_id(
        out.xid,
        out.ciaddr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        out.giaddr,
        &id.mac,
    );
    header.set_hops(out.hops);
    if out.broadcast_flag {
        header.set_flags(v4::Flags::default().set_broadcast());
    }
    let mut bytes = Vec::with_capacity(BOOTP_MIN_LEN + 64);
    header
        .encode(&mut Encoder::new(&mut bytes))
        .map_err(|e| ClientError::Encode(e.to_string()))?;
    // An empty option set encodes as header + cookie only; the options are appended below.
    bytes.truncate(OPTIONS_OFFSET);

    if out.kind.is_none() && !out.magic_cookie {
        // RFC 951 BOOTP: a 64-byte vendor area of zeros, no cookie.
        bytes.truncate(HEADER_LEN);
        bytes.resize(BOOTP_MIN_LEN, 0);
        return Ok(bytes);
    }

    let lean = matches!(
        out.kind,
        Some(MessageType::Release) | Some(MessageType::Decline)
    );
    let mut options: Vec<DhcpOption> = Vec::new();
    if let Some(kind) = out.kind {
        options.push(DhcpOption::MessageType(kind));
    }
    if let Some(client_id) = id.client_id {
        options.push(DhcpOption::ClientIdentifier(client_id.to_vec()));
    }
    if let Some(ip) = out.requested_ip {
        options.push(DhcpOption::RequestedIpAddress(ip));
    }
    if let Some(ip) = out.server_id {
        options.push(DhcpOption::ServerIdentifier(ip));
    }
    if !lean {
        if let Some(name) = id.hostname {
            options.push(DhcpOption::Hostname(name.to_string()));
        }
        if let Some(class) = id.vendor_class {
            options.push(DhcpOption::ClassIdentifier(class.to_vec()));
        }
        if let Some(class) = id.user_class {
            options.push(DhcpOption::UserClass(class.to_vec()));
        }
        if !id.parameter_request_list.is_empty() {
            options.push(DhcpOption::ParameterRequestList(
                id.parameter_request_list
                    .iter()
                    .map(|&c| OptionCode::from(c))
                    .collect(),
            ));
        }
    }
    // An extra option replaces a built-in one with the same code, in its place.
    for extra in id.extra_options {
        let raw = DhcpOption::Unknown(UnknownOption::new(extra.code.into(), extra.data.clone()));
        match options
            .iter_mut()
            .find(|o| u8::from(OptionCode::from(&**o)) == extra.code)
        {
            Some(slot) => *slot = raw,
            None => options.push(raw),
        }
    }
    for option in &options {
        let code = u8::from(OptionCode::from(option));
        match option {
            // dhcproto writes nothing for an empty payload; a zero-length option is still an option.
            DhcpOption::Unknown(raw) if raw.data().is_empty() => bytes.extend([code, 0]),
            _ => {
                // dhcproto's Encoder writes from offset 0 of its buffer, hence a buffer per option.
                let mut encoded = Vec::with_capacity(16);
                option
                    .encode(&mut Encoder::new(&mut encoded))
                    .map_err(|e| ClientError::Encode(format!("option {code}: {e}")))?;
                bytes.extend_from_slice(&encoded);
            }
        }
    }
    bytes.push(u8::from(OptionCode::End));
    if bytes.len() < BOOTP_MIN_LEN {
        bytes.resize(BOOTP_MIN_LEN, 0);
    }
    Ok(bytes)
}

/// One option of a reply, as it came on the wire. Its name, typed value and rendering are made on
/// demand: decoding a reply (the harness does it for every exchange) only splits the options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedOption {
    /// Option code.
    pub code: u8,
    /// Payload bytes (concatenated when the option was split, RFC 3396).
    pub data: Vec<u8>,
}

impl DecodedOption {
    fn new(code: u8, data: Vec<u8>) -> Self {
        DecodedOption { code, data }
    }

    /// dhcproto's name for the code (`SubnetMask`, `ServerIdentifier`...), or `Option<N>`.
    pub fn name(&self) -> String {
        match OptionCode::from(self.code) {
            OptionCode::Unknown(n) => format!("Option{n}"),
            known => format!("{known:?}"),
        }
    }

    /// dhcproto's typed value, `None` when dhcproto rejects the payload.
    pub fn typed(&self) -> Option<DhcpOption> {
        decode_typed(self.code, &self.data)
    }

    /// A readable rendering of the value (addresses dotted, strings quoted, otherwise hex).
    pub fn value(&self) -> String {
        match &self.typed() {
            Some(option) => pretty_value(option, &self.data),
            None => format!("invalid: {}", to_hex(&self.data)),
        }
    }

    /// JSON: `{"code", "name", "hex", "value"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "code": self.code,
            "name": self.name(),
            "hex": to_hex(&self.data),
            "value": self.value(),
        })
    }
}

fn decode_typed(code: u8, data: &[u8]) -> Option<DhcpOption> {
    // Re-chunk into RFC 3396 pieces so dhcproto sees a well-formed option of any length.
    let mut wire = Vec::with_capacity(data.len() + 2 + data.len() / 255 * 2);
    if data.is_empty() {
        wire.extend([code, 0]);
    }
    for piece in data.chunks(255) {
        wire.push(code);
        wire.push(piece.len() as u8);
        wire.extend_from_slice(piece);
    }
    wire.push(u8::from(OptionCode::End));
    DhcpOption::decode(&mut Decoder::new(&wire)).ok()
}

fn join_ips(ips: &[Ipv4Addr]) -> String {
    ips.iter()
        .map(|ip| ip.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn text_or_hex(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.chars().all(|c| !c.is_control()) => format!("{text:?}"),
        _ => to_hex(bytes),
    }
}

fn pretty_value(option: &DhcpOption, data: &[u8]) -> String {
    use DhcpOption as O;
    match option {
        O::SubnetMask(ip)
        | O::SwapServer(ip)
        | O::BroadcastAddr(ip)
        | O::RouterSolicitationAddr(ip)
        | O::RequestedIpAddress(ip)
        | O::ServerIdentifier(ip)
        | O::SubnetSelection(ip)
        | O::TFTPServerAddress(ip) => ip.to_string(),
        O::Router(ips)
        | O::TimeServer(ips)
        | O::NameServer(ips)
        | O::DomainNameServer(ips)
        | O::LogServer(ips)
        | O::NisServers(ips)
        | O::NtpServers(ips)
        | O::NetBiosNameServers(ips)
        | O::NetBiosDatagramDistributionServer(ips) => join_ips(ips),
        O::Hostname(s)
        | O::DomainName(s)
        | O::RootPath(s)
        | O::Message(s)
        | O::NisDomain(s)
        | O::NetBiosScope(s) => format!("{s:?}"),
        O::AddressLeaseTime(secs) | O::Renewal(secs) | O::Rebinding(secs) => match *secs {
            u32::MAX => "infinite".into(),
            secs => format!("{secs}s"),
        },
        O::MessageType(kind) => message_type_name(*kind),
        O::ParameterRequestList(codes) => codes
            .iter()
            .map(|c| u8::from(*c).to_string())
            .collect::<Vec<_>>()
            .join(", "),
        O::ClientIdentifier(bytes) | O::VendorExtensions(bytes) | O::UserClass(bytes) => {
            to_colon_hex(bytes)
        }
        O::ClassIdentifier(bytes) | O::TFTPServerName(bytes) | O::BootfileName(bytes) => {
            text_or_hex(bytes)
        }
        O::MaxMessageSize(n) | O::InterfaceMtu(n) => n.to_string(),
        O::OptionOverload(n) => n.to_string(),
        O::Unknown(_) => to_hex(data),
        other => format!("{other:?}"),
    }
}

/// A reply from a server, decoded.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Option 53; `None` for a BOOTP reply.
    pub message_type: Option<MessageType>,
    /// Transaction id.
    pub xid: u32,
    /// Broadcast flag from the `flags` field.
    pub broadcast_flag: bool,
    /// Relay hop count.
    pub hops: u8,
    /// Client address field.
    pub ciaddr: Ipv4Addr,
    /// The address offered or acknowledged.
    pub yiaddr: Ipv4Addr,
    /// Next server (boot) address.
    pub siaddr: Ipv4Addr,
    /// Relay address copied from the request.
    pub giaddr: Ipv4Addr,
    /// Client hardware address (`hlen` bytes).
    pub chaddr: Vec<u8>,
    /// Server host name field, when not used for options.
    pub sname: Option<String>,
    /// Boot file field, when not used for options.
    pub file: Option<String>,
    /// Whether the vendor area starts with the magic cookie.
    pub magic_cookie: bool,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 51 in seconds.
    pub lease_time: Option<u32>,
    /// Option 58 in seconds.
    pub t1: Option<u32>,
    /// Option 59 in seconds.
    pub t2: Option<u32>,
    /// Every option, in wire order.
    pub options: Vec<DecodedOption>,
    /// Where the reply came from.
    pub from: Option<SocketAddr>,
    /// The reply exactly as received.
    pub raw: Vec<u8>,
}

impl Reply {
    /// Decodes a reply (op must be BOOTREPLY). Errors name what is wrong with the packet.
    pub fn decode(raw: &[u8], from: Option<SocketAddr>) -> Result<Reply, ClientError> {
        let bad = |reason: String| ClientError::Malformed { from, reason };
        if raw.len() < HEADER_LEN {
            return Err(bad(format!(
                "{} bytes, shorter than the 236-byte BOOTP header",
                raw.len()
            )));
        }
        if raw[0] != 2 {
            return Err(bad(format!("op {} is not BOOTREPLY", raw[0])));
        }
        // dhcproto needs the vendor area to exist; a 236-byte header-only reply has none.
        let mut padded;
        let header_bytes = if raw.len() < OPTIONS_OFFSET {
            padded = raw.to_vec();
            padded.resize(OPTIONS_OFFSET, 0);
            &padded[..]
        } else {
            raw
        };
        let header = v4::Message::decode(&mut Decoder::new(header_bytes))
            .map_err(|e| bad(format!("undecodable header: {e}")))?;
        let magic_cookie =
            raw.len() >= OPTIONS_OFFSET && raw[HEADER_LEN..OPTIONS_OFFSET] == v4::MAGIC;
        let options = if magic_cookie {
            walk_options(raw).map_err(bad)?
        } else {
            Vec::new()
        };
        let overload = options
            .iter()
            .find(|o| o.code == 52)
            .and_then(|o| o.data.first().copied())
            .unwrap_or(0);
        let field_text = |range: std::ops::Range<usize>| {
            let bytes = &raw[range];
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            (end > 0).then(|| String::from_utf8_lossy(&bytes[..end]).into_owned())
        };
        let find_u32 = |code: u8| {
            options
                .iter()
                .find(|o| o.code == code)
                .and_then(|o| <[u8; 4]>::try_from(o.data.as_slice()).ok())
                .map(u32::from_be_bytes)
        };
        let message_type = options
            .iter()
            .find(|o| o.code == 53)
            .and_then(|o| match o.typed() {
                Some(DhcpOption::MessageType(kind)) => Some(kind),
                _ => None,
            });
        let hlen = usize::from(header.hlen()).min(16);
        Ok(Reply {
            message_type,
            xid: header.xid(),
            broadcast_flag: header.flags().broadcast(),
            hops: header.hops(),
            ciaddr: header.ciaddr(),
            yiaddr: header.yiaddr(),
            siaddr: header.siaddr(),
            giaddr: header.giaddr(),
            chaddr: raw[CHADDR_OFFSET..CHADDR_OFFSET + hlen].to_vec(),
            sname: if overload & 2 == 0 {
                field_text(SNAME_RANGE)
            } else {
                None
            },
            file: if overload & 1 == 0 {
                field_text(FILE_RANGE)
            } else {
                None
            },
            magic_cookie,
            server_id: find_u32(54).map(Ipv4Addr::from),
            lease_time: find_u32(51),
            t1: find_u32(58),
            t2: find_u32(59),
            options,
            from,
            raw: raw.to_vec(),
        })
    }

    /// The option with this code, if the reply has it.
    pub fn option(&self, code: u8) -> Option<&DecodedOption> {
        self.options.iter().find(|o| o.code == code)
    }

    /// Whether this is a DHCPNAK.
    pub fn is_nak(&self) -> bool {
        self.message_type == Some(MessageType::Nak)
    }

    /// `ACK`, `OFFER`, `NAK`... or `BOOTREPLY` when there is no option 53.
    pub fn type_name(&self) -> String {
        self.message_type
            .map(message_type_name)
            .unwrap_or_else(|| "BOOTREPLY".into())
    }

    /// The JSON the CLI prints for `--json`.
    pub fn to_json(&self) -> Value {
        json!({
            "message_type": self.type_name(),
            "xid": format!("0x{:08x}", self.xid),
            "yiaddr": self.yiaddr.to_string(),
            "server_id": self.server_id.map(|ip| ip.to_string()),
            "lease_time": self.lease_time,
            "t1": self.t1,
            "t2": self.t2,
            "ciaddr": self.ciaddr.to_string(),
            "siaddr": self.siaddr.to_string(),
            "giaddr": self.giaddr.to_string(),
            "chaddr": to_colon_hex(&self.chaddr),
            "broadcast_flag": self.broadcast_flag,
            "hops": self.hops,
            "sname": self.sname,
            "file": self.file,
            "magic_cookie": self.magic_cookie,
            "from": self.from.map(|a| a.to_string()),
            "options": self.options.iter().map(DecodedOption::to_json).collect::<Vec<_>>(),
            "length": self.raw.len(),
            "raw": to_hex(&self.raw),
        })
    }
}

/// Walks the options area, then `file` and `sname` when option 52 says they hold options.
fn walk_options(raw: &[u8]) -> Result<Vec<DecodedOption>, String> {
    let mut found: Vec<(u8, Vec<u8>)> = Vec::new();
    walk_area(&raw[OPTIONS_OFFSET..], "options", &mut found)?;
    let overload = found
        .iter()
        .find(|(code, _)| *code == 52)
        .and_then(|(_, data)| data.first().copied())
        .unwrap_or(0);
    if overload & 1 != 0 {
        walk_area(&raw[FILE_RANGE], "file", &mut found)?;
    }
    if overload & 2 != 0 {
        walk_area(&raw[SNAME_RANGE], "sname", &mut found)?;
    }
    Ok(found
        .into_iter()
        .map(|(code, data)| DecodedOption::new(code, data))
        .collect())
}

fn walk_area(area: &[u8], name: &str, found: &mut Vec<(u8, Vec<u8>)>) -> Result<(), String> {
    let mut at = 0;
    while at < area.len() {
        let code = area[at];
        match code {
            0 => at += 1,
            255 => return Ok(()),
            _ => {
                let len = *area
                    .get(at + 1)
                    .ok_or_else(|| format!("option {code} in {name} has no length byte"))?
                    as usize;
                let data = area.get(at + 2..at + 2 + len).ok_or_else(|| {
                    format!("option {code} in {name} claims {len} bytes past the end of the packet")
                })?;
                match found.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, existing)) => existing.extend_from_slice(data),
                    None => found.push((code, data.to_vec())),
                }
                at += 2 + len;
            }
        }
    }
    // Many stacks omit END when the area is full; that is not worth rejecting a reply for.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity<'a>(extra: &'a [RawOption]) -> Identity<'a> {
        Identity {
            mac: [2, 0, 0, 0, 0, 1],
            client_id: Some(&[1, 2, 0, 0, 0, 0, 1]),
            hostname: Some("host1"),
            vendor_class: Some(b"MSFT 5.0"),
            user_class: None,
            parameter_request_list: &[1, 3, 6],
            extra_options: extra,
        }
    }

    fn outgoing(kind: Option<MessageType>) -> Outgoing {
        Outgoing {
            kind,
            xid: 0x01020304,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::new(127, 0, 0, 2),
            hops: 1,
            broadcast_flag: true,
            requested_ip: Some(Ipv4Addr::new(10, 0, 0, 5)),
            server_id: None,
            magic_cookie: true,
        }
    }

    #[test]
    fn discover_has_type_first_and_is_padded() {
        let bytes = encode_request(&identity(&[]), &outgoing(Some(MessageType::Discover))).unwrap();
        assert_eq!(bytes.len(), BOOTP_MIN_LEN);
        assert_eq!(bytes[0], 1);
        assert_eq!(&bytes[4..8], &[1, 2, 3, 4]);
        assert_eq!(&bytes[10..12], &[0x80, 0]);
        assert_eq!(&bytes[24..28], &[127, 0, 0, 2]);
        assert_eq!(&bytes[28..34], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&bytes[236..240], &v4::MAGIC);
        assert_eq!(&bytes[240..243], &[53, 1, 1]);
        assert_eq!(&bytes[243..245], &[61, 7]);
        let decoded = v4::Message::decode(&mut Decoder::new(&bytes)).unwrap();
        assert_eq!(
            decoded.opts().get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("host1".into()))
        );
        assert_eq!(decoded.hlen(), 6);
    }

    #[test]
    fn extra_option_replaces_builtin_in_place() {
        let extra = [
            RawOption {
                code: 60,
                data: b"X".to_vec(),
            },
            RawOption {
                code: 224,
                data: vec![0xab],
            },
        ];
        let bytes =
            encode_request(&identity(&extra), &outgoing(Some(MessageType::Request))).unwrap();
        let reply_like = walk_options(&bytes).unwrap();
        let codes: Vec<u8> = reply_like.iter().map(|o| o.code).collect();
        assert_eq!(codes, vec![53, 61, 50, 12, 60, 55, 224]);
        assert_eq!(reply_like[4].data, b"X");
        assert_eq!(reply_like[6].data, vec![0xab]);
    }

    #[test]
    fn release_is_lean() {
        let mut out = outgoing(Some(MessageType::Release));
        out.requested_ip = None;
        out.server_id = Some(Ipv4Addr::new(10, 0, 0, 1));
        let bytes = encode_request(&identity(&[]), &out).unwrap();
        let codes: Vec<u8> = walk_options(&bytes)
            .unwrap()
            .iter()
            .map(|o| o.code)
            .collect();
        assert_eq!(codes, vec![53, 61, 54]);
    }

    #[test]
    fn bootp_without_cookie_has_zero_vendor_area() {
        let mut out = outgoing(None);
        out.magic_cookie = false;
        let bytes = encode_request(&identity(&[]), &out).unwrap();
        assert_eq!(bytes.len(), BOOTP_MIN_LEN);
        assert!(bytes[HEADER_LEN..].iter().all(|&b| b == 0));
        let with_cookie = encode_request(&identity(&[]), &outgoing(None)).unwrap();
        assert_eq!(&with_cookie[236..240], &v4::MAGIC);
        assert_ne!(with_cookie[240], 53);
    }

    #[test]
    fn raw_option_parsing() {
        assert_eq!(
            "82=01:02".parse::<RawOption>(),
            Ok(RawOption {
                code: 82,
                data: vec![1, 2]
            })
        );
        assert_eq!(
            "224=".parse::<RawOption>(),
            Ok(RawOption {
                code: 224,
                data: vec![]
            })
        );
        assert_eq!(
            "43=0xDEADbeef".parse::<RawOption>().unwrap().data,
            vec![0xde, 0xad, 0xbe, 0xef]
        );
        assert!("255=00".parse::<RawOption>().is_err());
        assert!("300=00".parse::<RawOption>().is_err());
        assert!("12=abc".parse::<RawOption>().is_err());
        assert!("12=zz".parse::<RawOption>().is_err());
        assert!("1200".parse::<RawOption>().is_err());
        assert_eq!(parse_mac("02-00-00-00-00-0A"), Ok([2, 0, 0, 0, 0, 10]));
        assert!(parse_mac("02:00:00").is_err());
    }

    fn reply_bytes(options: &[u8]) -> Vec<u8> {
        let mut raw = vec![0u8; OPTIONS_OFFSET];
        raw[0] = 2;
        raw[1] = 1;
        raw[2] = 6;
        raw[16..20].copy_from_slice(&[10, 0, 0, 7]);
        raw[HEADER_LEN..OPTIONS_OFFSET].copy_from_slice(&v4::MAGIC);
        raw.extend_from_slice(options);
        raw
    }

    #[test]
    fn decodes_split_and_overloaded_options() {
        let mut raw = reply_bytes(&[
            53, 1, 5, 52, 1, 1, 12, 2, b'a', b'b', 12, 1, b'c', 51, 4, 0, 0, 14, 16, 255,
        ]);
        raw[108..114].copy_from_slice(&[54, 4, 10, 0, 0, 1]);
        raw[114] = 255;
        let reply = Reply::decode(&raw, None).unwrap();
        assert_eq!(reply.message_type, Some(MessageType::Ack));
        assert_eq!(reply.yiaddr, Ipv4Addr::new(10, 0, 0, 7));
        assert_eq!(reply.option(12).unwrap().value(), "\"abc\"");
        assert_eq!(reply.lease_time, Some(3600));
        assert_eq!(reply.server_id, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(reply.file, None);
        let codes: Vec<u8> = reply.options.iter().map(|o| o.code).collect();
        assert_eq!(codes, vec![53, 52, 12, 51, 54]);
    }

    #[test]
    fn rejects_truncated_option_and_short_packet() {
        let raw = reply_bytes(&[53, 1, 2, 51, 4, 0]);
        let err = Reply::decode(&raw, None).unwrap_err().to_string();
        assert!(err.contains("option 51"), "{err}");
        assert!(Reply::decode(&[2u8; 100], None).is_err());
        let mut request = reply_bytes(&[255]);
        request[0] = 1;
        assert!(Reply::decode(&request, None)
            .unwrap_err()
            .to_string()
            .contains("BOOTREPLY"));
    }

    #[test]
    fn bootp_reply_without_cookie() {
        let mut raw = vec![0u8; BOOTP_MIN_LEN];
        raw[0] = 2;
        raw[2] = 6;
        raw[16..20].copy_from_slice(&[10, 0, 0, 9]);
        let reply = Reply::decode(&raw, None).unwrap();
        assert!(!reply.magic_cookie);
        assert!(reply.options.is_empty());
        assert_eq!(reply.type_name(), "BOOTREPLY");
        assert_eq!(reply.yiaddr, Ipv4Addr::new(10, 0, 0, 9));
    }
}
