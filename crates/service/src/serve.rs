//! `calloutd serve`: the registry, the scopes, the callout, the engine and the runtime, assembled and
//! serving until a signal or the control API stops them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use calloutd_callout::isolate::{IsolatedCallout, LoadedCallout};
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

use crate::backend::EngineBackend;
use crate::sources::{callout_config, callouts_off_reason, read_registry};
use crate::{IsolateOptions, RegOptions};

/// `calloutd serve --reg FILE... --scopes FILE [--listen ADDR[:PORT]]... [--interface IF]...`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ServeOptions {
    /// The registry files and the callout load order.
    #[cfg_attr(feature = "clap", command(flatten))]
    pub reg: RegOptions,
    /// Whether the callout runs in an isolated host process, and what a crash or hang there does.
    #[cfg_attr(feature = "clap", command(flatten))]
    pub isolate: IsolateOptions,
    /// The scope configuration: Export-DhcpServer XML or a `netsh dhcp server dump`.
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE"))]
    pub scopes: PathBuf,
    /// Bind this address (port 67 unless given). Repeatable.
    #[cfg_attr(feature = "clap", arg(long, value_name = "ADDR[:PORT]"))]
    pub listen: Vec<String>,
    /// Serve on this interface (0.0.0.0:67 with SO_BINDTODEVICE). Repeatable.
    #[cfg_attr(feature = "clap", arg(long, value_name = "IF"))]
    pub interface: Vec<String>,
    /// The lease database (SQLite). Default: `<DatabasePath>/<DatabaseName stem>.sqlite3` under the
    /// data directory. Its folder must exist (a mistyped path must not start an empty table) unless
    /// --create-dirs is given.
    #[cfg_attr(feature = "clap", arg(long, value_name = "PATH"))]
    pub lease_db: Option<PathBuf>,
    /// Create the folder of --lease-db when it does not exist.
    #[cfg_attr(feature = "clap", arg(long))]
    pub create_dirs: bool,
    /// Where the lease database, its backups and the audit log go when the registry does not set
    /// DatabasePath/BackupDatabasePath/DhcpLogFilePath (on every OS), and where Windows paths it
    /// sets are mapped on a non-Windows host (default: /var/lib/calloutd for root, else
    /// $XDG_DATA_HOME/calloutd or ~/.local/share/calloutd; on Windows %ProgramData%\calloutd).
    #[cfg_attr(feature = "clap", arg(long, value_name = "DIR"))]
    pub data_dir: Option<PathBuf>,
    /// Write one JSON line per hook call to FILE (schema in the README).
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE"))]
    pub trace: Option<PathBuf>,
    /// Worker threads (default: one per CPU).
    #[cfg_attr(feature = "clap", arg(long, value_name = "N", default_value_t = 0))]
    pub workers: usize,
    /// Pin each worker thread to one CPU: `isolate` (with an isolated callout whose host can follow
    /// it: the native host, not wine), `always` or `never`. The host's thread then runs on its
    /// worker's CPU, so a hook call switches threads on one CPU instead of waking another.
    #[cfg_attr(feature = "clap", arg(long, value_enum, value_name = "WHEN", default_value_t = PinWorkersArg::Isolate))]
    pub pin_workers: PinWorkersArg,
    /// Capacity of the receive queue; one more datagram is dropped with DHCP_DROP_NOMEM.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N", default_value_t = calloutd_server::DEFAULT_QUEUE_CAPACITY))]
    pub queue: usize,
    /// While a backlog is building (datagrams arrive about as fast as a worker handles them), a
    /// worker that emptied its socket waits this many microseconds before it reads again, so it then
    /// handles what came meanwhile in one round, with one wake-up and one lease commit for all its
    /// ACKs (an ACK never leaves before its lease is committed). Without a backlog nothing waits.
    /// 0: workers never wait; a round is what queued up on its own.
    #[cfg_attr(feature = "clap", arg(long, value_name = "US", default_value_t = calloutd_server::DEFAULT_COALESCE.as_micros() as u64))]
    pub coalesce_us: u64,
    /// Log a warning when a hook runs longer than this many milliseconds under a server lock.
    #[cfg_attr(feature = "clap", arg(long, value_name = "MS", default_value_t = 10))]
    pub slow_hook_ms: u64,
    /// The control API (HTTP+JSON; `calloutd ctl` is its client) on ADDR:PORT, or `off`. A token is
    /// required off loopback. If the default address is taken the server runs without it.
    #[cfg_attr(feature = "clap", arg(long, value_name = "ADDR:PORT|off", default_value = DEFAULT_CONTROL_ADDR))]
    pub control: String,
    /// The bearer token the control API requires (default: $CALLOUTD_CONTROL_TOKEN; none on
    /// loopback). Prefer --control-token-file: a command line is visible to every local user.
    #[cfg_attr(
        feature = "clap",
        arg(long, value_name = "TOKEN", conflicts_with = "control_token_file")
    )]
    pub control_token: Option<String>,
    /// A file holding the control API's bearer token (required off loopback, with --control-token
    /// or $CALLOUTD_CONTROL_TOKEN as alternatives).
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE"))]
    pub control_token_file: Option<PathBuf>,
    /// Write Microsoft's audit log (DhcpSrvLog-<Day>.log) to DIR. Default: DhcpLogFilePath mapped
    /// under the data directory, when ActivityLogFlag is on.
    #[cfg_attr(
        feature = "clap",
        arg(long, value_name = "DIR", conflicts_with = "no_audit_log")
    )]
    pub audit_log: Option<PathBuf>,
    /// Write no audit log, whatever ActivityLogFlag says.
    #[cfg_attr(feature = "clap", arg(long))]
    pub no_audit_log: bool,
    /// Purge expired leases every N seconds instead of every DatabaseCleanupInterval minutes (tests).
    #[cfg_attr(feature = "clap", arg(long, value_name = "N", hide = true))]
    pub cleanup_interval_secs: Option<u64>,
    /// Back the lease database up every N seconds instead of every BackupInterval minutes (tests).
    #[cfg_attr(feature = "clap", arg(long, value_name = "N", hide = true))]
    pub backup_interval_secs: Option<u64>,
    /// How long an expired lease stays in the database (still its client's) before the purge
    /// deletes it, with DeleteClient. Microsoft's grace period: 4 hours.
    #[cfg_attr(feature = "clap", arg(long, value_name = "SECS", default_value_t = calloutd_engine::DEFAULT_EXPIRED_GRACE.as_secs()))]
    pub expired_grace_secs: u64,
    /// When DeleteClient runs: `expiry` (the administrative delete and the purge after the grace
    /// period), or `release` (also directly before a RELEASE or DECLINE removes a lease).
    #[cfg_attr(feature = "clap", arg(long, value_enum, value_name = "WHEN", default_value_t = DeleteClientArg::Expiry))]
    pub delete_client_on: DeleteClientArg,
}

