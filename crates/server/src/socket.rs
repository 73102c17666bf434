//! The server's UDP sockets: binding (SO_REUSEADDR, SO_BROADCAST, SO_BINDTODEVICE, IP_PKTINFO),
//! receiving with the packet info that tells which interface address and destination a datagram had,
//! and sending from the right source. This file is the Linux implementation; `socket/windows.rs`
//! gives Windows the same surface on Winsock.

mod setup;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::{RecvBuffers, SendBuffers, ServerSocket};

#[cfg(unix)]
use std::io;
#[cfg(unix)]
use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4};
#[cfg(unix)]
use std::os::fd::AsRawFd;
#[cfg(unix)]
use std::sync::atomic::{AtomicU32, Ordering};
#[cfg(unix)]
use std::time::UNIX_EPOCH;
use std::time::{Duration, SystemTime};

#[cfg(unix)]
use nix::sys::socket::{
    recvmmsg, sendmmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned,
    MsgFlags, MultiHeaders, RecvMsg, SockaddrIn,
};
#[cfg(unix)]
use socket2::Socket;

use crate::ServerError;

/// How long a blocking receive waits before looking at the service state again: a backstop only,
/// since stop also shuts the socket down for reading, which wakes the receiver at once.
const RECV_POLL: Duration = Duration::from_millis(500);

#[cfg(unix)]
/// One bound server socket.
#[derive(Debug)]
pub(crate) struct ServerSocket {
    socket: Socket,
    /// The address it is bound to (port resolved if 0 was asked for).
    pub(crate) local: SocketAddrV4,
    /// The device it is bound to (`--interface`), if any.
    pub(crate) device: Option<String>,
    /// The kernel's last reported count of datagrams dropped on this socket (SO_RXQ_OVFL).
    kernel_drops: AtomicU32,
}

/// The most datagrams one receive call reads ([`ServerSocket::recv_batch`]).
pub(crate) const RECV_BATCH: usize = 32;

/// Receive buffer per datagram: the largest possible UDP payload over IPv4 fits.
const DATAGRAM_BUFFER: usize = 65_536;

#[cfg(unix)]
/// One worker's buffers for [`ServerSocket::recv_batch`]: [`RECV_BATCH`] datagrams with their
/// addresses and control messages.
pub(crate) struct RecvBuffers {
    headers: MultiHeaders<SockaddrIn>,
    /// Whether a receive has filled `headers` since they were made (see [`RecvBuffers::headers`]).
    used: bool,
    datagrams: Vec<Vec<u8>>,
}

#[cfg(unix)]
impl Default for RecvBuffers {
    fn default() -> Self {
        RecvBuffers {
            headers: MultiHeaders::preallocate(RECV_BATCH, Some(control_buffer())),
            used: false,
            datagrams: vec![vec![0u8; DATAGRAM_BUFFER]; RECV_BATCH],
        }
    }
}

#[cfg(unix)]
impl RecvBuffers {
    /// Makes the headers ready for a receive. The kernel shrinks each header's control length to what its
    /// datagram used, and nix's `recvmmsg` does not restore it, so reused headers would cut the
    /// control messages of a later datagram that carries one more (the drop count, which comes
    /// before the packet info), and lose its packet info: a reply would then name 0.0.0.0 as the
    /// server. So headers that a receive filled are made anew.
    fn renew_used_headers(&mut self) {
        if std::mem::replace(&mut self.used, true) {
            self.headers = MultiHeaders::preallocate(RECV_BATCH, Some(control_buffer()));
        }
    }
}

#[cfg(unix)]
impl RecvBuffers {
    /// The bytes of the `index`th datagram of the last receive (`len` from its [`Received`]).
    pub(crate) fn datagram(&self, index: usize, len: usize) -> Option<&[u8]> {
        self.datagrams.get(index)?.get(..len)
    }
}

/// The most replies one send call sends ([`ServerSocket::send_batch`]).
#[cfg(unix)]
pub(crate) const SEND_BATCH: usize = 64;

#[cfg(unix)]
/// One worker's headers for [`ServerSocket::send_batch`]: for replies without packet info, and for
/// replies with it (its control buffer holds exactly one `in_pktinfo`).
pub(crate) struct SendBuffers {
    plain: MultiHeaders<SockaddrIn>,
    pinned: MultiHeaders<SockaddrIn>,
}

#[cfg(unix)]
impl Default for SendBuffers {
    fn default() -> Self {
        SendBuffers {
            plain: MultiHeaders::preallocate(SEND_BATCH, None),
            pinned: MultiHeaders::preallocate(SEND_BATCH, Some(nix::cmsg_space!(libc::in_pktinfo))),
        }
    }
}

