//! `k8s_cluster` end to end. No API server runs here, so the test serves a strict stand-in
//! written from the Kubernetes API reference: `NodeList`, `PodList`, `DeploymentList` and the
//! other kinds' lists with resource versions, and watch streams of `WatchEvent`s (`ADDED`,
//! `DELETED`, a dropped stream, an `ERROR` Status 410 that must cause a relist). A bearer
//! token is required. A second receiver points at an API that cannot be reached: its failures
//! are counted and the first receiver's metrics flow on. The memory benchmark (ignored in the
//! suite; BENCHMARKS.md) serves 10,000 pods.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use common::sink::Sink;
use common::{Collector, free_port, wait_until};
use futures::StreamExt;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric::Data, number_data_point};
use serde_json::json;

fn pod(name: &str, phase: &str, restarts: u32) -> serde_json::Value {
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "resourceVersion": "1"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "shop/app:2.0", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
        "status": {"phase": phase, "containerStatuses": [{"name": "app", "ready": phase == "Running", "restartCount": restarts, "image": "shop/app:2.0", "containerID": format!("containerd://{name}"), "state": {"running": {}}}]}
    })
}

fn list(kind: &str, rv: &str, items: Vec<serde_json::Value>) -> Response {
    json_resp(
        json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items}),
    )
}

fn json_resp(v: serde_json::Value) -> Response {
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .unwrap()
}

fn stream(events: Vec<(&str, serde_json::Value)>, stay_open: bool) -> Response {
    let body: String = events
        .iter()
        .map(|(t, o)| format!("{}\n", json!({"type": t, "object": o})))
        .collect();
    let chunk = futures::stream::iter(vec![Ok::<_, std::io::Error>(axum::body::Bytes::from(body))]);
    let body = if stay_open {
        Body::from_stream(chunk.chain(futures::stream::pending()))
    } else {
        Body::from_stream(chunk)
    };
    Response::builder()
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

#[derive(Default)]
struct Api {
    seen: Mutex<Vec<String>>,
    pod_watches: Mutex<usize>,
    pod_lists: Mutex<usize>,
    /// The benchmark's pod count (0: the test's pods).
    many: usize,
}

fn start_api(rt: &tokio::runtime::Runtime, port: u16, many: usize) -> Arc<Api> {
    let api = Arc::new(Api {
        many,
        ..Default::default()
    });
    let st = api.clone();
    let handler = move |uri: Uri, headers: HeaderMap| {
        let st = st.clone();
        async move {
            let q = uri.query().unwrap_or("").to_string();
            st.seen.lock().unwrap().push(format!("{}?{q}", uri.path()));
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer t0k") {
                return Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .body(Body::empty())
                    .unwrap();
            }
            let watch = q.contains("watch=1");
            match (uri.path(), watch) {
                ("/api/v1/nodes", false) => list(
                    "NodeList",
                    "10",
                    vec![json!({
                        "kind": "Node", "apiVersion": "v1",
                        "metadata": {"name": "node-1", "uid": "uid-node-1", "resourceVersion": "9"},
                        "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "False"}],
                                   "allocatable": {"cpu": "3800m", "memory": "7Gi", "pods": "110"},
                                   "nodeInfo": {"kubeletVersion": "v1.31.2"}}
                    })],
                ),
                ("/api/v1/pods", false) if st.many > 0 => {
                    // The benchmark's cluster, 500 a page as the client asks.
                    let offset: usize = q
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("continue="))
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                    let end = (offset + 500).min(st.many);
                    let items: Vec<_> = (offset..end)
                        .map(|i| pod(&format!("pod-{i:05}"), "Running", (i % 3) as u32))
                        .collect();
                    let cont = if end < st.many {
                        end.to_string()
                    } else {
                        String::new()
                    };
                    json_resp(
                        json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "100", "continue": cont}, "items": items}),
                    )
                }
                ("/api/v1/pods", false) => {
                    let n = {
                        let mut l = st.pod_lists.lock().unwrap();
                        *l += 1;
                        *l
                    };
                    if n == 1 {
                        list(
                            "PodList",
                            "100",
                            vec![pod("a", "Running", 0), pod("b", "Pending", 0)],
                        )
                    } else {
                        // After the 410: `a` is gone, `c` and `d` are there.
                        list(
                            "PodList",
                            "200",
                            vec![
                                pod("b", "Running", 1),
                                pod("c", "Running", 0),
                                pod("d", "Failed", 4),
                            ],
                        )
                    }
                }
                ("/api/v1/pods", true) if st.many == 0 => {
                    let n = {
                        let mut w = st.pod_watches.lock().unwrap();
                        *w += 1;
                        *w
                    };
                    match n {
                        1 => stream(
                            vec![
                                ("ADDED", pod("c", "Running", 0)),
                                ("DELETED", pod("a", "Running", 0)),
                            ],
                            false,
                        ),
                        2 => stream(
                            vec![(
                                "ERROR",
                                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410}),
                            )],
                            false,
                        ),
                        _ => stream(vec![], true),
                    }
                }
                ("/apis/apps/v1/deployments", false) => list(
                    "DeploymentList",
                    "50",
                    vec![json!({
                        "kind": "Deployment", "apiVersion": "apps/v1",
                        "metadata": {"name": "app", "namespace": "shop", "uid": "uid-dep", "resourceVersion": "49"},
                        "spec": {"replicas": 3}, "status": {"availableReplicas": 2}
                    })],
                ),
                // Every other kind: empty, and its watch stays open.
                (p, false) if p.starts_with("/api") => list("List", "1", vec![]),
                (p, true) if p.starts_with("/api") => stream(vec![], true),
                _ => Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body(Body::empty())
                    .unwrap(),
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
    api
}

