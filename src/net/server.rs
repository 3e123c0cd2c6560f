//! One accept loop for every listener (OTLP gRPC, OTLP HTTP, health, self-metrics): plain or TLS,
//! HTTP/1.1 and HTTP/2 (h2c or ALPN) on the same port, graceful stop.
//!
//! Connections cost a file descriptor each, so a listener bounds them: at most `max_connections`
//! open; a new one beyond that sheds the connection idle the longest (no request in flight), or
//! is closed at once when every connection is busy. A connection is closed after `idle_timeout`
//! without a request, an HTTP/1 client that has not sent its headers within
//! `read_header_timeout` is disconnected, HTTP/2 peers are pinged every `keepalive_time` and
//! dropped when they stop answering, and `max_connection_age` (gRPC's keepalive parameter)
//! makes clients reconnect now and then, which spreads them over new gateway replicas. What is
//! shed or closed is counted (`otelcol_server_connections_closed_total`, by reason).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The client's address, in every request's extensions (for `k8sattributes` pod association).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// How a listener treats its connections.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at most (per listener).
    pub max_connections: usize,
    /// Close a connection without a request in flight for this long; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// HTTP/1: time to receive a request's headers.
    pub read_header_timeout: Option<Duration>,
    /// HTTP/2: ping a silent peer this often, and drop it when a ping goes unanswered for
    /// `keepalive_timeout`.
    pub keepalive_time: Option<Duration>,
    pub keepalive_timeout: Duration,
    /// Ask a connection to close (GOAWAY) after this long, and close it `max_connection_age_grace`
    /// later; `None` = never.
    pub max_connection_age: Option<Duration>,
    pub max_connection_age_grace: Option<Duration>,
    /// HTTP/2 streams a client may have open at once on one connection; `None` = hyper's default.
    pub max_concurrent_streams: Option<u32>,
}

/// The default cap: far more than one node's pods or a gateway's agents open, far fewer than
/// the file descriptors the process has (its limit is raised at start, see [`raise_fd_limit`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Why `read_buffer_size` / `write_buffer_size` (Go's transport buffers) change nothing here.
pub const BUFFER_SIZE_IGNORED: &str = "accepted and ignored: the size of Go's transport buffer; \
     ferrotel's HTTP/2 and HTTP/1 stack (hyper) sizes its own buffers, and flow control paces \
     the peer";

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: Some(Duration::from_secs(60)),
            read_header_timeout: Some(Duration::from_secs(60)),
            keepalive_time: Some(Duration::from_secs(2 * 3600)),
            keepalive_timeout: Duration::from_secs(20),
            max_connection_age: None,
            max_connection_age_grace: None,
            max_concurrent_streams: None,
        }
    }
}

/// Counters of connections closed by the server, by reason.
#[derive(Clone, Default)]
pub struct ConnectionMetrics {
    /// Shed to make room for a new one (it was the longest idle).
    pub shed: prometheus_client::metrics::counter::Counter,
    /// Refused at the cap, every connection being busy.
    pub refused: prometheus_client::metrics::counter::Counter,
    /// Closed after `idle_timeout`.
    pub idle: prometheus_client::metrics::counter::Counter,
    /// Asked to close for its age (`max_connection_age`).
    pub aged: prometheus_client::metrics::counter::Counter,
    pub open: prometheus_client::metrics::gauge::Gauge,
}

/// `keepalive` of a gRPC server, as the Collector's `configgrpc` writes it.
#[derive(Debug, Clone, Default, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveConfig {
    #[serde(deserialize_with = "crate::config::present")]
    pub server_parameters: Option<KeepaliveServerParameters>,
}

