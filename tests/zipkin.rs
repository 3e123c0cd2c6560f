//! The `zipkin` exporter. No Zipkin server can be installed here, so the far end is an HTTP
//! server in this test that decodes strictly by Zipkin's published v2 API schema (zipkin2 JSON:
//! the fields of `Span`, `Endpoint` and `Annotation`, nothing else; lowercase hex ids of 16 or 32
//! digits; `kind` one of CLIENT/SERVER/PRODUCER/CONSUMER; tags string to string; epoch
//! microseconds), i.e. a spec-based test, not a real Zipkin. It answers from a script of statuses
//! to test the failure behaviour.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::standin::{Script, response, serve_post};
use common::{Collector, free_port, kv, wait_until};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use serde::Deserialize;

fn collector(zipkin_port: u16, extra: &str) -> (Collector, u16) {
    common::exporter_collector(
        "traces",
        "zipkin",
        &format!(
            r#"  zipkin:
    endpoint: "http://127.0.0.1:{zipkin_port}/api/v2/spans"
    default_service_name: fallback-svc
    timeout: 1s
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 500ms }}
{extra}"#
        ),
    )
}

fn send(rt: &tokio::runtime::Runtime, grpc: u16, req: ExportTraceServiceRequest) {
    common::export_traces(rt, grpc, req).unwrap();
}