fn kubeconfig(dir: &std::path::Path, port: u16, down: u16) -> std::path::PathBuf {
    let p = dir.join("kubeconfig");
    std::fs::write(
        &p,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: up\nclusters:\n- name: up\n  cluster: {{server: 'http://127.0.0.1:{port}'}}\n- name: down\n  cluster: {{server: 'http://127.0.0.1:{down}'}}\ncontexts:\n- name: up\n  context: {{cluster: up, user: u}}\n- name: down\n  context: {{cluster: down, user: u}}\nusers:\n- name: u\n  user: {{token: t0k}}\n"
        ),
    )
    .unwrap();
    p
}

/// The latest report: every (resource attribute `key`'s value, metric) → value, from the
/// batch with the newest timestamp that has `metric_in_it`.
fn latest(sink: &Sink, key: &str) -> BTreeMap<(String, String), f64> {
    let all: Vec<ResourceMetrics> = sink.store.metrics.lock().unwrap().clone();
    let time = |rm: &ResourceMetrics| {
        rm.scope_metrics
            .iter()
            .flat_map(|s| s.metrics.iter())
            .filter_map(|m| match m.data.as_ref()? {
                Data::Gauge(g) => g.data_points.first().map(|p| p.time_unix_nano),
                _ => None,
            })
            .next()
            .unwrap_or(0)
    };
    let newest = all.iter().map(time).max().unwrap_or(0);
    let mut out = BTreeMap::new();
    for rm in all.iter().filter(|rm| time(rm) == newest) {
        let attrs = &rm.resource.as_ref().unwrap().attributes;
        let Some(who) = attrs.iter().find(|a| a.key == key) else {
            continue;
        };
        let who = common::value_text(&who.value);
        for m in rm.scope_metrics.iter().flat_map(|s| s.metrics.iter()) {
            if let Some(Data::Gauge(g)) = &m.data
                && let Some(p) = g.data_points.first()
            {
                let v = match p.value {
                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                    Some(number_data_point::Value::AsDouble(d)) => d,
                    None => continue,
                };
                out.insert((who.clone(), m.name.clone()), v);
            }
        }
    }
    out
}

fn config(sink: u16, metrics: u16, interval: &str, extra: &str) -> String {
    format!(
        r#"
receivers:
  k8s_cluster:
    auth_type: kubeConfig
    collection_interval: {interval}
    node_conditions_to_report: [Ready, MemoryPressure]
    allocatable_types_to_report: [cpu, pods]
{extra}
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    metrics:
      receivers: [k8s_cluster{more}]
      exporters: [otlp]
"#,
        more = if extra.is_empty() {
            ""
        } else {
            ", k8scluster/down"
        }
    )
}

