use std::collections::BTreeMap;

use opentelemetry_proto::tonic::metrics::v1::{
    Metric, ResourceMetrics, metric::Data, number_data_point,
};

use super::*;
use crate::config::node::parse as yaml;

/// A Summary and the kubelet's pod list as the kubelet serves them (written from
/// `stats/v1alpha1` and `core/v1`); the integration test serves the same files.
const SUMMARY: &str = include_str!("../../../tests/data/kubelet/summary.json");
const PODS: &str = include_str!("../../../tests/data/kubelet/pods.json");

fn cfg(text: &str) -> Config {
    parse_config(&yaml(text).unwrap()).unwrap()
}

fn err(text: &str) -> (String, String) {
    let e = parse_config(&yaml(text).unwrap()).unwrap_err();
    (e.path_string(), e.to_string())
}

fn attrs(rm: &ResourceMetrics) -> BTreeMap<String, String> {
    rm.resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => {
                    s.clone()
                }
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn metric<'a>(rm: &'a ResourceMetrics, name: &str) -> Option<&'a Metric> {
    rm.scope_metrics[0].metrics.iter().find(|m| m.name == name)
}

/// The value of the point of `name` whose attributes include `with`.
fn value(rm: &ResourceMetrics, name: &str, with: &[(&str, &str)]) -> Option<f64> {
    let m = metric(rm, name)?;
    let points = match m.data.as_ref()? {
        Data::Gauge(g) => &g.data_points,
        Data::Sum(s) => &s.data_points,
        _ => return None,
    };
    let p = points.iter().find(|p| {
        with.iter().all(|(k, v)| {
            p.attributes.iter().any(|a| {
                a.key == *k
                    && matches!(a.value.as_ref().and_then(|v| v.value.as_ref()),
                        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) if s == v)
            })
        })
    })?;
    Some(match p.value? {
        number_data_point::Value::AsDouble(d) => d,
        number_data_point::Value::AsInt(i) => i as f64,
    })
}

