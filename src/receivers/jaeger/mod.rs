//! `jaeger` receiver: what Jaeger clients and agents send, for apps still instrumented with
//! them (and the chart's default receiver set). Four protocols, each on when its key is present:
//!
//! - `grpc` (default `0.0.0.0:14250`): api_v2 `jaeger.api_v2.CollectorService/PostSpans`, as a
//!   Jaeger agent or the OpenTelemetry Jaeger gRPC exporter sends it;
//! - `thrift_http` (default `0.0.0.0:14268`): `POST /api/traces` with a binary-protocol Thrift
//!   `Batch` (`application/x-thrift` or `application/vnd.apache.thrift.binary`), answered 202;
//! - `thrift_compact` (default `0.0.0.0:6831`, UDP) and `thrift_binary` (`0.0.0.0:6832`, UDP):
//!   the agent's `emitBatch` datagrams, as Jaeger client libraries send them.
//!
//! UDP has no way to push back: a datagram read while `queue_size` datagrams wait for the
//! pipeline is dropped and its spans counted as refused; one that cannot be read is counted in
//! `otelcol_receiver_malformed_items`. The mapping to OTLP is in [`translate`].

mod model;
mod translate;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, ConsumeError, Context, Factory, Lifecycle, ReceiverConfig,
    SignalConsumers, Stability,
};
use crate::config::{DeError, Node, from_node, key_err};
use crate::net::compression::{self, DecodeError};
use crate::net::tls::ServerTlsConfig;
use crate::proto::jaeger as j;
use crate::receivers::Output;
use crate::receivers::http_answer::{busy, text};
use crate::signal::{Batch, Signal};
use crate::thrift::Protocol;

pub use model::{JBatch, agent_datagram, thrift_http};
pub use translate::to_otlp;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// At least one of `grpc`, `thrift_http`, `thrift_compact`, `thrift_binary`; a protocol
    /// written with no value (`grpc:`) is on with its defaults.
    pub protocols: Protocols,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "crate::config::present")]
    pub grpc: Option<GrpcConfig>,
    #[serde(default, deserialize_with = "crate::config::present")]
    pub thrift_http: Option<HttpConfig>,
    #[serde(default, deserialize_with = "crate::config::present")]
    pub thrift_compact: Option<UdpConfig>,
    #[serde(default, deserialize_with = "crate::config::present")]
    pub thrift_binary: Option<UdpConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Default `0.0.0.0:14250`.
    pub endpoint: String,
    #[serde(deserialize_with = "crate::config::present")]
    pub tls: Option<ServerTlsConfig>,
    /// Largest request message, in MiB. Default 4.
    pub max_recv_msg_size_mib: u64,
    #[serde(deserialize_with = "crate::config::present")]
    pub auth: Option<crate::net::auth::AuthConfig>,
    pub include_metadata: bool,
    /// Open connections at most. Default 4096.
    pub max_connections: usize,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "0.0.0.0:14250".into(),
            tls: None,
            max_recv_msg_size_mib: 4,
            auth: None,
            include_metadata: false,
            max_connections: crate::net::server::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Default `0.0.0.0:14268`.
    pub endpoint: String,
    #[serde(deserialize_with = "crate::config::present")]
    pub tls: Option<ServerTlsConfig>,
    #[serde(deserialize_with = "crate::config::present")]
    pub auth: Option<crate::net::auth::AuthConfig>,
    pub include_metadata: bool,
    /// Largest body in bytes, before and after decompression. Default 20 MiB.
    pub max_request_body_size: usize,
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "0.0.0.0:14268".into(),
            tls: None,
            auth: None,
            include_metadata: false,
            max_request_body_size: 20 << 20,
            max_connections: crate::net::server::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UdpConfig {
    /// Default `0.0.0.0:6831` (compact) or `0.0.0.0:6832` (binary).
    pub endpoint: Option<String>,
    /// Datagrams read and waiting for the pipeline at most; beyond, they are dropped (and
    /// counted). Default 1000.
    pub queue_size: usize,
    /// Largest datagram read, bytes. Default 65000.
    pub max_packet_size: usize,
    /// Datagrams handed to the pipeline at once. Default 10.
    pub workers: usize,
    /// The socket's receive buffer (`SO_RCVBUF`), bytes; 0 = the system's. Default 0.
    pub socket_buffer_size: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            endpoint: None,
            queue_size: 1000,
            max_packet_size: 65_000,
            workers: 10,
            socket_buffer_size: 0,
        }
    }
}

