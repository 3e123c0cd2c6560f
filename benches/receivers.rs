//! Criterion benches of the agent receivers' parsing on one core: syslog messages (RFC 5424 and
//! RFC 3164) into log records, container log lines (CRI and docker JSON) through the container
//! stage, and a Prometheus text scrape into OTLP metrics. End-to-end figures (files and syslog
//! to an OTLP sink, a real process) come from `benches/agent_receivers.py`.
//! Run: `cargo bench --bench receivers`.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferrotel::receivers::prometheus::{convert, parse as prom};
use ferrotel::receivers::syslog::{Parser, Protocol};
use ferrotel::stanza::entry::Entry;
use ferrotel::stanza::stateful::{ContainerConfig, FileState, Stages};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const N: usize = 1000;

fn syslog(c: &mut Criterion) {
    let mut g = c.benchmark_group("syslog");
    g.throughput(Throughput::Elements(N as u64));
    let p5424 = Parser::new(Protocol::Rfc5424, "UTC").unwrap();
    let msgs: Vec<String> = (0..N)
        .map(|i| format!("<165>1 2024-05-01T10:00:00.{i:06}Z host-{} app 1234 ID47 [ex@32473 k=\"v\" n=\"{i}\"] message number {i}", i % 10))
        .collect();
    g.bench_function("rfc5424_to_record", |b| {
        b.iter(|| {
            for m in &msgs {
                black_box(p5424.record(m, 1));
            }
        })
    });
    let p3164 = Parser::new(Protocol::Rfc3164, "Europe/Berlin").unwrap();
    let msgs: Vec<String> = (0..N)
        .map(|i| format!("<34>Oct  1 22:14:{:02} mymachine su[{i}]: 'su root' failed for lonvick on /dev/pts/8", i % 60))
        .collect();
    g.bench_function("rfc3164_to_record", |b| {
        b.iter(|| {
            for m in &msgs {
                black_box(p3164.record(m, 1));
            }
        })
    });
    g.finish();
}

fn container(c: &mut Criterion) {
    let mut g = c.benchmark_group("container");
    g.throughput(Throughput::Elements(N as u64));
    let stages = Stages {
        container: Some(ContainerConfig {
            format: None,
            add_metadata_from_filepath: true,
            max_log_size: 0,
        }),
        recombine: None,
    };
    let path = "/var/log/pods/shop_cart-7d9f_0b6c2f6e-1111-2222-3333-444455556666/server/0.log";
    let mut base = Entry::default();
    base.attributes.push((
        "log.file.path".into(),
        ferrotel::stanza::entry::Value::Str(path.into()),
    ));
    for (name, lines) in [
        (
            "cri_line",
            (0..N)
                .map(|i| format!("2024-05-01T10:00:00.{i:09}Z stdout F GET /api/v1/items/{i} 200 0.003s"))
                .collect::<Vec<_>>(),
        ),
        (
            "docker_line",
            (0..N)
                .map(|i| format!("{{\"log\":\"GET /api/v1/items/{i} 200 0.003s\\n\",\"stream\":\"stdout\",\"time\":\"2024-05-01T10:00:00.{i:09}Z\"}}"))
                .collect::<Vec<_>>(),
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let input = lines.clone();
                    let mut st = FileState::default();
                    let mut out = Vec::with_capacity(N);
                    let now = Instant::now();
                    let t0 = Instant::now();
                    for (i, l) in input.into_iter().enumerate() {
                        stages.feed(&mut st, &base, path, i as u64, l, now, &mut out);
                    }
                    total += t0.elapsed();
                    black_box(out);
                }
                total
            })
        });
    }
    g.finish();
}

fn prometheus(c: &mut Criterion) {
    let mut g = c.benchmark_group("prometheus");
    let mut body = String::new();
    body.push_str("# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n");
    for i in 0..N {
        body.push_str(&format!(
            "http_requests_total{{method=\"GET\",code=\"200\",path=\"/api/{i}\"}} {}\n",
            i * 7
        ));
    }
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("parse_and_convert_1000_samples", |b| {
        let mut st = convert::StartTimes::default();
        b.iter(|| {
            let sc = prom::parse(&body, false).unwrap();
            black_box(convert::convert(&sc, &sc.samples, 1, true, &mut st));
        })
    });
    g.finish();
}

criterion_group!(benches, syslog, container, prometheus);
criterion_main!(benches);
