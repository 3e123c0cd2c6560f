//! `WriteRequest` protobuf written by hand: varints, labels, samples, and the builder that encodes
//! each distinct label set once into an arena.

use super::*;

pub(super) use crate::prom::STALE_NAN;

/// Appends a protobuf varint (`prost`'s encoding, without its `BufMut` overhead).
#[inline]
pub(super) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends one `Label` as a length-delimited field 1 of `TimeSeries`, as prost would.
pub(super) fn put_label(buf: &mut Vec<u8>, name: &str, value: &str) {
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

pub(super) fn label_bytes(name: &str, value: &str) -> Vec<u8> {
    let mut b = Vec::new();
    put_label(&mut b, name, value);
    b
}

/// A point's labels (sorted, without `__name__`) encoded once. Each series of the point is
/// then copied together from these bytes and its pre-encoded `__name__` label (and `le` or
/// `quantile` label), each at its sorted place.
#[derive(Default)]
pub(super) struct EncodedPoint {
    pub(super) bytes: Vec<u8>,
    /// Where `__name__` goes.
    pub(super) name_at: usize,
    /// Where the extra label goes, and where the bytes resume after it: an attribute of the
    /// same name (`le` on a histogram) is replaced in the series that carry the extra label.
    pub(super) extra_at: usize,
    pub(super) extra_end: usize,
}

impl EncodedPoint {
    pub(super) fn encode(&mut self, labels: &[Label<'_>], extra: &str) {
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
    pub(super) fn assemble(&self, out: &mut Vec<u8>, name: &[u8], extra: Option<&[u8]>) {
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

pub(super) fn sample_len(value: f64, ts: i64) -> usize {
    (if value != 0.0 { 9 } else { 0 })
        + if ts != 0 {
            1 + encoded_len_varint(ts as u64)
        } else {
            0
        }
}

/// One series of the request under construction; its encoded labels live in the arena.
pub(super) struct SeriesRec {
    pub(super) labels: std::ops::Range<usize>,
    pub(super) hash: u64,
    pub(super) samples: u32,
    pub(super) last_ts: i64,
    pub(super) sorted: bool,
    /// Data points attributed to this series (a point's first series), for accounting.
    pub(super) points: u32,
}

pub(super) struct SampleRec {
    pub(super) series: u32,
    pub(super) ts: i64,
    pub(super) value: f64,
}

/// Builds the `TimeSeries` of one export straight into protobuf bytes: each distinct label set
/// is encoded once into an arena and found again by hash, so the samples of a series share one
/// `TimeSeries` wherever they came from in the batch.
pub(super) struct Builder {
    pub(super) hasher: FixedState,
    pub(super) arena: Vec<u8>,
    pub(super) series: Vec<SeriesRec>,
    pub(super) index: HashTable<u32>,
    pub(super) samples: Vec<SampleRec>,
    pub(super) histograms: Vec<(u32, pb::Histogram)>,
}

impl Builder {
    pub(super) fn new(hasher: FixedState) -> Self {
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
    pub(super) fn series(&mut self, p: &EncodedPoint, name: &[u8], extra: Option<&[u8]>) -> u32 {
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

    pub(super) fn labels_of(&self, series: u32) -> &[u8] {
        &self.arena[self.series[series as usize].labels.clone()]
    }

    pub(super) fn sample(&mut self, series: u32, ts: i64, value: f64) {
        let s = &mut self.series[series as usize];
        s.sorted &= ts >= s.last_ts;
        s.last_ts = ts;
        s.samples += 1;
        self.samples.push(SampleRec { series, ts, value });
    }

    /// Counts one data point against a series (its first), so each shard knows its items.
    pub(super) fn point(&mut self, series: u32) {
        self.series[series as usize].points += 1;
    }

    /// The write requests of each shard: a series goes to the shard of its label hash, so it
    /// is always sent by the same worker, in order; requests stay under `max` bytes.
    pub(super) fn finish(mut self, shards: usize, max: usize) -> Vec<Shard> {
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
