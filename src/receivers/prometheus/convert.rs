//! One scrape's samples → OTLP metrics, with start times for cumulative series.
//!
//! Counters become monotonic cumulative sums, histograms and summaries keep their cumulative
//! count and sum; gauges, unknown/untyped, info and stateset samples become gauges. A cumulative
//! series' start time is its `_created` sample when the target exposes one, else the time it
//! was first scraped; when its value (a histogram's or summary's count) goes down, the target
//! restarted and the start time becomes the previous scrape's time.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, Sum, Summary, SummaryDataPoint,
    exemplar, exponential_histogram_data_point::Buckets, metric, number_data_point,
    summary_data_point::ValueAtQuantile,
};

use super::parse::{Native, Sample, Scrape, Type};

/// Per-target memory of cumulative series: (metric, attributes) → (start, last value, last time).
type Attrs = Vec<(String, String)>;

#[derive(Default)]
pub struct StartTimes {
    series: HashMap<(String, Attrs), (u64, f64, u64)>,
}

impl StartTimes {
    fn start(
        &mut self,
        name: &str,
        attrs: &[(String, String)],
        value: f64,
        now: u64,
        created: Option<u64>,
    ) -> u64 {
        let key = (name.to_string(), attrs.to_vec());
        let e = self
            .series
            .entry(key)
            .or_insert((created.unwrap_or(now), value, now));
        if let Some(c) = created {
            e.0 = c;
        } else if value < e.1 {
            // Reset: the target restarted after the previous scrape.
            e.0 = e.2;
        }
        e.1 = value;
        e.2 = now;
        e.0
    }

    /// Forgets series not seen for `keep` scrapes' worth of time (targets that went away).
    pub fn sweep(&mut self, older_than: u64) {
        self.series.retain(|_, v| v.2 >= older_than);
    }
}

pub(super) fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
        ..Default::default()
    }
}

fn attrs(labels: &[(String, String)], skip: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = labels
        .iter()
        .filter(|(k, _)| k != skip && k != "__name__")
        .cloned()
        .collect();
    v.sort();
    v
}

fn to_kvs(a: &[(String, String)]) -> Vec<KeyValue> {
    a.iter().map(|(k, v)| kv(k, v)).collect()
}

/// What one series of a histogram or summary gathers.
#[derive(Default)]
struct Agg {
    buckets: Vec<(f64, f64)>,
    quantiles: Vec<(f64, f64)>,
    count: f64,
    sum: f64,
    created: Option<u64>,
    ts: Option<u64>,
    exemplars: Vec<Exemplar>,
}

/// An OpenMetrics exemplar as OTLP's: `trace_id` and `span_id` (hex) become the ids, the other
/// labels its filtered attributes; without a timestamp it takes its sample's time, as
/// Prometheus's scrape loop gives it.
fn exemplar(e: &super::parse::Exemplar, sample_time: u64) -> Exemplar {
    let mut out = Exemplar {
        time_unix_nano: e
            .timestamp_ms
            .filter(|ms| *ms > 0)
            .map_or(sample_time, |ms| ms as u64 * 1_000_000),
        value: Some(exemplar::Value::AsDouble(e.value)),
        ..Default::default()
    };
    for (k, v) in &e.labels {
        let id = match k.as_str() {
            "trace_id" => hex::decode(v).ok().filter(|b| b.len() == 16),
            "span_id" => hex::decode(v).ok().filter(|b| b.len() == 8),
            _ => None,
        };
        match id {
            Some(b) if k == "trace_id" => out.trace_id = b,
            Some(b) => out.span_id = b,
            None => out.filtered_attributes.push(kv(k, v)),
        }
    }
    out
}

/// Converts samples (already relabeled; labels include `job`/`instance`, which the caller moved
/// to the resource and removed) into metrics.
/// `trim_metric_suffixes`: `_total` off monotonic sums, and `_<unit>` off any metric whose
/// unit the target declared (OpenMetrics `# UNIT`), as the Collector's option does.
pub fn trim_suffixes(batch: &mut crate::signal::Batch) {
    let crate::signal::Batch::Metrics(rms) = batch else {
        return;
    };
    for m in rms
        .iter_mut()
        .flat_map(|r| &mut r.scope_metrics)
        .flat_map(|s| &mut s.metrics)
    {
        if matches!(&m.data, Some(metric::Data::Sum(s)) if s.is_monotonic)
            && let Some(base) = m.name.strip_suffix("_total")
        {
            m.name = base.to_string();
        }
        if !m.unit.is_empty()
            && let Some(base) = m.name.strip_suffix(&format!("_{}", m.unit))
            && !base.is_empty()
        {
            m.name = base.to_string();
        }
    }
}

