//! `kubeletstats` end to end. A kubelet cannot run here, so each test serves a strict stand-in
//! written from the kubelet's published interface: `GET /stats/summary` answering the
//! `stats/v1alpha1` Summary and `GET /pods` a `core/v1` PodList (the files under
//! `tests/data/kubelet/`), over HTTPS with a bearer token (serviceAccount) or a client
//! certificate (tls), over plain HTTP on the read-only port (none), and through the API
//! server's node proxy `/api/v1/nodes/<node>/proxy/...` (kubeConfig). Requests without the
//! right credentials get 401 (or no TLS session), as the kubelet answers them.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use common::https::{pki, serve_https};
use common::sink::Sink;
use common::{Collector, free_port, wait_until};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric::Data, number_data_point};

const SUMMARY: &str = include_str!("data/kubelet/summary.json");
const PODS: &str = include_str!("data/kubelet/pods.json");

/// The fixture Summary as the kubelet of `node` serves it.
fn summary_of(node: &str) -> String {
    SUMMARY.replacen(
        "\"nodeName\": \"node-1\"",
        &format!("\"nodeName\": \"{node}\""),
        1,
    )
}

fn bearer(h: &HeaderMap) -> Option<String> {
    h.get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

fn json(body: String) -> axum::response::Response {
    ([("content-type", "application/json")], body).into_response()
}

fn serve_http(rt: &tokio::runtime::Runtime, port: u16, app: axum::Router) {
    rt.spawn(async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(l, app).await.unwrap();
    });
}

fn attrs(rm: &ResourceMetrics) -> BTreeMap<String, String> {
    rm.resource
        .as_ref()
        .map(|r| {
            r.attributes
                .iter()
                .map(|kv| (kv.key.clone(), common::value_text(&kv.value)))
                .collect()
        })
        .unwrap_or_default()
}

/// The latest value of `metric` on the resource whose attributes include `with`.
fn latest(sink: &Sink, with: &[(&str, &str)], metric: &str) -> Option<f64> {
    let all = sink.store.metrics.lock().unwrap();
    all.iter()
        .rev()
        .filter(|rm| {
            let a = attrs(rm);
            with.iter()
                .all(|(k, v)| a.get(*k).map(String::as_str) == Some(*v))
        })
        .flat_map(|rm| rm.scope_metrics.iter().flat_map(|s| s.metrics.iter()))
        .find(|m| m.name == metric)
        .and_then(|m| {
            let p = match m.data.as_ref()? {
                Data::Gauge(g) => g.data_points.first()?,
                Data::Sum(s) => s.data_points.first()?,
                _ => return None,
            };
            Some(match p.value? {
                number_data_point::Value::AsDouble(d) => d,
                number_data_point::Value::AsInt(i) => i as f64,
            })
        })
}

#[derive(Default)]
struct Seen {
    /// Requests answered 200, by stand-in and path.
    ok: Mutex<BTreeMap<String, usize>>,
    unauthorized: AtomicUsize,
}

impl Seen {
    fn ok(&self, what: &str) {
        *self.ok.lock().unwrap().entry(what.into()).or_default() += 1;
    }

    fn count(&self, what: &str) -> usize {
        self.ok.lock().unwrap().get(what).copied().unwrap_or(0)
    }
}

