//! What `kubernetes_sd_configs` knows of the cluster (the objects its watches keep, [`Store`])
//! and the targets each role makes of them, with the `__meta_kubernetes_*` labels Prometheus
//! documents for `node`, `service`, `pod`, `endpoints`, `endpointslice` and `ingress`.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::kube::ObjectMeta;
use crate::receivers::prometheus::relabel::Labels;

/// The object kinds a discovery may watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Pod,
    Service,
    Endpoints,
    EndpointSlice,
    Node,
    Ingress,
    Namespace,
}

impl Kind {
    /// The collection's path: cluster-wide, or in `namespace`.
    pub fn path(self, namespace: Option<&str>) -> String {
        let (group, plural, namespaced) = match self {
            Kind::Pod => ("/api/v1", "pods", true),
            Kind::Service => ("/api/v1", "services", true),
            Kind::Endpoints => ("/api/v1", "endpoints", true),
            Kind::EndpointSlice => ("/apis/discovery.k8s.io/v1", "endpointslices", true),
            Kind::Ingress => ("/apis/networking.k8s.io/v1", "ingresses", true),
            Kind::Node => ("/api/v1", "nodes", false),
            Kind::Namespace => ("/api/v1", "namespaces", false),
        };
        match namespace {
            Some(ns) if namespaced => format!("{group}/namespaces/{ns}/{plural}"),
            _ => format!("{group}/{plural}"),
        }
    }

    /// The role name its selectors are written under.
    pub fn role(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::Service => "service",
            Kind::Endpoints => "endpoints",
            Kind::EndpointSlice => "endpointslice",
            Kind::Node => "node",
            Kind::Ingress => "ingress",
            Kind::Namespace => "namespace",
        }
    }
}

/// The objects every watch of one discovery has seen, by kind and `namespace/name`.
#[derive(Default)]
pub struct Store {
    pods: BTreeMap<String, Pod>,
    services: BTreeMap<String, Service>,
    endpoints: BTreeMap<String, Endpoints>,
    slices: BTreeMap<String, EndpointSlice>,
    nodes: BTreeMap<String, Node>,
    ingresses: BTreeMap<String, Ingress>,
    namespaces: BTreeMap<String, Meta>,
    /// The collections (kind, namespace) listed at least once.
    listed: std::collections::HashSet<(Kind, Option<String>)>,
}

fn key(m: &ObjectMeta) -> String {
    format!("{}/{}", m.namespace, m.name)
}

/// The objects the store keeps, by their metadata.
trait Object: for<'de> Deserialize<'de> {
    fn meta(&self) -> &ObjectMeta;
}

macro_rules! objects {
    ($($t:ty),*) => {
        $(impl Object for $t {
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
        })*
    };
}
objects!(Pod, Service, Endpoints, EndpointSlice, Node, Ingress, Meta);

/// Replaces what a list of one scope (a namespace, or `None` for all) held.
fn relist<T: Object>(
    map: &mut BTreeMap<String, T>,
    scope: Option<&str>,
    items: impl IntoIterator<Item = serde_json::Value>,
) {
    match scope {
        Some(ns) => map.retain(|_, o| o.meta().namespace != ns),
        None => map.clear(),
    }
    for item in items {
        match serde_json::from_value::<T>(item) {
            Ok(o) => {
                map.insert(key(o.meta()), o);
            }
            Err(e) => tracing::warn!(error = %e, "prometheus: kubernetes_sd: object skipped"),
        }
    }
}

fn apply<T: Object>(map: &mut BTreeMap<String, T>, obj: serde_json::Value, deleted: bool) {
    match serde_json::from_value::<T>(obj) {
        Ok(o) if deleted => {
            map.remove(&key(o.meta()));
        }
        Ok(o) => {
            map.insert(key(o.meta()), o);
        }
        Err(e) => tracing::warn!(error = %e, "prometheus: kubernetes_sd: object skipped"),
    }
}

/// `$f(map_of_kind, args...)` for the map that holds `$kind`.
macro_rules! per_kind {
    ($self:ident, $kind:expr, $f:ident($($arg:expr),*)) => {
        match $kind {
            Kind::Pod => $f(&mut $self.pods, $($arg),*),
            Kind::Service => $f(&mut $self.services, $($arg),*),
            Kind::Endpoints => $f(&mut $self.endpoints, $($arg),*),
            Kind::EndpointSlice => $f(&mut $self.slices, $($arg),*),
            Kind::Node => $f(&mut $self.nodes, $($arg),*),
            Kind::Ingress => $f(&mut $self.ingresses, $($arg),*),
            Kind::Namespace => $f(&mut $self.namespaces, $($arg),*),
        }
    };
}

