//! Nothing acknowledged is lost: the persistent sending queue (`sending_queue.storage` over
//! `file_storage`) under `kill -9`, a backend outage, damaged queue files and a full disk.
//!
//! The client is the OpenTelemetry Python SDK's OTLP/gRPC exporter driven by
//! `tests/e2e/acked_sender.py`, which exports each batch again until it is acknowledged and
//! records what was. The backend is rotel (an independent OTLP collector from PyPI), forwarding
//! to the test's sink, which counts spans by run and sequence number.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::ledger::assert_exporter_ledger;
use common::{Collector, Rotel, free_port, sink::Sink, wait_until};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use rand::{Rng, SeedableRng};

/// A collector config: otlp → batch → otlp_grpc with a persistent queue in `queue_dir`.
fn config(
    ports: (u16, u16, u16),
    backend: u16,
    queue_dir: &Path,
    fsync: bool,
    queue_size: usize,
) -> String {
    let (grpc, health, metrics) = ports;
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
processors:
  batch: {{ send_batch_size: 1000, send_batch_max_size: 1000, timeout: 200ms }}
exporters:
  otlp_grpc:
    endpoint: "127.0.0.1:{backend}"
    tls: {{ insecure: true }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 0s }}
    sending_queue: {{ storage: file_storage/queue, num_consumers: 4, queue_size: {queue_size} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
  file_storage/queue: {{ directory: "{}", fsync: {fsync} }}
service:
  extensions: [health_check, file_storage/queue]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [batch], exporters: [otlp_grpc] }}
"#,
        queue_dir.display()
    )
}

struct Harness {
    dir: tempfile::TempDir,
    cfg: PathBuf,
    ports: (u16, u16, u16),
    sink: Sink,
    rotel_ports: (u16, u16),
    rotel: Option<Rotel>,
}

impl Harness {
    fn new(fsync: bool, queue_size: usize, queue_dir: Option<&Path>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::start();
        let rotel_ports = (free_port(), free_port());
        let ports = (free_port(), free_port(), free_port());
        let qdir = queue_dir.map_or_else(|| dir.path().join("queue"), Path::to_path_buf);
        std::fs::create_dir_all(&qdir).unwrap();
        let cfg = dir.path().join("config.yaml");
        std::fs::write(&cfg, config(ports, rotel_ports.0, &qdir, fsync, queue_size)).unwrap();
        Harness {
            dir,
            cfg,
            ports,
            sink,
            rotel_ports,
            rotel: None,
        }
    }

    fn backend_up(&mut self) {
        let d = self.dir.path().join("rotel");
        std::fs::create_dir_all(&d).unwrap();
        self.rotel = Some(Rotel::start(
            self.rotel_ports.0,
            self.rotel_ports.1,
            self.sink.port,
            &d,
        ));
    }

    fn collector(&self) -> Collector {
        Collector::start_file(
            &self.cfg,
            &[],
            Some(self.ports.1),
            Some(self.ports.2),
            tempfile::tempdir().unwrap(),
        )
    }

    fn sender(&self, run: &str, batches: usize) -> (Child, PathBuf) {
        let acked = self.dir.path().join(format!("acked-{run}"));
        let child = Command::new(common::python())
            .arg(common::repo().join("tests/e2e/acked_sender.py"))
            .args(["--endpoint", &format!("http://127.0.0.1:{}", self.ports.0)])
            .args([
                "--run-id",
                run,
                "--batch-size",
                "100",
                "--give-up-after",
                "900",
            ])
            .args(["--batches", &batches.to_string()])
            .arg("--acked")
            .arg(&acked)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the SDK sender");
        (child, acked)
    }

    /// Spans at the sink by (run, seq), with how often each arrived.
    fn received(&self) -> HashMap<(String, i64), usize> {
        let mut out = HashMap::new();
        for rs in self.sink.store.spans.lock().unwrap().iter() {
            for sp in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                let mut run = None;
                let mut seq = None;
                for a in &sp.attributes {
                    match (
                        a.key.as_str(),
                        a.value.as_ref().and_then(|v| v.value.as_ref()),
                    ) {
                        ("run.id", Some(Value::StringValue(s))) => run = Some(s.clone()),
                        ("seq", Some(Value::IntValue(i))) => seq = Some(*i),
                        _ => {}
                    }
                }
                if let (Some(r), Some(s)) = (run, seq) {
                    *out.entry((r, s)).or_default() += 1;
                }
            }
        }
        out
    }
}

fn acked(path: &Path, run: &str) -> Vec<(String, i64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .map(|s| (run.to_owned(), s))
        .collect()
}

fn wait_senders(senders: Vec<(Child, PathBuf)>, timeout: Duration) -> Vec<PathBuf> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    for (mut c, p) in senders {
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = c.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                assert!(st.success(), "sender failed: {err}");
                eprintln!("sender: {}", err.trim());
                break;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("a sender did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        out.push(p);
    }
    out
}