/// `keepalive.server_parameters`. Durations; absent = the default noted.
#[derive(Debug, Clone, Default, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveServerParameters {
    /// Close a connection without a request for this long (GOAWAY). Default 5m (grpc-go has
    /// none: idle connections then pile up until file descriptors run out).
    #[serde(deserialize_with = "crate::config::units::opt_duration")]
    pub max_connection_idle: Option<Duration>,
    /// Ask clients to reconnect after this long (GOAWAY), e.g. to spread them over new
    /// replicas. Default never.
    #[serde(deserialize_with = "crate::config::units::opt_duration")]
    pub max_connection_age: Option<Duration>,
    /// How long after `max_connection_age` in-flight requests may finish before the
    /// connection is closed. Default 30s.
    #[serde(deserialize_with = "crate::config::units::opt_duration")]
    pub max_connection_age_grace: Option<Duration>,
    /// Ping a silent client this often. Default 2h.
    #[serde(deserialize_with = "crate::config::units::opt_duration")]
    pub time: Option<Duration>,
    /// Drop the connection when a ping is not answered within this. Default 20s.
    #[serde(deserialize_with = "crate::config::units::opt_duration")]
    pub timeout: Option<Duration>,
}

/// The default idle timeout of gRPC connections.
pub const DEFAULT_GRPC_IDLE: Duration = Duration::from_secs(300);

/// Zero durations mean "off" where the Collector says so (`max_connection_idle: 0` is
/// infinity in grpc-go).
fn nonzero(d: Option<Duration>) -> Option<Option<Duration>> {
    d.map(|d| (!d.is_zero()).then_some(d))
}

impl Limits {
    /// The limits of a gRPC listener.
    pub fn grpc(
        keepalive: Option<&KeepaliveConfig>,
        max_concurrent_streams: Option<u32>,
        max_connections: usize,
    ) -> Limits {
        let p = keepalive
            .and_then(|k| k.server_parameters.clone())
            .unwrap_or_default();
        let d = Limits::default();
        Limits {
            max_connections,
            idle_timeout: nonzero(p.max_connection_idle).unwrap_or(Some(DEFAULT_GRPC_IDLE)),
            read_header_timeout: d.read_header_timeout,
            keepalive_time: nonzero(p.time).unwrap_or(d.keepalive_time),
            keepalive_timeout: p.timeout.unwrap_or(d.keepalive_timeout),
            max_connection_age: nonzero(p.max_connection_age).unwrap_or(None),
            max_connection_age_grace: p.max_connection_age_grace,
            max_concurrent_streams,
        }
    }

    /// The limits of an HTTP listener (`read_header_timeout`, `idle_timeout` as the Collector's
    /// `confighttp` has them: 0 = none).
    pub fn http(
        read_header_timeout: Option<Duration>,
        idle_timeout: Option<Duration>,
        max_connections: usize,
    ) -> Limits {
        let d = Limits::default();
        Limits {
            max_connections,
            idle_timeout: nonzero(idle_timeout).unwrap_or(d.idle_timeout),
            read_header_timeout: nonzero(read_header_timeout).unwrap_or(d.read_header_timeout),
            ..d
        }
    }
}

/// Binds `host:port` (`:4317` means all interfaces).
pub async fn bind(endpoint: &str) -> std::io::Result<TcpListener> {
    let ep = if endpoint.starts_with(':') {
        format!("0.0.0.0{endpoint}")
    } else {
        endpoint.to_owned()
    };
    TcpListener::bind(ep.as_str()).await
}

/// Raises the soft limit of open files to the hard limit, as the Go runtime does for the
/// Collector: the default soft limit (often 1024) would run out long before any cap here.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Checks that an endpoint has the `host:port` shape with a numeric port.
pub fn validate_endpoint(endpoint: &str) -> Result<(), String> {
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Err(format!("endpoint {endpoint:?} must be host:port"));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "endpoint {endpoint:?} has an invalid port {port:?}"
        ));
    }
    if host.contains('/') {
        return Err(format!(
            "endpoint {endpoint:?} must be host:port, not a URL"
        ));
    }
    Ok(())
}

