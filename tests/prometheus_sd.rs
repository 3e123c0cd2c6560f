//! The `prometheus` receiver's client settings and discovery with real peers where they run here:
//! Debian's `prometheus-node-exporter` serving TLS with basic auth (its `--web.config.file`,
//! bcrypt-hashed password) and a plain one found through `file_sd_configs` (a real file),
//! `dns_sd_configs` (`localhost`, as this machine resolves it) and `http_sd_configs`. Where no
//! real peer runs here, stand-ins written from the published protocols: an HTTP SD endpoint in
//! Prometheus's documented JSON, the OpenTelemetry Operator's target allocator
//! (`/scrape_configs`, `/jobs/<job>/targets?collector_id=`), an OAuth 2.0 token endpoint
//! (RFC 6749 §4.4 client credentials) and a target that requires a bearer token.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::sink::Sink;
use common::{Collector, free_port, http_get, wait_until};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node_exporter(port: u16, web_config: Option<&std::path::Path>) -> Proc {
    let mut c = Command::new("prometheus-node-exporter");
    c.arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // Few collectors: a scrape stays small and fast.
        .args(["--collector.disable-defaults", "--collector.loadavg"]);
    if let Some(w) = web_config {
        c.arg(format!("--web.config.file={}", w.display()));
    }
    Proc(
        c.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-node-exporter is installed (scripts/test.sh installs it)"),
    )
}

/// What the stand-ins saw.
#[derive(Default)]
struct Seen {
    token_requests: Vec<(Option<String>, String)>,
    protected: Vec<Option<String>>,
    ta: Vec<String>,
}

const METRICS: &str = "# TYPE standin_up gauge\nstandin_up 1\n";

fn start_standins(rt: &tokio::runtime::Runtime, port: u16, plain_ne: u16) -> Arc<Mutex<Seen>> {
    use axum::body::Body;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::Response;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let st = seen.clone();
    let handler = move |uri: Uri, headers: HeaderMap, body: String| {
        let st = st.clone();
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let ok = |ct: &str, b: String| {
                Response::builder()
                    .header("content-type", ct)
                    .body(Body::from(b))
                    .unwrap()
            };
            let status = |s: StatusCode| Response::builder().status(s).body(Body::empty()).unwrap();
            match uri.path() {
                // Prometheus's HTTP SD: a JSON list of target groups.
                "/sd" => ok(
                    "application/json",
                    serde_json::json!([{"targets": [format!("127.0.0.1:{plain_ne}")], "labels": {"source": "http"}}]).to_string(),
                ),
                // The target allocator: jobs, then each job's targets for a collector.
                "/ta/scrape_configs" => {
                    st.lock().unwrap().ta.push(uri.to_string());
                    ok(
                        "application/json",
                        serde_json::json!({"ta job": {
                            "job_name": "ta job", "scrape_interval": "1s", "scrape_timeout": "1s",
                            "metrics_path": "/metrics", "scheme": "http",
                            "track_timestamps_staleness": false, "enable_compression": true,
                            "metric_relabel_configs": [{"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"}]
                        }})
                        .to_string(),
                    )
                }
                "/ta/jobs/ta+job/targets" => {
                    st.lock().unwrap().ta.push(uri.to_string());
                    if uri.query() != Some("collector_id=collector-7") {
                        return status(StatusCode::BAD_REQUEST);
                    }
                    ok(
                        "application/json",
                        serde_json::json!([{"targets": [format!("127.0.0.1:{plain_ne}")], "labels": {"source": "ta"}}]).to_string(),
                    )
                }
                "/token" => {
                    st.lock().unwrap().token_requests.push((auth.clone(), body.clone()));
                    // client_id:client_secret, RFC 6749 §2.3.1.
                    let want = format!(
                        "Basic {}",
                        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "scraper-id:scraper-secret")
                    );
                    if auth.as_deref() != Some(&want)
                        || !body.contains("grant_type=client_credentials")
                        || !body.contains("scope=metrics+read")
                        || !body.contains("audience=prometheus")
                    {
                        return status(StatusCode::UNAUTHORIZED);
                    }
                    ok(
                        "application/json",
                        r#"{"access_token":"oauth-token-1","token_type":"Bearer","expires_in":3600}"#.into(),
                    )
                }
                "/bearer-metrics" | "/oauth-metrics" => {
                    st.lock().unwrap().protected.push(auth.clone());
                    let want = if uri.path() == "/bearer-metrics" {
                        "Bearer file-token"
                    } else {
                        "Bearer oauth-token-1"
                    };
                    if auth.as_deref() == Some(want) {
                        ok("text/plain; version=0.0.4", METRICS.into())
                    } else {
                        status(StatusCode::UNAUTHORIZED)
                    }
                }
                _ => status(StatusCode::NOT_FOUND),
            }
        }
    };
    rt.spawn(async move {
        let app = axum::Router::new().fallback(handler);
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(l, app).await.unwrap();
    });
    seen
}

