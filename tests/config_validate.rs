//! `ferrotel validate` on bad configs (one test per rule, each checking the file, line, column
//! and key in the message) and on the corpus of real Collector configs in
//! `../shared/collector-configs/`.

mod common;

use std::path::Path;
use std::process::Command;

fn validate_file(path: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrotel"));
    cmd.arg("validate").arg("--config").arg(path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run ferrotel validate");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Validates `yaml` written to a file named `cfg.yaml`; returns (ok, output).
fn validate(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cfg.yaml");
    std::fs::write(&p, yaml).unwrap();
    let (ok, out) = validate_file(&p, &[]);
    (ok, out.replace(&p.display().to_string(), "cfg.yaml"))
}

fn assert_error(yaml: &str, expected: &str) {
    let (ok, out) = validate(yaml);
    assert!(!ok, "expected the config to be refused:\n{yaml}");
    assert!(out.contains(expected), "expected {expected:?} in:\n{out}");
}

const HEAD: &str = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\nexporters:\n  debug:\n";
const PIPE: &str =
    "service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n";

#[test]
fn a_good_config_is_valid_and_exits_zero() {
    let (ok, out) = validate(&format!("{HEAD}{PIPE}"));
    assert!(ok, "{out}");
    assert!(out.contains("cfg.yaml: valid"));
}

#[test]
fn unknown_key_names_file_line_column_component_and_key() {
    assert_error(
        &format!("{HEAD}processors:\n  batch:\n    send_batch_sise: 10\n{PIPE}"),
        "cfg.yaml:10:5: processors::batch: `send_batch_sise`: unknown field `send_batch_sise`, expected one of `timeout`, `send_batch_size`, `send_batch_max_size`",
    );
}

#[test]
fn wrong_type_names_the_nested_key() {
    assert_error(
        &format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        max_recv_msg_size_mib: [4]\nexporters:\n  debug:\n{PIPE}"
        ),
        "cfg.yaml:5:32: receivers::otlp: `protocols.grpc.max_recv_msg_size_mib`: invalid type: sequence, expected u64",
    );
}

#[test]
fn bad_duration_is_explained() {
    assert_error(
        &format!("{HEAD}processors:\n  batch:\n    timeout: 200\n{PIPE}"),
        "cfg.yaml:10:14: processors::batch: `timeout`: invalid duration 200: missing unit, write e.g. 200s or 200ms",
    );
    assert_error(
        &format!("{HEAD}processors:\n  batch:\n    timeout: 2 minutes\n{PIPE}"),
        "cfg.yaml:10:14: processors::batch: `timeout`: invalid duration \"2 minutes\": unknown unit",
    );
}

#[test]
fn pipeline_naming_an_undefined_component() {
    assert_error(
        &format!(
            "{HEAD}service:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [debug, otlp_grpc/missing]\n"
        ),
        "cfg.yaml:12:26: service::pipelines::logs: `exporters`: `otlp_grpc/missing` is not defined in `exporters`",
    );
}

#[test]
fn empty_pipeline_is_refused() {
    assert_error(
        &format!("{HEAD}service:\n  pipelines:\n    metrics:\n      receivers: [otlp]\n"),
        "cfg.yaml:10:5: service::pipelines::metrics: `exporters`: a pipeline needs at least one exporter",
    );
}

#[test]
fn two_receivers_on_one_port_are_refused() {
    assert_error(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:4999\n  otlp/b:\n    protocols:\n      grpc:\n        endpoint: 0.0.0.0:4999\nexporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp, otlp/b]\n      exporters: [debug]\n",
        "cfg.yaml:6:3: receivers::otlp/b: port 4999 is also used by receivers::otlp",
    );
}

#[test]
fn unknown_top_level_and_service_keys() {
    assert_error(
        &format!("{HEAD}{PIPE}proccessors: {{}}\n"),
        "cfg.yaml:13:1: `proccessors`: unknown top-level key",
    );
    assert_error(
        &format!("{HEAD}{PIPE}  pipeline: {{}}\n"),
        "cfg.yaml:13:3: service: `pipeline`: unknown key; expected extensions, pipelines, telemetry or shutdown_timeout",
    );
}