/// Milliseconds since the server started: connections store their last activity in it.
fn now_ms(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

/// What the accept loop knows of one open connection.
struct Conn {
    in_flight: Arc<AtomicUsize>,
    /// When a request last ended, bytes last arrived, or the connection opened, in [`now_ms`].
    last_active: Arc<AtomicU64>,
    /// Cancelled to close the connection at once.
    kill: CancellationToken,
}

#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Conn>>,
    next_id: AtomicU64,
    /// Woken when a connection ends (shutdown waits for the last).
    ended: tokio::sync::Notify,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Conn>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// At the cap: closes the longest idle connection and says so; false when all are busy.
    fn shed_one(&self) -> bool {
        let conns = self.lock();
        let victim = conns
            .values()
            .filter(|c| c.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|c| c.last_active.load(Ordering::Acquire));
        match victim {
            Some(c) => {
                c.kill.cancel();
                true
            }
            None => false,
        }
    }
}

/// The open connections of one listener, at most `max`: the accept loop asks for a slot before
/// it serves a connection. Shared by the HTTP/gRPC server and the stream receivers (syslog TCP).
pub struct ConnectionSlots {
    registry: Arc<Registry>,
    max: usize,
    metrics: ConnectionMetrics,
    epoch: Instant,
}

/// One open connection's place; freed when dropped.
pub struct Slot {
    id: u64,
    registry: Arc<Registry>,
    metrics: ConnectionMetrics,
    in_flight: Arc<AtomicUsize>,
    last_active: Arc<AtomicU64>,
    /// Cancelled when the connection is shed: close it at once.
    pub kill: CancellationToken,
    epoch: Instant,
}

impl ConnectionSlots {
    pub fn new(max: usize, metrics: ConnectionMetrics) -> Self {
        ConnectionSlots {
            registry: Arc::default(),
            max: max.max(1),
            metrics,
            epoch: Instant::now(),
        }
    }

    /// A slot for a new connection: past the cap the longest idle connection is shed for it,
    /// and when every connection is busy there is none (the newcomer is to be closed). Both
    /// are counted.
    pub fn open(&self) -> Option<Slot> {
        if self.registry.lock().len() >= self.max {
            if self.registry.shed_one() {
                self.metrics.shed.inc();
            } else {
                self.metrics.refused.inc();
                return None;
            }
        }
        let id = self.registry.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Conn {
            in_flight: Arc::new(AtomicUsize::new(0)),
            last_active: Arc::new(AtomicU64::new(now_ms(self.epoch))),
            kill: CancellationToken::new(),
        };
        let slot = Slot {
            id,
            registry: self.registry.clone(),
            metrics: self.metrics.clone(),
            in_flight: conn.in_flight.clone(),
            last_active: conn.last_active.clone(),
            kill: conn.kill.clone(),
            epoch: self.epoch,
        };
        self.registry.lock().insert(id, conn);
        self.metrics.open.inc();
        Some(slot)
    }

    /// Waits until every slot is freed.
    pub async fn drained(&self) {
        loop {
            let ended = self.registry.ended.notified();
            if self.registry.lock().is_empty() {
                return;
            }
            ended.await;
        }
    }
}

impl Slot {
    /// Marks the connection active now (bytes arrived): the longest idle is shed first.
    pub fn touch(&self) {
        self.last_active
            .store(now_ms(self.epoch), Ordering::Release);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
        self.metrics.open.dec();
        self.registry.ended.notify_waiters();
    }
}

/// Counts a request in flight on its connection while it lives.
struct InFlight {
    count: Arc<AtomicUsize>,
    last_active: Arc<AtomicU64>,
    epoch: Instant,
}

