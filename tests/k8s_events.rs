//! `k8s_events` and `k8sobjects` end to end. No API server runs here, so the test serves a
//! strict stand-in written from the Kubernetes API reference: discovery (`/api/v1`'s
//! APIResourceList, `/apis`' APIGroupList with preferred versions, a group version's
//! resources), `EventList`s and `PodList`s with resource versions, and watch streams of
//! newline-delimited `WatchEvent`s (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, an `ERROR`
//! Status with code 410). A bearer token is required, as a real API server requires one. It
//! covers a dropped watch resumed from the bookmark's version, the 410 relist, events older than
//! the receiver not reported, a changed event reported again and an unchanged one not, and an
//! API that cannot be reached (counted, the rest unaffected).

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
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use serde_json::json;

#[derive(Default)]
struct Api {
    /// Every request, `path?query`.
    seen: Mutex<Vec<String>>,
    event_watches: Mutex<usize>,
    new_event_watches: Mutex<usize>,
}

fn iso(offset_secs: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(offset_secs);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn event(
    name: &str,
    uid: &str,
    rv: &str,
    reason: &str,
    kind: &str,
    count: i64,
    at: &str,
) -> serde_json::Value {
    json!({
        "kind": "Event", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "resourceVersion": rv, "creationTimestamp": at},
        "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-1", "uid": "pod-uid-1", "apiVersion": "v1", "resourceVersion": "880", "fieldPath": "spec.containers{web}"},
        "reason": reason, "message": format!("{reason} happened"),
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": at, "lastTimestamp": at, "count": count, "type": kind
    })
}

fn lines(events: &[(&str, serde_json::Value)]) -> String {
    events
        .iter()
        .map(|(t, o)| format!("{}\n", json!({"type": t, "object": o})))
        .collect()
}

fn stream(body: String, stay_open: bool) -> Response {
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

fn json_resp(v: serde_json::Value) -> Response {
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .unwrap()
}

fn status(code: u16) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .body(Body::from(
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code})
                .to_string(),
        ))
        .unwrap()
}

