//! `cumulativetodelta` processor (alias `cumulative_to_delta`): monotonic cumulative sums and
//! cumulative histograms become delta, per stream (resource, scope, metric, attributes): each
//! point carries the change since the stream's previous point, which is its start time. A value
//! below the previous one is a reset: the point carries its own value. A point no newer than
//! the previous one is dropped. The first point of a stream: `initial_value` `auto` (default:
//! kept when its start time is after the collector started, else dropped), `keep` or `drop`.
//! `include` / `exclude` choose metrics by name (`strict` or `regexp`) and `metric_types`.
//! Streams not seen for `max_staleness` (default 0: never) are forgotten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ResourceMetrics, metric::Data, number_data_point,
};
use serde::Deserialize;

use super::{InPlace, Transform};
use crate::component::{
    BuildError, Context, DynConsumer, Factory, Processor, ProcessorConfig, Stability,
};
use crate::config::{DeError, Node, from_node, key_err, units};
use crate::signal::stream::{metric_prefix, point_key};
use crate::signal::{Batch, Signal};

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum InitialValue {
    #[default]
    Auto,
    Keep,
    Drop,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    #[default]
    Strict,
    Regexp,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricFilter {
    pub metrics: Vec<String>,
    pub match_type: Option<MatchType>,
    /// `sum`, `histogram`.
    pub metric_types: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub include: Option<MetricFilter>,
    #[serde(default)]
    pub exclude: Option<MetricFilter>,
    /// Forget a stream after this long without a point; 0 (default) = never.
    #[serde(default, deserialize_with = "units::duration")]
    pub max_staleness: Duration,
    #[serde(default)]
    pub initial_value: InitialValue,
    /// The old form of `include.metrics` (names, strict).
    #[serde(default)]
    pub metrics: Vec<String>,
}

/// A compiled `include`/`exclude`.
#[derive(Clone)]
struct Filter {
    names: Vec<String>,
    regexes: Option<Vec<regex::Regex>>,
    types: Vec<String>,
}

impl Filter {
    fn compile(f: &MetricFilter, node: &Node, key: &str) -> Result<Filter, DeError> {
        if !f.metrics.is_empty() && f.match_type.is_none() {
            return Err(key_err(
                node,
                &[key, "match_type"],
                "required with `metrics`: strict or regexp",
            ));
        }
        for (i, t) in f.metric_types.iter().enumerate() {
            if !matches!(t.as_str(), "sum" | "histogram") {
                return Err(key_err(
                    node,
                    &[key, "metric_types", &format!("[{i}]")],
                    format!("{t:?}: expected sum or histogram"),
                ));
            }
        }
        let regexes = match f.match_type {
            Some(MatchType::Regexp) => Some(
                f.metrics
                    .iter()
                    .map(|m| regex::Regex::new(m))
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        key_err(node, &[key, "metrics"], format!("invalid regexp: {e}"))
                    })?,
            ),
            _ => None,
        };
        Ok(Filter {
            names: f.metrics.clone(),
            regexes,
            types: f.metric_types.clone(),
        })
    }

    fn matches(&self, name: &str, kind: &str) -> bool {
        let by_type = self.types.is_empty() || self.types.iter().any(|t| t == kind);
        let by_name = self.names.is_empty()
            || match &self.regexes {
                Some(r) => r.iter().any(|r| r.is_match(name)),
                None => self.names.iter().any(|n| n == name),
            };
        by_type && by_name
    }
}

/// `cumulativetodelta`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::processor(
    "cumulativetodelta",
    crate::signal::METRICS,
    Stability::Alpha,
    parse,
)
.aliases(&["cumulative_to_delta"]);

#[derive(Clone)]
struct Compiled {
    include: Option<Filter>,
    exclude: Option<Filter>,
    max_staleness: Duration,
    initial: InitialValue,
}

