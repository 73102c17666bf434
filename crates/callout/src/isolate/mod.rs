//! `--isolate`: the callout runs in a child process (`calloutd` in a hidden host mode), so a
//! crash or a hang in any hook is reported and survived instead of ending the server.
//!
//! - [`IsolatedCallout::load`] starts the host, which loads the DLL with exactly the in-process
//!   procedure (order, ChainDlls, version 0, fallback) and runs the in-process [`Callout`]
//!   methods for every call, so what the DLL sees is identical by construction. A host that dies
//!   while loading a candidate is event 1032; the next candidate is tried in a new host.
//! - Transport: one shared memory region (memfd + mmap) with one slot per calling thread (threads
//!   beyond the slot count share); a call is one round trip on the slot's futex word, and copies
//!   the packet in and the result out, nothing more. A Windows DLL (PE) is hosted by
//!   `calloutd.exe` under wine ([`pe`]), which maps the same memfd and is woken through pipes
//!   instead of the futex. Every length, state and id read back is
//!   checked; a host that breaks the protocol is killed and treated like a crash.
//! - A crash (fatal signal or exit) or a hang past [`IsolateOptions::hook_timeout`] in a hook is
//!   logged as event 1031 with the hook, the packet (xid, chaddr), the signal and the DLL path,
//!   counted ([`IsolatedCallout::counters`]) and traced with a `fault`; the packet is dropped
//!   (its PktSend is refused, so no reply leaves). Then [`CrashPolicy`] applies.
//! - The packet that met the crash is not given to the DLL again: each of its later hooks is a
//!   trace line with a `fault` starting "not delivered", and its reply is not sent. Other packets
//!   whose NewPkt ran in a host that died since reach the new host with PktContext NULL (their
//!   context died with the old host).
//!
//! [`Callout`]: crate::Callout

mod affinity;
#[cfg(unix)]
mod bells;
mod host;
#[cfg(unix)]
mod parent;
pub mod pe;

/// What the server tells a new host: where the DLLs are and the slow-hook thresholds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct HostConfig {
    /// The candidates this host tries, in order.
    pub callout: crate::CalloutConfig,
    /// The slow-hook threshold under a server lock, microseconds.
    pub slow_locked_us: u64,
    /// The slow-hook threshold without one, microseconds.
    pub slow_unlocked_us: u64,
    /// Who can write each candidate, as the server found it (one list of findings per candidate,
    /// in order): set for a Windows host under wine, which cannot read Linux permissions, so
    /// `--strict-dll-permissions` judges the Linux file. `None`: the host checks.
    #[serde(default)]
    pub permissions: Option<Vec<Vec<String>>>,
}
mod shm;
#[cfg(windows)]
mod unavailable;
mod wire;

pub use affinity::{pin_caller_here, CallerPin};
#[cfg(unix)]
pub use host::host_main;
/// The host mode of `calloutd.exe` under wine (and of the native host on the same pipes).
pub use host::host_main_bells;
#[cfg(unix)]
pub use parent::{IsolatedCallout, IsolatedLoad};
pub use pe::needs_windows_host;
#[cfg(windows)]
pub use unavailable::{host_main, IsolatedCallout, IsolatedLoad};

use crate::TraceSink;
use std::cell::Cell;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The default `--hook-timeout-ms`: far above any hook that does not block (and above the
/// default slow-hook warning of 10 ms), short enough that workers waiting for the lease lock
/// resume within seconds.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_millis(3000);
/// Crashes within [`DEFAULT_CRASH_WINDOW`] after which `restart` gives up and disables the callout.
pub const DEFAULT_MAX_CRASHES: u32 = 5;
/// The window in which [`DEFAULT_MAX_CRASHES`] crashes disable the callout.
pub const DEFAULT_CRASH_WINDOW: Duration = Duration::from_secs(60);

/// What happens after a crash or a hang of the callout host (`--on-callout-crash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrashPolicy {
    /// Start a new host (load, entry, Control(START)) and keep calling the DLL: the nearest a
    /// separate process comes to Microsoft's "the exception is ignored". After
    /// [`IsolateOptions::max_crashes`] crashes within [`IsolateOptions::crash_window`] the callout
    /// is disabled. The default: like Microsoft, the DLL stays in the loop.
    #[default]
    Restart,
    /// Disable the callout at the first crash; the server serves without it.
    Disable,
    /// Stop the server: for callouts without which the server must not answer (a filter).
    Stop,
}

