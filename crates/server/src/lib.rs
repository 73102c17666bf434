//! The calloutd runtime: UDP sockets (IP_PKTINFO, broadcast, SO_BINDTODEVICE), the bounded queue and
//! worker threads with the drops the runtime decides (NOMEM, DUPLICATE, TIMEOUT, PAUSED), the service
//! state (running, paused, stopping) with its Control hook calls, signals, and the runtime's counters.
//!
//! Not for: protocol logic (that is `calloutd-engine`, reached only through
//! [`calloutd_engine::PacketHandler`]), or calling a DLL (the Control hook is reached only through
//! [`calloutd_engine::Hooks`]).
//!
//! The way of a datagram: one receiver thread per socket reads it with `recvmsg` (learning the
//! receiving interface's address and the destination address from IP_PKTINFO), and queues it for the
//! workers. A copy of a datagram already queued or in progress (same xid, chaddr and message type) is
//! not queued but handled at once on the receiver thread with `Admission::Drop(Duplicate)`; so is a
//! datagram that finds the queue full, with `Drop(NoMem)`. Handling these inline keeps them bounded:
//! while the receiver is busy with one, further datagrams wait in the socket's kernel buffer, which
//! drops what does not fit. A worker takes the next datagram and handles it with `Drop(Paused)` while
//! the service is paused, `Drop(Timeout)` if it waited longer than [`ServerConfig::queue_timeout`],
//! else `Process`; it sends the reply from the socket that received the request, or leaves it to the
//! timer thread when the reply has a delay.
//!
//! Control hooks, all under the service state lock: START after the sockets are bound and before any
//! thread that could handle a packet exists; PAUSE before the service starts dropping packets as
//! paused, CONTINUE after it stopped; STOP after the receivers have stopped, the queue is drained, every
//! worker has finished and every delayed reply is sent: the very last hook call.
//!
//! ```no_run
//! use std::sync::Arc;
//! use calloutd_engine::{Admission, Datagram, NoHooks, Outcome, PacketHandler};
//! use calloutd_server::{parse_listen, Server, ServerConfig};
//!
//! struct Silent;
//! impl PacketHandler for Silent {
//!     fn handle(&self, _: Datagram, _: Admission) -> Outcome {
//!         Outcome::default()
//!     }
//! }
//!
//! let config = ServerConfig {
//!     listen: vec![parse_listen("127.0.0.1:6767")?],
//!     handle_signals: true,
//!     ..ServerConfig::default()
//! };
//! let server = Server::start(config, Arc::new(Silent), Arc::new(NoHooks))?;
//! let handle = server.handle(); // pause()/resume()/stop()/counters() from any thread
//! let final_counters = server.wait(); // returns after Control(STOP), e.g. on SIGTERM
//! println!("{final_counters}");
//! # let _ = handle;
//! # Ok::<(), calloutd_server::ServerError>(())
//! ```

#![warn(missing_docs)]

mod counters;
mod delayed;
mod duplicate;
mod queue;
mod socket;

use std::fmt;
use std::io;
use std::net::SocketAddrV4;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use calloutd_engine::{Admission, Datagram, Hooks, PacketHandler, Reply};
use dhcpssdk::{ControlCode, DropReason};
use tracing::{error, info, warn};

pub use counters::{CountersSnapshot, MESSAGE_TYPE_SLOTS};
pub use socket::parse_listen;

use counters::Counters;
use delayed::DelayedReplies;
use duplicate::DuplicateKey;
use queue::{Job, JobQueue, Pushed};
use socket::ServerSocket;

/// The DHCP server port: the default for `--listen` and `--interface`.
pub const DHCP_SERVER_PORT: u16 = 67;
/// Default capacity of the queue between receivers and workers.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// Default longest wait in the queue before a datagram is dropped with `DHCP_DROP_TIMEOUT`.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// Receive buffer per receiver thread: the largest possible UDP payload over IPv4 fits.
const RECV_BUFFER: usize = 65_536;

/// A function that logs the one-screen summary (SIGUSR1); it gets the runtime's counters and may add
/// the engine's own.
pub type SummaryFn = Arc<dyn Fn(&CountersSnapshot) + Send + Sync>;

