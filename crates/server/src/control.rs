//! The control API: HTTP+JSON on one address (loopback by default), served by hyper on a tokio
//! runtime of its own thread (see [`ControlServer`] and its [`ControlLimits`]).
//!
//! Endpoints: `GET /v1/leases[?scope=A.B.C.D]`, `DELETE /v1/leases/{ip}`,
//! `POST /v1/service/{pause|continue|stop}`, `GET /v1/service`, `GET /v1/stats`, `GET /metrics`
//! (Prometheus text), `GET /v1/config`. Errors are `{"error": "..."}` with a 4xx/5xx status.
//!
//! The engine- and callout-specific parts (leases, hook statistics, scopes, configuration) come from a
//! [`ControlBackend`], so this crate stays free of them. None of them holds an engine lock across
//! network I/O (the backend's calls return owned data before the response is written), and no
//! endpoint takes a path or writes a file: what the API changes is the lease database and the audit
//! log the server was started with.
//!
//! Robustness (the figures are [`ControlLimits::default`]): request line and headers at most 16 KiB
//! (431 beyond), a body at most 64 KiB (413 beyond, decided from `Content-Length` before anything is
//! read or allocated), headers within 5 s, a body within 5 s (408), a connection that moves no byte
//! for 10 s while no request of it is answered is closed, at most 64 connections (a new one replaces
//! the quietest idle one; when all are answering, it gets 503), the accept loop backs off and keeps
//! going when descriptors run out (EMFILE/ENFILE), the token is compared in constant time, and a
//! shutdown closes every connection within 2 s. Requests refused for a missing or wrong token (401)
//! are counted in `GET /v1/stats` (`control.unauthorized`) and `/metrics`.

mod http;

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dhcpssdk::DropReason;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::info;

pub use http::{ControlLimits, ControlServer};

use crate::counters::{message_type_name, CountersSnapshot, MESSAGE_TYPE_SLOTS};
use crate::{ServerError, ServerHandle, ServiceState};

/// The default control address (`--control`): loopback only.
pub const DEFAULT_CONTROL_ADDR: &str = "127.0.0.1:6780";
/// The environment variable holding the bearer token (`--control-token`, `ctl --token`).
pub const CONTROL_TOKEN_ENV: &str = "CALLOUTD_CONTROL_TOKEN";

/// One lease as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    /// The leased address.
    pub ip: Ipv4Addr,
    /// The client identity (option 61, else htype + chaddr), hex bytes joined by `-`.
    pub client_id: String,
    /// The hardware address (chaddr), hex bytes joined by `-` as Microsoft writes MACs.
    pub mac: String,
    /// The host name the client sent, if any.
    pub hostname: Option<String>,
    /// Expiry in seconds since the Unix epoch; `None` = never (infinite or BOOTP).
    pub expires: Option<u64>,
    /// `active`, or `expired` (past expiry, not purged yet).
    pub state: String,
    /// `dhcp` or `bootp`.
    pub client_type: String,
    /// The scope (subnet address) the address belongs to, if any.
    pub scope: Option<Ipv4Addr>,
}

/// One hook's call statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookView {
    /// The hook's trace name, e.g. `NewPkt`.
    pub hook: String,
    /// Calls that reached the DLL.
    pub calls: u64,
    /// Sum of call durations, microseconds.
    pub total_us: u64,
    /// Longest call, microseconds.
    pub max_us: u64,
    /// Calls in which a DLL fault was detected.
    pub faults: u64,
}

/// One scope's address usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeView {
    /// The subnet address.
    pub scope: Ipv4Addr,
    /// The scope's name.
    pub name: String,
    /// Leases held in the scope (active or expired-not-purged).
    pub leases: u64,
    /// Pool addresses neither excluded, reserved nor leased.
    pub free: u64,
}

/// One report of callout misbehaviour (a slow hook, buffer abuse, a leaked context, a crash or a
/// hang), as `GET /v1/stats` lists the recent ones under `misbehaviour`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MisbehaviourView {
    /// `slow-hook`, `wrote-past-buffer`, `bad-size`, `wrote-read-only-packet`, `leaked-context`,
    /// `crash` or `hang`.
    pub kind: String,
    /// The hook it was seen in (`AddressOffer`...).
    pub hook: String,
    /// The transaction id of the packet concerned, when there is one.
    pub xid: Option<u32>,
    /// The client hardware address of the packet concerned (`aa:bb:...`), when there is one.
    pub chaddr: Option<String>,
    /// What happened, in one line.
    pub explanation: String,
}

impl fmt::Display for MisbehaviourView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}", self.kind, self.hook)?;
        match (self.xid, &self.chaddr) {
            (Some(xid), Some(chaddr)) => write!(f, " (xid 0x{xid:08x}, chaddr {chaddr})")?,
            (Some(xid), None) => write!(f, " (xid 0x{xid:08x})")?,
            (None, Some(chaddr)) => write!(f, " (chaddr {chaddr})")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.explanation)
    }
}

