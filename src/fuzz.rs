//! Entry points for the fuzz targets (`fuzz/`, cargo-fuzz): each takes arbitrary bytes, feeds
//! them to one parser the way input reaches it, and checks the invariants that parser promises.
//! A panic here is a defect. See FUZZING.md.

use std::sync::{Arc, OnceLock};

use crate::signal::Signal;

fn signal_of(b: u8) -> Signal {
    Signal::ALL[usize::from(b) % 3]
}

/// An encoded export request through the receiver's admission, as gRPC or decompressed HTTP
/// bodies arrive: the wire scan, the decoded-cost check, decoding of what is admitted (which
/// must succeed and hold the counted items), and the size split of what is valid.
pub fn otlp_protobuf(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let signal = signal_of(first);
    let budget = budget();
    let admitted = crate::receivers::otlp::admit_protobuf(
        signal,
        bytes::Bytes::copy_from_slice(body),
        64 << 20,
        &budget,
    );
    let Ok(a) = admitted else {
        return;
    };
    let scan = crate::signal::wire::scan(signal, body).expect("admitted, so it scans");
    let items = a.batch.item_count();
    let decoded = a
        .batch
        .into_decoded()
        .expect("what the scan accepts, prost decodes");
    assert_eq!(
        decoded.item_count() as i64 + a.rejected,
        scan.items as i64,
        "items as counted by the scan"
    );
    assert!(items <= scan.items);
    // Split at a size picked from the input: every part is a valid request, every item once.
    let max = 1 + usize::from(first) * 7;
    let parts = crate::signal::wire_split::split_request(signal, body, max);
    let mut total = 0;
    for (p, n) in &parts {
        let s = crate::signal::wire::scan(signal, p).expect("a split part is a valid request");
        assert_eq!(s.items, *n);
        total += n;
    }
    assert_eq!(total, scan.items, "every item in exactly one part");
}

/// OTLP/JSON through the transcoder and the receiver's admission: whatever is transcoded is a
/// valid protobuf request.
pub fn otlp_json(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let signal = signal_of(first);
    if let Ok(pb) = crate::signal::json::to_protobuf(signal, body) {
        crate::signal::wire::scan(signal, &pb).expect("the transcoder writes valid protobuf");
    }
    let _ = crate::receivers::otlp::admit_json(signal, body.to_vec(), 64 << 20, &budget());
}

fn budget() -> Arc<crate::admission::Budget> {
    static B: OnceLock<Arc<crate::admission::Budget>> = OnceLock::new();
    B.get_or_init(|| {
        let b = crate::admission::Budget::with_measure(|| 0);
        b.limit(1 << 30, 256 << 20);
        b
    })
    .clone()
}

/// Request body decompression with its limit: never more output than the limit.
pub fn decompress(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let enc = [
        "gzip", "zstd", "deflate", "snappy", "identity", "x-gzip", "br",
    ][usize::from(first) % 7];
    const LIMIT: usize = 1 << 20;
    if let Ok(out) = crate::net::compression::decode(enc, body, LIMIT) {
        assert!(out.len() <= LIMIT);
    }
}

/// A config file through the whole loader (YAML, env expansion, every component's parse and the
/// graph checks): errors, never a panic; every error names the file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| match name {
        "EMPTY" => Some(String::new()),
        "PORT" => Some("4317".into()),
        "REF" => Some("${env:PORT}".into()),
        _ => None,
    };
    if let Err(errors) = crate::pipeline::validate_str(text, "fuzz.yaml", &env) {
        for e in errors {
            assert!(e.to_string().starts_with("fuzz.yaml"), "{e}");
        }
    }
}

/// `${...}` expansion alone.
pub fn env_expansion(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lookup = |name: &str| (name.len() < 8).then(|| format!("<{name}>"));
    let _ = crate::config::env::expand_str(text, &lookup);
}

