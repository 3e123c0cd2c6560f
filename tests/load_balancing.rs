//! `load_balancing` end to end on 127.0.0.1: an agent spreading traces over three (then four)
//! real ferrotel gateways, each tagging what it forwards with its name; every span of a trace
//! lands on one gateway, adding a fourth moves about a quarter of the traces (to it only), and a
//! gateway stopped mid-run loses nothing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::sink::Sink;
use common::{Collector, free_port, wait_until};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

struct Gateway {
    c: Collector,
    port: u16,
}

fn gateway(name: &str, sink: u16) -> Gateway {
    gateway_on(name, "127.0.0.1", free_port(), sink)
}

/// A gateway listening on `ip:port` (loopback addresses 127.0.0.2, ... stand for pod IPs).
fn gateway_on(name: &str, ip: &str, port: u16, sink: u16) -> Gateway {
    let (health, metrics) = (free_port(), free_port());
    let c = Collector::start(
        &format!(
            r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "{ip}:{port}" }} }} }}
processors:
  resource:
    attributes: [{{ key: gateway, value: {name}, action: upsert }}]
exporters:
  otlp_grpc: {{ endpoint: "127.0.0.1:{sink}", tls: {{ insecure: true }} }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [resource], exporters: [otlp_grpc] }}
"#
        ),
        &[],
        Some(health),
        None,
    );
    Gateway { c, port }
}

fn agent(gateways: &[u16]) -> (Collector, u16) {
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let hosts: Vec<String> = gateways.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let c = Collector::start(
        &format!(
            r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
exporters:
  loadbalancing:
    routing_key: traceID
    protocol:
      otlp:
        tls: {{ insecure: true }}
        timeout: 2s
        retry_on_failure: {{ initial_interval: 100ms, max_interval: 300ms }}
    resolver:
      static:
        hostnames: [{}]
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [loadbalancing] }}
"#,
            hosts.join(", ")
        ),
        &[],
        Some(health),
        None,
    );
    (c, grpc)
}

