//! The `debug` exporter's text (also what `ferrotel tap` prints), as the Collector's debug exporter writes it (its
//! `internal/normal` and `internal/otlptext` marshalers): `normal` is a line per resource and
//! scope and one per span, data point or log record; `detailed` is the full OTLP layout
//! (`ResourceSpans #0`, `    Trace ID       : <hex>`, `     -> key: Str(value)`). Every name,
//! key and value is escaped, so data cannot forge a line.

use std::fmt::Write as _;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::{
    NumberDataPoint, ResourceMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use crate::signal::value::text as as_string;
use serde::Deserialize;

use crate::signal::Batch;
use crate::text::escape_control as esc;

#[derive(
    Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One summary line per batch (default).
    #[default]
    Basic,
    /// One line per span, data point or log record.
    Normal,
    /// Every field.
    Detailed,
}

/// Renders a batch at the given verbosity, as the Collector's debug exporter does: `basic` one
/// summary line, `normal` and `detailed` that line followed by the marshalers' text.
pub fn render(batch: &Batch, verbosity: Verbosity) -> String {
    if batch.is_encoded() {
        return match batch.clone().into_decoded() {
            Ok(d) => render(&d, verbosity),
            Err(e) => format!("undecodable batch: {e}\n"),
        };
    }
    let mut out = String::new();
    let n = batch.item_count();
    let _ = match batch {
        Batch::Traces(v) => writeln!(
            out,
            "Traces\t{{\"resource spans\": {}, \"spans\": {n}}}",
            v.len()
        ),
        Batch::Metrics(v) => writeln!(
            out,
            "Metrics\t{{\"resource metrics\": {}, \"metrics\": {}, \"data points\": {n}}}",
            v.len(),
            v.iter()
                .flat_map(|r| &r.scope_metrics)
                .map(|s| s.metrics.len())
                .sum::<usize>()
        ),
        Batch::Logs(v) => writeln!(
            out,
            "Logs\t{{\"resource logs\": {}, \"log records\": {n}}}",
            v.len()
        ),
        Batch::Encoded(_) => Ok(()),
    };
    out.push_str(&match (verbosity, batch) {
        (Verbosity::Basic, _) | (_, Batch::Encoded(_)) => String::new(),
        (Verbosity::Normal, Batch::Traces(v)) => normal_traces(v),
        (Verbosity::Normal, Batch::Metrics(v)) => normal_metrics(v),
        (Verbosity::Normal, Batch::Logs(v)) => normal_logs(v),
        (Verbosity::Detailed, Batch::Traces(v)) => detailed_traces(v),
        (Verbosity::Detailed, Batch::Metrics(v)) => detailed_metrics(v),
        (Verbosity::Detailed, Batch::Logs(v)) => detailed_logs(v),
    });
    out
}

/// pcommon's `Value.AsString`, escaped.
fn plain(v: &Option<AnyValue>) -> String {
    v.as_ref()
        .map_or(String::new(), |v| esc(&as_string(v)).into_owned())
}

/// `Str(x)`, `Int(5)`, ...: the type and `AsString`, as the detailed view writes a value.
fn typed(v: &Option<AnyValue>) -> String {
    let ty = match v.as_ref().and_then(|v| v.value.as_ref()) {
        None => "Empty",
        Some(any_value::Value::StringValue(_) | any_value::Value::StringValueStrindex(_)) => "Str",
        Some(any_value::Value::BoolValue(_)) => "Bool",
        Some(any_value::Value::IntValue(_)) => "Int",
        Some(any_value::Value::DoubleValue(_)) => "Double",
        Some(any_value::Value::BytesValue(_)) => "Bytes",
        Some(any_value::Value::ArrayValue(_)) => "Slice",
        Some(any_value::Value::KvlistValue(_)) => "Map",
    };
    format!("{ty}({})", plain(v))
}

/// `k=v` pairs, as the normal view writes attributes.
fn pairs(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| format!("{}={}", esc(&kv.key), plain(&kv.value)))
        .collect()
}

/// ` k=v k2=v2`, or nothing.
fn pairs_suffix(kvs: &[KeyValue]) -> String {
    let p = pairs(kvs);
    if p.is_empty() {
        String::new()
    } else {
        format!(" {}", p.join(" "))
    }
}

fn resource_details(schema_url: &str) -> String {
    if schema_url.is_empty() {
        String::new()
    } else {
        format!(" [{}]", esc(schema_url))
    }
}

fn scope_details(scope: Option<&InstrumentationScope>, schema_url: &str) -> String {
    let (name, version) = scope.map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
    let mut d = esc(name).into_owned();
    if !version.is_empty() {
        d.push('@');
        d.push_str(&esc(version));
    }
    if !schema_url.is_empty() {
        if !d.is_empty() {
            d.push(' ');
        }
        d.push('[');
        d.push_str(&esc(schema_url));
        d.push(']');
    }
    if d.is_empty() { d } else { format!(" {d}") }
}

