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

/// Resource-level (`service.name`, `service.instance.id`) of every scrape received, in order.
fn scrapes(sink: &Sink) -> Vec<(String, String)> {
    let attr = |r: &opentelemetry_proto::tonic::metrics::v1::ResourceMetrics, k: &str| {
        r.resource
            .as_ref()
            .and_then(|res| res.attributes.iter().find(|kv| kv.key == k))
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default()
    };
    sink.store
        .metrics
        .lock()
        .unwrap()
        .iter()
        .map(|r| (attr(r, "service.name"), attr(r, "service.instance.id")))
        .collect()
}

/// `kubernetes_sd_configs` by watch. No API server runs here, so a stand-in written from the
/// Kubernetes API reference serves the lists (`EndpointSliceList`, `ServiceList`, `PodList`,
/// `NodeList` with a `resourceVersion`) and the watches (`?watch=1`, newline-delimited
/// `WatchEvent`s, held open); the targets behind the objects are real node exporters on
/// 127.0.0.1. Role `endpointslice` joins the service's and the pods' labels and follows the
/// slices as they change (a new slice is scraped, an endpoint that turns not-ready leaves
/// through the `keep` rule) while each collection is listed once; role `node` scrapes the
/// node's kubelet port with `instance` set to the node's name.
#[test]
fn kubernetes_roles_follow_the_api_by_watch() {
    use axum::body::Body;
    use axum::http::Uri;
    use axum::response::Response;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (ne1, ne2, ne3) = (free_port(), free_port(), free_port());
    let _n1 = node_exporter(ne1, None);
    let _n2 = node_exporter(ne2, None);
    let _n3 = node_exporter(ne3, None);
    for p in [ne1, ne2, ne3] {
        wait_until("node exporter up", Duration::from_secs(15), || {
            http_get(p, "/metrics").is_some_and(|(c, _)| c == 200)
        });
    }
    let slice = |name: &str, port: u16, pod: &str, ready: bool| {
        serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "shop", "resourceVersion": "2",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready},
                "targetRef": {"kind": "Pod", "name": pod, "namespace": "shop"}}],
            "ports": [{"name": "metrics", "port": port, "protocol": "TCP"}]
        })
    };
    let pod = |name: &str, port: u16| {
        serde_json::json!({
            "metadata": {"name": name, "namespace": "shop", "uid": name, "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "ne", "image": "node-exporter",
                "ports": [{"name": "metrics", "containerPort": port}]}]},
            "status": {"podIP": "127.0.0.1", "phase": "Running"}
        })
    };
    let list = |kind: &str, items: Vec<serde_json::Value>| {
        serde_json::json!({"kind": format!("{kind}List"), "apiVersion": "v1",
            "metadata": {"resourceVersion": "1"}, "items": items})
        .to_string()
    };
    let lists: Vec<(&'static str, String)> = vec![
        (
            "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices",
            list("EndpointSlice", vec![slice("web-a", ne1, "web-1", true)]),
        ),
        (
            "/api/v1/namespaces/shop/services",
            list(
                "Service",
                vec![
                    serde_json::json!({"metadata": {"name": "web", "namespace": "shop",
                    "labels": {"tier": "front"}}, "spec": {"ports": [{"port": 80}]}}),
                ],
            ),
        ),
        (
            "/api/v1/namespaces/shop/pods",
            list("Pod", vec![pod("web-1", ne1), pod("web-2", ne2)]),
        ),
        (
            "/api/v1/nodes",
            list(
                "Node",
                vec![
                    serde_json::json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/os": "linux"}},
                    "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                        "daemonEndpoints": {"kubeletEndpoint": {"Port": ne3}}}}),
                ],
            ),
        ),
    ];
    let (events, _) = tokio::sync::broadcast::channel::<String>(16);
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let api = free_port();
    {
        let (events, requests) = (events.clone(), requests.clone());
        let lists = Arc::new(lists);
        let handler = move |uri: Uri| {
            let (events, requests, lists) = (events.clone(), requests.clone(), lists.clone());
            async move {
                requests.lock().unwrap().push(uri.to_string());
                let watch = uri.query().unwrap_or("").contains("watch=1");
                let Some((path, body)) = lists.iter().find(|(p, _)| *p == uri.path()) else {
                    return Response::builder().status(404).body(Body::empty()).unwrap();
                };
                if !watch {
                    return Response::builder()
                        .header("content-type", "application/json")
                        .body(Body::from(body.clone()))
                        .unwrap();
                }
                // The slices' watch streams what the test sends; the others stay quiet.
                let rx = path.ends_with("endpointslices").then(|| events.subscribe());
                let stream = futures::stream::unfold(rx, |rx| async move {
                    let mut rx = rx?;
                    loop {
                        match rx.recv().await {
                            Ok(line) => {
                                return Some((
                                    Ok::<_, std::io::Error>(axum::body::Bytes::from(line + "\n")),
                                    Some(rx),
                                ));
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(_) => return None,
                        }
                    }
                });
                let quiet = futures::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
                let body = if path.ends_with("endpointslices") {
                    Body::from_stream(stream)
                } else {
                    Body::from_stream(quiet)
                };
                Response::builder()
                    .header("content-type", "application/json")
                    .body(body)
                    .unwrap()
            }
        };
        rt.spawn(async move {
            let app = axum::Router::new().fallback(handler);
            let l = tokio::net::TcpListener::bind(("127.0.0.1", api))
                .await
                .unwrap();
            axum::serve(l, app).await.unwrap();
        });
    }
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
        - job_name: slices
          scrape_interval: 300ms
          scrape_timeout: 300ms
          kubernetes_sd_configs:
            - role: endpointslice
              api_server: http://127.0.0.1:{api}
              namespaces: {{names: [shop]}}
              selectors: [{{role: pod, label: "app=web"}}]
          relabel_configs:
            - source_labels: [__meta_kubernetes_endpointslice_endpoint_conditions_ready]
              regex: "true"
              action: keep
            - source_labels: [__meta_kubernetes_service_label_tier]
              target_label: tier
            - source_labels: [__meta_kubernetes_pod_name]
              target_label: pod
        - job_name: nodes
          scrape_interval: 300ms
          scrape_timeout: 300ms
          kubernetes_sd_configs: [{{role: node, api_server: "http://127.0.0.1:{api}"}}]
          relabel_configs:
            - action: labelmap
              regex: __meta_kubernetes_node_label_(.+)
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
        sink = sink.port,
    );
    let c = Collector::start(&cfg, &[], Some(health), Some(metrics));
    let (i1, i2) = (format!("127.0.0.1:{ne1}"), format!("127.0.0.1:{ne2}"));
    let seen = |job: &str, inst: &str| {
        scrapes(&sink)
            .iter()
            .filter(|(j, i)| j == job && i == inst)
            .count()
    };
    wait_until(
        "the first slice's pod and the node",
        Duration::from_secs(20),
        || seen("slices", &i1) > 0 && seen("nodes", "n1") > 0,
    );
    assert_eq!(
        point_label(&sink, "slices", "up", "pod").as_deref(),
        Some("web-1")
    );
    assert_eq!(
        point_label(&sink, "slices", "up", "tier").as_deref(),
        Some("front")
    );
    assert_eq!(
        point_label(&sink, "nodes", "up", "kubernetes_io_os").as_deref(),
        Some("linux")
    );
    assert_eq!(seen("slices", &i2), 0, "web-2 has no slice yet");

    // A second slice arrives by watch: its pod is scraped.
    let send = |kind: &str, obj: serde_json::Value| {
        events
            .send(serde_json::json!({"type": kind, "object": obj}).to_string())
            .expect("the collector watches the slices");
    };
    send("ADDED", slice("web-b", ne2, "web-2", true));
    wait_until("the new slice's pod", Duration::from_secs(10), || {
        seen("slices", &i2) > 0
    });
    // web-1 turns not ready: the keep rule drops it and its scrapes stop.
    send("MODIFIED", slice("web-a", ne1, "web-1", false));
    std::thread::sleep(Duration::from_secs(2));
    let after = seen("slices", &i1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(seen("slices", &i1), after, "web-1 is still scraped");
    let before = seen("slices", &i2);
    wait_until("web-2 still scraped", Duration::from_secs(5), || {
        seen("slices", &i2) > before
    });

    // Each collection was listed once, then watched; the pod selector reached the API.
    let reqs = requests.lock().unwrap().clone();
    let lists_of = |path: &str| {
        reqs.iter()
            .filter(|r| r.starts_with(path) && !r.contains("watch=1"))
            .count()
    };
    assert_eq!(
        lists_of("/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices"),
        1,
        "{reqs:#?}"
    );
    assert_eq!(lists_of("/api/v1/nodes"), 1, "{reqs:#?}");
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("/api/v1/namespaces/shop/pods")
                && r.contains("labelSelector=app%3Dweb")),
        "{reqs:#?}"
    );
    assert!(
        reqs.iter()
            .any(|r| r.contains("endpointslices") && r.contains("watch=1"))
    );
    drop(c);
}

