//! MessagePack, read into a generic tree of values: what the Fluent Forward protocol carries.
//! Bounded like [`crate::thrift`]: a container's declared length is checked against the bytes
//! left before anything is reserved (every element takes at least one byte), and nesting is
//! limited to [`MAX_DEPTH`]. A writer (for acknowledgements and tests) is in [`write`].

use thiserror::Error;

pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Error, PartialEq)]
pub enum MsgpackError {
    /// Not an error of the value: more bytes are needed (a stream reader waits for them).
    #[error("truncated at offset {0}")]
    Truncated(usize),
    #[error("a container of {size} elements at offset {at} is larger than the {left} bytes left")]
    TooLarge { at: usize, size: u64, left: usize },
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("byte {0:#04x} at offset {1} is not MessagePack (0xc1 is never used)")]
    Reserved(u8, usize),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    /// Above `i64::MAX`.
    Uint(u64),
    Float(f64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Ext(i8, Vec<u8>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A map member by string key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(m) => m
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgpackError> {
        if n > self.buf.len() - self.pos {
            return Err(MsgpackError::Truncated(self.pos));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], MsgpackError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn len(&mut self, bytes: usize) -> Result<usize, MsgpackError> {
        Ok(match bytes {
            1 => usize::from(self.take(1)?[0]),
            2 => usize::from(u16::from_be_bytes(self.be()?)),
            _ => u32::from_be_bytes(self.be()?) as usize,
        })
    }

    /// A container length: no more than the bytes left (each element takes at least one).
    fn count(&self, n: usize, at: usize) -> Result<usize, MsgpackError> {
        let left = self.buf.len() - self.pos;
        if n > left {
            // A stream reader cannot tell a long container from a truncated one: it is only
            // too large if it could never fit the limit the caller gave the whole buffer.
            return Err(MsgpackError::TooLarge {
                at,
                size: n as u64,
                left,
            });
        }
        Ok(n)
    }

    fn value(&mut self, depth: usize) -> Result<Value, MsgpackError> {
        if depth > MAX_DEPTH {
            return Err(MsgpackError::TooDeep);
        }
        let at = self.pos;
        let b = self.take(1)?[0];
        Ok(match b {
            0x00..=0x7f => Value::Int(i64::from(b)),
            0x80..=0x8f => self.map(usize::from(b & 0x0f), at, depth)?,
            0x90..=0x9f => self.array(usize::from(b & 0x0f), at, depth)?,
            0xa0..=0xbf => self.str(usize::from(b & 0x1f))?,
            0xc0 => Value::Nil,
            0xc1 => return Err(MsgpackError::Reserved(b, at)),
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                let n = self.len(1 << (b - 0xc4))?;
                Value::Bin(self.take(n)?.to_vec())
            }
            0xc7..=0xc9 => {
                let n = self.len(1 << (b - 0xc7))?;
                let t = self.take(1)?[0] as i8;
                Value::Ext(t, self.take(n)?.to_vec())
            }
            0xca => Value::Float(f64::from(f32::from_be_bytes(self.be()?))),
            0xcb => Value::Float(f64::from_be_bytes(self.be()?)),
            0xcc => Value::Int(i64::from(self.take(1)?[0])),
            0xcd => Value::Int(i64::from(u16::from_be_bytes(self.be()?))),
            0xce => Value::Int(i64::from(u32::from_be_bytes(self.be()?))),
            0xcf => {
                let v = u64::from_be_bytes(self.be()?);
                i64::try_from(v).map_or(Value::Uint(v), Value::Int)
            }
            0xd0 => Value::Int(i64::from(self.take(1)?[0] as i8)),
            0xd1 => Value::Int(i64::from(i16::from_be_bytes(self.be()?))),
            0xd2 => Value::Int(i64::from(i32::from_be_bytes(self.be()?))),
            0xd3 => Value::Int(i64::from_be_bytes(self.be()?)),
            0xd4..=0xd8 => {
                let t = self.take(1)?[0] as i8;
                Value::Ext(t, self.take(1 << (b - 0xd4))?.to_vec())
            }
            0xd9..=0xdb => {
                let n = self.len(1 << (b - 0xd9))?;
                self.str(n)?
            }
            0xdc | 0xdd => {
                let n = self.len(if b == 0xdc { 2 } else { 4 })?;
                self.array(n, at, depth)?
            }
            0xde | 0xdf => {
                let n = self.len(if b == 0xde { 2 } else { 4 })?;
                self.map(n, at, depth)?
            }
            0xe0..=0xff => Value::Int(i64::from(b as i8)),
        })
    }

    fn str(&mut self, n: usize) -> Result<Value, MsgpackError> {
        Ok(Value::Str(
            String::from_utf8_lossy(self.take(n)?).into_owned(),
        ))
    }

    fn array(&mut self, n: usize, at: usize, depth: usize) -> Result<Value, MsgpackError> {
        let n = self.count(n, at)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(v))
    }

    fn map(&mut self, n: usize, at: usize, depth: usize) -> Result<Value, MsgpackError> {
        // Two elements a pair.
        let n = self.count(n.saturating_mul(2), at)? / 2;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.value(depth + 1)?;
            let val = self.value(depth + 1)?;
            v.push((k, val));
        }
        Ok(Value::Map(v))
    }
}