#[test]
fn invalid_yaml_has_a_position() {
    assert_error("receivers:\n  otlp: [\n", "cfg.yaml:");
    let (_, out) = validate("receivers:\n  otlp: [\n");
    assert!(out.contains("invalid YAML"), "{out}");
}

#[test]
fn every_error_is_listed_at_once() {
    let (ok, out) = validate(&format!(
        "{HEAD}processors:\n  batch:\n    timeout: soon\n  memory_limiter:\n    limit_mib: 10\n{PIPE}  extensions: [health_check]\n"
    ));
    assert!(!ok);
    assert!(
        out.contains("cfg.yaml:10:14: processors::batch: `timeout`"),
        "{out}"
    );
    assert!(
        out.contains("processors::memory_limiter: `check_interval`"),
        "{out}"
    );
    assert!(
        out.contains("service::extensions: extension `health_check` is not defined"),
        "{out}"
    );
    assert!(out.contains("3 error(s)"), "{out}");
}

#[test]
fn env_references_are_expanded_before_checks() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cfg.yaml");
    std::fs::write(
        &p,
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: ${env:GRPC_EP:-127.0.0.1:0}\nprocessors:\n  batch:\n    timeout: ${BATCH_TIMEOUT}\nexporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [debug]\n",
    )
    .unwrap();
    assert!(validate_file(&p, &[("BATCH_TIMEOUT", "1s")]).0);
    let (ok, out) = validate_file(&p, &[("BATCH_TIMEOUT", "later")]);
    assert!(
        !ok && out.contains(":8:14: processors::batch: `timeout`: invalid duration \"later\""),
        "{out}"
    );
}

/// What each corpus file must give with the components ferrotel has today. Grows as components
/// land: when a component is added, its files move from `Unsupported` towards `Valid`.
enum Expect {
    Valid,
    /// Refused, and the message names all of these.
    Unsupported(&'static [&'static str]),
    /// Refused for these reasons (each a substring of the output).
    Refused(&'static [&'static str]),
}

const CORPUS: &[(&str, Expect)] = &[
    ("01-helm-deployment-otlp-traces.yaml", Expect::Valid),
    ("02-istio-loki-attributes.yaml", Expect::Valid),
    ("03-jaeger-otel-demo-k8sattributes.yaml", Expect::Valid),
    ("04-jaeger-tail-sampling-loadbalancing.yaml", Expect::Valid),
    ("05-otelio-agent-loadbalancing-traceid.yaml", Expect::Valid),
    ("06-otelio-gateway-tail-sampling.yaml", Expect::Valid),
    ("07-otelio-agent-prometheusremotewrite.yaml", Expect::Valid),
    ("08-otelio-blog-probabilistic-sampler.yaml", Expect::Valid),
    // Its endpoints are placeholders (no URL, no port), which the Collector refuses too.
    (
        "09-otelio-blog-llm-prw-otlp.yaml",
        Expect::Refused(&[
            "exporters::prometheusremotewrite: `endpoint`: invalid URL \"YOUR_PROMETHEUS_REMOTE_WRITE_URL\": needs http:// or https:// and a host",
            "exporters::otlp: `endpoint`: endpoint \"YOUR_JAEGER_URL\" needs a port",
            "2 error(s)",
        ]),
    ),
    ("10-dynatrace-tail-sampling-otlp-http.yaml", Expect::Valid),
    (
        "11-dynatrace-load-balancing-k8s.yaml",
        // The k8s resolver (watching Endpoints) is not implemented; static and dns are.
        Expect::Refused(&["`resolver.k8s`: unknown field `k8s`, expected `static` or `dns`"]),
    ),
    ("12-dotnet-zipkin-bom.yaml", Expect::Valid),
    ("13-dotnet-otlp-tls-mtls.yaml", Expect::Valid),
    ("14-newrelic-lambda-otlphttp-logging.yaml", Expect::Valid),
    (
        "15-reject-otelcol-default-config.yaml",
        Expect::Unsupported(&[
            "extensions: pprof (line 6), zpages (line 8)",
            "receivers: jaeger (line 28), zipkin (line 39)",
        ]),
    ),
    (
        "16-reject-jaeger-spanmetrics.yaml",
        Expect::Unsupported(&["connectors: spanmetrics", "exporters: prometheus"]),
    ),
    (
        "17-reject-helm-daemonset-file-log.yaml",
        Expect::Unsupported(&["receivers: jaeger (line 26), zipkin (line 48)"]),
    ),
    (
        "18-reject-otelio-agent-host-metrics.yaml",
        Expect::Unsupported(&["processors: resourcedetection", "receivers: host_metrics"]),
    ),
    (
        "19-reject-core-local-zpages.yaml",
        Expect::Unsupported(&["extensions: zpages (line 2)"]),
    ),
];

