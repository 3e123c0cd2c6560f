//! The `memory_limiter` processor from the outside: above its limit (here 1 MiB, which any
//! process exceeds) the receivers admit no request (see `admission`), the real Python SDK gets
//! retryable refusals over gRPC and HTTP, retries, and nothing reaches the exporter. (The
//! processor's own refusal, for receivers that do not admit by memory, is unit-tested.)

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
    // Resident memory is above the hard limit, so requests are not even admitted: the refusal
    // is RESOURCE_EXHAUSTED with RetryInfo, which the SDK retries.
    assert!(
        err.contains("Transient error StatusCode.RESOURCE_EXHAUSTED"),
        "gRPC refusal must be retryable:\n{err}"
    );
    assert!(err.contains("memory is in use"), "{err}");
    let (ok, _, err) = sdk_send(
        &format!("http://127.0.0.1:{http}"),
        "http",
        "traces",
        3,
        "ml-http",
        &["--timeout", "3"],
    );
    assert!(!ok);
    // 429 with Retry-After: 1, which the SDK honours.
    assert!(
        err.contains("Transient error Too Many Requests") && err.contains("retrying in 1.00s"),
        "HTTP refusal must be a retryable 429:\n{err}"
    );
    assert_eq!(sink.store.span_count(), 0);
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
