use super::translate::*;
use super::*;
use crate::config::node::parse as yaml;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{NumberDataPoint, number_data_point};

#[test]
fn names_as_the_compatibility_spec_says() {
    assert_eq!(
        metric_name("http.server.duration", "ms", false, false, true, None),
        "http_server_duration_milliseconds"
    );
    assert_eq!(
        metric_name("requests", "1", true, false, true, None),
        "requests_total"
    );
    assert_eq!(
        metric_name("requests", "{request}", true, false, true, None),
        "requests_total"
    );
    assert_eq!(
        metric_name("cpu.utilization", "1", false, true, true, None),
        "cpu_utilization_ratio"
    );
    assert_eq!(
        metric_name("net.io", "By/s", false, true, true, Some("app")),
        "app_net_io_bytes_per_second"
    );
    assert_eq!(
        metric_name("process.runtime.bytes", "By", false, true, true, None),
        "process_runtime_bytes"
    );
    assert_eq!(
        metric_name("errors_total", "1", true, false, true, None),
        "errors_total"
    );
    assert_eq!(
        metric_name("http.server.duration", "ms", false, false, false, None),
        "http_server_duration"
    );
    assert_eq!(label_name("http.method"), "http_method");
    assert_eq!(label_name("0day"), "key_0day");
}

#[test]
fn config_validation() {
    let ok =
        parse(&yaml("endpoint: http://p:9090/api/v1/write\nadd_metric_suffixes: false\n").unwrap());
    assert!(ok.is_ok());
    assert!(
        parse(
            &yaml("endpoint: http://p:9090/api/v1/write\nsending_queue:\n  num_consumers: 4\n")
                .unwrap()
        )
        .is_ok()
    );
    let e =
        parse(&yaml("endpoint: http://p:9090/api/v1/write\nmax_batch_size_bytes: 10\n").unwrap())
            .err()
            .unwrap();
    assert_eq!(
        (e.path_string().as_str(), e.pos.unwrap().line),
        ("max_batch_size_bytes", 2)
    );
    assert!(parse(&yaml("endpoint: http://p:1/x\nsending_queue:\n  batch:\n").unwrap()).is_ok());
}

use opentelemetry_proto::tonic::metrics::v1::{Gauge, Histogram, Metric, ScopeMetrics, Sum};
use opentelemetry_proto::tonic::resource::v1::Resource;