const CORPUS_ENV: &[(&str, &str)] = &[
    ("MY_POD_IP", "127.0.0.1"),
    ("OTEL_K8S_NODE_NAME", "node-1"),
    ("OTEL_K8S_NAMESPACE", "observability"),
    ("OTEL_K8S_NODE_IP", "10.0.0.1"),
    ("OTEL_K8S_POD_IP", "10.0.0.2"),
    ("OTEL_K8S_POD_NAME", "collector-0"),
    ("BACKEND_API_KEY", "key"),
    ("DT_ENDPOINT", "https://abc.live.dynatrace.com/api/v2/otlp"),
    ("API_TOKEN", "token"),
    (
        "NEW_RELIC_OPENTELEMETRY_ENDPOINT",
        "https://otlp.nr-data.net",
    ),
    ("NEW_RELIC_LICENSE_KEY", "license"),
];

fn corpus_dir() -> std::path::PathBuf {
    common::repo().join("../shared/collector-configs")
}

#[test]
fn collector_config_corpus() {
    let dir = corpus_dir();
    let mut listed: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    listed.sort();
    let known: Vec<&str> = CORPUS.iter().map(|(f, _)| *f).collect();
    assert_eq!(listed, known, "every corpus file has an expectation here");
    for (file, expect) in CORPUS {
        let (ok, out) = validate_file(&dir.join(file), CORPUS_ENV);
        match expect {
            Expect::Valid => assert!(ok, "{file} must be valid:\n{out}"),
            Expect::Unsupported(names) => {
                assert!(!ok, "{file} must be refused");
                let line = out
                    .lines()
                    .find(|l| l.contains("unsupported component types"))
                    .unwrap_or_else(|| panic!("{file}: {out}"));
                for n in *names {
                    assert!(
                        line.contains(n),
                        "{file}: expected {n:?} in one message:\n{line}"
                    );
                }
                assert!(
                    out.contains("1 error(s)"),
                    "{file}: only the unsupported types are wrong:\n{out}"
                );
            }
            Expect::Refused(reasons) => {
                assert!(!ok, "{file} must be refused");
                for r in *reasons {
                    assert!(out.contains(r), "{file}: expected {r:?} in:\n{out}");
                }
            }
        }
    }
}