impl Store {
    pub fn mark_listed(&mut self, scope: &(Kind, Option<String>)) {
        if !self.listed.contains(scope) {
            self.listed.insert(scope.clone());
        }
    }

    pub fn lists_seen(&self) -> usize {
        self.listed.len()
    }

    pub fn listed(
        &mut self,
        kind: Kind,
        scope: Option<&str>,
        items: impl IntoIterator<Item = serde_json::Value>,
    ) {
        per_kind!(self, kind, relist(scope, items));
    }

    pub fn applied(&mut self, kind: Kind, obj: serde_json::Value, deleted: bool) {
        per_kind!(self, kind, apply(obj, deleted));
    }

    /// Every target of `role` (one of [`Kind::role`]), with the node's and namespace's
    /// metadata when `attach` asks for them.
    pub fn targets(&self, role: Kind, attach: Attach) -> Vec<Labels> {
        let mut out = Vec::new();
        match role {
            Kind::Pod => {
                for p in self.pods.values() {
                    let n = out.len();
                    pod_targets(p, &mut out);
                    for t in &mut out[n..] {
                        self.attach_node(t, &p.spec.node_name, attach);
                    }
                    self.attach_namespace(&mut out[n..], &p.metadata.namespace, attach);
                }
            }
            Kind::Service => {
                for s in self.services.values() {
                    let n = out.len();
                    service_targets(s, &mut out);
                    self.attach_namespace(&mut out[n..], &s.metadata.namespace, attach);
                }
            }
            Kind::Endpoints => {
                for e in self.endpoints.values() {
                    self.endpoints_targets(e, attach, &mut out);
                }
            }
            Kind::EndpointSlice => {
                for e in self.slices.values() {
                    self.slice_targets(e, attach, &mut out);
                }
            }
            Kind::Node => {
                for n in self.nodes.values() {
                    node_targets(n, &mut out);
                }
            }
            Kind::Ingress => {
                for i in self.ingresses.values() {
                    let n = out.len();
                    ingress_targets(i, &mut out);
                    self.attach_namespace(&mut out[n..], &i.metadata.namespace, attach);
                }
            }
            Kind::Namespace => {}
        }
        out
    }

    /// `attach_metadata.node`: the labels and annotations of the target's node.
    fn attach_node(&self, t: &mut Labels, node: &str, attach: Attach) {
        if !attach.node || node.is_empty() {
            return;
        }
        if let Some(n) = self.nodes.get(&format!("/{node}")) {
            t.insert(
                "__meta_kubernetes_node_name".into(),
                n.metadata.name.clone(),
            );
            meta_labels(t, "node", &n.metadata);
        }
    }

    /// `attach_metadata.namespace`: the labels and annotations of the targets' namespace.
    fn attach_namespace(&self, targets: &mut [Labels], namespace: &str, attach: Attach) {
        if !attach.namespace {
            return;
        }
        if let Some(ns) = self.namespaces.get(&format!("/{namespace}")) {
            for t in targets.iter_mut() {
                meta_labels(t, "namespace", &ns.metadata);
            }
        }
    }

    fn service_of(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services.get(&format!("{namespace}/{name}"))
    }

    fn pod_of(&self, r: &Option<TargetRef>, namespace: &str) -> Option<&Pod> {
        let r = r.as_ref().filter(|r| r.kind == "Pod")?;
        let ns = if r.namespace.is_empty() {
            namespace
        } else {
            &r.namespace
        };
        self.pods.get(&format!("{ns}/{}", r.name))
    }

