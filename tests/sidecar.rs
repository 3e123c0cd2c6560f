//! The sidecar patterns of `deploy/kubernetes/sidecar/`: each manifest passes
//! `kubernetes-validate --strict` (PyPI, offline schemas), keeps the sidecar cheap and safe
//! (small requests, a memory limit above its memory_limiter, probes on its health port, no
//! privileges), and its ConfigMap's config runs as shipped (only the `${env:...}` endpoints
//! pointed at this test) against input written the pattern's way: lines appended to a file in
//! the shared directory (streaming), the legacy text format (adapter), and util-linux `logger`
//! sending RFC 5424 to localhost (syslog). Every record reaches an OTLP sink with its fields.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::{Collector, free_port, sink::Sink, wait_until};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::Value;

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

/// The manifest's documents, after `kubernetes-validate --strict` accepted the file.
fn manifest(name: &str) -> Vec<Value> {
    let path = common::repo()
        .join("deploy/kubernetes/sidecar")
        .join(format!("{name}.yaml"));
    let validator = common::python()
        .parent()
        .expect("the venv's bin")
        .join("kubernetes-validate");
    let out = Command::new(&validator)
        .args(["--strict", "--quiet"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", validator.display()));
    assert!(
        out.status.success(),
        "{name}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_saphyr::from_multiple(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn mebibytes(q: &str) -> u64 {
    q.strip_suffix("Mi")
        .unwrap_or_else(|| panic!("{q}: expected Mi"))
        .parse()
        .unwrap()
}

/// Checks the sidecar container and returns the config and the sidecar's `SERVICE_NAME`.
fn sidecar(docs: &[Value], name: &str) -> (String, String) {
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("a ConfigMap");
    let config = cm["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml")
        .to_string();
    let deploy = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    let c = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ferrotel")
        .expect("the ferrotel sidecar");
    let res = &c["resources"];
    assert_eq!(res["requests"]["cpu"], "10m", "{name}");
    let limit = mebibytes(res["limits"]["memory"].as_str().unwrap());
    assert!(
        limit <= 64,
        "{name}: a sidecar per pod stays small ({limit} Mi)"
    );
    let limiter: u64 = config
        .split("limit_mib: \"${env:MEMORY_LIMIT_MIB:-")
        .nth(1)
        .and_then(|r| r.split('}').next())
        .and_then(|n| n.parse().ok())
        .expect("memory_limiter limit_mib, its default from MEMORY_LIMIT_MIB");
    assert!(
        limiter < limit,
        "{name}: memory_limiter {limiter} below the {limit} Mi limit"
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], 13133, "{name}");
    assert!(
        config.contains("${env:HEALTH_ENDPOINT:-0.0.0.0:13133}"),
        "{name}"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{name}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
    assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{name}");
    // Valid with every `${env:...}` at its default, as the pod starts it.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferrotel"))
        .args(["validate", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let service = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SERVICE_NAME")
        .and_then(|e| e["value"].as_str())
        .expect("SERVICE_NAME")
        .to_string();
    (config, service)
}

/// Starts the config as shipped, its endpoints from the environment pointed at this test.
fn run(config: &str, service: &str, sink: &Sink, extra: &[(&str, String)]) -> Collector {
    let health = free_port();
    let mut env: Vec<(&str, String)> = vec![
        ("GATEWAY_ENDPOINT", format!("127.0.0.1:{}", sink.port)),
        ("HEALTH_ENDPOINT", format!("127.0.0.1:{health}")),
        ("METRICS_ENDPOINT", format!("127.0.0.1:{}", free_port())),
        ("POD_NAME", "app-7d9f-x2".into()),
        ("POD_NAMESPACE", "shop".into()),
        ("SERVICE_NAME", service.into()),
        // The debug build the tests run holds about 45 MiB from its start (the release image
        // about 17): the shipped 48 MiB limit would refuse everything here.
        ("MEMORY_LIMIT_MIB", "400".into()),
    ];
    env.extend(extra.iter().cloned());
    Collector::start(config, &env, Some(health), None)
}

/// The records at the sink with their resource attributes.
fn records(sink: &Sink) -> Vec<(Vec<KeyValue>, LogRecord)> {
    let mut out = Vec::new();
    for rl in sink.store.logs.lock().unwrap().iter() {
        let res = rl.resource.clone().unwrap_or_default().attributes;
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                out.push((res.clone(), r.clone()));
            }
        }
    }
    out
}

fn append(path: &std::path::Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

#[test]
fn streaming_sidecar_tails_the_shared_directory() {
    let docs = manifest("streaming");
    let (config, service) = sidecar(&docs, "streaming");
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let c = run(
        &config,
        &service,
        &sink,
        &[("APP_LOG_DIR", dir.path().display().to_string())],
    );
    let lines: Vec<String> = (0..5)
        .map(|i| format!("2026-12-04T03:00:0{i}+00:00 order placed #{i}"))
        .collect();
    append(&dir.path().join("app.log"), &lines);
    wait_until("5 lines", Duration::from_secs(15), || {
        sink.store.log_count() >= 5
    });
    std::thread::sleep(Duration::from_millis(300));
    let got = records(&sink);
    assert_eq!(got.len(), 5, "{}", c.logs());
    for (i, (res, r)) in got.iter().enumerate() {
        assert_eq!(
            r.body.as_ref().and_then(|b| b.value.clone()),
            Some(s(&lines[i]))
        );
        assert_eq!(attr(res, "k8s.pod.name"), Some(&s("app-7d9f-x2")));
        assert_eq!(attr(res, "k8s.namespace.name"), Some(&s("shop")));
        assert_eq!(attr(res, "service.name"), Some(&s("legacy-app")));
        assert_eq!(attr(&r.attributes, "log.file.name"), Some(&s("app.log")));
    }
}

#[test]
fn adapter_sidecar_parses_the_legacy_format() {
    let docs = manifest("adapter");
    let (config, service) = sidecar(&docs, "adapter");
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start();
    let c = run(
        &config,
        &service,
        &sink,
        &[("APP_LOG_DIR", dir.path().display().to_string())],
    );
    append(
        &dir.path().join("app.log"),
        &[
            "2026-12-04 03:04:05,678 [WARN] payments: card declined".to_string(),
            "2026-12-04 03:04:06,001 [ERROR] payments.gateway: timeout after 3s".to_string(),
        ],
    );
    wait_until("2 records", Duration::from_secs(15), || {
        sink.store.log_count() >= 2
    });
    let got = records(&sink);
    assert_eq!(got.len(), 2, "{}", c.logs());
    let (res, first) = &got[0];
    assert_eq!(attr(res, "service.name"), Some(&s("payments")));
    assert_eq!(
        first.body.as_ref().and_then(|b| b.value.clone()),
        Some(s("card declined"))
    );
    assert_eq!(first.severity_number, 13, "WARN");
    assert_eq!(first.severity_text, "WARN");
    // 2026-12-04T03:04:05.678Z
    assert_eq!(first.time_unix_nano, 1_796_353_445_678_000_000);
    assert_eq!(attr(&first.attributes, "logger"), Some(&s("payments")));
    assert!(
        attr(&first.attributes, "time").is_none(),
        "the parsed time is removed"
    );
    let second = &got[1].1;
    assert_eq!(
        (second.severity_number, second.severity_text.as_str()),
        (17, "ERROR")
    );
    assert_eq!(
        attr(&second.attributes, "logger"),
        Some(&s("payments.gateway"))
    );
}

#[test]
fn syslog_sidecar_takes_what_the_app_sends_to_localhost() {
    let docs = manifest("syslog");
    let (config, service) = sidecar(&docs, "syslog");
    let port = free_port();
    let sink = Sink::start();
    let c = run(
        &config,
        &service,
        &sink,
        &[("SYSLOG_LISTEN", format!("127.0.0.1:{port}"))],
    );
    for (transport, msg) in [
        ("-d", "invoice sent over udp"),
        ("-T", "invoice sent over tcp"),
    ] {
        let out = Command::new("logger")
            .args([
                "--rfc5424",
                transport,
                "-n",
                "127.0.0.1",
                "-P",
                &port.to_string(),
                "-t",
                "billing",
                msg,
            ])
            .output()
            .expect("util-linux logger");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_until("2 records", Duration::from_secs(15), || {
        sink.store.log_count() >= 2
    });
    let got = records(&sink);
    assert_eq!(got.len(), 2, "{}", c.logs());
    for (res, r) in &got {
        assert_eq!(attr(res, "service.name"), Some(&s("billing")));
        assert_eq!(attr(&r.attributes, "appname"), Some(&s("billing")));
        assert!(
            matches!(
                attr(&r.attributes, "message"),
                Some(any_value::Value::StringValue(m)) if m.starts_with("invoice sent over")
            ),
            "{:?}",
            r.attributes
        );
    }
}
