//! `spanmetrics` connector (alias `span_metrics`): the RED metrics of the spans that pass, per
//! resource and per dimensions — `<namespace>.calls` (a monotonic sum) and
//! `<namespace>.duration` (an explicit-bucket histogram, or exponential with
//! `histogram.exponential`) with `service.name`, `span.name`, `span.kind` and `status.code`
//! (less `exclude_dimensions`) and the configured `dimensions` (the span's attribute, else its
//! resource's, else the dimension's `default`; omitted without one), and on request
//! `<namespace>.events` per span event. Kept in memory and sent every `metrics_flush_interval`,
//! cumulative (default) or delta; a series not updated for `metrics_expiration` is dropped.
//! `aggregation_cardinality_limit` bounds the series per resource: past it, spans are counted
//! in one overflow series marked `otel.metric.overflow: true`, so memory stays bounded however
//! many distinct values arrive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::component::{
    BoxFuture, BuildError, ConnectorConfig, ConsumeResult, Consumer, Context, Downstream,
    DynConsumer, Exporter, Factory, FanOut, Lifecycle, Stability,
};
use crate::config::{DeError, Node, from_node, key_err, units};
use crate::signal::exphist::{ExpBuckets, MAX_SCALE};
use crate::signal::value::{find, string_kv, text};
use crate::signal::{Batch, Signal};

