//! `prometheus_remote_write` against a real Prometheus server (Debian's `prometheus`, started
//! here on 127.0.0.1 with `--web.enable-remote-write-receiver`): the official OpenTelemetry
//! Python SDK → ferrotel → Prometheus, then Prometheus' HTTP API is queried for names, labels,
//! values, histogram buckets, `target_info`, a counter reset and converted delta input.

mod common;

use std::time::Duration;

use common::prometheus::{prometheus, prometheus_with, query, value};
use common::standin::{Script, response, serve_post};
use common::{Collector, free_port, sdk_send_env, wait_until};

#[test]
fn sdk_to_ferrotel_to_prometheus() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prom = prometheus();
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
processors:
  batch: {{ timeout: 100ms }}
exporters:
  prometheusremotewrite:
    endpoint: "http://127.0.0.1:{port}/api/v1/write"
    external_labels: {{ cluster: ci }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    metrics: {{ receivers: [otlp], processors: [batch], exporters: [prometheusremotewrite] }}
"#,
        port = prom.port
    );
    let c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let ep = format!("127.0.0.1:{grpc}");
    // The SDK gives each process a random service.instance.id (the `instance` label); a restart
    // that keeps its instance id is what makes a counter reset in one series.
    let fixed = [("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=prw-1")];
    let (ok, report, err) = sdk_send_env(
        &ep,
        "grpc",
        "metrics",
        6,
        "r1",
        &["--service", "prw-cum"],
        &fixed,
    );
    assert!(ok, "{err}");
    let total = report["metrics"]["counter_total"].as_f64().unwrap();
    let p = prom.port;
    wait_until("the counter in prometheus", Duration::from_secs(20), || {
        value(&rt, p, "sum(e2e_requests_total{job=\"prw-cum\"})") == Some(total)
    });

    // Names and labels: `_total`, scope, job, external label, the point's attribute.
    let series = query(&rt, p, "e2e_requests_total{job=\"prw-cum\", route=\"/r0\"}");
    assert_eq!(series.len(), 1, "{series:?}");
    let m = &series[0]["metric"];
    assert_eq!(m["cluster"], "ci");
    assert_eq!(m["instance"], "prw-1");
    assert_eq!(m["otel_scope_name"], "ferrotel.e2e");
    assert_eq!(m["otel_scope_version"], "1.2.3");
    // Histogram: unit suffix, cumulative buckets with +Inf, sum and count. Values 0,10,...,50.
    assert_eq!(
        value(
            &rt,
            p,
            "e2e_latency_milliseconds_bucket{job=\"prw-cum\", le=\"+Inf\"}"
        ),
        Some(6.0)
    );
    assert_eq!(
        value(
            &rt,
            p,
            "e2e_latency_milliseconds_bucket{job=\"prw-cum\", le=\"10\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &rt,
            p,
            "e2e_latency_milliseconds_bucket{job=\"prw-cum\", le=\"25\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        value(&rt, p, "e2e_latency_milliseconds_count{job=\"prw-cum\"}"),
        Some(6.0)
    );
    assert_eq!(
        value(&rt, p, "e2e_latency_milliseconds_sum{job=\"prw-cum\"}"),
        Some(150.0)
    );
    // Gauge, and target_info with the resource attributes.
    assert_eq!(
        value(&rt, p, "e2e_temperature{job=\"prw-cum\", room=\"a\"}"),
        Some(21.5)
    );
    assert_eq!(
        value(
            &rt,
            p,
            "target_info{job=\"prw-cum\", run_id=\"r1\", deployment_environment=\"test\"}"
        ),
        Some(1.0)
    );

    // A counter reset: a new SDK process starts the counter over.
    std::thread::sleep(Duration::from_millis(1100));
    let (ok, _, err) = sdk_send_env(
        &ep,
        "grpc",
        "metrics",
        1,
        "r2",
        &["--service", "prw-cum"],
        &fixed,
    );
    assert!(ok, "{err}");
    wait_until("the reset in prometheus", Duration::from_secs(20), || {
        value(
            &rt,
            p,
            "resets(e2e_requests_total{job=\"prw-cum\", route=\"/r0\"}[10m])",
        ) == Some(1.0)
    });
    assert_eq!(
        value(&rt, p, "e2e_requests_total{job=\"prw-cum\", route=\"/r0\"}"),
        Some(1.0)
    );

    // Delta input: the SDK sends delta temporality; ferrotel writes cumulative series.
    let delta = [("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")];
    let (ok, report, err) = sdk_send_env(
        &ep,
        "grpc",
        "metrics",
        5,
        "r3",
        &["--service", "prw-delta"],
        &delta,
    );
    assert!(ok, "{err}");
    let total = report["metrics"]["counter_total"].as_f64().unwrap();
    wait_until(
        "converted deltas in prometheus",
        Duration::from_secs(20),
        || value(&rt, p, "sum(e2e_requests_total{job=\"prw-delta\"})") == Some(total),
    );
    assert_eq!(
        value(&rt, p, "e2e_latency_milliseconds_count{job=\"prw-delta\"}"),
        Some(5.0)
    );
    assert_eq!(
        c.metric(
            "otelcol_exporter_send_failed_metric_points_total{exporter=\"prometheusremotewrite\"}"
        ),
        0.0
    );
}

