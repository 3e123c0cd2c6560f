//! Stanza's stateless operators (`regex_parser`, `json_parser`, `key_value_parser`, `csv_parser`,
//! `uri_parser`, `severity_parser`, `time_parser`, `trace_parser`, `scope_name_parser`, `move`,
//! `copy`, `remove`, `add`, `flatten`, `retain`, `unquote`, `assign_keys`, `regex_replace`,
//! `router`, `noop`) with the parsers' embedded `timestamp:` and `severity:` blocks, `if:`
//! conditions and `on_error`, and the graph they form through `output` ([`run`]).

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;

use super::entry::{Entry, Field, Value};
use super::expr::Expr;
use super::parsers::{self, Csv, KeyValue, Trace};

/// The output index meaning "leave the operators": the entry goes to the receiver's output.
pub const END: usize = usize::MAX;

/// A parser of a string into a map.
#[derive(Debug, Clone)]
pub enum TextParser {
    Json,
    KeyValue(KeyValue),
    Csv(Csv),
    Uri,
}

impl TextParser {
    fn name(&self) -> &'static str {
        match self {
            TextParser::Json => "json_parser",
            TextParser::KeyValue(_) => "key_value_parser",
            TextParser::Csv(_) => "csv_parser",
            TextParser::Uri => "uri_parser",
        }
    }

    fn parse(&self, e: &Entry, text: &str) -> Result<super::entry::Map, String> {
        match self {
            TextParser::Json => {
                let v: serde_json::Value =
                    serde_json::from_str(text).map_err(|err| format!("json_parser: {err}"))?;
                match Value::from_json(v) {
                    Value::Map(m) => Ok(m),
                    _ => Err("json_parser: not a JSON object".into()),
                }
            }
            TextParser::KeyValue(kv) => kv.parse(text),
            TextParser::Csv(c) => c.parse(e, text),
            TextParser::Uri => parsers::parse_uri(text),
        }
    }
}

