//! Building `DHCP_SERVER_OPTIONS` for `DhcpHandleOptionsHook` (docs/hooks.md
//! section 4.3, the mapping table): pointers into the packet's option bytes, NULL = absent.
//!
//! The packet is walked safely here ([`OptionSpans::parse`], offsets only); pointers are made from
//! those offsets once the packet sits in the DLL's buffer.

use dhcpssdk::DHCP_SERVER_OPTIONS;

/// BOOTP header length; the magic cookie follows.
const BOOTP_HEADER: usize = 236;
/// `chaddr` offset and size.
const CHADDR: usize = 28;
const CHADDR_LEN: usize = 16;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// Where an option's data sits in the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Offset of the first data byte.
    pub offset: usize,
    /// Data length.
    pub len: usize,
}

/// Offsets of everything `DHCP_SERVER_OPTIONS` points at, found by a bounds-checked walk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptionSpans {
    /// Option 53.
    pub message_type: Option<Span>,
    /// Option 1.
    pub subnet_mask: Option<Span>,
    /// Option 50.
    pub requested_address: Option<Span>,
    /// Option 51.
    pub lease_time: Option<Span>,
    /// Option 52.
    pub overload: Option<Span>,
    /// Option 3.
    pub router: Option<Span>,
    /// Option 54.
    pub server_id: Option<Span>,
    /// Option 55.
    pub parameter_request_list: Option<Span>,
    /// Option 12.
    pub host_name: Option<Span>,
    /// `htype`, `hlen` (clamped to 16) and `chaddr`.
    pub hardware: Option<(u8, u8, Span)>,
    /// Option 77.
    pub user_class: Option<Span>,
    /// Option 60.
    pub vendor_class: Option<Span>,
    /// Option 81: flags byte and the name after the two RCODE bytes (None when empty).
    pub client_fqdn: Option<(u8, Option<Span>)>,
}

impl OptionSpans {
    /// Walks the options area after the magic cookie; the first occurrence of an option wins, pad
    /// is skipped, END or truncation stops the walk. Options too short for their fixed size are
    /// treated as absent (the DLL would read past them).
    pub fn parse(packet: &[u8]) -> OptionSpans {
        let mut spans = OptionSpans::default();
        if let (Some(&htype), Some(&hlen)) = (packet.get(1), packet.get(2)) {
            if packet.len() >= CHADDR + CHADDR_LEN {
                let len = hlen.min(CHADDR_LEN as u8);
                let span = Span {
                    offset: CHADDR,
                    len: len as usize,
                };
                spans.hardware = Some((htype, len, span));
            }
        }
        if packet.get(BOOTP_HEADER..BOOTP_HEADER + 4) != Some(&MAGIC_COOKIE[..]) {
            return spans;
        }
        let mut i = BOOTP_HEADER + 4;
        while let Some(&code) = packet.get(i) {
            match code {
                0 => {
                    i += 1;
                    continue;
                }
                255 => break,
                _ => {}
            }
            let Some(&len) = packet.get(i + 1) else { break };
            let span = Span {
                offset: i + 2,
                len: len as usize,
            };
            if span.offset + span.len > packet.len() {
                break;
            }
            spans.take(code, span, packet);
            i = span.offset + span.len;
        }
        spans
    }

    fn take(&mut self, code: u8, span: Span, packet: &[u8]) {
        let fixed = |slot: &mut Option<Span>, min: usize| {
            if slot.is_none() && span.len >= min {
                *slot = Some(span);
            }
        };
        match code {
            53 => fixed(&mut self.message_type, 1),
            1 => fixed(&mut self.subnet_mask, 4),
            50 => fixed(&mut self.requested_address, 4),
            51 => fixed(&mut self.lease_time, 4),
            52 => fixed(&mut self.overload, 1),
            3 => fixed(&mut self.router, 4),
            54 => fixed(&mut self.server_id, 4),
            55 => fixed(&mut self.parameter_request_list, 0),
            12 => fixed(&mut self.host_name, 0),
            77 => fixed(&mut self.user_class, 0),
            60 => fixed(&mut self.vendor_class, 0),
            81 if self.client_fqdn.is_none() && span.len >= 1 => {
                let flags = packet.get(span.offset).copied().unwrap_or(0);
                // `then`, not `then_some`: the length is only computed when it cannot underflow.
                let name = (span.len > 3).then(|| Span {
                    offset: span.offset + 3,
                    len: span.len - 3,
                });
                self.client_fqdn = Some((flags, name));
            }
            _ => {}
        }
    }

