use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, metric::Data, number_data_point};
use serde_json::json;
use std::time::Duration;

use super::*;
use crate::config::node::parse as yaml;

fn cfg(text: &str) -> Config {
    parse_config(&yaml(text).unwrap()).unwrap()
}

/// The value of `metric` on the resource with attribute `k = v`, for the point whose
/// attributes include `with`.
fn value(
    rms: &[ResourceMetrics],
    (k, v): (&str, &str),
    metric: &str,
    with: &[(&str, &str)],
) -> Option<f64> {
    let rm = rms.iter().find(|rm| {
        rm.resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .any(|a| a.key == k && crate::signal::value::option_text(&a.value) == v)
            && rm.scope_metrics[0].metrics.iter().any(|m| m.name == metric)
    })?;
    let m = rm.scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == metric)?;
    let points = match m.data.as_ref()? {
        Data::Gauge(g) => &g.data_points,
        Data::Sum(s) => &s.data_points,
        _ => return None,
    };
    let p = points.iter().find(|p| {
        with.iter()
            .all(|(k, v)| crate::signal::value::find_str(&p.attributes, k) == Some(*v))
    })?;
    Some(match p.value? {
        number_data_point::Value::AsDouble(d) => d,
        number_data_point::Value::AsInt(i) => i as f64,
    })
}

fn attr(rms: &[ResourceMetrics], (k, v): (&str, &str), want: &str) -> Option<String> {
    rms.iter()
        .map(|rm| &rm.resource.as_ref().unwrap().attributes)
        .find(|a| crate::signal::value::find_str(a, k) == Some(v))
        .and_then(|a| crate::signal::value::find_str(a, want).map(str::to_owned))
}

fn state() -> State {
    let mut s = State::default();
    s.listed(
        Kind::Node,
        vec![json!({
            "metadata": {"name": "node-1", "uid": "n-1"},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "PIDPressure", "status": "Unknown"}
                ],
                "allocatable": {"cpu": "3800m", "memory": "7Gi", "pods": "110", "ephemeral-storage": "100Gi"},
                "nodeInfo": {"kubeletVersion": "v1.31.2", "containerRuntimeVersion": "containerd://1.7.22", "operatingSystem": "linux"}
            }
        })],
    );
    s.listed(
        Kind::Pod,
        vec![json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "p-1"},
            "spec": {"nodeName": "node-1", "containers": [
                {"name": "web", "image": "shop/web:1.4", "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi", "ephemeral-storage": "2Gi"}}},
                {"name": "sidecar", "image": "envoy:1.30"}
            ]},
            "status": {"phase": "Running", "qosClass": "Burstable", "containerStatuses": [
                {"name": "web", "ready": true, "restartCount": 3, "image": "docker.io/shop/web:1.4", "containerID": "containerd://c1", "state": {"running": {}}, "lastState": {"terminated": {"reason": "OOMKilled"}}},
                {"name": "sidecar", "ready": false, "restartCount": 9, "image": "envoy:1.30", "containerID": "containerd://c2", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}
        }),
        json!({
            "metadata": {"name": "evicted-1", "namespace": "shop", "uid": "p-2"},
            "spec": {"nodeName": "node-1", "containers": []},
            "status": {"phase": "Failed", "reason": "Evicted"}
        })],
    );
    s.listed(
        Kind::Deployment,
        vec![json!({"metadata": {"name": "web", "namespace": "shop", "uid": "d-1"}, "spec": {"replicas": 3}, "status": {"availableReplicas": 2}})],
    );
    s.listed(
        Kind::Job,
        vec![json!({"metadata": {"name": "backup", "namespace": "ops", "uid": "j-1"}, "spec": {"completions": 1, "parallelism": 1}, "status": {"failed": 2}})],
    );
    s.listed(
        Kind::ResourceQuota,
        vec![json!({"metadata": {"name": "q", "namespace": "shop", "uid": "q-1"}, "status": {"hard": {"requests.cpu": "4", "pods": "20"}, "used": {"requests.cpu": "1500m", "pods": "7"}}})],
    );
    s.listed(
        Kind::Namespace,
        vec![
            json!({"metadata": {"name": "old", "uid": "ns-1"}, "status": {"phase": "Terminating"}}),
        ],
    );
    s.listed(
        Kind::Hpa,
        vec![json!({"metadata": {"name": "web", "namespace": "shop", "uid": "h-1"}, "spec": {"maxReplicas": 10}, "status": {"currentReplicas": 3, "desiredReplicas": 4}})],
    );
    s
}