pub fn convert(
    scrape: &Scrape,
    samples: &[Sample],
    now: u64,
    honor_ts: bool,
    st: &mut StartTimes,
) -> Vec<Metric> {
    let mut out: Vec<Metric> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let time = |s: &Sample| match (honor_ts, s.timestamp_ms) {
        (true, Some(ms)) if ms > 0 => ms as u64 * 1_000_000,
        _ => now,
    };
    // Histograms and summaries: gather per (family, series) first.
    let mut aggs: Vec<(usize, Attrs, Agg)> = Vec::new();
    // Counter `_created` samples, by (family, attrs).
    let mut created: HashMap<(usize, Vec<(String, String)>), u64> = HashMap::new();
    for s in samples {
        let f = &scrape.families[s.family];
        if s.name.ends_with("_created") && s.name != f.name {
            let key = (s.family, attrs(&s.labels, ""));
            created.insert(key, (s.value * 1e9) as u64);
        }
    }
    for s in samples {
        let f = &scrape.families[s.family];
        match f.kind {
            Type::Counter => {
                if s.name.ends_with("_created") && s.name != f.name {
                    continue;
                }
                let a = attrs(&s.labels, "");
                let c = created.get(&(s.family, a.clone())).copied();
                let t = time(s);
                let start = st.start(&s.name, &a, s.value, t, c);
                let i = *index.entry(s.name.clone()).or_insert_with(|| {
                    out.push(Metric {
                        name: s.name.clone(),
                        description: f.help.clone(),
                        unit: f.unit.clone(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: Vec::new(),
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    });
                    out.len() - 1
                });
                if let Some(metric::Data::Sum(sum)) = &mut out[i].data {
                    let mut p = number(a, s.value, start, t);
                    p.exemplars
                        .extend(s.exemplar.as_deref().map(|e| exemplar(e, t)));
                    sum.data_points.push(p);
                }
            }
            Type::Histogram | Type::GaugeHistogram | Type::Summary => {
                let skip = if f.kind == Type::Summary {
                    "quantile"
                } else {
                    "le"
                };
                let a = attrs(&s.labels, skip);
                let j = match aggs
                    .iter()
                    .position(|(fi, aa, _)| *fi == s.family && *aa == a)
                {
                    Some(j) => j,
                    None => {
                        aggs.push((s.family, a, Agg::default()));
                        aggs.len() - 1
                    }
                };
                let agg = &mut aggs[j].2;
                agg.ts = Some(time(s));
                let suffix = &s.name[f.name.len().min(s.name.len())..];
                let label = |k: &str| {
                    s.labels
                        .iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, v)| v.as_str())
                };
                match suffix {
                    "_bucket" => {
                        if let Some(le) = label("le").and_then(super::parse::parse_value) {
                            agg.buckets.push((le, s.value));
                        }
                        if let Some(e) = &s.exemplar {
                            agg.exemplars.push(exemplar(e, time(s)));
                        }
                    }
                    "_count" | "_gcount" => agg.count = s.value,
                    "_sum" | "_gsum" => agg.sum = s.value,
                    "_created" => agg.created = Some((s.value * 1e9) as u64),
                    "" => {
                        if let Some(q) = label("quantile").and_then(super::parse::parse_value) {
                            agg.quantiles.push((q, s.value));
                        }
                    }
                    _ => {}
                }
            }
            Type::Gauge | Type::Unknown | Type::Info | Type::StateSet => {
                let a = attrs(&s.labels, "");
                let t = time(s);
                let i = *index.entry(s.name.clone()).or_insert_with(|| {
                    out.push(Metric {
                        name: s.name.clone(),
                        description: f.help.clone(),
                        unit: f.unit.clone(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: Vec::new(),
                        })),
                        ..Default::default()
                    });
                    out.len() - 1
                });
                if let Some(metric::Data::Gauge(g)) = &mut out[i].data {
                    g.data_points.push(number(a, s.value, 0, t));
                }
            }
        }
    }
    for (fi, a, mut agg) in aggs {
        let f = &scrape.families[fi];
        let t = agg.ts.unwrap_or(now);
        let cumulative = f.kind != Type::GaugeHistogram;
        let start = if cumulative {
            st.start(&f.name, &a, agg.count, t, agg.created)
        } else {
            0
        };
        let i = *index.entry(f.name.clone()).or_insert_with(|| {
            let data = if f.kind == Type::Summary {
                metric::Data::Summary(Summary {
                    data_points: Vec::new(),
                })
            } else {
                metric::Data::Histogram(Histogram {
                    data_points: Vec::new(),
                    aggregation_temporality: if cumulative {
                        AggregationTemporality::Cumulative as i32
                    } else {
                        AggregationTemporality::Unspecified as i32
                    },
                })
            };
            out.push(Metric {
                name: f.name.clone(),
                description: f.help.clone(),
                unit: f.unit.clone(),
                data: Some(data),
                ..Default::default()
            });
            out.len() - 1
        });
        match &mut out[i].data {
            Some(metric::Data::Summary(s)) => {
                agg.quantiles.sort_by(|x, y| x.0.total_cmp(&y.0));
                s.data_points.push(SummaryDataPoint {
                    attributes: to_kvs(&a),
                    start_time_unix_nano: start,
                    time_unix_nano: t,
                    count: agg.count as u64,
                    sum: agg.sum,
                    quantile_values: agg
                        .quantiles
                        .iter()
                        .map(|(q, v)| ValueAtQuantile {
                            quantile: *q,
                            value: *v,
                        })
                        .collect(),
                    flags: 0,
                });
            }
            Some(metric::Data::Histogram(h)) => {
                agg.buckets.sort_by(|x, y| x.0.total_cmp(&y.0));
                // Cumulative `le` buckets → per-bucket counts; +Inf is the last bucket.
                let mut bounds = Vec::new();
                let mut counts = Vec::new();
                let mut prev = 0.0;
                for (le, c) in &agg.buckets {
                    if le.is_finite() {
                        bounds.push(*le);
                    }
                    counts.push((c - prev).max(0.0) as u64);
                    prev = *c;
                }
                if agg.buckets.last().is_none_or(|(le, _)| le.is_finite()) {
                    counts.push((agg.count - prev).max(0.0) as u64);
                }
                h.data_points.push(HistogramDataPoint {
                    attributes: to_kvs(&a),
                    start_time_unix_nano: start,
                    time_unix_nano: t,
                    count: agg.count as u64,
                    sum: Some(agg.sum),
                    bucket_counts: counts,
                    explicit_bounds: bounds,
                    exemplars: std::mem::take(&mut agg.exemplars),
                    ..Default::default()
                });
            }
            _ => {}
        }
    }
    out
}