fn scope_attrs(scope: Option<&InstrumentationScope>) -> &[KeyValue] {
    scope.map_or(&[], |s| &s.attributes)
}

fn hex_id(b: &[u8]) -> String {
    if b.iter().all(|x| *x == 0) {
        String::new()
    } else {
        hex::encode(b)
    }
}

/// The normal view of spans. The scope line repeats the resource's index, as the Collector's
/// does (`ScopeTraces #%d` is given the resource index there).
pub fn normal_traces(rs: &[ResourceSpans]) -> String {
    let mut out = String::new();
    for (i, r) in rs.iter().enumerate() {
        let attrs = r.resource.as_ref().map_or(&[][..], |x| &x.attributes);
        let _ = writeln!(
            out,
            "ResourceTraces #{i}{}{}",
            resource_details(&r.schema_url),
            pairs_suffix(attrs)
        );
        for s in &r.scope_spans {
            let _ = writeln!(
                out,
                "ScopeTraces #{i}{}{}",
                scope_details(s.scope.as_ref(), &s.schema_url),
                pairs_suffix(scope_attrs(s.scope.as_ref()))
            );
            for sp in &s.spans {
                let _ = writeln!(
                    out,
                    "{} {} {}{}",
                    esc(&sp.name),
                    hex_id(&sp.trace_id),
                    hex_id(&sp.span_id),
                    pairs_suffix(&sp.attributes)
                );
            }
        }
    }
    out
}

/// The normal view of log records: the body and the attributes.
pub fn normal_logs(rl: &[ResourceLogs]) -> String {
    let mut out = String::new();
    for (i, r) in rl.iter().enumerate() {
        let attrs = r.resource.as_ref().map_or(&[][..], |x| &x.attributes);
        let _ = writeln!(
            out,
            "ResourceLog #{i}{}{}",
            resource_details(&r.schema_url),
            pairs_suffix(attrs)
        );
        for s in &r.scope_logs {
            let _ = writeln!(
                out,
                "ScopeLog #{i}{}{}",
                scope_details(s.scope.as_ref(), &s.schema_url),
                pairs_suffix(scope_attrs(s.scope.as_ref()))
            );
            for l in &s.log_records {
                let _ = writeln!(out, "{} {}", plain(&l.body), pairs(&l.attributes).join(" "));
            }
        }
    }
    out
}