#[test]
fn every_auth_type_reaches_its_kubelet_and_the_metrics_are_the_collectors() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(sa.join("token"), "sa-token-1\n").unwrap();
    std::fs::write(sa.join("ca.crt"), &pki.ca).unwrap();
    std::fs::write(sa.join("namespace"), "observability").unwrap();
    let client_cert = dir.path().join("client.crt");
    let client_key = dir.path().join("client.key");
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&client_cert, &pki.client_cert).unwrap();
    std::fs::write(&client_key, &pki.client_key).unwrap();
    std::fs::write(&ca_file, &pki.ca).unwrap();
    let seen = Arc::new(Seen::default());
    // The token the serviceAccount kubelet accepts; it is rotated during the test.
    let sa_token = Arc::new(Mutex::new("sa-token-1".to_string()));

    // serviceAccount: HTTPS signed by the cluster CA, bearer token required.
    let sa_port = free_port();
    {
        let (s1, s2, t1, t2) = (
            seen.clone(),
            seen.clone(),
            sa_token.clone(),
            sa_token.clone(),
        );
        let app = axum::Router::new()
            .route(
                "/stats/summary",
                get(move |h: HeaderMap| async move {
                    if bearer(&h).as_deref() != Some(t1.lock().unwrap().as_str()) {
                        s1.unauthorized.fetch_add(1, Ordering::SeqCst);
                        return StatusCode::UNAUTHORIZED.into_response();
                    }
                    s1.ok(&format!("sa summary {}", bearer(&h).unwrap()));
                    json(summary_of("node-sa"))
                }),
            )
            .route(
                "/pods",
                get(move |h: HeaderMap| async move {
                    if bearer(&h).as_deref() != Some(t2.lock().unwrap().as_str()) {
                        return StatusCode::UNAUTHORIZED.into_response();
                    }
                    s2.ok("sa pods");
                    json(PODS.to_string())
                }),
            );
        serve_https(&rt, sa_port, &pki, false, app);
    }

    // tls: HTTPS that only a client certificate signed by the cluster CA gets into.
    let tls_port = free_port();
    {
        let s = seen.clone();
        let app = axum::Router::new().route(
            "/stats/summary",
            get(move || async move {
                s.ok("tls summary");
                json(summary_of("node-tls"))
            }),
        );
        serve_https(&rt, tls_port, &pki, true, app);
    }

    // kubeConfig: the API server, proxying to the node's kubelet, and serving the node object
    // the serviceAccount receiver reads the capacity of.
    let api_port = free_port();
    {
        let (s1, s2) = (seen.clone(), seen.clone());
        let app = axum::Router::new()
            .route(
                "/api/v1/nodes/node-kc/proxy/stats/summary",
                get(move |h: HeaderMap| async move {
                    if bearer(&h).as_deref() != Some("kc-token") {
                        return StatusCode::UNAUTHORIZED.into_response();
                    }
                    s1.ok("kc summary");
                    json(summary_of("node-kc"))
                }),
            )
            .route(
                "/api/v1/nodes/node-sa",
                get(move |h: HeaderMap| async move {
                    if bearer(&h).as_deref() != Some("kc-token") {
                        return StatusCode::UNAUTHORIZED.into_response();
                    }
                    s2.ok("node");
                    json(
                        serde_json::json!({
                            "kind": "Node", "apiVersion": "v1",
                            "metadata": {"name": "node-sa", "resourceVersion": "77"},
                            "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                                       "allocatable": {"cpu": "3800m", "memory": "7Gi", "pods": "110"}}
                        })
                        .to_string(),
                    )
                }),
            );
        serve_http(&rt, api_port, app);
    }
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: test\n  cluster: {{server: 'http://127.0.0.1:{api_port}'}}\ncontexts:\n- name: test\n  context: {{cluster: test, user: test}}\nusers:\n- name: test\n  user: {{token: kc-token}}\n"
        ),
    )
    .unwrap();

    // none: the read-only port, down for its first three requests.
    let ro_port = free_port();
    {
        let s = seen.clone();
        let calls = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().route(
            "/stats/summary",
            get(move || async move {
                if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                s.ok("ro summary");
                json(summary_of("node-ro"))
            }),
        );
        serve_http(&rt, ro_port, app);
    }

    let sink = Sink::start();
    let metrics_port = free_port();
    let config = format!(
        r#"
receivers:
  kubeletstats/sa:
    auth_type: serviceAccount
    endpoint: https://127.0.0.1:{sa_port}
    collection_interval: 300ms
    initial_delay: 0s
    node: node-sa
    extra_metadata_labels: [container.id, k8s.volume.type]
    metric_groups: [node, pod, container, volume]
    k8s_api_config:
      auth_type: kubeConfig
    metrics:
      k8s.container.memory_limit_utilization: {{enabled: true}}
      k8s.pod.memory.node.utilization: {{enabled: true}}
  kubelet_stats/tls:
    auth_type: tls
    endpoint: 127.0.0.1:{tls_port}
    ca_file: {ca}
    cert_file: {cert}
    key_file: {key}
    collection_interval: 300ms
    initial_delay: 0s
    metric_groups: [node]
  kubeletstats/kc:
    auth_type: kubeConfig
    endpoint: node-kc
    collection_interval: 300ms
    initial_delay: 0s
    metric_groups: [node]
  kubeletstats/ro:
    auth_type: none
    endpoint: 127.0.0.1:{ro_port}
    collection_interval: 300ms
    initial_delay: 0s
    metric_groups: [node]
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics_port}
  pipelines:
    metrics:
      receivers: [kubeletstats/sa, kubelet_stats/tls, kubeletstats/kc, kubeletstats/ro]
      exporters: [otlp]
