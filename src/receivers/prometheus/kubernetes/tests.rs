//! Each role's targets from objects in the API's JSON, against the labels Prometheus documents.

use serde_json::json;

use super::roles::{Attach, Kind, Store};
use crate::receivers::prometheus::relabel::Labels;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn pod() -> serde_json::Value {
    json!({
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1",
            "labels": {"app.kubernetes.io/name": "web"},
            "annotations": {"prometheus.io/scrape": "true"},
            "ownerReferences": [
                {"kind": "Other", "name": "not-the-controller"},
                {"kind": "ReplicaSet", "name": "web-7d9f", "controller": true}
            ]},
        "spec": {"nodeName": "n1",
            "containers": [
                {"name": "app", "image": "web:1", "ports": [
                    {"name": "http", "containerPort": 8080},
                    {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]},
                {"name": "sidecar", "image": "envoy:1"}
            ],
            "initContainers": [{"name": "init", "image": "busybox", "ports": [{"containerPort": 7000, "protocol": "UDP"}]}]},
        "status": {"podIP": "10.1.0.5", "hostIP": "192.168.1.1", "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "app", "containerID": "containerd://abc"}]}
    })
}

fn pod_base() -> Vec<(&'static str, &'static str)> {
    vec![
        ("__meta_kubernetes_namespace", "shop"),
        ("__meta_kubernetes_pod_name", "web-1"),
        ("__meta_kubernetes_pod_uid", "u1"),
        ("__meta_kubernetes_pod_ip", "10.1.0.5"),
        ("__meta_kubernetes_pod_host_ip", "192.168.1.1"),
        ("__meta_kubernetes_pod_node_name", "n1"),
        ("__meta_kubernetes_pod_phase", "Running"),
        ("__meta_kubernetes_pod_ready", "true"),
        ("__meta_kubernetes_pod_label_app_kubernetes_io_name", "web"),
        (
            "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name",
            "true",
        ),
        (
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
            "true",
        ),
        (
            "__meta_kubernetes_pod_annotationpresent_prometheus_io_scrape",
            "true",
        ),
        ("__meta_kubernetes_pod_controller_kind", "ReplicaSet"),
        ("__meta_kubernetes_pod_controller_name", "web-7d9f"),
    ]
}

fn store(objects: &[(Kind, serde_json::Value)]) -> Store {
    let mut s = Store::default();
    for (k, o) in objects {
        s.applied(*k, o.clone(), false);
    }
    s
}

fn by_address(ts: &[Labels], addr: &str) -> Labels {
    ts.iter()
        .find(|t| t["__address__"] == addr)
        .unwrap_or_else(|| panic!("no target {addr} in {ts:#?}"))
        .clone()
}

#[test]
fn pod_role_a_target_per_port_and_one_per_portless_container() {
    let s = store(&[(Kind::Pod, pod())]);
    let ts = s.targets(Kind::Pod, Attach::default());
    let addrs: Vec<&str> = ts.iter().map(|t| t["__address__"].as_str()).collect();
    assert_eq!(
        addrs,
        [
            "10.1.0.5:8080",
            "10.1.0.5:9090",
            "10.1.0.5",
            "10.1.0.5:7000"
        ]
    );
    let mut want = pod_base();
    want.extend([
        ("__address__", "10.1.0.5:9090"),
        ("__meta_kubernetes_pod_container_name", "app"),
        ("__meta_kubernetes_pod_container_image", "web:1"),
        ("__meta_kubernetes_pod_container_init", "false"),
        ("__meta_kubernetes_pod_container_id", "containerd://abc"),
        ("__meta_kubernetes_pod_container_port_name", "metrics"),
        ("__meta_kubernetes_pod_container_port_number", "9090"),
        ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
    ]);
    assert_eq!(ts[1], labels(&want));
    let mut want = pod_base();
    want.extend([
        ("__address__", "10.1.0.5"),
        ("__meta_kubernetes_pod_container_name", "sidecar"),
        ("__meta_kubernetes_pod_container_image", "envoy:1"),
        ("__meta_kubernetes_pod_container_init", "false"),
        ("__meta_kubernetes_pod_container_id", ""),
    ]);
    assert_eq!(ts[2], labels(&want));
    assert_eq!(ts[3]["__meta_kubernetes_pod_container_init"], "true");
    assert_eq!(
        ts[3]["__meta_kubernetes_pod_container_port_protocol"],
        "UDP"
    );

    // Without an IP (not scheduled yet) a pod has no targets.
    let mut pending = pod();
    pending["status"] = json!({"phase": "Pending"});
    assert!(
        store(&[(Kind::Pod, pending)])
            .targets(Kind::Pod, Attach::default())
            .is_empty()
    );
}

fn service(kind: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": "web", "namespace": "shop", "labels": {"tier": "front"}},
        "spec": {"type": kind, "clusterIP": "10.96.0.10", "externalName": "web.example.com",
            "loadBalancerIP": "203.0.113.7",
            "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}
    })
}