/// Go's `%v` of a float64 (shortest text that reads back, `1e+06` style for large and tiny).
fn go_v(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let exp = if f == 0.0 {
        0
    } else {
        f.abs().log10().floor() as i32
    };
    if (-4..21).contains(&exp) {
        format!("{f}")
    } else {
        // Go writes the exponent with a sign and at least two digits.
        let s = format!("{f:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
        format!("{m}e{sign}{digits:0>2}")
    }
}

fn number(p: &NumberDataPoint) -> String {
    match p.value {
        Some(number_data_point::Value::AsInt(i)) => i.to_string(),
        Some(number_data_point::Value::AsDouble(d)) => go_v(d),
        None => String::new(),
    }
}

/// The normal view of metrics: `name{k=v,...} value` per data point.
pub fn normal_metrics(rm: &[ResourceMetrics]) -> String {
    let mut out = String::new();
    for (i, r) in rm.iter().enumerate() {
        let attrs = r.resource.as_ref().map_or(&[][..], |x| &x.attributes);
        let _ = writeln!(
            out,
            "ResourceMetrics #{i}{}{}",
            resource_details(&r.schema_url),
            pairs_suffix(attrs)
        );
        for s in &r.scope_metrics {
            let _ = writeln!(
                out,
                "ScopeMetrics #{i}{}{}",
                scope_details(s.scope.as_ref(), &s.schema_url),
                pairs_suffix(scope_attrs(s.scope.as_ref()))
            );
            for m in &s.metrics {
                let name = esc(&m.name);
                let line = |out: &mut String, a: &[KeyValue], v: String| {
                    let _ = writeln!(out, "{name}{{{}}} {v}", pairs(a).join(","));
                };
                match &m.data {
                    Some(metric::Data::Gauge(g)) => {
                        for p in &g.data_points {
                            line(&mut out, &p.attributes, number(p));
                        }
                    }
                    Some(metric::Data::Sum(g)) => {
                        for p in &g.data_points {
                            line(&mut out, &p.attributes, number(p));
                        }
                    }
                    Some(metric::Data::Histogram(h)) => {
                        for p in &h.data_points {
                            let mut v = format!("count={}", p.count);
                            if let Some(sum) = p.sum {
                                let _ = write!(v, " sum={}", go_v(sum));
                            }
                            if let Some(min) = p.min {
                                let _ = write!(v, " min={}", go_v(min));
                            }
                            if let Some(max) = p.max {
                                let _ = write!(v, " max={}", go_v(max));
                            }
                            for (b, c) in p.bucket_counts.iter().enumerate() {
                                match p.explicit_bounds.get(b) {
                                    Some(le) => {
                                        let _ = write!(v, " le{}={c}", go_v(*le));
                                    }
                                    None => {
                                        let _ = write!(v, " {c}");
                                    }
                                }
                            }
                            line(&mut out, &p.attributes, v);
                        }
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        for p in &h.data_points {
                            let mut v = format!("count={}", p.count);
                            if let Some(sum) = p.sum {
                                let _ = write!(v, " sum={}", go_v(sum));
                            }
                            if let Some(min) = p.min {
                                let _ = write!(v, " min={}", go_v(min));
                            }
                            if let Some(max) = p.max {
                                let _ = write!(v, " max={}", go_v(max));
                            }
                            let base = 2f64.powf(2f64.powf(-f64::from(p.scale)));
                            for b in [&p.negative, &p.positive].into_iter().flatten() {
                                for (j, c) in b.bucket_counts.iter().enumerate() {
                                    let lower = base.powf(f64::from(b.offset) + j as f64);
                                    let _ = write!(v, " le{}={c}", go_v(lower));
                                }
                            }
                            if p.zero_count > 0 {
                                let _ = write!(
                                    v,
                                    " zero_count{}={}",
                                    go_v(p.zero_threshold),
                                    p.zero_count
                                );
                            }
                            line(&mut out, &p.attributes, v);
                        }
                    }
                    Some(metric::Data::Summary(sm)) => {
                        for p in &sm.data_points {
                            let mut v = format!("count={} sum={:.6}", p.count, p.sum);
                            for q in &p.quantile_values {
                                let _ = write!(v, " q{}={}", go_v(q.quantile), go_v(q.value));
                            }
                            line(&mut out, &p.attributes, v);
                        }
                    }
                    None => {}
                }
            }
        }
    }
    out
}

/// Go's `time.Time.String()` of a Unix-nanosecond timestamp, in UTC:
/// `2020-02-11 20:26:12.000000321 +0000 UTC` (trailing zeros of the fraction dropped).
pub fn timestamp(ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    let iso = crate::text::rfc3339(t); // 2020-02-11T20:26:12.000Z
    let (date, rest) = iso.split_once('T').unwrap_or((&iso, ""));
    let hms = &rest[..rest.len().min(8)];
    let frac = ns % 1_000_000_000;
    let frac = if frac == 0 {
        String::new()
    } else {
        format!(".{frac:09}").trim_end_matches('0').to_owned()
    };
    format!("{date} {hms}{frac} +0000 UTC")
}

struct Buf(String);

impl Buf {
    fn line(&mut self, s: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{s}");
    }
    /// `    Name           : value`
    fn attr(&mut self, name: &str, v: impl std::fmt::Display) {
        let _ = writeln!(self.0, "    {name:<15}: {v}");
    }
    /// A header and its attributes, indented after the header's `->` if it has one.
    fn attributes(&mut self, header: &str, kvs: &[KeyValue]) {
        if kvs.is_empty() {
            return;
        }
        self.line(format_args!("{header}:"));
        let prefix = match header.split_once("->") {
            Some((before, _)) => format!("{before}     ->"),
            None => "     ->".to_owned(),
        };
        for kv in kvs {
            self.line(format_args!(
                "{prefix} {}: {}",
                esc(&kv.key),
                typed(&kv.value)
            ));
        }
    }
    /// A data point's title, attributes and times.
    fn point_head(
        &mut self,
        title: std::fmt::Arguments<'_>,
        attrs: &[KeyValue],
        (start, time): (u64, u64),
    ) {
        self.line(title);
        self.attributes("Data point attributes", attrs);
        self.line(format_args!("StartTimestamp: {}", timestamp(start)));
        self.line(format_args!("Timestamp: {}", timestamp(time)));
    }
    fn count_sum_min_max(
        &mut self,
        count: u64,
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
    ) {
        self.line(format_args!("Count: {count}"));
        for (name, v) in [("Sum", sum), ("Min", min), ("Max", max)] {
            if let Some(v) = v {
                self.line(format_args!("{name}: {v:.6}"));
            }
        }
    }

    fn scope(&mut self, s: Option<&InstrumentationScope>) {
        let (name, version) = s.map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
        self.line(format_args!(
            "InstrumentationScope {} {}",
            esc(name),
            esc(version)
        ));
        self.attributes("InstrumentationScope attributes", scope_attrs(s));
    }
}

fn span_kind(k: i32) -> &'static str {
    match k {
        1 => "Internal",
        2 => "Server",
        3 => "Client",
        4 => "Producer",
        5 => "Consumer",
        _ => "Unspecified",
    }
}

