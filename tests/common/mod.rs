//! Shared pieces of the integration tests: ports, collector processes, an OTLP sink, the SDK.
#![allow(dead_code)]

pub mod https;
pub mod ledger;
pub mod prometheus;
pub mod sink;
pub mod standin;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port free on 127.0.0.1 now, taken below the kernel's ephemeral range (32768 and up), so
/// that no outgoing connection of a test is given it as a source port before the server that
/// is meant to bind it starts.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Test binaries run one after another, their tests in parallel: the process id spreads the
    // binaries, the counter the tests of one.
    let offset = std::process::id() % 12_000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(n < 12_000, "no free port below 32000");
        let port = 20_000 + ((offset + n) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with the OpenTelemetry SDK: `$FERROTEL_TEST_PYTHON`, else `.venv/bin/python`
/// (created by `.ci/run`).
pub fn python() -> PathBuf {
    let p = std::env::var_os("FERROTEL_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "no Python with the OpenTelemetry SDK at {}: run .ci/run once, or set FERROTEL_TEST_PYTHON",
        p.display()
    );
    p
}

/// Runs the SDK client script and returns its JSON report.
pub fn sdk_send(
    endpoint: &str,
    protocol: &str,
    signals: &str,
    count: usize,
    run_id: &str,
    extra: &[&str],
) -> (bool, serde_json::Value, String) {
    sdk_send_env(endpoint, protocol, signals, count, run_id, extra, &[])
}

/// [`sdk_send`] with extra environment for the SDK (e.g. the temporality preference).
pub fn sdk_send_env(
    endpoint: &str,
    protocol: &str,
    signals: &str,
    count: usize,
    run_id: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (bool, serde_json::Value, String) {
    let out = Command::new(python())
        .envs(env.iter().copied())
        .arg(repo().join("tests/e2e/sdk_client.py"))
        .args([
            "--endpoint",
            endpoint,
            "--protocol",
            protocol,
            "--signals",
            signals,
            "--run-id",
            run_id,
        ])
        .args(["--count", &count.to_string()])
        .args(extra)
        // `requests` lets these override the CA the SDK is given (its `verify`); a machine-wide
        // bundle must not decide which server the test trusts.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("run the SDK client");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "SDK client printed no JSON ({e}); stdout: {} stderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.success(), json, stderr)
}

/// A ferrotel process.
pub struct Collector {
    child: Option<Child>,
    pub log: PathBuf,
    pub health: Option<u16>,
    pub metrics: Option<u16>,
    _dir: tempfile::TempDir,
}

impl Collector {
    /// Starts `ferrotel --config <text>` and waits until its health check says ready (when
    /// `health` is given) or its first listener accepts.
    pub fn start(
        config: &str,
        env: &[(&str, String)],
        health: Option<u16>,
        metrics: Option<u16>,
    ) -> Collector {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("config.yaml");
        std::fs::write(&cfg, config).expect("write config");
        Self::start_file(&cfg, env, health, metrics, dir)
    }

    pub fn start_file(
        cfg: &Path,
        env: &[(&str, String)],
        health: Option<u16>,
        metrics: Option<u16>,
        dir: tempfile::TempDir,
    ) -> Collector {
        Self::start_file_with(cfg, env, health, metrics, dir, None)
    }

    /// A shipped config (`pipelines/<name>`) as it is, on `ports` (their `FERROTEL_*`
    /// variables) plus `extra` environment.
    pub fn shipped(name: &str, ports: &Ports, extra: &[(&'static str, String)]) -> Collector {
        let mut env = ports.env();
        env.extend(extra.iter().cloned());
        Self::start_file(
            &repo().join("pipelines").join(name),
            &env,
            Some(ports.health),
            Some(ports.metrics),
            tempfile::tempdir().expect("tempdir"),
        )
    }

    /// [`Collector::start`] with the process's open-file limit (soft and hard) set to `nofile`.
    pub fn start_nofile(
        config: &str,
        nofile: u64,
        health: Option<u16>,
        metrics: Option<u16>,
    ) -> Collector {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("config.yaml");
        std::fs::write(&cfg, config).expect("write config");
        Self::start_file_with(&cfg, &[], health, metrics, dir, Some(nofile))
    }

    fn start_file_with(
        cfg: &Path,
        env: &[(&str, String)],
        health: Option<u16>,
        metrics: Option<u16>,
        dir: tempfile::TempDir,
        nofile: Option<u64>,
    ) -> Collector {
        let log = dir.path().join("ferrotel.log");
        let logf = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrotel"));
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; the closure touches only its copy of n.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.arg("--config")
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(logf)
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn ferrotel");
        let mut c = Collector {
            child: Some(child),
            log,
            health,
            metrics,
            _dir: dir,
        };
        if let Some(h) = health {
            c.wait_ready(h);
        }
        c
    }

    fn wait_ready(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "ferrotel exited with {st} during start-up:\n{}",
                    self.logs()
                );
            }
            if http_get(port, "/").is_some_and(|(code, _)| code == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("ferrotel not ready after 20s:\n{}", self.logs());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The self-metrics text.
    pub fn self_metrics(&self) -> String {
        let port = self.metrics.expect("metrics port");
        http_get(port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// One self-metric value with all its labels as written, e.g.
    /// `otelcol_exporter_sent_spans_total{exporter="otlp_grpc/gateway"}`.
    pub fn metric(&self, series: &str) -> f64 {
        parse_metric(&self.self_metrics(), series)
    }

    /// Sends a signal (`1` SIGHUP, ...) without waiting.
    pub fn signal(&self, sig: i32) {
        send_signal(self.pid(), sig);
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        send_signal(child.id(), 15);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "ferrotel did not stop within 30s of SIGTERM:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn rss_bytes(&self) -> u64 {
        let statm =
            std::fs::read_to_string(format!("/proc/{}/statm", self.pid())).unwrap_or_default();
        statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(0)
            * 4096
    }
}

impl Collector {
    /// `kill -9`: no shutdown, no flush; what the process held in memory is gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// rotel's binary in the test venv (`rotel` from PyPI, tests/requirements.txt).
pub fn rotel_agent() -> PathBuf {
    let out = Command::new(python())
        .args([
            "-c",
            "import rotel, os; print(os.path.dirname(rotel.__file__))",
        ])
        .output()
        .expect("python");
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let p = Path::new(&dir).join("rotel-agent");
    assert!(
        p.exists(),
        "rotel is installed by scripts/test.sh (tests/requirements.txt): {}",
        p.display()
    );
    p
}

/// rotel (an independent OTLP collector) receiving OTLP on `grpc` and `http` and forwarding
/// everything over OTLP/gRPC to `sink`; killed on drop.
pub struct Rotel(Child);

impl Rotel {
    pub fn start(grpc: u16, http: u16, sink: u16, dir: &Path) -> Rotel {
        let r = Rotel(
            Command::new(rotel_agent())
                .args([
                    "start",
                    "--otlp-grpc-endpoint",
                    &format!("127.0.0.1:{grpc}"),
                    "--otlp-http-endpoint",
                    &format!("127.0.0.1:{http}"),
                    "--exporter",
                    "otlp",
                    "--otlp-exporter-endpoint",
                    &format!("http://127.0.0.1:{sink}"),
                    "--otlp-exporter-protocol",
                    "grpc",
                    "--batch-timeout",
                    "100ms",
                    "--pid-file",
                    &dir.join("rotel.pid").display().to_string(),
                    "--log-file",
                    &dir.join("rotel.log").display().to_string(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start rotel"),
        );
        wait_until("rotel listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", grpc)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", http)).is_ok()
        });
        r
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn send_signal(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

pub fn parse_metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// A minimal HTTP/1.1 GET over a plain socket: status and body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    if !chunked {
        return Some((code, body.to_owned()));
    }
    // `<hex size>\r\n<data>\r\n` ... `0\r\n\r\n`: the chunk lines must not end up inside the
    // body, where they would split a line of an exposition in two.
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if n == 0 {
            break;
        }
        out.push_str(after.get(..n)?);
        rest = after.get(n..)?.strip_prefix("\r\n")?;
    }
    Some((code, out))
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A gateway config whose exporter sends to the test's sink, through the `round_robin` pool
/// and gRPC's `dns:///` target form (the name is an address, which the lookup gives back).
pub fn gateway_config(grpc: u16, http: u16, health: u16, metrics: u16, sink: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
processors:
  memory_limiter: {{ check_interval: 1s, limit_mib: 1500, spike_limit_mib: 300 }}
  batch: {{ send_batch_size: 8192, timeout: 100ms }}
exporters:
  otlp_grpc/sink:
    endpoint: "dns:///127.0.0.1:{sink}"
    balancer_name: round_robin
    tls: {{ insecure: true }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlp_grpc/sink] }}
    metrics: {{ receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlp_grpc/sink] }}
    logs: {{ receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlp_grpc/sink] }}
"#
    )
}

/// Ports of a collector started from one of the `pipelines/*.yaml` configs.
pub struct Ports {
    pub grpc: u16,
    pub http: u16,
    pub health: u16,
    pub metrics: u16,
}

impl Ports {
    pub fn new() -> Self {
        Ports {
            grpc: free_port(),
            http: free_port(),
            health: free_port(),
            metrics: free_port(),
        }
    }

    /// The environment the ready configs read their listen addresses from.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FERROTEL_GRPC_ENDPOINT", format!("127.0.0.1:{}", self.grpc)),
            ("FERROTEL_HTTP_ENDPOINT", format!("127.0.0.1:{}", self.http)),
            (
                "FERROTEL_HEALTH_ENDPOINT",
                format!("127.0.0.1:{}", self.health),
            ),
            (
                "FERROTEL_METRICS_ENDPOINT",
                format!("127.0.0.1:{}", self.metrics),
            ),
            // agent.yaml's filelog offsets: one directory per collector (a store is locked by
            // its process), and no node log tree to read here.
            (
                "FERROTEL_STORAGE_DIR",
                std::env::temp_dir()
                    .join(format!(
                        "ferrotel-test-storage-{}-{}",
                        std::process::id(),
                        self.health
                    ))
                    .display()
                    .to_string(),
            ),
            (
                "FERROTEL_POD_LOGS",
                std::env::temp_dir()
                    .join("ferrotel-test-no-pod-logs")
                    .display()
                    .to_string(),
            ),
        ]
    }
}

/// An OTLP value as text: strings as they are, integers in decimal, anything else debug-printed.
pub fn value_text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// The value of attribute `k` as text (see [`value_text`]).
pub fn attr_text(
    kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    k: &str,
) -> Option<String> {
    kvs.iter()
        .find(|kv| kv.key == k)
        .map(|kv| value_text(&kv.value))
}

/// An attribute.
pub fn kv(
    k: &str,
    v: opentelemetry_proto::tonic::common::v1::any_value::Value,
) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    opentelemetry_proto::tonic::common::v1::KeyValue {
        key: k.into(),
        value: Some(opentelemetry_proto::tonic::common::v1::AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// A collector with an OTLP/gRPC receiver, one `exporter` (its YAML under `exporters:`, indented
/// by two spaces) in a pipeline of `signal`, health check and self-metrics: the setup of every
/// exporter's end-to-end test. Returns the collector and its gRPC port.
pub fn exporter_collector(signal: &str, exporter: &str, exporter_yaml: &str) -> (Collector, u16) {
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
exporters:
{exporter_yaml}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    {signal}: {{ receivers: [otlp], exporters: [{exporter}] }}
"#
    );
    (
        Collector::start(&cfg, &[], Some(health), Some(metrics)),
        grpc,
    )
}

/// One OTLP/gRPC trace export to `127.0.0.1:grpc`.
pub fn export_traces(
    rt: &tokio::runtime::Runtime,
    grpc: u16,
    req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
) -> Result<(), tonic::Status> {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    rt.block_on(async {
        let mut c = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        c.export(req).await.map(|_| ())
    })
}

/// One OTLP/gRPC log export to `127.0.0.1:grpc`.
pub fn export_logs(
    rt: &tokio::runtime::Runtime,
    grpc: u16,
    req: opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
) -> Result<(), tonic::Status> {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    rt.block_on(async {
        let mut c = LogsServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        c.export(req).await.map(|_| ())
    })
}

/// Sends `n` requests (`send(i)` for each `i`) while the backend is down: some are taken into
/// the exporter's queue, then the queue is full and the rest are refused `UNAVAILABLE`, the
/// retryable answer. Returns how many were accepted; asserts both happened.
pub fn fill_queue_until_refused(
    n: usize,
    mut send: impl FnMut(usize) -> Result<(), tonic::Status>,
) -> usize {
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..n {
        match send(i) {
            Ok(()) => accepted += 1,
            Err(st) => {
                assert_eq!(st.code(), tonic::Code::Unavailable, "{st:?}");
                refused += 1;
            }
        }
    }
    assert!(
        accepted > 0 && refused > 0,
        "accepted {accepted}, refused {refused}"
    );
    accepted
}

/// A trace export of one span (`trace_id` of `trace` bytes, `span_id` of `id` bytes).
pub fn one_span(
    trace: u8,
    id: u8,
    name: &str,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![trace; 16],
                    span_id: vec![id; 8],
                    name: name.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