#[test]
fn the_state_becomes_the_collectors_metrics() {
    let c = cfg(
        "node_conditions_to_report: [Ready, MemoryPressure, PIDPressure]\nallocatable_types_to_report: [cpu, memory, pods]\nmetrics:\n  k8s.node.condition: {enabled: true}\n  k8s.pod.status_reason: {enabled: true}\n  k8s.container.status.reason: {enabled: true}\n  k8s.container.status.state: {enabled: true}\nresource_attributes:\n  k8s.kubelet.version: {enabled: true}\n",
    );
    let rms = metrics::build(&c, &state(), 42);
    let node = ("k8s.node.name", "node-1");
    assert_eq!(
        value(&rms, node, "k8s.node.condition_ready", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&rms, node, "k8s.node.condition_memory_pressure", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&rms, node, "k8s.node.condition_pid_pressure", &[]),
        Some(-1.0)
    );
    assert_eq!(
        value(&rms, node, "k8s.node.allocatable_cpu", &[]),
        Some(3.8)
    );
    assert_eq!(
        value(&rms, node, "k8s.node.allocatable_memory", &[]),
        Some(7.0 * 1024.0 * 1024.0 * 1024.0)
    );
    assert_eq!(
        value(&rms, node, "k8s.node.allocatable_pods", &[]),
        Some(110.0)
    );
    assert_eq!(
        value(&rms, node, "k8s.node.condition", &[("condition", "Ready")]),
        Some(1.0)
    );
    assert_eq!(
        attr(&rms, node, "k8s.kubelet.version").as_deref(),
        Some("v1.31.2")
    );
    assert_eq!(attr(&rms, node, "k8s.node.uid").as_deref(), Some("n-1"));

    let pod = ("k8s.pod.uid", "p-1");
    assert_eq!(value(&rms, pod, "k8s.pod.phase", &[]), Some(2.0));
    assert_eq!(
        value(&rms, ("k8s.pod.uid", "p-2"), "k8s.pod.phase", &[]),
        Some(4.0)
    );
    assert_eq!(
        value(&rms, ("k8s.pod.uid", "p-2"), "k8s.pod.status_reason", &[]),
        Some(1.0)
    );
    assert_eq!(value(&rms, pod, "k8s.pod.status_reason", &[]), None);

    let web = ("container.id", "c1");
    assert_eq!(
        attr(&rms, web, "k8s.container.name").as_deref(),
        Some("web")
    );
    assert_eq!(
        attr(&rms, web, "container.image.name").as_deref(),
        Some("docker.io/shop/web")
    );
    assert_eq!(
        attr(&rms, web, "container.image.tag").as_deref(),
        Some("1.4")
    );
    assert_eq!(attr(&rms, web, "k8s.node.name").as_deref(), Some("node-1"));
    assert_eq!(value(&rms, web, "k8s.container.restarts", &[]), Some(3.0));
    assert_eq!(value(&rms, web, "k8s.container.ready", &[]), Some(1.0));
    assert_eq!(
        value(&rms, web, "k8s.container.cpu_request", &[]),
        Some(0.25)
    );
    assert_eq!(value(&rms, web, "k8s.container.cpu_limit", &[]), Some(1.0));
    assert_eq!(
        value(&rms, web, "k8s.container.memory_limit", &[]),
        Some(536870912.0)
    );
    assert_eq!(
        value(&rms, web, "k8s.container.ephemeralstorage_limit", &[]),
        Some(2.0 * 1024f64.powi(3))
    );
    assert_eq!(value(&rms, web, "k8s.container.storage_limit", &[]), None);
    assert_eq!(
        value(
            &rms,
            web,
            "k8s.container.status.state",
            &[("k8s.container.status.state", "running")]
        ),
        Some(1.0)
    );
    let side = ("container.id", "c2");
    assert_eq!(value(&rms, side, "k8s.container.ready", &[]), Some(0.0));
    assert_eq!(
        value(
            &rms,
            side,
            "k8s.container.status.reason",
            &[("k8s.container.status.reason", "CrashLoopBackOff")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &rms,
            side,
            "k8s.container.status.reason",
            &[("k8s.container.status.reason", "OOMKilled")]
        ),
        Some(0.0)
    );
    assert_eq!(value(&rms, side, "k8s.container.cpu_request", &[]), None);

    let dep = ("k8s.deployment.name", "web");
    assert_eq!(value(&rms, dep, "k8s.deployment.desired", &[]), Some(3.0));
    assert_eq!(value(&rms, dep, "k8s.deployment.available", &[]), Some(2.0));
    assert_eq!(
        attr(&rms, dep, "k8s.namespace.name").as_deref(),
        Some("shop")
    );
    let job = ("k8s.job.name", "backup");
    assert_eq!(value(&rms, job, "k8s.job.failed_pods", &[]), Some(2.0));
    assert_eq!(
        value(&rms, job, "k8s.job.desired_successful_pods", &[]),
        Some(1.0)
    );
    let q = ("k8s.resourcequota.name", "q");
    assert_eq!(
        value(
            &rms,
            q,
            "k8s.resource_quota.hard_limit",
            &[("resource", "requests.cpu")]
        ),
        Some(4000.0)
    );
    assert_eq!(
        value(
            &rms,
            q,
            "k8s.resource_quota.used",
            &[("resource", "requests.cpu")]
        ),
        Some(1500.0)
    );
    assert_eq!(
        value(&rms, q, "k8s.resource_quota.used", &[("resource", "pods")]),
        Some(7.0)
    );
    assert_eq!(
        value(
            &rms,
            ("k8s.namespace.name", "old"),
            "k8s.namespace.phase",
            &[]
        ),
        Some(0.0)
    );
    let hpa = ("k8s.hpa.name", "web");
    assert_eq!(value(&rms, hpa, "k8s.hpa.min_replicas", &[]), Some(1.0));
    assert_eq!(value(&rms, hpa, "k8s.hpa.desired_replicas", &[]), Some(4.0));
}

#[test]
fn defaults_switches_and_watch_changes() {
    let c = cfg("{}\n");
    assert_eq!(c.node_conditions_to_report, ["Ready"]);
    assert_eq!(c.collection_interval, Duration::from_secs(10));
    let mut s = state();
    let rms = metrics::build(&c, &s, 1);
    let node = ("k8s.node.name", "node-1");
    assert_eq!(
        value(&rms, node, "k8s.node.condition_ready", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&rms, node, "k8s.node.condition_memory_pressure", &[]),
        None
    );
    assert_eq!(
        value(&rms, node, "k8s.node.condition", &[("condition", "Ready")]),
        None
    );
    assert!(attr(&rms, node, "k8s.kubelet.version").is_none());
    // A pod deleted and a deployment scaled, as watch events bring them.
    s.deleted(Kind::Pod, &json!({"metadata": {"uid": "p-2"}}));
    s.applied(
        Kind::Deployment,
        json!({"metadata": {"name": "web", "namespace": "shop", "uid": "d-1"}, "spec": {"replicas": 5}, "status": {"availableReplicas": 5}}),
    );
    let rms = metrics::build(&c, &s, 2);
    assert_eq!(
        value(&rms, ("k8s.pod.uid", "p-2"), "k8s.pod.phase", &[]),
        None
    );
    assert_eq!(
        value(
            &rms,
            ("k8s.deployment.name", "web"),
            "k8s.deployment.desired",
            &[]
        ),
        Some(5.0)
    );
    let off = cfg(
        "metrics:\n  k8s.pod.phase: {enabled: false}\n  k8s.node.condition_ready: {enabled: false}\n",
    );
    let rms = metrics::build(&off, &s, 3);
    assert_eq!(
        value(&rms, ("k8s.pod.uid", "p-1"), "k8s.pod.phase", &[]),
        None
    );
    assert_eq!(value(&rms, node, "k8s.node.condition_ready", &[]), None);
}

#[test]
fn config_errors_name_the_key() {
    let err = |t: &str| parse_config(&yaml(t).unwrap()).unwrap_err().path_string();
    assert_eq!(
        err("metrics:\n  k8s.pod.nope: {enabled: true}\n"),
        "metrics.k8s.pod.nope"
    );
    assert_eq!(
        err("metrics:\n  k8s.service.endpoint.count: {enabled: true}\n"),
        "metrics.k8s.service.endpoint.count"
    );
    assert_eq!(err("metadata_exporters: [otlp]\n"), "metadata_exporters");
    assert_eq!(err("distribution: openshift\n"), "distribution");
    assert_eq!(err("collection_interval: 0s\n"), "collection_interval");
    // What the chart and real configs write.
    cfg("collection_interval: 10s\nk8s_leader_elector: k8s_leader_elector/k8s_cluster\n");
    cfg(
        "auth_type: serviceAccount\nnode_conditions_to_report: [Ready, MemoryPressure, PIDPressure, DiskPressure, NetworkUnavailable]\nallocatable_types_to_report: [cpu, memory, pods]\nmetrics:\n  k8s.node.condition: {enabled: true}\n  k8s.pod.status_reason: {enabled: true}\n  k8s.service.endpoint.count: {enabled: false}\n",
    );
}