#[test]
fn cluster_state_follows_the_watch_through_a_drop_and_a_relist() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let api = start_api(&rt, port, 0);
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), port, free_port());
    let sink = Sink::start();
    let metrics = free_port();
    let c = Collector::start(
        &config(
            sink.port,
            metrics,
            "300ms",
            "  k8scluster/down:\n    auth_type: kubeConfig\n    context: down\n    collection_interval: 300ms\n",
        ),
        &[("KUBECONFIG", kc.display().to_string())],
        None,
        Some(metrics),
    );
    // The relist after 410 shows `d`; the watch before it removed `a` and added `c`.
    wait_until(
        "the state after the relist",
        Duration::from_secs(30),
        || {
            let l = latest(&sink, "k8s.pod.name");
            l.contains_key(&("d".into(), "k8s.pod.phase".into()))
        },
    );
    let pods = latest(&sink, "k8s.pod.name");
    let phase = |p: &str| {
        pods.get(&(p.to_string(), "k8s.pod.phase".to_string()))
            .copied()
    };
    assert_eq!(phase("a"), None, "deleted by the watch: {pods:?}");
    assert_eq!(phase("b"), Some(2.0));
    assert_eq!(phase("c"), Some(2.0));
    assert_eq!(phase("d"), Some(4.0));
    let containers = latest(&sink, "container.id");
    assert_eq!(
        containers[&("d".to_string(), "k8s.container.restarts".to_string())],
        4.0
    );
    assert_eq!(
        containers[&("b".to_string(), "k8s.container.cpu_request".to_string())],
        0.1
    );
    assert_eq!(
        containers[&("b".to_string(), "k8s.container.memory_request".to_string())],
        64.0 * 1024.0 * 1024.0
    );
    let nodes = latest(&sink, "k8s.node.name");
    let node = |m: &str| nodes[&("node-1".to_string(), m.to_string())];
    assert_eq!(node("k8s.node.condition_ready"), 1.0);
    assert_eq!(node("k8s.node.condition_memory_pressure"), 0.0);
    assert_eq!(node("k8s.node.allocatable_cpu"), 3.8);
    assert_eq!(node("k8s.node.allocatable_pods"), 110.0);
    let deps = latest(&sink, "k8s.deployment.name");
    assert_eq!(
        deps[&("app".to_string(), "k8s.deployment.desired".to_string())],
        3.0
    );
    assert_eq!(
        deps[&("app".to_string(), "k8s.deployment.available".to_string())],
        2.0
    );
    let seen = api.seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|s| s.starts_with("/api/v1/pods?")
            && s.contains("watch=1")
            && s.contains("resourceVersion=100")),
        "{seen:?}"
    );
    assert_eq!(
        *api.pod_lists.lock().unwrap(),
        2,
        "410 relists once: {seen:?}"
    );
    // Reports keep coming while the other receiver's API is down, and its failures count.
    let n = sink.store.metrics.lock().unwrap().len();
    wait_until("more reports", Duration::from_secs(10), || {
        sink.store.metrics.lock().unwrap().len() > n
    });
    assert!(
        c.metric("ferrotel_receiver_source_errors_total{receiver=\"k8scluster/down\",source=\"/api/v1/pods\"}") >= 1.0,
        "{}",
        c.self_metrics()
    );
}

/// (event type, entity type, uid, interval, attributes) of one entity event record.
type EntityEvent = (String, String, String, String, BTreeMap<String, String>);

