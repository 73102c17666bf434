//! The loaded callout and one safe method per hook (docs/hooks.md section 4).

use crate::buffer::{with_thread_buffer, GuardedBuffer};
use crate::misbehaviour::{Chaddr, Misbehaviour, MisbehaviourKind, MisbehaviourLog};
use crate::options::OptionSpans;
use crate::trace::{thread_id, trace_epoch, HookStats, TraceRecord, TraceSink};
use crate::{HeldLocks, HookFault, HookName};
use dhcpssdk::{
    ClientType, ControlCode, DropReason, GiveCode, ProbCode, BOOL, DHCP_CALLOUT_TABLE,
    DHCP_SEND_PACKET, LPDHCP_CONTROL, LPDHCP_DELETE_CLIENT, LPDHCP_DROP_SEND, LPDHCP_GIVE_ADDRESS,
    LPDHCP_HANDLE_OPTIONS, LPDHCP_NEWPKT, LPDHCP_PROB, LPVOID,
};
use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Calls a hook: directly, or on Windows through the exception shim (`seh`), which ends the call
/// if the hook raises an exception and keeps the exception for [`exception_fault`].
macro_rules! call_hook {
    ($hook:ident ( $($arg:expr),* $(,)? )) => {{
        #[cfg(windows)]
        {
            crate::seh::call($hook as *const (), &[$(crate::seh::Word::word($arg)),*])
        }
        #[cfg(not(windows))]
        {
            $hook($($arg),*)
        }
    }};
}

/// The exception the hook just called on this thread raised (Windows), as a fault.
fn exception_fault(hook: HookName) -> Option<HookFault> {
    #[cfg(windows)]
    {
        crate::seh::take_exception().map(|e| HookFault::Exception {
            hook,
            code: e.code,
            address: e.address,
        })
    }
    #[cfg(not(windows))]
    {
        let _ = hook;
        None
    }
}

/// A hook call slower than this while a server lock is held is a slow-hook misbehaviour: every
/// worker waiting for the lock stalls with it.
pub const DEFAULT_SLOW_THRESHOLD: Duration = Duration::from_millis(10);

/// A hook call slower than this without a server lock is a slow-hook misbehaviour (it holds up
/// one worker and its client).
pub const DEFAULT_SLOW_UNLOCKED_THRESHOLD: Duration = Duration::from_millis(100);

/// The largest packet a DLL may swap in (a UDP payload).
const MAX_SWAPPED: u32 = 65_535;

/// The hook pointers copied out of the DLL's `DHCP_CALLOUT_TABLE` (without the reserved slots, so
/// the struct is `Send + Sync`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HookTable {
    control: Option<LPDHCP_CONTROL>,
    new_pkt: Option<LPDHCP_NEWPKT>,
    pkt_drop: Option<LPDHCP_DROP_SEND>,
    pkt_send: Option<LPDHCP_DROP_SEND>,
    address_del: Option<LPDHCP_PROB>,
    address_offer: Option<LPDHCP_GIVE_ADDRESS>,
    handle_options: Option<LPDHCP_HANDLE_OPTIONS>,
    delete_client: Option<LPDHCP_DELETE_CLIENT>,
}

impl HookTable {
    pub(crate) fn from_table(table: &DHCP_CALLOUT_TABLE) -> HookTable {
        HookTable {
            control: table.DhcpControlHook,
            new_pkt: table.DhcpNewPktHook,
            pkt_drop: table.DhcpPktDropHook,
            pkt_send: table.DhcpPktSendHook,
            address_del: table.DhcpAddressDelHook,
            address_offer: table.DhcpAddressOfferHook,
            handle_options: table.DhcpHandleOptionsHook,
            delete_client: table.DhcpDeleteClientHook,
        }
    }

    fn is_set(&self, hook: HookName) -> bool {
        match hook {
            HookName::Control => self.control.is_some(),
            HookName::NewPkt => self.new_pkt.is_some(),
            HookName::PktDrop => self.pkt_drop.is_some(),
            HookName::PktSend => self.pkt_send.is_some(),
            HookName::AddressDel => self.address_del.is_some(),
            HookName::AddressOffer => self.address_offer.is_some(),
            HookName::HandleOptions => self.handle_options.is_some(),
            HookName::DeleteClient => self.delete_client.is_some(),
        }
    }
}

