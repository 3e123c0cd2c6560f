//! `k8sattributes` against a stand-in Kubernetes API server: no API server can run here, so this
//! test serves the list and watch endpoints in the Kubernetes API's exact JSON (a `PodList` and
//! a `ReplicaSetList` with `metadata.resourceVersion`, pods with owner references, container
//! statuses and IPs; newline-delimited `WatchEvent`s `ADDED`/`MODIFIED`/`DELETED`; a watch that
//! drops and must be resumed from the last resource version; a `410 Gone` that must cause a
//! relist), reached through a kubeconfig with a bearer token. Traffic: the OpenTelemetry Python
//! SDK (associated by its connection's IP) and a gRPC client setting `k8s.pod.ip`,
//! `k8s.pod.uid` and `k8s.container.name`.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::sink::Sink;
use common::{Collector, free_port, sdk_send, wait_until};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use serde_json::json;

fn pod(
    name: &str,
    uid: &str,
    ip: &str,
    owner: Option<(&str, &str)>,
    rv: &str,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut p = json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": uid,
            "resourceVersion": rv,
            "creationTimestamp": "2026-11-27T05:00:00Z",
            "labels": {"app": name.split('-').next().unwrap(), "team": "payments"},
            "annotations": {"owner": "alice@example.com", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "ownerReferences": owner.map(|(kind, n)| vec![json!({
                "apiVersion": "apps/v1", "kind": kind, "name": n, "uid": format!("{n}-uid"),
                "controller": true, "blockOwnerDeletion": true
            })]).unwrap_or_default()
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [{"name": "app", "image": "registry:5000/shop/web:1.4"}, {"name": "sidecar", "image": "envoy"}]
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": "2026-11-27T05:00:01Z",
            "containerStatuses": [
                {"name": "app", "containerID": format!("containerd://{uid}-app"), "restartCount": 0, "ready": true},
                {"name": "sidecar", "containerID": format!("containerd://{uid}-sidecar"), "restartCount": 1, "ready": true}
            ]
        }
    });
    if let (Some(m), Some(e)) = (p.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    p
}

#[derive(Default)]
struct Api {
    /// Every request: path and query.
    seen: Mutex<Vec<String>>,
    /// Requests without the bearer token.
    unauthorized: Mutex<usize>,
    pod_watches: Mutex<usize>,
    rs_watches: Mutex<usize>,
}

