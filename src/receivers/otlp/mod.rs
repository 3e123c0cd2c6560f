//! `otlp` receiver: OTLP over gRPC (default 0.0.0.0:4317) and HTTP (default 0.0.0.0:4318).

mod grpc;
mod http;

use std::sync::Arc;

use serde::Deserialize;

use crate::component::{
    BoxFuture, BuildError, Context, Factory, Lifecycle, Parse, ReceiverConfig, SignalConsumers,
    Stability,
};
use crate::config::{DeError, Node, from_node};
use crate::net::tls::ServerTlsConfig;
use crate::signal::{Batch, Signal};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `grpc` and/or `http`; a protocol written with no value (`grpc:`) is on with its defaults.
    pub protocols: Protocols,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "crate::config::present")]
    pub grpc: Option<GrpcConfig>,
    #[serde(default, deserialize_with = "crate::config::present")]
    pub http: Option<HttpConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Listen address. Default `0.0.0.0:4317`.
    pub endpoint: String,
    /// Only `tcp`.
    pub transport: String,
    /// Largest accepted request message, in MiB (after decompression). Default 4.
    pub max_recv_msg_size_mib: u64,
    /// Largest request accepted by what it takes once decoded, in MiB (the wire scan estimates
    /// it before decoding: an empty span is 2 bytes on the wire and 240 in memory). Above it a
    /// request is refused with `RESOURCE_EXHAUSTED` and no retry info. Default 16 ×
    /// `max_recv_msg_size_mib`; real requests decode to 4–7 times their size.
    #[serde(deserialize_with = "crate::config::present")]
    pub max_decoded_size_mib: Option<u64>,
    #[serde(deserialize_with = "crate::config::present")]
    pub tls: Option<ServerTlsConfig>,
    /// Pass the request's metadata to processors (`attributes` `from_context: metadata.<key>`).
    /// Default false.
    pub include_metadata: bool,
    /// Connection keepalive: idle and age limits, pings (see [`crate::net::server`]).
    #[serde(deserialize_with = "crate::config::present")]
    pub keepalive: Option<crate::net::server::KeepaliveConfig>,
    /// HTTP/2 streams per connection at once. Default hyper's (200).
    #[serde(deserialize_with = "crate::config::present")]
    pub max_concurrent_streams: Option<u32>,
    /// Open connections at most; beyond, the longest idle is shed (or the new one closed when
    /// all are busy). Default 4096.
    pub max_connections: usize,
}

impl GrpcConfig {
    /// The decoded-size limit in bytes.
    pub fn max_decoded_bytes(&self) -> u64 {
        self.max_decoded_size_mib
            .unwrap_or(16 * self.max_recv_msg_size_mib)
            .saturating_mul(1 << 20)
    }
}

impl HttpConfig {
    /// The decoded-size limit in bytes.
    pub fn max_decoded_bytes(&self) -> u64 {
        self.max_decoded_size
            .unwrap_or(16 * self.max_request_body_size as u64)
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "0.0.0.0:4317".into(),
            transport: "tcp".into(),
            max_recv_msg_size_mib: 4,
            max_decoded_size_mib: None,
            tls: None,
            include_metadata: false,
            keepalive: None,
            max_concurrent_streams: None,
            max_connections: crate::net::server::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address. Default `0.0.0.0:4318`.
    pub endpoint: String,
    #[serde(deserialize_with = "crate::config::present")]
    pub tls: Option<ServerTlsConfig>,
    /// Largest accepted request body in bytes, checked before and after decompression.
    /// Default 20 MiB (20971520).
    pub max_request_body_size: usize,
    /// Largest request accepted by what it takes once decoded, in bytes (estimated before
    /// decoding). Above it a request is refused with 413. Default 16 × `max_request_body_size`.
    #[serde(deserialize_with = "crate::config::present")]
    pub max_decoded_size: Option<u64>,
    /// Default `/v1/traces`.
    pub traces_url_path: String,
    /// Default `/v1/metrics`.
    pub metrics_url_path: String,
    /// Default `/v1/logs`.
    pub logs_url_path: String,
    /// Browser clients: origins allowed by CORS (`*` wildcards allowed). Off when absent.
    #[serde(deserialize_with = "crate::config::present")]
    pub cors: Option<CorsConfig>,
    /// Pass the request's headers to processors (`attributes` `from_context: metadata.<key>`).
    /// Default false.
    pub include_metadata: bool,
    /// Time a client has to send a request's headers (HTTP/1). Default 1m; 0 = the default.
    #[serde(deserialize_with = "crate::config::units::opt_duration")]
    pub read_header_timeout: Option<std::time::Duration>,
    /// Close a connection without a request for this long. Default 1m; 0 = the default.
    #[serde(deserialize_with = "crate::config::units::opt_duration")]
    pub idle_timeout: Option<std::time::Duration>,
    /// Open connections at most; beyond, the longest idle is shed (or the new one closed when
    /// all are busy). Default 4096.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "0.0.0.0:4318".into(),
            tls: None,
            max_request_body_size: 20 * 1024 * 1024,
            max_decoded_size: None,
            traces_url_path: "/v1/traces".into(),
            metrics_url_path: "/v1/metrics".into(),
            logs_url_path: "/v1/logs".into(),
            cors: None,
            include_metadata: false,
            read_header_timeout: None,
            idle_timeout: None,
            max_connections: crate::net::server::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    pub allowed_origins: Vec<String>,
    /// Extra request headers allowed besides the CORS-safelisted ones and Content-Type.
    pub allowed_headers: Vec<String>,
    /// Seconds a preflight answer may be cached; 0 = not sent.
    pub max_age: u64,
}

fn de_err(path: &[&str], node: &Node, msg: impl Into<String>) -> DeError {
    let mut pos = Some(node.pos);
    let mut cur = node;
    for p in path {
        match cur.get(p) {
            Some(n) => {
                cur = n;
                pos = Some(n.pos);
            }
            None => break,
        }
    }
    DeError {
        pos,
        path: path.iter().map(|s| s.to_string()).collect(),
        msg: msg.into(),
    }
}

/// `otlp`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::new(
    "otlp",
    crate::signal::ALL_SIGNALS,
    Stability::Beta,
    Parse::Receiver(parse),
);

