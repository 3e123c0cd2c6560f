//! The series a scrape shows: the latest value of each, delta input added up, forgotten after
//! `metric_expiration` without an update.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar as OtlpExemplar, ResourceMetrics, exemplar, metric::Data,
};

use crate::prom::{self, Label, Names, metric_name, naming, point_labels};

/// What a family is, for its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
    Summary,
    /// `target_info`: a gauge in the text format, `info` in OpenMetrics.
    Info,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    /// Per-bucket (not cumulative) counts; `counts` has one more entry than `bounds`.
    Histogram {
        bounds: Vec<f64>,
        counts: Vec<u64>,
        count: u64,
        sum: f64,
    },
    Summary {
        quantiles: Vec<(f64, f64)>,
        count: u64,
        sum: f64,
    },
}

/// An exemplar, its labels already in exposition form.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: String,
    pub value: f64,
    pub ts_ms: i64,
}

#[derive(Debug)]
pub struct Series {
    pub value: Value,
    /// The point's time, and its start time (0 when unknown), in ms.
    pub ts_ms: i64,
    pub start_ms: i64,
    pub updated: Instant,
    pub exemplars: Vec<Exemplar>,
}

#[derive(Debug)]
pub struct Family {
    pub kind: Kind,
    pub help: String,
    /// The unit word of the name (`seconds`), for OpenMetrics' `# UNIT` line.
    pub unit: Option<&'static str>,
    /// Series by their labels in exposition form (`a="1",b="2"`, sorted by name).
    pub series: HashMap<Box<str>, Series>,
}

/// How OTLP becomes series (the exporter's naming keys).
pub struct Rules {
    pub namespace: Option<String>,
    pub const_labels: std::collections::BTreeMap<String, String>,
    pub resource_to_telemetry: bool,
    pub suffixes: bool,
    pub scope_info: bool,
}

/// What one update did that the exporter counts.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Exponential histogram points: the text formats have no way to show them.
    pub exponential_dropped: usize,
}

#[derive(Default)]
pub struct Store {
    pub families: HashMap<String, Family>,
    /// Attribute key → label name, for keys that need rewriting (as the remote-write exporter).
    names: HashMap<String, String>,
}

/// Writes labels as `a="1",b="2"`, values escaped as both text formats want.
pub fn write_labels(labels: &[Label<'_>], out: &mut String) {
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&l.name);
        out.push_str("=\"");
        escape_value(&l.value, out);
        out.push('"');
    }
}

pub fn escape_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// OTLP exemplars with a trace as OpenMetrics exemplars (`trace_id`, `span_id`).
fn exemplars(list: &[OtlpExemplar]) -> Vec<Exemplar> {
    list.iter()
        .map(|e| {
            let mut labels = String::new();
            if !e.trace_id.is_empty() {
                let _ = write!(labels, "trace_id=\"{}\"", hex(&e.trace_id));
            }
            if !e.span_id.is_empty() {
                if !labels.is_empty() {
                    labels.push(',');
                }
                let _ = write!(labels, "span_id=\"{}\"", hex(&e.span_id));
            }
            Exemplar {
                labels,
                value: match e.value {
                    Some(exemplar::Value::AsDouble(d)) => d,
                    Some(exemplar::Value::AsInt(i)) => i as f64,
                    None => 0.0,
                },
                ts_ms: prom::millis(e.time_unix_nano),
            }
        })
        .collect()
}

impl Store {
    /// Forgets series not updated for `ttl`, and families left empty.
    pub fn expire(&mut self, now: Instant, ttl: Duration) {
        self.families.retain(|_, f| {
            f.series
                .retain(|_, s| now.saturating_duration_since(s.updated) < ttl);
            !f.series.is_empty()
        });
    }

