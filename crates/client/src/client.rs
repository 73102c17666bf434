//! The client proper: settings, the three transports, and one method per DHCP exchange.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use dhcproto::v4::MessageType;
use serde_json::{json, Value};
use socket2::{Domain, Protocol, Socket, Type};

use crate::message::{
    encode_request, message_type_name, to_hex, Identity, Outgoing, RawOption, Reply, CHADDR_OFFSET,
    SECS_OFFSET,
};
use crate::ClientError;

/// The DHCP server port (RFC 2131).
pub const SERVER_PORT: u16 = 67;
/// The DHCP client port (RFC 2131).
pub const CLIENT_PORT: u16 = 68;

/// What the client puts in its messages and how long it waits.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Ethernet address (chaddr, htype 1, hlen 6).
    pub mac: [u8; 6],
    /// Option 61, sent in every message when set.
    pub client_id: Option<Vec<u8>>,
    /// Option 12.
    pub hostname: Option<String>,
    /// Option 60 (e.g. `MSFT 5.0`).
    pub vendor_class: Option<Vec<u8>>,
    /// Option 77, sent as given (Microsoft's form: the class bytes, no RFC 3004 length prefix).
    pub user_class: Option<Vec<u8>>,
    /// Further options; one with the code of a built-in option replaces it.
    pub extra_options: Vec<RawOption>,
    /// Option 50 in a DISCOVER (the address the client would like).
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 55; empty sends none.
    pub parameter_request_list: Vec<u8>,
    /// Transaction id for every exchange; `None` draws a random one per exchange.
    pub xid: Option<u32>,
    /// Ask the server to broadcast its reply (flags bit 15).
    pub broadcast_flag: bool,
    /// How long to wait for a reply, retransmissions included.
    pub timeout: Duration,
    /// Retransmissions within `timeout` (evenly spaced); 0 sends once.
    pub retransmits: u32,
}

impl Default for ClientSettings {
    fn default() -> Self {
        let random = random_u64().to_be_bytes();
        ClientSettings {
            // Locally administered, unicast: never collides with a real NIC's address.
            mac: [0x02, random[0], random[1], random[2], random[3], random[4]],
            client_id: None,
            hostname: None,
            vendor_class: None,
            user_class: None,
            extra_options: Vec::new(),
            requested_ip: None,
            parameter_request_list: vec![1, 3, 6, 15, 51, 58, 59],
            xid: None,
            broadcast_flag: false,
            timeout: Duration::from_secs(3),
            retransmits: 2,
        }
    }
}

/// How messages reach the server and replies come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Act as a relay agent: bind `giaddr` (normally port 67), put its address in the giaddr field,
    /// send to the server's unicast address; the server replies to giaddr.
    Relay {
        /// Local relay address; its IP goes in the giaddr field.
        giaddr: SocketAddrV4,
        /// The server's unicast address.
        server: SocketAddrV4,
    },
    /// A client with no address yet: bind 0.0.0.0:`client_port` on `interface` (SO_BINDTODEVICE)
    /// and broadcast to 255.255.255.255:`server_port`. Renew and release go unicast to `server`.
    /// Needs root (or CAP_NET_RAW and CAP_NET_BIND_SERVICE).
    Broadcast {
        /// Interface name, e.g. `veth1`.
        interface: String,
        /// Local port, normally 68.
        client_port: u16,
        /// Destination port, normally 67.
        server_port: u16,
        /// Server address for the unicast messages (renew, release).
        server: Option<Ipv4Addr>,
    },
    /// Plain unicast: bind `local`, send everything to `server` (renew from a bound address, or
    /// tests on loopback). Never broadcasts.
    Unicast {
        /// Local address and port.
        local: SocketAddrV4,
        /// The server's address.
        server: SocketAddrV4,
    },
}

/// The result of DISCOVER → OFFER → REQUEST → ACK/NAK.
#[derive(Debug, Clone)]
pub struct Dora {
    /// The OFFER that was accepted.
    pub offer: Reply,
    /// The ACK or NAK to the REQUEST.
    pub reply: Reply,
}

/// A message sent that expects no reply (RELEASE, DECLINE).
#[derive(Debug, Clone)]
pub struct Sent {
    /// Its message type.
    pub message_type: MessageType,
    /// Transaction id.
    pub xid: u32,
    /// Where it went.
    pub to: SocketAddrV4,
    /// The bytes sent.
    pub raw: Vec<u8>,
}

impl Sent {
    /// JSON: `{"sent", "xid", "to", "length", "raw"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "sent": message_type_name(self.message_type),
            "xid": format!("0x{:08x}", self.xid),
            "to": self.to.to_string(),
            "length": self.raw.len(),
            "raw": to_hex(&self.raw),
        })
    }
}

