//! The stateful stages of a file's entries: `container` (docker JSON, CRI-O and containerd
//! formats, partial lines reassembled, Kubernetes metadata from the path) and `recombine`
//! (multiline entries such as stack traces, after the container parser).
//!
//! Their state is per file, so it lives with the file's reader and is checkpointed with it: each
//! buffered piece remembers the raw line it came from and that line's offset. A checkpoint stores
//! the file offset after the last line read plus the raw lines still buffered; a restart feeds
//! those lines through the stages again, which rebuilds the same buffers. Nothing buffered is
//! lost by a kill, and nothing already emitted is emitted twice.

use std::time::{Duration, Instant};

use regex::Regex;

use super::entry::{Entry, Field, Map, Value, map_set};
use super::expr::Expr;

/// A raw line and the file offset it starts at.
pub type RawLine = (u64, String);

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    Docker,
    Crio,
    Containerd,
}

#[derive(Debug, Clone)]
pub struct ContainerConfig {
    /// Fixed format, or detect per line.
    pub format: Option<Format>,
    pub add_metadata_from_filepath: bool,
    /// Cap of a reassembled entry, bytes; 0 = none.
    pub max_log_size: usize,
}

#[derive(Debug, Clone)]
pub struct RecombineConfig {
    pub field: Field,
    pub is_first: Option<Expr>,
    pub is_last: Option<Expr>,
    pub combine_with: String,
    pub source: Field,
    pub max_batch_size: usize,
    pub max_log_size: usize,
    pub force_flush_period: Duration,
    /// Keep the fields of the oldest entry of a batch (else the newest).
    pub oldest: bool,
}

/// Kubernetes metadata from `/var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log`.
pub fn path_metadata(path: &str) -> Option<Map> {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        // A rotation suffix (`0.log.20240501-101500`) keeps the metadata of the live name.
        Regex::new(r"^.*/([^_/]+)_([^_/]+)_([a-f0-9\-]+)/([^._/]+)/(\d+)\.log(?:\.[^/]*)?$")
            .expect("valid")
    });
    let c = re.captures(path)?;
    let s = |i: usize| Value::Str(c[i].to_string());
    let restart: i64 = c[5].parse().ok()?;
    Some(vec![
        ("k8s.namespace.name".into(), s(1)),
        ("k8s.pod.name".into(), s(2)),
        ("k8s.pod.uid".into(), s(3)),
        ("k8s.container.name".into(), s(4)),
        (
            "k8s.container.restart_count".into(),
            Value::Str(restart.to_string()),
        ),
    ])
}

/// One container log line, parsed.
#[derive(Debug, PartialEq)]
struct Line<'a> {
    time: &'a str,
    stream: &'a str,
    /// The line ends the entry (CRI `F`; docker: the log ends with a newline).
    full: bool,
    log: std::borrow::Cow<'a, str>,
}

fn detect(line: &str) -> Option<Format> {
    if line.starts_with('{') {
        return Some(Format::Docker);
    }
    let time = line.split(' ').next()?;
    if time.len() < 20 || !time.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    Some(if time.ends_with('Z') {
        Format::Containerd
    } else {
        Format::Crio
    })
}

