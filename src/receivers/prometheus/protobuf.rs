//! Prometheus's protobuf exposition format (length-delimited `io.prometheus.client.MetricFamily`
//! messages), the only format that carries native histograms. Classic series become the same
//! [`Scrape`] samples the text parsers give; native histograms become [`Native`]s, already in
//! OTLP's exponential-histogram terms (scale, bucket offset, dense counts).

use prost::Message;

use super::parse::{Exemplar, Family, Native, Sample, Scrape, Type};
use crate::proto::prometheus_client as pb;

/// The largest dense bucket array kept: a histogram whose buckets span more is downscaled
/// (each step halves the resolution) until it fits.
const MAX_DENSE_BUCKETS: i64 = 1 << 14;

/// Parses a scrape body. `keep_classic`: a histogram that is both native and classic also
/// gives its classic buckets (`always_scrape_classic_histograms`).
pub fn parse(mut body: &[u8], keep_classic: bool) -> Result<Scrape, String> {
    let mut out = Scrape::default();
    let mut n = 0usize;
    while !body.is_empty() {
        n += 1;
        let mf = pb::MetricFamily::decode_length_delimited(&mut body)
            .map_err(|e| format!("metric family {n}: {e}"))?;
        family(mf, keep_classic, &mut out).map_err(|e| format!("metric family {n}: {e}"))?;
    }
    Ok(out)
}

fn labels(pairs: &[pb::LabelPair]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

fn exemplar(e: &pb::Exemplar) -> Exemplar {
    Exemplar {
        labels: labels(&e.label),
        value: e.value,
        timestamp_ms: e
            .timestamp
            .as_ref()
            .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000),
    }
}

fn created_secs(t: &Option<pb::Timestamp>) -> Option<f64> {
    t.as_ref()
        .filter(|t| t.seconds > 0 || t.nanos > 0)
        .map(|t| t.seconds as f64 + f64::from(t.nanos) / 1e9)
}

