//! `kubernetes_sd_configs`, every role Prometheus has (`node`, `service`, `pod`, `endpoints`,
//! `endpointslice`, `ingress`): the objects a role needs are listed, then watched (the shared
//! [`crate::kube::watch`]), per namespace when `namespaces` names some; each change wakes the
//! job, which rebuilds its targets from what the watches hold ([`roles`]). The endpoints roles
//! also watch services and pods to attach their labels, and `attach_metadata` adds the nodes
//! and namespaces.

mod roles;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Notify;

use crate::config::units;
use crate::kube::ApiConfig;
use crate::kube::watch::{self, Event, Resource};

use super::http::{Authorization, BasicAuth, OAuth2, TlsConfig};
use super::relabel::Labels;
use roles::{Attach, Kind, Store};

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesSd {
    /// `node`, `service`, `pod`, `endpoints`, `endpointslice` or `ingress` (required).
    pub role: String,
    /// Default: in-cluster (the pod's service account).
    pub api_server: Option<String>,
    pub kubeconfig_file: Option<String>,
    /// Default: every namespace.
    pub namespaces: Namespaces,
    /// Label and field selectors, each for one role's objects.
    pub selectors: Vec<Selector>,
    pub attach_metadata: AttachMetadata,
    /// Accepted for configs written for older versions; discovery watches, so nothing is
    /// refreshed on a timer.
    #[serde(deserialize_with = "units::opt_duration")]
    pub refresh_interval: Option<Duration>,
    // The API server's client settings, with `api_server`.
    pub tls_config: Option<TlsConfig>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<String>,
    pub authorization: Option<Authorization>,
    pub basic_auth: Option<BasicAuth>,
    pub oauth2: Option<OAuth2>,
    pub proxy_url: Option<String>,
    pub follow_redirects: Option<bool>,
    pub enable_http2: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Namespaces {
    pub names: Vec<String>,
    /// Adds the namespace the collector runs in (its service account's).
    pub own_namespace: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Selector {
    pub role: String,
    pub label: Option<String>,
    pub field: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AttachMetadata {
    /// The node's labels and annotations on pod and endpoint targets.
    pub node: bool,
    /// The namespace's labels and annotations.
    pub namespace: bool,
}

const ROLES: [Kind; 6] = [
    Kind::Node,
    Kind::Service,
    Kind::Pod,
    Kind::Endpoints,
    Kind::EndpointSlice,
    Kind::Ingress,
];

impl KubernetesSd {
    fn role(&self) -> Option<Kind> {
        ROLES.iter().copied().find(|k| k.role() == self.role)
    }

    /// The objects the role reads: its own, then those whose labels it attaches.
    fn kinds(&self, role: Kind) -> Vec<Kind> {
        let mut v = vec![role];
        if matches!(role, Kind::Endpoints | Kind::EndpointSlice) {
            v.extend([Kind::Service, Kind::Pod]);
        }
        if self.attach_metadata.node
            && matches!(role, Kind::Pod | Kind::Endpoints | Kind::EndpointSlice)
        {
            v.push(Kind::Node);
        }
        if self.attach_metadata.namespace && role != Kind::Node {
            v.push(Kind::Namespace);
        }
        v
    }

    /// Prometheus's checks: a known role, one way to reach the server, selectors of the
    /// roles this role reads.
    pub fn validate(&self) -> Result<(), String> {
        let Some(role) = self.role() else {
            return Err(format!(
                "role {:?}: expected node, service, pod, endpoints, endpointslice or ingress",
                self.role
            ));
        };
        if self.api_server.is_some() && self.kubeconfig_file.is_some() {
            return Err("set either api_server or kubeconfig_file".into());
        }
        if self.basic_auth.is_some() || self.oauth2.is_some() {
            return Err("basic_auth and oauth2 are not supported for the API server: use a bearer token, authorization or a kubeconfig_file".into());
        }
        let allowed: Vec<&str> = match role {
            Kind::Endpoints => vec!["endpoints", "service", "pod"],
            Kind::EndpointSlice => vec!["endpointslice", "service", "pod"],
            r => vec![r.role()],
        };
        for s in &self.selectors {
            if !allowed.contains(&s.role.as_str()) {
                return Err(format!(
                    "selectors: role {:?} is not one role {:?} reads ({})",
                    s.role,
                    self.role,
                    allowed.join(", ")
                ));
            }
        }
        Ok(())
    }

    fn api(&self) -> Result<ApiConfig, String> {
        match (&self.api_server, &self.kubeconfig_file) {
            (_, Some(f)) => ApiConfig::from_kubeconfig_file(f, None),
            (Some(s), None) => {
                let token = match (
                    &self.authorization,
                    &self.bearer_token,
                    &self.bearer_token_file,
                ) {
                    (Some(a), _, _) => match (&a.credentials, &a.credentials_file) {
                        (Some(c), _) => Some(c.clone()),
                        (None, Some(f)) => Some(read_trimmed(f, "authorization.credentials_file")?),
                        (None, None) => None,
                    },
                    (None, Some(t), _) => Some(t.clone()),
                    (None, None, Some(f)) => Some(read_trimmed(f, "bearer_token_file")?),
                    (None, None, None) => None,
                };
                let t = self.tls_config.clone().unwrap_or_default();
                Ok(ApiConfig {
                    server: s.trim_end_matches('/').to_string(),
                    token,
                    tls: crate::net::tls::ClientTlsConfig {
                        insecure_skip_verify: t.insecure_skip_verify,
                        ca_file: t.ca_file,
                        ca_pem: t.ca,
                        cert_file: t.cert_file,
                        cert_pem: t.cert,
                        key_file: t.key_file,
                        key_pem: t.key,
                        server_name_override: t.server_name,
                        // Prometheus writes TLS12; the shared settings read the Collector's 1.2.
                        min_version: t.min_version.map(|v| match v.as_str() {
                            "TLS10" => "1.0".into(),
                            "TLS11" => "1.1".into(),
                            "TLS12" => "1.2".into(),
                            "TLS13" => "1.3".into(),
                            _ => v,
                        }),
                        ..Default::default()
                    },
                })
            }
            (None, None) => ApiConfig::in_cluster(),
        }
    }
}

fn read_trimmed(path: &str, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{what} {path}: {e}"))
}

/// One `kubernetes_sd_configs` entry, running: its watches fill a [`Store`] and wake the job
/// on every change. Dropping it stops the watches.
pub(super) struct KubernetesDiscovery {
    role: Kind,
    attach: Attach,
    store: Arc<Mutex<Store>>,
    /// How many collections are watched: targets wait until each has been listed once (as
    /// Prometheus waits for its informers' caches), or until [`SYNC_WAIT`] has passed.
    watches: usize,
    started: std::time::Instant,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The longest targets wait for every collection's first list (an unlistable one, RBAC,
/// must not hold back the others for ever).
const SYNC_WAIT: Duration = Duration::from_secs(10);

impl KubernetesDiscovery {
    /// Starts the watches; fails when the API server's address or credentials cannot be
    /// found (no service account outside a cluster, an unreadable kubeconfig).
    pub(super) fn start(sd: &KubernetesSd, changed: Arc<Notify>) -> Result<Self, String> {
        let role = sd.role().ok_or_else(|| format!("role {:?}", sd.role))?;
        let api = Arc::new(sd.api()?);
        let client = api.client()?;
        let mut namespaces: Vec<Option<String>> =
            sd.namespaces.names.iter().cloned().map(Some).collect();
        if sd.namespaces.own_namespace {
            namespaces.push(Some(crate::kube::own_namespace()?));
        }
        // `own_namespace` may also be listed by name: one watch each.
        namespaces.sort();
        namespaces.dedup();
        if namespaces.is_empty() {
            namespaces.push(None);
        }
        let store = Arc::new(Mutex::new(Store::default()));
        let mut tasks = Vec::new();
        for kind in sd.kinds(role) {
            let scopes: Vec<Option<String>> = match kind {
                Kind::Node | Kind::Namespace => vec![None],
                _ => namespaces.clone(),
            };
            let mut query = Vec::new();
            for s in sd.selectors.iter().filter(|s| s.role == kind.role()) {
                if let Some(l) = &s.label {
                    query.push(("labelSelector".to_string(), l.clone()));
                }
                if let Some(f) = &s.field {
                    query.push(("fieldSelector".to_string(), f.clone()));
                }
            }
            for scope in scopes {
                let scope_key = (kind, scope.clone());
                let resource = Resource {
                    path: kind.path(scope.as_deref()),
                    query: query.clone(),
                };
                let (api, client, store, changed) =
                    (api.clone(), client.clone(), store.clone(), changed.clone());
                tasks.push(tokio::spawn(async move {
                    watch::run(&client, &api, &resource, |ev| {
                        let mut s = match store.lock() {
                            Ok(s) => s,
                            Err(p) => p.into_inner(),
                        };
                        match ev {
                            Event::Listed(items) => {
                                s.listed(kind, scope.as_deref(), items);
                                s.mark_listed(&scope_key);
                            }
                            Event::Applied(o) | Event::Added(o) => s.applied(kind, o, false),
                            Event::Deleted(o) => s.applied(kind, o, true),
                            Event::Reachable(_) => return,
                        }
                        drop(s);
                        changed.notify_one();
                    })
                    .await;
                }));
            }
        }
        let watches = tasks.len();
        // Wakes the job when the wait for the first lists ends, changes or not.
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(SYNC_WAIT).await;
            changed.notify_one();
        }));
        Ok(KubernetesDiscovery {
            role,
            watches,
            started: std::time::Instant::now(),
            attach: Attach {
                node: sd.attach_metadata.node,
                namespace: sd.attach_metadata.namespace,
            },
            store,
            tasks,
        })
    }

    /// The role's targets from what the watches hold now.
    pub(super) fn targets(&self) -> Vec<Labels> {
        let s = match self.store.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if s.lists_seen() < self.watches && self.started.elapsed() < SYNC_WAIT {
            return Vec::new();
        }
        s.targets(self.role, self.attach)
    }
}

impl Drop for KubernetesDiscovery {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests;