/// What the recorder needs to know about one call besides its timing.
struct CallInfo {
    hook: HookName,
    code: Option<u32>,
    ip: Option<Ipv4Addr>,
    alt: Option<Ipv4Addr>,
    xid: Option<u32>,
    /// The client hardware address of the packet (or DeleteClient's address), for reports.
    chaddr: Option<Chaddr>,
    locks: HeldLocks,
}

impl CallInfo {
    /// A misbehaviour report about this call's packet.
    fn report(&self, kind: MisbehaviourKind, explanation: String) -> Misbehaviour {
        Misbehaviour {
            kind,
            hook: self.hook,
            xid: self.xid,
            chaddr: self.chaddr.map(|c| c.text()),
            explanation,
        }
    }
}

/// A packet between its NewPkt and its PktDrop(PROCESSED) on this thread: the engine handles a
/// datagram on one thread from start to end, so a context can be followed without a lock.
#[derive(Debug, Clone, Copy)]
struct OpenPacket {
    /// [`Callout::id`] of the callout whose NewPkt stored the context.
    callout: u64,
    ctx: usize,
    xid: Option<u32>,
    chaddr: Option<Chaddr>,
}

thread_local! {
    static OPEN_PACKETS: RefCell<Vec<OpenPacket>> = const { RefCell::new(Vec::new()) };
}

/// Takes this thread's open packet of callout `id`, if any.
fn take_open_packet(id: u64) -> Option<OpenPacket> {
    OPEN_PACKETS.with(|open| {
        let mut open = open.borrow_mut();
        let at = open.iter().position(|p| p.callout == id)?;
        Some(open.swap_remove(at))
    })
}

/// Distinguishes callouts in [`OpenPacket`] (several may be loaded in one process: tests).
static NEXT_CALLOUT_ID: AtomicU64 = AtomicU64::new(1);

/// The DHCP transaction id of a packet (bytes 4..8, big-endian).
fn xid_of(packet: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = packet.get(4..8)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// A loaded callout DLL: the hooks its entry point set, and one safe method per hook.
///
/// `Send + Sync`: the engine's worker threads call hooks concurrently (the DLL must be
/// thread-safe, as on Windows). A hook whose slot is NULL costs one branch and is not recorded.
/// Every call that reaches the DLL is timed, counted in [`HookStats`], written to the trace sink
/// when one is set, and logged as "slow under the lease lock" (or service lock) when it exceeds
/// the slow threshold while a lock is held.
pub struct Callout {
    hooks: HookTable,
    entry: String,
    path: PathBuf,
    trace: Option<Arc<TraceSink>>,
    stats: Arc<HookStats>,
    slow_threshold: Duration,
    slow_unlocked_threshold: Duration,
    misbehaviour: Arc<MisbehaviourLog>,
    id: u64,
    /// The ChainDlls buffer given to the entry point, kept in case the DLL kept the pointer.
    _chain_dlls: Vec<u16>,
    /// Declared last so it is dropped last: the hook pointers above point into it.
    _library: libloading::Library,
}

impl std::fmt::Debug for Callout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callout")
            .field("entry", &self.entry)
            .field("path", &self.path)
            .field("hooks", &self.hooks_set())
            .finish_non_exhaustive()
    }
}

impl Callout {
    pub(crate) fn new(
        entry: String,
        path: PathBuf,
        hooks: HookTable,
        chain_dlls: Vec<u16>,
        library: libloading::Library,
    ) -> Callout {
        // Trace timestamps count from the load, so the first hook call is not at 0 by definition.
        trace_epoch();
        Callout {
            hooks,
            entry,
            path,
            trace: None,
            stats: Arc::new(HookStats::default()),
            slow_threshold: DEFAULT_SLOW_THRESHOLD,
            slow_unlocked_threshold: DEFAULT_SLOW_UNLOCKED_THRESHOLD,
            misbehaviour: Arc::new(MisbehaviourLog::default()),
            id: NEXT_CALLOUT_ID.fetch_add(1, Ordering::Relaxed),
            _chain_dlls: chain_dlls,
            _library: library,
        }
    }