fn start_api(rt: &tokio::runtime::Runtime, port: u16) -> Arc<Api> {
    let api = Arc::new(Api::default());
    let st = api.clone();
    let handler = move |uri: Uri, headers: HeaderMap| {
        let st = st.clone();
        async move {
            let q = uri.query().unwrap_or("").to_string();
            st.seen.lock().unwrap().push(format!("{}?{q}", uri.path()));
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer t0k") {
                return status(401);
            }
            let watch = q.contains("watch=1");
            let rv = q
                .split('&')
                .find_map(|kv| kv.strip_prefix("resourceVersion="))
                .unwrap_or("")
                .to_string();
            match (uri.path(), watch) {
                ("/api/v1", false) => json_resp(json!({
                    "kind": "APIResourceList", "groupVersion": "v1",
                    "resources": [
                        {"name": "pods", "namespaced": true, "kind": "Pod", "verbs": ["get", "list", "watch"]},
                        {"name": "events", "namespaced": true, "kind": "Event", "verbs": ["get", "list", "watch"]},
                        {"name": "namespaces", "namespaced": false, "kind": "Namespace", "verbs": ["get", "list", "watch"]}
                    ]
                })),
                ("/apis", false) => json_resp(json!({
                    "kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [
                        {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}},
                        {"name": "events.k8s.io", "versions": [{"groupVersion": "events.k8s.io/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "events.k8s.io/v1", "version": "v1"}}
                    ]
                })),
                ("/apis/apps/v1", false) => json_resp(json!({
                    "kind": "APIResourceList", "groupVersion": "apps/v1",
                    "resources": [{"name": "deployments", "namespaced": true, "kind": "Deployment"}]
                })),
                ("/apis/events.k8s.io/v1", false) => json_resp(json!({
                    "kind": "APIResourceList", "groupVersion": "events.k8s.io/v1",
                    "resources": [{"name": "events", "namespaced": true, "kind": "Event"}]
                })),
                // k8s_events: core events.
                ("/api/v1/events", false) => {
                    let n = *st.event_watches.lock().unwrap();
                    let items = if n == 0 {
                        // Before the receiver started: not reported.
                        vec![event(
                            "old.1",
                            "e-old",
                            "99",
                            "Pulled",
                            "Normal",
                            1,
                            &iso(-3600),
                        )]
                    } else {
                        // After the 410: `a` unchanged since the watch reported it, `b` new.
                        vec![
                            event("web-1.a", "e-a", "102", "BackOff", "Warning", 2, &iso(0)),
                            event("web-1.b", "e-b", "104", "Scheduled", "Normal", 1, &iso(0)),
                        ]
                    };
                    let rv = if n == 0 { "100" } else { "104" };
                    json_resp(
                        json!({"kind": "EventList", "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items}),
                    )
                }
                ("/api/v1/events", true) => {
                    let n = {
                        let mut w = st.event_watches.lock().unwrap();
                        *w += 1;
                        *w
                    };
                    match n {
                        // Two changes of one event and a bookmark; then the stream drops.
                        1 => stream(
                            lines(&[
                                (
                                    "ADDED",
                                    event(
                                        "web-1.a",
                                        "e-a",
                                        "101",
                                        "BackOff",
                                        "Warning",
                                        1,
                                        &iso(0),
                                    ),
                                ),
                                (
                                    "MODIFIED",
                                    event(
                                        "web-1.a",
                                        "e-a",
                                        "102",
                                        "BackOff",
                                        "Warning",
                                        2,
                                        &iso(0),
                                    ),
                                ),
                                (
                                    "BOOKMARK",
                                    json!({"kind": "Event", "apiVersion": "v1", "metadata": {"resourceVersion": "103"}}),
                                ),
                            ]),
                            false,
                        ),
                        // Resumed from the bookmark: too old by now.
                        2 => stream(
                            lines(&[(
                                "ERROR",
                                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410}),
                            )]),
                            false,
                        ),
                        _ => stream(
                            lines(&[(
                                "ADDED",
                                event("web-1.c", "e-c", "105", "Started", "Normal", 1, &iso(0)),
                            )]),
                            true,
                        ),
                    }
                }
                // k8sobjects pull: pods in one namespace.
                ("/api/v1/namespaces/shop/pods", false) => json_resp(json!({
                    "kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "300"},
                    "items": [
                        {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "web-1", "namespace": "shop", "uid": "pod-uid-1", "resourceVersion": "280"}, "spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}},
                        {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "db-0", "namespace": "shop", "uid": "pod-uid-2", "resourceVersion": "281"}, "spec": {"nodeName": "node-2"}, "status": {"phase": "Pending"}}
                    ]
                })),
                // k8sobjects watch: events.k8s.io events, all namespaces.
                ("/apis/events.k8s.io/v1/events", false) => json_resp(json!({
                    "kind": "EventList", "apiVersion": "events.k8s.io/v1", "metadata": {"resourceVersion": "500"},
                    "items": [{"kind": "Event", "apiVersion": "events.k8s.io/v1", "metadata": {"name": "initial", "namespace": "kube-system", "resourceVersion": "499"}}]
                })),
                ("/apis/events.k8s.io/v1/events", true) => {
                    *st.new_event_watches.lock().unwrap() += 1;
                    assert_eq!(rv, "500", "the watch starts from the list's version");
                    let ne = |name: &str, ns: &str, rv: &str, note: &str| json!({"kind": "Event", "apiVersion": "events.k8s.io/v1", "metadata": {"name": name, "namespace": ns, "resourceVersion": rv}, "note": note, "reason": "Killing"});
                    stream(
                        lines(&[
                            ("ADDED", ne("x.1", "shop", "501", "first")),
                            (
                                "ADDED",
                                ne("sys.1", "kube-system", "502", "excluded namespace"),
                            ),
                            ("DELETED", ne("x.1", "shop", "503", "excluded type")),
                            ("MODIFIED", ne("x.2", "shop", "504", "second")),
                        ]),
                        true,
                    )
                }
                _ => status(404),
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

fn attrs(kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), common::value_text(&kv.value)))
        .collect()
}