    /// Prometheus's endpoints role: a target per address and port, with the service's labels
    /// and, for an address backed by a pod, the pod's; then every container port of those pods
    /// that no endpoint port covers.
    fn endpoints_targets(&self, e: &Endpoints, attach: Attach, out: &mut Vec<Labels>) {
        let ns = &e.metadata.namespace;
        let mut group = Labels::new();
        group.insert("__meta_kubernetes_namespace".into(), ns.clone());
        group.insert(
            "__meta_kubernetes_endpoints_name".into(),
            e.metadata.name.clone(),
        );
        meta_labels(&mut group, "endpoints", &e.metadata);
        if let Some(s) = self.service_of(ns, &e.metadata.name) {
            service_labels(&mut group, s);
        }
        let mut seen: Vec<(&Pod, Vec<u16>)> = Vec::new();
        let start = out.len();
        for subset in &e.subsets {
            let addrs = subset
                .addresses
                .iter()
                .map(|a| (a, true))
                .chain(subset.not_ready_addresses.iter().map(|a| (a, false)));
            for (a, ready) in addrs {
                for port in &subset.ports {
                    let mut t = group.clone();
                    t.insert("__address__".into(), join_host_port(&a.ip, port.port));
                    t.insert(
                        "__meta_kubernetes_endpoint_port_name".into(),
                        port.name.clone(),
                    );
                    t.insert(
                        "__meta_kubernetes_endpoint_port_protocol".into(),
                        protocol(&port.protocol),
                    );
                    t.insert("__meta_kubernetes_endpoint_ready".into(), ready.to_string());
                    if let Some(p) = &port.app_protocol {
                        t.insert(
                            "__meta_kubernetes_endpoint_port_app_protocol".into(),
                            p.clone(),
                        );
                    }
                    put(&mut t, "__meta_kubernetes_endpoint_hostname", &a.hostname);
                    put(&mut t, "__meta_kubernetes_endpoint_node_name", &a.node_name);
                    if let Some(r) = &a.target_ref {
                        t.insert(
                            "__meta_kubernetes_endpoint_address_target_kind".into(),
                            r.kind.clone(),
                        );
                        t.insert(
                            "__meta_kubernetes_endpoint_address_target_name".into(),
                            r.name.clone(),
                        );
                    }
                    self.backing_pod(
                        &mut t,
                        &a.target_ref,
                        ns,
                        &a.node_name,
                        (port.port, &port.protocol),
                        attach,
                        &mut seen,
                    );
                    out.push(t);
                }
            }
        }
        self.uncovered_ports(&group, &seen, attach, out);
        self.attach_namespace(&mut out[start..], ns, attach);
    }

    /// Prometheus's endpointslice role: as endpoints, from the slices of a service.
    fn slice_targets(&self, e: &EndpointSlice, attach: Attach, out: &mut Vec<Labels>) {
        let ns = &e.metadata.namespace;
        let mut group = Labels::new();
        group.insert("__meta_kubernetes_namespace".into(), ns.clone());
        group.insert(
            "__meta_kubernetes_endpointslice_name".into(),
            e.metadata.name.clone(),
        );
        group.insert(
            "__meta_kubernetes_endpointslice_address_type".into(),
            e.address_type.clone(),
        );
        meta_labels(&mut group, "endpointslice", &e.metadata);
        if let Some(svc) = e.metadata.labels.get("kubernetes.io/service-name")
            && let Some(s) = self.service_of(ns, svc)
        {
            service_labels(&mut group, s);
        }
        let mut seen: Vec<(&Pod, Vec<u16>)> = Vec::new();
        let start = out.len();
        for port in &e.ports {
            let Some(number) = port.port else { continue };
            for ep in &e.endpoints {
                let Some(addr) = ep.addresses.first() else {
                    continue;
                };
                let mut t = group.clone();
                t.insert("__address__".into(), join_host_port(addr, number));
                t.insert(
                    "__meta_kubernetes_endpointslice_port".into(),
                    number.to_string(),
                );
                t.insert(
                    "__meta_kubernetes_endpointslice_port_name".into(),
                    port.name.clone(),
                );
                t.insert(
                    "__meta_kubernetes_endpointslice_port_protocol".into(),
                    protocol(&port.protocol),
                );
                if let Some(p) = &port.app_protocol {
                    t.insert(
                        "__meta_kubernetes_endpointslice_port_app_protocol".into(),
                        p.clone(),
                    );
                }
                let c = &ep.conditions;
                for (name, v) in [
                    ("ready", c.ready),
                    ("serving", c.serving),
                    ("terminating", c.terminating),
                ] {
                    if let Some(v) = v {
                        t.insert(
                            format!("__meta_kubernetes_endpointslice_endpoint_conditions_{name}"),
                            v.to_string(),
                        );
                    }
                }
                put(
                    &mut t,
                    "__meta_kubernetes_endpointslice_endpoint_hostname",
                    &ep.hostname,
                );
                put(
                    &mut t,
                    "__meta_kubernetes_endpointslice_endpoint_node_name",
                    &ep.node_name,
                );
                put(
                    &mut t,
                    "__meta_kubernetes_endpointslice_endpoint_zone",
                    &ep.zone,
                );
                for (k, v) in &ep.deprecated_topology {
                    let k = sanitize(k);
                    t.insert(
                        format!("__meta_kubernetes_endpointslice_endpoint_topology_{k}"),
                        v.clone(),
                    );
                    t.insert(
                        format!("__meta_kubernetes_endpointslice_endpoint_topology_present_{k}"),
                        "true".into(),
                    );
                }
                if let Some(r) = &ep.target_ref {
                    t.insert(
                        "__meta_kubernetes_endpointslice_address_target_kind".into(),
                        r.kind.clone(),
                    );
                    t.insert(
                        "__meta_kubernetes_endpointslice_address_target_name".into(),
                        r.name.clone(),
                    );
                }
                self.backing_pod(
                    &mut t,
                    &ep.target_ref,
                    ns,
                    &ep.node_name,
                    (number, &port.protocol),
                    attach,
                    &mut seen,
                );
                out.push(t);
            }
        }
        self.uncovered_ports(&group, &seen, attach, out);
        self.attach_namespace(&mut out[start..], ns, attach);
    }

