//! The in-memory unit of data: OTLP protobuf messages, moved (not copied) between stages.

pub mod aggregate;
pub mod build;
pub mod exphist;
pub mod group;
pub mod json;
pub mod response;
pub mod split;
pub mod stream;
pub mod text;
pub mod value;
pub mod wire;
mod wire_schema;
pub mod wire_split;

use std::fmt;

use bytes::Bytes;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric::Data};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
    /// OTLP profiles (the Collector's development signal): carried encoded, from the otlp
    /// receiver to the otlp exporters; no processor looks inside.
    Profiles,
}

/// The three stable signals, for a component that takes them all (profiles are not among
/// them: a component names that signal itself).
pub const ALL_SIGNALS: &[Signal] = &Signal::ALL;
pub const TRACES: &[Signal] = &[Signal::Traces];
pub const METRICS: &[Signal] = &[Signal::Metrics];
pub const LOGS: &[Signal] = &[Signal::Logs];
/// Traces, metrics, logs and profiles: the otlp receiver and exporters.
pub const WITH_PROFILES: &[Signal] = &Signal::EVERY;

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];
    /// Every signal, profiles included: what per-signal arrays are indexed by.
    pub const EVERY: [Signal; 4] = [
        Signal::Traces,
        Signal::Metrics,
        Signal::Logs,
        Signal::Profiles,
    ];
    pub const COUNT: usize = 4;

    /// The Collector's word for one item of this signal, as used in self-metric names.
    pub fn item_name(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "metric_points",
            Signal::Logs => "log_records",
            Signal::Profiles => "profiles",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
            Signal::Profiles => "profiles",
        })
    }
}

/// A batch of one signal: the `resource_*` list of an OTLP export request, decoded, or still in
/// its wire form.
#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    Traces(Vec<ResourceSpans>),
    Metrics(Vec<ResourceMetrics>),
    Logs(Vec<ResourceLogs>),
    /// An export request as it arrived, validated by [`wire::scan`] (so prost decodes it) and
    /// not decoded: a pipeline whose processors do not look inside passes it through untouched.
    /// Two requests of one signal concatenated are the request holding both
    /// (`repeated Resource* = 1`), so merging is appending parts.
    Encoded(Encoded),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    signal: Signal,
    parts: Vec<Bytes>,
    items: usize,
    len: usize,
}

impl Encoded {
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// `bytes` must have passed [`wire::scan`] for `signal`, which gave `items`.
    pub fn new(signal: Signal, bytes: Bytes, items: usize) -> Self {
        Encoded {
            signal,
            len: bytes.len(),
            parts: vec![bytes],
            items,
        }
    }
}

impl Batch {
    pub fn empty(signal: Signal) -> Self {
        match signal {
            Signal::Traces => Batch::Traces(Vec::new()),
            Signal::Metrics => Batch::Metrics(Vec::new()),
            Signal::Logs => Batch::Logs(Vec::new()),
            Signal::Profiles => Batch::Encoded(Encoded {
                signal,
                parts: Vec::new(),
                items: 0,
                len: 0,
            }),
        }
    }

    pub fn signal(&self) -> Signal {
        match self {
            Batch::Traces(_) => Signal::Traces,
            Batch::Metrics(_) => Signal::Metrics,
            Batch::Logs(_) => Signal::Logs,
            Batch::Encoded(e) => e.signal,
        }
    }