/// A reply to send: its bytes, where to, and from which address and interface (see
/// [`ServerSocket::send`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) dest: SocketAddrV4,
    pub(crate) source: Ipv4Addr,
    pub(crate) ifindex: i32,
}

/// One received datagram's addressing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    pub(crate) len: usize,
    pub(crate) peer: SocketAddrV4,
    /// The server address of the receiving interface.
    pub(crate) if_addr: Ipv4Addr,
    /// The datagram's destination address.
    pub(crate) dst_addr: Ipv4Addr,
    /// The receiving interface (0 when unknown): broadcast replies leave through it.
    pub(crate) ifindex: i32,
    /// When the kernel received it (SO_TIMESTAMPNS), if it said.
    pub(crate) arrived: Option<SystemTime>,
    /// The socket's count of datagrams the kernel dropped for want of buffer space (SO_RXQ_OVFL).
    pub(crate) kernel_drops: Option<u32>,
}

#[cfg(unix)]
impl ServerSocket {
    /// Binds `addr` (`--listen`).
    pub(crate) fn bind_address(
        addr: SocketAddrV4,
        recv_buffer: Option<usize>,
    ) -> Result<Self, ServerError> {
        Self::bind(addr, None, recv_buffer)
    }

    /// Binds 0.0.0.0:`port` on device `name` only (`--interface`).
    pub(crate) fn bind_interface(
        name: &str,
        port: u16,
        recv_buffer: Option<usize>,
    ) -> Result<Self, ServerError> {
        Self::bind(
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port),
            Some(name),
            recv_buffer,
        )
    }

    fn bind(
        addr: SocketAddrV4,
        device: Option<&str>,
        recv_buffer: Option<usize>,
    ) -> Result<Self, ServerError> {
        let setup = setup::SocketSetup::new(match device {
            Some(name) => format!("interface {name} ({addr})"),
            None => addr.to_string(),
        });
        let fail = |step| setup.fail(step);
        let socket = setup.udp_socket()?;
        setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)
            .map_err(|errno| fail("IP_PKTINFO")(io::Error::from(errno)))?;
        // The kernel's receive time says how long a datagram waited in the socket buffer.
        setsockopt(&socket, sockopt::ReceiveTimestampns, &true)
            .map_err(|errno| fail("SO_TIMESTAMPNS")(io::Error::from(errno)))?;
        setsockopt(&socket, sockopt::RxqOvfl, &1)
            .map_err(|errno| fail("SO_RXQ_OVFL")(io::Error::from(errno)))?;
        if let Some(name) = device {
            socket
                .bind_device(Some(name.as_bytes()))
                .map_err(fail("SO_BINDTODEVICE"))?;
        }
        setup.recv_buffer(&socket, recv_buffer)?;
        socket
            .set_read_timeout(Some(RECV_POLL))
            .map_err(fail("SO_RCVTIMEO"))?;
        let local = setup.bind(&socket, addr)?;
        Ok(ServerSocket {
            socket,
            local,
            device: device.map(str::to_owned),
            kernel_drops: AtomicU32::new(0),
        })
    }

    /// Reads up to [`RECV_BATCH`] datagrams into `buffers` with one system call: waits for the
    /// first if `wait` (up to the socket's receive timeout), then takes whatever else is queued
    /// without waiting. `received` gets one entry per datagram, in arrival order; the bytes of
    /// entry `i` are [`RecvBuffers::datagram`]`(i, len)`.
    pub(crate) fn recv_batch(
        &self,
        buffers: &mut RecvBuffers,
        wait: bool,
        received: &mut Vec<Received>,
    ) -> io::Result<()> {
        received.clear();
        let flags = if wait {
            MsgFlags::MSG_WAITFORONE
        } else {
            MsgFlags::MSG_DONTWAIT
        };
        buffers.renew_used_headers();
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
            .datagrams
            .iter_mut()
            .map(|datagram| [IoSliceMut::new(datagram)])
            .collect();
        let results = recvmmsg(
            self.socket.as_raw_fd(),
            &mut buffers.headers,
            slices.iter_mut(),
            flags,
            None,
        )
        .map_err(io::Error::from)?;
        received.extend(results.map(|msg| self.received(&msg)));
        Ok(())
    }

    /// The addressing of one received datagram, from its header and control messages.
    fn received(&self, msg: &RecvMsg<'_, '_, SockaddrIn>) -> Received {
        let peer = msg
            .address
            .map(SocketAddrV4::from)
            .unwrap_or_else(|| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        let bound = *self.local.ip();
        let mut received = Received {
            len: msg.bytes,
            peer,
            if_addr: bound,
            dst_addr: bound,
            ifindex: 0,
            arrived: None,
            kernel_drops: None,
        };
        // A truncated control buffer only loses the packet info; the datagram itself is fine.
        if let Ok(cmsgs) = msg.cmsgs() {
            for cmsg in cmsgs {
                match cmsg {
                    ControlMessageOwned::Ipv4PacketInfo(info) => {
                        if bound.is_unspecified() {
                            received.if_addr =
                                Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr));
                        }
                        received.dst_addr = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
                        received.ifindex = info.ipi_ifindex;
                    }
                    ControlMessageOwned::ScmTimestampns(time) => {
                        received.arrived = u64::try_from(time.tv_sec())
                            .ok()
                            .zip(u32::try_from(time.tv_nsec()).ok())
                            .and_then(|(secs, nanos)| {
                                UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
                            });
                    }
                    ControlMessageOwned::RxqOvfl(dropped) => received.kernel_drops = Some(dropped),
                    _ => {}
                }
            }
        }
        received
    }

    /// Sends `bytes` to `dest` from `source` (ignored when the socket is bound to an address: then
    /// that address is the source). A broadcast leaves through `ifindex`, the interface the request
    /// came in on; a unicast follows the routing table.
    pub(crate) fn send(
        &self,
        bytes: &[u8],
        dest: SocketAddrV4,
        source: Ipv4Addr,
        ifindex: i32,
    ) -> io::Result<()> {
        let info = self.packet_info(dest, source, ifindex);
        let cmsgs = info.as_ref().map(ControlMessage::Ipv4PacketInfo);
        sendmsg(
            self.socket.as_raw_fd(),
            &[IoSlice::new(bytes)],
            cmsgs.as_slice(),
            MsgFlags::empty(),
            Some(&SockaddrIn::from(dest)),
        )
        .map(|_| ())
        .map_err(io::Error::from)
    }

    /// Sends `replies` in order, as [`ServerSocket::send`] would each, but with one system call
    /// (sendmmsg) for every run of replies that need the same packet info. `results` gets one
    /// entry per reply.
    pub(crate) fn send_batch(
        &self,
        buffers: &mut SendBuffers,
        replies: &[Outgoing<'_>],
        results: &mut Vec<io::Result<()>>,
    ) {
        results.clear();
        let mut rest = replies;
        while let Some(first) = rest.first() {
            let info = self.packet_info(first.dest, first.source, first.ifindex);
            let run = rest
                .iter()
                .take(SEND_BATCH)
                .take_while(|r| same_info(&self.packet_info(r.dest, r.source, r.ifindex), &info))
                .count();
            let (group, after) = rest.split_at(run);
            let sent = self.send_run(buffers, group, info.as_ref());
            results.extend((0..sent).map(|_| Ok(())));
            // The kernel stops at the first reply it cannot send: that one and the rest of the run
            // go one by one, so each gets its own result.
            for reply in group.iter().skip(sent) {
                results.push(self.send(reply.bytes, reply.dest, reply.source, reply.ifindex));
            }
            rest = after;
        }
    }

    /// One sendmmsg for `group` (all with packet info `info`); how many the kernel sent.
    fn send_run(
        &self,
        buffers: &mut SendBuffers,
        group: &[Outgoing<'_>],
        info: Option<&libc::in_pktinfo>,
    ) -> usize {
        let slices: Vec<[IoSlice<'_>; 1]> = group.iter().map(|r| [IoSlice::new(r.bytes)]).collect();
        let addrs: Vec<Option<SockaddrIn>> = group
            .iter()
            .map(|r| Some(SockaddrIn::from(r.dest)))
            .collect();
        let cmsgs = info.map(ControlMessage::Ipv4PacketInfo);
        let headers = match info {
            Some(_) => &mut buffers.pinned,
            None => &mut buffers.plain,
        };
        let fd = self.socket.as_raw_fd();
        sendmmsg(
            fd,
            headers,
            &slices,
            addrs,
            cmsgs.as_slice(),
            MsgFlags::empty(),
        )
        .map_or(0, |sent| sent.count())
    }

    /// The packet info a reply needs, if any: only when there is something to pin down that the
    /// socket does not already, the source of a wildcard-bound socket or the way out for a broadcast.
    fn packet_info(
        &self,
        dest: SocketAddrV4,
        source: Ipv4Addr,
        ifindex: i32,
    ) -> Option<libc::in_pktinfo> {
        let (spec_dst, ifindex) = setup::send_path(*self.local.ip(), dest, source, ifindex)?;
        Some(libc::in_pktinfo {
            ipi_ifindex: ifindex,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(spec_dst).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        })
    }

    /// Records the kernel's drop count that came with a datagram.
    pub(crate) fn note_kernel_drops(&self, dropped: u32) {
        self.kernel_drops.fetch_max(dropped, Ordering::Relaxed);
    }

    /// Datagrams the kernel dropped on this socket for want of buffer space, as last reported.
    pub(crate) fn kernel_drops(&self) -> u64 {
        u64::from(self.kernel_drops.load(Ordering::Relaxed))
    }

    /// Wakes a receiver blocked on this socket (stop): later receives return at once.
    pub(crate) fn shutdown_read(&self) {
        // Linux wakes blocked readers of an unconnected UDP socket even though it reports ENOTCONN.
        let _ = self.socket.shutdown(std::net::Shutdown::Read);
    }
}

#[cfg(unix)]
/// Whether two replies need the same packet info.
fn same_info(a: &Option<libc::in_pktinfo>, b: &Option<libc::in_pktinfo>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            (a.ipi_ifindex, a.ipi_spec_dst.s_addr) == (b.ipi_ifindex, b.ipi_spec_dst.s_addr)
        }
        _ => false,
    }
}

