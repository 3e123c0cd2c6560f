//! Apache Thrift's binary (`TBinaryProtocol`) and compact (`TCompactProtocol`) encodings, read
//! into a generic tree of values: what the legacy receivers need (Zipkin v1 spans, Jaeger's
//! `Batch` over HTTP and the agent's UDP `emitBatch`), each of which then picks its fields by
//! id. Only reading, and bounded: a container's declared size is checked against the bytes left
//! before anything is reserved (every element takes at least one byte), and nesting is limited
//! to [`MAX_DEPTH`], so no input makes memory out of proportion to its length or exhausts the
//! stack. Writing (for tests and the stand-ins) is in [`write`].

use thiserror::Error;

/// How deeply structs and containers may nest.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Error, PartialEq)]
pub enum ThriftError {
    #[error("truncated: needed {needed} more bytes at offset {at}")]
    Truncated { at: usize, needed: usize },
    #[error("unknown type {0} at offset {1}")]
    UnknownType(u8, usize),
    #[error("a container of {size} elements at offset {at} is larger than the {left} bytes left")]
    TooLarge { at: usize, size: u64, left: usize },
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("bad varint at offset {0}")]
    BadVarint(usize),
    #[error("negative length {0} at offset {1}")]
    NegativeLength(i64, usize),
    #[error("bad message header: {0}")]
    BadMessage(String),
}

