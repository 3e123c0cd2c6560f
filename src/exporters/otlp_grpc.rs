//! `otlp_grpc` exporter (alias `otlp`): OTLP over gRPC, e.g. agent → gateway, or to Jaeger ≥1.35.

use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;

use bytes::Bytes;
use prost::Message;
use serde::Deserialize;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::helper::client::{self, ClientSettings};
use super::helper::{Helper, Part, SendError, Sender, Validated};
use super::key_err;
use crate::component::{
    BoxFuture, BuildError, Context, Exporter, ExporterConfig, Factory, Stability,
};
use crate::config::{DeError, Node, units};
use crate::net::compression::Compression;
use crate::signal::response::{ExportResponse, log_partial_success};
use crate::signal::{Batch, Signal};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `host:port` (TLS unless `tls.insecure`), or `http://host:port` / `https://host:port`.
    pub endpoint: String,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// The largest request sent, in bytes of protobuf before compression (what a gRPC server's
    /// `max_recv_msg_size` limits): larger batches are split at item boundaries. A request
    /// the server still refuses as too large is split again. Default 4 MiB, the limit of the
    /// Collector's and most gRPC servers; 0 = no bound. Accepts units (`"16MiB"`).
    #[serde(default = "default_max_request", deserialize_with = "units::bytes")]
    pub max_request_size: u64,
    /// `time` (default 30s), `timeout`, `permit_without_stream` (default true).
    #[serde(default)]
    pub keepalive: Option<GrpcKeepalive>,
    /// `pick_first` (default): one HTTP/2 connection to the endpoint's name. `round_robin`: one
    /// connection per address the name resolves to (e.g. a headless Service), calls spread over
    /// them in turn, the name looked up again every 30 s and after a failed call. Data of one
    /// trace may reach several backends; use `load_balancing` to keep traces together.
    #[serde(default)]
    pub balancer_name: Option<String>,
    /// The `:authority` header instead of the endpoint's host.
    #[serde(default)]
    pub authority: Option<String>,
    /// Accepted: requests wait for the connection as it is (re)made either way.
    #[serde(default)]
    pub wait_for_ready: Option<bool>,
    /// `tls`, `headers`, `timeout`, `retry_on_failure`, `sending_queue`: flattened in by
    /// [`client::parse`].
    #[serde(skip)]
    pub client: ClientSettings,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcKeepalive {
    #[serde(deserialize_with = "units::opt_duration")]
    pub time: Option<Duration>,
    #[serde(deserialize_with = "units::opt_duration")]
    pub timeout: Option<Duration>,
    pub permit_without_stream: Option<bool>,
}

impl client::HasClient for Config {
    fn client_mut(&mut self) -> &mut ClientSettings {
        &mut self.client
    }
}

/// gRPC's default `max_recv_msg_size`.
pub const DEFAULT_MAX_REQUEST: u64 = 4 << 20;

fn default_max_request() -> u64 {
    DEFAULT_MAX_REQUEST
}

/// `otlp_grpc`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::exporter(
    "otlp_grpc",
    crate::signal::WITH_PROFILES,
    Stability::Beta,
    parse,
)
.aliases(&["otlp"]);

pub fn parse(node: &Node) -> Result<Box<dyn ExporterConfig>, DeError> {
    let cfg: Config = client::parse(node)?;
    if let Some(k) = client::HTTP_ONLY_KEYS
        .iter()
        .find(|k| node.get(k).is_some())
    {
        return Err(key_err(
            node,
            &[k],
            format!("`{k}` is a key of HTTP clients (otlp_http), not of gRPC"),
        ));
    }
    if let Some(b) = &cfg.balancer_name
        && !matches!(b.as_str(), "pick_first" | "round_robin")
    {
        return Err(key_err(
            node,
            &["balancer_name"],
            format!("{b:?}: expected pick_first or round_robin"),
        ));
    }
    crate::net::client::parse_endpoint(&cfg.endpoint, cfg.client.tls.insecure)
        .map_err(|m| key_err(node, &["endpoint"], m))?;
    let settings = cfg.client.validate(node)?;
    Ok(Box::new(Validated { cfg, settings }))
}

impl ExporterConfig for Validated<Config> {
    fn storage(&self) -> Option<&crate::config::ComponentId> {
        self.settings.storage.as_ref()
    }

