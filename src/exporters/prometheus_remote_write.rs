//! `prometheus_remote_write` exporter (alias `prometheusremotewrite`): metrics to any Prometheus
//! remote-write 1.0 receiver (`WriteRequest` protobuf, snappy block compressed), translated as
//! the OpenTelemetry "Prometheus and OpenMetrics compatibility" specification says:
//!
//! - names: invalid characters → `_`, with `add_metric_suffixes` the unit as a suffix
//!   (`ms` → `_milliseconds`, `By` → `_bytes`, `1` on gauges → `_ratio`, `X/Y` → `_X_per_Y`)
//!   and `_total` on monotonic sums; `namespace` as a prefix;
//! - labels: data point attributes (invalid characters → `_`, a leading digit → `key_`),
//!   `otel_scope_name`/`otel_scope_version`, `job` (`service.namespace/service.name`), `instance`
//!   (`service.instance.id`), `external_labels`, and with `resource_to_telemetry_conversion` every
//!   resource attribute; the other resource attributes go to one `target_info` series per resource;
//! - gauges and non-monotonic sums → gauges; monotonic sums → counters; histograms →
//!   `_bucket{le}` (cumulative, `+Inf` included), `_sum`, `_count`; summaries → `{quantile}`,
//!   `_sum`, `_count`; exponential histograms → Prometheus native histograms (the receiver needs
//!   native histograms enabled); a point flagged "no recorded value" → the staleness marker;
//! - delta sums and histograms are converted to cumulative per series (state expires after
//!   `delta_expiry` without updates), or dropped and counted with `delta_temporality: drop`;
//!   delta exponential histograms are dropped and counted;
//! - labels sorted, empty values dropped, samples of a series in time order; requests split to
//!   stay under `max_batch_size_bytes`. One sender (`num_consumers: 1`) keeps every series in
//!   order across requests: sharding by series is not implemented, so more consumers are refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint,
    ResourceMetrics, metric::Data, number_data_point,
};
use prost::Message;
use serde::Deserialize;

