//! The server side of `--isolate`: starts the callout host, posts hook calls into its slots,
//! notices crashes and hangs, reports them (events 1031/1032), and applies the crash policy.

use super::bells::{Bells, MAX_SLOTS};
use super::pe::{first_pe, windows_host};
use super::shm::{
    futex_wait, futex_wake, host_state, state, status, Region, Spinner, NOT_PINNED, SLOT_DATA,
};
use super::wire::{encode_locks, exception_name, hook_id, signal_name};
use super::HostConfig;
use super::{CrashPolicy, IsolateOptions};
use crate::load::{ordered, resolve};
use crate::trace::{thread_id, trace_epoch, HookStats, TraceRecord};
use crate::{
    AttemptOutcome, CalloutConfig, HeldLocks, HookFault, HookName, LoadAttempt, LoadOrder,
    LoadReport, LoadStatus, Misbehaviour, MisbehaviourKind, MisbehaviourLog,
};
use dhcpssdk::{ClientType, ControlCode, DropReason, GiveCode, ProbCode, DHCP_SEND_PACKET};
use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Calls without the lease lock wait for a restarting host until the failure plus the hook
/// timeout, or plus this when the hook timeout is shorter (a restart takes a process start and a
/// DLL load: hundreds of milliseconds on a busy machine).
const RESTART_WAIT_MIN: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a host process ended.
#[derive(Debug, Clone)]
struct Exit {
    cause: String,
}

/// One running callout host.
struct Host {
    generation: u64,
    region: Arc<Region>,
    child: Mutex<Child>,
    pid: u32,
    dead: Arc<AtomicBool>,
    exit: Arc<Mutex<Option<Exit>>>,
    watcher: Mutex<Option<JoinHandle<()>>>,
    slot_locks: Vec<Mutex<()>>,
    hooks: [bool; 8],
    /// Why the server killed it (a hang), for the calls that were running in it.
    killed_for: Mutex<Option<String>>,
    /// The DLL path, for reports.
    dll: PathBuf,
    /// The pipe doorbells of a host that cannot use the futex (a PE host under wine).
    bells: Option<Bells>,
}

impl Drop for Host {
    fn drop(&mut self) {
        let mut child = lock(&self.child);
        let _ = child.kill();
        if let Some(w) = lock(&self.watcher).take() {
            let _ = w.join();
        }
        let _ = child.wait();
    }
}

impl Host {
    fn has(&self, hook: HookName) -> bool {
        self.hooks[hook.index()]
    }

    fn kill(&self, why: String) {
        lock(&self.killed_for).get_or_insert(why);
        let _ = lock(&self.child).kill();
    }

    fn exit_cause(&self) -> String {
        lock(&self.exit)
            .as_ref()
            .map_or_else(|| "died".to_string(), |e| e.cause.clone())
    }
}

