//! The Windows side of the server's sockets: the same [`ServerSocket`] surface as on Linux, built on
//! Winsock. Datagrams are read with `WSARecvMsg` and `IP_PKTINFO` (the arrival interface and
//! destination), replies are sent with `WSASendMsg` and `IP_PKTINFO` (source address and, for a
//! broadcast, the way out). Windows has no recvmmsg/sendmmsg, so a batch is a loop of calls on a
//! non-blocking socket after one `WSAPoll` wait. What Windows cannot do at all (binding to a device
//! by name, kernel receive times, kernel drop counts) is an error or simply absent.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::windows::io::AsRawSocket;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use windows_sys::Win32::NetworkManagement::IpHelper::{GetIpAddrTable, MIB_IPADDRROW_XP};
use windows_sys::Win32::Networking::WinSock::{
    setsockopt, WSAGetLastError, WSAIoctl, WSAPoll, WSASendMsg, IN_PKTINFO, IPPROTO_IP, IP_PKTINFO,
    LPFN_WSARECVMSG, POLLRDNORM, SIO_GET_EXTENSION_FUNCTION_POINTER, SIO_UDP_CONNRESET, SOCKADDR,
    SOCKET, WSABUF, WSAID_WSARECVMSG, WSAMSG, WSAPOLLFD,
};

use super::{Outgoing, Received, DATAGRAM_BUFFER, RECV_BATCH, RECV_POLL};
use crate::ServerError;

/// `sizeof(WSACMSGHDR)` on 64-bit Windows, already aligned: the data of a control message follows.
const CMSG_HEADER: usize = 16;
/// Room for one `IN_PKTINFO` control message (header plus 8 bytes of data).
const PKTINFO_SPACE: usize = CMSG_HEADER + 8;
/// `sizeof(SOCKADDR_IN)`.
const SOCKADDR_IN_LEN: usize = 16;

/// One bound server socket.
pub(crate) struct ServerSocket {
    socket: Socket,
    /// The address it is bound to (port resolved if 0 was asked for).
    pub(crate) local: SocketAddrV4,
    /// Always `None` on Windows (`--interface` is refused).
    pub(crate) device: Option<String>,
    /// `WSARecvMsg`, which Winsock hands out only as an extension function pointer.
    recv_msg: unsafe extern "system" fn(
        SOCKET,
        *mut WSAMSG,
        *mut u32,
        *mut windows_sys::Win32::System::IO::OVERLAPPED,
        windows_sys::Win32::Networking::WinSock::LPWSAOVERLAPPED_COMPLETION_ROUTINE,
    ) -> i32,
    /// Interface index -> its first IPv4 address: Windows' packet info has no `ipi_spec_dst`, so the
    /// server address of the receiving interface is looked up (and refreshed on a miss).
    interfaces: Mutex<HashMap<u32, Ipv4Addr>>,
    /// Always 0 on Windows: Winsock reports no per-socket drop count.
    kernel_drops: AtomicU32,
}

impl std::fmt::Debug for ServerSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSocket")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
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
pub(crate) struct SendBuffers;

