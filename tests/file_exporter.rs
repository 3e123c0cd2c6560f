//! The `file` exporter and the `otlpjsonfile` receiver end to end: the OpenTelemetry Python SDK
//! sends traces, metrics and logs to a ferrotel that writes them with `file` as JSON lines and as
//! zstd-compressed, length-prefixed protobuf; a second ferrotel replays the JSON file with
//! `otlpjsonfile` to an OTLP sink. What is replayed equals, request for request, what the
//! protobuf file holds (so the JSON written and read back loses nothing), and each SDK item is
//! there once. Then the receiver tails the file and, after a restart with `file_storage`,
//! resumes after what it had sent.

mod common;

use std::io::Write as _;
use std::time::Duration;

use common::{Collector, free_port, sdk_send, sink::Sink, wait_until};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;

/// The requests of a `format: proto, compression: zstd` file: each a 4-byte big-endian length,
/// then a zstd frame of that length.
fn frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        assert!(rest.len() >= 4, "a torn length prefix");
        let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        assert!(rest.len() >= 4 + n, "a torn frame");
        out.push(zstd::decode_all(&rest[4..4 + n]).expect("a zstd frame"));
        rest = &rest[4 + n..];
    }
    out
}

#[derive(Default, Debug, PartialEq)]
struct Held {
    spans: Vec<ResourceSpans>,
    metrics: Vec<ResourceMetrics>,
    logs: Vec<ResourceLogs>,
}

fn proto_file(path: &std::path::Path) -> Held {
    let mut h = Held::default();
    for f in frames(&std::fs::read(path).unwrap()) {
        // One file per signal keeps the decoding unambiguous.
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with("traces") {
            h.spans.extend(
                ExportTraceServiceRequest::decode(&f[..])
                    .unwrap()
                    .resource_spans,
            );
        } else if name.starts_with("metrics") {
            h.metrics.extend(
                ExportMetricsServiceRequest::decode(&f[..])
                    .unwrap()
                    .resource_metrics,
            );
        } else {
            h.logs.extend(
                ExportLogsServiceRequest::decode(&f[..])
                    .unwrap()
                    .resource_logs,
            );
        }
    }
    h
}

fn points(rm: &[ResourceMetrics]) -> usize {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    rm.iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        })
        .sum()
}

fn replayer(dir: &std::path::Path, sink: u16, health: u16, storage: bool) -> String {
    let (ext, key) = if storage {
        (
            format!(
                "  file_storage: {{ directory: \"{}\", create_directory: true }}\n",
                dir.join("state").display()
            ),
            "    storage: file_storage\n",
        )
    } else {
        (String::new(), "")
    };
    let exts = if storage {
        "[health_check, file_storage]"
    } else {
        "[health_check]"
    };
    format!(
        r#"
receivers:
  otlpjsonfile:
    include: ["{dir}/all.json"]
    start_at: beginning
    poll_interval: 50ms
{key}exporters:
  otlp_grpc:
    endpoint: "127.0.0.1:{sink}"
    tls: {{ insecure: true }}
    sending_queue: {{ enabled: false }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
{ext}service:
  extensions: {exts}
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlpjsonfile], exporters: [otlp_grpc] }}
    metrics: {{ receivers: [otlpjsonfile], exporters: [otlp_grpc] }}
    logs: {{ receivers: [otlpjsonfile], exporters: [otlp_grpc] }}
"#,
        dir = dir.display()
    )
}

#[test]
fn sdk_data_written_as_json_and_proto_replays_identically_and_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (grpc, health) = (free_port(), free_port());
    let proto = |sig: &str| {
        format!(
            "  file/{sig}:\n    path: \"{}/{sig}.pb.zst\"\n    format: proto\n    compression: zstd\n",
            d.display()
        )
    };
    let cfg = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
exporters:
  file/json:
    path: "{dir}/all.json"
    flush_interval: 100ms
{pt}{pm}{pl}extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [file/json, file/traces] }}
    metrics: {{ receivers: [otlp], exporters: [file/json, file/metrics] }}
    logs: {{ receivers: [otlp], exporters: [file/json, file/logs] }}
