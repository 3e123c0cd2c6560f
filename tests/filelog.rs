//! The `filelog` receiver end to end: a ferrotel process tails files written by the test and
//! sends to the OTLP sink.
//!
//! Container logs are written byte for byte in the three formats the kubelet's runtimes produce
//! (docker's JSON file driver, CRI-O and containerd's CRI format with `P`/`F` partial tags) under
//! a `/var/log/pods`-shaped tree; no container runtime runs here, so the files are the interface.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::sink::Sink;
use common::{Collector, free_port, wait_until};
use opentelemetry_proto::tonic::common::v1::KeyValue;

use common::{attr_text as attr, value_text as s};

/// One received record, flattened.
#[derive(Debug, Clone)]
struct Rec {
    body: String,
    attrs: Vec<KeyValue>,
    resource: Vec<KeyValue>,
    time: u64,
    severity: i32,
}

fn records(sink: &Sink) -> Vec<Rec> {
    let logs = sink.store.logs.lock().unwrap();
    let mut out = Vec::new();
    for rl in logs.iter() {
        let res = rl.resource.clone().unwrap_or_default().attributes;
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                out.push(Rec {
                    body: s(&r.body),
                    attrs: r.attributes.clone(),
                    resource: res.clone(),
                    time: r.time_unix_nano,
                    severity: r.severity_number,
                });
            }
        }
    }
    out
}

struct Pod {
    dir: PathBuf,
    format: &'static str,
}

impl Pod {
    fn new(
        root: &Path,
        ns: &str,
        pod: &str,
        uid: &str,
        container: &str,
        format: &'static str,
    ) -> Pod {
        let dir = root.join(format!("{ns}_{pod}_{uid}")).join(container);
        std::fs::create_dir_all(&dir).unwrap();
        Pod { dir, format }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("0.log")
    }

    /// Container log lines for one application line, as the runtime writes them: CRI splits
    /// lines longer than its buffer into `P` parts ended by an `F`; docker writes a partial as a
    /// JSON line whose `log` lacks the newline.
    fn lines(&self, stream: &str, text: &str, parts: usize, t: u64) -> String {
        let chunks: Vec<String> = if parts <= 1 {
            vec![text.to_string()]
        } else {
            let step = text.len().div_ceil(parts);
            text.as_bytes()
                .chunks(step)
                .map(|c| String::from_utf8(c.to_vec()).unwrap())
                .collect()
        };
        let mut out = String::new();
        let n = chunks.len();
        for (i, c) in chunks.iter().enumerate() {
            let last = i + 1 == n;
            let nanos = 1_714_557_600_000_000_000u64 + t * 1_000_000 + i as u64;
            let ts = jiff_ts(nanos);
            match self.format {
                "docker" => {
                    let log = if last { format!("{c}\n") } else { c.clone() };
                    let j = serde_json::json!({"log": log, "stream": stream, "time": ts});
                    out.push_str(&j.to_string());
                }
                "crio" => {
                    // CRI-O writes local time with an offset.
                    let tag = if last { "F" } else { "P" };
                    out.push_str(&format!("{} {stream} {tag} {c}", ts.replace('Z', "+00:00")));
                }
                _ => {
                    let tag = if last { "F" } else { "P" };
                    out.push_str(&format!("{ts} {stream} {tag} {c}"));
                }
            }
            out.push('\n');
        }
        out
    }
}

