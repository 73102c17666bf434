//! The Windows side of the server's sockets: the same [`ServerSocket`] surface as on Linux, on
//! Winsock through safe crates. quinn-udp reads each datagram with `WSARecvMsg` and `IP_PKTINFO`
//! (destination address and arrival interface) and sends with `WSASendMsg` and `IP_PKTINFO` (the
//! source address of a wildcard-bound socket); if-addrs maps an interface index to its address.
//! Windows has no recvmmsg/sendmmsg, so a batch is a loop of calls on the non-blocking socket after
//! one `WSAPoll` wait (calloutd-win32). What Windows cannot do (binding to a device by name, kernel
//! receive times, kernel drop counts) is a clear error or simply absent.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::windows::io::AsSocket;
use std::sync::Mutex;
use std::time::Duration;

use calloutd_win32::Ready;
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};

use super::{Outgoing, Received, DATAGRAM_BUFFER, RECV_BATCH, RECV_POLL};
use crate::ServerError;

/// How long a send waits for room in the socket's buffer before it fails.
const SEND_WAIT: Duration = Duration::from_secs(1);

/// One bound server socket.
#[derive(Debug)]
pub(crate) struct ServerSocket {
    socket: Socket,
    /// quinn-udp's per-socket state (WSARecvMsg, resolved once).
    state: UdpSocketState,
    /// The address it is bound to (port resolved if 0 was asked for).
    pub(crate) local: SocketAddrV4,
    /// Always `None` on Windows (`--interface` is refused).
    pub(crate) device: Option<String>,
    /// Interface index -> its first IPv4 address: Windows' packet info has no `ipi_spec_dst`, so
    /// the server address of a broadcast's arrival interface is looked up (refreshed on a miss).
    interfaces: Mutex<HashMap<u32, Ipv4Addr>>,
}

/// One worker's buffers for [`ServerSocket::recv_batch`].
pub(crate) struct RecvBuffers {
    datagrams: Vec<Vec<u8>>,
}

impl Default for RecvBuffers {
    fn default() -> Self {
        RecvBuffers {
            datagrams: vec![vec![0u8; DATAGRAM_BUFFER]; RECV_BATCH],
        }
    }
}

impl RecvBuffers {
    /// The bytes of the `index`th datagram of the last receive (`len` from its [`Received`]).
    pub(crate) fn datagram(&self, index: usize, len: usize) -> Option<&[u8]> {
        self.datagrams.get(index)?.get(..len)
    }
}

/// One worker's send state: nothing to keep on Windows (there is no sendmmsg to prepare for).
#[derive(Default)]
pub(crate) struct SendBuffers {
    _nothing: (),
}

