//! Health that tells the truth: with `check_collector_pipeline` (health_check) or component
//! health (healthcheckv2), a backend that is down for longer than the configured window turns
//! the collector unhealthy, naming the failing exporter; once it is back, healthy again.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Collector, export_traces, free_port, http_get, one_span, sink::Sink, wait_until};

fn json(port: u16, path: &str) -> (u16, serde_json::Value) {
    let (code, body) = http_get(port, path).expect("an answer");
    (
        code,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

#[test]
fn a_backend_down_past_the_window_is_unhealthy_and_named_then_healthy_again() {
    let sink = Sink::start();
    let (grpc, v1, v2, metrics) = (free_port(), free_port(), free_port(), free_port());
    let c = Collector::start(
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
exporters:
  otlp_grpc/backend:
    endpoint: "127.0.0.1:{}"
    tls: {{ insecure: true }}
    retry_on_failure: {{ initial_interval: 50ms, max_interval: 100ms, max_elapsed_time: 60s }}
extensions:
  health_check:
    endpoint: "127.0.0.1:{v1}"
    check_collector_pipeline: {{ enabled: true, interval: 2s, exporter_failure_threshold: 5 }}
  healthcheckv2:
    use_v2: true
    component_health: {{ include_recoverable_errors: true, recovery_duration: 1s }}
    http:
      endpoint: "127.0.0.1:{v2}"
      status: {{ path: /health/status }}
service:
  extensions: [health_check, healthcheckv2]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp_grpc/backend] }}
"#,
            sink.port
        ),
        &[],
        Some(v1),
        Some(metrics),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    export_traces(&rt, grpc, one_span(1, 1, "up")).unwrap();
    wait_until("delivered", Duration::from_secs(10), || {
        sink.store.span_count() == 1
    });
    let (code, v) = json(v2, "/health/status?verbose");
    assert_eq!(code, 200, "{v}");
    let exporter = &v["components"]["pipeline:traces"]["components"]["exporter:otlp_grpc/backend"];
    assert_eq!(exporter["status"], "StatusOK", "{v}");
    assert_eq!(
        v["components"]["pipeline:traces"]["components"]["receiver:otlp"]["status"],
        "StatusOK"
    );
    // Not verbose: the collector only.
    let (_, brief) = json(v2, "/health/status");
    assert!(
        brief.get("components").is_none() && brief["healthy"] == true,
        "{brief}"
    );

    // The backend goes down: the exporter retries and fails.
    sink.store.refuse.store(true, Ordering::SeqCst);
    export_traces(&rt, grpc, one_span(1, 2, "down")).unwrap();
    // Seen within recovery_duration (polled every 50 ms, the error is young): still healthy.
    let mut first = None;
    wait_until("a recoverable error", Duration::from_secs(5), || {
        let (code, v) = json(v2, "/health/status");
        let seen = v["status"] == "StatusRecoverableError";
        if seen {
            first = Some((code, v));
        }
        seen
    });
    let (code, v) = first.unwrap();
    assert_eq!((code, &v["healthy"]), (200, &true.into()), "{v}");
    wait_until(
        "healthcheckv2 unhealthy after 1s",
        Duration::from_secs(5),
        || json(v2, "/health/status").0 == 500,
    );
    let (_, v) = json(v2, "/health/status?verbose");
    let exporter = &v["components"]["pipeline:traces"]["components"]["exporter:otlp_grpc/backend"];
    assert_eq!(exporter["healthy"], false, "{v}");
    assert!(
        exporter["error"].as_str().unwrap().contains("Unavailable"),
        "{v}"
    );
    assert_eq!(v["components"]["pipeline:traces"]["healthy"], false);
    let (code, p) = json(v2, "/health/status?pipeline=traces");
    assert_eq!(
        (code, &p["status"]),
        (500, &"StatusRecoverableError".into()),
        "{p}"
    );
    // health_check: five failures within two seconds.
    wait_until("health_check unhealthy", Duration::from_secs(5), || {
        http_get(v1, "/").is_some_and(|(code, _)| code == 503)
    });
    let (_, v) = json(v1, "/");
    assert_eq!(v["status"], "Server not available", "{v}");
    assert!(v["error"].as_str().unwrap().contains("Unavailable"), "{v}");
    let (_, v) = json(v1, "/?verbose");
    assert_eq!(
        v["components"]["pipeline:traces"]["components"]["exporter:otlp_grpc/backend"]["status"],
        "StatusRecoverableError"
    );

    // Back: the retry succeeds and both are healthy again (health_check once the failures
    // have left its two-second window).
    sink.store.refuse.store(false, Ordering::SeqCst);
    wait_until(
        "the retried span delivered",
        Duration::from_secs(10),
        || sink.store.span_count() >= 2,
    );
    wait_until("healthcheckv2 healthy", Duration::from_secs(5), || {
        json(v2, "/health/status").0 == 200
    });
    assert_eq!(json(v2, "/health/status").1["status"], "StatusOK");
    wait_until("health_check healthy", Duration::from_secs(10), || {
        http_get(v1, "/").is_some_and(|(code, _)| code == 200)
    });
    drop(c);
}
