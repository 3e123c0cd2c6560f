//! The collector's own metrics, in Prometheus text at `service.telemetry.metrics.address`, with
//! the OpenTelemetry Collector's names and labels so that existing dashboards and alerts work.
//!
//! Counters carry the `_total` suffix in the exposition, as the Collector's do since it moved to
//! the OpenTelemetry Go SDK. Components resolve their label sets once at build time and keep the
//! counter handles, so the hot path is one atomic add per batch.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

pub use crate::config::Exposition;
use crate::signal::Signal;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabels {
    pub receiver: String,
    pub transport: String,
}

/// A pulling receiver's failed reads, by what it read (a kubelet path, an API collection, a
/// scraper).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub receiver: String,
    pub source: String,
}

/// [`Telemetry::receiver_source_errors`]'s type.
pub type SourceErrors = Family<SourceLabels, Counter>;

/// Counts one failed read of `source` by `receiver`.
pub fn source_failed(errors: &SourceErrors, receiver: &str, source: &str) {
    errors
        .get_or_create(&SourceLabels {
            receiver: receiver.to_owned(),
            source: source.to_owned(),
        })
        .inc();
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExporterLabels {
    pub exporter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcessorLabels {
    pub processor: String,
    pub pipeline: String,
    pub otel_signal: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub processor: String,
    pub policy: String,
    pub sampled: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcessorDropLabels {
    pub processor: String,
    pub pipeline: String,
    pub otel_signal: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    pub endpoint: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

/// An exporter's queue metrics, per signal as the Collector's (`data_type`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub exporter: String,
    pub data_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub exporter: String,
    pub reason: String,
}

type CounterFamily<L> = Family<L, Counter>;

/// One counter per signal, e.g. `..._spans`, `..._metric_points`, `..._log_records`.
pub struct PerSignal<
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + Send + Sync + std::fmt::Debug + 'static,
> {
    families: [CounterFamily<L>; crate::signal::Signal::COUNT],
}

impl<L: Clone + std::hash::Hash + Eq + EncodeLabelSet + Send + Sync + std::fmt::Debug + 'static>
    PerSignal<L>
{
    fn register(reg: &mut Registry, prefix: &str, help: &str) -> Self {
        let families: [CounterFamily<L>; crate::signal::Signal::COUNT] = Default::default();
        for s in Signal::EVERY {
            let name = format!("{prefix}_{}", s.item_name());
            reg.register(
                name,
                format!("{help} ({})", s.item_name()),
                families[s.index()].clone(),
            );
        }
        PerSignal { families }
    }

    /// The three counters of one label set; keep them and add to them on the hot path.
    pub fn handles(&self, labels: &L) -> SignalCounters {
        SignalCounters(std::array::from_fn(|i| {
            self.families[i].get_or_create(labels).clone()
        }))
    }
}

/// One gauge per signal, named like [`PerSignal`]'s counters.
pub struct PerSignalGauge<
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + Send + Sync + std::fmt::Debug + 'static,
> {
    families: [Family<L, Gauge>; crate::signal::Signal::COUNT],
}

impl<L: Clone + std::hash::Hash + Eq + EncodeLabelSet + Send + Sync + std::fmt::Debug + 'static>
    PerSignalGauge<L>
{
    fn register(reg: &mut Registry, prefix: &str, help: &str) -> Self {
        let families: [Family<L, Gauge>; crate::signal::Signal::COUNT] = Default::default();
        for s in Signal::EVERY {
            reg.register(
                format!("{prefix}_{}", s.item_name()),
                format!("{help} ({})", s.item_name()),
                families[s.index()].clone(),
            );
        }
        PerSignalGauge { families }
    }

    pub fn handles(&self, labels: &L) -> [Gauge; crate::signal::Signal::COUNT] {
        std::array::from_fn(|i| self.families[i].get_or_create(labels).clone())
    }
}

/// Counter handles for one component, indexed by signal.
#[derive(Clone, Default)]
pub struct SignalCounters([Counter; crate::signal::Signal::COUNT]);

impl SignalCounters {
    pub fn add(&self, signal: Signal, n: usize) {
        if n > 0 {
            self.0[signal.index()].inc_by(n as u64);
        }
    }

    pub fn get(&self, signal: Signal) -> u64 {
        self.0[signal.index()].get()
    }
}

pub struct Telemetry {
    registry: Registry,
    started: Instant,
    pub receiver_accepted: PerSignal<ReceiverLabels>,
    pub receiver_refused: PerSignal<ReceiverLabels>,
    /// Items a receiver could not push for a reason other than backpressure (a permanent
    /// error downstream), as the Collector's `otelcol_receiver_failed_*`.
    pub receiver_failed: PerSignal<ReceiverLabels>,
    /// Requests refused by the receiver's authenticator (`ferrotel_receiver_unauthenticated_requests`).
    pub receiver_unauthenticated: Family<ReceiverLabels, Counter>,
    pub exporter_sent: PerSignal<ExporterLabels>,
    pub exporter_send_failed: PerSignal<ExporterLabels>,
    pub exporter_enqueue_failed: PerSignal<ExporterLabels>,
    /// Items an exporter took from its pipelines (`ferrotel_exporter_accepted_*`): queued, or
    /// sent in place without a queue. The ledger: restored + accepted = sent + send_failed + queued.
    pub exporter_accepted: PerSignal<ExporterLabels>,
    pub exporter_queue_size: Family<QueueLabels, Gauge>,
    pub exporter_queue_capacity: Family<QueueLabels, Gauge>,
    /// Items an exporter holds: queued, being sent or waiting to be retried.
    pub exporter_queued: PerSignalGauge<ExporterLabels>,
    /// Items given up for good, by reason (`retries_exhausted`, `permanent_error`, `shutdown`).
    pub exporter_dropped_items: Family<DropLabels, Counter>,
    /// Items a persistent queue held when it was opened (`ferrotel_exporter_queue_restored_items`):
    /// accepted by an earlier run, so they join the ledger here.
    pub exporter_queue_restored: Family<QueueLabels, Counter>,
    /// Damaged spans of a persistent queue skipped when it was opened, by reason (`corrupt`,
    /// `torn`) (`ferrotel_exporter_queue_skipped_records`).
    pub exporter_queue_skipped: Family<DropLabels, Counter>,
    pub processor_incoming: Family<ProcessorLabels, Counter>,
    pub processor_outgoing: Family<ProcessorLabels, Counter>,
    pub processor_refused: Family<ProcessorLabels, Counter>,
    /// Items a processor had accepted and then gave up, by reason.
    pub processor_dropped: Family<ProcessorDropLabels, Counter>,
    pub batch_size_trigger: Family<ProcessorLabels, Counter>,
    pub batch_timeout_trigger: Family<ProcessorLabels, Counter>,
    /// Items per batch the batch processor sent.
    pub batch_send_size: Family<ProcessorLabels, Histogram>,
    /// Items per request the exporters' `sending_queue.batch` sent.
    pub queue_batch_send_size: Family<ExporterLabels, Histogram>,
    /// `tail_sampling`: traces decided, by policy and outcome.
    pub tail_sampling_decisions: Family<PolicyLabels, Counter>,
    /// `tail_sampling`: traces held waiting for their decision.
    pub tail_sampling_traces: Family<ProcessorLabels, Gauge>,
    /// `k8sattributes`: items whose resource could not be enriched, by reason.
    pub k8s_unenriched: Family<ProcessorDropLabels, Counter>,
    /// `spanmetrics`: spans aggregated into the overflow series, past the cardinality limit.
    pub spanmetrics_overflow: Family<ProcessorLabels, Counter>,
    /// Receivers: input that could not be parsed (kept raw, or dropped where nothing can be
    /// kept), by receiver and transport.
    pub receiver_malformed: Family<ReceiverLabels, Counter>,
    /// Pulling receivers (hostmetrics, kubeletstats, the Kubernetes API receivers): reads that
    /// failed, by source; what they would have produced is missing for that interval.
    pub receiver_source_errors: SourceErrors,
    /// Server connections closed by ferrotel, by listen address and reason (`shed`, `refused`,
    /// `idle`, `max_age`).
    pub connections_closed: Family<ConnectionLabels, Counter>,
    /// Open server connections by listen address.
    pub connections_open: Family<EndpointLabels, Gauge>,
    process_rss: Gauge,
    process_cpu: Counter<f64, AtomicU64>,
    process_uptime: Counter<f64, AtomicU64>,
}

/// The Collector's buckets for batch sizes (its batch processor's `batch_send_size`).
const BATCH_SIZE_BUCKETS: [f64; 22] = [
    10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0,
    6000.0, 7000.0, 8000.0, 9000.0, 10000.0, 20000.0, 30000.0, 50000.0, 100000.0,
];

fn batch_size_histogram() -> Histogram {
    Histogram::new(BATCH_SIZE_BUCKETS)
}

/// The names written with a unit suffix, and what `without_units` makes of them.
const UNIT_SUFFIXED: [(&str, &str); 2] = [
    (
        "otelcol_process_memory_rss_bytes",
        "otelcol_process_memory_rss",
    ),
    ("otelcol_process_uptime_seconds", "otelcol_process_uptime"),
];

/// The loss ledger in one line, from the counters as they stand: items accepted from clients,
/// delivered, dropped by reason, and held (left in queues). Logged at shutdown.
pub fn ledger_line(text: &str) -> String {
    use std::collections::BTreeMap;
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        let reason = series
            .split("reason=\"")
            .nth(1)
            .and_then(|r| r.split('"').next());
        let key = match name {
            n if n.starts_with("otelcol_receiver_accepted_") => "accepted".to_owned(),
            n if n.starts_with("otelcol_receiver_refused_") => "refused".to_owned(),
            n if n.starts_with("otelcol_exporter_sent_") => "delivered".to_owned(),
            n if n.starts_with("otelcol_exporter_queued_") => "held".to_owned(),
            "ferrotel_exporter_queue_restored_items_total" => "restored".to_owned(),
            "otelcol_exporter_dropped_items_total" | "otelcol_processor_dropped_items_total" => {
                format!("dropped:{}", reason.unwrap_or("unknown"))
            }
            _ => continue,
        };
        *sums.entry(key).or_default() += v;
    }
    let get = |k: &str| sums.get(k).copied().unwrap_or(0.0) as u64;
    let dropped: Vec<String> = sums
        .iter()
        .filter(|(k, v)| k.starts_with("dropped:") && **v > 0.0)
        .map(|(k, v)| format!("{}={}", &k[8..], *v as u64))
        .collect();
    format!(
        "accepted={} refused={} restored={} delivered={} dropped={} [{}] held={}",
        get("accepted"),
        get("refused"),
        get("restored"),
        get("delivered"),
        dropped
            .iter()
            .filter_map(|d| d.rsplit('=').next()?.parse::<u64>().ok())
            .sum::<u64>(),
        dropped.join(" "),
        get("held"),
    )
}

impl Telemetry {
    pub fn new(resource: &std::collections::BTreeMap<String, Option<String>>) -> Arc<Self> {
        let mut r = Registry::default();
        let reg = &mut r;
        let receiver_accepted = PerSignal::register(
            reg,
            "otelcol_receiver_accepted",
            "Items successfully pushed into the pipeline",
        );
        let receiver_refused = PerSignal::register(
            reg,
            "otelcol_receiver_refused",
            "Items that could not be pushed into the pipeline because it pushed back (retryable)",
        );
        let receiver_failed = PerSignal::register(
            reg,
            "otelcol_receiver_failed",
            "Items that could not be pushed into the pipeline for another reason (permanent)",
        );
        let exporter_sent = PerSignal::register(
            reg,
            "otelcol_exporter_sent",
            "Items successfully sent to the destination",
        );
        let exporter_send_failed = PerSignal::register(
            reg,
            "otelcol_exporter_send_failed",
            "Items the exporter failed to send, finally",
        );
        let exporter_enqueue_failed = PerSignal::register(
            reg,
            "otelcol_exporter_enqueue_failed",
            "Items refused because the sending queue was full (per attempt: a batch processor retries them)",
        );
        let receiver_unauthenticated: Family<ReceiverLabels, Counter> = Family::default();
        reg.register(
            "ferrotel_receiver_unauthenticated_requests",
            "Requests refused by the receiver's authenticator (401, UNAUTHENTICATED); they reach no pipeline",
            receiver_unauthenticated.clone(),
        );
        let exporter_accepted = PerSignal::register(
            reg,
            "ferrotel_exporter_accepted",
            "Items the exporter took from its pipelines (queued, or sent in place)",
        );
        let gauge = |reg: &mut Registry, name: &str, help: &str| {
            let f: Family<QueueLabels, Gauge> = Family::default();
            reg.register(name, help, f.clone());
            f
        };
        let exporter_queue_size = gauge(
            reg,
            "otelcol_exporter_queue_size",
            "Requests of one signal held by the exporter: in its sending queue, being sent or waiting to be retried",
        );
        let exporter_queue_capacity = gauge(
            reg,
            "otelcol_exporter_queue_capacity",
            "Fixed capacity of the sending queue (requests), which the exporter's signals share",
        );
        let exporter_queued = PerSignalGauge::register(
            reg,
            "otelcol_exporter_queued",
            "Items held by the exporter: in its sending queue, being sent or waiting to be retried",
        );
        let connections_closed: Family<ConnectionLabels, Counter> = Family::default();
        reg.register(
            "otelcol_server_connections_closed",
            "Connections the server closed: shed for a new one, refused at the cap, idle, too old",
            connections_closed.clone(),
        );
        let connections_open: Family<EndpointLabels, Gauge> = Family::default();
        reg.register(
            "otelcol_server_connections",
            "Open connections of a listener",
            connections_open.clone(),
        );
        let exporter_dropped_items: Family<DropLabels, Counter> = Family::default();
        reg.register(
            "otelcol_exporter_dropped_items",
            "Items given up for good, by reason",
            exporter_dropped_items.clone(),
        );
        let exporter_queue_restored: Family<QueueLabels, Counter> = Family::default();
        reg.register(
            "ferrotel_exporter_queue_restored_items",
            "Items the persistent sending queue held when it was opened (accepted by an earlier run)",
            exporter_queue_restored.clone(),
        );
        let exporter_queue_skipped: Family<DropLabels, Counter> = Family::default();
        reg.register(
            "ferrotel_exporter_queue_skipped_records",
            "Damaged records of the persistent sending queue skipped when it was opened, by reason (corrupt, torn)",
            exporter_queue_skipped.clone(),
        );
        let pfam = |reg: &mut Registry, name: &str, help: &str| {
            let f: Family<ProcessorLabels, Counter> = Family::default();
            reg.register(name, help, f.clone());
            f
        };
        let processor_incoming = pfam(
            reg,
            "otelcol_processor_incoming_items",
            "Items passed to the processor",
        );
        let processor_outgoing = pfam(
            reg,
            "otelcol_processor_outgoing_items",
            "Items emitted by the processor",
        );
        let processor_refused = pfam(
            reg,
            "otelcol_processor_refused_items",
            "Items the processor refused (retryable)",
        );
        let processor_dropped: Family<ProcessorDropLabels, Counter> = Family::default();
        reg.register(
            "otelcol_processor_dropped_items",
            "Items a processor accepted and then gave up, by reason",
            processor_dropped.clone(),
        );
        let batch_size_trigger = pfam(
            reg,
            "otelcol_processor_batch_batch_size_trigger_send",
            "Batches sent because of the size trigger",
        );
        let batch_timeout_trigger = pfam(
            reg,
            "otelcol_processor_batch_timeout_trigger_send",
            "Batches sent because of the timeout trigger",
        );
        let batch_send_size: Family<ProcessorLabels, Histogram> =
            Family::new_with_constructor(batch_size_histogram);
        reg.register(
            "otelcol_processor_batch_batch_send_size",
            "Number of units in the batch that was sent",
            batch_send_size.clone(),
        );
        let queue_batch_send_size: Family<ExporterLabels, Histogram> =
            Family::new_with_constructor(batch_size_histogram);
        reg.register(
            "otelcol_exporter_queue_batch_send_size",
            "Number of items in the request the sending queue's batcher sent",
            queue_batch_send_size.clone(),
        );
        let tail_sampling_decisions: Family<PolicyLabels, Counter> = Family::default();
        reg.register(
            "otelcol_processor_tail_sampling_count_traces_sampled",
            "Traces decided by each tail-sampling policy (sampled = true/false)",
            tail_sampling_decisions.clone(),
        );
        let tail_sampling_traces: Family<ProcessorLabels, Gauge> = Family::default();
        reg.register(
            "otelcol_processor_tail_sampling_sampling_traces_on_memory",
            "Traces held waiting for a tail-sampling decision",
            tail_sampling_traces.clone(),
        );
        let k8s_unenriched: Family<ProcessorDropLabels, Counter> = Family::default();
        reg.register(
            "otelcol_processor_k8sattributes_unenriched_resources",
            "Items passed on without Kubernetes metadata, by reason (api_unreachable, pod_not_found, no_association)",
            k8s_unenriched.clone(),
        );
        let spanmetrics_overflow = pfam(
            reg,
            "ferrotel_connector_spanmetrics_overflow_spans",
            "Spans counted in the overflow series because the cardinality limit was reached",
        );
        let receiver_source_errors: Family<SourceLabels, Counter> = Family::default();
        reg.register(
            "ferrotel_receiver_source_errors",
            "Reads a pulling receiver could not make (kubelet, Kubernetes API, a host scraper), by source",
            receiver_source_errors.clone(),
        );
        let receiver_malformed: Family<ReceiverLabels, Counter> = Family::default();
        reg.register(
            "otelcol_receiver_malformed_items",
            "Input items a receiver could not parse (syslog messages kept raw, scrapes that failed)",
            receiver_malformed.clone(),
        );
        // Units as the Collector declares them, so the names get the same suffixes:
        // `otelcol_process_memory_rss_bytes`, `otelcol_process_cpu_seconds_total`,
        // `otelcol_process_uptime_seconds_total`.
        let process_rss = Gauge::default();
        reg.register_with_unit(
            "otelcol_process_memory_rss",
            "Total physical memory (resident set size) in bytes",
            Unit::Bytes,
            process_rss.clone(),
        );
        let process_cpu: Counter<f64, AtomicU64> = Counter::default();
        reg.register_with_unit(
            "otelcol_process_cpu",
            "Total CPU user and system time in seconds",
            Unit::Seconds,
            process_cpu.clone(),
        );
        let process_uptime: Counter<f64, AtomicU64> = Counter::default();
        reg.register_with_unit(
            "otelcol_process_uptime",
            "Uptime of the process in seconds",
            Unit::Seconds,
            process_uptime.clone(),
        );
        let attributes = resource_attributes(resource);
        if !attributes.is_empty() {
            let info: Family<Vec<(String, String)>, Gauge> = Family::default();
            let labels = attributes
                .iter()
                .map(|(k, v)| (sanitize_label(k), v.clone()))
                .collect::<Vec<_>>();
            info.get_or_create(&labels).set(1);
            reg.register(
                "target_info",
                "The collector's own resource attributes",
                info,
            );
        }
        Arc::new(Telemetry {
            registry: r,
            started: Instant::now(),
            receiver_accepted,
            receiver_refused,
            receiver_failed,
            exporter_sent,
            exporter_send_failed,
            exporter_enqueue_failed,
            exporter_queue_size,
            exporter_queue_capacity,
            exporter_queued,
            connections_closed,
            connections_open,
            exporter_dropped_items,
            exporter_queue_restored,
            exporter_queue_skipped,
            exporter_accepted,
            receiver_unauthenticated,
            processor_incoming,
            processor_outgoing,
            processor_refused,
            processor_dropped,
            batch_size_trigger,
            batch_timeout_trigger,
            batch_send_size,
            queue_batch_send_size,
            tail_sampling_decisions,
            tail_sampling_traces,
            k8s_unenriched,
            spanmetrics_overflow,
            receiver_malformed,
            receiver_source_errors,
            process_rss,
            process_cpu,
            process_uptime,
        })
    }

    /// The Prometheus text exposition of every self-metric.
    pub fn encode(&self) -> String {
        self.encode_as(Exposition::default())
    }

    /// The exposition as one pull reader writes it.
    pub fn encode_as(&self, how: Exposition) -> String {
        let p = process_stats();
        self.process_rss.set(p.rss_bytes as i64);
        // Counters only go up: add what passed since the last read.
        let add = |c: &Counter<f64, AtomicU64>, now: f64| {
            let delta = now - c.get();
            if delta > 0.0 {
                c.inc_by(delta);
            }
        };
        add(&self.process_cpu, p.cpu_seconds);
        add(&self.process_uptime, self.started.elapsed().as_secs_f64());
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        if how == Exposition::default() {
            return out;
        }
        rewrite(&out, how)
    }
}

/// Applies `without_units` and `without_type_suffix` to an exposition, line by line.
fn rewrite(text: &str, how: Exposition) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut l = line.to_owned();
        if how.without_units {
            if l.starts_with("# UNIT ") {
                continue;
            }
            for (with, without) in UNIT_SUFFIXED {
                l = l.replace(with, without);
            }
        }
        if how.without_type_suffix && !l.starts_with('#') {
            // `name_total{...} v` or `name_total v`: the counter's sample without `_total`.
            let name_end = l.find(['{', ' ']).unwrap_or(l.len());
            if l[..name_end].ends_with("_total") {
                l.replace_range(name_end - "_total".len()..name_end, "");
            }
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// The collector's resource, as the Collector builds it: `service.name`, `service.version` and
/// a random `service.instance.id` unless set, then `service.telemetry.resource` on top; an
/// attribute set to null is left out.
pub fn resource_attributes(
    configured: &std::collections::BTreeMap<String, Option<String>>,
) -> Vec<(String, String)> {
    // One id for the process: the metrics and the logs it exports name the same instance.
    static INSTANCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let instance = INSTANCE
        .get_or_init(|| {
            let b: [u8; 16] = rand::random();
            // A version-4 UUID, as the Collector generates.
            let v = u128::from_be_bytes(b) & !(0xf000 << 64) | (0x4000 << 64);
            let v = v & !(0xc000 << 48) | (0x8000 << 48);
            let h = format!("{v:032x}");
            format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            )
        })
        .clone();
    let mut out: std::collections::BTreeMap<String, Option<String>> = [
        ("service.name".to_string(), Some("ferrotel".to_string())),
        (
            "service.version".to_string(),
            Some(env!("CARGO_PKG_VERSION").to_string()),
        ),
        ("service.instance.id".to_string(), Some(instance)),
    ]
    .into();
    for (k, v) in configured {
        out.insert(k.clone(), v.clone());
    }
    out.into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

fn sanitize_label(k: &str) -> String {
    let mut s: String = k
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

pub struct ProcessStats {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

/// Resident memory and CPU time of this process, from /proc (Linux).
impl Telemetry {
    /// The connection counters of one listener.
    pub fn connection_metrics(&self, endpoint: &str) -> crate::net::server::ConnectionMetrics {
        let c = |reason: &str| {
            self.connections_closed
                .get_or_create(&ConnectionLabels {
                    endpoint: endpoint.into(),
                    reason: reason.into(),
                })
                .clone()
        };
        crate::net::server::ConnectionMetrics {
            shed: c("shed"),
            refused: c("refused"),
            idle: c("idle"),
            aged: c("max_age"),
            open: self
                .connections_open
                .get_or_create(&EndpointLabels {
                    endpoint: endpoint.into(),
                })
                .clone(),
        }
    }
}

/// Resident memory of this process (from `/proc/self/statm`; 0 where there is none).
pub fn rss_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

pub fn process_stats() -> ProcessStats {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let rss_bytes = rss_bytes();
    let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and may contain spaces.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks)
        })
        .unwrap_or(0.0);
    ProcessStats {
        rss_bytes,
        cpu_seconds,
    }
}

/// Serves the collector's own metrics on `GET /metrics` (OpenMetrics text) at `addr` until
/// `stop` is cancelled: `service.telemetry.metrics`' pull reader.
pub async fn serve(
    addr: &str,
    telemetry: Arc<Telemetry>,
    how: Exposition,
    stop: tokio_util::sync::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let listener = crate::net::server::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for self-metrics: {e}"))?;
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let t = telemetry.clone();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    t.encode_as(how),
                )
            }
        }),
    );
    tracing::info!(address = %addr, "self-metrics listening on /metrics");
    Ok(crate::net::server::serve(listener, None, router, stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_collector_names_with_labels() {
        let t = Telemetry::new(&[("host.name".to_string(), Some("n1".to_string()))].into());
        let h = t.receiver_accepted.handles(&ReceiverLabels {
            receiver: "otlp".into(),
            transport: "grpc".into(),
        });
        h.add(Signal::Traces, 3);
        h.add(Signal::Logs, 2);
        let text = t.encode();
        assert!(
            text.contains(
                "otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"} 3"
            ),
            "{text}"
        );
        assert!(text.contains(
            "otelcol_receiver_accepted_log_records_total{receiver=\"otlp\",transport=\"grpc\"} 2"
        ));
        let info = text
            .lines()
            .find(|l| l.starts_with("target_info{"))
            .unwrap();
        assert!(info.contains("host_name=\"n1\""), "{info}");
        assert!(info.contains("service_name=\"ferrotel\""), "{info}");
        assert!(info.contains("service_version=\""), "{info}");
        assert!(text.contains("otelcol_process_memory_rss_bytes "), "{text}");
        assert!(process_stats().rss_bytes > 0);
    }

    #[test]
    fn resource_defaults_can_be_overridden_and_removed() {
        let a = resource_attributes(
            &[
                ("service.name".to_string(), Some("edge".to_string())),
                ("service.instance.id".to_string(), None),
            ]
            .into(),
        );
        let get = |k: &str| a.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        assert_eq!(get("service.name"), Some("edge"));
        assert_eq!(get("service.instance.id"), None);
        assert_eq!(get("service.version"), Some(env!("CARGO_PKG_VERSION")));
        let b = resource_attributes(&Default::default());
        let id = b.iter().find(|(k, _)| k == "service.instance.id").unwrap();
        assert_eq!(id.1.len(), 36);
        assert_eq!(&id.1[14..15], "4", "{}", id.1);
    }

    #[test]
    fn the_ledger_line_sums_over_components_and_names_drop_reasons() {
        let t = Telemetry::new(&Default::default());
        let r = ReceiverLabels {
            receiver: "otlp".into(),
            transport: "grpc".into(),
        };
        t.receiver_accepted.handles(&r).add(Signal::Traces, 10);
        t.receiver_accepted.handles(&r).add(Signal::Logs, 5);
        let e = ExporterLabels {
            exporter: "otlp_grpc".into(),
        };
        t.exporter_sent.handles(&e).add(Signal::Traces, 7);
        t.exporter_queued.handles(&e)[Signal::Logs.index()].set(5);
        t.exporter_dropped_items
            .get_or_create(&DropLabels {
                exporter: "otlp_grpc".into(),
                reason: "permanent_error".into(),
            })
            .inc_by(3);
        assert_eq!(
            ledger_line(&t.encode()),
            "accepted=15 refused=0 restored=0 delivered=7 dropped=3 [permanent_error=3] held=5"
        );
    }
}
