//! The four bodies Zipkin clients send, read into one model (Zipkin v2's span): v2 JSON and v2
//! protobuf (`zipkin.proto` `ListOfSpans`) at `/api/v2/spans`, v1 JSON and v1 Thrift (a
//! `TBinaryProtocol` `list<Span>` of `zipkinCore.thrift`) at `/api/v1/spans`. v1 spans are
//! turned into v2 ones as Zipkin's own `V1SpanConverter` does: the core annotations (`cs`, `cr`,
//! `sr`, `ss`, `ms`, `mr`) give the kind, the local endpoint and, when the span has no
//! timestamp or duration of its own, those; the address annotations (`ca`, `sa`, `ma`) give the
//! remote endpoint; the other annotations stay annotations and the other binary annotations
//! become tags.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Deserialize;
use serde_json::Value;

use crate::thrift;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Client,
    Server,
    Producer,
    Consumer,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Endpoint {
    pub service_name: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub port: u16,
}

/// A Zipkin v2 span, ids decoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZSpan {
    pub trace_id: [u8; 16],
    pub id: [u8; 8],
    pub parent_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: Option<Kind>,
    /// Microseconds since the epoch.
    pub timestamp: Option<u64>,
    /// Microseconds.
    pub duration: Option<u64>,
    pub local: Option<Endpoint>,
    pub remote: Option<Endpoint>,
    /// (microseconds, value).
    pub annotations: Vec<(u64, String)>,
    /// In the order the client sent them (JSON) or by key (protobuf maps have no order).
    pub tags: Vec<(String, String)>,
}

/// Why a body could not be read: answered 400 with this text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

fn err(msg: impl Into<String>) -> FormatError {
    FormatError(msg.into())
}

/// Lower-hex ids of up to `N * 2` digits, left-padded with zeros as Zipkin does for short ones.
fn hex_id<const N: usize>(s: &str, what: &str) -> Result<[u8; N], FormatError> {
    if s.is_empty() || s.len() > N * 2 {
        return Err(err(format!(
            "{what} {s:?} must be 1 to {} hex digits",
            N * 2
        )));
    }
    let padded = format!("{s:0>width$}", width = N * 2);
    let mut out = [0u8; N];
    hex::decode_to_slice(padded.as_bytes(), &mut out)
        .map_err(|e| err(format!("{what} {s:?} is not hex: {e}")))?;
    Ok(out)
}

fn nonzero<const N: usize>(id: [u8; N], what: &str) -> Result<[u8; N], FormatError> {
    if id.iter().all(|b| *b == 0) {
        return Err(err(format!("{what} must not be zero")));
    }
    Ok(id)
}

fn kind_of(s: &str) -> Option<Kind> {
    match s {
        "CLIENT" => Some(Kind::Client),
        "SERVER" => Some(Kind::Server),
        "PRODUCER" => Some(Kind::Producer),
        "CONSUMER" => Some(Kind::Consumer),
        _ => None,
    }
}

/// A tag or binary annotation value as Zipkin keeps it: text. Clients that send numbers or
/// booleans in JSON get them written as JSON writes them.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JsonEndpoint {
    service_name: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
    port: Option<u32>,
}

impl JsonEndpoint {
    fn into_endpoint(self) -> Endpoint {
        Endpoint {
            service_name: self.service_name.unwrap_or_default().to_lowercase(),
            ipv4: self.ipv4.and_then(|a| a.parse().ok()),
            ipv6: self.ipv6.and_then(|a| a.parse().ok()),
            port: self.port.and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
        }
    }
}

