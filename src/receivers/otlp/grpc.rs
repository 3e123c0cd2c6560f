//! OTLP/gRPC services for traces, metrics and logs.
//!
//! The unary call is handled here rather than by tonic's generated services or its `Grpc`
//! helper, because those decode and decompress before anything can be checked: here the
//! 5-byte frame header is read first (a length over the limit, 4 GiB included, is refused with
//! `RESOURCE_EXHAUSTED` before a byte of the message is buffered), the payload's memory is
//! reserved against the admission budget before it is read, decompression reserves as it grows,
//! and the message is validated by the wire scan and, when no processor needs to look inside,
//! travels on encoded. Answers are gRPC frames with `grpc-status` trailers, or trailers-only
//! errors, as any gRPC client expects.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use prost::Message;
use tonic::Status;
use tonic::server::NamedService;
use tonic_types::{ErrorDetails, StatusExt};

use super::admit::{Entry, Refused, admit_protobuf, entry_for};
use super::config::GrpcConfig;
use crate::client::ClientInfo;
use crate::component::{BoxFuture, ConsumeError};
use crate::signal::Signal;
use crate::signal::response::{ExportResponse, PartialSuccess};

/// Maps a pipeline refusal to a gRPC status the OTLP exporters of the SDKs understand:
/// retryable → `UNAVAILABLE` with `RetryInfo`, permanent → `INVALID_ARGUMENT`.
pub(crate) fn status_of(e: ConsumeError) -> Status {
    match e {
        ConsumeError::Retryable {
            reason,
            retry_after,
            ..
        } => {
            let delay = retry_after.unwrap_or(Duration::from_secs(1));
            Status::with_error_details(
                tonic::Code::Unavailable,
                reason,
                ErrorDetails::with_retry_info(Some(delay)),
            )
        }
        ConsumeError::Permanent(reason) => Status::invalid_argument(reason),
    }
}

/// How a request that was not admitted is answered: malformed → `INVALID_ARGUMENT`; too large
/// to take → `RESOURCE_EXHAUSTED` without retry info (permanent: split it); memory in use →
/// `RESOURCE_EXHAUSTED` with `RetryInfo` (retry later).
fn refusal_status(r: Refused) -> Status {
    match r {
        Refused::Invalid(msg) => Status::invalid_argument(msg),
        Refused::TooLarge { msg, .. } => Status::resource_exhausted(msg),
        Refused::Busy { msg, .. } => busy(msg),
    }
}

/// The OTLP services differ only by name, path and signal.
pub(crate) trait OtlpService: Send + Sync + 'static {
    const NAME: &'static str;
    const PATH: &'static str;
    const SIGNAL: Signal;
}

pub(crate) struct TraceSvc;
pub(crate) struct MetricsSvc;
pub(crate) struct LogsSvc;
pub(crate) struct ProfilesSvc;

impl OtlpService for TraceSvc {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    const SIGNAL: Signal = Signal::Traces;
}
impl OtlpService for MetricsSvc {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    const SIGNAL: Signal = Signal::Metrics;
}
impl OtlpService for LogsSvc {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    const SIGNAL: Signal = Signal::Logs;
}
impl OtlpService for ProfilesSvc {
    const NAME: &'static str =
        "opentelemetry.proto.collector.profiles.v1development.ProfilesService";
    const PATH: &'static str =
        "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export";
    const SIGNAL: Signal = Signal::Profiles;
}

/// One OTLP gRPC service (a tower service for tonic's router).
pub(crate) struct Server<S> {
    entry: Arc<Entry>,
    max_message: usize,
    max_decoded: u64,
    include_metadata: bool,
    _svc: PhantomData<fn() -> S>,
}

impl<S> Clone for Server<S> {
    fn clone(&self) -> Self {
        Server {
            entry: self.entry.clone(),
            max_message: self.max_message,
            max_decoded: self.max_decoded,
            include_metadata: self.include_metadata,
            _svc: PhantomData,
        }
    }
}

impl<S: OtlpService> NamedService for Server<S> {
    const NAME: &'static str = S::NAME;
}

impl<S: OtlpService, B> tower::Service<http::Request<B>> for Server<S>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Display + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != S::PATH {
            return Box::pin(async { Ok(Status::unimplemented("unknown method").into_http()) });
        }
        let peer = req
            .extensions()
            .get::<crate::net::server::PeerAddr>()
            .map(|p| p.0.ip());
        let export = Export {
            entry: self.entry.clone(),
            signal: S::SIGNAL,
            max_message: self.max_message,
            max_decoded: self.max_decoded,
            client: ClientInfo::from_headers(peer, req.headers(), self.include_metadata)
                .with_auth(req.extensions().get::<crate::net::auth::AuthInfo>()),
        };
        Box::pin(async move {
            Ok(match export.run(req).await {
                Ok(resp) => ok_response(&resp),
                Err(status) => status.into_http(),
            })
        })
    }
}