fn family(mf: pb::MetricFamily, keep_classic: bool, out: &mut Scrape) -> Result<(), String> {
    let kind = match pb::MetricType::try_from(mf.r#type) {
        Ok(pb::MetricType::Counter) => Type::Counter,
        Ok(pb::MetricType::Gauge) => Type::Gauge,
        Ok(pb::MetricType::Summary) => Type::Summary,
        Ok(pb::MetricType::Untyped) => Type::Unknown,
        Ok(pb::MetricType::Histogram) => Type::Histogram,
        Ok(pb::MetricType::GaugeHistogram) => Type::GaugeHistogram,
        Err(_) => return Err(format!("{}: unknown metric type {}", mf.name, mf.r#type)),
    };
    if mf.name.is_empty() {
        return Err("a family without a name".into());
    }
    let fi = out.families.len();
    out.families.push(Family {
        name: mf.name.clone(),
        kind,
        help: mf.help,
        unit: mf.unit,
    });
    let name = mf.name;
    // `_created` samples are named from the family without `_total`, as OpenMetrics names them.
    let created_name = format!("{}_created", name.strip_suffix("_total").unwrap_or(&name));
    for m in mf.metric {
        let base = labels(&m.label);
        let ts = (m.timestamp_ms != 0).then_some(m.timestamp_ms);
        let mut push =
            |name: String, labels: Vec<(String, String)>, value: f64, ex: Option<Exemplar>| {
                out.samples.push(Sample {
                    family: fi,
                    name,
                    labels,
                    value,
                    timestamp_ms: ts,
                    exemplar: ex.map(Box::new),
                });
            };
        match kind {
            Type::Counter => {
                let c = m.counter.unwrap_or_default();
                push(
                    name.clone(),
                    base.clone(),
                    c.value,
                    c.exemplar.as_ref().map(exemplar),
                );
                if let Some(secs) = created_secs(&c.created_timestamp) {
                    push(created_name.clone(), base, secs, None);
                }
            }
            Type::Gauge => push(name.clone(), base, m.gauge.unwrap_or_default().value, None),
            Type::Unknown => push(
                name.clone(),
                base,
                m.untyped.unwrap_or_default().value,
                None,
            ),
            Type::Summary => {
                let s = m.summary.unwrap_or_default();
                for q in &s.quantile {
                    let mut l = base.clone();
                    l.push(("quantile".into(), q.quantile.to_string()));
                    push(name.clone(), l, q.value, None);
                }
                push(format!("{name}_sum"), base.clone(), s.sample_sum, None);
                push(
                    format!("{name}_count"),
                    base.clone(),
                    s.sample_count as f64,
                    None,
                );
                if let Some(secs) = created_secs(&s.created_timestamp) {
                    push(format!("{name}_created"), base, secs, None);
                }
            }
            Type::Histogram | Type::GaugeHistogram => {
                let h = m.histogram.unwrap_or_default();
                let count = if h.sample_count_float > 0.0 {
                    h.sample_count_float
                } else {
                    h.sample_count as f64
                };
                let native = is_native(&h);
                if native {
                    let mut n = self::native(fi, &base, ts, &h, count, kind)?;
                    n.name.clone_from(&name);
                    out.natives.push(n);
                }
                if !native || (keep_classic && !h.bucket.is_empty()) {
                    let (bucket, sum, cnt) = if kind == Type::GaugeHistogram {
                        ("_bucket", "_gsum", "_gcount")
                    } else {
                        ("_bucket", "_sum", "_count")
                    };
                    for b in &h.bucket {
                        let mut l = base.clone();
                        l.push(("le".into(), b.upper_bound.to_string()));
                        let c = if b.cumulative_count_float > 0.0 {
                            b.cumulative_count_float
                        } else {
                            b.cumulative_count as f64
                        };
                        push(
                            format!("{name}{bucket}"),
                            l,
                            c,
                            b.exemplar.as_ref().map(exemplar),
                        );
                    }
                    push(format!("{name}{sum}"), base.clone(), h.sample_sum, None);
                    push(format!("{name}{cnt}"), base.clone(), count, None);
                    if let Some(secs) = created_secs(&h.created_timestamp) {
                        push(format!("{name}_created"), base, secs, None);
                    }
                }
            }
            Type::Info | Type::StateSet => {}
        }
    }
    Ok(())
}

/// Prometheus's rule: a histogram is native when it has spans or a zero bucket (an empty one
/// carries a no-op span).
fn is_native(h: &pb::Histogram) -> bool {
    !h.positive_span.is_empty()
        || !h.negative_span.is_empty()
        || h.zero_threshold > 0.0
        || h.zero_count > 0
        || h.zero_count_float > 0.0
}

fn native(
    family: usize,
    labels: &[(String, String)],
    timestamp_ms: Option<i64>,
    h: &pb::Histogram,
    count: f64,
    kind: Type,
) -> Result<Native, String> {
    if !(-4..=8).contains(&h.schema) {
        return Err(format!(
            "native histogram schema {} (expected -4 to 8)",
            h.schema
        ));
    }
    let pos = sparse(&h.positive_span, &h.positive_delta, &h.positive_count)
        .map_err(|e| format!("positive buckets: {e}"))?;
    let neg = sparse(&h.negative_span, &h.negative_delta, &h.negative_count)
        .map_err(|e| format!("negative buckets: {e}"))?;
    let mut exemplars: Vec<Exemplar> = h.exemplars.iter().map(exemplar).collect();
    if exemplars.is_empty() {
        exemplars = h
            .bucket
            .iter()
            .filter_map(|b| b.exemplar.as_ref().map(exemplar))
            .collect();
    }
    let mut n = Native {
        family,
        name: String::new(),
        labels: labels.to_vec(),
        timestamp_ms,
        count: count.max(0.0) as u64,
        sum: h.sample_sum,
        scale: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: if h.zero_count_float > 0.0 {
            h.zero_count_float as u64
        } else {
            h.zero_count
        },
        positive: pos,
        negative: neg,
        created_secs: created_secs(&h.created_timestamp),
        exemplars,
        gauge: kind == Type::GaugeHistogram,
    };
    while n.dense_len() > MAX_DENSE_BUCKETS || !n.offsets_fit() {
        if !n.downscale() {
            return Err("native histogram buckets span too wide a range".into());
        }
    }
    Ok(n)
}

/// The populated buckets as (OTLP index, count): Prometheus's bucket `i` holds
/// (base^(i-1), base^i], OTLP's `i - 1` the same range.
fn sparse(
    spans: &[pb::BucketSpan],
    deltas: &[i64],
    counts: &[f64],
) -> Result<Vec<(i64, u64)>, String> {
    let declared: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
    let (n, float) = if counts.is_empty() {
        (deltas.len() as u64, false)
    } else {
        (counts.len() as u64, true)
    };
    if declared != n {
        return Err(format!(
            "the spans hold {declared} buckets but {n} counts were sent"
        ));
    }
    let mut out = Vec::with_capacity(n as usize);
    let mut idx: i64 = 0;
    let mut k = 0usize;
    let mut running: i64 = 0;
    for (j, s) in spans.iter().enumerate() {
        // Only the first span may start below the previous end (it starts anywhere).
        if j > 0 && s.offset < 0 {
            return Err(format!("span {j} has a negative offset {}", s.offset));
        }
        idx += i64::from(s.offset);
        for _ in 0..s.length {
            let c = if float {
                let c = counts[k];
                if c.is_nan() || c < 0.0 {
                    return Err(format!("bucket count {c}"));
                }
                c.round() as u64
            } else {
                running = running
                    .checked_add(deltas[k])
                    .ok_or("bucket count overflows")?;
                u64::try_from(running).map_err(|_| format!("negative bucket count {running}"))?
            };
            out.push((idx - 1, c));
            idx += 1;
            k += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delimited(families: &[pb::MetricFamily]) -> Vec<u8> {
        let mut b = Vec::new();
        for f in families {
            f.encode_length_delimited(&mut b).unwrap();
        }
        b
    }

    fn native_family(h: pb::Histogram) -> pb::MetricFamily {
        pb::MetricFamily {
            name: "rpc_seconds".into(),
            help: "RPC latency.".into(),
            r#type: pb::MetricType::Histogram as i32,
            metric: vec![pb::Metric {
                label: vec![pb::LabelPair {
                    name: "svc".into(),
                    value: "a".into(),
                }],
                histogram: Some(h),
                ..Default::default()
            }],
            unit: String::new(),
        }
    }

    /// Spans with a gap, delta-encoded counts: the dense OTLP buckets start one index lower.
    #[test]
    fn native_spans_and_deltas_become_dense_buckets() {
        let h = pb::Histogram {
            sample_count: 9,
            sample_sum: 12.5,
            schema: 1,
            zero_threshold: 0.001,
            zero_count: 1,
            positive_span: vec![
                pb::BucketSpan {
                    offset: 2,
                    length: 2,
                },
                pb::BucketSpan {
                    offset: 1,
                    length: 1,
                },
            ],
            positive_delta: vec![3, -1, 1],
            negative_span: vec![pb::BucketSpan {
                offset: 0,
                length: 1,
            }],
            negative_delta: vec![2],
            ..Default::default()
        };
        let s = parse(&delimited(&[native_family(h)]), false).unwrap();
        assert!(s.samples.is_empty(), "{:?}", s.samples);
        let n = &s.natives[0];
        assert_eq!((n.scale, n.count, n.sum, n.zero_count), (1, 9, 12.5, 1));
        // Prometheus indexes 2, 3, 5 with counts 3, 2, 3 → OTLP offset 1: [3, 2, 0, 3].
        assert_eq!(n.dense(&n.positive), (1, vec![3, 2, 0, 3]));
        assert_eq!(n.dense(&n.negative), (-1, vec![2]));
        assert_eq!(n.labels, [("svc".to_string(), "a".to_string())]);
    }

    #[test]
    fn classic_series_and_both_kinds_of_histogram() {
        let h = pb::Histogram {
            sample_count: 3,
            sample_sum: 1.5,
            bucket: vec![
                pb::Bucket {
                    cumulative_count: 1,
                    upper_bound: 0.5,
                    ..Default::default()
                },
                pb::Bucket {
                    cumulative_count: 3,
                    upper_bound: 1.0,
                    ..Default::default()
                },
            ],
            // The no-op span marks a native histogram without observations in buckets.
            positive_span: vec![pb::BucketSpan {
                offset: 0,
                length: 0,
            }],
            ..Default::default()
        };
        let counter = pb::MetricFamily {
            name: "jobs_total".into(),
            r#type: pb::MetricType::Counter as i32,
            metric: vec![pb::Metric {
                counter: Some(pb::Counter {
                    value: 4.0,
                    created_timestamp: Some(pb::Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                timestamp_ms: 1_700_000_100_000,
                ..Default::default()
            }],
            ..Default::default()
        };
        let body = delimited(&[counter, native_family(h)]);
        let s = parse(&body, false).unwrap();
        let names: Vec<&str> = s.samples.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["jobs_total", "jobs_created"]);
        assert_eq!(s.samples[0].timestamp_ms, Some(1_700_000_100_000));
        assert_eq!(s.natives.len(), 1);
        let s = parse(&body, true).unwrap();
        let names: Vec<&str> = s.samples.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "jobs_total",
                "jobs_created",
                "rpc_seconds_bucket",
                "rpc_seconds_bucket",
                "rpc_seconds_sum",
                "rpc_seconds_count"
            ]
        );
        assert_eq!(s.natives.len(), 1);
    }

    #[test]
    fn a_far_spread_histogram_is_downscaled_to_fit() {
        let h = pb::Histogram {
            sample_count: 2,
            schema: 8,
            positive_span: vec![
                pb::BucketSpan {
                    offset: -100_000,
                    length: 1,
                },
                pb::BucketSpan {
                    offset: 200_000,
                    length: 1,
                },
            ],
            positive_delta: vec![1, 0],
            ..Default::default()
        };
        let s = parse(&delimited(&[native_family(h)]), false).unwrap();
        let n = &s.natives[0];
        let (_, dense) = n.dense(&n.positive);
        assert!(dense.len() as i64 <= MAX_DENSE_BUCKETS, "{}", dense.len());
        assert!(n.scale < 8);
        assert_eq!(dense.iter().sum::<u64>(), 2);
    }

    /// The fuzz seed (written by hand from the format) parses: a counter and a native
    /// histogram with both signs of buckets.
    #[test]
    fn the_fuzz_seed_is_a_valid_exposition() {
        let seed = include_bytes!("../../../fuzz/seeds/prometheus_text/native-protobuf");
        let s = parse(seed, false).unwrap();
        assert_eq!(s.samples.len(), 1);
        assert_eq!(
            (s.samples[0].name.as_str(), s.samples[0].value),
            ("jobs_total", 4.0)
        );
        let n = &s.natives[0];
        assert_eq!(n.timestamp_ms, Some(1_700_000_000_000));
        assert_eq!(n.dense(&n.negative), (-3, vec![1]));
        assert_eq!(n.dense(&n.positive), (3, vec![2, 0, 3]));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let bad_spans = pb::Histogram {
            schema: 0,
            positive_span: vec![pb::BucketSpan {
                offset: 0,
                length: 3,
            }],
            positive_delta: vec![1],
            ..Default::default()
        };
        let negative = pb::Histogram {
            positive_span: vec![pb::BucketSpan {
                offset: 0,
                length: 2,
            }],
            positive_delta: vec![1, -2],
            ..Default::default()
        };
        let schema = pb::Histogram {
            schema: 9,
            positive_span: vec![pb::BucketSpan {
                offset: 0,
                length: 0,
            }],
            ..Default::default()
        };
        for h in [bad_spans, negative, schema] {
            assert!(parse(&delimited(&[native_family(h)]), false).is_err());
        }
        assert!(parse(b"\x05abc", false).is_err());
        for n in 0..200u32 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 31 + 7) as u8).collect();
            let _ = parse(&junk, false);
        }
    }
}
