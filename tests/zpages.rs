//! The `zpages` extension in a running collector: each page answers 200 with what it shows
//! (the pipelines and their components with their status, the extensions, the feature gates),
//! and tracez says plainly that ferrotel has no spans of its own.

mod common;

use common::{Collector, free_port, http_get};

#[test]
fn the_pages_show_the_running_collector() {
    let (zp, health, grpc) = (free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
processors:
  batch/fast: {{ timeout: 1s }}
exporters:
  nop:
extensions:
  zpages: {{ endpoint: "127.0.0.1:{zp}" }}
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check, zpages]
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces/in: {{ receivers: [otlp], processors: [batch/fast], exporters: [nop] }}
"#
    );
    let c = Collector::start(&cfg, &[], Some(health), None);
    let get = |path: &str| {
        let (code, body) =
            http_get(zp, path).unwrap_or_else(|| panic!("{path}: no answer\n{}", c.logs()));
        assert_eq!(code, 200, "{path}: {body}");
        body
    };
    let s = get("/debug/servicez");
    assert!(
        s.contains(env!("CARGO_PKG_VERSION")) && s.contains("Uptime"),
        "{s}"
    );
    let p = get("/debug/pipelinez");
    for row in [
        "<td>traces/in</td><td>receiver</td><td>otlp</td><td>StatusOK</td>",
        "<td>traces/in</td><td>processor</td><td>batch/fast</td><td>StatusOK</td>",
        "<td>traces/in</td><td>exporter</td><td>nop</td><td>StatusOK</td>",
    ] {
        assert!(p.contains(row), "{row} in {p}");
    }
    let e = get("/debug/extensionz");
    assert!(
        e.contains("<td>zpages</td>") && e.contains("<td>health_check</td>"),
        "{e}"
    );
    let f = get("/debug/featurez");
    assert!(f.contains("confmap.enableMergeAppendOption"), "{f}");
    assert!(get("/debug/tracez").contains("does not trace itself"));
    assert_eq!(http_get(zp, "/debug/nothing").map(|r| r.0), Some(404));
}
