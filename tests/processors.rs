//! Processors on real traffic: the official OpenTelemetry Python SDK sends to ferrotel, which
//! runs the processor under test and exports over OTLP to an in-test sink; the sink's content
//! is checked item by item against what the SDK reports it sent.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::sink::Sink;
use common::{Collector, free_port, sdk_send, wait_until};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

/// A collector with `processors` (YAML mapping body, indented by 2) on every pipeline, in the
/// order `chain`, exporting to `sink`.
fn collector(processors: &str, chain: &str, sink: u16) -> (Collector, u16) {
    collector_chains(processors, [chain; 3], sink)
}

/// [`collector`] with a processor chain per pipeline: traces, metrics, logs.
fn collector_chains(processors: &str, chains: [&str; 3], sink: u16) -> (Collector, u16) {
    let [traces, metrics_chain, logs] = chains;
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let c = Collector::start(
        &format!(
            r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
processors:
{processors}
exporters:
  otlp_grpc/sink:
    endpoint: "127.0.0.1:{sink}"
    tls: {{ insecure: true }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [{traces}], exporters: [otlp_grpc/sink] }}
    metrics: {{ receivers: [otlp], processors: [{metrics_chain}], exporters: [otlp_grpc/sink] }}
    logs: {{ receivers: [otlp], processors: [{logs}], exporters: [otlp_grpc/sink] }}
"#
        ),
        &[],
        Some(health),
        Some(metrics),
    );
    (c, grpc)
}

fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn str_of<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match get(attrs, key) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn body(v: &Option<AnyValue>) -> &str {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s,
        _ => "",
    }
}

/// Sends every signal with the SDK and asserts the client saw success.
fn send(grpc: u16, count: usize, run: &str) -> serde_json::Value {
    let (ok, report, stderr) = sdk_send(
        &format!("127.0.0.1:{grpc}"),
        "grpc",
        "traces,metrics,logs",
        count,
        run,
        &[],
    );
    assert!(ok, "SDK export failed: {stderr}");
    report
}

/// `filter` with OTTL conditions in every context.
#[test]
fn filter_drops_what_the_conditions_match() {
    let sink = Sink::start();
    let (c, grpc) = collector(
        r#"  filter:
    error_mode: ignore
    traces:
      span:
        - 'kind == SPAN_KIND_CLIENT'
        - 'attributes["seq"] >= 8 and IsMatch(name, "^parent-")'
      spanevent:
        - 'attributes["k"] == "v" and span.name == "parent-0"'
    metrics:
      metric:
        - 'name == "e2e.temperature"'
      datapoint:
        - 'metric.name == "e2e.requests" and attributes["route"] == "/r0"'
    logs:
      log_record:
        - 'IsMatch(body, "^log line [0-4] of")'
        - 'severity_number < SEVERITY_NUMBER_WARN'"#,
        "filter",
        sink.port,
    );
    let report = send(grpc, 10, "filter");
    let store = &sink.store;
    wait_until("filtered logs", Duration::from_secs(20), || {
        store.log_count() == 5
            && store.span_count() == 8
            && !store.metrics.lock().unwrap().is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));

    // Spans: parents 0..7 only; parent-0 lost its event, the others kept theirs.
    let spans = store.spans.lock().unwrap();
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for s in spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
    {
        got.insert(s.name.clone(), s.events.len());
    }
    let want: BTreeMap<String, usize> = (0..8)
        .map(|i| (format!("parent-{i}"), usize::from(i != 0)))
        .collect();
    assert_eq!(got, want);
    let sent: Vec<&str> = report["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(sent.len(), 20);

    // Metrics: no temperature gauge; the counter lost its /r0 point; the histogram is intact.
    let metrics = store.metrics.lock().unwrap();
    // The SDK exports on flush and again on shutdown: each export is checked alike.
    let exports = metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == "e2e.latency")
        .count();
    assert!(exports >= 1);
    let mut names = BTreeMap::new();
    for m in metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
    {
        let routes: Vec<String> = match &m.data {
            Some(Data::Sum(s)) => s
                .data_points
                .iter()
                .map(|p| str_of(&p.attributes, "route").unwrap_or("").to_string())
                .collect(),
            Some(Data::Histogram(h)) => vec![format!("{} points", h.data_points.len())],
            _ => vec![],
        };
        names.insert(m.name.clone(), routes);
    }
    assert_eq!(
        names,
        BTreeMap::from([
            ("e2e.latency".to_string(), vec!["1 points".to_string()]),
            (
                "e2e.requests".to_string(),
                vec!["/r1".to_string(), "/r2".to_string()]
            ),
        ])
    );

    // Logs: lines 5..9 (all are WARN, so the severity condition drops none).
    let logs = store.logs.lock().unwrap();
    let bodies: Vec<&str> = logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .map(|l| body(&l.body))
        .collect();
    let want: Vec<String> = (5..10)
        .map(|i| format!("log line {i} of filter ü"))
        .collect();
    assert_eq!(bodies, want);

    let dropped = |signal: &str| {
        c.metric(&format!(
            "otelcol_processor_dropped_items_total{{processor=\"filter\",pipeline=\"{signal}\",otel_signal=\"{signal}\",reason=\"filtered\"}}"
        ))
    };
    assert_eq!(dropped("traces"), 12.0);
    assert_eq!(dropped("logs"), 5.0);
    // The gauge's one point and the counter's /r0 point, in each export.
    assert_eq!(dropped("metrics"), 2.0 * exports as f64);
}

