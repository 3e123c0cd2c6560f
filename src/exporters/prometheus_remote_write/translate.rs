//! OTLP metrics to series: names and labels per point, delta to cumulative, histograms,
//! summaries, native histograms, `target_info`, sharded by label hash.

use super::*;
use crate::prom::{self, fmt_float, millis, number, point_labels};

/// What one shard sends for one export: encoded `WriteRequest`s (uncompressed) and the number
/// of data points they carry.
#[derive(Default)]
pub struct Shard {
    pub bodies: Vec<Vec<u8>>,
    pub points: usize,
    pub(super) current: Vec<u8>,
}

pub struct Output {
    pub shards: Vec<Shard>,
    pub dropped_delta_points: usize,
}

/// Cumulative state of a delta series.
pub(super) enum Acc {
    Sum(f64),
    Hist {
        bounds: Vec<f64>,
        counts: Vec<u64>,
        count: u64,
        sum: f64,
    },
}

pub(super) struct DeltaState {
    pub(super) acc: Acc,
    pub(super) seen: Instant,
}

pub(super) type Deltas = HashMap<Box<[u8]>, DeltaState>;

pub(super) fn delta_state<'d>(
    deltas: &'d mut Deltas,
    key: &[u8],
    now: Instant,
    init: Acc,
) -> &'d mut Acc {
    if !deltas.contains_key(key) {
        deltas.insert(
            key.into(),
            DeltaState {
                acc: init,
                seen: now,
            },
        );
    }
    let st = deltas.get_mut(key).expect("inserted above");
    st.seen = now;
    &mut st.acc
}

pub struct Translator {
    pub(super) cfg: Config,
    /// Fixed seed: a series hashes alike in every export, so it always lands in the same shard.
    pub(super) hasher: FixedState,
    /// Held for a whole translation: exports are translated one at a time.
    pub(super) state: Mutex<State>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) deltas: Deltas,
    /// Attribute key → label name, for keys that need rewriting.
    pub(super) names: HashMap<String, String>,
}

/// Encoded `le` labels of the last bucket layout seen (histograms of a metric share one);
/// `None` for an infinite upper bound, which is the `+Inf` bucket.
#[derive(Default)]
pub(super) struct LeCache {
    pub(super) bounds: Vec<f64>,
    pub(super) les: Vec<Option<Vec<u8>>>,
}

impl LeCache {
    pub(super) fn get(&mut self, bounds: &[f64]) -> &[Option<Vec<u8>>] {
        if self.bounds != bounds {
            self.bounds = bounds.to_vec();
            self.les = bounds
                .iter()
                .map(|b| (*b != f64::INFINITY).then(|| label_bytes("le", &fmt_float(*b))))
                .collect();
        }
        &self.les
    }
}

impl Translator {
    pub fn new(cfg: Config) -> Self {
        Translator {
            cfg,
            hasher: FixedState::with_seed(0x5eed_f0e1_1e55_0001),
            state: Mutex::new(State::default()),
        }
    }