#[derive(Deserialize)]
struct JsonAnnotation {
    #[serde(default)]
    timestamp: u64,
    #[serde(default)]
    value: String,
    /// v1 only.
    #[serde(default)]
    endpoint: Option<JsonEndpoint>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V2Json {
    trace_id: String,
    id: String,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    duration: Option<u64>,
    #[serde(default)]
    local_endpoint: Option<JsonEndpoint>,
    #[serde(default)]
    remote_endpoint: Option<JsonEndpoint>,
    #[serde(default)]
    annotations: Vec<JsonAnnotation>,
    #[serde(default)]
    tags: serde_json::Map<String, Value>,
}

fn parent(p: Option<&str>) -> Result<Option<[u8; 8]>, FormatError> {
    match p {
        None | Some("") => Ok(None),
        Some(p) => {
            let id = hex_id::<8>(p, "parentId")?;
            Ok((id != [0; 8]).then_some(id))
        }
    }
}

/// Zipkin v2 JSON: a list of spans.
pub fn v2_json(body: &[u8]) -> Result<Vec<ZSpan>, FormatError> {
    let spans: Vec<V2Json> =
        serde_json::from_slice(body).map_err(|e| err(format!("invalid Zipkin v2 JSON: {e}")))?;
    spans
        .into_iter()
        .map(|s| {
            Ok(ZSpan {
                trace_id: nonzero(hex_id::<16>(&s.trace_id, "traceId")?, "traceId")?,
                id: nonzero(hex_id::<8>(&s.id, "id")?, "id")?,
                parent_id: parent(s.parent_id.as_deref())?,
                name: s.name.unwrap_or_default(),
                kind: s.kind.as_deref().and_then(kind_of),
                timestamp: s.timestamp.filter(|t| *t > 0),
                duration: s.duration,
                local: s.local_endpoint.map(JsonEndpoint::into_endpoint),
                remote: s.remote_endpoint.map(JsonEndpoint::into_endpoint),
                annotations: s
                    .annotations
                    .into_iter()
                    .map(|a| (a.timestamp, a.value))
                    .collect(),
                tags: s
                    .tags
                    .into_iter()
                    .map(|(k, v)| {
                        let t = scalar_text(&v);
                        (k, t)
                    })
                    .collect(),
            })
        })
        .collect()
}

fn proto_endpoint(e: crate::proto::zipkin::Endpoint) -> Endpoint {
    Endpoint {
        service_name: e.service_name.to_lowercase(),
        ipv4: <[u8; 4]>::try_from(e.ipv4.as_slice())
            .ok()
            .map(Ipv4Addr::from),
        ipv6: <[u8; 16]>::try_from(e.ipv6.as_slice())
            .ok()
            .map(Ipv6Addr::from),
        port: u16::try_from(e.port).unwrap_or(0),
    }
}

fn id_bytes<const N: usize>(b: &[u8], what: &str) -> Result<[u8; N], FormatError> {
    if b.is_empty() || b.len() > N {
        return Err(err(format!(
            "{what} must be 1 to {N} bytes, got {}",
            b.len()
        )));
    }
    let mut out = [0u8; N];
    out[N - b.len()..].copy_from_slice(b);
    nonzero(out, what)
}

/// Zipkin v2 protobuf: `zipkin.proto3.ListOfSpans`.
pub fn v2_proto(body: &[u8]) -> Result<Vec<ZSpan>, FormatError> {
    use crate::proto::zipkin::span::Kind as PK;
    use prost::Message;
    let list = crate::proto::zipkin::ListOfSpans::decode(body)
        .map_err(|e| err(format!("invalid Zipkin v2 protobuf: {e}")))?;
    list.spans
        .into_iter()
        .map(|s| {
            let mut tags: Vec<(String, String)> = s.tags.into_iter().collect();
            tags.sort();
            Ok(ZSpan {
                trace_id: id_bytes::<16>(&s.trace_id, "trace_id")?,
                id: id_bytes::<8>(&s.id, "id")?,
                parent_id: if s.parent_id.is_empty() {
                    None
                } else {
                    Some(id_bytes::<8>(&s.parent_id, "parent_id")?)
                },
                name: s.name,
                kind: match PK::try_from(s.kind).unwrap_or(PK::SpanKindUnspecified) {
                    PK::Client => Some(Kind::Client),
                    PK::Server => Some(Kind::Server),
                    PK::Producer => Some(Kind::Producer),
                    PK::Consumer => Some(Kind::Consumer),
                    PK::SpanKindUnspecified => None,
                },
                timestamp: (s.timestamp > 0).then_some(s.timestamp),
                duration: (s.duration > 0).then_some(s.duration),
                local: s.local_endpoint.map(proto_endpoint),
                remote: s.remote_endpoint.map(proto_endpoint),
                annotations: s
                    .annotations
                    .into_iter()
                    .map(|a| (a.timestamp, a.value))
                    .collect(),
                tags,
            })
        })
        .collect()
}

/// A v1 span, from JSON or Thrift, before it becomes a v2 one.
#[derive(Default)]
struct V1 {
    trace_id: [u8; 16],
    id: [u8; 8],
    parent_id: Option<[u8; 8]>,
    name: String,
    timestamp: Option<u64>,
    duration: Option<u64>,
    annotations: Vec<(u64, String, Option<Endpoint>)>,
    /// (key, value as text, whether it is a boolean `true`, endpoint).
    binary: Vec<(String, String, bool, Option<Endpoint>)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V1JsonBinary {
    key: String,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    endpoint: Option<JsonEndpoint>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct V1Json {
    trace_id: String,
    id: String,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    timestamp: Option<u64>,
    #[serde(default)]
    duration: Option<u64>,
    #[serde(default)]
    annotations: Vec<JsonAnnotation>,
    #[serde(default)]
    binary_annotations: Vec<V1JsonBinary>,
}

/// Zipkin v1 JSON: a list of spans.
pub fn v1_json(body: &[u8]) -> Result<Vec<ZSpan>, FormatError> {
    let spans: Vec<V1Json> =
        serde_json::from_slice(body).map_err(|e| err(format!("invalid Zipkin v1 JSON: {e}")))?;
    spans
        .into_iter()
        .map(|s| {
            let v1 = V1 {
                trace_id: nonzero(hex_id::<16>(&s.trace_id, "traceId")?, "traceId")?,
                id: nonzero(hex_id::<8>(&s.id, "id")?, "id")?,
                parent_id: parent(s.parent_id.as_deref())?,
                name: s.name.unwrap_or_default(),
                timestamp: s.timestamp.filter(|t| *t > 0),
                duration: s.duration,
                annotations: s
                    .annotations
                    .into_iter()
                    .map(|a| {
                        (
                            a.timestamp,
                            a.value,
                            a.endpoint.map(JsonEndpoint::into_endpoint),
                        )
                    })
                    .collect(),
                binary: s
                    .binary_annotations
                    .into_iter()
                    .map(|b| {
                        let is_true = b.value == Value::Bool(true);
                        (
                            b.key,
                            scalar_text(&b.value),
                            is_true,
                            b.endpoint.map(JsonEndpoint::into_endpoint),
                        )
                    })
                    .collect(),
            };
            Ok(v1_to_v2(v1))
        })
        .collect()
}

fn thrift_endpoint(s: &thrift::Struct) -> Endpoint {
    Endpoint {
        service_name: s.str(3).unwrap_or_default().to_lowercase(),
        ipv4: s
            .int(1)
            .filter(|v| *v != 0)
            .map(|v| Ipv4Addr::from(v as u32)),
        ipv6: s
            .bin(4)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map(Ipv6Addr::from),
        port: s.int(2).map_or(0, |p| p as u16),
    }
}

/// A binary annotation's value by its `AnnotationType` (BOOL 0, BYTES 1, I16 2, I32 3, I64 4,
/// DOUBLE 5, STRING 6; numbers big-endian).
fn thrift_binary_text(v: &[u8], kind: i64) -> Result<(String, bool), FormatError> {
    let fixed = |n: usize| -> Result<&[u8], FormatError> {
        (v.len() == n).then_some(v).ok_or_else(|| {
            err(format!(
                "a binary annotation of type {kind} must be {n} bytes"
            ))
        })
    };
    Ok(match kind {
        0 => {
            let t = fixed(1)?[0] == 1;
            (t.to_string(), t)
        }
        1 => (crate::signal::value::bytes_text(v), false),
        2 => (
            i16::from_be_bytes(fixed(2)?.try_into().unwrap_or_default()).to_string(),
            false,
        ),
        3 => (
            i32::from_be_bytes(fixed(4)?.try_into().unwrap_or_default()).to_string(),
            false,
        ),
        4 => (
            i64::from_be_bytes(fixed(8)?.try_into().unwrap_or_default()).to_string(),
            false,
        ),
        5 => (
            f64::from_be_bytes(fixed(8)?.try_into().unwrap_or_default()).to_string(),
            false,
        ),
        _ => (String::from_utf8_lossy(v).into_owned(), false),
    })
}

fn i64_id(v: i64) -> [u8; 8] {
    v.to_be_bytes()
}

/// Zipkin v1 Thrift: a `TBinaryProtocol` list of `zipkinCore.thrift` `Span`s.
pub fn v1_thrift(body: &[u8]) -> Result<Vec<ZSpan>, FormatError> {
    let spans = thrift::read_struct_list(body, thrift::Protocol::Binary)
        .map_err(|e| err(format!("invalid Zipkin v1 Thrift: {e}")))?;
    spans
        .iter()
        .map(|s| {
            let low = s.int(1).ok_or_else(|| err("span without trace_id"))?;
            let high = s.int(12).unwrap_or(0);
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&high.to_be_bytes());
            trace_id[8..].copy_from_slice(&low.to_be_bytes());
            let id = s.int(4).ok_or_else(|| err("span without id"))?;
            let mut binary = Vec::new();
            for b in s.structs(8) {
                let (text, is_true) =
                    thrift_binary_text(b.bin(2).unwrap_or_default(), b.int(3).unwrap_or(6))?;
                binary.push((
                    b.str(1).unwrap_or_default(),
                    text,
                    is_true,
                    b.strukt(4).map(thrift_endpoint),
                ));
            }
            let v1 = V1 {
                trace_id: nonzero(trace_id, "trace_id")?,
                id: nonzero(i64_id(id), "id")?,
                parent_id: s.int(5).filter(|p| *p != 0).map(i64_id),
                name: s.str(3).unwrap_or_default(),
                timestamp: s.int(10).filter(|t| *t > 0).map(|t| t as u64),
                duration: s.int(11).filter(|d| *d >= 0).map(|d| d as u64),
                annotations: s
                    .structs(6)
                    .map(|a| {
                        (
                            a.int(1).unwrap_or(0).max(0) as u64,
                            a.str(2).unwrap_or_default(),
                            a.strukt(3).map(thrift_endpoint),
                        )
                    })
                    .collect(),
                binary,
            };
            Ok(v1_to_v2(v1))
        })
        .collect()
}

/// One v1 span as a v2 span (see the module's documentation).
fn v1_to_v2(v1: V1) -> ZSpan {
    let find = |v: &str| v1.annotations.iter().find(|a| a.1 == v);
    let (start_key, end_key, kind) = if find("sr").is_some() || find("ss").is_some() {
        ("sr", "ss", Some(Kind::Server))
    } else if find("cs").is_some() || find("cr").is_some() {
        ("cs", "cr", Some(Kind::Client))
    } else if find("ms").is_some() {
        ("ms", "", Some(Kind::Producer))
    } else if find("mr").is_some() {
        ("mr", "", Some(Kind::Consumer))
    } else {
        ("", "", None)
    };
    let start = find(start_key);
    let end = (!end_key.is_empty()).then(|| find(end_key)).flatten();
    let timestamp = v1.timestamp.or(start.map(|a| a.0));
    let duration = v1.duration.or(match (start, end) {
        (Some(s), Some(e)) if e.0 >= s.0 => Some(e.0 - s.0),
        _ => None,
    });
    let mut local = start
        .or(end)
        .and_then(|a| a.2.clone())
        .or_else(|| v1.annotations.iter().find_map(|a| a.2.clone()));
    let remote_key = match kind {
        Some(Kind::Client) => "sa",
        Some(Kind::Server) => "ca",
        Some(Kind::Producer) | Some(Kind::Consumer) => "ma",
        None => "",
    };
    let mut remote = None;
    let mut tags = Vec::new();
    for (key, text, is_true, ep) in v1.binary {
        match key.as_str() {
            "ca" | "sa" | "ma" if is_true => {
                if key == remote_key || (kind.is_none() && remote.is_none()) {
                    remote = ep;
                }
            }
            _ => {
                if local.is_none() {
                    local = ep.clone();
                }
                tags.push((key, text));
            }
        }
    }
    let consumed = |v: &str| v == start_key || v == end_key;
    ZSpan {
        trace_id: v1.trace_id,
        id: v1.id,
        parent_id: v1.parent_id,
        name: v1.name,
        kind,
        timestamp,
        duration,
        local,
        remote,
        annotations: v1
            .annotations
            .into_iter()
            .filter(|a| !consumed(&a.1))
            .map(|a| (a.0, a.1))
            .collect(),
        tags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thrift::write::Writer;
    use crate::thrift::{Struct, Value as T};

    #[test]
    fn v2_json_reads_the_api_example() {
        // The example of Zipkin's API documentation (POST /api/v2/spans).
        let body = br#"[{"id":"352bff9a74ca9ad2","traceId":"5af7183fb1d4cf5f","parentId":"6b221d5bc9e6496c",
            "name":"get /api","timestamp":1556604172355737,"duration":1431,"kind":"SERVER",
            "localEndpoint":{"serviceName":"Backend","ipv4":"192.168.99.1","port":3306},
            "remoteEndpoint":{"ipv4":"172.19.0.2","port":58648},
            "tags":{"http.method":"GET","http.path":"/api","count":3},
            "annotations":[{"timestamp":1556604172355800,"value":"wr"}]}]"#;
        let s = &v2_json(body).unwrap()[0];
        assert_eq!(hex::encode(s.trace_id), "00000000000000005af7183fb1d4cf5f");
        assert_eq!(hex::encode(s.id), "352bff9a74ca9ad2");
        assert_eq!(
            s.parent_id.map(hex::encode).as_deref(),
            Some("6b221d5bc9e6496c")
        );
        assert_eq!(
            (s.kind, s.timestamp, s.duration),
            (Some(Kind::Server), Some(1556604172355737), Some(1431))
        );
        let l = s.local.as_ref().unwrap();
        assert_eq!(
            (l.service_name.as_str(), l.ipv4, l.port),
            ("backend", Some(Ipv4Addr::new(192, 168, 99, 1)), 3306)
        );
        assert_eq!(s.remote.as_ref().unwrap().port, 58648);
        assert!(s.tags.contains(&("count".into(), "3".into())));
        assert_eq!(s.annotations, vec![(1556604172355800, "wr".to_string())]);
    }