/// Waits (without reaping) for the host to end, then marks every posted call dead and wakes the
/// server threads waiting for them.
fn watch(pid: u32, region: Arc<Region>, dead: Arc<AtomicBool>, exit: Arc<Mutex<Option<Exit>>>) {
    // SAFETY: siginfo_t is plain data, filled by waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waiting on our own child with a writable siginfo; WNOWAIT leaves it a zombie, so
        // its pid stays ours until `Host::drop` reaps it (a kill can never hit another process).
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    // SAFETY: waitid filled `info` for a child that exited (si_status is valid for CLD_* codes).
    let (code, value) = unsafe { (info.si_code, info.si_status()) };
    // A Windows host (under wine) records an unhandled exception's code before it ends; its exit
    // status is only the code's low byte.
    let exception = region.header().fault_signal.load(Ordering::SeqCst);
    let cause = match code {
        libc::CLD_EXITED if exception >= 0x8000_0000 => exception_name(exception),
        libc::CLD_EXITED => format!("exit {value}"),
        _ => signal_name(value),
    };
    *lock(&exit) = Some(Exit { cause });
    dead.store(true, Ordering::SeqCst);
    let header = region.header();
    header.host_state.store(host_state::DEAD, Ordering::SeqCst);
    futex_wake(&header.host_state);
    for i in 0..region.slots() {
        if let Some(slot) = region.slot(i) {
            for from in [state::REQUEST, state::RUNNING] {
                let _ = slot.state.compare_exchange(
                    from,
                    state::DEAD,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
            futex_wake(&slot.state);
        }
    }
}

/// Why a host could not be started.
enum StartError {
    /// The host died or hung while loading candidate `index` (event 1032).
    Exception {
        index: usize,
        cause: String,
        partial: Option<Box<LoadReport>>,
    },
    /// The host could not be run at all.
    Spawn(String),
}

/// A host that finished loading: the report, and the host when a DLL loaded.
struct Started {
    report: LoadReport,
    host: Option<Arc<Host>>,
}

/// One hook call as posted.
struct Call<'a> {
    hook: HookName,
    code: Option<u32>,
    ip: Option<Ipv4Addr>,
    alt: Option<Ipv4Addr>,
    client_type: u32,
    lease: u32,
    ctx: usize,
    scope: Option<Ipv4Addr>,
    locks: HeldLocks,
    packet: &'a [u8],
    /// For the trace and the reports.
    xid: Option<u32>,
}

impl<'a> Call<'a> {
    /// A call of `hook` on `packet` with every optional argument absent (0 or `None`); each hook
    /// method sets the ones it has.
    fn on(hook: HookName, packet: &'a [u8], ctx: usize, locks: HeldLocks) -> Call<'a> {
        Call {
            hook,
            code: None,
            ip: None,
            alt: None,
            client_type: 0,
            lease: 0,
            ctx,
            scope: None,
            locks,
            packet,
            xid: xid_of(packet),
        }
    }
}

/// What came back from a call that completed.
#[derive(Debug)]
struct Reply {
    called: bool,
    ret: u32,
    dur_us: u64,
    process_it: bool,
    out_ctx: usize,
    fault: Option<String>,
    misbehaviour: Vec<Misbehaviour>,
}

/// Why a call did not complete.
enum Failure {
    /// The host died (signal or exit) during the call.
    Died { cause: String, culprit: bool },
    /// The call did not return within the hook timeout; the host was killed.
    Hung,
    /// The host broke the protocol (a bad state or length): killed.
    Protocol(String),
}

/// The host a hook call goes to, as [`Shared::current_host`] finds it.
enum Current {
    Up(Arc<Host>),
    /// The callout is off (disabled, stopped or stopping).
    Off,
    /// A new host is being started and the call could not wait for it.
    Restarting,
}

/// The state of the callout as a whole.
enum Phase {
    Up(Arc<Host>),
    /// A new host is being started. Calls without the lease lock wait for it until `wait_until`
    /// (the failure plus the hook timeout, at least [`RESTART_WAIT_MIN`]), all of them together,
    /// not each for as long.
    Restarting {
        wait_until: Instant,
    },
    Off,
}

/// One packet between NewPkt and its last PktDrop: which host saw it, the DLL's context.
#[derive(Clone, Copy)]
struct PacketEntry {
    generation: u64,
    ctx: usize,
    faulted: bool,
}

#[derive(Default)]
struct Packets {
    entries: Vec<Option<PacketEntry>>,
    free: Vec<usize>,
}

/// Counters of the isolated callout (for `ctl stats` and `/metrics`).
#[derive(Debug, Default)]
struct Counters {
    crashes: AtomicU64,
    hangs: AtomicU64,
    restarts: AtomicU64,
    load_exceptions: AtomicU64,
    not_delivered: AtomicU64,
    disabled: AtomicBool,
}

struct Shared {
    options: IsolateOptions,
    config: CalloutConfig,
    candidates: Vec<String>,
    /// The candidate index the running host loaded (restarts start there).
    loaded_index: AtomicUsize,
    phase: Mutex<Phase>,
    phase_changed: Condvar,
    crash_times: Mutex<VecDeque<Instant>>,
    generation: AtomicU64,
    counters: Counters,
    stats: Arc<HookStats>,
    misbehaviour: Arc<MisbehaviourLog>,
    packets: Mutex<Packets>,
    stopping: AtomicBool,
    entry: String,
    path: PathBuf,
    hooks_set: Vec<HookName>,
}

/// The callout run in a child process (`--isolate`): the same hook methods as
/// [`Callout`](crate::Callout), and a crash or a hang in any hook is survived.
pub struct IsolatedCallout {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for IsolatedCallout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsolatedCallout")
            .field("entry", &self.shared.entry)
            .finish_non_exhaustive()
    }
}

/// The result of [`IsolatedCallout::load`]: what happened, and the callout when a DLL loaded.
#[derive(Debug)]
pub struct IsolatedLoad {
    /// Every attempt, as [`load_callout`](crate::load_callout) reports it (plus event 1032).
    pub report: LoadReport,
    /// The isolated callout, ready for hook calls.
    pub callout: Option<IsolatedCallout>,
}

fn log_attempt(attempt: &LoadAttempt) {
    match attempt.outcome {
        AttemptOutcome::Loaded => tracing::info!("{attempt}"),
        AttemptOutcome::Exception { .. } => tracing::error!("{attempt} (DLL not loaded)"),
        _ => tracing::warn!("{attempt}"),
    }
}

/// What a call was about, for the log: the packet (xid, chaddr), the lease, or the control code.
fn described(call: &Call<'_>) -> String {
    match (call.hook, call.xid) {
        (HookName::DeleteClient, _) => format!(
            "for the lease of {} (hw {})",
            call.ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            call.packet
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join("-")
        ),
        (HookName::Control, _) => format!(
            "in Control({})",
            call.code
                .and_then(ControlCode::from_code)
                .map_or("?", |c| c.constant_name())
        ),
        (_, Some(xid)) => format!(
            "on the packet xid 0x{xid:08x} chaddr {}",
            chaddr_of(call.packet)
        ),
        (_, None) => "on a packet too short for an xid".to_string(),
    }
}

/// The chaddr of a packet (bytes 28.., `hlen` of them, at most 16) as dashed hex.
fn chaddr_of(packet: &[u8]) -> String {
    let hlen = packet.get(2).map_or(0, |h| usize::from(*h).min(16));
    packet
        .get(28..28 + hlen)
        .unwrap_or(&[])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join("-")
}

/// Bytes as `aa:bb:...`.
fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn xid_of(packet: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = packet.get(4..8)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

impl IsolatedCallout {
    /// Loads the callout in a child host as [`load_callout`](crate::load_callout) does in-process
    /// (same order, ChainDlls, version 0, fallback). A host that dies while loading a candidate
    /// is event 1032 and the next candidate is tried in a new host.
    pub fn load(config: &CalloutConfig, options: IsolateOptions) -> IsolatedLoad {
        let candidates = ordered(&config.dlls, config.order);
        if config.enabled.unwrap_or(0) == 0 || candidates.is_empty() {
            // Nothing is loaded: the in-process loader says why without touching a DLL.
            let result = crate::load_callout(config);
            return IsolatedLoad {
                report: result.report,
                callout: None,
            };
        }
        let mut report = LoadReport {
            status: LoadStatus::AllFailed,
            enabled: config.enabled,
            order: config.order,
            candidates: candidates.clone(),
            attempts: Vec::new(),
            loaded: None,
        };
        let mut options = options;
        if options.pe_host.is_none() {
            if let Some(pe) = first_pe(&candidates, config) {
                match windows_host(&pe, &options.host_program) {
                    Ok(host) => {
                        tracing::info!(
                            "{} is a Windows DLL: hosted by {} under {}",
                            pe.display(),
                            host.program.display(),
                            host.launcher
                                .first()
                                .map_or_else(String::new, |l| l.to_string_lossy().into_owned())
                        );
                        options.pe_host = Some(host);
                    }
                    Err(error) => {
                        tracing::error!("{error}");
                        report.attempts.push(LoadAttempt {
                            entry: candidates[0].clone(),
                            path: resolve(&candidates[0], config.base_dir.as_deref()),
                            chain_dlls: Vec::new(),
                            permission_warnings: Vec::new(),
                            outcome: AttemptOutcome::LoadFailed { error },
                        });
                        tracing::warn!("{}", report.summary());
                        return IsolatedLoad {
                            report,
                            callout: None,
                        };
                    }
                }
            }
        }
        let mut start = 0;
        while start < candidates.len() {
            match start_host(&options, config, &candidates, start, 1) {
                Ok(started) => {
                    for a in &started.report.attempts {
                        log_attempt(a);
                    }
                    report.attempts.extend(started.report.attempts);
                    report.loaded = started.report.loaded;
                    report.status = started.report.status;
                    if report.status == LoadStatus::Loaded {
                        tracing::info!("{} (isolated)", report.summary());
                    } else {
                        tracing::warn!("{}", report.summary());
                    }
                    let callout = started.host.map(|host| {
                        let loaded_index = report.attempts.len() - 1;
                        IsolatedCallout::new(
                            config,
                            options,
                            candidates.clone(),
                            loaded_index,
                            host,
                            &report,
                        )
                    });
                    return IsolatedLoad { report, callout };
                }
                Err(StartError::Exception {
                    index,
                    cause,
                    partial,
                }) => {
                    if let Some(partial) = partial {
                        for a in &partial.attempts {
                            log_attempt(a);
                        }
                        report.attempts.extend(partial.attempts);
                    }
                    let entry = candidates[index].clone();
                    let attempt = LoadAttempt {
                        path: resolve(&entry, config.base_dir.as_deref()),
                        entry,
                        chain_dlls: candidates[index + 1..].to_vec(),
                        permission_warnings: Vec::new(),
                        outcome: AttemptOutcome::Exception { cause },
                    };
                    log_attempt(&attempt);
                    report.attempts.push(attempt);
                    start = index + 1;
                }
                Err(StartError::Spawn(e)) => {
                    tracing::error!("cannot start the callout host: {e}");
                    report.attempts.push(LoadAttempt {
                        entry: candidates[start].clone(),
                        path: resolve(&candidates[start], config.base_dir.as_deref()),
                        chain_dlls: Vec::new(),
                        permission_warnings: Vec::new(),
                        outcome: AttemptOutcome::LoadFailed {
                            error: format!("cannot start the callout host: {e}"),
                        },
                    });
                    break;
                }
            }
        }
        tracing::warn!("{}", report.summary());
        IsolatedLoad {
            report,
            callout: None,
        }
    }

    fn new(
        config: &CalloutConfig,
        options: IsolateOptions,
        candidates: Vec<String>,
        loaded_index: usize,
        host: Arc<Host>,
        report: &LoadReport,
    ) -> IsolatedCallout {
        // Trace timestamps count from the load, as in-process.
        trace_epoch();
        let loaded = report.loaded.as_ref();
        IsolatedCallout {
            shared: Arc::new(Shared {
                options,
                config: config.clone(),
                loaded_index: AtomicUsize::new(
                    candidates
                        .iter()
                        .position(|c| Some(c) == loaded.map(|l| &l.entry))
                        .unwrap_or(loaded_index),
                ),
                candidates,
                phase: Mutex::new(Phase::Up(host)),
                phase_changed: Condvar::new(),
                crash_times: Mutex::new(VecDeque::new()),
                generation: AtomicU64::new(1),
                counters: Counters::default(),
                stats: Arc::new(HookStats::default()),
                misbehaviour: Arc::new(MisbehaviourLog::default()),
                packets: Mutex::new(Packets::default()),
                stopping: AtomicBool::new(false),
                entry: loaded.map(|l| l.entry.clone()).unwrap_or_default(),
                path: loaded.map(|l| l.path.clone()).unwrap_or_default(),
                hooks_set: loaded.map(|l| l.hooks.clone()).unwrap_or_default(),
            }),
        }
    }

    /// Whether the host's threads move to the CPU of a caller pinned to one (the native host on
    /// Linux; not a PE host under wine): then pinning the server's workers makes a hook call a
    /// switch on one CPU.
    pub fn follows_pinned_callers(&self) -> bool {
        cfg!(target_os = "linux")
            && matches!(&*lock(&self.shared.phase), Phase::Up(host) if host.bells.is_none())
    }

    /// The `CalloutDlls` entry this callout was loaded from.
    pub fn entry(&self) -> &str {
        &self.shared.entry
    }

    /// The path handed to the OS loader.
    pub fn path(&self) -> &std::path::Path {
        &self.shared.path
    }

    /// The hooks the DLL's table sets, in table order.
    pub fn hooks_set(&self) -> Vec<HookName> {
        self.shared.hooks_set.clone()
    }

    /// Per-hook call statistics (durations as the host measured them).
    pub fn stats(&self) -> &Arc<HookStats> {
        &self.shared.stats
    }

    /// The misbehaviour seen so far (the host's reports, crashes and hangs).
    pub fn misbehaviour(&self) -> &Arc<MisbehaviourLog> {
        &self.shared.misbehaviour
    }

    /// Flushes the trace sink, if any.
    pub fn flush_trace(&self) -> std::io::Result<()> {
        match &self.shared.options.trace {
            Some(sink) => sink.flush(),
            None => Ok(()),
        }
    }

    /// The isolation counters: `callout_crashes` (crashes and hangs in hooks), `callout_hangs`,
    /// `callout_host_restarts`, `callout_load_exceptions` (event 1032 after the first load),
    /// `callout_calls_not_delivered` (hooks of packets whose host died), `callout_disabled` (0/1).
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let c = &self.shared.counters;
        BTreeMap::from([
            (
                "callout_crashes".to_string(),
                c.crashes.load(Ordering::Relaxed),
            ),
            ("callout_hangs".to_string(), c.hangs.load(Ordering::Relaxed)),
            (
                "callout_host_restarts".to_string(),
                c.restarts.load(Ordering::Relaxed),
            ),
            (
                "callout_load_exceptions".to_string(),
                c.load_exceptions.load(Ordering::Relaxed),
            ),
            (
                "callout_calls_not_delivered".to_string(),
                c.not_delivered.load(Ordering::Relaxed),
            ),
            (
                "callout_disabled".to_string(),
                u64::from(c.disabled.load(Ordering::Relaxed)),
            ),
        ])
    }

    /// `DhcpControlHook`, as [`Callout::control`](crate::Callout::control). After STOP no host is
    /// restarted.
    pub fn control(&self, code: ControlCode, locks: HeldLocks) -> Option<u32> {
        if code == ControlCode::Stop {
            self.shared.stopping.store(true, Ordering::SeqCst);
        }
        let call = Call {
            code: Some(code.code()),
            ..Call::on(HookName::Control, &[], 0, locks)
        };
        let host = match self.shared.current_host(locks) {
            Current::Up(host) => host,
            Current::Off => return None,
            Current::Restarting => {
                self.shared.restarting(&call);
                return None;
            }
        };
        self.shared
            .run(&host, &call, None, None)
            .ok()
            .map(|reply| reply.ret)
    }

    /// `DhcpNewPktHook`, as [`Callout::new_pkt`](crate::Callout::new_pkt). `ctx` receives a handle
    /// the server passes to the packet's later hooks; the DLL sees its own context there.
    pub fn new_pkt(
        &self,
        packet: &mut Vec<u8>,
        ip: Ipv4Addr,
        ctx: &mut usize,
        locks: HeldLocks,
    ) -> Result<bool, HookFault> {
        let call = Call {
            ip: Some(ip),
            ..Call::on(HookName::NewPkt, packet, 0, locks)
        };
        let host = match self.shared.current_host(locks) {
            Current::Up(host) => host,
            Current::Off => return self.shared.off_result(HookName::NewPkt).map(|()| true),
            // Its later hooks reach the new host with PktContext NULL, as for a packet whose
            // NewPkt ran in a host that died since.
            Current::Restarting => {
                self.shared.restarting(&call);
                return Ok(true);
            }
        };
        let handle = self.shared.track(host.generation);
        *ctx = handle;
        if !host.has(HookName::NewPkt) {
            return Ok(true);
        }
        let mut out = Vec::new();
        let result = self.shared.run(&host, &call, Some(&mut out), Some(handle));
        match result {
            Ok(reply) => {
                self.shared.set_ctx(handle, reply.out_ctx);
                if let Some(fault) = reply.fault {
                    return Err(HookFault::Host {
                        hook: HookName::NewPkt,
                        message: fault,
                    });
                }
                *packet = out;
                Ok(reply.process_it)
            }
            Err(fault) => Err(fault),
        }
    }

    /// `DhcpHandleOptionsHook`, as [`Callout::handle_options`](crate::Callout::handle_options).
    pub fn handle_options(
        &self,
        packet: &[u8],
        ctx: usize,
        scope_id: Option<Ipv4Addr>,
        locks: HeldLocks,
    ) -> Result<(), HookFault> {
        let call = Call {
            scope: scope_id,
            ..Call::on(HookName::HandleOptions, packet, ctx, locks)
        };
        self.shared.packet_hook(call, None).map(|_| ())
    }

    /// `DhcpPktDropHook`, as [`Callout::pkt_drop`](crate::Callout::pkt_drop). After
    /// [`DropReason::Processed`] the packet's handle is released.
    pub fn pkt_drop(
        &self,
        packet: &mut Vec<u8>,
        reason: DropReason,
        ip: Ipv4Addr,
        ctx: usize,
        locks: HeldLocks,
    ) -> Result<(), HookFault> {
        let call = Call {
            code: Some(reason.code()),
            ip: Some(ip),
            ..Call::on(HookName::PktDrop, packet, ctx, locks)
        };
        let mut out = Vec::new();
        let result = self.shared.packet_hook(call, Some(&mut out));
        if reason == DropReason::Processed {
            self.shared.untrack(ctx);
        }
        if let Ok(true) = result {
            *packet = out;
        }
        result.map(|_| ())
    }

    /// `DhcpPktSendHook`, as [`Callout::pkt_send`](crate::Callout::pkt_send). The reply of a
    /// packet that met a crash or a hang is not sent: the fault says why.
    pub fn pkt_send(
        &self,
        reply: &mut Vec<u8>,
        ip: Ipv4Addr,
        ctx: usize,
        locks: HeldLocks,
    ) -> Result<(), HookFault> {
        let call = Call {
            code: Some(DHCP_SEND_PACKET),
            ip: Some(ip),
            ..Call::on(HookName::PktSend, reply, ctx, locks)
        };
        let mut out = Vec::new();
        let result = self.shared.packet_hook(call, Some(&mut out));
        if let Ok(true) = result {
            *reply = out;
        }
        result.map(|_| ())
    }

    /// `DhcpAddressDelHook`, as [`Callout::address_del`](crate::Callout::address_del).
    #[allow(clippy::too_many_arguments)]
    pub fn address_del(
        &self,
        packet: &[u8],
        code: ProbCode,
        ip: Ipv4Addr,
        alt: Ipv4Addr,
        ctx: usize,
        locks: HeldLocks,
    ) -> Result<(), HookFault> {
        let call = Call {
            code: Some(code.code()),
            ip: Some(ip),
            alt: Some(alt),
            ..Call::on(HookName::AddressDel, packet, ctx, locks)
        };
        self.shared.packet_hook(call, None).map(|_| ())
    }

    /// `DhcpAddressOfferHook`, as [`Callout::address_offer`](crate::Callout::address_offer).
    #[allow(clippy::too_many_arguments)]
    pub fn address_offer(
        &self,
        packet: &[u8],
        code: GiveCode,
        ip: Ipv4Addr,
        alt: Ipv4Addr,
        client_type: ClientType,
        lease_secs: u32,
        ctx: usize,
        locks: HeldLocks,
    ) -> Result<(), HookFault> {
        let call = Call {
            code: Some(code.code()),
            ip: Some(ip),
            alt: Some(alt),
            client_type: client_type.code(),
            lease: lease_secs,
            ..Call::on(HookName::AddressOffer, packet, ctx, locks)
        };
        self.shared.packet_hook(call, None).map(|_| ())
    }

    /// `DhcpDeleteClientHook`, as [`Callout::delete_client`](crate::Callout::delete_client).
    pub fn delete_client(
        &self,
        ip: Ipv4Addr,
        hw: &[u8],
        locks: HeldLocks,
    ) -> Result<(), HookFault> {
        // The hardware address travels in the packet slot; it has no xid.
        let call = Call {
            ip: Some(ip),
            xid: None,
            ..Call::on(HookName::DeleteClient, hw, 0, locks)
        };
        let host = match self.shared.current_host(locks) {
            Current::Up(host) => host,
            Current::Off => return Ok(()),
            Current::Restarting => {
                self.shared.restarting(&call);
                return Ok(());
            }
        };
        if !host.has(HookName::DeleteClient) {
            return Ok(());
        }
        match self.shared.run(&host, &call, None, None) {
            Ok(reply) => match reply.fault {
                Some(message) => Err(HookFault::Host {
                    hook: HookName::DeleteClient,
                    message,
                }),
                None => Ok(()),
            },
            Err(fault) => Err(fault),
        }
    }
}

impl Drop for IsolatedCallout {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let mut phase = lock(&self.shared.phase);
        *phase = Phase::Off;
        self.shared.phase_changed.notify_all();
    }
}