fn find<'a>(rms: &'a [ResourceMetrics], with: &[(&str, &str)]) -> Vec<&'a ResourceMetrics> {
    rms.iter()
        .filter(|rm| {
            let a = attrs(rm);
            with.iter()
                .all(|(k, v)| a.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

fn extra() -> metrics::Extra {
    let list: crate::kube::objects::List<Pod> = serde_json::from_str(PODS).unwrap();
    metrics::Extra {
        pods: list
            .items
            .into_iter()
            .map(|p| (p.metadata.uid.clone(), p))
            .collect(),
        node_cpu: Some(4.0),
        node_memory: Some(8.0 * 1024.0 * 1024.0 * 1024.0),
    }
}

const FULL: &str = "auth_type: none\nnode: node-1\nk8s_api_config: {auth_type: serviceAccount}\nextra_metadata_labels: [container.id, k8s.volume.type]\nmetric_groups: [node, pod, container, volume]\nmetrics:\n  k8s.pod.cpu_limit_utilization: {enabled: true}\n  k8s.pod.cpu_request_utilization: {enabled: true}\n  k8s.pod.memory_request_utilization: {enabled: true}\n  k8s.container.cpu_limit_utilization: {enabled: true}\n  k8s.container.memory_limit_utilization: {enabled: true}\n  k8s.pod.cpu.node.utilization: {enabled: true}\n  k8s.container.ephemeral_storage.usage: {enabled: true}\n  k8s.node.uptime: {enabled: true}\n  k8s.node.pid.usage: {enabled: true}\n  k8s.pod.volume.usage: {enabled: true}\n  container.memory.rss: {enabled: false}\n";

#[test]
fn the_summary_becomes_the_collectors_metrics_per_resource() {
    let s: summary::Summary = serde_json::from_str(SUMMARY).unwrap();
    let now = crate::kube::timestamp_nanos("2026-12-01T10:00:00Z").unwrap();
    let rms = metrics::build(&cfg(FULL), &s, &extra(), now);
    // One node, one pod, two containers, two volumes.
    assert_eq!(rms.len(), 6, "{rms:#?}");

    let node = find(&rms, &[("k8s.node.name", "node-1")]);
    assert_eq!(node.len(), 1);
    let node = node[0];
    assert_eq!(value(node, "k8s.node.cpu.time", &[]), Some(81234.0));
    assert_eq!(value(node, "k8s.node.cpu.usage", &[]), Some(0.35));
    assert_eq!(value(node, "k8s.node.memory.available", &[]), Some(6e9));
    assert_eq!(value(node, "k8s.node.memory.working_set", &[]), Some(2e9));
    assert_eq!(
        value(node, "k8s.node.memory.major_page_faults", &[]),
        Some(78.0)
    );
    assert_eq!(value(node, "k8s.node.filesystem.usage", &[]), Some(6e10));
    assert_eq!(value(node, "k8s.node.pid.usage", &[]), Some(512.0));
    // Started 26 hours before the scrape.
    assert_eq!(value(node, "k8s.node.uptime", &[]), Some(26.0 * 3600.0));
    let io = &[("interface", "eth0"), ("direction", "receive")];
    assert_eq!(value(node, "k8s.node.network.io", io), Some(111111.0));
    assert_eq!(
        value(
            node,
            "k8s.node.network.errors",
            &[("direction", "transmit")]
        ),
        Some(2.0)
    );
    // Only the default interface unless collect_all_network_interfaces says otherwise.
    assert_eq!(
        value(node, "k8s.node.network.io", &[("interface", "cni0")]),
        None
    );
    let cpu = metric(node, "k8s.node.cpu.time").unwrap();
    let Some(Data::Sum(sum)) = &cpu.data else {
        panic!("cpu.time is a sum")
    };
    assert!(sum.is_monotonic);
    assert_eq!(
        sum.data_points[0].start_time_unix_nano,
        crate::kube::timestamp_nanos("2026-11-30T08:00:00Z").unwrap()
    );
    assert_eq!(cpu.unit, "s");
    // Off by default, and not switched on.
    assert!(metric(node, "k8s.node.filesystem.inode.count").is_none());

    let uid = "11111111-2222-3333-4444-555555555555";
    let pod: Vec<_> = find(&rms, &[("k8s.pod.uid", uid)])
        .into_iter()
        .filter(|rm| !attrs(rm).contains_key("k8s.container.name"))
        .filter(|rm| !attrs(rm).contains_key("k8s.volume.name"))
        .collect();
    assert_eq!(pod.len(), 1);
    let pod = pod[0];
    assert_eq!(
        attrs(pod),
        BTreeMap::from([
            ("k8s.pod.uid".to_string(), uid.to_string()),
            ("k8s.pod.name".into(), "web-7d4b9c-x2x9z".into()),
            ("k8s.namespace.name".into(), "shop".into()),
        ])
    );
    assert_eq!(value(pod, "k8s.pod.cpu.usage", &[]), Some(0.3));
    assert_eq!(value(pod, "k8s.pod.filesystem.usage", &[]), Some(49152.0));
    // The sidecar has no CPU limit: the pod's limit utilization is not written.
    assert_eq!(value(pod, "k8s.pod.cpu_limit_utilization", &[]), None);
    // Requests 250m + 100m.
    let r = value(pod, "k8s.pod.cpu_request_utilization", &[]).unwrap();
    assert!((r - 0.3 / 0.35).abs() < 1e-9, "{r}");
    // Usage 320 MiB against 256 Mi + 64 Mi requested.
    assert_eq!(
        value(pod, "k8s.pod.memory_request_utilization", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(pod, "k8s.pod.cpu.node.utilization", &[]),
        Some(0.3 / 4.0)
    );
    assert_eq!(value(pod, "k8s.pod.volume.usage", &[]), Some(3001000000.0));

    let web = find(&rms, &[("k8s.container.name", "web")]);
    assert_eq!(web.len(), 1);
    let web = web[0];
    assert_eq!(attrs(web)["container.id"], "c0ffee01");
    assert_eq!(attrs(web)["k8s.pod.name"], "web-7d4b9c-x2x9z");
    assert_eq!(value(web, "container.cpu.time", &[]), Some(900.0));
    assert_eq!(value(web, "container.memory.usage", &[]), Some(268435456.0));
    assert!(
        metric(web, "container.memory.rss").is_none(),
        "switched off"
    );
    assert_eq!(value(web, "container.filesystem.usage", &[]), Some(40960.0));
    assert_eq!(
        value(web, "k8s.container.cpu_limit_utilization", &[]),
        Some(0.5)
    );
    assert_eq!(
        value(web, "k8s.container.memory_limit_utilization", &[]),
        Some(0.5)
    );
    assert_eq!(
        value(
            web,
            "k8s.container.ephemeral_storage.usage",
            &[("fs.type", "logs")]
        ),
        Some(8192.0)
    );
    let sidecar = find(&rms, &[("k8s.container.name", "sidecar")])[0];
    assert_eq!(attrs(sidecar)["container.id"], "c0ffee02");
    assert_eq!(
        value(sidecar, "k8s.container.cpu_limit_utilization", &[]),
        None
    );

    let cache = find(&rms, &[("k8s.volume.name", "cache")])[0];
    assert_eq!(attrs(cache)["k8s.volume.type"], "emptyDir");
    assert_eq!(value(cache, "k8s.volume.capacity", &[]), Some(2e6));
    assert_eq!(value(cache, "k8s.volume.inodes.used", &[]), Some(100.0));
    let data = find(&rms, &[("k8s.volume.name", "data")])[0];
    assert_eq!(attrs(data)["k8s.volume.type"], "persistentVolumeClaim");
    assert_eq!(attrs(data)["k8s.persistentvolumeclaim.name"], "data-web-0");
}

#[test]
fn default_groups_and_all_interfaces() {
    let s: summary::Summary = serde_json::from_str(SUMMARY).unwrap();
    let c = cfg("auth_type: none\ncollect_all_network_interfaces: {node: true}\n");
    assert_eq!(
        c.metric_groups,
        [MetricGroup::Container, MetricGroup::Pod, MetricGroup::Node]
    );
    assert_eq!(c.collection_interval, Duration::from_secs(10));
    let rms = metrics::build(&c, &s, &metrics::Extra::default(), 1);
    // Node, pod and two containers; no volumes by default.
    assert_eq!(rms.len(), 4);
    assert!(find(&rms, &[("k8s.volume.name", "cache")]).is_empty());
    let node = find(&rms, &[("k8s.node.name", "node-1")])[0];
    assert_eq!(
        value(
            node,
            "k8s.node.network.io",
            &[("interface", "cni0"), ("direction", "transmit")]
        ),
        Some(4444.0)
    );
    // No extra labels asked for: no container.id.
    let web = find(&rms, &[("k8s.container.name", "web")])[0];
    assert!(!attrs(web).contains_key("container.id"));
}

#[test]
fn a_container_without_a_known_id_is_skipped_when_ids_are_asked_for() {
    let s: summary::Summary = serde_json::from_str(SUMMARY).unwrap();
    let c =
        cfg("auth_type: none\nextra_metadata_labels: [container.id]\nmetric_groups: [container]\n");
    // No pod list: the Collector writes nothing it cannot label.
    let rms = metrics::build(&c, &s, &metrics::Extra::default(), 1);
    assert!(rms.is_empty(), "{rms:#?}");
}

#[test]
fn resource_attributes_can_be_switched_off() {
    let s: summary::Summary = serde_json::from_str(SUMMARY).unwrap();
    let c = cfg(
        "auth_type: none\nmetric_groups: [pod]\nresource_attributes:\n  k8s.pod.uid: {enabled: false}\n",
    );
    let rms = metrics::build(&c, &s, &metrics::Extra::default(), 1);
    assert_eq!(rms.len(), 1);
    assert!(!attrs(&rms[0]).contains_key("k8s.pod.uid"));
    assert_eq!(attrs(&rms[0])["k8s.pod.name"], "web-7d4b9c-x2x9z");
}

#[test]
fn config_errors_name_the_key() {
    let (path, msg) = err("auth_type: none\nmetrics:\n  k8s.pod.cpu.nope: {enabled: true}\n");
    assert_eq!(path, "metrics.k8s.pod.cpu.nope");
    assert!(msg.contains("not a metric"), "{msg}");
    let (path, msg) =
        err("auth_type: none\nmetrics:\n  k8s.node.system_container.cpu.time: {enabled: true}\n");
    assert_eq!(path, "metrics.k8s.node.system_container.cpu.time");
    assert!(msg.contains("not built in ferrotel yet"), "{msg}");
    let (path, msg) = err("endpoint: https://n:10250\n");
    assert_eq!(path, "auth_type");
    assert!(msg.contains("cert_file"), "{msg}");
    let (path, msg) = err("auth_type: none\nextra_metadata_labels: [container.id, k8s.pod.ip]\n");
    assert_eq!(path, "extra_metadata_labels[1]");
    assert!(msg.contains("not supported"), "{msg}");
    let (path, _) = err("auth_type: none\nextra_metadata_labels: [container.id, container.id]\n");
    assert_eq!(path, "extra_metadata_labels[1]");
    let (path, msg) =
        err("auth_type: none\nmetrics:\n  k8s.pod.memory.node.utilization: {enabled: true}\n");
    assert_eq!(path, "metrics.k8s.pod.memory.node.utilization");
    assert!(msg.contains("k8s_api_config"), "{msg}");
    let (path, _) = err("auth_type: none\nmetric_groups: [node, disk]\n");
    assert_eq!(path, "metric_groups[1]");
    let (path, _) = err("auth_type: kubeConfig\n");
    assert_eq!(path, "endpoint");
    let (path, _) = err("auth_type: none\nendpont: x\n");
    assert_eq!(path, "endpont");
    // The Collector's own example parses as is.
    let c = cfg(
        "collection_interval: 20s\nauth_type: \"serviceAccount\"\nendpoint: \"https://node-1:10250\"\ninsecure_skip_verify: true\n",
    );
    assert_eq!(c.auth_type, AuthType::ServiceAccount);
}
