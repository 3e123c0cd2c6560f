//! The `zipkin` receiver against real Zipkin clients: py_zipkin (PyPI) in each of its four
//! encodings (v1 Thrift from py_zipkin 0.20, the last release that writes it; v1 JSON, v2 JSON
//! and v2 protobuf from the current one), each through py_zipkin's own HTTP transport, and the
//! OpenTelemetry Python SDK's Zipkin JSON exporter. Then the round trip: OTLP → the `zipkin`
//! exporter (JSON and protobuf) → the `zipkin` receiver → OTLP keeps every mapped field.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Collector, export_traces, free_port, python, repo, sink::Sink, wait_until};
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

/// The spans the sink holds, with their resource's service name.
fn received(sink: &Sink) -> Vec<(String, Span)> {
    sink.store
        .spans
        .lock()
        .unwrap()
        .iter()
        .flat_map(|rs| {
            let svc = rs
                .resource
                .as_ref()
                .and_then(|r| attr(&r.attributes, "service.name"))
                .map(|v| match v {
                    any_value::Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            rs.scope_spans.iter().flat_map(move |ss| {
                ss.spans.iter().map({
                    let svc = svc.clone();
                    move |sp| (svc.clone(), sp.clone())
                })
            })
        })
        .collect()
}

#[test]
fn real_zipkin_clients_in_every_encoding_arrive_once_with_their_fields() {
    let sink = Sink::start();
    let (zport, health) = (free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  zipkin:
    endpoint: "127.0.0.1:{zport}"
    parse_string_tags: true
exporters:
  otlp_grpc:
    endpoint: "127.0.0.1:{sink}"
    tls: {{ insecure: true }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [zipkin], exporters: [otlp_grpc] }}
"#,
        sink = sink.port
    );
    let c = Collector::start(&cfg, &[], Some(health), None);
    let thrift_path = repo().join(".venv/py_zipkin_thrift");
    let encodings = [
        "V1_THRIFT",
        "V1_JSON",
        "V2_JSON",
        "V2_PROTO3",
        "OTEL_ZIPKIN_JSON",
    ];
    let mut traces = Vec::new();
    for (i, enc) in encodings.iter().enumerate() {
        let mut cmd = Command::new(python());
        cmd.arg(repo().join("tests/e2e/zipkin_client.py"))
            .arg(zport.to_string())
            .arg(enc)
            .arg(i.to_string());
        if *enc == "V1_THRIFT" {
            // py_zipkin 0.20 (the last with Thrift) beside the current one; its generated
            // protobuf module needs protobuf's pure-Python runtime.
            assert!(
                thrift_path.exists(),
                "scripts/test.sh installs py_zipkin 0.20 in {}",
                thrift_path.display()
            );
            cmd.env("PYTHONPATH", &thrift_path)
                .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python");
        }
        let out = cmd.output().expect("run zipkin_client.py");
        assert!(
            out.status.success(),
            "{enc}: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            c.logs()
        );
        traces.push((enc, String::from_utf8_lossy(&out.stdout).trim().to_string()));
    }
    wait_until("10 spans at the sink", Duration::from_secs(15), || {
        sink.store.span_count() >= 10
    });
    std::thread::sleep(Duration::from_millis(300));
    let spans = received(&sink);
    assert_eq!(spans.len(), 10, "each span once");
    for (i, (enc, trace)) in traces.iter().enumerate() {
        let of_trace: Vec<&(String, Span)> = spans
            .iter()
            .filter(|(_, sp)| hex::encode(&sp.trace_id) == *trace)
            .collect();
        assert_eq!(of_trace.len(), 2, "{enc}: two spans of trace {trace}");
        let server = of_trace
            .iter()
            .find(|(_, sp)| sp.name == format!("checkout {i}"))
            .unwrap_or_else(|| panic!("{enc}: no checkout span: {of_trace:?}"));
        let client = of_trace
            .iter()
            .find(|(_, sp)| sp.name == format!("charge {i}"))
            .unwrap_or_else(|| panic!("{enc}: no charge span"));
        assert_eq!(server.0, "shop", "{enc}: service");
        assert_eq!(server.1.kind, SpanKind::Server as i32, "{enc}");
        assert_eq!(client.1.kind, SpanKind::Client as i32, "{enc}");
        assert_eq!(client.1.parent_span_id, server.1.span_id, "{enc}: parent");
        assert!(server.1.parent_span_id.is_empty(), "{enc}: root");
        assert!(
            server.1.end_time_unix_nano >= server.1.start_time_unix_nano
                && server.1.start_time_unix_nano > 1_600_000_000_000_000_000,
            "{enc}: times {} {}",
            server.1.start_time_unix_nano,
            server.1.end_time_unix_nano
        );
        // parse_string_tags: "42" and "3" are ints whichever way the client typed them.
        assert_eq!(
            attr(&server.1.attributes, "order.id"),
            Some(&any_value::Value::IntValue(42)),
            "{enc}: {:?}",
            server.1.attributes
        );
        assert_eq!(
            attr(&server.1.attributes, "retries"),
            Some(&any_value::Value::IntValue(3))
        );
        assert_eq!(
            server
                .1
                .events
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            ["cache miss"],
            "{enc}"
        );
        assert_eq!(
            attr(&client.1.attributes, "peer.service"),
            Some(&any_value::Value::StringValue("db".into())),
            "{enc}"
        );
        if **enc == "OTEL_ZIPKIN_JSON" {
            let st = client.1.status.as_ref().expect("status");
            assert_eq!(
                (st.code, st.message.as_str()),
                (StatusCode::Error as i32, "card declined")
            );
        } else {
            // py_zipkin's remote endpoint from the `sa` annotation (v1) or remoteEndpoint (v2).
            assert_eq!(
                attr(&client.1.attributes, "net.peer.ip"),
                Some(&any_value::Value::StringValue("10.0.0.9".into())),
                "{enc}: {:?}",
                client.1.attributes
            );
            assert_eq!(
                attr(&client.1.attributes, "net.peer.port"),
                Some(&any_value::Value::IntValue(5432)),
                "{enc}"
            );
        }
    }
}

#[test]
fn bad_bodies_get_400_and_the_next_request_is_served() {
    let sink = Sink::start();
    let (zport, health) = (free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  zipkin: {{ endpoint: "127.0.0.1:{zport}" }}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [zipkin], exporters: [otlp_grpc] }}
"#,
        sink = sink.port
    );
    let _c = Collector::start(&cfg, &[], Some(health), None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let send = |req: reqwest::RequestBuilder| {
        rt.block_on(async {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        })
    };
    let post = |path: &str, ct: &str, body: Vec<u8>| {
        send(
            client
                .post(format!("http://127.0.0.1:{zport}{path}"))
                .header("content-type", ct)
                .body(body),
        )
    };
    for (path, ct, body, want) in [
        (
            "/api/v2/spans",
            "application/json",
            b"{not json".to_vec(),
            "invalid Zipkin v2 JSON",
        ),
        (
            "/api/v2/spans",
            "application/json",
            br#"[{"traceId":"zz","id":"1"}]"#.to_vec(),
            "is not hex",
        ),
        (
            "/api/v2/spans",
            "application/x-protobuf",
            vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
            "invalid Zipkin v2 protobuf",
        ),
        (
            "/api/v1/spans",
            "application/x-thrift",
            vec![12, 0x7f, 0xff, 0xff, 0xff],
            "invalid Zipkin v1 Thrift",
        ),
        (
            "/api/v1/spans",
            "application/json",
            b"[1]".to_vec(),
            "invalid Zipkin v1 JSON",
        ),
    ] {
        let (code, text) = post(path, ct, body);
        assert_eq!(code, 400, "{path} {ct}: {text}");
        assert!(text.contains(want), "{text}");
    }
    let (code, _) = send(client.get(format!("http://127.0.0.1:{zport}/api/v2/spans")));
    assert_eq!(code, 405);
    // gzip, as Zipkin reporters may send it.
    let json = br#"[{"traceId":"1","id":"2","name":"ok","localEndpoint":{"serviceName":"after"}}]"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, json).unwrap();
    let (code, text) = send(
        client
            .post(format!("http://127.0.0.1:{zport}/api/v2/spans"))
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(gz.finish().unwrap()),
    );
    assert_eq!(code, 202, "{text}");
    wait_until("the good span", Duration::from_secs(10), || {
        sink.store.span_count() == 1
    });
    let spans = received(&sink);
    assert_eq!(
        (spans[0].0.as_str(), spans[0].1.name.as_str()),
        ("after", "ok")
    );
}

