//! End to end with the official OpenTelemetry Python SDK as the client: SDK → ferrotel agent
//! (started from `pipelines/agent.yaml` as shipped) → ferrotel gateway → an OTLP sink. Every
//! item must arrive exactly once with its ids and attribute values intact.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Collector, Ports, gateway_config, sdk_send, sink::Sink, wait_until};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

fn attr<'a>(
    attrs: &'a [opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

struct Chain {
    sink: Sink,
    agent: Collector,
    gateway: Collector,
    agent_ports: Ports,
}

fn chain() -> Chain {
    let sink = Sink::start();
    let gw = Ports::new();
    let gateway = Collector::start(
        &gateway_config(gw.grpc, gw.http, gw.health, gw.metrics, sink.port),
        &[],
        Some(gw.health),
        Some(gw.metrics),
    );
    let ap = Ports::new();
    let agent = Collector::shipped(
        "agent.yaml",
        &ap,
        &[(
            "FERROTEL_GATEWAY_ENDPOINT",
            format!("127.0.0.1:{}", gw.grpc),
        )],
    );
    Chain {
        sink,
        agent,
        gateway,
        agent_ports: ap,
    }
}

fn check_run(c: &Chain, report: &serde_json::Value) {
    let run = report["run_id"].as_str().unwrap();
    let sent_spans = report["spans"].as_array().unwrap();
    let sent_logs = report["logs"].as_array().unwrap();
    wait_until(
        "all spans and logs at the sink",
        Duration::from_secs(20),
        || {
            let spans = c.sink.store.spans.lock().unwrap();
            let n = spans
                .iter()
                .filter(|r| {
                    r.resource.as_ref().is_some_and(|res| {
                        attr(&res.attributes, "run.id") == Some(&Value::StringValue(run.into()))
                    })
                })
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum::<usize>();
            let logs = c.sink.store.logs.lock().unwrap();
            let l = logs
                .iter()
                .filter(|r| {
                    r.resource.as_ref().is_some_and(|res| {
                        attr(&res.attributes, "run.id") == Some(&Value::StringValue(run.into()))
                    })
                })
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len())
                .sum::<usize>();
            n >= sent_spans.len() && l >= sent_logs.len()
        },
    );
    // Spans: each once, same ids, attributes intact.
    let spans = c.sink.store.spans.lock().unwrap();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for r in spans.iter() {
        let res = r.resource.as_ref().expect("resource kept");
        if attr(&res.attributes, "run.id") != Some(&Value::StringValue(run.into())) {
            continue;
        }
        assert_eq!(
            attr(&res.attributes, "service.name"),
            Some(&Value::StringValue("sdk-e2e".into()))
        );
        for ss in &r.scope_spans {
            let scope = ss.scope.as_ref().expect("scope kept");
            assert_eq!(
                (scope.name.as_str(), scope.version.as_str()),
                ("ferrotel.e2e", "1.2.3")
            );
            for sp in &ss.spans {
                *seen
                    .entry((hex::encode(&sp.trace_id), hex::encode(&sp.span_id)))
                    .or_default() += 1;
                let seq = match attr(&sp.attributes, "seq") {
                    Some(Value::IntValue(i)) => *i,
                    other => panic!("seq attribute lost: {other:?}"),
                };
                if sp.name.starts_with("parent-") {
                    assert_eq!(
                        attr(&sp.attributes, "attr.str"),
                        Some(&Value::StringValue(format!("välue-{seq} ✓")))
                    );
                    assert_eq!(
                        attr(&sp.attributes, "attr.double"),
                        Some(&Value::DoubleValue(seq as f64 + 0.5))
                    );
                    assert_eq!(
                        attr(&sp.attributes, "attr.bool"),
                        Some(&Value::BoolValue(seq % 2 == 0))
                    );
                    match attr(&sp.attributes, "attr.array") {
                        Some(Value::ArrayValue(a)) => assert_eq!(a.values.len(), 3),
                        other => panic!("array attribute lost: {other:?}"),
                    }
                    assert_eq!(sp.events.len(), 1);
                    assert_eq!(sp.kind, 2, "SERVER");
                } else {
                    assert_eq!(
                        sp.status.as_ref().map(|s| (s.code, s.message.as_str())),
                        Some((2, "boom"))
                    );
                    assert_eq!(sp.parent_span_id.len(), 8);
                }
            }
        }
    }
    for s in sent_spans {
        let key = (
            s["trace_id"].as_str().unwrap().to_owned(),
            s["span_id"].as_str().unwrap().to_owned(),
        );
        assert_eq!(
            seen.get(&key),
            Some(&1),
            "span {key:?} ({}) must arrive exactly once",
            s["name"]
        );
    }
    assert_eq!(seen.len(), sent_spans.len(), "no extra spans");
    drop(spans);

    // Logs: each body once.
    let logs = c.sink.store.logs.lock().unwrap();
    let mut bodies: HashMap<String, usize> = HashMap::new();
    for r in logs.iter() {
        if r.resource.as_ref().is_none_or(|res| {
            attr(&res.attributes, "run.id") != Some(&Value::StringValue(run.into()))
        }) {
            continue;
        }
        for l in r.scope_logs.iter().flat_map(|s| &s.log_records) {
            if let Some(Value::StringValue(b)) = l.body.as_ref().and_then(|b| b.value.as_ref()) {
                *bodies.entry(b.clone()).or_default() += 1;
                assert_eq!(l.severity_number, 13, "WARN");
                assert!(attr(&l.attributes, "seq").is_some());
            }
        }
    }
    for l in sent_logs {
        assert_eq!(
            bodies.get(l["body"].as_str().unwrap()),
            Some(&1),
            "log {} exactly once",
            l["body"]
        );
    }
    assert_eq!(bodies.len(), sent_logs.len());
    drop(logs);

    // Metrics: the SDK exports cumulative state at each flush; check the last counter sum,
    // the histogram count and the gauge.
    wait_until("metrics at the sink", Duration::from_secs(20), || {
        c.sink.store.metrics.lock().unwrap().iter().any(|r| {
            r.resource.as_ref().is_some_and(|res| {
                attr(&res.attributes, "run.id") == Some(&Value::StringValue(run.into()))
            })
        })
    });
    let metrics = c.sink.store.metrics.lock().unwrap();
    let (mut counter, mut hist, mut gauge) = (None, None, None);
    for r in metrics.iter() {
        if r.resource.as_ref().is_none_or(|res| {
            attr(&res.attributes, "run.id") != Some(&Value::StringValue(run.into()))
        }) {
            continue;
        }
        for m in r.scope_metrics.iter().flat_map(|s| &s.metrics) {
            match (m.name.as_str(), &m.data) {
                ("e2e.requests", Some(Data::Sum(s))) => {
                    assert!(s.is_monotonic);
                    let total: i64 = s
                        .data_points
                        .iter()
                        .map(|p| match p.value {
                            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i)) => i,
                            _ => 0,
                        })
                        .sum();
                    counter = Some(total);
                }
                ("e2e.latency", Some(Data::Histogram(h))) => {
                    assert_eq!(m.unit, "ms");
                    hist = Some(h.data_points[0].count);
                }
                ("e2e.temperature", Some(Data::Gauge(g))) => {
                    gauge = g.data_points[0].value;
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        counter,
        report["metrics"]["counter_total"].as_i64(),
        "counter total"
    );
    assert_eq!(
        hist,
        report["metrics"]["histogram_count"].as_u64(),
        "histogram count"
    );
    assert_eq!(
        gauge,
        Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(21.5)),
        "gauge value"
    );
}