    /// An endpoint backed by a pod gets the pod's labels and its node's (else the endpoint's
    /// node's); the pod's port is noted as covered.
    #[allow(clippy::too_many_arguments)]
    fn backing_pod<'a>(
        &'a self,
        t: &mut Labels,
        target_ref: &Option<TargetRef>,
        ns: &str,
        node_name: &str,
        (port, proto): (u16, &str),
        attach: Attach,
        seen: &mut Vec<(&'a Pod, Vec<u16>)>,
    ) {
        match self.pod_of(target_ref, ns) {
            Some(pod) => {
                pod_port_labels(t, pod, port, proto);
                self.attach_node(t, &pod.spec.node_name, attach);
                seen_port(seen, pod, port);
            }
            None => self.attach_node(t, node_name, attach),
        }
    }

    /// The container ports of pods behind endpoints that no endpoint port named.
    fn uncovered_ports(
        &self,
        group: &Labels,
        seen: &[(&Pod, Vec<u16>)],
        attach: Attach,
        out: &mut Vec<Labels>,
    ) {
        for (pod, ports) in seen {
            if pod.status.pod_ip.is_empty() {
                continue;
            }
            for (c, init) in containers(pod) {
                for cp in &c.ports {
                    if ports.contains(&cp.container_port) {
                        continue;
                    }
                    let mut t = group.clone();
                    t.insert(
                        "__address__".into(),
                        join_host_port(&pod.status.pod_ip, cp.container_port),
                    );
                    pod_labels(&mut t, pod);
                    container_labels(&mut t, pod, c, init);
                    port_labels(&mut t, cp);
                    self.attach_node(&mut t, &pod.spec.node_name, attach);
                    out.push(t);
                }
            }
        }
    }
}

fn put(l: &mut Labels, k: &str, v: &str) {
    if !v.is_empty() {
        l.insert(k.to_string(), v.to_string());
    }
}

fn seen_port<'a>(seen: &mut Vec<(&'a Pod, Vec<u16>)>, pod: &'a Pod, port: u16) {
    match seen.iter_mut().find(|(p, _)| std::ptr::eq(*p, pod)) {
        Some((_, ports)) => ports.push(port),
        None => seen.push((pod, vec![port])),
    }
}

/// What `attach_metadata` asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Attach {
    pub node: bool,
    pub namespace: bool,
}

/// Label names keep `[a-zA-Z0-9_]`; anything else becomes `_`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn protocol(p: &str) -> String {
    if p.is_empty() {
        "TCP".into()
    } else {
        p.to_string()
    }
}

/// `__meta_kubernetes_<role>_label_*`, `_labelpresent_*`, `_annotation_*`, `_annotationpresent_*`.
fn meta_labels(l: &mut Labels, role: &str, m: &ObjectMeta) {
    for (k, v) in &m.labels {
        let k = sanitize(k);
        l.insert(format!("__meta_kubernetes_{role}_label_{k}"), v.clone());
        l.insert(
            format!("__meta_kubernetes_{role}_labelpresent_{k}"),
            "true".into(),
        );
    }
    for (k, v) in &m.annotations {
        let k = sanitize(k);
        l.insert(
            format!("__meta_kubernetes_{role}_annotation_{k}"),
            v.clone(),
        );
        l.insert(
            format!("__meta_kubernetes_{role}_annotationpresent_{k}"),
            "true".into(),
        );
    }
}