impl Shared {
    /// The running host. While one is being restarted, a call waits for it until the failure
    /// plus the hook timeout (what a hook may hold a worker for; at least [`RESTART_WAIT_MIN`]),
    /// and then goes on undelivered;
    /// a call under the lease lock does not wait at all, so the workers waiting for that lock are
    /// held up by a crash or a hang for no longer than the hook timeout, never by the restart as
    /// well. (Control, under the service state lock, waits: packets do not need that lock.)
    fn current_host(self: &Arc<Self>, locks: HeldLocks) -> Current {
        let mut phase = lock(&self.phase);
        loop {
            match &*phase {
                Phase::Up(host) => return Current::Up(host.clone()),
                Phase::Off => return Current::Off,
                Phase::Restarting { wait_until } => {
                    let deadline = *wait_until;
                    let now = Instant::now();
                    if locks == HeldLocks::Lease || now >= deadline {
                        return Current::Restarting;
                    }
                    phase = self
                        .phase_changed
                        .wait_timeout(phase, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    /// Records a hook not delivered because the host was being restarted (a trace line with a
    /// `fault`, counted as not delivered). The packet is not marked: its reply is sent, and its
    /// later hooks reach the new host.
    fn restarting(&self, call: &Call<'_>) {
        if !self.hooks_set.contains(&call.hook) {
            return;
        }
        let message = format!(
            "{}: not delivered: the callout host was being restarted{}",
            call.hook,
            if call.locks == HeldLocks::Lease {
                " (a call under the lease lock does not wait for it)"
            } else {
                " (waited for it as long as a hook may take)"
            }
        );
        self.counters.not_delivered.fetch_add(1, Ordering::Relaxed);
        self.record(call, Instant::now(), 0, 0, Some(&message), Vec::new());
    }

    /// What a hook returns while the callout is off: nothing happens, except that with
    /// `--on-callout-crash stop` packets are dropped until the server has stopped.
    fn off_result(&self, hook: HookName) -> Result<(), HookFault> {
        if matches!(self.options.on_crash, CrashPolicy::Stop)
            && self.counters.crashes.load(Ordering::Relaxed) > 0
        {
            return Err(HookFault::Host {
                hook,
                message: format!(
                    "{hook}: not delivered: the callout host crashed and the server is stopping \
                     (--on-callout-crash stop)"
                ),
            });
        }
        Ok(())
    }

    fn track(&self, generation: u64) -> usize {
        let mut p = lock(&self.packets);
        let entry = Some(PacketEntry {
            generation,
            ctx: 0,
            faulted: false,
        });
        let index = match p.free.pop() {
            Some(i) => {
                p.entries[i] = entry;
                i
            }
            None => {
                p.entries.push(entry);
                p.entries.len() - 1
            }
        };
        index + 1
    }

    fn entry(&self, handle: usize) -> Option<PacketEntry> {
        let p = lock(&self.packets);
        p.entries.get(handle.checked_sub(1)?).copied().flatten()
    }

    fn set_ctx(&self, handle: usize, ctx: usize) {
        let mut p = lock(&self.packets);
        if let Some(Some(e)) = handle.checked_sub(1).and_then(|i| p.entries.get_mut(i)) {
            e.ctx = ctx;
        }
    }

    fn mark_faulted(&self, handle: usize) {
        let mut p = lock(&self.packets);
        if let Some(Some(e)) = handle.checked_sub(1).and_then(|i| p.entries.get_mut(i)) {
            e.faulted = true;
        }
    }

    fn untrack(&self, handle: usize) {
        let mut p = lock(&self.packets);
        let Some(i) = handle.checked_sub(1) else {
            return;
        };
        if let Some(slot) = p.entries.get_mut(i) {
            if slot.take().is_some() {
                p.free.push(i);
            }
        }
    }

    /// A hook of a packet that went through NewPkt: delivered with the DLL's own context (NULL in
    /// a host started since the packet's NewPkt); not delivered (a trace line with a `fault`) when
    /// the packet met a crash or a hang. `Ok(true)`: `out` holds the packet the DLL left.
    fn packet_hook(
        self: &Arc<Self>,
        mut call: Call<'_>,
        out: Option<&mut Vec<u8>>,
    ) -> Result<bool, HookFault> {
        let handle = call.ctx;
        let entry = self.entry(handle);
        if entry.is_some_and(|e| e.faulted) {
            // Waits for the new host like any call (bounded, and never under the lease lock), so
            // the packet that met the crash ends after the restart, in the trace as before.
            let host = match self.current_host(call.locks) {
                Current::Up(host) => Some(host),
                Current::Off | Current::Restarting => None,
            };
            return self.not_delivered(&call, host.as_deref());
        }
        let host = match self.current_host(call.locks) {
            Current::Up(host) => Some(host),
            Current::Off => None,
            Current::Restarting => {
                self.restarting(&call);
                return Ok(false);
            }
        };
        match entry {
            // The DLL's own context, in the host that set it; a host started since never saw
            // it, so the packet's later hooks reach that host with PktContext NULL.
            Some(entry)
                if host
                    .as_ref()
                    .is_some_and(|h| h.generation == entry.generation) =>
            {
                call.ctx = entry.ctx;
            }
            _ => call.ctx = 0,
        }
        let Some(host) = host else {
            return Ok(false);
        };
        if !host.has(call.hook) {
            return Ok(false);
        }
        let wants_packet = out.is_some();
        let reply = self.run(&host, &call, out, (handle != 0).then_some(handle))?;
        if let Some(message) = reply.fault {
            return Err(HookFault::Host {
                hook: call.hook,
                message,
            });
        }
        Ok(reply.called && wants_packet)
    }

    /// Records a hook of a packet that met a crash or a hang without calling it. For PktSend the
    /// reply is not sent.
    fn not_delivered(&self, call: &Call<'_>, host: Option<&Host>) -> Result<bool, HookFault> {
        let set = host.is_none_or(|h| h.has(call.hook));
        let message = format!(
            "{}: not delivered: this packet met a crash or hang of the callout host",
            call.hook
        );
        if set {
            self.counters.not_delivered.fetch_add(1, Ordering::Relaxed);
            self.record(call, Instant::now(), 0, 0, Some(&message), Vec::new());
        }
        if call.hook == HookName::PktSend {
            return Err(HookFault::Host {
                hook: call.hook,
                message,
            });
        }
        Ok(false)
    }

    /// Writes the trace line, the statistics and the misbehaviour of one call, as in-process
    /// mode does.
    fn record(
        &self,
        call: &Call<'_>,
        started: Instant,
        ret: u32,
        dur_us: u64,
        fault: Option<&str>,
        misbehaviour: Vec<Misbehaviour>,
    ) {
        self.stats.record(call.hook, dur_us, fault.is_some());
        for report in &misbehaviour {
            self.misbehaviour.record(report);
        }
        if let Some(sink) = &self.options.trace {
            sink.record(&mut TraceRecord {
                seq: 0,
                hook: call.hook,
                code: call.code,
                ip: call.ip,
                alt: call.alt,
                xid: call.xid,
                locks: call.locks,
                thread: thread_id(),
                ret,
                dur_us,
                ts_us: u64::try_from(started.saturating_duration_since(trace_epoch()).as_micros())
                    .unwrap_or(u64::MAX),
                fault: fault.map(str::to_string),
                misbehaviour,
            });
        }
    }

    /// Runs one call on `host`, records it, and turns a crash or hang into a reported fault (the
    /// packet `handle`, when given, is marked as having met it).
    fn run(
        self: &Arc<Self>,
        host: &Arc<Host>,
        call: &Call<'_>,
        out: Option<&mut Vec<u8>>,
        handle: Option<usize>,
    ) -> Result<Reply, HookFault> {
        let started = Instant::now();
        match post(host, call, out, self.options.hook_timeout) {
            Ok(mut reply) => {
                if reply.called {
                    if let Some(fault) = &reply.fault {
                        // A fault the host caught (on Windows, an exception the shim ended: event
                        // 1031, the host carries on), with the packet it met.
                        tracing::warn!(
                            hook = %call.hook,
                            xid = call.xid,
                            dll = %self.entry,
                            "callout fault {}: {fault}",
                            described(call)
                        );
                    }
                    let found = std::mem::take(&mut reply.misbehaviour);
                    let fault = reply.fault.as_deref();
                    self.record(call, started, reply.ret, reply.dur_us, fault, found);
                }
                Ok(reply)
            }
            Err(failure) => {
                if let Some(handle) = handle {
                    self.mark_faulted(handle);
                }
                let elapsed = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                let (message, _culprit) = self.report_failure(host, call, &failure);
                let kind = if matches!(failure, Failure::Hung) {
                    MisbehaviourKind::Hang
                } else {
                    MisbehaviourKind::Crash
                };
                let report = Misbehaviour {
                    kind,
                    hook: call.hook,
                    xid: call.xid,
                    chaddr: match call.hook {
                        HookName::Control => None,
                        HookName::DeleteClient => Some(colon_hex(call.packet)),
                        _ => call.xid.map(|_| chaddr_of(call.packet).replace('-', ":")),
                    },
                    explanation: message.clone(),
                };
                self.record(call, started, 0, elapsed, Some(&message), vec![report]);
                // Whichever call saw it first, the dead host is replaced (or the callout is
                // switched off) once, by the policy.
                self.host_failed(host.generation);
                Err(HookFault::Host {
                    hook: call.hook,
                    message,
                })
            }
        }
    }

    /// Logs a failed call (event 1031 for the call that caused it) and counts it; returns the
    /// trace's fault text and whether this call caused the failure.
    fn report_failure(&self, host: &Host, call: &Call<'_>, failure: &Failure) -> (String, bool) {
        let on = described(call);
        let dll = host.dll.display();
        let hook = call.hook;
        match failure {
            Failure::Died {
                cause,
                culprit: true,
            } => {
                self.counters.crashes.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    event = 1031,
                    hook = %hook,
                    xid = call.xid,
                    chaddr = %chaddr_of(call.packet),
                    signal = %cause,
                    dll = %dll,
                    "event 1031: the callout DLL {dll} crashed in {hook} ({cause}) {on}; the packet is dropped"
                );
                (
                    format!("{hook}: crash: {cause} in the callout host; the packet is dropped"),
                    true,
                )
            }
            Failure::Died {
                cause,
                culprit: false,
            } => {
                tracing::warn!(
                    hook = %hook,
                    "{hook} {on} was running when the callout host died ({cause}); the packet is dropped"
                );
                (
                    format!(
                        "{hook}: the callout host died during the call ({cause}); the packet is dropped"
                    ),
                    false,
                )
            }
            Failure::Hung => {
                self.counters.crashes.fetch_add(1, Ordering::Relaxed);
                self.counters.hangs.fetch_add(1, Ordering::Relaxed);
                let ms = self.options.hook_timeout.as_millis();
                tracing::error!(
                    event = 1031,
                    hook = %hook,
                    xid = call.xid,
                    chaddr = %chaddr_of(call.packet),
                    dll = %dll,
                    "event 1031: the callout DLL {dll} hung in {hook} (no return within {ms} ms, --hook-timeout-ms) {on}; the host is killed and the packet is dropped"
                );
                (
                    format!(
                        "{hook}: hang: no return within {ms} ms; the callout host was killed and the packet is dropped"
                    ),
                    true,
                )
            }
            Failure::Protocol(why) => {
                self.counters.crashes.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    event = 1031,
                    hook = %hook,
                    dll = %dll,
                    "event 1031: the callout host broke the shared-memory protocol in {hook} ({why}) {on}; the host is killed and the packet is dropped"
                );
                (
                    format!("{hook}: the callout host broke the protocol ({why}); the packet is dropped"),
                    true,
                )
            }
        }
    }

    /// Applies the crash policy once per dead host.
    fn host_failed(self: &Arc<Self>, generation: u64) {
        let mut phase = lock(&self.phase);
        match &*phase {
            Phase::Up(h) if h.generation == generation => {}
            _ => return,
        }
        if self.stopping.load(Ordering::SeqCst) {
            *phase = Phase::Off;
            self.phase_changed.notify_all();
            return;
        }
        let now = Instant::now();
        let window = self.options.crash_window;
        let recent = {
            let mut times = lock(&self.crash_times);
            times.push_back(now);
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) > window)
            {
                times.pop_front();
            }
            times.len()
        };
        match self.options.on_crash {
            CrashPolicy::Disable => {
                self.disable(&mut phase, "--on-callout-crash disable");
            }
            CrashPolicy::Stop => {
                tracing::error!(
                    "the callout host crashed: stopping the server (--on-callout-crash stop)"
                );
                *phase = Phase::Off;
                self.phase_changed.notify_all();
                if let Some(stop) = &self.options.on_stop {
                    stop();
                }
            }
            CrashPolicy::Restart if recent >= self.options.max_crashes as usize => {
                let why = format!(
                    "{recent} crashes within {} s (--on-callout-crash restart allows {})",
                    window.as_secs(),
                    self.options.max_crashes.saturating_sub(1)
                );
                self.disable(&mut phase, &why);
            }
            CrashPolicy::Restart => {
                *phase = Phase::Restarting {
                    wait_until: Instant::now() + self.options.hook_timeout.max(RESTART_WAIT_MIN),
                };
                drop(phase);
                tracing::warn!(
                    "restarting the callout host (crash {recent} within {} s; the callout is disabled at {})",
                    window.as_secs(),
                    self.options.max_crashes
                );
                let me = self.clone();
                let spawned = std::thread::Builder::new()
                    .name("callout-restart".into())
                    .spawn(move || me.restart(generation + 1));
                if spawned.is_err() {
                    let mut phase = lock(&self.phase);
                    self.disable(&mut phase, "cannot start a restart thread");
                }
            }
        }
    }

    fn disable(&self, phase: &mut Phase, why: &str) {
        self.counters.disabled.store(true, Ordering::Relaxed);
        tracing::error!(
            "CALLOUT DISABLED ({why}): {} is no longer called; the server goes on serving WITHOUT the callout",
            self.entry
        );
        *phase = Phase::Off;
        self.phase_changed.notify_all();
    }

    /// Starts a new host (load, entry, Control(START)) and puts it in the loop.
    fn restart(self: Arc<Self>, generation: u64) {
        let start = self.loaded_index.load(Ordering::Relaxed);
        let result = start_host(
            &self.options,
            &self.config,
            &self.candidates,
            start,
            generation,
        );
        let host = match result {
            Ok(Started {
                host: Some(host),
                report,
            }) => {
                for a in report.attempts.iter().filter(|a| !a.outcome.is_loaded()) {
                    log_attempt(a);
                }
                host
            }
            Ok(Started { host: None, report }) => {
                for a in &report.attempts {
                    log_attempt(a);
                }
                let mut phase = lock(&self.phase);
                self.disable(&mut phase, "the restarted host could not load the DLL");
                return;
            }
            Err(StartError::Exception { index, cause, .. }) => {
                self.counters
                    .load_exceptions
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    event = 1032,
                    "event 1032: {}: exception while loading: the restarted callout host died ({cause})",
                    self.candidates.get(index).map_or("?", String::as_str)
                );
                let mut phase = lock(&self.phase);
                self.disable(&mut phase, "the restarted host died while loading the DLL");
                return;
            }
            Err(StartError::Spawn(e)) => {
                let mut phase = lock(&self.phase);
                self.disable(&mut phase, &format!("cannot start the callout host: {e}"));
                return;
            }
        };
        self.generation.store(generation, Ordering::Relaxed);
        self.counters.restarts.fetch_add(1, Ordering::Relaxed);
        // Control(START) before the first packet of the new host, as at service start.
        let call = Call {
            code: Some(ControlCode::Start.code()),
            ..Call::on(HookName::Control, &[], 0, HeldLocks::Service)
        };
        {
            // Up before the call so a crash in Control(START) is handled like any other.
            let mut phase = lock(&self.phase);
            if matches!(*phase, Phase::Off) {
                return;
            }
            *phase = Phase::Up(host.clone());
        }
        if host.has(HookName::Control) {
            let _ = self.run(&host, &call, None, None);
        }
        tracing::info!(
            "callout host restarted (pid {}): {} is back in the loop",
            host.pid,
            self.entry
        );
        // Calls waiting for the restart go on after Control(START), as packets come after it at
        // service start.
        self.phase_changed.notify_all();
    }
}