fn status_code(c: i32) -> &'static str {
    match c {
        1 => "Ok",
        2 => "Error",
        _ => "Unset",
    }
}

/// The detailed view of spans.
pub fn detailed_traces(rs: &[ResourceSpans]) -> String {
    let mut b = Buf(String::new());
    for (i, r) in rs.iter().enumerate() {
        b.line(format_args!("ResourceSpans #{i}"));
        b.line(format_args!("Resource SchemaURL: {}", esc(&r.schema_url)));
        b.attributes(
            "Resource attributes",
            r.resource.as_ref().map_or(&[][..], |x| &x.attributes),
        );
        for (j, s) in r.scope_spans.iter().enumerate() {
            b.line(format_args!("ScopeSpans #{j}"));
            b.line(format_args!("ScopeSpans SchemaURL: {}", esc(&s.schema_url)));
            b.scope(s.scope.as_ref());
            for (k, sp) in s.spans.iter().enumerate() {
                b.line(format_args!("Span #{k}"));
                b.attr("Trace ID", hex_id(&sp.trace_id));
                b.attr("Parent ID", hex_id(&sp.parent_span_id));
                b.attr("ID", hex_id(&sp.span_id));
                b.attr("Name", esc(&sp.name));
                b.attr("Kind", span_kind(sp.kind));
                if !sp.trace_state.is_empty() {
                    b.attr("TraceState", esc(&sp.trace_state));
                }
                b.attr("Start time", timestamp(sp.start_time_unix_nano));
                b.attr("End time", timestamp(sp.end_time_unix_nano));
                let (code, msg) = sp
                    .status
                    .as_ref()
                    .map_or((0, ""), |s| (s.code, s.message.as_str()));
                b.attr("Status code", status_code(code));
                b.attr("Status message", esc(msg));
                b.attributes("Attributes", &sp.attributes);
                b.line(format_args!(
                    "    DroppedAttributesCount: {}",
                    sp.dropped_attributes_count
                ));
                if !sp.events.is_empty() {
                    b.line("Events:");
                    for (e, ev) in sp.events.iter().enumerate() {
                        b.line(format_args!("SpanEvent #{e}"));
                        b.line(format_args!("     -> Name: {}", esc(&ev.name)));
                        b.line(format_args!(
                            "     -> Timestamp: {}",
                            timestamp(ev.time_unix_nano)
                        ));
                        b.line(format_args!(
                            "     -> DroppedAttributesCount: {}",
                            ev.dropped_attributes_count
                        ));
                        b.attributes("     -> Attributes:", &ev.attributes);
                    }
                }
                b.line(format_args!(
                    "    DroppedEventsCount: {}",
                    sp.dropped_events_count
                ));
                if !sp.links.is_empty() {
                    b.line("Links:");
                    for (l, link) in sp.links.iter().enumerate() {
                        b.line(format_args!("SpanLink #{l}"));
                        b.line(format_args!("     -> Trace ID: {}", hex_id(&link.trace_id)));
                        b.line(format_args!("     -> ID: {}", hex_id(&link.span_id)));
                        b.line(format_args!(
                            "     -> TraceState: {}",
                            esc(&link.trace_state)
                        ));
                        b.line(format_args!(
                            "     -> DroppedAttributesCount: {}",
                            link.dropped_attributes_count
                        ));
                        b.attributes("     -> Attributes:", &link.attributes);
                    }
                }
                b.line(format_args!(
                    "    DroppedLinksCount: {}",
                    sp.dropped_links_count
                ));
            }
        }
    }
    b.0
}

fn severity(n: i32) -> String {
    const NAMES: [&str; 6] = ["Trace", "Debug", "Info", "Warn", "Error", "Fatal"];
    if !(1..=24).contains(&n) {
        return "Unspecified".into();
    }
    let (group, step) = ((n - 1) / 4, (n - 1) % 4);
    let name = NAMES[group as usize];
    if step == 0 {
        name.into()
    } else {
        format!("{name}{}", step + 1)
    }
}