/// Native histograms → exponential histograms (cumulative, or without temporality for a gauge
/// histogram), one metric per name; start times as for classic histograms (the created
/// timestamp, else first sight, reset when the count goes down).
pub fn natives(
    scrape: &Scrape,
    natives: &[Native],
    now: u64,
    honor_ts: bool,
    st: &mut StartTimes,
) -> Vec<Metric> {
    let mut out: Vec<Metric> = Vec::new();
    for n in natives {
        let f = &scrape.families[n.family];
        let t = match (honor_ts, n.timestamp_ms) {
            (true, Some(ms)) if ms > 0 => ms as u64 * 1_000_000,
            _ => now,
        };
        let a = attrs(&n.labels, "");
        let start = if n.gauge {
            0
        } else {
            let created = n.created_secs.map(|s| (s * 1e9) as u64);
            st.start(&n.name, &a, n.count as f64, t, created)
        };
        let i = match out.iter().position(|m| m.name == n.name) {
            Some(i) => i,
            None => {
                out.push(Metric {
                    name: n.name.clone(),
                    description: f.help.clone(),
                    unit: f.unit.clone(),
                    data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: Vec::new(),
                        aggregation_temporality: if n.gauge {
                            AggregationTemporality::Unspecified as i32
                        } else {
                            AggregationTemporality::Cumulative as i32
                        },
                    })),
                    ..Default::default()
                });
                out.len() - 1
            }
        };
        let (pos_offset, pos) = n.dense(&n.positive);
        let (neg_offset, neg) = n.dense(&n.negative);
        if let Some(metric::Data::ExponentialHistogram(h)) = &mut out[i].data {
            h.data_points.push(ExponentialHistogramDataPoint {
                attributes: to_kvs(&a),
                start_time_unix_nano: start,
                time_unix_nano: t,
                count: n.count,
                sum: Some(n.sum),
                scale: n.scale,
                zero_count: n.zero_count,
                zero_threshold: n.zero_threshold,
                positive: Some(Buckets {
                    offset: pos_offset,
                    bucket_counts: pos,
                }),
                negative: Some(Buckets {
                    offset: neg_offset,
                    bucket_counts: neg,
                }),
                exemplars: n.exemplars.iter().map(|e| exemplar(e, t)).collect(),
                ..Default::default()
            });
        }
    }
    out
}