fn jiff_ts(nanos: u64) -> String {
    // RFC 3339 with nanoseconds, UTC.
    let secs = nanos / 1_000_000_000;
    let ns = nanos % 1_000_000_000;
    let days = secs / 86400;
    let rem = secs % 86400;
    // 2024-05-01 is day 19844 since the epoch; the test stays within that day.
    assert_eq!(days, 19844);
    format!(
        "2024-05-01T{:02}:{:02}:{:02}.{ns:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    // One write per runtime flush, as a runtime does.
    f.write_all(text.as_bytes()).unwrap();
}

fn config(root: &Path, storage: &Path, sink: u16, health: u16, metrics: u16) -> String {
    format!(
        r#"
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
  file_storage:
    directory: {storage}
receivers:
  filelog:
    include: [{root}/*/*/*.log*]
    exclude: [{root}/observability_ferrotel-agent-*/*/*.log*]
    start_at: beginning
    include_file_path: true
    poll_interval: 50ms
    storage: file_storage
    operators:
      - type: container
      - type: recombine
        combine_field: body
        is_first_entry: body matches "^[^\\s]"
        source_identifier: attributes["log.iostream"]
        force_flush_period: 1s
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
    sending_queue: {{enabled: false}}
service:
  extensions: [health_check, file_storage]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    logs:
      receivers: [filelog]
      exporters: [otlp]
"#,
        root = root.display(),
        storage = storage.display(),
    )
}

const PODS: [(&str, &str, &str, &str, &str); 3] = [
    (
        "shop",
        "cart-7d9f8b",
        "0b6c2f6e-1111-2222-3333-444455556666",
        "server",
        "docker",
    ),
    (
        "shop",
        "api-5c4b3a",
        "1c7d3a7f-aaaa-bbbb-cccc-ddddeeeeffff",
        "app",
        "crio",
    ),
    (
        "kube-system",
        "coredns-x1",
        "2d8e4b80-1234-5678-9abc-def012345678",
        "coredns",
        "containerd",
    ),
];

/// Writes `n` application lines per pod (with partials, stack traces, a rename rotation on the
/// docker file and a copy-truncate rotation on the CRI-O file at line `rotate_at`), and returns
/// the ids written.
fn write_pods(
    pods: &[Pod],
    from: usize,
    to: usize,
    rotate_at: usize,
    pace: Duration,
) -> Vec<String> {
    let mut ids = Vec::new();
    for n in from..to {
        for (p, pod) in pods.iter().enumerate() {
            if n == rotate_at && n > 0 {
                match pod.format {
                    "docker" => {
                        // kubelet-style rename rotation.
                        std::fs::rename(pod.file(), pod.dir.join("0.log.20240501-100000")).unwrap();
                    }
                    "crio" => {
                        // logrotate copytruncate: the copy appears whole, then the file empties.
                        let tmp = pod.dir.join(".copy.tmp");
                        std::fs::copy(pod.file(), &tmp).unwrap();
                        std::fs::rename(&tmp, pod.dir.join("0.log.1")).unwrap();
                        std::fs::OpenOptions::new()
                            .write(true)
                            .open(pod.file())
                            .unwrap()
                            .set_len(0)
                            .unwrap();
                    }
                    _ => {}
                }
            }
            let id = format!("p{p}-{n}");
            let text = if n % 25 == 7 {
                // A stack trace: one line per frame on stderr, joined by recombine.
                let mut t = pod.lines("stderr", &format!("Exception id={id} boom"), 1, n as u64);
                for f in 0..3 {
                    t.push_str(&pod.lines(
                        "stderr",
                        &format!("\tat frame{f}(X.java:{f})"),
                        1,
                        n as u64,
                    ));
                }
                t
            } else {
                let parts = if n % 10 == 3 { 3 } else { 1 };
                let filler = "x".repeat(n % 50);
                pod.lines("stdout", &format!("line id={id} {filler}"), parts, n as u64)
            };
            append(&pod.file(), &text);
            ids.push(id);
        }
        std::thread::sleep(pace);
    }
    ids
}

fn check_once(recs: &[Rec], ids: &[String]) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in recs {
        let id = r
            .body
            .split_whitespace()
            .find_map(|w| w.strip_prefix("id="))
            .unwrap_or_else(|| panic!("record without an id: {:?}", r.body));
        *seen.entry(id.to_string()).or_default() += 1;
    }
    let missing: Vec<_> = ids.iter().filter(|i| !seen.contains_key(*i)).collect();
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty(),
        "{} lines lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        repeated.is_empty(),
        "{} lines repeated, e.g. {:?}",
        repeated.len(),
        &repeated[..repeated.len().min(10)]
    );
    assert_eq!(seen.len(), ids.len());
}

fn check_records(recs: &[Rec]) {
    for r in recs {
        let p: usize = r.body.split("id=p").nth(1).unwrap()[..1].parse().unwrap();
        let (ns, pod, uid, container, _) = PODS[p];
        assert_eq!(
            attr(&r.resource, "k8s.namespace.name").as_deref(),
            Some(ns),
            "{r:?}"
        );
        assert_eq!(attr(&r.resource, "k8s.pod.name").as_deref(), Some(pod));
        assert_eq!(attr(&r.resource, "k8s.pod.uid").as_deref(), Some(uid));
        assert_eq!(
            attr(&r.resource, "k8s.container.name").as_deref(),
            Some(container)
        );
        assert_eq!(
            attr(&r.resource, "k8s.container.restart_count").as_deref(),
            Some("0")
        );
        let stream = attr(&r.attrs, "log.iostream").unwrap();
        assert!(attr(&r.attrs, "log.file.path").unwrap().contains(uid));
        assert!(r.time >= 1_714_557_600_000_000_000, "{r:?}");
        if r.body.starts_with("Exception") {
            assert_eq!(stream, "stderr");
            // The whole trace, in order, as one record.
            let lines: Vec<_> = r.body.lines().collect();
            assert_eq!(lines.len(), 4, "{:?}", r.body);
            assert_eq!(lines[3], "\tat frame2(X.java:2)");
        } else {
            assert_eq!(stream, "stdout");
            // Partial lines came back whole: the filler is intact.
            let n: usize = r
                .body
                .split('-')
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                r.body.ends_with(&format!(" {}", "x".repeat(n % 50))) || n.is_multiple_of(50),
                "{:?}",
                r.body
            );
        }
    }
}

#[test]
fn container_logs_every_line_once_through_rotations_and_a_kill() {
    let sink = Sink::start();
    let root = tempfile::tempdir().unwrap();
    let storage = tempfile::tempdir().unwrap();
    let pods: Vec<Pod> = PODS
        .iter()
        .map(|(ns, pod, uid, c, f)| Pod::new(root.path(), ns, pod, uid, c, f))
        .collect();
    // The agent's own pod: excluded.
    let own = Pod::new(
        root.path(),
        "observability",
        "ferrotel-agent-abcde",
        "3e9f5c91-0000-0000-0000-000000000000",
        "agent",
        "containerd",
    );
    append(
        &own.file(),
        &own.lines("stdout", "agent line id=own-0", 1, 0),
    );

    let (health, metrics) = (free_port(), free_port());
    let cfg = config(root.path(), storage.path(), sink.port, health, metrics);
    let mut c = Collector::start(&cfg, &[], Some(health), Some(metrics));

    // Phase 1: lines with a rename rotation and a copy-truncate in the middle.
    let mut ids = write_pods(&pods, 0, 120, 60, Duration::from_millis(5));
    // Phase 2: kill -9 while the files grow, then restart on the same storage.
    let writer = {
        let pods: Vec<Pod> = PODS
            .iter()
            .map(|(ns, pod, uid, c, f)| Pod::new(root.path(), ns, pod, uid, c, f))
            .collect();
        std::thread::spawn(move || {
            write_pods(&pods, 120, 320, usize::MAX, Duration::from_millis(8))
        })
    };
    // Kill once phase-2 lines are flowing, while the writer is still writing: mid-file.
    let phase2 = |r: &Rec| {
        r.body
            .split("id=p")
            .nth(1)
            .and_then(|t| t[2..].split([' ', '\n']).next()?.parse::<usize>().ok())
            .is_some_and(|n| n >= 120)
    };
    wait_until(
        "phase-2 lines before the kill",
        Duration::from_secs(10),
        || records(&sink).iter().any(phase2),
    );
    assert!(
        !writer.is_finished(),
        "the kill must come while the files grow"
    );
    drop(c); // SIGKILL (the harness kills the child on drop).
    std::thread::sleep(Duration::from_millis(300));
    c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    ids.extend(writer.join().unwrap());

    let want = ids.len();
    wait_until("every line delivered", Duration::from_secs(30), || {
        let r = records(&sink);
        let distinct: std::collections::HashSet<_> = r.iter().map(|r| r.body.clone()).collect();
        distinct.len() >= want
    });
    // Let anything duplicated or late arrive before judging.
    std::thread::sleep(Duration::from_millis(1500));
    let recs = records(&sink);
    check_once(&recs, &ids);
    check_records(&recs);
    assert!(
        !recs.iter().any(|r| r.body.contains("own-0")),
        "the agent's own pod is excluded"
    );
    assert!(
        c.metric(r#"otelcol_receiver_accepted_log_records_total{receiver="filelog",transport=""}"#)
            > 0.0
    );
}

/// The adapter pattern on a plain application log: multiline entries by `line_start_pattern`,
/// then regex_parser with embedded timestamp and severity, move/add/remove; and a restart with
/// `start_at: end` that resumes from the checkpoint rather than the end.
#[test]
fn app_log_adapter_operators_and_checkpointed_restart() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let storage = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let (health, metrics) = (free_port(), free_port());
    let cfg = format!(
        r#"
extensions:
  health_check: {{endpoint: "127.0.0.1:{health}"}}
  file_storage/offsets: {{directory: "{storage}", fsync: true}}
receivers:
  file_log:
    include: ["{dir}/*.log"]
    storage: file_storage/offsets
    multiline:
      line_start_pattern: '^\d{{4}}-\d{{2}}-\d{{2}} '
    force_flush_period: 200ms
    poll_interval: 50ms
    operators:
      - type: regex_parser
        regex: '^(?P<time>\S+ \S+) (?P<level>[A-Z]+) \[(?P<thread>[^\]]+)\] (?P<msg>(?s).*)$'
        timestamp:
          parse_from: attributes.time
          layout: '%Y-%m-%d %H:%M:%S.%L'
          location: UTC
        severity:
          parse_from: attributes.level
      - type: move
        from: attributes.msg
        to: body
      - type: remove
        field: attributes.time
      - type: add
        field: attributes.env
        value: test
      - type: json_parser
        if: 'body matches "^\\{{"'
        parse_from: body
        parse_to: attributes.json
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
    sending_queue: {{enabled: false}}
service:
  extensions: [health_check, file_storage/offsets]
  telemetry: {{metrics: {{address: "127.0.0.1:{metrics}"}}}}
  pipelines:
    logs: {{receivers: [file_log], exporters: [otlp]}}
"#,
        dir = dir.path().display(),
        storage = storage.path().display(),
        sink = sink.port,
    );
    append(
        &log,
        "2024-05-01 10:00:00.000 INFO [main] before start: skipped (start_at end)\n",
    );
    let mut c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    std::thread::sleep(Duration::from_millis(300));
    append(
        &log,
        "2024-05-01 10:00:01.250 ERROR [worker-1] request failed\njava.lang.IllegalStateException: bad\n\tat a.B.c(B.java:10)\n2024-05-01 10:00:02.000 WARN [main] {\"k\": 1}\n",
    );
    wait_until("first entry", Duration::from_secs(10), || {
        !records(&sink).is_empty()
    });
    // The WARN entry waits for a next start line or the flush period, then comes too.
    wait_until("both entries", Duration::from_secs(10), || {
        records(&sink).len() >= 2
    });
    c.terminate();
    // Written while ferrotel is down: read after the restart, though start_at is end.
    append(&log, "2024-05-01 10:00:03.000 DEBUG [main] while down\n");
    let _c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    wait_until(
        "the line written while down",
        Duration::from_secs(10),
        || records(&sink).len() >= 3,
    );
    std::thread::sleep(Duration::from_millis(500));
    let recs = records(&sink);
    assert_eq!(recs.len(), 3, "{recs:#?}");
    let e = &recs[0];
    assert_eq!(
        e.body,
        "request failed\njava.lang.IllegalStateException: bad\n\tat a.B.c(B.java:10)"
    );
    assert_eq!(e.severity, 17);
    assert_eq!(e.time, 1_714_557_601_250_000_000);
    assert_eq!(attr(&e.attrs, "thread").as_deref(), Some("worker-1"));
    assert_eq!(attr(&e.attrs, "env").as_deref(), Some("test"));
    assert_eq!(attr(&e.attrs, "log.file.name").as_deref(), Some("app.log"));
    assert!(attr(&e.attrs, "time").is_none());
    assert_eq!(recs[1].severity, 13);
    assert!(
        attr(&recs[1].attrs, "json")
            .unwrap()
            .contains("IntValue(1)"),
        "{:?}",
        recs[1].attrs
    );
    assert_eq!(recs[2].body, "while down");
    assert_eq!(recs[2].severity, 5);
}

/// `header`: a W3C-style log's `#` lines are metadata, parsed by `metadata_operators` into
/// attributes of every entry of that file (and not entries themselves); the header's attributes
/// survive a restart through the checkpoint.
#[test]
fn header_lines_become_attributes_of_the_files_entries() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let storage = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let (health, metrics) = (free_port(), free_port());
    let cfg = format!(
        r#"
extensions:
  health_check: {{endpoint: "127.0.0.1:{health}"}}
  file_storage: {{directory: "{storage}"}}
receivers:
  filelog:
    include: ["{dir}/*.log"]
    start_at: beginning
    storage: file_storage
    poll_interval: 50ms
    header:
      pattern: '^#'
      metadata_operators:
        - type: regex_parser
          regex: '^#Software: (?P<software>.*)$'
          on_error: send_quiet
        - type: regex_parser
          regex: '^#Version: (?P<log_version>.*)$'
          on_error: send_quiet
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
service:
  extensions: [health_check, file_storage]
  telemetry: {{metrics: {{address: "127.0.0.1:{metrics}"}}}}
  pipelines:
    logs: {{receivers: [filelog], exporters: [otlp]}}
"#,
        dir = dir.path().display(),
        storage = storage.path().display(),
        sink = sink.port,
    );
    append(
        &log,
        "#Software: Microsoft IIS 10.0\n#Version: 1.0\nGET /a 200\nGET /b 404\n",
    );
    let mut c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    wait_until("two entries", Duration::from_secs(10), || {
        records(&sink).len() >= 2
    });
    assert!(c.terminate().success());
    append(&log, "#not a header any more\nGET /c 500\n");
    let _c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    wait_until("four entries", Duration::from_secs(10), || {
        records(&sink).len() >= 4
    });
    std::thread::sleep(Duration::from_millis(300));
    let recs = records(&sink);
    let bodies: Vec<&str> = recs.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(
        bodies,
        [
            "GET /a 200",
            "GET /b 404",
            "#not a header any more",
            "GET /c 500"
        ],
        "header lines are not entries; a `#` line after the header is"
    );
    for r in &recs {
        assert_eq!(
            attr(&r.attrs, "software").as_deref(),
            Some("Microsoft IIS 10.0"),
            "{r:?}"
        );
        assert_eq!(
            attr(&r.attrs, "log_version").as_deref(),
            Some("1.0"),
            "{r:?}"
        );
    }
}
