//! OTLP/JSON → OTLP/protobuf, in one pass over the text and one over the output, without
//! building the request in memory.
//!
//! Decoding JSON into the prost structs (serde) costs as much memory as the structs (a `{}` of 3
//! bytes becomes a 240-byte `Span`) and, where serde flattens a oneof, a buffered copy of the
//! value besides; nothing could be admitted before that was spent. Transcoded to protobuf, a
//! JSON request goes the way of a protobuf one: the wire scan counts it, estimates what decoding
//! would cost and checks it, and it travels on encoded. The transcoder's own memory is its
//! output, a few times the input at worst (`1,` in a list of doubles becomes 8 bytes).
//!
//! What it reads is the OTLP/JSON encoding (the OTLP specification) on top of proto3 JSON: field
//! names in lowerCamelCase or as in the proto (`traceId`, `trace_id`); trace and span ids as hex
//! (not base64), of their exact length or empty; other bytes as base64 (standard or URL-safe,
//! padding optional); 64-bit integers as numbers or decimal strings; enums as numbers or names
//! (`SPAN_KIND_SERVER`); doubles as numbers or `"NaN"`, `"Infinity"`, `"-Infinity"`; `null` as
//! absent; unknown fields ignored. Nesting is bounded like prost's decoder (100 levels).
//!
//! How: every length-delimited field is written with a 5-byte placeholder length and, once its
//! content is written, the length it will have after compaction; a second walk over the output
//! (the schema says which fields are messages) rewrites each length in its shortest form,
//! moving the bytes down in place.

use super::Signal;
use super::wire::{Field, Kind, Ty};
use super::wire_schema::{self as schema, MESSAGES};

/// prost's recursion limit: the scanner refuses deeper messages anyway.
const MAX_DEPTH: usize = 100;
/// Bytes of a placeholder length: a varint of up to 35 bits.
const SLOT: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}{}: {msg}", path_suffix(.path))]
pub struct JsonError {
    /// The protobuf would be more than twice the JSON (only lists of small numbers grow so):
    /// refused as too large rather than as malformed.
    pub too_large: bool,
    pub offset: usize,
    /// Where in the request (`resourceSpans[0].scopeSpans[0].spans[3].traceId`), when known.
    pub path: String,
    pub msg: String,
}

fn path_suffix(p: &str) -> String {
    if p.is_empty() {
        String::new()
    } else {
        format!(" ({p})")
    }
}

/// A batch as the OTLP/JSON export request holding it (serde over the prost structs, which
/// write ids in hex and fields in lowerCamelCase as OTLP/JSON wants). Profiles are not written.
pub fn from_batch(batch: super::Batch) -> Result<Vec<u8>, String> {
    use super::Batch;
    use opentelemetry_proto::tonic::collector::{logs::v1 as l, metrics::v1 as m, trace::v1 as t};
    let batch = batch.into_decoded().map_err(|e| e.to_string())?;
    let json = match batch {
        Batch::Traces(v) => serde_json::to_vec(&t::ExportTraceServiceRequest { resource_spans: v }),
        Batch::Metrics(v) => serde_json::to_vec(&m::ExportMetricsServiceRequest {
            resource_metrics: v,
        }),
        Batch::Logs(v) => serde_json::to_vec(&l::ExportLogsServiceRequest { resource_logs: v }),
        Batch::Encoded(e) => return Err(format!("{} cannot be written as JSON", e.signal())),
    };
    json.map_err(|e| e.to_string())
}

/// Transcodes an `Export{Trace,Metrics,Logs}ServiceRequest` in OTLP/JSON. Blank input is an
/// empty request.
pub fn to_protobuf(signal: Signal, json: &[u8]) -> Result<Vec<u8>, JsonError> {
    to_protobuf_within(signal, json, usize::MAX)
}

/// [`to_protobuf`], stopping with a `too_large` error as soon as the request would take more
/// than `max_decoded` bytes once decoded (the structs and strings prost would allocate; the
/// wire scan computes it exactly afterwards): 6.9 million `{}` spans stop after a few hundred
/// thousand, not after all of them are written.
pub fn to_protobuf_within(
    signal: Signal,
    json: &[u8],
    max_decoded: usize,
) -> Result<Vec<u8>, JsonError> {
    let root = match signal {
        Signal::Traces => schema::EXPORT_TRACE_SERVICE_REQUEST,
        Signal::Metrics => schema::EXPORT_METRICS_SERVICE_REQUEST,
        Signal::Logs => schema::EXPORT_LOGS_SERVICE_REQUEST,
        Signal::Profiles => schema::EXPORT_PROFILES_SERVICE_REQUEST,
    };
    let mut t = Transcoder {
        src: json,
        at: 0,
        limit: 2 * json.len() + 4096,
        decoded: 0,
        max_decoded,
        out: Vec::with_capacity(json.len() / 2),
        shrink: 0,
        path: Vec::new(),
        scratch: Vec::new(),
    };
    t.ws();
    if t.at == json.len() {
        return Ok(Vec::new());
    }
    t.message(root, 0)?;
    t.ws();
    if t.at != json.len() {
        return Err(t.err("unexpected text after the request object"));
    }
    let mut out = t.out;
    let len = compact(&mut out, root);
    out.truncate(len);
    Ok(out)
}

