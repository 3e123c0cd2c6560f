//! The far end of the end-to-end tests: an OTLP/gRPC server that keeps everything it receives,
//! and can be told to refuse (UNAVAILABLE) to play a backend that is down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use tonic::{Request, Response, Status};

#[derive(Default)]
pub struct Store {
    pub spans: Mutex<Vec<ResourceSpans>>,
    pub metrics: Mutex<Vec<ResourceMetrics>>,
    pub logs: Mutex<Vec<ResourceLogs>>,
    pub refuse: AtomicBool,
}

impl Store {
    pub fn span_count(&self) -> usize {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum()
    }
    pub fn log_count(&self) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum()
    }
}

#[derive(Clone)]
struct Svc(Arc<Store>);

impl Svc {
    fn check(&self) -> Result<(), Status> {
        if self.0.refuse.load(Ordering::SeqCst) {
            Err(Status::unavailable("sink is down"))
        } else {
            Ok(())
        }
    }
}

#[tonic::async_trait]
impl TraceService for Svc {
    async fn export(
        &self,
        r: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.check()?;
        self.0
            .spans
            .lock()
            .unwrap()
            .extend(r.into_inner().resource_spans);
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Svc {
    async fn export(
        &self,
        r: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.check()?;
        self.0
            .metrics
            .lock()
            .unwrap()
            .extend(r.into_inner().resource_metrics);
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Svc {
    async fn export(
        &self,
        r: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.check()?;
        self.0
            .logs
            .lock()
            .unwrap()
            .extend(r.into_inner().resource_logs);
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

pub struct Sink {
    pub store: Arc<Store>,
    pub port: u16,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Tests may drop the sink inside their own runtime: do not block there.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Sink {
    /// Starts on a free 127.0.0.1 port, on its own runtime (so sync tests can use it).
    pub fn start() -> Sink {
        Self::start_on(super::free_port())
    }

    pub fn start_on(port: u16) -> Sink {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let store = Arc::new(Store::default());
        let svc = Svc(store.clone());
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            // A restarted sink takes its old port back. While it was down, the port may serve
            // for a moment as the local end of some outgoing connection: wait for it to be free.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            let listener = loop {
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => break l,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::AddrInUse
                            && std::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await
                    }
                    Err(e) => panic!("bind sink on {addr}: {e}"),
                }
            };
            let _ = ready_tx.send(());
            tonic::transport::Server::builder()
                .add_service(
                    TraceServiceServer::new(svc.clone())
                        .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                )
                .add_service(
                    MetricsServiceServer::new(svc.clone())
                        .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                )
                .add_service(
                    LogsServiceServer::new(svc)
                        .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                )
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .expect("sink server");
        });
        ready_rx.recv().unwrap();
        Sink {
            store,
            port,
            rt: Some(rt),
        }
    }
}
