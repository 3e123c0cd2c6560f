//! The collector's own metrics and logs pushed over OTLP, as `service.telemetry` configures
//! the Collector's SDK: `metrics.readers[].periodic` and `logs.processors[]`.
//!
//! Metrics are read from the same exposition the pull readers serve (parsed back into OTLP:
//! counters become monotonic sums, gauges gauges, histograms explicit-bucket histograms), so
//! both views always agree. Log events become OTLP log records on a bounded queue; when it is
//! full a record is dropped and counted, and the count is written to stderr by the exporting
//! thread. Neither path logs through `tracing` about its own sends (that would feed itself):
//! failures go to stderr, rate-limited.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::config::OtlpPush;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_owned())),
        }),
        ..Default::default()
    }
}

/// The collector's resource as OTLP.
pub fn resource(attrs: &[(String, String)]) -> Resource {
    Resource {
        attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "ferrotel".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

/// Where one OTLP push goes.
#[derive(Clone)]
pub enum Client {
    Grpc {
        channel: tonic::transport::Channel,
        metadata: http::HeaderMap,
        gzip: bool,
    },
    Http {
        client: reqwest::Client,
        /// Without the signal path when the endpoint had none.
        base: String,
        has_path: bool,
        gzip: bool,
    },
}

impl Client {
    /// A client for `cfg` speaking `protocol` (`grpc` or `http/protobuf`).
    pub fn new(cfg: &OtlpPush, protocol: &str) -> Result<Client, String> {
        let tls = crate::net::tls::ClientTlsConfig {
            ca_file: cfg.certificate.clone(),
            cert_file: cfg.client_certificate.clone(),
            key_file: cfg.client_key.clone(),
            insecure: cfg.insecure.unwrap_or(false),
            ..Default::default()
        };
        let gzip = cfg.compression.as_deref() == Some("gzip");
        match protocol {
            "grpc" => Ok(Client::Grpc {
                channel: crate::net::client::grpc_channel(&cfg.endpoint, &tls)?,
                metadata: crate::net::client::grpc_metadata(&cfg.headers)?,
                gzip,
            }),
            _ => {
                crate::net::client::check_http_url(&cfg.endpoint)?;
                let uri: http::Uri = cfg.endpoint.parse().map_err(|e| format!("{e}"))?;
                let has_path = !matches!(uri.path(), "" | "/");
                Ok(Client::Http {
                    client: crate::net::client::http_client(&tls, &cfg.headers)?,
                    base: cfg.endpoint.trim_end_matches('/').to_owned(),
                    has_path,
                    gzip,
                })
            }
        }
    }

    async fn post(
        &self,
        signal_path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), String> {
        let Client::Http {
            client,
            base,
            has_path,
            gzip,
        } = self
        else {
            return Err("not an HTTP client".into());
        };
        let url = if *has_path {
            base.clone()
        } else {
            format!("{base}{signal_path}")
        };
        let mut rb = client
            .post(&url)
            .timeout(timeout)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf");
        let body = if *gzip {
            rb = rb.header(http::header::CONTENT_ENCODING, "gzip");
            crate::net::compression::Compression::Gzip
                .encode(bytes::Bytes::from(body))
                .map_err(|e| e.to_string())?
                .to_vec()
        } else {
            body
        };
        let resp = rb
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST {url}: {}", crate::text::error_chain(&e)))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("POST {url}: HTTP {}", resp.status()))
        }
    }

    /// A gRPC request carrying the configured headers and the timeout.
    fn grpc_request<T>(&self, req: T, timeout: Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(req);
        if let Client::Grpc { metadata, .. } = self {
            *r.metadata_mut() = tonic::metadata::MetadataMap::from_headers(metadata.clone());
        }
        r.set_timeout(timeout);
        r
    }

    pub async fn export_metrics(
        &self,
        req: ExportMetricsServiceRequest,
        timeout: Duration,
    ) -> Result<(), String> {
        match self {
            Client::Grpc { channel, gzip, .. } => {
                use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
                let mut c = MetricsServiceClient::new(channel.clone());
                if *gzip {
                    c = c.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                c.export(self.grpc_request(req, timeout))
                    .await
                    .map(|_| ())
                    .map_err(status_text)
            }
            Client::Http { .. } => self.post("/v1/metrics", req.encode_to_vec(), timeout).await,
        }
    }

    pub async fn export_traces(
        &self,
        req: ExportTraceServiceRequest,
        timeout: Duration,
    ) -> Result<(), String> {
        match self {
            Client::Grpc { channel, gzip, .. } => {
                use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
                let mut c = TraceServiceClient::new(channel.clone());
                if *gzip {
                    c = c.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                c.export(self.grpc_request(req, timeout))
                    .await
                    .map(|_| ())
                    .map_err(status_text)
            }
            Client::Http { .. } => self.post("/v1/traces", req.encode_to_vec(), timeout).await,
        }
    }

    pub async fn export_logs(
        &self,
        req: ExportLogsServiceRequest,
        timeout: Duration,
    ) -> Result<(), String> {
        match self {
            Client::Grpc { channel, gzip, .. } => {
                use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
                let mut c = LogsServiceClient::new(channel.clone());
                if *gzip {
                    c = c.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                c.export(self.grpc_request(req, timeout))
                    .await
                    .map(|_| ())
                    .map_err(status_text)
            }
            Client::Http { .. } => self.post("/v1/logs", req.encode_to_vec(), timeout).await,
        }
    }
}

fn status_text(s: tonic::Status) -> String {
    format!("{}: {}", s.code(), s.message())
}

/// Writes a failure of the self-export to stderr, at most once a minute per kind.
fn report_failure(last: &mut Option<Instant>, what: &str, err: &str) {
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
        *last = Some(Instant::now());
        eprintln!("ferrotel: exporting the collector's own {what} failed: {err}");
    }
}

/// A series' labels, in the order written.
type Labels = Vec<(String, String)>;

/// A histogram series read back: labels (without `le`), bounds with cumulative counts, sum, count.
type HistogramSeries = (Labels, Vec<(f64, u64)>, f64, u64);

/// One sample line of the exposition: name, labels, value.
fn sample(line: &str) -> Option<(&str, Labels, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let (labels, rest) = if line[name_end..].starts_with('{') {
        let close = line.rfind('}')?;
        (parse_labels(&line[name_end + 1..close]), &line[close + 1..])
    } else {
        (Vec::new(), &line[name_end..])
    };
    let value = rest.split_whitespace().next()?;
    let v = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, v))
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim_start_matches(',').trim().to_owned();
        let after = &rest[eq + 2..];
        let mut val = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        val.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => val.push(c),
            }
        }
        out.push((key, val));
        rest = &after[end..];
    }
    out
}