/// What the runtime serves on and how it queues.
#[derive(Clone)]
pub struct ServerConfig {
    /// `--listen ADDR[:PORT]`: addresses to bind (see [`parse_listen`]).
    pub listen: Vec<SocketAddrV4>,
    /// `--interface IF`: devices to serve, each on 0.0.0.0:[`ServerConfig::interface_port`] with
    /// SO_BINDTODEVICE.
    pub interfaces: Vec<String>,
    /// Port bound for each `--interface` (67; tests use a high port).
    pub interface_port: u16,
    /// Worker threads (`--workers`); 0 means one per CPU.
    pub workers: usize,
    /// Datagrams that may wait for a worker; one more is dropped with `DHCP_DROP_NOMEM`.
    pub queue_capacity: usize,
    /// A datagram that waited longer than this for a worker is dropped with `DHCP_DROP_TIMEOUT`.
    pub queue_timeout: Duration,
    /// SO_RCVBUF for each socket, if the system default is not wanted.
    pub recv_buffer_bytes: Option<usize>,
    /// Handle SIGINT/SIGTERM (stop) and SIGUSR1 (summary). Process-wide: the CLI sets it, tests
    /// normally do not.
    pub handle_signals: bool,
    /// Logs the SIGUSR1 summary; `None` logs the runtime's counters at info level.
    pub summary: Option<SummaryFn>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: Vec::new(),
            interfaces: Vec::new(),
            interface_port: DHCP_SERVER_PORT,
            workers: 0,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            recv_buffer_bytes: None,
            handle_signals: false,
            summary: None,
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("interfaces", &self.interfaces)
            .field("interface_port", &self.interface_port)
            .field("workers", &self.workers)
            .field("queue_capacity", &self.queue_capacity)
            .field("queue_timeout", &self.queue_timeout)
            .field("recv_buffer_bytes", &self.recv_buffer_bytes)
            .field("handle_signals", &self.handle_signals)
            .field("summary", &self.summary.as_ref().map(|_| "custom"))
            .finish()
    }
}

/// The number of workers used when [`ServerConfig::workers`] is 0: one per CPU.
pub fn default_workers() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// The service state (Microsoft's service control states that the Control hook reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    /// Serving.
    Running,
    /// Receiving, but every datagram is dropped with `DHCP_DROP_PAUSED`.
    Paused,
    /// No longer receiving; finishing what was received.
    Stopping,
    /// Everything finished and Control(STOP) called.
    Stopped,
}