impl UdpConfig {
    fn endpoint_or(&self, default: &str) -> String {
        self.endpoint.clone().unwrap_or_else(|| default.to_string())
    }
}

const COMPACT_DEFAULT: &str = "0.0.0.0:6831";
const BINARY_DEFAULT: &str = "0.0.0.0:6832";

/// `jaeger`'s identity.
pub const FACTORY: Factory =
    Factory::receiver("jaeger", crate::signal::TRACES, Stability::Alpha, parse);

fn parse(node: &Node) -> Result<Box<dyn ReceiverConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    let p = &cfg.protocols;
    if p.grpc.is_none()
        && p.thrift_http.is_none()
        && p.thrift_compact.is_none()
        && p.thrift_binary.is_none()
    {
        return Err(key_err(
            node,
            &["protocols"],
            "must enable at least one protocol (grpc, thrift_http, thrift_compact or thrift_binary)",
        ));
    }
    let endpoint = |proto: &str, ep: &str| {
        crate::net::server::validate_endpoint(ep)
            .map_err(|m| key_err(node, &["protocols", proto, "endpoint"], m))
    };
    if let Some(g) = &p.grpc {
        endpoint("grpc", &g.endpoint)?;
        if let Some(t) = &g.tls {
            t.validate()
                .map_err(|m| key_err(node, &["protocols", "grpc", "tls"], m))?;
        }
        if !(1..=4095).contains(&g.max_recv_msg_size_mib) {
            return Err(key_err(
                node,
                &["protocols", "grpc", "max_recv_msg_size_mib"],
                "must be between 1 and 4095",
            ));
        }
    }
    if let Some(h) = &p.thrift_http {
        endpoint("thrift_http", &h.endpoint)?;
        if let Some(t) = &h.tls {
            t.validate()
                .map_err(|m| key_err(node, &["protocols", "thrift_http", "tls"], m))?;
        }
        if h.max_request_body_size == 0 {
            return Err(key_err(
                node,
                &["protocols", "thrift_http", "max_request_body_size"],
                "must be positive",
            ));
        }
    }
    for (name, u, default) in [
        ("thrift_compact", &p.thrift_compact, COMPACT_DEFAULT),
        ("thrift_binary", &p.thrift_binary, BINARY_DEFAULT),
    ] {
        let Some(u) = u else { continue };
        endpoint(name, &u.endpoint_or(default))?;
        for (key, v) in [
            ("queue_size", u.queue_size),
            ("max_packet_size", u.max_packet_size),
            ("workers", u.workers),
        ] {
            if v == 0 {
                return Err(key_err(node, &["protocols", name, key], "must be positive"));
            }
        }
        if u.max_packet_size > 65_535 {
            return Err(key_err(
                node,
                &["protocols", name, "max_packet_size"],
                "a UDP datagram holds at most 65535 bytes",
            ));
        }
    }
    Ok(Box::new(cfg))
}

/// The OTLP batch of a Jaeger batch.
fn batch_of(b: JBatch) -> Batch {
    Batch::Traces(to_otlp(b))
}

// ---- gRPC ---------------------------------------------------------------------------------

#[derive(Clone)]
struct Collector {
    out: Arc<Output>,
    include_metadata: bool,
}

