//! The calloutd runtime: UDP sockets (IP_PKTINFO, broadcast, SO_BINDTODEVICE), the bounded queue and
//! worker threads with the drops the runtime decides (NOMEM, DUPLICATE, TIMEOUT, PAUSED), the service
//! state (running, paused, stopping) with its Control hook calls, signals, and the runtime's counters.
//!
//! Not for: protocol logic (that is `calloutd-engine`, reached only through
//! [`calloutd_hooks::PacketHandler`]), or calling a DLL (the Control hook is reached only through
//! [`calloutd_hooks::Hooks`]). The runtime depends on the hook seam, never on the engine.
//!
//! The way of a datagram: worker threads receive themselves. Each socket has its share of the
//! workers; the one whose turn it is (`turn.rs`) waits in `recvmmsg`, reads what is queued (up to 32
//! datagrams in one call), runs each through the engine and sends the replies from the same socket:
//! no thread hand-off per datagram. The others wait for the turn: it passes on when a read fills a
//! whole batch (one worker no longer keeps up), and they read without it when the holder has been
//! handling datagrams for [`READ_TURN_PATIENCE`] (a slow hook must not stall the socket); otherwise
//! one worker serves the socket, which costs the fewest wake-ups. IP_PKTINFO gives the receiving
//! interface's address and the destination address; SO_TIMESTAMPNS gives the kernel's receive time,
//! so a datagram's wait counts from its arrival.
//!
//! Rounds: a worker that got datagrams goes on reading without waiting while its reads fill a whole
//! batch (more may be waiting), up to [`ROUND_LIMIT`] datagrams; that is one round. Its replies
//! wait in the worker until the round ends; then one commit makes the leases of all its ACKs durable
//! ([`calloutd_hooks::Outcome::uncommitted`], group commit), the engine finishes each held ACK
//! ([`calloutd_hooks::PacketHandler::finish`]: PktSend once committed, PktDrop with a reason when
//! not; docs/hooks.md section 3.2), and the replies leave together
//! (`sendmmsg`, one call per run of replies that need the same packet info). A worker that ends its
//! round while another worker commits leaves its replies to that one and goes on reading, so a slow
//! commit stalls one worker, not the socket. Only while a backlog is building (datagrams arrive about
//! as fast as the worker handles them, `pace.rs`) does a worker that ended a round linger
//! [`ServerConfig::coalesce`] before it reads again, so its next round handles everything that came
//! meanwhile: one wake-up, one read, one commit and one send for many datagrams, instead of one each.
//! Otherwise it waits in `recvmmsg` at once, so a lone datagram is committed and answered without
//! any wait.
//!
//! The queue: while a worker is waiting in `recvmmsg`, nothing queues. When every worker was busy,
//! datagrams wait in the socket's kernel buffer; the next worker to read one that waited there longer
//! than [`ServerConfig::coalesce`] plus [`BACKLOG_AGE`] reads the backlog into the bounded queue
//! ([`ServerConfig::queue_capacity`]), which workers empty before they receive again. (The kernel
//! turns receive timestamps on a moment after the first socket asks for them; a datagram in that
//! moment counts as not having waited.) A datagram that finds the queue full is dropped with
//! `NoMem`, and one that is a copy of a datagram in flight (same xid, chaddr and message type, or the
//! same bytes, that arrived before the earlier copy finished) with `Duplicate`; both still go through
//! the engine (NewPkt, PktDrop) on the reading worker, right after the read, so this drop path cannot
//! back up: one read stops after `queue_capacity` refusals, and whatever arrives meanwhile waits in
//! (or overflows) the kernel buffer, whose drops are counted (`kernel_drops`). A worker handles a
//! datagram with `Drop(Paused)` while the service is paused, `Drop(Timeout)` if it waited longer than
//! [`ServerConfig::queue_timeout`] since its arrival, else `Process`. A reply with a delay (a scope's
//! offer `Delay`) goes to the timer thread, which commits its lease change, if any, and finishes it
//! the same way when it is due; no worker sleeps for a reply.
//!
//! Control hooks, all under the service state lock: START after the sockets are bound and before any
//! thread that could handle a packet exists; PAUSE before the service starts dropping packets as
//! paused, CONTINUE after it stopped; STOP after receiving stopped, the queue is drained, every worker
//! has finished (its last round's ACKs sent) and every delayed reply is sent: the very last hook
//! call.
//!
//! [`IcmpProber`] implements the engine's conflict detection (`calloutd_hooks::Prober`) with ICMP
//! echo.
//!
//! Operations: [`ControlServer`] serves the control API (HTTP+JSON, see [`control`]) over a
//! [`ServerHandle`] and a [`ControlBackend`] that the caller implements over its engine;
//! [`control_client`] is its client. [`ServerConfig::periodic`] runs housekeeping (the expired-lease
//! purge) on a thread that ends before Control(STOP); [`ServerConfig::audit`] gets the service events
//! 00/02/01.
//!
//! ```no_run
//! use std::sync::Arc;
//! use calloutd_hooks::{Admission, Datagram, NoHooks, Outcome, PacketHandler};
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

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod affinity;
mod backlog;
pub mod control;
pub mod control_client;
mod counters;
mod delayed;
mod duplicate;
mod pace;
mod prober;
mod socket;
mod turn;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddrV4;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use calloutd_hooks::{
    Admission, CommitTicket, Datagram, HeldReply, Hooks, PacketHandler, Reply, ServiceEvents,
};
use dhcpssdk::{ControlCode, DropReason};
use tracing::{error, info, warn};