fn kv(
    k: &str,
    v: opentelemetry_proto::tonic::common::v1::any_value::Value,
) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    opentelemetry_proto::tonic::common::v1::KeyValue {
        key: k.into(),
        value: Some(opentelemetry_proto::tonic::common::v1::AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// A span with a value of every kind, for conditions to read.
fn sample_span() -> &'static opentelemetry_proto::tonic::trace::v1::Span {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList, any_value::Value as V};
    static S: OnceLock<opentelemetry_proto::tonic::trace::v1::Span> = OnceLock::new();
    S.get_or_init(|| opentelemetry_proto::tonic::trace::v1::Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "GET /api".into(),
        kind: 2,
        start_time_unix_nano: 1,
        end_time_unix_nano: 1_000_000,
        attributes: vec![
            kv("http.status_code", V::IntValue(503)),
            kv("http.route", V::StringValue("/api/x".into())),
            kv("ratio", V::DoubleValue(0.5)),
            kv("ok", V::BoolValue(true)),
            kv("raw", V::BytesValue(vec![0, 1, 2])),
            kv(
                "list",
                V::ArrayValue(ArrayValue {
                    values: vec![opentelemetry_proto::tonic::common::v1::AnyValue {
                        value: Some(V::StringValue("a".into())),
                    }],
                }),
            ),
            kv(
                "map",
                V::KvlistValue(KeyValueList {
                    values: vec![kv("inner", V::IntValue(1))],
                }),
            ),
        ],
        ..Default::default()
    })
}

/// OTTL conditions and statements: parsed in every context, conditions evaluated against a span
/// or a log and statements run on them when they parse.
pub fn ottl(data: &[u8]) {
    use crate::ottl::{Condition, Context, Statement};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let resource = [kv(
        "service.name",
        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue("svc".into()),
    )];
    let outer = crate::ottl::eval::Outer {
        resource: &resource,
        resource_dropped: 0,
        scope: None,
    };
    for ctx in [Context::Span, Context::Log] {
        let Ok(st) = Statement::parse(text, ctx) else {
            continue;
        };
        let mut resource = Some(opentelemetry_proto::tonic::resource::v1::Resource {
            attributes: resource.to_vec(),
            ..Default::default()
        });
        let mut scope = None;
        let mut cache = Vec::new();
        let env = crate::ottl::mutate::Env {
            resource: &mut resource,
            scope: Some(&mut scope),
            cache: &mut cache,
        };
        if ctx == Context::Span {
            let mut span = sample_span().clone();
            let _ = st.exec(&mut crate::ottl::mutate::SpanMut {
                env,
                span: &mut span,
            });
        } else {
            let mut log = opentelemetry_proto::tonic::logs::v1::LogRecord {
                attributes: sample_span().attributes.clone(),
                body: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                    value: Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                            "k=v <a>1</a> {\"j\": [1]}".into(),
                        ),
                    ),
                }),
                ..Default::default()
            };
            let _ = st.exec(&mut crate::ottl::mutate::LogMut { env, log: &mut log });
        }
    }
    for ctx in [
        Context::Span,
        Context::SpanEvent,
        Context::Metric,
        Context::DataPoint,
        Context::Log,
    ] {
        let Ok(c) = Condition::parse(text, ctx) else {
            continue;
        };
        let _ = c.reads_only_resource_and_scope();
        match ctx {
            Context::Span => {
                let _ = c.eval(&crate::ottl::eval::SpanCtx {
                    outer: &outer,
                    span: sample_span(),
                });
            }
            Context::Log => {
                let log = opentelemetry_proto::tonic::logs::v1::LogRecord {
                    attributes: sample_span().attributes.clone(),
                    severity_text: "WARN".into(),
                    ..Default::default()
                };
                let _ = c.eval(&crate::ottl::eval::LogCtx {
                    outer: &outer,
                    log: &log,
                });
            }
            _ => {}
        }
    }
}

/// stanza's expression language (`if:` of the filelog operators).
pub fn expr(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(e) = crate::stanza::expr::Expr::parse(text) {
        let entry = crate::stanza::entry::Entry::new("a body".into(), 0);
        let _ = e.eval(&entry);
    }
}

/// A persistent-queue segment as found on disk after a crash or damage: replay never panics,
/// every record it returns lies within the bytes, and skipped plus found bytes cover them all.
pub fn disk_queue(data: &[u8]) {
    let (found, rec) = crate::disk_queue::scan_segment(data);
    let mut covered = rec.skipped_bytes as usize;
    for (pos, len) in found {
        assert!(pos + 25 + len <= data.len(), "a record past the end");
        covered += 25 + len;
    }
    assert_eq!(covered, data.len(), "every byte is a record or skipped");
}

