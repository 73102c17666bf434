//! The callout host: the child process side (`calloutd` in its hidden host mode). It loads the
//! DLL with [`load_callout`](crate::load_callout)'s procedure and serves each slot on a thread of
//! its own by calling the in-process [`Callout`] methods, so buffers, guard zones, swapped-buffer
//! copy-out, `PktContext`, `ProcessIt` and fault detection are those of in-process mode.

use super::affinity::Follower;
#[cfg(unix)]
use super::shm::{futex_wait, futex_wake};
use super::shm::{host_state, state, status, Region, Spinner, SLOT_DATA};
use super::wire::{decode_locks, hook_from_id};
use super::HostConfig;
use crate::load::load_callout_observed;
use crate::{Callout, HookFault, HookName};
use dhcpssdk::{ClientType, ControlCode, DropReason, GiveCode, ProbCode};
use std::cell::Cell;
use std::fs::File;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

/// The header, for the fatal-signal handler.
static HEADER: AtomicPtr<super::shm::Header> = AtomicPtr::new(std::ptr::null_mut());

thread_local! {
    /// 1 + the slot this thread serves (0 on other threads), for the fatal-signal handler.
    static SLOT: Cell<u32> = const { Cell::new(0) };
}

/// Runs the host until it is killed or its parent goes away. `fd` is the inherited memfd,
/// `parent` the server's pid.
#[cfg(unix)]
pub fn host_main(fd: i32, parent: u32) -> ExitCode {
    let region = match Region::open(fd) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("calloutd callout host: {e}");
            return ExitCode::FAILURE;
        }
    };
    HEADER.store(
        std::ptr::from_ref(region.header()).cast_mut(),
        Ordering::Release,
    );
    install_fatal_handlers();
    watch_parent(parent);
    run(region, None)
}

/// The host with the pipe-doorbell transport (a Windows `calloutd.exe` under wine, which has no
/// futex): maps the server's region at `shm`, reads posted slot indexes from `bell_in` and
/// writes finished ones (and the ready byte) to `bell_out`. Exits when `bell_in` ends (the
/// server is gone).
pub fn host_main_bells(shm: &Path, bell_in: &Path, bell_out: &Path) -> ExitCode {
    let opened = Region::open_path(shm)
        .map_err(|e| format!("{}: {e}", shm.display()))
        .and_then(|region| {
            let input = File::open(bell_in).map_err(|e| format!("{}: {e}", bell_in.display()))?;
            let output = File::options()
                .write(true)
                .open(bell_out)
                .map_err(|e| format!("{}: {e}", bell_out.display()))?;
            Ok((region, input, output))
        });
    let (region, input, output) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!("calloutd callout host: {e}");
            return ExitCode::FAILURE;
        }
    };
    let region = Arc::new(region);
    HEADER.store(
        std::ptr::from_ref(region.header()).cast_mut(),
        Ordering::Release,
    );
    #[cfg(unix)]
    install_fatal_handlers();
    #[cfg(windows)]
    install_exception_filter();
    let bells = Arc::new(HostBells {
        output,
        threads: OnceLock::new(),
    });
    let reader = bells.clone();
    let _ = std::thread::Builder::new()
        .name("host-bells".into())
        .spawn(move || reader.read_requests(input));
    run(region, Some(bells))
}

/// The host's side of the pipe doorbells.
struct HostBells {
    output: File,
    /// The slot threads, once started (the reader unparks them).
    threads: OnceLock<Vec<Thread>>,
}

/// The byte that tells the server the host state changed (as `bells::READY`).
const BELL_READY: u8 = 0xFF;

impl HostBells {
    /// Wakes the slot thread of every index the server posts; ends the host when the server is
    /// gone (end of file).
    fn read_requests(&self, mut input: File) {
        let mut buf = [0u8; 256];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) | Err(_) => std::process::exit(0),
                Ok(n) => n,
            };
            if let Some(threads) = self.threads.get() {
                for &i in &buf[..n] {
                    if let Some(t) = threads.get(usize::from(i)) {
                        t.unpark();
                    }
                }
            }
        }
    }

    fn ring(&self, byte: u8) {
        // A one-byte pipe write is atomic; a failure means the server is gone.
        if (&self.output).write_all(&[byte]).is_err() {
            std::process::exit(0);
        }
    }
}