fn parse_line(format: Format, line: &str) -> Result<Line<'_>, String> {
    match format {
        Format::Docker => {
            #[derive(serde::Deserialize)]
            struct D<'a> {
                #[serde(borrow)]
                log: std::borrow::Cow<'a, str>,
                #[serde(borrow)]
                stream: std::borrow::Cow<'a, str>,
                #[serde(borrow)]
                time: std::borrow::Cow<'a, str>,
            }
            let d: D = serde_json::from_str(line).map_err(|e| format!("docker log line: {e}"))?;
            // The stream and time are short ASCII and never escaped in docker's output.
            let (stream, time) = match (d.stream, d.time) {
                (std::borrow::Cow::Borrowed(s), std::borrow::Cow::Borrowed(t)) => (s, t),
                _ => return Err("docker log line: escaped stream or time".into()),
            };
            let full = d.log.ends_with('\n');
            let log = match d.log {
                std::borrow::Cow::Borrowed(l) => {
                    std::borrow::Cow::Borrowed(l.strip_suffix('\n').unwrap_or(l))
                }
                std::borrow::Cow::Owned(mut l) => {
                    if l.ends_with('\n') {
                        l.pop();
                    }
                    std::borrow::Cow::Owned(l)
                }
            };
            Ok(Line {
                time,
                stream,
                full,
                log,
            })
        }
        Format::Crio | Format::Containerd => {
            let mut it = line.splitn(4, ' ');
            let (Some(time), Some(stream), Some(tag)) = (it.next(), it.next(), it.next()) else {
                return Err("CRI log line: expected `<time> <stream> <P|F> <log>`".into());
            };
            if stream != "stdout" && stream != "stderr" {
                return Err(format!("CRI log line: unknown stream `{stream}`"));
            }
            let full = match tag.split(':').next() {
                Some("F") => true,
                Some("P") => false,
                _ => return Err(format!("CRI log line: unknown tag `{tag}`")),
            };
            Ok(Line {
                time,
                stream,
                full,
                log: std::borrow::Cow::Borrowed(it.next().unwrap_or("")),
            })
        }
    }
}

