//! The `otlp_http` exporter against a real OTLP/HTTP server (a second ferrotel): OTLP/JSON
//! bodies compressed with zstd, and HTTP 503 + Retry-After from a receiver whose queue is full,
//! retried until everything is delivered exactly once.

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Collector, free_port, sink::Sink, wait_until};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

#[test]
fn json_and_zstd_over_http_with_503_retry_after() {
    let sink = Sink::start();
    sink.store.refuse.store(true, Ordering::SeqCst);
    let (b_http, b_health, b_metrics) = (free_port(), free_port(), free_port());
    let b = Collector::start(
        &format!(
            r#"
receivers:
  otlp: {{ protocols: {{ http: {{ endpoint: "127.0.0.1:{b_http}" }} }} }}
exporters:
  otlp_grpc:
    endpoint: "127.0.0.1:{sink}"
    tls: {{ insecure: true }}
    sending_queue: {{ queue_size: 1, num_consumers: 1 }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 200ms }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{b_health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{b_metrics}" }} }}
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlp_grpc] }}
"#,
            sink = sink.port
        ),
        &[],
        Some(b_health),
        Some(b_metrics),
    );
    let (a_grpc, a_health, a_metrics) = (free_port(), free_port(), free_port());
    let a = Collector::start(
        &format!(
            r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{a_grpc}" }} }} }}
exporters:
  otlphttp:
    endpoint: "http://127.0.0.1:{b_http}"
    encoding: json
    compression: zstd
    headers: {{ X-Test: "yes" }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 2s }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{a_health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{a_metrics}" }} }}
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlphttp] }}
"#
        ),
        &[],
        Some(a_health),
        Some(a_metrics),
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = LogsServiceClient::connect(format!("http://127.0.0.1:{a_grpc}"))
            .await
            .unwrap();
        for i in 0..10i64 {
            let rec = LogRecord {
                time_unix_nano: i as u64 + 1,
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(format!("rec {i} ✓"))),
                }),
                attributes: vec![opentelemetry_proto::tonic::common::v1::KeyValue {
                    key: "i".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(i * 1_000_000_007)),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            };
            c.export(ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    scope_logs: vec![ScopeLogs {
                        log_records: vec![rec],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            })
            .await
            .unwrap();
        }
    });
    // B's queue is full: it answers 503 with Retry-After, A keeps retrying.
    wait_until("B to refuse with 503", Duration::from_secs(10), || {
        b.metric("otelcol_receiver_refused_log_records_total{receiver=\"otlp\",transport=\"http\"}")
            > 0.0
    });
    // A logs the refusal when B's answer arrives, a moment after B counts it.
    wait_until("A to log the 503", Duration::from_secs(10), || {
        a.logs().contains("HTTP 503 Service Unavailable")
    });
    sink.store.refuse.store(false, Ordering::SeqCst);
    wait_until(
        "all ten records at the sink",
        Duration::from_secs(20),
        || sink.store.log_count() >= 10,
    );
    std::thread::sleep(Duration::from_millis(300));
    let logs = sink.store.logs.lock().unwrap();
    let mut seen = HashSet::new();
    for l in logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
    {
        assert!(
            seen.insert(l.time_unix_nano),
            "record {} twice",
            l.time_unix_nano
        );
        let i = l.time_unix_nano as i64 - 1;
        assert_eq!(
            l.body.as_ref().and_then(|b| b.value.clone()),
            Some(any_value::Value::StringValue(format!("rec {i} ✓")))
        );
        assert_eq!(
            l.attributes[0].value.as_ref().and_then(|v| v.value.clone()),
            Some(any_value::Value::IntValue(i * 1_000_000_007))
        );
    }
    assert_eq!(seen.len(), 10);
    wait_until(
        "ten records counted as sent",
        Duration::from_secs(5),
        || a.metric("otelcol_exporter_sent_log_records_total{exporter=\"otlphttp\"}") == 10.0,
    );
    assert_eq!(
        a.metric("otelcol_exporter_send_failed_log_records_total{exporter=\"otlphttp\"}"),
        0.0
    );
}
