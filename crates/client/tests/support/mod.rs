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

pub const SERVER_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Requests for this address get a NAK.
pub const FORBIDDEN: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 250);
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
        Self::start_on_device(bind, None, policy, record)
    }

    /// Starts on `bind`, bound to `device` (SO_BINDTODEVICE) when given.
    pub fn start_on_device(
        bind: SocketAddrV4,
        device: Option<&str>,
        policy: Policy,
        record: bool,
    ) -> Responder {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        if let Some(device) = device {
            socket.bind_device(Some(device.as_bytes())).unwrap();
        }
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
        // RFC 2131 4.1, loosely: relayed → the relay (giaddr, at the port it sent from); a client
        // with no address → broadcast to port 68; otherwise back to the sender.
        let to = if !message.giaddr().is_unspecified() {
            SocketAddr::new(message.giaddr().into(), from.port())
        } else if from.ip().is_unspecified()
            || message.flags().broadcast() && message.ciaddr().is_unspecified()
        {
            SocketAddr::new(Ipv4Addr::BROADCAST.into(), 68)
        } else {
            from
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
        198,
        18,
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
                Some(ip) if ip != FORBIDDEN && ip.octets()[..3] == [198, 18, 0] => {
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

/// A stateless responder that patches each request into a reply in place (no decoding), fast
/// enough that the load generator, not it, is what a throughput run measures.
pub struct FastResponder {
    addr: SocketAddrV4,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<f64>>,
}

impl FastResponder {
    pub fn start() -> FastResponder {
        FastResponder::with_recv_buffer(4 << 20)
    }

    /// A responder whose socket receive buffer is `bytes` (the kernel doubles it), so that a
    /// burst larger than the buffer holds overflows it as it would a real server's.
    pub fn with_recv_buffer(bytes: usize) -> FastResponder {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        socket
            .bind(&SocketAddr::V4("127.0.0.1:0".parse().unwrap()).into())
            .unwrap();
        let socket: UdpSocket = socket.into();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = match socket.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("fast-responder".into())
                .spawn(move || {
                    let mut buffer = [0u8; 1500];
                    let mut answered = 0;
                    while !stop.load(Ordering::Acquire) {
                        let Ok((len, from)) = socket.recv_from(&mut buffer) else {
                            continue;
                        };
                        if len < 243 || buffer[240] != 53 {
                            continue;
                        }
                        let reply_type = match buffer[242] {
                            1 => 2,
                            3 => 5,
                            _ => continue,
                        };
                        buffer[0] = 2;
                        let yiaddr = [198, 18, buffer[33], buffer[32]];
                        buffer[16..20].copy_from_slice(&yiaddr);
                        let options = [
                            53, 1, reply_type, 54, 4, 198, 18, 0, 1, 51, 4, 0, 0, 14, 16, 255,
                        ];
                        buffer[240..256].copy_from_slice(&options);
                        buffer[256..300].fill(0);
                        let to = SocketAddr::new(
                            Ipv4Addr::new(buffer[24], buffer[25], buffer[26], buffer[27]).into(),
                            from.port(),
                        );
                        if socket.send_to(&buffer[..300], to).is_ok() {
                            answered += 1;
                        }
                    }
                    let _ = answered;
                    thread_cpu_seconds()
                })
                .unwrap()
        };
        FastResponder {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddrV4 {
        self.addr
    }

    /// Stops the responder; returns the CPU seconds its thread used.
    pub fn stop(mut self) -> f64 {
        self.stop.store(true, Ordering::Release);
        self.thread
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default()
    }
}

/// utime + stime in seconds from a /proc stat line.
fn stat_cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}

/// CPU seconds the calling thread has used.
pub fn thread_cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/thread-self/stat")
}

impl Drop for FastResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
