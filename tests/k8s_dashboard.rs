//! The Kubernetes dashboard (`deploy/kubernetes/monitoring/ferrotel-kubernetes-dashboard.json`)
//! queries only what ferrotel exports: a collector runs `hostmetrics` on this machine,
//! `kubeletstats` against a kubelet stand-in serving the `stats/v1alpha1` fixture, and
//! `k8s_cluster` against an API stand-in (no kubelet or API server runs here), into the
//! `prometheus` exporter with resource attributes as labels, as the gateway's remote write
//! sends them. Every metric a query names must be in the scrape, with every label it groups by.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use common::{Collector, free_port, http_get, wait_until};
use serde_json::{Value, json};

fn json_resp(v: String) -> Response {
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(v))
        .unwrap()
}

fn standins(rt: &tokio::runtime::Runtime, kubelet: u16, api: u16) {
    let summary = include_str!("data/kubelet/summary.json");
    let app = axum::Router::new().route(
        "/stats/summary",
        axum::routing::get(move || async move { json_resp(summary.to_string()) }),
    );
    rt.spawn(async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", kubelet))
            .await
            .unwrap();
        axum::serve(l, app).await.unwrap();
    });
    let handler = |uri: axum::http::Uri| async move {
        let watch = uri.query().unwrap_or("").contains("watch=1");
        if watch {
            return Response::builder()
                .body(Body::from_stream(futures::stream::pending::<
                    Result<axum::body::Bytes, std::io::Error>,
                >()))
                .unwrap();
        }
        let items = match uri.path() {
            "/api/v1/nodes" => vec![
                json!({"metadata": {"name": "node-1", "uid": "n1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}], "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}),
            ],
            "/api/v1/pods" => vec![
                json!({"metadata": {"name": "web-1", "namespace": "shop", "uid": "p1"}, "spec": {"nodeName": "node-1", "containers": [{"name": "web", "image": "shop/web:1"}]}, "status": {"phase": "Running", "containerStatuses": [{"name": "web", "ready": true, "restartCount": 2, "containerID": "containerd://c1", "state": {"running": {}}}]}}),
            ],
            "/apis/apps/v1/deployments" => vec![
                json!({"metadata": {"name": "web", "namespace": "shop", "uid": "d1"}, "spec": {"replicas": 2}, "status": {"availableReplicas": 1}}),
            ],
            _ => vec![],
        };
        json_resp(json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}).to_string())
    };
    rt.spawn(async move {
        let app = axum::Router::new().fallback(handler);
        let l = tokio::net::TcpListener::bind(("127.0.0.1", api))
            .await
            .unwrap();
        axum::serve(l, app).await.unwrap();
    });
}

/// `name{labels} value` lines → name → the label names seen on it.
fn exposition(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, rest) = l
            .split_once('{')
            .unwrap_or((l.split(' ').next().unwrap(), ""));
        let labels = out.entry(name.to_owned()).or_default();
        for kv in rest.split(',') {
            if let Some((k, _)) = kv.split_once('=') {
                labels.insert(k.trim().to_owned());
            }
        }
    }
    out
}

#[test]
fn kubernetes_dashboard_queries_only_exported_metrics_and_labels() {
    let text = std::fs::read_to_string(
        common::repo().join("deploy/kubernetes/monitoring/ferrotel-kubernetes-dashboard.json"),
    )
    .unwrap();
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    // Each query's metric names, and the labels it groups by.
    let ident = regex::Regex::new(r"\b((?:system|k8s|container)_[a-z0-9_]+)\b").unwrap();
    let by = regex::Regex::new(r"by \(([^)]*)\)").unwrap();
    let mut wanted: Vec<(String, Vec<String>)> = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let labels: Vec<String> = by
                .captures_iter(expr)
                .flat_map(|c| {
                    c[1].split(',')
                        .map(|l| l.trim().to_owned())
                        .collect::<Vec<_>>()
                })
                .collect();
            for m in ident.captures_iter(expr) {
                let name = m[1].to_owned();
                // Label names look like metric names here; they are the ones inside `by (...)`.
                if !labels.contains(&name) && !expr.contains(&format!("{name}=")) {
                    wanted.push((name, labels.clone()));
                }
            }
        }
    }
    assert!(wanted.len() >= 15, "{wanted:?}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (kubelet, api) = (free_port(), free_port());
    standins(&rt, kubelet, api);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\ncurrent-context: c\nclusters:\n- name: c\n  cluster: {{server: 'http://127.0.0.1:{api}'}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user: {{token: t}}\n"),
    )
    .unwrap();
    let (prom, metrics) = (free_port(), free_port());
    let config = format!(
        r#"
receivers:
  hostmetrics:
    collection_interval: 300ms
    initial_delay: 0s
    scrapers: {{cpu: , memory: , load: , filesystem: , network: }}
  kubeletstats:
    auth_type: none
    endpoint: http://127.0.0.1:{kubelet}
    collection_interval: 300ms
    initial_delay: 0s
  # As pipelines/cluster.yaml has it.
  k8s_cluster:
    auth_type: kubeConfig
    collection_interval: 300ms
    allocatable_types_to_report: [cpu, memory, pods]
processors:
  resource/node:
    attributes: [{{key: k8s.node.name, value: node-1, action: upsert}}]
exporters:
  prometheus:
    endpoint: 127.0.0.1:{prom}
    resource_to_telemetry_conversion: {{enabled: true}}
service:
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    metrics/host:
      receivers: [hostmetrics]
      processors: [resource/node]
      exporters: [prometheus]
    metrics:
      receivers: [kubeletstats, k8s_cluster]
      exporters: [prometheus]
"#
    );
    let c = Collector::start(
        &config,
        &[("KUBECONFIG", kubeconfig.display().to_string())],
        None,
        Some(metrics),
    );
    let scrape = || {
        http_get(prom, "/metrics")
            .map(|(_, body)| exposition(&body))
            .unwrap_or_default()
    };
    wait_until(
        "every source in the scrape",
        Duration::from_secs(30),
        || {
            let s = scrape();
            [
                "system_cpu_time_seconds_total",
                "k8s_pod_cpu_usage",
                "k8s_pod_phase",
            ]
            .iter()
            .all(|m| s.contains_key(*m))
        },
    );
    let have = scrape();
    let mut missing = Vec::new();
    for (name, labels) in &wanted {
        match have.get(name) {
            None => missing.push(format!("{name} is not exported")),
            Some(seen) => {
                for l in labels {
                    if !seen.contains(l) {
                        missing.push(format!("{name} has no label {l} (it has {seen:?})"));
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{missing:#?}\nexported: {:?}\n{}",
        have.keys().collect::<Vec<_>>(),
        c.logs()
    );
}