/// The detailed view of log records.
pub fn detailed_logs(rl: &[ResourceLogs]) -> String {
    let mut b = Buf(String::new());
    for (i, r) in rl.iter().enumerate() {
        b.line(format_args!("ResourceLog #{i}"));
        b.line(format_args!("Resource SchemaURL: {}", esc(&r.schema_url)));
        b.attributes(
            "Resource attributes",
            r.resource.as_ref().map_or(&[][..], |x| &x.attributes),
        );
        for (j, s) in r.scope_logs.iter().enumerate() {
            b.line(format_args!("ScopeLogs #{j}"));
            b.line(format_args!("ScopeLogs SchemaURL: {}", esc(&s.schema_url)));
            b.scope(s.scope.as_ref());
            for (k, l) in s.log_records.iter().enumerate() {
                b.line(format_args!("LogRecord #{k}"));
                b.line(format_args!(
                    "ObservedTimestamp: {}",
                    timestamp(l.observed_time_unix_nano)
                ));
                b.line(format_args!("Timestamp: {}", timestamp(l.time_unix_nano)));
                b.line(format_args!("SeverityText: {}", esc(&l.severity_text)));
                b.line(format_args!(
                    "SeverityNumber: {}({})",
                    severity(l.severity_number),
                    l.severity_number
                ));
                if !l.event_name.is_empty() {
                    b.line(format_args!("EventName: {}", esc(&l.event_name)));
                }
                b.line(format_args!("Body: {}", typed(&l.body)));
                b.attributes("Attributes", &l.attributes);
                b.line(format_args!("Trace ID: {}", hex_id(&l.trace_id)));
                b.line(format_args!("Span ID: {}", hex_id(&l.span_id)));
                b.line(format_args!("Flags: {}", l.flags));
            }
        }
    }
    b.0
}

fn temporality(t: i32) -> &'static str {
    match t {
        1 => "Delta",
        2 => "Cumulative",
        _ => "Unspecified",
    }
}

fn number_points(b: &mut Buf, points: &[NumberDataPoint]) {
    for (i, p) in points.iter().enumerate() {
        b.point_head(
            format_args!("NumberDataPoints #{i}"),
            &p.attributes,
            (p.start_time_unix_nano, p.time_unix_nano),
        );
        match p.value {
            Some(number_data_point::Value::AsInt(v)) => b.line(format_args!("Value: {v}")),
            Some(number_data_point::Value::AsDouble(v)) => b.line(format_args!("Value: {v:.6}")),
            None => {}
        }
    }
}

