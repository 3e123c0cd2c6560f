//! The `otlp` receiver from the outside: OTLP/JSON per signal (checked field by field after the
//! trip through ferrotel), and bad input, each answered with its status code while another
//! client keeps being served.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Collector, free_port, sink::Sink, wait_until};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

struct Setup {
    sink: Sink,
    _c: Collector,
    http: u16,
    grpc: u16,
}

const LIMIT: usize = 1 << 20;

fn setup() -> Setup {
    let sink = Sink::start();
    let (grpc, http, health) = (free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}", max_recv_msg_size_mib: 1 }}
      http: {{ endpoint: "127.0.0.1:{http}", max_request_body_size: {LIMIT} }}
processors:
  batch: {{ timeout: 20ms }}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [batch], exporters: [otlp_grpc] }}
    metrics: {{ receivers: [otlp], processors: [batch], exporters: [otlp_grpc] }}
    logs: {{ receivers: [otlp], processors: [batch], exporters: [otlp_grpc] }}
"#,
        sink = sink.port
    );
    let c = Collector::start(&cfg, &[], Some(health), None);
    Setup {
        sink,
        _c: c,
        http,
        grpc,
    }
}

fn span_request(name: &str, n: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: vec![7; 16],
                        span_id: ((i + 1) as u64).to_be_bytes().to_vec(),
                        name: name.to_owned(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn post(
    port: u16,
    path: &str,
    ct: &str,
    enc: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let client = reqwest::Client::new();
    let mut rb = client
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", ct)
        .body(body);
    if let Some(e) = enc {
        rb = rb.header("content-encoding", e);
    }
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, ct, r.bytes().await.unwrap().to_vec())
}

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// `google.rpc.Status` as the receiver writes it.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_json_per_signal_is_decoded_field_by_field() {
    let s = setup();
    let traces = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-svc"}}]},
      "scopeSpans":[{"scope":{"name":"json-lib","version":"0.1"},"spans":[{
        "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173",
        "name":"GET /x","kind":3,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
        "attributes":[{"key":"s","value":{"stringValue":"ü"}},{"key":"i","value":{"intValue":"9007199254740993"}},
          {"key":"d","value":{"doubleValue":1.25}},{"key":"b","value":{"boolValue":true}},
          {"key":"a","value":{"arrayValue":{"values":[{"stringValue":"x"},{"intValue":"2"}]}}}],
        "events":[{"timeUnixNano":"1544712660500000000","name":"ev","attributes":[{"key":"k","value":{"stringValue":"v"}}]}],
        "links":[{"traceId":"00000000000000000000000000000001","spanId":"0000000000000002"}],
        "status":{"code":2,"message":"bad"}}]}]}]}"#;
    let (code, ct, body) = post(
        s.http,
        "/v1/traces",
        "application/json",
        None,
        traces.into(),
    )
    .await;
    assert_eq!(
        (code, ct.as_str(), body.as_slice()),
        (200, "application/json", b"{}".as_slice())
    );

    let metrics = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-svc"}}]},
      "scopeMetrics":[{"metrics":[
        {"name":"c","unit":"1","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"asInt":"42","timeUnixNano":"1544712660000000000","attributes":[{"key":"r","value":{"stringValue":"/"}}]}]}},
        {"name":"g","gauge":{"dataPoints":[{"asDouble":21.5,"timeUnixNano":"1544712660000000000"}]}},
        {"name":"h","unit":"ms","histogram":{"aggregationTemporality":2,"dataPoints":[{"count":"3","sum":6.0,"bucketCounts":["1","2","0"],"explicitBounds":[1.0,5.0],"timeUnixNano":"1544712660000000000"}]}}
      ]}]}]}"#;
    let (code, _, body) = post(
        s.http,
        "/v1/metrics",
        "application/json; charset=utf-8",
        None,
        metrics.into(),
    )
    .await;
    assert_eq!((code, body.as_slice()), (200, b"{}".as_slice()));

    let logs = r#"{"resourceLogs":[{"resource":{},"scopeLogs":[{"logRecords":[{"timeUnixNano":"1544712660000000000",
      "severityNumber":17,"severityText":"ERROR","body":{"stringValue":"disk full"},
      "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","attributes":[{"key":"n","value":{"intValue":5}}]}]}]}]}"#;
    let (code, _, _) = post(s.http, "/v1/logs", "application/json", None, logs.into()).await;
    assert_eq!(code, 200);

    wait_until("json data at the sink", Duration::from_secs(10), || {
        s.sink.store.span_count() == 1
            && s.sink.store.log_count() == 1
            && !s.sink.store.metrics.lock().unwrap().is_empty()
    });
    let spans = s.sink.store.spans.lock().unwrap();
    let sp = &spans[0].scope_spans[0].spans[0];
    assert_eq!(
        hex::encode(&sp.trace_id),
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(hex::encode(&sp.span_id), "eee19b7ec3c1b174");
    assert_eq!(hex::encode(&sp.parent_span_id), "eee19b7ec3c1b173");
    assert_eq!((sp.name.as_str(), sp.kind), ("GET /x", 3));
    assert_eq!(
        (sp.start_time_unix_nano, sp.end_time_unix_nano),
        (1544712660000000000, 1544712661000000000)
    );
    let a = |k: &str| {
        sp.attributes
            .iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.clone()?.value)
    };
    assert_eq!(a("s"), Some(Value::StringValue("ü".into())));
    assert_eq!(
        a("i"),
        Some(Value::IntValue(9007199254740993)),
        "int64 beyond 2^53 survives as a string"
    );
    assert_eq!(a("d"), Some(Value::DoubleValue(1.25)));
    assert_eq!(a("b"), Some(Value::BoolValue(true)));
    assert!(matches!(a("a"), Some(Value::ArrayValue(ref arr)) if arr.values.len() == 2));
    assert_eq!(sp.events[0].time_unix_nano, 1544712660500000000);
    assert_eq!(
        hex::encode(&sp.links[0].trace_id),
        "00000000000000000000000000000001"
    );
    assert_eq!(
        sp.status.as_ref().map(|s| (s.code, s.message.as_str())),
        Some((2, "bad"))
    );
    assert_eq!(
        spans[0].scope_spans[0].scope.as_ref().unwrap().version,
        "0.1"
    );
    drop(spans);

    let metrics = s.sink.store.metrics.lock().unwrap();
    let ms = &metrics[0].scope_metrics[0].metrics;
    match &ms[0].data {
        Some(Data::Sum(sum)) => {
            assert!(sum.is_monotonic);
            assert_eq!(sum.aggregation_temporality, 2);
            assert_eq!(
                sum.data_points[0].value,
                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(42))
            );
        }
        other => panic!("sum expected, got {other:?}"),
    }
    assert!(
        matches!(&ms[1].data, Some(Data::Gauge(g)) if g.data_points[0].value == Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(21.5)))
    );
    match &ms[2].data {
        Some(Data::Histogram(h)) => {
            let p = &h.data_points[0];
            assert_eq!(
                (
                    p.count,
                    p.sum,
                    p.bucket_counts.clone(),
                    p.explicit_bounds.clone()
                ),
                (3, Some(6.0), vec![1, 2, 0], vec![1.0, 5.0])
            );
        }
        other => panic!("histogram expected, got {other:?}"),
    }
    drop(metrics);
    let logs = s.sink.store.logs.lock().unwrap();
    let l = &logs[0].scope_logs[0].log_records[0];
    assert_eq!((l.severity_number, l.severity_text.as_str()), (17, "ERROR"));
    assert_eq!(
        l.body.as_ref().and_then(|b| b.value.clone()),
        Some(Value::StringValue("disk full".into()))
    );
    assert_eq!(hex::encode(&l.trace_id), "5b8efff798038103d269b633813fc60c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_status_and_other_clients_are_served() {
    let s = setup();
    // A well-behaved client keeps sending during the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let (good_ok, good_err) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let bg = {
        let (stop, ok, err, port) = (stop.clone(), good_ok.clone(), good_err.clone(), s.http);
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let (code, _, _) = post(
                    port,
                    "/v1/traces",
                    "application/x-protobuf",
                    None,
                    span_request("good", 5).encode_to_vec(),
                )
                .await;
                if code == 200 {
                    ok.fetch_add(1, Ordering::SeqCst)
                } else {
                    err.fetch_add(1, Ordering::SeqCst)
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let pb = "application/x-protobuf";

    // Malformed protobuf → 400, google.rpc.Status in protobuf.
    let (code, ct, body) = post(
        s.http,
        "/v1/traces",
        pb,
        None,
        vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 1],
    )
    .await;
    assert_eq!((code, ct.as_str()), (400, pb));
    let st = RpcStatus::decode(body.as_slice()).unwrap();
    assert_eq!(st.code, 3);
    assert!(
        st.message.contains("invalid OTLP/protobuf traces request"),
        "{}",
        st.message
    );

    // Malformed JSON → 400 with a JSON status naming the position.
    let (code, ct, body) = post(
        s.http,
        "/v1/logs",
        "application/json",
        None,
        b"{\"resourceLogs\": [{]".to_vec(),
    )
    .await;
    assert_eq!((code, ct.as_str()), (400, "application/json"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("invalid OTLP/JSON logs request at byte 19")
            && v["message"].as_str().unwrap().contains("resourceLogs[0]"),
        "{v}"
    );

    // Wrong content type → 415.
    let (code, _, body) = post(s.http, "/v1/traces", "text/plain", None, b"hello".to_vec()).await;
    assert_eq!(code, 415);
    assert!(String::from_utf8_lossy(&body).contains("application/x-protobuf"));
    // Unknown content encoding → 415.
    assert_eq!(
        post(s.http, "/v1/traces", pb, Some("br"), b"x".to_vec())
            .await
            .0,
        415
    );

    // Oversized body → 413.
    assert_eq!(
        post(s.http, "/v1/traces", pb, None, vec![0u8; LIMIT + 1])
            .await
            .0,
        413
    );

    // Corrupt gzip → 400.
    let (code, _, body) = post(
        s.http,
        "/v1/traces",
        pb,
        Some("gzip"),
        b"\x1f\x8b\x08\x00garbage".to_vec(),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        RpcStatus::decode(body.as_slice())
            .unwrap()
            .message
            .contains("invalid gzip body")
    );

    // A gzip bomb: a few KiB expanding to 64 MiB, refused at the 1 MiB limit without inflating it.
    let bomb = gzip(&vec![0u8; 64 << 20], 9);
    assert!(bomb.len() < 100 << 10, "bomb is {} bytes", bomb.len());
    let (code, _, body) = post(s.http, "/v1/traces", pb, Some("gzip"), bomb).await;
    assert_eq!(code, 413);
    assert!(
        RpcStatus::decode(body.as_slice())
            .unwrap()
            .message
            .contains("exceeds the limit")
    );

    // An empty body is a valid empty request.
    let (code, ct, body) = post(s.http, "/v1/metrics", pb, None, vec![]).await;
    assert_eq!((code, ct.as_str(), body.len()), (200, pb, 0));
    assert_eq!(
        post(s.http, "/v1/logs", "application/json", None, vec![])
            .await
            .0,
        200
    );

    // Wrong method and unknown path.
    let r = reqwest::get(format!("http://127.0.0.1:{}/v1/traces", s.http))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(post(s.http, "/v1/profiles", pb, None, vec![]).await.0, 404);

    // A span with an invalid id: the rest of the request is accepted, the client is told.
    let mut req = span_request("partial", 3);
    req.resource_spans[0].scope_spans[0].spans[1].span_id = vec![1, 2, 3];
    let (code, _, body) = post(s.http, "/v1/traces", pb, None, req.encode_to_vec()).await;
    assert_eq!(code, 200);
    let resp =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
            body.as_slice(),
        )
        .unwrap();
    let ps = resp.partial_success.expect("partial success");
    assert_eq!(ps.rejected_spans, 1);
    assert!(
        ps.error_message.contains("invalid id"),
        "{}",
        ps.error_message
    );

    // gRPC: a message over max_recv_msg_size_mib is refused; a normal one still passes.
    let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", s.grpc))
        .await
        .unwrap();
    let mut big = span_request("big", 1);
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(2 << 20);
    let err = client.export(big).await.expect_err("too large");
    // RESOURCE_EXHAUSTED without RetryInfo: permanent for this request (OUT_OF_RANGE, tonic's
    // own answer, is retryable in OTLP and made exporters resend it forever).
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(
        tonic_types::StatusExt::get_details_retry_info(&err).is_none(),
        "no retry info: {err:?}"
    );
    assert!(
        err.message().contains("request message too large")
            && err.message().contains("over max_recv_msg_size_mib (1 MiB)"),
        "{}",
        err.message()
    );
    client
        .export(span_request("grpc-ok", 2))
        .await
        .expect("normal gRPC request");

    stop.store(true, Ordering::SeqCst);
    bg.await.unwrap();
    let (ok, errs) = (
        good_ok.load(Ordering::SeqCst),
        good_err.load(Ordering::SeqCst),
    );
    assert!(
        ok > 5 && errs == 0,
        "the good client: {ok} ok, {errs} errors"
    );
    let partial_and_grpc = 2 + 2;
    wait_until(
        "every accepted span at the sink",
        Duration::from_secs(10),
        || s.sink.store.span_count() == ok * 5 + partial_and_grpc,
    );
}