/// zipkin2 `Span` (api/v2 JSON), strict.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ZSpan {
    trace_id: String,
    id: String,
    parent_id: Option<String>,
    name: Option<String>,
    kind: Option<String>,
    timestamp: Option<u64>,
    duration: Option<u64>,
    local_endpoint: Option<ZEndpoint>,
    remote_endpoint: Option<ZEndpoint>,
    #[serde(default)]
    annotations: Vec<ZAnnotation>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    debug: Option<bool>,
    shared: Option<bool>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ZEndpoint {
    service_name: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
    port: Option<u16>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct ZAnnotation {
    timestamp: u64,
    value: String,
}

fn is_hex(s: &str, lens: &[usize]) -> bool {
    lens.contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Decodes a body as Zipkin would accept it, or says why not.
fn strict_decode(body: &[u8]) -> Result<Vec<ZSpan>, String> {
    let spans: Vec<ZSpan> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    for s in &spans {
        if !is_hex(&s.trace_id, &[16, 32]) || !is_hex(&s.id, &[16]) {
            return Err(format!("bad ids {} {}", s.trace_id, s.id));
        }
        if s.parent_id.as_deref().is_some_and(|p| !is_hex(p, &[16])) {
            return Err("bad parentId".into());
        }
        if s.kind
            .as_deref()
            .is_some_and(|k| !["CLIENT", "SERVER", "PRODUCER", "CONSUMER"].contains(&k))
        {
            return Err("bad kind".into());
        }
        if s.debug.is_some() || s.shared.is_some() {
            return Err("unexpected debug/shared".into());
        }
    }
    Ok(spans)
}

#[derive(Default)]
struct Server {
    script: Script,
    got: Mutex<Vec<ZSpan>>,
}

/// Starts the schema-checking Zipkin stand-in on a free port.
fn zipkin(rt: &tokio::runtime::Runtime) -> (u16, Arc<Server>) {
    let port = free_port();
    (port, zipkin_on(rt, port))
}

/// The schema-checking Zipkin stand-in on `port`: the scripted answers first, then 202 for a
/// body Zipkin would accept and 400 for one it would not.
fn zipkin_on(rt: &tokio::runtime::Runtime, port: u16) -> Arc<Server> {
    let state = Arc::new(Server::default());
    let st = state.clone();
    serve_post(rt, port, "/api/v2/spans", move |headers, body| {
        let st = st.clone();
        async move {
            assert_eq!(headers.get("content-type").unwrap(), "application/json");
            if let Some(r) = st.script.next().await {
                return r;
            }
            match strict_decode(&body) {
                Ok(spans) => {
                    st.got.lock().unwrap().extend(spans);
                    response(202, "")
                }
                Err(e) => response(400, e),
            }
        }
    });
    state
}

const T0: u64 = 1_700_000_000_123_456_789;

fn edge_case_request() -> ExportTraceServiceRequest {
    let trace128 = vec![
        0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6,
        0x0c,
    ];
    let mut trace64 = vec![0u8; 8];
    trace64.extend_from_slice(&[0x46, 0x3a, 0xc3, 0x5c, 0x9f, 0x64, 0x13, 0xad]);
    let root = Span {
        trace_id: trace128.clone(),
        span_id: vec![1, 1, 1, 1, 1, 1, 1, 1],
        name: "GET /ünïcode ✓".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + 1_500_000,
        attributes: vec![
            kv("http.method", any_value::Value::StringValue("GET".into())),
            kv("http.status_code", any_value::Value::IntValue(200)),
            kv("ratio", any_value::Value::DoubleValue(0.25)),
            kv("cached", any_value::Value::BoolValue(true)),
            kv(
                "tags",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(any_value::Value::StringValue("a".into())),
                        },
                        AnyValue {
                            value: Some(any_value::Value::StringValue("b".into())),
                        },
                    ],
                }),
            ),
        ],
        events: vec![
            span::Event {
                time_unix_nano: T0 + 1000,
                name: "cache.miss".into(),
                ..Default::default()
            },
            span::Event {
                time_unix_nano: T0 + 2000,
                name: "retry".into(),
                attributes: vec![kv("attempt", any_value::Value::IntValue(2))],
                ..Default::default()
            },
        ],
        links: vec![span::Link {
            trace_id: vec![0xaa; 16],
            span_id: vec![0xbb; 8],
            ..Default::default()
        }],
        status: Some(Status {
            code: 1,
            message: String::new(),
        }),
        ..Default::default()
    };
    let client = Span {
        trace_id: trace128,
        span_id: vec![2; 8],
        parent_span_id: vec![1; 8],
        name: "SELECT".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: T0 + 100_000,
        end_time_unix_nano: T0 + 400_000,
        attributes: vec![
            kv(
                "peer.service",
                any_value::Value::StringValue("postgres".into()),
            ),
            kv("server.port", any_value::Value::IntValue(5432)),
        ],
        status: Some(Status {
            code: 2,
            message: "connection reset".into(),
        }),
        dropped_attributes_count: 3,
        ..Default::default()
    };
    let internal64 = Span {
        trace_id: trace64,
        span_id: vec![3; 8],
        name: "internal".into(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + 1000,
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv(
                            "service.name",
                            any_value::Value::StringValue("checkout".into()),
                        ),
                        kv("host.name", any_value::Value::StringValue("node-1".into())),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "io.example.http".into(),
                        version: "1.2.3".into(),
                        ..Default::default()
                    }),
                    spans: vec![root, client],
                    ..Default::default()
                }],
                ..Default::default()
            },
            // An empty resource: the default service name applies.
            ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    spans: vec![internal64],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    }
}