struct Transcoder<'a> {
    src: &'a [u8],
    at: usize,
    /// The most output allowed: what a caller reserved memory for.
    limit: usize,
    /// Heap the decoded request would take so far (each struct of a repeated field, each
    /// string), and the most allowed.
    decoded: usize,
    max_decoded: usize,
    out: Vec<u8>,
    /// Bytes that compaction will remove from the lengths written so far.
    shrink: usize,
    /// Field names and list indexes down to the current value, for error messages.
    path: Vec<(&'static str, Option<usize>)>,
    /// Unescaped string content, reused.
    scratch: Vec<u8>,
}

/// An open length-delimited field: where its placeholder is and what had shrunk before it.
struct Open {
    slot: usize,
    shrink_before: usize,
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl<'a> Transcoder<'a> {
    fn err(&self, msg: impl Into<String>) -> JsonError {
        let mut path = String::new();
        for (name, idx) in &self.path {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(name);
            if let Some(i) = idx {
                path.push_str(&format!("[{i}]"));
            }
        }
        JsonError {
            too_large: false,
            offset: self.at,
            path,
            msg: msg.into(),
        }
    }

    fn check_size(&self) -> Result<(), JsonError> {
        let msg = if self.decoded > self.max_decoded {
            format!(
                "the request would take more than {} MiB once decoded (max_decoded_size)",
                self.max_decoded >> 20
            )
        } else if self.out.len() > self.limit {
            format!(
                "transcoding would take more than twice the {} bytes of JSON",
                self.src.len()
            )
        } else {
            return Ok(());
        };
        let mut e = self.err(msg);
        e.too_large = true;
        Err(e)
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.src.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.src.get(self.at).copied()
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected {what}")))
        }
    }