/// One value from the start of `buf`, and the bytes it took. [`MsgpackError::Truncated`] and
/// [`MsgpackError::TooLarge`] both may mean the value is not all there yet.
pub fn read(buf: &[u8]) -> Result<(Value, usize), MsgpackError> {
    let mut r = Reader { buf, pos: 0 };
    let v = r.value(0)?;
    Ok((v, r.pos))
}

/// Every value of a concatenated stream (Fluent's PackedForward entries).
pub fn read_all(buf: &[u8]) -> Result<Vec<Value>, MsgpackError> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let (v, n) = read(rest)?;
        out.push(v);
        rest = &rest[n..];
    }
    Ok(out)
}

/// Finds where one value ends in a stream that arrives in pieces, without building it and
/// without scanning any byte twice: it resumes where the last piece ended (a value whose header
/// or payload is not all there is looked at again from its start, which for strings and
/// binaries is only their header). Containers are counted, not allocated, so a header claiming
/// 2^32 elements costs nothing until they arrive.
#[derive(Debug, Default)]
pub struct Scanner {
    /// Offset of the next item, from the value's start.
    pos: usize,
    /// Items still to come in each open container, innermost last.
    open: Vec<u64>,
}

impl Scanner {
    /// `buf` holds the value from its first byte; returns its length once it is complete.
    pub fn advance(&mut self, buf: &[u8]) -> Result<Option<usize>, MsgpackError> {
        loop {
            let Some(&b) = buf.get(self.pos) else {
                return Ok(None);
            };
            let rest = &buf[self.pos + 1..];
            let be = |n: usize| -> Option<u64> {
                rest.get(..n)
                    .map(|x| x.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)))
            };
            // (bytes of this item including its payload, elements it opens)
            let (size, opens): (Option<u64>, u64) = match b {
                0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (Some(1), 0),
                0x80..=0x8f => (Some(1), 2 * u64::from(b & 0x0f)),
                0x90..=0x9f => (Some(1), u64::from(b & 0x0f)),
                0xa0..=0xbf => (Some(1 + u64::from(b & 0x1f)), 0),
                0xc1 => return Err(MsgpackError::Reserved(b, self.pos)),
                0xc4..=0xc6 => {
                    let w = 1usize << (b - 0xc4);
                    (be(w).map(|n| 1 + w as u64 + n), 0)
                }
                0xc7..=0xc9 => {
                    let w = 1usize << (b - 0xc7);
                    (be(w).map(|n| 2 + w as u64 + n), 0)
                }
                0xca => (Some(5), 0),
                0xcb => (Some(9), 0),
                0xcc..=0xcf => (Some(1 + (1u64 << (b - 0xcc))), 0),
                0xd0..=0xd3 => (Some(1 + (1u64 << (b - 0xd0))), 0),
                0xd4..=0xd8 => (Some(2 + (1u64 << (b - 0xd4))), 0),
                0xd9..=0xdb => {
                    let w = 1usize << (b - 0xd9);
                    (be(w).map(|n| 1 + w as u64 + n), 0)
                }
                0xdc | 0xde => (
                    Some(3),
                    be(2).map_or(u64::MAX, |n| n * if b == 0xde { 2 } else { 1 }),
                ),
                0xdd | 0xdf => (
                    Some(5),
                    be(4).map_or(u64::MAX, |n| n * if b == 0xdf { 2 } else { 1 }),
                ),
            };
            let Some(size) = size else {
                return Ok(None);
            };
            if opens == u64::MAX || (self.pos as u64).saturating_add(size) > buf.len() as u64 {
                return Ok(None);
            }
            self.pos += size as usize;
            if opens > 0 {
                if self.open.len() >= MAX_DEPTH {
                    return Err(MsgpackError::TooDeep);
                }
                self.open.push(opens);
                continue;
            }
            // One item done: it fills a slot of its container, which may be done in turn.
            loop {
                match self.open.last_mut() {
                    None => return Ok(Some(self.pos)),
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.open.pop();
                    }
                }
            }
        }
    }
}

