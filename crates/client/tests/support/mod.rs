//! A minimal DHCP responder for the client's tests: a thread on a loopback port that decodes with
//! dhcproto and answers as a small server would. Dropping it stops and joins the thread.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

pub const SERVER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// Requests for this address get a NAK.
pub const FORBIDDEN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 250);
pub const LEASE: u32 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Answer like a server.
    Serve,
    /// Record, never answer.
    Silent,
}

/// One datagram the responder received, and where it sent its answer.
#[derive(Debug, Clone)]
pub struct Received {
    pub raw: Vec<u8>,
    pub from: SocketAddr,
    pub message: Message,
    pub replied_to: Option<SocketAddr>,
}

pub struct Responder {
    addr: SocketAddrV4,
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<Received>>>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    /// Starts on 127.0.0.1 at an ephemeral port.
    pub fn start(policy: Policy) -> Responder {
        Self::start_on("127.0.0.1:0".parse().unwrap(), policy, true)
    }

    /// Starts on `bind`; `record` keeps every datagram (off for load tests).
    pub fn start_on(bind: SocketAddrV4, policy: Policy, record: bool) -> Responder {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        // Room for bursts while this thread waits for a core (the machine is shared).
        socket.set_recv_buffer_size(4 << 20).unwrap();
        socket.bind(&SocketAddr::V4(bind).into()).unwrap();
        let socket: UdpSocket = socket.into();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        socket.set_broadcast(true).unwrap();
        let addr = match socket.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, received) = (stop.clone(), received.clone());
            std::thread::spawn(move || serve(socket, policy, record, &stop, &received))
        };
        Responder {
            addr,
            stop,
            received,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddrV4 {
        self.addr
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (bounded) until at least `count` datagrams arrived, for messages that get no reply.
    pub fn wait_received(&self, count: usize) -> Vec<Received> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let received = self.received();
            if received.len() >= count || std::time::Instant::now() > deadline {
                return received;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn received_of(&self, kind: MessageType) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.message.opts().msg_type() == Some(kind))
            .collect()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    socket: UdpSocket,
    policy: Policy,
    record: bool,
    stop: &AtomicBool,
    received: &Mutex<Vec<Received>>,
) {
    let mut buffer = [0u8; 1500];
    while !stop.load(Ordering::Acquire) {
        let Ok((len, from)) = socket.recv_from(&mut buffer) else {
            continue;
        };
        let raw = &buffer[..len];
        let Ok(message) = Message::decode(&mut Decoder::new(raw)) else {
            continue;
        };
        let reply = if policy == Policy::Serve {
            answer(raw, &message)
        } else {
            None
        };
        // Relayed: back to the relay (giaddr, at the port it sent from); else to the sender.
        let to = if message.giaddr().is_unspecified() {
            from
        } else {
            SocketAddr::new(message.giaddr().into(), from.port())
        };
        let replied_to = reply.as_ref().map(|_| to);
        // Recorded before replying, so a client holding the reply always finds its request here.
        if record {
            received.lock().unwrap().push(Received {
                raw: raw.to_vec(),
                from,
                message,
                replied_to,
            });
        }
        if let Some(bytes) = reply {
            socket.send_to(&bytes, to).unwrap();
        }
    }
}

fn pool_address(message: &Message) -> Ipv4Addr {
    Ipv4Addr::new(
        10,
        0,
        0,
        10 + message.chaddr().last().copied().unwrap_or(0) % 200,
    )
}

fn answer(raw: &[u8], request: &Message) -> Option<Vec<u8>> {
    let mut reply = Message::new_with_id(
        request.xid(),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        request.giaddr(),
        request.chaddr(),
    );
    reply
        .set_opcode(Opcode::BootReply)
        .set_flags(request.flags());
    let opts = request.opts();
    let requested = match opts.get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    let lease = |reply: &mut Message| {
        reply.opts_mut().insert(DhcpOption::AddressLeaseTime(LEASE));
        reply.opts_mut().insert(DhcpOption::Renewal(LEASE / 2));
        reply
            .opts_mut()
            .insert(DhcpOption::Rebinding(LEASE * 7 / 8));
        reply
            .opts_mut()
            .insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        reply.opts_mut().insert(DhcpOption::Router(vec![SERVER_ID]));
    };
    let Some(kind) = opts.msg_type() else {
        // BOOTP: vendor extensions only when the request had the magic cookie.
        reply.set_yiaddr(pool_address(request));
        let cookie = raw.get(236..240) == Some(&dhcproto::v4::MAGIC[..]);
        if cookie {
            reply
                .opts_mut()
                .insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        }
        let mut bytes = encode(&reply);
        if !cookie {
            bytes.truncate(236);
        }
        bytes.resize(bytes.len().max(300), 0);
        return Some(bytes);
    };
    let reply_type = match kind {
        MessageType::Discover => {
            reply.set_yiaddr(
                requested
                    .filter(|ip| *ip != FORBIDDEN)
                    .unwrap_or_else(|| pool_address(request)),
            );
            lease(&mut reply);
            MessageType::Offer
        }
        MessageType::Request => {
            let address = if request.ciaddr().is_unspecified() {
                requested
            } else {
                Some(request.ciaddr())
            };
            match address {
                Some(ip) if ip != FORBIDDEN && ip.octets()[..3] == [10, 0, 0] => {
                    reply.set_yiaddr(ip);
                    lease(&mut reply);
                    MessageType::Ack
                }
                _ => {
                    reply
                        .opts_mut()
                        .insert(DhcpOption::Message("address not available".into()));
                    MessageType::Nak
                }
            }
        }
        MessageType::Inform => {
            reply.set_ciaddr(request.ciaddr());
            reply
                .opts_mut()
                .insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
            MessageType::Ack
        }
        _ => return None, // RELEASE, DECLINE: no reply
    };
    reply.opts_mut().insert(DhcpOption::MessageType(reply_type));
    reply
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(SERVER_ID));
    if let Some(id) = opts.get(OptionCode::ClientIdentifier) {
        reply.opts_mut().insert(id.clone());
    }
    let mut bytes = encode(&reply);
    bytes.resize(bytes.len().max(300), 0);
    Some(bytes)
}

fn encode(message: &Message) -> Vec<u8> {
    let mut bytes = Vec::new();
    message.encode(&mut Encoder::new(&mut bytes)).unwrap();
    bytes
}

/// Option `code`'s payload in a request, walking the raw bytes (to check the wire, not dhcproto).
pub fn raw_option(raw: &[u8], code: u8) -> Option<Vec<u8>> {
    let mut at = 240;
    while at < raw.len() {
        match raw[at] {
            0 => at += 1,
            255 => return None,
            c => {
                let len = raw[at + 1] as usize;
                if c == code {
                    return Some(raw[at + 2..at + 2 + len].to_vec());
                }
                at += 2 + len;
            }
        }
    }
    None
}

/// The option codes of a request in wire order.
pub fn raw_codes(raw: &[u8]) -> Vec<u8> {
    let mut codes = Vec::new();
    let mut at = 240;
    while at < raw.len() {
        match raw[at] {
            0 => at += 1,
            255 => break,
            c => {
                codes.push(c);
                at += 2 + raw[at + 1] as usize;
            }
        }
    }
    codes
}