/// What the control API needs from the engine and the callout.
pub trait ControlBackend: Send + Sync {
    /// Every lease, or those of the scope whose subnet address is `scope`; `Err` names an unknown
    /// scope.
    fn leases(&self, scope: Option<Ipv4Addr>) -> Result<Vec<LeaseView>, String>;
    /// Deletes the lease of `ip` (DeleteClient under the lease lock first): the deleted lease, or
    /// `None` when `ip` has none.
    fn delete_lease(&self, ip: Ipv4Addr) -> Result<Option<LeaseView>, String>;
    /// Per-hook statistics (empty when no callout is loaded).
    fn hooks(&self) -> Vec<HookView>;
    /// Per-scope lease and free-address counts.
    fn scopes(&self) -> Vec<ScopeView>;
    /// Engine counters the runtime does not have (e.g. `dropped_by_callout`), by name.
    fn engine_counters(&self) -> BTreeMap<String, u64>;
    /// The effective configuration, secrets excluded.
    fn config(&self) -> serde_json::Value;
    /// The most recent callout misbehaviour reports, oldest first (a bounded list; the counts per
    /// kind are among [`ControlBackend::engine_counters`]).
    fn misbehaviour(&self) -> Vec<MisbehaviourView> {
        Vec::new()
    }
    /// Backs the lease database up now, into the backup file the server was configured with
    /// (inside the data directory; the request names no path): what was written, or why not.
    fn backup(&self) -> Result<serde_json::Value, String> {
        Err("this server makes no lease backups".into())
    }
}

/// The statistics `GET /v1/stats` returns (and `/metrics` and the summary show).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsView {
    /// `running`, `paused`, `stopping` or `stopped`.
    pub state: String,
    /// Datagrams read from the server sockets.
    pub received: u64,
    /// Replies handed to the kernel.
    pub sent: u64,
    /// Replies whose send failed.
    pub send_errors: u64,
    /// Replies not sent because their lease change could not be committed.
    #[serde(default)]
    pub replies_withheld: u64,
    /// Datagrams the kernel dropped for want of buffer space.
    pub kernel_drops: u64,
    /// Datagrams waiting in the queue.
    pub queue_depth: u64,
    /// Datagrams being processed.
    pub in_progress: u64,
    /// Datagrams whose handler panicked.
    pub handler_panics: u64,
    /// Requests per message type name (`DISCOVER` …, `BOOTP`, `other`); unparsed ones as `unparsed`.
    pub requests: BTreeMap<String, u64>,
    /// Replies per message type name (`OFFER` …).
    pub replies: BTreeMap<String, u64>,
    /// Drops per `DHCP_DROP_*` constant name, whoever decided them (every reason listed).
    pub drops: BTreeMap<String, u64>,
    /// Of those, the drops the runtime decided (NOMEM, DUPLICATE, TIMEOUT, PAUSED).
    pub runtime_drops: BTreeMap<String, u64>,
    /// Engine counters (e.g. `dropped_by_callout`, `suppressed_by_callout`).
    pub engine: BTreeMap<String, u64>,
    /// Per-hook call statistics.
    pub hooks: Vec<HookView>,
    /// Per-scope lease and free-address counts.
    pub scopes: Vec<ScopeView>,
    /// The most recent callout misbehaviour reports, oldest first (bounded).
    #[serde(default)]
    pub misbehaviour: Vec<MisbehaviourView>,
    /// The control API's own figures (401s, refused and closed connections).
    #[serde(default)]
    pub control: ControlStats,
}

/// The control API's counters, as `GET /v1/stats` shows them under `control`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlStats {
    /// Requests refused with 401 (no or a wrong bearer token).
    pub unauthorized: u64,
    /// Requests refused with 413 (body or announced body above the limit).
    pub too_large: u64,
    /// Connections refused with 503 because every connection was answering a request.
    pub refused_connections: u64,
    /// Idle connections closed to make room for a new one (connection cap or no descriptors).
    pub evicted_connections: u64,
    /// Connections closed because a client stalled (headers, body, or no byte moved).
    pub timed_out_connections: u64,
    /// Accept failures for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM).
    pub accept_errors: u64,
}

/// The live counters behind [`ControlStats`], shared by the router and the HTTP server.
#[derive(Debug, Default)]
pub(crate) struct ControlCounters {
    pub(crate) unauthorized: AtomicU64,
    pub(crate) too_large: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
}

impl ControlCounters {
    fn snapshot(&self) -> ControlStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ControlStats {
            unauthorized: get(&self.unauthorized),
            too_large: get(&self.too_large),
            refused_connections: get(&self.refused),
            evicted_connections: get(&self.evicted),
            timed_out_connections: get(&self.timed_out),
            accept_errors: get(&self.accept_errors),
        }
    }
}

/// Lower-case name of a service state.
fn state_name(state: ServiceState) -> &'static str {
    match state {
        ServiceState::Running => "running",
        ServiceState::Paused => "paused",
        ServiceState::Stopping => "stopping",
        ServiceState::Stopped => "stopped",
    }
}

impl StatsView {
    /// Puts the runtime's counters, the service state and the backend's figures together.
    pub fn collect(
        state: ServiceState,
        counters: &CountersSnapshot,
        backend: &dyn ControlBackend,
    ) -> StatsView {
        let by_type = |counts: &[u64; MESSAGE_TYPE_SLOTS], other: u64| {
            let mut map: BTreeMap<String, u64> = (0..MESSAGE_TYPE_SLOTS)
                .filter_map(|i| {
                    let count = counts.get(i).copied().unwrap_or(0);
                    (count > 0).then(|| (message_type_name(i).to_string(), count))
                })
                .collect();
            if other > 0 {
                map.insert("other".into(), other);
            }
            map
        };
        let mut requests = by_type(&counters.requests_by_type, counters.requests_other_type);
        if counters.requests_unparsed > 0 {
            requests.insert("unparsed".into(), counters.requests_unparsed);
        }
        let named = |pairs: &[(DropReason, u64)], all: bool| -> BTreeMap<String, u64> {
            pairs
                .iter()
                .filter(|(reason, count)| *reason != DropReason::Processed && (all || *count > 0))
                .map(|(reason, count)| (reason.constant_name().to_string(), *count))
                .collect()
        };
        StatsView {
            state: state_name(state).into(),
            received: counters.received,
            sent: counters.sent,
            send_errors: counters.send_errors,
            replies_withheld: counters.replies_withheld,
            kernel_drops: counters.kernel_drops,
            queue_depth: counters.queue_depth,
            in_progress: counters.in_progress,
            handler_panics: counters.handler_panics,
            requests,
            replies: by_type(&counters.replies_by_type, counters.replies_other_type),
            drops: named(&counters.drops, true),
            runtime_drops: named(&counters.runtime_drops, false),
            engine: backend.engine_counters(),
            hooks: backend.hooks(),
            scopes: backend.scopes(),
            misbehaviour: backend.misbehaviour(),
            control: ControlStats::default(),
        }
    }

