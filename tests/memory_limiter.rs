//! The `memory_limiter` processor from the outside: above its soft limit (here a 1 MiB limit,
//! which any process exceeds) the real Python SDK gets retryable refusals over gRPC and HTTP,
//! retries, and nothing reaches the exporter.

mod common;

use common::{Collector, free_port, sdk_send, sink::Sink};

#[test]
fn above_the_limit_clients_are_refused_retryably() {
    let sink = Sink::start();
    let (grpc, http, health, metrics) = (free_port(), free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
processors:
  memory_limiter: {{ check_interval: 100ms, limit_mib: 1 }}
  batch: {{}}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlp_grpc] }}
"#,
        sink = sink.port
    );
    let c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let (ok, _, err) = sdk_send(
        &format!("127.0.0.1:{grpc}"),
        "grpc",
        "traces",
        3,
        "ml-grpc",
        &["--timeout", "3"],
    );
    assert!(!ok, "the SDK must not succeed above the limit");
    assert!(
        err.contains("Transient error StatusCode.UNAVAILABLE"),
        "gRPC refusal must be retryable:\n{err}"
    );
    assert!(err.contains("high memory usage"), "{err}");
    let (ok, _, err) = sdk_send(
        &format!("http://127.0.0.1:{http}"),
        "http",
        "traces",
        3,
        "ml-http",
        &["--timeout", "3"],
    );
    assert!(!ok);
    // 503 with Retry-After: 1, which the SDK honours.
    assert!(
        err.contains("Transient error Service Unavailable") && err.contains("retrying in 1.00s"),
        "HTTP refusal must be a retryable 503:\n{err}"
    );
    assert_eq!(sink.store.span_count(), 0);
    assert!(c.metric("otelcol_processor_refused_items_total{processor=\"memory_limiter\",pipeline=\"traces\",otel_signal=\"traces\"}") >= 6.0);
    assert!(
        c.metric("otelcol_receiver_refused_spans_total{receiver=\"otlp\",transport=\"grpc\"}")
            >= 3.0
    );
    assert!(
        c.logs().contains("memory usage above the soft limit"),
        "{}",
        c.logs()
    );
}
