//! Connectors end to end: spans from the OpenTelemetry Python SDK go through a `forward`
//! connector to a second pipeline and through `count` to a metrics pipeline; each span arrives
//! once, and the counts are those of what was sent.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::sink::Sink;
use common::{Collector, free_port, sdk_send, wait_until};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};

#[test]
fn forward_and_count_chain_pipelines() {
    let sink = Sink::start();
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
connectors:
  forward:
  count:
    spans:
      trace.span.count: {{}}
      span.errors:
        description: spans that failed
        conditions: ['status.code == STATUS_CODE_ERROR']
      span.by_kind:
        conditions: ['kind == SPAN_KIND_SERVER', 'kind == SPAN_KIND_CLIENT']
        attributes: [{{ key: seq }}]
processors:
  batch: {{ timeout: 100ms }}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces/in: {{ receivers: [otlp], exporters: [forward, count] }}
    traces/out: {{ receivers: [forward], processors: [batch], exporters: [otlp_grpc] }}
    metrics/counts: {{ receivers: [count], exporters: [otlp_grpc] }}
"#,
        sink = sink.port
    );
    let mut c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let n = 20;
    let (ok, sent, err) = sdk_send(
        &format!("http://127.0.0.1:{grpc}"),
        "grpc",
        "traces",
        n,
        "connectors",
        &[],
    );
    assert!(ok, "{err}");
    let sent_ids: Vec<String> = sent["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["span_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent_ids.len(), 2 * n);
    let counted = |name: &str| -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for rm in sink.store.metrics.lock().unwrap().iter() {
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                if m.name != name {
                    continue;
                }
                let Some(Data::Sum(s)) = &m.data else {
                    panic!("{name} is a sum")
                };
                for p in &s.data_points {
                    let key = common::attr_text(&p.attributes, "seq").unwrap_or_default();
                    let Some(number_data_point::Value::AsInt(v)) = p.value else {
                        panic!("an int count")
                    };
                    *out.entry(key).or_default() += v;
                }
            }
        }
        out
    };
    let total = |name: &str| counted(name).values().sum::<i64>();
    wait_until("every span and its count", Duration::from_secs(20), || {
        sink.store.span_count() >= 2 * n && total("trace.span.count") >= 2 * n as i64
    });
    // Each span once, through the forward connector and the second pipeline's batch.
    let mut got: Vec<String> = sink
        .store
        .spans
        .lock()
        .unwrap()
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| hex::encode(&s.span_id))
        .collect();
    got.sort();
    let mut want = sent_ids.clone();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(total("trace.span.count"), 2 * n as i64);
    // Every child span is an error.
    assert_eq!(total("span.errors"), n as i64);
    // The spanevents keep their default count: one event per parent.
    assert_eq!(total("trace.span.event.count"), n as i64);
    // Grouped by the spans' `seq`: a server and a client span each.
    let by_seq = counted("span.by_kind");
    assert_eq!(by_seq.len(), n);
    assert!(by_seq.values().all(|v| *v == 2), "{by_seq:?}");
    // The counts keep the spans' resource.
    let rm = sink.store.metrics.lock().unwrap()[0].clone();
    assert_eq!(
        common::attr_text(&rm.resource.unwrap().attributes, "run.id").as_deref(),
        Some("connectors")
    );
    assert!(c.terminate().success(), "{}", c.logs());
}