/// A body as JSON, to read it as the object it was.
fn to_json(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> serde_json::Value {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => json!(s),
        Some(Value::IntValue(i)) => json!(i),
        Some(Value::BoolValue(b)) => json!(b),
        Some(Value::DoubleValue(d)) => json!(d),
        Some(Value::ArrayValue(a)) => {
            serde_json::Value::Array(a.values.iter().map(|v| to_json(&Some(v.clone()))).collect())
        }
        Some(Value::KvlistValue(kv)) => serde_json::Value::Object(
            kv.values
                .iter()
                .map(|kv| (kv.key.clone(), to_json(&kv.value)))
                .collect(),
        ),
        _ => serde_json::Value::Null,
    }
}

/// Every record: (resource attributes, record attributes, severity text, body text).
type Rec = (
    BTreeMap<String, String>,
    BTreeMap<String, String>,
    String,
    String,
);

fn records(logs: &[ResourceLogs]) -> Vec<Rec> {
    logs.iter()
        .flat_map(|rl| {
            let res = rl.resource.as_ref().map(|r| attrs(&r.attributes)).unwrap_or_default();
            rl.scope_logs
                .iter()
                .flat_map(|s| s.log_records.iter())
                .map(move |r| {
                    (
                        res.clone(),
                        attrs(&r.attributes),
                        r.severity_text.clone(),
                        match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::KvlistValue(_)) => {
                                to_json(&r.body).to_string()
                            }
                            _ => common::value_text(&r.body),
                        },
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn events_and_objects_follow_the_api_through_drops_and_relists() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let api = start_api(&rt, port);
    let down = free_port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: up\nclusters:\n- name: up\n  cluster: {{server: 'http://127.0.0.1:{port}'}}\n- name: down\n  cluster: {{server: 'http://127.0.0.1:{down}'}}\ncontexts:\n- name: up\n  context: {{cluster: up, user: u}}\n- name: down\n  context: {{cluster: down, user: u}}\nusers:\n- name: u\n  user: {{token: t0k}}\n"
        ),
    )
    .unwrap();
    let sink = Sink::start();
    let metrics_port = free_port();
    let config = format!(
        r#"
receivers:
  k8s_events:
    auth_type: kubeConfig
  k8sevents/down:
    auth_type: kubeConfig
    context: down
  k8sobjects:
    auth_type: kubeConfig
    objects:
      - name: pods
        mode: pull
        namespaces: [shop]
        interval: 300ms
      - name: events
        group: events.k8s.io
        mode: watch
        exclude_watch_type: [DELETED]
        exclude_namespaces: [{{strict: kube-system}}]
      - name: widgets
        mode: pull
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics_port}
  pipelines:
    logs:
      receivers: [k8s_events, k8sevents/down, k8sobjects]
      exporters: [otlp]
"#,
        sink = sink.port
    );
    let c = Collector::start(
        &config,
        &[("KUBECONFIG", kubeconfig.display().to_string())],
        None,
        Some(metrics_port),
    );
    let events = || -> Vec<Rec> {
        records(&sink.store.logs.lock().unwrap())
            .into_iter()
            .filter(|(_, a, _, _)| a.contains_key("k8s.event.reason"))
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !events()
        .iter()
        .any(|(_, a, _, _)| a["k8s.event.name"] == "web-1.c")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no event from the resumed watch: got {:?}; requests {:?}; log {}",
            events(),
            api.seen.lock().unwrap(),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut got = events();
    // Batches may reach the sink in any order (the exporter sends them concurrently).
    got.sort_by_key(|(_, a, _, _)| {
        (
            a["k8s.event.name"].clone(),
            a.get("k8s.event.count").cloned(),
        )
    });
    let summary: Vec<(String, String)> = got
        .iter()
        .map(|(_, a, _, _)| {
            (
                a["k8s.event.name"].clone(),
                a.get("k8s.event.count").cloned().unwrap_or_default(),
            )
        })
        .collect();
    // The old event is not reported; `a` twice (its count went up), not a third time after the
    // relist; `b` from the relist; `c` from the watch after it.
    assert_eq!(
        summary,
        [
            ("web-1.a".to_string(), "1".to_string()),
            ("web-1.a".into(), "2".into()),
            ("web-1.b".into(), "1".into()),
            ("web-1.c".into(), "1".into()),
        ],
        "{}",
        c.logs()
    );
    let (res, a, sev, body) = &got[0];
    assert_eq!(res["k8s.object.kind"], "Pod");
    assert_eq!(res["k8s.object.name"], "web-1");
    assert_eq!(res["k8s.object.uid"], "pod-uid-1");
    assert_eq!(res["k8s.object.fieldpath"], "spec.containers{web}");
    assert_eq!(res["k8s.node.name"], "node-1");
    assert_eq!(a["k8s.namespace.name"], "shop");
    assert_eq!(a["k8s.event.reason"], "BackOff");
    assert_eq!(sev, "Warning");
    assert_eq!(body, "BackOff happened");
    assert_eq!(got[2].2, "Normal");
    let seen = api.seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|s| s.starts_with("/api/v1/events?")
            && s.contains("watch=1")
            && s.contains("resourceVersion=103")),
        "the dropped watch resumes from the bookmark's version: {seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|s| s.starts_with("/api/v1/events?") && !s.contains("watch=1"))
            .count(),
        2,
        "410 relists once: {seen:?}"
    );

    // k8sobjects: pulls of the pods, repeated; watch records of the new-style events.
    wait_until(
        "two pulls and the watched events",
        Duration::from_secs(20),
        || {
            let r = records(&sink.store.logs.lock().unwrap());
            r.iter()
                .filter(|(_, a, _, _)| {
                    a.get("k8s.resource.name").map(String::as_str) == Some("pods")
                })
                .count()
                >= 4
                && r.iter()
                    .any(|(_, a, _, _)| a.get("event.name").map(String::as_str) == Some("x.2"))
        },
    );
    let objects: Vec<Rec> = records(&sink.store.logs.lock().unwrap())
        .into_iter()
        .filter(|(_, a, _, _)| a.contains_key("k8s.resource.name"))
        .collect();
    let pod = objects
        .iter()
        .find(|(_, a, _, _)| a["k8s.resource.name"] == "pods")
        .unwrap();
    assert_eq!(pod.0["k8s.namespace.name"], "shop");
    let body: serde_json::Value = serde_json::from_str(&pod.3).unwrap();
    assert_eq!(body["kind"], "Pod");
    assert_eq!(body["metadata"]["name"], "web-1");
    let mut watched: Vec<(String, serde_json::Value)> = objects
        .iter()
        .filter(|(_, a, _, _)| a["k8s.resource.name"] == "events")
        .map(|(_, a, _, b)| (a["event.name"].clone(), serde_json::from_str(b).unwrap()))
        .collect();
    watched.sort_by(|a, b| a.0.cmp(&b.0));
    // No initial state, no DELETED, nothing from kube-system.
    assert_eq!(
        watched
            .iter()
            .map(|(n, b)| (n.as_str(), b["type"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [("x.1", "ADDED"), ("x.2", "MODIFIED")]
    );
    assert_eq!(watched[1].1["object"]["note"], "second");
    let logs = c.logs();
    assert!(
        logs.contains("widgets"),
        "the missing resource is named: {logs}"
    );

    // The unreachable API: counted, and the rest flowed all along.
    let failures = c.metric(
        "ferrotel_receiver_source_errors_total{receiver=\"k8sevents/down\",source=\"/api/v1/events\"}",
    );
    assert!(failures >= 1.0, "{}", c.self_metrics());
}
