//! A validating scanner for encoded OTLP export requests.
//!
//! It walks the protobuf wire format with the field tables of `wire_schema` (generated from the
//! opentelemetry-proto crate's prost code) and refuses exactly what prost's decoder refuses:
//! malformed keys and varints, wire types that do not match a known field, lengths past the
//! buffer, invalid UTF-8 in strings, packed fields that do not end on their length, nesting
//! deeper than prost's recursion limit. It allocates nothing. On the way it counts the items
//! (spans, metric data points, log records) and checks span and log ids, so a request that
//! passes can be forwarded as it came, without decoding and re-encoding it.

use super::Signal;
use super::wire_schema::{self as schema, MESSAGES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Varint,
    Fixed64,
    Fixed32,
    Str,
    Bytes,
    Msg(usize),
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub tag: u32,
    pub kind: Kind,
    pub repeated: bool,
}

/// What a scan found in a valid request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Spans, data points or log records, counted as prost's decoded message would hold them.
    pub items: usize,
    /// Every span has a 16-byte non-zero trace id, an 8-byte non-zero span id and an empty or
    /// 8-byte parent; every log record's ids are empty or of those lengths.
    pub ids_ok: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid protobuf at byte {offset}: {msg}")]
pub struct WireError {
    pub offset: usize,
    pub msg: &'static str,
}

/// prost's `RECURSION_LIMIT`.
const RECURSION_LIMIT: u32 = 100;

/// Scans an `Export{Trace,Metrics,Logs}ServiceRequest`.
pub fn scan(signal: Signal, buf: &[u8]) -> Result<Scan, WireError> {
    let root = match signal {
        Signal::Traces => schema::EXPORT_TRACE_SERVICE_REQUEST,
        Signal::Metrics => schema::EXPORT_METRICS_SERVICE_REQUEST,
        Signal::Logs => schema::EXPORT_LOGS_SERVICE_REQUEST,
    };
    let mut s = Scanner {
        buf,
        base: 0,
        items: 0,
        points: 0,
        ids_ok: true,
    };
    s.message(root, 0, buf.len(), RECURSION_LIMIT)?;
    Ok(Scan {
        items: s.items,
        ids_ok: s.ids_ok,
    })
}

struct Scanner<'a> {
    buf: &'a [u8],
    base: usize,
    items: usize,
    /// Data points seen inside the current metric's data message.
    points: usize,
    ids_ok: bool,
}

fn err(offset: usize, msg: &'static str) -> WireError {
    WireError { offset, msg }
}