/// `up` of each job (`service.name`) in the newest scrape seen.
fn up_by_job(sink: &Sink) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for r in sink.store.metrics.lock().unwrap().iter() {
        let job = r
            .resource
            .as_ref()
            .and_then(|res| res.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for m in r.scope_metrics.iter().flat_map(|s| &s.metrics) {
            if m.name == "up"
                && let Some(metric::Data::Gauge(g)) = &m.data
                && let Some(number_data_point::Value::AsDouble(v)) = g.data_points[0].value
            {
                out.insert(job.clone(), v);
            }
        }
    }
    out
}

/// Attribute `k` of any data point of metric `name` scraped by `job`.
fn point_label(sink: &Sink, job: &str, name: &str, k: &str) -> Option<String> {
    for r in sink.store.metrics.lock().unwrap().iter() {
        let is_job = r.resource.as_ref().is_some_and(|res| {
            res.attributes.iter().any(|kv| {
                kv.key == "service.name"
                    && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()), Some(any_value::Value::StringValue(s)) if s == job)
            })
        });
        if !is_job {
            continue;
        }
        for m in r.scope_metrics.iter().flat_map(|s| &s.metrics) {
            if m.name != name {
                continue;
            }
            let attrs = match &m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.first().map(|p| &p.attributes),
                _ => None,
            };
            if let Some(v) = attrs.and_then(|a| a.iter().find(|kv| kv.key == k))
                && let Some(any_value::Value::StringValue(s)) =
                    v.value.as_ref().and_then(|v| v.value.as_ref())
            {
                return Some(s.clone());
            }
        }
    }
    None
}

