//! `resourcedetection`'s configuration: the detector list, and each detector's options under
//! its own key, as the Collector spells them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::units;
use crate::kube::AuthType;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Toggle {
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// `<attribute>: {enabled: bool}`.
    pub resource_attributes: BTreeMap<String, Toggle>,
    /// `system`: where the host name comes from, first that answers. Default `[dns, os]`.
    pub hostname_sources: Vec<String>,
}

fn k8s_node_name_var() -> String {
    "K8S_NODE_NAME".into()
}

/// `k8s_api` (and its deprecated name `k8snode`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct K8sApiConfig {
    /// `serviceAccount` (default), `kubeConfig` or `none`.
    pub auth_type: AuthType,
    /// With `kubeConfig`: the context instead of the current one.
    pub context: Option<String>,
    /// Accepted: two reads at start do not need throttling.
    pub kube_api_qps: Option<f32>,
    pub kube_api_burst: Option<u32>,
    /// The environment variable holding this node's name (set from the downward API's
    /// `spec.nodeName`). Default `K8S_NODE_NAME`.
    pub node_from_env_var: String,
    pub resource_attributes: BTreeMap<String, Toggle>,
}

impl Default for K8sApiConfig {
    fn default() -> Self {
        K8sApiConfig {
            auth_type: AuthType::ServiceAccount,
            context: None,
            kube_api_qps: None,
            kube_api_burst: None,
            node_from_env_var: k8s_node_name_var(),
            resource_attributes: BTreeMap::new(),
        }
    }
}

/// `eks`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EksConfig {
    pub resource_attributes: BTreeMap<String, Toggle>,
    /// The environment variable holding this node's name, read when IMDS does not answer (the
    /// node's `providerID` names the instance). Default `K8S_NODE_NAME`.
    pub node_from_env_var: String,
    /// Tries of the EC2 `DescribeInstances` call. Default 3.
    pub max_attempts: u32,
    /// The longest wait between them. Default 20s.
    #[serde(deserialize_with = "units::duration")]
    pub max_backoff: Duration,
}

impl Default for EksConfig {
    fn default() -> Self {
        EksConfig {
            resource_attributes: BTreeMap::new(),
            node_from_env_var: k8s_node_name_var(),
            max_attempts: 3,
            max_backoff: Duration::from_secs(20),
        }
    }
}

/// `openshift`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OpenshiftConfig {
    /// The API server. Default `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`.
    pub address: Option<String>,
    /// The bearer token. Default: the pod's service account token.
    pub token: Option<String>,
    /// Default: the service account's CA.
    pub tls: crate::net::tls::ClientTlsConfig,
    pub resource_attributes: BTreeMap<String, Toggle>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub detectors: Vec<String>,
    /// Each network detector's time limit. Default 5s.
    #[serde(default = "five_seconds", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// Detected attributes replace the resource's own. Default true.
    #[serde(default = "yes", rename = "override")]
    pub override_: bool,
    /// Deprecated: keep only these detected attributes.
    #[serde(default)]
    pub attributes: Option<Vec<String>>,
    /// Accepted: detection runs once, at start.
    #[serde(default, deserialize_with = "units::opt_duration")]
    pub refresh_interval: Option<Duration>,
    #[serde(default)]
    pub system: DetectorConfig,
    #[serde(default)]
    pub docker: DetectorConfig,
    #[serde(default)]
    pub ec2: DetectorConfig,
    #[serde(default)]
    pub gcp: DetectorConfig,
    #[serde(default)]
    pub azure: DetectorConfig,
    #[serde(default)]
    pub aks: DetectorConfig,
    #[serde(default)]
    pub eks: EksConfig,
    #[serde(default)]
    pub k8s_api: K8sApiConfig,
    /// The deprecated name of `k8s_api`'s options.
    #[serde(default)]
    pub k8snode: Option<K8sApiConfig>,
    #[serde(default)]
    pub openshift: OpenshiftConfig,
    /// The options of detectors not built yet: read, so that the error names the detector.
    #[serde(default)]
    pub ecs: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub elastic_beanstalk: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub lambda: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub heroku: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub consul: Option<serde::de::IgnoredAny>,
}

impl Config {
    /// `k8s_api`'s options, under either name.
    pub fn k8s_api(&self) -> &K8sApiConfig {
        self.k8snode.as_ref().unwrap_or(&self.k8s_api)
    }
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

fn yes() -> bool {
    true
}
