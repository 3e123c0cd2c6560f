//! The collector's own metrics (`metrics.readers[].periodic`) and logs (`logs.processors[]`)
//! pushed over OTLP, gRPC and HTTP, arrive at a second ferrotel and at rotel (an independent
//! OTLP implementation, from PyPI), each forwarding to a sink, with the Collector's names.

mod common;

use std::time::Duration;

use common::{Collector, free_port, sink::Sink, wait_until};
use opentelemetry_proto::tonic::metrics::v1::metric;

fn metric_names(sink: &Sink) -> Vec<(String, String)> {
    sink.store
        .metrics
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| (m.name.clone(), m.unit.clone()))
        .collect()
}

fn log_bodies(sink: &Sink) -> Vec<String> {
    sink.store
        .logs
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .map(|l| common::value_text(&l.body))
        .collect()
}

fn service_name(sink: &Sink) -> Option<String> {
    let m = sink.store.metrics.lock().unwrap();
    let r = m.first()?.resource.as_ref()?;
    r.attributes
        .iter()
        .find(|a| a.key == "service.name")
        .map(|a| common::value_text(&a.value))
}

#[test]
fn own_metrics_and_logs_reach_a_second_ferrotel_and_rotel() {
    // The second ferrotel, forwarding to sink_b.
    let sink_b = Sink::start();
    let (b_grpc, b_http, b_health, b_metrics) =
        (free_port(), free_port(), free_port(), free_port());
    let _b = Collector::start(
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{b_grpc}" }}
      http: {{ endpoint: "127.0.0.1:{b_http}" }}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{b_health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{b_metrics}" }} }}
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [otlp_grpc] }}
    logs: {{ receivers: [otlp], exporters: [otlp_grpc] }}
    traces: {{ receivers: [otlp], exporters: [otlp_grpc] }}
"#,
            sink_b.port
        ),
        &[],
        Some(b_health),
        Some(b_metrics),
    );
    // rotel, forwarding to sink_r.
    let sink_r = Sink::start();
    let (r_grpc, r_http) = (free_port(), free_port());
    let tmp = tempfile::tempdir().unwrap();
    let _rotel = common::Rotel::start(r_grpc, r_http, sink_r.port, tmp.path());

    // The collector under test: two periodic readers and two log processors.
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let a = Collector::start(
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
exporters:
  debug: {{}}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry:
    resource: {{ deployment.environment: test }}
    metrics:
      readers:
        - pull: {{ exporter: {{ prometheus: {{ host: 127.0.0.1, port: {metrics} }} }} }}
        - periodic:
            interval: 300
            exporter: {{ otlp: {{ protocol: grpc, endpoint: "http://127.0.0.1:{b_grpc}" }} }}
        - periodic:
            interval: 300
            exporter:
              otlp:
                protocol: http/protobuf
                endpoint: "http://127.0.0.1:{r_http}"
                temporality_preference: delta
                compression: gzip
    logs:
      processors:
        - batch:
            schedule_delay: 200
            exporter: {{ otlp: {{ protocol: http/protobuf, endpoint: "http://127.0.0.1:{b_http}/v1/logs" }} }}
        - simple:
            exporter: {{ otlp_grpc: {{ endpoint: "http://127.0.0.1:{r_grpc}" }} }}
    traces:
      processors:
        - batch:
            schedule_delay: 200
            exporter:
              otlp:
                protocol: http/protobuf
                endpoint: "http://127.0.0.1:{b_http}"
                headers: [{{ name: x-team, value: platform }}]
  pipelines:
    traces: {{ receivers: [otlp], exporters: [debug] }}
"#
        ),
        &[],
        Some(health),
        Some(metrics),
    );
    for (who, sink) in [("the second ferrotel", &sink_b), ("rotel", &sink_r)] {
        wait_until(
            &format!("own metrics through {who}"),
            Duration::from_secs(20),
            || {
                let names = metric_names(sink);
                names.iter().any(|(n, _)| n == "otelcol_process_uptime")
                    && names
                        .iter()
                        .any(|(n, _)| n == "otelcol_receiver_accepted_spans")
            },
        );
        let names = metric_names(sink);
        assert!(
            names.contains(&("otelcol_process_memory_rss".to_string(), "By".to_string())),
            "{who}: {names:?}"
        );
        assert!(
            names.contains(&("otelcol_process_cpu_seconds".to_string(), "s".to_string())),
            "{who}: {names:?}"
        );
        assert_eq!(service_name(sink).as_deref(), Some("ferrotel"), "{who}");
        wait_until(
            &format!("own logs through {who}"),
            Duration::from_secs(20),
            || {
                log_bodies(sink)
                    .iter()
                    .any(|b| b.contains("everything is ready"))
            },
        );
    }
    // Delta through rotel: each uptime point is an interval's growth, not the total.
    let uptimes = || -> Vec<f64> {
        let m = sink_r.store.metrics.lock().unwrap();
        m.iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == "otelcol_process_uptime")
            .filter_map(|m| match &m.data {
                Some(metric::Data::Sum(s)) => s.data_points.first().and_then(|p| match p.value {
                    Some(
                        opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(
                            v,
                        ),
                    ) => Some(v),
                    _ => None,
                }),
                _ => None,
            })
            .collect()
    };
    wait_until("four delta points", Duration::from_secs(20), || {
        uptimes().len() >= 4
    });
    let u = uptimes();
    // 300 ms apart; a cumulative value would be past a second by the fourth.
    assert!(u[1..].iter().all(|v| *v < 1.0), "{u:?}");
    // The collector's own spans: its start, an export request, a reload.
    let rt = tokio::runtime::Runtime::new().unwrap();
    common::export_traces(&rt, grpc, common::one_span(7, 7, "app")).unwrap();
    a.signal(1);
    let own_spans = || -> Vec<(String, bool)> {
        sink_b
            .store
            .spans
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| {
                (
                    s.name.clone(),
                    s.end_time_unix_nano >= s.start_time_unix_nano,
                )
            })
            .collect()
    };
    wait_until("own spans", Duration::from_secs(20), || {
        let names: Vec<String> = own_spans().into_iter().map(|(n, _)| n).collect();
        ["service.start", "exporter/debug/traces", "service.reload"]
            .iter()
            .all(|w| names.iter().any(|n| n == w))
    });
    assert!(own_spans().iter().all(|(_, ordered)| *ordered));
    drop(a);
}