/// Loads the callout and serves the slots.
fn run(region: Arc<Region>, bells: Option<Arc<HostBells>>) -> ExitCode {
    let config: HostConfig = match region
        .read_report()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(c) => c,
        None => {
            eprintln!("calloutd callout host: unreadable load configuration");
            return ExitCode::FAILURE;
        }
    };
    let header = region.header();
    header
        .host_state
        .store(host_state::LOADING, Ordering::Release);
    let loaded = load_callout_observed(
        &config.callout,
        &mut |i, so_far| {
            if let Ok(json) = serde_json::to_vec(so_far) {
                region.write_report(&json);
            }
            header.attempt.store(i as u32, Ordering::Release);
        },
        config.permissions.as_deref(),
    );
    let report = serde_json::to_vec(&loaded.report).unwrap_or_default();
    if !region.write_report(&report) {
        eprintln!("calloutd callout host: the load report does not fit the shared region");
        return ExitCode::FAILURE;
    }
    let callout = loaded.callout.map(|c| {
        Arc::new(c.with_slow_thresholds(
            Duration::from_micros(config.slow_locked_us),
            Duration::from_micros(config.slow_unlocked_us),
        ))
    });
    header
        .host_state
        .store(host_state::READY, Ordering::Release);
    match &bells {
        Some(b) => b.ring(BELL_READY),
        #[cfg(unix)]
        None => futex_wake(&header.host_state),
        #[cfg(not(unix))]
        None => {}
    }
    let Some(callout) = callout else {
        return ExitCode::SUCCESS;
    };
    let threads: Vec<_> = (0..region.slots())
        .filter_map(|i| {
            let region = region.clone();
            let callout = callout.clone();
            let bells = bells.clone();
            std::thread::Builder::new()
                .name(format!("host-slot-{i}"))
                .spawn(move || serve_slot(&region, i, &callout, bells.as_deref()))
                .ok()
        })
        .collect();
    if let Some(b) = &bells {
        let _ = b
            .threads
            .set(threads.iter().map(|t| t.thread().clone()).collect());
        // A call posted before the threads were known: every thread looks at its slot once.
        for t in &threads {
            t.thread().unpark();
        }
    }
    for t in threads {
        let _ = t.join();
    }
    ExitCode::SUCCESS
}

/// Exits when the server is gone (the host is reparented).
#[cfg(unix)]
fn watch_parent(parent: u32) {
    let _ = std::thread::Builder::new()
        .name("host-parent-watch".into())
        .spawn(move || loop {
            // SAFETY: getppid has no preconditions.
            let now = unsafe { libc::getppid() };
            if now as u32 != parent {
                std::process::exit(0);
            }
            std::thread::sleep(Duration::from_millis(500));
        });
}

#[cfg(unix)]
extern "C" fn on_fatal_signal(signal: libc::c_int) {
    let header = HEADER.load(Ordering::Acquire);
    let slot = SLOT.with(Cell::get);
    if !header.is_null() {
        // SAFETY: the header pointer refers to the mapping, which is never unmapped in the host.
        // Atomic stores are async-signal-safe.
        let header = unsafe { &*header };
        header.fault_signal.store(signal as u32, Ordering::SeqCst);
        header.fault_slot.store(slot, Ordering::SeqCst);
    }
    // SA_RESETHAND restored the default action: raising the signal again ends the process with
    // it, as it would have ended without the handler (also for a raise() the code could survive).
    // SAFETY: raise is async-signal-safe.
    unsafe {
        libc::raise(signal);
    }
}