pub const FACTORY: Factory = Factory::connector(
    "spanmetrics",
    crate::signal::TRACES,
    &[(Signal::Traces, Signal::Metrics)],
    Stability::Alpha,
    parse,
)
.aliases(&["span_metrics"]);

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    pub name: String,
    #[serde(default)]
    pub default: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Explicit {
    /// Bucket bounds as durations (`2ms`, `1s`). Default 2, 4, 6, 8, 10, 50, 100, 200, 400,
    /// 800, 1000, 1400, 2000, 5000, 10000, 15000 ms.
    #[serde(default)]
    pub buckets: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Exponential {
    /// Buckets per sign at most. Default 160.
    #[serde(default)]
    pub max_size: Option<i32>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HistogramConfig {
    pub disable: bool,
    /// `ms` (default) or `s`.
    pub unit: Option<String>,
    pub explicit: Option<Explicit>,
    pub exponential: Option<Exponential>,
    /// Dimensions of the duration histogram only.
    pub dimensions: Vec<Dimension>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Exemplars {
    pub enabled: bool,
    pub max_per_data_point: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Events {
    pub enabled: bool,
    pub dimensions: Vec<Dimension>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub dimensions: Vec<Dimension>,
    /// Dimensions of the calls metric only.
    pub calls_dimensions: Vec<Dimension>,
    pub exclude_dimensions: Vec<String>,
    /// The resource attributes that tell resources apart (default: all of them).
    pub resource_metrics_key_attributes: Vec<String>,
    /// `AGGREGATION_TEMPORALITY_CUMULATIVE` (default) or `AGGREGATION_TEMPORALITY_DELTA`.
    pub aggregation_temporality: Option<String>,
    pub histogram: HistogramConfig,
    /// How often the metrics are sent. Default 60s.
    #[serde(deserialize_with = "units::opt_duration")]
    pub metrics_flush_interval: Option<Duration>,
    /// A series not updated this long is dropped. Default 0: never.
    #[serde(deserialize_with = "units::opt_duration")]
    pub metrics_expiration: Option<Duration>,
    /// `<namespace>.calls`, ... Default `traces.span.metrics`.
    pub namespace: Option<String>,
    pub exemplars: Exemplars,
    pub events: Events,
    /// Only spans of these instrumentation scopes (default: all).
    pub include_instrumentation_scope: Vec<String>,
    /// Series per resource at most; 0 (default) for no limit.
    pub aggregation_cardinality_limit: usize,
    /// Accepted: the Collector's older cache sizes (the cardinality limit bounds memory here).
    pub dimensions_cache_size: Option<usize>,
    pub resource_metrics_cache_size: Option<usize>,
    pub metric_timestamp_cache_size: Option<usize>,
}

const DEFAULT_BUCKETS_MS: [f64; 16] = [
    2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0, 5000.0,
    10_000.0, 15_000.0,
];

const BUILT_IN: [&str; 4] = ["service.name", "span.name", "span.kind", "status.code"];

/// The compiled config.
pub struct Plan {
    namespace: String,
    built_in: Vec<&'static str>,
    dimensions: Vec<Dimension>,
    calls_dimensions: Vec<Dimension>,
    histogram_dimensions: Vec<Dimension>,
    events: Option<Vec<Dimension>>,
    key_attributes: Vec<String>,
    delta: bool,
    histogram: Option<HistogramKind>,
    /// Seconds per unit of the duration (`ms`: 1e-3 → values in ms).
    unit: &'static str,
    per_second: f64,
    flush: Duration,
    expiration: Option<Duration>,
    exemplars: Option<usize>,
    scopes: Vec<String>,
    limit: usize,
}

#[derive(Clone)]
enum HistogramKind {
    Explicit(Vec<f64>),
    Exponential(i32),
}

fn compile(cfg: &Config, node: &Node) -> Result<Plan, DeError> {
    let unit = match cfg.histogram.unit.as_deref().unwrap_or("ms") {
        "ms" => ("ms", 1000.0),
        "s" => ("s", 1.0),
        other => {
            return Err(key_err(
                node,
                &["histogram", "unit"],
                format!("{other:?}: expected ms or s"),
            ));
        }
    };
    let mut seen: Vec<&str> = BUILT_IN.to_vec();
    for (i, d) in cfg.dimensions.iter().enumerate() {
        if seen.contains(&d.name.as_str()) {
            return Err(key_err(
                node,
                &["dimensions", &format!("[{i}]"), "name"],
                format!("duplicate dimension name {}", d.name),
            ));
        }
        seen.push(&d.name);
    }
    if cfg.events.enabled && cfg.events.dimensions.is_empty() {
        return Err(key_err(
            node,
            &["events", "dimensions"],
            "no dimensions configured for events",
        ));
    }
    let histogram = match (&cfg.histogram.explicit, &cfg.histogram.exponential) {
        (Some(_), Some(_)) => {
            return Err(key_err(
                node,
                &["histogram"],
                "use either `explicit` or `exponential` buckets histogram",
            ));
        }
        _ if cfg.histogram.disable => None,
        (None, Some(e)) => Some(HistogramKind::Exponential(e.max_size.unwrap_or(160).max(1))),
        (Some(e), None) if !e.buckets.is_empty() => {
            let mut b = Vec::new();
            for (i, t) in e.buckets.iter().enumerate() {
                let d = units::parse_duration(t).map_err(|m| {
                    key_err(
                        node,
                        &["histogram", "explicit", "buckets", &format!("[{i}]")],
                        m,
                    )
                })?;
                b.push(d.as_secs_f64() * unit.1);
            }
            Some(HistogramKind::Explicit(b))
        }
        _ => Some(HistogramKind::Explicit(
            DEFAULT_BUCKETS_MS
                .iter()
                .map(|ms| ms / 1000.0 * unit.1)
                .collect(),
        )),
    };
    let delta = match cfg.aggregation_temporality.as_deref() {
        None | Some("AGGREGATION_TEMPORALITY_CUMULATIVE") => false,
        Some("AGGREGATION_TEMPORALITY_DELTA") => true,
        Some(other) => {
            return Err(key_err(
                node,
                &["aggregation_temporality"],
                format!(
                    "{other:?}: expected AGGREGATION_TEMPORALITY_CUMULATIVE or AGGREGATION_TEMPORALITY_DELTA"
                ),
            ));
        }
    };
    Ok(Plan {
        namespace: cfg
            .namespace
            .clone()
            .unwrap_or_else(|| "traces.span.metrics".into()),
        built_in: BUILT_IN
            .iter()
            .copied()
            .filter(|d| !cfg.exclude_dimensions.iter().any(|e| e == d))
            .collect(),
        dimensions: cfg.dimensions.clone(),
        calls_dimensions: cfg.calls_dimensions.clone(),
        histogram_dimensions: cfg.histogram.dimensions.clone(),
        events: cfg.events.enabled.then(|| cfg.events.dimensions.clone()),
        key_attributes: cfg.resource_metrics_key_attributes.clone(),
        delta,
        histogram,
        unit: unit.0,
        per_second: unit.1,
        flush: cfg
            .metrics_flush_interval
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(60)),
        expiration: cfg.metrics_expiration.filter(|d| !d.is_zero()),
        exemplars: cfg
            .exemplars
            .enabled
            .then(|| cfg.exemplars.max_per_data_point.unwrap_or(5)),
        scopes: cfg.include_instrumentation_scope.clone(),
        limit: cfg.aggregation_cardinality_limit,
    })
}

pub fn parse(node: &Node) -> Result<Box<dyn ConnectorConfig>, DeError> {
    let cfg: Config = if node.is_null() {
        Config::default()
    } else {
        from_node(node)?
    };
    Ok(Box::new(Arc::new(compile(&cfg, node)?)))
}

/// One series' aggregate since its start (cumulative) or the last flush (delta).
#[derive(Default, Clone)]
struct Series {
    calls: u64,
    count: u64,
    sum: f64,
    /// Explicit: one count per bucket plus the overflow bucket.
    buckets: Vec<u64>,
    /// Exponential: positive durations, at the finest scale that fits `max_size` buckets.
    exp: Option<ExpBuckets>,
    zero: u64,
    start: u64,
    last: u64,
    exemplars: Vec<(Vec<u8>, Vec<u8>, f64, u64)>,
}

#[derive(Default)]
struct ResourceState {
    resource: Vec<KeyValue>,
    /// By dimension values: calls/duration share the common dimensions; the calls- and
    /// histogram-only dimensions make their own keys.
    calls: HashMap<Vec<(String, String)>, Series>,
    durations: HashMap<Vec<(String, String)>, Series>,
    events: HashMap<Vec<(String, String)>, Series>,
}

struct SpanMetrics {
    plan: Arc<Plan>,
    state: Mutex<HashMap<u64, ResourceState>>,
    next: DynConsumer,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    id: String,
    overflowed: prometheus_client::metrics::counter::Counter,
}

impl ConnectorConfig for Arc<Plan> {
    fn build(
        &self,
        ctx: Context,
        _from: Signal,
        _to: Signal,
        next: Vec<Downstream>,
    ) -> Result<Arc<dyn Exporter>, BuildError> {
        let overflowed = ctx
            .telemetry
            .spanmetrics_overflow
            .get_or_create(&crate::telemetry::ProcessorLabels {
                processor: ctx.id.to_string(),
                pipeline: ctx.pipeline.clone(),
                otel_signal: Signal::Traces.to_string(),
            })
            .clone();
        let sm = Arc::new(SpanMetrics {
            plan: Arc::clone(self),
            state: Mutex::new(HashMap::new()),
            next: FanOut::build(next.into_iter().map(|d| d.head).collect()),
            stop: CancellationToken::new(),
            task: Mutex::new(None),
            id: ctx.id.to_string(),
            overflowed,
        });
        let weak = Arc::downgrade(&sm);
        let (stop, every) = (sm.stop.clone(), self.flush);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Some(sm) = weak.upgrade() else { return };
                sm.flush().await;
            }
        });
        *sm.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(sm)
    }
}