    /// Translates one export into `shards` lists of encoded write requests.
    pub fn translate(&self, resources: &[ResourceMetrics], shards: usize) -> Output {
        let mut b = Builder::new(self.hasher);
        let mut dropped = 0usize;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *state;
        let deltas = &mut state.deltas;
        let mut names = Names {
            known: &state.names,
            misses: Vec::new(),
        };
        let now = Instant::now();
        deltas.retain(|_, s| now.duration_since(s.seen) < self.cfg.delta_expiry);
        let (ns, sfx) = (self.cfg.namespace.as_deref(), self.cfg.add_metric_suffixes);
        let rules = prom::ResourceRules {
            constant: &self.cfg.external_labels,
            all_attributes: self.cfg.resource_to_telemetry_conversion.enabled,
        };
        let mut key = Vec::new();
        let mut le_cache = LeCache::default();
        let inf = label_bytes("le", "+Inf");
        let mut ep = EncodedPoint::default();
        for rm in resources {
            let res: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
            let base = prom::resource_labels(res, &rules, &mut names);
            let mut latest = 0i64;
            for sm in &rm.scope_metrics {
                let scoped = prom::scope_labels(&base, sm.scope.as_ref(), true);
                // A point's labels: the scope's, borrowed, plus its attributes.
                let mut l: Vec<Label<'_>> = Vec::new();
                for m in &sm.metrics {
                    let Some(data) = &m.data else { continue };
                    match data {
                        Data::Gauge(g) => {
                            let name = metric_name(&m.name, &m.unit, false, true, sfx, ns);
                            let name = label_bytes("__name__", &name);
                            for p in &g.data_points {
                                let ts = millis(p.time_unix_nano);
                                latest = latest.max(ts);
                                point_labels(&mut l, &scoped, &mut names, &p.attributes);
                                ep.encode(&l, "");
                                let s = b.series(&ep, &name, None);
                                b.point(s);
                                b.sample(s, ts, number(p));
                            }
                        }
                        Data::Sum(sum) => {
                            let counter = sum.is_monotonic;
                            let name = metric_name(&m.name, &m.unit, counter, !counter, sfx, ns);
                            let name = label_bytes("__name__", &name);
                            let delta =
                                sum.aggregation_temporality == AggregationTemporality::Delta as i32;
                            for p in &sum.data_points {
                                if delta && self.cfg.delta_temporality == DeltaMode::Drop {
                                    dropped += 1;
                                    continue;
                                }
                                let ts = millis(p.time_unix_nano);
                                latest = latest.max(ts);
                                point_labels(&mut l, &scoped, &mut names, &p.attributes);
                                ep.encode(&l, "");
                                let s = b.series(&ep, &name, None);
                                let mut v = number(p);
                                if delta {
                                    let acc =
                                        delta_state(deltas, b.labels_of(s), now, Acc::Sum(0.0));
                                    if let Acc::Sum(acc) = acc {
                                        if !v.is_nan() {
                                            *acc += v;
                                        }
                                        v = *acc;
                                    }
                                }
                                b.point(s);
                                b.sample(s, ts, v);
                            }
                        }
                        Data::Histogram(h) => {
                            let name = metric_name(&m.name, &m.unit, false, false, sfx, ns);
                            let series_names = [
                                label_bytes("__name__", &format!("{name}_bucket")),
                                label_bytes("__name__", &format!("{name}_sum")),
                                label_bytes("__name__", &format!("{name}_count")),
                                label_bytes("__name__", &name),
                            ];
                            let delta =
                                h.aggregation_temporality == AggregationTemporality::Delta as i32;
                            for p in &h.data_points {
                                if delta && self.cfg.delta_temporality == DeltaMode::Drop {
                                    dropped += 1;
                                    continue;
                                }
                                let ts = millis(p.time_unix_nano);
                                latest = latest.max(ts);
                                point_labels(&mut l, &scoped, &mut names, &p.attributes);
                                ep.encode(&l, "le");
                                let acc_counts;
                                let (mut counts, mut count, mut sum) =
                                    (&p.bucket_counts[..], p.count, p.sum);
                                if delta {
                                    key.clear();
                                    ep.assemble(&mut key, &series_names[3], None);
                                    let (c, n, s) = accumulate_hist(deltas, &key, p, now);
                                    acc_counts = c;
                                    (counts, count, sum) = (&acc_counts, n, s);
                                }
                                let les = le_cache.get(&p.explicit_bounds);
                                let stale = p.flags & 1 == 1;
                                let val =
                                    |v: f64| if stale { f64::from_bits(STALE_NAN) } else { v };
                                let mut cumulative = 0u64;
                                let mut first = None;
                                for (c, le) in counts.iter().zip(les) {
                                    cumulative += c;
                                    let Some(le) = le else { break };
                                    let s = b.series(&ep, &series_names[0], Some(le));
                                    first.get_or_insert(s);
                                    b.sample(s, ts, val(cumulative as f64));
                                }
                                let s = b.series(&ep, &series_names[0], Some(&inf));
                                b.point(*first.get_or_insert(s));
                                b.sample(s, ts, val(count as f64));
                                if let Some(sum) = sum {
                                    let s = b.series(&ep, &series_names[1], None);
                                    b.sample(s, ts, val(sum));
                                }
                                let s = b.series(&ep, &series_names[2], None);
                                b.sample(s, ts, val(count as f64));
                            }
                        }
                        Data::Summary(sm) => {
                            let name = metric_name(&m.name, &m.unit, false, false, sfx, ns);
                            let (sum_name, count_name) = (
                                label_bytes("__name__", &format!("{name}_sum")),
                                label_bytes("__name__", &format!("{name}_count")),
                            );
                            let name = label_bytes("__name__", &name);
                            for p in &sm.data_points {
                                let ts = millis(p.time_unix_nano);
                                latest = latest.max(ts);
                                let stale = p.flags & 1 == 1;
                                let val =
                                    |v: f64| if stale { f64::from_bits(STALE_NAN) } else { v };
                                point_labels(&mut l, &scoped, &mut names, &p.attributes);
                                ep.encode(&l, "quantile");
                                let mut first = None;
                                for q in &p.quantile_values {
                                    let qs = label_bytes("quantile", &fmt_float(q.quantile));
                                    let s = b.series(&ep, &name, Some(&qs));
                                    first.get_or_insert(s);
                                    b.sample(s, ts, val(q.value));
                                }
                                let s = b.series(&ep, &sum_name, None);
                                first.get_or_insert(s);
                                b.sample(s, ts, val(p.sum));
                                let s = b.series(&ep, &count_name, None);
                                b.point(*first.get_or_insert(s));
                                b.sample(s, ts, val(p.count as f64));
                            }
                        }
                        Data::ExponentialHistogram(eh) => {
                            let name = metric_name(&m.name, &m.unit, false, false, sfx, ns);
                            let name = label_bytes("__name__", &name);
                            for p in &eh.data_points {
                                if eh.aggregation_temporality
                                    == AggregationTemporality::Delta as i32
                                {
                                    dropped += 1;
                                    continue;
                                }
                                let ts = millis(p.time_unix_nano);
                                latest = latest.max(ts);
                                point_labels(&mut l, &scoped, &mut names, &p.attributes);
                                ep.encode(&l, "");
                                let s = b.series(&ep, &name, None);
                                b.point(s);
                                b.histograms.push((s, native_histogram(p, ts)));
                            }
                        }
                    }
                }
            }
            if self.cfg.target_info.enabled
                && latest > 0
                && let Some(info) = prom::target_info_labels(&base, res, &mut names)
            {
                ep.encode(&info, "");
                let name = label_bytes("__name__", &prom::target_info_name(ns));
                let s = b.series(&ep, &name, None);
                b.sample(s, latest, 1.0);
            }
        }
        for key in names.misses {
            let name = label_name(&key).into_owned();
            state.names.insert(key, name);
        }
        Output {
            shards: b.finish(shards, self.cfg.max_batch_size_bytes),
            dropped_delta_points: dropped,
        }
    }
}

