//! The two places raw BOOTP/DHCP bytes are read and written: a zero-copy view of a request and a reply
//! writer that puts option 53 first and option 82 last and pads to the BOOTP minimum.
//!
//! Why not dhcproto's `Message` here: its encoder writes options in ascending order without padding
//! (docs/dhcp.md section 1, "Reply encoding"), and decoding into its owned type allocates a map per packet;
//! the engine needs the raw option bytes anyway (82 and 61 are echoed unchanged). dhcproto supplies
//! the constants and is what the tests build and check packets with.

use std::net::Ipv4Addr;

use dhcproto::v4::MAGIC;

/// Length of the fixed BOOTP header, up to and excluding the vendor area / magic cookie.
pub(crate) const HEADER_LEN: usize = 236;
/// Minimum BOOTP message length (RFC 951: 64-byte vendor area); replies are padded to it.
pub(crate) const MIN_REPLY_LEN: usize = 300;
/// Largest BOOTP message in a 576-byte IP datagram (RFC 2131 2: the default every client accepts).
pub(crate) const DEFAULT_MAX_REPLY_LEN: usize = 576 - 28;

/// Why a datagram is not a BOOTP/DHCP request we can process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Shorter than the BOOTP header.
    TooShort(usize),
    /// `op` is not BOOTREQUEST.
    NotRequest(u8),
    /// `hlen` larger than chaddr.
    BadHlen(u8),
    /// An option's length runs past its area.
    TruncatedOption(u8),
    /// Option 53 is not one byte.
    BadMessageType,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::TooShort(n) => write!(f, "{n} bytes, shorter than a BOOTP header"),
            ParseError::NotRequest(op) => write!(f, "op {op} is not BOOTREQUEST"),
            ParseError::BadHlen(h) => write!(f, "hlen {h} exceeds 16"),
            ParseError::TruncatedOption(c) => write!(f, "option {c} runs past the packet"),
            ParseError::BadMessageType => write!(f, "option 53 is not one byte"),
        }
    }
}

/// A request, borrowed from the datagram bytes.
#[derive(Debug, Clone)]
pub(crate) struct Request<'a> {
    pub htype: u8,
    pub hops: u8,
    pub xid: u32,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    /// chaddr, hlen bytes.
    pub chaddr: &'a [u8],
    /// All 16 chaddr bytes, copied into replies as they came.
    pub chaddr_field: [u8; 16],
    /// The request carried the DHCP magic cookie (so vendor extensions may be sent back).
    pub has_cookie: bool,
    /// Option 53; `None` = BOOTP.
    pub message_type: Option<u8>,
    pub requested_ip: Option<Ipv4Addr>,
    pub server_id: Option<Ipv4Addr>,
    pub client_id: Option<&'a [u8]>,
    pub parameter_list: Option<&'a [u8]>,
    pub relay_agent: Option<&'a [u8]>,
    pub max_message_size: Option<u16>,
    pub host_name: Option<&'a [u8]>,
    pub vendor_class: Option<&'a [u8]>,
    pub user_class: Option<&'a [u8]>,
    pub fqdn: Option<&'a [u8]>,
}

impl Default for Request<'_> {
    fn default() -> Self {
        Request {
            htype: 0,
            hops: 0,
            xid: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: &[],
            chaddr_field: [0; 16],
            has_cookie: false,
            message_type: None,
            requested_ip: None,
            server_id: None,
            client_id: None,
            parameter_list: None,
            relay_agent: None,
            max_message_size: None,
            host_name: None,
            vendor_class: None,
            user_class: None,
            fqdn: None,
        }
    }
}

fn ipv4_at(bytes: &[u8], at: usize) -> Ipv4Addr {
    match bytes.get(at..at + 4) {
        Some(&[a, b, c, d]) => Ipv4Addr::new(a, b, c, d),
        _ => Ipv4Addr::UNSPECIFIED,
    }
}

fn ipv4_option(data: &[u8]) -> Option<Ipv4Addr> {
    match data {
        &[a, b, c, d] => Some(Ipv4Addr::new(a, b, c, d)),
        _ => None,
    }
}