fn kind_name(k: i32) -> &'static str {
    match k {
        1 => "SPAN_KIND_INTERNAL",
        2 => "SPAN_KIND_SERVER",
        3 => "SPAN_KIND_CLIENT",
        4 => "SPAN_KIND_PRODUCER",
        5 => "SPAN_KIND_CONSUMER",
        _ => "SPAN_KIND_UNSPECIFIED",
    }
}

fn status_name(c: i32) -> &'static str {
    match c {
        1 => "STATUS_CODE_OK",
        2 => "STATUS_CODE_ERROR",
        _ => "STATUS_CODE_UNSET",
    }
}

fn resource_key(attrs: &[KeyValue], only: &[String]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut pairs: Vec<(&str, String)> = attrs
        .iter()
        .filter(|kv| only.is_empty() || only.contains(&kv.key))
        .map(|kv| {
            (
                kv.key.as_str(),
                crate::signal::value::option_text(&kv.value).into_owned(),
            )
        })
        .collect();
    pairs.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    pairs.hash(&mut h);
    h.finish()
}

impl SpanMetrics {
    fn dims(
        &self,
        extra: &[&[Dimension]],
        base: &[(String, String)],
        span_attrs: &[KeyValue],
        res: &[KeyValue],
    ) -> Vec<(String, String)> {
        let mut out = base.to_vec();
        for d in extra.iter().flat_map(|x| x.iter()) {
            let v = find(span_attrs, &d.name)
                .or_else(|| find(res, &d.name))
                .map(|v| text(v).into_owned())
                .or_else(|| d.default.clone());
            if let Some(v) = v {
                out.push((d.name.clone(), v));
            }
        }
        out
    }