fn start_api(rt: &tokio::runtime::Runtime, port: u16) -> Arc<Api> {
    use axum::body::Body;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::Response;
    let api = Arc::new(Api::default());
    let st = api.clone();
    let handler = move |uri: Uri, headers: HeaderMap| {
        let st = st.clone();
        async move {
            let q = uri.query().unwrap_or("").to_string();
            st.seen.lock().unwrap().push(format!("{}?{q}", uri.path()));
            if headers.get("authorization").and_then(|v| v.to_str().ok())
                != Some("Bearer test-token")
            {
                *st.unauthorized.lock().unwrap() += 1;
                return Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .body(Body::empty())
                    .unwrap();
            }
            let watch = q.contains("watch=1");
            let json_resp = |v: serde_json::Value| {
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(v.to_string()))
                    .unwrap()
            };
            match (uri.path(), watch) {
                ("/api/v1/pods", false) => json_resp(json!({
                    "kind": "PodList", "apiVersion": "v1",
                    "metadata": {"resourceVersion": "100"},
                    "items": [
                        pod("web-7d9f-abc", "u-web", "10.1.0.5", Some(("ReplicaSet", "web-7d9f")), "90", json!({})),
                        pod("db-0", "u-db", "10.1.0.6", Some(("StatefulSet", "db")), "91", json!({})),
                        pod("backup-28734120-xk2", "u-client", "127.0.0.1", Some(("Job", "backup-28734120")), "92", json!({})),
                    ]
                })),
                ("/api/v1/pods", true) => {
                    let n = {
                        let mut w = st.pod_watches.lock().unwrap();
                        *w += 1;
                        *w
                    };
                    let ev = |t: &str, o: serde_json::Value| {
                        format!("{}\n", json!({"type": t, "object": o}))
                    };
                    let body = if n == 1 {
                        // Two events, a bookmark, then the server ends the watch: the client must
                        // resume from resourceVersion 103.
                        format!(
                            "{}{}{}",
                            ev(
                                "ADDED",
                                pod(
                                    "late-1",
                                    "u-late",
                                    "10.1.0.9",
                                    Some(("DaemonSet", "agent")),
                                    "101",
                                    json!({})
                                )
                            ),
                            ev(
                                "MODIFIED",
                                pod(
                                    "db-0",
                                    "u-db",
                                    "10.1.0.6",
                                    Some(("StatefulSet", "db")),
                                    "102",
                                    json!({"metadata": {
                                        "name": "db-0", "namespace": "shop", "uid": "u-db", "resourceVersion": "102",
                                        "labels": {"app": "db", "team": "storage"},
                                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "db-uid"}]
                                    }})
                                )
                            ),
                            ev(
                                "BOOKMARK",
                                json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "103"}})
                            ),
                        )
                    } else {
                        // The resumed watch: one more pod, then the stream stays open.
                        format!(
                            "{}{}",
                            ev(
                                "ADDED",
                                pod("late-2", "u-late2", "10.1.0.10", None, "104", json!({})),
                            ),
                            // Deleted pods stay known for a grace period: their last telemetry
                            // is still enriched.
                            ev(
                                "DELETED",
                                pod(
                                    "web-7d9f-abc",
                                    "u-web",
                                    "10.1.0.5",
                                    Some(("ReplicaSet", "web-7d9f")),
                                    "105",
                                    json!({})
                                ),
                            )
                        )
                    };
                    // The first watch ends after its events (a dropped watch); the resumed one
                    // stays open.
                    let chunk = futures::stream::iter(vec![Ok::<_, std::io::Error>(
                        axum::body::Bytes::from(body),
                    )]);
                    let body = if n == 1 {
                        Body::from_stream(chunk)
                    } else {
                        Body::from_stream(chunk.chain(futures::stream::pending()))
                    };
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(body)
                        .unwrap()
                }
                ("/apis/apps/v1/replicasets", false) => json_resp(json!({
                    "kind": "ReplicaSetList", "apiVersion": "apps/v1",
                    "metadata": {"resourceVersion": "200"},
                    "items": [{
                        "kind": "ReplicaSet", "apiVersion": "apps/v1",
                        "metadata": {"name": "web-7d9f", "namespace": "shop", "uid": "rs-uid", "resourceVersion": "199",
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "dep-uid", "controller": true}]}
                    }]
                })),
                ("/apis/apps/v1/replicasets", true) => {
                    let n = {
                        let mut w = st.rs_watches.lock().unwrap();
                        *w += 1;
                        *w
                    };
                    if n == 1 {
                        // Too old: the client must list again.
                        Response::builder().status(StatusCode::GONE).body(Body::from(
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410}).to_string(),
                        )).unwrap()
                    } else {
                        Response::builder()
                            .body(Body::from_stream(futures::stream::pending::<
                                Result<axum::body::Bytes, std::io::Error>,
                            >()))
                            .unwrap()
                    }
                }
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

use futures::StreamExt;

fn kubeconfig(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let p = dir.join("kubeconfig");
    std::fs::write(
        &p,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: local\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: test\n  context:\n    cluster: local\n    user: tester\nusers:\n- name: tester\n  user:\n    token: test-token\n"
        ),
    )
    .unwrap();
    p
}

/// Returns the collector and its OTLP gRPC and HTTP ports.
fn collector(kubeconfig: &std::path::Path, sink: u16) -> (Collector, u16, u16) {
    let (grpc, http, health, metrics) = (free_port(), free_port(), free_port(), free_port());
    let c = Collector::start(
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
processors:
  k8sattributes:
    auth_type: kubeConfig
    filter: {{ node_from_env_var: KUBE_NODE_NAME }}
    extract:
      metadata: [k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.pod.start_time, k8s.node.name,
                 k8s.deployment.name, k8s.replicaset.name, k8s.statefulset.name, k8s.daemonset.name,
                 k8s.job.name, k8s.cronjob.name, container.image.name, container.image.tag, container.id]
      labels:
        - {{ key: app }}
        - {{ tag_name: team, key: team }}
      annotations:
        - {{ tag_name: "k8s.pod.$1", key_regex: "(owner)" }}
exporters:
  otlp_grpc/sink:
    endpoint: "127.0.0.1:{sink}"
    tls: {{ insecure: true }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [k8sattributes], exporters: [otlp_grpc/sink] }}
    logs: {{ receivers: [otlp], processors: [k8sattributes], exporters: [otlp_grpc/sink] }}
    metrics: {{ receivers: [otlp], processors: [k8sattributes], exporters: [otlp_grpc/sink] }}
"#
        ),
        &[
            ("KUBECONFIG", kubeconfig.to_string_lossy().into_owned()),
            ("KUBE_NODE_NAME", "node-1".into()),
        ],
        Some(health),
        Some(metrics),
    );
    (c, grpc, http)
}

