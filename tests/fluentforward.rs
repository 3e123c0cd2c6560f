//! The `fluentforward` receiver against Fluent Forward clients: fluent-logger (PyPI) in Message
//! mode, and the msgpack library (PyPI) writing Forward, PackedForward and
//! CompressedPackedForward messages with `chunk` options as the Forward Protocol Specification
//! v1 defines them (what Fluent Bit and fluentd send; neither can be installed here), over TCP
//! and a Unix socket. Every record arrives once with its fields mapped; acknowledged chunks
//! were taken by the pipeline; a refused pipeline gets no ack; garbage closes only its own
//! connection.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::{Collector, free_port, python, repo, sink::Sink, wait_until};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn config(endpoint: &str, sink: u16, health: u16, metrics: u16) -> String {
    format!(
        r#"
receivers:
  fluent_forward: {{ endpoint: "{endpoint}" }}
exporters:
  otlp_grpc:
    endpoint: "127.0.0.1:{sink}"
    tls: {{ insecure: true }}
    retry_on_failure: {{ enabled: false }}
    sending_queue: {{ enabled: false }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    logs: {{ receivers: [fluent_forward], exporters: [otlp_grpc] }}
"#
    )
}

fn send(target: &str, mode: &str) -> std::process::Output {
    send_waiting(target, mode, 10)
}

/// [`send`], waiting at most `ack_timeout` seconds for each acknowledgement.
fn send_waiting(target: &str, mode: &str, ack_timeout: u32) -> std::process::Output {
    Command::new(python())
        .arg(repo().join("tests/e2e/fluent_send.py"))
        .arg(target)
        .arg(mode)
        .env("ACK_TIMEOUT", ack_timeout.to_string())
        .output()
        .expect("run fluent_send.py")
}

/// (tag, body, attributes, time) of every record at the sink.
fn records(sink: &Sink) -> Vec<(String, String, Vec<KeyValue>, u64)> {
    let mut out = Vec::new();
    for rl in sink.store.logs.lock().unwrap().iter() {
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                let tag = match attr(&r.attributes, "fluent.tag") {
                    Some(any_value::Value::StringValue(t)) => t.clone(),
                    _ => String::new(),
                };
                let body = match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                    Some(any_value::Value::StringValue(b)) => b.clone(),
                    other => format!("{other:?}"),
                };
                out.push((tag, body, r.attributes.clone(), r.time_unix_nano));
            }
        }
    }
    out
}

#[test]
fn every_mode_over_tcp_and_unix_arrives_once_and_chunks_are_acknowledged() {
    let sink = Sink::start();
    let (port, health, metrics) = (free_port(), free_port(), free_port());
    let c = Collector::start(
        &config(&format!("127.0.0.1:{port}"), sink.port, health, metrics),
        &[],
        Some(health),
        Some(metrics),
    );
    for mode in ["FLUENT_LOGGER", "FORWARD", "PACKED", "COMPRESSED"] {
        let out = send(&port.to_string(), mode);
        assert!(
            out.status.success(),
            "{mode}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            c.logs()
        );
    }
    // The same receiver type on a Unix socket.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fluent.sock");
    let (health2, metrics2) = (free_port(), free_port());
    let c2 = Collector::start(
        &config(
            &format!("unix://{}", path.display()),
            sink.port,
            health2,
            metrics2,
        ),
        &[],
        Some(health2),
        Some(metrics2),
    );
    let out = send(&path.display().to_string(), "UNIX");
    assert!(
        out.status.success(),
        "UNIX: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c2.logs()
    );
    wait_until("15 records", Duration::from_secs(15), || {
        sink.store.log_count() >= 15
    });
    std::thread::sleep(Duration::from_millis(300));
    let got = records(&sink);
    assert_eq!(got.len(), 15, "each record once: {got:?}");
    for (mode, tag) in [
        ("FLUENT_LOGGER", "app.web"),
        ("FORWARD", "app.forward"),
        ("PACKED", "app.packed"),
        ("COMPRESSED", "app.gzip"),
        ("UNIX", "app.unix"),
    ] {
        for i in 0..3 {
            let body = format!("{mode} {i}");
            let r = got
                .iter()
                .find(|r| r.1 == body)
                .unwrap_or_else(|| panic!("no record {body:?} in {got:?}"));
            assert_eq!(r.0, tag, "{body}: fluent.tag");
            assert_eq!(
                attr(&r.2, "level"),
                Some(&any_value::Value::StringValue("info".into())),
                "{body}"
            );
            assert_eq!(
                attr(&r.2, "n"),
                Some(&any_value::Value::IntValue(i)),
                "{body}"
            );
            assert!(attr(&r.2, "log").is_none(), "{body}: `log` is the body");
            assert!(r.3 > 1_600_000_000_000_000_000, "{body}: time {}", r.3);
            if mode != "FORWARD" || i > 0 {
                // EventTime keeps nanoseconds (FORWARD's first entry has integer seconds).
                assert_ne!(r.3 % 1_000_000_000, 0, "{body}: nanoseconds kept");
            }
        }
    }
}

#[test]
fn no_ack_when_the_pipeline_refuses_and_garbage_closes_only_its_connection() {
    // The sink refuses (UNAVAILABLE); the exporter neither queues nor retries: the chunk is
    // not taken, so it is not acknowledged.
    let sink = Sink::start();
    sink.store
        .refuse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (port, health, metrics) = (free_port(), free_port(), free_port());
    let c = Collector::start(
        &config(&format!("127.0.0.1:{port}"), sink.port, health, metrics),
        &[],
        Some(health),
        Some(metrics),
    );
    let out = send_waiting(&port.to_string(), "FORWARD", 2);
    assert!(!out.status.success(), "acknowledged although refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("timed out")
            || String::from_utf8_lossy(&out.stderr).contains("closed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sink.store
        .refuse
        .store(false, std::sync::atomic::Ordering::SeqCst);
    // Garbage: 0xc1 is never MessagePack. That connection is closed and counted.
    let mut bad = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    bad.write_all(&[0xc1, 1, 2, 3]).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(bad.read(&mut buf).unwrap_or(0), 0, "closed by the server");
    wait_until(
        "the malformed message counted",
        Duration::from_secs(10),
        || {
            c.metric("otelcol_receiver_malformed_items_total{receiver=\"fluent_forward\",transport=\"tcp\"}") >= 1.0
        },
    );
    // Other connections are served as before.
    let out = send(&port.to_string(), "PACKED");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the packed records", Duration::from_secs(10), || {
        sink.store.log_count() == 3
    });
}
