//! `kubeletstats`' config (its own module, so that the metric builder reads it without importing
//! the receiver).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::units;
use crate::kube::{ApiSettings, AuthType};
use crate::signal::build::Toggle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricGroup {
    Node,
    Pod,
    Container,
    Volume,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkInterfaces {
    pub node: bool,
    pub pod: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Default 10s.
    #[serde(default = "ten_seconds", deserialize_with = "units::duration")]
    pub collection_interval: Duration,
    /// Default 1s.
    #[serde(default = "one_second", deserialize_with = "units::duration")]
    pub initial_delay: Duration,
    /// Per request; default the collection interval.
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub timeout: Option<Duration>,
    /// `https://host:10250` (a bare `host:port` gets `https://`, or `http://` with
    /// `auth_type: none`); with `kubeConfig`, the node's name. Default: this host's name on
    /// 10250 (10255 with `none`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `tls` (default, as the Collector's), `serviceAccount`, `kubeConfig` or `none`.
    #[serde(default = "tls")]
    pub auth_type: AuthType,
    /// With `kubeConfig`: the context to use instead of the current one.
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub cert_file: Option<String>,
    #[serde(default)]
    pub key_file: Option<String>,
    /// Do not verify the kubelet's certificate (kubelets commonly serve a self-signed one).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Accepted (the Collector's API client throttling).
    #[serde(default)]
    pub kube_api_burst: Option<u32>,
    #[serde(default)]
    pub kube_api_qps: Option<f32>,
    /// `container.id` and/or `k8s.volume.type`, read from the kubelet's `/pods`.
    #[serde(default)]
    pub extra_metadata_labels: Vec<String>,
    /// Default `[container, pod, node]`.
    #[serde(default = "default_groups")]
    pub metric_groups: Vec<MetricGroup>,
    /// The API server, for the node's capacity (`*.node.utilization` metrics).
    #[serde(default)]
    pub k8s_api_config: Option<ApiSettings>,
    /// This node's name (downward API `spec.nodeName`).
    #[serde(default)]
    pub node: Option<String>,
    /// Every interface instead of the default one.
    #[serde(default)]
    pub collect_all_network_interfaces: Option<NetworkInterfaces>,
    #[serde(default)]
    pub metrics: BTreeMap<String, Toggle>,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Toggle>,
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}

fn tls() -> AuthType {
    AuthType::Tls
}

fn default_groups() -> Vec<MetricGroup> {
    vec![MetricGroup::Container, MetricGroup::Pod, MetricGroup::Node]
}