pub use control::{
    ControlBackend, ControlConfig, ControlRouter, ControlServer, HookView, LeaseView,
    MisbehaviourView, ScopeView, StatsView,
};
pub use counters::{CountersSnapshot, MESSAGE_TYPE_SLOTS};
pub use prober::{IcmpProber, DEFAULT_PROBE_TIMEOUT};
pub use socket::parse_listen;

use backlog::{Backlog, Job, Pushed};
use counters::Counters;
use delayed::{DelayedReplies, Pending};
use duplicate::DuplicateKey;
use pace::Pace;
use socket::{Outgoing, ServerSocket};
use turn::{ReadTurn, Took};

/// The DHCP server port: the default for `--listen` and `--interface`.
pub const DHCP_SERVER_PORT: u16 = 67;
/// Default capacity of the queue of datagrams waiting for a worker.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// Default longest wait in the queue before a datagram is dropped with `DHCP_DROP_TIMEOUT`.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default [`ServerConfig::coalesce`]: at 8 000 exchanges/s (16 000 datagrams/s), when the worker
/// lingers (a backlog building), a round handles about sixteen datagrams, for at most a millisecond
/// more on each datagram's way.
pub const DEFAULT_COALESCE: Duration = Duration::from_millis(1);

/// How long the holder of a socket's read turn may handle datagrams before the other workers of the
/// socket read without the turn (see `turn.rs`): what a slow hook can delay others by.
pub const READ_TURN_PATIENCE: Duration = Duration::from_millis(5);

/// The most datagrams one round handles before its ACKs are committed and its replies sent, which
/// bounds how long a reply waits in its worker.
pub const ROUND_LIMIT: usize = 64;

/// A datagram that waited in the socket buffer longer than this (beyond [`ServerConfig::coalesce`])
/// shows that every worker was busy: the worker that reads it reads the backlog into the queue.
pub const BACKLOG_AGE: Duration = Duration::from_millis(1);

/// A function that logs the one-screen summary (SIGUSR1); it gets the runtime's counters and may add
/// the engine's own.
pub type SummaryFn = Arc<dyn Fn(&CountersSnapshot) + Send + Sync>;

/// Periodic housekeeping (the expired-lease purge): `run` is called every `interval` on a thread that
/// ends before Control(STOP).
#[derive(Clone)]
pub struct PeriodicTask {
    /// Time between runs (the first run is one interval after start).
    pub interval: Duration,
    /// What to run.
    pub run: Arc<dyn Fn() + Send + Sync>,
}

impl fmt::Debug for PeriodicTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeriodicTask")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

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
    /// Worker threads (`--workers`); 0 means one per CPU. They are shared out among the sockets, at
    /// least one each.
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
    /// The audit log, for the service events: header and 00 after Control(START), 01 after
    /// Control(STOP).
    pub audit: Option<Arc<dyn ServiceEvents>>,
    /// Periodic housekeeping, e.g. the expired-lease purge.
    pub periodic: Option<PeriodicTask>,
    /// While a backlog is building (pace.rs), how long a worker that emptied its socket waits before
    /// it reads again, so its next round handles (and commits) many at once; without a backlog, or
    /// with 0, a worker never waits, it blocks for the next datagram.
    pub coalesce: Duration,
    /// Pin worker *i* to the *i*-th CPU this process may run on (Linux; ignored elsewhere). For an
    /// isolated callout, whose host thread follows its caller's CPU: a hook call is then a switch
    /// between two threads on one CPU, not a wake-up of another (possibly idle) CPU.
    pub pin_workers: bool,
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
            audit: None,
            periodic: None,
            coalesce: DEFAULT_COALESCE,
            pin_workers: false,
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
            .field("audit", &self.audit.is_some())
            .field("periodic", &self.periodic)
            .field("coalesce", &self.coalesce)
            .field("pin_workers", &self.pin_workers)
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
    /// The control API could not start.
    #[error("control API on {addr}: {message}")]
    Control {
        /// The address asked for.
        addr: String,
        /// Why.
        message: String,
    },
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
    /// Mirrors `state >= Stopping` for the workers' receive loop.
    stopping: AtomicBool,
    hooks: Arc<dyn Hooks>,
    audit: Option<Arc<dyn ServiceEvents>>,
}

