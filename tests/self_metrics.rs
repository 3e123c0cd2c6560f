//! The collector's own metrics have the names, types and labels the OpenTelemetry Collector's
//! Prometheus reader writes, so its dashboards and alerts work unchanged.
//!
//! The list is the `basic`-level table of the Collector's documentation, "Internal telemetry",
//! "Lists of internal metrics" (opentelemetry.io, content/en/docs/collector/internal-telemetry.md
//! at commit 999914e3aa06e3732f750df71b0734e41bcbfea9), with the names as the Go SDK's
//! Prometheus exporter writes them (the unit as a suffix: `otelcol_process_memory_rss_bytes`;
//! counters' samples with `_total`), plus what that table predates and the Collector now has
//! (`otelcol_receiver_failed_*`, `otelcol_exporter_queue_batch_send_size`). Label sets are those
//! of the Collector's helpers' `metadata.yaml` (receiverhelper: `receiver`, `transport`;
//! exporterhelper: `exporter`, and `data_type` on the queue gauges; processorhelper: `processor`, `otel_signal`; batchprocessor:
//! `processor`); ferrotel adds `pipeline` (and `otel_signal`) to processor metrics.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Collector, export_traces, free_port, one_span, wait_until};

/// (family name as in `# TYPE`, type, labels that must be on its samples)
const DOCUMENTED: &[(&str, &str, &[&str])] = &[
    (
        "otelcol_exporter_enqueue_failed_log_records",
        "counter",
        &["exporter"],
    ),
    (
        "otelcol_exporter_enqueue_failed_metric_points",
        "counter",
        &["exporter"],
    ),
    (
        "otelcol_exporter_enqueue_failed_spans",
        "counter",
        &["exporter"],
    ),
    (
        "otelcol_exporter_queue_capacity",
        "gauge",
        &["exporter", "data_type"],
    ),
    (
        "otelcol_exporter_queue_size",
        "gauge",
        &["exporter", "data_type"],
    ),
    (
        "otelcol_exporter_send_failed_log_records",
        "counter",
        &["exporter"],
    ),
    (
        "otelcol_exporter_send_failed_metric_points",
        "counter",
        &["exporter"],
    ),
    (
        "otelcol_exporter_send_failed_spans",
        "counter",
        &["exporter"],
    ),
    (
        "otelcol_exporter_sent_log_records",
        "counter",
        &["exporter"],
    ),
    (
        "otelcol_exporter_sent_metric_points",
        "counter",
        &["exporter"],
    ),
    ("otelcol_exporter_sent_spans", "counter", &["exporter"]),
    ("otelcol_process_cpu_seconds", "counter", &[]),
    ("otelcol_process_memory_rss_bytes", "gauge", &[]),
    ("otelcol_process_uptime_seconds", "counter", &[]),
    (
        "otelcol_processor_batch_batch_send_size",
        "histogram",
        &["processor"],
    ),
    (
        "otelcol_processor_batch_batch_size_trigger_send",
        "counter",
        &["processor"],
    ),
    (
        "otelcol_processor_batch_timeout_trigger_send",
        "counter",
        &["processor"],
    ),
    (
        "otelcol_processor_incoming_items",
        "counter",
        &["processor", "otel_signal"],
    ),
    (
        "otelcol_processor_outgoing_items",
        "counter",
        &["processor", "otel_signal"],
    ),
    (
        "otelcol_receiver_accepted_log_records",
        "counter",
        &["receiver", "transport"],
    ),
    (
        "otelcol_receiver_accepted_metric_points",
        "counter",
        &["receiver", "transport"],
    ),
    (
        "otelcol_receiver_accepted_spans",
        "counter",
        &["receiver", "transport"],
    ),
    (
        "otelcol_receiver_refused_log_records",
        "counter",
        &["receiver", "transport"],
    ),
    (
        "otelcol_receiver_refused_metric_points",
        "counter",
        &["receiver", "transport"],
    ),
    (
        "otelcol_receiver_refused_spans",
        "counter",
        &["receiver", "transport"],
    ),
    // Newer than the table.
    (
        "otelcol_receiver_failed_log_records",
        "counter",
        &["receiver", "transport"],
    ),
    (
        "otelcol_receiver_failed_metric_points",
        "counter",
        &["receiver", "transport"],
    ),
    (
        "otelcol_receiver_failed_spans",
        "counter",
        &["receiver", "transport"],
    ),
    (
        "otelcol_exporter_queue_batch_send_size",
        "histogram",
        &["exporter"],
    ),
];