/// In a logs pipeline too: the entity events of the same watch (an object's state when listed,
/// added or changed, its delete once, and every object's state again each
/// `metadata_collection_interval`), as the Collector's receiver writes them.
#[test]
fn entity_events_follow_the_watch() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let _api = start_api(&rt, port, 0);
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), port, free_port());
    let sink = Sink::start();
    let metrics = free_port();
    let cfg = format!(
        r#"
receivers:
  k8s_cluster:
    auth_type: kubeConfig
    collection_interval: 300ms
    metadata_collection_interval: 2s
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
service:
  telemetry: {{ metrics: {{ address: 127.0.0.1:{metrics} }} }}
  pipelines:
    metrics: {{ receivers: [k8s_cluster], exporters: [otlp] }}
    logs: {{ receivers: [k8s_cluster], exporters: [otlp] }}
"#,
        sink = sink.port
    );
    let _c = Collector::start(
        &cfg,
        &[("KUBECONFIG", kc.display().to_string())],
        None,
        Some(metrics),
    );
    let events = || -> Vec<EntityEvent> {
        let logs = sink.store.logs.lock().unwrap().clone();
        let mut out = Vec::new();
        for rl in &logs {
            for sl in &rl.scope_logs {
                let scope = sl.scope.as_ref().unwrap();
                assert!(
                    scope.attributes.iter().any(|a| a.key == "otel.entity.event_as_log"
                        && matches!(
                            a.value.as_ref().and_then(|v| v.value.as_ref()),
                            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::BoolValue(true))
                        )),
                    "{scope:?}"
                );
                for r in &sl.log_records {
                    let get = |k: &str| common::attr_text(&r.attributes, k).unwrap_or_default();
                    let map = |k: &str| -> BTreeMap<String, String> {
                        let v = r.attributes.iter().find(|a| a.key == k);
                        match v.and_then(|a| a.value.as_ref()?.value.as_ref()) {
                            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::KvlistValue(l)) => l
                                .values
                                .iter()
                                .map(|kv| (kv.key.clone(), common::value_text(&kv.value)))
                                .collect(),
                            _ => BTreeMap::new(),
                        }
                    };
                    let id = map("otel.entity.id");
                    let uid = id.values().next().cloned().unwrap_or_default();
                    out.push((
                        get("otel.entity.event.type"),
                        get("otel.entity.type"),
                        uid,
                        match r
                            .attributes
                            .iter()
                            .find(|a| a.key == "otel.entity.interval")
                            .and_then(|a| a.value.as_ref()?.value.as_ref())
                        {
                            Some(
                                opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(
                                    i,
                                ),
                            ) => i.to_string(),
                            _ => String::new(),
                        },
                        map("otel.entity.attributes"),
                    ));
                }
            }
        }
        out
    };
    wait_until(
        "a periodic report after the relist",
        Duration::from_secs(30),
        || {
            let e = events();
            e.iter()
                .any(|(t, _, u, _, _)| t == "entity_state" && u == "uid-d")
                && e.iter().any(|(_, _, _, i, _)| i == "2000")
        },
    );
    let e = events();
    let deletes: Vec<&String> = e
        .iter()
        .filter(|(t, _, _, _, _)| t == "entity_delete")
        .map(|(_, _, u, _, _)| u)
        .collect();
    assert_eq!(deletes, ["uid-a"], "a deleted once by the watch: {e:?}");
    for uid in ["uid-a", "uid-b", "uid-c", "uid-d", "uid-node-1", "uid-dep"] {
        assert!(
            e.iter()
                .any(|(t, _, u, _, _)| t == "entity_state" && u == uid),
            "{uid}: {e:?}"
        );
    }
    let (_, ty, _, _, attrs) = e
        .iter()
        .find(|(t, _, u, _, _)| t == "entity_state" && u == "uid-dep")
        .unwrap();
    assert_eq!(ty, "k8s.deployment");
    assert_eq!(attrs["k8s.workload.kind"], "Deployment");
    assert_eq!(attrs["k8s.workload.name"], "app");
    let (_, ty, _, _, attrs) = e
        .iter()
        .find(|(t, _, u, _, _)| t == "entity_state" && u == "uid-b")
        .unwrap();
    assert_eq!(ty, "k8s.pod");
    assert_eq!(attrs["k8s.node.name"], "node-1");
    // The periodic report names only what is there now: not `a`.
    assert!(
        !e.iter().any(|(_, _, u, i, _)| u == "uid-a" && i == "2000"),
        "{e:?}"
    );
    // The metrics are reported as before.
    assert!(!sink.store.metrics.lock().unwrap().is_empty());
}

/// BENCHMARKS.md: the collector's RSS before and after it holds 10,000 pods' state.
/// `cargo test --release --test k8s_cluster -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_memory_per_10000_pods() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let _api = start_api(&rt, port, 10_000);
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), port, free_port());
    let sink = Sink::start();
    let metrics = free_port();
    // An interval longer than the test: the state is held, not reported.
    let nowhere = tempfile::tempdir().unwrap();
    let unreachable = kubeconfig(nowhere.path(), free_port(), free_port());
    let mut c = Collector::start(
        &config(sink.port, metrics, "1h", ""),
        &[("KUBECONFIG", unreachable.display().to_string())],
        None,
        Some(metrics),
    );
    std::thread::sleep(Duration::from_secs(2));
    let idle = c.rss_bytes();
    c.terminate();
    let c = Collector::start(
        &config(sink.port, metrics, "1h", ""),
        &[("KUBECONFIG", kc.display().to_string())],
        None,
        Some(metrics),
    );
    wait_until("listed", Duration::from_secs(60), || {
        _api.seen
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.starts_with("/api/v1/pods?") && s.contains("watch=1"))
    });
    std::thread::sleep(Duration::from_secs(2));
    let held = c.rss_bytes();
    println!(
        "k8s_cluster: RSS {:.1} MiB without an API, {:.1} MiB holding 10,000 pods: {:.1} MiB per 10,000 pods",
        idle as f64 / 1048576.0,
        held as f64 / 1048576.0,
        (held as f64 - idle as f64) / 1048576.0
    );
}