    /// The family `name` as `kind`; a family that changed kind starts over.
    fn family(&mut self, name: &str, kind: Kind, help: &str, unit: &str) -> &mut Family {
        if self.families.get(name).is_some_and(|f| f.kind != kind) {
            tracing::debug!(
                metric = name,
                "metric changed type; its old series are dropped"
            );
            self.families.remove(name);
        }
        self.families
            .entry(name.to_owned())
            .or_insert_with(|| Family {
                kind,
                help: help.to_owned(),
                unit: naming::unit_word(unit.split('{').next().unwrap_or("").trim())
                    .filter(|w| name.trim_end_matches("_total").ends_with(&format!("_{w}"))),
                series: HashMap::new(),
            })
    }

    pub fn update(
        &mut self,
        rules: &Rules,
        resources: &[ResourceMetrics],
        now: Instant,
    ) -> Outcome {
        let mut out = Outcome::default();
        let known = std::mem::take(&mut self.names);
        let mut names = Names {
            known: &known,
            misses: Vec::new(),
        };
        let resource_rules = prom::ResourceRules {
            constant: &rules.const_labels,
            all_attributes: rules.resource_to_telemetry,
        };
        let (ns, sfx) = (rules.namespace.as_deref(), rules.suffixes);
        let mut key = String::new();
        for rm in resources {
            let res = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes);
            let base = prom::resource_labels(res, &resource_rules, &mut names);
            let mut any = false;
            for sm in &rm.scope_metrics {
                let scoped = prom::scope_labels(&base, sm.scope.as_ref(), rules.scope_info);
                let mut l: Vec<Label<'_>> = Vec::new();
                for m in &sm.metrics {
                    let Some(data) = &m.data else { continue };
                    let (kind, counter, gauge) = match data {
                        Data::Gauge(_) => (Kind::Gauge, false, true),
                        Data::Sum(s) if s.is_monotonic => (Kind::Counter, true, false),
                        Data::Sum(_) => (Kind::Gauge, false, true),
                        Data::Histogram(_) => (Kind::Histogram, false, false),
                        Data::Summary(_) => (Kind::Summary, false, false),
                        Data::ExponentialHistogram(e) => {
                            out.exponential_dropped += e.data_points.len();
                            continue;
                        }
                    };
                    let name = metric_name(&m.name, &m.unit, counter, gauge, sfx, ns);
                    let fam = self.family(&name, kind, &m.description, &m.unit);
                    match data {
                        Data::Gauge(g) => {
                            for p in &g.data_points {
                                point_labels(&mut l, &scoped, &mut names, &p.attributes);
                                key.clear();
                                write_labels(&l, &mut key);
                                any = true;
                                let point = Point {
                                    ts_ms: prom::millis(p.time_unix_nano),
                                    start_ms: 0,
                                    stale: p.flags & 1 == 1,
                                    delta: false,
                                    exemplars: &p.exemplars,
                                };
                                upsert(fam, &key, point, now, Value::Number(prom::number(p)));
                            }
                        }
                        Data::Sum(s) => {
                            let delta =
                                s.aggregation_temporality == AggregationTemporality::Delta as i32;
                            for p in &s.data_points {
                                point_labels(&mut l, &scoped, &mut names, &p.attributes);
                                key.clear();
                                write_labels(&l, &mut key);
                                any = true;
                                let point = Point {
                                    ts_ms: prom::millis(p.time_unix_nano),
                                    start_ms: prom::millis(p.start_time_unix_nano),
                                    stale: p.flags & 1 == 1,
                                    delta,
                                    exemplars: &p.exemplars,
                                };
                                upsert(fam, &key, point, now, Value::Number(prom::number(p)));
                            }
                        }
                        Data::Histogram(h) => {
                            let delta =
                                h.aggregation_temporality == AggregationTemporality::Delta as i32;
                            for p in &h.data_points {
                                point_labels(&mut l, &scoped, &mut names, &p.attributes);
                                key.clear();
                                write_labels(&l, &mut key);
                                any = true;
                                let mut counts = p.bucket_counts.clone();
                                // A point without buckets is one `+Inf` bucket.
                                counts.resize(p.explicit_bounds.len() + 1, 0);
                                if p.bucket_counts.is_empty() {
                                    counts[p.explicit_bounds.len()] = p.count;
                                }
                                let point = Point {
                                    ts_ms: prom::millis(p.time_unix_nano),
                                    start_ms: prom::millis(p.start_time_unix_nano),
                                    stale: p.flags & 1 == 1,
                                    delta,
                                    exemplars: &p.exemplars,
                                };
                                let value = Value::Histogram {
                                    bounds: p.explicit_bounds.clone(),
                                    counts,
                                    count: p.count,
                                    sum: p.sum.unwrap_or(0.0),
                                };
                                upsert(fam, &key, point, now, value);
                            }
                        }
                        Data::Summary(s) => {
                            for p in &s.data_points {
                                point_labels(&mut l, &scoped, &mut names, &p.attributes);
                                key.clear();
                                write_labels(&l, &mut key);
                                any = true;
                                let point = Point {
                                    ts_ms: prom::millis(p.time_unix_nano),
                                    start_ms: prom::millis(p.start_time_unix_nano),
                                    stale: p.flags & 1 == 1,
                                    delta: false,
                                    exemplars: &[],
                                };
                                let value = Value::Summary {
                                    quantiles: p
                                        .quantile_values
                                        .iter()
                                        .map(|q| (q.quantile, q.value))
                                        .collect(),
                                    count: p.count,
                                    sum: p.sum,
                                };
                                upsert(fam, &key, point, now, value);
                            }
                        }
                        Data::ExponentialHistogram(_) => {}
                    }
                }
            }
            if any && let Some(info) = prom::target_info_labels(&base, res, &mut names) {
                key.clear();
                write_labels(&info, &mut key);
                let name = prom::target_info_name(ns);
                let fam = self.family(&name, Kind::Info, "Target metadata", "");
                let point = Point {
                    ts_ms: 0,
                    start_ms: 0,
                    stale: false,
                    delta: false,
                    exemplars: &[],
                };
                upsert(fam, &key, point, now, Value::Number(1.0));
            }
        }
        let Names { misses, .. } = names;
        let mut known = known;
        for k in misses {
            if known.len() < naming::MAX_NAMES {
                let n = prom::label_name(&k).into_owned();
                known.insert(k, n);
            }
        }
        self.names = known;
        out
    }
}

