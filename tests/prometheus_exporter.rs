//! The `prometheus` exporter scraped by a real Prometheus (Debian's `prometheus`, on 127.0.0.1):
//! the official OpenTelemetry Python SDK → ferrotel → Prometheus scrape → PromQL, once in the
//! text format and once in OpenMetrics (Prometheus asks for OpenMetrics first); `promtool check
//! metrics` reads the text exposition.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::prometheus::{prometheus_with, query, value};
use common::{Collector, free_port, sdk_send_env, wait_until};

fn get(rt: &tokio::runtime::Runtime, port: u16, accept: &str) -> (String, String) {
    rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        let ctype = r.headers()["content-type"].to_str().unwrap().to_owned();
        (ctype, r.text().await.unwrap())
    })
}

#[test]
fn sdk_to_ferrotel_scraped_by_prometheus() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (grpc, health, metrics, text_port, om_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let cfg = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
exporters:
  prometheus/text:
    endpoint: "127.0.0.1:{text_port}"
    const_labels: {{ format: text }}
  prometheus/om:
    endpoint: "127.0.0.1:{om_port}"
    const_labels: {{ format: om }}
    enable_open_metrics: true
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [prometheus/text, prometheus/om] }}
"#
    );
    let c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    // `honor_labels`: the exposition's `job` and `instance` (from service.name and
    // service.instance.id) are kept, as the Collector's docs advise for this exporter.
    let prom = prometheus_with(&format!(
        r#"
global: {{ scrape_interval: 1s, scrape_timeout: 900ms }}
scrape_configs:
  - job_name: ferrotel-text
    honor_labels: true
    static_configs: [{{ targets: ["127.0.0.1:{text_port}"] }}]
  - job_name: ferrotel-om
    honor_labels: true
    static_configs: [{{ targets: ["127.0.0.1:{om_port}"] }}]
"#
    ));
    let fixed = [("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=pull-1")];
    let (ok, report, err) = sdk_send_env(
        &format!("127.0.0.1:{grpc}"),
        "grpc",
        "metrics",
        6,
        "r1",
        &["--service", "prom-pull"],
        &fixed,
    );
    assert!(ok, "{err}");
    let total = report["metrics"]["counter_total"].as_f64().unwrap();
    let p = prom.port;
    for format in ["text", "om"] {
        let sel = format!("job=\"prom-pull\", format=\"{format}\"");
        wait_until(
            &format!("the counter scraped ({format})"),
            Duration::from_secs(30),
            || value(&rt, p, &format!("sum(e2e_requests_total{{{sel}}})")) == Some(total),
        );
        let series = query(
            &rt,
            p,
            &format!("e2e_requests_total{{{sel}, route=\"/r0\"}}"),
        );
        assert_eq!(series.len(), 1, "{series:?}");
        let m = &series[0]["metric"];
        assert_eq!(m["instance"], "pull-1");
        assert_eq!(m["otel_scope_name"], "ferrotel.e2e");
        assert_eq!(m["otel_scope_version"], "1.2.3");
        // Histogram values 0,10,...,50: cumulative buckets, sum and count.
        for (le, n) in [("10", 2.0), ("25", 3.0), ("+Inf", 6.0)] {
            assert_eq!(
                value(
                    &rt,
                    p,
                    &format!("e2e_latency_milliseconds_bucket{{{sel}, le=\"{le}\"}}")
                ),
                Some(n),
                "{format} le={le}"
            );
        }
        assert_eq!(
            value(&rt, p, &format!("e2e_latency_milliseconds_sum{{{sel}}}")),
            Some(150.0)
        );
        assert_eq!(
            value(&rt, p, &format!("e2e_latency_milliseconds_count{{{sel}}}")),
            Some(6.0)
        );
        assert_eq!(
            value(&rt, p, &format!("e2e_temperature{{{sel}, room=\"a\"}}")),
            Some(21.5)
        );
        assert_eq!(
            value(
                &rt,
                p,
                &format!("target_info{{{sel}, run_id=\"r1\", deployment_environment=\"test\"}}")
            ),
            Some(1.0)
        );
        // The scrape itself succeeded, in the format asked for.
        assert_eq!(
            value(&rt, p, &format!("up{{job=\"ferrotel-{format}\"}}")),
            Some(1.0)
        );
    }
    let (ctype, _) = get(&rt, om_port, "application/openmetrics-text;version=1.0.0");
    assert!(
        ctype.starts_with("application/openmetrics-text; version=1.0.0"),
        "{ctype}"
    );

    // Deltas from a second SDK process add up into one cumulative series.
    let delta = [
        ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
        ("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=pull-2"),
    ];
    let (ok, report, err) = sdk_send_env(
        &format!("127.0.0.1:{grpc}"),
        "grpc",
        "metrics",
        5,
        "r2",
        &["--service", "prom-delta"],
        &delta,
    );
    assert!(ok, "{err}");
    let total = report["metrics"]["counter_total"].as_f64().unwrap();
    wait_until("converted deltas scraped", Duration::from_secs(30), || {
        value(
            &rt,
            p,
            "sum(e2e_requests_total{job=\"prom-delta\", format=\"text\"})",
        ) == Some(total)
    });

    // promtool parses the text exposition. Its linter also reports two conventions the
    // OpenTelemetry naming rules do not follow for this data (an instrument without a
    // description has no HELP; `ms` becomes `_milliseconds`): those are the only complaints
    // allowed.
    let (ctype, body) = get(&rt, text_port, "text/plain");
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (Debian's prometheus package, scripts/test.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.contains("no help text") && !l.contains("use base unit"))
        .collect();
    assert!(
        problems.is_empty() && matches!(out.status.code(), Some(0) | Some(3)),
        "promtool ({:?}):\n{report}\n--- exposition:\n{body}",
        out.status
    );
    assert!(
        !report.contains("e2e_requests_total no help text"),
        "{report}"
    );
    assert_eq!(
        c.metric("otelcol_exporter_send_failed_metric_points_total{exporter=\"prometheus/text\"}"),
        0.0
    );
}

/// A reload that changes the exporter: the old instance lets go of the port before the new one
/// binds it, and the new one serves what arrives after.
#[test]
fn a_reload_rebinds_the_scrape_port() {
    let (grpc, health, metrics, port) = (free_port(), free_port(), free_port(), free_port());
    let cfg = |tag: &str| {
        format!(
            r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
exporters:
  prometheus: {{ endpoint: "127.0.0.1:{port}", const_labels: {{ tag: {tag} }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [prometheus] }}
"#
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, cfg("a")).unwrap();
    let c = Collector::start_file(
        &path,
        &[],
        Some(health),
        Some(metrics),
        tempfile::tempdir().unwrap(),
    );
    std::fs::write(&path, cfg("b")).unwrap();
    c.signal(1);
    wait_until("the reload", Duration::from_secs(10), || {
        c.logs().contains("config reloaded;")
    });
    assert!(
        c.logs().contains("exporters: 0 kept, 1 built"),
        "{}",
        c.logs()
    );
    let (ok, _, err) = sdk_send_env(
        &format!("127.0.0.1:{grpc}"),
        "grpc",
        "metrics",
        2,
        "reload",
        &["--service", "prom-reload"],
        &[],
    );
    assert!(ok, "{err}");
    wait_until("the new exporter's series", Duration::from_secs(10), || {
        common::http_get(port, "/metrics")
            .is_some_and(|(code, body)| code == 200 && body.contains("tag=\"b\""))
    });
}