fn span_with(resource: Vec<(&str, &str)>, name: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource
                    .into_iter()
                    .map(|(k, v)| KeyValue {
                        key: k.into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(v.into())),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    name: name.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The resource attributes the sink got for the span named `name`.
fn resource_of(sink: &Sink, name: &str) -> Option<BTreeMap<String, String>> {
    let spans = sink.store.spans.lock().unwrap();
    spans.iter().find_map(|r| {
        r.scope_spans
            .iter()
            .flat_map(|s| &s.spans)
            .any(|s| s.name == name)
            .then(|| {
                r.resource
                    .as_ref()
                    .map(|res| {
                        res.attributes
                            .iter()
                            .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                                any_value::Value::StringValue(s) => {
                                    Some((kv.key.clone(), s.clone()))
                                }
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            })
    })
}

#[test]
fn enriches_by_ip_uid_container_and_connection_and_follows_the_watch() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let port = free_port();
    let api = start_api(&rt, port);
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), port);
    let sink = Sink::start();
    let (c, grpc, http) = collector(&kc, sink.port);
    // The watch events have arrived once the resumed pod watch was made.
    wait_until("the resumed pod watch", Duration::from_secs(20), || {
        *api.pod_watches.lock().unwrap() >= 2
    });
    wait_until("the relisted replicasets", Duration::from_secs(20), || {
        *api.rs_watches.lock().unwrap() >= 2
    });
    std::thread::sleep(Duration::from_millis(300));
    let send = |req: ExportTraceServiceRequest| {
        rt.block_on(async {
            let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
                .await
                .unwrap();
            client.export(req).await.unwrap();
        })
    };
    send(span_with(
        vec![("k8s.pod.ip", "10.1.0.5"), ("k8s.container.name", "app")],
        "by-ip",
    ));
    send(span_with(vec![("k8s.pod.uid", "u-db")], "by-uid"));
    send(span_with(
        vec![("container.id", "u-late-sidecar")],
        "by-container",
    ));
    send(span_with(vec![("k8s.pod.ip", "10.1.0.10")], "resumed"));
    send(span_with(vec![("k8s.pod.ip", "10.9.9.9")], "unknown"));
    // The SDK connects from 127.0.0.1, the IP of the `backup-…` pod: associated by the
    // connection, over gRPC (traces) and HTTP (logs).
    let (ok, _, stderr) = sdk_send(
        &format!("127.0.0.1:{grpc}"),
        "grpc",
        "traces",
        2,
        "k8s",
        &[],
    );
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = sdk_send(
        &format!("http://127.0.0.1:{http}"),
        "http",
        "logs",
        2,
        "k8s",
        &[],
    );
    assert!(ok, "{stderr}");
    wait_until("every span", Duration::from_secs(20), || {
        sink.store.span_count() == 5 + 4
    });

    let web = resource_of(&sink, "by-ip").unwrap();
    let want: BTreeMap<String, String> = [
        ("k8s.pod.ip", "10.1.0.5"),
        ("k8s.container.name", "app"),
        ("k8s.namespace.name", "shop"),
        ("k8s.pod.name", "web-7d9f-abc"),
        ("k8s.pod.uid", "u-web"),
        ("k8s.pod.start_time", "2026-11-27T05:00:01Z"),
        ("k8s.node.name", "node-1"),
        ("k8s.replicaset.name", "web-7d9f"),
        ("k8s.deployment.name", "web"),
        ("container.image.name", "registry:5000/shop/web"),
        ("container.image.tag", "1.4"),
        ("container.id", "u-web-app"),
        ("k8s.pod.labels.app", "web"),
        ("team", "payments"),
        ("k8s.pod.owner", "alice@example.com"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(web, want);

    // MODIFIED replaced db-0's labels.
    let db = resource_of(&sink, "by-uid").unwrap();
    assert_eq!(
        db.get("k8s.statefulset.name").map(String::as_str),
        Some("db")
    );
    assert_eq!(db.get("team").map(String::as_str), Some("storage"));
    assert_eq!(db.get("k8s.pod.name").map(String::as_str), Some("db-0"));
    assert!(!db.contains_key("k8s.deployment.name"));

    // ADDED in the first watch; found by a container id.
    let late = resource_of(&sink, "by-container").unwrap();
    assert_eq!(late.get("k8s.pod.name").map(String::as_str), Some("late-1"));
    assert_eq!(
        late.get("k8s.daemonset.name").map(String::as_str),
        Some("agent")
    );
    // ADDED in the resumed watch.
    let late2 = resource_of(&sink, "resumed").unwrap();
    assert_eq!(
        late2.get("k8s.pod.name").map(String::as_str),
        Some("late-2")
    );

    let unknown = resource_of(&sink, "unknown").unwrap();
    assert!(!unknown.contains_key("k8s.pod.name"));

    // SDK spans: by connection, a Job of a CronJob.
    let sdk = resource_of(&sink, "parent-0").unwrap();
    assert_eq!(
        sdk.get("k8s.pod.name").map(String::as_str),
        Some("backup-28734120-xk2")
    );
    assert_eq!(
        sdk.get("k8s.job.name").map(String::as_str),
        Some("backup-28734120")
    );
    assert_eq!(
        sdk.get("k8s.cronjob.name").map(String::as_str),
        Some("backup")
    );
    assert_eq!(sdk.get("service.name").map(String::as_str), Some("sdk-e2e"));
    wait_until("the SDK logs", Duration::from_secs(10), || {
        sink.store.log_count() == 2
    });
    for r in sink.store.logs.lock().unwrap().iter() {
        let attrs = &r.resource.as_ref().unwrap().attributes;
        assert!(
            attrs.iter().any(|kv| kv.key == "k8s.cronjob.name"),
            "{attrs:?}"
        );
    }

    // What the API server saw: the node filter, the token, the resumed version, the relist.
    let seen = api.seen.lock().unwrap().clone();
    assert_eq!(*api.unauthorized.lock().unwrap(), 0);
    assert!(
        seen.iter().all(|s| !s.starts_with("/api/v1/pods")
            || s.contains("fieldSelector=spec.nodeName%3Dnode-1")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|s| s.starts_with("/api/v1/pods")
            && s.contains("watch=1")
            && s.contains("resourceVersion=103")),
        "the dropped watch was not resumed from the bookmark's version: {seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|s| s.starts_with("/apis/apps/v1/replicasets") && !s.contains("watch=1"))
            .count(),
        2,
        "410 Gone must cause a relist: {seen:?}"
    );
    assert_eq!(
        c.metric("otelcol_processor_k8sattributes_unenriched_resources_total{processor=\"k8sattributes\",pipeline=\"traces\",otel_signal=\"traces\",reason=\"pod_not_found\"}"),
        1.0
    );
}

/// With the API server down, data still flows, unenriched and counted.
#[test]
fn api_unreachable_data_flows_unenriched_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), free_port());
    let sink = Sink::start();
    let (c, grpc, _http) = collector(&kc, sink.port);
    let (ok, _, stderr) = sdk_send(
        &format!("127.0.0.1:{grpc}"),
        "grpc",
        "traces",
        3,
        "down",
        &[],
    );
    assert!(ok, "{stderr}");
    wait_until("the spans", Duration::from_secs(20), || {
        sink.store.span_count() == 6
    });
    let sdk = resource_of(&sink, "parent-0").unwrap();
    assert!(!sdk.contains_key("k8s.pod.name"));
    assert_eq!(
        c.metric("otelcol_processor_k8sattributes_unenriched_resources_total{processor=\"k8sattributes\",pipeline=\"traces\",otel_signal=\"traces\",reason=\"api_unreachable\"}"),
        6.0
    );
    assert!(
        c.logs().contains("Kubernetes API unreachable"),
        "{}",
        c.logs()
    );
}