impl InFlight {
    fn new(count: Arc<AtomicUsize>, last_active: Arc<AtomicU64>, epoch: Instant) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight {
            count,
            last_active,
            epoch,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.last_active
            .store(now_ms(self.epoch), Ordering::Release);
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's handles: its activity, and the tokens that end it.
struct Life {
    in_flight: Arc<AtomicUsize>,
    last_active: Arc<AtomicU64>,
    kill: CancellationToken,
    stop: CancellationToken,
    epoch: Instant,
}

/// Drives one connection until it ends, closing it gracefully at shutdown, when idle too long or
/// too old, and at once when it is shed. (A macro: the connection types, plain and TLS, carry
/// hyper's long service bounds.)
macro_rules! run_connection {
    ($conn:expr, $life:expr, $limits:expr, $metrics:expr, $peer:expr) => {{
        let (conn, life, limits, metrics, peer): (_, &Life, &Limits, &ConnectionMetrics, SocketAddr) =
            ($conn, $life, $limits, $metrics, $peer);
        tokio::pin!(conn);
        let opened = Instant::now();
        // Checked often enough for the shortest timeout to be close to exact.
        let every = [limits.idle_timeout, limits.max_connection_age]
            .into_iter()
            .flatten()
            .min()
            .map_or(Duration::from_secs(3600), |d| (d / 4).max(Duration::from_millis(50)));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing_since: Option<Instant> = None;
        'conn: loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                    break 'conn;
                }
                _ = life.kill.cancelled() => {
                    tracing::debug!(%peer, "connection shed to make room for a new one");
                    break 'conn;
                }
                _ = life.stop.cancelled(), if closing_since.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    closing_since = Some(Instant::now());
                }
                _ = tick.tick() => {
                    if let Some(since) = closing_since {
                        // Asked to close and still open: past the grace, close it.
                        let grace = limits.max_connection_age_grace.unwrap_or(Duration::from_secs(30));
                        if since.elapsed() > grace && !life.stop.is_cancelled() {
                            break 'conn;
                        }
                        continue 'conn;
                    }
                    let idle_ms = now_ms(life.epoch).saturating_sub(life.last_active.load(Ordering::Acquire));
                    let idle = life.in_flight.load(Ordering::Acquire) == 0
                        && limits
                            .idle_timeout
                            .is_some_and(|t| Duration::from_millis(idle_ms) >= t);
                    let old = limits.max_connection_age.is_some_and(|a| opened.elapsed() >= a);
                    if idle {
                        metrics.idle.inc();
                        tracing::debug!(%peer, "closing an idle connection");
                    } else if old {
                        metrics.aged.inc();
                    }
                    if idle || old {
                        conn.as_mut().graceful_shutdown();
                        closing_since = Some(Instant::now());
                    }
                }
            }
        }

    }};
}