/// Failure behaviour. A real Prometheus cannot be told to answer 500 or 429, so this part uses a
/// stand-in that checks each request against the remote-write 1.0 specification (headers, snappy
/// block format, `WriteRequest`, labels sorted, unique, non-empty, `__name__` present, valid
/// names, samples in time order) and answers from a script.
#[test]
fn failure_behaviour_against_a_spec_checking_receiver() {
    use ferrotel::proto::prometheus as pb;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    use prost::Message;

    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Rw {
        script: Script,
        samples: Mutex<Vec<(String, f64)>>,
    }
    fn check(headers: &axum::http::HeaderMap, body: &[u8]) -> Result<pb::WriteRequest, String> {
        let h = |k: &str| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        if h("content-encoding") != "snappy"
            || h("content-type") != "application/x-protobuf"
            || h("x-prometheus-remote-write-version") != "0.1.0"
            || h("user-agent").is_empty()
        {
            return Err(format!("headers {headers:?}"));
        }
        let raw = snap::raw::Decoder::new()
            .decompress_vec(body)
            .map_err(|e| e.to_string())?;
        let req = pb::WriteRequest::decode(&raw[..]).map_err(|e| e.to_string())?;
        for ts in &req.timeseries {
            let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted != names || !names.contains(&"__name__") {
                return Err(format!(
                    "labels not sorted/unique or no __name__: {names:?}"
                ));
            }
            for l in &ts.labels {
                let ok_name = l
                    .name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && l.name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok_name || l.value.is_empty() {
                    return Err(format!("bad label {l:?}"));
                }
            }
            if ts
                .samples
                .windows(2)
                .any(|w| w[0].timestamp > w[1].timestamp)
            {
                return Err("samples out of order".into());
            }
        }
        Ok(req)
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let state = Arc::new(Rw::default());
    let port = free_port();
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let c = Collector::start(
        &format!(
            r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
exporters:
  prometheus_remote_write:
    endpoint: "http://127.0.0.1:{port}/api/v1/write"
    timeout: 1s
    sending_queue: {{ queue_size: 2 }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 500ms }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [prometheus_remote_write] }}
"#
        ),
        &[],
        Some(health),
        Some(metrics),
    );
    let gauge = |v: f64| ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 1_700_000_000_000_000_000 + (v as u64) * 1_000_000,
                            value: Some(number_data_point::Value::AsDouble(v)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let send = |v: f64| {
        rt.block_on(async {
            let mut m = MetricsServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
                .await
                .unwrap();
            m.export(gauge(v)).await.unwrap();
        })
    };
    // Down: the receiver is not up yet; a 2-request queue fills and the refusal reaches the client.
    let (mut accepted, mut refused) = (0, 0);
    rt.block_on(async {
        let mut m = MetricsServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
            .await
            .unwrap();
        for i in 0..10 {
            match m.export(gauge(100.0 + i as f64)).await {
                Ok(_) => accepted += 1,
                Err(st) => {
                    assert_eq!(st.code(), tonic::Code::Unavailable);
                    refused += 1;
                }
            }
        }
    });
    assert!(
        accepted > 0 && refused > 0,
        "accepted {accepted}, refused {refused}"
    );
    let st = state.clone();
    serve_post(&rt, port, "/api/v1/write", move |headers, body| {
        let st = st.clone();
        async move {
            if let Some(r) = st.script.next().await {
                return r;
            }
            match check(&headers, &body) {
                Ok(req) => {
                    let mut s = st.samples.lock().unwrap();
                    for ts in req.timeseries {
                        let name = ts
                            .labels
                            .iter()
                            .find(|l| l.name == "__name__")
                            .unwrap()
                            .value
                            .clone();
                        s.extend(ts.samples.iter().map(|x| (name.clone(), x.value)));
                    }
                    response(204, "")
                }
                Err(e) => response(400, e),
            }
        }
    });
    wait_until(
        "the queued points after the receiver came up",
        Duration::from_secs(20),
        || state.samples.lock().unwrap().len() == accepted,
    );
    state.samples.lock().unwrap().clear();
    let calls0 = state.script.calls();
    state.script.answer(500, None);
    send(1.0);
    wait_until("delivered after a 500", Duration::from_secs(10), || {
        state.samples.lock().unwrap().len() == 1
    });
    assert_eq!(state.script.calls(), calls0 + 2);
    assert_eq!(
        state.samples.lock().unwrap()[0],
        ("queue_depth".to_string(), 1.0)
    );

    state.script.answer(400, None);
    send(2.0);
    wait_until("the 400 counted", Duration::from_secs(10), || {
        c.metric("otelcol_exporter_send_failed_metric_points_total{exporter=\"prometheus_remote_write\"}") == 1.0
    });
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(state.script.calls(), calls0 + 3, "a 400 is not retried");

    state.script.answer(429, Some("2"));
    let t = std::time::Instant::now();
    send(3.0);
    wait_until("delivered after a 429", Duration::from_secs(10), || {
        state.samples.lock().unwrap().len() == 2
    });
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "Retry-After ignored: {:?}",
        t.elapsed()
    );

    // Slow: the next answer takes 3s, over the 1s timeout; the write is retried and arrives.
    state.script.delay_next(3000);
    send(4.0);
    wait_until("the slow write retried", Duration::from_secs(15), || {
        state.samples.lock().unwrap().iter().any(|(_, v)| *v == 4.0)
    });
    assert!(
        c.logs().contains("request timed out after 1s"),
        "{}",
        c.logs()
    );
}