#[test]
fn translation_field_by_field() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (zport, z) = zipkin(&rt);
    let (_c, grpc) = collector(zport, "");
    send(&rt, grpc, edge_case_request());
    wait_until("three spans at zipkin", Duration::from_secs(10), || {
        z.got.lock().unwrap().len() == 3
    });
    let got = z.got.lock().unwrap();
    let by_id = |id: &str| {
        got.iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("span {id}"))
    };

    let root = by_id("0101010101010101");
    assert_eq!(root.trace_id, "5b8efff798038103d269b633813fc60c");
    assert_eq!(root.parent_id, None);
    assert_eq!(root.name.as_deref(), Some("GET /ünïcode ✓"));
    assert_eq!(root.kind.as_deref(), Some("SERVER"));
    assert_eq!(
        (root.timestamp, root.duration),
        (Some(T0 / 1000), Some(1500))
    );
    assert_eq!(
        root.local_endpoint,
        Some(ZEndpoint {
            service_name: Some("checkout".into()),
            ipv4: None,
            ipv6: None,
            port: None
        })
    );
    assert_eq!(
        root.remote_endpoint, None,
        "only CLIENT/PRODUCER spans get a remote endpoint"
    );
    let expected_tags: BTreeMap<String, String> = [
        ("http.method", "GET"),
        ("http.status_code", "200"),
        ("ratio", "0.25"),
        ("cached", "true"),
        ("tags", "[\"a\",\"b\"]"),
        ("otel.status_code", "OK"),
        ("otel.scope.name", "io.example.http"),
        ("otel.scope.version", "1.2.3"),
        (
            "otel.link.0",
            &format!("{}-{}", "aa".repeat(16), "bb".repeat(8)),
        ),
        ("host.name", "node-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(root.tags, expected_tags);
    assert_eq!(
        root.annotations,
        vec![
            ZAnnotation {
                timestamp: (T0 + 1000) / 1000,
                value: "cache.miss".into()
            },
            ZAnnotation {
                timestamp: (T0 + 2000) / 1000,
                value: "{\"retry\":{\"attempt\":2}}".into()
            },
        ]
    );

    let client = by_id("0202020202020202");
    assert_eq!(client.parent_id.as_deref(), Some("0101010101010101"));
    assert_eq!(client.kind.as_deref(), Some("CLIENT"));
    assert_eq!(
        client.remote_endpoint,
        Some(ZEndpoint {
            service_name: Some("postgres".into()),
            ipv4: None,
            ipv6: None,
            port: Some(5432)
        })
    );
    assert_eq!(
        client.tags.get("otel.status_code").map(String::as_str),
        Some("ERROR")
    );
    assert_eq!(
        client.tags.get("error").map(String::as_str),
        Some("connection reset")
    );
    assert_eq!(
        client
            .tags
            .get("otel.dropped_attributes_count")
            .map(String::as_str),
        Some("3")
    );
    assert!(client.annotations.is_empty());

    let internal = by_id("0303030303030303");
    assert_eq!(
        internal.trace_id, "463ac35c9f6413ad",
        "a 64-bit trace id is written with 16 digits"
    );
    assert_eq!(internal.kind, None, "INTERNAL has no Zipkin kind");
    assert_eq!(
        internal
            .local_endpoint
            .as_ref()
            .and_then(|e| e.service_name.as_deref()),
        Some("fallback-svc")
    );
    assert_eq!(
        internal.tags,
        BTreeMap::from([("span.kind".to_string(), "internal".to_string())]),
        "no status, no scope, no attributes: only the kind Zipkin has no field for"
    );
}

#[test]
fn failure_behaviour() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let one = |id: u8| ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![9; 16],
                    span_id: vec![id; 8],
                    name: "s".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (zport, z) = zipkin(&rt);
    let (c, grpc) = collector(zport, "");

    // 500 then 202: delivered exactly once.
    z.script.answer(500, None);
    send(&rt, grpc, one(1));
    wait_until("span 1 after a retry", Duration::from_secs(10), || {
        z.got.lock().unwrap().len() == 1
    });
    assert_eq!(z.script.calls(), 2);

    // 400: dropped, counted, not retried.
    z.script.answer(400, None);
    send(&rt, grpc, one(2));
    wait_until("the 400 to be counted", Duration::from_secs(10), || {
        c.metric("otelcol_exporter_send_failed_spans_total{exporter=\"zipkin\"}") == 1.0
    });
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(z.script.calls(), 3, "a 400 is not retried");
    assert_eq!(
        c.metric(
            "otelcol_exporter_dropped_items_total{exporter=\"zipkin\",reason=\"permanent_error\"}"
        ),
        1.0
    );

    // 429 with Retry-After: 2 is honoured (the retry waits 2s, not the 100ms backoff).
    z.script.answer(429, Some("2"));
    let t = std::time::Instant::now();
    send(&rt, grpc, one(3));
    wait_until("span 3 after Retry-After", Duration::from_secs(10), || {
        z.got.lock().unwrap().len() == 2
    });
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "Retry-After ignored: {:?}",
        t.elapsed()
    );

    // A slow backend (3s > the 1s timeout) is timed out and retried.
    z.script.delay_next(3000);
    send(&rt, grpc, one(4));
    wait_until("span 4 after a timeout", Duration::from_secs(15), || {
        z.got
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.id == "0404040404040404")
    });
    assert!(
        c.logs().contains("request timed out after 1s"),
        "{}",
        c.logs()
    );
    wait_until(
        "three spans counted as sent",
        Duration::from_secs(5),
        || c.metric("otelcol_exporter_sent_spans_total{exporter=\"zipkin\"}") == 3.0,
    );
}