/// `attributes` (with `include`, `from_context` metadata and client address, hash, convert,
/// delete) and `resource` on every signal; the SDK sends a header through
/// `OTEL_EXPORTER_OTLP_HEADERS` and the receiver has `include_metadata: true`.
#[test]
fn attributes_and_resource_edit_items_and_resources() {
    use sha2::Digest;
    let sink = Sink::start();
    let (grpc, health) = (free_port(), free_port());
    let _c = Collector::start(
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}", include_metadata: true }}
processors:
  attributes/spans:
    include:
      match_type: regexp
      span_names: ["parent-.*"]
    actions:
      - {{ key: tenant, from_context: metadata.x-tenant, action: insert }}
      - {{ key: peer, from_context: client.address, action: insert }}
      - {{ key: attr.str, action: hash }}
      - {{ key: seq, action: convert, converted_type: string }}
      - {{ key: attr.bool, action: delete }}
  attributes:
    actions:
      - {{ key: tenant, from_context: metadata.x-tenant, action: upsert }}
  resource:
    attributes:
      - {{ key: deployment.environment, value: staging, action: update }}
      - {{ key: team, value: payments, action: insert }}
      - {{ key: run.id, action: delete }}
exporters:
  otlp_grpc/sink:
    endpoint: "127.0.0.1:{sink}"
    tls: {{ insecure: true }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  pipelines:
    traces: {{ receivers: [otlp], processors: [attributes/spans, resource], exporters: [otlp_grpc/sink] }}
    metrics: {{ receivers: [otlp], processors: [attributes, resource], exporters: [otlp_grpc/sink] }}
    logs: {{ receivers: [otlp], processors: [attributes, resource], exporters: [otlp_grpc/sink] }}
"#,
            sink = sink.port
        ),
        &[],
        Some(health),
        None,
    );
    let (ok, _report, stderr) = common::sdk_send_env(
        &format!("127.0.0.1:{grpc}"),
        "grpc",
        "traces,metrics,logs",
        4,
        "attrs",
        &[],
        &[("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme")],
    );
    assert!(ok, "{stderr}");
    let store = &sink.store;
    wait_until("everything", Duration::from_secs(20), || {
        store.span_count() == 8
            && store.log_count() == 4
            && !store.metrics.lock().unwrap().is_empty()
    });

    let check_resource = |attrs: &[KeyValue]| {
        assert_eq!(str_of(attrs, "deployment.environment"), Some("staging"));
        assert_eq!(str_of(attrs, "team"), Some("payments"));
        assert_eq!(get(attrs, "run.id"), None);
        assert_eq!(str_of(attrs, "service.name"), Some("sdk-e2e"));
    };
    let spans = store.spans.lock().unwrap();
    for r in spans.iter() {
        check_resource(&r.resource.as_ref().unwrap().attributes);
        for s in r.scope_spans.iter().flat_map(|s| &s.spans) {
            let a = &s.attributes;
            if s.name.starts_with("parent-") {
                let i: usize = s.name["parent-".len()..].parse().unwrap();
                assert_eq!(str_of(a, "tenant"), Some("acme"), "{}", s.name);
                assert_eq!(str_of(a, "peer"), Some("127.0.0.1"));
                let want = hex::encode(sha2::Sha256::digest(format!("välue-{i} ✓").as_bytes()));
                assert_eq!(str_of(a, "attr.str"), Some(want.as_str()));
                assert_eq!(str_of(a, "seq"), Some(i.to_string().as_str()));
                assert_eq!(get(a, "attr.bool"), None);
                assert!(get(a, "attr.double").is_some(), "untouched attributes stay");
            } else {
                assert_eq!(get(a, "tenant"), None, "excluded by include: {}", s.name);
                assert!(matches!(get(a, "seq"), Some(any_value::Value::IntValue(_))));
            }
        }
    }
    let logs = store.logs.lock().unwrap();
    for r in logs.iter() {
        check_resource(&r.resource.as_ref().unwrap().attributes);
        for l in r.scope_logs.iter().flat_map(|s| &s.log_records) {
            assert_eq!(str_of(&l.attributes, "tenant"), Some("acme"));
        }
    }
    let metrics = store.metrics.lock().unwrap();
    let mut points = 0;
    for r in metrics.iter() {
        check_resource(&r.resource.as_ref().unwrap().attributes);
        for m in r.scope_metrics.iter().flat_map(|s| &s.metrics) {
            if let Some(Data::Sum(s)) = &m.data {
                for p in &s.data_points {
                    assert_eq!(str_of(&p.attributes, "tenant"), Some("acme"));
                    points += 1;
                }
            }
        }
    }
    assert!(points > 0);
}