/// Posts `call` into this thread's slot of `host` and waits for the result.
fn post(
    host: &Host,
    call: &Call<'_>,
    out: Option<&mut Vec<u8>>,
    timeout: Duration,
) -> Result<Reply, Failure> {
    thread_local! {
        static SPINNER: std::cell::RefCell<Spinner> = std::cell::RefCell::default();
        static HOME: usize = {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            NEXT.fetch_add(1, Ordering::Relaxed)
        };
    }
    let region = &host.region;
    let index = HOME.with(|h| *h) % region.slots();
    let _guard = lock(&host.slot_locks[index]);
    let Some(slot) = region.slot(index) else {
        return Err(Failure::Protocol("no slot".into()));
    };
    if call.packet.len() > SLOT_DATA {
        // Never reached from UDP: a datagram is at most 65,535 bytes.
        return Err(Failure::Protocol("packet larger than a slot".into()));
    }
    match slot.state.load(Ordering::SeqCst) {
        state::IDLE | state::DONE => {}
        state::DEAD => return Err(died(host, index)),
        other => {
            host.kill(format!("slot {index} in state {other} between calls"));
            return Err(Failure::Protocol(format!(
                "slot {index} in state {other} between calls"
            )));
        }
    }
    slot.hook.store(hook_id(call.hook), Ordering::Relaxed);
    slot.code.store(call.code.unwrap_or(0), Ordering::Relaxed);
    slot.ip
        .store(call.ip.map_or(0, u32::from), Ordering::Relaxed);
    slot.alt
        .store(call.alt.map_or(0, u32::from), Ordering::Relaxed);
    slot.client_type.store(call.client_type, Ordering::Relaxed);
    slot.lease.store(call.lease, Ordering::Relaxed);
    slot.locks
        .store(encode_locks(call.locks), Ordering::Relaxed);
    slot.scope
        .store(call.scope.map_or(0, u32::from), Ordering::Relaxed);
    slot.has_scope
        .store(u32::from(call.scope.is_some()), Ordering::Relaxed);
    slot.ctx.store(call.ctx as u64, Ordering::Relaxed);
    slot.len.store(call.packet.len() as u32, Ordering::Relaxed);
    let caller_cpu = super::affinity::caller_cpu();
    slot.caller_cpu.store(caller_cpu, Ordering::Relaxed);
    region.write_data(index, call.packet);
    slot.state.store(state::REQUEST, Ordering::SeqCst);
    match &host.bells {
        Some(bells) => bells.ring(index),
        None => futex_wake(&slot.state),
    }
    let deadline = Instant::now() + timeout;
    // A hook call of a quick DLL comes back within microseconds, sooner than a futex sleep and
    // wake-up; the spin is bounded by time so a slow hook costs no more than it. A caller pinned
    // to one CPU shares it with the host's thread (affinity.rs): its spin would only delay it.
    if caller_cpu == NOT_PINNED {
        SPINNER.with_borrow_mut(|spinner| {
            spinner.spin(&slot.state, |s| s == state::REQUEST || s == state::RUNNING)
        });
    }
    loop {
        let now_state = slot.state.load(Ordering::SeqCst);
        match now_state {
            state::DONE => break,
            state::REQUEST | state::RUNNING => {
                if host.dead.load(Ordering::SeqCst) {
                    return Err(died(host, index));
                }
                let now = Instant::now();
                if now >= deadline {
                    host.kill(format!("a hang in {}", call.hook));
                    return Err(Failure::Hung);
                }
                futex_wait(&slot.state, now_state, Some(deadline - now));
            }
            state::DEAD => return Err(died(host, index)),
            other => {
                host.kill(format!("slot {index} in state {other}"));
                return Err(Failure::Protocol(format!("slot state {other}")));
            }
        }
    }
    let result = read_reply(region, index, out);
    slot.state.store(state::IDLE, Ordering::SeqCst);
    result.inspect_err(|_| host.kill("a protocol error".into()))
}