pub fn parse(node: &Node) -> Result<Box<dyn ReceiverConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    let p = &cfg.protocols;
    if p.grpc.is_none() && p.http.is_none() {
        return Err(de_err(
            &["protocols"],
            node,
            "must enable at least one protocol (grpc or http)",
        ));
    }
    if let Some(g) = &p.grpc {
        crate::net::server::validate_endpoint(&g.endpoint)
            .map_err(|m| de_err(&["protocols", "grpc", "endpoint"], node, m))?;
        if g.transport != "tcp" {
            return Err(de_err(
                &["protocols", "grpc", "transport"],
                node,
                "only `tcp` is supported",
            ));
        }
        if !(1..=4095).contains(&g.max_recv_msg_size_mib) {
            return Err(de_err(
                &["protocols", "grpc", "max_recv_msg_size_mib"],
                node,
                "must be between 1 and 4095 (a gRPC message length is 32 bits)",
            ));
        }
        if !(1..=1_000_000).contains(&g.max_connections) {
            return Err(de_err(
                &["protocols", "grpc", "max_connections"],
                node,
                "must be between 1 and 1000000",
            ));
        }
        if g.max_decoded_size_mib == Some(0) {
            return Err(de_err(
                &["protocols", "grpc", "max_decoded_size_mib"],
                node,
                "must be at least 1",
            ));
        }
        if let Some(t) = &g.tls {
            t.validate()
                .map_err(|m| de_err(&["protocols", "grpc", "tls"], node, m))?;
        }
    }
    if let Some(h) = &p.http {
        crate::net::server::validate_endpoint(&h.endpoint)
            .map_err(|m| de_err(&["protocols", "http", "endpoint"], node, m))?;
        if let Some(t) = &h.tls {
            t.validate()
                .map_err(|m| de_err(&["protocols", "http", "tls"], node, m))?;
        }
        for (key, path) in [
            ("traces_url_path", &h.traces_url_path),
            ("metrics_url_path", &h.metrics_url_path),
            ("logs_url_path", &h.logs_url_path),
        ] {
            if !path.starts_with('/') {
                return Err(de_err(
                    &["protocols", "http", key],
                    node,
                    "must start with `/`",
                ));
            }
        }
        if !(1..=(4 << 30)).contains(&h.max_request_body_size) {
            return Err(de_err(
                &["protocols", "http", "max_request_body_size"],
                node,
                "must be between 1 and 4294967296 (4 GiB)",
            ));
        }
        if !(1..=1_000_000).contains(&h.max_connections) {
            return Err(de_err(
                &["protocols", "http", "max_connections"],
                node,
                "must be between 1 and 1000000",
            ));
        }
        if h.max_decoded_size == Some(0) {
            return Err(de_err(
                &["protocols", "http", "max_decoded_size"],
                node,
                "must be positive",
            ));
        }
    }
    Ok(Box::new(cfg))
}

pub(crate) use super::Output as Entry;