/// FNV-1a 32 over the seed's little-endian bytes and the trace id, bucketed in 16384: the
/// Collector's hash-seed sampling, written here independently of ferrotel's code.
fn collector_keeps(trace_id: &[u8], seed: u32, percent: f64) -> bool {
    let mut h: u32 = 0x811c_9dc5;
    for b in seed.to_le_bytes().iter().chain(trace_id) {
        h ^= *b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    (h & 0x3fff) < (percent * 163.84) as u32
}

fn sampler_collector(sink: u16) -> (Collector, u16) {
    collector_chains(
        "  probabilistic_sampler:\n    hash_seed: 22\n    sampling_percentage: 50\n",
        ["probabilistic_sampler", "", "probabilistic_sampler"],
        sink,
    )
}

/// `probabilistic_sampler` on SDK traffic: whole traces are kept or dropped, exactly those the
/// Collector's algorithm keeps; logs (which carry the trace context of no span here) are
/// dropped by `fail_closed`; metrics pass (the processor does not take metrics).
#[test]
fn probabilistic_sampler_keeps_whole_traces_by_trace_id() {
    let sink = Sink::start();
    let (c, grpc) = sampler_collector(sink.port);
    let report = send(grpc, 60, "sampler");
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for s in report["spans"].as_array().unwrap() {
        let tid = s["trace_id"].as_str().unwrap().to_string();
        if collector_keeps(&hex::decode(&tid).unwrap(), 22, 50.0) {
            *want.entry(tid).or_default() += 1;
        }
    }
    assert!(
        (15..45).contains(&want.len()),
        "{} of 60 traces kept: not near 50%",
        want.len()
    );
    let store = &sink.store;
    wait_until("the kept spans", Duration::from_secs(20), || {
        store.span_count() == want.values().sum::<usize>()
            && !store.metrics.lock().unwrap().is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for s in store
        .spans
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
    {
        *got.entry(hex::encode(&s.trace_id)).or_default() += 1;
    }
    assert_eq!(
        got, want,
        "kept traces differ from the Collector's algorithm"
    );
    assert!(got.values().all(|n| *n == 2), "a trace was split");
    assert_eq!(
        store.log_count(),
        0,
        "logs without a trace id are dropped (fail_closed)"
    );
    let dropped = c.metric(
        "otelcol_processor_dropped_items_total{processor=\"probabilistic_sampler\",pipeline=\"traces\",otel_signal=\"traces\",reason=\"sampled\"}",
    );
    assert_eq!(dropped, (120 - want.values().sum::<usize>()) as f64);
    let logs_dropped = c.metric(
        "otelcol_processor_dropped_items_total{processor=\"probabilistic_sampler\",pipeline=\"logs\",otel_signal=\"logs\",reason=\"sampled\"}",
    );
    assert_eq!(logs_dropped, 60.0);
}

/// Two separate ferrotel processes with the same seed make the same decision for each of 400
/// trace ids.
#[test]
fn probabilistic_sampler_agrees_across_processes() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let ids: Vec<Vec<u8>> = (0u64..400)
        .map(|i| {
            let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            [x.to_be_bytes(), (!x).to_le_bytes()].concat()
        })
        .collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: ids
                    .iter()
                    .enumerate()
                    .map(|(i, t)| Span {
                        trace_id: t.clone(),
                        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                        name: format!("s{i}"),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut kept = Vec::new();
    for _ in 0..2 {
        let sink = Sink::start();
        let (_c, grpc) = sampler_collector(sink.port);
        rt.block_on(async {
            let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
                .await
                .unwrap();
            client.export(request.clone()).await.unwrap();
        });
        let want = ids.iter().filter(|t| collector_keeps(t, 22, 50.0)).count();
        wait_until("kept spans", Duration::from_secs(10), || {
            sink.store.span_count() == want
        });
        let mut set: Vec<Vec<u8>> = sink
            .store
            .spans
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.trace_id.clone())
            .collect();
        set.sort();
        kept.push(set);
    }
    assert_eq!(kept[0], kept[1]);
    assert!((150..250).contains(&kept[0].len()), "{}", kept[0].len());
}

/// `tail_sampling` on SDK traffic: a numeric policy on the `seq` attribute keeps traces 0-4,
/// each with both its spans, after `decision_wait`.
#[test]
fn tail_sampling_keeps_whole_traces_chosen_by_policy() {
    let sink = Sink::start();
    let (c, grpc) = collector_chains(
        r#"  tail_sampling:
    decision_wait: 1s
    policies:
      - name: first-five
        type: numeric_attribute
        numeric_attribute: { key: seq, min_value: 0, max_value: 4 }"#,
        ["tail_sampling", "", ""],
        sink.port,
    );
    let report = send(grpc, 10, "tail");
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in report["spans"].as_array().unwrap() {
        if s["seq"].as_u64().unwrap() < 5 {
            want.entry(s["trace_id"].as_str().unwrap().to_string())
                .or_default()
                .push(s["name"].as_str().unwrap().to_string());
        }
    }
    let store = &sink.store;
    wait_until("the sampled traces", Duration::from_secs(20), || {
        store.span_count() == 10
    });
    std::thread::sleep(Duration::from_millis(1500));
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in store
        .spans
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
    {
        got.entry(hex::encode(&s.trace_id))
            .or_default()
            .push(s.name.clone());
    }
    for v in want.values_mut().chain(got.values_mut()) {
        v.sort();
    }
    assert_eq!(got, want);
    assert_eq!(
        c.metric("otelcol_processor_dropped_items_total{processor=\"tail_sampling\",pipeline=\"traces\",otel_signal=\"traces\",reason=\"sampled\"}"),
        10.0
    );
}

/// `tail_sampling` under load: 2000 traces of 4 spans each, every trace's spans spread over 4
/// requests sent by 4 concurrent clients; a string policy on the third span keeps the even
/// traces. Every kept trace arrives whole, no span of a dropped trace arrives.
#[test]
fn tail_sampling_under_load_leaves_no_orphan_spans() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    const TRACES: u64 = 2000;
    let sink = Sink::start();
    let (c, grpc) = collector_chains(
        r#"  tail_sampling:
    decision_wait: 2s
    num_traces: 10000
    policies:
      - name: keep-flag
        type: string_attribute
        string_attribute: { key: keep, values: ["yes"] }"#,
        ["tail_sampling", "", ""],
        sink.port,
    );
    let request = |part: u64| ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..TRACES)
                    .map(|t| Span {
                        trace_id: [t.to_be_bytes(), 7u64.to_be_bytes()].concat(),
                        span_id: (t * 4 + part + 1).to_be_bytes().to_vec(),
                        name: format!("t{t}-p{part}"),
                        attributes: if part == 2 && t % 2 == 0 {
                            vec![KeyValue {
                                key: "keep".into(),
                                value: Some(AnyValue {
                                    value: Some(any_value::Value::StringValue("yes".into())),
                                }),
                                ..Default::default()
                            }]
                        } else {
                            vec![]
                        },
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for part in 0..4 {
            let req = request(part);
            tasks.push(tokio::spawn(async move {
                let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
                    .await
                    .unwrap();
                // Each part in small slices, so the four clients interleave.
                for chunk in req.resource_spans[0].scope_spans[0].spans.chunks(100) {
                    let mut r = req.clone();
                    r.resource_spans[0].scope_spans[0].spans = chunk.to_vec();
                    client.export(r).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let store = &sink.store;
    wait_until("the kept traces", Duration::from_secs(30), || {
        store.span_count() >= (TRACES as usize / 2) * 4
    });
    std::thread::sleep(Duration::from_millis(2500));
    let mut by_trace: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for s in store
        .spans
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
    {
        let t = u64::from_be_bytes(s.trace_id[..8].try_into().unwrap());
        by_trace.entry(t).or_default().push(s.name.clone());
    }
    assert_eq!(by_trace.len(), TRACES as usize / 2);
    for (t, mut names) in by_trace {
        assert_eq!(t % 2, 0, "trace {t} was not to be kept");
        names.sort();
        let want: Vec<String> = (0..4).map(|p| format!("t{t}-p{p}")).collect();
        assert_eq!(names, want, "trace {t} is not whole");
    }
    assert_eq!(
        c.metric("otelcol_processor_dropped_items_total{processor=\"tail_sampling\",pipeline=\"traces\",otel_signal=\"traces\",reason=\"sampled\"}"),
        (TRACES / 2 * 4) as f64
    );
}