#[test]
fn auth_tls_oauth2_and_file_http_dns_and_target_allocator_discovery() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    // A CA and a server certificate for 127.0.0.1.
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "scrape CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "node exporter");
    let leaf_key = KeyPair::generate().unwrap();
    let cert = w("ne.pem", &leaf.signed_by(&leaf_key, &issuer).unwrap().pem());
    let key = w("ne-key.pem", &leaf_key.serialize_pem());
    let ca = w("ca.pem", &ca_pem);
    // node exporter's web config: TLS and basic auth (bcrypt of "s3cret", cost 4).
    let web = w(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  scraper: $2b$04$5KswGcHNUyOyVByagBECPuTfIXpYu1NLEGkBa8LHFxiYBJ124XYW2\n",
            cert.display(),
            key.display()
        ),
    );
    let (secure, plain) = (free_port(), free_port());
    let _ne_secure = node_exporter(secure, Some(&web));
    let _ne_plain = node_exporter(plain, None);
    wait_until("the plain node exporter", Duration::from_secs(15), || {
        http_get(plain, "/metrics").is_some_and(|(c, _)| c == 200)
    });
    let standin = free_port();
    let seen = start_standins(&rt, standin, plain);
    w(
        "targets.json",
        &format!(r#"[{{"targets": ["127.0.0.1:{plain}"], "labels": {{"source": "file"}}}}]"#),
    );
    let password = w("password", "s3cret\n");
    let token = w("token", "file-token\n");
    let secret = w("client-secret", "scraper-secret");
    w(
        "more-jobs.yml",
        &format!(
            "scrape_configs:\n  - job_name: from-file\n    scrape_interval: 1s\n    static_configs: [{{targets: ['127.0.0.1:{plain}']}}]\n"
        ),
    );
    let sink = Sink::start();
    let (health, metrics) = (free_port(), free_port());
    let d = dir.path().display();
    let cfg = format!(
        r#"
extensions:
  health_check: {{endpoint: "127.0.0.1:{health}"}}
receivers:
  prometheus:
    target_allocator:
      endpoint: http://127.0.0.1:{standin}/ta
      interval: 1s
      collector_id: collector-7
      http_sd_config: {{refresh_interval: 1s}}
    config:
      global: {{scrape_interval: 1s, scrape_timeout: 1s}}
      scrape_config_files: ["{d}/more-*.yml"]
      scrape_configs:
        - job_name: basic-tls
          scheme: https
          tls_config: {{ca_file: "{ca}"}}
          basic_auth: {{username: scraper, password_file: "{password}"}}
          static_configs: [{{targets: ['127.0.0.1:{secure}']}}]
        - job_name: basic-wrong
          scheme: https
          tls_config: {{ca_file: "{ca}"}}
          basic_auth: {{username: scraper, password: wrong}}
          static_configs: [{{targets: ['127.0.0.1:{secure}']}}]
        - job_name: untrusted-tls
          scheme: https
          basic_auth: {{username: scraper, password: s3cret}}
          static_configs: [{{targets: ['127.0.0.1:{secure}']}}]
        - job_name: bearer
          metrics_path: /bearer-metrics
          authorization: {{credentials_file: "{token}"}}
          static_configs: [{{targets: ['127.0.0.1:{standin}']}}]
        - job_name: oauth
          metrics_path: /oauth-metrics
          oauth2:
            client_id: scraper-id
            client_secret_file: "{secret}"
            token_url: http://127.0.0.1:{standin}/token
            scopes: [metrics, read]
            endpoint_params: {{audience: prometheus}}
          static_configs: [{{targets: ['127.0.0.1:{standin}']}}]
        - job_name: file
          file_sd_configs: [{{files: ["{d}/*.json"], refresh_interval: 1s}}]
        - job_name: http
          http_sd_configs: [{{url: "http://127.0.0.1:{standin}/sd", refresh_interval: 1s}}]
        - job_name: dns
          dns_sd_configs: [{{names: [localhost], type: A, port: {plain}, refresh_interval: 1s}}]
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{metrics}"}}}}
  pipelines:
    metrics:
      receivers: [prometheus]
      exporters: [otlp]
"#,
        ca = ca.display(),
        password = password.display(),
        token = token.display(),
        secret = secret.display(),
        sink = sink.port,
    );
    let c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let want_up = [
        "basic-tls",
        "bearer",
        "oauth",
        "file",
        "http",
        "dns",
        "ta job",
        "from-file",
    ];
    wait_until("every job scraped", Duration::from_secs(30), || {
        let up = up_by_job(&sink);
        want_up.iter().all(|j| up.get(*j) == Some(&1.0))
            && up.contains_key("basic-wrong")
            && up.contains_key("untrusted-tls")
    });
    let up = up_by_job(&sink);
    assert_eq!(
        up["basic-wrong"], 0.0,
        "a wrong password is refused: {up:?}"
    );
    assert_eq!(
        up["untrusted-tls"], 0.0,
        "a certificate from an unknown CA: {up:?}"
    );
    // The node exporter's own metrics came through TLS and basic auth.
    assert!(
        sink.store
            .metrics
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .any(|m| m.name == "node_load1"),
        "node_load1 from the node exporter"
    );
    // Discovery labels reach the samples as target labels.
    for (job, source) in [("file", "file"), ("http", "http"), ("ta job", "ta")] {
        assert_eq!(
            point_label(&sink, job, "node_load1", "source").as_deref(),
            Some(source),
            "{job}"
        );
    }
    let s = seen.lock().unwrap();
    assert!(
        s.protected
            .iter()
            .any(|a| a.as_deref() == Some("Bearer file-token"))
    );
    assert!(
        s.protected
            .iter()
            .any(|a| a.as_deref() == Some("Bearer oauth-token-1"))
    );
    assert_eq!(
        s.token_requests.len(),
        1,
        "the token is kept until it expires: {:?}",
        s.token_requests
    );
    assert!(s.ta.iter().any(|u| u.contains("collector_id=collector-7")));
    drop(s);
    drop(c);
}