/// Why a request was not taken, and so how it is answered.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Malformed: HTTP 400, gRPC `INVALID_ARGUMENT`.
    Invalid(String),
    /// Too large to take ever, in this form: HTTP 413, gRPC `RESOURCE_EXHAUSTED` without retry
    /// info (permanent for this request; a client should split it).
    TooLarge { msg: String, items: usize },
    /// Not now, memory is in use: HTTP 429 with `Retry-After`, gRPC `RESOURCE_EXHAUSTED` with
    /// `RetryInfo`.
    Busy { msg: String, items: usize },
}

impl Refused {
    /// Items the client sent and was refused (for `otelcol_receiver_refused_*`); unknown for a
    /// malformed request.
    pub(crate) fn items(&self) -> usize {
        match self {
            Refused::Invalid(_) => 0,
            Refused::TooLarge { items, .. } | Refused::Busy { items, .. } => *items,
        }
    }
}

/// A request that was admitted: its batch and the memory reserved for it, held until the
/// pipeline has taken the batch.
pub(crate) struct Admitted {
    pub batch: Batch,
    /// Items dropped for invalid ids, and why (answered as partial success).
    pub rejected: i64,
    pub why: String,
    pub _reservation: crate::admission::Reservation,
}

/// Reads an OTLP/protobuf export request, admitting it by what it will cost once decoded: the
/// wire scan validates it, counts its items and estimates the decoded size; a request above
/// `max_decoded` bytes is refused for good, and the estimate is reserved against the memory
/// budget before anything is decoded. A request with valid ids travels on encoded; one with
/// invalid ids is decoded so that [`reject_invalid`] can drop just those items. An empty body
/// is an empty request.
pub(crate) fn admit_protobuf(
    signal: Signal,
    body: bytes::Bytes,
    max_decoded: u64,
    budget: &Arc<crate::admission::Budget>,
) -> Result<Admitted, Refused> {
    use opentelemetry_proto::tonic::collector::{logs::v1 as l, metrics::v1 as m, trace::v1 as t};
    use prost::Message;
    let scan = crate::signal::wire::scan(signal, &body)
        .map_err(|e| Refused::Invalid(format!("invalid OTLP/protobuf {signal} request: {e}")))?;
    // The wire bytes stay with an encoded batch; decoding adds the structs.
    let cost = (scan.decoded_bytes + body.len()) as u64;
    let items = scan.items;
    if cost > max_decoded {
        return Err(Refused::TooLarge {
            msg: format!(
                "the {signal} request holds {items} {} taking about {} MiB once decoded, more than the receiver's limit of {} MiB (max_decoded_size); send smaller requests",
                signal.item_name(),
                cost.div_ceil(1 << 20),
                max_decoded >> 20,
            ),
            items,
        });
    }
    let reservation = budget.reserve(cost).map_err(|e| match e {
        crate::admission::Refusal::TooLarge { .. } => Refused::TooLarge {
            msg: format!("{signal} request of {items} {}: {e}", signal.item_name()),
            items,
        },
        crate::admission::Refusal::Busy { .. } => Refused::Busy {
            msg: format!("{signal} request of {items} {}: {e}", signal.item_name()),
            items,
        },
    })?;
    if body.is_empty() {
        return Ok(Admitted {
            batch: Batch::empty(signal),
            rejected: 0,
            why: String::new(),
            _reservation: reservation,
        });
    }
    if scan.ids_ok {
        return Ok(Admitted {
            batch: Batch::Encoded(crate::signal::Encoded::new(signal, body, items)),
            rejected: 0,
            why: String::new(),
            _reservation: reservation,
        });
    }
    let err = |e: prost::DecodeError| {
        Refused::Invalid(format!("invalid OTLP/protobuf {signal} request: {e}"))
    };
    let mut batch = match signal {
        Signal::Traces => Batch::Traces(
            t::ExportTraceServiceRequest::decode(body)
                .map_err(err)?
                .resource_spans,
        ),
        Signal::Metrics => Batch::Metrics(
            m::ExportMetricsServiceRequest::decode(body)
                .map_err(err)?
                .resource_metrics,
        ),
        Signal::Logs => Batch::Logs(
            l::ExportLogsServiceRequest::decode(body)
                .map_err(err)?
                .resource_logs,
        ),
    };
    let (rejected, why) = reject_invalid(&mut batch);
    Ok(Admitted {
        batch,
        rejected,
        why,
        _reservation: reservation,
    })
}

