//! Authenticator extensions against real clients: the OpenTelemetry Python SDK (credentials in
//! `OTEL_EXPORTER_OTLP_HEADERS`), curl, and a second ferrotel whose exporter authenticates.
//! Wrong and missing credentials are refused (401 / `UNAUTHENTICATED`), counted, and reach no
//! pipeline; no secret appears in the logs (at debug level) or in `print-config`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Collector, free_port, sink::Sink, wait_until};

const PASSWORD: &str = "pa55-Secret-42";
const TOKEN: &str = "tok-7f3a9c-SECRET";

fn curl(url: &str, headers: &[&str]) -> u16 {
    let mut c = Command::new("curl");
    c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args(["-H", "Content-Type: application/json", "--data", "{}"]);
    for h in headers {
        c.args(["-H", h]);
    }
    let out = c.arg(url).output().expect("curl");
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

/// basicauth on both OTLP protocols, with an htpasswd file (bcrypt) and an inline user.
#[test]
fn basicauth_lets_in_only_valid_users() {
    let sink = Sink::start();
    let (grpc, http, health, metrics) = (free_port(), free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("alice:{}\n", bcrypt::hash(PASSWORD, 4).unwrap()),
    )
    .unwrap();
    let c = Collector::start(
        &format!(
            r#"
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
  basicauth/server:
    htpasswd:
      file: {}
      inline: |
        bob:{PASSWORD}
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}", auth: {{ authenticator: basicauth/server }} }}
      http: {{ endpoint: "127.0.0.1:{http}", auth: {{ authenticator: basicauth/server }} }}
processors:
  attributes:
    actions: [{{ key: caller, from_context: auth.username, action: insert }}]
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{}", tls: {{ insecure: true }} }}
service:
  extensions: [health_check, basicauth/server]
  telemetry: {{ logs: {{ level: debug }}, metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [attributes], exporters: [otlp_grpc] }}
"#,
            htpasswd.display(),
            sink.port
        ),
        // Every crate at debug: no secret may show up even there.
        &[("RUST_LOG", "debug".into())],
        Some(health),
        Some(metrics),
    );
    let good = format!("authorization=Basic {}", basic("alice", PASSWORD));
    for (proto, ep) in [
        ("grpc", format!("http://127.0.0.1:{grpc}")),
        ("http", format!("http://127.0.0.1:{http}")),
    ] {
        let (ok, report, err) = common::sdk_send_env(
            &ep,
            proto,
            "traces",
            3,
            &format!("good-{proto}"),
            &["--timeout", "3"],
            &[("OTEL_EXPORTER_OTLP_HEADERS", good.as_str())],
        );
        assert!(ok, "{proto}: {report} {err}");
        let (ok, _, _) = common::sdk_send_env(
            &ep,
            proto,
            "traces",
            3,
            &format!("bad-{proto}"),
            &["--timeout", "3"],
            &[(
                "OTEL_EXPORTER_OTLP_HEADERS",
                format!("authorization=Basic {}", basic("alice", "wrong")).as_str(),
            )],
        );
        assert!(!ok, "{proto}: a wrong password must fail the export");
        let (ok, _, _) = common::sdk_send(
            &ep,
            proto,
            "traces",
            3,
            &format!("none-{proto}"),
            &["--timeout", "3"],
        );
        assert!(!ok, "{proto}: no credentials must fail the export");
    }
    // curl: the inline user, then wrong and missing credentials.
    let url = format!("http://127.0.0.1:{http}/v1/traces");
    assert_eq!(
        curl(
            &url,
            &[&format!("Authorization: Basic {}", basic("bob", PASSWORD))]
        ),
        200
    );
    assert_eq!(
        curl(
            &url,
            &[&format!("Authorization: Basic {}", basic("bob", "x"))]
        ),
        401
    );
    assert_eq!(curl(&url, &["Authorization: Bearer abc"]), 401);
    assert_eq!(curl(&url, &[]), 401);

    wait_until("the good spans arrive", Duration::from_secs(10), || {
        sink.store.span_count() >= 6
    });
    std::thread::sleep(Duration::from_millis(500));
    let spans = sink.store.spans.lock().unwrap().clone();
    let runs: Vec<String> = spans
        .iter()
        .flat_map(|r| r.resource.iter().flat_map(|res| &res.attributes))
        .filter(|kv| kv.key == "run.id")
        .map(|kv| common::value_text(&kv.value))
        .collect();
    assert!(
        runs.iter().all(|r| r.starts_with("good-")),
        "only authenticated data reaches the pipeline: {runs:?}"
    );
    // The user name reached the attributes processor as `auth.username`.
    let callers: Vec<String> = spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .flat_map(|s| &s.attributes)
        .filter(|kv| kv.key == "caller")
        .map(|kv| common::value_text(&kv.value))
        .collect();
    assert!(
        !callers.is_empty() && callers.iter().all(|c| c == "alice"),
        "{callers:?}"
    );
    let text = c.self_metrics();
    let refused = |t: &str| {
        common::parse_metric(
            &text,
            &format!(
                "ferrotel_receiver_unauthenticated_requests_total{{receiver=\"otlp\",transport=\"{t}\"}}"
            ),
        )
    };
    assert!(refused("grpc") >= 2.0 && refused("http") >= 5.0, "{text}");
    let logs = c.logs();
    assert!(
        !logs.contains(PASSWORD) && !logs.contains(&basic("alice", PASSWORD)),
        "a secret in the logs"
    );
    assert!(
        logs.contains("not authenticated"),
        "refusals are logged at debug: {logs}"
    );
}

