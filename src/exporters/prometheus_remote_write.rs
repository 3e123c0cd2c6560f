//! `prometheus_remote_write` exporter (alias `prometheusremotewrite`): metrics to any Prometheus
//! remote-write 1.0 receiver (`WriteRequest` protobuf, snappy block compressed), translated as
//! the OpenTelemetry "Prometheus and OpenMetrics compatibility" specification says:
//!
//! - names: invalid characters → `_`, with `add_metric_suffixes` the unit as a suffix
//!   (`ms` → `_milliseconds`, `By` → `_bytes`, `1` on gauges → `_ratio`, `X/Y` → `_X_per_Y`)
//!   and `_total` on monotonic sums; `namespace` as a prefix;
//! - labels: data point attributes (invalid characters → `_`, a leading digit → `key_`),
//!   `otel_scope_name`/`otel_scope_version`, `job` (`service.namespace/service.name`), `instance`
//!   (`service.instance.id`), `external_labels`, and with `resource_to_telemetry_conversion` every
//!   resource attribute; the other resource attributes go to one `target_info` series per resource;
//! - gauges and non-monotonic sums → gauges; monotonic sums → counters; histograms →
//!   `_bucket{le}` (cumulative, `+Inf` included), `_sum`, `_count`; summaries → `{quantile}`,
//!   `_sum`, `_count`; exponential histograms → Prometheus native histograms (the receiver needs
//!   native histograms enabled); a point flagged "no recorded value" → the staleness marker;
//! - delta sums and histograms are converted to cumulative per series (state expires after
//!   `delta_expiry` without updates), or dropped and counted with `delta_temporality: drop`;
//!   delta exponential histograms are dropped and counted;
//! - labels sorted, empty values dropped, the samples of a series merged into one `TimeSeries`
//!   in time order; requests split to stay under `max_batch_size_bytes`;
//! - `num_consumers` (default 5) parallel shards: a series always goes to the shard its label
//!   hash picks, and each shard sends its requests one at a time, in order, retrying its oldest
//!   first, so no series is ever reordered (as Prometheus' own remote-write queue does).
//!
//! Requests are encoded straight from the OTLP data (no intermediate `TimeSeries` structs):
//! each distinct label set is encoded once into an arena and found again by hash.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foldhash::fast::FixedState;
use hashbrown::HashTable;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint,
    ResourceMetrics, metric::Data, number_data_point,
};
use prost::Message;
use prost::encoding::encoded_len_varint;
use serde::Deserialize;