/// The failure of a call whose host died: its cause, and whether this call's thread got the
/// fatal signal (or, with no signal recorded, whether the host was not killed for another call).
fn died(host: &Host, index: usize) -> Failure {
    let cause = host.exit_cause();
    if let Some(why) = lock(&host.killed_for).clone() {
        return Failure::Died {
            cause: format!("killed for {why}"),
            culprit: false,
        };
    }
    let fault_slot = host.region.header().fault_slot.load(Ordering::SeqCst) as usize;
    let culprit = fault_slot == 0 || fault_slot == index + 1;
    Failure::Died { cause, culprit }
}

fn read_reply(region: &Region, index: usize, out: Option<&mut Vec<u8>>) -> Result<Reply, Failure> {
    let slot = region
        .slot(index)
        .ok_or_else(|| Failure::Protocol("no slot".into()))?;
    let st = slot.status.load(Ordering::Acquire);
    let out_len = slot.out_len.load(Ordering::Acquire) as usize;
    let mis_len = slot.mis_len.load(Ordering::Acquire) as usize;
    if out_len.saturating_add(mis_len) > SLOT_DATA {
        return Err(Failure::Protocol(format!(
            "result lengths {out_len} + {mis_len}"
        )));
    }
    let mut misbehaviour = Vec::new();
    if mis_len > 0 {
        let mut json = Vec::new();
        region.read_data_at(index, out_len, mis_len, &mut json);
        misbehaviour = serde_json::from_slice(&json)
            .map_err(|e| Failure::Protocol(format!("misbehaviour report: {e}")))?;
    }
    let mut reply = Reply {
        called: true,
        ret: slot.ret.load(Ordering::Acquire),
        dur_us: slot.dur_us.load(Ordering::Acquire),
        process_it: slot.process_it.load(Ordering::Acquire) != 0,
        out_ctx: usize::try_from(slot.out_ctx.load(Ordering::Acquire)).unwrap_or(0),
        fault: None,
        misbehaviour,
    };
    match st {
        status::CALLED => {
            if let Some(out) = out {
                region.read_data(index, out_len, out);
            }
        }
        status::NOT_SET => reply.called = false,
        status::FAULT => {
            let mut text = Vec::new();
            region.read_data(index, out_len, &mut text);
            reply.fault = Some(String::from_utf8_lossy(&text).into_owned());
        }
        status::BAD_REQUEST => {
            let mut text = Vec::new();
            region.read_data(index, out_len, &mut text);
            return Err(Failure::Protocol(format!(
                "the host rejected the call: {}",
                String::from_utf8_lossy(&text)
            )));
        }
        other => return Err(Failure::Protocol(format!("status {other}"))),
    }
    Ok(reply)
}