#[tonic::async_trait]
impl j::collector_service_server::CollectorService for Collector {
    async fn post_spans(
        &self,
        req: tonic::Request<j::PostSpansRequest>,
    ) -> Result<tonic::Response<j::PostSpansResponse>, tonic::Status> {
        let peer = req
            .extensions()
            .get::<crate::net::server::PeerAddr>()
            .map(|p| p.0.ip());
        let auth = req
            .extensions()
            .get::<crate::net::auth::AuthInfo>()
            .cloned();
        let client = crate::client::ClientInfo::from_headers(
            peer,
            &req.metadata().clone().into_headers(),
            self.include_metadata,
        )
        .with_auth(auth.as_ref());
        let request = req.into_inner();
        // Decoded by tonic within `max_recv_msg_size_mib`; its spans as OTLP take about as much
        // again: reserved before they are built.
        let size = prost::Message::encoded_len(&request) as u64;
        let _reservation = self
            .out
            .budget
            .reserve(3 * size)
            .map_err(|e| tonic::Status::resource_exhausted(format!("jaeger request: {e}")))?;
        let Some(batch) = request.batch else {
            return Ok(tonic::Response::new(j::PostSpansResponse {}));
        };
        let batch = model::proto_batch(batch)
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        match self.out.push(batch_of(batch), client).await {
            Ok(()) => Ok(tonic::Response::new(j::PostSpansResponse {})),
            Err(ConsumeError::Retryable { reason, .. }) => Err(tonic::Status::unavailable(reason)),
            Err(ConsumeError::Permanent(reason)) => Err(tonic::Status::invalid_argument(reason)),
        }
    }
}

// ---- Thrift over HTTP ---------------------------------------------------------------------

struct HttpHandler {
    out: Output,
    limit: usize,
    include_metadata: bool,
}

async fn post_traces(
    State(h): State<Arc<HttpHandler>>,
    peer: Option<axum::Extension<crate::net::server::PeerAddr>>,
    auth: Option<axum::Extension<crate::net::auth::AuthInfo>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if !matches!(
        ct.as_str(),
        "application/x-thrift" | "application/vnd.apache.thrift.binary"
    ) {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported content type {ct:?}: send a binary Thrift Batch as application/x-thrift or application/vnd.apache.thrift.binary"
            ),
        );
    }
    let client = crate::client::ClientInfo::from_headers(
        peer.map(|p| p.0.0.ip()),
        &headers,
        h.include_metadata,
    )
    .with_auth(auth.as_ref().map(|a| &a.0));
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("invalid").to_owned())
        .unwrap_or_default();
    let (raw, inflating) =
        match compression::decode_reserved(&encoding, &body, h.limit, &h.out.budget) {
            Ok(x) => x,
            Err(e @ DecodeError::TooLarge(_)) => {
                return text(StatusCode::PAYLOAD_TOO_LARGE, e.to_string());
            }
            Err(DecodeError::Busy(e)) => return busy(e.to_string()),
            Err(e @ DecodeError::Unsupported(_)) => {
                return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string());
            }
            Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
        };
    drop(body);
    // The decoded spans take about four times the Thrift bytes: reserved before decoding.
    let reservation = match h.out.budget.reserve(4 * raw.len() as u64) {
        Ok(r) => r,
        Err(e @ crate::admission::Refusal::TooLarge { .. }) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("jaeger request: {e}"),
            );
        }
        Err(e) => {
            let mut r = text(
                StatusCode::TOO_MANY_REQUESTS,
                format!("jaeger request: {e}"),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1));
            return r;
        }
    };
    drop(inflating);
    let batch = match model::thrift_http(&raw) {
        Ok(b) => b,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    drop(raw);
    let pushed = h.out.push(batch_of(batch), client).await;
    drop(reservation);
    crate::receivers::http_answer::pushed(pushed)
}

// ---- Thrift over UDP ----------------------------------------------------------------------