/// Backend down: the queue fills, refusals reach the client retryably, nothing is lost once the
/// backend is back.
#[test]
fn backend_down_then_back() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let zport = free_port();
    let (c, grpc) = collector(
        zport,
        "    sending_queue: { queue_size: 2, num_consumers: 1 }",
    );
    let accepted = common::fill_queue_until_refused(20, |i| {
        common::export_traces(&rt, grpc, common::one_span(7, i as u8 + 1, "d"))
    });
    // The backend comes up on the port the exporter points at.
    let z = zipkin_on(&rt, zport);
    wait_until(
        "everything accepted at zipkin",
        Duration::from_secs(20),
        || z.got.lock().unwrap().len() == accepted,
    );
    assert_eq!(
        c.metric("otelcol_exporter_send_failed_spans_total{exporter=\"zipkin\"}"),
        0.0
    );
}

/// `format: proto`: the body is the zipkin2 protobuf `ListOfSpans` (decoded here with the model
/// written from zipkin-api's `zipkin.proto`; spec-based, not a real Zipkin).
#[test]
fn proto_format() {
    use ferrotel::proto::zipkin as zp;
    use prost::Message;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let got: Arc<Mutex<Vec<zp::Span>>> = Arc::default();
    let port = free_port();
    let g = got.clone();
    rt.spawn(async move {
        let app = axum::Router::new().route(
            "/api/v2/spans",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let g = g.clone();
                    async move {
                        if headers.get("content-type").map(|v| v.as_bytes())
                            != Some(b"application/x-protobuf")
                        {
                            return axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
                        }
                        match zp::ListOfSpans::decode(&body[..]) {
                            Ok(l) => {
                                g.lock().unwrap().extend(l.spans);
                                axum::http::StatusCode::ACCEPTED
                            }
                            Err(_) => axum::http::StatusCode::BAD_REQUEST,
                        }
                    }
                },
            ),
        );
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(l, app).await.unwrap();
    });
    let (_c, grpc) = collector(port, "    format: proto");
    send(&rt, grpc, edge_case_request());
    wait_until("three spans", Duration::from_secs(10), || {
        got.lock().unwrap().len() == 3
    });
    let spans = got.lock().unwrap();
    let by_id = |b: u8| spans.iter().find(|s| s.id == vec![b; 8]).unwrap();
    let root = by_id(1);
    assert_eq!(
        hex::encode(&root.trace_id),
        "5b8efff798038103d269b633813fc60c"
    );
    assert!(root.parent_id.is_empty());
    assert_eq!(
        (root.kind, root.name.as_str()),
        (zp::span::Kind::Server as i32, "GET /ünïcode ✓")
    );
    assert_eq!((root.timestamp, root.duration), (T0 / 1000, 1500));
    assert_eq!(
        root.local_endpoint.as_ref().unwrap().service_name,
        "checkout"
    );
    assert_eq!(
        root.tags.get("otel.status_code").map(String::as_str),
        Some("OK")
    );
    assert_eq!(
        root.tags.get("tags").map(String::as_str),
        Some("[\"a\",\"b\"]")
    );
    assert_eq!(root.annotations[1].value, "{\"retry\":{\"attempt\":2}}");
    let client = by_id(2);
    assert_eq!(client.parent_id, vec![1; 8]);
    assert_eq!(client.kind, zp::span::Kind::Client as i32);
    let remote = client.remote_endpoint.as_ref().unwrap();
    assert_eq!(
        (remote.service_name.as_str(), remote.port),
        ("postgres", 5432)
    );
    assert_eq!(
        client.tags.get("error").map(String::as_str),
        Some("connection reset")
    );
    let internal = by_id(3);
    assert_eq!(internal.trace_id.len(), 8, "a 64-bit trace id is 8 bytes");
    assert_eq!(internal.kind, zp::span::Kind::SpanKindUnspecified as i32);
}