/// Round `round` of `traces` traces: one span per trace, ids derived from both.
fn round(traces: u64, round: u64, run: u64) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..traces)
                    .map(|t| Span {
                        trace_id: [t.to_be_bytes(), 0x5eed_u64.to_be_bytes()].concat(),
                        span_id: (run << 40 | t << 8 | round).to_be_bytes().to_vec(),
                        name: format!("t{t}"),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn send(rt: &tokio::runtime::Runtime, port: u16, req: ExportTraceServiceRequest) {
    rt.block_on(async {
        let mut c = TraceServiceClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        c.export(req).await.unwrap();
    });
}

/// span id → gateway, for the spans of run `run`.
fn landed(sink: &Sink, run: u64) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    for r in sink.store.spans.lock().unwrap().iter() {
        let gw = r
            .resource
            .as_ref()
            .and_then(|res| res.attributes.iter().find(|kv| kv.key == "gateway"))
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for s in r.scope_spans.iter().flat_map(|s| &s.spans) {
            let id = u64::from_be_bytes(s.span_id[..8].try_into().unwrap());
            if id >> 40 == run {
                out.insert(id, gw.clone());
            }
        }
    }
    out
}

/// trace → the gateways its spans landed on.
fn by_trace(spans: &BTreeMap<u64, String>) -> BTreeMap<u64, BTreeSet<String>> {
    let mut out: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for (id, gw) in spans {
        out.entry((id >> 8) & 0xffff_ffff)
            .or_default()
            .insert(gw.clone());
    }
    out
}

#[test]
fn traces_stay_whole_spread_move_a_quarter_and_survive_a_stopped_gateway() {
    const TRACES: u64 = 300;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sink = Sink::start();
    let mut gws: Vec<Gateway> = (1..=3)
        .map(|i| gateway(&format!("g{i}"), sink.port))
        .collect();
    let ports: Vec<u16> = gws.iter().map(|g| g.port).collect();

    // Run 1: three gateways, each trace's three spans in three separate requests.
    let (a1, a1_port) = agent(&ports);
    for r in 0..3 {
        send(&rt, a1_port, round(TRACES, r, 1));
    }
    wait_until("run 1", Duration::from_secs(30), || {
        landed(&sink, 1).len() == 3 * TRACES as usize
    });
    let run1 = by_trace(&landed(&sink, 1));
    assert!(
        run1.values().all(|g| g.len() == 1),
        "a trace was split over gateways"
    );
    let owner1: BTreeMap<u64, String> = run1
        .iter()
        .map(|(t, g)| (*t, g.iter().next().unwrap().clone()))
        .collect();
    for g in ["g1", "g2", "g3"] {
        let n = owner1.values().filter(|o| *o == g).count();
        assert!(n > TRACES as usize / 6, "{g} got {n} of {TRACES} traces");
    }
    drop(a1);

    // Run 2: the same trace ids through an agent that also knows a fourth gateway.
    gws.push(gateway("g4", sink.port));
    let mut four = ports.clone();
    four.push(gws[3].port);
    let (a2, a2_port) = agent(&four);
    send(&rt, a2_port, round(TRACES, 0, 2));
    wait_until("run 2", Duration::from_secs(30), || {
        landed(&sink, 2).len() == TRACES as usize
    });
    let run2 = by_trace(&landed(&sink, 2));
    let mut moved = 0;
    for (t, g) in &run2 {
        let now = g.iter().next().unwrap();
        if *now != owner1[t] {
            moved += 1;
            assert_eq!(now, "g4", "trace {t} moved between old gateways");
        }
    }
    let share = moved as f64 / TRACES as f64;
    assert!(
        (0.12..0.38).contains(&share),
        "{moved} of {TRACES} traces moved"
    );
    drop(a2);

    // Run 3: three gateways; g2 stops after the first round; nothing is lost.
    let (a3, a3_port) = agent(&ports);
    send(&rt, a3_port, round(TRACES, 0, 3));
    wait_until("run 3, round 0", Duration::from_secs(30), || {
        landed(&sink, 3).len() == TRACES as usize
    });
    assert!(gws[1].c.terminate().success());
    for r in 1..3 {
        send(&rt, a3_port, round(TRACES, r, 3));
    }
    wait_until(
        "run 3: every span despite g2 stopping",
        Duration::from_secs(60),
        || landed(&sink, 3).len() == 3 * TRACES as usize,
    );
    let after: Vec<String> = landed(&sink, 3)
        .iter()
        .filter(|(id, _)| *id & 0xff > 0)
        .map(|(_, g)| g.clone())
        .collect();
    assert!(
        after.iter().all(|g| g != "g2"),
        "nothing lands on the stopped gateway"
    );
    assert!(
        a3.logs().contains("routing its data to the others"),
        "{}",
        a3.logs()
    );
}

/// A stand-in Kubernetes API for `resolver.k8s` (no cluster runs here): the EndpointSlice list
/// of Service `gw` in namespace `obs` in the API's JSON (`discovery.k8s.io/v1`, with a
/// not-ready endpoint that must be ignored), and a watch that, once `rollout` is notified,
/// reports the slice MODIFIED: one pod gone, a new one ready.
fn endpointslice_api(
    rt: &tokio::runtime::Runtime,
    port: u16,
    gw_port: u16,
    rollout: std::sync::Arc<tokio::sync::Notify>,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use axum::body::Body;
    use axum::http::{StatusCode, Uri};
    use axum::response::Response;
    use futures::StreamExt;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let st = seen.clone();
    let slice = |ips: &[(&str, bool)]| {
        serde_json::json!({
            "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": "gw-abc12", "namespace": "obs", "resourceVersion": "7",
                "labels": {"kubernetes.io/service-name": "gw"}},
            "addressType": "IPv4",
            "endpoints": ips.iter().map(|(ip, ready)| serde_json::json!({
                "addresses": [ip], "conditions": {"ready": ready, "serving": ready, "terminating": false}
            })).collect::<Vec<_>>(),
            "ports": [{"name": "otlp-grpc", "port": gw_port, "protocol": "TCP"}]
        })
    };
    let before = slice(&[
        ("127.0.0.2", true),
        ("127.0.0.3", true),
        ("127.0.0.9", false),
    ]);
    let after = slice(&[("127.0.0.2", true), ("127.0.0.4", true)]);
    let handler = move |uri: Uri| {
        let (st, rollout, before, after) =
            (st.clone(), rollout.clone(), before.clone(), after.clone());
        async move {
            st.lock().unwrap().push(uri.to_string());
            if uri.path() != "/apis/discovery.k8s.io/v1/namespaces/obs/endpointslices"
                || !uri
                    .query()
                    .unwrap_or("")
                    .contains("labelSelector=kubernetes.io%2Fservice-name%3Dgw")
            {
                return Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body(Body::empty())
                    .unwrap();
            }
            if !uri.query().unwrap_or("").contains("watch=1") {
                return Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(
                        serde_json::json!({"kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1",
                            "metadata": {"resourceVersion": "7"}, "items": [before]})
                        .to_string(),
                    ))
                    .unwrap();
            }
            let ev = serde_json::json!({"type": "MODIFIED", "object": after}).to_string() + "\n";
            let stream = futures::stream::once(async move {
                rollout.notified().await;
                Ok::<_, std::io::Error>(axum::body::Bytes::from(ev))
            })
            .chain(futures::stream::pending());
            Response::builder().body(Body::from_stream(stream)).unwrap()
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

/// `resolver.k8s` follows the Service's EndpointSlices (ready endpoints only): a rollout that
/// replaces a pod moves its traces to the new one, and what was meant for the pod that went
/// down first (its queue and the requests routed to it) is routed to the others, not lost.
#[test]
fn k8s_resolver_follows_endpointslices_through_a_rollout() {
    const TRACES: u64 = 200;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sink = Sink::start();
    let gw_port = free_port();
    let mut a = gateway_on("a", "127.0.0.2", gw_port, sink.port);
    let mut b = gateway_on("b", "127.0.0.3", gw_port, sink.port);
    let api_port = free_port();
    let rollout = std::sync::Arc::new(tokio::sync::Notify::new());
    let seen = endpointslice_api(&rt, api_port, gw_port, rollout.clone());
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(
        &kc,
        format!("apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{api_port}\ncontexts:\n- name: t\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: lb-token\n"),
    )
    .unwrap();
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let agent = Collector::start(
        &format!(
            r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
exporters:
  load_balancing:
    routing_key: traceID
    protocol:
      otlp:
        tls: {{ insecure: true }}
        timeout: 2s
        retry_on_failure: {{ initial_interval: 100ms, max_interval: 300ms }}
    resolver:
      k8s: {{ service: gw.obs, ports: [{gw_port}], timeout: 5s }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [load_balancing] }}
"#
        ),
        &[("KUBECONFIG", kc.display().to_string())],
        Some(health),
        None,
    );
    // Before the rollout: the two ready pods share the traces; the not-ready one gets none.
    send(&rt, grpc, round(TRACES, 0, 9));
    wait_until("round 0", Duration::from_secs(30), || {
        landed(&sink, 9).len() == TRACES as usize
    });
    let owners: BTreeSet<String> = landed(&sink, 9).values().cloned().collect();
    assert_eq!(owners, ["a", "b"].map(String::from).into(), "{owners:?}");
    // Pod b goes down before the API says so: what routes to it goes to a instead.
    assert!(b.c.terminate().success());
    send(&rt, grpc, round(TRACES, 1, 9));
    wait_until("round 1 despite b down", Duration::from_secs(60), || {
        landed(&sink, 9).len() == 2 * TRACES as usize
    });
    // The rollout: b leaves the slice, c (a new pod) joins.
    let mut c = gateway_on("c", "127.0.0.4", gw_port, sink.port);
    rollout.notify_one();
    wait_until("c added", Duration::from_secs(20), || {
        agent
            .logs()
            .contains(&format!("backend=127.0.0.4:{gw_port}"))
    });
    send(&rt, grpc, round(TRACES, 2, 9));
    wait_until("round 2", Duration::from_secs(60), || {
        landed(&sink, 9).len() == 3 * TRACES as usize
    });
    let round2: BTreeSet<String> = landed(&sink, 9)
        .iter()
        .filter(|(id, _)| *id & 0xff == 2)
        .map(|(_, g)| g.clone())
        .collect();
    assert_eq!(round2, ["a", "c"].map(String::from).into(), "{round2:?}");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().any(|u| u.contains("watch=1")), "{seen:?}");
    assert!(
        !agent.logs().contains("127.0.0.9"),
        "the not-ready endpoint is never a backend"
    );
    assert!(a.c.terminate().success());
    assert!(c.c.terminate().success());
}