/// Parallel shards against a stand-in receiver that appends like Prometheus does (a sample
/// older than the last one of its series would be refused as out of order) and answers after a
/// random delay, sometimes with 503: with `num_consumers: 4`, requests are in flight in
/// parallel, every sample arrives exactly once, and no series ever sees its samples reordered.
#[test]
fn parallel_shards_never_reorder_a_series() {
    use ferrotel::proto::prometheus as pb;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    use prost::Message;
    use rand::Rng;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    const SERIES: usize = 40;
    const EXPORTS: usize = 60;

    #[derive(Default)]
    struct Appender {
        /// series → timestamps in the order they were appended.
        appended: Mutex<HashMap<String, Vec<i64>>>,
        out_of_order: Mutex<Vec<String>>,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        calls: AtomicUsize,
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = Arc::new(Appender::default());
    let port = free_port();
    let st = state.clone();
    rt.spawn(async move {
        let app = axum::Router::new().route(
            "/api/v1/write",
            axum::routing::post(move |body: axum::body::Bytes| {
                let st = st.clone();
                async move {
                    let n = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    st.max_in_flight.fetch_max(n, Ordering::SeqCst);
                    let call = st.calls.fetch_add(1, Ordering::SeqCst);
                    let delay = rand::rng().random_range(0..15);
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    let status = if call % 9 == 4 {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
                        let req = pb::WriteRequest::decode(&raw[..]).unwrap();
                        let mut appended = st.appended.lock().unwrap();
                        for ts in req.timeseries {
                            let key = format!("{:?}", ts.labels);
                            let seen = appended.entry(key.clone()).or_default();
                            for s in ts.samples {
                                if seen.last().is_some_and(|&last| s.timestamp <= last) {
                                    st.out_of_order.lock().unwrap().push(format!(
                                        "{key}: {} after {:?}",
                                        s.timestamp,
                                        seen.last()
                                    ));
                                }
                                seen.push(s.timestamp);
                            }
                        }
                        axum::http::StatusCode::NO_CONTENT
                    };
                    st.in_flight.fetch_sub(1, Ordering::SeqCst);
                    status
                }
            }),
        );
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(l, app).await.unwrap();
    });
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let _c = Collector::start(
        &format!(
            r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
exporters:
  prometheus_remote_write:
    endpoint: "http://127.0.0.1:{port}/api/v1/write"
    target_info: {{ enabled: false }}
    remote_write_queue: {{ num_consumers: 4, queue_size: 1000 }}
    retry_on_failure: {{ initial_interval: 10ms, max_interval: 50ms }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [prometheus_remote_write] }}
"#
        ),
        &[],
        Some(health),
        None,
    );
    let export = |round: usize| ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "shard.test".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: (0..SERIES)
                            .map(|i| NumberDataPoint {
                                attributes: vec![KeyValue {
                                    key: "series".into(),
                                    value: Some(AnyValue {
                                        value: Some(any_value::Value::IntValue(i as i64)),
                                    }),
                                    ..Default::default()
                                }],
                                time_unix_nano: 1_700_000_000_000_000_000
                                    + round as u64 * 1_000_000,
                                value: Some(number_data_point::Value::AsDouble(round as f64)),
                                ..Default::default()
                            })
                            .collect(),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    rt.block_on(async {
        let mut m = MetricsServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
            .await
            .unwrap();
        for round in 0..EXPORTS {
            m.export(export(round)).await.unwrap();
        }
    });
    wait_until("every sample appended", Duration::from_secs(60), || {
        let a = state.appended.lock().unwrap();
        a.len() == SERIES && a.values().all(|v| v.len() >= EXPORTS)
    });
    std::thread::sleep(Duration::from_millis(200));
    let out_of_order = state.out_of_order.lock().unwrap();
    assert!(
        out_of_order.is_empty(),
        "reordered: {:?}",
        &out_of_order[..]
    );
    let appended = state.appended.lock().unwrap();
    let want: Vec<i64> = (0..EXPORTS as i64).map(|r| 1_700_000_000_000 + r).collect();
    for (series, ts) in appended.iter() {
        assert_eq!(ts, &want, "{series}: lost or repeated samples");
    }
    let max = state.max_in_flight.load(Ordering::SeqCst);
    assert!(
        max > 1,
        "the shards never sent in parallel (max in flight {max})"
    );
    assert!(max <= 4, "more requests in flight ({max}) than shards");
}