    /// After an item of an object or list: `,` (more follow, false) or `close` (done, true).
    fn next_or_close(&mut self, close: u8) -> Result<bool, JsonError> {
        match self.peek() {
            Some(b',') => {
                self.at += 1;
                Ok(false)
            }
            Some(c) if c == close => {
                self.at += 1;
                Ok(true)
            }
            _ => Err(self.err(format!("expected `,` or `{}`", close as char))),
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.src[self.at..].starts_with(word) {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    fn key(&mut self, tag: u32, wire: u8) {
        put_varint(&mut self.out, (u64::from(tag) << 3) | u64::from(wire));
    }

    fn open(&mut self, tag: u32) -> Open {
        self.key(tag, 2);
        let slot = self.out.len();
        self.out.extend_from_slice(&[0; SLOT]);
        Open {
            slot,
            shrink_before: self.shrink,
        }
    }

    /// Writes the compacted length of what was written since `open` into its placeholder.
    fn close(&mut self, o: Open) {
        let raw = self.out.len() - o.slot - SLOT;
        let len = raw - (self.shrink - o.shrink_before);
        let mut v = len as u64;
        for b in &mut self.out[o.slot..o.slot + SLOT] {
            *b = (v as u8 & 0x7f) | 0x80;
            v >>= 7;
        }
        self.out[o.slot + SLOT - 1] &= 0x7f;
        self.shrink += SLOT - varint_len(len as u64);
    }

    /// One message: `{ "field": value, ... }`.
    fn message(&mut self, msg: usize, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        let fields = MESSAGES[msg].1;
        self.expect(b'{', "an object")?;
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a field name"));
            }
            let name = self.string()?;
            let field = fields
                .iter()
                .find(|f| f.json.as_bytes() == &*name || f.name.as_bytes() == &*name);
            self.expect(b':', "`:` after a field name")?;
            match field {
                Some(f) => {
                    self.path.push((f.json, None));
                    self.field(f, depth)?;
                    self.check_size()?;
                    self.path.pop();
                }
                // Unknown fields are ignored, as the OTLP specification requires.
                None => self.skip_value(depth)?,
            }
            if self.next_or_close(b'}')? {
                return Ok(());
            }
        }
    }

    fn field(&mut self, f: &Field, depth: usize) -> Result<(), JsonError> {
        self.ws();
        if self.literal(b"null") {
            return Ok(());
        }
        if !f.repeated {
            return self.value(f, depth, true);
        }
        self.expect(b'[', "a list")?;
        let packed = matches!(f.kind, Kind::Varint | Kind::Fixed64 | Kind::Fixed32);
        if self.peek() == Some(b']') {
            // An empty list is no field at all, as protobuf writes it.
            self.at += 1;
            return Ok(());
        }
        let open = packed.then(|| self.open(f.tag));
        for i in 0.. {
            if let Some(last) = self.path.last_mut() {
                last.1 = Some(i);
            }
            if packed {
                self.scalar(f)?;
            } else {
                self.value(f, depth, false)?;
            }
            self.check_size()?;
            if self.next_or_close(b']')? {
                break;
            }
        }
        if let Some(o) = open {
            self.close(o);
        }
        Ok(())
    }

    /// One value of field `f`; `single` when it is the field's only value (zero values of
    /// fields without presence are then left out, as protobuf does).
    fn value(&mut self, f: &Field, depth: usize, single: bool) -> Result<(), JsonError> {
        match f.kind {
            Kind::Msg(child) => {
                if f.repeated {
                    self.decoded += super::wire::struct_size(child);
                }
                let o = self.open(f.tag);
                self.message(child, depth + 1)?;
                self.close(o);
                Ok(())
            }
            Kind::Str => {
                let s = self.string_value()?;
                if !s.is_empty() || f.presence || !single {
                    self.bytes_field(f.tag, s);
                }
                Ok(())
            }
            Kind::Bytes => {
                let b = if f.hex {
                    self.hex_id(f)?
                } else {
                    self.base64()?
                };
                if !b.is_empty() || f.presence || !single {
                    self.bytes_field(f.tag, b);
                }
                Ok(())
            }
            Kind::Varint | Kind::Fixed64 | Kind::Fixed32 => self.scalar_field(f, single),
        }
    }

    fn bytes_field(&mut self, tag: u32, b: Vec<u8>) {
        self.decoded += super::wire::string_cost(b.len());
        self.key(tag, 2);
        put_varint(&mut self.out, b.len() as u64);
        self.out.extend_from_slice(&b);
        self.scratch = b;
    }

    /// A singular scalar: its key and value, unless it is a zero without presence.
    fn scalar_field(&mut self, f: &Field, single: bool) -> Result<(), JsonError> {
        let mark = self.out.len();
        let wire = match f.kind {
            Kind::Fixed64 => 1,
            Kind::Fixed32 => 5,
            _ => 0,
        };
        self.key(f.tag, wire);
        let zero = self.scalar(f)?;
        if zero && single && !f.presence {
            self.out.truncate(mark);
        }
        Ok(())
    }

    /// Writes one scalar value (no key); returns whether it was zero.
    fn scalar(&mut self, f: &Field) -> Result<bool, JsonError> {
        self.ws();
        let zero = match f.ty {
            Ty::Bool => {
                let v = if self.literal(b"true") {
                    true
                } else if self.literal(b"false") {
                    false
                } else {
                    return Err(self.err("expected true or false"));
                };
                self.out.push(u8::from(v));
                !v
            }
            Ty::Double | Ty::Float => {
                let v = self.float()?;
                if f.ty == Ty::Double {
                    self.out.extend_from_slice(&v.to_le_bytes());
                } else {
                    self.out.extend_from_slice(&(v as f32).to_le_bytes());
                }
                v == 0.0
            }
            Ty::Enum(path) => {
                let v = self.enum_value(path)?;
                put_varint(&mut self.out, v as i64 as u64);
                v == 0
            }
            Ty::Int64 | Ty::SFixed64 | Ty::SInt64 => {
                let v = self.integer(i64::MIN as i128, i64::MAX as i128)? as i64;
                match f.ty {
                    Ty::Int64 => put_varint(&mut self.out, v as u64),
                    Ty::SInt64 => put_varint(&mut self.out, ((v << 1) ^ (v >> 63)) as u64),
                    _ => self.out.extend_from_slice(&v.to_le_bytes()),
                }
                v == 0
            }
            Ty::UInt64 | Ty::Fixed64 => {
                let v = self.integer(0, u64::MAX as i128)? as u64;
                if f.ty == Ty::UInt64 {
                    put_varint(&mut self.out, v);
                } else {
                    self.out.extend_from_slice(&v.to_le_bytes());
                }
                v == 0
            }
            Ty::Int32 | Ty::SInt32 | Ty::SFixed32 => {
                let v = self.integer(i32::MIN as i128, i32::MAX as i128)? as i32;
                match f.ty {
                    // Negative int32s are sign-extended to ten bytes, as protobuf writes them.
                    Ty::Int32 => put_varint(&mut self.out, v as i64 as u64),
                    Ty::SInt32 => put_varint(&mut self.out, ((v << 1) ^ (v >> 31)) as u32 as u64),
                    _ => self.out.extend_from_slice(&v.to_le_bytes()),
                }
                v == 0
            }
            Ty::UInt32 | Ty::Fixed32 => {
                let v = self.integer(0, u32::MAX as i128)? as u32;
                if f.ty == Ty::UInt32 {
                    put_varint(&mut self.out, u64::from(v));
                } else {
                    self.out.extend_from_slice(&v.to_le_bytes());
                }
                v == 0
            }
            Ty::String | Ty::Bytes | Ty::Message => {
                return Err(self.err("internal: not a scalar field"));
            }
        };
        Ok(zero)
    }

    /// A number token, or the content of a string holding one.
    fn number_text(&mut self) -> Result<(String, bool), JsonError> {
        self.ws();
        if self.src.get(self.at) == Some(&b'"') {
            let s = self.string_value()?;
            let text = String::from_utf8(s).map_err(|_| self.err("invalid UTF-8"))?;
            return Ok((text, true));
        }
        let start = self.at;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.src.get(self.at) {
            self.at += 1;
        }
        if start == self.at {
            return Err(self.err("expected a number"));
        }
        let text = std::str::from_utf8(&self.src[start..self.at]).unwrap_or_default();
        Ok((text.to_owned(), false))
    }

    fn integer(&mut self, min: i128, max: i128) -> Result<i128, JsonError> {
        let (text, _) = self.number_text()?;
        let v = if text.contains(['.', 'e', 'E']) {
            // proto3 JSON accepts exponent notation for integers when the value is whole.
            let f: f64 = text
                .parse()
                .map_err(|_| self.err(format!("invalid number {text:?}")))?;
            if f.fract() != 0.0 || !f.is_finite() || f.abs() > 1.8e19 {
                return Err(self.err(format!("{text:?} is not an integer")));
            }
            f as i128
        } else {
            text.parse::<i128>()
                .map_err(|_| self.err(format!("invalid integer {text:?}")))?
        };
        if v < min || v > max {
            return Err(self.err(format!("{text} is out of range")));
        }
        Ok(v)
    }

    fn float(&mut self) -> Result<f64, JsonError> {
        let (text, quoted) = self.number_text()?;
        match text.as_str() {
            "NaN" if quoted => return Ok(f64::NAN),
            "Infinity" if quoted => return Ok(f64::INFINITY),
            "-Infinity" if quoted => return Ok(f64::NEG_INFINITY),
            _ => {}
        }
        let v: f64 = text
            .parse()
            .map_err(|_| self.err(format!("invalid number {text:?}")))?;
        if !v.is_finite() {
            return Err(self.err(format!("{text} is out of range")));
        }
        Ok(v)
    }

    fn enum_value(&mut self, path: &str) -> Result<i32, JsonError> {
        self.ws();
        if self.src.get(self.at) != Some(&b'"') {
            return Ok(self.integer(i32::MIN as i128, i32::MAX as i128)? as i32);
        }
        let save = self.at;
        let s = self.string_value()?;
        let name = String::from_utf8_lossy(&s).into_owned();
        self.scratch = s;
        if let Ok(n) = name.parse::<i32>() {
            return Ok(n);
        }
        enum_by_name(path, &name).ok_or_else(|| {
            self.at = save;
            self.err(format!("unknown {path} value {name:?}"))
        })
    }

    /// A string value: its unescaped bytes (a fresh buffer; `scratch` is recycled).
    fn string_value(&mut self) -> Result<Vec<u8>, JsonError> {
        self.ws();
        if self.src.get(self.at) != Some(&b'"') {
            return Err(self.err("expected a string"));
        }
        let raw = self.string()?;
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.extend_from_slice(&raw);
        Ok(buf)
    }

    /// A JSON string at the cursor, unescaped. Borrowed when it has no escapes.
    fn string(&mut self) -> Result<std::borrow::Cow<'a, [u8]>, JsonError> {
        let src: &'a [u8] = self.src;
        self.at += 1; // the opening quote
        let start = self.at;
        // Fast path: up to the closing quote without escapes.
        let mut i = start;
        while let Some(&b) = src.get(i) {
            match b {
                b'"' => {
                    let s = &src[start..i];
                    if std::str::from_utf8(s).is_err() {
                        self.at = start;
                        return Err(self.err("string is not valid UTF-8"));
                    }
                    self.at = i + 1;
                    return Ok(std::borrow::Cow::Borrowed(s));
                }
                b'\\' => break,
                0..=0x1f => {
                    self.at = i;
                    return Err(self.err("control character in a string"));
                }
                _ => i += 1,
            }
        }
        let mut out = src[start..i].to_vec();
        self.at = i;
        loop {
            let Some(&b) = src.get(self.at) else {
                return Err(self.err("unterminated string"));
            };
            self.at += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = src.get(self.at) else {
                        return Err(self.err("unterminated string"));
                    };
                    self.at += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let c = self.unicode_escape()?;
                            let mut tmp = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                        }
                        _ => {
                            self.at -= 1;
                            return Err(self.err("invalid escape in a string"));
                        }
                    }
                }
                0..=0x1f => {
                    self.at -= 1;
                    return Err(self.err("control character in a string"));
                }
                _ => out.push(b),
            }
        }
        if std::str::from_utf8(&out).is_err() {
            return Err(self.err("string is not valid UTF-8"));
        }
        Ok(std::borrow::Cow::Owned(out))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self
            .src
            .get(self.at..self.at + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err("invalid \\u escape"))?;
        self.at += 4;
        Ok(h)
    }

    /// After `\u`: one code point, a surrogate pair joined.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let hi = self.hex4()?;
        if (0xd800..0xdc00).contains(&hi) {
            if self.src.get(self.at..self.at + 2) != Some(b"\\u") {
                return Err(self.err("unpaired surrogate in a \\u escape"));
            }
            self.at += 2;
            let lo = self.hex4()?;
            if !(0xdc00..0xe000).contains(&lo) {
                return Err(self.err("unpaired surrogate in a \\u escape"));
            }
            let c = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
            return char::from_u32(c).ok_or_else(|| self.err("invalid \\u escape"));
        }
        char::from_u32(hi).ok_or_else(|| self.err("unpaired surrogate in a \\u escape"))
    }

    /// A trace, span or profile id: hex of exactly its length (16 or 8 bytes), or empty.
    fn hex_id(&mut self, f: &Field) -> Result<Vec<u8>, JsonError> {
        let s = self.string_value()?;
        let want = if matches!(f.name, "trace_id" | "profile_id") {
            16
        } else {
            8
        };
        if s.is_empty() {
            return Ok(s);
        }
        let decoded = hex::decode(&s).map_err(|_| self.err(format!("{} is not hex", f.json)))?;
        self.scratch = s;
        if decoded.len() != want {
            return Err(self.err(format!(
                "{} must be {want} bytes of hex, got {} bytes",
                f.json,
                decoded.len()
            )));
        }
        Ok(decoded)
    }

    fn base64(&mut self) -> Result<Vec<u8>, JsonError> {
        use base64::Engine;
        use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
        const CFG: GeneralPurposeConfig =
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
        const STD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CFG);
        const URL: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CFG);
        let s = self.string_value()?;
        let out = STD
            .decode(&s)
            .or_else(|_| URL.decode(&s))
            .map_err(|_| self.err("invalid base64"))?;
        self.scratch = s;
        Ok(out)
    }

    /// Skips any JSON value (of an unknown field), checking its syntax.
    fn skip_value(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH + 28 {
            return Err(self.err("nesting too deep"));
        }
        match self.peek() {
            Some(b'{') => {
                self.at += 1;
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Ok(());
                }
                loop {
                    if self.peek() != Some(b'"') {
                        return Err(self.err("expected a field name"));
                    }
                    self.string()?;
                    self.expect(b':', "`:`")?;
                    self.skip_value(depth + 1)?;
                    if self.next_or_close(b'}')? {
                        return Ok(());
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Ok(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    if self.next_or_close(b']')? {
                        return Ok(());
                    }
                }
            }
            Some(b'"') => self.string().map(drop),
            Some(b't') if self.literal(b"true") => Ok(()),
            Some(b'f') if self.literal(b"false") => Ok(()),
            Some(b'n') if self.literal(b"null") => Ok(()),
            Some(b'-' | b'0'..=b'9') => {
                let (text, _) = self.number_text()?;
                text.parse::<f64>()
                    .map(drop)
                    .map_err(|_| self.err(format!("invalid number {text:?}")))
            }
            _ => Err(self.err("expected a value")),
        }
    }
}

