//! The fuzz targets' seed corpora (`fuzz/seeds/<target>/`, valid inputs of every kind) and the
//! inputs that once crashed a target (`fuzz/regressions/<target>/`) run through the same entry
//! points as `cargo fuzz`, on every `cargo test`: a fixed crash stays fixed.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_seeds` regenerates the seeds.

use std::path::{Path, PathBuf};

use ferrotel::fuzz;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("otlp_protobuf", fuzz::otlp_protobuf),
    ("otlp_json", fuzz::otlp_json),
    ("decompress", fuzz::decompress),
    ("config", fuzz::config),
    ("env_expansion", fuzz::env_expansion),
    ("ottl", fuzz::ottl),
    ("expr", fuzz::expr),
    ("syslog", fuzz::syslog),
    ("prometheus_text", fuzz::prometheus_text),
    ("container", fuzz::container),
    ("disk_queue", fuzz::disk_queue),
    ("zipkin", fuzz::zipkin),
    ("fluentforward", fuzz::fluentforward),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn every_seed_and_regression_runs_clean() {
    let mut ran = 0;
    for (name, target) in TARGETS {
        let seeds = files(&fuzz_dir().join("seeds").join(name));
        assert!(seeds.len() >= 3, "{name} has {} seeds", seeds.len());
        for f in seeds
            .iter()
            .chain(files(&fuzz_dir().join("regressions").join(name)).iter())
        {
            let data = std::fs::read(f).unwrap();
            target(&data);
            ran += 1;
        }
    }
    assert!(ran >= 40, "{ran}");
}