/// The service labels the endpoints roles attach (not the port ones).
fn service_labels(l: &mut Labels, s: &Service) {
    l.insert(
        "__meta_kubernetes_namespace".into(),
        s.metadata.namespace.clone(),
    );
    l.insert(
        "__meta_kubernetes_service_name".into(),
        s.metadata.name.clone(),
    );
    meta_labels(l, "service", &s.metadata);
}

fn pod_labels(l: &mut Labels, pod: &Pod) {
    let m = &pod.metadata;
    l.insert("__meta_kubernetes_namespace".into(), m.namespace.clone());
    l.insert("__meta_kubernetes_pod_name".into(), m.name.clone());
    l.insert("__meta_kubernetes_pod_uid".into(), m.uid.clone());
    l.insert("__meta_kubernetes_pod_ip".into(), pod.status.pod_ip.clone());
    l.insert(
        "__meta_kubernetes_pod_host_ip".into(),
        pod.status.host_ip.clone(),
    );
    l.insert(
        "__meta_kubernetes_pod_node_name".into(),
        pod.spec.node_name.clone(),
    );
    l.insert(
        "__meta_kubernetes_pod_phase".into(),
        pod.status.phase.clone(),
    );
    let ready = pod
        .status
        .conditions
        .iter()
        .find(|c| c.kind == "Ready")
        .map_or("unknown".to_string(), |c| c.status.to_lowercase());
    l.insert("__meta_kubernetes_pod_ready".into(), ready);
    meta_labels(l, "pod", m);
    // The owner that is the controller (Prometheus's GetControllerOf).
    if let Some(o) = m
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true))
    {
        if !o.kind.is_empty() {
            l.insert(
                "__meta_kubernetes_pod_controller_kind".into(),
                o.kind.clone(),
            );
        }
        if !o.name.is_empty() {
            l.insert(
                "__meta_kubernetes_pod_controller_name".into(),
                o.name.clone(),
            );
        }
    }
}

/// The containers, then the init containers (flagged).
fn containers(pod: &Pod) -> impl Iterator<Item = (&Container, bool)> {
    pod.spec
        .containers
        .iter()
        .map(|c| (c, false))
        .chain(pod.spec.init_containers.iter().map(|c| (c, true)))
}

fn container_labels(l: &mut Labels, pod: &Pod, c: &Container, init: bool) {
    l.insert(
        "__meta_kubernetes_pod_container_name".into(),
        c.name.clone(),
    );
    l.insert(
        "__meta_kubernetes_pod_container_image".into(),
        c.image.clone(),
    );
    l.insert(
        "__meta_kubernetes_pod_container_init".into(),
        init.to_string(),
    );
    let statuses = if init {
        &pod.status.init_container_statuses
    } else {
        &pod.status.container_statuses
    };
    let id = statuses
        .iter()
        .find(|s| s.name == c.name)
        .map_or(String::new(), |s| s.container_id.clone());
    l.insert("__meta_kubernetes_pod_container_id".into(), id);
}

fn port_labels(l: &mut Labels, p: &ContainerPort) {
    l.insert(
        "__meta_kubernetes_pod_container_port_name".into(),
        p.name.clone(),
    );
    l.insert(
        "__meta_kubernetes_pod_container_port_number".into(),
        p.container_port.to_string(),
    );
    l.insert(
        "__meta_kubernetes_pod_container_port_protocol".into(),
        protocol(&p.protocol),
    );
}

/// An endpoint backed by a pod: the pod's labels, and the container whose port it is.
fn pod_port_labels(l: &mut Labels, pod: &Pod, port: u16, proto: &str) {
    pod_labels(l, pod);
    for (c, init) in containers(pod) {
        if let Some(cp) = c.ports.iter().find(|cp| cp.container_port == port) {
            container_labels(l, pod, c, init);
            port_labels(l, cp);
            l.insert(
                "__meta_kubernetes_pod_container_port_protocol".into(),
                protocol(proto),
            );
            break;
        }
    }
}

