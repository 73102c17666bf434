//! `calloutd serve`: wire the registry, scopes, callout, engine and runtime together and serve.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use calloutd_callout::{load_callout, TraceSink};
use calloutd_engine::{
    AuditLog, Engine, EngineOptions, Hooks, NoHooks, NoProber, Prober, SqliteLeaseStore,
};
use calloutd_server::control::DEFAULT_CONTROL_ADDR;
use calloutd_server::{
    parse_listen, ControlBackend, ControlConfig, ControlServer, IcmpProber, PeriodicTask, Server,
    ServerConfig, ServerHandle, StatsView,
};
use tracing::{error, info, warn};

use crate::callout_hooks::CalloutHooks;
use crate::config_sources::{callout_config, callouts_off_reason, read_registry};
use crate::control_backend::EngineBackend;
use crate::RegArgs;

/// `calloutd serve --reg FILE... --scopes FILE [--listen ADDR[:PORT]]... [--interface IF]...`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    reg: RegArgs,
    /// The scope configuration: Export-DhcpServer XML or a `netsh dhcp server dump`.
    #[arg(long, value_name = "FILE")]
    scopes: PathBuf,
    /// Bind this address (port 67 unless given). Repeatable.
    #[arg(long, value_name = "ADDR[:PORT]")]
    listen: Vec<String>,
    /// Serve on this interface (0.0.0.0:67 with SO_BINDTODEVICE). Repeatable.
    #[arg(long, value_name = "IF")]
    interface: Vec<String>,
    /// The lease database (SQLite). Default: `<DatabasePath>/<DatabaseName stem>.sqlite3` under the
    /// data directory.
    #[arg(long, value_name = "PATH")]
    lease_db: Option<PathBuf>,
    /// Where Windows paths from the registry (DatabasePath, DhcpLogFilePath) are mapped on this host
    /// (default: /var/lib/calloutd for root, else $XDG_DATA_HOME/calloutd or ~/.local/share/calloutd).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Write one JSON line per hook call to FILE (schema in the README).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Worker threads (default: one per CPU).
    #[arg(long, value_name = "N", default_value_t = 0)]
    workers: usize,
    /// Capacity of the receive queue; one more datagram is dropped with DHCP_DROP_NOMEM.
    #[arg(long, value_name = "N", default_value_t = calloutd_server::DEFAULT_QUEUE_CAPACITY)]
    queue: usize,
    /// While datagrams come densely, a worker that emptied its socket waits this many microseconds
    /// before it reads again, so it then handles what came meanwhile in one round, with one wake-up
    /// and one lease commit for all its ACKs (an ACK never leaves before its lease is committed).
    /// 0: workers never wait; a round is what queued up on its own.
    #[arg(long, value_name = "US", default_value_t = calloutd_server::DEFAULT_COALESCE.as_micros() as u64)]
    coalesce_us: u64,
    /// Log a warning when a hook runs longer than this many milliseconds under a server lock.
    #[arg(long, value_name = "MS", default_value_t = 10)]
    slow_hook_ms: u64,
    /// The control API (HTTP+JSON; `calloutd ctl` is its client) on ADDR:PORT, or `off`. A token is
    /// required off loopback. If the default address is taken the server runs without it.
    #[arg(long, value_name = "ADDR:PORT|off", default_value = DEFAULT_CONTROL_ADDR)]
    control: String,
    /// The bearer token the control API requires (default: $CALLOUTD_CONTROL_TOKEN; none on
    /// loopback). Prefer --control-token-file: a command line is visible to every local user.
    #[arg(long, value_name = "TOKEN", conflicts_with = "control_token_file")]
    control_token: Option<String>,
    /// A file holding the control API's bearer token (required off loopback, with --control-token
    /// or $CALLOUTD_CONTROL_TOKEN as alternatives).
    #[arg(long, value_name = "FILE")]
    control_token_file: Option<PathBuf>,
    /// Write Microsoft's audit log (DhcpSrvLog-<Day>.log) to DIR. Default: DhcpLogFilePath mapped
    /// under the data directory, when ActivityLogFlag is on.
    #[arg(long, value_name = "DIR", conflicts_with = "no_audit_log")]
    audit_log: Option<PathBuf>,
    /// Write no audit log, whatever ActivityLogFlag says.
    #[arg(long)]
    no_audit_log: bool,
    /// Purge expired leases every N seconds instead of every DatabaseCleanupInterval minutes (tests).
    #[arg(long, value_name = "N", hide = true)]
    cleanup_interval_secs: Option<u64>,
}