struct Point<'a> {
    ts_ms: i64,
    start_ms: i64,
    /// Flagged "no recorded value": the series is gone.
    stale: bool,
    delta: bool,
    exemplars: &'a [OtlpExemplar],
}

/// Sets a series to a point: replaced by a cumulative point no older than what it has, added to
/// by a delta point (a histogram whose buckets changed starts over).
fn upsert(fam: &mut Family, key: &str, p: Point<'_>, now: Instant, value: Value) {
    if p.stale {
        fam.series.remove(key);
        return;
    }
    let ex = exemplars(p.exemplars);
    let Some(s) = fam.series.get_mut(key) else {
        fam.series.insert(
            key.into(),
            Series {
                value,
                ts_ms: p.ts_ms,
                start_ms: p.start_ms,
                updated: now,
                exemplars: ex,
            },
        );
        return;
    };
    if !p.delta {
        if p.ts_ms < s.ts_ms {
            return;
        }
        s.value = value;
        s.start_ms = p.start_ms;
    } else {
        match (&mut s.value, value) {
            (Value::Number(acc), Value::Number(v)) => *acc += v,
            (
                Value::Histogram {
                    bounds,
                    counts,
                    count,
                    sum,
                },
                Value::Histogram {
                    bounds: nb,
                    counts: nc,
                    count: n,
                    sum: ns,
                },
            ) if *bounds == nb => {
                for (a, c) in counts.iter_mut().zip(&nc) {
                    *a += c;
                }
                *count += n;
                *sum += ns;
            }
            (slot, v) => {
                *slot = v;
                s.start_ms = p.start_ms;
            }
        }
    }
    s.ts_ms = s.ts_ms.max(p.ts_ms);
    s.updated = now;
    if !ex.is_empty() {
        s.exemplars = ex;
    }
}
