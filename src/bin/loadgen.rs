//! `ferrotel-loadgen`: OTLP load for benchmarks.
//!
//! `send` drives an OTLP endpoint over gRPC or HTTP at a fixed rate or flat out and reports the
//! items the endpoint accepted per second, refusals (retryable answers) and errors. `sink` is a
//! counting OTLP/gRPC endpoint to export into. Requests are encoded once and resent, so the
//! generator spends its CPU on the wire, not on building messages. The sink counts spans and
//! log records.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
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
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ferrotel-loadgen",
    version,
    about = "OTLP load generator and counting sink"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send spans, log records or metric data points to an OTLP endpoint.
    Send {
        /// What to send: `traces` (spans), `logs` (records) or `metrics` (gauge data points);
        /// `--spans-per-request` and `--attrs-per-span` count these items.
        #[arg(long, default_value = "traces", value_parser = ["traces", "logs", "metrics"])]
        signal: String,
        /// `host:port` for gRPC, `http://host:port` for HTTP.
        #[arg(long, default_value = "127.0.0.1:4317")]
        endpoint: String,
        #[arg(long, default_value = "grpc", value_parser = ["grpc", "http"])]
        protocol: String,
        /// Spans per second in total; 0 = as fast as the endpoint accepts.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 100)]
        spans_per_request: usize,
        #[arg(long, default_value_t = 10)]
        attrs_per_span: usize,
        /// Concurrent connections (each with one request in flight).
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Print a line per second.
        #[arg(long)]
        progress: bool,
    },
    /// A counting OTLP/gRPC endpoint; prints spans, log records and data points received.
    Sink {
        #[arg(long, default_value = "127.0.0.1:5317")]
        listen: String,
        /// Answer each export after this long: a slow backend, whose capacity is the exporter's
        /// consumers × their batch size / this delay.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
}

fn request(spans: usize, attrs: usize, seed: u64) -> ExportTraceServiceRequest {
    let now = now_nanos();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "ferrotel-loadgen".into(),
                    ..Default::default()
                }),
                spans: (0..spans as u64)
                    .map(|i| {
                        let id = seed.wrapping_mul(1_000_003).wrapping_add(i + 1);
                        Span {
                            trace_id: [id.to_be_bytes(), (id ^ 0x5555).to_be_bytes()].concat(),
                            span_id: id.to_be_bytes().to_vec(),
                            name: format!("GET /api/v1/items/{}", i % 16),
                            kind: span::SpanKind::Server as i32,
                            start_time_unix_nano: now,
                            end_time_unix_nano: now + 1_000_000,
                            attributes: attributes(attrs, i),
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn attributes(n: usize, i: u64) -> Vec<KeyValue> {
    (0..n)
        .map(|a| {
            let (key, value) = match a % 3 {
                0 => (
                    format!("attr.str.{a}"),
                    any_value::Value::StringValue(format!("value-{a}-{}", i % 7)),
                ),
                1 => (
                    format!("attr.int.{a}"),
                    any_value::Value::IntValue((i * a as u64) as i64),
                ),
                _ => (
                    format!("attr.bool.{a}"),
                    any_value::Value::BoolValue(i.is_multiple_of(2)),
                ),
            };
            KeyValue {
                key,
                value: Some(AnyValue { value: Some(value) }),
                ..Default::default()
            }
        })
        .collect()
}

fn resource() -> Resource {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    Resource {
        attributes: vec![kv("service.name", "loadgen"), kv("host.name", "bench")],
        ..Default::default()
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `records` log records with a body and `attrs` attributes each.
fn logs_request(records: usize, attrs: usize, seed: u64) -> ExportLogsServiceRequest {
    let now = now_nanos();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource()),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "ferrotel-loadgen".into(),
                    ..Default::default()
                }),
                log_records: (0..records as u64)
                    .map(|i| LogRecord {
                        time_unix_nano: now,
                        observed_time_unix_nano: now,
                        severity_number: 9,
                        severity_text: "INFO".into(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!(
                                "GET /api/v1/items/{} 200 {}ms request {seed}-{i}",
                                i % 16,
                                i % 97
                            ))),
                        }),
                        attributes: attributes(attrs, i),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `points` gauge data points, 10 per metric, with `attrs` attributes each.
fn metrics_request(points: usize, attrs: usize, seed: u64) -> ExportMetricsServiceRequest {
    let now = now_nanos();
    let per_metric = 10;
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "ferrotel-loadgen".into(),
                    ..Default::default()
                }),
                metrics: (0..points.div_ceil(per_metric))
                    .map(|m| Metric {
                        name: format!("loadgen.metric.{m}"),
                        unit: "1".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: (0..per_metric.min(points - m * per_metric) as u64)
                                .map(|i| NumberDataPoint {
                                    time_unix_nano: now,
                                    value: Some(number_data_point::Value::AsDouble(
                                        (seed * 31 + i) as f64,
                                    )),
                                    attributes: attributes(attrs, i),
                                    ..Default::default()
                                })
                                .collect(),
                        })),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[derive(Default)]
