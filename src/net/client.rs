//! Clients: the endpoint forms the Collector takes, gRPC channels and HTTP clients with our TLS,
//! headers as gRPC metadata, and the server's `Retry-After` hint.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

use super::tls::ClientTlsConfig;

/// Where to connect and whether to use TLS, from an endpoint as the Collector takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

pub fn parse_endpoint(endpoint: &str, insecure: bool) -> Result<Target, String> {
    // gRPC's target syntax for the DNS resolver, which is what ferrotel uses anyway.
    let endpoint = match endpoint.strip_prefix("dns:") {
        None => endpoint,
        Some(r) => r.strip_prefix("///").ok_or_else(|| {
            format!(
                "endpoint {endpoint:?}: only dns:///host:port (the system resolver), not a DNS server of its own"
            )
        })?,
    };
    let (rest, tls) = if let Some(r) = endpoint.strip_prefix("https://") {
        (r, true)
    } else if let Some(r) = endpoint.strip_prefix("http://") {
        (r, false)
    } else if endpoint.contains("://") {
        return Err(format!(
            "endpoint {endpoint:?}: only http:// and https:// URLs, or host:port"
        ));
    } else {
        (endpoint, !insecure)
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("endpoint {endpoint:?} needs a port, e.g. gateway:4317"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("endpoint {endpoint:?} has an invalid port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') {
        return Err(format!("endpoint {endpoint:?} has no valid host"));
    }
    Ok(Target {
        host: host.to_owned(),
        port,
        tls,
    })
}

/// gRPC connection options (`configgrpc`'s `keepalive`, `authority` and `balancer_name`).
#[derive(Debug, Clone, Default)]
pub struct GrpcOptions {
    /// Ping after this much silence (default 30s), wait this long for the answer, and whether
    /// to ping without open streams (default true).
    pub keepalive_time: Option<Duration>,
    pub keepalive_timeout: Option<Duration>,
    pub permit_without_stream: Option<bool>,
    /// The `:authority` sent instead of the endpoint's.
    pub authority: Option<String>,
    /// `round_robin`: one connection per address the host resolves to, calls spread over them.
    pub round_robin: bool,
}

/// A lazily connecting gRPC channel to `endpoint` (as the Collector takes it), with TLS done by
/// our rustls config. Shared by the gRPC exporters.
pub fn grpc_channel(endpoint: &str, tls: &ClientTlsConfig) -> Result<Channel, String> {
    grpc_channel_with(endpoint, tls, &GrpcOptions::default())
}

pub fn grpc_channel_with(
    endpoint: &str,
    tls: &ClientTlsConfig,
    opts: &GrpcOptions,
) -> Result<Channel, String> {
    let target = parse_endpoint(endpoint, tls.insecure)?;
    ChannelMaker::new(target, tls, opts)?.channel(None)
}

/// Builds channels to one target: to the name (resolved by the connector on each connect) or
/// to one of its addresses, with the same TLS name and `:authority` either way.
#[derive(Clone)]
struct ChannelMaker {
    target: Target,
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    opts: GrpcOptions,
}

impl ChannelMaker {
    fn new(target: Target, tls: &ClientTlsConfig, opts: &GrpcOptions) -> Result<Self, String> {
        let tls = if target.tls {
            let config = Arc::new(tls.build(&[b"h2"]).map_err(|e| e.to_string())?);
            let name = tls
                .server_name_override
                .clone()
                .unwrap_or_else(|| target.host.clone());
            let server_name = rustls::pki_types::ServerName::try_from(name.clone())
                .map_err(|e| format!("invalid TLS server name {name:?}: {e}"))?;
            Some((config, server_name))
        } else {
            None
        };
        Ok(ChannelMaker {
            target,
            tls,
            opts: opts.clone(),
        })
    }

    fn channel(&self, addr: Option<SocketAddr>) -> Result<Channel, String> {
        let host_port = if self.target.host.contains(':') {
            format!("[{}]:{}", self.target.host, self.target.port)
        } else {
            format!("{}:{}", self.target.host, self.target.port)
        };
        // The URI names the peer and gives the default `:authority`; TLS (when on) is done by
        // the connector, so the scheme stays http.
        let uri = match addr {
            None => format!("http://{host_port}"),
            Some(a) => format!("http://{a}"),
        };
        let mut ep = Endpoint::from_shared(uri)
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(self.opts.keepalive_time.unwrap_or(Duration::from_secs(30)))
            .keep_alive_while_idle(self.opts.permit_without_stream.unwrap_or(true));
        if let Some(t) = self.opts.keepalive_timeout {
            ep = ep.keep_alive_timeout(t);
        }
        // A connection to one address still speaks to the name, as grpc-go's subchannels do.
        let authority = match (&self.opts.authority, addr) {
            (Some(a), _) => Some(a.clone()),
            (None, Some(_)) => Some(host_port),
            (None, None) => None,
        };
        if let Some(a) = authority {
            let origin: http::Uri = format!("http://{a}")
                .parse()
                .map_err(|e| format!("authority {a:?}: {e}"))?;
            ep = ep.origin(origin);
        }
        let Some((config, server_name)) = self.tls.clone() else {
            return Ok(ep.connect_lazy());
        };
        let (host, port) = (self.target.host.clone(), self.target.port);
        let connector = tower::service_fn(move |_uri: http::Uri| {
            let (config, server_name, host) = (config.clone(), server_name.clone(), host.clone());
            async move {
                let tcp = match addr {
                    Some(a) => tokio::net::TcpStream::connect(a).await?,
                    None => tokio::net::TcpStream::connect((host.as_str(), port)).await?,
                };
                tcp.set_nodelay(true)?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(server_name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        });
        Ok(ep.connect_with_connector_lazy(connector))
    }
}

/// Looks a name up: the system resolver in production, a stand-in in tests.
pub type Resolver = Arc<
    dyn Fn(String, u16) -> futures::future::BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>
        + Send
        + Sync,
>;

fn system_resolver() -> Resolver {
    Arc::new(|host, port| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    })
}

/// How often a `round_robin` pool looks its name up again (grpc-go's DNS resolver: 30 s).
pub const RERESOLVE_EVERY: Duration = Duration::from_secs(30);
/// A connection that failed is passed over for this long while others are up.
const SUBCHANNEL_BACKOFF: Duration = Duration::from_secs(1);

/// The gRPC connections of one exporter: one channel (`pick_first`, the default), or one per
/// resolved address with calls spread over them in turn (`round_robin`), re-resolved every
/// [`RERESOLVE_EVERY`] and soon after a connection fails.
pub struct GrpcPool {
    inner: PoolInner,
}

enum PoolInner {
    One(Channel),
    RoundRobin {
        host: String,
        subchannels: tokio::sync::watch::Receiver<Resolved>,
        next: std::sync::atomic::AtomicUsize,
        reresolve: Arc<tokio::sync::Notify>,
    },
}

/// The latest lookup: its connections, or why there are none.
#[derive(Clone)]
enum Resolved {
    Pending,
    Failed(String),
    Ready(Arc<Vec<Arc<Subchannel>>>),
}

/// One address's connection.
pub struct Subchannel {
    pub addr: SocketAddr,
    channel: Channel,
    /// Passed over until this instant (ms on the pool's clock), after a failure.
    down_until_ms: std::sync::atomic::AtomicU64,
    epoch: std::time::Instant,
}

impl Subchannel {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn is_up(&self) -> bool {
        self.down_until_ms
            .load(std::sync::atomic::Ordering::Relaxed)
            <= self.now_ms()
    }
}

/// The connection a call goes over; report a failed call with [`Pick::failed`].
pub struct Pick<'a> {
    pub channel: Channel,
    sub: Option<Arc<Subchannel>>,
    pool: &'a GrpcPool,
}

impl Pick<'_> {
    /// The call could not reach the peer: pass this address over for a moment and look the
    /// name up again.
    pub fn failed(&self) {
        if let (Some(sub), PoolInner::RoundRobin { reresolve, .. }) = (&self.sub, &self.pool.inner)
        {
            let until = sub.now_ms() + SUBCHANNEL_BACKOFF.as_millis() as u64;
            sub.down_until_ms
                .store(until, std::sync::atomic::Ordering::Relaxed);
            reresolve.notify_one();
        }
    }

    /// The address picked (`round_robin` only).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.sub.as_ref().map(|s| s.addr)
    }
}