    /// Writes every hook call to `sink` from now on (`--trace FILE`).
    pub fn with_trace(mut self, sink: Option<Arc<TraceSink>>) -> Callout {
        self.trace = sink;
        self
    }

    /// Sets the duration above which a call under a server lock is a slow-hook misbehaviour
    /// (and ten times that for a call without a lock).
    pub fn with_slow_threshold(mut self, threshold: Duration) -> Callout {
        self.slow_threshold = threshold;
        self.slow_unlocked_threshold = threshold.saturating_mul(10);
        self
    }

    /// Sets both slow-hook thresholds: under a server lock, and without one.
    pub fn with_slow_thresholds(mut self, locked: Duration, unlocked: Duration) -> Callout {
        self.slow_threshold = locked;
        self.slow_unlocked_threshold = unlocked;
        self
    }

    /// The misbehaviour seen so far (shareable with a stats endpoint).
    pub fn misbehaviour(&self) -> &Arc<MisbehaviourLog> {
        &self.misbehaviour
    }

    /// The `CalloutDlls` entry this callout was loaded from.
    pub fn entry(&self) -> &str {
        &self.entry
    }

    /// The path handed to the OS loader.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The hooks the DLL's table sets, in table order.
    pub fn hooks_set(&self) -> Vec<HookName> {
        HookName::ALL
            .into_iter()
            .filter(|h| self.hooks.is_set(*h))
            .collect()
    }

    /// Whether the DLL set `hook`.
    pub fn has_hook(&self, hook: HookName) -> bool {
        self.hooks.is_set(hook)
    }

    /// Per-hook call statistics (shareable with a stats endpoint).
    pub fn stats(&self) -> &Arc<HookStats> {
        &self.stats
    }

    /// Flushes the trace sink, if any.
    pub fn flush_trace(&self) -> std::io::Result<()> {
        match &self.trace {
            Some(sink) => sink.flush(),
            None => Ok(()),
        }
    }

    fn finish(&self, info: CallInfo, started: Instant, ret: u32, fault: Option<&HookFault>) {
        self.finish_with(info, started, ret, fault, Vec::new());
    }

    /// Records a call: statistics, misbehaviour (`found` plus what the timing and `fault` show),
    /// and the trace line.
    fn finish_with(
        &self,
        info: CallInfo,
        started: Instant,
        ret: u32,
        fault: Option<&HookFault>,
        mut found: Vec<Misbehaviour>,
    ) {
        let ended = Instant::now();
        let elapsed = ended.saturating_duration_since(started);
        let dur_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.stats.record(info.hook, dur_us, fault.is_some());
        let threshold = if info.locks.any() {
            self.slow_threshold
        } else {
            self.slow_unlocked_threshold
        };
        // Time the thread only waited for a CPU (a busy machine, not a slow DLL) does not count.
        let waited = crate::cpu_wait::waited_for_cpu(ended, elapsed, threshold).unwrap_or_default();
        if elapsed.saturating_sub(waited) > threshold {
            let why = match info.locks.names().first() {
                Some(lock) => format!(
                    "slow under the {lock} lock (threshold {} us): every worker waiting for it stalls",
                    threshold.as_micros()
                ),
                None => format!(
                    "slow (threshold {} us without a lock): its client waits",
                    threshold.as_micros()
                ),
            };
            let queued = if waited.is_zero() {
                String::new()
            } else {
                format!(
                    " ({} us of it waiting for a CPU, not counted)",
                    waited.as_micros()
                )
            };
            found.push(info.report(
                MisbehaviourKind::SlowHook,
                format!("took {dur_us} us{queued}, {why}"),
            ));
        }
        if let Some(fault) = fault {
            tracing::warn!(hook = %info.hook, dll = %self.entry, xid = ?info.xid, "callout fault: {fault}");
            let kind = match fault {
                HookFault::WrotePastBuffer { .. } => Some(MisbehaviourKind::WrotePastBuffer),
                HookFault::SizeAboveCapacity { .. }
                | HookFault::NullBuffer { .. }
                | HookFault::SwappedTooLarge { .. } => Some(MisbehaviourKind::BadSize),
                // An exception the shim ended (Windows, and a PE DLL under wine): the DLL
                // crashed, even though the server (as Microsoft's) carries on.
                HookFault::Exception { .. } => Some(MisbehaviourKind::Crash),
                HookFault::PacketTooLarge { .. } | HookFault::Host { .. } => None,
            };
            if let Some(kind) = kind {
                found.push(info.report(kind, fault.to_string()));
            }
        }
        crate::isolate::note_call(ret, dur_us, &found);
        for report in &found {
            self.misbehaviour.record(report);
        }
        if let Some(sink) = &self.trace {
            sink.record(&mut TraceRecord {
                seq: 0,
                hook: info.hook,
                code: info.code,
                ip: info.ip,
                alt: info.alt,
                xid: info.xid,
                locks: info.locks,
                thread: thread_id(),
                ret,
                dur_us,
                ts_us: u64::try_from(started.saturating_duration_since(trace_epoch()).as_micros())
                    .unwrap_or(u64::MAX),
                fault: fault.map(|f| f.to_string()),
                misbehaviour: found,
            });
        }
    }

