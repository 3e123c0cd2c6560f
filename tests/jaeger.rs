//! The `jaeger` exporter. No Jaeger collector can be installed here, so the far end is a gRPC
//! server in this test generated from Jaeger's api_v2 protos (written from the published model in
//! `proto/jaeger/`): a spec-based test that decodes by the api_v2 wire format, not a real Jaeger.
//! It answers from a script of gRPC statuses to test the failure behaviour.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Collector, export_traces as send, free_port, kv, wait_until};

use ferrotel::proto::jaeger as j;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

fn collector(jport: u16, extra: &str) -> (Collector, u16) {
    common::exporter_collector(
        "traces",
        "jaeger",
        &format!(
            r#"  jaeger:
    endpoint: "127.0.0.1:{jport}"
    tls: {{ insecure: true }}
    timeout: 1s
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 500ms }}
{extra}"#
        ),
    )
}

#[derive(Default)]
struct Jaeger {
    script: Mutex<VecDeque<tonic::Status>>,
    batches: Mutex<Vec<j::Batch>>,
    calls: Mutex<usize>,
    /// The `authorization` metadata of each call.
    authorization: Mutex<Vec<String>>,
}

#[derive(Clone)]
struct Svc(Arc<Jaeger>);

#[tonic::async_trait]
impl j::collector_service_server::CollectorService for Svc {
    async fn post_spans(
        &self,
        r: tonic::Request<j::PostSpansRequest>,
    ) -> Result<tonic::Response<j::PostSpansResponse>, tonic::Status> {
        *self.0.calls.lock().unwrap() += 1;
        if let Some(a) = r.metadata().get("authorization") {
            self.0
                .authorization
                .lock()
                .unwrap()
                .push(a.to_str().unwrap_or_default().to_owned());
        }
        if let Some(st) = self.0.script.lock().unwrap().pop_front() {
            return Err(st);
        }
        let batch = r
            .into_inner()
            .batch
            .ok_or_else(|| tonic::Status::invalid_argument("no batch"))?;
        for s in &batch.spans {
            if s.trace_id.len() != 16 || s.span_id.len() != 8 {
                return Err(tonic::Status::invalid_argument("bad ids"));
            }
        }
        self.0.batches.lock().unwrap().push(batch);
        Ok(tonic::Response::new(j::PostSpansResponse {}))
    }
}

fn jaeger(rt: &tokio::runtime::Runtime, port: u16) -> Arc<Jaeger> {
    let state = Arc::new(Jaeger::default());
    let svc = Svc(state.clone());
    rt.spawn(async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        tonic::transport::Server::builder()
            .add_service(j::collector_service_server::CollectorServiceServer::new(
                svc,
            ))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l))
            .await
            .unwrap();
    });
    state
}

const T0: u64 = 1_700_000_000_123_456_789;

fn tag<'a>(tags: &'a [j::KeyValue], key: &str) -> &'a j::KeyValue {
    tags.iter()
        .find(|t| t.key == key)
        .unwrap_or_else(|| panic!("tag {key} missing in {tags:?}"))
}

