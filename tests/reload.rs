//! SIGHUP reloads the config in place: under load from the OpenTelemetry Python SDK nothing
//! acknowledged is lost, unchanged parts are kept (the receiver's listener, the exporter and its
//! queue), and a broken config leaves the running one in place with the error logged.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{Collector, free_port, http_get, sdk_send, sink::Sink, wait_until};

/// One config of the reload tests: `batch_timeout` and `tag` vary between versions, `grpc` is
/// the receiver's port.
fn config(
    grpc: u16,
    health: u16,
    metrics: u16,
    sink: u16,
    batch_timeout: &str,
    tag: &str,
) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
processors:
  batch: {{ send_batch_size: 512, timeout: {batch_timeout} }}
  attributes/tag:
    actions: [{{ key: config.version, value: "{tag}", action: upsert }}]
exporters:
  otlp_grpc/sink:
    endpoint: "127.0.0.1:{sink}"
    tls: {{ insecure: true }}
    retry_on_failure: {{ initial_interval: 50ms, max_interval: 500ms }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [attributes/tag, batch], exporters: [otlp_grpc/sink] }}
"#
    )
}

fn delivered_span_ids(sink: &Sink) -> HashSet<String> {
    sink.store
        .spans
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| hex(&s.span_id))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The `config.version` attribute of the span with this id, as delivered.
fn tag_of(sink: &Sink, span_id: &str) -> Option<String> {
    let spans = sink.store.spans.lock().unwrap();
    spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .find(|s| hex(&s.span_id) == span_id)
        .and_then(|s| {
            s.attributes
                .iter()
                .find(|a| a.key == "config.version")
                .map(|a| common::value_text(&a.value))
        })
}

fn sent_span_ids(report: &serde_json::Value) -> Vec<String> {
    report["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["span_id"].as_str().unwrap().to_owned())
        .collect()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn sighup_under_sdk_load_loses_nothing_and_keeps_what_did_not_change() {
    let sink = Sink::start();
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let write = |timeout: &str, tag: &str| {
        std::fs::write(
            &path,
            config(grpc, health, metrics, sink.port, timeout, tag),
        )
        .unwrap()
    };
    write("100ms", "a");
    let c = Collector::start_file(
        &path,
        &[],
        Some(health),
        Some(metrics),
        tempfile::tempdir().unwrap(),
    );

    // The SDK sends 20,000 spans (its queue large enough to hold them all: a full one drops
    // spans in the SDK, unseen by the collector) while the config changes under it every 250 ms.
    let endpoint = format!("127.0.0.1:{grpc}");
    let client = std::thread::spawn(move || {
        sdk_send(
            &endpoint,
            "grpc",
            "traces",
            10_000,
            "reload",
            &["--max-queue-size", "40000"],
        )
    });
    let mut reloads = 0;
    let started = Instant::now();
    while !client.is_finished() && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(250));
        reloads += 1;
        // Alternate the batch timeout and the tag: the pipeline's processors change, the
        // receiver and the exporter do not.
        if reloads % 2 == 1 {
            write("200ms", "b");
        } else {
            write("100ms", "a");
        }
        c.signal(1);
    }
    let (ok, report, stderr) = client.join().unwrap();
    assert!(
        ok,
        "the SDK reported a failed export: {stderr}\n{}",
        c.logs()
    );
    assert!(
        reloads >= 3,
        "only {reloads} reloads happened during the load"
    );
    let sent = sent_span_ids(&report);
    assert_eq!(sent.len(), 20_000);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = delivered_span_ids(&sink);
        let missing = sent.iter().filter(|id| !got.contains(*id)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} acknowledged spans never arrived ({} reloads):\n{}",
            sent.len(),
            reloads,
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let the last reload finish, then check what every reload kept. Signals are not queued:
    // two sent close together may make one reload (and one that finds the running config
    // again keeps the pipeline too).
    wait_until(
        "every SIGHUP received is handled",
        Duration::from_secs(10),
        || {
            let l = c.logs();
            let received = count(&l, "received SIGHUP");
            received >= 1 && count(&l, "config reloaded;") == received
        },
    );
    let logs = c.logs();
    let done: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("config reloaded;"))
        .collect();
    for l in &done {
        assert!(
            l.contains("receivers: 1 kept, 0 started") && l.contains("exporters: 1 kept, 0 built"),
            "the receiver and the exporter are kept: {l}"
        );
    }
    let rebuilt = done
        .iter()
        .filter(|l| l.contains("pipelines: 0 kept, 1 built"))
        .count();
    assert!(
        rebuilt >= 3,
        "{rebuilt} reloads changed the pipeline:\n{logs}"
    );
    assert!(c.self_metrics().contains("otelcol_process_uptime"));

    // The config now in force tags what arrives from here on.
    let final_tag = if reloads % 2 == 1 { "b" } else { "a" };
    let endpoint = format!("127.0.0.1:{grpc}");
    let (ok, report, stderr) = sdk_send(&endpoint, "grpc", "traces", 1, "after", &[]);
    assert!(ok, "{stderr}");
    let last = sent_span_ids(&report).pop().unwrap();
    wait_until("the last span", Duration::from_secs(10), || {
        delivered_span_ids(&sink).contains(&last)
    });
    assert_eq!(tag_of(&sink, &last).as_deref(), Some(final_tag));
}

