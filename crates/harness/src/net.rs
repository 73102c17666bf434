//! The virtual network: the real engine and the real callout, fed datagrams directly (no sockets,
//! no root) with a clock that moves only when told. `calloutd test`, `calloutd replay` and
//! `calloutd demo` all drive it; it plays the runtime's part (admission, pause, Control, purge).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use calloutd_callout::isolate::{IsolateOptions, IsolatedCallout, LoadedCallout};
use calloutd_callout::{load_callout, CalloutConfig, LoadOrder, TraceRecord, TraceSink};
use calloutd_engine::{
    Admission, CommitTicket, Datagram, Engine, EngineOptions, Hooks, Lease, LeaseStore,
    ManualClock, MemoryLeaseStore, NoHooks, NoProber, Outcome, PacketHandler, StoreError,
};
use dhcpssdk::{ControlCode, DropReason};

/// How the callout runs.
#[derive(Debug, Clone, Default)]
pub enum HostMode {
    /// In this process (as on Windows): fastest; a crash ends the run.
    #[default]
    InProcess,
    /// In a child host process (`--isolate`), so a crash or a hang fails the step it happens in
    /// instead of killing the runner. The options name the host program (the `calloutd` binary in
    /// its hidden host mode), the hang timeout and the crash policy; the trace, the slow-hook
    /// thresholds and the scenario's environment are filled in by [`VirtualNet::open`].
    Isolated(Box<IsolateOptions>),
}

impl HostMode {
    /// Whether the callout runs in a child host.
    pub fn is_isolated(&self) -> bool {
        matches!(self, HostMode::Isolated(_))
    }

    /// `in-process` or `isolated`, for reports.
    pub fn name(&self) -> &'static str {
        match self {
            HostMode::InProcess => "in-process",
            HostMode::Isolated(_) => "isolated",
        }
    }
}

/// Everything needed to set up a virtual network.
pub struct NetConfig {
    /// `.reg` files applied in order (CalloutDlls, CalloutEnabled, IgnoreBroadcastFlag...).
    pub reg: Vec<PathBuf>,
    /// The scope file (Export-DhcpServer XML or a netsh dump).
    pub scopes: PathBuf,
    /// Relative `CalloutDlls` entries resolve here (and are passed on as absolute paths, so
    /// `ChainDlls` names them absolutely too); `None`: as `serve` does (the `.reg` file's folder,
    /// then the library search).
    pub callout_dir: Option<PathBuf>,
    /// Environment variables set while the callout is loaded (test callouts read them at entry).
    pub env: Vec<(String, String)>,
    /// The server's interface address; `None`: the first usable address of the first scope.
    pub server: Option<Ipv4Addr>,
    /// Where the clock starts.
    pub start: SystemTime,
    /// Slow-hook thresholds: under a server lock, and without one.
    pub slow: (Duration, Duration),
    /// Also write every hook call here (`--trace FILE`).
    pub trace: Option<Box<dyn Write + Send>>,
    /// Keep the hook calls of each delivery (off for benchmarks).
    pub keep_calls: bool,
    /// In-process or isolated.
    pub mode: HostMode,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            reg: Vec::new(),
            scopes: PathBuf::new(),
            callout_dir: None,
            env: Vec::new(),
            server: None,
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
            slow: (
                calloutd_callout::DEFAULT_SLOW_THRESHOLD,
                calloutd_callout::DEFAULT_SLOW_UNLOCKED_THRESHOLD,
            ),
            trace: None,
            keep_calls: true,
            mode: HostMode::default(),
        }
    }
}

/// Why a virtual network could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A `.reg` file could not be read or holds invalid Parameters.
    #[error("{0}")]
    Registry(String),
    /// The scope file has errors.
    #[error("{0}")]
    Scopes(String),
    /// CalloutEnabled is on but no DLL loaded.
    #[error("{0}")]
    Callout(String),
    /// The engine refused the configuration.
    #[error("{0}")]
    Engine(String),
}

/// What became of one datagram on the virtual network.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The engine's outcome.
    pub outcome: Outcome,
    /// The reply decoded, when one was sent.
    pub reply: Option<calloutd_client::Reply>,
    /// Every hook call made for it, in order.
    pub calls: Vec<TraceRecord>,
}

impl Delivery {
    /// The callout's NewPkt set `ProcessIt = FALSE`: not parsed, no drop reason, no reply.
    pub fn dropped_by_callout(&self) -> bool {
        self.outcome.dropped.is_none() && self.outcome.request_type.is_none()
    }
}