/// A Thrift value. Strings and binaries are both [`Value::Bin`] (the wire does not tell them
/// apart).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Byte(i8),
    I16(i16),
    I32(i32),
    I64(i64),
    Double(f64),
    Bin(Vec<u8>),
    Struct(Struct),
    List(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

/// A struct's fields in wire order, by field id.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Struct(pub Vec<(i16, Value)>);

impl Struct {
    pub fn get(&self, id: i16) -> Option<&Value> {
        self.0.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
    }

    /// A string field (lossy UTF-8); `None` when absent or not a string.
    pub fn str(&self, id: i16) -> Option<String> {
        match self.get(id)? {
            Value::Bin(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    pub fn bin(&self, id: i16) -> Option<&[u8]> {
        match self.get(id)? {
            Value::Bin(b) => Some(b),
            _ => None,
        }
    }

    /// Any integer field, widened.
    pub fn int(&self, id: i16) -> Option<i64> {
        self.get(id)?.as_i64()
    }

    pub fn bool(&self, id: i16) -> Option<bool> {
        match self.get(id)? {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn double(&self, id: i16) -> Option<f64> {
        match self.get(id)? {
            Value::Double(d) => Some(*d),
            _ => None,
        }
    }

    pub fn strukt(&self, id: i16) -> Option<&Struct> {
        match self.get(id)? {
            Value::Struct(s) => Some(s),
            _ => None,
        }
    }

    /// A list field's struct elements (others skipped); empty when absent.
    pub fn structs(&self, id: i16) -> impl Iterator<Item = &Struct> {
        let list = match self.get(id) {
            Some(Value::List(l)) => l.as_slice(),
            _ => &[],
        };
        list.iter().filter_map(|v| match v {
            Value::Struct(s) => Some(s),
            _ => None,
        })
    }
}

impl Value {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Byte(v) => Some(i64::from(*v)),
            Value::I16(v) => Some(i64::from(*v)),
            Value::I32(v) => Some(i64::from(*v)),
            Value::I64(v) => Some(*v),
            _ => None,
        }
    }
}

/// Which encoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Protocol {
    Binary,
    Compact,
}

/// A message's envelope (a call such as the agent's `emitBatch`) and its argument struct.
#[derive(Debug, PartialEq)]
pub struct Message {
    pub name: String,
    /// 1 call, 2 reply, 3 exception, 4 oneway.
    pub kind: u8,
    pub seq_id: i32,
    pub args: Struct,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    proto: Protocol,
}

// The binary protocol's type ids.
const B_STOP: u8 = 0;
const B_BOOL: u8 = 2;
const B_BYTE: u8 = 3;
const B_DOUBLE: u8 = 4;
const B_I16: u8 = 6;
const B_I32: u8 = 8;
const B_I64: u8 = 10;
const B_STRING: u8 = 11;
const B_STRUCT: u8 = 12;
const B_MAP: u8 = 13;
const B_SET: u8 = 14;
const B_LIST: u8 = 15;

/// The compact protocol's type ids, turned into the binary protocol's (one set of arms below).
fn compact_type(t: u8, at: usize) -> Result<u8, ThriftError> {
    Ok(match t {
        0 => B_STOP,
        1 | 2 => B_BOOL,
        3 => B_BYTE,
        4 => B_I16,
        5 => B_I32,
        6 => B_I64,
        7 => B_DOUBLE,
        8 => B_STRING,
        9 => B_LIST,
        10 => B_SET,
        11 => B_MAP,
        12 => B_STRUCT,
        other => return Err(ThriftError::UnknownType(other, at)),
    })
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ThriftError> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(ThriftError::Truncated {
                at: self.pos,
                needed: n - left,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn u8(&mut self) -> Result<u8, ThriftError> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], ThriftError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn varint(&mut self) -> Result<u64, ThriftError> {
        let at = self.pos;
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(ThriftError::BadVarint(at));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ThriftError::BadVarint(at))
    }

    fn zigzag(&mut self) -> Result<i64, ThriftError> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn i16(&mut self) -> Result<i16, ThriftError> {
        match self.proto {
            Protocol::Binary => Ok(i16::from_be_bytes(self.be()?)),
            Protocol::Compact => Ok(self.zigzag()? as i16),
        }
    }

    fn i32(&mut self) -> Result<i32, ThriftError> {
        match self.proto {
            Protocol::Binary => Ok(i32::from_be_bytes(self.be()?)),
            Protocol::Compact => Ok(self.zigzag()? as i32),
        }
    }

    fn i64(&mut self) -> Result<i64, ThriftError> {
        match self.proto {
            Protocol::Binary => Ok(i64::from_be_bytes(self.be()?)),
            Protocol::Compact => self.zigzag(),
        }
    }

    /// A length or size: non-negative, and no more than the bytes left (each unit of it takes
    /// at least one byte).
    fn size(&mut self) -> Result<usize, ThriftError> {
        let at = self.pos;
        let n = match self.proto {
            Protocol::Binary => i64::from(i32::from_be_bytes(self.be()?)),
            Protocol::Compact => {
                let v = self.varint()?;
                i64::try_from(v).unwrap_or(i64::MAX)
            }
        };
        if n < 0 {
            return Err(ThriftError::NegativeLength(n, at));
        }
        self.bounded(n as u64, at)
    }

    fn bounded(&self, n: u64, at: usize) -> Result<usize, ThriftError> {
        if n > self.left() as u64 {
            return Err(ThriftError::TooLarge {
                at,
                size: n,
                left: self.left(),
            });
        }
        Ok(n as usize)
    }

    fn binary(&mut self) -> Result<Vec<u8>, ThriftError> {
        let n = self.size()?;
        Ok(self.take(n)?.to_vec())
    }

    fn double(&mut self) -> Result<f64, ThriftError> {
        Ok(match self.proto {
            Protocol::Binary => f64::from_be_bytes(self.be()?),
            Protocol::Compact => f64::from_le_bytes(self.be()?),
        })
    }

    fn value(&mut self, t: u8, depth: usize) -> Result<Value, ThriftError> {
        if depth > MAX_DEPTH {
            return Err(ThriftError::TooDeep);
        }
        Ok(match t {
            B_BOOL => Value::Bool(self.u8()? == 1),
            B_BYTE => Value::Byte(self.u8()? as i8),
            B_I16 => Value::I16(self.i16()?),
            B_I32 => Value::I32(self.i32()?),
            B_I64 => Value::I64(self.i64()?),
            B_DOUBLE => Value::Double(self.double()?),
            B_STRING => Value::Bin(self.binary()?),
            B_STRUCT => Value::Struct(self.strukt(depth + 1)?),
            B_LIST | B_SET => {
                let (elem, n) = self.list_header()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1)?);
                }
                Value::List(items)
            }
            B_MAP => {
                let at = self.pos;
                let (kt, vt, n) = match self.proto {
                    Protocol::Binary => {
                        let (kt, vt) = (self.u8()?, self.u8()?);
                        (kt, vt, self.size()?)
                    }
                    Protocol::Compact => {
                        let n = self.varint()?;
                        let n = self.bounded(n, at)?;
                        if n == 0 {
                            (B_STOP, B_STOP, 0)
                        } else {
                            let kv = self.u8()?;
                            (compact_type(kv >> 4, at)?, compact_type(kv & 0x0f, at)?, n)
                        }
                    }
                };
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = self.value(kt, depth + 1)?;
                    let v = self.value(vt, depth + 1)?;
                    items.push((k, v));
                }
                Value::Map(items)
            }
            other => return Err(ThriftError::UnknownType(other, self.pos)),
        })
    }

    fn list_header(&mut self) -> Result<(u8, usize), ThriftError> {
        let at = self.pos;
        match self.proto {
            Protocol::Binary => {
                let elem = self.u8()?;
                Ok((elem, self.size()?))
            }
            Protocol::Compact => {
                let h = self.u8()?;
                let elem = compact_type(h & 0x0f, at)?;
                let n = match h >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                Ok((elem, self.bounded(n, at)?))
            }
        }
    }

    fn strukt(&mut self, depth: usize) -> Result<Struct, ThriftError> {
        if depth > MAX_DEPTH {
            return Err(ThriftError::TooDeep);
        }
        let mut fields = Vec::new();
        let mut last_id: i16 = 0;
        loop {
            let at = self.pos;
            let b = self.u8()?;
            match self.proto {
                Protocol::Binary => {
                    if b == B_STOP {
                        return Ok(Struct(fields));
                    }
                    let id = self.i16()?;
                    fields.push((id, self.value(b, depth)?));
                }
                Protocol::Compact => {
                    let ct = b & 0x0f;
                    if ct == 0 {
                        return Ok(Struct(fields));
                    }
                    let id = match b >> 4 {
                        0 => self.i16()?,
                        delta => last_id.wrapping_add(i16::from(delta)),
                    };
                    last_id = id;
                    // A bool field carries its value in the type nibble.
                    let v = match ct {
                        1 => Value::Bool(true),
                        2 => Value::Bool(false),
                        _ => self.value(compact_type(ct, at)?, depth)?,
                    };
                    fields.push((id, v));
                }
            }
        }
    }
}

