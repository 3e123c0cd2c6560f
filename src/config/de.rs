//! A serde `Deserializer` over the located tree, so that each component's typed `Config` is
//! deserialized with errors that carry the position and the key path of the offending value.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::node::{Key, Node, Pos, Value};

/// An error from deserializing a component's config: where, which key, what.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    pub pos: Option<Pos>,
    /// Key path from the component's root, innermost last.
    pub path: Vec<String>,
    pub msg: String,
}

impl DeError {
    pub fn path_string(&self) -> String {
        let mut out = String::new();
        for p in &self.path {
            if p.starts_with('[') || out.is_empty() {
                out.push_str(p);
            } else {
                out.push('.');
                out.push_str(p);
            }
        }
        out
    }

    fn located(mut self, pos: Pos) -> Self {
        if self.pos.is_none() {
            self.pos = Some(pos);
        }
        self
    }

    fn under(mut self, segment: String) -> Self {
        self.path.insert(0, segment);
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            pos: None,
            path: Vec::new(),
            msg: msg.to_string(),
        }
    }
}

/// Deserializes `T` from a node.
pub fn from_node<'a, T: de::Deserialize<'a>>(node: &'a Node) -> Result<T, DeError> {
    T::deserialize(node).map_err(|e| e.located(node.pos))
}