impl Service {
    fn lock(&self) -> MutexGuard<'_, ServiceState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everything the threads share that does not depend on the handler type.
struct Runtime {
    sockets: Vec<ServerSocket>,
    /// Per socket: the turn to wait for and read its datagrams.
    turns: Vec<ReadTurn>,
    /// The workers' round commits (see `Runtime::end_round`).
    commits: Mutex<RoundCommits>,
    backlog: Backlog,
    delayed: DelayedReplies,
    counters: Counters,
    service: Service,
    queue_timeout: Duration,
    coalesce: Duration,
}

impl Runtime {
    fn snapshot(&self) -> CountersSnapshot {
        self.counters.snapshot(
            self.backlog.depth(),
            self.backlog.in_progress(),
            self.kernel_drops(),
        )
    }

    /// Control(START), under the service state lock.
    fn start(&self) {
        let _state = self.service.lock();
        self.service.hooks.control(ControlCode::Start);
        if let Some(audit) = &self.service.audit {
            audit.started();
        }
    }

    fn pause(&self) -> Result<ServiceState, ServerError> {
        let mut state = self.service.lock();
        match *state {
            ServiceState::Running => {
                // The hook first: every PAUSED drop comes after Control(PAUSE).
                self.service.hooks.control(ControlCode::Pause);
                if let Some(audit) = &self.service.audit {
                    audit.paused();
                }
                self.service.paused.store(true, Ordering::SeqCst);
                *state = ServiceState::Paused;
                self.service.changed.notify_all();
                Ok(ServiceState::Paused)
            }
            ServiceState::Paused => Ok(ServiceState::Paused),
            other => Err(ServerError::State {
                action: "pause",
                state: other,
            }),
        }
    }

    fn resume(&self) -> Result<ServiceState, ServerError> {
        let mut state = self.service.lock();
        match *state {
            ServiceState::Paused => {
                // Admissions stop being PAUSED before Control(CONTINUE) is called.
                self.service.paused.store(false, Ordering::SeqCst);
                *state = ServiceState::Running;
                self.service.hooks.control(ControlCode::Continue);
                if let Some(audit) = &self.service.audit {
                    audit.continued();
                }
                self.service.changed.notify_all();
                Ok(ServiceState::Running)
            }
            ServiceState::Running => Ok(ServiceState::Running),
            other => Err(ServerError::State {
                action: "resume",
                state: other,
            }),
        }
    }

    /// Datagrams the kernel dropped on all sockets for want of buffer space.
    fn kernel_drops(&self) -> u64 {
        self.sockets.iter().map(ServerSocket::kernel_drops).sum()
    }

    /// Asks for a stop: receiving stops at once; [`Server::wait`] does the rest.
    fn stop(&self) -> ServiceState {
        let mut state = self.service.lock();
        if !matches!(*state, ServiceState::Running | ServiceState::Paused) {
            return *state;
        }
        *state = ServiceState::Stopping;
        self.service.stopping.store(true, Ordering::SeqCst);
        self.service.changed.notify_all();
        drop(state);
        for socket in &self.sockets {
            socket.shutdown_read();
        }
        ServiceState::Stopping
    }