/// A lease store in memory whose commits can be made to fail (a full or broken disk), to show
/// what the engine and the callout do then (PktDrop with DHCP_DROP_INTERNAL_ERROR).
#[derive(Debug, Default)]
struct VirtualStore {
    inner: MemoryLeaseStore,
    failing: AtomicBool,
}

impl LeaseStore for VirtualStore {
    fn load_all(&self) -> Result<Vec<Lease>, StoreError> {
        self.inner.load_all()
    }
    fn put(&self, lease: Lease) -> CommitTicket {
        self.inner.put(lease)
    }
    fn remove(&self, ip: Ipv4Addr) -> CommitTicket {
        self.inner.remove(ip)
    }
    fn commit(&self, ticket: CommitTicket) -> Result<(), StoreError> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(StoreError::CommitFailed {
                path: PathBuf::from("(virtual lease store)"),
                message: "the scenario made the lease store fail".into(),
            });
        }
        self.inner.commit(ticket)
    }
}

/// A writer several owners append to (one `--trace` file for several scenarios).
#[derive(Clone)]
pub struct SharedWriter(pub Arc<Mutex<Box<dyn Write + Send>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

/// The virtual network: engine, callout, clock and the runtime's state.
pub struct VirtualNet {
    engine: Engine,
    clock: Arc<ManualClock>,
    hooks: Arc<dyn Hooks>,
    callout: Option<LoadedCallout>,
    sink: Option<Arc<TraceSink>>,
    store: Arc<VirtualStore>,
    paused: bool,
    server: Ipv4Addr,
    loaded: String,
    start_calls: Vec<TraceRecord>,
}

/// Process-wide: environment variables are shared, so loads that set them take turns.
static ENV_LOCK: Mutex<()> = Mutex::new(());

impl VirtualNet {
    /// Reads the configuration, loads the callout and starts the service (Control START).
    pub fn open(mut config: NetConfig) -> Result<VirtualNet, SetupError> {
        let mut tree = calloutd_registry::RegistryTree::new();
        for file in &config.reg {
            tree.apply_file(file)
                .map_err(|e| SetupError::Registry(e.to_string()))?;
        }
        let params = calloutd_registry::Parameters::from_tree(&tree)
            .map_err(|e| SetupError::Registry(e.to_string()))?;
        let scopes = calloutd_config::load_scopes(&config.scopes).map_err(|errors| {
            let lines: Vec<String> = errors.errors.iter().map(|e| e.to_string()).collect();
            SetupError::Scopes(lines.join("\n"))
        })?;
        let server = match config.server {
            Some(ip) => ip,
            None => default_server(&scopes.config).ok_or_else(|| {
                SetupError::Scopes(format!(
                    "{}: no scope to take the server address from (set `server`)",
                    config.scopes.display()
                ))
            })?,
        };
        let clock = Arc::new(ManualClock::new(config.start));
        let sink = config
            .keep_calls
            .then(|| Arc::new(TraceSink::keeping(config.trace.take())))
            .or_else(|| {
                config
                    .trace
                    .take()
                    .map(|w| Arc::new(TraceSink::to_writer(w)))
            });
        let (callout, loaded) = if params.callouts_enabled() && params.callout_dlls.is_some() {
            let callout = load(&params, &config, sink.clone())?;
            let summary = format!(
                "callout {} ({})",
                callout.path().display(),
                config.mode.name()
            );
            (Some(callout), summary)
        } else {
            (
                None,
                "no callout (CalloutEnabled is off or CalloutDlls absent)".into(),
            )
        };
        let hooks: Arc<dyn Hooks> = match &callout {
            Some(LoadedCallout::InProcess(c)) => c.clone(),
            Some(LoadedCallout::Isolated(c)) => c.clone(),
            None => Arc::new(NoHooks),
        };
        let store = Arc::new(VirtualStore::default());
        let options = EngineOptions {
            ignore_broadcast_flag: params.ignore_broadcast(),
            clock: clock.clone(),
            ..EngineOptions::default()
        };
        let engine = Engine::new(
            scopes.config,
            options,
            hooks.clone(),
            Box::new(StoreRef(store.clone())),
            Arc::new(NoProber),
        )
        .map_err(|e| SetupError::Engine(e.to_string()))?;
        hooks.control(ControlCode::Start);
        let start_calls = sink.as_ref().map(|s| s.take_kept()).unwrap_or_default();
        Ok(VirtualNet {
            start_calls,
            engine,
            clock,
            hooks,
            callout,
            sink,
            store,
            paused: false,
            server,
            loaded,
        })
    }

    /// The server's interface address (the hooks' `IpAddress`, the server identifier).
    pub fn server(&self) -> Ipv4Addr {
        self.server
    }

    /// What was loaded, in one line.
    pub fn loaded(&self) -> &str {
        &self.loaded
    }

    /// The hook calls of the service start (Control START).
    pub fn start_calls(&self) -> &[TraceRecord] {
        &self.start_calls
    }

    /// The loaded callout, if any (in-process or isolated).
    pub fn callout(&self) -> Option<&LoadedCallout> {
        self.callout.as_ref()
    }

    /// The engine (leases, statistics).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The virtual clock's time.
    pub fn now(&self) -> SystemTime {
        calloutd_engine::Clock::now(&*self.clock)
    }

    /// Whether the service is paused.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// The hook calls made since the last delivery or action.
    fn take_calls(&self) -> Vec<TraceRecord> {
        self.sink
            .as_ref()
            .map(|s| s.take_kept())
            .unwrap_or_default()
    }

    /// Delivers one datagram. `runtime_drop` is a drop the runtime decides (DUPLICATE, NOMEM,
    /// TIMEOUT); while paused the runtime drops with PAUSED.
    pub fn deliver(&self, datagram: Datagram, runtime_drop: Option<DropReason>) -> Delivery {
        let admission = match runtime_drop {
            Some(reason) => Admission::Drop(reason),
            None if self.paused => Admission::Drop(DropReason::Paused),
            None => Admission::Process,
        };
        let mut outcome = self.engine.handle(datagram, admission);
        // The runtime's rule (docs/hooks.md): a held reply's PktSend only after its commit. The
        // engine here commits inline, so none is held; should one be, it ends the same way.
        if let Some(held) = outcome.held.take() {
            let durable = outcome
                .uncommitted
                .is_none_or(|ticket| self.engine.commit(ticket).is_ok());
            outcome.reply = self.engine.finish(held, durable);
        }
        let reply = outcome
            .reply
            .as_ref()
            .and_then(|r| calloutd_client::Reply::decode(&r.bytes, None).ok());
        Delivery {
            outcome,
            reply,
            calls: self.take_calls(),
        }
    }

    /// A datagram from a client or relay: broadcast when `broadcast` (to 255.255.255.255), else
    /// unicast to the server.
    pub fn datagram(&self, bytes: Vec<u8>, peer: SocketAddrV4, broadcast: bool) -> Datagram {
        Datagram {
            bytes,
            if_addr: self.server,
            dst_addr: if broadcast {
                Ipv4Addr::BROADCAST
            } else {
                self.server
            },
            peer,
        }
    }

    /// Pauses the service (Control PAUSE under the service lock); later datagrams are dropped
    /// with PAUSED. Returns the hook calls.
    pub fn pause(&mut self) -> Vec<TraceRecord> {
        if !self.paused {
            self.paused = true;
            self.hooks.control(ControlCode::Pause);
        }
        self.take_calls()
    }

    /// Continues a paused service (Control CONTINUE). Returns the hook calls.
    pub fn resume(&mut self) -> Vec<TraceRecord> {
        if self.paused {
            self.paused = false;
            self.hooks.control(ControlCode::Continue);
        }
        self.take_calls()
    }

    /// Moves the clock forward and purges expired leases (DeleteClient for each), as the
    /// runtime's cleanup does. Returns how many were purged and the hook calls.
    pub fn advance(&self, by: Duration) -> (Result<usize, String>, Vec<TraceRecord>) {
        self.clock.advance(by);
        let purged = self
            .engine
            .purge_expired(self.now())
            .map_err(|e| e.to_string());
        (purged, self.take_calls())
    }

    /// Sets the clock to `to` without purging (replay follows the capture's timestamps).
    pub fn set_clock(&self, to: SystemTime) {
        if to > self.now() {
            self.clock.set(to);
        }
    }

    /// Administrative delete of the lease on `ip` (DeleteClient). The lease, if there was one,
    /// and the hook calls.
    pub fn delete(&self, ip: Ipv4Addr) -> (Result<Option<Lease>, String>, Vec<TraceRecord>) {
        let deleted = self.engine.delete_lease(ip).map_err(|e| e.to_string());
        (deleted, self.take_calls())
    }

    /// Makes lease commits fail (or work again).
    pub fn set_store_failing(&self, failing: bool) {
        self.store.failing.store(failing, Ordering::Relaxed);
    }

    /// The lease table.
    pub fn leases(&self) -> Vec<Lease> {
        self.engine.leases()
    }

    /// Stops the service (Control STOP, the last hook call) and returns the hook calls.
    pub fn stop(self) -> Vec<TraceRecord> {
        self.hooks.control(ControlCode::Stop);
        let calls = self.take_calls();
        if let Some(callout) = &self.callout {
            if let Err(e) = callout.flush_trace() {
                tracing::warn!("flushing the trace: {e}");
            }
        }
        calls
    }
}

/// The engine owns its store; the network keeps a handle to switch failures on and off.
struct StoreRef(Arc<VirtualStore>);

impl LeaseStore for StoreRef {
    fn load_all(&self) -> Result<Vec<Lease>, StoreError> {
        self.0.load_all()
    }
    fn put(&self, lease: Lease) -> CommitTicket {
        self.0.put(lease)
    }
    fn remove(&self, ip: Ipv4Addr) -> CommitTicket {
        self.0.remove(ip)
    }
    fn commit(&self, ticket: CommitTicket) -> Result<(), StoreError> {
        self.0.commit(ticket)
    }
}

/// The first address of the first scope's subnet (its usual router/server address).
fn default_server(config: &calloutd_config::ServerConfig) -> Option<Ipv4Addr> {
    let scope = config.scopes.first()?;
    Some(Ipv4Addr::from(u32::from(scope.scope_id).wrapping_add(1)))
}

/// Loads the callout the Parameters name, in this process (with the scenario's environment set
/// meanwhile) or in a child host (which gets the environment, restarts included).
fn load(
    params: &calloutd_registry::Parameters,
    config: &NetConfig,
    sink: Option<Arc<TraceSink>>,
) -> Result<LoadedCallout, SetupError> {
    let dlls = params.callout_dlls.as_ref();
    let entries: Vec<String> = dlls
        .map(|d| d.value.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|entry| match &config.callout_dir {
            Some(dir) if Path::new(&entry).is_relative() => dir.join(&entry).display().to_string(),
            _ => entry,
        })
        .collect();
    let callout_config = CalloutConfig {
        dlls: entries,
        enabled: params.callout_enabled.as_ref().map(|e| e.value),
        base_dir: dlls.and_then(|d| d.dir()).map(PathBuf::from),
        order: LoadOrder::Alphabetical,
        // A scenario runs the author's own build: permissions are checked (warnings in the log),
        // never refused.
        strict_permissions: false,
    };
    // A Windows DLL (PE) on Linux is hosted under wine, which is the isolated host (also with
    // --in-process).
    let pe_template;
    let isolated = match &config.mode {
        HostMode::Isolated(template) => Some(template),
        HostMode::InProcess if calloutd_callout::isolate::needs_windows_host(&callout_config) => {
            pe_template = Box::new(calloutd_callout::isolate::IsolateOptions::new(
                std::env::current_exe().map_err(|e| SetupError::Callout(e.to_string()))?,
                vec!["callout-host".into()],
            ));
            Some(&pe_template)
        }
        HostMode::InProcess => None,
    };
    if let Some(template) = isolated {
        let mut options = (**template).clone();
        options.trace = sink;
        options.slow_threshold = config.slow.0;
        options.slow_unlocked_threshold = config.slow.1;
        options.env = config
            .env
            .iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        // One thread calls hooks (and one restarts a crashed host): two slots are enough.
        options.slots = options.slots.min(2);
        let loaded = IsolatedCallout::load(&callout_config, options);
        return loaded
            .callout
            .map(|c| LoadedCallout::Isolated(Arc::new(c)))
            .ok_or_else(|| SetupError::Callout(loaded.report.summary()));
    }
    let turn = ENV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    for (key, value) in &config.env {
        std::env::set_var(key, value);
    }
    let loaded = load_callout(&callout_config);
    for (key, _) in &config.env {
        std::env::remove_var(key);
    }
    drop(turn);
    loaded
        .callout
        .map(|c| {
            LoadedCallout::InProcess(Arc::new(
                c.with_trace(sink)
                    .with_slow_thresholds(config.slow.0, config.slow.1),
            ))
        })
        .ok_or_else(|| SetupError::Callout(loaded.report.summary()))
}