#[test]
fn sighup_with_a_broken_config_keeps_the_running_one() {
    let sink = Sink::start();
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        config(grpc, health, metrics, sink.port, "100ms", "a"),
    )
    .unwrap();
    let mut c = Collector::start_file(
        &path,
        &[],
        Some(health),
        Some(metrics),
        tempfile::tempdir().unwrap(),
    );

    // An unknown key on line 8 and a pipeline naming an exporter that does not exist.
    let broken = config(grpc, health, metrics, sink.port, "100ms", "b")
        .replace(
            "send_batch_size: 512",
            "send_batch_size: 512, send_batch_sise: 3",
        )
        .replace(
            "exporters: [otlp_grpc/sink] }",
            "exporters: [otlp_grpc/nope] }",
        );
    std::fs::write(&path, &broken).unwrap();
    c.signal(1);
    wait_until("the refusal logged", Duration::from_secs(10), || {
        c.logs().contains("the running config stays in place")
    });
    let logs = c.logs();
    let file = path.display().to_string();
    assert!(
        logs.contains(&format!("{file}:7:")) && logs.contains("send_batch_sise"),
        "the unknown key is located: {logs}"
    );
    assert!(logs.contains("otlp_grpc/nope"), "{logs}");
    assert!(logs.contains("has 2 error(s)"), "{logs}");
    assert!(c.running(), "still running after a broken reload");
    assert_eq!(http_get(health, "/").map(|(s, _)| s), Some(200));

    // Still serving with the old config (tag `a`).
    let endpoint = format!("127.0.0.1:{grpc}");
    let (ok, report, stderr) = sdk_send(&endpoint, "grpc", "traces", 5, "broken", &[]);
    assert!(ok, "{stderr}");
    let ids = sent_span_ids(&report);
    wait_until("the spans", Duration::from_secs(10), || {
        let got = delivered_span_ids(&sink);
        ids.iter().all(|i| got.contains(i))
    });
    assert_eq!(tag_of(&sink, &ids[0]).as_deref(), Some("a"));

    // Fixed, it applies; a receiver whose port changed is restarted on the new port.
    let grpc2 = free_port();
    std::fs::write(
        &path,
        config(grpc2, health, metrics, sink.port, "100ms", "c"),
    )
    .unwrap();
    c.signal(1);
    wait_until("the reload", Duration::from_secs(10), || {
        c.logs().contains("config reloaded;")
    });
    assert!(
        c.logs().contains(
            "receivers: 0 kept, 1 started; pipelines: 0 kept, 1 built; exporters: 1 kept, 0 built"
        ),
        "{}",
        c.logs()
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", grpc)).is_err(),
        "the old port is closed"
    );
    let endpoint = format!("127.0.0.1:{grpc2}");
    let (ok, report, stderr) = sdk_send(&endpoint, "grpc", "traces", 1, "moved", &[]);
    assert!(ok, "{stderr}");
    let id = sent_span_ids(&report).pop().unwrap();
    wait_until("the span on the new port", Duration::from_secs(10), || {
        delivered_span_ids(&sink).contains(&id)
    });
    assert_eq!(tag_of(&sink, &id).as_deref(), Some("c"));
    let status = c.terminate();
    assert!(status.success());
}
