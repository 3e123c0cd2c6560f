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

/// The exact protobuf type of a field, for the OTLP/JSON transcoder (the scanner needs only
/// [`Kind`]). An enumeration carries its prost path (`span::SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Double,
    Float,
    Int64,
    UInt64,
    Int32,
    UInt32,
    SInt32,
    SInt64,
    Fixed64,
    SFixed64,
    Fixed32,
    SFixed32,
    Bool,
    String,
    Bytes,
    Enum(&'static str),
    Message,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub tag: u32,
    pub kind: Kind,
    pub repeated: bool,
    /// The proto field name (`trace_id`), also accepted in OTLP/JSON.
    pub name: &'static str,
    /// The lowerCamelCase JSON name (`traceId`).
    pub json: &'static str,
    pub ty: Ty,
    /// A oneof member or a proto3 `optional`: a zero value is still a value.
    pub presence: bool,
    /// Written as hex in OTLP/JSON (trace and span ids), not base64.
    pub hex: bool,
}

/// What a scan found in a valid request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Spans, data points or log records, counted as prost's decoded message would hold them.
    pub items: usize,
    /// Every span has a 16-byte non-zero trace id, an 8-byte non-zero span id and an empty or
    /// 8-byte parent; every log record's ids are empty or of those lengths.
    pub ids_ok: bool,
    /// Heap bytes prost's decoded request would take: every `Vec` at the capacity its pushes
    /// grow it to, every string and byte field. The allocator's rounding and the copy while a
    /// `Vec` grows come on top (at most about half again). What admission charges before
    /// anything is decoded: a 2-byte empty span on the wire is a 240-byte `Span` in memory.
    pub decoded_bytes: usize,
}

/// The largest number of fields an OTLP message has (Span: 16); per-message field counters
/// live on the stack.
const MAX_FIELDS: usize = 16;