impl<'a> Request<'a> {
    /// Parses a datagram. Options split over several instances (RFC 3396) keep their first part;
    /// overloaded sname/file (option 52) are read after the options area.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        if bytes.len() < HEADER_LEN {
            return Err(ParseError::TooShort(bytes.len()));
        }
        let op = bytes[0];
        if op != 1 {
            return Err(ParseError::NotRequest(op));
        }
        let hlen = bytes[2];
        if hlen > 16 {
            return Err(ParseError::BadHlen(hlen));
        }
        let mut chaddr_field = [0u8; 16];
        chaddr_field.copy_from_slice(&bytes[28..44]);
        let mut request = Request {
            htype: bytes[1],
            hops: bytes[3],
            xid: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            flags: u16::from_be_bytes([bytes[10], bytes[11]]),
            ciaddr: ipv4_at(bytes, 12),
            giaddr: ipv4_at(bytes, 24),
            chaddr: &bytes[28..28 + usize::from(hlen)],
            chaddr_field,
            ..Request::default()
        };
        if bytes.len() < HEADER_LEN + 4 || bytes[HEADER_LEN..HEADER_LEN + 4] != MAGIC {
            // BOOTP without vendor extensions (RFC 951 vendor area of free-form bytes).
            return Ok(request);
        }
        request.has_cookie = true;
        let mut overload = 0u8;
        walk_options(&bytes[HEADER_LEN + 4..], |code, data| {
            if code == 52 {
                overload = data.first().copied().unwrap_or(0);
            }
            request.take_option(code, data)
        })?;
        if overload & 1 != 0 {
            walk_options(&bytes[108..236], |code, data| {
                request.take_option(code, data)
            })?;
        }
        if overload & 2 != 0 {
            walk_options(&bytes[44..108], |code, data| {
                request.take_option(code, data)
            })?;
        }
        Ok(request)
    }

    fn take_option(&mut self, code: u8, data: &'a [u8]) -> Result<(), ParseError> {
        fn first<'b>(slot: &mut Option<&'b [u8]>, data: &'b [u8]) {
            if slot.is_none() {
                *slot = Some(data);
            }
        }
        match code {
            53 => match data {
                &[t] => self.message_type = Some(t),
                _ => return Err(ParseError::BadMessageType),
            },
            50 => self.requested_ip = self.requested_ip.or(ipv4_option(data)),
            54 => self.server_id = self.server_id.or(ipv4_option(data)),
            61 => first(&mut self.client_id, data),
            55 => first(&mut self.parameter_list, data),
            82 => first(&mut self.relay_agent, data),
            57 => {
                if let &[hi, lo] = data {
                    self.max_message_size = Some(u16::from_be_bytes([hi, lo]));
                }
            }
            12 => first(&mut self.host_name, data),
            60 => first(&mut self.vendor_class, data),
            77 => first(&mut self.user_class, data),
            81 => first(&mut self.fqdn, data),
            _ => {}
        }
        Ok(())
    }
}

/// Calls `each` for every option in an options area, up to END or the area's end.
fn walk_options<'a>(
    area: &'a [u8],
    mut each: impl FnMut(u8, &'a [u8]) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    let mut at = 0;
    while let Some(&code) = area.get(at) {
        match code {
            0 => at += 1,
            255 => return Ok(()),
            _ => {
                let len = usize::from(*area.get(at + 1).ok_or(ParseError::TruncatedOption(code))?);
                let data = area
                    .get(at + 2..at + 2 + len)
                    .ok_or(ParseError::TruncatedOption(code))?;
                each(code, data)?;
                at += 2 + len;
            }
        }
    }
    Ok(())
}

/// The fixed fields of a reply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyHeader {
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
}

