//! `k8s_cluster`'s config (its own module, so that the metric builder reads it without importing
//! the receiver).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::units;
use crate::kube::AuthType;
use crate::signal::build::Toggle;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `serviceAccount` (default), `kubeConfig` or `none`.
    #[serde(default)]
    pub auth_type: AuthType,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub kube_api_burst: Option<u32>,
    #[serde(default)]
    pub kube_api_qps: Option<f32>,
    /// How often the state is reported. Default 10s.
    #[serde(default = "ten_seconds", deserialize_with = "units::duration")]
    pub collection_interval: Duration,
    /// Node conditions reported as `k8s.node.condition_<type>`. Default `[Ready]`.
    #[serde(default = "ready")]
    pub node_conditions_to_report: Vec<String>,
    /// Node allocatable resources reported as `k8s.node.allocatable_<type>`. Default none.
    #[serde(default)]
    pub allocatable_types_to_report: Vec<String>,
    /// Only these namespaces' objects (and the cluster-wide nodes and namespaces); default all.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// In a logs pipeline: every object's entity state is sent again this often. Default 5m.
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub metadata_collection_interval: Option<Duration>,
    /// Refused when set: no ferrotel exporter takes metadata directly; the logs pipelines that
    /// list this receiver get the entity events.
    #[serde(default)]
    pub metadata_exporters: Vec<String>,
    /// `kubernetes` (default); `openshift` is refused.
    #[serde(default)]
    pub distribution: Option<String>,
    /// Run only while this `k8s_leader_elector` extension holds its Lease.
    #[serde(default)]
    pub k8s_leader_elector: Option<String>,
    #[serde(default)]
    pub metrics: BTreeMap<String, Toggle>,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Toggle>,
}

impl Config {
    pub fn metadata_interval(&self) -> Duration {
        self.metadata_collection_interval
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(300))
    }
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

fn ready() -> Vec<String> {
    vec!["Ready".into()]
}