/// Why the runtime could not start or do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Neither `--listen` nor `--interface` was given.
    #[error("no socket to serve on: give --listen ADDR[:PORT] or --interface IF")]
    NoListeners,
    /// A `--listen` value that is not `ADDR` or `ADDR:PORT`.
    #[error("invalid --listen value {0:?}: expected an IPv4 address with an optional port, e.g. 192.0.2.1 or 127.0.0.1:6767")]
    InvalidListen(String),
    /// A socket could not be set up.
    #[error("{what}: {step} failed: {source}")]
    Socket {
        /// The address or interface.
        what: String,
        /// The system call or option that failed.
        step: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// The signal handlers could not be installed.
    #[error("cannot install the SIGINT/SIGTERM/SIGUSR1 handlers: {0}")]
    Signals(#[source] io::Error),
    /// A pause or resume asked of a service that is stopping or stopped.
    #[error("cannot {action} the service: it is {state:?}")]
    State {
        /// `pause` or `resume`.
        action: &'static str,
        /// The state it is in.
        state: ServiceState,
    },
}

/// The service state and the lock under which Control is called.
struct Service {
    state: Mutex<ServiceState>,
    changed: Condvar,
    /// Mirrors `state == Paused` for the workers' admission check (no lock per packet).
    paused: AtomicBool,
    /// Mirrors `state >= Stopping` for the receivers.
    stopping: AtomicBool,
    hooks: Arc<dyn Hooks>,
}

impl Service {
    fn lock(&self) -> MutexGuard<'_, ServiceState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everything the threads share that does not depend on the handler type.
struct Runtime {
    sockets: Vec<ServerSocket>,
    queue: JobQueue,
    delayed: DelayedReplies,
    counters: Counters,
    service: Service,
    queue_timeout: Duration,
}

impl Runtime {
    fn snapshot(&self) -> CountersSnapshot {
        self.counters
            .snapshot(self.queue.depth(), self.queue.in_progress())
    }

    /// Control(START), under the service state lock.
    fn start(&self) {
        let _state = self.service.lock();
        self.service.hooks.control(ControlCode::Start);
    }

    fn pause(&self) -> Result<(), ServerError> {
        let mut state = self.service.lock();
        match *state {
            ServiceState::Running => {
                // The hook first: every PAUSED drop comes after Control(PAUSE).
                self.service.hooks.control(ControlCode::Pause);
                self.service.paused.store(true, Ordering::SeqCst);
                *state = ServiceState::Paused;
                self.service.changed.notify_all();
                Ok(())
            }
            ServiceState::Paused => Ok(()),
            other => Err(ServerError::State {
                action: "pause",
                state: other,
            }),
        }
    }

    fn resume(&self) -> Result<(), ServerError> {
        let mut state = self.service.lock();
        match *state {
            ServiceState::Paused => {
                // Admissions stop being PAUSED before Control(CONTINUE) is called.
                self.service.paused.store(false, Ordering::SeqCst);
                *state = ServiceState::Running;
                self.service.hooks.control(ControlCode::Continue);
                self.service.changed.notify_all();
                Ok(())
            }
            ServiceState::Running => Ok(()),
            other => Err(ServerError::State {
                action: "resume",
                state: other,
            }),
        }
    }

    /// Asks for a stop: receivers stop at once; [`Server::wait`] does the rest.
    fn stop(&self) {
        let mut state = self.service.lock();
        if matches!(*state, ServiceState::Running | ServiceState::Paused) {
            *state = ServiceState::Stopping;
            self.service.stopping.store(true, Ordering::SeqCst);
            self.service.changed.notify_all();
            drop(state);
            for socket in &self.sockets {
                socket.shutdown_read();
            }
        }
    }

    fn wait_for_stop_request(&self) {
        let mut state = self.service.lock();
        while matches!(*state, ServiceState::Running | ServiceState::Paused) {
            state = self
                .service
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Control(STOP) under the service state lock, once: the last hook call.
    fn finish(&self) {
        let mut state = self.service.lock();
        if *state != ServiceState::Stopped {
            self.service.hooks.control(ControlCode::Stop);
            *state = ServiceState::Stopped;
            self.service.changed.notify_all();
        }
    }

    /// The admission of a datagram a worker took from the queue.
    fn admission(&self, job: &Job) -> Admission {
        if self.service.paused.load(Ordering::Relaxed) {
            Admission::Drop(DropReason::Paused)
        } else if job.received_at.elapsed() > self.queue_timeout {
            Admission::Drop(DropReason::Timeout)
        } else {
            Admission::Process
        }
    }

    /// Runs one datagram through the engine and sends (or schedules) its reply.
    fn process<H: PacketHandler + ?Sized>(&self, handler: &H, job: Job, admission: Admission) {
        self.counters.admitted(admission);
        let Job {
            datagram,
            socket,
            ifindex,
            ..
        } = job;
        let peer = datagram.peer;
        // An engine bug must not take a worker (and with it the server) down.
        match catch_unwind(AssertUnwindSafe(|| handler.handle(datagram, admission))) {
            Ok(outcome) => {
                self.counters.outcome(&outcome);
                if let Some(reply) = outcome.reply {
                    if reply.delay.is_zero() {
                        self.send(socket, ifindex, &reply);
                    } else {
                        self.delayed.schedule(reply, socket, ifindex);
                    }
                }
            }
            Err(_) => {
                self.counters.handler_panic();
                error!(%peer, "the engine panicked while handling a datagram; it is lost");
            }
        }
    }

    fn send(&self, socket: usize, ifindex: i32, reply: &Reply) {
        let Some(server_socket) = self.sockets.get(socket) else {
            return;
        };
        match server_socket.send(&reply.bytes, reply.dest, reply.source, ifindex) {
            Ok(()) => self.counters.sent(),
            Err(err) => {
                self.counters.send_error();
                warn!(dest = %reply.dest, source = %reply.source, socket = %server_socket.local, "sending a reply failed: {err}");
            }
        }
    }

    /// A receiver thread: reads datagrams from socket `index` until stop.
    fn receive<H: PacketHandler + ?Sized>(&self, handler: &H, index: usize) {
        let Some(socket) = self.sockets.get(index) else {
            return;
        };
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut cmsg = socket::control_buffer();
        while !self.service.stopping.load(Ordering::Relaxed) {
            let received = match socket.recv(&mut buf, &mut cmsg) {
                Ok(received) => received,
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(err) => {
                    warn!(socket = %socket.local, "receiving failed: {err}");
                    // Do not spin on a persistent error.
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            // The wake-up from stop's shutdown, or a datagram that raced it: stop means stop receiving.
            if self.service.stopping.load(Ordering::Relaxed) {
                break;
            }
            let Some(bytes) = buf.get(..received.len) else {
                continue;
            };
            self.counters.received();
            let job = Job {
                key: DuplicateKey::of(bytes),
                datagram: Datagram {
                    bytes: bytes.to_vec(),
                    if_addr: received.if_addr,
                    dst_addr: received.dst_addr,
                    peer: received.peer,
                },
                socket: index,
                ifindex: received.ifindex,
                received_at: Instant::now(),
            };
            match self.queue.push(job) {
                Pushed::Queued => {}
                Pushed::Duplicate(job) => {
                    self.process(handler, *job, Admission::Drop(DropReason::Duplicate))
                }
                Pushed::Full(job) => {
                    self.process(handler, *job, Admission::Drop(DropReason::NoMem))
                }
            }
        }
    }

    /// A worker thread: handles queued datagrams until the queue is closed and empty.
    fn work<H: PacketHandler + ?Sized>(&self, handler: &H) {
        let mut finished = None;
        while let Some(job) = self.queue.next(finished.take()) {
            finished = Some(job.key);
            let admission = self.admission(&job);
            self.process(handler, job, admission);
        }
    }
}

/// Pause, resume, stop and read the counters of a running server, from any thread. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandle {
    runtime: Arc<Runtime>,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("state", &self.state())
            .finish()
    }
}

impl ServerHandle {
    /// Pauses the service: Control(PAUSE), then every datagram is dropped with `DHCP_DROP_PAUSED`
    /// (after NewPkt and HandleOptions, by the engine). Pausing a paused service does nothing.
    pub fn pause(&self) -> Result<(), ServerError> {
        self.runtime.pause()
    }

    /// Continues a paused service: datagrams are processed again, then Control(CONTINUE). Resuming a
    /// running service does nothing.
    pub fn resume(&self) -> Result<(), ServerError> {
        self.runtime.resume()
    }

    /// Asks the server to stop; [`Server::wait`] returns once everything finished and Control(STOP)
    /// was called. Returns at once; calling it again does nothing.
    pub fn stop(&self) {
        self.runtime.stop();
    }

    /// The service state now.
    pub fn state(&self) -> ServiceState {
        *self.runtime.service.lock()
    }

    /// The runtime's counters now.
    pub fn counters(&self) -> CountersSnapshot {
        self.runtime.snapshot()
    }
}

/// The signal thread and the way to tell it to end.
struct SignalThread {
    thread: JoinHandle<()>,
    done: Arc<tokio::sync::Notify>,
}

/// A started server. [`Server::wait`] (or dropping it, which stops it first) shuts it down.
pub struct Server {
    runtime: Arc<Runtime>,
    receivers: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    timer: Option<JoinHandle<()>>,
    signals: Option<SignalThread>,
    finished: bool,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addrs", &self.local_addrs())
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl Server {
    /// Binds every socket, calls Control(START), then starts the timer, the workers, the receivers
    /// and (if asked) the signal thread. A datagram is handled only after Control(START) returned.
    pub fn start<H: PacketHandler + ?Sized>(
        config: ServerConfig,
        handler: Arc<H>,
        hooks: Arc<dyn Hooks>,
    ) -> Result<Server, ServerError> {
        if config.listen.is_empty() && config.interfaces.is_empty() {
            return Err(ServerError::NoListeners);
        }
        let mut sockets = Vec::new();
        for addr in &config.listen {
            sockets.push(ServerSocket::bind_address(*addr, config.recv_buffer_bytes)?);
        }
        for name in &config.interfaces {
            sockets.push(ServerSocket::bind_interface(
                name,
                config.interface_port,
                config.recv_buffer_bytes,
            )?);
        }
        let runtime = Arc::new(Runtime {
            sockets,
            queue: JobQueue::new(config.queue_capacity),
            delayed: DelayedReplies::default(),
            counters: Counters::default(),
            service: Service {
                state: Mutex::new(ServiceState::Running),
                changed: Condvar::new(),
                paused: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                hooks,
            },
            queue_timeout: config.queue_timeout,
        });
        runtime.start();
        let mut server = Server {
            runtime,
            receivers: Vec::new(),
            workers: Vec::new(),
            timer: None,
            signals: None,
            finished: false,
        };
        // On a failure from here on, dropping `server` stops it: Control(STOP) follows START.
        server.spawn_threads(&config, handler)?;
        for socket in &server.runtime.sockets {
            match &socket.device {
                Some(device) => info!(interface = %device, addr = %socket.local, "serving"),
                None => info!(addr = %socket.local, "serving"),
            }
        }
        Ok(server)
    }

    fn spawn_threads<H: PacketHandler + ?Sized>(
        &mut self,
        config: &ServerConfig,
        handler: Arc<H>,
    ) -> Result<(), ServerError> {
        let spawn = |name: String, what: &'static str, body: Box<dyn FnOnce() + Send>| {
            thread::Builder::new()
                .name(name)
                .spawn(body)
                .map_err(|source| ServerError::Thread { what, source })
        };
        let runtime = Arc::clone(&self.runtime);
        self.timer = Some(spawn(
            "calloutd-timer".into(),
            "timer",
            Box::new(move || {
                runtime
                    .delayed
                    .run(|pending| runtime.send(pending.socket, pending.ifindex, &pending.reply))
            }),
        )?);
        let workers = if config.workers == 0 {
            default_workers()
        } else {
            config.workers
        };
        for n in 0..workers {
            let runtime = Arc::clone(&self.runtime);
            let handler = Arc::clone(&handler);
            self.workers.push(spawn(
                format!("calloutd-worker-{n}"),
                "worker",
                Box::new(move || runtime.work(&*handler)),
            )?);
        }
        for index in 0..self.runtime.sockets.len() {
            let runtime = Arc::clone(&self.runtime);
            let handler = Arc::clone(&handler);
            self.receivers.push(spawn(
                format!("calloutd-recv-{index}"),
                "receiver",
                Box::new(move || runtime.receive(&*handler, index)),
            )?);
        }
        if config.handle_signals {
            self.signals = Some(spawn_signals(
                Arc::clone(&self.runtime),
                config.summary.clone(),
            )?);
        }
        Ok(())
    }

    /// A handle for pause/resume/stop/counters from other threads.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            runtime: Arc::clone(&self.runtime),
        }
    }

    /// The bound addresses (with the port the system chose where 0 was asked for), in the order
    /// `listen` then `interfaces`.
    pub fn local_addrs(&self) -> Vec<SocketAddrV4> {
        self.runtime.sockets.iter().map(|s| s.local).collect()
    }

    /// Blocks until a stop is asked for ([`ServerHandle::stop`] or a signal), then stops receiving,
    /// finishes every queued and in-progress datagram and every delayed reply, calls Control(STOP) and
    /// returns the final counters. The caller then flushes leases and exits.
    pub fn wait(mut self) -> CountersSnapshot {
        self.runtime.wait_for_stop_request();
        self.shutdown();
        self.runtime.snapshot()
    }

    fn shutdown(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.runtime.stop();
        let join = |handle: JoinHandle<()>| {
            if handle.join().is_err() {
                error!("a runtime thread panicked");
            }
        };
        self.receivers.drain(..).for_each(join);
        self.runtime.queue.close();
        self.workers.drain(..).for_each(join);
        self.runtime.delayed.close();
        if let Some(timer) = self.timer.take() {
            join(timer);
        }
        self.runtime.finish();
        if let Some(signals) = self.signals.take() {
            signals.done.notify_one();
            join(signals.thread);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts the server and blocks until it has stopped (see [`Server::start`] and [`Server::wait`]).
pub fn run<H: PacketHandler + ?Sized>(
    config: ServerConfig,
    handler: Arc<H>,
    hooks: Arc<dyn Hooks>,
) -> Result<CountersSnapshot, ServerError> {
    Ok(Server::start(config, handler, hooks)?.wait())
}

/// SIGINT and SIGTERM stop the server; SIGUSR1 logs the summary.
fn spawn_signals(
    runtime: Arc<Runtime>,
    summary: Option<SummaryFn>,
) -> Result<SignalThread, ServerError> {
    use tokio::signal::unix::{signal, SignalKind};

    let tokio_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Signals)?;
    // Installed here, not in the thread, so a failure is reported by `start`.
    let (mut interrupt, mut terminate, mut user1) = tokio_runtime
        .block_on(async {
            Ok::<_, io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::user_defined1())?,
            ))
        })
        .map_err(ServerError::Signals)?;
    let done = Arc::new(tokio::sync::Notify::new());
    let done_signal = Arc::clone(&done);
    let thread = thread::Builder::new()
        .name("calloutd-signals".into())
        .spawn(move || {
            tokio_runtime.block_on(async move {
                loop {
                    tokio::select! {
                        _ = done_signal.notified() => break,
                        Some(()) = interrupt.recv() => {
                            info!("SIGINT: stopping");
                            runtime.stop();
                        }
                        Some(()) = terminate.recv() => {
                            info!("SIGTERM: stopping");
                            runtime.stop();
                        }
                        Some(()) = user1.recv() => {
                            let snapshot = runtime.snapshot();
                            match &summary {
                                Some(log_summary) => log_summary(&snapshot),
                                None => info!("summary\n{snapshot}"),
                            }
                        }
                    }
                }
            })
        })
        .map_err(|source| ServerError::Thread {
            what: "signal",
            source,
        })?;
    Ok(SignalThread { thread, done })
}