/// A protobuf encoder for the test's exposition body, written from the exposition format's
/// field numbers independently of ferrotel's `metrics.proto`.
mod pb {
    pub fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    pub fn zigzag(v: i64) -> u64 {
        ((v << 1) ^ (v >> 63)) as u64
    }
    pub fn uint(field: u32, v: u64, out: &mut Vec<u8>) {
        varint(u64::from(field) << 3, out);
        varint(v, out);
    }
    pub fn double(field: u32, v: f64, out: &mut Vec<u8>) {
        varint((u64::from(field) << 3) | 1, out);
        out.extend(v.to_le_bytes());
    }
    pub fn bytes(field: u32, b: &[u8], out: &mut Vec<u8>) {
        varint((u64::from(field) << 3) | 2, out);
        varint(b.len() as u64, out);
        out.extend(b);
    }
}

/// `rpc_seconds{svc="a"}`: a native histogram (schema 2, zero bucket 1, Prometheus buckets 4
/// and 6 holding 2 and 3) as one length-delimited `MetricFamily`.
fn native_exposition() -> Vec<u8> {
    let span = |offset: i64, length: u64| {
        let mut b = Vec::new();
        pb::uint(1, pb::zigzag(offset), &mut b);
        pb::uint(2, length, &mut b);
        b
    };
    let mut h = Vec::new();
    pb::uint(1, 6, &mut h); // sample_count
    pb::double(2, 3.5, &mut h); // sample_sum
    pb::uint(5, pb::zigzag(2), &mut h); // schema
    pb::double(6, 0.001, &mut h); // zero_threshold
    pb::uint(7, 1, &mut h); // zero_count
    pb::bytes(12, &span(4, 1), &mut h); // positive_span
    pb::bytes(12, &span(1, 1), &mut h);
    let mut deltas = Vec::new();
    pb::varint(pb::zigzag(2), &mut deltas);
    pb::varint(pb::zigzag(1), &mut deltas);
    pb::bytes(13, &deltas, &mut h); // positive_delta, packed
    let mut label = Vec::new();
    pb::bytes(1, b"svc", &mut label);
    pb::bytes(2, b"a", &mut label);
    let mut metric = Vec::new();
    pb::bytes(1, &label, &mut metric);
    pb::bytes(7, &h, &mut metric);
    let mut family = Vec::new();
    pb::bytes(1, b"rpc_seconds", &mut family);
    pb::bytes(2, b"RPC latency.", &mut family);
    pb::uint(3, 4, &mut family); // HISTOGRAM
    pb::bytes(4, &metric, &mut family);
    let mut body = Vec::new();
    pb::varint(family.len() as u64, &mut body);
    body.extend(family);
    body
}