/// The valid corpus files that can start here also run (01, 07, 12, 14): started unchanged, they serve their
/// health check or ports, and stop cleanly on SIGTERM. (13 needs certificate files under
/// /cfg/certs that do not exist here: validated only.)
#[test]
fn valid_corpus_files_run_unchanged() {
    let dir = corpus_dir();
    // 01: every endpoint from MY_POD_IP; health on 13133.
    let env: Vec<(&str, String)> = CORPUS_ENV
        .iter()
        .map(|(k, v)| (*k, v.to_string()))
        .collect();
    let mut c = common::Collector::start_file(
        &dir.join(CORPUS[0].0),
        &env,
        Some(13133),
        Some(8888),
        tempfile::tempdir().unwrap(),
    );
    assert!(c.self_metrics().contains("otelcol_process_uptime"));
    assert!(c.terminate().success(), "{}", c.logs());
    // 14: `grpc:`/`http:` with defaults (0.0.0.0:4317/4318), `logging` with its old keys.
    let mut c = common::Collector::start_file(
        &dir.join(CORPUS[13].0),
        &env,
        None,
        Some(8888),
        tempfile::tempdir().unwrap(),
    );
    common::wait_until(
        "14 listening on 4318",
        std::time::Duration::from_secs(10),
        || std::net::TcpStream::connect("127.0.0.1:4318").is_ok(),
    );
    assert!(
        c.logs().contains("deprecated name of `debug`"),
        "{}",
        c.logs()
    );
    assert!(c.terminate().success(), "{}", c.logs());
    // 07: OTLP/HTTP → prometheusremotewrite with `sending_queue: batch:` (null: on, defaults).
    let mut c = common::Collector::start_file(
        &dir.join(CORPUS[6].0),
        &env,
        None,
        Some(8888),
        tempfile::tempdir().unwrap(),
    );
    common::wait_until(
        "07 listening on 4318",
        std::time::Duration::from_secs(10),
        || std::net::TcpStream::connect("127.0.0.1:4318").is_ok(),
    );
    assert!(c.terminate().success(), "{}", c.logs());
    // 02: defaults everywhere (4317, 4318, 13133), an `attributes` insert → loki + logging.
    let mut c = common::Collector::start_file(
        &dir.join(CORPUS[1].0),
        &env,
        Some(13133),
        Some(8888),
        tempfile::tempdir().unwrap(),
    );
    assert!(c.terminate().success(), "{}", c.logs());
    // 04 (tail_sampling, loadbalancing over static hostnames; OTLP/HTTP on 4318), 05
    // (loadbalancing over DNS with a top-level batching queue), 06 (memory_limiter,
    // tail_sampling), 08 (probabilistic_sampler, batch), 10 (tail_sampling → otlp_http, debug).
    for (i, port) in [(3, 4318), (4, 4317), (5, 4317), (7, 4317), (9, 4317)] {
        let mut c = common::Collector::start_file(
            &dir.join(CORPUS[i].0),
            &env,
            None,
            Some(8888),
            tempfile::tempdir().unwrap(),
        );
        common::wait_until(
            &format!("{} listening on {port}", CORPUS[i].0),
            std::time::Duration::from_secs(10),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        assert!(c.terminate().success(), "{}", c.logs());
    }
    // 12: starts with a UTF-8 byte-order mark; OTLP/HTTP on 0.0.0.0:4318 → batch → zipkin.
    let mut c = common::Collector::start_file(
        &dir.join(CORPUS[11].0),
        &env,
        None,
        Some(8888),
        tempfile::tempdir().unwrap(),
    );
    common::wait_until(
        "12 listening on 4318",
        std::time::Duration::from_secs(10),
        || std::net::TcpStream::connect("127.0.0.1:4318").is_ok(),
    );
    assert!(
        c.self_metrics()
            .contains("otelcol_exporter_queue_capacity{exporter=\"zipkin\"} 1000")
    );
    assert!(c.terminate().success(), "{}", c.logs());
}

/// Every config shipped in `pipelines/` and `pipelines/examples/` passes `ferrotel validate`.
#[test]
fn shipped_configs_validate() {
    let mut n = 0;
    for dir in ["pipelines", "pipelines/examples"] {
        for entry in std::fs::read_dir(common::repo().join(dir)).unwrap() {
            let p = entry.unwrap().path();
            // The kustomization that turns these configs into ConfigMaps is not one.
            if p.extension().is_some_and(|e| e == "yaml")
                && p.file_name().is_some_and(|n| n != "kustomization.yaml")
            {
                let (ok, out) = validate_file(&p, &[]);
                assert!(ok, "{}:\n{out}", p.display());
                n += 1;
            }
        }
    }
    assert!(n >= 6, "found {n} configs");
}
