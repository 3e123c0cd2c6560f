//! `deltatocumulative` processor: delta sums and delta histograms become cumulative, per stream
//! (resource, scope, metric, attributes): each point carries the running total since the
//! stream's first point, whose start time it keeps. A point no newer than the stream's last is
//! dropped (out of order); a histogram whose buckets change starts over. Streams not seen for
//! `max_stale` (default 5m) are forgotten; at most `max_streams` are tracked, and points of
//! new streams beyond it are dropped and counted. Delta exponential histograms pass unchanged
//! (not converted yet).

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

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Forget a stream after this long without a point. Default 5m.
    #[serde(default = "five_minutes", deserialize_with = "units::duration")]
    pub max_stale: Duration,
    /// Streams tracked at most. Default unlimited (the Collector's `math.MaxInt64`).
    #[serde(default = "unlimited")]
    pub max_streams: u64,
}

fn five_minutes() -> Duration {
    Duration::from_secs(300)
}

fn unlimited() -> u64 {
    i64::MAX as u64
}

/// `deltatocumulative`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::processor(
    "deltatocumulative",
    crate::signal::METRICS,
    Stability::Alpha,
    parse,
)
.aliases(&["delta_to_cumulative"]);

pub fn parse(node: &Node) -> Result<Box<dyn ProcessorConfig>, DeError> {
    let cfg: Config = from_node(node)?;
    if cfg.max_stale.is_zero() {
        return Err(key_err(node, &["max_stale"], "must be more than 0"));
    }
    if cfg.max_streams == 0 {
        return Err(key_err(node, &["max_streams"], "must be at least 1"));
    }
    Ok(Box::new(cfg))
}

impl ProcessorConfig for Config {
    fn build(
        &self,
        ctx: Context,
        signal: Signal,
        next: DynConsumer,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        let t = ToCumulative {
            cfg: self.clone(),
            state: Arc::new(Mutex::new(State::default())),
        };
        Ok(InPlace::build(
            &ctx,
            signal,
            next,
            t,
            "out_of_order_or_limit",
        ))
    }
}

enum Acc {
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
    acc: Acc,
    start: u64,
    time: u64,
    seen: Instant,
}

#[derive(Default)]
struct State {
    streams: HashMap<Vec<u8>, Stream>,
    swept: Option<Instant>,
}

struct ToCumulative {
    cfg: Config,
    state: Arc<Mutex<State>>,
}