#[cfg(unix)]
fn install_fatal_handlers() {
    for signal in [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGABRT,
        libc::SIGFPE,
        libc::SIGILL,
    ] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores atomics (async-signal-safe).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fatal_signal as *const () as usize;
            action.sa_flags = libc::SA_RESETHAND | libc::SA_NODEFER;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// An exception no handler took (one raised outside a hook call, which the exception shim
/// guards: in the entry point, DllMain, a thread of the DLL's own): recorded for the server like a
/// fatal signal (the code in `fault_signal`, which no signal number reaches) and the host ends at
/// once with the code as its exit status. Without this, wine would start its debugger first
/// (`winedbg`: a backtrace, or a crash dialog that holds the dead host), and Windows Error
/// Reporting would do the like.
#[cfg(windows)]
unsafe extern "system" fn on_unhandled_exception(
    info: *const windows_sys::Win32::System::Diagnostics::Debug::EXCEPTION_POINTERS,
) -> i32 {
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, TerminateProcess};
    // SAFETY: the system passes valid exception pointers (or NULL, checked) for the duration of
    // the filter.
    let code = unsafe {
        info.as_ref()
            .and_then(|i| i.ExceptionRecord.as_ref())
            .map_or(0, |r| r.ExceptionCode as u32)
    };
    let header = HEADER.load(Ordering::Acquire);
    if !header.is_null() {
        // SAFETY: the header pointer refers to the mapping, which is never unmapped in the host.
        let header = unsafe { &*header };
        header.fault_signal.store(code, Ordering::SeqCst);
        header
            .fault_slot
            .store(SLOT.with(Cell::get), Ordering::SeqCst);
    }
    // SAFETY: ends this process; GetCurrentProcess's pseudo-handle is always valid.
    unsafe {
        TerminateProcess(GetCurrentProcess(), code);
    }
    windows_sys::Win32::System::Diagnostics::Debug::EXCEPTION_EXECUTE_HANDLER
}

#[cfg(windows)]
fn install_exception_filter() {
    // SAFETY: installs a filter that only stores atomics and ends the process.
    unsafe {
        windows_sys::Win32::System::Diagnostics::Debug::SetUnhandledExceptionFilter(Some(
            on_unhandled_exception,
        ));
    }
}

fn serve_slot(region: &Region, i: usize, callout: &Callout, bells: Option<&HostBells>) {
    let Some(slot) = region.slot(i) else {
        return;
    };
    SLOT.with(|s| s.set(i as u32 + 1));
    let mut packet = Vec::with_capacity(SLOT_DATA);
    let mut spinner = Spinner::default();
    let mut follower = Follower::default();
    loop {
        // The next hook of a packet often follows within microseconds: a short spin saves the
        // sleep and the wake-up; a long one would take the CPU from the server that posts it. On
        // its caller's CPU (affinity.rs) the caller cannot post while this thread spins: no spin.
        let mut now = if follower.following() {
            slot.state.load(Ordering::Acquire)
        } else {
            spinner.spin(&slot.state, |s| s != state::REQUEST)
        };
        while now != state::REQUEST {
            match bells {
                // The reader unparks this thread for each doorbell byte of its slot.
                Some(_) => std::thread::park(),
                #[cfg(unix)]
                None => futex_wait(&slot.state, now, None),
                #[cfg(not(unix))]
                None => std::thread::park(),
            }
            now = slot.state.load(Ordering::Acquire);
        }
        slot.state.store(state::RUNNING, Ordering::Release);
        follower.follow(slot.caller_cpu.load(Ordering::Relaxed));
        serve_one(region, i, callout, &mut packet);
        slot.state.store(state::DONE, Ordering::Release);
        match bells {
            Some(b) => b.ring(i as u8),
            #[cfg(unix)]
            None => futex_wake(&slot.state),
            #[cfg(not(unix))]
            None => {}
        }
    }
}