/// Serves `router` on `listener` with default [`Limits`] until `shutdown` is cancelled.
pub fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    serve_with(
        listener,
        tls,
        router,
        shutdown,
        Limits::default(),
        ConnectionMetrics::default(),
    )
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets in-flight requests
/// finish (HTTP/2 GOAWAY, HTTP/1 close after the response). The returned task ends when every
/// connection is closed.
pub fn serve_with(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
    shutdown: CancellationToken,
    limits: Limits,
    metrics: ConnectionMetrics,
) -> JoinHandle<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_header_timeout);
    {
        let mut h2 = builder.http2();
        h2.timer(TokioTimer::new())
            .keep_alive_interval(limits.keepalive_time)
            .keep_alive_timeout(limits.keepalive_timeout);
        if let Some(n) = limits.max_concurrent_streams {
            h2.max_concurrent_streams(n);
        }
    }
    let limits = Arc::new(limits);
    tokio::spawn(async move {
        let slots = ConnectionSlots::new(limits.max_connections, metrics.clone());
        let epoch = slots.epoch;
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Some(slot) = slots.open() else {
                tracing::debug!(%peer, "connection refused: at max_connections and every connection busy");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (in_flight, last_active, kill) = (
                slot.in_flight.clone(),
                slot.last_active.clone(),
                slot.kill.clone(),
            );
            let svc = {
                let (in_flight, last_active) = (in_flight.clone(), last_active.clone());
                router
                    .clone()
                    .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(PeerAddr(peer));
                        req
                    })
                    .map_future(move |fut| {
                        let guard = InFlight::new(in_flight.clone(), last_active.clone(), epoch);
                        async move {
                            let r = fut.await;
                            drop(guard);
                            r
                        }
                    })
            };
            let svc = TowerToHyperService::new(svc);
            let (builder, acceptor) = (builder.clone(), acceptor.clone());
            let (limits, metrics) = (limits.clone(), metrics.clone());
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let life = Life {
                    in_flight,
                    last_active,
                    kill,
                    stop,
                    epoch,
                };
                match acceptor {
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(stream), svc);
                        run_connection!(conn, &life, &limits, &metrics, peer);
                    }
                    Some(acceptor) => {
                        // The handshake counts against the header deadline too.
                        let deadline = limits
                            .read_header_timeout
                            .unwrap_or(Duration::from_secs(10))
                            .min(Duration::from_secs(10));
                        match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                let conn = builder.serve_connection(TokioIo::new(tls), svc);
                                run_connection!(conn, &life, &limits, &metrics, peer);
                            }
                            Ok(Err(e)) => tracing::info!(error = %e, %peer, "TLS handshake failed"),
                            Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
                drop(slot);
            });
        }
        drop(listener);
        // Every connection has been asked to stop (they watch `shutdown`): wait for the last.
        slots.drained().await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(limits: Limits) -> (u16, ConnectionMetrics, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let metrics = ConnectionMetrics::default();
        let stop = CancellationToken::new();
        serve_with(
            listener,
            None,
            router,
            stop.clone(),
            limits,
            metrics.clone(),
        );
        (port, metrics, stop)
    }

    /// Sends one keep-alive GET and reads the answer.
    async fn get(s: &mut tokio::net::TcpStream) -> String {
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// True when the server has closed the connection (a read returns end of stream).
    async fn closed(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(within, s.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    #[tokio::test]
    async fn idle_connections_are_closed_and_busy_ones_kept() {
        let (port, m, stop) = start(Limits {
            idle_timeout: Some(Duration::from_millis(300)),
            ..Limits::default()
        })
        .await;
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        // Requests every 100 ms: never idle for 300 ms.
        for _ in 0..6 {
            assert!(get(&mut s).await.contains("200 OK"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            closed(&mut s, Duration::from_secs(2)).await,
            "closed once idle"
        );
        assert_eq!(m.idle.get(), 1);
        stop.cancel();
    }

    #[tokio::test]
    async fn past_the_cap_the_longest_idle_connection_is_shed() {
        let (port, m, stop) = start(Limits {
            max_connections: 2,
            ..Limits::default()
        })
        .await;
        let mut first = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        assert!(get(&mut first).await.contains("200 OK"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut second = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        assert!(get(&mut second).await.contains("200 OK"));
        let mut third = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        assert!(
            get(&mut third).await.contains("200 OK"),
            "the newcomer is served"
        );
        assert!(
            closed(&mut first, Duration::from_secs(2)).await,
            "the longest idle is shed"
        );
        assert!(
            get(&mut second).await.contains("200 OK"),
            "the others are kept"
        );
        assert_eq!((m.shed.get(), m.refused.get()), (1, 0));
        stop.cancel();
    }

    #[tokio::test]
    async fn old_connections_are_asked_to_close() {
        let (port, m, stop) = start(Limits {
            max_connection_age: Some(Duration::from_millis(300)),
            max_connection_age_grace: Some(Duration::from_millis(200)),
            ..Limits::default()
        })
        .await;
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        assert!(get(&mut s).await.contains("200 OK"));
        assert!(closed(&mut s, Duration::from_secs(2)).await);
        assert_eq!(m.aged.get(), 1);
        stop.cancel();
    }

    #[test]
    fn grpc_and_http_limits_from_config() {
        let l = Limits::grpc(None, None, 10);
        assert_eq!(l.idle_timeout, Some(DEFAULT_GRPC_IDLE));
        let k = KeepaliveConfig {
            server_parameters: Some(KeepaliveServerParameters {
                max_connection_idle: Some(Duration::ZERO),
                max_connection_age: Some(Duration::from_secs(60)),
                ..Default::default()
            }),
        };
        let l = Limits::grpc(Some(&k), Some(50), 10);
        assert_eq!(l.idle_timeout, None, "0 is never, as in grpc-go");
        assert_eq!(l.max_connection_age, Some(Duration::from_secs(60)));
        assert_eq!(l.max_concurrent_streams, Some(50));
        let l = Limits::http(None, Some(Duration::from_secs(5)), 7);
        assert_eq!(
            (l.idle_timeout, l.read_header_timeout, l.max_connections),
            (
                Some(Duration::from_secs(5)),
                Some(Duration::from_secs(60)),
                7
            )
        );
    }
}