#[test]
fn service_role_a_target_per_port_at_the_service_name() {
    let ts =
        store(&[(Kind::Service, service("ClusterIP"))]).targets(Kind::Service, Attach::default());
    assert_eq!(ts.len(), 2);
    assert_eq!(
        ts[0],
        labels(&[
            ("__address__", "web.shop.svc:80"),
            ("__meta_kubernetes_namespace", "shop"),
            ("__meta_kubernetes_service_name", "web"),
            ("__meta_kubernetes_service_label_tier", "front"),
            ("__meta_kubernetes_service_labelpresent_tier", "true"),
            ("__meta_kubernetes_service_port_name", "http"),
            ("__meta_kubernetes_service_port_number", "80"),
            ("__meta_kubernetes_service_port_protocol", "TCP"),
            ("__meta_kubernetes_service_type", "ClusterIP"),
            ("__meta_kubernetes_service_cluster_ip", "10.96.0.10"),
        ])
    );
    assert_eq!(ts[1]["__meta_kubernetes_service_port_protocol"], "UDP");
    let ext = store(&[(Kind::Service, service("ExternalName"))])
        .targets(Kind::Service, Attach::default());
    assert_eq!(
        ext[0]["__meta_kubernetes_service_external_name"],
        "web.example.com"
    );
    assert!(!ext[0].contains_key("__meta_kubernetes_service_cluster_ip"));
    let lb = store(&[(Kind::Service, service("LoadBalancer"))])
        .targets(Kind::Service, Attach::default());
    assert_eq!(
        lb[0]["__meta_kubernetes_service_loadbalancer_ip"],
        "203.0.113.7"
    );
    assert_eq!(lb[0]["__meta_kubernetes_service_cluster_ip"], "10.96.0.10");
}