use super::helper::{Helper, QueueConfig, RetryConfig, SendError, Sender, Settings, Validated};
use super::key_err;
use crate::component::{BoxFuture, BuildError, Context, Exporter, ExporterConfig};
use crate::config::{DeError, Node, from_node, units};
use crate::proto::prometheus as pb;
use crate::signal::Batch;
use crate::tls::ClientTlsConfig;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum DeltaMode {
    #[default]
    Convert,
    Drop,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Enabled {
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TargetInfo {
    /// Default true.
    pub enabled: bool,
}

impl Default for TargetInfo {
    fn default() -> Self {
        TargetInfo { enabled: true }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// e.g. `http://prometheus:9090/api/v1/write`.
    pub endpoint: String,
    /// Prefix of every metric name.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels added to every series.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Unit and `_total` suffixes. Default true.
    #[serde(default = "yes")]
    pub add_metric_suffixes: bool,
    /// Every resource attribute as a label on every series. Default off.
    #[serde(default)]
    pub resource_to_telemetry_conversion: Enabled,
    /// One `target_info` series per resource with its attributes. Default on.
    #[serde(default)]
    pub target_info: TargetInfo,
    /// `convert` (default) or `drop` delta sums and histograms.
    #[serde(default)]
    pub delta_temporality: DeltaMode,
    /// Conversion state of a series is forgotten after this long without updates. Default 5m.
    #[serde(default = "five_min", deserialize_with = "units::duration")]
    pub delta_expiry: Duration,
    /// Largest request before compression. Default 3000000.
    #[serde(default = "three_mb")]
    pub max_batch_size_bytes: usize,
    #[serde(default)]
    pub tls: ClientTlsConfig,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    #[serde(default)]
    pub sending_queue: QueueConfig,
    /// The Collector's older name for the queue settings.
    #[serde(default)]
    pub remote_write_queue: Option<QueueConfig>,
}

fn yes() -> bool {
    true
}
fn five_min() -> Duration {
    Duration::from_secs(300)
}
fn three_mb() -> usize {
    3_000_000
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

pub fn parse(node: &Node) -> Result<Box<dyn ExporterConfig>, DeError> {
    let mut cfg: Config = from_node(node)?;
    super::check_http_url(&cfg.endpoint).map_err(|m| {
        key_err(
            node,
            &["endpoint"],
            format!("{m}, e.g. http://prometheus:9090/api/v1/write"),
        )
    })?;
    let (queue_key, queue_node) = match (&cfg.remote_write_queue, node.get("remote_write_queue")) {
        (Some(q), n) => {
            cfg.sending_queue = q.clone();
            ("remote_write_queue", n)
        }
        _ => ("sending_queue", node.get("sending_queue")),
    };
    // One sender keeps each series in order; the default is 1 here, not the helper's 10.
    if queue_node.and_then(|q| q.get("num_consumers")).is_none() {
        cfg.sending_queue.num_consumers = 1;
    } else if cfg.sending_queue.num_consumers > 1 {
        return Err(key_err(
            node,
            &[queue_key, "num_consumers"],
            "must be 1: sending a series' samples in parallel could reorder them (sharding by series is not implemented yet)",
        ));
    }
    if cfg.max_batch_size_bytes < 1024 {
        return Err(key_err(
            node,
            &["max_batch_size_bytes"],
            "must be at least 1024",
        ));
    }
    cfg.tls.validate().map_err(|m| key_err(node, &["tls"], m))?;
    super::validate_headers(node, &cfg.headers)?;
    let settings = Settings::new(
        cfg.timeout,
        cfg.retry_on_failure.clone(),
        cfg.sending_queue.clone(),
        node,
    )?;
    Ok(Box::new(Validated { cfg, settings }))
}

impl ExporterConfig for Validated<Config> {
    fn build(self: Box<Self>, ctx: Context) -> Result<Arc<dyn Exporter>, BuildError> {
        let Validated { cfg, settings } = *self;
        let client =
            super::http_client(&cfg.tls, &cfg.headers).map_err(|e| BuildError::new(&ctx.id, e))?;
        let dropped = ctx
            .telemetry
            .exporter_dropped_items
            .get_or_create(&crate::telemetry::DropLabels {
                exporter: ctx.id.to_string(),
                reason: "delta_dropped".into(),
            })
            .clone();
        Ok(Helper::build(
            &ctx,
            settings,
            PrwSender {
                client,
                translator: Translator::new(cfg),
                dropped,
            },
        ))
    }
}

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Prometheus label name: invalid characters → `_`, a leading digit → `key_`.
pub fn label_name(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        format!("key_{out}")
    } else {
        out
    }
}

fn unit_word(u: &str) -> Option<&'static str> {
    Some(match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_word(u: &str) -> Option<&'static str> {
    Some(match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

fn sanitize_name(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The Prometheus metric name of an OTLP metric.
pub fn metric_name(
    name: &str,
    unit: &str,
    counter: bool,
    gauge: bool,
    suffixes: bool,
    namespace: Option<&str>,
) -> String {
    let mut n = sanitize_name(name);
    if suffixes {
        // `{packets}` and the like are annotations, not units.
        let unit = unit.split('{').next().unwrap_or("").trim();
        let mut words: Vec<String> = Vec::new();
        match unit.split_once('/') {
            Some((main, per)) => {
                if let Some(w) = unit_word(main)
                    .map(str::to_owned)
                    .or_else(|| (!main.is_empty() && main != "1").then(|| sanitize_name(main)))
                {
                    words.push(w);
                }
                if let Some(p) = per_word(per)
                    .map(str::to_owned)
                    .or_else(|| (!per.is_empty()).then(|| sanitize_name(per)))
                {
                    words.push(format!("per_{p}"));
                }
            }
            None if unit == "1" && gauge => words.push("ratio".into()),
            None if unit.is_empty() || unit == "1" => {}
            None => words.push(unit_word(unit).map_or_else(|| sanitize_name(unit), str::to_owned)),
        }
        for w in words {
            if !n.split('_').any(|part| part == w) && !n.ends_with(&w) {
                n.push('_');
                n.push_str(&w);
            }
        }
        if counter && !n.ends_with("_total") {
            n.push_str("_total");
        }
    }
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{}_{n}", sanitize_name(ns)),
        _ => n,
    }
}

fn attr_text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex::encode(b),
        Some(other) => format!("{other:?}"),
    }
}

/// Label set under construction: sanitized names, colliding names' values joined with `;`.
#[derive(Clone, Default)]
struct LabelSet(BTreeMap<String, String>);

impl LabelSet {
    fn add(&mut self, name: String, value: String) {
        if value.is_empty() {
            return;
        }
        self.0
            .entry(name)
            .and_modify(|v| {
                let mut parts: Vec<&str> = v.split(';').collect();
                parts.push(&value);
                parts.sort_unstable();
                *v = parts.join(";");
            })
            .or_insert(value);
    }

    fn add_attrs(&mut self, attrs: &[KeyValue]) {
        for kv in attrs {
            self.add(label_name(&kv.key), attr_text(&kv.value));
        }
    }

    fn with(&self, extra: &[(&str, String)], name: &str) -> Vec<pb::Label> {
        let mut m = self.0.clone();
        for (k, v) in extra {
            m.insert((*k).to_owned(), v.clone());
        }
        m.insert("__name__".into(), name.to_owned());
        m.into_iter()
            .map(|(name, value)| pb::Label { name, value })
            .collect()
    }
}

/// Cumulative state of a delta series.
enum Acc {
    Sum(f64),
    Hist {
        bounds: Vec<f64>,
        counts: Vec<u64>,
        count: u64,
        sum: f64,
    },
}

struct DeltaState {
    acc: Acc,
    seen: Instant,
}

pub struct Translator {
    cfg: Config,
    deltas: Mutex<HashMap<String, DeltaState>>,
}

#[derive(Default)]
pub struct Output {
    pub series: Vec<pb::TimeSeries>,
    pub dropped_delta_points: usize,
}

fn series_key(labels: &[pb::Label]) -> String {
    let mut k = String::new();
    for l in labels {
        k.push_str(&l.name);
        k.push('\u{0}');
        k.push_str(&l.value);
        k.push('\u{1}');
    }
    k
}

impl Translator {
    pub fn new(cfg: Config) -> Self {
        Translator {
            cfg,
            deltas: Mutex::new(HashMap::new()),
        }
    }

    pub fn translate(&self, resources: &[ResourceMetrics]) -> Output {
        let mut out: BTreeMap<String, pb::TimeSeries> = BTreeMap::new();
        let mut dropped = 0usize;
        let mut deltas = self.deltas.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        deltas.retain(|_, s| now.duration_since(s.seen) < self.cfg.delta_expiry);
        let mut push = |labels: Vec<pb::Label>, value: f64, ts: i64| {
            let e = out
                .entry(series_key(&labels))
                .or_insert_with(|| pb::TimeSeries {
                    labels,
                    ..Default::default()
                });
            e.samples.push(pb::Sample {
                value,
                timestamp: ts,
            });
        };
        let mut natives: Vec<pb::TimeSeries> = Vec::new();
        for rm in resources {
            let res: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
            let find = |k: &str| {
                res.iter()
                    .find(|kv| kv.key == k)
                    .map(|kv| attr_text(&kv.value))
                    .filter(|s| !s.is_empty())
            };
            let (svc, ns, inst) = (
                find("service.name"),
                find("service.namespace"),
                find("service.instance.id"),
            );
            let mut base = LabelSet::default();
            if let Some(svc) = &svc {
                base.add(
                    "job".into(),
                    ns.as_ref()
                        .map_or_else(|| svc.clone(), |ns| format!("{ns}/{svc}")),
                );
            }
            if let Some(inst) = &inst {
                base.add("instance".into(), inst.clone());
            }
            for (k, v) in &self.cfg.external_labels {
                base.add(label_name(k), v.clone());
            }
            if self.cfg.resource_to_telemetry_conversion.enabled {
                base.add_attrs(res);
            }
            let mut latest = 0i64;
            for sm in &rm.scope_metrics {
                let mut scoped = base.clone();
                if let Some(InstrumentationScope { name, version, .. }) = &sm.scope {
                    scoped.add("otel_scope_name".into(), name.clone());
                    scoped.add("otel_scope_version".into(), version.clone());
                }
                for m in &sm.metrics {
                    let Some(data) = &m.data else { continue };
                    let ns = self.cfg.namespace.as_deref();
                    let sfx = self.cfg.add_metric_suffixes;
                    match data {
                        Data::Gauge(g) => {
                            let name = metric_name(&m.name, &m.unit, false, true, sfx, ns);
                            for p in &g.data_points {
                                let ts = (p.time_unix_nano / 1_000_000) as i64;
                                latest = latest.max(ts);
                                push(
                                    point_labels(&scoped, &p.attributes, &[], &name),
                                    number(p),
                                    ts,
                                );
                            }
                        }
                        Data::Sum(s) => {
                            let counter = s.is_monotonic;
                            let name = metric_name(&m.name, &m.unit, counter, !counter, sfx, ns);
                            let delta =
                                s.aggregation_temporality == AggregationTemporality::Delta as i32;
                            for p in &s.data_points {
                                let ts = (p.time_unix_nano / 1_000_000) as i64;
                                latest = latest.max(ts);
                                let labels = point_labels(&scoped, &p.attributes, &[], &name);
                                let mut v = number(p);
                                if delta {
                                    if self.cfg.delta_temporality == DeltaMode::Drop {
                                        dropped += 1;
                                        continue;
                                    }
                                    let st =
                                        deltas.entry(series_key(&labels)).or_insert(DeltaState {
                                            acc: Acc::Sum(0.0),
                                            seen: now,
                                        });
                                    st.seen = now;
                                    if let Acc::Sum(acc) = &mut st.acc {
                                        if !v.is_nan() {
                                            *acc += v;
                                        }
                                        v = *acc;
                                    }
                                }
                                push(labels, v, ts);
                            }
                        }
                        Data::Histogram(h) => {
                            let name = metric_name(&m.name, &m.unit, false, false, sfx, ns);
                            let delta =
                                h.aggregation_temporality == AggregationTemporality::Delta as i32;
                            for p in &h.data_points {
                                let ts = (p.time_unix_nano / 1_000_000) as i64;
                                latest = latest.max(ts);
                                let key_labels = point_labels(&scoped, &p.attributes, &[], &name);
                                let mut point = p.clone();
                                if delta {
                                    if self.cfg.delta_temporality == DeltaMode::Drop {
                                        dropped += 1;
                                        continue;
                                    }
                                    accumulate_hist(
                                        &mut deltas,
                                        series_key(&key_labels),
                                        &mut point,
                                        now,
                                    );
                                }
                                histogram(&mut push, &scoped, &point, &name, ts);
                            }
                        }
                        Data::Summary(s) => {
                            let name = metric_name(&m.name, &m.unit, false, false, sfx, ns);
                            for p in &s.data_points {
                                let ts = (p.time_unix_nano / 1_000_000) as i64;
                                latest = latest.max(ts);
                                let stale = p.flags & 1 == 1;
                                let val =
                                    |v: f64| if stale { f64::from_bits(STALE_NAN) } else { v };
                                let labels = PointLabels::new(&scoped, &p.attributes);
                                for q in &p.quantile_values {
                                    push(
                                        labels.series(
                                            &name,
                                            Some(("quantile", fmt_float(q.quantile))),
                                        ),
                                        val(q.value),
                                        ts,
                                    );
                                }
                                push(labels.series(&format!("{name}_sum"), None), val(p.sum), ts);
                                push(
                                    labels.series(&format!("{name}_count"), None),
                                    val(p.count as f64),
                                    ts,
                                );
                            }
                        }
                        Data::ExponentialHistogram(eh) => {
                            let name = metric_name(&m.name, &m.unit, false, false, sfx, ns);
                            for p in &eh.data_points {
                                if eh.aggregation_temporality
                                    == AggregationTemporality::Delta as i32
                                {
                                    dropped += 1;
                                    continue;
                                }
                                let ts = (p.time_unix_nano / 1_000_000) as i64;
                                latest = latest.max(ts);
                                natives.push(pb::TimeSeries {
                                    labels: point_labels(&scoped, &p.attributes, &[], &name),
                                    histograms: vec![native_histogram(p, ts)],
                                    ..Default::default()
                                });
                            }
                        }
                    }
                }
            }
            if self.cfg.target_info.enabled && latest > 0 {
                let mut info = base.clone();
                let rest: Vec<KeyValue> = res
                    .iter()
                    .filter(|kv| {
                        !matches!(
                            kv.key.as_str(),
                            "service.name" | "service.namespace" | "service.instance.id"
                        )
                    })
                    .cloned()
                    .collect();
                if !rest.is_empty() {
                    info.add_attrs(&rest);
                    let name = match self.cfg.namespace.as_deref() {
                        Some(ns) if !ns.is_empty() => format!("{}_target_info", sanitize_name(ns)),
                        _ => "target_info".to_owned(),
                    };
                    push(info.with(&[], &name), 1.0, latest);
                }
            }
        }
        let mut series: Vec<pb::TimeSeries> = out.into_values().collect();
        for s in &mut series {
            s.samples.sort_by_key(|x| x.timestamp);
        }
        series.extend(natives);
        Output {
            series,
            dropped_delta_points: dropped,
        }
    }
}

fn number(p: &NumberDataPoint) -> f64 {
    if p.flags & 1 == 1 {
        return f64::from_bits(STALE_NAN);
    }
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

fn point_labels(
    scoped: &LabelSet,
    attrs: &[KeyValue],
    extra: &[(&str, String)],
    name: &str,
) -> Vec<pb::Label> {
    let mut l = scoped.clone();
    l.add_attrs(attrs);
    l.with(extra, name)
}

/// A point's labels computed once; each series of the point (histogram buckets, sum, count,
/// quantiles) is derived by naming it and adding at most one label.
struct PointLabels(Vec<pb::Label>);

impl PointLabels {
    fn new(scoped: &LabelSet, attrs: &[KeyValue]) -> Self {
        PointLabels(point_labels(scoped, attrs, &[], ""))
    }

    fn series(&self, name: &str, extra: Option<(&str, String)>) -> Vec<pb::Label> {
        let mut v = Vec::with_capacity(self.0.len() + 1);
        v.extend(self.0.iter().cloned());
        if let Some(l) = v.iter_mut().find(|l| l.name == "__name__") {
            l.value = name.to_owned();
        }
        if let Some((k, val)) = extra {
            match v.binary_search_by(|l| l.name.as_str().cmp(k)) {
                Ok(i) => v[i].value = val,
                Err(i) => v.insert(
                    i,
                    pb::Label {
                        name: k.to_owned(),
                        value: val,
                    },
                ),
            }
        }
        v
    }
}

/// Prometheus' float format for `le` and `quantile` (`0.5`, `1`, `+Inf`).
fn fmt_float(f: f64) -> String {
    if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        let s = format!("{f}");
        s
    }
}

fn histogram(
    push: &mut impl FnMut(Vec<pb::Label>, f64, i64),
    scoped: &LabelSet,
    p: &HistogramDataPoint,
    name: &str,
    ts: i64,
) {
    let stale = p.flags & 1 == 1;
    let val = |v: f64| if stale { f64::from_bits(STALE_NAN) } else { v };
    let labels = PointLabels::new(scoped, &p.attributes);
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0u64;
    for (i, c) in p.bucket_counts.iter().enumerate() {
        cumulative += c;
        let Some(bound) = p.explicit_bounds.get(i) else {
            break;
        };
        if bound.is_infinite() && *bound > 0.0 {
            break;
        }
        push(
            labels.series(&bucket, Some(("le", fmt_float(*bound)))),
            val(cumulative as f64),
            ts,
        );
    }
    push(
        labels.series(&bucket, Some(("le", "+Inf".into()))),
        val(p.count as f64),
        ts,
    );
    if let Some(sum) = p.sum {
        push(labels.series(&format!("{name}_sum"), None), val(sum), ts);
    }
    push(
        labels.series(&format!("{name}_count"), None),
        val(p.count as f64),
        ts,
    );
}

fn accumulate_hist(
    deltas: &mut HashMap<String, DeltaState>,
    key: String,
    p: &mut HistogramDataPoint,
    now: Instant,
) {
    let st = deltas.entry(key).or_insert(DeltaState {
        acc: Acc::Hist {
            bounds: p.explicit_bounds.clone(),
            counts: vec![0; p.bucket_counts.len()],
            count: 0,
            sum: 0.0,
        },
        seen: now,
    });
    st.seen = now;
    if let Acc::Hist {
        bounds,
        counts,
        count,
        sum,
    } = &mut st.acc
    {
        if *bounds != p.explicit_bounds || counts.len() != p.bucket_counts.len() {
            // New bucket layout: start over from this point.
            *bounds = p.explicit_bounds.clone();
            *counts = vec![0; p.bucket_counts.len()];
            *count = 0;
            *sum = 0.0;
        }
        for (a, c) in counts.iter_mut().zip(&p.bucket_counts) {
            *a += c;
        }
        *count += p.count;
        *sum += p.sum.unwrap_or(0.0);
        p.bucket_counts = counts.clone();
        p.count = *count;
        p.sum = Some(*sum);
    }
}

/// An OTLP exponential histogram point as a Prometheus native histogram (integer counts). OTLP
/// bucket `i` covers `(base^i, base^(i+1)]`, Prometheus bucket `i` covers `(base^(i-1), base^i]`,
/// so indexes shift by one. Scales above Prometheus' maximum of 8 are merged down to 8.
pub fn native_histogram(p: &ExponentialHistogramDataPoint, ts: i64) -> pb::Histogram {
    let mut scale = p.scale;
    let mut pos = p.positive.clone().unwrap_or_default();
    let mut neg = p.negative.clone().unwrap_or_default();
    while scale > 8 {
        pos = downscale(pos);
        neg = downscale(neg);
        scale -= 1;
    }
    let (positive_spans, positive_deltas) = spans_and_deltas(&pos);
    let (negative_spans, negative_deltas) = spans_and_deltas(&neg);
    pb::Histogram {
        count: Some(pb::histogram::Count::CountInt(p.count)),
        sum: p.sum.unwrap_or(0.0),
        schema: scale.max(-4),
        zero_threshold: p.zero_threshold,
        zero_count: Some(pb::histogram::ZeroCount::ZeroCountInt(p.zero_count)),
        negative_spans,
        negative_deltas,
        positive_spans,
        positive_deltas,
        timestamp: ts,
        ..Default::default()
    }
}

type Buckets = opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;

fn downscale(b: Buckets) -> Buckets {
    if b.bucket_counts.is_empty() {
        return b;
    }
    let start = b.offset >> 1;
    let end = (b.offset + b.bucket_counts.len() as i32 - 1) >> 1;
    let mut counts = vec![0u64; (end - start + 1) as usize];
    for (i, c) in b.bucket_counts.iter().enumerate() {
        counts[(((b.offset + i as i32) >> 1) - start) as usize] += c;
    }
    Buckets {
        offset: start,
        bucket_counts: counts,
    }
}

fn spans_and_deltas(b: &Buckets) -> (Vec<pb::BucketSpan>, Vec<i64>) {
    let mut spans: Vec<pb::BucketSpan> = Vec::new();
    let mut deltas = Vec::new();
    let mut prev_count = 0i64;
    let mut next_index: Option<i32> = None;
    for (i, c) in b.bucket_counts.iter().enumerate() {
        if *c == 0 {
            continue;
        }
        let idx = b.offset + i as i32 + 1;
        match next_index {
            Some(n) if n == idx => spans.last_mut().expect("a span is open").length += 1,
            Some(n) => spans.push(pb::BucketSpan {
                offset: idx - n,
                length: 1,
            }),
            None => spans.push(pb::BucketSpan {
                offset: idx,
                length: 1,
            }),
        }
        next_index = Some(idx + 1);
        deltas.push(*c as i64 - prev_count);
        prev_count = *c as i64;
    }
    (spans, deltas)
}

/// Splits series into write requests of at most `max` encoded bytes.
fn requests(series: Vec<pb::TimeSeries>, max: usize) -> Vec<pb::WriteRequest> {
    let mut out = Vec::new();
    let mut cur = pb::WriteRequest::default();
    let mut size = 0;
    for s in series {
        let n = s.encoded_len() + 5;
        if size + n > max && !cur.timeseries.is_empty() {
            out.push(std::mem::take(&mut cur));
            size = 0;
        }
        size += n;
        cur.timeseries.push(s);
    }
    if !cur.timeseries.is_empty() {
        out.push(cur);
    }
    out
}

pub struct PrwSender {
    client: reqwest::Client,
    translator: Translator,
    dropped: prometheus_client::metrics::counter::Counter,
}

pub struct Writes {
    bodies: Vec<Bytes>,
    done: AtomicUsize,
}

impl Sender for PrwSender {
    type Request = Writes;

    fn encode(&self, batch: Batch) -> Result<Writes, SendError> {
        let Batch::Metrics(resources) = batch
            .into_decoded()
            .map_err(|e| SendError::Permanent(format!("undecodable batch: {e}")))?
        else {
            return Err(SendError::Permanent(
                "the prometheus_remote_write exporter takes metrics only".into(),
            ));
        };
        let out = self.translator.translate(&resources);
        if out.dropped_delta_points > 0 {
            self.dropped.inc_by(out.dropped_delta_points as u64);
            tracing::debug!(
                points = out.dropped_delta_points,
                "delta points dropped (not representable)"
            );
        }
        let mut bodies = Vec::new();
        for req in requests(out.series, self.translator.cfg.max_batch_size_bytes) {
            let body = snap::raw::Encoder::new()
                .compress_vec(&req.encode_to_vec())
                .map_err(|e| SendError::Permanent(format!("snappy: {e}")))?;
            bodies.push(Bytes::from(body));
        }
        Ok(Writes {
            bodies,
            done: AtomicUsize::new(0),
        })
    }

    fn send<'a>(&'a self, req: &'a Writes) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let url = &self.translator.cfg.endpoint;
            while let Some(body) = req.bodies.get(req.done.load(Ordering::Acquire)) {
                let resp = self
                    .client
                    .post(url)
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                    .header(http::header::CONTENT_ENCODING, "snappy")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| SendError::retryable(format!("POST {url}: {e}")))?;
                let status = resp.status();
                if !status.is_success() {
                    let headers = resp.headers().clone();
                    let text = resp.bytes().await.unwrap_or_default();
                    let detail = String::from_utf8_lossy(&text[..text.len().min(256)]).into_owned();
                    return Err(super::classify_http(
                        status,
                        &headers,
                        format!("POST {url}: HTTP {status}: {detail}"),
                    ));
                }
                req.done.fetch_add(1, Ordering::AcqRel);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;

    #[test]
    fn names_as_the_compatibility_spec_says() {
        assert_eq!(
            metric_name("http.server.duration", "ms", false, false, true, None),
            "http_server_duration_milliseconds"
        );
        assert_eq!(
            metric_name("requests", "1", true, false, true, None),
            "requests_total"
        );
        assert_eq!(
            metric_name("requests", "{request}", true, false, true, None),
            "requests_total"
        );
        assert_eq!(
            metric_name("cpu.utilization", "1", false, true, true, None),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            metric_name("net.io", "By/s", false, true, true, Some("app")),
            "app_net_io_bytes_per_second"
        );
        assert_eq!(
            metric_name("process.runtime.bytes", "By", false, true, true, None),
            "process_runtime_bytes"
        );
        assert_eq!(
            metric_name("errors_total", "1", true, false, true, None),
            "errors_total"
        );
        assert_eq!(
            metric_name("http.server.duration", "ms", false, false, false, None),
            "http_server_duration"
        );
        assert_eq!(label_name("http.method"), "http_method");
        assert_eq!(label_name("0day"), "key_0day");
    }

    #[test]
    fn config_validation() {
        let ok = parse(
            &yaml("endpoint: http://p:9090/api/v1/write\nadd_metric_suffixes: false\n").unwrap(),
        );
        assert!(ok.is_ok());
        let e = parse(
            &yaml("endpoint: http://p:9090/api/v1/write\nsending_queue:\n  num_consumers: 4\n")
                .unwrap(),
        )
        .err()
        .unwrap();
        assert_eq!(
            (e.path_string().as_str(), e.pos.unwrap().line),
            ("sending_queue.num_consumers", 3)
        );
        assert!(
            parse(&yaml("endpoint: http://p:1/x\nsending_queue:\n  batch:\n").unwrap()).is_ok()
        );
    }

    #[test]
    fn requests_split_by_size_and_keep_every_series() {
        let series: Vec<pb::TimeSeries> = (0..100)
            .map(|i| pb::TimeSeries {
                labels: vec![pb::Label {
                    name: "__name__".into(),
                    value: format!("m{i}"),
                }],
                samples: vec![pb::Sample {
                    value: 1.0,
                    timestamp: i,
                }],
                ..Default::default()
            })
            .collect();
        let reqs = requests(series, 1024);
        assert!(reqs.len() > 1);
        assert!(reqs.iter().all(|r| r.encoded_len() <= 1024));
        assert_eq!(reqs.iter().map(|r| r.timeseries.len()).sum::<usize>(), 100);
    }

    #[test]
    fn delta_sums_accumulate_per_series() {
        use opentelemetry_proto::tonic::metrics::v1::{Metric, ScopeMetrics, Sum};
        let cfg: Config = from_node(&yaml("endpoint: http://p:1/x\n").unwrap()).unwrap();
        let t = Translator::new(cfg);
        let delta = |v: i64, ts: u64| {
            vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "hits".into(),
                        data: Some(Data::Sum(Sum {
                            data_points: vec![NumberDataPoint {
                                time_unix_nano: ts,
                                value: Some(number_data_point::Value::AsInt(v)),
                                ..Default::default()
                            }],
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }]
        };
        let v1 = t.translate(&delta(3, 1_000_000)).series[0].samples[0].value;
        let v2 = t.translate(&delta(4, 2_000_000)).series[0].samples[0].value;
        assert_eq!((v1, v2), (3.0, 7.0));
        let mut cfg: Config =
            from_node(&yaml("endpoint: http://p:1/x\ndelta_temporality: drop\n").unwrap()).unwrap();
        cfg.target_info.enabled = false;
        let out = Translator::new(cfg).translate(&delta(3, 1_000_000));
        assert_eq!((out.series.len(), out.dropped_delta_points), (0, 1));
    }

    #[test]
    fn native_histogram_indexes_and_downscale() {
        let p = ExponentialHistogramDataPoint {
            scale: 1,
            count: 6,
            positive: Some(Buckets {
                offset: -1,
                bucket_counts: vec![1, 0, 2, 3],
            }),
            ..Default::default()
        };
        let h = native_histogram(&p, 5);
        // OTLP indexes -1, 1, 2 → Prometheus 0, 2, 3: a span at 0 of length 1, a gap of 1, then 2.
        assert_eq!(
            h.positive_spans,
            vec![
                pb::BucketSpan {
                    offset: 0,
                    length: 1
                },
                pb::BucketSpan {
                    offset: 1,
                    length: 2
                }
            ]
        );
        assert_eq!(h.positive_deltas, vec![1, 1, 1]);
        assert_eq!(h.schema, 1);
        let d = downscale(Buckets {
            offset: 3,
            bucket_counts: vec![1, 2, 3],
        });
        assert_eq!((d.offset, d.bucket_counts), (1, vec![1, 5]));
    }
}
