//! The `loki` exporter. No Loki server can be installed here, so the far end is an HTTP server in
//! this test that takes what Loki's push API takes (a spec-based test, not a real Loki):
//! `POST /loki/api/v1/push`, `Content-Type: application/x-protobuf` with `Content-Encoding:
//! snappy` (block format), a `logproto.PushRequest` decoded with the push proto; label strings in
//! Prometheus syntax; entries of a stream in time order; the tenant in `X-Scope-OrgID`. It
//! answers from a script of statuses to test the failure behaviour.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::standin::{Script, response, serve_post};
use common::{Collector, free_port, wait_until};
use ferrotel::proto::loki as lp;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

fn collector(lport: u16, extra: &str) -> (Collector, u16) {
    common::exporter_collector(
        "logs",
        "loki",
        &format!(
            r#"  loki:
    endpoint: "http://127.0.0.1:{lport}/loki/api/v1/push"
    timeout: 1s
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 500ms }}
{extra}"#
        ),
    )
}

fn send(rt: &tokio::runtime::Runtime, grpc: u16, req: ExportLogsServiceRequest) {
    common::export_logs(rt, grpc, req).unwrap();
}

/// One received stream: tenant, labels, entries.
type Received = (Option<String>, String, Vec<lp::EntryAdapter>);

#[derive(Default)]
struct Loki {
    script: Script,
    /// (tenant, stream labels, entries)
    got: Mutex<Vec<Received>>,
}

fn label_string_ok(s: &str) -> bool {
    // {name="value", ...}: names [a-zA-Z_][a-zA-Z0-9_]*, values with \" and \\ escapes.
    let Some(inner) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
        return false;
    };
    let mut rest = inner;
    while !rest.is_empty() {
        let Some(eq) = rest.find("=\"") else {
            return false;
        };
        let name = &rest[..eq];
        if !name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return false;
        }
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = Some(eq + 2 + i + 1);
                    break;
                }
                _ => {}
            }
        }
        let Some(e) = end else { return false };
        rest = rest[e..].strip_prefix(", ").unwrap_or(&rest[e..]);
    }
    true
}

fn loki(rt: &tokio::runtime::Runtime, port: u16) -> Arc<Loki> {
    let state = Arc::new(Loki::default());
    let st = state.clone();
    serve_post(rt, port, "/loki/api/v1/push", move |headers, body| {
        let st = st.clone();
        async move {
            if let Some(r) = st.script.next().await {
                return r;
            }
            let bad = |m: String| response(400, m);
            if headers.get("content-type").map(|v| v.as_bytes()) != Some(b"application/x-protobuf")
                || headers.get("content-encoding").map(|v| v.as_bytes()) != Some(b"snappy")
            {
                return bad(format!("wrong headers {headers:?}"));
            }
            let raw = match snap::raw::Decoder::new().decompress_vec(&body) {
                Ok(r) => r,
                Err(e) => return bad(format!("snappy: {e}")),
            };
            let req = match lp::PushRequest::decode(&raw[..]) {
                Ok(r) => r,
                Err(e) => return bad(format!("proto: {e}")),
            };
            let tenant = headers
                .get("x-scope-orgid")
                .map(|v| v.to_str().unwrap().to_owned());
            for s in req.streams {
                if !label_string_ok(&s.labels) {
                    return bad(format!("labels {}", s.labels));
                }
                let ts: Vec<_> = s
                    .entries
                    .iter()
                    .map(|e| e.timestamp.map(|t| (t.seconds, t.nanos)))
                    .collect();
                if ts.windows(2).any(|w| w[0] > w[1]) {
                    return bad("entries out of order".into());
                }
                st.got
                    .lock()
                    .unwrap()
                    .push((tenant.clone(), s.labels, s.entries));
            }
            response(200, "")
        }
    });
    state
}

fn kv(k: &str, v: &str) -> KeyValue {
    common::kv(k, any_value::Value::StringValue(v.into()))
}

const T0: u64 = 1_700_000_000_000_000_000;