/// What a parser does with an entry it cannot parse (stanza's `on_error`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Pass the entry on unchanged and log the error (default).
    #[default]
    Send,
    SendQuiet,
    Drop,
    DropQuiet,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TimeConfig {
    /// Default `body` (for the `timestamp:` block: required).
    pub parse_from: Option<String>,
    /// `strptime` (default), `gotime` or `epoch`.
    pub layout_type: Option<String>,
    pub layout: Option<String>,
    /// IANA zone for timestamps without an offset. Default: the system's local zone.
    pub location: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct SeverityConfig {
    pub parse_from: Option<String>,
    /// `default` (level names) or `none`.
    pub preset: Option<String>,
    /// Severity name → the values that mean it: a string, a number, a list of them, or
    /// `{min, max}`; `2xx`..`5xx` for HTTP status classes.
    pub mapping: Option<BTreeMap<String, serde_json::Value>>,
    pub overwrite_text: Option<bool>,
}

/// A compiled time parser.
#[derive(Debug, Clone)]
pub struct TimeParser {
    from: Field,
    kind: TimeKind,
    tz: jiff::tz::TimeZone,
}

#[derive(Debug, Clone)]
enum TimeKind {
    /// A jiff strtime format.
    Strptime(String),
    Epoch(EpochUnit),
}

#[derive(Debug, Clone, Copy)]
enum EpochUnit {
    S,
    Ms,
    Us,
    Ns,
    /// `s.ms`, `s.us`, `s.ns`: seconds with a fraction.
    SFrac,
}

impl TimeParser {
    pub fn new(c: &TimeConfig) -> Result<TimeParser, String> {
        let from = Field::parse(c.parse_from.as_deref().unwrap_or("body"))?;
        let layout_type = c.layout_type.as_deref().unwrap_or("strptime");
        let layout = c.layout.clone().unwrap_or_default();
        let kind = match layout_type {
            "strptime" => {
                if layout.is_empty() {
                    return Err("`layout` is required".into());
                }
                TimeKind::Strptime(strptime_to_jiff(&layout))
            }
            "gotime" => {
                if layout.is_empty() {
                    return Err("`layout` is required".into());
                }
                TimeKind::Strptime(gotime_to_jiff(&layout)?)
            }
            "epoch" => TimeKind::Epoch(match layout.as_str() {
                "s" => EpochUnit::S,
                "ms" => EpochUnit::Ms,
                "us" => EpochUnit::Us,
                "ns" => EpochUnit::Ns,
                "s.ms" | "s.us" | "s.ns" => EpochUnit::SFrac,
                other => {
                    return Err(format!(
                        "epoch layout `{other}`: expected s, ms, us, ns, s.ms, s.us or s.ns"
                    ));
                }
            }),
            other => {
                return Err(format!(
                    "layout_type `{other}`: expected strptime, gotime or epoch"
                ));
            }
        };
        let tz = match &c.location {
            Some(l) => jiff::tz::TimeZone::get(l).map_err(|e| format!("location `{l}`: {e}"))?,
            None => jiff::tz::TimeZone::system(),
        };
        Ok(TimeParser { from, kind, tz })
    }

    /// Sets the entry's timestamp; an error leaves it untouched.
    pub fn apply(&self, e: &mut Entry) -> Result<(), String> {
        let v = self
            .from
            .get(e)
            .ok_or_else(|| "time_parser: the field to parse is missing".to_string())?;
        e.timestamp = self.parse_value(v)?;
        Ok(())
    }

    pub fn parse_value(&self, v: &Value) -> Result<u64, String> {
        match &self.kind {
            TimeKind::Epoch(u) => {
                let n: f64 = match v {
                    Value::Int(i) => *i as f64,
                    Value::Double(d) => *d,
                    Value::Str(s) => s
                        .trim()
                        .parse()
                        .map_err(|_| format!("time_parser: `{s}` is not an epoch number"))?,
                    _ => return Err("time_parser: not an epoch number".into()),
                };
                // Integers are exact in i64 arithmetic; go through f64 only for fractions.
                let ns = match (u, v) {
                    (EpochUnit::S, Value::Int(i)) => i.saturating_mul(1_000_000_000),
                    (EpochUnit::Ms, Value::Int(i)) => i.saturating_mul(1_000_000),
                    (EpochUnit::Us, Value::Int(i)) => i.saturating_mul(1_000),
                    (EpochUnit::Ns, Value::Int(i)) => *i,
                    (EpochUnit::S | EpochUnit::SFrac, _) => (n * 1e9) as i64,
                    (EpochUnit::Ms, _) => (n * 1e6) as i64,
                    (EpochUnit::Us, _) => (n * 1e3) as i64,
                    (EpochUnit::Ns, _) => n as i64,
                };
                Ok(ns.max(0) as u64)
            }
            TimeKind::Strptime(fmt) => {
                let s = v
                    .to_text()
                    .ok_or_else(|| "time_parser: the field is not text".to_string())?;
                let bdt = jiff::fmt::strtime::parse(fmt, s.trim())
                    .map_err(|e| format!("time_parser: `{s}` does not match the layout: {e}"))?;
                let ts = match bdt.to_timestamp() {
                    Ok(ts) => ts,
                    Err(_) => {
                        // No offset in the text: read it in `location`. A layout without a
                        // year (syslog's `Jan  2 15:04:05`) takes the current one.
                        let mut bdt = bdt;
                        if bdt.year().is_none() {
                            bdt.set_year(Some(jiff::ZonedDateTime::now().year()))
                                .map_err(|e| format!("time_parser: {e}"))?;
                        }
                        let dt = bdt
                            .to_datetime()
                            .map_err(|e| format!("time_parser: `{s}`: {e}"))?;
                        dt.to_zoned_datetime(self.tz.clone())
                            .map_err(|e| format!("time_parser: `{s}`: {e}"))?
                            .timestamp()
                    }
                };
                Ok(ts.as_nanosecond().max(0) as u64)
            }
        }
    }
}

/// Stanza's strptime directives differ from jiff's in the fraction ones: `%L` (ms), `%f` (µs)
/// and `%s` (ns) are all "fractional digits" here, which jiff's `%f` reads at any precision.
pub fn strptime_to_jiff(layout: &str) -> String {
    let mut out = String::with_capacity(layout.len());
    let mut it = layout.chars().peekable();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('L' | 'f' | 's') => out.push_str("%f"),
            Some('o') => out.push_str("%z"),
            Some(d) => {
                out.push('%');
                out.push(d);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Go reference-time layouts (`2006-01-02T15:04:05.000Z07:00`) as jiff strtime.
fn gotime_to_jiff(layout: &str) -> Result<String, String> {
    const TOKENS: &[(&str, &str)] = &[
        ("January", "%B"),
        ("Monday", "%A"),
        ("Z07:00", "%:z"),
        ("-07:00", "%:z"),
        ("Z0700", "%z"),
        ("-0700", "%z"),
        ("2006", "%Y"),
        ("Jan", "%b"),
        ("Mon", "%a"),
        ("MST", "%Z"),
        ("_2", "%e"),
        ("01", "%m"),
        ("02", "%d"),
        ("15", "%H"),
        ("03", "%I"),
        ("04", "%M"),
        ("05", "%S"),
        ("06", "%y"),
        ("PM", "%p"),
        ("pm", "%P"),
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        // Fractions: `.000`, `.999999999`, `,000`.
        if let Some(r) = rest.strip_prefix(['.', ',']) {
            let n = r.chars().take_while(|c| *c == '0' || *c == '9').count();
            if n > 0 {
                out.push_str(&rest[..1]);
                out.push_str("%f");
                rest = &r[n..];
                continue;
            }
        }
        for (go, j) in TOKENS {
            if let Some(r) = rest.strip_prefix(go) {
                out.push_str(j);
                rest = r;
                continue 'outer;
            }
        }
        let c = rest.chars().next().expect("non-empty");
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    Ok(out)
}

/// A compiled severity parser.
#[derive(Debug, Clone)]
pub struct SeverityParser {
    from: Field,
    /// Lower-cased text → (number, canonical text).
    exact: Vec<(String, i32)>,
    ranges: Vec<(i64, i64, i32)>,
    overwrite_text: bool,
}

/// OTel severity numbers of stanza's level names.
fn severity_by_name(name: &str) -> Option<i32> {
    let n = name.to_ascii_lowercase();
    let (base, rest) = n.split_at(n.find(|c: char| c.is_ascii_digit()).unwrap_or(n.len()));
    let start = match base {
        "trace" => 1,
        "debug" => 5,
        "info" => 9,
        "warn" | "warning" => 13,
        "error" => 17,
        "fatal" => 21,
        _ => return None,
    };
    let k: i32 = if rest.is_empty() {
        1
    } else {
        rest.parse().ok().filter(|k| (1..=4).contains(k))?
    };
    Some(start + k - 1)
}

pub fn severity_text(n: i32) -> &'static str {
    match n {
        1..=4 => ["TRACE", "TRACE2", "TRACE3", "TRACE4"][(n - 1) as usize],
        5..=8 => ["DEBUG", "DEBUG2", "DEBUG3", "DEBUG4"][(n - 5) as usize],
        9..=12 => ["INFO", "INFO2", "INFO3", "INFO4"][(n - 9) as usize],
        13..=16 => ["WARN", "WARN2", "WARN3", "WARN4"][(n - 13) as usize],
        17..=20 => ["ERROR", "ERROR2", "ERROR3", "ERROR4"][(n - 17) as usize],
        21..=24 => ["FATAL", "FATAL2", "FATAL3", "FATAL4"][(n - 21) as usize],
        _ => "",
    }
}

impl SeverityParser {
    pub fn new(c: &SeverityConfig) -> Result<SeverityParser, String> {
        let from = Field::parse(c.parse_from.as_deref().unwrap_or("body"))?;
        let mut exact: Vec<(String, i32)> = Vec::new();
        let mut ranges = Vec::new();
        match c.preset.as_deref().unwrap_or("default") {
            "default" => {
                for base in ["trace", "debug", "info", "warn", "error", "fatal"] {
                    for k in ["", "2", "3", "4"] {
                        let name = format!("{base}{k}");
                        let n = severity_by_name(&name).expect("known name");
                        exact.push((name, n));
                    }
                }
                for (alias, n) in [
                    ("warning", 13),
                    ("err", 17),
                    ("critical", 21),
                    ("crit", 21),
                    ("emergency", 21),
                    ("panic", 21),
                    ("notice", 10),
                    ("information", 9),
                ] {
                    exact.push((alias.into(), n));
                }
            }
            "none" => {}
            other => return Err(format!("preset `{other}`: expected `default` or `none`")),
        }
        for (name, vals) in c.mapping.iter().flatten() {
            let n = severity_by_name(name).ok_or_else(|| {
                format!("mapping: `{name}` is not a severity (trace, debug, info, warn, error, fatal, with 2-4 suffixes)")
            })?;
            let list = match vals {
                serde_json::Value::Array(a) => a.clone(),
                v => vec![v.clone()],
            };
            for v in list {
                match v {
                    serde_json::Value::String(s) => {
                        let class = s.strip_suffix("xx").and_then(|d| d.parse::<i64>().ok());
                        match class {
                            Some(d) if (1..=5).contains(&d) => {
                                ranges.push((d * 100, d * 100 + 99, n))
                            }
                            _ => {
                                // A later mapping wins over the preset.
                                let key = s.to_ascii_lowercase();
                                exact.retain(|(k, _)| *k != key);
                                exact.push((key, n));
                            }
                        }
                    }
                    serde_json::Value::Number(x) => {
                        let key = x.to_string();
                        exact.retain(|(k, _)| *k != key);
                        exact.push((key, n));
                    }
                    serde_json::Value::Object(o) => {
                        let get = |k: &str| o.get(k).and_then(|v| v.as_i64());
                        match (get("min"), get("max")) {
                            (Some(lo), Some(hi)) => ranges.push((lo, hi, n)),
                            _ => {
                                return Err(format!(
                                    "mapping `{name}`: a range needs integer `min` and `max`"
                                ));
                            }
                        }
                    }
                    other => return Err(format!("mapping `{name}`: unsupported value {other}")),
                }
            }
        }
        Ok(SeverityParser {
            from,
            exact,
            ranges,
            overwrite_text: c.overwrite_text.unwrap_or(false),
        })
    }

    pub fn apply(&self, e: &mut Entry) -> Result<(), String> {
        let Some(v) = self.from.get(e) else {
            return Err("severity_parser: the field to parse is missing".into());
        };
        let Some(text) = v.to_text() else {
            return Err("severity_parser: the field is not text or a number".into());
        };
        let key = text.trim().to_ascii_lowercase();
        let found = self
            .exact
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, n)| *n)
            .or_else(|| {
                let x: i64 = key.parse().ok()?;
                self.ranges
                    .iter()
                    .find(|(lo, hi, _)| (*lo..=*hi).contains(&x))
                    .map(|(_, _, n)| *n)
            });
        // Unmapped text keeps severity 0 with its text, as stanza does.
        e.severity_number = found.unwrap_or(0);
        e.severity_text = match (self.overwrite_text, found) {
            (true, Some(n)) => severity_text(n).to_string(),
            _ => text,
        };
        Ok(())
    }
}

/// One configured operator and where its entries go next (indices into the operator list,
/// [`END`] for the receiver's output; several: a copy to each).
#[derive(Debug, Clone)]
pub struct Op {
    pub cond: Option<Expr>,
    pub on_error: OnError,
    pub kind: OpKind,
    pub outputs: Vec<usize>,
}

/// A `router` route: the first whose `expr` is true takes the entry, with `attributes` added.
#[derive(Debug, Clone)]
pub struct Route {
    pub expr: Expr,
    pub attributes: Vec<(String, AddValue)>,
    pub outputs: Vec<usize>,
}

/// A value to set: as written, or an `EXPR(...)` evaluated on each entry.
#[derive(Debug, Clone)]
pub enum AddValue {
    Lit(Value),
    Expr(Expr),
}

impl AddValue {
    pub fn get(&self, e: &Entry) -> Value {
        match self {
            AddValue::Lit(v) => v.clone(),
            AddValue::Expr(x) => x.value_of(e),
        }
    }
}

/// `regex_parser`'s `cache`: results of recent inputs (file paths repeat on every line), so a
/// repeated input skips the regex. Bounded; cleared when full, as a simple bound on memory.
#[derive(Debug)]
pub struct ParseCache {
    size: usize,
    map: std::sync::Mutex<std::collections::HashMap<String, Vec<(String, Value)>>>,
}

impl Clone for ParseCache {
    fn clone(&self) -> Self {
        ParseCache::new(self.size)
    }
}

impl ParseCache {
    pub fn new(size: usize) -> ParseCache {
        ParseCache {
            size,
            map: Default::default(),
        }
    }
    fn get(&self, k: &str) -> Option<Vec<(String, Value)>> {
        self.map.try_lock().ok()?.get(k).cloned()
    }
    fn put(&self, k: &str, v: &[(String, Value)]) {
        if let Ok(mut m) = self.map.try_lock() {
            if m.len() >= self.size {
                m.clear();
            }
            m.insert(k.to_string(), v.to_vec());
        }
    }
}

#[derive(Debug, Clone)]
pub enum OpKind {
    Regex {
        re: Regex,
        from: Field,
        to: Field,
        time: Option<TimeParser>,
        severity: Option<SeverityParser>,
        cache: Option<ParseCache>,
    },
    /// The parsers of a string field into a map: `key_value_parser`, `csv_parser`,
    /// `uri_parser`, `json_parser`.
    Text {
        parser: TextParser,
        from: Field,
        to: Field,
        time: Option<TimeParser>,
        severity: Option<SeverityParser>,
    },
    Trace(Trace),
    ScopeName(Field),
    Flatten(Field),
    Retain(Vec<Field>),
    Unquote(Field),
    AssignKeys {
        field: Field,
        keys: Vec<String>,
    },
    RegexReplace {
        field: Field,
        re: Regex,
        with: String,
    },
    Router {
        routes: Vec<Route>,
        default: Vec<usize>,
    },
    Severity(SeverityParser),
    Time(TimeParser),
    Move {
        from: Field,
        to: Field,
    },
    Copy {
        from: Field,
        to: Field,
    },
    Remove(Field),
    Add {
        field: Field,
        value: AddValue,
    },
    Noop,
}

/// Runs an entry through the operator graph from the first operator; what leaves it is pushed
/// to `out` (none when an operator dropped it, several when an `output` lists several ids).
pub fn run(ops: &[Op], e: Entry, out: &mut Vec<Entry>) {
    if ops.is_empty() {
        out.push(e);
        return;
    }
    // The common linear case walks without a stack; fan-out parks copies on one.
    let mut parked: Vec<(usize, Entry)> = Vec::new();
    let mut cur = Some((0usize, e));
    while let Some((i, mut e)) = cur.take().or_else(|| parked.pop()) {
        if i == END {
            out.push(e);
            continue;
        }
        let Some(op) = ops.get(i) else { continue };
        let Some(next) = op.apply(&mut e) else {
            continue;
        };
        if let Some((first, rest)) = next.split_first() {
            for j in rest.iter().rev() {
                parked.push((*j, e.clone()));
            }
            cur = Some((*first, e));
        }
    }
}

impl Op {
    /// Applies the operator; where the entry goes next, or None when it is dropped.
    pub fn apply(&self, e: &mut Entry) -> Option<&[usize]> {
        if let Some(c) = &self.cond
            && !c.eval(e)
        {
            return Some(&self.outputs);
        }
        if let OpKind::Router { routes, default } = &self.kind {
            for r in routes {
                if r.expr.eval(e) {
                    for (k, v) in &r.attributes {
                        let v = v.get(e);
                        super::entry::map_set(&mut e.attributes, k, v);
                    }
                    return Some(&r.outputs);
                }
            }
            // No route and no default: stanza drops the entry.
            return (!default.is_empty()).then_some(default.as_slice());
        }
        match self.run(e) {
            Ok(()) => Some(&self.outputs),
            Err(msg) => {
                if matches!(self.on_error, OnError::Send | OnError::Drop) {
                    tracing::warn!(error = %msg, "log operator failed on an entry");
                }
                match self.on_error {
                    OnError::Send | OnError::SendQuiet => Some(&self.outputs),
                    OnError::Drop | OnError::DropQuiet => None,
                }
            }
        }
    }

    fn run(&self, e: &mut Entry) -> Result<(), String> {
        match &self.kind {
            OpKind::Regex {
                re,
                from,
                to,
                time,
                severity,
                cache,
            } => {
                let text = from
                    .get(e)
                    .and_then(Value::to_text)
                    .ok_or("regex_parser: the field to parse is missing or not text")?;
                let m = match cache.as_ref().and_then(|c| c.get(&text)) {
                    Some(m) => m,
                    None => {
                        let caps = re
                            .captures(&text)
                            .ok_or("regex_parser: the regex does not match")?;
                        let mut m = Vec::new();
                        for name in re.capture_names().flatten() {
                            if let Some(c) = caps.name(name) {
                                m.push((name.to_string(), Value::Str(c.as_str().to_string())));
                            }
                        }
                        if let Some(c) = cache {
                            c.put(&text, &m);
                        }
                        m
                    }
                };
                to.merge(e, m);
                after_parse(e, time, severity)
            }
            OpKind::Text {
                parser,
                from,
                to,
                time,
                severity,
            } => {
                let text = from.get(e).and_then(Value::as_str).ok_or_else(|| {
                    format!(
                        "{}: the field to parse is missing or not a string",
                        parser.name()
                    )
                })?;
                let m = parser.parse(e, text)?;
                to.merge(e, m);
                after_parse(e, time, severity)
            }
            OpKind::Trace(t) => t.apply(e),
            OpKind::ScopeName(f) => {
                let name = f
                    .get(e)
                    .and_then(Value::to_text)
                    .ok_or("scope_name_parser: the field is missing or not text")?;
                e.scope_name = name;
                Ok(())
            }
            OpKind::Flatten(f) => parsers::flatten(e, f),
            OpKind::Retain(fields) => {
                parsers::retain(e, fields);
                Ok(())
            }
            OpKind::Unquote(f) => {
                let v = f
                    .get(e)
                    .and_then(Value::as_str)
                    .ok_or("unquote: the field is missing or not a string")?;
                let u = parsers::unquote(v)?;
                f.set(e, Value::Str(u));
                Ok(())
            }
            OpKind::AssignKeys { field, keys } => {
                let v = field.remove(e).ok_or("assign_keys: the field is missing")?;
                match parsers::assign_keys(v, keys) {
                    Ok(m) => {
                        field.set(e, m);
                        Ok(())
                    }
                    Err((v, msg)) => {
                        field.set(e, v);
                        Err(msg)
                    }
                }
            }
            OpKind::RegexReplace { field, re, with } => parsers::regex_replace(e, field, re, with),
            OpKind::Router { .. } => Ok(()),
            OpKind::Severity(p) => p.apply(e),
            OpKind::Time(p) => p.apply(e),
            OpKind::Move { from, to } => {
                let v = from.remove(e).ok_or("move: the field is missing")?;
                to.set(e, v);
                Ok(())
            }
            OpKind::Copy { from, to } => {
                let v = from.get(e).cloned().ok_or("copy: the field is missing")?;
                to.set(e, v);
                Ok(())
            }
            OpKind::Remove(f) => f
                .remove(e)
                .map(|_| ())
                .ok_or("remove: the field is missing".into()),
            OpKind::Add { field, value } => {
                let v = value.get(e);
                field.set(e, v);
                Ok(())
            }
            OpKind::Noop => Ok(()),
        }
    }
}

/// Parsed keys go into `to`: into the body when it is `body` (replacing a string body), else
/// merged into the map at `to`.
fn merge_into(e: &mut Entry, to: &Field, m: Vec<(String, Value)>) {
    match to {
        Field::Body(p) if p.is_empty() => e.body = Value::Map(m),
        Field::Attributes(p) | Field::Resource(p) | Field::Body(p) if !p.is_empty() => {
            to.set(e, Value::Map(m))
        }
        Field::Attributes(_) | Field::Resource(_) | Field::Body(_) => {}
    }
}

fn after_parse(
    e: &mut Entry,
    time: &Option<TimeParser>,
    severity: &Option<SeverityParser>,
) -> Result<(), String> {
    if let Some(t) = time {
        t.apply(e)?;
    }
    if let Some(s) = severity {
        s.apply(e)?;
    }
    Ok(())
}

/// `parse_to: attributes` (the default) means the attribute map itself.
pub fn parse_to(s: Option<&str>) -> Result<Field, String> {
    match s.unwrap_or("attributes").trim() {
        "attributes" => Ok(Field::Attributes(Vec::new())),
        "resource" => Ok(Field::Resource(Vec::new())),
        other => Field::parse(other),
    }
}

// `Field::set` with an empty attribute path merges: handled here so parsers can target the
// attribute map as a whole.
impl Field {
    pub fn merge(&self, e: &mut Entry, m: Vec<(String, Value)>) {
        let target = match self {
            Field::Attributes(p) if p.is_empty() => &mut e.attributes,
            Field::Resource(p) if p.is_empty() => &mut e.resource,
            _ => {
                merge_into(e, self, m);
                return;
            }
        };
        for (k, v) in m {
            super::entry::map_set(target, &k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(layout_type: &str, layout: &str) -> TimeParser {
        TimeParser::new(&TimeConfig {
            parse_from: Some("body".into()),
            layout_type: Some(layout_type.into()),
            layout: Some(layout.into()),
            location: Some("UTC".into()),
        })
        .unwrap()
    }

    #[test]
    fn time_layouts() {
        let want = 1_700_000_000_123_000_000u64; // 2023-11-14T22:13:20.123Z
        let s = |x: &str| Value::Str(x.into());
        assert_eq!(
            tp("strptime", "%Y-%m-%dT%H:%M:%S.%LZ")
                .parse_value(&s("2023-11-14T22:13:20.123Z"))
                .unwrap(),
            want
        );
        assert_eq!(
            tp("gotime", "2006-01-02T15:04:05.000Z07:00")
                .parse_value(&s("2023-11-14T23:13:20.123+01:00"))
                .unwrap(),
            want
        );
        assert_eq!(
            tp("strptime", "%d/%b/%Y:%H:%M:%S %z")
                .parse_value(&s("14/Nov/2023:22:13:20 +0000"))
                .unwrap(),
            want - 123_000_000
        );
        assert_eq!(
            tp("epoch", "ms")
                .parse_value(&Value::Int(1_700_000_000_123))
                .unwrap(),
            want
        );
        assert_eq!(
            tp("epoch", "s.ms").parse_value(&s("1700000000.5")).unwrap(),
            1_700_000_000_500_000_000
        );
        assert!(tp("strptime", "%Y").parse_value(&s("nope")).is_err());
        // Without an offset, `location` applies.
        let ny = TimeParser::new(&TimeConfig {
            parse_from: None,
            layout_type: None,
            layout: Some("%Y-%m-%d %H:%M:%S".into()),
            location: Some("America/New_York".into()),
        })
        .unwrap();
        assert_eq!(
            ny.parse_value(&s("2023-11-14 17:13:20")).unwrap(),
            1_700_000_000_000_000_000
        );
    }

    #[test]
    fn severity_presets_mappings_and_ranges() {
        let mut m = BTreeMap::new();
        m.insert("error".to_string(), serde_json::json!(["oops", 500]));
        m.insert(
            "warn".to_string(),
            serde_json::json!({"min": 400, "max": 499}),
        );
        m.insert("info".to_string(), serde_json::json!("2xx"));
        let p = SeverityParser::new(&SeverityConfig {
            parse_from: Some("attributes.level".into()),
            mapping: Some(m),
            ..Default::default()
        })
        .unwrap();
        let sev = |v: Value| {
            let mut e = Entry::new(String::new(), 0);
            e.attributes.push(("level".into(), v));
            p.apply(&mut e).unwrap();
            (e.severity_number, e.severity_text)
        };
        assert_eq!(sev(Value::Str("WARNING".into())), (13, "WARNING".into()));
        assert_eq!(sev(Value::Str("oops".into())), (17, "oops".into()));
        assert_eq!(sev(Value::Int(500)), (17, "500".into()));
        assert_eq!(sev(Value::Int(404)), (13, "404".into()));
        assert_eq!(sev(Value::Str("204".into())), (9, "204".into()));
        assert_eq!(sev(Value::Str("weird".into())), (0, "weird".into()));
        assert!(
            SeverityParser::new(&SeverityConfig {
                mapping: Some([("loud".to_string(), serde_json::json!("x"))].into()),
                ..Default::default()
            })
            .is_err()
        );
    }
}