/// A stand-in API server that serves fixed lists (each `kind`List in the API's JSON, with a
/// resource version) and watches that stay open without events.
fn start_static_api(
    rt: &tokio::runtime::Runtime,
    port: u16,
    lists: Vec<(&'static str, serde_json::Value)>,
) {
    use axum::body::Body;
    use axum::http::{StatusCode, Uri};
    use axum::response::Response;
    let lists = Arc::new(lists);
    let handler = move |uri: Uri| {
        let lists = lists.clone();
        async move {
            let watch = uri.query().unwrap_or("").contains("watch=1");
            match lists.iter().find(|(p, _)| *p == uri.path()) {
                Some(_) if watch => Response::builder()
                    .body(Body::from_stream(futures::stream::pending::<
                        Result<axum::body::Bytes, std::io::Error>,
                    >()))
                    .unwrap(),
                Some((_, list)) => Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(list.to_string()))
                    .unwrap(),
                None => Response::builder()
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
}

fn list(kind: &str, items: Vec<serde_json::Value>) -> serde_json::Value {
    json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": "10"}, "items": items})
}

/// The keys the current Collector has beyond the basics: the legacy flat `pod_association`
/// (corpus file 30), `otel_annotations` (file 48), the `service.*` attributes by the semantic
/// conventions' order (annotation, well-known label, owner), the owners' uids (Deployment through
/// its ReplicaSet, CronJob through its Job), the node's and the cluster's (kube-system's) uid,
/// the container found by its id, `exclude`, and `wait_for_metadata`.
#[test]
fn service_attributes_uids_annotations_exclude_and_legacy_association() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let port = free_port();
    let web = pod(
        "web-7d9f-abc",
        "u-web",
        "10.1.0.5",
        Some(("ReplicaSet", "web-7d9f")),
        "5",
        json!({}),
    );
    let mut web = web;
    web["metadata"]["annotations"] = json!({"resource.opentelemetry.io/service.name": "checkout", "resource.opentelemetry.io/team.tier": "gold"});
    web["metadata"]["labels"] = json!({"app.kubernetes.io/version": "2.1"});
    web["spec"]["hostname"] = json!("web-host");
    web["status"]["containerStatuses"][0]["imageID"] =
        json!("registry:5000/shop/web@sha256:0123abcd");
    let mut job = pod(
        "backup-28734120-xk2",
        "u-job",
        "10.1.0.7",
        Some(("Job", "backup-28734120")),
        "6",
        json!({}),
    );
    job["metadata"]["labels"] = json!({"app.kubernetes.io/name": "backup-tool"});
    let skipped = pod("skip-me-1", "u-skip", "10.1.0.8", None, "7", json!({}));
    start_static_api(
        &rt,
        port,
        vec![
            ("/api/v1/pods", list("Pod", vec![web, job, skipped])),
            (
                "/apis/apps/v1/replicasets",
                list(
                    "ReplicaSet",
                    vec![
                        json!({"metadata": {"name": "web-7d9f", "namespace": "shop", "uid": "rs-uid",
                        "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "dep-uid"}]}}),
                    ],
                ),
            ),
            (
                "/apis/batch/v1/jobs",
                list(
                    "Job",
                    vec![
                        json!({"metadata": {"name": "backup-28734120", "namespace": "shop", "uid": "backup-28734120-uid",
                        "ownerReferences": [{"kind": "CronJob", "name": "backup", "uid": "cron-uid"}]}}),
                    ],
                ),
            ),
            (
                "/api/v1/nodes",
                list(
                    "Node",
                    vec![json!({"metadata": {"name": "node-1", "uid": "node-uid"}})],
                ),
            ),
            (
                "/api/v1/namespaces",
                list(
                    "Namespace",
                    vec![
                        json!({"metadata": {"name": "kube-system", "uid": "cluster-uid"}}),
                        json!({"metadata": {"name": "shop", "uid": "shop-uid"}}),
                    ],
                ),
            ),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), port);
    let sink = Sink::start();
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let c = Collector::start(
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
processors:
  k8sattributes:
    auth_type: kubeConfig
    wait_for_metadata: true
    wait_for_metadata_timeout: 10s
    exclude:
      pods: [{{ name: "^skip-" }}]
    extract:
      otel_annotations: true
      metadata: [k8s.pod.name, k8s.pod.hostname, k8s.deployment.name, k8s.deployment.uid,
                 k8s.replicaset.uid, k8s.job.uid, k8s.cronjob.name, k8s.cronjob.uid, k8s.node.uid,
                 k8s.cluster.uid, k8s.cluster.name, k8s.container.name, container.image.repo_digests,
                 service.namespace, service.name, service.version, service.instance.id]
    pod_association:
      - from: resource_attribute
        name: k8s.pod.uid
      - from: resource_attribute
        name: k8s.pod.ip
exporters:
  otlp_grpc/sink:
    endpoint: "127.0.0.1:{sink}"
    tls: {{ insecure: true }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [k8sattributes], exporters: [otlp_grpc/sink] }}
"#,
            sink = sink.port
        ),
        &[("KUBECONFIG", kc.to_string_lossy().into_owned())],
        Some(health),
        Some(metrics),
    );
    assert!(
        c.logs()
            .contains("processors::k8sattributes: `pod_association[0].from`: deprecated flat form"),
        "{}",
        c.logs()
    );
    assert!(
        c.logs()
            .contains("`k8s.cluster.name`: deprecated and never set"),
        "{}",
        c.logs()
    );
    let send = |req: ExportTraceServiceRequest| {
        rt.block_on(async {
            let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
                .await
                .unwrap();
            client.export(req).await.unwrap();
        })
    };
    // No pod-list wait here: `wait_for_metadata` held the start until the pods were listed.
    send(span_with(
        vec![
            ("k8s.pod.uid", "u-web"),
            ("container.id", "containerd://u-web-app"),
        ],
        "web",
    ));
    send(span_with(vec![("k8s.pod.ip", "10.1.0.7")], "job"));
    send(span_with(vec![("k8s.pod.ip", "10.1.0.8")], "skipped"));
    wait_until("3 spans", Duration::from_secs(20), || {
        sink.store.span_count() == 3
    });
    let strings = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        resource_of(&sink, "web").unwrap(),
        strings(&[
            ("k8s.pod.uid", "u-web"),
            ("container.id", "containerd://u-web-app"),
            // otel_annotations first: the annotation wins over the owner's name.
            ("service.name", "checkout"),
            ("team.tier", "gold"),
            ("k8s.pod.name", "web-7d9f-abc"),
            ("k8s.pod.hostname", "web-host"),
            ("k8s.deployment.name", "web"),
            ("k8s.deployment.uid", "dep-uid"),
            ("k8s.replicaset.uid", "web-7d9f-uid"),
            ("k8s.node.uid", "node-uid"),
            ("k8s.cluster.uid", "cluster-uid"),
            ("k8s.container.name", "app"),
            ("service.namespace", "shop"),
            ("service.version", "2.1"),
            ("service.instance.id", "shop.web-7d9f-abc.app"),
        ])
    );
    let spans = sink.store.spans.lock().unwrap().clone();
    let digests = spans
        .iter()
        .filter_map(|r| r.resource.as_ref())
        .flat_map(|r| &r.attributes)
        .find(|kv| kv.key == "container.image.repo_digests")
        .and_then(|kv| kv.value.clone()?.value);
    let Some(any_value::Value::ArrayValue(a)) = digests else {
        panic!("repo digests as a list: {digests:?}")
    };
    assert_eq!(
        a.values[0].value,
        Some(any_value::Value::StringValue(
            "registry:5000/shop/web@sha256:0123abcd".into()
        ))
    );
    assert_eq!(
        resource_of(&sink, "job").unwrap(),
        strings(&[
            ("k8s.pod.ip", "10.1.0.7"),
            ("k8s.pod.name", "backup-28734120-xk2"),
            ("k8s.pod.hostname", "backup-28734120-xk2"),
            ("k8s.job.uid", "backup-28734120-uid"),
            ("k8s.cronjob.name", "backup"),
            ("k8s.cronjob.uid", "cron-uid"),
            ("k8s.node.uid", "node-uid"),
            ("k8s.cluster.uid", "cluster-uid"),
            ("service.namespace", "shop"),
            // The well-known label comes before the owners.
            ("service.name", "backup-tool"),
        ])
    );
    // Excluded: never cached, so not found.
    assert_eq!(
        resource_of(&sink, "skipped").unwrap(),
        strings(&[("k8s.pod.ip", "10.1.0.8")])
    );
}

/// `wait_for_metadata` with no API server: the start fails after the timeout, naming why.
#[test]
fn wait_for_metadata_fails_the_start_when_the_api_never_answers() {
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), free_port());
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc: {{endpoint: \"127.0.0.1:{}\"}}\nprocessors:\n  k8sattributes:\n    auth_type: kubeConfig\n    wait_for_metadata: true\n    wait_for_metadata_timeout: 1s\nexporters:\n  debug:\nservice:\n  telemetry: {{metrics: {{level: none}}}}\n  pipelines:\n    traces: {{receivers: [otlp], processors: [k8sattributes], exporters: [debug]}}\n",
            free_port()
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrotel"))
        .arg("--config")
        .arg(&cfg)
        .env("KUBECONFIG", &kc)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("wait_for_metadata: the pods were not listed within 1s"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