/// The last Winsock error of this thread as an `io::Error`.
fn last_error() -> io::Error {
    // SAFETY: reads this thread's Winsock error code; no arguments.
    io::Error::from_raw_os_error(unsafe { WSAGetLastError() })
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
        let raw = socket.as_raw_socket() as SOCKET;
        let on: u32 = 1;
        // SAFETY: `raw` is the open socket; the option value is a live 4-byte integer.
        let set = unsafe {
            setsockopt(
                raw,
                IPPROTO_IP,
                IP_PKTINFO,
                (&on as *const u32).cast(),
                std::mem::size_of::<u32>() as i32,
            )
        };
        if set != 0 {
            return Err(fail("IP_PKTINFO")(last_error()));
        }
        // Without this, an ICMP port-unreachable for an earlier reply makes the next receive fail
        // with WSAECONNRESET: on Linux an unconnected UDP socket never sees those.
        let off: u32 = 0;
        let mut returned = 0u32;
        // SAFETY: `raw` is the open socket; the input is a live 4-byte BOOL, no output buffer.
        let ioctl = unsafe {
            WSAIoctl(
                raw,
                SIO_UDP_CONNRESET,
                (&off as *const u32).cast(),
                4,
                std::ptr::null_mut(),
                0,
                &mut returned,
                std::ptr::null_mut(),
                None,
            )
        };
        if ioctl != 0 {
            return Err(fail("SIO_UDP_CONNRESET")(last_error()));
        }
        let recv_msg = recv_msg_pointer(raw).map_err(fail("WSARecvMsg"))?;
        if let Some(bytes) = recv_buffer {
            socket
                .set_recv_buffer_size(bytes)
                .map_err(fail("SO_RCVBUF"))?;
        }
        // Receives wait in WSAPoll (with RECV_POLL as the backstop), never in the receive itself.
        socket.set_nonblocking(true).map_err(fail("FIONBIO"))?;
        socket.bind(&addr.into()).map_err(fail("bind"))?;
        let local = socket
            .local_addr()
            .map_err(fail("getsockname"))?
            .as_socket_ipv4()
            .ok_or_else(|| fail("getsockname")(io::Error::other("not an IPv4 address")))?;
        Ok(ServerSocket {
            socket,
            local,
            device: None,
            recv_msg,
            interfaces: Mutex::new(HashMap::new()),
            kernel_drops: AtomicU32::new(0),
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
    /// then takes whatever else is queued without waiting. Nothing queued and no wait is
    /// `WouldBlock`, as on Linux.
    pub(crate) fn recv_batch(
        &self,
        buffers: &mut RecvBuffers,
        wait: bool,
        received: &mut Vec<Received>,
    ) -> io::Result<()> {
        received.clear();
        if wait && !self.poll_readable()? {
            return Err(io::ErrorKind::TimedOut.into());
        }
        for datagram in buffers.datagrams.iter_mut() {
            match self.recv_one(datagram) {
                Ok(one) => received.push(one),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock && !received.is_empty() => {
                    break
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Waits up to the receive poll for a datagram; `false` when none came.
    fn poll_readable(&self) -> io::Result<bool> {
        let mut fd = WSAPOLLFD {
            fd: self.socket.as_raw_socket() as SOCKET,
            events: POLLRDNORM,
            revents: 0,
        };
        // SAFETY: one live WSAPOLLFD for the open socket.
        let ready = unsafe { WSAPoll(&mut fd, 1, RECV_POLL.as_millis() as i32) };
        if ready < 0 {
            return Err(last_error());
        }
        Ok(ready > 0)
    }

    /// One non-blocking `WSARecvMsg` into `datagram`.
    fn recv_one(&self, datagram: &mut [u8]) -> io::Result<Received> {
        let mut name = [0u8; SOCKADDR_IN_LEN];
        let mut control = [0u64; PKTINFO_SPACE.div_ceil(8) * 2];
        let mut buffer = WSABUF {
            len: u32::try_from(datagram.len()).unwrap_or(u32::MAX),
            buf: datagram.as_mut_ptr(),
        };
        let mut msg = WSAMSG {
            name: name.as_mut_ptr().cast::<SOCKADDR>(),
            namelen: SOCKADDR_IN_LEN as i32,
            lpBuffers: &mut buffer,
            dwBufferCount: 1,
            Control: WSABUF {
                len: std::mem::size_of_val(&control) as u32,
                buf: control.as_mut_ptr().cast(),
            },
            dwFlags: 0,
        };
        let mut len = 0u32;
        // SAFETY: `recv_msg` is WSARecvMsg for this socket's provider; `msg` points at live
        // buffers (name, datagram, control) whose lengths it states; no overlapped I/O.
        let status = unsafe {
            (self.recv_msg)(
                self.socket.as_raw_socket() as SOCKET,
                &mut msg,
                &mut len,
                std::ptr::null_mut(),
                None,
            )
        };
        if status != 0 {
            return Err(last_error());
        }
        let control_len = (msg.Control.len as usize).min(std::mem::size_of_val(&control));
        let control_bytes: Vec<u8> = control
            .iter()
            .flat_map(|word| word.to_ne_bytes())
            .take(control_len)
            .collect();
        let bound = *self.local.ip();
        let mut received = Received {
            len: len as usize,
            peer: parse_sockaddr_in(&name)
                .unwrap_or_else(|| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            if_addr: bound,
            dst_addr: bound,
            ifindex: 0,
            arrived: None,
            kernel_drops: None,
        };
        if let Some((dst, ifindex)) = parse_pktinfo(&control_bytes) {
            received.dst_addr = dst;
            received.ifindex = i32::try_from(ifindex).unwrap_or(0);
            if bound.is_unspecified() {
                received.if_addr = if dst.is_broadcast() || dst.is_unspecified() {
                    self.interface_address(ifindex).unwrap_or(bound)
                } else {
                    dst
                };
            }
        }
        Ok(received)
    }

    /// The first IPv4 address of interface `ifindex` (the server address of a broadcast's arrival
    /// interface), from a cache refreshed when the index is not in it.
    fn interface_address(&self, ifindex: u32) -> Option<Ipv4Addr> {
        let mut cache = self.interfaces.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(addr) = cache.get(&ifindex) {
            return Some(*addr);
        }
        *cache = interface_addresses();
        cache.get(&ifindex).copied()
    }

    /// Sends `bytes` to `dest` from `source` (ignored when the socket is bound to an address). A
    /// broadcast leaves through `ifindex`, the interface the request came in on.
    pub(crate) fn send(
        &self,
        bytes: &[u8],
        dest: SocketAddrV4,
        source: Ipv4Addr,
        ifindex: i32,
    ) -> io::Result<()> {
        let dest_addr = SockAddr::from(dest);
        let mut buffer = WSABUF {
            len: u32::try_from(bytes.len())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "datagram too large"))?,
            // WSASendMsg does not write through it; WSABUF simply has no const variant.
            buf: bytes.as_ptr().cast_mut(),
        };
        let mut control = [0u64; PKTINFO_SPACE / 8];
        let info = self.packet_info(dest, source, ifindex);
        let control_len = match info {
            Some((addr, index)) => {
                let mut bytes = [0u8; PKTINFO_SPACE];
                bytes[..8].copy_from_slice(&(PKTINFO_SPACE as u64).to_ne_bytes());
                bytes[8..12].copy_from_slice(&IPPROTO_IP.to_ne_bytes());
                bytes[12..16].copy_from_slice(&IP_PKTINFO.to_ne_bytes());
                bytes[16..20].copy_from_slice(&addr.octets());
                bytes[20..24].copy_from_slice(&index.to_ne_bytes());
                for (word, chunk) in control.iter_mut().zip(bytes.chunks_exact(8)) {
                    let mut eight = [0u8; 8];
                    eight.copy_from_slice(chunk);
                    *word = u64::from_ne_bytes(eight);
                }
                PKTINFO_SPACE as u32
            }
            None => 0,
        };
        let msg = WSAMSG {
            name: dest_addr.as_ptr().cast_mut().cast::<SOCKADDR>(),
            namelen: dest_addr.len(),
            lpBuffers: &mut buffer,
            dwBufferCount: 1,
            Control: WSABUF {
                len: control_len,
                buf: if control_len == 0 {
                    std::ptr::null_mut()
                } else {
                    control.as_mut_ptr().cast()
                },
            },
            dwFlags: 0,
        };
        let mut sent = 0u32;
        // SAFETY: `msg` points at live buffers (destination, datagram, control) with their lengths;
        // no overlapped I/O.
        let status = unsafe {
            WSASendMsg(
                self.socket.as_raw_socket() as SOCKET,
                &msg,
                0,
                &mut sent,
                std::ptr::null_mut(),
                None,
            )
        };
        if status != 0 {
            return Err(last_error());
        }
        Ok(())
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

    /// The packet info a reply needs (source address, interface index), as on Linux: only to pin the
    /// source of a wildcard-bound socket or the way out for a broadcast.
    fn packet_info(
        &self,
        dest: SocketAddrV4,
        source: Ipv4Addr,
        ifindex: i32,
    ) -> Option<(Ipv4Addr, u32)> {
        let bound = *self.local.ip();
        let spec_dst = if bound.is_unspecified() {
            source
        } else {
            bound
        };
        let ifindex = if dest.ip().is_broadcast() {
            u32::try_from(ifindex).unwrap_or(0)
        } else {
            0
        };
        let pin_source = bound.is_unspecified() && !spec_dst.is_unspecified();
        (ifindex != 0 || pin_source).then_some((spec_dst, ifindex))
    }

    /// Records the kernel's drop count that came with a datagram (never, on Windows).
    pub(crate) fn note_kernel_drops(&self, dropped: u32) {
        self.kernel_drops.fetch_max(dropped, Ordering::Relaxed);
    }

    /// Datagrams the kernel dropped on this socket: Winsock does not say, so 0.
    pub(crate) fn kernel_drops(&self) -> u64 {
        u64::from(self.kernel_drops.load(Ordering::Relaxed))
    }

    /// Stop: receivers notice within the receive poll (a UDP socket's shutdown does not wake a
    /// WSAPoll on Windows, so this only refuses later receives).
    pub(crate) fn shutdown_read(&self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Read);
    }
}

/// Asks Winsock for `WSARecvMsg`.
fn recv_msg_pointer(
    raw: SOCKET,
) -> io::Result<
    unsafe extern "system" fn(
        SOCKET,
        *mut WSAMSG,
        *mut u32,
        *mut windows_sys::Win32::System::IO::OVERLAPPED,
        windows_sys::Win32::Networking::WinSock::LPWSAOVERLAPPED_COMPLETION_ROUTINE,
    ) -> i32,
> {
    let guid = WSAID_WSARECVMSG;
    let mut pointer: LPFN_WSARECVMSG = None;
    let mut returned = 0u32;
    // SAFETY: the input is the live GUID, the output a live function-pointer slot of the size
    // given; no overlapped I/O.
    let status = unsafe {
        WSAIoctl(
            raw,
            SIO_GET_EXTENSION_FUNCTION_POINTER,
            (&guid as *const windows_sys::core::GUID).cast(),
            std::mem::size_of_val(&guid) as u32,
            (&mut pointer as *mut LPFN_WSARECVMSG).cast(),
            std::mem::size_of::<LPFN_WSARECVMSG>() as u32,
            &mut returned,
            std::ptr::null_mut(),
            None,
        )
    };
    if status != 0 {
        return Err(last_error());
    }
    pointer.ok_or_else(|| io::Error::other("Winsock returned no WSARecvMsg"))
}

/// A `SOCKADDR_IN` as bytes -> the address, if it is IPv4.
fn parse_sockaddr_in(bytes: &[u8; SOCKADDR_IN_LEN]) -> Option<SocketAddrV4> {
    let family = u16::from_ne_bytes([bytes[0], bytes[1]]);
    (family == 2).then(|| {
        SocketAddrV4::new(
            Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]),
            u16::from_be_bytes([bytes[2], bytes[3]]),
        )
    })
}

/// The destination address and interface index of the `IN_PKTINFO` control message in `control`.
fn parse_pktinfo(control: &[u8]) -> Option<(Ipv4Addr, u32)> {
    let mut rest = control;
    while rest.len() >= CMSG_HEADER {
        let len = usize::try_from(u64::from_ne_bytes(rest[..8].try_into().ok()?)).ok()?;
        let level = i32::from_ne_bytes(rest[8..12].try_into().ok()?);
        let kind = i32::from_ne_bytes(rest[12..16].try_into().ok()?);
        if len < CMSG_HEADER {
            return None;
        }
        if level == IPPROTO_IP && kind == IP_PKTINFO {
            let data = rest.get(CMSG_HEADER..CMSG_HEADER + std::mem::size_of::<IN_PKTINFO>())?;
            let addr = Ipv4Addr::new(data[0], data[1], data[2], data[3]);
            let index = u32::from_ne_bytes(data[4..8].try_into().ok()?);
            return Some((addr, index));
        }
        rest = rest.get(len.next_multiple_of(8)..)?;
    }
    None
}

/// Every interface index with its first IPv4 address (GetIpAddrTable).
fn interface_addresses() -> HashMap<u32, Ipv4Addr> {
    let mut map = HashMap::new();
    let mut size = 0u32;
    // SAFETY: a NULL table with size 0 asks for the size needed.
    unsafe { GetIpAddrTable(std::ptr::null_mut(), &mut size, 0) };
    if size == 0 {
        return map;
    }
    // u64 words keep the table aligned for its u32 fields.
    let mut table = vec![0u64; (size as usize).div_ceil(8)];
    // SAFETY: `table` has at least `size` writable bytes.
    let status = unsafe { GetIpAddrTable(table.as_mut_ptr().cast(), &mut size, 0) };
    if status != 0 {
        return map;
    }
    let bytes: Vec<u8> = table.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let count = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_ne_bytes) as usize;
    let row = std::mem::size_of::<MIB_IPADDRROW_XP>();
    for i in 0..count {
        let Some(entry) = bytes.get(4 + i * row..4 + (i + 1) * row) else {
            break;
        };
        let addr = Ipv4Addr::new(entry[0], entry[1], entry[2], entry[3]);
        let index = u32::from_ne_bytes([entry[4], entry[5], entry[6], entry[7]]);
        map.entry(index).or_insert(addr);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pktinfo_is_found_after_other_control_messages() {
        let mut control = Vec::new();
        // An unrelated message first (level 0xFFFF, 4 bytes of data, padded to 24).
        control.extend_from_slice(&20u64.to_ne_bytes());
        control.extend_from_slice(&0xFFFFi32.to_ne_bytes());
        control.extend_from_slice(&1i32.to_ne_bytes());
        control.extend_from_slice(&[0; 8]);
        control.extend_from_slice(&24u64.to_ne_bytes());
        control.extend_from_slice(&IPPROTO_IP.to_ne_bytes());
        control.extend_from_slice(&IP_PKTINFO.to_ne_bytes());
        control.extend_from_slice(&[198, 18, 0, 1]);
        control.extend_from_slice(&7u32.to_ne_bytes());
        assert_eq!(
            parse_pktinfo(&control),
            Some((Ipv4Addr::new(198, 18, 0, 1), 7))
        );
        assert_eq!(parse_pktinfo(&control[..30]), None);
        assert_eq!(parse_pktinfo(&[]), None);
    }

    #[test]
    fn interface_by_name_is_refused_with_a_clear_error() {
        let err = ServerSocket::bind_interface("eth0", 67, None).unwrap_err();
        assert!(err.to_string().contains("cannot bind"), "{err}");
    }
}