/// Writes a BOOTREPLY: header, then (when `vendor`) the cookie and options in the order they are added,
/// then END and padding. With [`ReplyWriter::allow_overload`], an option that does not fit the options
/// field goes into `file`, else `sname` (RFC 2131 4.1, RFC 2132 9.3: option 52), each area ended by
/// END; one that fits nowhere is left out.
pub(crate) struct ReplyWriter {
    buf: Vec<u8>,
    limit: usize,
    vendor: bool,
    /// Options for the `file` and `sname` fields; `None` = the field is not free for options.
    file: Option<Vec<u8>>,
    sname: Option<Vec<u8>>,
    /// Where option 52's value byte sits in `buf`, once an option went into `file` or `sname`.
    overload_at: Option<usize>,
}

/// `file` and `sname` sizes; one byte of each is kept for END.
const FILE_LEN: usize = 128;
const SNAME_LEN: usize = 64;

impl ReplyWriter {
    /// Starts a reply to `request`. `limit` caps the message size (from option 57, at least 548).
    pub fn new(request: &Request<'_>, header: ReplyHeader, vendor: bool, limit: usize) -> Self {
        let mut buf = Vec::with_capacity(limit.max(MIN_REPLY_LEN));
        buf.extend_from_slice(&[2, request.htype, request.chaddr.len() as u8, 0]);
        buf.extend_from_slice(&request.xid.to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&header.flags.to_be_bytes());
        buf.extend_from_slice(&header.ciaddr.octets());
        buf.extend_from_slice(&header.yiaddr.octets());
        buf.extend_from_slice(&header.siaddr.octets());
        buf.extend_from_slice(&request.giaddr.octets());
        buf.extend_from_slice(&request.chaddr_field);
        buf.resize(HEADER_LEN, 0); // sname and file
        if vendor {
            buf.extend_from_slice(&MAGIC);
        }
        Self {
            buf,
            limit,
            vendor,
            file: None,
            sname: None,
            overload_at: None,
        }
    }

    /// Lets options overflow into `file` and `sname` (DHCP replies; never BOOTP, whose clients do
    /// not read option 52). Call after [`ReplyWriter::boot_fields`]: a field holding a boot server or
    /// file name stays as it is.
    pub fn allow_overload(&mut self) {
        if !self.vendor {
            return;
        }
        let free = |area: &[u8]| area.iter().all(|b| *b == 0);
        if free(&self.buf[108..108 + FILE_LEN]) {
            self.file = Some(Vec::new());
        }
        if free(&self.buf[44..44 + SNAME_LEN]) {
            self.sname = Some(Vec::new());
        }
    }

    /// Fills the boot fields: `sname` (64 bytes) and `file` (128 bytes), each kept NUL-terminated,
    /// and `siaddr` (the next server).
    pub fn boot_fields(
        &mut self,
        siaddr: Option<Ipv4Addr>,
        sname: Option<&[u8]>,
        file: Option<&[u8]>,
    ) {
        if let Some(siaddr) = siaddr {
            self.buf[20..24].copy_from_slice(&siaddr.octets());
        }
        for (value, start, len) in [(sname, 44, 64), (file, 108, 128)] {
            if let Some(value) = value {
                let value = &value[..value.len().min(len - 1)];
                self.buf[start..start + value.len()].copy_from_slice(value);
            }
        }
    }

    /// Room left for options, keeping `reserve` bytes (for options that must still come, and END).
    pub fn room(&self, reserve: usize) -> usize {
        self.limit.saturating_sub(self.buf.len() + reserve)
    }

    /// Appends one option (split into 255-byte parts per RFC 3396 when longer) if it fits within the
    /// limit less `reserve`. Returns whether it was written.
    pub fn option(&mut self, code: u8, data: &[u8], reserve: usize) -> bool {
        if !self.vendor {
            return false;
        }
        let need = option_wire_len(data.len());
        if need <= self.room(reserve) {
            put_option(&mut self.buf, code, data);
            return true;
        }
        // Option 52 itself needs three bytes in the options field, the first time.
        let marker = if self.overload_at.is_none() { 3 } else { 0 };
        if self.room(reserve) < marker {
            return false;
        }
        for (area, len) in [(&mut self.file, FILE_LEN), (&mut self.sname, SNAME_LEN)] {
            let Some(area) = area else { continue };
            if area.len() + need < len {
                put_option(area, code, data);
                if marker > 0 {
                    self.buf.extend_from_slice(&[52, 1, 0]);
                    self.overload_at = Some(self.buf.len() - 1);
                }
                return true;
            }
        }
        false
    }

