//! The Fluent Forward protocol's events (Forward Protocol Specification v1) as OTLP log
//! records, mapped as the Collector's receiver maps them: the tag as the `fluent.tag`
//! attribute; the time (integer seconds or the `EventTime` extension, seconds and
//! nanoseconds) as the timestamp; the record's `message` (fluentd) or `log` (Fluent Bit) as the
//! body and its other members as attributes.
//!
//! Modes, by the second element: Message `[tag, time, record, option?]`, Forward
//! `[tag, [[time, record], ...], option?]`, PackedForward `[tag, bin|str of concatenated
//! [time, record], option?]`, and CompressedPackedForward (the same, gzip, with
//! `option.compressed: "gzip"`).

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value as V,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use crate::msgpack::{self, Value};

/// One message's records and its `chunk` option (to acknowledge), if any.
#[derive(Debug, Default, PartialEq)]
pub struct Event {
    pub records: Vec<LogRecord>,
    pub chunk: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct EventError(pub String);

fn err(msg: impl Into<String>) -> EventError {
    EventError(msg.into())
}

/// A msgpack value as an OTLP value (the Collector's type mapping: integers above `i64::MAX`
/// as text, binary as text, nil as empty).
pub fn any(v: Value) -> AnyValue {
    let value = match v {
        Value::Nil => None,
        Value::Bool(b) => Some(V::BoolValue(b)),
        Value::Int(i) => Some(V::IntValue(i)),
        Value::Uint(u) => Some(V::StringValue(u.to_string())),
        Value::Float(f) => Some(V::DoubleValue(f)),
        Value::Str(s) => Some(V::StringValue(s)),
        Value::Bin(b) => Some(V::StringValue(String::from_utf8_lossy(&b).into_owned())),
        Value::Array(a) => Some(V::ArrayValue(ArrayValue {
            values: a.into_iter().map(any).collect(),
        })),
        Value::Map(m) => Some(V::KvlistValue(KeyValueList {
            values: m
                .into_iter()
                .map(|(k, v)| KeyValue {
                    key: key_text(k),
                    value: Some(any(v)),
                    ..Default::default()
                })
                .collect(),
        })),
        Value::Ext(t, d) => Some(V::StringValue(format!("ext({t}):{}", hex::encode(d)))),
    };
    AnyValue { value }
}

fn key_text(k: Value) -> String {
    match k {
        Value::Str(s) => s,
        Value::Bin(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// Unix nanoseconds of an event time: integer seconds, or `EventTime` (extension type 0:
/// seconds and nanoseconds, 32 bits each, big-endian). Fluent Bit also sends a float.
fn time(v: &Value) -> Result<u64, EventError> {
    match v {
        Value::Int(s) => Ok(u64::try_from(*s).unwrap_or(0).saturating_mul(1_000_000_000)),
        Value::Uint(s) => Ok(s.saturating_mul(1_000_000_000)),
        Value::Float(f) if *f >= 0.0 => Ok((f * 1e9) as u64),
        Value::Ext(0, d) if d.len() == 8 => {
            let s = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
            let ns = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
            Ok(u64::from(s) * 1_000_000_000 + u64::from(ns))
        }
        other => Err(err(format!(
            "the event time must be an integer or EventTime, got {other:?}"
        ))),
    }
}

fn record(tag: &str, t: &Value, rec: Value) -> Result<LogRecord, EventError> {
    let Value::Map(members) = rec else {
        return Err(err("the record must be a map"));
    };
    let mut lr = LogRecord {
        time_unix_nano: time(t)?,
        attributes: Vec::with_capacity(members.len() + 1),
        ..Default::default()
    };
    lr.attributes.push(KeyValue {
        key: "fluent.tag".into(),
        value: Some(AnyValue {
            value: Some(V::StringValue(tag.to_string())),
        }),
        ..Default::default()
    });
    for (k, v) in members {
        let key = key_text(k);
        if key == "message" || key == "log" {
            lr.body = Some(any(v));
        } else {
            lr.attributes.push(KeyValue {
                key,
                value: Some(any(v)),
                ..Default::default()
            });
        }
    }
    Ok(lr)
}

/// An `[time, record]` entry of Forward and PackedForward.
fn entry(tag: &str, e: Value) -> Result<LogRecord, EventError> {
    let Value::Array(mut pair) = e else {
        return Err(err("an entry must be [time, record]"));
    };
    if pair.len() != 2 {
        return Err(err(format!(
            "an entry must be [time, record], got {} elements",
            pair.len()
        )));
    }
    let rec = pair.pop().unwrap_or(Value::Nil);
    record(tag, &pair[0], rec)
}

/// The largest inflated PackedForward entries (what one CompressedPackedForward may expand to).
pub const MAX_INFLATED: usize = 64 << 20;

/// One top-level message.
pub fn event(v: Value) -> Result<Event, EventError> {
    let Value::Array(mut items) = v else {
        return Err(err("a Forward message must be an array"));
    };
    if !(2..=4).contains(&items.len()) {
        return Err(err(format!(
            "a Forward message has 2 to 4 elements, got {}",
            items.len()
        )));
    }
    let tag = match &items[0] {
        Value::Str(s) => s.clone(),
        Value::Bin(b) => String::from_utf8_lossy(b).into_owned(),
        _ => return Err(err("the tag must be a string")),
    };
    // Message mode has 3 or 4 elements with a time second; the others 2 or 3 with entries.
    let message_mode = matches!(
        items[1],
        Value::Int(_) | Value::Uint(_) | Value::Ext(..) | Value::Float(_)
    );
    let option = match (message_mode, items.len()) {
        (true, 4) | (false, 3) => items.pop(),
        (true, 3) | (false, 2) => None,
        _ => {
            return Err(err(
                "a Forward message has a wrong number of elements for its mode",
            ));
        }
    };
    let chunk = option
        .as_ref()
        .and_then(|o| o.get("chunk"))
        .and_then(|c| c.as_str())
        .map(str::to_string);
    let compressed = option
        .as_ref()
        .and_then(|o| o.get("compressed"))
        .and_then(|c| c.as_str())
        .map(str::to_string);
    let mut records = Vec::new();
    if message_mode {
        let rec = items.pop().unwrap_or(Value::Nil);
        records.push(record(&tag, &items[1], rec)?);
    } else {
        match items.pop().unwrap_or(Value::Nil) {
            Value::Array(entries) => {
                records.reserve(entries.len());
                for e in entries {
                    records.push(entry(&tag, e)?);
                }
            }
            Value::Bin(raw) => records = packed(&tag, &raw, compressed.as_deref())?,
            Value::Str(raw) => records = packed(&tag, raw.as_bytes(), compressed.as_deref())?,
            other => {
                return Err(err(format!(
                    "entries must be an array or packed bytes, got {other:?}"
                )));
            }
        }
    }
    Ok(Event { records, chunk })
}

fn packed(tag: &str, raw: &[u8], compressed: Option<&str>) -> Result<Vec<LogRecord>, EventError> {
    let inflated;
    let bytes = match compressed {
        None | Some("text") => raw,
        Some("gzip") => {
            inflated = crate::net::compression::decode("gzip", raw, MAX_INFLATED)
                .map_err(|e| err(format!("CompressedPackedForward entries: {e}")))?;
            &inflated[..]
        }
        Some(other) => return Err(err(format!("unknown compression {other:?} (only gzip)"))),
    };
    let values =
        msgpack::read_all(bytes).map_err(|e| err(format!("PackedForward entries: {e}")))?;
    values.into_iter().map(|e| entry(tag, e)).collect()
}

/// The acknowledgement of a chunk: `{"ack": "<chunk>"}`.
pub fn ack(chunk: &str) -> Vec<u8> {
    let mut out = Vec::new();
    msgpack::write::value(
        &mut out,
        &Value::Map(vec![(Value::Str("ack".into()), Value::Str(chunk.into()))]),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack::write;
    use crate::signal::value::{find, find_str};

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    fn rec(msg: &str) -> Value {
        Value::Map(vec![
            (s("log"), s(msg)),
            (s("level"), s("info")),
            (s("n"), Value::Int(3)),
        ])
    }

    fn event_time(sec: u32, ns: u32) -> Value {
        let mut d = sec.to_be_bytes().to_vec();
        d.extend_from_slice(&ns.to_be_bytes());
        Value::Ext(0, d)
    }

    #[test]
    fn every_mode_gives_its_records() {
        // Message, with EventTime and a chunk.
        let e = event(Value::Array(vec![
            s("app.web"),
            event_time(1_700_000_000, 5),
            rec("hello"),
            Value::Map(vec![(s("chunk"), s("c1"))]),
        ]))
        .unwrap();
        assert_eq!(e.chunk.as_deref(), Some("c1"));
        let r = &e.records[0];
        assert_eq!(r.time_unix_nano, 1_700_000_000_000_000_005);
        assert_eq!(find_str(&r.attributes, "fluent.tag"), Some("app.web"));
        assert_eq!(find_str(&r.attributes, "level"), Some("info"));
        assert!(find(&r.attributes, "log").is_none());
        assert_eq!(
            r.body.as_ref().and_then(|b| b.value.clone()),
            Some(V::StringValue("hello".into()))
        );
        // Forward.
        let e = event(Value::Array(vec![
            s("t"),
            Value::Array(vec![
                Value::Array(vec![Value::Int(10), rec("a")]),
                Value::Array(vec![Value::Int(11), rec("b")]),
            ]),
        ]))
        .unwrap();
        assert_eq!(e.records.len(), 2);
        assert_eq!(e.records[1].time_unix_nano, 11_000_000_000);
        // PackedForward and CompressedPackedForward.
        let mut stream = Vec::new();
        for i in 0..3 {
            write::value(&mut stream, &Value::Array(vec![Value::Int(i), rec("p")]));
        }
        let e = event(Value::Array(vec![s("t"), Value::Bin(stream.clone())])).unwrap();
        assert_eq!(e.records.len(), 3);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &stream).unwrap();
        let e = event(Value::Array(vec![
            s("t"),
            Value::Bin(gz.finish().unwrap()),
            Value::Map(vec![(s("compressed"), s("gzip")), (s("chunk"), s("z"))]),
        ]))
        .unwrap();
        assert_eq!((e.records.len(), e.chunk.as_deref()), (3, Some("z")));
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        for (v, want) in [
            (s("x"), "must be an array"),
            (Value::Array(vec![s("t")]), "2 to 4 elements"),
            (
                Value::Array(vec![Value::Int(1), Value::Int(1), rec("x")]),
                "tag must be a string",
            ),
            (
                Value::Array(vec![s("t"), Value::Int(1), s("not a map")]),
                "record must be a map",
            ),
            (
                Value::Array(vec![s("t"), Value::Array(vec![Value::Int(1)])]),
                "an entry must be",
            ),
            (
                Value::Array(vec![
                    s("t"),
                    Value::Bin(vec![0x91]),
                    Value::Map(vec![(s("compressed"), s("lz4"))]),
                ]),
                "unknown compression",
            ),
        ] {
            let e = event(v).unwrap_err();
            assert!(e.0.contains(want), "{e} / {want}");
        }
        assert_eq!(ack("c1"), {
            let mut b = Vec::new();
            write::value(&mut b, &Value::Map(vec![(s("ack"), s("c1"))]));
            b
        });
    }
}