    fn build(self: Box<Self>, ctx: Context) -> Result<Arc<dyn Exporter>, BuildError> {
        let Validated { cfg, settings } = *self;
        let mut sender =
            GrpcSender::new(&cfg, &ctx.id.to_string()).map_err(|e| BuildError::new(&ctx.id, e))?;
        sender.auth = cfg
            .client
            .authenticator(&ctx)
            .map_err(|e| BuildError::new(&ctx.id, e))?;
        Helper::build(&ctx, settings, sender)
    }
}

pub struct GrpcSender {
    channel: crate::net::client::GrpcPool,
    headers: http::HeaderMap,
    /// `auth`: credentials added to each call.
    pub auth: Option<Arc<dyn crate::net::auth::ClientAuthenticator>>,
    compression: Compression,
    timeout: Duration,
    max_request: usize,
    id: String,
}

impl GrpcSender {
    pub fn new(cfg: &Config, id: &str) -> Result<Self, String> {
        Ok(GrpcSender {
            channel: crate::net::client::GrpcPool::new(
                &cfg.endpoint,
                &cfg.client.tls,
                &crate::net::client::GrpcOptions {
                    keepalive_time: cfg.keepalive.as_ref().and_then(|k| k.time),
                    keepalive_timeout: cfg.keepalive.as_ref().and_then(|k| k.timeout),
                    permit_without_stream: cfg
                        .keepalive
                        .as_ref()
                        .and_then(|k| k.permit_without_stream),
                    authority: cfg.authority.clone(),
                    round_robin: cfg.balancer_name.as_deref() == Some("round_robin"),
                },
            )?,
            headers: cfg.client.grpc_metadata()?,
            auth: None,
            compression: cfg.compression,
            timeout: cfg.client.timeout,
            max_request: usize::try_from(cfg.max_request_size)
                .ok()
                .filter(|m| *m > 0)
                .unwrap_or(usize::MAX),
            id: id.to_owned(),
        })
    }

    fn compress(&self, signal: Signal, raw: Bytes) -> Result<EncodedRequest, SendError> {
        // gzip at level 6 and zstd at its default level: what tonic and grpc-go use.
        let payload = self
            .compression
            .encode_with_level(raw, 6, zstd::DEFAULT_COMPRESSION_LEVEL)
            .map_err(|e| SendError::Permanent(format!("compression failed: {e}")))?;
        Ok(EncodedRequest { signal, payload })
    }

    /// The largest request this sender sends (`max_request_size`).
    pub fn max_request(&self) -> usize {
        self.max_request
    }

    /// A request's protobuf (`raw`, with `items`) as requests of at most `max` bytes: each part's
    /// protobuf, its items, and the compressed request. One part shares `raw`.
    pub fn raw_parts(
        &self,
        signal: Signal,
        raw: Bytes,
        items: usize,
        max: usize,
    ) -> Result<Vec<(Bytes, usize, EncodedRequest)>, SendError> {
        if raw.len() <= max {
            let req = self.compress(signal, raw.clone())?;
            return Ok(vec![(raw, items, req)]);
        }
        crate::signal::wire_split::split_request(signal, &raw, max)
            .into_iter()
            .map(|(bytes, items)| {
                let bytes = Bytes::from(bytes);
                let req = self.compress(signal, bytes.clone())?;
                Ok((bytes, items, req))
            })
            .collect()
    }

    /// The protobuf of a request, uncompressed.
    pub fn uncompressed(&self, req: &EncodedRequest) -> Option<Bytes> {
        match self.compression.header_value() {
            None => Some(req.payload.clone()),
            Some(enc) => crate::net::compression::decode(enc, &req.payload, usize::MAX)
                .ok()
                .map(Bytes::from),
        }
    }
}

/// An export request, encoded and compressed once, resent as is on every retry.
pub struct EncodedRequest {
    signal: Signal,
    payload: Bytes,
}

fn path(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        Signal::Profiles => {
            "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"
        }
    }
}

impl Sender for GrpcSender {
    type Request = EncodedRequest;

    fn encode(&self, batch: Batch) -> Result<EncodedRequest, SendError> {
        let signal = batch.signal();
        self.compress(signal, batch.into_request_bytes())
    }

    /// Never more than `max_request_size` per request: larger batches go out in parts.
    fn encode_parts(
        &self,
        batch: Batch,
        _shards: usize,
    ) -> Result<Vec<Part<EncodedRequest>>, SendError> {
        let (signal, items) = (batch.signal(), batch.item_count());
        Ok(self
            .raw_parts(signal, batch.into_request_bytes(), items, self.max_request)?
            .into_iter()
            .map(|(_, items, req)| Part {
                shard: 0,
                items,
                req,
            })
            .collect())
    }