fn record(t: u64, sev: &str, body: &str, attrs: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        time_unix_nano: t,
        severity_text: sev.into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.into())),
        }),
        attributes: attrs,
        trace_id: vec![0x11; 16],
        span_id: vec![0x22; 8],
        ..Default::default()
    }
}

#[test]
fn streams_labels_lines_and_tenants() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let lport = free_port();
    let lk = loki(&rt, lport);
    let (_c, grpc) = collector(lport, "    labels: { resource: [deployment.environment] }");
    let req = ExportLogsServiceRequest {
        resource_logs: vec![
            ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "checkout"),
                        kv("service.namespace", "shop"),
                        kv("deployment.environment", "prod"),
                        kv("k8s.namespace.name", "payments"),
                        kv("host.name", "node-1"),
                        kv("loki.resource.labels", "k8s.namespace.name"),
                        kv("loki.tenant", "tenant.attr"),
                        kv("tenant.attr", "team-a"),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app.logger".into(),
                        version: "2".into(),
                        ..Default::default()
                    }),
                    // Out of order on purpose: Loki needs them sorted.
                    log_records: vec![
                        record(
                            T0 + 300,
                            "ERROR",
                            "disk full ✗",
                            vec![
                                kv("http.method", "GET"),
                                kv("path", "/x"),
                                kv("loki.attribute.labels", "http.method"),
                            ],
                        ),
                        record(
                            T0 + 100,
                            "ERROR",
                            "first",
                            vec![
                                kv("http.method", "GET"),
                                kv("path", "/y"),
                                kv("loki.attribute.labels", "http.method"),
                            ],
                        ),
                        record(T0 + 200, "INFO", "ok", vec![]),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            },
            // An empty resource: no job, no tenant.
            ResourceLogs {
                resource: None,
                scope_logs: vec![ScopeLogs {
                    log_records: vec![record(T0, "", "bare", vec![])],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    };
    send(&rt, grpc, req);
    wait_until("four entries at loki", Duration::from_secs(10), || {
        lk.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, e)| e.len())
            .sum::<usize>()
            == 4
    });
    let got = lk.got.lock().unwrap();
    let stream = |labels: &str| {
        got.iter().find(|(_, l, _)| l == labels).unwrap_or_else(|| {
            panic!(
                "stream {labels} in {:?}",
                got.iter().map(|g| &g.1).collect::<Vec<_>>()
            )
        })
    };

    let (tenant, _, errors) = stream(
        "{deployment_environment=\"prod\", exporter=\"OTLP\", http_method=\"GET\", job=\"shop/checkout\", k8s_namespace_name=\"payments\", level=\"error\"}",
    );
    assert_eq!(tenant.as_deref(), Some("team-a"));
    assert_eq!(errors.len(), 2);
    assert_eq!(
        errors[0].timestamp,
        Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 100
        }),
        "sorted by time"
    );
    let line: serde_json::Value = serde_json::from_str(&errors[0].line).unwrap();
    assert_eq!(
        line,
        serde_json::json!({
            "body": "first",
            "attributes": {"path": "/y"},
            "resources": {"service.name": "checkout", "service.namespace": "shop", "host.name": "node-1", "tenant.attr": "team-a"},
            "instrumentation_scope": {"name": "app.logger", "version": "2"},
            "traceid": "11".repeat(16),
            "spanid": "22".repeat(8),
            "severity": "ERROR"
        })
    );
    let second: serde_json::Value = serde_json::from_str(&errors[1].line).unwrap();
    assert_eq!(second["body"], "disk full ✗");

    let (_, _, info) = stream(
        "{deployment_environment=\"prod\", exporter=\"OTLP\", job=\"shop/checkout\", k8s_namespace_name=\"payments\", level=\"info\"}",
    );
    assert_eq!(info.len(), 1);

    let (tenant, _, bare) = stream("{exporter=\"OTLP\"}");
    assert_eq!(tenant, &None);
    let line: serde_json::Value = serde_json::from_str(&bare[0].line).unwrap();
    assert_eq!(line["body"], "bare");
}

