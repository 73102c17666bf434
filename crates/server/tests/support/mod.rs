//! Test support: a recording `Hooks`, a scriptable `PacketHandler` that shares the same event log, a
//! gate that holds workers, DHCP-ish datagrams and a loopback client.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use calloutd_hooks::{
    Admission, Datagram, HookFault, Hooks, LeaseLockHeld, Outcome, PacketHandler, PktContext, Reply,
};
use dhcpssdk::{ClientType, ControlCode, DropReason, GiveCode, ProbCode};

/// How long any test waits for anything before failing.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// What the runtime did, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Control(ControlCode),
    Handled {
        datagram: Datagram,
        admission: Admission,
    },
    /// `PacketHandler::commit` was called with this ticket.
    Committed(u64),
}

/// The shared, ordered event log.
#[derive(Debug, Default, Clone)]
pub struct Log(Arc<Mutex<Vec<Event>>>);

impl Log {
    pub fn push(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }

    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// The admissions of handled datagrams, in order, with their bytes.
    pub fn admissions(&self) -> Vec<(Vec<u8>, Admission)> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                Event::Handled {
                    datagram,
                    admission,
                } => Some((datagram.bytes, admission)),
                Event::Control(_) | Event::Committed(_) => None,
            })
            .collect()
    }

    pub fn controls(&self) -> Vec<ControlCode> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                Event::Control(code) => Some(code),
                Event::Handled { .. } | Event::Committed(_) => None,
            })
            .collect()
    }

    /// Waits (bounded by [`PATIENCE`]) until `done` holds for the events.
    pub fn wait_for(&self, what: &str, done: impl Fn(&[Event]) -> bool) {
        let start = Instant::now();
        while !done(&self.events()) {
            assert!(
                start.elapsed() < PATIENCE,
                "timed out waiting for {what}; events: {:#?}",
                self.events()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn handled_count(events: &[Event]) -> usize {
        events
            .iter()
            .filter(|e| matches!(e, Event::Handled { .. }))
            .count()
    }
}

/// Records Control calls; the packet hooks are the engine's business and never called by the runtime.
pub struct RecordingHooks(pub Log);

impl Hooks for RecordingHooks {
    fn control(&self, code: ControlCode) {
        self.0.push(Event::Control(code));
    }
    fn new_pkt(&self, _: &mut Vec<u8>, _: Ipv4Addr, _: &mut PktContext) -> Result<bool, HookFault> {
        panic!("the runtime called NewPkt")
    }
    fn handle_options(&self, _: &[u8], _: PktContext, _: Option<Ipv4Addr>) {
        panic!("the runtime called HandleOptions")
    }
    fn pkt_drop(&self, _: &mut Vec<u8>, _: DropReason, _: Ipv4Addr, _: PktContext) {
        panic!("the runtime called PktDrop")
    }
    fn pkt_send(&self, _: &mut Vec<u8>, _: Ipv4Addr, _: PktContext) -> Result<(), HookFault> {
        panic!("the runtime called PktSend")
    }
    fn address_del(
        &self,
        _: &LeaseLockHeld<'_>,
        _: &[u8],
        _: ProbCode,
        _: Ipv4Addr,
        _: Ipv4Addr,
        _: PktContext,
    ) {
        panic!("the runtime called AddressDel")
    }
    fn address_offer(
        &self,
        _: &LeaseLockHeld<'_>,
        _: &[u8],
        _: GiveCode,
        _: Ipv4Addr,
        _: Ipv4Addr,
        _: ClientType,
        _: u32,
        _: PktContext,
    ) {
        panic!("the runtime called AddressOffer")
    }
    fn delete_client(&self, _: &LeaseLockHeld<'_>, _: Ipv4Addr, _: &[u8]) {
        panic!("the runtime called DeleteClient")
    }
}

/// Holds every worker that handles a datagram with `Admission::Process` until opened, or lets a
/// counted number through.
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    /// `None`: open. `Some(n)`: closed, with `n` passes left.
    permits: Option<usize>,
    waiting: usize,
}

impl Gate {
    pub fn closed() -> Arc<Gate> {
        let gate = Gate::default();
        gate.state.lock().unwrap().permits = Some(0);
        Arc::new(gate)
    }

    pub fn open(&self) {
        self.state.lock().unwrap().permits = None;
        self.changed.notify_all();
    }

    /// Lets `n` more workers through a closed gate.
    pub fn allow(&self, n: usize) {
        let mut state = self.state.lock().unwrap();
        state.permits = state.permits.map(|left| left + n);
        self.changed.notify_all();
    }

    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        state.waiting += 1;
        self.changed.notify_all();
        let start = Instant::now();
        while state.permits == Some(0) && start.elapsed() < PATIENCE * 2 {
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap()
                .0;
        }
        if let Some(left) = state.permits.as_mut() {
            *left = left.saturating_sub(1);
        }
        state.waiting -= 1;
        self.changed.notify_all();
    }

    /// Waits until exactly `n` workers are held.
    pub fn wait_waiting(&self, n: usize) {
        let start = Instant::now();
        let mut state = self.state.lock().unwrap();
        while state.waiting != n {
            assert!(start.elapsed() < PATIENCE, "not {n} workers at the gate");
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap()
                .0;
        }
    }
}