/// How sums and histograms are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    Cumulative,
    Delta,
}

/// The previous values of every series, for delta temporality.
#[derive(Default)]
pub struct Previous {
    sums: HashMap<(String, Labels), f64>,
    hists: HashMap<(String, Labels), (u64, f64, Vec<u64>)>,
}

/// The exposition's families as OTLP metrics.
pub fn metrics_from_exposition(
    text: &str,
    resource: Resource,
    temporality: Temporality,
    start: SystemTime,
    prev: &mut Previous,
) -> ExportMetricsServiceRequest {
    let now = nanos(SystemTime::now());
    let start_ns = nanos(start);
    let mut types: HashMap<&str, &str> = HashMap::new();
    let mut helps: HashMap<&str, &str> = HashMap::new();
    let mut units: HashMap<&str, &str> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for l in text.lines() {
        if let Some(r) = l.strip_prefix("# TYPE ") {
            if let Some((n, t)) = r.split_once(' ') {
                types.insert(n, t);
                order.push(n);
            }
        } else if let Some(r) = l.strip_prefix("# HELP ") {
            if let Some((n, h)) = r.split_once(' ') {
                helps.insert(n, h);
            }
        } else if let Some(r) = l.strip_prefix("# UNIT ")
            && let Some((n, u)) = r.split_once(' ')
        {
            units.insert(n, u);
        }
    }
    let mut metrics: Vec<Metric> = Vec::new();
    let agg = match temporality {
        Temporality::Cumulative => AggregationTemporality::Cumulative,
        Temporality::Delta => AggregationTemporality::Delta,
    } as i32;
    for family in order {
        let ty = types[family];
        // The OTLP name is the instrument's: no unit or `_total` suffix, as the Collector's
        // instruments are named (`otelcol_process_memory_rss`, unit `By`).
        let (name, unit) = match units.get(family) {
            Some(&"bytes") => (family.strip_suffix("_bytes").unwrap_or(family), "By"),
            Some(&"seconds") => (family.strip_suffix("_seconds").unwrap_or(family), "s"),
            _ => (family, ""),
        };
        let name = if name == "otelcol_process_cpu" {
            "otelcol_process_cpu_seconds"
        } else {
            name
        };
        let description = helps.get(family).copied().unwrap_or_default().to_owned();
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(sample)
            .filter(|(n, _, _)| {
                n.strip_prefix(family).is_some_and(|rest| {
                    matches!(
                        rest,
                        "" | "_total" | "_bucket" | "_sum" | "_count" | "_created"
                    )
                })
            });
        let attrs = |labels: &[(String, String)]| -> Vec<KeyValue> {
            labels
                .iter()
                .filter(|(k, _)| k != "le")
                .map(|(k, v)| kv(k, v))
                .collect()
        };
        let data = match ty {
            "counter" => {
                let mut points = Vec::new();
                for (n, labels, v) in samples {
                    if n.ends_with("_created") {
                        continue;
                    }
                    let key = (family.to_owned(), labels.clone());
                    let value = match temporality {
                        Temporality::Cumulative => v,
                        Temporality::Delta => {
                            let before = prev.sums.insert(key, v).unwrap_or(0.0);
                            (v - before).max(0.0)
                        }
                    };
                    points.push(NumberDataPoint {
                        attributes: attrs(&labels),
                        start_time_unix_nano: start_ns,
                        time_unix_nano: now,
                        value: Some(number_data_point::Value::AsDouble(value)),
                        ..Default::default()
                    });
                }
                metric::Data::Sum(Sum {
                    data_points: points,
                    aggregation_temporality: agg,
                    is_monotonic: true,
                })
            }
            "gauge" => metric::Data::Gauge(Gauge {
                data_points: samples
                    .map(|(_, labels, v)| NumberDataPoint {
                        attributes: attrs(&labels),
                        time_unix_nano: now,
                        value: Some(number_data_point::Value::AsDouble(v)),
                        ..Default::default()
                    })
                    .collect(),
            }),
            "histogram" => {
                // Series by their labels without `le`: bounds and cumulative counts, sum, count.
                let mut series: Vec<HistogramSeries> = Vec::new();
                for (n, labels, v) in samples {
                    let key: Vec<(String, String)> =
                        labels.iter().filter(|(k, _)| k != "le").cloned().collect();
                    let i = match series.iter().position(|s| s.0 == key) {
                        Some(i) => i,
                        None => {
                            series.push((key.clone(), Vec::new(), 0.0, 0));
                            series.len() - 1
                        }
                    };
                    let s = &mut series[i];
                    if n.ends_with("_bucket") {
                        let le = labels
                            .iter()
                            .find(|(k, _)| k == "le")
                            .and_then(|(_, v)| {
                                if v == "+Inf" {
                                    Some(f64::INFINITY)
                                } else {
                                    v.parse().ok()
                                }
                            })
                            .unwrap_or(f64::INFINITY);
                        s.1.push((le, v as u64));
                    } else if n.ends_with("_sum") {
                        s.2 = v;
                    } else if n.ends_with("_count") {
                        s.3 = v as u64;
                    }
                }
                let mut points = Vec::new();
                for (labels, buckets, sum, count) in series {
                    let bounds: Vec<f64> = buckets
                        .iter()
                        .map(|b| b.0)
                        .filter(|b| b.is_finite())
                        .collect();
                    let mut counts = Vec::with_capacity(buckets.len());
                    let mut before = 0;
                    for (_, c) in &buckets {
                        counts.push(c.saturating_sub(before));
                        before = *c;
                    }
                    let (count, sum, counts) = match temporality {
                        Temporality::Cumulative => (count, sum, counts),
                        Temporality::Delta => {
                            let key = (family.to_owned(), labels.clone());
                            let (pc, ps, pb) = prev
                                .hists
                                .insert(key, (count, sum, counts.clone()))
                                .unwrap_or((0, 0.0, vec![0; counts.len()]));
                            let delta: Vec<u64> = counts
                                .iter()
                                .enumerate()
                                .map(|(i, c)| c.saturating_sub(pb.get(i).copied().unwrap_or(0)))
                                .collect();
                            (count.saturating_sub(pc), sum - ps, delta)
                        }
                    };
                    points.push(HistogramDataPoint {
                        attributes: attrs(&labels),
                        start_time_unix_nano: start_ns,
                        time_unix_nano: now,
                        count,
                        sum: Some(sum),
                        bucket_counts: counts,
                        explicit_bounds: bounds,
                        ..Default::default()
                    });
                }
                metric::Data::Histogram(Histogram {
                    data_points: points,
                    aggregation_temporality: agg,
                })
            }
            _ => continue,
        };
        // `target_info` is the resource, not a metric.
        if family == "target_info" {
            continue;
        }
        metrics.push(Metric {
            name: name.to_owned(),
            description,
            unit: unit.to_owned(),
            data: Some(data),
            ..Default::default()
        });
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A periodic reader: every `interval`, the exposition as OTLP to `client`, until `stop`.
pub async fn run_periodic_reader(
    telemetry: Arc<crate::telemetry::Telemetry>,
    client: Client,
    interval: Duration,
    timeout: Duration,
    temporality: Temporality,
    resource: Resource,
    stop: tokio_util::sync::CancellationToken,
) {
    let start = SystemTime::now();
    let mut prev = Previous::default();
    let mut last_failure = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.cancelled() => true,
        };
        let text = telemetry.encode();
        let req = metrics_from_exposition(&text, resource.clone(), temporality, start, &mut prev);
        if let Err(e) = client.export_metrics(req, timeout).await {
            report_failure(&mut last_failure, "metrics", &e);
        }
        if stopping {
            return;
        }
    }
}

