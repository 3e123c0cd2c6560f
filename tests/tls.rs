//! TLS everywhere, with certificates the test generates (a CA, a server certificate, a client
//! certificate, and a client certificate from another CA): the Python SDK as TLS and mTLS client
//! of the receiver over gRPC and HTTP, clients without a (trusted) certificate refused by an mTLS
//! receiver, and ferrotel's own exporters speaking TLS and mTLS to a TLS gateway.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Collector, free_port, sdk_send, sink::Sink, wait_until};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    rogue_cert: PathBuf,
    rogue_key: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let pem = p.self_signed(&key).unwrap().pem();
    (p, key, pem)
}

fn leaf(names: &[&str], cn: &str, issuer: &Issuer<'_, KeyPair>) -> (String, String) {
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    (
        p.signed_by(&key, issuer).unwrap().pem(),
        key.serialize_pem(),
    )
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (ca_params, ca_key, ca_pem) = ca("ferrotel test CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let (server_cert, server_key) = leaf(&["localhost", "127.0.0.1"], "ferrotel server", &issuer);
    let (client_cert, client_key) = leaf(&["client.test"], "ferrotel client", &issuer);
    let (rogue_params, rogue_ca_key, _) = ca("rogue CA");
    let (rogue_cert, rogue_key) = leaf(
        &["rogue.test"],
        "rogue client",
        &Issuer::new(rogue_params, rogue_ca_key),
    );
    Pki {
        ca: w("ca.pem", &ca_pem),
        server_cert: w("server.pem", &server_cert),
        server_key: w("server-key.pem", &server_key),
        client_cert: w("client.pem", &client_cert),
        client_key: w("client-key.pem", &client_key),
        rogue_cert: w("rogue.pem", &rogue_cert),
        rogue_key: w("rogue-key.pem", &rogue_key),
        _dir: dir,
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// A gateway with a TLS receiver (`otlp/tls`) and an mTLS receiver (`otlp/mtls`) feeding a sink.
struct Gateway {
    sink: Sink,
    _c: Collector,
    tls_grpc: u16,
    tls_http: u16,
    mtls_grpc: u16,
    mtls_http: u16,
}

fn gateway(k: &Pki) -> Gateway {
    let sink = Sink::start();
    let (tls_grpc, tls_http, mtls_grpc, mtls_http, health) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let (cert, key, ca) = (p(&k.server_cert), p(&k.server_key), p(&k.ca));
    let cfg = format!(
        r#"
receivers:
  otlp/tls:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{tls_grpc}", tls: {{ cert_file: "{cert}", key_file: "{key}" }} }}
      http: {{ endpoint: "127.0.0.1:{tls_http}", tls: {{ cert_file: "{cert}", key_file: "{key}", min_version: "1.3" }} }}
  otlp/mtls:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{mtls_grpc}", tls: {{ cert_file: "{cert}", key_file: "{key}", client_ca_file: "{ca}" }} }}
      http: {{ endpoint: "127.0.0.1:{mtls_http}", tls: {{ cert_file: "{cert}", key_file: "{key}", client_ca_file: "{ca}" }} }}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp/tls, otlp/mtls], exporters: [otlp_grpc] }}
    metrics: {{ receivers: [otlp/tls, otlp/mtls], exporters: [otlp_grpc] }}
    logs: {{ receivers: [otlp/tls, otlp/mtls], exporters: [otlp_grpc] }}
"#,
        sink = sink.port
    );
    let c = Collector::start(&cfg, &[], Some(health), None);
    Gateway {
        sink,
        _c: c,
        tls_grpc,
        tls_http,
        mtls_grpc,
        mtls_http,
    }
}

fn spans_of_run(g: &Gateway, run: &str) -> usize {
    g.sink
        .store
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|r| {
            r.resource.as_ref().is_some_and(|res| {
                res.attributes.iter().any(|kv| {
                    kv.key == "run.id" && format!("{:?}", kv.value).contains(&format!("\"{run}\""))
                })
            })
        })
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

