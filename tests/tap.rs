//! `ferrotel tap` against a running collector under load: the sample appears in the debug
//! exporter's format at the chosen point (the pipeline's input, a processor's output), at least
//! `--limit` items, while every span still reaches the backend; names that do not resolve are
//! answered with what the pipeline has; a Unix socket endpoint works the same.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Collector, export_traces, free_port, one_span, sink::Sink, wait_until};

fn config(grpc: u16, health: u16, tap_endpoint: &str, sink: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
processors:
  batch: {{ timeout: 50ms }}
  attributes:
    actions: [{{ key: tapped, value: "yes", action: insert }}]
exporters:
  otlp:
    endpoint: "127.0.0.1:{sink}"
    tls: {{ insecure: true }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
  tap: {{ endpoint: "{tap_endpoint}" }}
service:
  extensions: [health_check, tap]
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [batch, attributes], exporters: [otlp] }}
"#
    )
}

/// Sends 10-span requests to `grpc` until stopped; returns the spans accepted.
fn load(
    grpc: u16,
) -> (
    Arc<AtomicBool>,
    Arc<AtomicUsize>,
    std::thread::JoinHandle<()>,
) {
    let on = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicUsize::new(0));
    let (flag, count) = (on.clone(), sent.clone());
    let t = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut i: u8 = 0;
        while flag.load(Ordering::Relaxed) {
            i = i.wrapping_add(1).max(1);
            let mut req = one_span(i, 1, "load-span");
            let span = req.resource_spans[0].scope_spans[0].spans[0].clone();
            req.resource_spans[0].scope_spans[0].spans = vec![span; 10];
            if export_traces(&rt, grpc, req).is_ok() {
                count.fetch_add(10, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    (on, sent, t)
}

fn tap(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrotel"))
        .args(["tap", "--endpoint", endpoint])
        .args(args)
        .output()
        .expect("run ferrotel tap");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The item count of the closing `-- N items in M batches, K skipped` line.
fn shown(out: &str) -> u64 {
    let last = out.lines().last().unwrap_or_default();
    assert!(last.starts_with("-- "), "a closing line: {out}");
    last[3..].split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_tap_under_load_shows_the_chosen_point_and_loses_nothing() {
    let sink = Sink::start();
    let (grpc, health, port) = (free_port(), free_port(), free_port());
    let ep = format!("127.0.0.1:{port}");
    let c = Collector::start(
        &config(grpc, health, &ep, sink.port),
        &[],
        Some(health),
        None,
    );
    let (on, sent, loader) = load(grpc);
    wait_until("load flowing", Duration::from_secs(10), || {
        sink.store.span_count() > 0
    });

    // After the attributes processor: its attribute is on every span.
    let (ok, out, err) = tap(
        &ep,
        &[
            "--pipeline",
            "traces",
            "--component",
            "attributes",
            "--limit",
            "50",
        ],
    );
    assert!(ok, "{err}\n{}", c.logs());
    assert!(
        out.starts_with("ok tapping pipeline traces at processor:attributes"),
        "{out}"
    );
    let spans: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("load-span "))
        .collect();
    assert!(spans.len() >= 50, "{out}");
    assert!(
        spans.iter().all(|l| l.ends_with("tapped=yes")),
        "the processor's output: {out}"
    );
    assert!(
        out.contains("ResourceTraces #0"),
        "the debug exporter's layout"
    );
    assert!(shown(&out) >= 50);

    // The pipeline's input: before the processor, no attribute.
    let (ok, out, err) = tap(&ep, &["--pipeline", "traces", "--limit", "10"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("ok tapping pipeline traces at input"),
        "{out}"
    );
    let spans: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("load-span "))
        .collect();
    assert!(
        !spans.is_empty() && spans.iter().all(|l| !l.contains("tapped")),
        "{out}"
    );

    // Names that do not resolve are answered with what there is.
    let (ok, _, err) = tap(&ep, &["--pipeline", "logs"]);
    assert!(!ok);
    assert!(
        err.contains("no pipeline \"logs\"") && err.contains("traces"),
        "{err}"
    );
    let (ok, _, err) = tap(&ep, &["--pipeline", "traces", "--component", "nope"]);
    assert!(!ok);
    assert!(
        err.contains("processor:batch") && err.contains("exporter:otlp"),
        "{err}"
    );
    let (ok, _, err) = tap(&ep, &["--pipeline", "traces", "--component", "otlp"]);
    assert!(!ok);
    assert!(
        err.contains("ambiguous") && err.contains("receiver:otlp") && err.contains("exporter:otlp"),
        "{err}"
    );
    let (ok, out, err) = tap(
        &ep,
        &[
            "--pipeline",
            "traces",
            "--component",
            "exporter:otlp",
            "--limit",
            "5",
            "--verbosity",
            "basic",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("Traces\t{\"resource spans\""), "{out}");

    on.store(false, Ordering::Relaxed);
    loader.join().unwrap();
    let total = sent.load(Ordering::Relaxed);
    wait_until("every span at the sink", Duration::from_secs(10), || {
        sink.store.span_count() >= total
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        sink.store.span_count(),
        total,
        "tapping lost or added nothing"
    );
}

#[test]
fn a_unix_socket_tap_and_a_refused_public_endpoint() {
    let sink = Sink::start();
    let (grpc, health) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let sock = format!("unix://{}/tap.sock", dir.path().display());
    let c = Collector::start(
        &config(grpc, health, &sock, sink.port),
        &[],
        Some(health),
        None,
    );
    let (on, _, loader) = load(grpc);
    let (ok, out, err) = tap(
        &sock,
        &[
            "--pipeline",
            "traces",
            "--component",
            "batch",
            "--limit",
            "20",
        ],
    );
    on.store(false, Ordering::Relaxed);
    loader.join().unwrap();
    assert!(ok, "{err}\n{}", c.logs());
    assert!(
        out.starts_with("ok tapping pipeline traces at processor:batch"),
        "{out}"
    );
    assert!(shown(&out) >= 20, "{out}");

    // A tap is never served on a public address.
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("c.yaml");
    std::fs::write(&cfg, config(grpc, health, "0.0.0.0:55690", sink.port)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferrotel"))
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("extensions::tap") && err.contains("not a loopback address"),
        "{err}"
    );
}