    /// A packet no DWORD can size: the hook is not called; logged like every other fault.
    fn too_large(&self, hook: HookName, len: usize) -> HookFault {
        let fault = HookFault::PacketTooLarge { hook, len };
        tracing::warn!(hook = %hook, dll = %self.entry, "callout fault: {fault}");
        fault
    }

    /// Calls an in/out-buffer hook (NewPkt, PktDrop, PktSend) on a copy of `packet` in this
    /// thread's guarded buffer, then applies the rules of docs/hooks.md section 6 to the result.
    /// `call` receives `(&mut Packet, &mut PacketSize)` and returns the hook's DWORD; `check`
    /// then says what misbehaviour the call showed besides timing and buffer faults.
    fn call_in_out(
        &self,
        info: CallInfo,
        packet: &mut Vec<u8>,
        call: impl FnOnce(*mut *mut u8, *mut u32) -> u32,
        check: impl FnOnce(&CallInfo) -> Vec<Misbehaviour>,
    ) -> Result<(), HookFault> {
        let hook = info.hook;
        let Ok(len) = u32::try_from(packet.len()) else {
            return Err(self.too_large(hook, packet.len()));
        };
        let started = Instant::now();
        let (ret, result) = with_thread_buffer(|buffer| {
            let base = buffer.load(packet);
            let mut ptr = base;
            let mut size = len;
            let ret = call(&mut ptr, &mut size);
            if let Some(fault) = exception_fault(hook) {
                // The call was cut short: whatever it left in the buffer is not a result.
                let _ = buffer.check_guards();
                return (ret, Err(fault));
            }
            (ret, take_result(hook, buffer, base, ptr, size, packet))
        });
        let found = check(&info);
        self.finish_with(info, started, ret, result.as_ref().err(), found);
        result
    }

    /// Calls a by-value hook (HandleOptions, AddressDel, AddressOffer) on a copy of `packet` in this
    /// thread's guarded buffer (the DLL gets a writable `LPBYTE`; our packet stays untouched).
    /// `call` receives `(Packet, PacketSize)` and returns the hook's DWORD.
    fn call_by_value(
        &self,
        info: CallInfo,
        packet: &[u8],
        call: impl FnOnce(*mut u8, u32) -> u32,
    ) -> Result<(), HookFault> {
        let hook = info.hook;
        let Ok(len) = u32::try_from(packet.len()) else {
            return Err(self.too_large(hook, packet.len()));
        };
        let started = Instant::now();
        let (ret, result, written) = with_thread_buffer(|buffer| {
            let base = buffer.load(packet);
            let ret = call(base, len);
            let result = buffer
                .check_guards()
                .map_err(|zone| HookFault::WrotePastBuffer { hook, zone });
            let result = match exception_fault(hook) {
                Some(fault) => Err(fault),
                None => result,
            };
            // The DLL got our copy by value: any change means it writes where it must not.
            let written = buffer.contents(packet.len()) != Some(packet);
            (ret, result, written)
        });
        let found = if written {
            vec![info.report(
                MisbehaviourKind::WroteReadOnlyPacket,
                format!("{hook} wrote into the packet it was given by value (changes are lost)"),
            )]
        } else {
            Vec::new()
        };
        self.finish_with(info, started, ret, result.as_ref().err(), found);
        result
    }