/// Writes the seed corpora from real inputs: ferrotel's own configs, requests of every signal,
/// compressed bodies, conditions as the tests write them.
#[test]
#[ignore]
fn write_seeds() {
    use opentelemetry_proto::tonic::collector::{logs::v1 as l, metrics::v1 as m, trace::v1 as t};
    use prost::Message;
    let root = fuzz_dir().join("seeds");
    let put = |target: &str, name: &str, data: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    };
    // OTLP requests: the first byte picks the signal (0 traces, 1 metrics, 2 logs).
    let reqs: Vec<(u8, Vec<u8>, String)> = vec![
        (
            0,
            t::ExportTraceServiceRequest {
                resource_spans: traces(),
            }
            .encode_to_vec(),
            serde_json::to_string(&t::ExportTraceServiceRequest {
                resource_spans: traces(),
            })
            .unwrap(),
        ),
        (
            1,
            m::ExportMetricsServiceRequest {
                resource_metrics: metrics(),
            }
            .encode_to_vec(),
            serde_json::to_string(&m::ExportMetricsServiceRequest {
                resource_metrics: metrics(),
            })
            .unwrap(),
        ),
        (
            2,
            l::ExportLogsServiceRequest {
                resource_logs: logs(),
            }
            .encode_to_vec(),
            serde_json::to_string(&l::ExportLogsServiceRequest {
                resource_logs: logs(),
            })
            .unwrap(),
        ),
    ];
    for (sig, pb, json) in &reqs {
        put(
            "otlp_protobuf",
            &format!("request-{sig}"),
            &[&[*sig][..], pb].concat(),
        );
        put(
            "otlp_json",
            &format!("request-{sig}"),
            &[&[*sig][..], json.as_bytes()].concat(),
        );
    }
    put(
        "otlp_protobuf",
        "empty-spans",
        &[0, 0x0a, 0x06, 0x12, 0x04, 0x12, 0x00, 0x12, 0x00],
    );
    put("otlp_json", "empty", b"\x00{}");
    // Compressed bodies: the first byte picks the encoding (0 gzip, 1 zstd, 2 deflate, 3 snappy).
    let body = &reqs[0].1;
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(body).unwrap();
        e.finish().unwrap()
    };
    put("decompress", "gzip", &[&[0u8][..], &gz].concat());
    put(
        "decompress",
        "zstd",
        &[&[1u8][..], &zstd::encode_all(&body[..], 3).unwrap()].concat(),
    );
    let zl = {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(body).unwrap();
        e.finish().unwrap()
    };
    put("decompress", "deflate", &[&[2u8][..], &zl].concat());
    put(
        "decompress",
        "snappy",
        &[
            &[3u8][..],
            &snap::raw::Encoder::new().compress_vec(body).unwrap(),
        ]
        .concat(),
    );
    // Configs: ferrotel's own (the fuzz runs add the Collector corpus of ../shared as a second
    // seed directory; it is not copied here).
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in [repo.join("pipelines"), repo.join("pipelines/examples")] {
        for f in files(&dir) {
            if f.extension().is_some_and(|e| e == "yaml") {
                let name = f.file_name().unwrap().to_string_lossy().into_owned();
                put("config", &name, &std::fs::read(&f).unwrap());
            }
        }
    }
    for (i, s) in [
        "${env:PORT}",
        "a ${env:MISSING:-default} b",
        "$${env:X}",
        "${PORT}",
        "${env:REF}",
        "${file:/x}",
    ]
    .iter()
    .enumerate()
    {
        put("env_expansion", &format!("ref-{i}"), s.as_bytes());
    }
    for (i, s) in [
        r#"attributes["http.route"] == "/health""#,
        r#"IsMatch(name, "^GET .*") and kind == SPAN_KIND_SERVER"#,
        r#"not (status.code == STATUS_CODE_ERROR or duration > 1000000)"#,
        r#"resource.attributes["service.name"] != nil and Len(attributes["list"]) > 0"#,
        r#"severity_number >= SEVERITY_NUMBER_WARN and String(attributes["ok"]) == "true""#,
        r#"metric.name == "x" and Double(attributes["ratio"]) < 0.75"#,
        r#"trace_id == 0x01010101010101010101010101010101"#,
    ]
    .iter()
    .enumerate()
    {
        put("ottl", &format!("condition-{i}"), s.as_bytes());
    }
    for (i, s) in [
        r#"set(attributes["h"], SHA256(attributes["user"])) where attributes["user"] != nil"#,
        r#"replace_pattern(attributes["p"], "^/u/(\d+)", "/u/{id}", SHA1, "x:%s")"#,
        r#"merge_maps(attributes, ParseJSON(Concat(["{", "}"], "")), "upsert")"#,
        r#"set(body, ExtractGrokPatterns(body, "%{WORD:k}=%{NOTSPACE:v}", true))"#,
        r#"flatten(attributes, "p", depth=2, resolveConflicts=true)"#,
        r#"set(attributes["t"], Format("%05d %s", [Len(attributes), UnixSeconds(Now())]))"#,
        r#"set(attributes["x"], ParseSimplifiedXML("<a><b>1</b></a>")["a"]["b"])"#,
        r#"delete_index(attributes["list"], 0, Len(attributes["list"]) - 1)"#,
    ]
    .iter()
    .enumerate()
    {
        put("ottl", &format!("statement-{i}"), s.as_bytes());
    }
    for (i, s) in [
        r#"body matches "^\\d{4}-" and attributes["log.iostream"] == "stderr""#,
        r#"body startsWith "  at " || body contains "Caused by""#,
        r#"!(attributes.n != 3) && body endsWith "x""#,
    ]
    .iter()
    .enumerate()
    {
        put("expr", &format!("expr-{i}"), s.as_bytes());
    }
    for (i, s) in [
        "<34>1 2024-05-01T10:00:00.003Z mymachine.example.com su 123 ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\"] 'su root' failed",
        "<165>1 2024-05-01T22:14:15.003-07:00 host app - - - message",
        "<13>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        "<191>Feb  5 17:32:18 10.0.0.99 myproc[1234]: Use the BFG!",
    ].iter().enumerate() {
        put("syslog", &format!("message-{i}"), s.as_bytes());
    }
    for (i, s) in [
        "# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n# TYPE node_cpu_seconds_total counter\nnode_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1.2e+06\nnode_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 5432.1\n",
        "# TYPE http_request_duration_seconds histogram\nhttp_request_duration_seconds_bucket{le=\"0.1\"} 3\nhttp_request_duration_seconds_bucket{le=\"+Inf\"} 5\nhttp_request_duration_seconds_sum 1.5\nhttp_request_duration_seconds_count 5\n",
        "# TYPE rpc summary\nrpc{quantile=\"0.5\"} 0.05\nrpc_sum 12\nrpc_count 100\n# TYPE up gauge\nup 1 1700000000000\n",
        "# TYPE requests counter\nrequests_total 10\nrequests_created 1700000000\n# EOF\n",
    ].iter().enumerate() {
        put("prometheus_text", &format!("scrape-{i}"), s.as_bytes());
    }
    {
        use ferrotel::disk_queue::encode_record;
        use ferrotel::signal::Signal;
        // An export request holding one empty ResourceSpans, and a short log payload.
        let mut two = encode_record(0, Signal::Traces, 0, b"\x0a\x00");
        two.extend(encode_record(1, Signal::Logs, 1, b"\x0a\x02\x12\x00"));
        put("disk_queue", "two-records", &two);
        let mut torn = two.clone();
        torn.truncate(two.len() - 7);
        put("disk_queue", "torn-tail", &torn);
        let mut flipped = two.clone();
        flipped[30] ^= 0x20;
        put("disk_queue", "flipped-bit", &flipped);
    }
    put("container", "docker", b"{\"log\":\"hello\\n\",\"stream\":\"stdout\",\"time\":\"2024-05-01T10:00:00.000000001Z\"}\n{\"log\":\"part\",\"stream\":\"stderr\",\"time\":\"2024-05-01T10:00:00Z\"}");
    put("container", "cri-o", b"2024-05-01T10:00:00.000000001+00:00 stdout F hello\n2024-05-01T10:00:00Z stderr P part one\n2024-05-01T10:00:01Z stderr F  and two");
    put("container", "containerd", b"2024-05-01T10:00:00.123456789Z stdout F {\"level\":\"info\"}\n2024-05-01T10:00:00Z stdout P a\n");
}

