//! A log entry as the operators see it (stanza's model: body, attributes, resource, timestamp,
//! severity), its field paths, and its conversion to an OTLP log record.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Map(Map),
    Array(Vec<Value>),
    #[default]
    Null,
}

/// An ordered map with few keys: a vector beats a hash map at these sizes.
pub type Map = Vec<(String, Value)>;

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as text, for parsers that read strings (`42` → `"42"`).
    pub fn to_text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Double(d) => Some(d.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn from_json(v: serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Double(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::String(s) => Value::Str(s),
            serde_json::Value::Array(a) => {
                Value::Array(a.into_iter().map(Value::from_json).collect())
            }
            serde_json::Value::Object(o) => Value::Map(
                o.into_iter()
                    .map(|(k, v)| (k, Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    pub fn into_any(self) -> AnyValue {
        use any_value::Value as V;
        let v = match self {
            Value::Str(s) => Some(V::StringValue(s)),
            Value::Int(i) => Some(V::IntValue(i)),
            Value::Double(d) => Some(V::DoubleValue(d)),
            Value::Bool(b) => Some(V::BoolValue(b)),
            Value::Map(m) => Some(V::KvlistValue(KeyValueList {
                values: into_kvs(m),
            })),
            Value::Array(a) => Some(V::ArrayValue(ArrayValue {
                values: a.into_iter().map(Value::into_any).collect(),
            })),
            Value::Null => None,
        };
        AnyValue { value: v }
    }
}

pub fn into_kvs(m: Map) -> Vec<KeyValue> {
    m.into_iter()
        .map(|(key, v)| KeyValue {
            key,
            value: Some(v.into_any()),
            ..Default::default()
        })
        .collect()
}

pub fn map_get<'a>(m: &'a Map, k: &str) -> Option<&'a Value> {
    m.iter().find(|(key, _)| key == k).map(|(_, v)| v)
}

pub fn map_set(m: &mut Map, k: &str, v: Value) {
    match m.iter_mut().find(|(key, _)| key == k) {
        Some(slot) => slot.1 = v,
        None => m.push((k.to_string(), v)),
    }
}

pub fn map_remove(m: &mut Map, k: &str) -> Option<Value> {
    let i = m.iter().position(|(key, _)| key == k)?;
    Some(m.remove(i).1)
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entry {
    pub body: Value,
    pub attributes: Map,
    pub resource: Map,
    /// Unix nanoseconds; 0 = not set.
    pub timestamp: u64,
    pub observed: u64,
    pub severity_number: i32,
    pub severity_text: String,
    /// 16 bytes when set by `trace_parser`, else empty.
    pub trace_id: Vec<u8>,
    /// 8 bytes when set, else empty.
    pub span_id: Vec<u8>,
    pub trace_flags: u32,
    /// The instrumentation scope's name (`scope_name_parser`); entries are grouped by it.
    pub scope_name: String,
}

impl Entry {
    pub fn new(body: String, observed: u64) -> Self {
        Entry {
            body: Value::Str(body),
            observed,
            ..Default::default()
        }
    }

    pub fn into_record(self) -> LogRecord {
        LogRecord {
            time_unix_nano: self.timestamp,
            observed_time_unix_nano: self.observed,
            severity_number: self.severity_number,
            severity_text: self.severity_text,
            body: Some(self.body.into_any()),
            attributes: into_kvs(self.attributes),
            trace_id: self.trace_id,
            span_id: self.span_id,
            flags: self.trace_flags,
            ..Default::default()
        }
    }
}

/// Log records grouped by the resource and scope name operators gave their entries, in arrival
/// order (consecutive entries with the same pair share a group).
#[derive(Default)]
pub struct LogGroups {
    groups: Vec<(Map, String, Vec<LogRecord>)>,
    pub count: usize,
}

impl LogGroups {
    pub fn push(&mut self, mut e: Entry) {
        let resource = std::mem::take(&mut e.resource);
        let scope = std::mem::take(&mut e.scope_name);
        self.push_in(resource, scope, e.into_record());
    }

    /// A record with an empty resource and scope.
    pub fn push_record(&mut self, r: LogRecord) {
        self.push_in(Map::new(), String::new(), r);
    }

    fn push_in(&mut self, resource: Map, scope: String, r: LogRecord) {
        self.count += 1;
        // Most entries have neither (no operator set them): no comparison needed.
        if let Some((res, s, recs)) = self.groups.last_mut()
            && (res.is_empty() && resource.is_empty() || *res == resource)
            && (s.is_empty() && scope.is_empty() || *s == scope)
        {
            recs.push(r);
            return;
        }
        self.groups.push((resource, scope, vec![r]));
    }

    pub fn into_resource_logs(self) -> Vec<opentelemetry_proto::tonic::logs::v1::ResourceLogs> {
        use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
        use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
        use opentelemetry_proto::tonic::resource::v1::Resource;
        self.groups
            .into_iter()
            .map(|(res, scope, log_records)| ResourceLogs {
                resource: Some(Resource {
                    attributes: into_kvs(res),
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: scope,
                        ..Default::default()
                    }),
                    log_records,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect()
    }
}

/// Where in an entry a field lives: `body`, `body.a.b`, `attributes.x`, `attributes["x.y"]`,
/// `resource.x` (stanza's field syntax; a bare `x` means `body.x`).
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Body(Vec<String>),
    Attributes(Vec<String>),
    Resource(Vec<String>),
}

impl Field {
    pub fn parse(s: &str) -> Result<Field, String> {
        let s = s.trim();
        let s = s.strip_prefix('$').unwrap_or(s);
        let mut parts: Vec<String> = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('[') {
                let r = r.trim_start();
                let q = r.chars().next().filter(|c| *c == '"' || *c == '\'');
                let Some(q) = q else {
                    return Err(format!("field `{s}`: expected a quoted key after `[`"));
                };
                let end = r[1..]
                    .find(q)
                    .ok_or_else(|| format!("field `{s}`: unterminated quoted key"))?;
                parts.push(r[1..1 + end].to_string());
                rest = r[1 + end + 1..].trim_start();
                rest = rest
                    .strip_prefix(']')
                    .ok_or_else(|| format!("field `{s}`: expected `]`"))?;
                rest = rest.strip_prefix('.').unwrap_or(rest);
            } else {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                if end == 0 {
                    return Err(format!("field `{s}`: empty key"));
                }
                parts.push(rest[..end].to_string());
                rest = &rest[end..];
                rest = rest.strip_prefix('.').unwrap_or(rest);
            }
        }
        let Some(first) = parts.first() else {
            return Err("empty field".into());
        };
        Ok(match first.as_str() {
            "body" => Field::Body(parts[1..].to_vec()),
            "attributes" => {
                if parts.len() < 2 {
                    return Err(format!("field `{s}`: name an attribute (attributes.<key>)"));
                }
                Field::Attributes(parts[1..].to_vec())
            }
            "resource" => {
                if parts.len() < 2 {
                    return Err(format!(
                        "field `{s}`: name a resource attribute (resource.<key>)"
                    ));
                }
                Field::Resource(parts[1..].to_vec())
            }
            _ => Field::Body(parts),
        })
    }

    pub fn get<'a>(&self, e: &'a Entry) -> Option<&'a Value> {
        match self {
            Field::Body(p) => get_path(&e.body, p),
            Field::Attributes(p) => get_in(&e.attributes, p),
            Field::Resource(p) => get_in(&e.resource, p),
        }
    }

    pub fn set(&self, e: &mut Entry, v: Value) {
        match self {
            Field::Body(p) => {
                if p.is_empty() {
                    e.body = v;
                } else {
                    if !matches!(e.body, Value::Map(_)) {
                        e.body = Value::Map(Vec::new());
                    }
                    if let Value::Map(m) = &mut e.body {
                        set_in(m, p, v);
                    }
                }
            }
            Field::Attributes(p) => set_in(&mut e.attributes, p, v),
            Field::Resource(p) => set_in(&mut e.resource, p, v),
        }
    }

    pub fn remove(&self, e: &mut Entry) -> Option<Value> {
        match self {
            Field::Body(p) if p.is_empty() => Some(std::mem::take(&mut e.body)),
            Field::Body(p) => match &mut e.body {
                Value::Map(m) => remove_in(m, p),
                _ => None,
            },
            Field::Attributes(p) => remove_in(&mut e.attributes, p),
            Field::Resource(p) => remove_in(&mut e.resource, p),
        }
    }
}

fn get_path<'a>(v: &'a Value, p: &[String]) -> Option<&'a Value> {
    match p.split_first() {
        None => Some(v),
        Some((k, rest)) => match v {
            Value::Map(m) => get_path(map_get(m, k)?, rest),
            _ => None,
        },
    }
}