/// Syslog messages in both formats.
pub fn syslog(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::receivers::syslog::parse::rfc5424(&text);
    let _ = crate::receivers::syslog::parse::rfc3164(&text, &jiff::tz::TimeZone::UTC);
}

/// A Zipkin receiver body (the first byte picks v1 JSON, v1 Thrift, v2 JSON or v2 protobuf)
/// through its reader and the mapping to OTLP: every span read is one OTLP span, with valid ids.
/// The rest is also read as the jaeger receiver's Thrift inputs (the agent's `emitBatch` in both
/// protocols, the `/api/traces` body).
pub fn zipkin(data: &[u8]) {
    use crate::receivers::zipkin::{Format, read, to_otlp};
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let format = [
        Format::V1Json,
        Format::V1Thrift,
        Format::V2Json,
        Format::V2Proto,
    ][usize::from(first) % 4];
    if let Ok(spans) = read(format, body) {
        let n = spans.len();
        let rs = to_otlp(spans, first & 0x80 != 0);
        let got: Vec<_> = rs
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect();
        assert_eq!(got.len(), n, "every span read is one OTLP span");
        for sp in got {
            assert_eq!((sp.trace_id.len(), sp.span_id.len()), (16, 8));
            assert!(sp.parent_span_id.is_empty() || sp.parent_span_id.len() == 8);
        }
    }
    // The same bytes as the jaeger receiver's inputs: agent datagrams in both protocols and
    // the `/api/traces` body; every span read is one OTLP span.
    use crate::receivers::jaeger;
    let spans_of = |b: jaeger::JBatch| {
        let n = b.spans.len();
        let got: usize = jaeger::to_otlp(b)
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        assert_eq!(got, n, "every Jaeger span read is one OTLP span");
    };
    for proto in [
        crate::thrift::Protocol::Binary,
        crate::thrift::Protocol::Compact,
    ] {
        if let Ok(b) = jaeger::agent_datagram(body, proto) {
            spans_of(b);
        }
    }
    if let Ok(b) = jaeger::thrift_http(body) {
        spans_of(b);
    }
}

/// A Fluent Forward connection's bytes: the scanner finds each message's end (it must agree
/// with the reader on every complete message), and each is read as an event. Fed whole and in
/// pieces of a size taken from the input.
pub fn fluentforward(data: &[u8]) {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let mut at = 0;
    while at < stream.len() {
        let rest = &stream[at..];
        let mut scan = crate::msgpack::Scanner::default();
        let piece = 1 + usize::from(first);
        let mut end = None;
        let mut fed = 0;
        while end.is_none() && fed < rest.len() {
            fed = (fed + piece).min(rest.len());
            match scan.advance(&rest[..fed]) {
                Ok(e) => end = e,
                Err(_) => return,
            }
        }
        let Some(len) = end else { return };
        let (v, used) = crate::msgpack::read(&rest[..len]).expect("a scanned message reads");
        assert_eq!(used, len, "scanner and reader agree on the end");
        let _ = crate::receivers::fluentforward::event(v);
        at += len;
    }
}

/// Prometheus text, OpenMetrics and protobuf scrape bodies (native histograms included).
pub fn prometheus_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::receivers::prometheus::parse::parse(&text, false);
    let _ = crate::receivers::prometheus::parse::parse(&text, true);
    let _ = crate::receivers::prometheus::protobuf::parse(data, true);
}

/// Container log lines (docker JSON, CRI-O, containerd) through the container stage, partials
/// and all.
pub fn container(data: &[u8]) {
    use crate::stanza::entry::Entry;
    use crate::stanza::stateful::{ContainerConfig, FileState, Stages};
    let stages = Stages {
        container: Some(ContainerConfig {
            format: None,
            add_metadata_from_filepath: true,
            max_log_size: 256,
        }),
        recombine: None,
    };
    let mut st = FileState::default();
    let mut out = Vec::new();
    let now = std::time::Instant::now();
    let text = String::from_utf8_lossy(data);
    for (i, line) in text.split('\n').enumerate() {
        stages.feed(
            &mut st,
            &Entry::default(),
            "/var/log/pods/ns_pod_0b9d3a4e-1c2f-4a5b-8c7d-9e0f1a2b3c4d/app/0.log",
            i as u64,
            line.to_owned(),
            now,
            &mut out,
        );
    }
}