/// Whether decoding `body` (compressed with `encoding`) may take long enough (milliseconds) to
/// belong on the blocking pool rather than on the workers that serve every other request: a
/// large body, or one that says it inflates to a large one (a 20 KiB gzip body can inflate to
/// 20 MiB), or a deflate body of some size (which says nothing).
pub(crate) fn heavy(encoding: &str, body: &[u8]) -> bool {
    const LARGE: u64 = 1 << 20;
    body.len() > 256 << 10
        || match crate::net::compression::size_hint(encoding, body) {
            Some(n) => n > LARGE,
            None => body.len() > 16 << 10,
        }
}

/// Reads an OTLP/JSON export request: transcoded to protobuf (memory for that reserved first,
/// up to twice the JSON plus the buffer's growth), then admitted as a protobuf one.
pub(crate) fn admit_json(
    signal: Signal,
    json: Vec<u8>,
    max_decoded: u64,
    budget: &Arc<crate::admission::Budget>,
) -> Result<Admitted, Refused> {
    let transcoding = budget.reserve(3 * json.len() as u64).map_err(|e| match e {
        crate::admission::Refusal::TooLarge { .. } => Refused::TooLarge {
            msg: format!("{signal} request of {} bytes of JSON: {e}", json.len()),
            items: 0,
        },
        crate::admission::Refusal::Busy { .. } => Refused::Busy {
            msg: format!("{signal} request: {e}"),
            items: 0,
        },
    })?;
    let within = usize::try_from(max_decoded).unwrap_or(usize::MAX);
    let pb = crate::signal::json::to_protobuf_within(signal, &json, within).map_err(|e| {
        let msg = format!("invalid OTLP/JSON {signal} request {e}");
        if e.too_large {
            Refused::TooLarge { msg, items: 0 }
        } else {
            Refused::Invalid(msg)
        }
    })?;
    drop(json);
    drop(transcoding);
    admit_protobuf(signal, bytes::Bytes::from(pb), max_decoded, budget)
}

/// Removes spans and log records whose ids have the wrong length (a trace id is 16 bytes, a span
/// id 8), returning how many were removed and why. They are reported to the client through
/// `partial_success`; the rest of the request goes on.
pub(crate) fn reject_invalid(batch: &mut Batch) -> (i64, String) {
    let mut rejected = 0i64;
    let mut why = String::new();
    match batch {
        Batch::Traces(rs) => {
            for s in rs.iter_mut().flat_map(|r| r.scope_spans.iter_mut()) {
                s.spans.retain(|sp| {
                    let ok = sp.trace_id.len() == 16
                        && sp.span_id.len() == 8
                        && (sp.parent_span_id.is_empty() || sp.parent_span_id.len() == 8)
                        && sp.trace_id.iter().any(|b| *b != 0)
                        && sp.span_id.iter().any(|b| *b != 0);
                    if !ok {
                        rejected += 1;
                        if why.is_empty() {
                            why = format!(
                                "span {:?} has an invalid id (trace_id must be 16 non-zero bytes, span_id 8, parent_span_id 0 or 8; got {}, {}, {})",
                                sp.name,
                                sp.trace_id.len(),
                                sp.span_id.len(),
                                sp.parent_span_id.len()
                            );
                        }
                    }
                    ok
                });
            }
        }
        Batch::Logs(rl) => {
            for s in rl.iter_mut().flat_map(|r| r.scope_logs.iter_mut()) {
                s.log_records.retain(|l| {
                    let ok = matches!(l.trace_id.len(), 0 | 16) && matches!(l.span_id.len(), 0 | 8);
                    if !ok {
                        rejected += 1;
                        if why.is_empty() {
                            why = format!(
                                "log record has an invalid trace_id or span_id length ({}, {})",
                                l.trace_id.len(),
                                l.span_id.len()
                            );
                        }
                    }
                    ok
                });
            }
        }
        // Metrics carry no ids; encoded batches were checked by the wire scan.
        Batch::Metrics(_) | Batch::Encoded(_) => {}
    }
    (rejected, why)
}

struct Running {
    shutdown: tokio_util::sync::CancellationToken,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Lifecycle for Running {
    fn shutdown(&self, deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.shutdown.cancel();
            let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
            // In-flight requests finish (their data is already in the pipeline) or the deadline hits.
            let _ = tokio::time::timeout_at(deadline, futures::future::join_all(tasks)).await;
        })
    }
}

impl ReceiverConfig for Config {
    fn endpoints(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(g) = &self.protocols.grpc {
            v.push(g.endpoint.clone());
        }
        if let Some(h) = &self.protocols.http {
            v.push(h.endpoint.clone());
        }
        v
    }