    /// `DhcpControlHook(code, NULL)`: service START (after the entry succeeded, before the first
    /// packet), STOP (after the last packet hook; no hook after it), PAUSE, CONTINUE. The runtime
    /// calls it under the service state lock (`locks` = [`HeldLocks::Service`]). The return value is
    /// recorded and otherwise ignored. Returns it, or `None` when the hook is not set.
    pub fn control(&self, code: ControlCode, locks: HeldLocks) -> Option<u32> {
        let hook = self.hooks.control?;
        let started = Instant::now();
        // SAFETY: the DLL set this pointer in its table for exactly this signature; the library is
        // loaded for as long as `self` lives; `lpReserved` is NULL as documented.
        let ret =
            unsafe { call_hook!(hook(code.code(), std::ptr::null_mut::<std::ffi::c_void>())) };
        let info = CallInfo {
            hook: HookName::Control,
            code: Some(code.code()),
            ip: None,
            alt: None,
            xid: None,
            chaddr: None,
            locks,
        };
        let fault = exception_fault(HookName::Control);
        self.finish(info, started, ret, fault.as_ref());
        Some(ret)
    }

    /// `DhcpNewPktHook(&Packet, &PacketSize, ip, NULL, &PktContext, &ProcessIt)`: right after a
    /// datagram is received, before any protocol work, without server locks. The DLL gets a
    /// writable buffer of at least 4096 bytes holding `packet`; it may edit it, change the size, or
    /// swap in its own buffer (copied out at once, never freed by calloutd). `packet` is replaced by
    /// the result; `ctx` receives the context the DLL stored (pass it to every later hook of this
    /// packet). Returns `Ok(false)` when the DLL set `ProcessIt = FALSE` (drop the packet), and a
    /// [`HookFault`] (drop with `DHCP_DROP_INVALID`; `packet` unchanged) when it broke the buffer
    /// rules (`ctx` is still updated so the context reaches PktDrop). With the hook not set: `Ok(true)`,
    /// nothing changed.
    pub fn new_pkt(
        &self,
        packet: &mut Vec<u8>,
        ip: Ipv4Addr,
        ctx: &mut usize,
        locks: HeldLocks,
    ) -> Result<bool, HookFault> {
        let Some(hook) = self.hooks.new_pkt else {
            return Ok(true);
        };
        let info = CallInfo {
            hook: HookName::NewPkt,
            code: None,
            ip: Some(ip),
            alt: None,
            xid: xid_of(packet),
            chaddr: Chaddr::of_packet(packet),
            locks,
        };
        let mut process_it: BOOL = 1;
        let context = std::cell::Cell::new(*ctx as LPVOID);
        // The engine ends every packet with PktDrop(PROCESSED) on the thread that started it, so a
        // packet of ours still open here never ended.
        let unfinished = take_open_packet(self.id);
        let frees_contexts = self.hooks.pkt_drop.is_some();
        let check = |info: &CallInfo| {
            let mut found = Vec::new();
            if let Some(old) = unfinished.filter(|old| old.ctx != 0) {
                found.push(Misbehaviour {
                    kind: MisbehaviourKind::LeakedContext,
                    hook: HookName::NewPkt,
                    xid: old.xid,
                    chaddr: old.chaddr.map(|c| c.text()),
                    explanation: format!(
                        "the context 0x{:x} NewPkt stored for this packet never reached PktDrop(PROCESSED), where it would be freed",
                        old.ctx
                    ),
                });
            }
            if !context.get().is_null() && !frees_contexts {
                found.push(info.report(
                    MisbehaviourKind::LeakedContext,
                    format!(
                        "NewPkt stored the context 0x{:x}, but the DLL set no PktDrop hook to free it in",
                        context.get() as usize
                    ),
                ));
            }
            found
        };
        let (xid, chaddr) = (info.xid, info.chaddr);
        let result = self.call_in_out(
            info,
            packet,
            |packet_ptr, size_ptr| {
                // SAFETY: the pointers reference live locals and this thread's buffer, valid for the
                // whole call; the buffer holds at least 4096 writable bytes between guard zones; the
                // DLL set this hook for this signature and stays loaded while `self` lives.
                unsafe {
                    call_hook!(hook(
                        packet_ptr,
                        size_ptr,
                        u32::from(ip),
                        std::ptr::null_mut::<std::ffi::c_void>(),
                        context.as_ptr(),
                        &mut process_it,
                    ))
                }
            },
            check,
        );
        // Even after a fault the DLL may have stored a context: the engine passes it on to
        // PktDrop(INVALID) and PktDrop(PROCESSED), where the DLL frees it.
        *ctx = context.get() as usize;
        if frees_contexts {
            let open = OpenPacket {
                callout: self.id,
                ctx: *ctx,
                xid,
                chaddr,
            };
            OPEN_PACKETS.with(|packets| packets.borrow_mut().push(open));
        }
        result.map(|()| process_it != 0)
    }