/// Runs one posted call and writes its result.
fn serve_one(region: &Region, i: usize, callout: &Callout, packet: &mut Vec<u8>) {
    let Some(slot) = region.slot(i) else {
        return;
    };
    let bad = |why: &str| {
        let _ = region.write_data(i, why.as_bytes());
        slot.out_len.store(why.len() as u32, Ordering::Relaxed);
        slot.status.store(status::BAD_REQUEST, Ordering::Relaxed);
    };
    let Some(hook) = hook_from_id(slot.hook.load(Ordering::Relaxed)) else {
        return bad("unknown hook id");
    };
    let len = slot.len.load(Ordering::Relaxed) as usize;
    if !region.read_data(i, len, packet) {
        return bad("packet length out of range");
    }
    let code = slot.code.load(Ordering::Relaxed);
    let ip = Ipv4Addr::from(slot.ip.load(Ordering::Relaxed));
    let alt = Ipv4Addr::from(slot.alt.load(Ordering::Relaxed));
    let ctx = slot.ctx.load(Ordering::Relaxed) as usize;
    let locks = decode_locks(slot.locks.load(Ordering::Relaxed));
    let scope = (slot.has_scope.load(Ordering::Relaxed) != 0)
        .then(|| Ipv4Addr::from(slot.scope.load(Ordering::Relaxed)));
    let mut out_ctx = ctx;
    let mut process_it = true;
    let mut returns_packet = false;
    crate::isolate::take_call();
    let result: Result<(), HookFault> = match hook {
        HookName::Control => {
            let Some(code) = ControlCode::from_code(code) else {
                return bad("unknown control code");
            };
            callout.control(code, locks);
            Ok(())
        }
        HookName::NewPkt => {
            returns_packet = true;
            let r = callout.new_pkt(packet, ip, &mut out_ctx, locks);
            r.map(|p| process_it = p)
        }
        HookName::HandleOptions => callout.handle_options(packet, ctx, scope, locks),
        HookName::PktDrop => {
            let Some(reason) = DropReason::from_code(code) else {
                return bad("unknown drop reason");
            };
            returns_packet = true;
            callout.pkt_drop(packet, reason, ip, ctx, locks)
        }
        HookName::PktSend => {
            returns_packet = true;
            callout.pkt_send(packet, ip, ctx, locks)
        }
        HookName::AddressDel => {
            let Some(code) = ProbCode::from_code(code) else {
                return bad("unknown prob code");
            };
            callout.address_del(packet, code, ip, alt, ctx, locks)
        }
        HookName::AddressOffer => {
            let (Some(code), Some(client_type)) = (
                GiveCode::from_code(code),
                ClientType::from_code(slot.client_type.load(Ordering::Relaxed)),
            ) else {
                return bad("unknown give code or client type");
            };
            let lease = slot.lease.load(Ordering::Relaxed);
            callout.address_offer(packet, code, ip, alt, client_type, lease, ctx, locks)
        }
        HookName::DeleteClient => callout.delete_client(ip, packet, locks),
    };
    slot.out_ctx.store(out_ctx as u64, Ordering::Relaxed);
    slot.process_it
        .store(u32::from(process_it), Ordering::Relaxed);
    let Some((ret, dur_us, found)) = crate::isolate::take_call() else {
        slot.status.store(status::NOT_SET, Ordering::Relaxed);
        slot.out_len.store(0, Ordering::Relaxed);
        slot.mis_len.store(0, Ordering::Relaxed);
        return;
    };
    slot.ret.store(ret, Ordering::Relaxed);
    slot.dur_us.store(dur_us, Ordering::Relaxed);
    let fault_text;
    let (out, st): (&[u8], u32) = match &result {
        Ok(()) if returns_packet => (&packet[..], status::CALLED),
        Ok(()) => (&[], status::CALLED),
        Err(fault) => {
            fault_text = fault.to_string();
            let text = fault_text.as_bytes();
            (&text[..text.len().min(4096)], status::FAULT)
        }
    };
    if !region.write_data(i, out) {
        return bad("result packet larger than the slot");
    }
    let mis = if found.is_empty() {
        Vec::new()
    } else {
        serde_json::to_vec(&found).unwrap_or_default()
    };
    // Misbehaviour that does not fit after the packet is dropped rather than the call.
    let mis_len = if region.write_data_at(i, out.len(), &mis) {
        mis.len()
    } else {
        0
    };
    slot.out_len.store(out.len() as u32, Ordering::Relaxed);
    slot.mis_len.store(mis_len as u32, Ordering::Relaxed);
    slot.status.store(st, Ordering::Relaxed);
}