/// The size of the prost struct of each message of the schema.
pub(crate) fn struct_size(msg: usize) -> usize {
    use opentelemetry_proto::tonic::{
        collector::{
            logs::v1 as cl, metrics::v1 as cm, profiles::v1development as cp, trace::v1 as ct,
        },
        common::v1 as c,
        logs::v1 as l,
        metrics::v1 as m,
        profiles::v1development as p,
        resource::v1 as r,
        trace::v1 as t,
    };
    use std::mem::size_of;
    match msg {
        schema::EXPORT_PROFILES_PARTIAL_SUCCESS => size_of::<cp::ExportProfilesPartialSuccess>(),
        schema::EXPORT_PROFILES_SERVICE_REQUEST => size_of::<cp::ExportProfilesServiceRequest>(),
        schema::EXPORT_PROFILES_SERVICE_RESPONSE => size_of::<cp::ExportProfilesServiceResponse>(),
        schema::FUNCTION => size_of::<p::Function>(),
        schema::KEY_VALUE_AND_UNIT => size_of::<p::KeyValueAndUnit>(),
        schema::LINE => size_of::<p::Line>(),
        schema::LOCATION => size_of::<p::Location>(),
        schema::MAPPING => size_of::<p::Mapping>(),
        schema::PROFILE => size_of::<p::Profile>(),
        schema::PROFILES_DATA => size_of::<p::ProfilesData>(),
        schema::PROFILES_DICTIONARY => size_of::<p::ProfilesDictionary>(),
        schema::PROFILES_LINK => size_of::<p::Link>(),
        schema::RESOURCE_PROFILES => size_of::<p::ResourceProfiles>(),
        schema::SAMPLE => size_of::<p::Sample>(),
        schema::SCOPE_PROFILES => size_of::<p::ScopeProfiles>(),
        schema::STACK => size_of::<p::Stack>(),
        schema::VALUE_TYPE => size_of::<p::ValueType>(),
        schema::ANY_VALUE => size_of::<c::AnyValue>(),
        schema::ARRAY_VALUE => size_of::<c::ArrayValue>(),
        schema::BUCKETS => size_of::<m::exponential_histogram_data_point::Buckets>(),
        schema::ENTITY_REF => size_of::<c::EntityRef>(),
        schema::EVENT => size_of::<t::span::Event>(),
        schema::EXEMPLAR => size_of::<m::Exemplar>(),
        schema::EXPONENTIAL_HISTOGRAM => size_of::<m::ExponentialHistogram>(),
        schema::EXPONENTIAL_HISTOGRAM_DATA_POINT => size_of::<m::ExponentialHistogramDataPoint>(),
        schema::EXPORT_LOGS_PARTIAL_SUCCESS => size_of::<cl::ExportLogsPartialSuccess>(),
        schema::EXPORT_LOGS_SERVICE_REQUEST => size_of::<cl::ExportLogsServiceRequest>(),
        schema::EXPORT_LOGS_SERVICE_RESPONSE => size_of::<cl::ExportLogsServiceResponse>(),
        schema::EXPORT_METRICS_PARTIAL_SUCCESS => size_of::<cm::ExportMetricsPartialSuccess>(),
        schema::EXPORT_METRICS_SERVICE_REQUEST => size_of::<cm::ExportMetricsServiceRequest>(),
        schema::EXPORT_METRICS_SERVICE_RESPONSE => size_of::<cm::ExportMetricsServiceResponse>(),
        schema::EXPORT_TRACE_PARTIAL_SUCCESS => size_of::<ct::ExportTracePartialSuccess>(),
        schema::EXPORT_TRACE_SERVICE_REQUEST => size_of::<ct::ExportTraceServiceRequest>(),
        schema::EXPORT_TRACE_SERVICE_RESPONSE => size_of::<ct::ExportTraceServiceResponse>(),
        schema::GAUGE => size_of::<m::Gauge>(),
        schema::HISTOGRAM => size_of::<m::Histogram>(),
        schema::HISTOGRAM_DATA_POINT => size_of::<m::HistogramDataPoint>(),
        schema::INSTRUMENTATION_SCOPE => size_of::<c::InstrumentationScope>(),
        schema::KEY_VALUE => size_of::<c::KeyValue>(),
        schema::KEY_VALUE_LIST => size_of::<c::KeyValueList>(),
        schema::LINK => size_of::<t::span::Link>(),
        schema::LOG_RECORD => size_of::<l::LogRecord>(),
        schema::LOGS_DATA => size_of::<l::LogsData>(),
        schema::METRIC => size_of::<m::Metric>(),
        schema::METRICS_DATA => size_of::<m::MetricsData>(),
        schema::NUMBER_DATA_POINT => size_of::<m::NumberDataPoint>(),
        schema::RESOURCE => size_of::<r::Resource>(),
        schema::RESOURCE_LOGS => size_of::<l::ResourceLogs>(),
        schema::RESOURCE_METRICS => size_of::<m::ResourceMetrics>(),
        schema::RESOURCE_SPANS => size_of::<t::ResourceSpans>(),
        schema::SCOPE_LOGS => size_of::<l::ScopeLogs>(),
        schema::SCOPE_METRICS => size_of::<m::ScopeMetrics>(),
        schema::SCOPE_SPANS => size_of::<t::ScopeSpans>(),
        schema::SPAN => size_of::<t::Span>(),
        schema::STATUS => size_of::<t::Status>(),
        schema::SUM => size_of::<m::Sum>(),
        schema::SUMMARY => size_of::<m::Summary>(),
        schema::SUMMARY_DATA_POINT => size_of::<m::SummaryDataPoint>(),
        schema::TRACES_DATA => size_of::<t::TracesData>(),
        schema::VALUE_AT_QUANTILE => size_of::<m::summary_data_point::ValueAtQuantile>(),
        // Every message has an arm (a test checks); an unknown one is charged as a large one.
        _ => 512,
    }
}

/// The capacity a `Vec` reaches after `n` pushes from empty (Rust's `RawVec` starts at 4 for
/// elements up to 1 KiB and doubles).
fn vec_capacity(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        n.next_power_of_two().max(4)
    }
}

/// What one element of a repeated field takes in its `Vec`.
fn element_size(kind: Kind) -> usize {
    match kind {
        Kind::Msg(child) => struct_size(child),
        Kind::Str | Kind::Bytes => std::mem::size_of::<Vec<u8>>(),
        Kind::Fixed32 => 4,
        // Varints decode to u64, i64 or a 4-byte enum: charged as 8.
        Kind::Varint | Kind::Fixed64 => 8,
    }
}

