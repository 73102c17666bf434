//! The Windows side of the server's sockets: the same [`ServerSocket`] surface as on Linux, on
//! Winsock. calloutd-win32 reads each datagram with `WSARecvMsg` and `IP_PKTINFO` (destination
//! address and arrival interface) and sends with `WSASendMsg` and `IP_PKTINFO` (the source of a
//! wildcard-bound socket, the way out of a broadcast); if-addrs maps an interface index to its
//! address. Windows has no recvmmsg/sendmmsg, so a batch is a loop of calls on the non-blocking
//! socket after one `WSAPoll` wait. What Windows cannot do (binding to a device by name, kernel
//! receive times, kernel drop counts) is a clear error or simply absent.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::windows::io::AsSocket;
use std::sync::Mutex;
use std::time::Duration;

use calloutd_win32::{Datagram, PktInfoSocket, Ready};
use socket2::Socket;

use super::{Outgoing, Received, DATAGRAM_BUFFER, RECV_BATCH, RECV_POLL};
use crate::ServerError;

/// How long a send waits for room in the socket's buffer before it fails.
const SEND_WAIT: Duration = Duration::from_secs(1);

/// One bound server socket.
#[derive(Debug)]
pub(crate) struct ServerSocket {
    socket: Socket,
    /// `WSARecvMsg` for it, resolved once.
    pktinfo: PktInfoSocket,
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
        let setup = super::setup::SocketSetup::new(addr.to_string());
        let socket = setup.udp_socket()?;
        setup.recv_buffer(&socket, recv_buffer)?;
        let pktinfo =
            PktInfoSocket::new(socket.as_socket()).map_err(|(step, e)| setup.fail(step)(e))?;
        // Receives wait in WSAPoll (RECV_POLL at most), never in the receive itself.
        socket
            .set_nonblocking(true)
            .map_err(setup.fail("FIONBIO"))?;
        let local = setup.bind(&socket, addr)?;
        Ok(ServerSocket {
            socket,
            pktinfo,
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
        for datagram in buffers.datagrams.iter_mut() {
            let one = loop {
                match self.pktinfo.recv(&self.socket, datagram) {
                    Ok(one) => break one,
                    // An ICMP port-unreachable for an earlier reply, should Winsock still report
                    // one (SIO_UDP_CONNRESET is off): Linux never does on this socket. Read on.
                    Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {}
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock && !received.is_empty() => {
                        return Ok(())
                    }
                    Err(err) => return Err(err),
                }
            };
            received.push(self.received(&one));
        }
        Ok(())
    }

    /// The addressing of one received datagram, from its packet info.
    fn received(&self, one: &Datagram) -> Received {
        let bound = *self.local.ip();
        let mut received = Received {
            len: one.len,
            peer: one.peer,
            if_addr: bound,
            dst_addr: bound,
            ifindex: 0,
            arrived: None,
            kernel_drops: None,
        };
        let Some((dst, ifindex)) = one.pktinfo else {
            return received;
        };
        received.dst_addr = dst;
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
        match calloutd_win32::send_msg(&self.socket, bytes, dest, info) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                // The socket's send buffer is full: wait for room once, as a blocking send would.
                if calloutd_win32::wait(self.socket.as_socket(), Ready::Write, SEND_WAIT)? {
                    calloutd_win32::send_msg(&self.socket, bytes, dest, info)
                } else {
                    Err(err)
                }
            }
            other => other,
        }
    }

    /// The packet info a reply needs (source address, interface index), as on Linux: only to pin
    /// the source of a wildcard-bound socket or the way out for a broadcast.
    fn packet_info(
        &self,
        dest: SocketAddrV4,
        source: Ipv4Addr,
        ifindex: i32,
    ) -> Option<(Ipv4Addr, u32)> {
        let (spec_dst, ifindex) = super::setup::send_path(*self.local.ip(), dest, source, ifindex)?;
        Some((spec_dst, u32::try_from(ifindex).unwrap_or(0)))
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
                assert_eq!(
                    std::net::SocketAddr::V4(r.peer),
                    client.local_addr().unwrap()
                );
            }
        }
        assert_eq!(got, [b"ping".to_vec(), b"pong".to_vec()]);
        let std::net::SocketAddr::V4(to_client) = client.local_addr().unwrap() else {
            unreachable!()
        };
        server
            .send(b"reply", to_client, Ipv4Addr::LOCALHOST, 0)
            .unwrap();
        let mut buf = [0u8; 16];
        let (len, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"reply");
        assert_eq!(from.ip(), std::net::IpAddr::V4(Ipv4Addr::LOCALHOST));
        let nothing = server
            .recv_batch(&mut buffers, false, &mut received)
            .unwrap_err();
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
    }
}
