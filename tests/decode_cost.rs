//! The wire scanner's estimate of what a decoded request takes in memory, checked against what
//! prost really allocates: a counting allocator measures the heap that the decoded request holds.
//! Admission charges this estimate before decoding, so it must not be below the truth, and it
//! must be close enough not to refuse normal traffic.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use opentelemetry_proto::tonic::collector::{logs::v1 as cl, metrics::v1 as cm, trace::v1 as ct};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use ferrotel::signal::{Signal, wire};

/// Counts the bytes this thread has allocated and not freed.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|c| c.set(c.get() + l.size() as isize));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let _ = LIVE.try_with(|c| c.set(c.get() - l.size() as isize));
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let _ = LIVE.try_with(|c| c.set(c.get() + new as isize - l.size() as isize));
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

/// The heap the decoded request holds, measured.
fn measured(signal: Signal, bytes: &[u8]) -> usize {
    let before = live();
    let after = match signal {
        Signal::Traces => {
            let r = ct::ExportTraceServiceRequest::decode(bytes).unwrap();
            let a = live();
            drop(r);
            a
        }
        Signal::Metrics => {
            let r = cm::ExportMetricsServiceRequest::decode(bytes).unwrap();
            let a = live();
            drop(r);
            a
        }
        Signal::Logs => {
            let r = cl::ExportLogsServiceRequest::decode(bytes).unwrap();
            let a = live();
            drop(r);
            a
        }
        Signal::Profiles => {
            use opentelemetry_proto::tonic::collector::profiles::v1development as cp;
            let r = cp::ExportProfilesServiceRequest::decode(bytes).unwrap();
            let a = live();
            drop(r);
            a
        }
    };
    (after - before) as usize
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn spans(n: usize, attrs: usize) -> Vec<u8> {
    let spans = (0..n)
        .map(|i| Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: format!("GET /api/items/{i}"),
            kind: 2,
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            attributes: (0..attrs)
                .map(|a| kv(&format!("attribute.{a}"), "some value"))
                .collect(),
            ..Default::default()
        })
        .collect();
    ct::ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "checkout"), kv("host.name", "node-1")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn metrics(points: usize) -> Vec<u8> {
    let gauge = Metric {
        name: "node_cpu_seconds_total".into(),
        data: Some(Data::Gauge(Gauge {
            data_points: (0..points)
                .map(|i| NumberDataPoint {
                    attributes: vec![kv("cpu", &i.to_string()), kv("mode", "idle")],
                    time_unix_nano: 5,
                    value: Some(number_data_point::Value::AsDouble(i as f64)),
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    };
    let hist = Metric {
        name: "http_server_duration".into(),
        data: Some(Data::Histogram(Histogram {
            data_points: (0..points / 10)
                .map(|_| HistogramDataPoint {
                    count: 10,
                    bucket_counts: vec![1; 12],
                    explicit_bounds: vec![0.5; 11],
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: 2,
        })),
        ..Default::default()
    };
    cm::ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![gauge, hist],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn logs(n: usize) -> Vec<u8> {
    cl::ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..n)
                    .map(|i| LogRecord {
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!(
                                "2026-12-01T10:00:00Z INFO request {i} served in 3 ms"
                            ))),
                        }),
                        attributes: vec![kv("log.iostream", "stdout")],
                        severity_number: 9,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// `n` copies of an empty item (`{}`) at the item level, two bytes each on the wire.
fn empty_items(signal: Signal, n: usize) -> Vec<u8> {
    let mut inner = Vec::with_capacity(2 * n);
    for _ in 0..n {
        inner.extend_from_slice(&[0x12, 0x00]);
    }
    match signal {
        Signal::Traces | Signal::Logs => {
            // Scope{items = 2}, Resource{scopes = 2}, Request{resources = 1}
            let scope = wrap(0x12, &inner);
            wrap(0x0a, &scope)
        }
        Signal::Metrics => {
            // NumberDataPoint{} in Gauge.data_points (1); Metric.gauge (5); Scope.metrics (2);
            // Resource.scope_metrics (2); Request (1).
            let mut points = Vec::with_capacity(2 * n);
            for _ in 0..n {
                points.extend_from_slice(&[0x0a, 0x00]);
            }
            let metric = wrap(0x2a, &points);
            let scope = wrap(0x12, &metric);
            let res = wrap(0x12, &scope);
            wrap(0x0a, &res)
        }
        Signal::Profiles => {
            // Sample{} in Profile.samples (2), the Profile in Scope.profiles (2);
            // Resource.scope_profiles (2); Request.resource_profiles (1).
            wrap(0x0a, &wrap(0x12, &wrap(0x12, &inner)))
        }
    }
}

fn wrap(key: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![key];
    let mut v = body.len() as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out.extend_from_slice(body);
    out
}

#[test]
fn the_estimate_bounds_what_prost_allocates_and_stays_close() {
    let cases: Vec<(&str, Signal, Vec<u8>)> = vec![
        ("spans with 20 attributes", Signal::Traces, spans(2000, 20)),
        ("bare spans", Signal::Traces, spans(3000, 0)),
        ("gauge and histogram points", Signal::Metrics, metrics(5000)),
        ("log lines", Signal::Logs, logs(4000)),
        (
            "empty spans",
            Signal::Traces,
            empty_items(Signal::Traces, 50_000),
        ),
        (
            "empty log records",
            Signal::Logs,
            empty_items(Signal::Logs, 50_000),
        ),
        (
            "empty data points",
            Signal::Metrics,
            empty_items(Signal::Metrics, 50_000),
        ),
        (
            "empty profile samples",
            Signal::Profiles,
            empty_items(Signal::Profiles, 50_000),
        ),
        ("one span, 100k empty attributes", Signal::Traces, {
            let mut attrs = Vec::new();
            for _ in 0..100_000 {
                attrs.extend_from_slice(&[0x4a, 0x00]); // Span.attributes (9) = {}
            }
            let span = wrap(0x12, &attrs);
            wrap(0x0a, &wrap(0x12, &span))
        }),
    ];
    for (what, signal, bytes) in cases {
        let estimate = wire::scan(signal, &bytes).unwrap().decoded_bytes;
        let real = measured(signal, &bytes);
        let ratio = estimate as f64 / real as f64;
        println!(
            "{what}: {} wire bytes, estimate {estimate}, measured {real} ({ratio:.3}), amplification {:.1}x",
            bytes.len(),
            real as f64 / bytes.len() as f64
        );
        assert!(
            estimate >= real,
            "{what}: the estimate {estimate} is below the {real} bytes prost allocated"
        );
        assert!(
            ratio < 1.25,
            "{what}: the estimate {estimate} is {ratio:.2}x the {real} bytes allocated"
        );
    }
}