#[test]
fn sdk_to_agent_to_gateway_over_grpc_and_http() {
    let c = chain();
    let ap = &c.agent_ports;
    let (ok, report, err) = sdk_send(
        &format!("127.0.0.1:{}", ap.grpc),
        "grpc",
        "traces,metrics,logs",
        25,
        "grpc-run",
        &[],
    );
    assert!(ok, "SDK (gRPC, gzip) export failed: {err}");
    check_run(&c, &report);
    let (ok, report, err) = sdk_send(
        &format!("http://127.0.0.1:{}", ap.http),
        "http",
        "traces,metrics,logs",
        25,
        "http-run",
        &["--compression", "gzip"],
    );
    assert!(ok, "SDK (HTTP/protobuf, gzip) export failed: {err}");
    check_run(&c, &report);

    // Self-metrics add up on both hops.
    let accepted = c
        .agent
        .metric("otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"}")
        + c.agent
            .metric("otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"http\"}");
    assert_eq!(accepted, 100.0);
    wait_until("agent exporter counted", Duration::from_secs(5), || {
        c.agent
            .metric("otelcol_exporter_sent_spans_total{exporter=\"otlp_grpc/gateway\"}")
            == 100.0
    });
    wait_until("gateway exporter counted", Duration::from_secs(5), || {
        c.gateway
            .metric("otelcol_exporter_sent_spans_total{exporter=\"otlp_grpc/sink\"}")
            == 100.0
    });
    assert_eq!(
        c.agent
            .metric("otelcol_exporter_send_failed_spans_total{exporter=\"otlp_grpc/gateway\"}"),
        0.0
    );
}

