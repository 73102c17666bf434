//! Conflict detection with ICMP echo: the engine's [`Prober`] asks whether an address answers a ping
//! before offering it (Microsoft's `ConflictDetectionAttempts`).
//!
//! Each probe opens its own ICMP socket, so concurrent probes from several workers never see each
//! other's state: a raw socket (needs CAP_NET_RAW), or where that is refused an unprivileged ping
//! socket (`net.ipv4.ping_group_range`). A raw socket sees every ICMP message the host receives, so
//! replies are matched on source address, identifier and sequence number.
//!
//! On Windows the system's ICMP helper (`IcmpSendEcho`, through calloutd-win32) sends the echo and
//! matches the reply: it needs no privilege.

use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;
#[cfg(unix)]
use std::{net::SocketAddrV4, os::fd::AsRawFd, time::Instant};

use calloutd_hooks::Prober;
#[cfg(unix)]
use nix::errno::Errno;
#[cfg(unix)]
use nix::sys::socket::{recvfrom, SockaddrIn};
#[cfg(unix)]
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tracing::warn;

/// Default wait for an echo reply, per attempt.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

#[cfg(unix)]
const ECHO_REPLY: u8 = 0;
#[cfg(unix)]
const ECHO_REQUEST: u8 = 8;
/// Bytes after the 8-byte ICMP header, so the request is recognisable in a capture.
const PAYLOAD: &[u8] = b"calloutd conflict detection";

/// ICMP echo prober: [`Prober::probe`] is true when the address answered any of the attempts.
#[derive(Debug)]
pub struct IcmpProber {
    timeout: Duration,
    /// Identifiers for raw-socket probes: distinct per probe in this process.
    next_id: AtomicU16,
}

impl IcmpProber {
    /// A prober that waits `timeout` for each attempt's reply.
    pub fn new(timeout: Duration) -> Self {
        IcmpProber {
            timeout,
            // The process id's low bits set apart probes of two calloutd processes on one host.
            next_id: AtomicU16::new(std::process::id() as u16),
        }
    }

    #[cfg(unix)]
    fn probe_once(&self, ip: Ipv4Addr, attempts: u8) -> io::Result<bool> {
        let (socket, raw) = open_icmp_socket()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let dest = SockAddr::from(SocketAddrV4::new(ip, 0));
        let mut buf = [0u8; 1500];
        for seq in 0..u16::from(attempts) {
            socket.send_to(&echo_request(id, seq), &dest)?;
            let deadline = Instant::now() + self.timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                socket.set_read_timeout(Some(left))?;
                let (len, from) = match recvfrom::<SockaddrIn>(socket.as_raw_fd(), &mut buf) {
                    Ok(received) => received,
                    Err(Errno::EAGAIN | Errno::EINTR) => continue,
                    Err(errno) => return Err(errno.into()),
                };
                if from.map(|addr| addr.ip()) != Some(ip) {
                    continue;
                }
                let bytes = buf.get(..len).unwrap_or_default();
                match parse_echo_reply(bytes, raw) {
                    // A ping socket's kernel rewrites the identifier and only delivers our replies.
                    Some((reply_id, _)) if raw && reply_id != id => {}
                    Some(_) => return Ok(true),
                    None => {}
                }
            }
        }
        Ok(false)
    }

    /// Windows: `IcmpSendEcho` per attempt, with the same payload and timeout.
    #[cfg(windows)]
    fn probe_once(&self, ip: Ipv4Addr, attempts: u8) -> io::Result<bool> {
        // The identifier is the ICMP helper's business on Windows; the counter still moves so both
        // systems number their probes alike.
        self.next_id.fetch_add(1, Ordering::Relaxed);
        calloutd_win32::icmp_echo(ip, PAYLOAD, self.timeout, attempts)
    }
}

impl Default for IcmpProber {
    fn default() -> Self {
        IcmpProber::new(DEFAULT_PROBE_TIMEOUT)
    }
}

