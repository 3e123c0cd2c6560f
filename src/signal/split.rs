//! Splitting a batch into chunks of at most `max` items (spans, data points, log records).
//!
//! Items are moved, never cloned; a resource or scope header is cloned only when its items
//! straddle two chunks.

use opentelemetry_proto::tonic::metrics::v1::{
    Metric, ResourceMetrics, ScopeMetrics, metric::Data,
};

use super::{Batch, data_point_count};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans as Rs, ScopeSpans as Ss};
use std::collections::HashMap;

impl Batch {
    /// Splits into batches of at most `max` items each (the last may be smaller).
    /// `max == 0` means no limit.
    pub fn split(self, max: usize) -> Vec<Batch> {
        // A profiles request is never split (its samples point into its one dictionary).
        if max == 0 || self.item_count() <= max || self.signal() == super::Signal::Profiles {
            return vec![self];
        }
        // Encoded batches are split on the wire, without decoding them.
        let decoded = match self {
            Batch::Encoded(e) => {
                let signal = e.signal();
                let bytes = Batch::Encoded(e).into_request_bytes();
                return super::wire_split::split_request_by(signal, &bytes, usize::MAX, max)
                    .into_iter()
                    .map(|(b, items)| {
                        Batch::Encoded(super::Encoded::new(signal, bytes::Bytes::from(b), items))
                    })
                    .collect();
            }
            d => d,
        };
        match decoded {
            Batch::Traces(v) => split_two_level!(v, max, scope_spans, spans, Traces),
            Batch::Logs(v) => split_two_level!(v, max, scope_logs, log_records, Logs),
            Batch::Metrics(v) => split_metrics(v, max)
                .into_iter()
                .map(Batch::Metrics)
                .collect(),
            Batch::Encoded(_) => unreachable!("decoded above"),
        }
    }
}

/// Traces and logs share a shape: resource → scope → items.
macro_rules! split_two_level {
    ($res:expr, $max:expr, $scopes:ident, $items:ident, $variant:ident) => {{
        let max = $max;
        let mut out = Vec::new();
        let mut cur = Vec::new();
        let mut cur_n = 0usize;
        for mut r in $res {
            let scopes = std::mem::take(&mut r.$scopes);
            let mut r_out = r.clone();
            for mut s in scopes {
                let mut items = std::mem::take(&mut s.$items);
                while !items.is_empty() {
                    let room = max - cur_n;
                    let rest = if items.len() > room {
                        items.split_off(room)
                    } else {
                        Vec::new()
                    };
                    cur_n += items.len();
                    let mut s_out = s.clone();
                    s_out.$items = items;
                    r_out.$scopes.push(s_out);
                    items = rest;
                    if cur_n == max {
                        cur.push(std::mem::replace(&mut r_out, r.clone()));
                        out.push(Batch::$variant(std::mem::take(&mut cur)));
                        cur_n = 0;
                    }
                }
            }
            if !r_out.$scopes.is_empty() {
                cur.push(r_out);
            }
        }
        if !cur.is_empty() {
            out.push(Batch::$variant(cur));
        }
        out
    }};
}
use split_two_level;

fn take_points(m: &mut Metric, n: usize) -> Metric {
    let mut head = Metric {
        name: m.name.clone(),
        description: m.description.clone(),
        unit: m.unit.clone(),
        metadata: m.metadata.clone(),
        data: None,
    };
    fn front<T>(v: &mut Vec<T>, n: usize) -> Vec<T> {
        let rest = v.split_off(n.min(v.len()));
        std::mem::replace(v, rest)
    }
    head.data = m.data.as_mut().map(|d| match d {
        Data::Gauge(g) => Data::Gauge(opentelemetry_proto::tonic::metrics::v1::Gauge {
            data_points: front(&mut g.data_points, n),
        }),
        Data::Sum(s) => Data::Sum(opentelemetry_proto::tonic::metrics::v1::Sum {
            data_points: front(&mut s.data_points, n),
            aggregation_temporality: s.aggregation_temporality,
            is_monotonic: s.is_monotonic,
        }),
        Data::Histogram(h) => Data::Histogram(opentelemetry_proto::tonic::metrics::v1::Histogram {
            data_points: front(&mut h.data_points, n),
            aggregation_temporality: h.aggregation_temporality,
        }),
        Data::ExponentialHistogram(h) => Data::ExponentialHistogram(
            opentelemetry_proto::tonic::metrics::v1::ExponentialHistogram {
                data_points: front(&mut h.data_points, n),
                aggregation_temporality: h.aggregation_temporality,
            },
        ),
        Data::Summary(s) => Data::Summary(opentelemetry_proto::tonic::metrics::v1::Summary {
            data_points: front(&mut s.data_points, n),
        }),
    });
    head
}