impl GrpcPool {
    pub fn new(endpoint: &str, tls: &ClientTlsConfig, opts: &GrpcOptions) -> Result<Self, String> {
        Self::with_resolver(endpoint, tls, opts, system_resolver(), RERESOLVE_EVERY)
    }

    /// A pool whose names are looked up by `resolver` every `every` (tests).
    pub fn with_resolver(
        endpoint: &str,
        tls: &ClientTlsConfig,
        opts: &GrpcOptions,
        resolver: Resolver,
        every: Duration,
    ) -> Result<Self, String> {
        let target = parse_endpoint(endpoint, tls.insecure)?;
        let maker = ChannelMaker::new(target.clone(), tls, opts)?;
        if !opts.round_robin {
            return Ok(GrpcPool {
                inner: PoolInner::One(maker.channel(None)?),
            });
        }
        let (tx, rx) = tokio::sync::watch::channel(Resolved::Pending);
        let reresolve = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(resolve_loop(
            maker,
            resolver,
            every,
            tx,
            Arc::clone(&reresolve),
        ));
        Ok(GrpcPool {
            inner: PoolInner::RoundRobin {
                host: target.host,
                subchannels: rx,
                next: std::sync::atomic::AtomicUsize::new(0),
                reresolve,
            },
        })
    }