fn spawn_udp(
    ctx: &Context,
    socket: tokio::net::UdpSocket,
    cfg: &UdpConfig,
    proto: Protocol,
    out: Arc<Output>,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let transport = match proto {
        Protocol::Compact => "udp_thrift_compact",
        Protocol::Binary => "udp_thrift_binary",
    };
    let malformed = ctx
        .telemetry
        .receiver_malformed
        .get_or_create(&crate::telemetry::ReceiverLabels {
            receiver: ctx.id.to_string(),
            transport: transport.into(),
        })
        .clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(cfg.queue_size);
    // At most `workers` batches in the pipeline at once; the rest wait in the queue.
    let workers = Arc::new(tokio::sync::Semaphore::new(cfg.workers));
    let mut tasks = Vec::new();
    {
        let out = out.clone();
        tasks.push(tokio::spawn(async move {
            let mut running = tokio::task::JoinSet::new();
            while let Some(batch) = rx.recv().await {
                let Ok(permit) = workers.clone().acquire_owned().await else {
                    break;
                };
                let out = out.clone();
                running.spawn(async move {
                    if let Err(e) = out.push(batch, Default::default()).await {
                        tracing::debug!(error = %e, "jaeger datagram refused downstream");
                    }
                    drop(permit);
                });
                // Reap the finished ones as we go.
                while running.try_join_next().is_some() {}
            }
            while running.join_next().await.is_some() {}
        }));
    }
    let max = cfg.max_packet_size;
    let id = ctx.id.to_string();
    tasks.push(tokio::spawn(async move {
        let mut buf = vec![0u8; max];
        loop {
            let n = tokio::select! {
                _ = stop.cancelled() => break,
                r = socket.recv_from(&mut buf) => match r {
                    Ok((n, _)) => n,
                    Err(e) => {
                        tracing::debug!(receiver = %id, error = %e, "jaeger UDP read failed");
                        continue;
                    }
                },
            };
            let batch = match model::agent_datagram(&buf[..n], proto) {
                Ok(b) => batch_of(b),
                Err(e) => {
                    malformed.inc();
                    tracing::debug!(receiver = %id, error = %e, "malformed jaeger datagram");
                    continue;
                }
            };
            let spans = batch.item_count();
            if let Err(tokio::sync::mpsc::error::TrySendError::Full(_)) = tx.try_send(batch) {
                out.refused(Signal::Traces, spans);
                tracing::debug!(receiver = %id, spans, "jaeger datagram dropped: queue_size datagrams wait for the pipeline");
            }
        }
        // Dropping `tx` lets the dispatcher hand on what is queued, wait for it, and stop.
    }));
    tasks
}

