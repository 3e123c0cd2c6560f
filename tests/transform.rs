//! The `transform` processor end to end: spans and logs from the OpenTelemetry Python SDK are
//! edited by OTTL statements in both config forms on their way to a sink; a failing statement
//! under `ignore` costs nothing else, under `propagate` the request is refused and counted.
//! `redaction` and `groupbyattrs` on the same SDK spans.

mod common;

use std::time::Duration;

use common::sink::Sink;
use common::{Collector, attr_text, free_port, sdk_send, wait_until};

fn config(
    grpc: u16,
    health: u16,
    metrics: u16,
    sink: u16,
    transform: &str,
    signal: &str,
) -> String {
    format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
processors:
  transform:
{transform}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    {signal}: {{ receivers: [otlp], processors: [transform], exporters: [otlp_grpc] }}
"#
    )
}

#[test]
fn sdk_spans_and_logs_are_edited_by_statements() {
    let sink = Sink::start();
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let transform = r#"
    error_mode: ignore
    trace_statements:
      - context: span
        statements:
          - set(attributes["seq.hash"], SHA256(String(attributes["seq"]))) where attributes["seq"] != nil
          - delete_key(attributes, "attr.array")
          - set(name, Concat(["renamed", name], ":")) where kind == SPAN_KIND_SERVER
          - replace_pattern(attributes["attr.str"], "välue-(\\d+)", "value $$1")
          # Fails on every span (Len of an int) and is ignored: the next statement still runs.
          - set(attributes["bad"], Len(attributes["seq"]))
          - set(attributes["after"], true)
      - set(resource.attributes["deployment.environment.name"], "e2e")
    log_statements:
      - context: log
        conditions: ['severity_number == SEVERITY_NUMBER_WARN']
        statements:
          - merge_maps(attributes, ExtractPatterns(body, "^log line (?P<line>\\d+) of (?P<run>\\S+)"), "upsert")
          - set(attributes["line.int"], Int(attributes["line"]) * 10)
          - set(severity_text, "WARNING")
"#;
    let cfg = format!(
        "{}    logs: {{ receivers: [otlp], processors: [transform], exporters: [otlp_grpc] }}\n",
        config(grpc, health, metrics, sink.port, transform, "traces")
    );
    let mut c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let n = 10;
    let (ok, sent, err) = sdk_send(
        &format!("http://127.0.0.1:{grpc}"),
        "grpc",
        "traces,logs",
        n,
        "transform",
        &[],
    );
    assert!(ok, "{err}");
    assert_eq!(sent["spans"].as_array().unwrap().len(), 2 * n);
    wait_until("every span and log", Duration::from_secs(20), || {
        sink.store.span_count() >= 2 * n && sink.store.log_count() >= n
    });
    let spans = sink.store.spans.lock().unwrap().clone();
    let mut seen = 0;
    for rs in &spans {
        let res = &rs.resource.as_ref().unwrap().attributes;
        assert_eq!(
            attr_text(res, "deployment.environment.name").as_deref(),
            Some("e2e")
        );
        for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
            seen += 1;
            let seq = attr_text(&s.attributes, "seq").expect("seq");
            let want_hash = {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(seq.as_bytes()))
            };
            assert_eq!(
                attr_text(&s.attributes, "seq.hash"),
                Some(want_hash),
                "{}",
                s.name
            );
            assert!(attr_text(&s.attributes, "attr.array").is_none());
            assert!(attr_text(&s.attributes, "bad").is_none());
            assert_eq!(
                attr_text(&s.attributes, "after").as_deref(),
                Some("Some(BoolValue(true))")
            );
            if s.name.starts_with("renamed:parent-") {
                assert_eq!(s.kind, 2);
                assert_eq!(
                    attr_text(&s.attributes, "attr.str"),
                    Some(format!("value {seq} ✓"))
                );
            } else {
                assert!(s.name.starts_with("child-"), "{}", s.name);
            }
        }
    }
    assert_eq!(seen, 2 * n, "each span once");
    let logs = sink.store.logs.lock().unwrap().clone();
    let records: Vec<_> = logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .collect();
    assert_eq!(records.len(), n);
    for l in records {
        let seq = attr_text(&l.attributes, "seq").expect("seq");
        assert_eq!(attr_text(&l.attributes, "line"), Some(seq.clone()));
        assert_eq!(
            attr_text(&l.attributes, "run").as_deref(),
            Some("transform")
        );
        let want = seq.parse::<i64>().unwrap() * 10;
        assert_eq!(attr_text(&l.attributes, "line.int"), Some(want.to_string()));
        assert_eq!(l.severity_text, "WARNING");
    }
    assert_eq!(
        c.metric("otelcol_processor_dropped_items_total{processor=\"transform\",pipeline=\"traces\",otel_signal=\"traces\",reason=\"transform_failed\"}"),
        0.0,
        "ignored errors drop nothing"
    );
    c.terminate();
}