impl Prober for IcmpProber {
    /// Pings `ip` up to `attempts` times, waiting the configured timeout for each; true on a reply.
    /// When no ICMP socket can be opened or sending fails, it logs why and says "free" (the address is
    /// offered, as without conflict detection).
    fn probe(&self, ip: Ipv4Addr, attempts: u8) -> bool {
        if attempts == 0 {
            return false;
        }
        match self.probe_once(ip, attempts) {
            Ok(in_use) => in_use,
            Err(err) => {
                warn!(%ip, "conflict detection could not ping: {err}");
                false
            }
        }
    }
}

#[cfg(unix)]
/// A raw ICMP socket (`true`), or an unprivileged ping socket (`false`) where raw is refused.
fn open_icmp_socket() -> io::Result<(Socket, bool)> {
    match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
        Ok(socket) => Ok((socket, true)),
        Err(raw_err) => Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4))
            .map(|socket| (socket, false))
            .map_err(|_| raw_err),
    }
}

#[cfg(unix)]
/// An ICMP echo request with its checksum.
fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut packet = Vec::with_capacity(8 + PAYLOAD.len());
    packet.extend_from_slice(&[ECHO_REQUEST, 0, 0, 0]);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(PAYLOAD);
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
}

#[cfg(unix)]
/// The identifier and sequence number of an echo reply; `None` for anything else. A raw socket's
/// packets start with the IP header, a ping socket's with the ICMP header.
fn parse_echo_reply(packet: &[u8], with_ip_header: bool) -> Option<(u16, u16)> {
    let icmp = if with_ip_header {
        let header_len = usize::from(packet.first()? & 0x0F) * 4;
        packet.get(header_len..)?
    } else {
        packet
    };
    let header = icmp.get(..8)?;
    if header[0] != ECHO_REPLY || header[1] != 0 {
        return None;
    }
    Some((
        u16::from_be_bytes([header[4], header[5]]),
        u16::from_be_bytes([header[6], header[7]]),
    ))
}

#[cfg(unix)]
/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| {
            u32::from(u16::from_be_bytes([
                pair[0],
                pair.get(1).copied().unwrap_or(0),
            ]))
        })
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

// Unix only: Windows' ICMP helper builds and matches the packets itself.
#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksums_to_zero_and_carries_id_and_seq() {
        let packet = echo_request(0xBEEF, 3);
        assert_eq!(packet[0], ECHO_REQUEST);
        assert_eq!(
            checksum(&packet),
            0,
            "a packet with its checksum sums to zero"
        );
        assert_eq!(&packet[4..8], &[0xBE, 0xEF, 0, 3]);
        assert!(packet.ends_with(PAYLOAD));
        // RFC 1071's example words sum to 0xDDF2, so the checksum is its complement.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]),
            !0xDDF2
        );
        assert_eq!(checksum(&[0xFF]), !0xFF00);
    }

    #[test]
    fn echo_replies_are_recognised_with_or_without_the_ip_header() {
        let mut reply = echo_request(7, 9);
        reply[0] = ECHO_REPLY;
        assert_eq!(parse_echo_reply(&reply, false), Some((7, 9)));
        let mut with_ip = vec![0x45];
        with_ip.extend_from_slice(&[0; 19]);
        with_ip.extend_from_slice(&reply);
        assert_eq!(parse_echo_reply(&with_ip, true), Some((7, 9)));
        // Options make the IP header longer (IHL 6 = 24 bytes).
        let mut with_options = vec![0x46];
        with_options.extend_from_slice(&[0; 23]);
        with_options.extend_from_slice(&reply);
        assert_eq!(parse_echo_reply(&with_options, true), Some((7, 9)));
    }

    #[test]
    fn other_icmp_messages_and_short_packets_are_not_replies() {
        assert_eq!(parse_echo_reply(&echo_request(1, 1), false), None);
        let unreachable = [3u8, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_echo_reply(&unreachable, false), None);
        assert_eq!(parse_echo_reply(&[0, 0, 0], false), None);
        assert_eq!(parse_echo_reply(&[], true), None);
        assert_eq!(parse_echo_reply(&[0x4F, 0, 0], true), None);
    }
}