/// One struct from the start of `buf`; returns it and the bytes it took.
pub fn read_struct(buf: &[u8], proto: Protocol) -> Result<(Struct, usize), ThriftError> {
    let mut r = Reader { buf, pos: 0, proto };
    let s = r.strukt(0)?;
    Ok((s, r.pos))
}

/// A list of structs (a binary-protocol `list<Span>` as Zipkin v1 clients send it).
pub fn read_struct_list(buf: &[u8], proto: Protocol) -> Result<Vec<Struct>, ThriftError> {
    let mut r = Reader { buf, pos: 0, proto };
    let (elem, n) = r.list_header()?;
    if elem != B_STRUCT {
        return Err(ThriftError::BadMessage(format!(
            "expected a list of structs, got element type {elem}"
        )));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(r.strukt(1)?);
    }
    Ok(out)
}

/// A message: its envelope and argument struct.
pub fn read_message(buf: &[u8], proto: Protocol) -> Result<Message, ThriftError> {
    let mut r = Reader { buf, pos: 0, proto };
    let (name, kind, seq_id) = match proto {
        Protocol::Binary => {
            let first = i32::from_be_bytes(r.be()?);
            if first < 0 {
                // Strict: version 1 in the high half, the type in the low byte.
                if (first as u32) & 0xffff_0000 != 0x8001_0000 {
                    return Err(ThriftError::BadMessage(format!(
                        "version {:#x}",
                        first as u32 >> 16
                    )));
                }
                let name = r.binary()?;
                (name, (first & 0xff) as u8, r.i32()?)
            } else {
                // Old style: the name's length first.
                let n = r.bounded(first as u64, 0)?;
                let name = r.take(n)?.to_vec();
                let kind = r.u8()?;
                (name, kind, r.i32()?)
            }
        }
        Protocol::Compact => {
            let id = r.u8()?;
            if id != 0x82 {
                return Err(ThriftError::BadMessage(format!(
                    "protocol id {id:#x}, not compact's 0x82"
                )));
            }
            let vt = r.u8()?;
            if vt & 0x1f != 1 {
                return Err(ThriftError::BadMessage(format!("version {}", vt & 0x1f)));
            }
            let seq = r.varint()? as i32;
            let name = r.binary()?;
            (name, vt >> 5, seq)
        }
    };
    let args = r.strukt(0)?;
    Ok(Message {
        name: String::from_utf8_lossy(&name).into_owned(),
        kind,
        seq_id,
        args,
    })
}