    /// Spans, metric data points or log records: the unit the Collector counts.
    pub fn item_count(&self) -> usize {
        match self {
            Batch::Traces(rs) => rs
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum(),
            Batch::Metrics(rm) => rm
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .map(|m| m.data.as_ref().map_or(0, data_point_count))
                .sum(),
            Batch::Logs(rl) => rl
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len())
                .sum(),
            Batch::Encoded(e) => e.items,
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Batch::Traces(v) => v.is_empty(),
            Batch::Metrics(v) => v.is_empty(),
            Batch::Logs(v) => v.is_empty(),
            Batch::Encoded(e) => e.len == 0,
        }
    }

    pub fn is_encoded(&self) -> bool {
        matches!(self, Batch::Encoded(_))
    }

    /// Appends `other` (same signal) without copying items: decoded resources are moved, encoded
    /// parts appended. When one side is encoded and the other not, the decoded side is encoded
    /// (cheaper than decoding) and the result stays encoded. Returns `other` back if the signals
    /// differ.
    /// Profiles requests never merge (each one's samples point into its own dictionary).
    pub fn append(&mut self, other: Batch) -> Result<(), Batch> {
        if self.signal() != other.signal() {
            return Err(other);
        }
        if self.signal() == Signal::Profiles {
            if self.is_empty() {
                *self = other;
                return Ok(());
            }
            return Err(other);
        }
        match (&mut *self, other) {
            (Batch::Traces(a), Batch::Traces(b)) => a.extend(b),
            (Batch::Metrics(a), Batch::Metrics(b)) => a.extend(b),
            (Batch::Logs(a), Batch::Logs(b)) => a.extend(b),
            (Batch::Encoded(a), other) => {
                let b = other.into_encoded();
                a.items += b.items;
                a.len += b.len;
                a.parts.extend(b.parts);
            }
            (this, other) => {
                let mut a = std::mem::replace(this, Batch::empty(other.signal())).into_encoded();
                let b = other.into_encoded();
                a.items += b.items;
                a.len += b.len;
                a.parts.extend(b.parts);
                *this = Batch::Encoded(a);
            }
        }
        Ok(())
    }

    fn into_encoded(self) -> Encoded {
        match self {
            Batch::Encoded(e) => e,
            decoded => {
                let items = decoded.item_count();
                Encoded::new(
                    decoded.signal(),
                    Bytes::from(decoded.encode_request()),
                    items,
                )
            }
        }
    }

    /// The decoded form, for stages that look inside. Decoding cannot fail on what the scanner
    /// accepted; the error is kept for the contract's sake.
    pub fn into_decoded(self) -> Result<Batch, prost::DecodeError> {
        use opentelemetry_proto::tonic::collector::{
            logs::v1 as l, metrics::v1 as m, trace::v1 as t,
        };
        use prost::Message;
        let Batch::Encoded(e) = self else {
            return Ok(self);
        };
        // Profiles have no decoded form here; they stay as they came.
        if e.signal == Signal::Profiles {
            return Ok(Batch::Encoded(e));
        }
        let mut out = Batch::empty(e.signal);
        for part in e.parts {
            match &mut out {
                Batch::Traces(v) => {
                    v.extend(t::ExportTraceServiceRequest::decode(part)?.resource_spans)
                }
                Batch::Metrics(v) => {
                    v.extend(m::ExportMetricsServiceRequest::decode(part)?.resource_metrics)
                }
                Batch::Logs(v) => {
                    v.extend(l::ExportLogsServiceRequest::decode(part)?.resource_logs)
                }
                Batch::Encoded(_) => unreachable!("empty() is decoded"),
            }
        }
        Ok(out)
    }

    /// The matching OTLP `Export*ServiceRequest` protobuf, without a copy when the batch is one
    /// encoded part.
    pub fn into_request_bytes(self) -> Bytes {
        match self {
            Batch::Encoded(mut e) if e.parts.len() == 1 => e.parts.pop().unwrap_or_default(),
            other => Bytes::from(other.encode_request()),
        }
    }

    /// Encodes as the matching OTLP `Export*ServiceRequest` protobuf.
    pub fn encode_request(&self) -> Vec<u8> {
        // The request message is `repeated Resource* = 1`; encoding the field directly avoids
        // moving the batch into a request struct just to serialize it.
        let mut buf = Vec::with_capacity(self.encoded_len());
        match self {
            Batch::Traces(v) => v
                .iter()
                .for_each(|m| prost::encoding::message::encode(1, m, &mut buf)),
            Batch::Metrics(v) => v
                .iter()
                .for_each(|m| prost::encoding::message::encode(1, m, &mut buf)),
            Batch::Logs(v) => v
                .iter()
                .for_each(|m| prost::encoding::message::encode(1, m, &mut buf)),
            Batch::Encoded(e) => e.parts.iter().for_each(|p| buf.extend_from_slice(p)),
        }
        buf
    }

    pub fn encoded_len(&self) -> usize {
        match self {
            Batch::Traces(v) => prost::encoding::message::encoded_len_repeated(1, v),
            Batch::Metrics(v) => prost::encoding::message::encoded_len_repeated(1, v),
            Batch::Logs(v) => prost::encoding::message::encoded_len_repeated(1, v),
            Batch::Encoded(e) => e.len,
        }
    }
}

