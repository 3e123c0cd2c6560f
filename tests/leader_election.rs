//! `k8s_leader_elector` with two collector processes. No API server runs here, so the test
//! serves a strict stand-in for the `coordination.k8s.io/v1` Lease endpoints as the API
//! reference describes them: `GET` (404 when absent), `POST` to create (409 when it exists),
//! `PUT` to replace, refused with 409 Conflict unless the body carries the current
//! `metadata.resourceVersion` (optimistic concurrency, which is what makes two candidates safe).
//! Each collector pulls pods with `k8sobjects` every 200 ms under the election and tags what it
//! sends; exactly one sends at a time, and when the leader is killed (SIGKILL: it cannot release
//! the Lease) the other takes over within the lease duration.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use common::sink::Sink;
use common::{Collector, free_port, wait_until};
use serde_json::json;

#[derive(Default)]
struct Leases {
    lease: Mutex<Option<serde_json::Value>>,
    version: Mutex<u64>,
    conflicts: Mutex<usize>,
}

fn reply(code: u16, body: serde_json::Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn start_api(rt: &tokio::runtime::Runtime, port: u16) -> Arc<Leases> {
    let st = Arc::new(Leases::default());
    let s = st.clone();
    let handler = move |method: Method, uri: Uri, body: Bytes| {
        let st = s.clone();
        async move {
            let coll = "/apis/coordination.k8s.io/v1/namespaces/observability/leases";
            let one = format!("{coll}/ferrotel-cluster");
            let path = uri.path();
            let status = |code: u16, reason: &str| {
                reply(
                    code,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code}),
                )
            };
            match (method.as_str(), path) {
                ("GET", p) if p == one => match st.lease.lock().unwrap().clone() {
                    Some(l) => reply(200, l),
                    None => status(404, "NotFound"),
                },
                ("POST", p) if p == coll => {
                    let mut lease = st.lease.lock().unwrap();
                    if lease.is_some() {
                        *st.conflicts.lock().unwrap() += 1;
                        return status(409, "AlreadyExists");
                    }
                    let Ok(mut obj) = serde_json::from_slice::<serde_json::Value>(&body) else {
                        return status(400, "BadRequest");
                    };
                    if obj.pointer("/metadata/name").and_then(|n| n.as_str())
                        != Some("ferrotel-cluster")
                        || obj.pointer("/spec/holderIdentity").is_none()
                    {
                        return status(422, "Invalid");
                    }
                    let mut v = st.version.lock().unwrap();
                    *v += 1;
                    obj["metadata"]["resourceVersion"] = json!(v.to_string());
                    *lease = Some(obj.clone());
                    reply(201, obj)
                }
                ("PUT", p) if p == one => {
                    let mut lease = st.lease.lock().unwrap();
                    let Ok(mut obj) = serde_json::from_slice::<serde_json::Value>(&body) else {
                        return status(400, "BadRequest");
                    };
                    let mut v = st.version.lock().unwrap();
                    let given = obj
                        .pointer("/metadata/resourceVersion")
                        .and_then(|r| r.as_str())
                        .map(str::to_owned);
                    if lease.is_none() {
                        return status(404, "NotFound");
                    }
                    if given != Some(v.to_string()) {
                        *st.conflicts.lock().unwrap() += 1;
                        return status(409, "Conflict");
                    }
                    *v += 1;
                    obj["metadata"]["resourceVersion"] = json!(v.to_string());
                    *lease = Some(obj.clone());
                    reply(200, obj)
                }
                ("GET", "/api/v1") => reply(
                    200,
                    json!({
                        "kind": "APIResourceList", "groupVersion": "v1",
                        "resources": [{"name": "pods", "namespaced": true, "kind": "Pod"}]
                    }),
                ),
                ("GET", "/api/v1/pods") => reply(
                    200,
                    json!({
                        "kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "9"},
                        "items": [{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "resourceVersion": "8"}}]
                    }),
                ),
                _ => status(404, "NotFound"),
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
    st
}

fn collector(tag: &str, sink: u16, kubeconfig: &std::path::Path) -> Collector {
    let metrics = free_port();
    let config = format!(
        r#"
extensions:
  k8s_leader_elector/cluster:
    auth_type: kubeConfig
    lease_name: ferrotel-cluster
    lease_namespace: observability
    lease_duration: 2s
    renew_deadline: 1500ms
    retry_period: 250ms
receivers:
  k8sobjects:
    auth_type: kubeConfig
    k8s_leader_elector: k8s_leader_elector/cluster
    objects:
      - {{name: pods, mode: pull, interval: 200ms}}
processors:
  resource:
    attributes:
      - {{key: collector, value: {tag}, action: insert}}
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink}
    tls: {{insecure: true}}
service:
  extensions: [k8s_leader_elector/cluster]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    logs:
      receivers: [k8sobjects]
      processors: [resource]
      exporters: [otlp]
"#
    );
    Collector::start(
        &config,
        &[("KUBECONFIG", kubeconfig.display().to_string())],
        None,
        Some(metrics),
    )
}