    /// Ends the options and pads to the BOOTP minimum.
    pub fn finish(mut self) -> Vec<u8> {
        if self.vendor {
            self.buf.push(255);
        }
        if let Some(at) = self.overload_at {
            let mut value = 0;
            for (area, start, bit) in [(&self.file, 108, 1), (&self.sname, 44, 2)] {
                if let Some(area) = area.as_ref().filter(|a| !a.is_empty()) {
                    self.buf[start..start + area.len()].copy_from_slice(area);
                    self.buf[start + area.len()] = 255;
                    value |= bit;
                }
            }
            self.buf[at] = value;
        }
        if self.buf.len() < MIN_REPLY_LEN {
            self.buf.resize(MIN_REPLY_LEN, 0);
        }
        self.buf
    }
}

/// Appends option `code` to `out`, split into 255-byte parts (RFC 3396) when longer.
fn put_option(out: &mut Vec<u8>, code: u8, data: &[u8]) {
    if data.is_empty() {
        out.extend_from_slice(&[code, 0]);
        return;
    }
    for chunk in data.chunks(255) {
        out.push(code);
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
}

/// Bytes an option takes on the wire (with RFC 3396 splitting).
pub(crate) fn option_wire_len(data_len: usize) -> usize {
    data_len.div_ceil(255).max(1) * 2 + data_len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_short_and_truncated() {
        assert_eq!(
            Request::parse(&[1, 2, 3]).unwrap_err(),
            ParseError::TooShort(3)
        );
        let mut bytes = vec![0u8; 240];
        bytes[0] = 1;
        bytes[2] = 6;
        bytes[236..240].copy_from_slice(&MAGIC);
        bytes.extend_from_slice(&[53, 1, 1, 61, 9, 1]);
        assert_eq!(
            Request::parse(&bytes).unwrap_err(),
            ParseError::TruncatedOption(61)
        );
        bytes[0] = 2;
        assert_eq!(
            Request::parse(&bytes).unwrap_err(),
            ParseError::NotRequest(2)
        );
    }

    #[test]
    fn reads_overloaded_file_field() {
        let mut bytes = vec![0u8; 240];
        bytes[0] = 1;
        bytes[2] = 6;
        bytes[236..240].copy_from_slice(&MAGIC);
        bytes.extend_from_slice(&[53, 1, 3, 52, 1, 1, 255]);
        // Option 50 sits in the file field (offset 108).
        bytes[108..115].copy_from_slice(&[50, 4, 198, 18, 0, 7, 255]);
        let request = Request::parse(&bytes).unwrap();
        assert_eq!(request.message_type, Some(3));
        assert_eq!(request.requested_ip, Some(Ipv4Addr::new(198, 18, 0, 7)));
    }

    #[test]
    fn writer_orders_splits_and_pads() {
        let request = Request {
            htype: 1,
            chaddr: &[1, 2, 3, 4, 5, 6],
            ..Request::default()
        };
        let header = ReplyHeader {
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::new(198, 18, 0, 9),
            siaddr: Ipv4Addr::UNSPECIFIED,
        };
        let mut writer = ReplyWriter::new(&request, header, true, DEFAULT_MAX_REPLY_LEN);
        assert!(writer.option(53, &[2], 1));
        assert!(writer.option(43, &[7u8; 300], 1));
        assert!(
            !writer.option(44, &[7u8; 300], 1),
            "over the 548-byte limit"
        );
        let bytes = writer.finish();
        assert_eq!(&bytes[240..243], &[53, 1, 2]);
        assert_eq!(&bytes[243..245], &[43, 255]);
        assert_eq!(&bytes[500..502], &[43, 45]);
        assert_eq!(bytes[547], 255);
        assert_eq!(option_wire_len(300), 304);
    }
}