struct Export {
    entry: Arc<Entry>,
    signal: Signal,
    max_message: usize,
    max_decoded: u64,
    client: ClientInfo,
}

/// The encodings a request message may be compressed with.
const ACCEPTED: &[&str] = &["identity", "gzip", "zstd", "deflate"];

impl Export {
    async fn run<B>(self, req: http::Request<B>) -> Result<ExportResponse, Status>
    where
        B: http_body::Body + Send + 'static,
        B::Error: std::fmt::Display,
    {
        let (signal, entry) = (self.signal, self.entry.clone());
        let encoding = req
            .headers()
            .get("grpc-encoding")
            .map_or(Some("identity"), |v| v.to_str().ok())
            .unwrap_or("invalid")
            .to_owned();
        if !ACCEPTED.contains(&encoding.as_str()) {
            return Err(Status::unimplemented(format!(
                "grpc-encoding {encoding:?} is not supported (gzip, zstd, deflate)"
            )));
        }
        let (compressed, payload, _read) =
            read_message(req.into_body(), self.max_message, &entry.budget).await?;
        let (max_message, max_decoded) = (self.max_message, self.max_decoded);
        // Inflating and scanning a large message on the blocking pool keeps these workers free
        // for the other requests.
        let heavy = super::admit::heavy(if compressed { &encoding } else { "identity" }, &payload);
        let decode = {
            let entry = entry.clone();
            move || {
                decode_and_admit(
                    &entry,
                    signal,
                    &encoding,
                    compressed,
                    payload,
                    max_message,
                    max_decoded,
                )
            }
        };
        let admitted = if heavy {
            tokio::task::spawn_blocking(move || {
                let r = decode();
                crate::admission::release_thread_memory();
                r
            })
            .await
            .map_err(|e| Status::internal(format!("decoding the request failed: {e}")))??
        } else {
            decode()?
        };
        // What was reserved for reading is now part of the admitted cost.
        drop(_read);
        let (rejected, why) = (admitted.rejected, admitted.why.clone());
        // The reservation is held until the pipeline has the batch.
        entry
            .push(admitted.batch, self.client)
            .await
            .map_err(status_of)?;
        drop(admitted._reservation);
        Ok(ExportResponse {
            partial_success: (rejected > 0).then_some(PartialSuccess {
                rejected,
                error_message: why,
            }),
        })
    }
}

/// Inflates (when `compressed`) and admits one request message.
fn decode_and_admit(
    entry: &Arc<Entry>,
    signal: Signal,
    encoding: &str,
    compressed: bool,
    payload: Bytes,
    max_message: usize,
    max_decoded: u64,
) -> Result<super::admit::Admitted, Status> {
    let (message, _inflated) = if compressed {
        if encoding == "identity" {
            return Err(Status::internal(
                "the message is flagged compressed but no grpc-encoding was sent",
            ));
        }
        let (plain, held) = crate::net::compression::decode_reserved(
            encoding,
            &payload,
            max_message,
            &entry.budget,
        )
        .map_err(|e| match e {
            crate::net::compression::DecodeError::TooLarge(_) => too_large(max_message, None),
            crate::net::compression::DecodeError::Busy(r) => busy(r.to_string()),
            other => Status::invalid_argument(other.to_string()),
        })?;
        (Bytes::from(plain), Some(held))
    } else {
        (payload, None)
    };
    // The inflated bytes are reserved again by admission, with their decoded size.
    admit_protobuf(signal, message, max_decoded, &entry.budget).map_err(|r| {
        entry.refused(signal, r.items());
        refusal_status(r)
    })
}

fn too_large(max: usize, len: Option<usize>) -> Status {
    let what = len.map_or_else(
        || "the request message".to_owned(),
        |n| format!("a request message of {n} bytes"),
    );
    Status::resource_exhausted(format!(
        "request message too large: {what} is over max_recv_msg_size_mib ({} MiB); split it into smaller requests",
        max >> 20
    ))
}

fn busy(msg: String) -> Status {
    Status::with_error_details(
        tonic::Code::ResourceExhausted,
        msg,
        ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
    )
}

/// Messages up to this size are read before memory is reserved for them.
const READ_UNRESERVED: usize = 64 << 10;