/// Prometheus's pod role: a target per container port, and one without a port for each
/// container that declares none. A pod without an IP has none yet.
fn pod_targets(pod: &Pod, out: &mut Vec<Labels>) {
    if pod.status.pod_ip.is_empty() {
        return;
    }
    let mut base = Labels::new();
    pod_labels(&mut base, pod);
    for (c, init) in containers(pod) {
        let mut t = base.clone();
        container_labels(&mut t, pod, c, init);
        if c.ports.is_empty() {
            t.insert("__address__".into(), pod.status.pod_ip.clone());
            out.push(t);
            continue;
        }
        for p in &c.ports {
            let mut t = t.clone();
            t.insert(
                "__address__".into(),
                join_host_port(&pod.status.pod_ip, p.container_port),
            );
            port_labels(&mut t, p);
            out.push(t);
        }
    }
}

/// Prometheus's service role: a target per service port at the service's DNS name.
fn service_targets(s: &Service, out: &mut Vec<Labels>) {
    let mut base = Labels::new();
    service_labels(&mut base, s);
    let m = &s.metadata;
    for p in &s.spec.ports {
        let mut t = base.clone();
        t.insert(
            "__address__".into(),
            format!("{}.{}.svc:{}", m.name, m.namespace, p.port),
        );
        t.insert("__meta_kubernetes_service_port_name".into(), p.name.clone());
        t.insert(
            "__meta_kubernetes_service_port_number".into(),
            p.port.to_string(),
        );
        t.insert(
            "__meta_kubernetes_service_port_protocol".into(),
            protocol(&p.protocol),
        );
        let kind = if s.spec.kind.is_empty() {
            "ClusterIP"
        } else {
            &s.spec.kind
        };
        t.insert("__meta_kubernetes_service_type".into(), kind.to_string());
        if kind == "ExternalName" {
            t.insert(
                "__meta_kubernetes_service_external_name".into(),
                s.spec.external_name.clone(),
            );
        } else {
            t.insert(
                "__meta_kubernetes_service_cluster_ip".into(),
                s.spec.cluster_ip.clone(),
            );
        }
        if kind == "LoadBalancer" {
            t.insert(
                "__meta_kubernetes_service_loadbalancer_ip".into(),
                s.spec.load_balancer_ip.clone(),
            );
        }
        out.push(t);
    }
}

/// Prometheus's node role: the kubelet's port on the first address in the order InternalIP,
/// InternalDNS, ExternalIP, ExternalDNS, LegacyHostIP, Hostname; `instance` is the node name.
fn node_targets(n: &Node, out: &mut Vec<Labels>) {
    let mut first: HashMap<&str, &str> = HashMap::new();
    for a in &n.status.addresses {
        first.entry(a.kind.as_str()).or_insert(a.address.as_str());
    }
    let order = [
        "InternalIP",
        "InternalDNS",
        "ExternalIP",
        "ExternalDNS",
        "LegacyHostIP",
        "Hostname",
    ];
    let Some(addr) = order.iter().find_map(|k| first.get(k)) else {
        tracing::debug!(node = %n.metadata.name, "prometheus: kubernetes_sd: node without an address skipped");
        return;
    };
    let mut t = Labels::new();
    t.insert(
        "__meta_kubernetes_node_name".into(),
        n.metadata.name.clone(),
    );
    t.insert(
        "__meta_kubernetes_node_provider_id".into(),
        n.spec.provider_id.clone(),
    );
    meta_labels(&mut t, "node", &n.metadata);
    for (k, a) in &first {
        t.insert(
            format!("__meta_kubernetes_node_address_{}", sanitize(k)),
            (*a).to_string(),
        );
    }
    t.insert(
        "__address__".into(),
        join_host_port(addr, n.status.daemon_endpoints.kubelet_endpoint.port),
    );
    t.insert("instance".into(), n.metadata.name.clone());
    out.push(t);
}