#[test]
fn translation_field_by_field() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let jport = free_port();
    let jg = jaeger(&rt, jport);
    let (_c, grpc) = collector(jport, "");
    let trace = vec![
        0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6,
        0x0c,
    ];
    let root = Span {
        trace_id: trace.clone(),
        span_id: vec![1; 8],
        name: "GET /ünïcode".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + 1_500_000_123,
        attributes: vec![
            kv("http.method", any_value::Value::StringValue("GET".into())),
            kv("http.status_code", any_value::Value::IntValue(200)),
            kv("ratio", any_value::Value::DoubleValue(0.25)),
            kv("cached", any_value::Value::BoolValue(true)),
            kv("raw", any_value::Value::BytesValue(vec![1, 2])),
            kv(
                "list",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(any_value::Value::StringValue("a".into())),
                        },
                        AnyValue {
                            value: Some(any_value::Value::IntValue(2)),
                        },
                    ],
                }),
            ),
        ],
        events: vec![span::Event {
            time_unix_nano: T0 + 1000,
            name: "retry".into(),
            attributes: vec![kv("attempt", any_value::Value::IntValue(2))],
            ..Default::default()
        }],
        links: vec![span::Link {
            trace_id: vec![0xaa; 16],
            span_id: vec![0xbb; 8],
            ..Default::default()
        }],
        ..Default::default()
    };
    let child = Span {
        trace_id: trace.clone(),
        span_id: vec![2; 8],
        parent_span_id: vec![1; 8],
        name: "SELECT".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: T0 + 10,
        end_time_unix_nano: T0 + 20,
        status: Some(Status {
            code: 2,
            message: "connection reset".into(),
        }),
        dropped_events_count: 4,
        ..Default::default()
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv(
                            "service.name",
                            any_value::Value::StringValue("checkout".into()),
                        ),
                        kv("host.name", any_value::Value::StringValue("node-1".into())),
                        kv("process.pid", any_value::Value::IntValue(42)),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "io.example".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    spans: vec![root, child],
                    ..Default::default()
                }],
                ..Default::default()
            },
            // An empty resource: its own batch, `unknown_service`.
            ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![3; 16],
                        span_id: vec![3; 8],
                        name: "bare".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    };
    send(&rt, grpc, req).unwrap();
    wait_until("two batches at jaeger", Duration::from_secs(10), || {
        jg.batches.lock().unwrap().len() == 2
    });
    let batches = jg.batches.lock().unwrap();
    let b = batches.iter().find(|b| b.spans.len() == 2).unwrap();
    let process = b.process.as_ref().unwrap();
    assert_eq!(process.service_name, "checkout");
    assert_eq!(
        process.tags.len(),
        2,
        "resource attributes but service.name"
    );
    assert_eq!(tag(&process.tags, "host.name").v_str, "node-1");
    let pid = tag(&process.tags, "process.pid");
    assert_eq!((pid.v_type, pid.v_int64), (j::ValueType::Int64 as i32, 42));

    let r = &b.spans[0];
    assert_eq!(
        (
            r.trace_id.clone(),
            r.span_id.clone(),
            r.operation_name.as_str()
        ),
        (trace.clone(), vec![1; 8], "GET /ünïcode")
    );
    assert_eq!(r.flags, 1);
    assert_eq!(
        r.start_time,
        Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_789
        })
    );
    assert_eq!(
        r.duration,
        Some(prost_types::Duration {
            seconds: 1,
            nanos: 500_000_123
        })
    );
    assert_eq!(
        r.references,
        vec![j::SpanRef {
            trace_id: vec![0xaa; 16],
            span_id: vec![0xbb; 8],
            ref_type: j::SpanRefType::FollowsFrom as i32
        }]
    );
    assert_eq!(tag(&r.tags, "http.method").v_str, "GET");
    assert_eq!(tag(&r.tags, "http.status_code").v_int64, 200);
    assert_eq!(tag(&r.tags, "ratio").v_float64, 0.25);
    assert!(tag(&r.tags, "cached").v_bool);
    assert_eq!(tag(&r.tags, "raw").v_binary, vec![1, 2]);
    assert_eq!(tag(&r.tags, "list").v_str, "[\"a\",2]");
    assert_eq!(tag(&r.tags, "span.kind").v_str, "server");
    assert_eq!(tag(&r.tags, "otel.scope.name").v_str, "io.example");
    assert_eq!(tag(&r.tags, "otel.scope.version").v_str, "1.0");
    assert!(
        r.tags
            .iter()
            .all(|t| t.key != "otel.status_code" && t.key != "error"),
        "unset status: no status tags"
    );
    assert_eq!(r.logs.len(), 1);
    assert_eq!(
        r.logs[0].timestamp,
        Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_457_789
        })
    );
    assert_eq!(tag(&r.logs[0].fields, "event").v_str, "retry");
    assert_eq!(tag(&r.logs[0].fields, "attempt").v_int64, 2);

    let c = &b.spans[1];
    assert_eq!(
        c.references,
        vec![j::SpanRef {
            trace_id: trace,
            span_id: vec![1; 8],
            ref_type: j::SpanRefType::ChildOf as i32
        }]
    );
    assert_eq!(tag(&c.tags, "span.kind").v_str, "client");
    assert_eq!(tag(&c.tags, "otel.status_code").v_str, "ERROR");
    assert_eq!(
        tag(&c.tags, "otel.status_description").v_str,
        "connection reset"
    );
    let err = tag(&c.tags, "error");
    assert_eq!((err.v_type, err.v_bool), (j::ValueType::Bool as i32, true));
    assert_eq!(tag(&c.tags, "otel.dropped_events_count").v_int64, 4);

    let bare = batches.iter().find(|b| b.spans.len() == 1).unwrap();
    assert_eq!(
        bare.process.as_ref().unwrap().service_name,
        "unknown_service"
    );
    assert!(bare.process.as_ref().unwrap().tags.is_empty());
    assert!(
        bare.spans[0].tags.is_empty(),
        "no kind, status or scope: no tags"
    );
}