/// bearertokenauth as client and server: SDK → ferrotel A (otlp_http exporter with the token
/// from a file) → ferrotel B (otlp receiver requiring it) → sink. The token file is rotated on
/// both sides without a restart.
#[test]
fn bearertokenauth_between_two_collectors_with_a_rotated_token() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let (b_http, b_health, b_metrics) = (free_port(), free_port(), free_port());
    let b = Collector::start(
        &format!(
            r#"
extensions:
  health_check: {{ endpoint: "127.0.0.1:{b_health}" }}
  bearertokenauth: {{ filename: {} }}
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:{b_http}", auth: {{ authenticator: bearertokenauth }} }}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{}", tls: {{ insecure: true }} }}
service:
  extensions: [health_check, bearertokenauth]
  telemetry: {{ logs: {{ level: debug }}, metrics: {{ address: "127.0.0.1:{b_metrics}" }} }}
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlp_grpc] }}
"#,
            token_file.display(),
            sink.port
        ),
        &[("RUST_LOG", "debug".into())],
        Some(b_health),
        Some(b_metrics),
    );
    let (a_grpc, a_health, a_metrics) = (free_port(), free_port(), free_port());
    let a_cfg = format!(
        r#"
extensions:
  health_check: {{ endpoint: "127.0.0.1:{a_health}" }}
  bearertokenauth/out: {{ filename: {} }}
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{a_grpc}" }}
exporters:
  otlp_http:
    endpoint: "http://127.0.0.1:{b_http}"
    auth: {{ authenticator: bearertokenauth/out }}
    sending_queue: {{ enabled: false }}
    retry_on_failure: {{ enabled: false }}
service:
  extensions: [health_check, bearertokenauth/out]
  telemetry: {{ logs: {{ level: debug }}, metrics: {{ address: "127.0.0.1:{a_metrics}" }} }}
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlp_http] }}
"#,
        token_file.display()
    );
    let a = Collector::start(
        &a_cfg,
        &[("RUST_LOG", "debug".into())],
        Some(a_health),
        Some(a_metrics),
    );
    let send = |run: &str| {
        common::sdk_send(
            &format!("http://127.0.0.1:{a_grpc}"),
            "grpc",
            "logs",
            2,
            run,
            &["--timeout", "3"],
        )
        .0
    };
    assert!(send("first"), "through A to B with the token");
    wait_until("first logs at the sink", Duration::from_secs(10), || {
        sink.store.log_count() >= 2
    });
    // Without the token, B refuses.
    let url = format!("http://127.0.0.1:{b_http}/v1/logs");
    assert_eq!(curl(&url, &[]), 401);
    assert_eq!(curl(&url, &["Authorization: Bearer nope"]), 401);
    assert_eq!(
        curl(&url, &[&format!("Authorization: Bearer {TOKEN}")]),
        200
    );
    // Rotated: both read the new token within a second or two.
    std::fs::write(&token_file, "rotated-token-2\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        curl(&url, &[&format!("Authorization: Bearer {TOKEN}")]),
        401
    );
    assert!(send("second"), "A sends the new token");
    wait_until("second logs at the sink", Duration::from_secs(10), || {
        sink.store.log_count() >= 4
    });
    for c in [&a, &b] {
        let logs = c.logs();
        assert!(
            !logs.contains(TOKEN) && !logs.contains("rotated-token-2"),
            "a token in the logs:\n{logs}"
        );
    }
}