/// The detailed view of metrics.
pub fn detailed_metrics(rm: &[ResourceMetrics]) -> String {
    let mut b = Buf(String::new());
    for (i, r) in rm.iter().enumerate() {
        b.line(format_args!("ResourceMetrics #{i}"));
        b.line(format_args!("Resource SchemaURL: {}", esc(&r.schema_url)));
        b.attributes(
            "Resource attributes",
            r.resource.as_ref().map_or(&[][..], |x| &x.attributes),
        );
        for (j, s) in r.scope_metrics.iter().enumerate() {
            b.line(format_args!("ScopeMetrics #{j}"));
            b.line(format_args!(
                "ScopeMetrics SchemaURL: {}",
                esc(&s.schema_url)
            ));
            b.scope(s.scope.as_ref());
            for (k, m) in s.metrics.iter().enumerate() {
                b.line(format_args!("Metric #{k}"));
                b.line("Descriptor:");
                b.line(format_args!("     -> Name: {}", esc(&m.name)));
                b.line(format_args!("     -> Description: {}", esc(&m.description)));
                b.line(format_args!("     -> Unit: {}", esc(&m.unit)));
                let ty = match &m.data {
                    None => "Empty",
                    Some(metric::Data::Gauge(_)) => "Gauge",
                    Some(metric::Data::Sum(_)) => "Sum",
                    Some(metric::Data::Histogram(_)) => "Histogram",
                    Some(metric::Data::ExponentialHistogram(_)) => "ExponentialHistogram",
                    Some(metric::Data::Summary(_)) => "Summary",
                };
                b.line(format_args!("     -> DataType: {ty}"));
                match &m.data {
                    Some(metric::Data::Gauge(g)) => number_points(&mut b, &g.data_points),
                    Some(metric::Data::Sum(sm)) => {
                        b.line(format_args!("     -> IsMonotonic: {}", sm.is_monotonic));
                        b.line(format_args!(
                            "     -> AggregationTemporality: {}",
                            temporality(sm.aggregation_temporality)
                        ));
                        number_points(&mut b, &sm.data_points);
                    }
                    Some(metric::Data::Histogram(h)) => {
                        b.line(format_args!(
                            "     -> AggregationTemporality: {}",
                            temporality(h.aggregation_temporality)
                        ));
                        for (n, p) in h.data_points.iter().enumerate() {
                            b.point_head(
                                format_args!("HistogramDataPoints #{n}"),
                                &p.attributes,
                                (p.start_time_unix_nano, p.time_unix_nano),
                            );
                            b.count_sum_min_max(p.count, p.sum, p.min, p.max);
                            for (e, bound) in p.explicit_bounds.iter().enumerate() {
                                b.line(format_args!("ExplicitBounds #{e}: {bound:.6}"));
                            }
                            for (e, c) in p.bucket_counts.iter().enumerate() {
                                b.line(format_args!("Buckets #{e}, Count: {c}"));
                            }
                        }
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        b.line(format_args!(
                            "     -> AggregationTemporality: {}",
                            temporality(h.aggregation_temporality)
                        ));
                        for (n, p) in h.data_points.iter().enumerate() {
                            b.point_head(
                                format_args!("ExponentialHistogramDataPoints #{n}"),
                                &p.attributes,
                                (p.start_time_unix_nano, p.time_unix_nano),
                            );
                            b.count_sum_min_max(p.count, p.sum, p.min, p.max);
                            let factor = std::f64::consts::LN_2 * 2f64.powi(-p.scale);
                            if let Some(neg) = &p.negative {
                                for pos in (0..neg.bucket_counts.len()).rev() {
                                    let index = f64::from(neg.offset) + pos as f64;
                                    let (lower, upper) =
                                        ((index * factor).exp(), ((index + 1.0) * factor).exp());
                                    b.line(format_args!(
                                        "Bucket [{:.6}, {:.6}), Count: {}",
                                        -upper, -lower, neg.bucket_counts[pos]
                                    ));
                                }
                            }
                            if p.zero_count != 0 {
                                b.line(format_args!("Bucket [0, 0], Count: {}", p.zero_count));
                            }
                            if let Some(posb) = &p.positive {
                                for (pos, c) in posb.bucket_counts.iter().enumerate() {
                                    let index = f64::from(posb.offset) + pos as f64;
                                    let (lower, upper) =
                                        ((index * factor).exp(), ((index + 1.0) * factor).exp());
                                    b.line(format_args!(
                                        "Bucket ({lower:.6}, {upper:.6}], Count: {c}"
                                    ));
                                }
                            }
                        }
                    }
                    Some(metric::Data::Summary(sm)) => {
                        for (n, p) in sm.data_points.iter().enumerate() {
                            b.point_head(
                                format_args!("SummaryDataPoints #{n}"),
                                &p.attributes,
                                (p.start_time_unix_nano, p.time_unix_nano),
                            );
                            b.line(format_args!("Count: {}", p.count));
                            b.line(format_args!("Sum: {:.6}", p.sum));
                            for (q, v) in p.quantile_values.iter().enumerate() {
                                b.line(format_args!(
                                    "QuantileValue #{q}: Quantile {:.6}, Value {:.6}",
                                    v.quantile, v.value
                                ));
                            }
                        }
                    }
                    None => {}
                }
            }
        }
    }
    b.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span, Status, span};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    /// 2020-02-11 20:26:12 UTC in Unix nanoseconds.
    const T0: u64 = 1_581_452_772_000_000_000;

    /// The Collector's `testdata.GenerateTraces(2)`, as its debug exporter's tests use it.
    fn collector_two_spans() -> Vec<ResourceSpans> {
        let event = |name: &str, attrs: Vec<KeyValue>| span::Event {
            time_unix_nano: T0 + 1_000_000_123,
            name: name.into(),
            attributes: attrs,
            dropped_attributes_count: 2,
        };
        let link = |attrs: Vec<KeyValue>| span::Link {
            attributes: attrs,
            dropped_attributes_count: 4,
            ..Default::default()
        };
        vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("resource-attr", "resource-attr-val-1")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    Span {
                        trace_id: (1..=16).collect(),
                        span_id: (0x11..=0x18).collect(),
                        trace_state: "ot=th:0".into(),
                        name: "operationA".into(),
                        start_time_unix_nano: T0 + 321,
                        end_time_unix_nano: T0 + 1_000_000_789,
                        dropped_attributes_count: 1,
                        events: vec![
                            event(
                                "event-with-attr",
                                vec![kv("span-event-attr", "span-event-attr-val")],
                            ),
                            event("event", vec![]),
                        ],
                        dropped_events_count: 1,
                        status: Some(Status {
                            message: "status-cancelled".into(),
                            code: 2,
                        }),
                        ..Default::default()
                    },
                    Span {
                        name: "operationB".into(),
                        start_time_unix_nano: T0 + 321,
                        end_time_unix_nano: T0 + 1_000_000_789,
                        links: vec![
                            link(vec![kv("span-link-attr", "span-link-attr-val")]),
                            link(vec![]),
                        ],
                        dropped_links_count: 3,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    /// The Collector's expected output for that input:
    /// exporter/debugexporter/internal/otlptext/testdata/traces/two_spans.out.
    const TWO_SPANS_OUT: &str = "ResourceSpans #0
Resource SchemaURL: 
Resource attributes:
     -> resource-attr: Str(resource-attr-val-1)
ScopeSpans #0
ScopeSpans SchemaURL: 
InstrumentationScope  
Span #0
    Trace ID       : 0102030405060708090a0b0c0d0e0f10
    Parent ID      : 
    ID             : 1112131415161718
    Name           : operationA
    Kind           : Unspecified
    TraceState     : ot=th:0
    Start time     : 2020-02-11 20:26:12.000000321 +0000 UTC
    End time       : 2020-02-11 20:26:13.000000789 +0000 UTC
    Status code    : Error
    Status message : status-cancelled
    DroppedAttributesCount: 1
Events:
SpanEvent #0
     -> Name: event-with-attr
     -> Timestamp: 2020-02-11 20:26:13.000000123 +0000 UTC
     -> DroppedAttributesCount: 2
     -> Attributes::
          -> span-event-attr: Str(span-event-attr-val)
SpanEvent #1
     -> Name: event
     -> Timestamp: 2020-02-11 20:26:13.000000123 +0000 UTC
     -> DroppedAttributesCount: 2
    DroppedEventsCount: 1
    DroppedLinksCount: 0
Span #1
    Trace ID       : 
    Parent ID      : 
    ID             : 
    Name           : operationB
    Kind           : Unspecified
    Start time     : 2020-02-11 20:26:12.000000321 +0000 UTC
    End time       : 2020-02-11 20:26:13.000000789 +0000 UTC
    Status code    : Unset
    Status message : 
    DroppedAttributesCount: 0
    DroppedEventsCount: 0
Links:
SpanLink #0
     -> Trace ID: 
     -> ID: 
     -> TraceState: 
     -> DroppedAttributesCount: 4
     -> Attributes::
          -> span-link-attr: Str(span-link-attr-val)
SpanLink #1
     -> Trace ID: 
     -> ID: 
     -> TraceState: 
     -> DroppedAttributesCount: 4
    DroppedLinksCount: 3
";

    #[test]
    fn detailed_spans_are_the_collectors_text_line_by_line() {
        let got = detailed_traces(&collector_two_spans());
        for (n, (g, w)) in got.lines().zip(TWO_SPANS_OUT.lines()).enumerate() {
            assert_eq!(g, w, "line {}", n + 1);
        }
        assert_eq!(got, TWO_SPANS_OUT);
    }

    /// The Collector's `GenerateLogs(1)` and its expected output,
    /// exporter/debugexporter/internal/otlptext/testdata/logs/one_record.out.
    #[test]
    fn detailed_log_records_are_the_collectors_text() {
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ScopeLogs};
        let rl = vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("resource-attr", "resource-attr-val-1")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: T0 + 1_000_000_789,
                    severity_number: 9,
                    severity_text: "Info".into(),
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(
                            "This is a log message".into(),
                        )),
                    }),
                    attributes: vec![
                        kv("app", "server"),
                        KeyValue {
                            key: "instance_num".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::IntValue(1)),
                            }),
                            ..Default::default()
                        },
                    ],
                    trace_id: vec![8, 4, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                    span_id: vec![1, 2, 4, 8, 0, 0, 0, 0],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }];
        let want = "ResourceLog #0