/// Makes sure the kernel stamps datagrams on arrival before a test depends on it: it turns receive
/// timestamps on (a static key) a moment after the first socket asks, and off when the last one
/// closes. A socket kept open for the life of the test process keeps them on.
pub fn keep_kernel_timestamps_on() {
    static KEEPER: std::sync::OnceLock<UdpSocket> = std::sync::OnceLock::new();
    let socket = KEEPER.get_or_init(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::ReceiveTimestampns,
            &true,
        )
        .unwrap();
        socket
    });
    let addr = socket.local_addr().unwrap();
    let start = Instant::now();
    loop {
        let sent = std::time::SystemTime::now();
        socket.send_to(b"t", addr).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let mut buf = [0u8; 8];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
        let msg = nix::sys::socket::recvmsg::<()>(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            &mut iov,
            Some(&mut cmsg),
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        let stamped_on_arrival = msg.cmsgs().unwrap().any(|cmsg| match cmsg {
            nix::sys::socket::ControlMessageOwned::ScmTimestampns(time) => {
                let at = std::time::UNIX_EPOCH
                    + Duration::new(time.tv_sec() as u64, time.tv_nsec() as u32);
                at < sent + Duration::from_millis(4)
            }
            _ => false,
        });
        if stamped_on_arrival {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "kernel receive timestamps never came on"
        );
    }
}

/// Long enough for a datagram to count as backlog (`BACKLOG_AGE`) before a worker reads it.
pub fn let_backlog_age() {
    std::thread::sleep(calloutd_server::BACKLOG_AGE * 20);
}

/// Answers every processed datagram with `"re:" + bytes` to the sender (or to `reply_to`), from the
/// receiving interface's address; records every call in the log first.
pub struct EchoHandler {
    pub log: Log,
    pub gate: Option<Arc<Gate>>,
    pub delay: Duration,
    pub reply_to: Option<SocketAddrV4>,
    /// A datagram starting with this byte panics the handler (an engine bug).
    pub panic_on: Option<u8>,
    /// Reply from this address instead of the receiving interface's.
    pub source: Option<Ipv4Addr>,
}

impl EchoHandler {
    pub fn new(log: Log) -> Self {
        EchoHandler {
            log,
            gate: None,
            delay: Duration::ZERO,
            reply_to: None,
            panic_on: None,
            source: None,
        }
    }
}

impl PacketHandler for EchoHandler {
    fn handle(&self, datagram: Datagram, admission: Admission) -> Outcome {
        self.log.push(Event::Handled {
            datagram: datagram.clone(),
            admission,
        });
        if let (Some(tag), Some(first)) = (self.panic_on, datagram.bytes.first()) {
            if tag == *first {
                panic!("test handler told to panic");
            }
        }
        let dropped = match admission {
            Admission::Drop(reason) => reason,
            Admission::Process => {
                if let Some(gate) = &self.gate {
                    gate.pass();
                }
                let mut bytes = b"re:".to_vec();
                bytes.extend_from_slice(&datagram.bytes);
                return Outcome {
                    reply: Some(Reply {
                        bytes,
                        dest: self.reply_to.unwrap_or(datagram.peer),
                        source: self.source.unwrap_or(datagram.if_addr),
                        delay: self.delay,
                    }),
                    dropped: None,
                    request_type: Some(1),
                    reply_type: Some(2),
                    ..Outcome::default()
                };
            }
        };
        Outcome {
            reply: None,
            dropped: Some(dropped),
            request_type: None,
            reply_type: None,
            ..Outcome::default()
        }
    }
}