    fn split(&self, req: &EncodedRequest) -> Option<Vec<Part<EncodedRequest>>> {
        let raw = self.uncompressed(req)?;
        let half = raw.len() / 2 + 1;
        let parts: Vec<_> = self
            .raw_parts(req.signal, raw, 0, half)
            .ok()?
            .into_iter()
            .map(|(_, items, req)| Part {
                shard: 0,
                items,
                req,
            })
            .collect();
        (parts.len() > 1).then_some(parts)
    }

    fn send<'a>(&'a self, req: &'a EncodedRequest) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let authed;
            let headers = match &self.auth {
                None => &self.headers,
                Some(a) => {
                    let mut h = self.headers.clone();
                    crate::net::auth::apply(Some(a), &mut h)
                        .await
                        .map_err(|e| SendError::retryable(format!("auth: {e}")))?;
                    authed = h;
                    &authed
                }
            };
            let call = UnaryCall {
                path: path(req.signal),
                payload: req.payload.clone(),
                encoding: self.compression.header_value(),
                headers,
                timeout: (!self.timeout.is_zero()).then_some(self.timeout),
            };
            let wait = call.timeout.unwrap_or(Duration::from_secs(5));
            let pick = self
                .channel
                .pick(wait)
                .await
                .map_err(SendError::retryable)?;
            match unary(&pick.channel, call).await {
                Ok(resp) => {
                    log_partial_success(&self.id, &resp);
                    Ok(())
                }
                Err(status) => {
                    if status.code() == Code::Unavailable {
                        pick.failed();
                    }
                    Err(classify(&status))
                }
            }
        })
    }
}

/// One gRPC unary call with an already encoded (and possibly compressed) message.
pub struct UnaryCall<'a> {
    pub path: &'static str,
    pub payload: Bytes,
    /// `grpc-encoding` of the payload (`gzip`, `zstd`), `None` when not compressed.
    pub encoding: Option<&'static str>,
    pub headers: &'a http::HeaderMap,
    pub timeout: Option<Duration>,
}