fn get_in<'a>(m: &'a Map, p: &[String]) -> Option<&'a Value> {
    let (k, rest) = p.split_first()?;
    get_path(map_get(m, k)?, rest)
}

pub fn set_in(m: &mut Map, p: &[String], v: Value) {
    let Some((k, rest)) = p.split_first() else {
        return;
    };
    if rest.is_empty() {
        map_set(m, k, v);
        return;
    }
    if !matches!(map_get(m, k), Some(Value::Map(_))) {
        map_set(m, k, Value::Map(Vec::new()));
    }
    if let Some((_, Value::Map(inner))) = m.iter_mut().find(|(key, _)| key == k) {
        set_in(inner, rest, v);
    }
}

pub fn remove_in(m: &mut Map, p: &[String]) -> Option<Value> {
    let (k, rest) = p.split_first()?;
    if rest.is_empty() {
        return map_remove(m, k);
    }
    match m.iter_mut().find(|(key, _)| key == k) {
        Some((_, Value::Map(inner))) => remove_in(inner, rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_and_address_the_entry() {
        assert_eq!(
            Field::parse(r#"attributes["log.file.path"]"#).unwrap(),
            Field::Attributes(vec!["log.file.path".into()])
        );
        assert_eq!(
            Field::parse("body.a.b").unwrap(),
            Field::Body(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            Field::parse("msg").unwrap(),
            Field::Body(vec!["msg".into()])
        );
        assert_eq!(Field::parse("body").unwrap(), Field::Body(vec![]));
        assert!(Field::parse("attributes").is_err());
        assert!(Field::parse("attributes[x]").is_err());

        let mut e = Entry::new("x".into(), 0);
        let f = Field::parse("attributes.a.b").unwrap();
        f.set(&mut e, Value::Int(1));
        assert_eq!(f.get(&e), Some(&Value::Int(1)));
        assert_eq!(f.remove(&mut e), Some(Value::Int(1)));
        assert_eq!(f.get(&e), None);
        Field::parse("body.k")
            .unwrap()
            .set(&mut e, Value::Bool(true));
        assert_eq!(e.body, Value::Map(vec![("k".into(), Value::Bool(true))]));
    }
}