/// `sending_queue.storage` on `load_balancing`: one persistent queue in front of the routing
/// (the backends send in place). Spans acknowledged while the only backend is down survive
/// `kill -9` and are delivered after a restart.
#[test]
fn a_persistent_queue_in_front_of_the_balancer_survives_kill_9() {
    let sink = Sink::start();
    sink.store
        .refuse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let (grpc, health, metrics) = (free_port(), free_port(), free_port());
    let cfg = dir.path().join("lb.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
exporters:
  load_balancing:
    protocol:
      otlp:
        tls: {{ insecure: true }}
        retry_on_failure: {{ initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 0s }}
    sending_queue: {{ storage: file_storage }}
    resolver:
      static: {{ hostnames: ["127.0.0.1:{}"] }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
  file_storage: {{ directory: "{}" }}
service:
  extensions: [health_check, file_storage]
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [load_balancing] }}
"#,
            sink.port,
            dir.path().display()
        ),
    )
    .unwrap();
    let start = || {
        Collector::start_file(
            &cfg,
            &[],
            Some(health),
            Some(metrics),
            tempfile::tempdir().unwrap(),
        )
    };
    let mut c = start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for i in 0..5u8 {
        common::export_traces(&rt, grpc, common::one_span(i + 1, 1, "queued")).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.store.span_count(), 0, "the backend is down");
    c.kill9();
    sink.store
        .refuse
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let c = start();
    wait_until("the queued spans arrive", Duration::from_secs(15), || {
        sink.store.span_count() >= 5
    });
    let restored = common::parse_metric(
        &c.self_metrics(),
        "ferrotel_exporter_queue_restored_items_total{exporter=\"load_balancing\",data_type=\"traces\"}",
    );
    assert_eq!(restored, 5.0);
}