/// Reads the one message of a unary call: the 5-byte frame header (compressed flag, length),
/// then exactly that many bytes, refusing a length over `max` before reading it and reserving
/// it against the memory budget.
async fn read_message<B>(
    body: B,
    max: usize,
    budget: &Arc<crate::admission::Budget>,
) -> Result<(bool, Bytes, crate::admission::Reservation), Status>
where
    B: http_body::Body,
    B::Error: std::fmt::Display,
{
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::new();
    let mut frame: Option<(bool, usize, crate::admission::Reservation)> = None;
    loop {
        if frame.is_none() && buf.len() >= 5 {
            let compressed = match buf[0] {
                0 => false,
                1 => true,
                f => return Err(Status::internal(format!("invalid compressed flag {f}"))),
            };
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if len > max {
                return Err(too_large(max, Some(len)));
            }
            // Small messages are read first and refused, if at all, by admission (which knows
            // their items); a large one is refused before it is read when memory is in use.
            let upfront = if len > READ_UNRESERVED { len as u64 } else { 0 };
            let held = budget.reserve(upfront).map_err(|e| match e {
                crate::admission::Refusal::TooLarge { .. } => too_large(max, Some(len)),
                crate::admission::Refusal::Busy { .. } => busy(e.to_string()),
            })?;
            buf.reserve((5 + len).saturating_sub(buf.len()));
            frame = Some((compressed, len, held));
        }
        let Some(next) = body.frame().await else {
            break;
        };
        let next = next.map_err(|e| Status::cancelled(format!("reading the request: {e}")))?;
        if let Ok(mut data) = next.into_data() {
            let limit = 5 + frame.as_ref().map_or(max, |f| f.1);
            if buf.len() + data.remaining() > limit {
                return Err(match &frame {
                    Some(_) => Status::invalid_argument("a unary call carries one request message"),
                    None => too_large(max, None),
                });
            }
            while data.has_remaining() {
                let chunk = data.chunk();
                let n = chunk.len();
                buf.put_slice(chunk);
                data.advance(n);
            }
        }
    }
    match frame {
        Some((compressed, len, held)) if buf.len() == 5 + len => {
            Ok((compressed, buf.freeze().slice(5..), held))
        }
        Some(_) => Err(Status::internal("the request message is truncated")),
        None if buf.is_empty() => Err(Status::internal("missing request message")),
        None => Err(Status::internal("the request message is truncated")),
    }
}

/// A successful answer: one gRPC frame with the response, then `grpc-status: 0`.
fn ok_response(resp: &ExportResponse) -> http::Response<tonic::body::Body> {
    let len = resp.encoded_len();
    let mut frame = Vec::with_capacity(5 + len);
    frame.push(0);
    frame.extend_from_slice(&(len as u32).to_be_bytes());
    resp.encode(&mut frame).ok();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = futures::stream::iter([
        Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(frame))),
        Ok(http_body::Frame::trailers(trailers)),
    ]);
    let mut r = http::Response::new(tonic::body::Body::new(http_body_util::StreamBody::new(
        frames,
    )));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    r.headers_mut().insert(
        "grpc-accept-encoding",
        http::HeaderValue::from_static("gzip,zstd,deflate"),
    );
    r
}

/// Service `S` on the routes, when its signal has a pipeline.
fn add<S: OtlpService>(
    routes: tonic::service::Routes,
    entries: &[Option<Arc<Entry>>; crate::signal::Signal::COUNT],
    cfg: &GrpcConfig,
    max_message: usize,
) -> tonic::service::Routes {
    match entry_for(entries, S::SIGNAL) {
        Some(entry) => routes.add_service(Server::<S> {
            entry,
            max_message,
            max_decoded: cfg.max_decoded_bytes(),
            include_metadata: cfg.include_metadata,
            _svc: PhantomData,
        }),
        None => routes,
    }
}

/// The gRPC services of the signals that have pipelines, as one axum router.
pub(super) fn router(
    cfg: &GrpcConfig,
    entries: [Option<Arc<Entry>>; crate::signal::Signal::COUNT],
) -> axum::Router {
    let max_message =
        usize::try_from(cfg.max_recv_msg_size_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let mut routes = tonic::service::Routes::default();
    routes = add::<TraceSvc>(routes, &entries, cfg, max_message);
    routes = add::<MetricsSvc>(routes, &entries, cfg, max_message);
    routes = add::<LogsSvc>(routes, &entries, cfg, max_message);
    routes = add::<ProfilesSvc>(routes, &entries, cfg, max_message);
    routes.prepare().into_axum_router()
}
