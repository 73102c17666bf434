//! What the packet-path fuzz targets share: the engine they drive and how an input becomes a
//! datagram. Not a library for anything else.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;

use calloutd_callout::OptionSpans;
use calloutd_engine::{
    Admission, Datagram, Engine, EngineOptions, Hooks, MemoryLeaseStore, NoProber, PacketHandler,
};
use dhcpssdk::DropReason;

/// The scopes the packet targets serve: two lab segments, 198.18.0.0/24 and 198.18.1.0/24.
pub const LAB_SCOPES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/config/lab-netsh.txt"
);

/// An engine over the lab scopes, an in-memory lease store and `hooks`.
pub fn lab_engine(hooks: Arc<dyn Hooks>) -> Engine {
    let loaded = calloutd_config::load_scopes(Path::new(LAB_SCOPES))
        .unwrap_or_else(|e| panic!("{LAB_SCOPES}: {e:?}"));
    Engine::new(
        loaded.config,
        EngineOptions::default(),
        hooks,
        Box::new(MemoryLeaseStore::new()),
        Arc::new(NoProber),
    )
    .unwrap_or_else(|e| panic!("engine over {LAB_SCOPES}: {e}"))
}

/// Runs one fuzz input through the HandleOptions view and the engine. `data[0]` picks the
/// admission (bits 0-1), the receiving segment (bit 2), broadcast or unicast (bit 3) and a client or
/// relay peer (bit 4); the rest is the UDP payload.
pub fn run(engine: &Engine, data: &[u8]) {
    let Some((&select, payload)) = data.split_first() else {
        return;
    };
    check_spans(payload);
    let if_addr = if select & 4 == 0 {
        Ipv4Addr::new(198, 18, 0, 1)
    } else {
        Ipv4Addr::new(198, 18, 1, 1)
    };
    let dst_addr = if select & 8 == 0 {
        Ipv4Addr::BROADCAST
    } else {
        if_addr
    };
    let peer = if select & 16 == 0 {
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)
    } else {
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 67)
    };
    let admission = match select & 3 {
        0 | 1 => Admission::Process,
        2 => Admission::Drop(DropReason::Duplicate),
        _ => Admission::Drop(DropReason::Paused),
    };
    let datagram = Datagram {
        bytes: payload.to_vec(),
        if_addr,
        dst_addr,
        peer,
    };
    let outcome = engine.handle(datagram, admission);
    if let Some(reply) = &outcome.reply {
        assert!(
            reply.bytes.len() >= 300,
            "a reply of {} bytes, under the BOOTP minimum",
            reply.bytes.len()
        );
        assert_eq!(
            reply.bytes.first(),
            Some(&2),
            "a reply that is not a BOOTREPLY"
        );
        if let Err(error) = <dhcproto::v4::Message as dhcproto::Decodable>::decode(
            &mut dhcproto::Decoder::new(&reply.bytes),
        ) {
            panic!("the reply does not decode: {error}");
        }
    }
}

/// The spans a callout's `DHCP_SERVER_OPTIONS` would point at lie inside the packet.
fn check_spans(packet: &[u8]) {
    let spans = OptionSpans::parse(packet);
    let inside = |what: &str, offset: usize, len: usize| {
        assert!(
            offset
                .checked_add(len)
                .is_some_and(|end| end <= packet.len()),
            "{what} span {offset}+{len} outside a packet of {}",
            packet.len()
        );
    };
    let all = [
        ("message type", spans.message_type),
        ("subnet mask", spans.subnet_mask),
        ("requested address", spans.requested_address),
        ("lease time", spans.lease_time),
        ("overload", spans.overload),
        ("router", spans.router),
        ("server id", spans.server_id),
        ("parameter request list", spans.parameter_request_list),
        ("host name", spans.host_name),
        ("user class", spans.user_class),
        ("vendor class", spans.vendor_class),
    ];
    for (what, span) in all {
        if let Some(span) = span {
            inside(what, span.offset, span.len);
        }
    }
    if let Some((_, hlen, span)) = spans.hardware {
        assert!(
            hlen <= 16 && span.len == usize::from(hlen),
            "hardware {hlen}/{span:?}"
        );
        inside("chaddr", span.offset, span.len);
    }
    if let Some((_, Some(span))) = spans.client_fqdn {
        inside("client FQDN name", span.offset, span.len);
    }
}
