//! calloutd's Windows shim: the Win32 calls the server needs and no well-kept safe crate wraps,
//! each behind a safe function, so `calloutd-server` keeps `#![forbid(unsafe_code)]` on Windows too.
//!
//! - [`PktInfoSocket`]: a UDP socket's datagrams with `IP_PKTINFO`: `WSARecvMsg` gives the
//!   destination address and arrival interface, `WSASendMsg` pins the source address and the
//!   interface. (quinn-udp wraps the same calls, but its socket setup fails under Wine 8 with
//!   WSAEOPNOTSUPP, and it sends no interface index.)
//! - [`wait`]: `WSAPoll` on one socket, for a bounded wait on a non-blocking socket.
//! - [`icmp_echo`]: `IcmpSendEcho` (iphlpapi), conflict detection without a raw socket, so without
//!   administrator rights, as Microsoft's DHCP Server does it.
//!
//! Everything else on Windows goes through safe crates: socket2 (sockets), if-addrs
//! (interface addresses), tokio (console control events), winreg (the live registry). The callout
//! crate keeps its own exception shim, since that one wraps the calls into the DLL.
//!
//! On other systems this crate is empty.

#![cfg(windows)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::windows::io::{AsRawSocket, AsSocket, BorrowedSocket};
use std::time::Duration;

use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
use windows_sys::Win32::NetworkManagement::IpHelper::{
    IcmpCloseHandle, IcmpCreateFile, IcmpSendEcho, ICMP_ECHO_REPLY, IP_SUCCESS,
};
use windows_sys::Win32::Networking::WinSock::{
    setsockopt, WSAGetLastError, WSAIoctl, WSAPoll, WSASendMsg, IN_PKTINFO, IPPROTO_IP, IP_PKTINFO,
    LPFN_WSARECVMSG, POLLRDNORM, POLLWRNORM, SIO_GET_EXTENSION_FUNCTION_POINTER, SIO_UDP_CONNRESET,
    SOCKADDR, SOCKADDR_IN, SOCKET, WSABUF, WSAID_WSARECVMSG, WSAMSG, WSAPOLLFD,
};

/// `sizeof(WSACMSGHDR)` on 64-bit Windows (already aligned: the data follows).
const CMSG_HEADER: usize = 16;
/// One `IN_PKTINFO` control message: header plus 8 bytes of data.
const PKTINFO_SPACE: usize = CMSG_HEADER + 8;

/// The last Winsock error of this thread.
fn last_error() -> io::Error {
    // SAFETY: reads this thread's last Winsock error; no arguments.
    io::Error::from_raw_os_error(unsafe { WSAGetLastError() })
}

/// One datagram read by [`PktInfoSocket::recv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    /// Its length.
    pub len: usize,
    /// Who sent it.
    pub peer: SocketAddrV4,
    /// Its destination address and the index of the interface it came in on (`IP_PKTINFO`), when
    /// the system said.
    pub pktinfo: Option<(Ipv4Addr, u32)>,
}

/// A UDP socket's `WSARecvMsg` (which Winsock hands out only as a function pointer) with
/// `IP_PKTINFO` turned on.
pub struct PktInfoSocket {
    recv_msg: unsafe extern "system" fn(
        SOCKET,
        *mut WSAMSG,
        *mut u32,
        *mut windows_sys::Win32::System::IO::OVERLAPPED,
        windows_sys::Win32::Networking::WinSock::LPWSAOVERLAPPED_COMPLETION_ROUTINE,
    ) -> i32,
}

impl std::fmt::Debug for PktInfoSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PktInfoSocket").finish_non_exhaustive()
    }
}