#[test]
fn propagate_refuses_the_request_and_counts_it() {
    let sink = Sink::start();
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let transform = r#"
    log_statements:
      - context: log
        statements:
          - set(attributes["n"], Len(severity_number))
"#;
    let cfg = config(grpc, health, metrics, sink.port, transform, "logs");
    let mut c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let n = 5;
    let (ok, _sent, _err) = sdk_send(
        &format!("http://127.0.0.1:{grpc}"),
        "grpc",
        "logs",
        n,
        "transform-propagate",
        &[],
    );
    assert!(!ok, "the SDK is told its logs were refused");
    let series = "otelcol_processor_dropped_items_total{processor=\"transform\",pipeline=\"logs\",otel_signal=\"logs\",reason=\"transform_failed\"}";
    wait_until("the refused logs counted", Duration::from_secs(10), || {
        c.metric(series) >= n as f64
    });
    assert_eq!(sink.store.log_count(), 0, "nothing refused is delivered");
    c.terminate();
}

#[test]
fn redaction_and_groupbyattrs_on_sdk_spans() {
    let sink = Sink::start();
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
processors:
  redaction:
    allowed_keys: [seq, attr.str, attr.double]
    blocked_values: ['välue-\d+']
    summary: debug
  groupbyattrs:
    keys: [attr.double]
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [redaction, groupbyattrs], exporters: [otlp_grpc] }}
"#,
        sink = sink.port
    );
    let mut c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let n = 4;
    let (ok, _sent, err) = sdk_send(
        &format!("http://127.0.0.1:{grpc}"),
        "grpc",
        "traces",
        n,
        "redaction",
        &[],
    );
    assert!(ok, "{err}");
    wait_until("every span", Duration::from_secs(20), || {
        sink.store.span_count() >= 2 * n
    });
    let spans = sink.store.spans.lock().unwrap().clone();
    // The parents (with attr.double = seq + 0.5) each get a resource of their own; the
    // children (no attr.double) stay under the SDK's resource.
    let with_double: Vec<String> = spans
        .iter()
        .filter_map(|rs| attr_text(&rs.resource.as_ref().unwrap().attributes, "attr.double"))
        .collect();
    assert_eq!(with_double.len(), n, "{with_double:?}");
    for rs in &spans {
        for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
            // The SDK's attr.bool and attr.array are not allowed: deleted and listed.
            assert!(attr_text(&s.attributes, "attr.bool").is_none());
            assert!(attr_text(&s.attributes, "attr.array").is_none());
            if s.name.starts_with("parent-") {
                assert_eq!(
                    attr_text(&s.attributes, "attr.str").as_deref(),
                    Some("**** ✓")
                );
                assert_eq!(
                    attr_text(&s.attributes, "redaction.masked.keys").as_deref(),
                    Some("attr.str")
                );
                assert_eq!(
                    attr_text(&s.attributes, "redaction.redacted.keys").as_deref(),
                    Some("attr.array,attr.bool")
                );
                assert!(
                    attr_text(&s.attributes, "attr.double").is_none(),
                    "moved to the resource"
                );
            }
        }
    }
    c.terminate();
}