/// A BOOTP/DHCP message with the given xid, MAC and DHCP message type (option 53; 0 = none).
pub fn dhcp_message(xid: u32, mac: [u8; 6], message_type: u8) -> Vec<u8> {
    let mut bytes = vec![0u8; 236];
    bytes[0] = 1;
    bytes[1] = 1;
    bytes[2] = 6;
    bytes[4..8].copy_from_slice(&xid.to_be_bytes());
    bytes[28..34].copy_from_slice(&mac);
    bytes.extend_from_slice(&[99, 130, 83, 99]);
    if message_type != 0 {
        bytes.extend_from_slice(&[53, 1, message_type]);
    }
    bytes.push(255);
    bytes
}

/// A UDP client on 127.0.0.1 with bounded receives.
pub fn client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket
}

pub fn local_v4(socket: &UdpSocket) -> SocketAddrV4 {
    match socket.local_addr().unwrap() {
        std::net::SocketAddr::V4(addr) => addr,
        other => panic!("not IPv4: {other}"),
    }
}

/// Receives one datagram (bounded by the socket's timeout).
pub fn recv(socket: &UdpSocket) -> (Vec<u8>, std::net::SocketAddr) {
    let mut buf = [0u8; 2048];
    let (len, from) = socket.recv_from(&mut buf).expect("no reply in time");
    (buf[..len].to_vec(), from)
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A network namespace made by a test, deleted on drop. [`Namespace::create`]: lo up and a veth pair,
/// one end holding 198.18.0.1/24 and the other no address (nobody there answers).
pub struct Namespace {
    name: String,
}

/// Numbers the namespaces of one test process.
static NAMESPACES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Namespace {
    fn bare() -> Namespace {
        let namespace = Namespace {
            name: format!(
                "calloutd-test-{}-{}",
                std::process::id(),
                NAMESPACES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
        };
        namespace.ip(&["netns", "add", &namespace.name]);
        namespace.ip_in(&["link", "set", "lo", "up"]);
        namespace
    }

    pub fn create() -> Namespace {
        let namespace = Namespace::bare();
        for args in [
            &[
                "link", "add", "probe0", "type", "veth", "peer", "name", "probe1",
            ][..],
            &["addr", "add", "198.18.0.1/24", "dev", "probe0"],
            &["link", "set", "probe0", "up"],
            &["link", "set", "probe1", "up"],
        ] {
            namespace.ip_in(args);
        }
        namespace
    }

    /// Two namespaces joined by a veth link: `probe0` with 198.18.0.1/24 in the first, `probe1`
    /// without any address in the second (a client that has none yet).
    pub fn pair() -> (Namespace, Namespace) {
        let server = Namespace::bare();
        let client = Namespace::bare();
        server.ip_in(&[
            "link",
            "add",
            "probe0",
            "type",
            "veth",
            "peer",
            "name",
            "probe1",
            "netns",
            &client.name,
        ]);
        server.ip_in(&["addr", "add", "198.18.0.1/24", "dev", "probe0"]);
        server.ip_in(&["link", "set", "probe0", "up"]);
        client.ip_in(&["link", "set", "probe1", "up"]);
        (server, client)
    }

    /// Runs `ip -n <this namespace> args`.
    fn ip_in(&self, args: &[&str]) {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        self.ip(&full);
    }

    pub fn ip(&self, args: &[&str]) {
        let status = Command::new("ip").args(args).status().unwrap();
        assert!(status.success(), "ip {args:?} failed");
    }

    /// Runs `body` on a thread that has entered the namespace (sockets it opens live there).
    pub fn run<T: Send + 'static>(&self, body: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(body).join().unwrap()
    }

    /// Starts `body` on a thread that has entered the namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        body: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(path).unwrap();
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            body()
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Starts a server with `handler` and hooks that record into `log`; the server and its first address.
pub fn start_recorded<H: PacketHandler>(
    config: calloutd_server::ServerConfig,
    handler: H,
    log: &Log,
) -> (calloutd_server::Server, SocketAddrV4) {
    let server = calloutd_server::Server::start(
        config,
        Arc::new(handler),
        Arc::new(RecordingHooks(log.clone())),
    )
    .unwrap();
    let addr = server.local_addrs()[0];
    (server, addr)
}

/// Stops the server and returns its final counters (every send counted).
pub fn stop_server(server: calloutd_server::Server) -> calloutd_server::CountersSnapshot {
    server.handle().stop();
    server.wait()
}