/// The default data directory on Windows: `%ProgramData%\calloutd`.
#[cfg(windows)]
fn default_data_dir() -> PathBuf {
    std::env::var_os("ProgramData")
        .map(|dir| PathBuf::from(dir).join("calloutd"))
        .unwrap_or_else(|| PathBuf::from("calloutd-data"))
}

/// The default data directory: `/var/lib/calloutd` for root (a system service), the XDG data
/// folder otherwise.
#[cfg(not(windows))]
fn default_data_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/calloutd");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(xdg).join("calloutd");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/calloutd"),
        None => PathBuf::from("calloutd-data"),
    }
}

/// Whether this process runs as root: the owner of `/proc/self` is the process's effective user.
#[cfg(not(windows))]
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Runs the server until SIGINT/SIGTERM; exit 0 after a clean stop.
pub fn run(args: ServeArgs) -> ExitCode {
    init_logging();
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            error!("{reason}");
            eprintln!("calloutd serve: {reason}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CALLOUTD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let registry = read_registry(&args.reg)?;
    for w in &registry.warnings {
        warn!("{w}");
    }
    let params = &registry.params;
    let scopes = calloutd_config::load_scopes(&args.scopes).map_err(|errors| {
        for e in &errors.errors {
            error!("{e}");
        }
        format!(
            "{}: {} error(s) in the scope configuration",
            args.scopes.display(),
            errors.errors.len()
        )
    })?;
    for w in &scopes.warnings {
        warn!("{w}");
    }

    let trace = match &args.trace {
        Some(path) => {
            Some(Arc::new(TraceSink::create(path).map_err(|e| {
                format!("{}: cannot create trace: {e}", path.display())
            })?))
        }
        None => None,
    };
    let callout = match callouts_off_reason(params) {
        Some(reason) => {
            info!("{reason}");
            None
        }
        None => {
            let loaded = load_callout(&callout_config(params, &args.reg));
            for attempt in loaded.report.failed_attempts() {
                warn!("{attempt}");
            }
            info!("{}", loaded.report.summary());
            if loaded.callout.is_none() {
                return Err(loaded.report.summary());
            }
            loaded.callout.map(|c| {
                Arc::new(
                    c.with_trace(trace.clone())
                        .with_slow_threshold(std::time::Duration::from_millis(args.slow_hook_ms)),
                )
            })
        }
    };
    let hooks: Arc<dyn Hooks> = match &callout {
        Some(c) => Arc::new(CalloutHooks(c.clone())),
        None => Arc::new(NoHooks),
    };

    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let lease_db = match &args.lease_db {
        Some(p) => p.clone(),
        None => default_lease_db(params, &data_dir),
    };
    if let Some(dir) = lease_db.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| {
                format!(
                    "{}: cannot create the lease database folder: {e}",
                    dir.display()
                )
            })?;
        }
    }
    info!("lease database: {}", lease_db.display());
    let store = SqliteLeaseStore::open(&lease_db).map_err(|e| {
        format!(
            "{}: cannot open the lease database: {e}",
            lease_db.display()
        )
    })?;
    let audit = open_audit_log(&args, params, &data_dir)?;
    let options = EngineOptions {
        ignore_broadcast_flag: params.ignore_broadcast(),
        audit: audit.clone(),
        // The runtime commits, once per round of a worker (see calloutd_server's crate doc).
        defer_commits: true,
        ..EngineOptions::default()
    };
    // Conflict detection pings before an offer only when the scope file asks for it.
    // Leases of an `Export-DhcpServer -Leases` file, taken in once the engine has the database's.
    let exported: Vec<calloutd_config::ImportedLease> = scopes
        .config
        .scopes
        .iter()
        .flat_map(|scope| scope.leases.iter().cloned())
        .collect();
    let prober: Arc<dyn Prober> = if scopes.config.settings.conflict_detection_attempts > 0 {
        Arc::new(IcmpProber::default())
    } else {
        Arc::new(NoProber)
    };
    let engine = Arc::new(
        Engine::new(
            scopes.config,
            options,
            hooks.clone(),
            Box::new(store),
            prober,
        )
        .map_err(|e| e.to_string())?,
    );
    if !exported.is_empty() {
        let report = engine
            .import_leases(&exported)
            .map_err(|e| format!("importing the leases of {}: {e}", args.scopes.display()))?;
        info!(
            "leases of {}: {} imported, {} already leased here, {} not active, {} expired, {} outside every scope",
            args.scopes.display(),
            report.imported,
            report.already_leased,
            report.not_active,
            report.expired,
            report.outside_scopes
        );
        for (ip, text) in &report.bad_expiry {
            warn!(
                "lease of {ip} in {} not imported: LeaseExpiryTime `{text}` is not an ISO 8601 time",
                args.scopes.display()
            );
        }
    }

    let listen = args
        .listen
        .iter()
        .map(|l| parse_listen(l).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let cleanup = match args.cleanup_interval_secs {
        Some(secs) => std::time::Duration::from_secs(secs.max(1)),
        None => std::time::Duration::from_secs(
            u64::from(params.database_cleanup_interval_minutes().max(1)) * 60,
        ),
    };
    info!("expired leases are purged every {}s", cleanup.as_secs());
    let backend = Arc::new(EngineBackend {
        engine: engine.clone(),
        callout: callout.clone(),
        params: params.clone(),
        settings: serde_json::json!({
            "listen": args.listen,
            "interfaces": args.interface,
            "lease_db": lease_db,
            "data_dir": data_dir,
            "audit_log": audit.as_ref().map(|a| a.dir().to_path_buf()),
            "trace": args.trace,
            "workers": args.workers,
            "queue": args.queue,
            "coalesce_us": args.coalesce_us,
            "cleanup_interval_secs": cleanup.as_secs(),
            "control": args.control,
        }),
    });
    // The summary needs the service state, known only once the server runs.
    let handle_slot: Arc<std::sync::OnceLock<ServerHandle>> = Arc::default();
    let config = ServerConfig {
        listen,
        interfaces: args.interface.clone(),
        workers: args.workers,
        queue_capacity: args.queue,
        coalesce: std::time::Duration::from_micros(args.coalesce_us),
        handle_signals: true,
        summary: Some(Arc::new({
            let backend = backend.clone();
            let handle_slot = handle_slot.clone();
            move |counters| {
                let state = handle_slot
                    .get()
                    .map_or(calloutd_server::ServiceState::Running, |h| h.state());
                info!(
                    "summary:\n{}",
                    StatsView::collect(state, counters, &*backend)
                )
            }
        })),
        audit: audit.clone(),
        periodic: Some(PeriodicTask {
            interval: cleanup,
            run: Arc::new({
                let engine = engine.clone();
                move || match engine.purge_expired(std::time::SystemTime::now()) {
                    Ok(0) => {}
                    Ok(n) => info!("purged {n} expired lease(s)"),
                    Err(e) => warn!("purging expired leases: {e}"),
                }
            }),
        }),
        ..ServerConfig::default()
    };
    let server = Server::start(config, engine.clone(), hooks).map_err(|e| e.to_string())?;
    let _ = handle_slot.set(server.handle());
    let control = start_control(&args, server.handle(), backend.clone())?;
    let addrs: Vec<String> = server.local_addrs().iter().map(|a| a.to_string()).collect();
    info!(
        "serving on {}{}",
        addrs.join(", "),
        if args.interface.is_empty() {
            String::new()
        } else {
            format!(" (interfaces {})", args.interface.join(", "))
        }
    );
    let counters = server.wait();
    if let Some(control) = control {
        control.shutdown();
    }
    info!(
        "stopped; summary:\n{}",
        StatsView::collect(calloutd_server::ServiceState::Stopped, &counters, &*backend)
    );
    engine
        .flush()
        .map_err(|e| format!("flushing leases: {e}"))?;
    if let Some(c) = &callout {
        c.flush_trace()
            .map_err(|e| format!("flushing the trace: {e}"))?;
    }
    Ok(())
}