Resource SchemaURL: 
Resource attributes:
     -> resource-attr: Str(resource-attr-val-1)
ScopeLogs #0
ScopeLogs SchemaURL: 
InstrumentationScope  
LogRecord #0
ObservedTimestamp: 1970-01-01 00:00:00 +0000 UTC
Timestamp: 2020-02-11 20:26:13.000000789 +0000 UTC
SeverityText: Info
SeverityNumber: Info(9)
Body: Str(This is a log message)
Attributes:
     -> app: Str(server)
     -> instance_num: Int(1)
Trace ID: 08040201000000000000000000000000
Span ID: 0102040800000000
Flags: 0
";
        assert_eq!(detailed_logs(&rl), want);
        assert_eq!(
            normal_logs(&rl),
            "ResourceLog #0 resource-attr=resource-attr-val-1\nScopeLog #0\nThis is a log message app=server instance_num=1\n"
        );
    }

    /// Two gauges of the Collector's test data and its expected output,
    /// exporter/debugexporter/internal/otlptext/testdata/metrics/two_metrics.out.
    #[test]
    fn detailed_metrics_are_the_collectors_text() {
        use opentelemetry_proto::tonic::metrics::v1::{Gauge, Metric, ScopeMetrics};
        let point = |labels: Vec<KeyValue>, v: number_data_point::Value| NumberDataPoint {
            attributes: labels,
            start_time_unix_nano: T0 + 321,
            time_unix_nano: T0 + 1_000_000_789,
            value: Some(v),
            ..Default::default()
        };
        let gauge = |name: &str, points| Metric {
            name: name.into(),
            unit: "1".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: points,
            })),
            ..Default::default()
        };
        use number_data_point::Value::{AsDouble, AsInt};
        let rm = vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("resource-attr", "resource-attr-val-1")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    gauge(
                        "gauge-int",
                        vec![
                            point(vec![kv("label-1", "label-value-1")], AsInt(123)),
                            point(vec![kv("label-2", "label-value-2")], AsInt(456)),
                        ],
                    ),
                    gauge(
                        "gauge-double",
                        vec![
                            point(
                                vec![
                                    kv("label-1", "label-value-1"),
                                    kv("label-2", "label-value-2"),
                                ],
                                AsDouble(1.23),
                            ),
                            point(
                                vec![
                                    kv("label-1", "label-value-1"),
                                    kv("label-3", "label-value-3"),
                                ],
                                AsDouble(4.56),
                            ),
                        ],
                    ),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }];
        let want = "ResourceMetrics #0