    /// The Prometheus text exposition of these figures (metric names prefixed `calloutd_`).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP calloutd_{name} {help}");
            let _ = writeln!(out, "# TYPE calloutd_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "calloutd_{name}{labels} {value}");
            }
        };
        let one = |value: u64| vec![(String::new(), value)];
        let labelled = |label: &str, map: &BTreeMap<String, u64>| -> Vec<(String, u64)> {
            map.iter()
                .map(|(key, value)| (format!("{{{label}=\"{}\"}}", escape_label(key)), *value))
                .collect()
        };
        family(
            "received_datagrams_total",
            "counter",
            "Datagrams read from the server sockets.",
            one(self.received),
        );
        family(
            "sent_replies_total",
            "counter",
            "Replies handed to the kernel.",
            one(self.sent),
        );
        family(
            "send_errors_total",
            "counter",
            "Replies whose send failed.",
            one(self.send_errors),
        );
        family(
            "replies_withheld_total",
            "counter",
            "Replies not sent because their lease change could not be committed.",
            one(self.replies_withheld),
        );
        family(
            "kernel_drops_total",
            "counter",
            "Datagrams the kernel dropped for want of socket buffer space.",
            one(self.kernel_drops),
        );
        family(
            "queue_depth",
            "gauge",
            "Datagrams waiting for a worker.",
            one(self.queue_depth),
        );
        family(
            "in_progress",
            "gauge",
            "Datagrams being processed.",
            one(self.in_progress),
        );
        family(
            "handler_panics_total",
            "counter",
            "Datagrams whose handler panicked.",
            one(self.handler_panics),
        );
        family(
            "paused",
            "gauge",
            "1 while the service is paused.",
            one(u64::from(self.state == "paused")),
        );
        family(
            "requests_total",
            "counter",
            "Requests by DHCP message type.",
            labelled("type", &self.requests),
        );
        family(
            "replies_total",
            "counter",
            "Replies by DHCP message type.",
            labelled("type", &self.replies),
        );
        family(
            "drops_total",
            "counter",
            "Dropped requests by DHCP_DROP_* reason.",
            labelled("reason", &self.drops),
        );
        family(
            "runtime_drops_total",
            "counter",
            "Drops the runtime decided, by DHCP_DROP_* reason.",
            labelled("reason", &self.runtime_drops),
        );
        family(
            "engine_events_total",
            "counter",
            "Engine counters by name.",
            labelled("counter", &self.engine),
        );
        let per_hook = |value: fn(&HookView) -> u64| -> Vec<(String, u64)> {
            self.hooks
                .iter()
                .map(|h| (format!("{{hook=\"{}\"}}", escape_label(&h.hook)), value(h)))
                .collect()
        };
        family(
            "hook_calls_total",
            "counter",
            "Callout hook calls.",
            per_hook(|h| h.calls),
        );
        family(
            "hook_duration_microseconds_total",
            "counter",
            "Time spent in callout hooks, microseconds.",
            per_hook(|h| h.total_us),
        );
        family(
            "hook_duration_max_microseconds",
            "gauge",
            "Longest callout hook call, microseconds.",
            per_hook(|h| h.max_us),
        );
        family(
            "hook_faults_total",
            "counter",
            "Callout hook calls with a detected fault.",
            per_hook(|h| h.faults),
        );
        let per_scope = |value: fn(&ScopeView) -> u64| -> Vec<(String, u64)> {
            self.scopes
                .iter()
                .map(|s| (format!("{{scope=\"{}\"}}", s.scope), value(s)))
                .collect()
        };
        family(
            "scope_leases",
            "gauge",
            "Leases held per scope.",
            per_scope(|s| s.leases),
        );
        family(
            "scope_free_addresses",
            "gauge",
            "Free pool addresses per scope.",
            per_scope(|s| s.free),
        );
        let control = &self.control;
        for (name, help, value) in [
            (
                "control_unauthorized_total",
                "Control API requests refused with 401 (no or a wrong token).",
                control.unauthorized,
            ),
            (
                "control_too_large_total",
                "Control API requests refused with 413.",
                control.too_large,
            ),
            (
                "control_refused_connections_total",
                "Control API connections refused with 503 (every connection busy).",
                control.refused_connections,
            ),
            (
                "control_evicted_connections_total",
                "Idle control API connections closed to make room.",
                control.evicted_connections,
            ),
            (
                "control_timed_out_connections_total",
                "Control API connections closed because the client stalled.",
                control.timed_out_connections,
            ),
            (
                "control_accept_errors_total",
                "Control API accept failures for want of descriptors or memory.",
                control.accept_errors,
            ),
        ] {
            family(name, "counter", help, one(value));
        }
        out
    }
}

