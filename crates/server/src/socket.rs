//! The server's UDP sockets: binding (SO_REUSEADDR, SO_BROADCAST, SO_BINDTODEVICE, IP_PKTINFO),
//! receiving with the packet info that tells which interface address and destination a datagram had,
//! and sending from the right source.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn,
};
use socket2::{Domain, Protocol, Socket, Type};

use crate::ServerError;

/// How long a blocking receive waits before looking at the service state again: a backstop only,
/// since stop also shuts the socket down for reading, which wakes the receiver at once.
const RECV_POLL: Duration = Duration::from_millis(500);

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
        let what = match device {
            Some(name) => format!("interface {name} ({addr})"),
            None => addr.to_string(),
        };
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
        if let Some(bytes) = recv_buffer {
            socket
                .set_recv_buffer_size(bytes)
                .map_err(fail("SO_RCVBUF"))?;
        }
        socket
            .set_read_timeout(Some(RECV_POLL))
            .map_err(fail("SO_RCVTIMEO"))?;
        socket.bind(&addr.into()).map_err(fail("bind"))?;
        let local = socket
            .local_addr()
            .map_err(fail("getsockname"))?
            .as_socket_ipv4()
            .ok_or_else(|| fail("getsockname")(io::Error::other("not an IPv4 address")))?;
        Ok(ServerSocket {
            socket,
            local,
            device: device.map(str::to_owned),
            kernel_drops: AtomicU32::new(0),
        })
    }

    /// Reads one datagram into `buf`; `cmsg` is the reusable control buffer from [`control_buffer`].
    /// With `wait`, blocks (up to [`RECV_POLL`], then `WouldBlock`); without, returns `WouldBlock` at
    /// once when nothing is waiting.
    pub(crate) fn recv(&self, buf: &mut [u8], cmsg: &mut [u8], wait: bool) -> io::Result<Received> {
        let flags = if wait {
            MsgFlags::empty()
        } else {
            MsgFlags::MSG_DONTWAIT
        };
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrIn>(self.socket.as_raw_fd(), &mut iov, Some(cmsg), flags)
            .map_err(io::Error::from)?;
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
        Ok(received)
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
        let bound = *self.local.ip();
        let spec_dst = if bound.is_unspecified() {
            source
        } else {
            bound
        };
        let info = libc::in_pktinfo {
            ipi_ifindex: if dest.ip().is_broadcast() { ifindex } else { 0 },
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(spec_dst).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        let addr = SockaddrIn::from(dest);
        let cmsgs = [ControlMessage::Ipv4PacketInfo(&info)];
        // Only when there is something to pin down that the socket does not already: the source of a
        // wildcard-bound socket, or the way out for a broadcast.
        let pin_source = bound.is_unspecified() && !spec_dst.is_unspecified();
        let cmsgs: &[ControlMessage<'_>] = if info.ipi_ifindex == 0 && !pin_source {
            &[]
        } else {
            &cmsgs
        };
        sendmsg(
            self.socket.as_raw_fd(),
            &[IoSlice::new(bytes)],
            cmsgs,
            MsgFlags::empty(),
            Some(&addr),
        )
        .map(|_| ())
        .map_err(io::Error::from)
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

    #[test]
    fn recv_reports_addresses_and_the_kernel_receive_time() {
        let server =
            ServerSocket::bind_address(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), None).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client_addr = match client.local_addr().unwrap() {
            std::net::SocketAddr::V4(addr) => addr,
            other => panic!("{other}"),
        };
        let mut buf = [0u8; 64];
        let mut cmsg = control_buffer();
        // The kernel turns receive timestamps on a moment after the first socket asks (a deferred
        // static key); until then the time is the read's. So allow a few tries.
        let mut waited = Duration::ZERO;
        for _ in 0..50 {
            client.send_to(b"ping", server.local).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            let received = server.recv(&mut buf, &mut cmsg, true).unwrap();
            assert_eq!(&buf[..received.len], b"ping");
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
        let nothing = server.recv(&mut buf, &mut cmsg, false).unwrap_err();
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
    }
}