/// An enum value by its proto name, for the enums OTLP has.
fn enum_by_name(path: &str, name: &str) -> Option<i32> {
    use opentelemetry_proto::tonic::{logs::v1 as l, metrics::v1 as m, trace::v1 as t};
    match path {
        "span::SpanKind" => t::span::SpanKind::from_str_name(name).map(|v| v as i32),
        "status::StatusCode" => t::status::StatusCode::from_str_name(name).map(|v| v as i32),
        "SeverityNumber" => l::SeverityNumber::from_str_name(name).map(|v| v as i32),
        "AggregationTemporality" => {
            m::AggregationTemporality::from_str_name(name).map(|v| v as i32)
        }
        _ => None,
    }
}

/// Rewrites every placeholder length of `buf` (a message of type `msg` as the transcoder wrote
/// it) in its shortest form, moving the bytes down; returns the compacted length.
fn compact(buf: &mut [u8], msg: usize) -> usize {
    let mut r = 0;
    let mut w = 0;
    let end = buf.len();
    compact_message(buf, msg, &mut r, &mut w, None, end);
    w
}

/// Copies fields of message `msg` from `*r` to `*w` until `want` output bytes are written (the
/// compacted length of the message) or, for the root, the input ends.
fn compact_message(
    buf: &mut [u8],
    msg: usize,
    r: &mut usize,
    w: &mut usize,
    want: Option<usize>,
    end: usize,
) {
    let start_w = *w;
    let fields = MESSAGES[msg].1;
    loop {
        match want {
            Some(n) if *w - start_w >= n => return,
            _ if *r >= end => return,
            _ => {}
        }
        // The key: a varint the transcoder wrote in shortest form.
        let (key, klen) = read_varint(&buf[*r..]);
        buf.copy_within(*r..*r + klen, *w);
        *r += klen;
        *w += klen;
        let tag = (key >> 3) as u32;
        match key & 7 {
            0 => {
                let (_, n) = read_varint(&buf[*r..]);
                buf.copy_within(*r..*r + n, *w);
                *r += n;
                *w += n;
            }
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                buf.copy_within(*r..*r + n, *w);
                *r += n;
                *w += n;
            }
            _ => {
                let f = fields.iter().find(|f| f.tag == tag);
                let is_msg = matches!(f.map(|f| f.kind), Some(Kind::Msg(_)));
                let packed = f.is_some_and(|f| {
                    f.repeated && matches!(f.kind, Kind::Varint | Kind::Fixed64 | Kind::Fixed32)
                });
                if is_msg || packed {
                    // A placeholder: five bytes holding the compacted length.
                    let (len, _) = read_varint(&buf[*r..*r + SLOT]);
                    *r += SLOT;
                    let mut tmp = Vec::with_capacity(SLOT);
                    put_varint(&mut tmp, len);
                    buf[*w..*w + tmp.len()].copy_from_slice(&tmp);
                    *w += tmp.len();
                    let len = len as usize;
                    if let Some(Kind::Msg(child)) = f.map(|f| f.kind) {
                        compact_message(buf, child, r, w, Some(len), end);
                    } else {
                        buf.copy_within(*r..*r + len, *w);
                        *r += len;
                        *w += len;
                    }
                } else {
                    // A string or bytes field, written in shortest form.
                    let (len, n) = read_varint(&buf[*r..]);
                    let total = n + len as usize;
                    buf.copy_within(*r..*r + total, *w);
                    *r += total;
                    *w += total;
                }
            }
        }
    }
}