/// In the table, not in ferrotel, and why.
const NOT_IN_FERROTEL: &[(&str, &str)] = &[
    (
        "otelcol_process_runtime_heap_alloc_bytes",
        "Go runtime statistics; ferrotel is not Go",
    ),
    (
        "otelcol_process_runtime_total_alloc_bytes",
        "Go runtime statistics",
    ),
    (
        "otelcol_process_runtime_total_sys_memory_bytes",
        "Go runtime statistics",
    ),
    (
        "otelcol_processor_batch_metadata_cardinality",
        "the batch processor has no metadata_keys yet",
    ),
    (
        "otelcol_scraper_errored_metric_points",
        "no scraper receivers yet (issue 16)",
    ),
    (
        "otelcol_scraper_scraped_metric_points",
        "no scraper receivers yet (issue 16)",
    ),
];

/// `# TYPE` of each family, and the label names seen on its samples.
fn families(text: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let mut out: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap();
            out.entry(name.into()).or_default().0 = ty.into();
        }
    }
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let name_end = l.find(['{', ' ']).unwrap_or(l.len());
        let sample = &l[..name_end];
        let family = out
            .keys()
            .filter(|f| sample.starts_with(f.as_str()))
            .max_by_key(|f| f.len())
            .cloned();
        let (Some(f), Some(labels)) = (family, l[name_end..].strip_prefix('{')) else {
            continue;
        };
        let labels = labels.split('}').next().unwrap_or_default();
        for kv in labels.split("\",") {
            if let Some((k, _)) = kv.split_once('=') {
                out.get_mut(&f).unwrap().1.insert(k.to_owned());
            }
        }
    }
    out
}

#[test]
fn self_metric_names_types_and_labels_are_the_collectors() {
    let (grpc, health, metrics, plain) = (free_port(), free_port(), free_port(), free_port());
    let sink = free_port();
    let c = Collector::start(
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
processors:
  batch: {{ timeout: 50ms }}
exporters:
  otlp_grpc:
    endpoint: "127.0.0.1:{sink}"
    tls: {{ insecure: true }}
    sending_queue: {{ batch: {{ flush_timeout: 50ms }} }}
    retry_on_failure: {{ enabled: false }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry:
    metrics:
      level: normal
      readers:
        - pull: {{ exporter: {{ prometheus: {{ host: 127.0.0.1, port: {metrics} }} }} }}
        - pull:
            exporter:
              prometheus: {{ host: 127.0.0.1, port: {plain}, without_units: true, without_type_suffix: true }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [batch], exporters: [otlp_grpc] }}
"#
        ),
        &[],
        Some(health),
        Some(metrics),
    );
    // Traffic, so every family has a series (the exporter's backend is down: failures too).
    let rt = tokio::runtime::Runtime::new().unwrap();
    export_traces(&rt, grpc, one_span(1, 1, "a")).unwrap();
    wait_until("a batch sent", Duration::from_secs(10), || {
        c.self_metrics()
            .contains("otelcol_processor_batch_batch_send_size_count")
    });
    let text = c.self_metrics();
    let fams = families(&text);
    let mut problems = Vec::new();
    for (name, ty, labels) in DOCUMENTED {
        match fams.get(*name) {
            None => problems.push(format!("{name}: missing")),
            Some((t, _)) if t != ty => problems.push(format!("{name}: type {t}, not {ty}")),
            Some((_, seen)) => {
                for l in *labels {
                    // A family with no series yet has no labels to check.
                    if !seen.is_empty() && !seen.contains(*l) {
                        problems.push(format!("{name}: no `{l}` label (has {seen:?})"));
                    }
                }
            }
        }
    }
    for (name, _) in NOT_IN_FERROTEL {
        assert!(!fams.contains_key(*name), "{name} is listed as absent");
    }
    assert!(problems.is_empty(), "{problems:#?}\n{text}");
    // The samples of counters carry `_total`, and the families that have series have the labels.
    for sample in [
        "otelcol_process_cpu_seconds_total ",
        "otelcol_process_uptime_seconds_total ",
        "otelcol_process_memory_rss_bytes ",
        "otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"} 1",
        "otelcol_processor_batch_batch_send_size_count{processor=\"batch\"",
    ] {
        assert!(text.contains(sample), "{sample} in:\n{text}");
    }
    assert!(
        fams["otelcol_processor_incoming_items"]
            .1
            .contains("pipeline"),
        "the pipeline label is filled"
    );

    // The second reader: no unit suffixes, no `_total`.
    let (_, plain_text) = common::http_get(plain, "/metrics").unwrap();
    for sample in [
        "otelcol_process_memory_rss ",
        "otelcol_process_uptime ",
        "otelcol_process_cpu_seconds ",
        "otelcol_receiver_accepted_spans{receiver=\"otlp\",transport=\"grpc\"} 1",
    ] {
        assert!(plain_text.contains(sample), "{sample} in:\n{plain_text}");
    }
    assert!(!plain_text.contains("_total"), "{plain_text}");
    assert!(!plain_text.contains("_rss_bytes"), "{plain_text}");
}
