//! The identity of a metric stream (resource, scope, metric, point attributes), as the
//! temporality processors key their state by it.

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::Metric;

use super::value::option_text;

fn push_attrs(attrs: &[KeyValue], out: &mut Vec<u8>) {
    let mut sorted: Vec<&KeyValue> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    for kv in sorted {
        out.extend_from_slice(kv.key.as_bytes());
        out.push(0);
        out.extend_from_slice(option_text(&kv.value).as_bytes());
        out.push(0);
    }
    out.push(1);
}

/// The prefix every point of `metric` shares: resource attributes, scope, name, unit, type.
pub fn metric_prefix(
    resource: &[KeyValue],
    scope: Option<&InstrumentationScope>,
    metric: &Metric,
    kind: u8,
    out: &mut Vec<u8>,
) {
    out.clear();
    push_attrs(resource, out);
    if let Some(s) = scope {
        out.extend_from_slice(s.name.as_bytes());
        out.push(0);
        out.extend_from_slice(s.version.as_bytes());
    }
    out.push(1);
    out.extend_from_slice(metric.name.as_bytes());
    out.push(0);
    out.extend_from_slice(metric.unit.as_bytes());
    out.push(kind);
}

/// A point's stream key: the metric's prefix and its attributes.
pub fn point_key(prefix: &[u8], attrs: &[KeyValue], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(prefix);
    push_attrs(attrs, out);
}