Resource SchemaURL: 
Resource attributes:
     -> resource-attr: Str(resource-attr-val-1)
ScopeMetrics #0
ScopeMetrics SchemaURL: 
InstrumentationScope  
Metric #0
Descriptor:
     -> Name: gauge-int
     -> Description: 
     -> Unit: 1
     -> DataType: Gauge
NumberDataPoints #0
Data point attributes:
     -> label-1: Str(label-value-1)
StartTimestamp: 2020-02-11 20:26:12.000000321 +0000 UTC
Timestamp: 2020-02-11 20:26:13.000000789 +0000 UTC
Value: 123
NumberDataPoints #1
Data point attributes:
     -> label-2: Str(label-value-2)
StartTimestamp: 2020-02-11 20:26:12.000000321 +0000 UTC
Timestamp: 2020-02-11 20:26:13.000000789 +0000 UTC
Value: 456
Metric #1
Descriptor:
     -> Name: gauge-double
     -> Description: 
     -> Unit: 1
     -> DataType: Gauge
NumberDataPoints #0
Data point attributes:
     -> label-1: Str(label-value-1)
     -> label-2: Str(label-value-2)
StartTimestamp: 2020-02-11 20:26:12.000000321 +0000 UTC
Timestamp: 2020-02-11 20:26:13.000000789 +0000 UTC
Value: 1.230000
NumberDataPoints #1
Data point attributes:
     -> label-1: Str(label-value-1)
     -> label-3: Str(label-value-3)
StartTimestamp: 2020-02-11 20:26:12.000000321 +0000 UTC
Timestamp: 2020-02-11 20:26:13.000000789 +0000 UTC
Value: 4.560000
";
        assert_eq!(detailed_metrics(&rm), want);
        assert_eq!(
            normal_metrics(&rm),
            "ResourceMetrics #0 resource-attr=resource-attr-val-1\nScopeMetrics #0\ngauge-int{label-1=label-value-1} 123\ngauge-int{label-2=label-value-2} 456\ngauge-double{label-1=label-value-1,label-2=label-value-2} 1.23\ngauge-double{label-1=label-value-1,label-3=label-value-3} 4.56\n"
        );
    }

    #[test]
    fn normal_lines_are_the_collectors() {
        let mut rs = collector_two_spans();
        rs[0].scope_spans[0].scope = Some(InstrumentationScope {
            name: "lib".into(),
            version: "1.2".into(),
            ..Default::default()
        });
        rs[0].scope_spans[0].spans[0].attributes = vec![kv("k", "v"), kv("n", "7")];
        let text = normal_traces(&rs);
        assert_eq!(
            text,
            "ResourceTraces #0 resource-attr=resource-attr-val-1\nScopeTraces #0 lib@1.2\noperationA 0102030405060708090a0b0c0d0e0f10 1112131415161718 k=v n=7\noperationB  \n"
        );
    }

    #[test]
    fn timestamps_and_numbers_as_go_writes_them() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(
            timestamp(T0 + 500_000_000),
            "2020-02-11 20:26:12.5 +0000 UTC"
        );
        assert_eq!(go_v(1.5), "1.5");
        assert_eq!(go_v(3.0), "3");
        assert_eq!(go_v(1e21), "1e+21");
        assert_eq!(go_v(0.00001), "1e-05");
        assert_eq!(severity(9), "Info");
        assert_eq!(severity(10), "Info2");
        assert_eq!(severity(24), "Fatal4");
        assert_eq!(severity(0), "Unspecified");
    }
}
