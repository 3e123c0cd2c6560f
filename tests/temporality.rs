//! The temporality processors with the official OpenTelemetry Python SDK: its cumulative
//! counter through `cumulativetodelta` arrives as deltas that add up to the SDK's total, and its
//! delta counter through `deltatocumulative` arrives as a running total ending at it.

mod common;

use std::time::Duration;

use common::sink::Sink;
use common::{Collector, free_port, sdk_send_env, wait_until};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, metric::Data, number_data_point,
};

/// The `e2e.requests` points of `service`: (temporality, route, value), in arrival order.
fn counter_points(sink: &Sink, service: &str) -> Vec<(i32, String, f64)> {
    let mut out = Vec::new();
    for rm in sink.store.metrics.lock().unwrap().iter() {
        let svc = rm.resource.as_ref().and_then(|r| {
            r.attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .map(|kv| format!("{:?}", kv.value))
        });
        if !svc.is_some_and(|s| s.contains(&format!("\"{service}\""))) {
            continue;
        }
        for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            if m.name != "e2e.requests" {
                continue;
            }
            let Some(Data::Sum(s)) = &m.data else {
                continue;
            };
            for p in &s.data_points {
                let v = match p.value {
                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                    Some(number_data_point::Value::AsDouble(d)) => d,
                    None => continue,
                };
                let route = p
                    .attributes
                    .iter()
                    .find(|kv| kv.key == "route")
                    .map(|kv| format!("{:?}", kv.value))
                    .unwrap_or_default();
                out.push((s.aggregation_temporality, route, v));
            }
        }
    }
    out
}

#[test]
fn sdk_counters_change_temporality() {
    let sink = Sink::start();
    let (to_delta, to_cum, health, metrics) = (free_port(), free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp/cumulative: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{to_delta}" }} }} }}
  otlp/delta: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{to_cum}" }} }} }}
processors:
  cumulative_to_delta:
  deltatocumulative: {{ max_stale: 10m }}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    metrics/a: {{ receivers: [otlp/cumulative], processors: [cumulative_to_delta], exporters: [otlp_grpc] }}
    metrics/b: {{ receivers: [otlp/delta], processors: [deltatocumulative], exporters: [otlp_grpc] }}
"#,
        sink = sink.port
    );
    let _c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let (ok, report, err) = sdk_send_env(
        &format!("127.0.0.1:{to_delta}"),
        "grpc",
        "metrics",
        6,
        "t1",
        &["--service", "to-delta"],
        &[],
    );
    assert!(ok, "{err}");
    let total = report["metrics"]["counter_total"].as_f64().unwrap();
    let delta = AggregationTemporality::Delta as i32;
    wait_until(
        "deltas adding up to the total",
        Duration::from_secs(20),
        || {
            let pts = counter_points(&sink, "to-delta");
            pts.iter().all(|(t, _, _)| *t == delta)
                && pts.iter().map(|(_, _, v)| v).sum::<f64>() == total
        },
    );

    let (ok, report, err) = sdk_send_env(
        &format!("127.0.0.1:{to_cum}"),
        "grpc",
        "metrics",
        6,
        "t2",
        &["--service", "to-cumulative"],
        &[("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")],
    );
    assert!(ok, "{err}");
    let total = report["metrics"]["counter_total"].as_f64().unwrap();
    let cumulative = AggregationTemporality::Cumulative as i32;
    // Per route (one stream each) a running total that never goes down; the last ones add
    // up to the SDK's total.
    wait_until(
        "running totals ending at the SDK's",
        Duration::from_secs(20),
        || {
            let pts = counter_points(&sink, "to-cumulative");
            let mut last: std::collections::BTreeMap<&str, f64> = Default::default();
            let mut rising = true;
            for (t, route, v) in &pts {
                rising &= *t == cumulative && last.get(route.as_str()).is_none_or(|l| l <= v);
                last.insert(route, *v);
            }
            !pts.is_empty() && rising && last.values().sum::<f64>() == total
        },
    );
}
