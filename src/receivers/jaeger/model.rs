//! Jaeger's two span models read into one: `jaeger.thrift`'s `Batch` (the agent's UDP
//! `emitBatch` in the compact or binary protocol, and the collector's `/api/traces` body in the
//! binary protocol) and api_v2's protobuf `Batch` (gRPC `PostSpans`). Tags keep their types, as
//! OTLP values.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value as V};

use crate::proto::jaeger as j;
use crate::thrift::{self, Protocol, Struct};

/// A reference's type: `CHILD_OF` (0) or `FOLLOWS_FROM` (1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RefType {
    ChildOf,
    FollowsFrom,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct JSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// Thrift's `parentSpanId` (0 = none); api_v2 has only references.
    pub parent_span_id: Option<[u8; 8]>,
    pub references: Vec<(RefType, [u8; 16], [u8; 8])>,
    pub operation_name: String,
    pub start_unix_nano: u64,
    pub duration_nano: u64,
    pub tags: Vec<KeyValue>,
    /// (unix nanoseconds, fields).
    pub logs: Vec<(u64, Vec<KeyValue>)>,
    /// api_v2 spans may carry their own process.
    pub process: Option<JProcess>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct JProcess {
    pub service_name: String,
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct JBatch {
    pub process: JProcess,
    pub spans: Vec<JSpan>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

fn err(msg: impl Into<String>) -> FormatError {
    FormatError(msg.into())
}

fn kv(key: String, value: V) -> KeyValue {
    KeyValue {
        key,
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// `Tag { 1: key, 2: vType (STRING 0, DOUBLE 1, BOOL 2, LONG 3, BINARY 4), 3: vStr, 4: vDouble,
/// 5: vBool, 6: vLong, 7: vBinary }`.
fn thrift_tag(t: &Struct) -> KeyValue {
    let key = t.str(1).unwrap_or_default();
    let value = match t.int(2).unwrap_or(0) {
        1 => V::DoubleValue(t.double(4).unwrap_or(0.0)),
        2 => V::BoolValue(t.bool(5).unwrap_or(false)),
        3 => V::IntValue(t.int(6).unwrap_or(0)),
        4 => V::BytesValue(t.bin(7).unwrap_or_default().to_vec()),
        _ => V::StringValue(t.str(3).unwrap_or_default()),
    };
    kv(key, value)
}

fn thrift_tags(s: &Struct, id: i16) -> Vec<KeyValue> {
    s.structs(id).map(thrift_tag).collect()
}

fn ids(low: i64, high: i64) -> [u8; 16] {
    let mut t = [0u8; 16];
    t[..8].copy_from_slice(&high.to_be_bytes());
    t[8..].copy_from_slice(&low.to_be_bytes());
    t
}

/// Microseconds (Jaeger Thrift's unit) to nanoseconds.
fn us(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0).saturating_mul(1000)
}

/// `jaeger.thrift` `Batch { 1: Process process, 2: list<Span> spans }`.
pub fn thrift_batch(b: &Struct) -> Result<JBatch, FormatError> {
    let p = b
        .strukt(1)
        .ok_or_else(|| err("a Jaeger batch without a process"))?;
    let process = JProcess {
        service_name: p.str(1).unwrap_or_default(),
        tags: thrift_tags(p, 2),
    };
    let mut spans = Vec::new();
    for s in b.structs(2) {
        let trace_id = ids(s.int(1).unwrap_or(0), s.int(2).unwrap_or(0));
        let span_id = s.int(3).unwrap_or(0).to_be_bytes();
        if trace_id == [0; 16] || span_id == [0; 8] {
            return Err(err("a span with a zero trace or span id"));
        }
        let parent = s.int(4).unwrap_or(0);
        spans.push(JSpan {
            trace_id,
            span_id,
            parent_span_id: (parent != 0).then(|| parent.to_be_bytes()),
            references: s
                .structs(6)
                .map(|r| {
                    let kind = if r.int(1) == Some(1) {
                        RefType::FollowsFrom
                    } else {
                        RefType::ChildOf
                    };
                    (
                        kind,
                        ids(r.int(2).unwrap_or(0), r.int(3).unwrap_or(0)),
                        r.int(4).unwrap_or(0).to_be_bytes(),
                    )
                })
                .collect(),
            operation_name: s.str(5).unwrap_or_default(),
            start_unix_nano: us(s.int(8).unwrap_or(0)),
            duration_nano: us(s.int(9).unwrap_or(0)),
            tags: thrift_tags(s, 10),
            logs: s
                .structs(11)
                .map(|l| (us(l.int(1).unwrap_or(0)), thrift_tags(l, 2)))
                .collect(),
            process: None,
        });
    }
    Ok(JBatch { process, spans })
}

/// The `/api/traces` body: a binary-protocol `Batch`.
pub fn thrift_http(body: &[u8]) -> Result<JBatch, FormatError> {
    let (b, _) = thrift::read_struct(body, Protocol::Binary)
        .map_err(|e| err(format!("invalid Jaeger Thrift batch: {e}")))?;
    thrift_batch(&b)
}

/// An agent datagram: the `Agent.emitBatch(1: Batch batch)` call.
pub fn agent_datagram(packet: &[u8], proto: Protocol) -> Result<JBatch, FormatError> {
    let m = thrift::read_message(packet, proto)
        .map_err(|e| err(format!("invalid Jaeger agent message: {e}")))?;
    match m.name.as_str() {
        "emitBatch" => {
            let b = m
                .args
                .strukt(1)
                .ok_or_else(|| err("emitBatch without a batch"))?;
            thrift_batch(b)
        }
        "emitZipkinBatch" => Err(err(
            "emitZipkinBatch (Zipkin spans through the Jaeger agent) is not supported: send them to the zipkin receiver",
        )),
        other => Err(err(format!("unknown Jaeger agent call {other:?}"))),
    }
}

fn proto_tag(t: j::KeyValue) -> KeyValue {
    let value = match j::ValueType::try_from(t.v_type).unwrap_or(j::ValueType::String) {
        j::ValueType::Bool => V::BoolValue(t.v_bool),
        j::ValueType::Int64 => V::IntValue(t.v_int64),
        j::ValueType::Float64 => V::DoubleValue(t.v_float64),
        j::ValueType::Binary => V::BytesValue(t.v_binary),
        j::ValueType::String => V::StringValue(t.v_str),
    };
    kv(t.key, value)
}

fn timestamp_ns(t: Option<prost_types::Timestamp>) -> u64 {
    t.map_or(0, |t| {
        u64::try_from(t.seconds)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(t.nanos).unwrap_or(0))
    })
}

fn fixed<const N: usize>(b: &[u8], what: &str) -> Result<[u8; N], FormatError> {
    <[u8; N]>::try_from(b).map_err(|_| err(format!("{what} must be {N} bytes, got {}", b.len())))
}

fn proto_process(p: j::Process) -> JProcess {
    JProcess {
        service_name: p.service_name,
        tags: p.tags.into_iter().map(proto_tag).collect(),
    }
}

/// api_v2 `Batch` (from `PostSpansRequest`).
pub fn proto_batch(b: j::Batch) -> Result<JBatch, FormatError> {
    let mut spans = Vec::with_capacity(b.spans.len());
    for s in b.spans {
        let trace_id = fixed::<16>(&s.trace_id, "trace_id")?;
        let span_id = fixed::<8>(&s.span_id, "span_id")?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return Err(err("a span with a zero trace or span id"));
        }
        let mut references = Vec::with_capacity(s.references.len());
        for r in s.references {
            let kind = if r.ref_type == j::SpanRefType::FollowsFrom as i32 {
                RefType::FollowsFrom
            } else {
                RefType::ChildOf
            };
            references.push((
                kind,
                fixed::<16>(&r.trace_id, "a reference's trace_id")?,
                fixed::<8>(&r.span_id, "a reference's span_id")?,
            ));
        }
        let duration_nano = s.duration.map_or(0, |d| {
            u64::try_from(d.seconds)
                .unwrap_or(0)
                .saturating_mul(1_000_000_000)
                .saturating_add(u64::try_from(d.nanos).unwrap_or(0))
        });
        spans.push(JSpan {
            trace_id,
            span_id,
            parent_span_id: None,
            references,
            operation_name: s.operation_name,
            start_unix_nano: timestamp_ns(s.start_time),
            duration_nano,
            tags: s.tags.into_iter().map(proto_tag).collect(),
            logs: s
                .logs
                .into_iter()
                .map(|l| {
                    (
                        timestamp_ns(l.timestamp),
                        l.fields.into_iter().map(proto_tag).collect(),
                    )
                })
                .collect(),
            process: s.process.map(proto_process),
        });
    }
    Ok(JBatch {
        process: b.process.map(proto_process).unwrap_or_default(),
        spans,
    })
}

/// Builds Thrift values for the tests.
#[cfg(test)]
pub(crate) mod build {
    use crate::thrift::{Struct, Value};

    pub fn tag_str(k: &str, v: &str) -> Value {
        Value::Struct(Struct(vec![
            (1, Value::Bin(k.as_bytes().to_vec())),
            (2, Value::I32(0)),
            (3, Value::Bin(v.as_bytes().to_vec())),
        ]))
    }

    pub fn tag_long(k: &str, v: i64) -> Value {
        Value::Struct(Struct(vec![
            (1, Value::Bin(k.as_bytes().to_vec())),
            (2, Value::I32(3)),
            (6, Value::I64(v)),
        ]))
    }

    /// A batch of one process and the given spans (`(span id, parent id, name, tags)`).
    pub fn batch(service: &str, spans: Vec<(i64, i64, &str, Vec<Value>)>) -> Struct {
        Struct(vec![
            (
                1,
                Value::Struct(Struct(vec![
                    (1, Value::Bin(service.as_bytes().to_vec())),
                    (2, Value::List(vec![tag_str("host.name", "node-1")])),
                ])),
            ),
            (
                2,
                Value::List(
                    spans
                        .into_iter()
                        .map(|(id, parent, name, tags)| {
                            Value::Struct(Struct(vec![
                                (1, Value::I64(0x1111)),
                                (2, Value::I64(0x2222)),
                                (3, Value::I64(id)),
                                (4, Value::I64(parent)),
                                (5, Value::Bin(name.as_bytes().to_vec())),
                                (7, Value::I32(1)),
                                (8, Value::I64(1_700_000_000_000_000)),
                                (9, Value::I64(1500)),
                                (10, Value::List(tags)),
                                (
                                    11,
                                    Value::List(vec![Value::Struct(Struct(vec![
                                        (1, Value::I64(1_700_000_000_000_100)),
                                        (
                                            2,
                                            Value::List(vec![
                                                tag_str("event", "retry"),
                                                tag_long("attempt", 2),
                                            ]),
                                        ),
                                    ]))]),
                                ),
                            ]))
                        })
                        .collect(),
                ),
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use crate::thrift::Value;
    use crate::thrift::write::Writer;

    #[test]
    fn agent_datagrams_in_both_protocols_and_the_http_body() {
        let b = batch(
            "shop",
            vec![
                (5, 0, "root", vec![tag_str("span.kind", "server")]),
                (6, 5, "child", vec![]),
            ],
        );
        for proto in [Protocol::Compact, Protocol::Binary] {
            let mut w = Writer::new(proto);
            w.message(
                "emitBatch",
                4,
                1,
                &Struct(vec![(1, Value::Struct(b.clone()))]),
            );
            let got = agent_datagram(&w.out, proto).unwrap();
            assert_eq!(got.process.service_name, "shop");
            assert_eq!(got.spans.len(), 2);
            let s = &got.spans[1];
            assert_eq!(hex::encode(s.trace_id), "00000000000022220000000000001111");
            assert_eq!(s.parent_span_id, Some(5i64.to_be_bytes()));
            assert_eq!(
                (s.start_unix_nano, s.duration_nano),
                (1_700_000_000_000_000_000, 1_500_000)
            );
            assert_eq!(s.logs[0].1.len(), 2);
        }
        let mut w = Writer::new(Protocol::Binary);
        w.strukt(&b);
        assert_eq!(thrift_http(&w.out).unwrap().spans.len(), 2);
        // Other calls and malformed bodies are refused with the reason.
        let mut w = Writer::new(Protocol::Compact);
        w.message("emitZipkinBatch", 4, 1, &Struct(vec![]));
        assert!(
            agent_datagram(&w.out, Protocol::Compact)
                .unwrap_err()
                .0
                .contains("zipkin")
        );
        assert!(thrift_http(&[12, 0, 1]).is_err());
        assert!(agent_datagram(&[0x82, 0x21], Protocol::Compact).is_err());
    }

    #[test]
    fn proto_ids_must_have_their_length() {
        let b = j::Batch {
            spans: vec![j::Span {
                trace_id: vec![1; 8],
                span_id: vec![2; 8],
                ..Default::default()
            }],
            process: None,
        };
        assert!(
            proto_batch(b)
                .unwrap_err()
                .0
                .contains("trace_id must be 16 bytes")
        );
    }
}