/// Staleness markers: a series a target stops exposing, and every series of a target that
/// leaves discovery (its `file_sd` file rewritten), get a point with no recorded value
/// (`FLAG_NO_RECORDED_VALUE`), as Prometheus's stale markers do. The target is a stand-in
/// serving the text format; the discovery file is real.
#[test]
fn series_and_targets_that_disappear_get_staleness_markers() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let port = free_port();
    let scrapes = Arc::new(AtomicUsize::new(0));
    let n = scrapes.clone();
    rt.spawn(async move {
        let app = axum::Router::new().fallback(move || {
            let n = n.clone();
            async move {
                // `room_b` is there for the first two scrapes only.
                let k = n.fetch_add(1, Ordering::SeqCst);
                let mut body = "# TYPE temp gauge\ntemp{room=\"a\"} 21\n".to_string();
                if k < 2 {
                    body.push_str("temp{room=\"b\"} 19\n");
                }
                body
            }
        });
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(l, app).await.unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let targets = dir.path().join("targets.json");
    std::fs::write(
        &targets,
        format!(r#"[{{"targets": ["127.0.0.1:{port}"]}}]"#),
    )
    .unwrap();
    let sink = Sink::start();
    let (health, metrics) = (free_port(), free_port());
    let cfg = format!(
        r#"
extensions:
  health_check: {{endpoint: "127.0.0.1:{health}"}}
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: rooms
          scrape_interval: 300ms
          scrape_timeout: 300ms
          file_sd_configs: [{{files: ["{t}"], refresh_interval: 300ms}}]
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{metrics}"}}}}
  pipelines:
    metrics: {{receivers: [prometheus], exporters: [otlp]}}
"#,
        t = targets.display(),
        sink = sink.port,
    );
    let _c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    // (room, flags) of every `temp` point received, in order.
    let temps = || -> Vec<(String, u32)> {
        let mut out = Vec::new();
        for r in sink.store.metrics.lock().unwrap().iter() {
            for m in r.scope_metrics.iter().flat_map(|s| &s.metrics) {
                if m.name != "temp" {
                    continue;
                }
                if let Some(metric::Data::Gauge(g)) = &m.data {
                    for p in &g.data_points {
                        let room = p
                            .attributes
                            .iter()
                            .find(|kv| kv.key == "room")
                            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                                any_value::Value::StringValue(s) => Some(s.clone()),
                                _ => None,
                            })
                            .unwrap_or_default();
                        out.push((room, p.flags));
                    }
                }
            }
        }
        out
    };
    wait_until("room b's marker", Duration::from_secs(15), || {
        temps().iter().any(|(r, f)| r == "b" && *f == 1)
    });
    std::fs::write(&targets, "[]").unwrap();
    wait_until("the target's markers", Duration::from_secs(15), || {
        temps().iter().any(|(r, f)| r == "a" && *f == 1)
    });
    let t = temps();
    assert_eq!(
        t.iter().filter(|(r, f)| r == "b" && *f == 1).count(),
        1,
        "one marker for b: {t:?}"
    );
    let a_marker = t.iter().position(|(r, f)| r == "a" && *f == 1).unwrap();
    assert!(
        t[a_marker + 1..].iter().all(|(r, _)| r != "a"),
        "nothing of the removed target after its marker: {t:?}"
    );
}