/// Writing, for tests and the test stand-ins: the binary protocol and the compact one.
pub mod write {
    use super::{Protocol, Struct, Value};

    pub struct Writer {
        pub out: Vec<u8>,
        proto: Protocol,
    }

    fn type_id(v: &Value, proto: Protocol) -> u8 {
        let (b, c) = match v {
            Value::Bool(_) => (2, 1),
            Value::Byte(_) => (3, 3),
            Value::I16(_) => (6, 4),
            Value::I32(_) => (8, 5),
            Value::I64(_) => (10, 6),
            Value::Double(_) => (4, 7),
            Value::Bin(_) => (11, 8),
            Value::Struct(_) => (12, 12),
            Value::List(_) => (15, 9),
            Value::Map(_) => (13, 11),
        };
        match proto {
            Protocol::Binary => b,
            Protocol::Compact => c,
        }
    }

    impl Writer {
        pub fn new(proto: Protocol) -> Self {
            Writer {
                out: Vec::new(),
                proto,
            }
        }

        fn varint(&mut self, mut v: u64) {
            while v >= 0x80 {
                self.out.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.out.push(v as u8);
        }

        fn int(&mut self, v: i64, width: usize) {
            match self.proto {
                Protocol::Binary => {
                    self.out.extend_from_slice(&v.to_be_bytes()[8 - width..]);
                }
                Protocol::Compact => self.varint(((v << 1) ^ (v >> 63)) as u64),
            }
        }

        fn size(&mut self, n: usize) {
            match self.proto {
                Protocol::Binary => self.out.extend_from_slice(&(n as i32).to_be_bytes()),
                Protocol::Compact => self.varint(n as u64),
            }
        }

        fn list_header(&mut self, elem: u8, n: usize) {
            match self.proto {
                Protocol::Binary => {
                    self.out.push(elem);
                    self.size(n);
                }
                Protocol::Compact if n < 15 => self.out.push(((n as u8) << 4) | elem),
                Protocol::Compact => {
                    self.out.push(0xf0 | elem);
                    self.varint(n as u64);
                }
            }
        }

        pub fn value(&mut self, v: &Value) {
            match v {
                // Binary writes 1/0; compact, in a container, 1/2 (its type ids).
                Value::Bool(b) => self.out.push(match (b, self.proto) {
                    (true, _) => 1,
                    (false, Protocol::Binary) => 0,
                    (false, Protocol::Compact) => 2,
                }),
                Value::Byte(b) => self.out.push(*b as u8),
                Value::I16(i) => self.int(i64::from(*i), 2),
                Value::I32(i) => self.int(i64::from(*i), 4),
                Value::I64(i) => self.int(*i, 8),
                Value::Double(d) => match self.proto {
                    Protocol::Binary => self.out.extend_from_slice(&d.to_be_bytes()),
                    Protocol::Compact => self.out.extend_from_slice(&d.to_le_bytes()),
                },
                Value::Bin(b) => {
                    self.size(b.len());
                    self.out.extend_from_slice(b);
                }
                Value::Struct(s) => self.strukt(s),
                Value::List(items) => {
                    let elem = items.first().map_or(12, |v| type_id(v, self.proto));
                    self.list_header(elem, items.len());
                    for i in items {
                        self.value(i);
                    }
                }
                Value::Map(items) => {
                    let (kt, vt) = items.first().map_or((11, 11), |(k, v)| {
                        (type_id(k, self.proto), type_id(v, self.proto))
                    });
                    match self.proto {
                        Protocol::Binary => {
                            self.out.push(kt);
                            self.out.push(vt);
                            self.size(items.len());
                        }
                        Protocol::Compact => {
                            self.varint(items.len() as u64);
                            if !items.is_empty() {
                                self.out.push((kt << 4) | vt);
                            }
                        }
                    }
                    for (k, v) in items {
                        self.value(k);
                        self.value(v);
                    }
                }
            }
        }

        pub fn strukt(&mut self, s: &Struct) {
            let mut last = 0i16;
            for (id, v) in &s.0 {
                match self.proto {
                    Protocol::Binary => {
                        self.out.push(type_id(v, self.proto));
                        self.out.extend_from_slice(&id.to_be_bytes());
                        self.value(v);
                    }
                    Protocol::Compact => {
                        let t = match v {
                            Value::Bool(true) => 1,
                            Value::Bool(false) => 2,
                            other => type_id(other, self.proto),
                        };
                        let delta = id.wrapping_sub(last);
                        if (1..=15).contains(&delta) {
                            self.out.push(((delta as u8) << 4) | t);
                        } else {
                            self.out.push(t);
                            self.int(i64::from(*id), 2);
                        }
                        last = *id;
                        if !matches!(v, Value::Bool(_)) {
                            self.value(v);
                        }
                    }
                }
            }
            self.out.push(0);
        }

        /// A message envelope (strict binary, or compact) and its argument struct.
        pub fn message(&mut self, name: &str, kind: u8, seq: i32, args: &Struct) {
            match self.proto {
                Protocol::Binary => {
                    self.out
                        .extend_from_slice(&(0x8001_0000u32 | u32::from(kind)).to_be_bytes());
                    self.size(name.len());
                    self.out.extend_from_slice(name.as_bytes());
                    self.out.extend_from_slice(&seq.to_be_bytes());
                }
                Protocol::Compact => {
                    self.out.push(0x82);
                    self.out.push((kind << 5) | 1);
                    self.varint(seq as u32 as u64);
                    self.size(name.len());
                    self.out.extend_from_slice(name.as_bytes());
                }
            }
            self.strukt(args);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::write::Writer;
    use super::*;

    fn sample() -> Struct {
        Struct(vec![
            (1, Value::Bin(b"name".to_vec())),
            (2, Value::I64(-1_234_567_890_123)),
            (3, Value::Bool(true)),
            (4, Value::Bool(false)),
            (5, Value::Double(1.5)),
            (
                6,
                Value::List(vec![
                    Value::Struct(Struct(vec![(1, Value::I32(7))])),
                    Value::Struct(Struct(vec![(1, Value::I32(-8))])),
                ]),
            ),
            (
                7,
                Value::Map(vec![(Value::Bin(b"k".to_vec()), Value::I16(300))]),
            ),
            // A jump in field ids (compact writes the long form).
            (40, Value::Byte(-3)),
            (20, Value::List((0..20).map(Value::I32).collect())),
        ])
    }

    #[test]
    fn both_protocols_read_what_they_wrote() {
        for proto in [Protocol::Binary, Protocol::Compact] {
            let mut w = Writer::new(proto);
            w.strukt(&sample());
            let (s, used) = read_struct(&w.out, proto).unwrap();
            assert_eq!(s, sample(), "{proto:?}");
            assert_eq!(used, w.out.len());
            assert_eq!(s.str(1).as_deref(), Some("name"));
            assert_eq!(s.int(2), Some(-1_234_567_890_123));
            assert_eq!(s.structs(6).count(), 2);

            let mut w = Writer::new(proto);
            w.message("emitBatch", 4, 9, &sample());
            let m = read_message(&w.out, proto).unwrap();
            assert_eq!((m.name.as_str(), m.kind, m.seq_id), ("emitBatch", 4, 9));
            assert_eq!(m.args, sample());
        }
    }

    #[test]
    fn known_bytes_of_each_protocol() {
        // Binary: field 1 i32 = 1, stop.
        let (s, _) = read_struct(&[8, 0, 1, 0, 0, 0, 1, 0], Protocol::Binary).unwrap();
        assert_eq!(s.int(1), Some(1));
        // Compact: field delta 1, type i32 (5), zigzag 2 = 1; field delta 1 bool true; stop.
        let (s, _) = read_struct(&[0x15, 0x02, 0x11, 0x00], Protocol::Compact).unwrap();
        assert_eq!((s.int(1), s.bool(2)), (Some(1), Some(true)));
        // Old-style (non-strict) binary message: name length, name, type, seq.
        let mut b = vec![0, 0, 0, 1, b'x', 4, 0, 0, 0, 5];
        b.push(0);
        let m = read_message(&b, Protocol::Binary).unwrap();
        assert_eq!((m.name.as_str(), m.kind, m.seq_id), ("x", 4, 5));
    }

    #[test]
    fn hostile_input_is_refused_without_allocating_for_it() {
        // A list claiming 2^31-1 structs in 6 bytes.
        let e = read_struct_list(&[12, 0x7f, 0xff, 0xff, 0xff, 0], Protocol::Binary).unwrap_err();
        assert!(matches!(e, ThriftError::TooLarge { .. }), "{e}");
        // A string claiming more bytes than there are.
        let e = read_struct(&[11, 0, 1, 0, 0, 1, 0, b'a'], Protocol::Binary).unwrap_err();
        assert!(matches!(e, ThriftError::TooLarge { .. }), "{e}");
        // Negative length.
        let e = read_struct(&[11, 0, 1, 0xff, 0xff, 0xff, 0xff], Protocol::Binary).unwrap_err();
        assert!(matches!(e, ThriftError::NegativeLength(..)), "{e}");
        // Nesting without end: struct in struct in struct...
        let deep: Vec<u8> = std::iter::repeat_n([12u8, 0, 1], 10_000)
            .flatten()
            .collect();
        assert_eq!(
            read_struct(&deep, Protocol::Binary).unwrap_err(),
            ThriftError::TooDeep
        );
        // Unknown type, truncation, an endless varint.
        assert!(matches!(
            read_struct(&[99, 0, 1], Protocol::Binary).unwrap_err(),
            ThriftError::UnknownType(99, _)
        ));
        assert!(matches!(
            read_struct(&[8, 0, 1, 0], Protocol::Binary).unwrap_err(),
            ThriftError::Truncated { .. }
        ));
        assert!(matches!(
            read_struct(
                &[
                    0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
                ],
                Protocol::Compact
            )
            .unwrap_err(),
            ThriftError::BadVarint(_)
        ));
        // Every prefix of a valid encoding fails cleanly.
        for proto in [Protocol::Binary, Protocol::Compact] {
            let mut w = Writer::new(proto);
            w.strukt(&sample());
            for n in 0..w.out.len() {
                assert!(
                    read_struct(&w.out[..n], proto).is_err(),
                    "{proto:?} prefix {n}"
                );
            }
        }
    }
}
