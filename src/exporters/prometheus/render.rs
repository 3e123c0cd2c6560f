//! The exposition: Prometheus text 0.0.4, or OpenMetrics 1.0.0 (with exemplars and `_created`).

use std::fmt::Write as _;

use super::store::{Exemplar, Family, Kind, Store, Value};
use crate::prom::fmt_float;

pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

/// OpenMetrics when it is enabled and the scraper lists it in `Accept`, else text.
pub fn negotiate(accept: Option<&str>, open_metrics: bool) -> Format {
    match accept {
        Some(a) if open_metrics && a.contains("application/openmetrics-text") => {
            Format::OpenMetrics
        }
        _ => Format::Text,
    }
}

struct Writer<'a> {
    out: &'a mut String,
    format: Format,
    timestamps: bool,
    /// The family's name in samples, and the series being written: its labels and time.
    name: &'a str,
    labels: &'a str,
    ts_ms: i64,
}

impl Writer<'_> {
    fn value(&mut self, v: f64) {
        if v.is_nan() {
            self.out.push_str("NaN");
        } else {
            self.out.push_str(&fmt_float(v));
        }
    }

    fn timestamp(&mut self, ts_ms: i64) {
        if ts_ms <= 0 {
            return;
        }
        match self.format {
            Format::Text => {
                let _ = write!(self.out, " {ts_ms}");
            }
            Format::OpenMetrics => {
                let _ = write!(self.out, " {}.{:03}", ts_ms / 1000, ts_ms % 1000);
            }
        }
    }

    /// One sample line: `name{labels,extra} value [timestamp] [# exemplar]`.
    fn sample(
        &mut self,
        suffix: &str,
        extra: Option<(&str, &str)>,
        v: f64,
        exemplar: Option<&Exemplar>,
    ) {
        let (labels, ts_ms) = (self.labels, self.ts_ms);
        self.out.push_str(self.name);
        self.out.push_str(suffix);
        if !labels.is_empty() || extra.is_some() {
            self.out.push('{');
            self.out.push_str(labels);
            if let Some((k, val)) = extra {
                if !labels.is_empty() {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{val}\"");
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.value(v);
        if self.timestamps {
            self.timestamp(ts_ms);
        }
        if self.format == Format::OpenMetrics
            && let Some(e) = exemplar
            && !e.labels.is_empty()
        {
            let _ = write!(self.out, " # {{{}}} ", e.labels);
            self.value(e.value);
            if e.ts_ms > 0 {
                let _ = write!(self.out, " {}.{:03}", e.ts_ms / 1000, e.ts_ms % 1000);
            }
        }
        self.out.push('\n');
    }

    /// OpenMetrics' `_created`: the series' start time, never with a timestamp of its own.
    fn created(&mut self, start_ms: i64) {
        if self.format == Format::OpenMetrics && start_ms > 0 {
            let timestamps = std::mem::replace(&mut self.timestamps, false);
            self.sample("_created", None, start_ms as f64 / 1000.0, None);
            self.timestamps = timestamps;
        }
    }
}

fn escape_help(help: &str, format: Format, out: &mut String) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// The whole exposition, families sorted by name and series by labels.
pub fn render(store: &Store, format: Format, timestamps: bool) -> String {
    let mut out = String::new();
    let mut names: Vec<&String> = store.families.keys().collect();
    names.sort_unstable();
    for name in names {
        let fam = &store.families[name];
        family(&mut out, name, fam, format, timestamps);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn family(out: &mut String, name: &str, fam: &Family, format: Format, timestamps: bool) {
    // OpenMetrics names a counter family without `_total` and its sample with it.
    let (fam_name, counter_suffix) = match (fam.kind, format) {
        (Kind::Counter, Format::OpenMetrics) => {
            (name.strip_suffix("_total").unwrap_or(name), "_total")
        }
        _ => (name, ""),
    };
    let kind = match (fam.kind, format) {
        (Kind::Gauge, _) | (Kind::Info, Format::Text) => "gauge",
        (Kind::Counter, _) => "counter",
        (Kind::Histogram, _) => "histogram",
        (Kind::Summary, _) => "summary",
        (Kind::Info, Format::OpenMetrics) => "info",
    };
    // OpenMetrics: an info family's name leaves out `_info`.
    let type_name = match (fam.kind, format) {
        (Kind::Info, Format::OpenMetrics) => fam_name.strip_suffix("_info").unwrap_or(fam_name),
        _ => fam_name,
    };
    if !fam.help.is_empty() {
        let _ = write!(out, "# HELP {type_name} ");
        escape_help(&fam.help, format, out);
        out.push('\n');
    }
    let _ = writeln!(out, "# TYPE {type_name} {kind}");
    if format == Format::OpenMetrics
        && let Some(u) = fam.unit
        && fam_name.ends_with(&format!("_{u}"))
    {
        let _ = writeln!(out, "# UNIT {fam_name} {u}");
    }
    let mut keys: Vec<&Box<str>> = fam.series.keys().collect();
    keys.sort_unstable();
    let mut w = Writer {
        out,
        format,
        timestamps,
        name: fam_name,
        labels: "",
        ts_ms: 0,
    };
    for key in keys {
        let s = &fam.series[key];
        (w.labels, w.ts_ms) = (key, s.ts_ms);
        match &s.value {
            Value::Number(v) => {
                let ex = (fam.kind == Kind::Counter)
                    .then(|| s.exemplars.last())
                    .flatten();
                w.sample(counter_suffix, None, *v, ex);
                if fam.kind == Kind::Counter {
                    w.created(s.start_ms);
                }
            }
            Value::Histogram {
                bounds,
                counts,
                count,
                sum,
            } => {
                let mut cumulative = 0u64;
                let mut lower = f64::NEG_INFINITY;
                for (i, c) in counts.iter().enumerate() {
                    cumulative += c;
                    let upper = bounds.get(i).copied().unwrap_or(f64::INFINITY);
                    if upper == f64::INFINITY && i < bounds.len() {
                        // An explicit +Inf bound: the last bucket covers it.
                        continue;
                    }
                    let ex = s
                        .exemplars
                        .iter()
                        .rev()
                        .find(|e| e.value > lower && e.value <= upper);
                    let le = fmt_float(upper);
                    let n = if upper == f64::INFINITY {
                        *count
                    } else {
                        cumulative
                    };
                    w.sample("_bucket", Some(("le", &le)), n as f64, ex);
                    lower = upper;
                }
                w.sample("_sum", None, *sum, None);
                w.sample("_count", None, *count as f64, None);
                w.created(s.start_ms);
            }
            Value::Summary {
                quantiles,
                count,
                sum,
            } => {
                for (q, v) in quantiles {
                    let qs = fmt_float(*q);
                    w.sample("", Some(("quantile", &qs)), *v, None);
                }
                w.sample("_sum", None, *sum, None);
                w.sample("_count", None, *count as f64, None);
                w.created(s.start_ms);
            }
        }
    }
}