/// Native histograms over the protobuf exposition format. No instrumented application with
/// native histograms runs here, so the target is a stand-in serving a body encoded from the
/// published format; a real Prometheus (native histograms enabled) scrapes the same target,
/// which shows the body is what Prometheus reads as a native histogram. ferrotel scrapes it with
/// `scrape_protocols: [PrometheusProto]` and remote-writes it into that Prometheus; both views
/// agree on count and sum. ferrotel also scrapes Prometheus's own metrics over protobuf (real
/// bytes: counters, gauges, classic histograms, summaries).
#[test]
fn native_histograms_scraped_over_protobuf_reach_prometheus() {
    use std::io::{Read, Write};
    let body = native_exposition();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    let prom = prometheus_with(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: standin\n    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n"
    ));
    let port = prom.port;
    let sink = common::sink::Sink::start();
    let (health, self_metrics) = (free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: native
          scrape_interval: 500ms
          scrape_protocols: [PrometheusProto]
          static_configs: [{{targets: ["127.0.0.1:{target}"]}}]
        - job_name: self-proto
          scrape_interval: 500ms
          scrape_protocols: [PrometheusProto, PrometheusText0.0.4]
          static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
exporters:
  prometheus_remote_write:
    endpoint: "http://127.0.0.1:{port}/api/v1/write"
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{self_metrics}" }} }}
  pipelines:
    metrics: {{receivers: [prometheus], exporters: [prometheus_remote_write, otlp]}}
"#,
        sink = sink.port
    );
    let _c = Collector::start(&cfg, &[], Some(health), Some(self_metrics));
    let rt = tokio::runtime::Runtime::new().unwrap();
    wait_until(
        "both views of the histogram",
        Duration::from_secs(30),
        || {
            value(&rt, port, r#"histogram_count(rpc_seconds{job="standin"})"#).is_some()
                && value(&rt, port, r#"histogram_count(rpc_seconds{job="native"})"#).is_some()
        },
    );
    for job in ["standin", "native"] {
        assert_eq!(
            value(
                &rt,
                port,
                &format!(r#"histogram_count(rpc_seconds{{job="{job}",svc="a"}})"#)
            ),
            Some(6.0),
            "{job}"
        );
        assert_eq!(
            value(
                &rt,
                port,
                &format!(r#"histogram_sum(rpc_seconds{{job="{job}",svc="a"}})"#)
            ),
            Some(3.5),
            "{job}"
        );
    }
    // What ferrotel sent: an exponential histogram with the spans made dense.
    use opentelemetry_proto::tonic::metrics::v1::metric;
    let metrics = sink.store.metrics.lock().unwrap().clone();
    let all: Vec<_> = metrics
        .iter()
        .flat_map(|r| r.scope_metrics.iter().flat_map(|s| s.metrics.iter()))
        .collect();
    let exp = all
        .iter()
        .find_map(|m| match &m.data {
            Some(metric::Data::ExponentialHistogram(h)) if m.name == "rpc_seconds" => Some(h),
            _ => None,
        })
        .expect("rpc_seconds as an exponential histogram");
    let p = &exp.data_points[0];
    assert_eq!((p.count, p.scale, p.zero_count), (6, 2, 1));
    let pos = p.positive.as_ref().unwrap();
    assert_eq!((pos.offset, pos.bucket_counts.clone()), (3, vec![2, 0, 3]));
    // Prometheus's own metrics over protobuf: each kind, as the real bytes carry it.
    let kind = |name: &str| {
        all.iter().find(|m| m.name == name).map(|m| match &m.data {
            Some(metric::Data::Sum(s)) => format!("sum monotonic={}", s.is_monotonic),
            Some(metric::Data::Gauge(_)) => "gauge".into(),
            Some(metric::Data::Histogram(h)) => {
                format!(
                    "histogram bounds={}",
                    h.data_points[0].explicit_bounds.len()
                )
            }
            Some(metric::Data::Summary(s)) => {
                format!(
                    "summary quantiles={}",
                    s.data_points[0].quantile_values.len()
                )
            }
            other => format!("{other:?}"),
        })
    };
    assert_eq!(
        kind("prometheus_http_requests_total").as_deref(),
        Some("sum monotonic=true")
    );
    assert_eq!(kind("go_goroutines").as_deref(), Some("gauge"));
    assert_eq!(
        kind("go_gc_duration_seconds").as_deref(),
        Some("summary quantiles=5")
    );
    let h = kind("prometheus_http_request_duration_seconds").unwrap_or_default();
    assert!(
        h.starts_with("histogram bounds=") && h != "histogram bounds=0",
        "{h}"
    );
}