    fn start(
        self: Box<Self>,
        ctx: Context,
        consumers: SignalConsumers,
    ) -> BoxFuture<'static, Result<Box<dyn Lifecycle>, BuildError>> {
        Box::pin(async move {
            let stop = ctx.shutdown.child_token();
            let mut tasks = Vec::new();
            if let Some(g) = &self.protocols.grpc {
                let entries = entries(&ctx, "grpc", &consumers);
                let tls = g
                    .tls
                    .as_ref()
                    .map(|t| t.build())
                    .transpose()
                    .map_err(|e| BuildError::new(&ctx.id, e))?;
                let listener = crate::net::server::bind(&g.endpoint).await.map_err(|e| {
                    BuildError::new(
                        &ctx.id,
                        format!("cannot listen on {} (grpc): {e}", g.endpoint),
                    )
                })?;
                tracing::info!(receiver = %ctx.id, endpoint = %g.endpoint, tls = tls.is_some(), "OTLP gRPC listening");
                tasks.push(crate::net::server::serve_with(
                    listener,
                    tls,
                    grpc::router(g, entries),
                    stop.clone(),
                    crate::net::server::Limits::grpc(
                        g.keepalive.as_ref(),
                        g.max_concurrent_streams,
                        g.max_connections,
                    ),
                    ctx.telemetry.connection_metrics(&g.endpoint),
                ));
            }
            if let Some(h) = &self.protocols.http {
                let entries = entries(&ctx, "http", &consumers);
                let tls = h
                    .tls
                    .as_ref()
                    .map(|t| t.build())
                    .transpose()
                    .map_err(|e| BuildError::new(&ctx.id, e))?;
                let listener = crate::net::server::bind(&h.endpoint).await.map_err(|e| {
                    BuildError::new(
                        &ctx.id,
                        format!("cannot listen on {} (http): {e}", h.endpoint),
                    )
                })?;
                tracing::info!(receiver = %ctx.id, endpoint = %h.endpoint, tls = tls.is_some(), "OTLP HTTP listening");
                tasks.push(crate::net::server::serve_with(
                    listener,
                    tls,
                    http::router(h, entries),
                    stop.clone(),
                    crate::net::server::Limits::http(
                        h.read_header_timeout,
                        h.idle_timeout,
                        h.max_connections,
                    ),
                    ctx.telemetry.connection_metrics(&h.endpoint),
                ));
            }
            Ok(Box::new(Running {
                shutdown: stop,
                tasks: std::sync::Mutex::new(tasks),
            }) as Box<dyn Lifecycle>)
        })
    }
}

fn entries(ctx: &Context, transport: &str, consumers: &SignalConsumers) -> [Option<Arc<Entry>>; 3] {
    std::array::from_fn(|i| {
        consumers[i]
            .as_ref()
            .map(|c| Arc::new(Entry::new(ctx, transport, c.clone())))
    })
}

pub(crate) fn entry_for(entries: &[Option<Arc<Entry>>; 3], s: Signal) -> Option<Arc<Entry>> {
    entries[s.index()].clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn empty_protocols_get_defaults() {
        let n = yaml("protocols:\n  grpc:\n  http:\n").unwrap();
        let c: Config = from_node(&n).unwrap();
        assert_eq!(c.protocols.grpc.unwrap(), GrpcConfig::default());
        assert_eq!(
            c.protocols.http.unwrap().max_request_body_size,
            20 * 1024 * 1024
        );
    }

    #[test]
    fn validation_names_the_key() {
        let n = yaml("protocols:\n  grpc:\n    endpoint: localhost\n").unwrap();
        let e = parse(&n).err().unwrap();
        assert_eq!(e.path_string(), "protocols.grpc.endpoint");
        assert_eq!(e.pos.unwrap().line, 3);
        let n = yaml("protocols: {}\n").unwrap();
        assert!(
            parse(&n)
                .err()
                .unwrap()
                .msg
                .contains("at least one protocol")
        );
        let n = yaml("protocols:\n  http:\n    max_request_body_size: 1k\n").unwrap();
        assert_eq!(
            parse(&n).err().unwrap().path_string(),
            "protocols.http.max_request_body_size"
        );
    }

    #[test]
    fn invalid_ids_are_rejected_individually() {
        let mut b = crate::signal::testdata::spans("a", 1, 3);
        if let Batch::Traces(rs) = &mut b {
            rs[0].scope_spans[0].spans[1].span_id = vec![1, 2, 3];
        }
        let (n, why) = reject_invalid(&mut b);
        assert_eq!((n, b.item_count()), (1, 2));
        assert!(why.contains("\"s2\""), "{why}");
    }
}