pub fn parse(node: &Node) -> Result<Box<dyn ProcessorConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    let mut include = cfg
        .include
        .as_ref()
        .map(|f| Filter::compile(f, node, "include"))
        .transpose()?;
    if !cfg.metrics.is_empty() {
        if include.is_some() {
            return Err(key_err(
                node,
                &["metrics"],
                "set either the old `metrics` list or `include`, not both",
            ));
        }
        crate::config::warn_key(
            node,
            &["metrics"],
            "deprecated: write `include: {metrics: [...], match_type: strict}` instead",
        );
        include = Some(Filter {
            names: cfg.metrics.clone(),
            regexes: None,
            types: Vec::new(),
        });
    }
    let exclude = cfg
        .exclude
        .as_ref()
        .map(|f| Filter::compile(f, node, "exclude"))
        .transpose()?;
    Ok(Box::new(Compiled {
        include,
        exclude,
        max_staleness: cfg.max_staleness,
        initial: cfg.initial_value,
    }))
}

impl ProcessorConfig for Compiled {
    fn build(
        &self,
        ctx: Context,
        signal: Signal,
        next: DynConsumer,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        let t = ToDelta {
            cfg: self.clone(),
            started_ns: crate::component::now_nanos(),
            state: Arc::new(Mutex::new(State::default())),
        };
        Ok(InPlace::build(
            &ctx,
            signal,
            next,
            t,
            "first_or_out_of_order",
        ))
    }
}

enum Prev {
    Int(i64),
    Double(f64),
    Hist {
        bounds: Vec<f64>,
        counts: Vec<u64>,
        count: u64,
        sum: f64,
    },
}

struct Stream {
    prev: Prev,
    time: u64,
    seen: Instant,
}

#[derive(Default)]
struct State {
    streams: HashMap<Vec<u8>, Stream>,
    swept: Option<Instant>,
}

struct ToDelta {
    cfg: Compiled,
    started_ns: u64,
    state: Arc<Mutex<State>>,
}

impl ToDelta {
    fn selected(&self, name: &str, kind: &str) -> bool {
        self.cfg
            .include
            .as_ref()
            .is_none_or(|f| f.matches(name, kind))
            && !self
                .cfg
                .exclude
                .as_ref()
                .is_some_and(|f| f.matches(name, kind))
    }

    /// Whether a stream's first point is passed on.
    fn keep_first(&self, start: u64) -> bool {
        match self.cfg.initial {
            InitialValue::Keep => true,
            InitialValue::Drop => false,
            InitialValue::Auto => start > 0 && start >= self.started_ns,
        }
    }

