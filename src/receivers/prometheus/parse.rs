//! The Prometheus text exposition format (0.0.4) and OpenMetrics 1.0 text, parsed into
//! families and samples. A malformed line fails the whole scrape, as in Prometheus.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: Type,
    pub help: String,
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Index into `Scrape::families`.
    pub family: usize,
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    /// An OpenMetrics exemplar (` # {trace_id="..."} 0.3 1690000000.1`).
    pub exemplar: Option<Box<Exemplar>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

#[derive(Debug, Default, PartialEq)]
pub struct Scrape {
    pub families: Vec<Family>,
    pub samples: Vec<Sample>,
    /// Native histograms (only the protobuf format carries them).
    pub natives: Vec<Native>,
}

/// A native histogram in OTLP's exponential-histogram terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Native {
    /// Index into `Scrape::families`.
    pub family: usize,
    /// The family's name, or what `metric_relabel_configs` made of it.
    pub name: String,
    pub labels: Vec<(String, String)>,
    /// Milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    pub count: u64,
    pub sum: f64,
    /// OTLP's scale: Prometheus's schema, lower when downscaled.
    pub scale: i32,
    pub zero_threshold: f64,
    pub zero_count: u64,
    /// The populated buckets as (OTLP index, count), by increasing index.
    pub positive: Vec<(i64, u64)>,
    pub negative: Vec<(i64, u64)>,
    pub created_secs: Option<f64>,
    pub exemplars: Vec<Exemplar>,
    /// A gauge histogram (not cumulative).
    pub gauge: bool,
}

impl Native {
    fn width(b: &[(i64, u64)]) -> i64 {
        match (b.first(), b.last()) {
            (Some(f), Some(l)) => l.0 - f.0 + 1,
            _ => 0,
        }
    }

    /// How many buckets the wider of the two dense arrays would hold.
    pub fn dense_len(&self) -> i64 {
        Self::width(&self.positive).max(Self::width(&self.negative))
    }

    /// Whether every index fits OTLP's 32-bit offset.
    pub fn offsets_fit(&self) -> bool {
        self.positive
            .iter()
            .chain(&self.negative)
            .all(|(i, _)| i32::try_from(*i).is_ok())
    }

    /// Halves the resolution (OTLP's downscale: index `i` → `i >> 1`); false at the lowest
    /// scale OTLP has.
    pub fn downscale(&mut self) -> bool {
        if self.scale <= -10 {
            return false;
        }
        self.scale -= 1;
        for b in [&mut self.positive, &mut self.negative] {
            let mut merged: Vec<(i64, u64)> = Vec::with_capacity(b.len());
            for (i, c) in b.drain(..) {
                let j = i >> 1;
                match merged.last_mut() {
                    Some((k, n)) if *k == j => *n = n.saturating_add(c),
                    _ => merged.push((j, c)),
                }
            }
            *b = merged;
        }
        true
    }

    /// One side's buckets as OTLP has them: the first index and the dense counts.
    pub fn dense(&self, b: &[(i64, u64)]) -> (i32, Vec<u64>) {
        let Some(first) = b.first() else {
            return (0, Vec::new());
        };
        let mut counts = vec![0u64; Self::width(b) as usize];
        for (i, c) in b {
            counts[(i - first.0) as usize] = *c;
        }
        (i32::try_from(first.0).unwrap_or(0), counts)
    }
}