/// Where a message goes: the server, or the limited broadcast address in broadcast mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Broadcast when the transport can, else to the server.
    Broadcast,
    /// Always to the server's unicast address.
    Unicast,
}

/// A DHCP client bound to one socket.
///
/// Each method performs one exchange and returns the decoded reply; a NAK is a reply (check
/// [`Reply::is_nak`]), not an error. Errors are timeouts, socket errors and invalid requests.
#[derive(Debug)]
pub struct Client {
    settings: ClientSettings,
    transport: Transport,
    socket: UdpSocket,
    last_sent: Vec<u8>,
}

impl Client {
    /// Opens the socket the transport needs.
    pub fn new(transport: Transport, settings: ClientSettings) -> Result<Client, ClientError> {
        let socket = open_socket(&transport)?;
        Ok(Client {
            settings,
            transport,
            socket,
            last_sent: Vec::new(),
        })
    }

    /// The local address the socket is bound to.
    pub fn local_addr(&self) -> Result<SocketAddr, ClientError> {
        self.socket
            .local_addr()
            .map_err(|e| ClientError::io("local address", e))
    }

    /// The settings in use.
    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// The settings, to change between exchanges (e.g. a new MAC).
    pub fn settings_mut(&mut self) -> &mut ClientSettings {
        &mut self.settings
    }

    /// The bytes of the last message sent.
    pub fn last_sent(&self) -> &[u8] {
        &self.last_sent
    }

    /// DISCOVER and wait for an OFFER (option 50 from the settings' requested IP).
    pub fn discover(&mut self) -> Result<Reply, ClientError> {
        let mut out = self.outgoing(MessageType::Discover, self.fresh_xid());
        out.requested_ip = self.settings.requested_ip;
        self.exchange(&out, Route::Broadcast, &[MessageType::Offer])
    }

    /// REQUEST in SELECTING state for `offer` (same xid, options 50 and 54 from the offer).
    pub fn request_offer(&mut self, offer: &Reply) -> Result<Reply, ClientError> {
        let server_id = offer.server_id.ok_or_else(|| {
            ClientError::Invalid("the OFFER has no server identifier (option 54)".into())
        })?;
        self.request_with_xid(offer.xid, offer.yiaddr, Some(server_id))
    }

    /// REQUEST for `ip`: SELECTING state when `server_id` is given, else INIT-REBOOT.
    pub fn request(
        &mut self,
        ip: Ipv4Addr,
        server_id: Option<Ipv4Addr>,
    ) -> Result<Reply, ClientError> {
        self.request_with_xid(self.fresh_xid(), ip, server_id)
    }

    /// INIT-REBOOT: REQUEST with option 50 only, to confirm an address the client remembers.
    pub fn init_reboot(&mut self, ip: Ipv4Addr) -> Result<Reply, ClientError> {
        self.request(ip, None)
    }

    /// RENEWING: REQUEST with ciaddr, unicast to the server.
    pub fn renew(&mut self, ciaddr: Ipv4Addr) -> Result<Reply, ClientError> {
        let mut out = self.outgoing(MessageType::Request, self.fresh_xid());
        out.ciaddr = ciaddr;
        self.exchange(&out, Route::Unicast, &[MessageType::Ack, MessageType::Nak])
    }

    /// REBINDING: REQUEST with ciaddr, broadcast (to the server in relay and unicast modes).
    pub fn rebind(&mut self, ciaddr: Ipv4Addr) -> Result<Reply, ClientError> {
        let mut out = self.outgoing(MessageType::Request, self.fresh_xid());
        out.ciaddr = ciaddr;
        self.exchange(
            &out,
            Route::Broadcast,
            &[MessageType::Ack, MessageType::Nak],
        )
    }

    /// RELEASE `ciaddr` to `server_id` (unicast); no reply is expected.
    pub fn release(&mut self, ciaddr: Ipv4Addr, server_id: Ipv4Addr) -> Result<Sent, ClientError> {
        let mut out = self.outgoing(MessageType::Release, self.fresh_xid());
        out.ciaddr = ciaddr;
        out.server_id = Some(server_id);
        self.send_only(&out, Route::Unicast)
    }

    /// DECLINE `ip` (option 50) offered by `server_id`; no reply is expected.
    pub fn decline(&mut self, ip: Ipv4Addr, server_id: Ipv4Addr) -> Result<Sent, ClientError> {
        let mut out = self.outgoing(MessageType::Decline, self.fresh_xid());
        out.requested_ip = Some(ip);
        out.server_id = Some(server_id);
        self.send_only(&out, Route::Broadcast)
    }