    fn convert(&self, rms: &mut [ResourceMetrics], st: &mut State) {
        let now = Instant::now();
        let mut prefix = Vec::new();
        let mut key = Vec::new();
        for rm in rms.iter_mut() {
            let res = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes);
            for sm in &mut rm.scope_metrics {
                let scope = sm.scope.as_ref();
                for m in &mut sm.metrics {
                    let (kind, code) = match &m.data {
                        Some(Data::Sum(s))
                            if s.is_monotonic
                                && s.aggregation_temporality
                                    == AggregationTemporality::Cumulative as i32 =>
                        {
                            ("sum", b's')
                        }
                        Some(Data::Histogram(h))
                            if h.aggregation_temporality
                                == AggregationTemporality::Cumulative as i32 =>
                        {
                            ("histogram", b'h')
                        }
                        _ => continue,
                    };
                    if !self.selected(&m.name, kind) {
                        continue;
                    }
                    metric_prefix(res, scope, m, code, &mut prefix);
                    match &mut m.data {
                        Some(Data::Sum(s)) => {
                            s.aggregation_temporality = AggregationTemporality::Delta as i32;
                            s.data_points.retain_mut(|p| {
                                point_key(&prefix, &p.attributes, &mut key);
                                let cur = match p.value {
                                    Some(number_data_point::Value::AsInt(i)) => Prev::Int(i),
                                    Some(number_data_point::Value::AsDouble(d)) => Prev::Double(d),
                                    None => return false,
                                };
                                let Some(s) = st.streams.get_mut(&key) else {
                                    st.streams.insert(
                                        key.clone(),
                                        Stream {
                                            prev: cur,
                                            time: p.time_unix_nano,
                                            seen: now,
                                        },
                                    );
                                    return self.keep_first(p.start_time_unix_nano);
                                };
                                if p.time_unix_nano <= s.time {
                                    return false;
                                }
                                p.value = Some(match (&s.prev, &cur) {
                                    (Prev::Int(a), Prev::Int(b)) if b >= a => {
                                        number_data_point::Value::AsInt(b - a)
                                    }
                                    (Prev::Double(a), Prev::Double(b)) if b >= a => {
                                        number_data_point::Value::AsDouble(b - a)
                                    }
                                    // A reset (or a changed type): the value since the restart.
                                    (_, Prev::Int(b)) => number_data_point::Value::AsInt(*b),
                                    (_, Prev::Double(b)) => number_data_point::Value::AsDouble(*b),
                                    (_, Prev::Hist { .. }) => return false,
                                });
                                p.start_time_unix_nano = s.time;
                                (s.prev, s.time, s.seen) = (cur, p.time_unix_nano, now);
                                true
                            });
                        }
                        Some(Data::Histogram(h)) => {
                            h.aggregation_temporality = AggregationTemporality::Delta as i32;
                            h.data_points.retain_mut(|p| {
                                point_key(&prefix, &p.attributes, &mut key);
                                let cur = Prev::Hist {
                                    bounds: p.explicit_bounds.clone(),
                                    counts: p.bucket_counts.clone(),
                                    count: p.count,
                                    sum: p.sum.unwrap_or(0.0),
                                };
                                let Some(s) = st.streams.get_mut(&key) else {
                                    st.streams.insert(
                                        key.clone(),
                                        Stream {
                                            prev: cur,
                                            time: p.time_unix_nano,
                                            seen: now,
                                        },
                                    );
                                    return self.keep_first(p.start_time_unix_nano);
                                };
                                if p.time_unix_nano <= s.time {
                                    return false;
                                }
                                if let Prev::Hist {
                                    bounds,
                                    counts,
                                    count,
                                    sum,
                                } = &s.prev
                                    && *bounds == p.explicit_bounds
                                    && counts.len() == p.bucket_counts.len()
                                    && p.count >= *count
                                    && p.bucket_counts.iter().zip(counts).all(|(a, b)| a >= b)
                                {
                                    for (c, prev) in p.bucket_counts.iter_mut().zip(counts) {
                                        *c -= prev;
                                    }
                                    p.count -= count;
                                    p.sum = p.sum.map(|v| v - sum);
                                }
                                // min and max of the interval are not known.
                                p.min = None;
                                p.max = None;
                                p.start_time_unix_nano = s.time;
                                (s.prev, s.time, s.seen) = (cur, p.time_unix_nano, now);
                                true
                            });
                        }
                        _ => {}
                    }
                }
                sm.metrics.retain(|m| match &m.data {
                    Some(Data::Sum(s)) => !s.data_points.is_empty(),
                    Some(Data::Histogram(h)) => !h.data_points.is_empty(),
                    _ => true,
                });
            }
        }
        let ttl = self.cfg.max_staleness;
        if !ttl.is_zero() && st.swept.is_none_or(|t| now.duration_since(t) >= ttl / 2) {
            st.streams.retain(|_, s| now.duration_since(s.seen) < ttl);
            st.swept = Some(now);
        }
    }
}