    /// `DhcpHandleOptionsHook(Packet, PacketSize, NULL, PktContext, &ServerOptions)`: once per packet
    /// after NewPkt, on the packet as NewPkt left it, without server locks. `ServerOptions` points
    /// into a copy of `packet` per docs/hooks.md section 4.3 (NULL = absent; `ScopeId` →
    /// `scope_id` in host order), valid only during the call. The return value is recorded and
    /// ignored.
    pub fn handle_options(
        &self,
        packet: &[u8],
        ctx: usize,
        scope_id: Option<Ipv4Addr>,
        locks: HeldLocks,
    ) -> Result<(), HookFault> {
        let Some(hook) = self.hooks.handle_options else {
            return Ok(());
        };
        let info = CallInfo {
            hook: HookName::HandleOptions,
            code: None,
            ip: None,
            alt: None,
            xid: xid_of(packet),
            chaddr: Chaddr::of_packet(packet),
            locks,
        };
        let spans = OptionSpans::parse(packet);
        let mut scope = scope_id.map(u32::from);
        self.call_by_value(info, packet, |base, size| {
            let scope_ptr = scope.as_mut().map(|s| s as *mut u32);
            // SAFETY: `base` holds a copy of `packet`, from which `spans` were parsed; it and
            // `scope` outlive the call below, the only use of the options.
            let mut options = unsafe { spans.to_server_options(base, scope_ptr) };
            // SAFETY: `base` points to `size` readable and writable bytes of this thread's buffer and
            // `options` to a live DHCP_SERVER_OPTIONS, for the whole call; the DLL set this hook for
            // this signature and stays loaded while `self` lives.
            unsafe {
                call_hook!(hook(
                    base,
                    size,
                    std::ptr::null_mut::<std::ffi::c_void>(),
                    ctx as LPVOID,
                    &mut options,
                ))
            }
        })
    }

    /// `DhcpPktDropHook(&Packet, &PacketSize, reason, ip, NULL, PktContext)`, without server locks:
    /// once with the reason when a packet is dropped, and always last with
    /// [`DropReason::Processed`] (where the DLL frees its context). `packet` is the request as NewPkt
    /// left it, in a ≥ 4096-byte writable buffer; edits come back into `packet`. The return value is
    /// recorded and ignored; a fault is reported (the packet is being dropped anyway).
    pub fn pkt_drop(
        &self,
        packet: &mut Vec<u8>,
        reason: DropReason,
        ip: Ipv4Addr,
        ctx: usize,
        locks: HeldLocks,
    ) -> Result<(), HookFault> {
        let Some(hook) = self.hooks.pkt_drop else {
            return Ok(());
        };
        self.drop_or_send(
            hook,
            HookName::PktDrop,
            reason.code(),
            packet,
            ip,
            ctx,
            locks,
        )
    }