impl PktInfoSocket {
    /// Turns `IP_PKTINFO` on for `socket` (an IPv4 UDP socket), stops ICMP port-unreachable
    /// messages from failing later receives (`SIO_UDP_CONNRESET` off, as Linux never reports them
    /// on an unconnected socket), and looks up `WSARecvMsg`. The error names the step that failed.
    pub fn new(socket: BorrowedSocket<'_>) -> Result<PktInfoSocket, (&'static str, io::Error)> {
        let raw = socket.as_raw_socket() as SOCKET;
        let on: u32 = 1;
        // SAFETY: `raw` is open for the borrow; the value is a live 4-byte integer of that size.
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
            return Err(("IP_PKTINFO", last_error()));
        }
        let off: u32 = 0;
        let mut returned = 0u32;
        // SAFETY: `raw` is open; the input is a live 4-byte BOOL of that size, no output buffer, no
        // overlapped I/O.
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
            return Err(("SIO_UDP_CONNRESET", last_error()));
        }
        let guid = WSAID_WSARECVMSG;
        let mut pointer: LPFN_WSARECVMSG = None;
        // SAFETY: the input is the live GUID, the output a live function-pointer slot, both with
        // their sizes; no overlapped I/O.
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
            return Err(("WSARecvMsg", last_error()));
        }
        let recv_msg = pointer.ok_or((
            "WSARecvMsg",
            io::Error::other("Winsock returned no WSARecvMsg"),
        ))?;
        Ok(PktInfoSocket { recv_msg })
    }

    /// Reads one datagram of `socket` (the one given to [`PktInfoSocket::new`]) into `buf`, with its
    /// sender and packet info. A non-blocking socket with nothing queued is `WouldBlock`.
    pub fn recv(&self, socket: impl AsSocket, buf: &mut [u8]) -> io::Result<Datagram> {
        let socket = socket.as_socket();
        // SAFETY: SOCKADDR_IN is plain data; all zeroes is a valid (empty) value.
        let mut name: SOCKADDR_IN = unsafe { std::mem::zeroed() };
        let mut control = [0u64; PKTINFO_SPACE.div_ceil(8) * 2];
        let mut data = WSABUF {
            len: u32::try_from(buf.len()).unwrap_or(u32::MAX),
            buf: buf.as_mut_ptr(),
        };
        let mut msg = WSAMSG {
            name: (&mut name as *mut SOCKADDR_IN).cast::<SOCKADDR>(),
            namelen: std::mem::size_of::<SOCKADDR_IN>() as i32,
            lpBuffers: &mut data,
            dwBufferCount: 1,
            Control: WSABUF {
                len: std::mem::size_of_val(&control) as u32,
                buf: control.as_mut_ptr().cast(),
            },
            dwFlags: 0,
        };
        let mut len = 0u32;
        // SAFETY: `recv_msg` is WSARecvMsg of this socket's provider; `msg` points at live buffers
        // (name, data, control) whose lengths it states; no overlapped I/O.
        let status = unsafe {
            (self.recv_msg)(
                socket.as_raw_socket() as SOCKET,
                &mut msg,
                &mut len,
                std::ptr::null_mut(),
                None,
            )
        };
        if status != 0 {
            return Err(last_error());
        }
        // SAFETY: reading the union's plain u32 view of the address Winsock filled in.
        let addr = unsafe { name.sin_addr.S_un.S_addr };
        let peer = SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(addr)),
            u16::from_be(name.sin_port),
        );
        let control_len = (msg.Control.len as usize).min(std::mem::size_of_val(&control));
        let bytes: Vec<u8> = control
            .iter()
            .flat_map(|word| word.to_ne_bytes())
            .take(control_len)
            .collect();
        Ok(Datagram {
            len: len as usize,
            peer,
            pktinfo: parse_pktinfo(&bytes),
        })
    }
}

