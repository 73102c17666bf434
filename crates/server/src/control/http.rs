//! The control API's HTTP server: hyper (HTTP/1.1) on a tokio runtime of its own thread, with the
//! limits of [`ControlLimits`] so that no client can take memory, descriptors, the control port or
//! the process's exit hostage. The routing is [`ControlRouter`]'s; handlers run on tokio's blocking
//! pool, so a slow backend call (a large lease list) never holds up the accept loop.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

use super::{ControlCounters, ControlResponse, ControlRouter};

/// The limits of the control API's HTTP server (see the README, "The control API").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlLimits {
    /// The request line and headers together; beyond it the answer is 431 and the connection closes.
    pub max_header_bytes: usize,
    /// A request body (no endpoint takes one); beyond it, or a `Content-Length` announcing more, the
    /// answer is 413 and the connection closes. Nothing is allocated from `Content-Length`.
    pub max_body_bytes: usize,
    /// The time a client has to send a request's headers, counted from the first wait for them
    /// (so also a keep-alive connection's idle time between requests).
    pub header_timeout: Duration,
    /// The time a client has to send an announced body; then 408 and the connection closes.
    pub body_timeout: Duration,
    /// A connection that neither sent nor took a byte for this long, while no request of it is
    /// being answered, is closed: a client that stalls reading or writing is dropped.
    pub idle_timeout: Duration,
    /// Connections open at once. A new one beyond it replaces the connection that has been quiet
    /// longest; when every connection is in a request, it is refused (503, closed).
    pub max_connections: usize,
    /// At shutdown, how long requests in progress may take to finish before their connections are
    /// closed anyway (so SIGTERM always exits).
    pub shutdown_grace: Duration,
}