/// Escapes a Prometheus label value.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The one-screen summary (SIGUSR1 and at stop).
impl fmt::Display for StatsView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |map: &BTreeMap<String, u64>| {
            let parts: Vec<String> = map
                .iter()
                .filter(|(_, v)| **v > 0)
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            if parts.is_empty() {
                "none".to_string()
            } else {
                parts.join(", ")
            }
        };
        writeln!(
            f,
            "state {}  received {}  sent {}  send errors {}  withheld {}  kernel drops {}  queue {}  in progress {}",
            self.state,
            self.received,
            self.sent,
            self.send_errors,
            self.replies_withheld,
            self.kernel_drops,
            self.queue_depth,
            self.in_progress
        )?;
        writeln!(f, "requests: {}", join(&self.requests))?;
        writeln!(f, "replies:  {}", join(&self.replies))?;
        writeln!(f, "drops:    {}", join(&self.drops))?;
        writeln!(f, "  by the runtime: {}", join(&self.runtime_drops))?;
        writeln!(f, "engine:   {}", join(&self.engine))?;
        let hooks: Vec<&HookView> = self.hooks.iter().filter(|h| h.calls > 0).collect();
        if hooks.is_empty() {
            writeln!(f, "hooks:    none called")?;
        } else {
            writeln!(f, "hooks:    calls / total µs / max µs / faults")?;
            for h in hooks {
                writeln!(
                    f,
                    "  {:<14} {:>10} {:>12} {:>8} {:>6}",
                    h.hook, h.calls, h.total_us, h.max_us, h.faults
                )?;
            }
        }
        if self.misbehaviour.is_empty() {
            writeln!(f, "misbehaviour: none")?;
        } else {
            writeln!(f, "misbehaviour (latest {}):", self.misbehaviour.len())?;
            for m in &self.misbehaviour {
                writeln!(f, "  {m}")?;
            }
        }
        write!(f, "scopes:")?;
        if self.scopes.is_empty() {
            write!(f, " none")?;
        }
        for s in &self.scopes {
            write!(
                f,
                "\n  {:<15} {:<20} leases {:>6}  free {:>6}",
                s.scope.to_string(),
                s.name,
                s.leases,
                s.free
            )?;
        }
        Ok(())
    }
}

/// Where and how the control API listens.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// The address to bind.
    pub addr: SocketAddr,
    /// The bearer token every request must carry; required when `addr` is not loopback.
    pub token: Option<String>,
}

/// The control token from `--control-token`, `--control-token-file` or `$CALLOUTD_CONTROL_TOKEN`,
/// in that order; `None` when none is given (or it is empty). A token file is read whole, with
/// surrounding whitespace (the final newline) removed; an unreadable or empty file is an error.
pub fn resolve_token(flag: Option<&str>, file: Option<&Path>) -> Result<Option<String>, String> {
    if let Some(token) = flag.filter(|t| !t.is_empty()) {
        return Ok(Some(token.to_string()));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the control token: {e}", path.display()))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!(
                "{}: the control token file is empty",
                path.display()
            ));
        }
        warn_if_readable_by_others(path);
        return Ok(Some(token.to_string()));
    }
    Ok(std::env::var(CONTROL_TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty()))
}

/// A token file others can read is a token others know: say so. (Windows keeps access in ACLs,
/// which the file's metadata does not show: nothing is checked there.)
#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// A token file others can read is a token others know: say so.
#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o044 != 0 {
            tracing::warn!(
                "{}: the control token file is readable by group or others (chmod 600 it)",
                path.display()
            );
        }
    }
}

/// A response before it is written: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The Content-Type.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

const JSON: &str = "application/json";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

impl ControlResponse {
    fn json(status: u16, value: &impl Serialize) -> ControlResponse {
        match serde_json::to_string_pretty(value) {
            Ok(body) => ControlResponse {
                status,
                content_type: JSON,
                body: body + "\n",
            },
            Err(e) => ControlResponse::error(500, &format!("cannot encode the response: {e}")),
        }
    }

    fn error(status: u16, message: &str) -> ControlResponse {
        ControlResponse {
            status,
            content_type: JSON,
            body: serde_json::json!({ "error": message }).to_string() + "\n",
        }
    }
}

/// The request router, separate from the HTTP server so it can be tested without sockets.
pub struct ControlRouter {
    service: ServerHandle,
    backend: Arc<dyn ControlBackend>,
    token: Option<String>,
    counters: Arc<ControlCounters>,
}

impl fmt::Debug for ControlRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlRouter")
            .field("service", &self.service)
            .field("token", &self.token.as_ref().map(|_| "set"))
            .finish_non_exhaustive()
    }
}

/// Compares in constant time: the SHA-256 digests of both (so not even the length leaks through
/// timing), compared with `subtle`.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

impl ControlRouter {
    /// A router over `service` and `backend`; when `token` is set every request must carry
    /// `Authorization: Bearer <token>`.
    pub fn new(
        service: ServerHandle,
        backend: Arc<dyn ControlBackend>,
        token: Option<String>,
    ) -> ControlRouter {
        ControlRouter {
            service,
            backend,
            token,
            counters: Arc::default(),
        }
    }

    /// The counters the HTTP server adds to.
    pub(crate) fn counters(&self) -> Arc<ControlCounters> {
        Arc::clone(&self.counters)
    }