struct Stats {
    spans: AtomicU64,
    refused: AtomicU64,
    errors: AtomicU64,
}

enum Outcome {
    Ok,
    Refused,
    Error(String),
}

async fn send_grpc(
    channel: &tonic::transport::Channel,
    path: &'static str,
    body: &Bytes,
) -> Outcome {
    use ferrotel::exporters::otlp_grpc::{UnaryCall, unary};
    let no_headers = http::HeaderMap::new();
    let call = UnaryCall {
        path,
        payload: body.clone(),
        encoding: None,
        headers: &no_headers,
        timeout: None,
    };
    match unary(channel, call).await {
        Ok(_) => Outcome::Ok,
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::Unavailable | tonic::Code::ResourceExhausted
            ) =>
        {
            Outcome::Refused
        }
        Err(s) => Outcome::Error(format!("{:?}: {}", s.code(), s.message())),
    }
}

async fn send_http(client: &reqwest::Client, url: &str, body: &Bytes) -> Outcome {
    match client
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(body.clone())
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => Outcome::Ok,
        Ok(r) if matches!(r.status().as_u16(), 429 | 503) => Outcome::Refused,
        Ok(r) => Outcome::Error(format!("HTTP {}", r.status())),
        Err(e) => Outcome::Error(e.to_string()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_send(
    signal: String,
    endpoint: String,
    protocol: String,
    rate: u64,
    spans: usize,
    attrs: usize,
    concurrency: usize,
    duration: f64,
    progress: bool,
) -> anyhow::Result<()> {
    // A few distinct requests, rotated, so ids differ between consecutive requests.
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..16)
            .map(|s| {
                Bytes::from(match signal.as_str() {
                    "logs" => logs_request(spans, attrs, s).encode_to_vec(),
                    "metrics" => metrics_request(spans, attrs, s).encode_to_vec(),
                    _ => request(spans, attrs, s).encode_to_vec(),
                })
            })
            .collect(),
    );
    let (grpc_path, http_path) = match signal.as_str() {
        "logs" => (
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            "/v1/logs",
        ),
        "metrics" => (
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            "/v1/metrics",
        ),
        _ => (
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            "/v1/traces",
        ),
    };
    let stats = Arc::new(Stats::default());
    let end = Instant::now() + Duration::from_secs_f64(duration);
    let per_worker_interval = (rate > 0).then(|| {
        let requests_per_sec = rate as f64 / spans as f64 / concurrency as f64;
        Duration::from_secs_f64(1.0 / requests_per_sec)
    });
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (bodies, stats, endpoint, protocol) = (
            bodies.clone(),
            stats.clone(),
            endpoint.clone(),
            protocol.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let channel = if protocol == "grpc" {
                let uri = if endpoint.starts_with("http") {
                    endpoint.clone()
                } else {
                    format!("http://{endpoint}")
                };
                Some(
                    tonic::transport::Endpoint::from_shared(uri)?
                        .tcp_nodelay(true)
                        .connect_lazy(),
                )
            } else {
                None
            };
            let client = reqwest::Client::new();
            let url = format!("{}{http_path}", endpoint.trim_end_matches('/'));
            let mut tick = per_worker_interval.map(|i| {
                let mut t = tokio::time::interval_at(
                    tokio::time::Instant::now() + i.mul_f64(w as f64 / concurrency as f64),
                    i,
                );
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                t
            });
            let mut i = w;
            let mut last_error = String::new();
            while Instant::now() < end {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let body = &bodies[i % bodies.len()];
                i += 1;
                let outcome = match &channel {
                    Some(ch) => send_grpc(ch, grpc_path, body).await,
                    None => send_http(&client, &url, body).await,
                };
                match outcome {
                    Outcome::Ok => drop(stats.spans.fetch_add(spans as u64, Ordering::Relaxed)),
                    Outcome::Refused => {
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Outcome::Error(e) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        last_error = e;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            anyhow::Ok(last_error)
        }));
    }
    let started = Instant::now();
    if progress {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut last = 0;
            let mut t = tokio::time::interval(Duration::from_secs(1));
            t.tick().await;
            loop {
                t.tick().await;
                let now = stats.spans.load(Ordering::Relaxed);
                eprintln!(
                    "{:>6.1}s  {:>10} spans/s",
                    started.elapsed().as_secs_f64(),
                    now - last
                );
                last = now;
            }
        });
    }
    let mut last_error = String::new();
    for t in tasks {
        if let Ok(Ok(e)) = t.await
            && !e.is_empty()
        {
            last_error = e;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let n = stats.spans.load(Ordering::Relaxed);
    println!(
        "{{\"accepted_spans\": {n}, \"seconds\": {secs:.3}, \"spans_per_sec\": {:.0}, \"refused_requests\": {}, \"errors\": {}, \"last_error\": {:?}}}",
        n as f64 / secs,
        stats.refused.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed),
        last_error
    );
    Ok(())
}