use super::helper::client::{self, ClientSettings};
use super::helper::{Helper, Part, QueueConfig, SendError, Sender, Validated};
use super::key_err;
use crate::component::{
    BoxFuture, BuildError, Context, Exporter, ExporterConfig, Factory, Parse, Stability,
};
use crate::config::{DeError, Node, units};
use crate::proto::prometheus as pb;
use crate::signal::Batch;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum DeltaMode {
    #[default]
    Convert,
    Drop,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Enabled {
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TargetInfo {
    /// Default true.
    pub enabled: bool,
}

impl Default for TargetInfo {
    fn default() -> Self {
        TargetInfo { enabled: true }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// e.g. `http://prometheus:9090/api/v1/write`.
    pub endpoint: String,
    /// Prefix of every metric name.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels added to every series.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Unit and `_total` suffixes. Default true.
    #[serde(default = "yes")]
    pub add_metric_suffixes: bool,
    /// Every resource attribute as a label on every series. Default off.
    #[serde(default)]
    pub resource_to_telemetry_conversion: Enabled,
    /// One `target_info` series per resource with its attributes. Default on.
    #[serde(default)]
    pub target_info: TargetInfo,
    /// `convert` (default) or `drop` delta sums and histograms.
    #[serde(default)]
    pub delta_temporality: DeltaMode,
    /// Conversion state of a series is forgotten after this long without updates. Default 5m.
    #[serde(default = "five_min", deserialize_with = "units::duration")]
    pub delta_expiry: Duration,
    /// Largest request before compression. Default 3000000.
    #[serde(default = "three_mb")]
    pub max_batch_size_bytes: usize,
    /// The Collector's older name for the queue settings.
    #[serde(default)]
    pub remote_write_queue: Option<QueueConfig>,
    /// `tls`, `headers`, `timeout`, `retry_on_failure`, `sending_queue`: flattened in by
    /// [`client::parse`].
    #[serde(skip)]
    pub client: ClientSettings,
}

impl client::HasClient for Config {
    fn client_mut(&mut self) -> &mut ClientSettings {
        &mut self.client
    }
}

fn yes() -> bool {
    true
}
fn five_min() -> Duration {
    Duration::from_secs(300)
}
fn three_mb() -> usize {
    3_000_000
}
/// `prometheus_remote_write`'s identity: its config name, other names, signals and stability.
pub const FACTORY: Factory = Factory::new(
    "prometheus_remote_write",
    &[crate::signal::Signal::Metrics],
    Stability::Alpha,
    Parse::Exporter(parse),
)
.aliases(&["prometheusremotewrite"]);

pub fn parse(node: &Node) -> Result<Box<dyn ExporterConfig>, DeError> {
    let mut cfg: Config = client::parse(node)?;
    super::check_http_url(&cfg.endpoint).map_err(|m| {
        key_err(
            node,
            &["endpoint"],
            format!("{m}, e.g. http://prometheus:9090/api/v1/write"),
        )
    })?;
    let queue_node = match (&cfg.remote_write_queue, node.get("remote_write_queue")) {
        (Some(q), n) => {
            cfg.client.sending_queue = q.clone();
            n
        }
        _ => node.get("sending_queue"),
    };
    // The Collector's default for this exporter is 5 concurrent senders, not the helper's 10.
    if queue_node.and_then(|q| q.get("num_consumers")).is_none() {
        cfg.client.sending_queue.num_consumers = 5;
    }
    if cfg.max_batch_size_bytes < 1024 {
        return Err(key_err(
            node,
            &["max_batch_size_bytes"],
            "must be at least 1024",
        ));
    }
    let settings = cfg.client.validate(node)?;
    Ok(Box::new(Validated { cfg, settings }))
}

impl ExporterConfig for Validated<Config> {
    fn build(self: Box<Self>, ctx: Context) -> Result<Arc<dyn Exporter>, BuildError> {
        let Validated { cfg, settings } = *self;
        let client = super::http_client(&cfg.client.tls, &cfg.client.headers)
            .map_err(|e| BuildError::new(&ctx.id, e))?;
        let dropped = ctx
            .telemetry
            .exporter_dropped_items
            .get_or_create(&crate::telemetry::DropLabels {
                exporter: ctx.id.to_string(),
                reason: "delta_dropped".into(),
            })
            .clone();
        Ok(Helper::build(
            &ctx,
            settings,
            PrwSender {
                client,
                translator: Translator::new(cfg),
                dropped,
            },
        ))
    }
}

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Prometheus label name: invalid characters → `_`, a leading digit → `key_`.
pub use crate::signal::value::label_name;

fn unit_word(u: &str) -> Option<&'static str> {
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

fn per_word(u: &str) -> Option<&'static str> {
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

fn sanitize_name(s: &str) -> String {
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
struct Label<'a> {
    name: Cow<'a, str>,
    value: Cow<'a, str>,
}

impl<'a> Label<'a> {
    fn new(name: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, str>>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    fn borrowed(&self) -> Label<'_> {
        Label::new(&*self.name, &*self.value)
    }
}

/// Label names of the attribute keys seen in earlier exports, so that a dotted key is not
/// rewritten for every point. Keys met for the first time are sanitized as they come and
/// remembered after the export (at most [`MAX_NAMES`] of them).
struct Names<'n> {
    known: &'n HashMap<String, String>,
    misses: Vec<String>,
}

const MAX_NAMES: usize = 4096;

impl<'n> Names<'n> {
    fn get<'a>(&mut self, key: &'a str) -> Cow<'a, str>
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

fn push_attrs<'a, 'n: 'a>(
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
fn normalize(labels: &mut Vec<Label<'_>>) {
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

/// Appends a protobuf varint (`prost`'s encoding, without its `BufMut` overhead).
#[inline]
fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends one `Label` as a length-delimited field 1 of `TimeSeries`, as prost would.
fn put_label(buf: &mut Vec<u8>, name: &str, value: &str) {
    let inner = 2
        + encoded_len_varint(name.len() as u64)
        + name.len()
        + encoded_len_varint(value.len() as u64)
        + value.len();
    buf.push(0x0a);
    put_varint(buf, inner as u64);
    buf.push(0x0a);
    put_varint(buf, name.len() as u64);
    buf.extend_from_slice(name.as_bytes());
    buf.push(0x12);
    put_varint(buf, value.len() as u64);
    buf.extend_from_slice(value.as_bytes());
}

fn label_bytes(name: &str, value: &str) -> Vec<u8> {
    let mut b = Vec::new();
    put_label(&mut b, name, value);
    b
}

/// A point's labels (sorted, without `__name__`) encoded once. Each series of the point is
/// then copied together from these bytes and its pre-encoded `__name__` label (and `le` or
/// `quantile` label), each at its sorted place.
#[derive(Default)]
struct EncodedPoint {
    bytes: Vec<u8>,
    /// Where `__name__` goes.
    name_at: usize,
    /// Where the extra label goes, and where the bytes resume after it: an attribute of the
    /// same name (`le` on a histogram) is replaced in the series that carry the extra label.
    extra_at: usize,
    extra_end: usize,
}

impl EncodedPoint {
    fn encode(&mut self, labels: &[Label<'_>], extra: &str) {
        self.bytes.clear();
        let (mut name_at, mut extra_at, mut extra_end) = (None, None, None);
        for l in labels {
            if l.name == "__name__" {
                continue;
            }
            let at = self.bytes.len();
            if name_at.is_none() && *l.name > *"__name__" {
                name_at = Some(at);
            }
            if extra_at.is_none() && *l.name >= *extra {
                extra_at = Some(at);
            }
            put_label(&mut self.bytes, &l.name, &l.value);
            if *l.name == *extra {
                extra_end = Some(self.bytes.len());
            }
        }
        let end = self.bytes.len();
        self.name_at = name_at.unwrap_or(end);
        self.extra_at = extra_at.unwrap_or(end).max(self.name_at);
        self.extra_end = extra_end.unwrap_or(self.extra_at);
    }

    /// Appends the labels of one series: the point's, `name` (an encoded `__name__` label) and
    /// `extra` (an encoded label named as given to `encode`).
    fn assemble(&self, out: &mut Vec<u8>, name: &[u8], extra: Option<&[u8]>) {
        let b = &self.bytes;
        out.extend_from_slice(&b[..self.name_at]);
        out.extend_from_slice(name);
        match extra {
            Some(e) => {
                out.extend_from_slice(&b[self.name_at..self.extra_at]);
                out.extend_from_slice(e);
                out.extend_from_slice(&b[self.extra_end..]);
            }
            None => out.extend_from_slice(&b[self.name_at..]),
        }
    }
}

fn sample_len(value: f64, ts: i64) -> usize {
    (if value != 0.0 { 9 } else { 0 })
        + if ts != 0 {
            1 + encoded_len_varint(ts as u64)
        } else {
            0
        }
}

/// One series of the request under construction; its encoded labels live in the arena.
struct SeriesRec {
    labels: std::ops::Range<usize>,
    hash: u64,
    samples: u32,
    last_ts: i64,
    sorted: bool,
    /// Data points attributed to this series (a point's first series), for accounting.
    points: u32,
}

struct SampleRec {
    series: u32,
    ts: i64,
    value: f64,
}

/// Builds the `TimeSeries` of one export straight into protobuf bytes: each distinct label set
/// is encoded once into an arena and found again by hash, so the samples of a series share one
/// `TimeSeries` wherever they came from in the batch.
struct Builder {
    hasher: FixedState,
    arena: Vec<u8>,
    series: Vec<SeriesRec>,
    index: HashTable<u32>,
    samples: Vec<SampleRec>,
    histograms: Vec<(u32, pb::Histogram)>,
}

impl Builder {
    fn new(hasher: FixedState) -> Self {
        Builder {
            hasher,
            arena: Vec::with_capacity(64 << 10),
            series: Vec::new(),
            index: HashTable::new(),
            samples: Vec::new(),
            histograms: Vec::new(),
        }
    }

    /// The index of the series with these labels (see [`EncodedPoint::assemble`]), created if
    /// new.
    fn series(&mut self, p: &EncodedPoint, name: &[u8], extra: Option<&[u8]>) -> u32 {
        let start = self.arena.len();
        p.assemble(&mut self.arena, name, extra);
        let hash = self.hasher.hash_one(&self.arena[start..]);
        let (arena, series) = (&self.arena, &self.series);
        if let Some(&i) = self.index.find(hash, |&i| {
            arena[series[i as usize].labels.clone()] == arena[start..]
        }) {
            self.arena.truncate(start);
            return i;
        }
        let i = self.series.len() as u32;
        self.series.push(SeriesRec {
            labels: start..self.arena.len(),
            hash,
            samples: 0,
            last_ts: i64::MIN,
            sorted: true,
            points: 0,
        });
        let series = &self.series;
        self.index
            .insert_unique(hash, i, |&j| series[j as usize].hash);
        i
    }

    fn labels_of(&self, series: u32) -> &[u8] {
        &self.arena[self.series[series as usize].labels.clone()]
    }

    fn sample(&mut self, series: u32, ts: i64, value: f64) {
        let s = &mut self.series[series as usize];
        s.sorted &= ts >= s.last_ts;
        s.last_ts = ts;
        s.samples += 1;
        self.samples.push(SampleRec { series, ts, value });
    }

    /// Counts one data point against a series (its first), so each shard knows its items.
    fn point(&mut self, series: u32) {
        self.series[series as usize].points += 1;
    }

    /// The write requests of each shard: a series goes to the shard of its label hash, so it
    /// is always sent by the same worker, in order; requests stay under `max` bytes.
    fn finish(mut self, shards: usize, max: usize) -> Vec<Shard> {
        // Group the samples by series (counting sort), each group in time order.
        let mut start = Vec::with_capacity(self.series.len() + 1);
        let mut acc = 0usize;
        for s in &self.series {
            start.push(acc);
            acc += s.samples as usize;
        }
        start.push(acc);
        let mut fill = start.clone();
        let mut order = vec![0u32; self.samples.len()];
        for (i, smp) in self.samples.iter().enumerate() {
            let slot = &mut fill[smp.series as usize];
            order[*slot] = i as u32;
            *slot += 1;
        }
        for (k, s) in self.series.iter().enumerate() {
            if !s.sorted {
                let samples = &self.samples;
                order[start[k]..start[k + 1]].sort_by_key(|&i| samples[i as usize].ts);
            }
        }
        self.histograms.sort_by_key(|(s, h)| (*s, h.timestamp));
        let mut hist = self.histograms.iter().peekable();

        let mut out: Vec<Shard> = (0..shards.max(1)).map(|_| Shard::default()).collect();
        for (k, s) in self.series.iter().enumerate() {
            let smp = &order[start[k]..start[k + 1]];
            let mut hists = Vec::new();
            while let Some((_, h)) = hist.next_if(|(i, _)| *i as usize == k) {
                hists.push(h);
            }
            let mut len = s.labels.len();
            for &i in smp {
                let x = &self.samples[i as usize];
                let n = sample_len(x.value, x.ts);
                len += 1 + encoded_len_varint(n as u64) + n;
            }
            for h in &hists {
                let n = h.encoded_len();
                len += 1 + encoded_len_varint(n as u64) + n;
            }
            let whole = 1 + encoded_len_varint(len as u64) + len;
            let n_shards = out.len() as u64;
            let shard = &mut out[(s.hash % n_shards) as usize];
            shard.points += s.points as usize;
            if shard.current.len() + whole > max && !shard.current.is_empty() {
                let full = std::mem::take(&mut shard.current);
                shard.bodies.push(full);
            }
            let buf = &mut shard.current;
            buf.reserve(whole);
            buf.push(0x0a);
            put_varint(buf, len as u64);
            buf.extend_from_slice(&self.arena[s.labels.clone()]);
            for &i in smp {
                let x = &self.samples[i as usize];
                buf.push(0x12);
                put_varint(buf, sample_len(x.value, x.ts) as u64);
                if x.value != 0.0 {
                    buf.push(0x09);
                    buf.extend_from_slice(&x.value.to_le_bytes());
                }
                if x.ts != 0 {
                    buf.push(0x10);
                    put_varint(buf, x.ts as u64);
                }
            }
            for h in hists {
                buf.push(0x22);
                put_varint(buf, h.encoded_len() as u64);
                h.encode_raw(buf);
            }
        }
        for shard in &mut out {
            if !shard.current.is_empty() {
                let last = std::mem::take(&mut shard.current);
                shard.bodies.push(last);
            }
        }
        out
    }
}

/// What one shard sends for one export: encoded `WriteRequest`s (uncompressed) and the number
/// of data points they carry.
#[derive(Default)]
pub struct Shard {
    pub bodies: Vec<Vec<u8>>,
    pub points: usize,
    current: Vec<u8>,
}

pub struct Output {
    pub shards: Vec<Shard>,
    pub dropped_delta_points: usize,
}

/// Cumulative state of a delta series.
enum Acc {
    Sum(f64),
    Hist {
        bounds: Vec<f64>,
        counts: Vec<u64>,
        count: u64,
        sum: f64,
    },
}

struct DeltaState {
    acc: Acc,
    seen: Instant,
}

type Deltas = HashMap<Box<[u8]>, DeltaState>;

fn delta_state<'d>(deltas: &'d mut Deltas, key: &[u8], now: Instant, init: Acc) -> &'d mut Acc {
    if !deltas.contains_key(key) {
        deltas.insert(
            key.into(),
            DeltaState {
                acc: init,
                seen: now,
            },
        );
    }
    let st = deltas.get_mut(key).expect("inserted above");
    st.seen = now;
    &mut st.acc
}

pub struct Translator {
    cfg: Config,
    /// Fixed seed: a series hashes alike in every export, so it always lands in the same shard.
    hasher: FixedState,
    /// Held for a whole translation: exports are translated one at a time.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    deltas: Deltas,
    /// Attribute key → label name, for keys that need rewriting.
    names: HashMap<String, String>,
}

/// Encoded `le` labels of the last bucket layout seen (histograms of a metric share one);
/// `None` for an infinite upper bound, which is the `+Inf` bucket.
#[derive(Default)]
struct LeCache {
    bounds: Vec<f64>,
    les: Vec<Option<Vec<u8>>>,
}

impl LeCache {
    fn get(&mut self, bounds: &[f64]) -> &[Option<Vec<u8>>] {
        if self.bounds != bounds {
            self.bounds = bounds.to_vec();
            self.les = bounds
                .iter()
                .map(|b| (*b != f64::INFINITY).then(|| label_bytes("le", &fmt_float(*b))))
                .collect();
        }
        &self.les
    }
}

impl Translator {
    pub fn new(cfg: Config) -> Self {
        Translator {
            cfg,
            hasher: FixedState::with_seed(0x5eed_f0e1_1e55_0001),
            state: Mutex::new(State::default()),
        }
    }

    /// Translates one export into `shards` lists of encoded write requests.
    pub fn translate(&self, resources: &[ResourceMetrics], shards: usize) -> Output {
        let mut b = Builder::new(self.hasher);
        let mut dropped = 0usize;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *state;
        let deltas = &mut state.deltas;
        let mut names = Names {
            known: &state.names,
            misses: Vec::new(),
        };
        let now = Instant::now();
        deltas.retain(|_, s| now.duration_since(s.seen) < self.cfg.delta_expiry);
        let (ns, sfx) = (self.cfg.namespace.as_deref(), self.cfg.add_metric_suffixes);
        let mut key = Vec::new();
        let mut le_cache = LeCache::default();
        let inf = label_bytes("le", "+Inf");
        let mut ep = EncodedPoint::default();
        for rm in resources {
            let res: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
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
            for (k, v) in &self.cfg.external_labels {
                base.push(Label::new(label_name(k), v.as_str()));
            }
            if self.cfg.resource_to_telemetry_conversion.enabled {
                push_attrs(&mut base, &mut names, res);
            }
            normalize(&mut base);
            let mut latest = 0i64;
            for sm in &rm.scope_metrics {
                let mut scoped = base.clone();
                if let Some(InstrumentationScope { name, version, .. }) = &sm.scope {
                    scoped.push(Label::new("otel_scope_name", name.as_str()));
                    scoped.push(Label::new("otel_scope_version", version.as_str()));
                }
                normalize(&mut scoped);
                // A point's labels: the scope's, borrowed, plus its attributes.
                let mut l: Vec<Label<'_>> = Vec::new();
                for m in &sm.metrics {
                    let Some(data) = &m.data else { continue };
                    match data {
                        Data::Gauge(g) => {
                            let name = metric_name(&m.name, &m.unit, false, true, sfx, ns);
                            let name = label_bytes("__name__", &name);
                            for p in &g.data_points {
                                let ts = millis(p.time_unix_nano);
                                latest = latest.max(ts);
                                point_labels(&mut l, &scoped, &mut names, &p.attributes);
                                ep.encode(&l, "");
                                let s = b.series(&ep, &name, None);
                                b.point(s);
                                b.sample(s, ts, number(p));
                            }
                        }
                        Data::Sum(sum) => {
                            let counter = sum.is_monotonic;
                            let name = metric_name(&m.name, &m.unit, counter, !counter, sfx, ns);
                            let name = label_bytes("__name__", &name);
                            let delta =
                                sum.aggregation_temporality == AggregationTemporality::Delta as i32;
                            for p in &sum.data_points {
                                if delta && self.cfg.delta_temporality == DeltaMode::Drop {
                                    dropped += 1;
                                    continue;
                                }
                                let ts = millis(p.time_unix_nano);
                                latest = latest.max(ts);
                                point_labels(&mut l, &scoped, &mut names, &p.attributes);
                                ep.encode(&l, "");
                                let s = b.series(&ep, &name, None);
                                let mut v = number(p);
                                if delta {
                                    let acc =
                                        delta_state(deltas, b.labels_of(s), now, Acc::Sum(0.0));
                                    if let Acc::Sum(acc) = acc {
                                        if !v.is_nan() {
                                            *acc += v;
                                        }
                                        v = *acc;
                                    }
                                }
                                b.point(s);
                                b.sample(s, ts, v);
                            }
                        }
                        Data::Histogram(h) => {
                            let name = metric_name(&m.name, &m.unit, false, false, sfx, ns);
                            let series_names = [
                                label_bytes("__name__", &format!("{name}_bucket")),
                                label_bytes("__name__", &format!("{name}_sum")),
                                label_bytes("__name__", &format!("{name}_count")),
                                label_bytes("__name__", &name),
                            ];
                            let delta =
                                h.aggregation_temporality == AggregationTemporality::Delta as i32;
                            for p in &h.data_points {
                                if delta && self.cfg.delta_temporality == DeltaMode::Drop {
                                    dropped += 1;
                                    continue;
                                }
                                let ts = millis(p.time_unix_nano);
                                latest = latest.max(ts);
                                point_labels(&mut l, &scoped, &mut names, &p.attributes);
                                ep.encode(&l, "le");
                                let acc_counts;
                                let (mut counts, mut count, mut sum) =
                                    (&p.bucket_counts[..], p.count, p.sum);
                                if delta {
                                    key.clear();
                                    ep.assemble(&mut key, &series_names[3], None);
                                    let (c, n, s) = accumulate_hist(deltas, &key, p, now);
                                    acc_counts = c;
                                    (counts, count, sum) = (&acc_counts, n, s);
                                }
                                let les = le_cache.get(&p.explicit_bounds);
                                let stale = p.flags & 1 == 1;
                                let val =
                                    |v: f64| if stale { f64::from_bits(STALE_NAN) } else { v };
                                let mut cumulative = 0u64;
                                let mut first = None;
                                for (c, le) in counts.iter().zip(les) {
                                    cumulative += c;
                                    let Some(le) = le else { break };
                                    let s = b.series(&ep, &series_names[0], Some(le));
                                    first.get_or_insert(s);
                                    b.sample(s, ts, val(cumulative as f64));
                                }
                                let s = b.series(&ep, &series_names[0], Some(&inf));
                                b.point(*first.get_or_insert(s));
                                b.sample(s, ts, val(count as f64));
                                if let Some(sum) = sum {
                                    let s = b.series(&ep, &series_names[1], None);
                                    b.sample(s, ts, val(sum));
                                }
                                let s = b.series(&ep, &series_names[2], None);
                                b.sample(s, ts, val(count as f64));
                            }
                        }
                        Data::Summary(sm) => {
                            let name = metric_name(&m.name, &m.unit, false, false, sfx, ns);
                            let (sum_name, count_name) = (
                                label_bytes("__name__", &format!("{name}_sum")),
                                label_bytes("__name__", &format!("{name}_count")),
                            );
                            let name = label_bytes("__name__", &name);
                            for p in &sm.data_points {
                                let ts = millis(p.time_unix_nano);
                                latest = latest.max(ts);
                                let stale = p.flags & 1 == 1;
                                let val =
                                    |v: f64| if stale { f64::from_bits(STALE_NAN) } else { v };
                                point_labels(&mut l, &scoped, &mut names, &p.attributes);
                                ep.encode(&l, "quantile");
                                let mut first = None;
                                for q in &p.quantile_values {
                                    let qs = label_bytes("quantile", &fmt_float(q.quantile));
                                    let s = b.series(&ep, &name, Some(&qs));
                                    first.get_or_insert(s);
                                    b.sample(s, ts, val(q.value));
                                }
                                let s = b.series(&ep, &sum_name, None);
                                first.get_or_insert(s);
                                b.sample(s, ts, val(p.sum));
                                let s = b.series(&ep, &count_name, None);
                                b.point(*first.get_or_insert(s));
                                b.sample(s, ts, val(p.count as f64));
                            }
                        }
                        Data::ExponentialHistogram(eh) => {
                            let name = metric_name(&m.name, &m.unit, false, false, sfx, ns);
                            let name = label_bytes("__name__", &name);
                            for p in &eh.data_points {
                                if eh.aggregation_temporality
                                    == AggregationTemporality::Delta as i32
                                {
                                    dropped += 1;
                                    continue;
                                }
                                let ts = millis(p.time_unix_nano);
                                latest = latest.max(ts);
                                point_labels(&mut l, &scoped, &mut names, &p.attributes);
                                ep.encode(&l, "");
                                let s = b.series(&ep, &name, None);
                                b.point(s);
                                b.histograms.push((s, native_histogram(p, ts)));
                            }
                        }
                    }
                }
            }
            if self.cfg.target_info.enabled && latest > 0 {
                let mut info = base.clone();
                let rest = res.iter().filter(|kv| {
                    !matches!(
                        kv.key.as_str(),
                        "service.name" | "service.namespace" | "service.instance.id"
                    )
                });
                let before = info.len();
                info.extend(rest.map(|kv| {
                    Label::new(
                        names.get(&kv.key),
                        crate::signal::value::option_text(&kv.value),
                    )
                }));
                if info.len() > before {
                    normalize(&mut info);
                    let name = match ns {
                        Some(ns) if !ns.is_empty() => format!("{}_target_info", sanitize_name(ns)),
                        _ => "target_info".to_owned(),
                    };
                    ep.encode(&info, "");
                    let s = b.series(&ep, &label_bytes("__name__", &name), None);
                    b.sample(s, latest, 1.0);
                }
            }
        }
        for key in names.misses {
            let name = label_name(&key).into_owned();
            state.names.insert(key, name);
        }
        Output {
            shards: b.finish(shards, self.cfg.max_batch_size_bytes),
            dropped_delta_points: dropped,
        }
    }
}

/// Fills `labels` with a point's labels: its scope's, borrowed, plus its attributes.
fn point_labels<'a, 'n: 'a>(
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

fn millis(nanos: u64) -> i64 {
    (nanos / 1_000_000) as i64
}

fn number(p: &NumberDataPoint) -> f64 {
    if p.flags & 1 == 1 {
        return f64::from_bits(STALE_NAN);
    }
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

/// Adds a delta histogram point to its series' running totals; returns the cumulative
/// `(bucket counts, count, sum)`. A new bucket layout starts the series over.
fn accumulate_hist(
    deltas: &mut Deltas,
    key: &[u8],
    p: &HistogramDataPoint,
    now: Instant,
) -> (Vec<u64>, u64, Option<f64>) {
    let fresh = || Acc::Hist {
        bounds: p.explicit_bounds.clone(),
        counts: vec![0; p.bucket_counts.len()],
        count: 0,
        sum: 0.0,
    };
    let acc = delta_state(deltas, key, now, fresh());
    if let Acc::Hist { bounds, counts, .. } = acc
        && (*bounds != p.explicit_bounds || counts.len() != p.bucket_counts.len())
    {
        *acc = fresh();
    }
    match acc {
        Acc::Hist {
            counts, count, sum, ..
        } => {
            for (a, c) in counts.iter_mut().zip(&p.bucket_counts) {
                *a += c;
            }
            *count += p.count;
            *sum += p.sum.unwrap_or(0.0);
            (counts.clone(), *count, Some(*sum))
        }
        Acc::Sum(_) => {
            // The same labels were a delta sum before: start this histogram over.
            *acc = fresh();
            (p.bucket_counts.clone(), p.count, p.sum)
        }
    }
}

/// Prometheus' float format for `le` and `quantile` (`0.5`, `1`, `+Inf`).
fn fmt_float(f: f64) -> String {
    if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        let s = format!("{f}");
        s
    }
}

/// An OTLP exponential histogram point as a Prometheus native histogram (integer counts). OTLP
/// bucket `i` covers `(base^i, base^(i+1)]`, Prometheus bucket `i` covers `(base^(i-1), base^i]`,
/// so indexes shift by one. Scales above Prometheus' maximum of 8 are merged down to 8.
pub fn native_histogram(p: &ExponentialHistogramDataPoint, ts: i64) -> pb::Histogram {
    let mut scale = p.scale;
    let mut pos = p.positive.clone().unwrap_or_default();
    let mut neg = p.negative.clone().unwrap_or_default();
    while scale > 8 {
        pos = downscale(pos);
        neg = downscale(neg);
        scale -= 1;
    }
    let (positive_spans, positive_deltas) = spans_and_deltas(&pos);
    let (negative_spans, negative_deltas) = spans_and_deltas(&neg);
    pb::Histogram {
        count: Some(pb::histogram::Count::CountInt(p.count)),
        sum: p.sum.unwrap_or(0.0),
        schema: scale.max(-4),
        zero_threshold: p.zero_threshold,
        zero_count: Some(pb::histogram::ZeroCount::ZeroCountInt(p.zero_count)),
        negative_spans,
        negative_deltas,
        positive_spans,
        positive_deltas,
        timestamp: ts,
        ..Default::default()
    }
}

type Buckets = opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;

fn downscale(b: Buckets) -> Buckets {
    if b.bucket_counts.is_empty() {
        return b;
    }
    let start = b.offset >> 1;
    let end = (b.offset + b.bucket_counts.len() as i32 - 1) >> 1;
    let mut counts = vec![0u64; (end - start + 1) as usize];
    for (i, c) in b.bucket_counts.iter().enumerate() {
        counts[(((b.offset + i as i32) >> 1) - start) as usize] += c;
    }
    Buckets {
        offset: start,
        bucket_counts: counts,
    }
}

fn spans_and_deltas(b: &Buckets) -> (Vec<pb::BucketSpan>, Vec<i64>) {
    let mut spans: Vec<pb::BucketSpan> = Vec::new();
    let mut deltas = Vec::new();
    let mut prev_count = 0i64;
    let mut next_index: Option<i32> = None;
    for (i, c) in b.bucket_counts.iter().enumerate() {
        if *c == 0 {
            continue;
        }
        let idx = b.offset + i as i32 + 1;
        match next_index {
            Some(n) if n == idx => spans.last_mut().expect("a span is open").length += 1,
            Some(n) => spans.push(pb::BucketSpan {
                offset: idx - n,
                length: 1,
            }),
            None => spans.push(pb::BucketSpan {
                offset: idx,
                length: 1,
            }),
        }
        next_index = Some(idx + 1);
        deltas.push(*c as i64 - prev_count);
        prev_count = *c as i64;
    }
    (spans, deltas)
}

pub struct PrwSender {
    client: reqwest::Client,
    translator: Translator,
    dropped: prometheus_client::metrics::counter::Counter,
}

pub struct Writes {
    bodies: Vec<Bytes>,
    done: AtomicUsize,
}

impl PrwSender {
    fn translate(&self, batch: Batch, shards: usize) -> Result<Output, SendError> {
        let Batch::Metrics(resources) = batch
            .into_decoded()
            .map_err(|e| SendError::Permanent(format!("undecodable batch: {e}")))?
        else {
            return Err(SendError::Permanent(
                "the prometheus_remote_write exporter takes metrics only".into(),
            ));
        };
        let out = self.translator.translate(&resources, shards);
        if out.dropped_delta_points > 0 {
            self.dropped.inc_by(out.dropped_delta_points as u64);
            tracing::debug!(
                points = out.dropped_delta_points,
                "delta points dropped (not representable)"
            );
        }
        Ok(out)
    }
}

fn compress(bodies: Vec<Vec<u8>>) -> Result<Writes, SendError> {
    let mut enc = snap::raw::Encoder::new();
    let bodies = bodies
        .iter()
        .map(|b| enc.compress_vec(b).map(Bytes::from))
        .collect::<Result<_, _>>()
        .map_err(|e| SendError::Permanent(format!("snappy: {e}")))?;
    Ok(Writes {
        bodies,
        done: AtomicUsize::new(0),
    })
}

impl Sender for PrwSender {
    type Request = Writes;

    fn ordered(&self) -> bool {
        true
    }

    fn encode(&self, batch: Batch) -> Result<Writes, SendError> {
        let mut out = self.translate(batch, 1)?;
        compress(out.shards.pop().map(|s| s.bodies).unwrap_or_default())
    }

    fn encode_parts(&self, batch: Batch, shards: usize) -> Result<Vec<Part<Writes>>, SendError> {
        let out = self.translate(batch, shards)?;
        let mut parts = Vec::new();
        for (shard, s) in out.shards.into_iter().enumerate() {
            if !s.bodies.is_empty() {
                parts.push(Part {
                    shard,
                    items: s.points,
                    req: compress(s.bodies)?,
                });
            }
        }
        Ok(parts)
    }

    fn send<'a>(&'a self, req: &'a Writes) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let url = &self.translator.cfg.endpoint;
            while let Some(body) = req.bodies.get(req.done.load(Ordering::Acquire)) {
                let resp = self
                    .client
                    .post(url)
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                    .header(http::header::CONTENT_ENCODING, "snappy")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| SendError::retryable(format!("POST {url}: {e}")))?;
                let status = resp.status();
                if !status.is_success() {
                    let headers = resp.headers().clone();
                    let text = resp.bytes().await.unwrap_or_default();
                    let detail = String::from_utf8_lossy(&text[..text.len().min(256)]).into_owned();
                    return Err(super::classify_http(
                        status,
                        &headers,
                        format!("POST {url}: HTTP {status}: {detail}"),
                    ));
                }
                req.done.fetch_add(1, Ordering::AcqRel);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse as yaml;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};

    #[test]
    fn names_as_the_compatibility_spec_says() {
        assert_eq!(
            metric_name("http.server.duration", "ms", false, false, true, None),
            "http_server_duration_milliseconds"
        );
        assert_eq!(
            metric_name("requests", "1", true, false, true, None),
            "requests_total"
        );
        assert_eq!(
            metric_name("requests", "{request}", true, false, true, None),
            "requests_total"
        );
        assert_eq!(
            metric_name("cpu.utilization", "1", false, true, true, None),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            metric_name("net.io", "By/s", false, true, true, Some("app")),
            "app_net_io_bytes_per_second"
        );
        assert_eq!(
            metric_name("process.runtime.bytes", "By", false, true, true, None),
            "process_runtime_bytes"
        );
        assert_eq!(
            metric_name("errors_total", "1", true, false, true, None),
            "errors_total"
        );
        assert_eq!(
            metric_name("http.server.duration", "ms", false, false, false, None),
            "http_server_duration"
        );
        assert_eq!(label_name("http.method"), "http_method");
        assert_eq!(label_name("0day"), "key_0day");
    }

    #[test]
    fn config_validation() {
        let ok = parse(
            &yaml("endpoint: http://p:9090/api/v1/write\nadd_metric_suffixes: false\n").unwrap(),
        );
        assert!(ok.is_ok());
        assert!(
            parse(
                &yaml("endpoint: http://p:9090/api/v1/write\nsending_queue:\n  num_consumers: 4\n")
                    .unwrap()
            )
            .is_ok()
        );
        let e = parse(
            &yaml("endpoint: http://p:9090/api/v1/write\nmax_batch_size_bytes: 10\n").unwrap(),
        )
        .err()
        .unwrap();
        assert_eq!(
            (e.path_string().as_str(), e.pos.unwrap().line),
            ("max_batch_size_bytes", 2)
        );
        assert!(
            parse(&yaml("endpoint: http://p:1/x\nsending_queue:\n  batch:\n").unwrap()).is_ok()
        );
    }

    use opentelemetry_proto::tonic::metrics::v1::{Gauge, Histogram, Metric, ScopeMetrics, Sum};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn cfg(extra: &str) -> Config {
        client::parse(&yaml(&format!("endpoint: http://p:1/x\n{extra}")).unwrap()).unwrap()
    }

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    fn metrics(ms: Vec<Metric>, res: Vec<KeyValue>) -> Vec<ResourceMetrics> {
        vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: res,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: ms,
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    fn gauge(name: &str, points: Vec<(Vec<KeyValue>, u64, f64)>) -> Metric {
        Metric {
            name: name.into(),
            data: Some(Data::Gauge(Gauge {
                data_points: points
                    .into_iter()
                    .map(|(attributes, ts, v)| NumberDataPoint {
                        attributes,
                        time_unix_nano: ts * 1_000_000,
                        value: Some(number_data_point::Value::AsDouble(v)),
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        }
    }

    /// Decodes every request of every shard with prost, checking on the way that our encoding
    /// is byte for byte what prost itself would write.
    fn decode(out: &Output) -> Vec<pb::TimeSeries> {
        let mut series = Vec::new();
        for shard in &out.shards {
            for body in &shard.bodies {
                let req = pb::WriteRequest::decode(&body[..]).unwrap();
                assert_eq!(req.encode_to_vec(), *body, "not prost's encoding");
                series.extend(req.timeseries);
            }
        }
        series
    }

    fn labels(ts: &pb::TimeSeries) -> Vec<(&str, &str)> {
        ts.labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect()
    }

    #[test]
    fn requests_split_by_size_and_keep_every_series() {
        let mut c = cfg("max_batch_size_bytes: 1024\n");
        c.target_info.enabled = false;
        let points = (0..100)
            .map(|i| {
                (
                    vec![kv("i", any_value::Value::IntValue(i))],
                    1 + i as u64,
                    1.0,
                )
            })
            .collect();
        let out = Translator::new(c).translate(&metrics(vec![gauge("g", points)], vec![]), 1);
        let bodies = &out.shards[0].bodies;
        assert!(bodies.len() > 1);
        assert!(bodies.iter().all(|b| b.len() <= 1024));
        assert_eq!(decode(&out).len(), 100);
        assert_eq!(out.shards[0].points, 100);
    }

    #[test]
    fn labels_sorted_merged_and_samples_of_a_series_in_time_order() {
        let attrs = || {
            vec![
                kv("http.method", s("GET")),
                kv("http_method", s("POST")),
                kv("0day", any_value::Value::BoolValue(true)),
                kv("empty", s("")),
                kv("__name__", s("spoofed")),
            ]
        };
        let res = vec![
            kv("service.name", s("svc")),
            kv("service.namespace", s("shop")),
            kv("service.instance.id", s("i-1")),
            kv("host.name", s("h")),
        ];
        // The same series three times, out of order; another series in between.
        let g = gauge(
            "temp",
            vec![
                (attrs(), 30, 3.0),
                (vec![kv("other", s("x"))], 10, 9.0),
                (attrs(), 10, 1.0),
                (attrs(), 20, 2.0),
            ],
        );
        let t = Translator::new(cfg(""));
        let input = metrics(vec![g], res);
        let out = t.translate(&input, 1);
        let series = decode(&out);
        // The second time the rewritten label names come from the cache: the same output.
        assert_eq!(decode(&t.translate(&input, 1)), series);
        assert_eq!(series.len(), 3, "{series:?}");
        let temp = &series[0];
        assert_eq!(
            labels(temp),
            vec![
                ("__name__", "temp"),
                ("http_method", "GET;POST"),
                ("instance", "i-1"),
                ("job", "shop/svc"),
                ("key_0day", "true"),
            ]
        );
        let samples: Vec<(i64, f64)> = temp
            .samples
            .iter()
            .map(|x| (x.timestamp, x.value))
            .collect();
        assert_eq!(samples, vec![(10, 1.0), (20, 2.0), (30, 3.0)]);
        assert_eq!(out.shards[0].points, 4);
        let info = &series[2];
        assert_eq!(
            labels(info),
            vec![
                ("__name__", "target_info"),
                ("host_name", "h"),
                ("instance", "i-1"),
                ("job", "shop/svc")
            ]
        );
        assert_eq!(info.samples[0].timestamp, 30);
    }

    #[test]
    fn histogram_series_and_an_le_attribute_replaced() {
        let h = Metric {
            name: "lat".into(),
            unit: "s".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: vec![kv("le", s("bogus")), kv("a", s("1"))],
                    time_unix_nano: 5_000_000,
                    count: 6,
                    sum: Some(2.5),
                    bucket_counts: vec![1, 2, 3],
                    explicit_bounds: vec![0.5, 1.0],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        };
        let out = Translator::new(cfg("")).translate(&metrics(vec![h], vec![]), 1);
        let got: Vec<(String, f64)> = decode(&out)
            .iter()
            .map(|t| {
                let l: Vec<String> = t
                    .labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect();
                (l.join(","), t.samples[0].value)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("__name__=lat_seconds_bucket,a=1,le=0.5".into(), 1.0),
                ("__name__=lat_seconds_bucket,a=1,le=1".into(), 3.0),
                ("__name__=lat_seconds_bucket,a=1,le=+Inf".into(), 6.0),
                // Only the bucket series own `le`; elsewhere the attribute stays, as in the Collector.
                ("__name__=lat_seconds_sum,a=1,le=bogus".into(), 2.5),
                ("__name__=lat_seconds_count,a=1,le=bogus".into(), 6.0),
            ]
        );
        assert_eq!(out.shards[0].points, 1);
    }

    #[test]
    fn shards_partition_series_the_same_way_every_time() {
        let mut c = cfg("");
        c.target_info.enabled = false;
        let t = Translator::new(c);
        let batch = |ts: u64| {
            let points = (0..200)
                .map(|i| (vec![kv("i", any_value::Value::IntValue(i))], ts, i as f64))
                .collect();
            metrics(vec![gauge("g", points)], vec![])
        };
        let shard_of = |out: &Output| {
            let mut m = BTreeMap::new();
            for (k, shard) in out.shards.iter().enumerate() {
                for body in &shard.bodies {
                    for ts in pb::WriteRequest::decode(&body[..]).unwrap().timeseries {
                        m.insert(ts.labels[1].value.clone(), k);
                    }
                }
            }
            m
        };
        let (a, b) = (t.translate(&batch(1), 4), t.translate(&batch(2), 4));
        let (sa, sb) = (shard_of(&a), shard_of(&b));
        assert_eq!(sa.len(), 200);
        assert_eq!(sa, sb, "a series moved between shards");
        assert!(a.shards.iter().all(|s| s.points > 20), "uneven shards");
        assert_eq!(a.shards.iter().map(|s| s.points).sum::<usize>(), 200);
    }

    #[test]
    fn delta_sums_accumulate_per_series() {
        let t = Translator::new(cfg(""));
        let delta = |v: i64, ts: u64| {
            metrics(
                vec![Metric {
                    name: "hits".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: ts,
                            value: Some(number_data_point::Value::AsInt(v)),
                            ..Default::default()
                        }],
                        aggregation_temporality: AggregationTemporality::Delta as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                vec![],
            )
        };
        let v1 = decode(&t.translate(&delta(3, 1_000_000), 1))[0].samples[0].value;
        let v2 = decode(&t.translate(&delta(4, 2_000_000), 1))[0].samples[0].value;
        assert_eq!((v1, v2), (3.0, 7.0));
        let out =
            Translator::new(cfg("delta_temporality: drop\n")).translate(&delta(3, 1_000_000), 1);
        assert_eq!((decode(&out).len(), out.dropped_delta_points), (0, 1));
    }

    #[test]
    fn native_histogram_indexes_and_downscale() {
        let p = ExponentialHistogramDataPoint {
            scale: 1,
            count: 6,
            positive: Some(Buckets {
                offset: -1,
                bucket_counts: vec![1, 0, 2, 3],
            }),
            ..Default::default()
        };
        let h = native_histogram(&p, 5);
        // OTLP indexes -1, 1, 2 → Prometheus 0, 2, 3: a span at 0 of length 1, a gap of 1, then 2.
        assert_eq!(
            h.positive_spans,
            vec![
                pb::BucketSpan {
                    offset: 0,
                    length: 1
                },
                pb::BucketSpan {
                    offset: 1,
                    length: 2
                }
            ]
        );
        assert_eq!(h.positive_deltas, vec![1, 1, 1]);
        assert_eq!(h.schema, 1);
        let d = downscale(Buckets {
            offset: 3,
            bucket_counts: vec![1, 2, 3],
        });
        assert_eq!((d.offset, d.bucket_counts), (1, vec![1, 5]));
    }
}