    /// The next connection: the single channel, or the next address in turn that has not just
    /// failed (any, if all have). Waits up to `wait` for the first lookup.
    pub async fn pick(&self, wait: Duration) -> Result<Pick<'_>, String> {
        let (host, subchannels, next) = match &self.inner {
            PoolInner::One(c) => {
                return Ok(Pick {
                    channel: c.clone(),
                    sub: None,
                    pool: self,
                });
            }
            PoolInner::RoundRobin {
                host,
                subchannels,
                next,
                ..
            } => (host, subchannels, next),
        };
        let mut rx = subchannels.clone();
        let looked_up =
            tokio::time::timeout(wait, rx.wait_for(|r| !matches!(r, Resolved::Pending))).await;
        let list = match looked_up {
            Err(_) => {
                return Err(format!(
                    "round_robin: looking up {host} is taking over {wait:?}"
                ));
            }
            Ok(Err(_)) => return Err(format!("round_robin: the resolver of {host} stopped")),
            Ok(Ok(r)) => match &*r {
                Resolved::Ready(list) => Arc::clone(list),
                Resolved::Failed(e) => return Err(format!("round_robin: {e}")),
                Resolved::Pending => {
                    return Err(format!("round_robin: {host} is not looked up yet"));
                }
            },
        };
        let start = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = list.len();
        let sub = (0..n)
            .map(|i| &list[(start + i) % n])
            .find(|s| s.is_up())
            .unwrap_or(&list[start % n]);
        Ok(Pick {
            channel: sub.channel.clone(),
            sub: Some(Arc::clone(sub)),
            pool: self,
        })
    }
}

/// Looks the name up now, every `every`, and soon after a failure (at most once a second);
/// keeps the connections of addresses still listed. Ends with the pool.
async fn resolve_loop(
    maker: ChannelMaker,
    resolver: Resolver,
    every: Duration,
    tx: tokio::sync::watch::Sender<Resolved>,
    reresolve: Arc<tokio::sync::Notify>,
) {
    let epoch = std::time::Instant::now();
    let mut current: Vec<Arc<Subchannel>> = Vec::new();
    loop {
        let (host, port) = (maker.target.host.clone(), maker.target.port);
        let update = match resolver(host.clone(), port).await {
            Err(e) => Resolved::Failed(format!("looking up {host}: {e}")),
            Ok(addrs) if addrs.is_empty() => {
                Resolved::Failed(format!("{host} resolved to no address"))
            }
            Ok(mut addrs) => {
                addrs.sort();
                addrs.dedup();
                let mut list = Vec::with_capacity(addrs.len());
                for a in addrs {
                    if let Some(s) = current.iter().find(|s| s.addr == a) {
                        list.push(Arc::clone(s));
                        continue;
                    }
                    match maker.channel(Some(a)) {
                        Ok(channel) => list.push(Arc::new(Subchannel {
                            addr: a,
                            channel,
                            down_until_ms: std::sync::atomic::AtomicU64::new(0),
                            epoch,
                        })),
                        Err(e) => {
                            tracing::warn!(address = %a, error = %e, "round_robin: cannot connect to an address")
                        }
                    }
                }
                current = list.clone();
                Resolved::Ready(Arc::new(list))
            }
        };
        // A failed lookup keeps the last good list, as grpc-go does.
        let keep_old = matches!(update, Resolved::Failed(_)) && !current.is_empty();
        if !keep_old && tx.send(update).is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = reresolve.notified() => tokio::time::sleep(Duration::from_secs(1)).await,
            _ = tx.closed() => return,
        }
    }
}