    /// Runs `task` every interval until a stop is asked for.
    fn run_periodic(&self, task: &PeriodicTask) {
        let mut next = Instant::now() + task.interval;
        loop {
            let mut state = self.service.lock();
            loop {
                if !matches!(*state, ServiceState::Running | ServiceState::Paused) {
                    return;
                }
                let now = Instant::now();
                if now >= next {
                    break;
                }
                state = self
                    .service
                    .changed
                    .wait_timeout(state, next - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            drop(state);
            let run = &task.run;
            if catch_unwind(AssertUnwindSafe(|| run())).is_err() {
                error!("a periodic task panicked");
            }
            next = Instant::now() + task.interval;
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
            if let Some(audit) = &self.service.audit {
                audit.stopped();
            }
            *state = ServiceState::Stopped;
            self.service.changed.notify_all();
        }
    }

    /// The admission of a datagram a worker is about to process (duplicates are decided earlier).
    fn admission(&self, job: &Job) -> Admission {
        self.admission_after(job.arrived.elapsed())
    }

    /// The admission of a datagram that has waited `waited` since it arrived.
    fn admission_after(&self, waited: Duration) -> Admission {
        if self.service.paused.load(Ordering::Relaxed) {
            Admission::Drop(DropReason::Paused)
        } else if waited > self.queue_timeout {
            Admission::Drop(DropReason::Timeout)
        } else {
            Admission::Process
        }
    }

    /// Runs one datagram through the engine and holds its reply (and lease change) in `round`,
    /// which sends it at its end, or schedules it when it has a delay. A datagram that was
    /// claimed or queued (`in_flight`) stops being in flight when the engine is done with it, before
    /// the reply leaves, so a client's next datagram always arrives after that.
    fn process<H: PacketHandler + ?Sized>(
        &self,
        handler: &H,
        job: Job,
        admission: Admission,
        in_flight: bool,
        round: &mut Round,
    ) {
        self.counters.admitted(admission);
        let Job {
            datagram,
            socket,
            ifindex,
            key,
            ..
        } = job;
        let peer = datagram.peer;
        // An engine bug must not take a worker (and with it the server) down.
        let outcome = catch_unwind(AssertUnwindSafe(|| handler.handle(datagram, admission)));
        if in_flight {
            self.backlog.finish(key);
        }
        match outcome {
            Ok(outcome) => {
                self.counters.outcome(&outcome);
                let pending = Pending {
                    commit: outcome.uncommitted,
                    reply_type: outcome.reply_type,
                    reply: outcome.reply,
                    held: outcome.held,
                    socket,
                    ifindex,
                };
                let delay = pending
                    .reply
                    .as_ref()
                    .or(pending.held.as_ref().map(|held| &held.reply))
                    .map(|reply| reply.delay);
                match delay {
                    Some(delay) if !delay.is_zero() => self.delayed.schedule(pending, delay),
                    // Sent at the end of the round, together (and ACKs only once committed).
                    Some(_) => round.held.push(pending),
                    None if pending.commit.is_some() => round.held.push(pending),
                    None => {}
                }
            }
            Err(_) => {
                self.counters.handler_panic();
                error!(%peer, "the engine panicked while handling a datagram; it is lost");
            }
        }
    }

    /// Whether the lease changes up to `ticket` are durable (the store answers at once for a ticket
    /// an earlier commit covered). A failure is logged for the reply (or bare change) it concerns.
    fn committed<H: PacketHandler + ?Sized>(
        &self,
        handler: &H,
        ticket: CommitTicket,
        dest: Option<SocketAddrV4>,
    ) -> bool {
        match handler.commit(ticket) {
            Ok(()) => true,
            Err(error) => {
                match dest {
                    Some(dest) => {
                        self.counters.reply_withheld();
                        error!(%dest, "reply withheld, its lease is not committed: {error}");
                    }
                    None => error!("a lease change (release or decline) is not committed: {error}"),
                }
                false
            }
        }
    }

    /// Commits once for the highest ticket among `batch` (the store commits everything queued up
    /// to it), then, in order, ends each packet: a held reply goes through the engine's `finish`
    /// (PktSend once its change is durable; PktDrop with a reason when it is not), and the replies to
    /// send are returned (withheld ones are not).
    fn committed_replies<H: PacketHandler + ?Sized>(
        &self,
        handler: &H,
        batch: Vec<Pending>,
    ) -> Vec<(usize, i32, Reply)> {
        if let Some(highest) = batch.iter().filter_map(|p| p.commit).max() {
            // A failure shows again in the per-reply check below, for the replies it concerns.
            let _ = handler.commit(highest);
        }
        batch
            .into_iter()
            .filter_map(|pending| {
                let dest = pending
                    .reply
                    .as_ref()
                    .or(pending.held.as_ref().map(|held| &held.reply))
                    .map(|reply| reply.dest);
                let durable = pending
                    .commit
                    .is_none_or(|ticket| self.committed(handler, ticket, dest));
                let reply = match pending.held {
                    Some(held) => self.finish_held(handler, held, durable),
                    None => pending.reply.filter(|_| durable),
                };
                // Counted by type only now: a withheld reply counts as withheld, not as an ACK.
                if reply.is_some() {
                    self.counters.released(pending.reply_type);
                }
                reply.map(|reply| (pending.socket, pending.ifindex, reply))
            })
            .collect()
    }

    /// The engine's end of a held reply (its hooks run here), guarded like `handle`.
    fn finish_held<H: PacketHandler + ?Sized>(
        &self,
        handler: &H,
        held: HeldReply,
        durable: bool,
    ) -> Option<Reply> {
        let dest = held.reply.dest;
        match catch_unwind(AssertUnwindSafe(|| handler.finish(held, durable))) {
            Ok(reply) => reply,
            Err(_) => {
                self.counters.handler_panic();
                error!(%dest, "the engine panicked while finishing a reply; it is lost");
                None
            }
        }
    }

    /// What the timer thread does with the replies due at one moment.
    fn send_due<H: PacketHandler + ?Sized>(&self, handler: &H, due: Vec<Pending>) {
        for (socket, ifindex, reply) in self.committed_replies(handler, due) {
            let Some(server_socket) = self.sockets.get(socket) else {
                continue;
            };
            let result = server_socket.send(&reply.bytes, reply.dest, reply.source, ifindex);
            self.count_send(server_socket, &reply, result);
        }
    }

    /// Sends a worker's replies, with as few system calls as the sockets allow.
    fn send_all(&self, replies: &[(usize, i32, Reply)], buffers: &mut SendBuffers) {
        for (index, server_socket) in self.sockets.iter().enumerate() {
            let (mine, outgoing): (Vec<&Reply>, Vec<Outgoing<'_>>) = replies
                .iter()
                .filter(|(socket, ..)| *socket == index)
                .map(|(_, ifindex, reply)| {
                    let outgoing = Outgoing {
                        bytes: &reply.bytes,
                        dest: reply.dest,
                        source: reply.source,
                        ifindex: *ifindex,
                    };
                    (reply, outgoing)
                })
                .unzip();
            if mine.is_empty() {
                continue;
            }
            server_socket.send_batch(&mut buffers.headers, &outgoing, &mut buffers.results);
            for (reply, result) in mine.into_iter().zip(buffers.results.drain(..)) {
                self.count_send(server_socket, reply, result);
            }
        }
    }

    fn count_send(&self, server_socket: &ServerSocket, reply: &Reply, result: io::Result<()>) {
        match result {
            Ok(()) => self.counters.sent(),
            Err(err) => {
                self.counters.send_error();
                warn!(dest = %reply.dest, source = %reply.source, socket = %server_socket.local, "sending a reply failed: {err}");
            }
        }
    }

    /// A worker thread on socket `index`, round after round (see the crate doc): takes queued
    /// datagrams first, then those its last receive read, else receives itself; until stop, and
    /// then until the queue and its inbox are empty.
    fn serve<H: PacketHandler + ?Sized>(&self, handler: &H, index: usize) {
        let Some(socket) = self.sockets.get(index) else {
            return;
        };
        let Some(turn) = self.turns.get(index) else {
            return;
        };
        let mut inbox = Inbox::default();
        let mut round = Round::default();
        let mut reader = Reader::default();
        loop {
            if round.handled >= ROUND_LIMIT {
                self.end_round(handler, &mut round);
            }
            if let Some(job) = self.backlog.pop() {
                let admission = self.admission(&job);
                self.process(handler, job, admission, true, &mut round);
                round.handled += 1;
                continue;
            }
            let Some(job) = inbox.jobs.pop_front() else {
                if self.service.stopping.load(Ordering::Relaxed) {
                    break;
                }
                // A full batch means more may be waiting: the round goes on. Otherwise the socket
                // was empty at the last read, and what came since waits for the next round.
                let more =
                    round.open && inbox.full && self.receive(socket, index, &mut inbox, false);
                if !more {
                    self.end_round(handler, &mut round);
                    round.after_linger = self.read_next(
                        socket,
                        index,
                        turn,
                        &mut inbox,
                        &mut reader,
                        &mut round.pace,
                    );
                }
                continue;
            };
            round.pace.arrived(job.arrived);
            round.open = true;
            round.handled += 1;
            let mut waited = job.arrived.elapsed();
            // Waiting up to `coalesce` is the workers' choice, not a backlog.
            if waited > self.coalesce + BACKLOG_AGE {
                self.read_backlog(handler, socket, index, &mut inbox, &mut round);
                waited = job.arrived.elapsed();
            }
            if self.backlog.claim(job.key, job.arrived, index) {
                let admission = self.admission_after(waited);
                self.process(handler, job, admission, true, &mut round);
            } else {
                let duplicate = Admission::Drop(DropReason::Duplicate);
                self.process(handler, job, duplicate, false, &mut round);
            }
        }
        if reader.my_turn {
            turn.pass();
        }
        self.end_round(handler, &mut round);
    }

    /// Reads the next datagrams into `inbox` after a round: with the turn, first lingering
    /// `coalesce` while a backlog is building (`pace`, see pace.rs), then waiting; or, when the
    /// holder has been busy for long, what waits, without waiting. `true` when it lingered.
    fn read_next(
        &self,
        socket: &ServerSocket,
        index: usize,
        turn: &ReadTurn,
        inbox: &mut Inbox,
        reader: &mut Reader,
        pace: &mut Pace,
    ) -> bool {
        if !reader.my_turn {
            reader.my_turn = turn.take(READ_TURN_PATIENCE) == Took::Turn;
        }
        if !reader.my_turn {
            self.receive(socket, index, inbox, false);
            return false;
        }
        turn.waiting();
        let linger = !self.coalesce.is_zero() && pace.linger();
        if linger {
            thread::sleep(self.coalesce);
        }
        if !self.receive(socket, index, inbox, true) {
            return linger;
        }
        if inbox.full {
            // More than one worker reads: let the next one wait for the rest.
            turn.pass();
            reader.my_turn = false;
        } else {
            turn.handling();
        }
        linger
    }

    /// Ends a worker's round: one commit for the ACKs it holds, then its replies leave.
    /// While another worker commits, the round's replies are left to it (parked) and this worker
    /// goes on reading: a slow commit (an SQLite checkpoint writing back the database) then stalls
    /// one worker, not all of them. The committing worker commits and sends parked replies until
    /// none are left.
    fn end_round<H: PacketHandler + ?Sized>(&self, handler: &H, round: &mut Round) {
        let handled = std::mem::take(&mut round.handled);
        let after_linger = std::mem::take(&mut round.after_linger);
        self.commit_round(handler, round);
        round
            .pace
            .round_done(pace::thread_cpu(), handled, after_linger);
    }

    /// The commit and send of [`Runtime::end_round`].
    fn commit_round<H: PacketHandler + ?Sized>(&self, handler: &H, round: &mut Round) {
        round.open = false;
        if round.held.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut round.held);
        {
            let mut commits = self.commits.lock().unwrap_or_else(PoisonError::into_inner);
            if commits.running {
                commits.parked.append(&mut batch);
                return;
            }
            commits.running = true;
        }
        loop {
            let replies = self.committed_replies(handler, batch);
            self.send_all(&replies, &mut round.send);
            let mut commits = self.commits.lock().unwrap_or_else(PoisonError::into_inner);
            if commits.parked.is_empty() {
                commits.running = false;
                return;
            }
            batch = std::mem::take(&mut commits.parked);
        }
    }

    /// Reads up to a batch of datagrams from `socket` into `inbox.jobs`, waiting for the first or
    /// not. `false` when nothing came, on an error (logged), and once stopping.
    fn receive(&self, socket: &ServerSocket, index: usize, inbox: &mut Inbox, wait: bool) -> bool {
        if let Err(err) = socket.recv_batch(&mut inbox.buffers, wait, &mut inbox.received) {
            inbox.full = false;
            match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    self.backlog.emptied(index, Instant::now());
                }
                io::ErrorKind::Interrupted => {}
                _ => {
                    warn!(socket = %socket.local, "receiving failed: {err}");
                    if wait {
                        // Do not spin on a persistent error.
                        thread::sleep(Duration::from_millis(100));
                    }
                }
            }
            return false;
        }
        // The wake-up from stop's shutdown, or datagrams that raced it: stop means stop receiving.
        if self.service.stopping.load(Ordering::Relaxed) || inbox.received.is_empty() {
            return false;
        }
        let now = Instant::now();
        let wall_now = SystemTime::now();
        inbox.full = inbox.received.len() >= socket::RECV_BATCH;
        if !inbox.full {
            // The read took everything there was.
            self.backlog.emptied(index, now);
        }
        for (slot, received) in inbox.received.iter().enumerate() {
            if let Some(dropped) = received.kernel_drops {
                socket.note_kernel_drops(dropped);
            }
            let Some(bytes) = inbox.buffers.datagram(slot, received.len) else {
                continue;
            };
            self.counters.received();
            let waited = received
                .arrived
                .and_then(|arrived| wall_now.duration_since(arrived).ok())
                .unwrap_or_default();
            inbox.jobs.push_back(Job {
                key: DuplicateKey::of(bytes),
                datagram: Datagram {
                    bytes: bytes.to_vec(),
                    if_addr: received.if_addr,
                    dst_addr: received.dst_addr,
                    peer: received.peer,
                },
                socket: index,
                ifindex: received.ifindex,
                arrived: now.checked_sub(waited).unwrap_or(now),
            });
        }
        true
    }

