//! The in-memory unit of data: OTLP protobuf messages, moved (not copied) between stages.

pub mod split;

use std::fmt;

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
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// The Collector's word for one item of this signal, as used in self-metric names.
    pub fn item_name(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "metric_points",
            Signal::Logs => "log_records",
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
        })
    }
}

/// A batch of one signal: the `resource_*` list of an OTLP export request.
#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    Traces(Vec<ResourceSpans>),
    Metrics(Vec<ResourceMetrics>),
    Logs(Vec<ResourceLogs>),
}

impl Batch {
    pub fn empty(signal: Signal) -> Self {
        match signal {
            Signal::Traces => Batch::Traces(Vec::new()),
            Signal::Metrics => Batch::Metrics(Vec::new()),
            Signal::Logs => Batch::Logs(Vec::new()),
        }
    }

    pub fn signal(&self) -> Signal {
        match self {
            Batch::Traces(_) => Signal::Traces,
            Batch::Metrics(_) => Signal::Metrics,
            Batch::Logs(_) => Signal::Logs,
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
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Batch::Traces(v) => v.is_empty(),
            Batch::Metrics(v) => v.is_empty(),
            Batch::Logs(v) => v.is_empty(),
        }
    }

    /// Appends `other` (same signal) by moving its resources; no item is copied.
    /// Returns `other` back if the signals differ.
    pub fn append(&mut self, other: Batch) -> Result<(), Batch> {
        match (self, other) {
            (Batch::Traces(a), Batch::Traces(b)) => a.extend(b),
            (Batch::Metrics(a), Batch::Metrics(b)) => a.extend(b),
            (Batch::Logs(a), Batch::Logs(b)) => a.extend(b),
            (_, other) => return Err(other),
        }
        Ok(())
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
        }
        buf
    }

    pub fn encoded_len(&self) -> usize {
        match self {
            Batch::Traces(v) => prost::encoding::message::encoded_len_repeated(1, v),
            Batch::Metrics(v) => prost::encoding::message::encoded_len_repeated(1, v),
            Batch::Logs(v) => prost::encoding::message::encoded_len_repeated(1, v),
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
    fn append_moves_resources_and_refuses_other_signals() {
        let mut a = testdata::spans("a", 1, 2);
        a.append(testdata::spans("b", 1, 3)).unwrap();
        assert_eq!(a.item_count(), 5);
        assert!(a.append(testdata::logs(1)).is_err());
    }
}