/// Waits until every acknowledged span is at the sink; returns (acknowledged, duplicates).
fn check_delivered(h: &Harness, runs: &[(&str, PathBuf)], timeout: Duration) -> (usize, usize) {
    let want: Vec<(String, i64)> = runs.iter().flat_map(|(r, p)| acked(p, r)).collect();
    let deadline = Instant::now() + timeout;
    loop {
        let got = h.received();
        let missing: Vec<_> = want.iter().filter(|k| !got.contains_key(*k)).collect();
        if missing.is_empty() {
            let dups = got.values().map(|n| n - 1).sum();
            return (want.len(), dups);
        }
        if Instant::now() > deadline {
            panic!(
                "{} of {} acknowledged spans never arrived, e.g. {:?}",
                missing.len(),
                want.len(),
                &missing[..missing.len().min(5)]
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Kills the collector with SIGKILL at `kills` random moments, restarting it each time, while
/// two SDK clients send; `down` keeps the backend away until the kills are over.
fn kill_repeatedly(fsync: bool, down: bool, seed: u64) {
    let mut h = Harness::new(fsync, 10_000, None);
    if !down {
        h.backend_up();
    }
    let mut c = h.collector();
    let batches = 80;
    let senders = vec![h.sender("a", batches), h.sender("b", batches)];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let kills = 20;
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.random_range(150..900)));
        c.kill9();
        std::thread::sleep(Duration::from_millis(rng.random_range(0..200)));
        c = h.collector();
    }
    let paths = wait_senders(senders, Duration::from_secs(240));
    if down {
        h.backend_up();
    }
    let runs = [("a", paths[0].clone()), ("b", paths[1].clone())];
    let (n, dups) = check_delivered(&h, &runs, Duration::from_secs(90));
    assert_eq!(
        n,
        2 * batches * 100,
        "every batch was acknowledged in the end"
    );
    // Each kill can re-send what was in flight: every client's unanswered export (its data may
    // be on disk already) and every consumer's request (sent, not yet marked done).
    let bound = kills * (2 * 100 + 4 * 1000);
    eprintln!(
        "kill -9 x{kills} (fsync {fsync}, backend down {down}, seed {seed}): {n} acknowledged spans, all delivered; {dups} duplicates (bound {bound})"
    );
    assert!(
        dups <= bound,
        "{dups} duplicates, more than in flight ({bound})"
    );
    // The last run's ledger balances once everything is out: nothing held, nothing failed.
    wait_until("the queue empties", Duration::from_secs(30), || {
        common::parse_metric(
            &c.self_metrics(),
            "otelcol_exporter_queued_spans{exporter=\"otlp_grpc\"}",
        ) == 0.0
    });
    let l = assert_exporter_ledger(&c.self_metrics(), "otlp_grpc", "spans");
    assert_eq!((l.failed, l.held), (0.0, 0.0), "{l:?}");
    c.terminate();
    let logs = c.logs();
    assert!(
        logs.contains("shutdown complete") && logs.contains("held=0"),
        "the shutdown summary: {logs}"
    );
}

#[test]
fn kill_9_repeatedly_loses_nothing_acknowledged() {
    kill_repeatedly(true, false, 15);
}

#[test]
fn kill_9_repeatedly_with_the_backend_down_loses_nothing_acknowledged() {
    kill_repeatedly(false, true, 16);
}

/// A 60 s backend outage (`FERROTEL_OUTAGE_SECS` for a longer one; RELIABILITY.md has a
/// 10-minute run): what fits the queue is kept and delivered afterwards; beyond the queue's
/// capacity clients are refused (retryably, counted) and retry, so nothing acknowledged is lost.
#[test]
fn a_backend_outage_of_a_minute_loses_nothing_acknowledged() {
    let outage: u64 = std::env::var("FERROTEL_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    // 30 requests of up to 1000 spans: the senders' 12,000 spans overflow it.
    let mut h = Harness::new(false, 30, None);
    let mut c = h.collector();
    let senders = vec![h.sender("a", 60), h.sender("b", 60)];
    std::thread::sleep(Duration::from_secs(outage));
    let text = c.self_metrics();
    let refused = common::parse_metric(
        &text,
        "otelcol_receiver_refused_spans_total{receiver=\"otlp\",transport=\"grpc\"}",
    );
    let enqueue_failed = common::parse_metric(
        &text,
        "otelcol_exporter_enqueue_failed_spans_total{exporter=\"otlp_grpc\"}",
    );
    let queued = common::parse_metric(
        &text,
        "otelcol_exporter_queued_spans{exporter=\"otlp_grpc\"}",
    );
    eprintln!(
        "after {outage} s down: {queued} spans queued on disk, {refused} refused at the receiver, {enqueue_failed} refused by the full queue"
    );
    assert!(
        queued > 0.0 && refused > 0.0 && enqueue_failed > 0.0,
        "{text}"
    );
    h.backend_up();
    let paths = wait_senders(senders, Duration::from_secs(240 + outage));
    let runs = [("a", paths[0].clone()), ("b", paths[1].clone())];
    let (n, dups) = check_delivered(&h, &runs, Duration::from_secs(60));
    assert_eq!(n, 12_000);
    eprintln!("outage: {n} acknowledged spans delivered, {dups} duplicates");
    let l = assert_exporter_ledger(&c.self_metrics(), "otlp_grpc", "spans");
    assert_eq!(l.failed, 0.0, "{l:?}");
    c.terminate();
}

/// Queue files damaged while the collector was stopped (the tail cut off, a bit flipped in the
/// middle): it starts, skips and counts the damage, and sends every record that is intact.
#[test]
fn a_truncated_and_a_bit_flipped_queue_file_are_skipped_and_counted() {
    let mut h = Harness::new(false, 10_000, None);
    let mut c = h.collector();
    let (child, path) = h.sender("a", 20);
    let paths = wait_senders(vec![(child, path)], Duration::from_secs(60));
    c.terminate();
    let qdir = std::fs::read_dir(h.dir.path().join("queue"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with("_queue"))
        .expect("the queue directory")
        .path();
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&qdir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    let seg = segs.last().expect("a segment").clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    let len = bytes.len();
    assert!(
        len > 100_000,
        "20 batches of 100 spans are on disk ({len} bytes)"
    );
    // A bit in the middle, and the last 1000 bytes gone (a torn append).
    bytes[len / 2] ^= 0x10;
    bytes.truncate(len - 1000);
    std::fs::write(&seg, &bytes).unwrap();

    h.backend_up();
    let c = h.collector();
    let text = c.self_metrics();
    let corrupt = common::parse_metric(
        &text,
        "ferrotel_exporter_queue_skipped_records_total{exporter=\"otlp_grpc\",reason=\"corrupt\"}",
    );
    let torn = common::parse_metric(
        &text,
        "ferrotel_exporter_queue_skipped_records_total{exporter=\"otlp_grpc\",reason=\"torn\"}",
    );
    assert_eq!((corrupt, torn), (1.0, 1.0), "{text}");
    let restored = common::parse_metric(
        &text,
        "ferrotel_exporter_queue_restored_items_total{exporter=\"otlp_grpc\",data_type=\"traces\"}",
    );
    // Two records (of up to 1000 spans) lost to the damage, the rest restored and sent.
    assert!((0.0..2000.0).contains(&restored), "{restored}: {text}");
    wait_until("the restored spans arrive", Duration::from_secs(30), || {
        h.received().len() as f64 >= restored
    });
    let want = acked(&paths[0], "a").len();
    eprintln!("damaged queue: {restored} of {want} spans restored and delivered");
    assert!(
        restored > 0.0 && (restored as usize) < want,
        "{restored} restored of {want}"
    );
    assert!(
        c.logs().contains("persistent queue restored"),
        "{}",
        c.logs()
    );
    // The ledger: what was restored was sent; nothing held, nothing failed.
    wait_until("the queue empties", Duration::from_secs(30), || {
        common::parse_metric(
            &c.self_metrics(),
            "otelcol_exporter_queued_spans{exporter=\"otlp_grpc\"}",
        ) == 0.0
    });
    let l = assert_exporter_ledger(&c.self_metrics(), "otlp_grpc", "spans");
    assert_eq!(
        (l.restored, l.sent, l.failed),
        (restored, restored, 0.0),
        "{l:?}"
    );
}

/// A full disk (a 2 MiB tmpfs the test mounts as the queue's directory): clients are refused
/// retryably, the collector keeps running, and once space returns everything acknowledged is
/// delivered.
#[test]
fn a_full_disk_refuses_retryably_and_recovers() {
    let mnt = tempfile::tempdir().unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "this test mounts a small tmpfs as the full disk and needs root (as CI has)"
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.path().to_path_buf());
    // Room for about 150 KiB of queue (a few thousand spans): the rest is taken.
    let filler = mnt.path().join("filler");
    std::fs::write(&filler, vec![0u8; 1900 << 10]).unwrap();
    let mut h = Harness::new(false, 10_000, Some(mnt.path()));
    let mut c = h.collector();
    let (child, path) = h.sender("a", 100);
    wait_until("the disk fills", Duration::from_secs(60), || {
        c.logs().contains("disk is full")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(c.running(), "the collector survives a full disk");
    let text = c.self_metrics();
    let refused = common::parse_metric(
        &text,
        "otelcol_receiver_refused_spans_total{receiver=\"otlp\",transport=\"grpc\"}",
    );
    assert!(
        refused > 0.0,
        "the full disk reached the client as a retryable refusal: {text}"
    );
    // Space returns, and so does the backend.
    std::fs::remove_file(&filler).unwrap();
    h.backend_up();
    let paths = wait_senders(vec![(child, path)], Duration::from_secs(180));
    let (n, dups) = check_delivered(&h, &[("a", paths[0].clone())], Duration::from_secs(60));
    assert_eq!(n, 10_000);
    eprintln!(
        "full disk: {refused} spans refused while full, then {n} acknowledged spans delivered ({dups} duplicates)"
    );
    assert!(c.running());
    let l = assert_exporter_ledger(&c.self_metrics(), "otlp_grpc", "spans");
    assert_eq!(l.failed, 0.0, "{l:?}");
    c.terminate();
}