fn type_of(s: &str) -> Option<Type> {
    Some(match s {
        "counter" => Type::Counter,
        "gauge" => Type::Gauge,
        "histogram" => Type::Histogram,
        "gaugehistogram" => Type::GaugeHistogram,
        "summary" => Type::Summary,
        "info" => Type::Info,
        "stateset" => Type::StateSet,
        "untyped" | "unknown" => Type::Unknown,
        _ => return None,
    })
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

/// A sample value or a `le`/`quantile` label: a float, `+Inf`, `-Inf` or `NaN`.
pub(super) fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

const SUFFIXES: &[&str] = &[
    "_total", "_created", "_bucket", "_count", "_sum", "_info", "_gcount", "_gsum",
];

/// Parses a scrape body. `openmetrics` selects OpenMetrics rules (timestamps in seconds,
/// `# EOF` required).
pub fn parse(body: &str, openmetrics: bool) -> Result<Scrape, String> {
    let mut out = Scrape::default();
    let mut by_name: std::collections::HashMap<String, usize> = Default::default();
    let mut saw_eof = false;
    for (n, raw) in body.lines().enumerate() {
        let lineno = n + 1;
        let err = |m: &str| format!("line {lineno}: {m}: {:?}", truncate(raw));
        let line = raw.trim_end_matches('\r');
        if saw_eof {
            if line.trim().is_empty() {
                continue;
            }
            return Err(err("data after # EOF"));
        }
        if line.trim().is_empty() {
            if openmetrics {
                return Err(err("empty line"));
            }
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let c = c.trim_start();
            if c == "EOF" {
                saw_eof = true;
                continue;
            }
            let mut it = c.splitn(3, ' ');
            let (Some(kw), Some(name)) = (it.next(), it.next()) else {
                continue;
            };
            let rest = it.next().unwrap_or("").trim();
            if !matches!(kw, "HELP" | "TYPE" | "UNIT") {
                continue;
            }
            if !is_name(name) {
                return Err(err("bad metric name"));
            }
            let idx = *by_name.entry(name.to_string()).or_insert_with(|| {
                out.families.push(Family {
                    name: name.to_string(),
                    kind: Type::Unknown,
                    help: String::new(),
                    unit: String::new(),
                });
                out.families.len() - 1
            });
            let f = &mut out.families[idx];
            match kw {
                "HELP" => f.help = unescape_help(rest),
                "TYPE" => f.kind = type_of(rest).ok_or_else(|| err("unknown TYPE"))?,
                _ => f.unit = rest.to_string(),
            }
            continue;
        }
        let s = sample(line, openmetrics).map_err(|m| err(&m))?;
        let family = family_of(&s.0, &out.families, &by_name).unwrap_or_else(|| {
            out.families.push(Family {
                name: s.0.clone(),
                kind: Type::Unknown,
                help: String::new(),
                unit: String::new(),
            });
            by_name.insert(s.0.clone(), out.families.len() - 1);
            out.families.len() - 1
        });
        out.samples.push(Sample {
            family,
            name: s.0,
            labels: s.1,
            value: s.2,
            timestamp_ms: s.3,
            exemplar: s.4,
        });
    }
    if openmetrics && !saw_eof {
        return Err("OpenMetrics exposition without `# EOF`".into());
    }
    Ok(out)
}

fn truncate(s: &str) -> String {
    s.chars().take(120).collect()
}

fn unescape_help(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\\\", "\\")
}

fn family_of(
    name: &str,
    fams: &[Family],
    by_name: &std::collections::HashMap<String, usize>,
) -> Option<usize> {
    if let Some(i) = by_name.get(name) {
        return Some(*i);
    }
    for suf in SUFFIXES {
        if let Some(base) = name.strip_suffix(suf)
            && let Some(i) = by_name.get(base)
            && fams[*i].kind != Type::Unknown
        {
            return Some(*i);
        }
    }
    None
}

type Parsed = (
    String,
    Vec<(String, String)>,
    f64,
    Option<i64>,
    Option<Box<Exemplar>>,
);

fn sample(line: &str, openmetrics: bool) -> Result<Parsed, String> {
    let name_end = line.find(['{', ' ', '\t']).ok_or("no value")?;
    let name = &line[..name_end];
    if !is_name(name) {
        return Err("bad metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let (l, used) = label_set(r)?;
        labels = l;
        rest = &r[used..];
    }
    // OpenMetrics exemplars follow ` # `.
    let (rest, exemplar) = match rest.find(" # ") {
        Some(i) if openmetrics => (&rest[..i], Some(Box::new(exemplar(&rest[i + 3..])?))),
        _ => (rest, None),
    };
    let mut it = rest.split_whitespace();
    let v = it.next().ok_or("no value")?;
    let value = parse_value(v).ok_or_else(|| format!("bad value `{v}`"))?;
    let ts = match it.next() {
        None => None,
        Some(t) if openmetrics => {
            let secs: f64 = t.parse().map_err(|_| format!("bad timestamp `{t}`"))?;
            Some((secs * 1000.0) as i64)
        }
        Some(t) => Some(t.parse().map_err(|_| format!("bad timestamp `{t}`"))?),
    };
    if it.next().is_some() {
        return Err("unexpected text after the timestamp".into());
    }
    Ok((name.to_string(), labels, value, ts, exemplar))
}

/// `{labels} value [timestamp]`, the timestamp in seconds.
fn exemplar(s: &str) -> Result<Exemplar, String> {
    let r = s
        .trim_start()
        .strip_prefix('{')
        .ok_or("an exemplar starts with its label set")?;
    let (labels, used) = label_set(r).map_err(|e| format!("exemplar: {e}"))?;
    let mut it = r[used..].split_whitespace();
    let v = it.next().ok_or("exemplar without a value")?;
    let value = parse_value(v).ok_or_else(|| format!("bad exemplar value `{v}`"))?;
    let timestamp_ms = match it.next() {
        None => None,
        Some(t) => {
            let secs: f64 = t
                .parse()
                .map_err(|_| format!("bad exemplar timestamp `{t}`"))?;
            Some((secs * 1000.0) as i64)
        }
    };
    if it.next().is_some() {
        return Err("unexpected text after the exemplar".into());
    }
    Ok(Exemplar {
        labels,
        value,
        timestamp_ms,
    })
}

/// A label set after its `{`: the labels and how many bytes of `r` they took (through `}`).
fn label_set(r: &str) -> Result<(Vec<(String, String)>, usize), String> {
    let mut labels = Vec::new();
    let b = r.as_bytes();
    let mut i = 0;
    loop {
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        if b.get(i) == Some(&b'}') {
            i += 1;
            break;
        }
        let eq = r[i..].find('=').ok_or("label without `=`")? + i;
        let lname = r[i..eq].trim();
        if !is_name(lname) || lname.contains(':') {
            return Err(format!("bad label name `{lname}`"));
        }
        i = eq + 1;
        if b.get(i) != Some(&b'"') {
            return Err("label value must be quoted".into());
        }
        i += 1;
        let mut v = String::new();
        loop {
            match b.get(i) {
                None => return Err("unterminated label value".into()),
                Some(b'\\') => {
                    match b.get(i + 1) {
                        Some(b'n') => v.push('\n'),
                        Some(b'"') => v.push('"'),
                        Some(b'\\') => v.push('\\'),
                        _ => return Err("bad escape in label value".into()),
                    }
                    i += 2;
                }
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(_) => {
                    let ch = r[i..].chars().next().expect("in bounds");
                    v.push(ch);
                    i += ch.len_utf8();
                }
            }
        }
        if labels.iter().any(|(n, _): &(String, String)| n == lname) {
            return Err(format!("duplicate label `{lname}`"));
        }
        labels.push((lname.to_string(), v));
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {
                i += 1;
                break;
            }
            _ => return Err("expected `,` or `}` after a label".into()),
        }
    }
    Ok((labels, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format() {
        let s = parse(
            r#"# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
# TYPE h histogram
h_bucket{le="0.05"} 24054
h_bucket{le="+Inf"} 144320
h_sum 53423
h_count 144320
metric_without_timestamp_and_labels 12.47
"#,
            false,
        )
        .unwrap();
        assert_eq!(s.samples.len(), 11);
        assert_eq!(s.families[0].kind, Type::Counter);
        assert_eq!(s.samples[0].timestamp_ms, Some(1395066363000));
        assert_eq!(s.samples[2].labels[0].1, r"C:\DIR\FILE.TXT");
        assert_eq!(s.samples[2].labels[1].1, "Cannot find file:\n\"FILE.TXT\"");
        let rpc = &s.families[s.samples[4].family];
        assert_eq!(
            (rpc.name.as_str(), rpc.kind),
            ("rpc_duration_seconds", Type::Summary)
        );
        assert_eq!(s.families[s.samples[8].family].kind, Type::Histogram);
        assert_eq!(s.samples[7].labels[0].1, "+Inf");
        assert_eq!(s.families[s.samples[10].family].kind, Type::Unknown);
    }

    #[test]
    fn openmetrics() {
        let s = parse(
            "# TYPE foo counter\n# UNIT foo seconds\nfoo_total{a=\"b\"} 17.0 1520879607.789 # {id=\"x\"} 1.0\nfoo_created{a=\"b\"} 1520872607.123\n# EOF\n",
            true,
        )
        .unwrap();
        assert_eq!(s.families[0].unit, "seconds");
        assert_eq!(s.samples[0].timestamp_ms, Some(1520879607789));
        assert_eq!(s.samples[1].family, 0);
        assert!(parse("# TYPE foo counter\nfoo_total 1\n", true).is_err());
    }

    #[test]
    fn garbage_is_an_error_with_the_line() {
        for bad in [
            "<html><body>not metrics</body></html>",
            "foo{a=b} 1",
            "foo 1 2 3",
            "foo notanumber",
            "foo{a=\"x\",a=\"y\"} 1",
        ] {
            let e = parse(bad, false).unwrap_err();
            assert!(e.starts_with("line 1:"), "{bad}: {e}");
        }
    }
}