impl Transform for ToDelta {
    fn apply(&self, batch: &mut Batch) -> Result<(), String> {
        let Batch::Metrics(rms) = batch else {
            return Ok(());
        };
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.convert(rms, &mut st);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;
    use crate::signal::testdata::kv;
    use opentelemetry_proto::tonic::metrics::v1::{
        Histogram, HistogramDataPoint, Metric, NumberDataPoint, ScopeMetrics, Sum,
    };

    fn t(cfg: &str) -> ToDelta {
        let c: Config = from_node(&yaml(cfg).unwrap()).unwrap();
        let node = yaml(cfg).unwrap();
        ToDelta {
            cfg: Compiled {
                include: c
                    .include
                    .as_ref()
                    .map(|f| Filter::compile(f, &node, "include").unwrap()),
                exclude: c
                    .exclude
                    .as_ref()
                    .map(|f| Filter::compile(f, &node, "exclude").unwrap()),
                max_staleness: c.max_staleness,
                initial: c.initial_value,
            },
            started_ns: 1_000,
            state: Default::default(),
        }
    }

    fn sum(name: &str, points: &[(u64, u64, i64)]) -> Metric {
        Metric {
            name: name.into(),
            data: Some(Data::Sum(Sum {
                data_points: points
                    .iter()
                    .map(|(start, time, v)| NumberDataPoint {
                        attributes: vec![kv("k", "v")],
                        start_time_unix_nano: *start,
                        time_unix_nano: *time,
                        value: Some(number_data_point::Value::AsInt(*v)),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        }
    }

    fn batch(ms: Vec<Metric>) -> Batch {
        Batch::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: ms,
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn values(b: &Batch) -> Vec<(String, u64, u64, i64)> {
        let Batch::Metrics(r) = b else { panic!() };
        let mut out = Vec::new();
        for m in &r[0].scope_metrics[0].metrics {
            if let Some(Data::Sum(s)) = &m.data {
                assert_eq!(
                    s.aggregation_temporality,
                    AggregationTemporality::Delta as i32
                );
                for p in &s.data_points {
                    let Some(number_data_point::Value::AsInt(v)) = p.value else {
                        panic!()
                    };
                    out.push((m.name.clone(), p.start_time_unix_nano, p.time_unix_nano, v));
                }
            }
        }
        out
    }

    #[test]
    fn sums_become_deltas_with_resets_and_first_points() {
        let p = t("{}");
        // Started before the collector (auto): the first point is dropped.
        let mut b = batch(vec![sum("reqs", &[(500, 2_000, 10)])]);
        p.apply(&mut b).unwrap();
        assert!(values(&b).is_empty());
        let mut b = batch(vec![
            sum("reqs", &[(500, 3_000, 15)]),
            sum("new", &[(1_500, 3_000, 4)]),
        ]);
        p.apply(&mut b).unwrap();
        // `new` started after the collector: its first point is kept as is.
        assert_eq!(
            values(&b),
            [
                ("reqs".into(), 2_000, 3_000, 5),
                ("new".into(), 1_500, 3_000, 4)
            ]
        );
        // A reset, then a point no newer than the last: dropped.
        let mut b = batch(vec![sum("reqs", &[(3_500, 4_000, 2), (3_500, 4_000, 9)])]);
        p.apply(&mut b).unwrap();
        assert_eq!(values(&b), [("reqs".into(), 3_000, 4_000, 2)]);
    }

    #[test]
    fn include_exclude_and_histograms() {
        let p = t(
            "include: {metrics: ['^http\\.'], match_type: regexp}\nexclude: {metrics: [http.skip], match_type: strict}\ninitial_value: keep\n",
        );
        let hist = |time: u64, counts: Vec<u64>| Metric {
            name: "http.latency".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    time_unix_nano: time,
                    count: counts.iter().sum(),
                    sum: Some(counts.iter().sum::<u64>() as f64),
                    bucket_counts: counts,
                    explicit_bounds: vec![1.0],
                    max: Some(9.0),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        };
        let mut b = batch(vec![
            hist(10, vec![1, 2]),
            sum("other", &[(0, 10, 1)]),
            sum("http.skip", &[(0, 10, 1)]),
        ]);
        p.apply(&mut b).unwrap();
        let mut b = batch(vec![hist(20, vec![4, 2]), sum("other", &[(0, 20, 3)])]);
        p.apply(&mut b).unwrap();
        let Batch::Metrics(r) = &b else { panic!() };
        let Some(Data::Histogram(h)) = &r[0].scope_metrics[0].metrics[0].data else {
            panic!()
        };
        let pt = &h.data_points[0];
        assert_eq!(
            (pt.bucket_counts.clone(), pt.count, pt.sum, pt.max),
            (vec![3, 0], 3, Some(3.0), None)
        );
        assert_eq!(
            h.aggregation_temporality,
            AggregationTemporality::Delta as i32
        );
        // Not included: still cumulative.
        let Some(Data::Sum(s)) = &r[0].scope_metrics[0].metrics[1].data else {
            panic!()
        };
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
    }

    #[test]
    fn config_errors() {
        let e = |y: &str| parse(&yaml(y).unwrap()).err().map(|e| e.path_string());
        assert_eq!(
            e("include: {metrics: [a]}\n").as_deref(),
            Some("include.match_type")
        );
        assert_eq!(
            e("include: {metric_types: [gauge]}\n").as_deref(),
            Some("include.metric_types[0]")
        );
        assert_eq!(
            e("initial_value: sometimes\n").as_deref(),
            Some("initial_value")
        );
        assert!(e("max_staleness: 10m\ninitial_value: drop\nexclude: {metrics: [x], match_type: strict}\n").is_none());
    }
}