#[cfg(unix)]
/// A control buffer big enough for the packet info, the receive time and the drop count.
pub(crate) fn control_buffer() -> Vec<u8> {
    nix::cmsg_space!(libc::in_pktinfo, libc::timespec, u32)
}

/// Parses a `--listen` value: `ADDR` or `ADDR:PORT` (port 67 unless given).
pub fn parse_listen(text: &str) -> Result<SocketAddrV4, ServerError> {
    let text = text.trim();
    let invalid = || ServerError::InvalidListen(text.to_owned());
    if let Ok(addr) = text.parse::<SocketAddrV4>() {
        return Ok(addr);
    }
    text.parse::<Ipv4Addr>()
        .map(|ip| SocketAddrV4::new(ip, crate::DHCP_SERVER_PORT))
        .map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_values_default_to_port_67() {
        assert_eq!(
            parse_listen("127.0.0.1").unwrap(),
            "127.0.0.1:67".parse().unwrap()
        );
        assert_eq!(
            parse_listen(" 10.0.0.1:6767 ").unwrap(),
            "10.0.0.1:6767".parse().unwrap()
        );
        assert_eq!(
            parse_listen("0.0.0.0").unwrap(),
            "0.0.0.0:67".parse().unwrap()
        );
        for bad in [
            "",
            "localhost",
            "1.2.3.4:",
            "1.2.3.4:70000",
            "1.2.3",
            "[::1]:67",
        ] {
            assert!(
                matches!(parse_listen(bad), Err(ServerError::InvalidListen(_))),
                "{bad}"
            );
        }
    }
}