#[test]
fn sdk_over_tls_and_mtls_and_refused_without_a_trusted_certificate() {
    let k = pki();
    let g = gateway(&k);
    let ca = p(&k.ca);
    let (cc, ck) = (p(&k.client_cert), p(&k.client_key));

    // TLS, server authenticated only: gRPC and HTTP.
    let (ok, _, err) = sdk_send(
        &format!("localhost:{}", g.tls_grpc),
        "grpc",
        "traces",
        5,
        "tls-grpc",
        &["--ca-file", &ca],
    );
    assert!(ok, "SDK over TLS gRPC: {err}");
    let (ok, _, err) = sdk_send(
        &format!("https://localhost:{}", g.tls_http),
        "http",
        "traces",
        5,
        "tls-http",
        &["--ca-file", &ca],
    );
    assert!(ok, "SDK over TLS HTTP: {err}");

    // mTLS with the client certificate.
    let mtls = [
        "--ca-file",
        ca.as_str(),
        "--client-cert",
        cc.as_str(),
        "--client-key",
        ck.as_str(),
    ];
    let (ok, _, err) = sdk_send(
        &format!("localhost:{}", g.mtls_grpc),
        "grpc",
        "traces",
        5,
        "mtls-grpc",
        &mtls,
    );
    assert!(ok, "SDK over mTLS gRPC: {err}");
    let (ok, _, err) = sdk_send(
        &format!("https://localhost:{}", g.mtls_http),
        "http",
        "traces",
        5,
        "mtls-http",
        &mtls,
    );
    assert!(ok, "SDK over mTLS HTTP: {err}");

    wait_until("TLS runs at the sink", Duration::from_secs(10), || {
        ["tls-grpc", "tls-http", "mtls-grpc", "mtls-http"]
            .iter()
            .all(|r| spans_of_run(&g, r) == 10)
    });

    // mTLS without a client certificate, and with one from another CA: refused.
    let (ok, _, _) = sdk_send(
        &format!("https://localhost:{}", g.mtls_http),
        "http",
        "traces",
        2,
        "no-cert",
        &["--ca-file", &ca, "--timeout", "2"],
    );
    assert!(
        !ok,
        "a client without a certificate must be refused by the mTLS receiver"
    );
    let (rc, rk) = (p(&k.rogue_cert), p(&k.rogue_key));
    let rogue = [
        "--ca-file",
        ca.as_str(),
        "--client-cert",
        rc.as_str(),
        "--client-key",
        rk.as_str(),
        "--timeout",
        "2",
    ];
    let (ok, _, _) = sdk_send(
        &format!("https://localhost:{}", g.mtls_http),
        "http",
        "traces",
        2,
        "rogue",
        &rogue,
    );
    assert!(!ok, "a client certificate from another CA must be refused");
    // Plain text to a TLS port fails too.
    let (ok, _, _) = sdk_send(
        &format!("http://localhost:{}", g.tls_http),
        "http",
        "traces",
        2,
        "plain",
        &["--timeout", "2"],
    );
    assert!(!ok, "plain HTTP to a TLS listener must fail");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        spans_of_run(&g, "no-cert") + spans_of_run(&g, "rogue") + spans_of_run(&g, "plain"),
        0
    );
}

#[test]
fn exporters_speak_tls_and_mtls() {
    let k = pki();
    let g = gateway(&k);
    let (agent_grpc, health) = (free_port(), free_port());
    let (ca, cc, ck) = (p(&k.ca), p(&k.client_cert), p(&k.client_key));
    let cfg = format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{agent_grpc}" }} }} }}
exporters:
  otlp_grpc/mtls:
    endpoint: "localhost:{mtls_grpc}"
    tls: {{ ca_file: "{ca}", cert_file: "{cc}", key_file: "{ck}" }}
  otlp_http/mtls:
    endpoint: "https://localhost:{mtls_http}"
    tls: {{ ca_file: "{ca}", cert_file: "{cc}", key_file: "{ck}" }}
  otlp_grpc/override:
    endpoint: "127.0.0.1:{tls_grpc}"
    tls: {{ ca_file: "{ca}", server_name_override: localhost }}
  otlphttp/skipverify:
    endpoint: "https://127.0.0.1:{tls_http}"
    tls: {{ insecure_skip_verify: true }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [otlp_grpc/mtls, otlp_http/mtls, otlp_grpc/override, otlphttp/skipverify]
"#,
        mtls_grpc = g.mtls_grpc,
        mtls_http = g.mtls_http,
        tls_grpc = g.tls_grpc,
        tls_http = g.tls_http,
    );
    let _agent = Collector::start(&cfg, &[], Some(health), None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = LogsServiceClient::connect(format!("http://127.0.0.1:{agent_grpc}"))
            .await
            .unwrap();
        c.export(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        severity_text: "tls".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    });
    // One record, fanned out to four TLS exporters: four copies at the gateway's sink.
    wait_until("four TLS deliveries", Duration::from_secs(15), || {
        g.sink.store.log_count() == 4
    });
}

