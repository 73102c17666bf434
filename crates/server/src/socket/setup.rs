//! The steps every server socket starts with, on Linux and on Windows alike: an IPv4 UDP socket
//! with SO_REUSEADDR and SO_BROADCAST, an optional receive buffer size, and the bind. A failing step
//! becomes a [`ServerError::Socket`] naming the socket and the step.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};

use crate::ServerError;

/// One socket being set up: what it is called in errors.
pub(super) struct SocketSetup {
    what: String,
}

impl SocketSetup {
    /// Sets up the socket called `what` in errors (an address, or an interface and its address).
    pub(super) fn new(what: String) -> Self {
        SocketSetup { what }
    }

    /// The error of `step` failing with an I/O error.
    pub(super) fn fail(&self, step: &'static str) -> impl FnOnce(io::Error) -> ServerError + '_ {
        move |source| ServerError::Socket {
            what: self.what.clone(),
            step,
            source,
        }
    }

    /// An IPv4 UDP socket that shares its port (SO_REUSEADDR) and may broadcast (SO_BROADCAST).
    pub(super) fn udp_socket(&self) -> Result<Socket, ServerError> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .map_err(self.fail("socket"))?;
        socket
            .set_reuse_address(true)
            .map_err(self.fail("SO_REUSEADDR"))?;
        socket
            .set_broadcast(true)
            .map_err(self.fail("SO_BROADCAST"))?;
        Ok(socket)
    }

    /// Sets the receive buffer size (`--recv-buffer`) when one is asked for.
    pub(super) fn recv_buffer(
        &self,
        socket: &Socket,
        bytes: Option<usize>,
    ) -> Result<(), ServerError> {
        match bytes {
            Some(bytes) => socket
                .set_recv_buffer_size(bytes)
                .map_err(self.fail("SO_RCVBUF")),
            None => Ok(()),
        }
    }

    /// Binds `addr` and returns the address bound (the port resolved if 0 was asked for).
    pub(super) fn bind(
        &self,
        socket: &Socket,
        addr: SocketAddrV4,
    ) -> Result<SocketAddrV4, ServerError> {
        socket.bind(&addr.into()).map_err(self.fail("bind"))?;
        socket
            .local_addr()
            .map_err(self.fail("getsockname"))?
            .as_socket_ipv4()
            .ok_or_else(|| self.fail("getsockname")(io::Error::other("not an IPv4 address")))
    }
}

/// The packet info a reply is sent with, on a socket bound to `bound`: the source address to pin
/// and the interface index to leave through, or `None` when the kernel's choice is right. A
/// broadcast leaves through `ifindex` (the interface the request came in on); a unicast follows the
/// routing table. On a socket bound to an address, that address is the source.
pub(super) fn send_path(
    bound: Ipv4Addr,
    dest: SocketAddrV4,
    source: Ipv4Addr,
    ifindex: i32,
) -> Option<(Ipv4Addr, i32)> {
    let spec_dst = if bound.is_unspecified() {
        source
    } else {
        bound
    };
    let ifindex = if dest.ip().is_broadcast() { ifindex } else { 0 };
    let pin_source = bound.is_unspecified() && !spec_dst.is_unspecified();
    (ifindex != 0 || pin_source).then_some((spec_dst, ifindex))
}
