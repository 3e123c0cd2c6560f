//! The OpenTelemetry Operator's two ways of starting a collector, with ferrotel as the image:
//! an `OpenTelemetryCollector` resource's `spec.config` (v1beta1: a mapping; v1alpha1: a
//! string), which the Operator writes to `collector.yaml` and passes as `--config=<file>`, and
//! sidecar injection, which puts the config in `OTEL_CONFIG` and passes `--config=env:OTEL_CONFIG`.
//! No Operator or Kubernetes runs here: the resource is the Operator README's example with its
//! `0.0.0.0` endpoints written `${env:POD_IP}` (the pod IP, a loopback address of the test's
//! own, so the fixed ports never clash) and a health check added to probe.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const V1BETA1: &str = r#"
apiVersion: opentelemetry.io/v1beta1
kind: OpenTelemetryCollector
metadata:
  name: simplest
spec:
  config:
    receivers:
      otlp:
        protocols:
          grpc:
            endpoint: ${env:POD_IP}:4317
          http:
            endpoint: ${env:POD_IP}:4318
    processors:
      memory_limiter:
        check_interval: 1s
        limit_percentage: 75
        spike_limit_percentage: 15
      batch:
        send_batch_size: 10000
        timeout: 10s
    exporters:
      debug: {}
    extensions:
      health_check:
        endpoint: ${env:POD_IP}:13133
    service:
      extensions: [health_check]
      telemetry:
        metrics:
          address: ${env:POD_IP}:8888
      pipelines:
        traces:
          receivers: [otlp]
          processors: [memory_limiter, batch]
          exporters: [debug]
"#;

/// The resource's `spec.config` as YAML text: the mapping written back, or the string as is.
fn spec_config(resource: &str) -> String {
    let node = ferrotel::config::node::parse(resource).unwrap();
    let config = node.get("spec").and_then(|s| s.get("config")).unwrap();
    match config.as_str() {
        Some(text) => text.to_owned(),
        None => ferrotel::config::render::yaml_text(config),
    }
}

/// Runs ferrotel as the pod would and waits for its health check on `ip`.
fn runs(args: &[&str], env: &[(&str, &str)], ip: &str) -> Result<(), String> {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrotel"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("FERROTEL_CONFIG")
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut result = Err("not ready in 20 s".to_string());
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            result = Err(format!("exited with {st}"));
            break;
        }
        if std::net::TcpStream::connect((ip, 13133)).is_ok()
            && std::net::TcpStream::connect((ip, 4317)).is_ok()
        {
            result = Ok(());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    result.map_err(|e| {
        format!(
            "{e}:\n{}",
            std::fs::read_to_string(log.path()).unwrap_or_default()
        )
    })
}

#[test]
fn an_opentelemetrycollector_resource_runs_as_a_deployment_and_as_a_sidecar() {
    let config = spec_config(V1BETA1);
    assert!(config.contains("memory_limiter"), "{config}");
    // As the Operator's Deployment: the config map's collector.yaml.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("collector.yaml");
    std::fs::write(&file, &config).unwrap();
    let arg = format!("--config={}", file.display());
    runs(&[&arg], &[("POD_IP", "127.78.0.1")], "127.78.0.1").unwrap();
    // As an injected sidecar: the config in OTEL_CONFIG.
    runs(
        &["--config=env:OTEL_CONFIG"],
        &[("OTEL_CONFIG", &config), ("POD_IP", "127.78.0.2")],
        "127.78.0.2",
    )
    .unwrap();
    // v1alpha1 carries the config as a string.
    let indented: String = config.lines().map(|l| format!("    {l}\n")).collect();
    let v1alpha1 = format!(
        "apiVersion: opentelemetry.io/v1alpha1\nkind: OpenTelemetryCollector\nmetadata:\n  name: old\nspec:\n  mode: sidecar\n  config: |\n{indented}"
    );
    let text = spec_config(&v1alpha1);
    assert_eq!(text.trim(), config.trim());
    runs(
        &["--config=env:OTEL_CONFIG"],
        &[("OTEL_CONFIG", &text), ("POD_IP", "127.78.0.3")],
        "127.78.0.3",
    )
    .unwrap();
}