    /// Moves what this worker has read and what waits in `socket` into the queue; what is refused
    /// (duplicates, no room) goes through the engine with its drop reason right here. Stops when
    /// the socket is empty or after as many refusals as the queue holds, so one read is bounded work.
    fn read_backlog<H: PacketHandler + ?Sized>(
        &self,
        handler: &H,
        socket: &ServerSocket,
        index: usize,
        inbox: &mut Inbox,
        round: &mut Round,
    ) {
        let mut refused = Vec::new();
        // Until the socket is empty, or as many refused as the queue holds: bounded work per read.
        loop {
            while let Some(job) = inbox.jobs.pop_front() {
                match self.backlog.push(job) {
                    Pushed::Queued => {}
                    Pushed::Duplicate(job) => refused.push((job, DropReason::Duplicate)),
                    Pushed::Full(job) => refused.push((job, DropReason::NoMem)),
                }
            }
            if refused.len() >= self.backlog.capacity()
                || !self.receive(socket, index, inbox, false)
            {
                break;
            }
        }
        for (job, reason) in refused {
            self.process(handler, *job, Admission::Drop(reason), false, round);
        }
    }
}

/// Whether a worker is committing rounds, and the rounds' replies left to it meanwhile.
#[derive(Default)]
struct RoundCommits {
    running: bool,
    parked: Vec<Pending>,
}

/// A worker's send headers and the results of its last send.
#[derive(Default)]
struct SendBuffers {
    headers: socket::SendBuffers,
    results: Vec<io::Result<()>>,
}

/// A worker's receive side: its buffers, and the datagrams its last receive read that it has not
/// taken yet.
#[derive(Default)]
struct Inbox {
    buffers: socket::RecvBuffers,
    received: Vec<socket::Received>,
    jobs: VecDeque<Job>,
    /// The last receive filled its batch, so more may be waiting in the socket.
    full: bool,
}

/// A worker's part in reading its socket.
#[derive(Default)]
struct Reader {
    /// It holds the socket's read turn.
    my_turn: bool,
}

/// What a worker holds during a round (see the crate doc).
#[derive(Default)]
struct Round {
    /// Replies (and bare lease changes) that leave at the end of the round, ACKs once the round's
    /// commit made them durable.
    held: Vec<Pending>,
    send: SendBuffers,
    /// Datagrams handled in this round.
    handled: usize,
    /// A datagram was received in this round, so the worker reads on without waiting.
    open: bool,
    /// The worker lingered before the round's first read.
    after_linger: bool,
    /// Whether to linger after the round (see pace.rs).
    pace: Pace,
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
    /// (after NewPkt and HandleOptions, by the engine). Pausing a paused service does nothing. `Ok`
    /// is the state the call left: Paused.
    pub fn pause(&self) -> Result<ServiceState, ServerError> {
        self.runtime.pause()
    }

