//! The benchmark's floor (`scripts/bench.sh`): the least a DHCPv4 server can do per exchange.
//!
//! It answers every DISCOVER with a fixed OFFER and every REQUEST with a fixed ACK, copying only what
//! the client needs to match the reply (xid, htype, hlen, flags, giaddr, chaddr), and keeps no state.
//! The offered address is derived from chaddr so each client sees its own address without a table.
//! Replies go to giaddr:67 (perfdhcp and `calloutd bench` always act as relays), or back to the sender
//! when giaddr is 0. One thread, one socket, std only: what remains is the kernel's receive, send
//! and wake-up, which every server pays too. Not a DHCP server: no leases, no options asked for.
//!
//! ```text
//! cargo build --release --example bench_floor
//! target/release/examples/bench_floor 198.18.10.1:67 198.18.10.1
//! ```

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::ExitCode;

/// Fixed BOOTP header length (up to and including `file`), then the magic cookie.
const HEADER_LEN: usize = 236;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
const DHCP_DISCOVER: u8 = 1;
const DHCP_OFFER: u8 = 2;
const DHCP_REQUEST: u8 = 3;
const DHCP_ACK: u8 = 5;
/// RFC 1542 minimum BOOTP message size; replies are padded to it.
const MIN_REPLY_LEN: usize = 300;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let bind = args.next().unwrap_or_else(|| "0.0.0.0:67".into());
    let bind: SocketAddr = match bind.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_floor: bad bind address {bind:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let server_id: Ipv4Addr = match args.next().map(|s| s.parse()) {
        Some(Ok(ip)) => ip,
        Some(Err(e)) => {
            eprintln!("bench_floor: bad server id: {e}");
            return ExitCode::from(2);
        }
        None => match bind {
            SocketAddr::V4(v4) => *v4.ip(),
            SocketAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        },
    };
    let socket = match UdpSocket::bind(bind) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench_floor: bind {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("bench_floor: serving on {bind} (server id {server_id})");
    let mut request = [0u8; 1500];
    let mut reply = reply_template(server_id);
    loop {
        let (len, from) = match socket.recv_from(&mut request) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bench_floor: receive: {e}");
                continue;
            }
        };
        let Some(packet) = request.get(..len) else {
            continue;
        };
        let answer = match message_type(packet) {
            Some(DHCP_DISCOVER) => DHCP_OFFER,
            Some(DHCP_REQUEST) => DHCP_ACK,
            _ => continue,
        };
        fill_reply(&mut reply, packet, answer);
        let giaddr = Ipv4Addr::new(packet[24], packet[25], packet[26], packet[27]);
        let to = if giaddr.is_unspecified() {
            from
        } else {
            SocketAddr::V4(SocketAddrV4::new(giaddr, 67))
        };
        if let Err(e) = socket.send_to(&reply, to) {
            eprintln!("bench_floor: send to {to}: {e}");
        }
    }
}

/// Byte offsets in the reply template of the fields that change per reply.
const TYPE_AT: usize = HEADER_LEN + 4 + 2;

/// A BOOTREPLY with options 53 (patched per reply), 54, 51 and 1, padded to 300 bytes.
fn reply_template(server_id: Ipv4Addr) -> Vec<u8> {
    let mut r = vec![0u8; HEADER_LEN];
    r[0] = 2; // op = BOOTREPLY
    r.extend_from_slice(&MAGIC_COOKIE);
    r.extend_from_slice(&[53, 1, 0]);
    r.extend_from_slice(&[54, 4]);
    r.extend_from_slice(&server_id.octets());
    r.extend_from_slice(&[51, 4]);
    r.extend_from_slice(&3600u32.to_be_bytes());
    r.extend_from_slice(&[1, 4, 255, 255, 0, 0]);
    r.push(255);
    r.resize(MIN_REPLY_LEN.max(r.len()), 0);
    r
}

/// Copies what the client matches on from `request` into `reply` and sets the message type.
/// `request` is at least `HEADER_LEN` bytes (checked by [`message_type`]).
fn fill_reply(reply: &mut [u8], request: &[u8], message_type: u8) {
    reply[1..4].copy_from_slice(&request[1..4]); // htype, hlen, hops
    reply[3] = 0;
    reply[4..8].copy_from_slice(&request[4..8]); // xid
    reply[8..12].fill(0); // secs
    reply[10..12].copy_from_slice(&request[10..12]); // flags
    reply[12..16].copy_from_slice(&request[12..16]); // ciaddr
                                                     // yiaddr: 198.18.128.0 + the last 15 bits of chaddr, distinct per client without a table.
    let low = u16::from_be_bytes([request[32], request[33]]) & 0x7fff;
    let yiaddr = u32::from(Ipv4Addr::new(198, 18, 128, 0)) + u32::from(low);
    reply[16..20].copy_from_slice(&yiaddr.to_be_bytes());
    reply[24..28].copy_from_slice(&request[24..28]); // giaddr
    reply[28..44].copy_from_slice(&request[28..44]); // chaddr
    reply[TYPE_AT] = message_type;
}

/// The DHCP message type (option 53) of a BOOTREQUEST, or `None` for anything else.
fn message_type(packet: &[u8]) -> Option<u8> {
    if packet.len() < HEADER_LEN + 4 || packet[0] != 1 {
        return None;
    }
    if packet[HEADER_LEN..HEADER_LEN + 4] != MAGIC_COOKIE {
        return None;
    }
    let mut options = &packet[HEADER_LEN + 4..];
    loop {
        match options {
            [255, ..] | [] => return None,
            [0, rest @ ..] => options = rest,
            [53, 1, kind, ..] => return Some(*kind),
            [_, len, rest @ ..] => options = rest.get(usize::from(*len)..)?,
            [_] => return None,
        }
    }
}