impl ToCumulative {
    /// The stream of `key`, made with `first` when new and there is room; `None` when the point
    /// is to be dropped (out of order, or no room for a new stream).
    fn stream<'s>(
        &self,
        st: &'s mut State,
        key: &[u8],
        start: u64,
        time: u64,
        first: impl FnOnce() -> Acc,
    ) -> Option<&'s mut Stream> {
        if !st.streams.contains_key(key) {
            if st.streams.len() as u64 >= self.cfg.max_streams {
                return None;
            }
            st.streams.insert(
                key.to_vec(),
                Stream {
                    acc: first(),
                    start,
                    time,
                    seen: Instant::now(),
                },
            );
            return st.streams.get_mut(key);
        }
        let s = st.streams.get_mut(key)?;
        if time <= s.time {
            return None;
        }
        Some(s)
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
                    let delta = AggregationTemporality::Delta as i32;
                    let code = match &m.data {
                        Some(Data::Sum(s)) if s.aggregation_temporality == delta => b's',
                        Some(Data::Histogram(h)) if h.aggregation_temporality == delta => b'h',
                        _ => continue,
                    };
                    metric_prefix(res, scope, m, code, &mut prefix);
                    match &mut m.data {
                        Some(Data::Sum(s)) => {
                            s.aggregation_temporality = AggregationTemporality::Cumulative as i32;
                            s.data_points.retain_mut(|p| {
                                point_key(&prefix, &p.attributes, &mut key);
                                let v = match p.value {
                                    Some(number_data_point::Value::AsInt(i)) => Acc::Int(i),
                                    Some(number_data_point::Value::AsDouble(d)) => Acc::Double(d),
                                    None => return false,
                                };
                                let (start, time) = (p.start_time_unix_nano, p.time_unix_nano);
                                let Some(s) = self.stream(st, &key, start, time, || match v {
                                    Acc::Int(_) => Acc::Int(0),
                                    _ => Acc::Double(0.0),
                                }) else {
                                    return false;
                                };
                                let total = match (&mut s.acc, v) {
                                    (Acc::Int(a), Acc::Int(b)) => {
                                        *a = a.saturating_add(b);
                                        number_data_point::Value::AsInt(*a)
                                    }
                                    (Acc::Double(a), Acc::Double(b)) => {
                                        *a += b;
                                        number_data_point::Value::AsDouble(*a)
                                    }
                                    // The type changed: start over.
                                    (acc, Acc::Int(b)) => {
                                        *acc = Acc::Int(b);
                                        s.start = start;
                                        number_data_point::Value::AsInt(b)
                                    }
                                    (acc, Acc::Double(b)) => {
                                        *acc = Acc::Double(b);
                                        s.start = start;
                                        number_data_point::Value::AsDouble(b)
                                    }
                                    (_, Acc::Hist { .. }) => return false,
                                };
                                p.value = Some(total);
                                p.start_time_unix_nano = s.start;
                                (s.time, s.seen) = (time, now);
                                true
                            });
                        }
                        Some(Data::Histogram(h)) => {
                            h.aggregation_temporality = AggregationTemporality::Cumulative as i32;
                            h.data_points.retain_mut(|p| {
                                point_key(&prefix, &p.attributes, &mut key);
                                let (start, time) = (p.start_time_unix_nano, p.time_unix_nano);
                                let zero = || Acc::Hist {
                                    bounds: p.explicit_bounds.clone(),
                                    counts: vec![0; p.bucket_counts.len()],
                                    count: 0,
                                    sum: 0.0,
                                };
                                let Some(s) = self.stream(st, &key, start, time, zero) else {
                                    return false;
                                };
                                let same = matches!(&s.acc, Acc::Hist { bounds, counts, .. }
                                    if *bounds == p.explicit_bounds && counts.len() == p.bucket_counts.len());
                                if !same {
                                    s.acc = zero();
                                    s.start = start;
                                }
                                if let Acc::Hist {
                                    counts, count, sum, ..
                                } = &mut s.acc
                                {
                                    for (a, c) in counts.iter_mut().zip(&p.bucket_counts) {
                                        *a += c;
                                    }
                                    *count += p.count;
                                    *sum += p.sum.unwrap_or(0.0);
                                    p.bucket_counts.clone_from(counts);
                                    p.count = *count;
                                    p.sum = Some(*sum);
                                }
                                // min and max over the whole run are not known.
                                p.min = None;
                                p.max = None;
                                p.start_time_unix_nano = s.start;
                                (s.time, s.seen) = (time, now);
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
        let ttl = self.cfg.max_stale;
        if st.swept.is_none_or(|t| now.duration_since(t) >= ttl / 2) {
            st.streams.retain(|_, s| now.duration_since(s.seen) < ttl);
            st.swept = Some(now);
        }
    }
}

impl Transform for ToCumulative {
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

    fn t(cfg: &str) -> ToCumulative {
        ToCumulative {
            cfg: from_node(&yaml(cfg).unwrap()).unwrap(),
            state: Default::default(),
        }
    }

    fn batch(route: &str, points: &[(u64, u64, f64)]) -> Batch {
        Batch::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "reqs".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: points
                            .iter()
                            .map(|(s, t, v)| NumberDataPoint {
                                attributes: vec![kv("route", route)],
                                start_time_unix_nano: *s,
                                time_unix_nano: *t,
                                value: Some(number_data_point::Value::AsDouble(*v)),
                                ..Default::default()
                            })
                            .collect(),
                        aggregation_temporality: AggregationTemporality::Delta as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn points(b: &Batch) -> Vec<(u64, u64, f64)> {
        let Batch::Metrics(r) = b else { panic!() };
        let Some(m) = r[0].scope_metrics[0].metrics.first() else {
            return vec![];
        };
        let Some(Data::Sum(s)) = &m.data else {
            panic!()
        };
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        s.data_points
            .iter()
            .map(|p| {
                let Some(number_data_point::Value::AsDouble(v)) = p.value else {
                    panic!()
                };
                (p.start_time_unix_nano, p.time_unix_nano, v)
            })
            .collect()
    }

    #[test]
    fn deltas_add_up_out_of_order_is_dropped_and_streams_are_bounded() {
        let p = t("max_streams: 1\n");
        let mut b = batch("/a", &[(0, 10, 2.0), (10, 20, 3.0)]);
        p.apply(&mut b).unwrap();
        assert_eq!(points(&b), [(0, 10, 2.0), (0, 20, 5.0)]);
        let mut b = batch("/a", &[(5, 15, 100.0), (20, 30, 1.0)]);
        p.apply(&mut b).unwrap();
        assert_eq!(points(&b), [(0, 30, 6.0)]);
        // A second stream is over `max_streams`: dropped.
        let mut b = batch("/b", &[(0, 10, 1.0)]);
        p.apply(&mut b).unwrap();
        assert!(points(&b).is_empty());
    }

    #[test]
    fn histograms_add_up_and_start_over_when_buckets_change() {
        let p = t("{}");
        let hist = |t: u64, bounds: Vec<f64>, counts: Vec<u64>| {
            Batch::Metrics(vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "lat".into(),
                        data: Some(Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                start_time_unix_nano: t - 10,
                                time_unix_nano: t,
                                count: counts.iter().sum(),
                                sum: Some(1.0),
                                bucket_counts: counts,
                                explicit_bounds: bounds,
                                ..Default::default()
                            }],
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }])
        };
        let got = |b: &Batch| {
            let Batch::Metrics(r) = b else { panic!() };
            let Some(Data::Histogram(h)) = &r[0].scope_metrics[0].metrics[0].data else {
                panic!()
            };
            let p = &h.data_points[0];
            (
                p.start_time_unix_nano,
                p.bucket_counts.clone(),
                p.count,
                p.sum,
            )
        };
        let mut b = hist(20, vec![1.0], vec![1, 1]);
        p.apply(&mut b).unwrap();
        let mut b = hist(30, vec![1.0], vec![2, 0]);
        p.apply(&mut b).unwrap();
        assert_eq!(got(&b), (10, vec![3, 1], 4, Some(2.0)));
        let mut b = hist(40, vec![1.0, 5.0], vec![1, 0, 0]);
        p.apply(&mut b).unwrap();
        assert_eq!(got(&b), (30, vec![1, 0, 0], 1, Some(1.0)));
    }

    #[test]
    fn config_errors() {
        let e = |y: &str| parse(&yaml(y).unwrap()).err().map(|e| e.path_string());
        assert_eq!(e("max_stale: 0s\n").as_deref(), Some("max_stale"));
        assert_eq!(e("max_streams: 0\n").as_deref(), Some("max_streams"));
        assert!(e("max_stale: 10m\nmax_streams: 1000\n").is_none());
    }
}