/// The least time a PE host under wine is given to load (wine may be making its prefix).
const PE_LOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// Starts the native host (this binary), handing it the memfd.
fn spawn_native(options: &IsolateOptions, fd: i32) -> Result<Child, StartError> {
    let mut command = Command::new(&options.host_program);
    command
        .args(&options.host_args)
        .arg("--shm-fd")
        .arg(fd.to_string())
        .arg("--parent")
        .arg(std::process::id().to_string())
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl, which is
    // async-signal-safe: it lets the memfd (opened close-on-exec) survive into the host.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
        .spawn()
        .map_err(|e| StartError::Spawn(format!("{}: {e}", options.host_program.display())))
}

/// Names the DLLs of a host's report as the `CalloutDlls` entries were written: a Windows host
/// was given them as wine's `Z:` paths. A report naming what was sent as written is unchanged.
fn as_configured(
    report: &mut LoadReport,
    sent: &[String],
    candidates: &[String],
    config: &CalloutConfig,
) {
    let original = |entry: &str| {
        sent.iter()
            .position(|s| s == entry)
            .and_then(|i| candidates.get(i))
            .filter(|c| c.as_str() != entry)
    };
    for attempt in &mut report.attempts {
        if let Some(c) = original(&attempt.entry) {
            attempt.path = resolve(c, config.base_dir.as_deref());
            attempt.entry = c.clone();
        }
    }
    if let Some(loaded) = &mut report.loaded {
        if let Some(c) = original(&loaded.entry) {
            loaded.path = resolve(c, config.base_dir.as_deref());
            loaded.entry = c.clone();
        }
    }
}

