//! Criterion benches of the backend translations (items per second on one core) and of the
//! snappy + protobuf encoding of remote-write and Loki requests.
//! Run: `cargo bench --bench exporters`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferrotel::config::{from_node, node::parse};
use ferrotel::exporters::{jaeger, loki, prometheus, prometheus_remote_write as prw, zipkin};
use ferrotel::signal::Batch;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

// The allocator the `ferrotel` binary runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", "checkout"),
            kv("service.instance.id", "i-1"),
            kv("host.name", "node-1"),
            kv("k8s.namespace.name", "prod"),
        ],
        ..Default::default()
    })
}

/// 1000 data points: 250 gauge, 250 counter, 500 in 10-bucket histograms (counted as points).
fn metrics() -> (Vec<ResourceMetrics>, u64) {
    let attrs = |i: usize| {
        vec![
            kv("http.route", &format!("/r{}", i % 20)),
            kv("http.request.method", "GET"),
        ]
    };
    let num = |i: usize| NumberDataPoint {
        attributes: attrs(i),
        time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
        value: Some(number_data_point::Value::AsDouble(i as f64)),
        ..Default::default()
    };
    let metrics = vec![
        Metric {
            name: "queue.depth".into(),
            unit: "1".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: (0..250).map(num).collect(),
            })),
            ..Default::default()
        },
        Metric {
            name: "http.requests".into(),
            unit: "1".into(),
            data: Some(Data::Sum(Sum {
                data_points: (0..250).map(num).collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        Metric {
            name: "http.duration".into(),
            unit: "ms".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: (0..500)
                    .map(|i| HistogramDataPoint {
                        attributes: attrs(i),
                        time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                        count: 55,
                        sum: Some(1000.0),
                        bucket_counts: (0..10).collect(),
                        explicit_bounds: (1..10).map(|b| b as f64 * 10.0).collect(),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        },
    ];
    let rm = vec![ResourceMetrics {
        resource: resource(),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: "bench".into(),
                ..Default::default()
            }),
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }];
    (rm, 1000)
}

fn logs() -> Vec<ResourceLogs> {
    vec![ResourceLogs {
        resource: resource(),
        scope_logs: vec![ScopeLogs {
            log_records: (0..1000)
                .map(|i| LogRecord {
                    time_unix_nano: 1_700_000_000_000_000_000 + i,
                    severity_text: if i % 10 == 0 {
                        "ERROR".into()
                    } else {
                        "INFO".into()
                    },
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(format!(
                            "request {i} served in {} ms",
                            i % 97
                        ))),
                    }),
                    attributes: vec![
                        kv("http.route", "/api/items"),
                        kv("user.id", &format!("u{}", i % 50)),
                    ],
                    trace_id: vec![7; 16],
                    span_id: vec![8; 8],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn spans() -> Vec<ResourceSpans> {
    vec![ResourceSpans {
        resource: resource(),
        scope_spans: vec![ScopeSpans {
            spans: (0..1000u64)
                .map(|i| Span {
                    trace_id: [i.to_be_bytes(), i.to_le_bytes()].concat(),
                    span_id: i.to_be_bytes().to_vec(),
                    name: "GET /api/items".into(),
                    kind: 2,
                    start_time_unix_nano: 1_700_000_000_000_000_000 + i,
                    end_time_unix_nano: 1_700_000_000_001_000_000 + i,
                    attributes: (0..10).map(|a| kv(&format!("attr.{a}"), "value")).collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn benches(c: &mut Criterion) {
    let (rm, points) = metrics();
    let prw_cfg: prw::Config =
        from_node(&parse("endpoint: http://p:9090/api/v1/write\n").unwrap()).unwrap();
    let translator = prw::Translator::new(prw_cfg);
    let mut g = c.benchmark_group("prometheus_remote_write");
    g.throughput(Throughput::Elements(points));
    // Translation includes the protobuf encoding: requests are written straight from OTLP.
    g.bench_function("translate_encode_1000_points", |b| {
        b.iter(|| translator.translate(black_box(&rm), 1))
    });
    g.bench_function("translate_encode_5_shards_1000_points", |b| {
        b.iter(|| translator.translate(black_box(&rm), 5))
    });
    // The exporter's whole encode step: the batch arrives as OTLP protobuf bytes.
    let otlp = {
        use prost::Message;
        opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
            resource_metrics: rm.clone(),
        }
        .encode_to_vec()
    };
    g.bench_function("otlp_decode_translate_encode_snappy_1000_points", |b| {
        b.iter(|| {
            use prost::Message;
            let req = opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest::decode(
                black_box(&otlp[..]),
            )
            .unwrap();
            let mut enc = snap::raw::Encoder::new();
            for shard in translator.translate(&req.resource_metrics, 5).shards {
                for body in shard.bodies {
                    black_box(enc.compress_vec(&body).unwrap());
                }
            }
        })
    });
    let bodies = translator.translate(&rm, 1).shards.remove(0).bodies;
    g.bench_function("snappy_1000_points", |b| {
        b.iter(|| {
            let mut enc = snap::raw::Encoder::new();
            for body in black_box(&bodies) {
                black_box(enc.compress_vec(body).unwrap());
            }
        })
    });
    g.finish();

    let lg = logs();
    let loki_cfg: loki::Config = from_node(
        &parse(
            "endpoint: http://l:3100/loki/api/v1/push\nlabels: {resource: [k8s.namespace.name]}\n",
        )
        .unwrap(),
    )
    .unwrap();
    let mut g = c.benchmark_group("loki");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("translate_1000_lines", |b| {
        b.iter(|| loki::translate(black_box(&lg), &loki_cfg))
    });
    let otlp = {
        use prost::Message;
        opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
            resource_logs: lg.clone(),
        }
        .encode_to_vec()
    };
    g.bench_function("otlp_decode_translate_encode_snappy_1000_lines", |b| {
        b.iter(|| {
            use prost::Message;
            let req =
                opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest::decode(
                    black_box(&otlp[..]),
                )
                .unwrap();
            let mut enc = snap::raw::Encoder::new();
            for (_, streams) in loki::translate(&req.resource_logs, &loki_cfg) {
                for push in loki::requests(streams, 4 << 20) {
                    black_box(enc.compress_vec(&push.encode_to_vec()).unwrap());
                }
            }
        })
    });
    let streams = loki::translate(&lg, &loki_cfg).remove(&None).unwrap();
    g.bench_function("encode_protobuf_snappy_1000_lines", |b| {
        b.iter(|| {
            let mut enc = snap::raw::Encoder::new();
            for req in loki::requests(black_box(streams.clone()), 4 << 20) {
                use prost::Message;
                black_box(enc.compress_vec(&req.encode_to_vec()).unwrap());
            }
        })
    });
    g.finish();

    // The `prometheus` exporter: a scrape of 100,000 series (10,000 pods × 10 gauges), and an
    // export of 100,000 points into the series it keeps.
    let pods: Vec<ResourceMetrics> = (0..100)
        .map(|r| ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                metrics: (0..10)
                    .map(|m| Metric {
                        name: format!("k8s.pod.metric_{m}"),
                        unit: "By".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: (0..100)
                                .map(|p| NumberDataPoint {
                                    attributes: vec![kv("k8s.pod.name", &format!("pod-{r}-{p}"))],
                                    time_unix_nano: 1_700_000_000_000_000_000,
                                    value: Some(number_data_point::Value::AsDouble(p as f64)),
                                    ..Default::default()
                                })
                                .collect(),
                        })),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    let prom_cfg: prometheus::Config =
        from_node(&parse("endpoint: 127.0.0.1:0\n").unwrap()).unwrap();
    let shared = prometheus::Shared::new(&prom_cfg);
    shared.apply(&pods);
    let mut g = c.benchmark_group("prometheus_exporter");
    g.sample_size(20);
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("scrape_100000_series_text", |b| {
        b.iter(|| black_box(shared.scrape(None)))
    });
    g.bench_function("apply_100000_points", |b| {
        b.iter(|| shared.apply(black_box(&pods)))
    });
    g.finish();

    let sp = spans();
    let batch = Batch::Traces(sp.clone());
    let mut g = c.benchmark_group("traces");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("zipkin_translate_json_1000_spans", |b| {
        b.iter(|| {
            serde_json::to_vec(&zipkin::translate(black_box(&batch), "unknown_service")).unwrap()
        })
    });
    g.bench_function("jaeger_translate_1000_spans", |b| {
        b.iter(|| jaeger::translate(black_box(&sp)))
    });
    g.finish();
}

criterion_group!(exporters, benches);
criterion_main!(exporters);