fn cfg(extra: &str) -> Config {
    client::parse(&yaml(&format!("endpoint: http://p:1/x\n{extra}")).unwrap()).unwrap()
}

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn metrics(ms: Vec<Metric>, res: Vec<KeyValue>) -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: res,
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics: ms,
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn gauge(name: &str, points: Vec<(Vec<KeyValue>, u64, f64)>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: points
                .into_iter()
                .map(|(attributes, ts, v)| NumberDataPoint {
                    attributes,
                    time_unix_nano: ts * 1_000_000,
                    value: Some(number_data_point::Value::AsDouble(v)),
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    }
}

/// Decodes every request of every shard with prost, checking on the way that our encoding
/// is byte for byte what prost itself would write.
fn decode(out: &Output) -> Vec<pb::TimeSeries> {
    let mut series = Vec::new();
    for shard in &out.shards {
        for body in &shard.bodies {
            let req = pb::WriteRequest::decode(&body[..]).unwrap();
            assert_eq!(req.encode_to_vec(), *body, "not prost's encoding");
            series.extend(req.timeseries);
        }
    }
    series
}

fn labels(ts: &pb::TimeSeries) -> Vec<(&str, &str)> {
    ts.labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect()
}

#[test]
fn requests_split_by_size_and_keep_every_series() {
    let mut c = cfg("max_batch_size_bytes: 1024\n");
    c.target_info.enabled = false;
    let points = (0..100)
        .map(|i| {
            (
                vec![kv("i", any_value::Value::IntValue(i))],
                1 + i as u64,
                1.0,
            )
        })
        .collect();
    let out = Translator::new(c).translate(&metrics(vec![gauge("g", points)], vec![]), 1);
    let bodies = &out.shards[0].bodies;
    assert!(bodies.len() > 1);
    assert!(bodies.iter().all(|b| b.len() <= 1024));
    assert_eq!(decode(&out).len(), 100);
    assert_eq!(out.shards[0].points, 100);
}

#[test]
fn labels_sorted_merged_and_samples_of_a_series_in_time_order() {
    let attrs = || {
        vec![
            kv("http.method", s("GET")),
            kv("http_method", s("POST")),
            kv("0day", any_value::Value::BoolValue(true)),
            kv("empty", s("")),
            kv("__name__", s("spoofed")),
        ]
    };
    let res = vec![
        kv("service.name", s("svc")),
        kv("service.namespace", s("shop")),
        kv("service.instance.id", s("i-1")),
        kv("host.name", s("h")),
    ];
    // The same series three times, out of order; another series in between.
    let g = gauge(
        "temp",
        vec![
            (attrs(), 30, 3.0),
            (vec![kv("other", s("x"))], 10, 9.0),
            (attrs(), 10, 1.0),
            (attrs(), 20, 2.0),
        ],
    );
    let t = Translator::new(cfg(""));
    let input = metrics(vec![g], res);
    let out = t.translate(&input, 1);
    let series = decode(&out);
    // The second time the rewritten label names come from the cache: the same output.
    assert_eq!(decode(&t.translate(&input, 1)), series);
    assert_eq!(series.len(), 3, "{series:?}");
    let temp = &series[0];
    assert_eq!(
        labels(temp),
        vec![
            ("__name__", "temp"),
            ("http_method", "GET;POST"),
            ("instance", "i-1"),
            ("job", "shop/svc"),
            ("key_0day", "true"),
        ]
    );
    let samples: Vec<(i64, f64)> = temp
        .samples
        .iter()
        .map(|x| (x.timestamp, x.value))
        .collect();
    assert_eq!(samples, vec![(10, 1.0), (20, 2.0), (30, 3.0)]);
    assert_eq!(out.shards[0].points, 4);
    let info = &series[2];
    assert_eq!(
        labels(info),
        vec![
            ("__name__", "target_info"),
            ("host_name", "h"),
            ("instance", "i-1"),
            ("job", "shop/svc")
        ]
    );
    assert_eq!(info.samples[0].timestamp, 30);
}

#[test]
fn histogram_series_and_an_le_attribute_replaced() {
    let h = Metric {
        name: "lat".into(),
        unit: "s".into(),
        data: Some(Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes: vec![kv("le", s("bogus")), kv("a", s("1"))],
                time_unix_nano: 5_000_000,
                count: 6,
                sum: Some(2.5),
                bucket_counts: vec![1, 2, 3],
                explicit_bounds: vec![0.5, 1.0],
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    };
    let out = Translator::new(cfg("")).translate(&metrics(vec![h], vec![]), 1);
    let got: Vec<(String, f64)> = decode(&out)
        .iter()
        .map(|t| {
            let l: Vec<String> = t
                .labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect();
            (l.join(","), t.samples[0].value)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("__name__=lat_seconds_bucket,a=1,le=0.5".into(), 1.0),
            ("__name__=lat_seconds_bucket,a=1,le=1".into(), 3.0),
            ("__name__=lat_seconds_bucket,a=1,le=+Inf".into(), 6.0),
            // Only the bucket series own `le`; elsewhere the attribute stays, as in the Collector.
            ("__name__=lat_seconds_sum,a=1,le=bogus".into(), 2.5),
            ("__name__=lat_seconds_count,a=1,le=bogus".into(), 6.0),
        ]
    );
    assert_eq!(out.shards[0].points, 1);
}

#[test]
fn shards_partition_series_the_same_way_every_time() {
    let mut c = cfg("");
    c.target_info.enabled = false;
    let t = Translator::new(c);
    let batch = |ts: u64| {
        let points = (0..200)
            .map(|i| (vec![kv("i", any_value::Value::IntValue(i))], ts, i as f64))
            .collect();
        metrics(vec![gauge("g", points)], vec![])
    };
    let shard_of = |out: &Output| {
        let mut m = BTreeMap::new();
        for (k, shard) in out.shards.iter().enumerate() {
            for body in &shard.bodies {
                for ts in pb::WriteRequest::decode(&body[..]).unwrap().timeseries {
                    m.insert(ts.labels[1].value.clone(), k);
                }
            }
        }
        m
    };
    let (a, b) = (t.translate(&batch(1), 4), t.translate(&batch(2), 4));
    let (sa, sb) = (shard_of(&a), shard_of(&b));
    assert_eq!(sa.len(), 200);
    assert_eq!(sa, sb, "a series moved between shards");
    assert!(a.shards.iter().all(|s| s.points > 20), "uneven shards");
    assert_eq!(a.shards.iter().map(|s| s.points).sum::<usize>(), 200);
}

#[test]
fn delta_sums_accumulate_per_series() {
    let t = Translator::new(cfg(""));
    let delta = |v: i64, ts: u64| {
        metrics(
            vec![Metric {
                name: "hits".into(),
                data: Some(Data::Sum(Sum {
                    data_points: vec![NumberDataPoint {
                        time_unix_nano: ts,
                        value: Some(number_data_point::Value::AsInt(v)),
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            }],
            vec![],
        )
    };
    let v1 = decode(&t.translate(&delta(3, 1_000_000), 1))[0].samples[0].value;
    let v2 = decode(&t.translate(&delta(4, 2_000_000), 1))[0].samples[0].value;
    assert_eq!((v1, v2), (3.0, 7.0));
    let out = Translator::new(cfg("delta_temporality: drop\n")).translate(&delta(3, 1_000_000), 1);
    assert_eq!((decode(&out).len(), out.dropped_delta_points), (0, 1));
}

#[test]
fn native_histogram_indexes_and_downscale() {
    let p = ExponentialHistogramDataPoint {
        scale: 1,
        count: 6,
        positive: Some(Buckets {
            offset: -1,
            bucket_counts: vec![1, 0, 2, 3],
        }),
        ..Default::default()
    };
    let h = native_histogram(&p, 5);
    // OTLP indexes -1, 1, 2 → Prometheus 0, 2, 3: a span at 0 of length 1, a gap of 1, then 2.
    assert_eq!(
        h.positive_spans,
        vec![
            pb::BucketSpan {
                offset: 0,
                length: 1
            },
            pb::BucketSpan {
                offset: 1,
                length: 2
            }
        ]
    );
    assert_eq!(h.positive_deltas, vec![1, 1, 1]);
    assert_eq!(h.schema, 1);
    let d = downscale(Buckets {
        offset: 3,
        bucket_counts: vec![1, 2, 3],
    });
    assert_eq!((d.offset, d.bucket_counts), (1, vec![1, 5]));
}