/// `print-config` and `validate` never show a secret of the auth extensions.
#[test]
fn auth_secrets_are_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    let health = free_port();
    std::fs::write(
        &cfg,
        format!(
            r#"
extensions:
  basicauth/server: {{ htpasswd: {{ inline: "bob:{PASSWORD}" }} }}
  basicauth/client: {{ client_auth: {{ username: u, password: {PASSWORD} }} }}
  bearertokenauth: {{ token: {TOKEN} }}
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
receivers:
  otlp: {{ protocols: {{ http: {{ endpoint: "127.0.0.1:0", auth: {{ authenticator: basicauth/server }} }} }} }}
exporters:
  otlp_http: {{ endpoint: "http://127.0.0.1:1", auth: {{ authenticator: basicauth/client }} }}
service:
  extensions: [basicauth/server, basicauth/client, bearertokenauth, health_check]
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlp_http] }}
"#
        ),
    )
    .unwrap();
    for args in [
        vec!["print-config", "--config"],
        vec!["validate", "--config"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ferrotel"))
            .args(&args)
            .arg(&cfg)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(
            !text.contains(PASSWORD) && !text.contains(TOKEN),
            "{args:?}: {text}"
        );
    }
}

/// The OIDC issuer and token endpoint of `tests/e2e/oidc_issuer.py` (PyJWT with
/// `cryptography`): RFC 6749 client credentials, OpenID Connect Discovery, JWKS.
struct Issuer {
    child: std::process::Child,
    port: u16,
}