    /// Answers one request: `method` (`GET`…), `url` (path and query), the Authorization header.
    pub fn handle(&self, method: &str, url: &str, authorization: Option<&str>) -> ControlResponse {
        if let Some(token) = &self.token {
            let given = authorization.and_then(|h| h.strip_prefix("Bearer "));
            if !given.is_some_and(|g| same_secret(g.trim().as_bytes(), token.as_bytes())) {
                self.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
                return ControlResponse::error(401, "missing or wrong bearer token");
            }
        }
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        match (method, segments.as_slice()) {
            ("GET", ["v1", "leases"]) => self.leases(query),
            ("DELETE", ["v1", "leases", ip]) => self.delete_lease(ip),
            ("GET", ["v1", "service"]) => self.service_state(),
            ("POST", ["v1", "service", action]) => self.service_action(action),
            ("GET", ["v1", "stats"]) => ControlResponse::json(200, &self.stats()),
            ("GET", ["metrics"]) => ControlResponse {
                status: 200,
                content_type: PROMETHEUS,
                body: self.stats().to_prometheus(),
            },
            ("GET", ["v1", "config"]) => ControlResponse::json(200, &self.backend.config()),
            ("POST", ["v1", "backup"]) => match self.backend.backup() {
                Ok(report) => ControlResponse::json(200, &report),
                Err(message) => ControlResponse::error(500, &message),
            },
            (_, ["v1", "backup"])
            | (_, ["v1", "leases"])
            | (_, ["v1", "leases", _])
            | (_, ["v1", "service"])
            | (_, ["v1", "service", _])
            | (_, ["v1", "stats"])
            | (_, ["metrics"])
            | (_, ["v1", "config"]) => {
                ControlResponse::error(405, &format!("{method} is not allowed on {path}"))
            }
            _ => ControlResponse::error(404, &format!("no such endpoint: {path}")),
        }
    }

    /// The statistics now.
    pub fn stats(&self) -> StatsView {
        let mut stats = StatsView::collect(
            self.service.state(),
            &self.service.counters(),
            &*self.backend,
        );
        stats.control = self.counters.snapshot();
        stats
    }

    fn leases(&self, query: &str) -> ControlResponse {
        let mut scope = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("scope", value)) => match value.parse::<Ipv4Addr>() {
                    Ok(ip) => scope = Some(ip),
                    Err(_) => {
                        return ControlResponse::error(
                            400,
                            &format!("scope {value:?} is not an IPv4 address"),
                        )
                    }
                },
                _ => {
                    return ControlResponse::error(
                        400,
                        &format!("unknown query parameter {pair:?} (only scope=A.B.C.D)"),
                    )
                }
            }
        }
        match self.backend.leases(scope) {
            Ok(leases) => ControlResponse::json(200, &leases),
            Err(message) => ControlResponse::error(404, &message),
        }
    }

    fn delete_lease(&self, ip: &str) -> ControlResponse {
        let Ok(addr) = ip.parse::<Ipv4Addr>() else {
            return ControlResponse::error(400, &format!("{ip:?} is not an IPv4 address"));
        };
        match self.backend.delete_lease(addr) {
            Ok(Some(lease)) => {
                info!(ip = %addr, "lease deleted through the control API");
                ControlResponse::json(200, &lease)
            }
            Ok(None) => ControlResponse::error(404, &format!("no lease for {addr}")),
            Err(message) => ControlResponse::error(500, &message),
        }
    }

    fn service_state(&self) -> ControlResponse {
        ControlResponse::json(
            200,
            &serde_json::json!({ "state": state_name(self.service.state()) }),
        )
    }

    fn service_action(&self, action: &str) -> ControlResponse {
        // The state each action left, not a later reading: a stop in particular runs on the
        // server's own thread and may be over before this answer is written.
        let result = match action {
            "pause" => self.service.pause(),
            "continue" => self.service.resume(),
            "stop" => Ok(self.service.stop()),
            other => {
                return ControlResponse::error(
                    404,
                    &format!("no such service action: {other} (pause, continue, stop)"),
                )
            }
        };
        match result {
            Ok(state) => {
                info!("service {action} through the control API");
                ControlResponse::json(200, &serde_json::json!({ "state": state_name(state) }))
            }
            Err(e) => ControlResponse::error(409, &e.to_string()),
        }
    }
}

impl ControlServer {
    /// Binds `config.addr` and starts answering with the default [`ControlLimits`]. A non-loopback
    /// address without a token is refused.
    pub fn start(
        config: ControlConfig,
        service: ServerHandle,
        backend: Arc<dyn ControlBackend>,
    ) -> Result<ControlServer, ServerError> {
        ControlServer::start_with_limits(config, ControlLimits::default(), service, backend)
    }