    /// The series of `key` in `map`, or the overflow series once `map` is at the limit (each
    /// span counted once, by its calls series: `count`).
    fn series<'m>(
        &self,
        map: &'m mut HashMap<Vec<(String, String)>, Series>,
        key: Vec<(String, String)>,
        now: u64,
        count: bool,
    ) -> &'m mut Series {
        let limit = self.plan.limit;
        let key = if limit > 0 && map.len() >= limit && !map.contains_key(&key) {
            if count {
                self.overflowed.inc();
            }
            vec![("otel.metric.overflow".to_string(), "true".to_string())]
        } else {
            key
        };
        let nb = match &self.plan.histogram {
            Some(HistogramKind::Explicit(b)) => b.len() + 1,
            _ => 0,
        };
        map.entry(key).or_insert_with(|| Series {
            buckets: vec![0; nb],
            start: now,
            ..Default::default()
        })
    }

    fn record(&self, res: &[KeyValue], span: &Span, now: u64, rs: &mut ResourceState) {
        let p = &self.plan;
        let mut base: Vec<(String, String)> = Vec::with_capacity(4 + p.dimensions.len());
        for d in &p.built_in {
            let v = match *d {
                "service.name" => crate::signal::value::find_str(res, "service.name")
                    .unwrap_or("")
                    .to_owned(),
                "span.name" => span.name.clone(),
                "span.kind" => kind_name(span.kind).into(),
                _ => status_name(span.status.as_ref().map_or(0, |s| s.code)).into(),
            };
            base.push(((*d).into(), v));
        }
        let common = self.dims(&[&p.dimensions], &base, &span.attributes, res);
        let duration = span
            .end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano) as f64
            / 1e9
            * p.per_second;
        let calls_key = self.dims(&[&p.calls_dimensions], &common, &span.attributes, res);
        let s = self.series(&mut rs.calls, calls_key, now, true);
        s.calls += 1;
        s.last = now;
        if let Some(kind) = &p.histogram {
            let key = self.dims(&[&p.histogram_dimensions], &common, &span.attributes, res);
            let s = self.series(&mut rs.durations, key, now, false);
            s.count += 1;
            s.sum += duration;
            s.last = now;
            match kind {
                HistogramKind::Explicit(bounds) => {
                    let i = bounds.partition_point(|b| *b < duration);
                    s.buckets[i] += 1;
                }
                HistogramKind::Exponential(max) => {
                    if duration <= 0.0 {
                        s.zero += 1;
                    } else {
                        s.exp
                            .get_or_insert_with(|| ExpBuckets::new(*max as usize))
                            .record(duration);
                    }
                }
            }
            if let Some(max) = p.exemplars
                && s.exemplars.len() < max
            {
                s.exemplars
                    .push((span.trace_id.clone(), span.span_id.clone(), duration, now));
            }
        }
        if let Some(dims) = &p.events {
            for ev in &span.events {
                let mut key = common.clone();
                for d in dims {
                    let v = find(&ev.attributes, &d.name)
                        .map(|v| text(v).into_owned())
                        .or_else(|| d.default.clone());
                    if let Some(v) = v {
                        key.push((d.name.clone(), v));
                    }
                }
                let s = self.series(&mut rs.events, key, now, false);
                s.calls += 1;
                s.last = now;
            }
        }
    }

    fn aggregate(&self, batch: &Batch) {
        let Batch::Traces(rs) = batch else { return };
        let now = crate::component::now_nanos();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for r in rs {
            let res = r.resource.as_ref().map_or(&[][..], |x| &x.attributes[..]);
            let key = resource_key(res, &self.plan.key_attributes);
            let st = state.entry(key).or_insert_with(|| ResourceState {
                resource: res.to_vec(),
                ..Default::default()
            });
            for ss in &r.scope_spans {
                if !self.plan.scopes.is_empty()
                    && !ss
                        .scope
                        .as_ref()
                        .is_some_and(|s| self.plan.scopes.contains(&s.name))
                {
                    continue;
                }
                for span in &ss.spans {
                    self.record(res, span, now, st);
                }
            }
        }
    }

    /// The metrics held, as one batch; with delta temporality the state starts over.
    fn collect(&self) -> Vec<ResourceMetrics> {
        let now = crate::component::now_nanos();
        let p = &self.plan;
        let temporality = if p.delta {
            AggregationTemporality::Delta
        } else {
            AggregationTemporality::Cumulative
        } as i32;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(exp) = p.expiration {
            let cutoff = now.saturating_sub(exp.as_nanos() as u64);
            for rs in state.values_mut() {
                rs.calls.retain(|_, s| s.last >= cutoff);
                rs.durations.retain(|_, s| s.last >= cutoff);
                rs.events.retain(|_, s| s.last >= cutoff);
            }
            state.retain(|_, rs| !rs.calls.is_empty());
        }
        let attrs = |k: &[(String, String)]| -> Vec<KeyValue> {
            k.iter()
                .map(|(a, v)| {
                    if a == "otel.metric.overflow" {
                        KeyValue {
                            key: a.clone(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::BoolValue(true)),
                            }),
                            ..Default::default()
                        }
                    } else {
                        string_kv(a, v)
                    }
                })
                .collect()
        };
        let mut out = Vec::new();
        for rs in state.values_mut() {
            let mut metrics = Vec::new();
            let sum_of =
                |m: &HashMap<Vec<(String, String)>, Series>, name: String, unit: &str| Metric {
                    name,
                    unit: unit.into(),
                    data: Some(Data::Sum(Sum {
                        data_points: m
                            .iter()
                            .map(|(k, s)| NumberDataPoint {
                                attributes: attrs(k),
                                start_time_unix_nano: s.start,
                                time_unix_nano: now,
                                value: Some(number_data_point::Value::AsInt(s.calls as i64)),
                                ..Default::default()
                            })
                            .collect(),
                        aggregation_temporality: temporality,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                };
            if !rs.calls.is_empty() {
                metrics.push(sum_of(
                    &rs.calls,
                    format!("{}.calls", p.namespace),
                    "{call}",
                ));
            }
            if !rs.durations.is_empty() {
                let name = format!("{}.duration", p.namespace);
                let ex = |s: &Series| {
                    s.exemplars
                        .iter()
                        .map(|(t, sp, v, at)| opentelemetry_proto::tonic::metrics::v1::Exemplar {
                            trace_id: t.clone(),
                            span_id: sp.clone(),
                            time_unix_nano: *at,
                            value: Some(
                                opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsDouble(*v),
                            ),
                            ..Default::default()
                        })
                        .collect()
                };
                let data = match &p.histogram {
                    Some(HistogramKind::Explicit(bounds)) => Data::Histogram(Histogram {
                        data_points: rs
                            .durations
                            .iter()
                            .map(|(k, s)| HistogramDataPoint {
                                attributes: attrs(k),
                                start_time_unix_nano: s.start,
                                time_unix_nano: now,
                                count: s.count,
                                sum: Some(s.sum),
                                bucket_counts: s.buckets.clone(),
                                explicit_bounds: bounds.clone(),
                                exemplars: ex(s),
                                ..Default::default()
                            })
                            .collect(),
                        aggregation_temporality: temporality,
                    }),
                    _ => Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: rs
                            .durations
                            .iter()
                            .map(|(k, s)| {
                                let (scale, offset, counts) = match &s.exp {
                                    Some(h) => {
                                        let (offset, counts) = h.buckets();
                                        (h.scale(), offset, counts.to_vec())
                                    }
                                    None => (MAX_SCALE, 0, Vec::new()),
                                };
                                ExponentialHistogramDataPoint {
                                    attributes: attrs(k),
                                    start_time_unix_nano: s.start,
                                    time_unix_nano: now,
                                    count: s.count,
                                    sum: Some(s.sum),
                                    scale,
                                    zero_count: s.zero,
                                    positive: Some(Buckets {
                                        offset,
                                        bucket_counts: counts,
                                    }),
                                    exemplars: ex(s),
                                    ..Default::default()
                                }
                            })
                            .collect(),
                        aggregation_temporality: temporality,
                    }),
                };
                metrics.push(Metric {
                    name,
                    unit: p.unit.into(),
                    data: Some(data),
                    ..Default::default()
                });
            }
            if !rs.events.is_empty() {
                metrics.push(sum_of(
                    &rs.events,
                    format!("{}.events", p.namespace),
                    "{event}",
                ));
            }
            if p.delta {
                rs.calls.clear();
                rs.durations.clear();
                rs.events.clear();
            } else {
                // Exemplars describe one interval.
                rs.durations.values_mut().for_each(|s| s.exemplars.clear());
            }
            if metrics.is_empty() {
                continue;
            }
            out.push(ResourceMetrics {
                resource: Some(Resource {
                    attributes: rs.resource.clone(),
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "spanmetricsconnector".into(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        out
    }

    async fn flush(&self) {
        let batch = self.collect();
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.next.consume(Batch::Metrics(batch)).await {
            tracing::warn!(connector = %self.id, error = %e, "span metrics refused downstream");
        }
    }
}

impl Consumer for SpanMetrics {
    fn consume(&self, batch: Batch) -> BoxFuture<'_, ConsumeResult> {
        Box::pin(async move {
            let batch = super::shared::decoded(batch, &self.id)?;
            self.aggregate(&batch);
            Ok(())
        })
    }
}

impl Lifecycle for SpanMetrics {
    fn shutdown(&self, deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stop.cancel();
            let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(t) = task {
                let _ = tokio::time::timeout_at(deadline, t).await;
            }
            // What was aggregated since the last flush goes out before the pipelines it feeds
            // stop.
            let _ = tokio::time::timeout_at(deadline, self.flush()).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;
    use crate::signal::testdata::kv;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

    fn sm(y: &str) -> SpanMetrics {
        let node = yaml(y).unwrap();
        let cfg: Config = if node.is_null() {
            Config::default()
        } else {
            from_node(&node).unwrap()
        };
        struct Nothing;
        impl Consumer for Nothing {
            fn consume(&self, _: Batch) -> BoxFuture<'_, ConsumeResult> {
                Box::pin(async { Ok(()) })
            }
        }
        SpanMetrics {
            plan: Arc::new(compile(&cfg, &node).unwrap()),
            state: Mutex::new(HashMap::new()),
            next: Arc::new(Nothing),
            stop: CancellationToken::new(),
            task: Mutex::new(None),
            id: "spanmetrics".into(),
            overflowed: Default::default(),
        }
    }

    fn spans(service: &str, list: Vec<(&str, i32, i32, u64, Vec<KeyValue>)>) -> Batch {
        Batch::Traces(vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: list
                    .into_iter()
                    .map(|(name, kind, code, ms, attributes)| Span {
                        name: name.into(),
                        kind,
                        status: Some(Status {
                            code,
                            ..Default::default()
                        }),
                        start_time_unix_nano: 1_000_000_000,
                        end_time_unix_nano: 1_000_000_000 + ms * 1_000_000,
                        attributes,
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn metric<'a>(rm: &'a [ResourceMetrics], name: &str) -> &'a Metric {
        rm.iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name}"))
    }

    fn key(attrs: &[KeyValue]) -> String {
        let mut v: Vec<String> = attrs
            .iter()
            .map(|a| format!("{}={}", a.key, crate::signal::value::option_text(&a.value)))
            .collect();
        v.sort();
        v.join(",")
    }

    #[test]
    fn calls_and_durations_per_dimension_set_cumulative() {
        let c = sm("dimensions: [{name: http.route, default: none}]\n");
        c.aggregate(&spans(
            "shop",
            vec![
                ("GET", 2, 0, 3, vec![kv("http.route", "/a")]),
                ("GET", 2, 0, 120, vec![kv("http.route", "/a")]),
                ("GET", 2, 2, 20_000, vec![]),
            ],
        ));
        let rm = c.collect();
        let Some(Data::Sum(calls)) = &metric(&rm, "traces.span.metrics.calls").data else {
            panic!()
        };
        assert_eq!(
            calls.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let mut got: Vec<(String, i64)> = calls
            .data_points
            .iter()
            .map(|p| {
                (
                    key(&p.attributes),
                    match p.value {
                        Some(number_data_point::Value::AsInt(i)) => i,
                        _ => -1,
                    },
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("http.route=/a,service.name=shop,span.kind=SPAN_KIND_SERVER,span.name=GET,status.code=STATUS_CODE_UNSET".into(), 2),
                ("http.route=none,service.name=shop,span.kind=SPAN_KIND_SERVER,span.name=GET,status.code=STATUS_CODE_ERROR".into(), 1),
            ]
        );
        let d = metric(&rm, "traces.span.metrics.duration");
        assert_eq!(d.unit, "ms");
        let Some(Data::Histogram(h)) = &d.data else {
            panic!()
        };
        let a = h
            .data_points
            .iter()
            .find(|p| key(&p.attributes).contains("/a"))
            .unwrap();
        assert_eq!((a.count, a.sum), (2, Some(123.0)));
        // 3 ms in (2, 4]; 120 ms in (100, 200].
        assert_eq!(a.bucket_counts[1], 1);
        assert_eq!(a.bucket_counts[7], 1);
        assert_eq!(a.bucket_counts.len(), 17);
        let e = h
            .data_points
            .iter()
            .find(|p| key(&p.attributes).contains("none"))
            .unwrap();
        assert_eq!(e.bucket_counts[16], 1, "20 s past the last bound");
        // Cumulative: the next collection still holds them.
        let again = c.collect();
        let Some(Data::Sum(calls)) = &metric(&again, "traces.span.metrics.calls").data else {
            panic!()
        };
        assert_eq!(calls.data_points.len(), 2);
    }

    #[test]
    fn delta_starts_over_and_the_cardinality_limit_overflows() {
        let c = sm(
            "aggregation_temporality: AGGREGATION_TEMPORALITY_DELTA\naggregation_cardinality_limit: 2\nexclude_dimensions: [span.kind]\nhistogram: {disable: true}\n",
        );
        let names = ["a", "b", "c", "d", "e"];
        c.aggregate(&spans(
            "svc",
            names.iter().map(|n| (*n, 1, 0, 1, vec![])).collect(),
        ));
        let rm = c.collect();
        let Some(Data::Sum(calls)) = &metric(&rm, "traces.span.metrics.calls").data else {
            panic!()
        };
        assert_eq!(
            calls.aggregation_temporality,
            AggregationTemporality::Delta as i32
        );
        assert_eq!(calls.data_points.len(), 3, "two series and the overflow");
        let over = calls
            .data_points
            .iter()
            .find(|p| p.attributes.iter().any(|a| a.key == "otel.metric.overflow"))
            .unwrap();
        assert_eq!(over.value, Some(number_data_point::Value::AsInt(3)));
        assert!(!key(&calls.data_points[0].attributes).contains("span.kind"));
        assert!(
            rm.iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .all(|m| !m.name.ends_with(".duration"))
        );
        assert!(c.collect().is_empty(), "delta: nothing new, nothing sent");
    }

    #[test]
    fn exponential_histogram_and_config_errors() {
        let c = sm("histogram: {exponential: {max_size: 10}, unit: s}\nnamespace: red\n");
        c.aggregate(&spans(
            "svc",
            vec![("x", 1, 0, 500, vec![]), ("x", 1, 0, 2000, vec![])],
        ));
        let rm = c.collect();
        let d = metric(&rm, "red.duration");
        assert_eq!(d.unit, "s");
        let Some(Data::ExponentialHistogram(h)) = &d.data else {
            panic!()
        };
        let p = &h.data_points[0];
        assert_eq!((p.count, p.sum), (2, Some(2.5)));
        let b = p.positive.as_ref().unwrap();
        assert_eq!(b.bucket_counts.iter().sum::<u64>(), 2);
        // 0.5 s and 2 s are 2^-1 and 2^1, the upper bounds of buckets -2^s - 1 and 2^s - 1:
        // max_size 10 first fits at scale 2 (buckets -5..=3).
        assert_eq!((p.scale, b.offset, b.bucket_counts.len()), (2, -5, 9));
        let e = |y: &str| {
            let node = yaml(y).unwrap();
            let cfg: Config = from_node(&node).unwrap();
            compile(&cfg, &node).err().map(|e| e.path_string())
        };
        assert_eq!(
            e("dimensions: [{name: span.name}]\n").as_deref(),
            Some("dimensions[0].name")
        );
        assert_eq!(
            e("histogram: {explicit: {}, exponential: {}}\n").as_deref(),
            Some("histogram")
        );
        assert_eq!(
            e("histogram: {unit: us}\n").as_deref(),
            Some("histogram.unit")
        );
        assert_eq!(
            e("events: {enabled: true}\n").as_deref(),
            Some("events.dimensions")
        );
        assert_eq!(
            e("aggregation_temporality: DELTA\n").as_deref(),
            Some("aggregation_temporality")
        );
        assert_eq!(
            e("histogram: {explicit: {buckets: [10ms, x]}}\n").as_deref(),
            Some("histogram.explicit.buckets[1]")
        );
    }
}