/// The service's endpoints: the pod-backed ready address, a not-ready one without a pod, and
/// the pod's container ports the endpoints do not name.
#[test]
fn endpoints_role_joins_the_service_and_the_pods() {
    let endpoints = json!({
        "metadata": {"name": "web", "namespace": "shop", "labels": {"tier": "front"}},
        "subsets": [{
            "addresses": [{"ip": "10.1.0.5", "nodeName": "n1", "hostname": "web-1",
                "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "shop"}}],
            "notReadyAddresses": [{"ip": "10.1.0.9"}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }]
    });
    let s = store(&[
        (Kind::Endpoints, endpoints),
        (Kind::Service, service("ClusterIP")),
        (Kind::Pod, pod()),
    ]);
    let ts = s.targets(Kind::Endpoints, Attach::default());
    let group = [
        ("__meta_kubernetes_endpoints_name", "web"),
        ("__meta_kubernetes_endpoints_label_tier", "front"),
        ("__meta_kubernetes_endpoints_labelpresent_tier", "true"),
        ("__meta_kubernetes_service_name", "web"),
        ("__meta_kubernetes_service_label_tier", "front"),
        ("__meta_kubernetes_service_labelpresent_tier", "true"),
    ];
    let mut want = pod_base();
    want.extend(group);
    want.extend([
        ("__address__", "10.1.0.5:8080"),
        ("__meta_kubernetes_endpoint_port_name", "http"),
        ("__meta_kubernetes_endpoint_port_protocol", "TCP"),
        ("__meta_kubernetes_endpoint_ready", "true"),
        ("__meta_kubernetes_endpoint_hostname", "web-1"),
        ("__meta_kubernetes_endpoint_node_name", "n1"),
        ("__meta_kubernetes_endpoint_address_target_kind", "Pod"),
        ("__meta_kubernetes_endpoint_address_target_name", "web-1"),
        ("__meta_kubernetes_pod_container_name", "app"),
        ("__meta_kubernetes_pod_container_image", "web:1"),
        ("__meta_kubernetes_pod_container_init", "false"),
        ("__meta_kubernetes_pod_container_id", "containerd://abc"),
        ("__meta_kubernetes_pod_container_port_name", "http"),
        ("__meta_kubernetes_pod_container_port_number", "8080"),
        ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
    ]);
    assert_eq!(by_address(&ts, "10.1.0.5:8080"), labels(&want));
    let mut want = vec![("__meta_kubernetes_namespace", "shop")];
    want.extend(group);
    want.extend([
        ("__address__", "10.1.0.9:8080"),
        ("__meta_kubernetes_endpoint_port_name", "http"),
        ("__meta_kubernetes_endpoint_port_protocol", "TCP"),
        ("__meta_kubernetes_endpoint_ready", "false"),
    ]);
    assert_eq!(by_address(&ts, "10.1.0.9:8080"), labels(&want));
    // The pod's other ports, with the pod's labels but none of an endpoint's.
    let extra = by_address(&ts, "10.1.0.5:9090");
    assert_eq!(
        extra["__meta_kubernetes_pod_container_port_name"],
        "metrics"
    );
    assert_eq!(extra["__meta_kubernetes_service_name"], "web");
    assert!(!extra.contains_key("__meta_kubernetes_endpoint_ready"));
    by_address(&ts, "10.1.0.5:7000");
    assert_eq!(ts.len(), 4, "{ts:#?}");
}

#[test]
fn endpointslice_role_with_conditions_topology_and_the_service_by_its_label() {
    let slice = json!({
        "metadata": {"name": "web-abc", "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.1.0.5"], "conditions": {"ready": true, "serving": true, "terminating": false},
             "nodeName": "n1", "zone": "eu-1a", "deprecatedTopology": {"kubernetes.io/hostname": "n1"},
             "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "shop"}},
            {"addresses": ["10.1.0.9"], "conditions": {"ready": false}}
        ],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}]
    });
    let s = store(&[
        (Kind::EndpointSlice, slice),
        (Kind::Service, service("ClusterIP")),
        (Kind::Pod, pod()),
    ]);
    let ts = s.targets(Kind::EndpointSlice, Attach::default());
    let t = by_address(&ts, "10.1.0.5:8080");
    let want = [
        ("__meta_kubernetes_endpointslice_name", "web-abc"),
        ("__meta_kubernetes_endpointslice_address_type", "IPv4"),
        (
            "__meta_kubernetes_endpointslice_label_kubernetes_io_service_name",
            "web",
        ),
        ("__meta_kubernetes_endpointslice_port", "8080"),
        ("__meta_kubernetes_endpointslice_port_name", "http"),
        ("__meta_kubernetes_endpointslice_port_protocol", "TCP"),
        ("__meta_kubernetes_endpointslice_port_app_protocol", "http"),
        (
            "__meta_kubernetes_endpointslice_endpoint_conditions_ready",
            "true",
        ),
        (
            "__meta_kubernetes_endpointslice_endpoint_conditions_serving",
            "true",
        ),
        (
            "__meta_kubernetes_endpointslice_endpoint_conditions_terminating",
            "false",
        ),
        ("__meta_kubernetes_endpointslice_endpoint_node_name", "n1"),
        ("__meta_kubernetes_endpointslice_endpoint_zone", "eu-1a"),
        (
            "__meta_kubernetes_endpointslice_endpoint_topology_kubernetes_io_hostname",
            "n1",
        ),
        (
            "__meta_kubernetes_endpointslice_endpoint_topology_present_kubernetes_io_hostname",
            "true",
        ),
        ("__meta_kubernetes_endpointslice_address_target_kind", "Pod"),
        (
            "__meta_kubernetes_endpointslice_address_target_name",
            "web-1",
        ),
        ("__meta_kubernetes_service_name", "web"),
        ("__meta_kubernetes_pod_name", "web-1"),
        ("__meta_kubernetes_pod_container_port_name", "http"),
    ];
    for (k, v) in want {
        assert_eq!(t.get(k).map(String::as_str), Some(v), "{k} in {t:#?}");
    }
    let not_ready = by_address(&ts, "10.1.0.9:8080");
    assert_eq!(
        not_ready["__meta_kubernetes_endpointslice_endpoint_conditions_ready"],
        "false"
    );
    assert!(!not_ready.contains_key("__meta_kubernetes_endpointslice_endpoint_conditions_serving"));
    assert!(!not_ready.contains_key("__meta_kubernetes_pod_name"));
    // 8080 twice, then the pod's uncovered 9090 and 7000.
    assert_eq!(ts.len(), 4, "{ts:#?}");
}

