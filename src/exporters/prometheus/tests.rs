use super::*;
use crate::config::node::parse as yaml;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    exemplar, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::signal::testdata::kv;

fn cfg(extra: &str) -> Config {
    from_node(&yaml(&format!("endpoint: 127.0.0.1:0\n{extra}")).unwrap()).unwrap()
}

fn resource(metrics: Vec<Metric>) -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", "shop"),
                kv("service.instance.id", "i-1"),
                kv("host.name", "node-a"),
            ],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: "lib".into(),
                version: "1.0".into(),
                ..Default::default()
            }),
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn number(attrs: Vec<KeyValue>, t_s: u64, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: 1_000_000_000,
        time_unix_nano: t_s * 1_000_000_000,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn counter(points: Vec<NumberDataPoint>, temporality: AggregationTemporality) -> Metric {
    Metric {
        name: "http.requests".into(),
        description: "Requests \"served\"\nso far".into(),
        unit: "{request}".into(),
        data: Some(Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn histogram(temporality: AggregationTemporality, counts: Vec<u64>, sum: f64) -> Metric {
    Metric {
        name: "http.duration".into(),
        unit: "s".into(),
        data: Some(Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                start_time_unix_nano: 1_000_000_000,
                time_unix_nano: 2_000_000_000,
                count: counts.iter().sum(),
                sum: Some(sum),
                bucket_counts: counts,
                explicit_bounds: vec![0.1, 1.0],
                exemplars: vec![Exemplar {
                    value: Some(exemplar::Value::AsDouble(0.5)),
                    time_unix_nano: 1_500_000_000,
                    trace_id: vec![0xab; 16],
                    span_id: vec![0xcd; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            aggregation_temporality: temporality as i32,
        })),
        ..Default::default()
    }
}

fn scrape(shared: &Shared, accept: Option<&str>) -> String {
    shared.scrape(accept).1
}

/// The text format, exactly: names with suffixes, job/instance, scope labels, escaped HELP,
/// cumulative buckets, `target_info` with the other resource attributes.
#[test]
fn text_exposition_exactly() {
    let s = Shared::new(&cfg("const_labels: {cluster: ci}\n"));
    let gauge = Metric {
        name: "room.temperature".into(),
        unit: "Cel".into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![number(vec![kv("room", "a\"1")], 2, 21.5)],
        })),
        ..Default::default()
    };
    s.apply(&resource(vec![
        counter(
            vec![number(vec![kv("route", "/x")], 2, 7.0)],
            AggregationTemporality::Cumulative,
        ),
        histogram(AggregationTemporality::Cumulative, vec![1, 2, 3], 4.5),
        gauge,
    ]));
    let base =
        r#"cluster="ci",instance="i-1",job="shop",otel_scope_name="lib",otel_scope_version="1.0""#;
    let want = format!(
        r#"# TYPE http_duration_seconds histogram
http_duration_seconds_bucket{{{base},le="0.1"}} 1
http_duration_seconds_bucket{{{base},le="1"}} 3
http_duration_seconds_bucket{{{base},le="+Inf"}} 6
http_duration_seconds_sum{{{base}}} 4.5
http_duration_seconds_count{{{base}}} 6
# HELP http_requests_total Requests "served"\nso far
# TYPE http_requests_total counter
http_requests_total{{{base},route="/x"}} 7
# TYPE room_temperature_celsius gauge
room_temperature_celsius{{{base},room="a\"1"}} 21.5
# HELP target_info Target metadata
# TYPE target_info gauge
target_info{{cluster="ci",host_name="node-a",instance="i-1",job="shop"}} 1
"#
    );
    assert_eq!(scrape(&s, None), want);
    // Without OpenMetrics enabled, asking for it still gets text.
    assert_eq!(
        s.scrape(Some("application/openmetrics-text; version=1.0.0"))
            .0,
        render::TEXT
    );
}

/// OpenMetrics: counter family without `_total`, `_created`, `# UNIT`, exemplars on the
/// counter and on the bucket the exemplar falls in, `# EOF`.
#[test]
fn openmetrics_exposition_exactly() {
    let s = Shared::new(&cfg(
        "enable_open_metrics: true\nwithout_scope_info: true\nsend_timestamps: true\n",
    ));
    let mut p = number(vec![], 2, 3.0);
    p.exemplars = vec![Exemplar {
        value: Some(exemplar::Value::AsInt(1)),
        time_unix_nano: 1_250_000_000,
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        ..Default::default()
    }];
    s.apply(&resource(vec![
        counter(vec![p], AggregationTemporality::Cumulative),
        histogram(AggregationTemporality::Cumulative, vec![0, 1, 0], 0.5),
    ]));
    let (ctype, body) = s.scrape(Some(
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    ));
    assert_eq!(ctype, render::OPENMETRICS);
    let base = r#"instance="i-1",job="shop""#;
    let ex = r#"trace_id="abababababababababababababababab",span_id="cdcdcdcdcdcdcdcd""#;
    let want = format!(
        r#"# TYPE http_duration_seconds histogram
# UNIT http_duration_seconds seconds
http_duration_seconds_bucket{{{base},le="0.1"}} 0 2.000
http_duration_seconds_bucket{{{base},le="1"}} 1 2.000 # {{{ex}}} 0.5 1.500
http_duration_seconds_bucket{{{base},le="+Inf"}} 1 2.000
http_duration_seconds_sum{{{base}}} 0.5 2.000
http_duration_seconds_count{{{base}}} 1 2.000
http_duration_seconds_created{{{base}}} 1
# HELP http_requests Requests \"served\"\nso far
# TYPE http_requests counter
http_requests_total{{{base}}} 3 2.000 # {{trace_id="01010101010101010101010101010101",span_id="0202020202020202"}} 1 1.250
http_requests_created{{{base}}} 1
# HELP target Target metadata
# TYPE target info
target_info{{host_name="node-a",instance="i-1",job="shop"}} 1
# EOF
"#
    );
    assert_eq!(body, want);
}

/// Deltas are added up; a cumulative point older than the series is ignored; "no recorded
/// value" removes the series; a series expires; an exponential histogram is counted out.
#[test]
fn deltas_accumulate_old_points_are_ignored_and_series_expire() {
    let s = Shared::new(&cfg("metric_expiration: 200ms\nwithout_scope_info: true\n"));
    let d = AggregationTemporality::Delta;
    for v in [2.0, 3.0] {
        s.apply(&resource(vec![
            counter(vec![number(vec![], 2, v)], d),
            histogram(d, vec![1, 0, 1], 2.0),
        ]));
    }
    let body = scrape(&s, None);
    assert!(
        body.contains("http_requests_total{instance=\"i-1\",job=\"shop\"} 5\n"),
        "{body}"
    );
    assert!(
        body.contains("le=\"0.1\"} 2\n") && body.contains("le=\"+Inf\"} 4\n"),
        "{body}"
    );
    assert!(body.contains("http_duration_seconds_sum{instance=\"i-1\",job=\"shop\"} 4\n"));

    let c = AggregationTemporality::Cumulative;
    let s2 = Shared::new(&cfg("without_scope_info: true\n"));
    s2.apply(&resource(vec![counter(vec![number(vec![], 5, 10.0)], c)]));
    s2.apply(&resource(vec![counter(vec![number(vec![], 4, 99.0)], c)]));
    assert!(scrape(&s2, None).contains("} 10\n"));
    let mut stale = number(vec![], 6, 0.0);
    stale.flags = 1;
    s2.apply(&resource(vec![counter(vec![stale], c)]));
    assert!(!scrape(&s2, None).contains("http_requests_total"));

    let eh = Metric {
        name: "latency".into(),
        data: Some(Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint::default(); 3],
            aggregation_temporality: c as i32,
        })),
        ..Default::default()
    };
    assert_eq!(s2.apply(&resource(vec![eh])), 3);

    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(scrape(&s, None), "");
}

#[test]
fn config_keys_and_errors() {
    let c = cfg("translation_strategy: UnderscoreEscapingWithoutSuffixes\n");
    assert!(c.translation_strategy.is_some());
    let p = |y: &str| {
        parse(&yaml(y).unwrap())
            .err()
            .map(|e| (e.path_string(), e.msg))
    };
    assert!(p("endpoint: 0.0.0.0:8889\nconst_labels: {a: b}\nmetric_expiration: 180m\nenable_open_metrics: true\nresource_to_telemetry_conversion: {enabled: true}\n").is_none());
    let (path, msg) = p("endpoint: 0.0.0.0:8889\ntranslation_strategy: NoTranslation\n").unwrap();
    assert_eq!(path, "translation_strategy");
    assert!(msg.contains("classic names"), "{msg}");
    assert_eq!(p("endpoint: http://x:1\n").unwrap().0, "endpoint");
    assert_eq!(
        p("endpoint: 0.0.0.0:1\nmetric_expiration: 0s\n").unwrap().0,
        "metric_expiration"
    );
    assert!(p("endpoint: 0.0.0.0:1\nsending_queue: {enabled: true}\n").is_some());
    assert!(!negotiate(Some("text/plain"), true).eq(&Format::OpenMetrics));
}