fn read_varint(b: &[u8]) -> (u64, usize) {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return (v, i + 1);
        }
    }
    (v, b.len().min(10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::{logs::v1 as l, metrics::v1 as m, trace::v1 as t};
    use prost::Message;

    fn traces(json: &str) -> t::ExportTraceServiceRequest {
        let pb = to_protobuf(Signal::Traces, json.as_bytes()).unwrap();
        t::ExportTraceServiceRequest::decode(&pb[..]).unwrap()
    }

    #[test]
    fn a_span_request_as_the_specification_writes_it() {
        let r = traces(
            r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
            "scopeSpans":[{"scope":{"name":"lib","version":"1"},"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174",
            "parentSpanId":"","name":"op","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,
            "attributes":[{"key":"n","value":{"intValue":"42"}},{"key":"zero","value":{"intValue":0}},{"key":"d","value":{"doubleValue":"NaN"}},
            {"key":"b","value":{"bytesValue":"aGk="}},{"key":"arr","value":{"arrayValue":{"values":[{"boolValue":false}]}}}],
            "status":{"code":"STATUS_CODE_ERROR","message":"boom"},"events":[{"name":"e","timeUnixNano":"5"}],
            "links":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}],
            "unknownField":{"deep":[1,2,{"x":null}]}}]}]}]}"#,
        );
        let rs = &r.resource_spans[0];
        assert_eq!(
            rs.resource.as_ref().unwrap().attributes[0].key,
            "service.name"
        );
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.scope.as_ref().unwrap().version, "1");
        let sp = &ss.spans[0];
        assert_eq!(
            hex::encode(&sp.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(sp.span_id.len(), 8);
        assert!(sp.parent_span_id.is_empty());
        assert_eq!((sp.kind, sp.start_time_unix_nano), (2, 1544712660000000000));
        assert_eq!(sp.end_time_unix_nano, 1544712661000000000);
        use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
        let vals: Vec<_> = sp
            .attributes
            .iter()
            .map(|a| a.value.clone().unwrap().value)
            .collect();
        assert_eq!(vals[0], Some(V::IntValue(42)));
        // A zero in a oneof is a value, not "absent".
        assert_eq!(vals[1], Some(V::IntValue(0)));
        assert!(matches!(vals[2], Some(V::DoubleValue(d)) if d.is_nan()));
        assert_eq!(vals[3], Some(V::BytesValue(b"hi".to_vec())));
        assert!(
            matches!(&vals[4], Some(V::ArrayValue(a)) if a.values[0].value == Some(V::BoolValue(false)))
        );
        assert_eq!(sp.status.as_ref().unwrap().code, 2);
        assert_eq!(sp.events[0].time_unix_nano, 5);
        assert_eq!(sp.links[0].span_id.len(), 8);
    }

    #[test]
    fn proto_names_and_enum_names_are_accepted() {
        let r = traces(
            r#"{"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174","kind":"SPAN_KIND_CLIENT","dropped_attributes_count":3}]}]}]}"#,
        );
        let sp = &r.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!((sp.kind, sp.dropped_attributes_count), (3, 3));
    }

    #[test]
    fn the_output_is_what_prost_encodes() {
        // The same request through serde (opentelemetry-proto's JSON) and through the
        // transcoder: the same message. Fields come in the JSON's order, so the bytes match once
        // re-encoded in tag order.
        let json = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"host","value":{"stringValue":"n1"}}]},"scopeMetrics":[{"scope":{"name":"m"},"metrics":[
          {"name":"g","unit":"1","gauge":{"dataPoints":[{"asDouble":1.5,"timeUnixNano":"7","attributes":[{"key":"k","value":{"stringValue":"v"}}]},{"asInt":"-3"}]}},
          {"name":"s","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"asInt":"10","startTimeUnixNano":"1"}]}},
          {"name":"h","histogram":{"aggregationTemporality":1,"dataPoints":[{"count":"3","sum":2.5,"bucketCounts":["1","2"],"explicitBounds":[1.0],"min":0,"max":2}]}},
          {"name":"e","exponentialHistogram":{"dataPoints":[{"scale":-2,"count":"1","positive":{"offset":-1,"bucketCounts":[1]},"zeroCount":"0"}]}},
          {"name":"q","summary":{"dataPoints":[{"count":"1","sum":1,"quantileValues":[{"quantile":0.5,"value":1}]}]}}]}]}]}"#;
        let ours = to_protobuf(Signal::Metrics, json.as_bytes()).unwrap();
        let serde: m::ExportMetricsServiceRequest = serde_json::from_str(json).unwrap();
        let decoded = m::ExportMetricsServiceRequest::decode(&ours[..]).unwrap();
        assert_eq!(decoded, serde);
        // Zeros without presence are left out as prost leaves them: same size.
        assert_eq!(ours.len(), serde.encode_to_vec().len());
        let json = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"1","severityNumber":9,"severityText":"INFO","body":{"stringValue":"hello é \u00e9 \ud83d\ude00"},
          "attributes":[{"key":"kv","value":{"kvlistValue":{"values":[{"key":"a","value":{"intValue":"1"}}]}}}],"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","flags":1}]}]}]}"#;
        let ours = to_protobuf(Signal::Logs, json.as_bytes()).unwrap();
        let serde: l::ExportLogsServiceRequest = serde_json::from_str(json).unwrap();
        assert_eq!(
            l::ExportLogsServiceRequest::decode(&ours[..]).unwrap(),
            serde
        );
        assert_eq!(ours.len(), serde.encode_to_vec().len());
    }

    #[test]
    fn long_requests_compact_correctly() {
        // Enough nesting and length that lengths need several varint bytes.
        let span = r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"a span with a longer name","attributes":[{"key":"k","value":{"stringValue":"v"}}]}"#;
        let spans = vec![span; 5000].join(",");
        let json = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{spans}]}}]}},{{"scopeSpans":[{{"spans":[{{}}]}}]}}]}}"#
        );
        let r = traces(&json);
        assert_eq!(r.resource_spans[0].scope_spans[0].spans.len(), 5000);
        assert_eq!(r.resource_spans[1].scope_spans[0].spans.len(), 1);
        let pb = to_protobuf(Signal::Traces, json.as_bytes()).unwrap();
        assert_eq!(pb, r.encode_to_vec());
    }

    #[test]
    fn output_past_twice_the_input_is_too_large() {
        // A list of one-digit doubles: 2 bytes each in JSON, 8 in protobuf.
        let points = vec!["1"; 20_000].join(",");
        let json = format!(
            r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"histogram":{{"dataPoints":[{{"explicitBounds":[{points}]}}]}}}}]}}]}}]}}"#
        );
        let e = to_protobuf(Signal::Metrics, json.as_bytes()).unwrap_err();
        assert!(e.too_large, "{e}");
        // Normal bounds pass.
        let points = vec!["0.005"; 2_000].join(",");
        let json = format!(
            r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"histogram":{{"dataPoints":[{{"explicitBounds":[{points}]}}]}}}}]}}]}}]}}"#
        );
        assert!(to_protobuf(Signal::Metrics, json.as_bytes()).is_ok());
    }

    #[test]
    fn errors_say_where() {
        let e = to_protobuf(
            Signal::Traces,
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{},{"traceId":"5b8e"}]}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.path, "resourceSpans[0].scopeSpans[0].spans[1].traceId");
        assert!(e.msg.contains("traceId must be 16 bytes"), "{e}");
        for (bad, want) in [
            (&br#"{"resourceSpans": ["#[..], "expected an object"),
            (br#"{"resourceSpans":[]} x"#, "unexpected text"),
            (
                br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_NOPE"}]}]}]}"#,
                "unknown span::SpanKind",
            ),
            (
                br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"-1"}]}]}]}"#,
                "out of range",
            ),
            (
                b"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"name\":\"a\x01\"}]}]}]}",
                "control character",
            ),
            (
                br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"\ud800"}]}]}]}"#,
                "unpaired surrogate",
            ),
            (
                br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":5}]}]}]}"#,
                "expected a string",
            ),
        ] {
            let e = to_protobuf(Signal::Traces, bad).unwrap_err();
            assert!(e.to_string().contains(want), "{e} (wanted {want:?})");
        }
        let deep = format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{}"x"{}}}]}}]}}]}}"#,
            r#"{"arrayValue":{"values":["#.repeat(200),
            "]}}".repeat(200)
        );
        assert!(
            to_protobuf(Signal::Logs, deep.as_bytes())
                .unwrap_err()
                .msg
                .contains("nesting deeper")
        );
        assert!(to_protobuf(Signal::Logs, b"  \n").unwrap().is_empty());
    }

    /// Random requests written to OTLP/JSON by opentelemetry-proto's serde and read back by the
    /// transcoder: the same request every time.
    mod random {
        use super::*;
        use crate::signal::testdata::random::{logs, metrics, traces};
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        #[test]
        fn serde_json_round_trips_through_the_transcoder() {
            let mut r = StdRng::seed_from_u64(11);
            for i in 0..3000 {
                match i % 3 {
                    0 => {
                        let req = traces(&mut r);
                        let json = serde_json::to_vec(&req).unwrap();
                        let pb = to_protobuf(Signal::Traces, &json).unwrap();
                        let back = t::ExportTraceServiceRequest::decode(&pb[..]).unwrap();
                        assert_eq!(back, req, "{}", String::from_utf8_lossy(&json));
                    }
                    1 => {
                        let req = metrics(&mut r);
                        let json = serde_json::to_vec(&req).unwrap();
                        let pb = to_protobuf(Signal::Metrics, &json).unwrap();
                        let back = m::ExportMetricsServiceRequest::decode(&pb[..]).unwrap();
                        assert_eq!(back, req, "{}", String::from_utf8_lossy(&json));
                    }
                    _ => {
                        let req = logs(&mut r);
                        let json = serde_json::to_vec(&req).unwrap();
                        let pb = to_protobuf(Signal::Logs, &json).unwrap();
                        let back = l::ExportLogsServiceRequest::decode(&pb[..]).unwrap();
                        assert_eq!(back, req, "{}", String::from_utf8_lossy(&json));
                    }
                }
            }
        }

        #[test]
        fn any_input_gives_an_error_or_protobuf_that_scans() {
            // Mutated JSON: never a panic, and whatever is accepted is a valid request.
            let mut r = StdRng::seed_from_u64(12);
            let mut accepted = 0;
            for i in 0..20_000 {
                let signal = Signal::ALL[i % 3];
                let mut json = match signal {
                    Signal::Traces => serde_json::to_vec(&traces(&mut r)).unwrap(),
                    Signal::Metrics => serde_json::to_vec(&metrics(&mut r)).unwrap(),
                    Signal::Logs => serde_json::to_vec(&logs(&mut r)).unwrap(),
                    Signal::Profiles => unreachable!("Signal::ALL holds the three stable signals"),
                };
                for _ in 0..r.random_range(1..4) {
                    if json.is_empty() {
                        break;
                    }
                    let at = r.random_range(0..json.len());
                    match r.random_range(0..4) {
                        0 => json[at] = r.random(),
                        1 => {
                            json.remove(at);
                        }
                        2 => {
                            let pool = b"{}[]\",:0-e.\"nul";
                            json.insert(at, pool[r.random_range(0..pool.len())])
                        }
                        _ => json.truncate(at),
                    }
                }
                if let Ok(pb) = to_protobuf(signal, &json) {
                    accepted += 1;
                    crate::signal::wire::scan(signal, &pb)
                        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&json)));
                }
            }
            assert!(accepted > 100, "{accepted}");
        }
    }
}
