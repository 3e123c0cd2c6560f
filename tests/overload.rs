//! Overload without collapse, the short version (the minute-long run with throughput and
//! recovery figures is `benches/overload.py`, in BENCHMARKS.md): ten times what a slow backend
//! takes, with `memory_limiter`. The collector's peak RSS stays under `limit_mib`, clients get
//! retryable refusals, and everything it acknowledged reaches the backend.
//!
//! Load: `ferrotel-loadgen send` (OTLP/gRPC, counts acknowledged spans). Backend:
//! `ferrotel-loadgen sink --delay-ms`, which answers each export after a delay, so its capacity
//! is the exporter's consumers × batch size / delay.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Collector, free_port, wait_until};

const LIMIT_MIB: u64 = 96;

#[test]
fn ten_times_the_backend_capacity_stays_under_the_memory_limit_and_loses_nothing() {
    let sink_port = free_port();
    let mut sink = Command::new(env!("CARGO_BIN_EXE_ferrotel-loadgen"))
        .args(["sink", "--listen", &format!("127.0.0.1:{sink_port}")])
        .args(["--delay-ms", "100"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the sink");
    let received = Arc::new(AtomicU64::new(0));
    {
        let received = received.clone();
        let out = sink.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(n) = v["total_spans"].as_u64()
                {
                    received.store(n, Ordering::SeqCst);
                }
            }
        });
    }
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _sink = Kill(sink);
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    // Backend capacity: 2 consumers × 1000 spans / 100 ms = 20,000 spans/s.
    let mut c = Collector::start(
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
processors:
  memory_limiter: {{ check_interval: 100ms, limit_mib: {LIMIT_MIB}, spike_limit_mib: 24 }}
  batch: {{ send_batch_size: 1000, send_batch_max_size: 1000, timeout: 100ms }}
exporters:
  otlp_grpc:
    endpoint: "127.0.0.1:{sink_port}"
    tls: {{ insecure: true }}
    compression: none
    sending_queue: {{ num_consumers: 2, queue_size: 40 }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 0s }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlp_grpc] }}
"#
        ),
        &[],
        Some(health),
        Some(metrics),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ferrotel-loadgen"))
        .args(["send", "--endpoint", &format!("127.0.0.1:{grpc}")])
        .args(["--rate", "200000", "--concurrency", "8", "--duration", "15"])
        .output()
        .expect("run the load generator");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the load generator's report");
    let accepted = report["accepted_spans"].as_u64().unwrap();
    let refused = report["refused_requests"].as_u64().unwrap();
    let peak = peak_rss(c.pid());
    eprintln!(
        "overload: {report}; peak RSS {} MiB (limit {LIMIT_MIB})",
        peak >> 20
    );
    assert!(accepted > 0 && refused > 0, "{report}");
    assert_eq!(
        report["errors"].as_u64(),
        Some(0),
        "only retryable refusals: {report}"
    );
    assert!(
        peak < LIMIT_MIB << 20,
        "peak RSS {} MiB over the limit",
        peak >> 20
    );
    // Everything acknowledged reaches the backend.
    wait_until(
        "every accepted span at the sink",
        Duration::from_secs(60),
        || received.load(Ordering::SeqCst) >= accepted,
    );
    let l = common::ledger::assert_exporter_ledger(&c.self_metrics(), "otlp_grpc", "spans");
    assert_eq!((l.failed, l.held), (0.0, 0.0), "{l:?}");
    c.terminate();
}

/// `VmHWM` (the peak resident set) of a process.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}
