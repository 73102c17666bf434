//! What crosses between the runtime and the engine: datagrams in, outcomes out.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dhcpssdk::DropReason;

/// A UDP datagram received on a server socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The UDP payload (the BOOTP message from its `op` byte).
    pub bytes: Vec<u8>,
    /// The server address of the receiving interface (IP_PKTINFO `ipi_spec_dst`): the hooks'
    /// `IpAddress`, and the server identifier for direct clients.
    pub if_addr: Ipv4Addr,
    /// The datagram's destination address (IP_PKTINFO `ipi_addr`): tells a broadcast (REBINDING) from
    /// a unicast (RENEWING).
    pub dst_addr: Ipv4Addr,
    /// Who sent it (a client at port 68 or a relay at port 67).
    pub peer: SocketAddrV4,
}

/// What the runtime decided before the engine sees the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Process normally.
    Process,
    /// The runtime drops the packet for this reason (NOMEM, DUPLICATE, TIMEOUT, PAUSED): the engine still
    /// runs NewPkt (and HandleOptions), then PktDrop(reason) and PktDrop(PROCESSED), and sends nothing.
    Drop(DropReason),
}

/// A reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The exact bytes PktSend left: what goes on the wire.
    pub bytes: Vec<u8>,
    /// Where to send it (RFC 2131 4.1).
    pub dest: SocketAddrV4,
    /// Send from this server address (the receiving interface's).
    pub source: Ipv4Addr,
    /// Wait this long first (the scope's offer `Delay`).
    pub delay: Duration,
}

/// A reply that waits for its lease change to become durable: PktSend has not run yet. The runtime
/// commits ([`PacketHandler::commit`]) and then hands it to [`PacketHandler::finish`], which runs
/// PktSend (or, when the commit failed, PktDrop with `DHCP_DROP_INTERNAL_ERROR`) and PktDrop(PROCESSED).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldReply {
    /// The reply as built, before PktSend.
    pub reply: Reply,
    /// Its DHCP message type (option 53).
    pub reply_type: u8,
    /// The request, for the PktDrop calls that end the packet.
    pub packet: Vec<u8>,
    /// The hooks' `IpAddress` for this packet.
    pub if_addr: Ipv4Addr,
    /// The packet's context from NewPkt.
    pub ctx: crate::hooks::PktContext,
    /// The audit event (Microsoft's ID: 10 Assign, 11 Renew, 20/21 BOOTP) of the lease this reply
    /// grants: [`PacketHandler::finish`] writes it (with an ACK's DNS events) only once the commit
    /// succeeded, so a withheld reply leaves no line for a lease that was never stored.
    pub grant_event: Option<u8>,
}

/// What became of one datagram.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The reply, unless the packet was dropped or PktSend suppressed it (or it is [`Outcome::held`]).
    pub reply: Option<Reply>,
    /// A reply whose lease change is [`Outcome::uncommitted`]: the packet is not finished (no
    /// PktSend, no PktDrop(PROCESSED) yet) until the runtime passes it to [`PacketHandler::finish`]
    /// after the commit.
    pub held: Option<HeldReply>,
    /// Why the packet was dropped, if it was (never `Processed`).
    pub dropped: Option<DropReason>,
    /// The DHCP message type of the request (option 53), 0 for BOOTP, `None` if unparsed.
    pub request_type: Option<u8>,
    /// The DHCP message type of the reply, if one was sent.
    pub reply_type: Option<u8>,
    /// Lease changes of this packet that are not durable yet (only when the engine defers commits
    /// to the runtime): the reply must not leave before [`PacketHandler::commit`] of this ticket
    /// succeeded, and the change must be committed even when there is no reply.
    pub uncommitted: Option<CommitTicket>,
}

/// The engine as the runtime sees it. [`crate::Engine`] implements it; the runtime is generic over it.
pub trait PacketHandler: Send + Sync + 'static {
    /// Runs one datagram through the whole pipeline (all hooks included) and says what to send.
    fn handle(&self, datagram: Datagram, admission: Admission) -> Outcome;

    /// Waits until the lease changes up to `ticket` ([`Outcome::uncommitted`]) are durable. Many
    /// outcomes' tickets are committed by one call for the highest of them (group commit).
    fn commit(&self, ticket: CommitTicket) -> Result<(), CommitError> {
        let _ = ticket;
        Ok(())
    }

    /// Finishes a [`HeldReply`] once its commit is known (`committed`): the reply to send, or `None`
    /// when it is withheld (the commit failed) or suppressed. Must be called exactly once for every
    /// held reply, after [`PacketHandler::commit`] of its outcome's ticket returned.
    fn finish(&self, held: HeldReply, committed: bool) -> Option<Reply> {
        committed.then_some(held.reply)
    }
}

/// Identifies a queued lease change; [`PacketHandler::commit`] waits until it is durable. Tickets
/// grow: committing one makes every lower one durable too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct CommitTicket(pub u64);

/// Lease changes could not be made durable: the replies that wait on them must be withheld.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitError(pub String);

impl fmt::Display for CommitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CommitError {}

/// Conflict detection: is an address already in use on the network? The runtime implements it with
/// ICMP echo; [`NoProber`] says "free" to everything.
pub trait Prober: Send + Sync {
    /// Sends up to `attempts` probes to `ip`; true when something answered (the address is in use).
    /// Called without any engine lock held.
    fn probe(&self, ip: Ipv4Addr, attempts: u8) -> bool;
}

/// A [`Prober`] that never finds an address in use.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProber;

impl Prober for NoProber {
    fn probe(&self, _: Ipv4Addr, _: u8) -> bool {
        false
    }
}

/// The service's life as the runtime reports it, for Microsoft's audit log (the engine's `AuditLog`
/// decides which events each becomes).
pub trait ServiceEvents: Send + Sync {
    /// The service started (after Control(START)).
    fn started(&self);
    /// An administrator paused the service.
    fn paused(&self);
    /// An administrator let a paused service continue.
    fn continued(&self);
    /// The service stopped (after Control(STOP)).
    fn stopped(&self);
}
