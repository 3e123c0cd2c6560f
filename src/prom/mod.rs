//! OTLP metrics as Prometheus series, the rules both Prometheus exporters share (the
//! OpenTelemetry "Prometheus and OpenMetrics compatibility" specification): metric and label
//! names, the labels of a resource (`job`, `instance`, constant labels, resource attributes with
//! `resource_to_telemetry_conversion`), of a scope and of a point, `target_info`, point values
//! and the staleness marker. `prometheus_remote_write` encodes the series it gets straight into
//! `WriteRequest`s; `prometheus` keeps them for scrapes.

pub mod naming;

use std::borrow::Cow;

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{NumberDataPoint, number_data_point};

pub use naming::{Label, Names, label_name, metric_name, normalize, push_attrs, sanitize_name};

/// Prometheus' staleness marker: a NaN with this bit pattern.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// What a resource's series carry besides their own attributes.
pub struct ResourceRules<'c> {
    /// `external_labels` / `const_labels`.
    pub constant: &'c std::collections::BTreeMap<String, String>,
    /// `resource_to_telemetry_conversion.enabled`.
    pub all_attributes: bool,
}

/// The labels every series of a resource gets, normalized: `job` (`service.namespace/`
/// `service.name`), `instance` (`service.instance.id`), the constant labels and, when asked,
/// every resource attribute.
pub fn resource_labels<'a, 'n: 'a>(
    res: &'a [KeyValue],
    rules: &'a ResourceRules<'_>,
    names: &mut Names<'n>,
) -> Vec<Label<'a>> {
    let find = |k: &str| {
        crate::signal::value::find_kv(res, k)
            .map(|kv| crate::signal::value::option_text(&kv.value))
            .filter(|s| !s.is_empty())
    };
    let mut base: Vec<Label<'_>> = Vec::new();
    if let Some(svc) = find("service.name") {
        let job = match find("service.namespace") {
            Some(ns) => Cow::Owned(format!("{ns}/{svc}")),
            None => svc,
        };
        base.push(Label::new("job", job));
    }
    if let Some(inst) = find("service.instance.id") {
        base.push(Label::new("instance", inst));
    }
    for (k, v) in rules.constant {
        base.push(Label::new(label_name(k), v.as_str()));
    }
    if rules.all_attributes {
        push_attrs(&mut base, names, res);
    }
    normalize(&mut base);
    base
}

/// A scope's labels: the resource's plus `otel_scope_name` and `otel_scope_version` (unless
/// `without_scope_info`).
pub fn scope_labels<'a>(
    base: &[Label<'a>],
    scope: Option<&'a InstrumentationScope>,
    with_scope: bool,
) -> Vec<Label<'a>> {
    let mut scoped = base.to_vec();
    if with_scope && let Some(InstrumentationScope { name, version, .. }) = scope {
        scoped.push(Label::new("otel_scope_name", name.as_str()));
        scoped.push(Label::new("otel_scope_version", version.as_str()));
    }
    normalize(&mut scoped);
    scoped
}

/// Fills `labels` with a point's labels: its scope's, borrowed, plus its attributes.
pub fn point_labels<'a, 'n: 'a>(
    labels: &mut Vec<Label<'a>>,
    scoped: &'a [Label<'a>],
    names: &mut Names<'n>,
    attrs: &'a [KeyValue],
) {
    labels.clear();
    labels.extend(scoped.iter().map(Label::borrowed));
    push_attrs(labels, names, attrs);
    normalize(labels);
}

/// The labels of a resource's `target_info` series: its base labels plus the resource
/// attributes other than those `job` and `instance` come from; `None` when there are none.
pub fn target_info_labels<'a, 'n: 'a>(
    base: &[Label<'a>],
    res: &'a [KeyValue],
    names: &mut Names<'n>,
) -> Option<Vec<Label<'a>>> {
    let mut info = base.to_vec();
    let before = info.len();
    info.extend(
        res.iter()
            .filter(|kv| {
                !matches!(
                    kv.key.as_str(),
                    "service.name" | "service.namespace" | "service.instance.id"
                )
            })
            .map(|kv| {
                Label::new(
                    names.get(&kv.key),
                    crate::signal::value::option_text(&kv.value),
                )
            }),
    );
    if info.len() == before {
        return None;
    }
    normalize(&mut info);
    Some(info)
}

/// `target_info`, under the namespace if there is one.
pub fn target_info_name(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{}_target_info", sanitize_name(ns)),
        _ => "target_info".to_owned(),
    }
}

/// Milliseconds of a nanosecond timestamp.
pub fn millis(nanos: u64) -> i64 {
    (nanos / 1_000_000) as i64
}

/// A number point's value; the staleness marker for a point flagged "no recorded value".
pub fn number(p: &NumberDataPoint) -> f64 {
    if p.flags & 1 == 1 {
        return f64::from_bits(STALE_NAN);
    }
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

/// Prometheus' float format for `le` and `quantile` (`0.5`, `1`, `+Inf`).
pub fn fmt_float(f: f64) -> String {
    if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{f}")
    }
}