/// How the isolated callout is run.
#[derive(Clone)]
pub struct IsolateOptions {
    /// The program run as the host (the `calloutd` binary).
    pub host_program: PathBuf,
    /// Its arguments before `--shm-fd N --parent PID` (the hidden host subcommand).
    pub host_args: Vec<OsString>,
    /// A hook call not back within this is a hang: the host is killed.
    pub hook_timeout: Duration,
    /// Loading (DLL initialisers and the entry point) not done within this is a hang.
    pub load_timeout: Duration,
    /// What a crash or a hang leads to.
    pub on_crash: CrashPolicy,
    /// With [`CrashPolicy::Restart`]: this many crashes within `crash_window` disable the callout.
    pub max_crashes: u32,
    /// See `max_crashes`.
    pub crash_window: Duration,
    /// Slots (and host threads): calling threads beyond this share slots.
    pub slots: usize,
    /// A call under a server lock slower than this is a slow-hook misbehaviour.
    pub slow_threshold: Duration,
    /// A call without a server lock slower than this is a slow-hook misbehaviour.
    pub slow_unlocked_threshold: Duration,
    /// The hook-call trace (`--trace`), written by the server with the host's timings.
    pub trace: Option<Arc<TraceSink>>,
    /// Called once with [`CrashPolicy::Stop`] to stop the server.
    pub on_stop: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Environment variables set for every host, restarts included (`calloutd test`'s `[env]`,
    /// which test callouts read at entry).
    pub env: Vec<(OsString, OsString)>,
    /// The host for Windows DLLs (`calloutd.exe` under wine) with the pipe-doorbell transport;
    /// [`IsolatedCallout::load`] sets it when a candidate is a PE file.
    pub pe_host: Option<pe::PeHost>,
}

impl std::fmt::Debug for IsolateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsolateOptions")
            .field("host_program", &self.host_program)
            .field("hook_timeout", &self.hook_timeout)
            .field("on_crash", &self.on_crash)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl IsolateOptions {
    /// Defaults for a host run as `program args...`.
    pub fn new(program: PathBuf, args: Vec<OsString>) -> IsolateOptions {
        IsolateOptions {
            host_program: program,
            host_args: args,
            hook_timeout: DEFAULT_HOOK_TIMEOUT,
            load_timeout: Duration::from_secs(10),
            on_crash: CrashPolicy::Restart,
            max_crashes: DEFAULT_MAX_CRASHES,
            crash_window: DEFAULT_CRASH_WINDOW,
            slots: 32,
            slow_threshold: crate::DEFAULT_SLOW_THRESHOLD,
            slow_unlocked_threshold: crate::DEFAULT_SLOW_UNLOCKED_THRESHOLD,
            trace: None,
            on_stop: None,
            env: Vec::new(),
            pe_host: None,
        }
    }
}

/// What the host sends back about one call besides the packet: the hook's return value, its
/// duration, and the misbehaviour [`Callout`](crate::Callout) saw.
pub(crate) type NotedCall = (u32, u64, Vec<crate::Misbehaviour>);

thread_local! {
    /// This thread's last hook call that reached the DLL.
    static LAST_CALL: Cell<Option<NotedCall>> = const { Cell::new(None) };
}

/// Notes a call that reached the DLL (called by [`Callout`](crate::Callout) for every call), so
/// the host can send its return value, duration and misbehaviour back. Costs a store (and a
/// clone of the misbehaviour list, almost always empty).
pub(crate) fn note_call(ret: u32, dur_us: u64, found: &[crate::Misbehaviour]) {
    LAST_CALL.with(|c| c.set(Some((ret, dur_us, found.to_vec()))));
}

/// Takes (and clears) this thread's last noted call.
#[cfg_attr(windows, allow(dead_code))] // the host (Linux only for now) takes it
pub(crate) fn take_call() -> Option<NotedCall> {
    LAST_CALL.with(Cell::take)
}

/// The callout as the service sees it, in either mode: what `ctl` shows about it.
#[derive(Debug, Clone)]
pub enum LoadedCallout {
    /// Loaded into the server process.
    InProcess(Arc<crate::Callout>),
    /// Run in a child host (`--isolate`).
    Isolated(Arc<IsolatedCallout>),
}

impl LoadedCallout {
    /// The `CalloutDlls` entry it was loaded from.
    pub fn entry(&self) -> &str {
        match self {
            LoadedCallout::InProcess(c) => c.entry(),
            LoadedCallout::Isolated(c) => c.entry(),
        }
    }

    /// The path handed to the OS loader.
    pub fn path(&self) -> &std::path::Path {
        match self {
            LoadedCallout::InProcess(c) => c.path(),
            LoadedCallout::Isolated(c) => c.path(),
        }
    }

    /// The hooks the DLL's table sets.
    pub fn hooks_set(&self) -> Vec<crate::HookName> {
        match self {
            LoadedCallout::InProcess(c) => c.hooks_set(),
            LoadedCallout::Isolated(c) => c.hooks_set(),
        }
    }

    /// Per-hook statistics.
    pub fn stats(&self) -> &Arc<crate::HookStats> {
        match self {
            LoadedCallout::InProcess(c) => c.stats(),
            LoadedCallout::Isolated(c) => c.stats(),
        }
    }

    /// The isolation counters (empty in-process: a crash there ends the process).
    pub fn counters(&self) -> std::collections::BTreeMap<String, u64> {
        match self {
            LoadedCallout::InProcess(_) => Default::default(),
            LoadedCallout::Isolated(c) => c.counters(),
        }
    }

    /// Whether it runs in a child host.
    pub fn is_isolated(&self) -> bool {
        matches!(self, LoadedCallout::Isolated(_))
    }

    /// The misbehaviour seen so far.
    pub fn misbehaviour(&self) -> &Arc<crate::MisbehaviourLog> {
        match self {
            LoadedCallout::InProcess(c) => c.misbehaviour(),
            LoadedCallout::Isolated(c) => c.misbehaviour(),
        }
    }

    /// Flushes the trace.
    pub fn flush_trace(&self) -> std::io::Result<()> {
        match self {
            LoadedCallout::InProcess(c) => c.flush_trace(),
            LoadedCallout::Isolated(c) => c.flush_trace(),
        }
    }
}