/// Sends a unary gRPC request whose message is already framed-ready bytes, and reads the OTLP
/// export response. tonic's own client compresses on every call at a fixed level; framing the
/// message here lets a request be compressed once, before it is queued.
pub async fn unary(channel: &Channel, call: UnaryCall<'_>) -> Result<ExportResponse, Status> {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut header = [0u8; 5];
    header[0] = u8::from(call.encoding.is_some());
    let len = u32::try_from(call.payload.len())
        .map_err(|_| Status::resource_exhausted("message over 4 GiB"))?;
    header[1..].copy_from_slice(&len.to_be_bytes());
    // Two frames: the 5-byte prefix and the payload, which is not copied.
    let frames = futures::stream::iter([
        Ok::<_, Infallible>(http_body::Frame::data(Bytes::copy_from_slice(&header))),
        Ok(http_body::Frame::data(call.payload)),
    ]);
    let mut rb = http::Request::builder()
        .method(http::Method::POST)
        .uri(call.path)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header("grpc-accept-encoding", "gzip")
        .header(
            http::header::USER_AGENT,
            concat!("ferrotel/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(enc) = call.encoding {
        rb = rb.header("grpc-encoding", enc);
    }
    if let Some(t) = call.timeout {
        rb = rb.header(
            "grpc-timeout",
            format!("{}m", t.as_millis().clamp(1, 99_999_999)),
        );
    }
    let mut request = rb
        .body(tonic::body::Body::new(http_body_util::StreamBody::new(
            frames,
        )))
        .map_err(|e| Status::internal(e.to_string()))?;
    request
        .headers_mut()
        .extend(call.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    let response = channel.clone().oneshot(request).await.map_err(|e| {
        Status::unavailable(format!("connecting: {}", crate::text::error_chain(&e)))
    })?;
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.map_err(|e| {
        Status::unavailable(format!(
            "reading the response: {}",
            crate::text::error_chain(&e)
        ))
    })?;
    let trailers = collected.trailers().cloned();
    let data = collected.to_bytes();
    if parts.status != http::StatusCode::OK {
        return Err(Status::new(
            http_to_grpc(parts.status),
            format!("HTTP {} from the gRPC server", parts.status),
        ));
    }
    let status = trailers
        .as_ref()
        .and_then(Status::from_header_map)
        .or_else(|| Status::from_header_map(&parts.headers))
        .ok_or_else(|| Status::internal("the response has no grpc-status"))?;
    if status.code() != Code::Ok {
        return Err(status);
    }
    decode_response(
        &data,
        parts
            .headers
            .get("grpc-encoding")
            .and_then(|v| v.to_str().ok()),
    )
}

/// The gRPC spec's mapping for responses that are not HTTP 200.
fn http_to_grpc(status: http::StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

fn decode_response(data: &[u8], encoding: Option<&str>) -> Result<ExportResponse, Status> {
    if data.len() < 5 {
        return Ok(ExportResponse::default());
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    let body = data
        .get(5..5 + len)
        .ok_or_else(|| Status::internal("truncated gRPC response"))?;
    let plain;
    let body = if data[0] == 1 {
        plain = crate::net::compression::decode(encoding.unwrap_or("identity"), body, 1 << 20)
            .map_err(|e| Status::internal(format!("gRPC response: {e}")))?;
        &plain[..]
    } else {
        body
    };
    ExportResponse::decode(body)
        .map_err(|e| Status::internal(format!("invalid export response: {e}")))
}

/// Whether a refusal says the message was too large: grpc-go's "received message larger than
/// max", tonic's "message length too large" (as `OUT_OF_RANGE`), ferrotel's own receivers.
fn says_too_large(status: &Status) -> bool {
    let m = status.message().to_ascii_lowercase();
    ["larger than max", "too large", "smaller requests"]
        .iter()
        .any(|s| m.contains(s))
}

/// OTLP's retry rules for gRPC status codes; a message refused for its size is `TooLarge`
/// (split it) rather than retried as it is or dropped whole.
pub fn classify(status: &Status) -> SendError {
    let retry_after = status.get_details_retry_info().and_then(|r| r.retry_delay);
    let msg = format!("gRPC status {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::ResourceExhausted | Code::OutOfRange
            if retry_after.is_none() && says_too_large(status) =>
        {
            SendError::TooLarge(msg)
        }
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Cancelled
        | Code::OutOfRange
        | Code::DataLoss => SendError::Retryable { msg, retry_after },
        // The server says "slow down" only when it tells us how long to wait.
        Code::ResourceExhausted if retry_after.is_some() => {
            SendError::Retryable { msg, retry_after }
        }
        _ => SendError::Permanent(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_client_keys() {
        let p = |y: &str| {
            parse(&crate::config::node::parse(y).unwrap())
                .err()
                .map(|e| e.msg)
        };
        assert_eq!(
            p(
                "endpoint: gw:4317\nkeepalive: {time: 10s, timeout: 2s, permit_without_stream: false}\nauthority: gw.example\nbalancer_name: round_robin\n"
            ),
            None
        );
        assert!(
            p("endpoint: gw:4317\nproxy_url: http://proxy:3128\n")
                .unwrap()
                .contains("a key of HTTP clients")
        );
        assert!(
            p("endpoint: gw:4317\nbalancer_name: random\n")
                .unwrap()
                .contains("pick_first or round_robin")
        );
    }
    use crate::config::node::parse as yaml;
    use tonic::codec::CompressionEncoding;

    /// A real gRPC server (tonic, on loopback) answering UNAVAILABLE with RetryInfo, then
    /// RESOURCE_EXHAUSTED without it: the hint must survive the trip through the trailers.
    #[tokio::test]
    async fn retry_info_from_a_real_server_is_honoured() {
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
            TraceService, TraceServiceServer,
        };
        use opentelemetry_proto::tonic::collector::trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
        };
        use std::sync::atomic::{AtomicUsize, Ordering};
        struct Refusing(AtomicUsize);
        #[tonic::async_trait]
        impl TraceService for Refusing {
            async fn export(
                &self,
                req: tonic::Request<ExportTraceServiceRequest>,
            ) -> Result<tonic::Response<ExportTraceServiceResponse>, Status> {
                assert_eq!(
                    req.into_inner().resource_spans.len(),
                    1,
                    "the message arrives whole, gzip-decoded"
                );
                Err(match self.0.fetch_add(1, Ordering::SeqCst) {
                    0 => Status::with_error_details(
                        Code::Unavailable,
                        "busy",
                        tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_secs(7))),
                    ),
                    _ => Status::resource_exhausted("full"),
                })
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(
                    TraceServiceServer::new(Refusing(AtomicUsize::new(0)))
                        .accept_compressed(CompressionEncoding::Gzip),
                )
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let cfg: Config = client::parse(
            &yaml(&format!(
                "endpoint: 127.0.0.1:{port}\ntls: {{insecure: true}}\n"
            ))
            .unwrap(),
        )
        .unwrap();
        let sender = GrpcSender::new(&cfg, "t").unwrap();
        let req = sender
            .encode(crate::signal::testdata::spans("a", 1, 3))
            .unwrap();
        assert_eq!(
            sender.send(&req).await,
            Err(SendError::Retryable {
                msg: "gRPC status Unavailable: busy".into(),
                retry_after: Some(Duration::from_secs(7))
            })
        );
        assert!(
            matches!(sender.send(&req).await, Err(SendError::Permanent(m)) if m.contains("ResourceExhausted"))
        );
    }

    /// `round_robin` against real gRPC servers (tonic, on loopback). The name lookup is a
    /// stand-in: this machine's resolver gives one address per name, so the test decides what
    /// the name resolves to and changes it.
    #[tokio::test]
    async fn round_robin_spreads_calls_over_every_address_and_follows_the_lookup() {
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
            TraceService, TraceServiceServer,
        };
        use opentelemetry_proto::tonic::collector::trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
        };
        use std::net::SocketAddr;
        use std::sync::atomic::{AtomicUsize, Ordering};
        struct Counting(Arc<AtomicUsize>);
        #[tonic::async_trait]
        impl TraceService for Counting {
            async fn export(
                &self,
                _req: tonic::Request<ExportTraceServiceRequest>,
            ) -> Result<tonic::Response<ExportTraceServiceResponse>, Status> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
            }
        }
        async fn server() -> (SocketAddr, Arc<AtomicUsize>) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let count = Arc::new(AtomicUsize::new(0));
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(
                        TraceServiceServer::new(Counting(Arc::clone(&count)))
                            .accept_compressed(CompressionEncoding::Gzip),
                    )
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
            );
            (addr, count)
        }
        let (a, b, c) = (server().await, server().await, server().await);
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let names = Arc::new(std::sync::Mutex::new(vec![a.0, b.0]));
        let looked_up = Arc::clone(&names);
        let resolver: crate::net::client::Resolver = Arc::new(move |host, port| {
            assert_eq!((host.as_str(), port), ("collectors.example", 4317));
            let list = looked_up.lock().unwrap().clone();
            Box::pin(async move { Ok(list) })
        });
        let cfg: Config = client::parse(
            &yaml(
                "endpoint: dns:///collectors.example:4317
tls: {insecure: true}
balancer_name: round_robin
",
            )
            .unwrap(),
        )
        .unwrap();
        let mut sender = GrpcSender::new(&cfg, "t").unwrap();
        sender.channel = crate::net::client::GrpcPool::with_resolver(
            &cfg.endpoint,
            &cfg.client.tls,
            &crate::net::client::GrpcOptions {
                round_robin: true,
                ..Default::default()
            },
            resolver,
            Duration::from_millis(100),
        )
        .unwrap();
        let req = sender
            .encode(crate::signal::testdata::spans("a", 1, 3))
            .unwrap();
        for _ in 0..10 {
            sender.send(&req).await.unwrap();
        }
        let counts = |s: &[&Arc<AtomicUsize>]| {
            s.iter()
                .map(|c| c.load(Ordering::SeqCst))
                .collect::<Vec<_>>()
        };
        assert_eq!(counts(&[&a.1, &b.1, &c.1]), [5, 5, 0]);

        // The name now gives a third address: it gets its share after the next lookup.
        names.lock().unwrap().push(c.0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in 0..30 {
            sender.send(&req).await.unwrap();
        }
        assert_eq!(counts(&[&a.1, &b.1, &c.1]), [15, 15, 10]);

        // An address nobody listens on: one call fails (retryable, so the exporter retries
        // it), then it is passed over while the others are up.
        *names.lock().unwrap() = vec![a.0, dead];
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut failed = 0;
        for _ in 0..10 {
            match sender.send(&req).await {
                Ok(()) => {}
                Err(SendError::Retryable { msg, .. }) => {
                    assert!(msg.contains("Unavailable"), "{msg}");
                    failed += 1;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(failed, 1);
        assert_eq!(counts(&[&a.1, &b.1, &c.1]), [24, 15, 10]);
    }

    #[test]
    fn too_large_refusals_are_told_apart() {
        // grpc-go, tonic (OUT_OF_RANGE) and ferrotel's own receivers.
        for st in [
            Status::resource_exhausted(
                "grpc: received message larger than max (8710394 vs. 4194304)",
            ),
            Status::out_of_range(
                "Error, decoded message length too large: found 8710394 bytes, the limit is: 4194304 bytes",
            ),
            Status::resource_exhausted(
                "the traces request holds 10 spans ...; send smaller requests",
            ),
        ] {
            assert!(matches!(classify(&st), SendError::TooLarge(_)), "{st:?}");
        }
        assert!(matches!(
            classify(&Status::out_of_range("x")),
            SendError::Retryable { .. }
        ));
    }

    #[tokio::test]
    async fn large_batches_are_sent_in_parts_within_max_request_size() {
        let cfg: Config = client::parse(
            &yaml(
                "endpoint: 127.0.0.1:1
tls: {insecure: true}
max_request_size: 2KiB
",
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(cfg.max_request_size, 2048);
        let sender = GrpcSender::new(&cfg, "t").unwrap();
        let batch = crate::signal::testdata::spans("a", 2, 100);
        let parts = sender.encode_parts(batch, 1).unwrap();
        assert!(parts.len() > 2);
        let mut items = 0;
        for p in &parts {
            let raw = sender.uncompressed(&p.req).unwrap();
            assert!(raw.len() <= 2048);
            assert_eq!(
                crate::signal::wire::scan(Signal::Traces, &raw)
                    .unwrap()
                    .items,
                p.items
            );
            items += p.items;
        }
        assert_eq!(items, 200);
        // Refused anyway: split again in halves.
        let halves = sender.split(&parts[0].req).unwrap();
        assert_eq!(
            halves.iter().map(|p| p.items).sum::<usize>(),
            parts[0].items
        );
    }

    #[test]
    fn status_codes_are_classified_as_otlp_says() {
        assert!(matches!(
            classify(&Status::unavailable("x")),
            SendError::Retryable { .. }
        ));
        assert!(matches!(
            classify(&Status::resource_exhausted("x")),
            SendError::Permanent(_)
        ));
        let with_info = Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_secs(3))),
        );
        assert_eq!(
            classify(&with_info),
            SendError::Retryable {
                msg: "gRPC status ResourceExhausted: slow down".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert!(matches!(
            classify(&Status::invalid_argument("x")),
            SendError::Permanent(_)
        ));
    }

    #[test]
    fn config_errors_point_at_keys() {
        let e = parse(&yaml("endpoint: gw\n").unwrap()).err().unwrap();
        assert_eq!(
            (e.path_string().as_str(), e.pos.unwrap().line),
            ("endpoint", 1)
        );
        let e = parse(&yaml("endpoint: gw:4317\ncompression: brotli\n").unwrap())
            .err()
            .unwrap();
        assert_eq!(e.path_string(), "compression");
        let e = parse(&yaml("endpoint: gw:4317\nsending_queue:\n  num_consumers: 0\n").unwrap())
            .err()
            .unwrap();
        assert_eq!(
            (e.path_string().as_str(), e.pos.unwrap().line),
            ("sending_queue.num_consumers", 3)
        );
        // Ranges: what once validated and then exhausted memory at start.
        for (text, path, line) in [
            (
                "endpoint: gw:4317\nsending_queue:\n  queue_size: 4000000000\n",
                "sending_queue.queue_size",
                3,
            ),
            (
                "endpoint: gw:4317\nsending_queue:\n  num_consumers: 10000000\n",
                "sending_queue.num_consumers",
                3,
            ),
            (
                "endpoint: gw:4317\nretry_on_failure:\n  max_interval: 100000h\n",
                "retry_on_failure.max_interval",
                3,
            ),
        ] {
            let e = parse(&yaml(text).unwrap()).err().expect(text);
            assert_eq!(
                (e.path_string().as_str(), e.pos.unwrap().line),
                (path, line),
                "{}",
                e.msg
            );
        }
        // `timeout: 0s` is the Collector's "no timeout", not "time out at once".
        assert!(parse(&yaml("endpoint: gw:4317\ntimeout: 0s\n").unwrap()).is_ok());
        let e = parse(&yaml("endpoint: gw:4317\ntimeout: 5\n").unwrap())
            .err()
            .unwrap();
        assert!(e.msg.contains("missing unit"), "{}", e.msg);
        assert!(
            parse(
                &yaml("endpoint: gw:4317\ntls:\n  insecure: true\nsending_queue:\n  batch:\n")
                    .unwrap()
            )
            .is_ok()
        );
    }
}
