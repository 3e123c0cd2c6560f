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
    # forward joins metrics pipelines too: the spans must not reach them.
    metrics/in: {{ receivers: [otlp], exporters: [forward] }}
    metrics/out: {{ receivers: [forward], exporters: [otlp_grpc] }}
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

/// The span ids `sink` got.
fn span_ids(sink: &Sink) -> Vec<String> {
    let mut ids: Vec<String> = sink
        .store
        .spans
        .lock()
        .unwrap()
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| hex::encode(&s.span_id))
        .collect();
    ids.sort();
    ids
}

/// Tenants routed by a resource attribute (one route as a `statement`, one as a `condition`)
/// to two backends, the rest to the default pipeline: every span once, where its tenant says.
#[test]
fn routing_sends_each_tenant_to_its_pipeline_and_the_rest_to_the_default() {
    let (acme, ecorp, rest) = (Sink::start(), Sink::start(), Sink::start());
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
connectors:
  routing:
    default_pipelines: [traces/default]
    table:
      - statement: route() where attributes["tenant"] == "acme"
        pipelines: [traces/acme]
      - condition: resource.attributes["tenant"] == "ecorp"
        pipelines: [traces/ecorp]
exporters:
  otlp_grpc/acme: {{ endpoint: "127.0.0.1:{a}", tls: {{ insecure: true }} }}
  otlp_grpc/ecorp: {{ endpoint: "127.0.0.1:{e}", tls: {{ insecure: true }} }}
  otlp_grpc/default: {{ endpoint: "127.0.0.1:{d}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces/in: {{ receivers: [otlp], exporters: [routing] }}
    traces/acme: {{ receivers: [routing], exporters: [otlp_grpc/acme] }}
    traces/ecorp: {{ receivers: [routing], exporters: [otlp_grpc/ecorp] }}
    traces/default: {{ receivers: [routing], exporters: [otlp_grpc/default] }}
"#,
        a = acme.port,
        e = ecorp.port,
        d = rest.port
    );
    let mut c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let send = |tenant: Option<&str>, run: &str| -> Vec<String> {
        let env: Vec<(&str, String)> = tenant
            .map(|t| vec![("OTEL_RESOURCE_ATTRIBUTES", format!("tenant={t}"))])
            .unwrap_or_default();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (ok, sent, err) = common::sdk_send_env(&endpoint, "grpc", "traces", 5, run, &[], &env);
        assert!(ok, "{err}");
        let mut ids: Vec<String> = sent["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["span_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let want_acme = send(Some("acme"), "acme");
    let want_ecorp = send(Some("ecorp"), "ecorp");
    let want_rest = send(None, "none");
    wait_until("every span routed", Duration::from_secs(20), || {
        acme.store.span_count() + ecorp.store.span_count() + rest.store.span_count() >= 30
    });
    assert_eq!(span_ids(&acme), want_acme);
    assert_eq!(span_ids(&ecorp), want_ecorp);
    assert_eq!(span_ids(&rest), want_rest);
    assert!(c.terminate().success(), "{}", c.logs());
}

/// A node agent's pattern: `filelog` tails a file of OTLP/JSON lines (as an app or the
/// Collector's `file` exporter writes them) and `otlpjson` turns them back into spans and
/// metrics; a line that is not OTLP JSON stays out.
#[test]
fn otlpjson_turns_tailed_json_lines_back_into_spans_and_metrics() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("otlp.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"from-file"}}]},"scopeSpans":[{"scope":{"name":"s"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /a","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000"},{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","parentSpanId":"eee19b7ec3c1b174","name":"db"}]}]}]}"#,
            "\n",
            "an ordinary log line\n",
            r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"from-file"}}]},"scopeMetrics":[{"metrics":[{"name":"queue.depth","gauge":{"dataPoints":[{"asInt":"7","timeUnixNano":"1700000000000000000"}]}}]}]}]}"#,
            "\n",
        ),
    )
    .unwrap();
    let (health, metrics) = (free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  filelog: {{ include: ["{file}"], start_at: beginning }}
connectors:
  otlpjson:
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    logs: {{ receivers: [filelog], exporters: [otlpjson] }}
    traces: {{ receivers: [otlpjson], exporters: [otlp_grpc] }}
    metrics: {{ receivers: [otlpjson], exporters: [otlp_grpc] }}
"#,
        file = file.display(),
        sink = sink.port
    );
    let c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    wait_until("the spans and the metric", Duration::from_secs(20), || {
        sink.store.span_count() >= 2 && !sink.store.metrics.lock().unwrap().is_empty()
    });
    let spans = sink.store.spans.lock().unwrap().clone();
    let names: Vec<&str> = spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["GET /a", "db"]);
    assert_eq!(
        common::attr_text(
            &spans[0].resource.as_ref().unwrap().attributes,
            "service.name"
        )
        .as_deref(),
        Some("from-file")
    );
    let m = sink.store.metrics.lock().unwrap()[0].clone();
    assert_eq!(m.scope_metrics[0].metrics[0].name, "queue.depth");
    // Nothing else arrived: the plain line was not a request.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.store.span_count(), 2);
    assert_eq!(sink.store.log_count(), 0);
    drop(c);
}

/// The OpenTelemetry demo's pattern: the Python SDK's spans → `spanmetrics` → remote write →
/// a real Prometheus (Debian's), then PromQL finds the calls and the duration buckets per
/// service and span name, as many as were sent.
#[test]
fn spanmetrics_reach_a_real_prometheus() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prom = common::prometheus::prometheus();
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
connectors:
  spanmetrics:
    metrics_flush_interval: 1s
    dimensions: [{{ name: seq, default: "none" }}]
    exclude_dimensions: [status.code]
    aggregation_cardinality_limit: 1000