fn parse_time(t: &str) -> Option<u64> {
    fast_rfc3339(t).or_else(|| {
        let ts: jiff::Timestamp = t.parse().ok()?;
        Some(ts.as_nanosecond().max(0) as u64)
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, the runtimes' format, without a general parser
/// (it runs once per line); anything else returns `None` and goes to jiff.
pub(crate) fn fast_rfc3339(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut n = 0i64;
        for &c in &b[r] {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + (c - b'0') as i64;
        }
        Some(n)
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start).min(9)..9 {
            nanos *= 10;
        }
    }
    let offset = match b.get(i)? {
        b'Z' if i + 1 == b.len() => 0,
        s @ (b'+' | b'-') if b.len() == i + 6 && b[i + 3] == b':' => {
            let o = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *s == b'+' { o } else { -o }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    u64::try_from(secs.checked_mul(1_000_000_000)?.checked_add(nanos)?).ok()
}

/// Pieces of one stream's partial entry.
#[derive(Debug, Default)]
struct Partial {
    text: String,
    time: u64,
    raw: Vec<RawLine>,
}

/// An entry on its way through the stages, with the raw lines it was made of (only tracked when
/// a later stage may buffer it).
pub struct Piece {
    pub entry: Entry,
    pub raw: Vec<RawLine>,
}

/// Per-file state of the stateful stages.
#[derive(Default)]
pub struct FileState {
    /// stdout, stderr.
    partial: [Partial; 2],
    partial_since: Option<Instant>,
    recombine: Vec<(Value, Batch)>,
    /// Resource from the path, computed once.
    resource: Option<Map>,
}

struct Batch {
    entries: Vec<Entry>,
    raw: Vec<RawLine>,
    bytes: usize,
    last: Instant,
}

pub struct Stages {
    pub container: Option<ContainerConfig>,
    pub recombine: Option<RecombineConfig>,
}

/// How long a partial container line waits for its end before it is emitted as it is.
const PARTIAL_FLUSH: Duration = Duration::from_secs(5);

impl Stages {
    fn track(&self) -> bool {
        self.recombine.is_some()
    }

    /// Feeds one raw line (already a whole entry for the file splitter) starting at `offset`.
    #[allow(clippy::too_many_arguments)]
    pub fn feed(
        &self,
        st: &mut FileState,
        base: &Entry,
        path: &str,
        offset: u64,
        line: String,
        now: Instant,
        out: &mut Vec<Entry>,
    ) {
        let Some(cc) = &self.container else {
            let mut e = base.clone();
            e.body = Value::Str(line);
            let raw = if self.track() {
                vec![(offset, e.body.as_str().unwrap_or_default().to_string())]
            } else {
                Vec::new()
            };
            self.recombine(st, Piece { entry: e, raw }, now, out);
            return;
        };
        let format = cc.format.or_else(|| detect(&line));
        let parsed = format.map(|f| parse_line(f, &line));
        let l = match parsed {
            Some(Ok(l)) => l,
            // Not in a container format (or not parseable as one): passed on raw.
            other => {
                if let Some(Err(msg)) = other {
                    tracing::debug!(error = %msg, path, "container: malformed line passed on raw");
                }
                let mut e = base.clone();
                e.body = Value::Str(line.clone());
                let raw = vec![(offset, line)];
                self.recombine(st, Piece { entry: e, raw }, now, out);
                return;
            }
        };
        if cc.add_metadata_from_filepath && st.resource.is_none() {
            st.resource = Some(path_metadata(path).unwrap_or_default());
        }
        let si = usize::from(l.stream == "stderr");
        let p = &mut st.partial[si];
        let had = !p.raw.is_empty();
        if !had {
            p.time = parse_time(l.time).unwrap_or(0);
        }
        if !l.full || had {
            p.text.push_str(&l.log);
        }
        let too_big = cc.max_log_size > 0 && p.text.len() >= cc.max_log_size;
        if !l.full && !too_big {
            p.raw.push((offset, line));
            st.partial_since.get_or_insert(now);
            return;
        }
        let (text, time, mut raw) = if had || !l.full {
            let p = std::mem::take(p);
            (p.text, p.time, p.raw)
        } else {
            (l.log.into_owned(), p.time, Vec::new())
        };
        if st.partial.iter().all(|p| p.raw.is_empty()) {
            st.partial_since = None;
        }
        let stream = if si == 1 { "stderr" } else { "stdout" };
        if self.track() {
            raw.push((offset, line));
        }
        let e = self.container_entry(base, text, time, stream);
        self.recombine(st, Piece { entry: e, raw }, now, out);
    }

    fn container_entry(&self, base: &Entry, text: String, time: u64, stream: &str) -> Entry {
        let mut e = base.clone();
        e.body = Value::Str(text);
        e.timestamp = time;
        map_set(&mut e.attributes, "log.iostream", Value::Str(stream.into()));
        e
    }

    /// The resource attributes of the file's entries from its path (Kubernetes metadata), kept
    /// once per file rather than copied into every entry.
    pub fn resource<'a>(&self, st: &'a FileState) -> Option<&'a Map> {
        st.resource.as_ref()
    }

    fn recombine(&self, st: &mut FileState, p: Piece, now: Instant, out: &mut Vec<Entry>) {
        let Some(rc) = &self.recombine else {
            out.push(p.entry);
            return;
        };
        let source = rc.source.get(&p.entry).cloned().unwrap_or(Value::Null);
        let idx = st.recombine.iter().position(|(s, _)| *s == source);
        let bytes = rc
            .field
            .get(&p.entry)
            .and_then(Value::as_str)
            .map_or(0, str::len);
        if let Some(first) = &rc.is_first
            && first.eval(&p.entry)
        {
            if let Some(i) = idx {
                let (_, b) = st.recombine.remove(i);
                out.push(self.combine(b));
            }
            st.recombine.push((source, Batch::new(p, bytes, now)));
            return;
        }
        let i = match idx {
            Some(i) => {
                let b = &mut st.recombine[i].1;
                b.entries.push(p.entry);
                b.raw.extend(p.raw);
                b.bytes += bytes;
                b.last = now;
                i
            }
            None => {
                st.recombine.push((source, Batch::new(p, bytes, now)));
                st.recombine.len() - 1
            }
        };
        let b = &st.recombine[i].1;
        let last_matches = rc
            .is_last
            .as_ref()
            .is_some_and(|l| b.entries.last().is_some_and(|e| l.eval(e)));
        let full = b.entries.len() >= rc.max_batch_size
            || (rc.max_log_size > 0 && b.bytes >= rc.max_log_size);
        if last_matches || full {
            let (_, b) = st.recombine.remove(i);
            out.push(self.combine(b));
        }
    }

    fn combine(&self, b: Batch) -> Entry {
        let rc = self.recombine.as_ref().expect("recombine configured");
        let mut joined = String::with_capacity(b.bytes + b.entries.len());
        for (i, e) in b.entries.iter().enumerate() {
            if i > 0 {
                joined.push_str(&rc.combine_with);
            }
            if let Some(t) = rc.field.get(e).and_then(Value::to_text) {
                joined.push_str(&t);
            }
        }
        let mut entries = b.entries;
        let mut e = if rc.oldest {
            entries.swap_remove(0)
        } else {
            entries.pop().expect("a batch has an entry")
        };
        rc.field.set(&mut e, Value::Str(joined));
        e
    }

    /// Emits what has waited too long for its continuation (the end of input, for now).
    pub fn flush_stale(
        &self,
        st: &mut FileState,
        base: &Entry,
        now: Instant,
        force: bool,
        out: &mut Vec<Entry>,
    ) {
        if st
            .partial_since
            .is_some_and(|t| force || now.duration_since(t) >= PARTIAL_FLUSH)
        {
            st.partial_since = None;
            for si in 0..2 {
                if st.partial[si].raw.is_empty() {
                    continue;
                }
                let p = std::mem::take(&mut st.partial[si]);
                let stream = if si == 1 { "stderr" } else { "stdout" };
                let e = self.container_entry(base, p.text, p.time, stream);
                self.recombine(
                    st,
                    Piece {
                        entry: e,
                        raw: p.raw,
                    },
                    now,
                    out,
                );
            }
        }
        if let Some(rc) = &self.recombine {
            let mut i = 0;
            while i < st.recombine.len() {
                if force || now.duration_since(st.recombine[i].1.last) >= rc.force_flush_period {
                    let (_, b) = st.recombine.remove(i);
                    out.push(self.combine(b));
                } else {
                    i += 1;
                }
            }
        }
    }

    /// The raw lines still buffered, in file order: what a checkpoint must keep.
    pub fn pending(&self, st: &FileState) -> Vec<RawLine> {
        let mut v: Vec<RawLine> = st
            .partial
            .iter()
            .flat_map(|p| p.raw.iter().cloned())
            .chain(st.recombine.iter().flat_map(|(_, b)| b.raw.iter().cloned()))
            .collect();
        v.sort_by_key(|(o, _)| *o);
        v
    }

    /// The offset of the earliest buffered line (for the in-memory re-read bound).
    pub fn has_pending(&self, st: &FileState) -> bool {
        st.partial.iter().any(|p| !p.raw.is_empty()) || !st.recombine.is_empty()
    }
}

impl Batch {
    fn new(p: Piece, bytes: usize, now: Instant) -> Batch {
        Batch {
            entries: vec![p.entry],
            raw: p.raw,
            bytes,
            last: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str =
        "/var/log/pods/shop_cart-7d9f_0b6c2f6e-1111-2222-3333-444455556666/server/2.log";

    fn stages(recombine: bool) -> Stages {
        Stages {
            container: Some(ContainerConfig {
                format: None,
                add_metadata_from_filepath: true,
                max_log_size: 0,
            }),
            recombine: recombine.then(|| RecombineConfig {
                field: Field::Body(vec![]),
                is_first: Some(Expr::parse(r#"body matches "^[^\\s]""#).unwrap()),
                is_last: None,
                combine_with: "\n".into(),
                source: Field::parse(r#"attributes["log.iostream"]"#).unwrap(),
                max_batch_size: 1000,
                max_log_size: 0,
                force_flush_period: Duration::from_secs(5),
                oldest: true,
            }),
        }
    }

    fn run(s: &Stages, st: &mut FileState, lines: &[&str]) -> Vec<Entry> {
        let mut out = Vec::new();
        let now = Instant::now();
        for (i, l) in lines.iter().enumerate() {
            s.feed(
                st,
                &Entry::default(),
                PATH,
                i as u64 * 100,
                l.to_string(),
                now,
                &mut out,
            );
        }
        out
    }

    fn attr<'a>(e: &'a Entry, k: &str) -> Option<&'a str> {
        super::super::entry::map_get(&e.attributes, k).and_then(Value::as_str)
    }

    #[test]
    fn the_three_formats_and_partials() {
        let s = stages(false);
        let mut st = FileState::default();
        let out = run(
            &s,
            &mut st,
            &[
                r#"{"log":"hello docker\n","stream":"stdout","time":"2024-05-01T10:00:00.000000001Z"}"#,
                "2024-05-01T10:00:01.5+02:00 stderr F crio line",
                "2024-05-01T10:00:02.000000000Z stdout P part one, ",
                "2024-05-01T10:00:02.100000000Z stderr F interleaved",
                "2024-05-01T10:00:02.200000000Z stdout F part two",
            ],
        );
        let bodies: Vec<_> = out.iter().map(|e| e.body.as_str().unwrap()).collect();
        assert_eq!(
            bodies,
            [
                "hello docker",
                "crio line",
                "interleaved",
                "part one, part two"
            ]
        );
        assert_eq!(attr(&out[0], "log.iostream"), Some("stdout"));
        assert_eq!(attr(&out[1], "log.iostream"), Some("stderr"));
        assert_eq!(out[0].timestamp, 1_714_557_600_000_000_001);
        assert_eq!(out[1].timestamp, 1_714_550_401_500_000_000);
        // A reassembled entry carries the first part's time.
        assert_eq!(out[3].timestamp, 1_714_557_602_000_000_000);
        let r = s.resource(&st).unwrap();
        assert_eq!(
            super::super::entry::map_get(r, "k8s.pod.name"),
            Some(&Value::Str("cart-7d9f".into()))
        );
        assert_eq!(
            super::super::entry::map_get(r, "k8s.container.restart_count"),
            Some(&Value::Str("2".into()))
        );
        assert_eq!(r.len(), 5);
    }

    #[test]
    fn pending_lines_rebuild_the_state_after_a_restart() {
        let s = stages(true);
        let lines = [
            "2024-05-01T10:00:00Z stderr F Exception in thread main",
            "2024-05-01T10:00:00Z stderr F   at a.b(C.java:1)",
            "2024-05-01T10:00:00Z stdout P half ",
            "2024-05-01T10:00:00Z stderr F   at d.e(F.java:2)",
        ];
        let mut st = FileState::default();
        assert!(run(&s, &mut st, &lines).is_empty());
        let pending = s.pending(&st);
        assert_eq!(pending.len(), 4);
        // "Restart": a fresh state fed the pending lines, then the rest of the file.
        let mut st2 = FileState::default();
        let mut out = Vec::new();
        let now = Instant::now();
        for (o, l) in pending {
            s.feed(&mut st2, &Entry::default(), PATH, o, l, now, &mut out);
        }
        assert!(out.is_empty());
        for l in [
            "2024-05-01T10:00:01Z stdout F done",
            "2024-05-01T10:00:01Z stderr F Next error",
        ] {
            s.feed(
                &mut st2,
                &Entry::default(),
                PATH,
                500,
                l.into(),
                now,
                &mut out,
            );
        }
        let bodies: Vec<_> = out.iter().map(|e| e.body.as_str().unwrap()).collect();
        assert_eq!(
            bodies,
            ["Exception in thread main\n  at a.b(C.java:1)\n  at d.e(F.java:2)"]
        );
        // The rest waits for its continuation until flushed.
        s.flush_stale(&mut st2, &Entry::default(), now, true, &mut out);
        let mut rest: Vec<_> = out[1..].iter().map(|e| e.body.as_str().unwrap()).collect();
        rest.sort();
        assert_eq!(rest, ["Next error", "half done"]);
    }

    #[test]
    fn the_fast_time_parser_agrees_with_jiff() {
        for t in [
            "2024-05-01T10:00:00.000000001Z",
            "2024-05-01T10:00:01.5+02:00",
            "1999-12-31T23:59:59Z",
            "2024-02-29T12:00:00.123456-07:30",
            "2038-01-19T03:14:08.999999999Z",
        ] {
            let want: jiff::Timestamp = t.parse().unwrap();
            assert_eq!(fast_rfc3339(t), Some(want.as_nanosecond() as u64), "{t}");
        }
        for t in [
            "2024-05-01 10:00:00Z",
            "2024-13-01T10:00:00Z",
            "2024-05-01T10:00:00",
            "2024-05-01T10:00:00.Z",
        ] {
            assert_eq!(fast_rfc3339(t), None, "{t}");
        }
    }

    #[test]
    fn malformed_lines_pass_through_raw() {
        let s = stages(false);
        let mut st = FileState::default();
        let out = run(&s, &mut st, &["not a container line", "{broken json"]);
        assert_eq!(out[0].body.as_str(), Some("not a container line"));
        assert_eq!(out[1].body.as_str(), Some("{broken json"));
    }
}
