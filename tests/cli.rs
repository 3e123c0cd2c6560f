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
            && otlp.contains("beta")
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

/// `ferrotel` with extra environment.
fn ferrotel_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrotel"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("FERROTEL_CONFIG")
        .output()
        .expect("run ferrotel");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BASE: &str = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:4317\nprocessors:\n  batch:\n    timeout: 1s\nexporters:\n  debug:\n    verbosity: basic\n  otlp_http:\n    endpoint: https://backend.example:4318\n    headers:\n      authorization: ${env:BACKEND_TOKEN}\nextensions:\n  health_check:\nservice:\n  extensions: [health_check]\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [debug]\n";

const OVERLAY: &str = "processors:\n  batch:\n    send_batch_size: 100\nextensions:\n  pprof:\nservice:\n  extensions: [pprof]\n  pipelines:\n    traces:\n      exporters: [otlp_http]\n";

/// Two files, an inline `yaml:` source and two `--set` flags, merged in order, checked key by
/// key through `print-config --format json`.
#[test]
fn config_sources_merge_in_order_and_print_config_shows_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    std::fs::write(&a, BASE).unwrap();
    std::fs::write(
        &b,
        OVERLAY
            .replace("  pprof:\n", "  zpages:\n")
            .replace("[pprof]", "[zpages]"),
    )
    .unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let (code, out, err) = ferrotel_env(
        &[
            "print-config",
            "--mode",
            "unredacted",
            "--format",
            "json",
            "--config",
            a,
            "--config",
            &format!("file:{b}"),
            "--config=yaml:exporters::debug::verbosity: detailed",
            "--set=processors::batch::timeout=2s",
            "--set",
            "service::pipelines::traces::receivers=[otlp]",
        ],
        &[("BACKEND_TOKEN", "Bearer t0ken")],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Mappings merge key by key: both batch keys, the later value winning.
    assert_eq!(v["processors"]["batch"]["timeout"], "2s");
    assert_eq!(v["processors"]["batch"]["send_batch_size"], 100);
    assert_eq!(v["exporters"]["debug"]["verbosity"], "detailed");
    assert_eq!(
        v["exporters"]["otlp_http"]["headers"]["authorization"],
        "Bearer t0ken"
    );
    // Lists are replaced, not appended.
    assert_eq!(v["service"]["extensions"], serde_json::json!(["zpages"]));
    assert_eq!(
        v["service"]["pipelines"]["traces"]["exporters"],
        serde_json::json!(["otlp_http"])
    );
    assert_eq!(
        v["service"]["pipelines"]["traces"]["processors"],
        serde_json::json!(["batch"])
    );
    assert!(v["extensions"]["health_check"].is_null() && v["extensions"].get("zpages").is_some());

    // Redacted by default, as YAML.
    let (code, out, _) = ferrotel_env(
        &["print-config", "--config", a],
        &[("BACKEND_TOKEN", "Bearer t0ken")],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("authorization: \"[REDACTED]\"") && !out.contains("t0ken"),
        "{out}"
    );
    assert!(out.contains("    verbosity: basic\n"), "{out}");
}