"#,
        sink = sink.port,
        ca = ca_file.display(),
        cert = client_cert.display(),
        key = client_key.display(),
    );
    let c = Collector::start(
        &config,
        &[
            ("FERROTEL_SERVICE_ACCOUNT_DIR", sa.display().to_string()),
            ("KUBECONFIG", kubeconfig.display().to_string()),
        ],
        None,
        Some(metrics_port),
    );

    for node in ["node-sa", "node-tls", "node-kc", "node-ro"] {
        wait_until(
            &format!("{node}'s metrics"),
            Duration::from_secs(20),
            || latest(&sink, &[("k8s.node.name", node)], "k8s.node.cpu.time").is_some(),
        );
    }
    let logs = c.logs();
    for node in ["node-sa", "node-tls", "node-kc", "node-ro"] {
        let n = &[("k8s.node.name", node)];
        assert_eq!(
            latest(&sink, n, "k8s.node.cpu.time"),
            Some(81234.0),
            "{logs}"
        );
        assert_eq!(latest(&sink, n, "k8s.node.memory.available"), Some(6e9));
        assert_eq!(latest(&sink, n, "k8s.node.filesystem.capacity"), Some(1e11));
    }
    // The serviceAccount receiver's pod, container and volume resources, labelled from /pods
    // and measured against the node's capacity from the API server.
    wait_until(
        "utilization against the node",
        Duration::from_secs(20),
        || {
            latest(
                &sink,
                &[("k8s.pod.name", "web-7d4b9c-x2x9z")],
                "k8s.pod.memory.node.utilization",
            )
            .is_some()
        },
    );
    let pod = &[
        ("k8s.pod.name", "web-7d4b9c-x2x9z"),
        ("k8s.namespace.name", "shop"),
    ];
    assert_eq!(
        latest(&sink, pod, "k8s.pod.memory.node.utilization"),
        Some(335544320.0 / (8.0 * 1024.0 * 1024.0 * 1024.0))
    );
    assert_eq!(latest(&sink, pod, "k8s.pod.cpu.usage"), Some(0.3));
    let web = &[("k8s.container.name", "web"), ("container.id", "c0ffee01")];
    assert_eq!(
        latest(&sink, web, "container.memory.working_set"),
        Some(2e8)
    );
    assert_eq!(
        latest(&sink, web, "k8s.container.memory_limit_utilization"),
        Some(0.5)
    );
    let data = &[
        ("k8s.volume.name", "data"),
        ("k8s.volume.type", "persistentVolumeClaim"),
        ("k8s.persistentvolumeclaim.name", "data-web-0"),
    ];
    assert_eq!(latest(&sink, data, "k8s.volume.available"), Some(7e9));
    assert!(seen.count("sa pods") > 0 && seen.count("node") > 0);

    // The service account's token is rotated: the next scrapes carry the new one.
    *sa_token.lock().unwrap() = "sa-token-2".into();
    std::fs::write(sa.join("token"), "sa-token-2\n").unwrap();
    wait_until(
        "a scrape with the rotated token",
        Duration::from_secs(20),
        || seen.count("sa summary sa-token-2") > 0,
    );

    // The read-only kubelet's first answers were 503: each counted, then data flowed.
    let failures = c.metric(
        "ferrotel_receiver_source_errors_total{receiver=\"kubeletstats/ro\",source=\"/stats/summary\"}",
    );
    assert_eq!(failures, 3.0, "{}", c.self_metrics());
    assert!(seen.count("ro summary") > 0);
}

#[test]
fn an_unauthorized_or_unreachable_kubelet_is_counted_and_named_in_the_log() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let app = axum::Router::new().route(
        "/stats/summary",
        get(|| async { (StatusCode::UNAUTHORIZED, "Unauthorized").into_response() }),
    );
    serve_http(&rt, port, app);
    let down = free_port();
    let sink = Sink::start();
    let metrics_port = free_port();
    let config = format!(
        r#"
receivers:
  kubeletstats/denied:
    auth_type: none
    endpoint: http://127.0.0.1:{port}
    collection_interval: 200ms
    initial_delay: 0s
  kubeletstats/down:
    auth_type: none
    endpoint: http://127.0.0.1:{down}
    collection_interval: 200ms
    initial_delay: 0s
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics_port}
  pipelines:
    metrics:
      receivers: [kubeletstats/denied, kubeletstats/down]
      exporters: [otlp]
"#,
        sink = sink.port
    );
    let c = Collector::start(&config, &[], None, Some(metrics_port));
    let series = |r: &str| {
        format!(
            "ferrotel_receiver_source_errors_total{{receiver=\"kubeletstats/{r}\",source=\"/stats/summary\"}}"
        )
    };
    wait_until("both failures counted", Duration::from_secs(20), || {
        let m = c.self_metrics();
        common::parse_metric(&m, &series("denied")) >= 2.0
            && common::parse_metric(&m, &series("down")) >= 2.0
    });
    let logs = c.logs();
    // Said once per kind of failure, with the status and the kubelet's answer.
    assert_eq!(
        logs.matches("401 Unauthorized: Unauthorized").count(),
        1,
        "{logs}"
    );
    assert!(logs.contains(&format!("127.0.0.1:{down}")), "{logs}");
    assert!(sink.store.metrics.lock().unwrap().is_empty());
}