#[test]
fn node_role_at_the_kubelet_port_of_the_preferred_address() {
    let node = json!({
        "metadata": {"name": "n1", "labels": {"kubernetes.io/os": "linux"}},
        "spec": {"providerID": "aws:///eu-1a/i-1"},
        "status": {
            "addresses": [{"type": "Hostname", "address": "ip-10-0-0-1"},
                {"type": "ExternalIP", "address": "203.0.113.1"},
                {"type": "InternalIP", "address": "10.0.0.1"},
                {"type": "InternalIP", "address": "10.0.0.2"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}
    });
    let ts = store(&[(Kind::Node, node)]).targets(Kind::Node, Attach::default());
    assert_eq!(
        ts,
        vec![labels(&[
            ("__address__", "10.0.0.1:10250"),
            ("instance", "n1"),
            ("__meta_kubernetes_node_name", "n1"),
            ("__meta_kubernetes_node_provider_id", "aws:///eu-1a/i-1"),
            ("__meta_kubernetes_node_label_kubernetes_io_os", "linux"),
            (
                "__meta_kubernetes_node_labelpresent_kubernetes_io_os",
                "true"
            ),
            ("__meta_kubernetes_node_address_Hostname", "ip-10-0-0-1"),
            ("__meta_kubernetes_node_address_ExternalIP", "203.0.113.1"),
            ("__meta_kubernetes_node_address_InternalIP", "10.0.0.1"),
        ])]
    );
}

#[test]
fn ingress_role_a_target_per_path_https_where_tls_covers_the_host() {
    let ingress = json!({
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": {"ingressClassName": "nginx",
            "tls": [{"hosts": ["*.example.com"]}],
            "rules": [
                {"host": "api.example.com", "http": {"paths": [{"path": "/v1"}, {"path": ""}]}},
                {"host": "other.org"}
            ]}
    });
    let ts = store(&[(Kind::Ingress, ingress)]).targets(Kind::Ingress, Attach::default());
    let got: Vec<(&str, &str, &str)> = ts
        .iter()
        .map(|t| {
            (
                t["__address__"].as_str(),
                t["__meta_kubernetes_ingress_scheme"].as_str(),
                t["__meta_kubernetes_ingress_path"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("api.example.com", "https", "/v1"),
            ("api.example.com", "https", "/"),
            ("other.org", "http", "/"),
        ]
    );
    assert_eq!(ts[0]["__meta_kubernetes_ingress_class_name"], "nginx");
    assert_eq!(ts[0]["__meta_kubernetes_ingress_host"], "api.example.com");
    assert_eq!(ts[0]["__meta_kubernetes_ingress_name"], "shop");
}

#[test]
fn attach_metadata_adds_the_node_and_the_namespace() {
    let s = store(&[
        (Kind::Pod, pod()),
        (
            Kind::Node,
            json!({"metadata": {"name": "n1", "labels": {"zone": "a"}}}),
        ),
        (
            Kind::Namespace,
            json!({"metadata": {"name": "shop", "labels": {"team": "t1"}}}),
        ),
    ]);
    let plain = s.targets(Kind::Pod, Attach::default());
    assert!(!plain[0].contains_key("__meta_kubernetes_node_label_zone"));
    let ts = s.targets(
        Kind::Pod,
        Attach {
            node: true,
            namespace: true,
        },
    );
    for t in &ts {
        assert_eq!(t["__meta_kubernetes_node_label_zone"], "a");
        assert_eq!(t["__meta_kubernetes_node_name"], "n1");
        assert_eq!(t["__meta_kubernetes_namespace_label_team"], "t1");
    }
}

/// What the watches report: a relist of one namespace replaces only that namespace's objects;
/// a deletion removes the object's targets.
#[test]
fn relists_replace_their_scope_and_deletions_remove_targets() {
    let mut s = Store::default();
    let mut other = pod();
    other["metadata"]["namespace"] = json!("other");
    s.listed(Kind::Pod, Some("shop"), vec![pod()]);
    s.listed(Kind::Pod, Some("other"), vec![other.clone()]);
    assert_eq!(s.targets(Kind::Pod, Attach::default()).len(), 8);
    s.listed(Kind::Pod, Some("shop"), vec![]);
    let ts = s.targets(Kind::Pod, Attach::default());
    assert_eq!(ts.len(), 4);
    assert!(
        ts.iter()
            .all(|t| t["__meta_kubernetes_namespace"] == "other")
    );
    s.applied(Kind::Pod, other, true);
    assert!(s.targets(Kind::Pod, Attach::default()).is_empty());
    // An object that is not one (a bad event) is skipped.
    s.applied(Kind::Pod, json!({"metadata": "not an object"}), false);
    assert!(s.targets(Kind::Pod, Attach::default()).is_empty());
}