/// The field names of a struct type, as its `Deserialize` declares them.
pub fn struct_fields<T: de::DeserializeOwned>() -> &'static [&'static str] {
    struct Fields(std::cell::Cell<&'static [&'static str]>);
    impl<'de> de::Deserializer<'de> for &Fields {
        type Error = DeError;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, DeError> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, DeError> {
            self.0.set(fields);
            Err(de::Error::custom("fields read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let f = Fields(std::cell::Cell::new(&[]));
    let _ = T::deserialize(&f);
    f.0.get()
}

/// Deserializes a config whose keys are shared between two structs, as Go's `squash` does for
/// the Collector's embedded settings: the keys `C` declares go to `C`, the rest to `T`. Both
/// refuse unknown keys, and an unknown key is reported with its position and every key the two
/// accept.
pub fn from_node_flat<T: de::DeserializeOwned, C: de::DeserializeOwned>(
    node: &Node,
) -> Result<(T, C), DeError> {
    let shared = struct_fields::<C>();
    let Value::Map(entries) = &node.value else {
        return Ok((from_node(node)?, from_node(&Node::null(node.pos))?));
    };
    let (mut own, mut common) = (Vec::new(), Vec::new());
    for (k, v) in entries {
        if shared.contains(&k.name.as_str()) {
            common.push((k.clone(), v.clone()));
        } else {
            own.push((k.clone(), v.clone()));
        }
    }
    let part = |entries| Node {
        value: Value::Map(entries),
        pos: node.pos,
    };
    let t = from_node::<T>(&part(own)).map_err(|mut e| {
        if e.path.len() == 1 && e.msg.starts_with("unknown field") {
            let all: Vec<String> = struct_fields::<T>()
                .iter()
                .chain(shared)
                .map(|f| format!("`{f}`"))
                .collect();
            e.msg = format!(
                "unknown field `{}`, expected one of {}",
                e.path[0],
                all.join(", ")
            );
        }
        e
    })?;
    Ok((t, from_node::<C>(&part(common))?))
}

fn invalid_type(node: &Node, exp: &dyn de::Expected) -> DeError {
    let unexp = match &node.value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Int(i) => de::Unexpected::Signed(*i),
        Value::Float(f) => de::Unexpected::Float(*f),
        Value::Str(s) => de::Unexpected::Str(s),
        Value::Seq(_) => de::Unexpected::Seq,
        Value::Map(_) => de::Unexpected::Map,
    };
    <DeError as de::Error>::invalid_type(unexp, exp).located(node.pos)
}

macro_rules! deserialize_number {
    ($($method:ident => $visit:ident : $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            match &self.value {
                Value::Int(i) => match <$ty>::try_from(*i) {
                    Ok(v) => visitor.$visit(v),
                    Err(_) => Err(DeError {
                        pos: Some(self.pos),
                        path: vec![],
                        msg: format!("{i} is out of range for this key"),
                    }),
                },
                // Values that came through `${env:...}` arrive as text; accept a number written
                // as text, as the Collector's config loader does.
                Value::Str(s) => match s.trim().parse::<$ty>() {
                    Ok(v) => visitor.$visit(v),
                    Err(_) => Err(invalid_type(self, &visitor)),
                },
                _ => Err(invalid_type(self, &visitor)),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &'de Node {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqAccess {
                items: items.iter(),
                index: 0,
            }),
            Value::Map(entries) => visitor.visit_map(MapAccess {
                entries: entries.iter(),
                value: None,
            }),
        }
        .map_err(|e| e.located(self.pos))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.value {
            Value::Bool(b) => visitor.visit_bool(*b),
            // A bool field takes YAML 1.1 spellings too, as the Collector's YAML library does.
            Value::Str(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "y" | "on" => visitor.visit_bool(true),
                "false" | "no" | "n" | "off" => visitor.visit_bool(false),
                _ => Err(invalid_type(self, &visitor)),
            },
            _ => Err(invalid_type(self, &visitor)),
        }
    }

    deserialize_number! {
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.value {
            Value::Int(i) => visitor.visit_f64(*i as f64),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => match s.trim().parse::<f64>() {
                Ok(v) => visitor.visit_f64(v),
                Err(_) => Err(invalid_type(self, &visitor)),
            },
            _ => Err(invalid_type(self, &visitor)),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.value {
            Value::Str(s) => visitor.visit_borrowed_str(s),
            // A scalar where text is expected is taken as its text (`port: 8888` into a string).
            Value::Int(i) => visitor.visit_string(i.to_string()),
            Value::Float(f) => visitor.visit_string(f.to_string()),
            Value::Bool(b) => visitor.visit_string(b.to_string()),
            _ => Err(invalid_type(self, &visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.value {
            Value::Null => visitor.visit_unit(),
            _ => Err(invalid_type(self, &visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.value {
            Value::Seq(items) => visitor.visit_seq(SeqAccess {
                items: items.iter(),
                index: 0,
            }),
            Value::Null => visitor.visit_seq(SeqAccess {
                items: [].iter(),
                index: 0,
            }),
            _ => Err(invalid_type(self, &visitor)),
        }
        .map_err(|e| e.located(self.pos))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.value {
            Value::Map(entries) => visitor.visit_map(MapAccess {
                entries: entries.iter(),
                value: None,
            }),
            // `grpc:` with no value means "present, all defaults".
            Value::Null => visitor.visit_map(MapAccess {
                entries: [].iter(),
                value: None,
            }),
            _ => Err(invalid_type(self, &visitor)),
        }
        .map_err(|e| e.located(self.pos))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.value {
            Value::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Value::Map(entries) if entries.len() == 1 => {
                let (k, v) = &entries[0];
                visitor
                    .visit_enum(EnumAccess { key: k, value: v })
                    .map_err(|e| e.located(k.pos).under(k.name.clone()))
            }
            _ => Err(invalid_type(self, &visitor)),
        }
        .map_err(|e| e.located(self.pos))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqAccess<'a> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let i = self.index;
        self.index += 1;
        seed.deserialize(node)
            .map(Some)
            .map_err(|e| e.located(node.pos).under(format!("[{i}]")))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAccess<'a> {
    entries: std::slice::Iter<'a, (Key, Node)>,
    value: Option<(&'a Key, &'a Node)>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, node)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some((key, node));
        let de: de::value::BorrowedStrDeserializer<'de, DeError> =
            de::value::BorrowedStrDeserializer::new(&key.name);
        // An unknown key is reported here: point at the key itself.
        seed.deserialize(de)
            .map(Some)
            .map_err(|e| e.located(key.pos).under(key.name.clone()))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (key, node) = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value without key"))?;
        seed.deserialize(node)
            .map_err(|e| e.located(node.pos).under(key.name.clone()))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct EnumAccess<'a> {
    key: &'a Key,
    value: &'a Node,
}

impl<'de> de::EnumAccess<'de> for EnumAccess<'de> {
    type Error = DeError;
    type Variant = VariantAccess<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), DeError> {
        let de: de::value::BorrowedStrDeserializer<'de, DeError> =
            de::value::BorrowedStrDeserializer::new(&self.key.name);
        let v = seed.deserialize(de)?;
        Ok((v, VariantAccess { value: self.value }))
    }
}

struct VariantAccess<'a> {
    value: &'a Node,
}

impl<'de> de::VariantAccess<'de> for VariantAccess<'de> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        if self.value.is_null() {
            Ok(())
        } else {
            Err(invalid_type(self.value, &"no value"))
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self.value)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(self.value, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_map(self.value, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::parse;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        queue_size: u64,
        name: String,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(default)]
        inner: Inner,
        list: Vec<Inner>,
    }

    #[test]
    fn unknown_key_points_at_the_key_with_its_path() {
        let n = parse("inner:\n  queue_size: 5\n  qeue_size: 6\nlist: []\n").unwrap();
        let e = from_node::<Outer>(&n).unwrap_err();
        assert_eq!(e.pos, Some(Pos::at(3, 3)));
        assert_eq!(e.path_string(), "inner.qeue_size");
        assert!(e.msg.contains("unknown field `qeue_size`"), "{}", e.msg);
    }

    #[test]
    fn flattened_settings_take_their_keys_and_unknown_keys_name_both_sets() {
        #[derive(serde::Deserialize, Debug, Default)]
        #[serde(deny_unknown_fields, default)]
        struct Own {
            endpoint: String,
        }
        #[derive(serde::Deserialize, Debug, Default)]
        #[serde(deny_unknown_fields, default)]
        struct Shared {
            timeout: u64,
        }
        assert_eq!(struct_fields::<Own>(), &["endpoint"]);
        let n = parse("endpoint: x\ntimeout: 3\n").unwrap();
        let (o, s) = from_node_flat::<Own, Shared>(&n).unwrap();
        assert_eq!((o.endpoint.as_str(), s.timeout), ("x", 3));
        let n = parse("endpoint: x\ntimeuot: 3\n").unwrap();
        let e = from_node_flat::<Own, Shared>(&n).unwrap_err();
        assert_eq!(e.pos, Some(Pos::at(2, 1)));
        assert_eq!(
            e.msg,
            "unknown field `timeuot`, expected one of `endpoint`, `timeout`"
        );
        let n = parse("endpoint: x\ntimeout: soon\n").unwrap();
        let e = from_node_flat::<Own, Shared>(&n).unwrap_err();
        assert_eq!(
            (e.path_string().as_str(), e.pos.unwrap().line),
            ("timeout", 2)
        );
    }

    #[test]
    fn wrong_type_points_at_the_value_inside_a_list() {
        let n = parse("list:\n  - queue_size: 1\n  - queue_size: lots\n").unwrap();
        let e = from_node::<Outer>(&n).unwrap_err();
        assert_eq!(e.pos, Some(Pos::at(3, 17)));
        assert_eq!(e.path_string(), "list[1].queue_size");
        assert!(e.msg.contains("invalid type: string \"lots\""), "{}", e.msg);
    }

    #[test]
    fn null_is_an_empty_struct_and_numbers_from_text_are_accepted() {
        let n = parse("inner:\nlist:\n  - queue_size: '12'\n    name: 7\n").unwrap();
        let o = from_node::<Outer>(&n).unwrap();
        assert_eq!(o.inner.queue_size, 0);
        assert_eq!(o.list[0].queue_size, 12);
        assert_eq!(o.list[0].name, "7");
    }
}