impl ServerSocket {
    /// Binds `addr` (`--listen`).
    pub(crate) fn bind_address(
        addr: SocketAddrV4,
        recv_buffer: Option<usize>,
    ) -> Result<Self, ServerError> {
        let what = addr.to_string();
        let fail = |step: &'static str| {
            let what = what.clone();
            move |source: io::Error| ServerError::Socket { what, step, source }
        };
        let socket =
            Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(fail("socket"))?;
        socket
            .set_reuse_address(true)
            .map_err(fail("SO_REUSEADDR"))?;
        socket.set_broadcast(true).map_err(fail("SO_BROADCAST"))?;
        if let Some(bytes) = recv_buffer {
            socket
                .set_recv_buffer_size(bytes)
                .map_err(fail("SO_RCVBUF"))?;
        }
        // IP_PKTINFO, WSARecvMsg, and non-blocking mode: receives wait in WSAPoll, never in the
        // receive itself.
        let state = UdpSocketState::new(UdpSockRef::from(&socket)).map_err(fail("IP_PKTINFO"))?;
        socket.bind(&addr.into()).map_err(fail("bind"))?;
        let local = socket
            .local_addr()
            .map_err(fail("getsockname"))?
            .as_socket_ipv4()
            .ok_or_else(|| fail("getsockname")(io::Error::other("not an IPv4 address")))?;
        Ok(ServerSocket {
            socket,
            state,
            local,
            device: None,
            interfaces: Mutex::new(HashMap::new()),
        })
    }

    /// `--interface NAME`: Windows cannot bind a socket to a device by name (there is no
    /// SO_BINDTODEVICE), so this is refused with a clear error.
    pub(crate) fn bind_interface(
        name: &str,
        port: u16,
        _recv_buffer: Option<usize>,
    ) -> Result<Self, ServerError> {
        Err(ServerError::Socket {
            what: format!("interface {name} (0.0.0.0:{port})"),
            step: "SO_BINDTODEVICE",
            source: io::Error::new(
                io::ErrorKind::Unsupported,
                "Windows cannot bind a socket to a device by name: use --listen with the \
                 interface's address instead",
            ),
        })
    }

    /// Reads up to [`RECV_BATCH`] datagrams: waits (up to the receive poll) for the first if `wait`,
    /// then takes whatever else is queued without waiting. Nothing queued is `WouldBlock`, as on
    /// Linux.
    pub(crate) fn recv_batch(
        &self,
        buffers: &mut RecvBuffers,
        wait: bool,
        received: &mut Vec<Received>,
    ) -> io::Result<()> {
        received.clear();
        if wait && !calloutd_win32::wait(self.socket.as_socket(), Ready::Read, RECV_POLL)? {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let mut meta = [RecvMeta::default()];
        for datagram in buffers.datagrams.iter_mut() {
            let mut slices = [IoSliceMut::new(datagram)];
            loop {
                match self
                    .state
                    .recv(UdpSockRef::from(&self.socket), &mut slices, &mut meta)
                {
                    Ok(_) => break,
                    // An ICMP port-unreachable for an earlier reply: Windows reports it on the next
                    // receive of an unconnected UDP socket, Linux never does. Read on.
                    Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {}
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock && !received.is_empty() => {
                        return Ok(())
                    }
                    Err(err) => return Err(err),
                }
            }
            received.push(self.received(&meta[0]));
        }
        Ok(())
    }

    /// The addressing of one received datagram, from quinn-udp's metadata.
    fn received(&self, meta: &RecvMeta) -> Received {
        let peer = match meta.addr {
            SocketAddr::V4(addr) => addr,
            SocketAddr::V6(addr) => SocketAddrV4::new(
                addr.ip().to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
                addr.port(),
            ),
        };
        let bound = *self.local.ip();
        let mut received = Received {
            len: meta.len,
            peer,
            if_addr: bound,
            dst_addr: bound,
            ifindex: 0,
            arrived: None,
            kernel_drops: None,
        };
        if let Some(IpAddr::V4(dst)) = meta.dst_ip {
            received.dst_addr = dst;
        }
        let ifindex = meta.interface_index.unwrap_or(0);
        received.ifindex = i32::try_from(ifindex).unwrap_or(0);
        if bound.is_unspecified() {
            let dst = received.dst_addr;
            received.if_addr = if dst.is_broadcast() || dst.is_unspecified() {
                self.interface_address(ifindex).unwrap_or(bound)
            } else {
                dst
            };
        }
        received
    }

    /// The first IPv4 address of interface `ifindex` (the server address of a broadcast's arrival
    /// interface), from a cache refreshed when the index is not in it.
    fn interface_address(&self, ifindex: u32) -> Option<Ipv4Addr> {
        let mut cache = self
            .interfaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(addr) = cache.get(&ifindex) {
            return Some(*addr);
        }
        cache.clear();
        for interface in if_addrs::get_if_addrs().unwrap_or_default() {
            if let (Some(index), if_addrs::IfAddr::V4(v4)) = (interface.index, &interface.addr) {
                cache.entry(index).or_insert(v4.ip);
            }
        }
        cache.get(&ifindex).copied()
    }

    /// Sends `bytes` to `dest` from `source` (ignored when the socket is bound to an address: then
    /// that address is the source). On Windows the source address also picks the way out of a
    /// broadcast: quinn-udp's packet info carries no interface index, so `ifindex` is not used.
    pub(crate) fn send(
        &self,
        bytes: &[u8],
        dest: SocketAddrV4,
        source: Ipv4Addr,
        _ifindex: i32,
    ) -> io::Result<()> {
        let bound = *self.local.ip();
        let src_ip =
            (bound.is_unspecified() && !source.is_unspecified()).then_some(IpAddr::V4(source));
        let transmit = Transmit {
            destination: SocketAddr::V4(dest),
            ecn: None,
            contents: bytes,
            segment_size: None,
            src_ip,
        };
        match self
            .state
            .try_send(UdpSockRef::from(&self.socket), &transmit)
        {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                // The socket's send buffer is full: wait for room once, as a blocking send would.
                if calloutd_win32::wait(self.socket.as_socket(), Ready::Write, SEND_WAIT)? {
                    self.state
                        .try_send(UdpSockRef::from(&self.socket), &transmit)
                } else {
                    Err(err)
                }
            }
            other => other,
        }
    }

    /// Sends `replies` in order, one `WSASendMsg` each (Windows has no sendmmsg); `results` gets one
    /// entry per reply.
    pub(crate) fn send_batch(
        &self,
        _buffers: &mut SendBuffers,
        replies: &[Outgoing<'_>],
        results: &mut Vec<io::Result<()>>,
    ) {
        results.clear();
        results.extend(
            replies
                .iter()
                .map(|r| self.send(r.bytes, r.dest, r.source, r.ifindex)),
        );
    }

    /// Records the kernel's drop count that came with a datagram (never, on Windows).
    pub(crate) fn note_kernel_drops(&self, _dropped: u32) {}

    /// Datagrams the kernel dropped on this socket: Winsock does not say, so 0.
    pub(crate) fn kernel_drops(&self) -> u64 {
        0
    }

    /// Stop: receivers notice within the receive poll (a UDP socket's shutdown does not wake a
    /// WSAPoll on Windows, so this only refuses later receives).
    pub(crate) fn shutdown_read(&self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Read);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn interface_by_name_is_refused_with_a_clear_error() {
        let err = ServerSocket::bind_interface("eth0", 67, None).unwrap_err();
        assert!(err.to_string().contains("cannot bind"), "{err}");
    }

    #[test]
    fn recv_reports_addresses_and_send_reaches_the_peer() {
        let server =
            ServerSocket::bind_address(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), None).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let to_server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, server.local.port());
        client.send_to(b"ping", to_server).unwrap();
        client.send_to(b"pong", to_server).unwrap();
        let mut buffers = RecvBuffers::default();
        let mut received = Vec::new();
        let mut got = Vec::new();
        while got.len() < 2 {
            server
                .recv_batch(&mut buffers, true, &mut received)
                .unwrap();
            for (i, r) in received.iter().enumerate() {
                got.push(buffers.datagram(i, r.len).unwrap().to_vec());
                assert_eq!(
                    (r.if_addr, r.dst_addr),
                    (Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST)
                );
                assert_eq!(SocketAddr::V4(r.peer), client.local_addr().unwrap());
            }
        }
        assert_eq!(got, [b"ping".to_vec(), b"pong".to_vec()]);
        let SocketAddr::V4(to_client) = client.local_addr().unwrap() else {
            unreachable!()
        };
        server
            .send(b"reply", to_client, Ipv4Addr::LOCALHOST, 0)
            .unwrap();
        let mut buf = [0u8; 16];
        let (len, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"reply");
        assert_eq!(from.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        let nothing = server
            .recv_batch(&mut buffers, false, &mut received)
            .unwrap_err();
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
    }
}
