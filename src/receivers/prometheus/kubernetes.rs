//! `kubernetes_sd_configs` with role `pod`: the pod list from the API server as Prometheus's
//! pod-role targets with their `__meta_kubernetes_pod_*` labels.

use std::time::Duration;

use serde::Deserialize;

use crate::config::units;

use super::relabel::Labels;

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesSd {
    /// Only `pod`.
    pub role: String,
    /// Default: in-cluster (the service account).
    pub api_server: Option<String>,
    pub kubeconfig_file: Option<String>,
    pub namespaces: Namespaces,
    /// Field selectors per role (only `pod`'s `field` is used, e.g. `spec.nodeName=$NODE`).
    pub selectors: Vec<Selector>,
    /// How often the pod list is refreshed. Default 30s.
    #[serde(deserialize_with = "units::opt_duration")]
    pub refresh_interval: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Namespaces {
    pub names: Vec<String>,
    pub own_namespace: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Selector {
    pub role: String,
    pub label: Option<String>,
    pub field: Option<String>,
}

/// `kubernetes_sd_configs` with role `pod`: lists pods from the API server.
pub(super) struct PodDiscovery {
    api: crate::kube::ApiConfig,
    client: reqwest::Client,
    namespaces: Vec<String>,
    field: Option<String>,
    label: Option<String>,
}

impl PodDiscovery {
    pub(super) fn new(sd: &KubernetesSd) -> Result<PodDiscovery, String> {
        use crate::kube::ApiConfig;
        let api = match (&sd.api_server, &sd.kubeconfig_file) {
            (_, Some(f)) => ApiConfig::from_kubeconfig_file(f)?,
            (Some(s), None) => ApiConfig {
                server: s.trim_end_matches('/').to_string(),
                token: None,
                tls: Default::default(),
            },
            (None, None) => ApiConfig::in_cluster()?,
        };
        let client = api.client()?;
        let mut namespaces = sd.namespaces.names.clone();
        if sd.namespaces.own_namespace {
            let ns =
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .map_err(|e| format!("own_namespace: {e}"))?;
            namespaces.push(ns.trim().to_string());
        }
        let pod_sel = sd.selectors.iter().find(|s| s.role == "pod");
        Ok(PodDiscovery {
            api,
            client,
            namespaces,
            field: pod_sel.and_then(|s| s.field.clone()),
            label: pod_sel.and_then(|s| s.label.clone()),
        })
    }

    pub(super) async fn list(&self) -> Result<Vec<Labels>, String> {
        let paths: Vec<String> = if self.namespaces.is_empty() {
            vec!["/api/v1/pods".into()]
        } else {
            self.namespaces
                .iter()
                .map(|ns| format!("/api/v1/namespaces/{ns}/pods"))
                .collect()
        };
        let mut out = Vec::new();
        for p in paths {
            let mut q: Vec<(&str, String)> = Vec::new();
            if let Some(f) = &self.field {
                q.push(("fieldSelector", f.clone()));
            }
            if let Some(l) = &self.label {
                q.push(("labelSelector", l.clone()));
            }
            let url = reqwest::Url::parse_with_params(&format!("{}{p}", self.api.server), &q)
                .map_err(|e| e.to_string())?;
            let mut req = self.client.get(url);
            if let Some(t) = &self.api.token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.map_err(|e| crate::text::error_chain(&e))?;
            if !resp.status().is_success() {
                return Err(format!("listing pods: HTTP {}", resp.status()));
            }
            let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
            let list: PodList =
                serde_json::from_slice(&bytes).map_err(|e| format!("pod list: {e}"))?;
            for pod in list.items {
                out.extend(pod_targets(&pod));
            }
        }
        Ok(out)
    }
}

#[derive(Deserialize)]
struct PodList {
    #[serde(default)]
    items: Vec<SdPod>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SdPod {
    #[serde(default)]
    metadata: crate::kube::ObjectMeta,
    #[serde(default)]
    spec: SdSpec,
    #[serde(default)]
    status: SdStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SdSpec {
    #[serde(default)]
    node_name: String,
    #[serde(default)]
    containers: Vec<SdContainer>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SdContainer {
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    ports: Vec<SdPort>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SdPort {
    #[serde(default)]
    name: String,
    container_port: u16,
    #[serde(default)]
    protocol: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SdStatus {
    #[serde(default, rename = "podIP")]
    pod_ip: String,
    #[serde(default)]
    phase: String,
    #[serde(default, rename = "hostIP")]
    host_ip: String,
    #[serde(default)]
    conditions: Vec<SdCondition>,
}

#[derive(Deserialize, Default)]
struct SdCondition {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    status: String,
}

fn sanitize(s: &str) -> String {
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

/// Prometheus's pod-role targets: one per container port, or one per pod without ports.
fn pod_targets(pod: &SdPod) -> Vec<Labels> {
    if pod.status.pod_ip.is_empty() || matches!(pod.status.phase.as_str(), "Succeeded" | "Failed") {
        return Vec::new();
    }
    let mut base = Labels::new();
    let m = &pod.metadata;
    base.insert("__meta_kubernetes_namespace".into(), m.namespace.clone());
    base.insert("__meta_kubernetes_pod_name".into(), m.name.clone());
    base.insert("__meta_kubernetes_pod_uid".into(), m.uid.clone());
    base.insert("__meta_kubernetes_pod_ip".into(), pod.status.pod_ip.clone());
    base.insert(
        "__meta_kubernetes_pod_host_ip".into(),
        pod.status.host_ip.clone(),
    );
    base.insert(
        "__meta_kubernetes_pod_node_name".into(),
        pod.spec.node_name.clone(),
    );
    base.insert(
        "__meta_kubernetes_pod_phase".into(),
        pod.status.phase.clone(),
    );
    let ready = pod
        .status
        .conditions
        .iter()
        .find(|c| c.kind == "Ready")
        .map_or("unknown".to_string(), |c| c.status.to_lowercase());
    base.insert("__meta_kubernetes_pod_ready".into(), ready);
    for (k, v) in &m.labels {
        base.insert(
            format!("__meta_kubernetes_pod_label_{}", sanitize(k)),
            v.clone(),
        );
        base.insert(
            format!("__meta_kubernetes_pod_labelpresent_{}", sanitize(k)),
            "true".into(),
        );
    }
    for (k, v) in &m.annotations {
        base.insert(
            format!("__meta_kubernetes_pod_annotation_{}", sanitize(k)),
            v.clone(),
        );
        base.insert(
            format!("__meta_kubernetes_pod_annotationpresent_{}", sanitize(k)),
            "true".into(),
        );
    }
    if let Some(o) = m.owner_references.first() {
        base.insert(
            "__meta_kubernetes_pod_controller_kind".into(),
            o.kind.clone(),
        );
        base.insert(
            "__meta_kubernetes_pod_controller_name".into(),
            o.name.clone(),
        );
    }
    let mut out = Vec::new();
    let mut any_port = false;
    for c in &pod.spec.containers {
        for p in &c.ports {
            any_port = true;
            let mut l = base.clone();
            l.insert(
                "__address__".into(),
                format!("{}:{}", pod.status.pod_ip, p.container_port),
            );
            l.insert(
                "__meta_kubernetes_pod_container_name".into(),
                c.name.clone(),
            );
            l.insert(
                "__meta_kubernetes_pod_container_image".into(),
                c.image.clone(),
            );
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
                if p.protocol.is_empty() {
                    "TCP".into()
                } else {
                    p.protocol.clone()
                },
            );
            out.push(l);
        }
    }
    if !any_port {
        let mut l = base;
        l.insert("__address__".into(), pod.status.pod_ip.clone());
        out.push(l);
    }
    out
}