    /// INFORM from `ciaddr`: ask for configuration only; expects an ACK.
    pub fn inform(&mut self, ciaddr: Ipv4Addr) -> Result<Reply, ClientError> {
        let mut out = self.outgoing(MessageType::Inform, self.fresh_xid());
        out.ciaddr = ciaddr;
        self.exchange(
            &out,
            Route::Broadcast,
            &[MessageType::Ack, MessageType::Nak],
        )
    }

    /// BOOTREQUEST without option 53, with or without the magic cookie; expects a BOOTREPLY.
    pub fn bootp(&mut self, magic_cookie: bool) -> Result<Reply, ClientError> {
        let xid = self.fresh_xid();
        let mut out = self.outgoing(MessageType::Discover, xid);
        out.kind = None;
        out.magic_cookie = magic_cookie;
        self.exchange(&out, Route::Broadcast, &[])
    }

    /// DISCOVER, OFFER, REQUEST, ACK (or NAK).
    pub fn dora(&mut self) -> Result<Dora, ClientError> {
        let offer = self.discover()?;
        let reply = self.request_offer(&offer)?;
        Ok(Dora { offer, reply })
    }

    fn request_with_xid(
        &mut self,
        xid: u32,
        ip: Ipv4Addr,
        server_id: Option<Ipv4Addr>,
    ) -> Result<Reply, ClientError> {
        let mut out = self.outgoing(MessageType::Request, xid);
        out.requested_ip = Some(ip);
        out.server_id = server_id;
        self.exchange(
            &out,
            Route::Broadcast,
            &[MessageType::Ack, MessageType::Nak],
        )
    }

    fn fresh_xid(&self) -> u32 {
        self.settings.xid.unwrap_or_else(|| random_u64() as u32)
    }

    fn outgoing(&self, kind: MessageType, xid: u32) -> Outgoing {
        let (giaddr, hops) = match &self.transport {
            Transport::Relay { giaddr, .. } => (*giaddr.ip(), 1),
            _ => (Ipv4Addr::UNSPECIFIED, 0),
        };
        Outgoing {
            kind: Some(kind),
            xid,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            giaddr,
            hops,
            broadcast_flag: self.settings.broadcast_flag,
            requested_ip: None,
            server_id: None,
            magic_cookie: true,
        }
    }

    fn encode(&self, out: &Outgoing) -> Result<Vec<u8>, ClientError> {
        let s = &self.settings;
        let identity = Identity {
            mac: s.mac,
            client_id: s.client_id.as_deref(),
            hostname: s.hostname.as_deref(),
            vendor_class: s.vendor_class.as_deref(),
            user_class: s.user_class.as_deref(),
            parameter_request_list: &s.parameter_request_list,
            extra_options: &s.extra_options,
        };
        encode_request(&identity, out)
    }

    fn destination(&self, route: Route) -> Result<SocketAddrV4, ClientError> {
        match (&self.transport, route) {
            (Transport::Relay { server, .. }, _) | (Transport::Unicast { server, .. }, _) => {
                Ok(*server)
            }
            (Transport::Broadcast { server_port, .. }, Route::Broadcast) => {
                Ok(SocketAddrV4::new(Ipv4Addr::BROADCAST, *server_port))
            }
            (
                Transport::Broadcast {
                    server: Some(server),
                    server_port,
                    ..
                },
                Route::Unicast,
            ) => Ok(SocketAddrV4::new(*server, *server_port)),
            (Transport::Broadcast { server: None, .. }, Route::Unicast) => {
                Err(ClientError::Invalid(
                    "this message goes unicast to the server: give the server's address".into(),
                ))
            }
        }
    }

    fn send(&mut self, bytes: &[u8], to: SocketAddrV4) -> Result<(), ClientError> {
        self.socket
            .send_to(bytes, to)
            .map_err(|e| ClientError::io(&format!("send to {to}"), e))?;
        Ok(())
    }

    fn send_only(&mut self, out: &Outgoing, route: Route) -> Result<Sent, ClientError> {
        let bytes = self.encode(out)?;
        let to = self.destination(route)?;
        self.send(&bytes, to)?;
        self.last_sent = bytes.clone();
        let message_type = out.kind.unwrap_or(MessageType::Unknown(0));
        Ok(Sent {
            message_type,
            xid: out.xid,
            to,
            raw: bytes,
        })
    }