    #[test]
    fn bad_ids_and_bodies_are_refused_with_the_reason() {
        for (body, want) in [
            (
                &br#"[{"traceId":"xyz","id":"1"}]"#[..],
                "traceId \"xyz\" is not hex",
            ),
            (br#"[{"traceId":"0","id":"1"}]"#, "traceId must not be zero"),
            (
                br#"[{"traceId":"1","id":"12345678901234567"}]"#,
                "id \"12345678901234567\" must be 1 to 16",
            ),
            (br#"{"not":"a list"}"#, "invalid Zipkin v2 JSON"),
        ] {
            let e = v2_json(body).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        assert!(v2_proto(&[0xff, 0xff]).is_err());
        assert!(v1_thrift(&[15, 0, 0, 0]).is_err());
    }

    #[test]
    fn v1_json_core_annotations_make_kind_endpoints_and_times() {
        let body = br#"[{"traceId":"a","id":"b","name":"get","annotations":[
              {"timestamp":100,"value":"sr","endpoint":{"serviceName":"Front","ipv4":"10.0.0.1","port":80}},
              {"timestamp":150,"value":"cache miss","endpoint":{"serviceName":"front"}},
              {"timestamp":300,"value":"ss","endpoint":{"serviceName":"front"}}],
            "binaryAnnotations":[
              {"key":"ca","value":true,"endpoint":{"serviceName":"client","ipv4":"10.0.0.2"}},
              {"key":"http.status_code","value":"200","endpoint":{"serviceName":"front"}}]}]"#;
        let s = &v1_json(body).unwrap()[0];
        assert_eq!(
            (s.kind, s.timestamp, s.duration),
            (Some(Kind::Server), Some(100), Some(200))
        );
        assert_eq!(s.local.as_ref().unwrap().service_name, "front");
        assert_eq!(s.remote.as_ref().unwrap().service_name, "client");
        assert_eq!(s.annotations, vec![(150, "cache miss".to_string())]);
        assert_eq!(
            s.tags,
            vec![("http.status_code".to_string(), "200".to_string())]
        );
    }