/// Sends `bytes` to `dest` on `socket` with `WSASendMsg`; `pktinfo` (source address, interface
/// index; 0 = any) pins where it leaves from.
pub fn send_msg(
    socket: impl AsSocket,
    bytes: &[u8],
    dest: SocketAddrV4,
    pktinfo: Option<(Ipv4Addr, u32)>,
) -> io::Result<()> {
    let socket = socket.as_socket();
    // SAFETY: SOCKADDR_IN is plain data; every field is set below.
    let mut to: SOCKADDR_IN = unsafe { std::mem::zeroed() };
    to.sin_family = windows_sys::Win32::Networking::WinSock::AF_INET;
    to.sin_port = dest.port().to_be();
    to.sin_addr.S_un.S_addr = u32::from(*dest.ip()).to_be();
    let mut data = WSABUF {
        len: u32::try_from(bytes.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "datagram too large"))?,
        // WSASendMsg only reads through it; WSABUF has no const variant.
        buf: bytes.as_ptr().cast_mut(),
    };
    let mut control = [0u64; PKTINFO_SPACE / 8];
    let control_len = match pktinfo {
        Some((addr, index)) => {
            let mut raw = [0u8; PKTINFO_SPACE];
            raw[..8].copy_from_slice(&(PKTINFO_SPACE as u64).to_ne_bytes());
            raw[8..12].copy_from_slice(&IPPROTO_IP.to_ne_bytes());
            raw[12..16].copy_from_slice(&IP_PKTINFO.to_ne_bytes());
            raw[16..20].copy_from_slice(&addr.octets());
            raw[20..24].copy_from_slice(&index.to_ne_bytes());
            for (word, chunk) in control.iter_mut().zip(raw.chunks_exact(8)) {
                let mut eight = [0u8; 8];
                eight.copy_from_slice(chunk);
                *word = u64::from_ne_bytes(eight);
            }
            PKTINFO_SPACE as u32
        }
        None => 0,
    };
    let msg = WSAMSG {
        name: (&mut to as *mut SOCKADDR_IN).cast::<SOCKADDR>(),
        namelen: std::mem::size_of::<SOCKADDR_IN>() as i32,
        lpBuffers: &mut data,
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
    // SAFETY: `msg` points at live buffers (destination, data, control) with their lengths; the
    // socket is open for the borrow; no overlapped I/O.
    let status = unsafe {
        WSASendMsg(
            socket.as_raw_socket() as SOCKET,
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

/// What [`wait`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// A datagram to read.
    Read,
    /// Room to send.
    Write,
}

/// Waits up to `timeout` until `socket` is ready for `what`: `true` when it is, `false` on
/// timeout. An error or hang-up on the socket also counts as ready (the next call reports it).
pub fn wait(socket: BorrowedSocket<'_>, what: Ready, timeout: Duration) -> io::Result<bool> {
    let mut fd = WSAPOLLFD {
        fd: socket.as_raw_socket() as SOCKET,
        events: match what {
            Ready::Read => POLLRDNORM,
            Ready::Write => POLLWRNORM,
        },
        revents: 0,
    };
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one live WSAPOLLFD, count 1, for a socket the borrow keeps open during the call.
    let ready = unsafe { WSAPoll(&mut fd, 1, millis) };
    if ready < 0 {
        // SAFETY: reads this thread's last Winsock error; no arguments.
        return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
    }
    Ok(ready > 0)
}

/// Sends up to `attempts` ICMP echo requests carrying `payload` to `ip` (IcmpSendEcho), waiting
/// `timeout` for each reply; `true` as soon as `ip` itself answers one.
pub fn icmp_echo(
    ip: Ipv4Addr,
    payload: &[u8],
    timeout: Duration,
    attempts: u8,
) -> io::Result<bool> {
    let size = u16::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ICMP payload too large"))?;
    // SAFETY: no arguments; the handle is closed by `Handle`'s drop on every path.
    let handle = Handle(unsafe { IcmpCreateFile() });
    if handle.0 == INVALID_HANDLE_VALUE || handle.0.is_null() {
        return Err(io::Error::last_os_error());
    }
    // Room for one reply with the payload echoed back plus an ICMP error's 8 bytes, in u64 words
    // so the reply structure is aligned.
    let bytes = std::mem::size_of::<ICMP_ECHO_REPLY>() + payload.len() + 8;
    let mut reply = vec![0u64; bytes.div_ceil(8)];
    let reply_size = u32::try_from(reply.len() * 8).unwrap_or(u32::MAX);
    let timeout = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    for _ in 0..attempts {
        // SAFETY: `handle` is open; `payload` and `reply` are live for the call with the sizes
        // given; no IP options (NULL).
        let replies = unsafe {
            IcmpSendEcho(
                handle.0,
                u32::from_ne_bytes(ip.octets()),
                payload.as_ptr().cast(),
                size,
                std::ptr::null(),
                reply.as_mut_ptr().cast(),
                reply_size,
                timeout,
            )
        };
        if replies == 0 {
            // Timed out, unreachable...: no answer to this attempt.
            continue;
        }
        // The first reply's Address (offset 0) and Status (offset 4), read as plain bytes.
        let first = reply[0].to_ne_bytes();
        let from = Ipv4Addr::new(first[0], first[1], first[2], first[3]);
        let status = u32::from_ne_bytes([first[4], first[5], first[6], first[7]]);
        if status == IP_SUCCESS && from == ip {
            return Ok(true);
        }
    }
    Ok(false)
}

/// An ICMP handle, closed when dropped.
struct Handle(windows_sys::Win32::Foundation::HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        if self.0 != INVALID_HANDLE_VALUE && !self.0.is_null() {
            // SAFETY: the handle came from IcmpCreateFile and is closed exactly once, here.
            unsafe { IcmpCloseHandle(self.0) };
        }
    }
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
    fn loopback_answers_an_echo() {
        assert!(icmp_echo(Ipv4Addr::LOCALHOST, b"calloutd", Duration::from_secs(2), 2).unwrap());
    }

    #[test]
    fn a_socket_without_datagrams_is_not_readable_but_writable() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        use std::os::windows::io::AsSocket;
        let timeout = Duration::from_millis(50);
        assert!(!wait(socket.as_socket(), Ready::Read, timeout).unwrap());
        assert!(wait(socket.as_socket(), Ready::Write, timeout).unwrap());
        socket.send_to(b"x", socket.local_addr().unwrap()).unwrap();
        assert!(wait(socket.as_socket(), Ready::Read, Duration::from_secs(2)).unwrap());
    }
}