/// The certificate `openssl s_client` is served on 127.0.0.1:`port` (its subject line).
fn served_subject(port: u16) -> String {
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl is installed (scripts/test.sh installs it)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_default()
        .to_string()
}

/// `reload_interval`: the receiver re-reads its certificate files, so a rotation (new files
/// written in place, as cert-manager does) is served without a restart, while the Python SDK
/// keeps sending over TLS; inline `cert_pem`/`key_pem`, `cipher_suites` and
/// `curve_preferences` are honoured (a client offering only other suites is refused).
#[test]
fn certificates_rotate_without_a_restart_and_tls_keys_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_params, ca_key, ca_pem) = ca("rotation CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let (cert1, key1) = leaf(&["localhost", "127.0.0.1"], "server-one", &issuer);
    let (cert2, key2) = leaf(&["localhost", "127.0.0.1"], "server-two", &issuer);
    let (cert_path, key_path, ca_path) = (
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        dir.path().join("ca.crt"),
    );
    let put = |path: &Path, text: &str| {
        // Written whole then renamed, so a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    };
    put(&cert_path, &cert1);
    put(&key_path, &key1);
    put(&ca_path, &ca_pem);
    let sink = Sink::start();
    let (grpc, inline, health) = (free_port(), free_port(), free_port());
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("            {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let cfg = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "127.0.0.1:{grpc}"
        tls: {{ cert_file: "{cert}", key_file: "{key}", reload_interval: 200ms }}
  otlp/inline:
    protocols:
      grpc:
        endpoint: "127.0.0.1:{inline}"
        tls:
          cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]
          curve_preferences: [P256]
          max_version: "1.2"
          cert_pem: |
{cert_pem}
          key_pem: |
{key_pem}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp, otlp/inline], exporters: [otlp_grpc] }}
"#,
        cert = cert_path.display(),
        key = key_path.display(),
        cert_pem = indent(&cert1),
        key_pem = indent(&key1),
        sink = sink.port,
    );
    let _c = Collector::start(&cfg, &[], Some(health), None);
    let ca = p(&ca_path);
    assert!(
        served_subject(grpc).contains("server-one"),
        "{}",
        served_subject(grpc)
    );
    let send = |run: &str| {
        let (ok, _, err) = sdk_send(
            &format!("localhost:{grpc}"),
            "grpc",
            "traces",
            5,
            run,
            &["--ca-file", &ca],
        );
        assert!(ok, "SDK over TLS ({run}): {err}");
    };
    send("before-rotation");
    put(&cert_path, &cert2);
    put(&key_path, &key2);
    wait_until(
        "the rotated certificate is served",
        Duration::from_secs(10),
        || served_subject(grpc).contains("server-two"),
    );
    send("after-rotation");
    wait_until("every span", Duration::from_secs(20), || {
        sink.store.span_count() == 2 * 10
    });
    // A rotation that does not read keeps the last good certificate.
    put(&key_path, "not a key");
    std::thread::sleep(Duration::from_millis(300));
    assert!(served_subject(grpc).contains("server-two"));

    // The inline certificate with one TLS 1.2 suite: offered, it is chosen; other suites alone
    // are refused. (rcgen's keys are ECDSA P-256.)
    let suite = |cipher: &str| {
        let out = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{inline}"),
                "-tls1_2",
                "-cipher",
                cipher,
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let ok = suite("ECDHE-ECDSA-AES256-GCM-SHA384");
    assert!(
        ok.contains("Cipher is ECDHE-ECDSA-AES256-GCM-SHA384"),
        "{ok}"
    );
    assert!(ok.contains("server-one"), "the inline certificate: {ok}");
    let refused = suite("ECDHE-ECDSA-AES128-GCM-SHA256");
    assert!(
        refused.contains("Cipher is (NONE)"),
        "the handshake fails for want of a shared suite: {refused}"
    );
}
