//! Attributes and values: lookup, typed access, and the one text and JSON rendering of an
//! `AnyValue` that every component uses.
//!
//! The rendering follows the OpenTelemetry specification's mapping of `AnyValue` to non-OTLP
//! formats ("Attribute" page, as the Collector's `pcommon.Value.AsString()` does it): strings
//! as they are; booleans `true`/`false`; integers in decimal; doubles in the shortest form that
//! reads back the same (`1`, `1.5`); bytes as standard base64; arrays and maps as their JSON
//! text; an empty value as the empty string. Zipkin tags, Loki labels and structured metadata,
//! Prometheus label values, Jaeger's array and map tags and the OTTL/filter string views all
//! use it. The `debug` exporter's display is for people and marks types (quoted strings,
//! `<empty>`), but renders bytes the same way.

use std::borrow::Cow;

use base64::Engine;
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

/// A string attribute.
pub fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(V::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// Attribute `key` (the first, as the Collector's `pcommon.Map.Get`).
#[inline]
pub fn find_kv<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attrs.iter().find(|kv| kv.key == key)
}

/// The value of attribute `key`, if present and set.
#[inline]
pub fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    find_kv(attrs, key).and_then(|kv| kv.value.as_ref())
}

/// The inner value of attribute `key`, if present and set.
#[inline]
pub fn find_value<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a V> {
    find(attrs, key).and_then(|v| v.value.as_ref())
}

/// Attribute `key` when it is a string.
#[inline]
pub fn find_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match find_value(attrs, key)? {
        V::StringValue(s) => Some(s),
        _ => None,
    }
}

/// Attribute `key` when it is an integer, or a string holding one.
#[inline]
pub fn find_int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match find_value(attrs, key)? {
        V::IntValue(i) => Some(*i),
        V::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

/// The index of attribute `key`.
pub fn position(attrs: &[KeyValue], key: &str) -> Option<usize> {
    attrs.iter().position(|kv| kv.key == key)
}

/// Bytes as text: standard base64, as the specification's non-OTLP mapping says.
pub fn bytes_text(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A value as text (see the module's rule).
#[inline]
pub fn text(v: &AnyValue) -> Cow<'_, str> {
    match &v.value {
        None => Cow::Borrowed(""),
        Some(V::StringValue(s)) => Cow::Borrowed(s),
        Some(V::BoolValue(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Some(V::IntValue(i)) => Cow::Owned(i.to_string()),
        Some(V::DoubleValue(d)) => Cow::Owned(d.to_string()),
        Some(V::BytesValue(b)) => Cow::Owned(bytes_text(b)),
        Some(V::StringValueStrindex(i)) => Cow::Owned(i.to_string()),
        Some(V::ArrayValue(_) | V::KvlistValue(_)) => Cow::Owned(to_json(v).to_string()),
    }
}

/// An optional value as text; unset is the empty string.
#[inline]
pub fn option_text(v: &Option<AnyValue>) -> Cow<'_, str> {
    v.as_ref().map_or(Cow::Borrowed(""), text)
}

/// An attribute set as bytes that are equal exactly when the sets are (key order does not
/// matter): a routing or series key.
pub fn attrs_key(attrs: &[KeyValue], out: &mut Vec<u8>) {
    let mut pairs: Vec<(&str, Cow<'_, str>)> = attrs
        .iter()
        .map(|kv| (kv.key.as_str(), option_text(&kv.value)))
        .collect();
    pairs.sort();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(1);
    }
}

/// A value as JSON: arrays and maps as JSON arrays and objects, bytes as base64, a double that
/// JSON cannot hold (NaN, infinities) as null.
pub fn to_json(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value;
    match &v.value {
        None => Value::Null,
        Some(V::StringValue(s)) => Value::String(s.clone()),
        Some(V::BoolValue(b)) => Value::Bool(*b),
        Some(V::IntValue(i)) => Value::from(*i),
        Some(V::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number)
        }
        Some(V::BytesValue(b)) => Value::String(bytes_text(b)),
        Some(V::ArrayValue(a)) => Value::Array(a.values.iter().map(to_json).collect()),
        Some(V::KvlistValue(kv)) => Value::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(Value::Null, to_json),
                    )
                })
                .collect(),
        ),
        Some(V::StringValueStrindex(i)) => Value::from(*i),
    }
}

