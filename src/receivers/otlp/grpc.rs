//! OTLP/gRPC services for traces, metrics and logs.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{Entry, GrpcConfig, entry_for, reject_invalid};
use crate::component::ConsumeError;
use crate::signal::{Batch, Signal};

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

struct Svc(Arc<Entry>);

async fn export(entry: &Entry, mut batch: Batch) -> Result<(i64, String), Status> {
    let (rejected, why) = reject_invalid(&mut batch);
    entry.push(batch).await.map_err(status_of)?;
    Ok((rejected, why))
}

#[tonic::async_trait]
impl TraceService for Svc {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let (rejected, why) =
            export(&self.0, Batch::Traces(req.into_inner().resource_spans)).await?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: (rejected > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message: why,
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Svc {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let (rejected, why) =
            export(&self.0, Batch::Metrics(req.into_inner().resource_metrics)).await?;
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: (rejected > 0).then_some(ExportMetricsPartialSuccess {
                rejected_data_points: rejected,
                error_message: why,
            }),
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Svc {
    async fn export(
        &self,
        req: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let (rejected, why) = export(&self.0, Batch::Logs(req.into_inner().resource_logs)).await?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: (rejected > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: why,
            }),
        }))
    }
}

/// The gRPC services of the signals that have pipelines, as one axum router.
pub(super) fn router(cfg: &GrpcConfig, entries: [Option<Arc<Entry>>; 3]) -> axum::Router {
    let limit =
        usize::try_from(cfg.max_recv_msg_size_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let mut routes = tonic::service::Routes::default();
    macro_rules! add {
        ($signal:expr, $server:ident) => {
            if let Some(e) = entry_for(&entries, $signal) {
                routes = routes.add_service(
                    $server::new(Svc(e))
                        .max_decoding_message_size(limit)
                        .accept_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Zstd)
                        .send_compressed(CompressionEncoding::Gzip),
                );
            }
        };
    }
    add!(Signal::Traces, TraceServiceServer);
    add!(Signal::Metrics, MetricsServiceServer);
    add!(Signal::Logs, LogsServiceServer);
    routes.prepare().into_axum_router()
}