/// Records dropped because the export queue was full.
static LOGS_DROPPED: AtomicU64 = AtomicU64::new(0);

/// The `tracing` layer that turns events into OTLP log records for one log processor.
pub struct LogsLayer {
    tx: crossbeam::channel::Sender<LogRecord>,
}

/// Events of these crates are not exported: they include the exporter's own transport.
const QUIET_TARGETS: [&str; 6] = ["h2", "hyper", "tonic", "tower", "reqwest", "rustls"];

struct Fields {
    body: String,
    attributes: Vec<KeyValue>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
        if f.name() == "message" {
            self.body = format!("{v:?}");
        } else {
            self.attributes.push(kv(f.name(), &format!("{v:?}")));
        }
    }
    fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
        if f.name() == "message" {
            self.body = v.to_owned();
        } else {
            self.attributes.push(kv(f.name(), v));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogsLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if QUIET_TARGETS
            .iter()
            .any(|t| meta.target() == *t || meta.target().starts_with(&format!("{t}::")))
        {
            return;
        }
        let mut f = Fields {
            body: String::new(),
            attributes: Vec::new(),
        };
        event.record(&mut f);
        let (number, text) = match *meta.level() {
            tracing::Level::ERROR => (17, "ERROR"),
            tracing::Level::WARN => (13, "WARN"),
            tracing::Level::INFO => (9, "INFO"),
            tracing::Level::DEBUG => (5, "DEBUG"),
            tracing::Level::TRACE => (1, "TRACE"),
        };
        let now = nanos(SystemTime::now());
        let record = LogRecord {
            time_unix_nano: now,
            observed_time_unix_nano: now,
            severity_number: number,
            severity_text: text.into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(f.body)),
            }),
            attributes: f.attributes,
            ..Default::default()
        };
        if self.tx.try_send(record).is_err() {
            LOGS_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Settings of one log or span processor.
pub struct LogExport {
    /// The exporter and its protocol; the client is made on the export thread (a gRPC channel
    /// needs a runtime).
    pub target: (OtlpPush, &'static str),
    pub delay: Duration,
    pub max_batch: usize,
    pub max_queue: usize,
    pub timeout: Duration,
    pub resource: Resource,
}

type SendFn<T> = Box<
    dyn Fn(
            Client,
            Vec<T>,
            Resource,
            Duration,
        ) -> futures::future::BoxFuture<'static, Result<(), String>>
        + std::marker::Send,
>;

/// The processors of `logs.processors` or `traces.processors` as exports (a `simple` one sends
/// each record at once).
pub fn exports_of(
    processors: &[crate::config::LogProcessor],
    resource_attrs: &std::collections::BTreeMap<String, Option<String>>,
) -> Vec<LogExport> {
    let mut out = Vec::new();
    for p in processors {
        let Some(b) = p.batch.as_ref().or(p.simple.as_ref()) else {
            continue;
        };
        let Some(target) = b.exporter.otlp() else {
            continue;
        };
        let simple = p.batch.is_none();
        out.push(LogExport {
            target,
            delay: Duration::from_millis(if simple {
                0
            } else {
                b.schedule_delay.unwrap_or(1000)
            }),
            max_batch: if simple {
                1
            } else {
                b.max_export_batch_size.unwrap_or(512)
            },
            max_queue: b.max_queue_size.unwrap_or(2048),
            timeout: Duration::from_millis(b.export_timeout.unwrap_or(30_000)),
            resource: resource(&crate::telemetry::resource_attributes(resource_attrs)),
        });
    }
    out
}

/// The thread that batches records of one processor and exports them, with its own
/// single-threaded runtime (the logger exists before the collector's runtime does).
fn spawn_exporter<T: std::marker::Send + 'static>(
    what: &'static str,
    export: LogExport,
    rx: crossbeam::channel::Receiver<T>,
    dropped: &'static AtomicU64,
    send: SendFn<T>,
) -> Result<(), String> {
    std::thread::Builder::new()
        .name(format!("telemetry-{what}"))
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                eprintln!("ferrotel: cannot start the runtime that exports the collector's own {what}");
                return;
            };
            let client = {
                let _in_runtime = rt.enter();
                match Client::new(&export.target.0, export.target.1) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("ferrotel: cannot export the collector's own {what}: {e}");
                        return;
                    }
                }
            };
            let mut last_failure = None;
            let mut reported_drops = 0;
            loop {
                let mut batch = Vec::new();
                let deadline = Instant::now() + export.delay;
                while batch.len() < export.max_batch {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let next = if batch.is_empty() && left.is_zero() {
                        // A simple processor: wait for the first record, then send it.
                        rx.recv().map_err(|_| crossbeam::channel::RecvTimeoutError::Disconnected)
                    } else {
                        rx.recv_timeout(left)
                    };
                    match next {
                        Ok(r) => batch.push(r),
                        Err(crossbeam::channel::RecvTimeoutError::Timeout) => break,
                        Err(crossbeam::channel::RecvTimeoutError::Disconnected) => return,
                    }
                }
                let d = dropped.load(Ordering::Relaxed);
                if d > reported_drops {
                    eprintln!(
                        "ferrotel: {} of the collector's own {what} dropped: the export queue was full",
                        d - reported_drops
                    );
                    reported_drops = d;
                }
                if batch.is_empty() {
                    continue;
                }
                let r = rt.block_on(send(client.clone(), batch, export.resource.clone(), export.timeout));
                if let Err(e) = r {
                    report_failure(&mut last_failure, what, &e);
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the {what} export thread: {e}"))
}

/// Starts the thread that batches and exports log records; returns the layer that feeds it.
pub fn start_logs(export: LogExport) -> Result<LogsLayer, String> {
    let (tx, rx) = crossbeam::channel::bounded::<LogRecord>(export.max_queue.max(1));
    spawn_exporter(
        "logs",
        export,
        rx,
        &LOGS_DROPPED,
        Box::new(|client, records, resource, timeout| {
            Box::pin(async move {
                let req = ExportLogsServiceRequest {
                    resource_logs: vec![ResourceLogs {
                        resource: Some(resource),
                        scope_logs: vec![ScopeLogs {
                            scope: Some(scope()),
                            log_records: records,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                };
                client.export_logs(req, timeout).await
            })
        }),
    )?;
    Ok(LogsLayer { tx })
}

/// Spans dropped because the export queue was full.
static SPANS_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Where the collector's own spans go, once `service.telemetry.traces` set it up.
static TRACER: std::sync::OnceLock<Vec<crossbeam::channel::Sender<Span>>> =
    std::sync::OnceLock::new();

/// Starts the span processors; after this, [`span`] records.
pub fn start_traces(exports: Vec<LogExport>) -> Result<(), String> {
    let mut senders = Vec::new();
    for export in exports {
        let (tx, rx) = crossbeam::channel::bounded::<Span>(export.max_queue.max(1));
        spawn_exporter(
            "spans",
            export,
            rx,
            &SPANS_DROPPED,
            Box::new(|client, spans, resource, timeout| {
                Box::pin(async move {
                    let req = ExportTraceServiceRequest {
                        resource_spans: vec![ResourceSpans {
                            resource: Some(resource),
                            scope_spans: vec![ScopeSpans {
                                scope: Some(scope()),
                                spans,
                                ..Default::default()
                            }],
                            ..Default::default()
                        }],
                    };
                    client.export_traces(req, timeout).await
                })
            }),
        )?;
        senders.push(tx);
    }
    TRACER
        .set(senders)
        .map_err(|_| "the collector's spans are already set up".to_string())
}

/// Whether the collector records its own spans (so a caller can skip building a name).
pub fn tracing_enabled() -> bool {
    TRACER.get().is_some_and(|t| !t.is_empty())
}

/// A span of the collector's own work, recorded when dropped.
pub struct SpanGuard {
    span: Option<Span>,
}

/// Starts a span named `name` (a root span: each is its own trace).
pub fn span(name: impl Into<String>) -> SpanGuard {
    if !tracing_enabled() {
        return SpanGuard { span: None };
    }
    let ids: [u8; 24] = rand::random();
    SpanGuard {
        span: Some(Span {
            trace_id: ids[..16].to_vec(),
            span_id: ids[16..].to_vec(),
            name: name.into(),
            kind: opentelemetry_proto::tonic::trace::v1::span::SpanKind::Internal as i32,
            start_time_unix_nano: nanos(SystemTime::now()),
            ..Default::default()
        }),
    }
}

impl SpanGuard {
    pub fn attr(&mut self, k: &str, v: impl std::fmt::Display) {
        if let Some(s) = &mut self.span {
            s.attributes.push(kv(k, &v.to_string()));
        }
    }

    pub fn error(&mut self, msg: &str) {
        if let Some(s) = &mut self.span {
            s.status = Some(opentelemetry_proto::tonic::trace::v1::Status {
                message: msg.to_owned(),
                code: opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32,
            });
        }
    }
}

impl Drop for SpanGuard {
    fn drop(&mut self) {
        let (Some(mut s), Some(senders)) = (self.span.take(), TRACER.get()) else {
            return;
        };
        s.end_time_unix_nano = nanos(SystemTime::now());
        for tx in senders {
            if tx.try_send(s.clone()).is_err() {
                SPANS_DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP otelcol_receiver_accepted_spans Items.\n# TYPE otelcol_receiver_accepted_spans counter\notelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"} 5\n# HELP otelcol_process_memory_rss_bytes RSS.\n# TYPE otelcol_process_memory_rss_bytes gauge\n# UNIT otelcol_process_memory_rss_bytes bytes\notelcol_process_memory_rss_bytes 1024\n# TYPE otelcol_processor_batch_batch_send_size histogram\notelcol_processor_batch_batch_send_size_sum{processor=\"batch\"} 30.0\notelcol_processor_batch_batch_send_size_count{processor=\"batch\"} 3\notelcol_processor_batch_batch_send_size_bucket{le=\"10.0\",processor=\"batch\"} 2\notelcol_processor_batch_batch_send_size_bucket{le=\"25.0\",processor=\"batch\"} 3\notelcol_processor_batch_batch_send_size_bucket{le=\"+Inf\",processor=\"batch\"} 3\n# EOF\n";

    #[test]
    fn the_exposition_becomes_otlp() {
        let mut prev = Previous::default();
        let req = metrics_from_exposition(
            TEXT,
            resource(&[]),
            Temporality::Cumulative,
            SystemTime::now(),
            &mut prev,
        );
        let ms = &req.resource_metrics[0].scope_metrics[0].metrics;
        let names: Vec<&str> = ms.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "otelcol_receiver_accepted_spans",
                "otelcol_process_memory_rss",
                "otelcol_processor_batch_batch_send_size"
            ]
        );
        assert_eq!(ms[1].unit, "By");
        let Some(metric::Data::Sum(s)) = &ms[0].data else {
            panic!()
        };
        assert!(s.is_monotonic);
        assert_eq!(
            s.data_points[0].value,
            Some(number_data_point::Value::AsDouble(5.0))
        );
        assert_eq!(s.data_points[0].attributes.len(), 2);
        let Some(metric::Data::Histogram(h)) = &ms[2].data else {
            panic!()
        };
        let p = &h.data_points[0];
        assert_eq!((p.count, p.sum), (3, Some(30.0)));
        assert_eq!(p.explicit_bounds, vec![10.0, 25.0]);
        assert_eq!(p.bucket_counts, vec![2, 1, 0]);
    }

    #[test]
    fn delta_reports_what_changed() {
        let mut prev = Previous::default();
        let _ = metrics_from_exposition(
            TEXT,
            resource(&[]),
            Temporality::Delta,
            SystemTime::now(),
            &mut prev,
        );
        let more = TEXT.replace("grpc\"} 5", "grpc\"} 8");
        let req = metrics_from_exposition(
            &more,
            resource(&[]),
            Temporality::Delta,
            SystemTime::now(),
            &mut prev,
        );
        let ms = &req.resource_metrics[0].scope_metrics[0].metrics;
        let Some(metric::Data::Sum(s)) = &ms[0].data else {
            panic!()
        };
        assert_eq!(
            s.data_points[0].value,
            Some(number_data_point::Value::AsDouble(3.0))
        );
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Delta as i32
        );
        let Some(metric::Data::Histogram(h)) = &ms[2].data else {
            panic!()
        };
        assert_eq!(h.data_points[0].count, 0);
    }
}
