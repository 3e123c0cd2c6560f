//! The `pprof` extension: a CPU profile taken from a ferrotel under OTLP load, fetched over HTTP
//! as `go tool pprof` fetches it, and read by an independent decoder (pprof-format from npm,
//! Datadog's pure-JavaScript one): Go's sample types, samples whose stacks name ferrotel's own
//! functions, thread labels. A second profile while one runs is refused as Go refuses it; heap
//! is answered 501 with why; `save_to_file` writes the whole run's profile at shutdown.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Collector, export_traces, free_port, http_get, one_span, repo};

fn read_profile(path: &std::path::Path) -> serde_json::Value {
    let module = repo().join(".npm-test/node_modules/pprof-format");
    assert!(
        module.exists(),
        "scripts/test.sh installs pprof-format in {}",
        module.display()
    );
    let out = Command::new("node")
        .arg(repo().join("tests/e2e/pprof_read.js"))
        .arg(&module)
        .arg(path)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "pprof-format could not read the profile: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from pprof_read.js")
}

fn curl(url: &str, out: &std::path::Path) -> u16 {
    let o = Command::new("curl")
        .args(["-s", "-o"])
        .arg(out)
        .args(["-w", "%{http_code}", url])
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn config(grpc: u16, health: u16, pprof: u16, save: Option<&std::path::Path>) -> String {
    let save = save.map_or(String::new(), |p| {
        format!("    save_to_file: \"{}\"\n", p.display())
    });
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
processors:
  batch: {{}}
exporters:
  nop: {{}}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
  pprof:
    endpoint: "127.0.0.1:{pprof}"
{save}service:
  extensions: [health_check, pprof]
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [batch], exporters: [nop] }}
"#
    )
}

/// Sends spans to `grpc` from a thread until the flag is cleared.
fn load(grpc: u16) -> (Arc<AtomicBool>, std::thread::JoinHandle<usize>) {
    let on = Arc::new(AtomicBool::new(true));
    let flag = on.clone();
    let t = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut sent = 0;
        while flag.load(Ordering::Relaxed) {
            let mut req = one_span(1, 1, "work");
            let span = req.resource_spans[0].scope_spans[0].spans[0].clone();
            req.resource_spans[0].scope_spans[0].spans = vec![span; 200];
            if export_traces(&rt, grpc, req).is_ok() {
                sent += 1;
            }
        }
        sent
    });
    (on, t)
}

#[test]
fn a_cpu_profile_under_load_reads_in_an_independent_pprof_decoder() {
    let (grpc, health, pprof) = (free_port(), free_port(), free_port());
    let c = Collector::start(&config(grpc, health, pprof, None), &[], Some(health), None);
    let (on, loader) = load(grpc);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("profile.pb.gz");
    let url = format!("http://127.0.0.1:{pprof}/debug/pprof/profile?seconds=3");
    let busy = std::thread::spawn({
        let url = url.clone();
        let file = dir.path().join("second");
        move || {
            std::thread::sleep(Duration::from_millis(800));
            (
                curl(&url, &file),
                std::fs::read_to_string(&file).unwrap_or_default(),
            )
        }
    });
    assert_eq!(curl(&url, &file), 200, "{}", c.logs());
    on.store(false, Ordering::Relaxed);
    let sent = loader.join().unwrap();
    assert!(sent > 0, "the load reached the collector");
    let (code, body) = busy.join().unwrap();
    assert_eq!(code, 500, "one profile at a time");
    assert!(body.contains("cpu profiling already in use"), "{body}");

    let p = read_profile(&file);
    assert_eq!(
        p["sample_types"],
        serde_json::json!([["samples", "count"], ["cpu", "nanoseconds"]])
    );
    assert_eq!(p["period_type"], serde_json::json!(["cpu", "nanoseconds"]));
    assert_eq!(p["period"], 10_000_000, "100 Hz");
    let dur = p["duration_nanos"].as_f64().unwrap();
    assert!((2.9e9..4.5e9).contains(&dur), "about 3 s: {dur}");
    let samples = p["samples"].as_u64().unwrap();
    assert!(samples >= 5, "a loaded collector is sampled: {p}");
    assert_eq!(p["cpu_nanos"].as_u64().unwrap(), samples * 10_000_000);
    let functions: Vec<&str> = p["functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(
        functions.iter().any(|f| f.starts_with("ferrotel::")),
        "stacks name ferrotel's functions: {functions:?}"
    );
    assert!(
        functions.iter().any(|f| f.contains("tokio")),
        "and the runtime's: {functions:?}"
    );
    assert!(!p["threads"].as_array().unwrap().is_empty());

    let (code, body) = http_get(pprof, "/debug/pprof/heap").unwrap();
    assert_eq!(code, 501);
    assert!(body.contains("mimalloc"), "{body}");
    let (code, body) = http_get(pprof, "/debug/pprof/allocator").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("process"), "{body}");
    let (code, body) = http_get(pprof, "/debug/pprof/").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("profile?seconds=30"), "{body}");
    let (code, _) = http_get(pprof, "/debug/pprof/profile?seconds=0").unwrap();
    assert_eq!(code, 400);
}

#[test]
fn save_to_file_writes_the_whole_runs_profile_at_shutdown() {
    let (grpc, health, pprof) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.pprof");
    let mut c = Collector::start(
        &config(grpc, health, pprof, Some(&file)),
        &[],
        Some(health),
        None,
    );
    // The sampler starts once the unwinder has loaded the binary's symbols.
    common::wait_until("profiling started", Duration::from_secs(60), || {
        c.logs().contains("CPU profiling of the whole run started")
    });
    let (on, loader) = load(grpc);
    std::thread::sleep(Duration::from_secs(2));
    on.store(false, Ordering::Relaxed);
    loader.join().unwrap();
    // The whole-run profile holds the sampler: a request for another is refused.
    let (code, _) = http_get(pprof, "/debug/pprof/profile?seconds=1").unwrap();
    assert_eq!(code, 500);
    assert!(!file.exists(), "written at shutdown, not before");
    assert!(c.terminate().success(), "{}", c.logs());
    let p = read_profile(&file);
    assert!(p["samples"].as_u64().unwrap() >= 5, "{p}");
    assert!(c.logs().contains("CPU profile saved"), "{}", c.logs());
}