/// Prometheus's ingress role: a target per path of each rule, at the rule's host.
fn ingress_targets(i: &Ingress, out: &mut Vec<Labels>) {
    let mut base = Labels::new();
    let m = &i.metadata;
    base.insert("__meta_kubernetes_namespace".into(), m.namespace.clone());
    base.insert("__meta_kubernetes_ingress_name".into(), m.name.clone());
    meta_labels(&mut base, "ingress", m);
    let class = i
        .spec
        .ingress_class_name
        .clone()
        .or_else(|| m.annotations.get("kubernetes.io/ingress.class").cloned());
    if let Some(c) = class {
        base.insert("__meta_kubernetes_ingress_class_name".into(), c);
    }
    let tls_hosts: Vec<&str> = i
        .spec
        .tls
        .iter()
        .flat_map(|t| t.hosts.iter().map(String::as_str))
        .collect();
    for rule in &i.spec.rules {
        let https = tls_hosts.iter().any(|h| host_matches(h, &rule.host));
        let mut paths: Vec<&str> = rule
            .http
            .iter()
            .flat_map(|h| {
                h.paths.iter().map(|p| {
                    if p.path.is_empty() {
                        "/"
                    } else {
                        p.path.as_str()
                    }
                })
            })
            .collect();
        if paths.is_empty() {
            paths.push("/");
        }
        for path in paths {
            let mut t = base.clone();
            t.insert("__address__".into(), rule.host.clone());
            t.insert("__meta_kubernetes_ingress_host".into(), rule.host.clone());
            t.insert(
                "__meta_kubernetes_ingress_scheme".into(),
                if https { "https" } else { "http" }.into(),
            );
            t.insert("__meta_kubernetes_ingress_path".into(), path.into());
            out.push(t);
        }
    }
}

/// A TLS host covers the rule's host exactly, or as `*.example.com` covers one label.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

// The objects, with the fields discovery reads (the API's JSON, unknown fields ignored).

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Pod {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: PodSpec,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct PodSpec {
    node_name: String,
    containers: Vec<Container>,
    init_containers: Vec<Container>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Container {
    name: String,
    image: String,
    ports: Vec<ContainerPort>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ContainerPort {
    name: String,
    container_port: u16,
    protocol: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct PodStatus {
    #[serde(rename = "podIP")]
    pod_ip: String,
    #[serde(rename = "hostIP")]
    host_ip: String,
    phase: String,
    conditions: Vec<Condition>,
    container_statuses: Vec<ContainerStatus>,
    init_container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ContainerStatus {
    name: String,
    #[serde(rename = "containerID")]
    container_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Condition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Service {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: ServiceSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ServiceSpec {
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "clusterIP")]
    cluster_ip: String,
    external_name: String,
    #[serde(rename = "loadBalancerIP")]
    load_balancer_ip: String,
    ports: Vec<ServicePort>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct ServicePort {
    name: String,
    port: u16,
    protocol: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Endpoints {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    subsets: Vec<Subset>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Subset {
    addresses: Vec<Address>,
    not_ready_addresses: Vec<Address>,
    ports: Vec<EndpointPort>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Address {
    ip: String,
    hostname: String,
    node_name: String,
    target_ref: Option<TargetRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct TargetRef {
    kind: String,
    name: String,
    namespace: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct EndpointPort {
    name: String,
    port: u16,
    protocol: String,
    app_protocol: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    address_type: String,
    #[serde(default)]
    endpoints: Vec<SliceEndpoint>,
    #[serde(default)]
    ports: Vec<SlicePort>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct SliceEndpoint {
    addresses: Vec<String>,
    conditions: SliceConditions,
    hostname: String,
    node_name: String,
    zone: String,
    target_ref: Option<TargetRef>,
    deprecated_topology: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct SliceConditions {
    ready: Option<bool>,
    serving: Option<bool>,
    terminating: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct SlicePort {
    name: String,
    port: Option<u16>,
    protocol: String,
    app_protocol: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Node {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: NodeSpec,
    #[serde(default)]
    status: NodeStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct NodeSpec {
    #[serde(rename = "providerID")]
    provider_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct NodeStatus {
    addresses: Vec<NodeAddress>,
    daemon_endpoints: DaemonEndpoints,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct NodeAddress {
    #[serde(rename = "type")]
    kind: String,
    address: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct DaemonEndpoints {
    kubelet_endpoint: KubeletEndpoint,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct KubeletEndpoint {
    #[serde(rename = "Port")]
    port: u16,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Ingress {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: IngressSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct IngressSpec {
    ingress_class_name: Option<String>,
    rules: Vec<IngressRule>,
    tls: Vec<IngressTls>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct IngressRule {
    host: String,
    http: Option<IngressHttp>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct IngressHttp {
    paths: Vec<IngressPath>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct IngressPath {
    path: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct IngressTls {
    hosts: Vec<String>,
}