    /// `DhcpPktSendHook(&Packet, &PacketSize, DHCP_SEND_PACKET, ip, NULL, PktContext)`: directly
    /// before any reply is sent, without server locks; `ip` is the address the request came in on.
    /// The DLL may rewrite `reply` (≥ 4096-byte buffer) or swap in its own buffer and size; the
    /// result replaces `reply`. An empty `reply` afterwards suppresses the send. A [`HookFault`]
    /// means: do not send (`reply` unchanged).
    pub fn pkt_send(
        &self,
        reply: &mut Vec<u8>,
        ip: Ipv4Addr,
        ctx: usize,
        locks: HeldLocks,
    ) -> Result<(), HookFault> {
        let Some(hook) = self.hooks.pkt_send else {
            return Ok(());
        };
        self.drop_or_send(
            hook,
            HookName::PktSend,
            DHCP_SEND_PACKET,
            reply,
            ip,
            ctx,
            locks,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn drop_or_send(
        &self,
        hook: LPDHCP_DROP_SEND,
        name: HookName,
        code: u32,
        packet: &mut Vec<u8>,
        ip: Ipv4Addr,
        ctx: usize,
        locks: HeldLocks,
    ) -> Result<(), HookFault> {
        // PktDrop(PROCESSED) ends the packet NewPkt started on this thread: it must get the
        // context NewPkt stored, or that one is never freed.
        let opened = if name == HookName::PktDrop && code == DropReason::Processed.code() {
            take_open_packet(self.id)
        } else {
            None
        };
        let check = |info: &CallInfo| {
            match opened {
            Some(open) if open.ctx != ctx => vec![info.report(
                MisbehaviourKind::LeakedContext,
                format!(
                    "PktDrop(PROCESSED) got the context 0x{ctx:x}, but NewPkt stored 0x{:x} for this packet: that one is never freed",
                    open.ctx
                ),
            )],
            _ => Vec::new(),
        }
        };
        let info = CallInfo {
            hook: name,
            code: Some(code),
            ip: Some(ip),
            alt: None,
            xid: xid_of(packet),
            chaddr: Chaddr::of_packet(packet),
            locks,
        };
        self.call_in_out(
            info,
            packet,
            |packet_ptr, size_ptr| {
                // SAFETY: as in `new_pkt`: live pointers to this thread's guarded ≥ 4096-byte buffer
                // and its size for the whole call; the hook matches this signature and stays loaded.
                unsafe {
                    call_hook!(hook(
                        packet_ptr,
                        size_ptr,
                        code,
                        u32::from(ip),
                        std::ptr::null_mut::<std::ffi::c_void>(),
                        ctx as LPVOID,
                    ))
                }
            },
            check,
        )
    }

    /// `DhcpAddressDelHook(Packet, PacketSize, code, ip, alt, NULL, PktContext)`, under the lease
    /// lock (`locks` = [`HeldLocks::Lease`]): `alt` left the client because of `code` (CONFLICT,
    /// DECLINE, RELEASE, NACKED). `packet` is the client's request, passed read-only (the DLL gets
    /// a copy). The return value is recorded and ignored.
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
        let Some(hook) = self.hooks.address_del else {
            return Ok(());
        };
        let info = CallInfo {
            hook: HookName::AddressDel,
            code: Some(code.code()),
            ip: Some(ip),
            alt: Some(alt),
            xid: xid_of(packet),
            chaddr: Chaddr::of_packet(packet),
            locks,
        };
        self.call_by_value(info, packet, |base, size| {
            // SAFETY: `base` points to `size` bytes of this thread's buffer for the whole call; the
            // hook matches this signature and stays loaded while `self` lives.
            unsafe {
                call_hook!(hook(
                    base,
                    size,
                    code.code(),
                    u32::from(ip),
                    u32::from(alt),
                    std::ptr::null_mut::<std::ffi::c_void>(),
                    ctx as LPVOID,
                ))
            }
        })
    }

    /// `DhcpAddressOfferHook(Packet, PacketSize, code, ip, alt, type, lease, NULL, PktContext)`,
    /// under the lease lock: directly before an ACK to a REQUEST (or a BOOTREPLY that gives a BOOTP
    /// client an address); `code` NEW or OLD (renewal), `alt` the address, `lease_secs` 0xFFFFFFFF
    /// for infinite. `packet` is the client's request (read-only copy). The return value is
    /// recorded and ignored.
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
        let Some(hook) = self.hooks.address_offer else {
            return Ok(());
        };
        let info = CallInfo {
            hook: HookName::AddressOffer,
            code: Some(code.code()),
            ip: Some(ip),
            alt: Some(alt),
            xid: xid_of(packet),
            chaddr: Chaddr::of_packet(packet),
            locks,
        };
        self.call_by_value(info, packet, |base, size| {
            // SAFETY: `base` points to `size` bytes of this thread's buffer for the whole call; the
            // hook matches this signature and stays loaded while `self` lives.
            unsafe {
                call_hook!(hook(
                    base,
                    size,
                    code.code(),
                    u32::from(ip),
                    u32::from(alt),
                    client_type.code(),
                    lease_secs,
                    std::ptr::null_mut::<std::ffi::c_void>(),
                    ctx as LPVOID,
                ))
            }
        })
    }