#[cfg(test)]
mod recv_tests {
    use super::*;
    use std::net::UdpSocket;

    // Unix only: the kernel receive time (SO_TIMESTAMPNS) has no Windows counterpart.
    #[cfg(unix)]
    #[test]
    fn recv_reports_addresses_and_the_kernel_receive_time() {
        let server =
            ServerSocket::bind_address(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), None).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client_addr = match client.local_addr().unwrap() {
            std::net::SocketAddr::V4(addr) => addr,
            other => panic!("{other}"),
        };
        let mut buffers = RecvBuffers::default();
        let mut received = Vec::new();
        // The kernel turns receive timestamps on a moment after the first socket asks (a deferred
        // static key); until then the time is the read's. So allow a few tries.
        let mut waited = Duration::ZERO;
        for _ in 0..50 {
            client.send_to(b"ping", server.local).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            server
                .recv_batch(&mut buffers, true, &mut received)
                .unwrap();
            let [received] = received[..] else {
                panic!("{} datagrams", received.len())
            };
            assert_eq!(buffers.datagram(0, received.len), Some(&b"ping"[..]));
            assert_eq!(received.peer, client_addr);
            assert_eq!(
                (received.if_addr, received.dst_addr),
                (Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST)
            );
            assert!(received.ifindex > 0);
            let arrived = received.arrived.expect("no SO_TIMESTAMPNS time");
            waited = SystemTime::now()
                .duration_since(arrived)
                .unwrap_or_default();
            if waited >= Duration::from_millis(20) {
                break;
            }
        }
        assert!(waited >= Duration::from_millis(20), "{waited:?}");
        let nothing = server
            .recv_batch(&mut buffers, false, &mut received)
            .unwrap_err();
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_send_batch_delivers_in_order_and_reports_each_reply_also_after_a_failure() {
        // Wildcard-bound, so replies with a source carry packet info and those without do not: the
        // batch mixes runs of both.
        let server =
            ServerSocket::bind_address(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), None).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let to_client = match client.local_addr().unwrap() {
            std::net::SocketAddr::V4(addr) => addr,
            other => panic!("{other}"),
        };
        let nowhere = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
        let reply = |bytes: &'static [u8], dest, source| Outgoing {
            bytes,
            dest,
            source,
            ifindex: 0,
        };
        let replies = [
            reply(b"one", to_client, Ipv4Addr::LOCALHOST),
            reply(b"two", to_client, Ipv4Addr::LOCALHOST),
            reply(b"bad", nowhere, Ipv4Addr::LOCALHOST),
            reply(b"three", to_client, Ipv4Addr::LOCALHOST),
            reply(b"four", to_client, Ipv4Addr::UNSPECIFIED),
        ];
        let mut buffers = SendBuffers::default();
        let mut results = Vec::new();
        server.send_batch(&mut buffers, &replies, &mut results);
        let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, true, false, true, true]);
        let mut buf = [0u8; 16];
        for expected in [&b"one"[..], b"two", b"three", b"four"] {
            let (len, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], expected);
            assert_eq!(from.ip(), std::net::IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
    }

    /// Reads until the socket is empty; every datagram read.
    #[cfg(unix)]
    fn drain(server: &ServerSocket, buffers: &mut RecvBuffers) -> Vec<Received> {
        let mut all = Vec::new();
        let mut received = Vec::new();
        while server.recv_batch(buffers, false, &mut received).is_ok() {
            all.append(&mut received);
        }
        all
    }

    // Unix only: the kernel's drop count (SO_RXQ_OVFL) and recvmmsg.
    #[cfg(unix)]
    #[test]
    fn the_packet_info_survives_reused_headers_once_the_kernel_reports_drops() {
        // Wildcard-bound: the receiving address comes only from the packet info. A receive buffer
        // of a few datagrams, so a burst overflows it.
        let server =
            ServerSocket::bind_address(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), Some(4096))
                .unwrap();
        let to_server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, server.local.port());
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buffers = RecvBuffers::default();
        // Datagrams queued before any drop carry the receive time and the packet info...
        for _ in 0..300 {
            let _ = client.send_to(b"burst", to_server);
        }
        let before = drain(&server, &mut buffers);
        assert!(
            !before.is_empty() && before.len() < 300,
            "{} of 300 kept",
            before.len()
        );
        // ...those queued after the drops one more control message, the drop count, before the
        // packet info: headers whose control length shrank to the smaller set would cut it off.
        for _ in 0..3 {
            client.send_to(b"after", to_server).unwrap();
        }
        let after = drain(&server, &mut buffers);
        assert_eq!(after.len(), 3);
        for received in before.iter().chain(&after) {
            assert_eq!(
                (received.if_addr, received.dst_addr),
                (Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST),
                "packet info of every datagram"
            );
        }
        assert!(
            after.iter().all(|r| r.kernel_drops.is_some_and(|d| d > 0)),
            "the drop count reported: {:?}",
            after.iter().map(|r| r.kernel_drops).collect::<Vec<_>>()
        );
    }

    #[test]
    fn one_receive_takes_everything_queued_in_arrival_order_up_to_the_batch_size() {
        let server =
            ServerSocket::bind_address(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), None).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent = RECV_BATCH + 3;
        for n in 0..sent {
            client.send_to(&vec![b'x'; n + 1], server.local).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        let mut buffers = RecvBuffers::default();
        let mut received = Vec::new();
        let mut lengths = Vec::new();
        server
            .recv_batch(&mut buffers, true, &mut received)
            .unwrap();
        assert_eq!(received.len(), RECV_BATCH, "a full batch");
        assert_eq!(buffers.datagram(1, 2), Some(&b"xx"[..]));
        lengths.extend(received.iter().map(|r| r.len));
        server
            .recv_batch(&mut buffers, false, &mut received)
            .unwrap();
        lengths.extend(received.iter().map(|r| r.len));
        assert_eq!(lengths, (1..=sent).collect::<Vec<_>>());
    }
}
