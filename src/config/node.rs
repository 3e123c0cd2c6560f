//! A YAML document as a tree that remembers where every value came from.
//!
//! serde-saphyr parses the text; its `Spanned` wrapper gives each node its line and column. Keeping
//! the located tree (rather than deserializing straight into typed structs) lets us expand
//! environment variables, resolve component ids and report every error with `file:line:column`
//! and the key path before any component sees its config.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// 1-based position in a config source. `source` indexes the sources read for one config
/// (`--config` files, `env:` and `yaml:` values, `--set` flags), so an error in a merged config
/// names the one it came from; see [`crate::config::Errors`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
    pub source: u16,
}

impl Pos {
    pub fn at(line: u64, column: u64) -> Self {
        Pos {
            line,
            column,
            source: 0,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep their own position so that "unknown key" errors point at the key.
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

impl Node {
    pub fn null(pos: Pos) -> Self {
        Node {
            value: Value::Null,
            pos,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// Entries of a mapping; `None` for anything else. A null node is an empty mapping, because
    /// the Collector treats `grpc:` (no value) as "enabled with defaults".
    pub fn entries(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            Value::Null => Some(&[]),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Equal values, wherever they are written: a reload keeps a component whose config reads
    /// the same even if lines moved.
    pub fn same_value(&self, other: &Node) -> bool {
        match (&self.value, &other.value) {
            (Value::Seq(a), Value::Seq(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_value(y))
            }
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((ka, va), (kb, vb))| ka.name == kb.name && va.same_value(vb))
            }
            (a, b) => a == b,
        }
    }

    /// Marks every position in the tree as coming from source `source`.
    pub fn set_source(&mut self, source: u16) {
        self.pos.source = source;
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.set_source(source)),
            Value::Map(entries) => entries.iter_mut().for_each(|(k, n)| {
                k.pos.source = source;
                n.set_source(source);
            }),
            _ => {}
        }
    }

    /// Moves every position in the tree to `pos`: a subtree read from a `${file:...}`
    /// reference is reported where the reference is written.
    pub fn relocate(&mut self, pos: Pos) {
        self.pos = pos;
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.relocate(pos)),
            Value::Map(entries) => entries.iter_mut().for_each(|(k, n)| {
                k.pos = pos;
                n.relocate(pos);
            }),
            _ => {}
        }
    }

    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

fn pos_of(loc: &serde_saphyr::Location) -> Pos {
    Pos::at(loc.line(), loc.column())
}

/// The node without its position, as serde-saphyr hands it to us; wrapped in `Spanned` below.
struct RawValue(Value);

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor).map(RawValue)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<RawValue>::deserialize(d)?;
        Ok(Node {
            value: s.value.0,
            pos: pos_of(&s.referenced),
        })
    }
}

/// A mapping key: any scalar, kept as text (YAML allows `200: x`; the Collector reads it as "200").
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_owned())
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
                Ok(v)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_unit<E: de::Error>(self) -> Result<String, E> {
                Ok(String::new())
            }
        }
        d.deserialize_any(V).map(KeyText)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(RawVisitor)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(Value::Int(i)),
            Err(_) => Ok(Value::Float(v as f64)),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            out.push(n);
        }
        Ok(Value::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out: Vec<(Key, Node)> = Vec::new();
        // Where each key is, to find duplicates in constant time: a linear search made a
        // mapping of 100,000 keys take 21 s to read.
        let mut index: std::collections::HashMap<String, usize> = Default::default();
        while let Some(k) = map.next_key::<Spanned<KeyText>>()? {
            let v = map.next_value::<Node>()?;
            let key = Key {
                name: k.value.0,
                pos: pos_of(&k.referenced),
            };
            // A later duplicate replaces the earlier one, as YAML merge keys require.
            match index.get(&key.name) {
                Some(&i) => out[i] = (key, v),
                None => {
                    index.insert(key.name.clone(), out.len());
                    out.push((key, v));
                }
            }
        }
        Ok(Value::Map(out))
    }
}

/// Parses YAML text into a located tree. A leading UTF-8 byte-order mark is ignored, and an empty
/// document is an empty mapping.
pub fn parse(text: &str) -> Result<Node, (Pos, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(Node::null(Pos::at(1, 1)));
    }
    // YAML 1.2 booleans, as the Collector's YAML library reads untyped values: `yes`, `on`,
    // `y` stay text (a bool field still takes them, see `de.rs`).
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|e| {
        let pos = e.location().map(|l| pos_of(&l)).unwrap_or_default();
        // The crate's Display repeats the location and a snippet; keep the first line only.
        let msg = e.to_string();
        let first = msg.lines().next().unwrap_or("invalid YAML").to_owned();
        (pos, first)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yaml_1_2_booleans_are_booleans() {
        let n = parse("a: n\nb: yes\nc: Off\nd: true\ne: False\n").unwrap();
        let v: Vec<Value> = n
            .entries()
            .unwrap()
            .iter()
            .map(|(_, v)| v.value.clone())
            .collect();
        assert_eq!(
            v,
            vec![
                Value::Str("n".into()),
                Value::Str("yes".into()),
                Value::Str("Off".into()),
                Value::Bool(true),
                Value::Bool(false)
            ]
        );
    }

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let n = parse("a:\n  b: 5\n  c: [x, 2]\nd:\n").unwrap();
        let a = n.get("a").unwrap();
        assert_eq!(a.pos.line, 2);
        let (k, b) = &a.entries().unwrap()[0];
        assert_eq!((k.name.as_str(), k.pos.line, k.pos.column), ("b", 2, 3));
        assert_eq!(b.value, Value::Int(5));
        assert_eq!((b.pos.line, b.pos.column), (2, 6));
        assert!(n.get("d").unwrap().is_null());
    }

    #[test]
    fn bom_and_missing_final_newline_are_fine() {
        let n = parse("\u{feff}receivers:\n  otlp: {}").unwrap();
        assert!(n.get("receivers").unwrap().get("otlp").is_some());
    }

    #[test]
    fn a_large_mapping_is_read_in_linear_time() {
        let n = 100_000;
        let text: String = (0..n).map(|i| format!("k{i}: {i}\n")).collect();
        let t0 = std::time::Instant::now();
        let node = parse(&text).unwrap();
        let e = node.entries().unwrap();
        assert_eq!(e.len(), n);
        assert_eq!(e[5].1.value, Value::Int(5));
        // Merge keys: a key written after `<<` replaces the merged one.
        let merged = parse("a: &x {k: 1, j: 2}\nb:\n  <<: *x\n  k: 3\n").unwrap();
        let b = merged.get("b").unwrap();
        assert_eq!(b.get("k").unwrap().value, Value::Int(3));
        assert_eq!(b.get("j").unwrap().value, Value::Int(2));
        // Linear is well under a second here even in a debug build; quadratic took 21 s.
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn syntax_error_has_a_position() {
        let (pos, msg) = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(pos.line >= 1, "{msg}");
    }
}