fn bind_udp(endpoint: &str, buffer: usize) -> std::io::Result<std::net::UdpSocket> {
    let ep = if endpoint.starts_with(':') {
        format!("0.0.0.0{endpoint}")
    } else {
        endpoint.to_owned()
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&ep)?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{endpoint} resolves to no address")))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if buffer > 0 {
        socket.set_recv_buffer_size(buffer)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

impl ReceiverConfig for Config {
    fn endpoints(&self) -> Vec<String> {
        let p = &self.protocols;
        let mut v = Vec::new();
        if let Some(g) = &p.grpc {
            v.push(g.endpoint.clone());
        }
        if let Some(h) = &p.thrift_http {
            v.push(h.endpoint.clone());
        }
        // UDP ports do not clash with TCP ones; they are checked among themselves at bind.
        v
    }

    fn start(
        self: Box<Self>,
        ctx: Context,
        consumers: SignalConsumers,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            let Some(consumer) = consumers[Signal::Traces.index()].clone() else {
                return Err(BuildError::new(
                    &ctx.id,
                    "the jaeger receiver has only traces; list it in a traces pipeline",
                ));
            };
            let stop = ctx.shutdown.child_token();
            let mut tasks = Vec::new();
            let p = &self.protocols;
            if let Some(g) = &p.grpc {
                let (listener, tls) =
                    crate::receivers::listen(&ctx, &g.endpoint, g.tls.as_ref(), "grpc").await?;
                let max = usize::try_from(g.max_recv_msg_size_mib << 20).unwrap_or(usize::MAX);
                let svc = j::collector_service_server::CollectorServiceServer::new(Collector {
                    out: Arc::new(Output::new(&ctx, "grpc", consumer.clone())),
                    include_metadata: g.include_metadata,
                })
                .max_decoding_message_size(max)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
                let router = tonic::service::Routes::new(svc)
                    .prepare()
                    .into_axum_router();
                let router = crate::receivers::protect(&ctx, "grpc", g.auth.as_ref(), router)?;
                tracing::info!(receiver = %ctx.id, endpoint = %g.endpoint, "Jaeger gRPC listening");
                tasks.push(crate::net::server::serve_with(
                    listener,
                    tls,
                    router,
                    stop.clone(),
                    crate::net::server::Limits::grpc(None, None, g.max_connections),
                    ctx.telemetry.connection_metrics(&g.endpoint),
                ));
            }
            if let Some(h) = &p.thrift_http {
                let (listener, tls) =
                    crate::receivers::listen(&ctx, &h.endpoint, h.tls.as_ref(), "thrift_http")
                        .await?;
                let handler = Arc::new(HttpHandler {
                    out: Output::new(&ctx, "http", consumer.clone()),
                    limit: h.max_request_body_size,
                    include_metadata: h.include_metadata,
                });
                let router = axum::Router::new()
                    .route("/api/traces", axum::routing::post(post_traces))
                    .with_state(handler)
                    .layer(DefaultBodyLimit::max(h.max_request_body_size));
                let router = crate::receivers::protect(&ctx, "http", h.auth.as_ref(), router)?;
                tracing::info!(receiver = %ctx.id, endpoint = %h.endpoint, "Jaeger Thrift HTTP listening");
                tasks.push(crate::net::server::serve_with(
                    listener,
                    tls,
                    router,
                    stop.clone(),
                    crate::net::server::Limits::http(None, None, h.max_connections),
                    ctx.telemetry.connection_metrics(&h.endpoint),
                ));
            }
            for (u, default, proto) in [
                (&p.thrift_compact, COMPACT_DEFAULT, Protocol::Compact),
                (&p.thrift_binary, BINARY_DEFAULT, Protocol::Binary),
            ] {
                let Some(u) = u else { continue };
                let endpoint = u.endpoint_or(default);
                let socket = bind_udp(&endpoint, u.socket_buffer_size)
                    .and_then(tokio::net::UdpSocket::from_std)
                    .map_err(|e| {
                        BuildError::new(&ctx.id, format!("cannot listen on {endpoint} (udp): {e}"))
                    })?;
                let transport = match proto {
                    Protocol::Compact => "udp_thrift_compact",
                    Protocol::Binary => "udp_thrift_binary",
                };
                let out = Arc::new(Output::new(&ctx, transport, consumer.clone()));
                tracing::info!(receiver = %ctx.id, %endpoint, protocol = transport, "Jaeger agent UDP listening");
                tasks.extend(spawn_udp(&ctx, socket, u, proto, out, stop.clone()));
            }
            Ok(crate::component::Tasks::new(stop, tasks) as Box<dyn Lifecycle>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn protocols_get_their_defaults_and_errors_name_the_key() {
        let c: Config = from_node(
            &yaml("protocols:\n  grpc:\n  thrift_http:\n  thrift_compact:\n  thrift_binary:\n")
                .unwrap(),
        )
        .unwrap();
        let p = &c.protocols;
        assert_eq!(p.grpc.as_ref().unwrap().endpoint, "0.0.0.0:14250");
        assert_eq!(p.thrift_http.as_ref().unwrap().endpoint, "0.0.0.0:14268");
        assert_eq!(
            p.thrift_compact
                .as_ref()
                .unwrap()
                .endpoint_or(COMPACT_DEFAULT),
            "0.0.0.0:6831"
        );
        assert_eq!(
            p.thrift_binary
                .as_ref()
                .unwrap()
                .endpoint_or(BINARY_DEFAULT),
            "0.0.0.0:6832"
        );
        assert_eq!(p.thrift_compact.as_ref().unwrap().queue_size, 1000);
        for (cfg, path) in [
            ("protocols: {}\n", "protocols"),
            (
                "protocols:\n  grpc:\n    endpoint: x\n",
                "protocols.grpc.endpoint",
            ),
            (
                "protocols:\n  thrift_compact:\n    workers: 0\n",
                "protocols.thrift_compact.workers",
            ),
            (
                "protocols:\n  thrift_binary:\n    max_packet_size: 70000\n",
                "protocols.thrift_binary.max_packet_size",
            ),
        ] {
            let e = parse(&yaml(cfg).unwrap()).err().unwrap();
            assert_eq!(e.path_string(), path, "{cfg}");
        }
        assert!(parse(&yaml("protocols:\n  thrift_tcp:\n").unwrap()).is_err());
    }
}