/// `dns_sd_configs` SRV records (Prometheus's default type) from a real DNS server: Debian's
/// dnsmasq on 127.0.0.1 serves two SRV records whose targets are node exporters; the
/// collector asks it (`FERROTEL_DNS_SERVERS`) and scrapes both, with the record's labels.
#[test]
fn dns_sd_srv_records_from_a_real_dns_server() {
    let (ne1, ne2, dns) = (free_port(), free_port(), free_port());
    let _n1 = node_exporter(ne1, None);
    let _n2 = node_exporter(ne2, None);
    let bin = ["/usr/sbin/dnsmasq", "dnsmasq"]
        .into_iter()
        .find(|b| std::path::Path::new(b).exists() || *b == "dnsmasq")
        .unwrap();
    let _dnsmasq = Proc(
        Command::new(bin)
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--pid-file=",
                &format!("--port={dns}"),
                &format!("--srv-host=_metrics._tcp.ferrotel.test,localhost,{ne1},0,10"),
                &format!("--srv-host=_metrics._tcp.ferrotel.test,localhost,{ne2},1,10"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq is installed (scripts/test.sh installs dnsmasq-base)"),
    );
    for p in [ne1, ne2] {
        wait_until("node exporter up", Duration::from_secs(15), || {
            http_get(p, "/metrics").is_some_and(|(c, _)| c == 200)
        });
    }
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
        - job_name: srv
          scrape_interval: 300ms
          scrape_timeout: 300ms
          dns_sd_configs:
            - names: [_metrics._tcp.ferrotel.test]
              refresh_interval: 1s
          relabel_configs:
            - source_labels: [__meta_dns_srv_record_target]
              target_label: srv_target
            - source_labels: [__meta_dns_name]
              target_label: dns_name
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
        sink = sink.port,
    );
    let _c = Collector::start(
        &cfg,
        &[("FERROTEL_DNS_SERVERS", format!("127.0.0.1:{dns}"))],
        Some(health),
        Some(metrics),
    );
    let (i1, i2) = (format!("localhost:{ne1}"), format!("localhost:{ne2}"));
    wait_until("both SRV targets scraped", Duration::from_secs(20), || {
        let s = scrapes(&sink);
        [&i1, &i2]
            .iter()
            .all(|i| s.iter().any(|(j, inst)| j == "srv" && inst == *i))
    });
    assert_eq!(
        point_label(&sink, "srv", "up", "srv_target").as_deref(),
        Some("localhost.")
    );
    assert_eq!(
        point_label(&sink, "srv", "up", "dns_name").as_deref(),
        Some("_metrics._tcp.ferrotel.test")
    );
    assert_eq!(up_by_job(&sink).get("srv"), Some(&1.0));
}