/// JSON as a value: objects as maps (keys sorted, as serde_json holds them), arrays as arrays, integers that fit
/// an i64 as ints and other numbers as doubles, null as an empty value.
pub fn from_json(v: serde_json::Value) -> AnyValue {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use serde_json::Value;
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(V::BoolValue(b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => V::IntValue(i),
            None => V::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Value::String(s) => Some(V::StringValue(s)),
        Value::Array(a) => Some(V::ArrayValue(ArrayValue {
            values: a.into_iter().map(from_json).collect(),
        })),
        Value::Object(o) => Some(V::KvlistValue(KeyValueList {
            values: o
                .into_iter()
                .map(|(key, v)| KeyValue {
                    key,
                    value: Some(from_json(v)),
                    ..Default::default()
                })
                .collect(),
        })),
    };
    AnyValue { value }
}

/// A Prometheus-style label name from an attribute key, the one rule for every exporter that
/// writes labels (remote-write, Loki; the OTel "Prometheus and OpenMetrics compatibility"
/// specification; Loki takes Prometheus' label names): every character outside `[a-zA-Z0-9_]`
/// becomes `_`, and a name that would start with a digit (or is empty) gets the prefix `key_`.
pub fn label_name(s: &str) -> Cow<'_, str> {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let leading_digit = s.starts_with(|c: char| c.is_ascii_digit());
    if !s.is_empty() && s.chars().all(valid) && !leading_digit {
        return Cow::Borrowed(s);
    }
    let out: String = s.chars().map(|c| if valid(c) { c } else { '_' }).collect();
    Cow::Owned(if leading_digit || out.is_empty() {
        format!("key_{out}")
    } else {
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn v(x: V) -> AnyValue {
        AnyValue { value: Some(x) }
    }

    #[test]
    fn text_follows_the_non_otlp_mapping() {
        assert_eq!(text(&v(V::StringValue("a b".into()))), "a b");
        assert_eq!(text(&v(V::BoolValue(true))), "true");
        assert_eq!(text(&v(V::IntValue(-42))), "-42");
        assert_eq!(text(&v(V::DoubleValue(1.0))), "1");
        assert_eq!(text(&v(V::DoubleValue(1.5))), "1.5");
        assert_eq!(
            text(&v(V::BytesValue(vec![0xde, 0xad, 0xbe, 0xef]))),
            "3q2+7w=="
        );
        let arr = v(V::ArrayValue(ArrayValue {
            values: vec![v(V::StringValue("a".into())), v(V::IntValue(1))],
        }));
        assert_eq!(text(&arr), r#"["a",1]"#);
        let map = v(V::KvlistValue(KeyValueList {
            values: vec![KeyValue {
                key: "k".into(),
                value: Some(v(V::BytesValue(vec![1]))),
                ..Default::default()
            }],
        }));
        assert_eq!(text(&map), r#"{"k":"AQ=="}"#);
        assert_eq!(text(&AnyValue { value: None }), "");
        assert_eq!(option_text(&None), "");
        assert_eq!(
            to_json(&v(V::DoubleValue(f64::NAN))),
            serde_json::Value::Null
        );
    }

    #[test]
    fn lookups() {
        let attrs = vec![
            KeyValue {
                key: "s".into(),
                value: Some(v(V::StringValue("12".into()))),
                ..Default::default()
            },
            KeyValue {
                key: "i".into(),
                value: Some(v(V::IntValue(7))),
                ..Default::default()
            },
        ];
        assert_eq!(find_str(&attrs, "s"), Some("12"));
        assert_eq!(find_str(&attrs, "i"), None);
        assert_eq!(find_int(&attrs, "i"), Some(7));
        assert_eq!(find_int(&attrs, "s"), Some(12));
        assert_eq!(position(&attrs, "i"), Some(1));
        assert!(find(&attrs, "x").is_none());
    }

    #[test]
    fn label_names_as_the_prometheus_compatibility_spec_says() {
        assert_eq!(label_name("k8s.namespace.name"), "k8s_namespace_name");
        assert_eq!(label_name("http.status_code"), "http_status_code");
        assert!(matches!(label_name("already_ok"), Cow::Borrowed(_)));
        assert_eq!(label_name("1abc"), "key_1abc");
        assert_eq!(label_name("ü"), "_");
        assert_eq!(label_name(""), "key_");
    }
}