/// `--pin-workers`: when worker threads are pinned to CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum PinWorkersArg {
    /// With an isolated callout whose host threads follow their callers' CPUs.
    #[default]
    Isolate,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// `--delete-client-on`: which removals of a lease call DeleteClient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DeleteClientArg {
    /// The administrative delete and the expiry purge only (RELEASE and DECLINE: AddressDel).
    #[default]
    Expiry,
    /// Also RELEASE and DECLINE of a lease.
    Release,
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

/// Serves until SIGINT/SIGTERM or the control API's stop; `Err` is the one-line reason it could not
/// start or stop cleanly (already logged where it has details).
pub fn serve(args: ServeOptions) -> Result<(), String> {
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
    // The summary needs the service state, known only once the server runs; `--on-callout-crash
    // stop` needs the handle to stop it.
    let handle_slot: Arc<std::sync::OnceLock<ServerHandle>> = Arc::default();
    let slow = std::time::Duration::from_millis(args.slow_hook_ms);
    let callout: Option<LoadedCallout> = match callouts_off_reason(params) {
        Some(reason) => {
            info!("{reason}");
            None
        }
        // A Windows DLL (PE) on Linux is hosted under wine, which is the isolated host.
        None if args.isolate.isolate
            || calloutd_callout::isolate::needs_windows_host(&callout_config(
                params, &args.reg,
            )) =>
        {
            let mut options = args.isolate.options()?;
            options.trace = trace.clone();
            options.slow_threshold = slow;
            // As `Callout::with_slow_threshold`: ten times that without a lock.
            options.slow_unlocked_threshold = slow.saturating_mul(10);
            options.on_stop = Some(Arc::new({
                let handle_slot = handle_slot.clone();
                move || {
                    if let Some(handle) = handle_slot.get() {
                        handle.stop();
                    }
                }
            }));
            let loaded = IsolatedCallout::load(&callout_config(params, &args.reg), options);
            match loaded.callout {
                Some(c) => Some(LoadedCallout::Isolated(Arc::new(c))),
                None => return Err(loaded.report.summary()),
            }
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
                LoadedCallout::InProcess(Arc::new(
                    c.with_trace(trace.clone()).with_slow_threshold(slow),
                ))
            })
        }
    };
    let hooks: Arc<dyn Hooks> = match &callout {
        Some(LoadedCallout::InProcess(c)) => c.clone(),
        Some(LoadedCallout::Isolated(c)) => c.clone(),
        None => Arc::new(NoHooks),
    };

    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let lease_db = match &args.lease_db {
        Some(p) => p.clone(),
        None => default_lease_db(params, &data_dir),
    };
    // The default folder is calloutd's own (under the data directory); a --lease-db folder is
    // created only when asked, so a mistyped path is an error, not an empty lease table.
    let create = args.lease_db.is_none() || args.create_dirs;
    lease_db_folder(&lease_db, create)?;
    info!("lease database: {}", lease_db.display());
    // The store's errors name the database; an unwritable one is found here, once.
    let store = SqliteLeaseStore::open(&lease_db).map_err(|e| e.to_string())?;
    let audit = open_audit_log(&args, params, &data_dir)?;
    let options = EngineOptions {
        ignore_broadcast_flag: params.ignore_broadcast(),
        audit: audit.clone(),
        expired_grace: std::time::Duration::from_secs(args.expired_grace_secs),
        delete_client_on: match args.delete_client_on {
            DeleteClientArg::Expiry => calloutd_engine::DeleteClientOn::ExpiryAndDelete,
            DeleteClientArg::Release => calloutd_engine::DeleteClientOn::AlsoReleaseAndDecline,
        },
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
    let backup_file = backup_file(params, &data_dir, &lease_db);
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
            "pin_workers": format!("{:?}", args.pin_workers).to_lowercase(),
            "queue": args.queue,
            "coalesce_us": args.coalesce_us,
            "cleanup_interval_secs": cleanup.as_secs(),
            "backup": backup_file,
            "control": args.control,
            "isolate": args.isolate.isolate,
            "hook_timeout_ms": args.isolate.hook_timeout_ms,
            "on_callout_crash": format!("{:?}", args.isolate.on_callout_crash).to_lowercase(),
        }),
        // The API writes only inside the data directory.
        backup_file: backup_file.clone().filter(|f| f.starts_with(&data_dir)),
    });
    let config = ServerConfig {
        listen,
        interfaces: args.interface.clone(),
        workers: args.workers,
        queue_capacity: args.queue,
        coalesce: std::time::Duration::from_micros(args.coalesce_us),
        pin_workers: match args.pin_workers {
            PinWorkersArg::Always => true,
            PinWorkersArg::Never => false,
            PinWorkersArg::Isolate => matches!(
                &callout,
                Some(LoadedCallout::Isolated(c)) if c.follows_pinned_callers()
            ),
        },
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
        audit: audit
            .clone()
            .map(|a| a as Arc<dyn calloutd_hooks::ServiceEvents>),
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
    let backup_every = match args.backup_interval_secs {
        Some(secs) => std::time::Duration::from_secs(secs.max(1)),
        None => {
            std::time::Duration::from_secs(u64::from(params.backup_interval_minutes().max(1)) * 60)
        }
    };
    let backups = start_backups(&engine, backup_file, backup_every);
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
    if let Some(backups) = backups {
        backups.stop();
    }
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
    let folder = params.database_folder(data_dir);
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

/// Checks that the folder of `lease_db` exists, creating it when `create` says so.
fn lease_db_folder(lease_db: &Path, create: bool) -> Result<(), String> {
    let Some(dir) = lease_db.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if dir.is_dir() {
        return Ok(());
    }
    if !create {
        return Err(format!(
            "lease database {}: the folder {} does not exist (give --create-dirs to create it)",
            lease_db.display(),
            dir.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "{}: cannot create the lease database folder: {e}",
            dir.display()
        )
    })
}

/// Where the periodic backups go: `<BackupDatabasePath>/<lease database file name>`, the Windows
/// path mapped under the data directory like DatabasePath. `None` (a warning) when the folder
/// cannot be created: the server runs without backups.
fn backup_file(
    params: &calloutd_registry::Parameters,
    data_dir: &Path,
    lease_db: &Path,
) -> Option<PathBuf> {
    let folder = params.backup_folder(data_dir);
    if let Err(e) = std::fs::create_dir_all(&folder.path) {
        warn!(
            "no lease backups: cannot create the backup folder {} (BackupDatabasePath {}): {e}",
            folder.path.display(),
            folder.original
        );
        return None;
    }
    let name = lease_db
        .file_name()
        .map_or_else(|| "dhcp.sqlite3".into(), |n| n.to_os_string());
    Some(folder.path.join(name))
}

/// Starts the periodic backups into `file`, if there is one.
fn start_backups(
    engine: &Arc<Engine>,
    file: Option<PathBuf>,
    every: std::time::Duration,
) -> Option<calloutd_engine::BackupSchedule> {
    let file = file?;
    info!(
        "the lease database is backed up to {} every {}s",
        file.display(),
        every.as_secs()
    );
    match engine.start_backups(file, every) {
        Ok(schedule) => Some(schedule),
        Err(e) => {
            warn!("no lease backups: cannot start their thread: {e}");
            None
        }
    }
}

/// The audit log: `--audit-log DIR`, else `DhcpLogFilePath` (by default the `DatabasePath` folder)
/// under the data directory when
/// `ActivityLogFlag` is on. A default folder that cannot be created is a warning, not a failure.
fn open_audit_log(
    args: &ServeOptions,
    params: &calloutd_registry::Parameters,
    data_dir: &Path,
) -> Result<Option<Arc<AuditLog>>, String> {
    if args.no_audit_log {
        return Ok(None);
    }
    let limits = calloutd_engine::AuditLimits {
        max_megabytes: params.dhcp_log_files_max_size_mb(),
        min_free_megabytes: params.dhcp_log_min_space_on_disk_mb(),
        disk_check_interval: params.dhcp_log_disk_space_check_interval(),
    };
    if let Some(dir) = &args.audit_log {
        let log = AuditLog::from_settings(true, dir, limits).map_err(|e| e.to_string())?;
        info!("audit log: {}", dir.display());
        return Ok(log);
    }
    if !params.activity_log_enabled() {
        info!("ActivityLogFlag is 0: no audit log");
        return Ok(None);
    }
    let folder = params.dhcp_log_folder(data_dir);
    match AuditLog::from_settings(true, &folder.path, limits) {
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
    args: &ServeOptions,
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