    /// Sends `out` and retransmits until a matching reply of an accepted type arrives (any type
    /// with an empty list: BOOTP) or the timeout ends.
    fn exchange(
        &mut self,
        out: &Outgoing,
        route: Route,
        accepted: &[MessageType],
    ) -> Result<Reply, ClientError> {
        let mut bytes = self.encode(out)?;
        let to = self.destination(route)?;
        let attempts = self.settings.retransmits.saturating_add(1);
        let interval = self.settings.timeout / attempts;
        let started = Instant::now();
        let deadline = started + self.settings.timeout;
        let mut ignored = 0u32;
        let mut last_ignored = String::new();
        let mut buffer = vec![0u8; 65536];
        for attempt in 0..attempts {
            // secs: seconds since the client began this exchange (RFC 2131), updated on resends.
            let secs = u16::try_from(started.elapsed().as_secs()).unwrap_or(u16::MAX);
            bytes[SECS_OFFSET..SECS_OFFSET + 2].copy_from_slice(&secs.to_be_bytes());
            self.send(&bytes, to)?;
            self.last_sent = bytes.clone();
            let attempt_end = if attempt + 1 == attempts {
                deadline
            } else {
                started + interval * (attempt + 1)
            };
            loop {
                let now = Instant::now();
                if now >= attempt_end {
                    break;
                }
                let wait = (attempt_end - now).max(Duration::from_millis(1));
                self.socket
                    .set_read_timeout(Some(wait))
                    .map_err(|e| ClientError::io("set read timeout", e))?;
                let (len, from) = match self.socket.recv_from(&mut buffer) {
                    Ok(got) => got,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    // An ICMP port unreachable from an earlier send; keep waiting.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(ClientError::io("receive", e)),
                };
                let packet = &buffer[..len];
                if !self.is_ours(packet, out.xid) {
                    continue;
                }
                match Reply::decode(packet, Some(from)) {
                    Ok(reply) => {
                        let type_ok = match (reply.message_type, accepted.is_empty()) {
                            (_, true) => true,
                            (Some(kind), false) => accepted.contains(&kind),
                            (None, false) => false,
                        };
                        if type_ok {
                            return Ok(reply);
                        }
                        ignored += 1;
                        last_ignored = format!("a {} from {from}", reply.type_name());
                    }
                    Err(e) => {
                        ignored += 1;
                        last_ignored = e.to_string();
                    }
                }
            }
        }
        let stage = out
            .kind
            .map(message_type_name)
            .unwrap_or_else(|| "BOOTREQUEST".into());
        Err(ClientError::Timeout {
            stage,
            to,
            waited: self.settings.timeout,
            attempts,
            ignored: if ignored == 0 {
                None
            } else {
                Some(format!("{ignored} ignored, last: {last_ignored}"))
            },
        })
    }

    /// A reply to us: BOOTREPLY with our xid and our chaddr (other clients' replies are broadcast too).
    fn is_ours(&self, packet: &[u8], xid: u32) -> bool {
        packet.len() > CHADDR_OFFSET + 6
            && packet[0] == 2
            && packet[4..8] == xid.to_be_bytes()
            && packet[CHADDR_OFFSET..CHADDR_OFFSET + 6] == self.settings.mac
    }
}

fn open_socket(transport: &Transport) -> Result<UdpSocket, ClientError> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| ClientError::io("create UDP socket", e))?;
    // Several relays or test clients may share a port on different addresses.
    socket
        .set_reuse_address(true)
        .map_err(|e| ClientError::io("SO_REUSEADDR", e))?;
    let local = match transport {
        Transport::Relay { giaddr, .. } => *giaddr,
        Transport::Unicast { local, .. } => *local,
        Transport::Broadcast {
            interface,
            client_port,
            ..
        } => {
            bind_to_device(&socket, interface)?;
            socket
                .set_broadcast(true)
                .map_err(|e| ClientError::io("SO_BROADCAST", e))?;
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, *client_port)
        }
    };
    socket
        .bind(&SocketAddr::V4(local).into())
        .map_err(|e| ClientError::io(&format!("bind {local}"), e))?;
    Ok(socket.into())
}

/// A random number from the standard library's per-process random hash keys (no extra crate).
pub(crate) fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

/// Broadcast mode: the socket sends and receives on `interface` only (SO_BINDTODEVICE).
#[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
fn bind_to_device(socket: &Socket, interface: &str) -> Result<(), ClientError> {
    socket.bind_device(Some(interface.as_bytes())).map_err(|e| {
        ClientError::io(
            &format!("bind to interface {interface} (SO_BINDTODEVICE)"),
            e,
        )
    })
}

/// Elsewhere (Windows) no socket can be bound to a device by name: broadcast mode is refused.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "fuchsia")))]
fn bind_to_device(_socket: &Socket, interface: &str) -> Result<(), ClientError> {
    Err(ClientError::io(
        &format!("bind to interface {interface}"),
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "broadcast mode needs SO_BINDTODEVICE (Linux only); use --server or --giaddr",
        ),
    ))
}