/// Adds a delta histogram point to its series' running totals; returns the cumulative
/// `(bucket counts, count, sum)`. A new bucket layout starts the series over.
pub(super) fn accumulate_hist(
    deltas: &mut Deltas,
    key: &[u8],
    p: &HistogramDataPoint,
    now: Instant,
) -> (Vec<u64>, u64, Option<f64>) {
    let fresh = || Acc::Hist {
        bounds: p.explicit_bounds.clone(),
        counts: vec![0; p.bucket_counts.len()],
        count: 0,
        sum: 0.0,
    };
    let acc = delta_state(deltas, key, now, fresh());
    if let Acc::Hist { bounds, counts, .. } = acc
        && (*bounds != p.explicit_bounds || counts.len() != p.bucket_counts.len())
    {
        *acc = fresh();
    }
    match acc {
        Acc::Hist {
            counts, count, sum, ..
        } => {
            for (a, c) in counts.iter_mut().zip(&p.bucket_counts) {
                *a += c;
            }
            *count += p.count;
            *sum += p.sum.unwrap_or(0.0);
            (counts.clone(), *count, Some(*sum))
        }
        Acc::Sum(_) => {
            // The same labels were a delta sum before: start this histogram over.
            *acc = fresh();
            (p.bucket_counts.clone(), p.count, p.sum)
        }
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

pub(super) type Buckets =
    opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;

pub(super) fn downscale(b: Buckets) -> Buckets {
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

pub(super) fn spans_and_deltas(b: &Buckets) -> (Vec<pb::BucketSpan>, Vec<i64>) {
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