exporters:
  prometheusremotewrite:
    endpoint: "http://127.0.0.1:{port}/api/v1/write"
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [spanmetrics] }}
    metrics: {{ receivers: [spanmetrics], exporters: [prometheusremotewrite] }}
"#,
        port = prom.port
    );
    let c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let n = 4;
    let (ok, _, err) = sdk_send(
        &format!("http://127.0.0.1:{grpc}"),
        "grpc",
        "traces",
        n,
        "red",
        &["--service", "shop"],
    );
    assert!(ok, "{err}");
    let p = prom.port;
    let q = |e: &str| common::prometheus::value(&rt, p, e);
    wait_until("the calls in prometheus", Duration::from_secs(30), || {
        q("sum(traces_span_metrics_calls_total{service_name=\"shop\"})") == Some(2.0 * n as f64)
    });
    // One series per span name and seq: parent-i (server) and child-i (client).
    for i in 0..n {
        for (name, kind) in [
            ("parent", "SPAN_KIND_SERVER"),
            ("child", "SPAN_KIND_CLIENT"),
        ] {
            let sel = format!(
                "{{service_name=\"shop\", span_name=\"{name}-{i}\", span_kind=\"{kind}\", seq=\"{i}\"}}"
            );
            assert_eq!(
                q(&format!("traces_span_metrics_calls_total{sel}")),
                Some(1.0),
                "{sel}"
            );
            let buckets = common::prometheus::query(
                &rt,
                p,
                &format!("traces_span_metrics_duration_milliseconds_bucket{sel}"),
            );
            assert_eq!(buckets.len(), 17, "16 bounds and +Inf: {sel}");
            let inf = format!(
                "traces_span_metrics_duration_milliseconds_bucket{{service_name=\"shop\", span_name=\"{name}-{i}\", le=\"+Inf\"}}"
            );
            assert_eq!(q(&inf), Some(1.0), "{inf}");
        }
    }
    // status.code was excluded.
    let any = common::prometheus::query(&rt, p, "traces_span_metrics_calls_total");
    assert!(
        any.iter().all(|s| s["metric"].get("status_code").is_none()),
        "{any:?}"
    );
    drop(c);
}

/// `aggregation_cardinality_limit` keeps memory bounded: 1,000,000 spans, each with a value of
/// its own in a dimension, make 1,000 series and the overflow series, and the collector's RSS
/// grows by less than 40 MiB (19 MiB measured, most of it the decoded requests' buffers;
/// without the limit each distinct value would hold a series of its own, a million
/// histograms). BENCHMARKS.md has the figure.
#[test]
fn spanmetrics_cardinality_limit_bounds_memory_over_a_million_values() {
    let distinct = 1_000_000;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue as Str;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sink = Sink::start();
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}", max_recv_msg_size_mib: 64 }} }} }}
connectors:
  spanmetrics:
    metrics_flush_interval: 1s
    dimensions: [{{ name: user.id }}]
    aggregation_cardinality_limit: 1000
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [spanmetrics] }}
    metrics: {{ receivers: [spanmetrics], exporters: [otlp_grpc] }}
"#,
        sink = sink.port
    );
    let c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let before = c.rss_bytes();
    let per_request = 10_000;
    for r in 0..distinct / per_request {
        let spans = (0..per_request)
            .map(|i| Span {
                trace_id: vec![1; 16],
                // Never all zero: an invalid span id.
                span_id: ((r * per_request + i + 1) as u64).to_be_bytes().to_vec(),
                name: "GET /user".into(),
                kind: 2,
                start_time_unix_nano: 1,
                end_time_unix_nano: 5_000_001,
                attributes: vec![common::kv(
                    "user.id",
                    Str(format!("u-{}", r * per_request + i)),
                )],
                ..Default::default()
            })
            .collect();
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                    attributes: vec![common::kv("service.name", Str("users".into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        common::export_traces(&rt, grpc, req).unwrap();
    }
    // The flush that follows holds every call: 1,000 series and the overflow one.
    let series = || -> (usize, i64, Option<i64>) {
        let all = sink.store.metrics.lock().unwrap();
        let Some(last) = all.iter().rev().find(|rm| {
            rm.scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .any(|m| m.name == "traces.span.metrics.calls")
        }) else {
            return (0, 0, None);
        };
        let m = last.scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == "traces.span.metrics.calls")
            .unwrap();
        let Some(Data::Sum(s)) = &m.data else {
            panic!("a sum")
        };
        let value = |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| match p.value {
            Some(number_data_point::Value::AsInt(i)) => i,
            _ => 0,
        };
        let total = s.data_points.iter().map(value).sum();
        let overflow = s
            .data_points
            .iter()
            .find(|p| p.attributes.iter().any(|a| a.key == "otel.metric.overflow"))
            .map(value);
        (s.data_points.len(), total, overflow)
    };
    wait_until("a flush with every call", Duration::from_secs(60), || {
        series().1 == distinct as i64
    });
    let (n, _, overflow) = series();
    assert_eq!(n, 1001, "the limit and the overflow series");
    assert_eq!(overflow, Some(distinct as i64 - 1000));
    // Counted too: every span past the limit.
    let over: f64 = c
        .self_metrics()
        .lines()
        .filter(|l| l.starts_with("ferrotel_connector_spanmetrics_overflow_spans_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(over, (distinct - 1000) as f64);
    let grown = c.rss_bytes().saturating_sub(before);
    println!(
        "RSS grew by {} KiB for {distinct} distinct values",
        grown / 1024
    );
    assert!(grown < 40 << 20, "RSS grew by {grown} bytes");
}