fn split_metrics(res: Vec<ResourceMetrics>, max: usize) -> Vec<Vec<ResourceMetrics>> {
    let mut out = Vec::new();
    let mut cur: Vec<ResourceMetrics> = Vec::new();
    let mut cur_n = 0usize;
    for mut r in res {
        let scopes = std::mem::take(&mut r.scope_metrics);
        let mut r_out = r.clone();
        for mut s in scopes {
            let metrics = std::mem::take(&mut s.metrics);
            let mut s_out = ScopeMetrics {
                metrics: Vec::new(),
                ..s.clone()
            };
            for mut m in metrics {
                loop {
                    let points = m.data.as_ref().map_or(0, data_point_count);
                    let room = max - cur_n;
                    if points <= room {
                        cur_n += points;
                        s_out.metrics.push(m);
                        if cur_n == max {
                            r_out.scope_metrics.push(std::mem::replace(
                                &mut s_out,
                                ScopeMetrics {
                                    metrics: Vec::new(),
                                    ..s.clone()
                                },
                            ));
                            cur.push(std::mem::replace(&mut r_out, r.clone()));
                            out.push(std::mem::take(&mut cur));
                            cur_n = 0;
                        }
                        break;
                    }
                    s_out.metrics.push(take_points(&mut m, room));
                    r_out.scope_metrics.push(std::mem::replace(
                        &mut s_out,
                        ScopeMetrics {
                            metrics: Vec::new(),
                            ..s.clone()
                        },
                    ));
                    cur.push(std::mem::replace(&mut r_out, r.clone()));
                    out.push(std::mem::take(&mut cur));
                    cur_n = 0;
                }
            }
            if !s_out.metrics.is_empty() {
                r_out.scope_metrics.push(s_out);
            }
        }
        if !r_out.scope_metrics.is_empty() {
            cur.push(r_out);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A trace id as a map key (shorter ids right-aligned, as the wire allows only 16 bytes).
pub type TraceId = [u8; 16];

/// Each data point of `m` as a metric of its own (name, unit, type and temporality kept), with
/// the point's attributes.
pub fn metric_points(
    m: &opentelemetry_proto::tonic::metrics::v1::Metric,
) -> Vec<opentelemetry_proto::tonic::metrics::v1::Metric> {
    use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data};
    let one = |data: Data| Metric {
        name: m.name.clone(),
        description: m.description.clone(),
        unit: m.unit.clone(),
        metadata: m.metadata.clone(),
        data: Some(data),
    };
    macro_rules! each {
        ($x:expr, $v:ident) => {
            $x.data_points
                .iter()
                .map(|p| {
                    let mut y = $x.clone();
                    y.data_points = vec![p.clone()];
                    one(Data::$v(y))
                })
                .collect()
        };
    }
    match &m.data {
        Some(Data::Gauge(x)) => each!(x, Gauge),
        Some(Data::Sum(x)) => each!(x, Sum),
        Some(Data::Histogram(x)) => each!(x, Histogram),
        Some(Data::ExponentialHistogram(x)) => each!(x, ExponentialHistogram),
        Some(Data::Summary(x)) => each!(x, Summary),
        None => vec![m.clone()],
    }
}

/// The attributes of a one-point metric's point (see [`metric_points`]).
pub fn point_attributes(
    m: &opentelemetry_proto::tonic::metrics::v1::Metric,
) -> &[opentelemetry_proto::tonic::common::v1::KeyValue] {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let a = match &m.data {
        Some(Data::Gauge(x)) => x.data_points.first().map(|p| &p.attributes),
        Some(Data::Sum(x)) => x.data_points.first().map(|p| &p.attributes),
        Some(Data::Histogram(x)) => x.data_points.first().map(|p| &p.attributes),
        Some(Data::ExponentialHistogram(x)) => x.data_points.first().map(|p| &p.attributes),
        Some(Data::Summary(x)) => x.data_points.first().map(|p| &p.attributes),
        None => None,
    };
    a.map_or(&[], Vec::as_slice)
}

pub fn trace_key(id: &[u8]) -> TraceId {
    let mut k = [0u8; 16];
    let n = id.len().min(16);
    k[16 - n..].copy_from_slice(&id[id.len() - n..]);
    k
}

/// Splits a resource's spans by trace: one fragment (resource and scopes kept) per trace.
pub fn split_by_trace(rs: Rs, out: &mut Vec<(TraceId, Rs)>) {
    let Rs {
        resource,
        scope_spans,
        schema_url,
    } = rs;
    let mut index: HashMap<TraceId, usize> = HashMap::new();
    let start = out.len();
    for ss in scope_spans {
        let Ss {
            scope,
            spans,
            schema_url: scope_schema,
        } = ss;
        for span in spans {
            let key = trace_key(&span.trace_id);
            let i = *index.entry(key).or_insert_with(|| {
                out.push((
                    key,
                    Rs {
                        resource: resource.clone(),
                        scope_spans: Vec::new(),
                        schema_url: schema_url.clone(),
                    },
                ));
                out.len() - 1
            });
            let frag = &mut out[i].1;
            // Spans of one scope arrive together: reuse the fragment's last scope if it is ours.
            let same = frag
                .scope_spans
                .last()
                .is_some_and(|s| s.scope == scope && s.schema_url == scope_schema);
            if !same {
                frag.scope_spans.push(Ss {
                    scope: scope.clone(),
                    spans: Vec::new(),
                    schema_url: scope_schema.clone(),
                });
            }
            if let Some(last) = frag.scope_spans.last_mut() {
                last.spans.push(span);
            }
        }
    }
    debug_assert!(out.len() >= start);
}

#[cfg(test)]
mod tests {
    use super::super::testdata;
    use super::*;

    fn span_names(b: &Batch) -> Vec<String> {
        match b {
            Batch::Traces(v) => v
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|s| s.name.clone())
                .collect(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn splits_spans_across_scopes_and_resources_keeping_order() {
        let mut b = testdata::spans("a", 3, 4);
        b.append(testdata::spans("b", 1, 5)).unwrap();
        let all = span_names(&b);
        let parts = b.split(5);
        assert_eq!(
            parts.iter().map(Batch::item_count).collect::<Vec<_>>(),
            vec![5, 5, 5, 2]
        );
        let joined: Vec<String> = parts.iter().flat_map(span_names).collect();
        // Names repeat across the two resources, so compare the full sequence.
        assert_eq!(joined, all);
        // Every chunk keeps its resource and scope headers.
        for p in &parts {
            let Batch::Traces(v) = p else { unreachable!() };
            assert!(
                v.iter().all(
                    |r| r.resource.is_some() && r.scope_spans.iter().all(|s| s.scope.is_some())
                )
            );
        }
    }

    #[test]
    fn splits_one_metric_by_data_points_and_logs_by_records() {
        let parts = testdata::gauge(10).split(4);
        assert_eq!(
            parts.iter().map(Batch::item_count).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        let Batch::Metrics(v) = &parts[2] else {
            unreachable!()
        };
        assert_eq!(v[0].scope_metrics[0].metrics[0].name, "g");
        let parts = testdata::logs(7).split(7);
        assert_eq!(parts.len(), 1);
        let parts = testdata::logs(7).split(3);
        assert_eq!(
            parts.iter().map(Batch::item_count).collect::<Vec<_>>(),
            vec![3, 3, 1]
        );
    }

    #[test]
    fn zero_means_no_limit() {
        assert_eq!(testdata::logs(100).split(0).len(), 1);
    }
}