/// The agent's container log pipeline as shipped: a `/var/log/pods`-shaped tree (containerd
/// format) → the agent from `pipelines/agent.yaml` (its own pod named by `POD_NAME` and
/// `POD_NAMESPACE`, as the DaemonSet's downward API sets them) → the gateway → the sink.
#[test]
fn agent_ships_container_logs_but_not_its_own() {
    let sink = Sink::start();
    let gw = Ports::new();
    let _gateway = Collector::start(
        &gateway_config(gw.grpc, gw.http, gw.health, gw.metrics, sink.port),
        &[],
        Some(gw.health),
        Some(gw.metrics),
    );
    let pods = tempfile::tempdir().unwrap();
    let app = pods
        .path()
        .join("shop_cart-5f7d_7a1c9a8e-0000-1111-2222-333344445555/server");
    let own = pods
        .path()
        .join("observability_ferrotel-agent-x2x9q_9b2d0c1f-0000-1111-2222-333344445555/ferrotel");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::create_dir_all(&own).unwrap();
    // Files exist before the agent starts (start_at: end): only what follows is shipped.
    std::fs::write(
        app.join("0.log"),
        "2024-05-01T10:00:00.000000000Z stdout F before start\n",
    )
    .unwrap();
    std::fs::write(own.join("0.log"), "").unwrap();
    let ap = Ports::new();
    // Later variables win: FERROTEL_POD_LOGS points at this test's tree.
    let _agent = Collector::shipped(
        "agent.yaml",
        &ap,
        &[
            (
                "FERROTEL_GATEWAY_ENDPOINT",
                format!("127.0.0.1:{}", gw.grpc),
            ),
            ("FERROTEL_POD_LOGS", pods.path().display().to_string()),
            ("POD_NAME", "ferrotel-agent-x2x9q".into()),
            ("POD_NAMESPACE", "observability".into()),
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let append = |p: &std::path::Path, text: &str| {
        let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    };
    append(
        &app.join("0.log"),
        "2024-05-01T10:00:01.000000000Z stdout P checkout \n2024-05-01T10:00:01.000000000Z stdout F done\n2024-05-01T10:00:02.000000000Z stderr F payment failed\n",
    );
    append(
        &own.join("0.log"),
        "2024-05-01T10:00:01.000000000Z stdout F the agent's own line\n",
    );
    wait_until(
        "two container records at the sink",
        Duration::from_secs(15),
        || sink.store.log_count() >= 2,
    );
    std::thread::sleep(Duration::from_millis(800));
    let logs = sink.store.logs.lock().unwrap().clone();
    let mut bodies = Vec::new();
    for rl in &logs {
        let res = &rl.resource.as_ref().unwrap().attributes;
        for r in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            let Some(Value::StringValue(b)) = r.body.as_ref().and_then(|b| b.value.as_ref()) else {
                panic!("{r:?}")
            };
            bodies.push(b.clone());
            assert!(
                matches!(attr(res, "k8s.pod.name"), Some(Value::StringValue(p)) if p == "cart-5f7d")
            );
            assert!(
                matches!(attr(res, "k8s.namespace.name"), Some(Value::StringValue(n)) if n == "shop")
            );
            assert!(matches!(
                attr(&r.attributes, "log.iostream"),
                Some(Value::StringValue(_))
            ));
        }
    }
    bodies.sort();
    assert_eq!(bodies, ["checkout done", "payment failed"]);
}