/// `<DatabasePath>/<DatabaseName stem>.sqlite3`, with Windows paths mapped under the data directory.
fn default_lease_db(params: &calloutd_registry::Parameters, data_dir: &Path) -> PathBuf {
    let folder = calloutd_registry::expand_path(params.database_path_or_default(), data_dir);
    if folder.mapped {
        info!(
            "DatabasePath {} is mapped to {}",
            folder.original,
            folder.path.display()
        );
    }
    let stem = Path::new(params.database_name_or_default())
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dhcp".into());
    folder.path.join(format!("{stem}.sqlite3"))
}

/// The audit log: `--audit-log DIR`, else `DhcpLogFilePath` under the data directory when
/// `ActivityLogFlag` is on. A default folder that cannot be created is a warning, not a failure.
fn open_audit_log(
    args: &ServeArgs,
    params: &calloutd_registry::Parameters,
    data_dir: &Path,
) -> Result<Option<Arc<AuditLog>>, String> {
    if args.no_audit_log {
        return Ok(None);
    }
    let max_mb = params.dhcp_log_files_max_size_mb();
    if let Some(dir) = &args.audit_log {
        let log = AuditLog::from_settings(true, dir, max_mb).map_err(|e| e.to_string())?;
        info!("audit log: {}", dir.display());
        return Ok(log);
    }
    if !params.activity_log_enabled() {
        info!("ActivityLogFlag is 0: no audit log");
        return Ok(None);
    }
    let folder = calloutd_registry::expand_path(params.dhcp_log_file_path_or_default(), data_dir);
    match AuditLog::from_settings(true, &folder.path, max_mb) {
        Ok(log) => {
            info!(
                "audit log: {} (DhcpLogFilePath {})",
                folder.path.display(),
                folder.original
            );
            Ok(log)
        }
        Err(e) => {
            warn!("no audit log: {e}");
            Ok(None)
        }
    }
}

/// Starts the control API unless `--control off`. When the default address is taken the server runs
/// without it (a warning); an address given explicitly must bind.
fn start_control(
    args: &ServeArgs,
    service: ServerHandle,
    backend: Arc<dyn ControlBackend>,
) -> Result<Option<ControlServer>, String> {
    if args.control.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let addr: std::net::SocketAddr = args.control.parse().map_err(|_| {
        format!(
            "invalid --control value {:?}: expected ADDR:PORT or off",
            args.control
        )
    })?;
    let token = calloutd_server::control::resolve_token(
        args.control_token.as_deref(),
        args.control_token_file.as_deref(),
    )?;
    match ControlServer::start(ControlConfig { addr, token }, service.clone(), backend) {
        Ok(control) => Ok(Some(control)),
        Err(e) if args.control == DEFAULT_CONTROL_ADDR => {
            warn!("{e}: serving without the control API");
            Ok(None)
        }
        Err(e) => {
            service.stop();
            Err(e.to_string())
        }
    }
}