/// gRPC metadata from a `headers` config map.
pub fn grpc_metadata(headers: &BTreeMap<String, String>) -> Result<http::HeaderMap, String> {
    let mut out = http::HeaderMap::new();
    for (k, v) in headers {
        let name = http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
            .map_err(|e| e.to_string())?;
        let val = http::HeaderValue::from_str(v)
            .map_err(|_| format!("invalid header value for {k:?}"))?;
        out.insert(name, val);
    }
    Ok(out)
}

/// The HTTP client of an HTTP exporter: our rustls config (HTTP/2 or 1.1 by ALPN), the configured
/// headers on every request, ferrotel's user agent.
/// Connection options of an HTTP client (`confighttp`'s keys).
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    pub proxy_url: Option<String>,
    pub max_idle_per_host: Option<usize>,
    pub idle_timeout: Option<Duration>,
    pub h2_ping_interval: Option<Duration>,
    pub h2_ping_timeout: Option<Duration>,
}

pub fn http_client(
    tls: &crate::net::tls::ClientTlsConfig,
    headers: &BTreeMap<String, String>,
) -> Result<reqwest::Client, String> {
    http_client_with(tls, headers, &HttpOptions::default())
}

pub fn http_client_with(
    tls: &crate::net::tls::ClientTlsConfig,
    headers: &BTreeMap<String, String>,
    opts: &HttpOptions,
) -> Result<reqwest::Client, String> {
    let tls = tls
        .build(&[b"h2", b"http/1.1"])
        .map_err(|e| e.to_string())?;
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        // Validated at parse time (`ClientSettings::validate`).
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            map.insert(k, v);
        }
    }
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .default_headers(map)
        .user_agent(concat!("ferrotel/", env!("CARGO_PKG_VERSION")));
    if let Some(p) = &opts.proxy_url {
        b = b.proxy(reqwest::Proxy::all(p).map_err(|e| format!("proxy_url {p:?}: {e}"))?);
    }
    if let Some(n) = opts.max_idle_per_host {
        b = b.pool_max_idle_per_host(n);
    }
    if let Some(t) = opts.idle_timeout {
        b = b.pool_idle_timeout(t);
    }
    if let Some(t) = opts.h2_ping_interval {
        b = b
            .http2_keep_alive_interval(t)
            .http2_keep_alive_while_idle(true);
    }
    if let Some(t) = opts.h2_ping_timeout {
        b = b.http2_keep_alive_timeout(t);
    }
    b.build().map_err(|e| e.to_string())
}

/// Checks an exporter endpoint URL: `http://` or `https://` with a host.
pub fn check_http_url(u: &str) -> Result<(), String> {
    let uri: http::Uri = u.parse().map_err(|e| format!("invalid URL {u:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some() => Ok(()),
        _ => Err(format!(
            "invalid URL {u:?}: needs http:// or https:// and a host"
        )),
    }
}

/// `Retry-After` in seconds (the form OTLP/HTTP servers send); an HTTP date is not taken.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_as_the_collector_takes_them() {
        assert_eq!(
            parse_endpoint("gateway:4317", false).unwrap(),
            Target {
                host: "gateway".into(),
                port: 4317,
                tls: true
            }
        );
        assert!(!parse_endpoint("gateway:4317", true).unwrap().tls);
        assert!(!parse_endpoint("http://gw:4317", false).unwrap().tls);
        assert!(parse_endpoint("https://gw:4317/", true).unwrap().tls);
        assert_eq!(parse_endpoint("[::1]:4317", true).unwrap().host, "::1");
        assert!(
            parse_endpoint("YOUR_JAEGER_URL", false)
                .unwrap_err()
                .contains("needs a port")
        );
        assert!(parse_endpoint("grpc://x:1", false).is_err());
        // gRPC's DNS target syntax, with the system resolver only.
        assert_eq!(
            parse_endpoint("dns:///collectors.observability:4317", true).unwrap(),
            Target {
                host: "collectors.observability".into(),
                port: 4317,
                tls: false
            }
        );
        assert!(
            parse_endpoint("dns://8.8.8.8/gw:4317", true)
                .unwrap_err()
                .contains("not a DNS server of its own")
        );
    }

    #[test]
    fn retry_after_in_seconds() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static(" 7 "),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    }
}