"#,
        dir = d.display(),
        pt = proto("traces"),
        pm = proto("metrics"),
        pl = proto("logs"),
    );
    let mut writer = Collector::start(&cfg, &[], Some(health), None);
    let (ok, report, err) = sdk_send(
        &format!("http://127.0.0.1:{grpc}"),
        "grpc",
        "traces,metrics,logs",
        20,
        "file-e2e",
        &[],
    );
    assert!(ok, "SDK: {err}\n{}", writer.logs());
    assert!(writer.terminate().success(), "{}", writer.logs());

    let held = Held {
        spans: proto_file(&d.join("traces.pb.zst")).spans,
        metrics: proto_file(&d.join("metrics.pb.zst")).metrics,
        logs: proto_file(&d.join("logs.pb.zst")).logs,
    };
    let span_count: usize = held
        .spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    let log_count: usize = held
        .logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    assert_eq!(span_count, report["spans"].as_array().unwrap().len());
    assert_eq!(span_count, 40, "20 parents and 20 children");
    assert_eq!(log_count, 20);
    assert!(points(&held.metrics) > 0);
    let json = std::fs::read_to_string(d.join("all.json")).unwrap();
    assert!(
        json.lines().all(|l| l.starts_with('{') && l.ends_with('}')),
        "one JSON object per line"
    );

    // Replay the JSON lines.
    let sink = Sink::start();
    let health2 = free_port();
    let replay = Collector::start(
        &replayer(d, sink.port, health2, false),
        &[],
        Some(health2),
        None,
    );
    wait_until("the replayed items", Duration::from_secs(20), || {
        sink.store.span_count() >= 40
            && sink.store.log_count() >= 20
            && points(&sink.store.metrics.lock().unwrap()) >= points(&held.metrics)
    });
    std::thread::sleep(Duration::from_millis(300));
    let got = Held {
        spans: sink.store.spans.lock().unwrap().clone(),
        metrics: sink.store.metrics.lock().unwrap().clone(),
        logs: sink.store.logs.lock().unwrap().clone(),
    };
    assert_eq!(got.spans, held.spans, "spans: JSON replay == protobuf file");
    assert_eq!(got.logs, held.logs, "logs: JSON replay == protobuf file");
    assert_eq!(
        got.metrics, held.metrics,
        "metrics: JSON replay == protobuf file"
    );
    drop(replay);
}

#[test]
fn otlpjsonfile_tails_skips_bad_lines_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let line = |run: &str, n: usize| {
        let mut logs = Vec::new();
        for i in 0..n {
            logs.push(format!(
                r#"{{"body":{{"stringValue":"{run} {i}"}},"timeUnixNano":"1700000000000000000"}}"#
            ));
        }
        format!(
            r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"tail"}}}}]}},"scopeLogs":[{{"logRecords":[{}]}}]}}]}}"#,
            logs.join(",")
        ) + "\n"
    };
    let path = d.join("all.json");
    std::fs::write(&path, line("a", 3)).unwrap();
    let sink = Sink::start();
    let health = free_port();
    let mut c = Collector::start(
        &replayer(d, sink.port, health, true),
        &[],
        Some(health),
        None,
    );
    wait_until("the first line", Duration::from_secs(10), || {
        sink.store.log_count() >= 3
    });
    // Appended: a bad line (counted, skipped), a half-written line, then its end.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"{not json}\n").unwrap();
    let next = line("b", 2);
    f.write_all(&next.as_bytes()[..20]).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        sink.store.log_count(),
        3,
        "a partial line waits for its end"
    );
    f.write_all(&next.as_bytes()[20..]).unwrap();
    wait_until("the appended line", Duration::from_secs(10), || {
        sink.store.log_count() >= 5
    });
    assert!(
        c.logs().contains("line skipped"),
        "the bad line is reported: {}",
        c.logs()
    );
    assert!(c.terminate().success());

    // Restarted with its storage: only what was written while it was down arrives.
    f.write_all(line("c", 4).as_bytes()).unwrap();
    let c2 = Collector::start(
        &replayer(d, sink.port, health, true),
        &[],
        Some(health),
        None,
    );
    wait_until(
        "the line written while down",
        Duration::from_secs(10),
        || sink.store.log_count() >= 9,
    );
    std::thread::sleep(Duration::from_millis(500));
    let bodies: Vec<String> = sink
        .store
        .logs
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .map(|r| common::value_text(&r.body))
        .collect();
    assert_eq!(
        bodies,
        [
            "a 0", "a 1", "a 2", "b 0", "b 1", "c 0", "c 1", "c 2", "c 3"
        ],
        "each record once, in order"
    );
    drop(c2);
}
