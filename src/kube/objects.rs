//! The Kubernetes objects and the fields of them that ferrotel reads (unknown fields ignored).

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub resource_version: String,
    #[serde(default)]
    pub creation_timestamp: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub owner_references: Vec<OwnerRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub uid: String,
    /// Whether this owner is the managing controller.
    #[serde(default)]
    pub controller: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub node_name: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub host_network: bool,
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default)]
    pub init_containers: Vec<Container>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

/// A pod's volume: its name, its source kind (the one key besides `name`: `emptyDir`,
/// `persistentVolumeClaim`, `configMap`...) and, for a claim, the claim's name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub persistent_volume_claim: Option<ClaimRef>,
    #[serde(flatten)]
    pub source: BTreeMap<String, serde_json::Value>,
}

impl Volume {
    /// The source kind, as the API spells its key (`persistentVolumeClaim` when it is a claim).
    pub fn kind(&self) -> Option<&str> {
        if self.persistent_volume_claim.is_some() {
            return Some("persistentVolumeClaim");
        }
        self.source.keys().next().map(String::as_str)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRef {
    #[serde(default)]
    pub claim_name: String,
}

/// `resources.limits` and `resources.requests`, as quantities (`cpu: 500m`, `memory: 1Gi`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub limits: BTreeMap<String, String>,
    #[serde(default)]
    pub requests: BTreeMap<String, String>,
}

impl Resources {
    pub fn limit(&self, name: &str) -> Option<f64> {
        self.limits
            .get(name)
            .and_then(|q| super::quantity::parse(q))
    }

    pub fn request(&self, name: &str) -> Option<f64> {
        self.requests
            .get(name)
            .and_then(|q| super::quantity::parse(q))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Container {
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub resources: Resources,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default, rename = "podIP")]
    pub pod_ip: String,
    #[serde(default, rename = "podIPs")]
    pub pod_ips: Vec<PodIp>,
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub container_statuses: Vec<ContainerStatus>,
    #[serde(default)]
    pub init_container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodIp {
    pub ip: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    #[serde(default, rename = "containerID")]
    pub container_id: String,
    /// The image the runtime resolved, with its digest (`repo@sha256:...`).
    #[serde(default, rename = "imageID")]
    pub image_id: String,
    #[serde(default)]
    pub restart_count: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

#[derive(Debug, Deserialize)]
pub(crate) struct List<T> {
    #[serde(default)]
    pub(crate) metadata: ListMeta,
    #[serde(default = "Vec::new")]
    pub(crate) items: Vec<T>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListMeta {
    #[serde(default)]
    pub(crate) resource_version: String,
    #[serde(default, rename = "continue")]
    pub(crate) cont: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WatchEvent {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) object: serde_json::Value,
}

/// `containerd://abc` → `abc`.
pub fn container_id(s: &str) -> Option<&str> {
    let id = s.split_once("://").map_or(s, |(_, id)| id);
    (!id.is_empty()).then_some(id)
}

/// An API timestamp (RFC 3339, `2024-05-01T10:00:00Z`) in nanoseconds since the epoch.
pub fn timestamp_nanos(t: &str) -> Option<u64> {
    let ts: jiff::Timestamp = t.parse().ok()?;
    u64::try_from(ts.as_nanosecond()).ok()
}