fn number(a: Vec<(String, String)>, v: f64, start: u64, t: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: to_kvs(&a),
        start_time_unix_nano: start,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    #[test]
    fn natives_become_exponential_histograms_with_start_times() {
        let sc = Scrape {
            families: vec![super::super::parse::Family {
                name: "rpc_seconds".into(),
                kind: Type::Histogram,
                help: "RPC latency.".into(),
                unit: String::new(),
            }],
            ..Default::default()
        };
        let n = Native {
            family: 0,
            name: "rpc_seconds".into(),
            labels: vec![("svc".into(), "a".into())],
            timestamp_ms: None,
            count: 6,
            sum: 3.5,
            scale: 2,
            zero_threshold: 0.001,
            zero_count: 1,
            positive: vec![(3, 2), (5, 3)],
            negative: vec![],
            created_secs: Some(1_700_000_000.0),
            exemplars: vec![],
            gauge: false,
        };
        let mut st = StartTimes::default();
        let m = natives(&sc, std::slice::from_ref(&n), 5_000, true, &mut st);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].description, "RPC latency.");
        let Some(metric::Data::ExponentialHistogram(h)) = &m[0].data else {
            panic!("{m:?}")
        };
        assert_eq!(
            h.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let p = &h.data_points[0];
        assert_eq!(
            (p.count, p.sum, p.scale, p.zero_count),
            (6, Some(3.5), 2, 1)
        );
        assert_eq!(p.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(p.time_unix_nano, 5_000);
        let pos = p.positive.as_ref().unwrap();
        assert_eq!((pos.offset, pos.bucket_counts.clone()), (3, vec![2, 0, 3]));
        assert_eq!(p.attributes, vec![kv("svc", "a")]);
        // A downscale merges neighbours: 3 → 1, 5 → 2.
        let mut d = n.clone();
        assert!(d.downscale());
        assert_eq!((d.scale, d.positive.clone()), (1, vec![(1, 2), (2, 3)]));
        assert!(d.downscale());
        assert_eq!(d.positive, vec![(0, 2), (1, 3)]);
    }

    /// OpenMetrics exemplars on a counter and on histogram buckets: the ids decoded, other
    /// labels kept, the exemplar's own time or its sample's.
    #[test]
    fn exemplars_on_counters_and_buckets() {
        let body = concat!(
            "# TYPE req counter\n",
            "req_total{code=\"200\"} 7 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\",span_id=\"00f067aa0ba902b7\",user=\"u1\"} 1 1700000000.5\n",
            "# TYPE lat histogram\n",
            "lat_bucket{le=\"0.1\"} 2 # {trace_id=\"not-hex\"} 0.05\n",
            "lat_bucket{le=\"1\"} 3\n",
            "lat_bucket{le=\"+Inf\"} 3 # {span_id=\"00f067aa0ba902b7\"} 4.5 1700000001\n",
            "lat_count 3\nlat_sum 2\n# EOF\n",
        );
        let sc = parse(body, true).unwrap();
        let m = convert(&sc, &sc.samples, 9_000, true, &mut StartTimes::default());
        let Some(metric::Data::Sum(sum)) = &m[0].data else {
            panic!()
        };
        let e = &sum.data_points[0].exemplars;
        assert_eq!(e.len(), 1);
        assert_eq!(
            hex::encode(&e[0].trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(hex::encode(&e[0].span_id), "00f067aa0ba902b7");
        assert_eq!(e[0].filtered_attributes, vec![kv("user", "u1")]);
        assert_eq!(e[0].time_unix_nano, 1_700_000_000_500_000_000);
        assert_eq!(e[0].value, Some(exemplar::Value::AsDouble(1.0)));
        let Some(metric::Data::Histogram(h)) = &m[1].data else {
            panic!()
        };
        let e = &h.data_points[0].exemplars;
        assert_eq!(e.len(), 2);
        // Not hex: kept as an attribute; no timestamp: the scrape's time.
        assert!(e[0].trace_id.is_empty());
        assert_eq!(e[0].filtered_attributes, vec![kv("trace_id", "not-hex")]);
        assert_eq!(e[0].time_unix_nano, 9_000);
        assert_eq!(e[1].value, Some(exemplar::Value::AsDouble(4.5)));
        assert_eq!(e[1].time_unix_nano, 1_700_000_001_000_000_000);
        // A malformed exemplar fails the scrape, as Prometheus's parser does.
        for bad in [
            "# TYPE c counter\nc_total 1 # 0.5\n# EOF\n",
            "# TYPE c counter\nc_total 1 # {a=\"b\"}\n# EOF\n",
            "# TYPE c counter\nc_total 1 # {a=\"b\"} x\n# EOF\n",
        ] {
            assert!(parse(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn counters_histograms_summaries_and_resets() {
        let body = "# TYPE c counter\nc_total{a=\"1\"} 5\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"5\"} 3\nh_bucket{le=\"+Inf\"} 4\nh_count 4\nh_sum 9.5\n# TYPE s summary\ns{quantile=\"0.9\"} 7\ns_count 3\ns_sum 12\ng 1.5\n";
        let sc = parse(body, false).unwrap();
        let mut st = StartTimes::default();
        let m = convert(&sc, &sc.samples, 1000, true, &mut st);
        assert_eq!(m.len(), 4);
        let Some(metric::Data::Sum(sum)) = &m[0].data else {
            panic!()
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.data_points[0].start_time_unix_nano, 1000);
        let Some(metric::Data::Gauge(_)) = &m[1].data else {
            panic!("{:?}", m[1])
        };
        let h = m.iter().find(|x| x.name == "h").unwrap();
        let Some(metric::Data::Histogram(h)) = &h.data else {
            panic!()
        };
        assert_eq!(h.data_points[0].explicit_bounds, [1.0, 5.0]);
        assert_eq!(h.data_points[0].bucket_counts, [2, 1, 1]);
        let s = m.iter().find(|x| x.name == "s").unwrap();
        let Some(metric::Data::Summary(s)) = &s.data else {
            panic!()
        };
        assert_eq!(s.data_points[0].quantile_values[0].value, 7.0);

        // Second scrape: the counter grew — same start. Third: it went down — reset.
        let sc2 = parse("# TYPE c counter\nc_total{a=\"1\"} 9\n", false).unwrap();
        let m2 = convert(&sc2, &sc2.samples, 2000, true, &mut st);
        let Some(metric::Data::Sum(sum)) = &m2[0].data else {
            panic!()
        };
        assert_eq!(sum.data_points[0].start_time_unix_nano, 1000);
        let sc3 = parse("# TYPE c counter\nc_total{a=\"1\"} 1\n", false).unwrap();
        let m3 = convert(&sc3, &sc3.samples, 3000, true, &mut st);
        let Some(metric::Data::Sum(sum)) = &m3[0].data else {
            panic!()
        };
        assert_eq!(sum.data_points[0].start_time_unix_nano, 2000);
        // `_created` wins when the target has it.
        let sc4 = parse(
            "# TYPE k counter\nk_total 3\nk_created 1700000000\n# EOF\n",
            true,
        )
        .unwrap();
        let m4 = convert(&sc4, &sc4.samples, 5000, true, &mut st);
        let Some(metric::Data::Sum(sum)) = &m4[0].data else {
            panic!()
        };
        assert_eq!(
            sum.data_points[0].start_time_unix_nano,
            1_700_000_000_000_000_000
        );
    }
}

#[cfg(test)]
mod trim_tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics, Sum};

    #[test]
    fn trim_metric_suffixes_drops_total_and_the_declared_unit() {
        let m = |name: &str, unit: &str, monotonic: bool| Metric {
            name: name.into(),
            unit: unit.into(),
            data: Some(metric::Data::Sum(Sum {
                is_monotonic: monotonic,
                ..Default::default()
            })),
            ..Default::default()
        };
        let mut b = crate::signal::Batch::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    m("http_requests_total", "", true),
                    m("cpu_seconds_total", "seconds", true),
                    m("queue_total", "", false),
                    m("latency_seconds", "", true),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        trim_suffixes(&mut b);
        let crate::signal::Batch::Metrics(r) = &b else {
            unreachable!()
        };
        let names: Vec<&str> = r[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["http_requests", "cpu", "queue_total", "latency_seconds"],
            "a gauge-like sum keeps _total; an undeclared unit stays"
        );
    }
}