    /// `DhcpDeleteClientHook(ip, HwAddress, HwAddressLength, 0, 0)`, under the lease lock: directly
    /// before a lease is removed (administrative delete, expired-lease purge); `hw` is the lease's
    /// hardware address (chaddr bytes). The return value is recorded and ignored.
    pub fn delete_client(
        &self,
        ip: Ipv4Addr,
        hw: &[u8],
        locks: HeldLocks,
    ) -> Result<(), HookFault> {
        let Some(hook) = self.hooks.delete_client else {
            return Ok(());
        };
        let info = CallInfo {
            hook: HookName::DeleteClient,
            code: None,
            ip: Some(ip),
            alt: None,
            xid: None,
            chaddr: Chaddr::of_bytes(hw),
            locks,
        };
        self.call_by_value(info, hw, |base, len| {
            // SAFETY: `base` points to `len` bytes (a copy of `hw`) of this thread's buffer for the
            // whole call; the hook matches this signature and stays loaded while `self` lives.
            unsafe { call_hook!(hook(u32::from(ip), base, len, 0u32, 0u32)) }
        })
    }
}

/// Applies docs/hooks.md section 6 after an in/out call: guard zones intact; our own buffer with a
/// size within its capacity is copied back; a swapped-in buffer is copied out at once (never
/// freed). On a fault `packet` is left as it was.
fn take_result(
    hook: HookName,
    buffer: &mut GuardedBuffer,
    base: *mut u8,
    ptr: *mut u8,
    size: u32,
    packet: &mut Vec<u8>,
) -> Result<(), HookFault> {
    buffer
        .check_guards()
        .map_err(|zone| HookFault::WrotePastBuffer { hook, zone })?;
    if ptr == base {
        let contents = buffer
            .contents(size as usize)
            .ok_or(HookFault::SizeAboveCapacity {
                hook,
                size,
                capacity: buffer.capacity(),
            })?;
        packet.clear();
        packet.extend_from_slice(contents);
        return Ok(());
    }
    if size == 0 {
        packet.clear();
        return Ok(());
    }
    if ptr.is_null() {
        return Err(HookFault::NullBuffer { hook, size });
    }
    if size > MAX_SWAPPED {
        return Err(HookFault::SwappedTooLarge { hook, size });
    }
    // SAFETY: the DLL swapped in its own buffer and declared `size` bytes of it (bounded above by a
    // UDP payload); the API makes the DLL responsible for keeping it valid until the hook returns
    // and beyond, and we copy it out immediately without keeping or freeing the pointer.
    let swapped = unsafe { std::slice::from_raw_parts(ptr.cast_const(), size as usize) };
    packet.clear();
    packet.extend_from_slice(swapped);
    Ok(())
}