pub fn data_point_count(d: &Data) -> usize {
    match d {
        Data::Gauge(g) => g.data_points.len(),
        Data::Sum(s) => s.data_points.len(),
        Data::Histogram(h) => h.data_points.len(),
        Data::ExponentialHistogram(h) => h.data_points.len(),
        Data::Summary(s) => s.data_points.len(),
    }
}

#[cfg(test)]
pub mod testdata {
    //! Small batches for unit tests.
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, InstrumentationScope, KeyValue, any_value,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ScopeMetrics, number_data_point,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};

    use super::*;

    pub fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    /// The `service.name` of a resource, or "".
    pub fn service_of(r: &Option<Resource>) -> String {
        r.as_ref()
            .and_then(|r| super::value::find_str(&r.attributes, "service.name"))
            .unwrap_or_default()
            .to_owned()
    }

    pub fn resource(service: &str) -> Option<Resource> {
        Some(Resource {
            attributes: vec![kv("service.name", service)],
            ..Default::default()
        })
    }

    /// `per_scope` spans in each of `scopes` scopes of one resource; span names are `s<i>`.
    pub fn spans(service: &str, scopes: usize, per_scope: usize) -> Batch {
        let mut n = 0u64;
        let scope_spans = (0..scopes)
            .map(|si| ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: format!("scope{si}"),
                    ..Default::default()
                }),
                spans: (0..per_scope)
                    .map(|_| {
                        n += 1;
                        Span {
                            trace_id: n.to_be_bytes().repeat(2),
                            span_id: n.to_be_bytes().to_vec(),
                            name: format!("s{n}"),
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        Batch::Traces(vec![ResourceSpans {
            resource: resource(service),
            scope_spans,
            ..Default::default()
        }])
    }

    pub fn gauge(points: usize) -> Batch {
        let dps = (0..points)
            .map(|i| NumberDataPoint {
                value: Some(number_data_point::Value::AsInt(i as i64)),
                ..Default::default()
            })
            .collect();
        Batch::Metrics(vec![ResourceMetrics {
            resource: resource("m"),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "g".into(),
                    data: Some(Data::Gauge(Gauge { data_points: dps })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    pub fn logs(n: usize) -> Batch {
        Batch::Logs(vec![ResourceLogs {
            resource: resource("l"),
            scope_logs: vec![ScopeLogs {
                log_records: (0..n)
                    .map(|i| LogRecord {
                        severity_text: format!("{i}"),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    /// Random requests of every shape: every field, every value kind, empty and full ids.
    pub mod random {
        use opentelemetry_proto::tonic::collector::{
            logs::v1 as l, metrics::v1 as m, trace::v1 as t,
        };
        use opentelemetry_proto::tonic::common::v1::{
            AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value as V,
        };
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        use opentelemetry_proto::tonic::metrics::v1 as mm;
        use opentelemetry_proto::tonic::trace::v1::{
            ResourceSpans, ScopeSpans, Span, Status, span,
        };
        use rand::Rng;
        use rand::rngs::StdRng;

        fn text(r: &mut StdRng) -> String {
            let pool = [
                "",
                "a",
                "service.name",
                "é ü",
                "line\nbreak",
                "quote\"",
                "😀",
                "\u{1}",
            ];
            pool[r.random_range(0..pool.len())].to_string()
        }

        fn value(r: &mut StdRng, depth: usize) -> AnyValue {
            let v = match r.random_range(0..if depth > 2 { 5 } else { 7 }) {
                0 => V::StringValue(text(r)),
                1 => V::BoolValue(r.random()),
                2 => V::IntValue(r.random::<i64>() >> r.random_range(0..64)),
                3 => V::DoubleValue((r.random::<f64>() - 0.5) * 1e6),
                4 => V::BytesValue((0..r.random_range(0..5)).map(|_| r.random()).collect()),
                5 => V::ArrayValue(ArrayValue {
                    values: (0..r.random_range(0..3))
                        .map(|_| value(r, depth + 1))
                        .collect(),
                }),
                _ => V::KvlistValue(KeyValueList {
                    values: attrs(r, depth + 1),
                }),
            };
            AnyValue { value: Some(v) }
        }

        fn attrs(r: &mut StdRng, depth: usize) -> Vec<KeyValue> {
            (0..r.random_range(0..4))
                .map(|_| KeyValue {
                    key: text(r),
                    value: Some(value(r, depth)),
                    ..Default::default()
                })
                .collect()
        }

        fn id(r: &mut StdRng, n: usize) -> Vec<u8> {
            if r.random_range(0..5) == 0 {
                Vec::new()
            } else {
                (0..n).map(|_| r.random()).collect()
            }
        }

        pub fn traces(r: &mut StdRng) -> t::ExportTraceServiceRequest {
            t::ExportTraceServiceRequest {
                resource_spans: (0..r.random_range(0..3))
                    .map(|_| ResourceSpans {
                        resource: Some(Default::default()),
                        scope_spans: vec![ScopeSpans {
                            spans: (0..r.random_range(0..4))
                                .map(|_| Span {
                                    trace_id: id(r, 16),
                                    span_id: id(r, 8),
                                    parent_span_id: id(r, 8),
                                    name: text(r),
                                    kind: r.random_range(0..6),
                                    start_time_unix_nano: r.random(),
                                    end_time_unix_nano: r.random(),
                                    attributes: attrs(r, 0),
                                    dropped_attributes_count: r.random_range(0..3),
                                    events: (0..r.random_range(0..2))
                                        .map(|_| span::Event {
                                            time_unix_nano: r.random(),
                                            name: text(r),
                                            attributes: attrs(r, 0),
                                            ..Default::default()
                                        })
                                        .collect(),
                                    links: (0..r.random_range(0..2))
                                        .map(|_| span::Link {
                                            trace_id: id(r, 16),
                                            span_id: id(r, 8),
                                            flags: r.random(),
                                            ..Default::default()
                                        })
                                        .collect(),
                                    status: r.random::<bool>().then(|| Status {
                                        message: text(r),
                                        code: r.random_range(0..3),
                                    }),
                                    flags: r.random(),
                                    ..Default::default()
                                })
                                .collect(),
                            schema_url: text(r),
                            ..Default::default()
                        }],
                        schema_url: String::new(),
                    })
                    .collect(),
            }
        }

        pub fn metrics(r: &mut StdRng) -> m::ExportMetricsServiceRequest {
            let point = |r: &mut StdRng| mm::NumberDataPoint {
                attributes: attrs(r, 0),
                start_time_unix_nano: r.random(),
                time_unix_nano: r.random(),
                value: Some(if r.random() {
                    mm::number_data_point::Value::AsInt(r.random())
                } else {
                    mm::number_data_point::Value::AsDouble(r.random())
                }),
                flags: r.random_range(0..2),
                ..Default::default()
            };
            let data = |r: &mut StdRng| match r.random_range(0..5) {
                0 => mm::metric::Data::Gauge(mm::Gauge {
                    data_points: (0..r.random_range(0..3)).map(|_| point(r)).collect(),
                }),
                1 => mm::metric::Data::Sum(mm::Sum {
                    data_points: (0..r.random_range(0..3)).map(|_| point(r)).collect(),
                    aggregation_temporality: r.random_range(0..3),
                    is_monotonic: r.random(),
                }),
                2 => mm::metric::Data::Histogram(mm::Histogram {
                    data_points: vec![mm::HistogramDataPoint {
                        count: r.random(),
                        sum: r.random::<bool>().then(|| r.random()),
                        bucket_counts: (0..r.random_range(0..4)).map(|_| r.random()).collect(),
                        explicit_bounds: (0..r.random_range(0..3)).map(|_| r.random()).collect(),
                        min: r.random::<bool>().then_some(0.0),
                        max: r.random::<bool>().then(|| r.random()),
                        ..Default::default()
                    }],
                    aggregation_temporality: 2,
                }),
                3 => mm::metric::Data::ExponentialHistogram(mm::ExponentialHistogram {
                    data_points: vec![mm::ExponentialHistogramDataPoint {
                        scale: r.random_range(-5..5),
                        count: r.random(),
                        zero_count: r.random_range(0..2),
                        positive: Some(mm::exponential_histogram_data_point::Buckets {
                            offset: r.random_range(-3..3),
                            bucket_counts: vec![r.random(), 0],
                        }),
                        zero_threshold: r.random(),
                        ..Default::default()
                    }],
                    aggregation_temporality: 1,
                }),
                _ => mm::metric::Data::Summary(mm::Summary {
                    data_points: vec![mm::SummaryDataPoint {
                        count: r.random(),
                        sum: r.random(),
                        quantile_values: vec![mm::summary_data_point::ValueAtQuantile {
                            quantile: 0.5,
                            value: r.random(),
                        }],
                        ..Default::default()
                    }],
                }),
            };
            m::ExportMetricsServiceRequest {
                resource_metrics: vec![mm::ResourceMetrics {
                    scope_metrics: vec![mm::ScopeMetrics {
                        metrics: (0..r.random_range(0..4))
                            .map(|_| mm::Metric {
                                name: text(r),
                                unit: text(r),
                                data: Some(data(r)),
                                metadata: attrs(r, 0),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
        }

        pub fn logs(r: &mut StdRng) -> l::ExportLogsServiceRequest {
            l::ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    scope_logs: vec![ScopeLogs {
                        log_records: (0..r.random_range(0..4))
                            .map(|_| LogRecord {
                                time_unix_nano: r.random(),
                                observed_time_unix_nano: r.random(),
                                severity_number: r.random_range(0..25),
                                severity_text: text(r),
                                body: r.random::<bool>().then(|| value(r, 0)),
                                attributes: attrs(r, 0),
                                flags: r.random(),
                                trace_id: id(r, 16),
                                span_id: id(r, 8),
                                event_name: text(r),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn counts_items_and_encodes_as_the_export_request() {
        let b = testdata::spans("a", 2, 3);
        assert_eq!(b.item_count(), 6);
        let bytes = b.encode_request();
        assert_eq!(bytes.len(), b.encoded_len());
        let req =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                &bytes[..],
            )
            .unwrap();
        assert_eq!(Batch::Traces(req.resource_spans), b);
        assert_eq!(testdata::gauge(4).item_count(), 4);
        assert_eq!(testdata::logs(5).item_count(), 5);
    }

    #[test]
    fn encoded_batches_merge_by_appending_and_decode_to_the_same_data() {
        let (a, b) = (testdata::spans("a", 1, 2), testdata::spans("b", 2, 3));
        let enc = |x: &Batch| {
            Batch::Encoded(Encoded::new(
                x.signal(),
                Bytes::from(x.encode_request()),
                x.item_count(),
            ))
        };
        let mut merged = enc(&a);
        merged.append(enc(&b)).unwrap();
        // Mixed: a decoded batch joins an encoded one.
        merged.append(testdata::spans("c", 1, 1)).unwrap();
        assert!(merged.is_encoded());
        assert_eq!(merged.item_count(), 2 + 6 + 1);
        let mut expected = a.clone();
        expected.append(b.clone()).unwrap();
        expected.append(testdata::spans("c", 1, 1)).unwrap();
        assert_eq!(merged.clone().into_decoded().unwrap(), expected);
        assert_eq!(&merged.encode_request()[..], &expected.encode_request()[..]);
        // A decoded batch taking an encoded one becomes encoded.
        let mut d = a.clone();
        d.append(enc(&b)).unwrap();
        assert!(d.is_encoded() && d.item_count() == 8);
        assert!(enc(&a).append(testdata::logs(1)).is_err());
        // One part passes through without a copy.
        let one = enc(&a);
        let Batch::Encoded(e) = &one else {
            unreachable!()
        };
        let ptr = e.parts[0].as_ptr();
        assert_eq!(one.into_request_bytes().as_ptr(), ptr);
    }

    #[test]
    fn append_moves_resources_and_refuses_other_signals() {
        let mut a = testdata::spans("a", 1, 2);
        a.append(testdata::spans("b", 1, 3)).unwrap();
        assert_eq!(a.item_count(), 5);
        assert!(a.append(testdata::logs(1)).is_err());
    }
}