#[test]
fn failure_behaviour_and_backend_down() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let jport = free_port();
    // Down first: the queue (2 requests) fills and the refusal reaches the client retryably.
    let (c, grpc) = collector(
        jport,
        "    sending_queue: { queue_size: 2, num_consumers: 1 }",
    );
    let accepted = common::fill_queue_until_refused(10, |i| {
        send(&rt, grpc, common::one_span(9, i as u8 + 1, "s"))
    });
    let jg = jaeger(&rt, jport);
    wait_until(
        "the queued spans at jaeger",
        Duration::from_secs(15),
        || jg.batches.lock().unwrap().len() == accepted,
    );

    // UNAVAILABLE then OK: delivered once.
    let calls = *jg.calls.lock().unwrap();
    jg.script
        .lock()
        .unwrap()
        .push_back(tonic::Status::unavailable("restarting"));
    send(&rt, grpc, common::one_span(9, 20, "s")).unwrap();
    wait_until("span 20", Duration::from_secs(10), || {
        jg.batches.lock().unwrap().len() == accepted + 1
    });
    assert_eq!(*jg.calls.lock().unwrap(), calls + 2);

    // INVALID_ARGUMENT: dropped, counted, not retried.
    jg.script
        .lock()
        .unwrap()
        .push_back(tonic::Status::invalid_argument("bad batch"));
    send(&rt, grpc, common::one_span(9, 21, "s")).unwrap();
    wait_until(
        "the permanent error counted",
        Duration::from_secs(10),
        || c.metric("otelcol_exporter_send_failed_spans_total{exporter=\"jaeger\"}") == 1.0,
    );
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(*jg.calls.lock().unwrap(), calls + 3, "not retried");
    assert_eq!(jg.batches.lock().unwrap().len(), accepted + 1);
}

/// `auth` on the jaeger exporter: a `bearertokenauth` client's token on every call.
#[test]
fn an_authenticator_adds_its_credentials_to_every_call() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let jport = free_port();
    let jg = jaeger(&rt, jport);
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let _c = Collector::start(
        &format!(
            r#"
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
  bearertokenauth: {{ token: jaeger-tok }}
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
exporters:
  jaeger:
    endpoint: "127.0.0.1:{jport}"
    tls: {{ insecure: true }}
    auth: {{ authenticator: bearertokenauth }}
service:
  extensions: [health_check, bearertokenauth]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [jaeger] }}
"#
        ),
        &[],
        Some(health),
        Some(metrics),
    );
    send(&rt, grpc, common::one_span(1, 2, "authed")).unwrap();
    wait_until("the batch at Jaeger", Duration::from_secs(10), || {
        !jg.batches.lock().unwrap().is_empty()
    });
    assert_eq!(
        *jg.authorization.lock().unwrap(),
        vec!["Bearer jaeger-tok".to_string()]
    );
}