#[test]
fn merge_append_gate_combines_component_lists() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    std::fs::write(&a, BASE).unwrap();
    std::fs::write(
        &b,
        OVERLAY
            .replace("  pprof:\n", "  zpages:\n")
            .replace("[pprof]", "[zpages]"),
    )
    .unwrap();
    let (code, out, err) = ferrotel_env(
        &[
            "print-config",
            "--format=json",
            "--feature-gates=confmap.enableMergeAppendOption",
            "--config",
            a.to_str().unwrap(),
            "--config",
            b.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["service"]["extensions"],
        serde_json::json!(["health_check", "zpages"])
    );
    assert_eq!(
        v["service"]["pipelines"]["traces"]["exporters"],
        serde_json::json!(["debug", "otlp_http"])
    );
    let (code, out, _) = ferrotel_env(&["featuregate"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("confmap.enableMergeAppendOption\talpha\toff"),
        "{out}"
    );
    let (code, _, err) = ferrotel_env(
        &[
            "validate",
            "--config",
            a.to_str().unwrap(),
            "--feature-gates=+no.such.gate",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("no such feature gate `no.such.gate`"), "{err}");
}

/// The Operator's sidecar injection: `--config=env:OTEL_CONFIG`, the YAML in the variable.
#[test]
fn the_operators_env_source_runs_the_collector() {
    let (grpc, health) = (free(), free());
    let yaml = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\nexporters:\n  debug:\nextensions:\n  health_check:\n    endpoint: 127.0.0.1:{health}\nservice:\n  extensions: [health_check]\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"
    );
    let (code, out, err) = ferrotel_env(
        &["validate", "--config=env:OTEL_CONFIG"],
        &[("OTEL_CONFIG", &yaml)],
    );
    assert_eq!((code, out.trim()), (0, "env:OTEL_CONFIG: valid"), "{err}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrotel"))
        .arg("--config=env:OTEL_CONFIG")
        .env("OTEL_CONFIG", &yaml)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut ready = false;
    while std::time::Instant::now() < deadline && !ready {
        ready = get_status(health) == Some(200);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ready,
        "the collector started from env:OTEL_CONFIG became ready"
    );
    // Unset, it is a clear error rather than an empty config.
    let (code, _, err) = ferrotel_env(&["validate", "--config=env:OTEL_CONFIG_UNSET"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("env:OTEL_CONFIG_UNSET: the environment variable `OTEL_CONFIG_UNSET` that this config source names is not set"),
        "{err}"
    );
}

/// Each misuse of a source gets an error naming the source; `validate` lists every one, with
/// every unknown key of a component and the file of a merged config each came from.
#[test]
fn misused_sources_get_located_errors_all_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    std::fs::write(&a, BASE).unwrap();
    // Two unknown keys in one component (lines 3 and 4), in the second file.
    std::fs::write(
        &b,
        "processors:\n  batch:\n    timeoot: 1s\n    send_batch_sise: 5\n",
    )
    .unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let (code, _, err) = ferrotel_env(
        &[
            "validate",
            "--config",
            a,
            "--config",
            b,
            "--config",
            "s3:bucket/config.yaml",
            "--config",
            "https://example.com/c.yaml",
            "--config",
            &format!("{}/missing.yaml", dir.path().display()),
            "--config=yaml:[unclosed",
            "--set=processors.batch.timeout=2s",
            "--set=noequals",
        ],
        &[("BACKEND_TOKEN", "x")],
    );
    assert_eq!(code, 1);
    for want in [
        format!("{b}:3:5: processors::batch: `timeoot`: unknown field `timeoot`"),
        format!("{b}:4:5: processors::batch: `send_batch_sise`: unknown field `send_batch_sise`"),
        "s3:bucket/config.yaml: unknown config source scheme `s3`".to_string(),
        "https://example.com/c.yaml: the `https` config provider is not supported".to_string(),
        "missing.yaml: cannot read the config file: No such file or directory".to_string(),
        "yaml:[unclosed:1:".to_string(),
        "--set processors.batch.timeout=2s: `processors.batch.timeout`: --set separates keys with `::`".to_string(),
        "--set noequals: a --set flag is `key::path=value`".to_string(),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains("8 error(s)"), "{err}");
    // A `${file:...}` reference that cannot be read is located where it is written.
    let c = dir.path().join("c.yaml");
    std::fs::write(
        &c,
        BASE.replace("${env:BACKEND_TOKEN}", "${file:/nonexistent/token}"),
    )
    .unwrap();
    let (code, _, err) = ferrotel_env(&["validate", "--config", c.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "{}:15:22: `${{file:/nonexistent/token}}`: cannot read",
            c.display()
        )),
        "{err}"
    );
}

fn free() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get_status(port: u16) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

/// The README's status table and `ferrotel components` use one word for each component's
/// stability, and every component has a row.
#[test]
fn readme_stability_matches_the_factories() {
    let (code, json, _) = ferrotel(&["components", "--json"]);
    assert_eq!(code, 0);
    let comps: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme
        .split("| component | kind | signals | stability |")
        .nth(1)
        .expect("the status table")
        .split("\n\n")
        .next()
        .unwrap();
    for word in ["development", "alpha", "beta", "stable", "deprecated"] {
        assert!(
            readme.contains(&format!("- **{word}**")),
            "{word} is defined"
        );
    }
    for c in &comps {
        let name = c["type"].as_str().unwrap();
        let kind = c["kind"].as_str().unwrap();
        let row = table
            .lines()
            .find(|l| {
                let first = l.split(" | ").next().unwrap_or_default();
                let first = first.split('(').next().unwrap_or_default();
                first.contains(&format!("`{name}`")) && l.contains(&format!("| {kind} |"))
            })
            .unwrap_or_else(|| panic!("no README row for {kind} `{name}`"));
        let stability = row.split(" | ").nth(3).unwrap().trim();
        assert_eq!(stability, c["stability"].as_str().unwrap(), "{row}");
    }
}