impl Default for ControlLimits {
    fn default() -> Self {
        ControlLimits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            max_connections: 64,
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// The smallest header limit hyper accepts as its read buffer.
const MIN_BUFFER: usize = 8192;
/// Pause of the accept loop after an error that is no shortage of descriptors (e.g. ECONNABORTED
/// repeating), so it can never spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause of the accept loop while descriptors are short (it doubles from 10 ms).
const MAX_DESCRIPTOR_BACKOFF: Duration = Duration::from_secs(1);
/// One "out of descriptors" warning per this interval, with the number since the last.
const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// What a connection refused for want of a slot gets before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
Content-Length: 48\r\nConnection: close\r\n\r\n{\"error\":\"too many control connections, retry\"}\n";

/// One open connection as the table sees it.
struct Conn {
    /// Milliseconds since [`Shared::epoch`] of the last byte read or written.
    last_progress: AtomicU64,
    /// Requests of this connection being answered now.
    busy: AtomicUsize,
    /// Told to close when the connection is evicted.
    kill: Notify,
}

impl Conn {
    fn touch(&self, epoch: Instant) {
        self.last_progress
            .store(millis_since(epoch), Ordering::Relaxed);
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What every connection task shares.
struct Shared {
    router: ControlRouter,
    counters: Arc<ControlCounters>,
    limits: ControlLimits,
    epoch: Instant,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
}

impl Shared {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        // The table holds plain data; a panic elsewhere cannot leave it inconsistent.
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection: free, or taken from the quietest connection not answering a
    /// request. `None`: every connection is busy.
    fn admit(&self) -> Option<(u64, Arc<Conn>)> {
        let mut table = self.table();
        if table.len() >= self.limits.max_connections {
            if !evict_quietest(&mut table) {
                return None;
            }
            self.counters.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            last_progress: AtomicU64::new(millis_since(self.epoch)),
            busy: AtomicUsize::new(0),
            kill: Notify::new(),
        });
        table.insert(id, Arc::clone(&conn));
        Some((id, conn))
    }
}

/// Closes the connection that has been quiet longest among those not answering a request; false
/// when there is none.
fn evict_quietest(table: &mut HashMap<u64, Arc<Conn>>) -> bool {
    let quietest = table
        .iter()
        .filter(|(_, c)| c.busy.load(Ordering::Relaxed) == 0)
        .min_by_key(|(_, c)| c.last_progress.load(Ordering::Relaxed))
        .map(|(id, _)| *id);
    match quietest.and_then(|id| table.remove(&id)) {
        Some(conn) => {
            // notify_one keeps the permit if the task is not waiting yet.
            conn.kill.notify_one();
            true
        }
        None => false,
    }
}

/// Removes a connection from the table when its task ends, however it ends.
struct Slot {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.table().remove(&self.id);
    }
}

/// Marks a connection busy while one of its requests is answered.
struct Busy(Arc<Conn>);

impl Busy {
    fn new(conn: &Arc<Conn>) -> Busy {
        conn.busy.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(conn))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A TCP stream that records when a byte last went either way (for the idle timeout).
struct Watched {
    stream: TcpStream,
    conn: Arc<Conn>,
    epoch: Instant,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.touch(self.epoch);
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch(self.epoch);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch(self.epoch);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The running control API. [`ControlServer::shutdown`] (or dropping it) stops it within
/// [`ControlLimits::shutdown_grace`] plus a moment, whatever clients do.
pub struct ControlServer {
    thread: Option<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    local: SocketAddr,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("local", &self.local)
            .finish()
    }
}

impl ControlServer {
    /// Binds `addr` and starts answering through `router` on a thread of its own with a tokio
    /// runtime (the `calloutd-control` thread; handlers run on the runtime's blocking pool).
    pub(crate) fn spawn(
        addr: SocketAddr,
        router: ControlRouter,
        limits: ControlLimits,
    ) -> io::Result<ControlServer> {
        let listener = bind(addr)?;
        let local = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(4)
            .thread_name("calloutd-control-handler")
            .build()?;
        let listener = runtime.block_on(async { TcpListener::from_std(listener) })?;
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            counters: router.counters(),
            router,
            limits,
            epoch: Instant::now(),
            conns: Mutex::default(),
            next_id: AtomicU64::new(0),
        });
        let thread = thread::Builder::new()
            .name("calloutd-control".into())
            .spawn(move || {
                runtime.block_on(serve(listener, Arc::clone(&shared), stopped));
                // Connections still open after the grace period are dropped with the runtime; a
                // handler still in the backend is not waited for.
                runtime.shutdown_timeout(Duration::from_millis(200));
            })?;
        Ok(ControlServer {
            thread: Some(thread),
            stop,
            local,
        })
    }

    /// The bound address (with the port the system chose where 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops accepting, lets requests in progress finish for up to
    /// [`ControlLimits::shutdown_grace`], closes every connection and joins the thread.
    pub fn shutdown(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                warn!("the control thread panicked");
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// A listening socket with a backlog long enough for bursts of connections (they are accepted and,
/// beyond the cap, closed at once rather than left to time out in the kernel's queue).
fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Whether an accept error means the process or system is out of descriptors or memory.
#[cfg(unix)]
fn out_of_resources(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Whether an accept error means the process or system is out of sockets or buffer space (Winsock).
#[cfg(windows)]
fn out_of_resources(error: &io::Error) -> bool {
    /// WSAEMFILE and WSAENOBUFS (winerror.h).
    const WSAEMFILE: i32 = 10024;
    const WSAENOBUFS: i32 = 10055;
    matches!(error.raw_os_error(), Some(WSAEMFILE | WSAENOBUFS))
}

/// The accept loop, until `stopped` turns true; then the graceful part of the shutdown.
async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut backoff = Duration::ZERO;
    let mut short = 0u64;
    let mut last_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::ZERO;
                start_connection(stream, peer, &shared, &stopped);
            }
            Err(e) if out_of_resources(&e) => {
                // The pending connection stays in the kernel's queue. Free a descriptor by closing
                // the quietest connection; with none to close, wait and try again. Never give up.
                short += 1;
                shared
                    .counters
                    .accept_errors
                    .fetch_add(1, Ordering::Relaxed);
                if last_warning.is_none_or(|t| t.elapsed() >= WARN_INTERVAL) {
                    warn!("control API: cannot accept a connection: {e} ({short} time(s) since the last warning); closing idle connections and retrying");
                    short = 0;
                    last_warning = Some(Instant::now());
                }
                let evicted = evict_quietest(&mut shared.table());
                if evicted {
                    shared.counters.evicted.fetch_add(1, Ordering::Relaxed);
                }
                if evicted {
                    // Let the evicted connection's task run and close its socket, then accept.
                    tokio::task::yield_now().await;
                    continue;
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_DESCRIPTOR_BACKOFF);
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
            Err(e) => {
                debug!("control API: accept: {e}");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
    drop(listener);
    // Connections saw the stop too: idle ones close now, busy ones after their request.
    let deadline = Instant::now() + shared.limits.shutdown_grace;
    while !shared.table().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left = shared.table().len();
    if left > 0 {
        warn!(
            "control API: closing {left} connection(s) still open after the shutdown grace period"
        );
    }
}

/// Admits a connection (or refuses it) and spawns its task.
fn start_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    stopped: &watch::Receiver<bool>,
) {
    let Some((id, conn)) = shared.admit() else {
        shared.counters.refused.fetch_add(1, Ordering::Relaxed);
        debug!(%peer, "control API: every connection is busy; refused");
        // One try, never waiting: the socket is closed right after.
        let _ = stream.try_write(REFUSAL);
        return;
    };
    let _ = stream.set_nodelay(true);
    let shared = Arc::clone(shared);
    let stopped = stopped.clone();
    tokio::spawn(run_connection(stream, id, conn, shared, stopped));
}

/// Serves one connection until it closes, is evicted, goes idle or the server stops.
async fn run_connection(
    stream: TcpStream,
    id: u64,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let _slot = Slot {
        shared: Arc::clone(&shared),
        id,
    };
    let limits = &shared.limits;
    let io = TokioIo::new(Watched {
        stream,
        conn: Arc::clone(&conn),
        epoch: shared.epoch,
    });
    let service = {
        let shared = Arc::clone(&shared);
        let conn = Arc::clone(&conn);
        hyper::service::service_fn(move |request| {
            answer(Arc::clone(&shared), Arc::clone(&conn), request)
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(MIN_BUFFER))
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut graceful = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    if e.is_timeout() {
                        shared.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                    }
                    debug!("control API connection: {e}");
                }
                return;
            }
            _ = conn.kill.notified() => {
                debug!("control API: connection closed to make room");
                return;
            }
            _ = idle(&conn, shared.epoch, limits.idle_timeout) => {
                shared.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                debug!("control API: connection idle for {:?}; closed", limits.idle_timeout);
                return;
            }
            _ = stopped.wait_for(|s| *s), if !graceful => {
                // Ends the connection after the request in progress, at once when idle.
                connection.as_mut().graceful_shutdown();
                graceful = true;
            }
        }
    }
}

/// Returns once the connection has been without progress for `limit` while answering nothing.
async fn idle(conn: &Conn, epoch: Instant, limit: Duration) {
    let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    loop {
        let now = millis_since(epoch);
        let quiet = now.saturating_sub(conn.last_progress.load(Ordering::Relaxed));
        if conn.busy.load(Ordering::Relaxed) == 0 && quiet >= limit_ms {
            return;
        }
        let wait = if conn.busy.load(Ordering::Relaxed) > 0 {
            limit_ms
        } else {
            limit_ms - quiet
        };
        tokio::time::sleep(Duration::from_millis(wait.max(1))).await;
    }
}

/// Answers one request: the body limit, then the router on the blocking pool.
async fn answer(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let limits = &shared.limits;
    let max_body = limits.max_body_bytes;
    // Content-Length is only compared, never used to size a buffer.
    if request.body().size_hint().lower() > max_body as u64 {
        shared.counters.too_large.fetch_add(1, Ordering::Relaxed);
        return Ok(closing(ControlResponse::error(
            413,
            &format!("request body too large (at most {max_body} bytes)"),
        )));
    }
    let method = request.method().as_str().to_string();
    let url = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // The body is read (at most `max_body` bytes, in the time allowed) and ignored: no endpoint
    // takes one, but a keep-alive connection must be past it before the next request.
    let body = Limited::new(request.into_body(), max_body).collect();
    match tokio::time::timeout(limits.body_timeout, body).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            shared.counters.too_large.fetch_add(1, Ordering::Relaxed);
            return Ok(closing(ControlResponse::error(
                413,
                &format!("request body too large (at most {max_body} bytes)"),
            )));
        }
        Ok(Err(e)) => {
            return Ok(closing(ControlResponse::error(
                400,
                &format!("reading the request body: {e}"),
            )))
        }
        Err(_) => {
            shared.counters.timed_out.fetch_add(1, Ordering::Relaxed);
            return Ok(closing(ControlResponse::error(
                408,
                "the request body did not arrive in time",
            )));
        }
    }
    let busy = Busy::new(&conn);
    let router_shared = Arc::clone(&shared);
    let handled = tokio::task::spawn_blocking(move || {
        let _busy = busy;
        router_shared
            .router
            .handle(&method, &url, authorization.as_deref())
    })
    .await;
    let response = match handled {
        Ok(response) => response,
        Err(e) => {
            warn!("control API: a request handler failed: {e}");
            ControlResponse::error(500, "the request handler failed")
        }
    };
    Ok(to_http(response))
}