impl Issuer {
    fn start(client_id: &str, secret: &str) -> Issuer {
        use std::io::BufRead;
        let mut child = Command::new(common::python())
            .arg(common::repo().join("tests/e2e/oidc_issuer.py"))
            .args([client_id, secret])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the issuer");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the issuer's port");
        Issuer { child, port }
    }

    fn get(&self, path: &str) -> String {
        common::http_get(self.port, path).expect("issuer").1
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// oauth2client on the exporter of ferrotel A fetches a token once (RFC 6749 client
/// credentials) and reuses it; oidc on ferrotel B verifies it against the issuer's JWKS and
/// passes its claims to the attributes processor. Tokens that are expired, for another
/// audience or issuer, signed with a foreign key or not signed at all are refused.
#[test]
fn oauth2client_to_oidc_through_two_collectors() {
    const SECRET: &str = "client-s3cret-9x";
    let issuer = Issuer::start("ferrotel-agent", SECRET);
    let iss = format!("http://127.0.0.1:{}", issuer.port);
    let sink = Sink::start();
    let (b_http, b_health, b_metrics) = (free_port(), free_port(), free_port());
    let b = Collector::start(
        &format!(
            r#"
extensions:
  health_check: {{ endpoint: "127.0.0.1:{b_health}" }}
  oidc: {{ issuer_url: "{iss}", audience: ferrotel, groups_claim: groups }}
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:{b_http}", auth: {{ authenticator: oidc }} }}
processors:
  attributes:
    actions:
      - {{ key: caller, from_context: auth.subject, action: insert }}
      - {{ key: groups, from_context: auth.membership, action: insert }}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{}", tls: {{ insecure: true }} }}
service:
  extensions: [health_check, oidc]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{b_metrics}" }} }}
  pipelines:
    logs: {{ receivers: [otlp], processors: [attributes], exporters: [otlp_grpc] }}
"#,
            sink.port
        ),
        &[("RUST_LOG", "debug".into())],
        Some(b_health),
        Some(b_metrics),
    );
    let (a_grpc, a_health, a_metrics) = (free_port(), free_port(), free_port());
    let a = Collector::start(
        &format!(
            r#"
extensions:
  health_check: {{ endpoint: "127.0.0.1:{a_health}" }}
  oauth2client:
    token_url: "{iss}/token"
    client_id: ferrotel-agent
    client_secret: {SECRET}
    endpoint_params: {{ audience: ferrotel }}
    scopes: [api.write]
    timeout: 2s
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{a_grpc}" }}
exporters:
  otlp_http:
    endpoint: "http://127.0.0.1:{b_http}"
    auth: {{ authenticator: oauth2client }}
    sending_queue: {{ enabled: false }}
    retry_on_failure: {{ enabled: false }}
service:
  extensions: [health_check, oauth2client]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{a_metrics}" }} }}
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlp_http] }}
"#
        ),
        &[("RUST_LOG", "debug".into())],
        Some(a_health),
        Some(a_metrics),
    );
    for run in ["one", "two", "three"] {
        let (ok, report, err) = common::sdk_send(
            &format!("http://127.0.0.1:{a_grpc}"),
            "grpc",
            "logs",
            2,
            run,
            &["--timeout", "5"],
        );
        assert!(ok, "{run}: {report} {err}\n{}\n{}", a.logs(), b.logs());
    }
    wait_until("the logs arrive", Duration::from_secs(10), || {
        sink.store.log_count() >= 6
    });
    assert_eq!(
        issuer.get("/stats"),
        r#"{"issued": 1}"#,
        "one token, reused while it is valid"
    );
    let logs = sink.store.logs.lock().unwrap().clone();
    let attr = |key: &str| -> Vec<String> {
        logs.iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .flat_map(|l| &l.attributes)
            .filter(|kv| kv.key == key)
            .map(|kv| common::value_text(&kv.value))
            .collect()
    };
    assert!(attr("caller").iter().all(|c| c == "ferrotel-agent") && attr("caller").len() >= 6);
    assert!(
        attr("groups").iter().all(|g| g == "agents"),
        "{:?}",
        attr("groups")
    );

    // Tokens minted by the issuer, tried directly against B.
    let url = format!("http://127.0.0.1:{b_http}/v1/logs");
    let try_token = |q: &str| {
        let t = issuer.get(&format!("/mint?{q}"));
        curl(&url, &[&format!("Authorization: Bearer {t}")])
    };
    assert_eq!(try_token("sub=alice"), 200, "RS256");
    assert_eq!(try_token("sub=alice&kid=ec-1&alg=ES256"), 200, "ES256");
    assert_eq!(try_token("ttl=-30"), 401, "expired");
    assert_eq!(try_token("aud=someone-else"), 401, "another audience");
    assert_eq!(try_token("iss=http://evil.example"), 401, "another issuer");
    assert_eq!(
        try_token("kid=foreign"),
        401,
        "signed by a key not in the set"
    );
    let unsigned = {
        use base64::Engine;
        let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.",
            e(r#"{"alg":"none"}"#),
            e(&format!(
                r#"{{"iss":"{iss}","aud":"ferrotel","sub":"x","exp":9999999999}}"#
            ))
        )
    };
    assert_eq!(
        curl(&url, &[&format!("Authorization: Bearer {unsigned}")]),
        401,
        "alg none"
    );
    assert_eq!(curl(&url, &["Authorization: Bearer not.a.jwt"]), 401);
    assert_eq!(curl(&url, &[]), 401);
    let refused = common::parse_metric(
        &b.self_metrics(),
        "ferrotel_receiver_unauthenticated_requests_total{receiver=\"otlp\",transport=\"http\"}",
    );
    assert_eq!(refused, 7.0);
    assert!(!a.logs().contains(SECRET), "the client secret in the logs");

    // A wrong client secret: the token endpoint refuses, the export fails, and the error
    // names the endpoint's answer, not the secret.
    let (c_grpc, c_health) = (free_port(), free_port());
    let c = Collector::start(
        &format!(
            r#"
extensions:
  health_check: {{ endpoint: "127.0.0.1:{c_health}" }}
  oauth2client: {{ token_url: "{iss}/token", client_id: ferrotel-agent, client_secret: wrong-secret-1 }}
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{c_grpc}" }} }} }}
exporters:
  otlp_http:
    endpoint: "http://127.0.0.1:{b_http}"
    auth: {{ authenticator: oauth2client }}
    sending_queue: {{ enabled: false }}
    retry_on_failure: {{ enabled: false }}
service:
  extensions: [health_check, oauth2client]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{}" }} }}
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlp_http] }}
"#,
            free_port()
        ),
        &[],
        Some(c_health),
        None,
    );
    let (ok, _, _) = common::sdk_send(
        &format!("http://127.0.0.1:{c_grpc}"),
        "grpc",
        "logs",
        1,
        "wrong",
        &["--timeout", "3"],
    );
    assert!(!ok, "no token, no delivery");
    let logs = c.logs();
    assert!(logs.contains("invalid_client"), "{logs}");
    assert!(!logs.contains("wrong-secret-1"), "{logs}");
}

/// headers_setter: the SDK's `X-Tenant` header reaches ferrotel A (`include_metadata`), whose
/// exporter sets `X-Scope-OrgID` from it; ferrotel B records what arrived as an attribute.
/// A request without the header gets `default_value`.
#[test]
fn headers_setter_copies_a_request_header_to_the_exporter() {
    let sink = Sink::start();
    let (b_http, b_health) = (free_port(), free_port());
    let _b = Collector::start(
        &format!(
            r#"
extensions:
  health_check: {{ endpoint: "127.0.0.1:{b_health}" }}
receivers:
  otlp: {{ protocols: {{ http: {{ endpoint: "127.0.0.1:{b_http}", include_metadata: true }} }} }}
processors:
  attributes:
    actions: [{{ key: tenant, from_context: metadata.x-scope-orgid, action: insert }}]
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{}", tls: {{ insecure: true }} }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{}" }} }}
  pipelines:
    logs: {{ receivers: [otlp], processors: [attributes], exporters: [otlp_grpc] }}