fn kv(k: &str, v: &str) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    opentelemetry_proto::tonic::common::v1::KeyValue {
        key: k.into(),
        value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
            value: Some(
                opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(v.into()),
            ),
        }),
        ..Default::default()
    }
}

fn resource() -> Option<opentelemetry_proto::tonic::resource::v1::Resource> {
    Some(opentelemetry_proto::tonic::resource::v1::Resource {
        attributes: vec![
            kv("service.name", "checkout"),
            kv("k8s.pod.name", "checkout-1"),
        ],
        ..Default::default()
    })
}

fn traces() -> Vec<opentelemetry_proto::tonic::trace::v1::ResourceSpans> {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
    vec![ResourceSpans {
        resource: resource(),
        scope_spans: vec![ScopeSpans {
            spans: (0..3u8)
                .map(|i| Span {
                    trace_id: vec![i + 1; 16],
                    span_id: vec![i + 1; 8],
                    parent_span_id: if i > 0 { vec![1; 8] } else { vec![] },
                    name: format!("GET /items/{i}"),
                    kind: 2,
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_100_000_000,
                    attributes: vec![kv("http.route", "/items/{id}")],
                    events: vec![span::Event {
                        name: "retry".into(),
                        ..Default::default()
                    }],
                    status: Some(Status {
                        code: 2,
                        message: "boom".into(),
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn metrics() -> Vec<opentelemetry_proto::tonic::metrics::v1::ResourceMetrics> {
    use opentelemetry_proto::tonic::metrics::v1::*;
    vec![ResourceMetrics {
        resource: resource(),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![
                Metric {
                    name: "requests".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![kv("code", "200")],
                            value: Some(number_data_point::Value::AsInt(7)),
                            ..Default::default()
                        }],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "latency".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint {
                            count: 3,
                            sum: Some(1.5),
                            bucket_counts: vec![1, 2],
                            explicit_bounds: vec![0.5],
                            ..Default::default()
                        }],
                        aggregation_temporality: 1,
                    })),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn logs() -> Vec<opentelemetry_proto::tonic::logs::v1::ResourceLogs> {
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    vec![ResourceLogs {
        resource: resource(),
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord {
                severity_number: 13,
                severity_text: "WARN".into(),
                body: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                    value: Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                            "disk almost full".into(),
                        ),
                    ),
                }),
                trace_id: vec![1; 16],
                span_id: vec![1; 8],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]
}
