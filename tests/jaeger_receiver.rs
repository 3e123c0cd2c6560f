//! The `jaeger` receiver against real Jaeger clients: the Jaeger Python client (jaeger-client,
//! UDP compact to the agent port), the OpenTelemetry SDK's Jaeger exporters of release 1.21 (Thrift
//! to the agent over UDP, Thrift over HTTP to `/api/traces`, and api_v2 gRPC `PostSpans`), and
//! jaeger-client's generated Thrift types written by the Apache Thrift library in the binary
//! protocol to the 6832-style UDP port (no client library speaks it). Then the round trip:
//! OTLP → the `jaeger` exporter → the `jaeger` receiver (gRPC) → OTLP keeps the mapped fields.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Collector, export_traces, free_port, repo, sink::Sink, wait_until};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

/// The venv of the legacy Jaeger clients (`scripts/test.sh` makes it).
fn jaeger_python() -> std::path::PathBuf {
    let p = std::env::var_os("FERROTEL_TEST_JAEGER_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv-jaeger/bin/python"));
    assert!(p.exists(), "no {}: run scripts/test.sh once", p.display());
    p
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The spans at the sink with their resource's service name.
fn received(sink: &Sink) -> Vec<(String, Span)> {
    let mut out = Vec::new();
    for rs in sink.store.spans.lock().unwrap().iter() {
        let svc = rs
            .resource
            .as_ref()
            .and_then(|r| attr(&r.attributes, "service.name"))
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            for sp in &ss.spans {
                out.push((svc.clone(), sp.clone()));
            }
        }
    }
    out
}

#[test]
fn real_jaeger_clients_on_every_protocol_arrive_once_with_their_fields() {
    let sink = Sink::start();
    let (grpc, http, compact, binary, health) = (
        free_port(),
        free_port(),
        free_udp_port(),
        free_udp_port(),
        free_port(),
    );
    let cfg = format!(
        r#"
receivers:
  jaeger:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      thrift_http: {{ endpoint: "127.0.0.1:{http}" }}
      thrift_compact: {{ endpoint: "127.0.0.1:{compact}" }}
      thrift_binary: {{ endpoint: "127.0.0.1:{binary}" }}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [jaeger], exporters: [otlp_grpc] }}
"#,
        sink = sink.port
    );
    let c = Collector::start(&cfg, &[], Some(health), None);
    let runs = [
        ("JAEGER_CLIENT", compact),
        ("THRIFT_BINARY_UDP", binary),
        ("OTEL_AGENT", compact),
        ("OTEL_HTTP", http),
        ("OTEL_GRPC", grpc),
    ];
    let mut traces = Vec::new();
    for (i, (mode, port)) in runs.iter().enumerate() {
        let out = Command::new(jaeger_python())
            .arg(repo().join("tests/e2e/jaeger_send.py"))
            .arg(port.to_string())
            .arg(mode)
            .arg(i.to_string())
            .output()
            .expect("run jaeger_send.py");
        assert!(
            out.status.success(),
            "{mode}: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            c.logs()
        );
        let trace = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        traces.push((*mode, trace));
        // One trace at a time: each mode's spans are checked against its own run.
        wait_until(
            &format!("{mode}'s 2 spans"),
            Duration::from_secs(15),
            || sink.store.span_count() >= 2 * (i + 1),
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let spans = received(&sink);
    assert_eq!(spans.len(), 10, "each span once");
    for (i, (mode, trace)) in traces.iter().enumerate() {
        let of_trace: Vec<&(String, Span)> = spans
            .iter()
            .filter(|(_, sp)| hex::encode(&sp.trace_id) == *trace)
            .collect();
        assert_eq!(
            of_trace.len(),
            2,
            "{mode}: the two spans of trace {trace}: {spans:?}"
        );
        let find = |name: String| {
            of_trace
                .iter()
                .find(|(_, sp)| sp.name == name)
                .unwrap_or_else(|| panic!("{mode}: no span {name}"))
        };
        let server = find(format!("checkout {i}"));
        let client = find(format!("charge {i}"));
        assert!(server.0.contains("shop"), "{mode}: service {}", server.0);
        assert_eq!(server.1.kind, SpanKind::Server as i32, "{mode}");
        assert_eq!(client.1.kind, SpanKind::Client as i32, "{mode}");
        assert_eq!(client.1.parent_span_id, server.1.span_id, "{mode}: parent");
        assert!(
            client.1.links.is_empty(),
            "{mode}: the parent is not also a link"
        );
        assert!(server.1.parent_span_id.is_empty(), "{mode}");
        assert!(
            server.1.start_time_unix_nano > 1_600_000_000_000_000_000
                && server.1.end_time_unix_nano > server.1.start_time_unix_nano,
            "{mode}: times"
        );
        assert_eq!(
            attr(&server.1.attributes, "order.id"),
            Some(&any_value::Value::StringValue("42".into())),
            "{mode}: {:?}",
            server.1.attributes
        );
        assert_eq!(
            attr(&server.1.attributes, "retries"),
            Some(&any_value::Value::IntValue(3)),
            "{mode}: typed tags stay typed"
        );
        assert_eq!(
            server
                .1
                .events
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            ["cache miss"],
            "{mode}"
        );
        assert_eq!(
            attr(&client.1.attributes, "peer.service"),
            Some(&any_value::Value::StringValue("db".into())),
            "{mode}"
        );
        let st = client
            .1
            .status
            .as_ref()
            .unwrap_or_else(|| panic!("{mode}: no status"));
        assert_eq!(st.code, StatusCode::Error as i32, "{mode}");
        if mode.starts_with("OTEL") {
            assert_eq!(st.message, "card declined", "{mode}");
        }
        assert!(
            attr(&client.1.attributes, "error").is_none(),
            "{mode}: error became the status"
        );
    }
}

#[test]
fn malformed_input_is_refused_or_counted_and_the_rest_flows() {
    let sink = Sink::start();
    let (http, compact, health, metrics) = (free_port(), free_udp_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  jaeger:
    protocols:
      thrift_http: {{ endpoint: "127.0.0.1:{http}" }}
      thrift_compact: {{ endpoint: "127.0.0.1:{compact}" }}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [jaeger], exporters: [otlp_grpc] }}
"#,
        sink = sink.port
    );
    let c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let post = |ct: &str, body: Vec<u8>| {
        rt.block_on(async {
            let r = client
                .post(format!("http://127.0.0.1:{http}/api/traces"))
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        })
    };
    let (code, text) = post(
        "application/x-thrift",
        vec![12, 0, 1, 15, 0, 2, 12, 0x7f, 0xff, 0xff, 0xff],
    );
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("invalid Jaeger Thrift batch"), "{text}");
    let (code, text) = post("application/json", b"{}".to_vec());
    assert_eq!(code, 415, "{text}");
    // Garbage datagrams are counted as malformed; the socket keeps reading.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for junk in [
        &b"hello"[..],
        &[0x82, 0x81, 0x01],
        &[0x82, 0x81, 0x01, 0x09, b'e', b'm', b'i', b't'],
    ] {
        udp.send_to(junk, ("127.0.0.1", compact)).unwrap();
    }
    wait_until(
        "3 malformed datagrams counted",
        Duration::from_secs(10),
        || {
            c.metric("otelcol_receiver_malformed_items_total{receiver=\"jaeger\",transport=\"udp_thrift_compact\"}") >= 3.0
        },
    );
    // A real client's spans still arrive.
    let out = Command::new(jaeger_python())
        .arg(repo().join("tests/e2e/jaeger_send.py"))
        .arg(compact.to_string())
        .arg("OTEL_AGENT")
        .arg("after")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the good trace", Duration::from_secs(10), || {
        sink.store.span_count() == 2
    });
}

fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    })
}

fn kv(k: &str, v: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v,
        ..Default::default()
    }
}

#[test]
fn otlp_through_jaeger_exporter_and_receiver_is_identity_on_the_mapped_fields() {
    let sink = Sink::start();
    let (jport, grpc, health) = (free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
  jaeger: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{jport}" }} }} }}
exporters:
  jaeger: {{ endpoint: "127.0.0.1:{jport}", tls: {{ insecure: true }} }}
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces/out: {{ receivers: [otlp], exporters: [jaeger] }}
    traces/in: {{ receivers: [jaeger], exporters: [otlp_grpc] }}
"#,
        sink = sink.port
    );
    let c = Collector::start(&cfg, &[], Some(health), None);
    let int = |i: i64| {
        Some(AnyValue {
            value: Some(any_value::Value::IntValue(i)),
        })
    };
    let span = |id: u8, kind: SpanKind, parent: Option<u8>| Span {
        trace_id: vec![0xab; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: format!("op-{id}"),
        kind: kind as i32,
        start_time_unix_nano: 1_700_000_000_123_456_789,
        end_time_unix_nano: 1_700_000_000_623_456_789,
        attributes: vec![
            kv("http.route", s("/items/{id}")),
            kv("http.status_code", int(503)),
            kv(
                "ratio",
                Some(AnyValue {
                    value: Some(any_value::Value::DoubleValue(0.25)),
                }),
            ),
            kv(
                "cached",
                Some(AnyValue {
                    value: Some(any_value::Value::BoolValue(false)),
                }),
            ),
        ],
        events: vec![Event {
            time_unix_nano: 1_700_000_000_200_000_001,
            name: "retry".into(),
            attributes: vec![kv("attempt", int(2))],
            ..Default::default()
        }],
        links: vec![Link {
            trace_id: vec![0xcd; 16],
            span_id: vec![0xef; 8],
            ..Default::default()
        }],
        status: Some(if kind == SpanKind::Client {
            Status {
                code: StatusCode::Error as i32,
                message: "upstream 503".into(),
            }
        } else {
            Status {
                code: StatusCode::Ok as i32,
                message: String::new(),
            }
        }),
        dropped_attributes_count: 1,
        dropped_events_count: 2,
        dropped_links_count: 3,
        ..Default::default()
    };
    let sent = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("checkout")),
                    kv("host.name", s("node-7")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.example.http".into(),
                    version: "1.4.0".into(),
                    ..Default::default()
                }),
                spans: vec![
                    span(1, SpanKind::Server, None),
                    span(2, SpanKind::Client, Some(1)),
                    span(3, SpanKind::Internal, Some(1)),
                    span(4, SpanKind::Producer, Some(1)),
                    span(5, SpanKind::Consumer, Some(4)),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    export_traces(&rt, grpc, sent.clone()).unwrap();
    wait_until("the 5 spans", Duration::from_secs(15), || {
        sink.store.span_count() >= 5
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.store.span_count(), 5, "{}", c.logs());
    let got = sink.store.spans.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].resource, sent.resource_spans[0].resource, "resource");
    assert_eq!(got[0].scope_spans.len(), 1);
    let (got_ss, want_ss) = (
        &got[0].scope_spans[0],
        &sent.resource_spans[0].scope_spans[0],
    );
    assert_eq!(got_ss.scope, want_ss.scope);
    for (g, w) in got_ss.spans.iter().zip(&want_ss.spans) {
        let mut w = w.clone();
        // Jaeger has no trace state and no link attributes; neither was set.
        w.flags = g.flags;
        assert_eq!(g, &w, "{}", w.name);
    }
}