/// `response_headers` on every answer, and `compression_algorithms` limiting what is inflated:
/// gzip refused with 415 when only zstd is listed, zstd and plain bodies accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_headers_and_compression_algorithms() {
    let sink = Sink::start();
    let (http, health) = (free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "127.0.0.1:{http}"
        response_headers: {{ X-Served-By: ferrotel, Strict-Transport-Security: max-age=60 }}
        compression_algorithms: [zstd]
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp_grpc] }}
"#,
        sink = sink.port
    );
    let _c = tokio::task::spawn_blocking(move || Collector::start(&cfg, &[], Some(health), None))
        .await
        .unwrap();
    let body = span_request("h", 3).encode_to_vec();
    let client = reqwest::Client::new();
    let send = |enc: Option<&'static str>, b: Vec<u8>| {
        let mut rb = client
            .post(format!("http://127.0.0.1:{http}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(b);
        if let Some(e) = enc {
            rb = rb.header("content-encoding", e);
        }
        rb.send()
    };
    let r = send(Some("gzip"), gzip(&body, 6)).await.unwrap();
    assert_eq!(r.status().as_u16(), 415);
    assert_eq!(r.headers()["x-served-by"], "ferrotel", "on refusals too");
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("compression_algorithms: zstd")
    );
    let r = send(Some("zstd"), zstd::encode_all(&body[..], 3).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=60");
    let r = send(None, body.clone()).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    common::wait_until("6 spans", std::time::Duration::from_secs(10), || {
        sink.store.span_count() == 6
    });
}
