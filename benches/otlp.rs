//! Criterion benches of the data path's pieces: OTLP decode, batch merge and split, encode,
//! and export compression. Run: `cargo bench --bench otlp`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ferrotel::net::compression::Compression;
use ferrotel::signal::Batch;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// `spans` spans with `attrs` attributes each, as the load generator sends them.
fn request(spans: usize, attrs: usize) -> ExportTraceServiceRequest {
    let kv = |k: String, v: any_value::Value| KeyValue {
        key: k,
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..spans as u64)
                    .map(|i| Span {
                        trace_id: [i.to_be_bytes(), i.to_le_bytes()].concat(),
                        span_id: i.to_be_bytes().to_vec(),
                        name: format!("GET /api/v1/items/{}", i % 16),
                        start_time_unix_nano: 1_700_000_000_000_000_000 + i,
                        end_time_unix_nano: 1_700_000_000_001_000_000 + i,
                        attributes: (0..attrs)
                            .map(|a| match a % 3 {
                                0 => kv(
                                    format!("attr.str.{a}"),
                                    any_value::Value::StringValue(format!("value-{a}-{}", i % 7)),
                                ),
                                1 => kv(
                                    format!("attr.int.{a}"),
                                    any_value::Value::IntValue(i as i64),
                                ),
                                _ => kv(
                                    format!("attr.bool.{a}"),
                                    any_value::Value::BoolValue(i % 2 == 0),
                                ),
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn benches(c: &mut Criterion) {
    let req = request(1000, 10);
    let bytes = req.encode_to_vec();

    let mut g = c.benchmark_group("otlp");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("decode_1000_spans", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(black_box(&bytes[..])).unwrap())
    });
    let batch = Batch::Traces(req.resource_spans.clone());
    g.bench_function("encode_1000_spans", |b| {
        b.iter(|| black_box(&batch).encode_request())
    });
    g.bench_function("gzip6_1000_spans", |b| {
        b.iter(|| {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(black_box(&bytes)).unwrap();
            e.finish().unwrap()
        })
    });
    g.bench_function("gzip_fast_1000_spans", |b| {
        b.iter(|| {
            Compression::Gzip
                .encode(black_box(bytes::Bytes::from(bytes.clone())))
                .unwrap()
        })
    });
    g.bench_function("zstd_1000_spans", |b| {
        b.iter(|| {
            Compression::Zstd
                .encode(black_box(bytes::Bytes::from(bytes.clone())))
                .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(10 * 1000));
    g.bench_function("merge_10x1000_spans", |b| {
        b.iter_batched(
            || {
                (0..10)
                    .map(|_| Batch::Traces(req.resource_spans.clone()))
                    .collect::<Vec<_>>()
            },
            |parts| {
                let mut acc = Batch::empty(ferrotel::signal::Signal::Traces);
                for p in parts {
                    acc.append(p).unwrap();
                }
                acc
            },
            BatchSize::SmallInput,
        )
    });
    let big = Batch::Traces(request(10_000, 10).resource_spans);
    g.bench_function("split_10000_into_1024", |b| {
        b.iter_batched(|| big.clone(), |b| b.split(1024), BatchSize::SmallInput)
    });
    g.bench_function("item_count_10000", |b| {
        b.iter(|| black_box(&big).item_count())
    });
    g.finish();
}

criterion_group!(otlp, benches);
criterion_main!(otlp);
