//! OTLP/gRPC services for traces, metrics and logs.
//!
//! These are tonic services written by hand rather than the generated ones, because the
//! generated ones always decode the request: here the request body arrives as bytes (tonic has
//! already checked its size and decompressed it), is validated by the wire scan and, when no
//! processor needs to look inside, travels on encoded.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use prost::Message;
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{Entry, GrpcConfig, Refused, admit_protobuf, entry_for};
use crate::client::ClientInfo;
use crate::component::{BoxFuture, ConsumeError};
use crate::exporters::{ExportResponse, PartialSuccess};
use crate::signal::Signal;

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
        Refused::Busy { msg, .. } => Status::with_error_details(
            tonic::Code::ResourceExhausted,
            msg,
            ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
        ),
    }
}

/// The three OTLP services differ only by name, path and signal.
pub(crate) trait OtlpService: Send + Sync + 'static {
    const NAME: &'static str;
    const PATH: &'static str;
    const SIGNAL: Signal;
}

pub(crate) struct TraceSvc;
pub(crate) struct MetricsSvc;
pub(crate) struct LogsSvc;

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
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
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
            .get::<crate::server::PeerAddr>()
            .map(|p| p.0.ip());
        let export = Export {
            entry: self.entry.clone(),
            signal: S::SIGNAL,
            max_decoded: self.max_decoded,
            client: Some(ClientInfo::from_headers(
                peer,
                req.headers(),
                self.include_metadata,
            )),
        };
        let max_message = self.max_message;
        Box::pin(async move {
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            accept.enable(CompressionEncoding::Zstd);
            let mut grpc = Grpc::new(RawCodec)
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(max_message), None);
            Ok(too_large_is_resource_exhausted(
                grpc.unary(export, req).await,
                max_message,
            ))
        })
    }
}

/// tonic answers a message over the size limit (or a length prefix past 4 GiB) with
/// `OUT_OF_RANGE`, which the OTLP specification lists as retryable: a client would resend the
/// same bytes forever. Our handler never answers `OUT_OF_RANGE` itself, so every such answer is
/// that size check; it becomes `RESOURCE_EXHAUSTED` without retry info, permanent for that
/// request (an exporter splits it instead).
fn too_large_is_resource_exhausted(
    resp: http::Response<tonic::body::Body>,
    max_message: usize,
) -> http::Response<tonic::body::Body> {
    let out_of_range = resp
        .headers()
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"11");
    if !out_of_range {
        return resp;
    }
    let detail = Status::from_header_map(resp.headers())
        .map(|s| s.message().to_owned())
        .unwrap_or_default();
    Status::resource_exhausted(format!(
        "request message too large: {detail} (max_recv_msg_size_mib is {} MiB); split it into smaller requests",
        max_message >> 20
    ))
    .into_http()
}

struct Export {
    entry: Arc<Entry>,
    signal: Signal,
    max_decoded: u64,
    client: Option<ClientInfo>,
}

impl UnaryService<Bytes> for Export {
    type Response = ExportResponse;
    type Future = BoxFuture<'static, Result<Response<ExportResponse>, Status>>;

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let (entry, signal, max_decoded) = (self.entry.clone(), self.signal, self.max_decoded);
        let client = self.client.take().unwrap_or_default();
        Box::pin(async move {
            let admitted = admit_protobuf(signal, req.into_inner(), max_decoded, &entry.budget)
                .map_err(|r| {
                    entry.refused(signal, r.items());
                    refusal_status(r)
                })?;
            let (rejected, why) = (admitted.rejected, admitted.why.clone());
            // The reservation is held until the pipeline has the batch.
            entry
                .push(admitted.batch, client)
                .await
                .map_err(status_of)?;
            drop(admitted._reservation);
            Ok(Response::new(ExportResponse {
                partial_success: (rejected > 0).then_some(PartialSuccess {
                    rejected,
                    error_message: why,
                }),
            }))
        })
    }
}

/// Request bodies in as bytes, responses out as protobuf.
#[derive(Clone, Copy)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = ExportResponse;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        *self
    }
    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for RawCodec {
    type Item = ExportResponse;
    type Error = Status;
    fn encode(&mut self, item: ExportResponse, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

/// The gRPC services of the signals that have pipelines, as one axum router.
pub(super) fn router(cfg: &GrpcConfig, entries: [Option<Arc<Entry>>; 3]) -> axum::Router {
    let max_message =
        usize::try_from(cfg.max_recv_msg_size_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let mut routes = tonic::service::Routes::default();
    if let Some(entry) = entry_for(&entries, Signal::Traces) {
        routes = routes.add_service(Server::<TraceSvc> {
            entry,
            max_message,
            max_decoded: cfg.max_decoded_bytes(),
            include_metadata: cfg.include_metadata,
            _svc: PhantomData,
        });
    }
    if let Some(entry) = entry_for(&entries, Signal::Metrics) {
        routes = routes.add_service(Server::<MetricsSvc> {
            entry,
            max_message,
            max_decoded: cfg.max_decoded_bytes(),
            include_metadata: cfg.include_metadata,
            _svc: PhantomData,
        });
    }
    if let Some(entry) = entry_for(&entries, Signal::Logs) {
        routes = routes.add_service(Server::<LogsSvc> {
            entry,
            max_message,
            max_decoded: cfg.max_decoded_bytes(),
            include_metadata: cfg.include_metadata,
            _svc: PhantomData,
        });
    }
    routes.prepare().into_axum_router()
}