    /// The `DHCP_SERVER_OPTIONS` for a copy of the parsed packet starting at `base`, with `ScopeId`
    /// pointing at `scope_id` (host order) when given.
    ///
    /// # Safety
    /// `base` must point to a copy of the packet these spans were parsed from (every span is in
    /// bounds of it), and both it and `scope_id` must outlive every use of the result.
    pub unsafe fn to_server_options(
        &self,
        base: *mut u8,
        scope_id: Option<*mut u32>,
    ) -> DHCP_SERVER_OPTIONS {
        // SAFETY (for every `at` below): the spans were bounds-checked against the packet that
        // `base` holds a copy of, so `base + offset` stays inside that copy.
        let at = |span: Option<Span>| match span {
            Some(s) => unsafe { base.add(s.offset) },
            None => std::ptr::null_mut(),
        };
        let len = |span: Option<Span>| span.map_or(0, |s| s.len as u32);
        let mut options = DHCP_SERVER_OPTIONS::empty();
        options.MessageType = at(self.message_type);
        options.SubnetMask = at(self.subnet_mask).cast();
        options.RequestedAddress = at(self.requested_address).cast();
        options.RequestLeaseTime = at(self.lease_time).cast();
        options.OverlayFields = at(self.overload);
        options.RouterAddress = at(self.router).cast();
        options.Server = at(self.server_id).cast();
        options.ParameterRequestList = at(self.parameter_request_list);
        options.ParameterRequestListLength = len(self.parameter_request_list);
        options.MachineName = at(self.host_name).cast();
        options.MachineNameLength = len(self.host_name);
        if let Some((htype, hlen, span)) = self.hardware {
            options.ClientHardwareAddressType = htype;
            options.ClientHardwareAddressLength = hlen;
            options.ClientHardwareAddress = at(Some(span));
        }
        options.ClassIdentifier = at(self.user_class).cast();
        options.ClassIdentifierLength = len(self.user_class);
        options.VendorClass = at(self.vendor_class);
        options.VendorClassLength = len(self.vendor_class);
        if let Some((flags, name)) = self.client_fqdn {
            options.DNSFlags = u32::from(flags);
            options.DNSName = at(name);
            options.DNSNameLength = len(name);
        }
        options.ScopeId = scope_id.unwrap_or(std::ptr::null_mut());
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(options: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; BOOTP_HEADER];
        p[0] = 1;
        p[1] = 1;
        p[2] = 6;
        p[CHADDR..CHADDR + 6].copy_from_slice(&[2, 0, 0x5e, 1, 2, 3]);
        p.extend_from_slice(&MAGIC_COOKIE);
        p.extend_from_slice(options);
        p
    }

    #[test]
    fn finds_each_mapped_option_after_the_cookie() {
        let p = packet(&[
            53, 1, 3, 0, 0, 50, 4, 10, 0, 0, 5, 12, 3, b'p', b'c', b'1', 55, 3, 1, 3, 6, 81, 6,
            0x01, 0, 0, b'a', b'.', b'b', 255,
        ]);
        let s = OptionSpans::parse(&p);
        assert_eq!(
            s.message_type,
            Some(Span {
                offset: 242,
                len: 1
            })
        );
        assert_eq!(p[s.requested_address.unwrap().offset], 10);
        assert_eq!(s.host_name.unwrap().len, 3);
        assert_eq!(s.parameter_request_list.unwrap().len, 3);
        let (flags, name) = s.client_fqdn.unwrap();
        assert_eq!(flags, 1);
        let name = name.unwrap();
        assert_eq!(&p[name.offset..name.offset + name.len], b"a.b");
        assert_eq!(s.hardware, Some((1, 6, Span { offset: 28, len: 6 })));
        assert_eq!(s.server_id, None);
    }

    #[test]
    fn a_client_fqdn_of_three_bytes_or_fewer_has_flags_and_no_name() {
        // Found by the packet_path fuzz target: a length under 3 underflowed the name's length.
        for len in 1..=3u8 {
            let mut options = vec![81, len];
            options.extend(std::iter::repeat_n(0x05, usize::from(len)));
            options.push(255);
            let s = OptionSpans::parse(&packet(&options));
            assert_eq!(
                s.client_fqdn,
                Some((0x05, None)),
                "option 81 of {len} bytes"
            );
        }
    }

    #[test]
    fn truncated_and_short_options_are_absent_and_never_read_out_of_bounds() {
        // 50 with 2 bytes is too short; 54 claims 4 bytes but the packet ends.
        let p = packet(&[50, 2, 1, 2, 54, 4, 1]);
        let s = OptionSpans::parse(&p);
        assert_eq!(s.requested_address, None);
        assert_eq!(s.server_id, None);
        // A lone code byte at the end.
        assert_eq!(OptionSpans::parse(&packet(&[53])).message_type, None);
    }

    #[test]
    fn no_cookie_means_no_options_and_a_short_packet_has_no_hardware_address() {
        let mut p = packet(&[53, 1, 1]);
        p[BOOTP_HEADER] = 0;
        assert_eq!(OptionSpans::parse(&p).message_type, None);
        assert_eq!(OptionSpans::parse(&[1, 1, 6]).hardware, None);
    }

    #[test]
    fn the_first_occurrence_wins_and_hlen_is_clamped() {
        let mut p = packet(&[53, 1, 1, 53, 1, 3, 255]);
        p[2] = 200;
        let s = OptionSpans::parse(&p);
        assert_eq!(p[s.message_type.unwrap().offset], 1);
        assert_eq!(s.hardware.unwrap().1, 16);
    }
}
