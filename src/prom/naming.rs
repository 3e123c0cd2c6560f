//! Metric and label names as the compatibility specification writes them, and the labels of a
//! point while its label set is built.

use std::borrow::Cow;
use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::KeyValue;

/// Prometheus label name: invalid characters → `_`, a leading digit → `key_`.
pub use crate::signal::value::label_name;

pub fn unit_word(u: &str) -> Option<&'static str> {
    Some(match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

pub fn per_word(u: &str) -> Option<&'static str> {
    Some(match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

pub fn sanitize_name(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The Prometheus metric name of an OTLP metric.
pub fn metric_name(
    name: &str,
    unit: &str,
    counter: bool,
    gauge: bool,
    suffixes: bool,
    namespace: Option<&str>,
) -> String {
    let mut n = sanitize_name(name);
    if suffixes {
        // `{packets}` and the like are annotations, not units.
        let unit = unit.split('{').next().unwrap_or("").trim();
        let mut words: Vec<String> = Vec::new();
        match unit.split_once('/') {
            Some((main, per)) => {
                if let Some(w) = unit_word(main)
                    .map(str::to_owned)
                    .or_else(|| (!main.is_empty() && main != "1").then(|| sanitize_name(main)))
                {
                    words.push(w);
                }
                if let Some(p) = per_word(per)
                    .map(str::to_owned)
                    .or_else(|| (!per.is_empty()).then(|| sanitize_name(per)))
                {
                    words.push(format!("per_{p}"));
                }
            }
            None if unit == "1" && gauge => words.push("ratio".into()),
            None if unit.is_empty() || unit == "1" => {}
            None => words.push(unit_word(unit).map_or_else(|| sanitize_name(unit), str::to_owned)),
        }
        for w in words {
            if !n.split('_').any(|part| part == w) && !n.ends_with(&w) {
                n.push('_');
                n.push_str(&w);
            }
        }
        if counter && !n.ends_with("_total") {
            n.push_str("_total");
        }
    }
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{}_{n}", sanitize_name(ns)),
        _ => n,
    }
}

/// One label of a point while its label set is built; borrowed from the input where it can be.
#[derive(Clone, Debug)]
pub struct Label<'a> {
    pub name: Cow<'a, str>,
    pub value: Cow<'a, str>,
}

impl<'a> Label<'a> {
    pub fn new(name: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, str>>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    pub fn borrowed(&self) -> Label<'_> {
        Label::new(&*self.name, &*self.value)
    }
}

/// Label names of the attribute keys seen in earlier exports, so that a dotted key is not
/// rewritten for every point. Keys met for the first time are sanitized as they come and
/// remembered after the export (at most [`MAX_NAMES`] of them).
pub struct Names<'n> {
    pub known: &'n HashMap<String, String>,
    pub misses: Vec<String>,
}

pub const MAX_NAMES: usize = 4096;

impl<'n> Names<'n> {
    pub fn get<'a>(&mut self, key: &'a str) -> Cow<'a, str>
    where
        'n: 'a,
    {
        if let Some(n) = self.known.get(key) {
            return Cow::Borrowed(n);
        }
        let n = label_name(key);
        if matches!(n, Cow::Owned(_)) && self.known.len() + self.misses.len() < MAX_NAMES {
            self.misses.push(key.to_owned());
        }
        n
    }
}

pub fn push_attrs<'a, 'n: 'a>(
    labels: &mut Vec<Label<'a>>,
    names: &mut Names<'n>,
    attrs: &'a [KeyValue],
) {
    labels.extend(attrs.iter().map(|kv| {
        Label::new(
            names.get(&kv.key),
            crate::signal::value::option_text(&kv.value),
        )
    }));
}

/// Sorts labels by name, drops empty ones, and joins the values of colliding names (two
/// attribute keys that sanitize alike) with `;`, sorted, as the compatibility spec says.
pub fn normalize(labels: &mut Vec<Label<'_>>) {
    labels.retain(|l| !l.value.is_empty() && !l.name.is_empty());
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    let mut i = 0;
    while i + 1 < labels.len() {
        if labels[i].name == labels[i + 1].name {
            let end = (i + 1..labels.len())
                .find(|&j| labels[j].name != labels[i].name)
                .unwrap_or(labels.len());
            let mut parts: Vec<&str> = labels[i..end]
                .iter()
                .flat_map(|l| l.value.split(';'))
                .collect();
            parts.sort_unstable();
            let joined = parts.join(";");
            labels[i].value = Cow::Owned(joined);
            labels.drain(i + 1..end);
        }
        i += 1;
    }
}