#[test]
fn logfmt_lines_and_structured_metadata() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let lport = free_port();
    let lk = loki(&rt, lport);
    let (_c, grpc) = collector(
        lport,
        "    format: logfmt\n    structured_metadata: true\n    tenant_id: fixed",
    );
    send(
        &rt,
        grpc,
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "api"), kv("region", "eu")],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![record(T0, "WARN", "slow query", vec![kv("db", "orders")])],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        },
    );
    wait_until("one entry", Duration::from_secs(10), || {
        lk.got.lock().unwrap().len() == 1
    });
    let got = lk.got.lock().unwrap();
    let (tenant, labels, entries) = &got[0];
    assert_eq!(tenant.as_deref(), Some("fixed"));
    assert_eq!(labels, "{exporter=\"OTLP\", job=\"api\", level=\"warn\"}");
    assert_eq!(entries[0].line, "body=\"slow query\" severity=WARN");
    let md: Vec<(String, String)> = entries[0]
        .structured_metadata
        .iter()
        .map(|p| (p.name.clone(), p.value.clone()))
        .collect();
    assert_eq!(
        md,
        vec![
            ("db".into(), "orders".into()),
            ("service_name".into(), "api".into()),
            ("region".into(), "eu".into()),
            ("trace_id".into(), "11".repeat(16)),
            ("span_id".into(), "22".repeat(8)),
        ]
    );
}

#[test]
fn failure_behaviour() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let lport = free_port();
    let lk = loki(&rt, lport);
    let (c, grpc) = collector(lport, "");
    let one = |body: &str| ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record(T0, "INFO", body, vec![])],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    lk.script.answer(500, None);
    send(&rt, grpc, one("after 500"));
    wait_until("delivered after a 500", Duration::from_secs(10), || {
        lk.got.lock().unwrap().len() == 1
    });
    assert_eq!(lk.script.calls(), 2);

    lk.script.answer(400, None);
    send(&rt, grpc, one("refused"));
    wait_until("the 400 counted", Duration::from_secs(10), || {
        c.metric("otelcol_exporter_send_failed_log_records_total{exporter=\"loki\"}") == 1.0
    });
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(lk.script.calls(), 3, "a 400 is not retried");

    lk.script.answer(429, Some("2"));
    let t = std::time::Instant::now();
    send(&rt, grpc, one("after 429"));
    wait_until("delivered after a 429", Duration::from_secs(10), || {
        lk.got.lock().unwrap().len() == 2
    });
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "Retry-After ignored: {:?}",
        t.elapsed()
    );
    // Counted when Loki's answer arrives, just after it stored the entries.
    wait_until("two pushes counted", Duration::from_secs(5), || {
        c.metric("otelcol_exporter_sent_log_records_total{exporter=\"loki\"}") == 2.0
    });
}

#[test]
fn slow_backend_and_backend_down() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let lport = free_port();
    // Down first: a 2-request queue fills, refusals reach the client retryably.
    let (c, grpc) = collector(
        lport,
        "    sending_queue: { queue_size: 2, num_consumers: 1 }",
    );
    let one = |body: String| ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record(T0, "INFO", &body, vec![])],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let accepted = common::fill_queue_until_refused(10, |i| {
        common::export_logs(&rt, grpc, one(format!("down {i}")))
    });
    let lk = loki(&rt, lport);
    wait_until(
        "everything accepted at loki",
        Duration::from_secs(20),
        || {
            lk.got
                .lock()
                .unwrap()
                .iter()
                .map(|(_, _, e)| e.len())
                .sum::<usize>()
                == accepted
        },
    );
    // Slow: the next answer takes 3s, over the 1s timeout; the push is retried and arrives.
    lk.script.delay_next(3000);
    send(&rt, grpc, one("slow".into()));
    wait_until("the slow push retried", Duration::from_secs(15), || {
        lk.got
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, _, e)| e)
            .any(|e| e.line.contains("\"slow\""))
    });
    assert!(
        c.logs().contains("request timed out after 1s"),
        "{}",
        c.logs()
    );
}