/// Starts a host that loads `candidates[start..]` (ChainDlls unchanged: each candidate's
/// remainder is the same) and waits until it is ready or dead.
fn start_host(
    options: &IsolateOptions,
    config: &CalloutConfig,
    candidates: &[String],
    start: usize,
    generation: u64,
) -> Result<Started, StartError> {
    let slots = match options.pe_host {
        Some(_) => options.slots.clamp(1, MAX_SLOTS),
        None => options.slots.max(1),
    };
    let region = Region::create(slots)
        .map(Arc::new)
        .map_err(|e| StartError::Spawn(format!("shared memory: {e}")))?;
    // A Windows host gets the DLLs (and so each one's ChainDlls) as wine's Z: paths; bare names
    // stay bare, for its DLL search.
    let (dlls, base_dir) = match &options.pe_host {
        Some(pe) if pe.windows_paths => (
            candidates[start..]
                .iter()
                .map(|c| {
                    let path = resolve(c, config.base_dir.as_deref());
                    match path.is_absolute() {
                        true => pe.host_path(&path).to_string_lossy().into_owned(),
                        false => c.clone(),
                    }
                })
                .collect(),
            None,
        ),
        _ => (candidates[start..].to_vec(), config.base_dir.clone()),
    };
    let sent = dlls.clone();
    let host_config = HostConfig {
        callout: CalloutConfig {
            dlls,
            enabled: config.enabled,
            base_dir,
            order: LoadOrder::Listed,
            strict_permissions: config.strict_permissions,
        },
        slow_locked_us: u64::try_from(options.slow_threshold.as_micros()).unwrap_or(u64::MAX),
        slow_unlocked_us: u64::try_from(options.slow_unlocked_threshold.as_micros())
            .unwrap_or(u64::MAX),
        // The files are Linux files: who can write them is checked here.
        permissions: match &options.pe_host {
            Some(pe) if pe.windows_paths => Some(
                candidates[start..]
                    .iter()
                    .map(|c| {
                        crate::trust::check_dll(&resolve(c, config.base_dir.as_deref())).lines()
                    })
                    .collect(),
            ),
            _ => None,
        },
    };
    let json = serde_json::to_vec(&host_config).map_err(|e| StartError::Spawn(e.to_string()))?;
    if !region.write_report(&json) {
        return Err(StartError::Spawn(
            "the load configuration does not fit".into(),
        ));
    }
    let fd = region.fd();
    let (child, bells, load_timeout) = match &options.pe_host {
        None => (spawn_native(options, fd)?, None, options.load_timeout),
        Some(pe) => {
            let bells =
                Bells::create().map_err(|e| StartError::Spawn(format!("doorbells: {e}")))?;
            bells
                .start_reader(region.clone())
                .map_err(|e| StartError::Spawn(format!("doorbells: {e}")))?;
            let shm = PathBuf::from(format!("/proc/{}/fd/{fd}", std::process::id()));
            let mut command = match pe.launcher.split_first() {
                Some((first, rest)) => {
                    let mut c = Command::new(first);
                    c.args(rest).arg(&pe.program);
                    c
                }
                None => Command::new(&pe.program),
            };
            command
                .args(&options.host_args)
                .arg("--shm-path")
                .arg(pe.host_path(&shm))
                .arg("--bell-in")
                .arg(pe.host_path(&bells.req_path()))
                .arg("--bell-out")
                .arg(pe.host_path(&bells.resp_path()))
                .envs(options.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null());
            if pe.windows_paths {
                // The host's own environment (a scenario's [env]) comes before calloutd's.
                let set = |name: &str| {
                    options
                        .env
                        .iter()
                        .rev()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .or_else(|| std::env::var_os(name))
                };
                command.envs(super::pe::wine_environment(
                    set("WINEDEBUG").as_deref(),
                    set("WINEDLLOVERRIDES").as_deref(),
                ));
            }
            let child = command
                .spawn()
                .map_err(|e| StartError::Spawn(format!("{}: {e}", pe.program.display())))?;
            // Wine's first start in a new prefix takes seconds: not a hang while loading.
            let timeout = options.load_timeout.max(PE_LOAD_TIMEOUT);
            (child, Some(bells), timeout)
        }
    };
    let pid = child.id();
    let dead = Arc::new(AtomicBool::new(false));
    let exit = Arc::new(Mutex::new(None));
    let watcher = {
        let (region, dead, exit) = (region.clone(), dead.clone(), exit.clone());
        std::thread::Builder::new()
            .name(format!("callout-host-{pid}"))
            .spawn(move || watch(pid, region, dead, exit))
            .map_err(|e| StartError::Spawn(e.to_string()))?
    };
    let mut host = Host {
        generation,
        region: region.clone(),
        child: Mutex::new(child),
        pid,
        dead: dead.clone(),
        exit,
        watcher: Mutex::new(Some(watcher)),
        slot_locks: (0..region.slots()).map(|_| Mutex::new(())).collect(),
        hooks: [false; 8],
        killed_for: Mutex::new(None),
        dll: PathBuf::new(),
        bells,
    };
    let header = region.header();
    let deadline = Instant::now() + load_timeout;
    loop {
        let now_state = header.host_state.load(Ordering::SeqCst);
        if now_state == host_state::READY {
            break;
        }
        let now = Instant::now();
        if now_state == host_state::DEAD || dead.load(Ordering::SeqCst) || now >= deadline {
            let hung = !dead.load(Ordering::SeqCst);
            if hung {
                host.kill("a hang while loading".into());
            }
            let loading = now_state == host_state::LOADING
                || header.host_state.load(Ordering::SeqCst) == host_state::DEAD;
            let index =
                (header.attempt.load(Ordering::SeqCst) as usize).min(candidates.len() - start - 1);
            let partial = region
                .read_report()
                .and_then(|b| serde_json::from_slice::<LoadReport>(&b).ok())
                .map(|mut r| {
                    as_configured(&mut r, &sent, &candidates[start..], config);
                    Box::new(r)
                });
            let cause = if hung {
                format!(
                    "no answer within {} ms while loading",
                    load_timeout.as_millis()
                )
            } else {
                // Wait for the watcher's record of how it ended.
                host.exit_cause()
            };
            if !loading && !hung {
                return Err(StartError::Spawn(format!(
                    "the callout host ended before loading ({cause})"
                )));
            }
            return Err(StartError::Exception {
                index: start + index,
                cause,
                partial,
            });
        }
        futex_wait(&header.host_state, now_state, Some(deadline - now));
    }
    let mut report: LoadReport = region
        .read_report()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| StartError::Spawn("the callout host sent an unreadable report".into()))?;
    as_configured(&mut report, &sent, &candidates[start..], config);
    let Some(loaded) = &report.loaded else {
        return Ok(Started { report, host: None });
    };
    for h in &loaded.hooks {
        host.hooks[h.index()] = true;
    }
    host.dll = loaded.path.clone();
    Ok(Started {
        report,
        host: Some(Arc::new(host)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(region: &Region, out: &mut Vec<u8>) -> Result<Reply, String> {
        read_reply(region, 0, Some(out)).map_err(|f| match f {
            Failure::Protocol(why) => why,
            _ => "not a protocol failure".into(),
        })
    }

    #[test]
    fn a_sound_reply_is_read_back() {
        let region = Region::create(2).unwrap();
        let slot = region.slot(0).unwrap();
        assert!(region.write_data(0, b"packet"));
        slot.out_len.store(6, Ordering::SeqCst);
        slot.status.store(status::CALLED, Ordering::SeqCst);
        slot.ret.store(7, Ordering::SeqCst);
        let mut out = Vec::new();
        let r = reply(&region, &mut out).unwrap();
        assert_eq!((r.called, r.ret, out.as_slice()), (true, 7, &b"packet"[..]));
    }

    #[test]
    fn a_corrupted_slot_is_a_protocol_fault_never_a_bad_read() {
        let region = Region::create(1).unwrap();
        let slot = region.slot(0).unwrap();
        let mut out = Vec::new();
        slot.status.store(status::CALLED, Ordering::SeqCst);
        for (out_len, mis_len) in [
            (SLOT_DATA as u32 + 1, 0),
            (u32::MAX, u32::MAX),
            (10, SLOT_DATA as u32),
        ] {
            slot.out_len.store(out_len, Ordering::SeqCst);
            slot.mis_len.store(mis_len, Ordering::SeqCst);
            assert!(reply(&region, &mut out)
                .unwrap_err()
                .contains("result lengths"));
        }
        slot.out_len.store(0, Ordering::SeqCst);
        slot.mis_len.store(0, Ordering::SeqCst);
        slot.status.store(99, Ordering::SeqCst);
        assert!(reply(&region, &mut out).unwrap_err().contains("status 99"));
        // Misbehaviour that is not the JSON the host writes.
        slot.status.store(status::CALLED, Ordering::SeqCst);
        assert!(region.write_data(0, b"{not json"));
        slot.mis_len.store(9, Ordering::SeqCst);
        assert!(reply(&region, &mut out)
            .unwrap_err()
            .contains("misbehaviour"));
        // Out-of-range slots and writes are refused, not performed.
        assert!(region.slot(1).is_none());
        assert!(!region.write_data_at(0, SLOT_DATA - 1, b"xy"));
        assert!(!region.write_data_at(0, usize::MAX, b"x"));
        assert!(!region.read_data_at(0, 1, SLOT_DATA, &mut out));
    }

    #[test]
    fn a_fault_reply_carries_the_hosts_text() {
        let region = Region::create(1).unwrap();
        let slot = region.slot(0).unwrap();
        let text = "NewPkt: the callout wrote past the buffer (After guard zone damaged)";
        assert!(region.write_data(0, text.as_bytes()));
        slot.out_len.store(text.len() as u32, Ordering::SeqCst);
        slot.status.store(status::FAULT, Ordering::SeqCst);
        let mut out = Vec::new();
        assert_eq!(
            reply(&region, &mut out).unwrap().fault.as_deref(),
            Some(text)
        );
    }

    #[test]
    fn the_region_a_host_opens_must_have_the_servers_layout() {
        let region = Region::create(3).unwrap();
        // A second descriptor of the memfd (through /proc), owned by the opening side.
        let reopen = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(format!("/proc/self/fd/{}", region.fd()))
                .unwrap()
        };
        let copy = reopen();
        let opened = Region::open(std::os::fd::IntoRawFd::into_raw_fd(copy)).unwrap();
        assert_eq!(opened.slots(), 3);
        region.header().magic.store(0, Ordering::SeqCst);
        let copy = reopen();
        assert!(Region::open(std::os::fd::IntoRawFd::into_raw_fd(copy)).is_err());
    }

    #[test]
    fn chaddr_and_xid_come_from_the_packet_and_never_read_past_it() {
        let mut p = vec![0u8; 34];
        p[2] = 6;
        p[4..8].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        p[28..34].copy_from_slice(&[2, 0, 0, 0, 0x0b, 0xad]);
        assert_eq!(chaddr_of(&p), "02-00-00-00-0b-ad");
        assert_eq!(xid_of(&p), Some(0xdead_beef));
        p[2] = 16; // hlen beyond the packet: nothing rather than a panic
        assert_eq!(chaddr_of(&p), "");
        assert_eq!(xid_of(&p[..5]), None);
    }
}
