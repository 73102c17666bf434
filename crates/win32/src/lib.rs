//! calloutd's Windows shim: the Win32 calls the server needs and no well-kept safe crate wraps,
//! each behind a safe function, so `calloutd-server` keeps `#![forbid(unsafe_code)]` on Windows too.
//!
//! - [`wait`]: `WSAPoll` on one socket, for a bounded wait on the non-blocking socket that
//!   `quinn-udp` (WSARecvMsg/WSASendMsg with IP_PKTINFO) reads and writes.
//! - [`icmp_echo`]: `IcmpSendEcho` (iphlpapi), conflict detection without a raw socket, so without
//!   administrator rights, as Microsoft's DHCP Server does it.
//!
//! Everything else on Windows goes through safe crates: socket2 and quinn-udp (sockets), if-addrs
//! (interface addresses), tokio (console control events), winreg (the live registry). The callout
//! crate keeps its own exception shim, since that one wraps the calls into the DLL.
//!
//! On other systems this crate is empty.

#![cfg(windows)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use std::io;
use std::net::Ipv4Addr;
use std::os::windows::io::{AsRawSocket, BorrowedSocket};
use std::time::Duration;

use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
use windows_sys::Win32::NetworkManagement::IpHelper::{
    IcmpCloseHandle, IcmpCreateFile, IcmpSendEcho, ICMP_ECHO_REPLY, IP_SUCCESS,
};
use windows_sys::Win32::Networking::WinSock::{
    WSAGetLastError, WSAPoll, POLLRDNORM, POLLWRNORM, SOCKET, WSAPOLLFD,
};

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