    #[test]
    fn v1_thrift_reads_zipkin_core_spans() {
        let ep = |name: &str| {
            T::Struct(Struct(vec![
                (1, T::I32(0x0a00_0001)),
                (2, T::I16(8080)),
                (3, T::Bin(name.as_bytes().to_vec())),
            ]))
        };
        let span = Struct(vec![
            (1, T::I64(0x1234)),
            (3, T::Bin(b"call".to_vec())),
            (4, T::I64(0x55)),
            (5, T::I64(0x44)),
            (
                6,
                T::List(vec![
                    T::Struct(Struct(vec![
                        (1, T::I64(1000)),
                        (2, T::Bin(b"cs".to_vec())),
                        (3, ep("app")),
                    ])),
                    T::Struct(Struct(vec![
                        (1, T::I64(1900)),
                        (2, T::Bin(b"cr".to_vec())),
                        (3, ep("app")),
                    ])),
                ]),
            ),
            (
                8,
                T::List(vec![
                    T::Struct(Struct(vec![
                        (1, T::Bin(b"n".to_vec())),
                        (2, T::Bin(7i64.to_be_bytes().to_vec())),
                        (3, T::I32(4)),
                    ])),
                    T::Struct(Struct(vec![
                        (1, T::Bin(b"sa".to_vec())),
                        (2, T::Bin(vec![1])),
                        (3, T::I32(0)),
                        (4, ep("db")),
                    ])),
                ]),
            ),
            (12, T::I64(0x99)),
        ]);
        let mut w = Writer::new(thrift::Protocol::Binary);
        w.value(&T::List(vec![T::Struct(span)]));
        let s = &v1_thrift(&w.out).unwrap()[0];
        assert_eq!(hex::encode(s.trace_id), "00000000000000990000000000001234");
        assert_eq!(
            (hex::encode(s.id), s.parent_id.map(hex::encode)),
            ("0000000000000055".into(), Some("0000000000000044".into()))
        );
        assert_eq!(
            (s.kind, s.timestamp, s.duration),
            (Some(Kind::Client), Some(1000), Some(900))
        );
        let l = s.local.as_ref().unwrap();
        assert_eq!(
            (l.service_name.as_str(), l.ipv4, l.port),
            ("app", Some(Ipv4Addr::new(10, 0, 0, 1)), 8080)
        );
        assert_eq!(s.remote.as_ref().unwrap().service_name, "db");
        assert_eq!(s.tags, vec![("n".to_string(), "7".to_string())]);
        assert!(s.annotations.is_empty());
    }
}