impl Scanner<'_> {
    /// Decodes a varint at `pos` (prost's rules: at most 10 bytes, the 10th at most 1).
    fn varint(&self, pos: usize, end: usize) -> Result<(u64, usize), WireError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(pos + i).filter(|_| pos + i < end) else {
                return Err(err(self.base + pos, "truncated varint"));
            };
            if i == 9 && b > 1 {
                return Err(err(self.base + pos, "invalid varint"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok((value, pos + i + 1));
            }
        }
        Err(err(self.base + pos, "invalid varint"))
    }

    fn length(&self, pos: usize, end: usize) -> Result<(usize, usize), WireError> {
        let (len, p) = self.varint(pos, end)?;
        if len > (end - p) as u64 {
            return Err(err(self.base + pos, "length past the end of the buffer"));
        }
        Ok((p, p + len as usize))
    }

    fn key(&self, pos: usize, end: usize) -> Result<(u32, u8, usize), WireError> {
        let (key, p) = self.varint(pos, end)?;
        if key > u64::from(u32::MAX) {
            return Err(err(self.base + pos, "invalid key"));
        }
        let wire = (key & 7) as u8;
        if wire > 5 {
            return Err(err(self.base + pos, "invalid wire type"));
        }
        let tag = (key as u32) >> 3;
        if tag == 0 {
            return Err(err(self.base + pos, "invalid tag 0"));
        }
        Ok((tag, wire, p))
    }

    /// Skips an unknown field as prost's `skip_field` does, groups included.
    fn skip(
        &self,
        tag: u32,
        wire: u8,
        pos: usize,
        end: usize,
        budget: u32,
    ) -> Result<usize, WireError> {
        if budget == 0 {
            return Err(err(self.base + pos, "recursion limit reached"));
        }
        let len = match wire {
            0 => return self.varint(pos, end).map(|(_, p)| p),
            1 => 8,
            5 => 4,
            2 => return self.length(pos, end).map(|(_, e)| e),
            3 => {
                let mut p = pos;
                loop {
                    let (t, w, q) = self.key(p, end)?;
                    if w == 4 {
                        if t != tag {
                            return Err(err(self.base + p, "unexpected end group tag"));
                        }
                        return Ok(q);
                    }
                    p = self.skip(t, w, q, end, budget - 1)?;
                }
            }
            _ => return Err(err(self.base + pos, "unexpected end group tag")),
        };
        if end - pos < len {
            return Err(err(self.base + pos, "truncated fixed-width value"));
        }
        Ok(pos + len)
    }

    /// Validates one message of type `msg` in `buf[start..end]`.
    fn message(
        &mut self,
        msg: usize,
        start: usize,
        end: usize,
        budget: u32,
    ) -> Result<(), WireError> {
        let fields = MESSAGES[msg].1;
        // Per-message state for counting and id checks; singular fields: the last one wins.
        let (mut trace_id, mut span_id, mut parent) = (
            None::<(usize, usize)>,
            None::<(usize, usize)>,
            None::<usize>,
        );
        let mut data_tag = 0u32;
        let mut data_points = 0usize;
        let mut pos = start;
        while pos < end {
            let (tag, wire, p) = self.key(pos, end)?;
            let Some(f) = fields.iter().find(|f| f.tag == tag) else {
                pos = self.skip(tag, wire, p, end, budget)?;
                continue;
            };
            pos = match (f.kind, wire) {
                (Kind::Varint, 0) => self.varint(p, end)?.1,
                (Kind::Fixed64, 1) | (Kind::Fixed32, 5) => {
                    let w = if wire == 1 { 8 } else { 4 };
                    if end - p < w {
                        return Err(err(self.base + p, "truncated fixed-width value"));
                    }
                    p + w
                }
                (Kind::Varint | Kind::Fixed64 | Kind::Fixed32, 2) if f.repeated => {
                    let (s, e) = self.length(p, end)?;
                    let mut q = s;
                    while q < e {
                        q = match f.kind {
                            Kind::Varint => self.varint(q, e)?.1,
                            Kind::Fixed64 if e - q >= 8 => q + 8,
                            Kind::Fixed32 if e - q >= 4 => q + 4,
                            _ => {
                                return Err(err(
                                    self.base + q,
                                    "packed field does not end on its length",
                                ));
                            }
                        };
                    }
                    e
                }
                (Kind::Str, 2) => {
                    let (s, e) = self.length(p, end)?;
                    if std::str::from_utf8(&self.buf[s..e]).is_err() {
                        return Err(err(self.base + s, "string is not valid UTF-8"));
                    }
                    e
                }
                (Kind::Bytes, 2) => {
                    let (s, e) = self.length(p, end)?;
                    match (msg, tag) {
                        (schema::SPAN, 1) | (schema::LOG_RECORD, 9) => trace_id = Some((s, e)),
                        (schema::SPAN, 2) | (schema::LOG_RECORD, 10) => span_id = Some((s, e)),
                        (schema::SPAN, 4) => parent = Some(e - s),
                        _ => {}
                    }
                    e
                }
                (Kind::Msg(child), 2) => {
                    let (s, e) = self.length(p, end)?;
                    if budget == 0 {
                        return Err(err(self.base + p, "recursion limit reached"));
                    }
                    let outer_points = std::mem::take(&mut self.points);
                    self.message(child, s, e, budget - 1)?;
                    let inner_points = std::mem::replace(&mut self.points, outer_points);
                    match (msg, tag) {
                        (schema::SCOPE_SPANS, 2) | (schema::SCOPE_LOGS, 2) => self.items += 1,
                        (
                            schema::GAUGE
                            | schema::SUM
                            | schema::HISTOGRAM
                            | schema::EXPONENTIAL_HISTOGRAM
                            | schema::SUMMARY,
                            1,
                        ) => self.points += 1,
                        // `data` is a oneof: the same variant again merges, another replaces.
                        (schema::METRIC, 5 | 7 | 9 | 10 | 11) => {
                            if tag == data_tag {
                                data_points += inner_points;
                            } else {
                                data_tag = tag;
                                data_points = inner_points;
                            }
                        }
                        _ => {}
                    }
                    e
                }
                _ => return Err(err(self.base + pos, "wire type does not match the field")),
            };
        }
        if pos != end {
            return Err(err(self.base + pos, "message does not end on its length"));
        }
        match msg {
            schema::METRIC => self.items += data_points,
            schema::SPAN => {
                let nonzero = |r: Option<(usize, usize)>| {
                    r.is_some_and(|(s, e)| self.buf[s..e].iter().any(|b| *b != 0))
                };
                let len = |r: Option<(usize, usize)>| r.map_or(0, |(s, e)| e - s);
                let ok = len(trace_id) == 16
                    && len(span_id) == 8
                    && matches!(parent.unwrap_or(0), 0 | 8)
                    && nonzero(trace_id)
                    && nonzero(span_id);
                self.ids_ok &= ok;
            }
            schema::LOG_RECORD => {
                let len = |r: Option<(usize, usize)>| r.map_or(0, |(s, e)| e - s);
                self.ids_ok &= matches!(len(trace_id), 0 | 16) && matches!(len(span_id), 0 | 8);
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{Batch, testdata};
    use opentelemetry_proto::tonic::collector::{logs::v1 as l, metrics::v1 as m, trace::v1 as t};
    use prost::Message;

    /// prost as the oracle: does it decode these bytes as the request of `signal`?
    fn prost_ok(signal: Signal, b: &[u8]) -> bool {
        match signal {
            Signal::Traces => t::ExportTraceServiceRequest::decode(b).is_ok(),
            Signal::Metrics => m::ExportMetricsServiceRequest::decode(b).is_ok(),
            Signal::Logs => l::ExportLogsServiceRequest::decode(b).is_ok(),
        }
    }

    fn samples() -> Vec<(Signal, Vec<u8>, usize)> {
        let mut out = Vec::new();
        for b in [
            testdata::spans("a", 2, 3),
            testdata::gauge(5),
            testdata::logs(4),
        ] {
            out.push((b.signal(), b.encode_request(), b.item_count()));
        }
        let mut rich = testdata::spans("rich", 1, 2);
        if let Batch::Traces(rs) = &mut rich {
            let sp = &mut rs[0].scope_spans[0].spans[0];
            sp.attributes.push(testdata::kv("k", "välue"));
            sp.events.push(Default::default());
            sp.links
                .push(opentelemetry_proto::tonic::trace::v1::span::Link {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    ..Default::default()
                });
            sp.status = Some(Default::default());
        }
        out.push((Signal::Traces, rich.encode_request(), 2));
        out
    }

    #[test]
    fn counts_items_and_accepts_what_prost_accepts() {
        for (signal, bytes, items) in samples() {
            assert_eq!(
                scan(signal, &bytes).unwrap(),
                Scan {
                    items,
                    ids_ok: true
                }
            );
            assert!(prost_ok(signal, &bytes));
        }
        assert_eq!(
            scan(Signal::Traces, &[]).unwrap(),
            Scan {
                items: 0,
                ids_ok: true
            }
        );
    }

    #[test]
    fn agrees_with_prost_on_every_mutation() {
        // Truncations, byte flips and insertions of every sample: the scanner must refuse exactly
        // what prost refuses.
        let mut checked = 0;
        for (signal, bytes, _) in samples() {
            let mut cases: Vec<Vec<u8>> = (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
            for i in 0..bytes.len() {
                for v in [
                    0x00u8,
                    0x01,
                    0x02,
                    0x07,
                    0x08,
                    0x0a,
                    0x12,
                    0x7f,
                    0x80,
                    0xff,
                    bytes[i] ^ 0x20,
                    bytes[i].wrapping_add(1),
                ] {
                    let mut c = bytes.clone();
                    c[i] = v;
                    cases.push(c);
                    let mut c = bytes.clone();
                    c.insert(i, v);
                    cases.push(c);
                }
            }
            for c in cases {
                let ours = scan(signal, &c).is_ok();
                assert_eq!(
                    ours,
                    prost_ok(signal, &c),
                    "{signal} disagreement on {}",
                    hex::encode(&c)
                );
                checked += 1;
            }
        }
        assert!(checked > 10_000, "{checked}");
    }

    #[test]
    fn recursion_limit_matches_prost() {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, any_value};
        for depth in [30usize, 47, 48, 49, 50, 60] {
            let mut v = AnyValue {
                value: Some(any_value::Value::StringValue("x".into())),
            };
            for _ in 0..depth {
                v = AnyValue {
                    value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })),
                };
            }
            let mut b = testdata::logs(1);
            if let Batch::Logs(rl) = &mut b {
                rl[0].scope_logs[0].log_records[0].body = Some(v);
            }
            let bytes = b.encode_request();
            assert_eq!(
                scan(Signal::Logs, &bytes).is_ok(),
                prost_ok(Signal::Logs, &bytes),
                "depth {depth}"
            );
        }
    }

    #[test]
    fn metric_oneof_counts_as_prost_keeps_it() {
        let b = testdata::gauge(3);
        let mut bytes = b.encode_request();
        let one = b.encode_request();
        bytes.extend_from_slice(&one); // concatenation = two resources
        assert_eq!(scan(Signal::Metrics, &bytes).unwrap().items, 6);
        let decoded = m::ExportMetricsServiceRequest::decode(&bytes[..]).unwrap();
        assert_eq!(Batch::Metrics(decoded.resource_metrics).item_count(), 6);
    }

    #[test]
    fn invalid_ids_are_flagged() {
        let mut b = testdata::spans("a", 1, 2);
        if let Batch::Traces(rs) = &mut b {
            rs[0].scope_spans[0].spans[1].span_id = vec![1, 2, 3];
        }
        assert!(!scan(Signal::Traces, &b.encode_request()).unwrap().ids_ok);
        let mut b = testdata::spans("a", 1, 1);
        if let Batch::Traces(rs) = &mut b {
            rs[0].scope_spans[0].spans[0].trace_id = vec![0; 16];
        }
        assert!(!scan(Signal::Traces, &b.encode_request()).unwrap().ids_ok);
    }
}