/// `response` with `Connection: close` (after a request whose body was not read).
fn closing(response: ControlResponse) -> Response<Full<Bytes>> {
    let mut http = to_http(response);
    http.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    http
}

fn to_http(response: ControlResponse) -> Response<Full<Bytes>> {
    let mut http = Response::new(Full::new(Bytes::from(response.body)));
    *http.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    http.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(response.content_type),
    );
    http
}

/// Logs where the control API listens and its limits.
pub(crate) fn log_listening(local: SocketAddr, limits: &ControlLimits, token: bool) {
    info!(
        addr = %local,
        token = if token { "required" } else { "none" },
        max_connections = limits.max_connections,
        "control API listening"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(progress: u64, busy: usize) -> Arc<Conn> {
        Arc::new(Conn {
            last_progress: AtomicU64::new(progress),
            busy: AtomicUsize::new(busy),
            kill: Notify::new(),
        })
    }

    #[test]
    fn eviction_takes_the_quietest_connection_not_in_a_request() {
        let mut table: HashMap<u64, Arc<Conn>> = HashMap::new();
        table.insert(1, conn(50, 0));
        table.insert(2, conn(10, 1)); // quietest, but answering a request
        table.insert(3, conn(20, 0));
        assert!(evict_quietest(&mut table));
        let mut left: Vec<u64> = table.keys().copied().collect();
        left.sort_unstable();
        assert_eq!(left, vec![1, 2]);
        assert!(evict_quietest(&mut table));
        assert_eq!(table.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert!(
            !evict_quietest(&mut table),
            "a busy connection is never evicted"
        );
    }

    #[cfg(unix)]
    #[test]
    fn descriptor_shortage_is_told_apart_from_other_accept_errors() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(out_of_resources(&io::Error::from_raw_os_error(code)));
        }
        assert!(!out_of_resources(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
        assert!(!out_of_resources(&io::Error::other("x")));
    }

    #[test]
    fn the_refusal_is_a_complete_response() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }
}