struct CountingSink(Arc<AtomicU64>, Duration);

#[tonic::async_trait]
impl TraceService for CountingSink {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n: usize = req
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        if !self.1.is_zero() {
            tokio::time::sleep(self.1).await;
        }
        self.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Counts log records (the filelog and syslog benchmarks export logs).
struct CountingLogSink(Arc<AtomicU64>, Duration);

#[tonic::async_trait]
impl LogsService for CountingLogSink {
    async fn export(
        &self,
        req: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let n: usize = req
            .get_ref()
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        if !self.1.is_zero() {
            tokio::time::sleep(self.1).await;
        }
        self.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// Counts data points of every metric type.
struct CountingMetricSink(Arc<AtomicU64>, Duration);

#[tonic::async_trait]
impl MetricsService for CountingMetricSink {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        use metric::Data;
        let n: usize = req
            .get_ref()
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| match &m.data {
                Some(Data::Gauge(g)) => g.data_points.len(),
                Some(Data::Sum(g)) => g.data_points.len(),
                Some(Data::Histogram(g)) => g.data_points.len(),
                Some(Data::ExponentialHistogram(g)) => g.data_points.len(),
                Some(Data::Summary(g)) => g.data_points.len(),
                None => 0,
            })
            .sum();
        if !self.1.is_zero() {
            tokio::time::sleep(self.1).await;
        }
        self.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

async fn run_sink(listen: String, delay: Duration) -> anyhow::Result<()> {
    let count = Arc::new(AtomicU64::new(0));
    let logs = Arc::new(AtomicU64::new(0));
    let points = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let l = logs.clone();
    let p = points.clone();
    tokio::spawn(async move {
        let mut last = 0;
        let mut t = tokio::time::interval(Duration::from_secs(1));
        t.tick().await;
        loop {
            t.tick().await;
            let now = c.load(Ordering::Relaxed);
            println!(
                "{{\"total_spans\": {now}, \"spans_last_second\": {}, \"total_logs\": {}, \"total_points\": {}}}",
                now - last,
                l.load(Ordering::Relaxed),
                p.load(Ordering::Relaxed)
            );
            last = now;
        }
    });
    let svc = TraceServiceServer::new(CountingSink(count, delay))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
        .max_decoding_message_size(64 << 20);
    let metrics_svc = MetricsServiceServer::new(CountingMetricSink(points, delay))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
        .max_decoding_message_size(64 << 20);
    let logs_svc = LogsServiceServer::new(CountingLogSink(logs, delay))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
        .max_decoding_message_size(64 << 20);
    tonic::transport::Server::builder()
        .add_service(svc)
        .add_service(logs_svc)
        .add_service(metrics_svc)
        .serve(listen.parse()?)
        .await?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Send {
            signal,
            endpoint,
            protocol,
            rate,
            spans_per_request,
            attrs_per_span,
            concurrency,
            duration,
            progress,
        } => rt.block_on(run_send(
            signal,
            endpoint,
            protocol,
            rate,
            spans_per_request,
            attrs_per_span,
            concurrency,
            duration,
            progress,
        )),
        Cmd::Sink { listen, delay_ms } => {
            rt.block_on(run_sink(listen, Duration::from_millis(delay_ms)))
        }
    }
}