/// (collector tag, observed time in ns) of every record the sink has.
fn sent(sink: &Sink) -> Vec<(String, u64)> {
    sink.store
        .logs
        .lock()
        .unwrap()
        .iter()
        .flat_map(|rl| {
            let tag = rl
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "collector"))
                .map(|kv| common::value_text(&kv.value))
                .unwrap_or_default();
            rl.scope_logs
                .iter()
                .flat_map(|s| s.log_records.iter())
                .map(move |r| (tag.clone(), r.observed_time_unix_nano))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn holder(st: &Leases) -> String {
    st.lease
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|l| {
            l.pointer("/spec/holderIdentity")?
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

#[test]
fn one_of_two_collectors_runs_the_cluster_receivers_and_the_other_takes_over() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let leases = start_api(&rt, port);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster: {{server: 'http://127.0.0.1:{port}'}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user: {{token: t}}\n"),
    )
    .unwrap();
    let sink = Sink::start();
    let mut a = collector("a", sink.port, &kubeconfig);
    let mut b = collector("b", sink.port, &kubeconfig);
    wait_until("a leader sends", Duration::from_secs(20), || {
        sent(&sink).len() >= 3
    });
    // Over a while, one collector only.
    std::thread::sleep(Duration::from_secs(2));
    let before = sent(&sink);
    let tags: std::collections::BTreeSet<_> = before.iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(tags.len(), 1, "both collectors sent: {before:?}");
    let leader = tags.into_iter().next().unwrap();
    assert!(
        holder(&leases).starts_with(&crate_host()),
        "the Lease holder is a host_suffix identity: {}",
        holder(&leases)
    );
    let first_holder = holder(&leases);

    // The leader dies without releasing the Lease: the other waits it out and takes over.
    let (dead, survivor) = if leader == "a" {
        (&mut a, "b")
    } else {
        (&mut b, "a")
    };
    dead.kill9();
    let last_of_dead = before.iter().map(|(_, t)| *t).max().unwrap();
    wait_until("the survivor sends", Duration::from_secs(20), || {
        sent(&sink).iter().any(|(t, _)| t == survivor)
    });
    let after = sent(&sink);
    let first_of_survivor = after
        .iter()
        .filter(|(t, _)| t == survivor)
        .map(|(_, t)| *t)
        .min()
        .unwrap();
    let gap = Duration::from_nanos(first_of_survivor.saturating_sub(last_of_dead));
    // The lease duration (2s), plus at most one retry period and one pull interval; 1s spare
    // for a loaded machine.
    assert!(
        gap <= Duration::from_millis(2000 + 250 + 200 + 1000),
        "the survivor took {gap:?} to take over"
    );
    assert_ne!(holder(&leases), first_holder);
    // Once it leads, the survivor alone sends.
    let n = after.len();
    std::thread::sleep(Duration::from_secs(1));
    assert!(sent(&sink)[n..].iter().all(|(t, _)| t == survivor));

    // A graceful stop releases the Lease: the holder is cleared at once.
    let s = if survivor == "a" { &mut a } else { &mut b };
    assert!(s.terminate().success());
    assert_eq!(holder(&leases), "", "a stopped leader releases the Lease");
}

/// This machine's host name, the prefix of every candidate's identity.
fn crate_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}