"#,
            sink.port,
            free_port()
        ),
        &[],
        Some(b_health),
        None,
    );
    let (a_grpc, a_health) = (free_port(), free_port());
    let _a = Collector::start(
        &format!(
            r#"
extensions:
  health_check: {{ endpoint: "127.0.0.1:{a_health}" }}
  headers_setter:
    headers:
      - {{ key: X-Scope-OrgID, from_context: x-tenant, default_value: anonymous }}
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{a_grpc}", include_metadata: true }} }} }}
exporters:
  otlp_http:
    endpoint: "http://127.0.0.1:{b_http}"
    auth: {{ authenticator: headers_setter }}
service:
  extensions: [health_check, headers_setter]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{}" }} }}
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlp_http] }}
"#,
            free_port()
        ),
        &[],
        Some(a_health),
        None,
    );
    let ep = format!("http://127.0.0.1:{a_grpc}");
    let (ok, r, e) = common::sdk_send_env(
        &ep,
        "grpc",
        "logs",
        2,
        "acme",
        &["--timeout", "3"],
        &[("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme")],
    );
    assert!(ok, "{r} {e}");
    let (ok, r, e) = common::sdk_send(&ep, "grpc", "logs", 2, "none", &["--timeout", "3"]);
    assert!(ok, "{r} {e}");
    wait_until("the logs arrive", Duration::from_secs(10), || {
        sink.store.log_count() >= 4
    });
    let logs = sink.store.logs.lock().unwrap().clone();
    let mut tenants: Vec<(String, String)> = logs
        .iter()
        .flat_map(|r| {
            let run = r
                .resource
                .iter()
                .flat_map(|res| &res.attributes)
                .find(|kv| kv.key == "run.id")
                .map(|kv| common::value_text(&kv.value))
                .unwrap_or_default();
            r.scope_logs
                .iter()
                .flat_map(|s| &s.log_records)
                .flat_map(|l| &l.attributes)
                .filter(|kv| kv.key == "tenant")
                .map(move |kv| (run.clone(), common::value_text(&kv.value)))
        })
        .collect();
    tenants.sort();
    tenants.dedup();
    assert_eq!(
        tenants,
        [
            ("acme".to_string(), "acme".to_string()),
            ("none".to_string(), "anonymous".to_string())
        ]
    );
}

/// `protocol.otlp.auth` on `load_balancing`: every backend's calls carry the credentials.
#[test]
fn load_balancing_backends_authenticate() {
    let sink = Sink::start();
    let (b_grpc, b_health) = (free_port(), free_port());
    let _b = Collector::start(
        &format!(
            r#"
extensions:
  health_check: {{ endpoint: "127.0.0.1:{b_health}" }}
  bearertokenauth: {{ token: {TOKEN} }}
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{b_grpc}", auth: {{ authenticator: bearertokenauth }} }} }} }}
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{}", tls: {{ insecure: true }} }}
service:
  extensions: [health_check, bearertokenauth]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp_grpc] }}
"#,
            sink.port,
            free_port()
        ),
        &[],
        Some(b_health),
        None,
    );
    let (a_grpc, a_health) = (free_port(), free_port());
    let _a = Collector::start(
        &format!(
            r#"
extensions:
  health_check: {{ endpoint: "127.0.0.1:{a_health}" }}
  bearertokenauth/out: {{ token: {TOKEN} }}
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{a_grpc}" }} }} }}
exporters:
  load_balancing:
    protocol:
      otlp:
        tls: {{ insecure: true }}
        auth: {{ authenticator: bearertokenauth/out }}
    resolver:
      static: {{ hostnames: ["127.0.0.1:{b_grpc}"] }}
service:
  extensions: [health_check, bearertokenauth/out]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [load_balancing] }}
"#,
            free_port()
        ),
        &[],
        Some(a_health),
        None,
    );
    let (ok, r, e) = common::sdk_send(
        &format!("http://127.0.0.1:{a_grpc}"),
        "grpc",
        "traces",
        3,
        "lb",
        &["--timeout", "3"],
    );
    assert!(ok, "{r} {e}");
    wait_until(
        "the spans through the balancer",
        Duration::from_secs(10),
        || sink.store.span_count() >= 3,
    );
}
