//! The command line: version, component listing, exit codes.

use std::process::Command;

fn ferrotel(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrotel"))
        .args(args)
        .output()
        .expect("run ferrotel");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_and_help() {
    let (code, out, _) = ferrotel(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("ferrotel {}", env!("CARGO_PKG_VERSION"))
    );
    let (code, out, _) = ferrotel(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("validate") && out.contains("components") && out.contains("--log-level"));
}

#[test]
fn components_lists_kinds_signals_stability_and_aliases() {
    let (code, out, _) = ferrotel(&["components"]);
    assert_eq!(code, 0);
    for line in ["receivers:", "processors:", "exporters:", "extensions:"] {
        assert!(out.contains(line), "{out}");
    }
    let otlp = out
        .lines()
        .find(|l| l.trim_start().starts_with("otlp_grpc"))
        .expect("otlp_grpc listed");
    assert!(
        otlp.contains("traces, metrics, logs")
            && otlp.contains("Beta")
            && otlp.contains("alias: otlp"),
        "{otlp}"
    );
    let (code, json, _) = ferrotel(&["components", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let debug = v
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "debug")
        .unwrap();
    assert_eq!(debug["kind"], "exporter");
    assert_eq!(debug["aliases"][0], "logging");
}

#[test]
fn missing_config_and_unreadable_file_exit_non_zero() {
    let (code, _, err) = ferrotel(&[]);
    assert_eq!(code, 2);
    assert!(err.contains("--config FILE is required"));
    let (code, _, err) = ferrotel(&["validate", "--config", "/nonexistent/x.yaml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent/x.yaml: cannot read the config file"),
        "{err}"
    );
    let (code, _, err) = ferrotel(&["--config", "/nonexistent/x.yaml"]);
    assert_eq!(code, 1);
    assert!(err.contains("not starting"), "{err}");
}

#[test]
fn a_port_in_use_fails_the_start_with_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!("receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{port}\nexporters:\n  debug:\nservice:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [debug]\n"),
    )
    .unwrap();
    let (code, _, err) = ferrotel(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("otlp: cannot listen on 127.0.0.1:{port} (grpc)")),
        "{err}"
    );
}