    /// Continues a paused service: datagrams are processed again, then Control(CONTINUE). Resuming a
    /// running service does nothing. `Ok` is the state the call left: Running.
    pub fn resume(&self) -> Result<ServiceState, ServerError> {
        self.runtime.resume()
    }

    /// Asks the server to stop; [`Server::wait`] returns once everything finished and Control(STOP)
    /// was called. Returns at once with the state it left (Stopping, or Stopped/Stopping when a stop
    /// came earlier); calling it again does nothing.
    pub fn stop(&self) -> ServiceState {
        self.runtime.stop()
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
    workers: Vec<JoinHandle<()>>,
    timer: Option<JoinHandle<()>>,
    signals: Option<SignalThread>,
    periodic: Option<JoinHandle<()>>,
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
    /// Binds every socket, calls Control(START), then starts the timer, the workers and (if asked)
    /// the signal thread. A datagram is handled only after Control(START) returned.
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
        let backlog = Backlog::new(
            config.queue_capacity.max(1),
            config.queue_timeout,
            sockets.len(),
        );
        let turns = sockets.iter().map(|_| ReadTurn::default()).collect();
        let runtime = Arc::new(Runtime {
            sockets,
            turns,
            commits: Mutex::default(),
            backlog,
            delayed: DelayedReplies::default(),
            counters: Counters::default(),
            service: Service {
                state: Mutex::new(ServiceState::Running),
                changed: Condvar::new(),
                paused: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                hooks,
                audit: config.audit.clone(),
            },
            queue_timeout: config.queue_timeout,
            coalesce: config.coalesce,
        });
        runtime.start();
        let mut server = Server {
            runtime,
            workers: Vec::new(),
            timer: None,
            signals: None,
            periodic: None,
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
        let timer_handler = Arc::clone(&handler);
        self.timer = Some(spawn(
            "calloutd-timer".into(),
            "timer",
            Box::new(move || {
                runtime
                    .delayed
                    .run(|due| runtime.send_due(&*timer_handler, due))
            }),
        )?);
        let workers = if config.workers == 0 {
            default_workers()
        } else {
            config.workers
        };
        let sockets = self.runtime.sockets.len();
        let cpus = if config.pin_workers {
            affinity::allowed_cpus()
        } else {
            Vec::new()
        };
        let mut started = 0;
        for index in 0..sockets {
            // An even share of the workers, at least one per socket.
            let share = (workers / sockets + usize::from(index < workers % sockets)).max(1);
            for n in 0..share {
                let runtime = Arc::clone(&self.runtime);
                let handler = Arc::clone(&handler);
                let cpu = (!cpus.is_empty()).then(|| cpus[started % cpus.len()]);
                started += 1;
                self.workers.push(spawn(
                    format!("calloutd-w{index}.{n}"),
                    "worker",
                    Box::new(move || {
                        if let Some(cpu) = cpu {
                            affinity::pin_current_thread(cpu);
                        }
                        runtime.serve(&*handler, index)
                    }),
                )?);
            }
        }
        if let Some(task) = config.periodic.clone() {
            let runtime = Arc::clone(&self.runtime);
            self.periodic = Some(spawn(
                "calloutd-periodic".into(),
                "periodic",
                Box::new(move || runtime.run_periodic(&task)),
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
        self.workers.drain(..).for_each(join);
        // The periodic thread wakes on the state change stop made and ends before Control(STOP).
        if let Some(periodic) = self.periodic.take() {
            join(periodic);
        }
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
#[cfg(unix)]
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

/// Windows: Ctrl-C, Ctrl-Break, closing the console and system shutdown stop the server (Control(STOP),
/// then the caller flushes leases). There is no SIGUSR1: `calloutd ctl stats` gives the summary.
#[cfg(windows)]
fn spawn_signals(
    runtime: Arc<Runtime>,
    _summary: Option<SummaryFn>,
) -> Result<SignalThread, ServerError> {
    use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close, ctrl_shutdown};

    let tokio_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Signals)?;
    // Installed here, not in the thread, so a failure is reported by `start`.
    let (mut interrupt, mut brk, mut close, mut shutdown) = tokio_runtime
        .block_on(async {
            Ok::<_, io::Error>((ctrl_c()?, ctrl_break()?, ctrl_close()?, ctrl_shutdown()?))
        })
        .map_err(ServerError::Signals)?;
    let done = Arc::new(tokio::sync::Notify::new());
    let done_signal = Arc::clone(&done);
    let stopped = Arc::clone(&runtime);
    let thread = thread::Builder::new()
        .name("calloutd-signals".into())
        .spawn(move || {
            tokio_runtime.block_on(async move {
                let what = tokio::select! {
                    _ = done_signal.notified() => return,
                    Some(()) = interrupt.recv() => "Ctrl-C",
                    Some(()) = brk.recv() => "Ctrl-Break",
                    Some(()) = close.recv() => "console closed",
                    Some(()) = shutdown.recv() => "system shutdown",
                };
                // Windows ends the process once a close or shutdown handler returns; tokio's never
                // does for those, so the server finishes (STOP, leases flushed) and exits first,
                // within the 5 s Windows allows a console close.
                info!("{what}: stopping");
                stopped.stop();
            })
        })
        .map_err(|source| ServerError::Thread {
            what: "signal",
            source,
        })?;
    Ok(SignalThread { thread, done })
}

#[cfg(test)]
mod tests {
    use super::*;
    use calloutd_engine::{AuditLog, AuditOptions};
    use calloutd_hooks::{NoHooks, Outcome};
    use std::sync::atomic::AtomicUsize;

    /// A handler that answers nothing (the unit tests of the runtime and the control API).
    pub(crate) struct Silent;
    impl PacketHandler for Silent {
        fn handle(&self, _: Datagram, _: Admission) -> Outcome {
            Outcome::default()
        }
    }

    #[test]
    fn periodic_task_runs_until_stop_and_audit_gets_service_events() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Arc::new(AuditLog::open(dir.path(), AuditOptions::default()).unwrap());
        let runs = Arc::new(AtomicUsize::new(0));
        let config = ServerConfig {
            listen: vec![parse_listen("127.0.0.1:0").unwrap()],
            workers: 1,
            audit: Some(audit.clone()),
            periodic: Some(PeriodicTask {
                interval: Duration::from_millis(5),
                run: Arc::new({
                    let runs = runs.clone();
                    move || {
                        runs.fetch_add(1, Ordering::SeqCst);
                    }
                }),
            }),
            ..ServerConfig::default()
        };
        let server = Server::start(config, Arc::new(Silent), Arc::new(NoHooks)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 2 {
            assert!(
                Instant::now() < deadline,
                "the periodic task never ran twice"
            );
            thread::sleep(Duration::from_millis(5));
        }
        server.handle().pause().unwrap();
        server.handle().stop();
        server.wait();
        // The periodic thread was joined: no run after wait returned.
        let after_stop = runs.load(Ordering::SeqCst);
        thread::sleep(Duration::from_millis(30));
        assert_eq!(runs.load(Ordering::SeqCst), after_stop);

        audit.flush();
        let text = std::fs::read_to_string(audit.file_for(SystemTime::now())).unwrap();
        let ids: Vec<u8> = calloutd_engine::parse_audit_log(&text)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        // An administrator's pause writes no 02 (that is low disk space).
        assert_eq!(ids, vec![0, 1]);
    }
}