/// OTLP spans with every field the Zipkin mapping carries.
fn rich_request() -> ExportTraceServiceRequest {
    let span = |id: u8, kind: SpanKind, parent: Option<u8>| Span {
        trace_id: vec![0xab; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        trace_state: String::new(),
        name: format!("op-{id}"),
        kind: kind as i32,
        start_time_unix_nano: 1_700_000_000_123_456_000,
        end_time_unix_nano: 1_700_000_000_623_456_000,
        attributes: vec![
            kv("http.route", s("/items/{id}")),
            kv("peer.service", s("inventory")),
        ],
        events: vec![
            Event {
                time_unix_nano: 1_700_000_000_200_000_000,
                name: "retry".into(),
                attributes: vec![kv(
                    "attempt",
                    Some(AnyValue {
                        value: Some(any_value::Value::IntValue(2)),
                    }),
                )],
                ..Default::default()
            },
            Event {
                time_unix_nano: 1_700_000_000_300_000_000,
                name: "done".into(),
                ..Default::default()
            },
        ],
        links: vec![Link {
            trace_id: vec![0xcd; 16],
            span_id: vec![0xef; 8],
            ..Default::default()
        }],
        status: Some(match kind {
            SpanKind::Client => Status {
                code: StatusCode::Error as i32,
                message: "upstream 503".into(),
            },
            _ => Status {
                code: StatusCode::Ok as i32,
                message: String::new(),
            },
        }),
        dropped_attributes_count: 1,
        dropped_events_count: 2,
        dropped_links_count: 3,
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("host.name", s("node-7")),
                    kv("service.name", s("checkout")),
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
    }
}

#[test]
fn otlp_through_zipkin_exporter_and_receiver_is_identity_on_the_mapped_fields() {
    let sink = Sink::start();
    let (zport, grpc, health) = (free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
  zipkin: {{ endpoint: "127.0.0.1:{zport}" }}
exporters:
  zipkin/json: {{ endpoint: "http://127.0.0.1:{zport}/api/v2/spans" }}
  zipkin/proto: {{ endpoint: "http://127.0.0.1:{zport}/api/v2/spans", format: proto }}
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces/out: {{ receivers: [otlp], exporters: [zipkin/json, zipkin/proto] }}
    traces/in: {{ receivers: [zipkin], exporters: [otlp_grpc] }}
"#,
        sink = sink.port
    );
    let c = Collector::start(&cfg, &[], Some(health), None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sent = rich_request();
    export_traces(&rt, grpc, sent.clone()).unwrap();
    wait_until(
        "both copies of the 5 spans",
        Duration::from_secs(15),
        || sink.store.span_count() >= 10,
    );
    std::thread::sleep(Duration::from_millis(300));
    let got = sink.store.spans.lock().unwrap().clone();
    assert_eq!(sink.store.span_count(), 10, "{}", c.logs());
    let want_rs = &sent.resource_spans[0];
    let want_scope = &want_rs.scope_spans[0];
    for rs in &got {
        let mut res = rs.resource.clone().unwrap_or_default().attributes;
        res.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(
            res,
            want_rs.resource.as_ref().unwrap().attributes,
            "resource"
        );
        for ss in &rs.scope_spans {
            assert_eq!(ss.scope, want_scope.scope, "scope");
            for got in &ss.spans {
                let want = want_scope
                    .spans
                    .iter()
                    .find(|w| w.span_id == got.span_id)
                    .expect("a span that was sent");
                // The fields Zipkin carries, each as it was sent.
                assert_eq!(got.trace_id, want.trace_id);
                assert_eq!(got.parent_span_id, want.parent_span_id);
                assert_eq!(got.name, want.name);
                assert_eq!(got.kind, want.kind, "{}", want.name);
                assert_eq!(
                    (got.start_time_unix_nano, got.end_time_unix_nano),
                    (want.start_time_unix_nano, want.end_time_unix_nano)
                );
                assert_eq!(got.status, want.status, "{}", want.name);
                assert_eq!(got.events, want.events);
                assert_eq!(
                    got.links
                        .iter()
                        .map(|l| (&l.trace_id, &l.span_id))
                        .collect::<Vec<_>>(),
                    want.links
                        .iter()
                        .map(|l| (&l.trace_id, &l.span_id))
                        .collect::<Vec<_>>()
                );
                assert_eq!(
                    (
                        got.dropped_attributes_count,
                        got.dropped_events_count,
                        got.dropped_links_count
                    ),
                    (1, 2, 3)
                );
                let mut attrs = got.attributes.clone();
                attrs.sort_by(|a, b| a.key.cmp(&b.key));
                assert_eq!(attrs, want.attributes, "{}", want.name);
            }
        }
    }
}