/// What a non-empty string or bytes field allocates: its length, at least the 8 bytes that a
/// `Vec<u8>`'s first allocation takes.
pub(crate) fn string_cost(len: usize) -> usize {
    if len == 0 { 0 } else { len.max(8) }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid protobuf at byte {offset}: {msg}")]
pub struct WireError {
    pub offset: usize,
    pub msg: &'static str,
}

/// prost's `RECURSION_LIMIT`.
const RECURSION_LIMIT: u32 = 100;

/// Scans an `Export{Trace,Metrics,Logs,Profiles}ServiceRequest`.
pub fn scan(signal: Signal, buf: &[u8]) -> Result<Scan, WireError> {
    let root = match signal {
        Signal::Traces => schema::EXPORT_TRACE_SERVICE_REQUEST,
        Signal::Metrics => schema::EXPORT_METRICS_SERVICE_REQUEST,
        Signal::Logs => schema::EXPORT_LOGS_SERVICE_REQUEST,
        Signal::Profiles => schema::EXPORT_PROFILES_SERVICE_REQUEST,
    };
    let mut s = Scanner {
        buf,
        base: 0,
        items: 0,
        points: 0,
        ids_ok: true,
        decoded: 0,
    };
    s.message(root, 0, buf.len(), RECURSION_LIMIT)?;
    Ok(Scan {
        items: s.items,
        ids_ok: s.ids_ok,
        decoded_bytes: s.decoded,
    })
}

struct Scanner<'a> {
    buf: &'a [u8],
    base: usize,
    items: usize,
    /// Data points seen inside the current metric's data message.
    points: usize,
    ids_ok: bool,
    /// See [`Scan::decoded_bytes`].
    decoded: usize,
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
        // Elements pushed into each repeated field of this message, by field position.
        let mut pushed = [0usize; MAX_FIELDS];
        let mut pos = start;
        while pos < end {
            let (tag, wire, p) = self.key(pos, end)?;
            let Some(fi) = fields.iter().position(|f| f.tag == tag) else {
                pos = self.skip(tag, wire, p, end, budget)?;
                continue;
            };
            let f = &fields[fi];
            if f.repeated && wire != 2 {
                pushed[fi] += 1;
            }
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
                        pushed[fi] += 1;
                    }
                    e
                }
                (Kind::Str, 2) => {
                    let (s, e) = self.length(p, end)?;
                    if std::str::from_utf8(&self.buf[s..e]).is_err() {
                        return Err(err(self.base + s, "string is not valid UTF-8"));
                    }
                    if f.repeated {
                        pushed[fi] += 1;
                    }
                    self.decoded += string_cost(e - s);
                    e
                }
                (Kind::Bytes, 2) => {
                    let (s, e) = self.length(p, end)?;
                    if f.repeated {
                        pushed[fi] += 1;
                    }
                    self.decoded += string_cost(e - s);
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
                    if f.repeated {
                        pushed[fi] += 1;
                    }
                    let outer_points = std::mem::take(&mut self.points);
                    self.message(child, s, e, budget - 1)?;
                    let inner_points = std::mem::replace(&mut self.points, outer_points);
                    match (msg, tag) {
                        (schema::SCOPE_SPANS, 2)
                        | (schema::SCOPE_LOGS, 2)
                        | (schema::SCOPE_PROFILES, 2) => self.items += 1,
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
        for (f, &n) in fields.iter().zip(&pushed) {
            if n > 0 {
                self.decoded += vec_capacity(n) * element_size(f.kind);
            }
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
            Signal::Profiles => {
                use opentelemetry_proto::tonic::collector::profiles::v1development as p;
                p::ExportProfilesServiceRequest::decode(b).is_ok()
            }
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
            let sc = scan(signal, &bytes).unwrap();
            assert_eq!((sc.items, sc.ids_ok), (items, true));
            assert!(sc.decoded_bytes > 0);
            assert!(prost_ok(signal, &bytes));
        }
        assert_eq!(
            scan(Signal::Traces, &[]).unwrap(),
            Scan {
                items: 0,
                ids_ok: true,
                decoded_bytes: 0,
            }
        );
    }

    #[test]
    fn every_message_has_a_struct_size_and_fits_the_field_counters() {
        for (i, (name, fields)) in MESSAGES.iter().enumerate() {
            assert_ne!(struct_size(i), 512, "{name} has no size arm");
            assert!(
                fields.len() <= MAX_FIELDS,
                "{name}: {} fields",
                fields.len()
            );
        }
    }

    #[test]
    fn empty_spans_are_charged_as_the_structs_they_become() {
        // 1000 empty spans: two bytes each on the wire, a `Span` each in memory.
        let mut scope = Vec::new();
        for _ in 0..1000 {
            scope.extend_from_slice(&[0x12, 0x00]); // ScopeSpans.spans = {}
        }
        let mut rs = vec![0x12];
        put_varint(&mut rs, scope.len() as u64);
        rs.extend_from_slice(&scope);
        let mut req = vec![0x0a];
        put_varint(&mut req, rs.len() as u64);
        req.extend_from_slice(&rs);
        let sc = scan(Signal::Traces, &req).unwrap();
        assert_eq!(sc.items, 1000);
        let span = std::mem::size_of::<opentelemetry_proto::tonic::trace::v1::Span>();
        let expected = 1024 * span
            + 4 * std::mem::size_of::<opentelemetry_proto::tonic::trace::v1::ScopeSpans>()
            + 4 * std::mem::size_of::<opentelemetry_proto::tonic::trace::v1::ResourceSpans>();
        assert_eq!(sc.decoded_bytes, expected);
        assert!(
            sc.decoded_bytes > 100 * req.len(),
            "the amplification is seen"
        );
    }

    pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
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