/// Writing: acknowledgements, and the tests' inputs.
pub mod write {
    use super::Value;

    pub fn value(out: &mut Vec<u8>, v: &Value) {
        match v {
            Value::Nil => out.push(0xc0),
            Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
            Value::Int(i) => {
                out.push(0xd3);
                out.extend_from_slice(&i.to_be_bytes());
            }
            Value::Uint(u) => {
                out.push(0xcf);
                out.extend_from_slice(&u.to_be_bytes());
            }
            Value::Float(f) => {
                out.push(0xcb);
                out.extend_from_slice(&f.to_be_bytes());
            }
            Value::Str(s) => {
                out.push(0xdb);
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Value::Bin(b) => {
                out.push(0xc6);
                out.extend_from_slice(&(b.len() as u32).to_be_bytes());
                out.extend_from_slice(b);
            }
            Value::Array(a) => {
                out.push(0xdd);
                out.extend_from_slice(&(a.len() as u32).to_be_bytes());
                for x in a {
                    value(out, x);
                }
            }
            Value::Map(m) => {
                out.push(0xdf);
                out.extend_from_slice(&(m.len() as u32).to_be_bytes());
                for (k, x) in m {
                    value(out, k);
                    value(out, x);
                }
            }
            Value::Ext(t, d) => {
                out.push(0xc9);
                out.extend_from_slice(&(d.len() as u32).to_be_bytes());
                out.push(*t as u8);
                out.extend_from_slice(d);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_spec_forms() {
        // fixmap {"a": 1, "b": [true, nil, -1]} in the short forms.
        let b = [0x82, 0xa1, b'a', 0x01, 0xa1, b'b', 0x93, 0xc3, 0xc0, 0xff];
        let (v, n) = read(&b).unwrap();
        assert_eq!(n, b.len());
        assert_eq!(v.get("a"), Some(&Value::Int(1)));
        assert_eq!(
            v.get("b"),
            Some(&Value::Array(vec![
                Value::Bool(true),
                Value::Nil,
                Value::Int(-1)
            ]))
        );
        // fixext8 type 0 (Fluent's EventTime), float32, uint64 above i64, str8, bin8.
        let b = [0xd7, 0x00, 0, 0, 0, 1, 0, 0, 0, 2];
        assert_eq!(
            read(&b).unwrap().0,
            Value::Ext(0, vec![0, 0, 0, 1, 0, 0, 0, 2])
        );
        assert_eq!(
            read(&[0xca, 0x3f, 0xc0, 0, 0]).unwrap().0,
            Value::Float(1.5)
        );
        assert_eq!(
            read(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
                .unwrap()
                .0,
            Value::Uint(u64::MAX)
        );
        assert_eq!(
            read(&[0xd9, 2, b'h', b'i']).unwrap().0,
            Value::Str("hi".into())
        );
        assert_eq!(read(&[0xc4, 1, 7]).unwrap().0, Value::Bin(vec![7]));
    }

    #[test]
    fn round_trips_and_streams() {
        let v = Value::Array(vec![
            Value::Str("tag".into()),
            Value::Map(vec![(Value::Str("k".into()), Value::Float(0.5))]),
            Value::Ext(0, vec![1; 8]),
            Value::Bin(vec![1, 2]),
            Value::Int(-300),
        ]);
        let mut b = Vec::new();
        write::value(&mut b, &v);
        write::value(&mut b, &Value::Nil);
        assert_eq!(read_all(&b).unwrap(), vec![v, Value::Nil]);
    }

    #[test]
    fn the_scanner_finds_each_end_however_the_bytes_arrive() {
        let v = Value::Array(vec![
            Value::Str("tag".into()),
            Value::Array(vec![
                Value::Array(vec![
                    Value::Ext(0, vec![0; 8]),
                    Value::Map(vec![(Value::Str("k".into()), Value::Bin(vec![9; 300]))]),
                ]),
                Value::Array(vec![Value::Int(1), Value::Map(vec![])]),
            ]),
            Value::Map(vec![(Value::Str("chunk".into()), Value::Str("c".into()))]),
        ]);
        let mut one = Vec::new();
        write::value(&mut one, &v);
        // Short forms too: fixarray, fixmap, fixstr, positive fixint.
        one.extend_from_slice(&[0x92, 0xa1, b'x', 0x81, 0x01, 0x02]);
        let first = one.len() - 6;
        for piece in [1, 3, 7, 64, one.len()] {
            let mut sc = Scanner::default();
            let mut got = None;
            let mut fed = 0;
            while got.is_none() && fed < one.len() {
                fed = (fed + piece).min(one.len());
                got = sc.advance(&one[..fed]).unwrap();
            }
            assert_eq!(got, Some(first), "pieces of {piece}");
            let mut sc = Scanner::default();
            assert_eq!(sc.advance(&one[first..]).unwrap(), Some(6));
        }
        // A header claiming 2^32 - 1 elements waits without allocating; 0xc1 is refused.
        assert_eq!(
            Scanner::default()
                .advance(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0])
                .unwrap(),
            None
        );
        assert!(Scanner::default().advance(&[0x91, 0xc1]).is_err());
        assert_eq!(
            Scanner::default().advance(&[0x91; 100]).unwrap_err(),
            MsgpackError::TooDeep
        );
    }

    #[test]
    fn hostile_input_is_refused_without_allocating_for_it() {
        // An array claiming 2^32-1 elements in 5 bytes.
        assert!(matches!(
            read(&[0xdd, 0xff, 0xff, 0xff, 0xff]).unwrap_err(),
            MsgpackError::TooLarge { .. }
        ));
        assert!(matches!(
            read(&[0xdf, 0xff, 0xff, 0xff, 0xff]).unwrap_err(),
            MsgpackError::TooLarge { .. }
        ));
        assert_eq!(
            read(&[0xdb, 0, 0, 1, 0, b'x']).unwrap_err(),
            MsgpackError::Truncated(5)
        );
        let deep = vec![0x91u8; 10_000];
        assert_eq!(read(&deep).unwrap_err(), MsgpackError::TooDeep);
        assert!(matches!(
            read(&[0xc1]).unwrap_err(),
            MsgpackError::Reserved(0xc1, 0)
        ));
        let mut b = Vec::new();
        write::value(
            &mut b,
            &Value::Map(vec![(Value::Str("k".into()), Value::Bin(vec![0; 40]))]),
        );
        for n in 0..b.len() {
            assert!(read(&b[..n]).is_err(), "prefix {n}");
        }
    }
}