    /// [`ControlServer::start`] with other limits.
    pub fn start_with_limits(
        config: ControlConfig,
        limits: ControlLimits,
        service: ServerHandle,
        backend: Arc<dyn ControlBackend>,
    ) -> Result<ControlServer, ServerError> {
        let control_error = |message: String| ServerError::Control {
            addr: config.addr.to_string(),
            message,
        };
        if !config.addr.ip().is_loopback() && config.token.as_deref().unwrap_or("").is_empty() {
            return Err(control_error(format!(
                "a token is required off loopback: give --control-token-file FILE (or \
                 --control-token, or set {CONTROL_TOKEN_ENV})"
            )));
        }
        if limits.max_connections == 0 {
            return Err(control_error("max_connections must be at least 1".into()));
        }
        let token = config.token.is_some();
        let router = ControlRouter::new(service, backend, config.token);
        let server = http::ControlServer::spawn(config.addr, router, limits.clone())
            .map_err(|e| control_error(e.to_string()))?;
        http::log_listening(server.local_addr(), &limits, token);
        Ok(server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::Silent;
    use crate::{Server, ServerConfig};
    use calloutd_hooks::NoHooks;
    use std::sync::Mutex;

    /// A backend with one lease (198.18.0.10) that records what it was asked.
    #[derive(Default)]
    struct Fake {
        deleted: Mutex<Vec<Ipv4Addr>>,
        scopes_asked: Mutex<Vec<Option<Ipv4Addr>>>,
    }

    fn lease() -> LeaseView {
        LeaseView {
            ip: Ipv4Addr::new(198, 18, 0, 10),
            client_id: "01-02-00-00-00-00-01".into(),
            mac: "02-00-00-00-00-01".into(),
            hostname: Some("pc1".into()),
            expires: Some(1_000),
            state: "active".into(),
            client_type: "dhcp".into(),
            scope: Some(Ipv4Addr::new(198, 18, 0, 0)),
        }
    }

    impl ControlBackend for Fake {
        fn leases(&self, scope: Option<Ipv4Addr>) -> Result<Vec<LeaseView>, String> {
            self.scopes_asked.lock().unwrap().push(scope);
            match scope {
                Some(s) if s != Ipv4Addr::new(198, 18, 0, 0) => Err(format!("no scope {s}")),
                _ => Ok(vec![lease()]),
            }
        }
        fn delete_lease(&self, ip: Ipv4Addr) -> Result<Option<LeaseView>, String> {
            self.deleted.lock().unwrap().push(ip);
            Ok((ip == lease().ip).then(lease))
        }
        fn hooks(&self) -> Vec<HookView> {
            vec![HookView {
                hook: "NewPkt".into(),
                calls: 7,
                total_us: 70,
                max_us: 20,
                faults: 0,
            }]
        }
        fn scopes(&self) -> Vec<ScopeView> {
            vec![ScopeView {
                scope: Ipv4Addr::new(198, 18, 0, 0),
                name: "lab".into(),
                leases: 1,
                free: 40,
            }]
        }
        fn engine_counters(&self) -> BTreeMap<String, u64> {
            BTreeMap::from([("dropped_by_callout".to_string(), 3)])
        }
        fn config(&self) -> serde_json::Value {
            serde_json::json!({"scopes": []})
        }
        fn misbehaviour(&self) -> Vec<MisbehaviourView> {
            vec![MisbehaviourView {
                kind: "slow-hook".into(),
                hook: "AddressOffer".into(),
                xid: Some(0x1234),
                chaddr: Some("02:00:00:00:00:01".into()),
                explanation: "took 30 ms under the lease lock".into(),
            }]
        }
    }

    fn server() -> Server {
        let config = ServerConfig {
            listen: vec![crate::parse_listen("127.0.0.1:0").unwrap()],
            workers: 1,
            ..ServerConfig::default()
        };
        Server::start(config, Arc::new(Silent), Arc::new(NoHooks)).unwrap()
    }

    fn body(response: &ControlResponse) -> serde_json::Value {
        serde_json::from_str(&response.body).unwrap()
    }

    #[test]
    fn routes_leases_delete_and_errors() {
        let server = server();
        let fake = Arc::new(Fake::default());
        let router = ControlRouter::new(server.handle(), fake.clone(), None);

        let listed = router.handle("GET", "/v1/leases", None);
        assert_eq!((listed.status, listed.content_type), (200, JSON));
        assert_eq!(body(&listed)[0]["ip"], "198.18.0.10");
        assert_eq!(body(&listed)[0]["mac"], "02-00-00-00-00-01");
        assert_eq!(
            router
                .handle("GET", "/v1/leases?scope=198.18.0.0", None)
                .status,
            200
        );
        let unknown = router.handle("GET", "/v1/leases?scope=198.19.0.0", None);
        assert_eq!(unknown.status, 404);
        assert_eq!(body(&unknown)["error"], "no scope 198.19.0.0");
        assert_eq!(
            *fake.scopes_asked.lock().unwrap(),
            vec![
                None,
                Some(Ipv4Addr::new(198, 18, 0, 0)),
                Some(Ipv4Addr::new(198, 19, 0, 0))
            ]
        );
        assert_eq!(router.handle("GET", "/v1/leases?scope=x", None).status, 400);
        assert_eq!(router.handle("GET", "/v1/leases?foo=1", None).status, 400);

        let deleted = router.handle("DELETE", "/v1/leases/198.18.0.10", None);
        assert_eq!(deleted.status, 200);
        assert_eq!(body(&deleted)["ip"], "198.18.0.10");
        let missing = router.handle("DELETE", "/v1/leases/198.18.0.99", None);
        assert_eq!(missing.status, 404);
        assert_eq!(body(&missing)["error"], "no lease for 198.18.0.99");
        assert_eq!(router.handle("DELETE", "/v1/leases/nope", None).status, 400);
        assert_eq!(fake.deleted.lock().unwrap().len(), 2);

        assert_eq!(router.handle("GET", "/v1/nothing", None).status, 404);
        assert_eq!(router.handle("PUT", "/v1/leases", None).status, 405);
        assert_eq!(router.handle("GET", "/v1/service/pause", None).status, 405);
        assert_eq!(router.handle("GET", "/v1/config", None).status, 200);
        // A backend without backups says so; only POST backs up.
        let backup = router.handle("POST", "/v1/backup", None);
        assert_eq!(backup.status, 500);
        assert!(body(&backup)["error"]
            .as_str()
            .unwrap()
            .contains("no lease backups"));
        assert_eq!(router.handle("GET", "/v1/backup", None).status, 405);
        drop(server);
    }

    #[test]
    fn service_actions_change_the_state() {
        let server = server();
        let handle = server.handle();
        let router = ControlRouter::new(server.handle(), Arc::new(Fake::default()), None);
        let paused = router.handle("POST", "/v1/service/pause", None);
        assert_eq!(body(&paused)["state"], "paused");
        assert_eq!(handle.state(), ServiceState::Paused);
        assert_eq!(
            body(&router.handle("GET", "/v1/stats", None))["state"],
            "paused"
        );
        let resumed = router.handle("POST", "/v1/service/continue", None);
        assert_eq!(body(&resumed)["state"], "running");
        assert_eq!(
            router.handle("POST", "/v1/service/restart", None).status,
            404
        );
        let stopping = router.handle("POST", "/v1/service/stop", None);
        assert_eq!(body(&stopping)["state"], "stopping");
        // A stopping service cannot be paused: 409 with the reason.
        let refused = router.handle("POST", "/v1/service/pause", None);
        assert_eq!(refused.status, 409);
        assert!(body(&refused)["error"]
            .as_str()
            .unwrap()
            .contains("cannot pause"));
        server.wait();
    }

    #[test]
    fn a_token_is_checked_when_set() {
        let server = server();
        let router = ControlRouter::new(
            server.handle(),
            Arc::new(Fake::default()),
            Some("s3cret".into()),
        );
        assert_eq!(router.handle("GET", "/v1/stats", None).status, 401);
        assert_eq!(
            router
                .handle("GET", "/v1/stats", Some("Bearer wrong"))
                .status,
            401
        );
        assert_eq!(
            router.handle("GET", "/v1/stats", Some("s3cret")).status,
            401
        );
        assert_eq!(
            router
                .handle("GET", "/v1/stats", Some("Bearer s3cret"))
                .status,
            200
        );
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
        assert!(same_secret(b"", b""));
        assert_eq!(router.stats().control.unauthorized, 3);
    }

    #[test]
    fn stats_and_metrics_carry_the_same_figures() {
        let server = server();
        let router = ControlRouter::new(server.handle(), Arc::new(Fake::default()), None);
        let stats = body(&router.handle("GET", "/v1/stats", None));
        assert_eq!(stats["received"], 0);
        assert_eq!(stats["hooks"][0]["calls"], 7);
        assert_eq!(stats["engine"]["dropped_by_callout"], 3);
        assert_eq!(stats["drops"]["DHCP_DROP_PAUSED"], 0);
        assert!(stats["drops"].get("DHCP_DROP_PROCESSED").is_none());
        let metrics = router.handle("GET", "/metrics", None);
        assert_eq!((metrics.status, metrics.content_type), (200, PROMETHEUS));
        for line in [
            "calloutd_received_datagrams_total 0",
            "calloutd_hook_calls_total{hook=\"NewPkt\"} 7",
            "calloutd_hook_duration_microseconds_total{hook=\"NewPkt\"} 70",
            "calloutd_hook_duration_max_microseconds{hook=\"NewPkt\"} 20",
            "calloutd_engine_events_total{counter=\"dropped_by_callout\"} 3",
            "calloutd_drops_total{reason=\"DHCP_DROP_PAUSED\"} 0",
            "calloutd_scope_free_addresses{scope=\"198.18.0.0\"} 40",
            "# TYPE calloutd_scope_leases gauge",
        ] {
            assert!(
                metrics.body.lines().any(|l| l == line),
                "{line} missing:\n{}",
                metrics.body
            );
        }
        assert_eq!(stats["misbehaviour"][0]["hook"], "AddressOffer");
        assert_eq!(stats["misbehaviour"][0]["xid"], 0x1234);
        let summary = router.stats().to_string();
        assert!(summary.contains("NewPkt"), "{summary}");
        assert!(
            summary.contains(
                "  slow-hook in AddressOffer (xid 0x00001234, chaddr 02:00:00:00:00:01): took 30 ms under the lease lock"
            ),
            "{summary}"
        );
        assert!(summary.lines().count() < 30, "{summary}");
        assert_eq!(escape_label("a\"b\\"), "a\\\"b\\\\");
    }

    #[test]
    fn http_round_trip_through_the_client() {
        let server = server();
        let control = ControlServer::start(
            ControlConfig {
                addr: "127.0.0.1:0".parse().unwrap(),
                token: Some("t0k".into()),
            },
            server.handle(),
            Arc::new(Fake::default()),
        )
        .unwrap();
        let addr = control.local_addr().to_string();
        use crate::control_client::{call, ControlVerb};
        let leases = call(&addr, Some("t0k"), &ControlVerb::Leases { scope: None }).unwrap();
        assert!(leases.contains("198.18.0.10"), "{leases}");
        let err = call(
            &addr,
            Some("t0k"),
            &ControlVerb::DeleteLease {
                ip: "198.18.0.99".into(),
            },
        )
        .unwrap_err();
        assert_eq!(err, "404: no lease for 198.18.0.99");
        let unauthorised = call(&addr, None, &ControlVerb::Stats).unwrap_err();
        assert!(unauthorised.starts_with("401"), "{unauthorised}");
        let metrics = call(&addr, Some("t0k"), &ControlVerb::Metrics).unwrap();
        assert!(metrics.contains("calloutd_paused 0"), "{metrics}");
        call(&addr, Some("t0k"), &ControlVerb::Pause).unwrap();
        assert_eq!(server.handle().state(), ServiceState::Paused);
        call(&addr, Some("t0k"), &ControlVerb::Stop).unwrap();
        control.shutdown();
        assert!(call(&addr, Some("t0k"), &ControlVerb::Stats).is_err());
        server.wait();
    }

    #[test]
    fn off_loopback_needs_a_token() {
        let server = server();
        let refused = ControlServer::start(
            ControlConfig {
                addr: "0.0.0.0:0".parse().unwrap(),
                token: None,
            },
            server.handle(),
            Arc::new(Fake::default()),
        );
        assert!(matches!(refused, Err(ServerError::Control { .. })));
    }

    /// A control API over the fake backend with `limits` and the token `t0k`.
    fn limited(limits: ControlLimits) -> (Server, ControlServer) {
        let server = server();
        let control = ControlServer::start_with_limits(
            ControlConfig {
                addr: "127.0.0.1:0".parse().unwrap(),
                token: Some("t0k".into()),
            },
            limits,
            server.handle(),
            Arc::new(Fake::default()),
        )
        .unwrap();
        (server, control)
    }

    /// Sends `request` on a fresh connection and reads until the server closes it (or 10 s pass).
    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    }

    const STATS: &[u8] = b"GET /v1/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0k\r\nConnection: close\r\n\r\n";

    #[test]
    fn oversized_requests_get_413_or_431_and_the_api_goes_on() {
        let (_server, control) = limited(ControlLimits::default());
        let addr = control.local_addr();
        for auth in ["", "Authorization: Bearer t0k\r\n"] {
            let huge = format!(
                "POST /v1/service/pause HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 1000000000000000\r\n\r\n"
            );
            let answer = exchange(addr, huge.as_bytes());
            assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        }
        // A chunked body that goes past the limit.
        let mut chunked = b"POST /v1/service/continue HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0k\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..20 {
            chunked.extend_from_slice(b"1000\r\n");
            chunked.extend_from_slice(&[b'a'; 0x1000]);
            chunked.extend_from_slice(b"\r\n");
        }
        let answer = exchange(addr, &chunked);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        // Headers beyond 16 KiB.
        let long = format!(
            "GET /v1/stats HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
            "a".repeat(20_000)
        );
        let answer = exchange(addr, long.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        let answer = exchange(addr, STATS);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let (_, body) = answer.split_once("\r\n\r\n").unwrap();
        let stats: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(stats["control"]["too_large"], 3, "{body}");
        assert_eq!(stats["control"]["unauthorized"], 0, "{body}");
        control.shutdown();
    }

    #[test]
    fn stalled_clients_are_dropped_and_a_401_is_counted() {
        let (_server, control) = limited(ControlLimits {
            body_timeout: std::time::Duration::from_millis(200),
            header_timeout: std::time::Duration::from_millis(200),
            idle_timeout: std::time::Duration::from_millis(300),
            ..ControlLimits::default()
        });
        let addr = control.local_addr();
        // An announced body that never comes: 408.
        let answer = exchange(
            addr,
            b"POST /v1/service/pause HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0k\r\nContent-Length: 10\r\n\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        // Headers that never end: the connection is closed without an answer to a request.
        let answer = exchange(addr, b"GET /v1/stats HTTP/1.1\r\nHost: x\r\n");
        assert!(!answer.contains("200 OK"), "{answer}");
        // A connection that says nothing is closed.
        let answer = exchange(addr, b"");
        assert_eq!(answer, "");
        let answer = exchange(
            addr,
            b"GET /v1/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nConnection: close\r\n\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        let answer = exchange(addr, STATS);
        let (_, body) = answer.split_once("\r\n\r\n").unwrap();
        let stats: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(stats["control"]["unauthorized"], 1, "{body}");
        assert!(
            stats["control"]["timed_out_connections"].as_u64().unwrap() >= 2,
            "{body}"
        );
        let metrics = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0k\r\nConnection: close\r\n\r\n",
        );
        assert!(
            metrics
                .lines()
                .any(|l| l == "calloutd_control_unauthorized_total 1"),
            "{metrics}"
        );
        control.shutdown();
    }

    #[test]
    fn beyond_the_cap_the_quietest_connection_makes_room() {
        let (_server, control) = limited(ControlLimits {
            max_connections: 2,
            ..ControlLimits::default()
        });
        let addr = control.local_addr();
        // Two idle connections fill the cap; each new one replaces the quietest.
        let idle: Vec<std::net::TcpStream> = (0..4)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let answer = exchange(addr, STATS);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let (_, body) = answer.split_once("\r\n\r\n").unwrap();
        let stats: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(
            stats["control"]["evicted_connections"].as_u64().unwrap() >= 3,
            "{body}"
        );
        drop(idle);
        control.shutdown();
    }

    #[test]
    fn shutdown_does_not_wait_for_a_stalled_client() {
        use std::io::Write;
        let (_server, control) = limited(ControlLimits {
            shutdown_grace: std::time::Duration::from_millis(300),
            ..ControlLimits::default()
        });
        let addr = control.local_addr();
        let mut stalled = std::net::TcpStream::connect(addr).unwrap();
        stalled
            .write_all(b"POST /v1/service/pause HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
            .unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            control.shutdown();
            let _ = done_tx.send(());
        });
        // Bounded: the grace period is 300 ms; 20 s means it hangs.
        assert!(
            done_rx
                .recv_timeout(std::time::Duration::from_secs(20))
                .is_ok(),
            "shutdown waited for a stalled client"
        );
        assert!(std::net::TcpStream::connect(addr).is_err());
        drop(stalled);
    }

    #[test]
    fn token_files_are_read_trimmed_and_empty_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(
            resolve_token(None, Some(&file)).unwrap().as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            resolve_token(Some("flag"), Some(&file)).unwrap().as_deref(),
            Some("flag")
        );
        std::fs::write(&file, "  \n").unwrap();
        assert!(resolve_token(None, Some(&file))
            .unwrap_err()
            .contains("empty"));
        assert!(resolve_token(None, Some(&dir.path().join("none")))
            .unwrap_err()
            .contains("cannot read"));
    }
}
