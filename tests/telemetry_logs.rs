//! `service.telemetry.logs` as the Collector takes it: JSON lines with zap's keys, initial
//! fields, several outputs, sampling that says what it left out; errors with their causes.

mod common;

use std::time::Duration;

use common::{Collector, export_traces, free_port, one_span, wait_until};

#[test]
fn json_logs_with_initial_fields_sampling_and_two_outputs() {
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    // Nothing listens here: every send fails at connect.
    let down = free_port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ferrotel.jsonl");
    let c = Collector::start(
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
exporters:
  otlp_grpc:
    endpoint: "127.0.0.1:{down}"
    tls: {{ insecure: true }}
    retry_on_failure: {{ initial_interval: 10ms, max_interval: 20ms, max_elapsed_time: 60s }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry:
    metrics: {{ address: "127.0.0.1:{metrics}" }}
    logs:
      level: INFO
      encoding: json
      initial_fields: {{ cluster: test-1, shard: 3 }}
      output_paths: [stderr, "{}"]
      sampling: {{ tick: 1s, initial: 2, thereafter: 0 }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp_grpc] }}
"#,
            file.display()
        ),
        &[("RUST_LOG", String::new())],
        Some(health),
        Some(metrics),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    export_traces(&rt, grpc, one_span(1, 1, "a")).unwrap();
    wait_until("a sampling summary", Duration::from_secs(15), || {
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .contains("log sampling left out")
    });
    std::thread::sleep(Duration::from_millis(1200));
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for l in &lines {
        assert!(
            l["level"].is_string() && l["ts"].is_f64() && l["msg"].is_string(),
            "{l}"
        );
        assert_eq!(l["cluster"], "test-1", "{l}");
        assert_eq!(l["shard"], "3", "{l}");
    }
    assert!(lines.iter().any(|l| l["msg"] == "starting ferrotel"));
    // The retries fail every 10-20 ms; sampling keeps two a second and says how many it left.
    let retries: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["msg"] == "send failed; will retry")
        .collect();
    let summaries: Vec<u64> = lines
        .iter()
        .filter(|l| {
            l["msg"]
                .as_str()
                .unwrap_or_default()
                .starts_with("log sampling left out")
        })
        .map(|l| l["dropped"].as_u64().unwrap())
        .collect();
    assert!(!retries.is_empty(), "{text}");
    assert!(
        !summaries.is_empty() && summaries.iter().sum::<u64>() > 10,
        "{summaries:?}\n{text}"
    );
    let elapsed_ticks = summaries.len() as u64 + 2;
    assert!(
        (retries.len() as u64) <= 2 * elapsed_ticks,
        "{} retry lines in about {elapsed_ticks} ticks",
        retries.len()
    );
    // The error names its cause, not just "transport error".
    let error = retries[0]["error"].as_str().unwrap();
    assert!(
        error.to_lowercase().contains("connection refused"),
        "the cause chain is logged: {error}"
    );
    // The same lines on stderr.
    assert!(c.logs().contains("\"cluster\":\"test-1\""));
}

/// What reading the config warns about (an unset variable) is logged once the logger is up,
/// not lost because the logger is configured by that same config.
#[test]
fn warnings_from_reading_the_config_reach_the_log() {
    let (health, metrics) = (free_port(), free_port());
    let c = Collector::start(
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{}" }}
exporters:
  debug:
    verbosity: basic${{env:FERROTEL_TEST_SURELY_UNSET}}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [debug] }}
"#,
            free_port()
        ),
        &[],
        Some(health),
        Some(metrics),
    );
    let logs = c.logs();
    assert!(
        logs.contains("environment variable is not set")
            && logs.contains("FERROTEL_TEST_SURELY_UNSET"),
        "{logs}"
    );
}
